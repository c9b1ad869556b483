"""ResNets with a small-image stem (3x3 convolution, no max-pool), as used on CIFAR and MedMNIST.

``blocks`` is the number of basic blocks per stage ([2, 2, 2, 2] is ResNet-18's layout) and
``width`` the channels of the first stage, doubled at each later stage (64 is ResNet-18's)."""

from __future__ import annotations

import torch
from torch import nn


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


class ResNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, blocks: list[int] | tuple[int, ...] = (2, 2, 2, 2),
                 width: int = 64):
        super().__init__()
        if width < 1 or not blocks or min(blocks) < 1:
            raise ValueError(f"ResNet needs width >= 1 and at least one block per stage, got width={width}, blocks={blocks}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        stages, c = [], width
        for i, n in enumerate(blocks):
            out = width * 2**i
            stages.append(nn.Sequential(*[BasicBlock(c if j == 0 else out, out, 2 if (i > 0 and j == 0) else 1)
                                          for j in range(n)]))
            c = out
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self.feature_layer = f"layers.{len(blocks) - 1}"  # the last stage, before pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))
