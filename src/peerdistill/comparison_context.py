"""compare.md's paragraph of what was compared: the data, its splits, the epochs and the code,
so that the tables can be cited without opening a run (review 55d: the test split's size was
nowhere in compare.md or the comparison's page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .environment_words import CODE_AND_DEVICE, environment_in_words
from .sample_names import SPLITS
from .values import is_count
from .wording import first_few


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
    """The code and machine that trained the runs, worded as the run pages word them (where they
    differ, a note below the paragraph names which runs: ``environments_apart``)."""
    told = []
    for meta in records.values():
        env = _section(meta, "environment")
        line = environment_in_words(env, CODE_AND_DEVICE) if env.get("peerdistill") else ""
        if line and line not in told:
            told.append(line)
    return "trained by " + " and ".join(told) if told else None


def pixels_counted(records: dict[Path, dict[str, Any]]) -> str | None:
    """Which pixels segmentation runs with a region of interest (``data.roi``, DRIVE's field of
    view) count in their figures, as train, eval and the run page say it; None where no run has one.
    Runs of several regions (or some without one) are said apart: their figures count other pixels."""
    from .report import region_note

    segmenting = {path: meta for path, meta in records.items() if meta.get("task") == "segmentation"}
    regions = {path: _section(meta, "data_spec").get("roi") or None for path, meta in segmenting.items()}
    kept = sorted({roi for roi in regions.values() if roi is not None})
    if not kept:
        return None
    if len(kept) == 1 and None not in regions.values():
        return region_note(next(iter(segmenting.values())))
    groups: dict[str | None, list[str]] = {}
    for path, roi in regions.items():
        groups.setdefault(roi, []).append(path.name)
    parts = [f"{len(names)} run(s) ({first_few(names)}) count "
             + (f"only those inside each image's region of interest (data.roi: the masks in '{roi}')" if roi else
                "every pixel") for roi, names in sorted(groups.items(), key=lambda group: group[0] is None)]
    return f"The runs count different pixels: {'; '.join(parts)}."


SEEDS_USED = "Seeds used"  # compare.md's line of the seeds (the comparison's page says its own, read again)


def seeds_used(runs: dict[str, list[Path]], records: dict[Path, dict[str, Any]]) -> str:
    """Each setting's seeds (and folds), as its runs' run.json record them (``records``, by folder;
    ``runs``: each setting's run folders), not as the command meant them: a run reused from an
    earlier comparison, or trained by hand into the folder, is said as it trained."""
    told, unknown = {}, 0
    for setting, paths in runs.items():
        seeds, folds = set(), set()
        for path in paths:
            meta = records.get(path, {})
            if not is_count(meta.get("seed")):
                unknown += 1
                continue
            seeds.add(meta["seed"])
            spec = _section(meta, "data_spec")
            if spec.get("folds") and is_count(spec.get("fold")):
                folds.add(spec["fold"])
        if seeds:
            told[setting] = ", ".join(_spans(seeds)) + (f" (folds {', '.join(_spans(folds))})" if folds else "")
    if len(set(told.values())) == 1 and len(told) == len(runs) > 1:
        said = f"{next(iter(told.values()))} in every setting"
    else:
        said = "; ".join(f"{setting} {seeds}" for setting, seeds in told.items()) or "none recorded"
    if unknown:
        said += f"; {unknown} run(s) whose run.json records no seed (unreadable, or hand-edited)"
    return f"{SEEDS_USED} (each run's run.json): {said}."


def _spans(numbers: set[int]) -> list[str]:
    """``[0, 1, 2, 3, 7]`` as ``["0 to 3", "7"]``: 10,000 seeds in a line."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return [f"{a}" if a == b else f"{a}, {b}" if b == a + 1 else f"{a} to {b}" for a, b in spans]
