"""Memory layout on the CPU: a cohort's training step in channels-first (NCHW, the CPU default)
against channels-last (NHWC, ``train.channels_last=true``), side by side in one process.

Each round times one forward + backward + SGD step of every model of the cohort on the same
batch, once per layout, alternating; the median round counts, so the ratio is fair on a shared,
noisy machine. It also prints how far apart the two layouts' losses are at the third step,
from the same weights (sums in another order, BatchNorm's batch statistics among them): like
another thread count, the layout moves a run's late digits, and so its best epoch.

    python benchmarks/cpu_layout.py                  # every cohort, 1 thread
    python benchmarks/cpu_layout.py --threads 2 --rounds 5

Cohorts (peerdistill's zoo, as the recipes build them):
  drive:   U-Net teacher (width 16, depth 3) + 2 MobileNet U-Nets (width 8), 32 patches 64x64, 1 channel
  shapes:  U-Net teacher (width 12, depth 3) + 2 MobileNet U-Nets (width 8), 16 images 64x64, 1 channel
  resnet:  recipes/pneumoniamnist.yaml's ResNet teacher (width 32, blocks 2,2,2,2) + 2 ResNets (width 8,
           blocks 1,1,1,1), 64 images 28x28
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from peerdistill.engine.speed import to_channels_last
from peerdistill.models import MobileUNet, ResNet, UNet

COHORTS = {
    "drive": (lambda: [UNet(1, 2, width=16, depth=3), MobileUNet(1, 2, width=8, depth=3),
                       MobileUNet(1, 2, width=8, depth=3)], (32, 1, 64, 64), "dense"),
    "shapes": (lambda: [UNet(1, 2, width=12, depth=3), MobileUNet(1, 2, width=8, depth=3),
                        MobileUNet(1, 2, width=8, depth=3)], (16, 1, 64, 64), "dense"),
    "resnet": (lambda: [ResNet(1, 2, blocks=[2, 2, 2, 2], width=32), ResNet(1, 2, blocks=[1, 1, 1, 1], width=8),
                        ResNet(1, 2, blocks=[1, 1, 1, 1], width=8)], (64, 1, 28, 28), "classes"),
}


def step(models, optimizers, x, y) -> float:
    """One training step of every model; the summed loss."""
    total = 0.0
    for model, optimizer in zip(models, optimizers):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total


def measure(name: str, rounds: int) -> tuple[float, float, float]:
    """(median seconds per step channels-first, channels-last, relative loss gap at the third step)."""
    factory, shape, kind = COHORTS[name]
    torch.manual_seed(0)
    first = factory()
    last = [to_channels_last(copy.deepcopy(m), "cpu") for m in first]  # as train.channels_last=true does
    x = torch.randn(*shape)
    y = (torch.randint(0, 2, (shape[0], shape[2], shape[3])) if kind == "dense" else torch.randint(0, 2, (shape[0],)))
    x_last = x.contiguous(memory_format=torch.channels_last)
    opt_first = [torch.optim.SGD(m.parameters(), lr=0.01) for m in first]
    opt_last = [torch.optim.SGD(m.parameters(), lr=0.01) for m in last]
    for m in first + last:
        m.train()
    for _ in range(3):  # warm-up; the same weights at the start, then each layout's own steps
        loss_first, loss_last = step(first, opt_first, x, y), step(last, opt_last, x_last, y)
    gap = abs(loss_first - loss_last) / abs(loss_first)  # of the third step
    times = {"first": [], "last": []}
    for _ in range(rounds):
        for label, models, optimizers, batch in (("first", first, opt_first, x), ("last", last, opt_last, x_last)):
            start = time.perf_counter()
            step(models, optimizers, batch, y)
            times[label].append(time.perf_counter() - start)
    return statistics.median(times["first"]), statistics.median(times["last"]), gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cohorts", default=",".join(COHORTS), help="comma-separated: " + ", ".join(COHORTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    unknown = [c for c in args.cohorts.split(",") if c not in COHORTS]
    if unknown:
        parser.error(f"unknown cohort(s) {unknown}: choose from {', '.join(COHORTS)}")
    if args.threads < 1 or args.rounds < 1:
        parser.error("--threads and --rounds must be at least 1")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.rounds} rounds")
    print(f"{'cohort':<8} {'NCHW s/step':>12} {'NHWC s/step':>12} {'speed-up':>9} {'loss gap':>9}")
    for name in args.cohorts.split(","):
        first, last, gap = measure(name, args.rounds)
        print(f"{name:<8} {first:12.3f} {last:12.3f} {first / last:8.2f}x {gap:9.1e}")


if __name__ == "__main__":
    main()
