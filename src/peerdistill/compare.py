"""Run several presets with the same split and seeds; tabulate mean ± std: the paper's main table."""

from __future__ import annotations

import copy
import csv
import glob
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file
from rich.table import Table

from .build import train_from_config
from .config import PRESETS, RunConfig, to_yaml, validate
from .engine.artifacts import RunDir, atomic_write_text, read_json
from .engine.evaluate import ENSEMBLE
from .errors import CheckpointError, ConfigError, PeerdistillError, RunDirError
from .metrics import ranking_score
from .report import comparison_markdown, mean_std, pm

BEST_STUDENT = "best student"
FROZEN_MARK = "(frozen teacher)"


@dataclass
class Comparison:
    rows: list[dict[str, Any]]
    directory: Path
    markdown: str


def parse_presets(text: str | None) -> list[str] | None:
    if text is None:
        return None
    presets = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in presets if p not in PRESETS or p == "custom"]
    if not presets or bad:
        raise ConfigError(f"--presets: unknown {bad or 'empty list'}; choose from "
                          f"{', '.join(p for p in PRESETS if p != 'custom')}")
    return presets


def compare(configs: list[dict[str, Any]] | dict[str, Any], presets: list[str] | None, seeds: int, *,
            overwrite: bool = False, progress: bool = True, console: Console | None = None,
            out: str | Path | None = None, teacher_from: str | None = None,
            dry_run: bool = False) -> Comparison:
    """Run every (config, preset) setting with seeds ``seed, seed+1, ...`` and tabulate them.

    ``configs`` are unvalidated config mappings. Each config runs ``presets`` if given, else its
    own preset. Rows are labelled by preset when there is one config, else by config name (and
    preset, when ``presets`` is given). The data split
    (``data.split_seed``) is each config's own and the same for all its runs. Finished runs
    with the same config are reused, unfinished ones (a
    killed comparison) continue from their last checkpoint.

    ``teacher_from`` (a preset) trains the teachers first, offline distillation's way: that
    preset's runs come first, and every other setting's run of seed ``s`` freezes the teachers
    as that preset's run of seed ``s`` saved them (labelled ``PRESET (frozen teacher)``).

    ``dry_run``: print what each run would do (train, continue, reuse) and stop, writing nothing."""
    if seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    configs = [configs] if isinstance(configs, dict) else list(configs)
    if not configs:
        raise ConfigError("compare needs at least one config")
    console = console or Console()
    # Each config is checked as it will run: with the first preset it is given, if any.
    bases = [validate(_setting_tree(tree, presets[0], None, None, None) if presets else copy.deepcopy(tree),
                      f"config {i + 1}") for i, tree in enumerate(configs)]
    if len(configs) == 1:
        directory = Path(out) if out else Path(bases[0].out_dir) / f"{bases[0].name}-compare"
    else:
        names = [b.name for b in bases]
        if len(set(names)) != len(names):
            raise ConfigError(f"compare: each config needs its own name, got {names}")
        directory = Path(out) if out else Path(bases[0].out_dir) / "compare"
    if teacher_from is not None:
        _check_teacher_source(teacher_from, bases)
    settings = _settings(configs, bases, presets, teacher_from)
    plans = _plan(settings, seeds, directory)  # every run's config, checked before any trains
    if dry_run:
        console.print(_plan_table(plans, overwrite))
        return Comparison([], directory, "")
    runs = [{"setting": plan.label, "seed": plan.cfg.seed,
             "metrics": _run_or_reuse(plan, overwrite, progress, console)} for plan in plans]
    rows = aggregate(runs)
    labels = [setting.label for setting in settings]
    models = _model_order(rows)
    metric_names = list(dict.fromkeys(r["metric"] for r in rows))
    monitor = runs[0]["metrics"]["monitor"]
    header = (f"# peerdistill compare\n\nTest-split metrics at the best-validation epoch "
              f"(monitor `{monitor}`), mean ± sample std over {seeds} seed(s) per setting "
              f"(each config's seed, seed+1, ...; its data split seed stays fixed). '{BEST_STUDENT}' is, "
              f"in each run, the student with the best validation {monitor.split('/')[1]}. "
              "Self-distillation heads are in compare.csv.\n")
    if teacher_from is not None:
        header += (f"\nSettings marked '{FROZEN_MARK}' distil from the teachers of the `{teacher_from}` run "
                   "of the same seed, frozen (as that run saved them: at its best epoch).\n")
    markdown = comparison_markdown(rows, labels, models, metric_names, header)
    atomic_write_text(directory / "compare.md", markdown)
    atomic_write_text(directory / "compare.csv", _csv(rows))
    console.print(_rich_table(rows, labels, models, monitor.split("/")[1]))
    console.print(f"wrote {directory / 'compare.csv'} and {directory / 'compare.md'}")
    return Comparison(rows, directory, markdown)


@dataclass
class _Setting:
    label: str
    tree: dict[str, Any]
    preset: str
    source: str | None = None  # the label of the setting whose teachers this one freezes


@dataclass
class _Plan:
    label: str
    cfg: RunConfig
    run_dir: Path
    source_run: Path | None  # the run whose teachers this one freezes


def _settings(configs: list[dict[str, Any]], bases: list[RunConfig], presets: list[str] | None,
              teacher_from: str | None) -> list[_Setting]:
    """Rows of the table: labelled by preset with one config, else by config name (and preset,
    when presets are given); with ``teacher_from``, its setting first and the others frozen."""
    def label_of(base: RunConfig, preset: str, named_by_preset: bool) -> str:
        if len(configs) == 1:
            return preset
        return f"{base.name}:{preset}" if named_by_preset else base.name

    settings = []
    for tree, base in zip(configs, bases):
        own = presets or [base.distill.preset]
        if teacher_from is None:
            settings += [_Setting(label_of(base, p, presets is not None), tree, p) for p in own]
            continue
        source = label_of(base, teacher_from, True)
        settings.append(_Setting(source, tree, teacher_from))
        settings += [_Setting(f"{label_of(base, p, presets is not None)} {FROZEN_MARK}", tree, p, source)
                     for p in own if p != teacher_from]
    if teacher_from is not None and not any(s.source for s in settings):
        raise ConfigError(f"--teacher-from {teacher_from}: no other preset to distil into; "
                          "name them with --presets, e.g. --presets kd,kd+ml")
    return settings


def _plan(settings: list[_Setting], seeds: int, directory: Path) -> list[_Plan]:
    prefixes: dict[str, str] = {}
    for setting in settings:
        other = prefixes.setdefault(_run_prefix(setting.label), setting.label)
        if other != setting.label:
            raise ConfigError(f"compare: the settings '{other}' and '{setting.label}' would share run "
                              "directories; give their configs names that differ in letters or digits")
    plans = []
    for setting in settings:
        base_seed = validate(_setting_tree(setting.tree, setting.preset, None, None, None),
                             f"config of {setting.label}").seed
        for seed in range(base_seed, base_seed + seeds):
            source_run = directory / run_name(setting.source, seed) if setting.source else None
            tree = _with_frozen_teachers(setting.tree, source_run) if source_run else setting.tree
            cfg = validate(_setting_tree(tree, setting.preset, seed, run_name(setting.label, seed), directory),
                           f"config of {setting.label}")
            plans.append(_Plan(setting.label, cfg, directory / cfg.name, source_run))
    return plans


def _plan_table(plans: list[_Plan], overwrite: bool) -> Table:
    table = Table(title="compare --dry-run: what each run would do")
    for column in ("setting", "seed", "run directory", "action"):
        table.add_column(column)
    for plan in plans:
        try:
            state = "new" if overwrite else _run_state(plan.run_dir, plan.cfg)
            if state != "new" and plan.source_run is not None:
                _check_same_teachers(plan)
            action = {"new": "train", "finished": "reuse"}.get(state) or _continue_point(plan.run_dir)
        except PeerdistillError as exc:
            action = f"[red]refused[/]: {exc}"
        table.add_row(plan.label, str(plan.cfg.seed), str(plan.run_dir), action)
    return table


def _continue_point(run_dir: Path) -> str:
    try:
        done = len(read_json(run_dir / "metrics.json").get("epochs", []))
    except PeerdistillError:
        done = 0
    return f"continue after epoch {done}" if done else "continue from its checkpoint"


def _run_or_reuse(plan: _Plan, overwrite: bool, progress: bool, console: Console) -> dict[str, Any]:
    """Train the run, continue it, or reuse it when it has finished; its test metrics."""
    head = f"[bold]compare[/]: {plan.label}, seed {plan.cfg.seed}"
    state = "new" if overwrite else _run_state(plan.run_dir, plan.cfg)
    if state != "new" and plan.source_run is not None:
        _check_same_teachers(plan)
    if state == "finished":
        console.print(f"{head}: reusing finished run {plan.run_dir}")
    elif state == "unfinished":
        console.print(f"{head}: resuming unfinished run {plan.run_dir}")
        _resume(plan.cfg, plan.run_dir, progress)
    else:
        console.print(f"{head} -> {plan.run_dir}")
        train_from_config(plan.cfg, run_dir=plan.run_dir, overwrite=True, progress=progress)
    return read_json(plan.run_dir / "metrics.json")


def _check_same_teachers(plan: _Plan) -> None:
    """A frozen-teacher run is only reused while its source run still holds the teachers it
    was distilled from (the source may have been trained again since)."""
    names = plan.cfg.member_names()[:len(plan.cfg.all_teachers())]
    for name in names:
        used, now = RunDir(plan.run_dir).model_path(name), RunDir(plan.source_run).model_path(name)
        if used.is_file() and now.is_file() and not _same_tensors(used, now):
            raise RunDirError(f"'{plan.run_dir}' was distilled from a {name} that '{plan.source_run}' no longer "
                              f"holds (that run was trained again): delete '{plan.run_dir}' to redo it, "
                              "or pass --overwrite to redo the whole comparison")


def _same_tensors(a: Path, b: Path) -> bool:
    left, right = load_file(str(a)), load_file(str(b))
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def _check_teacher_source(teacher_from: str, bases: list[RunConfig]) -> None:
    if teacher_from not in PRESETS or teacher_from == "custom":
        raise ConfigError(f"--teacher-from: unknown preset '{teacher_from}'; choose from "
                          f"{', '.join(p for p in PRESETS if p != 'custom')}")
    for base in bases:
        if not base.all_teachers():
            raise ConfigError(f"--teacher-from: config '{base.name}' has no teacher to train first: add a 'teacher' section")
        if any(t.frozen for t in base.all_teachers()):
            raise ConfigError(f"--teacher-from: the teacher of config '{base.name}' is already frozen "
                              "(teacher.frozen: true): drop --teacher-from, or set frozen: false to train it first")


def _with_frozen_teachers(tree: dict[str, Any], source_run: Path) -> dict[str, Any]:
    """``tree`` with each teacher frozen at the weights ``source_run`` saved for it (a run
    directory as checkpoint means its model of the same name)."""
    out = copy.deepcopy(tree)
    for spec in [out["teacher"]] if out.get("teacher") is not None else out["teachers"]:
        spec["frozen"] = True
        spec["checkpoint"] = str(source_run)
    return out


def _setting_tree(tree: dict[str, Any], preset: str, seed: int | None, name: str | None,
                  directory: Path | None) -> dict[str, Any]:
    """The config of one run of a setting (``None`` keeps the config's own value)."""
    out = copy.deepcopy(tree)
    distill = dict(out.get("distill") or {})
    if distill.get("preset", "kd+ml") != preset:
        distill["edges"] = None
    distill["preset"] = preset
    out["distill"] = distill
    for key, value in (("seed", seed), ("name", name), ("out_dir", str(directory) if directory else None)):
        if value is not None:
            out[key] = value
    return out


def _run_prefix(label: str) -> str:
    # 'kd+ml', 'name:kd', 'kd (frozen teacher)' -> kd+ml-seed, name-kd-seed, kd-frozen-teacher-seed
    label = label.replace(f" {FROZEN_MARK}", "-frozen-teacher")
    return f"{label.replace(':', '-').replace('/', '-')}-seed"


def run_name(label: str, seed: int) -> str:
    """The directory of one seed of a setting inside the comparison's directory."""
    return f"{_run_prefix(label)}{seed}"


def setting_runs(directory: Path, label: str) -> list[Path]:
    """The finished or unfinished run directories of a setting, by seed."""
    prefix = _run_prefix(label)
    runs = [p for p in directory.glob(f"{glob.escape(prefix)}*")
            if p.name[len(prefix):].isdigit() and (p / "run.json").is_file()]
    return sorted(runs, key=lambda p: int(p.name[len(prefix):]))


def _run_state(run_dir: Path, cfg: RunConfig) -> str:
    """``finished`` (reuse it), ``unfinished`` (it has a resume checkpoint: continue it) or
    ``new`` (train from the start). A run of another config is an error, never overwritten.

    The saved config is read through today's schema, so a run made before a new option existed
    still counts as the same config when the option is at its default."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return "new"
    try:
        saved, why = to_yaml(validate(yaml.safe_load(saved_path.read_text()) or {}, str(saved_path))), ""
    except (ConfigError, yaml.YAMLError) as exc:
        saved, why = None, f" (its config no longer reads: {str(exc).strip().splitlines()[-1].strip()})"
    if saved != to_yaml(cfg):
        raise RunDirError(
            f"'{run_dir}' holds a run with a different config{why}: pass --overwrite to redo the comparison, "
            "or change name= to keep both"
        )
    run = RunDir(run_dir)
    if run.is_complete and (run_dir / "metrics.json").is_file():
        return "finished"
    return "unfinished" if run.resume_path.is_file() else "new"


def _resume(cfg: RunConfig, run_dir: Path, progress: bool) -> None:
    try:
        train_from_config(cfg, run_dir=run_dir, resume=True, progress=progress)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}. Delete '{run_dir}' to train that run again from the start, "
                              "or pass --overwrite to redo the whole comparison") from None


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long table rows: setting, model, metric, mean, std, n, values."""
    values: dict[tuple[str, str, str], list[float]] = {}
    for run in runs:
        test, val = run["metrics"]["test_at_best"], run["metrics"]["val_at_best"]
        roles = run["metrics"].get("roles", {})
        monitor_metric = run["metrics"]["monitor"].split("/")[1]
        students = [m for m in test if roles.get(m) == "student"]
        best = max(students, key=lambda s: ranking_score(monitor_metric, val[s][monitor_metric]))
        per_model = dict(test)
        per_model[BEST_STUDENT] = test[best]
        for model, metrics in per_model.items():
            for metric, value in metrics.items():
                values.setdefault((run["setting"], model, metric), []).append(_num(value))
    rows = []
    for (setting, model, metric), vals in values.items():
        mean, std = mean_std(vals)
        rows.append({"setting": setting, "model": model, "metric": metric, "mean": mean, "std": std,
                     "n": len(vals), "values": ";".join(f"{v:.6f}" for v in vals)})
    return rows


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _model_order(rows: list[dict[str, Any]]) -> list[str]:
    """Teachers, students, best student, ensemble; self-distillation heads stay in the CSV."""
    models = [m for m in dict.fromkeys(r["model"] for r in rows) if "@" not in m]
    head = sorted(m for m in models if m.startswith("teacher"))
    tail = [m for m in (BEST_STUDENT, ENSEMBLE) if m in models]
    return head + [m for m in models if m not in head and m not in tail] + tail


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["setting", "model", "metric", "mean", "std", "n", "values"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _rich_table(rows, presets, models, metric) -> Table:
    index = {(r["setting"], r["model"], r["metric"]): r for r in rows}
    table = Table(title=f"test {metric}, mean ± std over seeds")
    table.add_column("setting")
    for model in models:
        table.add_column(model, justify="right")
    for preset in presets:
        cells = [pm(index[(preset, m, metric)]["mean"], index[(preset, m, metric)]["std"])
                 if (preset, m, metric) in index else "" for m in models]
        table.add_row(preset, *cells)
    return table
