"""What every config section shares: strict keys, no true/false for numbers, errors as
ConfigErrors with hints, and seeds NumPy can take."""

from __future__ import annotations

import typing
from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator

from ..errors import ConfigError
from .messages import format_validation_error


# Set while a section validates an assignment (``spec.epochs = 5``): its validators then see
# every field's value, not the keys given.
_ASSIGNING: ContextVar[bool] = ContextVar("assigning", default=False)
SEED_LIMIT = 2**32  # NumPy's seeds; a larger one would give the run of seed % 2**32


def _number_only(annotation: Any) -> bool:
    """Whether a field holds numbers (int or float, possibly None or constrained), and no bools."""
    kinds, pending = set(), [annotation]
    while pending:
        a = pending.pop()
        args = typing.get_args(a)
        if typing.get_origin(a) is Literal:
            kinds.update(type(v) for v in args)
        elif args and typing.get_origin(a) is not list and typing.get_origin(a) is not dict:
            pending.extend(args[:1] if typing.get_origin(a) is Annotated else args)
        else:
            kinds.add(a)
    return bool(kinds & {int, float}) and bool not in kinds


def validating_saved(info: ValidationInfo) -> bool:
    """Validating a config a run saved: what earlier versions accepted (and ran, or ignored) is
    not refused again, so old runs resume and are reused."""
    return bool(info.context and info.context.get("saved"))


def check_seed(key: str, seed: int, info: ValidationInfo) -> int:
    if not 0 <= seed < SEED_LIMIT and not validating_saved(info):
        raise ValueError(f"{key} must be in 0..{SEED_LIMIT - 1} (NumPy's seeds; a larger one would repeat a smaller "
                         "one's run)")
    return seed


def _field_keys(model: type[BaseModel]) -> set[str]:
    """The keys a section takes: its fields' names and their other spellings (aliases)."""
    keys = set(model.model_fields)
    for field in model.model_fields.values():
        if isinstance(field.validation_alias, AliasChoices):
            keys.update(c for c in field.validation_alias.choices if isinstance(c, str))
    return keys


class _BuiltInPython(type(BaseModel)):
    """A section built in Python (``TrainSpec(epochs=20)``): a mistake is a ConfigError with a
    hint, as in a config file, not pydantic's own error. (Here, not in ``__init__``: pydantic
    would call that for every nested section too, and lose where in the config it was.)"""

    def __call__(cls, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"{cls.__name__} arguments", cls)) from None


class Section(BaseModel, metaclass=_BuiltInPython):
    # .inf / .nan in YAML are refused for every number: they only fail later, as non-finite losses
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    def __setattr__(self, name: str, value: Any) -> None:
        """``spec.epochs = 0`` is refused as ``TrainSpec(epochs=0)`` is."""
        assigning = _ASSIGNING.set(True)
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"{type(self).__name__}.{name}", type(self))) from None
        finally:
            _ASSIGNING.reset(assigning)

    @model_validator(mode="before")
    @classmethod
    def _null_is_the_default(cls, data: Any) -> Any:
        """A key given null (``train.epochs=null``, ``epochs:`` left empty in a file) is left at its
        default, as the README says. No key's default is other than None where None is a value of
        its own (tests/test_config.py checks it), so this takes no meaning from null. A key no
        section has keeps its null, to be named as unknown; a model's free-form ``args`` pass
        null on to the model (``weights_backbone: null``). Not on assignment (``spec.epochs = x``),
        where ``data`` is every field's value."""
        if not _ASSIGNING.get() and isinstance(data, dict) and any(value is None for value in data.values()):
            keys = _field_keys(cls)
            data = {key: value for key, value in data.items() if value is not None or key not in keys}
        return data

    @model_validator(mode="before")
    @classmethod
    def _no_true_or_false_for_numbers(cls, data: Any) -> Any:
        """pydantic reads true as 1 where a number is due (train.epochs=true trained one epoch)."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                aliases = field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else []
                for key in dict.fromkeys([name, *aliases]):
                    if isinstance(data.get(key), bool) and _number_only(field.annotation):
                        raise ValueError(f"{key} is a number, not {str(data[key]).lower()}")
        return data


def home_expanded(path: str) -> str:
    """``~/x`` (or ``~user/x``) as the home folder's path: a shell expands it at the start of a
    word alone, so ``out_dir=~/x`` reached the config as written and made a folder named '~'
    (review 56m)."""
    import os

    return os.path.expanduser(path) if path.startswith("~") else path
