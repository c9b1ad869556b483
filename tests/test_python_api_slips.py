"""Python-API slips met by running docs/python-api.md: from_arrays' memory and argument order,
channels-last bands, ``compare`` given a config file's path, ``engine.predict`` given NumPy or
an unbatched image, ``evaluate_run`` of a run that kept nothing."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from peerdistill import DataSplits
from peerdistill.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("view", ["none_axis", "expand_dims", "reshape"])
def test_in_place_standardises_the_usual_grey_view_where_it_lies(view):
    """x[:, None] has a channel stride of 0 (still contiguous): it was copied, the caller's array left
    as it was and the set held twice."""
    rng = np.random.default_rng(0)
    grey = [rng.random((n, 8, 8)).astype(np.float32) for n in (20, 6, 6)]
    make = {"none_axis": lambda a: a[:, None], "expand_dims": lambda a: np.expand_dims(a, 1),
            "reshape": lambda a: a.reshape(len(a), 1, 8, 8)}[view]
    xs = [make(a) for a in grey]
    before = [a.copy() for a in xs]
    y = [np.arange(len(a)) % 2 for a in xs]
    data = DataSplits.from_arrays(xs[0], y[0], xs[1], y[1], xs[2], y[2], in_place=True)
    mean, std = float(before[0].mean()), float(before[0].std(ddof=1))
    for split, given, old in zip((data.train, data.val, data.test), xs, before):
        assert np.shares_memory(split.x.numpy(), given)  # no second copy
        np.testing.assert_allclose(given, (old - mean) / std, rtol=1e-5, atol=1e-5)  # the caller's array changed
        assert split.x.shape[1] == 1 and split.x.stride() == (64, 64, 8, 1)  # row-major strides, as before
        assert split.x.view(len(given), -1).shape == (len(given), 64)


def test_without_in_place_the_grey_view_is_left_as_it_was():
    rng = np.random.default_rng(1)
    x = rng.random((20, 8, 8)).astype(np.float32)[:, None]
    kept = x.copy()
    y = np.arange(20) % 2
    data = DataSplits.from_arrays(x, y, x, y, x, y)
    np.testing.assert_array_equal(x, kept)
    assert not np.shares_memory(data.train.x.numpy(), x)


def test_one_channel_channels_last_images_share_the_callers_memory_with_row_major_strides():
    """[N, H, W, 1] permuted: row-major strides (not channels-last ones) as a view, no copy."""
    x = np.random.default_rng(2).random((6, 8, 8, 1)).astype(np.float32)
    y = np.array([0, 1] * 3)
    data = DataSplits.from_arrays(x, y, x, y, x, y, normalize=False)
    assert data.train.x.stride() == (64, 64, 8, 1) and np.shares_memory(data.train.x.numpy(), x)
    out = torch.nn.functional.conv2d(data.train.x, torch.ones(2, 1, 3, 3))
    assert out.is_contiguous()  # convolutions do not run channels-last unasked


def test_from_arrays_given_the_images_first_then_the_labels_says_the_order():
    rng = np.random.default_rng(3)
    x, y = rng.random((30, 8, 8)).astype(np.float32), np.arange(30) % 2
    with pytest.raises(DataError, match=r"^from_arrays takes x_train, y_train, x_val, y_val, x_test, y_test, in that "
                                        r"order \(each split's images, then its labels\), and x_test has shape \(30,\), "
                                        r"one class per sample \(labels\?\); y_train has shape \(30, 8, 8\) of floats "
                                        r"\(images\?\): were the images given first, then the labels"):
        DataSplits.from_arrays(x, x, x, y, y, y)
    u, y1 = (x * 255).astype(np.uint8), y[:, None]  # MedMNIST's uint8 images and [N, 1] labels
    with pytest.raises(DataError, match=r"^from_arrays takes x_train, y_train.*x_test has shape \(30, 1\)"):
        DataSplits.from_arrays(u, u, u, y1, y1, y1)
    with pytest.raises(DataError, match=r"^from_arrays takes x_train, y_train.*x_val has shape \(30,\)"):
        DataSplits.from_arrays(x, x, y, y, x, y)  # scikit-learn's X_train, X_test, y_train, y_test and more
    # masks in the labels' places are still segmentation's, not a slip of order
    with pytest.raises(DataError, match=r"^train labels have shape \(30, 8, 8\): masks \[N, H, W\] are segmentation's"):
        DataSplits.from_arrays(x, (x > 0.5).astype(np.int64), x, y, x, y)


def test_channels_last_images_of_five_bands_read_as_channels_first_are_warned_of():
    rng = np.random.default_rng(4)
    bands, y = rng.random((12, 28, 28, 5)).astype(np.float32), np.arange(12) % 2
    with pytest.warns(UserWarning, match=r"the training images are read as \[N, C, H, W\]: 28 channels of 28 x 5 "
                                         r"pixels\. If they are channels-last, 5 bands of 28 x 28 pixels, say so: "
                                         r"DataSplits\.from_arrays\(\.\.\., channels_last=True\)"):
        assert DataSplits.from_arrays(bands, y, bands, y, bands, y).input_shape == (28, 28, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert DataSplits.from_arrays(bands, y, bands, y, bands, y, channels_last=True).input_shape == (5, 28, 28)
        assert DataSplits.from_arrays(bands, y, bands, y, bands, y, channels_last=False).input_shape == (28, 28, 5)
        first = rng.random((12, 5, 28, 28)).astype(np.float32)  # channels-first already
        assert DataSplits.from_arrays(first, y, first, y, first, y).input_shape == (5, 28, 28)


def _digits_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "digits.yaml"
    shutil.copy(REPO / "recipes" / "digits.yaml", path)
    return path


@pytest.mark.parametrize("as_", [str, Path, lambda p: [str(p)]])
def test_compare_reads_a_config_files_path_as_the_command_does(tmp_path, monkeypatch, as_):
    """compare("recipe.yaml", ...) took the path's characters for configs: AttributeError 'str' ... 'get'."""
    from peerdistill.compare import compare
    from peerdistill.config import load_yaml

    monkeypatch.chdir(tmp_path)
    path = _digits_recipe(tmp_path)
    by_path = compare(as_(path), ["independent"], 1, out="cmp", dry_run=True, progress=False)
    by_tree = compare(load_yaml(path), ["independent"], 1, out="cmp", dry_run=True, progress=False)
    assert by_path.directory == by_tree.directory == Path("cmp") and by_path.rows == by_tree.rows == []
    assert not (tmp_path / "cmp").exists()  # a dry run writes nothing


def test_compare_names_a_config_file_as_the_command_does_and_refuses_what_is_no_config(tmp_path, monkeypatch):
    from peerdistill.compare import compare

    monkeypatch.chdir(tmp_path)
    path = _digits_recipe(tmp_path)
    with pytest.raises(ConfigError, match=f"^compare: config '{path}' is given twice"):
        compare([str(path), str(path)], None, 1, dry_run=True, progress=False)
    with pytest.raises(ConfigError, match=r"^config file 'nope\.yaml' does not exist"):
        compare("nope.yaml", None, 1, dry_run=True, progress=False)
    with pytest.raises(ConfigError, match=r"^compare takes a config tree \(a dict, as peerdistill\.config\.load_yaml "
                                          r"reads a file\), a config file's path, or a list of them, got 3 \(of type "
                                          r"int\)$"):
        compare(3, None, 1, dry_run=True, progress=False)
    with pytest.raises(ConfigError, match=r"^compare: config 2 is 3 \(of type int\); give config trees"):
        compare([str(path), 3], None, 1, dry_run=True, progress=False)


def _cohort_and_batch():
    from peerdistill import ClassificationTask, Cohort
    from peerdistill.models import SmallCNN

    torch.manual_seed(0)
    cohort = Cohort.from_modules([SmallCNN(1, 2, 4), SmallCNN(1, 2, 4)])
    return cohort, ClassificationTask(2), torch.randn(3, 1, 12, 12)


def test_engine_predict_takes_a_numpy_batch_as_the_tensor():
    from peerdistill.engine import predict

    cohort, task, x = _cohort_and_batch()
    expected = predict(cohort, task, x)
    for given in (x.numpy(), x.numpy().astype(np.float64)):
        got = predict(cohort, task, given)
        assert got.keys() == expected.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name])
    # the ensemble is the students' mean, computed here by hand
    by_hand = torch.stack([torch.softmax(m.module(x), 1) for m in cohort.members]).mean(0)
    torch.testing.assert_close(predict(cohort, task, x.numpy())["ensemble"], by_hand)


@pytest.mark.parametrize("batch,message", [
    (lambda x: x[0], r"got shape \(1, 12, 12\): one image \[C, H, W\] without its batch axis\? x\[None\] makes it a "
                     r"batch of one$"),
    (lambda x: x[:, 0], r"got shape \(3, 12, 12\): grey images \[N, H, W\] without their channel axis\? x\[:, None\] "
                        r"gives \[N, 1, H, W\]$"),
    (lambda x: x.permute(0, 2, 3, 1), r"got shape \(3, 12, 12, 1\), which looks channels-last \[N, H, W, C\]: "
                                      r"x\.permute\(0, 3, 1, 2\)$"),
])
def test_engine_predict_names_the_batch_shape_it_takes(batch, message):
    """Torch's own words were shown: mat1 and mat2 shapes cannot be multiplied, expected input to
    have 1 channels."""
    from peerdistill.engine import predict

    cohort, task, x = _cohort_and_batch()
    with pytest.raises(DataError, match=r"^predict takes a batch x of shape \[N, C, H, W\] \(the models take 1 "
                                        r"channel\(s\)\), " + message):
        predict(cohort, task, batch(x))


class _FlatToImage(torch.nn.Module):
    """A conv model of feature vectors [N, 64] (or of [N, 8, 8]) that makes the images itself."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 64, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x.reshape(-1, 1, 8, 8))).flatten(1))


@pytest.mark.parametrize("shape", [(5, 64), (5, 8, 8)])
def test_engine_predict_runs_a_conv_model_that_reshapes_its_inputs_itself(shape):
    """Every batch but [N, C, H, W] was refused once a model held a Conv2d."""
    from peerdistill import ClassificationTask, Cohort
    from peerdistill.engine import predict

    torch.manual_seed(0)
    model = _FlatToImage()
    x = torch.rand(*shape)
    out = predict(Cohort.from_modules([model]), ClassificationTask(3), x)
    torch.testing.assert_close(out["student1"], torch.softmax(model.eval()(x), 1))
    torch.testing.assert_close(out["ensemble"], out["student1"])


def test_engine_predict_names_the_batch_shape_an_image_model_failed_on():
    """A shape the models fail on gets the hint, not torch's words, and keeps torch's error as its cause."""
    from peerdistill.engine import predict

    cohort, task, x = _cohort_and_batch()
    with pytest.raises(DataError, match=r"^predict takes a batch x of shape \[N, C, H, W\] \(the models take 1 "
                                        r"channel\(s\)\), got shape \(3, 144\): torch\.as_tensor\(x\) for an "
                                        r"array; x\[None\] for one image") as caught:
        predict(cohort, task, x.flatten(1))
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_engine_predict_refuses_integer_arrays_and_lists():
    from peerdistill.engine import predict

    cohort, task, x = _cohort_and_batch()
    with pytest.raises(DataError, match=r"got a NumPy array of uint8: scale and standardise them"):
        predict(cohort, task, (x.numpy() * 255).astype(np.uint8))
    with pytest.raises(DataError, match=r"got a list: stack the images into one, torch\.stack\(images\)"):
        predict(cohort, task, [x[0], x[1]])


def test_reading_back_a_run_that_kept_nothing_says_so():
    """result.run_dir of Trainer(run_dir=None) is None: os.fspath's TypeError was shown."""
    import peerdistill

    message = r"the run folder is None: a run trained with Trainer\(\.\.\., run_dir=None\) kept nothing on disk"
    with pytest.raises(ConfigError, match=r"^evaluate_run: " + message):
        peerdistill.evaluate_run(None)
    with pytest.raises(ConfigError, match=message):
        peerdistill.load_cohort(None)
    with pytest.raises(ConfigError, match=message):
        peerdistill.load_model(None, "student1")
