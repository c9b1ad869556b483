"""Augmentation of a batch of standardised images that leaves their geometry alone:
brightness, contrast, gamma, noise and blur, each with one random strength per sample.

Inputs reach augmentation already standardised per channel, (x - mean) / std, by the training
split's statistics (or those data.normalize gives). Brightness shifts and noise are measured
in those units, one standard deviation of the training images, so a strength means the same
for 8-bit photographs, 12-bit X-rays in 16-bit files and CT values in Hounsfield units.
Contrast and gamma are defined on each image's own statistics (its channel means, its
minimum and maximum), which standardisation only shifts and scales, so they act exactly as
they would on the raw intensities. Blur is measured in pixels.
"""

from __future__ import annotations

import math

import torch

NAMES = ("brightness", "contrast", "gamma", "noise", "blur")


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[B] values shaped to broadcast over [B, C, H, W]."""
    return values.to(x.device, x.dtype).view(-1, *[1] * (x.ndim - 1))


def brightness(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Add ``shift`` [B] (standardised units) to every pixel of every channel."""
    return x + _per_sample(shift, x)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each channel's deviations from its mean by ``factor`` [B]."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return (x - mean) * _per_sample(factor, x) + mean


def gamma(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """Raise each channel, rescaled to [0, 1] by its own minimum and maximum, to ``exponent``
    [B], and scale it back (a flat channel stays as it is)."""
    low, high = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    span = (high - low).clamp_min(1e-8)
    return ((x - low) / span).clamp(0, 1).pow(_per_sample(exponent, x)) * span + low


def noise(x: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``sigma`` [B] (standardised units), one field per
    image shared by its channels (a grey image read as three equal channels stays grey). The
    noise is drawn on the images' device, from a generator seeded by ``generator``."""
    local = torch.Generator(device=x.device)
    local.manual_seed(int(torch.randint(2**62, (1,), generator=generator, device=generator.device)))
    field = torch.randn((x.shape[0], 1, *x.shape[2:]), generator=local, device=x.device, dtype=x.dtype)
    return x + field * _per_sample(sigma, x)


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` [B] pixels (> 0; kornia's
    ``gaussian_blur2d``, the border reflected), one kernel of three standard deviations either
    way (at most the image's side) for the batch."""
    from kornia.filters import gaussian_blur2d  # (here: kornia takes 0.3 s to import, wanted by few runs)

    sigma = sigma.to(x.device, torch.float32)
    side = min(2 * math.ceil(3 * float(sigma.max())) + 1, min(x.shape[-2:]) - (1 - min(x.shape[-2:]) % 2))
    return gaussian_blur2d(x.float(), side, sigma.view(-1, 1).expand(-1, 2)).to(x.dtype)
