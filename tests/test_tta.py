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


def test_eval_scores_the_averaged_masks(shapes_run):
    from peerdistill.runs import _run_data, evaluate_run, load_cohort, task_for

    scores = evaluate_run(shapes_run, tta="hflip")
    cohort, meta = load_cohort(shapes_run)
    data, task = _run_data(meta), task_for(meta)
    meter = task.new_meter()
    with torch.no_grad():
        probs = [(m.module.eval()(data.test.x).softmax(1) + m.module(data.test.x.flip(-1)).softmax(1).flip(-1)) / 2
                 for m in cohort.students]
    meter.update(sum(probs) / 2, data.test.y)
    assert scores["ensemble"]["dice"] == pytest.approx(meter.compute()["dice"], abs=1e-6)


def test_eval_json_names_the_flipped_figures_as_such(shapes_run, capsys):
    # a saved JSON of flipped figures under the plain names could not be told from a plain eval
    from peerdistill.cli import main
    from peerdistill.engine.artifacts import jsonable
    from peerdistill.runs import evaluate_run

    assert main(["eval", str(shapes_run), "--tta", "hflip", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    flipped = jsonable(evaluate_run(shapes_run, tta="hflip"))  # (NaN as null, as printed)
    assert printed == {model: {f"tta_{k}": v for k, v in figures.items()} for model, figures in flipped.items()}
    assert main(["eval", str(shapes_run), "--json"]) == 0
    assert not [k for figures in json.loads(capsys.readouterr().out).values() for k in figures if k.startswith("tta_")]


def test_detection_and_unknown_flips_are_refused():
    cohort = cohort_of(nn.Identity())
    with pytest.raises(ConfigError, match="not available for detection"):
        with_tta(cohort, "hflip", "detection")
    with pytest.raises(ConfigError, match="tta='rot90': use hflip or flips"):
        with_tta(cohort, "rot90", "classification")
    assert with_tta(cohort, None, "classification") is cohort
    from peerdistill.cli.arguments import TTA_CHOICES  # the parser's choices, written without torch

    assert TTA_CHOICES == tuple(TTA_FLIPS)


def test_vector_inputs_are_not_mirrored():
    cohort = cohort_of(nn.Identity())
    with pytest.raises(ConfigError, match=r"this run's inputs are \[64\] \(vectors\): drop tta="):
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
    with pytest.raises(ConfigError, match="tta= averages class probabilities over flips; a detector.s boxes would "
                                          "have to be mirrored back and fused: not available for detection"):
        compare({**tree, "task": "detection", "data": {"kind": "boxes"}, "name": "d",
                 "students": [{"arch": "detector"}] * 2}, ["ml"], 1, progress=False, tta="hflip")


def test_an_exported_model_is_averaged_in_its_own_kind_of_output():
    from peerdistill.exported_models import STUDENT_LOGITS, EnsembleProbabilities, FlipAveragedModel, StudentLogits

    torch.manual_seed(2)
    a, b = nn.Conv2d(3, 2, 3, padding=1).eval(), nn.Conv2d(3, 2, 3, padding=1).eval()
    x = torch.randn(2, 3, 8, 10)
    flips = TTA_FLIPS["flips"]

    def averaged(model):  # one model's probabilities over the four mirrorings, mirrored back, by hand
        return sum(model(x.flip(d)).softmax(1).flip(d) if d else model(x).softmax(1) for d in flips) / 4

    with torch.no_grad():
        logits = FlipAveragedModel(a, flips, "logits", 1)(x)
        probabilities = FlipAveragedModel(EnsembleProbabilities({"a": a, "b": b}), flips, "probabilities", 2)(x)
        side_by_side = FlipAveragedModel(StudentLogits({"a": a, "b": b}), flips, STUDENT_LOGITS, 2)(x)
        expected_a, expected_b = averaged(a), averaged(b)
    torch.testing.assert_close(logits.softmax(1), expected_a, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(probabilities, (expected_a + expected_b) / 2, atol=1e-6, rtol=1e-5)
    assert side_by_side.shape == (2, 4, 8, 10)  # each student's log-probabilities, side by side
    torch.testing.assert_close(side_by_side[:, :2].softmax(1), expected_a, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(side_by_side[:, 2:].softmax(1), expected_b, atol=1e-6, rtol=1e-5)


def test_an_exported_file_with_flips_computes_what_eval_tta_scores(shapes_run, tmp_path):
    from peerdistill.export import export_run
    from peerdistill.predict import _onnx_model, _run_model
    from peerdistill.runs import _run_data, load_cohort

    run_dir = shapes_run
    cohort, meta = load_cohort(run_dir)
    x = _run_data(meta).test.x[:4]
    for member in cohort.members:
        member.module.eval()
    with torch.no_grad():  # eval --tta's own averaging
        flipped = {n: z.softmax(1) for n, z in FlipAveraged(cohort, TTA_FLIPS["flips"]).forward(x).logits.items()}
    for model, expected in (("student1", flipped["student1"]),
                            ("ensemble", (flipped["student1"] + flipped["student2"]) / 2)):
        result = export_run(run_dir, model=model, tta="flips", out=tmp_path / f"{model}.onnx")
        assert result.tta == "flips" and result.max_abs_diff <= 1e-4
        assert json.loads((tmp_path / f"{model}.json").read_text())["tta"] == "flips"
        info, run = _onnx_model(tmp_path / f"{model}.onnx")
        scores = run(x)
        got = scores if info["output"] == "probabilities" else scores.softmax(1)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
        _, from_run_dir = _run_model(run_dir, model, None, tta="flips")  # predict RUN_DIR --tta flips
        scores = from_run_dir(x)
        torch.testing.assert_close(scores if info["output"] == "probabilities" else scores.softmax(1), expected,
                                   atol=1e-5, rtol=1e-4)


def test_a_sliding_window_ensemble_with_flips_predicts_alike_from_the_file_and_the_run(patch_shapes_run, tmp_path):
    from peerdistill.export import export_run
    from peerdistill.predict import _onnx_model, _run_model
    from peerdistill.runs import _run_data, load_cohort

    run_dir = patch_shapes_run
    export_run(run_dir, model="ensemble", tta="hflip", out=tmp_path / "ensemble.onnx")
    _, meta = load_cohort(run_dir)
    x = _run_data(meta).test.x[:3]
    _, from_file = _onnx_model(tmp_path / "ensemble.onnx")
    _, from_run = _run_model(run_dir, "ensemble", None, tta="hflip")
    _, plain = _run_model(run_dir, "ensemble", None)
    torch.testing.assert_close(from_file(x), from_run(x), atol=1e-5, rtol=1e-4)
    assert (from_run(x) - plain(x)).abs().max() > 1e-4  # the flips changed something


def test_flips_are_refused_where_they_cannot_go(tmp_path, capsys):
    from peerdistill.cli import main
    from peerdistill.exported_models import flip_averaged

    with pytest.raises(ConfigError, match="not available for detection"):
        flip_averaged(nn.Identity(), "logits", {"task": "detection", "input_shape": [3, 32, 32]}, "hflip")
    run_cli = ["train", f"out_dir={tmp_path}", "name=c", "train.epochs=1", "train.batch_size=256", "teacher=null",
               "distill.preset=ml", "students.0.args.width=4", "students.1.args.width=4", "--quiet"]
    assert main(run_cli) == 0
    assert main(["export", str(tmp_path / "c"), "--format", "safetensors", "--tta", "hflip"]) == 2
    assert "--tta puts the flips into an ONNX graph" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "c"), "--model", "ensemble", "--tta", "hflip", "--temperature-scaling",
                 "--out", str(tmp_path / "e.onnx")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "probabilities averaged over the image and its left-right mirror, tempered: T =" in out
    assert main(["predict", str(tmp_path / "e.onnx"), str(tmp_path / "x.npz"), "--tta", "hflip",
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "export with --temperature-scaling / --operating-point RULE / --tta FLIPS" in " ".join(
        capsys.readouterr().err.split())


def test_a_model_certain_to_underflow_gives_finite_averaged_logits():
    """Logits 100 and -100: class 1's probability underflows to exactly 0 in float32 in every
    flip, so its mean is 0; its log must stay finite (clamped), or evaluation would take the
    -inf for diverged weights and refuse to score a model that is merely sure."""
    from peerdistill.engine.evaluate import FiniteCheck

    model = nn.Conv2d(1, 2, 1).eval()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([100.0, -100.0]).view(2, 1, 1, 1))
        model.bias.zero_()
        x = torch.ones(2, 1, 4, 6)
        assert (model(x).softmax(1)[:, 1] == 0).all()
        got = FlipAveraged(cohort_of(model), TTA_FLIPS["flips"]).forward(x).logits["student1"]
        torch.testing.assert_close(got.softmax(1), model(x).softmax(1))
    check = FiniteCheck(None, "student1")
    check.check(got)
    assert torch.isfinite(got).all() and check.finite
