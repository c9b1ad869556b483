"""Classification data from image files: a class-per-folder tree, or a CSV/TSV of path,label."""

from __future__ import annotations

import contextlib
import contextvars
import csv
import os
import re
from pathlib import Path, PureWindowsPath

import numpy as np

from ..config import DataSpec
from ..errors import DataError, SplitError, warn_user
from ..run_files import COMPARISON_TABLES, RUN_FILE
from ..sample_names import SPLITS
from ..wording import first_few
from .exclusion import Exclusion, exclusion_of
from .image_io import IMAGE_SUFFIXES, check_root_folder, entry_is, image_files, is_link_loop, read_images
from .splits import (DataSplits, check_groups_in_one_split, consecutive_parts, cut_marks, group_cut, group_fold_mark,
                     group_ids, group_val_cut, is_kept_whole, refuse_folds, share_count, stratified_cut,
                     stratified_group_cut, switched_on)



def load_image_folder(spec: DataSpec, stats=None) -> DataSplits:
    """``root/<class>/<image>``; or ``root/{train,val,test}/<class>/<image>`` for given splits
    (without ``val``, it is cut from train, stratified by ``split_seed``). Class names are the
    folder names, sorted as text (as runs made before have them: "10" before "2")."""
    root = Path(spec.root or "")
    check_root_folder(root, spec.kind)
    exclusion = exclusion_of(spec)
    given = [s for s in SPLITS if (root / s).is_dir()]
    if given and ("train" in given and "test" in given or is_kept_whole()):
        classes = sorted({d.name for s in given for d in _class_folders(root / s)})
        _warn_if_images_beside_masks(classes, root)
        parts = {s: _list_class_tree(root / s, classes, exclusion) for s in given}
        if is_kept_whole():  # scored as one set: whichever split folders there are, joined
            return _stratified(*_joined(parts), classes, spec, stats, source=str(root))
        refuse_folds(spec.folds, f"'{root}' (its {'/, '.join(given)}/ folders)")
        _check_every_class_has_images(classes, parts["train"][1], root / "train", exclusion)
        groups = _groups_by_split(parts, spec, str(root))
        if "val" not in parts:
            return _val_cut_from_train(parts, classes, spec, stats, source=str(root), groups=groups)
        return _given_splits(parts, classes, spec, stats, source=str(root), groups=groups)
    if given:
        raise DataError(f"'{root}' holds split folder(s) {given} but not both train and test: give train/ and "
                        "test/ (val/ is cut from train when missing), or one folder per class")
    classes = sorted(d.name for d in _class_folders(root))
    _warn_if_images_beside_masks(classes, root)
    files, labels = _list_class_tree(root, classes, exclusion)
    if not is_kept_whole():  # a set scored whole (eval --split all) need not hold every class
        _check_every_class_has_images(classes, labels, root, exclusion)
    return _stratified(files, labels, classes, spec, stats, source=str(root))


def _class_folders(folder: Path, classes: bool = True) -> list[Path]:
    """Sub-folders, hidden ones (.ipynb_checkpoints, .git) left out; as ``classes``, a link to a
    folder that is not there (a class on a drive not mounted) refused, not left out with its
    class (review 51l)."""
    entries = [d for d in folder.iterdir() if not d.name.startswith(".")]
    # (a dangling link tells not whether it was a folder: any is refused, review 51m)
    gone = sorted(d for d in entries if d.is_symlink() and not d.exists())
    if gone and classes:
        loops = [d for d in gone if is_link_loop(d)]  # (a link round a cycle is no missing folder)
        what = ("in a loop, leading back to themselves" if len(loops) == len(gone) else
                f"to what does not exist ({len(gone) - len(loops)}) or in a loop ({len(loops)})" if loops else
                "to what does not exist")
        fix = "point them at the class folders" if len(loops) == len(gone) else "mount or copy what they point to"
        raise DataError(f"'{folder}' holds {len(gone)} symbolic link(s) {what} "
                        f"({', '.join(repr(f'{d.name} -> {os.readlink(d)}') for d in gone[:3])}): a class folder "
                        f"among them would be left out; {fix}, or remove the links")
    return [d for d in entries if d.is_dir() and not (classes and _holds_runs(d))]


def _holds_runs(folder: Path) -> bool:
    """Whether ``folder`` is, or holds at its first level, a run's or a comparison's folder: an
    out_dir kept inside the data (runs/ beside the class folders, review 56m: read as a class
    'runs' without images, the next run and eval were refused), which the data's fingerprint
    leaves out too."""
    marks = (RUN_FILE, COMPARISON_TABLES[0])
    if any((folder / mark).is_file() for mark in marks):
        return True
    with os.scandir(folder) as entries:  # (no stat per file: a class folder may hold thousands of images)
        subs = [entry.path for entry in entries if not entry.name.startswith(".") and entry_is(entry, "dir")]
    return any(os.path.isfile(os.path.join(sub, mark)) for sub in subs for mark in marks)


# A class folder by one of these names is a segmentation dataset's image folder (Kvasir-SEG:
# images/ beside masks/): read as classes, the models would learn to tell pictures from masks.
_IMAGE_FOLDER_NAMES = {"images", "image", "imgs", "img"}


def _warn_if_images_beside_masks(classes: list[str], root: Path) -> None:
    if len(classes) > 1 and any(c.casefold() in _IMAGE_FOLDER_NAMES for c in classes):
        warn_user(f"'{root}' has class folders {classes}: they look like a segmentation dataset's images and "
                  "masks, which image_folder reads as classes (the models then learn to tell a picture from "
                  "a mask): to train segmentation, set task: segmentation and data.kind: folders "
                  "(docs/segmentation.md)")


def _check_every_class_has_images(classes: list[str], labels: list[int], where: Path,
                                  exclusion: Exclusion | None = None) -> None:
    """Every class must have training images: one found only in val or test (say ``Normal``
    beside ``NORMAL``) could never be learnt. (One whose every image data.exclude left out is
    said so: review 56g was told to add its images.)"""
    present = set(labels)
    empty = [c for i, c in enumerate(classes) if i not in present]
    emptied = [c for c in empty if exclusion is not None and str(where / c) in exclusion.emptied]
    if emptied:
        them = "it" if len(emptied) == 1 else "them"
        raise SplitError(f"data.exclude leaves no image of class(es) {emptied} in '{where}'",
                         f"they would be classes the models never learn: keep some of their images (remove the "
                         f"patterns naming {them} from data.exclude), or, to leave the class out, remove its folder "
                         "from the data")
    if empty:
        trained = [c for i, c in enumerate(classes) if i in present]
        alike = [f"'{c}' beside '{t}'" for c in empty for t in trained if c.casefold() == t.casefold()]
        hint = f" ({', '.join(alike)}: names differing only in case are different classes)" if alike else ""
        raise SplitError(f"class(es) {empty} have no images in '{where}'{hint}", "they would be classes the models "
                         "never learn: remove them, fix their names, or add their images")



# Header names a table of images and labels often uses, most telling first.
_PATH_NAMES = ("path", "filepath", "file", "filename", "image", "image_path", "img", "name", "id")
_LABEL_NAMES = ("label", "class", "target", "diagnosis", "category", "y")


def _likely_column(columns: list[str], key: str, first_row: dict) -> str | None:
    """The column a table likely means by its path or label, by its header (a path column also
    by a value with an image suffix)."""
    lowered = {c.strip().lower(): c for c in columns if c}
    for name in (_PATH_NAMES if key == "path_column" else _LABEL_NAMES):
        if name in lowered:
            return lowered[name]
    if key == "path_column":
        return next((c for c in columns if c and Path(str(first_row.get(c, ""))).suffix.lower() in IMAGE_SUFFIXES),
                    None)
    return None

def _rows_and_lines(lines, delimiter: str):
    """Each row of a CSV under its header, as ``csv.DictReader`` gives it (the fields past the
    header's under None, missing ones None), and the file line it starts on: blank lines are
    skipped and a quoted field may span lines, so neither the row's number nor the line it ends
    on is the line a message must name."""
    reader = csv.reader(lines, delimiter=delimiter)
    header = None
    while True:
        start = reader.line_num + 1
        fields = next(reader, None)
        if fields is None:
            return
        if not fields:  # a blank line
            continue
        if header is None:
            header = fields
            continue
        row: dict = dict.fromkeys(header)
        row.update(zip(header, fields))
        if len(fields) > len(header):
            row[None] = fields[len(header):]
        yield row, start


def load_csv(spec: DataSpec, stats=None) -> DataSplits:
    """A CSV or TSV with a header; ``path_column`` (relative to the file's folder) and
    ``label_column``; an optional ``split`` column (train/val/test) gives the splits."""
    path = Path(spec.root or "")
    if not path.is_file():
        raise DataError(f"data.root '{path}' is not a file: point it at the CSV/TSV of images and labels")
    rows, lines, delimiter = _read_table(path)
    if not rows:
        raise DataError(f"'{path}' has no rows")
    exclusion = exclusion_of(spec)
    if exclusion is not None and spec.path_column in rows[0]:  # (data.exclude: rows of the files it names go first)
        kept = [(row, line) for row, line in zip(rows, lines) if not (
            isinstance(row.get(spec.path_column), str) and row[spec.path_column].strip()
            and exclusion.left_out(_listed_path(path, row[spec.path_column])))]
        if not kept:
            raise DataError(f"data.exclude leaves none of the rows of '{path}': keep some, or remove patterns from it")
        rows, lines = [row for row, _ in kept], [line for _, line in kept]
    missing = [(column, key) for column, key in ((spec.path_column, "path_column"), (spec.label_column, "label_column"))
               if column not in rows[0]]
    if missing:
        guesses = [(key, _likely_column(list(rows[0]), key, rows[0])) for _, key in missing]
        fix = (" ".join(f"data.{key}={guess}" for key, guess in guesses) if all(g for _, g in guesses)
               else "data.path_column / data.label_column to the columns that hold them")
        raise DataError(f"'{path}' has no column {' nor '.join(repr(c) for c, _ in missing)} (columns: "
                        f"{list(rows[0])}); set {fix}")
    if spec.group_column and spec.group_column not in rows[0] and not is_kept_whole():  # (whole: not split)
        raise DataError(f"'{path}' has no column '{spec.group_column}' (data.group_column; columns: {list(rows[0])})")
    for line, row in zip(lines, rows):
        if None in row:  # csv puts the fields past the header's under None: a comma unquoted shifted them
            raise DataError(f"'{path}' line {line} has {len(row) - 1 + len(row[None])} fields, the header "
                            f"{len(row) - 1}: quote a field that holds a '{delimiter}'")
        if not row.get(spec.path_column) or not row.get(spec.label_column):
            raise DataError(f"'{path}' line {line}: the {spec.path_column} or {spec.label_column} field is empty")
        if any("\n" in (row.get(c) or "") for c in (spec.path_column, spec.label_column)):
            raise DataError(f"'{path}' line {line}: a {spec.path_column} or {spec.label_column} field spans "
                            "several lines (an unbalanced quote?): quote whole fields or none")
    raw_labels = [r[spec.label_column].strip() for r in rows]
    numeric = all(lab.lstrip("-").isdigit() for lab in raw_labels)
    classes = sorted(set(raw_labels), key=int if numeric else str)
    index = {c: i for i, c in enumerate(classes)}
    files = [_listed_path(path, r[spec.path_column]) for r in rows]
    _check_listed_files_exist(files, [r[spec.path_column].strip() for r in rows], lines, path, spec.path_column)
    _check_listed_once(files, raw_labels, lines, path)
    labels = [index[lab] for lab in raw_labels]
    groups = _groups_of_rows(rows, lines, spec, path)
    if "split" in rows[0]:
        parts = {s: ([], []) for s in SPLITS}
        column_groups: dict[str, list[str]] = {s: [] for s in SPLITS}
        for i, (f, lab, r) in enumerate(zip(files, labels, rows)):
            split = r["split"].strip().lower()
            if split not in parts:
                raise DataError(f"'{path}': split '{r['split']}' for {f.name}; use train, val or test")
            parts[split][0].append(f)
            parts[split][1].append(lab)
            if groups is not None:
                column_groups[split].append(groups[i])
        if is_kept_whole():
            return _stratified(*_joined(parts), classes, spec, stats, source=str(path))
        refuse_folds(spec.folds, f"'{path}' (its split column)")
        _check_every_class_has_images(classes, parts["train"][1], Path(f"{path} (split train)"))
        groups_by_split = _groups_by_split(parts, spec, str(path), column_groups if groups is not None else None)
        if not parts["val"][0] and parts["train"][0] and parts["test"][0]:  # as image_folder's train/ and test/
            return _val_cut_from_train(parts, classes, spec, stats, source=str(path), groups=groups_by_split)
        return _given_splits(parts, classes, spec, stats, source=str(path), groups=groups_by_split)
    return _stratified(files, labels, classes, spec, stats, source=str(path), groups=groups)


# Column names that say a patient (or a study, a case) holds several rows: split by them or not
# at all, its images fall on both sides of the split. A patient's attributes (age, sex, a date)
# repeat too, but grouping by them is no patient split.
_GROUP_LIKE = re.compile(r"patient|subject|case|study|accession|mrn|participant|individual", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"age|sex|gender|date|time|year|type|view|position|modality|weight|height|size|diagnos",
                        re.IGNORECASE)


def _groups_of_rows(rows: list[dict], lines: list[int], spec: DataSpec, path: Path) -> list[str] | None:
    """Each row's group by ``data.group_column`` (None without one, after a warning where a
    column looks like one and its ids repeat; None too for a set scored whole without it)."""
    if spec.group_column not in rows[0]:  # (none named, or a set scored whole: load_csv checked)
        _warn_of_group_like_columns(rows, spec, path)
        return None
    groups = [(r.get(spec.group_column) or "").strip() for r in rows]
    empty = [line for line, g in zip(lines, groups) if not g]
    if empty:
        raise DataError(f"'{path}' line {empty[0]}: the {spec.group_column} field (data.group_column) is empty"
                        f"{f' (and on {len(empty) - 1} more lines)' if len(empty) > 1 else ''}: give every image "
                        "its group")
    _warn_of_ids_written_two_ways(groups, spec.group_column, path)
    return groups


def _warn_of_ids_written_two_ways(groups: list[str], column: str, path: Path) -> None:
    """Ids that are one patient's written two ways (``7`` and ``007`` or ``7.0``, as spreadsheets
    re-export numbers; ``P7`` and ``p7``) are two groups, whose images can fall on both sides."""
    spellings: dict[str, set[str]] = {}
    for group in dict.fromkeys(groups):  # (in the table's order: the same examples every time)
        spellings.setdefault(_id_as_compared(group), set()).add(group)
    twice = [sorted(written) for written in spellings.values() if len(written) > 1]
    if twice:
        examples = "; ".join(" and ".join(repr(g) for g in written) for written in twice[:3])
        warn_user(f"'{path}': {len(twice)} {column} id(s) are written more than one way ({examples}), and each way "
                  "is a group of its own, so one patient's images may fall in training and in test: write each id "
                  "one way")


def _id_as_compared(group: str) -> str:
    """An id as a spreadsheet's re-export may have changed it: a whole number without its
    zeros in front or its '.0' behind, letters in one case."""
    if group.isdigit():  # (exactly, however long: an accession number is no float)
        return str(int(group))
    try:
        number = float(group)
    except ValueError:
        return group.casefold()
    return str(int(number)) if number.is_integer() and abs(number) < 2 ** 53 else group


def _warn_of_group_like_columns(rows: list[dict], spec: DataSpec, path: Path) -> None:
    """A column named like a patient's id whose values repeat, read by nothing, while the set is
    split at random: one patient's images can fall in training and in test."""
    if spec.group_column or spec.group_pattern or "split" in rows[0] or is_kept_whole():
        return
    read = {spec.path_column, spec.label_column}
    likely = [c for c in rows[0] if c and c not in read and _GROUP_LIKE.search(c) and not _ATTRIBUTE.search(c)
              and len({(r.get(c) or "").strip() for r in rows}) < len(rows)]
    if likely:
        one = len(likely) == 1
        warn_user(f"'{path}' has {'a column' if one else 'columns'} {first_few(likely, quoted=True)} that "
                  f"{'repeats' if one else 'repeat'} ids, a patient's say, and {'is' if one else 'are'} read by "
                  "nothing: the split may put one patient's images in "
                  f"training and in test; set data.group_column={likely[0]} (the column naming each patient) to "
                  "keep each whole")



def _joined(parts: dict[str, tuple[list, list]]) -> tuple[list, list]:
    """The files and labels of every given split, as one set (``eval --split all``)."""
    return [f for files, _ in parts.values() for f in files], [lab for _, labels in parts.values() for lab in labels]


def _read_table(path: Path) -> tuple[list[dict], list[int], str]:
    """A CSV's or TSV's rows under its header, the line each starts on, and its delimiter."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
            rows, lines = [], []
            for row, line in _rows_and_lines(fh, delimiter):
                rows.append(row)
                lines.append(line)
    except UnicodeDecodeError:
        raise DataError(f"'{path}' is not UTF-8 text: save the table as UTF-8 CSV or TSV") from None
    return rows, lines, delimiter


def _check_listed_files_exist(files: list[Path], written: list[str], lines: list[int], table: Path,
                              column: str) -> None:
    """Rows naming files that are not there, refused in one message: each by its line and its path
    as written, in the table's order; where none is there, the likely cause (paths are read from
    the table's folder, and were written from another)."""
    gone = [(line, said, f) for f, said, line in zip(files, written, lines) if not os.path.lexists(f)]
    if not gone:
        return
    shown = ", ".join(f"line {line} '{said}'" for line, said, _ in gone[:SHOWN_ROWS])
    more = f" and {len(gone) - SHOWN_ROWS} more" if len(gone) > SHOWN_ROWS else ""
    if len(gone) < len(files):
        raise DataError(f"'{table}' lists {len(gone)} of {len(files)} files that do not exist ({shown}{more}): "
                        "restore those files, or delete their rows from the table")
    line, said, looked = gone[0]
    folder = table.parent if str(table.parent) not in ("", ".") else Path(".")
    raise DataError(f"'{table}' lists {len(files)} files and none exists ({shown}{more}): the {column} column is "
                    f"read relative to the table's folder '{folder}' (line {line}'s file is looked for at "
                    f"'{looked}'): write the paths relative to that folder, or move the table to the folder they "
                    "are relative to")


SHOWN_ROWS = 5  # rows named in a message about many


def _listed_path(table: Path, listed: str) -> Path:
    """An image a table lists, by a path relative to the table's folder."""
    return table.parent / _portable(listed.strip())


def listed_files(table: Path, path_column: str) -> list[Path]:
    """The image files a CSV lists in ``path_column`` (none where it cannot be read so)."""
    try:
        rows, _, _ = _read_table(table)
    except (DataError, OSError, csv.Error):
        return []
    return [_listed_path(table, row[path_column]) for row in rows if isinstance(row.get(path_column), str)]


def _portable(listed: str) -> str:
    """A path written on Windows (``img\\a.png``) read on another system."""
    return PureWindowsPath(listed).as_posix() if "\\" in listed and os.sep == "/" else listed


def _check_listed_once(files: list[Path], labels: list[str], lines: list[int], path: Path) -> None:
    """An image listed twice could land in train and test at once (``lines``: each row's line)."""
    first: dict[Path, int] = {}
    for row, (f, label) in enumerate(zip(files, labels)):
        earlier = first.setdefault(f.resolve(), row)
        if earlier != row:
            other = ", with another label" if labels[earlier] != label else ""
            raise DataError(f"'{path}' line {lines[row]} lists '{f.name}' again (line {lines[earlier]}{other}): list "
                            "each image once, or it could be in the training and the test split at once")


def _list_class_tree(folder: Path, classes: list[str], exclusion: Exclusion | None = None
                     ) -> tuple[list[Path], list[int]]:
    files, labels, left_out = [], [], 0
    for i, name in enumerate(classes):
        d = folder / name
        if not d.is_dir():
            continue
        _refuse_nested_images(d)
        found = image_files(d)
        if exclusion is not None and found:  # (data.exclude: left out before any split is cut)
            kept = exclusion.kept(found)
            left_out += len(found) - len(kept)
            if not kept:
                exclusion.emptied.add(str(d))
            found = kept
        files += found
        labels += [i] * len(found)
    # (what this folder lost: review 56g, an empty test/ was blamed on a pattern naming train/ files)
    if not files and left_out:
        raise DataError(f"data.exclude leaves no image under '{folder}': keep some, or remove patterns from it")
    if not files:
        loose = image_files(folder) if folder.is_dir() else []
        found = (f"'{folder}' holds {len(loose)} images directly but no class folders" if loose
                 else f"no images under '{folder}'")
        raise DataError(f"{found}: expected one folder per class holding PNG/JPEG/TIFF or DICOM files "
                        f"('{folder}/CLASS/*.png')")
    return files, labels


def _refuse_nested_images(class_dir: Path) -> None:
    """Images one level down (one folder per patient, say) would be skipped without a word; read
    them all and a random split would also mix each patient's images across train and test."""
    nested = [d.name for d in _class_folders(class_dir, classes=False) if any(image_files(d))]
    if nested:
        raise DataError(f"class folder '{class_dir}' holds images in subfolders {nested[:5]}, which are not read: "
                        "move them up into the class folder with the patient in their names and set "
                        "data.group_pattern (each patient's images then stay in one split; docs/data.md), or list "
                        "them in a CSV (data.kind=csv)")


# Set while only the files, labels and groups are wanted (compare's check of every fold): no
# image is decoded, each stands as one black pixel.
_listed_only = contextvars.ContextVar("listed_only", default=False)


def listed_only() -> contextlib.AbstractContextManager[None]:
    return switched_on(_listed_only)


def _read_all(files: list[Path], spec: DataSpec) -> np.ndarray:
    """[N, C, H, W] float32."""
    if _listed_only.get():
        return np.zeros((len(files), 1, 1, 1), np.float32)
    return read_images(files, spec.image_size, grey=spec.grey, dicom_window=spec.dicom_window)


def _splits_read(files: list[Path], labels, parts, classes: list[str], spec: DataSpec, stats) -> DataSplits:
    return _splits_of(_read_by_split(files, labels, parts, spec), classes, stats)


def _read_by_split(files: list[Path], labels, parts, spec: DataSpec) -> list[np.ndarray]:
    """Images and labels of each split in turn (``parts``: each split's indices into ``files``
    and ``labels``), the images read once into one array whose views they are (review 52g: a
    classification folder peaked at 3.7 times what it holds)."""
    x, y = _read_all([files[i] for part in parts for i in part], spec), np.asarray(labels)
    xs = consecutive_parts(x, [len(part) for part in parts])
    return [a for x_part, part in zip(xs, parts) for a in (x_part, y[np.asarray(part, dtype=np.int64)])]


def _splits_of(arrays: list[np.ndarray], classes: list[str], stats) -> DataSplits:
    """``_read_by_split``'s arrays as splits, standardised in place (they are ours)."""
    return DataSplits.from_arrays(*arrays, class_names=classes, stats=stats, channels_last=False, in_place=True)


def _relative_names(files: list[Path], source: str) -> list[str]:
    """Each file's path from the data's folder (or the CSV's): how runs name their files."""
    base = Path(source) if Path(source).is_dir() else Path(source).parent
    return [Path(os.path.relpath(f, base)).as_posix() for f in files]


def _group_key(spec: DataSpec) -> str:
    return "data.group_column" if spec.group_column else "data.group_pattern"


def _groups_by_split(parts: dict, spec: DataSpec, source: str,
                     column_groups: dict[str, list[str]] | None = None) -> dict[str, list[str]] | None:
    """The groups (patients) of given splits' images: a CSV's ``column_groups``, or
    ``data.group_pattern`` found in their paths; a group in two splits is refused. None
    without either key."""
    if column_groups is None and not spec.group_pattern:
        return None
    groups = column_groups or {s: group_ids(_relative_names(files, source), spec.group_pattern)
                               for s, (files, _) in parts.items()}
    check_groups_in_one_split({s: ids for s, ids in groups.items() if ids}, _group_key(spec), source)
    return groups


def _given_splits(parts, classes, spec, stats, source, groups: dict[str, list[str]] | None = None) -> DataSplits:
    for s in SPLITS:
        if not parts[s][0]:
            fix = (f"list images with split '{s}', or leave out the split column to have the splits cut "
                   "(data.val_fraction, data.test_fraction; no val rows: val is cut from train)"
                   if Path(source).is_file() else
                   f"put images in its class folders{', or remove it to have val cut from train' if s == 'val' else ''}")
            raise DataError(f"{source}: the {s} split is empty: {fix}")
    files = [f for s in SPLITS for f in parts[s][0]]
    counts = np.cumsum([0] + [len(parts[s][0]) for s in SPLITS])
    splits = _splits_read(files, [label for s in SPLITS for label in parts[s][1]],
                          [range(a, b) for a, b in zip(counts[:-1], counts[1:])], classes, spec, stats)
    splits.info.update(source=source, splits="given",
                       files={s: _relative_names(parts[s][0], source) for s in SPLITS})
    if groups is not None:
        splits.info.update(groups={s: len(set(groups[s])) for s in SPLITS},
                           # (eval's bootstrap draws them; a pattern finds them again in the names)
                           **({"sample_groups": groups} if spec.group_column else {}))
    return splits


def _val_cut_from_train(parts, classes, spec, stats, source, groups: dict[str, list[str]] | None = None) -> DataSplits:
    """Given train and test folders: val is a stratified ``val_fraction`` of train, or with
    ``groups`` (patients) a cut of whole groups."""
    from sklearn.model_selection import train_test_split  # here: a second to import

    files, labels = parts["train"]
    if groups is not None:
        keep, val = group_val_cut(groups["train"], labels if spec.group_stratify else None, spec.val_fraction,
                                  spec.split_seed, _group_key(spec))
    else:
        try:
            keep, val = train_test_split(np.arange(len(files)), test_size=share_count(spec.val_fraction, len(files)),
                                         stratify=labels, random_state=spec.split_seed)
        except ValueError as exc:  # (a class of one training image: scikit-learn's words, with the fix)
            raise DataError(f"{source}: cannot cut a stratified val split from train ({exc}): val needs an image of "
                            "each class and train keeps one (more training images, or a larger data.val_fraction), "
                            "or give the val split yourself (a val/ folder, or val rows in the split column)") from None
    pick = lambda idx, of: [of[i] for i in sorted(idx)]  # noqa: E731
    cut = {"train": (pick(keep, files), pick(keep, labels)), "val": (pick(val, files), pick(val, labels)),
           "test": parts["test"]}
    if groups is not None:
        groups = {"train": pick(keep, groups["train"]), "val": pick(val, groups["train"]), "test": groups["test"]}
    splits = _given_splits(cut, classes, spec, stats, source, groups)
    how = (f" by group ({_group_key(spec)}{', stratified' if spec.group_stratify else ''})" if groups is not None
           else ", stratified")
    splits.info.update(splits=f"given train and test; val cut from train{how}, seed {spec.split_seed}")
    return splits


def _stratified(files, labels, classes, spec, stats, source, groups: list[str] | None = None) -> DataSplits:
    whole = is_kept_whole()
    if (spec.group_pattern or groups is not None) and not whole:
        return _by_group(files, labels, classes, spec, stats, source, groups)
    if whole:
        splits = DataSplits.whole(_read_all(files, spec), np.asarray(labels), class_names=classes, stats=stats,
                                  channels_last=False, in_place=True)
        indices = splits.info.pop("indices")
    else:  # (cut before any image is decoded: the splits are read straight into their places)
        parts = stratified_cut(np.asarray(labels), spec.val_fraction, spec.test_fraction, spec.split_seed,
                               spec.folds, spec.fold, classes)
        splits = _splits_read(files, labels, parts, classes, spec, stats)
        splits.info.update(cut_marks(spec.split_seed, spec.folds, spec.fold))
        indices = {s: part.tolist() for s, part in zip(SPLITS, parts)}
    names = _relative_names(files, source)
    splits.info.update(source=source, splits=f"stratified, seed {spec.split_seed}" + (
        f", test split fold {spec.fold} of {spec.folds}" if spec.folds else ""),
        files={s: [names[i] for i in idx] for s, idx in indices.items()},
        # (a set scored whole keeps its groups: eval's bootstrap draws them)
        **({"sample_groups": {s: [groups[i] for i in idx] for s, idx in indices.items()}} if groups else {}))
    return splits


def group_split(groups: list[str], labels, spec: DataSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, val and test indices keeping each group whole, as ``spec`` deals them (by class
    with ``data.group_stratify``; with ``data.folds``, fold ``data.fold`` is the test split)."""
    if spec.group_stratify:
        return stratified_group_cut(groups, np.asarray(labels), spec.val_fraction, spec.test_fraction,
                                    spec.split_seed, spec.folds, spec.fold)
    return group_cut(groups, spec.val_fraction, spec.test_fraction, spec.split_seed, spec.folds, spec.fold,
                     _group_key(spec))


def _by_group(files, labels, classes, spec, stats, source, groups: list[str] | None = None) -> DataSplits:
    """Splits that keep each group (a patient's images: ``data.group_pattern`` in their paths,
    or ``groups``, a CSV's ``data.group_column``) whole."""
    names = _relative_names(files, source)
    key = "data.group_column" if groups is not None else "data.group_pattern"
    groups = groups if groups is not None else group_ids(names, spec.group_pattern)
    parts, y = group_split(groups, labels, spec), np.asarray(labels)
    arrays = _read_by_split(files, labels, parts, spec)
    try:
        splits = _splits_of(arrays, classes, stats)
    except DataError as exc:
        counts = {s: dict(zip(classes, np.bincount(y[idx], minlength=len(classes)).tolist()))
                  for s, idx in zip(SPLITS, parts)}
        how = ("" if spec.group_stratify else " without regard to class (data.group_stratify=true deals them by "
               "class)")
        raise SplitError(f"{exc}. Images per split and class: {counts}", f"{key} deals whole groups{how}: "
                         "with few groups of a class, try another data.split_seed, or give more groups of it") from None
    splits.info.update(cut_marks(spec.split_seed, spec.folds, spec.fold))
    splits.info.update(source=source, files={
        s: [names[i] for i in idx] for s, idx in zip(SPLITS, parts)},
        groups={s: len({groups[i] for i in idx}) for s, idx in zip(SPLITS, parts)}, **group_fold_mark(spec),
        **({"sample_groups": {s: [groups[i] for i in idx] for s, idx in zip(SPLITS, parts)}}
           if key == "data.group_column" else {}),  # (eval's bootstrap draws them; a pattern finds them again)
        class_counts={s: dict(zip(classes, np.bincount(y[idx], minlength=len(classes)).tolist()))
                      for s, idx in zip(SPLITS, parts)},
        splits=f"by group ({key}{', stratified' if spec.group_stratify else ''}), seed "
               f"{spec.split_seed}" + (
            f", test split fold {spec.fold} of {spec.folds}" if spec.folds else ""))
    return splits
