"""What a training step does about NaN and infinite values: the checks of its loss terms,
gradients and running statistics, the step skipped (``train.nonfinite: skip``, its buffers put
back) or the run stopped with a message naming what went non-finite, and each epoch's skipped
steps named.

``Trainer`` takes this as a mixin, as it takes ``Preflight``: it reads the trainer's cohort,
optimizers, scaler, speed settings, world and last checkpoint (which its messages name, through
``Checkpointing``'s ``_saved_checkpoint`` and ``_resume_command``), and keeps ``skipped_steps``
and ``skip_causes``.
"""

from __future__ import annotations

import torch

from ..errors import NonFiniteError, NonFiniteStepsWarning, warn_user
from ..run_files import CONFIG_FILE

_RUNNING_STATISTICS = ("running_mean", "running_var")


class NonFiniteSteps:
    """The trainer's handling of non-finite values (see the module's docstring)."""

    def _finite_checks(self, total: torch.Tensor, term_values: torch.Tensor,
                       statistics: dict[str, list[torch.Tensor]]) -> list[torch.Tensor]:
        """A step's checks as boolean tensors, in the order ``_skipped_if_non_finite`` reads
        them: the total, each loss term, each model's gradients, then each model's running
        statistics (``statistics``: ``_trained_buffers_by_model``)."""
        return [torch.isfinite(total)[None], torch.isfinite(term_values),
                torch.stack([_all_finite(_gradients(o), self.device) for o in self.optimizers.values()]
                            + [_all_finite(b, self.device) for b in statistics.values()])]

    def _skipped_if_non_finite(self, finite, terms: dict[str, torch.Tensor],
                               statistics: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor] | None:
        """``finite``: the checks of ``_finite_checks``, agreed by every process. None when every
        one passed; else the skipped step's (empty) terms, or the stop (``_non_finite``)."""
        terms_finite = finite[1:1 + len(terms)]
        grads_finite = finite[1 + len(terms):1 + len(terms) + len(self.optimizers)]
        statistics_finite = finite[1 + len(terms) + len(self.optimizers):]
        if not finite[0]:
            bad = [n for n, ok in zip(terms, terms_finite) if not ok]
            return self._non_finite("loss term", bad or ["total (the sum of finite terms overflowed)"])
        if not all(grads_finite):
            return self._non_finite("gradient of model", [n for n, ok in zip(self.optimizers, grads_finite) if not ok])
        if not all(statistics_finite):
            return self._non_finite("running statistics (BatchNorm buffers) of",
                                    [n for n, ok in zip(statistics, statistics_finite) if not ok])
        return None

    def _non_finite(self, what: str, names: list[str]) -> dict[str, torch.Tensor]:
        """A NaN or infinite loss or gradient: skip the step (``train.nonfinite: skip``) or stop
        with a message naming it; either way no weight is updated from it."""
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        where = f"epoch {self._position[0] + 1}, step {self._position[1] + 1}"
        if self.scaler is not None:
            self.scaler.update()  # an fp16 overflow: the scaler lowers its scale and the step is skipped
        if self.speed.nonfinite == "skip":
            with torch.no_grad():
                for buffer, saved in zip(self._trained_buffers(), self._buffers_before):
                    buffer.copy_(saved)
            self.skipped_steps += 1
            for name in names:
                cause = f"{what} '{name}'"
                self.skip_causes[cause] = self.skip_causes.get(cause, 0) + 1
            return {}
        finding = f"non-finite {what} {', '.join(repr(n) for n in names)} at {where}"
        # (one process's own batch: under torchrun every process must say the same, so not there)
        inputs = None if self.world.distributed else getattr(self, "_step_inputs", None)
        bad = int((~torch.isfinite(inputs)).sum()) if isinstance(inputs, torch.Tensor) and \
            inputs.is_floating_point() else 0
        advice = (f"this batch's inputs hold {bad} NaN or infinite values: the data has them (a Dataset's images "
                  "are not checked value by value), so remove or repair those samples" if bad else
                  "Lower optim.lr and train again, check the data for extreme values")
        error = NonFiniteError(f"{finding}; {self._last_good()}. {advice}, or {self._skip_advice()}", finding)
        # Under torchrun the processes agreed on the names: each stops with this step's finding.
        raise error.found_by_every_process() if self.world.distributed else error

    def _trained_buffers(self) -> list[torch.Tensor]:
        """The buffers a training forward updates (BatchNorm statistics of the models and the
        connectors); the critics' forward comes after the checks."""
        return [b for m in self.cohort.trainable for b in m.module.buffers()] + list(self.connectors.buffers())

    def _trained_buffers_by_model(self) -> dict[str, list[torch.Tensor]]:
        """Their running means and variances (of BatchNorm, InstanceNorm or a user's layer that
        names them so), by model name (``@connectors`` for the connectors). Other buffers are
        not updated by training, and one that is not saved may hold infinities on purpose (an
        attention mask)."""
        owners = {m.name: m.module for m in self.cohort.trainable} | {"@connectors": self.connectors}
        return {name: [b for key, b in module.named_buffers() if key.rpartition(".")[2] in _RUNNING_STATISTICS]
                for name, module in owners.items()}

    def _check_skipped(self, epoch: int, steps: int) -> None:
        """Skipped steps are named, not only counted: a warning per epoch, and a stop when no
        step of an epoch was kept (a term that is never finite would otherwise leave the models
        untrained to the end). Gradients overflowing under fp16 loss scaling are the scaler's
        routine calibration: recorded, neither warned about nor stopped for."""
        routine = self.scaler is not None and all(c.startswith("gradient") for c in self.skip_causes)
        if not self.skipped_steps or routine:
            return
        named = ", ".join(f"{cause} ({n} step{'s' if n > 1 else ''})" for cause, n in self.skip_causes.items())
        if self.skipped_steps >= steps:
            error = NonFiniteError(f"every step of epoch {epoch + 1} was skipped for non-finite values: {named}. The "
                                   f"models learnt nothing from it; {self._last_good()}. "
                                   f"{_advice_for_skipped_epoch(list(self.skip_causes))}")
            # Under torchrun the processes agreed on every skip: each stops with this message.
            raise error.found_by_every_process() if self.world.distributed else error
        if self.world.is_main:
            warn_user(f"epoch {epoch + 1}: {self.skipped_steps} of {steps} training steps skipped for non-finite "
                      f"values: {named}", NonFiniteStepsWarning)

    def _last_good(self) -> str:
        last = self._saved_checkpoint()
        if last:
            return f"the last good checkpoint is {last}"
        replaced = getattr(getattr(self, "_run", None), "replaced", False)
        return "no epoch had finished, so nothing was saved" + (
            " (the run this one replaced, --overwrite, is put back)" if replaced else "")

    def _skip_advice(self) -> str:
        """How to go on skipping such steps: a run with a checkpoint may resume with another policy."""
        run = self.run_dir_path
        if self._saved_checkpoint() is None or not (run / CONFIG_FILE).exists():
            return "set train.nonfinite=skip to skip such steps"  # (a run of the Python API has no config.yaml)
        # under torchrun, resumed on as many processes (one process would draw other batches)
        again = (f"{self._resume_command()} on {self.world.size} processes again" if self.world.distributed else
                 self._resume_command())
        return (f"skip such steps from the last checkpoint on: set train.nonfinite: skip in '{run / 'config.yaml'}' "
                f"and continue with {again}")

    def _weights_finite(self) -> bool:
        """Whether every trained model's weights are finite (what a checkpoint may hold)."""
        modules = [m.module for m in self.cohort.trainable] + [self.connectors, self.discriminators]
        params = [p for module in modules for p in module.parameters()]
        return bool(_all_finite(params, self.device))


def _advice_for_skipped_epoch(causes: list[str]) -> str:
    """What to change after an epoch of skipped steps: what ``causes`` name (a loss term, or a
    model's gradients or BatchNorm statistics). Not a resume: it refuses an edited optim.lr or
    term, as the optimizers and the graph come from the checkpoint."""
    terms = sum(cause.startswith("loss term") for cause in causes)
    changed = (f" or with the named term{'s' if terms > 1 else ''} changed or dropped" if terms else "")
    return (f"Train a new run with a lower optim.lr{changed} (a resume keeps the run's "
            f"{'config' if terms else 'learning rate'}), or check the data for extreme values")


def _gradients(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p.grad.detach() for g in optimizer.param_groups for p in g["params"] if p.grad is not None]


def _all_finite(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Whether every element of ``tensors`` is finite, as a boolean tensor (no device sync)."""
    tensors = [t.detach() for t in tensors if t.numel()]  # (_foreach_max takes no empty tensor)
    if not tensors:
        return torch.ones((), dtype=torch.bool, device=device)
    # The largest magnitude is finite exactly when every element is (a 2-norm overflows on large
    # finite values); the max of the magnitudes is several times faster than an inf-norm on the CPU.
    return torch.isfinite(torch.stack(torch._foreach_max(torch._foreach_abs(tensors)))).all()
