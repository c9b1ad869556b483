"""Test-time flips: the averaged probabilities against the flips written out by hand."""

import json

import pytest
import torch
from torch import nn

from peerdistill.cohort import Cohort, Member
from peerdistill.engine.tta import TTA_FLIPS, FlipAveraged, with_tta
from peerdistill.errors import ConfigError


def cohort_of(model):
    return Cohort([Member("student1", model, "student")])


def test_mirrored_maps_are_flipped_back_and_probabilities_averaged():
    torch.manual_seed(0)
    model = nn.Conv2d(3, 2, 3, padding=1).eval()  # not mirror-symmetric: the flips differ
    x = torch.randn(2, 3, 8, 10)
    with torch.no_grad():
        got = FlipAveraged(cohort_of(model), TTA_FLIPS["flips"]).forward(x).logits["student1"]
        by_hand = sum(model(x.flip(d) if d else x).softmax(1).flip(d) if d else model(x).softmax(1)
                      for d in [(), (-1,), (-2,), (-2, -1)]) / 4
    torch.testing.assert_close(got.softmax(1), by_hand, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(by_hand, model(x).softmax(1).detach(), atol=1e-3)


def test_class_scores_are_averaged_without_flipping_back():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(3)).eval()
    x = torch.randn(5, 1, 6, 6)
    with torch.no_grad():
        model(x)
        got = FlipAveraged(cohort_of(model), TTA_FLIPS["hflip"]).forward(x).logits["student1"].softmax(1)
        by_hand = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    torch.testing.assert_close(got, by_hand, atol=1e-6, rtol=1e-5)


def test_eval_scores_the_averaged_masks(tmp_path):
    from peerdistill.build import train_from_config
    from peerdistill.config import validate
    from peerdistill.runs import _run_data, evaluate_run, load_cohort, task_for

    train_from_config(validate({"name": "s", "out_dir": str(tmp_path), "task": "segmentation", "teacher": None,
                                "data": {"kind": "shapes", "shapes_counts": [16, 8, 8]},
                                "students": [{"arch": "unet", "args": {"width": 4, "depth": 1}}] * 2,
                                "distill": {"preset": "ml"}, "train": {"epochs": 1, "batch_size": 8}}), progress=False)
    scores = evaluate_run(tmp_path / "s", tta="hflip")
    cohort, meta = load_cohort(tmp_path / "s")
    data, task = _run_data(meta), task_for(meta)
    meter = task.new_meter()
    with torch.no_grad():
        probs = [(m.module.eval()(data.test.x).softmax(1) + m.module(data.test.x.flip(-1)).softmax(1).flip(-1)) / 2
                 for m in cohort.students]
    meter.update(sum(probs) / 2, data.test.y)
    assert scores["ensemble"]["dice"] == pytest.approx(meter.compute()["dice"], abs=1e-6)


def test_detection_and_unknown_flips_are_refused():
    cohort = cohort_of(nn.Identity())
    with pytest.raises(ConfigError, match="not available for detection"):
        with_tta(cohort, "hflip", "detection")
    with pytest.raises(ConfigError, match="--tta 'rot90': use hflip or flips"):
        with_tta(cohort, "rot90", "classification")
    assert with_tta(cohort, None, "classification") is cohort


def test_vector_inputs_are_not_mirrored():
    cohort = cohort_of(nn.Identity())
    with pytest.raises(ConfigError, match=r"this run's inputs are \[64\] \(vectors\): drop --tta"):
        with_tta(cohort, "flips", "classification", (64,))


def test_compare_tabulates_the_flipped_figures_beside_the_plain_ones(tmp_path):
    import csv

    from peerdistill.compare import compare
    from peerdistill.runs import evaluate_run

    tree = {"name": "s", "out_dir": str(tmp_path), "task": "segmentation", "teacher": None,
            "data": {"kind": "shapes", "shapes_counts": [16, 8, 8]},
            "students": [{"arch": "unet", "args": {"width": 4, "depth": 1}}] * 2,
            "train": {"epochs": 1, "batch_size": 8}}
    result = compare(tree, ["independent", "ml"], 1, progress=False, tta="hflip")
    rows = {(r["setting"], r["model"], r["metric"]): r for r in csv.DictReader((result.directory / "compare.csv").open())}
    flipped = evaluate_run(result.directory / "ml-seed0", tta="hflip")
    plain = json.loads((result.directory / "ml-seed0" / "metrics.json").read_text())["test_at_best"]
    for model in ("student1", "ensemble"):
        assert float(rows["ml", model, "tta_dice"]["mean"]) == pytest.approx(flipped[model]["dice"], abs=1e-6)
        assert float(rows["ml", model, "dice"]["mean"]) == pytest.approx(plain[model]["dice"], abs=1e-6)
    assert "The `tta_*` tables" in result.markdown and "### test tta_dice" in result.markdown
    # per-class figures in one table per family, flipped ones too (not a table per class)
    assert "### test tta_dice per class" in result.markdown and "### test tta_dice_foreground" not in result.markdown
    paired = {(r["model"], r["metric"]) for r in csv.DictReader((result.directory / "differences.csv").open())}
    assert ("ensemble", "tta_dice") in paired
    with pytest.raises(ConfigError, match="it is for classification and segmentation comparisons"):
        compare({**tree, "task": "detection", "data": {"kind": "boxes"}, "name": "d",
                 "students": [{"arch": "detector"}] * 2}, ["ml"], 1, progress=False, tta="hflip")
