"""Segmentation data: the synthetic default and image/mask folder pairs."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

import numpy as np
import torch

from ..arguments import check_flags
from ..config import DataSpec
from ..errors import DataError, SplitError, TrainingAdvice, warn_user
from ..wording import first_few, nearest_name
from .dicom import dicom_size_and_spacing
from .exclusion import exclusion_of
from .image_profile import REGION_SHARES
from .image_io import (ID_RULE, IGNORE, IMAGE_SUFFIXES, LOOKED_FOR, PILLOW_SUFFIXES, binarized,
                       check_root_folder, check_same_sizes, class_labels, image_files, image_id, image_size, is_dicom,
                       refuse_photographs_as_masks, read_images, read_mask, read_mask_values, refuse_images_in_subfolders)
from .splits import (DataSplits, TensorData, channel_stats, check_groups_in_one_split, consecutive_parts, fold_cut,
                     group_cut, group_fold_mark, group_ids, group_val_cut, is_kept_whole, refuse_folds, standardized,
                     to_nchw)
from .synthetic import make_shapes



def segmentation_splits(images: list, masks: list, *, num_classes: int | None = None,
                        class_names: list[str] | None = None, stats=None, scored_only: bool = False,
                        channels_last: bool | None = None, in_place: bool = False,
                        mask_names: list | None = None) -> DataSplits:
    """Three (images, masks) pairs for train, val, test. Images [N, H, W(, C)] or [N, C, H, W];
    masks [N, H, W] integers 0..K-1, or 255 for pixels that count nowhere. ``scored_only``: the
    first part is a set to score, not to train on (it may lack foreground). ``channels_last``: as
    in ``DataSplits.from_arrays``; ``in_place``: float32 images standardised in the given arrays (as
    there: the loaders' own arrays). ``mask_names``: optional, each split's mask file names in
    order, for messages that name a mask (without, a mask is named by its split and index)."""
    check_flags("segmentation_splits", scored_only=scored_only, in_place=in_place)
    xs = [to_nchw(x, name, channels_last) for x, name in zip(images, ("train", "val", "test"))]
    ms = [to_masks(m, name) for m, name in zip(masks, ("train", "val", "test"))]
    for x, m, name in zip(xs, ms, ("train", "val", "test")):
        if len(x) != len(m) or tuple(x.shape[-2:]) != tuple(m.shape[-2:]):
            raise DataError(f"{name}: images {tuple(x.shape)} and masks {tuple(m.shape)} differ in number or size")
    k, seen = _class_count(ms, num_classes, class_names, training=not scored_only, mask_names=mask_names)
    names = default_class_names(k, class_names)
    if not scored_only:
        _warn_of_val_without_foreground(ms[1])
        _warn_of_classes_missing_from_val(ms[0], ms[1], names)
    stats = stats or channel_stats(xs[0])
    xs = standardized(xs, images, stats, in_place)
    splits = DataSplits(*(TensorData(x, m) for x, m in zip(xs, ms)), num_classes=k, class_names=names,
                        input_shape=tuple(xs[0].shape[1:]), stats=stats)
    splits.info["class_names_given"] = bool(class_names)  # else the defaults: mask values say the classes
    if class_names and not num_classes and len(names) > seen:  # (refused to a new run, not to eval: splits.py)
        splits.info["names_beyond_labels"] = (
            f"data.class_names names {len(names)} classes {names[:6]}, but the masks hold {seen} (0..{seen - 1}): the "
            f"models would learn classes ({', '.join(names[seen:seen + 3])}) no mask shows; give one name per class "
            "in the masks, or set data.num_classes too if those classes are truly absent")
    return splits


def declared_class_count(seen: int, num_classes: int | None, class_names: list[str] | None) -> int:
    """The classes of masks whose largest label is ``seen - 1``: data.num_classes, else one per
    name given, else the labels seen (two at least)."""
    return num_classes or (len(class_names) if class_names else max(seen, 2))


def default_class_names(k: int, class_names: list[str] | None = None) -> list[str]:
    """The names of ``k`` mask classes: those given, else background and foreground for two,
    else the class indices."""
    if class_names:
        return list(class_names)
    return ["background", "foreground"] if k == 2 else [str(c) for c in range(k)]


def masks_name_classes(info: dict) -> bool:
    """Whether masks described by ``info`` (a DataSplits') had their classes named by
    data.class_names: they are then matched to a run's classes by name (a run's defaults,
    "background" and "foreground", count as names); without, mask values say the classes.
    Data made elsewhere (not by these loaders) counts as named."""
    return bool(info.get("class_names_given", True))


def segmentation_whole(images, masks, *, num_classes: int | None = None, class_names: list[str] | None = None,
                       stats=None, channels_last: bool | None = None, in_place: bool = False,
                       mask_names: list | None = None) -> DataSplits:
    """One image/mask set kept whole, as the test split (train and val empty): what eval scores
    with ``--split all``, checked and numbered as a training set would be."""
    parts = segmentation_splits([images, images[:0], images[:0]], [masks, masks[:0], masks[:0]],
                                num_classes=num_classes, class_names=class_names, stats=stats, scored_only=True,
                                channels_last=channels_last, in_place=in_place,
                                mask_names=[mask_names, [], []] if mask_names is not None else None)
    whole = DataSplits(parts.val, parts.test, parts.train, num_classes=parts.num_classes,
                       class_names=parts.class_names, input_shape=parts.input_shape, stats=parts.stats,
                       info={**parts.info, "split": "whole (scored as one set)"})
    return whole


def _class_count(masks: list[torch.Tensor], num_classes: int | None, class_names: list[str] | None,
                 training: bool = True, mask_names: list | None = None) -> tuple[int, int]:
    """K from ``num_classes``, else from ``class_names``, else from the largest label; a label
    at or above K, a class with no pixel below the largest label (a stray value such as 7 in
    0/1 masks would make an 8-class model), training masks without foreground, or a class found
    in val or test but not in train are refused. Returns K and the labels the masks hold (the
    largest one's plus one). ``mask_names``: optional, each split's mask names, to name the
    masks holding a stray value."""
    per_split = [_pixels_per_class(m) for m in masks]
    counts = sum(per_split)
    seen = int(counts.nonzero().max()) + 1 if counts.any() else 1
    if num_classes and class_names and len(class_names) != num_classes:
        raise DataError(f"{len(class_names)} class names for num_classes {num_classes}: give one name per class")
    k = declared_class_count(seen, num_classes, class_names)
    if seen > k:
        said = (f"data.num_classes is {k}" if num_classes else f"data.class_names names {k}")
        raise DataError(f"masks hold class {seen - 1} but there are {k} classes ({said}): mask values must be "
                        f"0..{k - 1} (or 255)")
    pixels = {c: int(n) for c, n in enumerate(counts[:seen].tolist()) if n}
    if not num_classes and not class_names and len(pixels) < seen:
        gap = min(set(range(seen)) - set(pixels))
        stray = [c for c in pixels if c > gap]
        raise DataError(f"mask values and their pixel counts are {pixels}: classes "
                        f"{sorted(set(range(seen)) - set(pixels))} have no pixel, so a stray value would add "
                        f"classes; {_masks_holding(masks, stray, gap, mask_names)}: fix those masks, or set "
                        "data.num_classes if those classes are truly absent")
    if not num_classes and not class_names and seen > 2:
        _warn_of_a_stray_top_class(pixels, seen - 1, masks, mask_names)
    if not training:
        return k, seen
    if not has_foreground(masks[0]):
        raise DataError(f"{NO_FOREGROUND}: check the mask files; for 0/255 or coloured masks set data.binary_masks=true "
                        "(with it set, foreground is a value above 0 in 0/1 masks, above half the full scale in "
                        "others)")
    untrained = [c for c in range(1, seen) if not per_split[0][c] and counts[c]]
    if untrained:
        where = {name: int(n[untrained[0]]) for name, n in zip(("val", "test"), per_split[1:]) if n[untrained[0]]}
        raise DataError(f"class(es) {untrained[:10]} have pixels in the val or test masks ({where} pixels of class "
                        f"{untrained[0]}) but none in the training masks: every class must be in the training "
                        "split; move an image holding it into train (for splits cut from one set, another "
                        "data.split_seed may do)")
    return k, seen


def _masks_holding(masks: list[torch.Tensor], stray: list[int], gap: int, mask_names: list | None) -> str:
    """Which masks hold the values above the first class with no pixel (``stray``): the first
    few by file name where ``mask_names`` gives them, else by split and index."""
    count, shown = _masks_above(masks, gap, mask_names)
    return f"value(s) {', '.join(str(c) for c in stray)} are in {count} mask(s) ({shown})"


def _masks_above(masks: list[torch.Tensor], gap: int, mask_names: list | None) -> tuple[int, str]:
    """How many masks hold a label above ``gap`` (the ignored label aside), and the first five
    of them: by file name where ``mask_names`` gives them, else by split and index."""
    found, count = [], 0
    for split, m, names in zip(("train", "val", "test"), masks, mask_names or [None] * len(masks)):
        for i in range(len(m)):
            if bool(((m[i] > gap) & (m[i] != IGNORE)).any()):
                count += 1
                if len(found) < 5:
                    found.append(f"'{names[i]}'" if names is not None and i < len(names) else f"{split} mask {i}")
    more = f" and {count - len(found)} more" if count > len(found) else ""
    return count, f"{', '.join(found)}{more}"


STRAY_SHARE = 0.001  # a class counted from the masks with under this share of their foreground pixels


def _warn_of_a_stray_top_class(pixels: dict[int, int], top: int, masks: list[torch.Tensor],
                               mask_names: list | None = None) -> None:
    """The largest label, which alone made the class count (no class was declared), with a few
    pixels beside the other classes' (a stray 2 in 0/1 masks): a model of one more class, and
    advice to monitor a class, would follow unsaid; a gap below it is refused already. The
    masks holding it are named (``mask_names``, as ``_masks_holding``), so that they can be fixed."""
    foreground = sum(n for c, n in pixels.items() if c > 0)
    if pixels.get(top, 0) < STRAY_SHARE * foreground:
        count, shown = _masks_above(masks, top - 1, mask_names)
        warn_user(f"mask value {top} has {pixels[top]:,} pixel(s) of the masks' {foreground:,} foreground ones (under "
                  f"{STRAY_SHARE:.1%}), and makes this a {top + 1}-class model: if it is a stray value, fix the masks "
                  f"that hold it ({count}: {shown}); if class {top} is real, declare the classes "
                  f"(data.num_classes={top + 1}, or data.class_names) to say so", TrainingAdvice)


def _pixels_per_class(masks: torch.Tensor) -> torch.Tensor:
    """Each label's pixels (the ignored label's counted as none): one count over the masks as
    they are, not over a gathered copy of the kept ones (review 52g: 1.25 GiB more at the peak
    for 499 MiB of masks)."""
    counts = torch.bincount(masks.reshape(-1), minlength=IGNORE + 1)
    counts[IGNORE] = 0
    return counts


NO_FOREGROUND = "the training masks hold no foreground pixel (only background and ignored ones)"


def has_foreground(masks: torch.Tensor) -> bool:
    """Whether label maps hold a pixel of any class but the background (0) and ignored (255)."""
    return bool(((masks > 0) & (masks != IGNORE)).any())


def _warn_of_val_without_foreground(val: torch.Tensor) -> None:
    """Dice and IoU of an image are left out when neither truth nor prediction holds the class,
    and 0 when the prediction alone does: on a val split without foreground an epoch that marks
    no pixel scores n/a, one marking a stray pixel 0, and n/a ranks last."""
    if len(val) and not has_foreground(val):
        warn_user("the val masks hold no foreground pixel: val Dice and IoU are 0 in an epoch whose models mark "
                  "any foreground and n/a in one whose models mark none, so they cannot choose the best epoch "
                  "(n/a ranks last: a clean epoch would lose to one with stray pixels); give val images with the "
                  "objects, or set train.monitor to ensemble/pixel_accuracy", TrainingAdvice)


def _warn_of_classes_missing_from_val(train: torch.Tensor, val: torch.Tensor, names: list[str]) -> None:
    """Several foreground classes, val holding some: a trained class val lacks is scored only in
    an epoch whose models mark a stray pixel of it (Dice 0), so the val Dice, a mean over the
    classes scored, is over fewer classes in a clean epoch and follows stray pixels (review 49e)."""
    if len(names) < 3 or not len(val) or not has_foreground(val):  # (none at all: said above)
        return
    in_val = set(torch.unique(val).tolist())
    trained = set(torch.unique(train).tolist())
    lacking = [c for c in range(1, len(names)) if c in trained and c not in in_val]
    if lacking:
        shown = ", ".join(f"'{names[c]}' ({c})" for c in lacking[:5]) + (" ..." if len(lacking) > 5 else "")
        warn_user(f"the val masks hold no pixel of class(es) {shown}: val Dice and IoU, means over the classes an "
                  "epoch is scored on, count them only in an epoch whose models mark a stray pixel of them (as 0), "
                  "so a train.monitor of either (the default, ensemble/dice) follows stray pixels; give val images "
                  "holding every class, or monitor a class val holds (train.monitor=ensemble/dice_"
                  f"{names[next(c for c in range(1, len(names)) if c in in_val)]})", TrainingAdvice)


def to_masks(array, name: str) -> torch.Tensor:
    a = np.asarray(array)
    if a.ndim != 3:
        raise DataError(f"{name} masks have shape {a.shape}; expected [N, H, W] label images")
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{name} masks must hold integer class indices, got dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise DataError(f"{name} masks hold negative values; classes must be 0..K-1")
    return torch.as_tensor(a.astype(np.int64))


def load_shapes(spec: DataSpec, stats=None) -> DataSplits:
    """The synthetic default: 600 / 150 / 150 images (``shapes_counts``), fixed seeds
    (``split_seed`` shifts them)."""
    if min(spec.shapes_counts) < 1:
        raise DataError(f"data.shapes_counts must be three positive counts, got {spec.shapes_counts}")
    parts = [make_shapes(n, seed=spec.split_seed * 3 + k) for k, n in enumerate(spec.shapes_counts)]
    splits = segmentation_splits([p[0] for p in parts], [p[1] for p in parts], num_classes=2, stats=stats)
    splits.info.update(source="synthetic textured ellipses (peerdistill.data.synthetic)", split_seed=spec.split_seed)
    return splits


# What data.group_pattern is matched against in image/mask folders: each pair's id.
IMAGE_IDS = "image ids (data.pattern's first group, else the file name less its suffix)"


def split_folders(root: Path, spec: DataSpec) -> dict[str, str]:
    """Each split to the folder under ``root`` holding its images/ and masks/: data.split_dirs, else
    ``train``/``val``/``test`` where all three exist, else ``train``/``test`` (val cut from train, as
    image_folder's) where root has no images folder of its own; empty for one folder cut into splits."""
    dirs = dict(spec.split_dirs or {})
    if not dirs and all((root / s).is_dir() for s in ("train", "val", "test")):
        dirs = {"train": "train", "val": "val", "test": "test"}
    elif not dirs and all((root / s).is_dir() for s in ("train", "test")) and not (root / spec.images).is_dir():
        dirs = {"train": "train", "test": "test"}
    return dirs


def load_folders(spec: DataSpec, stats=None) -> DataSplits:
    """``root/images/*`` and ``root/masks/*`` (and ``root/<roi>/*``) matched by id. Splits: the
    folders named in ``split_dirs`` (a missing val is cut from train by ``split_seed``), or
    ``root/{train,val,test}`` when they exist (``root/{train,test}`` alone: val cut from train),
    or else a random split by ``split_seed``."""
    root = Path(spec.root or "")
    check_root_folder(root, spec.kind)
    dirs = split_folders(root, spec)
    rng = np.random.default_rng(spec.split_seed)
    read_images_of: list[Path] = []  # the image files of the pairs read (less those data.exclude left out)
    mask_of: dict = {}  # (folder, id): the mask file read, named in messages about a mask

    def read(folder: Path, cut=None):
        return read_pairs(folder, spec, cut, kept=read_images_of, mask_of=mask_of)

    def shown(path: Path) -> str:  # a mask file as its path from data.root
        try:
            return str(path.relative_to(root))
        except ValueError:
            return str(path)

    if is_kept_whole():  # scored as one set: whichever split folders there are, joined, or the root's pairs
        # (a set moved by data.root=NEW need not hold every folder data.split_dirs named)
        given = ([d for d in dirs.values() if (root / d).is_dir()] if dirs
                 else [s for s in ("train", "val", "test") if (root / s / spec.images).is_dir()])
        folders = [root / d for d in dict.fromkeys(given)] if given else [root]
        # (into one array: no joined copy beside the parts, review 53g)
        masks_read: list[Path] = []
        x, m, names = read_joined(folders, spec, kept=read_images_of, masks_read=masks_read)
        splits = segmentation_whole(x, m, num_classes=spec.num_classes, class_names=spec.class_names, stats=stats,
                                    channels_last=False, in_place=True, mask_names=[shown(f) for f in masks_read])
        splits.info.update(source=str(root), files={"test": names}, pixel_spacing=seen_spacing(spec, read_images_of))
        return splits
    if dirs:
        refuse_folds(spec.folds, f"'{root}' (its split folders {sorted(dirs.values())})")
        missing = [s for s in ("train", "test") if s not in dirs]
        if missing:
            raise DataError(f"data.split_dirs needs at least train and test folders, missing {missing}")
        absent = {s: d for s, d in dirs.items() if not (root / d).is_dir()}
        if absent and len(absent) < len(dirs):  # (review 55h: DRIVE's testing/ alone was told to set data.images)
            raise DataError(_absent_split_folders(root, dirs, absent))
        def val_cut(ids: list[str]) -> list[np.ndarray]:  # (whole groups with data.group_pattern)
            if spec.group_pattern:
                return list(group_val_cut(group_ids(ids, spec.group_pattern, IMAGE_IDS), None, spec.val_fraction,
                                          spec.split_seed, "data.group_pattern"))
            return list(_cut_indices(len(ids), spec.val_fraction, rng))

        # a val cut from train is read straight into its place (review 53g: a copy of train beside it)
        parts = {}
        for s, d in dirs.items():
            if s == "train" and "val" not in dirs:
                parts["train"], parts["val"] = read(root / d, val_cut)
            else:
                parts[s] = read(root / d)
        if spec.group_pattern:  # a patient in two given folders is refused (a val cut takes whole ones)
            check_groups_in_one_split({s: group_ids(p[2], spec.group_pattern, IMAGE_IDS) for s, p in parts.items()},
                                      "data.group_pattern", f"'{root}' (its split folders {sorted(dirs.values())})")
        parts = [parts[s] for s in ("train", "val", "test")]
    elif spec.group_pattern or spec.folds:  # (cut by the ids before an image is read: each read into its place)
        parts = read(root, lambda ids: cut_by_groups_or_folds(ids, spec))
    else:
        parts = read(root, lambda ids: _random_cut(len(ids), spec, rng, root))
    folder_of = {s: root / dirs.get(s, dirs["train"]) for s in ("train", "val", "test")} if dirs else \
        dict.fromkeys(("train", "val", "test"), root)
    mask_names = [[shown(mask_of[folder_of[s], key]) if (folder_of[s], key) in mask_of else str(key) for key in p[2]]
                  for s, p in zip(("train", "val", "test"), parts)]
    splits = segmentation_splits([p[0] for p in parts], [p[1] for p in parts], num_classes=spec.num_classes,
                                 class_names=spec.class_names, stats=stats, channels_last=False, in_place=True,
                                 mask_names=mask_names)
    splits.info.update(source=str(root), split_seed=spec.split_seed, pixel_spacing=seen_spacing(spec, read_images_of),
                       cut_from_one_set=not dirs, files={s: p[2] for s, p in zip(("train", "val", "test"), parts)})
    if spec.roi and len(parts[0][1]):  # (predict --roi: a region far smaller than these is said)
        shares = (np.asarray(parts[0][1]) != IGNORE).reshape(len(parts[0][1]), -1).mean(axis=1)
        splits.info[REGION_SHARES] = [round(float(shares.min()), 4), round(float(shares.max()), 4)]
    if spec.folds:
        splits.info.update(fold=spec.fold, folds=spec.folds)
    if spec.group_pattern:
        splits.info["groups"] = {s: len(set(group_ids(p[2], spec.group_pattern, IMAGE_IDS)))
                                 for s, p in zip(("train", "val", "test"), parts)}
        splits.info.update(group_fold_mark(spec) if not dirs else {})
    return splits


def cut_by_groups_or_folds(ids: list[str], spec: DataSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, val and test indices of one set of pairs (``ids``: their image ids, in reading
    order) with ``data.group_pattern`` (whole groups) or ``data.folds`` (fold ``data.fold`` the
    test split): the loader's cut, which compare also deals for every fold before any trains."""
    if spec.group_pattern:
        return group_cut(group_ids(ids, spec.group_pattern, IMAGE_IDS), spec.val_fraction, spec.test_fraction,
                         spec.split_seed, spec.folds, spec.fold)
    return fold_cut(len(ids), spec.fold, spec.folds, spec.val_fraction, spec.split_seed)


def seen_spacing(spec: DataSpec, files: list[Path]) -> list[float] | None:
    """The size of a pixel (rows, columns) of the images as the models see them:
    ``data.pixel_spacing`` (the files' own), stretched by the resize to ``data.image_size``,
    which must then find every file at one size; ``dicom``: the images' own (``_dicom_spacing``);
    None without a spacing (distances in pixels). ``files``: the image files of the pairs read (a
    pair data.exclude left out, by any of its files, is no matter)."""
    if spec.pixel_spacing is None:
        return None
    if spec.pixel_spacing == "dicom":
        return _dicom_spacing(files, spec.image_size)
    if spec.image_size is None:
        return list(spec.pixel_spacing)
    sizes = {image_size(path) for path in files}
    if len(sizes) > 1:
        shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:3])
        raise DataError(f"data.pixel_spacing gives one pixel size, but the images are stored at several sizes (rows x "
                        f"columns: {shown}) "
                        "and data.image_size resizes each by its own factor: resize the files to one size first, or "
                        "drop data.pixel_spacing (distances then in pixels)")
    (height, width), = sizes
    return [spec.pixel_spacing[0] * height / spec.image_size[0], spec.pixel_spacing[1] * width / spec.image_size[1]]


def _dicom_spacing(files: list[Path], resized_to) -> list[float]:
    """``data.pixel_spacing: dicom``: the images' own PixelSpacing as the models see them
    (stretched by the resize to ``resized_to``), which must agree (to 0.1 %): one run scores
    in one unit."""
    seen = {}
    for path in files:
        if not is_dicom(path):
            raise DataError(f"data.pixel_spacing=dicom reads each image's PixelSpacing, but '{path}' is not a DICOM "
                            "file: give data.pixel_spacing=[ROWS, COLUMNS] instead")
        (height, width), given = dicom_size_and_spacing(path)
        if given is None:
            raise DataError(f"data.pixel_spacing=dicom, but DICOM image '{path}' gives no PixelSpacing: give "
                            "data.pixel_spacing=[ROWS, COLUMNS], or drop it (HD95 in pixels)")
        seen[path] = ((given[0] * height / resized_to[0], given[1] * width / resized_to[1]) if resized_to
                      else given)
    spacings = np.array(list(seen.values()))
    odd = np.flatnonzero(~np.isclose(spacings, spacings[0], rtol=1e-3, atol=0).all(axis=1))
    if len(odd):
        first, other = list(seen)[0], list(seen)[odd[0]]
        raise DataError(f"data.pixel_spacing=dicom, but the images' spacings differ as the models see them: "
                        f"'{first.name}' {_mm(spacings[0])}, '{other.name}' {_mm(spacings[odd[0]])} ({len(odd)} of "
                        f"{len(files)} differ from the first); one run scores HD95 in one unit: resample the images "
                        "to one spacing, or drop data.pixel_spacing (HD95 in pixels)")
    return [float(spacings[0, 0]), float(spacings[0, 1])]


def _mm(spacing) -> str:
    return f"{spacing[0]:.4g} x {spacing[1]:.4g} mm"


def _cut_indices(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The indices of ``n`` items kept and cut off (``fraction`` of them), each in order."""
    k = max(1, round(n * fraction))
    if n - k < 1:
        raise SplitError(f"{n} image/mask pairs are too few to split off {fraction:.0%} of them (at least one) "
                            "and keep one", "give more pairs, or the splits as folders (data.split_dirs)")
    order = rng.permutation(n)
    return np.sort(order[k:]), np.sort(order[:k])


def _random_cut(n: int, spec: DataSpec, rng: np.random.Generator, root: Path) -> list[np.ndarray]:
    """Train, val and test indices of ``n`` pairs: test cut off first, then val from the rest."""
    if n < 3:
        raise SplitError(f"'{root}' holds {n} image/mask pair(s), too few to split into train, val and test (one "
                         "each at least)", "give more pairs, or the splits as folders (data.split_dirs)")
    rest, test = _cut_indices(n, spec.test_fraction, rng)
    train, val = _cut_indices(len(rest), spec.val_fraction / (1 - spec.test_fraction), rng)
    return [rest[train], rest[val], test]


def _folders_advice(root: Path, spec: DataSpec) -> str:
    """What to set when the images or masks folder is not under ``root``: the split folders
    (DRIVE's training/ and testing/, each with its own images/), or the folders that are there;
    or data.root itself one level too deep (``kvasir-seg/images``, ``drive/training``)."""
    data_root = Path(spec.root or "")
    splits = [d for d in (spec.split_dirs or {}).values() if d]
    if data_root.name in {spec.images, spec.masks, *splits} and (
            (data_root.parent / spec.images).is_dir() or any((data_root.parent / d / spec.images).is_dir()
                                                             for d in splits)):
        return (f"data.root looks one level too deep ('{data_root.name}' is a folder data.root holds): "
                f"data.root={data_root.parent}")
    subs = _folders_in(root)
    nested = [s for s in subs if (root / s / spec.images).is_dir()]
    if nested and not spec.split_dirs:
        roles = {role: next((s for s in nested if role in s.lower()), None) for role in ("train", "val", "test")}
        named = ", ".join(f"{role}: {s}" for role, s in roles.items() if s)
        example = (f"data.split_dirs={{{named}}}" if roles["train"] and roles["test"]
                   else "data.split_dirs={train: FOLDER, test: FOLDER}")
        return (f"data.root holds the splits as folders ({', '.join(nested)}), each with its own {spec.images}/: "
                f"name them, {example}")
    if subs:
        shown = first_few(subs, 10)
        return (f"'{root}' holds the folders {shown}: set data.images and data.masks to the folders of the images "
                f"and of the masks (now {spec.images!r} and {spec.masks!r})")
    return "set data.images / data.masks to the folder names under data.root"


def _folders_in(root: Path) -> list[str]:
    """The names of the folders ``root`` holds (hidden ones aside), sorted."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def _absent_roi_folder(root: Path, spec: DataSpec) -> str:
    """Why data.roi's folder is not under ``root``: the folders there, and the nearest of them
    (the images and masks folders aside) where one is close."""
    held = _folders_in(root)
    near = nearest_name(spec.roi, [h for h in held if h not in (spec.images, spec.masks)])
    holds = f"'{root}' holds the folders {first_few(held, 10, quoted=True)}" if held else f"'{root}' holds no folder"
    if near:
        return (f"'{root / spec.roi}' is not a directory: data.roi names the folder of region masks; did you mean "
                f"'{near}'? ({holds}): fix data.roi (on the command line 'data.roi={near}')")
    return (f"'{root / spec.roi}' is not a directory: data.roi names the folder of region masks, and {holds}: set "
            "data.roi to the folder of the region masks, or leave it out")


def _absent_split_folders(root: Path, dirs: dict[str, str], absent: dict[str, str]) -> str:
    """Why split folders data.split_dirs names are not under ``root`` (others are): each absent
    one's nearest folder there (case ignored first, then by spelling) where one is close, else the
    folders the root holds and the way to score such a set whole."""
    named = ", ".join(f"'{d}' ({s})" for s, d in absent.items())
    held = _folders_in(root)
    free = [h for h in held if h not in dirs.values()]
    close = {s: near for s, d in absent.items() if (near := nearest_name(d, free))}
    holds = f"it holds the folders {first_few(held, 10, quoted=True)}" if held else "it holds no folder"
    if len(close) == len(absent):
        meant = ", ".join(f"'{close[s]}' for '{d}'" for s, d in absent.items())
        fixed = "{" + ", ".join(f"{s}: {close.get(s, d)}" for s, d in dirs.items()) + "}"
        return (f"'{root}' lacks the split folder(s) {named} that data.split_dirs names; did you mean {meant}? "
                f"({holds}): fix data.split_dirs (on the command line 'data.split_dirs={fixed}')")
    return (f"'{root}' lacks the split folder(s) {named} that data.split_dirs names; {holds}: name the folders it "
            "holds in data.split_dirs; eval scores a set of images without its other split folders whole with "
            "--split all, and training needs every split folder")


def read_pairs(root: Path, spec: DataSpec, cut=None, kept: list[Path] | None = None, mask_of: dict | None = None):
    """The pairs under ``root`` as (images [N, C, H, W] float32, masks [N, H, W] uint8, ids), the
    ids sorted. With ``cut`` (ids to a list of index arrays, a split each), one such triple per
    split, each read straight into its place in one array (no whole set beside its cut copies).
    ``kept``: a list the image files of the pairs read are added to; ``mask_of``: a dict their
    mask files are added to, by (``root``, id)."""
    images, masks, rois, keys = _paired_files(root, spec)
    if kept is not None:
        kept += [images[key] for key in keys]
    if mask_of is not None:
        mask_of.update({(root, key): masks[key] for key in keys})
    parts = cut(keys) if cut is not None else [np.arange(len(keys))]
    ordered = [keys[i] for part in parts for i in part]
    x = read_images([images[key] for key in ordered], spec.image_size, grey=spec.grey,
                    dicom_window=spec.dicom_window, where=f"images in '{root / spec.images}'")
    m = np.stack(_labels(root, spec, images, masks, rois, ordered))
    lengths = [len(part) for part in parts]
    triples = list(zip(consecutive_parts(x, lengths), consecutive_parts(m, lengths), consecutive_parts(ordered, lengths)))
    return triples if cut is not None else triples[0]


def read_joined(roots: list[Path], spec: DataSpec,
                kept: list[Path] | None = None,
                masks_read: list[Path] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The pairs of several folders (a set's split folders, scored as one) as ``read_pairs`` gives
    one folder's, read into one array; each folder's masks read by their own binary rule.
    ``kept``: a list the image files of the pairs read are added to; ``masks_read``: one their
    mask files are added to, in the masks' order."""
    found = [(root, *_paired_files(root, spec)) for root in roots]
    files = [images[key] for _, images, _, _, keys in found for key in keys]
    if kept is not None:
        kept += files
    if masks_read is not None:
        masks_read += [masks[key] for _, _, masks, _, keys in found for key in keys]
    where = f"images in '{roots[0] / spec.images}'" if len(roots) == 1 else \
        f"the images of the split folders of '{os.path.commonpath([str(r) for r in roots])}'"
    x = read_images(files, spec.image_size, grey=spec.grey, dicom_window=spec.dicom_window, where=where)
    m = np.concatenate([np.stack(_labels(root, spec, images, masks, rois, keys))
                        for root, images, masks, rois, keys in found])
    return x, m, [key for *_, keys in found for key in keys]


def read_mask_labels(spec: DataSpec) -> tuple[list[np.ndarray], list[str]]:
    """The masks of the pairs under ``data.root`` (one set, no split folders) as training reads
    them, and their ids in reading order, without decoding an image: what compare needs to deal
    every fold before any run trains (review 50e: reading the images too cost 13 s on Kvasir-SEG)."""
    root = Path(spec.root or "")
    check_root_folder(root, spec.kind)
    images, masks, rois, keys = _paired_files(root, spec)
    return _labels(root, spec, images, masks, rois, keys), keys


def _paired_files(root: Path, spec: DataSpec) -> tuple[dict, dict, dict | None, list[str]]:
    """The image, mask (and region) files of ``root`` by id, checked to pair up; the ids sorted."""
    image_dir, mask_dir = root / spec.images, root / spec.masks
    for d in (image_dir, mask_dir):
        if not d.is_dir():
            raise DataError(f"'{d}' is not a directory: {_folders_advice(root, spec)}")
    if spec.roi and not (root / spec.roi).is_dir():
        raise DataError(_absent_roi_folder(root, spec))
    folders = [image_dir, mask_dir] + ([root / spec.roi] if spec.roi else [])
    for folder in dict.fromkeys(folders):
        refuse_images_in_subfolders(folder, {f.resolve() for f in folders})
    exclusion = exclusion_of(spec)
    dropped: dict[str, Path] = {}  # (data.exclude: the ids of pairs one of whose files it names)
    images = files_by_key(image_dir, spec.pattern, exclusion, dropped)
    dropped_images = dict(dropped)
    masks = files_by_key(mask_dir, spec.pattern, exclusion, dropped)
    rois = files_by_key(root / spec.roi, spec.pattern, exclusion, dropped) if spec.roi else None
    if dropped:
        images, masks, rois = _without_pairs(set(dropped), dropped_images, images, masks, rois, exclusion)
    masks = _named_as_images(masks, images)
    rois = _named_as_images(rois, images) if rois is not None else None
    unmatched_images, unmatched_masks = sorted(set(images) - set(masks)), sorted(set(masks) - set(images))
    if unmatched_images or unmatched_masks:
        raise DataError(_unpaired_message(root, spec, images, masks, unmatched_images, unmatched_masks))
    if not images and dropped:
        raise DataError(f"data.exclude leaves no image and mask pair in '{root}': keep some, or remove patterns "
                        "from it")
    if not images:
        raise DataError(f"no images found in '{image_dir}' (looked for {LOOKED_FOR})")
    keys = sorted(images)
    if rois is not None:
        _check_regions_cover(root / spec.roi, spec.pattern, images, rois, keys)
    check_same_sizes([(images[key], masks[key]) for key in keys], "its mask")
    return images, masks, rois, keys


def _unpaired_message(root: Path, spec: DataSpec, images: dict, masks: dict, unmatched_images: list[str],
                      unmatched_masks: list[str]) -> str:
    """Why the images and masks of ``root`` do not pair up: each side's leftovers, counted, by file
    name; those that differ only in case; how a data.pattern pairs names that differ otherwise; and
    the files the masks folder holds that are not read."""
    mask_dir = root / spec.masks
    unread = sorted({p.suffix.lower() for p in mask_dir.iterdir() if p.is_file() and not p.name.startswith(".")
                     and p.suffix.lower() not in IMAGE_SUFFIXES} - {""})
    by_case = _differing_in_case(unmatched_images, unmatched_masks)
    case_pairs = [f"'{images[i].name}' and '{masks[m].name}'" for i, m in by_case]
    only_case = len(by_case) == len(unmatched_images) == len(unmatched_masks)
    which = f"All {len(by_case)} image(s)" if only_case else f"{len(by_case)} of the images"
    case_note = (f" {which} differ from a mask's name only in case ({first_few(case_pairs)}): ids are "
                 "case-sensitive on every system; rename the files of one folder so that each name agrees in case "
                 "with its pair's." if by_case else "")
    # names that differ only in case are renamed, not paired by a pattern that drops their letters
    pattern = _pattern_that_pairs(root, spec) if unmatched_images and unmatched_masks and not only_case else None
    hint = (f" data.pattern '{pattern}' pairs every image of the set with its {_pair_roles(spec)} (tried on "
            f"the files): set it (on the command line 'data.pattern={pattern}')." if pattern else
            " A regular expression data.pattern whose first group is the shared id pairs names that differ "
            r"otherwise (e.g. '^(.+?)(_mask)?\.\w+$' pairs 'a.png' with 'a_mask.png')."
            if unmatched_images and unmatched_masks and not spec.pattern and not only_case else "")
    unread_note = (f" The masks folder also holds {', '.join(unread)} files, which are not read (masks are "
                   f"{', '.join(sorted(PILLOW_SUFFIXES))})." if unread else "")
    # each side said only where it holds files, counted, by file name (review 55r: 5 ids of 60, an empty
    # list, and 'extra_one' for extra_one_mask.jpg)
    lone = [f"{len(keys)} {what} ({first_few([files[k].name for k in keys], quoted=True)})"
            for keys, files, what in ((unmatched_images, images, "image(s) without a mask"),
                                      (unmatched_masks, masks, "mask(s) without an image")) if keys]
    return (f"image and mask names do not pair up in '{root}': {'; '.join(lone)} (names are matched by "
            f"{spec.pattern or ID_RULE}).{case_note}{hint}{unread_note}")


def _pair_roles(spec: DataSpec) -> str:
    return "mask and region mask" if spec.roi else "mask"


# Simple patterns tried on names that do not pair by their stems, in this order: a leading number
# (DRIVE's 21_training.tif, 21_manual1.gif), the name up to its first '_' or '.' ('a.png',
# 'a_mask.png'), each folder's common tail left out (``_tail_pattern``), the first number
# ('image_001.png', 'mask_001.png'). Each is suggested only once it pairs every file.
SIMPLE_PATTERNS = (r"^(\d+)_", r"^([^_.]+)[_.]", None, r"^\D*(\d+)")
SEPARATORS = "_-. "


def _pattern_that_pairs(root: Path, spec: DataSpec) -> str | None:
    """A data.pattern computed from the names that pairs every image of the set (``root`` and the
    other split folders beside it) with a mask, and a region mask with data.roi: checked by pairing
    the files with it (each file an id, no id twice in a folder); None where no simple one does.
    (Files data.exclude names are counted: a pattern is suggested only where it pairs them all.)"""
    roles = [name for name in (spec.images, spec.masks, spec.roi) if name]
    try:
        folders = [[[p.name for p in image_files(folder / name)] if (folder / name).is_dir() else []
                    for name in roles] for folder in _set_folders(root, spec)]
    except DataError:  # (a link leading nowhere: said when that folder is read)
        return None
    folders = [names for names in folders if names[0]]
    for pattern in SIMPLE_PATTERNS:
        pattern = pattern or _tail_pattern(folders)
        if pattern and pattern != spec.pattern and "'" not in pattern and \
                all(_pairs_every_file(pattern, names) for names in folders):
            return pattern
    return None


def _set_folders(root: Path, spec: DataSpec) -> list[Path]:
    """The folders of the set ``root`` is one of: the split folders of data.root where ``root``
    is one of them, else ``root`` alone."""
    data_root = Path(spec.root or "")
    dirs = split_folders(data_root, spec)
    folders = [data_root / d for d in dict.fromkeys(dirs.values()) if (data_root / d).is_dir()]
    return folders if root in folders else [root]


def _pairs_every_file(pattern: str, names: list[list[str]]) -> bool:
    """Whether ``pattern`` gives each of the files ``names`` lists (images, masks, region masks)
    an id, no id twice in a folder, every image's shared by a mask (and a region mask) and every
    mask's by an image."""
    ids = []
    for folder in names:
        keys = [file_key(Path(name), pattern) for name in folder]
        if None in keys or len(set(keys)) < len(keys):
            return False
        ids.append({unicodedata.normalize("NFC", key) for key in keys})
    images, masks, *regions = ids
    return images == masks and all(images <= region for region in regions)


def _tail_pattern(folders: list[list[list[str]]]) -> str | None:
    """A pattern that leaves out the tail each folder's names share beyond their ids ('_manual1'
    of 21_manual1.gif, '_mask' of a_mask.png), a tail beginning at a separator; None without one."""
    tails = {tail for folder in folders for names in folder if (tail := _common_tail(names))}
    if not tails:
        return None
    shown = "|".join(re.escape(tail) for tail in sorted(tails, key=lambda t: (-len(t), t)))
    return rf"^(.+?)(?:{shown})?\.\w+$"


def _common_tail(names: list[str]) -> str:
    """The end the stems of ``names`` share, from its first separator on ('_manual1' of
    '21_manual1.gif' and '31_manual1.gif'); empty where none, or for one name (all of it is its own)."""
    if len(names) < 2:
        return ""
    stems = [name.rsplit(".", 1)[0] for name in names]
    shared = os.path.commonprefix([stem[::-1] for stem in stems])[::-1]
    starts = [i for i, c in enumerate(shared) if c in SEPARATORS]
    return shared[starts[0]:] if starts else ""


def _differing_in_case(image_ids: list[str], mask_ids: list[str]) -> list[tuple[str, str]]:
    """(image id, mask id) of the leftover ids that are the same but for case ('IMG01' and 'img01'):
    never paired silently, since on a case-sensitive system 'a' and 'A' may be two samples."""
    masks_by_fold = {key.casefold(): key for key in mask_ids}
    return [(key, masks_by_fold[key.casefold()]) for key in image_ids if key.casefold() in masks_by_fold]


def _check_regions_cover(roi_dir: Path, pattern: str | None, images: dict, rois: dict, keys: list[str]) -> None:
    """Every image has its region-of-interest mask, checked over the whole set before any split
    is cut (so the images named are the first lacking one, not those of one split); else refused,
    counted, with the ids the images lacking one need beside those the folder's masks give: a
    folder of another split's masks (DRIVE's test masks for its training images) reads as such."""
    lacking = [key for key in keys if key not in rois]
    if not lacking:
        return
    rule = f"data.pattern '{pattern}'" if pattern else ID_RULE
    strays = sorted(set(rois) - set(images))
    held = (f"its {len(rois)} region mask(s) give ids {first_few(sorted(rois), quoted=True)}"
            + ("" if not strays else ", none of them an image's" if len(strays) == len(rois) else
               f", {len(strays)} of them no image's ({first_few(strays, quoted=True)})")
            if rois else "it holds no region mask")
    raise DataError(f"no region-of-interest mask for {len(lacking)} of the {len(keys)} images in '{roi_dir}' "
                    f"({first_few([images[key].name for key in lacking], quoted=True)}): these images need ids "
                    f"{first_few(lacking, quoted=True)}; {held} (ids by {rule}). Put each image's region mask "
                    "there, named so that it pairs with its image, or leave out data.roi")


def _labels(root: Path, spec: DataSpec, images: dict, masks: dict, rois: dict | None,
            keys: list[str]) -> list[np.ndarray]:
    """Each pair's mask as class indices (binary masks by one rule for the set), 255 outside its
    region of interest."""
    raw = [read_mask_values(masks[key], spec.image_size, spec.binary_masks) for key in keys]
    if spec.binary_masks:
        refuse_photographs_as_masks(raw, root, spec.images, spec.masks, "with data.binary_masks")
        ms = binarized(raw)
    else:
        ms = [class_labels(values, masks[key], spec.num_classes) for values, key in zip(raw, keys)]
        _check_saved_one_way(ms, [masks[key].name for key in keys], root / spec.masks, spec.num_classes)
    if rois is not None:
        check_same_sizes([(images[key], rois[key]) for key in keys], "its region-of-interest mask")
        for i, key in enumerate(keys):
            region = read_mask(rois[key], spec.image_size, binary=True)
            ms[i] = np.where(region > 0, ms[i], IGNORE).astype(np.uint8)
    return ms


def _check_saved_one_way(masks: list[np.ndarray], names: list[str], mask_dir: Path, num_classes: int | None) -> None:
    """0/255 masks read as labels are "background + ignored": refused when that is all there
    is, or when other masks of the set hold class indices instead (some saved 0/1, some 0/255),
    unless 255 is the set's void label (it also borders classes, as in Pascal VOC) or
    ``num_classes`` says the classes outright."""
    only_0_255, labelled, void_beside_classes = [], [], False
    for mask, name in zip(masks, names):
        classes = set(np.unique(mask).tolist()) - {0}
        if classes == {IGNORE}:
            only_0_255.append(name)
        elif classes:
            labelled.append(name)
            void_beside_classes |= IGNORE in classes
    if only_0_255 and not labelled:
        raise DataError(f"the masks in '{mask_dir}' hold only 0 and 255: for 0/255 masks set data.binary_masks=true "
                        "(255 is otherwise the label of ignored pixels)")
    if only_0_255 and not void_beside_classes and not num_classes:
        raise DataError(f"some masks in '{mask_dir}' hold only 0 and 255 ({only_0_255[:5]}) while others hold "
                        f"class indices ({labelled[:3]}): 255 would mark those objects as ignored. Save every "
                        "mask the same way (0/1 or 0/255 with data.binary_masks=true), or set data.num_classes "
                        "if 255 marks ignored pixels")


def _named_as_images(files: dict[str, Path], images: dict[str, Path]) -> dict[str, Path]:
    """``files`` (masks, regions) by the id of their image where the two names differ only in
    Unicode form: macOS writes 'ñ' as 'n' and a combining tilde, other systems as one letter, so
    a folder copied from a Mac beside one made elsewhere pairs nothing of them, with a message
    naming the same-looking ids on both sides (review 51c). Ids that pair as they are stay."""
    if not set(files) - set(images):
        return files
    by_form = {unicodedata.normalize("NFC", key): key for key in images}
    out = {key: path for key, path in files.items() if key in images}
    for key, path in files.items():
        if key not in images:
            image_key = by_form.get(unicodedata.normalize("NFC", key))
            out[key if image_key is None or image_key in out else image_key] = path  # (one file per image)
    return out


def file_key(path: Path, pattern: str | None) -> str | None:
    """The id a file pairs by: ``data.pattern``'s first group (None where it does not match), else
    ``image_id``."""
    if not pattern:
        return image_id(path)
    match = re.search(pattern, Path(path).name)
    return None if match is None else match.group(1) if match.groups() else match.group(0)


def _without_pairs(gone: set[str], dropped_images: dict[str, Path], images: dict, masks: dict, rois: dict | None,
                   exclusion) -> tuple[dict, dict, dict | None]:
    """The pairs less those ``data.exclude`` names a file of (``gone``: their ids; an id written in
    another Unicode form counts as the same), each left out recorded by its image."""
    gone = gone | {unicodedata.normalize("NFC", key) for key in gone}
    out = lambda files: {k: p for k, p in files.items()  # noqa: E731
                         if k not in gone and unicodedata.normalize("NFC", k) not in gone}
    for key, path in images.items():
        if key in gone or unicodedata.normalize("NFC", key) in gone:
            exclusion.note_sample(path)
    for path in dropped_images.values():
        exclusion.note_sample(path)
    return out(images), out(masks), out(rois) if rois is not None else None


def files_by_key(folder: Path, pattern: str | None, exclusion=None, dropped: dict | None = None) -> dict[str, Path]:
    """The image files of ``folder`` by the id each pairs by; files the pattern misses, or two of
    one id, refused. ``exclusion`` (data.exclude): files it names are left out, their ids put in
    ``dropped`` (their pairs' other files go too)."""
    if not folder.is_dir():
        return {}
    files = image_files(folder)
    out = {}
    unmatched = []
    if exclusion is not None:
        named = [p for p in files if exclusion.matches(p, ids=[k for k in (file_key(p, pattern),) if k])]
        for p in named:
            if dropped is not None and (key := file_key(p, pattern)) is not None:
                dropped.setdefault(key, p)
        left_out = set(named)
        files = [p for p in files if p not in left_out]
    for p in files:
        key = file_key(p, pattern)
        if key is None:
            unmatched.append(p.name)
            continue
        if key in out:
            raise DataError(f"two files in '{folder}' share the id '{key}': {out[key].name} and {p.name}")
        out[key] = p
    if unmatched:  # never left out unseen: a typo in the pattern would drop pairs
        raise DataError(f"data.pattern '{pattern}' does not match {len(unmatched)} of the {len(files)} image files in "
                        f"'{folder}' ({first_few(unmatched, quoted=True)}"
                        "): it must give every file its id (its first group); fix the pattern, or move the other "
                        "files out")
    return out
