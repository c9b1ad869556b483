"""compare.md's paragraph of what was compared: the data, its splits, the epochs and the code,
so that the tables can be cited without opening a run (review 55d: the test split's size was
nowhere in compare.md or the comparison's page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPLITS = ("train", "val", "test")


def what_was_compared(records: dict[Path, dict[str, Any]], plans) -> str:
    """One paragraph from the runs' run.json (``records``, by folder) and their plans (settings
    and configs). Parts no run recorded (a run trained from Python has no data section) are left out."""
    parts = [part for part in (_data(records), _splits(records), _epochs(plans), _code(records)) if part]
    return ("What was compared: " + "; ".join(parts) + ". Each run's folder holds its whole config (`config.yaml`) "
            "and its record (`run.json`).")


def _data(records: dict[Path, dict[str, Any]]) -> str | None:
    read = []
    for meta in records.values():
        spec = _section(meta, "data_spec")
        if spec.get("kind"):
            root = spec.get("root")
            told = f"data kind `{spec['kind']}`" + (f", `{root}`" if root else " (built in)")
            if told not in read:
                read.append(told)
    return " and ".join(read) if read else None


def _splits(records: dict[Path, dict[str, Any]]) -> str | None:
    """The split sizes; a range over the runs where they differ (folds cut the set otherwise)."""
    sizes = [meta["split_sizes"] for meta in records.values() if isinstance(meta.get("split_sizes"), dict)]
    if not sizes:
        return None
    told, ranges = [], False
    for split in SPLITS:
        counts = sorted({s[split] for s in sizes if isinstance(s.get(split), int)})
        if counts:
            told.append(f"{counts[0]:,}" + (f" to {counts[-1]:,}" if len(counts) > 1 else "") + f" {split}")
            ranges |= len(counts) > 1
    seeds = sorted({_section(meta, "data_spec").get("split_seed") for meta in records.values()} - {None})
    seed = f" (data.split_seed {', '.join(map(str, seeds))})" if seeds else ""
    return f"{', '.join(told)} samples{' over the runs' if ranges else ''}{seed}"


def _section(meta: dict[str, Any], key: str) -> dict[str, Any]:
    """A mapping of a run.json, empty where it is not one (a hand-edited file: review 55n)."""
    value = meta.get(key)
    return value if isinstance(value, dict) else {}


def _epochs(plans) -> str | None:
    by_setting: dict[str, int] = {}
    for plan in plans:
        by_setting.setdefault(plan.label, plan.cfg.train.epochs)
    if not by_setting:
        return None
    counts = set(by_setting.values())
    told = (f"{(n := counts.pop())} epoch{'s' if n != 1 else ''} each" if len(counts) == 1 else
            "epochs " + ", ".join(f"{label} {epochs}" for label, epochs in by_setting.items()))
    stops = any(plan.cfg.train.patience is not None for plan in plans)
    return told + (" (at most: train.patience may end a run sooner)" if stops else "")


def _code(records: dict[Path, dict[str, Any]]) -> str | None:
    """The code and machine that trained the runs (where they differ, a note below the
    paragraph names which runs: ``environments_apart``)."""
    told = []
    for meta in records.values():
        env = _section(meta, "environment")
        if env.get("peerdistill"):
            source = f" (source {env['source']})" if env.get("source") else ""
            line = f"peerdistill {env['peerdistill']}{source}, torch {env.get('torch', '?')}, {env.get('device', '?')}"
            if line not in told:
                told.append(line)
    return "trained by " + " and ".join(told) if told else None
