"""data.pixel_spacing: HD95 in the unit of a pixel's size, against a brute-force distance on
scaled coordinates; the spacing follows a resize, and files of several sizes are refused."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import DataError
from peerdistill.segmentation_metrics import SegmentationMeter

from .test_segmentation import naive_hd95


def scaled_hd95(pred, truth, spacing):
    """naive_hd95 with every pixel's (row, column) position multiplied by the spacing."""
    def boundary(m):
        pad = np.pad(m, 1)
        inner = m & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
        return np.argwhere(m & ~inner) * np.asarray(spacing)

    a, b = boundary(pred.astype(bool)), boundary(truth.astype(bool))
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI about its own internals
def test_hd95_is_in_the_unit_of_the_pixel_spacing_along_each_axis():
    truth = np.zeros((1, 32, 32), np.int64)
    pred = np.zeros((1, 32, 32), np.int64)
    truth[0, 8:20, 8:20] = 1
    pred[0, 10:22, 9:27] = 1
    probs = torch.nn.functional.one_hot(torch.as_tensor(pred), 2).permute(0, 3, 1, 2).float()
    for spacing in ([0.5, 0.5], [2.0, 0.25]):
        meter = SegmentationMeter(["background", "lesion"], pixel_spacing=spacing)
        meter.update(probs, torch.as_tensor(truth))
        assert meter.compute()["hd95"] == pytest.approx(scaled_hd95(pred[0], truth[0], spacing), rel=1e-4)
    assert scaled_hd95(pred[0], truth[0], [1, 1]) == pytest.approx(naive_hd95(pred[0], truth[0]))


def write_pairs(root, sizes):
    for d in ("images", "masks"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: h // 2, w // 4: 3 * w // 4] = 255
        image = np.clip(mask * 0.8 + rng.normal(30, 10, (h, w)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")


def test_the_spacing_follows_a_resize_and_needs_files_of_one_size(tmp_path):
    write_pairs(tmp_path / "d", [(40, 30)] * 10)
    spec = dict(kind="folders", root=str(tmp_path / "d"), binary_masks=True, grey=True, pixel_spacing=[0.3, 0.2])
    assert build_data(DataSpec(**spec)).info["pixel_spacing"] == [0.3, 0.2]
    resized = build_data(DataSpec(**spec, image_size=[20, 10])).info["pixel_spacing"]
    assert resized == pytest.approx([0.6, 0.6])  # 40 rows into 20, 30 columns into 10
    assert build_data(DataSpec(**{**spec, "pixel_spacing": None})).info["pixel_spacing"] is None
    write_pairs(tmp_path / "mixed", [(40, 30)] * 9 + [(36, 30)])
    with pytest.raises(DataError, match=r"stored at several sizes \(rows x columns: 36x30, 40x30\).*drop data.pixel_spacing"):
        build_data(DataSpec(**{**spec, "root": str(tmp_path / "mixed")}, image_size=[20, 10]))


def test_a_runs_hd95_is_in_its_datas_unit_and_eval_can_score_it_in_pixels(tmp_path, capsys):
    from peerdistill.build import train_from_config
    from peerdistill.cli import main
    from peerdistill.config import validate

    write_pairs(tmp_path / "d", [(24, 24)] * 20)
    train_from_config(validate({
        "name": "r", "out_dir": str(tmp_path), "task": "segmentation", "teacher": None, "seed": 0,
        "data": {"kind": "folders", "root": str(tmp_path / "d"), "binary_masks": True, "grey": True,
                 "pixel_spacing": [0.25, 0.25]},
        "distill": {"preset": "independent"}, "students": [{"arch": "unet", "args": {"width": 4, "depth": 1}}],
        "optim": {"lr": 0.02}, "train": {"epochs": 4, "batch_size": 4}}), progress=False)
    run = tmp_path / "r"
    assert json.loads((run / "run.json").read_text())["data_info"]["pixel_spacing"] == [0.25, 0.25]
    assert main(["eval", str(run), "--json"]) == 0
    in_mm = json.loads(capsys.readouterr().out)["student1"]["hd95"]
    assert main(["eval", str(run), "data.pixel_spacing=null", "--json"]) == 0
    in_pixels = json.loads(capsys.readouterr().out)["student1"]["hd95"]
    assert in_pixels is not None and in_mm == pytest.approx(0.25 * in_pixels, rel=1e-6)


def write_dicom_pairs(root, spacings, size=(12, 10)):
    from .test_dicom import write_dicom

    for d in ("images", "masks"):
        (root / d).mkdir(parents=True)
    for i, spacing in enumerate(spacings):
        mask = np.zeros(size, np.uint8)
        mask[3:8, 2:7] = 255
        elements = {} if spacing is None else {"PixelSpacing": spacing}
        write_dicom(root / "images" / f"IM{i:04d}", np.where(mask > 0, 3000, 500).astype(np.uint16), **elements)
        Image.fromarray(mask).save(root / "masks" / f"IM{i:04d}.png")


def test_dicom_images_give_their_own_pixel_spacing_when_asked(tmp_path):
    write_dicom_pairs(tmp_path / "d", [[0.7, 0.5]] * 8)
    spec = dict(kind="folders", root=str(tmp_path / "d"), binary_masks=True, grey=True)
    assert build_data(DataSpec(**spec)).info["pixel_spacing"] is None  # by default in pixels, as before
    assert build_data(DataSpec(**spec, pixel_spacing="dicom")).info["pixel_spacing"] == pytest.approx([0.7, 0.5])
    # 12 x 10 resized to 6 x 5: each seen pixel spans two stored ones
    resized = build_data(DataSpec(**spec, pixel_spacing="dicom", image_size=[6, 5])).info["pixel_spacing"]
    assert resized == pytest.approx([1.4, 1.0])


def test_dicom_spacings_that_differ_or_are_missing_are_refused_with_the_way_out(tmp_path):
    spec = dict(kind="folders", binary_masks=True, grey=True, pixel_spacing="dicom")
    write_dicom_pairs(tmp_path / "differ", [[0.7, 0.5]] * 4 + [[0.8, 0.5]] * 4)
    with pytest.raises(DataError, match=r"spacings differ as the models see them: 'IM0000' 0.7 x 0.5 mm, 'IM0004' "
                                        r"0.8 x 0.5 mm \(4 of 8 differ from the first\).*resample"):
        build_data(DataSpec(**spec, root=str(tmp_path / "differ")))
    write_dicom_pairs(tmp_path / "missing", [[0.7, 0.5]] * 7 + [None])
    with pytest.raises(DataError, match=r"DICOM image '.*IM0007' gives no PixelSpacing: give data.pixel_spacing"):
        build_data(DataSpec(**spec, root=str(tmp_path / "missing")))
    write_dicom_pairs(tmp_path / "bad", [[0.7, 0.5]] * 7 + [[0.0, 0.5]])
    with pytest.raises(DataError, match=r"IM0007' gives PixelSpacing .*not two sizes above 0"):
        build_data(DataSpec(**spec, root=str(tmp_path / "bad")))
    write_pairs(tmp_path / "png", [(12, 10)] * 8)
    with pytest.raises(DataError, match=r"'.*0.png' is not a DICOM file: give data.pixel_spacing=\[ROWS, COLUMNS\]"):
        build_data(DataSpec(**spec, root=str(tmp_path / "png")))


def test_dicom_images_of_several_sizes_agree_once_resized(tmp_path):
    """Two sizes covering one field of view: as the models see them, one spacing."""
    write_dicom_pairs(tmp_path / "d", [[0.5, 0.5]] * 4)
    more = tmp_path / "more"
    write_dicom_pairs(more, [[0.25, 0.25]] * 4, size=(24, 20))
    for d in ("images", "masks"):
        for f in (more / d).iterdir():
            f.rename(tmp_path / "d" / d / f"fine_{f.name}")
    spec = DataSpec(kind="folders", root=str(tmp_path / "d"), binary_masks=True, grey=True, image_size=[12, 10],
                    pixel_spacing="dicom")
    assert build_data(spec).info["pixel_spacing"] == pytest.approx([0.5, 0.5])


def test_a_dicom_spacing_of_zero_along_either_axis_is_refused(tmp_path):
    # PixelSpacing is (rows, columns): a 0 in either place is no pixel size
    from peerdistill.data.dicom import dicom_size_and_spacing

    from .test_dicom import write_dicom

    pixels = np.zeros((12, 10), np.uint16)
    assert dicom_size_and_spacing(write_dicom(tmp_path / "g.dcm", pixels, PixelSpacing=[0.7, 0.5])) == \
        ((12, 10), pytest.approx((0.7, 0.5)))
    for spacing in ([0.5, 0.0], [0.0, 0.5], [-0.5, 0.5]):
        with pytest.raises(DataError, match=r"z.dcm' gives PixelSpacing .*not two sizes above 0"):
            dicom_size_and_spacing(write_dicom(tmp_path / "z.dcm", pixels, PixelSpacing=spacing))
