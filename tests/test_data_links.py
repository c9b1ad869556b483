"""Symbolic links in a data folder that lead to no file (a link to itself, or round a cycle):
said as what they are, never a traceback."""

import os
import warnings

from peerdistill.data.detection import load_coco
from peerdistill.errors import PeerdistillWarning
from tests.test_detection_data import coco_files


def test_a_link_in_a_loop_beside_coco_images_is_no_unlisted_image_and_no_crash(tmp_path):
    # os.scandir's DirEntry.is_file raised "Too many levels of symbolic links" out of load_coco
    images, ann = coco_files(tmp_path)
    os.symlink("loop.png", images / "loop.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)  # (nor counted as an image the JSON leaves out)
        assert load_coco(images, ann, 16)[0].shape[0] == 2
