"""Losses for dense prediction: pair-wise affinity (Liu et al. 2019) and channel-wise
distillation (Shu et al. 2021). The target (source) map is detached inside."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..spatial import align_to, masked_mean
from .features import unit_vectors
from .logits import checked_temperature
from .precision import in_fp32

_MASKED = -1e9  # a logit that takes no share of a softmax, yet keeps its gradients finite (-inf would not)


@in_fp32
def affinity(feature: torch.Tensor, node_size: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity between every pair of nodes, a node being a ``node_size`` x
    ``node_size`` average-pooled region (the paper's pooling, which bounds memory): [B, N, N].
    ``valid`` ([B, H, W] booleans): a node averages its valid pixels only."""
    feature = feature.float()
    if valid is None:
        nodes = F.avg_pool2d(feature, node_size, node_size, ceil_mode=True) if node_size > 1 else feature
    else:
        # The mean over a node's valid pixels: pooled sums of the kept pixels over pooled counts
        # (the pooling's own divisor cancels); a node without any comes out as zeros.
        weight = valid[:, None].to(feature.dtype)
        # masked_fill, not feature * weight: a NaN left out (outside a field of view) stays out
        kept = F.avg_pool2d(feature.masked_fill(~valid[:, None], 0), node_size, node_size, ceil_mode=True)
        share = F.avg_pool2d(weight, node_size, node_size, ceil_mode=True)
        nodes = kept / share.clamp_min(torch.finfo(share.dtype).tiny)
    flat = unit_vectors(nodes.flatten(2), dim=1)  # [B, C, N], unit vectors along channels
    return flat.transpose(1, 2) @ flat


def pairwise_affinity(learner: torch.Tensor, target: torch.Tensor, node_size: int = 2,
                      valid: torch.Tensor | None = None) -> torch.Tensor:
    """Structured KD pair-wise term: ``1/(W'H')^2 sum_ij (a_ij^learner - a_ij^target)^2``, mean over
    the batch. Channels may differ; a learner map of another size is resized to the target's.
    ``valid`` ([B, H, W] booleans at the target's size): each node averages its valid pixels
    only, a node with no valid pixel is left out of every pair, and the mean is over the pairs
    left."""
    if isinstance(node_size, bool) or not isinstance(node_size, int) or node_size < 1:
        raise ValueError(f"pairwise_affinity: node_size is a node's side in pixels, a whole number 1 or more, got "
                         f"{node_size!r}")
    if learner.ndim != 4 or target.ndim != 4 or learner.shape[0] != target.shape[0]:
        raise ValueError(f"pairwise_affinity compares [B, C, H, W] maps of one batch: got {tuple(learner.shape)} and "
                         f"{tuple(target.shape)}")
    learner = align_to(learner, target.shape[-2:])
    a_l, a_t = affinity(learner, node_size, valid), affinity(target.detach(), node_size, valid)
    squared = (a_l - a_t).pow(2)
    if valid is None:
        return squared.mean(dim=(1, 2)).mean()
    nodes = F.max_pool2d(valid[:, None].float(), node_size, node_size, ceil_mode=True).flatten(1) > 0  # [B, N]
    pairs = nodes[:, :, None] & nodes[:, None, :]
    per_sample = (squared * pairs).sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp_min(1)
    return masked_mean(per_sample, nodes.any(dim=1))


def channel_wise(learner: torch.Tensor, target: torch.Tensor, temperature: float = 1.0,
                 valid: torch.Tensor | None = None) -> torch.Tensor:
    """Channel-wise distillation: for each channel a softmax over spatial positions at
    temperature T, then ``T^2 / C * sum_c KL(phi(target_c) || phi(learner_c))``, mean over the
    batch. Needs equal channels (use it on logits, or on features of equal width). ``valid``
    ([B, H, W] booleans at the target's size): the softmax runs over the valid positions only,
    and an image without any is left out of the mean."""
    if learner.ndim < 3 or target.ndim < 3:  # (review 52b: 0 for any class logits, without a word)
        raise ValueError(f"channel_wise takes maps [B, C, H, W] (a softmax over each channel's positions), got "
                         f"{tuple(learner.shape)} and {tuple(target.shape)}: a vector's channel has one position, "
                         "where every softmax is 1 and the loss 0; for class logits use soft_kl")
    if learner.shape[1] != target.shape[1]:
        raise ValueError(f"channel_wise: {learner.shape[1]} vs {target.shape[1]} channels; they must be equal")
    learner = align_to(learner, target.shape[-2:])
    t = checked_temperature(temperature, "channel_wise")
    b, c = target.shape[:2]
    target_logits = target.detach().float().reshape(b, c, -1) / t
    learner_logits = learner.float().reshape(b, c, -1) / t
    if valid is not None:
        outside = ~valid.reshape(b, 1, -1)
        target_logits = target_logits.masked_fill(outside, _MASKED)
        learner_logits = learner_logits.masked_fill(outside, _MASKED)
    log_p_t = F.log_softmax(target_logits, dim=2)
    log_p_l = F.log_softmax(learner_logits, dim=2)
    kl = (log_p_t.exp() * (log_p_t - log_p_l)).sum(dim=2)  # [B, C]
    per_sample = kl.sum(dim=1).div(c)
    return (t * t) * masked_mean(per_sample, None if valid is None else valid.flatten(1).any(dim=1))
