"""Progress bars (rich) for epochs and batches; silent when disabled."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from ..terminal import Console


class Progress:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar: RichProgress | None = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                console=Console(stderr=True), transient=False,
            )
            self._bar.__enter__()
            self._epochs = None
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

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
        if self._bar is None:
            return
        value = row.get(f"val/{model}/{metric}", float("nan"))
        loss = row.get("train/loss/total", float("nan"))
        self._bar.update(self._epochs, completed=epoch + 1,
                         status=f"loss {loss:.3f}  val {model}/{metric} {value:.4f}")
