"""Memory and time of one training step with ``train.micro_batch_size``, against the whole batch.

    python benchmarks/micro_batches.py                      # the segmentation cohort of recipes/shapes.yaml
    python benchmarks/micro_batches.py --device cuda --batch 64 --image 256

Each setting runs in a fresh process (so one setting's peak cannot hide another's): it builds
the cohort, runs a few steps and reports the peak memory those steps added (on CUDA
``torch.cuda.max_memory_allocated``, on the CPU the growth of the process's peak resident set)
and the median step time. One line per setting, with its ratios to the whole batch."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "shapes.yaml"


def measure(ns: argparse.Namespace) -> dict:
    import functools

    import torch

    import peerdistill.data.segmentation as segmentation_data
    from peerdistill.build import make_trainer
    from peerdistill.config import load_config
    from peerdistill.data.synthetic import make_shapes

    # The synthetic shapes at the size asked for (the recipe's data kind draws them at 64x64).
    segmentation_data.make_shapes = functools.partial(make_shapes, size=ns.image)
    micro = [] if ns.micro == 0 else [f"train.micro_batch_size={ns.micro}"]
    cfg = load_config(str(RECIPE), [f"device={ns.device}", f"train.batch_size={ns.batch}", "out_dir=/nonexistent",
                                    f"data.shapes_counts=[{ns.batch},8,8]", *micro])
    trainer, data = make_trainer(cfg, progress=False)
    trainer._setup(data)
    trainer.cohort.train()
    x, y = next(iter(trainer.train_batches))
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.max_memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(ns.steps):
        started = time.perf_counter()
        trainer.step(x, y)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    after = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"micro": ns.micro, "peak_added_mib": (after - before) / 2**20, "step_ms": 1000 * statistics.median(times),
            "device": str(trainer.device)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image", type=int, default=128, help="side of the square synthetic images")
    parser.add_argument("--parts", default="1,2,4,8", help="comma-separated numbers of micro-batches per batch")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--micro", type=int, default=None, help=argparse.SUPPRESS)  # the child's setting (0: whole)
    ns = parser.parse_args(argv)
    if ns.micro is not None:
        print(json.dumps(measure(ns)))
        return 0
    rows = []
    for parts in [int(p) for p in ns.parts.split(",")]:
        micro = 0 if parts == 1 else -(-ns.batch // parts)
        child = subprocess.run([sys.executable, __file__, "--device", ns.device, "--batch", str(ns.batch), "--image",
                                str(ns.image), "--steps", str(ns.steps), "--micro", str(micro)],
                               capture_output=True, text=True)
        if child.returncode:
            sys.stderr.write(child.stderr)
            return child.returncode
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    whole = rows[0]
    print(f"segmentation cohort of {RECIPE.name} (U-Net teacher + 2 students), batch {ns.batch}, "
          f"{ns.image}x{ns.image} images, device {whole['device']}")
    print(f"{'micro_batch_size':>16} {'peak added MiB':>15} {'x whole':>8} {'step ms':>9} {'x whole':>8}")
    for r in rows:
        print(f"{r['micro'] or 'whole':>16} {r['peak_added_mib']:15.1f} {r['peak_added_mib'] / whole['peak_added_mib']:8.2f} "
              f"{r['step_ms']:9.1f} {r['step_ms'] / whole['step_ms']:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
