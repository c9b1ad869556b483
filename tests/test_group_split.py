"""Splits that keep a patient's images together (data.group_pattern)."""

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec, validate
from peerdistill.data import build_data
from peerdistill.data.splits import group_cut, group_ids
from peerdistill.errors import ConfigError, DataError, PeerdistillWarning, SplitError


def patients(counts):
    return [f"p{k}" for k, n in enumerate(counts) for _ in range(n)]


def test_every_group_lands_whole_in_one_split_at_about_the_fractions():
    counts = np.random.default_rng(0).integers(1, 9, 40)
    groups = patients(counts)
    train, val, test = group_cut(groups, 0.15, 0.2, seed=3)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(groups)))
    sets = [{groups[i] for i in part} for part in (train, val, test)]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    # each cut stops at the first group that reaches its share of the images
    assert 0.2 * len(groups) <= len(test) < 0.2 * len(groups) + counts.max()
    assert 0.15 * len(groups) <= len(val) < 0.15 * len(groups) + counts.max()
    again = group_cut(groups, 0.15, 0.2, seed=3)
    assert all((a == b).all() for a, b in zip(again, (train, val, test)))
    assert set(group_cut(groups, 0.15, 0.2, seed=4)[2].tolist()) != set(test.tolist())  # the seed moves it


def test_folds_test_each_group_once_with_balanced_image_counts():
    counts = np.random.default_rng(1).integers(1, 6, 25)
    groups = patients(counts)
    tested = []
    for fold in range(5):
        train, val, test = group_cut(groups, 0.1, 0.0, seed=0, folds=5, fold=fold)
        assert not ({groups[i] for i in test} & {groups[i] for i in np.concatenate([train, val])})
        tested += [groups[i] for i in test]
        assert abs(len(test) - len(groups) / 5) <= counts.max()
    assert sorted(set(tested)) == sorted(set(groups)) and len(tested) == len(groups)
    with pytest.raises(DataError, match="3 groups cannot fill 5 folds"):
        group_cut(patients([2, 2, 2]), 0.1, 0.0, seed=0, folds=5)


def test_a_path_whose_optional_group_takes_no_part_has_no_group():
    # '(x)?p' matches every name, but its group is None where there is no x: refused by name,
    # as a path the pattern misses (np.unique failed on the None with a TypeError before)
    with pytest.raises(DataError, match=r"matches no group in 1 of 2 image paths.*'neg/p1.png'"):
        group_ids(["a/xp1.png", "neg/p1.png"], r"(x)?p")
    assert group_ids(["a/xp1.png"], r"(x)?p") == ["x"]


def test_group_ids_come_from_the_first_capture_or_the_whole_match():
    assert group_ids(["a/p12_1.png", "b/p12_2.png", "a/p7_1.png"], r"p(\d+)_") == ["12", "12", "7"]
    assert group_ids(["x/p12_1.png"], r"p\d+") == ["p12"]
    with pytest.raises(DataError, match=r"matches no group in 1 of 2 image paths \(e.g. 'b/q1.png'\)"):
        group_ids(["a/p1_1.png", "b/q1.png"], r"p(\d+)_")
    with pytest.raises(DataError, match="too few to keep each one whole"):
        group_cut(["a", "a", "b"], 0.2, 0.2, seed=0)


def save_grey(path, level):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), level, np.uint8)).save(path)


def test_an_image_folder_is_split_by_patient(tmp_path):
    rng = np.random.default_rng(2)
    for p in range(24):
        label = "pneumonia" if p % 2 else "normal"
        for i in range(int(rng.integers(1, 5))):
            save_grey(tmp_path / "xr" / label / f"patient{p}_view{i}.png", 40 + 10 * (p % 2) + i)
    spec = DataSpec(kind="image_folder", root=str(tmp_path / "xr"), grey=True, group_pattern=r"patient(\d+)_")
    data = build_data(spec)
    files = data.info["files"]
    split_of = {}
    for split, names in files.items():
        for name in names:
            assert split_of.setdefault(name.split("/")[1].split("_")[0], split) == split  # one patient, one split
    assert sum(data.info["groups"].values()) == 24 and len(data.train) + len(data.val) + len(data.test) == sum(
        len(v) for v in files.values())


def test_image_mask_folders_are_split_by_the_group_in_their_ids(tmp_path):
    for p in range(12):
        for i in range(3):
            save_grey(tmp_path / "seg" / "images" / f"case{p}-{i}.png", 60)
            save_grey(tmp_path / "seg" / "masks" / f"case{p}-{i}.png", 255 * (i % 2))
    data = build_data(DataSpec(kind="folders", root=str(tmp_path / "seg"), grey=True, binary_masks=True,
                               group_pattern=r"case(\d+)-"))
    cases = {s: {n.split("-")[0] for n in names} for s, names in data.info["files"].items()}
    assert not (cases["train"] & cases["test"] or cases["train"] & cases["val"] or cases["val"] & cases["test"])
    assert data.info["groups"] == {s: len(c) for s, c in cases.items()}


def test_the_pattern_is_checked_where_the_config_is_read():
    with pytest.raises(ConfigError, match="data.group_pattern 'p\\(' is not a regular expression"):
        validate({"data": {"kind": "image_folder", "root": "x", "group_pattern": "p("}})
    with pytest.raises(ConfigError, match="data.group_pattern applies to data kind"):
        validate({"data": {"kind": "npz", "root": "x.npz", "group_pattern": "p"}})


def test_the_seed_moves_the_folds_whatever_the_group_sizes():
    groups = patients(range(1, 11))  # ten groups of distinct sizes
    folds = [tuple(sorted({groups[i] for i in group_cut(groups, 0.1, 0.0, seed=s, folds=5, fold=0)[2]}))
             for s in range(4)]
    assert len(set(folds)) > 1


def test_a_class_left_out_of_training_by_the_groups_is_named_with_the_counts(tmp_path):
    for p in range(22):
        label = "rare" if p >= 20 else "normal"
        for i in range(3):
            save_grey(tmp_path / "xr" / label / f"patient{p}_{i}.png", 40 + p)
    failures, passed = [], None
    for seed in range(20):
        spec = DataSpec(kind="image_folder", root=str(tmp_path / "xr"), grey=True, group_pattern=r"patient(\d+)_",
                        split_seed=seed)
        try:
            passed = build_data(spec)
        except DataError as exc:
            failures.append(str(exc))
    assert failures and passed is not None
    assert "Images per split and class" in failures[0] and "try another data.split_seed" in failures[0]
    counts = passed.info["class_counts"]
    assert sum(c["rare"] for c in counts.values()) == 6 and counts["train"]["rare"] > 0


def write_cases(root, cases=16, views=3):
    """Image/mask pairs ``case{p}-{i}.png``: a bright rectangle on noise, its mask 0/255."""
    rng = np.random.default_rng(3)
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for p in range(cases):
        for i in range(views):
            image = rng.integers(0, 60, (16, 16)).astype(np.uint8)
            mask = np.zeros((16, 16), np.uint8)
            mask[4 + p % 5:10 + p % 5, 3:9 + i] = 255
            image[mask > 0] += 150
            Image.fromarray(image).save(root / "images" / f"case{p}-{i}.png")
            Image.fromarray(mask).save(root / "masks" / f"case{p}-{i}.png")


def test_a_bootstrap_of_a_grouped_run_draws_whole_patients(tmp_path):
    import torch

    from peerdistill.build import train_from_config
    from peerdistill.runs import _run_data, evaluate_run, load_cohort, task_for

    write_cases(tmp_path / "seg")
    train_from_config(validate({"name": "g", "out_dir": str(tmp_path), "task": "segmentation", "teacher": None,
                                "data": {"kind": "folders", "root": str(tmp_path / "seg"), "grey": True,
                                         "binary_masks": True, "group_pattern": r"case(\d+)-", "test_fraction": 0.3},
                                "students": [{"arch": "unet", "args": {"width": 4, "depth": 1}}],
                                "distill": {"preset": "independent"}, "train": {"epochs": 1, "batch_size": 8}}),
                      progress=False)
    scores = evaluate_run(tmp_path / "g", bootstrap=40)["student1"]
    cohort, meta = load_cohort(tmp_path / "g")
    data, task = _run_data(meta), task_for(meta)
    groups = [n.split("-")[0] for n in data.info["files"]["test"]]
    assert scores["ci95_groups"] == len(set(groups)) >= 2
    with torch.no_grad():
        probs = cohort.students[0].module.eval()(data.test.x).softmax(1)
    members = [np.flatnonzero(np.asarray(groups) == g) for g in dict.fromkeys(groups)]
    draws, dice = np.random.default_rng(0), []
    for _ in range(30):
        idx = np.concatenate([members[g] for g in draws.integers(0, len(members), len(members))])
        meter = task.new_meter()
        meter.update(probs[idx], data.test.y[idx])
        dice.append(meter.compute()["dice"])
    assert (scores["ci95_low_dice"], scores["ci95_high_dice"]) == pytest.approx(tuple(np.percentile(dice, [2.5, 97.5])))
    # an external set whose names carry no case id, scored whole: drawn by image, and said (review 45e:
    # it stopped, after scoring every image, on the run's group_pattern)
    for folder in ("images", "masks"):
        (tmp_path / "other" / folder).mkdir(parents=True)
    for k in range(6):
        for folder in ("images", "masks"):
            source = tmp_path / "seg" / folder / f"case{k}-0.png"
            (tmp_path / "other" / folder / f"img{k}.png").write_bytes(source.read_bytes())
    other = DataSpec(kind="folders", root=str(tmp_path / "other"), grey=True, binary_masks=True,
                     group_pattern=r"case(\d+)-")
    with pytest.warns(PeerdistillWarning, match=r"the scored files' names do not carry the group data.group_pattern "
                                                r"'case\(\\d\+\)-' finds, so the bootstrap draws samples"):
        whole = evaluate_run(tmp_path / "g", bootstrap=40, split="all", data_spec=other)["student1"]
    assert "ci95_groups" not in whole and whole["ci95_low_dice"] <= whole["dice"] <= whole["ci95_high_dice"]


def imbalanced_patients(seed=0):
    """60 patients, 15 of them ill, 1 to 6 images each: a cut blind to class can leave a split
    with few ill patients."""
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for p in range(60):
        for _ in range(int(rng.integers(1, 7))):
            groups.append(f"p{p}")
            labels.append(int(p < 15))
    return groups, np.array(labels)


def test_stratified_group_splits_keep_patients_whole_and_classes_in_proportion():
    from peerdistill.data.splits import stratified_group_cut

    groups, labels = imbalanced_patients()
    share = labels.mean()
    parts = stratified_group_cut(groups, labels, 0.2, 0.2, seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))  # every image once
    owners = [{groups[i] for i in part} for part in parts]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    for part in parts:
        assert abs(labels[part].mean() - share) < 0.06  # the ill share of every split near the whole's
    assert abs(len(parts[2]) / len(labels) - 0.2) < 0.06 and abs(len(parts[1]) / len(labels) - 0.2) < 0.06
    again = stratified_group_cut(groups, labels, 0.2, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = stratified_group_cut(groups, labels, 0.2, 0.2, seed=4)
    assert not np.array_equal(parts[2], other[2])
    # blind to class, the same cut strays further from the whole's share, over many seeds
    blind = [max(abs(labels[p].mean() - share) for p in group_cut(groups, 0.2, 0.2, seed=s)) for s in range(20)]
    strat = [max(abs(labels[p].mean() - share) for p in stratified_group_cut(groups, labels, 0.2, 0.2, seed=s))
             for s in range(20)]
    assert np.mean(strat) < np.mean(blind)


def test_stratified_group_folds_test_every_patient_once():
    from peerdistill.data.splits import stratified_group_cut

    groups, labels = imbalanced_patients(1)
    tested = [stratified_group_cut(groups, labels, 0.2, 0.2, seed=0, folds=5, fold=k)[2] for k in range(5)]
    assert sorted(np.concatenate(tested).tolist()) == list(range(len(labels)))
    for part in tested:
        assert 0.1 < labels[part].mean() < 0.45


def test_an_image_folder_split_by_patient_and_class(tmp_path):
    for p in range(30):
        label = "pneumonia" if p < 8 else "normal"
        for i in range(1 + p % 3):
            save_grey(tmp_path / "xr" / label / f"patient{p}_view{i}.png", 40 + i)
    spec = DataSpec(kind="image_folder", root=str(tmp_path / "xr"), grey=True, group_pattern=r"patient(\d+)_",
                    group_stratify=True)
    data = build_data(spec)
    assert data.info["splits"].startswith("by group (data.group_pattern, stratified)")
    assert all(counts["pneumonia"] > 0 for counts in data.info["class_counts"].values())
    with pytest.raises(ConfigError, match="data.group_stratify deals groups by class: it needs the groups, data.group_pattern"):
        validate({"data": {"kind": "image_folder", "root": "x", "group_stratify": True}})
    with pytest.raises(ConfigError, match="data.group_stratify applies to data kind"):
        validate({"task": "segmentation", "data": {"kind": "folders", "root": "x", "group_pattern": "p",
                                                   "group_stratify": True}})


def test_stratified_group_cut_gives_val_and_test_their_share_of_the_whole():
    """100 patients of 2 images, the first 20 ill, val = test = 0.2: test is 1/round(1 / 0.2) = 1/5
    of 200 images (40), val 1/round(0.8 / 0.2) = 1/4 of the other 160 (40, 20 % of the whole, not
    1/5 of the rest), each with 1/5 of the ill patients' 40 images; equal groups and a class count
    every fold count divides make the folds exact."""
    from peerdistill.data.splits import stratified_group_cut

    groups = [f"p{k}" for k in range(100) for _ in range(2)]
    labels = np.array([int(k < 20) for k in range(100) for _ in range(2)])
    for seed in range(3):
        train, val, test = stratified_group_cut(groups, labels, 0.2, 0.2, seed=seed)
        assert (len(train), len(val), len(test)) == (120, 40, 40)
        assert (labels[val].sum(), labels[test].sum()) == (8, 8)
        assert not {groups[i] for i in train} & {groups[i] for i in np.concatenate([val, test])}


def _csv_of_patients(tmp_path, patients_count=24, views=3, extra_columns=True):
    """A CSV of X-rays whose patient id lives in a column only (file names are UIDs)."""
    lines = ["patient_id,filepath,diagnosis"]
    for p in range(patients_count):
        label = "pneumonia" if p % 2 else "normal"
        for i in range(views):
            name = f"img/{(p * 7919 + i * 104729) % 1000003:07d}.png"  # nothing of the patient in it
            save_grey(tmp_path / name, 40 + 10 * (p % 2) + i)
            lines.append(f"P{p:03d},{name},{label}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    return DataSpec(kind="csv", root=str(tmp_path / "labels.csv"), path_column="filepath", label_column="diagnosis",
                    grey=True)


def test_a_csv_is_split_by_the_patient_its_group_column_names(tmp_path):
    """Review 44f: a CSV's patient_id column was read by nothing, and the default split put 87 of
    100 test patients' images in training too. data.group_column keeps each patient whole; a
    column that looks like a patient's and repeats is warned of while nothing groups."""
    from peerdistill.errors import PeerdistillWarning

    import warnings

    from peerdistill.data.splits import kept_whole

    spec = _csv_of_patients(tmp_path)
    # a patient's age repeats too (review 45a): grouping by it would be no patient split, so it is not named
    lines = (tmp_path / "labels.csv").read_text().splitlines()
    (tmp_path / "labels.csv").write_text("\n".join([lines[0] + ",Patient Age"] + [f"{line},{40 + k % 3}"
                                                   for k, line in enumerate(lines[1:])]) + "\n")
    with pytest.warns(PeerdistillWarning) as caught:
        build_data(spec)
    said = [str(w.message) for w in caught if "ids, a patient's say" in str(w.message)]
    assert said == [f"'{tmp_path / 'labels.csv'}' has a column 'patient_id' that repeats ids, a patient's say, and is "
                    "read by nothing: the split may put one patient's images in training and in test; set "
                    "data.group_column=patient_id (the column naming each patient) to keep each whole"]
    with warnings.catch_warnings(), kept_whole():  # scored whole (eval --split all): nothing is split
        warnings.filterwarnings("error", message=".*ids, a patient's say")
        build_data(spec)
    data = build_data(spec.model_copy(update={"group_column": "patient_id"}))
    groups = data.info["sample_groups"]
    assert all(len(groups[s]) == len(data.info["files"][s]) for s in ("train", "val", "test"))
    sets = [set(groups[s]) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]) and sum(map(len, sets)) == 24
    assert data.info["splits"].startswith("by group (data.group_column)")
    # the recorded groups are each file's own: the CSV's patient of every file
    of_file = {line.split(",")[1]: line.split(",")[0]
               for line in (tmp_path / "labels.csv").read_text().splitlines()[1:]}
    assert all(of_file[f] == g for s in groups for f, g in zip(data.info["files"][s], groups[s]))
    stratified = build_data(spec.model_copy(update={"group_column": "patient_id", "group_stratify": True}))
    assert set(stratified.info["sample_groups"]["test"]).isdisjoint(stratified.info["sample_groups"]["train"])


def test_group_column_mistakes_are_named(tmp_path):
    spec = _csv_of_patients(tmp_path, patients_count=6, views=2)
    with pytest.raises(DataError, match=r"has no column 'patient' \(data.group_column; columns: \['patient_id', "):
        build_data(spec.model_copy(update={"group_column": "patient"}))
    text = (tmp_path / "labels.csv").read_text().replace("P003,", ",", 1)
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(DataError, match=r"line 8: the patient_id field \(data.group_column\) is empty: give every "):
        build_data(spec.model_copy(update={"group_column": "patient_id"}))
    with pytest.raises(ConfigError, match="data.group_pattern and data.group_column both name the groups: keep one"):
        validate({"data": {"kind": "csv", "root": "x.csv", "group_column": "p", "group_pattern": "(x)"}})
    with pytest.raises(ConfigError, match="group_column"):
        validate({"data": {"kind": "image_folder", "root": "x", "group_column": "p"}})  # a CSV's alone


def test_eval_bootstraps_a_csv_runs_test_split_by_its_group_column(tmp_path, capsys):
    from peerdistill.build import train_from_config
    from peerdistill.runs import evaluate_run

    spec = _csv_of_patients(tmp_path, patients_count=20)
    train_from_config(validate({"name": "c", "out_dir": str(tmp_path / "runs"), "teacher": None,
                                "data": {**spec.model_dump(mode="json"), "group_column": "patient_id",
                                         "image_size": [8, 8]},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}],
                                "distill": {"preset": "independent"}, "train": {"epochs": 1, "batch_size": 8}}),
                      progress=False)
    import json

    groups = json.loads((tmp_path / "runs" / "c" / "run.json").read_text())["data_info"]["sample_groups"]
    tested = groups["test"]
    assert evaluate_run(tmp_path / "runs" / "c", bootstrap=40)["student1"]["ci95_groups"] == len(set(tested)) >= 2
    from peerdistill.cli import main

    assert main(["eval", str(tmp_path / "runs" / "c"), "--bootstrap", "40"]) == 0  # the caption names the key
    assert (f"resamples of its {len(set(tested))} groups (data.group_column 'patient_id')"
            in " ".join(capsys.readouterr().out.split()))
    # each row's patient in the per-sample table (review 50c: it had to be parsed out of the names)
    import csv

    assert main(["eval", str(tmp_path / "runs" / "c"), "--per-sample", str(tmp_path / "rows.csv")]) == 0
    rows = [r for r in csv.DictReader((tmp_path / "rows.csv").open()) if r["model"] == "student1"]
    assert [r["group"] for r in rows] == tested and list(rows[0])[:3] == ["sample", "file", "group"]
    # scored whole (--split all, as an external set is): drawn by patient too, every patient of every split
    whole = evaluate_run(tmp_path / "runs" / "c", bootstrap=40, split="all",
                         data_spec=spec.model_copy(update={"group_column": "patient_id", "image_size": [8, 8]}))
    assert whole["student1"]["ci95_groups"] == len(set(groups["train"] + groups["val"] + tested)) == 20
    # an external table without the column is scored whole all the same (nothing is split), by image
    table = (tmp_path / "labels.csv").read_text().splitlines()
    (tmp_path / "other.csv").write_text("\n".join(line.split(",", 1)[1] for line in table) + "\n")
    other = spec.model_copy(update={"root": str(tmp_path / "other.csv"), "group_column": "patient_id",
                                    "image_size": [8, 8]})
    with pytest.warns(PeerdistillWarning, match=r"other.csv' has no column 'patient_id' \(data.group_column\), so the "
                                                r"bootstrap draws samples, not whole groups.*; add it, each sample's "
                                                r"patient, for intervals that draw whole patients"):
        scored = evaluate_run(tmp_path / "runs" / "c", bootstrap=40, split="all", data_spec=other)["student1"]
    assert "ci95_groups" not in scored and scored["ci95_low_accuracy"] <= scored["accuracy"]
    # one patient written two ways by a spreadsheet's re-export (review 45a): two groups, and said
    (tmp_path / "labels.csv").write_text("\n".join(table[:4] + [table[4].replace("P001", "p001")] + table[5:]) + "\n")
    with pytest.warns(PeerdistillWarning, match=r"1 patient_id id\(s\) are written more than one way \('P001' and "
                                                r"'p001'\), and each way is a group of its own"):
        build_data(spec.model_copy(update={"group_column": "patient_id"}))
    (tmp_path / "labels.csv").write_text("\n".join(table) + "\n")
    # too few patients to split: the key that named them is the one to drop
    few = spec.model_copy(update={"group_column": "patient_id"})
    (tmp_path / "labels.csv").write_text("\n".join(table[:7]) + "\n")  # two patients
    with pytest.raises(SplitError, match="2 groups are too few .* drop data.group_column"):
        build_data(few)


def _patients_of(names, pattern=r"patient(\d+)_"):
    return set(group_ids(names, pattern))


def test_given_train_and_test_folders_keep_each_patient_in_one_split(tmp_path):
    """Given train/ and test/ folders with data.group_pattern: a patient in both is refused by
    name; val is cut from train by whole patients (it was cut image by image, putting one
    patient's views in train and val)."""
    for p in range(30):
        label = "pneumonia" if p % 2 else "normal"
        for i in range(3):
            save_grey(tmp_path / "xr" / ("test" if p >= 24 else "train") / label / f"patient{p}_{i}.png", 40 + i)
    spec = DataSpec(kind="image_folder", root=str(tmp_path / "xr"), grey=True, group_pattern=r"patient(\d+)_",
                    val_fraction=0.25)
    data = build_data(spec)
    files = data.info["files"]
    train, val, test = (_patients_of(files[s]) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert train | val == {str(p) for p in range(24)} and test == {str(p) for p in range(24, 30)}
    assert len(files["val"]) == 18  # whole patients of three views: a quarter of train's 72 images
    assert data.info["groups"] == {"train": 18, "val": 6, "test": 6}
    assert data.info["splits"] == "given train and test; val cut from train by group (data.group_pattern), seed 0"
    assert build_data(spec).info["files"] == files  # the same cut again
    assert build_data(spec.model_copy(update={"split_seed": 1})).info["files"]["val"] != files["val"]
    # by class as well
    stratified = build_data(spec.model_copy(update={"group_stratify": True}))
    assert sorted(n.split("/")[1] for n in stratified.info["files"]["val"]).count("normal") == 9
    with pytest.raises(SplitError, match=r"the training split's 24 groups cannot fill the 50 folds data.group_stratify "
                                         r"deals them to for a val split of data.val_fraction 0.02"):
        build_data(spec.model_copy(update={"group_stratify": True, "val_fraction": 0.02}))

    save_grey(tmp_path / "xr" / "test" / "normal" / "patient3_9.png", 40)  # patient 3 now on both sides
    with pytest.raises(DataError, match=r"data.group_pattern finds group '3' in the train and test splits: a patient's "
                                        r"images in two splits are not held out from one another; move each group's "
                                        r"images into one split, or drop data.group_pattern"):
        build_data(spec)
    save_grey(tmp_path / "xr" / "val" / "normal" / "patient0_9.png", 40)
    save_grey(tmp_path / "xr" / "val" / "pneumonia" / "patient5_9.png", 40)
    with pytest.raises(DataError, match=r"group '0' in the train and val splits \(and 2 more groups\)"):
        build_data(spec)


def test_a_csv_split_column_with_a_group_column_cuts_val_by_patient_and_records_them(tmp_path):
    spec = _csv_of_patients(tmp_path, patients_count=20, views=2)
    lines = (tmp_path / "labels.csv").read_text().splitlines()
    lines = [lines[0] + ",split"] + [f"{row},{'test' if int(row[1:4]) >= 16 else 'train'}" for row in lines[1:]]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    spec = spec.model_copy(update={"group_column": "patient_id", "val_fraction": 0.25})
    data = build_data(spec)
    groups = data.info["sample_groups"]
    assert not (set(groups["train"]) & set(groups["val"])) and len(groups["val"]) == 8
    assert set(groups["train"]) | set(groups["val"]) == {f"P{p:03d}" for p in range(16)}
    assert set(groups["test"]) == {f"P{p:03d}" for p in range(16, 20)}
    assert [len(groups[s]) for s in ("train", "val", "test")] == [len(data.train), len(data.val), len(data.test)]
    assert data.info["groups"] == {"train": 12, "val": 4, "test": 4}
    # val rows given: used as they are, a patient on two sides refused
    with_val = [lines[0]] + [line[:-len("train")] + "val" if line.startswith(("P000", "P003")) else line
                             for line in lines[1:]]
    (tmp_path / "labels.csv").write_text("\n".join(with_val) + "\n")
    assert set(build_data(spec).info["sample_groups"]["val"]) == {"P000", "P003"}
    save_grey(tmp_path / "img" / "extra.png", 40)
    leaking = with_val + ["P000,img/extra.png,normal,test"]  # a third view of P000, in test
    (tmp_path / "labels.csv").write_text("\n".join(leaking) + "\n")
    with pytest.raises(DataError, match=r"data.group_column finds group 'P000' in the val and test splits"):
        build_data(spec)


def test_given_segmentation_folders_keep_each_case_in_one_split(tmp_path):
    for p in range(12):
        for i in range(3):
            part = "test" if p >= 9 else "train"
            save_grey(tmp_path / "seg" / part / "images" / f"case{p}-{i}.png", 60)
            save_grey(tmp_path / "seg" / part / "masks" / f"case{p}-{i}.png", 255 * (i % 2))
    spec = DataSpec(kind="folders", root=str(tmp_path / "seg"), grey=True, binary_masks=True,
                    group_pattern=r"case(\d+)-", val_fraction=0.2)
    data = build_data(spec)
    cases = {s: {n.split("-")[0] for n in names} for s, names in data.info["files"].items()}
    assert not (cases["train"] & cases["val"]) and cases["test"] == {"case9", "case10", "case11"}
    assert len(data.val) == 6 and data.info["groups"] == {"train": 7, "val": 2, "test": 3}
    with pytest.raises(SplitError, match=r"the training split's 9 group\(s\) are too few to cut a val split of whole "
                                         r"groups \(data.val_fraction 0.99\)"):
        build_data(spec.model_copy(update={"val_fraction": 0.99}))
    with pytest.raises(DataError, match=r"matches no group in 27 of 27 image ids \(data.pattern's first group, else "
                                        r"the file name less its suffix\) \(e.g. 'case0-0'"):
        build_data(spec.model_copy(update={"group_pattern": r"patient(\d+)"}))
    save_grey(tmp_path / "seg" / "test" / "images" / "case1-5.png", 60)
    save_grey(tmp_path / "seg" / "test" / "masks" / "case1-5.png", 0)
    with pytest.raises(DataError, match=r"data.group_pattern finds group '1' in the train and test splits"):
        build_data(spec)


def test_grouped_folds_draw_their_val_patients_anew_in_each_fold():
    """Review 50c: val was the first groups of one order in every fold, so with 100 patients in
    5 folds 25 were val in four folds and test in the fifth: never trained on. Drawn per fold,
    a patient is val in a given other fold with chance about 0.25, in all four about 0.004."""
    groups = patients([4] * 100)
    for seed in range(3):
        trained = set()
        for fold in range(5):
            train, val, test = group_cut(groups, 0.2, 0.0, seed=seed, folds=5, fold=fold)
            trained |= {groups[i] for i in train}
        assert len(set(groups) - trained) <= 3, seed
    again = [group_cut(groups, 0.2, 0.0, seed=0, folds=5, fold=1)[1] for _ in range(2)]
    assert np.array_equal(*again)  # still fixed by the seed



def test_a_grouped_fold_run_of_an_earlier_version_is_told_apart_from_changed_data(tmp_path):
    """Grouped folds cut before val was drawn per fold split the same files otherwise: eval says
    that, not that the data changed since training (it did not)."""
    import json

    from peerdistill.build import train_from_config
    from peerdistill.runs import evaluate_run

    write_cases(tmp_path / "seg")
    train_from_config(validate({"name": "g", "out_dir": str(tmp_path), "task": "segmentation", "teacher": None,
                                "data": {"kind": "folders", "root": str(tmp_path / "seg"), "grey": True,
                                         "binary_masks": True, "group_pattern": r"case(\d+)-", "folds": 4,
                                         "fold": 1},
                                "students": [{"arch": "unet", "args": {"width": 4, "depth": 1}}],
                                "distill": {"preset": "independent"}, "train": {"epochs": 1, "batch_size": 8}}),
                      progress=False)
    run_json = tmp_path / "g" / "run.json"
    meta = json.loads(run_json.read_text())
    assert meta["data_info"]["group_fold_val"] == "drawn per fold"
    assert evaluate_run(tmp_path / "g")["student1"]["dice"] >= 0  # read as trained: no complaint
    files = meta["data_info"]["files"]
    moved = [f for f in files["val"] if f.startswith(files["val"][0].split("-")[0] + "-")]
    files["val"] = [f for f in files["val"] if f not in moved]  # an earlier cut: another patient in val
    files["train"] = sorted(files["train"] + moved)
    del meta["data_info"]["group_fold_val"]
    run_json.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="the run's grouped folds were cut by an earlier version of peerdistill"):
        evaluate_run(tmp_path / "g")



def test_a_comparison_does_not_reuse_a_grouped_fold_run_an_earlier_version_cut(tmp_path):
    """Review 50e: continued after the per-fold val draw, a comparison reused the earlier runs
    and paired them with new ones that trained on other patients, in silence."""
    import json

    from rich.console import Console

    from peerdistill.compare import compare
    from peerdistill.errors import RunDirError

    write_cases(tmp_path / "seg", cases=9, views=2)
    tree = {"name": "g", "out_dir": str(tmp_path), "task": "segmentation", "teacher": None,
            "data": {"kind": "folders", "root": str(tmp_path / "seg"), "grey": True, "binary_masks": True,
                     "group_pattern": r"case(\d+)-"},
            "students": [{"arch": "unet", "args": {"width": 4, "depth": 1}}],
            "distill": {"preset": "independent"}, "train": {"epochs": 1, "batch_size": 8}}
    compare(tree, None, 1, folds=3, progress=False, console=Console(quiet=True))
    run_json = tmp_path / "g-compare" / "independent-seed0-fold1" / "run.json"
    meta = json.loads(run_json.read_text())
    del meta["data_info"]["group_fold_val"]  # as the earlier version wrote it
    run_json.write_text(json.dumps(meta))
    import shutil

    shutil.rmtree(tmp_path / "g-compare" / "independent-seed0-fold0")  # a run to train before it, in plan order
    for dry_run in (True, False):
        with pytest.raises(RunDirError, match=r"independent-seed0-fold1' was cut into grouped folds by an earlier "
                                              r"version of peerdistill.*delete '.*' to train it again"):
            compare(tree, None, 1, folds=3, progress=False, dry_run=dry_run, console=Console(quiet=True))
    # refused before any run trains (review 50i: fold 0 trained first, then the comparison stopped)
    assert not (tmp_path / "g-compare" / "independent-seed0-fold0").exists()
