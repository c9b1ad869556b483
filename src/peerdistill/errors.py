"""Errors a user can fix (the CLI prints their message alone, without a traceback), and the
warnings peerdistill gives."""

import os
import sys
import warnings


class PeerdistillError(Exception):
    """Base class: the message names the problem and how to fix it."""

    # Under torchrun, the message the first process of each node stops with too (each process
    # found it alike, or was told it by the main process): the CLI prints it once per node.
    said_alike: str | None = None

    def found_by_every_process(self) -> "PeerdistillError":
        """This error, marked as one every process finds alike (printed once per node)."""
        self.said_alike = str(self)
        return self


def reworded(exc: "PeerdistillError", message: str) -> "PeerdistillError":
    """``exc`` saying ``message`` (its words with a context: which run, which option), of its
    type and with its attributes (an advised error's problem, whether every process found it),
    though its type's constructor takes more than a message."""
    again = type(exc).__new__(type(exc), message)
    again.__dict__.update(exc.__dict__)
    if exc.said_alike is not None:  # (printed once per node under torchrun: the new words alike)
        again.said_alike = message
    return again


class ConfigError(PeerdistillError):
    """A config file, a key=value override or an API argument is wrong."""


class DataError(PeerdistillError):
    """A dataset is missing, malformed or inconsistent with the models."""


class _AdvisedDataError(DataError):
    """A data error whose message is ``problem: advice``; ``problem`` is kept alone for a caller
    whose advice differs."""

    def __init__(self, problem: str, advice: str):
        super().__init__(f"{problem}: {advice}")
        self.problem = problem


class DataPlaceError(_AdvisedDataError):
    """No data where data.root points. ``problem`` says so without the advice that follows it
    (to set data.root), which a command reading a run's data where training read it replaces."""


class SplitError(_AdvisedDataError):
    """Data that cannot be dealt into the train, val and test splits training needs (too few
    samples, a class without training samples). ``problem`` says so without the advice that
    follows it, which is for training: eval scores such a set whole (``--split all``)."""


class CheckpointError(PeerdistillError):
    """A checkpoint or run directory is missing, truncated or does not fit the models."""


class RunDirError(PeerdistillError):
    """A run directory would be overwritten, or is not a peerdistill run."""


class LostContactError(PeerdistillError):
    """Under torchrun, another process of the run stopped, was killed or lost its node."""


class NonFiniteError(PeerdistillError):
    """A loss term or gradient became NaN or infinite during training. ``finding`` says what
    and where alone, without the advice that follows it (which suits a single run)."""

    def __init__(self, message: str, finding: str | None = None):
        super().__init__(message)
        self.finding = finding


class PeerdistillWarning(UserWarning):
    """Something a user should know that does not stop the command; the CLI prints it as
    'warning: MESSAGE'."""


class TrainingAdvice(PeerdistillWarning):
    """Advice about the data for training alone (how the monitor would choose the best epoch):
    commands that score, export or report a run read its data without it (review 50c)."""


class DataNote(PeerdistillWarning):
    """What reading a data set left out (files without annotations, entries without files), said
    as training read it: the run's own data read again, unchanged, does not say it again (review
    49h: every eval, report and export repeated it)."""


class NonFiniteStepsWarning(PeerdistillWarning):
    """Training steps were skipped for non-finite values (``train.nonfinite: skip``)."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(message: str | Warning, category: type[Warning] = PeerdistillWarning) -> None:
    """``warnings.warn`` pointed at the user's call: the first frame outside peerdistill, however
    deep inside it the warning is raised (counted stack levels went stale as code moved). From
    the command line, where every frame is peerdistill's, the outermost one."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warning = category(message) if isinstance(message, str) else message
    try:  # the module it is pointed at, for warn_again: a notebook cell's file names no module
        warning._peerdistill_module = frame.f_globals.get("__name__")
    except (AttributeError, TypeError):  # (a warning type that takes no attributes: its file names the module)
        pass
    warnings.warn(warning, stacklevel=level)


def warn_again(caught: warnings.WarningMessage, message: str | Warning | None = None, registry: dict | None = None) -> None:
    """A warning held by ``catch_warnings(record=True)`` given to the caller's filters now, as
    if raised where it was: its file, line and module (the record keeps no module, and filters
    by module, such as ``module="__main__"``, match by it). ``message``: said instead."""
    warnings.warn_explicit(caught.message if message is None else message, caught.category, caught.filename,
                           caught.lineno, module=getattr(caught.message, "_peerdistill_module", None)
                           or _module_named_by(caught.filename), registry=registry,
                           source=caught.source)


def reemit(held: list[warnings.WarningMessage]) -> None:
    """Warnings held back, given to the caller's filters now (which may make them errors); one
    said several times while they were held (under "always"), once."""
    said = set()
    for caught in held:
        if (key := (caught.category, str(caught.message))) not in said:
            said.add(key)
            warn_again(caught)


def _module_named_by(filename: str) -> str:
    """The loaded module whose file this is (a script run is ``__main__``), else the file's
    name less ``.py``, as ``warn_explicit`` itself would take it."""
    for name, module in list(sys.modules.items()):
        if getattr(module, "__file__", None) == filename:
            return name
    return filename[:-3] if filename.endswith(".py") else filename
