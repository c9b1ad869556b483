"""The HTML report of a run or a comparison: one self-contained page with embedded PNG figures."""

from __future__ import annotations

import base64
import csv
import io
import html
import json
import math
import re
import shutil
import warnings

import numpy as np
import pytest

from peerdistill.build import train_from_config
from peerdistill.compare import compare
from peerdistill.config import validate
from peerdistill.errors import PeerdistillWarning, RunDirError
from peerdistill.html_report import write_report
from peerdistill.report import mmacs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG = '<img src="data:image/png;base64,'
TINY_CNN = {"arch": "cnn", "args": {"width": 4, "depth": 1}}


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def assert_pngs(page: str, count: int) -> None:
    assert page.count(IMG) == count
    images = embedded_pngs(page)
    assert len(images) == count
    assert all(image.startswith(PNG_SIGNATURE) and len(image) > 1000 for image in images)


def table_row(page: str, name: str) -> str:
    """The <tr> of ``name`` in the page's first table naming it."""
    match = re.search(rf"<tr><th>{re.escape(name)}</th>.*?</tr>", page)
    assert match, f"no table row for {name}"
    return match.group(0)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    cfg = validate({"name": "r", "out_dir": str(out), "teacher": TINY_CNN, "students": [TINY_CNN, TINY_CNN],
                    "train": {"epochs": 2, "batch_size": 256}})
    return train_from_config(cfg, progress=False).run_dir


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    small = {"args": {"width": 4, "depth": 1}}
    cfg = validate({"name": "s", "out_dir": str(out), "task": "segmentation",
                    "data": {"kind": "shapes", "shapes_counts": [16, 8, 8]},
                    "teacher": {"arch": "unet", **small},
                    "students": [{"arch": "mobile_unet", **small}, {"arch": "mobile_unet", **small}],
                    "train": {"epochs": 1, "batch_size": 8}})
    return train_from_config(cfg, progress=False).run_dir


def test_run_report_of_a_classification_run(digits_run):
    path = write_report(digits_run)
    assert path == digits_run / "report.html"
    page = path.read_text(encoding="utf-8")
    # learning curves (monitor, losses) + confusion matrix + ROC + reliability diagram
    assert_pngs(page, 5)
    assert "confusion matrix of the student ensemble" in page and "ROC curves" in page and "reliability diagram" in page
    assert "samples), each assigned its most probable class</" in page  # (ten classes: no threshold to speak of)
    metrics = json.loads((digits_run / "metrics.json").read_text())
    meta = json.loads((digits_run / "run.json").read_text())
    assert metrics["monitor"] == "ensemble/accuracy"
    assert f"<p>Test split ({meta['split_sizes']['test']:,} samples), with the weights of the best" in page
    # how it was trained, every setting (review 55t: no optimizer, lr, batch size or schedule on the page)
    from html import escape

    saved = (digits_run / "config.yaml").read_text(encoding="utf-8")
    assert "<h2>How it was trained</h2>" in page and f"<pre>{escape(saved)}</pre>" in page
    assert (f"Each figure is one training run&#x27;s on these {meta['split_sizes']['test']:,} samples: eval RUN_DIR "
            "--bootstrap 1000 gives each its 95% interval") in " ".join(page.split())
    for model, scores in metrics["test_at_best"].items():
        row = table_row(page, model)
        assert f"<td>{scores['accuracy']:.4f}</td>" in row
        assert f"<td>{scores['auc']:.4f}</td>" in row
    # the whole-split metrics in one table; per-class figures in a table per family, a row per class
    main_table = page.split("<h2>Test metrics</h2>", 1)[1].split("</table>", 1)[0]
    assert "<th>auc</th>" in main_table and "recall_" not in main_table
    recall = page.split("<h3>recall per class</h3>", 1)[1].split("</table>", 1)[0]
    assert re.search(r"<thead><tr><th>class</th><th>teacher</th><th>student1</th><th>student2</th><th>ensemble</th>",
                     recall)
    cells = recall.split("<tr><th>4</th>", 1)[1].split("</tr>", 1)[0]
    assert cells == "".join(f"<td>{metrics['test_at_best'][m]['recall_4']:.4f}</td>"
                            for m in ("teacher", "student1", "student2", "ensemble"))
    assert "<h3>precision per class</h3>" in page
    for member in meta["members"]:
        assert f"<td>{member['parameters']:,}</td>" in table_row(page, member["name"])
    for name in ("teacher", "student1", "student2", "ensemble"):
        assert name in page
    assert "Predictions skipped" not in page
    costs = page[page.index("<h2>Model costs</h2>"):]
    student = meta["costs"]["student1"]
    assert f"<td>{mmacs(student['macs'])}</td>" in costs and f"<td>{student['compression']:.2f}</td>" in costs
    assert (mmacs(609_400), mmacs(83_300), mmacs(2_345_678)) == ("0.609", "0.0833", "2.35")  # (review 50h: 0.61, 0.08)


def test_a_runs_ensemble_costs_the_sum_of_its_students_in_run_json_and_the_report(digits_run):
    """Review 53d: the ensemble had no cost in run.json nor in the report's tables."""
    from peerdistill.costs import count_macs
    from peerdistill.runs import load_model

    meta = json.loads((digits_run / "run.json").read_text())
    students = [m for m in meta["members"] if m["role"] == "student"]
    modules = [load_model(digits_run, m["name"], with_heads=False)[0].module for m in students]
    ensemble = meta["costs"]["ensemble"]
    assert ensemble["parameters"] == sum(m["parameters"] for m in students)
    assert ensemble["macs"] == sum(count_macs(m, tuple(meta["input_shape"])) for m in modules)
    assert ensemble["size_bytes"] == sum((digits_run / "models" / f"{m['name']}.safetensors").stat().st_size
                                         for m in students)
    teacher = meta["costs"]["teacher"]["parameters"]
    assert ensemble["compression"] == round(teacher / ensemble["parameters"], 2)
    assert ensemble["cpu_latency_ms"] > 0 and "latency_summed" not in ensemble  # timed running both students
    page = write_report(digits_run).read_text(encoding="utf-8")
    costs = page[page.index("<h2>Model costs</h2>"):]
    assert table_row(costs, "ensemble").startswith(f"<tr><th>ensemble</th><td>{ensemble['parameters']:,}</td>"
                                                   f"<td>{mmacs(ensemble['macs'])}</td>")
    assert "are the sum of its 2 students&#x27; (student1, student2)" in costs
    tested = page.split("<h2>Test metrics</h2>", 1)[1].split("</section>", 1)[0]
    assert table_row(tested, "ensemble").startswith(f"<tr><th>ensemble</th><td>{ensemble['parameters']:,}</td>")
    assert "ensemble: its parameters are the sum of its 2 students&#x27;" in tested


def test_run_report_of_a_segmentation_run(shapes_run, tmp_path):
    out = tmp_path / "elsewhere" / "seg.html"
    path = write_report(shapes_run, out)
    assert path == out and out.is_file()
    assert not (shapes_run / "report.html").exists()
    page = out.read_text(encoding="utf-8")
    # learning curves (monitor, losses) + image / truth / prediction grid
    assert_pngs(page, 3)
    assert "first 4 test images" in page
    assert "confusion matrix" not in page
    metrics = json.loads((shapes_run / "metrics.json").read_text())
    assert metrics["monitor"] == "ensemble/dice"
    dice = metrics["test_at_best"]["ensemble"]["dice"]
    assert f"<td>{dice:.4f}</td>" in table_row(page, "ensemble")
    assert "hd95 is in pixels of the files (data.pixel_spacing=[rows, columns] gives it in the spacing&#x27;s unit" \
        in " ".join(page.split())  # (no resize: said all the same, review 55t)
    for name in ("teacher", "student1", "student2"):
        assert name in table_row(page, name)


def test_run_report_notes_models_it_cannot_rebuild(digits_run, tmp_path):
    """Models built in Python have no arch spec in run.json: the page says so and keeps the rest."""
    copy = tmp_path / "python-models"
    shutil.copytree(digits_run, copy)
    meta = json.loads((copy / "run.json").read_text())
    for member in meta["members"]:
        member["spec"] = None
    (copy / "run.json").write_text(json.dumps(meta))
    page = write_report(copy).read_text(encoding="utf-8")
    assert_pngs(page, 2)  # the learning curves only
    assert "Predictions skipped" in page and "built in Python" in page
    accuracy = json.loads((copy / "metrics.json").read_text())["test_at_best"]["student1"]["accuracy"]
    assert f"<td>{accuracy:.4f}</td>" in table_row(page, "student1")


def test_comparison_report(tmp_path):
    tree = {"name": "c", "out_dir": str(tmp_path), "teacher": TINY_CNN, "students": [TINY_CNN, TINY_CNN],
            "train": {"epochs": 1, "batch_size": 256}}
    result = compare(tree, ["independent", "kd"], 2, progress=False)
    path = write_report(result.directory)
    assert path == result.directory / "report.html"
    page = path.read_text(encoding="utf-8")
    with (result.directory / "compare.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    digits = [str(d) for d in range(10)]
    per_class = [f"{family}_{d}" for family in ("precision", "recall") for d in digits]
    assert metrics == ["accuracy", "balanced_accuracy", "macro_f1", "auc", "ece", "brier"] + per_class
    assert_pngs(page, 6 + 1)  # the settings' validation curves, then one figure per whole-split metric
    # per-class figures: one table per family, a row per setting and class
    recall = next(r for r in rows if r["setting"] == "kd" and r["model"] == "student2" and r["metric"] == "recall_7")
    recall_section = page.split("<h2>test recall per class</h2>", 1)[1].split("</section>", 1)[0]
    recall_row = "<tr><th>kd</th><td>7</td>"
    assert recall_section.count("<tr><th>") == 1 + 2 * 10  # the header, then 2 settings x 10 classes
    cells = recall_section.split(recall_row, 1)[1].split("</tr>", 1)[0]
    assert f"<td>{float(recall['mean']):.4f} ± {float(recall['std']):.4f}</td>" in cells
    markdown = (result.directory / "compare.md").read_text(encoding="utf-8")
    # the paired differences of the monitor, a table per whole-split metric, one per per-class family
    assert markdown.count("\n### test ") == 1 + 6 + 2 and "### test precision per class" in markdown
    paired = page.split("<h2>test accuracy</h2>", 1)[1].split("</section>", 1)[0]
    assert "Paired differences from <code>independent</code>, test accuracy" in paired
    identical = "[the same figure in all 2 pairs]</td>"  # identical runs
    # the teacher, trained alike in both (from the labels alone), is left out of them
    assert table_row(paired.split("Paired differences", 1)[1], "kd").count(identical) == 4
    assert "Left out: <code>teacher</code>, which trained alike in every setting" in paired
    assert "| kd | 7 | " in markdown
    assert "validation ensemble/accuracy per epoch" in page
    costs = page.split("<h2>Model costs</h2>", 1)[1].split("</section>", 1)[0]
    student = json.loads((result.directory / "kd-seed0" / "run.json").read_text())["costs"]["student1"]
    assert f"<td>{student['parameters']:,}</td>" in table_row(costs, "student1")
    assert costs.count("<table>") == 1  # both settings train the same models: one table
    # its latencies are the median over the 4 runs (one run's are at the mercy of the machine)
    import statistics

    latencies = [json.loads((result.directory / f"{s}-seed{k}" / "run.json").read_text())["costs"]["student1"]
                 ["cpu_latency_ms"] for s in ("independent", "kd") for k in (0, 1)]
    assert f"<td>{statistics.median(latencies):.3f}</td>" in table_row(costs, "student1")
    summed = sum(json.loads((result.directory / "kd-seed0" / "run.json").read_text())["costs"][s]["parameters"]
                 for s in ("student1", "student2"))  # the ensemble's: the sum of its students', said so
    assert table_row(costs, "ensemble").startswith(f"<tr><th>ensemble</th><td>{summed:,}</td>")
    assert "are the sum of its 2 students&#x27; (student1, student2)" in costs
    assert "peerdistill comparison" in page
    for setting in ("independent", "kd"):
        assert f"<tr><th>{setting}</th>" in page
    for model in ("teacher", "student1", "student2", "best student", "ensemble"):
        assert f"<th>{model}</th>" in page
    row = next(r for r in rows if r["setting"] == "kd" and r["model"] == "ensemble" and r["metric"] == "accuracy")
    assert row["n"] == "2" and len(row["values"].split(";")) == 2
    cell = f"{float(row['mean']):.4f} ± {float(row['std']):.4f}"
    accuracy_section = page.split("<h2>test accuracy</h2>", 1)[1].split("</section>", 1)[0]
    assert f"<td>{cell}</td>" in table_row(accuracy_section, "kd")
    assert row["runs"] == "kd-seed0;kd-seed1"
    # a damaged differences.csv: its tables left out, saying so; the rest of the page stays
    differences = result.directory / "differences.csv"
    written = differences.read_text(encoding="utf-8")
    for damage, why in (("", "it lacks compare&#x27;s columns"), (written + "kd,independent,x,accuracy,oops\n", "at line")):
        differences.write_text(damage, encoding="utf-8")
        page = " ".join(write_report(result.directory).read_text(encoding="utf-8").split())
        assert f"Paired differences left out: &#x27;{differences}&#x27; is damaged" in page and why in page
        assert "Paired differences from" not in page and "<h2>test accuracy</h2>" in page
    differences.unlink()  # a comparison of an earlier version: said, with how to get them
    page = " ".join(write_report(result.directory).read_text(encoding="utf-8").split())
    assert "No paired differences: the folder has no differences.csv" in page and "run the same peerdistill compare" in page
    differences.write_text(written, encoding="utf-8")
    # The same comparison with one seed reuses seed 0: its page is about seed 0 alone, though
    # seed 1's runs are still in the folder.
    fewer = compare(tree, ["independent", "kd"], 1, progress=False)
    page = write_report(fewer.directory).read_text(encoding="utf-8")
    assert "Run directories: independent-seed0, kd-seed0." in page and "no longer in this folder" not in page
    from peerdistill.html_report.comparison_page import compared_runs, read_compare_csv

    runs = compared_runs(fewer.directory, read_compare_csv(fewer.directory), ["independent", "kd"])
    assert runs == {s: [fewer.directory / f"{s}-seed0"] for s in ("independent", "kd")}
    # a run whose metrics.json was removed: said on the page and the console, not left out of the curves in silence
    metrics_file = fewer.directory / "kd-seed0" / "metrics.json"
    kept = metrics_file.read_bytes()
    metrics_file.unlink()
    with pytest.warns(PeerdistillWarning, match=r"1 run\(s\) of this folder have no metrics.json \('kd-seed0'\)"):
        page = " ".join(write_report(fewer.directory).read_text(encoding="utf-8").split())
    assert ("1 run(s) of this folder have no metrics.json (&#x27;kd-seed0&#x27;): the tables keep their figures "
            "(compare.csv); the curves and warnings below are drawn without them") in page
    metrics_file.write_bytes(kept)
    shutil.rmtree(fewer.directory / "kd-seed0")  # a listed run deleted since: the page still comes
    page = write_report(fewer.directory).read_text(encoding="utf-8")
    assert "Run directories: independent-seed0." in page
    assert "compare.csv lists run(s) no longer in this folder: kd-seed0. The tables keep their figures" in page
    assert "none of this comparison's runs" not in page
    shutil.rmtree(fewer.directory / "independent-seed0")  # all gone: said so, not "no run has finished"
    page = " ".join(write_report(fewer.directory).read_text(encoding="utf-8").split())
    assert page.count("none of this comparison&#x27;s runs is in its folder any more (deleted or moved)") == 2
    assert "no run of this comparison has" not in page and "<h2>test accuracy</h2>" in page


def test_a_seed_without_a_number_is_counted_apart():
    from peerdistill.compare import aggregate
    from peerdistill.report import comparison_markdown

    def run(seed, auc):
        scores = {"student1": {"accuracy": 0.9, "auc": auc}, "student2": {"accuracy": 0.8, "auc": auc}}
        return {"setting": "kd", "seed": seed, "run": f"kd-seed{seed}",
                "metrics": {"test_at_best": scores, "val_at_best": scores, "monitor": "ensemble/accuracy",
                            "roles": {"student1": "student", "student2": "student"}}}

    rows = aggregate([run(0, 0.8), run(1, None), run(2, 0.9)])  # seed 1: AUC undefined (NaN)
    auc = next(r for r in rows if r["model"] == "student1" and r["metric"] == "auc")
    assert auc["n"] == 2 and len(auc["values"]) == 3 and math.isnan(auc["values"][1])
    assert auc["mean"] == pytest.approx(0.85) and auc["runs"] == ["kd-seed0", "kd-seed1", "kd-seed2"]
    table = comparison_markdown(rows, ["kd"], ["student1"], ["auc", "accuracy"], "")
    assert "| kd | 0.8500 ± 0.0707 (2 of 3 runs) |" in table and "| kd | 0.9000 ± 0.0000 |" in table
    # a figure one run lacks (saved before it was recorded) is counted as missing there, not dropped
    runs = [run(0, 0.8), run(1, 0.9), run(2, 0.9)]
    for r in runs[1:]:
        r["metrics"]["test_at_best"] = {m: {**v, "ece": 0.1 + r["seed"] / 100} for m, v in r["metrics"]["test_at_best"].items()}
    ece = next(r for r in aggregate(runs) if r["model"] == "student1" and r["metric"] == "ece")
    assert ece["n"] == 2 and math.isnan(ece["values"][0]) and ece["values"][1:] == pytest.approx([0.11, 0.12])
    assert ece["runs"] == ["kd-seed0", "kd-seed1", "kd-seed2"] and ece["mean"] == pytest.approx(0.115)
    assert "(2 of 3 runs)" in comparison_markdown(aggregate(runs), ["kd"], ["student1"], ["ece"], "")


def test_comparison_report_gives_each_cohort_its_cost_table(tmp_path):
    wider = {"arch": "cnn", "args": {"width": 6, "depth": 1}}
    # a teacher the user named, met after the first cohort's students (that cohort has none): its
    # column leads all the same, as its role says, though its name is not teacher...
    base = {"out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 256}}
    result = compare([{**base, "name": "narrow", "students": [TINY_CNN, TINY_CNN], "distill": {"preset": "ml"}},
                      {**base, "name": "wide", "students": [wider, wider],
                       "teacher": {**TINY_CNN, "name": "radiologist"}}], None, 1, progress=False)
    columns = "| setting | radiologist | student1 | student2 | best student | ensemble |"
    assert columns in result.markdown and "| setting | student1 |" not in result.markdown
    # one seed: a mean without a spread (a sample std needs two values)
    assert all(math.isnan(r["std"]) for r in result.rows) and " ± " not in result.markdown.split("###", 1)[1]
    page = write_report(result.directory).read_text(encoding="utf-8")
    accuracy = page.split("<h2>test accuracy</h2>", 1)[1].split("</tr>", 1)[0]
    assert accuracy.endswith("".join(f"<th>{m}</th>" for m in columns.strip("| ").split(" | ")[1:]))
    costs = page.split("<h2>Model costs</h2>", 1)[1].split("</section>", 1)[0]
    assert costs.count("<table>") == 2 and "<p>narrow:</p>" in costs and "<p>wide:</p>" in costs
    for name in ("narrow", "wide"):
        student = json.loads((result.directory / f"{name}-seed0" / "run.json").read_text())["costs"]["student1"]
        assert f"<td>{student['parameters']:,}</td>" in costs.split(f"<p>{name}:</p>", 1)[1]
    table = result.directory / "compare.csv"
    whole = table.read_bytes()
    table.write_bytes(whole[:300])  # cut off mid-row
    with pytest.raises(RunDirError, match="compare.csv' is truncated or corrupt at line"):
        write_report(result.directory)
    # damage of other kinds, one message each (review 50h: a traceback from the decoder, and from matplotlib)
    table.write_bytes(whole.replace(b"narrow", b"narr\xffow", 1))
    with pytest.raises(RunDirError, match="compare.csv' is not UTF-8 text, as compare writes it"):
        write_report(result.directory)
    lines = whole.decode().splitlines(keepends=True)
    header = lines[0].rstrip("\r\n").split(",")
    row = next(csv.reader([lines[1]]))
    row[header.index("std")] = "-0.5"
    buffer = io.StringIO()
    csv.writer(buffer).writerow(row)
    table.write_text(lines[0] + buffer.getvalue() + "".join(lines[2:]), encoding="utf-8")
    with pytest.raises(RunDirError, match="compare.csv' is truncated or corrupt at line 2"):
        write_report(result.directory)


def test_report_of_a_directory_that_is_neither(tmp_path):
    with pytest.raises(RunDirError, match="neither a peerdistill run directory") as info:
        write_report(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert not (tmp_path / "report.html").exists()


def test_a_report_draws_no_predictions_on_data_changed_since_training(digits_run, tmp_path):
    copy = tmp_path / "changed"
    shutil.copytree(digits_run, copy)
    meta = json.loads((copy / "run.json").read_text())
    meta["input_shape"] = [1, 12, 12]  # as if the images on disk had been resized since
    (copy / "run.json").write_text(json.dumps(meta))
    with pytest.warns(PeerdistillWarning, match=r"^the report has no test predictions: .*the data's inputs are "
                      r"\[1, 8, 8\] but the run was trained on"):  # on the console too, not only on the page
        page = write_report(copy).read_text(encoding="utf-8")
    assert "Predictions skipped" in page and "the data&#x27;s inputs are [1, 8, 8] but the run was trained on" in page
    assert "run it from the folder training ran in" not in page  # the data was found: it changed
    assert "confusion matrix" not in page
    (copy / "report.html").unlink()
    with warnings.catch_warnings():  # PYTHONWARNINGS=error: the page is still written (it was not)
        warnings.simplefilter("error", PeerdistillWarning)
        with pytest.raises(PeerdistillWarning, match="the report has no test predictions"):
            write_report(copy)
    assert "Predictions skipped" in (copy / "report.html").read_text(encoding="utf-8")


def test_a_warning_while_the_page_is_drawn_made_an_error_still_leaves_the_page_and_says_it(tmp_path, monkeypatch,
                                                                                           capsys):
    # Only the skipped-predictions warning was held back: the changed-archive one, raised while
    # the data is read, left no page under -W error, and the console said only "error: ...".
    from peerdistill.cli import main
    from tests.conftest import train_two_class_npz_run

    run, arrays = train_two_class_npz_run(tmp_path, seed=0, epochs=1)
    np.savez(tmp_path / "d.npz", **{**arrays, "test_images": arrays["test_images"][::-1].copy()})  # same sizes
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)
        with pytest.raises(PeerdistillWarning, match="is not byte for byte the archive training read"):
            write_report(run)
        assert "confusion matrix" in (run / "report.html").read_text(encoding="utf-8")
        (run / "report.html").unlink()
        assert main(["report", str(run)]) == 2
    said = capsys.readouterr()
    assert f"wrote {run / 'report.html'}" in " ".join(said.out.split())
    assert "is not byte for byte the archive training read" in said.err and "raised as an error" in said.err
    assert (run / "report.html").is_file()
    with pytest.warns(PeerdistillWarning, match="is not byte for byte") as caught:  # without the filter: once
        write_report(run)
    assert len([w for w in caught if "byte for byte" in str(w.message)]) == 1
    # and on the page, beside the figures drawn from that file (review 50h: the console alone said it)
    page = " ".join((run / "report.html").read_text(encoding="utf-8").split())
    assert "The run&#x27;s data file is not byte for byte the one training read" in page
    assert ("each assigned its most probable class (&#x27;1&#x27; where its probability is above 0.5, not at a threshold "
            "chosen on validation)") in page  # two classes: which threshold the matrix is of
    from peerdistill.html_report import reemit  # held under "always": one said twice is said once

    with warnings.catch_warnings(record=True) as held:
        warnings.simplefilter("always")
        for _ in range(2):
            warnings.warn("the same", PeerdistillWarning)
        warnings.warn("another", PeerdistillWarning)
    with pytest.warns(PeerdistillWarning) as said:
        reemit(held)
    assert [str(w.message) for w in said] == ["the same", "another"]


def test_a_report_draws_no_predictions_on_data_split_otherwise_since_training(digits_run, tmp_path):
    copy = tmp_path / "grown"
    shutil.copytree(digits_run, copy)
    meta = json.loads((copy / "run.json").read_text())
    meta["split_sizes"]["test"] -= 2  # as if files had been added since: the splits drawn now are other ones
    (copy / "run.json").write_text(json.dumps(meta))
    page = " ".join(write_report(copy).read_text(encoding="utf-8").split())
    assert "Predictions skipped" in page and "has changed since training (split sizes" in page
    assert "confusion matrix" not in page


def test_names_are_drawn_as_written_and_unfinished_runs_say_so(digits_run, tmp_path):
    import matplotlib

    from peerdistill.html_report.html_parts import legend_name

    assert legend_name("_fast") == "\u200b_fast" and legend_name("student1") == "student1"
    copy = tmp_path / "odd"
    shutil.copytree(digits_run, copy)
    # a model named as mathtext would read it, and one matplotlib leaves out of legends
    for name in ("run.json", "metrics.json", "metrics.csv"):
        text = (copy / name).read_text().replace("student1", "$x^2$").replace("student2", "_fast")
        (copy / name).write_text(text)
    for old, new in (("student1", "$x^2$"), ("student2", "_fast")):
        (copy / "models" / f"{old}.safetensors").rename(copy / "models" / f"{new}.safetensors")
    metrics = json.loads((copy / "metrics.json").read_text())
    for name in ("metrics.json", "run.json"):  # as a killed run leaves them
        (copy / name).write_text(json.dumps({**json.loads((copy / name).read_text()), "status": "running"}))
    parse_math = matplotlib.rcParams["text.parse_math"]
    page = write_report(copy).read_text(encoding="utf-8")
    assert matplotlib.rcParams["text.parse_math"] == parse_math  # the setting is the report's own
    assert "$x^2$" in page and "This run has not finished" in page and f"--resume {copy}" in page
    assert "<b>status</b>: interrupted (no process trains it)" in page
    unscored = {k: v for k, v in json.loads((copy / "metrics.json").read_text()).items()
                if k not in ("test_at_best", "ending_warnings")}  # (both written as training ends)
    (copy / "metrics.json").write_text(json.dumps(unscored))  # killed before its test scores: said once, alike
    page_unscored = write_report(copy).read_text(encoding="utf-8")
    assert "no test metrics yet: they are written when training ends" in page_unscored
    assert "<b>status</b>: interrupted (no process trains it)" in page_unscored and "running" not in page_unscored
    (copy / "metrics.json").write_text(json.dumps({**unscored, "test_at_best": metrics["test_at_best"]}))
    from peerdistill import run_lock

    held = run_lock.hold(copy)  # as a process training it holds it: not told to resume it beside that one
    try:
        page_now = write_report(copy).read_text(encoding="utf-8")
    finally:
        run_lock.release(held)
    assert "A process is training it now (its lock is held)" in page_now and "--resume" not in page_now
    assert "<b>status</b>: running" in page_now
    assert f"best epoch {metrics['best_epoch']} of 2<" in page  # config.yaml plans the 2 epochs done
    # killed between the final writes: metrics.json says complete, run.json (written last) does not (review 50g)
    (copy / "metrics.json").write_text(json.dumps({**metrics, "status": "complete"}))
    page_between = " ".join(write_report(copy).read_text(encoding="utf-8").split())
    assert "<b>status</b>: interrupted (no process trains it)" in page_between
    assert "This run has not finished" in page_between and f"--resume {copy}" in page_between
    from peerdistill.errors import CheckpointError
    from peerdistill.export import export_run

    with pytest.raises(CheckpointError, match="has not finished: name the model"):
        export_run(copy, model="best", out=tmp_path / "best.onnx")
    assert "ROC curves" in page and "these use the weights of its best epoch so far" in page


def test_the_compression_column_names_its_reference_teacher():
    from peerdistill.html_report.costs_html import costs_header

    costs = {"teacher1": {"compression": 1.0}, "teacher2": {"compression": 8.4}, "student1": {"compression": 18.2}}
    assert costs_header(costs)[-1] == "x fewer parameters than teacher1"
    assert costs_header({"student1": {}})[-1] == "CPU ms"  # no teacher: nothing to be smaller than


def test_the_cost_table_has_a_gpu_column_for_runs_trained_on_a_gpu():
    from peerdistill.html_report.costs_html import cost_rows, costs_header

    cpu_run = {"teacher": {"parameters": 1000, "macs": 2e6, "size_bytes": 4096, "cpu_latency_ms": 1.5, "compression": 1.0}}
    gpu_run = {"teacher": {**cpu_run["teacher"], "gpu_latency_ms": 0.25},
               "student1": {"parameters": 100, "macs": 2e5, "size_bytes": 512, "cpu_latency_ms": 0.5,
                            "gpu_latency_ms": 0.125, "compression": 10.0}}
    assert "GPU ms" not in costs_header(cpu_run) and len(cost_rows(cpu_run)[0]) == len(costs_header(cpu_run))
    header = costs_header(gpu_run)
    assert header[4:6] == ["CPU ms", "GPU ms"]
    assert [dict(zip(header, row))["GPU ms"] for row in cost_rows(gpu_run)] == ["0.250", "0.125"]


def test_class_and_setting_names_are_written_as_they_are():
    """A '[/x]' in a class name is not rich markup (it crashed eval --per-class) and a '|' does
    not split a Markdown cell (it shifted compare.md's columns)."""
    import io

    from rich.console import Console

    from peerdistill.report import comparison_markdown, per_class_rich_tables, results_table

    scores = {"student1": {"accuracy": 0.5, "recall_[/x]": 0.25, "recall_a|b": 0.75}}
    out = io.StringIO()
    console = Console(file=out, width=200)
    console.print(results_table("run [b]", scores, metrics=("accuracy",)))
    for table in per_class_rich_tables(scores, "run [b]"):
        console.print(table)
    assert "[/x]" in out.getvalue() and "run [b]" in out.getvalue() and "0.2500" in out.getvalue()
    rows = [{"setting": "kd|x", "model": "student1", "metric": m, "mean": v, "std": float("nan"), "n": 1,
             "values": [v], "runs": ["r"]} for m, v in scores["student1"].items()]
    markdown = comparison_markdown(rows, ["kd|x"], ["student1"], list(scores["student1"]), "# c\n")
    row = next(line for line in markdown.splitlines() if "0.7500" in line)
    assert row == "| kd\\|x | a\\|b | 0.7500 |"
    assert len(re.split(r"(?<!\\)\|", row)) == 5  # setting, class, student1: three cells


def test_the_summary_of_a_run_stopped_early_says_so_and_what_was_planned(tmp_path):
    from peerdistill.html_report.run_page import run_summary_html

    (tmp_path / "config.yaml").write_text("train: {epochs: 12, patience: 2}\nstudents: [{arch: cnn}]\n"
                                          "distill: {preset: independent}\n")
    metrics = {"status": "complete", "monitor": "ensemble/accuracy", "best_epoch": 7, "epochs": [{}] * 9,
               "stopped_early": True}
    page = run_summary_html(tmp_path, {}, metrics)
    assert "best epoch 7 of 9 (stopped early by train.patience; 12 planned)" in page
    assert "has not finished" not in page
    metrics["stopped_early"] = False
    assert "best epoch 7 of 9 (12 planned)" in run_summary_html(tmp_path, {}, metrics)
    # where the data came from and how it was split: what a reviewer asks first
    meta = {"data_spec": {"kind": "npz", "root": "data/pneumoniamnist.npz"}, "num_classes": 2, "input_shape": [1, 28, 28],
            "split_sizes": {"train": 4708, "val": 524, "test": 624}}
    assert ("<b>data</b>: npz from data/pneumoniamnist.npz, 2 classes, inputs [1, 28, 28]; train 4,708, val 524, "
            "test 624 samples") in run_summary_html(tmp_path, meta, metrics)


def test_a_settings_curve_runs_to_its_longest_seed_averaging_the_seeds_that_reached_each_epoch():
    from peerdistill.html_report.comparison_page import settings_curve_figure

    def seed(values):
        return {"epochs": [{"epoch": i + 1, "val/ensemble/accuracy": v} for i, v in enumerate(values)]}

    fig = settings_curve_figure({"kd": [seed([0.5, 0.7, 0.8]), seed([0.3, 0.5])]}, "ensemble", "accuracy")
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [1, 2, 3]
    assert list(line.get_ydata()) == pytest.approx([0.4, 0.6, 0.8])  # the third epoch: the seed that ran it


def test_a_reliability_diagram_plots_each_models_filled_bins_and_names_its_ece():
    from peerdistill.html_report.predictions_html import reliability_figure
    from peerdistill.metrics import classification_metrics

    # confidences 0.9 (right), 0.92 (wrong), 0.42 (right): two filled bins
    probs = {"student1": np.array([[0.9, 0.05, 0.05], [0.04, 0.04, 0.92], [0.3, 0.42, 0.28]])}
    y = np.array([0, 1, 1])
    axes = reliability_figure(probs, y).axes[0]
    line = axes.get_lines()[0]
    assert list(line.get_xdata()) == pytest.approx([0.42, 0.91]) and list(line.get_ydata()) == pytest.approx([1.0, 0.5])
    # each point's area by its bin's share of the samples (1 and 2 of 3): a bin of few weighs little
    assert list(axes.collections[0].get_sizes()) == pytest.approx([6 + 200 / 3, 6 + 400 / 3])
    ece = classification_metrics(probs["student1"], y)["ece"]
    assert ece == pytest.approx((abs(0.42 - 1) + 2 * abs(0.91 - 0.5)) / 3, abs=1e-6)
    assert line.get_label() == f"student1 (ECE {ece:.3f})"


@pytest.mark.parametrize("damage,message", [
    (lambda m: m["test_at_best"]["student2"].update(accuracy=float("inf")), "its test_at_best is not a mapping"),
    (lambda m: m["test_at_best"]["student1"].update(accuracy=True), "its test_at_best is not a mapping"),
    (lambda m: m["epochs"][0].update({"val/student1/accuracy": "abc"}), "epoch 1's val/student1/accuracy is 'abc', not a figure"),
    (lambda m: m["epochs"][1].pop("epoch"), "an epoch row lacks its epoch number"),
    (lambda m: m.update(monitor="accuracy"), r"its best_epoch or monitor \(MODEL/METRIC\) is of the wrong kind"),
    (lambda m: m.update(test_at_last="oops"), "its test_at_last is not a mapping"),  # the last epoch's scores too
])
def test_a_hand_edited_metrics_file_is_named_as_damaged(digits_run, tmp_path, capsys, damage, message):
    from peerdistill.cli import main

    copy = tmp_path / "edited"
    shutil.copytree(digits_run, copy)
    (copy / "report.html").unlink(missing_ok=True)  # another test's
    metrics = json.loads((copy / "metrics.json").read_text())
    damage(metrics)
    (copy / "metrics.json").write_text(json.dumps(metrics))  # json writes inf as Infinity, which it reads back
    assert main(["report", str(copy)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert re.search(rf"metrics.json' is damaged: {message}.*; restore it or train the run again", err), err
    assert not (copy / "report.html").exists()


def test_a_run_file_in_another_encoding_is_named(digits_run, tmp_path, capsys):
    from peerdistill.cli import main

    copy = tmp_path / "latin"
    shutil.copytree(digits_run, copy)
    text = (copy / "run.json").read_text(encoding="utf-8").replace('"0"', '"z\u00e9ro"', 1)
    (copy / "run.json").write_bytes(text.encode("latin-1"))  # as an editor saving in Latin-1 would
    assert main(["report", str(copy)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "run.json' is not UTF-8 text (invalid continuation byte" in err and "save it as UTF-8" in err


def test_a_run_file_missing_or_nested_past_pythons_limit_is_a_checkpoint_error(tmp_path):
    """read_json turns every way a file cannot be read back into one CheckpointError naming it:
    missing, and JSON nested deeper than Python's recursion limit (a RecursionError)."""
    from peerdistill.errors import CheckpointError
    from peerdistill.json_files import read_json

    with pytest.raises(CheckpointError, match=r"gone.json' does not exist"):
        read_json(tmp_path / "gone.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"deep.json' is not valid JSON .*the file is corrupt"):
        read_json(tmp_path / "deep.json")
    (tmp_path / "cut.json").write_text('{"a": [1,')  # cut short (a full disk, a killed write)
    with pytest.raises(CheckpointError, match=r"cut.json' is not valid JSON .*the file is corrupt"):
        read_json(tmp_path / "cut.json")
    (tmp_path / "ok.json").write_text('{"a": [1, NaN]}')
    assert read_json(tmp_path / "ok.json")["a"][0] == 1


def test_wrong_places_are_named_before_the_page_is_drawn(digits_run, tmp_path, capsys):
    from peerdistill.cli import main

    def refused(*args):
        assert main(["report", *map(str, args)]) == 2
        return " ".join(capsys.readouterr().err.split())

    assert f"'{tmp_path / 'nowhere'}' does not exist" in refused(tmp_path / "nowhere")
    runs = tmp_path / "runs"
    shutil.copytree(digits_run, runs / "a")
    said = refused(runs)
    assert f"holds runs (1: a) but no compare.csv: report one of them (peerdistill report {runs / 'a'})" in said
    assert "a comparison that was stopped goes on with the same compare command" in said  # (review 51f)
    (tmp_path / "notes.txt").write_text("mine")
    assert "notes.txt' is a file, not a folder" in refused(digits_run, "--out", tmp_path / "notes.txt" / "r.html")
    own = tmp_path / "mine.html"
    own.write_text("<html><title>my notes</title></html>")
    assert "mine.html' exists and is not a peerdistill report" in refused(digits_run, "--out", own)
    assert own.read_text() == "<html><title>my notes</title></html>"
    assert main(["report", str(digits_run), "--out", str(tmp_path / "r.html")]) == 0
    assert main(["report", str(digits_run), "--out", str(tmp_path / "r.html")]) == 0  # its own page it replaces
    # its own page edited since (notes added to it): not written over (review 47b)
    page = tmp_path / "r.html"
    edited = page.read_text().replace("</body>", "<p>MY PAPER NOTES</p></body>")
    page.write_text(edited)
    assert (f"'{page}' is a report edited since report wrote it: writing it again would lose the edits; move it away "
            "(or rename it), or give --out another name") in refused(digits_run, "--out", page)
    assert page.read_text() == edited
    # the page as written, its line endings made CRLF (git's autocrlf, a Windows share): not an edit, replaced
    page.write_bytes(edited.replace("<p>MY PAPER NOTES</p>", "").encode().replace(b"\n", b"\r\n"))
    assert main(["report", str(digits_run), "--out", str(page)]) == 0
    # a page without its digest (an earlier version's, or an editor dropped the tag): edits cannot be told, so kept
    import re as regex

    older = regex.sub(r'<meta name="peerdistill-digest" content="[0-9a-f]*">', "", page.read_text()).replace(
        "</body>", "<p>NOTES ON AN OLDER PAGE</p></body>")
    page.write_text(older)
    assert main(["report", str(digits_run), "--out", str(page)]) == 0
    assert "carries no digest of itself" in " ".join(capsys.readouterr().err.split())
    kept, = tmp_path.glob("r.earlier-*.html")
    assert kept.read_text() == older and "NOTES ON AN OLDER PAGE" not in page.read_text()


def test_a_folder_given_for_reports_keeps_another_runs_page(digits_run, tmp_path, capsys):
    """`report a --out pages/` then `report b --out pages/`: b's page would replace a's in silence."""
    from peerdistill.cli import main

    other = tmp_path / "other-run"
    shutil.copytree(digits_run, other)
    pages = tmp_path / "pages"
    assert main(["report", str(digits_run), "--out", str(pages)]) == 0
    first = (pages / "report.html").read_bytes()
    assert re.search(rb'<meta name="peerdistill-source" content="[0-9a-f]{16}">', first)  # (a digest of its place)
    assert main(["report", str(other), "--out", str(pages)]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert (f"'{pages / 'report.html'}' is the report of another folder (peerdistill run: r; or of this one, moved "
            f"since): this report would replace it; give this one a file name of its own (--out "
            f"{str(pages / 'other-run.html')!r}), or move that one away") in said
    assert (pages / "report.html").read_bytes() == first
    assert main(["report", str(other), "--out", str(pages / "other-run.html")]) == 0
    assert b"peerdistill-source" not in (pages / "other-run.html").read_bytes()  # (a file named: nothing to tell)
    assert main(["report", str(digits_run), "--out", str(pages)]) == 0  # its own page: replaced as before
    # a file named by the user is theirs to replace: the page of the run given
    assert main(["report", str(other), "--out", str(pages / "report.html")]) == 0
    assert b"peerdistill-source" not in (pages / "report.html").read_bytes()  # (the named file's page: other's)
    assert b"peerdistill-source" not in write_report(digits_run).read_bytes()  # (its own folder: none)


def test_a_run_whose_models_need_a_library_not_here_is_reported_without_predictions(digits_run, tmp_path):
    copy = tmp_path / "tv"
    shutil.copytree(digits_run, copy)
    meta = json.loads((copy / "run.json").read_text())
    meta["members"][1]["spec"] = {"arch": "torchvision.models:resnet18", "args": {}}  # missing here, or unfit
    (copy / "run.json").write_text(json.dumps(meta))
    page = write_report(copy).read_text(encoding="utf-8")
    assert "Predictions skipped: the saved models or the data could not be loaded again" in page
    assert "test accuracy" in page.lower() or "<table" in page  # the rest of the page is there


def test_costs_of_a_cohort_without_a_teacher_or_damaged_by_hand(digits_run, tmp_path):
    from peerdistill.html_report.costs_html import cost_rows, costs_header

    meta = json.loads((digits_run / "run.json").read_text())
    students = {k: {**c, "compression": None} for k, c in meta["costs"].items() if k != "teacher"}
    assert "x fewer parameters than teacher" not in " ".join(costs_header(students))
    assert len(cost_rows(students)[0]) == len(costs_header(students))
    copy = tmp_path / "costs"
    shutil.copytree(digits_run, copy)
    (copy / "report.html").unlink(missing_ok=True)
    meta["costs"]["student1"]["macs"] = None
    (copy / "run.json").write_text(json.dumps(meta))
    page = " ".join(write_report(copy).read_text(encoding="utf-8").split())
    assert "costs left out: run.json&#x27;s costs are damaged (model &#x27;student1&#x27; has macs None)" in page


@pytest.mark.parametrize("damage,message", [
    ({"task": "regression"}, "its task is 'regression': input should be 'classification', 'segmentation' or "
                             "'detection'"),
    ({"num_classes": "10"}, "its num_classes is '10': input should be a valid integer"),
    ({"num_classes": 0}, "its num_classes is 0: input should be greater than or equal to 1"),
    ({"data_stats": {"mean": [0.3]}}, "it lacks data_stats.std, which reading the run back needs"),
    ({"data_stats": {"mean": [0.3], "std": [0]}}, "its data_stats.std[0] is 0: input should be greater than 0"),
    ({"data_stats": {"mean": [0.3, 0.2], "std": [1.0]}}, "its data_stats: 2 mean(s) and 1 std(s), not one of each per "
                                                         "channel"),
    ({"data_info": "x"}, "its data_info is 'x': input should be a valid dictionary"),
    ({"data_spec": "x"}, "its data_spec is 'x': input should be a valid dictionary"),
    ({"input_shape": "8x8"}, "its input_shape is '8x8': input should be a valid list"),
])
def test_a_run_file_of_the_wrong_kind_is_named(digits_run, tmp_path, capsys, damage, message):
    from peerdistill.cli import main

    copy = tmp_path / "kind"
    shutil.copytree(digits_run, copy)
    (copy / "run.json").write_text(json.dumps({**json.loads((copy / "run.json").read_text()), **damage}))
    assert main(["report", str(copy)]) == 2
    assert f"run.json' is damaged: {message}; restore it or train the run again" in " ".join(
        capsys.readouterr().err.split())


def test_an_empty_cell_of_the_report_is_explained_under_its_table():
    from peerdistill.html_report.html_parts import esc, table_html
    from peerdistill.report import NOT_AVAILABLE_MEANS
    from peerdistill.report import fmt, pm

    cells = [fmt(float("nan")), pm(float("nan"), float("nan")), "n/a"]
    assert set(cells) == {"n/a"}  # the tables' and the comparison's undefined cells read alike
    explained = table_html(["model", "auc"], [["student1", fmt(float("nan"))], ["student2", "0.9000"]])
    assert explained.endswith(f'<p class="table-note">{esc(NOT_AVAILABLE_MEANS)}</p>')
    assert "class the split lacks" in NOT_AVAILABLE_MEANS
    plain = table_html(["model", "auc"], [["n/a", "0.9000"]])  # a row named n/a is no undefined figure
    assert "table-note" not in plain


def test_the_confusion_matrix_and_roc_figures_draw_the_counts_and_curves_by_hand():
    """The pictures' data, not only their files: rows of the matrix are the true classes; the ROC
    curve's area (in the legend) is the share of (positive, negative) score pairs ranked right,
    ties counting half, for two classes from the positive class's probability and for more the
    mean of that share over the classes, each from its own score (macro average, the table's auc:
    a micro-averaged curve had shown 0.75 beside the table's 0.97)."""
    import matplotlib.pyplot as plt

    from peerdistill.html_report.predictions_html import confusion_figure, roc_figure

    y, pred = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2])
    figure = confusion_figure(y, pred, ["a", "b", "c"])
    drawn = np.asarray(figure.axes[0].images[0].get_array())
    np.testing.assert_array_equal(drawn, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert figure.axes[0].get_ylabel() == "true" and figure.axes[0].get_xlabel() == "predicted"
    plt.close(figure)

    def ranked_right(positive, negative):
        pairs = [(a > b) + 0.5 * (a == b) for a in positive for b in negative]
        return sum(pairs) / len(pairs)

    from peerdistill.metrics import classification_metrics

    rng = np.random.default_rng(4)
    for k, decimals in ((2, 8), (3, 8), (5, 1)):  # (rounded to one decimal: many ties)
        labels = np.arange(40) % k
        p = rng.dirichlet(np.ones(k), size=40)
        p[np.arange(40), labels] += 0.3 * rng.random(40)  # better than chance, not perfect
        p = (p / p.sum(axis=1, keepdims=True)).round(decimals)
        if k == 2:
            expected = ranked_right(p[labels == 1, 1], p[labels == 0, 1])
        else:
            expected = np.mean([ranked_right(p[labels == c, c], p[labels != c, c]) for c in range(k)])
        assert abs(expected - classification_metrics(p, labels)["auc"]) < 1e-12  # the table's figure
        figure = roc_figure({"ensemble": p}, labels, k)
        legend = figure.axes[0].get_legend().get_texts()[0].get_text()
        assert f"area {expected:.3f}" in legend, (legend, expected)
        fpr, tpr = figure.axes[0].lines[0].get_data()
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= -1e-12) and (fpr[-1], tpr[-1]) == (1, 1)
        assert abs(np.trapezoid(tpr, fpr) - expected) < 1e-12  # the curve drawn has that area
        plt.close(figure)


def test_the_model_columns_go_teachers_students_best_student_then_ensemble():
    from peerdistill.report import model_order

    seen = ["ensemble", "student1", "teacher2", "best student", "student1@head1", "student2", "teacher1"]
    # teachers by name, students as first seen, the summary columns last; heads only in compare.csv
    assert model_order(seen) == ["teacher1", "teacher2", "student1", "student2", "best student", "ensemble"]
    # ten teachers or more: by number, not as text (teacher10 after teacher2)
    assert model_order([f"teacher{i}" for i in (10, 2, 1)]) == ["teacher1", "teacher2", "teacher10"]
    # a teacher the user named: a teacher by its role in the runs' metrics.json
    from peerdistill.report import teachers_named_in

    roles = [{"roles": {"radiologist": "teacher", "student1": "student"}}, {}, {"roles": {"teacher": "teacher"}}]
    assert teachers_named_in(roles) == {"radiologist", "teacher"}
    assert model_order(["ensemble", "student1", "radiologist", "teacher"], {"radiologist"}) == [
        "radiologist", "teacher", "student1", "ensemble"]


def test_a_comparison_cell_names_the_runs_only_when_some_gave_no_number():
    from peerdistill.report import seeds_cell

    def row(values):
        finite = [v for v in values if v == v]
        return {"mean": float(np.mean(finite)) if finite else math.nan,
                "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan,
                "n": len(finite), "values": values}

    assert seeds_cell(row([0.5, 0.7, 0.9])) == "0.7000 ± 0.2000"  # all runs gave one: no count
    assert seeds_cell(row([0.5, math.nan, 0.9])) == "0.7000 ± 0.2828 (2 of 3 runs)"
    assert seeds_cell(row([math.nan, math.nan])) == "n/a"  # none did: n/a, no "(0 of 2 runs)"
    # four decimals never round a figure that is not 0 or 1 to one (review 55d: 1.0000 ± 0.0000 for an AUC of
    # 0.99995 ± 0.00005 read as a perfect score without spread)
    assert seeds_cell(row([0.9999, 1.0])) == "0.99995 ± 0.0001"
    assert seeds_cell(row([1.0, 1.0])) == "1.0000 ± 0.0000"  # truly perfect, truly no spread
    assert seeds_cell(row([0.00001, 0.00003])) == "0.00002 ± 0.00001"
    from peerdistill.report import fmt

    assert (fmt(0.99996), fmt(1.0), fmt(0.1234), fmt(-0.00002), fmt(0.5, 2)) == ("0.99996", "1.0000", "0.1234",
                                                                               "-0.00002", "0.50")


def test_per_class_comparison_rows_give_each_setting_its_own_figures():
    from peerdistill.report import comparison_per_class_rows

    def row(setting, cls, values):
        return {"setting": setting, "model": "student1", "metric": f"recall_{cls}", "values": values,
                "n": len(values), "mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))}

    rows = [row("independent", "a", [0.1, 0.3]), row("independent", "b", [0.2, 0.4]),
            row("kd", "a", [0.5, 0.7]), row("kd", "b", [0.6, 1.0])]
    sd = f"{np.std([0.1, 0.3], ddof=1):.4f}"
    assert comparison_per_class_rows(rows, ["independent", "kd"], ["student1"], "recall", ["a", "b"]) == [
        ["independent", "a", f"0.2000 ± {sd}"], ["independent", "b", f"0.3000 ± {sd}"],
        ["kd", "a", f"0.6000 ± {sd}"], ["kd", "b", f"0.8000 ± {np.std([0.6, 1.0], ddof=1):.4f}"]]


def test_a_markdown_table_has_a_separator_cell_per_column():
    from peerdistill.report import markdown_table

    # GitHub draws no table when the separator row has fewer cells than the header
    assert markdown_table(["setting", "student1", "ensemble"], [["kd", "0.9000", "0.9100"]]) == (
        "| setting | student1 | ensemble |\n|---|---:|---:|\n| kd | 0.9000 | 0.9100 |")
    assert markdown_table(["setting", "class", "student1"], [["kd", "a", "0.5"]], left=2).splitlines()[1] == (
        "|---|---|---:|")


def test_the_calibration_table_puts_each_figure_under_its_own_column():
    from peerdistill.report import calibration_table

    table = calibration_table({"student1": {"cal_temperature": 1.23456, "ece": 0.1, "cal_ece": 0.02,
                                            "brier": 0.3, "cal_brier": 0.25}}, "t")
    cells = {column.header: column._cells[0] for column in table.columns}
    assert cells == {"model": "student1", "temperature": "1.235", "ece": "0.1000", "ece tempered": "0.0200",
                     "brier": "0.3000", "brier tempered": "0.2500"}


def test_an_interval_cell_gives_the_low_end_first():
    from peerdistill.report import interval_table

    values = {"dice": 0.8, "ci95_low_dice": 0.7, "ci95_high_dice": 0.85, "ci95_resamples_dice": 95}
    table = interval_table({"student1": values}, "t", ("dice",))
    assert table.columns[1]._cells[0] == "0.8000 [0.7000, 0.8500] (95 resamples)"


def test_macs_are_multiply_accumulates_counted_by_hand():
    from torch import nn

    from peerdistill.costs import count_macs

    # a linear layer of 8 -> 4 does 8 x 4 multiply-accumulates; a 3x3 conv of 2 -> 5 channels on
    # an 6x6 image (padding 1) does 5 x 6 x 6 x (2 x 3 x 3) of them; one input, not a batch
    assert count_macs(nn.Linear(8, 4), (8,)) == 8 * 4
    assert count_macs(nn.Conv2d(2, 5, 3, padding=1), (2, 6, 6)) == 5 * 6 * 6 * 2 * 3 * 3


def test_attention_is_counted_as_its_matrix_products_whatever_kernel_would_run():
    """A transformer block in eval mode takes a fused fast path, and scaled dot-product attention
    a fused kernel, which torch's counter does not count (a ViT read 12x too cheap): by hand, per
    token, the q/k/v and output projections (4 d^2), the feed-forward (2 d f), and the scores and
    their weighted sum over n tokens (2 n d). The fast-path setting is as before afterwards."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from peerdistill.costs import count_macs

    n, d, f = 5, 16, 32
    block = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 2, f, batch_first=True), 1, enable_nested_tensor=False)
    assert count_macs(block, (n, d)) == n * (4 * d * d + 2 * d * f) + 2 * n * n * d
    assert torch.backends.mha.get_fastpath_enabled()

    class Attention(nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x)

    assert count_macs(Attention(), (2, n, 8)) == 2 * (2 * n * n * 8)  # two heads of 8


def test_compression_is_the_reference_parameters_over_each_models_frozen_or_not():
    from torch import nn

    from peerdistill.costs import model_costs

    teacher = nn.Sequential(nn.Linear(8, 32), nn.Linear(32, 4))  # 8*32+32 + 32*4+4 = 420 parameters
    teacher.requires_grad_(False)  # a frozen teacher ships all its weights all the same
    student = nn.Linear(8, 4)  # 36 parameters
    costs = model_costs({"teacher": teacher, "student1": student}, (8,), {}, reference="teacher")
    assert costs["teacher"]["parameters"] == 420 and costs["student1"]["parameters"] == 36
    assert costs["student1"]["compression"] == round(420 / 36, 2) == 11.67  # times smaller than the teacher
    assert costs["teacher"]["compression"] == 1.0


def test_latency_is_the_median_of_the_timed_passes_after_warm_up(monkeypatch):
    import torch
    from torch import nn

    from peerdistill import costs

    clock = [0.0]
    # each timed forward pass takes the next of these times (ms) on a fake clock: 3 slow warm-up
    # passes, then 10 timed ones with one outlier; the untimed passes before each (which warm the
    # caches) take 1000 ms, never counted
    durations = iter([t for timed in [100.0, 100.0, 100.0, 1, 2, 3, 4, 50, 5, 6, 7, 8, 9]
                      for t in [1000.0] * costs.WARM_PASSES + [timed]])

    class Ticking(nn.Module):
        def forward(self, x):
            clock[0] += next(durations) / 1000
            return x

    monkeypatch.setattr(costs.time, "perf_counter", lambda: clock[0])
    assert costs.latencies_ms({"m": Ticking()}, (1,), torch.device("cpu"), repeats=10)["m"] == pytest.approx(
        float(np.median([1, 2, 3, 4, 50, 5, 6, 7, 8, 9])))  # 5.5: neither the warm-up nor the outlier's mean


def test_small_models_are_timed_until_their_passes_add_up_to_the_time_asked(monkeypatch):
    # ten passes of a 3 ms model gave one of two identical students half the other's median: a run
    # times rounds until the timed passes of all its models add up to half a second
    import torch
    from torch import nn

    from peerdistill import costs

    clock, timed_passes = [0.0], []

    class Ticking(nn.Module):
        def forward(self, x):
            clock[0] += 0.004  # 4 ms each pass (timed or not)
            timed_passes.append(clock[0])
            return x

    monkeypatch.setattr(costs.time, "perf_counter", lambda: clock[0])
    costs.latencies_ms({"a": Ticking(), "b": Ticking()}, (1,), torch.device("cpu"), repeats=10, min_seconds=0.2)
    passes = costs.WARM_PASSES + 1
    assert len(timed_passes) == (3 + 25) * 2 * passes  # 0.2 s of 8 ms rounds: 25 timed rounds after 3 warm-up ones
    timed_passes.clear()
    costs.latencies_ms({"a": Ticking()}, (1,), torch.device("cpu"), repeats=10, min_seconds=100.0)
    assert len(timed_passes) == (3 + costs.MAX_ROUNDS) * passes  # at most MAX_ROUNDS
    timed_passes.clear()
    costs.latencies_ms({"a": Ticking()}, (1,), torch.device("cpu"), repeats=10)
    assert len(timed_passes) == (3 + 10) * passes  # none asked: the repeats alone


def test_models_are_timed_in_turns_so_a_burst_of_other_work_slows_each_alike(monkeypatch):
    """Two identical models and a machine busy for a stretch (passes 4x slower): timed one after
    the other, the first would take the whole burst; in turns, a few passes each per round (the
    last timed, the ones before to have the model's weights in the caches the other's passes
    took), both take half of it and their medians agree."""
    import torch
    from torch import nn

    from peerdistill import costs

    clock, order = [0.0], []
    busy = set(range(3, 3 + 7))  # the first 7 timed rounds: a burst of other work

    class Ticking(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            clock[0] += (4.0 if len(order) // (2 * passes) in busy else 1.0) / 1000  # a round: each model's passes
            order.append(self.name)
            return x

    passes = costs.WARM_PASSES + 1
    monkeypatch.setattr(costs.time, "perf_counter", lambda: clock[0])
    times = costs.latencies_ms({"a": Ticking("a"), "b": Ticking("b")}, (1,), torch.device("cpu"), repeats=15)
    assert order == (["a"] * passes + ["b"] * passes) * 18, "3 warm-up rounds, then 15 timed ones, in turns"
    # 7 of each one's 15 timed passes were slowed (one after the other, 14 of the first's): both medians idle
    assert times == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_a_runs_cost_columns_give_parameters_mmacs_and_compression():
    from peerdistill.report import results_table

    costs = {"teacher": {"parameters": 1_234_567, "macs": 2_345_678, "compression": 1.0},
             "student1": {"parameters": 105_802, "macs": 123_456, "compression": round(1_234_567 / 105_802, 2)}}
    table = results_table("t", {m: {"accuracy": 0.5} for m in costs}, costs=costs)
    cells = {column.header: column._cells for column in table.columns}
    assert cells["params"] == ["1,234,567", "105,802"] and cells["MMACs"] == ["2.35", "0.123"]  # (under 1: 3 digits)
    assert cells["x smaller"] == ["1.00", "11.67"]  # 1234567 / 105802 = 11.668...
    # of several teachers, the one it is against is named (review 56b: the first, unsaid)
    named = results_table("t", {m: {"accuracy": 0.5} for m in costs}, costs=costs, smaller_than="teacher1")
    assert [column.header for column in named.columns][3] == "x smaller than teacher1"


def test_the_test_table_gives_the_best_epochs_figures_and_names_that_epoch_and_the_test_split(tmp_path):
    from peerdistill.html_report.run_page import test_table_section

    # best epoch 3 of 5: its test figures differ from the last epoch's, and val and test differ in size
    metrics = {"status": "complete", "monitor": "ensemble/accuracy", "best_epoch": 3, "epochs": [{"epoch": e}
                                                                                                for e in range(1, 6)],
               "test_at_best": {"ensemble": {"accuracy": 0.8125}}, "test_at_last": {"ensemble": {"accuracy": 0.6875}}}
    meta = {"task": "classification", "num_classes": 2, "split_sizes": {"train": 50, "val": 20, "test": 1200},
            "members": []}
    page = test_table_section(meta, metrics)
    assert "<td>0.8125</td>" in table_row(page, "ensemble") and "0.6875" not in page
    assert "Test split (1,200 samples), with the weights of the best validation epoch (3, by ensemble/accuracy)" \
        in page
    # a monitor n/a in every epoch: the last epoch stood in, said so, here and in the run's facts
    undefined = {**metrics, "best_epoch": 5, "monitor_undefined": True}
    assert ("with the weights of the last epoch (5; validation ensemble/accuracy was n/a in every epoch, so none was "
            "chosen by it)") in test_table_section(meta, undefined)
    from peerdistill.html_report.run_page import run_summary_html

    facts = run_summary_html(tmp_path, {**meta, "data_spec": {"kind": "digits"}}, undefined)
    assert "n/a in every epoch, so the last one stood in (5 of 5)" in facts and "best epoch" not in facts
    assert "Warnings when training" not in facts
    # the warnings training gave as it began (run.json) and as it ended (metrics.json), each under its own heading
    said = run_summary_html(tmp_path, {**meta, "data_spec": {"kind": "digits"}, "training_warnings": ["a <dup>"]},
                            {**undefined, "ending_warnings": ["val x was n/a", 3]})
    assert ("<p><b>Warnings when training began</b>:</p>\n<ul>\n<li>a &lt;dup&gt;</li>\n</ul><p><b>Warnings when "
            "training ended</b>:</p>\n<ul>\n<li>val x was n/a</li>\n</ul>") in said
    for damaged in (3, "one warning", {"a": 1}):  # a file edited by hand: no list, nothing listed (review 48g)
        page = run_summary_html(tmp_path, {**meta, "data_spec": {"kind": "digits"}}, {**undefined, "ending_warnings": damaged})
        assert "Warnings when training ended" not in page
    # the distillation line: a cwd edge's temperature, and a model built in Python
    edges = [{"source": "teacher", "target": "student1", "kind": "cwd", "weight": 2.0, "temperature": 4.0},
             {"source": "teacher", "target": "student1", "kind": "at", "weight": 1.0, "temperature": 1.0,
              "source_layer": "a", "target_layer": "b"}]
    members = [{"name": "teacher", "role": "teacher", "spec": None, "parameters": 10}]
    page = run_summary_html(tmp_path, {**meta, "edges": edges, "members": members, "data_spec": {"kind": "digits"}},
                            undefined)
    assert ("<li><b>distillation</b>: edges given in Python; 2 knowledge edge(s): student1 &lt;- teacher (cwd, weight 2, "
            "T 4), student1 &lt;- teacher (at b &lt;- a, weight 1)</li>") in page
    assert "<li><b>models</b>: teacher (teacher; built in Python; 10 parameters; trained online)</li>" in page


def test_the_monitor_curve_marks_the_best_epoch_and_draws_every_model():
    from matplotlib import pyplot as plt

    from peerdistill.html_report.run_page import monitor_curve_figure

    epochs = [{"epoch": e, "val/student1/accuracy": a, "val/ensemble/accuracy": b}
              for e, a, b in ((1, 0.5, 0.6), (2, 0.7, 0.75), (3, 0.6, 0.7))]
    fig = monitor_curve_figure(epochs, "accuracy", 2)
    lines = fig.axes[0].get_lines()
    curves = {line.get_label(): list(line.get_ydata()) for line in lines if line.get_label() in ("student1", "ensemble")}
    assert curves == {"student1": [0.5, 0.7, 0.6], "ensemble": [0.6, 0.75, 0.7]}
    marks = [line for line in lines if line.get_linestyle() == "--"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [2, 2]  # at epoch 2 itself
    plt.close(fig)


def test_segmentation_panels_colour_class_k_with_its_own_colour_the_report_lists():
    from matplotlib import pyplot as plt
    from matplotlib.colors import to_hex

    from peerdistill.html_report.predictions_html import CLASS_COLORS, segmentation_figure

    truth = np.array([[[0, 1], [2, 255]]])
    fig = segmentation_figure(np.zeros((1, 2, 2)), truth, np.array([[[2, 1], [0, 0]]]), 3)
    for ax in fig.axes[1:3]:  # truth and prediction
        image = ax.get_images()[0]
        assert [to_hex(image.cmap(image.norm(k))) for k in range(3)] == CLASS_COLORS[:3]  # 0 the background's black
    plt.close(fig)
    # where the truth ignores (255: outside a field of view), the prediction is not drawn either
    drawn = fig.axes[2].get_images()[0].get_array()
    assert drawn.mask.tolist() == [[False, False], [False, True]]


def test_a_comparisons_latency_is_the_median_over_its_runs():
    from peerdistill.html_report.comparison_page import _median_latencies

    runs = [{"s": {"parameters": 10, "cpu_latency_ms": ms}} for ms in (1.0, 2.0, 9.0)]
    assert _median_latencies(runs)["s"]["cpu_latency_ms"] == 2.0  # not the mean, 4.0: one slow run is noise
    # an ensemble summed by a run of an earlier version beside ones that timed it: the timed ones (review 53j)
    mixed = [{"ensemble": {"cpu_latency_ms": 0.4, "latency_summed": True}}, {"ensemble": {"cpu_latency_ms": 0.19}},
             {"ensemble": {"cpu_latency_ms": 0.21}}]
    assert _median_latencies(mixed)["ensemble"] == {"cpu_latency_ms": 0.2}
    summed = [{"ensemble": {"cpu_latency_ms": ms, "latency_summed": True}} for ms in (0.4, 0.5)]
    assert _median_latencies(summed)["ensemble"] == {"cpu_latency_ms": 0.45, "latency_summed": True}


def test_the_roc_cross_sits_at_the_ensembles_false_positive_rate_and_sensitivity():
    from matplotlib import pyplot as plt

    from peerdistill.html_report.predictions_html import roc_figure

    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    fig = roc_figure({"ensemble": p}, y, 2, {"ensemble": {"specificity": 0.8, "sensitivity": 0.7}})
    cross = [line for line in fig.axes[0].get_lines() if line.get_marker() == "X"]
    assert len(cross) == 1 and list(cross[0].get_xdata()) == [pytest.approx(0.2)]  # 1 - specificity
    assert list(cross[0].get_ydata()) == [0.7]
    plt.close(fig)


def test_confusion_counts_over_half_the_largest_are_written_in_white():
    from matplotlib import pyplot as plt

    from peerdistill.html_report.predictions_html import confusion_figure

    y, pred = np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 0, 1, 1, 0])  # counts [[3, 1], [1, 1]]
    fig = confusion_figure(y, pred, ["a", "b"])
    colours = {text.get_text(): text.get_color() for text in fig.axes[0].texts}
    assert colours == {"3": "white", "1": "black"}  # 3 > 3 / 2; 1 is not
    plt.close(fig)


def test_detection_samples_draw_true_boxes_white_and_predicted_ones_in_their_class_colour(monkeypatch):
    import torch
    from matplotlib.colors import to_hex

    import importlib

    from peerdistill.html_report import predictions_html

    evaluate = importlib.import_module("peerdistill.engine.evaluate")  # the module, not the function of its name
    found = {"boxes": torch.tensor([[1.0, 1, 5, 5], [2, 2, 6, 6]]), "scores": torch.tensor([0.9, 0.2]),
             "labels": torch.tensor([1, 0])}
    monkeypatch.setattr(evaluate, "predict", lambda cohort, task, x: {"ensemble": [found]})
    drawn = []
    monkeypatch.setattr(predictions_html, "figure_html", lambda fig, caption: drawn.append(fig) or "")
    sample = (torch.zeros(1, 8, 8), torch.tensor([[0.0, 0, 0, 4, 4], [-1, 0, 0, 0, 0]]))
    predictions_html.detection_parts(None, None, [sample], {"num_classes": 2, "class_names": ["cat", "dog"]})
    ax = drawn[0].axes[0]
    boxes = [(p.get_x(), p.get_y(), p.get_width(), to_hex(p.get_edgecolor())) for p in ax.patches]
    # the true box of class 0 in white; padding (-1) and the box under 0.3 left out; class 1 in
    # CLASS_COLORS[2] (CLASS_COLORS[0] is the background's black)
    # (drawn half a pixel up and left: imshow centres pixel i on i, so its left edge is at i - 0.5)
    assert boxes == [(-0.5, -0.5, 4.0, "#ffffff"), (0.5, 0.5, 4.0, predictions_html.CLASS_COLORS[2])]
    assert predictions_html.CLASS_COLORS[2] == "#e69f00"  # Okabe-Ito's orange, eval's pictures' class 2 colour
    assert [t.get_text() for t in ax.texts] == ["dog 0.90"] and ax.get_title() == ""
    assert [t.get_text() for t in drawn[0].legends[0].get_texts()] == ["dog"]  # the colour key (review 52h)
    assert ax.texts[0].get_va() == "top"  # a box at the top edge: its label inside it, not cut off
    # three pictured frames of a one-class detector, named by their files (review 52h: the class names were
    # indexed by frame, a crash; titles of classes)
    drawn.clear()
    monkeypatch.setattr(evaluate, "predict", lambda cohort, task, x: {"ensemble": [found] * 3})
    predictions_html.detection_parts(None, None, [sample] * 3, {"num_classes": 2, "class_names": ["cat", "dog"]},
                                     names=["a.png", "b.png", "c.png"])
    assert [ax.get_title() for ax in drawn[0].axes] == ["a.png", "b.png", "c.png"]
    assert [t.get_text() for t in drawn[0].axes[2].texts] == ["dog 0.90"]
    # from the 8th class on too, the page colours a box as eval's pictures do, never as the background
    # (class 7 was drawn black: review 44a)
    from peerdistill.pictures import PALETTE, box_colour_index

    for label in range(20):
        assert box_colour_index(label) != 0
        assert predictions_html.CLASS_COLORS[box_colour_index(label)] == "#{:02x}{:02x}{:02x}".format(
            *PALETTE[box_colour_index(label)])


def _overlap(a, b):
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def test_detection_labels_of_boxes_sharing_a_corner_do_not_overlap_and_stay_in_the_picture():
    """Review 52h: two boxes from one corner had their labels drawn over one another ("ellipse0.4949");
    a box at the top edge had its label above the picture, cut off."""
    from peerdistill.html_report.predictions_html import label_places

    corners, sizes = [(19.5, 29.5)] * 3, [(20.0, 6.0)] * 3  # three boxes from one corner, labels 20 x 6 pixels
    places = label_places(corners, sizes, 64, 64)
    rects = [(x, y, w, h) for (x, y), (w, h) in zip(places, sizes)]
    assert places[0] == (19.5, 23.5)  # the first above its box, on its edge
    assert not any(_overlap(a, b) for i, a in enumerate(rects) for b in rects[i + 1:])
    assert all(-0.5 <= y and y + 6 <= 63.5 for _, y in places)
    # a box at the top edge: its label inside it, within the picture; one at the right edge moved in
    (x, y), = label_places([(9.5, 1.5)], [(20.0, 6.0)], 64, 64)
    assert (x, y) == (9.5, 1.5)
    (x, y), = label_places([(59.5, 30.5)], [(20.0, 6.0)], 64, 64)
    assert x + 20 <= 63.5 and y == 24.5
    # two boxes at the top edge sharing their corner: the second label below the first, both in the picture
    places = label_places([(0.5, -0.5), (0.5, -0.5)], [(20.0, 6.0)] * 2, 64, 64)
    assert places == [(0.5, -0.5), (0.5, 5.5)]
    # a corner low in the picture: a crowded label goes up, not out of the picture
    places = label_places([(0.5, 60.5)] * 3, [(20.0, 6.0)] * 3, 64, 64)
    rects = [(x, y, 20.0, 6.0) for x, y in places]
    assert not any(_overlap(a, b) for i, a in enumerate(rects) for b in rects[i + 1:])
    assert all(-0.5 <= y and y + 6 <= 63.5 for _, y in places)


def test_detection_panels_labels_drawn_apart_in_the_picture_with_a_key_per_class(monkeypatch):
    import importlib

    import torch

    from peerdistill.html_report import predictions_html

    evaluate = importlib.import_module("peerdistill.engine.evaluate")
    # a large image (labels tens of pixels high): boxes sharing a corner, one at the top edge, two classes
    found = {"boxes": torch.tensor([[100.0, 200, 300, 400], [100, 200, 250, 350], [50, 12, 150, 100]]),
             "scores": torch.tensor([0.9, 0.49, 0.8]), "labels": torch.tensor([0, 0, 1])}
    monkeypatch.setattr(evaluate, "predict", lambda cohort, task, x: {"ensemble": [found]})
    drawn = []
    monkeypatch.setattr(predictions_html, "figure_html", lambda fig, caption: drawn.append(fig) or "")
    sample = (torch.zeros(3, 512, 512), torch.tensor([[-1.0, 0, 0, 0, 0]]))
    predictions_html.detection_parts(None, None, [sample], {"num_classes": 2, "class_names": ["ellipse", "square"]})
    fig = drawn[0]
    ax, renderer = fig.axes[0], fig.canvas.get_renderer()
    extents = [t.get_window_extent(renderer) for t in ax.texts]
    assert [t.get_text() for t in ax.texts] == ["ellipse 0.90", "ellipse 0.49", "square 0.80"]
    assert not any(a.overlaps(b) for i, a in enumerate(extents) for b in extents[i + 1:])
    inside = ax.get_window_extent(renderer)
    assert all(inside.y0 - 0.5 <= e.y0 and e.y1 <= inside.y1 + 0.5 for e in extents)  # none cut off at the top
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ellipse", "square"]  # a key per class drawn


def test_a_runs_cost_row_gives_the_file_size_in_kib():
    from peerdistill.html_report.costs_html import cost_rows

    costs = {"s": {"parameters": 1234, "macs": 2_500_000, "size_bytes": 3072, "cpu_latency_ms": 1.23456}}
    assert cost_rows(costs) == [["s", "1,234", "2.50", "3.0", "1.235"]]  # 3072 bytes = 3.0 KiB (1024 bytes each)


def test_a_run_without_metrics_json_is_told_finished_or_not_by_its_run_json(tmp_path):
    from peerdistill import run_lock
    from peerdistill.run_files import RESUME_FILE

    # (review 55t: a run with a checkpoint, or one no process trains, read as "not finished its first epoch yet")
    for name, status, said, held, checkpoint in (
            ("done", "complete", "is a finished run without its metrics.json", False, False),
            ("training", "running", "has no metrics.json: the run has not finished its first epoch yet", True, False),
            ("killed", "running", "has no metrics.json: the run ended in its first epoch (no process trains it)",
             False, False),
            ("removed", "running", "has no metrics.json though it kept a checkpoint (the file was removed): continue "
                                   "it with peerdistill train --resume", False, True)):
        run = tmp_path / name
        run.mkdir()
        (run / "run.json").write_text(json.dumps({"task": "classification", "num_classes": 2, "input_shape": [1, 4, 4],
                                                  "members": [], "status": status}))
        if checkpoint:
            (run / RESUME_FILE).parent.mkdir(parents=True)
            (run / RESUME_FILE).write_bytes(b"checkpoint")
        lock = run_lock.hold(run) if held else None
        try:
            with pytest.raises(RunDirError, match=re.escape(said)):
                write_report(run)
        finally:
            run_lock.release(lock)


def test_characters_the_figures_font_lacks_are_said_once_in_words():
    # matplotlib warned once per missing character, pointing at a line of peerdistill's; under
    # PYTHONWARNINGS=error its plain UserWarning ended the report command with a traceback
    import warnings

    from peerdistill.errors import PeerdistillWarning
    from peerdistill.html_report.writing import _glyphs_said_once

    def held(message, category=UserWarning):
        return warnings.WarningMessage(category(message), category, "html_parts.py", 69)

    kept = held("the test split lacks a class", PeerdistillWarning)
    said = _glyphs_said_once([held("Glyph 20013 (\\N{CJK UNIFIED IDEOGRAPH-4E2D}) missing from font(s) DejaVu Sans."),
                              kept, held("Glyph 25991 (\\N{CJK UNIFIED IDEOGRAPH-6587}) missing from font(s) DejaVu Sans."),
                              held("Glyph 20013 (\\N{CJK UNIFIED IDEOGRAPH-4E2D}) missing from font(s) DejaVu Sans.")])
    assert said[0] is kept and len(said) == 2 and said[1].category is PeerdistillWarning
    assert str(said[1].message).startswith("the figures' font has no glyph for '中', '文': names holding them are "
                                           "drawn with boxes in their place")
    assert _glyphs_said_once([kept]) == [kept]


def test_another_librarys_warning_made_an_error_is_one_line_and_exit_code_2(monkeypatch, capsys):
    import warnings

    from peerdistill.cli import arguments, main

    def warns(ns):
        warnings.warn("Glyph 20013 missing from font(s) DejaVu Sans.", UserWarning)
        return 0

    monkeypatch.setattr(arguments, "cmd_presets", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["presets"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Glyph 20013 missing from font(s) DejaVu Sans. (a warning, raised as an "
                          "error by Python's warnings filter") and "Traceback" not in err


def test_a_one_student_run_page_says_its_ensemble_is_that_student_and_what_the_columns_mean(tmp_path):
    """The console said 'ensemble' is the one student; the page called it the student ensemble.
    A page read alone defines its columns (segmentation's dice and f1 read as rival figures)."""
    from peerdistill.html_report.costs_html import costs_header
    from peerdistill.html_report.predictions_html import ensemble_words
    from peerdistill.html_report.run_page import test_table_section

    one = {"task": "segmentation", "members": [{"name": "teacher", "role": "teacher"},
                                               {"name": "student1", "role": "student"}]}
    metrics = {"best_epoch": 2, "monitor": "ensemble/dice",
               "test_at_best": {m: {"dice": 0.49, "f1": 0.53, "hd95": 7.5, "missed": 0.1}
                                for m in ("teacher", "student1", "ensemble")}}
    page = test_table_section(one, metrics)
    assert "one student: &#x27;ensemble&#x27; is student1 alone (an ensemble needs two or more)" in page
    assert ("f1: the Dice of the split&#x27;s pixels pooled (one figure for the whole split, the DRIVE "
            "convention)") in page and "missed: the share of images holding a foreground class" in page
    assert ensemble_words(one) == "student1 (the one student)"
    two = {**one, "members": [*one["members"], {"name": "student2", "role": "student"}]}
    assert "alone" not in test_table_section(two, metrics) and ensemble_words(two) == "the student ensemble"
    costs = {"teacher": {"compression": 1.0}}
    assert costs_header(costs, "/patch (32x32)")[2] == "MMACs/patch (32x32)" and costs_header(costs)[2] == "MMACs"


def test_segmentation_samples_say_which_colour_is_which_class():
    import matplotlib.pyplot as plt

    from peerdistill.html_report.predictions_html import CLASS_COLORS, segmentation_figure

    masks = np.zeros((2, 8, 8), dtype=np.int64)
    masks[:, 2:5, 2:5] = 1
    masks[:, 6:, 6:] = 2
    figure = segmentation_figure(np.zeros((2, 8, 8)), masks, masks, 3, ["background", "polyp", "instrument"])
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["background", "polyp", "instrument"]
    from matplotlib.colors import to_hex

    assert [to_hex(h.get_facecolor()) for h in legend.legend_handles] == CLASS_COLORS[:3]
    plt.close(figure)


def test_comparison_charts_tell_models_apart_by_marker_and_say_which_way_is_better():
    from matplotlib import pyplot as plt

    from peerdistill.html_report.comparison_page import comparison_figure

    rows = [{"setting": "kd", "model": m, "metric": metric, "values": [0.1, 0.2], "mean": 0.15, "std": 0.05}
            for m in ("student1", "ensemble") for metric in ("ece", "accuracy")]
    for metric, better in (("ece", "lower"), ("accuracy", "higher")):
        fig = comparison_figure(rows, ["kd"], ["student1", "ensemble"], metric)
        assert fig.axes[0].get_title() == f"test {metric} per setting (mean ± std over runs; {better} is better)"
        markers = [line.get_marker() for line in fig.axes[0].get_lines() if line.get_marker() not in ("None", "_")]
        assert len(set(markers)) == 2, markers
        plt.close(fig)


def test_roc_curves_of_a_test_split_lacking_a_class_are_skipped_saying_why(monkeypatch):
    # the macro curve of three classes, one absent, was NaN everywhere: "area nan", and a warning per model
    import types

    from peerdistill.html_report import predictions_html

    y = np.array([0, 1, 0, 1, 0, 1])
    probs = {"ensemble": np.random.default_rng(0).dirichlet(np.ones(3), size=6)}
    monkeypatch.setattr(predictions_html, "split_probabilities", lambda *a, **k: (probs, y))
    captions = []
    monkeypatch.setattr(predictions_html, "figure_html", lambda fig, caption: captions.append(caption) or "")
    parts = predictions_html.classification_parts(None, None, types.SimpleNamespace(test=None),
                                                  {"num_classes": 3, "class_names": ["a", "b", "c"]}, None, 0.5)
    assert any("ROC curves skipped: the test split holds no sample of c, whose one-vs-rest curves are undefined"
               in part for part in parts)
    assert not any(caption.startswith("ROC") for caption in captions) and captions[-1].startswith("reliability")


def test_the_warnings_training_began_with_are_kept_in_run_json_and_on_the_page(tmp_path):
    """A page read alone said nothing of the validation images identical to training ones (or
    near-copies) that training warned of: run.json keeps them, and the summary lists them."""
    from peerdistill import ClassificationTask, Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.errors import PeerdistillWarning
    from peerdistill.models import SmallCNN
    from tests.conftest import _blobs

    (x, y), (xv, yv), (xt, yt) = (_blobs(n, s) for n, s in ((96, 0), (32, 1), (32, 2)))
    xv[:2], yv[:2] = x[:2], y[:2]
    trainer = Trainer(Cohort.from_modules([SmallCNN(1, 3, width=4), SmallCNN(1, 3, width=4)]), KnowledgeGraph([]),
                      ClassificationTask(3), train=TrainSpec(epochs=1, batch_size=32), run_dir=tmp_path / "r", progress=False)
    with pytest.warns(PeerdistillWarning, match="2 of 32 validation inputs are identical to training inputs"):
        trainer.fit(DataSplits.from_arrays(x, y, xv, yv, xt, yt))
    said = json.loads((tmp_path / "r" / "run.json").read_text())["training_warnings"]
    assert len(said) == 1 and said[0].startswith("2 of 32 validation inputs are identical to training inputs")
    page = " ".join(write_report(tmp_path / "r").read_text(encoding="utf-8").split())
    assert "<b>Warnings when training began</b>:</p> <ul> <li>2 of 32 validation inputs are identical" in page


def test_a_comparison_figure_of_one_run_per_setting_draws_no_spread_and_says_so():
    """Review 50h: one seed per setting drew bars of no width under a title of mean ± std."""
    import matplotlib.pyplot as plt

    from peerdistill.html_report.comparison_page import comparison_figure

    one = [{"setting": s, "model": "ensemble", "metric": "auc", "mean": m, "std": math.nan, "values": [m]}
           for s, m in (("independent", 0.8), ("kd", 0.85))]
    fig = comparison_figure(one, ["independent", "kd"], ["ensemble"], "auc")
    assert fig.axes[0].get_title() == "test auc per setting (one value each; higher is better)"
    plt.close(fig)
    # three runs, the figure n/a in two of them: one value, no std, and not "one run" (review 50j)
    fig = comparison_figure([{**r, "n": 1} for r in one], ["independent", "kd"], ["ensemble"], "auc")
    assert "one value each" in fig.axes[0].get_title()
    plt.close(fig)
    two = [{**r, "std": 0.01, "values": [r["mean"] - 0.01, r["mean"] + 0.01]} for r in one]
    fig = comparison_figure(two, ["independent", "kd"], ["ensemble"], "auc")
    assert fig.axes[0].get_title() == "test auc per setting (mean ± std over runs; higher is better)"
    plt.close(fig)


def test_the_loss_figure_says_knowledge_terms_are_drawn_weighted_and_ramped(digits_run):
    """Review 52a: the KD terms doubled over a ramp-up, read as the students drifting from the teacher."""
    from peerdistill.html_report.run_page import loss_caption

    page = html.unescape(" ".join(write_report(digits_run).read_text(encoding="utf-8").split()))
    ramp_ends = [row["rampup"] for row in json.loads((digits_run / "metrics.json").read_text())["epochs"]]
    assert ("every training loss term, mean over the epoch's steps; knowledge terms as they entered the total, times "
            "their edge's weight, T² for softened ones, and the ramp-up factor (under 1 in every epoch, "
            f"{ramp_ends[-1]:.2f} at the last one's end, metrics.csv's rampup column") in page  # (2 of 5 ramp-up epochs)
    # the factor rises within an epoch: the epoch that ends at 1 was ramped too (review 52h: "until epoch 1")
    ramped = [{"epoch": 1, "rampup": 0.287}, {"epoch": 2, "rampup": 1.0}, {"epoch": 3, "rampup": 1.0}]
    assert "(under 1 through epoch 2, rising step by step" in loss_caption(ramped)
    assert loss_caption([{**row, "rampup": 1.0} for row in ramped]).endswith("and the ramp-up factor")
    assert loss_caption([{"epoch": 1}]).endswith("and the ramp-up factor")  # (rows of an earlier version)
    # a one-epoch ramp-up ends every epoch at 1: run.json's rampup_epochs says it (review 52j)
    whole = [{"epoch": 1, "rampup": 1.0}, {"epoch": 2, "rampup": 1.0}]
    assert "(under 1 through epoch 1, rising step by step" in loss_caption(whole, 1)
    assert loss_caption(whole, 0).endswith("and the ramp-up factor")
    assert "(under 1 through epoch 3," in loss_caption(ramped, 3)


def test_pictured_test_samples_are_named_by_their_files(tmp_path):
    """Review 52a: a reviewer of the page could not find a pictured frame again without run.json."""
    from types import SimpleNamespace

    import numpy as np

    from peerdistill.html_report.predictions_html import _pictured_names, segmentation_figure

    files = [f"images/frame{i:02d}.png" for i in range(6)]
    data = SimpleNamespace(info={"files": {"test": files}}, test=list(range(6)))
    assert _pictured_names(data) == files[:4]
    rows = SimpleNamespace(info={"indices": {"test": [7, 3, 9, 1, 0, 2]}}, test=list(range(6)))
    assert _pictured_names(rows) == ["row 7", "row 3", "row 9", "row 1"]
    assert _pictured_names(SimpleNamespace(info={}, test=list(range(6)))) is None  # (synthetic data: no names)
    assert _pictured_names(SimpleNamespace(info={"files": {"test": files[:2]}}, test=list(range(6)))) is None
    long = "a/very/long/folder/of/the/scanner/export/cju0qx73cjw570799j4n5cjze.jpg"
    fig = segmentation_figure(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), int), np.zeros((2, 4, 4), int), 2,
                              names=["frame00.png", long])
    labels = [ax.get_ylabel() for ax in fig.axes[::3]]
    assert labels == ["frame00.png", "…" + long[-31:]] and labels[1].endswith("cju0qx73cjw570799j4n5cjze.jpg")


def test_alike_models_timed_far_apart_are_said_to_hold_the_machines_noise():
    from peerdistill.html_report.costs_html import costs_section, timing_noise_note

    alike = {"parameters": 18683, "macs": 17_000_000}
    costs = {"teacher": {"parameters": 488018, "macs": 376_000_000, "cpu_latency_ms": 9.0},
             "student1": {**alike, "cpu_latency_ms": 3.847}, "student2": {**alike, "cpu_latency_ms": 5.607}}
    note = timing_noise_note(costs)
    assert note.startswith("student1 and student2 are alike (the same parameters and MACs), yet timed 3.847 and "
                           "5.607 CPU ms: other work slowed the machine")
    page = html.unescape(" ".join(costs_section({"costs": costs}).split()))
    assert "yet timed 3.847 and 5.607 CPU ms" in page
    costs["student2"]["cpu_latency_ms"] = 4.5  # within 20 %: the usual spread, nothing said
    assert timing_noise_note(costs) is None
    costs["student2"]["gpu_latency_ms"], costs["student1"]["gpu_latency_ms"] = 0.9, 0.3
    assert timing_noise_note(costs).startswith("student1 and student2 are alike (the same parameters and MACs), yet "
                                               "timed 0.300 and 0.900 GPU ms")
    # an ensemble of one is its student and its averaging: slower for that, not for the machine (review 53j)
    one = {"teacher": costs["teacher"], "student1": {**alike, "cpu_latency_ms": 0.144},
           "ensemble": {**alike, "cpu_latency_ms": 0.181, "ensemble_of": ["student1"]}}
    assert timing_noise_note(one) is None


def test_a_self_distilled_runs_page_says_what_its_head_rows_are(tmp_path):
    """Review 52h: student1@features.N and student1@ensemble sat beside the shipped model unexplained."""
    cfg = validate({"name": "s", "out_dir": str(tmp_path), "teacher": None,
                    "students": [{"arch": "cnn", "args": {"width": 4, "depth": 3}, "heads": ["features.2"],
                                  "deep_layer": "features"}],
                    "distill": {"preset": "self"}, "train": {"epochs": 1, "batch_size": 256, "monitor": "student1/accuracy"}})
    train_from_config(cfg, progress=False)
    page = html.unescape(" ".join(write_report(tmp_path / "s").read_text(encoding="utf-8").split()))
    assert ("student1@features.2: self-distillation heads, small classifiers on the network's layers, trained with it "
            "and scored here; they are not part of the model that ships (export leaves them out); NAME@ensemble: the "
            "network's own classifier averaged with its heads' (Be Your Own Teacher's ensemble), not shipped "
            "either.") in page


def test_a_comparison_page_says_once_how_its_segmentation_runs_were_scored():
    from peerdistill.html_report.comparison_page import _scoring_notes

    resized = {"task": "segmentation", "data_spec": {"image_size": [12, 12]}}
    notes = html.unescape(_scoring_notes([resized, resized, {"task": "segmentation", "data_spec": {}}]))
    assert notes.count("every figure is scored on the 12x12 grid the models see") == 1
    assert "hd95 is in pixels of that grid" in notes
    assert _scoring_notes([{"task": "classification"}]) == ""


def test_the_line_figures_draw_in_colours_told_apart_with_colour_vision_deficiencies(monkeypatch, digits_run):
    """Review 55t: matplotlib's default orange and green (student1, student2) are one colour to a
    protanope; the pages' line figures take Okabe and Ito's colours, as the mask pictures do."""
    import matplotlib.pyplot as plt

    from peerdistill.html_report import html_parts

    drawn = []
    real = plt.Axes.plot

    def recording(ax, *args, **kwargs):
        lines = real(ax, *args, **kwargs)
        drawn.extend(line.get_color() for line in lines)
        return lines

    monkeypatch.setattr(plt.Axes, "plot", recording)
    write_report(digits_run)
    assert drawn and {c.lower() for c in drawn if c.startswith("#")} <= {c.lower() for c in html_parts.LINE_COLOURS}
    assert "#ff7f0e" not in {c.lower() for c in drawn}  # (matplotlib's default second colour)



def _sections(page: str) -> dict[str, str]:
    """Each section of a page by its id."""
    return dict(re.findall(r'<section id="([^"]+)">\n(.*?)</section>', page, flags=re.S))


def _contents_and_sections(page: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (id, title) pairs the page's contents link to, and those of its sections."""
    contents = page.split('<nav class="contents">', 1)[1].split("</nav>", 1)[0]
    return (re.findall(r'<li><a href="#([^"]+)">([^<]+)</a></li>', contents),
            re.findall(r'<section id="([^"]+)">\n<h2>([^<]+)</h2>', page))


def _written_by() -> str:
    from peerdistill import __version__
    from peerdistill.engine.environment import source_commit

    commit = source_commit()
    return f"Written by peerdistill {__version__}" + (f" (git commit {commit})" if commit else "") + " on "


def test_a_run_page_opens_with_the_code_that_wrote_it_and_a_link_to_each_section(digits_run):
    """The run page had no contents (a long page scrolled through for its costs), and said nothing
    of the peerdistill that drew it nor when."""
    page = write_report(digits_run).read_text(encoding="utf-8")
    said = re.search(r'<h1>peerdistill run: r</h1>\n<p class="written-by">(.*?)</p>\n<nav class="contents">', page)
    assert said and said[1].startswith(_written_by())
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d \S*\.", said[1][len(_written_by()):])
    links, sections = _contents_and_sections(page)
    assert links == sections and [title for _, title in links] == [
        "Summary", "Learning curves", "Test metrics", "Model costs", "How it was trained", "Test predictions"]
    assert "<li><b>seed</b>: 0</li>" in _sections(page)["summary"]


def test_the_top_of_a_page_gives_sections_of_one_title_ids_of_their_own():
    from datetime import datetime, timezone

    from peerdistill.html_report.html_parts import section_html
    from peerdistill.html_report.page_top import page_top

    when = datetime(2026, 3, 1, 14, 3, tzinfo=timezone.utc)
    top = page_top("a <b>", [section_html("Model costs", ["x"]), "<p>no section</p>", section_html("Model costs", ["y"]),
                              section_html("test op_threshold (chosen on val)", [])], now=when)
    assert top[0] == "<h1>a &lt;b&gt;</h1>"
    assert top[1] == f'<p class="written-by">{_written_by()}{when.astimezone().strftime("%Y-%m-%d %H:%M %Z")}.</p>'
    assert re.findall(r'href="#([^"]+)"', top[2]) == ["model-costs", "model-costs-2", "test-op_threshold-chosen-on-val"]
    assert top[3:] == [section_html("Model costs", ["x"]), "<p>no section</p>",
                       section_html("Model costs", ["y"]).replace('id="model-costs"', 'id="model-costs-2"'),
                       section_html("test op_threshold (chosen on val)", [])]


def test_a_comparison_page_says_the_seeds_its_runs_recorded_and_the_paired_caption_once(tmp_path):
    """The seeds were assumed (seed, seed+1, ...), never read from the runs; the paired differences'
    caption, nine lines, was repeated under every metric; the page had no contents."""
    tree = {"name": "c", "out_dir": str(tmp_path), "seed": 7, "teacher": TINY_CNN, "students": [TINY_CNN, TINY_CNN],
            "train": {"epochs": 1, "batch_size": 256}}
    result = compare(tree, ["independent", "kd"], 2, progress=False)
    markdown = (result.directory / "compare.md").read_text(encoding="utf-8")
    assert "\n\nSeeds used (each run's run.json): 7, 8 in every setting.\n\n" in markdown
    page = write_report(result.directory).read_text(encoding="utf-8")
    sections = _sections(page)
    summary = sections["summary"]
    assert summary.count("Seeds used") == 1  # (compare.md's line left out of its paragraph: the page reads its own)
    assert "<p>Seeds used (each run&#x27;s run.json): 7, 8 in every setting.</p>" in summary
    links, headings = _contents_and_sections(page)
    assert links == headings and ("test-accuracy", "test accuracy") in links and links[0] == ("summary", "Summary")
    assert re.search(r'<h1>peerdistill comparison: c-compare</h1>\n<p class="written-by">' + re.escape(_written_by()), page)
    # the caption in full once, above the first table of paired differences; the others point to it
    full = "mean [95% confidence interval, Student&#x27;s t over the pairs]"
    assert page.count(full) == 1 and full in sections["test-accuracy"]
    assert "The paired differences of the metrics below are read the same way" in sections["test-accuracy"]
    for metric in ("balanced_accuracy", "macro_f1", "auc", "ece", "brier"):
        assert (f"<p>Paired differences from <code>independent</code>, test {metric}: read as those of "
                f'<a href="#test-accuracy">test accuracy</a> above (the same pairs and caveats).</p>'
                in sections[f"test-{metric}"])
    # a run of another seed in the folder (trained by hand into it): said as it trained, not as meant
    record = result.directory / "kd-seed8" / "run.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "seed": 42}))
    page = write_report(result.directory).read_text(encoding="utf-8")
    assert "<p>Seeds used (each run&#x27;s run.json): independent 7, 8; kd 7, 42.</p>" in page


def test_a_paired_caption_unlike_the_first_is_said_in_full():
    """Only the captions that differ are repeated: fewer pairs (a run gave no figure), a figure
    chosen on validation."""
    from peerdistill.html_report.comparison_page import PairedCaptions
    from peerdistill.paired import caption

    captions = PairedCaptions()

    def said(metric, pairs):
        return captions.said(caption("independent", metric, pairs, None), "independent", metric)

    assert said("accuracy", 3).endswith("unless their own caption says otherwise.</p>")
    assert "read as those of" in said("auc", 3)
    fewer = said("ece", 2)
    assert fewer.startswith("<p>Paired differences from <code>independent</code>, test ece: each setting")
    assert "(2 pairs at most)" in fewer and "unless their own caption" not in fewer
    assert "Each run&#x27;s op_threshold is chosen on its validation split" in said("op_threshold", 3)
