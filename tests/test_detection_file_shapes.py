"""What the detection loaders say of a file of the other kind's shape (a COCO file read as a box
JSON and the reverse, a box JSON given as a list), and box JSON keys written with the file's suffix."""

import json

import pytest

from peerdistill.data.detection import load_box_json, load_coco
from peerdistill.errors import DataError, PeerdistillWarning
from tests.test_detection_data import coco_files, kvasir_files


def test_a_coco_file_read_as_box_json_is_named(tmp_path):
    images, ann = coco_files(tmp_path)
    with pytest.raises(DataError, match=r"ann.json' looks like a COCO file \(keys 'images', 'annotations', "
                                        r"'categories'\), not a box JSON: set data.kind=coco"):
        load_box_json(images, ann, 16)


def test_a_box_json_read_as_coco_is_named(tmp_path):
    images, boxes = kvasir_files(tmp_path)
    with pytest.raises(DataError, match=r"boxes.json' looks like a box JSON \(\{id: \{height, width, bbox: "
                                        r"\[\.\.\.\]\}\}\), not a COCO file: set data.kind=box_json"):
        load_coco(images, boxes, 16)


def test_a_box_json_given_as_a_list_is_said_so(tmp_path):
    images, boxes = kvasir_files(tmp_path)
    entries = [{"id": key, **entry} for key, entry in json.loads(boxes.read_text()).items()]
    boxes.write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"boxes.json' holds a list of 3 item\(s\); a box JSON is an object keyed "
                                        r"by image id"):
        load_box_json(images, boxes, 16)


def test_box_json_keys_with_the_files_suffix_find_their_files(tmp_path):
    images, boxes = kvasir_files(tmp_path)
    as_stems = load_box_json(images, boxes, 16)
    data = json.loads(boxes.read_text())
    boxes.write_text(json.dumps({"a.png": data["a"], "b.png": data["b"], "d.jpg": data["d"]}))
    with pytest.warns(PeerdistillWarning) as told:
        x, y, names, ids, info = load_box_json(images, boxes, 16)
    assert ids == ["a.png", "d.jpg"] and names == as_stems[2]
    assert x.equal(as_stems[0]) and y.equal(as_stems[1])
    assert info["skipped_without_image"] == 1 and info["skipped_without_entry"] == 1  # 'b.png'; c.png
    assert any("'b.png'" in str(w.message) for w in told) and any("'c'" in str(w.message) for w in told)


def test_box_json_keys_matching_no_file_show_keys_and_files(tmp_path):
    images, boxes = kvasir_files(tmp_path)
    data = json.loads(boxes.read_text())
    boxes.write_text(json.dumps({"a.tif": data["a"]}))  # the suffix of another copy of the images
    with pytest.raises(DataError, match=r"or a file named exactly as the key; keys 'a.tif', files 'a.png', "
                                        r"'c.png', 'd.jpg'\)"):
        load_box_json(images, boxes, 16)
