"""A data.split_dirs folder misnamed (case, or a typo) is answered with the folder meant and the
corrected setting, without the remark on scoring a set whole that fits a folder truly absent."""

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import DataError


def _drive_like(root):
    rng = np.random.default_rng(0)
    for split in ("training", "testing"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir()
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / split / "images" / f"{i}.png")
            m = np.zeros((16, 16), np.uint8)
            m[2:8, 2:8] = 1
            Image.fromarray(m).save(root / split / "masks" / f"{i}.png")


@pytest.mark.parametrize("typed", ["Testing", "testng"])
def test_a_misnamed_split_folder_gets_the_nearest_one(tmp_path, typed):
    _drive_like(tmp_path / "drive")
    with pytest.raises(DataError) as caught:
        build_data(DataSpec(kind="folders", root=str(tmp_path / "drive"),
                            split_dirs={"train": "training", "test": typed}))
    said = str(caught.value)
    assert (f"lacks the split folder(s) '{typed}' (test) that data.split_dirs names; did you mean 'testing' for "
            f"'{typed}'? (it holds the folders 'testing', 'training'): fix data.split_dirs (on the command line "
            "'data.split_dirs={train: training, test: testing}')") in said
    assert "--split all" not in said


def test_an_unlike_name_lists_the_folders_and_keeps_the_whole_set_remark(tmp_path):
    _drive_like(tmp_path / "drive")
    with pytest.raises(DataError) as caught:
        build_data(DataSpec(kind="folders", root=str(tmp_path / "drive"),
                            split_dirs={"train": "training", "test": "zzz"}))
    said = str(caught.value)
    assert "did you mean" not in said
    assert "it holds the folders 'testing', 'training': name the folders it holds in data.split_dirs" in said
    assert "--split all" in said
