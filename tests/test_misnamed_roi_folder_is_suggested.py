"""A data.roi folder that is not there is answered with the folders the root (or split folder)
holds, and the nearest of them where one is close (as a misnamed data.split_dirs folder is)."""

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import DataError


def _drive_like(root, roi_folder="mask"):
    for folder in ("images", "1st_manual", roi_folder):
        (root / folder).mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.eye(8, dtype=np.uint8)).save(root / "1st_manual" / f"{i}.png")
        Image.fromarray(np.ones((8, 8), np.uint8)).save(root / roi_folder / f"{i}.png")


def _refusal(root, roi, **given) -> str:
    with pytest.raises(DataError) as caught:
        build_data(DataSpec(kind="folders", root=str(root), masks="1st_manual", roi=roi, **given))
    return str(caught.value)


def test_a_misspelt_roi_folder_is_answered_with_the_nearest_one(tmp_path):
    _drive_like(tmp_path)
    assert _refusal(tmp_path, "masks") == (
        f"'{tmp_path / 'masks'}' is not a directory: data.roi names the folder of region masks; did you mean 'mask'? "
        f"('{tmp_path}' holds the folders '1st_manual', 'images', 'mask'): fix data.roi (on the command line "
        "'data.roi=mask')")


def test_a_roi_folder_like_none_there_is_answered_with_the_split_folders_own(tmp_path):
    _drive_like(tmp_path / "training")
    _drive_like(tmp_path / "testing")
    said = _refusal(tmp_path, "fov", split_dirs={"train": "training", "test": "testing"})
    assert said == (f"'{tmp_path / 'training' / 'fov'}' is not a directory: data.roi names the folder of region "
                    f"masks, and '{tmp_path / 'training'}' holds the folders '1st_manual', 'images', 'mask': set "
                    "data.roi to the folder of the region masks, or leave it out")


def test_the_images_and_masks_folders_are_never_offered_for_the_roi(tmp_path):
    _drive_like(tmp_path, roi_folder="regions")
    said = _refusal(tmp_path, "manual")  # (close to '1st_manual', the masks folder)
    assert "did you mean" not in said
    assert ("data.roi names the folder of region masks, and "
            f"'{tmp_path}' holds the folders '1st_manual', 'images', 'regions'") in said
