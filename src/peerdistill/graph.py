"""Knowledge edges (who teaches whom, with what) and the presets that are just sets of them."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from pydantic import ValidationError

from .config import (PRESET_DOCS, TEACHER_PRESETS, DistillSpec, format_validation_error, unread_distill_keys,
                     unread_edge_keys)
from .config.presets import PEER_LOGITS_ALONE, TEACHER_LOGITS_TO_EVERY_STUDENT
from .arguments import check_not_negative, whole_number
from .capture import module_paths, refuse_channels_last, unwrap
from .connectors import Connector
from .errors import ConfigError, warn_user
from .values import is_finite_number
from .losses import attention_transfer, confidence_weights, fitnet_hint, similarity_preserving, soft_kl
from .losses.logits import checked_temperature, dkd_to_softened, kl_to_softened, mix_soft_targets
from .losses.adversarial import holistic_generator_loss
from .losses.dense import channel_wise, pairwise_affinity
from .models.heads import DEEP_FEATURE, HEAD_FEATURE, HeadedModel
from .spatial import align_to, labels_at, mean_at_largest, valid_pixels

if TYPE_CHECKING:
    from .cohort import Cohort, CohortOutput

TEACHERS = "teachers"  # virtual source: the teachers' soft targets combined (multi-teacher KD)
ENSEMBLE = "ensemble"  # virtual source: the students' ensemble (online ensemble KD, as in KDCL/ONE)
LOGIT_KINDS = ("kl", "dkd", "cwd", "holistic")  # cwd also works on features (with layers)
FEATURE_KINDS = ("hint", "at", "sp", "pair")
DENSE_KINDS = ("cwd", "holistic", "pair")  # need [B, C, H, W] maps: segmentation


@dataclass(frozen=True)
class Edge:
    """``target`` learns from ``source``; ``source`` gets no gradient. ``source`` is a model's
    name, or ``teachers`` / ``ensemble`` (their combined soft targets). Logit edges compare
    predictions: ``kl`` (softened KL, Hinton et al.), ``dkd`` (decoupled KD; ``nckd_weight`` the
    non-target classes' share), ``cwd`` (channel-wise, segmentation maps; also on features) and
    ``holistic`` (an adversarial critic, segmentation). Feature edges compare the outputs of
    ``source_layer`` and ``target_layer`` (module paths): ``hint`` (FitNets, through a
    connector), ``at`` (attention transfer), ``sp`` (similarity-preserving) and ``pair``
    (pair-wise affinity, segmentation). ``weight`` scales the term; ``temperature`` softens the
    logit kinds (docs/methods.md gives each formula)."""

    source: str
    target: str
    kind: str = "kl"
    weight: float = 1.0
    temperature: float = 1.0
    source_layer: str | None = None
    target_layer: str | None = None
    nckd_weight: float = 8.0  # dkd: the weight of the non-target classes' term

    def __post_init__(self) -> None:
        if self.kind not in LOGIT_KINDS + FEATURE_KINDS:  # said here, where it is written
            close = difflib.get_close_matches(str(self.kind), LOGIT_KINDS + FEATURE_KINDS, n=1)
            raise ConfigError(f"edge {self.source} -> {self.target}: unknown kind {self.kind!r}"
                              f"{f' (did you mean {close[0]!r}?)' if close else ''}: one of "
                              f"{', '.join(LOGIT_KINDS + FEATURE_KINDS)}")
        # a negative temperature reverses the class order of both sides, a negative weight pushes
        # the target away from its source: both would train on to the end on a wrong objective
        # (a config's bounds past any use are not asked here: a saved run's edges are built as they trained)
        for what, value, least in (("weight", self.weight, "0 or more"), ("temperature", self.temperature, "above 0"),
                                   ("nckd_weight", self.nckd_weight, "0 or more")):
            if not is_finite_number(value) or value < 0 or (what == "temperature" and value == 0):
                raise ConfigError(f"edge {self.source} -> {self.target}: {what} {value!r} must be a number {least}")

    @property
    def on_features(self) -> bool:
        return self.kind in FEATURE_KINDS or (self.kind == "cwd" and self.target_layer is not None)

    @property
    def name(self) -> str:
        base = f"{self.target}/{self.kind}<-{self.source}"
        if self.on_features and self.target_layer and not self.target_layer.startswith("@"):
            return f"{base}[{self.target_layer}<-{self.source_layer}]"
        return base


# distill keys the Trainer reads, not the graph: given to the graph they would change nothing
TRAINER_KEYS = ("rampup_epochs", "discriminator_lr", "gp_weight")


# distill keys the graph reads, not its edges: given to preset_edges they would be dropped
GRAPH_KEYS = ("teacher_weighting", "pair_node_size")


def _names(models: list[str] | str | None) -> list[str]:
    """Model names given as a list (any iterable), one name, or None."""
    return [models] if isinstance(models, str) else list(models or [])


def _with_overrides(params: DistillSpec, overrides: Mapping[str, Any], preset: str, teachers: list[str],
                    heads) -> DistillSpec:
    """``params`` with keyword overrides, validated as a config's distill section is (a
    misspelt name or a negative weight is refused, not ignored, and so is a keyword this preset
    does not read: ``beta`` under ``kd``)."""
    if preset == "custom":  # a config's own edges (distill.edges): from Python, the edges themselves
        raise ConfigError("preset 'custom' is a config's own list of edges (distill.edges); from Python, build the "
                          "graph from them: KnowledgeGraph([Edge('teacher', 'student1', 'kl'), ...])")
    if preset not in PRESET_DOCS:
        raise ConfigError(f"unknown preset '{preset}': choose one of {', '.join(PRESET_DOCS)}")
    heads = {m: h for m, h in (heads or {}).items() if h}
    if preset == "self" and not heads:  # said before the keywords it would leave unread
        raise ConfigError("preset 'self' needs a model with heads: set 'heads' (module paths) on a student")
    for key in TRAINER_KEYS:
        if key in overrides:
            raise ConfigError(f"{key} is an argument of the Trainer, not of the graph: Trainer(..., {key}="
                              f"{overrides[key]!r}); a config's distill.{key} goes there too (the Trainer's "
                              "rampup_epochs defaults to 0, a config's to 5)")
    try:
        p = DistillSpec.model_validate({**params.model_dump(), **overrides})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "preset_edges keywords (the distill section's keys)",
                                                  DistillSpec)) from None
    unread = unread_distill_keys(p.model_copy(update={"preset": preset}), len(teachers), bool(heads))
    ignored = [f"{key}={overrides[key]!r} is read only {unread[key]}, so here it would change nothing"
               for key in overrides if key in unread]
    if ignored:
        raise ConfigError("; ".join(ignored) + ": drop it")
    return p


def _from_cohort(teachers, students, feature_layers, heads) -> tuple[Any, Any, Any, Any]:
    """``preset_edges(preset, cohort)``: a Cohort in the teachers' place gives its teachers' and
    students' names, and its members' feature layers and heads where none are given."""
    from .cohort import Cohort

    if not isinstance(teachers, Cohort):
        if students is None:
            raise ConfigError("preset_edges takes the teacher and student names, preset_edges(preset, 'teacher', "
                              "['student1', 'student2']), or a Cohort alone, preset_edges(preset, cohort)")
        return teachers, students, feature_layers, heads
    cohort = teachers
    if students is not None:
        raise ConfigError("preset_edges takes a Cohort alone (its models' names are its own) or teacher and student "
                          "names, not both")
    return ([m.name for m in cohort.teachers], [m.name for m in cohort.students],
            {m.name: m.feature_layer for m in cohort.members} if feature_layers is None else feature_layers,
            {m.name: m.head_layers for m in cohort.members if m.head_layers} if heads is None else heads)


def _modules_of(cohort: Any) -> dict[str, nn.Module]:
    """The networks of a Cohort's members by name (their layer paths, not their heads'); none
    where models are given by name."""
    from .cohort import Cohort

    if not isinstance(cohort, Cohort):
        return {}
    networks = {m.name: unwrap(m.module) for m in cohort.members}
    return {name: net.base if isinstance(net, HeadedModel) else net for name, net in networks.items()}


def _layer_examples(network: nn.Module | None, shown: int = 6) -> str:
    """A few of ``network``'s module paths, blocks first and shallowest first (a feature layer is
    usually a block): where a model without a feature layer may take one. A generic example where
    the network is not known or has no submodules."""
    paths = [path for path in module_paths(network) if path] if network is not None else []
    if not paths:
        return "for example 'layer3'"
    depth = {path: path.count(".") for path in paths}
    blocks = [path for path in paths if any(other.startswith(f"{path}.") for other in paths)]
    ordered = sorted(blocks, key=depth.get) + sorted((p for p in paths if p not in blocks), key=depth.get)
    more = ", ..." if len(ordered) > shown else ""
    return f"its modules include {', '.join(map(repr, ordered[:shown]))}{more}"


def preset_edges(preset: str, teachers: Any, students: list[str] | None = None,
                 params: DistillSpec | None = None, *, feature_layers: Mapping[str, str | None] | None = None,
                 heads: Mapping[str, list[str]] | None = None, **overrides) -> list[Edge]:
    """The edges of a preset. ``teachers`` and ``students``: the models' names, or a Cohort in
    the teachers' place and no students (its names, feature layers and heads). ``params`` holds
    weights and temperatures (keywords such as ``alpha=0.5`` override it); ``feature_layers``
    names each model's feature layer (for ``styles``), ``heads`` each model's
    self-distillation head layers.

    Mutual learning uses the DML mean over peers: each of the K-1 peer edges into a student
    weighs ``beta / (K - 1)``. Several teachers are combined into the virtual source
    ``teachers``. Models with heads always get the self-distillation edges."""
    modules = _modules_of(teachers)
    teachers, students, feature_layers, heads = _from_cohort(teachers, students, feature_layers, heads)
    teachers = _names(teachers)
    graph_keys = [key for key in GRAPH_KEYS if key in overrides]
    if graph_keys:
        raise ConfigError(f"{', '.join(graph_keys)} belong to the graph, not to its edges: "
                          f"KnowledgeGraph.from_preset(..., {graph_keys[0]}=...) keeps them")
    p = _with_overrides(params or DistillSpec(preset="independent"), overrides, preset, teachers, heads)
    if isinstance(students, str):
        raise ConfigError(f"preset_edges takes a list of student names, got the text {students!r}: write [{students!r}]")
    students = list(students)
    repeated = sorted({n for n in teachers + students if (teachers + students).count(n) > 1})
    if repeated:
        raise ConfigError(f"preset_edges: model names {repeated} are given twice: each model has its own name")
    layers = dict(feature_layers or {})
    k = len(students)
    teacher_source = teachers[0] if len(teachers) == 1 else TEACHERS

    def need_teacher():
        if not teachers:
            raise ConfigError(f"preset '{preset}' needs a teacher")

    def need_peers():
        if k < 2:
            raise ConfigError(f"preset '{preset}' needs at least two students")

    def layer(model: str, asked_by: str | None = None) -> str:
        if not layers.get(model):
            raise ConfigError(
                f"{asked_by or f'preset {preset!r}'} compares feature maps but model '{model}' has no feature layer: "
                f"set its feature_layer to a module path ({_layer_examples(modules.get(model))}); in Python, pass "
                "preset_edges("
                "..., feature_layers={model name: module path}), e.g. {'teacher': 'layer3', 'student1': "
                "'features.2'} (a cohort built with Cohort.from_modules(..., feature_layers={...}) holds them: "
                "{m.name: m.feature_layer for m in cohort.members})"
            )
        return layers[model]

    def teacher_logits(student):
        return Edge(teacher_source, student, p.kd_loss, p.alpha, p.kd_temperature, nckd_weight=p.dkd_nckd_weight)

    def teacher_features(student):
        return [Edge(t, student, p.feature_loss, p.gamma / len(teachers), 1.0, layer(t), layer(student))
                for t in teachers]

    def peer_logits():
        return [Edge(l, s, "kl", p.beta / (k - 1), p.ml_temperature) for s in students for l in students if l != s]

    def peer_features():
        return [Edge(l, s, p.feature_loss, p.gamma / (k - 1), 1.0, layer(l), layer(s))
                for s in students for l in students if l != s]

    edges: list[Edge] = []
    if preset in TEACHER_LOGITS_TO_EVERY_STUDENT:
        need_teacher()
        if preset == "multi-teacher" and len(teachers) < 2:
            raise ConfigError("preset 'multi-teacher' needs at least two teachers: list them under 'teachers'")
        edges += [teacher_logits(s) for s in students]
    if preset in PEER_LOGITS_ALONE:
        need_peers()
        edges += peer_logits()
    if preset == "styles":
        need_teacher()
        need_peers()
        for i, s in enumerate(students):
            edges += [teacher_logits(s)] if i % 2 == 0 else teacher_features(s)
        edges += peer_logits() + peer_features()
    if preset == "styles-features":
        need_teacher()
        need_peers()
        edges += [e for s in students for e in teacher_features(s)] + peer_features()
    if preset in TEACHER_PRESETS:
        edges += dense_teacher_edges(teachers, students, p, layer)
    heads = {m: h for m, h in (heads or {}).items() if h}  # (the self preset's need of them: checked first)
    for model, layers_ in heads.items():
        edges += self_distillation_edges(model, layers_, p)
    if p.ensemble_weight > 0:
        need_peers()
        edges += [Edge(ENSEMBLE, s, "kl", p.ensemble_weight, p.kd_temperature) for s in students]
    return edges


def dense_teacher_edges(teachers: list[str], students: list[str], p: DistillSpec, layer) -> list[Edge]:
    """The structured terms of Liu et al. 2019 and CWD, teacher -> each student, when weighted:
    pair-wise affinity of feature maps (``pair_weight``), holistic adversarial term
    (``holistic_weight``), channel-wise distillation of the logits (``cwd_weight``)."""
    edges = []
    share = 1.0 / max(len(teachers), 1)
    for t in teachers:
        for s in students:
            if p.pair_weight > 0:
                by = "distill.pair_weight (the pair-wise term)"  # (review 50b: it named the preset, which has none)
                edges.append(Edge(t, s, "pair", p.pair_weight * share, 1.0, layer(t, by), layer(s, by)))
            if p.holistic_weight > 0:
                edges.append(Edge(t, s, "holistic", p.holistic_weight * share, 1.0))
            if p.cwd_weight > 0:
                edges.append(Edge(t, s, "cwd", p.cwd_weight * share, p.cwd_temperature))
    return edges


def self_distillation_edges(model: str, head_layers: list[str], p: DistillSpec) -> list[Edge]:
    """Be Your Own Teacher: deepest classifier -> each head (KL, weight a, temperature T) and the
    deepest features -> each head's bottleneck features (L2 hint, weight lambda)."""
    edges = []
    for layer in head_layers:
        head = f"{model}@{layer}"
        edges.append(Edge(model, head, "kl", p.self_alpha, p.self_temperature))
        if p.self_lambda > 0:
            edges.append(Edge(model, head, "hint", p.self_lambda, 1.0, DEEP_FEATURE, HEAD_FEATURE))
    return edges


def self_supervised_weights(heads: Mapping[str, list[str]], p: DistillSpec) -> dict[str, float]:
    """BYOT weighs each shallow head's cross-entropy by (1 - a)."""
    return {f"{m}@{layer}": 1.0 - p.self_alpha for m, layers in heads.items() for layer in layers}


def _checked_supervised_weights(weights: Any) -> dict[str, float]:
    """``supervised_weights=``: output names to finite weights, 0 or more (a negative one would
    train its model to raise its own cross-entropy)."""
    if weights is None:
        return {}
    if not isinstance(weights, Mapping):
        raise ConfigError(f"supervised_weights= takes a dict of output names to weights, got {weights!r}")
    for name, weight in weights.items():
        check_not_negative("supervised_weights", **{repr(name): weight})
    return {name: float(weight) for name, weight in weights.items()}


def _check_distilled(loss: Any, learner: torch.Tensor, edge: Edge, reach: bool = False) -> None:
    """A ``logit_distiller``'s result: a scalar tensor of floating point with a gradient to the
    learner (review 52b: a per-element loss or a float failed deep in the step; a constant taught
    nothing without a word). ``reach``: whether that gradient reaches the learner's logits is
    checked too (a backward through the loss alone, not the network: done once per edge; review
    53b: a loss of the user's own parameter alone passed)."""
    fix = f"logit_distiller returned {{}} for edge {edge.name}: return a scalar tensor computed from the learner's logits"
    if not isinstance(loss, torch.Tensor):
        raise ConfigError(fix.format(f"a {type(loss).__name__}"))
    if loss.ndim != 0 or not loss.is_floating_point():
        raise ConfigError(fix.format(f"a {loss.dtype} tensor of shape {tuple(loss.shape)}") + " (say, .mean())")
    if learner.requires_grad and not loss.requires_grad:
        raise ConfigError(fix.format("a loss without a gradient to the learner (detached, or a constant)"))
    if reach and learner.requires_grad and torch.autograd.grad(loss, learner, retain_graph=True,
                                                               allow_unused=True)[0] is None:
        raise ConfigError(fix.format("a loss whose gradient does not reach the learner's logits (computed from other "
                                     "tensors alone)"))


DISTILLER = "a logit_distiller (a detection run's box distillation, or a loss of your own given to KnowledgeGraph)"


class KnowledgeGraph:
    """The edges of a run; turns a cohort's outputs into named loss terms."""

    def __init__(self, edges: Iterable[Edge], *, supervised_weights: Mapping[str, float] | None = None,
                 teacher_weighting: str = "weighted", pair_node_size: int = 2,
                 logit_distiller: Callable[[torch.Tensor, torch.Tensor, float, torch.Tensor | None], torch.Tensor]
                 | None = None):
        """``logit_distiller(learner, source, temperature, labels)`` replaces the softened KL of
        ``kl`` edges (a loss of one's own; detection's dense box outputs): the learner's logits,
        the source's (detached), the edge's temperature and the batch's targets, to a scalar;
        such edges take one model as their source, and their terms keep the edges' names.
        ``supervised_weights``: the weight of an output's own cross-entropy (1 where not named);
        ``from_preset`` sets it for self-distillation heads as a config does."""
        if isinstance(edges, (str, bytes)) or not hasattr(edges, "__iter__"):
            raise ConfigError(f"KnowledgeGraph takes a list of Edge, got {edges!r}: a preset's graph is "
                              "KnowledgeGraph.from_preset(name, cohort)")
        self.edges = list(edges)
        for e in self.edges:
            if not isinstance(e, Edge):
                raise ConfigError(f"KnowledgeGraph takes a list of Edge, and {e!r} is a {type(e).__name__}: "
                                  f"Edge(source, target, kind, ...){', Edge(**it)' if isinstance(e, dict) else ''}")
        if logit_distiller is not None and not callable(logit_distiller):
            raise ConfigError(f"logit_distiller= takes a function f(learner, source, temperature, labels), got "
                              f"{logit_distiller!r}")
        self.logit_distiller = logit_distiller
        size = whole_number(pair_node_size)
        if size is None or size < 1:  # (from_preset's section refuses it too; nodes of 0 read as 1, review 52b)
            raise ConfigError(f"pair_node_size must be a whole number, 1 or more, got {pair_node_size!r}")
        self.pair_node_size = size
        if supervised_weights is None and any(e.kind == "kl" and "@" in e.target for e in self.edges):
            warn_user("edges into self-distillation heads, and no supervised_weights: each head's own "
                      "cross-entropy weighs 1, where the self preset (Be Your Own Teacher) weighs it 1 - "
                      "self_alpha; build the graph with KnowledgeGraph.from_preset(...) as a config does, or "
                      "pass supervised_weights= (a dict, {} for 1 everywhere)")
        self.supervised_weights = _checked_supervised_weights(supervised_weights)
        if teacher_weighting not in ("weighted", "confidence"):
            raise ConfigError(f"teacher_weighting must be 'weighted' or 'confidence', not '{teacher_weighting}'")
        self.teacher_weighting = teacher_weighting
        names = [e.name for e in self.edges]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate knowledge edges: {sorted({n for n in names if names.count(n) > 1})}")
        for e in self.edges:  # (an unknown kind is refused as the Edge is made)
            if e.kind in FEATURE_KINDS and (not e.source_layer or not e.target_layer):
                raise ConfigError(f"feature edge {e.source} -> {e.target} ({e.kind}) needs source_layer and target_layer")
            if (e.source_layer is None) != (e.target_layer is None):
                raise ConfigError(f"edge {e.source} -> {e.target}: give both source_layer and target_layer, or neither")
            unread = unread_edge_keys(e.kind, e.temperature, (e.source_layer, e.target_layer))
            if unread:
                raise ConfigError(f"edge {e.source} -> {e.target}: {unread}")
            if e.kind in ("cwd", "holistic") and e.source in (TEACHERS, ENSEMBLE):
                raise ConfigError(f"edge {e.source} -> {e.target} ({e.kind}) needs one model as its source")
            if e.on_features and e.source in (TEACHERS, ENSEMBLE):
                raise ConfigError(f"feature edge {e.source} -> {e.target}: features come from one model, not '{e.source}'")
            # (review 55a: "for this task" blamed the task where a user's own distiller was the cause)
            if logit_distiller is not None and e.kind not in ("kl", "hint", "at", "sp"):
                raise ConfigError(f"edge {e.source} -> {e.target}: kind '{e.kind}' is not available with {DISTILLER}: "
                                  "use kl, which the distiller computes, or a feature edge (hint, at, sp)")
            if logit_distiller is not None and e.source in (TEACHERS, ENSEMBLE):
                raise ConfigError(f"edge {e.source} -> {e.target}: with {DISTILLER} an edge takes one model as its "
                                  f"source, not '{e.source}': give an edge from each model (a term each, not one "
                                  f"toward their combined output, which a kl edge from '{e.source}' is in "
                                  "classification and segmentation)")
        self._teachers: list[str] = []
        self._teacher_mu: list[float] = []
        self._ensemble: list[str] = []
        self._distillers_reaching: set[str] = set()  # edges whose logit_distiller's gradient reached the learner

    @property
    def teachers_combined_by(self) -> str | None:
        """How a ``teachers`` edge combines them (``teacher_weighting``), None where no edge does:
        what run.json and the dry run say (review 52f: a CA-MKD run read as a weighted one)."""
        return self.teacher_weighting if any(e.source == TEACHERS for e in self.edges) else None

    @classmethod
    def from_preset(cls, preset: str, teachers: Any, students: list[str] | None = None,
                    params: DistillSpec | None = None, *, feature_layers: Mapping[str, str | None] | None = None,
                    heads: Mapping[str, list[str]] | None = None, logit_distiller=None, **overrides) -> "KnowledgeGraph":
        """The graph a config's ``distill`` section gives: ``preset_edges`` (same arguments, a
        Cohort too), each self-distillation head's cross-entropy weighted 1 - ``self_alpha``, and
        the section's ``teacher_weighting`` and ``pair_node_size``."""
        from .cohort import Cohort

        cohort = teachers if isinstance(teachers, Cohort) else None
        teachers, students, feature_layers, heads = _from_cohort(teachers, students, feature_layers, heads)
        teachers = _names(teachers)
        p = _with_overrides(params or DistillSpec(preset="independent"), overrides, preset, teachers, heads)
        # (a Cohort passed on as such: its networks' module paths are what a message suggests)
        given = (cohort, None) if cohort is not None else (teachers, students)
        edges = preset_edges(preset, *given, p, feature_layers=feature_layers, heads=heads)
        return cls(edges, supervised_weights=self_supervised_weights(heads or {}, p),
                   teacher_weighting=p.teacher_weighting, pair_node_size=p.pair_node_size,
                   logit_distiller=logit_distiller)

    def bind(self, cohort: "Cohort") -> None:
        """Check every edge against the cohort and remember who the virtual sources stand for."""
        outputs = set(cohort.output_names())
        frozen = {n for m in cohort.frozen for n in m.output_names()}
        self._teachers = [m.name for m in cohort.teachers]
        self._teacher_mu = [m.weight for m in cohort.teachers]
        weighted = [f"'{m.name}': {m.weight:g}" for m in cohort.teachers if m.weight != 1.0]
        if self.teacher_weighting == "confidence" and weighted:
            raise ConfigError(f"teacher_weighting 'confidence' weighs the teachers per sample by how well each "
                              f"predicts its labels (CA-MKD) and reads no teacher weight, yet weights are given "
                              f"({', '.join(weighted)}): remove them (teachers' weight in a config, teacher_weights= "
                              "in Python), "
                              "or set teacher_weighting: weighted for a fixed weighted average")
        self._ensemble = [m.name for m in cohort.students]
        self._modules = {m.name: m.module for m in cohort.members}  # (their layers' kinds, for check_dense)
        for edge in self.edges:
            for end in (edge.source, edge.target):
                virtual = end in (TEACHERS, ENSEMBLE) and end == edge.source
                if not virtual and end not in outputs:
                    raise ConfigError(f"edge {edge.source} -> {edge.target}: no model named '{end}' in the cohort "
                                      f"(models: {sorted(outputs)})")
            if edge.source == TEACHERS and not self._teachers:
                raise ConfigError(f"edge teachers -> {edge.target}: the cohort has no teacher")
            if edge.target in frozen:
                raise ConfigError(f"edge {edge.source} -> {edge.target}: a frozen model cannot learn")
            if edge.source == edge.target:
                raise ConfigError(f"edge {edge.source} -> {edge.target} points a model at itself")
            if edge.on_features:
                self._check_feature_ends(edge, cohort)
        unknown = sorted(set(self.supervised_weights) - outputs)
        if unknown:  # (a misspelt name would weigh nothing, its model's term left at 1)
            raise ConfigError(f"supervised_weights names {unknown}, not in the cohort (outputs: {sorted(outputs)})")
        targets = {e.target for e in self.edges}
        untaught = [head for m in cohort.members if m.trainable for head in m.output_names()[1:] if head not in targets]
        if untaught:
            warn_user(f"self-distillation heads {untaught} learn from no edge (only from their own labels): "
                      "add edges into them (target: the head's name), or let a preset add them: in a config, "
                      "any preset but custom; in Python, KnowledgeGraph.from_preset(..., heads={m.name: "
                      "m.head_layers for m in cohort.members})")

    @staticmethod
    def _check_feature_ends(edge: Edge, cohort: "Cohort") -> None:
        """Module paths belong to models; the ``@`` features to self-distilled networks and heads."""
        for end, layer in ((edge.source, edge.source_layer), (edge.target, edge.target_layer)):
            is_head = "@" in end
            if layer.startswith("@"):
                owner = cohort.owner(end)
                if not owner.head_layers or (layer == DEEP_FEATURE) == is_head:
                    raise ConfigError(f"edge {edge.name}: feature '{layer}' does not exist on '{end}' "
                                      f"('{DEEP_FEATURE}' is a self-distilled network's, '{HEAD_FEATURE}' a head's)")
            elif is_head:
                raise ConfigError(f"edge {edge.name}: heads have no module paths; use '{HEAD_FEATURE}' for "
                                  f"'{end}', or a module path on the network '{end.split('@')[0]}'")

    def feature_requests(self) -> dict[str, set[str]]:
        """The module paths each model must record (the ``@...`` features come from heads)."""
        requests: dict[str, set[str]] = {}
        for e in self.edges:
            if e.on_features:
                for model, layer in ((e.source, e.source_layer), (e.target, e.target_layer)):
                    if not layer.startswith("@"):
                        requests.setdefault(model, set()).add(layer)
        return requests

    def connector_edges(self) -> list[Edge]:
        """Edges comparing features elementwise: their shapes must match, through a connector."""
        return [e for e in self.edges if e.kind == "hint" or (e.kind == "cwd" and e.on_features)]

    def adversarial_edges(self) -> list[Edge]:
        return [e for e in self.edges if e.kind == "holistic"]

    def losses(self, out: "CohortOutput", labels: torch.Tensor | None = None,
               connectors: Mapping[str, nn.Module] | None = None, scale: float = 1.0, *,
               inputs: torch.Tensor | None = None,
               discriminators: Mapping[str, nn.Module] | None = None) -> dict[str, torch.Tensor]:
        """``{edge name: weight * scale * loss}``; ``scale`` is the ramp-up factor of the step.
        Holistic edges need the ``inputs`` (the discriminator sees the image) and their
        ``discriminators``."""
        terms = {}
        cache: dict[tuple[str, float], torch.Tensor] = {}
        for edge in self.edges:
            if edge.weight == 0:
                continue
            if edge.kind == "kl":
                loss = self._logit_loss(edge, out, labels, cache)
            elif edge.kind == "dkd":
                if labels is None or labels.ndim != 1:
                    raise ConfigError(f"dkd edge {edge.name} needs one class label per sample")
                student = out.logits[edge.target]
                loss = dkd_to_softened(student, self._soft_target(edge, out, labels, cache), labels,
                                       checked_temperature(edge.temperature, "dkd"), edge.nckd_weight)
            elif edge.kind == "holistic":
                if inputs is None or not discriminators or edge.name not in discriminators:
                    raise ConfigError(f"holistic edge {edge.name} needs the images and its discriminator")
                source = out.logits[edge.source]
                learner = align_to(out.logits[edge.target], source.shape[-2:]).float().softmax(dim=1)
                loss = holistic_generator_loss(discriminators[edge.name], inputs, learner)
            elif edge.kind == "cwd" and not edge.on_features:
                source = out.logits[edge.source]
                loss = channel_wise(out.logits[edge.target], source, edge.temperature, valid_pixels(labels, source))
            else:
                loss = self._feature_loss(edge, out, labels, connectors)
            terms[edge.name] = loss * (edge.weight * scale)
        return terms

    def _feature_loss(self, edge: Edge, out: "CohortOutput", labels: torch.Tensor | None,
                      connectors: Mapping[str, nn.Module] | None) -> torch.Tensor:
        """A feature edge's loss: the learner's map brought to the source's (by its connector, or
        resized for hint and cwd), then compared by the edge's kind."""
        learner = out.features[edge.target][edge.target_layer]
        target = out.features[edge.source][edge.source_layer]
        connector = (connectors or {}).get(edge.name)
        size = target.shape[-2:] if target.ndim == 4 else None
        if connector is not None:
            learner = connector(learner, size)
        elif edge.kind in ("hint", "cwd") and size is not None:
            learner = align_to(learner, size)
        if edge.kind == "hint":
            return fitnet_hint(learner, target)
        if edge.kind == "at":
            return attention_transfer(learner, target)
        if edge.kind == "sp":
            return similarity_preserving(learner, target)
        if edge.kind == "pair":
            return pairwise_affinity(learner, target, self.pair_node_size, valid_pixels(labels, target))
        return channel_wise(learner, target, edge.temperature, valid_pixels(labels, target))

    def _logit_loss(self, edge: Edge, out: "CohortOutput", labels, cache) -> torch.Tensor:
        student = out.logits[edge.target]
        if self.logit_distiller is not None:
            # detached, as every edge's source: a peer's own loss must not pull it towards its learner
            loss = self.logit_distiller(student, out.logits[edge.source].detach(), edge.temperature, labels)
            reach = student.requires_grad and edge.name not in self._distillers_reaching
            _check_distilled(loss, student, edge, reach)
            if reach:
                self._distillers_reaching.add(edge.name)
            return loss
        if edge.source not in (TEACHERS, ENSEMBLE):
            source = out.logits[edge.source]
            return soft_kl(_aligned(student, source), source, edge.temperature, valid_pixels(labels, source))
        target = self._soft_target(edge, out, labels, cache)
        return kl_to_softened(_aligned(student, target), target, edge.temperature, valid_pixels(labels, target))

    def _soft_target(self, edge: Edge, out: "CohortOutput", labels, cache) -> torch.Tensor:
        """The source's softened distribution: one model's ``softmax(z / T)``, or the teachers' or
        students' combined, computed once per source and temperature and shared by all students."""
        if edge.source not in (TEACHERS, ENSEMBLE):
            return F.softmax(out.logits[edge.source].detach().float() / edge.temperature, dim=1)
        key = (edge.source, edge.temperature)
        if key not in cache:  # one combined target per source and temperature, shared by all students
            names = self._teachers if edge.source == TEACHERS else self._ensemble
            logits = [out.logits[n] for n in names]
            if edge.source == ENSEMBLE and len({z.shape for z in logits}) > 1:
                # students' maps of different sizes: averaged as the scored ensemble is (the task's
                # ensemble), each one's probabilities resized to the largest map
                t = checked_temperature(edge.temperature, "ensemble")
                cache[key] = mean_at_largest([F.softmax(z.detach().float() / t, dim=1) for z in logits])
                return cache[key]
            logits = [_aligned(z, logits[0]) for z in logits]
            weights = None
            if edge.source == TEACHERS:
                if self.teacher_weighting == "confidence":
                    if labels is None:
                        raise ConfigError("confidence weighting of teachers needs the labels")
                    weights = confidence_weights(logits, labels_at(labels, logits[0]))
                else:
                    weights = self._teacher_mu
            cache[key] = mix_soft_targets(logits, edge.temperature, weights)
        return cache[key]

    def check_dense(self, out: "CohortOutput") -> None:
        """Kinds that compare maps fail early, by name, where they would meet vectors:
        segmentation-only kinds on models that output class vectors, and attention transfer,
        pair-wise affinity or CWD on a layer whose output is not a [C, H, W] map."""
        for e in self.edges:
            if e.kind == "dkd" and any(out.logits[m].ndim != 2 for m in (e.target, e.source) if m in out.logits):
                raise ConfigError(f"edge {e.name}: kind 'dkd' splits class vectors [B, C] into the true class and "
                                  "the others; these models output maps (use kl for segmentation)")
            if e.kind == "dkd" and out.logits[e.target].shape[-1] == 2:
                warn_user(f"edge {e.name}: with two classes there is one non-target class and no distribution "
                          "among non-target classes to decouple: decoupled KD is then the softened KL (kl)")
            if e.kind in DENSE_KINDS and not e.on_features and out.logits[e.target].ndim != 4:
                raise ConfigError(f"edge {e.name}: kind '{e.kind}' compares dense [B, C, H, W] maps; "
                                  "these models output class vectors (use it for segmentation; a preset adds "
                                  f"such edges where distill.{e.kind}_weight is above 0, custom where distill.edges "
                                  "lists one)")
            if e.on_features and e.kind in ("at", "pair", "cwd"):
                for model, layer in ((e.source, e.source_layer), (e.target, e.target_layer)):
                    shape = tuple(out.features[model][layer].shape[1:])
                    self._refuse_channels_last(e, model, layer, shape)
                    if len(shape) != 3:
                        raise ConfigError(f"edge {e.name}: kind '{e.kind}' compares [C, H, W] feature maps, but "
                                          f"layer '{layer}' of '{model}' gives {list(shape)}: pick a convolutional "
                                          "layer, or use sp, which compares layers of any shapes (hint connects "
                                          "two maps, two token sequences or two vectors)")
                    if shape[1] * shape[2] == 1:
                        # one position has no spatial distribution: the learner's side would be the
                        # same whatever its weights (the loss positive, its gradient zero)
                        raise ConfigError(f"edge {e.name}: kind '{e.kind}' compares how feature maps spread over "
                                          f"their positions, but layer '{layer}' of '{model}' gives {list(shape)}, "
                                          "a single position (a global pooling): pick a layer before the pooling, "
                                          "or use hint or sp, which take vectors too")
                    n = self.pair_node_size  # the learner's map is resized to its source's: the source's counts
                    if e.kind == "pair" and model == e.source and -(-shape[1] // n) * -(-shape[2] // n) == 1:
                        raise ConfigError(f"edge {e.name}: pair-wise affinity compares nodes of {n}x{n} positions, "
                                          f"but layer '{layer}' of '{model}' gives {list(shape)}, a single node "
                                          "(one affinity, always 1: the loss would teach nothing): lower "
                                          "distill.pair_node_size or pick an earlier layer")

    def _refuse_channels_last(self, edge: Edge, model: str, layer: str, shape: tuple[int, ...]) -> None:
        if model in getattr(self, "_modules", {}) and not layer.startswith("@"):
            refuse_channels_last(self._modules[model], layer, shape, f"edge {edge.name}, model '{model}'")

    def build_connectors(self, out: "CohortOutput") -> dict[str, Connector]:
        """One connector per elementwise feature edge whose learner's channels differ from its
        target's (from a dry-run forward); a size difference alone needs only resizing. Token
        sequences [L, D] must agree in both."""
        connectors = {}
        for edge in self.connector_edges():
            learner = tuple(out.features[edge.target][edge.target_layer].shape[1:])
            target = tuple(out.features[edge.source][edge.source_layer].shape[1:])
            differ = learner != target if len(target) == 2 else learner[:1] != target[:1]
            if learner != target:  # projected or resized, along axes that must be the ones meant
                self._refuse_channels_last(edge, edge.target, edge.target_layer, learner)
                self._refuse_channels_last(edge, edge.source, edge.source_layer, target)
            if len(learner) != len(target) or differ:
                try:
                    connectors[edge.name] = Connector(learner, target)
                except ConfigError as error:  # said with the edge, and so the models and layers, it is about
                    raise ConfigError(f"edge {edge.name}: {error}") from None
        return connectors

    def to_list(self) -> list[dict]:
        return [asdict(e) for e in self.edges]


def _aligned(learner: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Dense maps of another size are compared at the source's size (see ``spatial.align_to``)."""
    return align_to(learner, source.shape[-2:]) if learner.ndim == 4 else learner


def sigmoid_rampup(progress: float) -> float:
    """``exp(-5 (1 - t)^2)`` for t in [0, 1] (Laine & Aila 2017), 1 afterwards."""
    t = min(max(progress, 0.0), 1.0)
    return float(torch.exp(torch.tensor(-5.0 * (1.0 - t) ** 2))) if t < 1.0 else 1.0
