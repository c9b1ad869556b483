"""An exponential moving average of each trained model's weights (``train.ema_decay``).

After every optimizer step each floating-point tensor of a model's state (parameters and
BatchNorm statistics) moves toward the live one, ``avg <- avg + (1 - d_t) (w - avg)``, with the
warm-up of timm's ModelEma, ``d_t = min(decay, (1 + t) / (10 + t))`` after t updates, so the
first steps are not averaged with the random initial weights for long; integer tensors (the
batch counters) are copied. Validation, the best epoch, the saved models and the test split
see the averages; training (and the soft targets models give each other) uses the live
weights. The averages live as plain tensors beside the models, not as copies of the modules,
so no hooks or wrappers are duplicated; evaluation swaps them in and back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class WeightAverage:
    def __init__(self, modules: dict[str, nn.Module], decay: float):
        self.modules = modules
        self.decay = decay
        self.updates = 0
        self.average = {name: {k: v.detach().clone() for k, v in state.items()} for name, state in self._live().items()}

    def _live(self) -> dict[str, dict[str, torch.Tensor]]:
        """Each model's tensors as they are now (read each time: a model may assign a new tensor
        to a buffer instead of updating it in place)."""
        return {name: module.state_dict() for name, module in self.modules.items()}

    def _pairs(self, live: dict, floating: bool | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(averages, live tensors) of every non-empty tensor, or of the floating-point ones only
        (``floating`` True) or the others (False)."""
        pairs = [(self.average[n][k], v) for n, state in live.items() for k, v in state.items()
                 if v.numel() and floating in (None, v.is_floating_point())]
        return [a for a, _ in pairs], [v for _, v in pairs]

    @torch.no_grad()
    def update(self) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        live = self._live()
        averages, weights = self._pairs(live, floating=True)
        if averages:
            torch._foreach_lerp_(averages, weights, 1 - decay)
        counters, live_counters = self._pairs(live, floating=False)
        if counters:
            torch._foreach_copy_(counters, live_counters)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The models hold the averages inside, their live weights again after."""
        _, everything = self._pairs(self._live())
        kept = [v.detach().clone() for v in everything]
        self.copy_to_models()
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(everything, kept)

    @torch.no_grad()
    def copy_to_models(self) -> None:
        averages, targets = self._pairs(self._live())
        if targets:
            torch._foreach_copy_(targets, averages)

    def tensors(self) -> list[torch.Tensor]:
        return [v for state in self.average.values() for v in state.values()]

    def state_dict(self) -> dict:
        return {"updates": self.updates, "average": self.average}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for name, tensors in state["average"].items():
            for key, value in tensors.items():
                self.average[name][key].copy_(value)
