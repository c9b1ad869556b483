"""Run several presets with the same split and seeds; tabulate mean ± std: the paper's main table."""

from __future__ import annotations

import copy
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .build import train_from_config
from .config import PRESETS, to_yaml, validate
from .engine.artifacts import atomic_write_text, read_json
from .engine.evaluate import ENSEMBLE
from .errors import ConfigError, RunDirError
from .report import comparison_markdown, mean_std, pm

BEST_STUDENT = "best student"


@dataclass
class Comparison:
    rows: list[dict[str, Any]]
    directory: Path
    markdown: str


def parse_presets(text: str) -> list[str]:
    presets = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in presets if p not in PRESETS or p == "custom"]
    if not presets or bad:
        raise ConfigError(f"--presets: unknown {bad or 'empty list'}; choose from independent, kd, ml, kd+ml")
    return presets


def compare(tree: dict[str, Any], presets: list[str], seeds: int, *, overwrite: bool = False,
            progress: bool = True, console: Console | None = None) -> Comparison:
    """``tree`` is the (unvalidated) config mapping. Each run gets seed ``seed + i``; the data
    split (``data.split_seed``) stays the same for every run. Finished runs are reused."""
    if seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    console = console or Console()
    base = validate(copy.deepcopy(tree))
    directory = Path(base.out_dir) / f"{base.name}-compare"
    runs: list[dict[str, Any]] = []
    for preset in presets:
        for i in range(seeds):
            cfg_tree = copy.deepcopy(tree)
            cfg_tree.setdefault("distill", {})
            cfg_tree["distill"] = {**cfg_tree["distill"], "preset": preset, "edges": None}
            cfg_tree["seed"] = base.seed + i
            cfg_tree["name"] = f"{preset}-seed{base.seed + i}"
            cfg_tree["out_dir"] = str(directory)
            cfg = validate(cfg_tree, f"config for preset {preset}")
            run_dir = directory / cfg.name
            metrics = _reusable(run_dir, to_yaml(cfg)) if not overwrite else None
            if metrics is None:
                console.print(f"[bold]compare[/]: preset {preset}, seed {cfg.seed} -> {run_dir}")
                train_from_config(cfg, run_dir=run_dir, overwrite=True, progress=progress)
                metrics = read_json(run_dir / "metrics.json")
            else:
                console.print(f"[bold]compare[/]: preset {preset}, seed {cfg.seed}: reusing finished run {run_dir}")
            runs.append({"preset": preset, "seed": cfg.seed, "metrics": metrics})
    rows = aggregate(runs)
    models = _model_order(rows)
    metric_names = list(dict.fromkeys(r["metric"] for r in rows))
    header = (f"# peerdistill compare: {base.name}\n\nTest-split metrics at the best-validation epoch "
              f"(monitor `{base.train.monitor}`), mean ± sample std over {seeds} seed(s) "
              f"(seeds {base.seed}..{base.seed + seeds - 1}); data split seed {base.data.split_seed}. "
              f"'{BEST_STUDENT}' is, in each run, the student with the best validation "
              f"{base.train.monitor.split('/')[1]}.\n")
    markdown = comparison_markdown(rows, presets, models, metric_names, header)
    atomic_write_text(directory / "compare.md", markdown)
    atomic_write_text(directory / "compare.csv", _csv(rows))
    console.print(_rich_table(rows, presets, models, base.train.monitor.split("/")[1]))
    console.print(f"wrote {directory / 'compare.csv'} and {directory / 'compare.md'}")
    return Comparison(rows, directory, markdown)


def _reusable(run_dir: Path, config_yaml: str) -> dict[str, Any] | None:
    """A finished run with the very same config is reused; one with another config is an error."""
    if not (run_dir / "config.yaml").exists():
        return None
    if (run_dir / "config.yaml").read_text() != config_yaml:
        raise RunDirError(
            f"'{run_dir}' holds a run with a different config: pass --overwrite to redo the comparison, "
            "or change name= to keep both"
        )
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        return None
    metrics = read_json(metrics_path)
    return metrics if metrics.get("status") == "complete" else None


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Long table rows: preset, model, metric, mean, std, n, values."""
    values: dict[tuple[str, str, str], list[float]] = {}
    for run in runs:
        test, val = run["metrics"]["test_at_best"], run["metrics"]["val_at_best"]
        monitor_metric = run["metrics"]["monitor"].split("/")[1]
        students = [m for m in test if m not in ("teacher", ENSEMBLE)]
        best = max(students, key=lambda s: _num(val[s][monitor_metric]))
        per_model = dict(test)
        per_model[BEST_STUDENT] = test[best]
        for model, metrics in per_model.items():
            for metric, value in metrics.items():
                values.setdefault((run["preset"], model, metric), []).append(_num(value))
    rows = []
    for (preset, model, metric), vals in values.items():
        mean, std = mean_std(vals)
        rows.append({"preset": preset, "model": model, "metric": metric, "mean": mean, "std": std,
                     "n": len(vals), "values": ";".join(f"{v:.6f}" for v in vals)})
    return rows


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _model_order(rows: list[dict[str, Any]]) -> list[str]:
    models = list(dict.fromkeys(r["model"] for r in rows))
    head = [m for m in models if m == "teacher"]
    tail = [m for m in (BEST_STUDENT, ENSEMBLE) if m in models]
    return head + [m for m in models if m not in head and m not in tail] + tail


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["preset", "model", "metric", "mean", "std", "n", "values"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _rich_table(rows, presets, models, metric) -> Table:
    index = {(r["preset"], r["model"], r["metric"]): r for r in rows}
    table = Table(title=f"test {metric}, mean ± std over seeds")
    table.add_column("preset")
    for model in models:
        table.add_column(model, justify="right")
    for preset in presets:
        cells = [pm(index[(preset, m, metric)]["mean"], index[(preset, m, metric)]["std"])
                 if (preset, m, metric) in index else "" for m in models]
        table.add_row(preset, *cells)
    return table
