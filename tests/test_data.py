"""Data sources: digits split, MedMNIST-style .npz, arrays, and their errors."""

import re

import numpy as np
import pytest
import torch

from peerdistill import DataSplits
from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import ConfigError, DataError


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
    with pytest.raises(DataError, match=r"train inputs are of type <U1 .*expected numbers"):
        DataSplits.from_arrays(np.array(list("abcd")), [0, 1, 0, 1], x, [0, 1, 0, 1], x, [0, 1, 0, 1])
    with pytest.raises(DataError, match=r"no label is 0 \(the labels run from 1 to 2\).*counted from 1\? subtract 1"):
        DataSplits.from_arrays(x, [1, 2, 1, 2], x, [1, 2, 1, 2], x, [1, 2, 1, 2])
    with pytest.raises(DataError, match=r"class\(es\) \[2\] are in the val or test labels but have no training"):
        DataSplits.from_arrays(x, [0, 1, 0, 1], x, [0, 1, 2, 1], x, [0, 1, 0, 1])
    assert DataSplits.from_arrays(x, [0, 3, 0, 3], x, [0, 3, 0, 3], x, [0, 3, 0, 3]).num_classes == 4  # unused ids
    bigger = np.zeros((4, 12, 12), np.float32)
    with pytest.raises(DataError, match=r"^the splits' inputs differ in shape \(train \[1, 8, 8\], val \[1, 8, 8\], "
                                        r"test \[1, 12, 12\]\): save every split's images at one size .* predict"):
        DataSplits.from_arrays(x, [0, 1, 0, 1], x, [0, 1, 0, 1], bigger, [0, 1, 0, 1])
    two = np.zeros((4, 28, 28, 2), np.float32)  # channels last with two channels
    assert DataSplits.from_arrays(two, [0, 1, 0, 1], two, [0, 1, 0, 1], two, [0, 1, 0, 1]).input_shape == (2, 28, 28)
    with pytest.raises(DataError, match="got <U3 values such as 'cat': number the classes"):
        DataSplits.from_arrays(x, ["cat", "dog"] * 2, x, [0, 1, 0, 1], x, [0, 1, 0, 1])
    # per-class figures and matching on other data go by name: a name given twice is refused
    with pytest.raises(DataError, match=r"the class name 'a' is given twice in \['a', 'b', 'a'\]"):
        DataSplits.from_arrays(x, [0, 1, 2, 1], x, [0, 1, 2, 1], x, [0, 1, 2, 1], class_names=["a", "b", "a"])



def test_a_split_without_a_length_is_refused_with_what_to_give_instead():
    # an IterableDataset is a Dataset, but a split is counted, shuffled by index and batched whole
    from torch.utils.data import IterableDataset, TensorDataset

    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(1, 8, 8), 0

    mapped = TensorDataset(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"^the val split is a Stream without a length \(an IterableDataset, a "
                                        r"stream\): DataSplits takes map-style datasets"):
        DataSplits(mapped, Stream(), mapped, num_classes=2, class_names=["a", "b"], input_shape=(1, 8, 8))
    assert len(DataSplits(mapped, mapped, mapped, num_classes=2, class_names=["a", "b"], input_shape=(1, 8, 8)).val) == 4

def test_feature_vectors_are_standardised_feature_by_feature():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)) * np.array([5000.0, 0.01, 1.0]) + np.array([100.0, -2.0, 0.0])
    y = np.arange(50) % 2
    data = DataSplits.from_arrays(x, y, x, y, x, y)
    assert data.stats["mean"] == pytest.approx(x.mean(axis=0).tolist(), rel=1e-4)
    assert data.stats["std"] == pytest.approx(x.std(axis=0, ddof=1).tolist(), rel=1e-4)
    assert data.train.x.std(dim=0).tolist() == pytest.approx([1.0, 1.0, 1.0], rel=1e-4)


def rgb_npz(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 6, 6, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.arange(n) % 2
    np.savez(tmp_path / "rgb.npz", **arrays)
    return tmp_path / "rgb.npz", arrays


def test_normalize_by_imagenet_or_given_statistics_instead_of_the_split(tmp_path):
    path, arrays = rgb_npz(tmp_path)
    raw = arrays["val_images"][1, 2, 4] / 255.0  # one pixel's R, G, B
    imagenet = build_data(DataSpec(kind="npz", root=str(path), normalize="imagenet"))
    expected = (raw - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert imagenet.val.x[1, :, 2, 4].tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    assert imagenet.stats == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # saved with the run
    given = build_data(DataSpec(kind="npz", root=str(path), normalize={"mean": [0, 0.5, 1], "std": [1, 2, 4]}))
    assert given.val.x[1, :, 2, 4].tolist() == pytest.approx(((raw - [0, 0.5, 1]) / [1, 2, 4]).tolist(), rel=1e-5)
    # a saved run's statistics still win (eval of a run on other data)
    assert build_data(DataSpec(kind="npz", root=str(path), normalize="imagenet"), stats=given.stats).stats == given.stats


def test_statistics_on_another_scale_than_the_inputs_are_named_when_training_starts(fast_tree):
    import warnings

    from peerdistill.build import train_from_config
    from peerdistill.config import validate
    from peerdistill.errors import PeerdistillWarning

    digits = build_data(DataSpec(kind="digits"))  # pixels in [0, 1]
    raw = digits.train.x * digits.stats["std"][0] + digits.stats["mean"][0]
    tree = fast_tree | {"train": {"epochs": 1, "batch_size": 256}, "distill": {"rampup_epochs": 0}}
    with pytest.warns(PeerdistillWarning, match="on another scale than the inputs") as caught:
        train_from_config(validate(tree | {"data": {"normalize": {"mean": [127.5], "std": [58.4]}}}), progress=False)
    said = next(str(w.message) for w in caught if "another scale" in str(w.message))
    expected_mean, expected_std = (raw.mean().item() - 127.5) / 58.4, raw.std().item() / 58.4
    assert f"mean [{round(expected_mean, 3)}] and std [{round(expected_std, 4)}]" in said
    with warnings.catch_warnings():  # statistics of the inputs' own scale: nothing to say
        warnings.filterwarnings("error", "the training images, standardised", PeerdistillWarning)
        train_from_config(validate(tree | {"name": "u", "data": {"normalize": {"mean": [0.3], "std": [0.4]}}}),
                          progress=False)


def test_normalize_errors_name_the_option():
    with pytest.raises(DataError, match=r"statistics have 3 channel\(s\) but the inputs have 1: give data.normalize"):
        build_data(DataSpec(normalize="imagenet"))  # digits are grey
    with pytest.raises(ConfigError, match="2 means and 1 stds: give one of each per input channel"):
        DataSpec(normalize={"mean": [0.1, 0.2], "std": [0.3]})
    with pytest.raises(ConfigError, match="1 means and 3 stds: give one of each per input channel"):
        DataSpec(normalize={"mean": [0.1], "std": [0.3, 0.3, 0.3]})  # fewer means than stds too
    with pytest.raises(ConfigError, match="greater than 0"):
        DataSpec(normalize={"mean": [0.1], "std": [0]})
    with pytest.raises(ConfigError, match=r"use split, imagenet or \{mean: \[...\], std: \[...\]\}"):
        DataSpec(normalize="foo")


def test_split_all_joins_train_val_and_test_in_that_order():
    """The order per-sample tables name the rows in (train, val, test): each split's images
    marked with its own number."""
    def part(mark):
        return np.full((2, 1, 2, 2), mark, np.float32), np.array([0, 1])

    data = DataSplits.from_arrays(*part(1), *part(2), *part(3), normalize=False)
    assert data.split("all").x[:, 0, 0, 0].tolist() == [1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("shape,expected", [((6, 1, 16, 3), (1, 16, 3)), ((6, 16, 16, 3), (3, 16, 16)),
                                            ((6, 3, 16, 16), (3, 16, 16)), ((6, 2, 8, 4), (2, 8, 4))])
def test_four_dimensional_arrays_are_channels_last_only_when_the_second_side_cannot_be_channels(shape, expected):
    """The documented rule, case by case: [N, H, W, C] when the last side is 1..4 and the second
    is not; a one-channel strip [6, 1, 16, 3] or a two-channel [6, 2, 8, 4] stays [N, C, H, W]."""
    x, y = np.zeros(shape, np.float32), np.array([0, 1] * 3)
    assert DataSplits.from_arrays(x, y, x, y, x, y, normalize=False).input_shape == expected


@pytest.mark.parametrize("normalize", [False, True])
def test_one_channel_images_given_channels_last_are_stored_row_major(normalize):
    """[N, H, W, 1] permuted to [N, 1, H, W] counts as contiguous in torch yet has the strides of
    channels-last (64, 1, 8, 1): convolutions ran channels-last unasked and a model's .view failed
    (review 56a). Every split's images get the strides of a plain [N, 1, H, W] tensor."""
    rng = np.random.default_rng(0)
    grey, y = rng.random((6, 8, 8, 1)).astype(np.float32), np.array([0, 1] * 3)
    picked = rng.random((9, 8, 8)).astype(np.float32)[:, None][np.arange(6)]  # numpy's fancy index of a view
    for x in (grey, picked, torch.from_numpy(grey).permute(0, 3, 1, 2)):
        data = DataSplits.from_arrays(x, y, x, y, x, y, normalize=normalize)
        for split in (data.train, data.val, data.test):
            assert split.x.shape == (6, 1, 8, 8) and split.x.stride() == (64, 64, 8, 1)
            assert split.x.view(6, -1).shape == (6, 64)  # what a flattening model does


def test_the_spread_of_standardised_images_is_each_channels_own():
    """standardised_spread against plain torch reductions over three channels of other scales."""
    from peerdistill.data.splits import TensorData, standardised_spread

    gen = torch.Generator().manual_seed(0)
    x = 25 + torch.tensor([0.5, 2.0, 4.0]).view(1, 3, 1, 1) * torch.randn(20, 3, 8, 8, generator=gen)
    x[:, 2] -= 30
    mean, std = standardised_spread(TensorData(x, torch.zeros(20, dtype=torch.long)))
    torch.testing.assert_close(mean, x.double().mean(dim=(0, 2, 3)), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(std, x.double().std(dim=(0, 2, 3), unbiased=False), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("n,val,test,sizes", [
    (100, 0.25, 0.5, (25, 25, 50)),  # val and test each their own share (not swapped)
    (100, 0.1, 0.3, (60, 10, 30)),  # 0.1 / 0.7 of 70 is 10.000000000000002 in floats: was 11
    (1000, 0.07, 0.13, (800, 70, 130)),  # 0.07 * 1000 is 70.00000000000001: was 71
    (1797, 0.2, 0.2, (1077, 360, 360)),  # a share that is no whole number is rounded up (359.4: 360), as before
])
def test_a_stratified_split_gives_val_and_test_their_shares_of_the_whole(n, val, test, sizes):
    x, y = np.zeros((n, 2), np.float32), np.arange(n) % 2
    data = DataSplits.stratified(x, y, val_fraction=val, test_fraction=test, seed=0, class_names=["a", "b"])
    assert (len(data.train), len(data.val), len(data.test)) == sizes


def test_share_count_rounds_up_what_floats_leave_whole():
    from peerdistill.data.splits import share_count

    assert [share_count(f, n) for f, n in ((0.07, 1000), (0.1 / 0.7, 70), (0.2, 1797), (0.15, 100), (0.001, 10))] \
        == [70, 10, 360, 15, 1]


def test_a_constant_feature_or_channel_is_standardised_to_zero_not_nan():
    """Its std (0) is floored at 1e-6, so (3 - 3) / 1e-6 = 0 where 0 / 0 would be NaN."""
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(size=40), np.full(40, 3.0)], axis=1)
    y = np.arange(40) % 2
    data = DataSplits.from_arrays(x, y, x, y, x, y)
    assert data.stats["std"][1] == pytest.approx(1e-6)
    assert data.train.x[:, 1].tolist() == [0.0] * 40
    images = np.concatenate([rng.random((40, 1, 4, 4)), np.full((40, 1, 4, 4), 0.5)], axis=1).astype(np.float32)
    flat = DataSplits.from_arrays(images, y, images, y, images, y)
    assert torch.equal(flat.train.x[:, 1], torch.zeros(40, 4, 4))


@pytest.mark.parametrize("val,message", [(0.45, "5 test, 5 val and 0 training"), (1e-9, "2 test, 0 val and 8 training")])
def test_fractions_that_leave_a_split_empty_are_named_with_their_counts(val, message):
    from peerdistill.errors import SplitError

    with pytest.raises(SplitError, match=message):
        DataSplits.stratified(np.zeros((10, 2), np.float32), np.arange(10) % 2, val_fraction=val,
                              test_fraction=0.2 if val < 0.1 else 0.45, seed=0, class_names=["a", "b"])


def test_an_npz_scored_whole_joins_its_labelled_splits_in_order_and_names_every_class(tmp_path):
    """eval --split all: the train, val and test pairs in that order (each marked with its own
    number), an image array without its labels left out; the classes run 0 .. largest label."""
    from peerdistill.data.splits import kept_whole

    def part(mark, labels):
        return np.full((len(labels), 4, 4), mark, np.float32), np.array(labels)

    arrays = {}
    for split, mark, labels in (("train", 1, [0, 1]), ("val", 2, [1, 2]), ("test", 3, [0, 1])):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = part(mark, labels)
    arrays["images"] = np.full((3, 4, 4), 9, np.float32)  # no 'labels' beside it
    np.savez(tmp_path / "d.npz", **arrays)
    raw = {"mean": [0.0], "std": [1.0]}
    with kept_whole():
        data = build_data(DataSpec(kind="npz", root=str(tmp_path / "d.npz")), stats=raw)
        assert data.test.x[:, 0, 0, 0].tolist() == [1, 1, 2, 2, 3, 3]
        assert data.test.y.tolist() == [0, 1, 1, 2, 0, 1] and data.class_names == ["0", "1", "2"]
        np.savez(tmp_path / "empty.npz", test_images=np.zeros((0, 4, 4), np.float32), test_labels=np.zeros(0, int))
        with pytest.raises(DataError, match="holds no images to score"):
            build_data(DataSpec(kind="npz", root=str(tmp_path / "empty.npz")), stats=raw)


def test_an_npz_names_its_classes_by_its_own_names_before_data_class_names(tmp_path):
    # data.class_names is for an npz "without its own" (its description): the archive's names win
    from tests.conftest import alternating_npz_arrays

    arrays = alternating_npz_arrays((8, 4, 4))
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez(tmp_path / "named.npz", **arrays, class_names=np.array(["cat", "dog"]))
    given = ["benign", "malignant"]
    assert build_data(DataSpec(kind="npz", root=str(tmp_path / "named.npz"), class_names=given)).class_names == \
        ["cat", "dog"]
    assert build_data(DataSpec(kind="npz", root=str(tmp_path / "plain.npz"), class_names=given)).class_names == given



def test_labels_that_skip_classes_are_warned_of_to_a_new_run_unless_the_classes_are_named(tmp_path):
    # one stray 7 among 0/1 labels made an eight-class run: its empty classes said only as missing from val and test
    import warnings

    from peerdistill.data.splits import check_names_fit_labels
    from peerdistill.errors import PeerdistillWarning
    from tests.conftest import alternating_npz_arrays

    arrays = alternating_npz_arrays((8, 4, 4))
    arrays["train_labels"] = arrays["train_labels"].copy()
    arrays["train_labels"][3] = 7
    np.savez(tmp_path / "stray.npz", **arrays)
    with warnings.catch_warnings():  # read alone (eval scoring it with a run): nothing to say of its labels
        warnings.filterwarnings("error", "the labels run to", PeerdistillWarning)
        data = build_data(DataSpec(kind="npz", root=str(tmp_path / "stray.npz")))
        named = build_data(DataSpec(kind="npz", root=str(tmp_path / "stray.npz"), class_names=list("abcdefgh")))
        check_names_fit_labels(named)  # named: the empty classes are meant
    assert data.num_classes == 8
    with pytest.warns(PeerdistillWarning, match=r"^the labels run to 7, so the models get 8 classes, but no sample of "
                                                r"any split is labelled 2, 3, 4, 5, 6; class 7 has 1 sample\(s\): a "
                                                r"stray label\?") as said:
        check_names_fit_labels(data)  # a new run of them
        check_names_fit_labels(data)  # (a config's data is checked twice: said once)
    assert len([w for w in said if "the labels run to" in str(w.message)]) == 1


@pytest.mark.parametrize("given", [["a"], ["a", "b", "c"]])
def test_class_names_not_one_per_class_are_refused_naming_where_they_came_from(tmp_path, given):
    """A name too few leaves a class unnamed: refused as the data is read. A name too many would
    make a new run's models learn a class the data never shows (its AUC undefined on every
    split): refused before training, while eval may still score data lacking a run's last class.
    Either names the key or the archive's array; a set scored whole refuses labels past them."""
    from peerdistill.data.sources import check_new_run_data
    from peerdistill.data.splits import kept_whole
    from tests.conftest import alternating_npz_arrays

    arrays = alternating_npz_arrays((8, 4, 4))
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez(tmp_path / "named.npz", **arrays, class_names=np.array(given))
    counted = f"{len(given)} class{'es' if len(given) > 1 else ''} {given}, but the labels hold 2 (0..1)"
    for spec, said in ((DataSpec(kind="npz", root=str(tmp_path / "plain.npz"), class_names=given), "data.class_names"),
                       (DataSpec(kind="npz", root=str(tmp_path / "named.npz")),
                        f"the class_names array of '{tmp_path / 'named.npz'}'")):
        refused = pytest.raises(DataError, match=re.escape(f"{said} names {counted}: give one name per class"))
        if len(given) < 2:
            with refused:
                build_data(spec)
        else:
            data = build_data(spec)
            assert data.num_classes == 3 and data.class_names == given  # as eval scores it for a 3-class run
            with refused:
                check_new_run_data(spec, data)
            from peerdistill.build import make_trainer
            from peerdistill.config import validate

            cfg = validate({"name": "r", "out_dir": str(tmp_path), "data": spec.model_dump(), "teacher": None,
                            "distill": {"preset": "independent"}, "students": [{"arch": "cnn", "args": {"width": 2}}]})
            with refused:
                make_trainer(cfg, progress=False)
            assert make_trainer(cfg, progress=False, resume=True)[0].task.num_classes == 3  # resumed as it began
            # in Python too: arrays named so, handed to a Trainer
            from peerdistill import ClassificationTask, Cohort, KnowledgeGraph, Trainer, TrainSpec

            split = (arrays["train_images"], arrays["train_labels"])
            python_data = DataSplits.from_arrays(*split, *split, *split, class_names=given)
            trainer = Trainer(Cohort.from_modules([torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3))]),
                              KnowledgeGraph([]), ClassificationTask(3), progress=False, device="cpu",
                              train=TrainSpec(epochs=1))
            with pytest.raises(DataError, match=re.escape(f"class_names names {counted}")):
                trainer.fit(python_data)
    scored = {"images": arrays["test_images"], "labels": np.arange(4) % 3}  # labels 0..2: past two names
    np.savez(tmp_path / "three.npz", **scored)
    np.savez(tmp_path / "three-named.npz", **scored, class_names=np.array(["a", "b"]))
    with kept_whole():
        assert build_data(DataSpec(kind="npz", root=str(tmp_path / "three.npz"), class_names=["a", "b", "c", "d"]),
                          stats={"mean": [0.0], "std": [1.0]}).num_classes == 4  # a set to score may lack classes
        with pytest.raises(DataError, match=re.escape(f"the labels run up to 2, past the 2 classes data.class_names "
                                                      f"(for '{tmp_path / 'three.npz'}': eval takes the run's unless "
                                                      "given) names ['a', 'b']")):
            build_data(DataSpec(kind="npz", root=str(tmp_path / "three.npz"), class_names=["a", "b"]))
        with pytest.raises(DataError, match=re.escape(f"past the 2 classes the class_names array of "
                                                      f"'{tmp_path / 'three-named.npz'}' names ['a', 'b'] (row(s) [2] of "
                                                      "the labels): correct those labels if they are wrong, or give")):
            build_data(DataSpec(kind="npz", root=str(tmp_path / "three-named.npz")))  # the row: a stray label found

def test_digits_are_read_as_their_sixteen_grey_levels_on_zero_to_one(tmp_path):
    # statistics of 0 and 1 leave the values as read: scikit-learn's 0..16 levels divided by 16,
    # the scale an image of a digit given to predict is read on
    from sklearn.datasets import load_digits

    data = build_data(DataSpec(normalize={"mean": [0.0], "std": [1.0]}))
    x = data.split("all").x.numpy()
    assert x.min() == 0.0 and x.max() == 1.0
    assert sorted(set(np.round(x.ravel() * 16, 4))) == sorted(set(load_digits().images.ravel()))


def test_a_split_stored_on_another_scale_or_holding_training_images_is_warned_of():
    # uint8 training images beside a 0-255 float test split: standardised, the test split lay at mean ~800
    # and every image was called one class, in silence
    import warnings

    from peerdistill.errors import PeerdistillWarning

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8), dtype=np.uint8)
    y = np.arange(40) % 2
    with pytest.warns(PeerdistillWarning, match=r"^the test images, standardised as the training split is, have mean / "
                                                r"std \d+\.\d\d / \d+\.\d\d per channel where the training images have "
                                                r"-?0.00 / 1.00: they are stored on another scale"):
        DataSplits.from_arrays(x, y, x[:10], y[:10], x[10:20].astype(np.float32), y[10:20])
    with warnings.catch_warnings():  # splits of their own, alike: nothing to say
        warnings.simplefilter("error", PeerdistillWarning)
        DataSplits.from_arrays(x[:20], y[:20], x[20:30], y[20:30], x[30:], y[30:])


def test_training_input_digests_round_trip_and_refuse_a_record_not_theirs():
    import torch

    from peerdistill.data.digests import count_seen, digests_record, read_digests, row_digests

    x = torch.arange(24, dtype=torch.float32).reshape(4, 1, 2, 3)
    record = digests_record(x)
    seen = read_digests(record)
    assert record["rows"] == 4 and len(seen) == 4
    probe = torch.cat([x[2:], x[:1] + 1e-6, torch.zeros(1, 1, 2, 3)])  # two rows equal, a hair off, another
    assert count_seen(probe, seen) == 2
    assert count_seen(x.double(), seen) == 0, "the inputs as the models get them (float32), not any type"
    for damaged in ({**record, "rows": 5}, {**record, "digests": "not base64!"}, {**record, "format": 2},
                    {"rows": 4}, [record]):
        assert read_digests(damaged) is None
    assert read_digests({**record, "what": "reworded"}) == seen, "the format is checked, not the description"
    # any layout or dtype: the values' bytes in row-major order
    assert count_seen(x.to(memory_format=torch.channels_last), seen) == 4
    assert len(set(row_digests(torch.zeros(3, 2, dtype=torch.bfloat16)))) == 1


def test_a_file_digest_is_read_again_when_another_file_takes_its_place_with_its_times(tmp_path):
    """Review 44a: the digest was cached by path, size and modification time, so a checkpoint
    replaced by another of the same size copied with its times kept (cp -p, shutil.copy2) kept
    the first one's SHA-256 within a process."""
    import hashlib
    import os
    import shutil

    from peerdistill.data.digests import file_sha256

    first, other = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"1" * 64)
    other.write_bytes(b"2" * 64)
    os.utime(other, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns))
    assert file_sha256(first) == hashlib.sha256(b"1" * 64).hexdigest()
    shutil.copy2(other, first)  # the same size and modification time, other bytes
    assert first.stat().st_mtime_ns == other.stat().st_mtime_ns
    assert file_sha256(first) == hashlib.sha256(b"2" * 64).hexdigest()


def test_big_endian_arrays_read_as_the_same_numbers(tmp_path):
    """Review 48b: an npz saved big-endian ('>f4', another machine's) stopped train, eval and
    predict with torch's ValueError and a traceback."""
    from peerdistill.data.splits import to_nchw

    rng = np.random.default_rng(0)
    native = rng.integers(0, 255, (6, 8, 8)).astype(np.float32)
    for dtype in (">f4", ">u2", ">i4"):
        swapped = native.astype(dtype)
        assert not swapped.dtype.isnative
        assert torch.equal(to_nchw(swapped, "train"), to_nchw(native.astype(dtype.replace(">", "<")), "train"))
    images = rng.integers(0, 255, (30, 8, 8)).astype(">f4")
    np.savez(tmp_path / "be.npz", images=images, labels=(np.arange(30) % 2).astype(">i8"))
    data = build_data(DataSpec(kind="npz", root=str(tmp_path / "be.npz")))
    assert len(data.train) + len(data.val) + len(data.test) == 30


def test_an_empty_training_split_and_labels_past_int64_are_named_as_such():
    """Review 48b: an empty train split was said to lack every class, and uint64 labels of 2**63
    or more were called negative (they wrapped round in the cast)."""
    from peerdistill.errors import SplitError

    x, y = np.zeros((4, 8, 8), np.float32), np.array([0, 1, 0, 1])
    with pytest.raises(SplitError, match="^the train split holds no samples: the models learn from it: give it samples "
                                         "of every class$"):
        DataSplits.from_arrays(x[:0], y[:0], x, y, x, y)
    with pytest.raises(DataError, match="^train labels hold 9223372036854775813, not a class index: classes must be "
                                        "0..K-1$"):
        DataSplits.from_arrays(x, np.array([0, 1, 0, 2**63 + 5], np.uint64), x, y, x, y)
    assert DataSplits.from_arrays(x, y.astype(np.uint64), x, y, x, y).num_classes == 2


def test_a_fault_in_an_archives_arrays_is_said_with_the_archive(tmp_path):
    """Review 51l: "train inputs contain NaN" read as the run's own training data when eval scored
    another archive."""
    import numpy as np

    from peerdistill.config import DataSpec
    from peerdistill.data import build_data
    from peerdistill.errors import DataError

    images = np.zeros((6, 8, 8), np.float32)
    images[4, 2, 2] = np.nan
    labels = np.array([0, 1] * 3)
    arrays = {f"{s}_{k}": v for s in ("train", "val", "test") for k, v in (("images", images), ("labels", labels))}
    np.savez(tmp_path / "f.npz", **arrays)
    with pytest.raises(DataError, match=f"^'{re.escape(str(tmp_path / 'f.npz'))}': train inputs contain NaN or "
                                        r"infinite values, in 1 of 6 samples \(index 4\)"):
        build_data(DataSpec(kind="npz", root=str(tmp_path / "f.npz")))
    np.savez(tmp_path / "g.npz", images=images)  # a fault whose message names the file already: not twice
    with pytest.raises(DataError) as caught:
        build_data(DataSpec(kind="npz", root=str(tmp_path) + "/./g.npz"))
    assert str(caught.value).count("g.npz") == 1


def test_from_arrays_standardises_in_place_only_its_own_copies():
    """A caller's float arrays (and slices of one tensor) stay as they were; uint8 ones are copied
    to float first, then standardised in that copy."""
    import numpy as np
    import torch

    from peerdistill import DataSplits

    rng = np.random.default_rng(0)
    x = rng.random((20, 1, 6, 6)).astype(np.float32)
    y = np.arange(20) % 2
    kept = x.copy()
    splits = DataSplits.from_arrays(x[:12], y[:12], x[12:16], y[12:16], x[16:], y[16:], channels_last=False)
    assert np.array_equal(x, kept)
    np.testing.assert_allclose(splits.val.x.numpy(), (kept[12:16] - splits.stats["mean"][0]) / splits.stats["std"][0],
                               rtol=1e-5, atol=1e-6)
    t = torch.from_numpy(kept.copy())
    DataSplits.from_arrays(t[:12], y[:12], t[12:16], y[12:16], t[16:], y[16:], channels_last=False)
    assert torch.equal(t, torch.from_numpy(kept))
    u = (kept * 255).round().astype(np.uint8)
    again = DataSplits.from_arrays(u[:12], y[:12], u[12:16], y[12:16], u[16:], y[16:], channels_last=False)
    np.testing.assert_allclose(again.test.x.numpy(), (u[16:] / 255.0 - again.stats["mean"][0]) / again.stats["std"][0],
                               rtol=1e-5, atol=1e-6)


def test_from_arrays_in_place_standardises_the_callers_float_arrays_themselves():
    """``in_place=True``: no second copy of the data; the result is the copy's, the given arrays are it."""
    rng = np.random.default_rng(1)
    x = rng.random((20, 1, 6, 6)).astype(np.float32) * 3 + 1
    y = np.arange(20) % 2
    copied = DataSplits.from_arrays(x[:12], y[:12], x[12:16], y[12:16], x[16:], y[16:], channels_last=False)
    mine = x.copy()
    changed = DataSplits.from_arrays(mine[:12], y[:12], mine[12:16], y[12:16], mine[16:], y[16:], channels_last=False,
                                     in_place=True)
    assert changed.stats == copied.stats
    for s in ("train", "val", "test"):
        assert torch.equal(changed.split(s).x, copied.split(s).x)
    np.testing.assert_array_equal(mine[12:16], changed.val.x.numpy())  # standardised where they lay
    whole = DataSplits.whole(mine.copy(), y, class_names=["a", "b"], stats=copied.stats, channels_last=False,
                             in_place=True)
    again = DataSplits.whole(mine, y, class_names=["a", "b"], stats=copied.stats, channels_last=False)
    assert torch.equal(whole.test.x, again.test.x)
    with pytest.raises(ConfigError, match="in_place must be True or False"):
        DataSplits.from_arrays(x[:12], y[:12], x[12:16], y[12:16], x[16:], y[16:], in_place="yes")
    with pytest.raises(ConfigError, match="^DataSplits.whole: in_place must be True or False"):
        DataSplits.whole(x, y, class_names=["a", "b"], in_place="yes")
    from peerdistill.data.segmentation import segmentation_splits

    masks = [np.zeros((n, 6, 6), np.int64) + 1 for n in (12, 4, 4)]
    with pytest.raises(ConfigError, match="^segmentation_splits: in_place must be True or False"):
        segmentation_splits([x[:12], x[12:16], x[16:]], masks, in_place="yes")


def test_in_place_refuses_splits_sharing_memory_and_stratified_takes_it_as_moot():
    """Review 53g: one array given as every split was standardised three times over (train mean -7.6)."""
    rng = np.random.default_rng(2)
    x = rng.random((30, 1, 4, 4)).astype(np.float32)
    y = np.arange(30) % 2
    kept = x.copy()
    with pytest.raises(DataError, match=r"in_place=True standardises each split where it lies, but these splits share "
                                        r"memory"):
        DataSplits.from_arrays(x, y, x, y, x, y, channels_last=False, in_place=True)
    with pytest.raises(DataError, match="share memory"):
        DataSplits.from_arrays(x[:20], y[:20], x[10:25], y[10:25], x[25:], y[25:], channels_last=False, in_place=True)
    assert np.array_equal(x, kept)  # refused before any was changed
    cut = DataSplits.stratified(x, y, val_fraction=0.2, test_fraction=0.2, seed=0, channels_last=False, in_place=False)
    assert np.array_equal(x, kept) and abs(float(cut.train.x.mean())) < 1e-5
