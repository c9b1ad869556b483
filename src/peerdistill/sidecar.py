"""The JSON written beside an exported .onnx (what predicting with it needs of its run), read
back checked: a hand-edited or damaged file is named with the field at fault, never met as a
traceback or, worse, applied wrongly (a threshold on a ten-class model's second class)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, ValidationError, field_validator, model_validator

from .data.digests import file_sha256
from .data.image_profile import TRAINING_IMAGE_KEYS
from .engine.artifacts import atomic_write_text
from .engine.run_meta import (ClassName, DataStatsRecord, DetectionRecord, Record, Size, check_detection_fits,
                               check_one_name_per_class, first_fault)
from .errors import CheckpointError, ConfigError
from .exported_models import STUDENT_LOGITS, student_count
from .operating_point import NOTHING_POSITIVE

# What marks a JSON as one export wrote (beside the .onnx, under its name).
SIDECAR_KEYS = ("task", "class_names", "num_classes", "input_shape", "output")


def sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


class SidecarRecord(Record):
    task: Literal["classification", "segmentation", "detection"]
    class_names: list[ClassName]
    num_classes: Size
    input_shape: Annotated[list[Size], Field(min_length=1)]
    output: Literal["logits", "probabilities", "student_logits"]
    data_stats: DataStatsRecord | None = None
    image_size: Annotated[list[Size], Field(min_length=2, max_length=2)] | None = None
    window: Size | None = None
    window_overlap: Annotated[float, Field(strict=True, ge=0, lt=1)] | None = None
    ensemble_of: Size | None = None
    grey_read_as_colour: StrictBool | None = None
    training_images: dict[str, Any] | None = None
    input_stats: dict[str, Any] | None = None
    detection: DetectionRecord | None = None
    temperature: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] | None = None
    threshold: Annotated[float, Field(strict=True, allow_inf_nan=False)] | None = None
    # (review 52e: impossible values were taken in silence)
    quantized: Literal["int8"] | None = None
    tta: Literal["hflip", "flips"] | None = None

    @field_validator("threshold")
    @classmethod
    def _a_probability(cls, threshold: float | None) -> float | None:
        if threshold is not None and not 0 <= threshold <= NOTHING_POSITIVE:  # (just above 1: nothing is positive)
            raise ValueError(f"{threshold} is no probability: the threshold is on the positive class's probability, "
                             "from 0 to 1")
        return threshold

    @model_validator(mode="after")
    def _fits_its_classes(self) -> "SidecarRecord":
        check_one_name_per_class(self.class_names, self.num_classes)
        if self.threshold is not None and (self.task != "classification" or self.num_classes != 2):
            raise ValueError(f"its threshold {self.threshold} is on the positive class's probability, for a two-class "
                             f"classifier; this is a {self.num_classes}-class {self.task} model")
        if (self.task == "detection") != (self.detection is not None):
            raise ValueError("a detector's JSON holds its detection settings (head layout and box decoding), and only "
                             "a detector's")
        check_detection_fits(self.detection, self.num_classes, self.input_shape)
        if self.window is not None and self.task != "segmentation":  # (review 52e: an onnxruntime error, cut off)
            raise ValueError(f"its window {self.window} is the sliding window a segmentation model predicts whole "
                             f"images by; this is a {self.task} model, which takes whole inputs: remove it")
        if self.output == "student_logits" and self.ensemble_of is None:
            raise ValueError("its output is the students' logits side by side, but it does not say how many "
                             "(ensemble_of)")
        return self


def read_sidecar(onnx_path: Path) -> dict[str, Any]:
    """The JSON beside ``onnx_path``, checked to hold what predicting with it needs, of the kinds
    export writes (other keys kept as they are)."""
    side = sidecar_path(onnx_path)
    if not side.is_file():
        raise ConfigError(f"'{side}' is missing: it is written by peerdistill export beside the .onnx file")
    try:
        info = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"'{side}' is not valid JSON ({exc}): export the model again") from None
    missing = _missing_keys(info)
    if missing:
        raise CheckpointError(f"'{side}' lacks {missing}: it is not the file peerdistill export writes; export again")
    try:
        SidecarRecord.model_validate(info)
    except ValidationError as exc:
        raise CheckpointError(f"'{side}' is damaged: {first_fault(exc, info, 'predicting')}; export the model "
                              "again") from None
    return info


def model_info(meta: dict, output: str) -> dict:
    """What predicting with a model needs to know of its run: the normalisation, classes, task,
    for segmentation the size images were resized to and the sliding window, and the DICOM
    window training read its files through (``data.dicom_window``, or null: each file's own)."""
    from .runs import saved_window

    info = {k: meta.get(k) for k in ("task", "class_names", "num_classes", "input_shape", "data_stats", "detection")}
    if isinstance(info["detection"], dict):  # the head and box decoding; not training's loss weights (review 50d)
        info["detection"] = {k: v for k, v in info["detection"].items() if k in DetectionRecord.model_fields}
    info["output"] = output
    info["image_size"] = (meta.get("data_spec") or {}).get("image_size")
    info["dicom_window"] = (meta.get("data_spec") or {}).get("dicom_window")
    info["pattern"] = (meta.get("data_spec") or {}).get("pattern")  # how its region masks paired (predict --roi)
    info["grey_read_as_colour"] = (meta.get("data_info") or {}).get("grey_read_as_colour")  # (None: not known)
    # the training images one by one (data.image_profile; absent for older runs and data not in memory)
    info["training_images"] = {k: v for k, v in (meta.get("data_info") or {}).items() if k in TRAINING_IMAGE_KEYS}
    if meta.get("input_stats"):  # a run trained from a Dataset: what its models saw, as the Dataset prepared it
        info["input_stats"] = meta["input_stats"]
    window, overlap = saved_window(meta)
    info["window_overlap"] = overlap if meta.get("task") == "segmentation" else None  # (a segmentation field)
    if output == STUDENT_LOGITS:  # the students side by side: how many, to average them after the window
        info["ensemble_of"] = student_count(meta)
    info["window"] = window[0] if window else None  # square: one number in the sidecar
    return info


def write_sidecar(onnx_path: Path, meta: dict, output: str, quantized: str | None = None,
                  temperature: float | None = None, threshold: float | None = None,
                  operating_point: str | None = None, tta: str | None = None, run_finished: bool = True,
                  onnx_sha256: str | None = None, exported_from: dict | None = None) -> None:
    """The JSON beside an exported .onnx: its ``model_info``, ``quantized`` (int8, or null),
    ``temperature`` (the T in the graph, or null), ``threshold`` (on the positive class's
    probability, chosen by ``operating_point`` on the validation split; or null), ``tta``
    (the flips averaged in the graph, or null) and ``run_finished`` (false: the weights of an
    unfinished run's best epoch so far). ``onnx_sha256``: the digest of the graph as it was checked
    (before it was moved into place: another export to the same path could have replaced it since);
    else the file's now. ``exported_from``: which model of which run, its weights' files and the
    versions that wrote the graph (``export.provenance``)."""
    info = {**model_info(meta, output), "quantized": quantized, "temperature": temperature, "threshold": threshold,
            "operating_point": operating_point, "tta": tta, "run_finished": run_finished,
            "onnx_sha256": onnx_sha256 or file_sha256(onnx_path), "exported_from": exported_from}
    atomic_write_text(sidecar_path(onnx_path), json.dumps({**info, "json_sha256": fields_digest(info)}, indent=2))


def fields_digest(info: dict) -> str:
    """SHA-256 of a sidecar JSON's fields (all but this digest, in a canonical order): whether
    it is still as export wrote it, for the graph of its ``onnx_sha256``."""
    fields = {key: value for key, value in info.items() if key != "json_sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def is_export_json(path: Path) -> bool:
    """Whether ``path`` is the JSON an earlier export wrote (it may be replaced with its .onnx)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return not _missing_keys(found)  # as predict reads one


def _missing_keys(info: Any) -> list[str]:
    """What a JSON lacks of those every export writes (all of them, where it is no mapping)."""
    return [k for k in SIDECAR_KEYS if not isinstance(info, dict) or k not in info]
