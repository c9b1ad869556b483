"""Holistic distillation (Liu et al., Structured KD, 2019): a discriminator conditioned on the
image scores segmentation maps; Wasserstein objective with gradient penalty (WGAN-GP)."""

from __future__ import annotations

import torch
from torch import nn


class MapDiscriminator(nn.Module):
    """Scores (image, class-probability map) pairs: strided convolutions, no normalisation
    (as WGAN-GP asks), global average, one scalar per sample."""

    def __init__(self, image_channels: int, num_classes: int, width: int = 32, depth: int = 3):
        super().__init__()
        layers, c = [], image_channels + num_classes
        for i in range(depth):
            out = width * 2**i
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c = out
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(c, 1)

    def forward(self, image: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] != probs.shape[-2:]:
            image = nn.functional.interpolate(image, size=probs.shape[-2:], mode="bilinear", align_corners=False)
        h = self.features(torch.cat([image, probs], dim=1))
        return self.score(h.mean(dim=(2, 3))).squeeze(1)


def holistic_generator_loss(discriminator: nn.Module, image: torch.Tensor, learner_probs: torch.Tensor) -> torch.Tensor:
    """The learner's side, ``-E[D(Q_learner | I)]``: raising its maps' score toward the source's
    (the paper's ``- lambda2 * l_ho``, where only ``E[D(Q_s | I)]`` depends on the student)."""
    return -discriminator(image, learner_probs).mean()


def gradient_penalty(discriminator: nn.Module, image: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``E[(||grad_m D(I, m)||_2 - 1)^2]`` at maps ``m`` drawn on the
    lines between real (source) and fake (learner) maps, one mixing weight per sample."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device)
    mixed = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    score = discriminator(image, mixed)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def discriminator_loss(discriminator: nn.Module, image: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                       gp_weight: float = 10.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The critic's side: ``E[D(fake)] - E[D(real)] + gp_weight * GP``; maps are detached."""
    real, fake = real.detach(), fake.detach()
    return (discriminator(image, fake).mean() - discriminator(image, real).mean()
            + gp_weight * gradient_penalty(discriminator, image, real, fake, generator))
