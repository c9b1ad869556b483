"""Test-time augmentation by flips: each model sees the image as it is and mirrored, and its
class probabilities (per pixel, mirrored back, for segmentation) are averaged.

Mirroring is what nnU-Net averages over by default; whether it helps depends on the data (a
chest X-ray is not left-right symmetric, a fundus or a polyp frame has no preferred side), so it
is an option of ``eval``, measured in docs/results.md, not a default."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..cohort import Cohort, CohortOutput
from ..errors import ConfigError
from ..option_names import option

# Flip dimensions (of [B, C, H, W] images) averaged over, the identity first.
TTA_FLIPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "hflip": ((), (-1,)),
    "flips": ((), (-1,), (-2,), (-2, -1)),
}
TTA_SEEN = {"hflip": "the image and its left-right mirror", "flips": "the image and its three mirrorings"}


class FlipAveraged:
    """A cohort whose every output is the log of its probabilities averaged over ``flips``: a
    logit (softmax gives the averaged probabilities back), so evaluation, ensembles and sliding
    windows take it unchanged. Everything else is the wrapped cohort's."""

    def __init__(self, cohort: Cohort, flips: tuple[tuple[int, ...], ...]):
        self.cohort, self.flips = cohort, flips

    def __getattr__(self, name: str):
        return getattr(self.cohort, name)

    def forward(self, x: torch.Tensor) -> CohortOutput:
        means = mean_over_flips(lambda seen: {name: z.float().softmax(dim=1)
                                              for name, z in self.cohort.forward(seen).logits.items()}, x, self.flips)
        tiny = torch.finfo(torch.float32).tiny
        return CohortOutput({name: mean.clamp_min(tiny).log() for name, mean in means.items()})


def mean_over_flips(probabilities: Callable[[torch.Tensor], dict[str, torch.Tensor]], x: torch.Tensor,
                    flips: tuple[tuple[int, ...], ...]) -> dict[str, torch.Tensor]:
    """Each of ``probabilities``' outputs averaged over the flipped inputs, maps (4 or more
    dimensions, height and width last) mirrored back onto the image first."""
    sums: dict[str, torch.Tensor] = {}
    for dims in flips:
        for name, p in probabilities(x.flip(dims) if dims else x).items():
            if dims and p.ndim >= 4:
                p = p.flip(dims)
            sums[name] = sums[name] + p if name in sums else p
    return {name: total / len(flips) for name, total in sums.items()}


def with_tta(cohort: Cohort, tta: str | None, task_name: str, input_shape=(3, 1, 1)):
    """``cohort``, averaged over the flips ``tta`` names (None: as it is); ``input_shape`` is
    one sample's, [C, H, W] for images."""
    if tta is None:
        return cohort
    return FlipAveraged(cohort, tta_flips(tta, task_name, input_shape))


def tta_flips(tta: str, task_name: str, input_shape) -> tuple[tuple[int, ...], ...]:
    """The flips ``tta`` names, checked against the run's task and input shape (None: not known
    yet, not checked)."""
    if tta not in TTA_FLIPS:
        raise ConfigError(f"{option('--tta', repr(tta))}: use {' or '.join(TTA_FLIPS)}")
    if input_shape is not None and len(input_shape) != 3:
        raise ConfigError(f"{option('--tta')} mirrors images [C, H, W]; this run's inputs are {list(input_shape)} "
                          f"(vectors): drop {option('--tta')}")
    if task_name == "detection":
        raise ConfigError(f"{option('--tta')} averages class probabilities over flips; a detector's boxes would have to be "
                          "mirrored back and fused: not available for detection")
    return TTA_FLIPS[tta]
