"""The models of a run and their roles: teachers (frozen or online) and students.

``Cohort.forward`` runs each model exactly once and returns every output the losses need:
the logits of each model (and of its self-distillation heads) and the captured features.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from .capture import FeatureRecorder, find_module, module_paths, unwrap
from .config import model_name_problems
from .arguments import check_flags
from .errors import ConfigError, warn_user
from .models import ZOO
from .models.built_with import zoo_spec
from .models.heads import DEEP_FEATURE, HEAD_FEATURE, HeadedModel

Role = Literal["teacher", "student"]


@dataclass
class Member:
    """One model of a cohort: its ``name`` (how edges, logs and files name it), ``module`` (any
    ``nn.Module`` giving class scores, or a dict or tuple holding them) and ``role``
    (``"teacher"`` or ``"student"``). ``frozen``: a pretrained model that teaches without
    learning; ``lr``: its own learning rate (None: the optimizer's); ``spec``: what rebuilds it
    from a run directory (set for zoo models; None for a module of one's own, given again as
    ``modules=`` when the run is read back); ``feature_layer``: the module path feature edges use
    when they name none; ``weight``: a teacher's share in the multi-teacher average. Most code
    builds members through ``Cohort.from_modules``."""

    name: str
    module: nn.Module
    role: Role
    frozen: bool = False
    lr: float | None = None
    # What rebuilds the architecture from a run directory (arch + args); None for modules built in Python.
    spec: dict[str, Any] | None = None
    feature_layer: str | None = None  # the module path feature edges use by default
    weight: float = 1.0  # a teacher's weight mu in the multi-teacher average

    def __post_init__(self) -> None:
        if self.spec is None:  # a zoo model built in Python: its arguments rebuild it
            self.spec = zoo_spec(self.module, ZOO)

    def check(self) -> None:
        """One clear message for what would otherwise fail deep inside torch."""
        if not isinstance(self.module, nn.Module):
            raise ConfigError(f"model '{self.name}' is a {type(self.module).__name__}, not a torch.nn.Module: give the "
                              "built model (an instance), not its name or class")
        if any(t.is_meta for t in itertools.chain(self.module.parameters(), self.module.buffers())):
            # (review 55a: torch's "Cannot copy out of meta tensor" as the run moved it to its device)
            raise ConfigError(f"model '{self.name}' holds tensors on the meta device, shapes without values: give it "
                              "its weights first (module.to_empty(device='cpu'), then load_state_dict(...))")
        if self.role not in ("teacher", "student"):
            raise ConfigError(f"model '{self.name}' has role {self.role!r}: a member is a 'teacher' or a 'student'")
        check_flags(f"model '{self.name}'", frozen=self.frozen)
        self.frozen = bool(self.frozen)  # (a numpy bool is no JSON)
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"model '{self.name}' has learning rate {self.lr!r}: give a positive number, or None "
                              "for the optimizer's")
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and self.weight > 0):
            raise ConfigError(f"teacher '{self.name}' has weight {self.weight!r}: a teacher's weight in the "
                              "multi-teacher average is a positive number")
        if self.feature_layer is not None:  # checked also when no edge reads it: a wrong path waits for the day one does
            if not isinstance(self.feature_layer, str):
                raise ConfigError(f"model '{self.name}' has feature_layer {self.feature_layer!r}: give a module path "
                                  "such as 'layer3'")
            check_feature_layer(self.module, self.feature_layer, f"model '{self.name}' (its feature_layer)")

    @property
    def trainable(self) -> bool:
        return not self.frozen

    @property
    def head_layers(self) -> list[str]:
        inner = unwrap(self.module)
        return list(inner.head_layers) if isinstance(inner, HeadedModel) else []

    def output_names(self) -> list[str]:
        return [self.name] + [head_name(self.name, p) for p in self.head_layers]


def head_name(member: str, layer: str) -> str:
    return f"{member}@{layer}"


@dataclass
class CohortOutput:
    logits: dict[str, torch.Tensor] = field(default_factory=dict)
    # features[output name][layer path] for hooked layers and the self-distillation features
    features: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


@dataclass
class Cohort:
    """The models trained together: teachers and students (``Member``), checked as they are
    given (unique names, no shared parameters, at least one student). ``Cohort.from_modules(
    students, teacher=...)`` names them ``student1``, ``student2``, ... and ``teacher``; its
    ``forward(x)`` runs every member and returns their logits (and hooked features) by name."""

    members: list[Member] = field(default_factory=list)
    # False for a saved run's models: their names passed the rules of the version that trained them
    check_names: bool = field(default=True, repr=False)
    # what building it from a config warned of (a frozen teacher fed inputs on another scale):
    # kept with the training's own warnings in run.json
    warnings_when_built: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        names = [m.name for m in self.members]
        problems = model_name_problems(names) if self.check_names else []
        if not problems and len(set(names)) != len(names):
            problems = [f"model names in a cohort must be unique, got {names}"]
        if problems:
            raise ConfigError("; ".join(problems))
        for m in self.members:
            m.check()
        if not self.students:
            raise ConfigError("a cohort needs at least one student")
        self._check_nothing_shared()
        for m in self.members:
            if m.frozen:  # parameter by parameter: a torch.jit.script model refuses requires_grad_ on itself
                for p in m.module.parameters():
                    p.requires_grad_(False)
        self._recorders: dict[str, FeatureRecorder] = {}

    def _check_nothing_shared(self) -> None:
        """Two members holding the same parameter would be stepped twice a batch (or a frozen
        teacher trained through a student): the same module given twice, or a shared backbone."""
        owner: dict[int, str] = {}
        for m in self.members:
            for p in m.module.parameters():
                other = owner.setdefault(id(p), m.name)
                if other != m.name:
                    raise ConfigError(f"models '{other}' and '{m.name}' share parameters (the same module object "
                                      "given twice, or a shared submodule): give each its own instance, e.g. "
                                      "copy.deepcopy(module)")

    @classmethod
    def from_modules(
        cls,
        students: Sequence[nn.Module],
        teacher: nn.Module | None = None,
        *,
        frozen_teacher: bool = False,
        student_names: Sequence[str] | None = None,
        teachers: Sequence[nn.Module] = (),
        teacher_weights: Sequence[float] | None = None,
        feature_layers: dict[str, str] | None = None,
    ) -> "Cohort":
        """The Python-API shortcut: ``Cohort.from_modules([s1, s2], teacher=t)``; several teachers
        go in ``teachers`` (named teacher1, teacher2, ...)."""
        if isinstance(students, nn.Module) or not isinstance(students, Sequence):
            raise ConfigError("from_modules takes a list of student modules, e.g. Cohort.from_modules([s1, s2], "
                              f"teacher=t); got a {type(students).__name__}")
        check_flags("from_modules", frozen_teacher=frozen_teacher)
        if teacher is not None and len(teachers):  # (teacher_weights would weigh the teachers= ones alone)
            raise ConfigError("from_modules: give one teacher as teacher=, or several as teachers= (with their "
                              "teacher_weights), not both: put the teacher= one in the teachers= list")
        if frozen_teacher and teacher is None and not teachers:
            raise ConfigError("from_modules: frozen_teacher=True but no teacher is given: give teacher= (or teachers=) "
                              "the trained teacher to freeze, or drop frozen_teacher")
        names = list(student_names or [f"student{i + 1}" for i in range(len(students))])
        layers = feature_layers or {}
        members = [Member("teacher", teacher, "teacher", frozen_teacher)] if teacher is not None else []
        weights = list(teacher_weights or [1.0] * len(teachers))
        for what, given, needed in (("student_names", names, students), ("teacher_weights", weights, teachers)):
            if len(given) != len(needed):
                raise ConfigError(f"{what} has {len(given)} entries for {len(needed)} "
                                  f"{what.split('_')[0]}s: give one per {what.split('_')[0]}")
        if len(teachers) == 1 and weights[0] != 1.0:  # (review 56g: read by nothing, as a config's one teacher's)
            raise ConfigError(f"teacher_weights [{float(weights[0]):g}]: a teacher's weight is its share in the average "
                              "of several teachers, and there is one: drop teacher_weights; the teacher's KD term is "
                              "weighed by its edge (preset_edges(..., alpha=...), or Edge(weight=...))")
        members += [Member(f"teacher{i + 1}", t, "teacher", frozen_teacher, weight=w)
                    for i, (t, w) in enumerate(zip(teachers, weights, strict=True))]
        members += [Member(n, s, "student") for n, s in zip(names, students, strict=True)]
        unknown = sorted(set(layers) - {m.name for m in members})
        if unknown:
            raise ConfigError(f"feature_layers names {unknown}, not models of this cohort "
                              f"({', '.join(m.name for m in members)}): key it by model name")
        for m in members:
            m.feature_layer = layers.get(m.name, default_feature_layer(m.module))
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

    def output_names(self) -> list[str]:
        return [n for m in self.members for n in m.output_names()]

    def ensemble_names(self) -> list[str]:
        """What the student ensemble averages: each student's own output (never its heads), the
        same ensemble the graph's ``ensemble`` source and ``export --model ensemble`` use."""
        return [m.name for m in self.students]

    def head_ensembles(self) -> dict[str, list[str]]:
        """Per self-distilled network, ``NAME@ensemble``: its deepest classifier and its heads."""
        return {head_name(m.name, "ensemble"): m.output_names() for m in self.members if m.head_layers}

    def roles(self) -> dict[str, str]:
        roles = {}
        for m in self.members:
            roles[m.name] = m.role
            roles.update({n: "head" for n in m.output_names()[1:]})
        roles.update({n: "head" for n in self.head_ensembles()})
        return roles

    def owner(self, output_name: str) -> Member:
        return self[output_name.split("@", 1)[0]]

    def capture(self, requests: dict[str, set[str]]) -> None:
        """Record the named layers of each model (``{member: {path, ...}}``) on every forward."""
        for recorder in self._recorders.values():
            recorder.remove()
        self._recorders = {
            name: FeatureRecorder(_hooked(self[name].module), sorted(paths), owner=f"model '{name}'")
            for name, paths in requests.items() if paths
        }

    def hold_heads(self, on: bool) -> None:
        """Self-distillation models keep their layers hooked (a fit), or let them go."""
        for m in self.members:
            inner = unwrap(m.module)
            if isinstance(inner, HeadedModel):
                inner.hold_hooks(on)

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

    def release_capture(self, names: list[str]) -> list[str]:
        """Stop recording the layers of these members (a packed student group records them
        itself) and return the paths that were recorded."""
        paths = set()
        for name in names:
            recorder = self._recorders.pop(name, None)
            if recorder is not None:
                paths |= set(recorder.paths)
                recorder.remove()
        return sorted(paths)

    def forward(self, x: torch.Tensor, runners: dict[str, nn.Module] | None = None,
                groups: list[tuple[list[str], nn.Module]] = ()) -> CohortOutput:
        """Each model exactly once. Frozen models run under inference mode (no autograd graph);
        their outputs are cloned out of inference mode so losses may read them. ``runners``
        replaces a member's module by a wrapper of it for this call (DDP, torch.compile);
        ``groups`` runs several students as one packed network returning each one's output
        and recorded features (``engine.fused.StudentGroup``)."""
        runners = runners or {}
        packed: dict[str, tuple[Any, dict]] = {}
        running = ""  # the model running, for a message
        try:
            for names, group in groups:
                running = " / ".join(names)
                outputs, features = group(x)
                packed.update(zip(names, zip(outputs, features)))
            out = CohortOutput()
            for m in self.members:
                if m.name in packed:
                    raw, recorded = packed[m.name]
                else:
                    running = m.name
                    with torch.inference_mode() if m.frozen else contextlib.nullcontext():
                        raw = runners.get(m.name, m.module)(x)
                        recorded = self._recorders[m.name].take(complete=True) if m.name in self._recorders else {}
                _collect(out, m, raw, recorded, clone=m.frozen)
        except ValueError as exc:
            # BatchNorm training on one value per channel (one sample of a BatchNorm1d, or of a
            # BatchNorm2d after pooling): torch's message names neither the model nor the remedy
            if "Expected more than 1 value per channel" not in str(exc):
                raise
            raise ConfigError(f"model '{running}' has a BatchNorm layer that got one value per channel in training "
                              f"({len(x)} sample(s) in this batch, or this process's share of it under torchrun): "
                              "use a larger train.batch_size (micro-batches of 2 or more), fewer processes, or "
                              "train.sync_batchnorm on CUDA") from None
        except RuntimeError as exc:
            # DDP at the step after one where a trained parameter got no gradient: a layer skipped
            # in training (at random, as LayerDrop, or by a condition) that no backward before
            # training saw; torch's message names parameter indices, not the model or the remedy.
            # (With the search on, torch's own message says what else it can be.)
            runner = runners.get(running) or next((g for names, g in groups if " / ".join(names) == running), None)
            if ("Expected to have finished reduction in the prior iteration" not in str(exc)
                    or getattr(runner, "find_unused_parameters", False)):
                raise
            raise ConfigError(f"model '{running}' left trained parameters without a gradient in the previous step "
                              "under torchrun (a layer it skips in training, at random as LayerDrop or by a "
                              "condition): set train.find_unused_parameters: true in the config (for a run that "
                              "kept a checkpoint, in its config.yaml, then --resume)") from exc
        return out


def network_logits(module: nn.Module, raw: Any, name: str) -> torch.Tensor:
    """The logits in ``module``'s output ``raw``: with peerdistill's own heads, their network's
    (a user's dict may hold "heads" or "logits" of its own, read by ``as_logits``)."""
    if isinstance(unwrap(module), HeadedModel):
        raw = raw["logits"]
    return as_logits(raw, name)


def _collect(out: CohortOutput, m: Member, raw: Any, recorded: dict, clone: bool) -> None:
    keep = (lambda t: t.clone()) if clone else (lambda t: t)
    out.logits[m.name] = keep(network_logits(m.module, raw, m.name))
    if isinstance(unwrap(m.module), HeadedModel):
        recorded = {**recorded, DEEP_FEATURE: raw["deep_feature"]}
        for layer, logits in raw["heads"].items():
            name = head_name(m.name, layer)
            out.logits[name] = keep(logits)
            out.features[name] = {HEAD_FEATURE: keep(raw["head_features"][layer])}
    out.features[m.name] = {k: keep(v) for k, v in recorded.items()}


def _hooked(module: nn.Module) -> nn.Module:
    """Layer paths name modules of the user's network, also when heads wrap it."""
    inner = unwrap(module)
    return inner.base if isinstance(inner, HeadedModel) else module


def check_feature_layer(module: nn.Module, path: str, owner: str) -> None:
    """A ConfigError naming the closest module paths when ``path`` is none of ``module``'s."""
    find_module(_hooked(module), path, owner=owner)


def default_feature_layer(module: nn.Module) -> str | None:
    """Zoo models name their last feature block (class attribute ``feature_layer``, a module
    path). A user's attribute of that name that is a module, or a string that is no module path
    of the network, names nothing: the user never chose it."""
    inner = unwrap(module)
    if isinstance(inner, HeadedModel):
        inner = unwrap(inner.base)
    path = getattr(inner, "feature_layer", None)
    if not isinstance(path, str):
        return None
    try:
        find_module(inner, path, owner=f"{type(inner).__name__}.feature_layer")
    except ConfigError as exc:  # maybe a misspelt path, maybe a text of the user's own: said, not refused
        warn_user(f"{exc}, so it names no feature layer (peerdistill reads a model's string attribute "
                  "feature_layer as the module path feature edges use): correct it, or give feature_layer "
                  "(feature_layers= in Python) to name one")
        return None
    return path


def names_module(module: nn.Module, path: str) -> bool:
    """Whether ``path`` is a module path of the user's network in ``module`` (heads' wrapper
    aside; an alias path included)."""
    return bool(path) and path in module_paths(_hooked(module))


def as_logits(output: Any, name: str) -> torch.Tensor:
    """Accept the output conventions of common model libraries: a tensor, a tuple whose first
    item is the logits (torchvision aux heads), a mapping with 'logits' / 'out', or an object
    with a ``logits`` tensor (a namedtuple's ``logits`` field wherever it stands)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        for key in ("logits", "out"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
    # (before a tuple's first item: a namedtuple may hold its logits in another field, review 56a)
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    keys = f" with keys {sorted(map(str, output))}" if isinstance(output, dict) else ""
    raise ConfigError(
        f"model '{name}' returned {type(output).__name__}{keys}; peerdistill needs logits as a tensor, "
        "a tuple or list starting with the logits, a dict with a 'logits' or 'out' entry, or an "
        "object with a .logits tensor"
    )
