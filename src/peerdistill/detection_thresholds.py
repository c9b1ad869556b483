"""What a detector does at a score threshold: the boxes it keeps per frame, their precision and
the truths' recall at IoU 0.5, for choosing the threshold a deployment runs at.

AP summarises every threshold at once; a deployed detector runs at one (``detect.score_threshold``,
0.05 by default: about 20 boxes a frame on Kvasir-SEG, review 47a). Chosen on the validation
split, a threshold is then checked on the test split. Matching is COCO's at one IoU: boxes in
order of score, each taking the unmatched truth of its class it overlaps most, at IoU 0.5 or
more (a true positive), else a false positive; a box on a crowd region (covering at least half
the box) counts as neither; truths left unmatched are missed. Classes are pooled."""

from __future__ import annotations

import numpy as np
import torch

from .detection.boxes import box_iou
from .errors import ConfigError
from .option_names import option

MATCH_IOU = 0.5
DEFAULT_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FIGURES = ("boxes_per_frame", "precision", "recall", "f1")


def check_thresholds(thresholds, decoded_from: float) -> tuple[float, ...]:
    """Scores in (0, 1], none below the score the boxes were decoded from (boxes under it were
    not kept, so a lower threshold cannot be judged), sorted, once each; none given: the default
    ones from that score up, with it."""
    if isinstance(thresholds, (int, float)):
        thresholds = (thresholds,)
    values = tuple(float(t) for t in thresholds)
    if not values:
        return tuple(sorted({decoded_from, *(t for t in DEFAULT_THRESHOLDS if t >= decoded_from)}))
    if any(not 0 < t <= 1 for t in values):
        raise ConfigError(f"{option('--score-thresholds', ','.join(map(str, thresholds)))}: give scores between 0 and "
                          "1, e.g. 0.1,0.3,0.5")
    below = [t for t in values if t < decoded_from]
    if below:
        raise ConfigError(f"{option('--score-thresholds')} {below[0]:g} is below the score the boxes are decoded from "
                          f"(detect.score_threshold={decoded_from:g}): boxes under it are not kept; give "
                          f"detect.score_threshold={min(values):g} too, to keep them")
    return tuple(sorted(set(values)))


def figures_at_thresholds(predictions: list[dict[str, np.ndarray]], truths: list[np.ndarray],
                          thresholds: tuple[float, ...]) -> dict[str, float]:
    """``at{T}_boxes_per_frame``, ``at{T}_precision``, ``at{T}_recall``, ``at{T}_f1`` for each
    threshold T (``DetectionMeter``'s predictions and truths of a split); NaN where undefined
    (a precision with no box kept, a recall with no truth). Each frame is matched once: boxes are
    taken in order of score, so the boxes scoring T or more are the first ones taken, and their
    outcomes are those they met in the one pass."""
    matched = [_outcomes(pred, truth) for pred, truth in zip(predictions, truths, strict=True)]
    truth_count = sum(int((truth[:, 0] > -2).sum()) for truth in truths)  # (crowd regions are no truths)
    out = {}
    for t in thresholds:
        hits = sum(int(((scores >= t) & (outcome == HIT)).sum()) for scores, outcome in matched)
        false = sum(int(((scores >= t) & (outcome == FALSE)).sum()) for scores, outcome in matched)
        missed = truth_count - hits
        kept = sum(int((pred["scores"] >= t).sum()) for pred in predictions)  # (boxes on crowd regions too)
        nan = float("nan")
        out |= {f"at{t:g}_boxes_per_frame": kept / len(predictions) if predictions else nan,
                f"at{t:g}_precision": hits / (hits + false) if hits + false else nan,
                f"at{t:g}_recall": hits / (hits + missed) if hits + missed else nan,
                # (the harmonic mean of the two, 0 where nothing matched)
                f"at{t:g}_f1": 2 * hits / (2 * hits + false + missed) if hits + false + missed else nan}
    return out


HIT, FALSE, ON_CROWD = 1, 0, -1  # what a box met in the matching


def _outcomes(pred: dict[str, np.ndarray], truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of a frame's boxes' score and outcome in COCO's greedy matching at IoU 0.5: a hit, a
    false positive, or neither (on a crowd region)."""
    boxes, scores, labels = pred["boxes"], pred["scores"], pred["labels"]
    crowd = truth[truth[:, 0] <= -2]
    real = truth[truth[:, 0] > -2]
    overlaps = box_iou(torch.from_numpy(boxes).float(), torch.from_numpy(real[:, 1:]).float()).numpy()
    taken = np.zeros(len(real), bool)
    outcome = np.full(len(scores), FALSE)
    for i in np.argsort(-scores, kind="stable"):
        free = np.where((real[:, 0] == labels[i]) & ~taken, overlaps[i], -1.0)
        best = len(free) - 1 - int(np.argmax(free[::-1])) if len(free) else -1  # ties: the last, as COCO takes
        if best >= 0 and free[best] >= MATCH_IOU:
            taken[best] = True
            outcome[i] = HIT
        elif _on_crowd(boxes[i], labels[i], crowd):
            outcome[i] = ON_CROWD
    return scores, outcome


def _on_crowd(box: np.ndarray, label: float, crowd: np.ndarray) -> bool:
    """Whether at least half the box lies on a crowd region of its class (COCO's crowd overlap
    is the intersection over the box's own area)."""
    regions = crowd[(-2 - crowd[:, 0]) == label][:, 1:]
    area = (box[2] - box[0]) * (box[3] - box[1])
    if not len(regions) or area <= 0:
        return False
    width = np.clip(np.minimum(box[2], regions[:, 2]) - np.maximum(box[0], regions[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], regions[:, 3]) - np.maximum(box[1], regions[:, 1]), 0, None)
    return bool(((width * height) / area >= MATCH_IOU).any())
