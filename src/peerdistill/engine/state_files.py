"""Reading a model's weights from a file: peerdistill's safetensors, or the PyTorch files users
bring from elsewhere (``torch.save(model.state_dict(), "x.pth")``, a training script's
``{"epoch": ..., "state_dict": ...}``, torchvision's and timm's downloads), the latter with
``torch.load(weights_only=True)`` so that a file cannot run code."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import CheckpointError

# Where training scripts keep the weights inside a saved dictionary.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights", "module")
# Prefixes that wrappers add to every key: DataParallel / DDP, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def read_state(path: Path, name: str, expected_keys: set[str]) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` by key; ``expected_keys`` (the model's own) decide whether a
    wrapper's prefix is to be dropped."""
    if path.suffix.lower() == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read checkpoint '{path}' for {name}: {exc}. It is truncated, corrupt or "
                                  "not a .safetensors file; use the file a peerdistill run wrote to models/") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint '{path}' for {name} holds more than tensors ({str(exc).splitlines()[0][:160]}), which "
            "cannot be loaded safely: a whole pickled model, say. Save its weights instead, "
            "torch.save(model.state_dict(), PATH), or give a .safetensors file") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint '{path}' for {name}: {first}. It is truncated or corrupt, or "
                              "neither a PyTorch file (.pt, .pth) nor a .safetensors file") from None
    return _without_wrapper_prefix(_state_dict_in(loaded, path, name), expected_keys)


def _state_dict_in(loaded, path: Path, name: str) -> dict[str, torch.Tensor]:
    if _is_state(loaded):
        return loaded
    if isinstance(loaded, dict):
        for key in STATE_KEYS:
            if _is_state(loaded.get(key)):
                return loaded[key]
    keys = list(loaded)[:8] if isinstance(loaded, dict) else type(loaded).__name__
    raise CheckpointError(f"checkpoint '{path}' for {name} holds no state dict (found {keys}): save "
                          f"model.state_dict(), or a dictionary with it under one of {list(STATE_KEYS)}")


def _is_state(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _without_wrapper_prefix(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state) and not all(k.startswith(prefix) for k in expected):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state
