"""Reading a model's weights from a file: peerdistill's safetensors, or the PyTorch files users
bring from elsewhere (``torch.save(model.state_dict(), "x.pth")``, a training script's
``{"epoch": ..., "state_dict": ...}``, torchvision's and timm's downloads), the latter with
``torch.load(weights_only=True)`` so that a file cannot run code."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import CheckpointError

# The safetensors metadata key under which peerdistill keeps the digest of a file's tensors:
# bytes changed since (a damaged copy, a disk fault) are found when the file is read.
DIGEST_KEY = "peerdistill_sha256"

# Where training scripts keep the weights inside a saved dictionary.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights", "module")


def read_state(path: Path, name: str, expected_keys: set[str],
               shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` by key, whatever its name says it is: a safetensors file, or a
    PyTorch file (a zip archive, or a pickle of older versions). In either, a prefix every key shares
    that the model's keys lack (a wrapper's: DataParallel's ``module.``, torch.compile's
    ``_orig_mod.``, a Lightning module's ``model.``) is dropped, and one every key of the model
    shares that the file's lack (a wrapper of one's own) is added, matched to ``expected_keys``.
    ``shapes``: the model's tensor shapes by key (those known), which pick among a dictionary's
    several different state dicts the one that fits."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if _is_safetensors(head):
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read checkpoint '{path}' for {name}: {exc}. It is truncated or corrupt; "
                                  "use the file a peerdistill run wrote to models/") from None
        written = safetensors_metadata(path).get(DIGEST_KEY)
        if written is not None and written != weights_digest(state):
            raise CheckpointError(f"checkpoint '{path}' for {name} is corrupt: its tensors differ from those it was "
                                  "written with (their SHA-256 is not the one the file records); restore it from a "
                                  "copy, or train the run again")
        return _without_common_prefix(state, expected_keys)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip, or a pickle's protocol opcode
        raise CheckpointError(f"checkpoint '{path}' for {name} is neither a .safetensors file nor a PyTorch file "
                              "(.pt, .pth, saved with torch.save): give the model's weights in one of these")
    damaged = failing_zip_member(path) if head.startswith(b"PK\x03\x04") else None
    if damaged:
        raise CheckpointError(f"checkpoint '{path}' for {name} is corrupt: its part '{damaged}' differs from what was "
                              "written (its CRC-32 fails); restore the file from a copy")
    try:
        loaded = load_tensors(path)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint '{path}' for {name} holds more than tensors ({rejected_object(exc)}), which cannot be loaded "
            "safely: a whole pickled model, say. Save its weights instead, torch.save(model.state_dict(), PATH), "
            "or give a .safetensors file") from None
    except Exception as exc:  # a cut or damaged archive surfaces as any of many errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint '{path}' for {name}: {first}. It is truncated or "
                              "corrupt") from None
    return _state_dict_in(loaded, path, name, expected_keys, shapes or {})


def load_tensors(path: Path) -> Any:
    """``torch.load`` of tensors alone (a file cannot run code), without torch's advice to file
    an issue about a pickle's protocol, printed before the refusal of a file that is no
    torch.save archive (peerdistill's own message says what it is)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and values."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def failing_zip_member(path: Path) -> str | None:
    """The first member of a PyTorch zip file whose bytes fail the CRC-32 the archive recorded
    for them (a damaged copy, a disk fault), or None: torch.load itself does not check them."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None  # not readable as a zip: torch.load's own error says so


def safetensors_metadata(path: Path) -> dict[str, str]:
    """A safetensors file's ``__metadata__``; empty for a file whose header length does not fit
    it (another kind of file: its first bytes are no length)."""
    with open(path, "rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        if not 0 < length <= os.fstat(fh.fileno()).st_size - 8:
            return {}
        header = json.loads(fh.read(length))
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _is_safetensors(head: bytes) -> bool:
    """An 8-byte little-endian header length, then the header's JSON."""
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 10**9


def rejected_object(exc: Exception) -> str:
    """What torch's refusal names that is not a tensor ("an object of module.Class"), without
    its advice to allow-list it (which would let such a file run code); else the line naming
    it (its first lines are a general preamble about weights_only)."""
    named = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if named:
        return f"an object of {named.group(1)}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = next((x for x in lines if "Unsupported" in x), lines[0] if lines else type(exc).__name__)
    return line.split(" Please ")[0][:200]


def _state_dict_in(loaded, path: Path, name: str, expected_keys: set[str],
                   shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The file's state dict, its keys matched to the model's: the whole file, or under one of
    ``STATE_KEYS``, one level down or two (a training script's ``{"model": {"state_dict": ...}}``).
    Where several keys hold different state dicts, the one that fits the model."""
    found = [(where, _without_common_prefix(state, expected_keys)) for where, state in _states_under(loaded, 2)]
    if not found:
        keys = list(loaded)[:8] if isinstance(loaded, dict) else type(loaded).__name__
        nested = {key: list(loaded[key])[:8] for key in STATE_KEYS if isinstance(loaded, dict)
                  and isinstance(loaded.get(key), dict)}
        inside = "".join(f"; '{key}' holds {held}, no state dict" for key, held in nested.items())
        raise CheckpointError(f"checkpoint '{path}' for {name} holds no state dict (found {keys}{inside}): save "
                              f"model.state_dict(), or a dictionary with it under one of {list(STATE_KEYS)}")
    distinct = _distinct(found)
    if len(distinct) == 1:  # (one, or copies of one: a mismatch is for the caller to name)
        return distinct[0][1]
    return _the_one_that_fits(distinct, path, name, expected_keys, shapes)


def _states_under(value, levels: int, where: str = "") -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Every state dict in ``value`` (itself, or under ``STATE_KEYS`` to ``levels`` deep), each
    with where it is, as Python indexes it (``['model']['state_dict']``)."""
    if _is_state(value):
        return [(where, value)]
    if not levels or not isinstance(value, dict):
        return []
    return [hit for key in STATE_KEYS for hit in _states_under(value.get(key), levels - 1, f"{where}[{key!r}]")]


def _distinct(found: list[tuple[str, dict[str, torch.Tensor]]]) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """``found`` without copies of one state dict (a script saving one dict under two keys, or a
    half-precision copy beside it): of each, the first in the most precise dtype."""
    kept: list[tuple[str, dict[str, torch.Tensor]]] = []
    for where, state in found:
        same = next((i for i, (_, other) in enumerate(kept) if _same_weights(state, other)), None)
        if same is None:
            kept.append((where, state))
        elif _precision(state) > _precision(kept[same][1]):
            kept[same] = (where, state)
    return kept


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether ``a`` and ``b`` hold the same weights: equal, or equal to the rounding of the less
    precise of two floating-point dtypes (a half-precision copy of them)."""
    return a is b or (a.keys() == b.keys() and all(_same_tensor(a[k], b[k]) for k in a))


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype or not (a.is_floating_point() and b.is_floating_point()):
        return a.dtype == b.dtype and torch.equal(a, b)
    coarser = max(torch.finfo(a.dtype).eps, torch.finfo(b.dtype).eps)
    return torch.allclose(a.double(), b.double(), rtol=coarser, atol=torch.finfo(torch.float16).tiny)


def _precision(state: dict[str, torch.Tensor]) -> float:
    """How precise a state dict's floating-point weights are (finer is larger)."""
    floats = [t for t in state.values() if t.is_floating_point()]
    return -max((torch.finfo(t.dtype).eps for t in floats), default=0.0)


def _the_one_that_fits(found: list[tuple[str, dict[str, torch.Tensor]]], path: Path, name: str,
                       expected_keys: set[str], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Of a dictionary's different state dicts, the one whose keys and shapes fit the model: the
    first in ``STATE_KEYS``' order was loaded before, and failed on shapes where another fitted.
    Two that fit are refused naming each: which was meant cannot be told. Where none fits, the
    first, whose misfit the caller names (with the grey/colour advice where that is all)."""
    fitting = [where for where, state in found if _fits(state, expected_keys, shapes)]
    if len(fitting) == 1:
        return dict(found)[fitting[0]]
    if fitting:
        raise CheckpointError(f"checkpoint '{path}' holds different weights that fit {name} under "
                              f"{' and '.join(fitting)}: which was meant cannot be told; save that one alone (checkpoint = "
                              f"torch.load(PATH), then torch.save(checkpoint{fitting[0]}, 'weights.pth'))")
    return found[0][1]


def _fits(state: dict[str, torch.Tensor], expected_keys: set[str], shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """Whether ``state`` holds the model's keys, of its shapes (BatchNorm's batch counters may be
    missing, as loading allows)."""
    missing = {k for k in expected_keys - set(state) if not k.endswith("num_batches_tracked")}
    return not missing and set(state) <= expected_keys and all(
        tuple(t.shape) == tuple(shapes[k]) for k, t in state.items() if k in shapes)


def _is_state(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _without_common_prefix(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Drops the leading key components all keys share (``_orig_mod.module.`` of a compiled DDP
    model, say), as many as make the most of the keys the model's own (none on a tie); then, the
    other way round, puts before them those every key of the model shares and the file's lack (a
    wrapper of one's own holding the network as ``self.net``, given the network's weights)."""
    best, matched = state, len(expected & set(state))
    for dropped in (state, *_prefixes_dropped(state)):
        for prefix in ("", *_shared_prefixes(expected)):
            candidate = {prefix + k: v for k, v in dropped.items()}
            if (count := len(expected & set(candidate))) > matched:
                best, matched = candidate, count
    return best


def _prefixes_dropped(state: dict[str, torch.Tensor]):
    """``state`` with its keys' shared leading components dropped: one, then two, ..."""
    candidate = state
    while all("." in k for k in candidate) and len({k.split(".", 1)[0] for k in candidate}) == 1:
        candidate = {k.split(".", 1)[1]: v for k, v in candidate.items()}
        yield candidate


def _shared_prefixes(keys: set[str]) -> list[str]:
    """The leading components every one of ``keys`` shares, as prefixes: ``net.``, ``net.body.``, ..."""
    prefixes, prefix, rest = [], "", list(keys)
    while rest and all("." in k for k in rest) and len({k.split(".", 1)[0] for k in rest}) == 1:
        prefix += rest[0].split(".", 1)[0] + "."
        rest = [k.split(".", 1)[1] for k in rest]
        prefixes.append(prefix)
    return prefixes
