"""Losses on logits (Hinton et al. 2015; Zhang et al., Deep Mutual Learning, 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_kl(student_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * KL(softmax(target / T) || softmax(student / T))``, averaged over the batch.

    Classes are on dim 1, so [B, C] logits and [B, C, H, W] maps (one distribution per pixel)
    both work; for maps the sum over classes is averaged over batch and pixels.
    The target is detached: the source of an edge never receives gradient through it.
    The T^2 factor keeps gradient magnitudes comparable across temperatures (Hinton et al.).
    """
    if student_logits.shape != target_logits.shape:
        raise ValueError(
            f"soft_kl: student logits {tuple(student_logits.shape)} and target logits "
            f"{tuple(target_logits.shape)} differ in shape"
        )
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_target = F.log_softmax(target_logits.detach().float() / t, dim=1)
    kl_per_item = (log_p_target.exp() * (log_p_target - log_p_student)).sum(dim=1)
    return kl_per_item.mean() * (t * t)
