"""The models of a run and their roles: teachers (frozen or online) and students."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from .errors import ConfigError

Role = Literal["teacher", "student"]


@dataclass
class Member:
    name: str
    module: nn.Module
    role: Role
    frozen: bool = False
    lr: float | None = None
    # What rebuilds the architecture from a run directory (arch + args); None for modules built in Python.
    spec: dict[str, Any] | None = None

    @property
    def trainable(self) -> bool:
        return not self.frozen


@dataclass
class Cohort:
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ConfigError(f"model names in a cohort must be unique, got {names}")
        if not self.students:
            raise ConfigError("a cohort needs at least one student")
        for m in self.members:
            if m.frozen:
                m.module.requires_grad_(False)

    @classmethod
    def from_modules(
        cls,
        students: Sequence[nn.Module],
        teacher: nn.Module | None = None,
        *,
        frozen_teacher: bool = False,
        student_names: Sequence[str] | None = None,
    ) -> "Cohort":
        """The Python-API shortcut: ``Cohort.from_modules([s1, s2], teacher=t)``."""
        names = list(student_names or [f"student{i + 1}" for i in range(len(students))])
        members = [Member("teacher", teacher, "teacher", frozen_teacher)] if teacher is not None else []
        members += [Member(n, s, "student") for n, s in zip(names, students, strict=True)]
        return cls(members)

    def __getitem__(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def students(self) -> list[Member]:
        return [m for m in self.members if m.role == "student"]

    @property
    def teachers(self) -> list[Member]:
        return [m for m in self.members if m.role == "teacher"]

    @property
    def trainable(self) -> list[Member]:
        return [m for m in self.members if m.trainable]

    @property
    def frozen(self) -> list[Member]:
        return [m for m in self.members if m.frozen]

    def to(self, device: torch.device) -> "Cohort":
        for m in self.members:
            m.module.to(device)
        return self

    def train(self) -> None:
        """Trainable models in train mode; a frozen teacher always stays in eval mode."""
        for m in self.members:
            m.module.train(m.trainable)

    def eval(self) -> None:
        for m in self.members:
            m.module.eval()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each model exactly once. Frozen models run under inference mode (no autograd graph);
        their outputs are cloned out of inference mode so losses may read them."""
        outputs = {}
        for m in self.members:
            if m.frozen:
                with torch.inference_mode():
                    out = as_logits(m.module(x), m.name)
                outputs[m.name] = out.clone()
            else:
                outputs[m.name] = as_logits(m.module(x), m.name)
        return outputs


def as_logits(output: Any, name: str) -> torch.Tensor:
    """Accept the output conventions of common model libraries: a tensor, a tuple whose first
    item is the logits (torchvision aux heads), or a mapping with 'logits' / 'out'."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict):
        for key in ("logits", "out"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
    if hasattr(output, "logits") and isinstance(output.logits, torch.Tensor):
        return output.logits
    raise ConfigError(
        f"model '{name}' returned {type(output).__name__}; peerdistill needs logits as a tensor, "
        "a tuple starting with the logits, or a dict with a 'logits' entry"
    )
