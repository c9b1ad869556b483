"""Model zoo and the builder that turns a config spec into an ``nn.Module``.

``arch`` is either a zoo name (``cnn``) or an import path ``package.module:factory`` for any
callable returning an ``nn.Module`` (for example ``torchvision.models:resnet18`` or
``timm:create_model``), so user models never need registering.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .cnn import SmallCNN
from .detector import Detector
from .resnet import ResNet
from .torchvision_detection import TorchvisionFCOS, torchvision_fcos
from .unet import MobileUNet, UNet

ZOO: dict[str, Callable[..., nn.Module]] = {"cnn": SmallCNN, "resnet": ResNet, "unet": UNet, "mobile_unet": MobileUNet,
                                            "detector": Detector, "torchvision_fcos": torchvision_fcos}


def resolve_factory(arch: str) -> Callable[..., nn.Module]:
    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        factory, owner = _imported(module_name, arch), f"module '{module_name}'"
        for part in attr.split("."):
            found = getattr(factory, part, None)
            if found is None:
                close = difflib.get_close_matches(part, [n for n in dir(factory) if not n.startswith("_")], n=1)
                raise ConfigError(f"arch '{arch}': {owner} has no attribute '{part}'"
                                  + (f" (did you mean '{close[0]}'?)" if close else ""))
            factory, owner = found, f"'{part}'"
        if not callable(factory):
            raise ConfigError(f"arch '{arch}': '{attr}' is not callable")
        return factory
    if arch not in ZOO:
        close = difflib.get_close_matches(arch, list(ZOO), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"unknown arch '{arch}'{hint}: use one of {sorted(ZOO)} or an import path 'package.module:factory'"
        )
    return ZOO[arch]


def _imported(module_name: str, arch: str):
    """The module an import path names. One of the user's own, beside the config in the folder
    the command runs in, is found by the ``peerdistill`` command as by ``python -m peerdistill``
    (which puts that folder on the path): searched last, so it never hides an installed module."""
    if not module_name or module_name.startswith("."):
        named = f"'{module_name}' is a relative module name" if module_name else "no module is named"
        raise ConfigError(f"arch '{arch}': {named} before the ':': write the module's full dotted name "
                          "(mymodels:Net, package.models:resnet)")
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        top = module_name.split(".")[0]
        here = os.getcwd()
        if (missing == top and top not in _model_library_packages() and here not in sys.path
                and _holds_module(Path(here), top)):
            # searched last, and for this import only: left on the path, a later lookup of a model
            # library in the same process (a second run folder read) would find a copy in this folder
            sys.path.append(here)
            try:
                return _imported(module_name, arch)
            finally:
                sys.path.remove(here)
        hint = ""
        if missing and "." not in missing and top == missing:  # a top-level package is absent
            # pip install only for a known library: a name of the user's own installed from PyPI
            # would be whatever someone published under it (review 48c)
            hint = (f": install it (pip install {missing})" if top in _model_library_packages() else
                    f": a module of your own ({missing}.py, or a folder {missing}/) is found in the folder the command "
                    "runs in or on PYTHONPATH: run from the folder that holds it, or add that folder to PYTHONPATH; "
                    "a package: install it; else check the name")
        raise ConfigError(f"arch '{arch}': cannot import module '{module_name}' ({exc}){hint}") from None
    except Exception as exc:  # the module's own code failed (a NameError, a SyntaxError)
        raise ConfigError(f"arch '{arch}': importing module '{module_name}' failed: {type(exc).__name__}: "
                          f"{exc}{_raised_at(exc)}") from None


def _model_library_packages() -> set[str]:
    """The packages trust.py lets a run folder from elsewhere name without being trusted: a copy
    of one in the working folder (a run folder holding ``torchvision/``) must never stand in for
    the library, or checking a run's arch would run the folder's code."""
    from ..trust import MODEL_LIBRARIES  # trust imports this module

    return {library.split(".")[0] for library in MODEL_LIBRARIES}


def _imported_when_called(exc: BaseException) -> str:
    """A module of one's own that a factory imports when called, from the working folder, which
    is on Python's path only while the factory's own module is imported."""
    missing = (getattr(exc, "name", None) or "").split(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
    here = os.getcwd()
    if not missing or here in sys.path or not _holds_module(Path(here), missing):
        return ""
    return (f"; '{missing}' is in the folder the command runs in, which is on Python's path only while the model's "
            f"own module is imported: import '{missing}' at the top of that module, or put the folder on the path "
            "(PYTHONPATH=. peerdistill ...)")


def _holds_module(folder: Path, name: str) -> bool:
    return (folder / f"{name}.py").is_file() or (folder / name).is_dir()


def _raised_at(exc: BaseException) -> str:
    """Where an error in a user's code was raised, for a message that replaces the traceback: the
    innermost frame of their own code (not torch's, where a bad size they passed is refused), and
    the innermost one when that differs. A SyntaxError's own message names its line."""
    if isinstance(exc, SyntaxError):
        return ""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    innermost, installed = frames[-1], _installed_places()
    own = next((frame for frame in reversed(frames) if not _is_installed_code(frame.filename, installed)), innermost)
    where = f"{own.filename}, line {own.lineno}"
    if own is not innermost:
        where += f"; raised in {innermost.filename}, line {innermost.lineno}"
    return f" ({where})"


def _installed_places() -> list[str]:
    """Python's own folders, the installed libraries' (torch) and peerdistill's, each ending in a separator."""
    paths = sysconfig.get_paths()
    places = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")} | {str(Path(__file__).parents[1])}
    return [os.path.join(os.path.realpath(place), "") for place in places]


def _is_installed_code(filename: str, installed: list[str]) -> bool:
    """Code in one of ``installed``: not where a user's bug is. ``<frozen importlib._bootstrap>``
    and the like are Python's too."""
    return filename.startswith("<") or os.path.realpath(filename).startswith(tuple(installed))


def build_model(arch: str, args: dict[str, Any], in_channels: int, num_classes: int, owner: str = "",
                args_key: str = "") -> nn.Module:
    """Build a model; ``in_channels`` and ``num_classes`` are passed when the factory names them
    and the config did not set them. ``num_classes`` also goes to a factory taking ``**kwargs``
    (torchvision's ``resnet18``, ``timm.create_model``: both pass it on); ``in_channels`` does
    not, as libraries name it differently (timm: ``in_chans``; set it in ``args``). ``owner``
    (``model 'student2'``) starts error messages; ``args_key`` (``students.1.args``) is where a
    config gave ``args``."""
    factory = resolve_factory(arch)
    kwargs = dict(args)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if key not in kwargs and (key in params or (open_ended and key == "num_classes")):
            kwargs[key] = value
    who = f"{owner}: " if owner else ""
    from ..config.messages import colon_without_space  # (config reads the zoo's names: here, not at import)

    if (slip := colon_without_space([k for k, v in args.items() if v is None])) is not None:
        raise ConfigError(f"{who}arch '{arch}' args: {slip}")
    if arch in ZOO:
        kwargs.update(_checked_arg_types(factory, args, f"{who}arch '{arch}'"))
        if arch != "torchvision_fcos":  # (its weights may be downloaded: built once, for real)
            _check_zoo_size(factory, kwargs, f"{who}arch '{arch}'")
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        if _rejects(factory, kwargs, open_ended):
            hint = _args_hint(kwargs, params)
            if args and args_key:  # from the embedded default or a config file, the arch changed since by an override
                hint += (f"; if you changed its arch on the command line, the config's {args_key} stayed: give "
                         f"the new model's with it ({args_key}={{}} for none)")
            raise ConfigError(f"{who}arch '{arch}' rejected its args {_args_shown(kwargs)}: {exc}{hint}") from None
        raise ConfigError(f"{who}arch '{arch}' with args {_args_shown(kwargs)} failed: TypeError: {exc}{_raised_at(exc)}") from None
    except Exception as exc:  # a user's or library's factory: its own message says what is wrong
        raise ConfigError(f"{who}arch '{arch}' with args {_args_shown(kwargs)} failed: {exc}{_raised_at(exc)}"
                          f"{_imported_when_called(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"arch '{arch}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _args_shown(kwargs: dict[str, Any]) -> str:
    """A model's args as a message repeats them, in their order, each value cut short where long
    (YAML aliases expand to millions of items: review 55j, a 28 MB message)."""
    from ..config.messages import shown_value

    return "{" + ", ".join(f"{key!r}: {shown_value(value)}" for key, value in kwargs.items()) + "}"


# A zoo model past this many parameters is a slip of its args (depth 100 doubles a cnn's channels
# 100 times): 16 GB of weights, gradients and Adam's two moments in fp32, where the largest
# sensible zoo model (a ResNet-50) has 25 million.
ZOO_PARAMETER_LIMIT = 1_000_000_000
# The zoo's arguments that set a model's size, and how, for the message that asks to lower them.
SIZE_ARGS = {"width": "the first level's channels, doubled at each level or stage after it",
             "depth": "the levels (cnn, unet) or the layers of each stage (detector)",
             "blocks": "the stages, each doubling the channels, and the blocks of each",
             "block": "bottleneck blocks are four times as wide as basic ones",
             "head_convs": "the convolutions of each head",
             "reg_max": "the bins of each box side's distribution"}


def _check_zoo_size(factory: Callable[..., nn.Module], kwargs: dict[str, Any], who: str) -> None:
    """Refuse a zoo model too large to train, counted on the meta device (no memory taken) before
    it is built: built for real, it took the machine's memory for minutes, then was killed
    without a word."""
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in factory(**kwargs).parameters())
    except RuntimeError as exc:  # a size past what a tensor can hold at all
        if "overflow" not in str(exc):
            return  # its own error comes when it is built
        count = math.inf
    except Exception:  # noqa: BLE001 - its own error comes when it is built
        return
    if count > ZOO_PARAMETER_LIMIT:
        size = "more parameters than a tensor can hold" if math.isinf(count) else f"{count:,} parameters"
        given = [f"{k} ({SIZE_ARGS[k]})" for k in kwargs if k in SIZE_ARGS]
        if not given:  # the data's class count (a detector's head per class)
            given = [f"{k} ({v:,})" for k, v in kwargs.items() if k == "num_classes"]
        raise ConfigError(f"{who} with args {kwargs} would have {size} (the zoo's limit: {ZOO_PARAMETER_LIMIT:,}): "
                          f"lower {'; '.join(given) if given else 'its size arguments'}")


def _rejects(factory: Callable[..., nn.Module], kwargs: dict[str, Any], open_ended: bool) -> bool:
    """Whether a TypeError from ``factory(**kwargs)`` is about the args: they do not fit its
    signature, or it passes them on (``**kwargs``) to what may refuse them. Otherwise the
    error came from inside the factory's own code (a bug there, not in the config)."""
    if open_ended:
        return True
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError:
        return True
    except ValueError:  # no signature to read (some builtins): as before, the args are blamed
        return True
    return False


def _checked_arg_types(factory: Callable[..., nn.Module], args: dict[str, Any], who: str) -> dict[str, Any]:
    """A zoo model's args checked against its annotations, as the constructor takes them (``16.0``
    or ``'16'`` for an int: 16; a YAML list for a tuple): a text for a number (``width=abc``)
    would else fail deep in the constructor, as a comparison of str and int. A true or false
    where no bool is meant is refused, not read as 1 or 0."""
    from pydantic import TypeAdapter, ValidationError

    params = inspect.signature(factory, eval_str=True).parameters
    checked = {}
    for name, value in args.items():
        if name not in params or params[name].annotation is inspect.Parameter.empty:
            continue  # an unknown name: the constructor's TypeError names it, with a hint
        adapter = TypeAdapter(params[name].annotation)
        try:
            if isinstance(value, (bool, np.bool_)):
                adapter.validate_python(bool(value), strict=True)
            checked[name] = adapter.validate_python(value)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"][0].lower() + exc.errors()[0]["msg"][1:]
            # (args are the model's own, passed as written: null is None to it, not its default)
            left_out = f"; for the model's default, leave {name} out of args" if value is None else ""
            raise ConfigError(f"{who}: args.{name}={value!r}: {problem}{left_out}") from None
    return checked


def _args_hint(kwargs: dict[str, Any], params) -> str:
    """The factory's own arguments, and the closest one to each it does not take."""
    named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not named or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return ""
    unknown = [k for k in kwargs if k not in params]
    close = {k: difflib.get_close_matches(k, named, n=1, cutoff=0.7) for k in unknown}
    guesses = "".join(f" ('{k}': did you mean '{c[0]}'?)" for k, c in close.items() if c)
    return f"{guesses}; it takes {', '.join(named)}"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["Detector", "MobileUNet", "ResNet", "TorchvisionFCOS", "SmallCNN", "UNet", "ZOO", "build_model", "count_parameters", "resolve_factory"]
