"""Detection as a task of the cohort: COCO AP from pycocotools on a case with a known answer,
the WBF ensemble, every preset end to end on the embedded default, pictures, export, predict,
and the errors a user can run into."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from peerdistill.build import train_from_config
from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.cli import main
from peerdistill.config import validate
from peerdistill.detection import HeadLayout
from peerdistill.detection_metrics import DetectionMeter, coco_metrics
from peerdistill.errors import ConfigError
from peerdistill.tasks.detection import DetectionTask

SMALL = {"arch": "detector", "args": {"width": 4, "depth": 1}}
TEACHER = {"arch": "detector", "args": {"width": 8, "depth": 1}}


def tree(tmp_path, name, preset="kd+ml", **extra):
    base = {"name": name, "out_dir": str(tmp_path), "task": "detection",
            "data": {"kind": "boxes", "boxes_counts": [48, 16, 16], "image_size": [32, 32], "augment": ["hflip"]},
            "teacher": TEACHER, "students": [SMALL, SMALL],
            "distill": {"preset": preset, "rampup_epochs": 1}, "train": {"epochs": 1, "batch_size": 16}}
    base.update(extra)
    return validate(base)


def test_coco_ap_on_a_hand_made_case():
    """Two images, one true box each. Image 0: an exact detection (score 0.9). Image 1: a
    detection of IoU 0.62 (score 0.8). Up to IoU 0.60 both match: AP 1. Above, only the first:
    precision 1 up to recall 0.5, so the 101-point interpolated AP is 51/101. COCO's AP is the
    mean over the 10 thresholds 0.50:0.05:0.95: (3 + 7 * 51/101) / 10."""
    truths = [np.array([[0, 0, 0, 10, 10]], dtype=np.float32), np.array([[0, 20, 20, 30, 30]], dtype=np.float32)]
    preds = [{"boxes": np.array([[0, 0, 10, 10]], np.float32), "scores": np.array([0.9]), "labels": np.array([0])},
             {"boxes": np.array([[20, 20, 30, 26.2]], np.float32), "scores": np.array([0.8]), "labels": np.array([0])}]
    m = coco_metrics(preds, truths, ["polyp"])
    assert m["ap50"] == pytest.approx(1.0)
    assert m["ap75"] == pytest.approx(51 / 101)
    assert m["ap"] == pytest.approx((3 + 7 * 51 / 101) / 10)
    assert m["ar1"] == pytest.approx((3 + 7 * 0.5) / 10)
    assert m["ap_polyp"] == pytest.approx(m["ap"]) and m["ap50_polyp"] == pytest.approx(1.0)


def test_average_recall_keeps_1_10_or_100_detections_per_image():
    """One image, twelve true boxes, each found exactly by a detection of its own (scores
    decreasing). COCO's AR@n keeps the n highest-scored detections of each image (and class), so
    1, 10 and all 12 of the boxes are found at every IoU threshold: ar1 = 1/12, ar10 = 10/12,
    ar100 = 1. Precision is 1 all the way: AP 1."""
    boxes = np.array([[20 * i, 0, 20 * i + 10, 10] for i in range(12)], np.float32)
    truths = [np.concatenate([np.zeros((12, 1), np.float32), boxes], axis=1)]
    preds = [{"boxes": boxes, "scores": np.linspace(0.95, 0.4, 12), "labels": np.zeros(12, np.int64)}]
    m = coco_metrics(preds, truths, ["polyp"])
    assert m["ar1"] == pytest.approx(1 / 12)
    assert m["ar10"] == pytest.approx(10 / 12)
    assert m["ar100"] == pytest.approx(1.0)
    assert m["ap"] == pytest.approx(1.0)


def test_merged_meters_score_as_one_meter_over_the_whole_split():
    """Under torchrun each process scores a share of the images; merging the meters must give
    the figures of one meter that saw every image (the hand case above, one image per share)."""
    shares = [(det([[0, 0, 10, 10]], [0.9], [0]), [[0, 0, 0, 10, 10]]),
              (det([[20, 20, 30, 26.2]], [0.8], [0]), [[0, 20, 20, 30, 30]])]
    whole, merged, parts = DetectionMeter(["polyp"]), DetectionMeter(["polyp"]), []
    for detections, truth in shares:
        whole.update([detections], torch.tensor([truth], dtype=torch.float32))
        part = DetectionMeter(["polyp"])
        part.update([detections], torch.tensor([truth], dtype=torch.float32))
        parts.append(part)
    for part in parts:
        merged.merge(part)
    expected = whole.compute()
    assert expected["ap"] == pytest.approx((3 + 7 * 51 / 101) / 10)
    assert merged.compute() == pytest.approx(expected)


def test_ap_per_class_on_a_hand_made_case():
    """Three classes. 'a': one box found exactly (AP 1). 'b': two boxes; the detection ranked
    first is a false positive, then one box is found: precision 1/2 up to recall 1/2, so the
    101-point AP is 51/101 / 2 at every threshold. 'c': no box in the split (undefined). The
    overall AP averages the classes that have boxes."""
    truths = [np.array([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30], [1, 40, 40, 50, 50]], np.float32)]
    preds = [{"boxes": np.array([[0, 0, 10, 10], [60, 60, 70, 70], [20, 20, 30, 30]], np.float32),
              "scores": np.array([0.9, 0.8, 0.7]), "labels": np.array([0, 1, 1])}]
    m = coco_metrics(preds, truths, ["a", "b", "c"])
    assert m["ap_a"] == pytest.approx(1.0) and m["ap50_a"] == pytest.approx(1.0)
    assert m["ap_b"] == pytest.approx(51 / 101 / 2) and m["ap50_b"] == pytest.approx(51 / 101 / 2)
    assert np.isnan(m["ap_c"]) and np.isnan(m["ap50_c"])
    assert m["ap"] == pytest.approx((1 + 51 / 101 / 2) / 2)
    nothing = [{"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0), "labels": np.zeros(0)}]
    none_found = coco_metrics(nothing, truths, ["a", "b", "c"])
    assert (none_found["ap_a"], none_found["ap_b"]) == (0.0, 0.0) and np.isnan(none_found["ap_c"])


def test_a_detection_on_a_crowd_region_is_neither_hit_nor_false_positive():
    """One true box and one crowd region (label -2 - class). Detections: the crowd region
    (score 0.95), then the true box (0.9). Counted as a plain box, the crowd detection is a false
    positive ranked first: precision 1/2 at recall 1, AP 0.5 at every threshold. As a crowd
    region it is ignored: AP 1."""
    true_box, crowd_box = [0, 0, 0, 10, 10], [20, 20, 40, 40]
    preds = [{"boxes": np.array([crowd_box, true_box[1:]], np.float32), "scores": np.array([0.95, 0.9]),
              "labels": np.array([0, 0])}]
    as_crowd = coco_metrics(preds, [np.array([true_box, [-2, *crowd_box]], np.float32)], ["polyp"])
    without = coco_metrics(preds, [np.array([true_box], np.float32)], ["polyp"])
    assert as_crowd["ap"] == pytest.approx(1.0) and without["ap"] == pytest.approx(0.5)
    # a crowd region alone leaves nothing to find: undefined, as with no box at all
    assert np.isnan(coco_metrics(preds, [np.array([[-2, *crowd_box]], np.float32)], ["polyp"])["ap"])
    nothing = [{"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0), "labels": np.zeros(0, int)}]
    assert np.isnan(coco_metrics(nothing, [np.array([[-2, *crowd_box]], np.float32)], ["polyp"])["ap"])
    two = coco_metrics(nothing, [np.array([true_box, [-3, *crowd_box]], np.float32)], ["polyp", "b"])
    assert two["ap_polyp"] == 0.0 and np.isnan(two["ap_b"]) and np.isnan(two["ap50_b"])  # b: crowd only
    meter = DetectionMeter(["polyp"])  # the meter keeps crowd rows and drops padding
    meter.update([{k: torch.as_tensor(v) for k, v in preds[0].items()}],
                 torch.tensor([[true_box, [-2, *crowd_box], [-1, 0, 0, 0, 0]]], dtype=torch.float32))
    assert meter.truths[0].tolist() == [true_box, [-2, *crowd_box]]
    assert meter.compute()["ap"] == pytest.approx(1.0)


def test_per_class_figures_read_cocos_100_detections_and_iou_050():
    """A class's AP and AP50 are read where the overall ones are: up to 100 detections per image
    (15 objects found exactly: AP 1, not 0.66 as at 10) and at IoU 0.50 (a box of IoU 0.52
    counts there, not at 0.55)."""
    boxes = np.array([[10 * i, 0, 10 * i + 8, 8] for i in range(15)], np.float32)
    many = coco_metrics([{"boxes": boxes, "scores": np.linspace(0.9, 0.5, 15), "labels": np.zeros(15, int)}],
                        [np.c_[np.zeros(15), boxes].astype(np.float32)], ["a"])
    assert many["ap"] == many["ap_a"] == pytest.approx(1.0) and many["ap50_a"] == pytest.approx(1.0)
    half = [{"boxes": np.array([[0, 0, 100, 52]], np.float32), "scores": np.array([0.9]), "labels": np.array([0])}]
    loose = coco_metrics(half, [np.array([[0, 0, 0, 100, 100]], np.float32)], ["a"])  # IoU 0.52
    assert loose["ap50"] == loose["ap50_a"] == pytest.approx(1.0) and loose["ap_a"] == pytest.approx(0.1)  # 1 of 10 IoUs


def test_no_detection_scores_zero_and_no_truth_is_undefined():
    truth = [np.array([[0, 0, 0, 10, 10]], np.float32)]
    empty = [{"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0), "labels": np.zeros(0)}]
    assert coco_metrics(empty, truth, ["polyp"])["ap"] == 0.0
    assert np.isnan(coco_metrics(empty, [np.zeros((0, 5), np.float32)], ["polyp"])["ap"])


def det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels)}


def test_the_ensemble_fuses_boxes_with_weighted_boxes_fusion():
    task = DetectionTask(HeadLayout(2), (100, 100))
    a = det([[10, 10, 50, 50], [70, 70, 90, 90]], [0.9, 0.6], [0, 1])
    b = det([[12, 10, 52, 50]], [0.7], [0])
    fused = task.ensemble([[a], [b]])[0]
    # The shared box: coordinates averaged weighted by score, score averaged over the 2 models.
    first = fused["scores"].argmax()
    expected = (np.array([10, 10, 50, 50]) * 0.9 + np.array([12, 10, 52, 50]) * 0.7) / 1.6
    np.testing.assert_allclose(fused["boxes"][first].numpy(), expected, atol=1e-3)
    assert float(fused["scores"][first]) == pytest.approx((0.9 + 0.7) / 2, abs=1e-5)
    # The box one model found alone keeps its place and half its score.
    lone = fused["labels"] == 1
    np.testing.assert_allclose(fused["boxes"][lone].numpy(), [[70, 70, 90, 90]], atol=1e-3)
    assert float(fused["scores"][lone]) == pytest.approx(0.6 / 2, abs=1e-5)


def test_the_ensemble_can_fuse_by_nms_or_non_maximum_weighted_instead():
    a = det([[10, 10, 50, 50], [70, 70, 90, 90]], [0.9, 0.6], [0, 1])
    b = det([[12, 10, 52, 50]], [0.7], [0])
    iou = (38 * 40) / (2 * 40 * 40 - 38 * 40)  # of the two label-0 boxes: 0.905
    # NMS over both students' boxes: the 0.9 box suppresses the 0.7 one; scores are kept as they were
    fused = DetectionTask(HeadLayout(2), (100, 100), ensemble="nms").ensemble([[a], [b]])[0]
    np.testing.assert_allclose(fused["boxes"].numpy(), [[10, 10, 50, 50], [70, 70, 90, 90]], atol=1e-3)
    assert fused["scores"].tolist() == pytest.approx([0.9, 0.6], abs=1e-5)
    # ... unless they overlap less than ensemble_iou: then both stay
    apart = DetectionTask(HeadLayout(2), (100, 100), ensemble="nms", ensemble_iou=0.95).ensemble([[a], [b]])[0]
    assert sorted(apart["scores"].tolist()) == pytest.approx([0.6, 0.7, 0.9], abs=1e-5)
    # non-maximum weighted: the top box's score, coordinates averaged with weights score x IoU with the top box
    fused = DetectionTask(HeadLayout(2), (100, 100), ensemble="nmw").ensemble([[a], [b]])[0]
    expected = (np.array([10, 10, 50, 50]) * 0.9 + np.array([12, 10, 52, 50]) * 0.7 * iou) / (0.9 + 0.7 * iou)
    np.testing.assert_allclose(fused["boxes"][0].numpy(), expected, atol=1e-3)
    assert fused["scores"].tolist() == pytest.approx([0.9, 0.6], abs=1e-5)
    with pytest.raises(ConfigError, match="detect.ensemble must be one of wbf, nms, nmw, not 'soft_nms'"):
        DetectionTask(HeadLayout(2), (100, 100), ensemble="soft_nms")


def test_the_detect_section_names_the_fusion_and_reads_the_former_wbf_iou(tmp_path):
    assert tree(tmp_path, "a", detect={"wbf_iou": 0.6}).detect.ensemble_iou == 0.6  # configs of earlier versions
    assert tree(tmp_path, "b", detect={"ensemble": "nmw", "ensemble_iou": 0.65}).detect.ensemble == "nmw"
    with pytest.raises(ConfigError, match="ensemble.*'wbf', 'nms' or 'nmw'"):
        tree(tmp_path, "c", detect={"ensemble": "soft_nms"})
    # both names of the one key: not "unknown key 'detect.wbf_iou'" (review 55j), as eval says it
    with pytest.raises(ConfigError, match=r"'detect': detect.wbf_iou is the former name of detect.ensemble_iou: give "
                                          r"one of them$"):
        tree(tmp_path, "d", detect={"wbf_iou": 0.5, "ensemble_iou": 0.5})


@pytest.mark.parametrize("preset", ["independent", "kd", "ml", "kd+ml"])
def test_every_preset_trains_end_to_end_on_the_embedded_default(tmp_path, preset):
    result = train_from_config(tree(tmp_path, preset, preset), progress=False)
    terms = set(result.history[-1])
    assert "train/loss/student1/det" in terms
    if preset in ("kd", "kd+ml"):
        assert "train/loss/student1/kl<-teacher" in terms
    if preset in ("ml", "kd+ml"):
        assert "train/loss/student1/kl<-student2" in terms
    for model in ("teacher", "student1", "student2", "ensemble"):
        assert set(result.test_at_best[model]) == {"ap", "ap50", "ap75", "ar1", "ar10", "ar100", "ap_rectangle", "ap_ellipse",
                                                   "ap50_rectangle", "ap50_ellipse"}
    run = json.loads((tmp_path / preset / "run.json").read_text())
    assert run["task"] == "detection" and run["detection"]["strides"] == [8, 16, 32]
    # the ensemble's cost: its students' summed; its latency too (the boxes are fused in Python: not a graph to time)
    costs = run["costs"]
    assert costs["ensemble"]["parameters"] == costs["student1"]["parameters"] + costs["student2"]["parameters"]
    assert costs["ensemble"]["cpu_latency_ms"] == pytest.approx(
        costs["student1"]["cpu_latency_ms"] + costs["student2"]["cpu_latency_ms"], abs=1e-3)
    assert costs["ensemble"]["latency_summed"] is True


def test_the_detect_section_sets_the_shares_of_a_kd_edge(tmp_path):
    off = train_from_config(tree(tmp_path, "off", "kd", detect={"kd_cls_weight": 0.0, "kd_loc_weight": 0.0}),
                            progress=False)
    assert off.history[-1]["train/loss/student1/kl<-teacher"] == 0.0
    assert off.history[-1]["train/loss/student1/det"] > 0
    run = json.loads((tmp_path / "off" / "run.json").read_text())
    assert run["detection"]["kd_cls_weight"] == 0.0 and run["detection"]["kd_loc_weight"] == 0.0
    assigned = train_from_config(tree(tmp_path, "assigned", "kd", detect={"kd_cls_weight": 0.0,
                                                                          "kd_loc_region": "assigned"}),
                                 progress=False)
    assert assigned.history[-1]["train/loss/student1/kl<-teacher"] > 0
    with pytest.raises(ConfigError, match="kd_loc_region"):
        validate({"task": "detection", "detect": {"kd_loc_region": "positives"}})


def test_a_teacher_trained_first_teaches_frozen(tmp_path):
    """The setting docs/detection.md recommends for detection."""
    train_from_config(tree(tmp_path, "first", "independent"), progress=False)
    trained = tmp_path / "first" / "models" / "teacher.safetensors"
    teacher = {**TEACHER, "frozen": True, "checkpoint": str(trained)}
    frozen = train_from_config(tree(tmp_path, "frozen", "kd", teacher=teacher), progress=False)
    assert frozen.history[-1]["train/loss/student1/kl<-teacher"] > 0
    after = load_file(tmp_path / "frozen" / "models" / "teacher.safetensors")
    assert all(torch.equal(v, after[k]) for k, v in load_file(trained).items())
    # the run itself as the checkpoint, on data numbering the categories otherwise (a COCO file's
    # ids in another order): its class scores would be read as other classes
    from peerdistill.build import build_cohort
    from peerdistill.data import build_data
    from peerdistill.errors import CheckpointError

    cfg = tree(tmp_path, "renamed", "kd", teacher={**TEACHER, "frozen": True, "checkpoint": str(tmp_path / "first")})
    data = build_data(cfg.data)
    data.class_names = data.class_names[::-1]
    with pytest.raises(CheckpointError, match=r"numbers its classes \['ellipse', 'rectangle'\], the data "
                                              r"\['rectangle', 'ellipse'\]"):
        build_cohort(cfg, data)


def test_feature_edges_reach_the_pyramid(tmp_path):
    result = train_from_config(tree(tmp_path, "styles", "styles"), progress=False)
    assert any("hint<-teacher[fpn.outputs.0<-fpn.outputs.0]" in k for k in result.history[-1])


def test_eval_pictures_export_and_predict(tmp_path, capsys, monkeypatch):
    train_from_config(tree(tmp_path, "r", "kd"), progress=False)
    run = tmp_path / "r"
    from peerdistill import runs

    with monkeypatch.context() as patched:  # --tta refused before any data is read (and warned of)
        patched.setattr(runs, "build_data", lambda *a, **k: pytest.fail("data read before --tta was refused"))
        assert main(["eval", str(run), "--tta", "hflip", "data.split_seed=3"]) == 2
    assert "error: --tta averages class probabilities over flips" in capsys.readouterr().err
    assert main(["eval", str(run), "--save-images", "2", "--json"]) == 0
    printed = capsys.readouterr()
    scores = json.loads(printed.out)
    assert f"pictures: {run / 'eval' / 'test'}/MODEL/" in " ".join(printed.err.split())
    tested = json.loads((run / "metrics.json").read_text())["test_at_best"]  # what training scored
    assert {m: scores[m]["ap"] for m in tested} == pytest.approx({m: tested[m]["ap"] for m in tested}, abs=1e-9)
    assert len(list((run / "eval" / "test" / "ensemble").glob("*_boxes.png"))) == 2
    # decoding and fusion changed at eval time, without training: one box per image leaves
    # nothing for recall at 10 to add to recall at 1; the run's own settings are left as they were
    saved = json.loads((run / "run.json").read_text())["detection"]
    assert saved["ensemble"] == "wbf" and saved["ensemble_iou"] == 0.7
    assert main(["eval", str(run), "detect.max_detections=1", "detect.ensemble=nmw", "detect.wbf_iou=0.5",
                 "--json"]) == 0
    printed = capsys.readouterr()
    one = json.loads(printed.out)
    assert all(one[m]["ar10"] == one[m]["ar1"] for m in one) and one["student1"]["ap"] <= scores["student1"]["ap"]
    # said beside the figures, which are not the run's own decoding's
    assert ("boxes decoded with detect.max_detections=1, detect.ensemble=nmw, detect.wbf_iou=0.5"
            in " ".join(printed.err.split()))
    assert main(["eval", str(run), "detect.ensemble=nmw"]) == 0
    printed = capsys.readouterr()
    assert "samples), boxes decoded with detect.ensemble=nmw" in " ".join(printed.out.split())
    # what ap is, and how the ensemble row was fused (review 47a: read against a paper's AP at IoU 0.5)
    assert ("note: ap is COCO's, averaged over IoU 0.50 to 0.95 (ap50: at IoU 0.5); ensemble: the students' boxes "
            "fused by non-maximum weighted fusion at IoU 0.7, the teacher's left out") in " ".join(printed.err.split())
    assert main(["eval", str(run)]) == 0
    assert "fused by weighted boxes fusion at IoU 0.7, the teacher's left out" in " ".join(capsys.readouterr().err.split())
    # the boxes kept at scores a deployment could run at, with their precision and recall at IoU 0.5 (review 47a)
    assert main(["eval", str(run), "--split", "val", "--score-thresholds", "0.05,0.3", "--json"]) == 0
    at = json.loads(capsys.readouterr().out)
    assert {"at0.05_precision", "at0.3_recall", "at0.3_f1", "at0.05_boxes_per_frame"} <= set(at["student1"])
    # the ensemble's boxes are fused from the students' decoded at 0.05: not what fusing at 0.3 gives (review 47h);
    # at 0.05 itself they are what predict keeps, scored so (review 55i: the ensemble had no deployment figures)
    assert {key for key in at["ensemble"] if key.startswith("at")} == {
        "at0.05_boxes_per_frame", "at0.05_precision", "at0.05_recall", "at0.05_f1"}
    assert all(at[m]["at0.3_boxes_per_frame"] <= at[m]["at0.05_boxes_per_frame"] for m in at if m != "ensemble")
    from peerdistill.detection_thresholds import figures_at_thresholds
    from peerdistill.predict import above
    from peerdistill.runs import load_cohort, task_for

    cohort, meta = load_cohort(run, roles=("student",), with_heads=False)
    task = task_for(meta)
    val = build_data(DataSpec(**meta["data_spec"]), stats=meta["data_stats"]).val  # the split scored above
    with torch.no_grad():  # fused as predict fuses, boxes under the threshold dropped: matched by hand's helper
        fused = [above(f, 0.05) for f in task.ensemble([task.probabilities(m.module.eval()(val.x))
                                                         for m in cohort.students])]
    by_hand = figures_at_thresholds([{k: v.numpy() for k, v in f.items()} for f in fused],
                                    [t[t[:, 0] > -1].numpy() for t in val.y], (0.05,))
    assert at["ensemble"]["at0.05_boxes_per_frame"] == pytest.approx(by_hand["at0.05_boxes_per_frame"])
    assert at["ensemble"]["at0.05_f1"] == pytest.approx(by_hand["at0.05_f1"], nan_ok=True)
    assert main(["eval", str(run), "--score-thresholds"]) == 0  # the default thresholds
    printed = capsys.readouterr()
    assert "student1's boxes scoring each threshold or more, matched at IoU 0.5" in " ".join(printed.out.split())
    assert "the ensemble's boxes, fused from the students' decoded at 0.05, scoring 0.05 or more (what predict " \
           "keeps)" in " ".join(printed.out.split())
    assert ("give it to predict and export as detect.score_threshold=T. The ensemble is scored at "
            "detect.score_threshold (0.05) alone") in " ".join(printed.err.split())
    assert main(["eval", str(run), "--score-thresholds", "0.3,0.5"]) == 0  # the decoding's own 0.05 left out
    printed = capsys.readouterr()
    assert "the ensemble's boxes" not in printed.out and ("The ensemble is scored at detect.score_threshold (0.05) "
                                                          "alone, which --score-thresholds does not list here") in \
        " ".join(printed.err.split())
    with pytest.raises(SystemExit):  # an empty list (an unset shell variable) is not the default in silence
        main(["eval", str(run), "--score-thresholds", ""])
    assert "expected scores separated by commas" in capsys.readouterr().err
    for args, message in ((["--score-thresholds", "0.01"], "--score-thresholds 0.01 is below the score the boxes are "
                                                           "decoded from (detect.score_threshold=0.05)"),
                          (["--score-thresholds", "0.01", "detect.score_threshold=0.01"], None),
                          (["detect.score_threshold=0.25", "--score-thresholds"], None),  # the defaults from 0.25 up
                          (["--score-thresholds", "1.5"], "give scores between 0 and 1")):
        assert main(["eval", str(run), *args]) == (0 if message is None else 2)
        assert message is None or message in " ".join(capsys.readouterr().err.split())
    capsys.readouterr()
    from peerdistill.runs import evaluate_run

    direct = evaluate_run(run, decoding={"max_detections": 1, "ensemble": "nmw", "ensemble_iou": 0.5})
    assert one["ensemble"] == pytest.approx(direct["ensemble"])  # the overrides (wbf_iou read as ensemble_iou)
    assert json.loads((run / "run.json").read_text())["detection"] == saved
    for override, message in [("detect.kd_cls_weight=2", "not detect.kd_cls_weight: training settings need a new run"),
                              ("detect.ensemble=soft_nms", "'ensemble': Input should be 'wbf', 'nms' or 'nmw'"),
                              ("teacher.arch=cnn", "eval takes only data.* and detect.* overrides")]:
        assert main(["eval", str(run), override]) == 2
        assert message in capsys.readouterr().err
    # a run saved before the fusion rule was recorded: WBF at its wbf_iou
    from peerdistill.runs import task_for as saved_task

    earlier = {**json.loads((run / "run.json").read_text())}
    earlier["detection"] = {k: v for k, v in saved.items() if k not in ("ensemble", "ensemble_iou")} | {"wbf_iou": 0.55}
    old_task = saved_task(earlier)
    assert (old_task.ensemble_rule, old_task.ensemble_iou) == ("wbf", 0.55)
    assert main(["export", str(run), "--model", "student1"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "max |difference|" in printed and "(dense head outputs; boxes are decoded outside the graph" in printed
    assert main(["export", str(run), "--model", "student1", "--out", str(tmp_path / "s1.onnx"),
                 "detect.ensemble_iou=0.5"]) == 0  # written into the JSON, and said to change nothing (review 55i)
    assert ("detect.ensemble_iou fuses the students' boxes into the ensemble's; model 'student1' is one model, so it "
            "changes nothing here: drop it") in " ".join(capsys.readouterr().err.split())
    assert main(["export", str(run), "--model", "ensemble"]) == 2
    assert "weighted boxes fusion" in capsys.readouterr().err
    assert main(["export", str(run), "--model", "ensemble", "--format", "safetensors"]) == 2
    assert "a rule applied to boxes, neither a graph nor a set of weights" in " ".join(capsys.readouterr().err.split())
    assert main(["export", str(run), "--model", "student1", "--format", "safetensors"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "graph" not in printed  # (weights alone: no graph to speak of)
    # (not "logits": a detector's weights give none of classes)
    assert "(weights of a detector: its head's dense outputs, decoded into boxes by peerdistill)" in printed
    from PIL import Image

    image = tmp_path / "one.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "boxes.csv"
    assert main(["predict", str(run / "export" / "student1.onnx"), str(image), "--out", str(out)]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["input", "class", "score", "x1", "y1", "x2", "y2"]
    assert all(0 <= float(r[3]) <= float(r[5]) <= 32 for r in rows[1:] if r[1])  # (a row of the name alone: no box)
    # a detector's JSON edited by hand, or beside another graph: named, never a traceback or an empty CSV
    side = run / "export" / "student1.json"
    written = json.loads(side.read_text())
    for edit, said in ((lambda d: d["detection"].update(score_threshold=1.5), "score_threshold"),
                       (lambda d: d["detection"].update(score_threshold="abc"), "score_threshold"),
                       (lambda d: d["detection"].update(num_classes=5), "detection settings count 5 classes"),
                       (lambda d: d.pop("detection"), "holds its detection settings"),
                       (lambda d: d["detection"].update(strides=[8, 16]) or d.update(onnx_sha256=None),
                        "gives outputs of shape")):
        edited = json.loads(json.dumps(written))
        edit(edited)
        side.write_text(json.dumps(edited))
        assert main(["predict", str(run / "export" / "student1.onnx"), str(image), "--out", str(out)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert said in err and "Traceback" not in err, (said, err)
    side.write_text(json.dumps(written))
    # the students' ensemble from the run directory: their boxes fused as evaluation fuses them
    from peerdistill.data.image_io import read_image
    from peerdistill.data.splits import standardize, to_nchw
    from peerdistill.runs import load_cohort, task_for

    record = json.loads((run / "run.json").read_text())
    record["detection"]["score_threshold"] = 0.01  # a briefly trained detector: keep its faint boxes
    (run / "run.json").write_text(json.dumps(record))
    assert main(["predict", str(run), str(image), "--out", str(out), "--model", "ensemble"]) == 0
    assert main(["predict", str(run), str(image), "--out", str(out), "--model", "ensemble",
                 "--temperature-scaling"]) == 2
    assert "--temperature-scaling tempers class probabilities: it is for classification runs, and this is a " \
           "detection run" in capsys.readouterr().err
    cohort, meta = load_cohort(run, roles=("student",), with_heads=False)
    task = task_for(meta)

    from peerdistill.predict import above

    def fused_at_model_size(path):
        x = standardize(to_nchw(read_image(path, (32, 32))[None], "x"), meta["data_stats"])
        with torch.no_grad():  # (boxes fused below the threshold left out, review 51h)
            return above(task.ensemble([task.probabilities(m.module.eval()(x)) for m in cohort.students])[0], 0.01)

    fused = fused_at_model_size(image)
    rows = list(csv.reader(out.open()))[1:]
    assert len(rows) == len(fused["scores"]) > 0
    assert [float(r[2]) for r in rows] == pytest.approx(fused["scores"].tolist(), abs=1e-6)
    assert [float(v) for r in rows for v in r[3:]] == pytest.approx(fused["boxes"].flatten().tolist(), abs=0.01)
    # a box fused from fewer students scores lower (wbf): none below a threshold set for predict is written
    middle = float(fused["scores"].median())
    assert main(["predict", str(run), str(image), "--out", str(out), "--model", "ensemble",
                 f"detect.score_threshold={middle}"]) == 0
    kept = [float(r[2]) for r in list(csv.reader(out.open()))[1:]]
    assert kept and min(kept) >= middle - 1e-6
    # fusion keys on one model change nothing: said, not taken in silence (review 55i)
    capsys.readouterr()
    for where, model in ((run, ["--model", "student1"]), (run / "export" / "student1.onnx", [])):
        assert main(["predict", str(where), str(image), "--out", str(out), *model, "detect.ensemble=nms",
                     "detect.ensemble_iou=0.5"]) == 0
        one = "model 'student1'" if model else "the graph 'student1.onnx'"
        assert (f"detect.ensemble and detect.ensemble_iou fuse the students' boxes into the ensemble's; {one} is one "
                "model, so they change nothing here: drop them") in " ".join(capsys.readouterr().err.split())
    assert main(["predict", str(run), str(image), "--out", str(out), "--model", "ensemble", "detect.ensemble=nms"]) == 0
    assert "change nothing here" not in capsys.readouterr().err
    # an image of another size is seen at 32x32; its boxes come back in its own pixels
    wide = tmp_path / "wide.png"
    Image.open(image).resize((64, 48)).save(wide)
    assert main(["predict", str(run), str(wide), "--out", str(out), "--model", "ensemble"]) == 0
    fused = fused_at_model_size(wide)
    rows = list(csv.reader(out.open()))[1:]
    assert len(rows) == len(fused["scores"]) > 0
    expected = fused["boxes"] * torch.tensor([64 / 32, 48 / 32] * 2)
    assert [float(v) for r in rows for v in r[3:]] == pytest.approx(expected.flatten().tolist(), abs=0.01)
    # --overlays: the boxes drawn on the input at its own size, each in its class's colour
    # (every box here: this briefly trained detector scores below the pictures' usual 0.3)
    import peerdistill.pictures
    from peerdistill.pictures import PALETTE

    monkeypatch.setattr(peerdistill.pictures, "PICTURE_MIN_SCORE", 0.0)
    assert main(["predict", str(run), str(wide), "--out", str(out), "--model", "ensemble",
                 "--overlays", str(tmp_path / "pics")]) == 0
    picture = np.asarray(Image.open(tmp_path / "pics" / "wide_boxes.png"))
    assert picture.shape == (48, 64, 3)
    x1, y1, x2, _ = (int(round(v)) for v in expected[-1].tolist())  # drawn last: nothing covers it
    colour = PALETTE[1 + int(fused["labels"][-1]) % (len(PALETTE) - 1)]
    top_edge = picture[y1, x1:max(x2 - 1, x1 + 1)]
    assert (top_edge == colour).all(axis=-1).mean() > 0.5
    # a detector whose weights diverged yields no boxes at all: evaluation names it instead of scoring AP 0
    from safetensors.torch import load_file, save_file

    weights = run / "models" / "student1.safetensors"
    good = load_file(weights)
    save_file({k: v * 1e30 if v.is_floating_point() else v for k, v in good.items()}, weights)  # finite, huge
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 2
    assert "'student1' gives non-finite outputs" in capsys.readouterr().err
    save_file({k: v * float("nan") if v.is_floating_point() else v for k, v in good.items()}, weights)
    assert main(["eval", str(run), "--json"]) == 2  # NaN in the file itself: named on loading
    assert "holds NaN or infinite values" in capsys.readouterr().err


def test_detectors_with_different_heads_are_refused(tmp_path):
    odd = {"arch": "detector", "args": {"width": 4, "reg_max": 4}}
    with pytest.raises(ConfigError, match="head layouts differ"):
        train_from_config(tree(tmp_path, "odd", students=[SMALL, odd]), progress=False)


def test_edges_that_detection_cannot_use_are_refused(tmp_path):
    custom = {"preset": "custom", "edges": [{"source": "teacher", "target": "student1", "kind": "cwd"}]}
    with pytest.raises(ConfigError, match="kind 'cwd' is not available"):
        train_from_config(tree(tmp_path, "c", distill=custom), progress=False)
    on_features = {"source": "teacher", "target": "student1", "kind": "pair",
                   "source_layer": "fpn.outputs.0", "target_layer": "fpn.outputs.0"}
    with pytest.raises(ConfigError, match="kind 'pair' is not available"):  # on pyramid features too
        train_from_config(tree(tmp_path, "p", distill={**custom, "edges": [on_features]}), progress=False)
    with pytest.raises(ConfigError, match="crop is for detection"):
        validate({"data": {"augment": ["crop"]}, "students": [{"arch": "cnn"}]})
    # the focal loss balances the classes itself: a class weighting on top is refused, not ignored
    weighted = tree(tmp_path, "w")
    weighted.data.class_weights = True
    with pytest.raises(ConfigError, match="data.class_weights is not available for detection"):
        train_from_config(weighted, progress=False)
    assert not (tmp_path / "w").exists()


def test_a_box_json_folder_is_split_by_seed_into_disjoint_parts(tmp_path):
    from PIL import Image

    from peerdistill.config import DataSpec
    from peerdistill.data import build_data

    (tmp_path / "images").mkdir()
    boxes = {}
    for i in range(10):
        Image.fromarray(np.full((40, 50, 3), 30 * (i % 5), np.uint8)).save(tmp_path / "images" / f"f{i}.png")
        boxes[f"f{i}"] = {"height": 80, "width": 100, "bbox": [{"label": "polyp", "xmin": 10, "ymin": 20,
                                                                 "xmax": 60, "ymax": 70}]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    spec = DataSpec(kind="box_json", root=str(tmp_path), annotations="boxes.json", image_size=[32, 32],
                    val_fraction=0.2, test_fraction=0.2, split_seed=3)
    data = build_data(spec)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 2)
    split = data.info["split"]
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(boxes)
    # 100x80 original pixels rescaled to 32x32: x * 0.32, y * 0.4
    np.testing.assert_allclose(data.train.y[0, 0].tolist(), [0, 3.2, 8.0, 19.2, 28.0], atol=1e-4)
    assert build_data(spec).info["split"] == split  # the same seed, the same split


def test_the_report_of_a_detection_run_shows_boxes_and_ap(tmp_path):
    from peerdistill.html_report import write_report

    result = train_from_config(tree(tmp_path, "rep", "kd"), progress=False)
    page = write_report(tmp_path / "rep").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 3  # learning curves, losses, the boxes figure
    assert "true boxes in white" in page and "Predictions skipped" not in page
    assert ("coloured by class, with class and score" in page  # (or none scored that much, after one epoch:
            or "no box of the student ensemble scored at least" in page)  # each caption pinned below)
    assert "The ensemble fuses the students&#x27; boxes by weighted boxes fusion at IoU 0.7." in page
    assert f"{result.test_at_best['ensemble']['ap']:.4f}" in page


@pytest.mark.parametrize("min_score, caption", [
    (0.5, "true boxes in white; the boxes of the student ensemble scoring at least 0.5 coloured by class, with class "
          "and score"),
    (0.7, "true boxes in white; no box of the student ensemble scored at least 0.7 in these images")])
def test_the_report_boxes_caption_says_what_is_drawn(monkeypatch, min_score, caption):
    """Review 53b: the test above takes either caption, and the one without boxes spoke of their colour."""
    import sys

    from peerdistill.data.splits import TensorData
    from peerdistill.html_report.predictions_html import detection_parts

    truth = torch.tensor([[[0, 2.0, 2.0, 8.0, 8.0], [-1, 0, 0, 0, 0]]])
    found = {"boxes": torch.tensor([[3.0, 3.0, 9.0, 9.0]]), "scores": torch.tensor([0.6]), "labels": torch.tensor([0])}
    evaluation = sys.modules["peerdistill.engine.evaluate"]  # (the package's `evaluate` is a function)
    monkeypatch.setattr(evaluation, "predict", lambda cohort, task, x: {"ensemble": [found]})
    meta = {"class_names": ["polyp"], "num_classes": 1,
            "members": [{"name": "student1", "role": "student"}, {"name": "student2", "role": "student"}]}
    html = detection_parts(None, None, TensorData(torch.zeros(1, 3, 16, 16), truth), meta, min_score=min_score)
    assert caption in " ".join(html[0].split())


def test_bad_counts_are_one_clear_message(tmp_path, capsys):
    with pytest.raises(ConfigError, match="boxes_counts.0"):
        tree(tmp_path, "z", data={"kind": "boxes", "boxes_counts": [0, 4, 4]})
    with pytest.raises(SystemExit) as stop:
        main(["eval", str(tmp_path), "--save-images", "-1"])
    assert stop.value.code == 2 and "a whole number, 0 or more" in capsys.readouterr().err


def test_boxes_under_a_pixel_wide_are_drawn(tmp_path, monkeypatch):
    # A small box shrinks below a pixel when its image is resized; Pillow refuses to draw it as is.
    from PIL import Image

    from peerdistill import pictures

    true_box = torch.tensor([[[0, 2.0, 2.0, 2.3, 8.0], [-1, 0, 0, 0, 0]]])  # label, x1, y1, x2, y2; -1 pads
    data = [(torch.zeros(3, 16, 16), true_box[0])]
    # (below the true box: its label, pulled into the 16-pixel picture, covers the rows it spans)
    found = {"boxes": torch.tensor([[10.0, 10.0, 10.5, 15.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    monkeypatch.setattr(pictures, "predict", lambda cohort, task, x: {"student1": [found]})
    monkeypatch.setattr(pictures, "VIEWING_SIDE", 1)  # drawn at the image's own size, as a large image is
    [path] = pictures.save_box_pictures(None, None, data, tmp_path, 1, None)
    drawn = np.asarray(Image.open(path))
    assert (drawn[2:8, 2] == 255).all() and not drawn[8, 2].any()  # the true box, one pixel wide, in white
    column = drawn[10:15, 10]  # the found box, coloured (neither black nor white)
    assert column.any(axis=1).all() and not (column == 255).all(axis=1).any()


def test_a_detection_run_built_in_python_is_scored_and_predicted_like_a_config_run(tmp_path):
    from peerdistill import (Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec, evaluate_run, predict_files,
                             preset_edges)
    from peerdistill.data.detection import detection_splits, synthetic_boxes
    from peerdistill.models.detector import Detector
    from peerdistill.tasks.detection import layout_of

    x, y, names = synthetic_boxes(40, 32)
    (train, val, test), _ = detection_splits(x, y, names, 0.2, 0.2, 0)
    data = DataSplits(train, val, test, num_classes=2, class_names=names, input_shape=(3, 32, 32))

    def modules():
        torch.manual_seed(0)
        return {"teacher": Detector(3, 2, width=8, depth=1), "student1": Detector(3, 2, width=4, depth=1),
                "student2": Detector(3, 2, width=4, depth=1)}

    built = modules()
    cohort = Cohort.from_modules([built["student1"], built["student2"]], teacher=built["teacher"])
    task = DetectionTask(layout_of(built), (32, 32), names, score_threshold=0.01)
    graph = KnowledgeGraph(preset_edges("kd+ml", "teacher", ["student1", "student2"]), logit_distiller=task.distill)
    result = Trainer(cohort, graph, task, train=TrainSpec(epochs=1, batch_size=8), progress=False,
                     run_dir=tmp_path / "det").fit(data)
    saved = json.loads((tmp_path / "det" / "run.json").read_text())["detection"]
    assert saved["image_size"] == [32, 32] and saved["score_threshold"] == 0.01
    scores = evaluate_run(tmp_path / "det", data=data, modules=modules())
    assert scores["ensemble"]["ap"] == pytest.approx(result.test_at_best["ensemble"]["ap"], abs=1e-9)
    np.savez(tmp_path / "x.npz", images=test.x[:3].numpy())
    out = predict_files(tmp_path / "det", [tmp_path / "x.npz"], tmp_path / "pred.csv", modules=modules())
    rows = list(csv.DictReader(out.open()))  # boxes kept by the run's own threshold, 0.01 (default 0.05)
    assert rows and {r["class"] for r in rows} <= set(names) and min(float(r["score"]) for r in rows) < 0.05
    # a run written before the settings were recorded: one message, not a KeyError
    from peerdistill.errors import CheckpointError

    info = json.loads((tmp_path / "det" / "run.json").read_text())
    del info["detection"]
    (tmp_path / "det" / "run.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="holds no 'detection' settings"):
        evaluate_run(tmp_path / "det", data=data, modules=modules())


def test_renumbering_detection_targets_keeps_padding_and_crowd_regions():
    from peerdistill.runs import _renumbered

    y = torch.tensor([[[0, 1, 1, 2, 2], [1, 0, 0, 3, 3], [-3, 0, 0, 1, 1], [-1, 0, 0, 0, 0]]], dtype=torch.float32)
    out = _renumbered(y, torch.tensor([1, 0]))  # the data's class 0 is the run's 1 and back
    assert out[0, :, 0].tolist() == [1, 0, -2, -1] and torch.equal(out[..., 1:], y[..., 1:])


def write_coco_rectangles(root, categories, n=12, size=32):
    """``n`` images, each with one red rectangle (the first category) and one blue (the second)."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        pixels = np.zeros((size, size, 3), np.uint8)
        for k, colour in enumerate(((255, 0, 0), (0, 0, 255))):
            x, y = int(rng.integers(0, 5)) + 16 * k, int(rng.integers(0, 20))
            pixels[y:y + 10, x:x + 12] = colour
            annotations.append({"id": len(annotations), "image_id": i, "category_id": categories[k]["id"],
                                "bbox": [x, y, 12, 10]})
        from PIL import Image

        Image.fromarray(pixels).save(root / "img" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": size, "height": size})
    path = root / f"ann-{categories[0]['id']}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_eval_on_a_coco_file_numbering_its_categories_otherwise_matches_them_by_name(tmp_path):
    from peerdistill.config import DataSpec
    from peerdistill.data import build_data
    from peerdistill.errors import DataError
    from peerdistill.runs import check_compatible

    def data(annotations):
        return build_data(DataSpec(kind="coco", root=str(tmp_path), images="img", annotations=annotations.name,
                                   image_size=[32, 32]))

    first = data(write_coco_rectangles(tmp_path, [{"id": 3, "name": "red"}, {"id": 7, "name": "blue"}]))
    meta = {"task": "detection", "class_names": first.class_names, "num_classes": 2, "input_shape": [3, 32, 32]}
    assert first.class_names == ["red", "blue"]
    # the same boxes re-exported by another tool: blue is now category 1, red 2 (sorted ids swap them)
    swapped = data(write_coco_rectangles(tmp_path, [{"id": 2, "name": "red"}, {"id": 1, "name": "blue"}]))
    assert swapped.class_names == ["blue", "red"] and not torch.equal(swapped.test.y, first.test.y)
    matched = check_compatible(swapped, meta)  # what eval scores a run on
    assert matched.class_names == ["red", "blue"]
    for split in ("train", "val", "test"):
        assert torch.equal(matched.split(split).y, first.split(split).y)
    unknown = data(write_coco_rectangles(tmp_path, [{"id": 9, "name": "red"}, {"id": 8, "name": "green"}]))
    with pytest.raises(DataError, match=r"the data has classes \['green'\] that the run does not know .*rename the "
                                        r"class folders, the CSV's labels, the boxes' label values or the COCO categories"):
        check_compatible(unknown, meta)


def test_eval_on_another_box_source_drops_the_saved_sections_keys_of_the_old_kind(tmp_path, capsys):
    """A mask_boxes run (its data section names a masks folder) scored on a COCO export of the
    same images: data.kind=coco must not inherit data.masks (refused for coco)."""
    from PIL import Image

    first = write_coco_rectangles(tmp_path, [{"id": 1, "name": "object"}, {"id": 2, "name": "other"}], n=12)
    (tmp_path / "labels").mkdir()
    for i in range(12):  # masks from the red rectangle of each image
        pixels = np.asarray(Image.open(tmp_path / "img" / f"{i}.png"))
        Image.fromarray(((pixels[..., 0] > 200) * 255).astype(np.uint8)).save(tmp_path / "labels" / f"{i}.png")
    cfg = tree(tmp_path, "mb", data={"kind": "mask_boxes", "root": str(tmp_path), "images": "img", "masks": "labels",
                                      "image_size": [32, 32], "augment": ["scale"]})
    train_from_config(cfg, progress=False)
    one_class = write_coco_rectangles(tmp_path / "coco", [{"id": 1, "name": "object"}, {"id": 2, "name": "x"}], n=12)
    data = json.loads(one_class.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] == 1]
    data["categories"] = data["categories"][:1]
    one_class.write_text(json.dumps(data))
    code = main(["eval", str(tmp_path / "mb"), "data.kind=coco", f"data.root={tmp_path / 'coco'}",
                 f"data.annotations={one_class.name}", "--json"])
    assert code == 0, capsys.readouterr().err
    assert set(json.loads(capsys.readouterr().out)) == {"teacher", "student1", "student2", "ensemble"}
    assert first.exists()
    # the other way: a run of boxes named 'polyp' (a COCO file) scored on boxes from the masks, whose
    # one class data.class_names names as the run does
    data["categories"] = [{"id": 1, "name": "polyp"}]
    one_class.write_text(json.dumps(data))
    named = tree(tmp_path, "named", data={"kind": "coco", "root": str(tmp_path / "coco"), "images": "img",
                                          "annotations": one_class.name, "image_size": [32, 32]})
    train_from_config(named, progress=False)
    masks = ["data.kind=mask_boxes", f"data.root={tmp_path}", "data.images=img", "data.masks=labels",
             "data.annotations=null"]
    assert main(["eval", str(tmp_path / "named"), *masks, "--json"]) == 2
    assert "the data has classes ['object'] that the run does not know" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "named"), *masks, "data.class_names=[polyp]", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["ensemble"]) >= {"ap", "ap50"}
    assert main(["eval", str(tmp_path / "named"), *masks, "data.class_names=[polyp, x]", "--json"]) == 2
    assert "so it holds one name, not 2: e.g. data.class_names=[polyp]" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("rule", ["wbf", "nms", "nmw"])
def test_the_ensemble_keeps_boxes_in_place_on_a_wide_image(rule):
    """Boxes go to ensemble-boxes divided by (w, h, w, h) and come back multiplied: on a
    50 high, 100 wide image a box no other model overlaps is returned where it was."""
    task = DetectionTask(HeadLayout(2), (50, 100), ensemble=rule)
    fused = task.ensemble([[det([[60, 10, 90, 40]], [0.8], [1])], [det([[5, 5, 20, 45]], [0.6], [0])]])[0]
    np.testing.assert_allclose(fused["boxes"].numpy(), [[60, 10, 90, 40], [5, 5, 20, 45]], atol=1e-3)


def test_the_ensemble_returns_the_max_detections_best_boxes():
    task = DetectionTask(HeadLayout(1), (100, 100), ensemble="nms", max_detections=2)
    a = det([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], [0.3, 0.9, 0.5], [0, 0, 0])
    b = det([[60, 60, 70, 70]], [0.7], [0])
    fused = task.ensemble([[a], [b]])[0]
    assert fused["scores"].tolist() == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(fused["boxes"].numpy(), [[20, 20, 30, 30], [60, 60, 70, 70]], atol=1e-3)


@pytest.mark.parametrize("rule", ["wbf", "nmw"])
def test_the_ensemble_keeps_low_scored_boxes_and_merges_only_above_ensemble_iou(rule):
    """decode's boxes start at score 0.05, so fusion must drop none for a low score (ensemble-boxes'
    skip_box_thr 0); and the two label-0 boxes (IoU 0.905) are one box at ensemble_iou 0.7 but two
    at 0.95."""
    a = det([[10, 10, 50, 50], [70, 70, 90, 90]], [0.9, 0.1], [0, 1])
    b = det([[12, 10, 52, 50]], [0.7], [0])
    merged = DetectionTask(HeadLayout(2), (100, 100), ensemble=rule, ensemble_iou=0.7).ensemble([[a], [b]])[0]
    apart = DetectionTask(HeadLayout(2), (100, 100), ensemble=rule, ensemble_iou=0.95).ensemble([[a], [b]])[0]
    assert merged["labels"].tolist() == [0, 1] and apart["labels"].tolist() == [0, 0, 1]
    # WBF halves the score of a box one of two models found; NMW keeps the scores as they were
    low = 0.1 / 2 if rule == "wbf" else 0.1
    assert float(merged["scores"][1]) == pytest.approx(low, abs=1e-5)
    np.testing.assert_allclose(apart["boxes"][:2].numpy(), [[10, 10, 50, 50], [12, 10, 52, 50]], atol=1e-3)


def test_detections_that_are_all_wrong_score_ap_zero_not_undefined():
    """Truth in the split, detections that hit none: AP and AR are 0 (COCOeval's stats 0, not its
    -1 for nothing to score)."""
    truths = [np.array([[0, 0, 0, 10, 10]], np.float32)]
    preds = [{"boxes": np.array([[50, 50, 60, 60]], np.float32), "scores": np.array([0.9]), "labels": np.array([0])}]
    m = coco_metrics(preds, truths, ["polyp"])
    assert m["ap"] == 0.0 and m["ap50"] == 0.0 and m["ar100"] == 0.0 and m["ap_polyp"] == 0.0


def test_ap_ranks_detections_by_score_not_by_their_order():
    """The true detection is listed after a false one but scores higher: ranked first, precision
    is 1 up to recall 1 (AP 1); in list order it would be 1/2 (AP 0.5)."""
    truths = [np.array([[0, 0, 0, 10, 10]], np.float32)]
    preds = [{"boxes": np.array([[50, 50, 60, 60], [0, 0, 10, 10]], np.float32), "scores": np.array([0.5, 0.9]),
              "labels": np.array([0, 0])}]
    assert coco_metrics(preds, truths, ["polyp"])["ap"] == pytest.approx(1.0)
    preds[0]["scores"] = np.array([0.9, 0.5])
    assert coco_metrics(preds, truths, ["polyp"])["ap"] == pytest.approx(0.5)


def test_the_deployment_pages_detector_block_gives_predicts_boxes(tmp_path):
    """docs/deployment.md decodes an exported detector's dense maps into boxes without
    peerdistill: run as written after the page's first block (steps 1 to 3, as the page says: the
    classifier's scoring block between them stopped a detector), it gives predict's rows."""
    import re

    from PIL import Image

    from peerdistill.export import export_run
    from peerdistill.predict import predict_files

    train_from_config(tree(tmp_path, "r", "kd"), progress=False)
    run = tmp_path / "r"
    page = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    steps, _classifier_scoring, detector = re.findall(r"```python\n(.*?)```", page, re.S)[:3]
    assert "ort.InferenceSession" not in steps  # (reading, resizing and standardising alone)
    image = tmp_path / "wide.png"
    Image.fromarray((np.random.default_rng(3).random((40, 70, 3)) * 255).astype(np.uint8)).save(image)
    record = json.loads((run / "run.json").read_text())
    # a briefly trained detector's faint boxes, alike: all of them (no suppression), then suppressed
    for nms_iou in (1.0, 0.3):
        record["detection"].update(score_threshold=0.0005, max_detections=20, nms_iou=nms_iou)
        (run / "run.json").write_text(json.dumps(record))
        onnx = export_run(run, model="student1", out=tmp_path / "d.onnx").path
        scope = {"json_path": str(onnx.with_suffix(".json")), "image_path": str(image), "onnx_path": str(onnx)}
        exec(steps + detector, scope)  # noqa: S102 - the page's own blocks
        predict_files(onnx, [str(image)], tmp_path / "p.csv")
        rows = list(csv.DictReader((tmp_path / "p.csv").open()))
        assert len(rows) == len(scope["found"])
        assert len(rows) == 20 if nms_iou == 1.0 else 1 <= len(rows) < 20  # (suppressed: fewer)
        for row, (name, score, *box) in zip(rows, scope["found"], strict=True):
            assert row["class"] == name and abs(float(row["score"]) - score) < 1e-5
            np.testing.assert_allclose([float(row[k]) for k in ("x1", "y1", "x2", "y2")], box, atol=0.011)


def test_box_decoding_chosen_with_eval_reaches_predict_and_the_exported_file(tmp_path, capsys):
    """eval detect.score_threshold=... tuned a threshold that predict and export could not take."""
    from PIL import Image

    train_from_config(tree(tmp_path, "r", "kd"), progress=False)
    run = tmp_path / "r"
    record = json.loads((run / "run.json").read_text())
    record["detection"].update(score_threshold=0.0005, nms_iou=1.0)  # a briefly trained detector: its faint boxes
    (run / "run.json").write_text(json.dumps(record))
    image = tmp_path / "one.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(image)

    def rows(*args):
        assert main(["predict", *map(str, args), "--out", str(tmp_path / "b.csv")]) == 0
        return list(csv.DictReader((tmp_path / "b.csv").open()))

    everything = rows(run, image)
    assert len(everything) > 5  # (every point and class of a 32x32 input: 21 x 2)
    capsys.readouterr()
    rows(run, image, "--model", "ensemble", "detect.ensemble=nmw")  # which models, fused how, said
    assert ("(the ensemble of student1, student2: boxes fused by non-maximum weighted fusion at IoU 0.7; a detection "
            "run: boxes)") in " ".join(capsys.readouterr().out.split())
    fewer = rows(run, image, "detect.max_detections=5", "detect.score_threshold=0.001")
    assert len(fewer) == 5 and [r["score"] for r in fewer] == [r["score"] for r in everything[:5]]
    assert main(["export", str(run), "--model", "student1", "detect.max_detections=3"]) == 0
    onnx = run / "export" / "student1.onnx"
    assert json.loads(onnx.with_suffix(".json").read_text())["detection"]["max_detections"] == 3
    # the head and box decoding alone: training's distillation weights mean nothing to a device (review 50d)
    assert not [k for k in json.loads(onnx.with_suffix(".json").read_text())["detection"] if k.startswith("kd_")]
    assert [k for k in json.loads((run / "run.json").read_text())["detection"] if k.startswith("kd_")]
    assert len(rows(onnx, image)) == 3 and len(rows(onnx, image, "detect.max_detections=4")) == 4
    capsys.readouterr()
    for args, said in ((["predict", run, image, "--out", tmp_path / "c.csv", "detect.score_threshold=1.5"],
                        "score_threshold"),
                       (["predict", run, image, "--out", tmp_path / "c.csv", "detect.kd_cls_weight=2"],
                        "not detect.kd_cls_weight: training settings need a new run"),
                       (["predict", run, image, "--out", tmp_path / "c.csv", "detect.score_treshold=0.3"],
                        "not detect.score_treshold: no such key"),
                       (["export", run, "data.root=x"], "export takes only detect.* decoding settings after RUN_DIR")):
        assert main(list(map(str, args))) == 2
        assert said in " ".join(capsys.readouterr().err.split()), said


def test_an_input_without_a_box_has_a_row_of_its_name_alone(tmp_path):
    # a frame without a polyp had no row: read as one never processed
    from PIL import Image

    train_from_config(tree(tmp_path, "r", "kd"), progress=False)
    image = tmp_path / "one.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(image)
    assert main(["predict", str(tmp_path / "r"), str(image), "--out", str(tmp_path / "b.csv"),
                 "detect.score_threshold=0.999"]) == 0
    rows = list(csv.reader((tmp_path / "b.csv").open()))
    assert len(rows) == 2 and Path(rows[1][0]).name == "one.png" and rows[1][1:] == [""] * 6


def test_a_detector_given_a_class_count_of_its_own_is_told_where_the_count_comes_from(tmp_path, capsys):
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "boxes.yaml"
    counts = [f"{m}.args.num_classes=3" for m in ("teacher", "students.0", "students.1")]
    assert main(["train", str(recipe), *counts, f"out_dir={tmp_path}", "--dry-run"]) == 2
    assert ("the task has 3 classes but the data 2 (ellipse, rectangle): build the detectors (and the task from their "
            "head layout) for the data's classes (in a config, remove num_classes from the models' args: a detector "
            "takes its count from the data)") in " ".join(capsys.readouterr().err.split())
    assert not any(tmp_path.iterdir())
