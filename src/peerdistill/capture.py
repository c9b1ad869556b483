"""Record intermediate feature maps by module path with forward hooks (no model rewriting).

Hooks go on the *inner* module of wrappers (DistributedDataParallel, DataParallel,
``torch.compile``), whose submodules are the same objects, so capture survives wrapping.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import torch
from torch import nn

from .errors import ConfigError, warn_user


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
    if not names:  # written with nn.functional and bare parameters: nothing a hook can go on
        what = " ('{}' is a parameter)".format(path) if path in dict(unwrap(model).named_parameters()) else ""
        raise ConfigError(f"{owner} has no module at path '{path}'{what}: it has no submodules at all (its layers are "
                          "written with nn.functional), so no layer of it can be recorded: make the layer to record a "
                          "module of its own (an nn.Conv2d, say), or distil its output alone (kl)")
    close = difflib.get_close_matches(path, names, n=5, cutoff=0.5)
    top = ', '.join(n for n in names if '.' not in n)
    hint = f"; close matches: {', '.join(close)}" if close else f"; top-level modules: {top}"
    raise ConfigError(f"{owner} has no module at path '{path}'{hint}")


def places_of(model: nn.Module, module: nn.Module, paths: dict[str, nn.Module] | None = None) -> list[str]:
    """Every path at which ``module`` sits in ``model`` (one object placed twice, or aliased);
    ``paths``: ``module_paths(model)``, where the caller has it already."""
    return [p for p, m in (paths or module_paths(model)).items() if m is module and p]


def _last_axis_width(module: nn.Module) -> int | None:
    """The size of the last axis a LayerNorm over that axis alone or a Linear gives."""
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return module.normalized_shape[0]
    if isinstance(module, nn.Linear):
        return module.out_features
    return None


def channels_last_layer(model: nn.Module, path: str, shape: tuple[int, ...]) -> str | None:
    """The kind of module at ``path`` when it gives [H, W, C] maps (``shape``, without the
    batch): a LayerNorm over its last axis alone or a Linear, whose width is that last axis and
    not the first (ConvNeXt's blocks, Swin's stages); None otherwise. (timm's LayerNorm2d, a
    LayerNorm that gives [C, H, W], has its width first: not taken for one.)"""
    try:
        module = find_module(model, path)  # (a wrapper's prefixed path names its layer too)
    except ConfigError:
        return None
    width = _last_axis_width(module)
    return type(module).__name__ if width and len(shape) == 3 and shape[-1] == width != shape[0] else None


def channels_last_inside(model: nn.Module, path: str, shape: tuple[int, ...]) -> str | None:
    """For a module holding others (a stage, a block): the LayerNorm or Linear inside it whose
    width is the last axis of its [., ., W] output and not the first, when nothing inside it
    gives the first axis as channels (a convolution, a BatchNorm or GroupNorm of that many, or a
    LayerNorm or Linear of that width, as before a permutation back to channels first):
    likely [H, W, C] maps, as a Swin stage's (its blocks end in ``x + mlp(norm(x))``, a sum no
    module gives). Only likely: a Linear over the width of [C, H, W] maps looks the same."""
    try:
        module = find_module(model, path)
    except ConfigError:
        return None
    if len(shape) != 3 or shape[-1] == shape[0]:
        return None
    inner = list(module.named_modules())[1:]
    channels_first = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm)
    if any(isinstance(m, channels_first) and shape[0] in (getattr(m, "out_channels", None),
                                                        getattr(m, "num_features", None),
                                                        getattr(m, "num_channels", None)) for _, m in inner):
        return None
    if any(_last_axis_width(m) == shape[0] for _, m in inner):  # a width the first axis has: permuted back, maybe
        return None  # (MONAI's Swin stages end in a patch merging Linear of the first axis's width)
    found = next((f"{type(m).__name__} '{path}.{name}'" for name, m in inner if _last_axis_width(m) == shape[-1]), None)
    return found


def refuse_channels_last(model: nn.Module, path: str, shape: tuple[int, ...], where: str) -> None:
    """A layer giving [H, W, C] maps where [C, H, W] ones are read (its rows would be taken for
    channels: a loss that looks plausible and teaches nothing meant): refused when the layer is
    a LayerNorm or Linear itself, warned of when one inside it suggests it."""
    remedy = ("record a layer whose output is channels first (a whole stage or block that gives [C, H, W], a "
              "convolution), or use sp, which compares layers of any layout")
    kind = channels_last_layer(model, path, shape)
    if kind is not None:
        raise ConfigError(f"{where}: layer '{path}' gives {list(shape)}, channels last ([H, W, C]: a {kind} over the "
                          f"last axis, as in ConvNeXt blocks and Swin stages), where [C, H, W] maps are read: {remedy}")
    inside = channels_last_inside(model, path, shape)
    if inside is not None:
        warn_user(f"{where}: layer '{path}' gives {list(shape)} and holds a {inside} of width {shape[-1]}, its last "
                  f"axis, but nothing of {shape[0]} channels: its maps look channels last ([H, W, C], as a Swin "
                  f"stage's), where [C, H, W] maps are read. If so, {remedy}; if its first axis is its channels, "
                  "this is no concern")


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
        if output[0].dim() == 0 and len(output) > 1:  # (a (loss, map) pair: the number is recorded, review 56a)
            raise ConfigError(f"{where} returns a {type(output).__name__} whose first item, the one recorded, is a "
                              "single number: record a submodule that returns the feature itself")
        return output[0]
    raise ConfigError(f"{where} returns a {type(output).__name__}, not a tensor (or a tuple starting with one): "
                      "record one of its submodules that returns a tensor")


class FeatureRecorder:
    """Keeps the latest output of each named submodule; ``take()`` hands them over and clears."""

    def __init__(self, model: nn.Module, paths: Iterable[str], owner: str = "model"):
        self.features: dict[str, torch.Tensor] = {}
        self._versions: dict[str, int] = {}  # each output's in-place version counter when recorded
        self.owner = owner
        self._model = model  # (whose mode the message of a layer that gave nothing names)
        self._handles = []
        self.paths = list(dict.fromkeys(paths))
        # A module object placed at several paths (one nn.ReLU reused in a Sequential) calls the
        # hook of each path at every place: counted per forward of the model, to refuse a path
        # whose output would be another place's.
        self._places: dict[str, tuple[list[str], str]] = {}  # path: its places, its module's kind
        self._calls: dict[str, int] = {}
        every = module_paths(model)
        for path in self.paths:
            module = find_module(model, path, owner)
            self._handles.append(module.register_forward_hook(self._hook(path)))
            places = places_of(model, module, every)
            if len(places) > 1:
                self._places[path] = (places, type(module).__name__)
        if self._places:
            self._handles.append(unwrap(model).register_forward_pre_hook(self._new_forward()))

    def _new_forward(self):
        def hook(_module, _inputs):
            self._calls = {}

        return packing_safe(hook)

    def _hook(self, path: str):
        def hook(_module, _inputs, output):
            if path in self._places and not torch.compiler.is_compiling():
                self._calls[path] = self._calls.get(path, 0) + 1
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
        repeated = [p for p, n in self._calls.items() if n > 1]
        if repeated:
            places, kind = self._places[repeated[0]]
            raise ConfigError(f"{self.owner}: layer '{repeated[0]}' is one module object placed at {places} (a "
                              f"{kind} reused), so it runs at each place and "
                              "its recorded output would be the last place's: give each place a module of its own "
                              "(a new nn.ReLU() for each, say), or record a layer placed once")
        changed = [p for p, v in versions.items() if features[p]._version != v]
        if changed:
            blocks = [p.rsplit(".", 1)[0] for p in changed if "." in p]
            around = f" ({', '.join(repr(b) for b in dict.fromkeys(blocks))})" if blocks else ""
            # (a top-level layer's change may be in the model's own forward: no block to record, review 56a)
            top = "" if len(blocks) == len(changed) else (
                "; where the model's own forward changes it, write that line out of place (out = out + identity) "
                "or record another layer")
            raise ConfigError(f"{self.owner}: the output of layer(s) {changed} is changed in place by a later module "
                              "(a ReLU(inplace=True), an x += y), so it would be read after that change: record the "
                              "module that changes it instead (the ReLU) or, where a forward's own code changes it "
                              f"(out += identity), the block that holds that code{around}{top}"
                              f"{self._inside_a_recorded_block(blocks)}")
        missing = [p for p in self.paths if p not in features]
        if complete and missing:
            mode, other = ("training", "evaluation") if self._model.training else ("evaluation", "training")
            raise ConfigError(f"{self.owner}: layer(s) {missing} gave no output in this {mode} forward (not called, "
                              f"or called only in {other} mode): record layers that run on every forward")
        return features

    def _inside_a_recorded_block(self, blocks: list[str]) -> str:
        """A changed layer inside a block this recorder records too (a self-distillation head inside
        its deep layer): that block, or its last ReLU, gives the block's own output, which a head
        there would learn from itself; a layer nothing changes later is the way out there."""
        recorded = [b for b in dict.fromkeys(blocks) if b in self.paths]
        if not recorded:
            return ""
        named = f"{', '.join(repr(b) for b in recorded)} {'is' if len(recorded) == 1 else 'are'}"
        return (f"; {named} recorded here too (a self-distillation deep layer, say), and that block, or a ReLU "
                "that ends it, gives the block's own output: for a head inside it, record a layer whose output no "
                "later module changes in place (a convolution followed by a BatchNorm, say) or a layer of an earlier "
                "block")

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
