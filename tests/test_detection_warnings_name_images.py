"""The warnings of training boxes that cannot be learnt (slivers, boxes between the anchor points)
name their images and give a ready data.exclude, where the split knows its images' names; the advice
to train larger is given with the size that helps, and left out where no size can."""

import json
import math
import warnings

import pytest
import torch
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data.detection import NamedBoxes
from peerdistill.data.detection_sources import load_detection
from peerdistill.detection import HeadLayout
from peerdistill.tasks.detection import DetectionTask

LAYOUT = HeadLayout(num_classes=1, reg_max=4)
# at 64x64: image 'a' holds a box 1 pixel high, image 'c' one 0.5 pixel wide; 'b' none
THIN = torch.tensor([[[0, 10.0, 0.0, 40.0, 1.0], [0, 2.0, 2.0, 30.0, 30.0]],
                     [[0, 2.0, 2.0, 30.0, 30.0], [-1, 0, 0, 0, 0]],
                     [[0, 5.0, 5.0, 5.5, 20.0], [-1, 0, 0, 0, 0]]])


def told(call) -> list[str]:
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in said]


def split(sizes):
    return NamedBoxes(torch.zeros(3, 3, 64, 64), THIN, ["a.jpg", "b.jpg", "c.jpg"], ["old.jpg"], sizes)


def test_slivers_name_their_images_with_a_ready_exclude():
    said = told(lambda: DetectionTask(LAYOUT, (64, 64)).inspect_training_data(split(None)))
    assert said[0].startswith("2 of 4 training boxes are under 2 pixels wide or high at 64x64 (in 2 images: 'a.jpg', "
                              "'c.jpg'): annotation slivers, or objects too small at this size; augmentation drops "
                              "such boxes, and few are learnt: check the annotations, and leave out the images of "
                              "slips ('data.exclude=[\"old.jpg\", \"a.jpg\", \"c.jpg\"]' on the command line, the 1 "
                              "pattern given first), or train at a larger data.image_size")


def test_slivers_of_one_pixel_in_their_originals_get_no_advice_to_train_larger():
    said = told(lambda: DetectionTask(LAYOUT, (64, 64)).inspect_training_data(split([(64, 64)] * 3)))
    assert "(under 2 pixels a side in the original images too)" in said[0]
    assert "image_size" not in said[0]


def test_slivers_larger_in_their_originals_are_told_the_size_that_keeps_them():
    # originals 4 times the training size: 'a's box 4 pixels high, 'c's 2 pixels wide there
    said = told(lambda: DetectionTask(LAYOUT, (64, 64)).inspect_training_data(split([(256, 256)] * 3)))
    factor = max(2 / 1.0, 2 / 0.5)  # each sliver's side to 2 pixels: 'c' needs 4 times the size
    assert said[0].endswith(f"or train at data.image_size={[math.ceil(64 * factor)] * 2} or more, where they reach "
                            "2 pixels a side")
    # one of them 1 pixel wide in its original (64 pixels), the other kept at twice the size
    said = told(lambda: DetectionTask(LAYOUT, (64, 64)).inspect_training_data(split([(128, 128), None, (64, 64)])))
    assert said[0].endswith("or train at data.image_size=[128, 128] or more, where 1 of them reach 2 pixels a side "
                            "(the other 1 are under 2 in their original images too)")


def test_held_out_slivers_name_their_images():
    said = told(lambda: DetectionTask(LAYOUT, (64, 64)).inspect_held_out(split([(64, 64)] * 3), "test"))
    assert said == ["2 of 4 test boxes are under 2 pixels wide or high at 64x64 (in 'a.jpg', 'c.jpg'): annotation "
                    "slivers (under 2 pixels a side in the original images too), which a detector seldom finds, so "
                    "they lower its recall and AP: check the annotations, and leave out the images of slips "
                    "('data.exclude=[\"old.jpg\", \"a.jpg\", \"c.jpg\"]' on the command line, the 1 pattern "
                    "given first)"]


def test_boxes_without_an_anchor_point_name_their_images():
    between = torch.tensor([[[0, 44.5, 44.5, 46.5, 46.5]], [[0, 2.0, 2.0, 30.0, 30.0]]])  # 'p' between the points
    part = NamedBoxes(torch.zeros(2, 3, 64, 64), between, ["p", "q"])
    said = told(lambda: DetectionTask(LAYOUT, (64, 64)).inspect_training_data(part))
    assert said[0].startswith("1 of 2 training boxes (in 1 images: 'p') hold no anchor point")
    assert said[0].endswith("or leave their images out ('data.exclude=[\"p\"]' on the command line)")


def test_box_json_splits_know_their_images_and_original_sizes(tmp_path):
    (tmp_path / "images").mkdir()
    entries = {}
    for k in range(10):
        Image.new("RGB", (20, 10), (10 * k, 80, 40)).save(tmp_path / "images" / f"f{k}.png")
        entries[f"f{k}"] = {"width": 200 + k, "height": 100, "bbox": [
            {"label": "polyp", "xmin": 10, "ymin": 10, "xmax": 60, "ymax": 60}]}
    (tmp_path / "boxes.json").write_text(json.dumps(entries))
    spec = DataSpec(kind="box_json", root=str(tmp_path), annotations="boxes.json", image_size=[16, 16],
                    exclude=["f9"], val_fraction=0.2, test_fraction=0.2)
    data = load_detection(spec)
    for name in ("train", "val", "test"):
        part = data.split(name)
        assert isinstance(part, NamedBoxes) and part.names == data.info["split"][name]
        assert part.exclude == ["f9"]
        assert part.original_sizes == [(200.0 + int(n[1:]), 100.0) for n in part.names]


def test_named_boxes_need_a_name_per_image():
    with pytest.raises(Exception, match="2 names for 3 images"):
        NamedBoxes(torch.zeros(3, 3, 8, 8), torch.zeros(3, 1, 5), ["a", "b"])
