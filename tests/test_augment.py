"""Rotation, zoom, elastic warp and intensity augmentation against computations written out by hand."""

import math

import numpy as np
import pytest
import torch

from peerdistill.build import augmentation
from peerdistill.config import load_config
from peerdistill.data.image_io import IGNORE
from peerdistill.detection import HeadLayout
from peerdistill.errors import ConfigError
from peerdistill.tasks import intensity
from peerdistill.tasks.augment import (Augmentation, rotate_images, rotate_masks, warp_images, warp_masks,
                                       zoom_images, zoom_masks)
from peerdistill.tasks.detection import DetectionTask

MEAN, STD = torch.tensor([0.4, 0.6]), torch.tensor([0.2, 0.05])


def standardised(raw: torch.Tensor) -> torch.Tensor:
    return (raw - MEAN.view(1, -1, 1, 1)) / STD.view(1, -1, 1, 1)


def raw_of(x: torch.Tensor) -> torch.Tensor:
    return x * STD.view(1, -1, 1, 1) + MEAN.view(1, -1, 1, 1)


@pytest.fixture
def raw():
    return torch.rand(3, 2, 9, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_brightness_shifts_by_standard_deviations_of_the_training_images(raw):
    shift = torch.tensor([0.5, -0.25, 0.0], dtype=torch.float64)
    out = raw_of(intensity.brightness(standardised(raw), shift))
    assert torch.allclose(out, raw + shift.view(-1, 1, 1, 1) * STD.view(1, -1, 1, 1))


def test_contrast_scales_deviations_from_each_channels_mean(raw):
    factor = torch.tensor([0.8, 1.2, 1.0], dtype=torch.float64)
    out = raw_of(intensity.contrast(standardised(raw), factor))
    for b in range(3):
        for c in range(2):
            m = raw[b, c].mean()
            assert torch.allclose(out[b, c], (raw[b, c] - m) * factor[b] + m)


def test_gamma_acts_on_each_channel_rescaled_to_its_range(raw):
    exponent = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    out = raw_of(intensity.gamma(standardised(raw), exponent))
    for b in range(3):
        for c in range(2):
            lo, hi = float(raw[b, c].min()), float(raw[b, c].max())
            expected = ((raw[b, c] - lo) / (hi - lo)) ** float(exponent[b]) * (hi - lo) + lo
            assert torch.allclose(out[b, c], expected)


def test_gamma_leaves_a_flat_channel_flat():
    flat = torch.full((1, 1, 4, 4), 0.3)
    assert torch.allclose(intensity.gamma(flat, torch.tensor([2.0])), flat)


def test_noise_has_the_asked_standard_deviation_and_one_field_for_all_channels():
    x = torch.zeros(2, 3, 200, 200, dtype=torch.float64)
    sigma = torch.tensor([0.5, 0.0], dtype=torch.float64)
    residual = intensity.noise(x, sigma, torch.Generator().manual_seed(1)) - x
    assert float(residual[0].std()) == pytest.approx(0.5, rel=0.02)
    assert float(residual[0].mean()) == pytest.approx(0.0, abs=0.01)
    assert torch.equal(residual[0, 0], residual[0, 1]) and torch.equal(residual[0, 0], residual[0, 2])  # grey stays grey
    assert torch.allclose(residual[1], torch.zeros_like(residual[1]), atol=1e-12)


def test_strengths_mean_the_same_whatever_the_raw_scale():
    # the same picture stored as 8-bit fractions and as Hounsfield-like values: the data's own
    # standardisation (each split by the training split's statistics) brings both to one scale,
    # so the same draws give the same augmented images; augmenting the raw values would not
    from peerdistill.data.splits import DataSplits

    picture = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])
    aug = Augmentation(("brightness", "contrast", "gamma", "noise"))
    outs = []
    for scale, offset in ((1.0, 0.0), (1500.0, -1000.0)):
        stored = (picture * scale + offset).float()
        splits = DataSplits.from_arrays(stored, labels, stored[:2], labels[:2], stored[:2], labels[:2])
        assert splits.train.x.abs().max() < 10  # standardised, whatever it was stored as
        outs.append(aug.images(splits.train.x, None, torch.Generator().manual_seed(6))[0])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)
    raw = aug.images(picture.float() * 1500 - 1000, None, torch.Generator().manual_seed(6))[0]
    assert not torch.allclose((raw - raw.mean()) / raw.std(), outs[0], atol=1e-2)


def naive_rotation(labels: np.ndarray, degrees: float, fill: int) -> np.ndarray:
    """Nearest-neighbour rotation about the centre ((W - 1) / 2, (H - 1) / 2), counter-clockwise
    as shown with row 0 on top: each output pixel reads the input pixel it came from."""
    h, w = labels.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = math.radians(degrees)
    out = np.full_like(labels, fill)
    for y in range(h):
        for x in range(w):
            # the inverse of the forward map x' = c + R(-a) (x - c) in image coordinates (y down)
            sx = cx + math.cos(a) * (x - cx) - math.sin(a) * (y - cy)
            sy = cy + math.sin(a) * (x - cx) + math.cos(a) * (y - cy)
            ix, iy = round(sx), round(sy)
            if 0 <= ix < w and 0 <= iy < h:
                out[y, x] = labels[iy, ix]
    return out


def test_a_quarter_rotation_is_rot90():
    x = torch.rand(2, 3, 6, 6)
    assert torch.allclose(rotate_images(x, torch.tensor([90.0, 90.0])), x.rot90(1, (-2, -1)), atol=1e-5)


@pytest.mark.parametrize("degrees", [30.0, -12.0])
def test_mask_rotation_matches_a_naive_nearest_neighbour_rotation(degrees):
    labels = torch.randint(0, 3, (1, 17, 21), generator=torch.Generator().manual_seed(2))
    rotated = rotate_masks(labels, torch.tensor([degrees]))[0].numpy()
    expected = naive_rotation(labels[0].numpy(), degrees, IGNORE)
    assert (rotated != expected).mean() < 0.01  # only rounding ties may differ
    assert (rotated == IGNORE).any()  # corners brought in count nowhere


def test_a_rotated_image_and_its_mask_stay_together():
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[0, 6:14, 18:28] = 1
    image = labels[:, None].float() * 2.0 - 1.0  # background -1, object +1
    turned_image = rotate_images(image, torch.tensor([25.0]))[0, 0]
    turned_mask = rotate_masks(labels, torch.tensor([25.0]))[0]
    inside = turned_mask != IGNORE
    agree = ((turned_image > 0) == (turned_mask == 1))[inside].float().mean()
    assert agree > 0.97  # bilinear image edges against nearest labels
    assert torch.allclose(turned_image[~inside], torch.tensor(-1.0), atol=1e-5)  # filled with the minimum


def test_strengths_stay_in_their_ranges_and_half_the_samples_change():
    x = standardised(torch.rand(400, 2, 8, 8, generator=torch.Generator().manual_seed(3)))
    aug = Augmentation(("contrast",), {"contrast": 0.25})
    out = aug.images(x, None, torch.Generator().manual_seed(4))[0]
    ratio = (out.std(dim=(-2, -1)) / x.std(dim=(-2, -1)))[:, 0]
    changed = (ratio - 1).abs() > 1e-5
    assert 150 < int(changed.sum()) < 250
    assert float(ratio.min()) >= 0.75 - 1e-5 and float(ratio.max()) <= 1.25 + 1e-5
    assert float(ratio.max()) > 1.2 and float(ratio.min()) < 0.8  # the range is used


def test_the_same_generator_state_gives_the_same_batch():
    x, masks = torch.rand(6, 1, 12, 12), torch.randint(0, 2, (6, 12, 12))
    aug = Augmentation(("hflip", "rotate", "elastic", "brightness", "gamma", "noise"))
    a = aug.images(x, masks, torch.Generator().manual_seed(7))
    b = aug.images(x, masks, torch.Generator().manual_seed(7))
    c = aug.images(x, masks, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def naive_zoom(labels: np.ndarray, factor: float, fill: int) -> np.ndarray:
    """Nearest-neighbour zoom about the centre ((W - 1) / 2, (H - 1) / 2): each output pixel
    reads the input pixel at c + (x - c) / factor."""
    h, w = labels.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    out = np.full_like(labels, fill)
    for y in range(h):
        for x in range(w):
            ix, iy = round(cx + (x - cx) / factor), round(cy + (y - cy) / factor)
            if 0 <= ix < w and 0 <= iy < h:
                out[y, x] = labels[iy, ix]
    return out


@pytest.mark.parametrize("factor", [1.3, 0.75])
def test_mask_zoom_matches_a_naive_nearest_neighbour_zoom(factor):
    labels = torch.randint(0, 3, (1, 17, 21), generator=torch.Generator().manual_seed(2))
    zoomed = zoom_masks(labels, torch.tensor([factor]))[0].numpy()
    expected = naive_zoom(labels[0].numpy(), factor, IGNORE)
    assert (zoomed != expected).mean() < 0.01  # only rounding ties may differ
    assert (zoomed == IGNORE).any() == (factor < 1)  # a zoom out brings in a border counted nowhere


def test_a_zoomed_image_and_its_mask_stay_together():
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[0, 6:14, 18:28] = 1
    image = labels[:, None].float() * 2.0 - 1.0  # background -1, object +1
    for factor in (1.25, 0.8):
        zoomed_image = zoom_images(image, torch.tensor([factor]))[0, 0]
        zoomed_mask = zoom_masks(labels, torch.tensor([factor]))[0]
        inside = zoomed_mask != IGNORE
        agree = ((zoomed_image > 0) == (zoomed_mask == 1))[inside].float().mean()
        assert agree > 0.97  # bilinear image edges against nearest labels
        assert torch.allclose(zoomed_image[~inside], torch.tensor(-1.0), atol=1e-5)  # filled with the minimum
        area = float((zoomed_mask == 1).sum())
        assert area == pytest.approx(80 * factor ** 2, rel=0.2)  # the object grows or shrinks by factor^2


def test_blur_is_a_normalised_gaussian_with_the_border_mirrored():
    from scipy.ndimage import correlate1d

    x = torch.rand(2, 2, 15, 13, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    sigma = torch.tensor([0.8, 1.5])
    out = intensity.blur(x, sigma)
    side = 2 * math.ceil(3 * 1.5) + 1  # one kernel for the batch, of the largest sigma
    offsets = np.arange(side) - side // 2
    for b in range(2):
        weights = np.exp(-offsets ** 2 / (2 * float(sigma[b]) ** 2))
        weights /= weights.sum()
        for c in range(2):
            expected = correlate1d(correlate1d(x[b, c].numpy(), weights, axis=0, mode="mirror"), weights, axis=1,
                                   mode="mirror")
            assert np.allclose(out[b, c].numpy(), expected, atol=1e-5)
    tiny = torch.rand(1, 1, 6, 6)  # the kernel never outgrows the image
    assert intensity.blur(tiny, torch.tensor([4.0])).shape == tiny.shape


def test_zoom_and_blur_strengths_stay_in_their_ranges():
    labels = torch.zeros(300, 33, 33, dtype=torch.long)
    labels[:, 12:21, 12:21] = 1  # 81 pixels about the centre
    aug = Augmentation(("scale",), {"scale": 0.1})
    images, _ = aug.images(labels[:, None].float(), labels, torch.Generator().manual_seed(3))
    side = images.sum(dim=(-3, -2, -1)).sqrt() / 9  # a bright square's mass grows with the factor squared
    zoomed = (side - 1).abs() > 1e-4
    assert 100 < int(zoomed.sum()) < 200  # about half are zoomed
    assert float(side.min()) >= 0.9 - 0.01 and float(side.max()) <= 1.1 + 0.01
    assert float(side.min()) < 0.92 and float(side.max()) > 1.08  # the range is used
    impulse = torch.zeros(300, 1, 21, 21)
    impulse[:, :, 10, 10] = 1
    blurred = Augmentation(("blur",), {"blur": 2.0}).images(impulse, None, torch.Generator().manual_seed(4))[0]
    spread = (blurred[:, 0] * (torch.arange(21) - 10.0) ** 2).sum(dim=(-2, -1)).sqrt()  # the std along x
    picked = spread > 1e-3
    assert 100 < int(picked.sum()) < 200
    assert float(spread[picked].max()) <= 2.0 + 1e-3 and float(spread[picked].max()) > 1.7


def bilinear(image: np.ndarray, y: float, x: float) -> float:
    """The image read at (y, x) between its pixels, by hand."""
    y0, x0 = math.floor(y), math.floor(x)
    fy, fx = y - y0, x - x0
    corners = [(y0, x0, (1 - fy) * (1 - fx)), (y0, x0 + 1, (1 - fy) * fx), (y0 + 1, x0, fy * (1 - fx)),
               (y0 + 1, x0 + 1, fy * fx)]
    return sum(image[r, c] * weight for r, c, weight in corners if weight > 0)


def test_an_elastic_warp_reads_each_control_pixel_where_its_point_moved():
    # 17 x 21: the 5 x 5 control points sit on rows 0, 4, ..., 16 and columns 0, 5, ..., 20
    gen = torch.Generator().manual_seed(5)
    image = torch.rand(1, 1, 17, 21, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (1, 17, 21), generator=gen)
    moves = (torch.rand(1, 2, 5, 5, generator=gen, dtype=torch.float64) * 6 - 3).float()  # x then y, pixels
    warped, warped_labels = warp_images(image, moves)[0, 0].numpy(), warp_masks(labels, moves)[0].numpy()
    checked = 0
    for i, row in enumerate(range(0, 17, 4)):
        for j, col in enumerate(range(0, 21, 5)):
            y, x = row + float(moves[0, 1, i, j]), col + float(moves[0, 0, i, j])
            if 0 <= y <= 16 and 0 <= x <= 20:
                checked += 1
                assert warped[row, col] == pytest.approx(bilinear(image[0, 0].numpy(), y, x), abs=1e-5)
                assert warped_labels[row, col] == labels[0, round(y), round(x)]
            elif not (-0.5 < y < 16.5 and -0.5 < x < 20.5):  # read from outside: counted nowhere
                assert warped_labels[row, col] == IGNORE
    assert checked >= 10


def test_an_even_elastic_field_is_a_translation_and_image_and_mask_stay_together():
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[0, 6:14, 18:28] = 1
    image = labels[:, None].float() * 2.0 - 1.0  # background -1, object +1
    moves = torch.zeros(1, 2, 5, 5)
    moves[:, 0], moves[:, 1] = 3.0, -2.0  # every pixel reads 3 to its right and 2 above
    shifted_image, shifted_mask = warp_images(image, moves)[0, 0], warp_masks(labels, moves)[0]
    assert torch.allclose(shifted_image[2:, :-3], image[0, 0, :-2, 3:], atol=1e-5)
    assert torch.equal(shifted_mask[2:, :-3], labels[0, :-2, 3:])
    assert (shifted_mask[:2] == IGNORE).all() and (shifted_mask[:, -3:] == IGNORE).all()
    assert torch.allclose(shifted_image[:2], torch.tensor(-1.0), atol=1e-5)  # brought in: the minimum
    wavy = Augmentation(("elastic",), {"elastic": 0.06}).images(image.repeat(8, 1, 1, 1), labels.repeat(8, 1, 1),
                                                               torch.Generator().manual_seed(1))
    inside = wavy[1] != IGNORE
    agree = ((wavy[0][:, 0] > 0) == (wavy[1] == 1))[inside].float().mean()
    assert agree > 0.97  # bilinear image edges against nearest labels


def test_elastic_moves_stay_in_their_range_and_half_the_samples_change():
    ramp = torch.arange(24.0).expand(300, 1, 16, 24).clone()  # each pixel's value is its column
    out = Augmentation(("elastic",), {"elastic": 0.06}).images(ramp, None, torch.Generator().manual_seed(2))[0]
    # bilinear reads a ramp exactly: the x move, away from the border (which reads the minimum)
    read_at = out[:, 0, 3:-3, 3:-3] - ramp[:, 0, 3:-3, 3:-3]
    changed = read_at.abs().flatten(1).amax(1) > 1e-4
    assert 100 < int(changed.sum()) < 200
    largest = 0.06 * 15  # r of the shorter side (16 pixels: 15 from first to last) at a control point
    assert 0.9 * largest < float(read_at.abs().max()) <= 1.9 * largest  # bicubic overshoots between points


def test_box_only_augmentations_are_refused_for_images():
    with pytest.raises(ValueError, match="detection"):
        Augmentation(("crop",)).images(torch.rand(1, 1, 4, 4), None, torch.Generator())
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augmentation(("spin",))


def test_detection_shades_images_and_leaves_boxes_alone():
    task = DetectionTask(HeadLayout(2), (32, 32), ["a", "b"], augment=("brightness", "contrast"))
    x = torch.rand(8, 3, 32, 32)
    boxes = torch.tensor([[[2.0, 3.0, 20.0, 25.0, 1.0]]]).repeat(8, 1, 1)
    out, out_boxes = task.augment(x, boxes, torch.Generator().manual_seed(0))
    assert torch.equal(out_boxes, boxes)
    assert not torch.equal(out, x)


@pytest.mark.parametrize("overrides, message", [
    (["data.augment=[hflip]", "data.augment_range={rotate: 10}"], "does not name"),
    (["data.augment=[contrast]", "data.augment_range={contrast: 1.0}"], "below 1"),
    (["data.augment=[rotate]", "data.augment_range={rotate: 200}"], "180"),
    (["data.augment=[scale]", "data.augment_range={scale: 1}"], "scale is 1.0: keep it below 1"),
    (["data.augment=[crop]"], "crop is for detection"),
    (["data.augment=[noise]", "data.augment_range={noise: 0}"], "greater than 0"),
    (["data.augment=[contrast]", "data.augment_range={contrast: 1.5}"], "contrast is 1.5: keep it below 1"),
    (["data.kind=boxes", "data.augment=[rotate]", "preset=independent"], "not available for detection"),
    (["data.kind=boxes", "data.augment=[elastic]", "preset=independent"], "not available for detection"),
    (["data.augment=[elastic]", "data.augment_range={elastic: 0.07}"], "elastic is 0.07: at most 0.06"),
])
def test_bad_augmentation_settings_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_augmenting_feature_vectors_is_refused():
    class Vectors:
        input_shape, stats = (5,), {"mean": [0.0] * 5, "std": [1.0] * 5}

    cfg = load_config(None, ["data.augment=[hflip]"])
    with pytest.raises(ConfigError, match="vectors of 5 features"):
        augmentation(cfg, Vectors())


def test_the_config_sets_the_strengths_and_contrast_is_refused_once():
    class Images:
        input_shape, stats = (2, 8, 8), {"mean": MEAN.tolist(), "std": STD.tolist()}

    cfg = load_config(None, ["data.augment=[brightness, rotate]", "data.augment_range={brightness: 3}"])
    aug = augmentation(cfg, Images())
    assert aug.range_of("brightness") == 3 and aug.range_of("rotate") == 15.0
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["data.augment=[contrast]", "data.augment_range={contrast: 1.5}"])
    assert len(str(caught.value).splitlines()) == 2  # the heading and one problem


def by_hand(image: list[list[int]], name: str) -> list[list[int]]:
    """A flip or counter-clockwise quarter turn of a nested list, written out index by index."""
    h, w = len(image), len(image[0])
    if name == "hflip":
        return [[image[r][w - 1 - c] for c in range(w)] for r in range(h)]
    if name == "vflip":
        return [[image[h - 1 - r][c] for c in range(w)] for r in range(h)]
    return [[image[c][w - 1 - r] for c in range(h)] for r in range(w)]  # rot90: out[r][c] = in[c][w-1-r]


@pytest.mark.parametrize("name", ["hflip", "vflip", "rot90"])
def test_flips_and_quarter_turns_move_each_sample_and_its_mask_the_named_way(name):
    """Each sample is itself or its transform written out by hand (not another flip), its mask
    alike, and over draws both happen; a non-square batch is left alone by rot90."""
    x = torch.arange(6 * 16).view(6, 1, 4, 4)
    masks = x[:, 0] + 1000
    seen = set()
    for seed in range(8):
        out, out_masks = Augmentation((name,)).images(x, masks, torch.Generator().manual_seed(seed))
        for i in range(6):
            original = x[i, 0].tolist()
            moved = out[i, 0].tolist()
            assert moved in (original, by_hand(original, name)), (seed, i)
            changed = moved != original
            expected_mask = by_hand(masks[i].tolist(), name) if changed else masks[i].tolist()
            assert out_masks[i].tolist() == expected_mask
            seen.add(changed)
    assert seen == {True, False}
    if name == "rot90":
        wide = torch.arange(2 * 24.0).view(2, 1, 4, 6)
        assert torch.equal(Augmentation((name,)).images(wide, None, torch.Generator().manual_seed(0))[0], wide)


@pytest.mark.parametrize("name,strength", [("rotate", 30.0), ("scale", 0.3)])
def test_warped_masks_turn_and_zoom_with_their_own_images(name, strength):
    """Through ``Augmentation``: each sample's mask is warped by its image's angle or factor (the
    unit test of rotate_masks/zoom_masks alone cannot see a pairing that swaps them)."""
    labels = torch.zeros(16, 32, 32, dtype=torch.long)
    labels[:, 6:14, 18:28] = 1
    images = labels[:, None].float() * 2.0 - 1.0
    out, out_masks = Augmentation((name,), {name: strength}).images(images, labels, torch.Generator().manual_seed(2))
    changed = (out_masks != labels).flatten(1).any(1)
    assert int(changed.sum()) >= 4
    for i in range(16):
        inside = out_masks[i] != IGNORE
        agree = ((out[i, 0] > 0) == (out_masks[i] == 1))[inside].float().mean()
        assert agree > 0.97, i  # the bound of the unit test above


def shifts_of(aug: Augmentation, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The augmented value of pixel 0 of each sample minus the original."""
    return (aug.images(x, None, torch.Generator().manual_seed(seed))[0] - x)[:, 0, 0, 0]


def test_brightness_shifts_either_way_up_to_its_strength():
    shift = shifts_of(Augmentation(("brightness",), {"brightness": 0.2}), torch.zeros(800, 1, 4, 4), 3)
    moved = shift[shift != 0]
    assert 300 < len(moved) < 500
    assert float(moved.abs().max()) <= 0.2 + 1e-6
    assert float(moved.min()) < -0.18 and float(moved.max()) > 0.18  # uniform on [-0.2, 0.2]
    assert abs(float(moved.mean())) < 0.03  # its mean's standard deviation: 0.2 / sqrt(3 * 400) = 0.006


def test_gamma_exponents_lie_between_one_over_one_plus_r_and_one_plus_r():
    ramp = torch.linspace(0, 1, 5).view(1, 1, 1, 5).repeat(800, 1, 1, 1)  # pixel 2 is 0.5
    out = Augmentation(("gamma",), {"gamma": 0.5}).images(ramp, None, torch.Generator().manual_seed(4))[0]
    exponent = torch.log(out[:, 0, 0, 2].double()) / math.log(0.5)  # 0.5 ** e read back
    moved = exponent[(exponent - 1).abs() > 1e-6]
    assert 300 < len(moved) < 500
    assert float(moved.min()) >= 1 / 1.5 - 1e-4 and float(moved.max()) <= 1.5 + 1e-4
    assert float(moved.min()) < 0.7 and float(moved.max()) > 1.45  # the range is used


def test_a_blur_drawn_at_the_bottom_of_its_range_is_the_full_strength(monkeypatch):
    """The uniform draw u = 0 (torch.rand's smallest) gives a standard deviation of r, not 0,
    which no kernel has: (0, r] is the range."""
    impulse = torch.zeros(2, 1, 21, 21)
    impulse[:, :, 10, 10] = 1
    monkeypatch.setattr(Augmentation, "_draw", lambda self, b, g: (torch.ones(b, dtype=torch.bool), torch.zeros(b)))
    out = Augmentation(("blur",), {"blur": 2.0}).images(impulse, None, torch.Generator().manual_seed(0))[0]
    spread = (out[:, 0] * (torch.arange(21) - 10.0) ** 2).sum(dim=(-2, -1)).sqrt()
    # the kernel's spread by hand: weights exp(-k^2 / (2 * 2^2)) at k = -6..6 (3 std either way), normalised
    weights = {k: math.exp(-k * k / 8) for k in range(-6, 7)}
    expected = math.sqrt(sum(k * k * w for k, w in weights.items()) / sum(weights.values()))
    assert spread.tolist() == pytest.approx([expected] * 2, abs=1e-5)


def test_the_border_a_warp_brings_in_takes_each_channels_own_minimum():
    gen = torch.Generator().manual_seed(0)
    x = torch.stack([torch.rand(16, 16, generator=gen), 5 + torch.rand(16, 16, generator=gen)])[None]
    x[0, 0, 8, 8], x[0, 1, 8, 8] = 0.0, 5.0  # each channel's minimum, by construction: 0 and 5
    moves = torch.zeros(1, 2, 5, 5)
    moves[:, 0] = 20.0  # every pixel reads 20 columns to its right: outside
    for warped in (rotate_images(x, torch.tensor([45.0])), zoom_images(x, torch.tensor([0.5])), warp_images(x, moves)):
        assert warped[0, :, 0, 0].tolist() == pytest.approx([0.0, 5.0], abs=1e-5)


def test_elastic_moves_at_the_control_pixels_reach_but_never_pass_the_strength():
    """17 x 17: the 5 x 5 control points sit on pixels 0, 4, ..., 16, where bicubic
    interpolation passes exactly through their moves. A column ramp read there shows the x move:
    at most r of the side counted from the first pixel's centre to the last's, 0.05 * 16 = 0.8."""
    ramp = torch.arange(17.0).expand(400, 1, 17, 17).clone()
    out = Augmentation(("elastic",), {"elastic": 0.05}).images(ramp, None, torch.Generator().manual_seed(6))[0]
    inner = [4, 8, 12]
    moved = (out - ramp)[:, 0][:, inner][:, :, inner]
    assert float(moved.abs().max()) <= 0.8 + 1e-4
    assert float(moved.abs().max()) > 0.78


def test_noise_strengths_are_drawn_up_to_the_range_not_all_at_it():
    """Each noised sample's standard deviation is its own draw in [0, r): r = 0.5 over 800 samples
    of 16 x 16 zeros, the measured stds (256 pixels each: about 4 % error) fill the range, mean r / 2."""
    out = Augmentation(("noise",), {"noise": 0.5}).images(torch.zeros(800, 1, 16, 16), None,
                                                         torch.Generator().manual_seed(5))[0]
    std = out.flatten(1).std(dim=1)
    drawn = std[std > 0]
    assert 300 < len(drawn) < 500
    assert float(drawn.max()) < 0.5 * 1.2 and float(drawn.min()) < 0.05
    assert 0.22 < float(drawn.mean()) < 0.28
