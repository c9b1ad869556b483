"""What the folder loader says of image and mask names that do not pair up: names that differ
only in case, and a data.pattern computed from the names (checked to pair them) where one does."""

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import DataError


def save_pairs(root, image_names, mask_names, masks="masks"):
    """One 8x8 colour image and one 0/255 mask (a square) per name pair."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / masks).mkdir(parents=True, exist_ok=True)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    for i, (image_name, mask_name) in enumerate(zip(image_names, mask_names)):
        Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(root / "images" / image_name)
        Image.fromarray(mask).save(root / masks / mask_name)


def unpaired_message(root, **options) -> str:
    with pytest.raises(DataError, match="do not pair up") as caught:
        build_data(DataSpec(kind="folders", root=str(root), binary_masks=True, **options))
    return str(caught.value)


def test_names_differing_only_in_case_are_said_so_and_not_paired(tmp_path):
    save_pairs(tmp_path, [f"IMG0{i}.png" for i in range(4)], [f"img0{i}.png" for i in range(4)])
    message = unpaired_message(tmp_path)
    assert ("All 4 image(s) differ from a mask's name only in case ('IMG00.png' and 'img00.png', 'IMG01.png' and "
            "'img01.png', 'IMG02.png' and 'img02.png', ...): ids are case-sensitive on every system; rename the "
            "files of one folder so that each name agrees in case with its pair's.") in message
    assert "data.pattern whose first group" not in message  # (no pattern pairs them: renaming does)


def test_a_case_difference_among_other_differences_is_counted(tmp_path):
    save_pairs(tmp_path, ["Case1.png", "case2.png", "case3.png", "case4.png"],
               ["case1.png", "case2.png", "case3.png", "other.png"])
    message = unpaired_message(tmp_path)
    assert "1 of the images differ from a mask's name only in case ('Case1.png' and 'case1.png')" in message
    assert "2 image(s) without a mask ('Case1.png', 'case4.png'); 2 mask(s) without an image" in message
    assert "data.pattern whose first group is the shared id" in message  # (case4.png differs otherwise)
