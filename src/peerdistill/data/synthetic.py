"""The embedded segmentation default: synthetic images with known masks (no download).

Each 64x64 grey image has a smooth random background, strong pixel noise, one to three
*finely* striped ellipses (period 3 to 5 pixels, random angle: the foreground, class 1) and
one to three distractors of the same brightness that are background: *coarsely* striped
ellipses (period 6 to 9) and flat ones. Telling them apart needs the stripe period measured
over a wide receptive field under noise, so a larger network does measurably better than a
small one. Fixed seeds make every split reproducible.
"""

from __future__ import annotations

import numpy as np


def _ellipse(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    cy, cx = rng.uniform(8, size - 8, 2)
    ay, ax = rng.uniform(4, 12, 2)
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / ax) ** 2 + (v / ay) ** 2 <= 1.0


def _stripes(xx, yy, rng: np.random.Generator, min_period: float, max_period: float, amplitude: float):
    angle, period = rng.uniform(0, np.pi), rng.uniform(min_period, max_period)
    return amplitude * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + rng.uniform(0, 2 * np.pi))


def make_shapes(n: int, seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images [n, size, size] float32 and masks [n, size, size] uint8 (0 background, 1 object)."""
    from scipy.ndimage import gaussian_filter  # here: SciPy takes a while to import

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    images = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        background = gaussian_filter(rng.normal(0, 1, (size, size)), sigma=6)
        image = 0.5 * background / (background.std() + 1e-6)
        for _ in range(rng.integers(1, 4)):  # distractors: coarse stripes or flat
            region = _ellipse(size, rng)
            if rng.random() < 0.6:
                image[region] += _stripes(xx, yy, rng, 6.0, 9.0, 0.5)[region]
            else:
                image[region] += rng.choice([-0.4, 0.4])
        for _ in range(rng.integers(1, 4)):  # fine stripes: the foreground
            region = _ellipse(size, rng)
            image[region] += _stripes(xx, yy, rng, 3.0, 5.0, 0.5)[region]
            masks[i][region] = 1
        images[i] = image + rng.normal(0, 0.5, (size, size))
    return images, masks
