"""Detection datasets named in a config: the embedded synthetic boxes, COCO-style JSON, per-image
box JSON (Kvasir-SEG's layout) and boxes from masks; all become in-memory splits whose
targets are [N, M, 5] rows (label, x1, y1, x2, y2) padded with label -1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import DataSpec
from ..errors import DataError
from ..sample_names import SPLITS
from .detection import (NamedBoxes, check_labels, detection_cut, load_box_json, load_coco, load_mask_boxes,
                        pad_targets, split_order, synthetic_boxes, warn_of_val_without_boxes)
from .exclusion import exclusion_of
from .splits import DataSplits, TensorData, channel_stats, consecutive_parts, is_kept_whole, standardize

DEFAULT_SYNTHETIC_SIZE = 64


def load_detection(spec: DataSpec, stats=None) -> DataSplits:
    if spec.kind == "boxes":
        return _synthetic(spec, stats)
    root = Path(spec.root or "")
    if not root.is_dir():
        raise DataError(f"data.root '{root}' is not a folder: point it at the folder holding the images")
    size = tuple(spec.image_size or (256, 256))
    info: dict = {"source": str(root)}
    whole = is_kept_whole()  # scored as one set (eval --split all): every image in the test split
    indices: dict[str, list[int]] = {}

    def order(n: int) -> list[int]:
        """A random split fixed by split_seed (boxes have no single label to stratify by), cut from
        the number of images before any is decoded: the files are read split after split."""
        indices.update(detection_cut(n, spec.val_fraction, spec.test_fraction, spec.split_seed, spec.folds,
                                     spec.fold))
        return split_order(indices)

    # grey: Pillow's luma conversion, as predict reads images
    common = {"grey": spec.grey, "dicom_window": spec.dicom_window, "order": None if whole else order,
              "exclusion": exclusion_of(spec)}
    original_sizes: list = []  # (boxes from masks: unknown, the masks are resized before their boxes are taken)
    if spec.kind == "coco":
        x, y, names, ids, extra = load_coco(root / spec.images, _relative(root, spec.annotations), size,
                                            bad_boxes=spec.bad_boxes, original_sizes=original_sizes, **common)
        info.update(extra)
    elif spec.kind == "box_json":
        x, y, names, ids, extra = load_box_json(root / spec.images, _relative(root, spec.annotations), size,
                                                bad_boxes=spec.bad_boxes, original_sizes=original_sizes, **common)
        info.update(extra)
    else:
        x, y, names, ids = load_mask_boxes(root / spec.images, root / spec.masks, size,
                                           class_name=(spec.class_names or ["object"])[0], pattern=spec.pattern,
                                           named=(root, spec.images, spec.masks), **common)
    x, y = torch.as_tensor(np.asarray(x), dtype=torch.float32), torch.as_tensor(np.asarray(y), dtype=torch.float32)
    check_labels(y, names)
    sizes = original_sizes or [None] * len(ids)
    if whole:
        info.update(split="whole (scored as one set)", files={"test": [str(i) for i in ids]})
        return _splits([(x[:0], y[:0]), (x[:0], y[:0]), (x, y)], names, stats or channel_stats(x), info,
                       named=([], [], ids), sizes=([], [], sizes), exclude=spec.exclude)
    lengths = [len(indices[k]) for k in SPLITS]  # (x, y and ids: read split after split, in split order)
    xs, ys, id_parts, size_parts = (consecutive_parts(a, lengths) for a in (x, y, ids, sizes))
    warn_of_val_without_boxes(ys[1])
    cut = {"fold": spec.fold, "folds": spec.folds} if spec.folds else {"test_fraction": spec.test_fraction}
    info["cut_from_one_set"] = True
    info["split"] = {"seed": spec.split_seed, "val_fraction": spec.val_fraction, **cut,
                     **{k: [str(i) for i in part] for k, part in zip(SPLITS, id_parts)}}
    return _splits(list(zip(xs, ys)), names, stats, info, named=id_parts, sizes=size_parts, exclude=spec.exclude)


def _synthetic(spec: DataSpec, stats) -> DataSplits:
    """Three independently generated sets (seeds 3 * split_seed, +1, +2: no two split seeds
    share a set) of the counts asked for."""
    size = tuple(spec.image_size) if spec.image_size else DEFAULT_SYNTHETIC_SIZE
    sets, names = [], None
    for offset, n in enumerate(spec.boxes_counts):
        x, y, names = synthetic_boxes(n=n, image_size=size, seed=3 * spec.split_seed + offset)
        sets.append((torch.as_tensor(np.asarray(x), dtype=torch.float32),
                     torch.as_tensor(np.asarray(y), dtype=torch.float32)))
    return _splits(sets, names, stats, {"source": "synthetic boxes (peerdistill.data.detection.synthetic_boxes)",
                                        "split_seed": spec.split_seed})


def _splits(sets, names, stats, info, named=None, sizes=None, exclude=None) -> DataSplits:
    """Pad every split's targets to one box count and standardise images by the training split.
    ``named``: each split's image names (data.exclude's names for them), ``sizes`` their original
    (width, height): the splits are then ``NamedBoxes``, which warnings about some images name."""
    most = max(int(y.shape[1]) for _, y in sets)
    padded = [(x, pad_targets(list(y), min_boxes=most)) for x, y in sets]
    stats = stats or channel_stats(padded[0][0])
    data = [TensorData(standardize(x, stats, in_place=True), y) for x, y in padded]  # (the loaders' own arrays)
    if named is not None:
        data = [NamedBoxes(part.x, part.y, list(ids), exclude, part_sizes)
                for part, ids, part_sizes in zip(data, named, sizes, strict=True)]
    return DataSplits(*data, num_classes=len(names), class_names=list(names), input_shape=tuple(data[0].x.shape[1:]),
                      stats=stats, info=info)


def _relative(root: Path, path: str | None) -> Path:
    p = Path(path or "")
    return p if p.is_absolute() else root / p
