"""Detection metrics from pycocotools' COCOeval (the reference implementation, not a rewrite).

- ``ap``: COCO AP, the mean over IoU thresholds 0.50:0.05:0.95 and over classes;
  ``ap50`` / ``ap75`` at IoU 0.50 / 0.75.
- ``ar1`` / ``ar10`` / ``ar100``: COCO average recall with at most 1 / 10 / 100 detections
  per image.

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

DETECTION_METRICS = ("ap", "ap50", "ap75", "ar1", "ar10", "ar100")
# Positions of the figures in COCOeval.stats.
_STATS = {"ap": 0, "ap50": 1, "ap75": 2, "ar1": 6, "ar10": 7, "ar100": 8}


class DetectionMeter:
    def __init__(self, num_classes: int):
        self.num_classes = num_classes
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
        return coco_metrics(self.predictions, self.truths, self.num_classes)


def coco_metrics(predictions: list[dict[str, np.ndarray]], truths: list[np.ndarray],
                 num_classes: int) -> dict[str, float]:
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
    if not any(not a["iscrowd"] for a in annotations):
        return {name: float("nan") for name in _STATS}  # nothing to find: AP is undefined
    if not results:
        return {name: 0.0 for name in _STATS}
    truth_api = COCO()
    truth_api.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": c} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress and a summary table
        truth_api.createIndex()
        evaluation = COCOeval(truth_api, truth_api.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    # COCOeval reports -1 where a figure has nothing to average (no box of that size): NaN here.
    return {name: float(stats[i]) if stats[i] >= 0 else float("nan") for name, i in _STATS.items()}
