"""The runs of a comparison: its settings (rows), each run's config, and whether a run is
trained, continued from its checkpoint or reused; with ``--teacher-from``, the frozen teachers."""

from __future__ import annotations

import copy
import functools
import glob
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.markup import escape
from rich.table import Table
from safetensors.torch import load_file

from .terminal import Console
from .build import build_cohort, checkpoint_file, train_from_config
from .data.digests import file_sha256
from .data import fingerprint as fingerprints
from .data import build_data
from .data.sources import check_new_run_data
from .data.splits import GROUP_FOLD_VAL, group_fold_mark
from .config import (FILE_KINDS, TEACHER_PRESETS, TRAINING_ONLY_KEYS, RunConfig, as_read, check_preset_names,
                     load_saved_config, validate)
from .comparison_configs import setting_tree
from .config_diff import differences, relocated, summary, what_a_result_depends_on
from . import run_lock
from .engine.artifacts import REPLACE_MARK, RunDir
from .engine.environment import DEPENDS_ON, session_environments
from .engine.distributed import World, join, on_main, process_device
from .launcher import launched
from .engine.devices import resolve_device
from .errors import CheckpointError, ConfigError, NonFiniteError, PeerdistillError, RunDirError, reworded
from .json_files import read_json
from .post_hoc import check_post_hoc_options
from .run_files import CONFIG_FILE, METRICS_FILE, RUN_FILE, listed_warnings
from .run_pool import run_in_processes
from .option_names import option, option_given, options_named_as_flags
from .wording import first_few

FROZEN_MARK = "(frozen teacher)"
FROZEN_MARKS = (FROZEN_MARK, "(frozen teachers)")  # one teacher, several (their run folders are named alike)


def frozen_mark(base: RunConfig) -> str:
    """The mark of a setting that freezes ``base``'s teachers: plural where it has several."""
    return FROZEN_MARKS[len(base.all_teachers()) > 1]


@dataclass
class Setting:
    label: str
    tree: dict[str, Any]
    preset: str
    source: str | None = None  # the label of the setting whose teachers this one freezes


@dataclass
class Plan:
    label: str
    cfg: RunConfig
    run_dir: Path
    source_run: Path | None  # the run whose teachers this one freezes

    @property
    def fold(self) -> int | None:
        """The fold that is this run's test split (k-fold cross-validation), else None."""
        return self.cfg.data.fold if self.cfg.data.folds else None

    def describe(self) -> str:
        fold = f", fold {self.fold}" if self.fold is not None else ""
        return f"{self.label}, seed {self.cfg.seed}{fold}"


def settings_of(configs: list[dict[str, Any]], bases: list[RunConfig], presets: list[str] | None,
              teacher_from: str | None, by_name: bool = False) -> list[Setting]:
    """Rows of the table: labelled by preset with one config (unless ``by_name``: the config's
    name, as for several), else by config name (and preset, when presets are given); with
    ``teacher_from``, its setting first and the others frozen."""
    if teacher_from is not None:
        _check_teacher_source(teacher_from, bases)
        unread = [p for p in dict.fromkeys(presets or [b.distill.preset for b in bases])
                  if p != teacher_from and p not in (*TEACHER_PRESETS, "custom")]
        if unread:  # their rows would claim a distillation that never happens
            raise ConfigError(f"{option_given('--teacher-from', teacher_from)}: preset(s) {', '.join(unread)} do not "
                              "learn from a teacher, so a frozen one would change nothing; list presets that do ("
                              f"{', '.join(TEACHER_PRESETS)}), and compare the others without "
                              f"{option('--teacher-from')}")

    def label_of(base: RunConfig, preset: str, named_by_preset: bool) -> str:
        if len(configs) == 1 and not by_name:
            return preset
        return f"{base.name}:{preset}" if named_by_preset else base.name

    settings = []
    for tree, base in zip(configs, bases):
        own = presets or [base.distill.preset]
        if teacher_from is None:
            settings += [Setting(label_of(base, p, presets is not None), tree, p) for p in own]
            continue
        source = label_of(base, teacher_from, True)
        settings.append(Setting(source, tree, teacher_from))
        settings += [Setting(f"{label_of(base, p, presets is not None)} {frozen_mark(base)}", tree, p, source)
                     for p in own if p != teacher_from]
    if teacher_from is not None and not any(s.source for s in settings):
        raise ConfigError(f"{option_given('--teacher-from', teacher_from)}: no other preset to distil into; name them "
                          f"with {option_given('--presets', ['kd', 'kd+ml'])}")
    return settings


def plan_runs(settings: list[Setting], seeds: int, directory: Path, folds: int | None = None) -> list[Plan]:
    """Every run of every setting: seeds ``seed, seed+1, ...`` of its config, and with ``folds``
    each seed once per fold (``data.folds``/``data.fold``: k-fold cross-validation)."""
    _FINGERPRINTS.clear()  # (a new comparison: its data may have changed since the last one)
    prefixes: dict[str, str] = {}
    for setting in settings:
        other = prefixes.setdefault(_run_prefix(setting.label), setting.label)
        if other != setting.label:
            raise ConfigError(f"compare: the settings '{other}' and '{setting.label}' would share run "
                              "directories; give their configs names that differ in letters or digits")
    plans = []
    for setting in settings:
        base_seed = validate(setting_tree(setting.tree, setting.preset, None, None, None),
                             f"config of {setting.label}").seed
        for seed in range(base_seed, base_seed + seeds):
            for fold in range(folds) if folds else [None]:
                source_run = directory / run_name(setting.source, seed, fold) if setting.source else None
                tree = _with_frozen_teachers(setting.tree, source_run) if source_run else setting.tree
                if fold is not None:
                    tree = _on_fold(tree, fold, folds)
                cfg = validate(setting_tree(tree, setting.preset, seed, run_name(setting.label, seed, fold), directory),
                               f"config of {setting.label}")
                plans.append(Plan(setting.label, cfg, directory / cfg.name, source_run))
    return plans


def _on_fold(tree: dict[str, Any], fold: int, folds: int) -> dict[str, Any]:
    """``tree`` with fold ``fold`` of ``folds`` as its test split, in place of the config's own
    split: its ``data.test_fraction`` (refused beside ``data.folds``) goes."""
    out = copy.deepcopy(tree)
    data = {k: v for k, v in (out.get("data") or {}).items() if k != "test_fraction"}
    out["data"] = {**data, "folds": folds, "fold": fold}
    return out


def plan_table(plans: list[Plan], overwrite: bool) -> Table:
    table = Table(title="compare --dry-run: what each run would do")
    folds = any(plan.fold is not None for plan in plans)
    for column in ("setting", "seed") + (("fold",) if folds else ()) + ("run directory", "action"):
        table.add_column(column, overflow="fold")  # (a refusal names the folder to delete: whole)
    for plan in plans:
        try:
            state = _state(plan, overwrite)
            action = {"new": "train", "finished": "reuse", "restart": f"train again ({NO_CHECKPOINT_YET})"}.get(state) \
                or _continue_point(plan.run_dir)
            missing = _missing_input(plan) if state != "finished" else None
            if missing:
                action = f"[red]would stop[/]: {missing}"
        except PeerdistillError as exc:  # (the table is that list: its hint goes)
            action = f"[red]refused[/]: {escape(_without_dry_run_hint(str(exc)))}"
        fold = (str(plan.fold),) if folds else ()
        table.add_row(plan.label, str(plan.cfg.seed), *fold, str(plan.run_dir), action)
    return table


def check_as_a_dry_run(plans: list[Plan], overwrite: bool, reused_read_data: bool = False) -> None:
    """After the dry run's table, what the command would refuse (a run it cannot reuse, as the
    table says) or meet as its runs start, raised as the command would raise it, each config's
    data read and its models built once (review 50c: one config's data went unread, and a run
    that would stop at once was listed and the dry run exited 0)."""
    try:
        check_states(plans, overwrite)
    except PeerdistillError as exc:
        raise reworded(exc, _without_dry_run_hint(str(exc))) from None
    check_before_training(plans, build=True, two_classes=False, overwrite=overwrite, reused_read_data=reused_read_data)


def check_states(plans: list[Plan], overwrite: bool) -> None:
    """Every run the comparison would refuse (another config, other data or teachers than it was
    trained on, folds cut by an earlier version), refused before any run trains (review 50i: met
    only as its turn came, after the runs before it)."""
    for plan in plans:
        _state(plan, overwrite)


def _reused(plan: Plan, overwrite: bool) -> bool:
    """Whether the comparison would reuse the plan's finished run (one it would refuse: no)."""
    try:
        return _state(plan, overwrite) == "finished"
    except PeerdistillError:
        return False


def _dry_run_hint() -> str:
    return f"the same call with {option('--dry-run')} lists every run so refused"


def _without_dry_run_hint(message: str) -> str:
    return message.replace(f"; {_dry_run_hint()})", ")").replace(f" ({_dry_run_hint()})", "")


def _missing_input(plan: Plan) -> str | None:
    """A file the run reads first that is not there (a teacher trained by an earlier run of the
    comparison is not looked for: it does not exist yet)."""
    missing = _missing_data(plan)
    if missing:
        return missing
    if plan.source_run is None:
        for teacher in plan.cfg.all_teachers():
            if teacher.checkpoint and not Path(teacher.checkpoint).exists():
                return f"the teacher's checkpoint '{teacher.checkpoint}' does not exist"
    return None


def _missing_data(plan: Plan) -> str | None:
    root = plan.cfg.data.root
    if root and plan.cfg.data.kind in FILE_KINDS and not Path(root).exists():
        return f"data.root '{root}' does not exist"
    return None


def by_way_of_reading(plans: list[Plan]) -> list[list[Plan]]:
    """The plans grouped by how their data is read: one read serves a group (keys acting in
    training only, the fold among them, change neither what the data holds nor which models it
    builds)."""
    groups: dict[str, list[Plan]] = {}
    for plan in plans:
        key = json.dumps(plan.cfg.data.model_dump(mode="json", exclude=TRAINING_ONLY_KEYS), sort_keys=True)
        groups.setdefault(key, []).append(plan)
    return list(groups.values())


def check_before_training(plans: list[Plan], *, build: bool, two_classes: bool, overwrite: bool = False,
                          reused_read_data: bool = False) -> None:
    """Mistakes a run would meet only as it starts, found before any run trains or ``--overwrite``
    replaces anything: a missing data.root or teacher checkpoint, a device not there (every run);
    with ``build``, each config's data read and its models built once (a mistyped model argument,
    unreadable data; a run already there, to be reused or resumed, as it trained: checks added
    since do not stop it); with ``two_classes`` (an operating point), data of another number of classes.
    A finished run to be reused reads nothing, unless ``reused_read_data`` (a threshold, temperature
    or flips scored from its saved weights): its data or teacher moved away since is no obstacle."""
    kept = []
    for plan in plans:
        missing = _missing_input(plan)
        if missing and _reused(plan, overwrite):  # (its models are read from its own weights, not rebuilt)
            needed = _missing_data(plan) if reused_read_data else None  # (review 50j: not its teacher's file)
            if needed:
                raise ConfigError(f"{plan.describe()}: {needed}: give the right path")
            continue
        if missing:
            raise ConfigError(f"{plan.describe()}: {missing}: give the right path")
        kept.append(plan)
    plans = kept
    for device in dict.fromkeys(plan.cfg.device for plan in plans):
        resolve_device(device)
    if not (build or two_classes):
        return
    for group in by_way_of_reading(plans):  # each read is dropped before the next
        built: set[str] = set()
        checking = group[0]
        try:
            data = build_data(checking.cfg.data)
            check_post_hoc_options(checking.cfg.task, num_classes=data.num_classes, operating_point=two_classes,
                                   of="comparison")
            for checking in group if build else ():
                specs = checking.cfg.all_teachers() + list(checking.cfg.students)
                saved = not (overwrite or (checking.run_dir / REPLACE_MARK).is_file()) and (
                    checking.run_dir / CONFIG_FILE).is_file()
                models = json.dumps([saved, *(m.model_dump(mode="json") for m in specs)], sort_keys=True)
                if not saved:
                    check_new_run_data(checking.cfg.data, data)
                if checking.source_run is None and models not in built:  # (frozen ones: their teachers train first)
                    build_cohort(checking.cfg, data, saved=saved)
                    built.add(models)
        except PeerdistillError as exc:
            raise reworded(exc, f"{checking.describe()}: {exc}") from None


NO_CHECKPOINT_YET = "it stopped before its first checkpoint"


def _continue_point(run_dir: Path) -> str:
    try:
        done = len(read_json(run_dir / METRICS_FILE).get("epochs", []))
    except PeerdistillError:
        done = 0
    return f"continue after epoch {done}" if done else "continue from its checkpoint"


def run_all(plans: list[Plan], overwrite: bool, progress: bool, console: Console,
            jobs: int = 1, world: World = World()) -> list[dict[str, Any]]:
    """Every plan's test metrics, in plan order. With ``jobs`` > 1, that many runs train at once,
    each in its own process with its share of the CPU threads; a frozen run starts once the run
    that trains its teachers has finished (other runs fill the gap). Under torchrun (``world``)
    every process trains each run in turn, as the first process decides (train, continue or
    reuse it)."""
    if jobs <= 1:
        return [run_or_reuse(plan, overwrite, progress, console, world) for plan in plans]
    work = functools.partial(_run_quietly, overwrite=overwrite, quiet=console.quiet)
    index_of = {plan.run_dir: i for i, plan in enumerate(plans)}
    at_once = min(jobs, len(plans))
    gpus = gpus_to_share(plans)
    if gpus:
        turns = ", ".join(gpus[k % len(gpus)] for k in range(at_once))
        console.print(f"[bold]compare[/]: {at_once} runs at once, each worker on one GPU (CUDA_VISIBLE_DEVICES "
                      f"{turns})")
    return run_in_processes(plans, work, at_once, max(1, torch.get_num_threads() // at_once), console,
                            describe=Plan.describe,
                            needs=lambda i: index_of.get(plans[i].source_run),
                            worker_envs=[{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus])


def gpus_to_share(plans: list[Plan]) -> list[str]:
    """The GPUs that ``--jobs`` workers take in turn, as CUDA_VISIBLE_DEVICES values: every
    visible one when there are several and the runs' device leaves the choice open (``auto``
    or ``cuda``); none otherwise (one GPU, none, or a run that names its own, ``cuda:N``, which
    hiding the others would break)."""
    devices = {plan.cfg.device for plan in plans} - {"cpu"}
    if not devices or not devices <= {"auto", "cuda"}:
        return []
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # already narrowed (by a scheduler, say): those, by their own names
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip()][:torch.cuda.device_count()]
    return [str(index) for index in range(torch.cuda.device_count())]


def _run_quietly(plan: Plan, overwrite: bool, quiet: bool) -> dict[str, Any]:
    # In a worker process: one line per run instead of progress bars that would interleave.
    return run_or_reuse(plan, overwrite, False, Console(stderr=True, soft_wrap=True, quiet=quiet))


def run_or_reuse(plan: Plan, overwrite: bool, progress: bool, console: Console,
                 world: World = World()) -> dict[str, Any]:
    """Train the run, continue it, or reuse it when it has finished; its test metrics. Under
    torchrun (``world``) the first process decides and reads the metrics (its disk holds the
    run), for every process."""
    head = f"[bold]compare[/]: {plan.describe()}"
    state = on_main(world, lambda: _state(plan, overwrite))
    try:
        if state == "finished":
            console.print(f"{head}: reusing finished run {plan.run_dir}")
        elif state == "unfinished":
            console.print(f"{head}: resuming unfinished run {plan.run_dir}")
            _resume(plan.cfg, plan.run_dir, progress)
        elif state == "restart":  # what it holds is replaced: said (review 47b), as a resumption is
            console.print(f"{head}: training again run {plan.run_dir} ({NO_CHECKPOINT_YET})")
            train_from_config(plan.cfg, run_dir=plan.run_dir, overwrite=True, progress=progress)
        else:
            console.print(f"{head} -> {plan.run_dir}")
            train_from_config(plan.cfg, run_dir=plan.run_dir, overwrite=True, progress=progress)
    except NonFiniteError as exc:
        if exc.finding is None:
            raise
        # A single run's advice (resume it with another policy) would leave it apart from the
        # comparison's config, which its other runs share.
        raise NonFiniteError(f"{plan.run_dir}: {exc.finding}. In a comparison every run follows its config: lower "
                             "optim.lr, or set train.nonfinite: skip, there and run compare again with --overwrite; "
                             "or check the data for extreme values", exc.finding) from None
    return on_main(world, lambda: RunDir(plan.run_dir).metrics())


def comparison_world(plans: list[Plan]) -> World:
    """Under torchrun, the process group every run of the comparison trains in (joined once,
    rather than a group per run: a group joined again is sound since ``distributed._keys_of_its_own``,
    but each join costs a rendezvous); else a single process's world. The runs must all be on one
    kind of device, which picks the backend."""
    if not launched():
        return World()
    devices = {resolve_device(plan.cfg.device).type for plan in plans}
    if len(devices) > 1:
        raise ConfigError(f"under torchrun the runs of a comparison share one process group, so one kind of device: "
                          f"these configs ask for {' and '.join(sorted(devices))}; set device the same in each")
    return join(process_device(resolve_device(plans[0].cfg.device)))




def mark_for_replacement(plans: list[Plan]) -> None:
    runs = [plan.run_dir for plan in plans if (plan.run_dir / RUN_FILE).is_file()]
    for run_dir in runs:  # all before any mark: a refused command marks nothing
        run_lock.check_free(run_dir)
    for run_dir in runs:
        (run_dir / REPLACE_MARK).write_text("compare --overwrite will train this run again\n")


def _state(plan: Plan, overwrite: bool) -> str:
    """What ``_run_state`` says, after checking a frozen-teacher run against its source; a run
    an interrupted ``compare --overwrite`` had still to replace is new."""
    replace = overwrite or (plan.run_dir / REPLACE_MARK).is_file()
    state = "new" if replace else _run_state(plan.run_dir, plan.cfg)
    if state in ("finished", "unfinished") and plan.source_run is not None:
        _check_same_teachers(plan)
    if state in ("finished", "unfinished"):
        meta = read_json(plan.run_dir / RUN_FILE)  # (once for both checks)
        _check_same_files(plan, meta)
        _check_same_fold_cut(plan, meta)
    return state


def _check_same_fold_cut(plan: Plan, meta: dict[str, Any]) -> None:
    """A grouped fold's run cut by a version that took every fold's val patients from one order
    (review 50c) splits otherwise than this version's runs of the comparison: not reused beside
    them, whose paired differences would compare runs of other training patients (review 50e)."""
    if not group_fold_mark(plan.cfg.data):
        return
    info = meta.get("data_info") or {}
    if GROUP_FOLD_VAL not in info:
        raise RunDirError(f"'{plan.run_dir}' was cut into grouped folds by an earlier version of peerdistill, whose "
                          "val took the same patients in every fold; this version draws them per fold, so its runs "
                          f"split otherwise: delete '{plan.run_dir}' to train it again, or pass "
                          f"{option('--overwrite')} to redo the whole comparison ({_dry_run_hint()})")


_FINGERPRINTS: dict[tuple, str | None] = {}  # (data.root, kind, path column) -> fingerprint, within one comparison


def _check_same_files(plan: Plan, meta: dict[str, Any]) -> None:
    """A run is reused (or continued) only while the files its config names hold what it was
    trained on: an archive replaced under the same path (its SHA-256 in run.json: ``meta``), a
    teacher's checkpoint trained again (its file's SHA-256, recorded since this check)."""
    redo = (f"delete '{plan.run_dir}' to train it again on them, or pass {option('--overwrite')} to redo the whole "
            "comparison "
            f"(or put back the files it was trained on; {_dry_run_hint()})")
    trained_on = (meta.get("data_info") or {}).get("sha256")
    root = Path(plan.cfg.data.root or "")
    if plan.cfg.data.kind == "npz" and trained_on and root.is_file() and file_sha256(root) != trained_on:
        raise RunDirError(f"'{plan.run_dir}' was trained on another version of '{root}' (its SHA-256 differs from "
                          f"run.json's data_info.sha256): its figures are not of this data; {redo}")
    held = meta.get("data_fingerprint")  # (runs from 2026-12-06 on; any kind with a data.root)
    if fingerprints.table_digest(held, plan.cfg.data):  # a CSV's, recorded before its images were listed too
        now = file_sha256(root) if root.is_file() else None
    elif not fingerprints.comparable(held, plan.cfg.data):
        return _check_same_checkpoints(plan, meta, redo)
    else:
        # (what says which files are listed, and how: a run recorded by an earlier version in its form)
        key = (plan.cfg.data.root, plan.cfg.data.kind, plan.cfg.data.path_column, held.split(":", 1)[0])
        if key not in _FINGERPRINTS:  # once per comparison: a large folder's listing takes a while
            _FINGERPRINTS[key] = fingerprints.data_fingerprint(plan.cfg.data, like=held)
        now = _FINGERPRINTS[key]
    if now is not None and now != held:
        raise RunDirError(f"'{plan.run_dir}' was trained on another version of '{root}' "
                          f"({fingerprints.what_differs(held, now)} from run.json's data_fingerprint): its figures are "
                          f"not of this data; {redo}")
    _check_same_checkpoints(plan, meta, redo)


def _check_same_checkpoints(plan: Plan, meta: dict, redo: str) -> None:
    recorded = meta.get("checkpoint_sha256") or {}
    specs = dict(zip(plan.cfg.member_names(), (*plan.cfg.all_teachers(), *plan.cfg.students), strict=True))
    for name, digest in recorded.items():
        try:
            now = file_sha256(checkpoint_file(specs[name].checkpoint, name))
        except (KeyError, TypeError, CheckpointError, OSError):  # gone, or not yet trained: the run needs it no more
            continue
        if now != digest:
            raise RunDirError(f"'{plan.run_dir}' was trained from another {name} checkpoint than the file its config "
                              f"names holds now (its SHA-256 differs from run.json's checkpoint_sha256): {redo}")


def _check_same_teachers(plan: Plan) -> None:
    """A frozen-teacher run is only reused while its source run still holds the teachers it
    was distilled from (the source may have been trained again since)."""
    names = plan.cfg.member_names()[:len(plan.cfg.all_teachers())]
    for name in names:
        used, now = RunDir(plan.run_dir).model_path(name), RunDir(plan.source_run).model_path(name)
        if used.is_file() and now.is_file() and not _same_tensors(used, now):
            raise RunDirError(f"'{plan.run_dir}' was distilled from a {name} that '{plan.source_run}' no longer "
                              f"holds (that run was trained again): delete '{plan.run_dir}' to redo it, "
                              f"or pass {option('--overwrite')} to redo the whole comparison ({_dry_run_hint()})")


def _same_tensors(a: Path, b: Path) -> bool:
    left, right = load_file(str(a)), load_file(str(b))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def _check_teacher_source(teacher_from: str, bases: list[RunConfig]) -> None:
    check_preset_names("--teacher-from", [teacher_from])
    for base in bases:
        if not base.all_teachers():
            raise ConfigError(f"{option_given('--teacher-from', teacher_from)}: config '{base.name}' has no teacher to "
                              "train first: add a 'teacher' section")
        if any(t.frozen for t in base.all_teachers()):
            raise ConfigError(f"{option_given('--teacher-from', teacher_from)}: the teacher of config '{base.name}' is "
                              f"already frozen (teacher.frozen: true): drop {option('--teacher-from')}, or set frozen: "
                              "false to train it first")


def _with_frozen_teachers(tree: dict[str, Any], source_run: Path) -> dict[str, Any]:
    """``tree`` with each teacher frozen at the weights ``source_run`` saved for it (a run
    directory as checkpoint means its model of the same name)."""
    out = copy.deepcopy(tree)
    for spec in [out["teacher"]] if out.get("teacher") is not None else out["teachers"]:
        spec["frozen"] = True
        spec["checkpoint"] = str(source_run)
    return out


def _run_prefix(label: str) -> str:
    # 'kd+ml', 'name:kd', 'kd (frozen teacher)' -> kd+ml-seed, name-kd-seed, kd-frozen-teacher-seed;
    # 'multi-teacher (frozen teachers)' -> multi-teacher-frozen-teacher-seed (as earlier versions named it: reused)
    for mark in reversed(FROZEN_MARKS):  # (the plural first: the singular begins it)
        label = label.replace(f" {mark}", "-frozen-teacher")
    return f"{label.replace(':', '-').replace('/', '-').replace(';', '-')}-seed"  # ';' parts lists in compare.csv


def run_name(label: str, seed: int, fold: int | None = None) -> str:
    """The directory of one seed (and fold) of a setting inside the comparison's directory."""
    return f"{_run_prefix(label)}{seed}" + (f"-fold{fold}" if fold is not None else "")


def setting_runs(directory: Path, label: str) -> list[Path]:
    """The finished or unfinished run directories of a setting, by seed (and fold)."""
    prefix = _run_prefix(label)
    numbered = re.compile(rf"{re.escape(prefix)}(\d+)(?:-fold(\d+))?")
    runs = {}
    for p in directory.glob(f"{glob.escape(prefix)}*"):
        match = numbered.fullmatch(p.name)
        if match and (p / RUN_FILE).is_file():
            runs[p] = (int(match[1]), int(match[2] or -1))
    return sorted(runs, key=runs.get)


def run_records(paths: list[Path]) -> dict[Path, dict[str, Any]]:
    """Each run's run.json by its folder: read once for all that a comparison's tables and page
    say of the runs. One that does not read (damaged or missing) is left out: its own commands
    say what is wrong with it."""
    records = {}
    for path in paths:
        try:
            records[path] = read_json(path / RUN_FILE)
        except (OSError, CheckpointError):
            continue
    return records


def warnings_of_runs(paths: list[Path], records: dict[Path, Any],
                     metrics: dict[Path, Any]) -> list[tuple[str, list[str]]]:
    """The warnings each run gave as training began (run.json's ``training_warnings``: validation
    or test images identical to training ones, a ramp-up as long as training...) and as it ended
    (metrics.json's ``ending_warnings``: a best epoch chosen by nothing, kept weights that give
    every image one class), each once, with the runs that gave it: a comparison's tables, copied
    into a paper, must not leave them on a console (review 47b). ``records`` and ``metrics``: the
    runs' run.json (``run_records``) and metrics.json by folder, those that read."""
    given: dict[str, list[str]] = {}
    for path in paths:
        files = {RUN_FILE: records.get(path), METRICS_FILE: metrics.get(path)}
        for when, name, key in (("as training read its data: ", RUN_FILE, "data_notes"),
                                ("", RUN_FILE, "training_warnings"), (ENDED, METRICS_FILE, "ending_warnings")):
            if files[name] is None:  # (a damaged or missing file: its commands say so)
                continue
            for warning in listed_warnings(files[name], key):
                given.setdefault(when + warning, []).append(path.name)
    return list(given.items())


def environments_apart(records: dict[Path, dict[str, Any]]) -> str | None:
    """What of their versions, device and threads the runs did not share (run.json's
    ``environment``; runs of earlier versions did not record it), said above a comparison's
    tables: reused runs may come from another machine or another ``--jobs`` (review 51d).
    ``records``: the runs' run.json by folder (``run_records``: a damaged or missing one is left out)."""
    seen: dict[str, dict[str, list[str]]] = {}
    for path, meta in records.items():
        # each session's values in turn: a run resumed otherwise (another --jobs: review 51l), or one an
        # earlier version began, whose first resume recorded them all (review 51m)
        sessions = session_environments(meta)
        for key in DEPENDS_ON:
            values = [str(env[key]) for env in sessions if key in env]
            if values:
                told = " then ".join(v for i, v in enumerate(values) if i == 0 or v != values[i - 1])
                seen.setdefault(key, {}).setdefault(told, []).append(path.name)
    apart = {key: values for key, values in seen.items() if len(values) > 1 or any(" then " in v for v in values)}
    if not apart:
        return None

    def runs(value: str, names: list[str], most: int) -> str:  # (the odd ones out named: review 51k)
        return (f"{len(names)} run{'s' if len(names) > 1 else ''}"
                + (f": {first_few(names)}" if len(names) < most or " then " in value else ""))

    told = "; ".join(f"{key}: " + ", ".join(f"{value} ({runs(value, names, max(map(len, values.values())))})"
                                           for value, names in values.items()) for key, values in apart.items())
    return (f"The runs did not all train alike ({told}): their figures differ by that as well as by their "
            "settings, a little (threads, another torch) or more (another device's precision); "
            "each run's run.json has its `environment`.")


ENDED = "as training ended: "  # how a warning given at the end of training is told from one given as it began
# how a warning compare itself met, choosing a run's threshold or temperature, is told apart: in
# compare.md alone (not in the runs' files), whence the comparison page reads it
CHOSEN_ON_VAL = "as the threshold or temperature was chosen on val: "


def warning_lines(given: list[tuple[str, list[str]]], count: int) -> list[str]:
    """Each warning of ``warnings_of_runs`` with how many of the ``count`` runs gave it (and
    which, where not all did): compare.md's list and the comparison page's alike."""
    return [f"{text} ({len(names)} of {count} runs{': ' + ', '.join(names) if len(names) < count else ''})"
            for text, names in given]


def _keep_both() -> str:
    """How to keep a run compare would otherwise redo: a comparison's runs live in its folder,
    which --out names (name= alone would rename every config's runs)."""
    return f"give it another folder to keep both ({option('--out', 'DIR')})"


def _run_state(run_dir: Path, cfg: RunConfig) -> str:
    """``finished`` (reuse it), ``unfinished`` (it has a resume checkpoint: continue it),
    ``restart`` (it stopped before its first checkpoint: train it again) or ``new`` (train from
    the start). A run of another config is an error, never overwritten.

    The saved config is read through today's schema, so a run made before a new option existed
    still counts as the same config when the option is at its default; a comparison moved or
    copied to another directory keeps its runs, and so does one run on another device or with
    another evaluation batch (``config_diff.what_a_result_depends_on``)."""
    saved_path = run_dir / CONFIG_FILE
    run_lock.check_free(run_dir)  # another compare (or train) trains it now: neither resumed nor reused beside it
    if not saved_path.exists():
        return "new"
    try:
        saved = as_read(load_saved_config(saved_path))
    except (ConfigError, yaml.YAMLError) as exc:
        raise RunDirError(f"'{run_dir}' holds a run whose config no longer reads "
                          f"({str(exc).strip().splitlines()[-1].strip()}): pass {option('--overwrite')} to redo "
                          f"the comparison, or {_keep_both()}") from None
    now = as_read(cfg)
    changed = differences(what_a_result_depends_on(relocated(saved, saved["out_dir"], now["out_dir"])),
                          what_a_result_depends_on(now))
    if changed:
        raise RunDirError(f"'{run_dir}' holds a run with a different config ({summary(changed)}): delete that run "
                          f"folder (and its other seeds') to train that row again, pass {option('--overwrite')} to redo "
                          f"the whole comparison, or {_keep_both()}"
                          + (" (a --setting of another NAME keeps both too)" if options_named_as_flags() else
                             " (a config of another name keeps both too)"))
    run = RunDir(run_dir)
    if not run.is_complete:
        return "unfinished" if run.resume_path.is_file() else "restart"
    if not (run_dir / METRICS_FILE).is_file():  # its figures gone; its models, kept, not trained over
        raise RunDirError(f"'{run_dir}' is a finished run without its metrics.json: restore the file, or delete "
                          f"the folder to train that run again ({option('--overwrite')} redoes the whole comparison)")
    return "finished"


def _resume(cfg: RunConfig, run_dir: Path, progress: bool) -> None:
    try:
        train_from_config(cfg, run_dir=run_dir, resume=True, progress=progress)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}. In this comparison: delete '{run_dir}' to train that run again from the start, "
                              f"or pass {option('--overwrite')} to redo the whole comparison") from None
