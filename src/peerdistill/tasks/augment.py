"""Augmentation of a batch on device: flips, quarter turns, small rotations, zooms and elastic
warps applied identically to images and their masks, and intensity changes and blur
(``intensity``) to the images.

Every transform is applied to a random half of the samples, one draw per sample, in the order
named. Pick and strength are drawn from the caller's ``torch.Generator`` for every sample,
picked or not, so a generator state gives the same batch whatever else the process draws
(resumed runs repeat their batches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..data.image_io import IGNORE
from . import intensity

# Each acts on the last two (spatial) axes, so the same call serves [B, C, H, W] images and [B, H, W] masks.
TRANSFORMS = {
    "hflip": lambda t: t.flip(-1),
    "vflip": lambda t: t.flip(-2),
    "rot90": lambda t: t.rot90(1, (-2, -1)),
}
WARPS = ("rotate", "scale")  # warped by kornia, only the picked samples
ELASTIC = "elastic"
ELASTIC_POINTS = 5  # control points along each side: a quarter of the side apart
GEOMETRIC = (*TRANSFORMS, *WARPS, ELASTIC)
# The largest change each strength-taking transform makes, unless data.augment_range says otherwise:
# rotate: degrees either way; brightness: a shift, in standard deviations of the training images;
# contrast: the factor's distance from 1; gamma: the exponent lies in [1 / (1 + r), 1 + r];
# noise: the largest Gaussian standard deviation, in standard deviations of the training images;
# scale: the zoom factor's distance from 1; blur: the largest Gaussian standard deviation, in pixels;
# elastic: the largest move of a control point, in fractions of the image's shorter side (measured
# from its first pixel's centre to its last's, as the control points span it).
DEFAULT_RANGES = {"rotate": 15.0, "scale": 0.2, "brightness": 0.2, "contrast": 0.2, "gamma": 0.3, "noise": 0.1,
                  "blur": 1.0, "elastic": 0.05}
BOX_ONLY = ("crop",)  # detection's, which moves boxes (box_augment); detection scales boxes there too
NAMES = (*GEOMETRIC, *intensity.NAMES, *BOX_ONLY)


@dataclass(frozen=True)
class Augmentation:
    """``names`` in the order applied; ``ranges`` override ``DEFAULT_RANGES``."""

    names: tuple[str, ...] = ()
    ranges: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        unknown = [n for n in self.names if n not in NAMES]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown}: choose from {list(NAMES)}")

    def __bool__(self) -> bool:
        return bool(self.names)

    def range_of(self, name: str) -> float:
        return float(self.ranges.get(name, DEFAULT_RANGES[name]))

    def images(self, x: torch.Tensor, masks: torch.Tensor | None,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every named transform, geometric ones identically to image and mask. ``rot90`` is
        skipped for non-square images."""
        for name in self.names:
            if name in intensity.NAMES:
                x = self._intensity(name, x, generator)
            elif name in GEOMETRIC:
                x, masks = self._geometric(name, x, masks, generator)
            else:
                raise ValueError(f"augmentation '{name}' moves boxes: it is for detection")
        return x, masks

    def intensity(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Only the intensity transforms (detection moves its boxes itself)."""
        for name in self.names:
            if name in intensity.NAMES:
                x = self._intensity(name, x, generator)
        return x

    def _draw(self, b: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Which samples change, and a uniform [0, 1) number for each."""
        pick = torch.rand(b, generator=generator, device=generator.device) < 0.5
        return pick.cpu(), torch.rand(b, generator=generator, device=generator.device).cpu()

    def _geometric(self, name, x, masks, generator):
        b = x.shape[0]
        if name in TRANSFORMS:  # one draw per sample, as before rotate existed
            if name == "rot90" and x.shape[-1] != x.shape[-2]:
                return x, masks
            pick = (torch.rand(b, generator=generator, device=generator.device) < 0.5).to(x.device)
            moved_x, moved_m = TRANSFORMS[name](x), TRANSFORMS[name](masks) if masks is not None else None
        elif name == ELASTIC:
            return self._elastic(x, masks, generator)
        else:  # only the picked samples are warped: a warp costs more than a flip
            pick, u = self._draw(b, generator)
            moved = pick.nonzero().flatten()
            amount = ((2 * u[moved] - 1) * self.range_of(name)).to(x.device, torch.float32)
            images, labels = (rotate_images, rotate_masks) if name == "rotate" else (zoom_images, zoom_masks)
            amount = amount if name == "rotate" else 1 + amount  # degrees, or a zoom factor
            moved = moved.to(x.device)
            x = x.index_copy(0, moved, images(x[moved], amount)) if len(moved) else x
            if masks is not None and len(moved):
                masks = masks.index_copy(0, moved, labels(masks[moved], amount))
            return x, masks
        x = torch.where(pick.view(b, *[1] * (x.ndim - 1)), moved_x, x)
        if masks is not None:
            masks = torch.where(pick.view(b, *[1] * (masks.ndim - 1)), moved_m, masks)
        return x, masks

    def _elastic(self, x, masks, generator):
        """Each picked sample warped by its own field: every control point moves by a uniform draw
        in [-r, r] of the shorter side, along each axis (drawn for every sample, as ``_draw``).
        The side is counted from the first pixel's centre to the last's, the span of the control
        points, so a strength bends a small image as much as a large one."""
        b = x.shape[0]
        pick = torch.rand(b, generator=generator, device=generator.device) < 0.5
        unit = torch.rand(b, 2, ELASTIC_POINTS, ELASTIC_POINTS, generator=generator, device=generator.device)
        moved = pick.nonzero().flatten().to(x.device)
        if not len(moved):
            return x, masks
        side = min(x.shape[-2:]) - 1
        moves = ((2 * unit - 1) * self.range_of(ELASTIC) * side).to(x.device, torch.float32)[moved]
        grid = _sampling_grid(moves, x.shape[-2:])  # masks share their images' size: one grid for both
        x = x.index_copy(0, moved, _read_images_at(x[moved], grid))
        if masks is not None:
            masks = masks.index_copy(0, moved, _read_masks_at(masks[moved], grid))
        return x, masks

    def _intensity(self, name: str, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, r = x.shape[0], self.range_of(name)
        pick, u = self._draw(b, generator)
        if name == "brightness":
            moved = intensity.brightness(x, (2 * u - 1) * r)
        elif name == "contrast":
            moved = intensity.contrast(x, 1 + (2 * u - 1) * r)
        elif name == "gamma":
            moved = intensity.gamma(x, torch.exp((2 * u - 1) * math.log1p(r)))
        elif name == "blur":  # (0, r]: a standard deviation of 0 is no kernel
            moved = intensity.blur(x, (1 - u) * r)
        else:
            moved = intensity.noise(x, u * r, generator)
        return torch.where(pick.to(x.device).view(b, *[1] * (x.ndim - 1)), moved, x)


def _filled_with_minimum(x: torch.Tensor, warp) -> torch.Tensor:
    """``warp`` of images [B, C, H, W] whose zero padding becomes each channel's minimum, the
    image's background: the warp sees the images shifted so that their minimum is 0."""
    low = x.amin(dim=(-2, -1), keepdim=True)
    return warp((x - low).float()).to(x.dtype) + low


def _filled_with_ignore(masks: torch.Tensor, warp) -> torch.Tensor:
    """``warp`` of label maps [B, H, W] (as [B, 1, H, W]) whose zero padding becomes IGNORE,
    counted nowhere: the warp sees the labels shifted so that IGNORE is 0."""
    shifted = (masks.float() - IGNORE).unsqueeze(1)
    return (warp(shifted).squeeze(1) + IGNORE).round().to(masks.dtype)


def rotate_images(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Turn each image [B, C, H, W] about its centre by ``degrees`` [B] (counter-clockwise,
    bilinear); the corners brought in take each channel's minimum."""
    from kornia.geometry.transform import rotate  # (here: kornia takes 0.3 s to import, wanted by few runs)

    return _filled_with_minimum(x, lambda t: rotate(t, degrees))


def rotate_masks(masks: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Turn label maps [B, H, W] as ``rotate_images`` turns their images (nearest label); the
    corners brought in are IGNORE."""
    from kornia.geometry.transform import rotate

    return _filled_with_ignore(masks, lambda t: rotate(t, degrees, mode="nearest"))


def zoom_images(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Zoom each image [B, C, H, W] about its centre by ``factors`` [B] (> 1 enlarges, bilinear);
    the border a zoom out brings in takes each channel's minimum."""
    from kornia.geometry.transform import scale

    return _filled_with_minimum(x, lambda t: scale(t, factors.view(-1, 1).expand(-1, 2)))


def zoom_masks(masks: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Zoom label maps [B, H, W] as ``zoom_images`` zooms their images (nearest label); the
    border brought in is IGNORE."""
    from kornia.geometry.transform import scale

    return _filled_with_ignore(masks, lambda t: scale(t, factors.view(-1, 1).expand(-1, 2).to(t), mode="nearest"))


def displacement_field(moves: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Every pixel's move [B, 2, H, W] (x then y, in pixels), bicubic between the control points'
    moves [B, 2, P, P], which sit on a regular grid from corner to corner."""
    return F.interpolate(moves, size=size, mode="bicubic", align_corners=True)


def _sampling_grid(moves: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """grid_sample's [B, H, W, 2] grid: each output pixel reads the input at itself plus its move."""
    h, w = size
    field = displacement_field(moves, size)
    ys, xs = torch.meshgrid(torch.arange(h, device=moves.device, dtype=torch.float32),
                            torch.arange(w, device=moves.device, dtype=torch.float32), indexing="ij")
    gx = (xs + field[:, 0]) * (2 / max(w - 1, 1)) - 1  # pixel centres to [-1, 1], corners on +-1
    gy = (ys + field[:, 1]) * (2 / max(h - 1, 1)) - 1
    return torch.stack((gx, gy), dim=-1)


def warp_images(x: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
    """Warp images [B, C, H, W] by the control points' moves [B, 2, P, P] (bilinear); what comes
    in from outside takes each channel's minimum."""
    return _read_images_at(x, _sampling_grid(moves, x.shape[-2:]))


def warp_masks(masks: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
    """Warp label maps [B, H, W] as ``warp_images`` warps their images (nearest label); what comes
    in from outside is IGNORE."""
    return _read_masks_at(masks, _sampling_grid(moves, masks.shape[-2:]))


def _read_images_at(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return _filled_with_minimum(x, lambda t: F.grid_sample(t, grid, mode="bilinear", align_corners=True))


def _read_masks_at(masks: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return _filled_with_ignore(masks, lambda t: F.grid_sample(t, grid, mode="nearest", align_corners=True))
