"""The cohort's sections: how each model is built (ModelSpec), its name, and the
distillation between the models (EdgeSpec, DistillSpec)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .presets import PRESETS_READING, TEACHER_PRESETS, PresetName
from .sections import Section, home_expanded, validating_saved

# Bounds on a knowledge term's temperature and weight, far past any use: a typo such as 1e200
# passed the config's checks and the dry run, then overflowed float32 at the first step, where the
# non-finite stop blamed the learning rate (review 48b). New configs only: a saved run trained
# with its values resumes.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-6, 1e6
MAX_WEIGHT = 1e9


def refuse_out_of_bounds(info: ValidationInfo, spec, temperatures: tuple[str, ...], weights: tuple[str, ...]) -> None:
    """The temperatures and weights of ``spec`` past MIN_TEMPERATURE..MAX_TEMPERATURE and MAX_WEIGHT
    refused (a ValueError naming each), in a new config (validated with a context that is not a
    saved run's): a run saved with them, and the keywords a saved run's graph is built from, are
    read as they trained."""
    if not info.context or validating_saved(info):
        return
    past = ([f"{key} {getattr(spec, key):g} is past the bounds of any use ({MIN_TEMPERATURE:g} to "
             f"{MAX_TEMPERATURE:g}): a typo?" for key in temperatures
             if not MIN_TEMPERATURE <= getattr(spec, key) <= MAX_TEMPERATURE]
            + [f"{key} {getattr(spec, key):g} is past the bounds of any use (at most {MAX_WEIGHT:g}): a typo?"
               for key in weights if getattr(spec, key) > MAX_WEIGHT])
    if past:
        raise ValueError("; ".join(past))


class ModelSpec(Section):
    """How to build one model: a zoo name (``cnn``) or an import path (``pkg.module:factory``)."""

    name: str | None = None
    arch: str
    args: dict[str, Any] = Field(default_factory=dict)
    frozen: bool = False
    checkpoint: str | None = Field(default=None, description="trained weights: a .safetensors file, a PyTorch state dict (.pt, .pth; read with weights_only=True), or a run directory (its models/NAME.safetensors, NAME this model's name)")
    lr: float | None = Field(default=None, gt=0, le=1e4)
    feature_layer: str | None = Field(default=None, description="module path feature edges use (zoo models know theirs)")
    weight: float = Field(default=1.0, gt=0, description="a teacher's weight mu in the multi-teacher average")
    heads: list[str] = Field(default_factory=list, description="module paths that get self-distillation heads")
    deep_layer: str | None = Field(default=None, description="the deepest feature layer heads learn from")

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_at_home(cls, value: str | None) -> str | None:
        return home_expanded(value) if isinstance(value, str) else value

    @field_validator("heads")
    @classmethod
    def _each_head_once(cls, value: list[str]) -> list[str]:
        # (a repeat reached the graph as "duplicate knowledge edges" with edge names the user never wrote)
        if (problem := repeated_heads(value)) is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _frozen_needs_weights(self, info: ValidationInfo) -> "ModelSpec":
        if self.frozen and not self.checkpoint:
            raise ValueError(
                "a frozen model needs trained weights: set 'checkpoint' to a .safetensors file "
                "(for example runs/NAME/models/teacher.safetensors), a PyTorch state dict (.pt, .pth) "
                "or a run directory (runs/NAME), "
                "or set frozen: false to train it online"
            )
        if self.frozen and self.heads:
            raise ValueError("a frozen model's self-distillation heads would never learn: drop 'heads', "
                             "or set frozen: false")
        refuse_out_of_bounds(info, self, (), ("weight",))  # (a teacher's mu: 1e300 made the mixture inf)
        # (a deep_layer without heads is judged with the whole config, RunConfig: with preset self
        # and no heads, one message says both what to set and what to remove)
        return self


def repeated_heads(heads: list[str]) -> str | None:
    """What is wrong with head layers listed more than once (None where each is listed once): a
    repeat reached the knowledge graph as "duplicate knowledge edges" named as the user never wrote."""
    repeated = sorted({head for head in heads if heads.count(head) > 1})
    if not repeated:
        return None
    return (f"{', '.join(map(repr, repeated))} {'is' if len(repeated) == 1 else 'are'} listed more than once: list each "
            "head once")


def deep_layer_without_heads(key: str, frozen: bool) -> str:
    """A model's deep_layer set without heads, which nothing reads: what to set or remove."""
    fix = (f"remove {key}.deep_layer (a frozen model has no heads: they would never learn)" if frozen
           else f"set {key}.heads too, or remove {key}.deep_layer")
    return f"{key}.deep_layer is the layer self-distillation heads learn from, and {key} has no heads: {fix}"


SELF_KEYS = ("self_alpha", "self_lambda", "self_temperature")  # the distill keys of the heads' terms
UNLAYERED_KINDS = ("kl", "dkd", "holistic")  # compare the models' outputs only
SOFTENED_KINDS = ("kl", "dkd", "cwd")  # the kinds that read an edge's temperature


def unread_edge_keys(kind: str, temperature: float, layers: tuple[str | None, str | None]) -> str | None:
    """What an edge gives that its kind never reads (it would be dropped without a word: the
    user meant another loss), said with its fix; None when there is nothing."""
    if kind in UNLAYERED_KINDS and any(layers):
        return (f"kind '{kind}' compares the models' outputs, not layers: remove source_layer and target_layer, "
                "or choose a kind that compares layers (hint, at, sp, pair, cwd)")
    if kind not in SOFTENED_KINDS and temperature != 1.0:
        return f"kind '{kind}' uses no temperature (only {', '.join(SOFTENED_KINDS)} soften): remove temperature"
    return None


class EdgeSpec(Section):
    """One knowledge edge: ``target`` learns from ``source``'s softened predictions."""

    source: str
    target: str
    kind: Literal["kl", "dkd", "hint", "at", "sp", "pair", "cwd", "holistic"] = "kl"
    weight: float = Field(default=1.0, ge=0)
    temperature: float = Field(default=1.0, gt=0)
    source_layer: str | None = None
    target_layer: str | None = None
    nckd_weight: float = Field(default=8.0, ge=0, description="dkd edges: the weight of the non-target term")

    @model_validator(mode="before")
    @classmethod
    def _unread_keys_of_an_old_run(cls, data: Any, info: ValidationInfo) -> Any:
        """A run saved before keys its edge's kind never reads were refused trained without them:
        read back without them, it resumes and is reused (compare) as the same run."""
        if validating_saved(info) and isinstance(data, dict):
            kind = data.get("kind", "kl")
            unread = (("source_layer", "target_layer") if kind in UNLAYERED_KINDS else ()) + (
                ("temperature",) if kind not in SOFTENED_KINDS else ())
            data = {k: v for k, v in data.items() if k not in unread}
        return data

    @model_validator(mode="after")
    def _only_what_the_kind_reads(self, info: ValidationInfo) -> "EdgeSpec":
        if self.kind != "dkd" and self.nckd_weight != 8.0:
            raise ValueError(f"nckd_weight is for dkd edges, not '{self.kind}': remove it")
        unread = unread_edge_keys(self.kind, self.temperature, (self.source_layer, self.target_layer))
        if unread:
            raise ValueError(unread)
        refuse_out_of_bounds(info, self, ("temperature",), ("weight", "nckd_weight"))
        return self


def unread_distill_keys(d: "DistillSpec", teachers: int, heads: bool) -> dict[str, str]:
    """The distill keys set away from their defaults that no term of this config reads (the user
    meant a term it does not have), each with where it is read. ``teachers``: how many there
    are; ``heads``: whether a model has self-distillation heads. The weights of the teachers'
    dense terms are judged by the config's own rules (see ``RunConfig``)."""
    custom = d.edges or []
    weighted = d.preset in TEACHER_PRESETS
    kinds = {e.kind for e in custom} | {kind for kind, weight in (("pair", d.pair_weight), ("holistic", d.holistic_weight))
                                        if weighted and weight > 0}
    where = {key: f"under presets {', '.join(presets)} (preset is '{d.preset}')"
             for key, presets in PRESETS_READING.items() if d.preset not in presets}
    if d.ensemble_weight > 0:  # the ensemble's edges soften by the KD temperature
        where.pop("kd_temperature", None)
    elif "kd_temperature" in where:
        where["kd_temperature"] += " or with distill.ensemble_weight"
    if any(e.source == "teachers" for e in custom):
        where.pop("teacher_weighting", None)
    if teachers < 2:
        where.setdefault("teacher_weighting", f"where several teachers teach ({teachers} here)")
    if d.kd_loss != "dkd":
        where.setdefault("dkd_nckd_weight", "with distill.kd_loss: dkd")
    if not heads or d.preset == "custom":
        where.update(dict.fromkeys(SELF_KEYS,
                                   "by the edges a preset gives models with self-distillation heads "
                                   "(students.N.heads; custom builds only distill.edges)"))
    if "holistic" not in kinds:
        where.update(dict.fromkeys(("discriminator_lr", "gp_weight"),
                                   "with a holistic term (distill.holistic_weight, or a holistic edge)"))
    if "pair" not in kinds:
        where["pair_node_size"] = "with a pair term (distill.pair_weight, or a pair edge)"
    if not (weighted and d.cwd_weight > 0):
        where["cwd_temperature"] = "with distill.cwd_weight (a cwd edge has its own temperature)"
    defaults = {key: field.default for key, field in DistillSpec.model_fields.items()}
    return {key: text for key, text in where.items() if getattr(d, key) != defaults[key]}


def unread_distill_problems(d: "DistillSpec", teachers: int, heads: bool, said: tuple[str, ...] = ()) -> list[str]:
    """``said``: keys another problem names already (the heads' keys, where preset self has no heads)."""
    defaults = DistillSpec.model_fields
    return [f"distill.{key} is read only {text}, so here it would change nothing: remove it (its default is "
            f"{defaults[key].default!r})" for key, text in unread_distill_keys(d, teachers, heads).items()
            if key not in said]


class DistillSpec(Section):
    preset: PresetName = "kd+ml"
    alpha: float = Field(default=1.0, ge=0, description="weight of teacher -> student KD")
    beta: float = Field(default=1.0, ge=0, description="weight of the peer mutual-learning term")
    gamma: float = Field(default=1.0, ge=0, description="weight of feature edges (styles presets)")
    kd_temperature: float = Field(default=4.0, gt=0)
    kd_loss: Literal["kl", "dkd"] = Field(
        default="kl", description="teacher -> student edges of the presets: softened KL (Hinton et al.) or decoupled "
                                  "KD (Zhao et al. 2022; classification)")
    dkd_nckd_weight: float = Field(default=8.0, ge=0, description="kd_loss dkd: weight of the non-target term")
    ml_temperature: float = Field(default=1.0, gt=0)
    feature_loss: Literal["hint", "at", "sp"] = Field(default="hint", description="feature edges of the styles presets")
    teacher_weighting: Literal["weighted", "confidence"] = Field(
        default="weighted", description="several teachers: fixed weights mu, or per-sample CA-MKD confidence"
    )
    ensemble_weight: float = Field(default=0.0, ge=0, description="> 0: the student ensemble also teaches each student")
    self_alpha: float = Field(default=0.5, ge=0, le=1, description="BYOT: KL weight a of each head (CE gets 1 - a)")
    self_lambda: float = Field(default=0.1, ge=0, description="BYOT: weight of the feature hint of each head")
    self_temperature: float = Field(default=3.0, gt=0)
    pair_weight: float = Field(default=0.0, ge=0, description="segmentation: pair-wise affinity of feature maps")
    pair_node_size: int = Field(default=2, ge=1, description="side of the pooled regions that are the graph's nodes")
    holistic_weight: float = Field(default=0.0, ge=0, description="segmentation: adversarial holistic term")
    discriminator_lr: float = Field(default=1e-4, gt=0)
    gp_weight: float = Field(default=10.0, ge=0, description="WGAN gradient-penalty weight")
    cwd_weight: float = Field(default=0.0, ge=0, description="segmentation: channel-wise distillation of logits")
    cwd_temperature: float = Field(default=4.0, gt=0)
    rampup_epochs: int = Field(
        default=5, ge=0, description="sigmoid ramp-up of every distillation weight over these epochs"
    )
    edges: list[EdgeSpec] | None = None

    @model_validator(mode="after")
    def _terms_within_bounds(self, info: ValidationInfo) -> "DistillSpec":
        refuse_out_of_bounds(
            info, self, ("kd_temperature", "ml_temperature", "self_temperature", "cwd_temperature"),
            ("alpha", "beta", "gamma", "dkd_nckd_weight", "ensemble_weight", "self_lambda", "pair_weight",
             "holistic_weight", "gp_weight", "cwd_weight"))
        return self

    @model_validator(mode="after")
    def _edges_only_with_custom(self) -> "DistillSpec":
        if self.edges is not None and self.preset != "custom":
            raise ValueError(
                f"'edges' are given but preset is '{self.preset}': set preset: custom to spell out the "
                "edges yourself, or remove 'edges' to use the preset"
            )
        if self.preset == "custom" and not self.edges:
            raise ValueError("preset 'custom' needs a non-empty 'edges' list")
        return self


# Names that stand for something other than one model where models are named (edges, metrics,
# --model); a model may not take them.
RESERVED_MODEL_NAMES = ("ensemble", "teachers", "best student", "best")


def model_name_problems(names: list[str]) -> list[str]:
    """What is wrong with a cohort's model names: each names a file models/NAME.safetensors and a
    column of every table, so it is one plain name, unique, and not one of the reserved ones."""
    problems = []
    not_text = [n for n in names if not isinstance(n, str)]
    if not_text:
        return [f"model names must be text, got {not_text}"]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        problems.append(f"model names must be unique, repeated: {sorted(dup)}")
    reserved = set(RESERVED_MODEL_NAMES) & set(names)
    if reserved:
        problems.append(f"model name {sorted(reserved)} is reserved (the ensemble / combined teachers / the best "
                        "student); rename it")
    # '@' names a self-distillation head, '[]' an edge's layers; '/', '\\' and '..' would leave models/
    odd = [n for n in names if n.strip() in ("", ".", "..") or any(c in n for c in "@/\\[]")]
    if odd:
        problems.append(f"model names may not be empty, '.' or '..', nor contain '@', '/', '\\', '[' or ']': {odd}")
    return problems
