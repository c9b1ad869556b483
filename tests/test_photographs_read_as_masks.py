"""Swapped data.images and data.masks with data.binary_masks: the photographs, read as masks,
trained on some 78% of their pixels as foreground with no word. Masks most of whose pixels sit
at many mid-grey levels, beside images that read as masks, are refused; JPEG binary masks with
soft edges, masks of visible class levels (0/128/255) and class-index masks are not, and soft
masks (probability maps, blurred, 16-bit, small JPEG masks of three levels) beside photographs
load as before, with a word."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.data.image_io import MaskValues
from peerdistill.errors import DataError

SIZE = 32


def _photo(rng, size=SIZE) -> np.ndarray:
    """A colour frame: a smooth shading with texture noise, as a camera's."""
    yy, xx = np.mgrid[:size, :size] / size
    base = 60 + 120 * (0.5 * yy + 0.5 * xx)[..., None] * np.array([1.0, 0.7, 0.5])
    return np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)


def _soft_disc(i: int, levels=(255,), size=SIZE) -> np.ndarray:
    """A 0/255 disc (or a disc in a ring, at ``levels``) whose edge is blurred over a few pixels,
    as an anti-aliased mask."""
    yy, xx = np.mgrid[:size, :size]
    distance = np.hypot(yy - size / 2 - i % 3, xx - size / 2 + i % 2)
    mask = np.zeros((size, size))
    for level, radius in zip(levels, (0.375 * size, 0.19 * size)):
        mask = np.where(distance < radius, level, mask)
    blurred = sum(np.roll(np.roll(mask, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    return blurred.astype(np.uint8)


def _pairs(root, masks_of, n=8, suffix=".jpg", size=SIZE):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(_photo(rng, size)).save(root / "images" / f"frame{i}.jpg", quality=90)
        Image.fromarray(masks_of(i)).save(root / "masks" / f"frame{i}{suffix}", **(
            {"quality": 75} if suffix == ".jpg" else {}))


def test_photographs_read_as_masks_are_refused_as_the_folders_swapped(tmp_path):
    _pairs(tmp_path, _soft_disc)
    spec = DataSpec(kind="folders", root=str(tmp_path), images="masks", masks="images", binary_masks=True)
    with pytest.raises(DataError) as caught:
        build_data(spec)
    message = str(caught.value)
    assert f"the masks in '{tmp_path / 'images'}' look like photographs, not masks: 8 of 8 have over 25%" in message
    assert "'frame0.jpg' " in message and "'frame1.jpg' " in message and "..." in message
    assert (f"and the files in '{tmp_path / 'masks'}', read as masks, look like masks (8 of the first 8 have at "
            "most 25% of their pixels mid-grey). data.images") in message
    assert ("data.images and data.masks look swapped (now data.images=masks, data.masks=images): check the "
            "folders, and swap them if so ('data.images=images data.masks=masks' on the command line)") in message
    assert "threshold" not in message  # (the binary rule thresholds soft masks itself)


def test_jpeg_binary_masks_with_soft_edges_are_read_in_the_right_order(tmp_path):
    _pairs(tmp_path, _soft_disc)
    splits = build_data(DataSpec(kind="folders", root=str(tmp_path), binary_masks=True))
    assert splits.num_classes == 2
    assert 0.3 < float(splits.train.y.float().mean()) < 0.6  # the discs, a radius of 12 in 32x32


@pytest.mark.filterwarnings("ignore:with data.binary_masks, masks of the labels")
@pytest.mark.parametrize("masks_of, suffix, size", [
    # visible class levels (0/128/255): a third of the pixels mid-grey, but at a few levels (JPEG noise and blurred
    # edges spread them: at 64x64 and less in JPEG, edges and noise are most of them, and they read as soft masks:
    # test_soft_masks_beside_photographs_load_as_before)
    (lambda i: _soft_disc(i, levels=(128, 255), size=96), ".jpg", 96),
    (lambda i: _soft_disc(i, levels=(128, 255)), ".png", SIZE),
    (lambda i: (_soft_disc(i) > 127).astype(np.uint8) * np.uint8(1 + i % 3), ".png", SIZE),  # class indices 0..3
])
def test_masks_of_a_few_levels_are_never_taken_for_photographs(tmp_path, masks_of, suffix, size):
    _pairs(tmp_path, masks_of, suffix=suffix, size=size)
    build_data(DataSpec(kind="folders", root=str(tmp_path), binary_masks=True))


def _cone(i: int, size=SIZE, top=255) -> np.ndarray:
    """A probability map: 1 at a point near the centre, falling linearly to 0 at the edge."""
    yy, xx = np.mgrid[:size, :size]
    distance = np.hypot(yy - size / 2 - i % 3, xx - size / 2 + i % 2)
    return np.round(top * np.clip(1 - distance / (0.6 * size), 0, 1)).astype(np.uint8 if top <= 255 else np.uint16)


def _blurred_disc(i: int, size=SIZE) -> np.ndarray:
    disc = Image.fromarray(np.where(np.hypot(*(np.mgrid[:size, :size] - size / 2 + i % 2)) < 0.3 * size, 255, 0)
                           .astype(np.uint8))
    return np.asarray(disc.filter(ImageFilter.GaussianBlur(4)))


def _sharp_levels(i: int, size: int) -> np.ndarray:
    """A 255 disc in a 128 ring on 0, edges sharp: saved as a small JPEG, its noise spreads the levels."""
    distance = np.hypot(*(np.mgrid[:size, :size] - size / 2 + i % 2))
    return np.where(distance < 0.19 * size, 255, np.where(distance < 0.375 * size, 128, 0)).astype(np.uint8)


@pytest.mark.parametrize("masks_of, suffix, size, half", [
    (_cone, ".png", SIZE, 127),  # a probability map
    (_blurred_disc, ".png", SIZE, 127),
    (lambda i: _cone(i, top=65535), ".png", SIZE, 32767),  # 16-bit
    (lambda i: _sharp_levels(i, 64), ".jpg", 64, 127),
    (lambda i: _sharp_levels(i, 32), ".jpg", 32, 127),
])
def test_soft_masks_beside_photographs_load_as_before(tmp_path, masks_of, suffix, size, half):
    """Masks that look like photographs, but beside photographs (no swap): read by the binary rule
    as they were before the swap was refused, foreground above half the scale, with a word."""
    from peerdistill.data.image_io import photograph_like, read_mask_values

    _pairs(tmp_path, masks_of, suffix=suffix, size=size)
    files = sorted((tmp_path / "masks").iterdir())
    assert len(photograph_like([read_mask_values(p, None, True) for p in files])) == 8  # what the refusal saw
    with pytest.warns(UserWarning, match=rf"with data.binary_masks, 8 of the 8 masks in '.*masks' hold over 25% of "
                                         rf"their pixels at many grey levels .*foreground where a value is above "
                                         rf"{half}, half the scale"):
        splits = build_data(DataSpec(kind="folders", root=str(tmp_path), binary_masks=True))
    y = torch.cat([splits.train.y, splits.val.y, splits.test.y]).float()
    foreground = np.mean([np.asarray(Image.open(p)).astype(np.int64) > half for p in files])  # the files, read apart
    assert float(y.mean()) == pytest.approx(foreground)


def test_a_few_photographs_among_masks_are_left_to_the_other_checks():
    from peerdistill.data.image_io import photograph_like

    rng = np.random.default_rng(0)
    masks = [MaskValues(_soft_disc(i), True, f"m{i}.jpg") for i in range(3)]
    photos = [MaskValues(_photo(rng).max(axis=-1), True, f"p{i}.jpg") for i in range(2)]
    assert photograph_like(masks + photos[:1]) == []
    assert [name for name, _ in photograph_like(masks[:1] + photos)] == ["p0.jpg", "p1.jpg"]


def test_boxes_from_swapped_folders_are_refused_alike(tmp_path):
    """Boxes drawn from masks (data kind mask_boxes, for detection) read photographs swapped in as
    masks into one box each frame: refused as the segmentation folders are."""
    _pairs(tmp_path, _soft_disc)
    spec = DataSpec(kind="mask_boxes", root=str(tmp_path), images="masks", masks="images")
    with pytest.raises(DataError, match=r"^for boxes from masks, the masks in '.*images' look like photographs, not "
                                        r"masks: 8 of 8 .*\(now data.images=masks, data.masks=images\): check the "
                                        r"folders, and swap them if so \('data.images=images data.masks=masks' on "
                                        r"the command line\)"):
        build_data(spec)
    build_data(spec.model_copy(update={"images": "images", "masks": "masks"}))  # the right way round: read


def test_boxes_from_swapped_folders_name_the_keys_as_given(tmp_path, monkeypatch):
    """The folders named from data.root as the config gives them (a nested data.images was named
    by its last part, and a relative data.root beside an absolute data.images stopped the check
    with a traceback)."""
    _pairs(tmp_path / "sub", _soft_disc)
    spec = DataSpec(kind="mask_boxes", root=str(tmp_path), images="sub/masks", masks="sub/images")
    with pytest.raises(DataError, match=r"\(now data.images=sub/masks, data.masks=sub/images\): check the folders, and "
                                        r"swap them if so \('data.images=sub/images data.masks=sub/masks' on"):
        build_data(spec)
    monkeypatch.chdir(tmp_path)
    spec = DataSpec(kind="mask_boxes", root=".", images=str(tmp_path / "sub" / "masks"), masks="sub/images")
    with pytest.raises(DataError, match=r"look like photographs, not masks"):
        build_data(spec)
