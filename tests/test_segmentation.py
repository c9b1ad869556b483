"""Segmentation: metrics on hand-made masks, the folder loader and its errors, augmentation,
end-to-end runs of every preset, eval with saved masks."""

import json
import shutil
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from peerdistill.build import train_from_config
from peerdistill.cli import main
from peerdistill.config import DataSpec, validate
from peerdistill.data import build_data
from peerdistill.errors import DataError, PeerdistillWarning
from peerdistill.segmentation_metrics import SegmentationMeter
from peerdistill.tasks import SegmentationTask
from peerdistill.tasks.augment import Augmentation


def meter_on(pred, truth, k=2):
    meter = SegmentationMeter([str(c) for c in range(k)])
    probs = torch.nn.functional.one_hot(torch.as_tensor(pred), k).permute(0, 3, 1, 2).float()
    meter.update(probs, torch.as_tensor(truth))
    return meter.compute()


def test_dice_iou_and_pixel_accuracy_by_hand():
    truth = np.zeros((2, 4, 4), np.int64)
    pred = np.zeros((2, 4, 4), np.int64)
    truth[0, :2, :2] = 1          # 4 foreground pixels
    pred[0, :2, :3] = 1           # 6 predicted: TP 4, FP 2, FN 0
    truth[1, 0, 0] = 1            # image 2: TP 0, FP 0, FN 1
    m = meter_on(pred, truth)
    dice_img = [2 * 4 / (8 + 2), 0.0]
    assert m["dice"] == pytest.approx(sum(dice_img) / 2)
    assert m["dice_1"] == pytest.approx(sum(dice_img) / 2)
    assert m["iou"] == pytest.approx((4 / 6 + 0) / 2)
    assert m["pixel_accuracy"] == pytest.approx((32 - 2 - 1) / 32)
    # global counts over the split: TP 4, FP 2, FN 1, TN 25
    assert m["sensitivity"] == pytest.approx(4 / 5) and m["specificity"] == pytest.approx(25 / 27)
    assert m["f1"] == pytest.approx(8 / (8 + 2 + 1))
    # background class: image 1 has TP 10 FP 0 FN 2; image 2 TP 15 FP 1 FN 0
    assert m["dice_0"] == pytest.approx((20 / 22 + 30 / 31) / 2)


def test_an_image_without_a_class_in_truth_or_prediction_is_left_out_for_that_class():
    """The hand case above plus an all-background image, predicted all background: class 1 is in
    neither its truth nor its prediction, so the image adds no Dice / IoU entry for class 1 (not a
    1, not a 0) and the foreground figures keep their values; for class 0 it is a perfect image."""
    truth = np.zeros((3, 4, 4), np.int64)
    pred = np.zeros((3, 4, 4), np.int64)
    truth[0, :2, :2] = 1
    pred[0, :2, :3] = 1
    truth[1, 0, 0] = 1  # image 2 (index 2) is all background in both
    m = meter_on(pred, truth)
    assert m["dice_1"] == pytest.approx((0.8 + 0.0) / 2) and m["dice"] == pytest.approx(0.4)
    assert m["iou_1"] == pytest.approx((4 / 6 + 0.0) / 2) and m["iou"] == pytest.approx(1 / 3)
    assert m["dice_0"] == pytest.approx((20 / 22 + 30 / 31 + 1.0) / 3)


def test_ignored_pixels_count_nowhere():
    truth = np.array([[[1, 0], [255, 255]]])
    pred = np.array([[[1, 0], [1, 1]]])
    m = meter_on(pred, truth)
    assert m["dice"] == 1.0 and m["pixel_accuracy"] == 1.0
    # nor in the distances: foreground predicted only in an ignored band, far from the region
    truth, pred = np.zeros((1, 20, 20), np.int64), np.zeros((1, 20, 20), np.int64)
    truth[0, 5:10, 5:10] = pred[0, 5:10, 5:10] = 1
    truth[0, :, 15:], pred[0, :, 17:] = 255, 1
    assert meter_on(pred, truth)["hd95"] == 0.0


def test_a_class_absent_from_the_whole_split_leaves_the_means_to_the_others():
    """Three classes, class 2 in no truth and no prediction: its Dice and IoU are undefined (NaN)
    and the means are class 1's alone; class 2 in the truth but never predicted has no distance,
    and the mean HD95 is class 1's."""
    truth = np.zeros((2, 8, 8), np.int64)
    truth[:, 2:5, 2:5] = 1
    pred = truth.copy()
    pred[0, 2, 2] = 0  # image 0: TP 8, FN 1; image 1 perfect
    m = meter_on(pred, truth, k=3)
    assert math.isnan(m["dice_2"]) and math.isnan(m["iou_2"])
    assert m["dice"] == m["dice_1"] == pytest.approx((16 / 17 + 1) / 2)
    assert m["iou"] == m["iou_1"] == pytest.approx((8 / 9 + 1) / 2)
    truth[1, 6, 6] = 2  # now in image 1's truth, never predicted
    m = meter_on(pred, truth, k=3)
    assert math.isnan(m["hd95_2"]) and m["hd95"] == m["hd95_1"] == pytest.approx(naive_hd95(pred[0] == 1, truth[0] == 1) / 2)


def naive_hd95(pred, truth, spacing=(1.0, 1.0)):
    """Symmetric 95th-percentile Hausdorff between the boundary pixels (brute force)."""
    def boundary(m):
        pad = np.pad(m, 1)
        inner = m & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
        return np.argwhere(m & ~inner) * np.asarray(spacing, dtype=np.float64)

    a, b = boundary(pred.astype(bool)), boundary(truth.astype(bool))
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


def test_hd95_matches_a_brute_force_computation():
    truth = np.zeros((1, 32, 32), np.int64)
    pred = np.zeros((1, 32, 32), np.int64)
    truth[0, 8:20, 8:20] = 1
    pred[0, 10:22, 9:25] = 1
    assert meter_on(pred, truth)["hd95"] == pytest.approx(naive_hd95(pred[0], truth[0]), rel=1e-4)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI about its own internals
def test_hd95_agrees_with_monai_on_random_regions_touching_the_border_and_single_pixels():
    """A second, independent implementation: MONAI's compute_hausdorff_distance (its float32
    distances: equal to about 1e-6), on blobby regions of several sizes, with and without a
    pixel spacing, regions reaching the image's edge, and one-pixel regions."""
    from monai.metrics import compute_hausdorff_distance

    from peerdistill.segmentation_metrics import hausdorff95

    torch.manual_seed(0)
    masks = (torch.nn.functional.max_pool2d(torch.rand(24, 1, 40, 56), 7, 1, 3) > 0.93).numpy()[:, 0]
    masks[0] = False
    masks[0, 5, 9] = True  # a single pixel against a region
    masks[1] = True  # the whole image: its edge is the image's border
    pairs = [(masks[i], masks[(i + 5) % 24]) for i in range(24)]
    pairs.append((masks[0], np.roll(masks[0], 3, axis=1)))  # two single pixels 3 apart
    for spacing in (None, [0.5, 2.0]):
        for pred, truth in pairs:
            if not (pred.any() and truth.any()):
                continue
            expected = compute_hausdorff_distance(torch.from_numpy(pred)[None, None].float(),
                                                  torch.from_numpy(truth)[None, None].float(),
                                                  include_background=True, percentile=95, spacing=spacing)
            assert hausdorff95(pred, truth, spacing) == pytest.approx(float(expected), rel=1e-6, abs=1e-6)
    assert hausdorff95(pairs[-1][0], pairs[-1][1]) == 3.0


def awkward_hd95_pairs():
    """Pairs of 30x40 masks: single pixels, the whole image, regions on the border and far apart,
    checkerboards, a ring round a dot (ties everywhere)."""
    rows, cols = np.indices((30, 40))
    dot, corner, block = rows == -1, rows == -1, rows < 6
    dot[15, 20], corner[29, 39], block[:, 5:] = True, True, False
    ring = ((rows - 15) ** 2 + (cols - 20) ** 2 <= 144) & ((rows - 15) ** 2 + (cols - 20) ** 2 >= 100)
    board = (rows + cols) % 2 == 0
    return {"dots": (dot, corner), "one dot": (dot, dot), "whole and dot": (rows >= 0, dot),
            "block and dot": (block, corner), "boards": (board, ~board), "board and dot": (board, dot),
            "dot in a ring": (dot, ring), "block and ring": (block, ring)}


def hd95_cases():
    """The awkward pairs and random noise of every density, 1 to 30 pixels a side."""
    rng = np.random.default_rng(3)
    pairs = list(awkward_hd95_pairs().values())
    for _ in range(40):
        shape, (a, b) = 1 + rng.integers(30, size=2), rng.choice([0.02, 0.2, 0.6, 1.0], 2)
        pairs.append((rng.random(shape) < a, rng.random(shape) < b))
    return [(p, t) for p, t in pairs if p.any() and t.any()]


@pytest.mark.parametrize("share", [0.0, float("inf")], ids=["transform", "tree"])
def test_hd95_by_either_way_to_the_nearest_edge_matches_brute_force(monkeypatch, share):
    """The distance transform (edge share 0: always) and the k-d tree (infinite: never) give the
    brute-force distances, in pixels and with anisotropic spacings."""
    from peerdistill import segmentation_metrics

    monkeypatch.setattr(segmentation_metrics, "EDT_FROM_EDGE_SHARE", share)
    for pred, truth in hd95_cases():
        for spacing in ([1.0, 1.0], [0.5, 2.0], [0.3, 1.7]):
            expected = naive_hd95(pred, truth, spacing)
            got = segmentation_metrics.hausdorff95(pred, truth, spacing)
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_hd95_takes_the_transform_for_dense_edges_and_the_tree_for_sparse(monkeypatch):
    """Over a tenth of the box in edge pixels (a checkerboard, a ring round a dot) the distance
    transform runs, below it (two dots, a block and a dot) the k-d tree; the other way gives the
    same distances."""
    from scipy.ndimage import binary_erosion

    from peerdistill import segmentation_metrics as sm

    ways = {"tree": sm._nearest_by_tree, "transform": sm._nearest_by_transform}
    used = []
    for name, way in ways.items():
        monkeypatch.setattr(sm, f"_nearest_by_{name}", lambda *a, way=way, name=name: used.append(name) or way(*a))
    pairs = awkward_hd95_pairs()
    spacing = [0.5, 2.0]
    for case, taken, other in [("boards", "transform", "tree"), ("dot in a ring", "transform", "tree"),
                               ("dots", "tree", "transform"), ("block and dot", "tree", "transform")]:
        pred, truth = pairs[case]
        used.clear()
        got = sm.hausdorff95(pred, truth, spacing)
        assert used == [taken], case
        edges = [m & ~binary_erosion(m) for m in (pred, truth)]
        by_other = ways[other](*edges, np.asarray(spacing))
        assert got == pytest.approx(max(np.percentile(d, 95) for d in by_other), rel=1e-12)
        assert got == pytest.approx(naive_hd95(pred, truth, spacing), rel=1e-9)


def test_hd95_of_each_foreground_class_and_their_mean():
    """Three classes: each class's distance by brute force on its own regions, over the images
    where prediction and truth both hold it; an image missing a class leaves it out there."""
    truth = np.zeros((2, 32, 32), np.int64)
    pred = np.zeros((2, 32, 32), np.int64)
    truth[0, 4:12, 4:12], pred[0, 5:14, 3:12] = 1, 1
    truth[0, 18:28, 16:30], pred[0, 20:30, 18:27] = 2, 2
    truth[1, 10:20, 10:20], pred[1, 12:18, 9:24] = 1, 1
    truth[1, 25:30, 2:8] = 2  # class 2 missed in image 1: no distance there
    m = meter_on(pred, truth, k=3)
    one = [naive_hd95(pred[i] == 1, truth[i] == 1) for i in (0, 1)]
    two = naive_hd95(pred[0] == 2, truth[0] == 2)
    assert m["hd95_1"] == pytest.approx(np.mean(one), rel=1e-4)
    assert m["hd95_2"] == pytest.approx(two, rel=1e-4)
    assert m["hd95"] == pytest.approx((np.mean(one) + two) / 2, rel=1e-4)
    assert "hd95_0" not in m  # the background has no distance of its own
    binary = meter_on((pred == 1).astype(np.int64), (truth == 1).astype(np.int64))
    assert binary["hd95"] == pytest.approx(np.mean(one), rel=1e-4) and "hd95_1" not in binary  # its own: no copy
    # the mean over images, not a median: three unequal distances
    truth, pred = np.zeros((3, 32, 32), np.int64), np.zeros((3, 32, 32), np.int64)
    truth[:, 8:16, 8:16] = 1
    pred[0, 8:16, 9:17] = pred[1, 8:16, 10:18] = pred[2, 8:16, 8:16] = pred[2, 28:30, 28:30] = 1
    distances = [naive_hd95(pred[i], truth[i]) for i in range(3)]
    assert np.median(distances) != pytest.approx(np.mean(distances), rel=0.1)
    assert meter_on(pred, truth)["hd95"] == pytest.approx(np.mean(distances), rel=1e-4)


def test_augmentation_moves_image_and_mask_together():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    masks = x[:, 0].long()
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        ax, am = Augmentation(("hflip", "vflip", "rot90")).images(x, masks, g)
        assert torch.equal(ax[:, 0].long(), am)
    # hflip alone: each sample is itself or its mirror image, its mask the same, and over a few
    # draws every sample is seen both ways (one draw per sample, not one per batch)
    draws = set()
    for seed in range(8):
        ax, am = Augmentation(("hflip",)).images(x, masks, torch.Generator().manual_seed(seed))
        flipped = tuple(torch.equal(ax[i], x[i].flip(-1)) for i in range(len(x)))
        for i in range(len(x)):
            assert flipped[i] or torch.equal(ax[i], x[i])
            assert torch.equal(am[i], masks[i].flip(-1) if flipped[i] else masks[i])
        draws.add(flipped)
    assert {d[0] for d in draws} == {d[1] for d in draws} == {False, True}
    assert any(d[0] != d[1] for d in draws)


def write_pairs(root, n=6, size=16, mask_values=(0, 1), mask_size=None, names=None):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        name = names[i] if names else f"case{i:02d}"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        m = np.zeros(mask_size or (size, size), np.uint8)
        m[2:8, 2:8] = mask_values[1]
        Image.fromarray(m).save(root / "masks" / f"{name}.png")


def test_folder_loader_reads_pairs_and_splits(tmp_path):
    write_pairs(tmp_path / "d", n=10)
    data = build_data(DataSpec(kind="folders", root=str(tmp_path / "d")))
    assert data.num_classes == 2 and data.input_shape == (3, 16, 16)
    assert len(data.train) + len(data.val) + len(data.test) == 10
    assert set(data.train.y.unique().tolist()) == {0, 1}
    assert data.info["cut_from_one_set"] is True  # eval of such a set says only its test part is scored
    for split, names in (("train", ("a", "b", "c")), ("val", ("d",)), ("test", ("e",))):
        write_pairs(tmp_path / "given" / split, n=len(names), names=names)
    given = build_data(DataSpec(kind="folders", root=str(tmp_path / "given")))
    assert len(given.test) == 1 and given.info["cut_from_one_set"] is False
    # train/ and test/ alone: val cut from train, as image_folder does (an error before: review 48c)
    for split, names in (("train", ("a", "b", "c", "d", "f")), ("test", ("e",))):
        write_pairs(tmp_path / "no-val" / split, n=len(names), names=names)
    no_val = build_data(DataSpec(kind="folders", root=str(tmp_path / "no-val")))
    assert (len(no_val.train), len(no_val.val), len(no_val.test)) == (4, 1, 1)
    assert no_val.info["files"]["test"] == ["e"] and no_val.info["cut_from_one_set"] is False
    from peerdistill.data.sources import given_test_split

    assert given_test_split(DataSpec(kind="folders", root=str(tmp_path / "no-val"))) == \
        f"'{tmp_path / 'no-val'}' (its train/ and test/ folders)"
    assert given_test_split(DataSpec(kind="folders", root=str(tmp_path / "given"))) == \
        f"'{tmp_path / 'given'}' (its train/, val/ and test/ folders)"


def test_folder_loader_binary_masks_and_regex_ids(tmp_path):
    root = tmp_path / "d"
    write_pairs(root, n=6, mask_values=(0, 255))
    with pytest.raises(DataError, match="data.binary_masks=true"):
        build_data(DataSpec(kind="folders", root=str(root)))
    data = build_data(DataSpec(kind="folders", root=str(root), binary_masks=True))
    assert int(data.train.y.max()) == 1
    # DRIVE-style names: 21_training.tif with 21_manual1.gif share the id caught by the pattern
    drive = tmp_path / "drive"
    (drive / "images").mkdir(parents=True)
    (drive / "masks").mkdir()
    for i in range(21, 27):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(drive / "images" / f"{i}_training.tif")
        Image.fromarray((np.eye(8) * 255).astype(np.uint8)).save(drive / "masks" / f"{i}_manual1.gif")
    data = build_data(DataSpec(kind="folders", root=str(drive), pattern=r"^(\d+)_", binary_masks=True))
    assert len(data.train) + len(data.val) + len(data.test) == 6


@pytest.mark.parametrize("case,message", [
    # each side counted, by file name, an empty side not said (review 55r)
    ("unmatched", r"do not pair up in '.*d': 1 image\(s\) without a mask \('case00.png'\); 1 mask\(s\) without an "
                  r"image \('other.png'\) \(names are matched by"),
    ("extra_mask", r"do not pair up in '.*d': 1 mask\(s\) without an image \('extra_mask.png'\) \(names"),
    ("size", r"image 'case00.png' is 16x16 but its mask 'case00.png' is 16x12: they must be the same size; 4 of the 4 "
             r"pairs differ in size, e.g. also image 'case01.png' is 16x16 but its mask 'case01.png' is 16x12; image "
             r"'case02.png' .*; save each at its image's size"),
    ("values", "class indices 0..K-1"),
    ("unreadable", "cannot read image"),
    ("missing", "is not a directory"),
    ("no_root", r"data.root '.*d' does not exist: set data.root to the data's folder"),
    ("file_root", r"data.root '.*d' is a file, but data kind 'folders' reads a folder"),
])
def test_folder_loader_errors(tmp_path, case, message):
    root = tmp_path / "d"
    if case == "unmatched":
        write_pairs(root, n=4)
        (root / "masks" / "case00.png").rename(root / "masks" / "other.png")
    elif case == "extra_mask":
        write_pairs(root, n=4)
        shutil.copy(root / "masks" / "case00.png", root / "masks" / "extra_mask.png")
    elif case == "size":
        write_pairs(root, n=4, mask_size=(12, 16))
    elif case == "values":
        write_pairs(root, n=4, mask_values=(0, 128))
    elif case == "unreadable":
        write_pairs(root, n=4)
        (root / "images" / "case01.png").write_bytes(b"not a png")
    elif case == "file_root":
        root.write_text("x")
    elif case == "missing":
        root.mkdir()
    with pytest.raises(DataError, match=message):
        build_data(DataSpec(kind="folders", root=str(root)))


def test_folders_not_where_the_config_says_are_named_with_what_to_set(tmp_path):
    """DRIVE's layout (training/ and testing/, each with images/ and 1st_manual/) read without
    split_dirs, then without its masks folder's name: each message says what to set."""
    root = tmp_path / "drive"
    for split in ("training", "testing"):
        write_pairs(root / split, n=4)
        (root / split / "masks").rename(root / split / "1st_manual")
    with pytest.raises(DataError, match=r"data.root holds the splits as folders \(testing, training\), each with its "
                                        r"own images/: name them, data.split_dirs=\{train: training, test: testing\}"):
        build_data(DataSpec(kind="folders", root=str(root)))
    split_dirs = {"train": "training", "test": "testing"}
    with pytest.raises(DataError, match=r"'.*training' holds the folders 1st_manual, images: set data.images and "
                                        r"data.masks to the folders of the images and of the masks \(now 'images' "
                                        r"and 'masks'\)"):
        build_data(DataSpec(kind="folders", root=str(root), split_dirs=split_dirs))
    data = build_data(DataSpec(kind="folders", root=str(root), split_dirs=split_dirs, masks="1st_manual"))
    assert len(data.test) == 4
    # a set holding its test folder alone, scored as other data (review 55h: told to set data.images)
    import shutil

    shutil.copytree(root / "testing", tmp_path / "external" / "testing")
    with pytest.raises(DataError, match=r"'.*external' lacks the split folder\(s\) 'training' \(train\) that "
                                        r"data.split_dirs names; it holds the folders 'testing': name the folders it "
                                        r"holds in data.split_dirs; eval scores a set of images without its other "
                                        r"split folders whole with --split all"):
        build_data(DataSpec(kind="folders", root=str(tmp_path / "external"), split_dirs=split_dirs, masks="1st_manual"))
    # data.root one level too deep: a split folder, or the images folder itself
    for deeper in (root / "training", root / "training" / "images"):
        within = {"split_dirs": split_dirs} if deeper.name == "training" else {}
        with pytest.raises(DataError, match=rf"data.root looks one level too deep \('{deeper.name}' is a folder "
                                            rf"data.root holds\): data.root={re.escape(str(deeper.parent))}$"):
            build_data(DataSpec(kind="folders", root=str(deeper), masks="1st_manual", **within))


def test_shapes_data_is_reproducible_and_has_both_classes():
    a = build_data(DataSpec(kind="shapes", shapes_counts=[8, 4, 4]))
    b = build_data(DataSpec(kind="shapes", shapes_counts=[8, 4, 4]))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    share = a.train.y.float().mean().item()
    assert 0.02 < share < 0.4


TINY = {"task": "segmentation",
        "data": {"kind": "shapes", "shapes_counts": [32, 8, 8], "augment": ["hflip", "rotate", "scale", "elastic", "gamma", "contrast", "blur"]},
        "teacher": {"arch": "unet", "args": {"width": 4, "depth": 2}},
        "students": [{"arch": "mobile_unet", "args": {"width": 4, "depth": 2}},
                     {"arch": "unet", "args": {"width": 2, "depth": 1}}],
        "train": {"epochs": 1, "batch_size": 16}}


SEGMENTATION_PRESET_TERMS = {
    "independent": set(),
    "kd": {"student1/kl<-teacher", "student2/kl<-teacher"},
    "ml": {"student1/kl<-student2", "student2/kl<-student1"},
    "kd+ml": {"student1/kl<-teacher", "student2/kl<-teacher", "student1/kl<-student2", "student2/kl<-student1"},
    # styles: the teacher's logits to the first student, its decoder map to the second; peers both ways
    "styles": {"student1/kl<-teacher", "student2/hint<-teacher[up.0<-up.1]", "student1/kl<-student2",
               "student2/kl<-student1", "student1/hint<-student2[up.1<-up.0]", "student2/hint<-student1[up.0<-up.1]"},
}


@pytest.mark.parametrize("preset", ["independent", "kd", "ml", "kd+ml", "styles"])
def test_every_preset_runs_for_segmentation(tmp_path, preset):
    cfg = validate({**TINY, "data": {**TINY["data"], "augment": ["hflip"]}, "name": preset, "out_dir": str(tmp_path),
                    "distill": {"preset": preset}})
    result = train_from_config(cfg, progress=False)
    terms = {k.removeprefix("train/loss/") for k in result.history[-1] if k.startswith("train/loss/")}
    supervised = {"teacher/ce+dice", "student1/ce+dice", "student2/ce+dice", "total"}
    assert terms == supervised | SEGMENTATION_PRESET_TERMS[preset]  # the preset's edges, and no other
    assert set(result.test_at_best) == {"teacher", "student1", "student2", "ensemble"}
    assert {"dice", "iou", "pixel_accuracy", "hd95", "dice_background", "dice_foreground"} <= set(result.test_at_best["ensemble"])
    assert result.monitor == "ensemble/dice"


def test_structured_terms_and_eval_with_masks(tmp_path, capsys):
    cfg = validate({**TINY, "name": "skd", "out_dir": str(tmp_path),
                    "distill": {"preset": "kd", "pair_weight": 1.0, "holistic_weight": 0.1, "cwd_weight": 1.0}})
    result = train_from_config(cfg, progress=False)
    row = result.history[-1]
    for term in ["student1/pair<-teacher[up.1<-up.1]", "student2/holistic<-teacher", "student1/cwd<-teacher",
                 "critic/student1/holistic<-teacher", "teacher/ce+dice"]:  # the supervised term by its name
        assert f"train/loss/{term}" in row
    # the total is what the models' optimizers stepped on: every term but the critics' own losses
    models_terms = [v for k, v in row.items() if k.startswith("train/loss/")
                    and k != "train/loss/total" and not k.startswith("train/loss/critic/")]
    assert len(models_terms) > 5 and row["train/loss/total"] == pytest.approx(sum(models_terms), rel=1e-5)
    assert (tmp_path / "skd" / "discriminators.safetensors").is_file()
    assert main(["eval", str(tmp_path / "skd"), "--save-masks", "2", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["ensemble"]["dice"] == pytest.approx(result.test_at_best["ensemble"]["dice"])
    overlay = tmp_path / "skd" / "eval" / "test" / "ensemble" / "001_overlay.png"
    assert Image.open(overlay).size == (256, 256) and Image.open(overlay).mode == "RGB"  # 64x64, enlarged 4 times
    mask = np.asarray(Image.open(tmp_path / "skd" / "eval" / "test" / "student1" / "000_mask.png"))
    assert set(np.unique(mask)) <= {0, 255}
    # other data's pictures go to a folder of their own (with its data section), never mixed with these
    assert main(["eval", str(tmp_path / "skd"), "--save-masks", "1", "data.split_seed=5", "--json"]) == 0
    assert "changes nothing" not in capsys.readouterr().err  # a seed generates other images
    # shares of one set change nothing where each split is generated apart: said, as train refuses them
    assert main(["eval", str(tmp_path / "skd"), "data.val_fraction=0.3", "--json"]) == 0
    assert ("data.val_fraction changes nothing here: data kind 'shapes' generates each split apart, as many images "
            "as data.shapes_counts says") in " ".join(capsys.readouterr().err.split())
    other = [p for p in (tmp_path / "skd" / "eval").iterdir() if p.name != "test"]
    assert len(other) == 1 and other[0].name.startswith("test-shapes-")
    assert json.loads((other[0] / "data.json").read_text())["split_seed"] == 5
    assert sorted(p.name for p in (other[0] / "student1").iterdir()) == ["000_mask.png", "000_overlay.png"]
    assert len(list((tmp_path / "skd" / "eval" / "test" / "student1").iterdir())) == 4  # the run's own, untouched
    from peerdistill.runs import pictures_folder  # a root named '.' is named by its folder

    here = pictures_folder(tmp_path, "test", DataSpec(kind="folders", root="."))
    assert here.name.startswith(f"test-{Path('.').resolve().name}-") and len(here.name.split("-")[-1]) == 8
    # fewer pictures of the same data replace the earlier ones, leaving none of them to pass for this eval's
    (tmp_path / "skd" / "eval" / "test" / "student1" / "notes.txt").write_text("mine")
    assert main(["eval", str(tmp_path / "skd"), "--save-masks", "1", "--json"]) == 0
    assert sorted(p.name for p in (tmp_path / "skd" / "eval" / "test" / "student1").iterdir()) == [
        "000_mask.png", "000_overlay.png", "notes.txt"]



def test_eval_pictures_of_named_samples_carry_their_ids(tmp_path, capsys):
    """Pictures of image/mask files are named NNN_ID_..., the ID the test split's files share (as
    run.json lists them), so each picture can be traced to its image."""
    write_pairs(tmp_path / "data", n=8)
    train_from_config(validate({"name": "f", "out_dir": str(tmp_path), "task": "segmentation", "teacher": None,
                                "data": {"kind": "folders", "root": str(tmp_path / "data")},
                                "students": [{"arch": "unet", "args": {"width": 4, "depth": 1}}],
                                "distill": {"preset": "independent"}, "train": {"epochs": 1, "batch_size": 4}}),
                      progress=False)
    tested = json.loads((tmp_path / "f" / "run.json").read_text())["data_info"]["files"]["test"]
    assert main(["eval", str(tmp_path / "f"), "--save-images", "2", "--json"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "f" / "eval" / "test" / "ensemble").iterdir()) == [
        f"{i:03d}_{name}_{kind}.png" for i, name in enumerate(tested[:2]) for kind in ("mask", "overlay")]
    assert main(["eval", str(tmp_path / "f"), "--save-images", "1", "--json"]) == 0  # fewer: the others removed
    assert len(list((tmp_path / "f" / "eval" / "test" / "ensemble").iterdir())) == 2
    # names that are not of the scored samples (data given from Python) are left out, not misplaced
    from peerdistill.runs import evaluate_run, read_run_data

    data = read_run_data(json.loads((tmp_path / "f" / "run.json").read_text()))
    data.info["files"] = {**data.info["files"], "test": tested[:1]}
    evaluate_run(tmp_path / "f", data=data, save_images=2)
    assert sorted(p.name for p in (tmp_path / "f" / "eval" / "test" / "ensemble").iterdir()) == [
        "000_mask.png", "000_overlay.png", "001_mask.png", "001_overlay.png"]

def test_dense_kinds_refuse_classification(tmp_path):
    from peerdistill.errors import ConfigError

    cfg = validate({"name": "x", "out_dir": str(tmp_path), "teacher": {"arch": "cnn"},
                    "students": [{"arch": "cnn"}, {"arch": "cnn"}], "train": {"epochs": 1},
                    "distill": {"cwd_weight": 1.0}})
    with pytest.raises(ConfigError, match="compares dense.*a preset adds such edges where distill.cwd_weight is above 0"):
        train_from_config(cfg, progress=False)  # names the key the user wrote, not only an edge they did not


def test_task_and_data_kind_must_agree():
    from peerdistill.errors import ConfigError

    with pytest.raises(ConfigError, match="set task: segmentation"):
        validate({"data": {"kind": "shapes"}, "students": [{"arch": "unet"}], "distill": {"preset": "independent"}})
    with pytest.raises(ConfigError, match="set task: classification .for segmentation or detection, start from "
                                          "recipes/shapes.yaml or recipes/boxes.yaml"):
        validate({"task": "segmentation", "students": [{"arch": "unet"}], "distill": {"preset": "independent"}})


@pytest.mark.parametrize("spread", ["ties", "confident", "undecided"])
def test_pixel_auc_matches_scikit_learn_over_every_batch(spread):
    """Exact, as scikit-learn ranks: with ties across the classes, with a confident model whose
    scores crowd near 0 and 1 (where a 4,096-bin histogram, the former rule, tied thousands of
    pixels), and with an undecided one whose scores all lie within 0.003 of 1/2."""
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    meter = SegmentationMeter(["bg", "fg"])
    scores, labels = [], []
    for _ in range(3):  # several batches: all of them count
        truth = (torch.rand(2, 16, 16, generator=g) < 0.3).long()
        if spread == "ties":
            p1 = (300 * truth + torch.randint(0, 725, (2, 16, 16), generator=g)).float() / 1024  # overlapping steps
        else:
            logits = 2.0 * truth + torch.randn(2, 16, 16, generator=g)
            p1 = torch.sigmoid(logits * 12) if spread == "confident" else 0.5 + 0.003 * torch.tanh(logits)
        meter.update(torch.stack([1 - p1, p1], dim=1), truth)
        scores.append(p1.flatten())
        labels.append(truth.flatten())
    scores, labels = torch.cat(scores), torch.cat(labels)
    if spread == "ties":
        assert set(scores[labels == 1].tolist()) & set(scores[labels == 0].tolist())  # ties across the classes
    else:  # the scores a 4,096-bin histogram could not tell apart
        bins = (scores * 4096).long().clamp(0, 4095)
        assert len(set(bins.tolist())) < 0.5 * len(set(scores.tolist()))
    expected = roc_auc_score(labels.numpy(), scores.numpy())
    assert meter.compute()["auc"] == pytest.approx(expected, rel=1e-9)


def test_a_resamples_pixel_auc_is_its_pixels_ranked_again():
    """The bootstrap's pair counts between images give each resample's exact AUC."""
    from sklearn.metrics import roc_auc_score

    from peerdistill.segmentation_metrics import ResampledPixelAUC

    g = torch.Generator().manual_seed(1)
    truth = (torch.rand(5, 12, 12, generator=g) < 0.3).long()
    truth[4] = 0  # an image without foreground
    truth[2, :2] = 255  # ignored pixels
    p1 = torch.sigmoid(1.5 * (truth == 1) + torch.randn(5, 12, 12, generator=g)).round(decimals=2)  # ties too
    probs = torch.stack([1 - p1, p1], dim=1)
    task = SegmentationTask(2, hd95=False)
    meters = []
    for i in range(5):
        meter = task.new_meter()
        meter.update(probs[i:i + 1], truth[i:i + 1])
        meters.append(meter)
    auc = ResampledPixelAUC(meters)
    for drawn in ([0, 0, 3, 4, 1], [2, 2, 2, 4, 4], [4, 1, 0, 3, 2]):
        valid = torch.cat([truth[i][truth[i] != 255] for i in drawn])
        scores = torch.cat([p1[i][truth[i] != 255] for i in drawn])
        # fewer distinct scores than bins: every one has a bin of its own, and the count is exact
        assert auc(np.array(drawn)) == pytest.approx(roc_auc_score(valid.numpy(), scores.numpy()), rel=1e-12)
    # continuous scores: pixels sharing one of the quantile bins count as tied, so within ~1/bins
    many = torch.sigmoid(3 * (truth == 1) + torch.randn(5, 12, 12, generator=g))
    meters = []
    for i in range(5):
        meter = task.new_meter()
        meter.update(torch.stack([1 - many, many], dim=1)[i:i + 1], truth[i:i + 1])
        meters.append(meter)
    for bins, tolerance in ((64, 0.02), (16384, 1e-9)):  # 720 pixels: 16,384 bins part every score
        auc = ResampledPixelAUC(meters, bins=bins)
        drawn = [0, 1, 1, 2, 3]
        valid = torch.cat([truth[i][truth[i] != 255] for i in drawn])
        scores = torch.cat([many[i][truth[i] != 255] for i in drawn])
        assert auc(np.array(drawn)) == pytest.approx(roc_auc_score(valid.numpy(), scores.numpy()), abs=tolerance)
    # a background at one probability and a few rarer scores: the quantile edges all fall in the
    # tie, which once merged it with the rare scores beside it (AUC 0.5 for an exact 1.0)
    tied = np.full(100_000, 0.5, np.float32)
    for rare_positive, rare_negative, exact in ((0.6, None, 1.0), (0.4, None, 0.0), (0.55, 0.52, None)):
        meter = task.new_meter()
        meter.negative_scores = [tied] + ([np.array([rare_negative] * 3, np.float32)] if rare_negative else [])
        meter.positive_scores = [np.array([rare_positive] * 5, np.float32)]
        negatives = np.concatenate(meter.negative_scores)
        expected = roc_auc_score(np.r_[np.zeros(len(negatives)), np.ones(5)],
                                 np.r_[negatives, meter.positive_scores[0]])
        assert exact is None or expected == exact
        for bins in (64, 16384):
            assert ResampledPixelAUC([meter], bins=bins)(np.array([0])) == pytest.approx(expected, abs=1e-12)
    many_scores = np.linspace(0, 1, 5000, dtype=np.float32)  # more distinct scores than bins, and the tie
    meter = task.new_meter()
    meter.negative_scores, meter.positive_scores = [tied, many_scores[:2500]], [many_scores[2500:], tied[:10]]
    negatives, positives = np.concatenate(meter.negative_scores), np.concatenate(meter.positive_scores)
    expected = roc_auc_score(np.r_[np.zeros(len(negatives)), np.ones(len(positives))], np.r_[negatives, positives])
    assert ResampledPixelAUC([meter], bins=64)(np.array([0])) == pytest.approx(expected, abs=1 / 64)
    # the tie at the top, in quantile bins: a million positives at 1.0 kept apart from the
    # negatives just below them (counted into the bin below, the AUC read 0.952 for 0.975)
    rng = np.random.default_rng(4)
    meter = task.new_meter()
    meter.positive_scores = [np.ones(1_000_000, np.float32), rng.random(50_000).astype(np.float32)]
    meter.negative_scores = [(1 - 1e-4 * rng.random(60)).astype(np.float32), rng.random(500).astype(np.float32)]
    negatives, positives = np.concatenate(meter.negative_scores), np.concatenate(meter.positive_scores)
    expected = roc_auc_score(np.r_[np.zeros(len(negatives)), np.ones(len(positives))], np.r_[negatives, positives])
    assert ResampledPixelAUC([meter])(np.array([0])) == pytest.approx(expected, abs=1e-4)


def test_resampled_auc_bins_are_numpys_distinct_scores_or_quantiles():
    """The edges come from one sort; numpy's unique and quantile give the same ones."""
    from peerdistill.segmentation_metrics import ResampledPixelAUC

    rng = np.random.default_rng(3)
    for n in (1, 7, 999, 4000):
        for scores in (rng.random(n), np.round(rng.random(n), 2), np.where(rng.random(n) < 0.7, 0.5, rng.random(n))):
            scores = scores.astype(np.float32)
            for bins in (4, 64, 1000):
                distinct = np.unique(scores)
                if len(distinct) <= bins:
                    expected = distinct
                else:
                    quantiles = np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1]).astype(np.float32)
                    expected = np.unique(np.r_[quantiles, np.nextafter(quantiles, np.float32(np.inf))])
                np.testing.assert_array_equal(ResampledPixelAUC._edges(scores, bins), expected)


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_non_finite_critic_loss_is_caught(tmp_path, monkeypatch, policy):
    from peerdistill.build import make_trainer
    from peerdistill.errors import NonFiniteError

    cfg = validate({**TINY, "name": "c", "out_dir": str(tmp_path), "train": {**TINY["train"], "nonfinite": policy},
                    "distill": {"preset": "kd", "holistic_weight": 0.1}})
    trainer, data = make_trainer(cfg, progress=False)
    trainer._setup(data)
    monkeypatch.setattr("peerdistill.engine.trainer.discriminator_loss",
                        lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    critics = list(trainer.discriminators.values())  # one per student
    before = [[p.clone() for p in c.parameters()] for c in critics]
    x, y = next(iter(trainer.train_batches))
    if policy == "stop":
        with pytest.raises(NonFiniteError, match="critic loss of edge 'student1/holistic<-teacher'") as stopped:
            trainer.step(x, y)
        assert stopped.value.said_alike == str(stopped.value)  # (every process agreed on it: said once a node)
    else:
        terms = trainer.step(x, y)
        assert "critic/student1/holistic<-teacher" not in terms and "total" in terms
        for saved, critic in zip(before, critics):
            assert all(torch.equal(a, b) for a, b in zip(saved, critic.parameters()))


def test_two_class_prediction_is_argmax_ties_included():
    from peerdistill.segmentation_metrics import predicted_classes

    probs = torch.rand(3, 2, 5, 7, generator=torch.Generator().manual_seed(0))
    probs[0, :, 0, :] = 0.5  # ties go to class 0, as argmax gives them
    assert torch.equal(predicted_classes(probs), probs.argmax(dim=1))
    three = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(predicted_classes(three), three.argmax(dim=1))


def test_mask_pictures_of_a_model_predicting_at_half_size_are_at_the_image_size(tmp_path):
    from torch import nn

    from peerdistill.cohort import Cohort
    from peerdistill.data.splits import TensorData
    from peerdistill.pictures import save_mask_pictures
    from peerdistill.tasks import SegmentationTask

    class HalfSize(nn.Module):
        """Foreground where the pooled image is bright, predicted on a 2x coarser grid."""

        def forward(self, x):
            pooled = nn.functional.avg_pool2d(x[:, :1], 2)
            return torch.cat([-pooled, pooled], dim=1)

    x = -torch.ones(2, 1, 8, 8)
    x[:, :, :4, :4] = 1.0  # the top-left quarter is the object
    y = (x[:, 0] > 0).long()
    cohort = Cohort.from_modules([HalfSize(), HalfSize()])
    written = save_mask_pictures(cohort, SegmentationTask(2), TensorData(x, y), tmp_path, 2, None)
    assert len(written) == 2 * 3 * 2  # two samples, two students and the ensemble, mask and overlay
    mask = np.asarray(Image.open(tmp_path / "student1" / "000_mask.png"))
    assert mask.shape == (8, 8) and (mask > 0).tolist() == y[0].bool().tolist()


def test_a_critic_learning_from_micro_batches_gets_the_whole_batchs_gradient(tmp_path):
    """Without the gradient penalty's random draws (gp_weight 0) and with no batch statistics in
    the critic, parts weighted by their share give the whole batch's critic gradient."""
    from peerdistill.build import make_trainer

    cfg = validate({**TINY, "name": "c", "out_dir": str(tmp_path), "distill": {"preset": "kd", "holistic_weight": 0.1}})
    trainer, data = make_trainer(cfg, progress=False)
    trainer._setup(data)
    trainer.gp_weight = 0.0
    trainer.cohort.train()
    x, _ = next(iter(trainer.train_batches))
    with torch.no_grad():
        maps = trainer._critic_inputs(trainer.cohort.forward(x))
    critic = trainer.discriminators[trainer._discriminator_keys["student1/holistic<-teacher"]]
    saved = {k: v.clone() for k, v in critic.state_dict().items()}

    def critic_gradient(parts):
        critic.load_state_dict(saved)
        trainer._discriminator_step(parts)
        return [p.grad.clone() for p in critic.parameters()]

    whole = critic_gradient([(1.0, x, maps)])
    cut = [5, len(x) - 5]
    pieces = [(n / len(x), xi, {e: (s.split(cut)[i], t.split(cut)[i]) for e, (s, t) in maps.items()})
              for i, (n, xi) in enumerate(zip(cut, x.split(cut)))]
    for a, b in zip(critic_gradient(pieces), whole):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


class _LinearCritic(torch.nn.Module):
    """D(I, m) = sum of w * m over classes and pixels: its gradients can be written by hand."""

    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(1, *shape, generator=torch.Generator().manual_seed(3)))

    def forward(self, image, maps):
        return (maps * self.w).flatten(1).sum(dim=1)


def test_the_holistic_term_and_its_critic_see_the_students_and_the_teachers_probabilities(tmp_path):
    """The wiring of the graph and of the critic's step, with a linear critic (no gradient
    penalty): the student's term is -weight * mean_b <w, softmax(student)>, with its gradient
    reaching the student's logits, and the critic's gradient is that of E[D(fake)] - E[D(real)]:
    mean_b softmax(student) - mean_b softmax(teacher) (the student's maps fake, the teacher's real)."""
    from peerdistill.build import make_trainer

    cfg = validate({**TINY, "name": "h", "out_dir": str(tmp_path), "distill": {"preset": "kd", "holistic_weight": 0.1}})
    trainer, data = make_trainer(cfg, progress=False)
    trainer._setup(data)
    trainer.gp_weight = 0.0
    edge = "student1/holistic<-teacher"
    x, y = next(iter(trainer.train_batches))
    out = trainer.cohort.forward(x)
    teacher, student = out.logits["teacher"], out.logits["student1"]
    assert teacher.shape == student.shape  # no resizing between them to write by hand
    critic = _LinearCritic(teacher.shape[1:])
    key = trainer._discriminator_keys[edge]
    trainer.discriminators[key] = critic
    trainer.discriminator_optimizers[key] = torch.optim.SGD(critic.parameters(), lr=0.0)

    term = trainer.graph.losses(out, y, trainer._connector_map(), inputs=x, discriminators=trainer._discriminator_map())[edge]
    w, p = critic.w.detach(), student.detach().softmax(dim=1)
    assert term.item() == pytest.approx(-0.1 * (w * p).flatten(1).sum(dim=1).mean().item(), rel=1e-5)
    (grad,) = torch.autograd.grad(term, student)
    by_hand = -0.1 / len(x) * p * (w - (p * w).sum(dim=1, keepdim=True))  # through the softmax
    torch.testing.assert_close(grad, by_hand, rtol=1e-4, atol=1e-9)

    with torch.no_grad():
        maps = trainer._critic_inputs(out)
    trainer._discriminator_step([(1.0, x, maps)])
    fake_minus_real = (p - teacher.detach().softmax(dim=1)).mean(dim=0, keepdim=True)
    torch.testing.assert_close(critic.w.grad, fake_minus_real, rtol=1e-4, atol=1e-9)


def test_a_step_in_micro_batches_teaches_the_critic_from_every_part(tmp_path):
    """Through the whole training step: the models in eval mode (running statistics: a part's maps
    are the whole batch's rows) and no gradient penalty, the critic's gradient after a step in
    parts of 5, 5, 5, 1 is the one after the whole batch of 16."""
    from peerdistill.build import make_trainer

    grads = {}
    for micro in (None, 5):
        train = {**TINY["train"], **({"micro_batch_size": micro} if micro else {})}
        cfg = validate({**TINY, "name": f"m{micro}", "out_dir": str(tmp_path), "train": train,
                        "distill": {"preset": "kd", "holistic_weight": 0.1}})
        trainer, data = make_trainer(cfg, progress=False)
        trainer._setup(data)
        trainer.gp_weight = 0.0
        for m in trainer.cohort.members:
            m.module.eval()
        x, y = next(iter(trainer.train_batches))
        assert len(x) == 16
        trainer.step(x, y)
        critic = trainer.discriminators[trainer._discriminator_keys["student1/holistic<-teacher"]]
        grads[micro] = [p.grad.clone() for p in critic.parameters()]
    for a, b in zip(grads[5], grads[None]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_sliding_window_run_scores_images_of_another_size(patch_shapes_run, tmp_path):
    from peerdistill.data.splits import kept_whole
    from peerdistill.predict import _run_model
    from peerdistill.runs import check_compatible, evaluate_run

    other = tmp_path / "other"  # 80x72 images: not the 64x64 the run trained on
    for folder in ("images", "masks"):
        (other / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        image = rng.integers(0, 255, (80, 72, 3), dtype=np.uint8)
        mask = np.zeros((80, 72), np.uint8)
        mask[10 + i:50, 20:60 - i] = 255
        image[mask > 0] //= 2
        Image.fromarray(image).save(other / "images" / f"{i}.png")
        Image.fromarray(mask).save(other / "masks" / f"{i}.png")
    spec = DataSpec(kind="folders", root=str(other), binary_masks=True, grey=True)  # as the shapes run
    scores = evaluate_run(patch_shapes_run, data_spec=spec, split="all")
    meta = json.loads((patch_shapes_run / "run.json").read_text())
    with kept_whole():
        data = build_data(spec, stats=meta["data_stats"])
    whole = data.split("all")
    assert tuple(whole.x.shape[-2:]) == (80, 72)
    _, run = _run_model(patch_shapes_run, "student1", None)  # predict's sliding window, by hand
    meter = SegmentationMeter(["background", "foreground"])
    meter.update(run(whole.x).softmax(1), whole.y)
    assert scores["student1"]["dice"] == pytest.approx(meter.compute()["dice"], abs=1e-6)
    with pytest.raises(DataError, match="its sliding window takes any size, not other channels"):
        check_compatible(build_data(DataSpec(kind="folders", root=str(other), binary_masks=True)), meta)


def test_masks_numbered_otherwise_are_scored_by_class_name(shapes_run, tmp_path):
    """The run's own test masks with background and object swapped, and said so by class_names:
    scored as the run numbers its classes, the same figures (ignored pixels kept ignored); names
    the run lacks are refused; masks without names of their own are read by value."""
    import dataclasses

    from peerdistill.data.splits import TensorData
    from peerdistill.runs import evaluate_run, read_run_data

    meta = json.loads((shapes_run / "run.json").read_text())
    own = read_run_data(meta)
    names = list(own.class_names)
    ignored = torch.zeros_like(own.test.y, dtype=torch.bool)
    ignored[:, :8] = True  # a band of pixels that count nowhere

    def swapped(split, band=None):
        y = 1 - split.y
        return TensorData(split.x, y if band is None else torch.where(band, torch.full_like(y, 255), y))

    def with_band(split):
        return TensorData(split.x, torch.where(ignored, torch.full_like(split.y, 255), split.y))

    named = {**own.info, "class_names_given": True}
    expected = evaluate_run(shapes_run, data=dataclasses.replace(own, test=with_band(own.test)))
    flipped = dataclasses.replace(own, train=swapped(own.train), val=swapped(own.val),
                                  test=swapped(own.test, ignored), class_names=names[::-1], info=named)
    scores = evaluate_run(shapes_run, data=flipped)
    for model in expected:
        assert scores[model]["dice"] == pytest.approx(expected[model]["dice"], abs=1e-9, nan_ok=True), model
        assert scores[model]["pixel_accuracy"] == pytest.approx(expected[model]["pixel_accuracy"], abs=1e-9), model
    with pytest.raises(DataError, match=r"the data has classes \['thing'\] that the run does not know"):
        evaluate_run(shapes_run, data=dataclasses.replace(own, class_names=[names[0], "thing"], info=named))
    # a run of named classes ([background, polyp], as the recipes name them) scores masks without
    # names of their own (given the defaults) by their values
    import shutil

    polyp = tmp_path / "polyp"
    shutil.copytree(shapes_run, polyp)
    (polyp / "run.json").write_text(json.dumps({**meta, "class_names": ["background", "polyp"]}))
    assert not own.info["class_names_given"] and own.class_names == ["background", "foreground"]
    by_value = evaluate_run(polyp, data=own)
    assert by_value["ensemble"]["pixel_accuracy"] == pytest.approx(evaluate_run(shapes_run)["ensemble"]["pixel_accuracy"])
    folder = tmp_path / "pairs"  # and image/mask files scored whole (--split all)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(folder / "images" / f"{i}.png")
        Image.fromarray((rng.random((64, 64)) > 0.7).astype(np.uint8)).save(folder / "masks" / f"{i}.png")
    whole = evaluate_run(polyp, split="all", data_spec=DataSpec(kind="folders", root=str(folder), grey=True))
    # every pixel of the three files scored: the share predict's masks get right, counted by hand
    from peerdistill import predict_files

    predicted = predict_files(polyp, [str(folder / "images")], tmp_path / "masks", model="ensemble")
    right = [np.asarray(Image.open(predicted / f"{i}_mask.png")) == np.asarray(Image.open(folder / "masks" / f"{i}.png"))
             for i in range(3)]
    assert whole["ensemble"]["pixel_accuracy"] == pytest.approx(np.mean(right), abs=1e-9)


def test_a_model_from_a_run_numbering_mask_classes_otherwise_is_refused_when_the_data_names_them(tmp_path):
    """A model taken from a segmentation run reads mask classes by the run's numbering: refused
    when the data names its classes otherwise (a run's default names count, as eval matches
    them), taken when the names agree or the data names none (masks read by value)."""
    from safetensors.torch import load_file

    from peerdistill.build import build_cohort
    from peerdistill.errors import CheckpointError

    write_pairs(tmp_path / "data", n=8)

    def config(name, class_names, checkpoint=None):
        return validate({"name": name, "out_dir": str(tmp_path), "task": "segmentation", "teacher": None,
                         "data": {"kind": "folders", "root": str(tmp_path / "data"), "class_names": class_names},
                         "students": [{"arch": "unet", "args": {"width": 4, "depth": 1}, "checkpoint": checkpoint}],
                         "distill": {"preset": "independent"}, "train": {"epochs": 1, "batch_size": 4}})

    train_from_config(config("named", ["background", "polyp"]), progress=False)
    train_from_config(config("unnamed", None), progress=False)

    def student_from(run, class_names, resumed=False):
        cfg = config("s", class_names, str(tmp_path / run))
        return build_cohort(cfg, build_data(cfg.data), saved=resumed).students[0].module

    for run, names, said in (("named", ["background", "lesion"], "['background', 'polyp']"),
                             ("unnamed", ["background", "lesion"], "['background', 'foreground']")):
        with pytest.raises(CheckpointError, match=re.escape(f"numbers its classes {said}, the data {names}: its outputs "
                                                            f"would be read as other classes; set data.class_names to "
                                                            f"{said} if the mask values mean the same")):
            student_from(run, names)
        student_from(run, names, resumed=True)  # a run resumed trains as it began: a check added since does not stop it
    for run, names in (("named", ["background", "polyp"]), ("named", None), ("unnamed", None),
                       ("unnamed", ["background", "foreground"])):
        saved = load_file(tmp_path / run / "models" / "student1.safetensors")
        taken = student_from(run, names).state_dict()
        assert all(torch.equal(taken[key], value) for key, value in saved.items()), (run, names)

def test_hd95_after_a_resize_is_said_to_be_in_pixels_of_the_resized_grid(tmp_path, capsys):
    from peerdistill.cli import main

    write_pairs(tmp_path / "d", n=8, size=16)
    args = [f"out_dir={tmp_path / 'runs'}", "name=r", "task=segmentation", "teacher=null", "distill.preset=ml",
            "data.kind=folders", f"data.root={tmp_path / 'd'}", "data.image_size=[12,12]", "train.epochs=1",
            "students=[{arch: unet, args: {width: 4, depth: 1}}, {arch: unet, args: {width: 4, depth: 1}}]"]
    assert main(["train", *args, "--quiet"]) == 0
    grid = ("note: every figure is scored on the 12x12 grid the models see (data.image_size), against masks resized "
            "to it, not at the files' own size")
    note = "; hd95 is in pixels of that grid; where the files are of another size than the grid (and all of one size), data.pixel_spacing=[1,1]"
    assert grid + " (thin" in " ".join(capsys.readouterr().err.split())
    assert main(["eval", str(tmp_path / "runs" / "r")]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert grid in said and note in said
    assert main(["eval", str(tmp_path / "runs" / "r"), "data.pixel_spacing=[1,1]"]) == 0  # in the files' pixels
    said = " ".join(capsys.readouterr().err.split())
    assert grid in said and "hd95 is in pixels" not in said  # (still scored on the grid: that part stays)
    # the report, the page passed on, says it under its table too
    assert main(["report", str(tmp_path / "runs" / "r")]) == 0
    page = " ".join((tmp_path / "runs" / "r" / "report.html").read_text(encoding="utf-8").split())
    assert grid.removeprefix("note: ").replace("'", "&#x27;") in page and note.replace("'", "&#x27;") in page
    # predict: an input of another shape than every training file (all 16x16) is squeezed as none was (review 52a)
    record = json.loads((tmp_path / "runs" / "r" / "run.json").read_text())
    assert record["data_info"]["file_aspects"] == [1.0, 1.0]
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((16, 28, 3), 90, np.uint8)).save(tmp_path / "in" / "wide.png")
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "in" / "large.png")  # square: as trained
    Image.fromarray(np.full((17, 16, 3), 90, np.uint8)).save(tmp_path / "in" / "near.png")  # within 10 %
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "runs" / "r"), str(tmp_path / "in"), "--out", str(tmp_path / "m")]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert (f"1 of 3 inputs are of another shape than every training file (e.g. '{tmp_path / 'in' / 'wide.png'}', "
            "16x28 (height x width): width to height 1.75, the training files' 1.00): each was squeezed to the model's 12x12 input "
            "otherwise than any training image was: if the training files were cut from such frames, cut these alike; if "
            "they were such frames resized whole (Kvasir-SEG's 256x256 copy is), this squeeze is the one training "
            "made, and the inputs can stay as they are") in said
    assert said.count("another shape") == 1


def test_eval_pictures_and_predicted_masks_spread_the_classes_alike():
    import numpy as np
    import torch

    from peerdistill.data.image_io import visible_levels

    for k, levels in ((2, [0, 255]), (3, [0, 128, 255]), (5, [0, 64, 128, 191, 255])):  # round(255 c / (k - 1))
        assert visible_levels(np.arange(k), k).tolist() == levels == visible_levels(torch.arange(k), k).tolist()


@pytest.mark.parametrize("n,fraction,sizes", [(10, 0.15, (7, 1, 2)), (20, 0.2, (12, 4, 4))])
def test_one_folder_is_cut_into_rounded_shares_of_the_whole(tmp_path, n, fraction, sizes):
    """val and test are shares of all the pairs, rounded: 10 pairs at 0.15 give test round(1.5) = 2
    and val round(8 * 0.15 / 0.85) = round(1.41) = 1; 20 at 0.2 give 4 and round(16 * 0.25) = 4."""
    write_pairs(tmp_path / "d", n=n)
    data = build_data(DataSpec(kind="folders", root=str(tmp_path / "d"), val_fraction=fraction,
                               test_fraction=fraction))
    assert (len(data.train), len(data.val), len(data.test)) == sizes


def test_segmentation_statistics_are_the_training_images_alone():
    """Train images 0.2 (one pixel 0.3), val 0.6, test 1.0: the saved mean and std are the
    training images' (NumPy's, n - 1 as torch.std), and the training split is standardised by them."""
    from peerdistill.data.segmentation import segmentation_splits

    masks = np.zeros((4, 8, 8), np.int64)
    masks[:, 2:6, 2:6] = 1
    images = [np.full((4, 8, 8), value, np.float32) for value in (0.2, 0.6, 1.0)]
    images[0][0, 0, 0] = 0.3
    data = segmentation_splits(images, [masks] * 3)
    assert data.stats["mean"] == pytest.approx([images[0].mean()], rel=1e-6)
    assert data.stats["std"] == pytest.approx([images[0].std(ddof=1)], rel=1e-5)
    assert float(data.train.x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(data.val.x.mean()) == pytest.approx((0.6 - images[0].mean()) / images[0].std(ddof=1), rel=1e-4)


def test_segmentation_test_images_identical_to_training_images_are_warned_of(tmp_path):
    # image/mask pairs copied under new names put test images in training, in silence
    from peerdistill import Cohort, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.errors import PeerdistillWarning
    from peerdistill.models import UNet

    rng = np.random.default_rng(0)
    images = [rng.random((n, 8, 8)).astype(np.float32) for n in (6, 4, 4)]
    masks = [(image > 0.5).astype(np.int64) for image in images]
    images[2][1], masks[2][1] = images[0][3], masks[0][3]
    from peerdistill.data.segmentation import segmentation_splits

    data = segmentation_splits(images, masks)
    trainer = Trainer(Cohort.from_modules([UNet(1, 2, width=4, depth=1)]), KnowledgeGraph([]), SegmentationTask(2),
                      train=TrainSpec(epochs=1, batch_size=2), progress=False)
    with pytest.warns(PeerdistillWarning, match=r"^1 of 4 test inputs are identical to training inputs \('sample 1 of the test "
                                                r"split' = 'sample 3 of the train split'\): their figures "
                                                r"are not held out"):
        trainer.fit(data)


def test_synthetic_shapes_of_other_split_seeds_share_no_image():
    """data.split_seed gives other data: no mask of seed 0's splits is in any split of seed 1."""
    a, b = (build_data(DataSpec(kind="shapes", shapes_counts=[8, 8, 8], split_seed=s)) for s in (0, 1))
    first = [m for split in (a.train, a.val, a.test) for m in split.y]
    second = [m for split in (b.train, b.val, b.test) for m in split.y]
    assert not any(torch.equal(m, n) for m in first for n in second)


def test_balanced_class_weights_of_masks_leave_ignored_pixels_out():
    """6 background, 2 foreground and 8 ignored pixels: n / (k count_c) over the 8 counted,
    8 / (2 * 6) and 8 / (2 * 2) (scikit-learn's rule by hand), two weights."""
    from peerdistill.tasks.classification import balanced_class_weights

    masks = torch.tensor([[[0, 0, 0, 1], [0, 0, 0, 1], [255] * 4, [255] * 4]])
    assert balanced_class_weights(masks, 2, ignore_index=255).tolist() == pytest.approx([8 / 12, 8 / 4])
    # and so does the task a config with data.class_weights builds from such training masks
    from peerdistill.build import build_task
    from peerdistill.data import DataSplits, TensorData

    split = TensorData(torch.zeros(1, 1, 4, 4), masks)
    data = DataSplits(split, split, split, 2, ["background", "shape"], (1, 4, 4))
    cfg = validate({"task": "segmentation", "data": {"kind": "shapes", "class_weights": True},
                    "students": [{"arch": "unet", "args": {"width": 2, "depth": 1}}], "teacher": None,
                    "distill": {"preset": "independent"}})
    assert build_task(cfg, data).class_weights.tolist() == pytest.approx([8 / 12, 8 / 4])


def test_the_ensemble_of_maps_of_two_sizes_is_at_the_larger():
    """Student A at 8 x 8 (a checkerboard of probabilities), B at 4 x 4 (0.5 everywhere, the same
    at any size): the mean (a + 0.5) / 2 at 8 x 8."""
    a = torch.zeros(1, 2, 8, 8)
    a[:, 1] = (torch.arange(8).view(8, 1) + torch.arange(8)) % 2 * 0.8 + 0.1
    a[:, 0] = 1 - a[:, 1]
    b = torch.full((1, 2, 4, 4), 0.5)
    torch.testing.assert_close(SegmentationTask(2).ensemble([a, b]), (a + 0.5) / 2)
    torch.testing.assert_close(SegmentationTask(2).ensemble([b, a]), (a + 0.5) / 2)


def test_a_mask_value_equal_to_the_class_count_is_named():
    task = SegmentationTask(2)
    with pytest.raises(DataError, match="the train masks hold value 2, outside the 2 classes"):
        task.check_targets(torch.tensor([[[0, 1], [2, 255]]]), "train")
    task.check_targets(torch.tensor([[[0, 1], [1, 255]]]), "train")  # 255: ignored


def test_the_mean_dice_and_iou_weigh_each_foreground_class_alike_however_many_images_hold_it():
    """Class 1 in three images, all perfect; class 2 in one image, missed: the means are those
    of the two classes' means, (1 + 0) / 2, not of the four (image, class) entries pooled
    (3 / 4), which would let a frequent class outweigh a rare one."""
    truth = np.zeros((3, 4, 4), np.int64)
    pred = np.zeros((3, 4, 4), np.int64)
    truth[:, 0, 0] = pred[:, 0, 0] = 1
    truth[0, 3, 3] = 2  # predicted as background: TP 0, FP 0, FN 1
    m = meter_on(pred, truth, k=3)
    assert (m["dice_1"], m["dice_2"], m["iou_1"], m["iou_2"]) == (1.0, 0.0, 1.0, 0.0)
    assert m["dice"] == pytest.approx(0.5) and m["iou"] == pytest.approx(0.5)


def test_the_mean_hd95_weighs_each_foreground_class_alike_however_many_images_hold_it():
    """Class 1 in two images (1 pixel off in each), class 2 in one (5 pixels off): hd95 is the
    mean of the two classes' means, (1 + 5) / 2, not the mean of the three distances pooled
    (7 / 3). (In the three-class case above the two happen to agree.)"""
    truth = np.zeros((2, 32, 32), np.int64)
    pred = np.zeros((2, 32, 32), np.int64)
    truth[:, 2:8, 2:8] = 1
    pred[0, 2:8, 3:9] = pred[1, 3:9, 2:8] = 1
    truth[0, 16:24, 16:24], pred[0, 16:24, 21:29] = 2, 2
    one = [naive_hd95(pred[i] == 1, truth[i] == 1) for i in (0, 1)]
    two = naive_hd95(pred[0] == 2, truth[0] == 2)
    expected = (np.mean(one) + two) / 2
    assert expected != pytest.approx(np.mean(one + [two]), rel=0.05)  # the pooled mean is another figure
    m = meter_on(pred, truth, k=3)
    assert (m["hd95_1"], m["hd95_2"]) == (pytest.approx(np.mean(one)), pytest.approx(two))
    assert m["hd95"] == pytest.approx(expected, rel=1e-9)


def test_missed_counts_the_images_holding_a_class_where_the_prediction_holds_none_of_it():
    """The images HD95 cannot score because the model found nothing: counted per (image, class)
    the truth holds, by hand. An image without the class in the truth is no miss whatever is
    predicted there; an ignored pixel of the class is not in the truth; a meter's share merged
    with another's is the share of the pooled images."""
    truth = np.zeros((4, 8, 8), np.int64)
    pred = np.zeros((4, 8, 8), np.int64)
    truth[0, 1:4, 1:4], pred[0, 2:5, 2:5] = 1, 1   # class 1 found
    truth[1, 1:4, 1:4] = 1                          # class 1 missed
    truth[1, 5:7, 5:7], pred[1, 5:6, 5:6] = 2, 2    # class 2 found (one pixel)
    truth[2, 0:2, 0:2] = 2                          # class 2 missed ...
    pred[2, 6:8, 6:8] = 1                           # ... and class 1 predicted where the truth has none: no miss
    truth[3, 3, 3] = 255                            # ignored only: nothing of class 1 in the truth
    m = meter_on(pred, truth, k=3)
    assert (m["missed_1"], m["missed_2"], m["missed"]) == (1 / 2, 1 / 2, 2 / 4)
    assert math.isnan(meter_on(pred[3:], truth[3:], k=3)["missed"]), "no class in the truth: nothing to miss"
    assert meter_on(np.zeros_like(truth), truth, k=3)["missed"] == 1.0
    binary = meter_on((pred == 1).astype(np.int64), (truth == 1).astype(np.int64))
    assert binary["missed"] == 1 / 2 and "missed_1" not in binary  # its own: no copy
    first, second = (SegmentationMeter(["bg", "a", "b"]) for _ in range(2))
    first.update(torch.nn.functional.one_hot(torch.as_tensor(pred[:2]), 3).permute(0, 3, 1, 2).float(),
                 torch.as_tensor(truth[:2]))
    second.update(torch.nn.functional.one_hot(torch.as_tensor(pred[2:]), 3).permute(0, 3, 1, 2).float(),
                  torch.as_tensor(truth[2:]))
    first.merge(second)
    assert first.compute()["missed"] == 2 / 4


def test_a_one_pixel_region_has_a_distance_in_the_mean_hd95():
    """A one-pixel true region and a one-pixel prediction 3 columns away: both non-empty, so
    the image counts, with HD95 3 (a lesion of one pixel is not left out of the figure)."""
    truth = np.zeros((2, 8, 8), np.int64)
    pred = np.zeros((2, 8, 8), np.int64)
    truth[0, 4, 2], pred[0, 4, 5] = 1, 1
    truth[1, 1:7, 1:7] = pred[1, 1:7, 1:7] = 1  # a perfect image: distance 0
    assert meter_on(pred, truth)["hd95"] == pytest.approx((naive_hd95(pred[0], truth[0]) + 0.0) / 2) == 1.5


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI about its own internals
def test_an_image_larger_than_the_window_along_one_side_only_is_scored_window_by_window():
    """The model sees only windows of the window's size whenever either side is larger (a
    model trained on 8 x 8 crops never gets a 16 x 8 image), and the windows of a per-pixel
    identity blend back into the image."""
    from peerdistill.engine.evaluate import windowed

    for shape in ((16, 8), (8, 16)):
        seen = []
        x = torch.rand(1, 2, *shape, generator=torch.Generator().manual_seed(0))
        out = windowed(lambda t: seen.append(tuple(t.shape[-2:])) or t, x, (8, 8))
        assert set(seen) == {(8, 8)}, shape
        torch.testing.assert_close(out, x)


def test_a_split_without_foreground_pixels_has_no_pixel_auc_but_its_other_figures():
    """No pixel of the truth is foreground (a split of healthy images): no (foreground,
    background) pair to rank, so the pixel AUC is undefined (NaN), and the split is scored."""
    truth = np.zeros((2, 4, 4), np.int64)
    pred = np.zeros((2, 4, 4), np.int64)
    pred[0, 0, 0] = 1  # one false positive
    m = meter_on(pred, truth)
    assert math.isnan(m["auc"]) and math.isnan(m["sensitivity"])
    assert m["specificity"] == pytest.approx(31 / 32) and m["pixel_accuracy"] == pytest.approx(31 / 32)


def _fit_masks(make_mask):
    """One epoch of two tiny U-Nets on a Dataset whose masks ``make_mask(bool map)`` gives."""
    from peerdistill import Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.models.unet import UNet

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 16, 16, generator=g) for _ in range(24)]
    pairs = [(x, make_mask(x[0] > 0.5)) for x in images]
    data = DataSplits(pairs[:12], pairs[12:18], pairs[18:], num_classes=2)
    cohort = Cohort.from_modules([UNet(3, 2, 4, 1), UNet(3, 2, 4, 1)])
    return Trainer(cohort, KnowledgeGraph([]), SegmentationTask(2), device="cpu", progress=False,
                   train=TrainSpec(epochs=1, batch_size=4)).fit(data)


@pytest.mark.parametrize("make_mask, message", [
    (lambda m: m.float(), r"masks are float32 of shape \(6, 16, 16\); .* return each as whole numbers \(mask.long\(\)\)"),
    (lambda m: m.float() * 0.7, r"masks of fractions .* need thresholding, \(mask > 0.5\).long\(\)"),
    (lambda m: m.long()[None], r"masks are int64 of shape \(6, 1, 16, 16\); .* drop each mask's channel axis in the "
                               r"dataset \(mask\[0\]\)"),
], ids=["float", "fractions", "channel-axis"])
def test_masks_a_dataset_gives_in_the_usual_wrong_forms_are_told_the_fix(make_mask, message):
    with pytest.raises(DataError, match=message):
        _fit_masks(make_mask)


def test_binary_masks_of_0_and_255_from_a_dataset_are_warned_of_once():
    # their foreground read as ignored: every Dice NaN, in silence
    import warnings

    from peerdistill.errors import PeerdistillWarning

    with pytest.warns(PeerdistillWarning) as said:
        result = _fit_masks(lambda m: m.long() * 255)
    doubtful = [str(w.message) for w in said if "hold only 0 and 255" in str(w.message)]
    assert doubtful == ["the first validation and test masks hold only 0 and 255: 255 marks ignored pixels, so none "
                        "is class 1; masks saved as 0/255 for background/foreground need mask // 255 in the dataset "
                        "(image files: data.binary_masks: true)"]
    assert math.isnan(result.test_at_best["ensemble"]["dice"])  # why it matters
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        _fit_masks(lambda m: m.long())
    assert not [w for w in quiet if "0 and 255" in str(w.message)]


def test_classifiers_given_segmentation_data_are_told_which_models_to_use(tmp_path, capsys):
    """task=segmentation on the embedded default's classifiers: the message names the zoo's
    segmentation models and the recipe to start from."""
    write_pairs(tmp_path / "d", n=8)
    assert main(["train", "task=segmentation", "data.kind=folders", f"data.root={tmp_path / 'd'}", "train.epochs=1",
                 f"out_dir={tmp_path / 'runs'}", "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert ("model 'teacher' outputs a tensor of shape (2, 2); segmentation needs [batch, 2, H, W] maps (a classifier "
            "gives [batch, classes]): use a segmentation model, such as the zoo's (in a config, teacher: {arch: unet} "
            "and students' arch: mobile_unet; recipes/shapes.yaml is a whole segmentation config)") in err


def test_a_one_map_sigmoid_model_and_label_maps_for_a_classifier_are_named_as_such():
    """Review 50b: a MONAI UNet(out_channels=1) read "outputs 1 classes ... num_classes=2", and
    segmentation masks given to a classification task were told to take the argmax of one-hot labels."""
    import torch

    from peerdistill.tasks import ClassificationTask, SegmentationTask

    with pytest.raises(DataError) as refused:
        SegmentationTask(2).check_output("student1", torch.zeros(3, 1, 8, 8), 3)
    assert str(refused.value) == (
        "model 'student1' outputs 1 class map (maps (3, 1, 8, 8)) but the data has 2 classes: build every model with "
        "num_classes=2 (out_channels in MONAI and segmentation_models_pytorch); a single map is a sigmoid set-up's "
        "(MONAI's out_channels=1): peerdistill takes one map per class, background included, and applies a softmax")
    with pytest.raises(DataError, match=r"outputs 3 class maps \(maps \(3, 3, 8, 8\)\) but the data has 2 classes: "
                                        r"build every model with num_classes=2 \(out_channels .*\)$"):
        SegmentationTask(2).check_output("student1", torch.zeros(3, 3, 8, 8), 3)
    with pytest.raises(DataError, match=r"the train labels are int64 of shape \(4, 8, 8\); .* \(these look like "
                                        r"segmentation masks, one class per pixel: use SegmentationTask"):
        ClassificationTask(2).check_targets(torch.zeros(4, 8, 8, dtype=torch.long), "train")
    with pytest.raises(DataError, match=r"for one-hot labels, return their argmax"):
        ClassificationTask(2).check_targets(torch.zeros(4, 2), "train")


def test_predict_says_when_a_dense_model_meets_inputs_of_another_scale(shapes_run, patch_shapes_run, tmp_path):
    """A run recording no resize or window predicts each input at its own size: one four times
    larger per side than its training images is warned of; a sliding-window run is not."""
    import warnings

    from peerdistill.errors import PeerdistillWarning
    from peerdistill.predict import predict_files

    side = json.loads((shapes_run / "run.json").read_text())["input_shape"][1]
    rng = np.random.default_rng(0)
    for name, size in (("same.png", side), ("large.png", 4 * side)):
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(tmp_path / name)  # grey, as trained
    with pytest.warns(PeerdistillWarning, match=rf"^1 of 2 inputs are of another scale than the {side}x{side} images "
                                                rf"the model was trained on \('.*large.png' is {4 * side}x{4 * side}\)"):
        predict_files(shapes_run, [str(tmp_path / "same.png"), str(tmp_path / "large.png")], tmp_path / "masks")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)  # the window is what a whole image is predicted by
        # (the synthetic shapes lie on about -3..3, which no PNG holds: that is said apart)
        warnings.filterwarnings("ignore", message=".*vary in intensity far less than the training images")
        predict_files(patch_shapes_run, [str(tmp_path / "large.png")], tmp_path / "window-masks")


def test_predict_skip_unreadable_lists_the_damaged_inputs_in_the_folder_of_masks(shapes_run, tmp_path):
    from peerdistill.predict import predict_files

    side = json.loads((shapes_run / "run.json").read_text())["input_shape"][1]
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "in" / "cut.png")  # read, at first
    predict_files(shapes_run, [str(tmp_path / "in")], tmp_path / "masks", overlays=tmp_path / "pictures")
    (tmp_path / "in" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # then damaged
    with pytest.warns(PeerdistillWarning, match=r"^1 of 2 inputs cannot be read and were not predicted"):
        masks = predict_files(shapes_run, [str(tmp_path / "in")], tmp_path / "masks", skip_unreadable=True,
                              overlays=tmp_path / "pictures")
    # the earlier mask and picture of the input now skipped go (review 45e: they passed for this call's)
    assert sorted(p.name for p in masks.iterdir()) == ["good_mask.png", "unreadable.csv"]
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == ["good_overlay.png"]
    assert (masks / "unreadable.csv").read_text().splitlines()[1].startswith(f"{tmp_path / 'in' / 'cut.png'},")
    # an unreadable input of a readable one's name (another folder): that one's fresh mask stays (review 45f)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "good.jpg").write_bytes(b"")
    with pytest.warns(PeerdistillWarning, match=r"^1 of 2 inputs cannot be read"):
        predict_files(shapes_run, [str(tmp_path / "in" / "good.png"), str(tmp_path / "other" / "good.jpg")],
                      tmp_path / "masks", skip_unreadable=True)
    assert (masks / "good_mask.png").is_file()


def test_predict_replaces_its_own_masks_never_a_users_file_of_the_same_name(shapes_run, tmp_path, monkeypatch):
    """Review 46e: predict wrote NAME_mask.png over any file of that name (a folder of true masks
    named so); its PNGs now carry a mark, and a file without it is refused before anything runs."""
    from peerdistill.errors import ConfigError
    from peerdistill.predict import predict_files
    from peerdistill.predict_outputs import written_by_predict

    side = json.loads((shapes_run / "run.json").read_text())["input_shape"][1]
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "in" / f"{name}.png")
    masks = predict_files(shapes_run, [str(tmp_path / "in")], tmp_path / "masks", overlays=tmp_path / "pictures")
    assert all(written_by_predict(f) for f in [*masks.glob("*.png"), *(tmp_path / "pictures").glob("*.png")])
    predict_files(shapes_run, [str(tmp_path / "in")], tmp_path / "masks", overlays=tmp_path / "pictures")  # its own
    truth = np.full((side, side), 1, np.uint8)
    Image.fromarray(truth).save(masks / "b_mask.png")  # a true mask of the user's, named as predict names its own
    before = {f.name: f.read_bytes() for f in masks.iterdir()}
    with pytest.raises(ConfigError, match=r"out='.*masks' holds 1 file\(s\) that predict would replace and did "
                                          r"not write, or wrote before it marked its pictures \(2026-12-06\) "
                                          r"\('b_mask.png'\): write the masks to another folder"):
        predict_files(shapes_run, [str(tmp_path / "in")], tmp_path / "masks")
    assert {f.name: f.read_bytes() for f in masks.iterdir()} == before
    # nor does a skipped input's earlier mask go when it is the user's
    (tmp_path / "in" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.warns(PeerdistillWarning, match=r"^1 of 2 inputs cannot be read"):
        predict_files(shapes_run, [str(tmp_path / "in")], tmp_path / "masks", skip_unreadable=True)
    assert np.array_equal(np.asarray(Image.open(masks / "b_mask.png")), truth)
    # a folder it cannot write in is found before any input is read (root passes any permission: os.access told)
    unwritable = tmp_path / "locked"
    unwritable.mkdir()
    monkeypatch.setattr("peerdistill.engine.artifacts.os.access", lambda path, mode: Path(path) != unwritable)
    monkeypatch.setattr("peerdistill.predict._predicted", lambda *a, **k: pytest.fail("predicted before the check"))
    with pytest.raises(PermissionError, match="cannot be written in"):
        predict_files(shapes_run, [str(tmp_path / "in" / "a.png")], tmp_path / "elsewhere",
                      overlays=unwritable / "pictures")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(NotADirectoryError):  # (review 46f: under a file, found after the masks were written)
        predict_files(shapes_run, [str(tmp_path / "in" / "a.png")], tmp_path / "elsewhere",
                      overlays=tmp_path / "a-file" / "pictures")
    assert not (tmp_path / "elsewhere").exists()


def test_the_segmentation_docs_python_example_runs_and_from_arrays_points_masks_to_it(tmp_path, capsys):
    """docs/segmentation.md's From Python example, as written (placeholders filled with a few
    generated shapes, one epoch), read back by evaluate_run and by the command line (told how
    to give segmentation data, then given image and mask folders)."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "segmentation.md"
    code = re.search(r"## From Python\n.*?```python\n(.*?)```", docs.read_text(), re.S).group(1)
    code = code.replace('"runs/polyps"', repr(str(tmp_path / "polyps"))).replace("epochs=10", "epochs=1")
    shapes = build_data(DataSpec(kind="shapes", shapes_counts=[12, 4, 4]))
    colour = {}
    for split in ("train", "val", "test"):
        part = shapes.split(split)
        colour[f"x_{split}"], colour[f"m_{split}"] = part.x.repeat(1, 3, 1, 1).numpy(), part.y.numpy()
    namespace = dict(colour)
    exec(compile(code, str(docs), "exec"), namespace)
    assert 0 <= namespace["result"].test_at_best["ensemble"]["dice"] <= 1
    from peerdistill import DataSplits, evaluate_run

    scores = evaluate_run(tmp_path / "polyps", data=namespace["data"])  # the zoo models rebuilt from run.json
    assert scores["ensemble"]["dice"] == pytest.approx(namespace["result"].test_at_best["ensemble"]["dice"], abs=1e-6)
    # on the command line: told how to give segmentation data, then given it as the docs say
    run = tmp_path / "polyps"
    assert main(["eval", str(run)]) == 2
    assert "on the command line, eval RUN_DIR data.kind=folders data.root=FOLDER (images/ and masks/ in it)" in \
        " ".join(capsys.readouterr().err.split())
    write_pairs(tmp_path / "files", n=6, size=64)  # colour images, as the run's inputs
    assert main(["eval", str(run), "data.kind=folders", f"data.root={tmp_path / 'files'}", "--split", "all"]) == 0
    with pytest.raises(DataError, match=r"train labels have shape \(12, 64, 64\): masks \[N, H, W\] are segmentation's.*"
                                        r"TensorData\(images, masks\).*SegmentationTask\(K\)"):
        DataSplits.from_arrays(colour["x_train"], colour["m_train"], colour["x_val"], colour["m_val"], colour["x_test"],
                               colour["m_test"])


class _WritesNaNOutsideTheFieldOfView(torch.nn.Module):
    """A 1x1 convolution whose output is NaN where the input's first channel is negative (the
    region a field-of-view mask leaves out), as a model masking its own output might."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 2, 1)

    def forward(self, x):
        return self.conv(x).masked_fill(x[:, :1] < 0, float("nan"))


def test_a_model_writing_nan_only_at_ignored_pixels_is_scored_as_one_writing_zeros_there():
    """Evaluation reads what the metrics read, the labelled pixels: NaN logits outside a field
    of view (labelled 255), which no loss reads either, are scored as finite ones there would
    be; a NaN at one labelled pixel is refused as before."""
    from peerdistill.cohort import Cohort, Member
    from peerdistill.engine.evaluate import evaluate
    from peerdistill.errors import NonFiniteError

    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 1, 8, 8, generator=g)
    x[:, :, :, :2] = -1  # outside the field of view
    y = (x[:, 0] > 0.5).long()
    y[x[:, 0] < 0] = 255
    model = _WritesNaNOutsideTheFieldOfView()
    cohort = Cohort([Member("student1", model, "student")])
    scored = evaluate(cohort, SegmentationTask(2), [(x, y)])
    zeros = Cohort([Member("student1", _Without(model), "student")])
    assert scored == evaluate(zeros, SegmentationTask(2), [(x, y)])
    assert 0 < scored["student1"]["dice"] <= 1
    y[0, 3, 3] = 255  # not the problem: a NaN at a labelled pixel is
    x[1, 0, 4, 4] = -0.5
    with pytest.raises(NonFiniteError, match="'student1' gives non-finite outputs"):
        evaluate(cohort, SegmentationTask(2), [(x, y)])


class _Without(torch.nn.Module):
    """The same model with 0 where it writes NaN."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).nan_to_num(0.0)


@pytest.mark.parametrize("monitor, warned", [("ensemble/hd95", True), ("student1/hd95", True),
                                             ("ensemble/hd95_lesion", True), ("ensemble/dice", False)])
def test_monitoring_hd95_warns_that_it_leaves_out_images_where_nothing_is_found(monitor, warned):
    """HD95 skips an image where the prediction is empty, so a model that finds nothing there
    scores better than one that finds the structure roughly: the metric a monitor picks the best
    epoch by, said when it is chosen."""
    import warnings

    from peerdistill import Cohort, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.models.unet import UNet

    cohort = Cohort.from_modules([UNet(3, 3, 4, 1), UNet(3, 3, 4, 1)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(cohort, KnowledgeGraph([]), SegmentationTask(3, class_names=["bg", "lesion", "organ"]), device="cpu",
                progress=False, train=TrainSpec(epochs=1, batch_size=4, monitor=monitor))
    said = [str(w.message) for w in caught if "finds nothing" in str(w.message)]
    assert said == ([f"train.monitor '{monitor}': HD95 leaves out the images where a model finds nothing of a class "
                     "the truth holds, so an epoch that misses a structure scores better than one that finds it "
                     "roughly (missed counts those images); monitor dice, or read missed beside HD95"] if warned else [])


@pytest.mark.parametrize("scale, message", [
    (255, r"the training masks hold no foreground pixel \(only background and ignored ones\): they hold only 0 and "
          r"255: 255 marks ignored pixels, so none is class 1; masks saved as 0/255 for background/foreground need "
          r"mask // 255"),
    (0, r"the training masks hold no foreground pixel \(only background and ignored ones\): every model would "
        r"learn to mark nothing"),
])
def test_training_masks_given_in_python_without_any_foreground_are_refused_before_training(tmp_path, scale, message):
    """Masks saved 0/255 and given from Python (the image folders refuse them): every polyp pixel
    would be ignored, and training would run to its end on background alone."""
    from peerdistill import Cohort, DataSplits, KnowledgeGraph, TensorData, Trainer, TrainSpec
    from peerdistill.models.unet import UNet

    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 16, 16, generator=g)
    masks = (x[:, 0] > 0.5).long()
    data = DataSplits(TensorData(x[:6], masks[:6] * scale), TensorData(x[6:9], masks[6:9]),
                      TensorData(x[9:], masks[9:]), num_classes=2)
    cohort = Cohort.from_modules([UNet(1, 2, 4, 1)])
    trainer = Trainer(cohort, KnowledgeGraph([]), SegmentationTask(2), device="cpu", progress=False,
                      train=TrainSpec(epochs=1, batch_size=4), run_dir=tmp_path / "run")
    with pytest.raises(DataError, match=message):
        trainer.fit(data)
    assert not (tmp_path / "run").exists(), "refused before anything is written"


def test_self_distillation_heads_on_a_segmentation_cohort_are_refused_by_name_from_python():
    """The config refuses students.N.heads outside classification; from Python the same cohort
    failed later on the heads' [B, C] outputs, with advice to use a segmentation model."""
    from peerdistill import Cohort, HeadedModel, KnowledgeGraph, Trainer
    from peerdistill.errors import ConfigError
    from peerdistill.models.unet import UNet

    net = HeadedModel(UNet(1, 2, 4, 2), head_layers=["down.0"], deep_layer="down.2", num_classes=2,
                      sample_input=torch.zeros(2, 1, 16, 16))
    cohort = Cohort.from_modules([net])
    with pytest.raises(ConfigError, match=r"'student1' carries self-distillation heads \(HeadedModel, the 'self' "
                                          r"preset\), "
                                          r"which are for classification: .* not the maps segmentation needs"):
        Trainer(cohort, KnowledgeGraph.from_preset("self", cohort), SegmentationTask(2), device="cpu", progress=False)


def _run_the_deployment_pages_segmentation_block(onnx: Path, image: Path) -> dict:
    page = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    block = re.search(r"## Segmentation\n.*?```python\n(.*?)```", page, re.S).group(1)
    scope = {"image_path": str(image)}  # (all else the block reads itself: review 46a)
    exec(block.replace('"student1.onnx"', repr(str(onnx))).replace('"student1.json"', repr(str(onnx.with_suffix(".json")))),
         scope)  # noqa: S102 - the page's own block
    return scope


class _SignOfTheImage(torch.nn.Module):
    """Hand-made scores that follow the image (class 1 where it is brighter than its mean), for
    ``copies`` students side by side: a graph whose masks hold both classes, which a one-epoch
    model's need not (review 46f: the block's resize rule went untested)."""

    def __init__(self, copies: int = 1):
        super().__init__()
        self.copies = copies

    def forward(self, x):
        s = x[:, :1] - x[:, :1].mean(dim=(2, 3), keepdim=True)
        # each copy its own threshold and scale: students that disagree near the edges, so that how
        # they are combined (the mean of their probabilities) shows in the mask
        shifts = [0.4 * (k / (self.copies - 1) - 0.5) if self.copies > 1 else 0.0 for k in range(self.copies)]
        return torch.cat([torch.cat([-(s - b), s - b], 1) * (k + 1) for k, b in enumerate(shifts)], 1)


def _hand_made_export(run: Path, output: str, path: Path) -> Path:
    """``_SignOfTheImage`` exported with the JSON a run's export would have (its sizes, window)."""
    from peerdistill.export import to_onnx
    from peerdistill.exported_models import student_count
    from peerdistill.sidecar import write_sidecar

    meta = json.loads((run / "run.json").read_text())
    copies = student_count(meta) if output == "student_logits" else 1
    path.parent.mkdir(parents=True, exist_ok=True)
    to_onnx(_SignOfTheImage(copies), torch.zeros(1, meta["input_shape"][0], 16, 16), path, dense=True)
    write_sidecar(path, meta, output)
    return path


def test_the_deployment_pages_sliding_window_block_gives_predicts_masks(patch_shapes_run, tmp_path):
    """docs/deployment.md, "Segmentation": run as written on an exported patch-trained model, it
    gives the masks predict writes (review 45d: the blending was in the source alone)."""
    from peerdistill.export import export_run
    from peerdistill.predict import _onnx_model, predict_files

    onnx = export_run(patch_shapes_run, model="student1", out=tmp_path / "student1.onnx").path
    info = json.loads(onnx.with_suffix(".json").read_text())
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 80)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    assert info["window"] and info["image_size"] is None and info["output"] == "logits"
    scope = _run_the_deployment_pages_segmentation_block(onnx, tmp_path / "in.png")
    assert scope["x"].shape == (1, 1, 64, 80)
    masks = predict_files(onnx, [str(tmp_path / "in.png")], tmp_path / "masks")
    assert np.array_equal(scope["mask"].numpy(), np.asarray(Image.open(masks / "in_mask.png")))
    # the scores themselves, not the calls alone (a one-epoch model may call every pixel one class)
    _, run = _onnx_model(onnx)
    np.testing.assert_allclose(scope["scores"].numpy(), run(torch.from_numpy(scope["x"].numpy())).numpy(), atol=1e-5)
    # an even blend of the same windows is not the same figure: the check can tell them apart
    from monai.inferers import sliding_window_inference

    even = sliding_window_inference(scope["x"], (info["window"],) * 2, 8, scope["graph"], info["window_overlap"])
    assert np.abs(even.numpy() - scope["scores"].numpy()).max() > 1e-3
    # an image within one window is run whole and unpadded, as predict runs it (review 50d: the block padded
    # it to the window, and 20 to 92 of 300 pixels of a small crop differed)
    Image.fromarray((rng.random((11, 13)) * 255).astype(np.uint8)).save(tmp_path / "small.png")
    assert info["window"] > 13
    scope = _run_the_deployment_pages_segmentation_block(onnx, tmp_path / "small.png")
    masks = predict_files(onnx, [str(tmp_path / "small.png")], tmp_path / "small-masks")
    assert np.array_equal(scope["mask"].numpy(), np.asarray(Image.open(masks / "small_mask.png")))
    np.testing.assert_allclose(scope["scores"].numpy(), run(torch.from_numpy(scope["x"].numpy())).numpy(), atol=1e-5)
    # students side by side (a sliding-window ensemble's graph), on a graph whose masks hold both classes
    side_by_side = _hand_made_export(patch_shapes_run, "student_logits", tmp_path / "sides" / "student1.onnx")
    scope = _run_the_deployment_pages_segmentation_block(side_by_side, tmp_path / "in.png")
    masks = predict_files(side_by_side, [str(tmp_path / "in.png")], tmp_path / "sides" / "masks")
    mask = np.asarray(Image.open(masks / "in_mask.png"))
    assert set(np.unique(mask)) == {0, 1} and np.array_equal(scope["mask"].numpy(), mask)
    students = scope["scores"].unflatten(1, (scope["info"]["ensemble_of"], -1))  # (review 46g: combinations told apart)
    assert students.shape[1] >= 2
    # (a student alone differs; for two students of two classes the mean of the logits calls every pixel as the mean
    # of the probabilities does: sigmoid(a) + sigmoid(b) = 1 exactly where a + b = 0)
    for alone in (students[:, 0], students[:, -1]):
        assert not np.array_equal(alone.argmax(dim=1)[0].numpy(), mask)


def test_the_deployment_pages_segmentation_block_gives_predicts_masks_for_a_resized_whole_image_ensemble(tmp_path):
    """The block's other branches (review 46d L4, 46e M1): a model of whole images resized to
    data.image_size, an ensemble's probabilities, the probabilities resized back to the file's
    size before the argmax, as predict writes masks."""
    from peerdistill.cli import main
    from peerdistill.export import export_run
    from peerdistill.predict import predict_files

    write_pairs(tmp_path / "d", n=8, size=16)
    assert main(["train", f"out_dir={tmp_path / 'runs'}", "name=r", "task=segmentation", "teacher=null",
                 "distill.preset=ml", "data.kind=folders", f"data.root={tmp_path / 'd'}", "data.image_size=[12,12]",
                 "train.epochs=1", "students=[{arch: unet, args: {width: 4, depth: 1}}, {arch: unet, args: "
                 "{width: 4, depth: 1}}]", "--quiet"]) == 0
    onnx = export_run(tmp_path / "runs" / "r", model="ensemble", out=tmp_path / "student1.onnx").path
    info = json.loads(onnx.with_suffix(".json").read_text())
    assert info["window"] is None and info["image_size"] == [12, 12] and info["output"] == "probabilities"
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((20, 26)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    scope = _run_the_deployment_pages_segmentation_block(onnx, tmp_path / "in.png")
    assert scope["x"].shape == (1, info["input_shape"][0], 12, 12) and scope["mask"].shape == (20, 26)
    masks = predict_files(onnx, [str(tmp_path / "in.png")], tmp_path / "masks")
    assert np.array_equal(scope["mask"].numpy(), np.asarray(Image.open(masks / "in_mask.png")))
    # the resize rule itself, on a graph whose masks hold both classes: probabilities resized, then the argmax
    # (nearest-neighbour class indices, as the page said before, differ on the objects' edges: review 46e)
    edges = _hand_made_export(tmp_path / "runs" / "r", "logits", tmp_path / "edges" / "student1.onnx")
    scope = _run_the_deployment_pages_segmentation_block(edges, tmp_path / "in.png")
    mask = np.asarray(Image.open(predict_files(edges, [str(tmp_path / "in.png")], tmp_path / "edges" / "m")
                                 / "in_mask.png"))
    assert set(np.unique(mask)) == {0, 1} and np.array_equal(scope["mask"].numpy(), mask)
    nearest = torch.nn.functional.interpolate(scope["scores"].argmax(dim=1, keepdim=True).float(), size=(20, 26),
                                              mode="nearest")[0, 0].numpy()
    assert not np.array_equal(nearest, mask)  # (the check can tell the two rules apart)
    # the graph's run names its data, which its masks may not be written among (review 46e: they were, from an .onnx)
    from peerdistill.errors import ConfigError

    with pytest.raises(ConfigError, match=r"out='.*d/masks' is (inside )?'.*d/masks', data the run reads"):
        predict_files(onnx, [str(tmp_path / "in.png")], tmp_path / "d" / "masks")


def test_a_paired_difference_leaves_hd95_out_and_says_why(shapes_run, capsys):
    """Each model's HD95 is averaged over the images it found the class in: two models' are over
    different images, no paired difference (review 47g: +2.29 px against +1.57 on the images both found)."""
    from peerdistill.cli import main

    assert main(["eval", str(shapes_run), "--bootstrap", "40", "--baseline", "student1", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["student2"]
    assert "diff_dice" in scores and "ci95_low_diff_dice" in scores
    assert not any(key.startswith(("diff_hd95", "ci95_low_diff_hd95")) for key in scores)
    assert main(["eval", str(shapes_run), "--bootstrap", "40", "--baseline", "student1"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert ("hd95 is left out: each model's is averaged over the images it found the class in, so two models' "
            "figures are over different images (eval --per-sample gives each image's)") in err


def test_predict_keeps_masks_inside_each_inputs_region_paired_as_training_paired_them(tmp_path, capsys):
    """Review 51b: a DRIVE run is scored inside the field of view alone, while predict's masks held
    vessels outside it (16,600 pixels an image), with no way to keep them in."""
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    root = tmp_path / "drive"
    for d in ("images", "manual", "fov"):
        (root / d).mkdir(parents=True)
    for i in range(21, 29):  # DRIVE's names: 21_training.tif, 21_manual1.gif, 21_training_mask.gif
        Image.fromarray(rng.integers(0, 255, (16, 12, 3), dtype=np.uint8)).save(root / "images" / f"{i}_training.tif")
        Image.fromarray((rng.random((16, 12)) > 0.5).astype(np.uint8) * 255).save(root / "manual" / f"{i}_manual1.gif")
        fov = np.zeros((16, 12), np.uint8)
        fov[3:13, 2:10] = 255
        Image.fromarray(fov).save(root / "fov" / f"{i}_training_mask.gif")
    args = [f"out_dir={tmp_path / 'runs'}", "name=fov", "task=segmentation", "teacher=null", "distill.preset=ml",
            "data.kind=folders", f"data.root={root}", "data.masks=manual", "data.roi=fov", "data.pattern=^(\\d+)_",
            "data.binary_masks=true", "train.epochs=1",
            "students=[{arch: unet, args: {width: 4, depth: 1}}, {arch: unet, args: {width: 4, depth: 1}}]"]
    assert main(["train", *args, "--quiet"]) == 0
    run = tmp_path / "runs" / "fov"
    # the console's tables say which pixels they count, as the report does (review 55h)
    region = "note: Only the pixels inside each image's region of interest (data.roi: the masks in 'fov') count in these"
    said = " ".join(capsys.readouterr().err.split())
    assert region in said and ("note: dice and iou are each image's, averaged over the images; f1 is the Dice of the "
                               "split's pixels pooled") in said  # (review 55r: read as rival values of one figure)
    assert main(["eval", str(run)]) == 0
    assert region in " ".join(capsys.readouterr().err.split())
    from safetensors.torch import load_file, save_file

    weights = run / "models" / "student1.safetensors"  # vessels everywhere: some outside the region to take away
    save_file({**load_file(weights), "head.bias": torch.tensor([-10.0, 10.0])}, weights)
    inputs, regions = tmp_path / "test", tmp_path / "fov_test"
    inputs.mkdir()
    regions.mkdir()
    inside = np.zeros((16, 12), bool)
    inside[4:12, 3:9] = True
    for i in (1, 2):  # DRIVE's test names: 01_test.tif beside its field of view 01_test_mask.gif
        Image.fromarray(rng.integers(0, 255, (16, 12, 3), dtype=np.uint8)).save(inputs / f"0{i}_test.tif")
        Image.fromarray(inside.astype(np.uint8) * 255).save(regions / f"0{i}_test_mask.gif")
    assert main(["export", str(run), "--model", "student1", "--format", "onnx"]) == 0
    for model in (str(run), str(run / "export" / "student1.onnx")):  # (the export's JSON carries the pattern)
        for roi, out in ((None, tmp_path / "all"), (regions, tmp_path / "kept")):
            extra = ["--model", "student1"] if model == str(run) else []
            assert main(["predict", model, str(inputs), "--out", str(out), *extra]
                        + (["--roi", str(roi)] if roi else [])) == 0
        for i in (1, 2):
            everywhere = np.asarray(Image.open(tmp_path / "all" / f"0{i}_test_mask.png"))
            kept = np.asarray(Image.open(tmp_path / "kept" / f"0{i}_test_mask.png"))
            assert (kept[inside] == everywhere[inside]).all() and not kept[~inside].any()
            assert everywhere.all()
    capsys.readouterr()
    # a file no input needs, which the pattern does not name, is no matter (review 51k)
    Image.fromarray(inside.astype(np.uint8)).save(regions / "overview.png")
    assert main(["predict", str(run), str(inputs), "--out", str(tmp_path / "kept"), "--roi", str(regions)]) == 0
    assert "cover far less" not in capsys.readouterr().err  # 25% of the image, the training regions' 42%
    # regions far smaller than training's, as the vessel annotations given for the fields of view (review 55h)
    assert json.loads((run / "run.json").read_text())["data_info"]["region_shares"] == [0.4167, 0.4167]
    thin = tmp_path / "thin"
    thin.mkdir()
    for i in (1, 2):
        vessel = np.zeros((16, 12), np.uint8)
        vessel[5:7, 4:8] = 255  # 8 pixels of 192
        Image.fromarray(vessel).save(thin / f"0{i}_manual1.gif")
    for model in (str(run), str(run / "export" / "student1.onnx")):  # (the export's JSON carries the shares)
        assert main(["predict", model, str(inputs), "--out", str(tmp_path / "thin-out"), "--roi", str(thin)]) == 0
        assert (f"2 of 2 region masks cover far less of their image than the training images' regions did (e.g. "
                f"'{thin / '01_manual1.gif'}': 4%, the training regions 42%): outside its region an input's mask "
                "is background, so check that --roi names the folder of regions of interest (DRIVE's mask/), not the "
                "annotations") in " ".join(capsys.readouterr().err.split())
    # the region folder is never written into, nor is one that is not there read
    assert main(["predict", str(run), str(inputs), "--out", str(regions), "--roi", str(regions)]) == 2
    assert f"--roi '{regions}' is where predict would write" in " ".join(capsys.readouterr().err.split())
    assert main(["predict", str(run), str(inputs), "--out", str(tmp_path / "kept"), "--roi", str(tmp_path / "no")]) == 2
    assert f"--roi '{tmp_path / 'no'}' is not a folder" in " ".join(capsys.readouterr().err.split())
    (regions / "02_test_mask.gif").unlink()
    assert main(["predict", str(run), str(inputs), "--out", str(tmp_path / "kept"), "--roi", str(regions)]) == 2
    assert (f"no region mask in '{regions}' for 1 input(s) ('{inputs / '02_test.tif'}'), paired by "
            "data.pattern '^(\\d+)_'; of its 2 image file(s), 1 gives an id by data.pattern '^(\\d+)_': '01': add theirs (e.g. "
            "'02_test_mask.gif' for '02_test.tif'), or predict them without --roi") in " ".join(capsys.readouterr().err.split())
    sidecar = run / "export" / "student1.json"  # as an export before the pattern was recorded wrote it
    sidecar.write_text(json.dumps({k: v for k, v in json.loads(sidecar.read_text()).items() if k != "pattern"}))
    assert main(["predict", str(run / "export" / "student1.onnx"), str(inputs), "--out", str(tmp_path / "kept"),
                 "--roi", str(regions)]) == 2
    assert ("paired by the file name less its suffix (this export's JSON records no data.pattern, as exports before "
            "2026-12-07 did not: export the run again") in " ".join(capsys.readouterr().err.split())


def test_splits_are_standardised_in_place_only_where_the_images_are_a_copy_already():
    """Review 52g: a third whole copy at the loading peak; a caller's own arrays stay as they were."""
    from peerdistill.data.segmentation import segmentation_splits

    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 2, (n, 8, 8)).astype(np.uint8) for n in (6, 2, 2)]
    given = [rng.random((n, 1, 8, 8)).astype(np.float32) for n in (6, 2, 2)]  # NCHW float32: taken as they are
    kept = [a.copy() for a in given]
    splits = segmentation_splits(given, masks, channels_last=False)
    assert all(np.array_equal(a, b) for a, b in zip(given, kept))  # not standardised in the caller's arrays
    mean, std = splits.stats["mean"][0], splits.stats["std"][0]
    np.testing.assert_allclose(splits.train.x.numpy(), (kept[0] - mean) / std, rtol=1e-5, atol=1e-6)
    # slices of one tensor of the caller's (review 52j: val and test standardised inside it)
    whole = torch.from_numpy(np.concatenate(kept))
    before = whole.clone()
    segmentation_splits([whole[:6], whole[6:8], whole[8:]], masks, channels_last=False)
    assert torch.equal(whole, before)
    as_files = [(a[:, 0] * 255).round().astype(np.uint8)[..., None] for a in kept]  # [N, H, W, 1] uint8: copied
    again = segmentation_splits(as_files, masks, channels_last=True)
    expected = (as_files[1][..., 0] / 255.0 - again.stats["mean"][0]) / again.stats["std"][0]
    np.testing.assert_allclose(again.val.x.numpy()[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_a_window_overlap_near_one_is_warned_of_with_the_windows_it_costs(tmp_path, capsys):
    """Review 56i: overlap 0.9 took a DRIVE image from 2.1 s to 67 s, unsaid. The windows counted
    here by MONAI's grid: a step of int(16 * (1 - o)) pixels over 64, the last window at the edge."""
    from peerdistill.cli import main
    from peerdistill.engine.evaluate import windows_per_image

    def grid(side, window, overlap):
        step = max(1, int(window * (1 - overlap)))
        return len(range(0, side - window, step)) + 1  # (the last start, side - window, added once)

    assert windows_per_image((64, 64), (16, 16), 0.5) == grid(64, 16, 0.5) ** 2 == 49
    assert windows_per_image((64, 64), (16, 16), 0.9) == grid(64, 16, 0.9) ** 2 == 2401
    assert windows_per_image((64, 40), (16, 16), 0.75) == grid(64, 16, 0.75) * grid(40, 16, 0.75)
    base = ["train", "task=segmentation", "data.kind=shapes", "data.patch_size=16", f"out_dir={tmp_path}",
            "teacher={arch: unet, args: {width: 4}}",
            "students=[{arch: mobile_unet, args: {width: 4}}, {arch: mobile_unet, args: {width: 4}}]", "--dry-run"]
    assert main([*base, "data.window_overlap=0.9"]) == 0
    assert ("warning: data.window_overlap 0.9: a 64x64 image is scored by 2,401 windows of 16x16, 49x the 49 of "
            "overlap 0.5, at every validation and test pass") in " ".join(capsys.readouterr().err.split())
    whole = [a if a != "data.patch_size=16" else "data.patch_size=64" for a in base]  # a 64x64 image is one window
    assert main([*whole, "data.window_overlap=0.95"]) == 0
    assert "data.window_overlap" not in capsys.readouterr().err
    assert main([*base, "data.window_overlap=0.75", "data.foreground_oversample=0.5"]) == 0
    said = capsys.readouterr()
    assert "data.window_overlap" not in said.err
    # the dry run says the patches and windows (review 56i: run.json alone did)
    assert ("batch 64 of 16x16 patches (16 an image an epoch, 50% centred on foreground; whole images scored by "
            "16x16 windows, overlap 0.75)") in " ".join(said.out.split())


def test_predict_roi_of_masks_the_pattern_names_not_says_to_rename_them(tmp_path):
    """Region masks all there but named so that the run's pattern gives them no id ('fov_01.gif'):
    the advice is to rename them, with a name that pairs, not to add masks that are there."""
    from peerdistill.errors import DataError
    from peerdistill.option_names import options_as_flags
    from peerdistill.predict_inputs import Inputs
    from peerdistill.predict_regions import region_masks

    regions = tmp_path / "mask"
    regions.mkdir()
    for i in (1, 2):
        Image.fromarray(np.full((4, 4), 255, np.uint8)).save(regions / f"fov_0{i}.gif")
    names = [str(tmp_path / "01_test.tif"), str(tmp_path / "02_test.tif")]
    read = Inputs(names, ["01_test", "02_test"], [np.zeros((4, 4, 3), np.float32)] * 2, [(4, 4)] * 2)
    with pytest.raises(DataError) as refused, options_as_flags():
        region_masks(read, regions, {"pattern": r"^(\d+)_"})
    assert str(refused.value) == (
        f"no region mask in '{regions}' for 2 input(s) ('{names[0]}', '{names[1]}'), paired by data.pattern "
        "'^(\\d+)_'; none of its 2 image file(s) ('fov_01.gif', 'fov_02.gif') gives an id by data.pattern '^(\\d+)_': "
        "if they are these inputs' region masks, rename them so that data.pattern '^(\\d+)_' gives each its input's "
        "id (e.g. '01_test_mask.gif' for '01_test.tif'), or predict them without --roi")
    # inputs the pattern names no more than the masks: renaming the masks alone pairs nothing
    read = read._replace(names=[str(tmp_path / "test_a.tif")], sizes=[(4, 4)])
    with pytest.raises(DataError, match=r"data\.pattern '\^\(\\d\+\)_' gives these inputs no id either: name each input "
                                        r"and its region mask so that it gives both one id, or predict them without roi="):
        region_masks(read, regions, {"pattern": r"^(\d+)_"})


def test_eval_and_the_run_page_say_the_patches_trained_on_and_the_window_that_scores(patch_shapes_run, shapes_run,
                                                                                     tmp_path, capsys):
    """A patch-trained run's eval table and report say the patches it trained on (side, how many an
    image) and the sliding window whole images are scored by (side, overlap), in words; a run
    trained on whole images says neither."""
    import html

    from peerdistill.cli.notes import patches_in_words
    from peerdistill.html_report import write_report

    trained = "random 32x32 patches, 16 per training image an epoch (256 from its 16 training images)"
    scored = ("a sliding 32x32 window moved 16 pixels at a time (window_overlap 0.5), the predictions of overlapping "
              "windows blended with Gaussian weights")
    assert main(["eval", str(patch_shapes_run)]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"note: the models trained on {trained}; these figures are of whole images, scored by {scored}" in said
    page = html.unescape(write_report(patch_shapes_run, tmp_path / "p.html").read_text(encoding="utf-8"))
    assert (f"<li><b>patches</b>: trained on {trained}; validation and test (as eval, predict and an export) score "
            f"whole images by {scored}</li>") in page
    assert main(["eval", str(shapes_run)]) == 0
    assert "trained on random" not in capsys.readouterr().err
    assert "<b>patches</b>" not in write_report(shapes_run, tmp_path / "s.html").read_text(encoding="utf-8")
    # the share of patches centred on the foreground, and a window that moves by one pixel
    meta = {"patches": {"size": 48, "per_image": 4, "foreground": 0.5, "overlap": 0.99}}
    assert patches_in_words(meta) == (
        "random 48x48 patches, 4 per training image an epoch, half of them centred on a foreground pixel",
        "a sliding 48x48 window moved 1 pixel at a time (window_overlap 0.99), the predictions of overlapping windows "
        "blended with Gaussian weights")
    assert patches_in_words({"patches": {**meta["patches"], "foreground": 0.3}})[0].endswith(
        ", 30% of them centred on a foreground pixel")
    assert patches_in_words({"data_spec": {"patch_size": None}}) is None
