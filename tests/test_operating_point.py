"""Decision thresholds chosen on validation data: each rule by hand, and eval end to end."""

import json
import math

import numpy as np
import pytest

from peerdistill.errors import ConfigError, DataError
from peerdistill.operating_point import Rule, at_threshold, choose_threshold, parse_rule

# Validation: positives score 0.9, 0.8, 0.6, 0.4; negatives 0.7, 0.5, 0.3, 0.2, 0.1.
P = np.array([0.9, 0.8, 0.6, 0.4, 0.7, 0.5, 0.3, 0.2, 0.1])
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])


def test_each_rule_picks_the_threshold_worked_out_by_hand():
    # calling positive from t on: t=0.8 -> sens 2/4, spec 5/5; t=0.6 -> 3/4, 4/5 (0.7 called);
    # t=0.4 -> 4/4, 3/5; Youden J: 0.8 -> 0.5, 0.6 -> 0.55, 0.4 -> 0.6 (the best), 0.3 -> 0.4.
    # The threshold then goes midway to the next lower score: the same calls, with room.
    assert choose_threshold(P, Y, Rule("youden")) == pytest.approx((0.4 + 0.3) / 2)
    # the highest score finding 3 of 4 positives: 0.6, the next lower 0.5
    assert choose_threshold(P, Y, Rule("sensitivity", 0.75)) == pytest.approx(0.55)
    assert choose_threshold(P, Y, Rule("sensitivity", 1.0)) == pytest.approx(0.35)
    # the lowest score keeping 4 of 5 negatives: 0.6 (0.5 would call two of them positive)
    assert choose_threshold(P, Y, Rule("specificity", 0.8)) == pytest.approx(0.55)
    # every negative kept: 0.8 (0.7 is a negative's score)
    assert choose_threshold(P, Y, Rule("specificity", 1.0)) == pytest.approx(0.75)
    # scores adjacent in float32 (no float32 between them): the threshold is the upper one, which
    # calls alike in float32 and float64
    upper = np.float32(0.7)
    adjacent = np.array([upper, np.nextafter(upper, np.float32(0)), 0.1], dtype=np.float32)
    threshold = choose_threshold(adjacent, np.array([1, 0, 0]), Rule("youden"))
    assert (adjacent >= np.float32(threshold)).tolist() == (adjacent.astype(np.float64) >= threshold).tolist() == [
        True, False, False]
    # float64 scores one float32 apart or closer (tempered probabilities): never above the picked one
    close = np.array([0.7 + 2e-9, 0.7, 0.1])
    threshold = choose_threshold(close, np.array([1, 0, 0]), Rule("youden"))
    assert 0.7 < threshold <= 0.7 + 2e-9 and (close >= threshold).tolist() == [True, False, False]
    # a tie in J worked out by hand: t=0.7 -> 3/5 - 0/5, t=0.4 -> 4/5 - 1/5, both 3/5, which
    # tpr - fpr in floats makes 0.6 and 0.6000000000000001: the higher threshold, midway to 0.5
    tie = np.array([0.9, 0.8, 0.7, 0.4, 0.1, 0.5, 0.3, 0.2, 0.2, 0.1], np.float32)
    assert choose_threshold(tie, np.array([1] * 5 + [0] * 5), Rule("youden")) == pytest.approx(0.6)
    # every sample called positive: half the lowest score
    assert choose_threshold(np.array([0.9, 0.2]), np.array([0, 1]), Rule("sensitivity", 1.0)) == pytest.approx(0.1)
    for rule in (Rule("youden"), Rule("sensitivity", 0.75), Rule("specificity", 0.8), Rule("specificity", 1.0)):
        chosen = choose_threshold(P, Y, rule)
        score = P[P >= chosen].min()  # the validation score the rule picked: called positive either way
        assert at_threshold(P, Y, chosen) == {**at_threshold(P, Y, score), "threshold": chosen}
        assert at_threshold(P - 1e-7, Y, chosen) == at_threshold(P, Y, chosen)  # scored again a hair lower


def test_figures_at_a_threshold_by_hand():
    figures = at_threshold(P, Y, 0.6)  # called positive: 0.9, 0.8, 0.6 (right), 0.7 (wrong)
    assert figures == pytest.approx({"threshold": 0.6, "sensitivity": 3 / 4, "specificity": 4 / 5, "ppv": 3 / 4,
                                     "npv": 4 / 5, "accuracy": 7 / 9})
    # at 0.45 (also 0.7 and 0.5 wrong, 0.4 missed) NPV and specificity part: 3 of 4 and 3 of 5
    assert at_threshold(P, Y, 0.45) == pytest.approx({"threshold": 0.45, "sensitivity": 3 / 4, "specificity": 3 / 5,
                                                      "ppv": 3 / 5, "npv": 3 / 4, "accuracy": 6 / 9})
    nothing = at_threshold(P, Y, np.nextafter(1.0, 2.0))
    assert nothing["sensitivity"] == 0 and nothing["specificity"] == 1 and math.isnan(nothing["ppv"])
    # saturated float32 probabilities: "nothing positive" still calls none of them positive
    saturated = np.array([1.0, 0.6, 0.4], dtype=np.float32)
    threshold = choose_threshold(saturated, np.array([0, 1, 0]), Rule("specificity", 1.0))
    assert threshold > 1 and at_threshold(saturated, np.array([0, 1, 0]), threshold)["specificity"] == 1


def test_rules_are_read_and_wrong_ones_named():
    assert parse_rule("youden") == Rule("youden")
    assert parse_rule("specificity=0.95") == Rule("specificity", 0.95)
    for wrong in ("youden=1", "sensitivity", "specificity=1.5", "recall=0.9", "sensitivity=x"):
        with pytest.raises(ConfigError, match="use youden, sensitivity=S or specificity=S"):
            parse_rule(wrong)
    with pytest.raises(DataError, match="single class"):
        choose_threshold(P[:4], Y[:4], Rule("youden"))
    from peerdistill.operating_point import operating_points

    probs = np.stack([1 - P, P], axis=1)
    broken = probs.copy()
    broken[0] = np.nan
    with pytest.raises(DataError, match="'student1' gives non-finite probabilities"):
        operating_points(({"student1": broken}, Y), ({"student1": probs}, Y), Rule("youden"))


def test_eval_scores_each_model_at_the_threshold_chosen_on_the_runs_validation_split(tmp_path, capsys):
    import torch

    from peerdistill.build import train_from_config
    from peerdistill.cli import main
    from peerdistill.config import validate
    from peerdistill.data import build_data
    from peerdistill.engine.evaluate import split_probabilities
    from peerdistill.runs import evaluate_run, load_cohort, task_for

    rng = np.random.default_rng(0)

    def part(n):
        y = rng.integers(0, 2, n)
        x = rng.normal(0, 1, (n, 6, 6)).astype(np.float32) + y[:, None, None] * 0.6
        return x, y

    (xa, ya), (xb, yb), (xc, yc) = part(80), part(40), part(40)
    np.savez(tmp_path / "d.npz", train_images=xa, train_labels=ya, val_images=xb, val_labels=yb, test_images=xc,
             test_labels=yc)
    run = tmp_path / "runs" / "b"
    train_from_config(validate({"name": "b", "out_dir": str(tmp_path / "runs"), "distill": {"preset": "ml"},
                                "data": {"kind": "npz", "root": str(tmp_path / "d.npz")},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": 2, "batch_size": 16}}), progress=False)
    scores = evaluate_run(run, operating_point="youden")
    cohort, meta = load_cohort(run)
    data = build_data(validate({"data": {"kind": "npz", "root": str(tmp_path / "d.npz")},
                                "students": [{"arch": "cnn"}], "distill": {"preset": "independent"}}).data,
                      stats=meta["data_stats"])
    val_probs, val_y = split_probabilities(cohort, task_for(meta), data.val, torch.device("cpu"))
    test_probs, test_y = split_probabilities(cohort, task_for(meta), data.test, torch.device("cpu"))
    for model in ("student1", "ensemble"):
        p, q = val_probs[model][:, 1], test_probs[model][:, 1]
        youden = max(np.unique(p)[::-1], key=lambda t: ((p >= t) & (val_y == 1)).sum() / (val_y == 1).sum()
                     - ((p >= t) & (val_y == 0)).sum() / (val_y == 0).sum())  # the highest on a tie
        lower = p[p < youden]  # the threshold goes midway to the next lower validation score
        youden = (youden + lower.max()) / 2 if lower.size else youden / 2
        assert scores[model]["op_threshold"] == pytest.approx(youden)
        called = q >= youden
        assert scores[model]["op_sensitivity"] == pytest.approx(called[test_y == 1].mean())
        assert scores[model]["op_specificity"] == pytest.approx(1 - called[test_y == 0].mean())
    # the report marks the same thresholds, a table row per model
    from peerdistill.html_report import write_report

    page = write_report(run).read_text(encoding="utf-8")
    assert "At the threshold each model's Youden index picks on the validation split" in page
    table = page.split("Youden index picks on the validation split", 1)[1].split("</table>", 1)[0]
    row = table.split("<tr><th>ensemble</th>", 1)[1].split("</tr>", 1)[0]
    assert f"<td>{scores['ensemble']['op_threshold']:.4f}</td><td>{scores['ensemble']['op_sensitivity']:.4f}</td>" in row
    assert main(["eval", str(run), "--operating-point", "specificity=0.9"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # a long title wraps
    assert "at the threshold specificity=0.9 picks on the run's validation split (positive: '1')" in out  # the second
    assert main(["eval", str(run), "--operating-point", "specificity=2"]) == 2
    assert "use youden, sensitivity=S or specificity=S" in capsys.readouterr().err
    # an external set laid out like the run's data is scored at the run's own thresholds, never
    # at thresholds (or temperatures) fitted on its own images
    external = {}
    for split, n in (("train", 40), ("val", 40), ("test", 40)):
        x, y = part(n)
        external[f"{split}_images"], external[f"{split}_labels"] = x[:, ::-1].copy(), 1 - y
    np.savez(tmp_path / "external.npz", **external)
    assert main(["eval", str(run), "--operating-point", "youden", "--temperature-scaling", "--json",
                 f"data.root={tmp_path / 'external.npz'}"]) == 0
    other = json.loads(capsys.readouterr().out)
    own = evaluate_run(run, operating_point="youden", temperature_scaling=True)
    assert other["ensemble"]["op_threshold"] == pytest.approx(own["ensemble"]["op_threshold"])
    assert other["ensemble"]["cal_temperature"] == pytest.approx(own["ensemble"]["cal_temperature"])
    # the data moved: data.root=NEW places the run's own data, validation split included, and says so
    (tmp_path / "d.npz").rename(tmp_path / "moved.npz")
    assert main(["eval", str(run), "--operating-point", "youden", "--json", f"data.root={tmp_path / 'moved.npz'}"]) == 0
    printed = capsys.readouterr()
    moved = json.loads(printed.out)
    assert moved["ensemble"]["op_threshold"] == pytest.approx(scores["ensemble"]["op_threshold"])
    assert "is taken from" in printed.err and "the same data moved" in " ".join(printed.err.split())
    assert main(["eval", str(run), "--operating-point", "youden"]) == 2
    assert "peerdistill eval RUN_DIR data.root=PATH" in capsys.readouterr().err  # which works, as above


def test_an_operating_point_is_refused_for_more_than_two_classes(tmp_path, capsys):
    from peerdistill.build import train_from_config
    from peerdistill.config import validate
    from peerdistill.runs import evaluate_run

    train_from_config(validate({"name": "d", "out_dir": str(tmp_path), "distill": {"preset": "independent"},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}],
                                "train": {"epochs": 1, "batch_size": 256}}), progress=False)
    with pytest.raises(ConfigError, match="for two-class classification runs, and this is a 10-class classification "
                                          "run; drop operating_point="):
        evaluate_run(tmp_path / "d", operating_point="youden")
    # the command line names its flag (a Python caller, the keyword argument: review 44b)
    from peerdistill.cli import main

    assert main(["eval", str(tmp_path / "d"), "--operating-point", "youden"]) == 2
    assert "run; drop --operating-point" in " ".join(capsys.readouterr().err.split())


def test_compare_tabulates_each_runs_operating_point(tmp_path):
    import csv

    from peerdistill.compare import compare
    from peerdistill.runs import evaluate_run

    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 60), ("val", 30), ("test", 30)):
        y = rng.integers(0, 2, n)
        arrays[f"{split}_images"] = rng.normal(0, 1, (n, 6, 6)).astype(np.float32) + y[:, None, None] * 0.6
        arrays[f"{split}_labels"] = y
    np.savez(tmp_path / "d.npz", **arrays)
    tree = {"name": "c", "out_dir": str(tmp_path), "data": {"kind": "npz", "root": str(tmp_path / "d.npz")},
            "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2, "train": {"epochs": 1, "batch_size": 16}}
    result = compare(tree, ["ml"], 2, progress=False, operating_point="sensitivity=0.9")
    rows = list(csv.DictReader((result.directory / "compare.csv").open()))
    row = next(r for r in rows if r["model"] == "ensemble" and r["metric"] == "op_sensitivity")
    expected = [evaluate_run(result.directory / f"ml-seed{s}", operating_point="sensitivity=0.9")["ensemble"]
                ["op_sensitivity"] for s in (0, 1)]
    assert [float(v) for v in row["values"].split(";")] == pytest.approx(expected, abs=1e-6)  # written to 6 places
    assert "decision threshold `sensitivity=0.9` picks" in result.markdown and "### test op_specificity" in result.markdown
    with pytest.raises(ConfigError, match="for two-class classification comparisons"):
        compare({**tree, "task": "segmentation", "data": {"kind": "shapes"}, "name": "s"}, ["ml"], 1, progress=False,
                operating_point="youden")


def test_export_and_predict_call_the_positive_class_at_the_chosen_threshold(tmp_path, capsys, monkeypatch):
    import csv

    import torch

    from peerdistill.calibration import fit_temperature, tempered
    from peerdistill.cli import main
    from peerdistill.engine.evaluate import split_probabilities
    from peerdistill.operating_point import choose_threshold, parse_rule
    from peerdistill.runs import _run_data, evaluate_run, load_cohort, task_for
    from tests.conftest import train_two_class_npz_run

    run, arrays = train_two_class_npz_run(tmp_path, seed=5, test_size=20)
    np.savez(tmp_path / "new.npz", images=arrays["test_images"])
    youden = evaluate_run(run, operating_point="youden")["ensemble"]["op_threshold"]
    # exported: the threshold eval chose, in the JSON; predict calls the positive class by it
    assert main(["export", str(run), "--model", "ensemble", "--operating-point", "youden", "--out",
                 str(tmp_path / "x")]) == 0
    assert f"threshold {youden:.4g} on the positive class" in " ".join(capsys.readouterr().out.split())
    side = json.loads((tmp_path / "x" / "ensemble.json").read_text())
    assert side["threshold"] == pytest.approx(youden) and side["operating_point"] == "youden"
    assert main(["predict", str(tmp_path / "x" / "ensemble.onnx"), str(tmp_path / "new.npz"), "--out",
                 str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    names = json.loads((run / "run.json").read_text())["class_names"]
    assert rows and all(r["predicted"] == names[int(float(r[f"p_{names[1]}"]) >= youden)] for r in rows)
    # from the run directory, tempered first: the threshold is chosen on the tempered probabilities
    cohort, meta = load_cohort(run)
    val_probs, val_y = split_probabilities(cohort, task_for(meta), _run_data(meta).val, torch.device("cpu"))
    t = fit_temperature(val_probs["student1"], val_y)
    expected = choose_threshold(tempered(val_probs["student1"], t)[:, 1], val_y, parse_rule("sensitivity=0.9"))
    assert main(["predict", str(run), str(tmp_path / "new.npz"), "--model", "student1", "--temperature-scaling",
                 "--operating-point", "sensitivity=0.9", "--out", str(tmp_path / "q.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "q.csv").open()))
    assert all(r["predicted"] == names[int(float(r[f"p_{names[1]}"]) >= expected - 1e-6)] for r in rows)
    assert main(["predict", str(tmp_path / "x" / "ensemble.onnx"), str(tmp_path / "new.npz"), "--operating-point",
                 "youden", "--out", str(tmp_path / "r.csv")]) == 2
    assert "carries what its export chose" in capsys.readouterr().err
    # with both, eval chooses the threshold on the tempered probabilities too: the one export writes
    both = evaluate_run(run, operating_point="sensitivity=0.9", temperature_scaling=True)["student1"]
    assert both["op_threshold"] == pytest.approx(expected)
    capsys.readouterr()  # and its table says on which scale the threshold is (it differs from the plain one)
    assert main(["eval", str(run), "--operating-point", "sensitivity=0.9", "--temperature-scaling"]) == 0
    assert ("at the threshold sensitivity=0.9 picks on the run's validation split, on the tempered probabilities "
            "(the threshold is on that scale, as export and predict apply it)") in " ".join(capsys.readouterr().out.split())
    assert main(["eval", str(run), "--operating-point", "sensitivity=0.9"]) == 0
    assert "tempered" not in capsys.readouterr().out
    assert main(["export", str(run), "--model", "student1", "--temperature-scaling", "--operating-point",
                 "sensitivity=0.9", "--out", str(tmp_path / "y")]) == 0
    assert json.loads((tmp_path / "y" / "student1.json").read_text())["threshold"] == pytest.approx(expected)
    # a rule that does best calling nothing positive (a model no better than chance): said at export
    monkeypatch.setattr("peerdistill.operating_point.choose_threshold", lambda *a: float(np.nextafter(1.0, 2.0)))
    capsys.readouterr()
    assert main(["export", str(run), "--model", "student1", "--operating-point", "youden", "--out",
                 str(tmp_path / "z")]) == 0
    assert "warning: the threshold 'youden' picks on the run's validation split is above 1: no input" in " ".join(
        capsys.readouterr().err.split())


def test_targets_of_zero_are_refused_and_of_one_accepted():
    # S in (0, 1]: a sensitivity of 0 is met by calling nothing positive; 1 (every positive found,
    # every negative kept) is the strictest rule a user can ask for
    for wrong in ("sensitivity=0", "specificity=0", "specificity=-0.5"):
        with pytest.raises(ConfigError, match="with S in \\(0, 1\\]"):
            parse_rule(wrong)
    assert parse_rule("specificity=1") == Rule("specificity", 1.0)
    assert parse_rule("sensitivity=1.0") == Rule("sensitivity", 1.0)


def test_youden_counts_whole_samples_where_the_rates_do_not_come_back_whole():
    # 49 positives: 1/49 * 49 is 0.9999999999999999 in floats (and 2, 4, 8, ... of 49 likewise);
    # the index is tp/P - fp/N worked out here from the counts themselves, the highest score on a tie
    rng = np.random.default_rng(2)
    y = np.array([1] * 49 + [0] * 49)
    p = np.clip(rng.normal(0.5 + 0.1 * y, 0.2), 0.001, 0.999)
    best = max(np.unique(p)[::-1], key=lambda t: ((p >= t) & (y == 1)).sum() * 49 - ((p >= t) & (y == 0)).sum() * 49)
    lower = p[p < best].max()
    assert choose_threshold(p, y, Rule("youden")) == pytest.approx((best + lower) / 2)


def test_a_positive_scored_exactly_one_keeps_its_call_when_scored_a_hair_lower():
    # a saturated float32 probability of 1.0 picked by the rule: the threshold still goes midway
    # to the next lower score (1.0 is a score, not "nothing positive" above 1)
    p, y = np.array([1.0, 0.6, 0.4], dtype=np.float32), np.array([1, 0, 0])
    threshold = choose_threshold(p, y, Rule("youden"))
    assert threshold == pytest.approx((1.0 + 0.6) / 2)
    assert at_threshold(p - 1e-6, y, threshold)["sensitivity"] == 1


def test_calling_nothing_positive_is_a_finite_threshold_just_above_one():
    # scikit-learn starts its curve at inf; written in a JSON beside an export, inf would be
    # "Infinity", which JSON does not have
    p, y = np.array([1.0, 0.6, 0.4]), np.array([0, 1, 0])  # a negative scores 1: only nothing keeps every negative
    threshold = choose_threshold(p, y, Rule("specificity", 1.0))
    assert threshold == np.nextafter(1.0, 2.0)
    json.dumps(threshold, allow_nan=False)


def test_non_finite_probabilities_on_the_scored_split_are_refused_too():
    from peerdistill.operating_point import operating_points

    probs = np.stack([1 - P, P], axis=1)
    broken = probs.copy()
    broken[3, 1] = np.inf
    with pytest.raises(DataError, match="'ensemble' gives non-finite probabilities"):
        operating_points(({"ensemble": probs}, Y), ({"ensemble": broken}, Y), Rule("youden"))


def test_compares_threshold_caption_says_the_scale_the_threshold_is_on():
    # with --temperature-scaling the threshold is chosen on the tempered probabilities: another figure
    # than without, under what read as the same caption
    from peerdistill.compare import _header

    runs = [{"setting": "ml", "metrics": {"monitor": "val/accuracy"}}]
    plain = _header(runs, 2, None, parse_rule("youden"), False, None, None, "What was compared: ...")
    both = _header(runs, 2, None, parse_rule("youden"), True, None, None, "What was compared: ...")
    assert "`youden` picks on its run's validation split (positive: the second class)" in plain
    assert ("`youden` picks on its run's validation split, on the probabilities tempered as in the `cal_*` tables (the "
            "threshold is on that scale, as export and predict apply it)") in both
