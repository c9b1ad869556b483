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
