"""Distillation losses as pure functions of tensors, one file per family."""

from .features import attention_transfer, fitnet_hint, similarity_preserving
from .logits import combine_soft_targets, confidence_weights, decoupled_kd, kl_to_probs, soft_kl

__all__ = ["attention_transfer", "combine_soft_targets", "confidence_weights", "decoupled_kd", "fitnet_hint", "kl_to_probs", "similarity_preserving", "soft_kl"]
