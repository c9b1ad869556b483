"""How two run configs differ, key by key: what a refusal to reuse a run names."""

from __future__ import annotations

from typing import Any

_MISSING = object()


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


def differences(saved: Any, now: Any, key: str = "") -> list[str]:
    """``'train.batch_size: 64 in the run, 128 now'`` for each leaf that differs."""
    if isinstance(saved, dict) and isinstance(now, dict):
        found = []
        for name in dict.fromkeys([*saved, *now]):
            found += differences(saved.get(name, _MISSING), now.get(name, _MISSING),
                                 f"{key}.{name}" if key else str(name))
        return found
    if saved == now:
        return []
    return [f"{key}: {_shown(saved)} in the run, {_shown(now)} now"]


def _shown(value: Any) -> str:
    return "absent" if value is _MISSING else repr(value)
