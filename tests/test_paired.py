"""Paired differences between compared settings: the figures against independent computations."""

import math

import numpy as np
import pytest
from scipy import stats

from peerdistill.paired import Difference, caption, default_baseline, difference_rows, differences, paired_difference

T_975_2 = 4.302652729749464  # Student's t, 97.5th percentile, 2 degrees of freedom (printed tables: 4.303)


def test_three_pairs_by_hand():
    d = paired_difference([0.80, 0.90, 0.85], [0.70, 0.85, 0.90], "accuracy")
    diffs = [0.10, 0.05, -0.05]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    assert d.mean == pytest.approx(mean) and d.pairs == 3 and d.better == 2
    assert (d.low, d.high) == pytest.approx((mean - T_975_2 * sd / math.sqrt(3), mean + T_975_2 * sd / math.sqrt(3)))
    assert d.cell() == f"+{mean:.4f} [{d.low:+.4f}, {d.high:+.4f}] 2/3 better"


def test_the_interval_is_scipys_paired_t_test_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.8, 0.02, 7), rng.normal(0.79, 0.02, 7)
    d = paired_difference(list(a), list(b), "dice")
    reference = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((reference.low, reference.high))
    assert d.mean == pytest.approx(float(np.mean(a - b)))


def test_lower_is_better_metrics_count_a_drop_as_better():
    d = paired_difference([0.02, 0.03, 0.05], [0.04, 0.04, 0.04], "ece")
    assert d.better == 2 and d.mean < 0
    assert paired_difference([0.02, 0.03, 0.05], [0.04, 0.04, 0.04], "accuracy").better == 1


def test_pairs_without_a_number_are_left_out():
    d = paired_difference([0.9, float("nan"), 0.7, 0.8], [0.8, 0.8, float("nan"), 0.6], "auc")
    assert d.pairs == 2 and d.mean == pytest.approx(0.15) and d.better == 2
    one = paired_difference([0.9, float("nan")], [0.8, 0.8], "auc")
    assert one.pairs == 1 and math.isnan(one.low) and one.cell() == "+0.1000 1/1 better"
    assert paired_difference([float("nan")], [0.5], "auc").cell() == "n/a"
    with pytest.raises(ValueError, match="paired runs differ in number"):
        paired_difference([0.1, 0.2], [0.1], "auc")


def _row(setting, model, metric, values):
    return {"setting": setting, "model": model, "metric": metric, "values": values}


def test_differences_pair_each_setting_with_the_baseline_model_by_model():
    rows = [_row("independent", "ensemble", "accuracy", [0.90, 0.92, 0.91]),
            _row("kd", "ensemble", "accuracy", [0.93, 0.92, 0.95]),
            _row("kd", "student1", "accuracy", [0.80, 0.81, 0.82]),  # the baseline lacks it: no pair
            _row("ml", "ensemble", "accuracy", [0.91, 0.93])]  # fewer runs: not paired
    diffs = differences(rows, "independent")
    assert [(d["setting"], d["model"]) for d in diffs] == [("kd", "ensemble")]
    assert diffs[0]["difference"].mean == pytest.approx((0.03 + 0.0 + 0.04) / 3)
    assert diffs[0]["difference"].better == 2  # the tie is not better
    table = difference_rows(diffs, ["independent", "kd", "ml"], ["student1", "ensemble"], "accuracy")
    assert table == [["kd", "", diffs[0]["difference"].cell()]]


def test_the_default_baseline_is_independent_when_compared():
    assert default_baseline(["kd", "independent", "ml"]) == "independent"
    assert default_baseline(["kd", "ml"]) == "kd"


def test_the_caption_warns_that_folds_are_not_independent_pairs():
    assert "not independent" in caption("independent", "auc", 15, folds=True)
    assert "not independent" not in caption("independent", "auc", 3, folds=False)



def test_identical_runs_differ_by_exactly_zero_and_are_never_better():
    d = paired_difference([0.9, 0.8], [0.9, 0.8], "accuracy")
    assert d == Difference(0.0, 0.0, 0.0, 2, 0) and d.cell() == "+0.0000 [+0.0000, +0.0000] 0/2 better"


def test_a_threshold_or_a_temperature_has_no_better_direction():
    d = paired_difference([1.2, 1.4], [1.0, 1.1], "cal_temperature")
    assert d.better is None and d.cell() == f"+0.2500 [{d.low:+.4f}, {d.high:+.4f}]"
    assert paired_difference([0.4], [0.5], "op_threshold").cell() == "-0.1000"
    assert paired_difference([0.05, 0.04], [0.08, 0.03], "cal_ece").better == 1
