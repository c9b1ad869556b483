"""A stray mask value (7 in 0/1 masks) is refused naming the mask(s) that hold it, and a top
value of a few pixels that alone makes a class (a stray 2 in 0/1 masks) is warned of naming them:
by file path from data.root where the folder reader knows it, by split and index from Python."""

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.data.segmentation import segmentation_splits
from peerdistill.errors import DataError, PeerdistillWarning


def _pairs(root, names, stray=(), value=7, side=16):
    """0/1 masks of a square each, ``value`` at one pixel of those named in ``stray``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        m = np.zeros((side, side), np.uint8)
        m[2:side // 2, 2:side // 2] = 1
        if name in stray:
            m[0, 0] = value
        Image.fromarray(m).save(root / "masks" / f"{name}.png")


def test_one_folder_names_the_mask_file_holding_the_stray_value(tmp_path):
    _pairs(tmp_path / "d", [f"img{i:02d}" for i in range(12)], stray={"img04"})
    with pytest.raises(DataError, match=r"classes \[2, 3, 4, 5, 6\] have no pixel, so a stray value would add "
                                        r"classes; value\(s\) 7 are in 1 mask\(s\) \('masks/img04.png'\): fix those "
                                        r"masks, or set data.num_classes"):
        build_data(DataSpec(kind="folders", root=str(tmp_path / "d")))


def test_split_folders_name_the_split_folder_and_count_the_rest(tmp_path):
    root = tmp_path / "given"
    for split, names in (("train", ["a", "b", "c"]), ("val", ["d", "e"]), ("test", ["f"])):
        _pairs(root / split, names, stray={"b", "c", "e", "f"})
    with pytest.raises(DataError) as caught:
        build_data(DataSpec(kind="folders", root=str(root)))
    assert ("value(s) 7 are in 4 mask(s) ('train/masks/b.png', 'train/masks/c.png', 'val/masks/e.png', "
            "'test/masks/f.png')") in str(caught.value)


def test_from_python_the_mask_is_named_by_split_and_index():
    x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    m = np.zeros((4, 8, 8), np.int64)
    m[:, 2:5, 2:5] = 1
    val_m = m.copy()
    val_m[1, 0, 0] = 7
    with pytest.raises(DataError, match=r"value\(s\) 7 are in 1 mask\(s\) \(val mask 1\)"):
        segmentation_splits([x, x, x], [m, val_m, m])


def test_the_warning_names_the_mask_files_holding_the_top_value(tmp_path):
    _pairs(tmp_path / "d", [f"img{i:02d}" for i in range(12)], stray={"img04"}, value=2, side=40)  # 1 pixel of 3,889
    with pytest.warns(PeerdistillWarning, match=r"makes this a 3-class model: if it is a stray value, fix the masks "
                                                r"that hold it \(1: 'masks/img04.png'\); if class 2 is real"):
        build_data(DataSpec(kind="folders", root=str(tmp_path / "d")))


def test_from_python_the_masks_are_named_by_split_and_index_and_the_rest_counted():
    x = np.random.default_rng(0).random((8, 3, 40, 40)).astype(np.float32)
    m = np.zeros((8, 40, 40), np.int64)
    m[:, 5:35, 5:35] = 1
    train_m, val_m = m.copy(), m.copy()
    train_m[[1, 3], 0, 0] = 2
    val_m[2:7, 0, 0] = 2  # 7 pixels of 21,607 foreground ones
    with pytest.warns(PeerdistillWarning, match=r"fix the masks that hold it \(7: train mask 1, train mask 3, val mask "
                                                r"2, val mask 3, val mask 4 and 2 more\)"):
        segmentation_splits([x, x, x], [train_m, val_m, m])
