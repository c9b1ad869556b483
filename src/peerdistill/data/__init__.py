"""Data: the embedded default, files, in-memory arrays and any torch Dataset."""

from .loaders import make_batches
from .sources import build_data
from .splits import DataSplits, TensorData

__all__ = ["DataSplits", "TensorData", "build_data", "make_batches"]
