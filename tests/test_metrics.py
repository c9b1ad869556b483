"""Metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from peerdistill.metrics import calibration_metrics, classification_metrics, ranking_score


def test_binary_metrics_by_hand():
    # targets 0,0,0,1,1 ; predicted class-1 probabilities 0.1,0.6,0.3,0.8,0.4
    targets = np.array([0, 0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.3, 0.8, 0.4])
    probs = np.stack([1 - p1, p1], axis=1)
    m = classification_metrics(probs, targets)
    # predictions 0,1,0,1,0 -> correct: 1,0,1,1,0 = 3/5
    assert m["accuracy"] == pytest.approx(0.6)
    # recall class 0 = 2/3, class 1 = 1/2 -> balanced = 7/12
    assert m["balanced_accuracy"] == pytest.approx(7 / 12)
    # class 1: precision 1/2, recall 1/2 -> F1 1/2; class 0: precision 2/3, recall 2/3 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    # AUC = share of (positive, negative) pairs ranked right: positives 0.8, 0.4 vs negatives 0.1, 0.6, 0.3
    pairs = [(p, n) for p in (0.8, 0.4) for n in (0.1, 0.6, 0.3)]
    assert m["auc"] == pytest.approx(sum(p > n for p, n in pairs) / len(pairs))
    assert "recall_1" not in m  # per-class figures only for named classes
    named = classification_metrics(probs, targets, ["normal", "pneumonia"])
    # sensitivity = recall of 'pneumonia' 1/2, specificity = recall of 'normal' 2/3; precision:
    # 'pneumonia' predicted twice, right once; 'normal' three times, right twice
    assert (named["recall_pneumonia"], named["recall_normal"]) == (pytest.approx(1 / 2), pytest.approx(2 / 3))
    assert (named["precision_pneumonia"], named["precision_normal"]) == (pytest.approx(1 / 2), pytest.approx(2 / 3))


def test_per_class_figures_are_undefined_where_a_class_has_nothing_to_count():
    """Class 'c' is never predicted and absent from the split: no precision, no recall. Class
    'b' is predicted once, wrongly: precision 0; its two samples are missed: recall 0."""
    targets = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.8, 0.1, 0.1]])
    m = classification_metrics(probs, targets, ["a", "b", "c"])
    assert m["precision_a"] == pytest.approx(1 / 3) and m["recall_a"] == pytest.approx(1 / 2)
    assert m["precision_b"] == 0.0 and m["recall_b"] == 0.0
    assert math.isnan(m["precision_c"]) and math.isnan(m["recall_c"])


def test_multiclass_auc_is_mean_of_one_vs_rest():
    rng = np.random.default_rng(0)
    targets = np.array([0, 1, 2, 0, 1, 2, 2, 0])
    probs = rng.dirichlet(np.ones(3), size=len(targets))
    aucs = []
    for c in range(3):
        pos, neg = probs[targets == c, c], probs[targets != c, c]
        aucs.append(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))
    assert classification_metrics(probs, targets)["auc"] == pytest.approx(np.mean(aucs))


def test_multiclass_auc_keeps_ties_between_probabilities():
    # float32 rows that do not all sum to exactly 1: renormalising them (as sklearn's multi-class
    # path needs) would split exact ties within a column and move the AUC (0.7917, not 0.8333)
    probs = np.array([[.7, .2, .1], [.2, .5, .3], [.1, .3, .6], [.3, .4, .3], [.5, .1, .4], [.2, .2, .6]], np.float32)
    targets = np.array([0, 1, 2, 1, 2, 0])
    aucs = []
    for c in range(3):
        pos, neg = probs[targets == c, c], probs[targets != c, c]
        aucs.append(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))
    assert classification_metrics(probs, targets)["auc"] == pytest.approx(np.mean(aucs))  # 0.8333


def test_auc_is_nan_when_a_class_is_absent():
    probs = np.array([[0.2, 0.5, 0.3], [0.6, 0.2, 0.2]])
    assert math.isnan(classification_metrics(probs, np.array([0, 1]))["auc"])


def test_macro_f1_leaves_out_a_class_neither_present_nor_predicted():
    # three classes, class 2 absent and never predicted: perfect on the two present ones
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.2, 0.7, 0.1]])
    m = classification_metrics(probs, np.array([0, 1, 0, 1]))
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0
    # a class predicted but absent counts: precision 0 -> F1 0; classes 0 and 1 have F1 1 and 2/3
    probs[3] = [0.1, 0.1, 0.8]
    assert classification_metrics(probs, np.array([0, 1, 0, 1]))["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_ranking_score_puts_the_better_value_higher_and_missing_values_last():
    """How the best epoch / student is picked: for hd95 (a distance, lower is better) 2 beats 5;
    for accuracy (higher is better) 0.9 beats 0.8; a NaN or missing value ranks below any real
    value of either kind."""
    assert ranking_score("hd95", 2.0) > ranking_score("hd95", 5.0)
    assert ranking_score("ece", 0.02) > ranking_score("ece", 0.1)  # calibration errors: lower is better
    assert ranking_score("brier", 0.1) > ranking_score("brier", 0.3)
    assert ranking_score("accuracy", 0.9) > ranking_score("accuracy", 0.8)
    for metric, worst in (("hd95", 1e9), ("accuracy", -1e9)):
        assert ranking_score(metric, float("nan")) < ranking_score(metric, worst)
        assert ranking_score(metric, None) < ranking_score(metric, worst)
    best = max([5.0, None, 2.0, float("nan"), 3.0], key=lambda v: ranking_score("hd95", v))
    assert best == 2.0
    assert ranking_score("hd95_liver", 2.0) > ranking_score("hd95_liver", 5.0)  # per class too
    assert ranking_score("dice_liver", 0.9) > ranking_score("dice_liver", 0.8)


def test_expected_calibration_error_and_brier_score_by_hand():
    # confidences (largest probability) 0.9, 0.95, 0.61, 0.62, 0.42 -> bins of width 1/15:
    # (0.8667, 0.9333] holds 0.9 (right), (0.9333, 1] holds 0.95 (wrong), (0.6, 0.6667] holds
    # 0.61 (right) and 0.62 (wrong), (0.4, 0.4667] holds 0.42 (right).
    probs = np.array([[0.9, 0.05, 0.05], [0.95, 0.03, 0.02], [0.19, 0.61, 0.2], [0.2, 0.18, 0.62], [0.3, 0.28, 0.42]])
    targets = np.array([0, 1, 1, 0, 2])
    m = classification_metrics(probs, targets)
    bins = [(0.9, 1.0), (0.95, 0.0), ((0.61 + 0.62) / 2, 0.5), (0.42, 1.0)]  # (mean confidence, accuracy)
    weights = [1, 1, 2, 1]
    assert m["ece"] == pytest.approx(sum(w * abs(c - a) for w, (c, a) in zip(weights, bins)) / 5, abs=1e-7)
    one_hot = np.eye(3)[targets]
    assert m["brier"] == pytest.approx(((probs - one_hot) ** 2).sum(axis=1).mean())
    # two classes: the positive class's squared error, in [0, 1]
    p1 = np.array([0.8, 0.3, 0.6])
    binary = classification_metrics(np.stack([1 - p1, p1], axis=1), np.array([1, 0, 0]))
    assert binary["brier"] == pytest.approx(((p1 - [1, 0, 0]) ** 2).mean())
    # a perfectly confident, always right model is perfectly calibrated
    sure = classification_metrics(np.eye(3)[targets], targets)
    assert sure["ece"] == pytest.approx(0, abs=1e-7) and sure["brier"] == 0
    broken = probs.copy()
    broken[0, 0] = np.nan
    assert all(math.isnan(v) for v in calibration_metrics(broken, targets).values())


def test_calibration_error_matches_a_naive_binning_on_random_predictions():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(4, 0.5), size=300)
    probs[:20] = [1.0, 0, 0, 0]  # confidence exactly 1 belongs to the last bin
    probs[20:50] = [0.6, 0.4, 0, 0]  # 0.6 = 9/15 exactly on an edge: the bin below, (8/15, 9/15]
    # targets drawn from the probabilities (a calibrated model): bins err both ways, so the ECE
    # depends on which bin an edge sample is counted in (with only overconfident bins it would not)
    targets = np.array([rng.choice(4, p=p) for p in probs])
    confidence, right = probs.max(axis=1), probs.argmax(axis=1) == targets
    naive = 0.0
    for k in range(15):  # Guo et al.'s bins ((k-1)/M, k/M], written out one by one
        inside = (confidence > k / 15) & (confidence <= (k + 1) / 15)
        if inside.any():
            naive += inside.mean() * abs(confidence[inside].mean() - right[inside].mean())
    assert classification_metrics(probs, targets)["ece"] == pytest.approx(naive, abs=1e-12)


def test_reliability_bins_agree_with_monai_calibration_binning():
    """A second, independent implementation of the same binning (MONAI's, in float32)."""
    import torch
    from monai.metrics.calibration import calibration_binning

    from peerdistill.metrics import ECE_BINS, reliability_bins

    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(6, 0.4), size=2000).astype(np.float32)  # as models give them
    probs[:5] = np.eye(6)[0]  # confidence 1
    # ties that mean an edge but are a float32 step above it: three classes at 1/3 (5/15), five at
    # 1/5 (3/15); and a row at 0.6 (9/15) exactly in float32
    probs[5:10] = torch.softmax(torch.zeros(5, 3), 1).numpy() @ np.eye(3, 6, dtype=np.float32)
    probs[10:15] = torch.softmax(torch.zeros(5, 5), 1).numpy() @ np.eye(5, 6, dtype=np.float32)
    probs[15:20] = np.float32([0.6, 0.4, 0, 0, 0, 0])
    targets = rng.integers(0, 6, 2000)
    confidence, accuracy, counts = reliability_bins(probs, targets)
    right = (probs.argmax(axis=1) == targets).astype(np.float64)
    monai_bins = calibration_binning(torch.from_numpy(probs.max(axis=1))[None, None],
                                     torch.from_numpy(right)[None, None], num_bins=ECE_BINS)
    monai_confidence, monai_accuracy, monai_counts = (t[0, 0].double().numpy() for t in monai_bins)
    assert (counts == monai_counts).all() and (counts == 0).any()  # some bins empty: NaN in both
    # 1/3 in (4/15, 5/15], 1/5 in (2/15, 3/15], 0.6 in (8/15, 9/15]: the bins their edges close
    for rows, closing_bin in ((slice(5, 10), 4), (slice(10, 15), 2), (slice(15, 20), 8)):
        assert list(np.flatnonzero(reliability_bins(probs[rows], targets[rows])[2])) == [closing_bin]
    np.testing.assert_allclose(confidence, monai_confidence, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(accuracy, monai_accuracy, atol=1e-6, equal_nan=True)


def test_calibration_error_does_not_depend_on_the_order_of_the_samples():
    """Shares gathered from several processes arrive in another order than one process reads the
    split: floating-point sums depend on their order, so only a canonical order gives the same
    figure exactly."""
    from peerdistill.metrics import calibration_metrics

    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(5, 0.3), size=4000)
    targets = rng.integers(0, 5, 4000)
    ece = calibration_metrics(probs, targets)["ece"]
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(targets))
        assert calibration_metrics(probs[order], targets[order])["ece"] == ece


def two_linear_students():
    import torch
    from torch import nn

    from peerdistill.cohort import Cohort

    torch.manual_seed(0)
    return Cohort.from_modules([nn.Linear(3, 3), nn.Linear(3, 3)])


def test_evaluate_scores_the_ensemble_on_the_mean_of_the_students_probabilities():
    """Two random linear students, scored over two batches: the ensemble's figures are those of
    the mean of their softmax probabilities, computed here directly (the AUC, ECE and Brier score
    move with any other weighting, or with one student alone)."""
    import torch

    from peerdistill.engine.evaluate import evaluate, predict
    from peerdistill.tasks import ClassificationTask

    cohort = two_linear_students()
    x, y = torch.randn(40, 3, generator=torch.Generator().manual_seed(1)), torch.arange(40) % 3
    scores = evaluate(cohort, ClassificationTask(3), [(x[:25], y[:25]), (x[25:], y[25:])])
    with torch.no_grad():
        students = [m.module(x).softmax(1).numpy() for m in cohort.students]
    expected = classification_metrics((students[0] + students[1]) / 2, y.numpy())
    for metric in ("accuracy", "auc", "ece", "brier"):
        assert scores["ensemble"][metric] == pytest.approx(expected[metric], abs=1e-6), metric
    # predict (pictures, the command 'predict') gives the same mean for one batch
    got = predict(cohort, ClassificationTask(3), x)["ensemble"].numpy()
    np.testing.assert_allclose(got, (students[0] + students[1]) / 2, atol=1e-6)
    for alone in students:  # the students disagree: neither alone gives the ensemble's figures
        assert classification_metrics(alone, y.numpy())["brier"] != pytest.approx(expected["brier"], abs=1e-3)


def test_one_non_finite_output_among_finite_ones_stops_evaluation():
    """A single NaN logit (one sample, one class) is enough to refuse scoring the model, also
    when it arrives from another process's share."""
    import torch

    from peerdistill.engine.evaluate import FiniteCheck, evaluate
    from peerdistill.errors import NonFiniteError
    from peerdistill.tasks import ClassificationTask

    cohort = two_linear_students()

    def one_nan(module, inputs, out):
        out = out.clone()
        out[0, 0] = float("nan")
        return out

    cohort.students[0].module.register_forward_hook(one_nan)
    x, y = torch.randn(4, 3), torch.arange(4) % 3
    with pytest.raises(NonFiniteError, match="'student1' gives non-finite outputs"):
        evaluate(cohort, ClassificationTask(3), [(x, y)])
    task = ClassificationTask(3)
    here, there = FiniteCheck(task.new_meter(), "student1"), FiniteCheck(task.new_meter(), "student1")
    there.check(torch.tensor([0.0, float("nan")]))
    here.merge(there)
    with pytest.raises(NonFiniteError):
        here.compute()


def test_evaluate_scores_a_self_distilled_networks_own_ensemble_on_its_outputs_mean():
    """``student1@ensemble``: the mean of the network's classifier's and head's probabilities,
    scored as the mean computed here from each output's own probabilities."""
    import torch

    from peerdistill.build import build_cohort, build_task
    from peerdistill.config import validate
    from peerdistill.data import build_data
    from peerdistill.engine.evaluate import evaluate, predict

    cfg = validate({"students": [{"arch": "cnn", "args": {"width": 4, "depth": 3}, "heads": ["features.2"]}],
                    "distill": {"preset": "self"}})
    data = build_data(cfg.data)
    torch.manual_seed(0)
    cohort = build_cohort(cfg, data)
    task = build_task(cfg, data, cohort)
    x = torch.stack([data.test[i][0] for i in range(60)])
    y = torch.as_tensor([int(data.test[i][1]) for i in range(60)])
    scores = evaluate(cohort, task, [(x[:32], y[:32]), (x[32:], y[32:])])
    probs = predict(cohort, task, x)
    mean = ((probs["student1"] + probs["student1@features.2"]) / 2).numpy()
    expected = classification_metrics(mean, y.numpy())
    for metric in ("auc", "ece", "brier"):
        assert scores["student1@ensemble"][metric] == pytest.approx(expected[metric], abs=1e-6), metric
    # the two outputs differ (an untrained head): the classifier alone is another figure
    assert classification_metrics(probs["student1"].numpy(), y.numpy())["brier"] != pytest.approx(expected["brier"])


def _sklearn_metrics(probs, targets, num_classes):
    """scikit-learn's own functions, the figures classification_metrics counts itself."""
    import warnings

    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score, mean_squared_error,
                                 precision_recall_fscore_support, roc_auc_score)

    preds = probs.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"accuracy": accuracy_score(targets, preds), "balanced_accuracy": balanced_accuracy_score(targets, preds),
               "macro_f1": f1_score(targets, preds, average="macro", zero_division=0)}
        precision, recall, _, _ = precision_recall_fscore_support(targets, preds, labels=list(range(num_classes)),
                                                                  zero_division=np.nan)
    one_hot = targets[:, None] == np.arange(num_classes)[None, :]
    if len(np.unique(targets)) < num_classes:
        out["auc"] = float("nan")
    else:
        out["auc"] = (roc_auc_score(targets, probs[:, 1]) if num_classes == 2
                      else roc_auc_score(one_hot, probs, average="macro"))
    columns = slice(None) if num_classes > 2 else slice(1, 2)
    out["brier"] = mean_squared_error(one_hot[:, columns].astype(float), probs[:, columns],
                                      multioutput="raw_values").sum()
    out.update({f"precision_{c}": v for c, v in enumerate(precision)})
    out.update({f"recall_{c}": v for c, v in enumerate(recall)})
    return out


@pytest.mark.parametrize("num_classes", [2, 3, 7])
def test_classification_metrics_are_scikit_learns_figures(num_classes):
    """Counted from confusion counts and ranks (scikit-learn's input checks took most of the time
    of a validation pass and of a bootstrap): each figure against scikit-learn's function, on
    random splits with ties (probabilities rounded), saturated float32 probabilities, classes
    missing from the split or never predicted."""
    rng = np.random.default_rng(num_classes)
    for trial in range(60):
        n = int(rng.integers(5, 120))
        probs = rng.dirichlet(np.ones(num_classes) * (0.2 if trial % 3 == 0 else 1.0), size=n)
        if trial % 4 == 1:
            probs = probs.round(1)  # many ties
        if trial % 4 == 2:
            probs = probs.astype(np.float32)  # saturated ones tie at 1.0 and 0.0
        targets = rng.integers(0, num_classes - (trial % 5 == 0), n)  # some splits lack the last class
        got = classification_metrics(probs, targets, [str(c) for c in range(num_classes)])
        expected = _sklearn_metrics(probs, targets, num_classes)
        for name, value in expected.items():
            assert (math.isnan(value) and math.isnan(got[name])) or abs(got[name] - value) < 1e-12, (trial, name)


@pytest.mark.parametrize("labels", [[0, 1, -100], [0, 1, 2]])
def test_labels_outside_the_scored_classes_are_refused(labels):
    # -100 (cross_entropy's ignored label) crashed the counting; a class 2 of two was counted as negative
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"labels are class indices 0..1 of the 2 scored"):
        classification_metrics(probs, np.array(labels))


def test_an_empty_split_gives_nan_for_every_figure_without_a_numpy_warning():
    """Review 44a: macro_f1 came out 0.0 beside NaN accuracy, and the calibration figures raised
    numpy's empty-slice warnings (an exit 2 under -W error)."""
    import warnings

    from peerdistill.metrics import classification_metrics

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = classification_metrics(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), class_names=["a", "b", "c"])
    assert all(np.isnan(v) for v in out.values()), out


def test_binary_auc_takes_a_zero_one_mask_as_well_as_a_boolean_one():
    """Review 44a: 0/1 integers indexed rows instead of selecting them (2.59 for an AUC)."""
    from sklearn.metrics import roc_auc_score

    from peerdistill.metrics import binary_auc

    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 50), rng.random(50)
    assert binary_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert binary_auc(labels.astype(bool), scores) == binary_auc(labels, scores)


def test_midranks_are_scipys_rankdata():
    """The AUC's midranks, computed with numpy (scipy.stats took most of a second to import),
    against scipy's on ties, saturated float32 values and random ones."""
    from scipy.stats import rankdata

    from peerdistill.metrics import midranks

    rng = np.random.default_rng(0)
    cases = [rng.random(200), rng.integers(0, 5, 300).astype(float), np.ones(7), np.array([3.0]),
             np.float32([1, 1, 0.99999994, 1, 0.5]), np.arange(10)[::-1].astype(float)]
    for values in cases:
        assert np.array_equal(midranks(values), rankdata(values)), values


def test_non_finite_scores_give_no_figure_rather_than_a_perfect_one():
    # review 45c: argmax calls a NaN row class 0, so accuracy and Dice came out 1.0 for NaN scores
    # from a library caller (the command line stops on non-finite outputs before any metric)
    import torch

    from peerdistill.segmentation_metrics import SegmentationMeter

    probs = np.full((4, 2), np.nan)
    figures = classification_metrics(probs, np.array([0, 0, 0, 1]), class_names=["a", "b"])
    assert figures and all(math.isnan(v) for v in figures.values())
    finite = classification_metrics(np.array([[0.9, 0.1]] * 3 + [[0.2, 0.8]]), np.array([0, 0, 0, 1]))
    assert finite["accuracy"] == 1.0  # the same calls from finite scores: a number
    meter = SegmentationMeter(["background", "vessel"])
    scores = torch.zeros(1, 2, 8, 8)
    scores[:, 0] = 1.0
    meter.update(scores, torch.zeros(1, 8, 8, dtype=torch.long))
    assert meter.compute()["pixel_accuracy"] == 1.0
    meter.update(torch.full((1, 2, 8, 8), float("nan")), torch.zeros(1, 8, 8, dtype=torch.long))
    assert all(math.isnan(v) for v in meter.compute().values())


def test_a_metrics_family_drops_test_time_flips_and_the_class_and_says_which_way_is_better():
    from peerdistill.metrics import lower_is_better, metric_family
    from peerdistill.runs import unpaired_metric

    assert [metric_family(m) for m in ("tta_hd95_liver", "hd95", "dice_2", "tta_auc", "accuracy")] == [
        "hd95", "hd95", "dice", "auc", "accuracy"]
    assert [lower_is_better(m) for m in ("tta_hd95_liver", "ece", "dice_hd95", "recall_0")] == [True, True, False, False]
    assert unpaired_metric("tta_hd95_vessel") and not unpaired_metric("dice_vessel")
