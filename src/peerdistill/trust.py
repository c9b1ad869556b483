"""Which models a run folder from elsewhere may have built.

A run folder is data, from wherever it came, but building its models imports and calls what its
run.json names: ``os:system`` would run a command, and so would a path reaching ``os`` through
a library's module (``torchvision.models.resnet:os.system``) or a library's own file helpers
(timm's ``load_state_dict`` with ``weights_only: false``). So a run's models are built only
from zoo names; from the model classes and model factories of the model libraries below (a
class of ``nn.Module``, or a function declared to return one, defined in the library's model
package; of peerdistill's own functions, the zoo's only: ``build_model`` builds whatever its
arguments name), without arguments that make them read files; and from the import paths the
user trusts: a comparison's own configs, and those listed in $PEERDISTILL_TRUSTED_ARCHS
(comma-separated modules, ``mymodels``, whose own definitions are then trusted, not what they
import; or paths, ``mymodels:Net``).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from .errors import CheckpointError
from .models import ZOO, resolve_factory

# The model libraries a run may name (as import paths start), each with the package its models are
# defined in: their other modules read and write files, or run what they are given.
MODEL_LIBRARIES = {"peerdistill.models": "peerdistill.models", "torchvision.models": "torchvision.models",
                   "timm": "timm.models"}
# Arguments of timm's factories that name a file or folder to read weights or settings from.
FILE_ARGUMENTS = ("checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "pretrained_path")
TRUST_VARIABLE = "PEERDISTILL_TRUSTED_ARCHS"


class UntrustedArchError(CheckpointError):
    """A run folder's model that may not be built; ``allow`` is what PEERDISTILL_TRUSTED_ARCHS
    would need to hold to allow it (a module of one's own, or the one path)."""

    def __init__(self, reason: str, advice: str, allow: str):
        super().__init__(f"{reason}{advice}")
        self.reason = reason  # without the advice: a refusal of several models gives one advice for all
        self.allow = allow


def trusted_now() -> list[str]:
    """The entries PEERDISTILL_TRUSTED_ARCHS holds."""
    return [entry.strip() for entry in os.environ.get(TRUST_VARIABLE, "").split(",") if entry.strip()]


def trust_value(*entries: str) -> str:
    """PEERDISTILL_TRUSTED_ARCHS's value that also allows ``entries``: what it holds now kept, so
    that the advice followed does not refuse a model it allowed."""
    return ",".join(dict.fromkeys([*trusted_now(), *entries]))


def check_trusted_arch(arch: str, where: str, trusted: Iterable[str] = (),
                       args: Mapping[str, Any] | None = None) -> None:
    """Refuse (CheckpointError naming ``where``) a model that ``arch`` and ``args`` would build by
    calling something other than a model library's model, unless the user trusts it."""
    if ":" not in arch:
        return  # a zoo name (an unknown one fails as such)
    module = arch.partition(":")[0]
    listed = [a.strip() for a in trusted] + trusted_now()
    if arch in listed:
        return
    package = next((a for a in listed if a and _within(module, a)), None)
    if package is not None:  # a module the user trusts: its own models, not what it imports (os.system)
        defined_in = getattr(resolve_factory(arch), "__module__", None) or ""
        if any(_within(defined_in, entry) for entry in listed if entry and ":" not in entry):
            return  # defined in a trusted module, whichever trusted module it is reached through
        raise UntrustedArchError(f"{where} names '{arch}', which is not defined in '{package}' (the module "
                                 f"{TRUST_VARIABLE} trusts) nor in another module it trusts, but in '{defined_in}', "
                                 "reached through it",
                                 f": if you know what it calls, add the path itself to {TRUST_VARIABLE} "
                                 f"(comma-separated: {TRUST_VARIABLE}={trust_value(package, arch)})", allow=arch)
    library = next((lib for lib in MODEL_LIBRARIES if _within(module, lib)), None)
    if library is None:
        raise UntrustedArchError(f"{where} names the model factory '{arch}': building the model would import and "
                                 "call it, so a run folder from elsewhere could run any code",
                                 f". If it is your own model, allow its module: {TRUST_VARIABLE}={trust_value(module)} "
                                 f"peerdistill ... (or {TRUST_VARIABLE}={trust_value(arch)})", allow=module)
    factory = resolve_factory(arch)  # imports a module of the model library only
    if not (_within(getattr(factory, "__module__", None) or "", MODEL_LIBRARIES[library])
            and _builds_a_model(factory, own=library == "peerdistill.models")):
        raise UntrustedArchError(f"{where} names '{arch}', which is not a model class or model factory of "
                                 f"{library} (a class of torch.nn.Module, or a function declared to return one): a run "
                                 "folder from elsewhere could call anything reachable from the library this way",
                                 f". If the run is yours, allow it: {TRUST_VARIABLE}={trust_value(arch)} peerdistill ...",
                                 allow=arch)
    args = args or {}
    reads_files = sorted(set(args) & set(FILE_ARGUMENTS))
    if isinstance(args.get("model_name"), str) and ":" in args["model_name"]:
        reads_files.append("model_name")  # timm's schemes (local-dir:, hf-hub:, in any case) read a folder or download
    if reads_files:
        raise UntrustedArchError(f"{where} gives '{arch}' the arguments {reads_files}, which make it read files "
                                 "named by the run folder: a run folder from elsewhere could load unsafe files this "
                                 "way", f". If the run is yours, allow it: {TRUST_VARIABLE}={trust_value(arch)} "
                                 "peerdistill ...", allow=arch)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _builds_a_model(factory: Any, own: bool) -> bool:
    """A class of nn.Module, or a function annotated to return one (torchvision's and timm's
    factories are; timm's and torchvision's loaders and file helpers are not). Of peerdistill's
    own functions only the zoo's: ``build_model`` returns a model too, but builds whatever arch
    its arguments name."""
    if isinstance(factory, type):
        return issubclass(factory, nn.Module)
    if own:
        return any(factory is zoo for zoo in ZOO.values())
    if not inspect.isfunction(factory):
        return False
    try:
        returned = inspect.signature(factory, eval_str=True).return_annotation
    except Exception:  # an annotation that does not evaluate says nothing
        return False
    return isinstance(returned, type) and issubclass(returned, nn.Module)


def check_every_arch_trusted(models: list[tuple[str, Mapping[str, Any]]], where: str,
                             trusted: Iterable[str] = ()) -> None:
    """``check_trusted_arch`` for every model (its name, its spec with ``arch`` and ``args``) that
    a run folder's file ``where`` names, before any is built; the refusals said at once (one at a
    time, a run of three modules of one's own took three tries to allow), with the value of
    PEERDISTILL_TRUSTED_ARCHS that would allow them all: what it holds now, and for each refusal
    a module of one's own, or the one path (of a model library, or reached through a module
    already trusted)."""
    refused = []
    for name, spec in models:
        try:
            check_trusted_arch(spec["arch"], f"{where} (model '{name}')", trusted, spec.get("args"))
        except UntrustedArchError as exc:
            refused.append((name, spec, exc))
    if len(refused) == 1:
        raise refused[0][2]
    if len({(spec["arch"], repr(spec.get("args"))) for _, spec, _ in refused}) == 1:
        # one factory with the same args for every refused model: its message, once
        names = ", ".join(f"'{name}'" for name, _, _ in refused)
        check_trusted_arch(refused[0][1]["arch"], f"{where} (models {names})", trusted, refused[0][1].get("args"))
    if refused:
        allow = trust_value(*(exc.allow for _, _, exc in refused))
        listed = "; ".join(f"{spec['arch']} ({name})" for name, spec, _ in refused)
        raise CheckpointError(
            f"{where} names model factories that building would import and call, which a run folder from elsewhere "
            f"may not have built: {listed}. Why the first is refused: {refused[0][2].reason}. If they are your own, "
            f"allow them all at once: {TRUST_VARIABLE}={allow} peerdistill ...")
