"""One self-contained HTML page for a run or a comparison: figures drawn with matplotlib
(embedded as base64 PNG, so the page is a single file) and tables."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .comparison_runs import setting_runs  # noqa: E402
from .engine.artifacts import (RunDir, atomic_write_bytes, check_not_a_run_file, names_a_folder,  # noqa: E402
                                     read_json)
from .engine.evaluate import ENSEMBLE, split_probabilities  # noqa: E402
from .config import load_saved_config  # noqa: E402
from .errors import (CheckpointError, ConfigError, DataError, PeerdistillError, PeerdistillWarning,  # noqa: E402
                     RunDirError)
from .engine import run_lock  # noqa: E402
from .metrics import ECE_BINS, expected_calibration_error, per_class_part, reliability_bins  # noqa: E402
from .operating_point import FIGURES, Rule, operating_points  # noqa: E402
from .paired import caption, difference_rows, read_differences_csv  # noqa: E402
from .report import (NOT_AVAILABLE, NOT_AVAILABLE_MEANS, comparison_per_class_rows, comparison_rows, fmt,  # noqa: E402
                     model_order, per_class_families, per_class_tables, teachers_named_in)  # noqa: E402
from .scored_data import data_on_the_command_line  # noqa: E402
from .values import is_count, is_finite_number  # noqa: E402

REPORT_FILE = "report.html"
# marks a page as this command's, the only kind --out replaces
GENERATOR = '<meta name="generator" content="peerdistill report">'
PNG_DATA_URI = "data:image/png;base64,"
SEGMENTATION_SAMPLES = 4
CSV_COLUMNS = ("setting", "model", "metric", "mean", "std", "n", "values")
CLASS_COLORS = ["#000000", "#e6194b", "#3cb44b", "#ffe119", "#0082c8", "#f58230", "#911eb4", "#46f0f0"]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
td { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f2f2f2; }
tbody th { text-align: left; font-weight: normal; }
figure { margin: .8em 0; } figure img { max-width: 100%; }
figcaption, .note, .table-note { color: #555; font-size: .9em; }
.note { background: #fff8e0; border-left: 4px solid #e0b000; padding: .4em .8em; }
code { background: #f4f4f4; padding: 0 .2em; }
"""


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write one self-contained HTML page for a run directory (it has run.json) or a comparison
    directory (it has compare.csv) and return its path (default ``path/report.html``)."""
    target, held = write_report_holding_warnings(path, out)
    reemit(held)
    return target


def reemit(held: list[warnings.WarningMessage]) -> None:
    """Warnings held back, given to the caller's filters now (which may make them errors); one
    said several times while the page was drawn (held under "always"), once."""
    said = set()
    for caught in held:
        if (key := (caught.category, str(caught.message))) not in said:
            said.add(key)
            warnings.warn_explicit(caught.message, caught.category, caught.filename, caught.lineno,
                                   source=caught.source)


def write_report_holding_warnings(path: str | Path,
                                  out: str | Path | None = None) -> tuple[Path, list[warnings.WarningMessage]]:
    """``write_report``, with the warnings raised while the page is drawn handed back, not
    emitted: a warnings filter making them errors (PYTHONWARNINGS=error, -W error) still leaves
    the page, and the command can say where it is before them."""
    directory = Path(path)
    if not directory.exists():
        raise RunDirError(f"'{directory}' does not exist: pass the directory that `peerdistill train` or "
                          "`peerdistill compare` wrote (check the path)")
    is_run, is_comparison = (directory / "run.json").is_file(), (directory / "compare.csv").is_file()
    if not (is_run or is_comparison):
        runs = sorted(p.parent.name for p in directory.glob("*/run.json")) if directory.is_dir() else []
        if runs:
            shown = ", ".join(runs[:3]) + (", ..." if len(runs) > 3 else "")
            raise RunDirError(f"'{directory}' holds runs ({len(runs)}: {shown}) but no compare.csv: report one of "
                              f"them (peerdistill report {directory / runs[0]}), or, if a comparison is training "
                              "them, report the folder when its last run ends (it writes compare.csv then)")
        raise RunDirError(
            f"'{directory}' is neither a peerdistill run directory (with run.json) nor a comparison "
            "directory (with compare.csv): pass the directory that `peerdistill train` or "
            "`peerdistill compare` wrote"
        )
    target = directory / REPORT_FILE if out is None else Path(out) / REPORT_FILE if names_a_folder(out) else Path(out)
    check_not_a_run_file(target)
    if target.suffix.lower() not in (".html", ".htm"):  # never a page over an image or a config of that name
        raise ConfigError(f"--out '{out}' does not end in .html: the report is one HTML page (give a .html file or "
                          "a folder)")
    _check_writable_here(target)
    # Names are drawn as written: a '$' in a class or model name is not mathtext (it crashed,
    # or became a formula).
    with warnings.catch_warnings(record=True) as held, matplotlib.rc_context({"text.parse_math": False}):
        warnings.simplefilter("always")  # every one held: the caller's filters judge them when re-emitted
        page, skipped = run_page(directory) if is_run else (comparison_page(directory), None)
        if skipped:  # on the console too, not only seen when the page is opened
            warnings.warn(f"the report has no test predictions: the saved models or the data could not be loaded "
                          f"again ({skipped})", PeerdistillWarning, stacklevel=3)
    target.parent.mkdir(parents=True, exist_ok=True)
    # a folder name that is not UTF-8 (Linux allows any bytes) is shown escaped, not a crash
    atomic_write_bytes(target, page.encode("utf-8", errors="backslashreplace"))
    return target, held


def _check_writable_here(target: Path) -> None:
    """Before the page is drawn (seconds): its folder can be made, and a file of its name is a
    report this command wrote, never a page of the user's own."""
    blocking = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"--out '{target}': '{blocking}' is a file, not a folder; give another place")
    if target.is_file():
        with target.open("rb") as page:
            head = page.read(4096)
        earlier = (b"<title>peerdistill run: ", b"<title>peerdistill comparison: ")  # pages before the marker
        if GENERATOR.encode() not in head and not any(title in head for title in earlier):
            raise ConfigError(f"'{target}' exists and is not a peerdistill report: give --out another name, or move "
                              "that file away")


# ---- HTML building blocks ------------------------------------------------------------------
def esc(value: Any) -> str:
    return html.escape(str(value))


def page_html(title: str, sections: list[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n{GENERATOR}\n'
            f"<title>{esc(title)}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(sections) + "\n</body>\n</html>\n")


def section_html(title: str, parts: list[str]) -> str:
    return f"<section>\n<h2>{esc(title)}</h2>\n" + "\n".join(parts) + "\n</section>"


def note_html(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def table_html(header: list[str], rows: list[list[str]]) -> str:
    """A table whose first column names the row; cells are plain text (escaped here)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "\n".join(
        f"<tr><th>{esc(row[0])}</th>" + "".join(f"<td>{esc(cell)}</td>" for cell in row[1:]) + "</tr>"
        for row in rows
    )
    table = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    if any(str(cell).startswith(NOT_AVAILABLE) for row in rows for cell in row[1:]):
        table += f'\n<p class="table-note">{esc(NOT_AVAILABLE_MEANS)}</p>'
    return table



def figure_html(fig, caption: str) -> str:
    """The figure as an embedded PNG; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<figure><img src="{PNG_DATA_URI}{data}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def legend_name(name: str) -> str:
    """A label matplotlib keeps in the legend: it leaves out those starting with '_' (a model or
    config named '_fast'), so such a name gets an invisible zero-width space in front."""
    return "\u200b" + name if name.startswith("_") else name


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


# ---- a run -----------------------------------------------------------------------------------
def run_page(directory: Path) -> tuple[str, str | None]:
    """The page, and why it has no predictions (None when it has them)."""
    meta = RunDir.open(directory).meta()
    metrics = _read_metrics(directory)
    title = f"peerdistill run: {directory.name}"
    sections = [f"<h1>{esc(title)}</h1>", run_summary_html(directory, meta, metrics),
                learning_curves_section(metrics), test_table_section(meta, metrics),
                costs_section(meta)]
    predictions, skipped = predictions_section(directory, meta)
    return page_html(title, [*sections, predictions]), skipped


def _read_metrics(directory: Path) -> dict[str, Any]:
    run = RunDir.open(directory)
    if not (directory / "metrics.json").is_file():
        if run.is_complete:  # finished: the file was removed since
            raise RunDirError(f"'{directory}' is a finished run without its metrics.json: restore the file, or train "
                              "the run again")
        meta = read_json(directory / "run.json")
        if meta.get("status") == "stopped":
            raise RunDirError(f"'{directory}' has no metrics.json: the run stopped in its first epoch "
                              f"({meta.get('stopped_by', 'reason not recorded')}); nothing to report")
        raise RunDirError(f"'{directory}' has no metrics.json: the run has not finished its first epoch yet")
    return run.metrics()


def run_summary_html(directory: Path, meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    data_kind = (meta.get("data_spec") or {}).get("kind", "?")
    epochs = len(metrics.get("epochs", []))
    planned = _planned_epochs(directory)
    if metrics.get("stopped_early"):
        of = f"{epochs} (stopped early by train.patience" + (f"; {planned} planned)" if planned else ")")
    else:
        of = f"{epochs}" if planned is None or planned == epochs else f"{epochs} done of {planned}"
    status = metrics.get("status", meta.get("status", "?"))
    training = status != "complete" and run_lock.is_held(directory)
    if status == "running" and not training:  # what the files say, and that no process is at it
        status = "interrupted (no process trains it)"
    elif status == "stopped":
        status = f"stopped: {metrics.get('stopped_by') or meta.get('stopped_by') or 'reason not recorded'}"
    facts = [
        ("directory", str(directory)),
        ("task", meta.get("task", "classification")),
        ("status", status),
        ("data", f"{data_kind}, {meta.get('num_classes', '?')} classes, inputs {meta.get('input_shape', '?')}"),
        ("models", ", ".join(f"{m['name']} ({m['role']})" for m in meta.get("members", []))),
        ("monitor", f"validation {metrics.get('monitor', '?')}; best epoch {metrics.get('best_epoch', '?')} "
                    f"of {of}"),
        ("seed", meta.get("seed", "?")),
    ]
    spec = meta.get("data_spec") or {}
    if spec.get("folds"):  # cross-validation: which fold was the test split
        facts.append(("test split", f"fold {spec.get('fold', 0)} of {spec['folds']} (split seed {spec.get('split_seed', 0)})"))
    summary = "<ul>\n" + "\n".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in facts) + "\n</ul>"
    if metrics.get("status") != "complete":
        written = time.strftime("%Y-%m-%d %H:%M", time.localtime((directory / "metrics.json").stat().st_mtime))
        going = ("A process is training it now (its lock is held): this page shows it as it was then"
                 if training else
                 f"Its lock is free (no process trains it): continue it with peerdistill train --resume {directory}")
        summary += note_html(f"This run has not finished: its files were last written at {written}. {going}")
    return summary


def _planned_epochs(directory: Path) -> int | None:
    """train.epochs of the run's config.yaml (absent for runs built in Python)."""
    try:
        return int(load_saved_config(directory / "config.yaml").train.epochs)
    except (PeerdistillError, OSError):
        return None


def learning_curves_section(metrics: dict[str, Any]) -> str:
    epochs = metrics.get("epochs") or []
    if not epochs:
        return section_html("Learning curves", [note_html("metrics.json holds no epochs yet.")])
    monitor = metrics.get("monitor", "ensemble/accuracy")
    metric = monitor.split("/", 1)[1]
    best = metrics.get("best_epoch")
    return section_html("Learning curves", [
        figure_html(monitor_curve_figure(epochs, metric, best),
                    f"validation {metric} per epoch of every model and the ensemble (dashed line: best epoch "
                    f"by {monitor})"),
        figure_html(loss_curve_figure(epochs), "every training loss term, mean over the epoch's steps"),
    ])


def validation_series(epochs: list[dict[str, Any]], metric: str) -> dict[str, list[float]]:
    """``{model: [value per epoch]}`` from the ``val/<model>/<metric>`` columns."""
    suffix = f"/{metric}"
    names = [k[len("val/"):-len(suffix)] for k in epochs[0] if k.startswith("val/") and k.endswith(suffix)]
    return {name: [_number(row.get(f"val/{name}{suffix}")) for row in epochs] for name in names}


def loss_series(epochs: list[dict[str, Any]]) -> dict[str, list[float]]:
    names = list(dict.fromkeys(k for row in epochs for k in row if k.startswith("train/loss/")))
    return {name[len("train/loss/"):]: [_number(row.get(name)) for row in epochs] for name in names}


def monitor_curve_figure(epochs: list[dict[str, Any]], metric: str, best_epoch: int | None):
    x = [row["epoch"] for row in epochs]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in validation_series(epochs, metric).items():
        style = {"color": "black", "linewidth": 2.5} if name == ENSEMBLE else {}
        ax.plot(x, values, marker="o", markersize=3, label=legend_name(name), **style)
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
    return _per_epoch_axes(fig, ax, f"validation {metric}", f"validation {metric}")


def _per_epoch_axes(fig, ax, ylabel: str, title: str):
    """The finish every per-epoch figure shares: whole epochs, a light grid, the legend outside."""
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def loss_curve_figure(epochs: list[dict[str, Any]]):
    x = [row["epoch"] for row in epochs]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in loss_series(epochs).items():
        style = {"color": "black", "linewidth": 2.5} if name == "total" else {}
        ax.plot(x, values, marker="o", markersize=3, label=legend_name(name), **style)
    return _per_epoch_axes(fig, ax, "loss", "training loss terms")


def test_table_section(meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    scores = metrics.get("test_at_best")
    if not scores:
        return section_html("Test metrics", [note_html(
            "no test metrics yet: they are written when training ends (the run's status is above).")])
    params = {m["name"]: m.get("parameters") for m in meta.get("members", [])}
    names = [k for k in dict.fromkeys(k for values in scores.values() for k in values) if not per_class_part(k)]
    rows = [[model, f"{params[model]:,}" if params.get(model) is not None else ""]
            + [fmt(values.get(name)) for name in names] for model, values in scores.items()]
    task = meta.get("task", "classification")
    auc = " The auc column is the macro average of the one-vs-rest areas." if (
        task == "classification" and meta.get("num_classes", 2) > 2) else ""
    tested = (meta.get("split_sizes") or {}).get("test")
    caption = (f"<p>Test split{f' ({tested:,} samples)' if is_count(tested) else ''}, with the weights of the best "
               "validation epoch "
               f"({esc(metrics.get('best_epoch', '?'))}, by {esc(metrics.get('monitor', '?'))}). "
               f"{esc(ENSEMBLE_RULES.get(task, ENSEMBLE_RULES['classification']).format(rule=_fusion(meta)) + auc)}</p>")
    parts = [caption, table_html(["model", "parameters"] + names, rows)]
    for family, header, class_rows in per_class_tables(scores):
        parts += [f"<h3>{esc(family)} per class</h3>", table_html(header, class_rows)]
    return section_html("Test metrics", parts)


ENSEMBLE_RULES = {"classification": "The ensemble averages the students' probabilities.",
                  "segmentation": "The ensemble averages the students' probabilities, pixel by pixel.",
                  "detection": "The ensemble fuses the students' boxes by {rule}."}
FUSION_NAMES = {"wbf": "weighted boxes fusion", "nms": "NMS over all the students' boxes",
                "nmw": "non-maximum weighted fusion"}


def _fusion(meta: dict[str, Any]) -> str:
    """How a detection run's ensemble fuses boxes, in words (runs before the choice: WBF)."""
    d = meta.get("detection") or {}
    rule = d.get("ensemble", "wbf")
    return f"{FUSION_NAMES.get(rule, rule)} at IoU {d.get('ensemble_iou', d.get('wbf_iou', 0.7)):g}"


def costs_section(meta: dict[str, Any]) -> str:
    """What each model costs to ship (run.json's ``costs``, written when training ends)."""
    costs, damaged = read_costs(meta)
    if damaged:
        return section_html("Model costs", [note_html(f"costs left out: run.json's costs are damaged ({damaged}); "
                                                      "restore the file, or train the run again.")])
    if not costs:
        return section_html("Model costs", [note_html("no costs recorded (they are measured when a run completes).")])
    return section_html("Model costs", [COSTS_CAPTION, table_html(costs_header(costs), cost_rows(costs))])


COST_FIGURES, OPTIONAL_COST_FIGURES = ("parameters", "macs", "cpu_latency_ms"), ("size_bytes", "gpu_latency_ms",
                                                                                 "compression")


def read_costs(meta: Any) -> tuple[dict[str, dict] | None, str | None]:
    """run.json's costs as training writes them (model -> figures), and what is wrong with them
    when a hand edit or damage left them otherwise; (None, None) when there are none."""
    costs = meta.get("costs") if isinstance(meta, dict) else None
    if not costs:
        return None, None
    if not isinstance(costs, dict) or not all(isinstance(c, dict) for c in costs.values()):
        return None, f"a {type(costs).__name__}, not a figure mapping per model"
    for name, c in costs.items():
        bad = next((k for k in COST_FIGURES if not is_finite_number(c.get(k))), None) or next(
            (k for k in OPTIONAL_COST_FIGURES if c.get(k) is not None and not is_finite_number(c.get(k))), None)
        if bad:
            return None, f"model '{name}' has {bad} {c.get(bad)!r}"
    return costs, None


def costs_header(costs: dict[str, dict]) -> list[str]:
    """The compression column names its reference, the first teacher (of several, the others are
    not it): costs list the teachers first, so it is the first model whose own ratio is 1. A
    cohort without a teacher has no such column."""
    reference = next((name for name, c in costs.items() if c.get("compression") == 1.0), "teacher")
    gpu = ["GPU ms"] if _has_gpu_latency(costs) else []
    compared = [f"x smaller than {reference}"] if _has_compression(costs) else []
    return ["model", "parameters", "MMACs", "file KiB", "CPU ms", *gpu, *compared]


def _has_gpu_latency(costs: dict[str, dict]) -> bool:
    return any(c.get("gpu_latency_ms") is not None for c in costs.values())


def _has_compression(costs: dict[str, dict]) -> bool:
    return any(c.get("compression") is not None for c in costs.values())


COSTS_CAPTION = ("<p>Per model as shipped (no self-distillation heads), for one input (one training patch for "
                 "patch-trained runs): multiply-accumulates counted by torch's FlopCounterMode, file size, "
                 "median latency on one CPU thread of the machine that trained it (and, for a run trained on a "
                 "GPU, on that GPU: fp32, one input; the models timed in turns, so that other work on the machine "
                 "slows each alike: compare them within a run, and time a device of your own for its figures), and, "
                 "with a teacher, how many times fewer parameters than it.</p>")


def cost_rows(costs: dict[str, dict]) -> list[list[str]]:
    gpu, compared = _has_gpu_latency(costs), _has_compression(costs)
    return [[name, f"{c['parameters']:,}", f"{c['macs'] / 1e6:.2f}",
             f"{c['size_bytes'] / 1024:.1f}" if c.get("size_bytes") else "n/a", f"{c['cpu_latency_ms']:.3f}",
             *([fmt(c.get("gpu_latency_ms"), 3)] if gpu else []),
             *([f"{c['compression']:.2f}" if c.get("compression") is not None else "n/a"] if compared else [])]
            for name, c in costs.items()]


# ---- predictions of the saved models -------------------------------------------------------
def predictions_section(directory: Path, meta: dict[str, Any]) -> tuple[str, str | None]:
    """Confusion matrix and ROC curves (classification) or sample masks (segmentation) on the
    test split; a note when the models or the data cannot be loaded again, and why."""
    segmentation = meta.get("task") == "segmentation"
    title = "Test samples" if segmentation else "Test predictions"  # detection: samples too, below
    if not meta.get("data_spec"):  # evaluate_run's advice (data=) is not the report's to take
        why = ("the run's data was given in Python (DataSplits), which the run cannot read again; eval scores its "
               f"models on data you give: peerdistill eval RUN_DIR {data_on_the_command_line(meta)}")
        return section_html(title, [note_html(f"Predictions skipped: {why}.")]), why
    try:
        cohort, task, data, window, overlap = load_for_predictions(directory)
    except (CheckpointError, ConfigError, DataError) as exc:  # ConfigError: a model's library is missing here
        return section_html(title, [note_html(f"Predictions skipped: the saved models or the data could not be "
                                              f"loaded again ({exc}).")]), str(exc)
    unfinished = [] if RunDir(directory).is_complete else [note_html(
        "The run has not finished: these use the weights of its best epoch so far.")]
    if segmentation:
        return section_html(title, unfinished + segmentation_parts(cohort, task, data.test, meta, window, overlap)), None
    if meta.get("task") == "detection":
        return section_html("Test samples", unfinished + detection_parts(cohort, task, data.test, meta)), None
    return section_html(title, unfinished + classification_parts(cohort, task, data, meta, window, overlap)), None


def load_for_predictions(directory: Path):
    from .runs import check_compatible, load_cohort, read_run_data, saved_window, task_for

    cohort, meta = load_cohort(directory)
    # checked and numbered as eval does it: data changed since training is not drawn as the run's
    data = read_run_data(meta, "The report reads the data where training read it (a relative data.root counts "
                               "from the current folder): run it from the folder training ran in, or put the data "
                               "back where training read it")
    data = check_compatible(data, meta)
    cohort.to(torch.device("cpu"))
    window, overlap = saved_window(meta)
    return cohort, task_for(meta), data, window, overlap


def classification_parts(cohort, task, data, meta, window, overlap) -> list[str]:
    probs, y = split_probabilities(cohort, task, data.test, torch.device("cpu"), window, overlap)
    num_classes = meta["num_classes"]
    names = meta.get("class_names") or [str(c) for c in range(num_classes)]
    parts = [figure_html(confusion_figure(y, probs[ENSEMBLE].argmax(axis=1), names),
                         f"confusion matrix of the student ensemble on the test split ({len(y)} samples)")]
    if len(np.unique(y)) < 2:
        parts.append(note_html("ROC curves skipped: the test split holds a single class."))
        return parts
    kind = "positive class" if num_classes == 2 else "micro-average one-vs-rest over all classes"
    chosen = youden_points(cohort, task, data.val, (probs, y), window, overlap) if num_classes == 2 else None
    marked = "; the cross marks the ensemble's threshold chosen on the validation split (Youden)" if chosen else ""
    parts.append(figure_html(roc_figure(probs, y, num_classes, chosen),
                             f"ROC curves on the test split ({kind}); the legend gives each curve's area{marked}"))
    if chosen:
        parts.append("<p>At the threshold each model's Youden index picks on the validation split (as <code>eval "
                     "--operating-point youden</code>), on the test split:</p>")
        parts.append(table_html(["model", *FIGURES], [[name, *(fmt(figures[f]) for f in FIGURES)]
                                                      for name, figures in chosen.items()]))
    parts.append(figure_html(reliability_figure(probs, y),
                             f"reliability diagram on the test split: accuracy against confidence in {ECE_BINS} "
                             "equal-width bins (filled bins only); on the diagonal a model's confidence is its "
                             "accuracy, below it the model is overconfident; the legend gives each model's ECE"))
    return parts


def reliability_figure(probs: dict[str, np.ndarray], y: np.ndarray):
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, p in probs.items():
        confidence, accuracy, counts = reliability_bins(p, y)  # binned once, for the curve and its ECE
        filled = counts > 0
        ece = expected_calibration_error(confidence, accuracy, counts)
        style = {"color": "black", "linewidth": 2.5} if name == ENSEMBLE else {}
        ax.plot(confidence[filled], accuracy[filled], marker="o", markersize=3,
                label=legend_name(f"{name} (ECE {ece:.3f})"), **style)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="confidence (largest probability)", ylabel="accuracy", title="reliability (test)",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    return fig


def confusion_figure(y: np.ndarray, pred: np.ndarray, class_names: list[str]):
    from sklearn.metrics import confusion_matrix

    k = len(class_names)
    matrix = confusion_matrix(y, pred, labels=list(range(k)))
    size = min(4 + 0.4 * k, 12)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if k <= 30:
        ax.set_xticks(range(k), class_names, rotation=45 if k > 10 else 0, ha="right" if k > 10 else "center")
        ax.set_yticks(range(k), class_names)
    if k <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize="small",
                        color="white" if matrix[i, j] > threshold else "black")
    ax.set(xlabel="predicted", ylabel="true", title="student ensemble: confusion matrix (test)")
    return fig


def roc_points(p: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary: the positive class's curve; multi-class: the micro-averaged one-vs-rest curve."""
    from sklearn.metrics import roc_curve
    from sklearn.preprocessing import label_binarize

    if num_classes == 2:
        fpr, tpr, _ = roc_curve(y == 1, p[:, 1])
    else:
        onehot = label_binarize(y, classes=list(range(num_classes)))
        fpr, tpr, _ = roc_curve(onehot.ravel(), p.ravel())
    return fpr, tpr


def youden_points(cohort, task, val, scored, window, overlap) -> dict[str, dict[str, float]] | None:
    """Each model's figures on the test split at its Youden threshold on ``val``; None where
    validation cannot choose one (a single class)."""
    try:
        return operating_points(split_probabilities(cohort, task, val, torch.device("cpu"), window, overlap),
                                scored, Rule("youden"))
    except DataError:
        return None


def roc_figure(probs: dict[str, np.ndarray], y: np.ndarray, num_classes: int,
               chosen: dict[str, dict[str, float]] | None = None):
    from sklearn.metrics import auc

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, p in probs.items():
        fpr, tpr = roc_points(p, y, num_classes)
        style = {"color": "black", "linewidth": 2.5} if name == ENSEMBLE else {}
        ax.plot(fpr, tpr, label=legend_name(f"{name} (area {auc(fpr, tpr):.3f})"), **style)
    if chosen and ENSEMBLE in chosen:
        point = chosen[ENSEMBLE]
        ax.plot([1 - point["specificity"]], [point["sensitivity"]], marker="x", markersize=12, color="black",
                linestyle="none")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)", xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return fig


def segmentation_parts(cohort, task, dataset, meta, window, overlap) -> list[str]:
    from .engine.evaluate import predict
    from .pictures import first_samples

    count = min(SEGMENTATION_SAMPLES, len(dataset))
    if count == 0:
        return [note_html("the test split is empty.")]
    x, truth = first_samples(dataset, count)
    x, truth = x.float(), truth.cpu().numpy()
    with torch.no_grad():
        pred = predict(cohort, task, x, window, overlap)[ENSEMBLE].argmax(dim=1).cpu().numpy()
    images = display_images(x, meta.get("data_stats"))
    return [figure_html(segmentation_figure(images, truth, pred, meta["num_classes"]),
                        f"the first {count} test images, their true masks and the student ensemble's prediction")]


def detection_parts(cohort, task, dataset, meta, min_score: float = 0.3) -> list[str]:
    from matplotlib.patches import Rectangle

    from .engine.evaluate import predict
    from .pictures import first_samples

    count = min(SEGMENTATION_SAMPLES, len(dataset))
    if count == 0:
        return [note_html("the test split is empty.")]
    x, truth = first_samples(dataset, count)
    x = x.float()
    with torch.no_grad():
        detections = predict(cohort, task, x)[ENSEMBLE]
    images = display_images(x, meta.get("data_stats"))
    names = meta.get("class_names") or [str(c) for c in range(meta["num_classes"])]
    fig, axes = plt.subplots(1, count, figsize=(2.6 * count, 2.8), squeeze=False)
    for ax, image, boxes, det in zip(axes[0], images, truth, detections):
        ax.imshow(image, cmap="gray")
        for label, x1, y1, x2, y2 in boxes.tolist():
            if label >= 0:
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.5))
        for (x1, y1, x2, y2), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(),
                                                  det["labels"].tolist()):
            if score >= min_score:
                colour = CLASS_COLORS[(int(label) + 1) % len(CLASS_COLORS)]  # 0 is the background's
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1))
                ax.text(x1, y1, f"{names[int(label)]} {score:.2f}", color=colour, fontsize=7, va="bottom", clip_on=True)
        ax.axis("off")
    fig.tight_layout()
    return [figure_html(fig, f"the first {count} test images: true boxes in white, the student ensemble's "
                             f"boxes scoring at least {min_score} coloured by class, with class and score")]


def display_images(x: torch.Tensor, stats: dict[str, list[float]] | None) -> np.ndarray:
    """Undo the run's normalisation and scale each image to [0, 1]: [N, H, W] (grey) or [N, H, W, 3]."""
    x = x.float().cpu()
    if stats:
        x = x * torch.tensor(stats["std"]).view(1, -1, 1, 1) + torch.tensor(stats["mean"]).view(1, -1, 1, 1)
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    x = ((x - lo) / (hi - lo).clamp(min=1e-6)).numpy()
    return x[:, 0] if x.shape[1] != 3 else x.transpose(0, 2, 3, 1)


def class_colormap(num_classes: int):
    from matplotlib.colors import ListedColormap

    if num_classes <= len(CLASS_COLORS):
        return ListedColormap(CLASS_COLORS[:max(num_classes, 2)])
    return plt.get_cmap("viridis", num_classes)


def segmentation_figure(images: np.ndarray, truth: np.ndarray, pred: np.ndarray, num_classes: int):
    rows = len(images)
    cmap = class_colormap(num_classes)
    vmax = max(num_classes - 1, 1)
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for i in range(rows):
        panels = [(images[i], {"cmap": "gray"}, "image"),
                  (np.ma.masked_equal(truth[i], 255), {"cmap": cmap, "vmin": 0, "vmax": vmax}, "truth"),
                  (pred[i], {"cmap": cmap, "vmin": 0, "vmax": vmax}, "ensemble")]
        for ax, (picture, style, label) in zip(axes[i], panels):
            ax.imshow(picture, interpolation="nearest", **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label)
    return fig


# ---- a comparison ----------------------------------------------------------------------------
def comparison_page(directory: Path) -> str:
    rows = read_compare_csv(directory)
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    runs = compared_runs(directory, rows, settings)
    finished = {s: [m for m in (_finished_metrics(p) for p in paths) if m] for s, paths in runs.items()}
    models = model_order([r["model"] for r in rows], teachers_named_in(m for ms in finished.values() for m in ms))
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    title = f"peerdistill comparison: {directory.name}"
    sections = [f"<h1>{esc(title)}</h1>", comparison_summary_html(directory, rows, settings, models, runs),
                comparison_curves_section(runs, finished), comparison_costs_section(runs)]
    try:
        diffs = compared_differences(directory, settings)
    except RunDirError as exc:  # the tables and figures do not need it
        diffs = []
        sections.append(note_html(f"Paired differences left out: {exc}."))
    baseline = diffs[0]["baseline"] if diffs else None
    apart = [s for s in settings if s != baseline and not any(d["setting"] == s for d in diffs)]
    folded = any(re.search(r"-fold\d+$", name) for r in rows for name in r["runs"])
    corrected = all(d.get("corrected", True) for d in diffs)
    for metric in (m for m in metrics if not per_class_part(m)):
        parts = [figure_html(comparison_figure(rows, settings, models, metric),
                             f"test {metric}: small dots are single runs; large markers and bars are mean ± std"),
                 table_html(["setting"] + models, comparison_rows(rows, settings, models, metric))]
        paired = difference_rows(diffs, settings, models, metric)
        if paired:
            # (the pairs each difference has: folds, or runs of a comparison written before folds were)
            pairs = max(d["difference"].pairs for d in diffs if d["metric"] == metric)
            folds = next((d["folds"] for d in diffs if d.get("folds")), None) or (folded or None)
            text = caption(baseline, metric, pairs, folds, apart, corrected=corrected)
            parts += [f"<p>{with_code_spans(text)}</p>",
                      table_html(["setting"] + models, paired)]
        sections.append(section_html(f"test {metric}", parts))
    for family, classes in per_class_families(metrics).items():
        sections.append(section_html(f"test {family} per class", [table_html(
            ["setting", "class"] + models, comparison_per_class_rows(rows, settings, models, family, classes))]))
    return page_html(title, sections)


def compared_differences(directory: Path, settings: list[str]) -> list[dict[str, Any]]:
    """The paired differences compare wrote (differences.csv): it alone knew which settings share
    a data split. [] when there are none (one setting, or a compare of an earlier version)."""
    path = directory / "differences.csv"
    diffs = read_differences_csv(path) if path.is_file() else []
    return [d for d in diffs if d["setting"] in settings and d["baseline"] in settings]


def read_compare_csv(directory: Path) -> list[dict[str, Any]]:
    path = directory / "compare.csv"
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise RunDirError(f"'{path}' lacks the columns {missing}: it was not written by `peerdistill compare`")
        rows = list(reader)
    if not rows:
        raise RunDirError(f"'{path}' holds no rows")
    # compare writes whole lines: a file not ending in one was cut off
    cut = not path.read_bytes().endswith(b"\n")
    parsed = []
    for line, r in enumerate(rows, start=2):
        try:
            if any(v is None for v in r.values()) or (cut and line == len(rows) + 1):
                raise ValueError(line)
            parsed.append({"setting": r["setting"], "model": r["model"], "metric": r["metric"],
                           "mean": float(r["mean"]), "std": float(r["std"]), "n": int(r["n"]),
                           "values": [float(v) for v in r["values"].split(";") if v.strip()],
                           "runs": [v for v in (r.get("runs") or "").split(";") if v]})
        except (TypeError, ValueError, AttributeError):
            raise RunDirError(f"'{path}' is truncated or corrupt at line {line}: run the same "
                              "`peerdistill compare` again to rewrite it (its runs are reused)") from None
    return parsed


def compared_runs(directory: Path, rows, settings: list[str]) -> dict[str, list[Path]]:
    """Each setting's run directories, as compare.csv lists them: other runs in the folder (a
    seed of an earlier, larger comparison) are not part of this one; listed runs deleted since
    are left out. A compare.csv written before the list existed: every run directory of the
    setting."""
    listed: dict[str, list[str]] = {}
    for r in rows:
        listed.setdefault(r["setting"], r["runs"])
    return {s: [directory / n for n in listed[s] if (directory / n / "run.json").is_file()] if listed.get(s)
            else setting_runs(directory, s) for s in settings}


def comparison_summary_html(directory: Path, rows, settings: list[str], models: list[str],
                            runs: dict[str, list[Path]]) -> str:
    most = max(len(r["values"]) for r in rows)
    runs = sorted(p.name for paths in runs.values() for p in paths)
    parts = [f"<p>A comparison of {len(settings)} setting(s) ({esc(', '.join(settings))}), "
             f"up to {most} run(s) each (seeds, and folds when cross-validated), written by "
             f"<code>peerdistill compare</code> in <code>{esc(directory)}</code>. "
             f"Models: {esc(', '.join(models))}.</p>"]
    intro = compare_md_intro(directory)
    if intro:
        parts.append(f"<p>{intro}</p>")
    if runs:
        parts.append(f"<p>Run directories: {esc(', '.join(runs))}.</p>")
    gone = sorted({name for r in rows for name in r["runs"]} - set(runs))
    if gone:
        parts.append(note_html(f"compare.csv lists run(s) no longer in this folder: {', '.join(gone)}. The tables keep "
                               "their figures; the curves and costs below are drawn without them."))
    return "\n".join(parts)


def compare_md_intro(directory: Path) -> str:
    """compare.md's paragraph before its tables, as escaped HTML with `code` spans."""
    path = directory / "compare.md"
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8").split("\n###", 1)[0]
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return with_code_spans(" ".join(lines))


def with_code_spans(markdown: str) -> str:
    """Escaped HTML of a line of Markdown whose `code` spans become <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", esc(markdown))


def comparison_figure(rows, settings: list[str], models: list[str], metric: str):
    index = {(r["setting"], r["model"]): r for r in rows if r["metric"] == metric}
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(settings) + 2), 4))
    colors = plt.get_cmap("tab10")
    for j, model in enumerate(models):
        offset = (j - (len(models) - 1) / 2) * width
        color = colors(j % 10)
        xs, means, stds = [], [], []
        for i, setting in enumerate(settings):
            row = index.get((setting, model))
            if row is None:
                continue
            ax.scatter([i + offset - 0.2 * width] * len(row["values"]), row["values"], s=16, color=color,
                       alpha=0.6, edgecolors="none")
            xs.append(i + offset + 0.15 * width)
            means.append(row["mean"])
            stds.append(0.0 if math.isnan(row["std"]) else row["std"])
        ax.errorbar(xs, means, yerr=stds, fmt="D", markersize=6, capsize=4, color=color, label=legend_name(model))
    ax.set_xticks(range(len(settings)), settings, rotation=20 if len(settings) > 4 else 0)
    ax.set(ylabel=f"test {metric}", title=f"test {metric} per setting (mean ± std over runs)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def comparison_curves_section(runs: dict[str, list[Path]], finished: dict[str, list[dict[str, Any]]]) -> str:
    """The ensemble's validation curve of each setting: how the presets learn, not only where they
    end. ``finished``: each setting's metrics.json read (of the runs that have one)."""
    histories = {setting: [m for m in ms if m.get("epochs")] for setting, ms in finished.items()}
    histories = {setting: ms for setting, ms in histories.items() if ms}
    if not histories:
        return section_html("Validation curves", [note_html(_none_left(runs) or "no run of this comparison has a "
                                                            "finished epoch.")])
    monitor = next(iter(histories.values()))[0].get("monitor", "ensemble/accuracy")
    model, metric = monitor.split("/", 1)
    return section_html("Validation curves", [figure_html(
        settings_curve_figure(histories, model, metric),
        f"validation {monitor} per epoch: the line is the mean over the runs that reached the epoch, the band their range")])


def _none_left(runs: dict[str, list[Path]]) -> str | None:
    """Said where a comparison's runs are all gone (deleted or moved), not that none finished."""
    if not any(runs.values()):
        return "none of this comparison's runs is in its folder any more (deleted or moved): compare.csv's tables remain."
    return None


def _finished_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "metrics.json"
    return RunDir(run_dir).metrics() if path.is_file() else None


def settings_curve_figure(histories: dict[str, list[dict[str, Any]]], model: str, metric: str):
    fig, ax = plt.subplots(figsize=(7, 4))
    for setting, seeds in histories.items():
        curves = [validation_series(m["epochs"], metric).get(model) for m in seeds]
        curves = [c for c in curves if c]
        if not curves:
            continue
        # Seeds that stopped early (or have not finished) leave the mean at their last epoch.
        length = max(len(c) for c in curves)
        values = np.array([c + [math.nan] * (length - len(c)) for c in curves], dtype=float)
        x = np.arange(1, length + 1)
        with warnings.catch_warnings():  # an epoch no seed has a value for
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = (f(values, axis=0) for f in (np.nanmean, np.nanmin, np.nanmax))
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=legend_name(setting))
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
    return _per_epoch_axes(fig, ax, f"validation {metric}", f"validation {model}/{metric} per setting")


def comparison_costs_section(runs: dict[str, list[Path]]) -> str:
    """One cost table per distinct cohort (settings of one config share their models), its
    latencies the median over every finished run of those settings (one run's are noisy)."""
    groups: dict[tuple, tuple[list[str], list[dict]]] = {}
    for setting, paths in runs.items():
        for costs in (c for c in (_costs_of_run(p) for p in paths) if c):
            shape = tuple((name, c["parameters"], c["macs"]) for name, c in costs.items())
            settings, measured = groups.setdefault(shape, ([], []))
            if setting not in settings:
                settings.append(setting)
            measured.append(costs)
    if not groups:
        return section_html("Model costs", [note_html(_none_left(runs) or "no run of this comparison has finished: "
                                                      "costs are measured when a run completes.")])
    parts = [COSTS_CAPTION.replace("</p>", " Latencies: the median over the comparison's runs of these models.</p>")]
    for settings, measured in groups.values():
        if len(groups) > 1:
            parts.append(f"<p>{esc(', '.join(settings))}:</p>")
        costs = _median_latencies(measured)
        parts.append(table_html(costs_header(costs), cost_rows(costs)))
    return section_html("Model costs", parts)


def _costs_of_run(run: Path) -> dict[str, dict] | None:
    """A comparison's run's costs; none from a run whose run.json is damaged (its tables, from
    compare.csv, still stand)."""
    try:
        return read_costs(read_json(run / "run.json"))[0]
    except CheckpointError:
        return None


def _median_latencies(measured: list[dict]) -> dict:
    """The first run's costs, with each model's latencies the median over every run's."""
    costs = {name: dict(c) for name, c in measured[0].items()}
    for name, c in costs.items():
        for key in ("cpu_latency_ms", "gpu_latency_ms"):
            values = [run[name][key] for run in measured if run.get(name, {}).get(key) is not None]
            if values:
                c[key] = statistics.median(values)
    return costs

