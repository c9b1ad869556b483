"""What a zoo model was built with, so a run of models built in Python can be read back.

A config names each model's ``arch`` and ``args``, which the run records to rebuild it; a
model built in Python (``ResNet(num_classes=2, width=32)``) has no config. The zoo's classes
remember their arguments instead (``model.built_with``), and ``zoo_spec`` turns them into the
same record, so ``eval``, ``export`` and ``predict`` rebuild it from the command line.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn

from ..capture import is_packing_safe, unwrap
from .heads import HeadedModel


def remembers_its_args(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: each instance keeps the arguments it was built with, defaults filled
    in (so a later default does not change what a saved run rebuilds), or None when one of
    them is not plain JSON (a run.json could not hold it)."""
    init = cls.__init__
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        given = dict(list(bound.arguments.items())[1:])  # without self
        self.built_with = {k: _plain(v) for k, v in given.items()} if all(map(_is_plain, given.values())) else None

    cls.__init__ = __init__
    return cls


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(map(_is_plain, value))
    return value is None or isinstance(value, (bool, int, float, str))


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def zoo_spec(module: Any, zoo: dict[str, type]) -> dict[str, Any] | None:
    """The ``{"arch", "args"}`` record (with ``heads`` and ``deep_layer`` for a self-distilled
    one) that rebuilds ``module`` when it is a zoo model built in Python; None for any other
    (a subclass of a zoo class too: it may differ from it)."""
    if not isinstance(module, nn.Module):
        return None
    outer = unwrap(module)
    inner = unwrap(outer.base) if type(outer) is HeadedModel else outer
    arch = next((name for name, factory in zoo.items() if type(inner) is factory), None)
    args = getattr(inner, "built_with", None)
    if arch is None or not isinstance(args, dict) or not _rebuilds_the_same(inner, zoo[arch], args):
        return None
    spec: dict[str, Any] = {"arch": arch, "args": dict(args)}
    if inner is not outer:
        spec.update(heads=list(outer.head_layers), deep_layer=outer.deep_layer)
    return spec


def _rebuilds_the_same(module: nn.Module, factory: type[nn.Module], args: dict[str, Any]) -> bool:
    """Whether ``factory(**args)`` is ``module`` as it is now: a zoo model changed after it was
    built (its head replaced for another number of classes, its pooling swapped, a forward
    patched on an instance) is a model of the user's own, which its arguments would not
    rebuild. Compared by the modules' printed form (types and settings, layer by layer), the
    shapes of the state, and no forward set on an instance nor forward hook of the user's (they
    change what it computes, and no arguments record them); built without memory (meta)."""
    if any("forward" in vars(sub) or _users_hooks(sub) for sub in module.modules()):
        return False
    try:
        with torch.device("meta"):
            rebuilt = factory(**args)
    except Exception:  # noqa: BLE001 - a zoo model that cannot be built on meta is checked on the CPU
        try:
            rebuilt = factory(**args)
        except Exception:  # noqa: BLE001 - not rebuilt by its arguments (changed since?): a model of the user's
            return False
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    return repr(rebuilt) == repr(module) and shapes(rebuilt) == shapes(module)


def _users_hooks(module: nn.Module) -> bool:
    """Whether ``module`` carries a forward hook or pre-hook other than peerdistill's own feature
    recorders (marked ``packing_safe``, as a HeadedModel's on its base)."""
    hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
    return not all(map(is_packing_safe, hooks))
