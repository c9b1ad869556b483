"""Detection data: boxes from masks, the COCO / Kvasir-style / mask loaders and their errors,
box-aware augmentation checked against the moved pixels, the synthetic default."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from peerdistill.data.detection import (boxes_from_mask, detection_splits, load_box_json, load_coco,
                                        load_mask_boxes, pad_targets, synthetic_boxes)
from peerdistill.errors import ConfigError, DataError, DataNote, PeerdistillWarning, TrainingAdvice
from peerdistill.tasks.box_augment import augment_boxes, box_transforms, warp_boxes


def write_png(path, width, height, colour=(200, 30, 60)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), colour, np.uint8)).save(path)


def bright_box(image: torch.Tensor, level: float = 0.5) -> list[int]:
    """Bounding box (x1, y1, x2 exclusive, y2 exclusive) of the pixels above ``level``."""
    rows, cols = np.nonzero(image.numpy() > level)
    return [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]


# ---- boxes from masks, padding ---------------------------------------------------------------

def test_boxes_from_mask_components_diagonals_and_empty():
    mask = np.zeros((12, 16), np.uint8)
    mask[1:4, 2:6] = 1                 # rectangle: x 2..5, y 1..3
    mask[8:11, 12:15] = 7              # any non-zero value is foreground
    mask[5, 8] = mask[6, 9] = mask[7, 10] = 1  # diagonal chain: one component with 8-connectivity
    boxes = boxes_from_mask(mask)
    assert boxes.tolist() == [[2, 1, 6, 4], [8, 5, 11, 8], [12, 8, 15, 11]]
    assert boxes_from_mask(mask, min_area=4).tolist() == [[2, 1, 6, 4], [12, 8, 15, 11]]
    assert boxes_from_mask(mask.astype(bool)).shape == (3, 4)
    empty = boxes_from_mask(np.zeros((5, 5), bool))
    assert empty.shape == (0, 4)


def test_pad_targets_pads_with_label_minus_one():
    y = pad_targets([np.array([[1, 0, 0, 4, 4], [0, 1, 1, 3, 3]]), np.zeros((0, 5)), torch.tensor([[2., 5, 5, 9, 9]])])
    assert y.shape == (3, 2, 5) and y.dtype == torch.float32
    assert y[1].tolist() == [[-1, 0, 0, 0, 0]] * 2
    assert y[2, 1].tolist() == [-1, 0, 0, 0, 0] and y[2, 0, 0] == 2
    assert pad_targets([np.zeros((0, 5))]).shape == (1, 1, 5)
    with pytest.raises(DataError, match=r"expected \[n, 5\]"):
        pad_targets([np.zeros((2, 4))])


# ---- COCO ------------------------------------------------------------------------------------

def coco_files(tmp_path, **changes):
    write_png(tmp_path / "img" / "a.png", 40, 20, (250, 0, 0))
    write_png(tmp_path / "img" / "b.png", 10, 10, (0, 0, 250))
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 40},  # JSON size twice the file's
                   {"id": 2, "file_name": "b.png", "width": 10, "height": 10}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 7, "bbox": [8, 4, 40, 20]},
                        {"id": 11, "image_id": 1, "category_id": 3, "bbox": [0, 0, 80, 40]},
                        {"id": 12, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2], "iscrowd": 1}],
        "categories": [{"id": 7, "name": "polyp"}, {"id": 3, "name": "adenoma"}],
    }
    data.update(changes)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return tmp_path / "img", path


def test_load_coco_maps_categories_and_rescales_boxes(tmp_path):
    images, ann = coco_files(tmp_path)
    x, y, names, ids, info = load_coco(images, ann, (10, 20))
    # iscrowd written as text (or a boolean) reads as its number: "0" is an object, not a crowd
    text = json.loads(ann.read_text())
    for entry, flag in zip(text["annotations"], ("0", False, "1")):
        entry["iscrowd"] = flag
    ann.with_name("text.json").write_text(json.dumps(text))
    assert load_coco(images, ann.with_name("text.json"), (10, 20))[1].tolist() == y.tolist()
    assert x.shape == (2, 3, 10, 20) and x.dtype == torch.float32
    assert x[0, 0].mean() == pytest.approx(250 / 255, abs=1e-3) and x[1, 2].mean() == pytest.approx(250 / 255, abs=1e-3)
    assert names == ["adenoma", "polyp"] and ids == ["a.png", "b.png"] and info == {}
    # from 80x40 to 20x10: factor 1/4 on both axes; category 7 -> label 1, 3 -> 0; the crowd box of
    # category 3 is kept as a crowd region, label -2 - 0
    assert y.shape == (2, 3, 5)
    assert y[0].tolist() == [[1, 2, 1, 12, 6], [0, 0, 0, 20, 10], [-2, 0.25, 0.25, 0.75, 0.75]]
    assert y[1].tolist() == [[-1, 0, 0, 0, 0]] * 3  # an image without annotations keeps no boxes


@pytest.mark.parametrize("change, message", [
    ({"annotations": [{"image_id": 7, "category_id": 7, "bbox": [0, 0, 5, 5]}]}, "unknown image id 7 in ann.json"),
    ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [60, 0, 30, 10]}]}, "outside its 80x40 image"),
    ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [5, 5, 0, 10]}]}, "non-positive width or height"),
    ({"annotations": [{"image_id": 1, "category_id": 5, "bbox": [5, 5, 5, 5]}]}, "unknown category id 5"),
    ({"images": [], "annotations": []}, "lists no images"),
    ({"images": [{"id": 1, "file_name": "gone.png", "width": 8, "height": 8}],
      "annotations": [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5]}]},
     r"1 of the 1 image files listed in ann.json are missing from .* \('gone.png'\): check data.images"),
    ({"annotations": []}, "ann.json holds no box to learn from"),
    ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5], "iscrowd": 1}]}, "all crowd regions"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 40},
                 {"id": 5, "file_name": "a.png", "width": 80, "height": 40}]},
     r"'a.png' is listed twice in 'images' of ann.json \(ids 1 and 5\)"),
    ({"annotations": [{"id": 4, "image_id": 1, "category_id": 7}]}, "annotation 4 of image 1 .*'bbox' is None"),
    ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 2, 3]}]}, r"expected \[x, y, width, height\]"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8},
                 {"id": 1, "file_name": "b.png", "width": 8, "height": 8}]}, "image id 1 appears twice"),
    ({"categories": [{"name": "polyp"}]}, "an entry of 'categories' in ann.json lacks 'id'"),
    ({"annotations": ["oops"]}, "an entry of 'annotations' .* is not an object"),
    ({"categories": [{"id": 7, "name": "polyp"}, {"id": 3, "name": "adenoma"}, {"id": 7, "name": "dup"}]},
     r"category id 7 appears twice in 'categories' of ann.json \('polyp' and 'dup'\)"),
    ({"annotations": [{"image_id": [1], "category_id": 7, "bbox": [0, 0, 5, 5]}]},
     r"an id in 'annotations \(image_id, category_id\)' of ann.json is \[1\]: ids must be numbers or strings"),
    ({"categories": [{"id": [7], "name": "polyp"}]}, r"an id in 'categories' of ann.json is \[7\]"),
    ({"images": [{"id": {"a": 1}, "file_name": "a.png", "width": 8, "height": 8}]}, r"an id in 'images' of ann.json"),
    ({"categories": [{"id": 7, "name": "polyp"}, {"id": "3", "name": "adenoma"}]},
     r"the ids of 'categories' in ann.json mix numbers and strings \(\[7, '3'\]\)"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": float("nan"), "height": 40}]},
     r"image 1 in ann.json lacks a numeric width and height .* it gives nanx40"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 80, "height": float("inf")}]},
     r"image 1 in ann.json lacks a numeric width and height .* it gives 80xinf"),
    ({"annotations": [{"id": 4, "image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5], "iscrowd": "yes"}]},
     r"annotation 4 of image 1 .*'iscrowd' is 'yes'; expected 0 \(an object\) or 1 \(a crowd region\)"),
    ({"annotations": [{"image_id": 1, "category_id": 7, "bbox": [10 ** 400, 0, 5, 5]}]},
     "holds a value that is not a (finite )?number"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 10 ** 400, "height": 40}]},
     "image 1 in ann.json lacks a numeric width and height"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 40},
                 {"id": 2, "file_name": "./a.png", "width": 80, "height": 40}]},
     r"'./a.png' is listed twice in 'images' of ann.json \(ids 1 and 2, the first as 'a.png'\)"),
    ({"annotations": [{"id": 4, "image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5]},
                      {"id": 4, "image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5]}]},
     "annotation id 4 appears twice in 'annotations' of ann.json"),
    ({"annotations": [{"id": 4, "image_id": 1, "category_id": 7, "segmentation": {"counts": "x", "size": [4, 4]}}]},
     r"'bbox' is None; expected \[x, y, width, height\] in pixels: add it, or set data.bad_boxes=skip"),
])
def test_load_coco_errors(tmp_path, change, message):
    images, ann = coco_files(tmp_path, **change)
    with pytest.raises(DataError, match=message):
        load_coco(images, ann, 16)


def test_absolute_coco_names_of_another_machine_are_named_as_such(tmp_path):
    images, ann = coco_files(tmp_path)
    data = json.loads(ann.read_text())
    data["images"][0]["file_name"] = "C:\\Users\\annotator\\a.png"
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"\(absolute names, perhaps of the machine the file was made on: give names "
                                        r"relative to data.images\)"):
        load_coco(images, ann, 16)


def test_coco_files_missing_or_left_out_are_counted(tmp_path):
    images, ann = coco_files(tmp_path)
    entries = [{"id": 1, "file_name": "a.png", "width": 80, "height": 40}] + [
        {"id": k, "file_name": f"sub/gone{k}.png", "width": 8, "height": 8} for k in range(2, 7)]
    data = {**json.loads(ann.read_text()), "images": entries}
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"5 of the 6 image files listed in ann.json are missing from .* "
                                        r"\('sub/gone2.png', 'sub/gone3.png', 'sub/gone4.png', ...\)"):
        load_coco(images, ann, 16)
    # images beside the listed ones that the file leaves out: counted, named; other folders not looked into
    write_png(images / "sub" / "listed.png", 8, 8, (0, 0, 0))
    for name in ("c.png", "d.jpg", ".hidden.png", "notes.txt"):
        write_png(images / name, 8, 8, (0, 0, 0)) if name.endswith(("png", "jpg")) else (images / name).write_text("x")
    write_png(images / "other" / "e.png", 8, 8, (0, 0, 0))
    ann.write_text(json.dumps({**data, "images": data["images"][:1] + [
        {"id": 2, "file_name": "sub/listed.png", "width": 8, "height": 8}]}))
    with pytest.warns(PeerdistillWarning, match=r"3 image files in .* are not listed in ann.json's 'images' "
                                                r"\('b.png', 'c.png', 'd.jpg'\): left out"):
        *_, ids, info = load_coco(images, ann, 16)
    assert ids == ["a.png", "sub/listed.png"] and info["skipped_without_entry"] == 3


def test_coco_file_names_reaching_out_of_the_images_folder_are_read_and_said(tmp_path):
    images, ann = coco_files(tmp_path)
    data = json.loads(ann.read_text())
    write_png(tmp_path / "elsewhere" / "c.png", 10, 10, (0, 0, 250))
    inside = [{"id": 1, "file_name": str((images / "a.png").absolute()), "width": 80, "height": 40},  # absolute
              {"id": 2, "file_name": "../img/b.png", "width": 10, "height": 10}]  # '..' back inside
    ann.write_text(json.dumps({**data, "images": inside}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)
        assert load_coco(images, ann, 16)[0].shape[0] == 2
    (tmp_path / "linked").symlink_to(images)  # data.images through a link, the names of the real folder
    write_png(images / "d.png", 10, 10, (0, 0, 250))  # unlisted
    with pytest.warns(PeerdistillWarning, match=r"1 image files in .* are not listed in ann.json's 'images' "
                                                r"\('d.png'\)") as said:
        assert load_coco(tmp_path / "linked", ann, 16)[4] == {"skipped_without_entry": 1}
    assert not [w for w in said if "reach out of" in str(w.message)]
    (images / "d.png").unlink()
    outside = inside + [{"id": 3, "file_name": "../elsewhere/c.png", "width": 10, "height": 10}]
    ann.write_text(json.dumps({**data, "images": outside}))
    with pytest.warns(PeerdistillWarning, match=r"1 file_name\(s\) in ann.json reach out of data.images .* "
                                                r"\('../elsewhere/c.png'\): read from there"):
        assert load_coco(images, ann, 16)[0].shape[0] == 3


def test_a_coco_category_no_annotation_uses_is_not_a_class(tmp_path):
    """Roboflow's export lists the supercategory (id 0) that no box uses beside the real one:
    a class no model could learn, so it is left out, and named in the data's info."""
    images, ann = coco_files(tmp_path, categories=[{"id": 0, "name": "polyps", "supercategory": "none"},
                                                   {"id": 3, "name": "adenoma", "supercategory": "polyps"},
                                                   {"id": 7, "name": "polyp", "supercategory": "polyps"},
                                                   {"id": 9, "name": "unused", "supercategory": "polyps"}])
    _, y, names, _, info = load_coco(images, ann, (10, 20))
    assert names == ["adenoma", "polyp"] and info == {"unused_categories": ["polyps", "unused"]}
    assert y[0, :2, 0].tolist() == [1, 0]  # category 7 -> label 1, 3 -> 0, as without the unused ones
    with pytest.raises(DataError, match=r"unknown category id 5 in ann.json: 'categories' lists \[0, 3, 7, 9\]"):
        load_coco(*coco_files(tmp_path, annotations=[{"image_id": 1, "category_id": 5, "bbox": [5, 5, 5, 5]}],
                              categories=[{"id": 0, "name": "polyps"}, {"id": 3, "name": "adenoma"},
                                          {"id": 7, "name": "polyp"}, {"id": 9, "name": "unused"}]), 16)


def test_load_coco_tolerates_one_pixel_and_rejects_bad_files(tmp_path):
    images, ann = coco_files(tmp_path, annotations=[{"image_id": 1, "category_id": 7, "bbox": [-0.5, 0, 81, 40]}])
    _, y, names, _, _ = load_coco(images, ann, (40, 80))
    assert y[0, 0].tolist() == [0, 0, 0, 80, 40]  # clipped to the image
    assert names == ["polyp"]
    with pytest.raises(DataError, match="does not exist"):
        load_coco(images, tmp_path / "nope.json", 16)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read .* as JSON"):
        load_coco(images, tmp_path / "bad.json", 16)


def test_coco_file_names_written_on_windows_are_read(tmp_path):
    images, ann = coco_files(tmp_path)
    (images / "sub").mkdir()
    (images / "a.png").rename(images / "sub" / "a.png")
    data = json.loads(ann.read_text())
    data["images"][0]["file_name"] = "sub\\a.png"
    ann.write_text(json.dumps(data))
    assert load_coco(images, ann, 16)[3] == ["sub/a.png", "b.png"]


def turned_jpeg(path, stored=(60, 30)):
    """A JPEG stored ``stored`` (width, height) whose EXIF orientation 6 shows it turned a quarter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", stored, (200, 30, 60)).save(path, exif=exif)


def test_boxes_annotated_on_a_photo_as_stored_instead_of_as_shown_are_refused(tmp_path):
    turned_jpeg(tmp_path / "img" / "a.jpg")
    anns = [{"image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]}]
    for size, ok in (((60, 30), False), ((30, 60), True)):  # (width, height) in the JSON
        images, ann = coco_files(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "width": size[0], "height": size[1]}],
                                 annotations=anns, categories=[{"id": 1, "name": "polyp"}])
        if ok:
            assert load_coco(images, ann, 16)[0].shape == (1, 3, 16, 16)
        else:
            with pytest.raises(DataError, match=r"gives the size 60x30 of 'a.jpg' as stored, but the file's EXIF "
                                                 r"orientation turns it to 30x60 as shown"):
                load_coco(images, ann, 16)
    (tmp_path / "img" / "a.png").unlink()  # coco_files' own image of that id
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a": {"width": 60, "height": 30, "bbox": [
        {"label": "polyp", "xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9}]}}))
    with pytest.raises(DataError, match="entry 'a' in boxes.json gives the size 60x30"):
        load_box_json(tmp_path / "img", boxes, 16)


def test_a_json_size_with_width_and_height_swapped_is_refused(tmp_path):
    """Rows taken for the width: every box would be rescaled along the wrong axes."""
    anns = [{"image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]}]
    for size, ok in (((24, 16), True), ((16, 24), False), ((48, 32), True)):  # (width, height); a resized original
        images, ann = coco_files(tmp_path, images=[{"id": 1, "file_name": "c.png", "width": size[0], "height": size[1]}],
                                 annotations=anns, categories=[{"id": 1, "name": "polyp"}])
        write_png(tmp_path / "img" / "c.png", 24, 16)  # 24 wide, 16 high
        if ok:
            assert load_coco(images, ann, 16)[0].shape[0] == 1
        else:
            with pytest.raises(DataError, match=r"gives 'c.png' as 16 wide and 24 high, but the file is 24 wide and 16 "
                                                r"high: are width and height swapped"):
                load_coco(images, ann, 16)
    # a box past the swapped width: the swap is named first, whatever data.bad_boxes would do with the box
    images, ann = coco_files(tmp_path, images=[{"id": 1, "file_name": "c.png", "width": 16, "height": 24}],
                             annotations=[{"image_id": 1, "category_id": 1, "bbox": [18, 2, 4, 4]}],
                             categories=[{"id": 1, "name": "polyp"}])
    write_png(tmp_path / "img" / "c.png", 24, 16)
    for policy in ("error", "skip", "clip"):
        with pytest.raises(DataError, match=r"are width and height swapped"):
            load_coco(images, ann, 16, bad_boxes=policy)
    # an image without boxes: no box depends on its size, which is not judged
    images, ann = coco_files(tmp_path, images=[{"id": 1, "file_name": "c.png", "width": 24, "height": 16},
                                               {"id": 2, "file_name": "d.png", "width": 16, "height": 24}],
                             annotations=anns, categories=[{"id": 1, "name": "polyp"}])
    write_png(tmp_path / "img" / "c.png", 24, 16)
    write_png(tmp_path / "img" / "d.png", 24, 16)
    assert load_coco(images, ann, 16)[0].shape[0] == 2


# ---- Kvasir-style per-image JSON ------------------------------------------------------------

def kvasir_files(tmp_path, boxes_a=None):
    write_png(tmp_path / "images" / "a.png", 40, 20)        # a resized copy of a 200x100 original
    write_png(tmp_path / "images" / "c.png", 8, 8)          # no entry in the JSON
    Image.new("RGB", (30, 30), (0, 255, 0)).save(tmp_path / "images" / "d.jpg")
    data = {
        "a": {"height": 100, "width": 200, "bbox": boxes_a or [
            {"label": "polyp", "xmin": 50, "ymin": 10, "xmax": 150, "ymax": 100},
            {"label": "adenoma", "xmin": 0, "ymin": 0, "xmax": 20, "ymax": 30}]},
        "b": {"height": 50, "width": 50, "bbox": [{"label": "polyp", "xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9}]},
        "d": {"height": 300, "width": 300,
              "bbox": [{"label": "polyp", "xmin": 30, "ymin": 60, "xmax": 90, "ymax": 300}]},
    }
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(data))
    return tmp_path / "images", path


def test_load_box_json_rescales_from_the_json_size_and_counts_skips(tmp_path):
    from peerdistill.errors import PeerdistillWarning

    images, boxes = kvasir_files(tmp_path)
    with pytest.warns(PeerdistillWarning) as said:
        x, y, names, ids, info = load_box_json(images, boxes, (10, 20))
    assert ids == ["a", "d"] and names == ["adenoma", "polyp"]
    assert info == {"skipped_without_image": 1, "skipped_without_entry": 1}
    assert [str(w.message) for w in said] == [f"1 entries of boxes.json have no image in '{images}' ('b'): left out",
                                              f"1 images in '{images}' have no entry in boxes.json ('c'): left out"]
    assert x.shape == (2, 3, 10, 20) and x[1, 1].mean() > 0.9  # d.jpg is green
    # a: original 200x100 -> 20x10 (factor 0.1), not from the 40x20 file size
    assert y[0].numpy() == pytest.approx(np.array([[1, 5, 1, 15, 10], [0, 0, 0, 2, 3]]))
    # d: 300x300 -> 20x10
    assert y[1, 0].numpy() == pytest.approx(np.array([1, 2, 2, 6, 10]))
    assert y[1, 1].tolist() == [-1, 0, 0, 0, 0]


def test_a_slip_in_a_box_label_that_makes_a_class_of_its_own_is_said(tmp_path):
    """box JSON has no list of categories: 'Polyp' among 'polyp' boxes, or the number 1, is a class."""
    import shutil
    import warnings

    from peerdistill.errors import PeerdistillWarning

    def said(labels):
        data = {f"i{k}": {"width": 20, "height": 20, "bbox": [{"label": label, "xmin": 1, "ymin": 1, "xmax": 9,
                                                               "ymax": 9}]} for k, label in enumerate(labels)}
        shutil.rmtree(tmp_path / "images", ignore_errors=True)
        (tmp_path / "images").mkdir()
        for key in data:
            write_png(tmp_path / "images" / f"{key}.png", 20, 20)
        (tmp_path / "b.json").write_text(json.dumps(data))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            names = load_box_json(tmp_path / "images", tmp_path / "b.json", 16)[2]
        return names, " | ".join(str(w.message) for w in caught if issubclass(w.category, PeerdistillWarning))

    names, told = said(["polyp"] * 12 + ["lesion"] * 10 + ["Polyp"])
    assert names == ["Polyp", "lesion", "polyp"]
    assert "differ only in case or spaces are different classes: 'Polyp' (1 boxes), 'polyp' (12 boxes)" in told
    assert "classes of b.json with fewer than 3 boxes, too few to be in the training split and in the scored ones " \
           "(their AP is n/a, or from one box): 'Polyp' (1)" in told
    names, told = said(["polyp"] * 12 + [1])
    assert names == ["1", "polyp"] and "labels of b.json mix numbers (1) and text: the classes are the labels as " \
        "text (['1', 'polyp'])" in told
    assert said(["polyp"] * 12 + ["lesion"] * 2)[1] == ""  # a rare class alone: 2 against 12, less than ten times
    assert said(["polyp"] * 5 + ["lesion"] * 5)[1] == ""


def test_load_box_json_errors(tmp_path):
    images, boxes = kvasir_files(tmp_path, [{"label": "polyp", "xmin": 10, "ymin": 10, "xmax": 260, "ymax": 20}])
    with pytest.raises(DataError, match="box 0 of 'a' in boxes.json.* outside its 200x100 image"):
        load_box_json(images, boxes, 16)
    boxes.write_text(json.dumps({"a": {"height": 100, "width": 200, "bbox": [
        {"name": "polyp", "xmin": 10, "ymin": 10, "xmax": 20, "ymax": 20}]}}))
    with pytest.raises(DataError, match="box 0 of 'a' in boxes.json has no 'label' key.*every box needs its class"):
        load_box_json(images, boxes, 16)
    assert load_box_json(images, boxes, 16, label_key="name")[2] == ["polyp"]
    boxes.write_text(json.dumps({"a": {"height": 100, "width": 200}}))
    with pytest.raises(DataError, match=r"entry 'a' .* \(an image without objects has bbox: \[\]\)"):
        load_box_json(images, boxes, 16)
    boxes.write_text(json.dumps({"a": {"height": 100, "width": 200, "bbox": [[10, 10, 20, 20]]}}))
    with pytest.raises(DataError, match="box 0 of 'a' .* expected"):
        load_box_json(images, boxes, 16)
    boxes.write_text(json.dumps({"a": {"height": 100, "width": 200, "bbox": [
        {"label": "polyp", "xmin": None, "ymin": 10, "xmax": 20, "ymax": 20}]}}))
    with pytest.raises(DataError, match=r"box 0 of 'a' in boxes.json.*holds a value that is not a number"):
        load_box_json(images, boxes, 16)
    for odd in ("abc", [1], float("nan")):  # clip cannot cut a box of no numbers to its image: left out, named
        boxes.write_text(json.dumps({"a": {"height": 100, "width": 200, "bbox": [
            {"label": "polyp", "xmin": odd, "ymin": 10, "xmax": 20, "ymax": 20},
            {"label": "polyp", "xmin": 10, "ymin": 10, "xmax": 20, "ymax": 20}]}}))
        with pytest.warns(PeerdistillWarning, match=r"1 box\(es\) in boxes.json left out \(data.bad_boxes=clip\): "
                                                    r"box 0 of 'a' .*holds a value that is not a (finite )?number"):
            kept = load_box_json(images, boxes, 16, bad_boxes="clip")[1]
        assert (kept[0, :, 0] >= 0).sum() == 1
    boxes.write_text(json.dumps({"a": {"height": float("nan"), "width": 200, "bbox": []}}))
    with pytest.raises(DataError, match="lacks a numeric width and height"):
        load_box_json(images, boxes, 16)
    boxes.write_text(json.dumps({"a": {"height": 100, "width": 200, "bbox": []}}))  # an image without objects ...
    with pytest.raises(DataError, match=r"boxes.json holds no box to learn from \(every entry's bbox list is empty\)"):
        load_box_json(images, boxes, 16)  # ... but no box at all: no class to learn
    boxes.write_text(json.dumps({"a": {"height": 100, "width": 200, "bbox": [
        {"label": "polyp", "xmin": 10, "ymin": 10, "xmax": 20, "ymax": 20}]}, "d": {"height": 9, "width": 9, "bbox": []}}))
    assert load_box_json(images, boxes, 16)[1][1, 0, 0] == -1  # 'd': no objects
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(DataError, match="holds no entries"):
        load_box_json(images, tmp_path / "empty.json", 16)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DataError, match="no entry of boxes.json has an image"):
        load_box_json(tmp_path / "elsewhere", boxes, 16)
    Image.new("RGB", (20, 10)).save(images / "a.bmp")  # any image suffix is read; two files of one id are not
    with pytest.raises(DataError, match="'a.bmp' and 'a.png' in .* share the id 'a': keep one file per id"):
        load_box_json(images, boxes, 16)
    (images / "a.png").unlink()
    assert load_box_json(images, boxes, 16)[3] == ["a", "d"]


# ---- boxes from mask folders ----------------------------------------------------------------

def test_load_mask_boxes_from_noisy_rgb_masks(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("p1", "p2"):
        write_png(tmp_path / "images" / f"{name}.png", 40, 40)
    (tmp_path / "masks").mkdir()
    mask = rng.integers(0, 100, (40, 40, 3)).astype(np.uint8)  # noise below the threshold
    mask[4:12, 8:24] = 255
    mask[20:36, 30:38] = 230
    mask[38, 2] = 255                                          # a speck: under min_area once halved
    Image.fromarray(mask).save(tmp_path / "masks" / "p1.png")
    jpeg = np.zeros((40, 40, 3), np.uint8)
    jpeg[10:30, 10:20] = 255
    Image.fromarray(jpeg).save(tmp_path / "masks" / "p2.jpg", quality=80)
    x, y, names, ids = load_mask_boxes(tmp_path / "images", tmp_path / "masks", (20, 20), min_area=2)
    assert names == ["object"] and ids == ["p1", "p2"] and x.shape == (2, 3, 20, 20)
    assert y[0].tolist() == [[0, 4, 2, 12, 6], [0, 15, 10, 19, 18]]  # halved
    assert y[1, 0].numpy() == pytest.approx(np.array([0, 5, 5, 10, 15]), abs=1)
    assert y[1, 1].tolist() == [-1, 0, 0, 0, 0]
    with_speck = load_mask_boxes(tmp_path / "images", tmp_path / "masks", (40, 40), min_area=1)[1]
    assert [2, 38, 3, 39] in with_speck[0, :, 1:].tolist()


def test_load_mask_boxes_unmatched_names_are_listed(tmp_path):
    write_png(tmp_path / "images" / "case1.png", 8, 8)
    write_png(tmp_path / "images" / "case2.png", 8, 8)
    write_png(tmp_path / "masks" / "case1.png", 8, 8)
    write_png(tmp_path / "masks" / "case3_mask.png", 8, 8)
    with pytest.raises(DataError, match=r"1 image\(s\) without a mask \('case2.png'\); 1 mask\(s\) without an image "
                                        r"\('case3_mask.png'\)"):
        load_mask_boxes(tmp_path / "images", tmp_path / "masks", 8)


# ---- splits ----------------------------------------------------------------------------------

def test_detection_splits_are_disjoint_and_seeded():
    x, y, names = synthetic_boxes(20, image_size=16, seed=3)
    parts, idx = detection_splits(x, y, names, val_fraction=0.2, test_fraction=0.25, seed=1)
    assert [len(p) for p in parts] == [11, 4, 5]
    assert sorted(idx["train"] + idx["val"] + idx["test"]) == list(range(20))
    assert torch.equal(parts[1].y, y[idx["val"]]) and torch.equal(parts[2].x, x[idx["test"]])
    assert detection_splits(x, y, names, 0.2, 0.25, seed=1)[1] == idx
    assert detection_splits(x, y, names, 0.2, 0.25, seed=2)[1] != idx
    with pytest.raises(DataError, match="too few"):
        detection_splits(x[:2], y[:2], names, 0.5, 0.5, seed=0)


@pytest.mark.parametrize("kind", ["box_json", "mask_boxes", "coco"])
@pytest.mark.parametrize("folds", [None, 3])
def test_a_detection_set_is_cut_before_its_files_are_read_and_read_in_split_order(tmp_path, monkeypatch, kind, folds):
    """Review 53g / 54b: a detection set was decoded whole, then its rows put in split order where they lay; the
    cut needs only the number of images, so the files are read straight into split order, the splits views of
    the one array read, as an in-memory cut (detection_splits) of the set read in its own order gives them."""
    from peerdistill.config import DataSpec
    from peerdistill.data import build_data, detection as detection_module

    stems = [f"im{k:02d}" for k in range(11)]
    boxes, images, annotations = {}, [], []
    for k, stem in enumerate(stems):  # each image its own colour: rows told apart
        write_png(tmp_path / "images" / f"{stem}.png", 16, 16, colour=(10 * k, 100, 250 - 10 * k))
        mask = np.zeros((16, 16), np.uint8)
        mask[2:2 + k % 5 + 3, 3:9] = 255
        (tmp_path / "masks").mkdir(exist_ok=True)
        Image.fromarray(mask).save(tmp_path / "masks" / f"{stem}.png")
        boxes[stem] = {"height": 16, "width": 16, "bbox": [{"label": "polyp", "xmin": 3, "ymin": 2, "xmax": 9,
                                                             "ymax": 5 + k % 5}]}
        images.append({"id": k + 1, "file_name": f"{stem}.png", "width": 16, "height": 16})
        annotations.append({"id": k + 1, "image_id": k + 1, "category_id": 1, "bbox": [3, 2, 6, 3 + k % 5]})
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    (tmp_path / "coco.json").write_text(json.dumps({"images": images[::-1], "annotations": annotations,
                                                   "categories": [{"id": 1, "name": "polyp"}]}))
    read = []
    real_read = detection_module._read
    monkeypatch.setattr(detection_module, "_read", lambda files, *a: read.append([f.stem for f in files])
                        or real_read(files, *a))
    given = {"box_json": {"annotations": "boxes.json"}, "mask_boxes": {"masks": "masks"},
             "coco": {"annotations": "coco.json"}}[kind]
    cut = {"folds": folds, "fold": 1, "test_fraction": None} if folds else {}
    data = build_data(DataSpec(kind=kind, root=str(tmp_path), images="images", image_size=[16, 16], split_seed=4,
                               val_fraction=0.2, **given, **cut))
    listed = stems[::-1] if kind == "coco" else stems  # (a COCO file's images in its own order)
    indices = detection_module.detection_cut(11, 0.2, 0.2, 4, folds, 1)
    assert read == [[listed[i] for k in ("train", "val", "test") for i in indices[k]]]  # one read, in split order
    split = data.info["split"]
    assert [split[k] for k in ("train", "val", "test")] == [[f"{listed[i]}.png" if kind == "coco" else listed[i]
                                                            for i in indices[k]] for k in ("train", "val", "test")]
    parts = (data.train, data.val, data.test)
    assert all(a.x.data_ptr() + a.x.nbytes == b.x.data_ptr() for a, b in zip(parts, parts[1:]))  # views of one
    # the same images and boxes as a set read in its own order and cut in memory
    loader = {"box_json": lambda: detection_module.load_box_json(tmp_path / "images", tmp_path / "boxes.json", 16),
              "mask_boxes": lambda: detection_module.load_mask_boxes(tmp_path / "images", tmp_path / "masks", 16),
              "coco": lambda: detection_module.load_coco(tmp_path / "images", tmp_path / "coco.json", 16)}[kind]
    x, y, names = loader()[:3]
    copied, same = detection_module.detection_splits(x, y, names, 0.2, 0.2, 4, folds, 1)
    assert same == indices
    for a, b in zip(copied, parts):
        standardised = (a.x - torch.tensor(data.stats["mean"])[:, None, None]) / torch.tensor(data.stats["std"])[:, None, None]
        assert torch.allclose(standardised, b.x, atol=1e-6) and torch.equal(a.y[:, :b.y.shape[1]], b.y)


def test_a_detection_set_too_small_to_split_is_refused_before_its_files_are_read(tmp_path):
    """The cut needs only the number of images: said before decoding any (a broken file not read first)."""
    from peerdistill.config import DataSpec
    from peerdistill.data import build_data

    write_png(tmp_path / "images" / "a.png", 16, 16)
    (tmp_path / "images" / "b.png").write_bytes(b"not a png")  # (no box: its size is not checked on listing)
    (tmp_path / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 16},
                   {"id": 2, "file_name": "b.png", "width": 16, "height": 16}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 5, 5]}],
        "categories": [{"id": 1, "name": "polyp"}]}))
    spec = DataSpec(kind="coco", root=str(tmp_path), images="images", annotations="coco.json",
                    image_size=[16, 16], val_fraction=0.2, test_fraction=0.2)
    with pytest.raises(DataError, match="too few to split"):
        build_data(spec)


# ---- augmentation ----------------------------------------------------------------------------

def rectangle_batch(b=16, h=40, w=50, box=(5, 7, 17, 20)):
    x = torch.zeros(b, 1, h, w)
    x1, y1, x2, y2 = box
    x[:, :, y1:y2, x1:x2] = 1.0
    targets = torch.tensor([[1.0, *box], [-1, 0, 0, 0, 0]]).repeat(b, 1, 1)
    return x, targets


@pytest.mark.parametrize("name", ["hflip", "vflip", "scale", "crop"])
def test_each_augmentation_moves_the_box_with_the_pixels(name):
    x, targets = rectangle_batch()
    xo, to = augment_boxes(x, targets, (name,), torch.Generator().manual_seed(0))
    changed = [not torch.equal(xo[i], x[i]) for i in range(len(x))]
    assert 0 < sum(changed) < len(x)  # probability 0.5 per sample
    for i in range(len(x)):
        assert to[i, 0, 0] == 1
        assert to[i, 0, 1:].numpy() == pytest.approx(np.array(bright_box(xo[i, 0])), abs=1.0)
        assert to[i, 1].tolist() == [-1, 0, 0, 0, 0]  # padding stays padding
        if not changed[i]:
            assert to[i].tolist() == targets[i].tolist()
    moved = to[torch.tensor(changed), 0, 1:]
    inside = (moved[:, :2] > 0).all(1) & (moved[:, 2] < 50) & (moved[:, 3] < 40)  # not clipped
    growth = (moved[inside, 2:] - moved[inside, :2]) / torch.tensor([12.0, 13.0])  # sides grow alike in x and y
    assert len(growth) >= 2
    if name in ("scale", "crop"):
        assert growth[:, 0].numpy() == pytest.approx(growth[:, 1].numpy(), abs=0.01)
        low, high = (0.8, 1.2) if name == "scale" else (1.0, 1 / 0.7)
        assert low - 0.01 <= float(growth.min()) and float(growth.max()) <= high + 0.01
    flipped = moved
    if name == "hflip":
        assert (flipped == torch.tensor([33.0, 7, 45, 20])).all()  # exact: x -> 50 - x
    if name == "vflip":
        assert (flipped == torch.tensor([5.0, 20, 17, 33])).all()


def test_the_zoom_range_of_the_config_moves_boxes_within_it():
    x, targets = rectangle_batch(b=40, box=(20, 14, 32, 26))
    _, out = augment_boxes(x, targets, ("scale",), torch.Generator().manual_seed(1), scale_range=0.05)
    growth = (out[:, 0, 3] - out[:, 0, 1]) / 12.0
    assert float(growth.min()) >= 0.95 - 1e-4 and float(growth.max()) <= 1.05 + 1e-4
    assert float(growth.max()) > 1.03 and float(growth.min()) < 0.97  # the range is used


def test_augmentations_compose_and_repeat_with_the_seed():
    x, targets = rectangle_batch(b=12, box=(20, 14, 32, 26))
    names = ("hflip", "vflip", "scale", "crop")
    a = augment_boxes(x, targets, names, torch.Generator().manual_seed(5))
    b = augment_boxes(x, targets, names, torch.Generator().manual_seed(5))
    c = augment_boxes(x, targets, names, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    torch.manual_seed(0)  # the global RNG plays no part
    d = augment_boxes(x, targets, names, torch.Generator().manual_seed(5))
    assert torch.equal(a[1], d[1])
    for i in range(len(x)):
        assert a[1][i, 0, 1:].numpy() == pytest.approx(np.array(bright_box(a[0][i, 0])), abs=1.5)


def test_boxes_pushed_out_are_dropped():
    h = w = 40
    x = torch.zeros(1, 1, h, w)
    targets = torch.tensor([[[0.0, 0, 10, 4, 20],     # zoom 1.2 about the centre: x -> [-4, 0.8]: gone
                             [1.0, 1, 10, 9, 20],     # -> [-2.8, 6.8], clipped to [0, 6.8]: 71% left, kept
                             [-1.0, 5, 5, 20, 20]]])  # padding stays padding, whatever its coordinates
    zoom = torch.tensor([[[1.2, 0, -4], [0, 1.2, -4], [0, 0, 1]]])
    _, out = warp_boxes(x, targets, zoom)
    assert out[0, 0].tolist() == [-1, 0, 0, 0, 0] and out[0, 2].tolist() == [-1, 0, 0, 0, 0]
    assert out[0, 1].numpy() == pytest.approx(np.array([1, 0, 8, 6.8, 20]), abs=1e-4)
    # zoom 0.8: a 2 px wide box, fully in view, becomes 1.6 px wide: dropped; a 3 px one (2.4) is kept
    targets = torch.tensor([[[0.0, 20, 10, 22, 30], [0.0, 10, 10, 13, 30]]])
    _, out = warp_boxes(x, targets, torch.tensor([[[0.8, 0, 4], [0, 0.8, 4], [0, 0, 1]]]))
    assert out[0, 0].tolist() == [-1, 0, 0, 0, 0]
    assert out[0, 1].numpy() == pytest.approx(np.array([0, 12, 12, 14.4, 28]), abs=1e-4)
    # a crop of side 0.7 at x = 12: x -> (x - 12) / 0.7. [0, 16] -> [-17.1, 5.7]: 25% visible (dropped
    # though 5.7 px wide); [4, 20] -> [-11.4, 11.4]: half visible, kept
    targets = torch.tensor([[[0.0, 0, 0, 16, 8], [0.0, 4, 20, 20, 27]]])
    crop = torch.tensor([[[1 / 0.7, 0, -12 / 0.7], [0, 1 / 0.7, 0], [0, 0, 1]]])
    _, out = warp_boxes(x, targets, crop)
    assert out[0, 0, 0] == -1 and out[0, 1, 0] == 0
    assert out[0, 1, 1:].numpy() == pytest.approx(np.array([0, 20 / 0.7, 8 / 0.7, 27 / 0.7]), abs=1e-4)


def test_random_drops_match_the_visible_pixels():
    # a box at the left edge: zoom-ins and crops push it out. What is kept must still be in view.
    x, targets = rectangle_batch(b=32, box=(0, 10, 5, 30))
    names = ("scale", "crop")
    xo, to = augment_boxes(x, targets, names, torch.Generator().manual_seed(2))
    matrices = box_transforms(names, 32, 40, 50, torch.Generator().manual_seed(2))
    area_before = 5 * 20 * matrices[:, 0, 0] * matrices[:, 1, 1]  # the box's area once moved, before clipping
    kept = to[:, 0, 0] >= 0
    assert 0 < int(kept.sum()) < len(x)
    for i in range(len(x)):
        if kept[i]:
            assert to[i, 0, 1:].numpy() == pytest.approx(np.array(bright_box(xo[i, 0])), abs=1.0)
        elif (xo[i, 0] > 0.5).any():
            x1, y1, x2, y2 = bright_box(xo[i, 0])
            bw, bh = x2 - x1, y2 - y1
            assert bw * bh <= 0.3 * area_before[i] + bw + bh or min(bw, bh) <= 2


def test_crop_windows_lie_inside_the_image():
    m = box_transforms(("crop",), 64, 40, 50, torch.Generator().manual_seed(0))
    corners = torch.linalg.inv(m) @ torch.tensor([[0.0, 50], [0, 40], [1, 1]])  # the window in the input
    x0, x1, y0, y1 = corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]
    assert float(x0.min()) >= -1e-4 and float(x1.max()) <= 50 + 1e-4
    assert float(y0.min()) >= -1e-4 and float(y1.max()) <= 40 + 1e-4
    side = (x1 - x0) / 50
    picked = side < 1 - 1e-6
    assert 0 < int(picked.sum()) < 64 and float(side.min()) >= 0.7 - 1e-4
    assert torch.allclose((y1 - y0) / 40, side)
    assert float(x0[picked].std()) > 1 and float(y0[picked].std()) > 1  # windows anywhere, not one corner


def test_unknown_augmentation_lists_the_valid_ones():
    x, targets = rectangle_batch(b=2)
    with pytest.raises(ConfigError, match=r"unknown box augmentation \['rot90'\].*hflip.*crop"):
        augment_boxes(x, targets, ("hflip", "rot90"), torch.Generator())
    assert box_transforms((), 3, 8, 8, torch.Generator()).equal(torch.eye(3).repeat(3, 1, 1))


# ---- synthetic default -----------------------------------------------------------------------

def test_synthetic_boxes_shapes_determinism_and_objects_at_their_boxes():
    x, y, names = synthetic_boxes(40, image_size=64, seed=0, num_classes=3)
    assert x.shape == (40, 3, 64, 64) and x.dtype == torch.float32 and y.shape[0] == 40 and y.shape[2] == 5
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and names == ["ellipse", "rectangle", "diamond"]
    valid = y[..., 0] >= 0
    counts = valid.sum(1)
    assert counts.min() >= 1 and counts.max() <= 3 and set(y[valid][:, 0].tolist()) == {0, 1, 2}
    b = y[valid][:, 1:]
    assert (b[:, :2] >= 0).all() and (b[:, 2] <= 64).all() and (b[:, 3] <= 64).all()
    sides = torch.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
    assert sides.min() >= 4 and sides.max() <= 33
    x2, y2, _ = synthetic_boxes(40, image_size=64, seed=0, num_classes=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(synthetic_boxes(40, image_size=64, seed=1)[0], x)
    # objects sit at their boxes: the centre of a box differs in colour from a band around the box, far
    # more than it does at the boxes of another image laid on this one
    def contrast(image, box):
        x1, y1, x2, y2 = box
        cx, cy, rx, ry = (x1 + x2) // 2, (y1 + y2) // 2, max(1, (x2 - x1) // 4), max(1, (y2 - y1) // 4)
        inner = image[:, cy - ry:cy + ry + 1, cx - rx:cx + rx + 1].mean((1, 2))
        band = torch.ones(64, 64, dtype=torch.bool)
        band[max(0, y1 - 4):y2 + 4, max(0, x1 - 4):x2 + 4] = False
        band = ~band
        band[y1:y2, x1:x2] = False
        return float((inner - image[:, band].mean(1)).abs().max())

    boxes = [y[i][valid[i]][:, 1:].long().tolist() for i in range(40)]
    true = [contrast(x[i], b) for i in range(40) for b in boxes[i]]
    elsewhere = [contrast(x[i], b) for i in range(40) for b in boxes[(i + 1) % 40]]
    assert np.median(true) > 0.1 and np.median(true) > 2 * np.median(elsewhere)


def test_grey_detection_images_are_the_luma_predict_reads(tmp_path):
    from peerdistill.config import DataSpec
    from peerdistill.data import build_data
    from peerdistill.data.image_io import read_image

    images, boxes = kvasir_files(tmp_path)
    for name in ("b.png", "e.png", "f.png"):  # enough images for three splits
        write_png(images / name, 40, 20, colour=(200, 120, 40))
    entries = json.loads(boxes.read_text())
    for key in ("b", "e", "f"):
        entries[key] = {"height": 20, "width": 40, "bbox": [{"label": "polyp", "xmin": 2, "ymin": 2, "xmax": 9, "ymax": 9}]}
    boxes.write_text(json.dumps(entries))
    spec = DataSpec(kind="box_json", root=str(tmp_path), images="images", annotations="boxes.json", grey=True,
                    image_size=[20, 40], val_fraction=0.2, test_fraction=0.2)
    data = build_data(spec)
    assert data.input_shape == (1, 20, 40)
    raw = torch.cat([data.train.x, data.val.x, data.test.x]) * data.stats["std"][0] + data.stats["mean"][0]
    luma = read_image(images / "b.png", (20, 40), grey=True)[..., 0]  # 0.299 R + 0.587 G + 0.114 B
    assert luma[0, 0] == pytest.approx((0.299 * 200 + 0.587 * 120 + 0.114 * 40) / 255, abs=1 / 255)
    assert any(torch.allclose(image[0], torch.from_numpy(luma), atol=1e-5) for image in raw)


def test_synthetic_detection_splits_of_different_split_seeds_share_no_images():
    from peerdistill.config import DataSpec
    from peerdistill.data import build_data

    first, second = (build_data(DataSpec(kind="boxes", boxes_counts=[8, 4, 4], split_seed=s)) for s in (0, 1))
    def images(data):  # as generated, before standardisation by each run's training statistics
        std, mean = (torch.tensor(data.stats[k]).view(1, -1, 1, 1) for k in ("std", "mean"))
        return [x for part in (data.train, data.val, data.test) for x in part.x * std + mean]

    assert not any(torch.allclose(a, b, atol=1e-4) for a in images(first) for b in images(second))


def test_bad_boxes_are_named_together_or_left_out_on_request(tmp_path):
    """Boxes without area or outside their image, as annotation tools export a few: one error
    naming them all (not one at a time), or with bad_boxes='skip' left out with a warning."""
    from peerdistill.errors import PeerdistillWarning

    annotations = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [8, 4, 40, 20]},
                   {"id": 2, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 10]},    # no width
                   {"id": 3, "image_id": 2, "category_id": 3, "bbox": [2, 2, 30, 30]}]   # outside 10x10
    images, ann = coco_files(tmp_path, annotations=annotations)
    # each quoted as the file writes it, [x, y, width, height] (review 55i: corners, found nowhere in the file)
    with pytest.raises(DataError, match=r"2 box\(es\) in ann.json without area or outside their image: annotation 2 "
                                        r".*: bbox \[5, 5, 0, 10\] has a non-positive width.*; annotation 3 .*: bbox "
                                        r"\[2, 2, 30, 30\] lies outside its 10x10 image\. Correct "
                                        r"them, or set data.bad_boxes=skip"):
        load_coco(images, ann, (10, 20))
    with pytest.warns(DataNote, match=r"2 box\(es\) in ann.json left out \(data.bad_boxes=skip\): .*; 1 image\(s\) "
                                      r"lost every box so and are left out too, since each would train as an image "
                                      r"without objects: 'b.png'"):
        _, y, names, ids, info = load_coco(images, ann, (10, 20), bad_boxes="skip")
    # 'adenoma' had only the bad boxes: no class left to learn, as with box_json below
    assert info == {"skipped_bad_boxes": 2, "images_left_out_without_boxes": 1, "unused_categories": ["adenoma"]}
    assert names == ["polyp"] and y[0, 0].tolist() == [0, 2, 1, 12, 6]
    # image 2 lost its one box: left out, not kept as an image without objects (review 55i: its object trained as
    # background, and scored each correct detection on it as a false positive)
    assert ids == ["a.png"] and len(y) == 1
    every_box_bad = [{"id": 2, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 10]}]
    with pytest.warns(PeerdistillWarning), pytest.raises(
            DataError, match=r"holds no box to learn from \(.*; data.bad_boxes=skip left out 1 bad box"):
        load_coco(*coco_files(tmp_path / "all-bad", annotations=every_box_bad), (10, 20), bad_boxes="skip")

    images, boxes = kvasir_files(tmp_path / "k", boxes_a=[
        {"label": "polyp", "xmin": 50, "ymin": 10, "xmax": 150, "ymax": 100},
        {"label": "adenoma", "xmin": 0, "ymin": 0, "xmax": 300, "ymax": 30}])  # outside the 200x100 original
    with pytest.raises(DataError, match=r"1 box\(es\) in boxes.json .*box 1 of 'a'.*outside its 200x100 image"):
        load_box_json(images, boxes, (10, 20))
    with pytest.warns(PeerdistillWarning, match="left out"):
        _, _, names, ids, info = load_box_json(images, boxes, (10, 20), bad_boxes="skip")
    assert names == ["polyp"] and info["skipped_bad_boxes"] == 1  # the class only a bad box had is gone
    assert ids == ["a", "d"] and "images_left_out_without_boxes" not in info  # 'a' keeps a box: kept
    one_bad = kvasir_files(tmp_path / "k1", boxes_a=[  # 'a''s only box bad: 'a' left out with it (review 55i)
        {"label": "polyp", "xmin": 150, "ymin": 10, "xmax": 50, "ymax": 100}])
    with pytest.warns(PeerdistillWarning, match=r"1 box\(es\) in boxes.json left out .*; 1 image\(s\) lost every box "
                                                r"so and are left out too"):
        x, y, _, ids, info = load_box_json(*one_bad, (10, 20), bad_boxes="skip")
    assert ids == ["d"] and len(x) == len(y) == 1 and info["images_left_out_without_boxes"] == 1
    # clip: the box reaching outside the 200x100 original is an object, cut to the image there
    with pytest.warns(PeerdistillWarning, match=r"1 box\(es\) in boxes.json reaching outside their image cut to it"):
        _, y, names, _, info = load_box_json(images, boxes, (10, 20), bad_boxes="clip")
    assert names == ["adenoma", "polyp"] and info["clipped_bad_boxes"] == 1 and "skipped_bad_boxes" not in info
    assert y[0, 1].tolist() == [0, 0, 0, 20, 3]  # [0, 0, 200, 30] of 200x100, at 20x10
    flat = [{"label": "polyp", "xmin": 10 * k, "ymin": 5, "xmax": 10 * k, "ymax": 9} for k in range(5)]  # no width
    images, boxes = kvasir_files(tmp_path / "flat")
    boxes.write_text(json.dumps({"a": {"height": 100, "width": 200, "bbox": flat}}))  # the only boxes, all bad
    with pytest.raises(DataError, match=r"5 box\(es\) .*box 0 of 'a'.*box 1 of 'a'.*box 2 of 'a'[^;]*; and 2 more\. "):
        load_box_json(images, boxes, (10, 20))
    with pytest.warns(PeerdistillWarning), pytest.raises(
            DataError, match=r"holds no box to learn from \(.*; data.bad_boxes=skip left out 5 bad box"):
        load_box_json(images, boxes, (10, 20), bad_boxes="skip")
    with pytest.warns(PeerdistillWarning), pytest.raises(  # no width: nothing to cut, left out under clip too
            DataError, match=r"holds no box to learn from \(.*; data.bad_boxes=clip left out 5 bad box"):
        load_box_json(images, boxes, (10, 20), bad_boxes="clip")


def test_widths_and_heights_written_as_xmax_and_ymax_are_refused_whatever_the_policy(tmp_path):
    """Review 55i: a converter writing [x, y, width, height] into xmin, ymin, xmax, ymax; under skip
    the frames whose boxes ended before they started trained as frames without objects, and the
    boxes whose width was above their x (so they passed) were wrong."""
    as_sizes = [(120, 10, 40, 60), (90, 20, 30, 50), (10, 5, 60, 40), (130, 30, 20, 20)]  # [x, y, w, h]
    images, boxes = kvasir_files(tmp_path, boxes_a=[{"label": "polyp", "xmin": x, "ymin": y, "xmax": w, "ymax": h}
                                                    for x, y, w, h in as_sizes])
    for policy in ("error", "skip", "clip"):
        with pytest.raises(DataError, match=r"3 of the 5 boxes in boxes.json end before they start \(xmax below xmin "
                                            r"or ymax below ymin\) but lie inside their image as \[x, y, width, "
                                            r"height\]: .* Convert them \(xmax = xmin \+ width"):
            load_box_json(images, boxes, (10, 20), bad_boxes=policy)
    # one box reversed by a slip among right ones: the policy holds
    images, boxes = kvasir_files(tmp_path / "one", boxes_a=[
        {"label": "polyp", "xmin": 120, "ymin": 10, "xmax": 40, "ymax": 60},
        {"label": "polyp", "xmin": 10, "ymin": 5, "xmax": 60, "ymax": 40}])
    with pytest.raises(DataError, match=r"1 box\(es\) in boxes.json without area or outside their image"):
        load_box_json(images, boxes, (10, 20))


def test_a_coco_file_written_with_a_bom_reads(tmp_path):
    images, ann = coco_files(tmp_path)
    ann.write_bytes(b"\xef\xbb\xbf" + ann.read_bytes())  # as PowerShell and Notepad write UTF-8
    assert load_coco(images, ann, (10, 20))[2] == ["adenoma", "polyp"]


def test_corners_written_as_widths_are_refused_when_their_area_says_so_and_named_otherwise(tmp_path):
    """Converters that write [x1, y1, x2, y2] in COCO's [x, y, width, height]: boxes far to the
    right reach outside. With COCO's area of the corners' box that is certain, and cutting them
    (clip) would train on wrong boxes: refused. Without the area, large true boxes poking out look
    the same: the count of bad boxes says what they may be, and the policy holds."""
    corners = [[30, 10, 70, 30], [50, 5, 75, 35], [2, 2, 20, 20], [40, 20, 78, 38]]

    def annotations(area):
        return {"annotations": [{"id": k, "image_id": 1, "category_id": 7, "bbox": b,
                                 **({"area": (b[2] - b[0]) * (b[3] - b[1])} if area else {})}
                                for k, b in enumerate(corners)]}

    images, ann = coco_files(tmp_path, **annotations(area=True))
    for policy in ("error", "skip", "clip"):
        with pytest.raises(DataError, match=r"3 box\(es\) in ann.json reach outside their image as COCO's \[x, y, "
                                            r"width, height\] but lie inside it as \[x1, y1, x2, y2\] corners, and 3 "
                                            r"of them give the area of the corners' box"):
            load_coco(images, ann, 16, bad_boxes=policy)
    images, ann = coco_files(tmp_path, **annotations(area=False))
    with pytest.raises(DataError, match=r"if the file gives corners where COCO wants a width and a height, convert"):
        load_coco(images, ann, 16)
    with pytest.warns(PeerdistillWarning, match=r"3 box\(es\) .* cut to it \(data.bad_boxes=clip\) \(3 box\(es\)"):
        load_coco(images, ann, 16, bad_boxes="clip")
    # large true boxes a few pixels out, their area their own: cut to the image as asked
    true = [{"id": k, "image_id": 1, "category_id": 7, "bbox": [20 + k, 8, 62, 30], "area": 62 * 30} for k in range(3)]
    images, ann = coco_files(tmp_path, annotations=true + [{"id": 9, "image_id": 1, "category_id": 7,
                                                            "bbox": [2, 2, 10, 10]}])
    with pytest.warns(PeerdistillWarning, match=r"3 box\(es\) in ann.json reaching outside their image cut to it"):
        assert load_coco(images, ann, 16, bad_boxes="clip")[1].shape[1] == 4
    # many such boxes with their polygons' areas, two of which match a corners' box by chance: cut as asked
    true = [{"id": k, "image_id": 1, "category_id": 7, "bbox": [10 + k % 5, 4, 71, 20], "area": 700 + k}
            for k in range(20)]
    for chance in true[1:3]:  # (reaching outside: x + w beyond 81)
        x, y, w, h = chance["bbox"]
        chance["area"] = (w - x) * (h - y)
    images, ann = coco_files(tmp_path, annotations=true)
    with pytest.warns(PeerdistillWarning, match=r"16 box\(es\) in ann.json reaching outside their image cut to it"):
        load_coco(images, ann, 16, bad_boxes="clip")


def test_an_annotation_without_a_box_takes_its_polygons_or_is_skipped_on_request(tmp_path):
    polygon = {"id": 5, "image_id": 1, "category_id": 7, "segmentation": [[8, 4, 48, 4, 48, 24], [20, 30, 24, 34, 22, 36]]}
    rle = {"id": 6, "image_id": 1, "category_id": 3, "segmentation": {"counts": "x", "size": [40, 80]}}
    images, ann = coco_files(tmp_path, annotations=[polygon, rle])
    with pytest.warns(PeerdistillWarning, match="1 annotation\\(s\\) in ann.json without a 'bbox' take the box around"):
        x, y, names, ids, info = load_coco(images, ann, (10, 20), bad_boxes="skip")
    assert names == ["polyp"] and info["skipped_bad_boxes"] == 1  # the RLE one, left out as asked
    assert y[0, 0].tolist() == [0, 2, 1, 12, 9]  # [8, 4] to [48, 36] in the JSON's 80x40, at 20x10


def test_a_file_name_in_the_other_unicode_form_is_found(tmp_path):
    import unicodedata

    composed = unicodedata.normalize("NFC", "caf\u00e9.png")
    images, ann = coco_files(tmp_path, images=[{"id": 1, "file_name": unicodedata.normalize("NFD", composed),
                                                "width": 80, "height": 40}])
    (images / "a.png").rename(images / composed)
    assert load_coco(images, ann, (10, 20))[0].shape == (1, 3, 10, 20)


def test_an_image_too_large_to_open_safely_is_named(tmp_path):
    from PIL import Image

    from peerdistill.data.image_io import read_image

    Image.new("1", (14000, 14000)).save(tmp_path / "huge.png")  # 196 million pixels in a small file
    with pytest.raises(DataError, match="image '.*huge.png' is too large for Pillow to open safely .*downscale it"):
        read_image(tmp_path / "huge.png", (16, 16))


def test_a_category_of_crowd_regions_only_is_warned_of(tmp_path):
    images, ann = coco_files(tmp_path, annotations=[
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [8, 4, 40, 20]},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [1, 1, 20, 20], "iscrowd": 1}])
    with pytest.warns(PeerdistillWarning, match=r"the categories \['adenoma'\] of ann.json have crowd regions only"):
        load_coco(images, ann, (10, 20))


def test_a_val_split_without_a_box_is_warned_of():
    x = torch.zeros(10, 3, 8, 8)
    y = torch.full((10, 1, 5), -1.0)
    y[0] = torch.tensor([0, 1, 1, 5, 5])  # one annotated image; which split it lands in depends on the seed
    for seed in range(20):
        (_, val, _), indices = detection_splits(x, y, ["a"], 0.2, 0.2, seed)
        if 0 in indices["val"]:
            continue
        with pytest.warns(TrainingAdvice, match=r"the val split \(2 images\) holds no box: val AP is n/a"):
            detection_splits(x, y, ["a"], 0.2, 0.2, seed)
        break
    else:
        pytest.fail("no seed kept the annotated image out of val")


def test_an_annotation_repeated_exactly_is_kept_once(tmp_path):
    images, ann = coco_files(tmp_path)
    data = json.loads(ann.read_text())
    first = data["annotations"][0]
    data["annotations"] += [{**first, "id": 20}, {**first, "id": 21},  # twice again under new ids
                            {**first, "id": 22, "category_id": 3},  # another category at the same place: kept
                            {**first, "id": 23, "bbox": [8, 4, 40, 21]}]  # another box: kept
    ann.write_text(json.dumps(data))
    with pytest.warns(DataNote, match=r"2 annotation\(s\) in ann.json repeat another of the same image "
                                                r"exactly \(category and box; the first in 'a.png'\): each is kept once"):
        _, y, _, _, info = load_coco(images, ann, (10, 20))
    assert info == {"repeated_annotations": 2}
    assert int((y[0, :, 0] != -1).sum()) == 5  # the 3 of the file, and the 2 that differ


def test_a_box_left_under_two_pixels_high_is_dropped_like_one_under_two_wide():
    """Zoom 0.8 about the centre of a 40x40 image (x -> 0.8 x + 4): 2.4 px -> 1.92 px high: dropped;
    3 px -> 2.4 px high: kept."""
    x = torch.zeros(1, 1, 40, 40)
    targets = torch.tensor([[[0.0, 10, 10, 30, 12.4], [1.0, 10, 20, 30, 23]]])
    _, out = warp_boxes(x, targets, torch.tensor([[[0.8, 0, 4], [0, 0.8, 4], [0, 0, 1]]]))
    assert out[0, 0].tolist() == [-1, 0, 0, 0, 0]
    assert out[0, 1].numpy() == pytest.approx(np.array([1, 12, 20, 28, 22.4]), abs=1e-4)


def test_each_augmentation_is_picked_for_half_of_the_samples():
    m = box_transforms(("hflip", "vflip"), 4000, 40, 50, torch.Generator().manual_seed(0))
    for picked in (m[:, 0, 0] < 0, m[:, 1, 1] < 0):
        assert 0.46 < float(picked.float().mean()) < 0.54
    both = (m[:, 0, 0] < 0) & (m[:, 1, 1] < 0)  # drawn apart: a quarter get both
    assert 0.22 < float(both.float().mean()) < 0.28


def test_synthetic_detection_data_is_standardised_by_its_training_split():
    from peerdistill.config import DataSpec
    from peerdistill.data import build_data

    data = build_data(DataSpec(kind="boxes", boxes_counts=[8, 4, 4], image_size=[32, 32]))
    train = data.train.x.transpose(0, 1).reshape(3, -1)  # per channel: mean 0 and std 1 on train only
    assert train.mean(dim=1).abs().max() < 1e-4 and (train.std(dim=1) - 1).abs().max() < 1e-4
    test = data.test.x.transpose(0, 1).reshape(3, -1)
    assert test.mean(dim=1).abs().max() > 1e-3  # another set of images: not standardised by its own figures


def test_synthetic_objects_overlap_by_at_most_an_iou_of_0_3():
    from peerdistill.detection import box_iou

    _, y, _ = synthetic_boxes(150, image_size=32, seed=0)
    worst = 0.0
    for rows in y:
        boxes = rows[rows[:, 0] >= 0, 1:]
        iou = box_iou(boxes, boxes).fill_diagonal_(0)
        worst = max(worst, float(iou.max()))
    assert 0.1 < worst <= 0.3 + 1e-6  # objects do overlap, up to the limit


def test_the_zoom_is_about_the_centre_of_a_wide_image():
    """scale: x' = s x + (1 - s) W / 2, y' = s y + (1 - s) H / 2, so the centre (25, 20) of a
    50 wide, 40 high image stays put and both axes zoom by one s in [0.8, 1.2]."""
    m = box_transforms(("scale",), 64, 40, 50, torch.Generator().manual_seed(0))
    s = m[:, 0, 0]
    assert torch.equal(m[:, 1, 1], s) and float(s.min()) >= 0.8 and float(s.max()) <= 1.2 and (s != 1).any()
    centre = m @ torch.tensor([25.0, 20.0, 1.0])
    assert torch.allclose(centre, torch.tensor([25.0, 20.0, 1.0]).expand(64, 3), atol=1e-5)


def test_a_label_equal_to_the_number_of_classes_is_refused():
    from peerdistill.data.detection import check_labels

    x = torch.zeros(6, 1, 8, 8)
    y = torch.tensor([[[1.0, 0, 0, 4, 4]]]).repeat(6, 1, 1)
    check_labels(y, ["a", "b"])  # labels 0 and 1 name the two classes
    with pytest.raises(DataError, match="label 2 but there are 2 class names"):
        detection_splits(x, y + torch.tensor([1.0, 0, 0, 0, 0]), ["a", "b"], 0.2, 0.2, seed=0)


def test_a_small_fraction_still_splits_off_one_image():
    x, y = torch.zeros(10, 1, 8, 8), torch.tensor([[[0.0, 0, 0, 4, 4]]]).repeat(10, 1, 1)
    parts, idx = detection_splits(x, y, ["a"], val_fraction=0.01, test_fraction=0.01, seed=0)  # 0.1 image each
    assert [len(p) for p in parts] == [8, 1, 1] and len(set(idx["val"] + idx["test"])) == 2


def test_synthetic_boxes_end_one_past_the_last_object_pixel():
    """x2 / y2 are exclusive edges: for the rectangles (class 1, filling their box), the last row
    and column inside differ in colour from the first ones past the box, while two rows inside
    look alike (noise averages out along a row)."""
    x, y, _ = synthetic_boxes(60, image_size=32, seed=0)
    edge, inside = [], []
    for image, rows in zip(x, y):
        for label, x1, y1, x2, y2 in rows.long().tolist():
            if label == 1 and x2 < 32 and y2 < 32 and min(x2 - x1, y2 - y1) >= 4:
                row = lambda r: image[:, r, x1:x2].mean(-1)  # noqa: E731
                col = lambda c: image[:, y1:y2, c].mean(-1)  # noqa: E731
                edge += [float((row(y2 - 1) - row(y2)).abs().max()), float((col(x2 - 1) - col(x2)).abs().max())]
                inside += [float((row(y2 - 1) - row(y2 - 2)).abs().max()), float((col(x2 - 1) - col(x2 - 2)).abs().max())]
    assert len(edge) >= 20 and np.median(edge) > 2 * np.median(inside)


def test_the_shapes_of_the_original_frames_count_as_trained_on(tmp_path):
    """Review 55i: Kvasir-SEG's files are a square copy of frames 619x529 and so on; predict told
    inputs of the original shapes to be cropped to the copy's, a squeeze training itself made."""
    from peerdistill.data.image_io import noting_reads

    images, boxes = kvasir_files(tmp_path)
    data = json.loads(boxes.read_text())
    data["d"].update(width=900, height=300)  # d.jpg is a 30x30 copy of a wide frame
    data["d"]["bbox"][0].update(ymax=290)
    boxes.write_text(json.dumps(data))
    with noting_reads() as files, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_box_json(images, boxes, (10, 20))
    assert files.aspects() == [1.0, 3.0]  # the files' 2.0 (a.png) and 1.0 (d.jpg), and d's original 900x300
    images, ann = coco_files(tmp_path / "coco")  # a.png: 40x20 from 80x40, b.png 10x10: the same shapes
    with noting_reads() as files:
        load_coco(images, ann, (10, 20))
    assert files.aspects() == [1.0, 2.0]
    # an image without boxes need not give its size (review 55n: refused for lacking one)
    images, ann = coco_files(tmp_path / "sizeless", images=[{"id": 1, "file_name": "a.png", "width": 80, "height": 40},
                                                            {"id": 2, "file_name": "b.png"}],
                             annotations=[{"id": 10, "image_id": 1, "category_id": 7, "bbox": [8, 4, 40, 20]}])
    with noting_reads() as files:
        assert load_coco(images, ann, (10, 20))[3] == ["a.png", "b.png"]
    assert files.aspects() == [1.0, 2.0]  # (b.png's own file, 10x10)


# ---- data.exclude ----------------------------------------------------------------------------

def _exclusion(root, *patterns):
    from peerdistill.data.exclusion import Exclusion

    return Exclusion(list(patterns), root)


def test_coco_images_data_exclude_names_go_with_their_annotations_before_anything_is_judged(tmp_path):
    images, ann = coco_files(tmp_path)
    text = json.loads(ann.read_text())
    # b's one annotation lies outside its image: left out with b, it is not judged (no error)
    text["annotations"].append({"id": 13, "image_id": 2, "category_id": 7, "bbox": [5, 5, 50, 50]})
    ann.write_text(json.dumps(text))
    with pytest.raises(DataError, match="outside"):
        load_coco(images, ann, (10, 20))
    exclusion = _exclusion(tmp_path, "img/b.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (b.png is no file "not listed in the JSON")
        x, y, names, ids, info = load_coco(images, ann, (10, 20), exclusion=exclusion)
    assert ids == ["a.png"] and len(x) == 1 and "skipped_without_entry" not in info
    assert exclusion.record() == {"patterns": {"img/b.png": 1}, "samples": 1, "files": ["img/b.png"]}
    # a file_name as the JSON writes it (relative to data.images), and a bare id, match too
    for pattern in ("b.png", "b", "b.*"):
        assert load_coco(images, ann, (10, 20), exclusion=_exclusion(tmp_path, pattern))[3] == ["a.png"]


def test_coco_image_sizes_are_read_once_each(tmp_path, monkeypatch):
    """load_coco took each annotated image's width and height from the JSON once per annotation,
    then twice more (its size check, its original shape): once each now, with the same result."""
    import peerdistill.data.detection as detection

    images, ann = coco_files(tmp_path)
    before = load_coco(images, ann, (10, 20))
    calls = []
    real = detection._image_dims
    monkeypatch.setattr(detection, "_image_dims", lambda entry, where: calls.append(where) or real(entry, where))
    after = load_coco(images, ann, (10, 20))
    assert calls == ["image 1 in ann.json"]  # a.png, of three annotations; b.png has none
    assert after[1].tolist() == before[1].tolist() and after[3] == before[3]
    from peerdistill.data.image_io import noting_reads

    with noting_reads() as files:
        load_coco(images, ann, (10, 20))
    assert files.aspects() is not None  # (the original shape, 80x40, still noted)


def test_box_json_and_mask_boxes_leave_out_what_data_exclude_names(tmp_path):
    images, boxes = kvasir_files(tmp_path)
    exclusion = _exclusion(tmp_path, "d", "c.png")
    with pytest.warns(PeerdistillWarning) as said:
        x, y, names, ids, info = load_box_json(images, boxes, (10, 20), exclusion=exclusion)
    assert ids == ["a"] and info == {"skipped_without_image": 1, "skipped_without_entry": 0}
    # d is left out, not "without an image"; c (no entry) is not said to lack one
    assert [str(w.message) for w in said if "left out" in str(w.message)] == [
        f"1 entries of boxes.json have no image in '{images}' ('b'): left out"]
    assert exclusion.record()["patterns"] == {"d": 1, "c.png": 1} and exclusion.record()["files"] == ["images/d.jpg"]
    # mask_boxes: a pair goes where its mask is named
    for name in ("p1", "p2"):
        write_png(tmp_path / "mb" / "images" / f"{name}.png", 20, 20)
        mask = np.zeros((20, 20), np.uint8)
        mask[2:9, 2:9] = 255
        (tmp_path / "mb" / "masks").mkdir(exist_ok=True)
        Image.fromarray(mask).save(tmp_path / "mb" / "masks" / f"{name}.png")
    exclusion = _exclusion(tmp_path / "mb", "masks/p2.png")
    ids = load_mask_boxes(tmp_path / "mb" / "images", tmp_path / "mb" / "masks", (20, 20), exclusion=exclusion)[3]
    assert ids == ["p1"] and exclusion.record()["files"] == ["images/p2.png"]
