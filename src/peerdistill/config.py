"""Typed run configuration: YAML in, validated pydantic models out, plus key=value overrides."""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable
from pathlib import Path, PureWindowsPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .errors import ConfigError

# The most data.augment_range.elastic may be: the warp must not fold the image over itself. Of
# 20,000 random fields on images of 8 to 129 pixels a side, none folded at 0.065 and 1 to 9 did at
# 0.07 (bicubic between control points a quarter of the side apart overshoots their moves).
ELASTIC_LIMIT = 0.06

PRESETS = ("independent", "kd", "ml", "kd+ml", "styles", "styles-logits", "styles-features", "multi-teacher",
           "self", "custom")
PresetName = Literal["independent", "kd", "ml", "kd+ml", "styles", "styles-logits", "styles-features",
                     "multi-teacher", "self", "custom"]
# who teaches whom in each named preset (`peerdistill presets`)
PRESET_DOCS = {
    "independent": "labels only: every model trains alone (baseline)",
    "kd": "teacher logits -> each student (Hinton et al. 2015)",
    "ml": "student logits <-> student logits (Deep Mutual Learning, Zhang et al. 2018)",
    "kd+ml": "both: teacher -> students and students <-> students (Niyaz & Bathula, ISBI 2022)",
    "styles": "teacher logits -> students 1, 3, ...; teacher features -> students 2, 4, ...; students "
              "exchange logits and features (Niyaz et al., learning styles, 2022)",
    "styles-logits": "ablation of styles: every student learns the teacher's logits; students exchange logits",
    "styles-features": "ablation of styles: every student learns the teacher's features; students exchange features",
    "multi-teacher": "the weighted average of several teachers' soft targets -> each student",
    "self": "each model's deepest classifier -> its own shallow heads, plus feature hints (Be Your Own Teacher)",
}
TEACHER_PRESETS = ("kd", "kd+ml", "styles", "styles-logits", "styles-features", "multi-teacher")
# distill weights of terms from the teachers, added by the presets that have a teacher
TEACHER_TERM_WEIGHTS = ("pair_weight", "holistic_weight", "cwd_weight")
PEER_PRESETS = ("ml", "kd+ml", "styles", "styles-logits", "styles-features")
# The presets whose edges read each distill key (the teacher's and the peers' logit edges, the
# feature edges); set under another preset, a key would change nothing.
_TEACHER_LOGITS = ("kd", "kd+ml", "styles", "styles-logits", "multi-teacher")
_PEER_LOGITS = ("ml", "kd+ml", "styles", "styles-logits")
_FEATURES = ("styles", "styles-features")
PRESETS_READING = {**dict.fromkeys(("alpha", "kd_loss", "dkd_nckd_weight", "kd_temperature"), _TEACHER_LOGITS),
                   **dict.fromkeys(("beta", "ml_temperature"), _PEER_LOGITS),
                   **dict.fromkeys(("gamma", "feature_loss"), _FEATURES),
                   "teacher_weighting": _TEACHER_LOGITS}  # weighs the teachers' soft targets, not their features
NAMED_PRESETS = tuple(p for p in PRESETS if p != "custom")  # those an option can name alone


def check_preset_names(option: str, names: list[str]) -> None:
    """Refuse names that are not named presets (``custom`` needs edges a name cannot give)."""
    bad = [n for n in names if n not in NAMED_PRESETS]
    if not names or bad:
        close = {n: difflib.get_close_matches(n, NAMED_PRESETS, n=1) for n in bad}
        guesses = "".join(f" ('{n}': did you mean '{c[0]}'?)" for n, c in close.items() if c)
        raise ConfigError(f"{option}: unknown preset {', '.join(map(repr, bad)) or '(none given)'}{guesses}; "
                          f"choose from {', '.join(NAMED_PRESETS)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # one run would be counted as two seeds' worth of results
        raise ConfigError(f"{option}: {', '.join(map(repr, twice))} given twice; list each preset once")


SEED_LIMIT = 2**32  # NumPy's seeds; a larger one would give the run of seed % 2**32


def _number_only(annotation: Any) -> bool:
    """Whether a field holds numbers (int or float, possibly None or constrained), and no bools."""
    kinds, pending = set(), [annotation]
    while pending:
        a = pending.pop()
        args = typing.get_args(a)
        if typing.get_origin(a) is Literal:
            kinds.update(type(v) for v in args)
        elif args and typing.get_origin(a) is not list and typing.get_origin(a) is not dict:
            pending.extend(args[:1] if typing.get_origin(a) is Annotated else args)
        else:
            kinds.add(a)
    return bool(kinds & {int, float}) and bool not in kinds


def _saved(info: ValidationInfo) -> bool:
    """Validating a config a run saved: what earlier versions accepted (and ran, or ignored) is
    not refused again, so old runs resume and are reused."""
    return bool(info.context and info.context.get("saved"))


def _check_seed(key: str, seed: int, info: ValidationInfo) -> int:
    if not 0 <= seed < SEED_LIMIT and not _saved(info):
        raise ValueError(f"{key} must be in 0..{SEED_LIMIT - 1} (NumPy's seeds; a larger one would repeat a smaller "
                         "one's run)")
    return seed


class _BuiltInPython(type(BaseModel)):
    """A section built in Python (``TrainSpec(epochs=20)``): a mistake is a ConfigError with a
    hint, as in a config file, not pydantic's own error. (Here, not in ``__init__``: pydantic
    would call that for every nested section too, and lose where in the config it was.)"""

    def __call__(cls, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"{cls.__name__} arguments", cls)) from None


class _Strict(BaseModel, metaclass=_BuiltInPython):
    # .inf / .nan in YAML are refused for every number: they only fail later, as non-finite losses
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    def __setattr__(self, name: str, value: Any) -> None:
        """``spec.epochs = 0`` is refused as ``TrainSpec(epochs=0)`` is."""
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"{type(self).__name__}.{name}", type(self))) from None

    @model_validator(mode="before")
    @classmethod
    def _no_true_or_false_for_numbers(cls, data: Any) -> Any:
        """pydantic reads true as 1 where a number is due (train.epochs=true trained one epoch)."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                aliases = field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else []
                for key in dict.fromkeys([name, *aliases]):
                    if isinstance(data.get(key), bool) and _number_only(field.annotation):
                        raise ValueError(f"{key} is a number, not {str(data[key]).lower()}")
        return data


# YAML 1.1 reads 3:4 as the base-60 number 184 and 1:30 as 90: a typo, or minutes meant as 1.5,
# would silently become a much larger number. Read as text, such a value is refused by its key.
_BASE_60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one
    silently: a second `train:` section would drop the first), reading no base-60 numbers."""

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode and implicit[0] and _BASE_60.fullmatch(value):
            return "tag:yaml.org,2002:str"
        return super().resolve(kind, value, implicit)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges, it is no key of its own
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}): "
                                "give each key once (merge the two sections)", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


class ModelSpec(_Strict):
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
        if self.deep_layer and not self.heads and not _saved(info):
            raise ValueError("deep_layer is the layer self-distillation heads learn from: set heads too, or remove it")
        return self


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


class EdgeSpec(_Strict):
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
        if _saved(info) and isinstance(data, dict):
            kind = data.get("kind", "kl")
            unread = (("source_layer", "target_layer") if kind in UNLAYERED_KINDS else ()) + (
                ("temperature",) if kind not in SOFTENED_KINDS else ())
            data = {k: v for k, v in data.items() if k not in unread}
        return data

    @model_validator(mode="after")
    def _only_what_the_kind_reads(self) -> "EdgeSpec":
        if self.kind != "dkd" and self.nckd_weight != 8.0:
            raise ValueError(f"nckd_weight is for dkd edges, not '{self.kind}': remove it")
        unread = unread_edge_keys(self.kind, self.temperature, (self.source_layer, self.target_layer))
        if unread:
            raise ValueError(unread)
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
        where.update(dict.fromkeys(("self_alpha", "self_lambda", "self_temperature"),
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


def unread_distill_problems(d: "DistillSpec", teachers: int, heads: bool) -> list[str]:
    defaults = DistillSpec.model_fields
    return [f"distill.{key} is read only {text}, so here it would change nothing: remove it (its default is "
            f"{defaults[key].default!r})" for key, text in unread_distill_keys(d, teachers, heads).items()]


class DistillSpec(_Strict):
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
    def _edges_only_with_custom(self) -> "DistillSpec":
        if self.edges is not None and self.preset != "custom":
            raise ValueError(
                f"'edges' are given but preset is '{self.preset}': set preset: custom to spell out the "
                "edges yourself, or remove 'edges' to use the preset"
            )
        if self.preset == "custom" and not self.edges:
            raise ValueError("preset 'custom' needs a non-empty 'edges' list")
        return self


# data kinds that name their classes themselves (folders, labels, categories): data.class_names
# does not apply to them
SELF_NAMING_KINDS = ("digits", "image_folder", "csv", "shapes", "boxes", "coco", "box_json", "mask_boxes")
# data kinds read from files at data.root (the others are generated or embedded)
FILE_KINDS = ("npz", "image_folder", "csv", "folders", "coco", "box_json", "mask_boxes")
FIXED_SIZE_KINDS = ("digits", "npz", "shapes")  # arrays used at their own size (no data.image_size)
IMAGE_FILE_KINDS = tuple(k for k in FILE_KINDS if k != "npz")  # image files (PNG, JPEG, DICOM, ...)
# the task each data kind's targets are for
KINDS_OF_TASK = {"classification": ("digits", "npz", "image_folder", "csv"), "segmentation": ("shapes", "folders"),
                 "detection": ("boxes", "coco", "box_json", "mask_boxes")}


class ChannelStats(_Strict):
    mean: list[float] = Field(min_length=1)
    std: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_per_channel(self) -> "ChannelStats":
        if len(self.mean) != len(self.std):
            raise ValueError(f"data.normalize gives {len(self.mean)} means and {len(self.std)} stds: "
                             "give one of each per input channel")
        return self


# ImageNet's per-channel statistics of RGB images in [0, 1], which pretrained backbones expect.
IMAGENET_STATS = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


# Keys read by the image/mask folder loader only; set for another kind they would be ignored.
FOLDERS_ONLY_KEYS = ("split_dirs", "roi", "pattern", "num_classes", "binary_masks")
# Keys of one or two kinds, refused for the others when changed from their defaults.
KIND_ONLY_KEYS = {"masks": ("folders", "mask_boxes"), "shapes_counts": ("shapes",), "boxes_counts": ("boxes",),
                  "path_column": ("csv",), "label_column": ("csv",), "bad_boxes": ("coco", "box_json"),
                  "group_pattern": ("image_folder", "csv", "folders"), "group_stratify": ("image_folder", "csv"),
                  "pixel_spacing": ("folders",), "dicom_window": IMAGE_FILE_KINDS}


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


# data kinds whose splits are given or generated: data.folds is refused for them
NO_FOLD_KINDS = ("npz", "shapes", "boxes")

# How the data keys act, for comparing two data sections:
# those that deal a set into train, val and test,
SPLIT_KEYS = ("split_seed", "folds", "fold", "val_fraction", "test_fraction", "split_dirs", "group_pattern",
              "group_stratify")
# those that act in training only: what is read, and the models it builds, stay the same,
TRAINING_ONLY_KEYS = frozenset({"fold", "augment", "augment_range", "class_weights"})
# and those that change how images are read, scaled or cut, not which images (with which truth) are in
# which split: with the training-only ones, what settings may differ in and still pair run by run.
# (pixel_spacing is not among them: it changes the unit of HD95.)
NOT_THE_SPLIT = TRAINING_ONLY_KEYS | {"image_size", "patch_size", "patches_per_image", "foreground_oversample",
                                      "window_overlap", "normalize", "grey"}


def key_applies(key: str, kind: str) -> bool:
    """Whether data key ``key`` is read for data kind ``kind``."""
    kinds = ("folders",) if key in FOLDERS_ONLY_KEYS else KIND_ONLY_KEYS.get(key)
    return kinds is None or kind in kinds


class DataSpec(_Strict):
    kind: Literal["digits", "npz", "image_folder", "csv", "shapes", "folders", "boxes", "coco", "box_json",
                  "mask_boxes"] = "digits"
    root: str | None = Field(default=None, description="npz / csv: the file; image_folder / folders / coco / "
                                                      "box_json / mask_boxes: the folder")
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    split_seed: int = 0
    folds: int | None = Field(default=None, ge=2, description="k-fold cross-validation: the test split is fold "
                                                               "data.fold of this many (stratified for classes), "
                                                               "val is cut from the other folds; "
                                                               "data.test_fraction is not used")
    fold: int = Field(default=0, ge=0, description="which fold is the test split (0 .. data.folds - 1)")
    class_weights: bool = False
    normalize: Literal["split", "imagenet"] | ChannelStats = Field(
        default="split", description="standardise inputs (in [0, 1]) per channel by the training split's mean and "
                                     "std, by ImageNet's (pretrained torchvision / timm backbones), or by "
                                     "{mean: [...], std: [...]}"
    )
    augment: list[Literal["hflip", "vflip", "rot90", "rotate", "scale", "elastic", "brightness", "contrast", "gamma",
                          "noise", "blur", "crop"]] = Field(
        default_factory=list, description="each applied to a random half of every training batch, in the order "
                                          "listed: flips, 90-degree turns, rotations, zooms, elastic warps "
                                          "(identical on image and mask), brightness, contrast, gamma, Gaussian "
                                          "noise, Gaussian blur; "
                                          "detection: hflip, vflip, scale, crop (boxes move with the image) and the "
                                          "intensity ones"
    )
    augment_range: dict[Literal["rotate", "scale", "elastic", "brightness", "contrast", "gamma", "noise", "blur"],
                        Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="the largest change of each: rotate degrees (15), zoom factor 1 +- r "
                                          "(0.2), elastic control point move in fractions of the shorter side "
                                          "(0.05), brightness shift (0.2) and noise std (0.1) in standard deviations "
                                          "of the training images, contrast factor 1 +- r (0.2), gamma in "
                                          "[1 / (1 + r), 1 + r] (0.3), blur std in pixels (1)")
    group_pattern: str | None = Field(
        default=None, description="regex searched in each image's path (relative to data.root): its first group "
                                  "(or the whole match) is the image's group, a patient say, and the split keeps "
                                  "each group whole (image_folder, csv, folders)")
    group_stratify: bool = Field(
        default=False, description="classification with data.group_pattern: deal the groups so that every split "
                                   "holds the classes in about their proportions (scikit-learn's "
                                   "StratifiedGroupKFold; the fractions become 1/k)")
    # csv (classification)
    path_column: str = "path"
    label_column: str = "label"
    # image/mask folders (kind: folders)
    images: str = "images"
    masks: str = "masks"
    pattern: str | None = Field(default=None, description="regex whose first group is the id shared by image and mask")
    # 5 or more a side: images 4 or fewer pixels high would be read as channels
    image_size: list[Annotated[int, Field(ge=5)]] | None = Field(default=None, min_length=2, max_length=2,
                                                                description="resize to [H, W] (5 or more each)")
    binary_masks: bool = Field(default=False, description="masks are 0/255 (or JPEG-noisy) images: > 127 is class 1")
    pixel_spacing: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)] | \
        Literal["dicom"] | None = Field(
        default=None,
        description="[rows, columns]: the size of a pixel of the image files (e.g. millimetres), so that HD95 is "
                    "in that unit (resized with data.image_size); dicom: every image's own PixelSpacing (all "
                    "DICOM, one spacing as the models see them); default: in pixels")
    grey: bool = Field(default=False, description="read images as one grey channel")
    dicom_window: tuple[float, Annotated[float, Field(gt=1)]] | None = Field(
        default=None, description="[center, width] for DICOM files, in their values after rescaling (CT: "
                                  "Hounsfield units, e.g. a lung window [-600, 1500]), instead of each file's own "
                                  "window; default: the file's")
    # masks are read as 8-bit labels, 255 marking ignored pixels: at most 255 classes (0..254)
    num_classes: int | None = Field(default=None, ge=2, le=255)
    class_names: list[str] | None = Field(default=None, description="npz (without its own) and folders: the "
                                                                     "classes' names, in label order")
    # the synthetic segmentation default (kind: shapes)
    split_dirs: dict[Literal["train", "val", "test"], str] | None = Field(
        default=None, description="folders: subfolders holding given splits, e.g. {train: training, test: testing}; "
                                  "a missing val is cut from train")
    roi: str | None = Field(default=None, description="folders: a folder of region-of-interest masks (same ids); "
                                                      "pixels outside count nowhere")
    patch_size: int | None = Field(default=None, ge=8, description="train on random square crops of this side")
    patches_per_image: int = Field(default=16, ge=1, description="crops per training image per epoch")
    foreground_oversample: float = Field(default=0.0, ge=0, le=1,
                                         description="share of crops centred on a foreground pixel")
    window_overlap: float = Field(default=0.5, ge=0, lt=1, description="sliding-window overlap when patch_size is set")
    shapes_counts: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [600, 150, 150], min_length=3, max_length=3,
                                     description="train / val / test image counts of the synthetic data")
    # detection (kinds: boxes, coco, box_json, mask_boxes)
    annotations: str | None = Field(default=None, description="coco / box_json: the JSON file (relative to root)")
    bad_boxes: Literal["error", "skip", "clip"] = Field(
        default="error", description="coco / box_json: boxes without area or outside their image stop the load "
                                     "(error), are left out with a warning (skip), or are cut to the image, those "
                                     "without area left out (clip)")
    boxes_counts: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [800, 200, 200], min_length=3, max_length=3,
                                    description="train / val / test image counts of the synthetic boxes default")

    @field_validator("split_seed")
    @classmethod
    def _split_seed_range(cls, v: int, info: ValidationInfo) -> int:
        return _check_seed("data.split_seed", v, info)

    @model_validator(mode="after")
    def _root_for_files(self) -> "DataSpec":
        problems: list[str] = []  # every one is reported, not the first only
        if self.kind in FILE_KINDS and not self.root:
            problems.append(f"data kind '{self.kind}' needs data.root=PATH")
        if self.root and self.kind not in FILE_KINDS:  # a forgotten kind would train on the embedded data
            by_suffix = {".npz": "npz", ".csv": "csv", ".tsv": "csv"}.get(Path(self.root).suffix.lower())
            layout = (f"data.kind={by_suffix} for '{self.root}'" if by_suffix else
                      f"data.kind to the layout at '{self.root}' ({', '.join(FILE_KINDS)}; docs/data.md)")
            problems.append(f"data.root is set but data kind '{self.kind}' reads no files (it is generated or "
                            f"embedded{'; digits is the default kind' if self.kind == 'digits' else ''}): set "
                            f"{layout}")
        if self.kind in ("coco", "box_json") and not self.annotations:
            problems.append(f"data kind '{self.kind}' needs data.annotations=FILE.json (relative to data.root)")
        if self.class_names is not None and self.kind in SELF_NAMING_KINDS:
            problems.append(f"data.class_names does not apply to data kind '{self.kind}', which names its classes "
                            "itself (folder names, label values, categories): remove it")
        if self.image_size is not None and self.kind in FIXED_SIZE_KINDS:
            problems.append(f"data.image_size does not apply to data kind '{self.kind}', whose arrays are used at "
                            "their own size: remove it")
        problems += self._augment_problems()
        for key, kinds in KIND_ONLY_KEYS.items():
            if not key_applies(key, self.kind) and getattr(self, key) != type(self).model_fields[key].get_default(
                    call_default_factory=True):
                problems.append(f"data.{key} applies to data kind {' or '.join(map(repr, kinds))}, not "
                                f"'{self.kind}': remove it")
        ignored = [k for k in FOLDERS_ONLY_KEYS if getattr(self, k) not in (None, False)]
        if ignored and not key_applies(ignored[0], self.kind):
            given = (" (detection splits are drawn by data.split_seed, data.val_fraction and data.test_fraction)"
                     if "split_dirs" in ignored and self.task == "detection" else "")
            problems.append(f"data.{', data.'.join(ignored)} applies to data kind 'folders' (image and mask folders) "
                            f"only, not '{self.kind}'{given}: remove it")
        problems += self._fold_problems()
        if self.binary_masks and self.num_classes not in (None, 2):
            problems.append(f"data.binary_masks reads masks as background and one foreground class, so "
                            f"data.num_classes must be 2 (or left out), not {self.num_classes}")
        if self.binary_masks and self.class_names is not None and len(self.class_names) != 2:
            problems.append(f"data.binary_masks reads masks as background and one foreground class, so "
                            f"data.class_names names two classes, not {len(self.class_names)}")
        if self.group_stratify and not self.group_pattern:
            problems.append("data.group_stratify deals groups by class: it needs data.group_pattern, the groups")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                problems.append(f"data.pattern is not a valid regular expression: {exc}")
        refuse(problems)
        return self

    def _augment_problems(self) -> list[str]:
        problems = []
        if "crop" in self.augment and self.task != "detection":
            problems.append("data.augment crop is for detection; use hflip, vflip, rot90, rotate, scale or elastic")
        turns = {"rot90", "rotate", "elastic"} & set(self.augment)
        if turns and self.task == "detection":  # a turned or warped box is no longer an axis-aligned box
            problems.append(f"data.augment {sorted(turns)} is not available for detection; use hflip, vflip, scale "
                            "or crop, and any of brightness, contrast, gamma, noise, blur")
        unused = sorted(set(self.augment_range) - set(self.augment))
        if unused:
            problems.append(f"data.augment_range sets {unused}, which data.augment does not name: add "
                            f"{', '.join(unused)} to data.augment or remove the range")
        for key in ("contrast", "scale"):
            if self.augment_range.get(key, 0) >= 1:
                problems.append(f"data.augment_range.{key} is {self.augment_range[key]}: keep it below 1 (the factor "
                                "1 - r must stay positive)")
        rotate = self.augment_range.get("rotate", 0)
        if rotate > 180:
            problems.append(f"data.augment_range.rotate is {rotate}: at most 180 degrees")
        elastic = self.augment_range.get("elastic", 0)
        if elastic > ELASTIC_LIMIT:
            problems.append(f"data.augment_range.elastic is {elastic}: at most {ELASTIC_LIMIT} (stronger warps can "
                            "fold the image over itself)")
        return problems

    def _fold_problems(self) -> list[str]:
        problems = []
        if self.folds is None:
            if self.fold:
                problems.append(f"data.fold={self.fold} needs data.folds, the number of folds (e.g. data.folds=5)")
            return problems
        if self.fold >= self.folds:
            problems.append(f"data.fold={self.fold} is not one of the {self.folds} folds: use 0 .. {self.folds - 1}")
        if self.kind in NO_FOLD_KINDS:
            what = "gives its own train, val and test splits" if self.kind == "npz" else "generates its splits apart"
            problems.append(f"data.folds cuts one labelled set into folds, but data kind '{self.kind}' {what}: "
                            "remove data.folds")
        if self.split_dirs:
            problems.append("data.folds cuts one set into folds, but data.split_dirs gives the splits: remove one")
        if self.test_fraction != type(self).model_fields["test_fraction"].default:
            problems.append("data.folds makes one fold the test split, so data.test_fraction is not used: remove it")
        if self.val_fraction >= 1 - 1 / self.folds:
            problems.append(f"data.val_fraction {self.val_fraction} is the share of the whole set cut from the other "
                            f"{self.folds - 1} folds for val: with {self.folds} folds it must be below "
                            f"{1 - 1 / self.folds:.2f}")
        return problems

    @field_validator("group_pattern")
    @classmethod
    def _group_pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"data.group_pattern '{value}' is not a regular expression: {exc}") from None
        return value

    @field_validator("augment", mode="before")
    @classmethod
    def _one_augmentation_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # data.augment=hflip means [hflip]

    @field_validator("normalize", mode="before")
    @classmethod
    def _normalize_choice(cls, value: Any) -> Any:
        # one message instead of one per member of the union
        if not isinstance(value, (dict, ChannelStats)) and value not in ("split", "imagenet"):
            raise ValueError("use split, imagenet or {mean: [...], std: [...]}")
        return value

    def fixed_stats(self) -> dict[str, list[float]] | None:
        """The normalisation statistics set by ``normalize``; None: the training split's."""
        if self.normalize == "split":
            return None
        return dict(IMAGENET_STATS) if self.normalize == "imagenet" else self.normalize.model_dump()

    @property
    def task(self) -> str:
        return next(task for task, kinds in KINDS_OF_TASK.items() if self.kind in kinds)


class OptimSpec(_Strict):
    name: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(default=3e-3, gt=0, le=1e4)
    weight_decay: float = Field(default=5e-4, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    step_size: int = Field(default=30, gt=0)
    gamma: float = Field(default=0.1, gt=0)
    warmup_epochs: int = Field(
        default=0, ge=0, description="linear learning-rate warm-up: epoch e of the first N trains at lr (e + 1) / "
                                     "(N + 1); the scheduler then runs over the remaining epochs")
    clip_grad_norm: float | None = Field(
        default=None, gt=0, description="clip each trained model's gradient to this 2-norm (over every parameter "
                                        "its optimizer updates, its connectors included) before its step; off: null")


class TrainSpec(_Strict):
    epochs: int = Field(default=30, gt=0)
    batch_size: int = Field(default=64, gt=0)
    eval_batch_size: int = Field(default=512, gt=0)
    micro_batch_size: int | None = Field(
        default=None, gt=0, description="forward and backpropagate each batch in parts of at most this many samples, "
                                        "adding up their gradients for one step: the same batch in less memory")
    monitor: str | None = Field(
        default=None,
        description="MODEL/METRIC on the validation split that picks the best epoch "
                    "(default ensemble/accuracy; ensemble/dice for segmentation; ensemble/ap for detection)",
    )
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        default="auto", description="DataLoader worker processes for a dataset not held in memory (auto: on CUDA, "
                                    "the machine's cores shared among its processes, at most 8 each; 0 elsewhere, "
                                    "where workers would take cores from training)"
    )
    nonfinite: Literal["stop", "skip"] | None = Field(
        default=None, description="a NaN/inf loss or gradient: stop with a message naming it, or skip the step "
                                  "(default: stop; skip under fp16, whose loss scaling expects occasional overflows)"
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        default="auto", description="training arithmetic: auto is bf16 autocast on CUDA (fp16 where bf16 is "
                                    "missing) and fp32 elsewhere; fp16 adds a gradient scaler"
    )
    channels_last: Literal["auto", True, False] = Field(
        default="auto", description="conv nets in channels-last memory format (auto: on CUDA)"
    )
    fuse_students: Literal["auto", True, False] = Field(
        default="auto", description="run students of one architecture as one packed network (auto: on CUDA)"
    )
    compile: bool = Field(default=False, description="torch.compile every model for training")
    compile_backend: str = Field(default="inductor", description="torch.compile backend (inductor, aot_eager, ...)")
    segmentation_loss: Literal["ce", "ce+dice"] = Field(
        default="ce+dice", description="supervised loss of segmentation models: cross-entropy, plus soft Dice"
    )
    sync_batchnorm: bool = Field(
        default=False, description="under torchrun on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm)"
    )
    find_unused_parameters: Literal["auto", True] = Field(
        default="auto", description="under torchrun: DDP's find_unused_parameters for every trained model (auto: for "
                                    "those a backward finds with parameters their logits skip, and no search for the "
                                    "others; true also for layers skipped at random, as LayerDrop)"
    )
    checkpoint_every_steps: int = Field(
        default=0, ge=0, description="also write the resume checkpoint every N steps inside an epoch (0: off)"
    )
    checkpoint_every_minutes: float = Field(
        default=10.0, ge=0, description="also write the resume checkpoint inside an epoch at this interval (0: off)"
    )
    ema_decay: float | None = Field(
        default=None, gt=0, lt=1, description="keep an exponential moving average of each trained model's weights "
                                              "(decay per step, e.g. 0.999): validation, the saved models and the "
                                              "test split use the averages; off: null")
    patience: int | None = Field(
        default=None, ge=1, description="early stopping: end training once the monitor has not improved for this many "
                                        "epochs (the best epoch's weights are kept and tested as always); off: null"
    )


# The detect keys that only decode and fuse boxes: eval can change them on a finished run.
DECODING_KEYS = ("score_threshold", "nms_iou", "max_detections", "ensemble", "ensemble_iou")


class DetectSpec(_Strict):
    """Turning dense detector outputs into boxes, and fusing the students' boxes."""

    score_threshold: float = Field(default=0.05, ge=0, lt=1, description="boxes scoring below are dropped")
    nms_iou: float = Field(default=0.6, gt=0, le=1, description="non-maximum suppression IoU per class")
    max_detections: int = Field(default=100, ge=1, description="boxes kept per image")
    ensemble: Literal["wbf", "nms", "nmw"] = Field(
        default="wbf", description="how the student ensemble fuses the students' boxes (ensemble-boxes): weighted "
                                   "boxes fusion, NMS over all students' boxes, or non-maximum weighted; WBF scored "
                                   "best on Kvasir-SEG and the synthetic default (docs/detection.md)")
    ensemble_iou: float = Field(default=0.7, gt=0, le=1, validation_alias=AliasChoices("ensemble_iou", "wbf_iou"),
                                description="IoU above which boxes of different students are one object for the "
                                            "ensemble (0.7 beat 0.55 and 0.8 for WBF; docs/detection.md; "
                                            "formerly wbf_iou)")
    kd_cls_weight: float = Field(default=1.0, ge=0, description="share of a detection KD edge given to the "
                                                                "classification maps (softened per-point scores)")
    kd_loc_weight: float = Field(default=1.0, ge=0, description="share of a detection KD edge given to localization "
                                                                "distillation (the box-edge distributions)")
    kd_loc_region: Literal["confidence", "assigned"] = Field(
        default="confidence", description="where localization distillation counts: every point weighted by the "
                                          "source's confidence, or only the points assigned to a true box (LD's "
                                          "main distillation region), still confidence-weighted")


class LogSpec(_Strict):
    tensorboard: bool = Field(default=False, description="also log every epoch's numbers to RUN_DIR/tensorboard")


def _raw_value(section: Any, key: str, default: Any) -> Any:
    """``section.key`` of a section as given: a mapping, a section built in Python, or anything
    else (refused by validation later), which has none."""
    if isinstance(section, BaseModel):
        return getattr(section, key, default)
    return section.get(key, default) if isinstance(section, dict) else default


def default_run_name(tree: dict[str, Any]) -> str:
    """The name of a config given none: its data (the file or folder data.root names, else the
    data kind) and its preset, e.g. pneumoniamnist-kd+ml, so that one's own configs do not share
    the quick start's folder (digits-kd+ml)."""
    data = tree.get("data")
    kind, root = _raw_value(data, "kind", "digits"), _raw_value(data, "root", None)
    preset = _raw_value(tree.get("distill"), "preset", "kd+ml")
    named = ""
    if isinstance(root, str) and root.strip():
        # (a Windows path's parts too); a file's name without its suffix, else a folder's
        place = PureWindowsPath(root.strip()) if "\\" in root else Path(root.strip())
        named = place.stem if kind in ("npz", "csv") else place.name
    if not named or named.startswith((".", "~")):  # no name, or a hidden folder or a home to expand: the kind
        named = kind if isinstance(kind, str) else "data"
    return f"{named}-{preset if isinstance(preset, str) else 'kd+ml'}"


def named_as_written(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` with its name: its own, else ``default_run_name`` of it as written (compare names a
    config so before a preset of --presets replaces its own)."""
    return tree if tree.get("name") is not None else {**tree, "name": default_run_name(tree)}


class RunConfig(_Strict):
    name: str | None = Field(default=None, description="the run's folder inside out_dir; without it, named after "
                                                       "the data and preset (default_run_name)")
    out_dir: str = "runs"
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    task: Literal["classification", "segmentation", "detection"] = "classification"
    data: DataSpec = Field(default_factory=DataSpec)
    teacher: ModelSpec | None = None
    teachers: list[ModelSpec] = Field(default_factory=list, description="several teachers (instead of 'teacher')")
    students: list[ModelSpec] = Field(default_factory=list)
    distill: DistillSpec = Field(default_factory=DistillSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    detect: DetectSpec = Field(default_factory=DetectSpec)
    log: LogSpec = Field(default_factory=LogSpec)

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, v: int, info: ValidationInfo) -> int:
        return _check_seed("seed", v, info)

    @model_validator(mode="before")
    @classmethod
    def _name_left_empty_is_left_out(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" in data and data["name"] is None:  # `name:` left empty
            data = {key: value for key, value in data.items() if key != "name"}
        return data

    @model_validator(mode="after")
    def _named_after_data_and_preset(self) -> "RunConfig":
        """A name not given follows the data and preset, also when they are set after building
        (``cfg.data = ...``, ``model_copy(update=...)``); not being in ``model_fields_set`` says
        it was not given. (Written to __dict__: an assignment would validate again.)"""
        if "name" not in self.model_fields_set:
            self.__dict__["name"] = default_run_name({"data": self.data, "distill": self.distill})
        return self

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> "RunConfig":
        copy = super().model_copy(update=update, deep=deep)
        return copy._named_after_data_and_preset()

    @field_validator("name", mode="before")
    @classmethod
    def _name_is_text(cls, v: Any, info: ValidationInfo) -> Any:
        if not isinstance(v, str) and not _saved(info):  # YAML read it as a number or a date, already changed (0123 is 83)
            raise ValueError(f"name must be text; YAML read it as {type(v).__name__} {v!r}: quote it, "
                             "e.g. \"name='2024'\" on the command line")
        return v

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, v: str, info: ValidationInfo) -> str:
        if (v.strip() in ("", ".", "..") or any(c in v for c in "/\\")) and not _saved(info):
            raise ValueError("name is the run's folder inside out_dir: one folder name, without '/', '\\' or "
                             "'..' (put the place in out_dir)")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto" and not (v == "cpu" or v.startswith("cuda") or v == "mps"):
            raise ValueError("device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return v

    @model_validator(mode="after")
    def _cohort_shape(self, info: ValidationInfo) -> "RunConfig":
        problems: list[str] = []  # every one is reported, not the first only
        if self.data.patch_size is not None and self.task != "segmentation":
            problems.append(f"data.patch_size (patch training) is for segmentation: remove it for {self.task}")
        if self.data.task != self.task:  # alone: the checks below would judge the config by the wrong task
            start = (" (for segmentation or detection, start from recipes/shapes.yaml or recipes/boxes.yaml, "
                     "which set their data and models)" if self.data.kind == "digits" else "")
            refuse([f"data kind '{self.data.kind}' is for {self.data.task}, but task is '{self.task}': "
                    f"set task: {self.data.task}{start}"])
        if not self.students:
            problems.append("at least one student is needed: add a 'students' list")
        if not _saved(info):  # a run saved under older rules is still read
            problems += model_name_problems(self.member_names())
        if self.teacher is not None and self.teachers:
            problems.append("give either 'teacher' (one) or 'teachers' (a list), not both")
        preset = self.distill.preset
        if preset == "multi-teacher" and len(self.teachers) < 2:
            problems.append("preset 'multi-teacher' needs at least two teachers: list them under 'teachers' "
                            "(and set teacher: null if the config has one)")
        if preset in TEACHER_PRESETS and not self.all_teachers():
            problems.append(f"preset '{preset}' needs a teacher: add a 'teacher' section")
        dkd = self.distill.kd_loss == "dkd" or any(e.kind == "dkd" for e in self.distill.edges or [])
        if dkd and self.task != "classification":
            problems.append(f"decoupled KD (distill.kd_loss dkd, kind dkd) splits class vectors into the true class "
                            f"and the others: it is for classification, not {self.task}; use kl")
        if self.task != "classification" and any(s.heads for s in self.students):
            problems.append("self-distillation heads (students.N.heads, preset self) are for classification: "
                            "their classifiers pool features to one class vector; remove them")
        ignored_before = not _saved(info)  # keys earlier versions accepted and ignored: refused in new configs
        if ignored_before and self.train.segmentation_loss != "ce+dice" and self.task != "segmentation":
            problems.append(f"train.segmentation_loss is for segmentation: remove it for {self.task}")
        if ignored_before and self.detect != DetectSpec() and self.task != "detection":
            problems.append(f"the detect section is for detection: remove it for {self.task}")
        if ignored_before and any(s.weight != 1.0 for s in self.students):
            problems.append("students.N.weight is a teacher's weight in the multi-teacher average: remove it "
                            "from the students")
        if self.task == "detection" and preset == "multi-teacher":
            problems.append("preset 'multi-teacher' is not available for detection: use kd with one teacher")
        problems += self._decay_problems()
        if self.optim.warmup_epochs >= self.train.epochs:
            problems.append(f"optim.warmup_epochs ({self.optim.warmup_epochs}) must be fewer than train.epochs "
                            f"({self.train.epochs}): the warm-up leads into the schedule")
        weighted = [k for k in (*TEACHER_TERM_WEIGHTS, "ensemble_weight") if getattr(self.distill, k) > 0]
        if ignored_before and preset == "custom" and weighted:
            problems.append(f"preset 'custom' builds only distill.edges, so distill.{weighted[0]} would be ignored: "
                            "write the term as an edge (kind pair, holistic or cwd; source ensemble), or remove it")
        dense = [k for k in weighted if k in TEACHER_TERM_WEIGHTS]
        if ignored_before and dense and preset not in (*TEACHER_PRESETS, "custom"):
            problems.append(f"distill.{dense[0]} adds terms from the teacher to each student, which preset '{preset}' "
                            "does not distil: use a preset with a teacher (kd, kd+ml, styles, multi-teacher), or "
                            "remove it")
        if ignored_before:
            problems += unread_distill_problems(self.distill, len(self.all_teachers()), self.has_heads())
        if (preset in PEER_PRESETS or self.distill.ensemble_weight > 0) and len(self.students) == 1:
            problems.append(f"preset '{preset}' needs at least two students for mutual learning")
        if preset == "self" and not any(s.heads for s in self.students):
            problems.append("preset 'self' needs heads: set students.N.heads to module paths, e.g. [features.2]")
        for edge in self.distill.edges or []:
            if edge.kind in ("hint", "at", "sp", "pair") and (not edge.source_layer or not edge.target_layer):
                problems.append(f"edge {edge.source} -> {edge.target} of kind '{edge.kind}' needs source_layer and "
                                "target_layer")
        refuse(problems)
        return self

    def _decay_problems(self) -> list[str]:
        """Weight decay so strong that it alone flips (AdamW: p <- p (1 - lr wd)) or blows up (SGD,
        Nesterov's with momentum m: lr wd >= 2 (1 + m) / (1 + 2m)) the weights, at the fastest
        learning rate of a model that learns."""
        o = self.optim
        lr = max([o.lr] + [m.lr for m in (*self.all_teachers(), *self.students) if m.lr is not None and not m.frozen])
        limit = {"adamw": 1.0, "sgd": 2 * (1 + o.momentum) / (1 + 2 * o.momentum)}.get(o.name)
        if limit is None or lr * o.weight_decay < limit:
            return []
        return [f"optim.weight_decay {o.weight_decay:g} at learning rate {lr:g}: lr x weight_decay = "
                f"{lr * o.weight_decay:g}, and from {limit:g} on {o.name}'s decay alone "
                f"{'sends every weight past zero each step' if o.name == 'adamw' else 'makes the weights diverge'}; "
                "weight decay is usually 1e-5 to 0.1"]

    def has_heads(self) -> bool:
        return any(m.heads for m in (*self.all_teachers(), *self.students))

    def all_teachers(self) -> list[ModelSpec]:
        return [self.teacher] if self.teacher is not None else list(self.teachers)

    def member_names(self) -> list[str]:
        names = [self.teacher.name or "teacher"] if self.teacher is not None else []
        names += [t.name or f"teacher{i + 1}" for i, t in enumerate(self.teachers)]
        names += [s.name or f"student{i + 1}" for i, s in enumerate(self.students)]
        return names


def default_config() -> dict[str, Any]:
    """The embedded default: digits, a small CNN teacher trained online, two smaller CNN students
    (named digits-kd+ml after its data and preset, and after other data given on the command line)."""
    return {
        "teacher": {"arch": "cnn", "args": {"width": 32, "depth": 3}},
        "students": [
            {"arch": "cnn", "args": {"width": 16, "depth": 2}},
            {"arch": "cnn", "args": {"width": 16, "depth": 2}},
        ],
        "distill": {"preset": "kd+ml"},
        "train": {"epochs": 30, "batch_size": 64},
    }


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(part, dotted, len(node))]
            continue
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override '{dotted}': '{part}' is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(last, dotted, len(node))] = value
    else:
        node[last] = value


def _list_index(part: str, dotted: str, length: int) -> int:
    if not part.isdigit() or int(part) >= length:
        raise ConfigError(f"override '{dotted}': '{part}' must be a list index below {length}")
    return int(part)


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings; values are parsed as YAML (``3``, ``0.1``, ``true``, ``[1, 2]``).
    A key given twice is refused, as it is in a YAML mapping: which one was meant?"""
    given: dict[str, str] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key=value (for example train.epochs=5)")
        if key.strip() in given:
            raise ConfigError(f"{key.strip()} is given twice ('{given[key.strip()]}' and '{item}'): keep one")
        given[key.strip()] = item
        try:
            value = yaml_value(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{item}': the value is not valid YAML ({exc})") from None
        _set_dotted(tree, key.strip(), value)
    return tree


def yaml_value(raw: str) -> Any:
    """An override's value as a config file's would be read (None when empty)."""
    return yaml.load(raw, Loader=_UniqueKeyLoader) if raw else None  # noqa: S506 - a SafeLoader


def _recipes_hint(path: Path) -> str:
    """A recipe named from outside the repository (``recipes/digits.yaml``): where the recipes are."""
    if len(path.parts) < 2 or path.parts[-2] != "recipes":
        return ""
    beside = Path(__file__).resolve().parents[2] / "recipes"  # an install from a clone (pip install -e)
    if (beside / path.name).is_file() and path.resolve() != (beside / path.name):
        return f": the recipes are in '{beside}' (peerdistill train {beside / path.name})"
    if beside.is_dir():
        close = difflib.get_close_matches(path.name, sorted(p.name for p in beside.glob("*.yaml")), n=1)
        where = path.parent if path.parent.resolve() == beside else beside
        return f" (did you mean {where / close[0]}?)" if close else ""
    return ": recipes/ is a folder of the peerdistill repository: run from a clone, or give the path to your copy"


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a folder: give the YAML file in it")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist{_recipes_hint(path)}")
    try:
        tree = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc.strerror}") from None
    except yaml.YAMLError as exc:
        said = str(exc).replace('"<unicode string>"', f"'{path}'")  # (read from its text, not its path)
        tab = " (a tab where YAML indents with spaces only: indent with spaces)" if "'\\t'" in said else ""
        raise ConfigError(f"config file '{path}' is not valid YAML{tab}: {said}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not UTF-8 text: is it a YAML file?") from None
    except RecursionError:
        raise ConfigError(f"config file '{path}' nests too deeply to read: is it a config?") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys, not {type(tree).__name__}")
    return tree


def validate(tree: dict[str, Any], source: str = "config", saved: bool = False) -> RunConfig:
    """``saved``: a config a run wrote, held to the rules of the version that wrote it where
    they were looser (see ``_saved``)."""
    try:
        return RunConfig.model_validate(tree, context={"saved": saved})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def saved_data_section(section: dict[str, Any]) -> dict[str, Any]:
    """A run's saved data section, readable by this version: earlier versions accepted (and
    ignored) ``class_names`` for kinds that name their classes and the folder-only keys for other
    kinds, which are now refused."""
    return without_other_kinds_keys(section)  # ignored then, refused now (a stray class_names, root, ...)


def data_places(section: dict[str, Any] | None, root: str | Path | None = None) -> list[Path]:
    """The files and folders a data section reads (none for generated and embedded data): its
    file (npz, csv), its class folders' root (image_folder), or the image, mask and region
    folders and the annotation file under its root, not the rest of that folder (where a
    project may keep its runs). ``root``: the section's root as an absolute path (a run records
    it; its saved section's may be relative to where it trained)."""
    section = section or {}
    kind, root = section.get("kind", "digits"), Path(root or section.get("root") or "")
    if kind not in FILE_KINDS or not (root.name or section.get("root")):
        return []
    if kind in ("npz", "csv", "image_folder"):
        return [root]
    images, masks = section.get("images", "images"), section.get("masks", "masks")
    if kind in ("coco", "box_json"):
        return [root / images] + ([root / section["annotations"]] if section.get("annotations") else [])
    if kind == "mask_boxes":
        return [root / images, root / masks]
    bases = [root] + [root / d for d in (section.get("split_dirs") or {}).values()] + [
        root / s for s in ("train", "val", "test")]
    return [base / sub for base in dict.fromkeys(bases) for sub in (images, masks, section.get("roi")) if sub]


def without_other_kinds_keys(section: dict[str, Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    """A data section without the keys that do not apply to its kind (but those in ``keep``,
    which a user gave and should hear about): a run's section read as another kind (eval
    RUN data.kind=image_folder of a run trained on an npz) drops its class names and size."""
    kind, keep = section.get("kind", "digits"), set(keep)
    other_kinds = {"class_names": kind in SELF_NAMING_KINDS, "image_size": kind in FIXED_SIZE_KINDS,
                   "root": kind not in FILE_KINDS}
    return {k: v for k, v in section.items()
            if k in keep or (key_applies(k, kind) and not (other_kinds.get(k) and v is not None))}


def read_saved_config(tree: Any, source: str) -> RunConfig:
    """A config a run saved (its config.yaml, its checkpoint's copy), validated after
    ``saved_data_section``."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{source} must hold a mapping of keys, not {type(tree).__name__}")
    if isinstance(tree.get("data"), dict):
        tree = {**tree, "data": saved_data_section(tree["data"])}
    return validate(tree, source, saved=True)


def as_read(cfg: RunConfig) -> dict[str, Any]:
    """``cfg`` as a tree with the distill keys no term of it reads at their defaults: a run saved
    before such keys were refused (``kd_temperature: 2`` under ml) is the run the same config
    makes today, for reuse and resume alike."""
    tree = cfg.model_dump(mode="json")
    for key in unread_distill_keys(cfg.distill, len(cfg.all_teachers()), cfg.has_heads()):
        tree["distill"][key] = DistillSpec.model_fields[key].default
    if cfg.distill.teacher_weighting == "confidence":  # per-sample weights: the teachers' own are not read
        for teacher in tree["teachers"] or [tree["teacher"]]:
            if isinstance(teacher, dict):
                teacher["weight"] = 1.0
    return tree


def load_saved_config(path: str | Path) -> RunConfig:
    """A run directory's config.yaml, read as ``read_saved_config`` reads it."""
    return read_saved_config(load_yaml(path), f"config '{path}'")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML file (or the embedded default when ``path`` is None) and apply overrides."""
    if isinstance(overrides, str):  # one override alone, not a list of its characters
        overrides = [overrides]
    if path is not None and not isinstance(path, (str, Path)):
        raise ConfigError(f"load_config takes the path of a YAML file, got a {type(path).__name__}: for a config "
                          "as a dict, call peerdistill.config.validate(tree)")
    tree = load_yaml(path) if path is not None else default_config()
    apply_overrides(tree, overrides or [])
    source = f"config '{path}'" if path else "embedded default config"
    if overrides:
        source += " with the key=value overrides"
    return validate(tree, source)


def key_paths(name: str) -> list[str]:
    """Every config key whose last part is ``name`` ('epochs' -> ['train.epochs'])."""
    found = [name] if name in RunConfig.model_fields else []
    for section, field in RunConfig.model_fields.items():
        inner = None if typing.get_origin(field.annotation) is list else _model_in(field.annotation)
        if inner is not None and name in inner.model_fields:  # a list's items are students.N.KEY
            found.append(f"{section}.{name}")
    return found


def refuse(problems: list[str]) -> None:
    """A validator's problems as one error, one per line (``format_validation_error`` splits
    them), so a config with several mistakes hears of all of them at once."""
    if problems:
        raise ValueError("\n".join(problems))


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    """One line per problem; ``model`` is the section validated (default: the whole config)."""
    lines = [f"invalid {source}:"]
    errors = [{**e, "loc": tuple(p for p in e["loc"] if not _union_branch(p))} for e in exc.errors()]
    for err in errors:
        # A mapping given where one branch of a union wants a word is that branch's mismatch,
        # not the problem, when the other branch says what is wrong inside the mapping.
        deeper = [e for e in errors if len(e["loc"]) > len(err["loc"]) and e["loc"][:len(err["loc"])] == err["loc"]]
        if err["type"] == "literal_error" and isinstance(err.get("input"), (dict, list)) and deeper:
            continue
        parts = err["loc"]
        loc = ".".join(str(p) for p in parts)
        if err["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{loc}'{_suggestion(err['loc'], model or RunConfig)}")
        elif err["type"] == "missing":
            lines.append(f"  missing key '{loc}'")
        elif err["type"] == "model_type" and not isinstance(err.get("input"), (dict, list)) and loc:
            lines.append(f"  '{loc}' is a section of keys and was given {err.get('input')!r}: "
                         f"{_section_example(loc, err.get('input'))}")
        elif err["type"] == "list_type" and isinstance(err.get("input"), dict) and loc:
            # YAML's mapping where a list is meant: the usual slip is a missing '- '
            lines.append(f"  '{loc}' takes a list and was given one mapping: start each item with '- ' on a line "
                         "of its own, or write [{...}, {...}]")
        elif err["type"] in ("list_type", "tuple_type") and isinstance(err.get("input"), (str, int, float)) and loc:
            lines.append(f"  '{loc}' takes a list and was given {err['input']!r}: write {_list_example(loc, err['input'])}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            where = f"'{loc}': " if loc else ""
            got = f" (got {err['input']!r})" if loc and not isinstance(err.get("input"), dict) else ""
            lines += [f"  {where}{problem}{got}" for problem in msg.split("\n")]
    return "\n".join(lines)


def _section_example(loc: str, given: Any) -> str:
    """How to write a section given as one value (``data: scans.npz``)."""
    if loc == "data" and isinstance(given, str):
        kind = {".npz": "npz", ".csv": "csv"}.get(Path(given).suffix.lower(), "image_folder")
        return f"write data: {{kind: {kind}, root: {given}}}"
    if loc == "distill" and isinstance(given, str):
        return f"write distill: {{preset: {given}}}"
    if loc in ("teacher",) or re.fullmatch(r"(students|teachers)\.\d+", loc):
        return f"write {{arch: {given}}}" if isinstance(given, str) else "write {arch: NAME, args: {...}}"
    return "write its keys under it, key: value"


def _list_example(loc: str, given: Any) -> str:
    """How to write a list key given one value (``data.image_size=48``)."""
    if loc.split(".")[-1] in ("image_size", "pixel_spacing"):  # two numbers: rows and columns
        return f"{loc}=[{given}, {given}]"
    if loc in ("students", "teachers") and isinstance(given, str):
        return f"{loc}=[{{arch: {given}}}, {{arch: {given}}}] (one entry per model)"
    return f"{loc}=[{given}, ...] (its items in brackets, comma-separated)"


def _union_branch(part: Any) -> bool:
    """pydantic's name for the branch of a union it tried ('literal['split','imagenet']',
    'function-after[_one_per_channel(), ChannelStats]', 'constrained-int'): not a key a user wrote."""
    return isinstance(part, str) and bool(re.fullmatch(r"[a-z]+(-[a-z]+)*\[.*\]|constrained-[a-z]+", part))


def _suggestion(loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    """Name the closest valid key for a misspelt one, or the section that has a key put in the
    wrong one (``epochs`` at the top: ``train.epochs``)."""
    root = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return ""
        inner = _model_in(field.annotation)
        if inner is None:
            return ""
        model = inner
    key = str(loc[-1])
    # the very key in another section first (train.weight_decay: optim's, not ema_decay), or at the top
    elsewhere = [f"{name}{'.N' if _is_list(field.annotation) else ''}.{key}"
                 for name, field in root.model_fields.items()
                 if (section := _model_in(field.annotation)) is not None and section is not model
                 and key in section.model_fields]
    if model is not root and key in root.model_fields:
        elsewhere.insert(0, key)
    if elsewhere:
        keys = [repr(k) for k in elsewhere]
        return f" (did you mean {' or '.join([', '.join(keys[:-1]), keys[-1]] if len(keys) > 1 else keys)}?)"
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (valid keys: {', '.join(model.model_fields)})"


def _is_list(annotation: Any) -> bool:
    """A list of sections (``students``): its keys are written ``students.N.key``."""
    return any(typing.get_origin(a) is list for a in (annotation, *typing.get_args(annotation)))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
