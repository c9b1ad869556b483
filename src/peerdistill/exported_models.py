"""The models an export puts into a graph, built around a run's trained modules: one model's
logits, the students' ensemble (their mean probability, or their logits side by side for a
sliding window to blend), a temperature, and an average over flips of the input."""

from __future__ import annotations

import torch
from torch import nn

from .cohort import network_logits
from .engine.tta import mean_over_flips, tta_flips
from .spatial import align_to, largest_size, mean_at_largest

STUDENT_LOGITS = "student_logits"  # the output kind of StudentLogits


class Logits(nn.Module):
    """One model, its output reduced to the logits tensor whatever convention it uses."""

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model, x, self.name)


def logits_of(model: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    """``model``'s logits on ``x``; a self-distilled model's are its network's, whatever that
    network's convention (review 51i: a network's dict was read as the heads' dict)."""
    return network_logits(model, model(x), name)


class Tempered(nn.Module):
    """A model with its temperature (``calibration.py``) in the graph: logits divided by T, or
    probabilities (the ensemble's) tempered as ``softmax(log p / T)``."""

    def __init__(self, model: nn.Module, temperature: float, output: str):
        super().__init__()
        self.model, self.temperature, self.output = model, float(temperature), output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        if self.output == "logits":
            return y / self.temperature
        return (torch.log(y) / self.temperature).softmax(dim=1)


class EnsembleProbabilities(nn.Module):
    """The students' ensemble as one model: the mean of their class probabilities (per pixel
    for segmentation, each map resized to the largest one's size, as in evaluation)."""

    def __init__(self, students: dict[str, nn.Module]):
        super().__init__()
        self.names = list(students)
        self.students = nn.ModuleList(students.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [logits_of(m, x, n).float().softmax(dim=1) for n, m in zip(self.names, self.students)]
        return mean_at_largest(probs) if probs[0].ndim == 4 else torch.stack(probs).mean(dim=0)


class StudentLogits(nn.Module):
    """The students of a sliding-window run side by side on the class axis, ``[B, S*C, H, W]``.
    Evaluation blends each student's logits over the windows before their probabilities are
    averaged; a graph that averaged inside each window would be blended after, which is another
    ensemble. ``ensemble_of_stacked`` makes the blended maps the ensemble's probabilities. (Maps
    of different sizes are resized as logits here, where evaluation resizes probabilities: the
    zoo's models all answer at the input's size.)"""

    def __init__(self, students: dict[str, nn.Module]):
        super().__init__()
        self.names = list(students)
        self.students = nn.ModuleList(students.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = [logits_of(m, x, n).float() for n, m in zip(self.names, self.students)]
        size = largest_size(logits)
        return torch.cat([align_to(t, size) for t in logits], dim=1)


def ensemble_graph(students: dict[str, nn.Module], windowed: bool) -> tuple[nn.Module, str]:
    """The students' ensemble as it is exported and deployed, and its output kind: their logits
    side by side for a sliding window to blend (``StudentLogits``), else their mean probability.
    Its cost is timed on this module too (``costs.model_costs``)."""
    if windowed:
        return StudentLogits(students), STUDENT_LOGITS
    return EnsembleProbabilities(students), "probabilities"


class FlipAveragedModel(nn.Module):
    """An exported model averaged over flips of its input as ``eval --tta`` averages it
    (``engine/tta.py``): the class probabilities (maps mirrored back) of the input as it is and
    mirrored, given in the model's own kind of output: logits become the log of the averaged
    probabilities (softmax gives them back, a sliding window blends them as evaluation does),
    probabilities stay probabilities, and students side by side are each averaged alone."""

    def __init__(self, model: nn.Module, flips: tuple[tuple[int, ...], ...], output: str, students: int):
        super().__init__()
        self.model, self.flips, self.output, self.students = model, flips, output, students

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (maps [B, C, H, W], or [B, S, C, H, W] for students side by side, are mirrored back)
        mean = mean_over_flips(lambda seen: {"p": self._probabilities(self.model(seen).float())}, x, self.flips)["p"]
        if self.output == "probabilities":
            return mean
        log = mean.clamp_min(torch.finfo(torch.float32).tiny).log()
        return log.flatten(1, 2) if self.output == STUDENT_LOGITS else log

    def _probabilities(self, y: torch.Tensor) -> torch.Tensor:
        if self.output == "probabilities":
            return y
        if self.output == STUDENT_LOGITS:
            return per_student_softmax(y, self.students)
        return y.softmax(dim=1)


def flip_averaged(module: nn.Module, output: str, meta: dict, tta: str | None) -> nn.Module:
    """``module`` (``pick_model``'s) averaged over the flips ``tta`` names; None: as it is."""
    if tta is None:
        return module
    flips = tta_flips(tta, meta.get("task", "classification"), meta["input_shape"])
    return FlipAveragedModel(module, flips, output, student_count(meta)).eval()


def student_count(meta: dict) -> int:
    return sum(m.get("role") == "student" for m in meta["members"])


def per_student_softmax(stacked: torch.Tensor, students: int) -> torch.Tensor:
    """``StudentLogits``' output [B, S*C, H, W] -> each student's class probabilities [B, S, C, H, W]."""
    b, channels, *rest = stacked.shape
    return stacked.reshape(b, students, channels // students, *rest).float().softmax(dim=2)


def ensemble_of_stacked(stacked: torch.Tensor, students: int) -> torch.Tensor:
    """``StudentLogits``' output (blended) -> the mean of the students' class probabilities."""
    return per_student_softmax(stacked, students).mean(dim=1)
