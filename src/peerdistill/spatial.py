"""The one alignment rule for maps of different spatial size, and label maps brought to a map's size."""

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


def largest_size(maps: list[torch.Tensor]) -> torch.Size:
    """The (height, width) of the map of most pixels among ``maps``."""
    return max((m.shape[-2:] for m in maps), key=lambda hw: hw[0] * hw[1])


def mean_at_largest(maps: list[torch.Tensor]) -> torch.Tensor:
    """The mean of several [B, C, H, W] maps (probabilities: a segmentation ensemble), each first
    resized to the largest one's size."""
    size = largest_size(maps)
    return torch.stack([align_to(m, size) for m in maps]).mean(dim=0)


def labels_at(labels: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """[B, H, W] label maps brought to [B, C, H', W'] ``maps``' size (nearest neighbour keeps
    them class indices); class labels and maps of the same size are returned as they are."""
    if maps.ndim != 4 or labels.shape[-2:] == maps.shape[-2:]:
        return labels
    return F.interpolate(labels[:, None].float(), size=maps.shape[-2:], mode="nearest")[:, 0].long()


def valid_pixels(labels: torch.Tensor | None, maps: torch.Tensor, ignore: int = 255) -> torch.Tensor | None:
    """[B, H, W] booleans at ``maps``' size: the pixels whose label is not ``ignore``; None for
    class labels (or a detection batch's boxes). Returned even when every pixel counts: asking
    would make the GPU wait, once per edge and step."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 3 or labels.is_floating_point() or maps.ndim != 4:
        return None  # label maps are integers; a detection batch's [B, K, 5] boxes are floats
    return labels_at(labels, maps) != ignore


def check_valid(valid: torch.Tensor, shape: torch.Size) -> None:
    if valid.dtype != torch.bool or valid.shape != shape:
        raise ValueError(f"valid must be a boolean mask of shape {tuple(shape)} (one entry per pixel), got "
                         f"{str(valid.dtype).removeprefix('torch.')} of shape {tuple(valid.shape)}")


def masked_mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The mean over the ``valid`` entries (all when None); 0 when none is valid. Entries left
    out count for nothing, even NaN ones (an ignored pixel outside a field of view)."""
    if valid is None:
        return values.mean()
    check_valid(valid, values.shape)
    return torch.where(valid, values, torch.zeros_like(values)).sum() / valid.sum().clamp_min(1)
