"""One optimizer and one LR schedule per trainable model, so their states never mix."""

from __future__ import annotations

import torch
from torch import nn

from ..config import OptimSpec


def build_optimizer(module: nn.Module, spec: OptimSpec, lr: float | None = None,
                    extra: list[nn.Parameter] | None = None) -> torch.optim.Optimizer:
    """``extra``: parameters that learn with this model (its feature connectors)."""
    params = [p for p in module.parameters() if p.requires_grad] + list(extra or [])
    lr = lr or spec.lr
    # On CUDA a fused kernel updates all of a model's tensors at once; elsewhere foreach kernels
    # batch the update over them (both faster than one small kernel per tensor).
    kernel = {"fused": True} if params and all(p.is_cuda for p in params) else {"foreach": True}
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
                               nesterov=spec.momentum > 0, **kernel)
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=spec.weight_decay, **kernel)
    return torch.optim.AdamW(params, lr=lr, weight_decay=spec.weight_decay, **kernel)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: OptimSpec, epochs: int):
    """Stepped once per epoch."""
    if spec.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if spec.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=spec.step_size, gamma=spec.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
