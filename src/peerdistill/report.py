"""Tables a person reads: the result of one run, and the preset comparison."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .engine.evaluate import ENSEMBLE
from .metrics import headed, per_class_part
from .values import mean_and_sample_std


def fitted(table: Table, width: int) -> RenderableType:
    """``table`` as built when it fits in ``width`` columns; else the narrower of it and it turned
    (its first column's cells, the models or settings, become the columns), split into parts that
    fit, each repeating the row labels. A narrow terminal then shows every figure whole instead
    of cut to '0.9…' (a pipe counts as 120 columns). A title wider than the table goes on a line
    of its own above it: rich would wrap it to the table's width, mid-phrase."""
    body = _fitted_columns(table, width)
    first = body.renderables[0] if isinstance(body, Group) else body
    if not isinstance(first, Table) or not first.title:
        return body
    title = Text.from_markup(first.title, style="table.title")
    if title.cell_len <= min(_natural_width(first), width):
        return body
    untitled = copy.copy(first)  # the caller's table keeps its title
    untitled.title = None
    return Group(title, *([untitled, *body.renderables[1:]] if isinstance(body, Group) else [untitled]))


def _fitted_columns(table: Table, width: int) -> RenderableType:
    if not table.columns or not table.row_count or _natural_width(table) <= width:
        return table
    first = table.columns[0]
    as_built = [(c.header, list(c.cells), c.justify) for c in table.columns[1:]]
    turned = [(name, [cells[i] for _, cells, _ in as_built], "right") for i, name in enumerate(first.cells)]
    layouts = [(first.header, list(first.cells), as_built), ("", [header for header, _, _ in as_built], turned)]
    label_header, labels, columns = min(layouts, key=lambda layout: _natural_width(_table(None, *layout)))
    parts = _parts(table.title, label_header, labels, columns, width)
    return parts[0] if len(parts) == 1 else Group(*parts)


def _table(title, label_header, labels, columns) -> Table:
    """A table of a label column and ``columns`` (header, cells, justify); cells too long fold."""
    table = Table(title=title)
    table.add_column(label_header, overflow="fold")
    for header, _, justify in columns:
        table.add_column(header, justify=justify, overflow="fold")
    for i, label in enumerate(labels):
        table.add_row(label, *(cells[i] for _, cells, _ in columns))
    return table


def _parts(title, label_header, labels, columns, width) -> list[Table]:
    """As many columns in each part as fit in ``width`` (at least one); the title on the first."""
    parts, start = [], 0
    while start < len(columns):
        end = start + 1
        while end < len(columns) and _natural_width(_table(None, label_header, labels, columns[start:end + 1])) <= width:
            end += 1
        parts.append(_table(None if parts else title, label_header, labels, columns[start:end]))
        start = end
    return parts


def _natural_width(table: Table) -> int:
    return Console(width=1 << 16).measure(table).maximum


def per_class_families(metrics) -> dict[str, list[str]]:
    """Each family of per-class figures among ``metrics``, with its classes in their order."""
    families: dict[str, list[str]] = {}
    for metric in dict.fromkeys(metrics):
        part = per_class_part(metric)
        if part:
            families.setdefault(part[0], []).append(part[1])
    return families


NOT_AVAILABLE = "n/a"
NOT_AVAILABLE_MEANS = ("n/a: no value here: the figure is undefined (a class the split lacks has no AUC, AP or recall, a "
                       "class never predicted no precision, and a distance needs the class in both the truth and the "
                       "prediction; in a comparison, no run gave one) or was not measured.")


def ensemble_of_one_note(meta: dict[str, Any]) -> str | None:
    """One student's 'ensemble' is that student (its row repeats the student's): what to say
    beside it, on the console and in the report alike; None with two students or more."""
    students = [m["name"] for m in meta.get("members", []) if m.get("role") == "student"]
    return f"one student: 'ensemble' is {students[0]} alone (an ensemble needs two or more)" if len(
        students) == 1 else None


# What a table's column means, said under it in the report (a page read alone: a clinician took
# segmentation's dice and f1 for rival values of one figure). docs/segmentation.md has the whole.
METRIC_MEANINGS = {
    "balanced_accuracy": "the mean of the classes' recalls",
    "macro_f1": "the mean of the classes' F1",
    "ece": "expected calibration error: the mean gap between confidence and accuracy over 15 confidence bins, "
           "lower is better",
    "brier": "the mean squared distance of the probabilities from the truth (of the positive class for two "
             "classes), lower is better",
    "dice": "per image 2TP / (2TP + FP + FN) of each foreground class, averaged over the images (an image with "
            "neither truth nor prediction of a class is left out for it), then over the foreground classes",
    "iou": "per image TP / (TP + FP + FN), averaged as dice",
    "f1": "the Dice of the split's pixels pooled (one figure for the whole split, the DRIVE convention): it "
          "weighs large regions more than dice, the mean of the images' own",
    "pixel_accuracy": "correct pixels over all counted pixels",
    "hd95": "the 95th-percentile distance between the edges of the predicted and the true regions, over the "
            "images holding the class in both (lower is better; missed says how many it leaves out)",
    "missed": "the share of images holding a foreground class where the model predicts none of it, lower is better",
    "ap": "COCO average precision, averaged over IoU thresholds 0.50 to 0.95 (stricter than an AP at IoU 0.5)",
    "ap50": "COCO average precision at IoU 0.5",
    "ap75": "COCO average precision at IoU 0.75",
    "ar1": "COCO average recall with at most 1 box a frame, over IoU 0.50 to 0.95",
    "ar10": "COCO average recall with at most 10 boxes a frame, over IoU 0.50 to 0.95",
    "ar100": "COCO average recall with at most 100 boxes a frame, over IoU 0.50 to 0.95",
}
# Names whose meaning is the task's own (review 52h: a clinician read a pixel sensitivity as the
# share of polyps found).
TASK_METRIC_MEANINGS = {
    "segmentation": {
        "sensitivity": "TP / (TP + FN) of the split's pixels pooled: the share of the foreground's pixels found, "
                       "not of objects or images (missed counts images)",
        "specificity": "TN / (TN + FP) of the split's pixels pooled",
        "auc": "the ROC area of every pixel's foreground probability, the split's pixels pooled",
    },
}


def metric_meaning(name: str, task: str | None) -> str | None:
    """What a table's column ``name`` means in a run of ``task`` (None where nothing is to say)."""
    return TASK_METRIC_MEANINGS.get(task or "", {}).get(name) or METRIC_MEANINGS.get(name)
FUSION_NAMES = {"wbf": "weighted boxes fusion", "nms": "NMS over all the students' boxes",
                "nmw": "non-maximum weighted fusion"}


def fusion_in_words(meta: dict[str, Any], decoding: dict[str, Any] | None = None) -> str:
    """How a detection run's ensemble fuses boxes (``decoding``: settings scored with instead of
    the run's), in words; runs from before the choice fused by WBF."""
    d = {**(meta.get("detection") or {}), **(decoding or {})}
    rule = d.get("ensemble", "wbf")
    return f"{FUSION_NAMES.get(rule, rule)} at IoU {d.get('ensemble_iou', d.get('wbf_iou', 0.7)):g}"


def detection_note(meta: dict[str, Any], decoding: dict[str, Any] | None = None) -> str | None:
    """What a detection table's figures and its ensemble row are (a polyp paper's "AP 0.80" is
    often at IoU 0.5: ap here is the stricter COCO AP), or None for another task."""
    if meta.get("task") != "detection":
        return None
    return (f"ap is COCO's, averaged over IoU 0.50 to 0.95 (ap50: at IoU 0.5); ensemble: the students' boxes fused "
            f"by {fusion_in_words(meta, decoding)}, the teacher's left out")


def region_note(meta: dict[str, Any], data_spec: dict[str, Any] | None = None) -> str | None:
    """Which pixels the figures count, for data with a region of interest (DRIVE's field of
    view): said on the console and in the report alike (review 55h: the console's tables, copied
    into a paper, did not say it). ``data_spec``: the data scored, when not the run's own."""
    roi = (data_spec if data_spec is not None else (meta.get("data_spec") or {})).get("roi")
    if meta.get("task") != "segmentation" or not roi:
        return None
    return (f"Only the pixels inside each image's region of interest (data.roi: the masks in '{roi}') count in these "
            "figures; predict's masks show the models' prediction outside it too, unless --roi names the "
            "inputs' region masks.")


def distance_unit_note(meta: dict[str, Any], data_spec: dict[str, Any] | None = None) -> str | None:
    """After a resize, segmentation is scored on the resized grid against masks resized to it,
    and HD95 is in that grid's pixels: what to say beside the figures (on the console and in the
    report alike), or None. ``data_spec``: the data scored, when not the run's own."""
    spec = data_spec if data_spec is not None else (meta.get("data_spec") or {})
    size = spec.get("image_size")
    if meta.get("task") != "segmentation":
        return None
    if not size:  # (review 55t: hd95 shown with no unit at all)
        return None if spec.get("pixel_spacing") is not None else (
            "hd95 is in pixels of the files (data.pixel_spacing=[rows, columns] gives it in the spacing's unit, "
            "such as mm)")
    grid = (f"every figure is scored on the {size[0]}x{size[1]} grid the models see (data.image_size), against masks "
            "resized to it, not at the files' own size (thin structures merge or break there: figures at the files' "
            "size, from predict's masks, differ)")
    if spec.get("pixel_spacing") is not None:
        return grid
    return (f"{grid}; hd95 is in pixels of that grid; where the files are of another size than the grid (and all "
            "of one size), data.pixel_spacing=[1,1] gives it in the files' pixels (still measured on that grid)")


def has_not_available(scores: dict[str, dict[str, Any]], metrics) -> bool:
    """Whether a table of these figures shows an n/a cell (NaN, or None as JSON writes NaN)."""
    return any(fmt(values.get(m)) == NOT_AVAILABLE for values in scores.values() for m in metrics if m in values)


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_AVAILABLE
    return figure(value) if digits == 4 else f"{value:.{digits}f}"


def results_table(title: str, scores: dict[str, dict[str, float]], params: dict[str, int] | None = None,
                  val: dict[str, dict[str, float]] | None = None, val_metric: str | None = None,
                  metrics: tuple[str, ...] | None = None, costs: dict[str, dict] | None = None,
                  macs_of: str = "", smaller_than: str | None = None) -> Table:
    """One row per model (and the ensemble), one column per metric (``metrics``: which ones);
    with ``costs``, parameters, MACs (of one ``macs_of`` where that is not the whole input: a
    patch) and the compression against the teacher (``smaller_than``: named, one of several)."""
    metrics = list(metrics or next(iter(scores.values())).keys())
    table = Table(title=escape(title))  # paths and names as written ('[x]' is not markup)
    table.add_column("model")
    if costs:
        for column in ("params", f"MMACs/{macs_of}" if macs_of else "MMACs",
                       f"x smaller than {smaller_than}" if smaller_than else "x smaller"):
            table.add_column(escape(column), justify="right")
    elif params:
        table.add_column("params", justify="right")
    if val and val_metric:
        table.add_column(escape(f"val {val_metric}"), justify="right")
    for metric in metrics:
        table.add_column(escape(metric), justify="right")
    for model, values in scores.items():
        row = [escape(model)]
        if costs:
            c = costs.get(model)
            ratio = f"{c['compression']:.2f}" if c and c.get("compression") is not None else ""
            row += [f"{c['parameters']:,}", mmacs(c["macs"]), ratio] if c else ["", "", ""]
        elif params:
            row.append(f"{params[model]:,}" if model in params else "")
        if val and val_metric:
            row.append(fmt(val.get(model, {}).get(val_metric)))
        row += [fmt(values[m]) for m in metrics]
        table.add_row(*row)
    return table


def per_class_tables(scores: dict[str, dict[str, float]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The models' per-class figures as (family, header, rows) per family: a row per class, a
    column per model. None (an empty list) for runs made before they were recorded."""
    families = per_class_families(k for values in scores.values() for k in values)
    return [(family, ["class", *scores], [[c] + [fmt(values.get(f"{family}_{c}")) for values in scores.values()]
                                          for c in classes])
            for family, classes in families.items()]


def per_class_rich_tables(scores: dict[str, dict[str, float]], title: str) -> list[Table]:
    out = []
    for family, header, rows in per_class_tables(scores):
        table = Table(title=escape(f"{title}: {family} per class"))
        for i, column in enumerate(header):
            table.add_column(escape(column), justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*map(escape, row))  # class names as written ('[x]' is not markup)
        out.append(table)
    return out


def operating_point_table(scores: dict[str, dict[str, float]], title: str) -> Table:
    """The ``op_*`` figures ``evaluate_run(operating_point=...)`` adds, a row per model."""
    from .operating_point import FIGURES

    table = Table(title=escape(title))
    table.add_column("model")
    for figure in FIGURES:
        table.add_column(figure, justify="right")
    for model, metrics in scores.items():
        table.add_row(escape(model), *(_with_interval(metrics, f"op_{figure}") for figure in FIGURES))
    return table


def _with_interval(metrics: dict[str, float], key: str, signed: bool = False) -> str:
    """A figure, and its bootstrap interval when ``eval --bootstrap`` gave one; ``signed``: a
    difference, ``+0.0123 [-0.0040, +0.0286]``."""
    show = (lambda v: NOT_AVAILABLE if v is None or math.isnan(v) else f"{v:+.4f}") if signed else fmt  # noqa: E731
    low, high = metrics.get(f"ci95_low_{key}"), metrics.get(f"ci95_high_{key}")
    text = show(metrics.get(key)) + (f" [{show(low)}, {show(high)}]" if low is not None else "")
    if metrics.get(f"ci95_resamples_{key}") is not None:  # some resamples gave it no value
        text += f" ({metrics[f'ci95_resamples_{key}']} resamples)"
    return text


def calibration_table(scores: dict[str, dict[str, float]], title: str) -> Table:
    """The ``cal_*`` figures ``evaluate_run(calibrate=True)`` adds, beside the untempered ones."""
    table = Table(title=escape(title))
    for column in ("model", "temperature", "ece", "ece tempered", "brier", "brier tempered"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model, m in scores.items():
        table.add_row(escape(model), fmt(m.get("cal_temperature"), 3), fmt(m.get("ece")), fmt(m.get("cal_ece")),
                      fmt(m.get("brier")), fmt(m.get("cal_brier")))
    return table


def interval_table(scores: dict[str, dict[str, float]], title: str, metrics: tuple[str, ...]) -> Table:
    """Each model's figure with the bootstrap interval ``evaluate_run(bootstrap=N)`` added to it."""
    table = Table(title=escape(title))
    table.add_column("model")
    for metric in metrics:
        table.add_column(escape(metric), justify="right")
    for model, values in scores.items():
        table.add_row(escape(model), *(_with_interval(values, metric) for metric in metrics))
    return table


def difference_table(scores: dict[str, dict[str, float]], title: str, metrics: tuple[str, ...],
                     baseline: str) -> Table:
    """Each other model's figure minus the baseline's with its paired interval, the ``diff_*``
    figures ``evaluate_run(bootstrap=N, baseline=...)`` adds."""
    table = Table(title=escape(title))
    table.add_column("model")
    for metric in metrics:
        table.add_column(escape(metric), justify="right")
    for model, values in scores.items():
        if model != baseline:
            table.add_row(escape(model), *(_with_interval(values, f"diff_{metric}", signed=True) for metric in metrics))
    return table


THRESHOLD_FIGURE = re.compile(r"at([0-9.]+)_")  # at0.3_precision: a detector's figure at a score threshold


def threshold_table(figures: dict[str, float], title: str) -> Table:
    """One model's ``at{T}_*`` figures (``evaluate_run(score_thresholds=...)``), a row per threshold."""
    table = Table(title=escape(title))
    for column in ("score threshold", "boxes per frame", "precision", "recall", "f1"):
        table.add_column(column, justify="right")
    scored = sorted({found[1] for key in figures if (found := THRESHOLD_FIGURE.match(key))}, key=float)
    for t in scored:
        table.add_row(t, fmt(figures.get(f"at{t}_boxes_per_frame"), 2),
                      *(fmt(figures.get(f"at{t}_{k}")) for k in ("precision", "recall", "f1")))
    return table


def mean_std(values: list[float]) -> tuple[float, float]:
    return mean_and_sample_std([v for v in values if v is not None and not math.isnan(v)])


def pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return NOT_AVAILABLE
    return figure(mean) if math.isnan(std) else f"{figure(mean)} ± {figure(std)}"


def figure(value: float) -> str:
    """Four decimals; more where four would round a figure to 0 or 1 that is neither (review 55d:
    an AUC of 0.99995 ± 0.00005 read 1.0000 ± 0.0000, a perfect score without spread)."""
    text = f"{value:.4f}"
    bound = float(text)
    if bound not in (0.0, 1.0, -1.0) or value == bound:
        return text
    for places in range(5, 9):
        text = f"{value:.{places}f}"
        if float(text) != bound:
            return text
    return f"{value:.1e}"


def seeds_cell(row: dict[str, Any]) -> str:
    """A comparison cell: mean ± std over the seeds that gave a number, and how many did when
    some gave none (an AUC on a split lacking a class, an HD95 with nothing found)."""
    text = pm(row["mean"], row["std"])
    if 0 < row["n"] < len(row["values"]):
        text += f" ({row['n']} of {len(row['values'])} runs)"
    return text


BEST_STUDENT = "best student"


def model_order(models: list[str], teachers: Iterable[str] = ()) -> list[str]:
    """Teachers, students, best student, ensemble; self-distillation heads (``@``) are left out.
    A teacher is named ``teacher...`` or is among ``teachers`` (a name the user gave one, from
    the runs' roles)."""
    models = [m for m in dict.fromkeys(models) if "@" not in m]
    teachers = set(teachers)
    # by their number, as numbers: teacher2 before teacher10
    head = sorted((m for m in models if m.startswith("teacher") or m in teachers),
                  key=lambda m: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", m)])
    tail = [m for m in (BEST_STUDENT, ENSEMBLE) if m in models]
    return head + [m for m in models if m not in head and m not in tail] + tail


def mmacs(macs: int) -> str:
    """Millions of MACs: 2 decimals, and 3 significant digits below one million, where small
    students differ (review 50h: 0.61 and 0.08 for 0.6095 and 0.0833)."""
    value = macs / 1e6
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"


def teachers_named_in(metrics_files: Iterable[dict[str, Any]]) -> set[str]:
    """The models the runs' metrics.json (their ``roles``) call teachers."""
    return {name for metrics in metrics_files for name, role in (metrics.get("roles") or {}).items()
            if role == "teacher"}


def comparison_markdown(rows: list[dict[str, Any]], presets: list[str], models: list[str],
                        metrics: list[str], header: str) -> str:
    """One Markdown table per whole-split metric (presets down, models across), then one per
    family of per-class figures (a row per preset and class); mean ± std over seeds."""
    parts = [header]

    def table(title: str, first_columns: list[str], body: list[list[str]]) -> None:
        parts.append(f"\n### {title}\n")
        parts.append(markdown_table(first_columns + models, body, len(first_columns)))

    for metric in (m for m in metrics if not per_class_part(m)):
        table(headed(metric), ["setting"], comparison_rows(rows, presets, models, metric))
    for family, classes in per_class_families(metrics).items():
        table(f"test {family} per class", ["setting", "class"],
              comparison_per_class_rows(rows, presets, models, family, classes))
    return "\n".join(parts) + "\n"


def markdown_table(header: list[str], body: list[list[str]], left: int = 1) -> str:
    """A Markdown table, its first ``left`` columns aligned left and the others (numbers) right."""
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|---" * left + "|" + "---:|" * (len(header) - left)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in body]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """A Markdown table cell: a '|' in a name would end the cell."""
    return text.replace("|", "\\|")


def comparison_rows(rows: list[dict[str, Any]], settings: list[str], models: list[str], metric: str) -> list[list[str]]:
    """A row per setting: ``metric``'s mean ± std over seeds per model."""
    index = {(r["setting"], r["model"]): r for r in rows if r["metric"] == metric}
    return [[setting] + [seeds_cell(index[setting, m]) if (setting, m) in index else "" for m in models]
            for setting in settings]


def comparison_per_class_rows(rows: list[dict[str, Any]], settings: list[str], models: list[str], family: str,
                              classes: list[str]) -> list[list[str]]:
    """A row per setting and class: its mean ± std over seeds per model."""
    per_class = {c: comparison_rows(rows, settings, models, f"{family}_{c}") for c in classes}
    return [[setting, c, *per_class[c][i][1:]] for i, setting in enumerate(settings) for c in classes]
