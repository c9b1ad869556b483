"""eval --per-sample: a row per scored sample and model, checked against the files' own labels,
predict's probabilities, hand-counted masks and hand-made detections."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from monai.metrics import compute_hausdorff_distance

from peerdistill.bootstrap import sample_meters
from peerdistill.cli import main
from peerdistill.detection import HeadLayout
from peerdistill.per_sample import per_sample_rows, write_per_sample
from peerdistill.tasks import SegmentationTask
from peerdistill.tasks.detection import DetectionTask


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_an_image_folder_runs_rows_name_each_test_file_as_predict_scores_it(tmp_path, capsys):
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    rng = np.random.default_rng(0)
    for name, shift in (("normal", 0), ("pneumonia", 90)):  # the second class brighter: learnable in one epoch
        (tmp_path / "xray" / name).mkdir(parents=True)
        for i in range(20):
            pixels = np.clip(rng.normal(80 + shift, 40, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "xray" / name / f"{name[0]}{i}.png")
    train_from_config(validate({"name": "r", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml", "rampup_epochs": 1},
                                "data": {"kind": "image_folder", "root": str(tmp_path / "xray"), "grey": True},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": 2, "batch_size": 8}}), progress=False)
    run, table = tmp_path / "r", tmp_path / "per_sample.csv"
    assert main(["eval", str(run), "--per-sample", str(table), "--operating-point", "youden", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    rows = read_rows(table)
    files = sorted({r["file"] for r in rows})
    assert len(rows) == 3 * len(files) and len(files) == 8  # student1, student2, ensemble; 20% of 40 images
    assert {r["model"] for r in rows} == {"student1", "student2", "ensemble"}
    for r in rows:  # the truth is the file's own class folder
        assert r["truth"] == r["file"].split("/")[0]
        assert int(r["correct"]) == (r["predicted"] == r["truth"])
        p = float(r["p_pneumonia"])
        assert p + float(r["p_normal"]) == pytest.approx(1, abs=2e-6)
        assert r["op_predicted"] == ("pneumonia" if p >= scores[r["model"]]["op_threshold"] else "normal")
    for model in ("student1", "ensemble"):
        mine = [r for r in rows if r["model"] == model]
        assert np.mean([int(r["correct"]) for r in mine]) == pytest.approx(scores[model]["accuracy"])
        assert np.mean([int(r["op_correct"]) for r in mine]) == pytest.approx(scores[model]["op_accuracy"])
        # the probabilities as scored (9 significant digits: a float32 exactly): the AUC recomputed is the AUC
        from sklearn.metrics import roc_auc_score

        recomputed = roc_auc_score([r["truth"] == "pneumonia" for r in mine], [float(r["p_pneumonia"]) for r in mine])
        assert recomputed == pytest.approx(scores[model]["auc"], abs=1e-12)
    # predict reads each file again and scores it alone: the same probabilities
    predicted = tmp_path / "predicted.csv"
    assert main(["predict", str(run), *[str(tmp_path / "xray" / f) for f in files], "--model", "student1",
                 "--out", str(predicted)]) == 0
    by_file = {r["input"]: float(r["p_pneumonia"]) for r in read_rows(predicted)}
    for r in rows:
        if r["model"] == "student1":
            assert float(r["p_pneumonia"]) == pytest.approx(by_file[str(tmp_path / "xray" / r["file"])], abs=2e-6)
    # neither table may go into the data the run trained on (a CSV there, or over an image)
    image = tmp_path / "xray" / "normal" / "n0.png"
    kept = image.read_bytes()
    for command in (["eval", str(run), "--per-sample", str(tmp_path / "xray" / "rows.csv")],
                    ["eval", str(run), "--per-sample", str(image)],
                    ["predict", str(run), str(image), "--out", str(tmp_path / "xray" / "normal" / "p.csv")]):
        assert main(command) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "data the run reads: writing there could replace" in err or "does not end in .csv" in err, err
    assert image.read_bytes() == kept and not list((tmp_path / "xray").rglob("*.csv"))
    # other image sizes: the message names the setting that gives the run's
    assert main(["eval", str(run), "data.image_size=[12,12]"]) == 2
    assert "resized to the run's size by data.image_size=[8, 8]" in " ".join(capsys.readouterr().err.split())


def test_a_label_csv_the_run_read_is_never_replaced_by_a_table(tmp_path, capsys):
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    rng = np.random.default_rng(1)
    rows = ["path,label"]
    for i in range(30):
        label = "pos" if i % 2 else "neg"
        Image.fromarray(np.clip(rng.normal(60 + 120 * (i % 2), 30, (8, 8)), 0, 255).astype(np.uint8)).save(
            tmp_path / f"im{i}.png")
        rows.append(f"im{i}.png,{label}")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    train_from_config(validate({"name": "r", "out_dir": str(tmp_path / "runs"), "teacher": None,
                                "distill": {"preset": "ml", "rampup_epochs": 0},
                                "data": {"kind": "csv", "root": str(labels), "grey": True},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": 1, "batch_size": 8}}), progress=False)
    run, before = tmp_path / "runs" / "r", labels.read_bytes()
    for command in (["eval", str(run), "--per-sample", str(labels)],
                    ["predict", str(run), str(tmp_path / "im0.png"), "--out", str(labels)]):
        assert main(command) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"is '{labels}', data the run reads" in err and "Traceback" not in err
    assert labels.read_bytes() == before


def test_array_data_rows_are_the_source_rows_for_every_split(fast_tree, tmp_path):
    from sklearn.datasets import load_digits

    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    train_from_config(validate(fast_tree | {"train": {"epochs": 1, "batch_size": 256}, "distill": {"rampup_epochs": 0}}), progress=False)
    run, digits = tmp_path / "runs" / "t", load_digits()
    for split, count in (("test", 360), ("all", len(digits.target))):
        table = tmp_path / f"{split}.csv"
        assert main(["eval", str(run), "--split", split, "--per-sample", str(table)]) == 0
        teacher = [r for r in read_rows(table) if r["model"] == "teacher"]
        assert len(teacher) == count and [int(r["sample"]) for r in teacher] == list(range(count))
        assert [int(r["truth"]) for r in teacher] == [int(digits.target[int(r["row"])]) for r in teacher]
    assert sorted(int(r["row"]) for r in teacher) == list(range(count))  # all: every row once


def test_other_data_scored_whole_is_named_file_by_file(tmp_path):
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    rng = np.random.default_rng(1)
    for root, count in (("xray", 12), ("external", 3)):
        for name in ("normal", "pneumonia"):
            (tmp_path / root / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / root / name / f"{i}.png")
    train_from_config(validate({"name": "r", "out_dir": str(tmp_path), "teacher": None,
                                "distill": {"preset": "ml", "rampup_epochs": 0},
                                "data": {"kind": "image_folder", "root": str(tmp_path / "xray"), "grey": True},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": 1, "batch_size": 8}}), progress=False)
    table = tmp_path / "external.csv"
    assert main(["eval", str(tmp_path / "r"), "--split", "all", f"data.root={tmp_path / 'external'}",
                 "--per-sample", str(table)]) == 0
    rows = [r for r in read_rows(table) if r["model"] == "ensemble"]
    assert sorted(r["file"] for r in rows) == sorted(f"{c}/{i}.png" for c in ("normal", "pneumonia") for i in range(3))
    assert all(r["truth"] == r["file"].split("/")[0] for r in rows)


def test_tempered_probabilities_are_written_and_called_at_the_threshold_chosen_on_them(tmp_path, capsys):
    from tests.conftest import train_two_class_npz_run

    run, _ = train_two_class_npz_run(tmp_path, seed=2)
    table = tmp_path / "t.csv"
    assert main(["eval", str(run), "--temperature-scaling", "--operating-point", "youden", "--per-sample", str(table),
                 "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    rows = read_rows(table)
    for r in rows:  # the columns agree with each other: the threshold was chosen on the tempered probabilities
        assert r["op_predicted"] == ("1" if float(r["p_1"]) >= scores[r["model"]]["op_threshold"] else "0")
    ensemble = [r for r in rows if r["model"] == "ensemble"]
    assert np.mean([int(r["op_correct"]) for r in ensemble]) == pytest.approx(scores["ensemble"]["op_accuracy"])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI about its own internals
def test_segmentation_rows_are_each_images_own_dice_pixels_and_hd95(tmp_path):
    truth = torch.zeros(3, 16, 16, dtype=torch.long)
    truth[0, 2:8, 2:8] = 1       # 36 pixels, predicted as 24 of them plus 6 outside
    truth[1, 4:12, 4:12] = 1     # 64 pixels, missed entirely
    truth[1, 0, 0] = 255         # ignored
    pred = torch.zeros_like(truth)
    pred[0, 2:6, 2:8] = 1
    pred[0, 10, 10:16] = 1
    probs = torch.stack([1.0 - pred.float(), pred.float()], dim=1)   # image 2: nothing anywhere
    task = SegmentationTask(2, class_names=["background", "vessel"])
    rows = per_sample_rows(task, {"m": sample_meters(task, probs, truth)}, ("file", ["a.png", "b.png", "c.png"]), {})
    assert [(r["sample"], r["file"], r["truth_pixels_vessel"], r["predicted_pixels_vessel"]) for r in rows] == [
        (0, "a.png", 36, 30), (1, "b.png", 64, 0), (2, "c.png", 0, 0)]
    assert rows[0]["dice"] == pytest.approx(2 * 24 / (36 + 30)) and rows[0]["iou"] == pytest.approx(24 / 42)
    assert rows[1]["dice"] == 0 and rows[1]["pixel_accuracy"] == pytest.approx((255 - 64) / 255)
    expected = compute_hausdorff_distance(pred[:1, None].float(), truth[:1, None].float(), percentile=95)
    assert rows[0]["hd95"] == pytest.approx(float(expected))
    written = read_rows(write_per_sample(tmp_path / "seg.csv", rows))
    assert written[0]["dice"] == f"{2 * 24 / 66:.9g}"
    # undefined figures are empty cells: no vessel in truth or prediction, no distance to an empty mask
    assert written[2]["dice"] == "" and written[1]["hd95"] == "" and written[2]["hd95"] == ""


def test_detection_rows_are_each_frames_ap_and_box_counts():
    task = DetectionTask(HeadLayout(1), (64, 64))
    box = torch.tensor([[0.0, 8, 8, 30, 30]])
    none = torch.full((1, 5), -1.0)
    targets = torch.stack([box, box, none])  # frame 3 has no object
    found = {"boxes": box[:, 1:], "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    rows = per_sample_rows(task, {"m": sample_meters(task, [found, empty, found], targets)}, None, {})
    assert [(r["true_boxes"], r["detections"]) for r in rows] == [(1, 1), (1, 0), (0, 1)]
    assert rows[0]["ap"] == pytest.approx(1.0) and rows[1]["ap"] == 0.0 and np.isnan(rows[2]["ap"])


def test_per_sample_mistakes_are_one_message_before_anything_is_scored(fast_tree, tmp_path, capsys):
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    train_from_config(validate(fast_tree | {"train": {"epochs": 1, "batch_size": 256}, "distill": {"rampup_epochs": 0}}), progress=False)
    run = tmp_path / "runs" / "t"
    before = (run / "run.json").read_bytes()
    config = tmp_path / "d.yaml"
    config.write_text("name: d\n")
    patients = tmp_path / "patients.csv"  # a table of the user's, never replaced (review 48b)
    patients.write_text("patient,diagnosis\n17,benign\n")
    for target, says in ((tmp_path, "is a folder; give the CSV file to write"),
                         (run / "run.json", "is one of the files of the run"),
                         (config, "does not end in .csv: the table is written as a CSV file"),
                         (patients, "exists and is not a table eval wrote (its header is not eval's): write the table "
                                    "to another file, or delete it to replace it")):
        assert main(["eval", str(run), "--per-sample", str(target)]) == 2
        err = capsys.readouterr().err
        assert says in " ".join(err.split()) and "Traceback" not in err
    assert (run / "run.json").read_bytes() == before and config.read_text() == "name: d\n"
    assert patients.read_text() == "patient,diagnosis\n17,benign\n"
    own = tmp_path / "rows.csv"  # eval's own table, and an empty file: replaced
    for text in ("", "\ufeff\"sample\",\"model\",truth\n0,teacher,1\n"):
        own.write_text(text)
        assert main(["eval", str(run), "--per-sample", str(own)]) == 0
        assert own.read_text().startswith("sample,") and len(own.read_text().splitlines()) > 2


def test_a_probability_exactly_at_the_threshold_is_called_positive_as_eval_calls_it():
    """A threshold chosen on float32-close validation scores is one of them: the sample with
    that probability is positive in eval's figures (>=), so its row says so too."""
    from types import SimpleNamespace

    from peerdistill.operating_point import Rule, at_threshold, choose_threshold
    from peerdistill.per_sample import _figures

    top = np.float32(0.7)
    threshold = choose_threshold(np.array([top, np.nextafter(top, np.float32(0)), 0.1], np.float32),
                                 np.array([1, 0, 0]), Rule("youden"))
    assert threshold == float(top) and at_threshold(np.array([top]), np.array([1]), threshold)["sensitivity"] == 1
    task = SimpleNamespace(name="classification", class_names=["normal", "pneumonia"])
    meter = SimpleNamespace(probs=[torch.tensor([[1 - top, top]])], targets=[torch.tensor([1])])
    row = _figures(task, meter, {"op_threshold": threshold})
    assert (row["op_predicted"], row["op_correct"]) == ("pneumonia", 1)


def test_classification_rows_give_truth_prediction_and_tempered_probabilities_by_hand():
    """Each row's class names, correctness and p_ columns, the probabilities tempered as
    softmax(log p / T) when eval fitted a temperature (the called class may then change at the
    threshold, never the largest one)."""
    from types import SimpleNamespace

    from peerdistill.per_sample import _figures

    task = SimpleNamespace(name="classification", class_names=["normal", "pneumonia"])

    def meter(p1, truth):
        return SimpleNamespace(probs=[torch.tensor([[1 - p1, p1]])], targets=[torch.tensor([truth])])

    right = _figures(task, meter(0.25, 0), {})
    assert (right["truth"], right["predicted"], right["correct"]) == ("normal", "normal", 1)
    assert right["p_normal"] == pytest.approx(0.75) and right["p_pneumonia"] == pytest.approx(0.25)
    wrong = _figures(task, meter(0.25, 1), {})
    assert (wrong["truth"], wrong["predicted"], wrong["correct"]) == ("pneumonia", "normal", 0)
    wrong = _figures(task, meter(0.75, 0), {})
    assert (wrong["truth"], wrong["predicted"], wrong["correct"]) == ("normal", "pneumonia", 0)
    # T = 2 flattens 0.25 / 0.75 to sqrt(.25) / (sqrt(.25) + sqrt(.75)) = 0.3660: at threshold 0.3,
    # positive tempered, negative untempered
    p = np.sqrt(0.25) / (np.sqrt(0.25) + np.sqrt(0.75))
    hot = _figures(task, meter(0.25, 1), {"cal_temperature": 2.0, "op_threshold": 0.3})
    assert hot["p_pneumonia"] == pytest.approx(p) and hot["p_normal"] == pytest.approx(1 - p)
    assert (hot["predicted"], hot["op_predicted"], hot["op_correct"]) == ("normal", "pneumonia", 1)
    assert hot["temperature"] == 2.0  # what the p_ columns are tempered by, in the file (review 51j)
    cold = _figures(task, meter(0.25, 0), {"op_threshold": 0.3})
    assert (cold["op_predicted"], cold["op_correct"]) == ("normal", 1) and "temperature" not in cold


def test_names_of_other_samples_than_those_scored_are_left_out():
    from types import SimpleNamespace

    task = SimpleNamespace(name="classification", class_names=["a", "b"])
    meters = [SimpleNamespace(probs=[torch.tensor([[0.9, 0.1]])], targets=[torch.tensor([0])]) for _ in range(2)]
    # names for 3 samples (data given from Python) do not name these 2: no file column
    rows = per_sample_rows(task, {"m": meters}, ("file", ["x.png", "y.png", "z.png"]), {})
    assert [r["sample"] for r in rows] == [0, 1] and all("file" not in r for r in rows)
    rows = per_sample_rows(task, {"m": meters, "n": meters}, ("file", ["x.png", "y.png"]), {})
    assert [(r["sample"], r["file"], r["model"]) for r in rows] == [
        (0, "x.png", "m"), (0, "x.png", "n"), (1, "y.png", "m"), (1, "y.png", "n")]
