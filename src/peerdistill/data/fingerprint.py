"""What the files at ``data.root`` hold, in one string a run records (run.json's
``data_fingerprint``) and compare checks before reusing the run.

An archive (or any single file) by its SHA-256. A folder by a listing of the names and sizes of
its data files, not their contents (reading every image again would make a large folder slow;
an image edited in place at the same size goes unseen), linked folders followed: its images
(DICOM ones under export names by how they begin) and annotation JSON, leaving out hidden files (``.DS_Store``),
other files (notes, ``Thumbs.db``)
and peerdistill's own: a run's folder (it holds run.json) and a comparison's tables, which a
project keeping its runs beside its images would otherwise change with every run. A CSV by its
SHA-256 with the listing of the images it names. Fingerprints of the earlier forms: a folder's
``listing:`` (every file under it) is not compared; a folder's ``files:`` (export-named files
counted by name) is compared in that form; a CSV's bare SHA-256 as the table's SHA-256 alone.
With data.exclude, a folder's or CSV's form carries a mark of its patterns (``folder;exclude=HASH:``):
the same folder less other files is other data to compare, resume and eval.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..config import DataSpec
from ..run_files import COMPARISON_TABLES, REPORT_FILE, RUN_FILE
from .digests import file_sha256
from .image_files import listed_files
from .dicom import dicom_start
from .image_io import EXPORT_SUFFIX, IMAGE_SUFFIXES

FOLDER = "folder:"  # a folder's listing, files under DICOM export names counted by their start
BY_NAME = "files:"  # the same, recorded before: such files counted by their names alone
TABLE = "csv:"  # a CSV with the images it lists
EARLIER = ("listing:",)  # forms recorded before: not comparable with these
_OWN_FILES = {*COMPARISON_TABLES, REPORT_FILE}  # what peerdistill writes beside the runs of a comparison


def data_fingerprint(spec: DataSpec, like: str | None = None) -> str | None:
    """The fingerprint of what ``spec.root`` holds; None without a root (embedded or generated
    data) or when it is not there. ``like``: a fingerprint recorded before, whose form a folder's
    is given in (``BY_NAME``'s, for a run recorded so: compared as it was made)."""
    if not spec.root or not Path(spec.root).exists():
        return None
    path = Path(spec.root)
    if path.is_dir():
        by_name = isinstance(like, str) and form_of(like) == BY_NAME[:-1]
        files = list(_data_files(path, by_name))
        # (none: nothing to compare)
        return _marked(BY_NAME if by_name else FOLDER, spec) + _listing(path, files) if files else None
    if spec.kind == "csv":
        return _marked(TABLE, spec) + _listing(path.parent, listed_files(path, spec.path_column),
                                               seed=file_sha256(path))
    return file_sha256(path)


def form_of(held: str) -> str:
    """A fingerprint's form (folder, files, csv), without its data.exclude mark; '' for a bare
    SHA-256."""
    return held.split(":", 1)[0].split(";", 1)[0] if ":" in held else ""


def _marked(form: str, spec: DataSpec) -> str:
    """``form`` (``folder:``...) with what data.exclude leaves out marked in it, before its colon
    (``folder;exclude=1a2b3c4d5e6f:``): the same files less others are other data, and a
    comparison that keeps one fingerprint per form tells them apart."""
    patterns = list(getattr(spec, "exclude", None) or [])
    if not patterns:
        return form
    mark = hashlib.sha256(json.dumps(sorted(patterns)).encode()).hexdigest()[:12]
    return f"{form[:-1]};exclude={mark}:"


def comparable(held: object, spec: DataSpec) -> bool:
    """Whether a recorded fingerprint is of the form ``data_fingerprint`` gives now for ``spec``
    (a CSV's recorded before its images were listed too is its bare SHA-256: ``table_digest``)."""
    return isinstance(held, str) and not held.startswith(EARLIER) and (spec.kind != "csv" or
                                                                      form_of(held) == TABLE[:-1])


def table_digest(held: object, spec: DataSpec) -> bool:
    """Whether ``held`` is a CSV's fingerprint of the earlier form: the table's SHA-256 alone,
    still to be compared as that."""
    return spec.kind == "csv" and isinstance(held, str) and len(held) == 64 and \
        all(c in "0123456789abcdef" for c in held)


def what_differs(held: str, now: str | None = None) -> str:
    """For a message: what a changed fingerprint of this form says changed (``now``: the
    fingerprint the data gives today; where its data.exclude mark differs, that is what)."""
    if now is not None and form_of(held) and form_of(held) == form_of(now) and \
            held.split(":", 1)[0] != now.split(":", 1)[0]:
        return "the files data.exclude leaves out differ"
    if form_of(held) in (FOLDER[:-1], BY_NAME[:-1]):
        return "the names or sizes of its image and annotation files differ"
    if form_of(held) == TABLE[:-1]:
        return "the table, or the names or sizes of the images it lists, differ"
    return "its SHA-256 differs"


def _data_files(root: Path, by_name: bool = False):
    seen = set()  # the folders walked, by their real paths: links followed (a class folder linked in), once
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if RUN_FILE in files or real in seen:  # a run's folder: its pictures and tables are no data
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if not name.startswith(".") and name not in _OWN_FILES and _is_data_file(path, by_name):
                yield path


def _is_data_file(path: Path, by_name: bool = False) -> bool:
    """An image or annotation file by its name; under a name as DICOM exports give them (no
    suffix, a UID, .IMA), by how it begins, one small read: 'DICM' after the preamble, or a data
    set's first element, as training finds DICOM files (a README, a LICENSE or a rotated log.1 is
    no image; a full DICOM check made a large folder's listing slow). ``by_name``: such names
    count unread, as fingerprints of the ``BY_NAME`` form were made."""
    suffix = path.suffix.lower()
    if suffix == ".json" or suffix in IMAGE_SUFFIXES:
        return True
    if not EXPORT_SUFFIX.match(suffix):
        return False
    if by_name:
        return True
    try:
        return dicom_start(path) is not None
    except OSError:
        return False


def _listing(base: Path, files, seed: str = "") -> str:
    """The SHA-256 of each file's path relative to ``base`` and its size (a file not there
    counts as size -1)."""
    digest = hashlib.sha256(seed.encode())
    for file in files:
        try:
            size = file.stat().st_size
        except OSError:
            size = -1
        relative = os.path.relpath(file, base) if file.is_absolute() == base.is_absolute() else str(file)
        digest.update(f"{Path(relative).as_posix()}\0{size}\n".encode())
    return digest.hexdigest()
