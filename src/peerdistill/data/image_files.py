"""Classification data from image files: a class-per-folder tree, or a CSV/TSV of path,label."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..config import DataSpec
from ..errors import DataError
from .segmentation import IMAGE_SUFFIXES, read_image
from .splits import DataSplits

SPLITS = ("train", "val", "test")


def load_image_folder(spec: DataSpec, stats=None) -> DataSplits:
    """``root/<class>/<image>``; or ``root/{train,val,test}/<class>/<image>`` for given splits.
    Class names are the folder names, sorted."""
    root = Path(spec.root or "")
    if not root.is_dir():
        raise DataError(f"data.root '{root}' is not a directory")
    if all((root / s).is_dir() for s in SPLITS):
        classes = sorted({d.name for s in SPLITS for d in _class_folders(root / s)})
        parts = {s: _list_class_tree(root / s, classes) for s in SPLITS}
        _check_every_class_has_images(classes, [label for files, labels in parts.values() for label in labels], root)
        return _given_splits(parts, classes, spec, stats, source=str(root))
    classes = sorted(d.name for d in _class_folders(root))
    files, labels = _list_class_tree(root, classes)
    _check_every_class_has_images(classes, labels, root)
    return _stratified(files, labels, classes, spec, stats, source=str(root))


def _class_folders(folder: Path) -> list[Path]:
    """Sub-folders, hidden ones (.ipynb_checkpoints, .git) left out."""
    return [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]


def _check_every_class_has_images(classes: list[str], labels: list[int], root: Path) -> None:
    present = set(labels)
    empty = [c for i, c in enumerate(classes) if i not in present]
    if empty:
        raise DataError(f"class folder(s) {empty} under '{root}' hold no images, so they would be classes with "
                        "no samples: remove them or add their images")


def load_csv(spec: DataSpec, stats=None) -> DataSplits:
    """A CSV or TSV with a header; ``path_column`` (relative to the file's folder) and
    ``label_column``; an optional ``split`` column (train/val/test) gives the splits."""
    path = Path(spec.root or "")
    if not path.is_file():
        raise DataError(f"data.root '{path}' is not a file: point it at the CSV/TSV of images and labels")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        sample = fh.read(4096)
        fh.seek(0)
        delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
        rows = list(csv.DictReader(fh, delimiter=delimiter))
    if not rows:
        raise DataError(f"'{path}' has no rows")
    for column in (spec.path_column, spec.label_column):
        if column not in rows[0]:
            raise DataError(f"'{path}' has no column '{column}' (columns: {list(rows[0])}); "
                            "set data.path_column / data.label_column")
    for line, row in enumerate(rows, start=2):
        if not row.get(spec.path_column) or not row.get(spec.label_column):
            raise DataError(f"'{path}' line {line}: the {spec.path_column} or {spec.label_column} field is empty")
    raw_labels = [r[spec.label_column].strip() for r in rows]
    numeric = all(lab.lstrip("-").isdigit() for lab in raw_labels)
    classes = sorted(set(raw_labels), key=int if numeric else str)
    index = {c: i for i, c in enumerate(classes)}
    files = [path.parent / r[spec.path_column].strip() for r in rows]
    labels = [index[lab] for lab in raw_labels]
    if "split" in rows[0]:
        parts = {s: ([], []) for s in SPLITS}
        for f, lab, r in zip(files, labels, rows):
            split = r["split"].strip().lower()
            if split not in parts:
                raise DataError(f"'{path}': split '{r['split']}' for {f.name}; use train, val or test")
            parts[split][0].append(f)
            parts[split][1].append(lab)
        return _given_splits(parts, classes, spec, stats, source=str(path))
    return _stratified(files, labels, classes, spec, stats, source=str(path))


def _list_class_tree(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for i, name in enumerate(classes):
        d = folder / name
        if not d.is_dir():
            continue
        found = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [i] * len(found)
    if not files:
        raise DataError(f"no images under '{folder}': expected one folder per class holding PNG/JPEG/TIFF files")
    return files, labels


def _read_all(files: list[Path], spec: DataSpec) -> np.ndarray:
    images = [read_image(f, spec.image_size, grey=spec.grey) for f in files]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(f"images differ in size ({sorted(shapes)[:3]}...): set data.image_size=[H, W] to resize them")
    return np.stack(images)


def _given_splits(parts, classes, spec, stats, source) -> DataSplits:
    arrays = []
    for s in SPLITS:
        files, labels = parts[s]
        if not files:
            raise DataError(f"{source}: the {s} split is empty")
        arrays += [_read_all(files, spec), np.asarray(labels)]
    splits = DataSplits.from_arrays(*arrays, class_names=classes, stats=stats)
    splits.info.update(source=source, splits="given")
    return splits


def _stratified(files, labels, classes, spec, stats, source) -> DataSplits:
    x = _read_all(files, spec)
    splits = DataSplits.stratified(x, np.asarray(labels), val_fraction=spec.val_fraction,
                                   test_fraction=spec.test_fraction, seed=spec.split_seed, class_names=classes,
                                   stats=stats)
    splits.info.update(source=source, splits=f"stratified, seed {spec.split_seed}")
    return splits
