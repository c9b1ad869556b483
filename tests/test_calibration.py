"""Temperature scaling: tempering, the fit against a search written out by hand, a known
temperature recovered, and eval --temperature-scaling against the figures computed from the run's
probabilities."""

import json
import math

import numpy as np
import pytest
import torch

from peerdistill.calibration import fit_temperature, nll, tempered
from peerdistill.metrics import calibration_metrics


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_tempering_probabilities_is_dividing_the_logits():
    z = np.random.default_rng(0).normal(0, 3, (50, 4))
    for t in (0.5, 1.0, 2.5):
        np.testing.assert_allclose(tempered(softmax(z), t), softmax(z / t), atol=1e-12)
    # the ranking stays: accuracy and AUC cannot move
    assert (tempered(softmax(z), 3.0).argmax(1) == z.argmax(1)).all()


def naive_nll(probs, labels, t):
    total = 0.0
    for row, label in zip(probs, labels):
        scaled = [math.log(p) / t for p in row]
        top = max(scaled)
        total += -(scaled[label] - top - math.log(sum(math.exp(s - top) for s in scaled)))
    return total / len(labels)


def test_the_fitted_temperature_is_the_minimum_of_the_negative_log_likelihood():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (200, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(z / 2)])
    probs = softmax(z)
    fitted = fit_temperature(probs, labels)
    grid = np.exp(np.linspace(math.log(0.2), math.log(8), 400))
    losses = [naive_nll(probs, labels, t) for t in grid]
    best = grid[int(np.argmin(losses))]
    assert fitted == pytest.approx(best, rel=0.02)  # the grid's step is 0.9%
    assert nll(probs, labels, fitted) <= min(losses) + 1e-9
    assert nll(probs, labels, fitted) == pytest.approx(naive_nll(probs, labels, fitted), abs=1e-12)


def test_an_overconfident_model_gets_its_temperature_back():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.5, (20000, 2))
    labels = (rng.random(20000) < softmax(z)[:, 1]).astype(int)  # the truth follows softmax(z)
    overconfident = softmax(3 * z)  # the model says softmax(3 z): T = 3 undoes it
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.05)
    before = calibration_metrics(overconfident, labels)["ece"]
    after = calibration_metrics(tempered(overconfident, fit_temperature(overconfident, labels)), labels)["ece"]
    assert after < before / 3


def test_the_temperature_is_fitted_on_validation_and_only_applied_to_the_scored_split():
    from peerdistill.calibration import calibrated_figures

    rng = np.random.default_rng(3)

    def split(n, sharpness):  # truth follows softmax(z); the model says softmax(sharpness z)
        z = rng.normal(0, 1.5, (n, 2))
        return softmax(sharpness * z), (rng.random(n) < softmax(z)[:, 1]).astype(int)

    (val_p, val_y), (test_p, test_y) = split(4000, 3.0), split(4000, 1.0)  # overconfident on val only
    (figures,) = calibrated_figures(({"m": val_p}, val_y), ({"m": test_p}, test_y)).values()
    t = fit_temperature(val_p, val_y)
    assert figures["temperature"] == t and t == pytest.approx(3.0, rel=0.1)
    assert abs(fit_temperature(test_p, test_y) - t) > 1  # the test split's own fit would differ
    assert figures == pytest.approx({"temperature": t, **calibration_metrics(tempered(test_p, t), test_y)})


def test_eval_temperature_scaling_fits_on_validation_and_scores_the_test_split(tmp_path, capsys):
    from peerdistill.build import train_from_config
    from peerdistill.cli import main
    from peerdistill.config import validate
    from peerdistill.engine.evaluate import split_probabilities
    from peerdistill.runs import _run_data, load_cohort, task_for

    train_from_config(validate({"name": "r", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml"},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": 2, "batch_size": 256}}), progress=False)
    run = tmp_path / "r"
    assert main(["eval", str(run), "--temperature-scaling", "--json"]) == 0
    said = capsys.readouterr()
    scores = json.loads(said.out)
    assert "in-sample" not in said.err
    val = len(_run_data(load_cohort(run)[1]).val)
    # the fit's own split, read as the run's or by a data section naming the same data: said so
    for split, extra in (("val", []), ("all", []), ("val", ["data.kind=digits", "data.split_seed=0"]),
                         ("all", ["data.kind=digits"])):
        assert main(["eval", str(run), "--temperature-scaling", "--split", split, *extra, "--json"]) == 0
        assert (f"the temperature is fitted on the run's validation split, and {val:,} of the") in \
            " ".join(capsys.readouterr().err.split())
    assert main(["eval", str(run), "--temperature-scaling", "data.split_seed=1", "--split", "test", "--json"]) == 0
    assert "in-sample" in capsys.readouterr().err  # dealt anew: the run's val images land in this test split too
    cohort, meta = load_cohort(run)
    data, task = _run_data(meta), task_for(meta)
    val_probs, val_y = split_probabilities(cohort, task, data.val, torch.device("cpu"))
    test_probs, test_y = split_probabilities(cohort, task, data.test, torch.device("cpu"))
    for model in ("student1", "ensemble"):
        t = fit_temperature(val_probs[model], val_y)
        assert scores[model]["cal_temperature"] == pytest.approx(t, rel=1e-6)
        expected = calibration_metrics(tempered(test_probs[model], t), test_y)
        assert scores[model]["cal_ece"] == pytest.approx(expected["ece"], abs=1e-9)
        assert scores[model]["cal_brier"] == pytest.approx(expected["brier"], abs=1e-9)
        assert scores[model]["accuracy"] == pytest.approx(float((test_probs[model].argmax(1) == test_y).mean()))
    assert main(["eval", str(run), "--temperature-scaling"]) == 0
    assert "ece tempered" in capsys.readouterr().out
    # export puts the same temperature into the graph: its probabilities are the tempered ones
    import onnxruntime as ort

    x = torch.stack([data.test[i][0] for i in range(len(data.test))]).float().numpy()
    for model in ("student1", "ensemble"):
        assert main(["export", str(run), "--model", model, "--temperature-scaling", "--out", str(tmp_path / "x")]) == 0
        t = scores[model]["cal_temperature"]
        assert f"tempered: T = {t:.4g}" in " ".join(capsys.readouterr().out.split())
        onnx = tmp_path / "x" / f"{model}.onnx"
        assert json.loads(onnx.with_suffix(".json").read_text())["temperature"] == pytest.approx(t)
        out = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        probs = softmax(out.astype(np.float64)) if model == "student1" else out
        np.testing.assert_allclose(probs, tempered(test_probs[model], t), atol=1e-5)
    assert main(["export", str(run), "--model", "student1", "--temperature-scaling", "--format", "safetensors"]) == 2
    assert "safetensors holds weights alone" in capsys.readouterr().err


def test_calibrating_a_segmentation_run_is_refused(tmp_path, capsys):
    from peerdistill.build import train_from_config
    from peerdistill.cli import main
    from peerdistill.config import validate

    train_from_config(validate({"name": "s", "out_dir": str(tmp_path), "task": "segmentation", "teacher": None,
                                "data": {"kind": "shapes", "shapes_counts": [8, 4, 4]},
                                "students": [{"arch": "unet", "args": {"width": 4}}], "distill": {"preset": "independent"},
                                "train": {"epochs": 1, "batch_size": 8}}), progress=False)
    said = ("error: --temperature-scaling tempers class probabilities: it is for classification runs, and this is a "
            "segmentation run; drop --temperature-scaling")
    for command in (["eval", str(tmp_path / "s")], ["export", str(tmp_path / "s"), "--model", "student1"],
                    ["predict", str(tmp_path / "s"), str(tmp_path), "--out", str(tmp_path / "p.csv")]):
        assert main([*command, "--temperature-scaling"]) == 2
        assert " ".join(capsys.readouterr().err.split()) == said  # one rule and one message, whichever command


def test_compare_tabulates_each_runs_temperature_and_its_figures(tmp_path):
    import csv

    from peerdistill.compare import compare
    from peerdistill.errors import ConfigError
    from peerdistill.runs import evaluate_run

    tree = {"name": "c", "out_dir": str(tmp_path), "teacher": None,
            "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2, "train": {"epochs": 1, "batch_size": 256}}
    result = compare(tree, ["independent", "ml"], 2, progress=False, temperature_scaling=True)
    rows = list(csv.DictReader((result.directory / "compare.csv").open()))
    row = next(r for r in rows if r["setting"] == "ml" and r["model"] == "ensemble" and r["metric"] == "cal_ece")
    expected = [evaluate_run(result.directory / f"ml-seed{s}", temperature_scaling=True)["ensemble"]["cal_ece"]
                for s in (0, 1)]
    assert [float(v) for v in row["values"].split(";")] == pytest.approx(expected, abs=1e-6)  # written to 6 places
    assert "The `cal_*` tables" in result.markdown and "### cal_temperature (chosen on val)" in result.markdown
    # a temperature has no better direction; a tempered ECE is better lower
    paired = {(r["model"], r["metric"]): r for r in csv.DictReader((result.directory / "differences.csv").open())}
    assert paired["ensemble", "cal_temperature"]["better"] == ""
    ece = paired["ensemble", "cal_ece"]
    base = next(r for r in rows if r["setting"] == "independent" and r["model"] == "ensemble"
                and r["metric"] == "cal_ece")
    diffs = [float(a) - float(b) for a, b in zip(row["values"].split(";"), base["values"].split(";"))]
    assert ece["better"] == str(sum(d < 0 for d in diffs))
    # a run saved before ece was recorded gets the untempered figure beside the tempered one
    saved = result.directory / "ml-seed1" / "metrics.json"
    record = json.loads(saved.read_text())
    for values in record["test_at_best"].values():
        del values["ece"]
    saved.write_text(json.dumps(record))
    again = compare(tree, ["independent", "ml"], 2, progress=False, temperature_scaling=True)
    ece = next(r for r in again.rows if r["setting"] == "ml" and r["model"] == "ensemble" and r["metric"] == "ece")
    fresh = evaluate_run(result.directory / "ml-seed1")["ensemble"]["ece"]
    assert ece["n"] == 2 and ece["values"][1] == pytest.approx(fresh)
    with pytest.raises(ConfigError, match="it is for classification comparisons"):
        compare({**tree, "task": "segmentation", "data": {"kind": "shapes"}, "name": "s"}, ["ml"], 1, progress=False,
                temperature_scaling=True)


def test_a_temperature_stopped_by_the_search_range_is_named():
    from peerdistill.errors import PeerdistillWarning

    probs = np.tile([[0.9, 0.1]], (40, 1))  # sure of class 0, right half the time: flatter is always better
    labels = np.arange(40) % 2
    with pytest.warns(PeerdistillWarning, match="at the end of the range searched"):
        assert fit_temperature(probs, labels) == pytest.approx(20.0, rel=1e-2)
    with pytest.warns(PeerdistillWarning, match="the fitted temperature of student2 20 is at the end"):
        fit_temperature(probs, labels, who="student2")
    # every validation sample right and sure: sharper is always better, down to the low bound (the
    # tempered probability rounds to 1 there, and its log to 0: T stopped anywhere on that flat)
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 40)
    z = rng.normal(size=(40, 3))
    z[np.arange(40), labels] += 12
    sure = softmax(z)
    def exact(t):  # log(1 + sum of the others' exp(z_j - z_label)), with log1p: no rounding to 0
        return sum(math.log1p(sum(math.exp((math.log(p) - math.log(row[label])) / t)
                                  for j, p in enumerate(row) if j != label))
                   for row, label in zip(sure, labels)) / len(labels)

    for t in (0.05, 0.1, 0.3):
        assert nll(sure, labels, t) == pytest.approx(exact(t), rel=1e-9)
    assert 0 < nll(sure, labels, 0.05) < nll(sure, labels, 0.1) < nll(sure, labels, 0.3)
    with pytest.warns(PeerdistillWarning, match="at the end of the range searched"):
        assert fit_temperature(sure, labels) == pytest.approx(0.05, rel=1e-3)


def test_compare_names_the_run_in_what_choosing_on_its_validation_split_warns(tmp_path, monkeypatch):
    import warnings as w

    from peerdistill.compare import _with_chosen_on_val
    from peerdistill.errors import PeerdistillWarning

    def warning_eval(run_dir, **kwargs):
        w.warn("the fitted temperature of student1 20 is at the end of the range searched", PeerdistillWarning)
        return {}

    monkeypatch.setattr("peerdistill.runs.evaluate_run", warning_eval)
    metrics = {"test_at_best": {"student1": {"accuracy": 0.5}}}
    with pytest.warns(PeerdistillWarning, match="^ml-seed1: the fitted temperature of student1 20") as said:
        scored = _with_chosen_on_val(metrics, tmp_path / "ml-seed1", None, True, set())
    assert len(said) == 1  # said once, naming the run, not also without it
    # kept, without the run's name, for compare.md's list (review 50h)
    assert scored == {**metrics, "chosen_on_val_warnings": [
        "the fitted temperature of student1 20 is at the end of the range searched"]}


def test_a_zero_probability_for_the_label_costs_as_much_as_the_smallest_one_and_no_more():
    # float32 softmax underflows to exactly 0: that sample must not make the NLL infinite (every T
    # alike, the fit then arbitrary) nor score better than a label given a tiny probability
    worst = -math.log(np.finfo(np.float64).tiny)
    right = np.tile([[0.2, 0.8]], (3, 1))
    labels = np.array([1, 1, 1, 1])
    for t in (0.5, 1.0, 2.0):
        zero = nll(np.vstack([right, [1.0, 0.0]]), labels, t)
        assert zero == pytest.approx((3 * naive_nll(right, labels[:3], t) + worst) / 4, rel=1e-12)
        tiny = nll(np.vstack([right, [1.0, 1e-310]]), labels, t)  # -log(1e-310) = 713.8 > worst
        assert math.isfinite(zero) and tiny <= zero
    assert 0.05 < fit_temperature(np.vstack([right, [1.0, 0.0]]), labels) < 20  # the fit still finds a minimum


def test_an_empty_validation_split_is_refused_with_the_reason():
    from peerdistill.errors import DataError

    with pytest.raises(DataError, match="needs a validation split with samples to fit on"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))
