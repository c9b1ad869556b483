"""Losses whose matrix products must stay in fp32 under autocast."""

from __future__ import annotations

import functools

import torch


def in_fp32(loss):
    """Run ``loss(first_tensor, ...)`` with autocast off. Autocast casts a matrix product back to
    fp16/bf16 even when its inputs were made fp32; a Gram matrix sums C*H*W products, which
    overflow fp16 (the loss became NaN) and lose most digits in bf16."""

    @functools.wraps(loss)
    def run(first: torch.Tensor, *args, **kwargs):
        with torch.autocast(first.device.type, enabled=False):
            return loss(first, *args, **kwargs)

    return run
