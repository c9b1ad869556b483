"""Score every model of a cohort and the students' ensemble on one split."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..cohort import Cohort

ENSEMBLE = "ensemble"


@torch.no_grad()
def predict(cohort: Cohort, task, batches: Iterable) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Probabilities of every output (models and their heads) plus the students' ensemble,
    and the targets."""
    cohort.eval()
    probs: dict[str, list[torch.Tensor]] = {name: [] for name in cohort.output_names() + [ENSEMBLE]}
    targets = []
    ensemble_names = cohort.ensemble_names()
    for x, y in batches:
        outputs = cohort.forward(x).logits
        batch_probs = {name: task.probabilities(out) for name, out in outputs.items()}
        batch_probs[ENSEMBLE] = task.ensemble([batch_probs[s] for s in ensemble_names])
        for name, p in batch_probs.items():
            probs[name].append(p.cpu())
        targets.append(y.cpu())
    return {k: torch.cat(v).numpy() for k, v in probs.items()}, torch.cat(targets).numpy()


def evaluate(cohort: Cohort, task, batches: Iterable) -> dict[str, dict[str, float]]:
    """``{model or 'ensemble': {metric: value}}``."""
    probs, targets = predict(cohort, task, batches)
    return {name: task.metrics(p, targets) for name, p in probs.items()}
