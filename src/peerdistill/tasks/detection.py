"""Detection: dense single-stage outputs, boxes after NMS, the students fused by WBF.

A detector returns one tensor [B, A, C + 4 (R + 1)] over the anchor points of its pyramid
(``detection.boxes.HeadLayout``): class logits and, per box edge, a distribution over R + 1
distance bins. That keeps every model output a tensor, so the cohort, the knowledge graph and
feature capture work unchanged; this task knows how to read it.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch

from ..detection.boxes import HeadLayout, anchor_points, decode
from ..detection_metrics import DetectionMeter, detection_metric_names
from ..detection.assign import boxes_without_points
from ..data.exclusion import exclude_example
from ..errors import ConfigError, warn_user
from ..losses.detection import GFL_WEIGHTS, Assignment, assignment, detection_distillation, detection_loss
from .augment import Augmentation
from ..wording import first_few
from .box_augment import MIN_SIDE, NAMES as BOX_NAMES, augment_boxes

# How the student ensemble fuses boxes. ensemble-boxes' soft_nms is left out: it returns the
# boxes it keeps with their scores before the decay (nms_method indexes the input scores), so
# a duplicate keeps ranking as high as the box it overlaps (docs/detection.md).
FUSION_RULES = ("wbf", "nms", "nmw")


def fuse_boxes(rule: str, boxes: list[np.ndarray], scores: list[np.ndarray], labels: list[np.ndarray],
               iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's boxes of several models (normalised xyxy) fused into one list by ``rule``."""
    from ensemble_boxes import nms, non_maximum_weighted, weighted_boxes_fusion

    if rule == "wbf":
        return weighted_boxes_fusion(boxes, scores, labels, iou_thr=iou, skip_box_thr=0.0)
    if rule == "nmw":
        return non_maximum_weighted(boxes, scores, labels, iou_thr=iou, skip_box_thr=0.0)
    if rule == "nms":
        return nms(boxes, scores, labels, iou_thr=iou)
    raise ConfigError(f"unknown box fusion rule '{rule}': use one of {', '.join(FUSION_RULES)}")


class DetectionTask:
    name = "detection"
    summary_metrics = ("ap", "ap50", "ap75", "ar10")  # the console table's columns
    default_monitor = "ensemble/ap"
    supervised_name = "det"

    def __init__(self, layout: HeadLayout, image_size: tuple[int, int], class_names: list[str] | None = None,
                 augment: tuple[str, ...] | Augmentation = (), score_threshold: float = 0.05, nms_iou: float = 0.6,
                 max_detections: int = 100, ensemble: str = "wbf", ensemble_iou: float = 0.7,
                 kd_cls_weight: float = 1.0,
                 kd_loc_weight: float = 1.0, kd_loc_region: str = "confidence"):
        self.layout = layout
        self.num_classes = layout.num_classes
        self.name_classes(class_names or [str(c) for c in range(layout.num_classes)])
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.augmentation = augment if isinstance(augment, Augmentation) else Augmentation(tuple(augment))
        self.augmentations = self.augmentation.names
        self.score_threshold, self.nms_iou, self.max_detections = score_threshold, nms_iou, max_detections
        if ensemble not in FUSION_RULES:
            raise ConfigError(f"detect.ensemble must be one of {', '.join(FUSION_RULES)}, not '{ensemble}'")
        self.ensemble_rule, self.ensemble_iou = ensemble, ensemble_iou
        self.kd_cls_weight, self.kd_loc_weight = kd_cls_weight, kd_loc_weight
        if kd_loc_region not in ("confidence", "assigned"):
            raise ConfigError(f"kd_loc_region must be 'confidence' or 'assigned', not '{kd_loc_region}'")
        self.kd_loc_region = kd_loc_region
        self._assigned: tuple[torch.Tensor, int, int, Assignment] | None = None  # targets, version, points, result

    def name_classes(self, class_names: list[str]) -> None:
        """Per-class metrics are named after these."""
        self.class_names = list(class_names)
        self.metric_names = detection_metric_names(self.class_names)

    def saved_settings(self) -> dict:
        """What rebuilding this task from a run needs (``runs.task_for`` reads it back from run.json)."""
        layout = self.layout
        return {"detection": {"num_classes": layout.num_classes, "reg_max": layout.reg_max,
                              "strides": list(layout.strides), "image_size": list(self.image_size),
                              "score_threshold": self.score_threshold, "nms_iou": self.nms_iou,
                              "max_detections": self.max_detections, "ensemble": self.ensemble_rule,
                              "ensemble_iou": self.ensemble_iou,
                              "kd_cls_weight": self.kd_cls_weight, "kd_loc_weight": self.kd_loc_weight,
                              "kd_loc_region": self.kd_loc_region}}

    def supervised_loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        terms = detection_loss(out.float(), targets, self.layout, self.image_size, self._assignment(out, targets))
        return sum(GFL_WEIGHTS[k] * v for k, v in terms.items())

    def distill(self, student: torch.Tensor, source: torch.Tensor, temperature: float,
                targets: torch.Tensor | None = None) -> torch.Tensor:
        """What a ``kl`` knowledge edge means between detectors: softened classification maps
        plus localization distillation weighted by the source's confidence, in the configured
        shares; with ``kd_loc_region: assigned`` localization counts only at the points the
        training assignment gives a true box (it needs the batch's ``targets``)."""
        region = None
        if self.kd_loc_region == "assigned" and self.kd_loc_weight:
            if targets is None:
                raise ConfigError("kd_loc_region 'assigned' needs the batch's boxes to find the assigned points")
            region = self._assignment(student, targets).positives(self.layout.num_classes)
        return detection_distillation(student.float(), source.float(), self.layout, temperature,
                                      self.kd_cls_weight, self.kd_loc_weight, region)

    def _assignment(self, out: torch.Tensor, targets: torch.Tensor) -> Assignment:
        """Every model's loss and every edge of a step see the same targets tensor and the same
        anchor points: assign them once per batch (again if that tensor was changed in place,
        which bumps its version)."""
        cached = self._assigned
        if (cached is None or cached[0] is not targets or cached[1] != targets._version
                or cached[2] != out.shape[1]):
            cached = self._assigned = (targets, targets._version, out.shape[1],
                                       assignment(out, targets, self.layout, self.image_size))
        return cached[3]

    def probabilities(self, out: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per image: the boxes kept after score threshold and per-class NMS."""
        return decode(out.float(), self.layout, self.image_size, score_threshold=self.score_threshold,
                      iou_threshold=self.nms_iou, max_detections=self.max_detections)

    def ensemble(self, per_model: list[list[dict[str, torch.Tensor]]]) -> list[dict[str, torch.Tensor]]:
        """The students' boxes fused image by image by ``detect.ensemble`` (the ensemble-boxes
        package): weighted boxes fusion (Solovyev et al. 2021; overlapping boxes of different
        models are averaged, weighted by score, and a box found by fewer models scores lower),
        NMS over every student's boxes, or non-maximum weighted (the top box's coordinates
        averaged with those it suppresses), boxes overlapping by ``ensemble_iou`` being one."""
        h, w = self.image_size
        scale = np.array([w, h, w, h], dtype=np.float32)
        fused = []
        for detections in zip(*per_model, strict=True):
            device = detections[0]["boxes"].device
            boxes = [(d["boxes"].float().cpu().numpy() / scale).clip(0, 1) for d in detections]
            scores = [d["scores"].float().cpu().numpy() for d in detections]
            labels = [d["labels"].cpu().numpy() for d in detections]
            if sum(len(b) for b in boxes) == 0:
                fused.append({k: v.clone() for k, v in detections[0].items()})
                continue
            b, s, lab = fuse_boxes(self.ensemble_rule, boxes, scores, labels, self.ensemble_iou)
            order = np.argsort(-s, kind="stable")[: self.max_detections]
            fused.append({"boxes": torch.as_tensor(b[order] * scale, dtype=torch.float32, device=device),
                          "scores": torch.as_tensor(s[order], dtype=torch.float32, device=device),
                          "labels": torch.as_tensor(lab[order], dtype=torch.long, device=device)})
        return fused

    def new_meter(self) -> DetectionMeter:
        return DetectionMeter(self.class_names)

    def augment(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        if not self.augmentation:
            return x, y
        x = self.augmentation.intensity(x, generator)
        moves = tuple(n for n in self.augmentations if n in BOX_NAMES)
        return augment_boxes(x, y, moves, generator, self.augmentation.range_of("scale")) if moves else (x, y)

    def inspect_training_data(self, train) -> None:
        """Warn of training boxes no anchor point can learn (they would silently train as
        background): how many, and what to change. Datasets without a target tensor ``y`` are
        not scanned."""
        y = _box_targets(train)
        if y is None:
            return
        thin = slivers(y)
        if thin.any():
            warn_user(f"{int(thin.sum())} of {int((y[..., 0] >= 0).sum())} training boxes are under {MIN_SIDE:g} "
                      f"pixels wide or high at {self.image_size[0]}x{self.image_size[1]} (in "
                      f"{int(thin.any(dim=1).sum())} images{_images_named(train, thin)}): "
                      f"{self._sliver_cause(train, thin)}; augmentation drops such boxes, and few are learnt: check "
                      f"the annotations{_leave_out(train, thin)}{self._larger_size(train, thin, ', or')}")
        missed = boxes_without_points(y, self.layout, self.image_size) & ~thin
        if missed.any():
            total = int((y[..., 0] >= 0).sum())
            moved = sorted({"scale", "crop"} & set(self.augmentations))
            fate = ("they are never learnt, and their images train as background there" if not moved else
                    f"they are learnt only in batches where data.augment ({', '.join(moved)}) moves them onto a "
                    "point, and train as background in the others")
            warn_user(f"{int(missed.sum())} of {total} training boxes (in {int(missed.any(dim=1).sum())} images"
                      f"{_images_named(train, missed)}) hold no anchor point at strides {tuple(self.layout.strides)} "
                      f"on {self.image_size[0]}x{self.image_size[1]} images (boxes narrower than the finest stride "
                      f"can fall between the points): {fate}; train at a larger data.image_size, or give the "
                      f"detectors a finer first stride (args.strides)"
                      f"{_leave_out(train, missed, ', or leave their images out')}")

    def _sliver_cause(self, part, thin: torch.Tensor) -> str:
        gains = self._sliver_gains(part, thin)
        return (f"annotation slivers (under {MIN_SIDE:g} pixels a side in the original images too)"
                if gains is not None and not gains else "annotation slivers, or objects too small at this size")

    def _larger_size(self, part, thin: torch.Tensor, joint: str) -> str:
        """The advice to train at a larger image size, with the size where the slivers of ``part``
        reach ``MIN_SIDE`` pixels a side when their original sizes are known; none where no size
        can (a box of 1 pixel in a 600-pixel frame stays a sliver at any size)."""
        gains = self._sliver_gains(part, thin)
        if gains is None:
            return f"{joint} train at a larger data.image_size"
        if not gains:
            return ""
        factor = max(gains)
        size = [math.ceil(side * factor) for side in self.image_size]
        lost = int(thin.sum()) - len(gains)
        which = (f"{len(gains)} of them reach {MIN_SIDE:g} pixels a side (the other {lost} are under {MIN_SIDE:g} "
                 "in their original images too)" if lost else f"they reach {MIN_SIDE:g} pixels a side")
        return f"{joint} train at data.image_size={size} or more, where {which}"

    def _sliver_gains(self, part, thin: torch.Tensor) -> list[float] | None:
        """For each sliver of ``part`` that is at least ``MIN_SIDE`` pixels a side in its original
        image, the factor on the training size that makes it so; None where an original size is
        unknown (a larger size may help)."""
        sizes = getattr(part, "original_sizes", None)
        if not isinstance(sizes, list) or len(sizes) != len(thin):
            return None
        h, w = self.image_size
        gains = []
        for row, col in thin.nonzero().tolist():
            if sizes[row] is None:
                return None
            _, x1, y1, x2, y2 = part.y[row, col].tolist()
            side = min(x2 - x1, y2 - y1)
            # (float32 targets: a 2-pixel box comes back as 1.9999 from the training size)
            if side > 0 and min((x2 - x1) * sizes[row][0] / w, (y2 - y1) * sizes[row][1] / h) >= MIN_SIDE - 1e-3:
                gains.append(MIN_SIDE / side)
        return gains

    def inspect_held_out(self, part, what: str) -> None:
        """Validation or test boxes under ``MIN_SIDE`` pixels a side: truths no detector finds,
        which cap recall and AP (Kvasir-SEG's JSON holds seven, 1 to 3 pixels wide)."""
        y = _box_targets(part)
        thin = slivers(y) if y is not None else None
        if thin is not None and thin.any():
            warn_user(f"{int(thin.sum())} of {int((y[..., 0] >= 0).sum())} {what} boxes are under {MIN_SIDE:g} "
                      f"pixels wide or high at {self.image_size[0]}x{self.image_size[1]}"
                      f"{_images_named(part, thin, ' (in ')}: {self._sliver_cause(part, thin)}, which a detector "
                      "seldom finds, so they lower its recall and AP: check the annotations"
                      f"{_leave_out(part, thin)}{self._larger_size(part, thin, ', or')}")

    def check_output(self, name: str, out: torch.Tensor, batch: int) -> None:
        h, w = self.image_size
        points = len(anchor_points(h, w, self.layout.strides, out.device)[0])
        expected = (batch, points, self.layout.channels)
        if tuple(out.shape) != expected:
            raise ConfigError(
                f"model '{name}' outputs {tuple(out.shape)}; this detection task needs {expected} "
                f"({self.num_classes} classes, reg_max {self.layout.reg_max}, strides {list(self.layout.strides)} "
                f"on {h}x{w} images): build every model with the same num_classes, reg_max and strides"
            )


def _names_of(part, boxes: torch.Tensor) -> list[str]:
    """The names of the images of ``part`` holding any of ``boxes`` (a mask [N, M]), where the
    split knows its images' names (``NamedBoxes``); else none."""
    names = getattr(part, "names", None)
    if not isinstance(names, list) or len(names) != len(boxes):
        return []
    return [names[i] for i in boxes.any(dim=1).nonzero().flatten().tolist()]


def _images_named(part, boxes: torch.Tensor, opening: str = ": ") -> str:
    """The first few images holding ``boxes``, to find them by (the docs say to check them)."""
    named = _names_of(part, boxes)
    if not named:
        return ""
    return f"{opening}{first_few(named, 5, quoted=True)}{')' if opening.startswith(' (') else ''}"


def _leave_out(part, boxes: torch.Tensor, advice: str = ", and leave out the images of slips") -> str:
    """``advice`` with a ready data.exclude leaving out the images holding ``boxes``, after the
    patterns given; nothing where the split does not name its images."""
    named = _names_of(part, boxes)
    if not named:
        return ""
    return f"{advice} ({exclude_example(named, getattr(part, 'exclude', ()))})"


def _box_targets(part) -> torch.Tensor | None:
    """A split's box targets [N, M, 5] held in memory (``TensorData.y``); None for a Dataset
    that keeps none, or an empty split: nothing to scan."""
    y = getattr(part, "y", None)
    return y if isinstance(y, torch.Tensor) and y.ndim == 3 and len(y) else None


def slivers(targets: torch.Tensor) -> torch.Tensor:
    """Mask [N, M] of the boxes of targets [N, M, 5] (label >= 0, then x1, y1, x2, y2) under
    ``MIN_SIDE`` pixels wide or high: too thin for augmentation to keep, or a point to learn."""
    width, height = targets[..., 3] - targets[..., 1], targets[..., 4] - targets[..., 2]
    return (targets[..., 0] >= 0) & ((width < MIN_SIDE) | (height < MIN_SIDE))


def detection_archs() -> list[str]:
    """The zoo's archs that build detectors: the factories taking ``reg_max``, the distance bins of
    a detector's head layout (a classifier or a segmenter has none)."""
    from ..models import ZOO

    return sorted(name for name, factory in ZOO.items() if "reg_max" in inspect.signature(factory).parameters)


def not_detectors(archs: dict[str, str]) -> str | None:
    """Why models of the zoo named by ``archs`` (model name: arch) cannot be detection models, where
    some are not detectors; None where all are (or are not the zoo's: a model of one's own may be)."""
    from ..models import ZOO

    wrong = {name: arch for name, arch in archs.items() if arch in ZOO and arch not in detection_archs()}
    if not wrong:
        return None
    shown = ", ".join(f"{name} (arch '{arch}')" for name, arch in wrong.items())
    return (f"task detection needs detectors, but {shown} {'is' if len(wrong) == 1 else 'are'} not: set their arch "
            f"to one of the zoo's detectors ({', '.join(detection_archs())}), or to a model of your own exposing "
            "its head layout as 'layout' (a peerdistill.detection.HeadLayout)")


def _zoo_arch(module) -> str | None:
    """The zoo arch that built ``module`` (a class of the zoo), else None."""
    from ..models import ZOO

    return next((name for name, factory in ZOO.items() if type(module) is factory), None)


def layout_of(modules) -> HeadLayout:
    """The one head layout every detector of a cohort must share (for their outputs to meet)."""
    layouts = {name: getattr(m, "layout", None) for name, m in modules.items()}
    missing = [n for n, lay in layouts.items() if not isinstance(lay, HeadLayout)]
    said = not_detectors({n: arch for n in missing if (arch := _zoo_arch(modules[n])) is not None})
    if said:
        raise ConfigError(said)
    if missing:
        raise ConfigError(f"task detection needs detectors, but {', '.join(missing)} expose no head layout ('layout', "
                          f"a peerdistill.detection.HeadLayout): use one of the zoo's detectors (arch: "
                          f"{' or '.join(detection_archs())}), or wrap your model so it exposes its head layout")
    distinct = set(layouts.values())
    if len(distinct) > 1:
        raise ConfigError(f"the detectors' head layouts differ ({layouts}); give every model the same "
                          "num_classes, reg_max and strides")
    return distinct.pop()
