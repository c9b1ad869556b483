"""Presets as sets of edges, and the graph's totals against naive per-student sums."""

import math
import warnings

import re

import pytest
import torch
from torch import nn

from peerdistill import Cohort
from peerdistill.cohort import CohortOutput
from peerdistill.config import DistillSpec
from peerdistill.errors import ConfigError, PeerdistillWarning
from peerdistill.graph import ENSEMBLE, TEACHERS, Edge, KnowledgeGraph, preset_edges, sigmoid_rampup
from peerdistill.models import SmallCNN
from tests.test_losses import naive_soft_kl

STUDENTS = ["s1", "s2", "s3"]
LAYERS = {"teacher": "features", "s1": "features", "s2": "features", "s3": "features"}


def test_presets_are_the_expected_edges():
    assert preset_edges("independent", "teacher", STUDENTS) == []
    kd = preset_edges("kd", "teacher", STUDENTS, alpha=0.5, kd_temperature=4)
    assert kd == [Edge("teacher", s, "kl", 0.5, 4) for s in STUDENTS]
    ml = preset_edges("ml", None, STUDENTS, beta=2.0, ml_temperature=1)
    assert len(ml) == 6 and all(e.weight == pytest.approx(1.0) for e in ml)  # beta / (K - 1)
    assert {(e.source, e.target) for e in ml} == {(a, b) for a in STUDENTS for b in STUDENTS if a != b}
    both = preset_edges("kd+ml", "teacher", STUDENTS)
    assert len(both) == 3 + 6
    assert preset_edges("styles-logits", "teacher", STUDENTS) == both


def test_styles_preset_splits_learning_styles():
    edges = preset_edges("styles", ["teacher"], ["a", "b"], gamma=2.0, feature_layers={"teacher": "t.l3", "a": "x",
                                                                                        "b": "y"})
    by_target = {(e.source, e.target, e.kind) for e in edges}
    assert ("teacher", "a", "kl") in by_target and ("teacher", "a", "hint") not in by_target
    assert ("teacher", "b", "hint") in by_target and ("teacher", "b", "kl") not in by_target
    assert {("a", "b", "kl"), ("b", "a", "kl"), ("a", "b", "hint"), ("b", "a", "hint")} <= by_target
    # the teacher's feature edge goes to the second student: the hint (feature_loss's default)
    # between the layers named, weighing gamma / (number of teachers) = 2.0
    (features_edge,) = [e for e in edges if (e.source, e.target) == ("teacher", "b")]
    assert features_edge == Edge("teacher", "b", "hint", 2.0, 1.0, "t.l3", "y")
    two = preset_edges("styles", ["t1", "t2"], ["a", "b"], gamma=2.0,
                       feature_layers={"t1": "l1", "t2": "l2", "a": "x", "b": "y"})
    assert [e for e in two if e.target == "b" and e.source in ("t1", "t2")] == [
        Edge("t1", "b", "hint", 1.0, 1.0, "l1", "y"), Edge("t2", "b", "hint", 1.0, 1.0, "l2", "y")]  # gamma shared
    features = preset_edges("styles-features", ["teacher"], ["a", "b"], feature_layers={"teacher": "t", "a": "x", "b": "y"},
                            feature_loss="at")
    assert {e.kind for e in features} == {"at"} and len(features) == 4
    with pytest.raises(ConfigError, match="^preset 'styles' compares feature maps but model 'b' has no feature layer"):
        preset_edges("styles", ["teacher"], ["a", "b"], feature_layers={"teacher": "t"})
    # kd+ml compares no feature maps: the key that asked for them is named (review 50b: the preset was)
    with pytest.raises(ConfigError, match=r"^distill.pair_weight \(the pair-wise term\) compares feature maps but model "
                                          r"'teacher' has no feature layer"):
        preset_edges("kd+ml", ["teacher"], ["a", "b"], pair_weight=1.0)


def test_several_teachers_become_one_combined_source():
    edges = preset_edges("multi-teacher", ["t1", "t2"], ["a", "b"])
    assert [(e.source, e.target) for e in edges] == [(TEACHERS, "a"), (TEACHERS, "b")]
    with pytest.raises(ConfigError, match="at least two teachers"):
        preset_edges("multi-teacher", ["t1"], ["a"])
    ensemble = preset_edges("ml", None, ["a", "b"], ensemble_weight=0.5)
    assert Edge(ENSEMBLE, "a", "kl", 0.5, 4.0) in ensemble


def test_a_cohort_gives_preset_edges_its_names_and_feature_layers():
    # the README had users pass the names and {m.name: m.feature_layer for m in cohort.members} by hand
    layers = {"teacher": "features", "student1": "features", "student2": "features"}
    cohort = Cohort.from_modules([SmallCNN(1, 3, 4, 1), SmallCNN(1, 3, 4, 1)], teacher=SmallCNN(1, 3, 8, 2),
                                 feature_layers=layers)
    by_names = preset_edges("styles", "teacher", ["student1", "student2"], gamma=2.0, feature_layers=layers)
    assert preset_edges("styles", cohort, gamma=2.0) == by_names
    assert set(KnowledgeGraph.from_preset("styles", cohort, gamma=2.0).edges) == set(by_names)
    students_only = Cohort.from_modules([SmallCNN(1, 3, 4, 1), SmallCNN(1, 3, 4, 1)])
    assert preset_edges("ml", students_only) == preset_edges("ml", None, ["student1", "student2"])
    from peerdistill.models.heads import HeadedModel  # and its self-distillation heads

    net = HeadedModel(SmallCNN(1, 3, 8, 3), head_layers=["features.3", "features.7"], deep_layer="features.10",
                      num_classes=3, sample_input=torch.randn(2, 1, 8, 8))
    by_heads = KnowledgeGraph.from_preset("self", None, ["student1"], heads={"student1": ["features.3", "features.7"]})
    from_cohort = KnowledgeGraph.from_preset("self", Cohort.from_modules([net]))
    assert len(by_heads.edges) == 4 and set(from_cohort.edges) == set(by_heads.edges)
    assert from_cohort.supervised_weights == by_heads.supervised_weights
    with pytest.raises(ConfigError, match=r"a Cohort alone .* or teacher and student names, not both"):
        preset_edges("kd", cohort, ["student1"])
    with pytest.raises(ConfigError, match=r"takes the teacher and student names, .* or a Cohort alone"):
        preset_edges("kd", "teacher")


class _NoFeatureLayer(nn.Module):
    """A user's model: no feature_layer attribute, so feature edges have no layer of it to compare."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.features(x))


def test_a_model_without_a_feature_layer_is_told_its_own_module_paths():
    """Review 58e: the styles message gave 'layer3' as its example, a path the user's model lacks."""
    cohort = Cohort.from_modules([SmallCNN(1, 3, 4, 1), SmallCNN(1, 3, 4, 1)], teacher=_NoFeatureLayer())
    said = ("'styles' compares feature maps but model 'teacher' has no feature layer: set its feature_layer to a "
            "module path (its modules include 'features', 'fc', 'features.0', 'features.1', 'features.2', "
            "'features.3'); ")
    with pytest.raises(ConfigError, match=re.escape(said)):
        preset_edges("styles", cohort)
    with pytest.raises(ConfigError, match=re.escape(said)):  # (as a config's graph is built)
        KnowledgeGraph.from_preset("styles", cohort)
    with pytest.raises(ConfigError, match=re.escape("a module path (for example 'layer3'); ")):  # (names alone)
        preset_edges("styles", "teacher", ["student1", "student2"], feature_layers={"student1": "x", "student2": "y"})


def test_self_preset_edges_and_head_weights():
    edges = preset_edges("self", None, ["net"], heads={"net": ["l1", "l2"]}, self_alpha=0.3, self_lambda=0.05)
    assert {(e.source, e.target, e.kind, e.weight) for e in edges} == {
        ("net", "net@l1", "kl", 0.3), ("net", "net@l2", "kl", 0.3),
        ("net", "net@l1", "hint", 0.05), ("net", "net@l2", "hint", 0.05)}
    with pytest.raises(ConfigError, match="needs a model with heads"):
        preset_edges("self", None, ["net"])
    # the graph a config builds: each head's own cross-entropy weighs 1 - self_alpha (BYOT)
    graph = KnowledgeGraph.from_preset("self", None, ["net"], heads={"net": ["l1", "l2"]}, self_alpha=0.3,
                                       self_lambda=0.05)
    assert set(graph.edges) == set(edges)
    assert graph.supervised_weights == {"net@l1": pytest.approx(0.7), "net@l2": pytest.approx(0.7)}
    # the edges alone, with no weights said: a warning, not a different objective without a word
    from peerdistill.errors import PeerdistillWarning

    with pytest.warns(PeerdistillWarning, match="each head's own cross-entropy weighs 1, where the self preset"):
        KnowledgeGraph(edges)
    assert KnowledgeGraph(edges, supervised_weights={}).supervised_weights == {}


@pytest.mark.parametrize("build", [preset_edges, KnowledgeGraph.from_preset])
def test_a_keyword_the_preset_does_not_read_is_refused_as_in_a_config(build):
    """beta under kd would change nothing: refused, as a config's distill.beta is; what the
    preset reads (and a default value, which changes nothing either way) is taken."""
    graph_keys_said = ("teacher_weighting='confidence' is read only where several teachers teach (1 here), so here it "
                       "would change nothing; gamma=2.0 is read only under presets styles, styles-features")
    if build != KnowledgeGraph.from_preset:
        graph_keys_said = "teacher_weighting belong to the graph, not to its edges"
    for keywords, said in (({"beta": 3.0}, "beta=3.0 is read only under presets ml, kd+ml, styles, styles-logits "
                                            "(preset is 'kd'), so here it would change nothing: drop it"),
                           ({"teacher_weighting": "confidence", "gamma": 2.0}, graph_keys_said)):
        with pytest.raises(ConfigError, match=re.escape(said)):
            build("kd", "teacher", ["student1", "student2"], **keywords)
    assert build("kd", "teacher", ["student1", "student2"], alpha=0.5, beta=1.0)  # beta at its default: nothing to say
    assert build("self", None, ["net"], heads={"net": ["l1"]}, self_alpha=0.3)
    assert build("kd", (name for name in ["teacher"]), ["student1"], alpha=0.5)  # teachers as any iterable
    with pytest.raises(ConfigError, match="preset 'self' needs a model with heads"):  # not: self_alpha unread
        build("self", None, ["net"], self_alpha=0.3)
    # keys of the graph itself: kept by from_preset, refused by preset_edges (its edges have no place for them)
    if build == KnowledgeGraph.from_preset:  # (a classmethod is bound anew at each access: not `is`)
        graph = build("multi-teacher", ["t1", "t2"], ["student1"], teacher_weighting="confidence", pair_node_size=2)
        assert (graph.teacher_weighting, graph.pair_node_size) == ("confidence", 2)
    else:
        with pytest.raises(ConfigError, match=r"teacher_weighting belong to the graph, not to its edges: "
                                              r"KnowledgeGraph.from_preset\(..., teacher_weighting=...\) keeps them"):
            build("multi-teacher", ["t1", "t2"], ["student1"], teacher_weighting="confidence")


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
    logits = {n: torch.randn(6, 4, generator=g) for n in ["teacher", *STUDENTS]}
    alpha, beta, T_kd, T_ml = 0.7, 1.3, 4.0, 1.0
    graph = KnowledgeGraph(preset_edges("kd+ml", "teacher", STUDENTS, alpha=alpha, beta=beta,
                                        kd_temperature=T_kd, ml_temperature=T_ml))
    total = sum(v.item() for v in graph.losses(CohortOutput(logits), scale=0.5).values())
    expected = 0.0
    for k in STUDENTS:
        expected += alpha * naive_soft_kl(logits[k], logits["teacher"], T_kd)
        peers = [naive_soft_kl(logits[k], logits[l], T_ml) for l in STUDENTS if l != k]
        expected += beta * sum(peers) / len(peers)
    assert total == pytest.approx(0.5 * expected, rel=1e-5)


def naive_kl_to(student, q, T):
    """T^2 mean_b sum_c q log(q / softmax(student / T)), with plain Python loops."""
    total = 0.0
    for s_row, q_row in zip(student.tolist(), q.tolist()):
        z = sum(math.exp(v / T) for v in s_row)
        total += sum(qc * math.log(qc / (math.exp(sv / T) / z)) for sv, qc in zip(s_row, q_row) if qc > 0)
    return T * T * total / len(student)


def _softmax_rows(t, T):
    out = []
    for row in t.tolist():
        e = [math.exp(v / T) for v in row]
        out.append([v / sum(e) for v in e])
    return out


def _bound_graph(edges, teachers=(1, 2), weights=(3.0, 1.0), weighting="weighted"):
    cohort = Cohort.from_modules([nn.Identity(), nn.Identity()], teachers=[nn.Identity() for _ in teachers],
                                 teacher_weights=list(weights), student_names=["a", "b"])
    graph = KnowledgeGraph(edges, teacher_weighting=weighting)
    graph.bind(cohort)
    return graph


def test_multi_teacher_weighted_average_matches_the_formula():
    g = torch.Generator().manual_seed(2)
    logits = {n: torch.randn(5, 3, generator=g) for n in ["teacher1", "teacher2", "a", "b"]}
    T = 2.0
    graph = _bound_graph([Edge(TEACHERS, "a", "kl", 1.0, T)])
    got = graph.losses(CohortOutput(logits))["a/kl<-teachers"].item()
    p1, p2 = _softmax_rows(logits["teacher1"], T), _softmax_rows(logits["teacher2"], T)
    q = torch.tensor([[(3 * x + 1 * y) / 4 for x, y in zip(r1, r2)] for r1, r2 in zip(p1, p2)])
    assert got == pytest.approx(naive_kl_to(logits["a"], q, T), rel=1e-5)


def test_confidence_weighting_follows_ca_mkd():
    # Two teachers: per sample, w_k = 1 - softmax_k(CE_k) (K - 1 = 1), so the teacher with the lower
    # cross-entropy on the label gets the larger weight.
    t1 = torch.tensor([[4.0, 0.0], [0.0, 4.0]])  # right on sample 0 (label 0), wrong on sample 1 (label 0)
    t2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0])
    student = torch.zeros(2, 2)
    graph = _bound_graph([Edge(TEACHERS, "a", "kl", 1.0, 1.0)], weights=(1.0, 1.0), weighting="confidence")
    got = graph.losses(CohortOutput({"teacher1": t1, "teacher2": t2, "a": student, "b": student}), labels)["a/kl<-teachers"]
    ce = [[-math.log(p[0]) for p in _softmax_rows(t, 1.0)] for t in (t1, t2)]  # CE per teacher per sample
    q = []
    for i in range(2):
        e1, e2 = math.exp(ce[0][i]), math.exp(ce[1][i])
        w1, w2 = 1 - e1 / (e1 + e2), 1 - e2 / (e1 + e2)
        p1, p2 = _softmax_rows(t1, 1.0)[i], _softmax_rows(t2, 1.0)[i]
        q.append([w1 * x + w2 * y for x, y in zip(p1, p2)])
    assert got.item() == pytest.approx(naive_kl_to(student, torch.tensor(q), 1.0), rel=1e-5)


def test_teacher_weights_are_refused_where_confidence_weighting_reads_none():
    """CA-MKD's per-sample weights replace the fixed mu: weights given would change nothing, and
    the README refuses a setting no term reads; equal weights of 1 (the default) pass."""
    with pytest.raises(ConfigError, match=r"teacher_weighting 'confidence' .* reads no teacher weight, yet weights "
                                          r"are given \('teacher1': 3, 'teacher2': 0.5\): remove them"):
        _bound_graph([Edge(TEACHERS, "a", "kl", 1.0, 1.0)], weights=(3.0, 0.5), weighting="confidence")
    _bound_graph([Edge(TEACHERS, "a", "kl", 1.0, 1.0)], weights=(1.0, 1.0), weighting="confidence")


def test_confidence_weighting_trains_as_ca_mkds_own_loss_does():
    # CA-MKD writes the loss as sum_k w_k T^2 KL(p_k || p_s), one KL per teacher; the graph uses
    # T^2 KL(q || p_s) of the mixture q = sum_k w_k p_k. Their gradients with respect to the
    # student are equal, and the values differ by sum_k w_k T^2 KL(p_k || q), which no student
    # changes (docs/presets/multi-teacher.md says so).
    g = torch.Generator().manual_seed(5)
    T, teachers = 3.0, [torch.randn(4, 5, generator=g) for _ in range(3)]
    labels = torch.tensor([0, 1, 4, 2])
    names = {f"teacher{k + 1}": z for k, z in enumerate(teachers)}
    graph = _bound_graph([Edge(TEACHERS, "a", "kl", 1.0, T)], teachers=(1, 2, 3), weights=(1.0, 1.0, 1.0),
                         weighting="confidence")
    student = torch.randn(4, 5, generator=g, requires_grad=True)
    ours = graph.losses(CohortOutput({**names, "a": student, "b": student.detach()}), labels)["a/kl<-teachers"]
    (ours_grad,) = torch.autograd.grad(ours, student)

    probs = [_softmax_rows(z, T) for z in teachers]
    ce = [[-math.log(_softmax_rows(z, 1.0)[i][int(labels[i])]) for i in range(4)] for z in teachers]
    paper, constant = 0.0, 0.0
    for i in range(4):
        e = [math.exp(ce[k][i]) for k in range(3)]
        w = [(1 - e[k] / sum(e)) / 2 for k in range(3)]
        q = [sum(w[k] * probs[k][i][c] for k in range(3)) for c in range(5)]
        p_student = torch.softmax(student[i] / T, dim=0)
        for k in range(3):
            paper = paper + w[k] * T * T * sum(probs[k][i][c] * (math.log(probs[k][i][c]) - torch.log(p_student[c]))
                                               for c in range(5))
            constant += w[k] * T * T * sum(probs[k][i][c] * math.log(probs[k][i][c] / q[c]) for c in range(5))
    paper = paper / 4
    (paper_grad,) = torch.autograd.grad(paper, student)
    assert torch.allclose(ours_grad, paper_grad, atol=1e-6)
    assert constant > 0.01 and ours.item() == pytest.approx(paper.item() - constant / 4, rel=1e-5)


def test_ensemble_source_is_the_mean_of_students():
    g = torch.Generator().manual_seed(3)
    logits = {n: torch.randn(4, 3, generator=g) for n in ["teacher1", "teacher2", "a", "b"]}
    graph = _bound_graph([Edge(ENSEMBLE, "a", "kl", 1.0, 3.0)])
    got = graph.losses(CohortOutput(logits))["a/kl<-ensemble"].item()
    pa, pb = _softmax_rows(logits["a"], 3.0), _softmax_rows(logits["b"], 3.0)
    q = torch.tensor([[(x + y) / 2 for x, y in zip(ra, rb)] for ra, rb in zip(pa, pb)])
    assert got == pytest.approx(naive_kl_to(logits["a"], q, 3.0), rel=1e-5)


def test_ensemble_source_of_maps_of_different_sizes_is_the_scored_ensemble():
    """Students whose maps differ in size (another output stride): the graph's ``ensemble``
    target is the ensemble evaluation scores (each student's probabilities resized to the
    largest map, then averaged), not one made at the first student's size; the learner is
    compared at that size, by a per-pixel loop of the KL over the valid pixels."""
    from peerdistill.tasks import SegmentationTask

    g = torch.Generator().manual_seed(4)
    logits = {"teacher1": torch.randn(2, 3, 8, 8, generator=g), "teacher2": torch.randn(2, 3, 8, 8, generator=g),
              "a": torch.randn(2, 3, 4, 4, generator=g), "b": torch.randn(2, 3, 8, 8, generator=g)}
    labels = torch.randint(0, 3, (2, 8, 8), generator=g)
    labels[0, :3] = 255
    graph = _bound_graph([Edge(ENSEMBLE, "a", "kl", 1.0, 1.0)])
    got = graph.losses(CohortOutput(logits), labels)["a/kl<-ensemble"].item()
    upsized = torch.nn.functional.interpolate(logits["a"].softmax(dim=1), size=(8, 8), mode="bilinear")
    q = (upsized + logits["b"].softmax(dim=1)) / 2
    assert torch.allclose(q, SegmentationTask(3).ensemble([logits["a"].softmax(dim=1), logits["b"].softmax(dim=1)]))
    p = torch.nn.functional.interpolate(logits["a"], size=(8, 8), mode="bilinear").softmax(dim=1)
    terms = [sum(q[i, c, h, w] * math.log(q[i, c, h, w] / p[i, c, h, w]) for c in range(3)).item()
             for i in range(2) for h in range(8) for w in range(8) if labels[i, h, w] != 255]
    assert got == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_edge_names_and_binding_errors():
    cohort = Cohort.from_modules([SmallCNN(1, 2), SmallCNN(1, 2)], teacher=SmallCNN(1, 2), frozen_teacher=True)
    graph = KnowledgeGraph([Edge("teacher", "student1", "kl", 1.0, 4.0)])
    graph.bind(cohort)
    zeros = torch.zeros(1, 2)
    assert list(graph.losses(CohortOutput({"teacher": zeros, "student1": zeros}))) == ["student1/kl<-teacher"]
    with pytest.raises(ConfigError, match="no model named 'studnet1'"):
        KnowledgeGraph([Edge("teacher", "studnet1")]).bind(cohort)
    with pytest.raises(ConfigError, match="frozen model cannot learn"):
        KnowledgeGraph([Edge("student1", "teacher")]).bind(cohort)
    with pytest.raises(ConfigError, match="duplicate"):
        KnowledgeGraph([Edge("a", "b"), Edge("a", "b")])
    with pytest.raises(ConfigError, match="needs source_layer and target_layer"):
        KnowledgeGraph([Edge("teacher", "student1", "hint")])
    with pytest.raises(ConfigError, match="features come from one model"):
        KnowledgeGraph([Edge(TEACHERS, "student1", "hint", 1, 1, "a", "b")])


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0.0) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0.5) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(1.0) == 1.0 and sigmoid_rampup(3.0) == 1.0


def test_distill_spec_defaults_are_documented_values():
    d = DistillSpec()
    assert (d.alpha, d.beta, d.kd_temperature, d.ml_temperature) == (1.0, 1.0, 4.0, 1.0)


def test_feature_edges_on_heads_are_checked():
    from peerdistill.models.heads import HeadedModel

    net = HeadedModel(SmallCNN(1, 3, 4, 3), ["features.2"], "features", 3, torch.zeros(2, 1, 8, 8))
    cohort = Cohort.from_modules([net, SmallCNN(1, 3, 4, 2)])
    with pytest.raises(ConfigError, match="heads have no module paths"):
        KnowledgeGraph([Edge("student2", "student1@features.2", "hint", 1, 1, "features", "features")]).bind(cohort)
    with pytest.raises(ConfigError, match="does not exist on 'student2'"):
        KnowledgeGraph([Edge("student2", "student1", "hint", 1, 1, "@deep", "features")]).bind(cohort)
    KnowledgeGraph([Edge("student1", "student1@features.2", "hint", 1, 1, "@deep", "@bottleneck")]).bind(cohort)


@pytest.mark.parametrize("key, value", [("rampup_epochs", 5), ("discriminator_lr", 1e-3), ("gp_weight", 5.0)])
def test_the_trainers_distill_keys_given_to_the_graph_are_refused_naming_the_trainer(key, value):
    for build in (preset_edges, KnowledgeGraph.from_preset):
        with pytest.raises(ConfigError, match=rf"{key} is an argument of the Trainer, not of the graph: "
                                              rf"Trainer\(\.\.\., {key}={value!r}\)"):
            build("kd+ml", "teacher", ["s1", "s2"], **{key: value})


def test_heads_no_edge_teaches_are_warned_of():
    """A HeadedModel in a graph built without heads= gets no self-distillation edges."""
    from peerdistill.models.heads import HeadedModel

    net = HeadedModel(SmallCNN(1, 3, 4, 3), ["features.2", "features.6"], "features", 3, torch.zeros(2, 1, 8, 8))
    cohort = Cohort.from_modules([net, SmallCNN(1, 3, 4, 2)])
    with pytest.warns(PeerdistillWarning, match=r"heads \['student1@features.2', 'student1@features.6'\] learn from "
                                                r"no edge.*in a config, any preset but custom; in Python, "
                                                r"KnowledgeGraph.from_preset\(\.\.\., heads="):
        KnowledgeGraph.from_preset("ml", None, ["student1", "student2"]).bind(cohort)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        heads = {m.name: m.head_layers for m in cohort.members}
        KnowledgeGraph.from_preset("ml", None, ["student1", "student2"], heads=heads).bind(cohort)


def test_a_head_deeper_than_the_deep_layer_is_refused_but_a_saved_one_loads():
    from peerdistill.models.heads import HeadedModel

    with pytest.raises(ConfigError, match=r"head layer\(s\) \['features.10'\] run after deep_layer 'features.6'.*"
                                          r"forward order: features.2, features.6, features.10\)"):
        HeadedModel(SmallCNN(1, 3, 4, 3), ["features.2", "features.10"], "features.6", 3, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ConfigError, match=r"\['features'\] run after deep_layer 'features.6'"):  # a parent runs last
        HeadedModel(SmallCNN(1, 3, 4, 3), ["features"], "features.6", 3, torch.zeros(2, 1, 8, 8))
    HeadedModel(SmallCNN(1, 3, 4, 3), ["features.10"], "features.6", 3, torch.zeros(2, 1, 8, 8), check_depth=False)


def test_heads_need_a_layer_other_than_the_deep_one_and_leave_the_network_in_its_mode():
    from peerdistill.models.heads import HeadedModel

    with pytest.raises(ConfigError, match="model: self-distillation needs at least one head layer"):
        HeadedModel(SmallCNN(1, 3, 4, 3), [], "features", 3, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ConfigError, match="model: head layer 'features.6' is the deepest layer itself"):
        HeadedModel(SmallCNN(1, 3, 4, 3), ["features.2", "features.6"], "features.6", 3, torch.zeros(2, 1, 8, 8))
    # the shapes are read in eval mode; a network being trained is handed back training (its BatchNorm
    # would otherwise stop learning its statistics), one in eval mode stays so
    for training in (True, False):
        base = SmallCNN(1, 3, 4, 3).train(training)
        HeadedModel(base, ["features.2"], "features", 3, torch.zeros(2, 1, 8, 8))
        assert base.training is training and all(m.training is training for m in base.modules())


def test_a_wrong_feature_layer_is_named_when_the_cohort_is_made_even_if_no_edge_reads_it():
    with pytest.raises(ConfigError, match=r"model 'student2' \(its feature_layer\) has no module at path 'featurs'; "
                                          "close matches: features"):
        Cohort.from_modules([SmallCNN(1, 3, 4, 2), SmallCNN(1, 3, 4, 2)], feature_layers={"student2": "featurs"})
    with pytest.raises(ConfigError, match="has feature_layer 3: give a module path"):
        Cohort.from_modules([SmallCNN(1, 3, 4, 2)], feature_layers={"student1": 3})


def test_class_255_is_a_class_in_classification_not_an_ignored_pixel():
    from peerdistill.losses.logits import confidence_weights
    from peerdistill.tasks.classification import balanced_class_weights

    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 300, generator=g), torch.randn(2, 300, generator=g)
    z1[0, 255] = 9.0  # teacher 1 is sure of the right class 255 on sample 0
    labels = torch.tensor([255, 254])
    w = confidence_weights([z1, z2], labels)
    ce = torch.stack([torch.nn.functional.cross_entropy(z, labels, reduction="none") for z in (z1, z2)])
    assert torch.allclose(w, 1 - torch.softmax(ce, dim=0)) and w[0, 0] > 0.99
    # in a label map, 255 still marks an ignored pixel: both teachers weigh 1/2 there
    maps = [z.view(2, 300, 1, 1) for z in (z1, z2)]
    assert w.new_tensor([0.5, 0.5]).allclose(confidence_weights(maps, labels.view(2, 1, 1))[:, 0, 0, 0])
    targets = torch.tensor([0, 0, 255, 255])
    assert balanced_class_weights(targets, 256)[255].item() == pytest.approx(4 / (256 * 2))
    # and so does a classification task's class weighting, built from a config
    from peerdistill import DataSplits
    from peerdistill.build import build_task
    from peerdistill.config import default_config, validate

    x = torch.zeros(4, 1, 2, 2)
    data = DataSplits.from_arrays(x, targets, x, targets, x, targets, normalize=False)
    task = build_task(validate({**default_config(), "data": {"class_weights": True}}), data)
    assert task.class_weights[255].item() == pytest.approx(4 / (256 * 2))


def test_preset_keywords_are_validated_as_the_distill_section():
    assert preset_edges("kd", "teacher", ["s"], alpha=0.5, kd_temperature=2)[0].weight == 0.5
    with pytest.raises(ConfigError, match=r"unknown key 'kd_temprature' \(did you mean 'kd_temperature'\?\)"):
        preset_edges("kd", "teacher", ["s"], kd_temprature=2.0)
    with pytest.raises(ConfigError, match="'kd_temperature': Input should be greater than 0"):
        preset_edges("kd", "teacher", ["s"], kd_temperature=-1)
    with pytest.raises(ConfigError, match="'beta': Input should be greater than or equal to 0"):
        preset_edges("ml", None, ["s", "t"], beta=-1)


def test_dkd_edges_from_the_presets_and_their_terms_match_the_definition():
    from tests.test_losses import naive_dkd

    spec = DistillSpec(kd_loss="dkd", dkd_nckd_weight=2.0, alpha=0.5, kd_temperature=3.0)
    edges = preset_edges("kd+ml", "teacher", ["s1", "s2"], spec)
    assert [(e.kind, e.source, e.nckd_weight) for e in edges if e.source == "teacher"] == [("dkd", "teacher", 2.0)] * 2
    assert {e.kind for e in edges if e.source != "teacher"} == {"kl"}  # peers keep the softened KL
    g = torch.Generator().manual_seed(5)
    logits = {n: torch.randn(6, 4, generator=g) * 2 for n in ["teacher1", "teacher2", "a", "b"]}
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    graph = _bound_graph([Edge("teacher1", "a", "dkd", 0.5, 3.0, nckd_weight=2.0),
                          Edge(TEACHERS, "b", "dkd", 1.0, 3.0, nckd_weight=2.0)])
    terms = graph.losses(CohortOutput(logits), labels)
    q1 = torch.softmax(logits["teacher1"] / 3, dim=1)
    assert terms["a/dkd<-teacher1"].item() == pytest.approx(0.5 * naive_dkd(logits["a"], q1, labels, 3.0, 2.0), rel=1e-5)
    q = (3 * q1 + torch.softmax(logits["teacher2"] / 3, dim=1)) / 4  # the teachers' weights mu 3 and 1
    assert terms["b/dkd<-teachers"].item() == pytest.approx(naive_dkd(logits["b"], q, labels, 3.0, 2.0), rel=1e-5)
    with pytest.raises(ConfigError, match="needs one class label per sample"):
        graph.losses(CohortOutput(logits))
    from peerdistill.errors import PeerdistillWarning

    two = {n: torch.randn(6, 2, generator=g) for n in ["teacher1", "teacher2", "a", "b"]}
    with pytest.warns(PeerdistillWarning, match="with two classes .* decoupled KD is then the softened KL"):
        graph.check_dense(CohortOutput(two))
    binary = torch.tensor([0, 1, 1, 0, 1, 0])
    assert graph.losses(CohortOutput(two), binary)["a/dkd<-teacher1"].item() == pytest.approx(
        0.5 * naive_kl_to(two["a"], torch.tensor(_softmax_rows(two["teacher1"], 3.0)), 3.0), rel=1e-5)  # the KL
    maps = {n: torch.randn(2, 3, 4, 4) for n in ["teacher1", "teacher2", "a", "b"]}
    with pytest.raises(ConfigError, match="kind 'dkd' splits class vectors"):
        graph.check_dense(CohortOutput(maps))


def test_what_a_kind_does_not_read_is_refused_not_dropped(tmp_path, capsys):
    """Layers on an edge that compares outputs, or a temperature on one that does not soften,
    would be dropped without a word: the user meant another loss."""
    for kind in ("kl", "dkd", "holistic"):
        with pytest.raises(ConfigError, match=f"kind '{kind}' compares the models' outputs, not layers"):
            KnowledgeGraph([Edge("teacher", "student1", kind, 1.0, 1.0, "features", "features")])
    for kind in ("hint", "at", "sp", "pair"):
        with pytest.raises(ConfigError, match=f"kind '{kind}' uses no temperature"):
            KnowledgeGraph([Edge("teacher", "student1", kind, 1.0, 4.0, "features", "features")])
    with pytest.raises(ConfigError, match="kind 'holistic' uses no temperature"):
        KnowledgeGraph([Edge("teacher", "student1", "holistic", 1.0, 4.0)])
    # what they do read stays allowed: cwd softens, on logits or on layers
    KnowledgeGraph([Edge("teacher", "student1", "cwd", 1.0, 4.0, "features", "features"),
                    Edge("teacher", "student2", "kl", 1.0, 4.0), Edge("teacher", "student2", "hint", 1.0, 1.0, "a", "b")])
    # from a config too: one message, exit 2, before any training
    from peerdistill.cli import main

    edge = "{source: teacher, target: student1, kind: kl, source_layer: features.0, target_layer: features.0}"
    assert main(["train", f"out_dir={tmp_path}", "distill.preset=custom", f"distill.edges=[{edge}]", "--quiet"]) == 2
    assert "kind 'kl' compares the models' outputs, not layers" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.safetensors"))  # nothing trained


@pytest.mark.parametrize("kind", ["at", "pair", "cwd"])
def test_a_map_of_one_position_is_refused_where_a_kind_compares_spatial_spread(kind):
    """A globally pooled [C, 1, 1] layer passes a [C, H, W] check, but its attention map, node
    affinities or spatial softmax do not depend on its weights: the loss would teach nothing."""
    graph = KnowledgeGraph([Edge("teacher", "student1", kind, 1.0, 1.0, "body", "pool")])
    out = CohortOutput({"teacher": torch.randn(2, 3, 4, 4), "student1": torch.randn(2, 3, 4, 4)},
                       {"teacher": {"body": torch.randn(2, 8, 4, 4)}, "student1": {"pool": torch.randn(2, 5, 1, 1)}})
    with pytest.raises(ConfigError, match=r"layer 'pool' of 'student1' gives \[5, 1, 1\], a single position"):
        graph.check_dense(out)
    out.features["student1"]["pool"] = torch.randn(2, 5, 2, 1)  # two positions: a distribution to compare
    graph.check_dense(out)


def test_a_pair_edge_whose_source_map_is_one_node_is_refused():
    """Pair-wise affinity pools the source's map into node_size x node_size nodes (the learner's
    is resized to it): one node is one affinity, 1 on both sides, and a loss of 0 (to rounding)."""
    from peerdistill.losses.dense import pairwise_affinity

    learner = torch.randn(2, 5, 4, 4, requires_grad=True)
    assert pairwise_affinity(learner, torch.randn(2, 8, 2, 2), node_size=2).item() == pytest.approx(0, abs=1e-12)
    graph = KnowledgeGraph([Edge("teacher", "student1", "pair", 1.0, 1.0, "body", "block")], pair_node_size=2)
    out = CohortOutput({}, {"teacher": {"body": torch.randn(2, 8, 2, 2)}, "student1": {"block": torch.randn(2, 5, 4, 4)}})
    with pytest.raises(ConfigError, match=r"nodes of 2x2 positions, but layer 'body' of 'teacher' gives \[8, 2, 2\]"):
        graph.check_dense(out)
    out.features["teacher"]["body"] = torch.randn(2, 8, 3, 2)  # ceil(3/2) x 1: two nodes
    graph.check_dense(out)
    out.features["student1"]["block"] = torch.randn(2, 5, 2, 2)  # a small learner is resized up: fine
    graph.check_dense(out)


def test_a_saved_config_with_keys_its_edge_kind_never_read_still_builds_its_graph():
    """Runs saved before such keys were refused trained without them: read back, the keys are
    left out (the same graph, the same config), while a new config is refused when it is read."""
    from peerdistill.build import build_cohort, build_graph
    from peerdistill.config import validate
    from peerdistill.data import build_data

    edges = [{"source": "teacher", "target": "student1", "kind": "hint", "temperature": 4.0,
              "source_layer": "features", "target_layer": "features"},
             {"source": "teacher", "target": "student2", "kind": "kl", "temperature": 4.0,
              "source_layer": "features", "target_layer": "features"}]
    from peerdistill.config import default_config

    tree = {**default_config(), "distill": {"preset": "custom", "edges": edges}}
    with pytest.raises(ConfigError, match="kind 'hint' uses no temperature"):
        validate(tree)
    cfg = validate(tree, saved=True)
    graph = build_graph(cfg, build_cohort(cfg, build_data(cfg.data)))
    assert [(e.kind, e.temperature, e.source_layer) for e in graph.edges] == [("hint", 1.0, "features"),
                                                                            ("kl", 4.0, None)]
    # read back, it is the config written without them: compare reuses the run, --resume takes it
    edges[0].pop("temperature"), edges[1].pop("source_layer"), edges[1].pop("target_layer")
    assert cfg.distill == validate(tree).distill


def test_peer_feature_edges_share_gamma_among_the_other_students():
    """With three students, each of a student's two peer edges weighs 1/2 of its weight: the DML
    mean over peers, for features (gamma) as for logits (beta)."""
    layers = {"teacher": "t", "a": "x", "b": "y", "c": "z"}
    edges = preset_edges("styles", ["teacher"], ["a", "b", "c"], gamma=3.0, beta=2.0, feature_layers=layers)
    peers = [e for e in edges if e.source != "teacher"]
    assert sorted((e.source, e.target, e.kind, e.weight) for e in peers) == sorted(
        [(s, t, "kl", 1.0) for s in "abc" for t in "abc" if s != t]
        + [(s, t, "hint", 1.5) for s in "abc" for t in "abc" if s != t])


def test_dense_teacher_terms_share_their_weight_among_the_teachers():
    """Two teachers: each teacher's pair, holistic and cwd edge into a student weighs half of
    pair_weight, holistic_weight and cwd_weight."""
    layers = {"t1": "l", "t2": "l", "a": "x"}
    edges = preset_edges("multi-teacher", ["t1", "t2"], ["a"], pair_weight=0.6, holistic_weight=0.2,
                         cwd_weight=0.4, feature_layers=layers)
    dense = {(e.source, e.kind): e.weight for e in edges if e.kind in ("pair", "holistic", "cwd")}
    assert dense == pytest.approx({(t, kind): w for t in ("t1", "t2")
                                   for kind, w in (("pair", 0.3), ("holistic", 0.1), ("cwd", 0.2))})


def test_a_combined_source_at_two_temperatures_gives_each_edge_its_own_target():
    """teachers -> a at T = 1 and teachers -> b at T = 4: each KL against the teachers' weighted
    mean (3:1) softened at its own edge's temperature, by hand."""
    g = torch.Generator().manual_seed(4)
    logits = {n: torch.randn(5, 3, generator=g) for n in ["teacher1", "teacher2", "a", "b"]}
    graph = _bound_graph([Edge(TEACHERS, "a", "kl", 1.0, 1.0), Edge(TEACHERS, "b", "kl", 1.0, 4.0)])
    terms = graph.losses(CohortOutput(logits))
    for student, T in (("a", 1.0), ("b", 4.0)):
        p1, p2 = _softmax_rows(logits["teacher1"], T), _softmax_rows(logits["teacher2"], T)
        q = torch.tensor([[(3 * x + y) / 4 for x, y in zip(r1, r2)] for r1, r2 in zip(p1, p2)])
        assert terms[f"{student}/kl<-teachers"].item() == pytest.approx(naive_kl_to(logits[student], q, T), rel=1e-5)


def test_an_edge_of_weight_zero_is_no_term_and_its_source_is_not_read():
    """A switched-off edge leaves no term in the records, and a NaN from its source cannot reach the
    total."""
    g = torch.Generator().manual_seed(5)
    logits = {"t": torch.full((4, 3), float("nan")), "a": torch.randn(4, 3, generator=g),
              "b": torch.randn(4, 3, generator=g)}
    graph = KnowledgeGraph([Edge("t", "a", "kl", 0.0, 4.0), Edge("b", "a", "kl", 1.0, 1.0)])
    terms = graph.losses(CohortOutput(logits))
    assert list(terms) == ["a/kl<-b"]
    q = torch.tensor(_softmax_rows(logits["b"], 1.0))
    assert terms["a/kl<-b"].item() == pytest.approx(naive_kl_to(logits["a"], q, 1.0), rel=1e-5)


def test_a_frozen_teachers_logits_may_be_saved_for_backward_by_a_users_loss():
    """Cloned out of inference mode: a logit_distiller multiplying the student's logits by the
    teacher's keeps the teacher's for backward. By hand: x = [1, 2], student = identity, teacher
    W = [[2, 1], [0, 3]], b = [1, -1] gives [5, 5]; mean(s * t) = (5 + 10) / 2 = 7.5, and
    d/dW_ij = t_i x_j / 2."""
    student, teacher = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        student.weight.copy_(torch.eye(2))
        student.bias.zero_()
        teacher.weight.copy_(torch.tensor([[2.0, 1.0], [0.0, 3.0]]))
        teacher.bias.copy_(torch.tensor([1.0, -1.0]))
    cohort = Cohort.from_modules([student], teacher=teacher, frozen_teacher=True)
    out = cohort.forward(torch.tensor([[1.0, 2.0]]))
    assert not out.logits["teacher"].is_inference()
    graph = KnowledgeGraph([Edge("teacher", "student1")], logit_distiller=lambda s, t, T, y: (s * t).mean())
    graph.bind(cohort)
    loss = graph.losses(out)["student1/kl<-teacher"]
    loss.backward()
    assert loss.item() == pytest.approx(7.5)
    assert student.weight.grad.flatten().tolist() == pytest.approx([2.5, 5.0, 2.5, 5.0])


def test_a_users_own_loss_replaces_the_kl_and_leaves_its_source_without_gradient():
    # between two students (mutual learning with a loss of one's own): the source is a peer in
    # training, whose logits must not be pulled towards its learner's
    torch.manual_seed(0)
    first, second = nn.Linear(3, 2), nn.Linear(3, 2)
    cohort = Cohort.from_modules([first, second])
    x = torch.randn(4, 3)
    seen = []

    def squared_distance(learner, source, temperature, labels):
        seen.append((temperature, labels))
        return ((learner - source) ** 2).mean()

    graph = KnowledgeGraph([Edge("student1", "student2", temperature=2.0)], logit_distiller=squared_distance)
    graph.bind(cohort)
    labels = torch.tensor([0, 1, 1, 0])
    terms = graph.losses(cohort.forward(x), labels)
    assert list(terms) == ["student2/kl<-student1"]  # the edge's name, whatever the loss
    expected = ((second(x) - first(x)) ** 2).mean()
    assert terms["student2/kl<-student1"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert seen[0][0] == 2.0 and torch.equal(seen[0][1], labels)
    terms["student2/kl<-student1"].backward()
    assert first.weight.grad is None and second.weight.grad is not None
    with pytest.raises(ConfigError, match="logit_distiller= takes a function"):
        KnowledgeGraph([Edge("student1", "student2")], logit_distiller="mse")
    # what a distiller cannot take is said as its own (review 55a: "for this task" blamed the task)
    with pytest.raises(ConfigError, match=r"edge ensemble -> student1: with a logit_distiller \(a detection run's box "
                                          r"distillation, or a loss of your own given to KnowledgeGraph\) an edge "
                                          r"takes one model as its source, not 'ensemble': give an edge from each"):
        KnowledgeGraph([Edge("ensemble", "student1")], logit_distiller=squared_distance)
    with pytest.raises(ConfigError, match=r"edge teacher -> student1: kind 'cwd' is not available with a "
                                          r"logit_distiller .*: use kl, which the distiller computes"):
        KnowledgeGraph([Edge("teacher", "student1", "cwd")], logit_distiller=squared_distance)
    # a loss of one's own that breaks the contract: named by edge, not a failure deep in the step (review 52b)
    out = cohort.forward(x)
    own = torch.zeros((), requires_grad=True)
    fix = "for edge student2/kl<-student1: return a scalar tensor computed from the learner's logits"
    for distiller, said in (
            (lambda s, t, T, y: (s - t) ** 2, rf"a torch.float32 tensor of shape \(4, 2\) {fix} \(say, .mean\(\)\)"),
            (lambda s, t, T, y: 0.5, f"a float {fix}"),
            (lambda s, t, T, y: torch.tensor(0.3), f"a loss without a gradient to the learner \\(detached, or a constant\\) {fix}"),
            # (review 53b: a gradient, but to a parameter of the user's own alone)
            (lambda s, t, T, y: own * 1.0, f"a loss whose gradient does not reach the learner's logits \\(computed from "
                                           f"other tensors alone\\) {fix}")):
        broken = KnowledgeGraph([Edge("student1", "student2")], logit_distiller=distiller)
        broken.bind(cohort)
        with pytest.raises(ConfigError, match=f"^logit_distiller returned {said}"):
            broken.losses(out, labels)
