"""What a run would be, found by everything training does before its first step and nothing
written: ``train --dry-run`` (``Trainer.check``) prints it, so that a config meant for a long GPU
run is known to read its data, build its models and edges and run a forward before it is queued."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config.cohort_spec import SOFTENED_KINDS
from .artifacts import kept_aside_when_replaced
from .records import count_exported_parameters


@dataclass
class RunPlan:
    """What ``Trainer.check`` (``train --dry-run``) found a run would be, nothing of it written."""

    run_dir: Path | None  # where the run would be written (None: nowhere)
    # what creating it would do (``RunDir.verdict``): new, again (a run the same command stopped in
    # its first epoch), replace (with overwrite); None without a run directory
    run_dir_verdict: str | None
    kept_aside: list[str]  # replaced: what the folder holds besides the run, moved to NAME.kept-TIME beside it
    split_sizes: dict[str, int]
    input_shape: list[int]
    class_names: list[str]
    members: list[dict[str, Any]]  # name, role, frozen, parameters (as exported), architecture
    edges: list[str]  # each knowledge edge by its name
    connectors: int  # learnt projections between feature maps of other sizes
    epochs: int
    steps_per_epoch: int
    batch_size: int
    device: str
    speed: dict[str, Any]  # the speed settings resolved for the device: precision, channels_last, compile...
    packed: list[list[str]] = field(default_factory=list)  # students run as one packed network
    # students of one architecture run one by one all the same, and why (run.json's fused_students_fallback)
    not_packed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what training would warn of first
    # each edge's name, kind, weight and temperature (None for kinds that read none), as the run builds it
    edge_details: list[dict[str, Any]] = field(default_factory=list)
    critics: int = 0  # the discriminators of holistic edges, trained beside the models
    rampup_epochs: int = 0  # the epochs over which the edges' weights rise to their own
    data_bytes: int | None = None  # what the splits held in memory take (None: a Dataset reading as it goes)
    task: str | None = None  # classification, segmentation or detection
    teacher_weighting: str | None = None  # how edges from `teachers` combine them (None: no such edge)
    supervised_weights: dict[str, float] = field(default_factory=dict)  # outputs whose own loss weighs other than 1
    # the training split's size where one batch holds it all (train.batch_size past it; not patches)
    whole_split_batch: int | None = None
    # trained models that no knowledge edge reads or trains: they learn from the labels alone
    bystanders: list[str] = field(default_factory=list)
    # patch training: {"size", "per_image", "foreground", "overlap"} (None: whole images)
    patches: dict[str, Any] | None = None


def held_bytes(data) -> int | None:
    """The bytes the splits' tensors take (a split given twice counted once); None where a split
    is not held in memory."""
    from ..data import TensorData

    splits = {id(s): s for s in (data.train, data.val, data.test)}.values()
    if not all(isinstance(s, TensorData) for s in splits):
        return None
    return sum(t.nbytes for s in splits for t in (s.x, s.y) if isinstance(t, torch.Tensor))


def bystanders(cohort, graph) -> list[str]:
    """The trained members that no edge of ``graph`` reads or trains (a teacher under preset
    'self' or 'ml': trained and scored beside the students, teaching nothing)."""
    from ..graph import ENSEMBLE, TEACHERS

    ends = set()
    for edge in graph.edges:
        for end in (edge.source, edge.target):
            if end == TEACHERS:
                ends |= {m.name for m in cohort.teachers}
            elif end == ENSEMBLE:
                ends |= {m.name for m in cohort.students}
            else:
                ends.add(end.split("@")[0])  # (a self-distillation head's output: its network's)
    return [m.name for m in cohort.members if not m.frozen and m.name not in ends] if graph.edges else []


def run_plan(trainer, data, said: list[str], verdict: str | None) -> RunPlan:
    """``trainer`` after its setup for ``data`` (``Trainer.check``)."""
    return RunPlan(
        run_dir=trainer.run_dir_path, run_dir_verdict=verdict,
        kept_aside=kept_aside_when_replaced(Path(trainer.run_dir_path)) if verdict == "replace" else [],
        split_sizes={split: len(getattr(data, split)) for split in ("train", "val", "test")},
        input_shape=list(data.input_shape), class_names=[str(c) for c in data.class_names],
        members=[{"name": m.name, "role": m.role, "frozen": m.frozen, "parameters": count_exported_parameters(m.module),
                  "architecture": (m.spec or {}).get("arch") or type(m.module).__name__, "weight": m.weight}
                 for m in trainer.cohort.members],
        edges=[edge.name for edge in trainer.graph.edges], connectors=len(trainer.connectors),
        edge_details=[{"name": e.name, "kind": e.kind, "weight": e.weight,
                       "temperature": e.temperature if e.kind in SOFTENED_KINDS else None} for e in trainer.graph.edges],
        critics=len(trainer.discriminators), rampup_epochs=trainer.rampup_epochs, data_bytes=held_bytes(data),
        task=getattr(trainer.task, "name", None),
        teacher_weighting=trainer.graph.teachers_combined_by,
        supervised_weights=dict(trainer.graph.supervised_weights),
        epochs=trainer.train_spec.epochs, steps_per_epoch=len(trainer.train_batches),
        batch_size=trainer.train_spec.batch_size, device=str(trainer.device), speed=trainer.speed.to_dict(),
        whole_split_batch=(len(data.train) if not trainer.patches and len(data.train) < trainer.train_spec.batch_size
                           else None),
        bystanders=bystanders(trainer.cohort, trainer.graph), patches=trainer.patches,
        packed=[list(names) for names, _ in trainer.groups],
        not_packed=dict(trainer.run_info.get("fused_students_fallback") or {}), warnings=list(said))
