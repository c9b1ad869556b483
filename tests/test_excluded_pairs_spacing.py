"""A pair data.exclude leaves out is no matter to data.pixel_spacing's checks, whichever of its
files the pattern named (its image, its mask): only the pairs read count."""

import pytest

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.data.splits import kept_whole
from peerdistill.errors import DataError

from .test_pixel_spacing import write_dicom_pairs, write_pairs


@pytest.mark.filterwarnings("ignore::peerdistill.errors.DataNote")
def test_a_pair_of_another_size_left_out_by_its_mask_is_not_counted_in_the_size_check(tmp_path):
    write_pairs(tmp_path / "mixed", [(40, 30)] * 9 + [(36, 30)])  # 9.png: 36 rows, the others 40
    spec = dict(kind="folders", root=str(tmp_path / "mixed"), binary_masks=True, grey=True,
                pixel_spacing=[0.3, 0.2], image_size=[20, 10])
    with pytest.raises(DataError, match=r"stored at several sizes \(rows x columns: 36x30, 40x30\)"):
        build_data(DataSpec(**spec))
    for pattern in ("masks/9.png", "images/9.png", "9"):  # by its mask (the defect), its image, its id
        data = build_data(DataSpec(**spec, exclude=[pattern]))
        assert data.info["pixel_spacing"] == pytest.approx([0.3 * 40 / 20, 0.2 * 30 / 10]), pattern
        assert data.info["excluded"]["files"] == ["images/9.png"]
    with kept_whole():  # a set scored whole reads its pairs otherwise: alike
        data = build_data(DataSpec(**spec, exclude=["masks/9.png"]))
    assert len(data.test) == 9 and data.info["pixel_spacing"] == pytest.approx([0.6, 0.6])


@pytest.mark.filterwarnings("ignore::peerdistill.errors.DataNote")
def test_a_dicom_pair_of_another_spacing_left_out_by_its_mask_is_not_counted(tmp_path):
    write_dicom_pairs(tmp_path / "d", [[0.7, 0.5]] * 7 + [[0.8, 0.5]])  # IM0007 of another spacing
    spec = dict(kind="folders", root=str(tmp_path / "d"), binary_masks=True, grey=True, pixel_spacing="dicom")
    with pytest.raises(DataError, match=r"spacings differ as the models see them"):
        build_data(DataSpec(**spec))
    assert build_data(DataSpec(**spec, exclude=["masks/IM0007.png"])).info["pixel_spacing"] == pytest.approx([0.7, 0.5])
