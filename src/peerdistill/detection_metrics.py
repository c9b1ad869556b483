"""Detection metrics from pycocotools' COCOeval (the reference implementation, not a rewrite).

- ``ap``: COCO AP, the mean over IoU thresholds 0.50:0.05:0.95 and over classes;
  ``ap50`` / ``ap75`` at IoU 0.50 / 0.75.
- ``ar1`` / ``ar10`` / ``ar100``: COCO average recall with at most 1 / 10 / 100 detections
  per image and class (COCOeval's ``maxDets`` counts each class apart).
- ``ap_<class>`` / ``ap50_<class>``: AP and AP50 of one class (COCOeval's own per-class
  precision, averaged as its summary averages all classes); NaN for a class without a box in
  the split.

Predictions and ground truth are kept for the whole split (per image: boxes in pixels, scores,
labels) and scored at once. Images without any ground-truth box take part as COCOeval treats
them (their detections are false positives). Crowd regions (truth rows labelled -2 - class, see
``data.detection``) go to COCOeval as ``iscrowd`` boxes: a detection on one is ignored.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

from .metrics import DETECTION_PER_CLASS, per_class_names

DETECTION_METRICS = ("ap", "ap50", "ap75", "ar1", "ar10", "ar100")
# Positions of the figures in COCOeval.stats.
_STATS = {"ap": 0, "ap50": 1, "ap75": 2, "ar1": 6, "ar10": 7, "ar100": 8}


def detection_metric_names(class_names: list[str]) -> tuple[str, ...]:
    return DETECTION_METRICS + per_class_names(DETECTION_PER_CLASS, class_names)


class DetectionMeter:
    def __init__(self, class_names: list[str]):
        self.class_names = class_names
        self.predictions: list[dict[str, np.ndarray]] = []
        # per image: [n, 5] rows (label, x1, y1, x2, y2); label -2 - class marks a crowd region
        self.truths: list[np.ndarray] = []

    def update(self, detections: list[dict[str, torch.Tensor]], targets: torch.Tensor) -> None:
        """``detections``: per image ``{boxes [n, 4], scores [n], labels [n]}``; ``targets``
        [B, M, 5] padded with label -1."""
        for det, truth in zip(detections, targets, strict=True):
            self.predictions.append({k: v.detach().float().cpu().numpy() for k, v in det.items()})
            truth = truth.detach().float().cpu().numpy()
            self.truths.append(truth[truth[:, 0] != -1])  # -1: padding

    def merge(self, other: "DetectionMeter") -> None:
        self.predictions += other.predictions
        self.truths += other.truths

    def compute(self) -> dict[str, float]:
        return coco_metrics(self.predictions, self.truths, self.class_names)


def coco_metrics(predictions: list[dict[str, np.ndarray]], truths: list[np.ndarray],
                 class_names: list[str]) -> dict[str, float]:
    """The figures above for detections and truth boxes of a split, class ``k`` named
    ``class_names[k]``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for image_id, (pred, truth) in enumerate(zip(predictions, truths, strict=True)):
        images.append({"id": image_id})
        for label, x1, y1, x2, y2 in truth:
            crowd = label <= -2
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(-2 - label if crowd else label),
                                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                                "area": float((x2 - x1) * (y2 - y1)), "iscrowd": int(crowd)})
        for (x1, y1, x2, y2), score, label in zip(pred["boxes"], pred["scores"], pred["labels"]):
            results.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]})
    present = {a["category_id"] for a in annotations if not a["iscrowd"]}
    if not present:  # nothing to find: AP is undefined
        return dict.fromkeys(detection_metric_names(class_names), float("nan"))
    if not results:  # every class with a box scores 0
        out = dict.fromkeys(_STATS, 0.0)
        for family in DETECTION_PER_CLASS:
            out |= {f"{family}_{name}": 0.0 if k in present else float("nan") for k, name in enumerate(class_names)}
        return out
    truth_api = COCO()
    truth_api.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": c} for c in range(len(class_names))]}
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress and a summary table
        truth_api.createIndex()
        evaluation = COCOeval(truth_api, truth_api.loadRes(results), "bbox")
        # Every figure read here is over all box sizes: skipping COCO's small / medium / large
        # ranges leaves them unchanged and halves the time.
        evaluation.params.areaRng, evaluation.params.areaRngLbl = evaluation.params.areaRng[:1], ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    # COCOeval reports -1 where a figure has nothing to average (no box of that size): NaN here.
    out = {name: float(stats[i]) if stats[i] >= 0 else float("nan") for name, i in _STATS.items()}
    return out | _per_class_ap(evaluation, class_names)


def _per_class_ap(evaluation, class_names: list[str]) -> dict[str, float]:
    """AP (IoU 0.50:0.95) and AP50 per class from COCOeval's precision array [IoU thresholds,
    recall points, classes, area ranges, max detections], over all areas at 100 detections,
    with -1 (nothing to score) left out as COCOeval's summary leaves it out."""
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    out = {}
    for k, name in enumerate(class_names):
        for family, rows in (("ap", precision[:, :, k]), ("ap50", precision[:1, :, k])):
            scored = rows[rows > -1]
            out[f"{family}_{name}"] = float(scored.mean()) if scored.size else float("nan")
    return out
