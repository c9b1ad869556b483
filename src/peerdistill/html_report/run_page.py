"""A run's page: its summary, learning curves and test table (its costs and predictions
come from costs_html.py and predictions_html.py)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from ..engine.artifacts import RunDir
from ..engine.evaluate import ENSEMBLE
from ..cli.notes import patches_in_words
from ..config import SOFTENED_KINDS, load_saved_config
from ..environment_words import environment_in_words
from ..ensemble_cost import ensemble_parameters_note, members_parameters, student_names
from ..errors import PeerdistillError, RunDirError
from .. import run_lock
from ..json_files import read_json
from ..metrics import per_class_part
from ..report import (metric_meaning, distance_unit_note, region_note, ensemble_of_one_note, fmt, fusion_in_words,
                      per_class_tables)
from ..run_files import CONFIG_FILE, METRICS_FILE, RUN_FILE, listed_warnings
from ..values import is_count, is_finite_number
from ..wording import first_few
from .costs_html import costs_section
from .html_parts import (as_number, esc, figure_html, legend_name, note_html, page_html, per_epoch_axes, section_html,
                         table_html)
from .page_top import page_top
from .predictions_html import predictions_section
from .teaching import checkpoint_in_words, label_loss_weights, teachers_combined

def run_page(directory: Path) -> tuple[str, str | None]:
    """The page, and why it has no predictions (None when it has them)."""
    meta = RunDir.open(directory).meta()
    metrics = _read_metrics(directory)
    title = f"peerdistill run: {directory.name}"
    sections = [section_html("Summary", [run_summary_html(directory, meta, metrics)]),
                learning_curves_section(metrics, meta.get("rampup_epochs")), test_table_section(meta, metrics),
                costs_section(meta), config_section(directory)]
    predictions, skipped = predictions_section(directory, meta)
    return page_html(title, page_top(title, [*sections, predictions])), skipped


def _read_metrics(directory: Path) -> dict[str, Any]:
    run = RunDir.open(directory)
    if not (directory / METRICS_FILE).is_file():
        if run.is_complete:  # finished: the file was removed since
            raise RunDirError(f"'{directory}' is a finished run without its metrics.json: restore the file, or train "
                              "the run again")
        meta = read_json(directory / RUN_FILE)
        if meta.get("status") == "stopped":
            raise RunDirError(f"'{directory}' has no metrics.json: the run stopped in its first epoch "
                              f"({meta.get('stopped_by', 'reason not recorded')}); nothing to report")
        # (review 55t: a run of two epochs whose metrics.json was removed, or one killed in its first, read as
        # "not finished its first epoch yet" as if a process were at it)
        if run.resume_path is not None and run.resume_path.exists():
            raise RunDirError(f"'{directory}' has no metrics.json though it kept a checkpoint (the file was removed): "
                              f"continue it with peerdistill train --resume {shlex.quote(str(directory))}, which "
                              "writes it again at its next epoch")
        if not run_lock.is_held(directory):
            raise RunDirError(f"'{directory}' has no metrics.json: the run ended in its first epoch (no process "
                              "trains it) and kept nothing to report; train it again")
        raise RunDirError(f"'{directory}' has no metrics.json: the run has not finished its first epoch yet")
    return run.metrics()


def run_summary_html(directory: Path, meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    data_kind = (meta.get("data_spec") or {}).get("kind", "?")
    epochs = len(metrics.get("epochs", []))
    saved = _saved_config(directory)
    planned = int(saved.train.epochs) if saved is not None else None
    if metrics.get("stopped_early"):
        of = f"{epochs} (stopped early by train.patience" + (f"; {planned} planned)" if planned else ")")
    else:
        # (review 50h: "best epoch 11 of 11 done of 200" read as two counts)
        of = f"{epochs}" if planned is None or planned == epochs else f"{epochs} ({planned} planned)"
    status = metrics.get("status", meta.get("status", "?"))
    if status == "complete" and meta.get("status", "complete") != "complete":  # killed between the two final writes:
        status = meta["status"]  # run.json says last, as --resume and eval read it (review 50g)
    training = status != "complete" and run_lock.is_held(directory)
    if status == "running" and not training:  # what the files say, and that no process is at it
        status = "interrupted (no process trains it)"
    elif status == "stopped":
        status = f"stopped: {metrics.get('stopped_by') or meta.get('stopped_by') or 'reason not recorded'}"
    facts = [
        ("directory", str(directory)),
        ("task", meta.get("task", "classification")),
        ("status", status),
        ("data", f"{data_kind}{_source(meta)}, {meta.get('num_classes', '?')} classes, inputs "
                 f"{meta.get('input_shape', '?')}{_split_sizes(meta)}"),
        ("patches", _patches_in_words(meta)),
        ("models", _models_in_words(meta, saved)),
        ("distillation", _distillation_in_words(meta)),
        ("teachers combined", teachers_combined(meta)),
        ("own label loss", label_loss_weights(meta)),
        ("monitor", f"validation {metrics.get('monitor', '?')}; "
                    + (f"n/a in every epoch, so the last one stood in ({metrics.get('best_epoch', '?')} of {of})"
                       if metrics.get("monitor_undefined") else f"best epoch {metrics.get('best_epoch', '?')} of {of}")),
        ("seed", meta.get("seed", "?")),
    ]
    facts = [(key, value) for key, value in facts if value is not None]  # (the lines a run has no use for)
    trained_with = _environment_in_words(meta)
    if trained_with:  # (runs of earlier versions did not record it)
        facts.append(("trained with", trained_with))
    spec = meta.get("data_spec") or {}
    if spec.get("folds"):  # cross-validation: which fold was the test split
        facts.append(("test split", f"fold {spec.get('fold', 0)} (folds 0 to {spec['folds'] - 1}; split seed {spec.get('split_seed', 0)})"))
    summary = "<ul>\n" + "\n".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in facts) + "\n</ul>"
    for when, said in (("read its data", listed_warnings(meta, "data_notes")),  # (what it left out)
                       ("began", listed_warnings(meta, "training_warnings")),
                       ("ended", listed_warnings(metrics, "ending_warnings"))):
        if said:  # (the data's duplicates, a split lacking a class; a best epoch chosen by nothing: as training said them)
            summary += (f"<p><b>Warnings when training {when}</b>:</p>\n<ul>\n"
                        + "\n".join(f"<li>{esc(w)}</li>" for w in said) + "\n</ul>")
    if metrics.get("status") != "complete" or meta.get("status", "complete") != "complete":
        written = time.strftime("%Y-%m-%d %H:%M", time.localtime((directory / METRICS_FILE).stat().st_mtime))
        going = ("A process is training it now (its lock is held): this page shows it as it was then"
                 if training else
                 "Its lock is free (no process trains it): continue it with peerdistill train --resume "
                 f"{shlex.quote(str(directory))}")
        summary += note_html(f"This run has not finished: its files were last written at {written}. {going}")
    return summary


def _patches_in_words(meta: dict[str, Any]) -> str | None:
    """A patch-trained run's patches and the window that scores whole images (None for a run
    trained on whole images: no line)."""
    said = patches_in_words(meta)
    return None if said is None else (f"trained on {said[0]}; validation and test (as eval, predict and an export) "
                                      f"score whole images by {said[1]}")


def _environment_in_words(meta: dict[str, Any]) -> str:
    """The versions, device and threads the run trained with (what a bit-for-bit repeat needs),
    and what differed in a session that resumed it (as compare.md words them: ``environment_in_words``)."""
    env = meta.get("environment")
    if not isinstance(env, dict):
        return ""
    said = environment_in_words(env)
    for session in meta.get("resumed_at") or []:
        changed = session.get("environment") if isinstance(session, dict) else None
        if isinstance(changed, dict) and environment_in_words(changed):
            when = f"at epoch {session['epoch']}" if "epoch" in session else "for its final evaluation"
            said += f"; resumed {when} with {environment_in_words(changed)}"
    return said


def _source(meta: dict[str, Any]) -> str:
    """Where the data came from (data.root), as training read it."""
    root = (meta.get("data_spec") or {}).get("root")
    return f" from {root}" if root else ""


def _split_sizes(meta: dict[str, Any]) -> str:
    sizes = meta.get("split_sizes") or {}
    shown = [f"{split} {sizes[split]:,}" for split in ("train", "val", "test") if is_count(sizes.get(split))]
    return f"; {', '.join(shown)} samples" if shown else ""


def _saved_config(directory: Path):
    """The run's config.yaml, read (None for runs built in Python, which have none)."""
    try:
        return load_saved_config(directory / CONFIG_FILE)
    except (PeerdistillError, OSError):
        return None


def _models_in_words(meta: dict[str, Any], saved) -> str:
    """Each model with its role, architecture and size, and where weights it began with came from
    (a frozen teacher's checkpoint: what its figures mean depends on what it was trained on)."""
    loaded = {}
    if saved is not None:
        specs = saved.all_teachers() + list(saved.students)
        loaded = {name: spec.checkpoint for name, spec in zip(saved.member_names(), specs) if spec.checkpoint}
    said = []
    for member in meta.get("members", []):
        name, spec = member.get("name", "?"), member.get("spec") or {}
        args = ", ".join(f"{k}={v}" for k, v in (spec.get("args") or {}).items())
        arch = f"{spec.get('arch', '?')}({args})" if args else str(spec.get("arch", "built in Python"))
        facts = [str(member.get("role", "?")), arch]
        if is_count(member.get("parameters")):
            facts.append(f"{member['parameters']:,} parameters")
        source = checkpoint_in_words(loaded[name], name) if name in loaded else None
        if member.get("frozen"):
            facts.append(f"frozen, from {source}" if source else "frozen")
        elif member.get("role") == "teacher":  # (review 56b: an online teacher was told only by "frozen" missing)
            facts.append(f"trained online, began from {source}" if source else "trained online")
        elif source:
            facts.append(f"began from {source}")
        said.append(f"{name} ({'; '.join(facts)})")
    return ", ".join(said)


def _distillation_in_words(meta: dict[str, Any]) -> str:
    """The preset and its knowledge edges, as run.json records them."""
    preset = f"preset {meta['preset']}" if meta.get("preset") else "edges given in Python"
    edges = [edge for edge in meta.get("edges") or [] if isinstance(edge, dict)]
    if not edges:
        return f"{preset}: no knowledge edge (each model learns from the labels alone)"
    shown = []
    for edge in edges:
        layers = f" {edge.get('target_layer')} <- {edge.get('source_layer')}" if edge.get("target_layer") else ""
        softened = f", T {edge.get('temperature'):g}" if edge.get("kind") in SOFTENED_KINDS and \
            isinstance(edge.get("temperature"), (int, float)) else ""
        weight = f"weight {edge['weight']:g}" if isinstance(edge.get("weight"), (int, float)) else "weight ?"
        shown.append(f"{edge.get('target')} <- {edge.get('source')} ({edge.get('kind')}{layers}, {weight}{softened})")
    return f"{preset}; {len(edges)} knowledge edge(s): {first_few(shown, 12)}"


def learning_curves_section(metrics: dict[str, Any], rampup_epochs: Any = None) -> str:
    epochs = metrics.get("epochs") or []
    if not epochs:
        return section_html("Learning curves", [note_html("metrics.json holds no epochs yet.")])
    monitor = metrics.get("monitor", "ensemble/accuracy")
    metric = monitor.split("/", 1)[1]
    best = metrics.get("best_epoch")
    if not validated(epochs):  # a run under train.val_every, read before its first validation
        return section_html("Learning curves", [
            note_html(f"No epoch has been validated yet (train.val_every: after every Nth epoch and the last), so "
                      f"there is no validation {metric} to draw."),
            figure_html(loss_curve_figure(epochs), loss_caption(epochs, rampup_epochs))])
    return section_html("Learning curves", [
        figure_html(monitor_curve_figure(epochs, metric, best),
                    f"validation {metric} per epoch of every model and the ensemble (dashed line: "
                    + ("the last epoch, standing in: the monitor was n/a in every epoch)"
                       if metrics.get("monitor_undefined") else f"best epoch by {monitor})")),
        figure_html(loss_curve_figure(epochs), loss_caption(epochs, rampup_epochs)),
    ])


def validated(epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the epochs validated (all, but under ``train.val_every``)."""
    return [row for row in epochs if any(k.startswith("val/") for k in row)]


def validation_series(epochs: list[dict[str, Any]], metric: str) -> dict[str, list[float]]:
    """``{model: [value per validated epoch]}`` from the ``val/<model>/<metric>`` columns."""
    suffix = f"/{metric}"
    rows = validated(epochs)
    names = list(dict.fromkeys(k[len("val/"):-len(suffix)] for row in rows for k in row
                               if k.startswith("val/") and k.endswith(suffix)))
    return {name: [as_number(row.get(f"val/{name}{suffix}")) for row in rows] for name in names}


def loss_series(epochs: list[dict[str, Any]]) -> dict[str, list[float]]:
    names = list(dict.fromkeys(k for row in epochs for k in row if k.startswith("train/loss/")))
    return {name[len("train/loss/"):]: [as_number(row.get(name)) for row in epochs] for name in names}


def monitor_curve_figure(epochs: list[dict[str, Any]], metric: str, best_epoch: int | None):
    x = [row["epoch"] for row in validated(epochs)]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in validation_series(epochs, metric).items():
        style = {"color": "black", "linewidth": 2.5} if name == ENSEMBLE else {}
        ax.plot(x, values, marker="o", markersize=3, label=legend_name(name), **style)
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
    return per_epoch_axes(fig, ax, f"validation {metric}", f"validation {metric}")


def loss_caption(epochs: list[dict[str, Any]], rampup_epochs: Any = None) -> str:
    """The loss figure's caption: knowledge terms are drawn as they entered the total, so during a
    ramp-up they rise with its factor alone (review 52a: read as students drifting from the teacher)."""
    text = ("every training loss term, mean over the epoch's steps; knowledge terms as they entered the total, "
            "times their edge's weight, T² for softened ones, and the ramp-up factor")
    ends = [(row["epoch"], row["rampup"]) for row in epochs if is_finite_number(row.get("rampup"))]
    # (the factor rises step by step; metrics.csv's rampup column is its value at each epoch's end,
    # so the epoch that ends at 1 was still ramped within: review 52h; run.json's rampup_epochs
    # says it of a one-epoch ramp-up too, whose every end is 1: review 52j)
    if is_count(rampup_epochs) and rampup_epochs > 0 and ends and ends[-1][0] >= rampup_epochs:
        done = rampup_epochs  # (run.json's count, over metrics.csv's ends: a one-epoch ramp-up ends each at 1)
    elif ends and ends[0][1] < 1:
        done = next((epoch for epoch, factor in ends if factor >= 1), None)
        if done is None:
            return text + (f" (under 1 in every epoch, {ends[-1][1]:.2f} at the last one's end, metrics.csv's rampup "
                           "column: a term rising may be the ramp-up alone)")
    else:
        return text
    return text + (f" (under 1 through epoch {done}, rising step by step: a term rising then may be the ramp-up alone; "
                   "metrics.csv's rampup column is the factor at each epoch's end)")


def loss_curve_figure(epochs: list[dict[str, Any]]):
    x = [row["epoch"] for row in epochs]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in loss_series(epochs).items():
        style = {"color": "black", "linewidth": 2.5} if name == "total" else {}
        ax.plot(x, values, marker="o", markersize=3, label=legend_name(name), **style)
    return per_epoch_axes(fig, ax, "loss", "training loss terms")


def test_table_section(meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    scores = metrics.get("test_at_best")
    if not scores:
        return section_html("Test metrics", [note_html(
            "no test metrics yet: they are written when training ends (the run's status is above).")])
    params, students = members_parameters(meta), student_names(meta)
    names = [k for k in dict.fromkeys(k for values in scores.values() for k in values) if not per_class_part(k)]
    rows = [[model, f"{params[model]:,}" if params.get(model) is not None else ""]
            + [fmt(values.get(name)) for name in names] for model, values in scores.items()]
    task = meta.get("task", "classification")
    auc = " The auc column is the macro average of the one-vs-rest areas." if (
        task == "classification" and meta.get("num_classes", 2) > 2) else ""
    tested = (meta.get("split_sizes") or {}).get("test")
    chosen = (f"the last epoch ({esc(metrics.get('best_epoch', '?'))}; validation {esc(metrics.get('monitor', '?'))} "
              "was n/a in every epoch, so none was chosen by it)" if metrics.get("monitor_undefined") else
              f"the best validation epoch ({esc(metrics.get('best_epoch', '?'))}, by {esc(metrics.get('monitor', '?'))})")
    caption = (f"<p>Test split{f' ({tested:,} samples)' if is_count(tested) else ''}, with the weights of {chosen}. "
               f"{esc(ENSEMBLE_RULES.get(task, ENSEMBLE_RULES['classification']).format(rule=fusion_in_words(meta)) + auc)}</p>")
    parts = [caption, table_html(["model", "parameters"] + names, rows)]
    meanings = [f"{name}: {metric_meaning(name, task)}" for name in names if metric_meaning(name, task)]
    summed = ensemble_parameters_note(students) if ENSEMBLE in scores and params.get(ENSEMBLE) is not None and len(
        students) > 1 else None
    # (review 55t: 0.8472 beside 0.8278 on 360 samples, without a word of how far chance moves them)
    interval = (f"Each figure is one training run's on these {tested:,} samples: eval RUN_DIR --bootstrap 1000 gives "
                "each its 95% interval over the samples, compare --seeds the spread over training runs."
                if is_count(tested) else None)
    for note in (ensemble_of_one_note(meta) if ENSEMBLE in scores else None, summed, _heads_note(scores, metrics),
                 interval,
                 f"The columns: {'; '.join(meanings)}." if meanings else None, distance_unit_note(meta),
                 region_note(meta)):
        if note:
            parts.append(note_html(note))
    for family, header, class_rows in per_class_tables(scores):
        parts += [f"<h3>{esc(family)} per class</h3>", table_html(header, class_rows)]
    return section_html("Test metrics", parts)


def config_section(directory: Path) -> str:
    """Every setting the run trained with: its config.yaml as the run saved it, defaults written
    out (review 55t: the page named no optimizer, learning rate, batch size, schedule or
    augmentation, which a reader of a paper's supplement needs)."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        return section_html("How it was trained", [note_html(
            "This run has no config.yaml (built in Python, or the file was removed): its run.json records the "
            "models, the knowledge edges and the speed settings; the optimizer's settings were the caller's.")])
    text = path.read_text(encoding="utf-8", errors="replace")
    return section_html("How it was trained", [
        "<p>The run's whole config, <code>config.yaml</code> as it trained (every key, defaults written out): "
        "the data and its augmentation, the models, the distillation, the optimizer and schedule, the epochs and "
        "batch size.</p>",
        f"<details><summary>config.yaml ({len(text.splitlines())} lines)</summary><pre>{esc(text)}</pre></details>"])


def _heads_note(scores: dict[str, Any], metrics: dict[str, Any]) -> str | None:
    """What a self-distilled run's extra rows are (review 52h: nothing said which model ships)."""
    roles = metrics.get("roles") or {}
    heads = [name for name in scores if roles.get(name) == "head"]
    if not heads:
        return None
    layers = [name for name in heads if not name.endswith("@ensemble")]
    said = (f"{', '.join(layers[:4])}{', ...' if len(layers) > 4 else ''}: self-distillation heads, small classifiers "
            "on the network's layers, trained with it and scored here; they are not part of the model that ships "
            "(export leaves them out)") if layers else ""
    if len(layers) < len(heads):
        said += ("; " if said else "") + ("NAME@ensemble: the network's own classifier averaged with its heads' "
                                          "(Be Your Own Teacher's ensemble), not shipped either")
    return f"{said}."


ENSEMBLE_RULES = {"classification": "The ensemble averages the students' probabilities.",
                  "segmentation": "The ensemble averages the students' probabilities, pixel by pixel.",
                  "detection": "The ensemble fuses the students' boxes by {rule}."}
