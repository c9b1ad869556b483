"""A cohort of classifiers (or segmenters) given task detection is refused naming the models, their
arch and the zoo's detectors, not an internal attribute."""

import pytest
from torch import nn

from peerdistill.errors import ConfigError
from peerdistill.models import ZOO, build_model
from peerdistill.tasks.detection import detection_archs, layout_of, not_detectors


def test_the_zoos_detectors_are_those_building_a_head_layout():
    assert detection_archs() == ["detector", "torchvision_fcos"]
    # checked by building the cheap ones: a detector has a layout, the others none
    for arch in sorted(set(ZOO) - {"torchvision_fcos"}):
        model = build_model(arch, {}, 3, 2)
        assert hasattr(model, "layout") == (arch in detection_archs()), arch


def test_classifiers_are_refused_by_arch_with_the_detectors_named():
    modules = {"teacher": build_model("resnet", {}, 3, 2), "student1": build_model("cnn", {}, 3, 2),
               "student2": build_model("detector", {}, 3, 2)}
    with pytest.raises(ConfigError) as caught:
        layout_of(modules)
    assert str(caught.value) == (
        "task detection needs detectors, but teacher (arch 'resnet'), student1 (arch 'cnn') are not: set their arch "
        "to one of the zoo's detectors (detector, torchvision_fcos), or to a model of your own exposing its head "
        "layout as 'layout' (a peerdistill.detection.HeadLayout)")


def test_a_model_of_ones_own_without_a_layout_is_told_how_to_expose_one():
    with pytest.raises(ConfigError, match=r"but mine expose no head layout \('layout', a peerdistill.detection."
                                          r"HeadLayout\): use one of the zoo's detectors \(arch: detector or "
                                          r"torchvision_fcos\), or wrap your model"):
        layout_of({"mine": nn.Conv2d(3, 3, 1), "other": build_model("detector", {}, 3, 2)})


def test_not_detectors_judges_archs_before_any_model_is_built():
    assert not_detectors({"a": "detector", "b": "torchvision_fcos", "c": "my.module:factory"}) is None
    assert not_detectors({"s": "unet"}).startswith("task detection needs detectors, but s (arch 'unet') is not")


def test_detectors_sharing_a_layout_pass():
    modules = {"a": build_model("detector", {}, 3, 2), "b": build_model("detector", {}, 3, 2)}
    assert layout_of(modules) == modules["a"].layout
