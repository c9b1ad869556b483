"""torchvision's FCOS as a cohort member: its backbone, feature pyramid and head towers, with
peerdistill's dense output (class logits and distance distributions per point), so it can be a
teacher or a student beside the zoo's detectors.

torchvision is optional (it has no CPU build on some machines): importing this module never
needs it; ``torchvision_fcos`` does. torchvision's own post-processing (its image transform,
anchor decoding, NMS) is not used: peerdistill's task decodes the dense output like any
detector's, so the pyramid's strides must be given in ``strides`` (FCOS-ResNet50-FPN: P3-P7,
strides 8 to 128) and shared by every detector of the cohort.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..detection.boxes import HeadLayout
from ..errors import ConfigError
from .detector import dense_output

FCOS_STRIDES = (8, 16, 32, 64, 128)


class TorchvisionFCOS(nn.Module):
    """Wraps a ``torchvision.models.detection.FCOS`` (one anchor per location). Keeps its
    ``backbone`` (with FPN) and the convolution towers of its classification and regression
    heads; adds a distance-distribution output (``4 (reg_max + 1)`` channels) in place of its
    ltrb regression, and a new class output unless its own has ``num_classes`` channels."""

    feature_layer = "backbone.fpn"

    def __init__(self, model: nn.Module, num_classes: int, reg_max: int = 8,
                 strides: tuple[int, ...] = FCOS_STRIDES):
        super().__init__()
        try:
            head = model.head
            self.backbone = model.backbone
            self.cls_tower = head.classification_head.conv
            self.reg_tower = head.regression_head.conv
            own_cls = head.classification_head.cls_logits
            channels = int(model.backbone.out_channels)
        except AttributeError as exc:
            raise ConfigError(f"TorchvisionFCOS needs a torchvision FCOS model (backbone, head."
                              f"classification_head, head.regression_head): {exc}") from None
        anchors = getattr(getattr(model, "anchor_generator", None), "num_anchors_per_location", lambda: [1])()
        if any(a != 1 for a in anchors):
            raise ConfigError("TorchvisionFCOS needs one anchor per location, as FCOS has")
        if own_cls.out_channels == num_classes:
            self.cls_out = own_cls
        else:
            self.cls_out = nn.Conv2d(channels, num_classes, 3, padding=1)
            nn.init.normal_(self.cls_out.weight, std=0.01)
            nn.init.constant_(self.cls_out.bias, -math.log((1 - 0.01) / 0.01))  # prior 0.01, as FCOS
        self.reg_out = nn.Conv2d(channels, 4 * (reg_max + 1), 3, padding=1)
        nn.init.normal_(self.reg_out.weight, std=0.01)
        nn.init.zeros_(self.reg_out.bias)
        self.layout = HeadLayout(num_classes, reg_max, tuple(strides))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dense_output(self.backbone(x).values(), self)


def torchvision_fcos(num_classes: int, in_channels: int = 3, reg_max: int = 8, weights_backbone: str | None = None,
                     trainable_backbone_layers: int | None = None) -> TorchvisionFCOS:
    """``arch: torchvision_fcos``: torchvision's FCOS-ResNet50-FPN (random weights, or an
    ImageNet backbone with ``weights_backbone: DEFAULT``), strides 8 to 128."""
    try:
        from torchvision.models.detection import fcos_resnet50_fpn
    except ImportError:
        raise ConfigError("arch 'torchvision_fcos' needs torchvision: pip install torchvision") from None
    if in_channels != 3:
        raise ConfigError(f"torchvision's FCOS takes RGB images; the data has {in_channels} channel(s)")
    options = {} if trainable_backbone_layers is None else {"trainable_backbone_layers": trainable_backbone_layers}
    model = fcos_resnet50_fpn(weights=None, weights_backbone=weights_backbone, num_classes=num_classes, **options)
    return TorchvisionFCOS(model, num_classes, reg_max, FCOS_STRIDES)
