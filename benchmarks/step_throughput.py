"""Training-step throughput of a cohort: the usual implementation against peerdistill's, side by side.

One frozen teacher and K students, losses CE + KD (T=4) + mutual learning, one optimizer step
per batch. Each implementation trains its own copy of the same models on the same batch, in
one process, in alternating rounds (the median round counts), so the ratios are fair on a
shared, noisy machine.

- usual: what single-paper scripts do: fp32, NCHW, the teacher under ``torch.no_grad``, a
  Python loop over the students, one SGD optimizer with PyTorch's default kernels.
- peerdistill (default): ``Trainer.step`` with the defaults for the device (on CUDA: bf16
  autocast, channels-last, cuDNN autotuning, fused optimizers, packed students; on CPU: fp32, fused
  optimizers).
- peerdistill packed / separate: the same with packed students forced on / off, to show what
  packing does on this device.

Cases (models from peerdistill's zoo):
  a: CIFAR-size ResNet-32x4-style teacher + K ResNet-8x4-style students, 32x32 images
  b: ResNet-50-style teacher + 2 ResNet-18-style students, 224x224 images (ImageNet stems)

    python benchmarks/step_throughput.py                         # sizes for the device found
    python benchmarks/step_throughput.py --device cpu --case a --students 1,2,4 --batch 64
    python benchmarks/step_throughput.py --device cuda --compile # also a torch.compile row

Prints one table row per (case, K, implementation): img/s, the ratio to the usual
implementation, achieved TFLOP/s (forward + backward FLOPs of one step, counted with
``torch.utils.flop_counter.FlopCounterMode``, over the step time) and peak memory (CUDA only).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from peerdistill import Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec, preset_edges
from peerdistill.data import TensorData
from peerdistill.errors import PeerdistillWarning
from peerdistill.config import OptimSpec
from peerdistill.models import ResNet

NUM_CLASSES = 100


def case_models(case: str, students: int, image: int):
    if case == "a":
        teacher = ResNet(3, NUM_CLASSES, blocks=[5, 5, 5], width=64)  # ResNet-32x4-style
        make_student = lambda: ResNet(3, NUM_CLASSES, blocks=[1, 1, 1], width=64)  # ResNet-8x4-style
    else:
        teacher = ResNet(3, NUM_CLASSES, blocks=[3, 4, 6, 3], width=64, block="bottleneck", stem="imagenet")
        make_student = lambda: ResNet(3, NUM_CLASSES, blocks=[2, 2, 2, 2], width=64, stem="imagenet")
    return teacher, [make_student() for _ in range(students)]


class UsualStep:
    """The common hand-written cohort step."""

    def __init__(self, teacher, students, device, lr=0.05, temperature=4.0):
        self.teacher, self.students = teacher.to(device).eval(), [s.to(device).train() for s in students]
        self.temperature = temperature
        params = [p for s in self.students for p in s.parameters()]
        self.optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def __call__(self, x, y):
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        logits = [s(x) for s in self.students]
        t = self.temperature
        loss = 0.0
        for i, out in enumerate(logits):
            loss = loss + F.cross_entropy(out, y)
            loss = loss + t * t * F.kl_div(F.log_softmax(out / t, 1), F.softmax(teacher_logits / t, 1),
                                           reduction="batchmean")
            for j, peer in enumerate(logits):
                if j != i:
                    loss = loss + F.kl_div(F.log_softmax(out, 1), F.softmax(peer.detach(), 1),
                                           reduction="batchmean") / max(len(logits) - 1, 1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss


class PeerdistillStep:
    """``Trainer.step`` on a kd+ml cohort with a frozen teacher, set up as ``fit`` sets it up."""

    def __init__(self, teacher, students, device, x, y, **train):
        cohort = Cohort.from_modules(students, teacher=teacher, frozen_teacher=True)
        names = [m.name for m in cohort.students]
        preset = "kd+ml" if len(names) > 1 else "kd"  # one student has no peers
        graph = KnowledgeGraph(preset_edges(preset, "teacher", names, kd_temperature=4.0))
        from peerdistill.tasks import ClassificationTask

        spec = TrainSpec(epochs=1, batch_size=len(x), eval_batch_size=len(x), **train)
        self.trainer = Trainer(cohort, graph, ClassificationTask(NUM_CLASSES), train=spec,
                               optim=OptimSpec(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4),
                               device=device, progress=False)
        # The benchmark's batch as every split, as is (from_arrays would refuse random labels that
        # happen to miss class 0 of 100).
        batch = TensorData(x.cpu(), y.cpu())
        with warnings.catch_warnings():  # (that val and test are the training batch itself is this benchmark's own doing)
            warnings.simplefilter("ignore", PeerdistillWarning)
            self.trainer._setup(DataSplits(batch, batch, batch, num_classes=NUM_CLASSES,
                                           class_names=[str(c) for c in range(NUM_CLASSES)],
                                           input_shape=tuple(x.shape[1:])))
        self.trainer.cohort.train()

    def __call__(self, x, y):
        return self.trainer.step(x, y)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(case, students, x, y):
    """Forward + backward FLOPs of one usual step (the same arithmetic every implementation does)."""
    teacher, studs = case_models(case, students, x.shape[-1])
    step = UsualStep(teacher, studs, torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with counter:
        step(x[:2].cpu(), y[:2].cpu())
    return counter.get_total_flops() * len(x) / 2


def measure(impls: dict, x, y, device, steps: int, warmup: int, rounds: int, clock=time.perf_counter):
    """Each implementation's seconds per step by ``clock`` (``time.process_time`` on a shared CPU:
    what other processes take of the cores does not count)."""
    results = {name: {"times": [], "peak": 0} for name in impls}
    for name, step in impls.items():  # warm up (cuDNN autotuning, compile) before any timing
        for _ in range(warmup):
            step(x, y)
    sync(device)
    for _ in range(rounds):
        for name, step in impls.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            start = clock()
            for _ in range(steps):
                step(x, y)
            sync(device)
            results[name]["times"].append((clock() - start) / steps)
            if device.type == "cuda":
                results[name]["peak"] = max(results[name]["peak"], torch.cuda.max_memory_allocated(device))
    return results


def run_case(case, students, batch, image, device, args):
    torch.manual_seed(0)
    x = torch.randn(batch, 3, image, image, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    teacher, studs = case_models(case, students, image)
    impls = {"usual (fp32, loop)": UsualStep(copy.deepcopy(teacher), copy.deepcopy(studs), device)}
    impls["peerdistill (default)"] = PeerdistillStep(copy.deepcopy(teacher), copy.deepcopy(studs), device, x, y)
    if students > 1:
        for label, fuse in (("peerdistill packed", True), ("peerdistill separate", False)):
            impls[label] = PeerdistillStep(copy.deepcopy(teacher), copy.deepcopy(studs), device, x, y,
                                           fuse_students=fuse)
    if args.compile:
        impls["peerdistill + compile"] = PeerdistillStep(copy.deepcopy(teacher), copy.deepcopy(studs), device, x, y,
                                                         compile=True)
    defaults = impls["peerdistill (default)"].trainer.speed
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    results = measure(impls, x, y, device, args.steps, args.warmup, args.rounds, clock)
    flops = step_flops(case, students, x, y)
    usual = statistics.median(results["usual (fp32, loop)"]["times"])
    rows = []
    for name, r in results.items():
        t = statistics.median(r["times"])
        rows.append({"case": case, "students": students, "batch": batch, "image": image, "impl": name,
                     "img_per_s": batch / t, "ratio": usual / t, "tflops": flops / t / 1e12,
                     "peak_mib": r["peak"] / 2**20 if device.type == "cuda" else None,
                     "default_settings": defaults.to_dict() if name == "peerdistill (default)" else None})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--case", choices=["a", "b", "all"], default="all")
    parser.add_argument("--students", default=None, help="K values for case a, e.g. 1,2,4,8")
    parser.add_argument("--batch", type=int, default=None, help="case a batch (default 512 on CUDA, 64 on CPU)")
    parser.add_argument("--batch-b", type=int, default=None, help="case b batch (default 64 on CUDA, 8 on CPU)")
    parser.add_argument("--image-b", type=int, default=None, help="case b image side (default 224 on CUDA, 112 on CPU)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row (slow to warm up)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: time steps by the process's CPU time (CPU device only; with OMP_NUM_THREADS=1 on a "
                             "machine others share, where wall time measures their load too); img/s is then per "
                             "CPU-second")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        parser.error("--clock cpu times the CPU's work; a GPU's steps are timed by the wall clock (leave --clock out)")
    cuda = device.type == "cuda"
    ks = [int(k) for k in (args.students or ("1,2,4,8" if cuda else "1,2,4")).split(",")]
    args.steps = args.steps or (20 if cuda else 3)
    plan = []
    if args.case in ("a", "all"):
        plan += [("a", k, args.batch or (512 if cuda else 64), 32) for k in ks]
    if args.case in ("b", "all"):
        plan.append(("b", 2, args.batch_b or (64 if cuda else 8), args.image_b or (224 if cuda else 112)))
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {args.rounds} rounds of {args.steps} steps, median round"
          + ("; timed by CPU time (img/s per CPU-second)" if args.clock == "cpu" else ""))
    header = f"{'case':4} {'K':>2} {'batch':>5} {'img':>4}  {'implementation':24} {'img/s':>9} {'x usual':>8} {'TFLOP/s':>8} {'peak MiB':>9}"
    print(header)
    rows = []
    for case, k, batch, image in plan:
        for row in run_case(case, k, batch, image, device, args):
            rows.append(row)
            peak = f"{row['peak_mib']:9.0f}" if row["peak_mib"] is not None else f"{'-':>9}"
            print(f"{case:4} {k:>2} {batch:>5} {image:>4}  {row['impl']:24} {row['img_per_s']:9.1f} "
                  f"{row['ratio']:8.2f} {row['tflops']:8.3f} {peak}", flush=True)
    defaults = next(r["default_settings"] for r in rows if r["default_settings"])
    print(f"peerdistill defaults on this device: {json.dumps(defaults)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "torch": torch.__version__, "clock": args.clock, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
