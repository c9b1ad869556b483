"""A whole run's config (RunConfig): its sections, its default name, and the checks that
need several sections at once."""

from __future__ import annotations

import unicodedata
from pathlib import Path, PureWindowsPath
from typing import Any, Literal, Sequence

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from .cohort_spec import (SELF_KEYS, DistillSpec, ModelSpec, deep_layer_without_heads, model_name_problems,
                          unread_distill_keys, unread_distill_problems)
from .data_spec import DataSpec
from .messages import refuse
from .presets import PEER_PRESETS, TEACHER_PRESETS, TEACHER_TERM_WEIGHTS
from .sections import Section, check_seed, home_expanded, validating_saved
from .training_spec import DetectSpec, LogSpec, OptimSpec, TrainSpec, unread_optim_problems

NAME_MAX = 255  # bytes of one file or folder name (ext4, XFS, APFS, NTFS's 255 characters)
# A run's name, at most: the folders --overwrite keeps beside it add up to 32 bytes to it
# ('.replaced-NAME.PID.claimed', 'NAME.kept-YYYYmmdd-HHMMSS-n'), within NAME_MAX (review 56m).
RUN_NAME_MAX = NAME_MAX - 32


def _raw_value(section: Any, key: str, default: Any) -> Any:
    """``section.key`` of a section as given: a mapping, a section built in Python, or anything
    else (refused by validation later), which has none."""
    if isinstance(section, BaseModel):
        return getattr(section, key, default)
    value = section.get(key) if isinstance(section, dict) else None
    return default if value is None else value  # (null: the key's default, as validation reads it)


def refuse_control_characters(key: str, value: str) -> None:
    """A folder's name holding a NUL, newline, tab or escape: a NUL passed --dry-run and then stopped
    the run with Python's traceback, the others make a folder that terminals show wrong (review 55j)."""
    control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise ValueError(f"{key} holds the control character {control!r}: it names a folder, so printable "
                         "characters only (no NUL, newline, tab or escape)")


def refuse_long_names(key: str, folders: Sequence[str]) -> None:
    """A folder's name past the 255 bytes file systems take: it passed --dry-run, then the run stopped
    with 'File name too long' and the whole path, advised to check its permissions (review 55j). A
    run's name leaves room for the folders kept beside it (RUN_NAME_MAX)."""
    limit = RUN_NAME_MAX if key == "name" else NAME_MAX
    long = next((f for f in folders if len(f.encode("utf-8", "surrogateescape")) > limit), None)
    if long is not None:
        size = f"{len(long.encode('utf-8', 'surrogateescape')):,} bytes"
        if key == "name":
            raise ValueError(f"name is {size}, longer than the {RUN_NAME_MAX} bytes a run's name may take (the "
                             f"folders --overwrite keeps beside the run add up to 32 to it, and a file system takes "
                             f"{NAME_MAX} for one): shorten it")
        raise ValueError(f"{key} holds a folder name of {size}, longer than the {NAME_MAX} bytes a file system takes "
                         "for one: shorten it")


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
    suffix = f"-{preset if isinstance(preset, str) else 'kd+ml'}"
    # (a folder's name of 250 bytes made a name too long for the run's folder: cut to fit, review 56m)
    room = RUN_NAME_MAX - len(suffix.encode("utf-8", "surrogateescape"))
    named = named.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f"{named}{suffix}"


def named_as_written(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` with its name: its own, else ``default_run_name`` of it as written (compare names a
    config so before a preset of --presets replaces its own)."""
    return tree if tree.get("name") is not None else {**tree, "name": default_run_name(tree)}


class RunConfig(Section):
    """A whole training config, as a YAML file gives it (``load_config``): the run's name and
    folder, seed, task, data, models, distillation, training and optimizer sections, each checked
    with a message naming its key."""

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
        return check_seed("seed", v, info)

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
        if not isinstance(v, str) and not validating_saved(info):  # YAML read it as a number or a date, already changed (0123 is 83)
            raise ValueError(f"name must be text; YAML read it as {type(v).__name__} {v!r}: quote it, "
                             "e.g. \"name='2024'\" on the command line")
        return v

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, v: str, info: ValidationInfo) -> str:
        if (v.strip() in ("", ".", "..") or any(c in v for c in "/\\")) and not validating_saved(info):
            raise ValueError("name is the run's folder inside out_dir: one folder name, without '/', '\\' or "
                             "'..' (put the place in out_dir)")
        if not validating_saved(info):
            refuse_control_characters("name", v)
            refuse_long_names("name", [v])
        return v

    @field_validator("out_dir")
    @classmethod
    def _a_folder(cls, v: str, info: ValidationInfo) -> str:
        if validating_saved(info):
            return v
        if not v.strip():  # (Path('') is the current folder: a run put there without a word, where name '' is refused)
            raise ValueError("out_dir is empty: give the folder the run's folder goes in (. for the current one)")
        refuse_control_characters("out_dir", v)
        v = home_expanded(v)
        refuse_long_names("out_dir", Path(v).parts)
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
        if not validating_saved(info):  # a run saved under older rules is still read
            problems += model_name_problems(self.member_names())
        if self.teacher is not None and self.teachers:
            problems.append("give either 'teacher' (one) or 'teachers' (a list), not both")
        preset = self.distill.preset
        # alone, before what the preset needs: adding teachers or heads would not make it available (review 47a)
        if self.task != "classification" and preset == "self":
            refuse([f"preset 'self' (self-distillation heads) is for classification: their classifiers pool features "
                    f"to one class vector; for {self.task} use kd, ml or kd+ml"])
        if self.task == "detection" and preset == "multi-teacher":
            refuse(["preset 'multi-teacher' is not available for detection: use kd with one teacher"])
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
        ignored_before = not validating_saved(info)  # keys earlier versions accepted and ignored: refused in new configs
        if ignored_before and self.train.segmentation_loss != "ce+dice" and self.task != "segmentation":
            problems.append(f"train.segmentation_loss is for segmentation: remove it for {self.task}")
        if ignored_before and self.detect != DetectSpec() and self.task != "detection":
            problems.append(f"the detect section is for detection: remove it for {self.task}")
        alone = self.all_teachers()
        if ignored_before and len(alone) == 1 and alone[0].weight != 1.0:  # (review 56b: read as alpha)
            key = "teacher.weight" if self.teacher is not None else "teachers.0.weight"
            problems.append(f"{key} weighs each of several teachers (a teachers list) in their average, and this run "
                            "has one teacher: remove it; distill.alpha weighs the teacher's KD term")
        if ignored_before and any(s.weight != 1.0 for s in self.students):
            problems.append("students.N.weight is a teacher's weight in the multi-teacher average: remove it "
                            "from the students")
        problems += self._decay_problems()
        if self.optim.warmup_epochs >= self.train.epochs:
            problems.append(f"optim.warmup_epochs ({self.optim.warmup_epochs}) must be fewer than train.epochs "
                            f"({self.train.epochs}): the warm-up leads into the schedule")
        weighted = [k for k in (*TEACHER_TERM_WEIGHTS, "ensemble_weight") if getattr(self.distill, k) > 0]
        if ignored_before and preset == "custom":
            problems += [f"preset 'custom' builds only distill.edges, so distill.{key} would be ignored: write the "
                         f"term as an edge, {self._custom_edge_for(key)}, or remove it" for key in weighted]
        dense = [k for k in weighted if k in TEACHER_TERM_WEIGHTS]
        if ignored_before and dense and preset not in (*TEACHER_PRESETS, "custom"):
            problems.append(f"distill.{dense[0]} adds terms from the teacher to each student, which preset '{preset}' "
                            "does not distil: use a preset with a teacher (kd, kd+ml, styles, multi-teacher), or "
                            "remove it")
        headless = preset == "self" and not any(s.heads for s in self.students)
        stray_deep = [key for key, m in self._keyed_members() if m.deep_layer and not m.heads]
        unread_self: list[str] = []
        if headless and ignored_before:
            unread = unread_distill_keys(self.distill, len(self.all_teachers()), self.has_heads())
            unread_self = [f"distill.{k}" for k in SELF_KEYS if k in unread]
        if ignored_before and not headless:
            frozen = {key for key, m in self._keyed_members() if m.frozen}  # (a frozen model takes no heads)
            problems += [deep_layer_without_heads(key, key in frozen) for key in stray_deep]
        if ignored_before:
            problems += unread_distill_problems(self.distill, len(self.all_teachers()), self.has_heads(),
                                                said=SELF_KEYS if headless else ())
            problems += unread_optim_problems(self.optim)
        if preset in PEER_PRESETS and len(self.students) == 1:
            problems.append(f"preset '{preset}' needs at least two students for mutual learning")
        elif self.distill.ensemble_weight > 0 and len(self.students) == 1:
            problems.append("distill.ensemble_weight distils the students' ensemble into each student, and this run "
                            "has one student: add students, or remove distill.ensemble_weight")
        if headless:
            problems.append(self._self_without_heads(stray_deep if ignored_before else [], unread_self))
        for edge in self.distill.edges or []:
            if edge.kind in ("hint", "at", "sp", "pair") and (not edge.source_layer or not edge.target_layer):
                problems.append(f"edge {edge.source} -> {edge.target} of kind '{edge.kind}' needs source_layer and "
                                "target_layer")
        refuse(problems)
        return self

    def _keyed_members(self) -> list[tuple[str, ModelSpec]]:
        """Each model's spec with its config key (teacher, teachers.N, students.N)."""
        keyed = [("teacher", self.teacher)] if self.teacher is not None else []
        keyed += [(f"teachers.{i}", t) for i, t in enumerate(self.teachers)]
        return keyed + [(f"students.{i}", s) for i, s in enumerate(self.students)]

    def _self_without_heads(self, stray_deep: list[str], unread_self: list[str]) -> str:
        """Preset self with no student heads, in one message: both ways out, each whole (the keys
        that stay unread without heads named with the second, not refused one by one after)."""
        emptied = [key for key, m in self._keyed_members() if key.startswith("students.")
                   and "heads" in m.model_fields_set and not m.heads]
        said = (f" ({', '.join(f'{k}.heads' for k in emptied)} {'is' if len(emptied) == 1 else 'are'} empty)"
                if emptied else "")
        key = emptied[0] if emptied else "students.0"
        deep = self._student(key).deep_layer if self.students else None
        # (no example layer beside a deep_layer of the user's: it could be that layer, or run after it)
        example = f"{key}.heads=[PATH, ...] on layers that run before its deep_layer '{deep}'" if deep else \
            f"{key}.heads=[features.2]"
        leftover = [f"{k}.deep_layer" for k in stray_deep] + unread_self
        remove = f", and remove {', '.join(leftover)}, which only heads read" if leftover else ""
        return (f"preset 'self' needs heads on a student{said}: set students.N.heads to module paths, e.g. "
                f"{example}; or, to train without heads, set distill.preset to another preset "
                f"(independent: each model learns from the labels alone){remove}")

    def _student(self, key: str) -> ModelSpec:
        return self.students[int(key.split(".")[1])]

    def _custom_edge_for(self, key: str) -> str:
        """How to write the term a distill weight adds as custom edges (graph.py builds them so)."""
        d = self.distill
        student = self.member_names()[len(self.all_teachers())] if self.students else "student1"
        if key == "ensemble_weight":
            return (f"a kl edge from the students' ensemble to each student, e.g. {{source: ensemble, target: {student}, "
                    f"kind: kl, weight: {d.ensemble_weight:g}, temperature: {d.kd_temperature:g}}}")
        teacher = self.member_names()[0] if self.all_teachers() else "teacher"
        kind = key.removesuffix("_weight")
        extra = {"pair": ", source_layer: LAYER, target_layer: LAYER", "cwd": f", temperature: {d.cwd_temperature:g}"}
        return (f"a {kind} edge from each teacher to each student, e.g. {{source: {teacher}, target: {student}, "
                f"kind: {kind}, weight: {getattr(d, key):g}{extra.get(kind, '')}}}")

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

    def named_members(self) -> list[tuple[str, ModelSpec]]:
        """Each model's name in the cohort (its own, else teacher, teacherN, studentN) with its spec."""
        named = [(self.teacher.name or "teacher", self.teacher)] if self.teacher is not None else []
        named += [(t.name or f"teacher{i + 1}", t) for i, t in enumerate(self.teachers)]
        named += [(s.name or f"student{i + 1}", s) for i, s in enumerate(self.students)]
        return named

    def member_keys(self) -> list[str]:
        """Each model's config key (teacher, teachers.N, students.N), in ``named_members``' order."""
        return [key for key, _ in self._keyed_members()]

    def member_names(self) -> list[str]:
        return [name for name, _ in self.named_members()]
