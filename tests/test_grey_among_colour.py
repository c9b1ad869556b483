"""A grey file among colour photographs, read in colour, is said once a load, by name; not for
data read grey on purpose (data.grey), DICOM files, or grey content stored as RGB."""

import warnings

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import DataNote
from tests.test_dicom import write_dicom

GREY_WORDS = "grey files ("


def save_pair(folder, name, image: Image.Image):
    """An image and its 0/255 mask (a square) under ``folder``/images and ``folder``/masks."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    image.save(folder / "images" / name)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    Image.fromarray(mask).save(folder / "masks" / (name.rsplit(".", 1)[0] + ".png"))


def photograph(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3)).astype(np.uint8))


def grey_notes(root, **options) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_data(DataSpec(kind="folders", root=str(root), binary_masks=True, **options))
    return [str(w.message) for w in caught if issubclass(w.category, DataNote) and GREY_WORDS in str(w.message)]


def test_a_grey_file_among_photographs_is_named_once_whichever_split_holds_it(tmp_path):
    for split, seeds in (("train", range(5)), ("test", range(5, 8))):
        for seed in seeds:
            image = photograph(seed)
            save_pair(tmp_path / split, f"p{seed}.png", image.convert("L") if seed == 6 else image)
    notes = grey_notes(tmp_path)  # (train/ and test/ are read one at a time: said once, for the whole load)
    assert notes == ["1 of the 8 images read are grey files ('test/images/p6.png'), the other 7 colour: each grey one is read as "
                     "colour, its channel repeated 3 times. A grey image among colour ones is usually a mistake, or "
                     "another kind of image or source (which a model can tell apart by colour alone): check it, and "
                     "leave it out (data.exclude) if so, or read every image grey (data.grey=true)"]
    assert grey_notes(tmp_path, grey=True) == []  # read grey on purpose


def test_many_grey_files_are_counted_and_a_few_named(tmp_path):
    for seed in range(8):
        save_pair(tmp_path, f"p{seed}.png", photograph(seed).convert("L") if seed < 4 else photograph(seed))
    notes = grey_notes(tmp_path)
    assert len(notes) == 1 and notes[0].startswith(
        "4 of the 8 images read are grey files ('images/p0.png', 'images/p1.png', 'images/p2.png' and 1 more), the other 4 colour")
    assert "check them, and leave them out" in notes[0]


@pytest.mark.parametrize("others", ["grey stored as RGB", "all grey"])
def test_no_word_without_colour_to_differ_from(tmp_path, others):
    for seed in range(6):
        grey = photograph(seed).convert("L")
        save_pair(tmp_path, f"p{seed}.png", grey.convert("RGB") if others == "grey stored as RGB" and seed else grey)
    assert grey_notes(tmp_path) == []  # (X-rays saved partly as RGB show no colour: nothing to tell apart)


def test_a_dicom_file_among_photographs_is_not_said(tmp_path):
    for seed in range(6):
        save_pair(tmp_path, f"p{seed}.png", photograph(seed))
    save_pair(tmp_path, "scan.png", photograph(9))
    (tmp_path / "images" / "scan.png").unlink()
    write_dicom(tmp_path / "images" / "scan.dcm", np.random.default_rng(0).integers(0, 4096, (8, 8)))
    assert grey_notes(tmp_path) == []  # (DICOM's colour is its own matter)


def test_a_grey_file_in_a_class_folder_of_photographs_is_named(tmp_path):
    for c in ("cats", "dogs"):
        (tmp_path / c).mkdir()
        for seed in range(4):
            image = photograph(seed + (10 if c == "dogs" else 0))
            (image.convert("L") if (c, seed) == ("dogs", 2) else image).save(tmp_path / c / f"{c}{seed}.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_data(DataSpec(kind="image_folder", root=str(tmp_path), val_fraction=0.25, test_fraction=0.25))
    notes = [str(w.message) for w in caught if GREY_WORDS in str(w.message)]
    assert len(notes) == 1 and notes[0].startswith("1 of the 8 images read are grey files ('dogs/dogs2.png')")
