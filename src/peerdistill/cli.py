"""The ``peerdistill`` command line, a thin layer over the Python API.

This module imports nothing that brings torch: --help, --version and a config error answer at
once. Each command imports what it runs, torch with it, once its arguments are checked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError
from rich.markup import escape

from .terminal import Console, one_line_warnings, write_any_character
from . import __version__
from .config import (DECODING_KEYS, IMAGE_FILE_KINDS, NO_FOLD_KINDS, DataSpec, DetectSpec, RunConfig, apply_overrides,
                     default_config, format_validation_error, load_config, load_saved_config, load_yaml,
                     named_as_written, saved_data_section, without_other_kinds_keys)
from .errors import ConfigError, PeerdistillError, PeerdistillWarning
from .json_files import read_json
from .launcher import launched, launched_rank, launched_world

# Tables stay readable when output goes to a file or a CI log (rich assumes 80 columns there).
# (No stdout at all, as a daemon started with it closed: rich writes nowhere.)
console = Console(width=None if sys.stdout is not None and sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr is not None and sys.stderr.isatty() else 120)


def _split_config_and_overrides(args: list[str]) -> tuple[str | None, list[str]]:
    config = None
    overrides = []
    for arg in args:
        if "=" in arg:
            overrides.append(arg)
        elif config is None:
            config = arg
        else:
            raise ConfigError(f"unexpected argument '{arg}': give one CONFIG.yaml and key=value overrides")
    return config, overrides


def _whole(text: str) -> int:
    """An argparse type: a whole number (its range is checked where it is used, and said so)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number such as 3, got '{text}'") from None


class _Once(argparse._StoreAction):
    """An option given once: given again, it would silently replace the first (as --presets kd
    --presets ml ran ml alone), while --setting adds up. Every command's plain options are so
    (``_Parser``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = namespace.__dict__.setdefault("_given_once", set())
        if self.dest in seen:
            parser.error(f"{option_string} is given twice: give it once"
                         + (" (several presets: --presets kd,kd+ml)" if self.dest == "presets" else ""))
        seen.add(self.dest)
        setattr(namespace, self.dest, values)


class _Parser(argparse.ArgumentParser):
    """argparse with ``_Once`` as its plain option action, and no abbreviations (--seed must not
    silently mean --seeds)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.register("action", None, _Once)
        self.register("action", "store", _Once)


def _count(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got '{text}'")
    return int(text)


# More resamples than this add nothing to a 95% interval's percentiles and would run for hours.
MAX_BOOTSTRAP = 100_000


def _resamples(text: str) -> int:
    """An argparse type: --bootstrap's count."""
    count = _count(text)
    if count > MAX_BOOTSTRAP:
        raise argparse.ArgumentTypeError(f"at most {MAX_BOOTSTRAP:,} resamples, got {count:,} (1,000 to 10,000 give a "
                                         "95% interval's percentiles to well within its width)")
    return count


def _given(text: str) -> str:
    """An argparse type: a text that is not empty (an unset shell variable, --out "$DIR", would
    otherwise quietly mean the default, or the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: give a value (an unset shell variable gives an empty one)")
    return text


def cmd_train(ns: argparse.Namespace) -> int:
    if ns.resume:
        run_dir = Path(ns.resume)
        if not run_dir.is_dir():
            raise ConfigError(f"cannot resume '{run_dir}': no such folder (give the run's folder, OUT_DIR/NAME)")
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"cannot resume '{run_dir}': it has no config.yaml (is it a peerdistill run directory?)")
        if ns.args:
            raise ConfigError("--resume continues a run with its saved config: drop the other arguments")
        if ns.overwrite:
            raise ConfigError("--resume continues a run, --overwrite starts it again: give one of them")
        cfg = load_saved_config(run_dir / "config.yaml")
    else:
        path, overrides = _split_config_and_overrides(ns.args)
        cfg = load_config(path, overrides)
    # torch comes with these: only once the config is read and checked
    from .build import run_dir_for, train_from_config
    from .report import fitted, results_table
    from .runs import saved_window, task_for

    run_dir = Path(ns.resume) if ns.resume else run_dir_for(cfg)
    ns.run_dir = run_dir  # for the hint after Ctrl-C
    result = train_from_config(cfg, run_dir=run_dir, overwrite=ns.overwrite, resume=bool(ns.resume),
                               progress=not ns.quiet)
    if launched_world()[0] != 0:  # under torchrun the main process alone reports
        return 0
    meta = read_json(run_dir / "run.json")
    params = {m["name"]: m["parameters"] for m in meta["members"]}
    monitor_metric = result.monitor.split("/", 1)[1]
    stopped = f"; stopped early: no better val in {cfg.train.patience} epochs" if result.stopped_early else ""
    tested = (meta.get("split_sizes") or {}).get("test")
    title = (f"test split{f' ({tested:,} samples)' if tested else ''} at the best epoch ({result.best_epoch + 1} of "
             f"{len(result.history)}{stopped}, "
             f"by val {result.monitor})")
    summary = task_for(meta).summary_metrics
    window, overlap = saved_window(meta)
    console.print(fitted(results_table(title, result.test_at_best, params, result.val_at_best, monitor_metric,
                                       summary, costs=meta.get("costs"), macs_of="patch" if window else ""),
                         console.width))
    if window and meta.get("costs"):
        err_console.print(f"note: MMACs/patch are of one {window[0]}x{window[1]} patch, what training saw; eval, "
                          f"predict and an export score a whole image window by window ({overlap:g} overlap), each "
                          "window costing as much", highlight=False, soft_wrap=True)
    _say_distance_unit(meta, None)
    _say_ensemble_of_one(meta, result.test_at_best)
    _say_what_not_available_means(result.test_at_best, summary)
    console.print(f"run directory: {run_dir}")
    return 0


def _shown_figures(scores: dict, summary, ns: argparse.Namespace) -> list[str]:
    """The figures eval's tables show, by the options given (a note on n/a looks at these)."""
    from .metrics import per_class_part

    shown = [f"{bound}{m}" for m in summary for bound in (("", "ci95_low_", "ci95_high_") if ns.bootstrap else ("",))]
    for key in next(iter(scores.values()), {}):
        if ((ns.per_class and per_class_part(key)) or (ns.operating_point and key.startswith("op_"))
                or (ns.temperature_scaling and key.startswith("cal_"))):
            shown.append(key)
    return shown


def _say_what_not_available_means(scores: dict, metrics) -> None:
    from .report import NOT_AVAILABLE_MEANS, has_not_available

    if has_not_available(scores, metrics):
        err_console.print(f"note: {NOT_AVAILABLE_MEANS}", highlight=False, soft_wrap=True)


def _say_ensemble_of_one(meta: dict, scores: dict) -> None:
    """One student's 'ensemble' is that student: its row repeats the student's, said so."""
    students = [m["name"] for m in meta.get("members", []) if m.get("role") == "student"]
    if len(students) == 1 and "ensemble" in scores:
        err_console.print(f"note: one student: 'ensemble' is {students[0]} alone (an ensemble needs two or more)",
                          highlight=False, soft_wrap=True)


def _say_distance_unit(meta: dict, data_spec: DataSpec | None) -> None:
    """HD95 after a resize is in pixels of the resized grid, not of the files: said beside it."""
    spec = data_spec.model_dump() if data_spec is not None else (meta.get("data_spec") or {})
    size = spec.get("image_size")
    if meta.get("task") == "segmentation" and size and spec.get("pixel_spacing") is None:
        err_console.print(f"note: hd95 is in pixels of the {size[0]}x{size[1]} grid the models see (data.image_size); "
                          "for files of another size (all of one size), data.pixel_spacing=[1,1] gives it in the "
                          "files' pixels", highlight=False, soft_wrap=True)


def cmd_eval(ns: argparse.Namespace) -> int:
    data_overrides = [o for o in ns.overrides if not o.startswith("detect.")]
    decoding = _decoding(o for o in ns.overrides if o.startswith("detect."))
    data_spec = None
    if ns.data or data_overrides:
        meta = read_json(Path(ns.run_dir) / "run.json") if (Path(ns.run_dir) / "run.json").exists() else {}
        tree = {"data": saved_data_section(meta.get("data_spec") or {})}
        if ns.data:
            tree["data"] = _data_section(ns.data)
        for override in data_overrides:
            if not override.startswith("data."):
                raise ConfigError(f"eval takes only data.* and detect.* overrides, got '{override}'")
        apply_overrides(tree, data_overrides)
        if isinstance(tree.get("data"), dict):
            # the saved section's keys of another kind (data.kind=... changed it) and its
            # augmentation (eval does not augment) go; what the user gave is checked
            given = {o.split("=", 1)[0].split(".")[1] for o in data_overrides}
            written = given | (set(tree["data"]) if ns.data else set())  # a --data section is the user's own
            if "grey" not in written and (meta.get("input_shape") or [0])[0] == 1 and \
                    tree["data"].get("kind") in IMAGE_FILE_KINDS:
                tree["data"]["grey"] = True  # the models take one channel: image files are read so
            _warn_of_data_keys_read_otherwise(tree["data"], saved_data_section(meta.get("data_spec") or {}), given,
                                              whole_section=bool(ns.data))
            tree["data"] = without_other_kinds_keys(tree["data"], keep=written)
            if not ns.data:  # each apart: the run's ranges would not fit an augment given here
                for key in {"augment", "augment_range"} - given:
                    tree["data"].pop(key, None)
            if not ns.data and (tree["data"].get("kind") in NO_FOLD_KINDS or tree["data"].get("folds") is None):
                # the run's folds do not carry over to data that cannot be cut into folds, or past data.folds=null
                for key in ("folds", "fold"):
                    if key not in given:
                        tree["data"].pop(key, None)
        try:
            data_spec = DataSpec.model_validate(tree["data"])
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, "data section", DataSpec)) from None
    # torch comes with these: only once the overrides are checked
    from .engine.artifacts import jsonable
    from .report import (calibration_table, fitted, interval_table, operating_point_table, per_class_rich_tables,
                         results_table)
    from .runs import evaluate_run, task_for, unfinished_note

    scores = evaluate_run(ns.run_dir, split=ns.split, data_spec=data_spec, device=ns.device, save_images=ns.save_images,
                          operating_point=ns.operating_point, decoding=decoding, bootstrap=ns.bootstrap,
                          temperature_scaling=ns.temperature_scaling, tta=ns.tta, per_sample=ns.per_sample,
                          roles=("student",) if ns.students_only else ("teacher", "student"))
    if ns.json:
        print(json.dumps(jsonable(scores), indent=2, allow_nan=False))  # NaN is not JSON: null
        # how much was scored, as the table's title says: on stderr, the JSON holding only figures
        err_console.print(f"{ns.split} split: {scores.samples:,} samples", highlight=False, soft_wrap=True)
    else:
        meta = read_json(Path(ns.run_dir) / "run.json")
        # which data and how much of it: a table of other data must not read as the run's test figures
        of = f"--data {ns.data}" if ns.data else ", ".join(data_overrides) if data_overrides else "the run's data"
        count = scores.samples
        title = (f"{ns.run_dir}: {ns.split} split of {of} ({count:,} samples)"
                 + (f", test-time {ns.tta}" if ns.tta else ""))
        summary = task_for(meta).summary_metrics

        def show(table):  # figures whole, even in a narrow terminal
            console.print(fitted(table, console.width))

        if ns.bootstrap:
            groups = next(iter(scores.values())).get("ci95_groups")
            of = f"its {groups} groups (data.group_pattern)" if groups else "its samples"
            show(interval_table(scores, f"{title}: [95% interval, bootstrap over {ns.bootstrap} resamples of {of}]",
                                summary))
        else:
            show(results_table(title, scores, metrics=summary))
        if ns.per_class:
            for table in per_class_rich_tables(scores, title):
                show(table)
        if ns.temperature_scaling:
            show(calibration_table(scores, f"{title}: tempered by the temperature each model's probabilities fit "
                                           "on the run's validation split"))
        _say_distance_unit(meta, data_spec)
        _say_ensemble_of_one(meta, scores)
        if ns.operating_point:
            names = meta.get("class_names") or ["0", "1"]
            show(operating_point_table(scores, f"{title}: at the threshold {ns.operating_point} picks on the run's "
                                               f"validation split (positive: '{names[-1]}')"))
        _say_what_not_available_means(scores, _shown_figures(scores, summary, ns))
    if ns.per_sample:  # on stderr: --json keeps stdout pure JSON
        err_console.print(f"per-sample figures: {ns.per_sample}", highlight=False, soft_wrap=True)
    if ns.save_images:
        from .runs import pictures_folder

        err_console.print(f"pictures: {pictures_folder(ns.run_dir, ns.split, data_spec)}/MODEL/", highlight=False,
                          soft_wrap=True)
    if (note := unfinished_note(ns.run_dir)) is not None:  # last, under the figures it qualifies
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    return 0


# data keys eval does not apply: the run's own statistics and window hold; nothing is augmented, weighted or cut
UNUSED_BY_EVAL = ("normalize", "class_weights", "augment", "augment_range", "patch_size", "patches_per_image",
                  "foreground_oversample", "window_overlap")
# data keys that change what is read or counted (a DICOM window is warned of by evaluate_run)
READING_KEYS = ("roi", "binary_masks", "pattern", "image_size", "grey", "pixel_spacing")


def _warn_of_data_keys_read_otherwise(section: dict, saved: dict, given: set[str], whole_section: bool) -> None:
    """A key eval ignores, given on the command line, or a --data section leaving out (or
    changing) how training read its data, is said, not dropped in silence."""
    unused = sorted(k for k in given if k in UNUSED_BY_EVAL)
    if unused:
        warnings.warn(f"eval does not use {', '.join('data.' + k for k in unused)}: it reads data with the run's own "
                      "normalisation statistics and window, and does not augment, weight or cut it into patches",
                      PeerdistillWarning, stacklevel=2)
    changed = [k for k in READING_KEYS if whole_section and saved.get(k) not in (None, False)
               and section.get(k) != saved[k]]
    if changed:
        shown = "; ".join(f"data.{k} is {section.get(k)!r}, in training {saved[k]!r}" for k in changed)
        warnings.warn(f"--data reads its data otherwise than training read the run's ({shown}): what is read or "
                      "counted differs (a region of interest left out counts the pixels outside it); give those keys "
                      "to score it as the run was scored", PeerdistillWarning, stacklevel=2)


def _data_section(path: str) -> dict:
    """eval --data: a YAML file's data section (or a bare mapping of data keys)."""
    given = Path(path)
    if given.is_dir() or given.suffix.lower() in (".npz", ".csv", ".png", ".jpg", ".jpeg", ".dcm"):
        raise ConfigError(f"--data takes a YAML file holding a data section, and '{path}' is data itself: to score "
                          "it, give data.root=PATH (and data.kind=... when it is not of the run's kind)")
    loaded = load_yaml(path)
    section = loaded.get("data", loaded) if isinstance(loaded, dict) else loaded
    if not isinstance(section, dict):
        raise ConfigError(f"--data '{path}': its data section must be a mapping of data keys (e.g. data: {{kind: "
                          f"image_folder, root: PATH}}), got {'null' if section is None else type(section).__name__}")
    if not section:  # else the defaults: the embedded digits
        raise ConfigError(f"--data '{path}' holds no data section: write one, e.g. data: {{kind: image_folder, "
                          "root: PATH}")
    return section


def _chosen_on_validation_options(parser: argparse.ArgumentParser, where: str, threshold_where: str | None = None
                                  ) -> None:
    """export's and predict's --temperature-scaling, --operating-point (``export.chosen_on_validation``)
    and --tta (``export.flip_averaged``); ``where`` says what becomes of each, ``threshold_where``
    of the threshold where that differs."""
    parser.add_argument("--temperature-scaling", action="store_true",
                        help=f"classification: the temperature the model's probabilities fit on the run's validation "
                             f"split (as eval --temperature-scaling fits it), {where}")
    parser.add_argument("--operating-point", metavar="RULE", default=None, type=_given,
                        help=f"two-class classification: the threshold RULE (youden, sensitivity=S, specificity=S) "
                             f"picks on the run's validation split, the positive (second) class called where its "
                             f"probability reaches it, {threshold_where or where}")
    parser.add_argument("--tta", choices=["hflip", "flips"], default=None,
                        help=f"classification, segmentation: probabilities averaged over the input and its mirror "
                             f"(hflip) or all four mirrorings (flips), as eval --tta scores them, {where}")


def _decoding(overrides) -> dict | None:
    """``detect.KEY=VALUE`` overrides of eval: how a detection run's boxes are decoded and fused
    (no retraining needed), checked as the config's ``detect`` section checks them."""
    tree: dict = {}
    apply_overrides(tree, list(overrides))
    given = tree.get("detect") or {}
    if not given:
        return None
    if "wbf_iou" in given:  # the former name, as configs still say it
        if "ensemble_iou" in given:
            raise ConfigError("detect.wbf_iou is the former name of detect.ensemble_iou: give one of them")
        given["ensemble_iou"] = given.pop("wbf_iou")
    other = [k for k in given if k not in DECODING_KEYS]
    if other:
        raise ConfigError(f"eval takes the detect.* keys that decode and fuse boxes ({', '.join(DECODING_KEYS)}), "
                          f"not detect.{other[0]}: training settings need a new run")
    try:
        spec = DetectSpec.model_validate(given)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "detect section", DetectSpec)) from None
    return {key: getattr(spec, key) for key in given}


def cmd_compare(ns: argparse.Namespace) -> int:
    paths = [a for a in ns.args if "=" not in a]
    overrides = [a for a in ns.args if "=" in a]
    trees = [load_yaml(p) for p in paths] or [default_config()]
    for tree in trees:
        apply_overrides(tree, overrides)
    trees = [named_as_written(tree) for tree in trees]  # not after a preset --presets sets
    from .comparison_configs import checked_bases, parse_presets, variant_trees

    presets = parse_presets(ns.presets)
    names = [f"config '{p}'" for p in paths] or ["config (the embedded default)"]
    out = ns.out
    if ns.setting:
        if out is None and len(trees) == 1:  # the config's own comparison folder, not the shared one
            base = trees[0]
            out = str(Path(base.get("out_dir", RunConfig.model_fields["out_dir"].default))
                      / f"{base['name']}-compare")
        variants = variant_trees(trees, ns.setting, presets=presets)  # each config's settings in turn
        per_config = len(variants) // len(trees)
        names = [f"setting '{tree['name']}'" + (f" of {names[i // per_config]}" if paths else "")
                 for i, tree in enumerate(variants)]
        trees = variants
    checked_bases(trees, presets, names)  # said before torch is loaded (a second or more)
    from .compare import compare

    compare(trees, presets, ns.seeds, overwrite=ns.overwrite, progress=not ns.quiet,
            console=console, out=out, teacher_from=ns.teacher_from, dry_run=ns.dry_run, jobs=ns.jobs,
            operating_point=ns.operating_point, folds=ns.folds, baseline=ns.baseline,
            temperature_scaling=ns.temperature_scaling, tta=ns.tta, by_name=bool(ns.setting), config_names=names)
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from .engine.tta import TTA_SEEN
    from .export import export_run
    from .quantize import CALIBRATION_SAMPLES, MIN_AGREEMENT, percent

    int8_only = [flag for flag, value in (("--calibration-samples", ns.calibration_samples),
                                          ("--min-agreement", ns.min_agreement)) if value is not None]
    if int8_only and ns.quantize is None:  # else an fp32 file written as if it had been checked
        raise ConfigError(f"{int8_only[0]} applies to --quantize int8: add --quantize int8, or drop it")
    result = export_run(ns.run_dir, model=ns.model, fmt=ns.format, out=ns.out, quantize=ns.quantize,
                        calibration=CALIBRATION_SAMPLES if ns.calibration_samples is None else ns.calibration_samples,
                        min_agreement=MIN_AGREEMENT if ns.min_agreement is None else ns.min_agreement,
                        temperature_scaling=ns.temperature_scaling, operating_point=ns.operating_point,
                        tta=ns.tta)
    parity = (f"; onnxruntime vs PyTorch: max |difference| {result.max_abs_diff:.3g} on {result.compared_on}"
              if result.max_abs_diff is not None else "")
    task = read_json(Path(ns.run_dir) / "run.json").get("task") if (Path(ns.run_dir) / "run.json").is_file() else None
    what = "dense head outputs; boxes are decoded outside the graph, by predict" if (
        task == "detection" and result.output == "logits") else result.output
    if result.int8 is not None:
        check = result.int8
        what += f", int8: {check.int8_bytes / 1024:,.0f} KiB against {check.fp32_bytes / 1024:,.0f} KiB in fp32"
        decision = "same call at the threshold" if check.threshold is not None else "same class"
        parity += (f" (fp32 graph); int8 graph vs fp32 graph on {check.checked} {check.inputs}: {decision} for "
                   f"{round(check.agreement * check.predictions)} of {check.predictions} predictions "
                   f"({percent(check.agreement)}), max |probability difference| "
                   f"{check.max_probability_difference:.3g}")
        if check.class_dice:  # what the check judged: each class's mask against the fp32 one
            names = read_json(Path(ns.run_dir) / "run.json").get("class_names") or []
            parity += ", Dice of each class's int8 mask against the fp32 one: " + ", ".join(
                f"{names[c] if c < len(names) else c} {dice:.4f}"
                + ("" if c in check.judged_classes else " (too few pixels to judge)")
                for c, dice in check.class_dice.items())
    if result.tta is not None:
        what += f", probabilities averaged over {TTA_SEEN[result.tta]}"
    if result.temperature is not None:
        what += f", tempered: T = {result.temperature:.4g} fitted on the run's validation split"
    if result.threshold is not None:
        what += (f", threshold {result.threshold:.4g} on the positive class ({ns.operating_point} on the run's "
                 "validation split; in its JSON, applied by predict)")
    console.print(f"exported {result.model} ({what}) to {result.path}{parity}", highlight=False)
    return 0


def cmd_predict(ns: argparse.Namespace) -> int:
    from .predict import predict_files

    path = predict_files(ns.model_path, ns.inputs, ns.out, model=ns.model, temperature_scaling=ns.temperature_scaling,
                         operating_point=ns.operating_point, visible_masks=ns.visible_masks, overlays=ns.overlays,
                         tta=ns.tta)
    console.print(f"wrote {path}{_which_best(ns)}", highlight=False)
    return 0


def _which_best(ns: argparse.Namespace) -> str:
    """Which student a run directory's 'best' (predict's default) was: said, as export says it."""
    if Path(ns.model_path).suffix.lower() == ".onnx" or ns.model not in (None, "best"):
        return ""
    from .engine.artifacts import RunDir
    from .export import best_student

    best = best_student(Path(ns.model_path), RunDir.open(ns.model_path).meta())
    return f" (model {best}: the best validation student)"


def cmd_report(ns: argparse.Namespace) -> int:
    from .html_report import reemit, write_report_holding_warnings

    path, held = write_report_holding_warnings(ns.path, ns.out)
    console.print(f"wrote {path}", highlight=False)
    reemit(held)  # after: under -W error the first ends the command, the page written and said
    return 0


def cmd_presets(ns: argparse.Namespace) -> int:
    from rich.table import Table

    from .config import PRESET_DOCS

    table = Table(title="presets")
    table.add_column("preset")
    table.add_column("who teaches whom")
    for name, doc in PRESET_DOCS.items():
        table.add_row(name, doc)
    table.add_row("custom", "the edges listed under distill.edges")
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="peerdistill",
        description="Knowledge distillation in a cohort: a teacher and several students trained together. "
                    "Train, compare presets over seeds, score, export, predict and report.")
    parser.add_argument("--version", action="version", version=f"peerdistill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.commands = sub.choices  # each command's parser: its usage goes with its errors

    train = sub.add_parser("train", help="train a cohort (no CONFIG: the embedded digits default)")
    train.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value ...]")
    train.add_argument("--resume", metavar="RUN_DIR", type=_given, help="continue an interrupted run from its last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument("--quiet", action="store_true",
                       help="no progress (bars on a terminal, a line per epoch in a log)")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="score the saved models of a run on a split or other data")
    ev.add_argument("run_dir", metavar="RUN_DIR", type=_given)
    ev.add_argument("overrides", nargs="*", default=[], metavar="data.key=value | detect.key=value",
                    help="other data (data.*), or for a detection run other box decoding and fusion: "
                         "detect.score_threshold, nms_iou, max_detections, ensemble (wbf, nms, nmw), ensemble_iou")
    ev.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                    help="all: train, val and test together (other data scored whole)")
    ev.add_argument("--data", metavar="DATA.yaml", type=_given, help="a YAML file with a data section (default: the run's data)")
    ev.add_argument("--device", default="auto", type=_given,
                    help="auto (CUDA when there is an NVIDIA GPU, else cpu), cpu, cuda, cuda:N or mps (default auto)")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON (every metric, per class too)")
    ev.add_argument("--per-class", action="store_true",
                    help="also a table per class: precision and recall (classification), dice and iou "
                         "(segmentation), ap and ap50 (detection)")
    ev.add_argument("--operating-point", metavar="RULE", default=None, type=_given,
                    help="two-class classification: also score at the threshold RULE picks on the run's validation "
                         "split: youden, sensitivity=S or specificity=S (e.g. specificity=0.95)")
    ev.add_argument("--temperature-scaling", action="store_true",
                    help="classification: also fit each model's temperature on the run's validation split "
                         "(temperature scaling) and score the split with it: ece and brier before and after "
                         "(in --json: cal_temperature, cal_ece, cal_brier)")
    ev.add_argument("--tta", choices=["hflip", "flips"], default=None,
                    help="classification and segmentation: average each model's probabilities over the image and "
                         "its mirror (hflip) or all four mirrorings (flips), masks mirrored back")
    ev.add_argument("--bootstrap", type=_resamples, default=0, metavar="N",
                    help="also a 95%% interval for every metric: the percentiles over N resamples (with replacement) "
                         "of the split's samples, each scored as the split is (e.g. 1000; in --json: "
                         "ci95_low_METRIC, ci95_high_METRIC)")
    ev.add_argument("--save-images", "--save-masks", dest="save_images", type=_count, default=0, metavar="N",
                    help="save pictures of N samples to RUN_DIR/eval/SPLIT/: predicted masks and overlays "
                         "(segmentation), predicted and true boxes (detection)")
    ev.add_argument("--per-sample", metavar="FILE.csv", default=None, type=_given,
                    help="also write a CSV with a row per scored sample and model: the file (where the data has "
                         "files), truth, prediction and class probabilities (classification), the image's own "
                         "dice, iou, hd95, ... (segmentation), its AP and box counts (detection)")
    ev.add_argument("--students-only", action="store_true",
                    help="score the students and their ensemble without rebuilding the teacher(s)")
    ev.set_defaults(func=cmd_eval)

    cmp_ = sub.add_parser("compare", help="run presets or configs over several seeds and tabulate mean ± std")
    cmp_.add_argument("args", nargs="*", metavar="[CONFIG.yaml ...] [key=value ...]")
    cmp_.add_argument("--setting", action="append", metavar="NAME:KEY=VALUE", type=_given,
                      help="a row of its own: every config with this override, named NAME (repeat with the same "
                           "NAME for more keys; NAME alone: the config as it is), e.g. --setting flips --setting "
                           "turns:data.augment=[hflip,rotate] --setting 'turns:data.augment_range={rotate: 10}'")
    cmp_.add_argument("--presets", default=None, type=_given,
                      help="comma-separated presets run with every config (default: each config's own preset)")
    cmp_.add_argument("--out", default=None, type=_given,
                      help="directory of the comparison (default OUT_DIR/NAME-compare)")
    cmp_.add_argument("--seeds", type=_whole, default=3,
                      help="runs per setting, with seeds seed, seed+1, ... (default 3)")
    cmp_.add_argument("--folds", type=_whole, default=None, metavar="K",
                      help="k-fold cross-validation: every seed runs K times, each fold of the data once the "
                           "test split (data.folds=K, data.fold=0..K-1); the table is over folds and seeds")
    cmp_.add_argument("--operating-point", metavar="RULE", default=None, type=_given,
                      help="two-class classification: also tabulate every model at the threshold RULE picks on its "
                           "run's validation split (youden, sensitivity=S, specificity=S), as eval does")
    cmp_.add_argument("--teacher-from", default=None, metavar="PRESET", type=_given,
                      help="train the teachers in PRESET's runs first, then freeze them (per seed) as the "
                           "teachers of the other presets, e.g. --teacher-from independent")
    cmp_.add_argument("--temperature-scaling", action="store_true",
                      help="classification: also tabulate each run's models tempered by the temperature fitted on its "
                           "validation split (cal_temperature, cal_ece, cal_brier)")
    cmp_.add_argument("--tta", choices=["hflip", "flips"], default=None,
                      help="classification, segmentation: also tabulate each run's models with their probabilities "
                           "averaged over flips of the test images (tta_METRIC), as eval --tta does")
    cmp_.add_argument("--baseline", default=None, metavar="SETTING", type=_given,
                      help="tabulate every other setting's paired difference from this one, with a 95%% confidence "
                           "interval (default: independent when compared, else the first setting)")
    cmp_.add_argument("--jobs", type=_whole, default=1, metavar="N",
                      help="train N runs at once, each in its own process with its share of the CPU threads "
                           "(default 1; on one GPU they share it: worth it when one run leaves it idle; with several GPUs "
                           "each worker takes one in turn)")
    cmp_.add_argument("--overwrite", action="store_true", help="rerun finished runs instead of reusing them")
    cmp_.add_argument("--dry-run", action="store_true",
                      help="list each run and what it would do (train, continue, reuse), then stop")
    cmp_.add_argument("--quiet", action="store_true", help="no progress bars (the tables are still printed)")
    cmp_.set_defaults(func=cmd_compare)

    exp = sub.add_parser("export", help="write a trained student (or the ensemble) as ONNX or safetensors")
    exp.add_argument("run_dir", metavar="RUN_DIR", type=_given)
    exp.add_argument("--model", default="best", type=_given, help="a model name, 'best' (best validation student) or 'ensemble'")
    exp.add_argument("--format", default=None, choices=["onnx", "safetensors"],
                     help="default: from the --out file's extension, else onnx")
    exp.add_argument("--out", default=None, type=_given,
                     help="output file, or a folder (one that exists, or a path without an extension) to write "
                          "MODEL.FORMAT in (default RUN_DIR/export/MODEL.FORMAT)")
    exp.add_argument("--quantize", default=None, choices=["int8"],
                     help="ONNX, classification and segmentation: quantize to int8 (static, calibrated on the "
                          "run's training images), written as MODEL-int8.onnx only if it keeps the fp32 class "
                          "(the call at --operating-point's threshold) for --min-agreement of the test predictions; "
                          "a segmenter's mask of each class must reach that Dice against the fp32 one")
    exp.add_argument("--calibration-samples", type=int, metavar="N",
                     help="training images the int8 activation ranges are taken from (default 200)")
    exp.add_argument("--min-agreement", type=float, metavar="SHARE",
                     help="int8: the share of test predictions that must keep the fp32 graph's class, or for "
                          "segmentation the Dice each class's int8 mask must reach against the fp32 one (default "
                          "0.99)")
    _chosen_on_validation_options(exp, "put into the ONNX graph",
                                  threshold_where="written into the JSON beside the ONNX file, which predict applies")
    exp.set_defaults(func=cmd_export)

    pred = sub.add_parser("predict", help="apply a run's model or an exported .onnx to images, folders or an .npz")
    pred.add_argument("model_path", metavar="RUN_DIR_OR_MODEL.onnx", type=_given)
    pred.add_argument("inputs", nargs="+", metavar="INPUT", type=_given)
    _chosen_on_validation_options(pred, "applied to a run directory's model (an exported file carries its own)")
    pred.add_argument("--visible-masks", action="store_true",
                      help="segmentation: write masks with the classes spread over 0..255 (two classes: 0 and 255, "
                           "as viewers show them and data.binary_masks reads them back) instead of class indices")
    pred.add_argument("--overlays", metavar="DIR", default=None, type=_given,
                      help="segmentation and detection: also draw the predictions on each input, at its own size, "
                           "into DIR (<name>_overlay.png: classes tinted; <name>_boxes.png: boxes, class and score)")
    pred.add_argument("--out", required=True, type=_given, help="classification and detection: a CSV file; segmentation: a folder for masks")
    pred.add_argument("--model", default=None, type=_given,
                      help="with a RUN_DIR: a model name, 'best' (default) or 'ensemble' (for detection, the "
                           "students' boxes fused as in evaluation)")
    pred.set_defaults(func=cmd_predict)

    rep = sub.add_parser("report", help="one self-contained HTML page of a run or a comparison")
    rep.add_argument("path", metavar="RUN_DIR_OR_COMPARE_DIR", type=_given)
    rep.add_argument("--out", default=None, type=_given,
                     help="output file, or a folder (one that exists, or a path without an extension) for "
                          "report.html (default PATH/report.html)")
    rep.set_defaults(func=cmd_report)

    pre = sub.add_parser("presets", help="list the presets")
    pre.set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None, *, exiting: bool = False) -> int:
    """Run one command; its exit code. ``exiting``: the process ends after it (the
    ``peerdistill`` command), so a SIGTERM or Ctrl-C arriving once the command is done is
    ignored rather than killing the process with its output half flushed (a scheduler would
    read a finished run as killed, and its --resume would then be refused)."""
    write_any_character(sys.stdout, sys.stderr)
    parser = build_parser()
    # Positional overrides may come after flags (train --quiet a=b); argparse leaves those over.
    ns, extra = parser.parse_known_args(argv)
    positional = "args" if hasattr(ns, "args") else "overrides" if hasattr(ns, "overrides") else None
    if extra and (positional is None or any(e.startswith("-") for e in extra)):
        given = list(sys.argv[1:] if argv is None else argv)
        parser.commands[ns.command].error(
            f"unrecognized arguments: {' '.join(extra)}{_as_override_hint(extra, ns.command, given)}")
    if extra:
        setattr(ns, positional, getattr(ns, positional) + extra)
    # SIGTERM (timeout, Slurm, Kubernetes) ends a command as Ctrl-C does: files being written are
    # removed, not left half-written, and the hint says what is left. Not under torchrun, whose agent
    # stops the other processes with SIGTERM when one fails, mid-collective where no handler runs.
    # SIGINT gets a handler too, only to remember that it came (see _ARRIVED).
    # Nor under another launcher (RANK and WORLD_SIZE set): a process waiting for its peers inside
    # torch's C++ never returns to Python to run a handler, so one would leave SIGTERM unanswered.
    handled = (threading.current_thread() is threading.main_thread() and "TORCHELASTIC_RUN_ID" not in os.environ
               and not launched())
    _ARRIVED.clear()
    before = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)} if handled else {}
    try:
        return _run(ns)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, signal.SIG_IGN if exiting else handler)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # (closed, or its reader gone: nothing more to say)
                stream.flush()


def _run(ns: argparse.Namespace) -> int:
    """The command, its failures as one message and an exit code."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warnings(warnings.showwarning)
            _one_process_commands(ns.command)
            if launched_rank() > 0:  # said by the main process; every process would say it again
                warnings.simplefilter("ignore", PeerdistillWarning)
            return ns.func(ns)
    except PeerdistillError as exc:
        if _ARRIVED:  # an interruption that came out as another error
            return _interrupted(ns, _ARRIVED[-1])
        _say_once_per_node(str(exc), exc.said_alike)
        return 2
    except PeerdistillWarning as exc:  # made an error by the warnings filter (PYTHONWARNINGS=error, -W error)
        _say_once_per_node(f"{exc} (a warning, raised as an error by Python's warnings filter: PYTHONWARNINGS or -W)")
        return 2
    except KeyboardInterrupt as exc:  # (not told: torchrun's agent may be going, and a store not there is waited for)
        return _interrupted(ns, exc)
    except BrokenPipeError:  # `peerdistill eval --json | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file the command had to read or write: permissions, a full disk, a file for a folder
        where = f": '{exc.filename}'; check the path and its permissions" if exc.filename else ""
        _say_once_per_node(f"{exc.strerror or exc}{where}")
        return 2


def _say_once_per_node(error: str, said_alike: str | None = None) -> None:
    """Print a failure; under torchrun, tell the other processes first (before the process group
    is joined, on other nodes they would wait for this one), and print once per node what every
    process of it stops with: a node's processes share its terminal. ``said_alike``: the
    message every process stops with alike (``PeerdistillError.said_alike``)."""
    if not launched():
        err_console.print(f"[bold red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)
        return
    from .engine.distributed import joined_before, mark_said, said_by_first_on_node, tell_failure

    try:
        tell_failure(error)
        # One process failing alone after the group is joined says so at once: the others'
        # errors come later, and a wait here could see it stopped before it spoke.
        if (said_alike is not None or not joined_before()) and said_by_first_on_node(said_alike or error):
            return
    except Exception:  # noqa: BLE001 - the store gone: the others have stopped already
        pass
    err_console.print(f"[bold red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)
    sys.stderr.flush()
    try:
        mark_said(said_alike or error)
    except Exception:  # noqa: BLE001 - as above
        pass


# What torchrun may launch in several processes: the commands that train.
DISTRIBUTED_COMMANDS = ("train", "compare")


def _one_process_commands(command: str) -> None:
    """Another command under torchrun would run whole in every process, each writing the same
    files (and printing, with --json, documents one after another)."""
    processes = launched_world()[1] if launched() else 1
    if processes > 1 and command not in DISTRIBUTED_COMMANDS:
        raise ConfigError(f"{command} runs in one process, not in the {processes} torchrun started: run "
                          f"peerdistill {command} without torchrun (only train and compare share their work)")


# The config keys each command takes as key=value overrides (None: every key).
OVERRIDES_TAKEN = {"train": None, "compare": None, "eval": ("data.", "detect.")}


def _as_override_hint(extra: list[str], command: str, given: list[str]) -> str:
    """``--epochs 2`` where ``train.epochs=2`` was meant: name the override to write, if the
    command takes it. Its value is the word after it on the command line (argparse may have
    taken that word as a positional override, so it is not in ``extra``)."""
    from .config import key_paths

    if "--config" in extra and command in ("train", "compare"):
        return (f" (the config file goes without --config, before the key=value overrides: peerdistill {command} "
                "CONFIG.yaml [key=value ...])")
    if command not in OVERRIDES_TAKEN:
        return ""
    taken = OVERRIDES_TAKEN[command]
    for i, arg in enumerate(extra):
        name, _, value = arg.lstrip("-").partition("=")
        paths = key_paths(name.replace("-", "_")) if arg.startswith("--") else []
        paths = [p for p in paths if taken is None or p.startswith(taken)]
        if paths:
            after = given.index(arg) + 1 if arg in given else len(given)
            if not value and after < len(given) and not given[after].startswith("-"):
                value = given[after]
            value = value or "VALUE"
            return (f" (config keys are given as key=value, not as options: write "
                    f"{' or '.join(f'{path}={value}' for path in paths)})")
    return ""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as an interruption."""


# The interruptions that arrived during the command: torch's exporter, interrupted inside, may
# raise its own error instead (a half-imported module), which must still read as an interruption.
_ARRIVED: list[KeyboardInterrupt] = []


def _interrupt(signum, frame):
    _ARRIVED.append(_Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())
    raise _ARRIVED[-1]


def _interrupted(ns: argparse.Namespace, exc: KeyboardInterrupt) -> int:
    # (under torchrun each process says it: the first may be the one that does not get to)
    err_console.print(_interrupted_hint(ns), highlight=False, soft_wrap=True)
    return 128 + signal.SIGTERM if isinstance(exc, _Terminated) else 130


def _interrupted_hint(ns: argparse.Namespace) -> str:
    """What an interruption left and how to go on, from what is on disk."""
    if ns.command == "compare":
        # (not imported: interrupted while cmd_compare imported it, torch with it, before any run was marked;
        # a half-imported torch would fail to import again here)
        runs = sys.modules.get(f"{__package__}.comparison_runs")
        if ns.overwrite and runs is None:
            return "interrupted before any run was replaced: run the same compare command again, with --overwrite"
        if ns.overwrite:
            return ("interrupted: run the same compare command again without --overwrite to replace only the runs "
                    f"still marked (a file {runs.REPLACE_MARK} in them); runs already replaced are reused and the one "
                    "in training continues from its last checkpoint (with --overwrite every run starts again)")
        return ("interrupted: run the same compare command again; finished runs are reused and "
                "unfinished ones continue from their last checkpoint")
    run_dir = getattr(ns, "run_dir", None)
    if ns.command == "train" and run_dir is not None and launched_rank() > 0:
        # (its node's disk may not be the main process's, which holds the run)
        return "interrupted: the main process (rank 0) says what its run keeps and how to continue"
    if ns.command == "train" and run_dir is not None:  # (set once cmd_train had imported the engine)
        from .engine.artifacts import RunDir, replaced_by_the_same_command

        run = Path(run_dir)
        finished = RunDir(run).is_complete
        if (run / "checkpoints" / "last.pt").is_file() and not finished:
            launcher = "torchrun ... -m " if "TORCHELASTIC_RUN_ID" in os.environ else ""  # (as it was started)
            return (f"interrupted: the run keeps its last checkpoint; continue with {launcher}peerdistill train "
                    f"--resume {run_dir}")
        if finished:  # --overwrite had not replaced it yet
            return f"interrupted before training began: '{run_dir}' holds the finished run it held before"
        if run.exists() and not replaced_by_the_same_command(run):  # the same command would be refused
            return (f"interrupted before the first checkpoint: nothing to resume; start the run again with "
                    f"--overwrite (it replaces '{run_dir}', which holds no checkpoint)")
        if run.exists():  # begun, nothing kept: the same command replaces it
            return (f"interrupted before the first checkpoint: nothing to resume; start the run again (the same "
                    f"command replaces '{run_dir}', which holds nothing yet)")
        return "interrupted before the first checkpoint: nothing to resume; start the run again"
    if ns.command == "export":  # the file is moved into place only once it is checked
        return "interrupted: no half-written file is left (an export is moved into place only once it is checked)"
    return "interrupted"


def run_and_exit(argv: list[str] | None = None) -> NoReturn:
    """The ``peerdistill`` command: ``main``'s exit code. A process that joined a process group
    under torchrun ends at once after its output (see ``distributed.end_process``), so that
    torch's threads left behind by DDP cannot abort it at exit after a finished run."""
    try:
        code = main(argv, exiting=True)
    except Exception:  # a bug's traceback: printed as Python prints it, then ended the same way
        if not _trained_under_torchrun():
            raise
        traceback.print_exc()
        code = 1
    if _trained_under_torchrun():
        from .engine.distributed import end_process

        end_process(code)
    sys.exit(code)


def _trained_under_torchrun() -> bool:
    if not launched():
        return False
    from .engine.distributed import joined_before

    return joined_before()


if __name__ == "__main__":
    run_and_exit()
