"""The sections of how to train and decode: optim, train, detect and log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, TypeAdapter, ValidationError, field_validator, model_validator

from .sections import Section

_WHOLE = TypeAdapter(int)  # a whole number as pydantic reads one


class OptimSpec(Section):
    """A config's ``optim`` section: the optimizer (``adamw``, ``adam``, ``sgd``), its learning
    rate, weight decay and schedule; ``Trainer(optim=...)`` takes one or a dict of its keys."""

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


def unread_optim_keys(o: OptimSpec) -> dict[str, str]:
    """The optim keys set away from their defaults that this optimizer and schedule never read
    (the user meant another optimizer or schedule), each with where it is read. Refused, as
    distill's are (``unread_distill_keys``): a run without them is not the one asked for, and
    ``key=null`` takes one out where a command line moves a config to another optimizer. Away
    from the default only: a run's saved config.yaml, reused as a config, lists every key."""
    where = {}
    if o.name != "sgd":
        where["momentum"] = f"with optim.name sgd (name is '{o.name}')"
    if o.scheduler != "step":
        where.update(dict.fromkeys(("step_size", "gamma"), f"with optim.scheduler step (scheduler is '{o.scheduler}')"))
    return {key: text for key, text in where.items() if getattr(o, key) != OptimSpec.model_fields[key].default}


def unread_optim_problems(o: OptimSpec) -> list[str]:
    return [f"optim.{key} is read only {text}, so here it would change nothing: remove it (its default is "
            f"{OptimSpec.model_fields[key].default!r})" for key, text in unread_optim_keys(o).items()]


class TrainSpec(Section):
    """A config's ``train`` section: epochs, batch sizes, the monitor that picks the best epoch,
    early stopping, precision and the other speed settings, the non-finite policy;
    ``Trainer(train=...)`` takes one or a dict of its keys."""

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
    val_every: int = Field(
        default=1, ge=1, description="validate after every Nth epoch and the last (the best epoch is chosen among "
                                     "those, train.patience judged there): for a validation that costs much, as "
                                     "whole images by sliding windows"
    )

    @field_validator("num_workers", mode="before")
    @classmethod
    def _workers_or_auto(cls, value: Any) -> Any:
        # one message, not one per member of the union, the second contradicting the first (review 55j); a
        # whole number as pydantic reads one ("3", numpy's int64, 2.0) still taken (review 55n)
        if isinstance(value, str) and value == "auto":
            return value
        try:
            number = _WHOLE.validate_python(value) if not isinstance(value, bool) else None
        except ValidationError:
            number = None
        if number is not None and 0 <= number < 2**31:
            return number
        raise ValueError("num_workers takes a number of worker processes, 0 or more, or auto")


# The detect keys that only decode and fuse boxes: eval can change them on a finished run.
DECODING_KEYS = ("score_threshold", "nms_iou", "max_detections", "ensemble", "ensemble_iou")


class DetectSpec(Section):
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

    @model_validator(mode="before")
    @classmethod
    def _one_name_for_ensemble_iou(cls, data: Any) -> Any:
        """Both names of one key given: pydantic read one and called the other unknown (review 55j)."""
        if isinstance(data, dict) and data.get("wbf_iou") is not None and data.get("ensemble_iou") is not None:
            raise ValueError("detect.wbf_iou is the former name of detect.ensemble_iou: give one of them")
        return data


class LogSpec(Section):
    tensorboard: bool = Field(default=False, description="also log every epoch's numbers to RUN_DIR/tensorboard")
