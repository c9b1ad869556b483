"""Under torchrun, a stop that Python cannot take: a process waiting for its peers inside torch's
C++ (a collective) runs no signal handler until the wait ends, which may be never. The C-level
handler still writes the signal's number to a wakeup file descriptor; a thread reading it gives
the process a while to stop as an interruption does (run marked stopped, no file half written),
then ends it as the signal's default action would have."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator

from ..stopping import STOPPING_SIGNALS
# how long a process may take to stop; torchrun's agent sends SIGKILL 30 s after its SIGTERM
STOP_GRACE_S = 10.0


@contextlib.contextmanager
def watch_for_a_stop_python_cannot_take(grace_s: float | None = None) -> Iterator[None]:
    """While the command runs (in the main thread, with the stopping signals' handlers set);
    ``grace_s``: how long a stop may take (default ``STOP_GRACE_S``)."""
    grace_s = STOP_GRACE_S if grace_s is None else grace_s
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    ended = threading.Event()
    threading.Thread(target=_end_if_not_stopped, args=(reader, grace_s, ended), daemon=True,
                     name="peerdistill-stop-watch").start()
    try:
        yield
    finally:
        ended.set()  # the command has stopped (or finished): nothing to end
        signal.set_wakeup_fd(previous)
        writer.close()  # (a watching thread still reading reads the end of the stream and returns)


def _end_if_not_stopped(reader: socket.socket, grace_s: float, ended: threading.Event) -> None:
    with reader:
        while True:
            try:
                got = reader.recv(1)
            except OSError:
                return
            if not got:
                return
            if got[0] in STOPPING_SIGNALS:
                break
    if ended.wait(grace_s):
        return
    with contextlib.suppress(OSError):  # (a terminal gone with a SIGHUP: ended all the same)
        os.write(2, f"stopped by {signal.Signals(got[0]).name}, which this process could not take for {grace_s:g} s "
                    "(waiting for the other processes inside torch): ended without marking its run stopped; the run "
                    "keeps its last checkpoint to continue from, as after any interruption\n".encode())
    os._exit(128 + got[0])
