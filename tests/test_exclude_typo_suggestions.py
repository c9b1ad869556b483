"""data.exclude entries that match nothing: each is answered with the existing name it most
likely meant (the same name in another case first, matching being case-sensitive; else the
closest by spelling), among paths for an entry with a '/', among file names and ids for a bare one."""

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import DataError

TAIL = ": fix {0}, or remove {0} from data.exclude (a file the data has no more need not be left out)"


def _xray_tree(root):
    """NORMAL/IM-0001.jpeg ... and PNEUMONIA/person1_virus_6.png ...: names as a chest X-ray set writes them."""
    rng = np.random.default_rng(0)
    names = {"NORMAL": [f"IM-{i:04d}.png" for i in range(1, 7)],
             "PNEUMONIA": [f"person{i}_virus_6.png" for i in range(1, 7)]}
    for folder, files in names.items():
        (root / folder).mkdir(parents=True)
        for name in files:
            Image.fromarray(rng.integers(0, 255, (10, 10), dtype=np.uint8)).save(root / folder / name)
    return root


def _refusal(root, exclude) -> str:
    with pytest.raises(DataError) as caught:
        build_data(DataSpec(kind="image_folder", root=str(root), exclude=exclude))
    return str(caught.value)


def _head(root, named: str, one: bool = True) -> str:
    return (f"data.exclude: {'pattern' if one else 'patterns'} {named} {'matches' if one else 'match'} no image or "
            f"mask file of the data at '{root}' (a name with '/' is matched against each image's or mask's path "
            "relative to data.root, one without against its file name, with or without its suffix")


def test_a_mistyped_bare_file_name_is_answered_with_the_file_name_meant(tmp_path):
    root = _xray_tree(tmp_path / "x")
    # the same name in another case first (matching is case-sensitive), else the closest by spelling
    assert _refusal(root, ["im-0003.png"]) == (_head(root, "'im-0003.png'") + "; did you mean 'IM-0003.png'?)"
                                               + TAIL.format("it"))
    assert _refusal(root, ["person3_virus_9.png"]) == (_head(root, "'person3_virus_9.png'")
                                                       + "; did you mean 'person3_virus_6.png'?)" + TAIL.format("it"))
    # written without its suffix: the name less its suffix
    assert _refusal(root, ["IM-003"]).endswith("did you mean 'IM-0003'?)" + TAIL.format("it"))


def test_a_mistyped_path_is_answered_with_the_path_meant(tmp_path):
    root = _xray_tree(tmp_path / "x")
    assert _refusal(root, ["normal/IM-0002.png"]) == (_head(root, "'normal/IM-0002.png'")
                                                      + "; did you mean 'NORMAL/IM-0002.png'?)" + TAIL.format("it"))
    assert _refusal(root, ["PNEUMONIA/person2_virus6.png"]).endswith(
        "did you mean 'PNEUMONIA/person2_virus_6.png'?)" + TAIL.format("it"))


def test_several_unknown_entries_are_answered_in_one_message_each_with_its_guess(tmp_path):
    root = _xray_tree(tmp_path / "x")
    said = _refusal(root, ["IM-0001.png", "im-0004.png", "normal/IM-0005.png", "zzz", "*_Virus_*"])
    # (the list is kept sorted; an entry near nothing, and a glob, get no guess)
    assert said == (_head(root, "'*_Virus_*', 'im-0004.png', 'normal/IM-0005.png', 'zzz'", one=False)
                    + "; did you mean 'IM-0004.png' for 'im-0004.png', 'NORMAL/IM-0005.png' for "
                      "'normal/IM-0005.png'?)" + TAIL.format("them"))
    # none near: one name of the data shows how names are written
    assert _refusal(root, ["zzz"]).endswith("its suffix; e.g. 'NORMAL/IM-0001.png')" + TAIL.format("it"))


def test_an_entry_is_answered_with_an_image_mask_pairs_id(tmp_path):
    from tests.test_data_files import write_drive_like

    write_drive_like(tmp_path / "d")
    with pytest.raises(DataError, match=r"did you mean '22'\?\)"):
        build_data(DataSpec(kind="folders", root=str(tmp_path / "d"), masks="manual", roi="fov", pattern=r"^(\d+)_",
                            binary_masks=True, exclude=["22x"]))
