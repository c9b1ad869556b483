"""A task's ``class_weights`` are checked when the task is built, and ``balanced_class_weights``
reads the labels a ``from_arrays`` user holds (NumPy arrays, lists, MedMNIST's [N, 1])."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from peerdistill.errors import ConfigError, DataError
from peerdistill.tasks import ClassificationTask, SegmentationTask, balanced_class_weights


def _weighted_ce_by_hand(logits: torch.Tensor, labels: torch.Tensor, weights: list[float]) -> float:
    """sum_i w_{y_i} * -log softmax(z_i)_{y_i} / sum_i w_{y_i}, in float64 Python."""
    total = weight_sum = 0.0
    for z, y in zip(logits.double().tolist(), labels.tolist()):
        total += weights[y] * (math.log(sum(math.exp(v) for v in z)) - z[y])
        weight_sum += weights[y]
    return total / weight_sum


@pytest.mark.parametrize("given", [list, tuple, np.array, lambda w: np.array(w, dtype=np.float64), torch.tensor])
def test_class_weights_given_as_a_list_or_array_weigh_the_loss(given):
    """A list or NumPy array failed at the first training step ('list' object has no attribute 'to')."""
    torch.manual_seed(3)
    logits, labels, weights = torch.randn(7, 3) * 2, torch.tensor([0, 2, 2, 1, 0, 2, 1]), [0.5, 4.0, 1.5]
    task = ClassificationTask(3, class_weights=given(weights))
    assert task.class_weights.dtype == torch.float32 and task.class_weights.shape == (3,)
    assert task.supervised_loss(logits, labels).item() == pytest.approx(_weighted_ce_by_hand(logits, labels, weights),
                                                                        rel=1e-6)


def test_segmentation_class_weights_given_as_a_list_weigh_each_pixel():
    torch.manual_seed(4)
    logits, masks, weights = torch.randn(2, 2, 3, 3), torch.randint(0, 2, (2, 3, 3)), [0.25, 3.0]
    task = SegmentationTask(2, class_weights=weights, loss="ce")
    pixels = logits.permute(0, 2, 3, 1).reshape(-1, 2)
    expected = _weighted_ce_by_hand(pixels, masks.reshape(-1), weights)
    assert task.supervised_loss(logits, masks).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("weights,message", [
    ([1.0, 0.3, 1.0], r"^ClassificationTask: class_weights has 3 weights but the task has 2 classes: give one weight "
                      r"per class, 2 numbers of 0 or more in class order 0\.\.1 \(balanced_class_weights\(train_labels, "
                      r"2\) makes them\)$"),
    (torch.tensor([1.0]), r"class_weights has 1 weight but the task has 2 classes"),
    ([[1.0, 0.3]], r"class_weights has shape \(1, 2\) but the task has 2 classes"),
    (torch.tensor([1.0, -0.3]), r"class_weights is negative for class\(es\) \[1\] \(-0\.3\): a class's weight scales "
                                r"its samples' share of the loss, so it must be 0 or more"),
    ([float("nan"), 1.0], r"class_weights is not finite for class\(es\) \[0\] \(nan\)"),
    (np.array([1.0, np.inf]), r"class_weights is not finite for class\(es\) \[1\] \(inf\)"),
    ([0, 0], r"class_weights are all 0, so no sample would count in the loss"),
    (["a", "b"], r"class_weights must be numbers, got \['a', 'b'\]"),
    ([True, False], r"class_weights must be numbers"),
    (2.0, r"class_weights takes a list, NumPy array or tensor, got 2\.0"),
    ("1,2", r"class_weights takes a list, NumPy array or tensor, got '1,2'"),
])
def test_class_weights_of_the_wrong_count_sign_or_kind_are_refused_when_the_task_is_built(weights, message):
    """A wrong count failed at the first step in torch's words; a negative weight trained silently."""
    with pytest.raises(ConfigError, match=message):
        ClassificationTask(2, class_weights=weights)


def test_segmentation_class_weights_are_checked_alike():
    with pytest.raises(ConfigError, match=r"^SegmentationTask: class_weights has 2 weights but the task has 3 classes"):
        SegmentationTask(3, class_weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match=r"^SegmentationTask: class_weights is negative for class\(es\) \[0\]"):
        SegmentationTask(2, class_weights=np.array([-1.0, 2.0]))


def test_a_zero_weight_for_some_classes_is_kept():
    """0 leaves a class out of the loss: allowed, as long as one class counts."""
    assert ClassificationTask(3, class_weights=[0, 1, 2]).class_weights.tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("labels", [
    np.array([[0], [1], [1], [1]], dtype=np.uint8),  # MedMNIST's [N, 1] uint8 labels
    np.array([0, 1, 1, 1]),
    [0, 1, 1, 1],
    torch.tensor([0, 1, 1, 1]),
    np.array([0.0, 1.0, 1.0, 1.0]),  # whole numbers stored as floats
])
def test_balanced_class_weights_read_numpy_arrays_lists_and_tensors(labels):
    """n / (K * count_c): 4 / (2 * 1) and 4 / (2 * 3). NumPy labels failed in torch.bincount."""
    assert balanced_class_weights(labels, 2).tolist() == pytest.approx([2.0, 4 / 6])
    # and the documented one-liner builds a task from them
    assert ClassificationTask(2, class_weights=balanced_class_weights(labels, 2)).class_weights.tolist() == \
        pytest.approx([2.0, 4 / 6])


def test_balanced_class_weights_refuse_labels_outside_the_classes_and_warn_of_a_class_count_too_large():
    with pytest.raises(DataError, match=r"^balanced_class_weights: the labels run from 0 to 5, outside the 2 classes "
                                        r"0\.\.1: give num_classes as the data's \(data\.num_classes\)$"):
        balanced_class_weights(np.array([0, 1, 5]), 2)
    with pytest.raises(DataError, match=r"labels run from -1 to 1"):
        balanced_class_weights([-1, 0, 1], 2)
    with pytest.raises(DataError, match=r"got labels with fractions"):
        balanced_class_weights(np.array([0.5, 1.0]), 2)
    with pytest.raises(DataError, match=r"takes the training labels, class indices 0\.\.K-1"):
        balanced_class_weights(["a", "b"], 2)
    with pytest.raises(ConfigError, match=r"num_classes must be a whole number"):
        balanced_class_weights([0, 1], "2")
    with pytest.warns(UserWarning, match=r"no label is 2 or above, yet num_classes is 3: class\(es\) from 2 have no "
                                         r"sample"):
        weights = balanced_class_weights(np.array([0, 1, 1, 1]), 3)
    assert weights.tolist() == pytest.approx([4 / 3, 4 / 9, 4 / 3])
    with warnings.catch_warnings():  # every class present: no word
        warnings.simplefilter("error")
        balanced_class_weights(np.array([0, 1, 2]), 3)


@pytest.mark.parametrize("at_once", [3, 1 << 22])
def test_balanced_class_weights_of_a_uint8_mask_with_ignored_pixels_by_hand(monkeypatch, at_once):
    """Kept: 0 0 1 2 2 2 (the 255s ignored), n = 6, K = 3: 6 / (3 * 2), 6 / (3 * 1), 6 / (3 * 3); the
    same when the pixels are counted a few at a time (3 here, so the parts split the ignored ones)."""
    import peerdistill.tasks.classification as classification

    monkeypatch.setattr(classification, "_COUNTED_AT_ONCE", at_once)
    mask = torch.tensor([[[0, 0, 1, 255], [2, 2, 2, 255]]], dtype=torch.uint8)
    for given in (mask, mask.numpy()):
        assert balanced_class_weights(given, 3, ignore_index=255).tolist() == pytest.approx([1.0, 2.0, 2 / 3])
    # a label out of range in a later part is refused with the range of them all
    with pytest.raises(DataError, match=r"^balanced_class_weights: the labels run from 0 to 7, outside the 3 classes"):
        balanced_class_weights(torch.tensor([0, 1, 255, 2, 7, 1], dtype=torch.uint8), 3, ignore_index=255)
    # an ignore_index the dtype cannot hold (-100 of uint8) drops nothing
    assert balanced_class_weights(mask[mask != 255], 3, ignore_index=-100).tolist() == pytest.approx([1.0, 2.0, 2 / 3])


@pytest.mark.parametrize("labels", [[], np.array([], dtype=np.int64), torch.empty(0, 8, 8, dtype=torch.uint8)])
def test_balanced_class_weights_refuse_empty_labels(labels):
    """All-zero weights were returned, refused later as 'class_weights are all 0'."""
    with pytest.raises(DataError, match=r"^balanced_class_weights: got no labels \(an empty training split\?\), and "
                                        r"it weighs each class by its share of them: give the training labels \(or "
                                        r"masks\), class indices 0\.\.K-1$"):
        balanced_class_weights(labels, 2)


def test_balanced_class_weights_refuse_masks_of_ignored_pixels_alone():
    with pytest.raises(DataError, match=r"^balanced_class_weights: all 12 labels are ignore_index 255 \(pixels marked "
                                        r"unlabelled\), so no class has a sample to weigh it by"):
        balanced_class_weights(torch.full((3, 2, 2), 255, dtype=torch.uint8), 2, ignore_index=255)

