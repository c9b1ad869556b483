"""Which points learn which box: FCOS-style assignment (Tian et al., ICCV 2019) with centre sampling.

A point is a candidate for a box when
1. it lies inside the box (all of l, t, r, b > 0);
2. it lies within ``center_radius * stride`` of the box centre along x and along y (centre sampling);
3. its largest distance ``m = max(l, t, r, b)`` fits its level: ``reg_max * s_prev < m <= reg_max * s``,
   with ``s_prev`` the next finer stride (0 on the finest level) and no upper bound on the coarsest.
   So a level takes the boxes its distributions can reach (``m / s <= reg_max``) and that the finer
   level cannot; with ``reg_max = 8`` and strides (8, 16, 32) these are exactly FCOS's scale ranges
   [0, 64], [64, 128], [128, inf]. Coarsest-level distances beyond ``reg_max`` are clamped by the loss.
A point that is a candidate for several boxes takes the one of smallest area (as FCOS).

A box left with no point (smaller than the centre region allows, or outranked by smaller boxes) gets
the point nearest its centre among the free points inside or on the border of the box, on the level
its size fits (``max(w, h) / 2`` in the ranges above) or else the nearest level that has one. A box
whose sides are at least the finest stride always contains a point, so it gets one unless every such
point already belongs to another box (duplicate boxes, for example).
"""

from __future__ import annotations

import torch

from .boxes import HeadLayout, box_area, boxes_to_ltrb, level_sizes


def level_ranges(layout: HeadLayout, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower (exclusive) and upper (inclusive) bounds of ``max(l, t, r, b)`` per level, in pixels."""
    upper = [layout.reg_max * s for s in layout.strides[:-1]] + [float("inf")]
    lower = [0.0] + upper[:-1]
    return (torch.tensor(lower, dtype=torch.float32, device=device),
            torch.tensor(upper, dtype=torch.float32, device=device))


def assign(points: torch.Tensor, point_strides: torch.Tensor, targets: torch.Tensor, layout: HeadLayout,
           center_radius: float = 2.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets [B, M, 5] rows (label, x1, y1, x2, y2), label -1 for padding -> per point labels
    [B, A] (``num_classes`` = background) and target boxes [B, A, 4] (xyxy; zeros at background)."""
    bsz, num_points = targets.shape[0], points.shape[0]
    background = layout.num_classes
    labels = torch.full((bsz, num_points), background, dtype=torch.long, device=points.device)
    boxes = torch.zeros(bsz, num_points, 4, device=points.device)
    if targets.shape[1] == 0:
        return labels, boxes
    targets = targets.float()
    valid = targets[..., 0] >= 0  # [B, M]
    gt = targets[..., 1:]
    ltrb = boxes_to_ltrb(points[None, :, None, :], gt[:, None, :, :])  # [B, A, M, 4]
    centres = (gt[..., :2] + gt[..., 2:]) / 2  # [B, M, 2]
    near_centre = ((points[None, :, None, :] - centres[:, None]).abs()
                   < center_radius * point_strides[None, :, None, None]).all(dim=-1)
    lower, upper = level_ranges(layout, points.device)
    level = (point_strides[:, None] > torch.tensor(layout.strides, device=points.device)).sum(dim=1)  # [A]
    reach = ltrb.max(dim=-1).values
    fits = (reach > lower[level][None, :, None]) & (reach <= upper[level][None, :, None])
    candidate = (ltrb.min(dim=-1).values > 0) & near_centre & fits & valid[:, None, :]

    area = box_area(gt)  # [B, M]
    cost = torch.where(candidate, area[:, None, :], torch.full_like(reach, float("inf")))
    best_cost, best = cost.min(dim=-1)  # [B, A]; ties of equal area go to the first box
    positive = torch.isfinite(best_cost)
    owner = torch.where(positive, best, torch.full_like(best, -1))

    # Boxes left without a point: smallest first, so they get first pick.
    size = (gt[..., 2:] - gt[..., :2]).max(dim=-1).values / 2  # max(l, t, r, b) at the box centre
    fit_level = (size[..., None] > upper[None, None, :-1]).sum(dim=-1)  # [B, M]
    has_point = torch.zeros(bsz, gt.shape[1] + 1, dtype=torch.bool, device=points.device)
    has_point.scatter_(1, owner + 1, True)  # column 0 collects the background points
    lacking = valid & ~has_point[:, 1:]
    for b in lacking.any(dim=1).nonzero().flatten().tolist():
        for m in area[b].argsort().tolist():
            if not lacking[b, m]:
                continue
            free_inside = (ltrb[b, :, m].min(dim=-1).values >= 0) & (owner[b] < 0)
            if not free_inside.any():
                continue
            gap = torch.where(free_inside, (level - fit_level[b, m]).abs(), torch.full_like(level, 1 << 30))
            distance = (points - centres[b, m]).norm(dim=-1)
            distance = torch.where(gap == gap.min(), distance, torch.full_like(distance, float("inf")))
            owner[b, distance.argmin()] = m

    positive = owner >= 0
    index = owner.clamp_min(0)
    labels = torch.where(positive, targets[..., 0].long().gather(1, index), labels)
    boxes = torch.where(positive[..., None], gt.gather(1, index[..., None].expand(-1, -1, 4)), boxes)
    return labels, boxes


def boxes_without_points(targets: torch.Tensor, layout: HeadLayout, image_size: tuple[int, int]) -> torch.Tensor:
    """Mask [N, M] of the boxes of targets [N, M, 5] (label >= 0) with no anchor point of any level
    inside them or on their border: ``assign`` can give them no point, so they are never learnt
    (a box narrower than the finest stride can fall between the points). A level's points form a
    grid, so a box holds one when some point column lies in [x1, x2] and some row in [y1, y2]:
    the first column at or after x1 is one of four around x1 / s - 0.5 (float rounding), checked
    with the points' own coordinates as ``anchor_points`` computes them. O(N M levels) in time
    and memory, where testing every point against every box would take [N, A, M]."""
    part = targets.float()
    holds = torch.zeros(part.shape[:2], dtype=torch.bool, device=part.device)
    for s, (rows, cols) in zip(layout.strides, level_sizes(*image_size, layout.strides)):
        def covered(lo: torch.Tensor, hi: torch.Tensor, count: int) -> torch.Tensor:
            base = torch.floor(lo.double() / s - 0.5).long()
            found = torch.zeros_like(lo, dtype=torch.bool)
            for k in (-1, 0, 1, 2):
                j = base + k
                at = (j.float() + 0.5) * s  # float32, as anchor_points
                found |= (j >= 0) & (j < count) & (at >= lo) & (at <= hi)
            return found
        holds |= covered(part[..., 1], part[..., 3], cols) & covered(part[..., 2], part[..., 4], rows)
    return (part[..., 0] >= 0) & ~holds
