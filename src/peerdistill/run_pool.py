"""Several runs side by side, each in its own process (``compare --jobs``).

Runs are handed out one at a time as workers come free, so after a failure no new run
starts while those under way finish (their results are on disk for the next comparison).
Ctrl-C (or a worker killed from outside) stops every worker at once, and so does the death of
the parent (``kill -9``, the out-of-memory killer); each run keeps its last checkpoint."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch
from rich.markup import escape

from .terminal import Console, one_line_warnings
from .errors import PeerdistillError
from .stopping import StoppedBySignal, taken_stopping_signals
from .option_names import options_as_flags, options_named_as_flags


def run_in_processes(items: Sequence[Any], work: Callable[[Any], Any], jobs: int, threads: int,
                     console: Console, describe: Callable[[Any], str] = str,
                     needs: Callable[[int], int | None] = lambda index: None,
                     worker_envs: Sequence[dict[str, str]] = ()) -> list[Any]:
    """``work(item)`` for every item, ``jobs`` at a time, each process limited to ``threads``
    torch threads; the results in item order. ``needs(i)``: the index of an item that must have
    finished before item ``i`` starts (a frozen run's teacher run), or None; until then the
    next items go first. ``worker_envs``: environment variables for the workers, taken in turn
    as they start (the k-th worker gets ``worker_envs[k % len]``), such as one GPU each. Every
    failure is printed; once the runs under way have finished, the failure of the earliest item
    is raised."""
    results: dict[int, Any] = {}
    failures: dict[int, Exception] = {}
    waiting = list(enumerate(items))
    running: dict[Future, int] = {}
    context = multiprocessing.get_context("spawn")
    _start_resource_tracker()
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_set_up_worker,
                               initargs=(threads, list(worker_envs), context.Value("i", 0)))
    try:
        _start_workers(pool, jobs)
        while waiting or running:
            while waiting and len(running) < jobs and not failures:
                ready = next((k for k, (index, _) in enumerate(waiting)
                              if needs(index) is None or needs(index) in results), None)
                if ready is None:  # each waits for a run under way
                    break
                index, item = waiting.pop(ready)
                running[pool.submit(_call, work, item, describe(item), options_named_as_flags())] = index
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                index = running.pop(future)
                name = describe(items[index])
                try:
                    results[index] = future.result()
                except BrokenProcessPool:
                    raise PeerdistillError(
                        "compare --jobs: a worker process died (killed, or out of memory?). Run the same command "
                        "again: finished runs are reused and unfinished ones continue from their last checkpoint; "
                        "fewer --jobs need less memory") from None
                except Exception as exc:  # noqa: BLE001 - every failure is reported, the first raised at the end
                    failures[index] = exc
                    first_line = (str(exc).splitlines() or [type(exc).__name__])[0]  # the traceback comes when raised
                    console.print(f"[bold]compare[/]: {escape(name)} failed: {escape(first_line)}"
                                  + ("; no new run starts, the runs under way finish" if running else ""))
                    continue
                console.print(f"[bold]compare[/]: {escape(name)}: done ({len(results)} of {len(items)})")
    except BaseException:  # Ctrl-C (it reaches the workers too, which would go on to the next run) or a dead worker
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if failures:
        first = min(failures)
        failure = failures[first]
        if isinstance(failure, PeerdistillError):  # the command's last line names the run, as the earlier one
            raise type(failure)(f"{describe(items[first])}: {failure}") from None
        raise failure
    return [results[i] for i in range(len(items))]


def _start_resource_tracker() -> None:
    """multiprocessing's resource tracker, started with the stopping signals it does not ignore
    itself (all but SIGINT and SIGTERM) ignored: SIGUSR1 to the command's process group (a
    scheduler's warning) killed it, and the tracker started again printed a KeyError for each of
    the pool's semaphores (review 54h). Ignored dispositions last across its exec; the handlers
    come back at once. In the main thread only (elsewhere no handler can be set)."""
    from multiprocessing import resource_tracker

    if threading.current_thread() is not threading.main_thread():
        resource_tracker.ensure_running()
        return
    spared = [sig for sig in taken_stopping_signals() if sig not in (signal.SIGINT, signal.SIGTERM)]
    before = {sig: signal.signal(sig, signal.SIG_IGN) for sig in spared}
    try:
        resource_tracker.ensure_running()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _call(work: Callable[[Any], Any], item: Any, name: str = "", as_flags: bool = False) -> Any:
    """``work(item)`` in a worker. Its error goes back to the parent by pickle: peerdistill's own
    errors (one message) survive that; any other is sent as its type, message and traceback in
    text, since an exception that cannot be pickled, or rebuilt, would otherwise look like a
    dead worker or lose its message. Its warnings print as the command line's do, naming the run;
    its messages name options as the parent's do (``as_flags``: a command line's flags)."""
    _RUNNING[0] = True
    _SIGNALLED.clear()
    for sig in taken_stopping_signals():  # (a run stopped by a signal left them at _already_stopping)
        signal.signal(sig, _stop_this_worker)
    try:
        with warnings.catch_warnings(), (options_as_flags() if as_flags else contextlib.nullcontext()):
            warnings.showwarning = one_line_warnings(warnings.showwarning, source=name)
            return work(item)
    except PeerdistillError:
        raise
    except KeyboardInterrupt:
        if not _SIGNALLED:
            raise
        # A signal to this worker alone (one the parent got too interrupts the parent itself, which
        # then stops every run): this run's failure, the others go on (review 47d).
        raise PeerdistillError(f"its worker process was stopped by {signal.Signals(_SIGNALLED[0]).name} (the run is "
                               "marked stopped, nothing half written): run the same command again to continue it "
                               "from its last checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - re-raised as text
        raise RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}") from None
    finally:
        _RUNNING[0] = False


def _set_up_worker(threads: int, envs: list[dict[str, str]], started: Any) -> None:
    """A worker's set-up: its torch threads and its turn of ``envs``. ``started`` counts the
    workers started so far (shared by all). Set before the worker's first run, so before
    CUDA starts there, which reads CUDA_VISIBLE_DEVICES once."""
    torch.set_num_threads(threads)
    for sig in taken_stopping_signals():  # (SIGUSR1 too, a scheduler's early warning: review 54f)
        signal.signal(sig, _stop_this_worker)
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True).start()
    with started.get_lock():
        turn = started.value
        started.value += 1
    if envs:
        os.environ.update(envs[turn % len(envs)])


ORPHAN_CHECK_S = 1.0  # how often a worker looks for its parent
ORPHAN_GRACE_S = 60.0  # how long an orphan's run may take to stop before the worker ends regardless

_RUNNING: list[bool] = [False]  # whether this worker has a run under way (``_call``)
_SIGNALLED: list[int] = []  # the signal that stopped the run under way


def _stop_this_worker(signum, frame) -> None:
    """Ctrl-C (which reaches the workers with the parent) or the parent's SIGTERM (``_stop_workers``;
    review 46h: a worker ended by it mid-write left a checkpoint's temporary file and a run.json
    saying running): the run under way stops as a command's does on Ctrl-C (marked stopped, no
    file half written), once: a second signal would cut that short, so it is ignored. An idle
    worker ends, releasing what it holds."""
    for sig in taken_stopping_signals():
        signal.signal(sig, _already_stopping)
    if not _RUNNING[0]:
        # Unwound, not os._exit: an idle worker may be sending back its last result, holding the
        # result queue's lock, which another worker then waited on forever (a hang seen in CI).
        raise SystemExit(128 + signum)
    _SIGNALLED.append(signum)
    raise StoppedBySignal(signum)  # (its run records which: review 54f)


def _already_stopping(signum, frame) -> None:
    """A second signal while the run stops: ignored. A handler that does nothing, not SIG_IGN:
    CPython reports a signal still pending when its handler became SIG_IGN as an error, with a
    traceback ("Signal 15 ignored due to race condition"; review 47b saw it on every Ctrl-C)."""


def _stop_when_orphaned(parent: int) -> None:
    """A worker whose parent died without stopping it (killed by SIGKILL, which it cannot catch)
    trained on unseen, held its run's lock against the command run again, then waited forever
    on the pool's queues: it stops as the parent would have stopped it (``_stop_workers``)."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)
    # the run stops (its handler), then the worker ends: no parent to take the next run from
    deadline = time.monotonic() + ORPHAN_GRACE_S
    while _RUNNING[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    os._exit(128 + signal.SIGTERM)


def _ready() -> None:
    """The no-op task that starts a worker."""


def _start_workers(pool: ProcessPoolExecutor, jobs: int) -> None:
    # Start every worker before the runs: Python 3.11 spawns a worker after waking the pool's
    # manager thread, which then does not watch that worker, so its death went unnoticed until
    # another run ended. Once the starting tasks are done, it watches them all.
    for future in [pool.submit(_ready) for _ in range(jobs)]:
        future.result()


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
