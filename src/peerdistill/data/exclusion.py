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
import difflib
import fnmatch
import json
import os
import posixpath
import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PureWindowsPath

from ..errors import DataError

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


class Exclusion:
    """The patterns of ``data.exclude`` for the data at ``root``, and what they left out: each
    pattern's matched files and the samples left out, by their paths relative to ``root``."""

    def __init__(self, patterns: Sequence[str], root: str | Path):
        self.patterns = list(patterns)
        self.root = os.path.abspath(str(root))
        self.matched: dict[str, set[str]] = {p: set() for p in self.patterns}
        self.samples: set[str] = set()
        self._seen: list[str] = []
        self._literal: dict[str, list[str]] = {}
        globs = []
        for p in self.patterns:
            form = normalized(p)
            self._literal.setdefault(form, []).append(p)
            if form != p:
                self._literal.setdefault(p, []).append(p)
            if _GLOB.search(form):
                globs.append((p, re.compile(fnmatch.translate(form))))
        self._globs = globs
        # one search for every glob at once: each one alone only where that finds something
        self._any_glob = re.compile("|".join(f"(?:{rx.pattern})" for _, rx in globs)) if globs else None

    def _relative(self, path: Path, base: str | Path | None = None) -> str | None:
        absolute = os.path.abspath(str(path))
        base = self.root if base is None else os.path.abspath(str(base))
        if absolute != base and absolute.startswith(base.rstrip(os.sep) + os.sep):
            return Path(os.path.relpath(absolute, base)).as_posix()
        return None

    def name_of(self, path: Path) -> str:
        """How the file is named in messages and run.json: its path relative to data.root."""
        return self._relative(path) or Path(path).as_posix()

    def matches(self, path: Path, base: str | Path | None = None, ids: Iterable[str] = ()) -> list[str]:
        """The patterns matching ``path`` (``base``: another folder it is named from, data.images;
        ``ids``: the names the data gives its sample), each recorded as matching it."""
        from .image_io import image_id

        path = Path(path)
        with_slash = [r for r in (self._relative(path), self._relative(path, base) if base is not None else None) if r]
        bare = [path.name, image_id(path), *(str(i) for i in ids)]
        if len(self._seen) < _SEEN_KEPT:
            self._seen.append(with_slash[0] if with_slash else path.name)
        found = []
        for candidate in dict.fromkeys(with_slash + bare):
            found += self._literal.get(candidate, [])
            if self._any_glob is not None and self._any_glob.match(candidate):
                found += [p for p, rx in self._globs if ("/" in normalized(p)) == ("/" in candidate)
                          and rx.match(candidate)]
        found = list(dict.fromkeys(found))
        for p in found:
            self.matched[p].add(self.name_of(path))
        return found

    def left_out(self, path: Path, base: str | Path | None = None, ids: Iterable[str] = ()) -> bool:
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
        """Every pattern must have left something out: a typo would else keep the file meant."""
        unmatched = [p for p in self.patterns if not self.matched[p]]
        if not unmatched:
            return
        one = len(unmatched) == 1
        named = ", ".join(repr(p) for p in unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5
                                                               else "")
        close = difflib.get_close_matches(normalized(unmatched[0]), self._seen, n=1, cutoff=0.75)
        example = (f"; did you mean {close[0]!r}?" if close else f"; e.g. {self._seen[0]!r}" if self._seen else "")
        them = "it" if one else "them"
        raise DataError(f"data.exclude: {'pattern' if one else 'patterns'} {named} {'matches' if one else 'match'} no "
                        f"image or mask file of the data at '{where}' (a name with '/' is matched against each image's "
                        f"or mask's path relative to data.root, one without against its file name, with or without "
                        f"its suffix{example}): fix {them}, or remove {them} from data.exclude (a file the data has "
                        "no more need not be left out)")

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


def exclusion_of(spec) -> Exclusion | None:
    """The exclusion ``spec`` asks for (None without ``data.exclude``): the one ``tracking`` holds
    for it, else a new one (a loader called on its own still leaves the files out)."""
    patterns = list(getattr(spec, "exclude", None) or [])
    if not patterns:
        return None
    active = _active.get()
    if active is not None and active.patterns == patterns and active.root == os.path.abspath(_data_folder(spec)):
        return active
    return Exclusion(patterns, _data_folder(spec))


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


def exclude_example(names: Sequence[str], limit: int = 5) -> str:
    """``data.exclude=[...]`` naming ``names`` (at most ``limit`` of them), quoted to paste into a
    shell; the same list (without the quotes around it) goes into a config's data section."""
    shown = list(dict.fromkeys(str(n) for n in names))[:limit]
    return shlex.quote(f"data.exclude={json.dumps(shown, ensure_ascii=False)}")
