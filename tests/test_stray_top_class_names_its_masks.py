"""A top mask value of a few pixels that alone makes a class (a stray 2 in 0/1 masks) is warned
of naming the masks that hold it, as the refusal of a stray value above a gap does: by file path
from data.root where the folder reader knows it, by split and index from Python."""

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.data.segmentation import segmentation_splits
from peerdistill.errors import PeerdistillWarning


def _pairs(root, names, stray=()):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        m = np.zeros((40, 40), np.uint8)
        m[5:35, 5:35] = 1  # 900 foreground pixels a mask
        if name in stray:
            m[0, 0] = 2  # one pixel: under 0.1% of the foreground
        Image.fromarray(m).save(root / "masks" / f"{name}.png")


def test_the_warning_names_the_mask_files_holding_the_top_value(tmp_path):
    _pairs(tmp_path / "d", [f"img{i:02d}" for i in range(12)], stray={"img04"})
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
