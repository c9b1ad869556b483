"""One process trains a run directory at a time.

A second ``train --resume``, a second ``compare`` over the same folder or a ``--overwrite``
while a run trains would otherwise train (or delete) it beside the first, both writing the
same files. The trainer holds an advisory lock (``flock``) on the run directory itself for as
long as it trains: no file is left behind, and the operating system releases it when the
process ends, however it ends (a ``kill -9`` leaves no stale lock). A forked child (a data
loader's worker) closes its copy of the descriptor at once: an flock belongs to the open file,
which the child's copy would otherwise keep locked after the trainer let go of it. Where locking
is not available (Windows, a file system that refuses it) runs are not locked.

The command line takes a resumed run's lock ahead of the trainer (``held_ahead``), before the
data is read and the models built: a run another process trains is refused at once, and none
can take it in between; the trainer's ``hold(take_over=True)`` takes that lock over.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import RunDirError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None


def _lock(path: Path) -> int | None:
    """An open descriptor holding the lock, or None where locking is unavailable; raises
    ``BlockingIOError`` while another holds it."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError:  # a file system without flock (some network mounts): unlocked, as before
        os.close(fd)
        return None
    return fd


_HELD: set[int] = set()  # this process's lock descriptors
_RESUMING: set[int] = set()  # those of them a resume took (ahead of its set-up, or its trainer's)
_AHEAD: dict[tuple[int, int], int] = {}  # locks taken ahead of the trainer, by folder (device, inode)


def _drop_in_child() -> None:
    """After a fork: the child lets go of the parent's locks (they stay with the parent)."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()
    _AHEAD.clear()
    _RESUMING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)


def busy_message(path: Path) -> str:
    holder = _holder(path)
    return (f"'{path}' is being trained by another process{f' ({holder})' if holder else ''} right now: wait for "
            "it to finish (or stop it; then --resume continues it), rather than train or delete it a second time "
            "beside it")


def _holder(path: Path) -> str | None:
    """"process PID" of the lock's holder, where Linux's /proc/locks says it (a worker of a
    killed compare --jobs held it, out of sight of the shell that ran it); else None."""
    try:
        stat = os.stat(path)
        device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
        for line in Path("/proc/locks").read_text().split("\n"):
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == device and fields[4] != str(os.getpid()):
                return f"process {fields[4]}"
    except (OSError, AttributeError):  # not Linux, or the run folder gone meanwhile
        pass
    return None


def hold(path: str | Path, take_over: bool = False) -> int | None:
    """Take the lock of run directory ``path`` for this process (release it with ``release``);
    a ``RunDirError`` when another process (or another holder in this one) trains it. With
    ``take_over`` (the trainer), a lock taken ahead of it (``held_ahead``) on the same folder is
    taken over: this holder releases it."""
    if take_over and _AHEAD:
        try:
            stat = os.stat(path)
        except OSError:
            pass
        else:
            fd = _AHEAD.pop((stat.st_dev, stat.st_ino), None)
            if fd is not None:
                return fd
    try:
        fd = _lock(Path(path))
    except BlockingIOError:
        raise RunDirError(busy_message(Path(path))) from None
    if fd is not None:
        _HELD.add(fd)
        if take_over:  # (the trainer of a resume, where no lock was taken ahead: under torchrun, or in Python)
            _RESUMING.add(fd)
    return fd


@contextlib.contextmanager
def held_ahead(path: str | Path):
    """The lock of run directory ``path`` held from now (a ``RunDirError`` at once where another
    process trains it) until the trainer's ``hold(path, take_over=True)`` takes it over; released
    on leaving where none did (the set-up before training failed). Meanwhile this process's own
    ``check_free`` finds it held, as another holder's. Nothing is held where locking is unavailable."""
    fd = hold(path)
    if fd is None:
        yield
        return
    stat = os.fstat(fd)
    key = (stat.st_dev, stat.st_ino)
    _AHEAD[key] = fd
    _RESUMING.add(fd)
    try:
        yield
    finally:
        if _AHEAD.get(key) == fd:  # not taken over: this one's to release
            del _AHEAD[key]
            release(fd)


def release(fd: int | None) -> None:
    if fd is not None:
        _HELD.discard(fd)
        _RESUMING.discard(fd)
        os.close(fd)  # closing the descriptor drops its lock


def check_free(path: str | Path) -> None:
    """A ``RunDirError`` when a process trains the run directory ``path`` now; nothing is held."""
    if Path(path).is_dir():
        release(hold(path))


def is_locked_here(path: str | Path) -> bool:
    """Whether run directory ``path`` can be locked on this system (so a process training it
    would hold its lock); a ``RunDirError`` when one does now."""
    fd = hold(path)
    release(fd)
    return fd is not None


def resuming_here(path: str | Path) -> bool:
    """Whether this process holds the lock of run directory ``path`` to resume it (taken ahead of
    the resume's set-up, or by its trainer): that lock is no other run starting in the folder."""
    try:
        folder = os.stat(path)
    except OSError:
        return False
    for fd in list(_RESUMING):
        try:
            held = os.fstat(fd)
        except OSError:
            continue
        if (held.st_dev, held.st_ino) == (folder.st_dev, folder.st_ino):
            return True
    return False


def is_held(path: str | Path) -> bool:
    """Whether a process trains the run directory ``path`` now (readers say so; nothing is held)."""
    try:
        check_free(path)
    except RunDirError:
        return True
    return False
