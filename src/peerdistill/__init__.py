"""peerdistill: knowledge distillation in a cohort of a teacher and several students."""

__version__ = "0.1.0"

from .cohort import Cohort, Member  # noqa: E402
from .config import OptimSpec, RunConfig, TrainSpec, load_config  # noqa: E402
from .data import DataSplits, TensorData  # noqa: E402
from .engine import FitResult, Trainer, evaluate, seed_everything  # noqa: E402
from .export import export_run  # noqa: E402
from .graph import Edge, KnowledgeGraph, preset_edges  # noqa: E402
from .losses import soft_kl  # noqa: E402
from .predict import predict_files  # noqa: E402
from .runs import evaluate_run, load_cohort  # noqa: E402
from .tasks import ClassificationTask  # noqa: E402

__all__ = [
    "ClassificationTask", "Cohort", "DataSplits", "Edge", "FitResult", "KnowledgeGraph", "Member", "OptimSpec",
    "RunConfig", "TensorData", "TrainSpec", "Trainer", "evaluate", "evaluate_run", "export_run", "load_cohort",
    "load_config", "predict_files", "preset_edges", "seed_everything", "soft_kl",
]
