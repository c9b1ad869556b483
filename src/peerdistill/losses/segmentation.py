"""Supervised losses for segmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = 255,
                   include_background: bool = False, eps: float = 1.0) -> torch.Tensor:
    """``1 - mean_c (2 sum p_c g_c + eps) / (sum p_c + sum g_c + eps)`` over the batch's pixels, p
    the softmax probabilities, g the one-hot labels; ignored pixels count nowhere. The mean runs
    over the foreground classes unless ``include_background``."""
    valid = (targets != ignore_index).unsqueeze(1)
    # masked_fill, not a product: a NaN or inf logit at an ignored pixel (NaN * 0) would spoil every sum
    probs = logits.float().masked_fill(~valid, 0).softmax(dim=1).masked_fill(~valid, 0)
    onehot = F.one_hot(targets.clamp(max=probs.shape[1] - 1) * valid.squeeze(1), probs.shape[1])
    onehot = onehot.permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    dice = (2 * (probs * onehot).sum(dims) + eps) / (probs.sum(dims) + onehot.sum(dims) + eps)
    if not include_background:
        dice = dice[1:]
    return 1 - dice.mean()
