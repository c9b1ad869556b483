"""Images unlike every training image, found one by one: what eval asks of each scored image and
predict of each input, in one place so that both say the same of the same image.

Two rules, each said once per set of images (an image the first names is not named again):
- *narrow* (``image_profile.narrower_than_training``): far less contrast than any training image,
  at levels none of them has: 12-bit values in a 16-bit file, a DICOM scaled by its stored range;
- *far* (``image_profile.far_outside_training``): a mean many training standard deviations away,
  or values barely varying at a level unlike the training data's: 16-bit values beside 8-bit ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import warn_user
from .image_profile import ANOTHER_SCALE_ADVICE, far_outside_training, narrower_than_training, per_image_figures


@dataclass
class ImageFigures:
    """Each image's figures on the scale it was read at (before standardisation), gathered batch by
    batch: per-channel mean, variance and spread (max - min), and over all its values the mean,
    min, max and 1st and 99th percentile."""
    channel_means: list[np.ndarray] = field(default_factory=list)
    channel_variances: list[np.ndarray] = field(default_factory=list)
    channel_spreads: list[np.ndarray] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    mins: list[float] = field(default_factory=list)
    maxs: list[float] = field(default_factory=list)
    lows: list[float] = field(default_factory=list)
    highs: list[float] = field(default_factory=list)

    def add(self, images: torch.Tensor) -> None:
        """Images [N, C, H, W] (a chunk of a split, or one input)."""
        images = images.float()
        mean, low, high = per_image_figures(images)
        self.channel_means += list(images.mean(dim=(2, 3)).double().numpy())
        # (a reduction, not a float64 copy of the chunk: 1.6 GB for 256 colour images of 512x512)
        self.channel_variances += list(images.var(dim=(2, 3), unbiased=False).double().numpy())
        self.channel_spreads += list((images.amax(dim=(2, 3)) - images.amin(dim=(2, 3))).double().numpy())
        self.means += mean.tolist()
        self.lows += low.tolist()
        self.highs += high.tolist()
        flat = images.reshape(len(images), -1)
        self.mins += flat.amin(dim=1).tolist()
        self.maxs += flat.amax(dim=1).tolist()

    def __len__(self) -> int:
        return len(self.means)

    def set_spread(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel mean and std of the ``chosen`` images taken together (images of one size:
        a split held in memory), by the law of total variance (the mean of the images' variances
        plus the variance of their means: no cancellation for values far from 0); None when none
        is chosen."""
        if not chosen.any():
            return None
        means = np.stack(self.channel_means)[chosen]
        variance = np.stack(self.channel_variances)[chosen].mean(axis=0) + means.var(axis=0)
        return means.mean(axis=0), np.sqrt(variance)


def warn_of_images_unlike_training(figures: ImageFigures, names: list[str], what: str,
                                   stats: dict[str, list[float]] | None, profile: dict | None,
                                   advice: str) -> np.ndarray:
    """Warn of the images (``names``, said in a message as ``what``: "inputs", "scored images")
    unlike every training image, by ``profile`` (a run's ``image_profile``) and ``stats`` (its
    training data's per-channel mean and std); ``advice``: how to give them on the training scale.
    Returns which images were named."""
    count = len(figures)
    narrow = narrower_than_training(np.array(figures.lows), np.array(figures.highs), profile)
    far = np.zeros(count, bool)
    channels = len(stats["mean"]) if stats else 0
    fits = [i for i, m in enumerate(figures.channel_means) if len(m) == channels]  # other channels: their own check
    if fits:
        far[fits] = far_outside_training(np.stack([figures.channel_means[i] for i in fits]),
                                         np.stack([figures.channel_spreads[i] for i in fits]), stats)
    far &= ~narrow  # one message per image
    if narrow.any():
        i = int(np.flatnonzero(narrow)[0])
        warn_user(f"{int(narrow.sum())} of {count} {what} vary in intensity far less than the training images and lie "
                  f"at other levels (e.g. {_example(figures, names, i)}, a spread of "
                  f"{figures.highs[i] - figures.lows[i]:.3g} between its 1st and 99th percentile, where 99% of the "
                  f"training images spread over at least {profile['image_spreads'][0]:.3g} and have means of "
                  f"{profile['image_means'][0]:.3g} to {profile['image_means'][1]:.3g}): {ANOTHER_SCALE_ADVICE}")
    if far.any():
        i = int(np.flatnonzero(far)[0])
        mean, std = np.asarray(stats["mean"], np.float64), np.asarray(stats["std"], np.float64)
        warn_user(f"{int(far.sum())} of {count} {what} lie far outside the intensities of the training data (e.g. "
                  f"{_example(figures, names, i)}, against the training data's mean {float(mean.mean()):.4g}, std "
                  f"{float(std.mean()):.4g}): another intensity scale? {advice}")
    return narrow | far


def _example(figures: ImageFigures, names: list[str], i: int) -> str:
    return (f"'{names[i]}': values {figures.mins[i]:.4g} to {figures.maxs[i]:.4g}, mean {figures.means[i]:.4g}")
