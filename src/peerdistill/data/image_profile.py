"""What the training images look like one by one, before standardisation: how many of them are
grey files read as colour, and the range of their mean brightness and of their intensity spread.

A run records this (``data_info``) so that eval and predict can say when images are unlike every
training image: a 12-bit scan in a 16-bit file, or a DICOM without a window scaled by its
stored range, reads at a small fraction of [0, 1] and would be predicted wrong in silence (its
mean lies a few standard deviations off, within any whole-set check), and grey inputs need no
warning when the model learnt from grey files too.
"""

from __future__ import annotations

import numpy as np
import torch

# Values sampled per image for its spread, evenly over its values in row-major order at a step
# that is not a whole number (a whole step dividing the width would sample whole columns only,
# the image's border among them): enough for its 1st and 99th percentile, cheap for large images.
PROFILE_VALUES = 4096
# An image whose spread is below this share of the narrowest training images' (their 1st
# percentile), and which lies wholly below the darkest training images' mean level (its 99th
# percentile under their means' 1st percentile) or wholly above the brightest's, is unlike every
# image the model learnt from: its values are on another scale. (Narrow alone is a low-contrast
# image: PneumoniaMNIST holds a real, bright film of spread 0.12 against 0.24, mean 0.77 against
# means of 0.35 to 0.74.)
NARROW_SHARE = 0.5
# The share of the run's image files read grey (data.grey) that held colour (``data_info``; the
# data loading counts it, image_io.GreyReads).
COLOUR_READ_GREY = "colour_read_grey"
# The narrowest and widest width / height of the run's image files (``data_info``; image_io.FilesRead).
FILE_ASPECTS = "file_aspects"
# The smallest and largest share of a training image its region of interest covers (data.roi; ``data_info``):
# predict --roi says when a region mask covers far less (review 55h: the vessel masks given for the fields of view).
REGION_SHARES = "region_shares"
# The keys of ``image_profile``, and those three (in a run's ``data_info``, and in the JSON beside an export).
TRAINING_IMAGE_KEYS = ("grey_share", "image_means", "image_spreads", COLOUR_READ_GREY, FILE_ASPECTS, REGION_SHARES)
# What such images usually are, and the fix (predict and eval say it alike).
ANOTHER_SCALE_ADVICE = ("12-bit values in 16-bit files (divided by 65535), or DICOM files without a window scaled by "
                        "their stored range? Give them on the training images' scale (8-bit files, or a DICOM window, "
                        "data.dicom_window)")
# How far (in the training data's standard deviations) an image's mean may lie from the training
# data's, and by what factor its values may vary less than one such deviation, before it looks
# like another scale (0..65535 against 0..1): a real image of the kind the model learnt from stays
# within a few deviations and varies as they do.
OTHER_SCALE = 20.0
# How far (in training standard deviations) the level of an image whose values barely vary must
# lie from the training data's mean to look like another scale (8-bit values divided by 65535 lie
# near 0: 0.8 std below dark digits' mean of 0.31, std 0.38): a flat image at a training level (a
# blank tile, an empty frame at the mean) is no other scale.
LEVEL_APART = 0.5
# How alike three channels must be for an image to be a grey file read as colour.
GREY_TOLERANCE = 1e-4


def per_image_figures(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image's mean, 1st and 99th percentile (over every channel; its spread is the
    difference) of images [N, C, H, W] on the scale they were read at ([0, 1] for image files)."""
    flat = images.reshape(len(images), -1).float()
    sampled = flat[:, sample_positions(flat.shape[1])]
    low, high = torch.quantile(sampled, torch.tensor([0.01, 0.99]), dim=1)
    return flat.mean(dim=1).double().numpy(), low.double().numpy(), high.double().numpy()


def sample_positions(count: int) -> torch.Tensor:
    """Which of an image's ``count`` values its spread is taken from: all of them, or
    ``PROFILE_VALUES`` spread evenly (rounded positions of a fractional step, so that rows of
    any width are sampled across their columns)."""
    if count <= PROFILE_VALUES:
        return torch.arange(count)
    return torch.linspace(0, count - 1, PROFILE_VALUES).round().long()


def grey_images(images: torch.Tensor) -> np.ndarray:
    """Which three-channel images [N, 3, H, W] have three equal channels (grey files read as colour)."""
    return ((images[:, 0] - images[:, 1]).abs().amax(dim=(1, 2)) <= GREY_TOLERANCE).numpy() & \
        ((images[:, 1] - images[:, 2]).abs().amax(dim=(1, 2)) <= GREY_TOLERANCE).numpy()


# Values in a chunk of ``unstandardised_chunks`` (32 MiB of float32): a copy of a large split
# would double its memory, and chunks of 256 images at 256x256 added 0.6 GiB at the peak.
CHUNK_VALUES = 2**23


def chunk_rows(x: torch.Tensor) -> int:
    """How many samples of ``x`` make a chunk of about ``CHUNK_VALUES`` values (one at least)."""
    return max(1, CHUNK_VALUES // max(1, x[0].numel())) if len(x) else 1


def unstandardised_chunks(dataset, stats: dict[str, list[float]] | None):
    """An in-memory split's images [n, C, H, W] in chunks, as read (the standardisation undone);
    nothing for other data (not images held in memory)."""
    x = getattr(dataset, "x", None)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        return
    size = chunk_rows(x)
    for start in range(0, len(x), size):
        part = x[start:start + size].float()
        if stats and len(stats["mean"]) == part.shape[1]:  # (one new tensor: std * part + mean)
            part = torch.addcmul(torch.tensor(stats["mean"]).view(1, -1, 1, 1), part,
                                 torch.tensor(stats["std"]).view(1, -1, 1, 1))
        yield part


def image_profile(dataset, stats: dict[str, list[float]] | None) -> dict[str, object]:
    """``data_info``'s record of a training split held in memory (empty for other data):
    ``grey_share`` (three-channel images: the share that are grey files read as colour), and
    the 1st and 99th percentile over the images of each one's mean (``image_means``) and spread
    (``image_spreads``)."""
    means, spreads, grey = [], [], []
    for part in unstandardised_chunks(dataset, stats):
        mean, low, high = per_image_figures(part)
        means.append(mean)
        spreads.append(high - low)
        if part.shape[1] == 3:
            grey.append(grey_images(part))
    if not means or not sum(map(len, means)):
        return {}
    profile: dict[str, object] = {
        "image_means": np.percentile(np.concatenate(means), [1, 99]).round(6).tolist(),
        "image_spreads": np.percentile(np.concatenate(spreads), [1, 99]).round(6).tolist()}
    if grey:
        profile["grey_share"] = round(float(np.concatenate(grey).mean()), 6)
    return profile


def narrower_than_training(lows: np.ndarray, highs: np.ndarray, profile: dict | None) -> np.ndarray:
    """Which images of these 1st and 99th percentiles are on another scale than the training
    images: far narrower (``NARROW_SHARE`` of the narrowest ones') and wholly outside their mean
    levels. None when the run recorded no profile (older runs, data not in memory). A constant
    image (spread 0, a black frame) tells nothing of its scale and is not counted."""
    spread_range, mean_range = ((profile or {}).get(key) for key in ("image_spreads", "image_means"))
    if not all(isinstance(r, list) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r)
               for r in (spread_range, mean_range)):
        return np.zeros(len(lows), bool)  # (none, or a JSON edited by hand into something else)
    lows, highs = np.asarray(lows), np.asarray(highs)
    spreads = highs - lows
    outside = (highs < mean_range[0]) | (lows > mean_range[1])
    return (spreads > 0) & (spreads < NARROW_SHARE * float(spread_range[0])) & outside


def far_outside_training(means: np.ndarray, spreads: np.ndarray, stats: dict[str, list[float]]) -> np.ndarray:
    """Which images, of per-channel means and spreads (max - min) [N, C] on the scale they were
    read at, lie on another intensity scale than the training data of ``stats``: a mean
    ``OTHER_SCALE`` standard deviations away in a channel, or values varying by less than a
    ``OTHER_SCALE``-th of one at a level ``LEVEL_APART`` of them away (a constant image says
    nothing; a near-constant one off the training level, 16-bit-scaled or an 8-bit black frame
    with faint noise beside a bright set, is asked about). Images of other channels than the
    training data's are left to the channel check."""
    mean, std = np.asarray(stats["mean"], np.float64), np.maximum(np.asarray(stats["std"], np.float64), 1e-12)
    means, spreads = np.asarray(means, np.float64), np.asarray(spreads, np.float64)
    if means.ndim != 2 or means.shape[1] != len(mean):
        return np.zeros(len(means), bool)
    apart = np.abs(means - mean) / std
    far = (apart > OTHER_SCALE) | ((spreads > 0) & (spreads < std / OTHER_SCALE) & (apart > LEVEL_APART))
    return far.any(axis=1)
