"""Progress for epochs and batches: rich's bars on a terminal, a plain line per epoch in a log
(a scheduler's or CI's file, a pipe), silent when disabled."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from ..terminal import Console


class Progress:
    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self._console = console
        self._bar: RichProgress | None = None
        self._lines = False  # one plain line per epoch instead of the bars
        self._epochs = None

    def __enter__(self) -> "Progress":
        if not self.enabled:
            return self
        console = self._console or Console(stderr=True)
        # Not a terminal (nor a notebook): rich draws its bars only once, at the end, so a log
        # would show nothing for hours; an epoch's line is written as it ends instead.
        if not console.is_terminal and not console.is_jupyter:
            self._console, self._lines, self._started = console, True, time.monotonic()
            return self
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=console, transient=False,
        )
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            try:
                self._bar.__exit__(*exc)
            except OSError:  # the terminal gone (SIGHUP as it closed): the interruption goes on, not this
                if not isinstance(exc[1], KeyboardInterrupt):
                    raise

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int = 0):
        if self._bar is None:
            return None
        if self._epochs is None:
            self._epochs = self._bar.add_task("epochs", total=epochs, completed=epoch, status="")
        return self._bar.add_task(f"epoch {epoch + 1}", total=steps, completed=done, status="")

    def advance(self, task_id) -> None:
        if self._bar is not None:
            self._bar.advance(task_id)

    def finish_epoch(self, task_id) -> None:
        if self._bar is not None:
            self._bar.remove_task(task_id)

    def epoch_done(self, epoch: int, epochs: int, row: dict[str, Any], model: str, metric: str) -> None:
        if self._bar is None and not self._lines:
            return
        loss = f"loss {row.get('train/loss/total', float('nan')):.3f}{_ramping(row)}"
        key = f"val/{model}/{metric}"
        status = (f"{loss}  val {model}/{metric} {_figure(row[key])}" if key in row else
                  f"{loss}  (not validated: train.val_every)")
        if self._lines:
            elapsed = round(time.monotonic() - self._started)
            self._console.print(f"epoch {epoch + 1}/{epochs}  {status}  ({elapsed // 3600}:{elapsed // 60 % 60:02d}:"
                                f"{elapsed % 60:02d} elapsed)", markup=False, highlight=False, soft_wrap=True)
            return
        self._bar.update(self._epochs, completed=epoch + 1, status=status)

    def start_pass(self, description: str, batches: int):
        """A pass over a split after training (the final scoring: whole images by sliding window
        take minutes): a bar of its batches on a terminal; in a log, the closing line says how long."""
        self._pass_started = time.monotonic()
        if self._bar is not None:
            return self._bar.add_task(description, total=batches, status="")
        return None

    def finish_pass(self, task_id, description: str) -> None:
        if self._bar is not None:
            self._bar.remove_task(task_id)
        elif self._lines:
            took = round(time.monotonic() - self._pass_started)
            self.say(f"{description}: scored in {took // 60}:{took % 60:02d}")

    def say(self, text: str) -> None:
        """A line of what happens between epochs' lines (the final scoring of a large test split
        takes a while), on the bars' console or in the log."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        elif self._lines:
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)


def _figure(value: Any) -> str:
    """A validation figure as the epoch's line shows it: n/a where it is undefined this epoch (an AUC
    on a split lacking a class is NaN), as the report's tables write it, not Python's 'nan'."""
    if value is None or math.isnan(float(value)):
        return "n/a"
    return f"{value:.4f}"


def _ramping(row: dict[str, Any]) -> str:
    """The loss of an epoch in the ramp-up sums knowledge terms whose weight still grows: said,
    else a rising total reads as divergence (review 47a: 5.6, 7.3, 12.5 while every term fell)."""
    ramp = row.get("rampup")
    distils = any(key.startswith("train/loss/") and "<-" in key for key in row)
    return (f" (knowledge terms ramping up: {ramp:.0%} of their weight by the epoch's end)"
            if distils and ramp is not None and ramp < 1 else "")
