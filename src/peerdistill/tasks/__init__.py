"""One object per task answers the task-specific questions; nothing else branches on the task."""

from .classification import ClassificationTask

TASKS = {"classification": ClassificationTask}

__all__ = ["ClassificationTask", "TASKS"]
