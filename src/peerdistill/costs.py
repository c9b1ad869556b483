"""What a model costs to ship: parameters, multiply-accumulates for one input, size on disk,
CPU latency for one input (and GPU latency where the run trained on one), and the compression
ratio against the teacher."""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .ensemble_cost import ENSEMBLE, compression, ensemble_cost


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on one input, counted by torch's
    ``FlopCounterMode`` (a FLOP there is a multiply or an add: MACs = FLOPs / 2). Attention is
    counted as the matrix products it is: the fused fast path of ``nn.TransformerEncoderLayer``
    and ``nn.MultiheadAttention`` in eval mode is off meanwhile, and scaled dot-product
    attention takes its plain (math) kernel; the counter counts neither fused op (a ViT read
    12x too cheap)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = copy.deepcopy(module).cpu().eval()
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape))
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    return int(counter.get_total_flops() // 2)


def cpu_latencies_ms(modules: dict[str, nn.Module], input_shape: tuple[int, ...],
                     repeats: int = 10, min_seconds: float = 0.0) -> dict[str, float]:
    """``latencies_ms`` on one CPU thread: the setting of a small device, and less at the mercy
    of other work on the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return latencies_ms(modules, input_shape, torch.device("cpu"), repeats, min_seconds)
    finally:
        torch.set_num_threads(threads)


WARM_PASSES = 2  # untimed passes before each timed one (one left a small model 15-25% slow after a large one)
# A run's latencies: timed rounds until the timed passes add up to this (small models get many
# more than ``repeats``: ten passes of 3 ms gave one of two identical students half the other's
# median on a busy machine), up to MAX_ROUNDS.
LATENCY_SECONDS = 0.5
MAX_ROUNDS = 100


def latencies_ms(modules: dict[str, nn.Module], input_shape: tuple[int, ...], device: torch.device,
                 repeats: int = 10, min_seconds: float = 0.0) -> dict[str, float]:
    """Per model, the median wall time of one fp32 forward pass on one input on ``device``
    (after 3 warm-up rounds), over ``repeats`` timed rounds or more, until the timed passes of
    all models add up to ``min_seconds`` (at most ``MAX_ROUNDS``). The models take turns,
    ``WARM_PASSES`` + 1 passes each per round, the last timed: a burst of other work on the
    machine slows a pass of every model, not all passes of one (timed one model after another,
    two identical students differed 1.8x on a loaded machine), and the untimed pass warms the
    caches the other models' passes took (timed right after a large teacher, a small student
    read 2x slower). On CUDA each pass is awaited (kernels run asynchronously), so the time is
    the model's, not its launch's."""
    models = {name: copy.deepcopy(module).to(device).eval() for name, module in modules.items()}
    x = torch.zeros(1, *input_shape, device=device)
    wait = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in models}
    timed = 0.0
    with torch.inference_mode():
        for i in range(3 + max(repeats, MAX_ROUNDS)):
            if i >= 3 + repeats and timed >= min_seconds:
                break
            for name, model in models.items():
                for _ in range(WARM_PASSES):  # untimed: this model's weights back in the caches
                    model(x)
                wait()
                start = time.perf_counter()
                model(x)
                wait()
                if i >= 3:
                    times[name].append((time.perf_counter() - start) * 1000)
                    timed += times[name][-1] / 1000
    return {name: statistics.median(t) for name, t in times.items()}


def model_costs(modules: dict[str, nn.Module], input_shape: tuple[int, ...], files: dict[str, Path],
                reference: str | None = None, gpu: torch.device | None = None,
                ensemble_of: list[str] | None = None, ensemble: nn.Module | None = None) -> dict[str, dict[str, float]]:
    """Costs of each model as shipped; ``compression`` is the reference model's parameters over
    this model's (how many times smaller than the teacher); with ``gpu`` (a CUDA device), also
    the latency there. With ``ensemble_of`` (the students), also the students' ensemble's
    (``ensemble_cost.py``): the sums of theirs, its latency timed on ``ensemble`` (the graph
    export ships: every student run) where given, else the sum of theirs."""
    timed = {**modules, ENSEMBLE: ensemble} if ensemble_of and ensemble is not None else modules
    cpu = cpu_latencies_ms(timed, input_shape, min_seconds=LATENCY_SECONDS)
    on_gpu = latencies_ms(timed, input_shape, gpu, min_seconds=LATENCY_SECONDS) if gpu is not None else {}
    costs = {}
    for name, module in modules.items():
        costs[name] = {
            "parameters": sum(p.numel() for p in module.parameters()),
            "macs": count_macs(module, input_shape),
            "size_bytes": files[name].stat().st_size if name in files and files[name].exists() else None,
            "cpu_latency_ms": round(cpu[name], 3),
        }
        if gpu is not None:
            costs[name]["gpu_latency_ms"] = round(on_gpu[name], 3)
    if ensemble_of:
        measured = {key: times[ENSEMBLE] for key, times in (("cpu_latency_ms", cpu), ("gpu_latency_ms", on_gpu))
                    if ENSEMBLE in times}
        if (cost := ensemble_cost(costs, ensemble_of, measured)) is not None:
            costs[ENSEMBLE] = cost
    if reference in costs:
        for c in costs.values():
            c["compression"] = compression(costs[reference]["parameters"], c["parameters"])
    return costs
