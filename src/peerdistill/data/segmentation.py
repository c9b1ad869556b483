"""Segmentation data: the synthetic default and image/mask folder pairs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..config import DataSpec
from ..errors import DataError
from .splits import DataSplits, TensorData, channel_stats, standardize, to_nchw
from .synthetic import make_shapes

IGNORE = 255
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"}


def segmentation_splits(images: list, masks: list, *, num_classes: int | None = None,
                        class_names: list[str] | None = None, stats=None) -> DataSplits:
    """Three (images, masks) pairs for train, val, test. Images [N, H, W(, C)] or [N, C, H, W];
    masks [N, H, W] integers 0..K-1, or 255 for pixels that count nowhere."""
    xs = [to_nchw(x, name) for x, name in zip(images, ("train", "val", "test"))]
    ms = [to_masks(m, name) for m, name in zip(masks, ("train", "val", "test"))]
    for x, m, name in zip(xs, ms, ("train", "val", "test")):
        if len(x) != len(m) or tuple(x.shape[-2:]) != tuple(m.shape[-2:]):
            raise DataError(f"{name}: images {tuple(x.shape)} and masks {tuple(m.shape)} differ in number or size")
    seen = max(int(m[m != IGNORE].max()) for m in ms if (m != IGNORE).any()) + 1
    k = num_classes or max(seen, 2)
    if seen > k:
        raise DataError(f"masks hold class {seen - 1} but num_classes is {k}: mask values must be 0..{k - 1} (or 255)")
    names = list(class_names) if class_names else (["background", "foreground"] if k == 2 else [str(c) for c in range(k)])
    stats = stats or channel_stats(xs[0])
    xs = [standardize(x, stats) for x in xs]
    return DataSplits(*(TensorData(x, m) for x, m in zip(xs, ms)), num_classes=k, class_names=names,
                      input_shape=tuple(xs[0].shape[1:]), stats=stats)


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


def load_folders(spec: DataSpec, stats=None) -> DataSplits:
    """``root/images/*`` and ``root/masks/*`` (and ``root/<roi>/*``) matched by id. Splits: the
    folders named in ``split_dirs`` (a missing val is cut from train by ``split_seed``), or
    ``root/{train,val,test}`` when they exist, or else a random split by ``split_seed``."""
    root = Path(spec.root or "")
    if not root.is_dir():
        raise DataError(f"data.root '{root}' is not a directory")
    dirs = dict(spec.split_dirs or {})
    if not dirs and all((root / s).is_dir() for s in ("train", "val", "test")):
        dirs = {"train": "train", "val": "val", "test": "test"}
    rng = np.random.default_rng(spec.split_seed)
    if dirs:
        missing = [s for s in ("train", "test") if s not in dirs]
        if missing:
            raise DataError(f"data.split_dirs needs at least train and test folders, missing {missing}")
        parts = {s: read_pairs(root / d, spec) for s, d in dirs.items()}
        if "val" not in parts:
            parts["train"], parts["val"] = _cut(parts["train"], spec.val_fraction, rng)
        parts = [parts[s] for s in ("train", "val", "test")]
    else:
        whole = read_pairs(root, spec)
        rest, test = _cut(whole, spec.test_fraction, rng)
        train, val = _cut(rest, spec.val_fraction / (1 - spec.test_fraction), rng)
        parts = [train, val, test]
    splits = segmentation_splits([p[0] for p in parts], [p[1] for p in parts], num_classes=spec.num_classes,
                                 class_names=spec.class_names, stats=stats)
    splits.info.update(source=str(root), split_seed=spec.split_seed,
                       files={s: p[2] for s, p in zip(("train", "val", "test"), parts)})
    return splits


def _cut(part, fraction: float, rng: np.random.Generator):
    """Split (images, masks, names) into (rest, cut) with ``fraction`` of the items in the cut."""
    images, masks, names = part
    n = len(images)
    k = max(1, round(n * fraction))
    if n - k < 1:
        raise DataError(f"{n} image/mask pairs are too few to split off {fraction:.0%}")
    order = rng.permutation(n)
    pick = lambda idx: (images[idx], masks[idx], [names[i] for i in idx])  # noqa: E731
    return pick(np.sort(order[k:])), pick(np.sort(order[:k]))


def read_pairs(root: Path, spec: DataSpec) -> tuple[np.ndarray, np.ndarray, list[str]]:
    image_dir, mask_dir = root / spec.images, root / spec.masks
    for d in (image_dir, mask_dir):
        if not d.is_dir():
            raise DataError(f"'{d}' is not a directory: set data.images / data.masks to the folder names under data.root")
    images = _by_key(image_dir, spec.pattern)
    masks = _by_key(mask_dir, spec.pattern)
    rois = _by_key(root / spec.roi, spec.pattern) if spec.roi else None
    if spec.roi and not (root / spec.roi).is_dir():
        raise DataError(f"'{root / spec.roi}' is not a directory: data.roi names the folder of region masks")
    unmatched_images, unmatched_masks = sorted(set(images) - set(masks)), sorted(set(masks) - set(images))
    if unmatched_images or unmatched_masks:
        raise DataError(
            f"image and mask names do not pair up in '{root}': images without a mask {unmatched_images[:5]}, "
            f"masks without an image {unmatched_masks[:5]} (names are matched by {spec.pattern or 'file stem'})"
        )
    if not images:
        raise DataError(f"no images found in '{image_dir}' (looked for {sorted(IMAGE_SUFFIXES)})")
    keys = sorted(images)
    xs, ms = [], []
    for key in keys:
        x = read_image(images[key], spec.image_size, grey=spec.grey)
        m = read_mask(masks[key], spec.image_size, spec.binary_masks)
        if x.shape[:2] != m.shape:
            raise DataError(f"image '{images[key].name}' is {x.shape[1]}x{x.shape[0]} but its mask "
                            f"'{masks[key].name}' is {m.shape[1]}x{m.shape[0]}: they must be the same size")
        if rois is not None:
            if key not in rois:
                raise DataError(f"no region-of-interest mask for '{images[key].name}' in '{root / spec.roi}'")
            region = read_mask(rois[key], spec.image_size, binary=True)
            if region.shape != m.shape:
                raise DataError(f"region mask '{rois[key].name}' is not the size of its image")
            m = np.where(region > 0, m, IGNORE).astype(np.uint8)
        xs.append(x)
        ms.append(m)
    if len({x.shape for x in xs}) > 1:
        raise DataError(f"images in '{image_dir}' differ in size: set data.image_size=[H, W] to resize them")
    masks_array = np.stack(ms)
    if not spec.binary_masks and (masks_array == IGNORE).any() and not ((masks_array > 0) & (masks_array != IGNORE)).any():
        # only 0 and 255: binary masks read as "background + ignored", which would train on nothing
        raise DataError(f"the masks in '{mask_dir}' hold only 0 and 255: for 0/255 masks set data.binary_masks=true "
                        "(255 is otherwise the label of ignored pixels)")
    return np.stack(xs), masks_array, keys


def _by_key(folder: Path, pattern: str | None) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    out = {}
    for p in files:
        if pattern:
            match = re.search(pattern, p.name)
            if not match:
                continue
            key = match.group(1) if match.groups() else match.group(0)
        else:
            key = p.stem
        if key in out:
            raise DataError(f"two files in '{folder}' share the id '{key}': {out[key].name} and {p.name}")
        out[key] = p
    return out


def read_image(path: Path, size=None, grey: bool = False) -> np.ndarray:
    """[H, W, C] float32, in [0, 1] for 8- and 16-bit images. 8-bit images are divided by 255,
    16-bit grey ones by 65535, and so are 32-bit integer ones (Pillow opens many 16-bit files
    that way): a fixed scale, never an image's own maximum, so images stay comparable. Float
    images are kept as they are. (Pillow reads 16-bit colour images as 8-bit.)"""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                if size:
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                a = np.asarray(im).astype(np.float32)
                if im.mode.startswith("I"):
                    a = a / 65535.0
                a = a[..., None]
                return a if grey else np.repeat(a, 3, axis=-1)
            im = im.convert("L" if grey else "RGB")
            if size:
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
            return a[..., None] if grey else a
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image '{path}': {exc}") from None


def read_mask(path: Path, size=None, binary: bool = False) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if size:
                im = im.resize((size[1], size[0]), Image.NEAREST)
            a = np.asarray(im.convert("L") if im.mode not in ("L", "P", "I", "I;16", "1") else im)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read mask '{path}': {exc}") from None
    if a.ndim == 3:
        a = a[..., 0]
    if binary:
        return (a > 127).astype(np.uint8) if a.max() > 1 else a.astype(np.uint8)
    values = np.unique(a)
    if values[values != IGNORE].max(initial=0) > 50:  # label images hold small class indices (255 = ignore)
        raise DataError(
            f"mask '{path.name}' holds values {values[:8].tolist()}{'...' if len(values) > 8 else ''}: masks must "
            "be label images with class indices 0..K-1; for 0/255 masks set data.binary_masks=true"
        )
    return a.astype(np.uint8)
