"""What the folder loader says of image and mask names that do not pair up: names that differ
only in case, and a data.pattern computed from the names (checked to pair them) where one does."""

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import DataError


def save_pairs(root, image_names, mask_names, masks="masks", whole=False):
    """One 8x8 colour image and one 0/255 mask (a square; ``whole``: all 255, a region mask) per
    name pair."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / masks).mkdir(parents=True, exist_ok=True)
    mask = np.zeros((8, 8), np.uint8)
    mask[(slice(None) if whole else slice(2, 6),) * 2] = 255
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
    assert "data.pattern" not in message  # (neither the example nor a computed one: renaming pairs them)


def test_a_case_difference_among_other_differences_is_counted(tmp_path):
    save_pairs(tmp_path, ["Case1.png", "case2.png", "case3.png", "case4.png"],
               ["case1.png", "case2.png", "case3.png", "other.png"])
    message = unpaired_message(tmp_path)
    assert "1 of the images differ from a mask's name only in case ('Case1.png' and 'case1.png')" in message
    assert "2 image(s) without a mask ('Case1.png', 'case4.png'); 2 mask(s) without an image" in message
    assert "data.pattern whose first group is the shared id" in message  # (case4.png differs otherwise)


def save_drive_like(root, test_masks=("01", "02", "03")):
    """DRIVE's layout and names: training/ (21_training.tif, 1st_manual/21_manual1.gif,
    mask/21_training_mask.gif) and testing/ (01_test.tif, ...); ``test_masks``: the numbers of the
    test folder's manual masks."""
    for split, numbers, kind, manual in (("training", ("21", "22", "23", "24"), "training", ("21", "22", "23", "24")),
                                         ("testing", ("01", "02", "03"), "test", test_masks)):
        save_pairs(root / split, [f"{n}_{kind}.tif" for n in numbers], [f"{n}_manual1.gif" for n in manual],
                   masks="1st_manual")
        save_pairs(root / split, [f"{n}_{kind}.tif" for n in numbers], [f"{n}_{kind}_mask.gif" for n in numbers],
                   masks="mask", whole=True)


DRIVE_LIKE = dict(split_dirs={"train": "training", "test": "testing"}, masks="1st_manual", roi="mask")


def test_drive_names_get_the_pattern_that_pairs_them(tmp_path):
    save_drive_like(tmp_path)
    message = unpaired_message(tmp_path, **DRIVE_LIKE)
    assert (r"data.pattern '^(\d+)_' pairs every image of the set with its mask and region mask (tried on the "
            r"files): set it (on the command line 'data.pattern=^(\d+)_').") in message
    assert "e.g. '^(.+?)(_mask)?" not in message  # (the computed pattern instead of the general example)
    data = build_data(DataSpec(kind="folders", root=str(tmp_path), binary_masks=True, pattern=r"^(\d+)_",
                               val_fraction=0.25, **DRIVE_LIKE))
    assert len(data.train) + len(data.val) + len(data.test) == 7


def test_no_pattern_is_suggested_that_leaves_files_of_another_split_unpaired(tmp_path):
    save_drive_like(tmp_path, test_masks=("01", "02", "09"))  # (03_test.tif has no manual mask)
    message = unpaired_message(tmp_path, **DRIVE_LIKE)
    assert "pairs every image of the set" not in message
    assert r"e.g. '^(.+?)(_mask)?\.\w+$' pairs 'a.png' with 'a_mask.png'" in message


@pytest.mark.parametrize("images,masks,pattern", [
    (["cju0a.png", "cju0b.png", "cju0c.png"], ["cju0a_mask.png", "cju0b_mask.png", "cju0c_mask.png"],
     r"^([^_.]+)[_.]"),  # the name up to its first '_' or '.'
    (["ISIC_001.jpg", "ISIC_002.jpg", "ISIC_013.jpg"],
     ["ISIC_001_segmentation.png", "ISIC_002_segmentation.png", "ISIC_013_segmentation.png"],
     r"^(.+?)(?:_segmentation)?\.\w+$"),  # ids holding '_': the masks' common tail left out
    (["image_001.png", "image_002.png", "image_013.png"], ["mask_001.png", "mask_002.png", "mask_013.png"],
     r"^\D*(\d+)"),  # the first number
])
def test_a_simple_pattern_that_pairs_the_names_is_suggested_and_pairs_them(tmp_path, images, masks, pattern):
    save_pairs(tmp_path, images, masks)
    message = unpaired_message(tmp_path)
    assert f"data.pattern '{pattern}' pairs every image of the set with its mask (tried on the files)" in message
    data = build_data(DataSpec(kind="folders", root=str(tmp_path), binary_masks=True, pattern=pattern,
                               val_fraction=0.34, test_fraction=0.34))
    assert len(data.train) + len(data.val) + len(data.test) == 3
