"""peerdistill: knowledge distillation in a cohort of a teacher and several students."""

__version__ = "0.1.0"

import importlib as _importlib

from .cohort import Cohort, Member  # noqa: E402
from .config import OptimSpec, RunConfig, TrainSpec, load_config  # noqa: E402
from .data import DataSplits, TensorData  # noqa: E402
from .engine import FitResult, Trainer, evaluate, seed_everything  # noqa: E402
from .graph import Edge, KnowledgeGraph, preset_edges  # noqa: E402
from .losses import soft_kl  # noqa: E402
from .models.heads import HeadedModel  # noqa: E402
from .runs import evaluate_run, load_cohort  # noqa: E402
from .tasks import ClassificationTask  # noqa: E402

__all__ = [
    "ClassificationTask", "Cohort", "DataSplits", "Edge", "FitResult", "HeadedModel", "KnowledgeGraph", "Member", "OptimSpec",
    "RunConfig", "TensorData", "TrainSpec", "Trainer", "evaluate", "evaluate_run", "export_run", "load_cohort",
    "load_config", "predict_files", "preset_edges", "seed_everything", "soft_kl",
]

# Imported on first use: export's modules add about half a second to every start of the
# command line, which needs them only to export and predict.
_ON_FIRST_USE = {"export_run": ".export", "predict_files": ".predict"}


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        return getattr(_importlib.import_module(_ON_FIRST_USE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_ON_FIRST_USE})
