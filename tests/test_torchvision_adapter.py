"""The torchvision FCOS adapter, on a stand-in with torchvision FCOS's attribute layout (CI has no
torchvision); the last test trains the real model where torchvision is installed."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from peerdistill.detection import HeadLayout, anchor_points
from peerdistill.errors import ConfigError
from peerdistill.losses.detection import detection_loss
from peerdistill.models import TorchvisionFCOS, build_model


class _Backbone(nn.Module):
    """Three pyramid levels at strides 8, 16, 32 returned as an OrderedDict, like BackboneWithFPN."""

    out_channels = 8

    def __init__(self):
        super().__init__()
        self.body = nn.ModuleList([nn.Conv2d(3, 8, 3, 8, 1), nn.Conv2d(8, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 2, 1)])

    def forward(self, x):
        out = OrderedDict()
        for i, layer in enumerate(self.body):
            x = layer(x)
            out[str(i)] = x
        return out


def _stand_in(num_classes=2):
    tower = lambda: nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.ReLU())  # noqa: E731
    model = nn.Module()
    model.backbone = _Backbone()
    model.head = nn.Module()
    model.head.classification_head = nn.Module()
    model.head.classification_head.conv = tower()
    model.head.classification_head.cls_logits = nn.Conv2d(8, num_classes, 3, padding=1)
    model.head.regression_head = nn.Module()
    model.head.regression_head.conv = tower()
    model.head.regression_head.bbox_reg = nn.Conv2d(8, 4, 3, padding=1)
    return model


def test_the_adapter_gives_the_dense_output_in_anchor_point_order():
    torch.manual_seed(0)
    adapter = TorchvisionFCOS(_stand_in(), num_classes=2, reg_max=4, strides=(8, 16, 32))
    out = adapter(torch.randn(2, 3, 64, 96))
    points, _ = anchor_points(64, 96, (8, 16, 32), out.device)
    assert out.shape == (2, len(points), HeadLayout(2, 4, (8, 16, 32)).channels)
    # The first level's class map, flattened row-major, is the first rows of the output.
    p3 = adapter.backbone(torch.zeros(1, 3, 64, 96))["0"]
    cls = adapter.cls_out(adapter.cls_tower(p3))[0]  # [C, 8, 12]
    dense = adapter(torch.zeros(1, 3, 64, 96))[0]
    torch.testing.assert_close(dense[: 8 * 12, :2], cls.flatten(1).T)
    assert adapter.layout == HeadLayout(2, 4, (8, 16, 32))


def test_the_adapter_learns_with_the_detection_loss():
    torch.manual_seed(0)
    adapter = TorchvisionFCOS(_stand_in(), num_classes=1, reg_max=4, strides=(8, 16, 32))
    x = torch.randn(2, 3, 64, 64)
    targets = torch.tensor([[[0, 8, 8, 40, 40]], [[0, 20, 16, 60, 48]]], dtype=torch.float32)
    optimizer = torch.optim.Adam(adapter.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        terms = detection_loss(adapter(x), targets, adapter.layout, (64, 64))
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_a_model_without_fcos_parts_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs a torchvision FCOS model"):
        TorchvisionFCOS(nn.Linear(2, 2), num_classes=1)


def test_the_zoo_entry_says_when_torchvision_is_missing():
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="needs torchvision"):
            build_model("torchvision_fcos", {}, 3, 2)
    else:
        pytest.skip("torchvision is installed here: the last test builds the real model")


def test_torchvisions_fcos_teaches_zoo_detectors(tmp_path):
    """Where torchvision is installed: its FCOS-ResNet50-FPN as the teacher of two zoo detectors
    with the same five strides, one epoch of kd+ml on the synthetic boxes, then scored from its
    run folder and exported."""
    pytest.importorskip("torchvision", reason="torchvision is not installed on this machine")
    from peerdistill import evaluate_run, export_run
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    student = {"arch": "detector", "args": {"width": 8, "strides": [8, 16, 32, 64, 128]}}
    tree = {"name": "tv", "out_dir": str(tmp_path), "task": "detection",
            "data": {"kind": "boxes", "boxes_counts": [32, 8, 8]},
            "teacher": {"arch": "torchvision_fcos"}, "students": [student, student],
            "distill": {"preset": "kd+ml", "rampup_epochs": 1}, "train": {"epochs": 1, "batch_size": 8}}
    result = train_from_config(validate(tree), progress=False)
    assert "train/loss/student1/kl<-teacher" in result.history[-1]
    assert 0 <= result.test_at_best["teacher"]["ap"] <= 1
    # read back from its folder (the teacher rebuilt from its zoo name), scored as at the end of training
    scores = evaluate_run(tmp_path / "tv")
    for model, at_training in result.test_at_best.items():
        assert scores[model]["ap"] == pytest.approx(at_training["ap"], abs=1e-6), model
    # exported as its dense head outputs (boxes decoded outside the graph), checked by onnxruntime
    assert export_run(tmp_path / "tv", "teacher").max_abs_diff <= 1e-4
