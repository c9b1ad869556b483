"""Loaders on the real datasets in ../shared/data (skipped, saying why, where they are absent)."""

from pathlib import Path

import pytest

from peerdistill.config import DataSpec
from peerdistill.data import build_data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real dataset not found at {path}: these tests run where ../shared/data is beside the repository")
    return path


def test_pneumoniamnist_npz_official_splits():
    data = build_data(DataSpec(kind="npz", root=str(need(SHARED / "pneumoniamnist.npz"))))
    assert (len(data.train), len(data.val), len(data.test)) == (4708, 524, 624)
    assert data.num_classes == 2 and data.input_shape == (1, 28, 28)
    assert int(data.test.y.sum()) == 390  # pneumonia cases in the official test split


def test_kvasir_seg_image_mask_folders():
    root = need(SHARED / "kvasir-seg")
    data = build_data(DataSpec(kind="folders", root=str(root), binary_masks=True, image_size=[64, 64], split_seed=0))
    assert len(data.train) + len(data.val) + len(data.test) == 998
    assert data.input_shape == (3, 64, 64) and data.num_classes == 2
    share = data.train.y.float().mean().item()
    assert 0.05 < share < 0.4  # polyps cover a minority of each frame


def test_kvasir_seg_boxes_from_the_json_rescaled_and_split_by_seed():
    root = need(SHARED / "kvasir-seg")
    spec = DataSpec(kind="box_json", root=str(root), annotations="kavsir_bboxes.json", image_size=[96, 96],
                    val_fraction=0.15, test_fraction=0.15, split_seed=0)
    with pytest.warns(UserWarning, match="2 entries of kavsir_bboxes.json have no image"):
        data = build_data(spec)
    assert (len(data.train), len(data.val), len(data.test)) == (698, 150, 150)
    assert data.info["skipped_without_image"] == 2  # the JSON lists 1000 frames, the copy holds 998
    boxes = data.test.y[data.test.y[..., 0] >= 0]
    assert float(boxes[:, 1:].min()) >= 0 and float(boxes[:, 1:].max()) <= 96
    split = data.info["split"]
    assert not set(split["test"]) & set(split["train"]) and len(split["test"]) == 150
