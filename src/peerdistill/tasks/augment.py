"""Geometric augmentation applied identically to a batch of images and their masks, on device."""

from __future__ import annotations

import torch

# Each acts on the last two (spatial) axes, so the same call serves [B, C, H, W] images and [B, H, W] masks.
TRANSFORMS = {
    "hflip": lambda t: t.flip(-1),
    "vflip": lambda t: t.flip(-2),
    "rot90": lambda t: t.rot90(1, (-2, -1)),
}


def augment_images(x: torch.Tensor, masks: torch.Tensor | None, names: tuple[str, ...],
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each named transform is applied to a random half of the samples (one draw per sample),
    identically to image and mask. ``rot90`` is skipped for non-square images."""
    b = x.shape[0]
    for name in names:
        if name == "rot90" and x.shape[-1] != x.shape[-2]:
            continue
        pick = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        transform = TRANSFORMS[name]
        x = torch.where(pick.view(b, *[1] * (x.ndim - 1)), transform(x), x)
        if masks is not None:
            masks = torch.where(pick.view(b, *[1] * (masks.ndim - 1)), transform(masks), masks)
    return x, masks
