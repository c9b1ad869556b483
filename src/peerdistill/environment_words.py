"""A run's environment in words (run.json's ``environment``: the peerdistill version and git
commit, torch, numpy, python, the device and threads), one wording for the run's page, compare.md
and the comparison's page, so that the three say the same thing the same way."""

from __future__ import annotations

from typing import Any

EVERY_PART = ("torch", "numpy", "python", "device", "threads")  # a run's page: what a bit-for-bit repeat needs
CODE_AND_DEVICE = ("torch", "device")  # compare.md and the comparison's page: what its runs were trained by


def environment_in_words(env: dict[str, Any], parts: tuple[str, ...] = EVERY_PART) -> str:
    """``peerdistill 0.1.0 (git commit abc123), torch 2.13.0, on cpu, 1 thread``: the code, then
    ``parts`` of ``env`` in that order; what ``env`` lacks is left out ("" where it holds none)."""
    said = [code_in_words(env)]
    for key in parts:
        if key not in env:
            continue
        if key == "device":
            said.append(f"on {env['device']}")
        elif key == "threads":
            said.append(f"{env['threads']} thread{'' if env['threads'] == 1 else 's'}")
        else:
            said.append(f"{key} {env[key]}")
    return ", ".join(part for part in said if part)


def code_in_words(env: dict[str, Any]) -> str:
    """``peerdistill 0.1.0 (git commit abc123)``; the commit alone where the version is not given
    (a resumed session that changed the code alone); "" where neither is."""
    if "peerdistill" in env:
        return f"peerdistill {env['peerdistill']}" + (f" (git commit {env['source']})" if env.get("source") else "")
    return f"peerdistill's source, git commit {env['source']}" if env.get("source") else ""
