"""What reading a run back needs of its run.json, declared once: a damaged or hand-edited file
is named with the field at fault, not met as a KeyError or TypeError deep inside a command.

The file's other keys are kept as they are (``extra="allow"``); those declared here are the
ones commands build models, standardise inputs or name classes from."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, model_validator

Count = Annotated[StrictInt, Field(ge=0)]
Size = Annotated[StrictInt, Field(ge=1)]
Figure = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # (an int is a float too)
ClassName = StrictStr | StrictInt  # (a DataSplits given class_names=[0, 1, 2] in Python writes them so)


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class ModelSpecRecord(Record):
    arch: StrictStr
    args: dict[str, Any] = {}


class MemberRecord(Record):
    name: StrictStr
    role: Literal["teacher", "student"]
    parameters: Count | None = None
    spec: ModelSpecRecord | None = None  # None: built in Python, not from an arch


class DataStatsRecord(Record):
    mean: Annotated[list[Figure], Field(min_length=1)]
    std: Annotated[list[Annotated[Figure, Field(gt=0)]], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_of_each_per_channel(self) -> "DataStatsRecord":
        if len(self.mean) != len(self.std):
            raise ValueError(f"{len(self.mean)} mean(s) and {len(self.std)} std(s), not one of each per channel")
        return self


Fraction = Annotated[float, Field(strict=False, allow_inf_nan=False)]


class DetectionRecord(Record):
    """A detector's head layout and box decoding (``DetectionTask.saved_settings``): what turns
    its dense outputs into boxes, in run.json and beside an exported graph."""

    num_classes: Size
    reg_max: Size
    strides: Annotated[list[Size], Field(min_length=1)]
    image_size: Annotated[list[Size], Field(min_length=2, max_length=2)]
    score_threshold: Annotated[Fraction, Field(ge=0, lt=1)]  # (as the config's detect section takes them)
    nms_iou: Annotated[Fraction, Field(gt=0, le=1)]
    max_detections: Size
    ensemble: Literal["wbf", "nms", "nmw"] = "wbf"
    ensemble_iou: Annotated[Fraction, Field(gt=0, le=1)] | None = None


class RunRecord(Record):
    task: Literal["classification", "segmentation", "detection"]
    num_classes: Size
    input_shape: Annotated[list[Size], Field(min_length=1)]  # (a Dataset's volumes: four or more)
    members: list[MemberRecord]
    # present, a list (absent in runs of some versions); validate_default: None given is damage
    class_names: list[ClassName] = Field(default=None, validate_default=False)
    data_stats: DataStatsRecord | None = None  # None: trained unstandardised
    data_info: dict[str, Any] | None = None
    data_spec: dict[str, Any] | None = None
    detection: DetectionRecord | None = None

    @model_validator(mode="after")
    def _one_name_per_class(self) -> "RunRecord":
        check_one_name_per_class(self.class_names, self.num_classes)
        check_detection_fits(self.detection, self.num_classes, self.input_shape)
        return self


def check_detection_fits(detection: DetectionRecord | None, num_classes: int, input_shape: list[int]) -> None:
    """A detector's settings agree with the record's classes and input size (a ValueError saying
    otherwise): its decoding reads the graph's output by them."""
    if detection is None:
        return
    if detection.num_classes != num_classes:
        raise ValueError(f"its detection settings count {detection.num_classes} classes, the record {num_classes}")
    if list(detection.image_size) != list(input_shape[1:]):
        raise ValueError(f"its detection image_size {detection.image_size} is not its input size {input_shape[1:]}")


def check_one_name_per_class(names: list | None, num_classes: int) -> None:
    """A record's class names, when it has them, one per class (a ValueError saying otherwise)."""
    if names is not None and len(names) != num_classes:
        raise ValueError(f"its class_names ({names!r}) are not one name for each of its {num_classes} classes")


def run_record_problem(meta: Any) -> str | None:
    """What is wrong with a run.json's contents (its first fault, named by its place), or None."""
    try:
        RunRecord.model_validate(meta)
    except ValidationError as exc:
        return first_fault(exc, meta)
    return None


def first_fault(exc: ValidationError, record: Any, needed_for: str = "reading the run back") -> str:
    """A JSON record's first fault that ``exc`` found, named by its place in ``record``."""
    error = exc.errors()[0]
    place = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    if error["type"] == "value_error" and not place:
        return str(error["ctx"]["error"])  # said whole by a validator above
    if error["type"] == "value_error":
        return f"its {place}: {error['ctx']['error']}"
    if error["type"] == "missing":
        return f"it lacks {place}, which {needed_for} needs"
    if error["type"] == "model_type" and not place:
        return f"it holds {type(record).__name__}, not a mapping"
    given = repr(error["input"])
    said = re.sub(r" or instance of \w+", "", error["msg"])  # (pydantic's class names say nothing to a user)
    return f"its {place} is {given if len(given) <= 60 else given[:57] + '...'}: {said[0].lower()}{said[1:]}"
