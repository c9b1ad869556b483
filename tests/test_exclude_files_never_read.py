"""data.exclude entries naming files the data's folders are never read for (hidden files, files
of no image suffix): refused with the rule that skips them, so the entry can simply go."""

import re

import pytest

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import DataError
from tests.test_data_files import write_class_tree, write_drive_like

HIDDEN = ("its name begins with '.' (hidden files and folders, as macOS's '._' copies, .DS_Store and "
          ".ipynb_checkpoints, are never read from a data folder)")
DB = ("its suffix '.db' is no image's (a data folder is read for its .bmp, .dcm, .dicom, .gif, .jpeg, .jpg, .png, "
      ".tif, .tiff files, and DICOM images named without a suffix, by a UID or .IMA, alone)")


def _refusal(spec) -> str:
    with pytest.raises(DataError) as caught:
        build_data(spec)
    return str(caught.value)


def _tree_with_clutter(root):
    write_class_tree(root, {"a": 6, "b": 6})
    for name in ("a/Thumbs.db", "a/._0.png", ".DS_Store"):
        (root / name).write_bytes(b"\0\1")
    return root


def test_a_file_of_no_image_suffix_is_refused_as_never_read_not_as_matching_nothing(tmp_path):
    root = _tree_with_clutter(tmp_path / "x")
    said = _refusal(DataSpec(kind="image_folder", root=str(root), exclude=["Thumbs.db"]))
    assert said == (f"data.exclude: pattern 'Thumbs.db' names a file never read as data, so it leaves nothing out: "
                    f"{DB}; remove it from data.exclude")
    # a glob whose every match has that suffix alike
    assert _refusal(DataSpec(kind="image_folder", root=str(root), exclude=["a/*.db"])).startswith(
        "data.exclude: pattern 'a/*.db' names a file never read as data")


def test_hidden_files_and_files_in_hidden_folders_are_refused_as_never_read(tmp_path):
    root = _tree_with_clutter(tmp_path / "x")
    said = _refusal(DataSpec(kind="image_folder", root=str(root), exclude=["a/._0.png", ".DS_Store"]))
    assert said == ("data.exclude: patterns " + ", ".join(repr(p) for p in sorted(["a/._0.png", ".DS_Store"])) +
                    f" name files never read as data, so they leave nothing out: '.DS_Store': {HIDDEN}; "
                    f"'a/._0.png': {HIDDEN}; remove them from data.exclude")
    said = _refusal(DataSpec(kind="image_folder", root=str(root), exclude=[".ipynb_checkpoints/3.png"]))
    assert ("its folder '.ipynb_checkpoints' begins with '.' (hidden files and folders, as macOS's '._' copies, "
            ".DS_Store and .ipynb_checkpoints, are never read from a data folder)") in said
    # image/mask folders read alike
    write_drive_like(tmp_path / "d")
    said = _refusal(DataSpec(kind="folders", root=str(tmp_path / "d"), masks="manual", roi="fov", pattern=r"^(\d+)_",
                             binary_masks=True, exclude=["manual/._22_manual1.gif"]))
    assert said == (f"data.exclude: pattern 'manual/._22_manual1.gif' names a file never read as data, so it leaves "
                    f"nothing out: {HIDDEN}; remove it from data.exclude")


def test_a_typo_beside_a_file_never_read_is_named_with_both_reasons(tmp_path):
    root = _tree_with_clutter(tmp_path / "x")
    said = _refusal(DataSpec(kind="image_folder", root=str(root), exclude=["a/3.png", "a/33.png", "Thumbs.db"]))
    assert re.match(r"data.exclude: pattern 'a/33.png' matches no image or mask file of the data .* did you mean "
                    r"'a/3.png'\?\): fix it, or remove it from data.exclude \(a file the data has no more need not be "
                    r"left out\); and pattern 'Thumbs.db' names a file never read as data, so it leaves nothing out: ",
                    said), said


def test_names_that_may_be_a_mistyped_id_or_a_csv_row_keep_the_plain_refusal(tmp_path):
    root = _tree_with_clutter(tmp_path / "x")
    # an id holding a '.' (scan.v2.png is known as 'scan.v2'): 'scan.v3' may be a typo of one, not a suffix
    (root / "a" / "1.png").rename(root / "a" / "scan.v2.png")
    said = _refusal(DataSpec(kind="image_folder", root=str(root), exclude=["scan.v3"]))
    assert said.startswith("data.exclude: pattern 'scan.v3' matches no image or mask file") and "never read" not in said
    # a CSV names its own files, hidden or not: one it does not name matches nothing, whatever its name
    rows = ["path,label"] + [f"{c}/{i}.png,{c}" for c in "ab" for i in (0, 2, 3)]
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    said = _refusal(DataSpec(kind="csv", root=str(root / "list.csv"), exclude=["Thumbs.db"]))
    assert said.startswith("data.exclude: pattern 'Thumbs.db' matches no image or mask file") and "never" not in said
