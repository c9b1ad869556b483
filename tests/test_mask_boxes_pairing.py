"""How boxes from masks pair images and masks: as image and mask folders do (each side counted, by
file name), an empty masks folder said as such, masks named '<id>_mask.png' paired by data.pattern,
which is offered."""

import re

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.data.detection import load_mask_boxes
from peerdistill.errors import DataError


def images_and_masks(root, names, mask_names):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in names:
        Image.new("RGB", (16, 16), (120, 60, 40)).save(root / "images" / name)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:10, 3:12] = 255
    for name in mask_names:
        Image.fromarray(mask).save(root / "masks" / name)
    return root / "images", root / "masks"


def test_an_empty_masks_folder_is_said_so(tmp_path):
    images, masks = images_and_masks(tmp_path, ["a.png", "b.png"], [])
    with pytest.raises(DataError, match=r"the masks folder '.*masks' holds no image files .* beside the 2 image\(s\) "
                                        r"of '.*images': put the masks there, or point data.masks at their folder"):
        load_mask_boxes(images, masks, 16)


def test_unpaired_names_are_counted_by_file_name(tmp_path):
    images, masks = images_and_masks(tmp_path, ["case1.png", "case2.png"], ["case1.png", "case3.png"])
    with pytest.raises(DataError, match=r"do not pair up in '.*': 1 image\(s\) without a mask \('case2.png'\); "
                                        r"1 mask\(s\) without an image \('case3.png'\)") as caught:
        load_mask_boxes(images, masks, 16)
    assert "[]" not in str(caught.value)


def test_masks_named_with_a_tail_are_offered_the_pattern_that_pairs_them(tmp_path):
    names = [f"{c}.png" for c in "abcdefghij"]
    images_and_masks(tmp_path, names, [n.replace(".png", "_mask.png") for n in names])
    with pytest.raises(DataError) as caught:
        build_data(DataSpec(kind="mask_boxes", root=str(tmp_path)))
    said = str(caught.value)
    assert "10 mask(s) without an image ('a_mask.png', 'b_mask.png', 'c_mask.png', ...)" in said
    pattern = re.search(r"on the command line 'data.pattern=(.*?)'\)", said).group(1)
    data = build_data(DataSpec(kind="mask_boxes", root=str(tmp_path), pattern=pattern))  # (the key is taken)
    assert len(data.train) + len(data.val) + len(data.test) == 10


def test_a_pattern_pairs_masks_named_with_a_tail(tmp_path):
    images, masks = images_and_masks(tmp_path, ["a.png", "b.png"], ["a_mask.png", "b_mask.png"])
    _, y, _, ids = load_mask_boxes(images, masks, 16, min_area=1, pattern=r"^(.+?)(_mask)?\.\w+$")
    assert ids == ["a", "b"] and y[:, 0].tolist() == [[0, 3, 4, 12, 10]] * 2
