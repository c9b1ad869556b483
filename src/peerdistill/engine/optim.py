"""One optimizer and one LR schedule per trainable model, so their states never mix."""

from __future__ import annotations

import torch
from torch import nn

from ..config import OptimSpec
from ..errors import ConfigError


def build_optimizer(module: nn.Module, spec: OptimSpec, lr: float | None = None,
                    extra: list[nn.Parameter] | None = None, name: str = "model") -> torch.optim.Optimizer:
    """``extra``: parameters that learn with this model (its feature connectors)."""
    params = [p for p in module.parameters() if p.requires_grad] + list(extra or [])
    if not params:
        raise ConfigError(f"model '{name}' has no parameter that requires a gradient, so it cannot learn: make it "
                          "trainable (requires_grad=True), or give it as a frozen teacher")
    lr = lr or spec.lr
    if spec.name == "sgd":
        return _fastest(torch.optim.SGD, params, lr=lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
                        nesterov=spec.momentum > 0)
    return _fastest(torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW, params, lr=lr,
                    weight_decay=spec.weight_decay)


def _fastest(optimizer_class, params: list[nn.Parameter], **settings) -> torch.optim.Optimizer:
    """A fused kernel updates all of a model's tensors at once (on CUDA, and since torch 2.4 on
    the CPU: 4x faster than foreach for AdamW on a 5M-parameter detector there); where the
    parameters' device or dtype has none, foreach kernels batch the update over them. Both
    beat one small kernel per tensor. (torch checks complex parameters only at the first step.)"""
    if params and all(p.is_floating_point() for p in params):
        try:
            return optimizer_class(params, fused=True, **settings)
        except RuntimeError:  # "fused=True requires all the params to be ... of supported devices"
            pass
    return optimizer_class(params, foreach=True, **settings)


def build_scheduler(optimizer: torch.optim.Optimizer, spec: OptimSpec, epochs: int):
    """Stepped once per epoch. With ``warmup_epochs`` W, epoch e < W trains at ``lr (e + 1) / (W + 1)``
    and the schedule proper runs over the other ``epochs - W`` epochs, starting at ``lr``."""
    warmup = spec.warmup_epochs
    if warmup >= epochs:
        raise ConfigError(f"optim.warmup_epochs ({warmup}) must be fewer than train.epochs ({epochs})")
    main = _schedule(optimizer, spec, epochs - warmup)
    if not warmup:
        return main
    rise = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [rise, main], milestones=[warmup])


def _schedule(optimizer: torch.optim.Optimizer, spec: OptimSpec, epochs: int):
    if spec.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if spec.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=spec.step_size, gamma=spec.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
