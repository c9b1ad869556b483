"""Files as users have them: EXIF orientation, hidden macOS files, multi-frame files, coloured
and transparent masks, masks that disagree, CSVs with repeats or Windows paths, class trees
with split folders, subfolders or numeric names, and other data evaluated by class name."""

import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from peerdistill.config import DataSpec, validate
from peerdistill.data import build_data
from peerdistill.data.detection import load_mask_boxes
from peerdistill.data.image_io import image_size, read_image, read_mask
from peerdistill.data.segmentation import read_pairs
from peerdistill.errors import CheckpointError, ConfigError, DataError, PeerdistillWarning, TrainingAdvice
from peerdistill.predict_inputs import read_inputs
from peerdistill.runs import check_compatible

ORIENTATION = 0x0112


def save(array, path, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)


def rotated_jpeg(path):
    """A JPEG stored 8 wide and 6 high with EXIF orientation 6: viewers turn it 90 degrees
    clockwise and show it 6 wide and 8 high. The stored image is bright in its left half."""
    stored = np.zeros((6, 8), np.uint8)
    stored[:, :4] = 250
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    return np.rot90(stored, k=-1) / 255.0  # as shown


def test_exif_orientation_is_applied_to_images_and_their_size(tmp_path):
    shown = rotated_jpeg(tmp_path / "a.jpg")
    assert shown.shape == (8, 6) and image_size(tmp_path / "a.jpg") == (8, 6)
    image = read_image(tmp_path / "a.jpg", grey=True)[..., 0]
    assert image.shape == (8, 6) and np.abs(image - shown).max() < 0.05  # bright in the top half, as shown
    # a mask drawn on the upright image pairs with it
    save(np.zeros((8, 6), np.uint8) + (np.arange(8)[:, None] < 4), tmp_path / "seg" / "masks" / "a.png")
    (tmp_path / "seg" / "images").mkdir()
    (tmp_path / "a.jpg").rename(tmp_path / "seg" / "images" / "a.jpg")
    x, m, _ = read_pairs(tmp_path / "seg", DataSpec(kind="folders", root=str(tmp_path / "seg"), grey=True))
    assert x[0, 0][m[0] == 1].mean() > 0.9 and x[0, 0][m[0] == 0].mean() < 0.1  # (images read [N, C, H, W])


def test_hidden_macos_files_are_not_read(tmp_path):
    junk = b"\x00\x05\x16\x07" + b"\x00" * 60  # an AppleDouble header, not an image
    for n in range(6):
        for cls in ("a", "b"):
            save(np.full((4, 4), 40 * n, np.uint8), tmp_path / "tree" / cls / f"{n}.png")
            (tmp_path / "tree" / cls / f"._{n}.png").write_bytes(junk)
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "tree")))
    assert len(data.train) + len(data.val) + len(data.test) == 12
    inputs = read_inputs([str(tmp_path / "tree" / "a")], channels=3, size=None)
    assert [name.split("/")[-1] for name in inputs.names] == [f"{n}.png" for n in range(6)]


def test_a_file_of_several_frames_is_refused(tmp_path):
    pages = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (10, 200)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(DataError, match="'.*stack.tif' holds 2 frames .* save each frame as its own file"):
        read_image(tmp_path / "stack.tif")


def test_an_unreadable_file_is_named_as_one_not_as_a_format_pillow_lacks(tmp_path, monkeypatch):
    # (the tests run as root, whom file modes do not stop: the refusal is made by hand)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "b.png")

    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refused)
    with pytest.raises(DataError, match=r"cannot read image '.*b.png': Permission denied; check its permissions$"):
        read_image(tmp_path / "b.png")


def test_a_damaged_file_is_to_be_replaced_and_a_format_pillow_lacks_to_be_converted(tmp_path):
    rng = np.random.default_rng(0)
    for suffix in (".png", ".tif"):
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / f"good{suffix}")
        whole = (tmp_path / f"good{suffix}").read_bytes()
        (tmp_path / f"cut{suffix}").write_bytes(whole[:len(whole) // 2])  # an interrupted copy
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")  # another kind of file under a PNG name
    (tmp_path / "odd.tif").write_text("not an image")  # a text under a TIFF name
    for name in ("cut.png", "cut.tif", "empty.jpg"):
        with pytest.raises(DataError, match=rf"cannot read image '.*{name}': .*; the file is damaged \(cut short or "
                                            r"empty.*\): replace it with a good copy, or remove it$"):
            read_image(str(tmp_path / name))  # (a path as text too)
    with pytest.raises(DataError, match=r"text.png': .*; the file does not hold the image its suffix .png names "
                                        r"\(damaged, or another kind of file under that name\): replace it"):
        read_image(tmp_path / "text.png")
    with pytest.raises(DataError, match=r"odd.tif': .*; the file does not hold the image its suffix .tif names"):
        read_image(tmp_path / "odd.tif")
    (tmp_path / "odd.xyz").write_text("not an image")  # a suffix of no format known: what Pillow reads is said
    with pytest.raises(DataError, match=r"cannot read image '.*odd.xyz': .*convert other files, e.g. colour float "
                                        r"TIFFs, to one of these\)$"):
        read_image(tmp_path / "odd.xyz")
    broken = bytearray((tmp_path / "good.png").read_bytes())
    broken[60:80] = bytes(20)  # inside the pixel data: a PNG still, as its first bytes say, but damaged
    (tmp_path / "broken.png").write_bytes(bytes(broken))
    with pytest.raises(DataError, match=r"broken.png': .*; the file is damaged \(Pillow reads every PNG\): replace it"):
        read_image(tmp_path / "broken.png")
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"x" * 64)  # Pillow says "Truncated File Read"
    with pytest.raises(DataError, match=r"cut.jpg': .*; the file is damaged \(cut short or empty"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "folder.png").mkdir()  # not a file at all: the system's word for it, no advice on images
    with pytest.raises(DataError, match=r"cannot read image '.*folder.png': \[Errno 21\] Is a directory: '.*'$"):
        read_image(tmp_path / "folder.png")


def test_a_jpeg_pillow_cannot_decode_may_be_a_variant_it_lacks_and_is_told_both_ways(tmp_path, monkeypatch):
    # (Pillow refuses 12-bit and lossless JPEGs, which a test cannot easily write: its refusal is made by hand)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.jpg")

    def refused(path, *args, **kwargs):
        raise OSError("unsupported JPEG variant")

    monkeypatch.setattr(Image, "open", refused)
    with pytest.raises(DataError, match=r"x.jpg': unsupported JPEG variant; the file is damaged, or a variant Pillow "
                                        r"does not read \(12-bit or lossless JPEG, some BMP compressions, colour float TIFF\): replace it "
                                        r"with a good copy, or remove it, or convert it to an 8-bit PNG"):
        read_image(tmp_path / "x.jpg")


def test_training_data_with_several_damaged_files_names_them_all_in_one_message(tmp_path):
    # a half-finished copy seldom damages one file: each attempt naming one would take as many tries
    for label in ("a", "b"):
        (tmp_path / "tree" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(tmp_path / "tree" / label / f"{i}.png")
    for damaged in ("a/1.png", "b/3.png"):
        path = tmp_path / "tree" / damaged
        path.write_bytes(path.read_bytes()[:30])  # cut short
    with pytest.raises(DataError) as caught:
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "tree")))
    lines = str(caught.value).split("\n")
    assert lines[0] == "2 of 8 images cannot be read:" and len(lines) == 3
    assert [line.split("'")[1] for line in lines[1:]] == [str(tmp_path / "tree" / "a" / "1.png"),
                                                         str(tmp_path / "tree" / "b" / "3.png")]
    assert all("; the file is damaged" in line and line.endswith("remove it") for line in lines[1:])
    # segmentation: the sizes of images and masks are compared first, and that reading too names every file
    for folder in ("images", "masks"):
        (tmp_path / "seg" / folder).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "seg" / folder / f"{i}.png")
    (tmp_path / "seg" / "images" / "0.png").write_bytes(b"")
    (tmp_path / "seg" / "masks" / "2.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"^2 of 3 image files and masks cannot be read:\n  - cannot read image "
                                        r"'.*0.png'.*\n  - cannot read mask '.*2.png'"):
        read_pairs(tmp_path / "seg", DataSpec(kind="folders", root=str(tmp_path / "seg")))


def test_binary_masks_by_brightest_channel_alpha_or_any_class(tmp_path):
    red = np.zeros((4, 4, 3), np.uint8)
    red[1:3, 1:3, 0] = 255  # luminance 76: a grey threshold at 127 would lose it
    save(red, tmp_path / "red.png")
    painted = np.zeros((4, 4, 4), np.uint8)
    painted[:2, :, 3] = 255  # black paint on a transparent layer: only alpha tells
    save(painted, tmp_path / "alpha.png")
    save(np.array([[0, 1], [2, 0]], np.uint8), tmp_path / "labels.png")
    save(np.array([[0, 65535], [40000, 30000]], np.uint16), tmp_path / "wide.png")
    expected_red = np.zeros((4, 4), np.uint8)
    expected_red[1:3, 1:3] = 1
    assert (read_mask(tmp_path / "red.png", binary=True) == expected_red).all()
    assert read_mask(tmp_path / "alpha.png", binary=True).tolist() == [[1] * 4] * 2 + [[0] * 4] * 2
    assert read_mask(tmp_path / "labels.png", binary=True).tolist() == [[0, 1], [1, 0]]
    assert read_mask(tmp_path / "wide.png", binary=True).tolist() == [[0, 1], [1, 0]]  # above half of 65535
    noise = np.zeros((16, 16), np.uint8)
    noise[4:8, 4:8] = 6  # a JPEG mask of an empty image: compression noise, no object
    save(noise, tmp_path / "empty.jpg", quality=50)
    assert read_mask(tmp_path / "empty.jpg", binary=True).max() == 0


def test_labels_with_a_void_border_are_not_read_as_a_0_255_mask(tmp_path):
    """Pascal VOC's masks: 0 background, 1 the object, 255 a void border. Read as 0/255, the
    border would be the object and the object background; read as class indices they are right."""
    voc = np.zeros((12, 12), np.uint8)
    voc[2:10, 2:10] = 255
    voc[3:9, 3:9] = 1  # the object (36 pixels), inside its void border (28)
    save(voc, tmp_path / "voc.png")
    with pytest.raises(DataError, match=r"mask 'voc.png' holds \[0, 1, 255\]: regions of small labels with 255 "
                                        r"marking ignored "
                                        r"pixels .* data.binary_masks=false"):
        read_mask(tmp_path / "voc.png", binary=True)
    assert (read_mask(tmp_path / "voc.png") == voc).all()  # class 1, 255 ignored
    small = np.zeros((20, 20), np.uint8)  # a small object in a void border wider than it: refused too
    small[2:18, 2:18] = 255
    small[8:12, 8:12] = 1
    save(small, tmp_path / "small.png")
    with pytest.raises(DataError, match="regions of small labels with 255 marking ignored"):
        read_mask(tmp_path / "small.png", binary=True)
    halo = np.zeros((12, 12), np.uint8)  # a thin 0/255 line whose faint halo holds small values only
    halo[6] = 255
    halo[5] = halo[7] = 20
    save(halo, tmp_path / "halo.png")
    assert read_mask(tmp_path / "halo.png", binary=True).sum() == 12
    edges = np.zeros((12, 12), np.uint8)  # an anti-aliased 0/255 mask whose few edge pixels are dim
    edges[3:9, 3:9] = 255
    edges[3, 3:9] = 20
    save(edges, tmp_path / "edges.png")
    assert read_mask(tmp_path / "edges.png", binary=True).sum() == 30  # its 255s, the dim edge left out
    # judged at the file's own size: enlarged, the dim edge would be four pixels thick
    assert read_mask(tmp_path / "edges.png", (48, 48), binary=True).sum() == 30 * 16


def test_mask_values_up_to_num_classes_and_the_hint_otherwise(tmp_path):
    save(np.array([[0, 60]], np.uint8), tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", num_classes=61).tolist() == [[0, 60]]
    with pytest.raises(DataError, match=r"class indices below data.num_classes \(60\)"):
        read_mask(tmp_path / "m.png", num_classes=60)
    with pytest.raises(DataError, match="for 0/255 masks of one foreground class set data.binary_masks=true"):
        read_mask(tmp_path / "m.png")


def test_a_mask_spread_for_viewing_is_told_apart_from_a_0_255_mask(tmp_path):
    """[0, 128, 255] are three classes' grey levels as predict --visible-masks writes them
    (round(255 k / 2)); data.binary_masks would merge the two foreground classes, so the hint
    names both readings. [0, 200] fits no such spread of 3 to 11 classes: the 0/255 hint alone."""
    save(np.array([[0, 128, 255]], np.uint8), tmp_path / "spread.png")
    with pytest.raises(DataError) as refused:
        read_mask(tmp_path / "spread.png")
    message = str(refused.value)
    assert "for 0/255 masks of one foreground class set data.binary_masks=true" in message
    assert "spread over 0..255 for viewing" in message and "predict without --visible-masks" in message
    save(np.array([[0, 200]], np.uint8), tmp_path / "dim.png")
    with pytest.raises(DataError) as refused:
        read_mask(tmp_path / "dim.png")
    assert "binary_masks=true" in str(refused.value) and "viewing" not in str(refused.value)


def write_pairs(root, masks, size=(6, 6), mask_size=None):
    for i, mask in enumerate(masks):
        save(np.full(size, 30 * i, np.uint8), root / "images" / f"{i}.png")
        save(np.asarray(mask, np.uint8) if mask_size is None else np.zeros(mask_size, np.uint8),
             root / "masks" / f"{i}.png")


def square(value, size=6):
    m = np.zeros((size, size), np.uint8)
    m[1:4, 1:4] = value
    return m


def folders(root, **options):
    return build_data(DataSpec(kind="folders", root=str(root), val_fraction=0.25, test_fraction=0.25, **options))


def test_mask_and_image_sizes_are_compared_before_resizing(tmp_path):
    write_pairs(tmp_path, [square(1)] * 4, size=(12, 8), mask_size=(5, 5))
    with pytest.raises(DataError, match="image '0.png' is 8x12 but its mask '0.png' is 5x5"):
        folders(tmp_path, image_size=[6, 6])


def test_masks_saved_two_ways_are_refused(tmp_path):
    write_pairs(tmp_path, [square(1), square(255), square(1), square(255)])
    with pytest.raises(DataError, match=r"hold only 0 and 255 \(\['1.png', '3.png'\]\) while others hold class"):
        folders(tmp_path)
    assert folders(tmp_path, num_classes=2).num_classes == 2  # said outright: 255 is ignored there


def test_a_stray_mask_value_does_not_add_classes(tmp_path):
    stray = square(1)
    stray[5, 5] = 7
    write_pairs(tmp_path, [square(1), stray, square(1), square(1)])
    with pytest.raises(DataError, match=r"classes \[2, 3, 4, 5, 6\] have no pixel"):
        folders(tmp_path)
    assert folders(tmp_path, num_classes=8).num_classes == 8  # said outright: accepted
    with pytest.raises(DataError, match="masks hold class 7 but there are 2 classes"):
        folders(tmp_path, class_names=["background", "lesion"])  # was a crash in the metrics
    with pytest.raises(DataError, match="3 class names for num_classes 8"):
        folders(tmp_path, num_classes=8, class_names=["a", "b", "c"])


def test_training_masks_without_foreground_are_refused(tmp_path):
    write_pairs(tmp_path, [np.zeros((6, 6))] * 4)
    with pytest.raises(DataError, match="the training masks hold no foreground pixel"):
        folders(tmp_path)


def test_boxes_from_0_1_masks_and_masks_without_any_object(tmp_path):
    write_pairs(tmp_path / "ones", [square(1, 8), square(1, 8)], size=(8, 8))  # 0/1 masks: a grey threshold found none
    _, y, _, _ = load_mask_boxes(tmp_path / "ones" / "images", tmp_path / "ones" / "masks", (8, 8), min_area=1)
    assert y[0, 0].tolist() == [0, 1, 1, 4, 4]
    write_pairs(tmp_path / "none", [np.zeros((8, 8))] * 2, size=(8, 8))
    with pytest.raises(DataError, match="hold no object of 4 pixels or more at 8x8"):
        load_mask_boxes(tmp_path / "none" / "images", tmp_path / "none" / "masks", (8, 8))


def write_csv(tmp_path, rows):
    for n in range(8):
        save(np.full((4, 4), 20 * n, np.uint8), tmp_path / "img" / "sub" / f"{n}.png")
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return DataSpec(kind="csv", root=str(tmp_path / "list.csv"), val_fraction=0.25, test_fraction=0.25)


def test_csv_paths_written_on_windows_are_read(tmp_path):
    spec = write_csv(tmp_path, [(f"img\\sub\\{n}.png", n % 2) for n in range(8)])
    data = build_data(spec)
    assert len(data.train) + len(data.val) + len(data.test) == 8


def test_an_image_listed_twice_in_a_csv_is_refused(tmp_path):
    spec = write_csv(tmp_path, [(f"img/sub/{n}.png", n % 2) for n in range(8)] + [("img/sub/3.png", 0)])
    with pytest.raises(DataError, match=r"line 10 lists '3.png' again \(line 5, with another label\)"):
        build_data(spec)


def test_a_csv_row_of_more_fields_than_its_header_is_refused(tmp_path):
    # an unquoted comma in a label (a,b) moved its second part into a column without a name, unsaid
    spec = write_csv(tmp_path, [(f"img/sub/{n}.png", n % 2) for n in range(8)] + [("img/sub/3.png", "a,b")])
    with pytest.raises(DataError, match=r"list.csv' line 10 has 3 fields, the header 2: quote a field that "
                                        r"holds a ','"):
        build_data(spec)
    # blank lines are skipped by csv: the line said is the file's own (it said line 10 for line 12)
    text = (tmp_path / "list.csv").read_text().replace("path,label\n", "path,label\n\n\n", 1)
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(DataError, match=r"list.csv' line 12 has 3 fields"):
        build_data(spec)
    (tmp_path / "list.csv").write_text(text.replace("img/sub/3.png,a,b", "img/sub/3.png,0"))
    with pytest.raises(DataError, match=r"line 12 lists '3.png' again \(line 7, with another label\)"):
        build_data(spec)
    # a quoted field over two lines: a row is named by the line it starts on, not the one it ends on
    (tmp_path / "list.csv").write_text('path,label,note\nimg/sub/0.png,0,x\nimg/sub/2.png,0,"a note\nover two lines"\n'
                                       + "".join(f"img/sub/{n}.png,{n % 2},x\n" for n in range(3, 8))
                                       + "img/sub/2.png,1,dup\n")
    with pytest.raises(DataError, match=r"line 10 lists '2.png' again \(line 3, with another label\)"):
        build_data(spec)


def class_tree(root, classes, n=6):
    for cls in classes:
        for i in range(n):
            save(np.full((4, 4), 10 * i, np.uint8), root / cls / f"{cls}_{i}.png")


def test_train_and_test_folders_without_val_cut_val_from_train(tmp_path):
    class_tree(tmp_path / "train", ["a", "b"], n=8)
    class_tree(tmp_path / "test", ["a", "b"], n=2)
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path), val_fraction=0.25, split_seed=1))
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)
    assert sorted(data.val.y.tolist()) == [0, 0, 1, 1]  # stratified
    assert "val cut from train" in data.info["splits"]
    class_tree(tmp_path / "only" / "train", ["a", "b"])
    with pytest.raises(DataError, match=r"holds split folder\(s\) \['train'\] but not both train and test"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "only")))


def test_a_class_without_training_images_is_refused(tmp_path):
    class_tree(tmp_path / "train", ["NORMAL", "PNEUMONIA"])
    class_tree(tmp_path / "val", ["NORMAL", "PNEUMONIA"], n=2)
    class_tree(tmp_path / "test", ["Normal", "Pneumonia"], n=2)
    with pytest.raises(DataError, match=r"class\(es\) \['Normal', 'Pneumonia'\] have no images in '.*train' "
                                        r"\('Normal' beside 'NORMAL', 'Pneumonia' beside 'PNEUMONIA': names differing "
                                        r"only in case are different classes\)"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path)))
    (tmp_path / "test" / "Pneumonia").rename(tmp_path / "test" / "Other")  # no name alike: no hint
    with pytest.raises(DataError, match=r"\['Normal', 'Other'\] have no images in '[^']*train' \('Normal' beside "
                                        r"'NORMAL': names") as refused:
        build_data(DataSpec(kind="image_folder", root=str(tmp_path)))
    assert "'Other' beside" not in str(refused.value)


def test_images_in_subfolders_of_a_class_are_named(tmp_path):
    class_tree(tmp_path, ["a", "b"])
    class_tree(tmp_path / "b", ["patient7"], n=2)
    with pytest.raises(DataError, match=r"class folder '.*b' holds images in subfolders \['patient7'\]"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path)))


def test_other_data_is_scored_by_class_name_not_position(tmp_path):
    class_tree(tmp_path, ["10", "9"], n=10)  # two of the run's three classes
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path)))
    names = data.class_names
    before = data.test.y.clone()
    meta = {"task": "classification", "input_shape": list(data.input_shape), "num_classes": 3,
            "class_names": ["10", "2", "9"]}  # a run that sorted them as text
    numbered = check_compatible(data, meta)
    expected = torch.tensor([meta["class_names"].index(names[i]) for i in before.tolist()])
    assert torch.equal(numbered.test.y, expected) and numbered.class_names == ["10", "2", "9"]
    assert torch.equal(data.test.y, before) and data.class_names == names  # the caller's data untouched
    other = build_data(DataSpec(kind="image_folder", root=str(tmp_path)))
    with pytest.raises(DataError, match=r"classes \['10'\] that the run does not know \(its classes: \['benign', "
                                        r"'9'\]\): evaluate on data"):
        check_compatible(other, {**meta, "class_names": ["benign", "9"], "num_classes": 2})
    # names that differ in case or spaces alone are pointed out (review 44f: 'normal' against 'NORMAL')
    with pytest.raises(DataError, match=r"\('9' is ' 9' there: names differ in case or spaces\): evaluate"):
        check_compatible(other, {**meta, "class_names": ["benign", " 9"], "num_classes": 2})


def test_class_names_are_refused_where_the_data_names_its_classes():
    with pytest.raises(ConfigError, match="data.class_names does not apply to data kind 'image_folder'"):
        DataSpec(kind="image_folder", root="x", class_names=["a", "b"])


def test_default_class_names_found_in_the_run_are_matched_too(tmp_path):
    class_tree(tmp_path, [str(i) for i in range(11)], n=5)  # "0".."10": a run sorted them as text
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path), val_fraction=0.3, test_fraction=0.3))
    run_names = sorted(str(i) for i in range(11))
    assert data.class_names == run_names  # sorted as text, as before
    data.class_names = [str(i) for i in range(11)]  # the numeric order a CSV of the same labels gives
    before = data.test.y.clone()
    numbered = check_compatible(data, {"task": "classification", "input_shape": list(data.input_shape),
                                        "num_classes": 11, "class_names": run_names})
    assert torch.equal(numbered.test.y, torch.tensor([run_names.index(str(int(i))) for i in before]))


def test_a_teacher_run_numbering_classes_otherwise_is_refused(tmp_path):
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    class_tree(tmp_path / "data", ["a", "b"], n=8)
    base = {"data": {"kind": "image_folder", "root": str(tmp_path / "data")}, "out_dir": str(tmp_path),
            "teacher": {"arch": "cnn", "args": {"width": 4, "depth": 1}}, "distill": {"preset": "independent"},
            "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}], "train": {"epochs": 1}}
    train_from_config(validate({**base, "name": "t"}), progress=False)
    (tmp_path / "data" / "a").rename(tmp_path / "data" / "c")  # now b, c
    frozen = {**base, "name": "s", "distill": {"preset": "kd"},
              "teacher": {**base["teacher"], "frozen": True, "checkpoint": str(tmp_path / "t")}}
    with pytest.raises(CheckpointError, match=r"numbers its classes \['a', 'b'\], the data \['b', 'c'\]"):
        train_from_config(validate(frozen), progress=False)
    frozen["teacher"]["checkpoint"] = str(tmp_path / "t" / "models" / "teacher.safetensors")  # its file: the same
    with pytest.raises(CheckpointError, match=r"whose model .*teacher.safetensors' is given\), the checkpoint of "
                                              r"teacher, numbers its classes \['a', 'b'\], the data \['b', 'c'\]"):
        train_from_config(validate(frozen), progress=False)


def test_voc_style_void_borders_are_not_masks_saved_two_ways(tmp_path):
    bordered = square(1)
    bordered[0, :] = 255  # a void border beside the class, as in Pascal VOC
    write_pairs(tmp_path, [bordered, square(255), square(2), square(1)])
    assert folders(tmp_path, split_seed=4).num_classes == 3  # (a seed that puts both classes in train)


def test_runs_saved_with_class_names_an_older_version_ignored_still_read(tmp_path):
    import json

    import yaml

    from peerdistill.build import train_from_config
    from peerdistill.config import load_saved_config, validate
    from peerdistill.runs import evaluate_run

    class_tree(tmp_path / "data", ["a", "b"], n=8)
    tree = {"data": {"kind": "image_folder", "root": str(tmp_path / "data")}, "out_dir": str(tmp_path), "name": "old",
            "teacher": None, "distill": {"preset": "independent"},
            "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}], "train": {"epochs": 1}}
    train_from_config(validate(tree), progress=False)
    run = tmp_path / "old"
    meta = json.loads((run / "run.json").read_text())
    meta["data_spec"]["class_names"] = ["x", "y"]  # as an older version saved it
    meta["data_spec"]["num_classes"] = 2  # ignored for this kind then, refused now
    (run / "run.json").write_text(json.dumps(meta))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["data"]["class_names"] = ["x", "y"]
    saved["data"]["num_classes"] = 2
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert "student1" in evaluate_run(run)
    assert load_saved_config(run / "config.yaml").data.class_names is None
    with pytest.raises(ConfigError, match="data.class_names does not apply"):
        validate(saved)  # a new config saying so is refused


def test_one_binary_rule_for_a_whole_mask_set(tmp_path):
    faint = np.zeros((6, 6), np.uint8)
    faint[2, 2] = 48  # an anti-aliased edge of a tiny object, in a set of 0/255 masks
    write_pairs(tmp_path, [square(255), faint, square(255), square(255)])
    data = folders(tmp_path, binary_masks=True, split_seed=0)
    masks = torch.cat([data.train.y, data.val.y, data.test.y])
    assert sorted(int(m.sum()) for m in masks) == [0, 9, 9, 9]  # 48 is background, as in the 0/255 files
    write_pairs(tmp_path / "ones", [square(1), square(1), square(1), square(1)])
    with warnings.catch_warnings():  # one label: nothing merged, nothing said
        warnings.simplefilter("error", PeerdistillWarning)
        assert int(folders(tmp_path / "ones", binary_masks=True).train.y.sum()) > 0  # 0/1 masks: any value above 0
        folders(tmp_path, binary_masks=True, split_seed=0)  # 0/255 masks with a faint edge: the 127 rule
    # class indices of several classes: merged into one foreground, said
    write_pairs(tmp_path / "classes", [square(1), square(2), square(3), square(1)])
    with pytest.warns(PeerdistillWarning, match=r"with data.binary_masks, masks of the labels \[1, 2, 3\] are read as "
                                                r"one foreground class"):
        folders(tmp_path / "classes", binary_masks=True)


def test_previews_are_read_as_the_main_image_and_a_turned_mask_is_explained(tmp_path):
    main = Image.fromarray(np.full((8, 8), 100, np.uint8))
    main.save(tmp_path / "thumb.tif", save_all=True, append_images=[Image.fromarray(np.zeros((2, 2), np.uint8))])
    assert read_image(tmp_path / "thumb.tif", grey=True).shape == (8, 8, 1)  # a TIFF with a thumbnail page
    rotated_jpeg(tmp_path / "seg" / "images" / "a.jpg")  # stored 8x6, shown 6x8
    save(np.zeros((6, 8), np.uint8), tmp_path / "seg" / "masks" / "a.png")  # drawn on the stored pixels
    with pytest.raises(DataError, match="is 6x8 but its mask 'a.png' is 8x6 \\(as shown: the image's EXIF"):
        read_pairs(tmp_path / "seg", DataSpec(kind="folders", root=str(tmp_path / "seg")))


def test_a_small_external_set_is_scored_whole_with_split_all(tmp_path):
    """--split all scores every image of other data; it was cut into stratified parts first, which
    a class of one image cannot be."""
    from peerdistill.build import train_from_config
    from peerdistill.config import validate
    from peerdistill.data.splits import kept_whole
    from peerdistill.runs import evaluate_run, load_cohort

    rng = np.random.default_rng(0)
    for cls, level in (("a", 40), ("b", 200)):
        for i in range(10):
            save(np.clip(rng.normal(level, 20, (8, 8)), 0, 255).astype(np.uint8), tmp_path / "d" / cls / f"{i}.png")
    train_from_config(validate({"name": "r", "out_dir": str(tmp_path / "runs"), "distill": {"preset": "ml"},
                                "data": {"kind": "image_folder", "root": str(tmp_path / "d"), "grey": True},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": 2, "batch_size": 8}}), progress=False)
    for cls, n in (("a", 1), ("b", 5)):
        for i in range(n):
            save(np.full((8, 8), 40 if cls == "a" else 200, np.uint8), tmp_path / "ext" / cls / f"{i}.png")
    spec = DataSpec(kind="image_folder", root=str(tmp_path / "ext"), grey=True)
    with pytest.raises(DataError, match=r"stratified train/val/test split: class 'a' \(1 image\) needs at least 3"):
        build_data(spec)  # a training set it could not be
    run = tmp_path / "runs" / "r"
    scores = evaluate_run(run, split="all", data_spec=spec)
    cohort, meta = load_cohort(run)
    with kept_whole():
        whole = build_data(spec, stats=meta["data_stats"])
    assert (len(whole.train), len(whole.val), len(whole.split("all"))) == (0, 0, 6)
    # given split folders (val cut from train) are joined alike: b's one image is no obstacle
    for split, counts in (("train", (("a", 2), ("b", 1))), ("test", (("a", 1), ("b", 1)))):
        for cls, n in counts:
            for i in range(n):
                save(np.full((8, 8), 40, np.uint8), tmp_path / "ext2" / split / cls / f"{i}.png")
    with kept_whole():
        joined = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "ext2"), grey=True),
                            stats=meta["data_stats"])
    assert len(joined.split("all")) == 5 and sorted(joined.test.y.tolist()) == [0, 0, 0, 1, 1]
    # a test/ folder alone (an external test set kept in its own layout)
    with kept_whole():
        alone = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "ext2" / "test"), grey=True),
                           stats=meta["data_stats"])
        tests_only = tmp_path / "ext3"
        (tests_only / "test").parent.mkdir()
        (tmp_path / "ext2" / "test").rename(tests_only / "test")
        only = build_data(DataSpec(kind="image_folder", root=str(tests_only), grey=True), stats=meta["data_stats"])
    assert len(alone.split("all")) == len(only.split("all")) == 2
    with torch.no_grad():
        probs = torch.stack([m.module.eval()(whole.test.x).softmax(dim=1) for m in cohort.students]).mean(dim=0)
    accuracy = (probs.argmax(dim=1) == whole.test.y).float().mean().item()
    assert scores["ensemble"]["accuracy"] == pytest.approx(accuracy)
    # the images standardised by the run's statistics (not the set's own), computed here by hand
    stats = meta["data_stats"]
    levels = torch.tensor([40.0] + [200.0] * 5).view(6, 1, 1, 1).expand(6, 1, 8, 8) / 255
    x = (levels - stats["mean"][0]) / stats["std"][0]
    with torch.no_grad():
        p1 = torch.stack([m.module.eval()(x).softmax(dim=1) for m in cohort.students]).mean(dim=0)[:, 1]
    brier = ((p1.double() - torch.tensor([0.0] + [1.0] * 5, dtype=torch.float64)) ** 2).mean().item()
    assert scores["ensemble"]["brier"] == pytest.approx(brier, rel=1e-5)
    # eval keeps the set whole only while it builds it: later loads split again
    with pytest.raises(DataError, match="cannot make a stratified train/val/test split"):
        build_data(spec)


def test_segmentation_and_detection_folders_are_scored_whole_with_split_all(tmp_path):
    """--split all reads image/mask folders (split folders joined) and box files as one set: two
    images could not be cut into train, val and test."""
    from peerdistill.data.splits import kept_whole

    stats = {"mean": [0.5], "std": [0.25]}
    write_pairs(tmp_path / "flat", [square(1), square(1)])
    write_pairs(tmp_path / "split" / "train", [square(1)])
    write_pairs(tmp_path / "split" / "test", [square(1), np.zeros((6, 6))])
    with pytest.raises(DataError, match="too few to split"):
        folders(tmp_path / "flat", binary_masks=True)
    with kept_whole():
        flat = folders(tmp_path / "flat", binary_masks=True)
        given = build_data(DataSpec(kind="folders", root=str(tmp_path / "split"), binary_masks=True, grey=True),
                           stats=stats)
    assert (len(flat.train), len(flat.val), len(flat.test)) == (0, 0, 2)
    assert (len(given.train), len(given.val), len(given.test)) == (0, 0, 3) and given.num_classes == 2
    assert given.test.y.sum(dim=(1, 2)).tolist() == [9, 9, 0]  # train's pair first, then test's two
    grey = torch.tensor([0.0, 0.0, 30.0]).view(3, 1, 1, 1) / 255  # each folder's images are 0, 30, ... grey
    assert torch.allclose(given.test.x, ((grey - 0.5) / 0.25).expand(3, 1, 6, 6))  # the run's statistics
    assert given.info["files"] == {"test": ["0", "0", "1"]} and given.info["split"].startswith("whole")
    write_pairs(tmp_path / "split" / "val", [square(1, size=8)], size=(8, 8))
    with kept_whole(), pytest.raises(DataError, match=r"^the images of the split folders of '.*split' differ in size \(2 "
                                                      r"sizes, e.g. 6x6: 'test/images/0.png'; 8x8: 'val/images/0.png'\): "
                                                      r"set data.image_size"):
        build_data(DataSpec(kind="folders", root=str(tmp_path / "split"), binary_masks=True, grey=True), stats=stats)
    # detection: boxes from the same masks, kept whole
    spec = DataSpec(kind="mask_boxes", root=str(tmp_path / "flat"), image_size=[6, 6], grey=True)
    with pytest.raises(DataError, match="too few to split"):
        build_data(spec)
    with kept_whole():
        boxes = build_data(spec, stats=stats)
    assert (len(boxes.train), len(boxes.val), len(boxes.test)) == (0, 0, 2)
    assert boxes.test.y[:, 0].tolist() == [[0, 1, 1, 4, 4]] * 2 and boxes.info["split"].startswith("whole")


def test_a_moved_set_is_scored_whole_without_the_split_dirs_it_lacks(tmp_path):
    """--split all with data.root=NEW of a run trained on data.split_dirs (DRIVE's training/
    testing): the named folders NEW holds, else NEW's own pairs; a set of negatives (no
    foreground) is scored too, as it is no training set."""
    from peerdistill.data.splits import kept_whole

    stats = {"mean": [0.5], "std": [0.25]}
    write_pairs(tmp_path / "flat", [square(1), np.zeros((6, 6))])
    write_pairs(tmp_path / "only" / "testing", [square(1), square(1), square(1)])
    write_pairs(tmp_path / "negatives", [np.zeros((6, 6))] * 4)
    sizes = []
    for name in ("flat", "only", "negatives"):
        spec = DataSpec(kind="folders", root=str(tmp_path / name), binary_masks=True, grey=True,
                        split_dirs={"train": "training", "test": "testing"})
        with kept_whole():
            sizes.append(len(build_data(spec, stats=stats).test))
    assert sizes == [2, 3, 4]
    with pytest.raises(DataError, match="training masks hold no foreground"):  # training still needs some
        folders(tmp_path / "negatives", binary_masks=True)


def test_one_class_and_class_folders_missing_are_named_before_any_run(tmp_path, capsys):
    from peerdistill.cli import main

    for i in range(6):
        save(np.full((8, 8), 40, np.uint8), tmp_path / "one" / "normal" / f"{i}.png")
        save(np.full((8, 8), 40, np.uint8), tmp_path / "flat" / f"{i}.png")
    assert build_data(DataSpec(kind="image_folder", root=str(tmp_path / "one"), grey=True)).num_classes == 1
    # (an external set of one class can be scored; it cannot be trained on)
    with pytest.raises(DataError, match="holds 6 images directly but no class folders"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "flat"), grey=True))
    assert main(["train", "data.kind=image_folder", f"data.root={tmp_path / 'one'}", f"out_dir={tmp_path / 'runs'}",
                 "train.epochs=1"]) == 2
    assert "holds one class ('normal'): a classifier needs at least two" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing left behind to refuse the next try


def test_colour_images_against_grey_statistics_name_data_grey(tmp_path):
    for cls in ("a", "b"):
        for i in range(6):
            save(np.full((8, 8, 3), 40 * (i + 1), np.uint8), tmp_path / "c" / cls / f"{i}.png")
    with pytest.raises(DataError, match="read in colour .* statistics are for grey ones .*: read image files grey, "
                                        "data.grey=true; arrays .npz. are read as stored: save them with one channel"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "c")), stats={"mean": [0.5], "std": [0.2]})
    colour = np.zeros((4, 8, 8, 3), np.uint8)  # arrays: data.grey does nothing to them, so it is not the advice
    np.savez(tmp_path / "c.npz", train_images=colour, train_labels=[0, 1, 0, 1], val_images=colour,
             val_labels=[0, 1, 0, 1], test_images=colour, test_labels=[0, 1, 0, 1])
    with pytest.raises(DataError, match="arrays .npz. are read as stored: save them with one channel"):
        build_data(DataSpec(kind="npz", root=str(tmp_path / "c.npz")), stats={"mean": [0.5], "std": [0.2]})
    with pytest.raises(ConfigError, match="data.grey applies to data kind 'image_folder' or 'csv' .*, not 'npz'"):
        DataSpec(kind="npz", root=str(tmp_path / "c.npz"), grey=True)  # (review 51e: it did nothing, in silence)


def test_a_quarter_turned_tiff_is_read_upright_or_refused_by_name_never_scrambled(tmp_path):
    stored = (np.arange(20 * 30) % 251).astype(np.uint8).reshape(20, 30)
    Image.fromarray(stored).save(tmp_path / "turned.tif", tiffinfo={ORIENTATION: 6})
    with Image.open(tmp_path / "turned.tif") as im:
        misread = im.size != (30, 20)  # Pillow 13 gives it the turned size before decoding the stored pixels
    if misread:
        with pytest.raises(DataError, match=r"turned.tif' is a TIFF turned a quarter by its orientation tag \(6\)"):
            read_image(tmp_path / "turned.tif", grey=True)
    else:
        image = read_image(tmp_path / "turned.tif", grey=True)[..., 0]
        assert np.allclose(image * 255, np.rot90(stored, k=-1), atol=0.5)


def test_a_jpeg_mask_keeps_the_lossy_rule_when_resized(tmp_path):
    from peerdistill.data.image_io import read_mask_values

    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 1
    save(mask, tmp_path / "m.jpg", quality=90)
    assert read_mask_values(tmp_path / "m.jpg").lossy and read_mask_values(tmp_path / "m.jpg", (16, 16)).lossy
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    save(mask, tmp_path / "turned.jpg", quality=90, exif=exif)  # turned upright: a new image, same format
    assert read_mask_values(tmp_path / "turned.jpg", (8, 8)).lossy


def test_inputs_resized_as_training_resized_its_files_are_no_news(tmp_path):
    save(np.zeros((20, 24), np.uint8), tmp_path / "a.png")
    with pytest.warns(UserWarning, match="1 of 1 inputs differ in size from the model's 8x8 \\(height x width\\) input"):
        read_inputs([str(tmp_path / "a.png")], 1, (8, 8))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_inputs([str(tmp_path / "a.png")], 1, (8, 8), trained_resized=True).sizes == [(20, 24)]


def test_a_palette_of_grey_entries_is_grey_and_of_colours_colour(tmp_path):
    from peerdistill.data.image_io import size_and_colour

    ramp = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    Image.fromarray(ramp).convert("P").save(tmp_path / "grey.png")  # grey pixels stored as a palette
    colours = np.stack([ramp, ramp // 2, 255 - ramp], axis=-1)
    Image.fromarray(colours).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "colour.png")
    assert Image.open(tmp_path / "grey.png").mode == Image.open(tmp_path / "colour.png").mode == "P"
    assert size_and_colour(tmp_path / "grey.png") == ((8, 8), False)
    assert size_and_colour(tmp_path / "colour.png") == ((8, 8), True)


def test_images_four_pixels_high_are_read_as_images_not_as_channels(tmp_path):
    # a file is read as [H, W, C]: a 4-pixel-high RGB strip must not be taken for 4 channels of
    # 3-pixel-wide images, as arrays of that shape would be by the layout guess
    for n in range(6):
        for cls, value in (("a", 30), ("b", 200)):
            save(np.full((4, 9, 3), value + n, np.uint8), tmp_path / "tree" / cls / f"{n}.png")
            save(np.full((4, 9, 3), value + n, np.uint8), tmp_path / "seg" / "images" / f"{cls}{n}.png")
            stripe = (np.arange(9)[None, :] > 4).repeat(4, 0).astype(np.uint8)
            save(stripe, tmp_path / "seg" / "masks" / f"{cls}{n}.png")
    classes = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "tree")))
    assert classes.input_shape == (3, 4, 9)
    pairs = build_data(DataSpec(kind="folders", root=str(tmp_path / "seg")))
    assert pairs.input_shape == (3, 4, 9) and pairs.train.y.shape[-2:] == (4, 9)


def test_binary_masks_saved_at_two_scales_are_refused_not_emptied(tmp_path):
    write_pairs(tmp_path / "a", [square(1), square(255), square(1), square(255)])
    with pytest.raises(DataError, match=r"saved at different scales \('0.png' is 0/1, '1.png' is 0/255\)"):
        folders(tmp_path / "a", binary_masks=True)
    for i in range(4):  # 8-bit 0/255 beside 16-bit 0/65535
        save(np.full((6, 6), 30 * i, np.uint8), tmp_path / "b" / "images" / f"{i}.png")
        save(square(255) if i % 2 else square(255).astype(np.uint16) * 257, tmp_path / "b" / "masks" / f"{i}.png")
    with pytest.raises(DataError, match="'0.png' is 0/65535, '1.png' is 0/255"):
        folders(tmp_path / "b", binary_masks=True)


def jpeg_of_0_1_masks(root):
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 6:22] = 1
    for i in range(4):
        save(np.full((32, 32), 30 * i, np.uint8), root / "images" / f"{i}.png")
        save(mask, root / "masks" / f"{i}.jpg", quality=90)


def test_a_binary_rule_that_empties_every_mask_says_which_rule(tmp_path):
    jpeg_of_0_1_masks(tmp_path)  # 0/1 masks saved as JPEG: the lossy rule (above 127) keeps nothing
    with pytest.warns(UserWarning, match=r"no mask keeps a foreground pixel: foreground is a value above 127.*JPEG"), \
            pytest.raises(DataError, match="with it set, foreground is a value above 0 in 0/1 masks"):
        folders(tmp_path, binary_masks=True)
    for i in range(4):  # 12-bit masks in 16-bit files (0/4095): below half of 65535
        save(np.full((6, 6), 30 * i, np.uint8), tmp_path / "wide" / "images" / f"{i}.png")
        save(square(1).astype(np.uint16) * 4095, tmp_path / "wide" / "masks" / f"{i}.png")
    with pytest.warns(UserWarning, match=r"above 32767, half of 65535 .* largest value is 4095; save the masks as "
                                         r"0/1, or with the foreground at the top of their scale"), \
            pytest.raises(DataError, match="no foreground pixel"):
        folders(tmp_path / "wide", binary_masks=True)


def test_jpeg_masks_of_class_indices_are_refused(tmp_path):
    jpeg_of_0_1_masks(tmp_path)  # their edges gain 2s: a third class
    with pytest.raises(DataError, match="is a JPEG: compression changes label values"):
        folders(tmp_path)
    # 0/255 JPEG masks read without binary_masks: the JPEG is named, not the stray values alone (review 44c)
    for i in range(4):
        save(np.full((6, 6), 30 * i, np.uint8), tmp_path / "wide" / "images" / f"{i}.png")
        save(square(1) * 255, tmp_path / "wide" / "masks" / f"{i}.jpg", quality=70)
    with pytest.raises(DataError, match=r"is a JPEG: .* 0/255 JPEG masks of one foreground class are read with "
                                        r"data.binary_masks=true"):
        folders(tmp_path / "wide")


def palette_mask(path, indices, palette):
    im = Image.fromarray(np.asarray(indices, np.uint8), mode="P")
    im.putpalette(palette)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def test_a_grey_palette_listing_white_first_is_read_as_shown(tmp_path):
    white_first = [255, 255, 255, 0, 0, 0] + [128] * 3 * 254  # index 0 shows white: the object
    object_at_0 = 1 - square(1)  # index 0 on the object, 1 around it
    palette_mask(tmp_path / "m.png", object_at_0, white_first)
    assert (read_mask(tmp_path / "m.png", binary=True) == square(1)).all()  # what a viewer shows
    with pytest.raises(DataError, match=r"grey palette shows the background \(index 0, grey 255\) brighter than a "
                                        r"class \(grey 0\)"):
        read_mask(tmp_path / "m.png")
    three = np.zeros((6, 6), np.uint8)
    three[1:3], three[3:5] = 1, 2
    palette_mask(tmp_path / "three.png", three, [0, 0, 0, 255, 255, 255, 128, 128, 128] + [64] * 3 * 253)
    assert (read_mask(tmp_path / "three.png") == three).all()  # classes in any grey, the background darkest
    black_first = [0, 0, 0, 255, 255, 255] + [128] * 3 * 254  # as DRIVE's and Pillow's: read by index
    palette_mask(tmp_path / "k.png", square(1), black_first)
    assert (read_mask(tmp_path / "k.png") == square(1)).all()
    assert (read_mask(tmp_path / "k.png", binary=True) == square(1)).all()


def test_colour_masks_read_as_class_indices_are_refused(tmp_path):
    two_colours = np.zeros((6, 6, 3), np.uint8)
    two_colours[1:3, 1:3, 0] = 255  # red: one class
    two_colours[3:5, 3:5, 1] = 255  # green: another
    save(two_colours, tmp_path / "c.png")
    with pytest.raises(DataError, match="is in colour .* convert each colour to its class index"):
        read_mask(tmp_path / "c.png")
    save(np.repeat(square(1)[..., None], 3, axis=-1), tmp_path / "grey.png")  # grey stored as RGB: its values
    assert (read_mask(tmp_path / "grey.png") == square(1)).all()


def test_many_classes_and_binary_masks_with_more_classes_are_refused_by_the_config():
    with pytest.raises(ConfigError, match="less than or equal to 255"):
        validate({"task": "segmentation", "data": {"kind": "folders", "root": "x", "num_classes": 300}})
    with pytest.raises(ConfigError, match="data.num_classes must be 2 .* not 3"):
        validate({"task": "segmentation", "data": {"kind": "folders", "root": "x", "binary_masks": True,
                                                   "num_classes": 3}})
    with pytest.raises(ConfigError, match="data.class_names names two classes, not 3"):
        validate({"task": "segmentation", "data": {"kind": "folders", "root": "x", "binary_masks": True,
                                                   "class_names": ["a", "b", "c"]}})


def test_images_in_subfolders_are_refused_for_training_and_said_by_predict(tmp_path):
    write_pairs(tmp_path, [square(1)] * 4)
    save(np.zeros((6, 6), np.uint8), tmp_path / "images" / "more" / "9.png")
    with pytest.raises(DataError, match=r"more' holds 1 image file\(s\) \('9.png'\.\.\.\), but image and mask pairs"):
        folders(tmp_path)
    with pytest.warns(UserWarning, match="subfolder\\(s\\) of .* hold images that are not read \\(more\\)"):
        assert len(read_inputs([str(tmp_path / "images")], channels=1, size=None).names) == 4
    flat = tmp_path / "flat"  # masks inside the images folder, as with data.images '.': not a subfolder
    for i in range(4):
        save(np.full((6, 6), 30 * i, np.uint8), flat / f"{i}.png")
        save(square(1), flat / "masks" / f"{i}.png")
    save(square(1), flat / "predictions" / "0_mask.png")  # the data's root may hold other folders
    assert folders(flat, images=".", split_seed=0).num_classes == 2
    assert len(load_mask_boxes(flat, flat / "masks", [6, 6])[3]) == 4  # boxes from masks: the same rule
    with pytest.raises(DataError, match=r"more' holds 1 image file\(s\)"):  # boxes from masks: read alike
        load_mask_boxes(tmp_path / "images", tmp_path / "masks", [6, 6])


def test_files_the_pattern_misses_are_named_not_left_out(tmp_path):
    write_pairs(tmp_path, [square(1)] * 4)
    save(np.zeros((6, 6), np.uint8), tmp_path / "images" / "extra.png")
    with pytest.raises(DataError, match=r"data.pattern '\^\(\\d\+\)' does not match 1 of the 5 image files "
                                        r".*'extra.png'"):
        folders(tmp_path, pattern=r"^(\d+)")
    with pytest.raises(DataError, match="does not match 5 of the 5"):
        folders(tmp_path, pattern=r"^img(\d+)")


def test_a_class_found_only_in_val_or_test_is_refused(tmp_path):
    write_pairs(tmp_path, [square(1), square(1), square(2), square(1)])
    with pytest.raises(DataError, match=r"class\(es\) \[2\] have pixels in the val or test masks .* but none in "
                                        "the training masks"):
        folders(tmp_path, split_seed=0)


def test_unpaired_names_suggest_a_pattern_and_unread_mask_formats_are_named(tmp_path):
    write_pairs(tmp_path, [square(1)] * 3)
    for i in range(3):
        (tmp_path / "masks" / f"{i}.png").rename(tmp_path / "masks" / f"{i}_mask.png")
    (tmp_path / "masks" / "3.webp").write_bytes(b"RIFF")
    # the pattern computed from the names (tried on the files) instead of the general example
    with pytest.raises(DataError, match=r"data.pattern '\^\(\[\^_\.\]\+\)\[_\.\]' pairs every image of the set with "
                                        r"its mask .*\)\. The masks folder also holds \.webp files, which are not read"):
        folders(tmp_path)
    assert folders(tmp_path, pattern=r"^([^_.]+)[_.]").num_classes == 2  # the pattern the message gives


def test_a_damaged_mask_is_named_a_mask_and_a_class_beyond_the_names_names_them(tmp_path):
    write_pairs(tmp_path / "a", [square(1)] * 4)
    (tmp_path / "a" / "masks" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="cannot read mask .*2.png"):
        folders(tmp_path / "a")
    write_pairs(tmp_path / "b", [square(1), square(2), square(2), square(1)])
    with pytest.raises(DataError, match=r"masks hold class 2 but there are 2 classes \(data.class_names names 2\)"):
        folders(tmp_path / "b", class_names=["background", "lesion"])


def test_val_masks_without_foreground_are_warned_of(tmp_path):
    for split, masks in (("train", [square(1)] * 2), ("val", [np.zeros((6, 6))] * 2), ("test", [square(1)] * 2)):
        write_pairs(tmp_path / split, masks)
    with pytest.warns(TrainingAdvice, match="the val masks hold no foreground pixel: val Dice and IoU are 0 in an epoch "
                                         "whose models mark any foreground and n/a in one whose models mark none"):
        folders(tmp_path)
    from peerdistill.segmentation_metrics import SegmentationMeter

    clean = torch.zeros(2, 2, 6, 6)
    clean[:, 0] = 1  # every pixel background
    stray = clean.clone()
    stray[0, :, 0, 0] = torch.tensor([0.0, 1.0])  # one pixel marked as lesion
    scores = []
    for probs in (clean, stray):
        meter = SegmentationMeter(["background", "lesion"])
        meter.update(probs, torch.zeros(2, 6, 6, dtype=torch.long))
        scores.append(meter.compute())
    assert math.isnan(scores[0]["dice"]) and scores[1]["dice"] == 0.0  # as the warning says
    assert scores[0]["pixel_accuracy"] == 1.0 > scores[1]["pixel_accuracy"]  # the monitor it advises ranks them right
    ignored = SegmentationMeter(["background", "lesion"])
    ignored.update(clean, torch.full((2, 6, 6), 255, dtype=torch.long))  # every pixel ignored: nothing to score
    assert math.isnan(ignored.compute()["pixel_accuracy"])


def test_training_advice_and_data_notes_are_not_said_again_when_a_run_is_scored(tmp_path, capsys):
    """Review 50c: eval of a run advised to set train.monitor, as training had (nothing trains
    there); review 49h: what reading the data left out was said again by every eval, report and
    export of the run's own data. Other data still gets its notes."""
    from peerdistill.cli import main
    from peerdistill.errors import DataNote
    from peerdistill.runs import read_for_scoring

    for split, masks in (("train", [square(1)] * 4), ("val", [np.zeros((6, 6))] * 2), ("test", [square(1)] * 2)):
        write_pairs(tmp_path / "d" / split, masks)
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "d" / "train" / "images" / "x.webp", format="PNG")
    run = ["task=segmentation", "teacher=null", "students=[{arch: unet, args: {width: 4, depth: 1}}]",
           "distill.preset=independent", "data.kind=folders", f"data.root={tmp_path / 'd'}", "train.epochs=1",
           f"out_dir={tmp_path / 'runs'}", "name=r", "--quiet"]
    assert main(["train", *run]) == 0
    said = capsys.readouterr().err
    assert "the val masks hold no foreground pixel" in said and said.count("have a suffix not read here") == 1
    assert main(["eval", str(tmp_path / "runs" / "r")]) == 0
    said = capsys.readouterr().err
    assert "the val masks hold no foreground pixel" not in said and "suffix not read here" not in said
    # what reading the data left out is kept in run.json and on the page, not said again (review 50j)
    import json

    notes = json.loads((tmp_path / "runs" / "r" / "run.json").read_text())["data_notes"]
    assert len(notes) == 1 and "have a suffix not read here (.webp" in notes[0]
    assert main(["report", str(tmp_path / "runs" / "r")]) == 0
    page = (tmp_path / "runs" / "r" / "report.html").read_text(encoding="utf-8")
    assert "Warnings when training read its data" in page and "suffix not read here" in page
    assert "suffix not read here" not in capsys.readouterr().err
    for own, said in ((True, []), (False, ["2 entries have no image: left out"])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with read_for_scoring(own=own):
                warnings.warn(DataNote("2 entries have no image: left out"))
        assert [str(w.message) for w in caught] == said


def test_a_foreground_class_the_val_masks_lack_is_warned_of_by_name(tmp_path):
    """Review 49e: with several foreground classes, val Dice is a mean over the classes scored,
    so a class val lacks counts only in an epoch marking a stray pixel of it; said, with a class
    val holds to monitor instead. Val holding every class: nothing said."""
    both = square(1)
    both[4, 4] = 2
    for split, masks in (("train", [both] * 2), ("val", [square(1)] * 2), ("test", [both] * 2)):
        write_pairs(tmp_path / "lacking" / split, masks)
        write_pairs(tmp_path / "whole" / split, [both] * 2)
    names = ["background", "polyp", "disc"]
    with pytest.warns(TrainingAdvice, match=r"the val masks hold no pixel of class\(es\) 'disc' \(2\): val Dice and IoU, "
                                         r"means over the classes an epoch is scored on, count them only in an epoch "
                                         r".*train.monitor=ensemble/dice_polyp\)"):
        folders(tmp_path / "lacking", class_names=names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        folders(tmp_path / "whole", class_names=names)


@pytest.mark.parametrize("missing", [1, 2])
def test_a_foreground_class_missing_from_the_training_masks_is_refused_whichever_it_is(tmp_path, missing):
    """Given split folders: the training masks hold the other foreground class only, val and test
    both; class 1 is refused as class 2 is."""
    kept = 3 - missing
    both = square(kept)
    both[4, 4] = missing
    for split, masks in (("train", [square(kept)] * 2), ("val", [both]), ("test", [both])):
        write_pairs(tmp_path / split, masks)
    with pytest.raises(DataError, match=rf"class\(es\) \[{missing}\] have pixels in the val or test masks"):
        folders(tmp_path)


def test_a_16_bit_image_is_resized_as_its_8_bit_twin_and_read_in_colour_as_three_channels(tmp_path):
    """The same picture saved as 8-bit v and 16-bit v * 257 reads alike when resized (both
    bilinear: within one 8-bit step), and the 16-bit grey file read for a colour model is its
    value / 65535 in three equal channels, as an 8-bit grey file is."""
    picture = np.random.default_rng(0).integers(0, 256, (4, 4)).astype(np.uint8)
    save(picture, tmp_path / "eight.png")
    Image.fromarray(picture.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    eight = read_image(tmp_path / "eight.png", (7, 7), grey=True)
    sixteen = read_image(tmp_path / "sixteen.png", (7, 7), grey=True)
    assert np.abs(eight - sixteen).max() <= 1 / 255 + 1e-6
    Image.fromarray(np.full((4, 4), 4000, np.uint16)).save(tmp_path / "flat.png")
    colour = read_image(tmp_path / "flat.png")
    assert colour.shape == (4, 4, 3) and np.allclose(colour, 4000 / 65535)


def test_the_binary_mask_rule_at_its_boundaries():
    """Masks whose largest value is 50 or less read any value above 0 as foreground; above 50,
    a value above 127 (so 128 is foreground and 127 not)."""
    from peerdistill.data.image_io import MaskValues, binarized

    def read(rows):
        return [b.tolist() for b in binarized([MaskValues(np.array(rows), False)] * 2)][0]

    assert read([[0, 127, 128, 255]]) == [[0, 0, 1, 1]]
    assert read([[0, 50]]) == [[0, 1]]
    with pytest.warns(UserWarning, match="no mask keeps a foreground pixel"):
        assert read([[0, 51]]) == [[0, 0]]


def test_segmentation_class_names_beyond_the_masks_are_refused_to_a_new_run(tmp_path):
    """Review 49e: docs/data.md said one name too many is refused when a run starts; segmentation
    folders trained a 4-class model on 0/1/2 masks. data.num_classes declares absent classes."""
    from peerdistill.data.splits import check_names_fit_labels

    both = square(1)
    both[4, 4] = 2
    for split in ("train", "val", "test"):
        write_pairs(tmp_path / split, [both] * 2)
    names = ["background", "polyp", "disc", "extra"]
    data = folders(tmp_path, class_names=names)
    with pytest.raises(DataError, match=r"data.class_names names 4 classes .* but the masks hold 3 \(0..2\): the models "
                                        r"would learn classes \(extra\) no mask shows"):
        check_names_fit_labels(data)
    check_names_fit_labels(folders(tmp_path, class_names=names, num_classes=4))  # declared absent: trained as asked
    check_names_fit_labels(folders(tmp_path, class_names=names[:3]))
