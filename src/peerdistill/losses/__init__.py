"""Distillation losses as pure functions of tensors, one file per family."""

from .logits import soft_kl

__all__ = ["soft_kl"]
