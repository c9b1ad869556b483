"""Tables a person reads: the result of one run, and the preset comparison."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from .engine.evaluate import ENSEMBLE


def fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def results_table(title: str, scores: dict[str, dict[str, float]], params: dict[str, int] | None = None,
                  val: dict[str, dict[str, float]] | None = None, val_metric: str | None = None,
                  metrics: tuple[str, ...] | None = None, costs: dict[str, dict] | None = None) -> Table:
    """One row per model (and the ensemble), one column per metric (``metrics``: which ones);
    with ``costs``, parameters, MACs and the compression against the teacher."""
    metrics = list(metrics or next(iter(scores.values())).keys())
    table = Table(title=title)
    table.add_column("model")
    if costs:
        for column in ("params", "MMACs", "x smaller"):
            table.add_column(column, justify="right")
    elif params:
        table.add_column("params", justify="right")
    if val and val_metric:
        table.add_column(f"val {val_metric}", justify="right")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for model, values in scores.items():
        row = [model]
        if costs:
            c = costs.get(model)
            ratio = f"{c['compression']:.2f}" if c and c.get("compression") is not None else ""
            row += [f"{c['parameters']:,}", f"{c['macs'] / 1e6:.2f}", ratio] if c else ["", "", ""]
        elif params:
            row.append(f"{params[model]:,}" if model in params else "")
        if val and val_metric:
            row.append(fmt(val.get(model, {}).get(val_metric)))
        row += [fmt(values[m]) for m in metrics]
        table.add_row(*row)
    return table


def mean_std(values: list[float]) -> tuple[float, float]:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    if not clean:
        return float("nan"), float("nan")
    mean = sum(clean) / len(clean)
    if len(clean) < 2:  # a sample std needs two values
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in clean) / (len(clean) - 1)
    return mean, math.sqrt(var)


def pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def seeds_cell(row: dict[str, Any]) -> str:
    """A comparison cell: mean ± std over the seeds that gave a number, and how many did when
    some gave none (an AUC on a split lacking a class, an HD95 with nothing found)."""
    text = pm(row["mean"], row["std"])
    if 0 < row["n"] < len(row["values"]):
        text += f" ({row['n']} of {len(row['values'])} seeds)"
    return text


BEST_STUDENT = "best student"


def model_order(models: list[str]) -> list[str]:
    """Teachers, students, best student, ensemble; self-distillation heads (``@``) are left out."""
    models = [m for m in dict.fromkeys(models) if "@" not in m]
    head = sorted(m for m in models if m.startswith("teacher"))
    tail = [m for m in (BEST_STUDENT, ENSEMBLE) if m in models]
    return head + [m for m in models if m not in head and m not in tail] + tail


def comparison_markdown(rows: list[dict[str, Any]], presets: list[str], models: list[str],
                        metrics: list[str], header: str) -> str:
    """One Markdown table per metric: presets down, models across, mean ± std over seeds."""
    index = {(r["setting"], r["model"], r["metric"]): r for r in rows}
    parts = [header]
    for metric in metrics:
        parts.append(f"\n### test {metric}\n")
        parts.append("| setting | " + " | ".join(models) + " |")
        parts.append("|---|" + "---:|" * len(models))
        for preset in presets:
            cells = []
            for model in models:
                r = index.get((preset, model, metric))
                cells.append(seeds_cell(r) if r else "")
            parts.append(f"| {preset} | " + " | ".join(cells) + " |")
    return "\n".join(parts) + "\n"
