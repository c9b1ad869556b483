"""The commands other than eval: train, compare, export, predict, report and presets. Each
imports what it runs (torch with it) once its arguments are checked."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from ..config import (RunConfig, default_config, load_config, load_config_file, load_saved_config,
                      named_as_written)
from ..config.messages import shown_value
from ..config.overrides import applied_keys
from ..errors import ConfigError, DataPlaceError, RunDirError, reworded
from ..json_files import read_json
from ..launcher import launched, launched_world, not_first_on_node
from ..run_files import CONFIG_FILE, RUN_FILE, left_aside_beside
from .consoles import console, err_console
from .decoding import decoding_from, is_decoding
from .words import names_a_file
from .notes import (say_which_pixels_count, say_ensemble_of_one, say_what_detection_figures_are,
                    say_what_not_available_means, say_what_the_ensemble_costs)


def _is_override(arg: str) -> bool:
    """key=value, not a config file (whose path may hold an '=' too: an existing file is one)."""
    if not arg.strip():  # (an unset shell variable: it would otherwise read as the folder '.')
        raise ConfigError("an empty argument where a CONFIG.yaml or key=value goes: give a value (an unset shell "
                          "variable gives an empty one)")
    return "=" in arg and not names_a_file(arg)


def _split_config_and_overrides(args: list[str]) -> tuple[str | None, list[str]]:
    config = None
    overrides = []
    for arg in args:
        if _is_override(arg):
            overrides.append(arg)
        elif config is None:
            config = arg
        else:
            raise ConfigError(f"unexpected argument '{arg}': give one CONFIG.yaml and key=value overrides")
    return config, overrides


def _dry_run(ns: argparse.Namespace, cfg: RunConfig) -> int:
    """Everything training does before its first step, writing nothing; what the run would be printed."""
    from ..build import make_trainer, run_dir_for
    from .dry_run import print_run_plan

    try:
        trainer, data = make_trainer(cfg, run_dir=run_dir_for(cfg), overwrite=ns.overwrite, progress=False)
    except RunDirError as refusal:
        raise _with_dry_overwrite_hint(refusal, ns.overwrite) from None
    # (a checkpoint on a model that is not frozen: where it starts)
    starts_from = {name for name, spec in cfg.named_members() if spec.checkpoint and not spec.frozen}
    print_run_plan(trainer.check(data), console, err_console, starts_from)
    return 0


def _with_dry_overwrite_hint(refusal: RunDirError, overwrite: bool) -> RunDirError:
    """A dry run refused a folder as the run would (its exit says the command would fail), before the
    data is read: where --overwrite is the way on, say that a dry run with it checks the rest and
    still writes nothing, which the run's own words (train it again, replace it) leave in doubt."""
    if overwrite or "pass --overwrite" not in str(refusal):
        return refusal
    return reworded(refusal, f"{refusal}; the data and models are not checked yet: --dry-run --overwrite checks "
                             "them too, moves nothing and writes nothing")


def _check_frozen_checkpoints_there(cfg: RunConfig, run_dir: Path) -> None:
    """A resume checkpoint holds the trained models' weights and only a digest of each frozen
    model's, which is read from its checkpoint file again: one gone since is needed back."""
    from ..errors import CheckpointError

    for (name, spec), key in zip(cfg.named_members(), cfg.member_keys()):
        if not (spec.frozen and spec.checkpoint) or Path(spec.checkpoint).exists():
            continue
        relative = ("; a relative path counts from the folder the command runs in"
                    if not Path(spec.checkpoint).is_absolute() else "")
        raise CheckpointError(
            f"cannot resume '{run_dir}': the frozen {name}'s checkpoint '{spec.checkpoint}' ({key}.checkpoint) does "
            f"not exist: the resume checkpoint holds the trained models' weights, not the frozen ones', which are "
            f"read from their files again, so put it back, or, if it moved, set {key}.checkpoint in "
            f"'{run_dir / CONFIG_FILE}' to where it is now (the same weights: they are checked against the run's "
            f"digest of them){relative}").found_by_every_process()


def _resume_takes_no_arguments(args: list[str], run_dir: Path) -> str:
    """--resume given overrides: a data.root among them (data moved since) has its own way in."""
    said = "--resume continues a run with its saved config: drop the other arguments"
    if any(arg.replace(" ", "").startswith("data.root=") for arg in args):
        said += (f"; to read its data where it moved, set data.root (root: under data:) in '{run_dir / CONFIG_FILE}' "
                 "instead")
    return said


def _with_resume_data_advice(missing: DataPlaceError, run_dir: Path, root: str | None) -> DataPlaceError:
    """The run's data not found on resume: the loader's advice (set data.root) cannot be followed
    on the command line, which --resume refuses, so name the file and key that set it."""
    from ..scored_data import where_training_read

    meta = read_json(run_dir / RUN_FILE) if (run_dir / RUN_FILE).is_file() else {}
    relative = ("; a relative data.root counts from the folder the command runs in: resume from the folder "
                "training ran in, or write it as an absolute path" if root and not Path(root).is_absolute() else "")
    return reworded(missing, f"{missing.problem}: if the run's data moved, set data.root (root: under data:) in "
                             f"'{run_dir / CONFIG_FILE}' to where it is now and resume again (--resume takes no "
                             "key=value overrides; the data itself must be the run's, as it is checked)"
                             f"{relative}{where_training_read(meta, root) if root else ''}")


REPLACEMENT_WAIT = 120.0  # seconds a node's other processes wait for its first to finish a replacement


def put_back_replaced(run_dir: Path, wait: float = REPLACEMENT_WAIT) -> None:
    """What a killed --overwrite of ``run_dir`` left beside it, finished (``finish_replacing``)
    by one process of a node: under torchrun its others wait for that, rather than race it to
    the same folders (one of them putting the old run back out of sight of the warning only the
    main process prints, another reading the run's folder mid-move)."""
    import time

    if not not_first_on_node():
        from ..engine.artifacts import finish_replacing  # (torch with it: only where something is left)

        finish_replacing(run_dir)
        return
    deadline = time.monotonic() + wait
    while left_aside_beside(run_dir):
        if time.monotonic() > deadline:
            raise ConfigError(f"cannot resume '{run_dir}': this node's first process has not finished putting back "
                              f"what a killed --overwrite left beside it within {wait:.0f} s: see its message, or "
                              "resume again once it has")
        time.sleep(0.2)


def _check_names_a_run_folder(run_dir: Path) -> None:
    """``--resume`` takes a run's folder: a file (its config.yaml, a checkpoint) or a folder
    inside a run (its models/) is refused naming the run folder around it."""
    around = _run_folder_around(run_dir)
    give = f"give the run's folder, '{around}'" if around is not None else "give the run's folder, OUT_DIR/NAME"
    if run_dir.is_file():
        raise ConfigError(f"cannot resume '{run_dir}': it is a file: {give}")
    if not run_dir.is_dir():
        # (review 54g: a node whose disk lacks the run is told what it needs)
        node = ("; under torchrun every node reads the run's config.yaml: copy it from the main process's node "
                "to this path" if launched() else "")
        raise ConfigError(f"cannot resume '{run_dir}': no such folder ({give}){node}")
    if around is not None and not (run_dir / RUN_FILE).is_file() and not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"cannot resume '{run_dir}': it is a folder inside a run: {give}")


def _run_folder_around(path: Path) -> Path | None:
    """The nearest folder above ``path`` that is a run's (it holds run.json, which a run writes
    first; a config.yaml alone may be a user's own config), as given or else absolute."""
    for parent in [*path.parents, *(path.absolute().parents if not path.is_absolute() else [])]:
        if (parent / RUN_FILE).is_file():
            return parent
    return None


def cmd_train(ns: argparse.Namespace) -> int:
    with contextlib.ExitStack() as held:  # (a resumed run's lock, taken before its set-up: _train)
        return _train(ns, held)


def _train(ns: argparse.Namespace, held: contextlib.ExitStack) -> int:
    if ns.dry_run and ns.resume:
        raise ConfigError("--dry-run checks a new run before it starts; a run to --resume has started: drop one")
    if ns.resume:
        run_dir = Path(ns.resume)
        if left_aside_beside(run_dir):
            # an --overwrite killed outright left the run it replaced aside: back first (and before the
            # run's lock is taken below, which would keep this from putting it back)
            put_back_replaced(run_dir)
        _check_names_a_run_folder(run_dir)
        if not (run_dir / CONFIG_FILE).is_file() and (run_dir / RUN_FILE).is_file():  # stopped in its first second
            from .. import run_lock

            if run_lock.is_held(run_dir):  # (or still in it: writing its first files)
                raise ConfigError(f"cannot resume '{run_dir}': it is a run that has just started (another process "
                                  "holds it), its config and first checkpoint not written yet")
            raise ConfigError(f"cannot resume '{run_dir}': it stopped before its config and first checkpoint were "
                              "written, so there is nothing to resume: start it again, with --overwrite")
        if not any(run_dir.iterdir()):  # (review 52c: a kill in the first second leaves the folder empty)
            from .. import run_lock

            if run_lock.is_held(run_dir):
                raise ConfigError(f"cannot resume '{run_dir}': it is a run that has just started (another process "
                                  "holds it), with nothing written yet")
            raise ConfigError(f"cannot resume '{run_dir}': the folder is empty, the run stopped before it wrote "
                              "anything, so there is nothing to resume: run the same train command again (without "
                              "--resume)")
        if not (run_dir / CONFIG_FILE).is_file():
            raise ConfigError(f"cannot resume '{run_dir}': it has no config.yaml (is it a peerdistill run directory?)")
        if ns.args:
            raise ConfigError(_resume_takes_no_arguments(ns.args, run_dir))
        if ns.overwrite:
            raise ConfigError("--resume continues a run, --overwrite starts it again: give one of them")
        if not launched():
            # A run another process trains is refused now, not after its data is read and its models
            # built; held from here, the trainer takes the lock over and releases it as it ends.
            # (Under torchrun the main process's trainer refuses it, said by every process: a refusal
            # here, by the main process alone, would leave the others waiting for it.)
            from .. import run_lock

            held.enter_context(run_lock.held_ahead(run_dir))
        cfg = load_saved_config(run_dir / CONFIG_FILE)
        # torch comes with these: only once the config is read
        from ..engine.artifacts import RunDir
        from ..trust import check_every_arch_trusted

        RunDir(run_dir).check_resumable()  # before its data is read and its models built
        # the folder may come from elsewhere: its config names the factories the models are built by
        specs = [spec.model_dump() for spec in (*cfg.all_teachers(), *cfg.students)]
        check_every_arch_trusted(list(zip(cfg.member_names(), specs)), f"'{run_dir / 'config.yaml'}'")
        _check_frozen_checkpoints_there(cfg, run_dir)  # before the data is read
    else:
        path, overrides = _split_config_and_overrides(ns.args)
        cfg = load_config(path, overrides)
    if ns.dry_run:
        return _dry_run(ns, cfg)
    # torch comes with these: only once the config is read and checked
    from ..build import run_dir_for, train_from_config
    from ..ensemble_cost import members_parameters, student_names, with_ensemble
    from ..report import fitted, results_table
    from ..runs import saved_window, task_for

    run_dir = Path(ns.resume) if ns.resume else run_dir_for(cfg)
    ns.run_dir = run_dir  # for the hint after Ctrl-C
    try:
        result = train_from_config(cfg, run_dir=run_dir, overwrite=ns.overwrite, resume=bool(ns.resume),
                                   progress=not ns.quiet)
    except DataPlaceError as missing:
        if not ns.resume:
            raise
        raise _with_resume_data_advice(missing, run_dir, cfg.data.root) from None
    if launched_world()[0] != 0:  # under torchrun the main process alone reports
        return 0
    meta = read_json(run_dir / RUN_FILE)
    params = members_parameters(meta)
    costs = with_ensemble(meta.get("costs"), meta)
    monitor_metric = result.monitor.split("/", 1)[1]
    stopped = f"; stopped early: no better val in {cfg.train.patience} epochs" if result.stopped_early else ""
    tested = (meta.get("split_sizes") or {}).get("test")
    chosen = (f"the last epoch ({result.best_epoch + 1} of {len(result.history)}{stopped}; val {result.monitor} "
              "was n/a in every epoch)" if result.monitor_undefined else
              f"the best epoch ({result.best_epoch + 1} of {len(result.history)}{stopped}, by val {result.monitor})")
    title = f"test split{f' ({tested:,} samples)' if tested else ''} at {chosen}"
    summary = task_for(meta).summary_metrics
    window, overlap = saved_window(meta)
    teachers = [m.get("name") for m in meta.get("members") or [] if m.get("role") == "teacher"]
    console.print(fitted(results_table(title, result.test_at_best, params, result.val_at_best, monitor_metric,
                                       summary, costs=costs, macs_of="patch" if window else "",
                                       smaller_than=teachers[0] if len(teachers) > 1 else None),  # (review 56b)
                         console.width))
    say_what_the_ensemble_costs(costs, student_names(meta))
    if window and costs:
        err_console.print(f"note: MMACs/patch are of one {window[0]}x{window[1]} patch, what training saw; eval, "
                          f"predict and an export score a whole image window by window ({overlap:g} overlap), each "
                          "window costing as much", highlight=False, soft_wrap=True)
    say_which_pixels_count(meta, None)
    say_ensemble_of_one(meta, result.test_at_best)
    say_what_detection_figures_are(meta)
    say_what_not_available_means(result.test_at_best, summary)
    console.print(f"run directory: {run_dir}")
    return 0


def cmd_compare(ns: argparse.Namespace) -> int:
    overrides = [a for a in ns.args if _is_override(a)]
    paths = [a for a in ns.args if a not in overrides]
    places = [Path(p).resolve() for p in paths]  # (one file under two spellings: ./a.yaml, a link, review 51l)
    twice = next((p for i, p in enumerate(paths) if places.index(places[i]) != i), None)
    if twice is not None:
        first = paths[places.index(Path(twice).resolve())]
        also = f" (also as '{twice}')" if twice != first else ""
        raise ConfigError(f"compare: config '{first}' is given twice{also}: give it once (its runs over several "
                          "seeds: --seeds)")
    trees = [load_config_file(p) for p in paths] or [default_config()]
    keys = [applied_keys(tree, overrides) for tree in trees][0]  # the same overrides set the same keys in each
    # (no run would use it, and it went unchecked: review 55j; set still after distill=null cleared it: review 55n)
    distill = trees[0].get("distill")
    given = distill.get("preset") if isinstance(distill, dict) else None
    if ns.presets is not None and "distill.preset" in keys and given is not None:
        given = shown_value(given) if not isinstance(given, str) else given
        raise ConfigError(f"compare: the override distill.preset={given} is replaced by each preset of --presets "
                          f"{ns.presets}: drop it, or name the presets to run in --presets (e.g. --presets kd,kd+ml)")
    trees = [named_as_written(tree) for tree in trees]  # not after a preset --presets sets
    from ..comparison_configs import checked_bases, parse_presets, variant_trees

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
    from ..compare import compare

    compare(trees, presets, ns.seeds, overwrite=ns.overwrite, progress=not ns.quiet,
            console=console, out=out, teacher_from=ns.teacher_from, dry_run=ns.dry_run, jobs=ns.jobs,
            operating_point=ns.operating_point, folds=ns.folds, baseline=ns.baseline,
            temperature_scaling=ns.temperature_scaling, tta=ns.tta, by_name=bool(ns.setting), config_names=names)
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from ..engine.tta import TTA_SEEN
    from ..export import export_run
    from ..quantize import CALIBRATION_SAMPLES, MIN_AGREEMENT, percent

    not_decoding = [o for o in ns.overrides if not is_decoding(o)]
    if not_decoding:
        raise ConfigError(f"export takes only detect.* decoding settings after RUN_DIR, got '{not_decoding[0]}'")
    decoding = decoding_from(ns.overrides, "export")
    int8_only = [flag for flag, value in (("--calibration-samples", ns.calibration_samples),
                                          ("--min-agreement", ns.min_agreement)) if value is not None]
    if int8_only and ns.quantize is None:  # else an fp32 file written as if it had been checked
        raise ConfigError(f"{int8_only[0]} applies to --quantize int8: add --quantize int8, or drop it")
    result = export_run(ns.run_dir, model=ns.model, fmt=ns.format, out=ns.out, quantize=ns.quantize,
                        calibration=CALIBRATION_SAMPLES if ns.calibration_samples is None else ns.calibration_samples,
                        min_agreement=MIN_AGREEMENT if ns.min_agreement is None else ns.min_agreement,
                        temperature_scaling=ns.temperature_scaling, operating_point=ns.operating_point,
                        tta=ns.tta, decoding=decoding)
    parity = (f"; onnxruntime vs PyTorch: max |difference| {result.max_abs_diff:.3g} on {result.compared_on}"
              if result.max_abs_diff is not None else "")
    task = read_json(Path(ns.run_dir) / RUN_FILE).get("task") if (Path(ns.run_dir) / RUN_FILE).is_file() else None
    if task == "detection" and result.output == "logits":  # a detector's weights give no logits of classes
        what = ("dense head outputs; boxes are decoded outside the graph, by predict" if result.max_abs_diff is not None
                else "weights of a detector: its head's dense outputs, decoded into boxes by peerdistill")
    else:
        what = result.output
    if result.int8 is not None:
        check = result.int8
        what += f", int8: {check.int8_bytes / 1024:,.0f} KiB against {check.fp32_bytes / 1024:,.0f} KiB in fp32"
        if check.speed is not None:
            what += f", {check.speed.ratio:.2f}x fp32's speed on this machine one input at a time"
        decision = "same call at the threshold" if check.threshold is not None else "same class"
        parity += (f" (fp32 graph); int8 graph vs fp32 graph on {check.checked} {check.inputs}: {decision} for "
                   f"{round(check.agreement * check.predictions)} of {check.predictions} predictions "
                   f"({percent(check.agreement)}), max |probability difference| "
                   f"{check.max_probability_difference:.3g}")
        if check.class_dice:  # what the check judged: each class's mask against the fp32 one
            names = read_json(Path(ns.run_dir) / RUN_FILE).get("class_names") or []
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
    # (review 55o: 'best' read as the test table's leader)
    why = ": the best validation student" if ns.model in (None, "best") and result.model != "ensemble" else ""
    console.print(f"exported {result.model}{why} ({what}) to {result.path}{parity}", highlight=False)
    return 0


def cmd_predict(ns: argparse.Namespace) -> int:
    decoding = decoding_from([i for i in ns.inputs if is_decoding(i)], "predict")
    inputs = [i for i in ns.inputs if not is_decoding(i)]
    from ..predict import predict_files

    path = predict_files(ns.model_path, inputs, ns.out, model=ns.model, temperature_scaling=ns.temperature_scaling,
                         operating_point=ns.operating_point, visible_masks=ns.visible_masks, overlays=ns.overlays,
                         tta=ns.tta, decoding=decoding, skip_unreadable=ns.skip_unreadable, roi=ns.roi)
    console.print(f"wrote {path}{_what_was_predicted(ns, decoding)}", highlight=False)
    if ns.overlays is not None:  # (review 52a: where the pictures went was not said)
        console.print(f"wrote the overlays into {ns.overlays}", highlight=False)
    return 0


def _what_was_predicted(ns: argparse.Namespace, decoding: dict | None) -> str:
    """Which model of a run directory predicted (its 'best', predict's default, as export says
    it; an ensemble's members and how they are combined) and what a run of its task writes:
    the wrong run folder (a classifier for boxes) shows at once (review 47a)."""
    if Path(ns.model_path).suffix.lower() == ".onnx":
        return _what_the_export_predicted(Path(ns.model_path))
    from ..engine.artifacts import RunDir
    from ..export import best_student
    from ..report import fusion_in_words

    meta = RunDir.open(ns.model_path).meta()
    task = meta.get("task", "classification")
    if ns.model in (None, "best"):
        which = f"model {best_student(Path(ns.model_path), meta)}: the best validation student"
    elif ns.model == "ensemble":
        students = [m["name"] for m in meta["members"] if m["role"] == "student"]
        how = f"boxes fused by {fusion_in_words(meta, decoding)}" if task == "detection" else "probabilities averaged"
        which = f"the ensemble of {', '.join(students)}: {how}"
    else:
        which = f"model {ns.model}"
    return f" ({which}; a {task} run: {PREDICTED[task]})"


PREDICTED = {"classification": "class probabilities", "segmentation": "masks", "detection": "boxes"}


def _what_the_export_predicted(onnx_path: Path) -> str:
    """An export's model and task, as its JSON records them (read and checked by predict already)."""
    from ..sidecar import read_sidecar

    info = read_sidecar(onnx_path)
    source = info.get("exported_from") or {}
    which = f"model {source['model']} of {source.get('run', 'its run')}; " if source.get("model") else ""
    return f" ({which}a {info['task']} model: {PREDICTED[info['task']]})"


def cmd_report(ns: argparse.Namespace) -> int:
    from ..html_report import reemit, write_report_holding_warnings

    path, held = write_report_holding_warnings(ns.path, ns.out)
    console.print(f"wrote {path}", highlight=False)
    reemit(held)  # after: under -W error the first ends the command, the page written and said
    return 0


def cmd_presets(ns: argparse.Namespace) -> int:
    from rich.table import Table

    from ..config import PRESET_DOCS

    table = Table(title="presets")
    table.add_column("preset")
    table.add_column("who teaches whom")
    for name, doc in PRESET_DOCS.items():
        table.add_row(name, doc)
    table.add_row("custom", "the edges listed under distill.edges")
    console.print(table)
    return 0
