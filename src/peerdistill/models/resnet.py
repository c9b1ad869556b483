"""ResNets: basic or bottleneck blocks, with a small-image stem or ImageNet's.

``blocks`` is the number of blocks per stage and ``width`` the channels of the first stage,
doubled at each later stage. ``block: basic`` with [2, 2, 2, 2] and width 64 is ResNet-18;
``block: bottleneck`` (1x1 reduce, 3x3, 1x1 expand x4) with [3, 4, 6, 3] is ResNet-50.
``stem: small`` (3x3 convolution, no max-pool; the default) suits 28-64 px images as on CIFAR
and MedMNIST; ``stem: imagenet`` (7x7 stride-2 convolution and a 3x3 stride-2 max-pool) suits
224 px images. CIFAR's ResNet-8x4 / ResNet-32x4 (Tian et al. 2020) are the small stem with
blocks [1, 1, 1] / [5, 5, 5] and width 64."""

from __future__ import annotations

import torch
from torch import nn

from .built_with import remembers_its_args


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce to ``c_out / 4``, 3x3 (carrying the stride), 1x1 expand to ``c_out``."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        mid = c_out // 4
        self.conv1 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


BLOCKS = {"basic": (BasicBlock, 1), "bottleneck": (Bottleneck, 4)}  # block class, channel expansion


@remembers_its_args
class ResNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, blocks: list[int] | tuple[int, ...] = (2, 2, 2, 2),
                 width: int = 64, block: str = "basic", stem: str = "small"):
        super().__init__()
        if width < 1 or not blocks or min(blocks) < 1:
            raise ValueError(f"ResNet needs width >= 1 and at least one block per stage, got width={width}, blocks={blocks}")
        if block not in BLOCKS or stem not in ("small", "imagenet"):
            raise ValueError(f"ResNet block must be one of {sorted(BLOCKS)} and stem 'small' or 'imagenet', "
                             f"got block={block!r}, stem={stem!r}")
        unit, expansion = BLOCKS[block]
        if stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True))
        stages, c = [], width
        for i, n in enumerate(blocks):
            out = width * 2**i * expansion
            stages.append(nn.Sequential(*[unit(c if j == 0 else out, out, 2 if (i > 0 and j == 0) else 1)
                                          for j in range(n)]))
            c = out
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self.feature_layer = f"layers.{len(blocks) - 1}"  # the last stage, before pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))
