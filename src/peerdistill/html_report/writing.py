"""Writing the report: the page of a run or of a comparison, to a file that is a report
already or none; warnings raised while it is drawn held back for the caller's filters."""

from __future__ import annotations

import hashlib
import html
import re
import time
import warnings
from pathlib import Path

import matplotlib
from matplotlib import cycler  # (matplotlib's own: no dependency of ours)

from ..engine.artifacts import atomic_write_bytes, check_not_a_run_file, names_a_folder
from ..errors import ConfigError, PeerdistillWarning, RunDirError, reemit, warn_user
from ..run_files import REPORT_FILE, RUN_FILE, left_aside_beside
from ..wording import first_few, shell_word
from .comparison_page import comparison_page
from .html_parts import GENERATOR, LINE_COLOURS
from .run_page import run_page
from ..option_names import option



def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write one self-contained HTML page for a run directory (it has run.json) or a comparison
    directory (it has compare.csv) and return its path (default ``path/report.html``)."""
    target, held = write_report_holding_warnings(path, out)
    reemit(held)
    return target


def write_report_holding_warnings(path: str | Path,
                                  out: str | Path | None = None) -> tuple[Path, list[warnings.WarningMessage]]:
    """``write_report``, with the warnings raised while the page is drawn handed back, not
    emitted: a warnings filter making them errors (PYTHONWARNINGS=error, -W error) still leaves
    the page, and the command can say where it is before them."""
    directory = Path(path)
    if not (directory / RUN_FILE).is_file() and left_aside_beside(directory):
        from ..engine.artifacts import finish_replacing

        # an --overwrite killed outright moved the run aside (review 52c: 'not a run' of an emptied folder)
        finish_replacing(directory)
    if not directory.exists():
        raise RunDirError(f"'{directory}' does not exist: pass the directory that `peerdistill train` or "
                          "`peerdistill compare` wrote (check the path)")
    is_run, is_comparison = (directory / RUN_FILE).is_file(), (directory / "compare.csv").is_file()
    if not (is_run or is_comparison):
        runs = sorted(p.parent.name for p in directory.glob("*/run.json")) if directory.is_dir() else []
        if runs:
            shown = first_few(runs)
            raise RunDirError(f"'{directory}' holds runs ({len(runs)}: {shown}) but no compare.csv: report one of "
                              f"them (peerdistill report {shell_word(directory / runs[0])}), or, if a comparison is "
                              "training "
                              "them, report the folder when its last run ends (it writes compare.csv then); a "
                              "comparison that was stopped goes on with the same compare command, which reuses "
                              "its finished runs")
        raise RunDirError(
            f"'{directory}' is neither a peerdistill run directory (with run.json) nor a comparison "
            "directory (with compare.csv): pass the directory that `peerdistill train` or "
            "`peerdistill compare` wrote"
        )
    into_folder = out is not None and names_a_folder(out)
    target = directory / REPORT_FILE if out is None else Path(out) / REPORT_FILE if into_folder else Path(out)
    check_not_a_run_file(target)
    if target.suffix.lower() not in (".html", ".htm"):  # never a page over an image or a config of that name
        raise ConfigError(f"{option('--out', repr(str(out)))} does not end in .html: the report is one HTML page "
                          "(give a .html file or a folder)")
    _check_writable_here(target)
    if into_folder:
        _refuse_another_runs_page(target, directory)
    # Names are drawn as written: a '$' in a class or model name is not mathtext (it crashed,
    # or became a formula).
    with warnings.catch_warnings(record=True) as held, matplotlib.rc_context(
            {"text.parse_math": False, "axes.prop_cycle": cycler(color=LINE_COLOURS)}):
        warnings.simplefilter("always")  # every one held: the caller's filters judge them when re-emitted
        page, skipped = run_page(directory) if is_run else (comparison_page(directory), None)
        if skipped:  # on the console too, not only seen when the page is opened
            warn_user(f"the report has no test predictions: the saved models or the data could not be loaded "
                      f"again ({skipped})")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and edited_since_written(target) is None:  # edits that cannot be told: kept, not lost
        kept = target.with_name(f"{target.stem}.earlier-{time.strftime('%Y%m%d-%H%M%S')}{target.suffix}")
        target.rename(kept)
        warn_user(f"the earlier '{target.name}' carries no digest of itself (written before pages did, or its tag "
                  f"removed), so whether it was edited cannot be told: it is kept as '{kept}'")
    # a folder name that is not UTF-8 (Linux allows any bytes) is shown escaped, not a crash
    if into_folder:  # (only there is it read: no page carries its folder's place otherwise, review 52i)
        page = _with_source(page, directory)
    atomic_write_bytes(target, _signed(page.encode("utf-8", errors="backslashreplace")))
    return target, _glyphs_said_once(held)


# Which folder a page written into a folder given as --out is the report of (a digest of its place,
# not the place: a shared page names no one's home folder): that folder's report.html, another
# run's, would be replaced in silence (the second of `report a --out pages/` and `report b --out pages/`).
_SOURCE_TAG = '<meta name="peerdistill-source" content="{}">'
_SOURCE = re.compile(rb'<meta name="peerdistill-source" content="([0-9a-f]*)">')
_TITLE = re.compile(rb"<title>([^<]*)</title>")


def _with_source(page: str, directory: Path) -> str:
    return page.replace(GENERATOR, f"{GENERATOR}\n{_SOURCE_TAG.format(_place_digest(directory))}", 1)


def _place_digest(directory: Path) -> str:
    place = str(directory.resolve()).encode("utf-8", errors="surrogateescape")  # (any bytes Linux allows)
    return hashlib.sha256(place).hexdigest()[:16]


def _refuse_another_runs_page(target: Path, directory: Path) -> None:
    """A folder's report.html that is another run's (or comparison's) page is not replaced: the
    folder was given for this one's, and the other's would be gone without a word. (Pages from
    before the tag are replaced, as they were.)"""
    if not target.is_file():
        return
    with target.open("rb") as page:
        head = page.read(8192)
    found = _SOURCE.search(head)
    if found is not None and found[1].decode() != _place_digest(directory):
        title = _TITLE.search(head)
        what = html.unescape(title[1].decode("utf-8", errors="replace")) if title else "a page report wrote"
        mine = target.with_name(f"{directory.resolve().name}.html")
        raise ConfigError(f"'{target}' is the report of another folder ({what}; or of this one, moved since): this "
                          f"report would replace it; give this one a file name of its own "
                          f"({option('--out', repr(str(mine)))}), or move that one away")


# The digest of the page as written (with this tag's content empty): a page edited since, notes
# added to it, is not written over (review 47b: the notes were lost without a word).
_DIGEST_TAG = '<meta name="peerdistill-digest" content="{}">'
_DIGEST = re.compile(rb'<meta name="peerdistill-digest" content="([0-9a-f]*)">')


def _signed(page: bytes) -> bytes:
    unsigned = page.replace(GENERATOR.encode(), GENERATOR.encode() + b"\n" + _DIGEST_TAG.format("").encode(), 1)
    digest = _digest(unsigned)
    return unsigned.replace(_DIGEST_TAG.format("").encode(), _DIGEST_TAG.format(digest).encode(), 1)


def edited_since_written(path: Path) -> bool | None:
    """Whether a page report wrote was changed since; None where it cannot be told (a page written
    before pages carried their digest, or one whose tag an editor dropped)."""
    page = path.read_bytes()
    found = _DIGEST.search(page[:8192])
    if found is None:
        return None
    unsigned = page[:found.start(1)] + page[found.end(1):]
    return _digest(unsigned) != found[1].decode()


def _digest(page: bytes) -> str:
    """Of the page's text, its line endings aside (a copy through git's autocrlf, or a Windows
    share, writes CRLF: not an edit; review 47f)."""
    return hashlib.sha256(page.replace(b"\r\n", b"\n")).hexdigest()


_MISSING_GLYPH = re.compile(r"Glyph (\d+) .*missing from font")


def _glyphs_said_once(held: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    """matplotlib's warning per character its font lacks (a class named in Chinese), pointing at
    a line of peerdistill's, as one warning saying what it means for the page."""
    missing = [chr(int(m.group(1))) for caught in held if (m := _MISSING_GLYPH.search(str(caught.message)))]
    if not missing:
        return held
    kept = [caught for caught in held if not _MISSING_GLYPH.search(str(caught.message))]
    characters = "".join(dict.fromkeys(missing))
    said = PeerdistillWarning(f"the figures' font has no glyph for {first_few(list(characters), 10, quoted=True)}: "
                              "names holding them are drawn with boxes in their place in the report's figures (its "
                              "tables show them as written); install a font that has them (Noto Sans CJK for "
                              "Chinese, Japanese and Korean) to draw them")
    return [*kept, warnings.WarningMessage(said, PeerdistillWarning, __file__, 0)]


def is_report_page(path: Path) -> bool:
    """Whether the file ``path`` is a page ``report`` wrote (which it may replace), not a user's own."""
    with path.open("rb") as page:
        head = page.read(4096)
    earlier = (b"<title>peerdistill run: ", b"<title>peerdistill comparison: ")  # pages before the marker
    return GENERATOR.encode() in head or any(title in head for title in earlier)


def _check_writable_here(target: Path) -> None:
    """Before the page is drawn (seconds): its folder can be made, and a file of its name is a
    report this command wrote, never a page of the user's own."""
    blocking = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{option('--out', repr(str(target)))}: '{blocking}' is a file, not a folder; give another place")
    if target.is_file():
        if not is_report_page(target):
            raise ConfigError(f"'{target}' exists and is not a peerdistill report: give {option('--out')} another "
                              "name, or move that file away")
        if edited_since_written(target):
            raise ConfigError(f"'{target}' is a report edited since report wrote it: writing it again would lose the "
                              f"edits; move it away (or rename it), or give {option('--out')} another name")
