"""peerdistill: knowledge distillation in a cohort of a teacher and several students."""

from __future__ import annotations

__version__ = "0.1.0"

import importlib as _importlib
from typing import TYPE_CHECKING

# Every public name is imported on first use (PEP 562): most of them bring torch, which takes
# over a second to import, and the command line's --help, --version and config errors need
# none of them. The module each name comes from:
_ON_FIRST_USE = {
    "Cohort": ".cohort", "Member": ".cohort",
    "OptimSpec": ".config", "RunConfig": ".config", "TrainSpec": ".config", "load_config": ".config",
    "DataSplits": ".data", "TensorData": ".data",
    **dict.fromkeys(("PeerdistillError", "ConfigError", "DataError", "CheckpointError", "RunDirError",
                     "NonFiniteError", "PeerdistillWarning"), ".errors"),
    "FitResult": ".engine", "Trainer": ".engine", "evaluate": ".engine", "seed_everything": ".engine",
    "RunPlan": ".engine.run_plan",
    "export_run": ".export",
    "Edge": ".graph", "KnowledgeGraph": ".graph", "preset_edges": ".graph",
    "soft_kl": ".losses",
    "HeadedModel": ".models.heads",
    "predict_files": ".predict",
    "evaluate_run": ".runs", "load_cohort": ".runs", "load_model": ".runs",
    "ClassificationTask": ".tasks", "SegmentationTask": ".tasks",
}

__all__ = [
    "CheckpointError", "ClassificationTask", "Cohort", "ConfigError", "DataError", "DataSplits", "Edge", "FitResult",
    "HeadedModel", "KnowledgeGraph", "Member", "NonFiniteError", "OptimSpec", "PeerdistillError", "PeerdistillWarning",
    "RunConfig", "RunDirError", "RunPlan", "SegmentationTask", "TensorData", "TrainSpec", "Trainer", "evaluate",
    "evaluate_run", "export_run",
    "load_cohort", "load_config", "load_model", "predict_files", "preset_edges", "seed_everything", "soft_kl",
]

if TYPE_CHECKING:  # what type checkers and editors see (keep in step with _ON_FIRST_USE)
    from .cohort import Cohort, Member
    from .config import OptimSpec, RunConfig, TrainSpec, load_config
    from .data import DataSplits, TensorData
    from .errors import (CheckpointError, ConfigError, DataError, NonFiniteError, PeerdistillError, PeerdistillWarning,
                         RunDirError)
    from .engine import FitResult, Trainer, evaluate, seed_everything
    from .engine.run_plan import RunPlan
    from .export import export_run
    from .graph import Edge, KnowledgeGraph, preset_edges
    from .losses import soft_kl
    from .models.heads import HeadedModel
    from .predict import predict_files
    from .runs import evaluate_run, load_cohort, load_model
    from .tasks import ClassificationTask, SegmentationTask


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        value = getattr(_importlib.import_module(_ON_FIRST_USE[name], __name__), name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *_ON_FIRST_USE, "__version__"})
