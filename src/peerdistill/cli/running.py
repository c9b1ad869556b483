"""Running one command: its arguments parsed, its failures said once (under torchrun, once per
node), SIGTERM and Ctrl-C turned into a hint of what is left and how to go on."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import shlex
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import NoReturn

from rich.markup import escape

from ..errors import ConfigError, PeerdistillError, PeerdistillWarning
from ..option_names import options_as_flags
from ..wording import shell_word
from ..launcher import launched, launched_rank, launched_world, not_first_on_node
from ..run_files import RESUME_FILE
from ..terminal import one_line_warnings, write_any_character
from .arguments import build_parser
from .consoles import err_console
from ..stopping import StoppedBySignal, taken_stopping_signals
from .stop_watch import watch_for_a_stop_python_cannot_take


def main(argv: list[str] | None = None, *, exiting: bool = False) -> int:
    """Run one command; its exit code. ``exiting``: the process ends after it (the
    ``peerdistill`` command), so a SIGTERM or Ctrl-C arriving once the command is done is
    ignored rather than killing the process with its output half flushed (a scheduler would
    read a finished run as killed, and its --resume would then be refused)."""
    write_any_character(sys.stdout, sys.stderr)
    with _said_by_the_nodes_first_process():
        ns = _parsed(list(sys.argv[1:] if argv is None else argv))
    # SIGTERM (timeout, Slurm, Kubernetes) and SIGHUP (a closed terminal or ssh session) end a
    # command as Ctrl-C does: files being written are removed, not left half-written, the run is
    # marked stopped and the hint says what is left. SIGINT gets a handler too, only to remember
    # that it came (see _ARRIVED). A signal ignored as the command starts (nohup, a shell's
    # background job) stays ignored (review 50a: a Ctrl-C meant for a script stopped its job).
    # Under torchrun a process waiting for its peers inside torch's C++ runs no handler until the
    # wait ends, so a watch ends it as the signal would have if it has not stopped in a while
    # (review 50a: without a handler there, a scheduler's SIGTERM left runs marked running).
    # Not under another launcher (RANK and WORLD_SIZE set), which may not wait for its processes.
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ
    handled = threading.current_thread() is threading.main_thread() and (torchrun or not launched())
    _ARRIVED.clear()
    stopping = taken_stopping_signals() if handled else []
    before = {sig: signal.signal(sig, _interrupt) for sig in stopping}
    watch = watch_for_a_stop_python_cannot_take() if before and torchrun else contextlib.nullcontext()
    try:
        with watch:
            return _run(ns)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, signal.SIG_IGN if exiting else handler)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # (closed, or its reader gone: nothing more to say)
                stream.flush()


def _parsed(given: list[str]) -> argparse.Namespace:
    """The command line read; argparse's own usage errors exit (2) from here."""
    parser = build_parser()
    _refuse_options_before_the_command(parser, given)
    # Positional overrides (train --quiet a=b) and predict's inputs (predict RUN a.png --out p.csv
    # b.png) may come after flags; argparse leaves those over.
    ns, extra = parser.parse_known_args(given)
    positional = next((name for name in ("args", "overrides", "inputs") if hasattr(ns, name)), None)
    if extra and (positional is None or any(e.startswith("-") for e in extra)):
        parser.commands[ns.command].error(
            f"unrecognized arguments: {' '.join(extra)}{_hint(extra, parser.commands[ns.command], ns.command, given)}")
    if extra:
        setattr(ns, positional, getattr(ns, positional) + extra)
    return ns


@contextlib.contextmanager
def _said_by_the_nodes_first_process():
    """Under torchrun, what the other processes of a node would print of the command line
    (usage errors, --help) is left to its first: each process reads the same one alike."""
    if not not_first_on_node():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _refuse_options_before_the_command(parser: argparse.ArgumentParser, given: list[str]) -> None:
    """``peerdistill --quiet train``: each command's options go after it (argparse would say the
    command's own --quiet is unrecognized, or, with no command, only that one is required)."""
    before = []
    for arg in given:
        if arg in ("-h", "--help", "--version"):  # the program's own options
            return
        if not arg.startswith("-"):
            if before and arg in parser.commands:
                parser.error(f"{' '.join(before)}: a command's options go after it (peerdistill {arg} "
                             f"{' '.join(before)} ...)")
            break
        before.append(arg)
    if before:
        parser.error(f"unrecognized arguments: {' '.join(before)} (a command comes first, its options after it: "
                     f"peerdistill --help lists the commands)")


def _run(ns: argparse.Namespace) -> int:
    """The command, its failures as one message and an exit code."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warnings(warnings.showwarning)
            _one_process_commands(ns.command)
            if launched_rank() > 0:  # said by the main process; every process would say it again
                warnings.simplefilter("ignore", PeerdistillWarning)
            with options_as_flags():
                return ns.func(ns)
    except PeerdistillError as exc:
        if _ARRIVED:  # an interruption that came out as another error
            return _interrupted(ns, _ARRIVED[-1])
        _say_once_per_node(str(exc), exc.said_alike)
        return 2
    except Warning as exc:  # made an error by the warnings filter (PYTHONWARNINGS=error, -W error)
        library = type(exc).__module__.split(".")[0]  # (a plain UserWarning's is builtins: no news)
        by = "" if isinstance(exc, PeerdistillWarning) or library == "builtins" else f" by {library}"
        _say_once_per_node(f"{exc} (a warning{by}, raised as an error by Python's warnings filter: PYTHONWARNINGS "
                           "or -W)")
        return 2
    except KeyboardInterrupt as exc:  # (not told: torchrun's agent may be going, and a store not there is waited for)
        return _interrupted(ns, exc)
    except MemoryError as exc:  # (numpy's allocation of data asked for by a slip: its traceback said it; review 55j)
        said = f": {exc}" if str(exc) else ""
        _say_once_per_node(f"out of memory{said}: ask for less (fewer or smaller images, smaller batches), or run "
                           f"where there is more memory{_kept_for_resume(ns)}")
        return 2
    except BrokenPipeError:  # `peerdistill eval --json | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file the command had to read or write: permissions, a full disk, a file for a folder
        if exc.errno == errno.ENOSPC:
            where = f" holding '{exc.filename}'" if exc.filename else ""
            _say_once_per_node(f"no space left on the device{where}: free some, then run the command again"
                               f"{_kept_for_resume(ns)}")
            return 2
        advice = _DISK_ADVICE.get(exc.errno)
        if advice is not None:  # the disk, not the path: said as such, with what the run keeps
            where = f" writing '{exc.filename}'" if exc.filename else ""
            _say_once_per_node(f"{exc.strerror or exc}{where}: {advice}{_kept_for_resume(ns)}")
            return 2
        where = f": '{exc.filename}'; check the path and its permissions" if exc.filename else ""
        # (a run folder shared read-only: its report, its export; not where a file could not be read)
        elsewhere = ("; or write elsewhere with --out" if getattr(ns, "out", "") is None and exc.errno in
                     (errno.EACCES, errno.EPERM) and not _unreadable(exc.filename) else "")
        _say_once_per_node(f"{exc.strerror or exc}{where}{elsewhere}")
        return 2


def _unreadable(path: str | None) -> bool:
    """Whether ``path`` is a file there that cannot be read (the failure a read's, not a write's)."""
    return bool(path) and os.path.isfile(path) and not os.access(path, os.R_OK)


# Failures of the disk rather than of a path (review 51f: "File too large" was told to check permissions)
_DISK_ADVICE = {errno.EFBIG: "a file outgrew the size this shell or file system allows (ulimit -f, FAT32's 4 GiB); "
                             "raise the limit or write elsewhere, then run the command again",
                errno.EDQUOT: "your disk quota is used up; free some, then run the command again",
                errno.EIO: "the device failed to read or write (a disk error, or a network file system gone); "
                           "check it, then run the command again",
                errno.EROFS: "the file system is mounted read-only; write elsewhere (out_dir; --out for compare, "
                             "export, predict and report), then run the command again"}


def _kept_for_resume(ns: argparse.Namespace) -> str:
    """After a training stopped by a failure of the disk: what its run keeps, if a checkpoint."""
    run_dir = getattr(ns, "run_dir", None)
    if ns.command != "train" or run_dir is None or not (Path(run_dir) / RESUME_FILE).is_file():
        return ""
    from ..engine.artifacts import RunDir  # (set once cmd_train had imported the engine)

    if RunDir(Path(run_dir)).is_complete:
        return ""
    return f" (the run keeps its last checkpoint: peerdistill train --resume {shlex.quote(str(run_dir))} continues it)"


def _say(error: str) -> None:
    """Print a failure. A stderr that cannot take it (closed, a full disk) loses the message, not
    the exit code: the command still ends with 2, not as a bug."""
    with contextlib.suppress(OSError, AttributeError):  # (closed at start: sys.stderr is None)
        err_console.print(f"[bold red]error:[/] {escape(error)}", highlight=False, soft_wrap=True)
        sys.stderr.flush()


def _say_once_per_node(error: str, said_alike: str | None = None) -> None:
    """Print a failure; under torchrun, tell the other processes first (before the process group
    is joined, on other nodes they would wait for this one), and print once per node what every
    process of it stops with: a node's processes share its terminal. ``said_alike``: the
    message every process stops with alike (``PeerdistillError.said_alike``)."""
    if not launched():
        _say(error)
        return
    from ..engine.distributed import joined_before, mark_said, said_by_first_on_node, tell_failure

    try:
        tell_failure(error)
        # One process failing alone after the group is joined says so at once: the others'
        # errors come later, and a wait here could see it stopped before it spoke.
        if (said_alike is not None or not joined_before()) and said_by_first_on_node(said_alike or error):
            return
    except Exception:  # noqa: BLE001 - the store gone: the others have stopped already
        pass
    _say(error)
    try:
        mark_said(said_alike or error)
    except Exception:  # noqa: BLE001 - as above
        pass


# What torchrun may launch in several processes: the commands that train.
DISTRIBUTED_COMMANDS = ("train", "compare")


def _one_process_commands(command: str) -> None:
    """Another command under torchrun would run whole in every process, each writing the same
    files (and printing, with --json, documents one after another)."""
    processes = launched_world()[1] if launched() else 1
    if processes > 1 and command not in DISTRIBUTED_COMMANDS:
        raise ConfigError(f"{command} runs in one process, not in the {processes} torchrun started: run "
                          f"peerdistill {command} without torchrun (only train and compare share their work)")


# The config keys each command takes as key=value overrides (None: every key).
OVERRIDES_TAKEN = {"train": None, "compare": None, "eval": ("data.", "detect.")}


def _hint(extra: list[str], command_parser: argparse.ArgumentParser, command: str, given: list[str]) -> str:
    """What an unrecognized option likely meant: the command's own option of a close name, the
    config key of its name, or both (``compare --seed 3``: ``--seeds 3`` counts the seeds,
    ``seed=3`` moves the first; review 47b: the key alone was offered)."""
    if "--config" in extra and command in ("train", "compare"):
        return (f" (the config file goes without --config, before the key=value overrides: peerdistill {command} "
                "CONFIG.yaml [key=value ...])")
    close, keys = _close_option(extra, command_parser), _as_overrides(extra, command, given)
    written = " or ".join(keys)
    if close and keys:
        return f" (did you mean {close}? or the config key, written key=value: {written})"
    if keys:
        return f" (config keys are given as key=value, not as options: write {written})"
    return f" (did you mean {close}?)" if close else ""


def _close_option(extra: list[str], command_parser: argparse.ArgumentParser) -> str | None:
    """The command's option closest to an unrecognized one (``--preset`` for ``--presets``)."""
    import difflib

    options = [o for action in command_parser._actions for o in action.option_strings if o.startswith("--")]
    for arg in extra:
        name = arg.partition("=")[0]
        if name.startswith("--"):
            close = difflib.get_close_matches(name, options, n=1, cutoff=0.85)
            if close:
                return close[0]
            # the start of one option (--dry, --quant): options are not abbreviated, so that a
            # new option never changes what an old command line means (review 51f)
            started = [option for option in options if option.startswith(name) and len(name) > 2]
            if started:  # (several: each named, --per for --per-class or --per-sample)
                return " or ".join(started)
    return None


def _as_overrides(extra: list[str], command: str, given: list[str]) -> list[str]:
    """``--epochs 2`` where ``train.epochs=2`` was meant: the overrides to write, if the command
    takes them. The value is the word after the option on the command line (argparse may have
    taken that word as a positional override, so it is not in ``extra``)."""
    from ..config import key_paths

    if command not in OVERRIDES_TAKEN:
        return []
    taken = OVERRIDES_TAKEN[command]
    for arg in extra:
        name, _, value = arg.lstrip("-").partition("=")
        paths = key_paths(name.replace("-", "_")) if arg.startswith("--") else []
        paths = [p for p in paths if taken is None or p.startswith(taken)]
        if paths:
            after = given.index(arg) + 1 if arg in given else len(given)
            if not value and after < len(given) and not given[after].startswith("-"):
                value = given[after]
            return [f"{path}={value or 'VALUE'}" for path in paths]
    return []


# The interruptions that arrived during the command: torch's exporter, interrupted inside, may
# raise its own error instead (a half-imported module), which must still read as an interruption.
_ARRIVED: list[KeyboardInterrupt] = []


def _interrupt(signum, frame):
    _ARRIVED.append(StoppedBySignal(signum) if signum != signal.SIGINT else KeyboardInterrupt())
    raise _ARRIVED[-1]


def _interrupted(ns: argparse.Namespace, exc: KeyboardInterrupt) -> int:
    # (under torchrun each process says it: the first may be the one that does not get to)
    with contextlib.suppress(OSError):  # (a terminal closed, SIGHUP: nobody to tell; the exit code says it)
        err_console.print(_interrupted_hint(ns), highlight=False, soft_wrap=True)
    return 128 + (exc.signum if isinstance(exc, StoppedBySignal) else signal.SIGINT)


def _interrupted_hint(ns: argparse.Namespace) -> str:
    """What an interruption left and how to go on, from what is on disk."""
    if ns.command == "compare" and launched_rank() > 0:  # (said once, by the main process: review 46h)
        return "interrupted: the main process (rank 0) says what the comparison keeps and how to continue"
    if ns.command == "compare":
        # (not imported: interrupted while cmd_compare imported it, torch with it, before any run was marked;
        # a half-imported torch would fail to import again here)
        runs = sys.modules.get(f"{__package__.rpartition('.')[0]}.comparison_runs")
        if ns.overwrite and runs is None:
            return "interrupted before any run was replaced: run the same compare command again, with --overwrite"
        if ns.overwrite:
            return ("interrupted: run the same compare command again without --overwrite to replace only the runs "
                    f"still marked (a file {runs.REPLACE_MARK} in them); runs already replaced are reused and the one "
                    "in training continues from its last checkpoint (with --overwrite every run starts again)")
        return ("interrupted: run the same compare command again; finished runs are reused and "
                "unfinished ones continue from their last checkpoint")
    run_dir = getattr(ns, "run_dir", None)
    if ns.command == "train" and run_dir is not None and launched_rank() > 0:
        # (its node's disk may not be the main process's, which holds the run)
        # (review 56c: rank 0 killed, torchrun stops the others first, and the main process says nothing)
        return ("interrupted: the main process (rank 0) says what its run keeps and how to continue; if it said "
                f"nothing (it was lost), continue with torchrun ... -m peerdistill train --resume "
                f"{shell_word(run_dir)} on every node if the run kept a checkpoint")
    if ns.command == "train" and run_dir is not None:  # (set once cmd_train had imported the engine)
        from ..engine.artifacts import PUT_BACK, RunDir, replaced_by_the_same_command

        run = Path(run_dir)
        if run.resolve() in PUT_BACK:  # (its checkpoint, if any, is the old run's: --resume would continue that one)
            return (f"interrupted before the new run kept a checkpoint: '{run_dir}' holds the run --overwrite was "
                    "replacing, put back as it was; the same command starts the new run again")
        finished = RunDir(run).is_complete
        if (run / RESUME_FILE).is_file() and not finished:
            launcher = "torchrun ... -m " if "TORCHELASTIC_RUN_ID" in os.environ else ""  # (as it was started)
            return (f"interrupted: the run keeps its last checkpoint; continue with {launcher}peerdistill train "
                    f"--resume {shell_word(run_dir)}")
        if finished:  # --overwrite had not replaced it yet
            return f"interrupted before training began: '{run_dir}' holds the finished run it held before"
        if run.exists() and not replaced_by_the_same_command(run):  # the same command would be refused
            return ("interrupted before the first checkpoint: nothing to resume; start the run again with "
                    f"--overwrite (it replaces '{run_dir}', which holds no checkpoint)")
        if run.exists():  # begun, nothing kept: the same command replaces it
            return ("interrupted before the first checkpoint: nothing to resume; start the run again (the "
                    f"same command replaces '{run_dir}', which holds nothing yet)")
        return "interrupted before the first checkpoint: nothing to resume; start the run again"
    if ns.command == "export":  # the file is moved into place only once it is checked
        return "interrupted: no half-written file is left (an export is moved into place only once it is checked)"
    if ns.command not in _INTERRUPTED_WRITING and launched():  # (review 56c: a bare 'interrupted' after an error)
        return ("interrupted before the run was set up (under torchrun a process that fails ends the others: "
                "if you did not stop it, a message above says why)")
    return _INTERRUPTED_WRITING.get(ns.command, "interrupted")


# What an interruption leaves of the commands that write as they go (each file whole or not at all).
_INTERRUPTED_WRITING = {
    "eval": "interrupted: nothing is half-written; with --save-images, the pictures there are this eval's but may "
            "be fewer (an earlier eval's are removed first): run it again for all of them",
    "predict": "interrupted: each file written is whole (a CSV is written at the end: none was, or the earlier one "
               "is left); a folder of masks or overlays holds this call's written so far, maybe beside an earlier "
               "call's: run it again for all of them",
    "report": "interrupted: the page is written whole once drawn, so none was written or changed: run it again",
}


def run_and_exit(argv: list[str] | None = None) -> NoReturn:
    """The ``peerdistill`` command: ``main``'s exit code. A process that joined a process group
    under torchrun ends at once after its output (see ``distributed.end_process``), so that
    torch's threads left behind by DDP cannot abort it at exit after a finished run."""
    try:
        code = main(argv, exiting=True)
    except KeyboardInterrupt:  # before the command began (its arguments being read): nothing is left
        sys.stderr.write("interrupted\n")
        code = 130
    except Exception:  # a bug's traceback: printed as Python prints it, then ended the same way
        if not _trained_under_torchrun():
            raise
        traceback.print_exc()
        code = 1
    if _trained_under_torchrun():
        from ..engine.distributed import end_process

        end_process(code)
    sys.exit(code)


def _trained_under_torchrun() -> bool:
    if not launched():
        return False
    # not imported: this process never joined a group (interrupted while torch was imported, a second
    # import would fail half way, with a traceback for each process: review 46h)
    distributed = sys.modules.get(f"{__package__.rpartition('.')[0]}.engine.distributed")
    return distributed is not None and distributed.joined_before()
