"""How much `compare --jobs N` saves: the same comparison run one run at a time and N runs at
once, one after the other in this process, with the wall time of each and their ratio.

    python benchmarks/compare_jobs.py --jobs 2 --epochs 3 --seeds 2

A recipe and key=value overrides may be given (default: the embedded default). With one run at
a time each run uses all of torch's threads; with N at once each gets 1/N of them. Both
comparisons start from empty directories, so nothing is reused."""

from __future__ import annotations

import argparse
import tempfile
import time

from rich.console import Console


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value ...]")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once in the second comparison (default 2)")
    parser.add_argument("--presets", default="independent,kd,ml,kd+ml")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    ns = parser.parse_args(argv)

    import torch

    from peerdistill.compare import compare
    from peerdistill.comparison_configs import parse_presets
    from peerdistill.config import apply_overrides, default_config, load_yaml

    paths = [a for a in ns.args if "=" not in a]
    tree = load_yaml(paths[0]) if paths else default_config()
    apply_overrides(tree, [a for a in ns.args if "=" in a] + [f"train.epochs={ns.epochs}"])
    presets = parse_presets(ns.presets)
    runs = len(presets) * ns.seeds
    print(f"{runs} runs ({ns.presets} x {ns.seeds} seeds, {ns.epochs} epochs); torch threads: "
          f"{torch.get_num_threads()}")
    quiet = Console(quiet=True)
    seconds = {}
    for jobs in (1, ns.jobs):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            compare(tree, presets, ns.seeds, progress=False, console=quiet, out=out, jobs=jobs)
            seconds[jobs] = time.perf_counter() - start
        print(f"--jobs {jobs}: {seconds[jobs]:7.1f} s  ({seconds[jobs] / runs:.1f} s per run)", flush=True)
    print(f"speed-up of --jobs {ns.jobs} over --jobs 1: {seconds[1] / seconds[ns.jobs]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
