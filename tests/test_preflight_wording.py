"""Training warnings worded for the run they are given to: grey images in three equal channels
(files read as colour, or arrays given so), and dense windows judged by the validation images
whose sizes are known without reading them."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset

from peerdistill.cli import main
from peerdistill.data import DataSplits
from peerdistill.data.splits import TensorData
from peerdistill.engine.evaluate import windows_per_image
from peerdistill.engine.preflight import Preflight

ARRAYS_ALL_GREY = ("every one of the 24 training images has three equal channels (a grey image repeated three "
                   "times): {how} the arrays with one channel instead ([N, 1, H, W] or [N, H, W]), the same "
                   "information at a third of the input's size")


def _grey_in_colour(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    grey = np.random.default_rng(seed).random((n, 1, 8, 8)).astype(np.float32)
    return np.repeat(grey, 3, axis=1), np.arange(n) % 2


def _python_trainer(channels: int = 3):
    from peerdistill import ClassificationTask, Cohort, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.models import SmallCNN

    student = SmallCNN(channels, 2, width=4, depth=1)
    return Trainer(Cohort.from_modules([student]), KnowledgeGraph([]), ClassificationTask(2),
                   train=TrainSpec(epochs=1, batch_size=8), progress=False)


def test_arrays_of_three_equal_channels_built_in_python_are_told_to_pass_one_channel():
    """Review 57d: a Python run was told of 'grey files' and data.grey=true, a key it has not."""
    splits = [_grey_in_colour(n, s) for n, s in ((24, 0), (8, 1), (8, 2))]
    data = DataSplits.from_arrays(*(a for split in splits for a in split))
    said = _python_trainer().check(data).warnings
    assert ARRAYS_ALL_GREY.format(how="pass") in said
    assert not any("data.grey" in w or "grey file" in w for w in said)
    # some in colour: the mix is said of arrays too, with a fix a Python caller can make
    x = splits[0][0].copy()
    x[:6, 1] *= 0.5
    data = DataSplits.from_arrays(x, splits[0][1], *splits[1], *splits[2])
    said = _python_trainer().check(data).warnings
    assert ("18 of the 24 training images are grey (three equal channels) and the others colour: if they come from "
            "different sources (scanners, sites, cameras), a model can learn colour as a shortcut to them; check that "
            "each class has both kinds, or convert every image to grey (one channel)") in said
    assert not any("data.grey" in w or "grey file" in w for w in said)


def test_a_configs_npz_arrays_and_image_files_each_get_their_own_fix(tmp_path, capsys):
    (x, y), (xv, yv) = _grey_in_colour(24, 0), _grey_in_colour(8, 1)
    np.savez(tmp_path / "g.npz", train_images=x, train_labels=y, val_images=xv, val_labels=yv, test_images=xv,
             test_labels=yv)
    quick = [f"out_dir={tmp_path / 'runs'}", "teacher=null", "distill.preset=independent",
             "students=[{arch: cnn, args: {width: 4, depth: 1}}]", "train.batch_size=8", "--dry-run"]
    assert main(["train", "data.kind=npz", f"data.root={tmp_path / 'g.npz'}", *quick]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert ARRAYS_ALL_GREY.format(how="save") in said  # (data.grey does not apply to npz: refused if set)
    assert "data.grey" not in said and "grey file" not in said
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "xr" / label).mkdir(parents=True)
        for i in range(8):
            Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "xr" / label / f"{i}.png")
    assert main(["train", "data.kind=image_folder", f"data.root={tmp_path / 'xr'}", "data.val_fraction=0.25",
                 "data.test_fraction=0.25", *quick]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert ("is a grey file read as colour (its one channel repeated three times): data.grey=true reads them with "
            "one channel, the same information at a third of the input's size") in said
    assert "three equal channels" not in said


class _Windows(Preflight):
    """The settings ``_warn_of_dense_windows`` reads of a trainer: 16x16 windows at overlap 0.9."""
    window, window_overlap = (16, 16), 0.9


class _Images(Dataset):
    """Images of their own sizes, read only when asked for (as files would be), counting the reads."""

    def __init__(self, sizes):
        self.sizes, self.read = sizes, 0

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        self.read += 1
        return torch.zeros(1, *self.sizes[i]), torch.zeros(self.sizes[i], dtype=torch.long)


def _dense_windows_said(val) -> list[str]:
    masks = TensorData(torch.zeros(2, 1, 64, 64), torch.zeros(2, 64, 64, dtype=torch.long))
    with pytest.warns(UserWarning) as said:
        _Windows()._warn_of_dense_windows(DataSplits(masks, val, masks, num_classes=2))
    return [" ".join(str(w.message).split()) for w in said]


def test_dense_windows_are_judged_by_the_largest_known_validation_size_else_said_to_be_the_firsts():
    """Review 56i's warning sized every image as data.val[0]: a split of mixed sizes whose first
    is small was judged by it. Arrays' sizes are known unread, and the largest is judged; a dataset
    of files is not read through for a warning (DRIVE-sized images take seconds each), so its first
    image stands for the rest, and the warning says so."""
    # by hand (MONAI's grid, as test_segmentation checks): 64x64 at 0.9 is 49 x 49 windows, 32x32 17 x 17
    assert windows_per_image((64, 64), (16, 16), 0.9) == 2401 and windows_per_image((32, 32), (16, 16), 0.9) == 289
    assert windows_per_image((64, 64), (16, 16), 0.5) == 49 and windows_per_image((32, 32), (16, 16), 0.5) == 9
    small = TensorData(torch.zeros(3, 1, 32, 32), torch.zeros(3, 32, 32, dtype=torch.long))
    large = TensorData(torch.zeros(2, 1, 64, 64), torch.zeros(2, 64, 64, dtype=torch.long))
    assert _dense_windows_said(ConcatDataset([small, large])) == [
        "data.window_overlap 0.9: the largest validation image, 64x64, is scored by 2,401 windows of 16x16, 49x the "
        "49 of overlap 0.5, at every validation and test pass and in eval, predict and an export; 0.5 blends the "
        "windows' edges already"]
    assert _dense_windows_said(Subset(small, [0, 1])) == [
        "data.window_overlap 0.9: a 32x32 image is scored by 289 windows of 16x16, 32x the 9 of overlap 0.5, at "
        "every validation and test pass and in eval, predict and an export; 0.5 blends the windows' edges already"]
    files = _Images([(32, 32), (64, 64), (64, 64)])
    assert _dense_windows_said(files) == [
        "data.window_overlap 0.9: images of the first validation image's size, 32x32, are each scored by 289 "
        "windows of 16x16, 32x the 9 of overlap 0.5, at every validation and test pass and in eval, predict and an "
        "export; 0.5 blends the windows' edges already (the other validation images are not read for this warning: "
        "larger ones take more windows)"]
    assert files.read == 1  # the first image alone: the warning stays cheap
    assert _dense_windows_said(_Images([(64, 64)])) == [  # one image: it is the split's size
        "data.window_overlap 0.9: a 64x64 image is scored by 2,401 windows of 16x16, 49x the 49 of overlap 0.5, at "
        "every validation and test pass and in eval, predict and an export; 0.5 blends the windows' edges already"]


def _grey_pngs_stored_as_rgb(root, colour: int = 0) -> None:
    """Two classes of 8x8 grey PNGs saved as RGB; the first ``colour`` of class 'a' in colour."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(20):
            g = (rng.random((8, 8)) * 255).astype(np.uint8)
            rgb = np.stack([g, g, g // 2 if label == "a" and i < colour else g], -1)
            Image.fromarray(rgb).save(root / label / f"{i}.png")


def test_image_files_read_in_python_are_told_of_dataspec_grey_not_of_arrays(tmp_path):
    """Files read by build_data(DataSpec(...)) and trained in Python were told to 'pass the arrays
    with one channel', arrays the caller never had: the fix is DataSpec(..., grey=True)."""
    from peerdistill.config import DataSpec
    from peerdistill.data import build_data

    _grey_pngs_stored_as_rgb(tmp_path / "all")
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "all")))
    n = len(data.train)
    said = _python_trainer().check(data).warnings
    assert (f"every one of the {n} training images is a grey file read as colour (its one channel repeated three "
            "times): DataSpec(..., grey=True) reads them with one channel, the same information at a third of the "
            "input's size") in said
    assert not any("the arrays" in w or "data.grey" in w for w in said)
    _grey_pngs_stored_as_rgb(tmp_path / "mixed", colour=12)
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "mixed")))
    said = _python_trainer().check(data).warnings
    mixed = [w for w in said if "grey files (read as colour" in w]
    assert len(mixed) == 1 and mixed[0].endswith("or read every image grey (DataSpec(..., grey=True))")
    assert not any("convert every image to grey" in w or "data.grey" in w for w in said)


def test_arrays_read_from_an_npz_in_python_are_told_to_save_them_with_one_channel(tmp_path):
    from peerdistill.config import DataSpec
    from peerdistill.data import build_data

    (x, y), (xv, yv) = _grey_in_colour(24, 0), _grey_in_colour(8, 1)
    np.savez(tmp_path / "g.npz", train_images=x, train_labels=y, val_images=xv, val_labels=yv, test_images=xv,
             test_labels=yv)
    said = _python_trainer().check(build_data(DataSpec(kind="npz", root=str(tmp_path / "g.npz")))).warnings
    assert ARRAYS_ALL_GREY.format(how="save") in said
    assert not any("DataSpec" in w or "grey file" in w for w in said)
