"""Classification files (class folders, CSV), DRIVE-style triples with a region of interest,
patch training and sliding-window prediction."""

import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from peerdistill import Cohort
from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.data.loaders import PatchBatches
from peerdistill.data.splits import TensorData
from peerdistill.engine.evaluate import logits_of
from peerdistill.errors import DataError, PeerdistillWarning, SplitError


def write_class_tree(root, counts={"normal": 6, "pneumonia": 9}, size=10):
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_class_per_folder_tree_with_stratified_split(tmp_path):
    write_class_tree(tmp_path / "xray")
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "xray"), grey=True, split_seed=3))
    assert data.class_names == ["normal", "pneumonia"] and data.input_shape == (1, 10, 10)
    assert len(data.train) + len(data.val) + len(data.test) == 15
    assert set(data.test.y.tolist()) == {0, 1}  # stratified: both classes in every split
    assert data.info["splits"] == "stratified, seed 3"


def test_class_tree_with_given_splits(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        write_class_tree(tmp_path / "d" / split, {"a": n, "b": n})
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "d")))
    assert (len(data.train), len(data.val), len(data.test)) == (8, 4, 4)
    assert data.input_shape == (3, 10, 10) and data.info["splits"] == "given"



def test_class_folders_named_like_images_and_masks_are_warned_of(tmp_path, recwarn):
    # Kvasir-SEG's images/ beside masks/ read as two classes trains a picture-vs-mask classifier
    write_class_tree(tmp_path / "kvasir", {"images": 6, "masks": 6})
    with pytest.warns(PeerdistillWarning, match=r"class folders \['images', 'masks'\]: they look like a "
                      r"segmentation dataset's images and masks.*task: segmentation and data.kind: folders"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "kvasir"), grey=True))
    write_class_tree(tmp_path / "given" / "train", {"Images": 4, "masks": 4})
    write_class_tree(tmp_path / "given" / "test", {"Images": 2, "masks": 2})
    with pytest.warns(PeerdistillWarning, match="look like a segmentation dataset"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "given"), grey=True))
    recwarn.clear()
    write_class_tree(tmp_path / "xray")
    build_data(DataSpec(kind="image_folder", root=str(tmp_path / "xray"), grey=True))
    assert not [w for w in recwarn if "segmentation dataset" in str(w.message)]  # real classes: no word

def test_csv_and_tsv_of_paths_and_labels(tmp_path):
    write_class_tree(tmp_path / "img", {"x": 6, "y": 6})
    rows = [f"img/{c}/{i}.png,{c}" for c in "xy" for i in range(6)]
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    data = build_data(DataSpec(kind="csv", root=str(tmp_path / "labels.csv"), grey=True))
    assert data.class_names == ["x", "y"] and len(data.train) + len(data.val) + len(data.test) == 12
    split = ["train"] * 4 + ["val"] + ["test"]
    tsv = [f"img/{c}/{i}.png\t{k}\t{split[i]}" for k, c in enumerate("xy") for i in range(6)]
    (tmp_path / "labels.tsv").write_text("file\tclass\tsplit\n" + "\n".join(tsv) + "\n")
    data = build_data(DataSpec(kind="csv", root=str(tmp_path / "labels.tsv"), path_column="file",
                               label_column="class"))
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2) and data.class_names == ["0", "1"]
    # a split column without val rows: val cut from train, stratified, as image_folder's train/ and test/ (review 48c)
    no_val = [row.replace("\tval", "\ttrain") for row in tsv]
    (tmp_path / "no-val.tsv").write_text("file\tclass\tsplit\n" + "\n".join(no_val) + "\n")
    data = build_data(DataSpec(kind="csv", root=str(tmp_path / "no-val.tsv"), path_column="file", label_column="class"))
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2) and sorted(data.val.y.tolist()) == [0, 1]
    assert data.info["splits"] == "given train and test; val cut from train, stratified, seed 0"
    assert data.info["files"]["test"] == ["img/x/5.png", "img/y/5.png"]
    one = [row for row in no_val if not row.startswith("img/y/") or row.endswith("\ttest")]  # 'y': one to train
    one.insert(0, "img/y/0.png\t1\ttrain")
    (tmp_path / "one.tsv").write_text("file\tclass\tsplit\n" + "\n".join(one) + "\n")
    with pytest.raises(DataError, match=r"one.tsv: cannot cut a stratified val split from train \(.*\): val needs an "
                                        r"image of each class and train keeps one \(more training images, or a larger "
                                        r"data.val_fraction\), or give the val split yourself \(a val/ folder, or val "
                                        r"rows in the split column\)$"):
        build_data(DataSpec(kind="csv", root=str(tmp_path / "one.tsv"), path_column="file", label_column="class"))
    no_test = [row.replace("\ttest", "\ttrain") for row in tsv]
    (tmp_path / "no-test.tsv").write_text("file\tclass\tsplit\n" + "\n".join(no_test) + "\n")
    with pytest.raises(DataError, match=r"no-test.tsv: the test split is empty: list images with split 'test', or "
                                        r"leave out the split column to have the splits cut"):
        build_data(DataSpec(kind="csv", root=str(tmp_path / "no-test.tsv"), path_column="file", label_column="class"))
    with pytest.raises(DataError, match=r"has no column 'path' nor 'label' \(columns: \['file', 'class', 'split'\]\); "
                                        r"set data.path_column=file data.label_column=class$"):
        build_data(DataSpec(kind="csv", root=str(tmp_path / "labels.tsv")))  # the columns it likely means, named
    with pytest.raises(DataError, match=r"has no column 'label' .*; set data.label_column=class$"):
        build_data(DataSpec(kind="csv", root=str(tmp_path / "labels.tsv"), path_column="file"))
    (tmp_path / "odd.csv").write_text("scan,grade\nimg/x/0.png,x\n")  # a path by its value; no label to guess
    with pytest.raises(DataError, match=r"no column 'path' nor 'label' .*; set data.path_column / data.label_column "
                                        r"to the columns that hold them$"):
        build_data(DataSpec(kind="csv", root=str(tmp_path / "odd.csv")))
    (tmp_path / "odd.csv").write_text("scan,label\nimg/x/0.png,x\n")  # the column whose value is an image file
    with pytest.raises(DataError, match=r"no column 'path' .*; set data.path_column=scan$"):
        build_data(DataSpec(kind="csv", root=str(tmp_path / "odd.csv")))
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage\x00")
    with pytest.raises(DataError, match="binary.csv' is not UTF-8 text"):
        build_data(DataSpec(kind="csv", root=str(tmp_path / "binary.csv")))
    quoted = "".join(f'img/{c}/{i}.png,"{c}\n' for c in "xy" for i in range(6))  # an opening quote never closed
    (tmp_path / "quoted.csv").write_text("path,label\n" + quoted)
    with pytest.raises(DataError, match="line 2: a path or label field spans several lines"):
        build_data(DataSpec(kind="csv", root=str(tmp_path / "quoted.csv")))


def write_drive_like(root, ids=range(21, 29), size=(12, 10)):
    for d in ("images", "manual", "fov"):
        (root / d).mkdir(parents=True)
    h, w = size
    for i in ids:
        Image.fromarray(np.full((h, w, 3), i, np.uint8)).save(root / "images" / f"{i}_training.tif")
        vessel = np.zeros((h, w), np.uint8)
        vessel[:, 3] = 255
        Image.fromarray(vessel).save(root / "manual" / f"{i}_manual1.gif")
        fov = np.zeros((h, w), np.uint8)
        fov[2:10, 1:9] = 255
        Image.fromarray(fov).save(root / "fov" / f"{i}_training_mask.gif")


def test_region_of_interest_triples_mark_outside_pixels_ignored(tmp_path):
    write_drive_like(tmp_path / "d")
    spec = DataSpec(kind="folders", root=str(tmp_path / "d"), images="images", masks="manual", roi="fov",
                    pattern=r"^(\d+)_", binary_masks=True)
    data = build_data(spec)
    y = data.train.y[0]
    assert (y[:2] == 255).all() and (y[:, 0] == 255).all()       # outside the field of view
    assert int(y[5, 3]) == 1 and int(y[5, 4]) == 0              # inside: vessel and background
    (tmp_path / "d" / "fov" / "22_training_mask.gif").unlink()
    with pytest.raises(DataError, match="no region-of-interest mask"):
        build_data(spec)



def test_a_region_folder_of_other_ids_is_refused_counted_with_both_sides_ids(tmp_path):
    """A roi folder holding another split's region masks (DRIVE's test masks beside its training
    images): counted over the whole set before a split is cut (no val image skipped), with the ids
    the images need beside those the folder gives."""
    write_drive_like(tmp_path / "d")
    for path in (tmp_path / "d" / "fov").iterdir():  # the masks of ids 01-08, none of them the images'
        path.rename(path.with_name(f"{int(path.name[:2]) - 20:02d}_test_mask.gif"))
    spec = DataSpec(kind="folders", root=str(tmp_path / "d"), images="images", masks="manual", roi="fov",
                    pattern=r"^(\d+)_", binary_masks=True)
    with pytest.raises(DataError) as refused:
        build_data(spec)
    assert str(refused.value) == (
        f"no region-of-interest mask for 8 of the 8 images in '{tmp_path / 'd' / 'fov'}' ('21_training.tif', "
        "'22_training.tif', '23_training.tif', ...): these images need ids '21', '22', '23', ...; its 8 region "
        "mask(s) give ids '01', '02', '03', ..., none of them an image's (ids by data.pattern '^(\\d+)_'). Put "
        "each image's region mask there, named so that it pairs with its image, or leave out data.roi")
    (tmp_path / "d" / "fov" / "01_test_mask.gif").rename(tmp_path / "d" / "fov" / "21_training_mask.gif")
    with pytest.raises(DataError, match=r"for 7 of the 8 images .*'22_training.tif', '23_training.tif', "
                                        r"'24_training.tif', \.\.\.\): these images need ids '22', '23', '24', "
                                        r"\.\.\.; its 8 region mask\(s\) give ids '02', '03', '04', \.\.\., 7 of "
                                        r"them no image's \('02', '03', '04', \.\.\.\)"):
        build_data(spec)

def test_roi_dice_counts_only_inside(tmp_path):
    from peerdistill.segmentation_metrics import SegmentationMeter

    truth = torch.tensor([[[1, 1, 255, 255], [0, 0, 255, 255]]])
    pred = torch.tensor([[[1, 0, 1, 1], [0, 0, 1, 1]]])  # outside the ROI it predicts vessel everywhere
    meter = SegmentationMeter(["bg", "vessel"])
    meter.update(nn.functional.one_hot(pred, 2).permute(0, 3, 1, 2).float(), truth)
    m = meter.compute()
    assert m["dice"] == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))   # TP 1, FP 0, FN 1 inside
    assert m["pixel_accuracy"] == pytest.approx(3 / 4)


def test_patch_batches_crop_images_and_masks_together():
    x = torch.arange(2 * 30 * 40, dtype=torch.float32).view(2, 1, 30, 40)
    y = (x[:, 0].long() % 7 == 0).long()
    y[0, 0, 0] = 255
    batches = PatchBatches(TensorData(x, y), patch=8, per_image=8, batch_size=4, device=torch.device("cpu"),
                           generator=torch.Generator().manual_seed(0), foreground=0.5)
    assert len(batches) == 4
    for bx, by in batches:
        assert bx.shape == (4, 1, 8, 8) and by.shape == (4, 8, 8)
        flat = x.flatten()
        for crop, mask in zip(bx, by):  # the mask crop is the same window as the image crop
            index = int(crop[0, 0, 0]) % (30 * 40)
            image = int(crop[0, 0, 0]) // (30 * 40)
            r, c = divmod(index, 40)
            assert torch.equal(mask, y[image, r:r + 8, c:c + 8])
            assert torch.equal(crop[0], flat[image * 1200:(image + 1) * 1200].view(30, 40)[r:r + 8, c:c + 8])


def test_a_share_of_patches_is_centred_on_foreground():
    """data.foreground_oversample: that share of the crops is centred on a foreground pixel, so
    a 3x3 structure in a 64x64 image, which 5% of crops placed anywhere would hold, is in every
    crop at 1, in about half plus those at 0.5 (out of 400: a binomial spread of 2.5 points)."""
    from peerdistill.build import patch_settings
    from peerdistill.config import validate

    x = torch.randn(2, 1, 64, 64)
    y = torch.zeros(2, 64, 64, dtype=torch.long)
    y[:, 5:8, 50:53] = 1
    y[1, 5, 50] = 255  # an ignored pixel is no centre
    shares = {}
    for foreground in (0.0, 0.5, 1.0):
        batches = PatchBatches(TensorData(x, y), patch=16, per_image=200, batch_size=40, device=torch.device("cpu"),
                               generator=torch.Generator().manual_seed(1), foreground=foreground)
        held = [bool((mask == 1).any()) for _, masks in batches for mask in masks]
        assert len(held) == 400
        shares[foreground] = sum(held) / len(held)
    assert shares[1.0] == 1.0 and shares[0.0] < 0.15 and 0.45 < shares[0.5] < 0.7, shares
    cfg = validate({"task": "segmentation", "data": {"kind": "shapes", "patch_size": 16, "foreground_oversample": 0.3},
                    "teacher": {"arch": "unet"}, "students": [{"arch": "unet"}] * 2})
    assert patch_settings(cfg)["foreground"] == 0.3  # what the trainer gives PatchBatches


def test_the_window_overlap_reaches_the_sliding_window(tmp_path):
    """data.window_overlap: 16x16 windows over a 32x32 image are 2x2 at overlap 0 and 3x3 at 0.5
    (stride 8); the trainer evaluates with it and a saved run predicts with it."""
    from peerdistill.build import make_trainer
    from peerdistill.config import validate
    from peerdistill.engine.evaluate import windowed
    from peerdistill.runs import saved_window

    for overlap, windows in ((0.0, 4), (0.5, 9)):
        seen = []
        windowed(lambda t: seen.append(len(t)) or t, torch.zeros(1, 1, 32, 32), (16, 16), overlap)
        assert sum(seen) == windows, overlap
    cfg = validate({"task": "segmentation", "name": "w", "out_dir": str(tmp_path),
                    "data": {"kind": "shapes", "shapes_counts": [8, 4, 4], "patch_size": 16, "window_overlap": 0.25},
                    "teacher": {"arch": "unet", "args": {"width": 2, "depth": 1}},
                    "students": [{"arch": "unet", "args": {"width": 2, "depth": 1}}] * 2})
    trainer, _ = make_trainer(cfg, progress=False)
    assert (trainer.window, trainer.window_overlap) == ((16, 16), 0.25)
    assert saved_window({"data_spec": cfg.data.model_dump()}) == ((16, 16), 0.25)
    assert saved_window({"patches": {"size": 16, "overlap": 0.25}}) == ((16, 16), 0.25)



def test_a_patch_larger_than_the_images_is_refused_before_training_not_when_resumed(tmp_path):
    """The 64x64 shapes take patches up to 64; a larger one would pad every validation image to
    it. A run resumed trains as it began (a check added since does not stop it)."""
    from peerdistill.build import make_trainer
    from peerdistill.config import validate
    from peerdistill.errors import ConfigError

    def config(patch):
        return validate({"task": "segmentation", "name": f"p{patch}", "out_dir": str(tmp_path),
                         "data": {"kind": "shapes", "shapes_counts": [8, 4, 4], "patch_size": patch},
                         "teacher": None, "students": [{"arch": "unet", "args": {"width": 2, "depth": 1}}],
                         "distill": {"preset": "independent"}})

    assert make_trainer(config(64), progress=False)[0].window == (64, 64)
    with pytest.raises(ConfigError, match=r"data.patch_size=65 is larger than the training images \(64x64\): the "
                                          r"sliding window of validation and eval would pad every image to 65x65; "
                                          "give at most 64, or drop data.patch_size"):
        make_trainer(config(65), progress=False)
    assert make_trainer(config(65), progress=False, resume=True)[0].window == (65, 65)

def test_sliding_window_equals_whole_image_for_a_pointwise_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 2, 1))  # no context: windows cannot differ
    cohort = Cohort.from_modules([net])
    cohort.eval()
    x = torch.randn(2, 3, 45, 37)
    with torch.no_grad():
        whole = cohort.forward(x).logits["student1"]
        slid = logits_of(cohort, x, window=(16, 16), overlap=0.5)["student1"]
    assert slid.shape == whole.shape
    assert torch.allclose(slid, whole, atol=1e-5)


def test_hidden_folders_are_not_classes_and_an_empty_class_folder_is_refused(tmp_path):
    write_class_tree(tmp_path / "xray")
    (tmp_path / "xray" / ".ipynb_checkpoints").mkdir()
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "xray"), grey=True))
    assert data.class_names == ["normal", "pneumonia"] and data.num_classes == 2
    (tmp_path / "xray" / "unsorted").mkdir()
    with pytest.raises(DataError, match=r"class\(es\) \['unsorted'\] have no images in"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "xray"), grey=True))


def test_32_bit_integer_images_share_one_fixed_scale(tmp_path):
    from peerdistill.data.image_io import read_image

    for peak in (1000, 4000):
        Image.fromarray(np.full((4, 4), peak, np.int32)).save(tmp_path / f"i{peak}.tif")  # Pillow mode "I"
        assert Image.open(tmp_path / f"i{peak}.tif").mode == "I"
        assert np.allclose(read_image(tmp_path / f"i{peak}.tif", grey=True), peak / 65535)
    Image.fromarray(np.full((4, 4), 4000, np.uint16)).save(tmp_path / "u16.png")
    assert np.allclose(read_image(tmp_path / "u16.png", grey=True), 4000 / 65535)


def test_foreground_crops_are_never_centred_on_ignored_pixels():
    """Class 1 only in a 4x4 block at rows/columns 2..5, columns 20..39 ignored (255, outside a
    region of interest): every crop of 8 centred on foreground spans columns 0..9 at most, so it
    holds class 1 and none lies wholly in the ignored half."""
    x = torch.randn(1, 1, 40, 40)
    y = torch.zeros(1, 40, 40, dtype=torch.long)
    y[0, :, 20:] = 255
    y[0, 2:6, 2:6] = 1
    batches = PatchBatches(TensorData(x, y), patch=8, per_image=400, batch_size=40, device=torch.device("cpu"),
                           generator=torch.Generator().manual_seed(0), foreground=1.0)
    masks = [mask for _, part in batches for mask in part]
    assert len(masks) == 400
    assert all(bool((m == 1).any()) for m in masks)
    assert not any(bool((m == 255).all()) for m in masks)


def test_random_crops_reach_every_position_inside_the_image():
    """A 10x10 image whose pixels hold their row (and a second channel their column), crops of 8:
    the tops and lefts drawn are exactly 0, 1 and 2 (= range(10 - 8 + 1)), the last row and column
    included."""
    rows = torch.arange(10.0).view(10, 1).expand(10, 10)
    x = torch.stack([rows, rows.T])[None]
    batches = PatchBatches(TensorData(x, torch.zeros(1, 10, 10, dtype=torch.long)), patch=8, per_image=400,
                           batch_size=40, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    crops = [crop for part, _ in batches for crop in part]
    assert {int(c[0, 0, 0]) for c in crops} == {0, 1, 2}
    assert {int(c[1, 0, 0]) for c in crops} == {0, 1, 2}


def test_images_of_several_sizes_are_named_one_file_per_size(tmp_path):
    write_class_tree(tmp_path / "img", {"x": 3, "y": 3})
    Image.fromarray(np.zeros((12, 14), np.uint8)).save(tmp_path / "img" / "y" / "2.png")
    with pytest.raises(DataError, match=r"images differ in size \(2 sizes, e.g. 10x10: 'x/0.png'; 12x14: 'y/2.png'\): "
                                        r"set data.image_size=\[H, W\] to resize them"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "img"), grey=True))
    assert build_data(DataSpec(kind="image_folder", root=str(tmp_path / "img"), grey=True,
                               image_size=[10, 10])).input_shape == (1, 10, 10)


def test_training_images_with_nan_pixels_or_dangling_links_are_refused_by_name(tmp_path):
    import os

    write_class_tree(tmp_path / "img", {"x": 4, "y": 4})
    spec = DataSpec(kind="image_folder", root=str(tmp_path / "img"), grey=True)
    bad = np.full((10, 10), 0.5, np.float32)
    bad[0, 0] = np.nan
    Image.fromarray(bad, mode="F").save(tmp_path / "img" / "x" / "9.tif")
    with pytest.raises(DataError, match=f"image '{tmp_path / 'img' / 'x' / '9.tif'}' holds NaN or infinite pixel "
                                        "values: replace them"):
        build_data(spec)
    (tmp_path / "img" / "x" / "9.tif").unlink()
    os.symlink(tmp_path / "elsewhere.png", tmp_path / "img" / "y" / "link.png")
    with pytest.raises(DataError, match="1 symbolic link\\(s\\) point to files that do not exist"):
        build_data(spec)
    (tmp_path / "img" / "y" / "link.png").unlink()  # a class folder on a drive not mounted (review 51l)
    os.symlink(tmp_path / "unmounted" / "z", tmp_path / "img" / "z")
    with pytest.raises(DataError, match=r"holds 1 symbolic link\(s\) to what does not exist \('z -> .*'\): a "
                                        r"class folder among them would be left out"):
        build_data(spec)
    (tmp_path / "img" / "z").unlink()  # a class folder's link that leads back to itself: a loop, not missing
    os.symlink("z", tmp_path / "img" / "z")
    with pytest.raises(DataError, match=r"holds 1 symbolic link\(s\) in a loop, leading back to themselves "
                                        r"\('z -> z'\): a class folder among them would be left out; point them at "
                                        r"the class folders, or remove the links"):
        build_data(spec)


def test_training_images_that_are_links_in_a_loop_are_refused_as_loops_not_as_missing(tmp_path):
    import os

    write_class_tree(tmp_path / "img", {"x": 4, "y": 4})
    spec = DataSpec(kind="image_folder", root=str(tmp_path / "img"), grey=True)
    os.symlink("self.png", tmp_path / "img" / "x" / "self.png")
    with pytest.raises(DataError) as caught:
        build_data(spec)
    assert str(caught.value) == (f"1 symbolic link(s) are in a loop, leading back to themselves and to no file ('"
                                 f"{tmp_path / 'img' / 'x' / 'self.png'}' -> 'self.png'): point them at the images, "
                                 "or remove them")
    os.symlink(tmp_path / "elsewhere.png", tmp_path / "img" / "x" / "gone.png")  # both kinds: each said as itself
    with pytest.raises(DataError, match=r"^1 symbolic link\(s\) point to files that do not exist \('.*gone.png' -> "
                                        r"'.*elsewhere.png'\): mount or copy what they point to, or remove the links; "
                                        r"and 1 symbolic link\(s\) are in a loop, leading back to themselves and to "
                                        r"no file \('.*self.png' -> 'self.png'\)"):
        build_data(spec)

def test_segmentation_images_of_several_sizes_are_named_one_file_per_size(tmp_path):
    write_drive_like(tmp_path)
    Image.fromarray(np.zeros((14, 10, 3), np.uint8)).save(tmp_path / "images" / "23_training.tif")
    Image.fromarray(np.zeros((14, 10), np.uint8)).save(tmp_path / "manual" / "23_manual1.gif")
    Image.fromarray(np.zeros((14, 10), np.uint8)).save(tmp_path / "fov" / "23_training_mask.gif")
    with pytest.raises(DataError, match=re.escape(f"images in '{tmp_path / 'images'}' differ in size (2 sizes, e.g. "
                                                  "12x10: '21_training.tif'; 14x10: '23_training.tif'): set "
                                                  "data.image_size=[H, W] to resize them")):
        build_data(DataSpec(kind="folders", root=str(tmp_path), images="images", masks="manual", roi="fov",
                            pattern=r"^(\d+)_", binary_masks=True))


def test_a_mask_named_in_another_unicode_form_pairs_with_its_image(tmp_path):
    """Review 51c: macOS writes 'ñ' as 'n' and a combining tilde; a mask copied from a Mac beside
    images named elsewhere paired with nothing, the message showing the same name on both sides."""
    import unicodedata

    from peerdistill.data.segmentation import read_pairs

    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    for i, name in enumerate(["ñandú", "plain", "other"]):
        Image.fromarray(np.full((6, 6), 40 * i, np.uint8)).save(tmp_path / "images" / f"{name}.png")
        mask = np.zeros((6, 6), np.uint8)
        mask[: i + 1] = 1
        Image.fromarray(mask).save(tmp_path / "masks" / f"{unicodedata.normalize('NFD', name)}.png")
    images, masks, ids = read_pairs(tmp_path, DataSpec(kind="folders", root=str(tmp_path)))
    assert ids == sorted(["ñandú", "plain", "other"])
    assert {i: int(m.sum()) for i, m in zip(ids, masks)} == {"ñandú": 6, "plain": 12, "other": 18}


SPLIT_NAMES = ("train", "val", "test")


def _shared_storage(data) -> bool:
    """Whether the three splits' images lie one after the other in one block of memory: views of one
    array read once, not a copy per split."""
    xs = [data.split(s).x for s in SPLIT_NAMES]
    return all(a.data_ptr() + a.nbytes == b.data_ptr() for a, b in zip(xs, xs[1:]))


def _values_as_read(data, split: str) -> list[int]:
    """Each sample's first pixel of ``split`` on the 0..255 scale of its file (standardisation undone)."""
    x = data.split(split).x[:, 0, 0, 0] * data.stats["std"][0] + data.stats["mean"][0]
    return (x * 255).round().long().tolist()


def _flat_files(root, names: list[str]) -> dict[str, int]:
    """A flat grey PNG of its own value under ``root`` for each of ``names`` (relative paths)."""
    values = {}
    for k, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        values[name] = 10 + 7 * k
        Image.fromarray(np.full((6, 6), values[name], np.uint8)).save(root / name)
    return values


@pytest.mark.parametrize("options", [{}, {"group_pattern": r"_p(\d)_"}, {"folds": 3, "fold": 1}])
def test_an_image_folder_is_read_once_into_its_splits_each_sample_its_files(tmp_path, options):
    """Review 52g: a classification folder peaked at 3.7 times what it holds (a list of images, their stack,
    each split's copy, its standardised copy); the splits are now views of one array read in split order,
    standardised in place. Each sample still holds the pixels of the file its split lists, in that order."""
    values = _flat_files(tmp_path / "set", [f"{c}/{c}_p{i % 5}_{i}.png" for c in ("a", "b") for i in range(10)])
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "set"), grey=True, split_seed=2, **options))
    assert _shared_storage(data)
    for s in SPLIT_NAMES:
        files = data.info["files"][s]
        assert _values_as_read(data, s) == [values[f] for f in files]
        assert data.split(s).y.tolist() == [("a", "b").index(f.split("/")[0]) for f in files]
    assert sorted(f for s in SPLIT_NAMES for f in data.info["files"][s]) == sorted(values)


def test_given_split_folders_are_read_once_into_their_splits(tmp_path):
    values = _flat_files(tmp_path / "set", [f"{s}/{c}/{i}.png" for s in SPLIT_NAMES for c in ("a", "b")
                                            for i in range(2 + (s == "train"))])
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "set"), grey=True))
    assert data.info["splits"] == "given" and _shared_storage(data)
    for s in SPLIT_NAMES:
        files = data.info["files"][s]
        assert all(f.startswith(f"{s}/") for f in files)
        assert _values_as_read(data, s) == [values[f] for f in files]


def test_an_image_folder_scored_whole_is_standardised_in_its_own_read(tmp_path):
    from peerdistill.data.splits import kept_whole

    values = _flat_files(tmp_path / "set", [f"{c}/{i}.png" for c in ("a", "b") for i in range(3)])
    with kept_whole():
        data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "set"), grey=True))
    assert len(data.train) == len(data.val) == 0
    assert _values_as_read(data, "test") == [values[f] for f in data.info["files"]["test"]]


@pytest.mark.parametrize("options", [{}, {"folds": 3, "fold": 2}, {"group_pattern": r"^p(\d)"}])
def test_mask_folders_are_read_once_into_their_splits_each_pair_its_files(tmp_path, options):
    """As classification folders: segmentation pairs cut from one set are read straight into their splits
    (review 52g: Kvasir-SEG at 256 peaked at 2.5 GB for 1.2 GB held), the masks with their images."""
    names = [f"p{i % 4}_{i}.png" for i in range(12)]
    values = _flat_files(tmp_path / "seg" / "images", names)
    (tmp_path / "seg" / "masks").mkdir()
    for k, name in enumerate(names):
        mask = np.zeros((6, 6), np.uint8)
        mask[: 1 + k % 5] = 1  # each pair's own count of foreground rows
        Image.fromarray(mask).save(tmp_path / "seg" / "masks" / name)
    data = build_data(DataSpec(kind="folders", root=str(tmp_path / "seg"), grey=True, split_seed=1, **options))
    assert _shared_storage(data)
    for s in SPLIT_NAMES:
        ids = data.info["files"][s]
        assert _values_as_read(data, s) == [values[f"{i}.png"] for i in ids]
        assert data.split(s).y[:, :, 0].sum(dim=1).tolist() == [1 + names.index(f"{i}.png") % 5 for i in ids]


def test_images_read_into_one_array_are_each_files_own_and_every_bad_file_is_named(tmp_path):
    from peerdistill.data.image_io import read_image, read_images

    files = []
    for k in range(3):
        files.append(tmp_path / f"{k}.png")
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (5, 7, 3), dtype=np.uint8)).save(files[-1])
    x = read_images(files)
    assert x.shape == (3, 3, 5, 7) and x.dtype == np.float32
    for k, f in enumerate(files):
        assert np.array_equal(x[k], read_image(f).transpose(2, 0, 1))
    assert read_images(files, size=(4, 4), grey=True).shape == (3, 1, 4, 4)
    assert read_images([], size=(4, 4)).shape == (0, 3, 4, 4)
    (tmp_path / "3.png").write_bytes(b"not a png")
    (tmp_path / "4.png").write_bytes(b"nor this")
    with pytest.raises(DataError, match=r"2 of 5 images cannot be read:\n  - .*3\.png.*\n  - .*4\.png"):
        read_images(files + [tmp_path / "3.png", tmp_path / "4.png"])


def test_split_folders_of_other_sizes_are_named_with_their_folders(tmp_path):
    """Review 53g: read in one go, the sizes' files were named '0.png' and '0.png', their splits lost."""
    for split, side in (("train", 8), ("val", 8), ("test", 6)):
        for c in ("a", "b"):
            (tmp_path / "set" / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "set" / split / c / "0.png")
    with pytest.raises(DataError, match=r"images differ in size \(2 sizes, e.g. 6x6: 'test/a/0.png'; 8x8: "
                                        r"'train/a/0.png'\)"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "set"), grey=True))


# ---- data.exclude ----------------------------------------------------------------------------

def _all_files(data) -> set[str]:
    return {name for names in data.info["files"].values() for name in names}


def test_data_exclude_leaves_files_out_before_the_split_as_if_moved_out(tmp_path, recwarn):
    from peerdistill.errors import DataNote

    write_class_tree(tmp_path / "x", {"a": 10, "b": 10})
    spec = DataSpec(kind="image_folder", root=str(tmp_path / "x"), split_seed=4, exclude=["a/3.png", "b/1*"])
    data = build_data(spec)
    assert _all_files(data).isdisjoint({"a/3.png", "b/1.png"}) and len(_all_files(data)) == 18
    assert data.info["excluded"] == {"patterns": {"a/3.png": 1, "b/1*": 1}, "samples": 2,
                                     "files": ["a/3.png", "b/1.png"]}
    said = [str(w.message) for w in recwarn if issubclass(w.category, DataNote)]
    assert said == [f"data.exclude left out 2 samples of '{tmp_path / 'x'}' before the split ('a/3.png' 1 file, "
                    "'b/1*' 1 file)"]
    # the same splits as with the files moved out of the folder: left out before the split is cut
    (tmp_path / "x" / "a" / "3.png").unlink()
    (tmp_path / "x" / "b" / "1.png").unlink()
    moved = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "x"), split_seed=4))
    assert moved.info["files"] == data.info["files"]


def test_a_data_exclude_pattern_matching_nothing_is_refused_by_name_and_folder(tmp_path):
    write_class_tree(tmp_path / "x", {"a": 6, "b": 6})
    said = f"data.exclude: pattern 'a/33.png' matches no image or mask file of the data at '{tmp_path / 'x'}'"
    with pytest.raises(DataError, match=re.escape(said) + r".*did you mean 'a/3.png'\?"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "x"), exclude=["a/3.png", "a/33.png"]))
    # (the list is kept sorted)
    with pytest.raises(DataError, match=r"patterns 'q\*', 'zz' match no image or mask file"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "x"), exclude=["zz", "q*"]))
    # a bare name is the file's name, with or without its suffix, in any folder; a trailing '/' a folder
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "x"), exclude=["2", "5.png"]))
    assert data.info["excluded"]["files"] == ["a/2.png", "a/5.png", "b/2.png", "b/5.png"]
    for split in ("train", "val", "test"):
        for cls in ("a", "b"):
            write_class_tree(tmp_path / "s" / split, {cls: 4}) if not (tmp_path / "s" / split / cls).exists() else None
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "s"), exclude=["test/a/", "train/b/0.png"]))
    assert data.info["excluded"]["files"] == ["test/a/0.png", "test/a/1.png", "test/a/2.png", "test/a/3.png",
                                              "train/b/0.png"]
    assert len(data.test) == 4 and len(data.train) == 7


def test_data_exclude_in_a_csv_and_in_a_set_scored_whole(tmp_path):
    from peerdistill.data.splits import kept_whole

    write_class_tree(tmp_path / "x", {"a": 6, "b": 6})
    rows = ["path,label"] + [f"{c}/{i}.png,{c}" for c in "ab" for i in range(6)]
    (tmp_path / "x" / "list.csv").write_text("\n".join(rows) + "\n")
    data = build_data(DataSpec(kind="csv", root=str(tmp_path / "x" / "list.csv"), exclude=["b/4.png"]))
    assert "b/4.png" not in _all_files(data) and len(_all_files(data)) == 11
    with kept_whole():
        whole = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "x"), exclude=["a/0.png"]))
    assert len(whole.test) == 11 and "a/0.png" not in _all_files(whole)


def test_data_exclude_takes_a_pair_out_by_its_image_its_mask_or_its_id(tmp_path):
    write_drive_like(tmp_path / "d")
    spec = dict(kind="folders", root=str(tmp_path / "d"), masks="manual", roi="fov", pattern=r"^(\d+)_",
                binary_masks=True)
    data = build_data(DataSpec(**spec, exclude=["manual/22_manual1.gif", "23", "images/24_training.tif",
                                                 "25_training_mask.gif"]))
    assert _all_files(data) == {"21", "26", "27", "28"}
    assert data.info["excluded"]["files"] == ["images/22_training.tif", "images/23_training.tif",
                                              "images/24_training.tif", "images/25_training.tif"]
    # a file data.pattern misses (which it would refuse) can be left out by name
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(tmp_path / "d" / "images" / "notes.png")
    with pytest.raises(DataError, match="does not match 1 of the 9 image files"):
        build_data(DataSpec(**spec))
    assert len(_all_files(build_data(DataSpec(**spec, exclude=["notes.png"])))) == 8
    with pytest.raises(DataError, match="data.exclude leaves no image and mask pair"):
        build_data(DataSpec(**spec, exclude=["*"]))


def test_the_data_fingerprint_tells_other_exclusions_apart(tmp_path):
    from peerdistill.data import fingerprint

    write_class_tree(tmp_path / "x", {"a": 4, "b": 4})
    plain = fingerprint.data_fingerprint(DataSpec(kind="image_folder", root=str(tmp_path / "x")))
    one = fingerprint.data_fingerprint(DataSpec(kind="image_folder", root=str(tmp_path / "x"), exclude=["a/0.png"]))
    two = fingerprint.data_fingerprint(DataSpec(kind="image_folder", root=str(tmp_path / "x"),
                                                exclude=["a/0.png", "b/1.png"]))
    assert plain.startswith("folder:") and len({plain, one, two}) == 3  # (without exclude: as recorded before)
    # its form, before the colon, differs too (a comparison keeps one fingerprint per form of a folder)
    assert one.split(":", 1)[0].startswith("folder;exclude=") and one.split(":", 1)[0] != two.split(":", 1)[0]
    assert one.split(":", 1)[1] == plain.split(":", 1)[1]
    spec = DataSpec(kind="image_folder", root=str(tmp_path / "x"), exclude=["a/0.png"])
    assert fingerprint.comparable(one, spec)
    assert fingerprint.what_differs(one, two) == fingerprint.what_differs(plain, one) == (
        "the files data.exclude leaves out differ")
    # files changed alone: data.exclude is not named (nor where no run sets it)
    assert fingerprint.what_differs(plain) == fingerprint.what_differs(one, one.replace(":", ":0", 1)) == (
        "the names or sizes of its image and annotation files differ")
    rows = ["path,label"] + [f"{c}/{i}.png,{c}" for c in "ab" for i in range(4)]
    (tmp_path / "x" / "t.csv").write_text("\n".join(rows) + "\n")
    table = DataSpec(kind="csv", root=str(tmp_path / "x" / "t.csv"), exclude=["a/0.png"])
    held = fingerprint.data_fingerprint(table)
    assert held.startswith("csv;exclude=") and fingerprint.comparable(held, table)


def test_eval_does_not_carry_a_runs_exclusions_to_other_data_without_saying_so():
    from peerdistill.config import without_other_kinds_keys

    section = {"kind": "image_folder", "root": "other", "exclude": ["a/0.png"]}
    assert without_other_kinds_keys(section)["exclude"] == ["a/0.png"]  # (the run's own data: kept)
    with pytest.warns(PeerdistillWarning, match=r"the run's data.exclude \(\['a/0.png'\]\) names files of the folder "
                                                r"it trained on and is not carried to data.root 'other'"):
        assert "exclude" not in without_other_kinds_keys(section, keep={"root"})
    assert without_other_kinds_keys(section, keep={"root", "exclude"})["exclude"] == ["a/0.png"]


def test_a_run_keeps_what_data_exclude_left_out_and_eval_scores_its_own_test_split(tmp_path, fast_tree, capsys):
    import json

    import yaml

    from peerdistill.cli import main

    write_class_tree(tmp_path / "x", {"a": 10, "b": 10}, size=16)
    tree = {**fast_tree, "train": {"epochs": 1, "batch_size": 64},
            "data": {"kind": "image_folder", "root": str(tmp_path / "x"), "grey": True,
                     "exclude": ["a/3.png", "b/1*"]}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(tree))
    assert main(["train", str(tmp_path / "cfg.yaml"), "--quiet"]) == 0
    assert "warning: data.exclude left out 2 samples of" in " ".join(capsys.readouterr().err.split())
    meta = json.loads((tmp_path / "runs" / "t" / "run.json").read_text())
    assert meta["data_info"]["excluded"]["files"] == ["a/3.png", "b/1.png"]
    assert meta["data_fingerprint"].startswith("folder;exclude=") and meta["data_notes"][0].startswith(
        "data.exclude left out 2 samples")
    # eval reads the run's data with its exclusions: its own test split (else 2 files "added since training")
    assert main(["eval", str(tmp_path / "runs" / "t"), "--json"]) == 0
    captured = capsys.readouterr()
    assert "data.exclude" not in captured.err and "changed since training" not in captured.err  # (said in training)
    from peerdistill.runs import evaluate_run

    assert evaluate_run(tmp_path / "runs" / "t").samples == len(meta["data_info"]["files"]["test"])
    # scored with another exclusion (none) or another split seed, the advice names the setting that differs
    assert main(["eval", str(tmp_path / "runs" / "t"), "data.exclude=[]", "--split", "val"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert ("score the run's own val split (drop data.exclude (the run's own, ['a/3.png', 'b/1*'], then applies; in "
            "a --data section, give that list); the data as it was in training)") in said
    assert main(["eval", str(tmp_path / "runs" / "t"), "data.split_seed=99", "--split", "val"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "score the run's own val split (drop data.split_seed; the data as it was in training)" in said


def test_eval_keeps_a_runs_exclusions_on_its_own_folder_written_otherwise(tmp_path, fast_tree, capsys, monkeypatch):
    """eval RUN data.root=<the run's own folder> (written out, or from another folder than training
    ran in) deals the data as training did; data lacking the run's exclusions is told to give them."""
    import yaml

    from peerdistill.cli import main

    write_class_tree(tmp_path / "x", {"a": 10, "b": 10}, size=16)
    tree = {**fast_tree, "train": {"epochs": 1, "batch_size": 64},
            "data": {"kind": "image_folder", "root": "x", "grey": True, "exclude": ["a/3.png", "b/1*"]}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(tree))
    monkeypatch.chdir(tmp_path)  # data.root 'x', relative to where training ran
    assert main(["train", "cfg.yaml", "--quiet"]) == 0
    capsys.readouterr()
    run = str(tmp_path / "runs" / "t")
    for root in (str(tmp_path / "x"), "./x/", "../" + tmp_path.name + "/x"):
        assert main(["eval", run, f"data.root={root}", "--split", "val", "--json"]) == 0
        said = " ".join(capsys.readouterr().err.split())
        assert "data.exclude left out 2 samples" in said and "not carried" not in said, (root, said)
        assert "training samples of the run" not in said, (root, said)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # 'x' is not found from here: the folder written out is the run's
    assert main(["eval", run, f"data.root={tmp_path / 'x'}", "--split", "val", "--json"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "data.exclude left out 2 samples" in said and "not carried" not in said, said
    assert "training samples of the run" not in said, said
    # a --data section without the run's exclusions: told to give them again, not to drop them
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"data": {"kind": "image_folder", "root": str(tmp_path / "x"),
                                                                 "grey": True}}))
    assert main(["eval", run, "--data", str(tmp_path / "data.yaml"), "--split", "val", "--json"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert ("score the run's own val split (give the run's data.exclude again ('data.exclude=[\"a/3.png\", \"b/1*\"]' "
            "on the command line; in a --data section, the same list); the data as it was in training)") in said
    # another folder (a copy): not carried, said; the advice is to give them again too
    import shutil

    shutil.copytree(tmp_path / "x", tmp_path / "copy")
    assert main(["eval", run, f"data.root={tmp_path / 'copy'}", "--split", "val", "--json"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert (f"is not carried to data.root '{tmp_path / 'copy'}', another folder: to leave those files out here too, "
            "give the run's data.exclude as well ('data.exclude=[\"a/3.png\", \"b/1*\"]' on the command line)") in said


def test_same_folder_reads_a_root_written_otherwise():
    from peerdistill.config.data_spec import same_folder

    assert same_folder("data/x/", "data/x") and same_folder("./data/x", "data/x")
    assert not same_folder("data/y", "data/x") and not same_folder(None, "data/x") and not same_folder("x", None)


def test_data_exclude_matches_a_name_in_either_unicode_form(tmp_path):
    """A file saved with a decomposed accent (a Mac's copy) and a pattern typed composed (or the
    other way round) are one name, as image/mask pairing takes them."""
    import unicodedata

    write_class_tree(tmp_path / "x", {"a": 6, "b": 6})
    nfd, nfc = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "café")
    (tmp_path / "x" / "a" / "0.png").rename(tmp_path / "x" / "a" / f"{nfd}.png")
    (tmp_path / "x" / "b" / "0.png").rename(tmp_path / "x" / "b" / f"{nfc}2.png")
    for pattern in (f"{nfc}.png", f"a/{nfc}.png", f"{nfc[:3]}*.png", f"{nfc}", f"b/{nfd}2.png"):
        data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "x"), exclude=[pattern]))
        assert data.info["excluded"]["samples"] >= 1, pattern
        assert len(data.train) + len(data.val) + len(data.test) == 12 - data.info["excluded"]["samples"]


def test_an_empty_split_folder_is_not_blamed_on_data_exclude(tmp_path):
    write_class_tree(tmp_path / "s" / "train", {"a": 6, "b": 6})
    (tmp_path / "s" / "test" / "a").mkdir(parents=True)
    (tmp_path / "s" / "test" / "b").mkdir()
    with pytest.raises(DataError, match=r"^no images under '.*test': expected one folder per class"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "s"), exclude=["train/a/0.png"]))
    write_class_tree(tmp_path / "t" / "train", {"a": 6, "b": 6})
    write_class_tree(tmp_path / "t" / "test", {"a": 1, "b": 1})
    with pytest.raises(DataError, match=r"^data.exclude leaves no image under '.*test': keep some"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "t"), exclude=["test/"]))


def test_a_class_data_exclude_empties_is_said_to_be_emptied_by_it(tmp_path):
    from peerdistill.errors import SplitError

    write_class_tree(tmp_path / "x", {"a": 6, "b": 6, "c": 6})
    with pytest.raises(SplitError, match=r"^data.exclude leaves no image of class\(es\) \['a'\] in '.*x': they would "
                                         r"be classes the models never learn: keep some of their images \(remove the "
                                         r"patterns naming it from data.exclude\), or, to leave the class out, remove "
                                         r"its folder from the data$"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "x"), exclude=["a/"]))
    write_class_tree(tmp_path / "s" / "train", {"a": 6, "b": 6})
    write_class_tree(tmp_path / "s" / "test", {"a": 2, "b": 2})
    with pytest.raises(SplitError, match=r"^data.exclude leaves no image of class\(es\) \['b'\] in '.*train'"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "s"), exclude=["train/b/*"]))


def test_a_csv_pattern_matching_nothing_says_paths_count_from_the_csv_folder(tmp_path):
    write_class_tree(tmp_path / "x", {"a": 6, "b": 6})
    (tmp_path / "x" / "list.csv").write_text("path,label\n" + "".join(f"{c}/{i}.png,{c}\n" for c in "ab"
                                                                     for i in range(6)))
    with pytest.raises(DataError, match=r"a name with '/' is matched against each image's or mask's path relative to "
                                        r"the CSV file's folder, one without"):
        build_data(DataSpec(kind="csv", root=str(tmp_path / "x" / "list.csv"), exclude=["c/1.png"]))


def test_the_string_id_of_a_file_is_image_id():
    from pathlib import Path

    from peerdistill.data.exclusion import _id_of
    from peerdistill.data.image_io import image_id

    for name in ("a.png", "a", ".hidden", "a.", "a.b.png", "1.2.840.113619", "x.nii.gz", "IM-0001.jpeg", "a..b"):
        assert _id_of(name) == image_id(Path(name)), name


def test_the_paste_ready_exclude_advice_keeps_the_patterns_given_and_lists_every_name(tmp_path):
    import shlex

    import yaml

    from peerdistill.data.exclusion import EXAMPLE_LIMIT, exclude_example

    said = exclude_example(["b/2.png", "c/3.png"], ["a/*.png"])
    assert said == ("'data.exclude=[\"a/*.png\", \"b/2.png\", \"c/3.png\"]' on the command line, the 1 pattern "
                    "given first")
    names = [f"d/{i}.png" for i in range(EXAMPLE_LIMIT + 10)]
    said = exclude_example(names, ["a/*.png", "b/1.png"], folder=tmp_path)
    pasted = shlex.split(said.split(" on the command line")[0])[0]
    assert pasted == "data.exclude=" + __import__("json").dumps(["a/*.png", "b/1.png"] + names[:EXAMPLE_LIMIT])
    listed = tmp_path / "data-exclude-suggested.yaml"
    assert said.endswith(f"lists the first {EXAMPLE_LIMIT} of {EXAMPLE_LIMIT + 10}: '{listed}' lists every one as a "
                         "data section to copy into the config")
    assert yaml.safe_load(listed.read_text()) == {"data": {"exclude": ["a/*.png", "b/1.png"] + names}}
    assert DataSpec(kind="image_folder", root="x", **yaml.safe_load(listed.read_text())["data"]).exclude
    # without a run's folder (a dry run: review 56l), one file by content in the temporary folder, not one per saying
    first = exclude_example(names, [], folder=None).split("'")[-2]
    assert first == exclude_example(names, [], folder=None).split("'")[-2] != str(listed)
    assert __import__("os").path.dirname(first) == __import__("tempfile").gettempdir()


def test_a_run_saved_with_its_exclusions_in_another_order_deals_its_split_alike():
    from peerdistill.scored_data import _split_keys_changed

    spec = DataSpec(kind="image_folder", root="x", exclude=["b.png", "a/*"])
    saved = {**spec.model_dump(mode="json"), "exclude": ["b.png", "a/*"]}  # (run.json of a run before it was sorted)
    assert _split_keys_changed(spec, saved) == []
    assert _split_keys_changed(spec, {**saved, "exclude": ["b.png"]}) == ["exclude"]


def test_the_data_exclude_examples_of_the_docs_run(tmp_path, fast_tree, capsys):
    """docs/data.md's data section and command line, on a folder holding the files they name."""
    from pathlib import Path

    import yaml

    from peerdistill.cli import main

    doc = (Path(__file__).resolve().parent.parent / "docs" / "data.md").read_text()
    section = yaml.safe_load(re.search(r"```yaml\n(data:\n  kind: image_folder\n  root: xrays\n  exclude: .*?)```",
                                       doc, re.S).group(1))["data"]
    line = re.search(r"On the command line: `'(data.exclude=\[.*?\])'`", doc).group(1)
    said = " ".join(re.search(r"\(`(warning: data.exclude left out .*?)`;", doc, re.S).group(1).split())
    write_class_tree(tmp_path / "xrays", {"NORMAL": 8, "PNEUMONIA": 8})
    for name in ("NORMAL/IM-0117.jpeg", "PNEUMONIA/person1_virus_6.jpeg", "NORMAL/1_copy.png", "NORMAL/2_copy.png",
                 "PNEUMONIA/3_copy.png"):
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "xrays" / name)
    without = {k: v for k, v in section.items() if k != "exclude"}
    for data, overrides, left_out in ((section, [], 5), (without, [line], 4)):
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**fast_tree, "data": {**data, "grey": True}}))
        old = Path.cwd()
        try:
            __import__("os").chdir(tmp_path)  # (root: xrays, relative)
            assert main(["train", "cfg.yaml", *overrides, "--dry-run"]) == 0
        finally:
            __import__("os").chdir(old)
        err = " ".join(capsys.readouterr().err.split())
        assert f"warning: data.exclude left out {left_out} samples of 'xrays' before the split" in err
    assert said in err  # (the line the docs show: the command line's patterns)


def test_eval_on_another_folder_of_the_same_name_is_not_taken_for_the_runs_own(tmp_path, fast_tree, monkeypatch, capsys):
    """Review 56l: a run trained on a relative data.root 'dup', scored from elsewhere on another folder ending in
    'dup', kept the run's exclusions (which then matched nothing there); run.json's absolute data_root decides."""
    import yaml

    from peerdistill.cli import main

    write_class_tree(tmp_path / "a" / "dup", {"a": 10, "b": 10}, size=16)
    write_class_tree(tmp_path / "other" / "dup", {"a": 9, "b": 9}, size=16)
    tree = {**fast_tree, "out_dir": str(tmp_path / "runs"), "train": {"epochs": 1, "batch_size": 64},
            "data": {"kind": "image_folder", "root": "dup", "grey": True, "exclude": ["a/3.png"]}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(tree))
    monkeypatch.chdir(tmp_path / "a")
    assert main(["train", str(tmp_path / "cfg.yaml"), "--quiet"]) == 0
    monkeypatch.chdir(tmp_path / "other")  # 'dup' here is other data
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "runs" / "t"), f"data.root={tmp_path / 'other' / 'dup'}", "--json"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "the run's data.exclude (['a/3.png']) names files of the folder it trained on and is not carried" in said
    # the run's own folder, written from here: its exclusions kept
    assert main(["eval", str(tmp_path / "runs" / "t"), f"data.root={tmp_path / 'a' / 'dup'}", "--json"]) == 0
    assert "not carried" not in capsys.readouterr().err


def test_runs_kept_beside_the_class_folders_are_no_class(tmp_path):
    """Review 56m: data.root=. run from the data folder put runs/ beside the class folders; the next run and eval of
    this one refused a class 'runs' without images. A folder holding runs (or a comparison) is no class, as the
    data's fingerprint leaves it out; a class folder holding a stray subfolder stays a class."""
    write_class_tree(tmp_path / "x", {"a": 6, "b": 6}, size=8)
    (tmp_path / "x" / "runs" / "first").mkdir(parents=True)
    (tmp_path / "x" / "runs" / "first" / "run.json").write_text("{}")
    (tmp_path / "x" / "runs" / "x-compare").mkdir()
    (tmp_path / "x" / "runs" / "x-compare" / "compare.csv").write_text("")
    (tmp_path / "x" / "other-compare").mkdir()
    (tmp_path / "x" / "other-compare" / "compare.csv").write_text("")
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "x")))
    assert data.class_names == ["a", "b"] and len(data.train) + len(data.val) + len(data.test) == 12
    write_class_tree(tmp_path / "s" / "train", {"a": 6, "b": 6}, size=8)
    write_class_tree(tmp_path / "s" / "test", {"a": 2, "b": 2}, size=8)
    (tmp_path / "s" / "train" / "runs" / "r").mkdir(parents=True)
    (tmp_path / "s" / "train" / "runs" / "r" / "run.json").write_text("{}")
    assert build_data(DataSpec(kind="image_folder", root=str(tmp_path / "s"))).class_names == ["a", "b"]
    (tmp_path / "x" / "c" / "notes").mkdir(parents=True)  # no run in it: a class, refused as empty
    with pytest.raises(SplitError, match=r"class\(es\) \['c'\] have no images"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "x")))
