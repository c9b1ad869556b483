"""``data.exclude``: files of a data folder left out of every split before the split is cut.

Each pattern is a file name or a glob (``*``, ``?``, ``[...]``; ``*`` also crosses ``/``). One
with a ``/`` is matched against a file's path relative to ``data.root`` (``NORMAL/IM-0001.jpeg``,
``images/cju0qk.jpg``) and, for detection, relative to ``data.images`` (a COCO ``file_name``);
one without against the file's name, its name less its suffix, and the id the data names the
sample by (an image/mask pair's shared id): the names training's warnings and run.json give.
A pattern is first compared as it is written, so a file name holding ``[`` or ``*`` matches
itself. A sample is left out where any of its files matches (an image, its mask or region of
interest). A pattern that leaves nothing out is refused where the data has been read
(``Exclusion.check``): a typo must not keep the file it meant in silence.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import fnmatch
import json
import os
import posixpath
import re
import shlex
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PureWindowsPath

from ..errors import DataError
from ..wording import nearest_name
from .image_io import EXPORT_SUFFIX, IMAGE_SUFFIXES, LOOKED_FOR

_GLOB = re.compile(r"[*?\[]")
_active: contextvars.ContextVar[Exclusion | None] = contextvars.ContextVar("exclusion", default=None)
_SEEN_KEPT = 50_000  # names kept to suggest a near one when a pattern matches nothing


def normalized(pattern: str) -> str:
    """A pattern as it is compared: Windows separators as '/', './' and doubled '/' gone; a
    trailing '/' (a folder) as everything under it."""
    if "\\" in pattern and os.sep == "/":
        pattern = PureWindowsPath(pattern).as_posix()
    folder = pattern.endswith("/")
    pattern = posixpath.normpath(pattern)
    return f"{pattern}/*" if folder else pattern


def _nfc(text: str) -> str:
    """``text`` in Unicode's composed form (NFC): a name typed 'café' and a file saved 'cafe\u0301'
    (as a Mac copy writes accents) are one name, as image/mask pairing takes them."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def _id_of(name: str) -> str:
    """``image_io.image_id`` of a file named ``name``, on the string: its name less its suffix
    (a suffix of digits, a DICOM UID's last part, kept)."""
    dot = name.rfind(".")
    if 0 < dot < len(name) - 1 and not name[dot + 1:].isdigit():
        return name[:dot]
    return name


class Exclusion:
    """The patterns of ``data.exclude`` for the data at ``root``, and what they left out: each
    pattern's matched files and the samples left out, by their paths relative to ``root``.
    (Matching works on strings: every file a loader lists passes through it, review 56g measured
    about 45 us a file when each built Path objects.)"""

    def __init__(self, patterns: Sequence[str], root: str | Path, relative_to: str = "data.root",
                 listed: bool = False):
        self.patterns = list(patterns)
        self.listed = listed  # the data's files are found by listing its folders (not named by a CSV or a JSON)
        self.root = os.path.abspath(str(root))
        self._given_root = str(root)  # (as the loaders join their paths to it)
        self.relative_to = relative_to  # how messages name the folder paths count from
        self.matched: dict[str, set[str]] = {p: set() for p in self.patterns}
        self.samples: set[str] = set()
        self.emptied: set[str] = set()  # class folders whose every image it left out (image_folder)
        self._seen: list[str] = []
        self._seen_ids: dict[str, None] = {}  # ids the data names samples by (a pair's id), in order
        self._pools: dict[bool, list[str]] = {}  # the names a mistyped entry is compared with, by kind
        self._literal: dict[str, list[str]] = {}
        self._prefixes: dict[str | None, tuple[str, str]] = {}
        globs: dict[bool, list[tuple[str, re.Pattern]]] = {True: [], False: []}  # by whether a '/' is in it
        for p in self.patterns:
            form = _nfc(normalized(p))
            for written in dict.fromkeys((form, _nfc(p))):
                self._literal.setdefault(written, []).append(p)
            if _GLOB.search(form):
                globs["/" in form].append((p, re.compile(fnmatch.translate(form))))
        self._globs = globs
        # one search for every glob at once (a '/' in the name or not): each one alone only where it finds something
        self._any_glob = {slash: re.compile("|".join(f"(?:{rx.pattern})" for _, rx in found)) if found else None
                          for slash, found in globs.items()}

    def _prefix(self, base: str | Path | None) -> tuple[str, str]:
        """The folder names count from (data.root, or ``base``), as given and absolute, each with a
        trailing separator."""
        if base not in self._prefixes:
            given = self._given_root if base is None else str(base)
            self._prefixes[base] = (given.rstrip(os.sep) + os.sep, os.path.abspath(given).rstrip(os.sep) + os.sep)
        return self._prefixes[base]

    def _relative(self, path: str | Path, base: str | Path | None = None) -> str | None:
        text = os.fspath(path)
        given, absolute = self._prefix(base)
        for prefix in (given, absolute):  # (the folder as the loader joined it: no abspath per file)
            if text.startswith(prefix) and len(text) > len(prefix):
                rest = text[len(prefix):]
                if ".." not in rest and "/./" not in f"/{rest}":
                    return rest if os.sep == "/" else rest.replace(os.sep, "/")
        text = os.path.abspath(text)
        if text.startswith(absolute) and len(text) > len(absolute):
            rest = text[len(absolute):]
            return rest if os.sep == "/" else rest.replace(os.sep, "/")
        return None

    def name_of(self, path: str | Path) -> str:
        """How the file is named in messages and run.json: its path relative to data.root."""
        return self._relative(path) or Path(path).as_posix()

    def matches(self, path: str | Path, base: str | Path | None = None, ids: Iterable[str] = ()) -> list[str]:
        """The patterns matching ``path`` (``base``: another folder it is named from, data.images;
        ``ids``: the names the data gives its sample), each recorded as matching it."""
        text = os.fspath(path)
        relative = self._relative(text)
        name = relative.rpartition("/")[2] if relative else os.path.basename(text)
        candidates = [relative, name, _id_of(name)] if relative else [name, _id_of(name)]
        if base is not None:
            other = self._relative(text, base)
            if other and other != relative:
                candidates.append(other)
        if ids:
            candidates += [str(i) for i in ids]
        if len(self._seen) < _SEEN_KEPT:
            self._seen.append(relative or name)
            self._seen_ids.update((str(i), None) for i in ids)
        if not all(c.isascii() for c in candidates):
            candidates = [_nfc(c) for c in candidates]
        found: list[str] = []
        literal, any_glob = self._literal, self._any_glob
        for candidate in candidates:  # (a name twice, a file without a suffix, is no harm: found is made unique)
            if candidate in literal:
                found += literal[candidate]
            slash = "/" in candidate
            if any_glob[slash] is not None and any_glob[slash].match(candidate):
                found += [p for p, rx in self._globs[slash] if rx.match(candidate)]
        if not found:
            return found
        found = list(dict.fromkeys(found))
        named = relative or Path(text).as_posix()
        for p in found:
            self.matched[p].add(named)
        return found

    def left_out(self, path: str | Path, base: str | Path | None = None, ids: Iterable[str] = ()) -> bool:
        """Whether the sample of the image file ``path`` is left out (recorded so)."""
        if self.matches(path, base, ids):
            self.samples.add(self.name_of(path))
            return True
        return False

    def kept(self, files: Iterable[Path], base: str | Path | None = None) -> list[Path]:
        """``files`` (one sample each) less those left out."""
        return [f for f in files if not self.left_out(f, base)]

    def note_sample(self, path: Path) -> None:
        """The sample of image file ``path`` left out for another of its files (its mask)."""
        self.samples.add(self.name_of(path))

    def check(self, where: str) -> None:
        """Every pattern must have left something out: a typo would else keep the file meant. A
        pattern naming a file the data's folders are read without (a hidden file, a file of no
        image suffix) is refused as that: the entry can go (accepting it would give the same data
        another fingerprint)."""
        unmatched = [p for p in self.patterns if not self.matched[p]]
        if not unmatched:
            return
        unread = {p: why for p in unmatched if (why := self._never_read(p))}
        about_unread = _never_read_said(unread)
        unmatched = [p for p in unmatched if p not in unread]
        if not unmatched:
            raise DataError(f"data.exclude: {about_unread}")
        one = len(unmatched) == 1
        named = ", ".join(repr(p) for p in unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5
                                                               else "")
        example = self._guesses(unmatched[:5])
        them = "it" if one else "them"
        raise DataError(f"data.exclude: {'pattern' if one else 'patterns'} {named} {'matches' if one else 'match'} no "
                        f"image or mask file of the data at '{where}' (a name with '/' is matched against each image's "
                        f"or mask's path relative to {self.relative_to}, one without against its file name, with "
                        f"or without its suffix{example}): fix {them}, or remove {them} from data.exclude (a file the "
                        "data has no more need not be left out)" + (f"; and {about_unread}" if unread else ""))

    def _guesses(self, unmatched: Sequence[str]) -> str:
        """For the refusal: the existing name nearest each of ``unmatched`` (its entry named where
        there are several), else one name of the data as an example of how names are written."""
        near = {p: guess for p in unmatched if (guess := self._nearest(p)) is not None}
        if len(unmatched) == 1 and near:
            return f"; did you mean {near[unmatched[0]]!r}?"
        if near:
            return "; did you mean " + ", ".join(f"{guess!r} for {p!r}" for p, guess in near.items()) + "?"
        return f"; e.g. {self._seen[0]!r}" if self._seen else ""

    def _nearest(self, pattern: str) -> str | None:
        """The existing name ``pattern`` most likely meant: one equal to it but for case (matching
        is case-sensitive), else the closest by spelling (``nearest_name``); among paths from the data's folder for an
        entry with a '/', among file names (with or without suffix) and ids for one without. A glob
        gets none (a near name would not say how to write it)."""
        form = _nfc(normalized(pattern))
        if _GLOB.search(form):
            return None
        return nearest_name(form, self._names_like("/" in form), cutoff=0.75)

    def _names_like(self, with_slash: bool) -> list[str]:
        """The names of the data an entry is compared with (gathered once each, after the data is
        read): paths where it holds a '/', else file names, those less their suffix, and the
        samples' ids."""
        if with_slash not in self._pools:
            if with_slash:
                names = dict.fromkeys(_nfc(seen) for seen in self._seen)
            else:
                names = {}
                for seen in self._seen:
                    name = _nfc(seen.rpartition("/")[2])
                    names[name] = names[_id_of(name)] = None
                names.update((_nfc(i), None) for i in self._seen_ids)
            self._pools[with_slash] = list(names)
        return self._pools[with_slash]

    def _never_read(self, pattern: str) -> str | None:
        """Why the files ``pattern`` names are never read from the data's folders (the rule that
        skips them), or None where it may name a file that is read (a typo of one, say)."""
        if not self.listed:
            return None  # (a CSV or a JSON names its files: it may name any)
        form = normalized(pattern)
        parts = form.split("/")
        hidden = next((part for part in parts if part.startswith(".") and part not in (".", "..")), None)
        if hidden is not None:
            where = "its name" if hidden == parts[-1] else f"its folder '{hidden}'"
            return (f"{where} begins with '.' (hidden files and folders, as macOS's '._' copies, .DS_Store and "
                    ".ipynb_checkpoints, are never read from a data folder)")
        name = parts[-1]
        dot = name.rfind(".")
        suffix = name[dot:] if dot > 0 else ""
        if not suffix or _GLOB.search(suffix) or suffix.lower() in IMAGE_SUFFIXES or EXPORT_SUFFIX.match(suffix):
            return None
        if "/" not in form and any("." in _id_of(seen.rpartition("/")[2]) for seen in self._seen):
            return None  # (ids holding a '.' are here: it may be one mistyped)
        return f"its suffix '{suffix}' is no image's (a data folder is read for its {LOOKED_FOR}, alone)"

    def record(self) -> dict:
        """What run.json's data_info keeps: each pattern's count of files, the samples left out."""
        return {"patterns": {p: len(self.matched[p]) for p in self.patterns}, "samples": len(self.samples),
                "files": sorted(self.samples)}

    def summary(self, where: str) -> str:
        counts = ", ".join(f"{p!r} {len(self.matched[p])} file{'s' if len(self.matched[p]) != 1 else ''}"
                           for p in self.patterns[:10])
        more = f" and {len(self.patterns) - 10} more patterns" if len(self.patterns) > 10 else ""
        n, files = len(self.samples), len(set().union(*self.matched.values()))
        said = f"{n} sample{'s' if n != 1 else ''}"
        if files != n:
            said += f" ({files} file{'s' if files != 1 else ''})"
        return f"data.exclude left out {said} of '{where}' before the split ({counts}{more})"


def _never_read_said(unread: dict[str, str]) -> str:
    """For a message: the patterns naming files never read, each with the rule that skips it."""
    if not unread:
        return ""
    if len(unread) == 1:
        (pattern, why), = unread.items()
        return (f"pattern {pattern!r} names a file never read as data, so it leaves nothing out: {why}; remove it "
                "from data.exclude")
    said = "; ".join(f"{p!r}: {why}" for p, why in unread.items())
    return (f"patterns {', '.join(repr(p) for p in unread)} name files never read as data, so they leave nothing "
            f"out: {said}; remove them from data.exclude")


# data kinds whose files are found by listing folders (a CSV lists its own; COCO and box JSON name theirs)
_LISTED_KINDS = ("image_folder", "folders", "mask_boxes")


def exclusion_of(spec) -> Exclusion | None:
    """The exclusion ``spec`` asks for (None without ``data.exclude``): the one ``tracking`` holds
    for it, else a new one (a loader called on its own still leaves the files out)."""
    patterns = list(getattr(spec, "exclude", None) or [])
    if not patterns:
        return None
    active = _active.get()
    if active is not None and active.patterns == patterns and active.root == os.path.abspath(_data_folder(spec)):
        return active
    return Exclusion(patterns, _data_folder(spec),
                     relative_to="the CSV file's folder" if spec.kind == "csv" else "data.root",
                     listed=spec.kind in _LISTED_KINDS)


def _data_folder(spec) -> str:
    """The folder patterns count from: data.root, or a CSV's own folder."""
    root = Path(spec.root or "")
    return str(root.parent if spec.kind == "csv" else root)


@contextlib.contextmanager
def tracking(spec) -> Iterator[Exclusion | None]:
    """While a data set is read: its loaders share one ``Exclusion``, checked and recorded after."""
    exclusion = exclusion_of(spec)
    if exclusion is None:
        yield None
        return
    token = _active.set(exclusion)
    try:
        yield exclusion
    finally:
        _active.reset(token)


# names a paste-ready data.exclude example lists at most (beyond: a file lists them all)
EXAMPLE_LIMIT = 50


def exclude_example(names: Sequence[str], existing: Sequence[str] = (), limit: int = EXAMPLE_LIMIT,
                    folder: str | Path | None = None) -> str:
    """``data.exclude=[...]`` naming ``names`` after the patterns already given (``existing``: an
    override replaces the list, so pasting must not drop them), quoted to paste into a shell (the
    same list, without the quotes around it, goes into a config's data section), with where it
    goes. Past ``limit`` names the example lists the first ones, and a file written under
    ``folder`` (the system's temporary folder where None) lists every one."""
    given = list(dict.fromkeys(str(p) for p in existing))
    every = [n for n in dict.fromkeys(str(n) for n in names) if n not in set(given)]
    shown = given + every[:limit]
    pasted = shlex.quote(f"data.exclude={json.dumps(shown, ensure_ascii=False)}")
    kept = f", the {len(given)} pattern{'s' if len(given) != 1 else ''} given first" if given else ""
    if len(every) <= limit:
        return f"{pasted} on the command line{kept}"
    listed = _write_list(given + every, folder)
    return (f"{pasted} on the command line{kept}, lists the first {limit} of {len(every)}: '{listed}' lists every "
            "one as a data section to copy into the config")


def _write_list(patterns: list[str], folder: str | Path | None) -> Path:
    """A YAML file holding ``data: {exclude: [...]}`` with ``patterns``, under ``folder``."""
    text = "data:\n  exclude:\n" + "".join(f"  - {json.dumps(p, ensure_ascii=False)}\n" for p in patterns)
    if folder is not None and Path(folder).is_dir():
        path = Path(folder) / "data-exclude-suggested.yaml"
        path.write_text(text, encoding="utf-8")
        return path
    # named by its content: the same list said again is the same file, not one more (review 56l)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"peerdistill-data-exclude-{digest}.yaml"
    path.write_text(text, encoding="utf-8")
    return path
