"""Pictures of predictions: which boxes are drawn, and inputs of any channel count shown."""

import numpy as np
from PIL import Image, ImageDraw

from peerdistill.pictures import PALETTE, draw_boxes, overlay, viewable


def test_boxes_under_the_minimum_score_are_not_drawn():
    picture = Image.new("RGB", (40, 30))
    draw_boxes(ImageDraw.Draw(picture), [[2, 2, 12, 12], [20, 5, 35, 25]], [0.2, 0.5], [0, 1], ["a", "b"],
               min_score=0.3)
    pixels = np.asarray(picture)
    assert not pixels[:14, :14].any()  # the faint box left out
    assert (pixels[5, 20:34] == PALETTE[2]).all(axis=-1).mean() > 0.5  # the other's top edge, class 1's colour


def test_inputs_of_one_two_or_three_channels_are_shown_in_colour():
    rng = np.random.default_rng(0)
    for channels in (1, 2, 3):
        image = rng.random((6, 5, channels)).astype(np.float32)
        shown = viewable(image)
        assert shown.shape == (6, 5, 3) and shown.dtype == np.uint8
        assert shown.min() == 0 and shown.max() == 255  # stretched to its own range
        if channels != 3:  # the first channel, grey
            assert (shown[..., 0] == shown[..., 1]).all()
            expected = (image[..., 0] - image[..., 0].min()) / (image[..., 0].max() - image[..., 0].min()) * 255
            assert np.array_equal(shown[..., 0], expected.astype(np.uint8))
    tinted = overlay(viewable(rng.random((6, 5, 2))), np.eye(6, 5, dtype=np.int64), None)
    assert tinted.shape == (6, 5, 3)


def test_two_inputs_of_one_name_are_refused_before_any_picture_is_written():
    import pytest

    from peerdistill.errors import DataError
    from peerdistill.predict import _picture_names
    from peerdistill.predict_inputs import Inputs

    read = Inputs(["site1/img001.png", "site2/img001.png"], ["img001", "img001"], [], [])
    with pytest.raises(DataError, match="would all be written as 'img001_boxes.png'"):
        _picture_names(read, "boxes")
