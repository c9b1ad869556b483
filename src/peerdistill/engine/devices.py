"""The device a config or a command names, checked against the machine."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` (CUDA where there is an NVIDIA GPU, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or
    ``mps``, refused with the fix where this machine lacks it."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device '{device}' is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' was asked for but CUDA is not available: use cpu or auto (device=cpu in a "
                          "config, --device cpu for eval)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device '{device}': this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{device}' was asked for but MPS is not available: use cpu (device=cpu in a config, "
                          "--device cpu for eval)")
    return dev
