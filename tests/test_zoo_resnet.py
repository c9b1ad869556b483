"""The zoo's ResNets reproduce the standard layouts (parameter counts published with
torchvision's ResNet-18 and ResNet-50, 1000 classes)."""

import pytest
import torch

from peerdistill.models import ResNet, count_parameters


def test_resnet18_and_resnet50_layouts_have_the_published_parameter_counts():
    assert count_parameters(ResNet(3, 1000, blocks=[2, 2, 2, 2], width=64, stem="imagenet")) == 11_689_512
    assert count_parameters(ResNet(3, 1000, blocks=[3, 4, 6, 3], width=64, block="bottleneck",
                                   stem="imagenet")) == 25_557_032


def test_the_imagenet_stem_reduces_224_pixels_to_a_7x7_last_stage():
    model = ResNet(3, 5, blocks=[1, 1, 1, 1], width=8, block="bottleneck", stem="imagenet")
    seen = {}
    model.layers[3].register_forward_hook(lambda m, i, o: seen.update(shape=tuple(o.shape)))
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 5)
    assert seen["shape"] == (2, 8 * 8 * 4, 7, 7)  # width x 2^3 x bottleneck expansion 4


def test_an_unknown_block_or_stem_is_refused():
    with pytest.raises(ValueError, match="block must be one of"):
        ResNet(block="wide")
    with pytest.raises(ValueError, match="stem 'small' or 'imagenet'"):
        ResNet(stem="big")
