"""A small plain CNN for tests and the embedded default: width and depth set its size."""

from __future__ import annotations

from torch import nn

from .built_with import remembers_its_args


@remembers_its_args
class SmallCNN(nn.Module):
    """``depth`` blocks of (conv3x3, BN, ReLU), doubling channels and halving size after each
    block but the first, then global average pooling and a linear classifier."""

    feature_layer = "features"  # the last conv block, before pooling: where feature edges attach

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, depth: int = 2):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"SmallCNN needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(depth):
            out = width * 2**i
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if i < depth - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))
