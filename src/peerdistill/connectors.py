"""Trainable adapters that bring a learner's feature map to the shape of its target's.

Channels differ: 1x1 convolution + BatchNorm (FitNets' regressor). Spatial size differs:
bilinear interpolation to the target's size. Vectors [B, F]: a linear layer. They are
created from a dry-run shape probe, trained with the learner, saved with the run, and
never part of an exported model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError


class Connector(nn.Module):
    def __init__(self, learner_shape: tuple[int, ...], target_shape: tuple[int, ...]):
        super().__init__()
        if len(learner_shape) != len(target_shape):
            raise ConfigError(
                f"cannot connect a feature of shape {learner_shape} to one of shape {target_shape}: "
                "pick layers that both give [C, H, W] maps or both give [F] vectors"
            )
        resize = len(target_shape) == 3 and tuple(learner_shape[1:]) != tuple(target_shape[1:])
        self.target_size = tuple(target_shape[1:]) if resize else None
        c_in, c_out = learner_shape[0], target_shape[0]
        if len(target_shape) == 3:
            self.project = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
                            if c_in != c_out else nn.Identity())
        elif len(target_shape) == 1:
            self.project = nn.Linear(c_in, c_out) if c_in != c_out else nn.Identity()
        else:
            raise ConfigError(f"connectors handle [C, H, W] maps and [F] vectors, not {target_shape}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        if self.target_size is not None and tuple(x.shape[-2:]) != self.target_size:
            x = F.interpolate(x, size=self.target_size, mode="bilinear", align_corners=False)
        return x

    @property
    def is_identity(self) -> bool:
        return isinstance(self.project, nn.Identity) and self.target_size is None
