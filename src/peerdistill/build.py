"""From a validated config to the objects of a run: data, cohort, knowledge graph, task, trainer."""

from __future__ import annotations

from pathlib import Path

from .cohort import Cohort, Member
from .config import RunConfig, to_yaml
from .data import DataSplits, TensorData, build_data
from .engine import Trainer, load_weights, seed_everything
from .errors import ConfigError
from .graph import Edge, KnowledgeGraph, preset_edges
from .models import build_model
from .tasks import ClassificationTask
from .tasks.classification import balanced_class_weights


def build_cohort(cfg: RunConfig, data: DataSplits) -> Cohort:
    """Models are built after seeding, so their initial weights follow ``cfg.seed``."""
    names = cfg.member_names()
    specs = ([cfg.teacher] if cfg.teacher is not None else []) + list(cfg.students)
    members = []
    for name, spec in zip(names, specs):
        module = build_model(spec.arch, spec.args, data.in_channels, data.num_classes)
        if spec.checkpoint:
            load_weights(module, spec.checkpoint, name)
        role = "teacher" if name == "teacher" and cfg.teacher is not None else "student"
        members.append(Member(name, module, role, frozen=spec.frozen, lr=spec.lr,
                              spec={"arch": spec.arch, "args": spec.args}))
    return Cohort(members)


def build_graph(cfg: RunConfig, cohort: Cohort) -> KnowledgeGraph:
    d = cfg.distill
    if d.preset == "custom":
        edges = [Edge(e.source, e.target, e.kind, e.weight, e.temperature) for e in d.edges or []]
    else:
        teacher = cohort.teachers[0].name if cohort.teachers else None
        edges = preset_edges(d.preset, teacher, [m.name for m in cohort.students], alpha=d.alpha, beta=d.beta,
                             kd_temperature=d.kd_temperature, ml_temperature=d.ml_temperature)
    return KnowledgeGraph(edges)


def build_task(cfg: RunConfig, data: DataSplits) -> ClassificationTask:
    weights = None
    if cfg.data.class_weights:
        if not isinstance(data.train, TensorData):
            raise ConfigError("data.class_weights needs in-memory data (digits, npz or arrays)")
        weights = balanced_class_weights(data.train.y, data.num_classes)
    return ClassificationTask(data.num_classes, class_weights=weights)


def run_dir_for(cfg: RunConfig) -> Path:
    return Path(cfg.out_dir) / cfg.name


def make_trainer(cfg: RunConfig, *, run_dir: str | Path | None = None, overwrite: bool = False,
                 progress: bool = True, callbacks=None) -> tuple[Trainer, DataSplits]:
    data = build_data(cfg.data)
    seed_everything(cfg.seed, cfg.deterministic)
    cohort = build_cohort(cfg, data)
    graph = build_graph(cfg, cohort)
    task = build_task(cfg, data)
    trainer = Trainer(
        cohort, graph, task, train=cfg.train, optim=cfg.optim, rampup_epochs=cfg.distill.rampup_epochs,
        seed=cfg.seed, deterministic=cfg.deterministic, device=cfg.device,
        run_dir=run_dir if run_dir is not None else run_dir_for(cfg), overwrite=overwrite, progress=progress,
        callbacks=callbacks, run_info={"data_spec": cfg.data.model_dump(mode="json"), "preset": cfg.distill.preset},
        config_yaml=to_yaml(cfg),
    )
    return trainer, data


def train_from_config(cfg: RunConfig, *, run_dir=None, overwrite=False, resume=False, progress=True, callbacks=None):
    trainer, data = make_trainer(cfg, run_dir=run_dir, overwrite=overwrite, progress=progress, callbacks=callbacks)
    return trainer.fit(data, resume=resume)
