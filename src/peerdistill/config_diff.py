"""How two run configs differ, key by key: what a refusal to reuse a run names."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

_MISSING = object()
# Keys saying where a run's files are or how it executes, not what it learns: a run may resume
# with them changed (a moved data folder or teacher run, more frequent checkpoints, another
# machine's device or workers, micro-batches after running out of memory: like another number
# of torchrun processes, they change what BatchNorm and the terms across a batch (soft Dice, sp)
# see of it, which train warns of for sp; skipping non-finite
# steps after the run stopped at one: until then no step was skipped; students run packed or one
# by one, the same students (dropout draws other masks), which a change of device switches already;
# DDP's search for parameters without a gradient, which changes no gradient, set after a run stopped
# at a layer it skipped).
EXECUTION_KEYS = ("name", "out_dir", "device", "data.root", "train.eval_batch_size", "train.micro_batch_size",
                  "train.num_workers", "train.nonfinite", "train.fuse_students",
                  "train.compile", "train.compile_backend", "train.checkpoint_every_steps",
                  "train.checkpoint_every_minutes", "train.find_unused_parameters", "train.val_every", "log")
# (train.val_every changes no weight: a run found slow to validate mid-way may resume validating
# less often; its result is another's, as the best epoch is chosen among fewer)


def what_is_trained(tree: dict[str, Any]) -> dict[str, Any]:
    """A config tree without ``EXECUTION_KEYS`` and the teachers' checkpoint paths."""
    return _without_checkpoints(without_keys(tree, EXECUTION_KEYS), ("teacher", "teachers"))


def without_paths(tree: dict[str, Any]) -> dict[str, Any]:
    """A config tree without where its files are (data.root, out_dir, every model's
    checkpoint): what nodes keeping their own copies still share."""
    return _without_checkpoints(without_keys(tree, ("data.root", "out_dir")), ("teacher", "teachers", "students"))


def _without_checkpoints(tree: dict[str, Any], sections: tuple[str, ...]) -> dict[str, Any]:
    """``tree`` (a copy, changed in place) without the checkpoint paths of the models in ``sections``."""
    for section in sections:
        models = tree.get(section)
        for model in models if isinstance(models, list) else [models]:
            if isinstance(model, dict):
                model.pop("checkpoint", None)
    return tree


# The EXECUTION_KEYS that leave a finished run's results as they are. Not micro-batches (they
# change what BatchNorm sees) nor compile (other kernels): a run may resume with them changed, to
# go on at all, but its result is another's.
RESULT_NEUTRAL_KEYS = ("name", "out_dir", "device", "train.eval_batch_size", "train.num_workers",
                       "train.checkpoint_every_steps", "train.checkpoint_every_minutes",
                       "train.find_unused_parameters", "log")


def what_a_result_depends_on(tree: dict[str, Any]) -> dict[str, Any]:
    """A config tree without the ``RESULT_NEUTRAL_KEYS`` (device, evaluation batch, workers,
    checkpoint cadence...); the data's path is kept, resolved (one file written two ways is one
    file), and so are the teachers' checkpoints."""
    root = (tree.get("data") or {}).get("root")
    tree = without_keys(tree, RESULT_NEUTRAL_KEYS)
    if root:
        tree["data"]["root"] = str(Path(root).resolve())
    return tree


def without_keys(tree: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A copy of a config tree without the dotted ``keys``."""
    tree = copy.deepcopy(tree)
    for key in keys:
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return tree


def relocated(tree: Any, old: str, new: str) -> Any:
    """``tree`` with every path inside directory ``old`` moved into ``new``.

    A comparison copied or moved elsewhere keeps its runs: only where they are kept changed
    (``out_dir``, and a frozen teacher's checkpoint, which is a run of the same comparison)."""
    if isinstance(tree, dict):
        return {key: relocated(value, old, new) for key, value in tree.items()}
    if isinstance(tree, list):
        return [relocated(value, old, new) for value in tree]
    if isinstance(tree, str) and (tree == old or tree.startswith(old.rstrip("/") + "/")):
        return new + tree[len(old):]
    return tree


def differences(saved: Any, now: Any, key: str = "", sides: tuple[str, str] = ("in the run", "now")) -> list[str]:
    """``'train.batch_size: 64 in the run, 128 now'`` for each leaf that differs (``sides``
    name the two)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        found = []
        for name in dict.fromkeys([*saved, *now]):
            found += differences(saved.get(name, _MISSING), now.get(name, _MISSING),
                                 f"{key}.{name}" if key else str(name), sides)
        return found
    if (isinstance(saved, list) and isinstance(now, list) and len(saved) == len(now)
            and all(isinstance(item, dict) for item in saved + now)):  # students, edges: each by its place
        return [d for i, (a, b) in enumerate(zip(saved, now)) for d in differences(a, b, f"{key}.{i}", sides)]
    if saved == now:
        return []
    return [f"{key}: {_shown(saved)} {sides[0]}, {_shown(now)} {sides[1]}"]


def summary(changed: list[str], most: int = 4) -> str:
    """The first ``most`` differences, and how many more, for one message."""
    more = f"; and {len(changed) - most} more" if len(changed) > most else ""
    return "; ".join(changed[:most]) + more


def _shown(value: Any) -> str:
    return "absent" if value is _MISSING else repr(value)
