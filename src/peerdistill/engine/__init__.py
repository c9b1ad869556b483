"""Training, evaluation and run artifacts."""

from .artifacts import RunDir, load_weights, save_weights
from .evaluate import ENSEMBLE, evaluate, predict
from .seeding import seed_everything
from .trainer import FitResult, Trainer

__all__ = ["ENSEMBLE", "FitResult", "RunDir", "Trainer", "evaluate", "load_weights", "predict", "save_weights",
           "seed_everything"]
