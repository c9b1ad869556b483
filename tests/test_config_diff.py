"""Naming how two run configs differ, and moving a comparison's paths."""

from peerdistill.config_diff import differences, relocated


def test_differences_name_each_leaf_with_both_values():
    saved = {"seed": 0, "train": {"batch_size": 64, "lr": 0.1}, "distill": {"preset": "kd"}}
    now = {"seed": 0, "train": {"batch_size": 128, "lr": 0.1}, "distill": {"preset": "kd", "alpha": 1.0}}
    assert differences(saved, now) == ["train.batch_size: 64 in the run, 128 now",
                                       "distill.alpha: absent in the run, 1.0 now"]
    assert differences(now, now) == []
    # models each by its place (not the whole list, hundreds of characters), other lists whole
    assert differences({"students": [{"arch": "cnn", "args": {"depth": 2}}, {"arch": "cnn"}]},
                       {"students": [{"arch": "cnn", "args": {"depth": 3}}, {"arch": "cnn"}]}) == [
        "students.0.args.depth: 2 in the run, 3 now"]
    assert differences({"students": [{"arch": "cnn"}]}, {"students": [{"arch": "cnn"}, {"arch": "cnn"}]}) == [
        "students: [{'arch': 'cnn'}] in the run, [{'arch': 'cnn'}, {'arch': 'cnn'}] now"]
    assert differences({"augment": ["hflip"]}, {"augment": ["vflip"]}) == [
        "augment: ['hflip'] in the run, ['vflip'] now"]


def test_relocated_moves_only_paths_inside_the_old_directory():
    tree = {"out_dir": "/a/cmp", "teacher": {"checkpoint": "/a/cmp/independent-seed0"},
            "data": {"root": "/a/cmpdata"}, "others": ["/a/cmp/x", "/b/y"], "seed": 3}
    assert relocated(tree, "/a/cmp", "/c/moved") == {
        "out_dir": "/c/moved", "teacher": {"checkpoint": "/c/moved/independent-seed0"},
        "data": {"root": "/a/cmpdata"}, "others": ["/c/moved/x", "/b/y"], "seed": 3}


def test_the_summary_names_the_first_four_differences_and_counts_the_rest():
    from peerdistill.config_diff import summary

    changed = [f"k{i}: {i} in the run, {i + 1} now" for i in range(6)]
    assert summary(changed) == "; ".join(changed[:4]) + "; and 2 more"
    assert summary(changed[:4]) == "; ".join(changed[:4])  # all shown: no "and 0 more"
    assert summary(changed[:5], most=2) == "; ".join(changed[:2]) + "; and 3 more"
