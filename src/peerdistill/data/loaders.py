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


class PatchBatches:
    """Random square crops of in-memory images and masks, for training on large images.

    Each epoch draws ``per_image`` crops per image; a share ``foreground`` of them is centred
    on a random foreground pixel (class > 0, not ignored), the rest anywhere. Crops stay
    inside the image (images smaller than the patch are used whole)."""

    def __init__(self, data: TensorData, patch: int, per_image: int, batch_size: int, device: torch.device,
                 generator: torch.Generator, foreground: float = 0.0):
        self.x, self.y = data.x.to(device), data.y.to(device)
        self.patch, self.batch_size, self.generator, self.foreground = patch, batch_size, generator, foreground
        self.total = len(self.y) * per_image
        self._fg = [torch.nonzero((m > 0) & (m != 255)).cpu() for m in data.y]

    def __len__(self) -> int:
        return max(1, self.total // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        h, w = self.x.shape[-2:]
        ph, pw = min(self.patch, h), min(self.patch, w)
        for _ in range(len(self)):
            xs, ys = [], []
            for _ in range(self.batch_size):
                i = int(torch.randint(len(self.y), (1,), generator=self.generator))
                if self.foreground and len(self._fg[i]) and float(torch.rand(1, generator=self.generator)) < self.foreground:
                    cy, cx = self._fg[i][int(torch.randint(len(self._fg[i]), (1,), generator=self.generator))].tolist()
                    top, left = min(max(cy - ph // 2, 0), h - ph), min(max(cx - pw // 2, 0), w - pw)
                else:
                    top = int(torch.randint(h - ph + 1, (1,), generator=self.generator))
                    left = int(torch.randint(w - pw + 1, (1,), generator=self.generator))
                xs.append(self.x[i, :, top:top + ph, left:left + pw])
                ys.append(self.y[i, top:top + ph, left:left + pw])
            yield torch.stack(xs), torch.stack(ys)
