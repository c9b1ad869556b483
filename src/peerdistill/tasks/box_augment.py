"""Geometric augmentation of a batch of images and their boxes, on device.

Each sample gets one affine matrix: the named transforms, each picked with probability 0.5,
composed in the order named. kornia warps the images (``warp_affine``) and moves the boxes
(``transform_bbox``). The parameters are drawn from the caller's ``torch.Generator``, not
from kornia's samplers, which use the global RNG: the same generator state gives the same
batch, whatever else the process draws.

Matrices act on continuous pixel coordinates, where pixel i spans [i, i + 1) and a box's
x2 / y2 is an exclusive edge. kornia's image warp works on pixel indices (align_corners), so
the image gets the same matrix shifted by half a pixel. (kornia's own ``bbox_xyxy`` data key
reads x2 as inclusive, which moves exclusive-edge boxes one pixel off under a flip; it also
transforms padding rows like boxes and neither clips nor drops them. Hence this module.)
"""

from __future__ import annotations

import torch
from kornia.geometry.bbox import transform_bbox
from kornia.geometry.transform import warp_affine

from ..errors import ConfigError

NAMES = ("hflip", "vflip", "scale", "crop")
SCALE_RANGE = 0.2  # zoom about the centre by 1 +- this (data.augment_range.scale); < 1 zooms out and pads with zeros
CROP_RANGE = (0.7, 1.0)  # crop side as a fraction of the image side (same for both, keeps aspect)
MIN_VISIBLE = 0.3  # a box keeps at least this share of its area after clipping...
MIN_SIDE = 2.0  # ...and this many pixels in each side, or it is dropped


def _affine(b: int, sx, sy, tx, ty, device) -> torch.Tensor:
    """[B, 3, 3] matrices x' = sx x + tx, y' = sy y + ty."""
    m = torch.zeros(b, 3, 3, device=device)
    m[:, 0, 0], m[:, 1, 1], m[:, 0, 2], m[:, 1, 2], m[:, 2, 2] = sx, sy, tx, ty, 1.0
    return m


def box_transforms(names: tuple[str, ...], batch: int, height: int, width: int,
                   generator: torch.Generator, scale_range: float = SCALE_RANGE) -> torch.Tensor:
    """[batch, 3, 3] matrices in continuous pixel coordinates. Every name draws its pick and its
    parameters for every sample, picked or not, so the number of draws is fixed."""
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ConfigError(f"unknown box augmentation {unknown}: choose from {list(NAMES)}")
    gen_device = generator.device
    total = torch.eye(3).repeat(batch, 1, 1)
    one, zero = torch.ones(batch), torch.zeros(batch)
    for name in names:
        pick = torch.rand(batch, generator=generator, device=gen_device).cpu() < 0.5
        u = torch.rand(batch, 3, generator=generator, device=gen_device).cpu()
        if name == "hflip":
            m = _affine(batch, -one, one, width * one, zero, "cpu")
        elif name == "vflip":
            m = _affine(batch, one, -one, zero, height * one, "cpu")
        elif name == "scale":
            s = 1 - scale_range + 2 * scale_range * u[:, 0]
            m = _affine(batch, s, s, (1 - s) * width / 2, (1 - s) * height / 2, "cpu")
        else:  # crop: a window of side f, anywhere inside the image, stretched back to full size
            f = CROP_RANGE[0] + (CROP_RANGE[1] - CROP_RANGE[0]) * u[:, 0]
            ox, oy = u[:, 1] * (1 - f) * width, u[:, 2] * (1 - f) * height
            m = _affine(batch, 1 / f, 1 / f, -ox / f, -oy / f, "cpu")
        total = torch.where(pick.view(-1, 1, 1), m @ total, total)
    return total


def warp_boxes(x: torch.Tensor, targets: torch.Tensor, matrices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply [B, 3, 3] continuous-coordinate matrices to images [B, C, H, W] (bilinear, zero
    padding) and to targets [B, M, 5] (label, x1, y1, x2, y2). Boxes are clipped to the image;
    one left with under 30% of its area or a side under 2 px becomes a padding row (label -1,
    zeros) where it stands, so rows are not reordered. Images of samples with the identity
    matrix are returned as they were (their boxes only lose rows already under the rule)."""
    _, _, h, w = x.shape
    matrices = matrices.to(x.device, torch.float32)
    moved = (matrices - torch.eye(3, device=x.device)).abs().amax(dim=(1, 2)) > 0
    out = x.clone()
    if moved.any():
        half = torch.eye(3, device=x.device)
        half[:2, 2] = 0.5
        # pixel index p = u - 0.5 in continuous coordinates u: p' = M (p + 0.5) - 0.5
        pixel = torch.linalg.inv(half) @ matrices[moved] @ half
        out[moved] = warp_affine(x[moved].float(), pixel[:, :2], (h, w), mode="bilinear", padding_mode="zeros",
                                 align_corners=True).to(x.dtype)
    valid = targets[..., 0] >= 0
    boxes = transform_bbox(matrices, targets[..., 1:].float(), mode="xyxy")
    before = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    limit = torch.tensor([w, h, w, h], device=x.device, dtype=boxes.dtype)
    boxes = torch.minimum(boxes.clamp(min=0), limit)
    bw, bh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    keep = valid & (bw * bh >= MIN_VISIBLE * before) & (bw >= MIN_SIDE) & (bh >= MIN_SIDE)
    new = torch.cat([targets[..., :1], boxes.to(targets.dtype)], dim=-1)
    padding = torch.zeros_like(new)
    padding[..., 0] = -1
    return out, torch.where(keep.unsqueeze(-1), new, padding)


def augment_boxes(x: torch.Tensor, targets: torch.Tensor, names: tuple[str, ...],
                  generator: torch.Generator, scale_range: float = SCALE_RANGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Each named transform ("hflip", "vflip", "scale": zoom by 1 +- ``scale_range`` (0.8-1.2)
    about the centre, "crop": a random window of 70-100% of the side resized back) is applied
    to each sample with probability 0.5, to its image and its boxes alike; see ``warp_boxes``
    for the drop rule."""
    matrices = box_transforms(tuple(names), x.shape[0], x.shape[-2], x.shape[-1], generator, scale_range)
    if not names:
        return x, targets
    return warp_boxes(x, targets, matrices)
