"""Points, box encodings, IoUs, NMS and decoding for the anchor-free detector.

Box coordinates are pixels of the input image, ``xyxy``. A detector's output is [B, A, channels]:
for each of the A points (all pyramid levels, see ``anchor_points``) the class logits then the
box-edge logits, edges in the order left, top, right, bottom, each a distribution over the
``reg_max + 1`` bins 0..reg_max (General Focal Loss, Li et al. 2020): the edge's distance from the
point, in units of the point's stride, is the distribution's expectation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class HeadLayout:
    """What teacher and students of a detection cohort share: their outputs are comparable
    location by location only when these match."""

    num_classes: int
    reg_max: int = 8
    strides: tuple[int, ...] = (8, 16, 32)

    @property
    def channels(self) -> int:
        return self.num_classes + 4 * (self.reg_max + 1)


def level_sizes(height: int, width: int, strides) -> list[tuple[int, int]]:
    """(rows, cols) of each level: ceil(H / s) x ceil(W / s), what stride-2 convs with padding give."""
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]


def anchor_points(height: int, width: int, strides, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres ``((j + 0.5) s, (i + 0.5) s)`` of every cell of every level ([A, 2], xy) and their
    strides ([A]); levels in ``strides`` order, row-major within a level."""
    points, point_strides = [], []
    for s, (rows, cols) in zip(strides, level_sizes(height, width, strides)):
        ys = (torch.arange(rows, device=device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(cols, device=device, dtype=torch.float32) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
        point_strides.append(torch.full((rows * cols,), float(s), device=device))
    return torch.cat(points), torch.cat(point_strides)


def output_points(out: torch.Tensor, layout: HeadLayout,
                  image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``anchor_points`` of an output [B, A, channels] for images of ``image_size`` (h, w), checked
    to be as many as its A rows."""
    h, w = image_size
    points, strides = anchor_points(h, w, layout.strides, out.device)
    if points.shape[0] != out.shape[1]:
        raise ValueError(f"output has {out.shape[1]} points; an image of {h}x{w} with strides {layout.strides} "
                         f"has {points.shape[0]}")
    return points, strides


def split_outputs(out: torch.Tensor, layout: HeadLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, A, channels] -> class logits [B, A, C] and edge logits [B, A, 4, reg_max + 1]."""
    if out.shape[-1] != layout.channels:
        raise ValueError(f"detector output has {out.shape[-1]} channels, the layout {layout} needs {layout.channels}")
    c = layout.num_classes
    return out[..., :c], out[..., c:].unflatten(-1, (4, layout.reg_max + 1))


def distances_from_distribution(reg_logits: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Expected bin ``sum_k k softmax(logits)_k`` of each edge: [..., 4, reg_max + 1] -> [..., 4],
    in stride units."""
    bins = torch.arange(reg_max + 1, device=reg_logits.device, dtype=torch.float32)
    return (reg_logits.float().softmax(dim=-1) * bins).sum(dim=-1)


def ltrb_to_boxes(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Distances (left, top, right, bottom) in pixels from points (xy) -> xyxy boxes (broadcasts)."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack([x - ltrb[..., 0], y - ltrb[..., 1], x + ltrb[..., 2], y + ltrb[..., 3]], dim=-1)


def boxes_to_ltrb(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The inverse of ``ltrb_to_boxes``; a distance is negative where the point is outside the box."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack([x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


_EPS = 1e-7  # keeps degenerate (zero-area) boxes from dividing by zero


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of a [N, 4] with every box of b [M, 4]: [N, M]."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(dim=-1)
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter).clamp_min(_EPS)


def iou_and_giou_pairwise(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalized IoU (Rezatofighi et al. 2019: ``IoU - (|C| - |A u B|) / |C|``, C the
    smallest enclosing box) of a[i] with b[i]: two [N] tensors."""
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp_min(0).prod(dim=-1)
    union = (box_area(a) + box_area(b) - inter).clamp_min(_EPS)
    iou = inter / union
    enclosing = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp_min(0).prod(dim=-1)
    enclosing = enclosing.clamp_min(_EPS)
    return iou, iou - (enclosing - union) / enclosing


def generalized_box_iou_pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of a[i] with b[i] ([N, 4] each) -> [N], in [-1, 1]."""
    return iou_and_giou_pairwise(a, b)[1]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float,
                max_keep: int | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression within each class: visit boxes by decreasing score, keep one
    unless a kept box of the same label overlaps it with IoU > iou_threshold. Returns the kept
    indices into ``boxes``, by decreasing score (the ``max_keep`` first)."""
    order = scores.argsort(descending=True, stable=True)
    if order.numel() == 0:
        return order
    b, lab = boxes[order].float(), labels[order]
    # suppresses[i, j]: box i, if kept, removes box j (same class, overlapping enough)
    suppresses = ((box_iou(b, b) > iou_threshold) & (lab[:, None] == lab[None, :])).cpu().numpy()
    # The loop runs once per kept box (not per candidate): the best box still standing is kept and
    # takes out what it suppresses (it leaves itself: a zero-area box does not suppress itself).
    standing, keep = np.arange(len(order)), []
    while standing.size and (max_keep is None or len(keep) < max_keep):
        best, rest = standing[0], standing[1:]
        keep.append(best)
        standing = rest[~suppresses[best, rest]]
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def decode(out: torch.Tensor, layout: HeadLayout, image_size: tuple[int, int], score_threshold: float = 0.05,
           iou_threshold: float = 0.6, max_detections: int = 100,
           pre_nms_top_k: int = 1000) -> list[dict[str, torch.Tensor]]:
    """Detections of each image: ``{"boxes": [n, 4] xyxy clipped to the image, "scores": [n],
    "labels": [n] long}``. Every (point, class) pair whose sigmoid score exceeds the threshold is a
    candidate (so a point may give boxes of several classes); the ``pre_nms_top_k`` best go
    through per-class NMS, and the ``max_detections`` best survivors are returned."""
    h, w = image_size
    cls_logits, reg_logits = split_outputs(out.detach(), layout)
    points, strides = output_points(out, layout, image_size)
    boxes = ltrb_to_boxes(points, distances_from_distribution(reg_logits, layout.reg_max) * strides[:, None])
    scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    boxes = torch.minimum(boxes.clamp_min(0), scale)
    scores = cls_logits.float().sigmoid()
    c = layout.num_classes
    results = []
    for image_boxes, image_scores in zip(boxes, scores):
        flat = image_scores.reshape(-1)  # index = point * C + class
        candidates = (flat > score_threshold).nonzero().squeeze(1)
        cand_scores = flat[candidates]
        if candidates.numel() > pre_nms_top_k:
            cand_scores, top = cand_scores.topk(pre_nms_top_k)
            candidates = candidates[top]
        point, label = candidates // c, candidates % c
        kept = batched_nms(image_boxes[point], cand_scores, label, iou_threshold, max_detections)
        results.append({"boxes": image_boxes[point[kept]], "scores": cand_scores[kept], "labels": label[kept]})
    return results
