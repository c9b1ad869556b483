"""Bootstrap intervals of test metrics, against resampling written out by hand."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from peerdistill.bootstrap import intervals, sample_meters
from peerdistill.detection import HeadLayout
from peerdistill.detection_metrics import coco_metrics
from peerdistill.tasks import ClassificationTask, SegmentationTask
from peerdistill.tasks.detection import DetectionTask

RESAMPLES = 60


def naive_percentiles(values):
    return tuple(np.percentile(values, [2.5, 97.5]))


def test_classification_intervals_are_the_percentiles_of_resampled_accuracy_and_auc():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    p1 = np.clip(0.3 * y + 0.7 * rng.random(80), 0, 1)
    probs = torch.tensor(np.stack([1 - p1, p1], axis=1), dtype=torch.float32)
    task = ClassificationTask(2)
    got = intervals(task, sample_meters(task, probs, torch.tensor(y)), RESAMPLES, seed=7)
    draws = np.random.default_rng(7)
    accuracy, auc = [], []
    p32 = probs.numpy()
    for _ in range(RESAMPLES):
        i = draws.integers(0, 80, 80)
        accuracy.append(float((p32[i].argmax(1) == y[i]).mean()))
        auc.append(roc_auc_score(y[i], p32[i, 1]))
    assert (got["accuracy"].low, got["accuracy"].high) == pytest.approx(naive_percentiles(accuracy))
    assert (got["auc"].low, got["auc"].high) == pytest.approx(naive_percentiles(auc))
    assert got["auc"].resamples == RESAMPLES


def test_grouped_resamples_draw_as_many_whole_groups_as_there_are():
    from peerdistill.bootstrap import SEED, resampled

    rng = np.random.default_rng(1)
    groups = [f"p{i // 4}" for i in range(40)]  # 10 patients of 4 images, alike within a patient
    values = np.repeat(rng.normal(0.8, 0.1, 10), 4) + rng.normal(0, 0.01, 40)
    interval = resampled(lambda idx: {"m": float(values[idx].mean())}, 40, RESAMPLES, groups=groups)["m"]
    draws, means = np.random.default_rng(SEED), []
    for _ in range(RESAMPLES):  # the naive cluster bootstrap: 10 patients drawn, each with its images
        patients = draws.integers(0, 10, 10)
        means.append(values[np.concatenate([np.arange(4 * p, 4 * p + 4) for p in patients])].mean())
    assert (interval.low, interval.high) == pytest.approx(naive_percentiles(means), abs=1e-12)


def test_segmentation_dice_is_resampled_image_by_image():
    rng = np.random.default_rng(2)
    truth = torch.tensor(rng.random((12, 16, 16)) < 0.3).long()
    noisy = torch.where(torch.tensor(rng.random((12, 16, 16)) < 0.2), 1 - truth, truth)
    probs = torch.stack([1.0 - noisy.float(), noisy.float()], dim=1)
    task = SegmentationTask(2, hd95=False)
    got = intervals(task, sample_meters(task, probs, truth), RESAMPLES)
    p, t = noisy.numpy().astype(bool), truth.numpy().astype(bool)
    per_image = [2 * (p[k] & t[k]).sum() / (p[k].sum() + t[k].sum()) for k in range(12)]
    draws = np.random.default_rng(0)  # bootstrap.SEED
    dice, accuracy, auc = [], [], []
    for _ in range(RESAMPLES):
        i = draws.integers(0, 12, 12)
        dice.append(np.mean([per_image[k] for k in i]))
        accuracy.append((p[i] == t[i]).mean())
        auc.append(roc_auc_score(t[i].ravel(), p[i].ravel()))  # an image drawn twice counts twice
    assert (got["dice"].low, got["dice"].high) == pytest.approx(naive_percentiles(dice))
    assert (got["auc"].low, got["auc"].high) == pytest.approx(naive_percentiles(auc))
    assert (got["pixel_accuracy"].low, got["pixel_accuracy"].high) == pytest.approx(naive_percentiles(accuracy))


def test_detection_ap_is_resampled_frame_by_frame():
    task = DetectionTask(HeadLayout(1), (64, 64))
    rng = np.random.default_rng(3)
    truths, detections = [], []
    for _ in range(10):
        box = np.sort(rng.uniform(0, 64, 4).reshape(2, 2), axis=0).T.flatten()[[0, 2, 1, 3]]
        truths.append(torch.tensor([[0, *box]], dtype=torch.float32))
        shifted = box + rng.normal(0, 3, 4)
        detections.append({"boxes": torch.tensor(shifted[None], dtype=torch.float32),
                           "scores": torch.tensor([rng.random()], dtype=torch.float32),
                           "labels": torch.tensor([0])})
    targets = torch.stack(truths)
    got = intervals(task, sample_meters(task, detections, targets), 20)
    draws = np.random.default_rng(0)
    ap = []
    for _ in range(20):
        i = draws.integers(0, 10, 10)
        ap.append(coco_metrics([{k: v.numpy() for k, v in detections[k].items()} for k in i],
                               [truths[k].numpy() for k in i], ["0"])["ap"])
    assert (got["ap"].low, got["ap"].high) == pytest.approx(naive_percentiles(ap))
    # boxes that are the truth itself: every resample scores AP 1
    exact = [{"boxes": t[:, 1:], "scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.long)} for t in truths]
    perfect = intervals(task, sample_meters(task, exact, targets), 10)["ap"]
    assert (perfect.low, perfect.high) == pytest.approx((1.0, 1.0))


def test_eval_bootstrap_adds_each_metrics_interval(tmp_path, capsys):
    from peerdistill.build import train_from_config
    from peerdistill.cli import main
    from peerdistill.config import validate
    from peerdistill.engine.evaluate import split_probabilities
    from peerdistill.runs import _run_data, load_cohort, task_for

    train_from_config(validate({"name": "r", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml"},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": 1, "batch_size": 256}}), progress=False)
    run = tmp_path / "r"
    assert main(["eval", str(run), "--bootstrap", "40", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    cohort, meta = load_cohort(run)
    probs, y = split_probabilities(cohort, task_for(meta), _run_data(meta).test, torch.device("cpu"))
    draws = np.random.default_rng(0)
    accuracy = []
    for _ in range(40):
        i = draws.integers(0, len(y), len(y))
        accuracy.append(float((probs["ensemble"][i].argmax(1) == y[i]).mean()))
    low, high = naive_percentiles(accuracy)
    assert scores["ensemble"]["ci95_low_accuracy"] == pytest.approx(low)
    assert scores["ensemble"]["ci95_high_accuracy"] == pytest.approx(high)
    assert {"ci95_low_auc", "ci95_high_ece", "ci95_low_recall_3"} <= set(scores["student1"])
    assert main(["eval", str(run), "--bootstrap", "40"]) == 0
    printed = capsys.readouterr()
    assert "bootstrap over 40 resamples" in " ".join(printed.out.split())
    assert ("note: resampling biases ECE upward (repeated samples add noise to its bins, which it counts as "
            "miscalibration), so its interval runs high") in " ".join(printed.err.split())
    # a model whose ECE lies below its own interval is named (review 52d: 0.0085 against [0.0144, 0.0406])
    from peerdistill.cli.eval_command import say_ece_intervals_run_high

    say_ece_intervals_run_high({"student1": {"ece": 0.02, "ci95_low_ece": 0.01, "ci95_high_ece": 0.05},
                                "ensemble": {"ece": 0.0085, "ci95_low_ece": 0.0144, "ci95_high_ece": 0.0406}})
    assert ("may lie wholly above the ECE itself (here ensemble's 0.0085 against [0.0144, 0.0406]): read it as the "
            "spread of resampled ECEs") in " ".join(capsys.readouterr().err.split())
    with pytest.raises(SystemExit) as stopped:  # argparse's own exit for a bad option value
        main(["eval", str(run), "--bootstrap", "many"])
    assert stopped.value.code == 2
    assert "expected a whole number" in capsys.readouterr().err
    # too few resamples for a 95% interval (one: a point, not always holding the estimate)
    assert main(["eval", str(run), "--bootstrap", "39"]) == 2
    assert "--bootstrap 39: a 95% interval needs at least 40 resamples" in " ".join(capsys.readouterr().err.split())
    from peerdistill.errors import ConfigError
    from peerdistill.runs import evaluate_run

    for count in (1, np.int64(39)):
        with pytest.raises(ConfigError, match="a 95% interval needs at least 40 resamples"):
            evaluate_run(run, bootstrap=count)
    for count in (True, 2.5, -1):
        with pytest.raises(ConfigError, match=r"give a count of resamples, 0 for none"):
            evaluate_run(run, bootstrap=count)
    assert "ci95_low_accuracy" not in evaluate_run(run, bootstrap=0)["ensemble"]
    assert "ci95_low_accuracy" in evaluate_run(run, bootstrap=np.int64(40))["ensemble"]


def test_one_sample_cannot_be_resampled_and_an_auc_counts_its_resamples():
    from peerdistill.errors import DataError

    task = ClassificationTask(2)
    one = sample_meters(task, torch.tensor([[0.2, 0.8]]), torch.tensor([1]))
    with pytest.raises(DataError, match="resamples the scored samples, and this split holds 1: score a split with more of them"):
        intervals(task, one, 10)
    # three positives and one negative: resamples drawing no negative leave the AUC undefined
    probs = torch.tensor([[0.1, 0.9], [0.3, 0.7], [0.4, 0.6], [0.8, 0.2]])
    got = intervals(task, sample_meters(task, probs, torch.tensor([1, 1, 1, 0])), 200)
    draws = np.random.default_rng(0)  # bootstrap.SEED: the same resamples
    resamples = [draws.integers(0, 4, 4) for _ in range(200)]
    defined = sum(3 in i and bool(set(i) & {0, 1, 2}) for i in resamples)  # both classes drawn
    assert 0 < defined < 200 and got["auc"].resamples == defined
    assert got["accuracy"].resamples == 200


def test_the_figures_at_an_operating_point_get_intervals_at_the_fixed_threshold(tmp_path, capsys):
    from peerdistill.cli import main
    from peerdistill.engine.evaluate import split_probabilities
    from peerdistill.runs import _run_data, load_cohort, task_for
    from tests.conftest import train_two_class_npz_run

    train_two_class_npz_run(tmp_path, seed=4, shift=0.8)
    assert main(["eval", str(tmp_path / "b"), "--operating-point", "youden", "--bootstrap", "50", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["ensemble"]
    cohort, meta = load_cohort(tmp_path / "b")
    probs, y = split_probabilities(cohort, task_for(meta), _run_data(meta).test, torch.device("cpu"))
    p, t = probs["ensemble"][:, 1], scores["op_threshold"]
    draws = np.random.default_rng(0)
    sensitivity = []
    for _ in range(50):
        i = draws.integers(0, len(y), len(y))
        positives = y[i] == 1
        sensitivity.append((p[i][positives] >= t).mean())
    assert (scores["ci95_low_op_sensitivity"], scores["ci95_high_op_sensitivity"]) == pytest.approx(
        naive_percentiles(sensitivity))
    assert "ci95_low_op_threshold" not in scores  # chosen on validation: not resampled
    assert main(["eval", str(tmp_path / "b"), "--operating-point", "youden", "--bootstrap", "50"]) == 0
    assert f"{scores['op_sensitivity']:.4f} [" in capsys.readouterr().out


def test_a_bootstrap_of_few_units_is_said_to_give_too_narrow_intervals():
    import warnings

    from peerdistill.bootstrap import FEW_UNITS, warn_if_few_units
    from peerdistill.errors import PeerdistillWarning

    with pytest.warns(PeerdistillWarning, match=r"^the bootstrap draws from 5 patients \(groups\): with fewer than 20, "
                                                r"a percentile interval covers less than the 95%"):
        warn_if_few_units(5, grouped=True)
    with pytest.warns(PeerdistillWarning, match=r"^the bootstrap draws from 19 samples: "):
        warn_if_few_units(FEW_UNITS - 1, grouped=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_few_units(FEW_UNITS, grouped=False)  # enough: no word
        warn_if_few_units(1, grouped=False)  # refused by resampled itself, with its own message


def test_a_figure_undefined_on_the_split_gets_no_interval_from_the_resamples_that_missed_why():
    # review 45e: a NaN accuracy (a non-finite score in one row) was given [1.0, 1.0] from the 77 of
    # 200 resamples that did not draw that row
    from peerdistill.bootstrap import Interval
    from peerdistill.runs import _add_intervals

    figures = {"accuracy": float("nan"), "auc": 0.8}
    _add_intervals(figures, "", 200, {"accuracy": Interval(1.0, 1.0, 77), "auc": Interval(0.7, 0.9, 200)})
    assert figures == {"accuracy": figures["accuracy"], "auc": 0.8, "ci95_low_auc": 0.7, "ci95_high_auc": 0.9}


def test_eval_baseline_gives_each_models_difference_with_a_paired_interval(tmp_path, capsys):
    """Both models scored on every resample of the same images, the interval that of the
    difference: written out by hand here, draw by draw."""
    from peerdistill.cli import main
    from peerdistill.engine.evaluate import split_probabilities
    from peerdistill.errors import ConfigError
    from peerdistill.runs import _run_data, evaluate_run, load_cohort, task_for
    from tests.conftest import train_two_class_npz_run

    run, _ = train_two_class_npz_run(tmp_path, seed=5, test_size=60, shift=0.7)
    assert main(["eval", str(run), "--bootstrap", "50", "--baseline", "student1", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    cohort, meta = load_cohort(run)
    probs, y = split_probabilities(cohort, task_for(meta), _run_data(meta).test, torch.device("cpu"))
    ensemble, baseline = probs["ensemble"], probs["student1"]
    draws = np.random.default_rng(0)  # bootstrap.SEED: the draws every model is scored on
    accuracy, auc = [], []
    for _ in range(50):
        i = draws.integers(0, len(y), len(y))
        accuracy.append(float((ensemble[i].argmax(1) == y[i]).mean() - (baseline[i].argmax(1) == y[i]).mean()))
        auc.append(roc_auc_score(y[i], ensemble[i, 1]) - roc_auc_score(y[i], baseline[i, 1]))
    got = scores["ensemble"]
    assert got["diff_accuracy"] == pytest.approx(got["accuracy"] - scores["student1"]["accuracy"])
    assert got["diff_auc"] == pytest.approx(roc_auc_score(y, ensemble[:, 1]) - roc_auc_score(y, baseline[:, 1]))
    assert (got["ci95_low_diff_accuracy"], got["ci95_high_diff_accuracy"]) == pytest.approx(naive_percentiles(accuracy))
    assert (got["ci95_low_diff_auc"], got["ci95_high_diff_auc"]) == pytest.approx(naive_percentiles(auc))
    # the difference's interval is narrower than the figure's own: what the drawn images share cancels
    assert got["ci95_high_diff_auc"] - got["ci95_low_diff_auc"] < got["ci95_high_auc"] - got["ci95_low_auc"]
    assert not any(key.startswith(("diff_", "ci95_low_diff_")) for key in scores["student1"])
    assert "diff_ece" in scores["student2"] and "diff_threshold" not in got
    assert main(["eval", str(run), "--bootstrap", "50", "--baseline", "student1"]) == 0
    shown = capsys.readouterr()
    out = " ".join(shown.out.split())
    assert "minus student1, paired [95% interval of the difference over the same resamples]" in out
    assert f"{got['diff_auc']:+.4f} [{got['ci95_low_diff_auc']:+.4f}, {got['ci95_high_diff_auc']:+.4f}]" in out
    assert "ece, brier: lower is better, so a negative difference is the better one" in " ".join(shown.err.split())
    # refused before anything is scored: no resamples, or a name that is not an output of the run
    assert main(["eval", str(run), "--baseline", "teacher"]) == 2
    assert "--baseline teacher needs resamples: the differences from it are bootstrapped, so give --bootstrap 1000 " \
           "too" in " ".join(capsys.readouterr().err.split())
    assert main(["eval", str(run), "--bootstrap", "50", "--baseline", "teacher", "--students-only"]) == 2
    assert ("--baseline teacher is not a model of this run (--students-only leaves any teacher out): give one of "
            "student1, student2, ensemble") in " ".join(capsys.readouterr().err.split())
    with pytest.raises(ConfigError, match=r"^baseline='student3' is not a model of this run: give one of student1, student2, ensemble$"):
        evaluate_run(run, bootstrap=50, baseline="student3")
    assert main(["eval", str(run), "--score-thresholds"]) == 2  # a classifier keeps no boxes
    assert "--score-thresholds is for detection runs" in capsys.readouterr().err


def test_a_paired_difference_of_an_infinite_figure_keeps_its_resamples_apart():
    """An HD95 where one model found no mask is infinite: the difference of two infinite
    figures is undefined and left out, one finite and one infinite stays infinite."""
    from peerdistill.bootstrap import paired_intervals

    inf = float("inf")
    mine = {"hd95": np.array([1.0, inf, inf, 2.0, 3.0]), "dice": np.array([0.5, 0.6, np.nan, 0.7, 0.8])}
    theirs = {"hd95": np.array([2.0, inf, 1.0, 2.0, 1.0]), "dice": np.array([0.4, 0.4, 0.4, 0.4, 0.4])}
    got = paired_intervals(mine, theirs)
    assert got["hd95"].resamples == 4 and got["hd95"].high == inf  # the draw of two infinite ones left out
    assert got["dice"].resamples == 4
    assert (got["dice"].low, got["dice"].high) == pytest.approx(tuple(np.percentile([0.1, 0.2, 0.3, 0.4], [2.5, 97.5])))


def test_an_interval_next_to_an_infinite_resample_is_infinite_not_undefined():
    """numpy's percentile interpolates inf - inf to NaN: an HD95 interval whose tail holds a
    resample with no mask found reaches infinity."""
    from peerdistill.bootstrap import percentile_intervals

    inf = float("inf")
    got = percentile_intervals({"hd95": np.array([1.0, 2.0, 3.0, inf]), "low": np.array([-inf, -inf, 1.0, 2.0]),
                                "finite": np.array([1.0, 2.0, 3.0, 4.0])})
    assert (got["hd95"].low, got["hd95"].high) == (pytest.approx(1.075), inf)
    assert (got["low"].low, got["low"].high) == (-inf, pytest.approx(1.925))
    assert (got["finite"].low, got["finite"].high) == pytest.approx(tuple(np.percentile([1, 2, 3, 4], [2.5, 97.5])))


def test_a_segmentation_pair_is_resampled_image_by_image_on_the_same_draws():
    from peerdistill.bootstrap import paired_intervals, resampled_scores

    rng = np.random.default_rng(3)
    truth = torch.tensor(rng.random((10, 12, 12)) < 0.3).long()
    task = SegmentationTask(2, hd95=False)
    masks, scores = [], []
    for flip in (0.1, 0.3):  # a better and a worse model of the same images
        noisy = torch.where(torch.tensor(rng.random((10, 12, 12)) < flip), 1 - truth, truth)
        masks.append(noisy.numpy().astype(bool))
        probs = torch.stack([1.0 - noisy.float(), noisy.float()], dim=1)
        scores.append(resampled_scores(task, sample_meters(task, probs, truth), RESAMPLES))
    got = paired_intervals(scores[1], scores[0])["dice"]
    t = truth.numpy().astype(bool)
    dice = [[2 * (m[k] & t[k]).sum() / (m[k].sum() + t[k].sum()) for k in range(10)] for m in masks]
    draws, differences = np.random.default_rng(0), []  # bootstrap.SEED
    for _ in range(RESAMPLES):
        i = draws.integers(0, 10, 10)
        differences.append(np.mean([dice[1][k] for k in i]) - np.mean([dice[0][k] for k in i]))
    assert (got.low, got.high) == pytest.approx(naive_percentiles(differences))
    assert got.high < 0  # the worse model, on every draw
