"""Record intermediate feature maps by module path with forward hooks (no model rewriting).

Hooks go on the *inner* module of wrappers (DistributedDataParallel, DataParallel,
``torch.compile``), whose submodules are the same objects, so capture survives wrapping.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch
from torch import nn

from .errors import ConfigError


def unwrap(module: nn.Module) -> nn.Module:
    """The user's model inside DDP / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


# What DDP, DataParallel (``module.``) and torch.compile (``_orig_mod.``) put before the paths.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def module_paths(model: nn.Module) -> dict[str, nn.Module]:
    """Every dotted path of ``model``'s submodules (an alias path names its module too)."""
    return dict(unwrap(model).named_modules(remove_duplicate=False))


def find_module(model: nn.Module, path: str, owner: str = "model") -> nn.Module:
    """The submodule at a dotted path (``"layer3"``, ``"encoder.blocks.2"``); a wrong path names
    the closest valid ones."""
    modules = module_paths(model)
    if path in modules and path != "":
        return modules[path]
    for prefix in _WRAPPER_PREFIXES:  # a path as the wrapped model's named_modules() lists it
        if path.startswith(prefix) and path[len(prefix):] in modules and model is not unwrap(model):
            return modules[path[len(prefix):]]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(path, names, n=5, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else f"; top-level modules: {', '.join(n for n in names if '.' not in n)}"
    raise ConfigError(f"{owner} has no module at path '{path}'{hint}")


def channels_last_layer(model: nn.Module, path: str, shape: tuple[int, ...]) -> str | None:
    """The kind of module at ``path`` when it gives [H, W, C] maps (``shape``, without the
    batch): a LayerNorm over its last axis alone or a Linear, whose width is that last axis and
    not the first (ConvNeXt's blocks, Swin's stages); None otherwise. (timm's LayerNorm2d, a
    LayerNorm that gives [C, H, W], has its width first: not taken for one.)"""
    try:
        module = find_module(model, path)  # (a wrapper's prefixed path names its layer too)
    except ConfigError:
        return None
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        width = module.normalized_shape[0]
    elif isinstance(module, nn.Linear):
        width = module.out_features
    else:
        return None
    return type(module).__name__ if len(shape) == 3 and shape[-1] == width != shape[0] else None


def refuse_channels_last(model: nn.Module, path: str, shape: tuple[int, ...], where: str) -> None:
    """A layer giving [H, W, C] maps where [C, H, W] ones are read (its rows would be taken for
    channels: a loss that looks plausible and teaches nothing meant)."""
    kind = channels_last_layer(model, path, shape)
    if kind is not None:
        raise ConfigError(f"{where}: layer '{path}' gives {list(shape)}, channels last ([H, W, C]: a {kind} over the "
                          "last axis, as in ConvNeXt blocks and Swin stages), where [C, H, W] maps are read: record a "
                          "layer whose output is channels first (a whole stage or block that gives [C, H, W], a "
                          "convolution), or use sp, which compares layers of any layout")


def packing_safe(hook):
    """Marks a hook of peerdistill's own that may stay on a student packed with others
    (``engine.fused.fusable`` refuses students carrying any other hook)."""
    hook.packing_safe = True
    return hook


def is_packing_safe(hook) -> bool:
    return getattr(hook, "packing_safe", False)


def first_tensor(output, where: str = "a recorded layer") -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ConfigError(f"{where} returns a {type(output).__name__}, not a tensor (or a tuple starting with one): "
                      "record one of its submodules that returns a tensor")


class FeatureRecorder:
    """Keeps the latest output of each named submodule; ``take()`` hands them over and clears."""

    def __init__(self, model: nn.Module, paths: Iterable[str], owner: str = "model"):
        self.features: dict[str, torch.Tensor] = {}
        self._versions: dict[str, int] = {}  # each output's in-place version counter when recorded
        self.owner = owner
        self._handles = []
        self.paths = list(dict.fromkeys(paths))
        for path in self.paths:
            module = find_module(model, path, owner)
            self._handles.append(module.register_forward_hook(self._hook(path)))

    def _hook(self, path: str):
        def hook(_module, _inputs, output):
            tensor = first_tensor(output, f"layer '{path}' of {self.owner}")
            self.features.pop(path, None)  # kept in the order of the outputs kept: a layer run twice counts by its last
            if torch.compiler.is_compiling():  # traced: no version counter to read
                self.features[path] = tensor
            elif tensor.is_inference():
                # A frozen model's tensors keep no version counter: a copy keeps the layer's own
                # output whatever a later in-place module does to it.
                self.features[path] = tensor.clone()
            else:
                self.features[path] = tensor
                self._versions[path] = tensor._version

        return packing_safe(hook)  # released before packing: the packed group records the layers itself

    def take(self, complete: bool = False) -> dict[str, torch.Tensor]:
        """The features recorded since the last call (a layer run twice gives its last output);
        ``complete``: right after a forward, which must have run every recorded layer."""
        features, self.features = self.features, {}
        versions, self._versions = self._versions, {}
        changed = [p for p, v in versions.items() if features[p]._version != v]
        if changed:
            raise ConfigError(f"{self.owner}: the output of layer(s) {changed} is changed in place by a later module "
                              "(a ReLU(inplace=True), an x += y), so it would be read after that change: record the "
                              "module that changes it instead")
        missing = [p for p in self.paths if p not in features]
        if complete and missing:
            raise ConfigError(f"{self.owner}: layer(s) {missing} gave no output in this forward (not called, or "
                              "called only in training mode): record layers that run on every forward")
        return features

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
