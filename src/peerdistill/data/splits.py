"""Train/val/test splits held as datasets, plus what the models need to know about them."""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, IterableDataset

from ..arguments import check_flags, check_optional_flags, whole_number
from ..errors import DataError, SplitError, warn_user
from ..wording import first_few
from .digests import row_digests
from .image_profile import chunk_rows, grey_images, unstandardised_chunks


# Set while eval scores a labelled set whole (--split all): loaders that would cut one set into
# stratified parts keep it in one piece instead (a small external test set may not split).
_kept_whole = contextvars.ContextVar("kept_whole", default=False)


def is_kept_whole() -> bool:
    return _kept_whole.get()


@contextlib.contextmanager
def switched_on(flag: contextvars.ContextVar) -> Iterator[None]:
    """``flag`` (a boolean context variable) True for the duration."""
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def kept_whole() -> contextlib.AbstractContextManager[None]:
    return switched_on(_kept_whole)


class TensorData(Dataset):
    """In-memory inputs ``x`` [N, C, H, W] (or [N, F]) and their integer targets ``y``: labels
    [N] (or [N, 1]), or segmentation masks [N, H, W]."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise DataError(f"{len(x)} inputs but {len(y)} labels: every input needs one label")
        if isinstance(y, torch.Tensor) and y.ndim == 2 and y.shape[1] == 1 and not y.is_floating_point():
            y = y[:, 0]  # labels [N, 1] (MedMNIST's layout), read as from_arrays reads them
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def digests(self) -> list[bytes]:
        """``row_digests`` of the inputs, computed once for this tensor (the run's
        train_digests.json and the check of held-out inputs identical to training ones share them)."""
        if getattr(self, "_digests_of", None) is not self.x:
            self._digests, self._digests_of = row_digests(self.x), self.x
        return self._digests


# The usual slips of a Dataset's images, and their fixes (said where each is found: the first
# sample, a batch that cannot be stacked, a batch of another shape than declared).
ADD_CHANNEL_AXIS = "return image[None] from the dataset (a grey image as [1, H, W])"
TO_CHANNELS_FIRST = "return image.permute(2, 0, 1) from the dataset ([C, H, W])"
PIL_TO_TENSOR = ("convert each to a float tensor [C, H, W] on [0, 1] in __getitem__ (torchvision's ToTensor(), or "
                 "torch.from_numpy(np.asarray(image)).permute(2, 0, 1).float() / 255 for colour; [None] for grey)")


def _first_input_shape(train: Dataset) -> tuple[int, ...]:
    """The shape of the first training sample's image (an (image, target) pair or a dict)."""
    if not len(train):
        raise DataError("the train split is empty: training needs samples in train, val and test")
    sample = train[0]
    if isinstance(sample, dict):  # (keys of its own: told now, not after input_shape= is given to get past this)
        check_dict_sample(sample)
    image = sample.get("image") if isinstance(sample, dict) else sample[0] if isinstance(sample, (tuple, list)) else None
    shape = getattr(image, "shape", None)
    kind = type(image)
    if image is not None and kind.__module__.startswith("PIL"):
        raise DataError(f"the dataset's images are {kind.__module__}.{kind.__name__} objects: {PIL_TO_TENSOR}")
    if not shape:
        raise DataError("DataSplits could not read input_shape from the first training sample (an (image, target) "
                        "pair or a dict with 'image'): give input_shape=(C, H, W)")
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2:  # [H, W]: what is meant as a grey image would be read as H channels of a row
        raise DataError(f"the first training image has shape {shape}, without a channel axis: {ADD_CHANNEL_AXIS} "
                        "(for inputs that are not images, give input_shape=)")
    if len(shape) == 3 and shape[-1] <= 4 < shape[0]:
        raise DataError(f"the first training image has shape {shape}, channels-last [H, W, C]: {TO_CHANNELS_FIRST} "
                        "(if it is [C, H, W], give input_shape=)")
    return shape


def check_dict_sample(sample: dict) -> None:
    """A dict sample holds its image under 'image' and its target under 'label' (or 'mask')."""
    if "image" not in sample or ("label" not in sample and "mask" not in sample):
        raise DataError(f"a sample of the dataset is a dict with keys {sorted(map(str, sample))[:6]}; peerdistill "
                        "reads 'image' and 'label' (or 'mask'): return those keys, or an (image, target) pair")


def _check_class_names_listed(class_names) -> None:
    """class_names is a list of names: a string would be read letter by letter ("ab": 'a', 'b')."""
    if class_names is not None and (isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__len__")):
        raise DataError(f"class_names takes a list of names, one per class in label order, got {class_names!r}")


@dataclass
class DataSplits:
    """A run's data: ``train``, ``val`` and ``test`` datasets (map-style, each item an input and
    its target: a label, a mask, or boxes), the ``num_classes`` and their ``class_names``, and the
    ``stats`` (per-channel mean and std) the inputs were standardised with, which a run saves so
    evaluation and predict standardise alike. ``DataSplits.from_arrays`` builds one from arrays,
    counting the classes from the labels; ``info`` is what the run records of the data."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    class_names: list[str] | None = None  # None: "0", "1", ...
    input_shape: tuple[int, ...] | None = None  # None: the first training sample's image's
    # Per-channel mean/std taken on the training split; saved with a run so eval uses the same.
    stats: dict[str, list[float]] | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("train", "val", "test"):
            split = getattr(self, name)
            if isinstance(split, DataLoader):  # the usual slip: what it loads is wanted, not the loader
                raise DataError(f"the {name} split is a DataLoader: give DataSplits the Dataset it loads "
                                f"({name}_loader.dataset); the run makes its own loaders, with train.batch_size")
            if isinstance(split, IterableDataset) or not hasattr(split, "__len__"):
                # splits are counted, shuffled by index and cut into whole batches: a stream has no length
                raise DataError(f"the {name} split is a {type(split).__name__} without a length (an "
                                "IterableDataset, a stream): DataSplits takes map-style datasets, with __len__ and "
                                "__getitem__; gather the samples into a list or tensors first")
        count = whole_number(self.num_classes)
        if count is None or count < 1:
            raise DataError(f"num_classes must be a whole number, 1 or more, got {self.num_classes!r}")
        self.num_classes = count
        _check_class_names_listed(self.class_names)
        if self.class_names is None:
            self.class_names = [str(c) for c in range(self.num_classes)]
        if self.input_shape is None:
            self.input_shape = _first_input_shape(self.train)
        if len(self.class_names) != self.num_classes:
            raise DataError(f"class_names has {len(self.class_names)} names for num_classes={self.num_classes}: "
                            "give one name per class, in label order")
        # Metrics, files and matching on other data go by class name: two classes of one name
        # would share their per-class figures.
        seen = set()
        twice = [n for n in map(str, self.class_names) if n in seen or seen.add(n)]
        if twice:
            raise DataError(f"the class name '{twice[0]}' is given twice in {list(self.class_names)}: "
                            "name each class once")

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    def split(self, name: str) -> Dataset:
        """One split by name; ``all``: train, val and test together (to score other data whole)."""
        if name == "all":
            parts = [self.train, self.val, self.test]
            if all(isinstance(p, TensorData) for p in parts) and len({p.x.shape[1:] for p in parts}) == 1 \
                    and len({p.y.shape[1:] for p in parts}) == 1:
                return TensorData(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
            return ConcatDataset(parts)
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split '{name}': choose train, val, test or all")
        return getattr(self, name)

    @classmethod
    def from_arrays(
        cls,
        x_train,
        y_train,
        x_val,
        y_val,
        x_test,
        y_test,
        *,
        class_names: list[str] | None = None,
        class_names_from: str = "class_names",
        stats: dict[str, list[float]] | None = None,
        normalize: bool = True,
        channels_last: bool | None = None,
        in_place: bool = False,
    ) -> "DataSplits":
        """Arrays or tensors: images [N, H, W], [N, H, W, C] or [N, C, H, W] (uint8 is scaled to
        [0, 1]) or feature vectors [N, F]; labels [N] or [N, 1] integers 0..K-1, every class
        in the training split. With ``normalize`` each channel (each feature of vectors) is
        standardised by the training split's mean and std (or by ``stats``). Four-dimensional
        images are taken as [N, H, W, C] when their last side is 1 to 4 and their second is
        not (an RGB photo), else as [N, C, H, W]; ``channels_last`` True or False says which
        (5 or more bands, images 4 pixels high). ``in_place``: float32 images [N, C, H, W] (or
        vectors) are standardised in the given arrays themselves, which are changed (no second
        copy of the data held; splits sharing memory are refused); others are copied to that
        layout and type first, as without it."""
        check_flags("from_arrays", normalize=normalize, in_place=in_place)
        check_optional_flags("from_arrays", channels_last=channels_last)
        _check_class_names_listed(class_names)
        _check_argument_order(x_train, y_train, x_val, y_val, x_test, y_test)
        xs = [to_nchw(a, name, channels_last) for a, name in ((x_train, "train"), (x_val, "val"), (x_test, "test"))]
        ys = [to_labels(a, name) for a, name in ((y_train, "train"), (y_val, "val"), (y_test, "test"))]
        if channels_last is None:
            _warn_of_bands_last(xs[0])
        shapes = {tuple(x.shape[1:]) for x in xs}
        if len(shapes) != 1:
            each = ", ".join(f"{name} {list(x.shape[1:])}" for name, x in zip(("train", "val", "test"), xs))
            raise DataError(f"the splits' inputs differ in shape ({each}): save every split's images at one size "
                            "(resized in the arrays); to score images of another size with a run, `peerdistill "
                            "predict` resizes them to its input")
        num_classes = int(max(int(y.max()) for y in ys if len(y)) + 1)
        _check_classes_train(ys, num_classes)
        if class_names is not None and len(class_names) < num_classes:
            raise DataError(names_not_one_per_class(class_names_from, class_names, num_classes))
        names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        if stats is not None:
            stats = _checked_stats(stats)
        if normalize:
            stats = stats or channel_stats(xs[0])
            xs = standardized(xs, [x_train, x_val, x_test], stats, in_place)
            _warn_of_splits_on_another_scale(xs)
        splits = [TensorData(x, y) for x, y in zip(xs, ys)]  # (training inputs held out: said by the Trainer)
        out = cls(*splits, num_classes=len(names), class_names=names, input_shape=tuple(xs[0].shape[1:]),
                  stats=stats if normalize else None)
        if len(names) > num_classes:  # scored data may lack a run's last class; a new run must not (sources.py)
            out.info["names_beyond_labels"] = names_not_one_per_class(class_names_from, names, num_classes)
        if class_names is None and (skipped := _classes_in_no_split(ys, num_classes)):  # (said to a new run)
            out.info["classes_in_no_split"] = skipped
        return out

    @classmethod
    def stratified(cls, x, y, *, val_fraction: float, test_fraction: float, seed: int, folds: int | None = None,
                   fold: int = 0, **kwargs) -> "DataSplits":
        """One labelled set cut into stratified train/val/test parts with a recorded seed; with
        ``folds``, the test split is fold ``fold`` of a stratified k-fold partition (``fold_cut``)."""
        if is_kept_whole():
            return cls.whole(x, y, **kwargs)
        y_np = to_labels(y, "all").numpy()
        train, val, test = stratified_cut(y_np, val_fraction, test_fraction, seed, folds, fold,
                                          kwargs.get("class_names"))
        x_np = np.asarray(x)
        kwargs["in_place"] = True  # (the rows taken are copies of ours, whatever the caller asked: standardised there)
        out = cls.from_arrays(x_np[train], y_np[train], x_np[val], y_np[val], x_np[test], y_np[test], **kwargs)
        out.info.update(cut_marks(seed, folds, fold))
        # the source row of each sample, split by split: which files or rows a model was scored on
        out.info["indices"] = {"train": train.tolist(), "val": val.tolist(), "test": test.tolist()}
        return out

    @classmethod
    def whole(cls, x, y, *, class_names: list[str], class_names_from: str = "class_names",
              stats: dict[str, list[float]] | None = None, channels_last: bool | None = None,
              in_place: bool = False) -> "DataSplits":
        """One labelled set kept whole, as the test split (train and val empty), standardised by
        ``stats`` (a run's) or its own: what eval scores with ``--split all``. It may lack classes
        ``class_names`` names, not hold labels past them. ``in_place``: as in ``from_arrays``."""
        check_flags("DataSplits.whole", in_place=in_place)
        x_given, x, y = x, to_nchw(x, "all", channels_last), to_labels(y, "all")
        if len(y) and int(y.max()) >= len(class_names):
            n = len(class_names)
            rows = [int(i) for i in torch.nonzero(y >= n).flatten()[:3]]
            raise DataError(f"the labels run up to {int(y.max())}, past the {n} class{'es' if n != 1 else ''} "
                            f"{class_names_from} names {list(class_names)[:6]} (row(s) {rows} of the labels): correct "
                            "those labels if they are wrong, or give one name per class, in label order")
        stats = stats or channel_stats(x)
        x = standardized([x], [x_given], stats, in_place)[0]
        empty = TensorData(x[:0], y[:0])
        splits = cls(empty, empty, TensorData(x, y), num_classes=len(class_names), class_names=list(class_names),
                     input_shape=tuple(x.shape[1:]), stats=stats)
        splits.info["split"] = "whole (scored as one set)"
        splits.info["indices"] = {"test": list(range(len(y)))}
        return splits


def check_names_fit_labels(data: "DataSplits") -> None:
    """A new run's data names no class its labels never hold: the models would learn a class
    never shown (its AUC undefined on every split); labels that skip classes are warned of. Eval
    scores such data (a set lacking a run's classes); a run resumed trains as it began."""
    if "names_beyond_labels" in data.info:
        raise DataError(data.info["names_beyond_labels"])
    if "classes_in_no_split" in data.info:  # said once (a config's data is checked here, then by the trainer)
        warn_user(data.info.pop("classes_in_no_split"))


def names_not_one_per_class(names_from: str, names: list[str], labelled: int) -> str:
    n = len(names)
    return (f"{names_from} names {n} class{'es' if n != 1 else ''} {list(names)[:6]}, but the labels hold {labelled} "
            f"(0..{labelled - 1}): give one name per class, in label order")


def share_count(fraction: float, n: int) -> int:
    """The samples a ``fraction`` of ``n`` takes: scikit-learn's rule for a share (rounded up),
    without the float error that made 0.1 / 0.7 of 70 eleven and 0.07 of 1000 seventy-one."""
    return math.ceil(round(fraction * n, 6))


def consecutive_parts(items, lengths: list[int]) -> list:
    """``items`` (an array, a tensor or a list) cut into consecutive parts of ``lengths``: views of
    an array, where loaders read the splits one after another into one (no copy of each)."""
    ends = np.cumsum([0, *lengths]).tolist()
    return [items[start:end] for start, end in zip(ends, ends[1:])]


def stratified_cut(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int,
                   folds: int | None = None, fold: int = 0,
                   class_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, val and test indices of a labelled set, each class in about its proportion in
    every split; with ``folds``, the test split is fold ``fold`` of a stratified k-fold
    partition (``fold_cut``). Labels alone decide: a loader can cut before decoding an image."""
    from sklearn.model_selection import train_test_split  # here: a second to import

    idx = np.arange(len(labels))
    if folds:
        return fold_cut(len(labels), fold, folds, val_fraction, seed, labels=labels)
    n_test, n_val = share_count(test_fraction, len(idx)), share_count(val_fraction, len(idx))
    if min(n_test, n_val) < 1 or len(idx) - n_test - n_val < 1:
        raise SplitError(f"{len(idx)} samples cannot be cut into {n_test} test, {n_val} val and "
                         f"{len(idx) - n_test - n_val} training samples",
                         "each split needs one at least: give more samples, or other "
                         "data.val_fraction / data.test_fraction")
    try:
        rest, test = train_test_split(idx, test_size=n_test, stratify=labels, random_state=seed)
        train, val = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed)
    except ValueError as exc:
        raise SplitError(*_stratify_failure(exc, labels, class_names)) from None
    return train, val, test


def cut_marks(seed: int, folds: int | None, fold: int) -> dict:
    """What a DataSplits' info records of splits cut from one set (not given split by split:
    eval says so)."""
    return {"split_seed": seed, "cut_from_one_set": True, **({"fold": fold, "folds": folds} if folds else {})}


def refuse_folds(folds: int | None, source: str) -> None:
    """Data that gives its own test split cannot also be cut into folds."""
    if folds:
        raise DataError(f"data.folds cuts one set into folds, but {source} gives its own test split: remove "
                        "data.folds, or put every image in one set to cross-validate")


def check_groups_in_one_split(groups: dict[str, list[str]], key: str, source: str) -> None:
    """Given splits and their samples' groups (patients): a group in two splits is refused, its
    images being both learnt from and scored (or used to choose the best epoch)."""
    splits_of: dict[str, list[str]] = {}
    for split, ids in groups.items():
        for group in dict.fromkeys(ids):
            splits_of.setdefault(group, []).append(split)
    crossing = [(g, s) for g, s in splits_of.items() if len(s) > 1]
    if crossing:
        group, splits = crossing[0]
        more = f" (and {len(crossing) - 1} more group{'s' if len(crossing) > 2 else ''})" if len(crossing) > 1 else ""
        raise DataError(f"{source}: {key} finds group '{group}' in the {' and '.join(splits)} splits{more}: a patient's "
                        "images in two splits are not held out from one another; move each group's images into one "
                        f"split, or drop {key}")


def group_val_cut(groups: list[str], labels: np.ndarray | None, val_fraction: float, seed: int,
                  key: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and val indices cut from a given train split keeping every group whole: val
    is about ``val_fraction`` of the images, taken as ``group_cut`` takes it (groups shuffled by
    ``seed``, whole, to within one group), or with ``labels`` one of round(1 / val_fraction)
    folds of scikit-learn's StratifiedGroupKFold (``data.group_stratify``)."""
    ids = np.asarray(groups)
    folds = max(2, round(1 / val_fraction))
    if labels is not None and len(set(groups)) < folds:
        raise SplitError(f"the training split's {len(set(groups))} groups cannot fill the {folds} folds "
                         f"data.group_stratify deals them to for a val split of data.val_fraction {val_fraction:g}",
                         "raise data.val_fraction, give more groups or the val split yourself, or drop "
                         "data.group_stratify")
    if labels is not None:
        train, val = _held_out_groups(np.arange(len(ids)), ids, np.asarray(labels), folds, np.random.RandomState(seed))
        return np.sort(train), np.sort(val)
    names, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    val_groups = _take_until(list(np.random.default_rng(seed).permutation(len(names))), counts,
                             share_count(val_fraction, len(ids)))
    if len(val_groups) == len(names):
        raise SplitError(f"the training split's {len(names)} group(s) are too few to cut a val split of whole groups "
                         f"(data.val_fraction {val_fraction:g}) and keep one for training",
                         f"lower data.val_fraction, give more groups or the val split yourself, or drop {key}")
    in_val = np.isin(inverse, val_groups)
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


def fold_cut(n: int, fold: int, folds: int, val_fraction: float, seed: int,
             labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted train, val and test indices of ``n`` samples for k-fold cross-validation: the test
    split is fold ``fold`` of a shuffled partition into ``folds`` fixed by ``seed`` (stratified by
    ``labels`` when given, so each fold holds the classes in their proportions); val, a
    ``val_fraction`` of all ``n``, is cut (stratified) from the other folds. The folds of one seed
    are disjoint and cover every sample once."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    per_class = None if labels is None else np.bincount(labels)
    most = n if per_class is None else int(per_class[per_class > 0].min())
    if folds > most:  # said in the user's terms, before scikit-learn says it in its own
        why = (f"{n} samples: each fold needs one at least" if labels is None else
               f"{n} samples whose smallest class has {most}: each fold needs a sample of every class")
        raise DataError(f"cannot cut {folds} folds from {why}; use at most {most} folds (--folds or data.folds)")
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if labels is not None
                else KFold(folds, shuffle=True, random_state=seed))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # a class with fewer samples than folds: some would lack it
            rest, test = list(splitter.split(np.zeros((n, 1)), labels))[fold]
        train, val = train_test_split(rest, test_size=share_count(val_fraction, n), random_state=seed,
                                      stratify=None if labels is None else labels[rest])
    except (ValueError, UserWarning) as exc:
        raise DataError(f"cannot cut fold {fold} of {folds} folds from {n} samples: {exc}") from None
    return np.sort(train), np.sort(val), np.sort(test)


def group_ids(names: list[str], pattern: str, described: str = "image paths") -> list[str]:
    """Each name's group: the first capture group of ``pattern`` searched in it (the whole
    match when the pattern captures nothing). A name it does not match is an error, and so is
    a match its first group takes no part in (``(x)?p``): such a name has no group."""
    regex = re.compile(pattern)
    found = [regex.search(n) for n in names]
    found = [m if m is None or not regex.groups or m.group(1) is not None else None for m in found]
    missed = [n for n, m in zip(names, found) if m is None]
    if missed:
        where = ("every path, relative to data.root" if described == "image paths" else
                 f"every one of the {described}")
        raise DataError(f"data.group_pattern '{pattern}' matches no group in {len(missed)} of {len(names)} {described} "
                        f"(e.g. {', '.join(repr(n) for n in missed[:3])}): write it to match {where}")
    return [m.group(1) if regex.groups else m.group(0) for m in found]


GROUP_FOLD_VAL = "group_fold_val"  # data_info's mark of grouped folds whose val is drawn per fold


def group_fold_mark(spec) -> dict[str, str]:
    """What data_info records of a grouped cross-validation cut by ``group_cut``: its val drawn
    per fold. Runs of earlier versions lack it, and their folds split otherwise (eval says so)."""
    grouped = spec.group_pattern or getattr(spec, "group_column", None)
    return {GROUP_FOLD_VAL: "drawn per fold"} if spec.folds and grouped and not spec.group_stratify else {}


def group_cut(groups: list[str], val_fraction: float, test_fraction: float, seed: int, folds: int | None = None,
              fold: int = 0, key: str = "data.group_pattern") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted train, val and test indices that keep every group (a patient's images) in one
    split. Groups are shuffled by ``seed`` and taken whole into test, then val, until each holds
    its fraction of the images (to within one group): not stratified by class. With ``folds``,
    the groups are dealt in shuffled order, each to a fold holding the fewest images so far
    (folds within one group's size of each other), fold ``fold`` is the test split, and val is
    cut from the others the same way, in an order drawn for that fold (so that val is other
    patients in each fold, and the same ones are not left out of training in every fold)."""
    names, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    n = len(groups)
    if folds:
        if len(names) < folds:
            raise DataError(f"{len(names)} groups cannot fill {folds} folds: lower --folds / data.folds")
        load = np.zeros(folds)
        fold_of = np.empty(len(names), dtype=int)
        for g in order:  # in shuffled order, each to a lightest fold (ties broken by the seed too)
            lightest = np.flatnonzero(load == load.min())
            fold_of[g] = int(rng.choice(lightest))
            load[fold_of[g]] += counts[g]
        test_groups = np.flatnonzero(fold_of == fold)
        # val in an order of each fold's own: taken from the one dealing order, the same groups
        # were val in every fold but their test fold, and never trained on (review 50c: 25 of 100)
        fold_order = np.random.default_rng(rng.integers(2**63, size=folds)[fold]).permutation(order)
        rest = [g for g in fold_order if fold_of[g] != fold]
        val_groups = _take_until(rest, counts, round(val_fraction * n))
    else:
        test_groups = _take_until(list(order), counts, round(test_fraction * n))
        tested = set(test_groups)
        val_groups = _take_until([g for g in order if g not in tested], counts, round(val_fraction * n))
    split_of = np.zeros(len(names), dtype=int)  # 0 train, 1 val, 2 test
    split_of[list(val_groups)] = 1
    split_of[list(test_groups)] = 2
    if (split_of == 0).sum() < 1 or not len(val_groups) or not len(test_groups):
        raise SplitError(f"{len(names)} groups are too few to keep each one whole in train, val and test",
                         f"give more groups, or drop {key}")
    per_sample = split_of[inverse]
    return tuple(np.flatnonzero(per_sample == k) for k in (0, 1, 2))


def stratified_group_cut(groups: list[str], labels: np.ndarray, val_fraction: float, test_fraction: float,
                         seed: int, folds: int | None = None, fold: int = 0) -> tuple[np.ndarray, ...]:
    """``group_cut`` with the classes in about their proportions in every split: scikit-learn's
    StratifiedGroupKFold deals the groups. Test is one of round(1 / test_fraction) folds (with
    ``folds``: fold ``fold`` of ``folds``), val one of round(remaining share / val_fraction) folds
    of the rest, so the fractions are 1/k."""
    groups, labels = np.asarray(groups), np.asarray(labels)
    everything = np.arange(len(labels))
    random = np.random.RandomState(seed)  # one stream for both cuts: any seed NumPy takes

    def held_out(members: np.ndarray, k: int, fold_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        return _held_out_groups(members, groups, labels, k, random, fold_index)

    if folds:
        rest, test = held_out(everything, folds, fold)
        train, val = held_out(rest, round(len(rest) / max(val_fraction * len(labels), 1)))
    else:
        rest, test = held_out(everything, round(1 / test_fraction))
        train, val = held_out(rest, round((1 - test_fraction) / val_fraction))
    return tuple(np.sort(part) for part in (train, val, test))


def _held_out_groups(members: np.ndarray, groups: np.ndarray, labels: np.ndarray, k: int,
                     random: np.random.RandomState, fold_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``members`` cut by StratifiedGroupKFold into k folds: (the others, fold ``fold_index``)."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = max(2, int(k))
    if len(set(groups[members])) < k:
        raise SplitError(f"{len(set(groups[members]))} groups cannot fill {k} folds", "give more groups, raise "
                            "the split fractions, or drop data.group_stratify")
    cut = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=random)
    with warnings.catch_warnings():  # a class with fewer groups than folds: dealt as well as it can be
        warnings.simplefilter("ignore", UserWarning)
        rest, held = list(cut.split(members, labels[members], groups[members]))[fold_index]
    return members[rest], members[held]


def _take_until(candidates: list[int], counts: np.ndarray, target: int) -> list[int]:
    """Groups from ``candidates`` in order until their images reach ``target`` (at least one)."""
    taken, total = [], 0
    for g in candidates:
        if total >= max(target, 1):
            break
        taken.append(g)
        total += counts[g]
    return taken


def _label_counts(ys: list[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Per class, how many samples of it the splits hold together."""
    return sum(torch.bincount(y, minlength=num_classes) for y in ys)


def _check_classes_train(ys: list[torch.Tensor], num_classes: int) -> None:
    """A class in val or test that the training split lacks cannot be learnt; labels counted
    from 1 would make an empty class 0 (AUC is then undefined in every epoch)."""
    if not len(ys[0]):  # (else every class would be said to lack training samples)
        raise SplitError("the train split holds no samples", "the models learn from it: give it samples of every class")
    train = torch.bincount(ys[0], minlength=num_classes) > 0
    anywhere = _label_counts(ys, num_classes) > 0
    untrained = [c for c in range(num_classes) if anywhere[c] and not train[c]]
    if untrained:
        raise SplitError(f"class(es) {untrained[:10]} are in the val or test labels but have no training sample",
                         "every class must be in the training split")
    if not anywhere[0]:
        raise DataError(f"no label is 0 (the labels run from {int(min(int(y.min()) for y in ys if len(y)))} to "
                        f"{num_classes - 1}): labels are class indices 0..K-1; counted from 1? subtract 1")


def _classes_in_no_split(ys: list[torch.Tensor], num_classes: int) -> str | None:
    """Labels that skip classes, their number read from the largest (one stray 7 among 0/1 labels
    made an eight-class run, whose five empty classes were said only as missing from val and test):
    what to say to a new run of them, or None."""
    counts = _label_counts(ys, num_classes)
    empty = [c for c in range(num_classes) if not counts[c]]
    if not empty:
        return None
    return (f"the labels run to {num_classes - 1}, so the models get {num_classes} classes, but no sample of any "
            f"split is labelled {first_few(empty, 10)}; class {num_classes - 1} has {int(counts[-1]):,} sample(s): a "
            "stray label? Fix the labels, or name the classes (data.class_names) to say the empty ones are meant")


ARGUMENT_ORDER = "x_train, y_train, x_val, y_val, x_test, y_test"


def _shape_and_kind(array) -> tuple[tuple[int, ...], str]:
    """An argument's shape and dtype kind ('f' floats, 'u'/'i' integers, ...), read without a copy
    where it can be (a tensor's, an array's)."""
    if isinstance(array, torch.Tensor):
        return tuple(array.shape), "f" if array.is_floating_point() else "i"
    a = array if isinstance(array, np.ndarray) else np.asarray(array)
    return tuple(a.shape), a.dtype.kind


def _check_argument_order(*arrays) -> None:
    """from_arrays' six arrays given in another order (scikit-learn's habit: the images, then the
    labels) are said as that before what any one of them holds: labels where images belong (one
    number per sample), and images where labels belong."""
    try:
        shapes = [_shape_and_kind(a) for a in arrays]
    except (TypeError, ValueError, RuntimeError):
        return  # (what an argument is, is said where it is read)
    names = ARGUMENT_ORDER.split(", ")
    # images (or feature vectors) where labels belong, beside labels [N] or [N, 1] where images belong (masks
    # beside images in their places are segmentation's, one-hot labels [N, K] are said where read)
    images_as_labels = [name for name, (shape, _) in zip(names[1::2], shapes[1::2])
                        if len(shape) >= 3 or (len(shape) == 2 and shape[1] > 1)]
    labels_as_images = [name for name, (shape, _) in zip(names[0::2], shapes[0::2])
                        if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)]
    if not (labels_as_images and images_as_labels):
        return
    said = [f"{name} has shape {shapes[names.index(name)][0]}, one class per sample (labels?)"
            for name in labels_as_images] + \
           [f"{name} has shape {shapes[names.index(name)][0]}"
            f"{' of floats' if shapes[names.index(name)][1] == 'f' else ''} (images?)" for name in images_as_labels]
    raise DataError(f"from_arrays takes {ARGUMENT_ORDER}, in that order (each split's images, then its labels), "
                    f"and {'; '.join(said)}: were the images given first, then the labels (scikit-learn's X_train, "
                    "X_test, y_train, y_test)? Give them as from_arrays(x_train, y_train, x_val, y_val, x_test, "
                    "y_test), or by name (x_train=..., y_train=...)")


def _warn_of_bands_last(x: torch.Tensor) -> None:
    """Images of 5 or more bands stored channels-last are read as [N, C, H, W] unless told (the
    rule takes 1 to 4 channels alone as last): 28 x 28 pictures of 5 bands became 28 channels of
    28 x 5, and the first model to run was said to need 28 input channels. Said where their last
    side looks like bands: 5 to 32, below both the 'channels' and the height."""
    if x.ndim != 4:
        return
    c, h, w = x.shape[1:]
    if 5 <= w <= 32 and w < c and w < h and c >= 8:
        warn_user(f"the training images are read as [N, C, H, W]: {c} channels of {h} x {w} pixels. If they are "
                  f"channels-last, {w} bands of {c} x {h} pixels, say so: DataSplits.from_arrays(..., "
                  "channels_last=True) (channels_last=False says they are [N, C, H, W] as read)")


def to_nchw(array, name: str, channels_last: bool | None = None) -> torch.Tensor:
    a = np.asarray(array)
    if a.dtype.kind not in "biuf":  # text, dates or objects: torch cannot hold them
        raise DataError(f"{name} inputs are of type {a.dtype} ({a.dtype.kind!r}); expected numbers (pixel values)")
    if not a.dtype.isnative:  # big-endian values (saved on another machine, '>f4'): torch takes native order only
        a = a.astype(a.dtype.newbyteorder("="))
    t = torch.as_tensor(a)
    if t.dtype == torch.uint8:
        t = t.float().div_(255.0)  # (in place: a copy of ours already, not the caller's array)
    t = t.float()
    if t.ndim == 3:
        t = t.unsqueeze(1)
    elif t.ndim == 4 and (channels_last if channels_last is not None
                          else t.shape[-1] in (1, 2, 3, 4) and t.shape[1] not in (1, 2, 3, 4)):
        t = t.permute(0, 3, 1, 2)
    elif t.ndim not in (2, 4):
        raise DataError(f"{name} inputs have shape {tuple(t.shape)}; expected [N, H, W], [N, H, W, C], [N, C, H, W] or [N, F]")
    t = t.contiguous()  # (before the check: a permuted tensor's flatten was a second whole copy, review 52g)
    row_major = torch.empty(t.shape, device="meta").stride()
    if t.stride() != row_major:
        # [N, H, W, 1] permuted counts as contiguous (one channel's stride is free) yet reads as
        # channels-last: convolutions would run so unasked, and a model's .view would fail (review 56a).
        # A size-1 axis's stride addresses nothing, so a contiguous tensor takes the row-major strides
        # as a view of the same memory: no copy (x[:, None], whose channel stride is 0, was copied,
        # and in_place=True left the caller's array as it was)
        t = t.as_strided(t.shape, row_major, t.storage_offset())
    finite = _finite_rows(t)
    if not finite.all():
        bad = torch.nonzero(~finite).flatten().tolist()
        raise DataError(f"{name} inputs contain NaN or infinite values, in {len(bad)} of {len(t)} samples (index "
                        f"{', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''}): replace them (e.g. "
                        "numpy.nan_to_num) or leave those samples out")
    return t


def _finite_rows(t: torch.Tensor) -> torch.Tensor:
    """Which samples of ``t`` hold finite values only, a chunk at a time (``chunk_rows``: a whole
    set's flags, or 256 large images' at once, took much of its memory again; review 53g)."""
    if t.ndim == 1:
        return torch.isfinite(t)
    size = chunk_rows(t)
    return torch.cat([torch.isfinite(t[i:i + size].reshape(len(t[i:i + size]), -1)).all(dim=1)
                      for i in range(0, len(t), size)]) if len(t) else torch.ones(0, dtype=torch.bool)

def to_labels(array, name: str) -> torch.Tensor:
    a = np.asarray(array)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim >= 3:  # masks: segmentation's, which from_arrays does not read
        raise DataError(f"{name} labels have shape {a.shape}: masks [N, H, W] are segmentation's, and from_arrays reads "
                        "class labels [N] (classification); give each split as TensorData(images, masks) to "
                        "DataSplits(train, val, test, num_classes=K) and train with SegmentationTask(K) "
                        "(docs/segmentation.md, From Python)")
    if a.ndim != 1:
        raise DataError(f"{name} labels have shape {a.shape}; expected [N] or [N, 1] class indices (multi-label is not supported)")
    if a.size and not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        example = a.flat[0].item() if isinstance(a.flat[0], np.generic) else a.flat[0]  # 'cat', not np.str_('cat')
        raise DataError(f"{name} labels must be integer class indices, got {a.dtype} values such as "
                        f"{example!r}: number the classes 0..K-1 and pass their names as class_names=")
    if a.size and (not np.issubdtype(a.dtype, np.integer) and not np.all(np.equal(np.mod(a, 1), 0))):
        raise DataError(f"{name} labels must be integer class indices, got dtype {a.dtype}")
    if a.size and np.issubdtype(a.dtype, np.unsignedinteger) and a.max() > np.iinfo(np.int64).max:
        # (cast to int64 they would wrap round and be called negative)
        raise DataError(f"{name} labels hold {int(a.max())}, not a class index: classes must be 0..K-1")
    t = torch.as_tensor(a.astype(np.int64))
    if t.numel() and t.min() < 0:
        raise DataError(f"{name} labels contain negative values; classes must be 0..K-1")
    return t


def off_scale(mean: torch.Tensor, std: torch.Tensor, ref_mean, ref_std) -> torch.Tensor:
    """Per channel, whether inputs of ``mean`` and ``std`` lie on another scale than the
    reference ones: a mean 3 of its stds away, or a spread 5 times wider or narrower."""
    ratio = std / torch.as_tensor(ref_std).clamp(min=1e-3)
    return ((mean - torch.as_tensor(ref_mean)).abs() > 3 * torch.as_tensor(ref_std)) | (ratio > 5) | (ratio < 0.2)


def _warn_of_splits_on_another_scale(xs: list[torch.Tensor]) -> None:
    """Val or test arrays stored on another scale than the training ones (uint8 beside 0-255
    floats: uint8 is divided by 255, floats kept): standardised alike, they lie far from the
    training split (3 of its stds away, or a spread 5 times off), and every figure on them
    means nothing."""
    if xs[0].ndim != 4 or len(xs[0]) < 2:
        return
    train_mean, train_std = xs[0].mean(dim=(0, 2, 3)), xs[0].std(dim=(0, 2, 3))
    varied = train_std > 1e-3  # a constant channel (blank test images) says nothing of scale
    for name, x in zip(("val", "test"), xs[1:]):
        if not len(x):
            continue
        mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
        if bool((off_scale(mean, std, train_mean, train_std) & varied).any()):
            pairs = lambda m, s: ", ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(m.tolist(), s.tolist()))  # noqa: E731
            warn_user(f"the {name} images, standardised as the training split is, have mean / std "
                      f"{pairs(mean, std)} per channel where the training images have {pairs(train_mean, train_std)}:"
                      " they are stored on another scale (uint8 is divided by 255, float arrays kept as they are: "
                      "store every split alike)")


def _checked_stats(stats) -> dict[str, list[float]]:
    """from_arrays' stats as lists of floats (numpy arrays and numbers too): a finite mean and a
    std above 0 per channel (per feature of vectors; a count unlike the inputs' is said by
    ``standardize``)."""
    try:
        checked = {key: [float(v) for v in np.asarray(stats[key], dtype=np.float64).reshape(-1)]
                   for key in ("mean", "std")}
    except (TypeError, KeyError, IndexError, ValueError):
        checked = None
    if checked is None or not checked["mean"] or len(checked["mean"]) != len(checked["std"]) or \
            not all(math.isfinite(v) for v in checked["mean"] + checked["std"]) or min(checked["std"]) <= 0:
        raise DataError(f"stats= takes {{'mean': [...], 'std': [...]}}, a finite mean and a std above 0 per channel, "
                        f"got {stats!r}")
    return checked


def channel_stats(x: torch.Tensor) -> dict[str, list[float]]:
    """Mean and std of each channel of images [N, C, H, W], or of each feature of vectors [N, F]."""
    dims = [0, 2, 3] if x.ndim == 4 else [0]
    return {"mean": x.mean(dim=dims).tolist(), "std": x.std(dim=dims).clamp(min=1e-6).tolist()}


# How far (in the standard deviations the models saw) inputs' mean may lie, and by what factor
# their spread may differ, from what a run trained from a Dataset saw (its ``input_stats``): a
# Dataset that standardised its images gave spreads about 4x wider than images on [0, 1].
UNLIKE_MEAN, UNLIKE_SPREAD = 2.0, 3.0


def unlike_seen(mean, std, seen: dict[str, list[float]]) -> bool:
    """Whether inputs of per-channel ``mean`` and ``std`` lie far from ``seen`` (``channel_stats``
    of what the models saw in training)."""
    seen_mean, seen_std = np.asarray(seen["mean"], np.float64), np.maximum(np.asarray(seen["std"], np.float64), 1e-6)
    ratio = np.asarray(std, np.float64) / seen_std
    return bool((np.abs(np.asarray(mean, np.float64) - seen_mean) / seen_std > UNLIKE_MEAN).any()
                or (ratio > UNLIKE_SPREAD).any() or (ratio < 1 / UNLIKE_SPREAD).any())


def per_channel(means, stds) -> str:
    """``mean / std`` of each channel, for a message."""
    return ", ".join(f"{mean:.3g} / {std:.3g}" for mean, std in zip(means, stds))


def standardised_spread(dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Each channel's mean and std of an in-memory split as the models see it (standardised),
    taken in chunks; None for other data (not images held in memory)."""
    x = getattr(dataset, "x", None)
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not len(x):
        return None
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    size = chunk_rows(x)  # (a float64 copy of a large split would take its memory many times)
    for start in range(0, len(x), size):
        part = x[start:start + size].double()
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    n = x.numel() // x.shape[1]
    mean = total / n
    return mean, (squares / n - mean.square()).clamp(min=0).sqrt()


def grey_read_as_colour(dataset, stats: dict[str, list[float]] | None) -> bool | None:
    """Whether every image of an in-memory split has three equal channels before standardisation
    (grey files read as colour). None for other data (not three-channel images held in memory)."""
    x = getattr(dataset, "x", None)
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3 or not len(x):
        return None
    return all(bool(grey_images(part).all()) for part in unstandardised_chunks(dataset, stats))


def standardized(xs: list[torch.Tensor], givens: list, stats: dict[str, list[float]],
                 in_place: bool = False) -> list[torch.Tensor]:
    """Each of ``xs`` (``to_nchw`` of the caller's ``givens``) standardised by ``stats``: in place
    where it is a copy of ours already or ``in_place`` asks it (review 52g: a third whole copy at
    the loading peak), else into a new tensor, the caller's arrays left as they were. Splits that
    share memory are refused in place: each would be standardised again (review 53g)."""
    if in_place:
        held = [x for x in xs if x.numel()]
        if any(np.may_share_memory(a.numpy(), b.numpy()) for i, a in enumerate(held) for b in held[i + 1:]):
            raise DataError("in_place=True standardises each split where it lies, but these splits share memory "
                            "(one array given twice, or overlapping slices): each would be standardised again; give "
                            "splits of their own, or leave in_place at False")
    return [standardize(x, stats, in_place=in_place or not _shares_memory(x, given)) for x, given in zip(xs, givens)]


def _shares_memory(x: torch.Tensor, given) -> bool:
    """Whether CPU tensor ``x`` may hold the caller's array ``given`` itself (``to_nchw`` reads
    CPU arrays alone)."""
    if isinstance(given, torch.Tensor):  # (a slice of a tensor starts inside its storage: compared by bounds, 52j)
        given = given.detach().numpy()
    return np.may_share_memory(x.numpy(), np.asarray(given))


def standardize(x: torch.Tensor, stats: dict[str, list[float]], in_place: bool = False) -> torch.Tensor:
    """``(x - mean) / std`` per channel (per feature of vectors); ``in_place``: into ``x`` itself
    (a tensor of the caller's own making: no second copy of a whole split)."""
    mean, std = torch.tensor(stats["mean"]), torch.tensor(stats["std"])
    if x.ndim == 4:
        if len(mean) == 1 and x.shape[1] == 3:
            raise DataError("these images are read in colour (3 channels) but the normalisation statistics are for "
                            "grey ones (1 channel; a run trained with data.grey=true has them): read image files "
                            "grey, data.grey=true; arrays (npz) are read as stored: save them with one channel "
                            "(their mean over the three, or one of them)")
        if len(mean) != x.shape[1]:
            raise DataError(f"the normalisation statistics have {len(mean)} channel(s) but the inputs have "
                            f"{x.shape[1]}: give data.normalize one mean and std per input channel (imagenet's "
                            "are for RGB), or read the images with the channels the statistics are for (data.grey)")
        mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    return x.sub_(mean).div_(std) if in_place else (x - mean) / std


def _stratify_failure(exc: ValueError, labels: np.ndarray, class_names: list[str] | None) -> tuple[str, str]:
    """Why scikit-learn could not stratify (the classes too small for three splits, by name), and
    what to do about it."""
    counts = np.bincount(labels)
    small = [(class_names[c] if class_names and c < len(class_names) else str(c), int(n))
             for c, n in enumerate(counts) if 0 < n < 3]
    if not small or "least populated class" not in str(exc):
        return (f"cannot make a stratified split: {exc} (a split must hold at least one image of each class)",
                "raise data.val_fraction / data.test_fraction, or add images")
    listed = ", ".join(f"'{name}' ({n} image{'s' if n != 1 else ''})" for name, n in small)
    return (f"cannot make a stratified train/val/test split: class {listed} needs at least 3 images, one for each "
            "split (more to learn anything)", "add images of it, or leave the class out")
