"""DICOM images read as a viewer shows them, checked against the DICOM rules written out by
hand; a class-folder set of DICOM files trains and its files are predicted."""

import csv
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from peerdistill.cli import main
from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.data.image_io import image_size, read_image, read_mask, size_and_colour
from peerdistill.errors import DataError, DataNote, PeerdistillWarning


def write_dicom(path, pixels: np.ndarray, photometric="MONOCHROME2", bits_stored=12, signed=False, **elements):
    """A minimal uncompressed DICOM file: grey [H, W] (16-bit allocated) or RGB [H, W, 3] (8-bit)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.PhotometricInterpretation = photometric
    if pixels.ndim == 3:
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = pixels.astype(np.uint8).tobytes()
    else:
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored = 1, 16, bits_stored
        ds.HighBit, ds.PixelRepresentation = bits_stored - 1, int(signed)
        ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def grey12():
    return np.random.default_rng(0).integers(0, 4096, (12, 10)).astype(np.uint16)


def test_plain_monochrome2_is_scaled_by_the_stored_bits(tmp_path, grey12):
    path = write_dicom(tmp_path / "a.dcm", grey12)
    a = read_image(path, grey=True)
    assert a.shape == (12, 10, 1) and a.dtype == np.float32
    np.testing.assert_allclose(a[..., 0], grey12 / 4095, rtol=1e-6)
    assert image_size(path) == (12, 10) and size_and_colour(path) == ((12, 10), False)
    np.testing.assert_allclose(read_image(path), np.repeat(a, 3, axis=-1))  # grey read as colour repeats


def naive_window(values, center, width, low, high):
    """DICOM PS3.3 C.11.2.1.2.1, the LINEAR window function, to [low, high]."""
    out = np.empty_like(values, dtype=np.float64)
    for i, x in np.ndenumerate(values):
        if x <= center - 0.5 - (width - 1) / 2:
            out[i] = low
        elif x > center - 0.5 + (width - 1) / 2:
            out[i] = high
        else:
            out[i] = ((x - (center - 0.5)) / (width - 1) + 0.5) * (high - low) + low
    return out


def test_rescale_and_window_as_the_standard_defines_them(tmp_path, grey12):
    slope, intercept, center, width = 2.0, -1024.0, 400.0, 1500.0
    path = write_dicom(tmp_path / "ct.dcm", grey12, RescaleSlope=slope, RescaleIntercept=intercept,
                       WindowCenter=center, WindowWidth=width)
    hu = grey12 * slope + intercept
    low, high = 0 * slope + intercept, 4095 * slope + intercept
    expected = (naive_window(hu, center, width, low, high) - low) / (high - low)
    np.testing.assert_allclose(read_image(path, grey=True)[..., 0], expected, atol=1e-6)
    assert 0 < expected.mean() < 1 and (expected == 0).any() and (expected == 1).any()  # the window clips


def test_an_enhanced_images_functional_groups_rescale_window_and_space_it(tmp_path, grey12):
    """Review 48f: an enhanced CT's rescale and window sit in functional groups, not at the top of
    the data set; read without them, its raw stored values were shown. Shared groups, or the one
    frame's own, give the same image as those elements at the top."""
    from peerdistill.data.dicom import dicom_size_and_spacing

    slope, intercept, center, width = 2.0, -1024.0, 400.0, 1500.0
    classic = write_dicom(tmp_path / "classic.dcm", grey12, RescaleSlope=slope, RescaleIntercept=intercept,
                          WindowCenter=center, WindowWidth=width, PixelSpacing=[0.5, 0.25])
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        rescale, window, measures, group = Dataset(), Dataset(), Dataset(), Dataset()
        rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = slope, intercept, "HU"
        window.WindowCenter, window.WindowWidth = center, width
        measures.PixelSpacing = [0.5, 0.25]
        group.PixelValueTransformationSequence, group.FrameVOILUTSequence = [rescale], [window]
        group.PixelMeasuresSequence = [measures]
        enhanced = write_dicom(tmp_path / f"{groups}.dcm", grey12, NumberOfFrames=1, **{groups: [group]})
        np.testing.assert_array_equal(read_image(enhanced, grey=True), read_image(classic, grey=True))
        assert dicom_size_and_spacing(enhanced) == dicom_size_and_spacing(classic) == ((12, 10), (0.5, 0.25))
    assert not np.array_equal(read_image(write_dicom(tmp_path / "raw.dcm", grey12), grey=True),
                              read_image(classic, grey=True))  # (the groups matter)
    # both groups: the frame's own window, the more particular (review 48h); a window at the top is kept
    # whole, never paired with a group's width
    shared, own, other = Dataset(), Dataset(), Dataset()
    shared.WindowCenter, shared.WindowWidth = 2000.0, 100.0
    own.WindowCenter, own.WindowWidth = center, width
    shared_group, own_group = Dataset(), Dataset()
    shared_group.FrameVOILUTSequence, own_group.FrameVOILUTSequence = [shared], [own]
    both = write_dicom(tmp_path / "both.dcm", grey12, RescaleSlope=slope, RescaleIntercept=intercept,
                       SharedFunctionalGroupsSequence=[shared_group], PerFrameFunctionalGroupsSequence=[own_group])
    np.testing.assert_array_equal(read_image(both, grey=True), read_image(classic, grey=True))
    other.WindowWidth = 100.0
    width_only = Dataset()
    width_only.FrameVOILUTSequence = [other]
    top = write_dicom(tmp_path / "top.dcm", grey12, RescaleSlope=slope, RescaleIntercept=intercept,
                      WindowCenter=center, WindowWidth=width, SharedFunctionalGroupsSequence=[width_only])
    np.testing.assert_array_equal(read_image(top, grey=True), read_image(classic, grey=True))


def test_a_window_of_ones_own_replaces_the_files(tmp_path, grey12):
    slope, intercept = 2.0, -1024.0
    hu = grey12 * slope + intercept
    own = dict(RescaleSlope=slope, RescaleIntercept=intercept, WindowCenter=400.0, WindowWidth=1500.0)
    lung = (-600.0, 1500.0)
    expected = naive_window(hu, *lung, 0.0, 1.0)
    path = write_dicom(tmp_path / "ct.dcm", grey12, **own)
    np.testing.assert_allclose(read_image(path, grey=True, dicom_window=lung)[..., 0], expected, atol=1e-6)
    assert not np.allclose(read_image(path, grey=True)[..., 0], expected, atol=1e-2)  # the file's own differs
    inverted = write_dicom(tmp_path / "ct1.dcm", grey12, photometric="MONOCHROME1", **own)
    np.testing.assert_allclose(read_image(inverted, grey=True, dicom_window=lung)[..., 0], 1 - expected, atol=1e-6)
    colour = write_dicom(tmp_path / "c.dcm", np.zeros((4, 4, 3), np.uint8), photometric="RGB")
    with pytest.raises(DataError, match="data.dicom_window windows grey images, but DICOM image .*c.dcm' is RGB"):
        read_image(colour, dicom_window=lung)


def test_a_dicom_window_is_checked_and_follows_the_run_to_predict(tmp_path, monkeypatch):
    from peerdistill.config import validate
    from peerdistill.errors import ConfigError
    from peerdistill.sidecar import model_info

    with pytest.raises(ConfigError, match="dicom_window"):
        validate({"data": {"kind": "image_folder", "root": "x", "dicom_window": [40, 0.5]}})  # width above 1
    with pytest.raises(ConfigError, match="data.dicom_window applies to data kind"):
        validate({"data": {"kind": "npz", "root": "x.npz", "dicom_window": [40, 400]}})
    meta = {"task": "classification", "input_shape": [1, 8, 8], "data_spec": {"dicom_window": [40.0, 400.0]}}
    assert model_info(meta, "probabilities")["dicom_window"] == [40.0, 400.0]  # also the exported file's JSON


def test_signed_pixels_without_a_window_use_the_signed_range(tmp_path):
    pixels = np.array([[-2048, 0], [1000, 2047]], np.int16)
    path = write_dicom(tmp_path / "s.dcm", pixels, signed=True)
    np.testing.assert_allclose(read_image(path, grey=True)[..., 0], (pixels + 2048) / 4095, rtol=1e-6)


def test_monochrome1_is_inverted_so_dense_is_bright(tmp_path, grey12):
    two = read_image(write_dicom(tmp_path / "m2.dcm", grey12), grey=True)
    one = read_image(write_dicom(tmp_path / "m1.dcm", grey12, photometric="MONOCHROME1"), grey=True)
    np.testing.assert_allclose(one, 1 - two, atol=1e-6)


def test_rgb_is_read_by_eight_bits_and_to_grey_by_luminance(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 7, 3)).astype(np.uint8)
    path = write_dicom(tmp_path / "c.dcm", rgb, photometric="RGB")
    np.testing.assert_allclose(read_image(path), rgb / 255, rtol=1e-6)
    np.testing.assert_allclose(read_image(path, grey=True)[..., 0], rgb @ np.array([0.299, 0.587, 0.114]) / 255,
                               rtol=1e-5)
    assert size_and_colour(path) == ((6, 7), True)


def test_resizing_matches_pillows_bilinear_on_the_scaled_values(tmp_path, grey12):
    from PIL import Image

    path = write_dicom(tmp_path / "r.dcm", grey12)
    resized = read_image(path, size=(6, 5), grey=True)
    expected = np.asarray(Image.fromarray((grey12 / 4095).astype(np.float32)).resize((5, 6), Image.BILINEAR))
    assert resized.shape == (6, 5, 1)
    np.testing.assert_allclose(resized[..., 0], expected, rtol=1e-6)


def test_what_cannot_be_read_is_named(tmp_path, grey12):
    (tmp_path / "not.dcm").write_bytes(b"just some text, not a DICOM file at all")
    with pytest.raises(DataError, match="not.dcm"):
        read_image(tmp_path / "not.dcm")
    frames = np.concatenate([grey12, grey12])
    path = write_dicom(tmp_path / "cine.dcm", frames, NumberOfFrames=2, Rows=12)
    with pytest.raises(DataError, match="2 frames"):
        read_image(path)
    with pytest.raises(DataError, match="DICOM is read for images, not masks"):
        read_mask(write_dicom(tmp_path / "mask.dcm", grey12))


def test_a_folder_of_dicom_x_rays_trains_and_is_predicted(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(2)
    for label, level in (("normal", 800), ("pneumonia", 3000)):
        (tmp_path / "xr" / label).mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(rng.normal(level, 300, (16, 16)), 0, 4095).astype(np.uint16)
            write_dicom(tmp_path / "xr" / label / f"{i}.dcm", pixels)
    data = build_data(DataSpec(kind="image_folder", root=str(tmp_path / "xr"), grey=True))
    assert data.input_shape == (1, 16, 16) and data.class_names == ["normal", "pneumonia"]
    with warnings.catch_warnings():  # a window on DICOM files windows something: nothing to say
        warnings.simplefilter("error", PeerdistillWarning)
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "xr"), grey=True, dicom_window=[1900, 3000]))
    # a CT soft-tissue window on these X-ray values whites them out
    with pytest.warns(PeerdistillWarning, match=r"data.dicom_window \[40.0, 400.0\] puts 9\d% of the pixels .* at "
                                                r"black or white"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "xr"), grey=True, dicom_window=[40, 400]))
    # a window whiting out half the images wholly, the other half not: said though the set's share is not
    with pytest.warns(PeerdistillWarning, match=r"data.dicom_window \[800.0, 1200.0\] puts [5-7]\d% of the pixels .* "
                                                r"and over 90% of the pixels of 10 of the 20 images"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "xr"), grey=True, dicom_window=[800, 1200]))
    for label in ("normal", "pneumonia"):  # the same images as PNGs: the window applies to none of them
        (tmp_path / "png" / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(tmp_path / "png" / label / f"{i}.png")
    with pytest.warns(PeerdistillWarning, match="data.dicom_window is set but the data at .*png' holds no DICOM file"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path / "png"), grey=True, dicom_window=[1900, 3000]))
    assert main(["train", f"out_dir={tmp_path}", "name=dcm", "data.kind=image_folder", f"data.root={tmp_path / 'xr'}",
                 "data.grey=true", "distill.preset=independent", "train.epochs=3", "train.batch_size=4",
                 "--quiet"]) == 0
    out = tmp_path / "pred.csv"
    assert main(["predict", str(tmp_path / "dcm"), str(tmp_path / "xr" / "pneumonia" / "0.dcm"),
                 str(tmp_path / "xr" / "normal" / "0.dcm"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["input"].endswith(".dcm") for r in rows] == [True, True]
    assert [r["predicted"] for r in rows] == ["pneumonia", "normal"]  # the classes differ in brightness
    # trained through a window of one's own, predicted through the same (the run records it)
    assert main(["train", f"out_dir={tmp_path}", "name=win", "data.kind=image_folder", f"data.root={tmp_path / 'xr'}",
                 "data.grey=true", "data.dicom_window=[1900,3000]", "distill.preset=independent", "train.epochs=1",
                 "train.batch_size=4", "--quiet"]) == 0
    import peerdistill.predict_inputs as inputs

    seen = []
    monkeypatch.setattr(inputs, "read_image", lambda *a, **k: seen.append(k["dicom_window"]) or read_image(*a, **k))
    assert main(["predict", str(tmp_path / "win"), str(tmp_path / "xr" / "normal" / "0.dcm"), "--out", str(out)]) == 0
    assert seen == [[1900.0, 3000.0]]
    # eval of a data section of its own: the files read otherwise than in training are said to be
    section = tmp_path / "other.yaml"
    section.write_text(f"data: {{kind: image_folder, root: '{tmp_path / 'xr'}', grey: true}}\n")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "win"), "--data", str(section), "--split", "all"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "trained on DICOM images through data.dicom_window [1900.0, 3000.0]; these are read through each " \
           "file's own window" in err and "set data.dicom_window=[1900.0, 3000.0]" in err
    assert main(["eval", str(tmp_path / "win"), "--data", str(section), "--split", "all",
                 "data.dicom_window=[1900,3000]"]) == 0
    assert "dicom_window" not in capsys.readouterr().err
    # the exported file carries the window in its JSON; an edited or older JSON is named
    import json

    onnx = tmp_path / "win.onnx"
    assert main(["export", str(tmp_path / "win"), "--out", str(onnx)]) == 0
    side = onnx.with_suffix(".json")
    exported = json.loads(side.read_text())
    assert exported["dicom_window"] == [1900.0, 3000.0]
    image = str(tmp_path / "xr" / "normal" / "0.dcm")
    for window, said in ((None, "does not say which DICOM window training read its images through"),
                         ([40, 400], r"window \[40, 400\] puts 9\d% of the inputs' pixels at black or white"),
                         ([700, 0], r"gives dicom_window \[700, 0\]: expected \[center, width\]")):
        side.write_text(json.dumps({k: v for k, v in exported.items() if k != "dicom_window"} if window is None
                                   else {**exported, "dicom_window": window}))
        capsys.readouterr()
        assert main(["predict", str(onnx), image, "--out", str(out)]) == (2 if window == [700, 0] else 0)
        assert re.search(said, " ".join(capsys.readouterr().err.split()))


def test_a_scanners_mr_file_is_windowed_by_its_own_header():
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("MR_small.dcm")  # shipped inside pydicom's wheel
    if path is None:
        pytest.skip("pydicom's test file MR_small.dcm is not installed")
    ds = pydicom.dcmread(path)
    bits = int(ds.BitsStored)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1  # signed pixels, no rescale
    expected = (naive_window(ds.pixel_array.astype(np.float64), float(ds.WindowCenter), float(ds.WindowWidth),
                             low, high) - low) / (high - low)
    np.testing.assert_allclose(read_image(path, grey=True)[..., 0], expected, atol=1e-6)


def test_an_inverse_presentation_lut_inverts_once(tmp_path, grey12):
    plain = read_image(write_dicom(tmp_path / "p.dcm", grey12), grey=True)
    inverse = read_image(write_dicom(tmp_path / "i.dcm", grey12, PresentationLUTShape="INVERSE"), grey=True)
    both = read_image(write_dicom(tmp_path / "b.dcm", grey12, photometric="MONOCHROME1", PresentationLUTShape="INVERSE"),
                      grey=True)  # as DX files of MONOCHROME1 say it: one inversion
    np.testing.assert_allclose(inverse, 1 - plain, atol=1e-6)
    np.testing.assert_allclose(both, 1 - plain, atol=1e-6)


def test_a_malformed_header_is_named(tmp_path, grey12):
    bad_window = write_dicom(tmp_path / "w.dcm", grey12, WindowCenter=100.0, WindowWidth=0.0)
    with pytest.raises(DataError, match="w.dcm"):
        read_image(bad_window)
    three = np.stack([grey12] * 3, axis=-1)
    mixed = write_dicom(tmp_path / "m.dcm", three.astype(np.uint8), photometric="MONOCHROME2")
    with pytest.raises(DataError, match="contradicts its data"):
        read_image(mixed)
    with pytest.raises(DataError, match=r"n.dcm' gives non-finite values through its rescale"):
        read_image(write_dicom(tmp_path / "n.dcm", grey12, RescaleSlope="NaN"))
    with pytest.raises(DataError, match=r"r.dcm' is MONOCHROME2 of 4x10 pixels, but its pixel data reads as"):
        read_image(write_dicom(tmp_path / "r.dcm", grey12, Rows=4))  # 12 rows of pixels: three frames' worth
    with pytest.raises(DataError, match=r"e.dcm' lacks Rows"):
        read_image(write_dicom(tmp_path / "e.dcm", grey12, Rows=None))
    with pytest.raises(DataError, match="does not fit its pixel data") as caught:
        read_image(write_dicom(tmp_path / "b.dcm", grey12, BitsAllocated=32))  # an uncompressed file
    assert "pylibjpeg" not in str(caught.value)


def test_dicom_images_named_as_exports_name_them_are_found_by_their_header(tmp_path, grey12, monkeypatch):
    """PACS and scanner exports name images by number or UID without a suffix, or .IMA: read by
    content; the DICOMDIR index and objects without pixels beside them are not images."""
    import peerdistill.data.image_io as image_io
    from peerdistill.data.image_io import image_files, image_id

    folder = tmp_path / "study"
    folder.mkdir()
    uid = "1.2.826.0.1.3680043.8.498.17"
    write_dicom(folder / "IM000001", grey12)
    write_dicom(folder / uid, grey12)
    write_dicom(folder / "IM000002.IMA", grey12)
    meta = FileMetaDataset()  # the export's index: a DICOM file without pixels
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.1.3.10", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    index = Dataset()
    index.file_meta, index.FileSetID = meta, "EXPORT"
    index.save_as(folder / "DICOMDIR", enforce_file_format=True)
    (folder / "README").write_text("not an image")
    (folder / "tiny").write_bytes(b"DICM")  # too short for a preamble
    (folder / "notes.json").write_bytes(grey12.tobytes())
    opened = []
    content = image_io.is_dicom_image_by_content
    monkeypatch.setattr(image_io, "is_dicom_image_by_content", lambda p: opened.append(p.name) or content(p))
    assert [p.name for p in image_files(folder)] == [uid, "IM000001", "IM000002.IMA"]
    assert "notes.json" not in opened  # files of other suffixes are not opened to list a folder
    assert read_image(folder / uid, grey=True).shape == (12, 10, 1)
    assert image_id(folder / uid) == uid  # the whole UID, not '1.2.826.0.1.3680043.8.498'
    assert [image_id(Path(n)) for n in ("x.dcm", "case_3.png", "IM000001", "IM000002.IMA", "scan.webp")] == \
        ["x", "case_3", "IM000001", "IM000002", "scan"]
    with pytest.raises(DataError, match="README"):
        read_image(folder / "README")
    # one that cannot be opened is named, not left out (its mask would be "without an image");
    # root reads any file here, so the refusal is the operating system's, as it would say it
    import builtins
    import peerdistill.data.dicom as dicom

    def no_access(path, *args, **kwargs):
        if Path(path).name == "IM000003":
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    (folder / "SERIES1").mkdir()  # a folder named as exports name files is not opened
    assert not image_io.is_dicom(folder / "SERIES1")
    write_dicom(folder / "IM000003", grey12)
    monkeypatch.setattr(dicom, "open", no_access, raising=False)
    with pytest.raises(PermissionError, match="IM000003"):
        image_files(folder)


def test_uid_named_dicom_images_pair_with_their_png_masks(tmp_path):
    rng = np.random.default_rng(3)
    for d in ("images", "masks"):
        (tmp_path / "seg" / d).mkdir(parents=True)
    uids = [f"1.2.826.0.1.3680043.8.498.{i}" for i in range(6)]
    for i, uid in enumerate(uids):
        mask = np.zeros((12, 10), np.uint8)
        mask[2:6 + i % 3, 3:8] = 255
        write_dicom(tmp_path / "seg" / "images" / uid, np.where(mask > 0, 3000, 600) + rng.integers(0, 50, (12, 10)))
        Image.fromarray(mask).save(tmp_path / "seg" / "masks" / f"{uid}.png")
    data = build_data(DataSpec(kind="folders", root=str(tmp_path / "seg"), grey=True, binary_masks=True))
    files = [Path(f).name for split in ("train", "val", "test") for f in data.info["files"][split]]
    assert sorted(files) == sorted(uids)  # six distinct ids, each image with its own mask
    x, y = data.train.x, data.train.y
    assert ((x[:, 0] > x[:, 0].mean()) == (y == 1)).all()  # bright where the mask marks the object


def test_uid_named_inputs_keep_their_whole_names_in_predict_and_in_box_ids(tmp_path, grey12):
    from peerdistill.data.detection import _by_stem
    from peerdistill.predict_inputs import read_inputs

    uids = ["1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"]
    for uid in uids:
        write_dicom(tmp_path / uid, grey12)
    read = read_inputs([str(tmp_path)], channels=1, size=(12, 10))
    assert read.stems == uids  # each prediction file is named after its own image
    assert sorted(_by_stem(tmp_path)) == uids


def test_a_rescale_slope_or_intercept_alone_is_applied_with_the_others_default(tmp_path, grey12):
    """One rule for the transform and the scale it is divided by: the missing one is 1 (slope)
    or 0 (intercept), as viewers take it; pydicom alone would skip the rescale."""
    reference = read_image(write_dicom(tmp_path / "r.dcm", grey12, RescaleSlope=1, RescaleIntercept=-1024), grey=True)
    alone = read_image(write_dicom(tmp_path / "i.dcm", grey12, RescaleIntercept=-1024), grey=True)
    np.testing.assert_array_equal(alone, reference)
    np.testing.assert_allclose(alone[..., 0], grey12 / 4095, atol=1e-6)  # (-1024 .. 3071 scaled by its own range)
    window = (40.0, 400.0)  # in Hounsfield units: the intercept must be applied for it to land right
    hu = grey12.astype(np.float64) - 1024
    by_hand = np.clip((hu - 39.5) / 399 + 0.5, 0, 1)
    np.testing.assert_allclose(read_image(tmp_path / "i.dcm", grey=True, dicom_window=window)[..., 0], by_hand, atol=1e-6)
    slope = read_image(write_dicom(tmp_path / "s.dcm", grey12, RescaleSlope=2), grey=True)
    np.testing.assert_allclose(slope[..., 0], grey12 / 4095, atol=1e-6)
    with pytest.raises(DataError, match="RescaleSlope 0, which maps every pixel to one value"):
        read_image(write_dicom(tmp_path / "z.dcm", grey12, RescaleSlope=0, RescaleIntercept=0))
    plain = read_image(write_dicom(tmp_path / "p.dcm", grey12), grey=True)
    for empty in ("RescaleSlope", "RescaleIntercept"):  # an empty element is an unknown value: as if absent
        np.testing.assert_array_equal(read_image(write_dicom(tmp_path / "e.dcm", grey12, **{empty: ""}), grey=True),
                                      plain)


def _patched(path, old: bytes, new: bytes):
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))
    return path


def test_a_damaged_header_is_one_message_naming_the_file(tmp_path, grey12):
    frames = _patched(write_dicom(tmp_path / "f.dcm", grey12, NumberOfFrames="7"), b"\x28\x00\x08\x00IS\x02\x007 ",
                      b"\x28\x00\x08\x00IS\x02\x00ab")
    rows = _patched(write_dicom(tmp_path / "r.dcm", grey12), b"\x28\x00\x10\x00US\x02\x00", b"\x28\x00\x10\x00US\x03\x00")
    private = write_dicom(tmp_path / "p.dcm", grey12)
    import pydicom

    ds = pydicom.dcmread(private)
    ds.file_meta.TransferSyntaxUID = "1.2.840.113619.5.2"  # GE's private syntax of old exports
    ds.save_as(private)
    for path, message in ((frames, "gives NumberOfFrames 'ab', not a whole number"),
                          (rows, "cannot read the header of DICOM image"),
                          (private, "transfer syntax 1.2.840.113619.5.2 is not one pydicom knows")):
        with pytest.raises(DataError, match=message) as info:
            read_image(path)
        assert str(path) in str(info.value)
    png = tmp_path / "png.dcm"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, format="PNG")
    with pytest.raises(DataError, match="is not a DICOM file: no DICOM header"):
        read_image(png)
    lower = read_image(write_dicom(tmp_path / "l.dcm", grey12, photometric="monochrome2"), grey=True)
    np.testing.assert_allclose(lower[..., 0], grey12 / 4095, rtol=1e-6)


def test_a_data_set_without_preamble_under_an_export_name_is_listed_and_read(tmp_path, grey12):
    import pydicom

    export = tmp_path / "a"
    export.mkdir()
    part10 = write_dicom(export / "IM000001", grey12)
    meta_kept = export / "IM000002"  # the preamble and 'DICM' cut, the file meta group kept
    meta_kept.write_bytes(part10.read_bytes()[132:])
    raw = export / "IM000003"  # a data set alone, as old archives hold them: no preamble, no file meta
    ds = pydicom.dcmread(part10)
    ds.preamble = None
    del ds.file_meta
    with open(raw, "wb") as f:
        ds.save_as(f, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert meta_kept.read_bytes()[:2] == b"\x02\x00" and raw.read_bytes()[:2] == b"\x08\x00"
    np.testing.assert_array_equal(read_image(meta_kept, grey=True), read_image(part10, grey=True))
    np.testing.assert_array_equal(read_image(raw, grey=True), read_image(part10, grey=True))
    from peerdistill.data.dicom import is_dicom_image_by_content

    assert is_dicom_image_by_content(raw) and is_dicom_image_by_content(meta_kept)
    (export / "notes").write_text("not an image")
    assert not is_dicom_image_by_content(export / "notes")


def test_a_set_whose_files_are_scaled_in_different_ways_is_said_to_be(tmp_path, grey12):
    """Some files with their own window, some without: 40 HU lands on different values."""
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(4):
            window = dict(WindowCenter=2000, WindowWidth=4000) if i % 2 else {}
            write_dicom(tmp_path / label / f"{i}.dcm", grey12, **window)
    spec = dict(kind="image_folder", root=str(tmp_path), grey=True)
    with pytest.warns(PeerdistillWarning, match=r"put on \[0, 1\] in different ways \(4 by their 12-bit stored range, "
                                                r"4 by their own window\)"):
        build_data(DataSpec(**spec))
    with warnings.catch_warnings():  # one window for all: nothing to say (of the scaling; its files are alike)
        warnings.simplefilter("error", PeerdistillWarning)
        build_data(DataSpec(**spec, dicom_window=[2000, 4000]))


def test_files_read_through_own_windows_unlike_each_other_are_said_to_be(tmp_path, grey12):
    """A lung window beside a soft-tissue one: each file through its own, in silence, put the same
    tissue at 0.9 in one and 0.4 in the other. Windows set per image, alike, say nothing."""
    from peerdistill.data.dicom import unlike_windows

    # by hand: twice as wide or narrow, or a center a quarter of the wider width away, is unlike
    assert unlike_windows({(40, 400): 5, (40, 800): 1, (40, 801): 1, (140, 400): 1, (141, 400): 1, (40, 199): 1}) == [
        (40, 801), (141, 400), (40, 199)]
    assert unlike_windows({}) == []
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(4):
            window = dict(WindowCenter=2000, WindowWidth=4000) if i % 2 else dict(WindowCenter=[600, 2000],
                                                                                  WindowWidth=[1000, 4000])
            write_dicom(tmp_path / label / f"{i}.dcm", grey12, **window)
    spec = dict(kind="image_folder", root=str(tmp_path), grey=True)
    with pytest.warns(PeerdistillWarning, match=r"read through their own windows, and 4 of them through windows unlike "
                                                r"the 4 images' \[(2000, 4000|600, 1000)\] \(e.g. \[(600, 1000|2000, "
                                                r"4000)\]: .*set data.dicom_window=\[CENTER, WIDTH\]"):
        build_data(DataSpec(**spec))
    empty = write_dicom(tmp_path / "empty.dcm", grey12, WindowCenter=None, WindowWidth=None)  # present, empty
    from peerdistill.data.dicom import read_dicom

    assert read_dicom(empty, grey=True).shape == (12, 10, 1)  # (it failed on the window's bookkeeping)
    empty.unlink()
    for label in ("a", "b"):  # each its own window, alike (a scanner's per-image window): nothing to say
        for i in range(4):
            write_dicom(tmp_path / label / f"{i}.dcm", grey12, WindowCenter=2000 + 100 * i, WindowWidth=4000 - 200 * i)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)
        build_data(DataSpec(**spec))


def test_a_truncated_dicom_and_a_png_without_suffix_are_not_left_out_unseen(tmp_path, grey12):
    from peerdistill.data.image_io import image_files

    folder = tmp_path / "b"
    folder.mkdir()
    good = write_dicom(folder / "IM000001", grey12)
    (folder / "IM000002").write_bytes(good.read_bytes()[:200])  # cut off: 'DICM' at 128, no more
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "IM000003", format="PNG")
    (folder / "README").write_text("notes")
    with pytest.warns(DataNote, match=r"1 file\(s\) in .* without an image suffix are images of another "
                                                r"format than DICOM \('IM000003' is PNG\) and are not read: give them "
                                                r"their suffix \(\.png\)"):
        listed = image_files(folder)
    assert [p.name for p in listed] == ["IM000001", "IM000002"]  # the truncated one listed: reading it says why
    with pytest.raises(DataError, match="IM000002"):
        read_image(folder / "IM000002")
    # images of a format Pillow opens but peerdistill does not read: said too (review 48f)
    other = tmp_path / "webp"
    other.mkdir()
    for name in ("a.webp", "b.WEBP", "c.jfif", "d.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(other / name, format="PNG")  # (the suffix is what counts)
    for name in ("notes.txt", "scan.h5", "movie.mpg"):  # not pictures: not said to be
        (other / name).write_text("x")
    with pytest.warns(DataNote, match=r"^3 image file\(s\) in .* have a suffix not read here \(\.jfif, "
                                                r"\.webp; 'a.webp'\.\.\.\) and are left out: give a JPEG or PNG its own "
                                                r"suffix \(\.jpg, \.png\), or convert the others to PNG \(TIFF for "
                                                r"16-bit\)$"):
        assert [p.name for p in image_files(other)] == ["d.png"]


def _voi_lut(entries: int, first: int, bits: int, table) -> Dataset:
    """A VOI LUT item (PS3.3 C.11.2.1.1): descriptor [entries, first value mapped, bits], 16-bit words."""
    import struct

    from pydicom.dataelem import DataElement

    item = Dataset()
    item.add(DataElement(0x00283002, "US", [entries, first % 65536, bits]))  # (US: how implicit VR reads it)
    item.add(DataElement(0x00283006, "OW", struct.pack(f"<{len(table)}H", *[int(v) for v in table])))
    return item


def test_a_voi_lut_maps_as_the_standard_says(tmp_path):
    """Inputs below the first value mapped take the first entry, above the last the last; the
    output is divided by 2^bits - 1. An 8-bit LUT of 4096 entries (pydicom 3.0 wraps its
    indices) and a CT LUT from -1000 HU (its first value read as unsigned) included."""
    from pydicom.sequence import Sequence

    stored = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)

    def by_hand(values, first, table, bits):
        index = np.clip(np.floor(values).astype(np.int64) - first, 0, len(table) - 1)
        return np.asarray(table)[index] / (2**bits - 1)

    eight = np.arange(4096) // 16  # 0 .. 255
    path = write_dicom(tmp_path / "b.dcm", stored, VOILUTSequence=Sequence([_voi_lut(4096, 0, 8, eight)]))
    np.testing.assert_allclose(read_image(path, grey=True)[..., 0], by_hand(stored, 0, eight, 8), atol=1e-6)
    ct = np.round(4095 * np.clip((np.arange(2048) - 1000 + 1000) / 1400, 0, 1)).astype(int)  # -1000 .. 1047 HU
    path = write_dicom(tmp_path / "c.dcm", stored, VOILUTSequence=Sequence([_voi_lut(2048, -1000, 12, ct)]),
                       RescaleSlope=1, RescaleIntercept=-1024)
    np.testing.assert_allclose(read_image(path, grey=True)[..., 0], by_hand(stored - 1024.0, -1000, ct, 12), atol=1e-6)
    assert read_image(path, grey=True).max() == 1.0  # not all black
    short = write_dicom(tmp_path / "s.dcm", stored, VOILUTSequence=Sequence([_voi_lut(4096, 0, 16, range(100))]))
    with pytest.raises(DataError, match="its VOI LUT holds 100 entries where its descriptor says 4096"):
        read_image(short)


def test_float_pixel_data_and_one_sample_colour_are_named_for_what_they_are(tmp_path, grey12):
    """A parametric map (float pixels) and an RGB header over one sample per pixel each get
    their own message, not the generic 'no pixel data' or 'colour model not read'."""
    import pydicom

    path = write_dicom(tmp_path / "f.dcm", grey12)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.FloatPixelData = grey12.astype(np.float32).tobytes()
    ds.save_as(path)
    with pytest.raises(DataError, match=r"f.dcm' holds float pixel data \(a parametric map\)"):
        read_image(path)
    with pytest.raises(DataError, match=r"o.dcm' says RGB colour but holds one sample per pixel"):
        read_image(write_dicom(tmp_path / "o.dcm", grey12, photometric="RGB"))


def test_a_damaged_data_set_without_preamble_is_not_taken_for_an_image(tmp_path, grey12):
    """Bytes that only begin like a data set (group 0008, no 'DICM') and cannot be parsed are
    not listed; a Part 10 file damaged the same way is (reading it says what is wrong)."""
    import pydicom

    from peerdistill.data.dicom import is_dicom_image_by_content

    part10 = write_dicom(tmp_path / "IM000001", grey12)
    ds = pydicom.dcmread(part10)
    ds.preamble = None
    del ds.file_meta
    raw = tmp_path / "IM000002"
    with open(raw, "wb") as f:
        ds.save_as(f, implicit_vr=False, little_endian=True, enforce_file_format=False)
    rows = (b"\x28\x00\x10\x00US\x02\x00", b"\x28\x00\x10\x00US\x03\x00")  # Rows 3 bytes long: unreadable
    assert raw.read_bytes()[:2] == b"\x08\x00" and is_dicom_image_by_content(raw)
    _patched(raw, *rows)
    assert not is_dicom_image_by_content(raw)
    assert is_dicom_image_by_content(_patched(part10, *rows))


def test_a_rescale_slope_alone_puts_a_users_window_at_the_slopes_values(tmp_path, grey12):
    # the missing intercept is 0: a window in the rescaled values lands on slope * stored
    path = write_dicom(tmp_path / "s.dcm", grey12, RescaleSlope=2)
    window = (4000.0, 2000.0)
    by_hand = np.clip((grey12 * 2.0 - 3999.5) / 1999 + 0.5, 0, 1)
    np.testing.assert_allclose(read_image(path, grey=True, dicom_window=window)[..., 0], by_hand, atol=1e-6)


def test_a_set_scaled_by_voi_luts_and_half_windows_says_each_way(tmp_path, grey12):
    """A file with a VOI LUT is scaled by it; one with a window center but no width has no
    window, so it is scaled by its stored range."""
    from pydicom.sequence import Sequence

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(4):
            lut = dict(VOILUTSequence=Sequence([_voi_lut(4096, 0, 16, np.arange(4096) * 16)]))
            write_dicom(tmp_path / label / f"{i}.dcm", grey12, **(lut if i % 2 else {"WindowCenter": 2000}))
    with pytest.warns(PeerdistillWarning, match=r"in different ways \(4 by their 12-bit stored range, 4 by their "
                                                r"VOI LUT\)"):
        build_data(DataSpec(kind="image_folder", root=str(tmp_path), grey=True))


def test_a_voi_lut_at_its_edges_first_values_fractions_and_entries_past_its_bits(tmp_path):
    """Unsigned values from 40000 keep their first value mapped unsigned; values with a fraction
    (a slope of 0.5) are looked up by their floor; a LUT whose entries pass its descriptor's bits
    is divided by its largest entry; one entry short of its descriptor is refused."""
    from pydicom.sequence import Sequence

    def by_hand(values, first, table, scale):
        index = np.clip(np.floor(values).astype(np.int64) - first, 0, len(table) - 1)
        return np.asarray(table)[index] / scale

    high = (40000 + np.arange(256, dtype=np.uint16).reshape(16, 16) * 100).astype(np.uint16)  # 40000 .. 65500
    table = np.arange(4096) * 16
    path = write_dicom(tmp_path / "u.dcm", high, bits_stored=16,
                       VOILUTSequence=Sequence([_voi_lut(4096, 40000, 16, table)]))
    np.testing.assert_allclose(read_image(path, grey=True)[..., 0], by_hand(high, 40000, table, 65535), atol=1e-6)
    odd = (np.arange(256, dtype=np.uint16) * 16 + 3).reshape(16, 16)  # times 0.5: 8i + 1.5
    half = np.arange(2048) * 16
    path = write_dicom(tmp_path / "h.dcm", odd, VOILUTSequence=Sequence([_voi_lut(2048, 0, 16, half)]),
                       RescaleSlope=0.5, RescaleIntercept=0)
    np.testing.assert_allclose(read_image(path, grey=True)[..., 0], by_hand(odd * 0.5, 0, half, 65535), atol=1e-6)
    wide = np.arange(4096) // 4  # 0 .. 1023 in a LUT that says 8 bits
    path = write_dicom(tmp_path / "w.dcm", odd, VOILUTSequence=Sequence([_voi_lut(4096, 0, 8, wide)]))
    np.testing.assert_allclose(read_image(path, grey=True)[..., 0], by_hand(odd, 0, wide, 1023), atol=1e-6)
    every = write_dicom(tmp_path / "e.dcm", high, bits_stored=16,  # 0 entries in a descriptor: 2^16
                        VOILUTSequence=Sequence([_voi_lut(0, 0, 16, np.arange(65536))]))
    np.testing.assert_allclose(read_image(every, grey=True)[..., 0], high / 65535, atol=1e-6)
    short = write_dicom(tmp_path / "s.dcm", odd, VOILUTSequence=Sequence([_voi_lut(4096, 0, 16, range(4095))]))
    with pytest.raises(DataError, match="its VOI LUT holds 4095 entries where its descriptor says 4096"):
        read_image(short)


def test_a_negative_slope_and_a_modality_lut_are_scaled_by_the_range_they_output(tmp_path, grey12):
    flipped = write_dicom(tmp_path / "n.dcm", grey12, RescaleSlope=-1, RescaleIntercept=4095)
    np.testing.assert_allclose(read_image(flipped, grey=True)[..., 0], (4095 - grey12) / 4095, atol=1e-6)
    # with the file's own window too: dense (a high value after the slope) stays bright
    windowed = write_dicom(tmp_path / "w.dcm", grey12, RescaleSlope=-1, RescaleIntercept=4095,
                           WindowCenter=2000.0, WindowWidth=3000.0)
    expected = naive_window(4095.0 - grey12, 2000.0, 3000.0, 0.0, 1.0)
    np.testing.assert_allclose(read_image(windowed, grey=True)[..., 0], expected, atol=1e-6)
    assert np.corrcoef(read_image(windowed, grey=True).ravel(), 4095.0 - grey12.ravel())[0, 1] > 0.99
    from pydicom.sequence import Sequence

    table = (4095 - np.arange(4096)) * 16  # a 16-bit modality LUT, inverting
    lut = write_dicom(tmp_path / "m.dcm", grey12, ModalityLUTSequence=Sequence([_voi_lut(4096, 0, 16, table)]))
    np.testing.assert_allclose(read_image(lut, grey=True)[..., 0], table[grey12] / 65535, atol=1e-6)


def test_a_files_window_is_preferred_to_its_voi_lut_and_an_inverse_lut_inverts_a_users_window(tmp_path, grey12):
    from pydicom.sequence import Sequence

    lut = Sequence([_voi_lut(4096, 0, 16, np.arange(4096) * 16)])
    both = write_dicom(tmp_path / "b.dcm", grey12, WindowCenter=1000.0, WindowWidth=800.0, VOILUTSequence=lut)
    expected = naive_window(grey12.astype(np.float64), 1000.0, 800.0, 0, 4095) / 4095
    np.testing.assert_allclose(read_image(both, grey=True)[..., 0], expected, atol=1e-6)
    window = (2000.0, 1000.0)
    inverse = write_dicom(tmp_path / "i.dcm", grey12, PresentationLUTShape="INVERSE")
    users = naive_window(grey12.astype(np.float64), *window, 0.0, 1.0)
    np.testing.assert_allclose(read_image(inverse, grey=True, dicom_window=window)[..., 0], 1 - users, atol=1e-6)


def test_a_compressed_variant_pydicom_has_no_decoder_for_is_not_called_damaged():
    """Review 48f: Pillow refusing a 12-bit JPEG DICOM ('does not support') was said to be damaged data."""
    from pydicom.uid import JPEGExtended12Bit

    from peerdistill.data.dicom import _why_undecoded

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGExtended12Bit
    said = _why_undecoded(ds, RuntimeError("Pillow does not support 'JPEG Extended' for samples with 12 bits"))
    assert said == "; compressed files need a decoder, e.g. pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
    assert _why_undecoded(ds, RuntimeError("Corrupt JPEG data: premature end")) == "; its compressed data is damaged"
