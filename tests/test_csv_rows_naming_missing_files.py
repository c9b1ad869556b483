"""CSV rows naming files that are not there: refused with their line numbers in the table's
order, each path once, and the fix; where none is there, the folder the paths are read from."""

import numpy as np
import pytest
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import DataError


def _table(tmp_path, extra_rows=()):
    rows = ["path,label"]
    for label in ("a", "b"):
        (tmp_path / "cls" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "cls" / label / f"{i}.png")
            rows.append(f"cls/{label}/{i}.png,{label}")
    rows[4:4] = list(extra_rows)
    return rows


def test_missing_files_are_listed_by_line_in_order_once_with_the_fix(tmp_path):
    rows = _table(tmp_path, ["cls/b/gone.png,b", "cls/a/missing.png,a"])
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as caught:
        build_data(DataSpec(kind="csv", root=str(tmp_path / "t.csv"), grey=True))
    said = str(caught.value)
    assert said.endswith("lists 2 of 14 files that do not exist (line 5 'cls/b/gone.png', line 6 "
                         "'cls/a/missing.png'): restore those files, or delete their rows from the table")
    assert said.count("gone.png") == 1


def test_every_file_missing_says_paths_are_read_from_the_tables_folder(tmp_path):
    rows = _table(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as caught:
        build_data(DataSpec(kind="csv", root=str(tmp_path / "sub" / "t.csv"), grey=True))
    said = str(caught.value)
    assert "lists 12 files and none exists (line 2 'cls/a/0.png', line 3 'cls/a/1.png', line 4 'cls/a/2.png', " \
           "line 5 'cls/a/3.png', line 6 'cls/a/4.png' and 7 more)" in said
    assert (f"the path column is read relative to the table's folder '{tmp_path / 'sub'}' (line 2's file is looked "
            f"for at '{tmp_path / 'sub' / 'cls' / 'a' / '0.png'}'): write the paths relative to that folder") in said
