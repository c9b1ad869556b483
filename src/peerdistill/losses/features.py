"""Losses on feature maps: FitNets hint, attention transfer, similarity-preserving KD.

Each takes the learner's feature and the target's; the target is detached inside."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .precision import in_fp32


def unit_vectors(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x / ||x||`` along ``dim``; a zero vector stays zero and passes its gradient on as
    ``x / 1`` would. (F.normalize divides by max(||x||, 1e-12), so a row or node that is exactly
    zero, a sample a layer without ReLU zeroes say, got about 1e12 times its gradient.)"""
    norm = x.norm(dim=dim, keepdim=True)
    return x / torch.where(norm > 0, norm, torch.ones_like(norm))


def fitnet_hint(learner: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """FitNets (Romero et al. 2015) ``1/2 ||u_target - r(v_learner)||^2``, taken as the mean over
    elements (so its size does not grow with the feature map) times 1/2. ``learner`` is the
    output of the connector r, already in the target's shape."""
    if learner.shape != target.shape:
        raise ValueError(f"fitnet_hint: shapes {tuple(learner.shape)} and {tuple(target.shape)} differ; use a connector")
    return 0.5 * F.mse_loss(learner.float(), target.detach().float())


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``Q = vec(sum_c |A_c|^p)`` L2-normalised per sample: [B, H*W]."""
    return unit_vectors(feature.float().abs().pow(p).sum(dim=1).flatten(1), dim=1)


def attention_transfer(learner: torch.Tensor, target: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Zagoruyko & Komodakis 2017: ``mean_b || Q_l / ||Q_l|| - Q_t / ||Q_t|| ||_2`` (the paper's
    p-norm of the difference, one layer; the edge weight plays beta/2). Maps of different
    spatial size are compared at the target's size (the learner's map is resized bilinearly)."""
    if learner.ndim != 4 or target.ndim != 4 or learner.shape[0] != target.shape[0] or not learner.shape[0]:
        raise ValueError(f"attention_transfer compares [B, C, H, W] maps of one non-empty batch: got "
                         f"{tuple(learner.shape)} and {tuple(target.shape)} (vectors: use fitnet_hint or "
                         "similarity_preserving)")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p <= 0:
        raise ValueError(f"attention_transfer: p must be a number above 0 (the paper's 2), got {p!r}: at 0 every "
                         "map is alike and the loss 0")
    if learner.shape[-2:] != target.shape[-2:]:
        learner = F.interpolate(learner.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    diff = attention_map(learner, p) - attention_map(target.detach(), p)
    return diff.norm(dim=1).mean()


@in_fp32
def similarity_preserving(learner: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Tung & Mori 2019: ``1/b^2 ||G_t - G_l||_F^2`` with ``G = Q Q^T`` over the batch, rows
    L2-normalised, Q the flattened features. Shapes may differ except in batch size."""
    if learner.shape[0] != target.shape[0] or not learner.shape[0]:
        raise ValueError(f"similarity_preserving compares features of one non-empty batch: got batches of "
                         f"{learner.shape[0]} and {target.shape[0]}")
    b = learner.shape[0]
    g_l = unit_vectors(learner.float().flatten(1) @ learner.float().flatten(1).T, dim=1)
    t = target.detach().float().flatten(1)
    g_t = unit_vectors(t @ t.T, dim=1)
    return (g_t - g_l).pow(2).sum() / (b * b)
