"""How a run's teachers taught, in words, from its run.json: how several teachers' predictions
were combined, the self-distillation heads' own label-loss weight, and where a model's starting
weights came from (review 56b: the report named none of these; they were in run.json alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..values import is_finite_number
from ..wording import first_few

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")  # a checkpoint named so is a weights file


def teachers_combined(meta: dict[str, Any]) -> str | None:
    """How the teachers' softened predictions were combined into one target (run.json's
    ``teacher_weighting`` and each teacher's ``weight``), None where no edge combined several."""
    rule = meta.get("teacher_weighting")
    teachers = [m for m in meta.get("members") or [] if isinstance(m, dict) and m.get("role") == "teacher"]
    if rule is None or len(teachers) < 2:
        return None
    names = [str(m.get("name", "?")) for m in teachers]
    if rule == "confidence":
        return (f"{', '.join(names)} combined per sample by their confidence (CA-MKD, teacher_weighting: confidence): "
                "on each sample, the teacher whose cross-entropy with the label is lower weighs more")
    weights = [m.get("weight") for m in teachers]
    if not all(is_finite_number(w) and w > 0 for w in weights):  # (runs of earlier versions did not record them)
        return f"{', '.join(names)} combined by a weighted average ({rule}; the weights are not recorded)"
    total = sum(weights)
    shares = ", ".join(f"{name} {weight:g} ({weight / total:.0%})" for name, weight in zip(names, weights))
    return f"a weighted average of their softened predictions, each teacher's weight (its share): {shares}"


def label_loss_weights(meta: dict[str, Any]) -> str | None:
    """The outputs whose own label loss weighed other than 1 (run.json's ``supervised_weights``:
    self-distillation heads, 1 - ``distill.self_alpha``), None where every one weighed 1."""
    weights = meta.get("supervised_weights")
    if not isinstance(weights, dict) or not weights:
        return None
    heads = all("@" in name for name in weights)
    values = set(weights.values())
    why = " (1 - distill.self_alpha)" if heads and meta.get("preset") else ""
    if len(values) == 1:
        (value,) = values
        said = f"{_weight(value)}{why} for {first_few(list(weights), 6)}"
    else:
        said = first_few([f"{name} {_weight(value)}" for name, value in weights.items()], 6) + why
    if not heads:
        return f"{said}; every other output's 1"
    return f"the self-distillation heads' cross-entropy with the labels weighs {said}; the networks' own weighs 1"


def _weight(value: Any) -> str:
    return f"{value:g}" if is_finite_number(value) else str(value)


def checkpoint_in_words(checkpoint: str, name: str) -> str:
    """Where a model's starting weights came from: the file, or a run folder with the file of it
    that was read (a run folder as checkpoint means its model of the same name: build.checkpoint_file)."""
    path = Path(checkpoint)
    # (a file is a file, whatever its name: a weights file without a suffix read as a run folder, review 56l)
    if path.is_file() or path.suffix.lower() in WEIGHT_SUFFIXES or not (path.is_dir() or not path.suffix):
        return checkpoint
    return f"{checkpoint} (its models/{name}.safetensors)"
