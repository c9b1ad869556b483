"""Precision, recall and boxes per frame at score thresholds, against counts made by hand."""

import math

import numpy as np
import pytest

from peerdistill.detection_thresholds import check_thresholds, figures_at_thresholds
from peerdistill.errors import ConfigError


def _frame(boxes, scores, labels):
    return {"boxes": np.array(boxes, np.float32).reshape(-1, 4), "scores": np.array(scores, np.float32),
            "labels": np.array(labels, np.float32)}


def test_boxes_are_matched_by_score_to_one_truth_each_of_their_class_at_iou_half():
    predictions = [
        _frame([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [21, 21, 30, 30]], [0.9, 0.8, 0.3, 0.2],
               [0, 0, 1, 0]),  # a hit; the same truth again (a false box); the wrong class; a hit (IoU 0.81)
        _frame([[5, 5, 9, 9]], [0.6], [0]),  # a frame without truth: a false box
        _frame([[10, 10, 20, 20]], [0.7], [0]),  # on a crowd region of its class: neither
    ]
    truths = [np.array([[0, 0, 0, 10, 10], [0, 20, 20, 30, 30]], np.float32), np.zeros((0, 5), np.float32),
              np.array([[-2, 0, 0, 100, 100]], np.float32)]
    got = figures_at_thresholds(predictions, truths, (0.1, 0.5))
    # 0.5: frame 1 keeps a hit and a false box and misses one truth; frame 2 a false box -> 1 hit, 2 false, 1 missed
    assert got["at0.5_precision"] == pytest.approx(1 / 3) and got["at0.5_recall"] == pytest.approx(1 / 2)
    assert got["at0.5_f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert got["at0.5_boxes_per_frame"] == pytest.approx(4 / 3)
    # 0.1: every box: 2 hits, 3 false (the crowd's box aside), nothing missed
    assert (got["at0.1_precision"], got["at0.1_recall"], got["at0.1_f1"]) == pytest.approx((0.4, 1.0, 4 / 7))
    assert got["at0.1_boxes_per_frame"] == pytest.approx(2.0)


def test_undefined_figures_are_nan_and_nothing_found_is_an_f1_of_zero():
    empty = [_frame([], [], [])]
    truth = [np.array([[0, 0, 0, 4, 4]], np.float32)]
    got = figures_at_thresholds(empty, truth, (0.5,))
    assert math.isnan(got["at0.5_precision"]) and got["at0.5_recall"] == 0 and got["at0.5_f1"] == 0
    none = figures_at_thresholds(empty, [np.zeros((0, 5), np.float32)], (0.5,))
    assert all(math.isnan(none[f"at0.5_{k}"]) for k in ("precision", "recall", "f1"))


def test_thresholds_are_scores_no_lower_than_the_boxes_were_decoded_from():
    assert check_thresholds([0.5, 0.1, 0.5], 0.05) == (0.1, 0.5)
    with pytest.raises(ConfigError, match=r"give scores between 0 and 1"):
        check_thresholds([0, 0.5], 0.05)
    with pytest.raises(ConfigError, match=r"0.01 is below the score the boxes are decoded from "
                                          r"\(detect.score_threshold=0.05\): boxes under it are not kept; give "
                                          r"detect.score_threshold=0.01 too"):
        check_thresholds([0.01, 0.5], 0.05)


def test_a_box_overlapping_two_truths_alike_takes_the_last_as_coco_does():
    """Review 47h: the first taken left the second box without its truth (1 hit, COCO 2)."""
    truths = [np.array([[0, 0, 0, 10, 10], [0, 10, 0, 20, 10]], np.float32)]  # side by side
    both = [0, 0, 20, 10]  # IoU 0.5 with each: a tie, taken by the second truth
    got = figures_at_thresholds([_frame([both, [0, 0, 10, 10]], [0.9, 0.8], [0, 0])], truths, (0.5,))
    assert got["at0.5_precision"] == 1.0 and got["at0.5_recall"] == 1.0  # the second box then has the first truth


def test_no_thresholds_given_are_the_default_ones_from_the_decoding_score_up():
    assert check_thresholds((), 0.05)[:3] == (0.05, 0.1, 0.2)
    assert check_thresholds((), 0.25) == (0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
