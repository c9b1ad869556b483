"""The training images' profile (data/image_profile.py): each image's mean and spread, the share
of grey files read as colour, and inputs narrower than every training image."""

import numpy as np
import pytest
import torch

from peerdistill.data.image_profile import (NARROW_SHARE, PROFILE_VALUES, image_profile, narrower_than_training,
                                            per_image_figures, sample_positions)
from peerdistill.data.splits import TensorData, standardize


def test_each_images_mean_and_spread_are_numpys_over_its_values():
    x = torch.rand(5, 3, 20, 30)  # 1,800 values an image: every one counts
    means, lows, highs = per_image_figures(x)
    flat = x.reshape(5, -1).double().numpy()
    np.testing.assert_allclose(means, flat.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(lows, np.percentile(flat, 1, axis=1), rtol=1e-5)
    np.testing.assert_allclose(highs, np.percentile(flat, 99, axis=1), rtol=1e-5)


def test_a_large_image_is_sampled_across_its_columns_not_down_a_few_of_them():
    """A left-right gradient (0 at the left border, 1 at the right) of 2,048 and 4,096 rows: a
    whole-number step over the values would divide the width and sample a column or two."""
    for rows, cols in ((2048, 64), (4096, 48), (1024, 1024)):
        image = torch.linspace(0, 1, cols).repeat(rows, 1)[None, None]
        _, (low,), (high,) = per_image_figures(image)
        spread = high - low
        true = np.percentile(image.numpy(), 99) - np.percentile(image.numpy(), 1)
        assert spread == pytest.approx(true, abs=0.05), (rows, cols)  # (0.5 or 0 sampling down columns)
        flat = image.reshape(1, -1)
        positions = sample_positions(flat.shape[1])
        assert len(positions) == PROFILE_VALUES and len(set((positions % cols).tolist())) > cols // 2


def test_the_profile_of_a_standardised_split_is_that_of_its_images_as_read():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0, 1, (40, 3, 8, 8)).astype(np.float32))
    images[:10] = images[:10, :1].repeat(1, 3, 1, 1)  # 10 grey files read as colour
    images[10:20] *= 0.2  # dim ones: a wider range of means and spreads
    stats = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25]}
    profile = image_profile(TensorData(standardize(images, stats), torch.zeros(40)), stats)
    flat = images.reshape(40, -1).double().numpy()
    spreads = np.percentile(flat, 99, axis=1) - np.percentile(flat, 1, axis=1)
    assert profile["grey_share"] == pytest.approx(0.25)
    np.testing.assert_allclose(profile["image_means"], np.percentile(flat.mean(axis=1), [1, 99]), atol=1e-5)
    np.testing.assert_allclose(profile["image_spreads"], np.percentile(spreads, [1, 99]), atol=1e-5)
    grey_read_grey = image_profile(TensorData(images[:, :1], torch.zeros(40)), None)
    assert "grey_share" not in grey_read_grey and len(grey_read_grey["image_spreads"]) == 2
    assert image_profile(TensorData(torch.rand(4, 6), torch.zeros(4)), None) == {}  # feature vectors: no images


def test_another_scale_is_far_narrower_than_the_narrowest_training_images_and_at_other_levels():
    profile = {"image_spreads": [0.6, 0.95], "image_means": [0.3, 0.7]}
    limit = NARROW_SHARE * 0.6
    lows = np.array([0.0, 0.0, 0.0, 0.05, 0.5, 0.6, 0.75, 0.65])
    highs = lows + np.array([limit - 1e-3, limit + 1e-3, 0.9, 0.0, limit - 1e-3, limit - 1e-3, limit - 1e-3, 0.2])
    found = narrower_than_training(lows, highs, profile)
    # narrow and wholly darker than the darkest images' level (12-bit values divided by 65535) or
    # brighter than the brightest's; not a low-contrast image at the training images' levels (a
    # bright film reaching past their means too), nor a constant one (0), nor a wide one
    assert found.tolist() == [True, False, False, False, False, False, True, False]
    for unknown in (None, {}, {"image_spreads": "wide", "image_means": [0.3, 0.7]}, {"image_spreads": [0.6, 0.9]}):
        assert narrower_than_training(np.array([0.0]), np.array([0.01]), unknown).tolist() == [False]


def test_an_image_far_outside_the_training_intensities_is_found_image_by_image():
    # eval and predict ask it alike of each image (one 16-bit image in an 8-bit set is lost in the set's mean)
    from peerdistill.data.image_profile import far_outside_training

    stats = {"mean": [0.5], "std": [0.25]}
    # by hand: 20 stds away; a 20th of one at a level over half a std away (either side); the same
    # at the training level (a blank tile) or half a std away; constant
    means = np.array([[0.4], [0.5 + 20 * 0.25 + 1e-6], [0.5 - 0.125 - 1e-6], [0.5 + 0.125 + 1e-6], [0.5], [0.625],
                      [0.0]])
    spreads = np.array([[0.9], [0.9]] + [[0.25 / 20 - 1e-6]] * 4 + [[0.0]])
    assert far_outside_training(means, spreads, stats).tolist() == [False, True, True, True, False, False, False]
    assert far_outside_training(means[:, [0, 0, 0]], spreads[:, [0, 0, 0]], stats).tolist() == [False] * 7  # 3 channels
    # 8-bit values divided by 65535 against dark training images (digits: mean 0.305, std 0.376)
    digits = {"mean": [0.305], "std": [0.376]}
    sixteen = np.random.default_rng(0).uniform(0, 1, 64) * 255 / 65535
    assert far_outside_training(np.array([[sixteen.mean()]]), np.array([[np.ptp(sixteen)]]), digits).tolist() == [True]


def test_each_image_unlike_the_training_images_is_named_once_by_the_first_rule_it_meets():
    import warnings

    from peerdistill.data.unlike_training import ImageFigures, warn_of_images_unlike_training
    from peerdistill.errors import PeerdistillWarning

    stats, profile = {"mean": [0.5], "std": [0.25]}, {"image_spreads": [0.6, 0.95], "image_means": [0.3, 0.7]}
    rng = np.random.default_rng(0)
    usual = torch.from_numpy(rng.uniform(0.1, 0.9, (1, 1, 8, 8))).float()
    twelve_bit = usual / 16 / 100  # narrow, below every training level, and barely varying far from the mean
    blank = torch.full((1, 1, 8, 8), 0.5)
    blank[..., 0, 0] += 1e-3  # a blank tile at the training level: varies little, but no other scale
    sixteen_bit = usual * 65535
    figures = ImageFigures()
    for image in (usual, twelve_bit, blank, sixteen_bit):
        figures.add(image)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        named = warn_of_images_unlike_training(figures, ["a", "b", "c", "d"], "inputs", stats, profile, "Fix it.")
    said = [str(w.message) for w in caught if issubclass(w.category, PeerdistillWarning)]
    assert named.tolist() == [False, True, False, True]
    assert len(said) == 2
    assert said[0].startswith("1 of 4 inputs vary in intensity far less than the training images and lie at other "
                              f"levels (e.g. 'b': values {float(twelve_bit.min()):.4g} to")
    assert said[1].startswith(f"1 of 4 inputs lie far outside the intensities of the training data (e.g. 'd': values "
                              f"{float(sixteen_bit.min()):.4g} to {float(sixteen_bit.max()):.4g}, mean "
                              f"{float(sixteen_bit.mean()):.4g}, against the training data's mean 0.5, std 0.25)")
    assert said[1].endswith("another intensity scale? Fix it.")
    # the images not named, taken together: mean and std by hand
    mean, std = figures.set_spread(~named)
    together = torch.cat([usual, blank]).double()
    np.testing.assert_allclose(mean, [float(together.mean())], rtol=1e-6)
    np.testing.assert_allclose(std, [float(together.std(unbiased=False))], rtol=1e-6)
    assert figures.set_spread(np.zeros(4, bool)) is None
