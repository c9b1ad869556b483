"""What a comparison's columns compare: settings whose students differ in architecture or size
(a plain config's student1 against a multi-teacher config's smaller one), where a paired
difference then compares different models, and the self-distillation heads left out of its
tables (review 56b: neither was said)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .wording import first_few


def students_of(meta: dict[str, Any]) -> dict[str, str]:
    """A run's students by name, each as its architecture and parameter count (run.json's members)."""
    said = {}
    for member in meta.get("members") or []:
        if not isinstance(member, dict) or member.get("role") != "student":
            continue
        spec = member.get("spec") or {}
        args = ", ".join(f"{k}={v}" for k, v in (spec.get("args") or {}).items())
        arch = f"{spec.get('arch', '?')}({args})" if args else str(spec.get("arch", "built in Python"))
        parameters = member.get("parameters")
        said[str(member.get("name", "?"))] = arch + (f", {parameters:,} parameters" if isinstance(parameters, int)
                                                     else "")
    return said


def first_records(runs: dict[str, list[Path]], records: dict[Path, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each setting's first run's run.json (its runs' models are alike: seeds and folds differ)."""
    return {setting: records[paths[0]] for setting, paths in runs.items() if paths and paths[0] in records}


def students_apart_note(metas: dict[str, dict[str, Any]], baseline: str, settings: list[str]) -> str | None:
    """Which students differ between ``baseline`` and each of ``settings`` (those paired with it),
    with their architectures and sizes; None where every setting's are the baseline's."""
    if baseline not in metas:
        return None
    mine = students_of(metas[baseline])
    differing: dict[str, list[str]] = {}  # student -> "setting: what it is"
    counts = []
    for setting in settings:
        if setting == baseline or setting not in metas:
            continue
        theirs = students_of(metas[setting])
        for name in (n for n in theirs if n in mine and theirs[n] != mine[n]):
            differing.setdefault(name, [f"{baseline}: {mine[name]}"]).append(f"{setting}: {theirs[name]}")
        if len(theirs) != len(mine):
            counts.append(f"{setting} {len(theirs)}")
    if not differing and not counts:
        return None
    parts = [f"{name} ({'; '.join(said)})" for name, said in differing.items()]
    if counts:
        parts.append(f"{baseline} has {len(mine)} student(s), {', '.join(counts)} ('best student' and 'ensemble' "
                     "are then of other sets)")
    return ("The settings' students differ, so these paired differences compare different models, not one "
            f"model trained two ways: {'; '.join(parts)}.")


def heads_left_out_note(models: list[str]) -> str | None:
    """The console's line naming the self-distillation heads its tables leave out (compare.md says it too)."""
    heads = [m for m in dict.fromkeys(models) if "@" in m]
    if not heads:
        return None
    return (f"self-distillation heads ({first_few(heads, 4)}) are left out of these tables: their figures are in "
            "compare.csv")
