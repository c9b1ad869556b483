"""Score every model of a cohort and the students' ensemble on one split."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from ..cohort import Cohort
from ..errors import DataError, NonFiniteError
from ..graph import ENSEMBLE  # (re-exported: its callers import it from here)
from .predict_batches import batch_hint, checked_batch


def windowed(predictor, x: torch.Tensor, window: tuple[int, int] | None = None, overlap: float = 0.5):
    """``predictor(x)`` (a tensor or a dict of tensors); with ``window``, by sliding-window
    inference over the whole image (MONAI; overlapping windows blended with Gaussian weights)."""
    if window is None or (x.shape[-2] <= window[0] and x.shape[-1] <= window[1]):
        return predictor(x)
    from monai.inferers import sliding_window_inference

    # (every setting spelt out: docs/deployment.md gives them to reproduce it outside peerdistill)
    return sliding_window_inference(x, window, sw_batch_size=8, predictor=predictor, overlap=overlap, mode="gaussian",
                                    sigma_scale=0.125, padding_mode="constant", cval=0.0)


def windows_per_image(size: tuple[int, int], window: tuple[int, int], overlap: float) -> int:
    """How many windows ``windowed`` runs over an image of ``size``: MONAI's grid (a step of
    ``int(window * (1 - overlap))`` pixels, at least 1, the last window flush with the edge)."""
    from monai.data.utils import dense_patch_slices

    steps = [max(1, int(side * (1 - overlap))) for side in window]
    padded = [max(s, w) for s, w in zip(size, window)]  # (an image smaller than the window is padded to it)
    return len(dense_patch_slices(padded, window, steps))


def logits_of(cohort: Cohort, x: torch.Tensor, window: tuple[int, int] | None = None,
              overlap: float = 0.5) -> dict[str, torch.Tensor]:
    """Every output's logits for a batch, whole or by sliding window."""
    return windowed(lambda t: cohort.forward(t).logits, x, window, overlap)


@torch.no_grad()
def evaluate(cohort: Cohort, task, batches: Iterable, window: tuple[int, int] | None = None,
             overlap: float = 0.5, merge: Callable[[dict], dict] | None = None,
             where: str = "this split",
             observe: Callable[[str, Any, torch.Tensor], None] | None = None,
             batch_done: Callable[[], None] | None = None) -> dict[str, dict[str, float]]:
    """``{output or 'ensemble': {metric: value}}`` for every output (models and their heads)
    and the students' ensemble, accumulated batch by batch. ``merge`` combines the meters of
    every process (each scored its share of the split), so metrics cover the whole split.
    ``where`` names the split (and epoch) in the message about a model with non-finite outputs.
    ``observe(name, probabilities, targets)``, when given, sees every output's probabilities of
    every batch (what ``eval`` keeps for a bootstrap or a threshold, without a second pass);
    ``batch_done()`` is called after each batch (a progress bar)."""
    cohort.eval()
    ensemble_names = cohort.ensemble_names()
    head_ensembles = cohort.head_ensembles()
    meters = {name: FiniteCheck(task.new_meter(), name, where) for name in scored_outputs(cohort)}
    checked = False
    for x, y in batches:
        if not checked and torch.as_tensor(y).ndim == 0:
            raise DataError("evaluate takes batches (inputs, targets), but got single samples: give a DataLoader of the "
                            "dataset, e.g. torch.utils.data.DataLoader(dataset, batch_size=64)")
        _check_targets(task, y, where)
        outputs = logits_of(cohort, x, window, overlap)
        if not checked and hasattr(task, "check_output"):  # every model's outputs fit the task's classes
            for name, out in outputs.items():
                task.check_output(name, out, len(x))
        checked = True
        for name, out in outputs.items():
            if meters[name].finite:  # (once not, no need to look again)
                meters[name].check(task.scored_outputs(out, y) if hasattr(task, "scored_outputs") else out)
        probs = {name: task.probabilities(out) for name, out in outputs.items()}
        probs[ENSEMBLE] = task.ensemble([probs[s] for s in ensemble_names])
        for key, names in head_ensembles.items():
            probs[key] = task.ensemble([probs[n] for n in names])
        for name, p in probs.items():
            meters[name].update(p, y)
            if observe is not None:
                observe(name, p, y)
        if batch_done is not None:
            batch_done()
    if merge is not None:
        meters = merge(meters)
    try:
        if not any(meter.seen for meter in meters.values()):
            raise DataError(f"{where} holds no batches to score: give (inputs, targets) batches, e.g. a DataLoader")
        return {name: meter.compute() for name, meter in meters.items()}
    except (DataError, NonFiniteError) as exc:
        # Merged, the meters are every process's alike, and so is what they fail on: under
        # torchrun the message is printed once per node.
        raise (exc.found_by_every_process() if merge is not None else exc) from None


def scored_outputs(cohort) -> list[str]:
    """What ``evaluate`` scores: every model's output (and its heads'), each self-distilled
    network's ensemble of them, and the students' ensemble."""
    return cohort.output_names() + list(cohort.head_ensembles()) + [ENSEMBLE]


def _check_targets(task, y: torch.Tensor, where: str) -> None:
    """Every batch scored: a label outside the classes would count as an error of every model
    (and a negative of every class in the AUC) without a word."""
    if hasattr(task, "check_targets"):
        try:
            task.check_targets(y, "scored")
        except DataError as exc:
            raise DataError(f"scoring {where}: {exc}") from None


class FiniteCheck:
    """A task's meter that first makes sure its model's outputs were finite: weights that
    diverged to huge (finite) values give NaN outputs, which no metric can score. Ensembles are
    made from checked outputs, so their meters need no check of their own."""

    def __init__(self, meter, name: str, where: str = "this split"):
        self.meter, self.name, self.where, self.finite, self.seen = meter, name, where, True, False

    def check(self, output: torch.Tensor) -> None:
        """A model's raw output (any task: detections are decoded from it), or the part of it
        the metrics read (a segmentation's labelled pixels: ``scored_outputs``)."""
        if self.finite:
            self.finite = bool(torch.isfinite(output).all())

    def update(self, probs, targets) -> None:
        self.seen = True
        self.meter.update(probs, targets)

    def merge(self, other: "FiniteCheck") -> None:
        self.finite = self.finite and other.finite
        self.seen = self.seen or other.seen
        self.meter.merge(other.meter)

    def compute(self) -> dict[str, float]:
        if not self.finite:
            raise NonFiniteError(f"'{self.name}' gives non-finite outputs on {self.where}: its weights have diverged "
                                 "(lower optim.lr) or the data holds extreme values")
        return self.meter.compute()


def merge_meters(per_process: list[dict]) -> dict:
    """One meter per output holding what every process's meter saw."""
    merged = per_process[0]
    for meters in per_process[1:]:
        for name, meter in meters.items():
            merged[name].merge(meter)
    return merged


@torch.no_grad()
def predict(cohort: Cohort, task, x: torch.Tensor, window: tuple[int, int] | None = None,
            overlap: float = 0.5) -> dict[str, torch.Tensor]:
    """Probabilities of every output, of the ensemble and of each self-distilled network's own
    ensemble (``NAME@ensemble``, as ``evaluate`` scores them) for one batch ``x``: a tensor [N, C,
    H, W] on the models' device, or a NumPy array of floats (taken to the device as float32)."""
    x = checked_batch(cohort, x)
    cohort.eval()
    try:
        logits = logits_of(cohort, x, window, overlap)
    except RuntimeError as exc:
        hint = batch_hint(cohort, x)
        if hint is None:
            raise
        raise DataError(hint) from exc
    probs = {name: task.probabilities(out) for name, out in logits.items()}
    probs[ENSEMBLE] = task.ensemble([probs[s] for s in cohort.ensemble_names()])
    for key, names in cohort.head_ensembles().items():
        probs[key] = task.ensemble([probs[n] for n in names])
    return probs


@torch.no_grad()
def split_probabilities(cohort: Cohort, task, dataset, device: torch.device, window: tuple[int, int] | None = None,
                        overlap: float = 0.5) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``({output or 'ensemble': [N, C] probabilities}, [N] labels)`` over a whole split
    (classification)."""
    from ..data import make_batches

    probs: dict[str, list[np.ndarray]] = {}
    labels = []
    for x, y in make_batches(dataset, 256, device, shuffle=False):
        for name, p in predict(cohort, task, x, window, overlap).items():
            probs.setdefault(name, []).append(p.float().cpu().numpy())
        labels.append(y.cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in probs.items()}, np.concatenate(labels)
