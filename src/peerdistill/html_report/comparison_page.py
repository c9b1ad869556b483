"""A comparison's page: its tables over seeds, the paired differences, figures per
setting, learning curves and the models' costs."""

from __future__ import annotations

import csv
import math
import re
import statistics
import warnings
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ..comparison_context import SEEDS_USED, seeds_used
from ..comparison_runs import CHOSEN_ON_VAL, run_records, setting_runs, warning_lines, warnings_of_runs
from ..comparison_students import first_records, students_apart_note
from ..engine.artifacts import RunDir
from ..ensemble_cost import ENSEMBLE, ensemble_cost_note, with_ensemble
from ..errors import RunDirError, warn_user
from ..wording import first_few
from ..metrics import headed, lower_is_better, metric_family, per_class_part, unpaired_metric
from ..paired import caption, difference_rows, metrics_not_paired_note, read_differences_csv
from ..report import (comparison_per_class_rows, comparison_rows, distance_unit_note, metric_meaning, model_order,
                      per_class_families, teachers_named_in)
from ..run_files import METRICS_FILE, RUN_FILE
from .costs_html import COSTS_CAPTION, cost_rows, costs_header, read_costs, timing_noise_note
from .html_parts import (LINE_COLOURS, anchor, esc, figure_html, legend_name, note_html, page_html, per_epoch_axes,
                         section_html, table_html)
from .page_top import page_top
from .run_page import validated, validation_series

CSV_COLUMNS = ("setting", "model", "metric", "mean", "std", "n", "values")


def comparison_page(directory: Path) -> str:
    rows = read_compare_csv(directory)
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    runs = compared_runs(directory, rows, settings)
    metrics_files = {p: _finished_metrics(p) for paths in runs.values() for p in paths}  # (read once: curves, warnings)
    finished = {s: [m for m in (metrics_files[p] for p in paths) if m] for s, paths in runs.items()}
    teachers = teachers_named_in(m for ms in finished.values() for m in ms)
    models = model_order([r["model"] for r in rows], teachers)
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    title = f"peerdistill comparison: {directory.name}"
    records = run_records(list(metrics_files))  # (read once: the notes, meanings, warnings and costs take them)
    metas = list(records.values())
    task = next((m.get("task") for m in metas), None)
    # (review 55t: a run whose metrics.json was removed left the curves in silence, drawn without it)
    lacking = sorted(p.name for p, m in metrics_files.items() if m is None)
    gone = ""
    if lacking:
        said = (f"{len(lacking)} run(s) of this folder have no metrics.json ({first_few(lacking, quoted=True)}): the tables keep "
                "their figures (compare.csv); the curves and warnings below are drawn without them")
        warn_user(f"{directory}: {said}")  # (on the console too, not only on the page)
        gone = note_html(said)
    summary = [comparison_summary_html(directory, rows, settings, models, runs), f"<p>{esc(seeds_used(runs, records))}</p>",
               gone, _scoring_notes(metas)]
    sections = [section_html("Summary", [part for part in summary if part]),
                warnings_section(runs, directory, records, metrics_files), comparison_curves_section(runs, finished),
                comparison_costs_section(runs, records)]
    try:
        diffs = compared_differences(directory, settings)
    except RunDirError as exc:  # the tables and figures do not need it
        diffs = []
        sections.append(note_html(f"Paired differences left out: {exc}."))
    if not diffs and len(settings) > 1 and not (directory / "differences.csv").is_file():
        sections.append(note_html("No paired differences: the folder has no differences.csv (a comparison written "
                                  "by an earlier version, or the file was removed); run the same peerdistill compare "
                                  "command again: it reuses the finished runs and writes it."))
    baseline = diffs[0]["baseline"] if diffs else None
    apart = [s for s in settings if s != baseline and not any(d["setting"] == s for d in diffs)]
    folded = any(re.search(r"-fold\d+$", name) for r in rows for name in r["runs"])
    corrected = all(d.get("corrected", True) for d in diffs)
    captions = PairedCaptions()
    unlike = students_apart_note(first_records(runs, records), baseline, [s for s in settings if s not in apart]
                                 ) if diffs else None  # (said once, under the first table of paired differences)
    for metric in (m for m in metrics if not per_class_part(m)):
        spread = _has_spread(r for r in rows if r["metric"] == metric)
        parts = [figure_html(comparison_figure(rows, settings, models, metric),
                             f"{headed(metric)}: small dots are single runs; large markers "
                             + ("and bars are mean ± std" if spread else "are the means (one value each: no spread)")),
                 table_html(["setting"] + models, comparison_rows(rows, settings, models, metric))]
        if meaning := metric_meaning(metric_family(metric), task):  # (review 52h: on the run pages alone)
            parts.append(f"<p>{esc(metric_family(metric))}: {esc(meaning)}.</p>")
        left_out = teachers_left_out(rows, diffs, models, metric, teachers)
        differing = [m for m in models if m not in left_out]
        paired = difference_rows(diffs, settings, differing, metric)
        if paired:
            # (the pairs each difference has: folds, or runs of a comparison written before folds were)
            pairs = max(d["difference"].pairs for d in diffs if d["metric"] == metric)
            folds = next((d["folds"] for d in diffs if d.get("folds")), None) or (folded or None)
            text = caption(baseline, metric, pairs, folds, apart, corrected=corrected)
            if left_out:
                text += (f" Left out: {', '.join(f'`{m}`' for m in left_out)}, which trained alike in every setting, "
                         f"so that {'its' if len(left_out) == 1 else 'their'} figures differ between settings only by "
                         "the epoch each run's monitor picked (compare.md says so above its tables).")
            parts += [captions.said(text, baseline, metric), table_html(["setting"] + differing, paired)]
            if unlike:
                parts.append(note_html(unlike))
                unlike = None
        elif diffs and (unpaired := metrics_not_paired_note([metric])):
            parts.append(f"<p>{with_code_spans(unpaired)}.</p>")
        sections.append(section_html(headed(metric), parts))
    for family, classes in per_class_families(metrics).items():
        sections.append(section_html(f"test {family} per class", [table_html(
            ["setting", "class"] + models, comparison_per_class_rows(rows, settings, models, family, classes))]))
    return page_html(title, page_top(title, sections))


class PairedCaptions:
    """The paired differences' caption, said in full above the first metric's table and, under
    the later metrics, again only where it differs (other pairs, teachers left out, a figure
    chosen on validation): repeated under each metric, it buried the tables."""

    SAID_ONCE = (" The paired differences of the metrics below are read the same way, unless their own caption "
                 "says otherwise.")

    def __init__(self) -> None:
        self.first: tuple[str, str] | None = None  # (the metric captioned in full first, its caption without it)

    def said(self, text: str, baseline: str, metric: str) -> str:
        """The paragraph above ``metric``'s table of paired differences, ``text`` its caption."""
        general = text.replace(f", {headed(metric)}:", ":", 1)
        if self.first is None:
            self.first = metric, general
            return f"<p>{with_code_spans(text + self.SAID_ONCE)}</p>"
        first, said = self.first
        if general != said:
            return f"<p>{with_code_spans(text)}</p>"
        return (f"<p>{with_code_spans(f'Paired differences from `{baseline}`, {headed(metric)}')}: read as those of "
                f'<a href="#{anchor(headed(first))}">{esc(headed(first))}</a> above (the same pairs and caveats).</p>')


def _scoring_notes(metas: list[dict[str, Any]]) -> str:
    """How the runs' segmentation figures were scored (the resized grid, HD95's unit), each note
    once, as the run pages say them."""
    notes = list(dict.fromkeys(note for meta in metas if (note := distance_unit_note(meta))))
    return "\n".join(note_html(note) for note in notes)


def teachers_left_out(rows, diffs, models: list[str], metric: str, teachers: set[str]) -> list[str]:
    """The teachers compare left out of the paired differences of ``metric`` as trained alike in
    every setting: figures of theirs in the baseline and in a setting it gave differences for,
    and no difference of theirs (differences.csv of earlier versions kept them)."""
    if not diffs:
        return []
    baseline = diffs[0]["baseline"]
    compared = {d["setting"] for d in diffs if d["metric"] == metric}
    figured = {(r["setting"], r["model"]) for r in rows if r["metric"] == metric}
    given = {d["model"] for d in diffs if d["metric"] == metric}
    return [m for m in models if m in teachers and m not in given and (baseline, m) in figured
            and any((s, m) in figured for s in compared)]


def compared_differences(directory: Path, settings: list[str]) -> list[dict[str, Any]]:
    """The paired differences compare wrote (differences.csv): it alone knew which settings share
    a data split. [] when there are none (one setting, or a compare of an earlier version)."""
    path = directory / "differences.csv"
    diffs = read_differences_csv(path) if path.is_file() else []
    # (earlier versions paired HD95 too: left out as now, review 52a)
    return [d for d in diffs if d["setting"] in settings and d["baseline"] in settings and not unpaired_metric(d["metric"])]


def read_compare_csv(directory: Path) -> list[dict[str, Any]]:
    path = directory / "compare.csv"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise RunDirError(f"'{path}' lacks the columns {missing}: it was not written by `peerdistill compare`")
            rows = list(reader)
    except UnicodeDecodeError:  # (review 50h: a traceback)
        raise RunDirError(f"'{path}' is not UTF-8 text, as compare writes it: run the same `peerdistill compare` "
                          "again to rewrite it (its runs are reused)") from None
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
                           "mean": float(r["mean"]), "std": _spread(r["std"]), "n": int(r["n"]),
                           "values": [float(v) for v in r["values"].split(";") if v.strip()],
                           "runs": [v for v in (r.get("runs") or "").split(";") if v]})
        except (TypeError, ValueError, AttributeError):
            raise RunDirError(f"'{path}' is truncated or corrupt at line {line}: run the same "
                              "`peerdistill compare` again to rewrite it (its runs are reused)") from None
    return parsed


def _spread(text: str) -> float:
    """A standard deviation as compare writes it: not negative (review 50h: matplotlib failed on one)."""
    value = float(text)
    if value < 0:
        raise ValueError(text)
    return value


def compared_runs(directory: Path, rows, settings: list[str]) -> dict[str, list[Path]]:
    """Each setting's run directories, as compare.csv lists them: other runs in the folder (a
    seed of an earlier, larger comparison) are not part of this one; listed runs deleted since
    are left out. A compare.csv written before the list existed: every run directory of the
    setting."""
    listed: dict[str, list[str]] = {}
    for r in rows:
        listed.setdefault(r["setting"], r["runs"])
    return {s: [directory / n for n in listed[s] if (directory / n / RUN_FILE).is_file()] if listed.get(s)
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


def warnings_section(runs: dict[str, list[Path]], directory: Path, records: dict[Path, dict[str, Any]],
                     metrics: dict[Path, dict[str, Any] | None]) -> str:
    """The warnings the runs gave as training began and ended, each once, with the runs that gave
    it (review 47b: they were on each run's page alone, not on the comparison's), and those
    compare met choosing a threshold or temperature, as compare.md lists them. ``records`` and
    ``metrics``: the runs' run.json (``run_records``) and metrics.json (None where there is none)."""
    paths = [path for paths in runs.values() for path in paths]
    lines = warning_lines(warnings_of_runs(paths, records, metrics), len(paths)) + chosen_on_val_lines(directory)
    if not lines:
        return ""
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return section_html("Warnings the runs gave", [f"<ul>{items}</ul>"])


def chosen_on_val_lines(directory: Path) -> list[str]:
    """compare.md's list items of what choosing a run's threshold or temperature warned of: said
    nowhere else, since compare chose them (not the runs' files)."""
    path = directory / "compare.md"
    if not path.is_file():
        return []
    return [line[2:] for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("- " + CHOSEN_ON_VAL)]


def compare_md_intro(directory: Path) -> str:
    """compare.md's paragraph before its tables, as escaped HTML with `code` spans; but its line of
    the seeds used, which the page reads again from the runs (a compare.md of an earlier version has none)."""
    path = directory / "compare.md"
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8").split("\n###", 1)[0]
    lines = [line for line in text.splitlines()
             if line.strip() and not line.startswith("#") and not line.startswith(SEEDS_USED)]
    return with_code_spans(" ".join(lines))


def with_code_spans(markdown: str) -> str:
    """Escaped HTML of a line of Markdown whose `code` spans become <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", esc(markdown))


MARKERS = ("D", "o", "s", "^", "v", "P", "X", "h", "<", ">")


def comparison_figure(rows, settings: list[str], models: list[str], metric: str):
    index = {(r["setting"], r["model"]): r for r in rows if r["metric"] == metric}
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(settings) + 2), 4))
    for j, model in enumerate(models):
        offset = (j - (len(models) - 1) / 2) * width
        color = LINE_COLOURS[j % len(LINE_COLOURS)]
        xs, means, stds = [], [], []
        for i, setting in enumerate(settings):
            row = index.get((setting, model))
            if row is None:
                continue
            ax.scatter([i + offset - 0.2 * width] * len(row["values"]), row["values"], s=16, color=color,
                       alpha=0.6, edgecolors="none")
            xs.append(i + offset + 0.15 * width)
            means.append(row["mean"])
            stds.append(row["std"])  # (NaN, one run: no bar, where a bar of no width read as no spread: review 50h)
        ax.errorbar(xs, means, yerr=stds, fmt=MARKERS[j % len(MARKERS)], markersize=6, capsize=4, color=color,
                    label=legend_name(model))  # (a marker of its own: told apart without colour too)
    ax.set_xticks(range(len(settings)), settings, rotation=20 if len(settings) > 4 else 0)
    better = "lower" if lower_is_better(metric) else "higher"
    spread = "mean ± std over runs" if _has_spread(index.values()) else "one value each"
    ax.set(ylabel=headed(metric), title=f"{headed(metric)} per setting ({spread}; {better} is better)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _has_spread(rows) -> bool:
    """Whether any (setting, model) row has two runs or more: a std to draw (review 50j: a figure
    n/a in all runs but one has no std either, and is not one run)."""
    return any(len(r["values"]) > 1 for r in rows)


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
    path = run_dir / METRICS_FILE
    return RunDir(run_dir).metrics() if path.is_file() else None


def settings_curve_figure(histories: dict[str, list[dict[str, Any]]], model: str, metric: str):
    fig, ax = plt.subplots(figsize=(7, 4))
    for setting, seeds in histories.items():
        curves = [_by_epoch(m["epochs"], model, metric) for m in seeds]
        curves = [c for c in curves if c]
        if not curves:
            continue
        # Seeds that stopped early (or have not finished) leave the mean at their last epoch.
        x = sorted({epoch for c in curves for epoch in c})
        values = np.array([[c.get(epoch, math.nan) for epoch in x] for c in curves], dtype=float)
        with warnings.catch_warnings():  # an epoch no seed has a value for
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = (f(values, axis=0) for f in (np.nanmean, np.nanmin, np.nanmax))
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=legend_name(setting))
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
    return per_epoch_axes(fig, ax, f"validation {metric}", f"validation {model}/{metric} per setting")


def _by_epoch(epochs: list[dict[str, Any]], model: str, metric: str) -> dict[int, float]:
    """``{epoch: value}`` of one run's validated epochs (train.val_every may skip some)."""
    rows = validated(epochs)
    values = validation_series(rows, metric).get(model)
    return dict(zip((row["epoch"] for row in rows), values, strict=True)) if values else {}


def comparison_costs_section(runs: dict[str, list[Path]], records: dict[Path, dict[str, Any]]) -> str:
    """One cost table per distinct cohort (settings of one config share their models), its
    latencies the median over every finished run of those settings (one run's are noisy).
    ``records``: the runs' run.json (``run_records``)."""
    groups: dict[tuple, tuple[list[str], list[dict]]] = {}
    for setting, paths in runs.items():
        for costs in (c for c in (with_ensemble(read_costs(records[p])[0], records[p]) for p in paths if p in records)
                      if c):
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
        parts += [note_html(n) for n in (ensemble_cost_note(costs.get(ENSEMBLE)), timing_noise_note(costs)) if n]
    return section_html("Model costs", parts)


def _median_latencies(measured: list[dict]) -> dict:
    """The first run's costs, with each model's latencies the median over every run's; an
    ensemble's over the runs that timed it where any did (runs of earlier versions give the sum
    of its students': review 53j, a mix was said all timed or all summed by the first run)."""
    costs = {name: dict(c) for name, c in measured[0].items()}
    for name, c in costs.items():
        runs = [run[name] for run in measured if isinstance(run.get(name), dict)]
        timed = [r for r in runs if not r.get("latency_summed")]
        if timed and len(timed) < len(runs):
            runs = timed
            c.pop("latency_summed", None)
        for key in ("cpu_latency_ms", "gpu_latency_ms"):
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                c[key] = statistics.median(values)
    return costs
