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
        signal.set_wakeup_fd(previous)  # (first: a signal now is written to no socket the thread may close)
        ended.set()  # the command has stopped (or finished): nothing to end
        writer.close()  # (a watching thread still reading reads the end of the stream and returns)


def _end_if_not_stopped(reader: socket.socket, grace_s: float, ended: threading.Event) -> None:
    # The reader stays open through the grace: a second signal (a scheduler's SIGTERM, then
    # torchrun's) written to a closed pair printed a BrokenPipeError traceback (review 56c).
    with reader:
        got = _first_stopping_signal(reader)
        if got is None or ended.wait(grace_s):
            return
        with contextlib.suppress(OSError):  # (a terminal gone with a SIGHUP: ended all the same)
            os.write(2, f"stopped by {signal.Signals(got).name}, which this process could not take for {grace_s:g} "
                        "s (waiting for the other processes inside torch): ended without marking its run stopped; the "
                        "run keeps its last checkpoint to continue from, as after any interruption\n".encode())
        os._exit(128 + got)


def _first_stopping_signal(reader: socket.socket) -> int | None:
    """The number of the first stopping signal written to ``reader``; None once it is closed."""
    while True:
        try:
            got = reader.recv(1)
        except OSError:
            return None
        if not got:
            return None
        if got[0] in STOPPING_SIGNALS:
            return got[0]
