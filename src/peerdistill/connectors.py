"""Trainable adapters that bring a learner's feature map to the shape of its target's.

Channels differ: 1x1 convolution + BatchNorm (FitNets' regressor). Spatial size differs:
bilinear interpolation to the target's size *at call time* (patch training and whole-image
evaluation see different sizes). Vectors [B, F]: a linear layer. Token sequences [B, L, D] (a
transformer's blocks): a linear layer over D, the lengths L being equal. They are created from a
dry-run shape probe, trained with the learner, saved with the run, and never part of an
exported model.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError
from .spatial import align_to


class Connector(nn.Module):
    """A learner's feature brought to its target's shape, trained with the learner: built from
    the two per-sample shapes (``[C, H, W]`` maps: a 1x1 convolution and BatchNorm, FitNets'
    regressor; ``[L, D]`` tokens or ``[F]`` vectors: a linear layer; an identity where the
    channels already agree). Its forward takes the learner's batch and, for maps, the target's
    spatial size, to which it resizes bilinearly. In a loop of one's own:
    ``fitnet_hint(connector(student_map, teacher_map.shape[-2:]), teacher_map)``, its parameters
    in the optimizer with the student's."""

    def __init__(self, learner_shape: tuple[int, ...], target_shape: tuple[int, ...]):
        super().__init__()
        if len(learner_shape) != len(target_shape):
            raise ConfigError(
                f"cannot connect a feature of shape {learner_shape} to one of shape {target_shape}: "
                "pick layers that both give [C, H, W] maps, both [L, D] token sequences or both [F] vectors; "
                "a convolutional map and a transformer's tokens do not connect, but kind sp compares them (the "
                "batch's similarities, any shapes: distill.feature_loss=sp under the styles presets), as a kl "
                "edge between the two models' outputs does"
            )
        c_in, c_out = learner_shape[0], target_shape[0]
        if len(target_shape) == 3:
            self.project = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
                            if c_in != c_out else nn.Identity())
        elif len(target_shape) == 1:
            self.project = nn.Linear(c_in, c_out) if c_in != c_out else nn.Identity()
        elif len(target_shape) == 2:
            if learner_shape[0] != target_shape[0]:
                raise ConfigError(f"cannot connect token sequences of different lengths, {learner_shape} to "
                                  f"{target_shape} ([L, D]): pick layers with as many tokens, or pool them")
            d_in, d_out = learner_shape[1], target_shape[1]
            self.project = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        else:
            raise ConfigError(f"connectors handle [C, H, W] maps, [L, D] token sequences and [F] vectors, "
                              f"not {target_shape}")

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Project channels, then resize maps to ``size`` (the target's spatial size)."""
        x = self.project(x)
        return align_to(x, size) if size is not None and x.ndim == 4 else x

    @property
    def is_identity(self) -> bool:
        return isinstance(self.project, nn.Identity)
