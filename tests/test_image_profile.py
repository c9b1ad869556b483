"""The training images' profile (data/image_profile.py): each image's mean and spread, the share
of grey files read as colour, and inputs narrower than every training image."""

import numpy as np
import pytest
import torch

from peerdistill.data.image_profile import (NARROW_SHARE, PROFILE_VALUES, image_profile, narrower_than_training,
                                            per_image_figures)
from peerdistill.data.splits import TensorData, standardize


def test_each_images_mean_and_spread_are_numpys_over_its_values():
    x = torch.rand(5, 3, 20, 30)  # 1,800 values an image: every one counts
    means, spreads = per_image_figures(x)
    flat = x.reshape(5, -1).double().numpy()
    np.testing.assert_allclose(means, flat.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(spreads, np.percentile(flat, 99, axis=1) - np.percentile(flat, 1, axis=1), rtol=1e-5)


def test_a_large_image_is_sampled_at_a_regular_stride():
    x = torch.rand(2, 1, 100, 100)  # 10,000 values: every second one
    flat = x.reshape(2, -1).double().numpy()
    stride = flat.shape[1] // PROFILE_VALUES
    assert stride == 2
    sampled = flat[:, ::stride]
    _, spreads = per_image_figures(x)
    np.testing.assert_allclose(spreads, np.percentile(sampled, 99, axis=1) - np.percentile(sampled, 1, axis=1),
                               rtol=1e-5)


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


def test_narrower_than_every_training_image_is_below_a_share_of_the_narrowest():
    profile = {"image_spreads": [0.6, 0.95]}
    limit = NARROW_SHARE * 0.6
    found = narrower_than_training(np.array([limit - 1e-3, limit + 1e-3, 0.9, 0.0]), profile)
    assert found.tolist() == [True, False, False, False]  # a constant image (0) says nothing of its scale
    for unknown in (None, {}, {"image_spreads": "wide"}, {"image_spreads": []}):  # older runs, edited JSON
        assert narrower_than_training(np.array([0.0]), unknown).tolist() == [False]
