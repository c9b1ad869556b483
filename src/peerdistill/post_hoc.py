"""The options applied to trained models after training (an operating point, temperature
scaling, flip test-time augmentation), checked against the models they apply to: eval,
compare, export and predict refuse them by one rule, with one message and one error type."""

from __future__ import annotations

from collections.abc import Sequence

from .engine.tta import tta_flips
from .errors import ConfigError
from .option_names import option


def check_post_hoc_options(task: str, *, num_classes: int | None = None, input_shape: Sequence[int] | None = None,
                           operating_point: bool = False, temperature_scaling: bool = False,
                           tta: str | None = None, of: str = "run") -> None:
    """Raise a ConfigError for an option that does not fit a ``task`` run (``of``: what is
    given them, "run" or "comparison"). ``num_classes`` and ``input_shape`` None: not known
    yet (a comparison before its data is read), and not checked."""
    if temperature_scaling and task != "classification":
        raise ConfigError(f"{option('--temperature-scaling')} tempers class probabilities: it is for classification "
                          f"{of}s, and this is a {task} {of}; drop {option('--temperature-scaling')}")
    if operating_point and (task != "classification" or num_classes not in (None, 2)):
        this = task if task != "classification" else f"{num_classes}-class classification"
        raise ConfigError(f"{option('--operating-point')} is a threshold on the probability of the positive class: it "
                          f"is for two-class classification {of}s, and this is a {this} {of}; drop "
                          f"{option('--operating-point')}")
    if tta is not None:
        tta_flips(tta, task, input_shape)
