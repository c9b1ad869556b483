"""Shared fixtures: tiny deterministic data and configs that train in seconds."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs in one worker per core (pytest -n 2): each, and what it starts, takes one
    # thread, so the workers do not fight over the cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

from peerdistill import DataSplits


def _blobs(n: int, seed: int, num_classes: int = 3, size: int = 8):
    """Noisy images whose class is a texture (horizontal stripes, vertical stripes, checkerboard):
    learnable by a tiny conv net with global pooling in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    rows, cols = np.indices((size, size))
    patterns = [(rows % 2).astype(np.float32), (cols % 2).astype(np.float32), ((rows + cols) % 2).astype(np.float32)]
    x = rng.normal(0, 0.5, (n, 1, size, size)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0] += patterns[int(c) % 3]
    return x, y


@pytest.fixture
def tiny_data() -> DataSplits:
    xs = [_blobs(n, s) for n, s in ((240, 0), (60, 1), (60, 2))]
    return DataSplits.from_arrays(xs[0][0], xs[0][1], xs[1][0], xs[1][1], xs[2][0], xs[2][1])


@pytest.fixture
def fast_tree(tmp_path) -> dict:
    """A config mapping on digits that trains in about a second."""
    return {
        "name": "t",
        "out_dir": str(tmp_path / "runs"),
        "teacher": {"arch": "cnn", "args": {"width": 8, "depth": 2}},
        "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}},
                     {"arch": "cnn", "args": {"width": 4, "depth": 1}}],
        "train": {"epochs": 2, "batch_size": 128},
        "distill": {"rampup_epochs": 1},
    }


@pytest.fixture(autouse=True)
def _reset_determinism():
    yield
    torch.use_deterministic_algorithms(False)


def alternating_npz_arrays(counts: tuple[int, int, int], size: int = 6) -> dict[str, np.ndarray]:
    """An npz's train/val/test arrays: uniform noise images, labels 0, 1, 0, 1, ..."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        arrays[f"{split}_images"] = rng.random((n, size, size)).astype(np.float32)
        arrays[f"{split}_labels"] = np.arange(n) % 2
    return arrays


def train_two_class_npz_run(folder, seed: int, test_size: int = 40, shift: float = 0.6, epochs: int = 3):
    """A two-class run on random 6x6 arrays (the positive class brighter by ``shift``) saved as
    folder/d.npz, trained briefly as folder/b; returns (run directory, the arrays)."""
    import numpy as np

    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 80), ("val", 40), ("test", test_size)):
        y = rng.integers(0, 2, n)
        arrays[f"{split}_images"] = (rng.normal(0, 1, (n, 6, 6)) + y[:, None, None] * shift).astype(np.float32)
        arrays[f"{split}_labels"] = y
    np.savez(folder / "d.npz", **arrays)
    train_from_config(validate({"name": "b", "out_dir": str(folder), "distill": {"preset": "ml"},
                                "data": {"kind": "npz", "root": str(folder / "d.npz")},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": epochs, "batch_size": 16}}), progress=False)
    return folder / "b", arrays


def _tiny_shapes_run(folder, name: str, **data):
    """Two tiny U-Net students (mutual learning) on a few generated shapes, one epoch: a
    segmentation run to read, score, export and predict, not to change."""
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    train_from_config(validate({"name": name, "out_dir": str(folder), "task": "segmentation", "teacher": None,
                                "data": {"kind": "shapes", "shapes_counts": [16, 8, 8], **data},
                                "students": [{"arch": "unet", "args": {"width": 4, "depth": 1}}] * 2,
                                "distill": {"preset": "ml"}, "train": {"epochs": 1, "batch_size": 8}}), progress=False)
    return folder / name


@pytest.fixture(scope="session")
def shapes_run(tmp_path_factory):
    return _tiny_shapes_run(tmp_path_factory.mktemp("shapes"), "s")


@pytest.fixture(scope="session")
def patch_shapes_run(tmp_path_factory):
    """Trained on 32x32 patches: its whole images are predicted by a sliding window."""
    return _tiny_shapes_run(tmp_path_factory.mktemp("patches"), "p", patch_size=32)
