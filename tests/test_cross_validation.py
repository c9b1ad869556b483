"""k-fold cross-validation: the folds of the data (data.folds, data.fold) and compare --folds."""

import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from peerdistill.build import train_from_config
from peerdistill.compare import compare
from peerdistill.config import DataSpec, validate
from peerdistill.data import build_data
from peerdistill.data.splits import fold_cut
from peerdistill.errors import ConfigError, DataError
from peerdistill.html_report import write_report
from peerdistill.runs import Scores, evaluate_run


def test_the_test_folds_cover_every_sample_once_in_the_classes_proportions():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    cuts = [fold_cut(100, k, 5, 0.2, seed=3, labels=labels) for k in range(5)]
    tests = np.concatenate([test for _, _, test in cuts])
    assert sorted(tests.tolist()) == list(range(100))  # disjoint, and all of them
    for train, val, test in cuts:
        assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))
        assert np.bincount(labels[test]).tolist() == [10, 6, 4]  # a fifth of each class
        assert len(val) == 20 and np.bincount(labels[val]).tolist() == [10, 6, 4]  # 0.2 of the whole, stratified
        assert all((np.diff(part) > 0).all() for part in (train, val, test))
    assert [t.tolist() for t in fold_cut(100, 1, 5, 0.2, seed=3, labels=labels)] == \
        [t.tolist() for t in cuts[1]]  # fixed by the seed
    assert fold_cut(100, 1, 5, 0.2, seed=4, labels=labels)[2].tolist() != cuts[1][2].tolist()
    unlabelled = [fold_cut(10, k, 3, 0.2, seed=0)[2] for k in range(3)]
    assert sorted(np.concatenate(unlabelled).tolist()) == list(range(10)) and [len(t) for t in unlabelled] == [4, 3, 3]


def test_folds_that_cannot_be_cut_are_named():
    with pytest.raises(DataError, match="cannot cut 5 folds from 3 samples: each fold needs one at least; use at "
                                        r"most 3 folds \(--folds or data.folds\)"):
        fold_cut(3, 0, 5, 0.2, seed=0)
    with pytest.raises(DataError, match="cannot cut 3 folds from 12 samples whose smallest class has 2: each fold "
                                        "needs a sample of every class; use at most 2 folds"):
        fold_cut(12, 1, 3, 0.2, seed=0, labels=np.array([0] * 10 + [1] * 2))  # 2 of class 1 for 3 folds
    with pytest.raises(DataError, match="cannot cut fold 0 of 2 folds from 4 samples"):  # what remains is sklearn's
        fold_cut(4, 0, 2, 0.9, seed=0)


@pytest.mark.parametrize("data, message", [
    ({"fold": 2}, "data.fold=2 needs data.folds"),
    ({"folds": 3, "fold": 3}, "data.fold=3 is not one of the 3 folds: use 0 .. 2"),
    ({"folds": 1}, "greater than or equal to 2"),
    ({"folds": 5, "test_fraction": 0.3}, "data.test_fraction is not used: remove it (on the command line: "
                                         "data.test_fraction=null)"),  # (a recipe's: review 55r)
    ({"folds": 2, "val_fraction": 0.5}, "must be below 0.50"),
    ({"kind": "shapes", "folds": 5}, "data kind 'shapes' generates its splits apart"),
    ({"kind": "folders", "root": "d", "folds": 5, "split_dirs": {"train": "a", "test": "b"}},
     "data.split_dirs gives the splits"),
])
def test_fold_settings_that_cannot_work_are_refused(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate({"data": data})


def test_an_npz_of_one_set_is_cut_and_one_of_its_own_splits_refuses_split_keys(tmp_path):
    """Review 46b: data.split_seed and the fractions were taken in silence for an archive of its
    own splits (compare then called two identical splits different), and an archive of images
    and labels alone could not be trained on, so --folds had no way in."""
    from peerdistill.data.sources import given_test_split

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (60, 6, 6), dtype=np.uint8), np.repeat([0, 1, 2], 20)[:, None]
    np.savez(tmp_path / "one.npz", images=images, labels=labels)
    one = build_data(DataSpec(kind="npz", root=str(tmp_path / "one.npz"), split_seed=3, val_fraction=0.25))
    assert (len(one.train), len(one.val), len(one.test)) == (33, 15, 12)
    rows = one.info["indices"]
    assert sorted(rows["train"] + rows["val"] + rows["test"]) == list(range(60))
    assert np.bincount(one.test.y.numpy()).tolist() == [4, 4, 4]  # stratified
    assert torch.allclose(one.test.x[0, 0] * one.stats["std"][0] + one.stats["mean"][0],
                          torch.from_numpy(images[rows["test"][0]] / 255).float(), atol=1e-5)
    tested = [build_data(DataSpec(kind="npz", root=str(tmp_path / "one.npz"), folds=3, fold=f)).info["indices"]["test"]
              for f in range(3)]
    assert sorted(sum(tested, [])) == list(range(60))
    assert given_test_split(DataSpec(kind="npz", root=str(tmp_path / "one.npz"))) is None

    arrays = {f"{s}_{k}": (images[:20] if k == "images" else labels[:20]) for s in ("train", "val", "test")
              for k in ("images", "labels")}
    np.savez(tmp_path / "split.npz", **arrays)
    assert given_test_split(DataSpec(kind="npz", root=str(tmp_path / "split.npz"))) == (
        f"'{tmp_path / 'split.npz'}' (its train, val and test arrays)")
    with pytest.raises(DataError, match=r"data.folds cuts one set into folds, but .*split.npz' \(its train, val and "
                                        r"test arrays\) gives its own test split"):
        build_data(DataSpec(kind="npz", root=str(tmp_path / "split.npz"), folds=3))
    # split keys a new run's data would not read are refused when it starts; eval, which carries a run's keys onto
    # other data, reads such an archive as it is (review 46d M1)
    from peerdistill.data.sources import check_new_run_data

    keyed = DataSpec(kind="npz", root=str(tmp_path / "split.npz"), split_seed=7, val_fraction=0.3)
    as_given = build_data(keyed)
    assert len(as_given.test) == 20
    with pytest.raises(ConfigError, match=r"^data.split_seed, data.val_fraction cut one set into splits, but .*split.npz' "
                                          r"gives its own train, val and test arrays, which are used as they are: "
                                          r"remove them .*np.savez\(FILE, images=..., labels=...\)"):
        check_new_run_data(keyed, as_given)
    check_new_run_data(DataSpec(kind="npz", root=str(tmp_path / "one.npz"), split_seed=7, val_fraction=0.3), one)
    shapes = DataSpec(kind="shapes", shapes_counts=[4, 2, 2], val_fraction=0.3)
    with pytest.raises(ConfigError, match=r"^data.val_fraction cuts one set into splits, but data kind 'shapes' generates "
                                          r"each split apart, as many images as data.shapes_counts says: remove it"):
        check_new_run_data(shapes, build_data(shapes))


def test_eval_of_a_run_on_a_one_set_npz_keeps_its_fold_and_reads_other_archives_as_they_are(tmp_path, capsys):
    """eval reads a one-set archive's run with its fold (the rows it tested), and carries its split
    keys onto an archive of its own splits without refusing them (review 46d M1, L4)."""
    import csv

    from peerdistill.cli import main

    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (60, 8, 8), dtype=np.uint8), np.repeat([0, 1], 30)
    np.savez(tmp_path / "one.npz", images=images, labels=labels)
    np.savez(tmp_path / "split.npz", **{f"{s}_{k}": (images[:20] if k == "images" else labels[:20])
                                        for s in ("train", "val", "test") for k in ("images", "labels")})
    tree = {**FAST, "name": "f", "out_dir": str(tmp_path / "runs"),
            "data": {"kind": "npz", "root": str(tmp_path / "one.npz"), "folds": 3, "fold": 1, "split_seed": 5}}
    train_from_config(validate(tree), progress=False)
    run = tmp_path / "runs" / "f"
    tested = json.loads((run / "run.json").read_text())["data_info"]["indices"]["test"]
    assert main(["eval", str(run), "--per-sample", str(tmp_path / "rows.csv")]) == 0
    rows = {int(r["row"]) for r in csv.DictReader((tmp_path / "rows.csv").open())}
    assert rows == set(tested) and len(rows) == 20
    capsys.readouterr()
    assert main(["eval", str(run), f"data.root={tmp_path / 'split.npz'}", "--json"]) == 0  # (seed 5: not refused)
    printed = capsys.readouterr()
    assert "ensemble" in json.loads(printed.out) and "test split: 20 samples" in printed.err
    assert "change nothing" not in printed.err  # the run's own keys, carried: not the user's to hear of
    # the same keys typed: they change nothing there, said (review 47d)
    assert main(["eval", str(run), f"data.root={tmp_path / 'split.npz'}", "data.split_seed=9", "--json"]) == 0
    assert (f"data.split_seed changes nothing here: '{tmp_path / 'split.npz'}' gives its own train, val and test "
            "arrays, which eval scores as they are") in " ".join(capsys.readouterr().err.split())


def test_digits_folds_partition_the_set_and_keep_every_class_in_training():
    sizes, labels = [], []
    for fold in range(4):
        data = build_data(DataSpec(folds=4, fold=fold, val_fraction=0.15))
        sizes.append((len(data.train), len(data.val), len(data.test)))
        labels.append(data.test.y)
        assert data.info["fold"] == fold and data.info["folds"] == 4
    assert sum(test for _, _, test in sizes) == 1797 and {val for _, val, _ in sizes} == {270}
    assert all(train + val + test == 1797 for train, val, test in sizes)
    counts = np.stack([np.bincount(y.numpy(), minlength=10) for y in labels])
    assert counts.sum(axis=0).tolist() == np.bincount(build_data(DataSpec()).split("all").y.numpy()).tolist()
    assert counts.max(axis=0).tolist() == pytest.approx(counts.min(axis=0), abs=1)  # stratified


def _pairs(root, n):
    for i in range(n):
        Image.fromarray(np.full((6, 6), 10 * i, np.uint8)).save(root / "images" / f"{i}.png")
        mask = np.zeros((6, 6), np.uint8)
        mask[1:4, 1:1 + (i % 3) + 1] = 255
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")


def test_image_mask_and_box_folders_are_cut_into_folds_by_file(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _pairs(tmp_path, 9)
    names = set(map(str, range(9)))
    tested, boxed = [], []
    for fold in range(3):
        seg = build_data(DataSpec(kind="folders", root=str(tmp_path), binary_masks=True, grey=True, folds=3,
                                  fold=fold, val_fraction=0.2))
        files = seg.info["files"]
        assert set(files["train"]) | set(files["val"]) | set(files["test"]) == names and len(files["test"]) == 3
        tested += files["test"]
        det = build_data(DataSpec(kind="mask_boxes", root=str(tmp_path), grey=True, folds=3, fold=fold,
                                  val_fraction=0.2, image_size=[6, 6]))
        boxed += det.info["split"]["test"]
        assert det.info["split"]["fold"] == fold and "test_fraction" not in det.info["split"]
    assert sorted(tested) == sorted(boxed) == sorted(names)  # same seed, same files: the same folds
    for split in ("train", "val", "test"):  # given splits, as training finds them
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "masks").mkdir()
        _pairs(tmp_path / split, 3)
    with pytest.raises(DataError, match="gives its own test split: remove data.folds"):
        build_data(DataSpec(kind="folders", root=str(tmp_path), binary_masks=True, grey=True, folds=3))


def test_class_folders_with_a_test_folder_are_not_cut_into_folds(tmp_path):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.full((4, 4), 50 * i, np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    with pytest.raises(DataError, match=r"\(its train/, test/ folders\) gives its own test split"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path), folds=2))


FAST = {"teacher": None, "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
        "train": {"epochs": 1, "batch_size": 256}, "distill": {"preset": "ml"}}


def _grey_class_folders(root, per_class: int, rng, named=lambda label, i: f"{i}.png") -> None:
    """Random 8x8 grey images in class folders a/ and b/, ``per_class`` each."""
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(root / label / named(label, i))


def _trained_on_folders(root, name: str, out_dir):
    """A brief run on an image_folder root; returns its config."""
    from peerdistill.build import train_from_config

    cfg = validate({**FAST, "name": name, "out_dir": str(out_dir),
                    "data": {"kind": "image_folder", "root": str(root), "grey": True}})
    train_from_config(cfg, progress=False)
    return cfg


def test_compare_with_folds_runs_every_fold_of_every_seed_and_tabulates_them(tmp_path, capsys):
    tree = {**FAST, "name": "cv", "out_dir": str(tmp_path), "data": {"val_fraction": 0.1}}
    compare(tree, None, 1, folds=3, progress=False, dry_run=True, console=Console(width=250))
    plan = capsys.readouterr().out
    assert re.findall(r"ml +│ 0 +│ (\d) +│ \S+ml-seed0-fold\1 +│ train", plan) == ["0", "1", "2"]
    result = compare(tree, None, 1, folds=3, progress=False)
    runs = sorted(p.name for p in result.directory.iterdir() if p.is_dir())
    assert runs == ["ml-seed0-fold0", "ml-seed0-fold1", "ml-seed0-fold2"]
    tested = []
    for fold, run in enumerate(runs):
        saved = json.loads((result.directory / run / "run.json").read_text())
        assert (saved["data_spec"]["folds"], saved["data_spec"]["fold"]) == (3, fold)
        tested.append(json.loads((result.directory / run / "metrics.json").read_text())["test_at_best"]["ensemble"]["accuracy"])
    row = next(r for r in result.rows if r["model"] == "ensemble" and r["metric"] == "accuracy")
    assert row["values"] == pytest.approx(tested) and row["n"] == 3 and row["mean"] == pytest.approx(np.mean(tested))
    assert "over 3 folds x 1 seed(s) per setting" in result.markdown and "fold 0 .. 2" in result.markdown
    assert "mean ± std over 3 folds x 1 seed(s)" in " ".join(capsys.readouterr().out.split())  # titles may wrap
    assert "<b>test split</b>: fold 1 (folds 0 to 2; split seed 0)" in write_report(result.directory / runs[1]).read_text()
    page = write_report(result.directory).read_text(encoding="utf-8")
    assert "Run directories: ml-seed0-fold0, ml-seed0-fold1, ml-seed0-fold2." in page
    from peerdistill.comparison_runs import setting_runs

    (result.directory / "ml-seed0-fold0-old").mkdir()  # a run directory, not one the comparison names
    (result.directory / "ml-seed0-fold0-old" / "run.json").write_text("{}")
    assert [p.name for p in setting_runs(result.directory, "ml")] == runs
    evaluated = evaluate_run(result.directory / runs[2])  # eval reads the run's own fold again
    assert evaluated["ensemble"]["accuracy"] == pytest.approx(tested[2])
    compare(tree, None, 1, folds=3, progress=False)  # a second time: every fold's run is reused
    assert capsys.readouterr().err.count("reusing finished run") == 3
    with pytest.raises(ConfigError, match="folds= must be 2 to 1000 \\(got 1\\)"):
        compare(tree, None, 1, folds=1, progress=False)



def test_paired_differences_over_folds_say_their_pairs_are_not_independent_and_widen_their_interval(tmp_path, capsys):
    from peerdistill.paired import FOLDS_CAVEAT

    tree = {**FAST, "name": "cv", "out_dir": str(tmp_path), "data": {"val_fraction": 0.1}}
    result = compare(tree, ["independent", "ml"], 1, folds=2, progress=False, console=Console(width=250))
    assert result.differences and FOLDS_CAVEAT in result.markdown
    assert FOLDS_CAVEAT in " ".join(capsys.readouterr().out.split())
    # the intervals are the corrected ones for 2 folds, pair by pair as the rows give them
    from peerdistill.paired import paired_difference

    first = result.differences[0]
    values = {r["setting"]: r["values"] for r in result.rows
              if (r["model"], r["metric"]) == (first["model"], first["metric"])}
    assert first["difference"] == paired_difference(values[first["setting"]], values["independent"], first["metric"],
                                                    folds=2)

def test_a_frozen_teacher_comes_from_the_run_of_the_same_seed_and_fold(tmp_path):
    from peerdistill.comparison_runs import plan_runs, settings_of

    tree = {**FAST, "teacher": {"arch": "cnn"}, "data": {"folds": 4, "fold": 3}}  # --folds replaces the own
    settings = settings_of([tree], [validate(tree)], ["independent", "kd"], "independent")
    plans = plan_runs(settings, 2, tmp_path, folds=2)
    frozen = [(p.cfg.name, p.cfg.seed, p.fold, p.source_run.name, p.cfg.teacher.checkpoint)
              for p in plans if p.source_run is not None]
    assert frozen == [(f"kd-frozen-teacher-seed{s}-fold{k}", s, k, f"independent-seed{s}-fold{k}",
                       str(tmp_path / f"independent-seed{s}-fold{k}")) for s in (0, 1) for k in (0, 1)]
    assert all((p.cfg.data.folds, p.cfg.data.fold) == (2, p.fold) for p in plans)


def test_compare_folds_replace_the_configs_test_fraction(tmp_path):
    """--folds takes the test split from the folds: a config that cut its own (as
    recipes/kvasir-detection.yaml does, test_fraction 0.15) is still cross-validated."""
    from peerdistill.comparison_runs import plan_runs, settings_of

    tree = {**FAST, "data": {"val_fraction": 0.15, "test_fraction": 0.15}}
    plans = plan_runs(settings_of([tree], [validate(tree)], None, None), 1, tmp_path, folds=3)
    assert [(p.fold, p.cfg.data.folds, p.cfg.data.test_fraction) for p in plans] == [(k, 3, 0.2) for k in range(3)]
    assert plans[0].cfg.data.val_fraction == 0.15


def test_compare_folds_say_a_configs_own_test_fraction_gives_way(tmp_path):
    """Its test share would else change without a word (train refuses the two together); a
    fraction the folds give anyway (0.2 of 5 folds) is no news."""
    from peerdistill.errors import DataNote

    tree = {**FAST, "name": "own", "out_dir": str(tmp_path / "runs"), "data": {"test_fraction": 0.15}}
    with pytest.warns(DataNote, match=re.escape("config 1 sets data.test_fraction 0.15, which folds=3 replaces: "
                                                "each run tests on one fold, 1/3 of the data; remove "
                                                "data.test_fraction")):
        compare(tree, None, 1, folds=3, progress=False, dry_run=True, console=Console(file=io.StringIO()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataNote)
        compare({**tree, "data": {"test_fraction": 0.2}}, None, 1, folds=5, progress=False, dry_run=True,
                console=Console(file=io.StringIO()))


def test_eval_of_a_fold_run_on_other_data_drops_the_runs_folds(tmp_path, monkeypatch, capsys):
    """The fold of the run's data does not carry over to data that cannot be cut into folds, nor
    past data.folds=null (which the refusal of split folders asks for)."""
    import peerdistill.runs
    from peerdistill.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"data_spec": {"kind": "csv", "root": "a.csv", "folds": 5, "fold": 2}}))
    seen = []
    monkeypatch.setattr(peerdistill.runs, "evaluate_run",
                        lambda run_dir, data_spec, **_: seen.append(data_spec) or Scores({}, samples=0))
    assert main(["eval", str(run), "--json", "data.kind=npz", "data.root=b.npz"]) == 0
    assert main(["eval", str(run), "--json", "data.root=c.csv", "data.folds=null"]) == 0
    assert main(["eval", str(run), "--json", "data.root=d.csv"]) == 0  # same kind of data: the run's fold
    assert [(s.kind, s.folds, s.fold) for s in seen] == [("npz", None, 0), ("csv", None, 0), ("csv", 5, 2)]
    assert main(["eval", str(run), "data.folds=null", "data.fold=1"]) != 0  # given outright: still checked
    assert "data.fold=1 needs data.folds" in capsys.readouterr().err


def test_compare_folds_refuses_data_with_its_own_test_split_before_any_run_trains(tmp_path):
    import csv

    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "tree" / split / cls).mkdir(parents=True)
    with open(tmp_path / "list.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label", "split"], ["x.png", "a", "train"]])
    for data, where in (({"kind": "image_folder", "root": str(tmp_path / "tree")}, "its train/ and test/ folders"),
                        ({"kind": "csv", "root": str(tmp_path / "list.csv")}, "its split column")):
        tree = {**FAST, "name": "own", "out_dir": str(tmp_path / "runs"), "data": data}
        with pytest.raises(ConfigError, match=re.escape(where) + ".* gives its own test split: drop folds="):
            compare(tree, None, 1, folds=2, progress=False, dry_run=True)
    assert not (tmp_path / "runs").exists()


def test_eval_of_the_runs_own_data_split_another_way_says_its_test_holds_training_samples(tmp_path):
    import warnings

    from peerdistill.build import train_from_config
    from peerdistill.errors import PeerdistillWarning

    cfg = validate({**FAST, "name": "d", "out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 256}})
    train_from_config(cfg, progress=False)
    run = tmp_path / "d"
    trained = set(json.loads((run / "run.json").read_text())["data_info"]["indices"]["train"])
    for change in ({"split_seed": 7}, {"folds": 3, "fold": 1}):
        spec = cfg.data.model_copy(update=change)
        other_test = set(build_data(spec).info["indices"]["test"])
        with pytest.warns(PeerdistillWarning) as caught:
            evaluate_run(run, data_spec=spec)
        said = [str(w.message) for w in caught if "training samples of the run" in str(w.message)]
        assert said and said[0].startswith(f"{len(other_test & trained)} of {len(other_test)} samples of the scored "
                                           "test split are training samples of the run")
    # the val split asked for: its own samples counted and named, not the test split's
    spec = cfg.data.model_copy(update={"split_seed": 7})
    other_val = set(build_data(spec).info["indices"]["val"])
    assert other_val & trained
    with pytest.warns(PeerdistillWarning, match=f"^{len(other_val & trained)} of {len(other_val)} samples of the "
                                                "scored val split are training samples of the run"):
        evaluate_run(run, split="val", data_spec=spec)
    with warnings.catch_warnings():  # its own split, or the training split asked for: nothing to say
        warnings.simplefilter("error", PeerdistillWarning)
        evaluate_run(run, data_spec=cfg.data)
        evaluate_run(run, split="train", data_spec=cfg.data.model_copy(update={"split_seed": 7}))
    # every sample of its own data: the training split among them, said so
    with pytest.warns(PeerdistillWarning, match=rf"the all split of the run's own data holds its {len(trained)} "
                                                r"training and \d+ validation samples beside its \d+ test ones, so "
                                                r"these figures are not held out: score its test split instead"):
        evaluate_run(run, split="all")
    other = build_data(cfg.data.model_copy(update={"split_seed": 5}))  # handed over in Python: its source said
    other.info["source"] = "an external set"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        evaluate_run(run, split="all", data=other)
    assert not [w for w in said if "run's own data" in str(w.message)]


def test_the_runs_own_folder_changed_since_and_scored_as_other_data_says_what_it_trained_on(tmp_path):
    """eval refuses a run's data that splits otherwise than in training and points at
    data.root=PATH, whose figures then say how many of the images scored the run trained on."""
    import warnings

    from peerdistill.errors import DataError, PeerdistillWarning

    rng = np.random.default_rng(0)
    _grey_class_folders(tmp_path / "imgs", 15, rng)
    cfg = _trained_on_folders(tmp_path / "imgs", "f", tmp_path / "runs")
    run = tmp_path / "runs" / "f"
    with warnings.catch_warnings():  # unchanged: its own test split, nothing to say
        warnings.simplefilter("error", PeerdistillWarning)
        evaluate_run(run, data_spec=cfg.data)
    for i in range(15, 20):  # images added since: the splits are cut anew
        Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "imgs" / "a" / f"{i}.png")
    with pytest.raises(DataError, match="data.root=PATH"):
        evaluate_run(run)
    with pytest.warns(PeerdistillWarning, match=r"\d+ of 7 samples of the scored test split are training samples of "
                                                r"the run .* the data has changed since training"):
        evaluate_run(run, data_spec=cfg.data)


def test_the_overlap_is_found_for_a_run_trained_on_a_relative_root_scored_from_elsewhere(tmp_path, monkeypatch):
    from peerdistill.errors import PeerdistillWarning

    _grey_class_folders(tmp_path / "project" / "imgs", 12, np.random.default_rng(0), lambda label, i: f"{label}{i}.png")
    monkeypatch.chdir(tmp_path / "project")  # trained with data.root 'imgs', relative to this folder
    cfg = _trained_on_folders("imgs", "rel", tmp_path / "runs")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    spec = cfg.data.model_copy(update={"root": str(tmp_path / "project" / "imgs"), "split_seed": 7})
    with pytest.warns(PeerdistillWarning, match="samples of the scored test split are training samples of the run"):
        evaluate_run(tmp_path / "runs" / "rel", data_spec=spec)


def test_a_copy_of_the_runs_image_folder_scored_whole_is_known_as_its_own_data(tmp_path):
    # only the same folder (under any path) was known: a copy scored --split all counted training images as held out
    import shutil

    from peerdistill.errors import PeerdistillWarning

    _grey_class_folders(tmp_path / "imgs", 12, np.random.default_rng(0), lambda label, i: f"{label}{i}.png")
    cfg = _trained_on_folders(tmp_path / "imgs", "own", tmp_path / "runs")
    shutil.copytree(tmp_path / "imgs", tmp_path / "copy")
    train_files = json.loads((tmp_path / "runs" / "own" / "run.json").read_text())["data_info"]["files"]["train"]
    trained = len(train_files)
    copy = cfg.data.model_copy(update={"root": str(tmp_path / "copy")})
    with pytest.warns(PeerdistillWarning, match=rf"^{trained} of 24 samples of the scored all split are training "
                                                rf"samples of the run \(its own data, '.*copy'\)"):
        evaluate_run(tmp_path / "runs" / "own", data_spec=copy, split="all")
    (tmp_path / "copy" / "b" / "b0.png").unlink()  # another set of files: other data, its images found by content
    left = trained - any(Path(f).name == "b0.png" for f in train_files)
    with pytest.warns(PeerdistillWarning, match=rf"^{left} of 23 scored inputs are identical to inputs the run trained on"):
        evaluate_run(tmp_path / "runs" / "own", data_spec=copy, split="all")


def test_no_overlap_is_claimed_for_the_runs_own_split_or_names_its_split_folders_share():
    import warnings

    from peerdistill.errors import PeerdistillWarning
    from peerdistill.scored_data import _split_keys_changed, _warn_if_trained_on

    # given split folders numbering their images alike: '0' is in train and in test, yet no leak
    own = {"source": "/d", "split": {"train": ["0", "1", "2"], "val": ["5"], "test": ["0", "1"]}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)
        _warn_if_trained_on(own, own, "test", "advice")
    dealt_anew = {"source": "/d", "split": {"train": ["0", "5"], "val": ["1"], "test": ["0", "1", "2"]}}
    with pytest.warns(PeerdistillWarning, match="^1 of 3 samples of the scored test split are training samples"):
        _warn_if_trained_on(dealt_anew, own, "test", "advice")  # '2' only: '0' and '1' are the run's own test names too
    saved = DataSpec(kind="digits").model_dump(mode="json")
    assert _split_keys_changed(DataSpec(kind="digits", augment=["hflip"]), saved) == []
    assert _split_keys_changed(DataSpec(kind="digits", split_seed=3), saved) == ["split_seed"]
    assert _split_keys_changed(DataSpec(kind="digits", folds=3, split_seed=5), saved) == ["split_seed", "folds"]


def test_what_counts_as_the_runs_own_files_and_the_advice_for_them():
    from peerdistill.scored_data import _advice_for_own_data, _reads_the_same_files

    saved = DataSpec(kind="folders", root="/d").model_dump(mode="json")
    assert _reads_the_same_files(DataSpec(kind="folders", root="/d"), saved)
    # an external set in folders of its own beside the training ones, numbered alike: other data
    assert not _reads_the_same_files(DataSpec(kind="folders", root="/d", images="ext_images", masks="ext_masks"), saved)
    assert _reads_the_same_files(DataSpec(kind="folders", root="/d"), None)  # trained from Python: not known
    # the same folders written another way, or read as another kind: the run's own files still
    assert _reads_the_same_files(DataSpec(kind="folders", root="/d", images="./images/"), saved)
    assert _reads_the_same_files(DataSpec(kind="mask_boxes", root="/d"), saved)
    digits, seven = DataSpec(kind="digits"), DataSpec(kind="digits", split_seed=7)
    assert _advice_for_own_data("all", digits, saved) == "score its test split instead"
    assert "evaluate_run(run, data=splits)" in _advice_for_own_data("test", seven, None)
    assert "(drop data.split_seed; the data as it was in training)" in _advice_for_own_data("test", seven, digits.model_dump(mode="json"))
    assert "has changed since training" in _advice_for_own_data("val", digits, digits.model_dump(mode="json"))


def test_which_layouts_give_their_own_test_split(tmp_path):
    """compare --folds asks the layout alone: a train/ folder without test/, two of the three
    split folders, or a list without a split column give none; a tab-separated list is read
    by its tabs."""
    from peerdistill.data.sources import given_test_split

    def spec(**data):
        return DataSpec(**data)

    for d in ("classes/train/a", "classes/train/b", "seg/train", "seg/val"):
        (tmp_path / d).mkdir(parents=True)
    assert given_test_split(spec(kind="image_folder", root=str(tmp_path / "classes"))) is None
    assert given_test_split(spec(kind="folders", root=str(tmp_path / "seg"))) is None
    (tmp_path / "seg" / "test").mkdir()
    assert "its train/, val/ and test/ folders" in given_test_split(spec(kind="folders", root=str(tmp_path / "seg")))
    (tmp_path / "classes" / "test").mkdir()
    assert "its train/ and test/ folders" in given_test_split(spec(kind="image_folder", root=str(tmp_path / "classes")))
    (tmp_path / "list.tsv").write_text("path\tlabel, or not\tsplit\nx.png\ta\ttrain\n")
    (tmp_path / "plain.csv").write_text("path,label\nx.png,a\n")
    assert "its split column" in given_test_split(spec(kind="csv", root=str(tmp_path / "list.tsv")))
    assert given_test_split(spec(kind="csv", root=str(tmp_path / "plain.csv"))) is None
    split_dirs = spec(kind="folders", root=str(tmp_path / "other"), split_dirs={"train": "training"})
    assert "its split folders, data.split_dirs" in given_test_split(split_dirs)
    assert given_test_split(spec(kind="shapes")) == "data kind 'shapes' (it generates its splits apart)"


def _one_patient_of_a_class(tmp_path, **data) -> dict:
    """A compare tree over a CSV of 12 patients of 3 images, one patient alone of class 'normal':
    the fold holding it in val or test cannot train on that class."""
    lines = ["patient_id,path,label"]
    for p in range(12):
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * (p % 3) + i, np.uint8)).save(tmp_path / f"p{p}_{i}.png")
            lines.append(f"P{p},p{p}_{i}.png,{'normal' if p == 0 else 'pneumonia'}")
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    return {**FAST, "name": "cv", "out_dir": str(tmp_path / "runs"),
            "data": {"kind": "csv", "root": str(tmp_path / "x.csv"), "grey": True, "group_column": "patient_id",
                     "val_fraction": 0.1, **data}}


@pytest.mark.parametrize("stratify", [False, True])
def test_a_grouped_fold_that_would_train_on_no_image_of_a_class_is_refused_before_any_run(tmp_path, stratify):
    """Review 49b: a fold whose groups of a class all fall in its val and test splits stopped
    only as it began, after the folds before it had trained (for every setting and seed before)."""
    tree = _one_patient_of_a_class(tmp_path, group_stratify=stratify, split_seed=5 if stratify else 0)
    fix = "try another data.split_seed, fewer folds" + ("" if stratify else ", or data.group_stratify=true")
    # (these seeds put the class's one patient in fold 1's val or test: fold 0, which --folds builds first, trains)
    with pytest.raises(ConfigError, match=r"ml, seed 0, fold 1: fold 1 of 3 would train on no image of class\(es\) "
                                          r"\['normal'\]: data.group_column keeps each group whole.*" + re.escape(fix)):
        compare(tree, None, 1, folds=3, progress=False)
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_a_fold_zero_without_a_class_is_said_with_its_context_not_a_type_error(tmp_path):
    """--folds builds fold 0 first and says which run it found a problem in: an error whose type
    takes a problem and an advice (SplitError) came out as a TypeError (review of 49b's finding)."""
    from peerdistill.errors import SplitError, reworded

    again = reworded(SplitError("2 groups", "give more"), "folds=3: ml, seed 0, fold 0: 2 groups: give more")
    assert isinstance(again, DataError) and str(again) == "folds=3: ml, seed 0, fold 0: 2 groups: give more"
    assert type(reworded(ConfigError("x"), "y: x")) is ConfigError
    tree = _one_patient_of_a_class(tmp_path, group_stratify=True, split_seed=0)  # (the patient in fold 0's test)
    with pytest.raises(DataError, match=r"folds=3: ml, seed 0, fold 0: class\(es\) \[0\] are in the val or test labels "
                                        r"but have no training sample"):
        compare(tree, None, 1, folds=3, progress=False)


SEG_FAST = {"task": "segmentation", "teacher": None, "students": [{"arch": "unet", "args": {"width": 4, "depth": 1}}],
            "train": {"epochs": 1, "batch_size": 8}, "distill": {"preset": "independent"}}


def _three_class_pairs(root, n: int, rare: int, patient=None) -> None:
    """``n`` image/mask pairs of class indices, class 1 in every mask and class 2 in pair ``rare``
    alone; ``patient(i)`` prefixes pair i's name with its group."""
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for i in range(n):
        name = f"{patient(i)}_{i:02d}.png" if patient else f"{i:02d}.png"
        mask = np.zeros((8, 8), np.uint8)
        mask[1:4, 1:5] = 1
        if i == rare:
            mask[5:7, 5:7] = 2
        Image.fromarray(np.full((8, 8), 7 * i, np.uint8)).save(root / "images" / name)
        Image.fromarray(mask).save(root / "masks" / name)


def test_a_segmentation_fold_that_would_train_on_no_pixel_of_a_class_is_refused_before_any_run(tmp_path, monkeypatch):
    """Review 50c: only fold 0 was read before the runs, so a later fold whose training masks
    lacked a class stopped as it began, after the folds before it had trained; --dry-run said
    nothing. Every fold is now dealt first, as the loader deals it (fold_cut), naming the fold."""
    _three_class_pairs(tmp_path / "seg", 15, rare=4)
    # a seed whose fold 0 trains on the rare pair and a later fold does not (found as the loader cuts)
    seed, fold = next((s, k) for s in range(100) for k in range(1, 5)
                      if 4 in fold_cut(15, 0, 5, 0.2, s)[0] and 4 not in fold_cut(15, k, 5, 0.2, s)[0]
                      and all(4 in fold_cut(15, j, 5, 0.2, s)[0] for j in range(1, k)))
    tree = {**SEG_FAST, "name": "cv", "out_dir": str(tmp_path / "runs"),
            "data": {"kind": "folders", "root": str(tmp_path / "seg"), "grey": True, "val_fraction": 0.2,
                     "split_seed": seed}}
    refusal = (rf"independent, seed 0, fold {fold}: fold {fold} of 5 would train on no pixel of class\(es\) \['2'\]: "
               r"the images holding that class all fall in its val and test splits; try another data.split_seed, "
               r"fewer folds$")
    import peerdistill.data.segmentation as segmentation

    decoded = []  # each mask decoded once: fold 0's read gives every mask's classes (they were read twice)
    real = segmentation.read_mask_values
    monkeypatch.setattr(segmentation, "read_mask_values",
                        lambda path, *args, **kwargs: decoded.append(path) or real(path, *args, **kwargs))
    for dry_run in (True, False):
        decoded.clear()
        with pytest.raises(ConfigError, match=refusal), warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            compare(tree, ["independent"], 2, folds=5, progress=False, dry_run=dry_run, console=Console(quiet=True))
        assert sorted(decoded) == sorted((tmp_path / "seg" / "masks").iterdir())
        # (seed 0's run named, the first to stop; review 50e: the last seed's was)
        # fold 0's val lacks class 2: its advice is not said ahead of the runs, each of which says its own (review 50c)
        assert not [w for w in said if "the val masks hold no pixel" in str(w.message)]
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_a_later_grouped_fold_its_groups_cannot_fill_is_refused_before_any_run(tmp_path):
    """Review 50c: 3 patients of 9, 10 and 1 images in 3 folds: fold 0 could be cut, a later one
    could not (val took the two groups left beside its test fold), found after fold 0 trained."""
    from peerdistill.data.splits import group_cut

    def patient(i):
        return "a" if i < 9 else "b" if i < 19 else "c"

    _three_class_pairs(tmp_path / "seg", 20, rare=0, patient=patient)
    groups = [patient(i) for i in range(20)]

    def cut(seed, fold):
        try:
            return group_cut(groups, 0.2, 0.2, seed, 3, fold)
        except DataError:
            return None

    seed, fold = next((s, k) for s in range(100) for k in (1, 2)
                      if cut(s, 0) is not None and cut(s, k) is None and (k == 1 or cut(s, 1) is not None))
    tree = {**SEG_FAST, "name": "cv", "out_dir": str(tmp_path / "runs"),
            "data": {"kind": "folders", "root": str(tmp_path / "seg"), "grey": True, "val_fraction": 0.2,
                     "split_seed": seed, "group_pattern": r"^([abc])_"}}
    with pytest.raises(DataError, match=rf"independent, seed 0, fold {fold}: fold {fold} of 3: 3 groups are too few to "
                                        r"keep each one whole in train, val and test: .*or try another "
                                        r"data.split_seed or fewer folds$"):
        compare(tree, ["independent"], 1, folds=3, progress=False, console=Console(quiet=True))
    assert not (tmp_path / "runs").exists()
