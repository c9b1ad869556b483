"""CPU training step in fp32 against bf16 autocast, side by side in one process.

Why the CPU default is fp32 (``train.precision=auto``): this measures ``Trainer.step`` on the
same kd+ml cohort (frozen teacher, K students) and batch as benchmarks/step_throughput.py's
case a, once with ``precision="fp32"`` and once with ``precision="bf16"``, each on its own copy
of the same models, in alternating rounds (the median round counts).

    OMP_NUM_THREADS=1 python benchmarks/cpu_precision.py --clock cpu
    python benchmarks/cpu_precision.py --students 2 --batch 32 --steps 3 --rounds 3

Prints one row per precision: seconds per step, img/s and the ratio of its step time to fp32's
(above 1: slower than fp32).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import torch

from step_throughput import PeerdistillStep, case_models, measure

PRECISIONS = ("fp32", "bf16")


def time_precisions(students: int, batch: int, image: int, args) -> list[dict]:
    """Median seconds per step of each precision, and its ratio to fp32's."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    x = torch.randn(batch, 3, image, image)
    y = torch.randint(0, 100, (batch,))
    teacher, studs = case_models("a", students, image)
    steps = {p: PeerdistillStep(copy.deepcopy(teacher), copy.deepcopy(studs), device, x, y, precision=p)
             for p in PRECISIONS}
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    results = measure(steps, x, y, device, args.steps, args.warmup, args.rounds, clock)
    medians = {p: statistics.median(results[p]["times"]) for p in PRECISIONS}
    return [{"precision": p, "trainer_precision": steps[p].trainer.speed.precision, "s_per_step": medians[p], "img_per_s": batch / medians[p],
             "time_vs_fp32": medians[p] / medians["fp32"]} for p in PRECISIONS]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: time by the process's CPU time (with OMP_NUM_THREADS=1 on a shared machine)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    print(f"CPU, {torch.get_num_threads()} threads; torch {torch.__version__}; case a, K={args.students}, "
          f"batch {args.batch}, {args.image}x{args.image}; {args.rounds} rounds of {args.steps} steps, median round, "
          f"{args.clock} clock")
    rows = time_precisions(args.students, args.batch, args.image, args)
    for row in rows:
        print(f"{row['precision']:5} (trainer: {row['trainer_precision']}) {row['s_per_step']:8.3f} s/step {row['img_per_s']:8.1f} img/s "
              f"{row['time_vs_fp32']:6.2f}x fp32's time", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": torch.get_num_threads(), "torch": torch.__version__, "clock": args.clock,
                       "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
