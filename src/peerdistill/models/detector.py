"""A small single-stage anchor-free detector: FCOS-style points on a feature pyramid (Tian et al.
2019) with a General Focal Loss box head (Li et al. 2020), each box edge a distribution over
``reg_max + 1`` bins, so that Localization Distillation applies between detectors.

``width`` and ``depth`` set the size; ``num_classes``, ``reg_max`` and ``strides`` (the
``HeadLayout``) must match across a cohort so outputs compare point by point. The output is
[B, A, num_classes + 4 (reg_max + 1)] in the order of ``detection.boxes.anchor_points``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..detection.boxes import HeadLayout
from .built_with import remembers_its_args


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class FPNLite(nn.Module):
    """1x1 laterals to a common width, top-down nearest upsampling and add, one 3x3 conv per level."""

    def __init__(self, in_channels: list[int], channels: int):
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.outputs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        merged = [lateral(f) for lateral, f in zip(self.laterals, features)]
        for i in range(len(merged) - 2, -1, -1):
            # The explicit size (not a scale factor) handles odd sizes: ceil(H / s) is not 2 * ceil(H / 2s).
            merged[i] = merged[i] + F.interpolate(merged[i + 1], size=merged[i].shape[-2:], mode="nearest")
        return [conv(m) for conv, m in zip(self.outputs, merged)]


def tower(channels: int, convs: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: the head is shared by levels whose statistics differ (FCOS, GFL).
    # At least 2 channels per group, so a 1x1 coarsest level of one image still has statistics.
    groups = math.gcd(8, max(channels // 2, 1))
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(groups, channels),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


@remembers_its_args
class Detector(nn.Module):
    """Backbone of stride-2 stages (``depth`` conv-BN-ReLU blocks each, the first striding; stage i
    has ``width * 2**i`` channels, stage i at stride 2**(i+1)), an FPN-lite on the stages at
    ``strides`` with ``2 * width`` channels, and a head shared by the levels."""

    feature_layer = "fpn.outputs.0"  # the finest pyramid level: where feature edges attach

    def __init__(self, in_channels: int = 3, num_classes: int = 1, width: int = 16, depth: int = 1, reg_max: int = 8,
                 strides: tuple[int, ...] = (8, 16, 32), head_convs: int = 2):
        super().__init__()
        strides = tuple(int(s) for s in strides)
        if width < 1 or depth < 1 or head_convs < 0 or num_classes < 1 or reg_max < 1:
            raise ValueError(f"Detector needs width, depth, num_classes, reg_max >= 1 and head_convs >= 0, got "
                             f"width={width}, depth={depth}, num_classes={num_classes}, reg_max={reg_max}, "
                             f"head_convs={head_convs}")
        if not strides or any(s < 2 or s & (s - 1) for s in strides) or list(strides) != sorted(set(strides)):
            raise ValueError(f"Detector strides must be increasing powers of two >= 2, got {strides}")
        self.layout = HeadLayout(num_classes, reg_max, strides)
        stages, c_in = [], in_channels
        for i in range(int(math.log2(strides[-1]))):
            c_out = width * 2**i
            stages.append(nn.Sequential(conv_bn_relu(c_in, c_out, stride=2),
                                        *(conv_bn_relu(c_out, c_out) for _ in range(depth - 1))))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.taps = [int(math.log2(s)) - 1 for s in strides]  # stage index of each pyramid level
        self.fpn = FPNLite([width * 2**i for i in self.taps], 2 * width)
        self.cls_tower, self.reg_tower = tower(2 * width, head_convs), tower(2 * width, head_convs)
        self.cls_out = nn.Conv2d(2 * width, num_classes, 3, padding=1)
        self.reg_out = nn.Conv2d(2 * width, 4 * (reg_max + 1), 3, padding=1)
        for module in [*self.cls_tower, *self.reg_tower, self.cls_out, self.reg_out]:
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
        # Focal-loss prior (Lin et al. 2017): every score starts at 0.01, so the many background
        # points do not swamp the first steps.
        nn.init.constant_(self.cls_out.bias, -math.log((1 - 0.01) / 0.01))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return dense_output(self.fpn([features[i] for i in self.taps]), self)


def dense_output(pyramid, head) -> torch.Tensor:
    """The detection output [B, A, C + 4 (R + 1)]: per pyramid level, the class and distance
    outputs of ``head`` (its ``cls_tower`` / ``cls_out`` and ``reg_tower`` / ``reg_out``),
    flattened row-major and the levels concatenated, the order of ``anchor_points``."""
    levels = []
    for p in pyramid:
        level = torch.cat([head.cls_out(head.cls_tower(p)), head.reg_out(head.reg_tower(p))], dim=1)
        levels.append(level.flatten(2).transpose(1, 2))  # [B, h*w, channels]
    return torch.cat(levels, dim=1)
