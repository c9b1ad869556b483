"""The launcher's environment (torchrun sets RANK, WORLD_SIZE and LOCAL_RANK), read without
importing torch: the command line asks it before any command runs."""

from __future__ import annotations

import os

from .errors import ConfigError

VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched() -> bool:
    """Whether a launcher (torchrun) started this process: it sets WORLD_SIZE, even to 1."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def launched_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the launcher's environment; (0, 1, 0) without one.
    Values that are not whole numbers, or a rank outside the world, are refused: they come from a
    hand-made launch, and torch would fail on them with a traceback."""
    values = []
    for name, default in zip(VARIABLES, (0, 1, 0)):
        raw = os.environ.get(name)
        if raw is None:
            values.append(default)
        elif raw.strip().isdigit():
            values.append(int(raw))
        else:
            raise ConfigError(f"the launcher's variable {name} is {raw!r}, not a whole number: start the command with "
                              "torchrun, or unset RANK, WORLD_SIZE and LOCAL_RANK")
    rank, size, local_rank = values
    if launched() and not rank < size:
        raise ConfigError(f"RANK {rank} is not below WORLD_SIZE {size}: the ranks of {size} processes are 0 to "
                          f"{size - 1}; start the command with torchrun, or unset RANK and WORLD_SIZE")
    return rank, size, local_rank


def launched_rank() -> int:
    """This process's rank under a launcher, 0 otherwise."""
    return launched_world()[0] if launched() else 0


def not_first_on_node() -> bool:
    """Whether a launcher started this process and not as its node's first (LOCAL_RANK above 0):
    every process parses the same command line, so its usage errors and help are said once, by
    the first (review 53a: printed once per process). Values that do not read are left to
    ``launched_world``, which refuses them."""
    local = os.environ.get("LOCAL_RANK", "0").strip()
    return launched() and local.isdigit() and int(local) > 0
