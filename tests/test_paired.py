"""Paired differences between compared settings: the figures against independent computations."""

import math

import numpy as np
import pytest
from scipy import stats

from peerdistill.paired import caption, default_baseline, difference_rows, differences, paired_difference
from peerdistill.report import mean_std
from peerdistill.values import mean_and_sample_std

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
    # the same distances and errors under test-time flips (compare --tta) and per class
    for metric in ("tta_hd95", "tta_ece", "tta_brier", "hd95_tumour", "tta_hd95_tumour"):
        assert paired_difference([10.0, 11.0, 14.0], [12.0, 12.0, 12.0], metric).better == 2, metric
    assert paired_difference([10.0, 11.0, 14.0], [12.0, 12.0, 12.0], "tta_dice").better == 1


def test_equal_differences_give_no_interval_rather_than_one_of_no_width():
    # 0.1 three times: the floats' mean of them is 0.10000000000000002, and their std a residue
    # (1.7e-17) instead of 0; an interval [0.1, 0.1] would say the difference is known exactly
    # from three seeds (each one test sample apart, on a small split)
    d = paired_difference([0.1, 0.1, 0.1], [0.0, 0.0, 0.0], "accuracy")
    assert d.mean == 0.1 and math.isnan(d.low) and math.isnan(d.high)
    assert d.cell() == "+0.1000 [no interval: the 3 pairs differ alike] 3/3 better"
    assert paired_difference([0.1, 0.2, 0.1], [0.0, 0.0, 0.0], "accuracy").low < 0.1  # any spread: an interval
    # one test sample of 180 apart each: alike but for the rounding of v - b (an ulp apart), still no interval
    n = 180
    d = paired_difference([101 / n, 102 / n, 105 / n], [100 / n, 101 / n, 104 / n], "accuracy")
    assert len({v - b for v, b in zip([101 / n, 102 / n, 105 / n], [100 / n, 101 / n, 104 / n])}) > 1
    assert d.cell() == "+0.0056 [no interval: the 3 pairs differ alike] 3/3 better"
    assert mean_and_sample_std([0.1, 0.1, 0.1]) == (0.1, 0.0)
    assert mean_std([0.1, None, 0.1, float("nan"), 0.1]) == (0.1, 0.0)  # a comparison's mean ± std


def test_the_mean_and_std_against_numpy_and_with_infinite_values():
    values = [0.71, 0.74, 0.69, 0.80]
    assert mean_and_sample_std(values) == pytest.approx((np.mean(values), np.std(values, ddof=1)), rel=1e-15)
    mean, std = mean_and_sample_std([math.inf, 1.0])  # an HD95 of a run that found nothing
    assert mean == math.inf and math.isnan(std)
    assert math.isnan(mean_and_sample_std([0.5])[1]) and all(map(math.isnan, mean_and_sample_std([])))
    assert mean_and_sample_std([1.7e308, -1.7e308]) == (0.0, math.inf)  # a spread past the largest float
    assert mean_and_sample_std([1.7e308, 1.7e308, -1.7e308]) == (pytest.approx(1.7e308 / 3), math.inf)
    d = paired_difference(np.array([3, 4, 6]), np.array([1, 1, 1]), "accuracy")  # numpy values, as from Python
    assert (d.mean, d.pairs) == (pytest.approx(10 / 3), 3)
    assert mean_std([np.float32(0.75), 0.8]) == pytest.approx((0.775, float(np.std([0.75, 0.8], ddof=1))))


def test_pairs_without_a_number_are_left_out():
    d = paired_difference([0.9, float("nan"), 0.7, 0.8], [0.8, 0.8, float("nan"), 0.6], "auc")
    assert d.pairs == 2 and d.mean == pytest.approx(0.15) and d.better == 2
    one = paired_difference([0.9, float("nan")], [0.8, 0.8], "auc")
    assert one.pairs == 1 and math.isnan(one.low) and one.cell() == "+0.1000 1/1 better"
    assert paired_difference([float("nan")], [0.5], "auc").cell() == "n/a"
    with pytest.raises(ValueError, match="paired runs differ in number"):
        paired_difference([0.1, 0.2], [0.1], "auc")


def _row(setting, model, metric, values, seeds=None):
    seeds = range(len(values)) if seeds is None else seeds
    return {"setting": setting, "model": model, "metric": metric, "values": values,
            "runs": [f"{setting}-seed{s}" for s in seeds]}


def test_differences_pair_each_setting_with_the_baseline_model_by_model():
    rows = [_row("independent", "ensemble", "accuracy", [0.90, 0.92, 0.91]),
            _row("kd", "ensemble", "accuracy", [0.93, 0.92, 0.95]),
            _row("kd", "student1", "accuracy", [0.80, 0.81, 0.82]),  # the baseline lacks it: no pair
            _row("ml", "ensemble", "accuracy", [0.91, 0.93], seeds=[10, 11])]  # other seeds: nothing to pair
    diffs = differences(rows, "independent")
    assert [(d["setting"], d["model"]) for d in diffs] == [("kd", "ensemble")]
    assert diffs[0]["difference"].mean == pytest.approx((0.03 + 0.0 + 0.04) / 3)
    assert diffs[0]["difference"].better == 2 and diffs[0]["difference"].tied == 1  # the tie is not better: said
    assert diffs[0]["difference"].cell().endswith(" 2/3 better, 1 tied")
    table = difference_rows(diffs, ["independent", "kd", "ml"], ["student1", "ensemble"], "accuracy")
    assert table == [["kd", "", diffs[0]["difference"].cell()]]


def test_the_default_baseline_is_independent_when_compared():
    assert default_baseline(["kd", "independent", "ml"]) == "independent"
    assert default_baseline(["kd", "ml"]) == "kd"


def test_the_caption_warns_that_folds_are_not_independent_pairs():
    assert "not independent" in caption("independent", "auc", 5, folds=5)
    assert "not independent" not in caption("independent", "auc", 3, folds=None)
    # one test split: the interval holds the seeds' spread there, not the test images' (review 45c)
    assert caption("independent", "auc", 3, folds=None).endswith(
        "Every pair is scored on the same test images, so the interval holds the seeds' spread on them and not how "
        "far other test images could move the difference: one that excludes 0 may not hold on new images (--folds "
        "scores other test images; eval --bootstrap bounds each figure).")
    assert "same test images" not in caption("independent", "auc", 5, folds=5)
    # a chosen threshold is no test figure (review 51j: headed "test", "scored on the same test images")
    chosen = caption("independent", "op_threshold", 3, folds=None)
    assert "op_threshold (chosen on val):" in chosen and "test op_threshold" not in chosen
    assert chosen.endswith("Each run's op_threshold is chosen on its validation split: the differences compare "
                           "what the settings chose, not how well they score.")
    # many intervals shown, none adjusted for the others: said, with the figure to judge by
    assert "Each interval stands alone, unadjusted for the many shown (settings, models, metrics): some exclude 0 " \
           "by chance alone" in caption("independent", "auc", 3, folds=None)
    # a cross-validation's differences written by an earlier version: not corrected, and said so
    assert "narrower than they should be" in caption("independent", "auc", 5, folds=5, corrected=False)


def test_pairs_of_a_cross_validation_get_the_corrected_resampled_t_interval():
    """Six pairs, 2 seeds x 3 folds: the variance of the mean is s^2 (1/6 + 1/(3-1)), by hand
    (Nadeau & Bengio's correction, as Bouckaert & Frank apply it to repeated K-fold), twice the
    plain interval's half-width here; the mean and the counts are as without folds."""
    from scipy.stats import t

    settings, baseline = [0.82, 0.80, 0.85, 0.83, 0.79, 0.84], [0.80, 0.81, 0.82, 0.80, 0.80, 0.81]
    diffs = [a - b for a, b in zip(settings, baseline)]
    mean = sum(diffs) / 6
    s = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 5)
    half = float(t.ppf(0.975, 5)) * s * math.sqrt(1 / 6 + 1 / 2)
    folded = paired_difference(settings, baseline, "accuracy", folds=3)
    plain = paired_difference(settings, baseline, "accuracy")
    assert (folded.low, folded.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert folded.high - folded.mean == pytest.approx(2 * (plain.high - plain.mean))  # sqrt(2/3) / sqrt(1/6)
    assert (folded.mean, folded.pairs, folded.better) == (plain.mean, plain.pairs, plain.better)


def test_the_caption_says_two_pairs_give_an_interval_12_7_standard_errors_wide():
    """Two seeds: Student's t with one degree of freedom, 12.71 times the standard error, so a Dice
    difference's interval can run from -2.4 to +2.0; said where it is shown, and not with three."""
    from scipy.stats import t

    assert round(float(t.ppf(0.975, 1)), 1) == 12.7
    d = paired_difference([0.30, 0.10], [0.35, 0.42], "dice")
    assert d.low < -1 and d.high > 1  # past the range of a Dice difference: correct arithmetic, little said
    assert "two pairs the interval is 12.7 standard errors wide" in caption("independent", "dice", 2, folds=None)
    one = caption("independent", "dice", 1, folds=None)  # (review 50h: "1 pairs at most")
    assert "on the same split (one pair)" in one and "pairs at most" not in one
    assert "12.7" not in caption("independent", "dice", 3, folds=None)
    # two folds: the correction multiplies it by sqrt((1/2 + 1) / (1/2)), and more folds (not seeds) narrow it
    assert round(float(t.ppf(0.975, 1)) * math.sqrt(3), 1) == 22.0
    assert "22 standard errors wide on each side (t with one degree of freedom, times the correction for folds): " \
           "it tells little, and may reach past the metric's range; more folds give one" in caption(
               "independent", "dice", 2, folds=2)
    # a fold comparison written before: its pairs were its runs, its interval plain t
    old = caption("independent", "dice", 2, folds=2, corrected=False)
    assert "run of the same seed and fold on the same split (2 pairs at most)" in old and "12.7 standard" in old
    assert "narrower than they should be" in old



def test_identical_runs_differ_by_exactly_zero_and_are_never_better():
    d = paired_difference([0.9, 0.8], [0.9, 0.8], "accuracy")
    assert (d.mean, d.pairs, d.better, d.tied) == (0.0, 2, 0, 2)
    # (a frozen teacher beside itself: "differ alike ... 0/2 better" read as a finding, review 45b)
    assert d.cell() == "+0.0000 [the same figure in all 2 pairs]"


def test_a_threshold_or_a_temperature_has_no_better_direction():
    d = paired_difference([1.2, 1.4], [1.0, 1.1], "cal_temperature")
    assert d.better is None and d.cell() == f"+0.2500 [{d.low:+.4f}, {d.high:+.4f}]"
    assert paired_difference([0.4], [0.5], "op_threshold").cell() == "-0.1000"
    assert paired_difference([0.05, 0.04], [0.08, 0.03], "cal_ece").better == 1
    assert paired_difference([0.4, 0.5], [0.5, 0.3], "tta_op_threshold").better is None


def test_runs_pair_by_seed_and_fold_whatever_their_order_or_gaps():
    base = _row("independent", "ensemble", "brier", [0.30, 0.20], seeds=[1, 2])  # seed 0 lacks the metric
    other = _row("kd", "ensemble", "brier", [0.21, 0.11, 0.29], seeds=[2, 0, 1])  # listed in another order
    (d,) = differences([base, other], "independent")
    assert d["difference"].pairs == 2 and d["difference"].mean == pytest.approx(((0.29 - 0.30) + (0.21 - 0.20)) / 2)
    # listed out of order, paired by position the three differences would be -0.08, -0.09, +0.21
    base = _row("independent", "ensemble", "accuracy", [0.80, 0.90, 0.70], seeds=[0, 1, 2])
    other = _row("kd", "ensemble", "accuracy", [0.72, 0.81, 0.91], seeds=[2, 0, 1])
    (d,) = differences([base, other], "independent")
    by_seed = np.array([0.81 - 0.80, 0.91 - 0.90, 0.72 - 0.70])
    half = stats.t.ppf(0.975, 2) * by_seed.std(ddof=1) / np.sqrt(3)
    assert d["difference"].better == 3 and (d["difference"].low, d["difference"].high) == pytest.approx(
        (by_seed.mean() - half, by_seed.mean() + half))  # [-0.0010, +0.0277]
    folds = [{"setting": s, "model": "m", "metric": "dice", "values": v,
              "runs": [f"{s}-seed0-fold0", f"{s}-seed0-fold1"]} for s, v in (("a", [0.5, 0.7]), ("b", [0.6, 0.6]))]
    (d,) = differences(folds, "a")
    assert d["difference"].mean == pytest.approx(0.0) and d["difference"].better == 1
    assert differences(folds, "a", among={"a"}) == []  # b on another split: left out


def test_differences_csv_reads_back_as_written(tmp_path):
    from peerdistill.errors import RunDirError
    from peerdistill.paired import differences_csv, read_differences_csv

    rows = [_row("independent", "ensemble", "ece", [0.10, 0.12, 0.11]), _row("kd", "ensemble", "ece", [0.08, 0.13, 0.09]),
            _row("independent", "ensemble", "cal_temperature", [1.1, 1.2, 1.3]),
            _row("kd", "ensemble", "cal_temperature", [1.5, 1.4, 1.6])]
    diffs = differences(rows, "independent")
    path = tmp_path / "differences.csv"
    path.write_text(differences_csv(diffs))
    back = read_differences_csv(path)
    assert [(d["setting"], d["metric"], d["difference"].better) for d in back] == [("kd", "ece", 2),
                                                                                   ("kd", "cal_temperature", None)]
    assert back[0]["difference"].mean == pytest.approx(diffs[0]["difference"].mean, abs=1e-6)
    tie = [_row("independent", "ensemble", "accuracy", [0.5, 0.6]), _row("kd", "ensemble", "accuracy", [0.5, 0.7])]
    path.write_text(differences_csv(differences(tie, "independent")))
    assert read_differences_csv(path)[0]["difference"].cell().endswith(" 1/2 better, 1 tied")
    assert read_differences_csv(path)[0]["corrected"] and read_differences_csv(path)[0]["folds"] is None
    lines = path.read_text().splitlines()  # a file written before folds were recorded: not corrected
    path.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    assert not read_differences_csv(path)[0]["corrected"]
    assert read_differences_csv(path)[0]["difference"].cell().endswith(" 1/2 better, 1 tied")
    lines = path.read_text().splitlines()  # and before ties were counted: it reads without them
    path.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    assert read_differences_csv(path)[0]["difference"].cell().endswith(" 1/2 better")
    path.write_text("setting,model\nkd,ensemble\n")  # not compare's: damaged, said so (the report names it)
    with pytest.raises(RunDirError, match="differences.csv' is damaged: it lacks compare's columns; run the same "
                                          "compare command again"):
        read_differences_csv(path)


def test_compare_pairs_only_configs_on_the_baselines_split(tmp_path):
    import io

    from rich.console import Console

    from peerdistill.compare import compare

    base = {"out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml"},
            "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2, "train": {"epochs": 1, "batch_size": 256}}
    configs = [{**base, "name": "a"}, {**base, "name": "b", "data": {"split_seed": 1}},
               {**base, "name": "c", "train": {"epochs": 1, "batch_size": 128}}]
    planned = io.StringIO()  # said by the dry run, before the compute is spent (review 47b)
    compare(configs, None, 2, progress=False, dry_run=True, console=Console(file=planned, width=200))
    assert ("note: Left out, having no run of the same seed on the same data split as `a`: `b`. Their rows would be "
            "scored on other data; no paired difference would be given for them.") in " ".join(planned.getvalue().split())
    printed = io.StringIO()
    result = compare(configs, None, 2, progress=False, console=Console(file=printed, width=200))
    assert {d["setting"] for d in result.differences} == {"c"}  # b's test images are others
    # said on the console too, under its table of differences (which leaves b out)
    note = "Left out, having no run of the same seed on the same data split as `a`: `b`."
    assert printed.getvalue().count(note) == 1 and result.markdown.count(note) == 1  # (review 52i: said twice)
    # and above the tables, which hold them side by side: each setting's test size (review 46b)
    other = ("The settings read different data (their data sections differ in what decides the split), so their rows "
             "are not scored on one test set: test samples `a` 360, `b` 360, `c` 360.")
    assert other in result.markdown and result.markdown.index(other) < result.markdown.index("| setting")
    assert other in " ".join(printed.getvalue().split())
    import csv

    written = {r["setting"] for r in csv.DictReader((result.directory / "differences.csv").open())}
    assert written == {"c"}
    from peerdistill.html_report import write_report

    page = write_report(result.directory).read_text(encoding="utf-8")
    assert "same data split as <code>a</code>: <code>b</code>" in page
    # no setting comparable at all: the tables say why there are no differences (the runs are reused)
    alone = compare(configs[:2], None, 2, progress=False)
    assert alone.differences == [] and not (alone.directory / "differences.csv").exists()
    assert "Left out, having no run of the same seed on the same data split as `a`: `b`." in alone.markdown
    # another val_fraction cuts the same test rows (test is cut first): no note of other test sets (review 46d L1)
    same_test = compare([configs[0], {**base, "name": "e", "data": {"val_fraction": 0.3}}], None, 2, progress=False)
    assert "The settings read different data" not in same_test.markdown


def test_how_images_are_read_or_where_the_file_is_named_is_not_another_split(tmp_path):
    from peerdistill.compare import _split_identity
    from peerdistill.config import validate

    (tmp_path / "sub").mkdir()
    data = {"kind": "folders", "root": str(tmp_path / "d")}
    same = [{**data}, {**data, "normalize": "imagenet"}, {**data, "grey": True, "augment": ["hflip"]},
            {**data, "root": str(tmp_path / "sub" / ".." / "d")}]
    def identity(d):
        return _split_identity(validate({"task": "segmentation", "data": d, "teacher": None,
                                         "distill": {"preset": "ml"}, "students": [{"arch": "unet"}] * 2}))

    identities = [identity(d) for d in same]
    assert all(i == identities[0] for i in identities)
    for other in ({**data, "split_seed": 1}, {**data, "test_fraction": 0.3}, {**data, "root": str(tmp_path / "e")},
                  {**data, "pixel_spacing": [0.5, 0.5]}):  # (millimetres: HD95 in another unit)
        assert identity(other) != identities[0], other


def test_differences_csv_puts_each_figure_under_its_own_column():
    import csv
    import io

    from peerdistill.paired import differences_csv

    d = paired_difference([0.80, 0.90, 0.85], [0.70, 0.85, 0.90], "accuracy")
    (row,) = csv.DictReader(io.StringIO(differences_csv([{"setting": "kd", "baseline": "independent",
                                                          "model": "ensemble", "metric": "accuracy",
                                                          "difference": d}])))
    mean = (0.10 + 0.05 - 0.05) / 3
    half = T_975_2 * float(np.std([0.10, 0.05, -0.05], ddof=1)) / math.sqrt(3)
    assert (row["setting"], row["baseline"], row["model"], row["metric"]) == ("kd", "independent", "ensemble", "accuracy")
    assert row["mean_difference"] == f"{mean:.6f}"
    assert (row["ci95_low"], row["ci95_high"]) == (f"{mean - half:.6f}", f"{mean + half:.6f}")  # the low end first
    assert (row["pairs"], row["better"], row["tied"]) == ("3", "2", "0")


def test_a_figure_without_a_direction_says_nothing_of_better_or_tied():
    # a temperature of the same value in one pair: no "better", so no "tied" either
    d = paired_difference([1.0, 1.4], [1.0, 1.0], "cal_temperature")
    assert d.tied == 1 and d.better is None
    assert d.cell() == f"+0.2000 [{d.low:+.4f}, {d.high:+.4f}]"


def test_with_folds_the_pairs_are_fold_means_over_the_seeds_and_the_caption_counts_them(tmp_path):
    """2 seeds x 2 folds: every seed runs the same two folds, so each fold's two runs are averaged
    and the two fold means are the pairs, with the corrected interval, by hand."""
    from peerdistill.compare import compare

    tree = {"name": "f", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml"},
            "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2, "train": {"epochs": 1, "batch_size": 256}}
    result = compare(tree, ["independent", "ml"], 2, folds=2, progress=False)
    rows = {r["setting"]: r for r in result.rows if r["model"] == "ensemble" and r["metric"] == "accuracy"}
    (d,) = [d["difference"] for d in result.differences if d["model"] == "ensemble" and d["metric"] == "accuracy"]
    assert rows["ml"]["runs"] == ["ml-seed0-fold0", "ml-seed0-fold1", "ml-seed1-fold0", "ml-seed1-fold1"]
    runs = {name: (v, b) for name, v, b in zip(rows["ml"]["runs"], rows["ml"]["values"], rows["independent"]["values"])}
    fold_differences = [np.mean([runs[f"ml-seed{s}-fold{k}"][0] - runs[f"ml-seed{s}-fold{k}"][1] for s in (0, 1)])
                        for k in (0, 1)]
    mean, sd = np.mean(fold_differences), np.std(fold_differences, ddof=1)
    half = stats.t.ppf(0.975, 1) * sd * math.sqrt(1 / 2 + 1 / (2 - 1))
    assert d.pairs == 2 and d.mean == pytest.approx(mean)
    assert (d.low, d.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert "averaged over the seeds fold by fold (2 fold pairs at most)" in result.markdown


def test_an_infinite_figure_says_why_its_difference_has_no_interval():
    # an HD95 of inf (no mask found in a run): the mean moves to inf and no interval exists
    d = paired_difference([math.inf, 1.0], [2.0, 2.0], "hd95")
    assert d.mean == math.inf and math.isnan(d.low) and (d.pairs, d.better) == (2, 1)
    assert d.cell() == "+inf [no interval: an infinite figure] 1/2 better"
    assert paired_difference([3.0], [2.0], "hd95").cell() == "+1.0000 0/1 better"  # one pair: none, as before


def test_one_infinite_value_has_its_mean_and_no_std():
    # one value gives no sample std, on the non-finite path as on the exact one
    mean, std = mean_and_sample_std([math.inf])
    assert mean == math.inf and math.isnan(std)


def test_what_counts_as_a_number_and_a_count():
    """bool is an int in Python, and JSON reads NaN and Infinity: neither is a number here."""
    from peerdistill.values import is_count, is_finite_number

    assert [is_finite_number(v) for v in (0, -2, 0.5, True, math.nan, math.inf, "1", None)] == \
        [True, True, True, False, False, False, False, False]
    assert [is_count(v) for v in (0, 3, -1, True, False, 1.0, "2")] == [True, True, False, False, False, False, False]


def test_differences_that_cancel_read_as_zero_not_a_roundings_minus_zero():
    """Review 52d: seed differences of -7, +13 and -6 samples in 360 summed to -3.7e-17: '-0.0000'."""
    from peerdistill.paired import differences_csv

    values, baseline = [0.9 - 7 / 360, 0.9 + 13 / 360, 0.9 - 6 / 360], [0.9] * 3
    d = paired_difference(values, baseline, "accuracy")
    assert d.mean == 0.0 and d.cell().startswith("+0.0000 [-0.0778, +0.0778] 1/3 better")
    row = differences_csv([{"setting": "kd", "baseline": "independent", "model": "best student", "metric": "accuracy",
                            "difference": d, "folds": None}]).splitlines()[1]
    assert row.startswith("kd,independent,best student,accuracy,0.000000,")
    assert paired_difference([0.5 + 1e-6], [0.5], "accuracy").mean == pytest.approx(1e-6)  # (a real one stays)
