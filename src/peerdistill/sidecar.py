"""The JSON written beside an exported .onnx (what predicting with it needs of its run), read
back checked: a hand-edited or damaged file is named with the field at fault, never met as a
traceback or, worse, applied wrongly (a threshold on a ten-class model's second class)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, ValidationError, field_validator, model_validator

from .engine.run_meta import (ClassName, DataStatsRecord, DetectionRecord, Record, Size, check_detection_fits,
                               check_one_name_per_class, first_fault)
from .errors import CheckpointError, ConfigError
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
    missing = [k for k in SIDECAR_KEYS if not isinstance(info, dict) or k not in info]
    if missing:
        raise CheckpointError(f"'{side}' lacks {missing}: it is not the file peerdistill export writes; export again")
    try:
        SidecarRecord.model_validate(info)
    except ValidationError as exc:
        raise CheckpointError(f"'{side}' is damaged: {first_fault(exc, info, 'predicting')}; export the model "
                              "again") from None
    return info
