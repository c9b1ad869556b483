"""Batches for training and evaluation.

In-memory tensors are batched directly from (device) memory, with no per-sample Python
indexing or worker processes; any other ``Dataset`` goes through a ``DataLoader``.

Every batcher draws an epoch's order eagerly from one shared generator when ``iterate`` is
called, so (a) a resumed run can rebuild a half-finished epoch from the generator's state at
its start and continue at batch ``start``, and (b) under torchrun every process draws the
same order and keeps only its share of each batch: ``shard=(rank, world)`` takes the
positions ``rank, rank + world, ...`` of every global training batch, so the union over
processes is exactly the batch a single process would have seen. Evaluation (in order, its
metrics gathered from every process's share) gives each process a near-equal contiguous
share of the whole split instead, in batches of its part of ``batch_size``: shares of each
small batch would leave a process nothing when the batch is smaller than the processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ..errors import ConfigError, DataError
from .splits import PIL_TO_TENSOR, TensorData, check_dict_sample

Shard = tuple[int, int]  # (rank, world size)


def check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size {batch_size!r}: give a whole number of samples, 1 or more")


def _check_shard(batch_size: int, shard: Shard, training: bool) -> None:
    rank, world = shard
    if training and batch_size % world:
        raise ConfigError(f"train.batch_size={batch_size} is the global batch and must be divisible by the "
                          f"{world} processes; use a multiple of {world}").found_by_every_process()


class _OrderedBatches:
    """The shared logic: an order per epoch, global batches of it, this process's share."""

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None,
                 drop_last: bool, shard: Shard):
        check_batch_size(batch_size)
        _check_shard(batch_size, shard, training=shuffle)
        if n < shard[1]:
            raise ConfigError(f"a split of {n} samples cannot be shared by {shard[1]} processes: every process "
                              "needs at least one; use fewer processes or more data").found_by_every_process()
        self.n, self.batch_size, self.shuffle, self.generator = n, batch_size, shuffle, generator
        self.drop_last, self.shard = drop_last, shard
        last = batch_size if drop_last else n - (len(self) - 1) * batch_size
        if shuffle and last % shard[1]:  # DDP averages per-process means: equal shares or a different loss
            which = (f"last batch of {last} samples" if len(self) > 1 else  # (review 53a: the only one was "last")
                     f"only batch ({last} samples: train.batch_size {batch_size} is not smaller than the split)")
            raise ConfigError(f"the training split's {which} cannot be shared equally by {shard[1]} processes; use a "
                              f"train.batch_size smaller than the split, or a number of processes that divides "
                              f"{last}").found_by_every_process()

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def index_batches(self, start: int = 0) -> list[torch.Tensor]:
        """This process's sample indices of batches ``start, start + 1, ...`` of this epoch."""
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        rank, world = self.shard
        if not self.shuffle and world > 1:
            share = order[rank * self.n // world:(rank + 1) * self.n // world]
            return list(share.split(-(-self.batch_size // world)))[start:]
        return [order[b * self.batch_size:(b + 1) * self.batch_size][rank::world] for b in range(start, len(self))]

    def __iter__(self):
        return self.iterate()


class TensorBatches(_OrderedBatches):
    """Shuffled (or ordered) mini-batches of a ``TensorData`` kept on ``device``."""

    def __init__(self, data: TensorData, batch_size: int, device: torch.device, *, shuffle: bool,
                 generator: torch.Generator | None = None, drop_last: bool = False, shard: Shard = (0, 1)):
        super().__init__(len(data.y), batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last,
                         shard=shard)
        self.x, self.y = _model_dtypes(data.x.to(device), data.y.to(device))

    def iterate(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.shuffle and self.shard[1] == 1:  # in order, whole: views, no copies
            bounds = [(b * self.batch_size, min((b + 1) * self.batch_size, self.n)) for b in range(start, len(self))]
            return ((self.x[i:j], self.y[i:j]) for i, j in bounds)
        batches = [idx.to(self.x.device) for idx in self.index_batches(start)]
        return ((self.x[idx], self.y[idx]) for idx in batches)


def _model_dtypes(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``collate_pairs`` makes a user's batches: float64 images float32 (the models' dtype),
    integer targets of a width the losses do not index with int64 (uint8 masks they do)."""
    if x.dtype == torch.float64:
        x = x.float()
    if y.dtype in (torch.int8, torch.int16, torch.int32, torch.bool):
        y = y.long()
    return x, y


class _BatchList:
    """A batch sampler whose batches are replaced every epoch (it runs in the main process, so
    persistent workers see the new order)."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class RefusedBatch:
    """A batch ``collate_pairs`` refused, with why: handed back as a value, since a DataLoader
    worker's exception reaches the main process wrapped in the worker's traceback."""

    def __init__(self, message: str):
        self.message = message


def collate_pairs(samples: list) -> tuple[torch.Tensor, torch.Tensor] | RefusedBatch:
    """A user's samples as one (images, targets) batch. A sample is ``(image, target)`` or a
    dict with ``image`` and ``label`` (or ``mask``); float64 images become float32 (the models'
    dtype) and integer targets int64 (what the losses index with)."""
    try:
        return _collated(samples)
    except DataError as exc:
        return RefusedBatch(str(exc))


def _collated(samples: list) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [_pair(s) for s in samples]
    try:
        x, y = default_collate(pairs)
    except (RuntimeError, TypeError):  # torch's message names entries of a batch (or an int's), not what to do
        _refuse_unequal_sizes(pairs)
        _refuse_unreadable(pairs)
        raise
    if isinstance(y, (list, tuple)) and y and isinstance(y[0], str):  # (collated text stays a list)
        raise DataError(f"the dataset's labels are text (such as {str(y[0])!r}); peerdistill reads class indices 0..K-1: "
                        "return the index of each label's class (class_names.index(label)), and give DataSplits "
                        "the names as class_names")
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.dtype == torch.float64:
        x = x.float()
    if not y.is_floating_point() and y.dtype != torch.int64:
        y = y.long()
    return x, y


def _refuse_unequal_sizes(pairs: list) -> None:
    """Images (or masks) of one batch in different sizes cannot be stacked into one tensor."""
    for position in (0, 1):
        sizes = [tuple(getattr(pair[position], "shape", ())) for pair in pairs]
        if len(set(sizes)) > 1:
            first, other = sizes[0], next(size for size in sizes if size != sizes[0])
            labels = position == 1 and max(len(first), len(other)) <= 1  # a class index, as 0-d and as [1]
            what = "images" if position == 0 else "labels" if labels else "targets (masks)"
            if labels:
                fix = "give each label as one class index, an int or a 0-d tensor each (torch.tensor(y), not [y])"
            elif len(first) != len(other):
                fix = ("give each the same axes (an image as [C, H, W], with its channel axis even for grey "
                       "ones: image[None]; a mask as [H, W])")
            elif position == 0 and first[0] != other[0]:
                fix = ("give each the same channels (grey and colour mixed: convert every image to one, "
                       "repeating a grey channel 3 times or averaging colour ones)")
            else:
                fix = ("resize them to one size in the dataset (a transform in __getitem__), as data.image_size "
                       "does for image files")
            raise DataError(f"the dataset's {what} are not all of one shape (one batch holds {list(first)} and "
                            f"{list(other)}), so they cannot be batched: {fix}")


def _refuse_unreadable(pairs: list) -> None:
    """Images as PIL images (a torchvision-style dataset without its ToTensor transform), or
    anything else collation cannot turn into a tensor."""
    for position, what in ((0, "images"), (1, "targets")):
        kind = type(pairs[0][position])
        if not isinstance(pairs[0][position], (torch.Tensor, np.ndarray, np.generic, int, float, bool)):
            fix = PIL_TO_TENSOR if position == 0 else "return each as a tensor, an array or a number"
            raise DataError(f"the dataset's {what} are {kind.__module__}.{kind.__name__} objects, which cannot be "
                            f"batched: {fix}")


def _pair(sample):
    if isinstance(sample, dict):
        check_dict_sample(sample)
        return sample["image"], _one_index(sample["label" if "label" in sample else "mask"])
    if isinstance(sample, (tuple, list)) and len(sample) == 2:
        return sample[0], _one_index(sample[1])
    kind = f"a {type(sample).__name__} of {len(sample)} items" if isinstance(sample, (tuple, list)) else type(sample).__name__
    raise DataError(f"a sample of the dataset is {kind}; peerdistill reads (image, target) pairs: wrap the dataset "
                    "so that __getitem__ returns two items")


def _one_index(target):
    """A class index given as a one-item array or tensor (MedMNIST's datasets return
    ``np.array([y])``) as the index itself; any other target as it is."""
    shape, dtype = getattr(target, "shape", None), getattr(target, "dtype", None)
    if shape is not None and tuple(shape) == (1,) and dtype is not None and not _is_floating(dtype):
        return target[0]
    return target


def _is_floating(dtype) -> bool:
    return dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.issubdtype(dtype, np.floating)


class DatasetBatches(_OrderedBatches):
    """Any map-style ``Dataset`` through a ``DataLoader`` (workers, pinned memory), with the
    order drawn like ``TensorBatches`` and batches moved to ``device``."""

    def __init__(self, data: Dataset, batch_size: int, device: torch.device, *, shuffle: bool,
                 generator: torch.Generator | None = None, num_workers: int = 0, drop_last: bool = False,
                 shard: Shard = (0, 1), check: Callable[[torch.Tensor], None] | None = None):
        super().__init__(len(data), batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last,
                         shard=shard)
        self.device, self.check = device, check
        self.sampler = _BatchList()
        # The loader draws its workers' base seed from this generator, not from torch's global
        # one, so a run resumed in the middle of an epoch draws the same numbers again.
        self.loader_generator = torch.Generator()
        self.loader = DataLoader(data, batch_sampler=self.sampler, num_workers=num_workers, collate_fn=collate_pairs,
                                 pin_memory=device.type == "cuda", persistent_workers=num_workers > 0,
                                 generator=self.loader_generator)

    def iterate(self, start: int = 0):
        self.sampler.batches = [b.tolist() for b in self.index_batches(start)]
        seed = int(torch.randint(2**62, (1,), generator=self.generator)) if self.generator is not None else 0
        self.loader_generator.manual_seed(seed)
        return self._moved(iter(self.loader))

    def close(self) -> None:
        """The persistent workers stopped (a next ``iterate`` starts them again)."""
        running = getattr(self.loader, "_iterator", None)  # (where DataLoader keeps persistent workers)
        if running is not None and hasattr(running, "_shutdown_workers"):
            running._shutdown_workers()
        self.loader._iterator = None

    def _moved(self, loader):
        for batch in loader:
            if isinstance(batch, RefusedBatch):
                raise DataError(batch.message)
            x, y = batch
            yield x.to(self.device, non_blocking=True), self._checked(y).to(self.device, non_blocking=True)

    def _checked(self, y: torch.Tensor) -> torch.Tensor:
        if self.check is not None:  # here, on the CPU: a check on the GPU would wait for it every step
            self.check(y)
        return y


def make_batches(data: Dataset, batch_size: int, device: torch.device, *, shuffle: bool,
                 generator: torch.Generator | None = None, num_workers: int = 0, drop_last: bool = False,
                 shard: Shard = (0, 1), check: Callable[[torch.Tensor], None] | None = None):
    """``check(targets)``, when given, sees every target once, on the CPU: an in-memory split's
    whole at once, a dataset's batch by batch."""
    if isinstance(data, TensorData):
        if check is not None:
            check(data.y)
        return TensorBatches(data, batch_size, device, shuffle=shuffle, generator=generator, drop_last=drop_last,
                             shard=shard)
    return DatasetBatches(data, batch_size, device, shuffle=shuffle, generator=generator, num_workers=num_workers,
                          drop_last=drop_last, shard=shard, check=check)


class PatchBatches:
    """Random square crops of in-memory images and masks, for training on large images.

    Each epoch draws ``per_image`` crops per image; a share ``foreground`` of them is centred
    on a random foreground pixel (class > 0, not ignored), the rest anywhere. Crops stay
    inside the image (images smaller than the patch are used whole). Every process draws every
    crop of a global batch (the generator stays shared) and cuts only its own share."""

    def __init__(self, data: TensorData, patch: int, per_image: int, batch_size: int, device: torch.device,
                 generator: torch.Generator, foreground: float = 0.0, shard: Shard = (0, 1)):
        _check_shard(batch_size, shard, training=True)
        self.x, self.y = _model_dtypes(data.x.to(device), data.y.to(device))
        self.patch, self.batch_size, self.generator, self.foreground = patch, batch_size, generator, foreground
        self.shard = shard
        self.total = len(self.y) * per_image
        self._fg = [torch.nonzero((m > 0) & (m != 255)).cpu() for m in data.y]

    def __len__(self) -> int:
        return max(1, self.total // self.batch_size)

    def __iter__(self):
        return self.iterate()

    def iterate(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Crops are drawn batch by batch, so continuing at ``start`` only needs the generator's
        state of that moment."""
        return (self._batch() for _ in range(start, len(self)))

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = self.x.shape[-2:]
        ph, pw = min(self.patch, h), min(self.patch, w)
        rank, world = self.shard
        xs, ys = [], []
        for j in range(self.batch_size):
            i = int(torch.randint(len(self.y), (1,), generator=self.generator))
            if self.foreground and len(self._fg[i]) and float(torch.rand(1, generator=self.generator)) < self.foreground:
                cy, cx = self._fg[i][int(torch.randint(len(self._fg[i]), (1,), generator=self.generator))].tolist()
                top, left = min(max(cy - ph // 2, 0), h - ph), min(max(cx - pw // 2, 0), w - pw)
            else:
                top = int(torch.randint(h - ph + 1, (1,), generator=self.generator))
                left = int(torch.randint(w - pw + 1, (1,), generator=self.generator))
            if j % world == rank:
                xs.append(self.x[i, :, top:top + ph, left:left + pw])
                ys.append(self.y[i, top:top + ph, left:left + pw])
        return torch.stack(xs), torch.stack(ys)
