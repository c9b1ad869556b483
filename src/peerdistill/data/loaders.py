"""Batches for training and evaluation.

In-memory tensors are batched directly from (device) memory, with no per-sample Python
indexing or worker processes; any other ``Dataset`` goes through a ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .splits import TensorData


class TensorBatches:
    """Shuffled (or ordered) mini-batches of a ``TensorData`` kept on ``device``."""

    def __init__(self, data: TensorData, batch_size: int, device: torch.device, *, shuffle: bool,
                 generator: torch.Generator | None = None, drop_last: bool = False):
        self.x, self.y = data.x.to(device), data.y.to(device)
        self.batch_size, self.shuffle, self.generator, self.drop_last = batch_size, shuffle, generator, drop_last

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator).to(self.x.device) if self.shuffle else None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            if order is None:
                yield self.x[sl], self.y[sl]
            else:
                idx = order[sl]
                yield self.x[idx], self.y[idx]


class DeviceLoader:
    """A ``DataLoader`` whose batches are moved to ``device``."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def make_batches(data: Dataset, batch_size: int, device: torch.device, *, shuffle: bool,
                 generator: torch.Generator | None = None, num_workers: int = 0, drop_last: bool = False):
    if isinstance(data, TensorData):
        return TensorBatches(data, batch_size, device, shuffle=shuffle, generator=generator, drop_last=drop_last)
    loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers,
                        pin_memory=device.type == "cuda", drop_last=drop_last)
    return DeviceLoader(loader, device)
