"""Small U-Nets for segmentation: a plain U-Net (teacher) and a MobileNet-style one (student).

``width`` sets the channels of the first level (doubled at each level down), ``depth`` the
number of down-sampling steps. Both output [B, num_classes, H, W] logits at the input size
(inputs whose sides are not multiples of 2**depth are handled by resizing skips)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .built_with import remembers_its_args


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


def separable_block(c_in: int, c_out: int) -> nn.Sequential:
    """MobileNet-style: depthwise 3x3 + pointwise 1x1, twice."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False), nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, groups=c_out, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


@remembers_its_args
class _UNetBase(nn.Module):
    block = staticmethod(conv_block)

    def __init__(self, in_channels: int = 3, num_classes: int = 2, width: int = 16, depth: int = 3):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"U-Net needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        channels = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([self.block(in_channels, channels[0])] +
                                  [self.block(channels[i], channels[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList(
            self.block(channels[i + 1] + channels[i], channels[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(channels[0], num_classes, 1)
        # Feature edges attach to the last decoder block: full resolution, before the classifier.
        self.feature_layer = f"up.{depth - 1}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class UNet(_UNetBase):
    """The classic encoder-decoder with skip connections (Ronneberger et al. 2015), small."""


class MobileUNet(_UNetBase):
    """The same U shape with depthwise-separable blocks: several times fewer parameters."""

    block = staticmethod(separable_block)
