"""TensorBoard logging (``log.tensorboard: true``): every number of every epoch's row."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import ConfigError


class TensorBoardLogger:
    """A trainer callback writing each epoch's losses, learning rates and validation metrics
    as scalars under their metrics.csv names, to ``RUN_DIR/tensorboard``."""

    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "log.tensorboard=true needs the tensorboard package: pip install 'peerdistill[tensorboard]'"
            ) from None
        self.log_dir = Path(log_dir)
        self._make_writer = SummaryWriter
        self.writer = None  # made at the first epoch's end, once the run directory exists

    def __call__(self, epoch: int, row: dict[str, Any]) -> None:
        if self.writer is None:
            self.writer = self._make_writer(str(self.log_dir))
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()
