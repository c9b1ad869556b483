"""Segmentation metrics, accumulated batch by batch.

- Dice and IoU per class: per image ``2TP / (2TP + FP + FN)`` and ``TP / (TP + FP + FN)``, then
  the mean over images; an image where the class is absent from both truth and prediction is
  left out for that class. ``dice`` / ``iou`` are the mean over the foreground classes (every
  class but class 0, the background); ``dice_<class>`` includes the background's own entry.
- ``pixel_accuracy``: correct pixels / all counted pixels of the split.
- Binary tasks (two classes) add, over all counted pixels of the split: ``sensitivity``,
  ``specificity``, ``f1`` (the global Dice of the foreground, the DRIVE convention) and
  pixel-level ``auc`` (exact: every counted pixel's foreground probability is kept, 4 bytes a
  pixel, and ranked as scikit-learn ranks them, ties counting one half).
- ``hd95_<class>`` for each foreground class: the 95th-percentile symmetric Hausdorff distance
  in pixels (in the unit of ``pixel_spacing`` when given: the size of a pixel, rows and
  columns) between the edges of the class's predicted and true regions (``hausdorff95``), mean over the images where
  both hold the class, given where there are several foreground classes; ``hd95`` is the
  mean over the foreground classes (for two classes, the foreground's own).
- ``missed``: the share of images holding a foreground class (counted per class) in which the
  prediction holds none of it, the images HD95 cannot score; ``missed_<class>`` per class where
  there are several foreground classes.
Pixels labelled 255 are ignored everywhere."""

from __future__ import annotations

import math

import numpy as np
import torch

from .metrics import SEGMENTATION_PER_CLASS, per_class_names
from .spatial import align_to

IGNORE = 255
RESAMPLE_BINS = 16384  # quantile bins of the scores a bootstrap counts pixel pairs over (ResampledPixelAUC)


def segmentation_metric_names(class_names: list[str], hd95: bool) -> tuple[str, ...]:
    names = ["dice", "iou", "pixel_accuracy", *per_class_names(SEGMENTATION_PER_CLASS, class_names)]
    if len(class_names) == 2:
        names += ["f1", "sensitivity", "specificity", "auc"]
    if hd95:  # per class where there are several foreground classes (with one, hd95 is its own)
        names += ["hd95", *(per_class_names(("hd95",), class_names[1:]) if len(class_names) > 2 else ())]
    names += ["missed", *(per_class_names(("missed",), class_names[1:]) if len(class_names) > 2 else ())]
    return tuple(names)


class SegmentationMeter:
    def __init__(self, class_names: list[str], hd95: bool = True, pixel_spacing: list[float] | None = None):
        self.class_names = class_names
        self.k = len(class_names)
        self.hd95 = hd95
        self.pixel_spacing = pixel_spacing
        self.dice: list[list[float]] = [[] for _ in range(self.k)]
        self.iou: list[list[float]] = [[] for _ in range(self.k)]
        self.confusion = torch.zeros(self.k, self.k, dtype=torch.long)
        self.hd: list[list[float]] = [[] for _ in range(self.k)]  # per class (background's stays empty)
        # per class, the images whose truth holds it, and of those the ones whose prediction holds none of it
        self.present, self.missed = [0] * self.k, [0] * self.k
        # the foreground probability of every counted pixel, by truth: an array per update
        self.positive_scores: list[np.ndarray] = []
        self.negative_scores: list[np.ndarray] = []
        self.non_finite = False  # a NaN labelled pixel is called background: no figure of such scores is a number

    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        probs = align_to(probs, targets.shape[-2:]).float()
        pred = predicted_classes(probs)
        valid = targets != IGNORE
        # (ignored pixels, outside a field of view, count nowhere: a NaN there is no figure's)
        self.non_finite |= not bool(torch.isfinite(probs).all(dim=1)[valid].all())
        for i in range(pred.shape[0]):
            self._image(pred[i], targets[i], valid[i])
        t, p = targets[valid], pred[valid]
        self.confusion += torch.bincount(t * self.k + p, minlength=self.k * self.k).view(self.k, self.k).cpu()
        if self.k == 2:
            scores = probs[:, 1][valid]
            self.positive_scores.append(scores[t == 1].cpu().numpy())
            self.negative_scores.append(scores[t == 0].cpu().numpy())
        if self.hd95:
            self._hausdorff(pred, targets, valid)

    def merge(self, other: "SegmentationMeter") -> None:
        """Add another meter's images and pixels (another process's share of the split)."""
        for c in range(self.k):
            self.dice[c] += other.dice[c]
            self.iou[c] += other.iou[c]
        self.confusion += other.confusion
        for c in range(self.k):
            self.hd[c] += other.hd[c]
            self.present[c] += other.present[c]
            self.missed[c] += other.missed[c]
        self.positive_scores += other.positive_scores
        self.negative_scores += other.negative_scores
        self.non_finite |= other.non_finite

    def _image(self, pred: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor) -> None:
        for c in range(self.k):
            p, t = (pred == c) & valid, (truth == c) & valid
            tp = int((p & t).sum())
            fp, fn = int(p.sum()) - tp, int(t.sum()) - tp
            if tp + fn:
                self.present[c] += 1
                self.missed[c] += tp + fp == 0
            if tp + fp + fn == 0:
                continue
            self.dice[c].append(2 * tp / (2 * tp + fp + fn))
            self.iou[c].append(tp / (tp + fp + fn))

    def _hausdorff(self, pred: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor) -> None:
        pred, truth, valid = pred.cpu().numpy(), truth.cpu().numpy(), valid.cpu().numpy()
        for c in range(1, self.k):
            for p, t in zip((pred == c) & valid, (truth == c) & valid):
                if p.any() and t.any():  # a distance to an empty region is undefined
                    self.hd[c].append(hausdorff95(p, t, self.pixel_spacing))

    def compute(self, auc: bool = True) -> dict[str, float]:
        """Every figure; ``auc=False`` leaves the pixel AUC out (a bootstrap resample gets it
        from ``ResampledPixelAUC`` instead, without ranking the pixels again)."""
        def mean(values):
            return float(np.mean(values)) if values else float("nan")

        dice = [mean(v) for v in self.dice]
        iou = [mean(v) for v in self.iou]
        fg = [d for d in dice[1:] if not math.isnan(d)]
        fg_iou = [d for d in iou[1:] if not math.isnan(d)]
        cm = self.confusion.double()
        out = {
            "dice": mean(fg),
            "iou": mean(fg_iou),
            "pixel_accuracy": float(cm.diag().sum() / cm.sum()) if cm.sum() > 0 else float("nan"),  # none counted
        }
        out.update({f"dice_{n}": d for n, d in zip(self.class_names, dice)})
        out.update({f"iou_{n}": d for n, d in zip(self.class_names, iou)})
        if self.k == 2:
            tn, fp, fn, tp = cm[0, 0], cm[0, 1], cm[1, 0], cm[1, 1]
            out["f1"] = float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) > 0 else float("nan")
            out["sensitivity"] = float(tp / (tp + fn)) if (tp + fn) > 0 else float("nan")
            out["specificity"] = float(tn / (tn + fp)) if (tn + fp) > 0 else float("nan")
            if auc:
                out["auc"] = pixel_auc(_joined(self.positive_scores), _joined(self.negative_scores))
        if self.hd95:
            per_class = {n: mean(v) for n, v in zip(self.class_names[1:], self.hd[1:])}
            out["hd95"] = mean([d for d in per_class.values() if not math.isnan(d)])
            if self.k > 2:  # with one foreground class, hd95 is its own
                out.update({f"hd95_{n}": d for n, d in per_class.items()})
        present, missed = sum(self.present[1:]), sum(self.missed[1:])
        out["missed"] = missed / present if present else float("nan")
        if self.k > 2:
            out.update({f"missed_{n}": m / n_images if n_images else float("nan")
                        for n, m, n_images in zip(self.class_names[1:], self.missed[1:], self.present[1:])})
        return {key: float("nan") for key in out} if self.non_finite else out


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def pixel_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a foreground pixel > score of a background pixel), ties counting 1/2 (the
    Mann-Whitney statistic, scikit-learn's ROC AUC); NaN without both kinds of pixel. Both are
    sorted: searching sorted queries is 20x faster than searching shuffled ones."""
    if not len(positive) or not len(negative):
        return float("nan")
    positive, negative = np.sort(positive), np.sort(negative)
    below = np.searchsorted(negative, positive, side="left").sum(dtype=np.float64)
    up_to = np.searchsorted(negative, positive, side="right").sum(dtype=np.float64)
    return float(below + up_to) / 2 / (len(positive) * len(negative))


class ResampledPixelAUC:
    """The pixel AUC of any resample of images without ranking its pixels again: the pairs
    between every two images' pixels are counted once, and a resample drawing image i c_i times
    holds sum_ij c_i c_j pairs_ij over (sum_i c_i pos_i)(sum_j c_j neg_j) pairs. The pairs are
    counted over ``bins`` quantile bins of the split's scores, as one product of the images'
    histograms (counting them pixel by pixel grew with the square of the images: minutes for a
    few hundred); scores sharing a bin count as tied, so a resample's AUC is within about
    1 / ``bins`` of its exact value. Exact where the split holds at most ``bins`` distinct
    scores (each is a bin); a score many pixels share (a background at one probability, where
    quantile edges pile up) has a bin of its own, not merged with the rare scores beside it."""

    def __init__(self, meters: list[SegmentationMeter], bins: int = RESAMPLE_BINS):
        positive = [_joined(m.positive_scores) for m in meters]
        negative = [_joined(m.negative_scores) for m in meters]
        edges = self._edges(np.concatenate(positive + negative), bins)
        width = len(edges) + 1

        def histograms(parts: list[np.ndarray]) -> np.ndarray:
            return np.stack([np.bincount(np.searchsorted(edges, p, side="right"), minlength=width) for p in parts]
                            ).astype(np.float64)

        pos, neg = histograms(positive), histograms(negative)
        below = np.cumsum(neg, axis=1) - neg  # each image's negatives in lower bins
        self.pairs = pos @ below.T + 0.5 * pos @ neg.T
        self.positives, self.negatives = pos.sum(axis=1), neg.sum(axis=1)

    @staticmethod
    def _edges(pooled: np.ndarray, bins: int) -> np.ndarray:
        """Bin edges (a score's bin: the edges at or below it): every distinct score where there
        are few; else quantile edges, each also closed just above itself, so that a tied mass at
        an edge is a bin alone. One sort serves both (np.unique then np.quantile sorted and
        partitioned the scores again: the bootstrap's slowest part on a whole split)."""
        ordered = np.sort(pooled)
        starts = np.empty(len(ordered), dtype=bool)
        starts[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
        if np.count_nonzero(starts) <= bins:
            return ordered[starts]
        # np.quantile's default (linear) rule, read off the sorted scores
        where = np.linspace(0, 1, bins + 1)[1:-1] * (len(ordered) - 1)
        below = np.floor(where).astype(np.int64)
        low = ordered[below].astype(np.float64)
        high = ordered[np.minimum(below + 1, len(ordered) - 1)].astype(np.float64)
        edges = (low + (where - below) * (high - low)).astype(pooled.dtype)
        return np.unique(np.concatenate([edges, np.nextafter(edges, np.inf)]))

    def __call__(self, drawn: np.ndarray) -> float:
        counts = np.bincount(drawn, minlength=len(self.positives)).astype(np.float64)
        total = (counts @ self.positives) * (counts @ self.negatives)
        return float(counts @ self.pairs @ counts / total) if total else float("nan")


def predicted_classes(probs: torch.Tensor) -> torch.Tensor:
    """``probs.argmax(dim=1)``; for two classes one comparison, which on a CPU is a hundred times
    faster than argmax over a [B, 2, H, W] map (whole DRIVE images), with the same answer for
    finite probabilities (a tie goes to class 0 either way; non-finite outputs stop evaluation
    before any metric)."""
    if probs.shape[1] == 2:
        return (probs[:, 1] > probs[:, 0]).long()
    return probs.argmax(dim=1)


# Two ways to the nearest edge pixels, the same exact Euclidean distances: a k-d tree over the
# edge pixels costs per edge pixel (about 1 us, more where the nearest is far), a distance
# transform of the box per pixel of the box (0.1-0.2 us), however few its edges. Measured
# (benchmarks/hd95_methods.py) they are even at edge pixels a tenth to a fifth of the box, so the
# transform above a tenth (noisy predictions 1.5-2x, checkerboards 8x faster than the tree), the
# tree below (a few regions in a big box: 5x faster). The rule misjudges holes scattered in a
# large region (their edges all nearly as near to its edge: the tree up to ~6x slower), as a
# lower share would sparse noise (the transform 3-5x slower).
EDT_FROM_EDGE_SHARE = 0.1


def hausdorff95(pred: np.ndarray, truth: np.ndarray, spacing: list[float] | None = None) -> float:
    """The 95th-percentile symmetric Hausdorff distance between the edges of two non-empty 2-D
    boolean masks: for each edge pixel of one, the distance to the nearest edge pixel of the
    other; the larger of the two directions' 95th percentiles (linear interpolation). Edges are
    the pixels an erosion by a cross removes, outside the image counting as background;
    distances in pixels, or in the unit of ``spacing`` (rows, columns). MONAI's
    compute_hausdorff_distance defines it the same way and finds the nearest pixels with a
    k-d tree; this does too, or with a distance transform where edge pixels are dense (the
    same distances, faster there: ``EDT_FROM_EDGE_SHARE``), and skips MONAI's per-image
    conversions (several times faster on small images) and its three-second import."""
    from scipy.ndimage import binary_erosion

    # Outside the box holding both regions every pixel is background in both: erosion there
    # finds the same edges, on less.
    rows, cols = np.flatnonzero((pred | truth).any(axis=1)), np.flatnonzero((pred | truth).any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    pred, truth = pred[box], truth[box]
    scale = np.asarray(spacing if spacing is not None else (1.0, 1.0), dtype=np.float64)
    pred_edge, truth_edge = pred & ~binary_erosion(pred), truth & ~binary_erosion(truth)
    dense = np.count_nonzero(pred_edge) + np.count_nonzero(truth_edge) > EDT_FROM_EDGE_SHARE * pred.size
    to_truth, to_pred = (_nearest_by_transform if dense else _nearest_by_tree)(pred_edge, truth_edge, scale)
    return float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95)))


def _nearest_by_tree(pred_edge: np.ndarray, truth_edge: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each edge pixel's distance to the other mask's nearest one (predicted, then true), by
    k-d trees over the edge pixels' scaled coordinates."""
    from scipy.spatial import cKDTree

    pred_points, truth_points = np.argwhere(pred_edge) * scale, np.argwhere(truth_edge) * scale
    return cKDTree(truth_points).query(pred_points)[0], cKDTree(pred_points).query(truth_points)[0]


def _nearest_by_transform(pred_edge: np.ndarray, truth_edge: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, ...]:
    """What ``_nearest_by_tree`` gives, read off Euclidean distance transforms of the box."""
    from scipy.ndimage import distance_transform_edt

    return (distance_transform_edt(~truth_edge, sampling=scale)[pred_edge],
            distance_transform_edt(~pred_edge, sampling=scale)[truth_edge])
