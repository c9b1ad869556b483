"""How a run goes fast: mixed precision, memory format, cuDNN autotuning, torch.compile.

``resolve_speed`` turns the config's ``auto`` values into concrete settings for the device:
on CUDA, bf16 autocast (fp16 with a gradient scaler where bf16 is missing), channels-last conv
nets, cuDNN autotuning (unless the run is deterministic), packed students and DataLoader
workers for datasets not held in memory; elsewhere fp32, the plain layout and no workers:
on a CPU packing measured slower and workers take cores from training, and fp32 is kept
although bf16 autocast measured about twice as fast for a ResNet cohort's step on a CPU with
bf16 instructions (and no different for the digits default),
while channels-last measured faster for U-Nets but moves a run's numbers more than another
thread count, so it is an option there (docs/benchmarks.md).
Explicit values always win. The settings are recorded in ``run.json``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..capture import packing_safe
from ..config import TrainSpec
from ..errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class SpeedSettings:
    precision: str = "fp32"  # bf16 | fp16 | fp32
    channels_last: bool = False
    fuse_students: bool = False
    compile: bool = False
    compile_backend: str = "inductor"
    cudnn_benchmark: bool = False
    nonfinite: str = "stop"
    data_workers: int = 0

    def autocast(self, device: torch.device):
        """The context a training forward and its losses run in."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=DTYPES[self.precision])

    def grad_scaler(self, device: torch.device):
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        if self.precision != "fp16":
            return None
        return torch.amp.GradScaler(device.type)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_speed(train: TrainSpec, device: torch.device, deterministic: bool) -> SpeedSettings:
    cuda = device.type == "cuda"
    precision = train.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision == "fp16" and device.type not in ("cuda", "cpu"):
        raise ConfigError(f"train.precision=fp16 is not supported on {device.type}: use bf16 or fp32")
    if precision == "fp16" and train.nonfinite == "stop":
        raise ConfigError("train.nonfinite=stop cannot be used with fp16: the gradient scaler's occasional "
                          "overflows are skipped steps by design; leave train.nonfinite unset (skip) or use bf16")
    nonfinite = train.nonfinite or ("skip" if precision == "fp16" else "stop")
    return SpeedSettings(
        precision=precision,
        channels_last=cuda if train.channels_last == "auto" else bool(train.channels_last),
        fuse_students=cuda if train.fuse_students == "auto" else bool(train.fuse_students),
        compile=train.compile,
        compile_backend=train.compile_backend,
        cudnn_benchmark=cuda and not deterministic,
        nonfinite=nonfinite,
        data_workers=data_workers(train.num_workers, cuda),
    )


def data_workers(setting: int | str, cuda: bool) -> int:
    """Loader workers per process: the cores of this machine shared among its torchrun processes,
    one left to each training process, at most 8 (more rarely helps and costs memory)."""
    if setting != "auto":
        return int(setting)
    if not cuda:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(0, min(8, per_process - 1))


def apply_backend_settings(settings: SpeedSettings) -> None:
    if settings.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True  # autotune conv algorithms for the (fixed) batch shapes


def has_conv2d(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def to_channels_last(module: nn.Module, device_type: str = "cuda") -> nn.Module:
    """Conv weights in NHWC, the layout tensor-core convolutions read directly. On the CPU the
    convolutions oneDNN gets wrong in that layout stay NCHW (``keep_nchw_where_onednn_fails``)."""
    if not has_conv2d(module):
        return module
    module.to(memory_format=torch.channels_last)
    if device_type == "cpu":
        keep_nchw_where_onednn_fails(module)
    return module


# oneDNN's CPU kernels block input channels by 8 (AVX2) or 16 (AVX-512).
ONEDNN_CHANNEL_BLOCK = 16


def keep_nchw_where_onednn_fails(module: nn.Module) -> int:
    """The weight gradient of a strided 1x1 convolution whose channels-last input has fewer
    channels than oneDNN's block writes past its workspace and corrupts the heap (a crash, or
    worse, none; uxlfoundation/oneDNN#6035, reproduced with torch 2.13's CPU build). Such
    convolutions keep NCHW weights and get NCHW inputs; the others stay channels-last. Returns
    how many were kept."""
    kept = 0
    for m in module.modules():
        if (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1
                and m.in_channels // m.groups < ONEDNN_CHANNEL_BLOCK):
            # clone, not .contiguous(): a 1x1 weight in NHWC already counts as contiguous, and
            # its strides would still pick the channels-last kernel
            m.weight.data = m.weight.data.clone(memory_format=torch.contiguous_format)
            if not getattr(m, "_keeps_nchw_input", False):  # a model moved twice gets one hook
                m.register_forward_pre_hook(_nchw_input)
                m._keeps_nchw_input = True
            kept += 1
    return kept


@packing_safe  # on the template of a packed group it makes the batched input contiguous, as wanted
def _nchw_input(_module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def compiled(module: nn.Module, backend: str) -> nn.Module:
    """``torch.compile`` of a model (it shares the model's parameters, so optimizers, saving and
    feature hooks on its submodules keep working)."""
    try:
        return torch.compile(module, backend=backend)
    except Exception as exc:  # an unknown backend name or a platform without a compiler
        raise ConfigError(f"torch.compile with backend '{backend}' failed: {str(exc).splitlines()[0]}; "
                          "set train.compile=false or another train.compile_backend") from None
