"""Knowledge edges (who teaches whom) and the presets that are just sets of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import torch

from .errors import ConfigError
from .losses import soft_kl

PRESET_DOCS = {
    "independent": "labels only: every model trains alone (baseline)",
    "kd": "teacher logits -> each student (Hinton et al. 2015)",
    "ml": "student logits <-> student logits (Deep Mutual Learning, Zhang et al. 2018)",
    "kd+ml": "both: teacher -> students and students <-> students (Niyaz & Bathula, ISBI 2022)",
}


@dataclass(frozen=True)
class Edge:
    """``target`` learns to match ``source``'s softened predictions; ``source`` gets no gradient."""

    source: str
    target: str
    kind: str = "kl"
    weight: float = 1.0
    temperature: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.target}/{self.kind}<-{self.source}"


def preset_edges(
    preset: str,
    teacher: str | None,
    students: list[str],
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    kd_temperature: float = 4.0,
    ml_temperature: float = 1.0,
) -> list[Edge]:
    """The edges of a preset. Mutual learning uses the DML mean over peers:
    each of the K-1 peer edges into a student weighs ``beta / (K - 1)``."""
    if preset not in PRESET_DOCS:
        raise ConfigError(f"unknown preset '{preset}': choose one of {', '.join(PRESET_DOCS)}")
    edges: list[Edge] = []
    if preset in ("kd", "kd+ml"):
        if teacher is None:
            raise ConfigError(f"preset '{preset}' needs a teacher")
        edges += [Edge(teacher, s, "kl", alpha, kd_temperature) for s in students]
    if preset in ("ml", "kd+ml"):
        if len(students) < 2:
            raise ConfigError(f"preset '{preset}' needs at least two students for mutual learning")
        peer_weight = beta / (len(students) - 1)
        edges += [
            Edge(peer, s, "kl", peer_weight, ml_temperature) for s in students for peer in students if peer != s
        ]
    return edges


class KnowledgeGraph:
    """The set of edges of a run; turns the cohort's outputs into named loss terms."""

    def __init__(self, edges: Iterable[Edge]):
        self.edges = list(edges)
        names = [e.name for e in self.edges]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate knowledge edges: {sorted({n for n in names if names.count(n) > 1})}")

    def check_members(self, members: Iterable[str], frozen: Iterable[str] = ()) -> None:
        members, frozen = set(members), set(frozen)
        for edge in self.edges:
            for end in (edge.source, edge.target):
                if end not in members:
                    raise ConfigError(f"edge {edge.source} -> {edge.target}: no model named '{end}' in the cohort")
            if edge.target in frozen:
                raise ConfigError(f"edge {edge.source} -> {edge.target}: a frozen model cannot learn")

    def losses(self, outputs: Mapping[str, torch.Tensor], scale: float = 1.0) -> dict[str, torch.Tensor]:
        """``{edge name: weight * scale * loss}``; ``scale`` is the ramp-up factor of the step."""
        terms = {}
        for edge in self.edges:
            if edge.weight == 0:
                continue
            loss = soft_kl(outputs[edge.target], outputs[edge.source], edge.temperature)
            terms[edge.name] = loss * (edge.weight * scale)
        return terms

    def to_list(self) -> list[dict]:
        return [asdict(e) for e in self.edges]


def sigmoid_rampup(progress: float) -> float:
    """``exp(-5 (1 - t)^2)`` for t in [0, 1] (Laine & Aila 2017), 1 afterwards."""
    t = min(max(progress, 0.0), 1.0)
    return float(torch.exp(torch.tensor(-5.0 * (1.0 - t) ** 2))) if t < 1.0 else 1.0
