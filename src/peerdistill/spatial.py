"""The one alignment rule for maps of different spatial size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def align_to(maps: torch.Tensor, size) -> torch.Tensor:
    """Resize [B, C, H, W] maps bilinearly (align_corners=False) to ``size``; a no-op when equal.
    Wherever two maps of different size are compared, the learner's map is brought to the
    size of the map it learns from (its source, or the labels)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.float(), size=tuple(size), mode="bilinear", align_corners=False)
