"""Run several presets with the same split and seeds; tabulate mean ± std: the paper's main table."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import numbers
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from .arguments import check_flags
from .terminal import Console
from .comparison_runs import (CHOSEN_ON_VAL, FROZEN_MARKS, REPLACE_MARK, by_way_of_reading, check_as_a_dry_run,
                              check_before_training, check_states, comparison_world, environments_apart,
                              mark_for_replacement, plan_runs, plan_table, run_all, run_records, settings_of,
                              warning_lines, warnings_of_runs)
from .comparison_context import pixels_counted, seeds_used, what_was_compared
from .comparison_students import first_records, heads_left_out_note, students_apart_note
from .config.run_spec import refuse_control_characters, refuse_long_names
from .comparison_configs import checked_bases, warn_of_presets_alike
from .config import NOT_THE_SPLIT, SEED_LIMIT, check_preset_names, named_as_written
from .engine.artifacts import atomic_write_text, csv_header
from .run_files import COMPARISON_TABLES, REPORT_FILE, RUN_FILE
from .engine.distributed import abandon, leave, on_main
from .launcher import launched, launched_world
from .engine.evaluate import ENSEMBLE
from .engine.tta import TTA_SEEN
from .post_hoc import check_post_hoc_options
from .errors import (ConfigError, DataNote, PeerdistillError, SplitError, TrainingAdvice, reworded, warn_again,
                     warn_user)
from .metrics import CALIBRATION_METRICS, headed, metric_family, ranking_score, unpaired_metric
from .operating_point import parse_rule
from .paired import (CSV_COLUMNS as DIFFERENCES_COLUMNS, FOLDS_CAVEAT, ONE_TEST_SPLIT_CAVEAT, READING_CAVEAT, caption,
                     default_baseline, difference_rows,
                     metrics_not_paired_note,
                     differences, differences_csv, two_pairs_caveat, unpaired_note)
from .report import (BEST_STUDENT, comparison_markdown, fitted, markdown_table, mean_std, model_order, seeds_cell,
                     teachers_named_in)
from .option_names import option
from .wording import shell_word

@dataclass
class Comparison:
    rows: list[dict[str, Any]]
    directory: Path
    markdown: str
    differences: list[dict[str, Any]] = field(default_factory=list)  # from the baseline (paired.differences)


# Runs per setting: more is a typo (each run trains a whole cohort).
MAX_SEEDS = 10_000
MAX_FOLDS = 1_000  # leave-one-out of up to 1,000 images; more folds than that is a typo


def _config_trees(configs: Any, config_names: list[str] | None) -> tuple[list[dict[str, Any]], list[str] | None]:
    """``compare``'s configs as trees: a dict or a list of them, a config file's path read as the
    command reads it (a path's characters were taken as configs, each failing in Python's words);
    with the names a message calls them by (a file by its path, as the command does)."""
    one = isinstance(configs, (dict, str, os.PathLike))
    try:
        given = [configs] if one else list(configs)
    except TypeError:
        raise ConfigError(f"compare takes a config tree (a dict, as peerdistill.config.load_yaml reads a file), a "
                          f"config file's path, or a list of them, got {_shown(configs)}") from None
    from .config.yaml_files import load_config_file

    trees = []
    for i, config in enumerate(given):
        if isinstance(config, (str, os.PathLike)):
            trees.append(load_config_file(config))
        elif isinstance(config, dict):
            trees.append(config)
        else:
            raise ConfigError(f"compare: config {i + 1} is {_shown(config)}; give config trees (dicts, as "
                              "peerdistill.config.load_yaml reads a file) or config files' paths")
    if config_names is None and any(isinstance(config, (str, os.PathLike)) for config in given):
        config_names = [f"config '{config}'" if isinstance(config, (str, os.PathLike)) else f"config {i + 1}"
                        for i, config in enumerate(given)]
    return trees, config_names


def _shown(value: Any) -> str:
    """A value a message names: its type and the start of its repr."""
    text = repr(value)
    return f"{text if len(text) <= 60 else text[:57] + '...'} (of type {type(value).__name__})"


def compare(configs: list[dict[str, Any] | str | Path] | dict[str, Any] | str | Path, presets: list[str] | None, seeds: int, *,
            overwrite: bool = False, progress: bool = True, console: Console | None = None,
            out: str | Path | None = None, teacher_from: str | None = None,
            dry_run: bool = False, jobs: int = 1, operating_point: str | None = None,
            folds: int | None = None, baseline: str | None = None,
            temperature_scaling: bool = False, tta: str | None = None, by_name: bool = False,
            config_names: list[str] | None = None) -> Comparison:
    """Run every (config, preset) setting with seeds ``seed, seed+1, ...`` and tabulate them.

    ``configs`` are unvalidated config mappings, or config files' paths (read as the command
    reads them). Each config runs ``presets`` if given, else its
    own preset. Rows are labelled by preset when there is one config, else by config name (and
    preset, when ``presets`` is given). The data split
    (``data.split_seed``) is each config's own and the same for all its runs. Finished runs
    with the same config are reused, unfinished ones (a
    killed comparison) continue from their last checkpoint.

    ``teacher_from`` (a preset) trains the teachers first, offline distillation's way: that
    preset's runs come first, and every other setting's run of seed ``s`` freezes the teachers
    as that preset's run of seed ``s`` saved them (labelled ``PRESET (frozen teacher)``, or
    ``(frozen teachers)`` for a config of several).

    ``dry_run``: print what each run would do (train, continue, reuse) and stop, writing nothing.

    Under torchrun every process trains each run in turn (one process group for the whole
    comparison; the first process decides what each run needs and writes the tables, the
    others get an empty ``Comparison``).

    ``jobs``: how many runs train at once, each in its own process (CPU threads shared out
    between them; on one GPU they share it; with several, each worker takes one in turn, see
    ``comparison_runs.gpus_to_share``).

    ``folds``: k-fold cross-validation: each seed runs once per fold, with that fold of the data
    as its test split (``data.folds``, ``data.fold``); mean ± std are then over folds and seeds.

    ``operating_point`` (two-class classification; see ``operating_point.py``): each run's
    models are also scored on the test split at the threshold the rule picks on its validation
    split, tabulated as ``op_threshold``, ``op_sensitivity``, ... like any metric.

    ``temperature_scaling`` (classification; see ``calibration.py``): each run's models are
    also tempered with the temperature fitted on its validation split and tabulated as
    ``cal_temperature``, ``cal_ece``, ``cal_brier``.

    ``tta`` (``hflip`` or ``flips``; classification, segmentation): each run's models are also
    scored with their probabilities averaged over flips of the test images (``engine/tta.py``),
    tabulated as ``tta_METRIC`` beside each metric.

    ``by_name``: rows labelled by config name even for one config (``--setting`` variants).
    ``config_names``: what a message calls each config (the command line: its file), else its
    position ("config 2").

    ``baseline`` (a setting's label; default ``independent`` when compared, else the first
    setting): every other setting's runs minus the baseline's of the same seed (and fold), with
    a 95% confidence interval (``paired.py``), in compare.md, differences.csv and on the console."""
    check_flags("compare", overwrite=overwrite, progress=progress, dry_run=dry_run,
                temperature_scaling=temperature_scaling, by_name=by_name)
    rule = _checked_options(presets, seeds, jobs, folds, operating_point)
    configs, config_names = _config_trees(configs, config_names)
    if not configs:
        raise ConfigError("compare needs at least one config")
    # a config without a name is named as it is written, not after the preset --presets gives its first run
    configs = [named_as_written(config) for config in configs]
    console = console or Console()
    if config_names is not None and len(config_names) != len(configs):
        raise ConfigError(f"config_names names {len(config_names)} configs; {len(configs)} were given")
    labels_of_configs = config_names or [f"config {i + 1}" for i in range(len(configs))]
    bases = checked_bases(configs, presets, labels_of_configs)
    warn_of_presets_alike(bases, presets, labels_of_configs)
    _check_seeds_fit(bases, seeds)
    directory = _comparison_folder(bases, labels_of_configs, out, one_row_per_preset=len(configs) == 1 and not by_name)
    for base in bases:  # the number of classes and the input shape are checked once the data is read
        check_post_hoc_options(base.task, operating_point=rule is not None, temperature_scaling=temperature_scaling,
                               tta=tta, of="comparison")
    settings = settings_of(configs, bases, presets, teacher_from, by_name)
    labels = [setting.label for setting in settings]
    if baseline is not None and baseline not in labels:
        raise ConfigError(f"{option('--baseline', repr(baseline))} is not one of the compared settings: "
                          f"{', '.join(labels)}")
    baseline = baseline or default_baseline(labels)
    if folds:
        _check_foldable(bases)
        _note_test_fraction_unused(configs, labels_of_configs, folds)
    plans = plan_runs(settings, seeds, directory, folds)  # every run's config, checked before any trains
    if folds:
        _check_folds_fit(plans, folds)
    if launched_world()[0] != 0:  # under torchrun the first process alone reports
        console = Console(quiet=True)
    # which run starts, is reused or is done: progress, on stderr where the tables go to stdout (a
    # script reads them there); a console writing elsewhere (a caller's buffer) gets both
    status = Console(stderr=True, soft_wrap=True, quiet=console.quiet) if console.file is sys.stdout else console
    reads = rule is not None or temperature_scaling or tta is not None  # (from every run's saved weights and data)
    if rule is not None:  # the number of classes is known once the data is read: before anything trains
        check_before_training(plans, build=False, two_classes=True, reused_read_data=True)
    if dry_run:
        console.print(plan_table(plans, overwrite))
        paired = _paired_with(baseline, plans)
        apart = [label for label in labels if label not in paired]
        if apart:  # said before the compute is spent, as the tables would say it after (review 47b)
            console.print(f"note: {unpaired_note(baseline, apart)} Their rows would be scored on other data; "
                          "no paired difference would be given for them.", highlight=False, soft_wrap=True)
        check_as_a_dry_run(plans, overwrite, reads)  # what the command would refuse, said after the plan
        return Comparison([], directory, "")
    # What would stop a run, found before any trains: a later config's mistake would else cost the
    # earlier configs' runs first, and --overwrite marks finished runs and removes the tables.
    replacing = overwrite and any((plan.run_dir / RUN_FILE).is_file() for plan in plans)
    check_states(plans, overwrite)
    check_before_training(plans, build=len(configs) > 1 or replacing, two_classes=False, overwrite=overwrite,
                          reused_read_data=reads)
    results = _train_all(plans, directory, overwrite, progress, status, jobs)
    if results is None:  # under torchrun the tables are the first process's
        return Comparison([], directory, "")
    _remove_stale_table_writes(directory)
    runs = _scored_runs(plans, results, directory, rule, temperature_scaling, tta)
    alike = teachers_trained_alike(plans, runs)
    records = run_records([directory / run["run"] for run in runs])  # each run.json read once
    by_setting: dict[str, list[Path]] = {}
    for run in runs:
        by_setting.setdefault(run["setting"], []).append(directory / run["run"])
    counted = pixels_counted(records)  # (a field of view: DRIVE's figures are of its pixels alone)
    compared = (f"{what_was_compared(records, plans)}" + (f" {counted}" if counted else "")
                + f"\n\n{seeds_used(by_setting, records)}")
    header = (_header(runs, seeds, folds, rule, temperature_scaling, tta, teacher_from, compared)
              + _teachers_alike_note(alike))
    return _tabulate(runs, plans, labels, baseline, directory, header, console, status, seeds, folds, alike, records)


def _checked_options(presets: list[str] | None, seeds: int, jobs: int, folds: int | None,
                     operating_point: str | None):
    """compare's counts and names as given (from Python or the command line), checked before any
    config is read; the operating-point rule parsed (None without one)."""
    _check_counts(seeds=seeds, jobs=jobs, folds=folds)
    if presets is not None:  # (the command line's are checked as it reads them)
        if isinstance(presets, str) or not presets:
            raise ConfigError(f"presets must be a list of preset names such as ['kd', 'kd+ml'], got {presets!r}")
        check_preset_names("presets", list(presets))
    rule = parse_rule(operating_point) if operating_point else None
    if not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"{option('--seeds')} must be 1 to {MAX_SEEDS:,} (got {seeds:,}): runs per setting")
    if jobs < 1:
        raise ConfigError(f"{option('--jobs')} must be at least 1")
    if folds is not None and not 2 <= folds <= MAX_FOLDS:
        raise ConfigError(f"{option('--folds')} must be 2 to {MAX_FOLDS} (got {folds}): each fold is the test split "
                          "of one run")
    if jobs > 1 and launched():
        raise ConfigError(f"{option('--jobs')} starts processes of its own, which would join torchrun's process "
                          f"group: drop {option('--jobs')}, or run compare without torchrun")
    return rule


def _check_seeds_fit(bases, seeds: int) -> None:
    """Each run's seed is checked as its config is made: said for all of them before any is."""
    for base in bases:
        if base.seed + seeds - 1 >= SEED_LIMIT:
            raise ConfigError(f"{option('--seeds', str(seeds))} from seed {base.seed} reaches seed "
                              f"{base.seed + seeds - 1}, past the largest, {SEED_LIMIT - 1}: lower seed= or "
                              f"{option('--seeds')}")


def _comparison_folder(bases, labels: list[str], out: str | Path | None, one_row_per_preset: bool) -> Path:
    """Where the comparison's runs and tables go: ``out``, else beside the first config's runs
    (``NAME-compare`` for one config's presets, ``compare`` for several configs, whose run
    folders are named after them and so must differ)."""
    if out is not None:  # (as a config's out_dir is checked: review 55j, 55n)
        try:
            refuse_control_characters(option("--out"), str(out))
            refuse_long_names(option("--out"), Path(out).parts)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if one_row_per_preset:
        directory = Path(out) if out else Path(bases[0].out_dir) / f"{bases[0].name}-compare"
    else:
        names = [b.name for b in bases]
        twice = next(((i, names.index(n)) for i, n in enumerate(names) if names.index(n) != i), None)
        if twice is not None and labels[twice[1]] == labels[twice[0]]:  # (review 51f: told to rename it)
            raise ConfigError(f"compare: {labels[twice[0]]} is given twice: give it once (its runs over several "
                              f"seeds: {option('--seeds')})")
        if twice is not None:
            raise ConfigError(f"compare: {labels[twice[1]]} and {labels[twice[0]]} are both named "
                              f"'{names[twice[0]]}' (a config without name: is named after its data and preset), "
                              "and rows and run folders are named after configs: give each config its own `name`")
        directory = Path(out) if out else Path(bases[0].out_dir) / "compare"
    if (directory / RUN_FILE).is_file():  # a mistyped --out: its runs and tables would nest inside that run
        raise ConfigError(f"'{directory}' is a training run's folder: give the comparison a folder of its own "
                          f"({option('--out')})")
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"'{directory}' is a file: the comparison writes a folder of runs and tables; give another "
                          f"{option('--out')}")
    for name in COMPARISON_TABLES:
        if (directory / name).is_file() and not _a_table_compare_wrote(directory / name):  # (review 48b)
            raise ConfigError(f"'{directory / name}' exists and is not a table compare wrote, which the comparison "
                              f"would replace: move it, or give the comparison another folder ({option('--out')})")
    return directory


COMPARE_MD_TITLE = "# peerdistill compare"  # compare.md's first line
CSV_COLUMNS = ["setting", "model", "metric", "mean", "std", "n", "values", "runs"]  # compare.csv's
# How each of compare's tables begins (as earlier versions wrote them too, without the later
# columns): a file of that name beginning otherwise is a user's, never replaced
_TABLE_STARTS = {"compare.csv": CSV_COLUMNS[:5], "differences.csv": list(DIFFERENCES_COLUMNS[:4])}


def _a_table_compare_wrote(path: Path) -> bool:
    """compare's own compare.csv, compare.md or differences.csv (or an empty file: nothing to lose)."""
    if path.suffix == ".md":
        try:
            with open(path, encoding="utf-8-sig", errors="replace") as fh:
                first = fh.readline().strip()
        except OSError:
            return False
        return first in ("", COMPARE_MD_TITLE)
    header = csv_header(path)
    return header is not None and (not header or header[:len(_TABLE_STARTS[path.name])] == _TABLE_STARTS[path.name])


def _train_all(plans, directory: Path, overwrite: bool, progress: bool, status: Console,
               jobs: int) -> list[dict[str, Any]] | None:
    """Every planned run trained, continued or reused: each one's metrics, in plan order (None in
    the other processes under torchrun, which train but do not report)."""
    world = comparison_world(plans)  # under torchrun: one process group for every run
    try:
        if overwrite:
            on_main(world, lambda: _replace(plans, directory))
        results = run_all(plans, overwrite, progress, status, jobs, world)
    except PeerdistillError as exc:
        abandon(world)
        if overwrite and any((plan.run_dir / REPLACE_MARK).is_file() for plan in plans):
            raise reworded(exc, f"{exc}. ({option('--overwrite')} has marked the comparison's runs for replacement: once "
                            f"this is fixed, the same call without {option('--overwrite')} replaces only the runs still "
                            "marked; to keep "
                            f"them as they are, delete the files {REPLACE_MARK} in them)") from None
        raise
    except BaseException:
        abandon(world)
        raise
    leave(world)
    return None if world.distributed and not world.is_main else results


def _scored_runs(plans, results: list[dict[str, Any]], directory: Path, rule, temperature_scaling: bool,
                 tta: str | None) -> list[dict[str, Any]]:
    """One entry per run (setting, seed, fold, folder, metrics), its metrics with the figures the
    post-hoc options add (``op_*``, ``cal_*``, ``tta_*``) from its saved best weights."""
    runs = [{"setting": plan.label, "seed": plan.cfg.seed, "fold": plan.fold, "run": plan.run_dir.name,
             "metrics": metrics} for plan, metrics in zip(plans, results)]
    own_archs = {m.arch for plan in plans for m in (plan.cfg.teacher, *plan.cfg.teachers, *plan.cfg.students) if m}
    if rule is not None or temperature_scaling:
        for run in runs:
            run["metrics"] = _with_chosen_on_val(run["metrics"], directory / run["run"], rule, temperature_scaling,
                                                 own_archs)
    if tta is not None:
        for run in runs:
            run["metrics"] = _with_flips(run["metrics"], directory / run["run"], tta, own_archs)
    return runs


def _tabulate(runs: list[dict[str, Any]], plans, labels: list[str], baseline: str, directory: Path, header: str,
              console: Console, status: Console, seeds: int, folds: int | None, alike: list[str],
              records: dict[Path, dict[str, Any]]) -> Comparison:
    """The runs' figures (mean ± std per setting, model and metric) and paired differences from
    the baseline: written to compare.md, compare.csv and differences.csv, and printed (the
    tables and the notes that read them on ``console``; what is said of the folder on ``status``).
    ``alike``: teachers left out of the differences, having trained alike in every setting; ``records``:
    the runs' run.json by folder (``run_records``)."""
    rows = aggregate(runs)
    models = model_order([r["model"] for r in rows], teachers_named_in(run["metrics"] for run in runs))
    metric_names = list(dict.fromkeys(r["metric"] for r in rows))
    monitor_metric = runs[0]["metrics"]["monitor"].split("/", 1)[1]
    paired = _paired_with(baseline, plans)
    diffs = [d for d in differences(rows, baseline, paired, folds) if d["model"] not in alike]
    differing = [m for m in models if m not in alike]
    apart = [label for label in labels if label != baseline and not any(d["setting"] == label for d in diffs)]
    # (some setting off the baseline's split: the settings span more than one test set)
    paths = [directory / run["run"] for run in runs]
    note = _other_data_note(runs, paths, records, labels) if any(label not in paired for label in labels) else None
    if note:  # rows of other test sets side by side: said above the tables
        header += f"\n{note}\n"
        console.print(note)
    unlike = environments_apart(records)
    if unlike:
        header += f"\n{unlike}\n"
        console.print(f"note: {unlike}", highlight=False, soft_wrap=True)
    by_setting: dict[str, list[Path]] = {}
    for run, path in zip(runs, paths):
        by_setting.setdefault(run["setting"], []).append(path)
    # (review 56b: a plain config's student1 against a multi-teacher config's smaller one, unsaid)
    unlike_students = students_apart_note(first_records(by_setting, records), baseline,
                                          [label for label in labels if label not in apart]) if diffs else None
    if diffs:
        if not unpaired_metric(monitor_metric):  # (its caption names the settings left out)
            header += (f"\n### test {monitor_metric}: paired differences from {baseline}\n\n"
                       + caption(baseline, monitor_metric, _most_pairs(diffs, monitor_metric), folds, apart) + "\n\n"
                       + markdown_table(["setting"] + differing,
                                        difference_rows(diffs, labels, differing, monitor_metric)) + "\n")
        elif apart:  # no caption to name them (review 52i: lost)
            header += f"\n{unpaired_note(baseline, apart)}\n"
        if unlike_students:
            header += f"\n{unlike_students}\n"
        if unpaired := metrics_not_paired_note(list(dict.fromkeys(map(metric_family, metric_names)))):
            header += f"\n{unpaired}; differences.csv holds the others'.\n"
    elif apart:  # several settings, none comparable: say so rather than leave the differences out in silence
        header += f"\n{unpaired_note(baseline, apart)}\n"
        console.print(unpaired_note(baseline, apart))
    metrics = {path: run["metrics"] for path, run in zip(paths, runs)}
    given = warnings_of_runs(paths, records, metrics) + _chosen_on_val_warnings(runs)
    if given:  # after the paired differences: compare.md's opening paragraph stays the tables' caption
        header += f"\n{_warnings_section(given, len(runs))}\n"
        status.print(f"note: the runs gave {len(given)} warning(s), listed in compare.md: "
                      + "; ".join(text[:80] + ("..." if len(text) > 80 else "") for text, _ in given[:2]),
                      highlight=False, soft_wrap=True)
    tables = {"compare.csv": _csv(rows), "compare.md": comparison_markdown(rows, labels, models, metric_names, header)}
    if diffs:
        tables["differences.csv"] = differences_csv(diffs)
    if any(_bytes_of(directory / name) != text.encode() for name, text in tables.items()):  # (the same tables: still current)
        _say_if_a_report_is_left(directory, status)
    for name, text in tables.items():
        atomic_write_text(directory / name, text)
    if not diffs:  # one setting: an earlier comparison's differences in this folder no longer hold
        (directory / "differences.csv").unlink(missing_ok=True)
    written = [directory / name for name in tables]
    markdown = tables["compare.md"]
    over = "one seed" if _runs_count(seeds, folds) == 1 else _runs_per_setting(seeds, folds)
    console.print(fitted(_rich_table(rows, labels, models, monitor_metric, over), console.width))
    if heads := heads_left_out_note([r["model"] for r in rows]):
        console.print(f"note: {heads}", highlight=False, soft_wrap=True)
    if counted := pixels_counted(records):  # (as train's and eval's tables say it)
        console.print(f"note: {counted}", highlight=False, soft_wrap=True)
    if diffs and unpaired_metric(monitor_metric):  # (the console's table is of the monitor's differences)
        console.print(f"{metrics_not_paired_note([metric_family(monitor_metric)])}; differences.csv holds the "
                      "other figures' paired differences", highlight=False, soft_wrap=True)
        if apart:
            console.print(unpaired_note(baseline, apart))
    elif diffs:
        headline = [m for m in (BEST_STUDENT, ENSEMBLE) if m in models]
        pairs = _most_pairs(diffs, monitor_metric)
        console.print(fitted(_differences_table(diffs, labels, headline, monitor_metric, baseline, pairs),
                             console.width))
        if apart:  # (compare.md's caption says it too: the console table alone left them out in silence)
            console.print(unpaired_note(baseline, apart))
        console.print(READING_CAVEAT)
        console.print(FOLDS_CAVEAT if folds else ONE_TEST_SPLIT_CAVEAT)
        if pairs == 2:
            console.print(two_pairs_caveat(folds))
    if unlike_students:  # (after the differences it qualifies, or the note that they are in differences.csv)
        console.print(f"note: {unlike_students[0].lower()}{unlike_students[1:]}", highlight=False, soft_wrap=True)
    console.print(f"wrote {', '.join(map(str, written[:-1]))} and {written[-1]}")
    return Comparison(rows, directory, markdown, diffs)


def teachers_trained_alike(plans, runs: list[dict[str, Any]]) -> list[str]:
    """The online teachers whose every per-epoch figure (losses, learning rate, validation) is the
    same in the runs of each seed and fold, whatever the setting: they learnt from the labels
    alone in every setting (as in independent, kd and kd+ml), so their columns differ between
    settings only by the epoch each run's monitor picked (review 47b read that as the preset
    changing the teacher; 49b found intervals excluding 0 for it). Judged on the figures, not on
    the configs: a setting may change the teacher's training in ways no config field names alone."""
    if len({run["setting"] for run in runs}) < 2:
        return []
    online = {name for plan in plans
              for teacher, name in zip(plan.cfg.all_teachers(), plan.cfg.member_names()) if not teacher.frozen}
    pairs: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        pairs.setdefault((run["seed"], run["fold"]), []).append(run)
    compared = [group for group in pairs.values() if len(group) > 1]
    return sorted(name for name in online
                  if compared and all(_trained_alike([run["metrics"] for run in group], name) for group in compared))


def _trained_alike(metrics_files: list[dict[str, Any]], model: str) -> bool:
    """Whether ``model``'s figures are equal epoch by epoch over the epochs every run has (a run
    stopped early by its monitor has fewer), to a millionth: runs reused from another process or
    thread count differ in the last digits of a sum (review 50h: 1e-8 kept a teacher in)."""
    histories = [[{key: value for key, value in epoch.items() if model in key.split("/")}
                  for epoch in (metrics.get("epochs") or [])] for metrics in metrics_files]
    shared = min(map(len, histories))
    return shared > 0 and all(_figures_alike(mine, first) for history in histories[1:]
                              for mine, first in zip(history[:shared], histories[0][:shared]))


def _figures_alike(mine: dict[str, Any], first: dict[str, Any]) -> bool:
    return mine.keys() == first.keys() and all(
        math.isclose(value, first[key], rel_tol=1e-6, abs_tol=1e-9)
        if isinstance(value, float) and isinstance(first[key], float) else value == first[key]
        for key, value in mine.items())


def _teachers_alike_note(alike: list[str]) -> str:
    if not alike:
        return ""
    named = ", ".join(f"`{name}`" for name in alike)
    one = len(alike) == 1
    return (f"\nThe teacher columns: {named} trained alike in every setting (the same figures epoch by epoch in the "
            f"runs of each seed), learning from the labels alone. Each column shows {'it' if one else 'each'} at the "
            f"epoch its run's monitor picked, so {'its' if one else 'their'} figures differ between settings by that "
            f"choice of epoch alone, not by the setting; {'it is' if one else 'they are'} left out of the paired "
            "differences.\n")


SHOWN_WARNINGS = 10  # more would bury the tables: every run's run.json lists its own


def _warnings_section(given: list[tuple[str, list[str]]], count: int) -> str:
    """compare.md's list of the warnings the runs gave as training began and ended, each once,
    with how many gave it."""
    lines = [f"- {line}" for line in warning_lines(given[:SHOWN_WARNINGS], count)]
    if len(given) > SHOWN_WARNINGS:
        lines.append(f"- and {len(given) - SHOWN_WARNINGS} more: each run lists its own (run.json's "
                     "`training_warnings`, metrics.json's `ending_warnings`)")
    return "### Warnings the runs gave\n\n" + "\n".join(lines) + "\n"


def _header(runs, seeds: int, folds: int | None, rule, temperature_scaling: bool, tta: str | None,
            teacher_from: str | None, compared: str) -> str:
    """compare.md's opening: what the tables hold, what was compared (``compared``), and how each
    extra kind of table was made."""
    monitor = runs[0]["metrics"]["monitor"]
    monitors: dict[str, str] = {}
    for run in runs:
        monitors.setdefault(run["setting"], run["metrics"]["monitor"])
    if len(set(monitors.values())) == 1:
        picked = f"(monitor `{monitor}`)", f"the best validation {monitor.split('/', 1)[1]}"
    else:  # each setting picked by its own: said, since 'best student' differences then mix two rules
        picked = ("(each setting's own monitor: " + "; ".join(f"`{s}`: `{m}`" for s, m in monitors.items()) + ")",
                  "the best validation score by its setting's monitor (settings picked by different monitors "
                  "differ in that rule too)")
    header = (f"{COMPARE_MD_TITLE}\n\nTest-split metrics at the best-validation epoch "
              f"{picked[0]}, {_spread(seeds, folds)} per setting "
              f"(each config's seed, seed+1, ...; its data split seed stays fixed{_folds_note(folds)}). "
              f"'{BEST_STUDENT}' is, "
              f"in each run, the student with {picked[1]}. "
              f"Self-distillation heads are in compare.csv.\n\n{compared}\n")
    if rule is not None:
        tempered = (", on the probabilities tempered as in the `cal_*` tables (the threshold is on that scale, as export "
                    "and predict apply it)" if temperature_scaling else "")
        header += (f"\nThe `op_*` tables: each model at the decision threshold `{rule}` picks on its run's validation "
                   f"split{tempered} (positive: the second class), scored on the test split.\n")
    if temperature_scaling:
        header += ("\nThe `cal_*` tables: each model tempered by the temperature (`cal_temperature`) that fits its "
                   "run's validation split, scored on the test split (`cal_ece`, `cal_brier`; untempered: `ece`, "
                   "`brier`).\n")
    if tta is not None:
        header += (f"\nThe `tta_*` tables: each model's probabilities averaged over {TTA_SEEN[tta]} (`--tta {tta}`; masks "
                   "mirrored back), scored on the test split as the untouched figures are.\n")
    if teacher_from is not None:
        marks = "' or '".join(m for m in FROZEN_MARKS if any(run["setting"].endswith(m) for run in runs))
        header += (f"\nSettings marked '{marks}' distil from the teachers of the `{teacher_from}` run "
                   f"of the same seed{' and fold' if folds else ''}, frozen (as that run saved them: at its "
                   "best epoch).\n")
    return header


def _differences_table(diffs, labels: list[str], models: list[str], metric: str, baseline: str, pairs: int) -> Table:
    """The console's table of paired differences from the baseline, for the headline models."""
    interval = " [95% CI]" if pairs > 1 else " (one pair: no interval)"
    table = Table(title=escape(f"{headed(metric)}, paired difference from {baseline}{interval}"))
    for column in ["setting"] + models:
        table.add_column(escape(column), justify="left" if column == "setting" else "right")
    for row in difference_rows(diffs, labels, models, metric):
        table.add_row(*map(escape, row))
    return table


def _check_foldable(bases) -> None:
    """Data that gives its own test split is refused before any run is planned (its loader would
    refuse it only when that run starts, after the other configs' runs)."""
    from .data.sources import given_test_split

    for where in dict.fromkeys(given_test_split(base.data) for base in bases):
        if where:
            raise ConfigError(f"{option('--folds')} cuts one set into folds, but {where} gives its own test split: drop "
                              f"{option('--folds')}, "
                              "or put every image in one set to cross-validate")


def _note_test_fraction_unused(configs: list[dict[str, Any]], labels: list[str], folds: int) -> None:
    """A config's own ``data.test_fraction`` gives way to the folds' test split (one of ``folds``):
    said, as its test share would else change without a word (train refuses the two together)."""
    for config, label in zip(configs, labels):
        fraction = (config.get("data") or {}).get("test_fraction")
        if fraction is not None and fraction != 1 / folds:
            warn_user(f"{label} sets data.test_fraction {fraction}, which {option('--folds', str(folds))} replaces: "
                      f"each run tests on one fold, 1/{folds} of the data; remove data.test_fraction to silence this",
                      DataNote)


def _check_folds_fit(plans, folds: int) -> None:
    """Each config's data cut into ``folds`` once (fold 0), before any run trains: more folds than
    a class has samples would else stop the first run of that config, after the earlier ones."""
    from .data import build_data

    read: dict[Path, Any] = {}  # (each set of mask folders' classes per mask, by its first run: decoded once)
    for plan in (group[0] for group in by_way_of_reading(plans)):
        try:
            with warnings.catch_warnings():  # (fold 0's val: each fold's run says its own, review 50c)
                warnings.filterwarnings("ignore", category=TrainingAdvice)
                data = build_data(plan.cfg.data)
        except PeerdistillError as exc:
            raise reworded(exc, f"{option('--folds', str(folds))}: {plan.describe()}: {exc}") from None
        if plan.cfg.task == "segmentation" and plan.cfg.data.kind == "folders":  # (read_mask_labels' kind)
            read[plan.run_dir] = _classes_of_masks(data)
        del data  # each read dropped before the next
    _check_every_fold_trains_every_class(plans, read)


def _classes_of_masks(data) -> tuple[list, list[str]]:
    """The classes each mask of a set cut from one folder holds, and the ids in reading order
    (sorted, as ``read_mask_labels`` gives them), from a fold's splits: together they hold the
    whole set, each mask as training reads it."""
    import numpy as np

    from .data.segmentation import IGNORE

    named = {name: mask for part, split in ((data.train, "train"), (data.val, "val"), (data.test, "test"))
             for name, mask in zip(data.info["files"][split], part.y.numpy())}
    ids = sorted(named)
    return [np.unique(named[i][named[i] != IGNORE]) for i in ids], ids


def _check_every_fold_trains_every_class(plans, read: dict[Path, Any]) -> None:
    """Every fold dealt before any run trains, as its loader will deal it: a fold whose training
    split would hold no sample of a class (no image of it; in segmentation, no pixel), or that
    its groups cannot fill, is refused naming the fold (reviews 49b and 50c: found as that fold
    began, after the folds before it had trained). Classification folds without groups are
    stratified by class, so every fold has each (more folds than a class holds are refused).
    ``read``: the classes per mask ``_classes_of_masks`` gave, by the first run of its data."""
    checked = [plan for plan in plans if plan.cfg.data.folds and (
        plan.cfg.task == "segmentation" or (plan.cfg.task == "classification"
                                            and (plan.cfg.data.group_pattern or plan.cfg.data.group_column)))]
    for group in by_way_of_reading(checked):
        spec = group[0].cfg.data
        try:
            present, class_names, train_part = _classes_per_sample(group[0].cfg.task, spec, read.get(group[0].run_dir))
        except PeerdistillError:  # (said as the runs' data is read, with their context)
            continue
        first_of_each_fold: dict[int, Any] = {}  # (the first seed's run, named as the first to stop)
        for plan in group:
            first_of_each_fold.setdefault(plan.cfg.data.fold, plan)
        for plan in first_of_each_fold.values():
            fold = f"fold {plan.cfg.data.fold} of {spec.folds}"
            try:
                train = train_part(plan.cfg.data)
            except SplitError as exc:
                raise reworded(exc, f"{plan.describe()}: {fold}: {exc}; or try another data.split_seed or fewer "
                                    "folds") from None
            lacking = [name for c, name in enumerate(class_names)
                       if present[:, c].any() and not present[train, c].any()]
            if lacking:
                pixels = plan.cfg.task == "segmentation"
                stratify = "" if pixels or spec.group_stratify else ", or data.group_stratify=true"
                raise ConfigError(f"{plan.describe()}: {fold} would train on no {'pixel' if pixels else 'image'} of "
                                  f"class(es) {lacking[:5]}: {_why_a_fold_lacks(spec)}; try another data.split_seed, "
                                  f"fewer folds{stratify}")


def _why_a_fold_lacks(spec) -> str:
    if spec.group_pattern or spec.group_column:
        key = "data.group_column" if spec.group_column else "data.group_pattern"
        return f"{key} keeps each group whole, and the groups holding that class all fall in its val and test splits"
    return "the images holding that class all fall in its val and test splits"


def _classes_per_sample(task: str, spec, read=None):
    """The whole set read once (classification: files, labels and groups listed, no image
    decoded; segmentation: the masks read, unless ``read`` gives their classes and ids already):
    which classes each sample holds ([N, C] booleans), the class names, and a function giving a
    fold's training indices as the loader cuts them."""
    import numpy as np

    from .data import build_data
    from .data.image_files import group_split, listed_only
    from .data.segmentation import (IGNORE, cut_by_groups_or_folds, declared_class_count, default_class_names,
                                    read_mask_labels)
    from .data.splits import group_ids, kept_whole

    if task == "classification":
        with kept_whole(), listed_only():
            whole = build_data(spec)
        names = whole.info["files"]["test"]
        labels = whole.test.y.numpy()
        groups = (whole.info.get("sample_groups") or {}).get("test") or group_ids(names, spec.group_pattern)
        present = np.eye(whole.num_classes, dtype=bool)[labels]
        return present, whole.class_names, lambda fold_spec: group_split(groups, labels, fold_spec)[0]
    if read is None:
        masks, ids = read_mask_labels(spec)  # (the masks alone: its images are read as each run starts)
        read = [np.unique(m[m != IGNORE]) for m in masks], ids
    labels, ids = read
    seen = int(max((u.max(initial=0) for u in labels), default=0)) + 1
    k = declared_class_count(seen, spec.num_classes, spec.class_names)
    present = np.zeros((len(labels), k), dtype=bool)
    for i, held in enumerate(labels):
        present[i, held[held < k]] = True
    names = default_class_names(k, spec.class_names)
    return present, names, lambda fold_spec: cut_by_groups_or_folds(ids, fold_spec)[0]


def _check_counts(**counts) -> None:
    """Counts given from Python must be whole numbers (the command line's are)."""
    for name, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")


def _most_pairs(diffs: list[dict[str, Any]], metric: str) -> int:
    """The most pairs a difference in ``metric`` has (seeds, or folds; fewer where runs gave no number)."""
    return max((d["difference"].pairs for d in diffs if d["metric"] == metric), default=0)


def _runs_count(seeds: int, folds: int | None) -> int:
    return seeds * (folds or 1)


def _runs_per_setting(seeds: int, folds: int | None) -> str:
    return f"{folds} folds x {seeds} seed(s)" if folds else f"{seeds} seed(s)"


def _spread(seeds: int, folds: int | None) -> str:
    if _runs_count(seeds, folds) == 1:
        return "one run (seed) per setting, so no std"
    return f"mean ± sample std over {_runs_per_setting(seeds, folds)}"


def _folds_note(folds: int | None) -> str:
    if not folds:
        return ""
    return (f"; k-fold cross-validation: each seed's {folds} runs take fold 0 .. {folds - 1} of the data as "
            "their test split, and cut val from the other folds")


def _bytes_of(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _say_if_a_report_is_left(directory: Path, console: Console) -> None:
    """A report.html of the tables about to be rewritten describes them as they were (other
    options, runs since reused or added): said, with how to write it again."""
    if (directory / REPORT_FILE).is_file():
        from .html_report.writing import edited_since_written, is_report_page  # (matplotlib: only with one there)

        page = directory / REPORT_FILE
        again = (f"peerdistill report {shell_word(directory)} writes it again for these"
                 if is_report_page(page) and not edited_since_written(page) else
                 f"peerdistill report {shell_word(directory)} --out OTHER.html writes these (report keeps a page it "
                 "did not write, or one edited since)")
        console.print(f"note: '{directory / REPORT_FILE}' is of the tables as they were before: {again}",
                      highlight=False, soft_wrap=True)


STALE_SECONDS = 600  # a table is written in well under a second: a temporary file older is a killed process's


def _remove_stale_table_writes(directory: Path) -> None:
    """The temporary files of table writes a killed compare left (``.compare.csv.XXXX.tmp``:
    ``atomic_write_text``'s); recent ones may be another compare's, writing now."""
    for name in COMPARISON_TABLES:
        for tmp in directory.glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):
                if time.time() - tmp.stat().st_mtime > STALE_SECONDS:
                    tmp.unlink()


def _replace(plans, directory: Path) -> None:
    """``--overwrite``: each existing run marked for replacement, and the tables and report of
    the runs being replaced removed (they would describe a folder that no longer holds them)."""
    from .html_report.writing import edited_since_written, is_report_page  # (matplotlib: only when replacing)

    mark_for_replacement(plans)
    for stale in COMPARISON_TABLES:
        (directory / stale).unlink(missing_ok=True)
    page = directory / REPORT_FILE
    if page.is_file() and is_report_page(page) and edited_since_written(page) is False:  # never one of one's own
        page.unlink()


def _with_chosen_on_val(metrics: dict[str, Any], run_dir: Path, rule, temperature_scaling: bool,
                        own_archs: set[str]) -> dict[str, Any]:
    """A run's metrics with each tested model's ``op_*`` (threshold) and ``cal_*`` (temperature)
    figures added, both chosen on the run's validation split (its saved best weights). A run
    saved before ``ece`` and ``brier`` were recorded gets them too: a tempered figure is read
    beside the untempered one. ``own_archs``: the comparison's configs' models, built from them."""
    from .runs import evaluate_run

    with warnings.catch_warnings(record=True) as said:  # said again naming the run: one line per run looks alike
        warnings.simplefilter("always")
        scores = evaluate_run(run_dir, operating_point=str(rule) if rule else None,
                              temperature_scaling=temperature_scaling, trusted_archs=own_archs)
    for warning in said:
        warn_again(warning, f"{run_dir.name}: {warning.message}")
    untempered = CALIBRATION_METRICS if temperature_scaling else ()
    test = {model: {**values, **{k: v for k, v in scores.get(model, {}).items()
                                 if k.startswith(("op_", "cal_")) or (k in untempered and k not in values)}}
            for model, values in metrics["test_at_best"].items()}
    # kept for compare.md's list of warnings (review 50h: a temperature at its search bound was said
    # on the console alone)
    return {**metrics, "test_at_best": test, CHOSEN_ON_VAL_WARNINGS: [str(w.message) for w in said]}


CHOSEN_ON_VAL_WARNINGS = "chosen_on_val_warnings"  # in a run's metrics as compare scored it (not in its files)


def _chosen_on_val_warnings(runs: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """What choosing each run's threshold or temperature warned of, each once, with its runs."""
    given: dict[str, list[str]] = {}
    for run in runs:
        for text in run["metrics"].get(CHOSEN_ON_VAL_WARNINGS) or []:
            given.setdefault(CHOSEN_ON_VAL + text, []).append(run["run"])
    return list(given.items())


def _with_flips(metrics: dict[str, Any], run_dir: Path, tta: str, own_archs: set[str]) -> dict[str, Any]:
    """A run's metrics with each tested model's figures under test-time flips added as
    ``tta_METRIC`` (the whole-split metrics the run recorded, from its saved best weights)."""
    from .runs import evaluate_run

    flipped = evaluate_run(run_dir, tta=tta, trusted_archs=own_archs)
    test = {model: {**values, **{f"tta_{k}": v for k, v in flipped.get(model, {}).items() if k in values}}
            for model, values in metrics["test_at_best"].items()}
    return {**metrics, "test_at_best": test}


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long table rows: setting, model, metric, mean and std over the finite values, n (how many
    are finite), values (per seed, NaN kept) and runs (the run directories, in the same order).
    A figure some of a setting's runs lack (a reused run saved before it was recorded) is NaN
    for those runs, so ``n`` says how many runs gave it."""
    per_run: list[tuple[dict[str, Any], dict[tuple[str, str], float]]] = []
    for run in runs:
        test, val = run["metrics"]["test_at_best"], run["metrics"]["val_at_best"]
        roles = run["metrics"].get("roles", {})
        monitor_metric = run["metrics"]["monitor"].split("/", 1)[1]
        students = [m for m in test if roles.get(m) == "student"]
        best = max(students, key=lambda s: ranking_score(monitor_metric, val[s][monitor_metric]))
        per_model = {**test, BEST_STUDENT: test[best]}
        per_run.append((run, {(model, metric): _num(value) for model, metrics in per_model.items()
                              for metric, value in metrics.items()}))
    figures: dict[str, dict[tuple[str, str], None]] = {}  # each setting's (model, metric), in first-seen order
    for run, values in per_run:
        figures.setdefault(run["setting"], {}).update(dict.fromkeys(values))
    rows = []
    for setting, keys in figures.items():
        mine = [(run, values) for run, values in per_run if run["setting"] == setting]
        for model, metric in keys:
            vals = [values.get((model, metric), math.nan) for _, values in mine]
            mean, std = mean_std(vals)
            rows.append({"setting": setting, "model": model, "metric": metric, "mean": mean, "std": std,
                         "n": sum(not math.isnan(v) for v in vals), "values": vals,
                         "runs": [run.get("run", "") for run, _ in mine]})
    return rows


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows({**r, "values": ";".join(map(repr, r["values"])), "runs": ";".join(r["runs"])}
                     for r in rows)
    return buf.getvalue()


def _other_data_note(runs: list[dict[str, Any]], paths: list[Path], records: dict[Path, dict[str, Any]],
                     labels: list[str]) -> str | None:
    """Where settings whose data sections differ in what decides the split were scored on other
    test sets (review 46b: rows side by side in one table): each one's test size. None where
    every setting's first run recorded the same test set (a val_fraction alone leaves it).
    ``paths``: the runs' folders; ``records``: their run.json (``run_records``)."""
    from .json_files import read_json

    metas = {}
    for run, path in zip(runs, paths):  # (a run.json that did not read: read again, to stop on its error as before)
        metas.setdefault(run["setting"], records[path] if path in records else read_json(path / RUN_FILE))
    tested = {label: _test_set(metas[label]) for label in labels if label in metas}
    if None not in tested.values() and len(set(tested.values())) == 1:
        return None
    sizes = {label: (meta.get("split_sizes") or {}).get("test") for label, meta in metas.items()}
    told = ", ".join(f"`{label}` {sizes[label]:,}" if sizes.get(label) is not None else f"`{label}` (not recorded)"
                     for label in labels)
    known = None not in tested.values()
    return (f"The settings read different data (their data sections differ in what decides the split), so their "
            f"rows {'are' if known else 'may be'} not scored on one test set: test samples {told}. Compare such rows "
            "with that in mind.")


def _test_set(meta: dict[str, Any]) -> str | None:
    """What a run's test split was, as its run.json records it: the data's fingerprint with the
    test files or rows (None where neither is recorded)."""
    info = meta.get("data_info") or {}
    files, rows = (info.get("files") or {}).get("test"), (info.get("indices") or {}).get("test")
    source = meta.get("data_fingerprint") or info.get("sha256") or info.get("source")
    if files is None and rows is None and not info.get("sha256"):  # (an archive's own test split: its digest)
        return None
    return repr((source, files, rows))


def _paired_with(baseline: str, plans) -> set[str]:
    """The settings whose runs are scored on the baseline's data split, so pair with its runs."""
    split_of = {plan.label: _split_identity(plan.cfg) for plan in plans}
    return {label for label, split in split_of.items() if split == split_of[baseline]}


def _split_identity(cfg) -> dict[str, Any]:
    """What decides a run's data split (its fold aside): runs of settings that share it are paired.
    The data's path counts resolved: one file written two ways is one split."""
    identity = cfg.data.model_dump(exclude=NOT_THE_SPLIT)
    if identity.get("root"):
        identity["root"] = str(Path(identity["root"]).resolve())
    return identity


def _rich_table(rows, presets, models, metric, over: str) -> Table:
    index = {(r["setting"], r["model"], r["metric"]): r for r in rows}
    spread = "one run each" if over == "one seed" else f"mean ± std over {over}"
    # (review 55d: the column read as the best score on the test split)
    caption = (f"{BEST_STUDENT}: in each run, the student its monitor scores best on the validation split"
               if BEST_STUDENT in models else None)
    table = Table(title=escape(f"{headed(metric)}, {spread}"), caption=caption)  # names as written, not markup
    table.add_column("setting")
    for model in models:
        table.add_column(escape(model), justify="right")
    for preset in presets:
        cells = [seeds_cell(index[(preset, m, metric)]) if (preset, m, metric) in index else "" for m in models]
        table.add_row(escape(preset), *cells)
    return table
