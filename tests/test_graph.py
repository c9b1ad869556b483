"""Presets as sets of edges, and the graph's total against a naive per-student sum."""

import math

import pytest
import torch

from peerdistill.errors import ConfigError
from peerdistill.graph import Edge, KnowledgeGraph, preset_edges, sigmoid_rampup
from tests.test_losses import naive_soft_kl

STUDENTS = ["s1", "s2", "s3"]


def test_presets_are_the_expected_edges():
    assert preset_edges("independent", "teacher", STUDENTS) == []
    kd = preset_edges("kd", "teacher", STUDENTS, alpha=0.5, kd_temperature=4)
    assert kd == [Edge("teacher", s, "kl", 0.5, 4) for s in STUDENTS]
    ml = preset_edges("ml", None, STUDENTS, beta=2.0, ml_temperature=1)
    assert len(ml) == 6 and all(e.weight == pytest.approx(1.0) for e in ml)  # beta / (K - 1)
    assert {(e.source, e.target) for e in ml} == {(a, b) for a in STUDENTS for b in STUDENTS if a != b}
    both = preset_edges("kd+ml", "teacher", STUDENTS)
    assert len(both) == 3 + 6


@pytest.mark.parametrize("preset,teacher,students,message", [
    ("kd", None, STUDENTS, "needs a teacher"),
    ("ml", None, ["s1"], "at least two students"),
    ("fancy", "teacher", STUDENTS, "unknown preset"),
])
def test_preset_errors(preset, teacher, students, message):
    with pytest.raises(ConfigError, match=message):
        preset_edges(preset, teacher, students)


def test_kd_ml_total_matches_the_paper_formula():
    """L_k = alpha T^2 KL(p_T || p_k) + beta mean_{l != k} KL(p_l || p_k), summed over students."""
    g = torch.Generator().manual_seed(0)
    outputs = {n: torch.randn(6, 4, generator=g) for n in ["teacher", *STUDENTS]}
    alpha, beta, T_kd, T_ml = 0.7, 1.3, 4.0, 1.0
    graph = KnowledgeGraph(preset_edges("kd+ml", "teacher", STUDENTS, alpha=alpha, beta=beta,
                                        kd_temperature=T_kd, ml_temperature=T_ml))
    total = sum(v.item() for v in graph.losses(outputs, scale=0.5).values())
    expected = 0.0
    for k in STUDENTS:
        expected += alpha * naive_soft_kl(outputs[k], outputs["teacher"], T_kd)
        peers = [naive_soft_kl(outputs[k], outputs[l], T_ml) for l in STUDENTS if l != k]
        expected += beta * sum(peers) / len(peers)
    assert total == pytest.approx(0.5 * expected, rel=1e-5)


def test_edge_names_and_unknown_members():
    graph = KnowledgeGraph([Edge("teacher", "s1", "kl", 1.0, 4.0)])
    assert list(graph.losses({"teacher": torch.zeros(1, 2), "s1": torch.zeros(1, 2)})) == ["s1/kl<-teacher"]
    with pytest.raises(ConfigError, match="no model named 'teacher'"):
        graph.check_members(["s1", "s2"])
    with pytest.raises(ConfigError, match="frozen model cannot learn"):
        KnowledgeGraph([Edge("s1", "teacher")]).check_members(["teacher", "s1"], frozen=["teacher"])
    with pytest.raises(ConfigError, match="duplicate"):
        KnowledgeGraph([Edge("a", "b"), Edge("a", "b")])


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0.0) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0.5) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(1.0) == 1.0 and sigmoid_rampup(3.0) == 1.0
