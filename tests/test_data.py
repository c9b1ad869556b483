"""Data sources: digits split, MedMNIST-style .npz, arrays, and their errors."""

import numpy as np
import pytest
import torch

from peerdistill import DataSplits
from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import DataError


def test_digits_split_is_stratified_fixed_and_disjoint():
    a, b = build_data(DataSpec()), build_data(DataSpec())
    assert (len(a.train), len(a.val), len(a.test)) == (1077, 360, 360)
    assert torch.equal(a.test.x, b.test.x)
    assert a.num_classes == 10 and a.input_shape == (1, 8, 8)
    counts = torch.bincount(a.test.y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 10 classes of ~180 samples, 20% each
    c = build_data(DataSpec(split_seed=1))
    assert not torch.equal(a.test.x, c.test.x)
    # training split standardised by its own statistics
    assert abs(float(a.train.x.mean())) < 1e-4 and abs(float(a.train.x.std()) - 1) < 1e-3


def test_npz_medmnist_layout(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("val", 6), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    data = build_data(DataSpec(kind="npz", root=str(path)))
    assert data.input_shape == (3, 28, 28) and data.num_classes == 2 and len(data.train) == 20
    expected = arrays["val_images"][0, 5, 7, 1] / 255.0
    mean, std = data.stats["mean"][1], data.stats["std"][1]
    assert float(data.val.x[0, 1, 5, 7]) == pytest.approx((expected - mean) / std, rel=1e-5)
    del arrays["test_labels"]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match="lacks the keys"):
        build_data(DataSpec(kind="npz", root=str(tmp_path / "bad.npz")))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="is not a .npz archive"):
        build_data(DataSpec(kind="npz", root=str(tmp_path / "junk.npz")))


def test_array_errors():
    x = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(DataError, match="4 inputs but 3 labels"):
        DataSplits.from_arrays(x, [0, 1, 0], x, [0, 1, 0, 1], x, [0, 1, 0, 1])
    with pytest.raises(DataError, match="negative"):
        DataSplits.from_arrays(x, [0, -1, 0, 1], x, [0, 1, 0, 1], x, [0, 1, 0, 1])
    with pytest.raises(DataError, match="multi-label"):
        DataSplits.from_arrays(x, np.zeros((4, 3)), x, [0, 1, 0, 1], x, [0, 1, 0, 1])
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        DataSplits.from_arrays(bad, [0, 1, 0, 1], x, [0, 1, 0, 1], x, [0, 1, 0, 1])
