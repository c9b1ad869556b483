"""compare --jobs's process pool: runs handed out as workers come free, failures reported, no
new run after one, Ctrl-C and a dead worker stopping everything."""

import os
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from peerdistill.errors import ConfigError, PeerdistillError
from peerdistill.run_pool import run_in_processes


def _job(item):
    """Module level, so spawned workers can import it: (folder, index, what to do). Leaves
    started-<index> (naming the runs finished by then) and, if it got to the end, finished-<index>."""
    folder, index, action = item
    Path(folder, f"started-{index}").write_text(" ".join(finished(folder)))
    if action == "fail":
        raise ValueError(f"run {index} broke")
    if action == "refuse":
        raise ConfigError("data.root 'x' does not exist: set data.root to the data's folder")
    if action == "interrupt":
        raise KeyboardInterrupt
    if action == "die":
        os._exit(9)
    time.sleep(action)
    Path(folder, f"finished-{index}").touch()
    return index * 10


def started(folder):
    return sorted(int(p.name.split("-")[1]) for p in Path(folder).glob("started-*"))


def finished(folder):
    return sorted(p.name for p in Path(folder).glob("finished-*"))


def test_results_come_back_in_item_order(tmp_path, capsys):
    items = [(tmp_path, i, delay) for i, delay in enumerate([0.6, 0.0, 0.3])]
    assert run_in_processes(items, _job, 2, 1, Console(), describe=lambda it: f"run {it[1]}") == [0, 10, 20]
    assert "done (3 of 3)" in capsys.readouterr().out
    assert started(tmp_path) == [0, 1, 2]


def test_a_run_waits_for_the_one_it_needs_while_later_ones_go_first(tmp_path, capsys):
    # run 1 needs run 0 (a frozen run and its teacher's run): run 2 takes the free worker meanwhile
    items = [(tmp_path, 0, 2.0), (tmp_path, 1, 0.0), (tmp_path, 2, 0.0)]
    results = run_in_processes(items, _job, 2, 1, Console(width=200), describe=lambda it: f"run {it[1]}",
                               needs=lambda i: 0 if i == 1 else None)
    assert results == [0, 10, 20]
    done = [line.split(":")[1].strip() for line in capsys.readouterr().out.splitlines() if "done" in line]
    assert done[-1] == "run 1"
    # run 2 started while run 0 ran (told by the markers, not by timing: a loaded machine may start a
    # worker late), and run 1 after run 0 had finished: it saw run 0's marker (and run 2's)
    assert "finished-0" not in Path(tmp_path, "started-2").read_text().split()
    assert Path(tmp_path, "started-1").read_text().split() == ["finished-0", "finished-2"]


def test_after_a_failure_no_new_run_starts_and_every_failure_is_reported(tmp_path, capsys):
    items = [(tmp_path, 0, "fail"), (tmp_path, 1, 1.5), (tmp_path, 2, 0.0), (tmp_path, 3, 0.0)]
    with pytest.raises(RuntimeError, match="ValueError: run 0 broke"):  # its type, message and traceback
        run_in_processes(items, _job, 2, 1, Console(width=200), describe=lambda it: f"run {it[1]}")
    printed = capsys.readouterr().out
    assert "run 0 failed: ValueError: run 0 broke; no new run starts, the runs under way finish" in printed
    assert "run 1: done" in printed  # the run under way finished
    assert started(tmp_path) == [0, 1]
    two = [(tmp_path, 4, "refuse"), (tmp_path, 5, "fail")]
    # the earliest failure is raised: peerdistill's own refusal, whose one line (the command's
    # last) names the run, as the line printed when it failed does
    with pytest.raises(ConfigError, match="^run 4: data.root 'x' does not exist: set data.root"):
        run_in_processes(two, _job, 2, 1, Console(width=200), describe=lambda it: f"run {it[1]}")
    printed = capsys.readouterr().out
    assert "run 4 failed: data.root 'x' does not exist" in printed and "run 5 failed: ValueError: run 5 broke" in printed


def test_ctrl_c_stops_every_worker_and_starts_nothing_new(tmp_path):
    items = [(tmp_path, 0, "interrupt"), (tmp_path, 1, 30.0), (tmp_path, 2, 0.0)]
    with pytest.raises(KeyboardInterrupt):
        run_in_processes(items, _job, 2, 1, Console())
    assert finished(tmp_path) == [], "the 30 s run was stopped, not waited for"
    assert 2 not in started(tmp_path)


def test_a_worker_that_dies_is_one_clear_message(tmp_path):
    items = [(tmp_path, 0, "die"), (tmp_path, 1, 30.0)]
    with pytest.raises(PeerdistillError, match="a worker process died .* Run the same command again"):
        run_in_processes(items, _job, 2, 1, Console())
    assert finished(tmp_path) == [], "the 30 s run was stopped, not waited for"


def _pid_then_wait(item):
    folder, index = item
    Path(folder, f"worker-{index}").write_text(str(os.getpid()))
    time.sleep(60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _two_workers_in_a_subprocess(folder, job: str, setup: str = "", **popen):
    """A parent process running ``job`` (a function of this module) on two items, two workers."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    script = (f"import sys; sys.path.insert(0, {str(root)!r}); {setup}from rich.console import Console; "
              f"from peerdistill.run_pool import run_in_processes; from tests.test_run_pool import {job}; "
              f"run_in_processes([({str(folder)!r}, 0), ({str(folder)!r}, 1)], {job}, 2, 1, Console())")
    return subprocess.Popen([sys.executable, "-c", script], **popen)


def _started_workers(parent, folder, marker: str) -> list[int]:
    """The workers' process ids, once both have written ``marker-<index>`` (holding their pid)."""
    deadline = time.monotonic() + 60
    while len(list(Path(folder).glob(f"{marker}-*"))) < 2:
        assert time.monotonic() < deadline and parent.poll() is None, "the workers did not start"
        time.sleep(0.1)
    return [int(p.read_text()) for p in Path(folder).glob(f"{marker}-*")]


@pytest.mark.skipif(not hasattr(os, "getppid") or not Path("/proc").is_dir(), reason="needs Linux's /proc")
def test_workers_stop_when_the_parent_is_killed(tmp_path):
    # kill -9 of compare --jobs left its workers training (holding their runs' locks against the
    # command run again), then waiting forever on the pool's queues
    import signal

    parent = _two_workers_in_a_subprocess(tmp_path, "_pid_then_wait")
    try:
        workers = _started_workers(parent, tmp_path, "worker")
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "a worker outlived its parent"
    finally:
        parent.kill()
        for path in tmp_path.glob("worker-*"):
            try:
                os.kill(int(path.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _writes_until_stopped(item):
    """A run half way through writing a file, as a checkpoint: stopped, it removes it (as the
    trainer's atomic writes do on Ctrl-C) and says so."""
    folder, index = item
    part = Path(folder, f"part-{index}.tmp")
    part.write_text(str(os.getpid()))
    try:
        # short sleeps, as a training loop runs Python often: a signal the kernel hands to another
        # thread of the worker is taken by the main one only when it next runs Python code
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
    except BaseException as exc:  # (the signal it names, as the run marked stopped records it)
        part.unlink()
        Path(folder, f"stopped-{index}").write_text(str(getattr(exc, "signum", "")))
        raise


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")
def test_a_terminated_comparison_lets_its_workers_runs_stop_cleanly(tmp_path):
    """Review 46h: SIGTERM to compare --jobs (a timeout, a scheduler) ended its workers mid-write,
    leaving a checkpoint's temporary file and run.json saying running; each run now stops as a
    command's does on Ctrl-C."""
    import signal
    import subprocess

    # (the parent turns SIGTERM into an interruption, as the command line does)
    parent = _two_workers_in_a_subprocess(
        tmp_path, "_writes_until_stopped",
        setup="import signal; signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())); ",
        stderr=subprocess.PIPE, text=True)
    try:
        workers = _started_workers(parent, tmp_path, "part")
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) != 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped-0", "stopped-1"]
        assert not any(_alive(pid) for pid in workers)
        # review 47b: the parent's second signal, pending as the handler changed, printed CPython's traceback
        assert "race condition" not in parent.stderr.read()
    finally:
        parent.kill()



@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")
def test_sigusr1_to_the_whole_process_group_stops_the_runs_without_the_resource_trackers_tracebacks(tmp_path):
    """Review 54h: a scheduler's SIGUSR1 to the command's process group killed multiprocessing's
    resource tracker too, which, started again, printed a KeyError per semaphore."""
    import signal
    import subprocess

    parent = _two_workers_in_a_subprocess(
        tmp_path, "_writes_until_stopped",
        setup="import signal; signal.signal(signal.SIGUSR1, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())); ",
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _started_workers(parent, tmp_path, "part")
        os.killpg(parent.pid, signal.SIGUSR1)
        assert parent.wait(timeout=60) != 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped-0", "stopped-1"]
        err = parent.stderr.read()
        assert "KeyError" not in err and "resource_tracker" not in err, err[-3000:]
    finally:
        parent.kill()

def _one_stopped_one_done(item):
    """Run 0 as ``_writes_until_stopped``; run 1 waits for run 0 to be stopped, then finishes."""
    folder, index = item
    if index == 0:
        return _writes_until_stopped(item)
    Path(folder, "part-1.tmp").write_text(str(os.getpid()))
    while not Path(folder, "stopped-0").exists():
        time.sleep(0.05)
    Path(folder, "part-1.tmp").unlink()
    Path(folder, "done-1").touch()
    return index


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1"])
def test_a_signal_to_one_worker_alone_fails_its_run_and_lets_the_others_finish(tmp_path, name):
    """Review 47d: it read as the user's Ctrl-C of the whole comparison, every run stopped.
    Review 54f: SIGUSR1 (a scheduler's early warning) killed the worker outright, and a run
    stopped by a signal was recorded as by Ctrl-C."""
    import signal
    import subprocess

    parent = _two_workers_in_a_subprocess(tmp_path, "_one_stopped_one_done", stderr=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True)
    try:
        first = int(_wait_for(tmp_path / "part-0.tmp", parent).read_text())
        _wait_for(tmp_path / "part-1.tmp", parent)
        os.kill(first, getattr(signal, name))
        assert parent.wait(timeout=60) != 0
        err = parent.stderr.read()
        assert f"its worker process was stopped by {name} (the run is marked stopped, nothing half written): run " \
               "the same command again to continue it from its last checkpoint" in " ".join(err.split())
        assert "KeyboardInterrupt" not in err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["done-1", "stopped-0"]
        assert (tmp_path / "stopped-0").read_text() == str(int(getattr(signal, name)))
    finally:
        parent.kill()


def _wait_for(path: Path, parent) -> Path:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline and parent.poll() is None, f"{path.name} was not written"
        time.sleep(0.05)
    time.sleep(0.1)  # (its pid written)
    return path


class TwoArguments(Exception):
    def __init__(self, run, why):  # pickles, but cannot be rebuilt from its message alone
        super().__init__(f"{run}: {why}")


def _odd_failure(item):
    folder, index, kind = item
    if kind == "two-arguments":
        raise TwoArguments(index, "the data is missing")
    if kind == "unpicklable":
        error = ValueError("the real problem: the data is missing")
        error.lock = __import__("threading").Lock()
        raise error
    time.sleep(kind)
    return index


@pytest.mark.parametrize("kind", ["two-arguments", "unpicklable"])
def test_any_error_of_a_run_comes_back_with_its_message_and_the_others_finish(tmp_path, capsys, kind):
    with pytest.raises(RuntimeError, match="the data is missing") as info:
        run_in_processes([(tmp_path, 0, kind), (tmp_path, 1, 1.0)], _odd_failure, 2, 1, Console(width=300),
                         describe=lambda it: f"run {it[1]}")
    assert ("TwoArguments" if kind == "two-arguments" else "ValueError") in str(info.value)
    assert "run 1: done" in capsys.readouterr().out


def _warns(item):
    import warnings

    from peerdistill.errors import PeerdistillWarning

    warnings.warn("3 of 7 training steps skipped", PeerdistillWarning)
    return item


def test_a_workers_warnings_are_one_line_naming_its_run(capsys):
    """What a run in a worker process warns prints as on the command line, with the run named
    (several run at once)."""
    from peerdistill.run_pool import _call

    assert _call(_warns, 7, "kd seed 1") == 7
    assert capsys.readouterr().err == "warning: kd seed 1: 3 of 7 training steps skipped\n"


def _report_turn(item):
    time.sleep(0.3)  # long enough that both workers take runs
    return os.getpid(), os.environ.get("PEERDISTILL_TEST_TURN")


def test_each_worker_takes_the_next_environment_in_turn(monkeypatch):
    from multiprocessing import Value

    from peerdistill.run_pool import _set_up_worker
    monkeypatch.setenv("PEERDISTILL_TEST_TURN", "")  # removed again after the test
    started = Value("i", 0)
    envs = [{"PEERDISTILL_TEST_TURN": "a"}, {"PEERDISTILL_TEST_TURN": "b"}]
    seen = []
    for _ in range(3):
        _set_up_worker(torch.get_num_threads(), envs, started)
        seen.append(os.environ["PEERDISTILL_TEST_TURN"])
    assert seen == ["a", "b", "a"]


def test_workers_run_with_their_own_environment(tmp_path):
    envs = [{"PEERDISTILL_TEST_TURN": "a"}, {"PEERDISTILL_TEST_TURN": "b"}]
    results = run_in_processes(list(range(4)), _report_turn, 2, 1, Console(), worker_envs=envs)
    turn_of = {}
    for pid, turn in results:
        assert turn_of.setdefault(pid, turn) == turn  # a worker keeps its environment
    assert set(turn_of.values()) <= {"a", "b"} and len(set(turn_of.values())) == len(turn_of)
    assert "PEERDISTILL_TEST_TURN" not in os.environ  # the parent's is untouched


def test_a_worker_runs_with_its_share_of_the_threads():
    # Each worker is given its share of the CPU threads (jobs workers at once must not each take them all).
    from multiprocessing import Value

    from peerdistill.run_pool import _set_up_worker
    before = torch.get_num_threads()
    try:
        _set_up_worker(before + 1, [], Value("i", 0))
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)


def _names_an_option(item):
    from peerdistill.option_names import option

    raise ConfigError(f"the run is finished: {option('--overwrite')} redoes it")


def test_a_workers_messages_name_options_as_the_parents_do(tmp_path):
    # review 45a: compare --jobs from the command line named Python's overwrite=True, as the
    # workers did not know a command was running
    from peerdistill.option_names import options_as_flags

    with options_as_flags(), pytest.raises(ConfigError, match=r"the run is finished: --overwrite redoes it"):
        run_in_processes([(tmp_path, 0)], _names_an_option, 2, 1, Console(), describe=lambda it: "run 0")
    with pytest.raises(ConfigError, match=r"the run is finished: overwrite=True redoes it"):
        run_in_processes([(tmp_path, 0)], _names_an_option, 2, 1, Console(), describe=lambda it: "run 0")


def test_an_idle_worker_stopped_while_sending_back_a_result_releases_the_queues_lock():
    """os._exit in the handler left the result queue's lock held by a dead worker, and the other
    worker waited on it forever (a hang of test_ctrl_c_stops_every_worker_and_starts_nothing_new)."""
    import multiprocessing
    import signal

    from peerdistill import run_pool

    lock = multiprocessing.get_context("spawn").Lock()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stopped:
            with lock:  # as SimpleQueue.put holds it
                run_pool._stop_this_worker(signal.SIGTERM, None)
        assert stopped.value.code == 128 + signal.SIGTERM
        assert lock.acquire(timeout=1)  # released by the unwinding
        lock.release()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
