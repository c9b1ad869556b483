"""One object per task answers the task-specific questions; nothing else branches on the task."""

from .classification import ClassificationTask
from .segmentation import SegmentationTask

__all__ = ["ClassificationTask", "SegmentationTask"]
