"""Detection losses on [B, A, channels] outputs (``peerdistill.detection.boxes`` describes the layout):
the supervised loss of Generalized Focal Loss (Li et al., NeurIPS 2020) and two distillation terms,
of the classification maps and of the box-edge distributions (Localization Distillation, Zheng et
al., CVPR 2022)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..detection.assign import assign
from ..detection.boxes import (HeadLayout, boxes_to_ltrb, distances_from_distribution, iou_and_giou_pairwise,
                               ltrb_to_boxes, output_points, split_outputs)
from .logits import checked_temperature

# GFL's weights of its three terms (cls 1, GIoU 2, DFL 0.25); detection_loss returns them unweighted.
GFL_WEIGHTS = {"cls": 1.0, "box": 2.0, "dfl": 0.25}


def quality_focal_loss(logits: torch.Tensor, target: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Element-wise ``BCE(sigmoid(x), y) * |y - sigmoid(x)|^beta`` (GFL's QFL; y a soft target in [0, 1])."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return bce * (logits.sigmoid() - target).abs().pow(beta)


def distribution_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-((y_r - y) log S_l + (y - y_l) log S_r)`` with ``y_l = floor(y)``, ``y_r = y_l + 1`` and S the
    softmax over the last axis (bins 0..reg_max); y in [0, reg_max) -> one value per distribution."""
    log_p = logits.log_softmax(dim=-1)
    left = target.floor().long()
    w_left = left + 1 - target
    log_left = log_p.gather(-1, left[..., None]).squeeze(-1)
    log_right = log_p.gather(-1, (left + 1)[..., None]).squeeze(-1)
    return -(w_left * log_left + (1 - w_left) * log_right)


class Assignment(NamedTuple):
    points: torch.Tensor   # [A, 2] anchor points (x, y) in pixels
    strides: torch.Tensor  # [A]
    labels: torch.Tensor   # [B, A] class per point, ``num_classes`` = background
    boxes: torch.Tensor    # [B, A, 4] the box each point learns (zeros at background)

    def positives(self, num_classes: int) -> torch.Tensor:
        """[B, A] booleans: the points given a true box."""
        return self.labels < num_classes


def assignment(out: torch.Tensor, targets: torch.Tensor, layout: HeadLayout,
               image_size: tuple[int, int]) -> Assignment:
    """The output's anchor points and strides, and ``assign``'s labels and boxes for them."""
    points, strides = output_points(out, layout, image_size)
    labels, boxes = assign(points, strides, targets.to(out.device), layout)
    return Assignment(points, strides, labels, boxes)


def detection_loss(out: torch.Tensor, targets: torch.Tensor, layout: HeadLayout,
                   image_size: tuple[int, int], assigned: Assignment | None = None) -> dict[str, torch.Tensor]:
    """GFL's supervised loss, three unweighted terms (see ``GFL_WEIGHTS``). Positives P come from
    ``assign``; for a positive i with predicted box p_i (decoded from its edge distributions) and
    target box g_i, the quality target is ``q_i = IoU(p_i, g_i)`` (detached), and N = max(|P|, 1).

    - ``cls = 1/N * sum over all points and classes QFL(x, y)``, y = q_i at (i, label of i), 0 elsewhere;
    - ``box = sum_i q_i (1 - GIoU(p_i, g_i)) / max(sum_i q_i, eps)``;
    - ``dfl = sum_i q_i * mean_edges DFL(edge logits, d) / max(sum_i q_i, eps)``, d the target
      distances from the point in stride units, clamped to [0, reg_max - 0.01].

    Weighting the box terms by the IoU target follows VarifocalNet (Zhang et al., CVPR 2021); GFL
    uses the predicted score instead. With no positives, box and dfl are zeros (still in the graph).
    ``assigned``: ``assignment(out, targets, ...)`` when the caller already has it."""
    cls_logits, reg_logits = split_outputs(out.float(), layout)
    assigned = assigned or assignment(out, targets, layout, image_size)
    points, strides, labels, gt_boxes = assigned
    positive = assigned.positives(layout.num_classes)
    batch_index, point_index = positive.nonzero(as_tuple=True)
    pos_points, pos_strides, pos_gt = points[point_index], strides[point_index, None], gt_boxes[positive]

    pos_reg = reg_logits[positive]  # [P, 4, reg_max + 1]
    pred_boxes = ltrb_to_boxes(pos_points, distances_from_distribution(pos_reg, layout.reg_max) * pos_strides)
    iou, giou = iou_and_giou_pairwise(pred_boxes, pos_gt)
    quality = iou.detach().clamp(0, 1)

    score_target = torch.zeros_like(cls_logits)
    score_target[batch_index, point_index, labels[positive]] = quality
    cls = quality_focal_loss(cls_logits, score_target).sum() / max(int(positive.sum()), 1)

    weight_sum = quality.sum().clamp_min(1e-6)
    box = (quality * (1 - giou)).sum() / weight_sum
    distances = (boxes_to_ltrb(pos_points, pos_gt) / pos_strides).clamp(0, layout.reg_max - 0.01)
    dfl = (quality * distribution_focal_loss(pos_reg, distances).mean(dim=-1)).sum() / weight_sum
    return {"cls": cls, "box": box, "dfl": dfl}


def _check_shapes(student_out: torch.Tensor, teacher_out: torch.Tensor, layout: HeadLayout, name: str) -> None:
    if student_out.shape != teacher_out.shape or student_out.shape[-1] != layout.channels:
        raise ValueError(f"{name}: student {tuple(student_out.shape)} and teacher {tuple(teacher_out.shape)} outputs "
                         f"must have the same shape [B, A, {layout.channels}] (same head layout and image size)")


def classification_map_kd(student_out: torch.Tensor, teacher_out: torch.Tensor, layout: HeadLayout,
                          temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * 1/(B A) * sum_{b, a} sum_c BCE(sigmoid(s_bac / T), sigmoid(t_bac / T))``: each class
    score of each point softened as a binary distribution; summed over classes, averaged over the
    B*A points. The teacher is detached. Not a divergence: with student == teacher it equals the
    teacher's binary entropy ``T^2 mean_{b,a} sum_c H(sigmoid(t / T))``, its minimum over the
    student, so only its gradient ``T * (sigmoid(s/T) - sigmoid(t/T)) / (B A)`` matters."""
    _check_shapes(student_out, teacher_out, layout, "classification_map_kd")
    t = checked_temperature(temperature, "classification_map_kd")
    c = layout.num_classes
    soft = (teacher_out[..., :c].detach().float() / t).sigmoid()
    bce = F.binary_cross_entropy_with_logits(student_out[..., :c].float() / t, soft, reduction="none")
    return bce.sum(dim=-1).mean() * (t * t)


def localization_kd(student_out: torch.Tensor, teacher_out: torch.Tensor, layout: HeadLayout,
                    temperature: float = 1.0, region: torch.Tensor | None = None) -> torch.Tensor:
    """Localization Distillation: ``T^2 * sum_{b,a} w_ba * 1/4 sum_edges KL(softmax(t_e / T) ||
    softmax(s_e / T)) / max(sum_{b,a} w_ba, 1e-6)``, the KL over the reg_max + 1 bins of each edge,
    averaged over the 4 edges (as LD's implementation), ``w_ba = max_c sigmoid(teacher class logit)``
    so the points the teacher finds an object at weigh most. ``region`` ([B, A] booleans), when
    given, zeroes ``w`` outside it: LD's "main distillation region" is the points assigned to a
    true box, the only ones whose box output is trained. The teacher is detached."""
    _check_shapes(student_out, teacher_out, layout, "localization_kd")
    t = checked_temperature(temperature, "localization_kd")
    _, s_reg = split_outputs(student_out.float(), layout)
    t_cls, t_reg = split_outputs(teacher_out.detach().float(), layout)
    log_q = (t_reg / t).log_softmax(dim=-1)
    kl = (log_q.exp() * (log_q - (s_reg / t).log_softmax(dim=-1))).sum(dim=-1).mean(dim=-1)  # [B, A]
    weight = t_cls.sigmoid().max(dim=-1).values
    if region is not None:
        weight = weight * region.to(weight.dtype)
    return (weight * kl).sum() / weight.sum().clamp_min(1e-6) * (t * t)


def detection_distillation(student_out: torch.Tensor, teacher_out: torch.Tensor, layout: HeadLayout,
                           temperature: float = 1.0, cls_weight: float = 1.0, loc_weight: float = 1.0,
                           loc_region: torch.Tensor | None = None) -> torch.Tensor:
    """What a ``kl`` knowledge edge means for detectors: ``cls_weight * classification_map_kd +
    loc_weight * localization_kd`` (a zero weight skips its term; ``loc_region`` as in localization_kd)."""
    terms = []
    if cls_weight:
        terms.append(cls_weight * classification_map_kd(student_out, teacher_out, layout, temperature))
    if loc_weight:
        terms.append(loc_weight * localization_kd(student_out, teacher_out, layout, temperature, loc_region))
    if not terms:  # both switched off: a zero that stays in the graph
        return student_out.float().sum() * 0.0
    return sum(terms)
