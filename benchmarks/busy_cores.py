"""How `peerdistill train` fares on a machine whose cores other processes keep busy: the
embedded default (a few epochs) timed in a fresh process under torch's default threads, under
`OMP_WAIT_POLICY=PASSIVE` and under `OMP_NUM_THREADS=1`, first on idle cores, then beside
`--busy` processes, side by side in one run: each a plain Python loop keeping one core busy, or
with `--busy-kind torch` a loop of matrix products on torch's default threads (another torch
program, such as a second training or the test suite).

    python benchmarks/busy_cores.py --busy 1 --epochs 3
    python benchmarks/busy_cores.py --busy 1 --busy-kind torch

torch's CPU kernels run on OpenMP threads that spin while they wait for each other; when
another process holds a core, a spinning thread burns the time its partner needs."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

LOOPS = {"python": "while True: pass",
         "torch": "import torch\na = torch.randn(256, 256)\nwhile True: a @ a"}
SETTINGS = {"torch's default": {}, "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
            "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"}}


def timed_train(epochs: int, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "peerdistill", "train", f"train.epochs={epochs}", "--quiet"],
                       cwd=folder, env={**os.environ, **env}, check=True, capture_output=True)
        return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=1, help="processes keeping a core busy in the second round")
    parser.add_argument("--busy-kind", choices=sorted(LOOPS), default="python")
    parser.add_argument("--epochs", type=int, default=3)
    ns = parser.parse_args(argv)
    if ns.busy < 0 or ns.epochs < 1:
        parser.error(f"--busy must be 0 or more and --epochs 1 or more, got {ns.busy} and {ns.epochs}")
    inherited = [k for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS") if k in os.environ]
    if inherited:
        print(f"busy_cores.py: unset {', '.join(inherited)} first: each setting sets its own", file=sys.stderr)
        return 2
    print(f"peerdistill train train.epochs={ns.epochs}, {os.cpu_count()} cores; seconds (ratio to torch's default)")
    for busy in sorted({0, ns.busy}):
        loops = [subprocess.Popen([sys.executable, "-c", LOOPS[ns.busy_kind]]) for _ in range(busy)]
        try:
            seconds = {name: timed_train(ns.epochs, env) for name, env in SETTINGS.items()}
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
        default = seconds["torch's default"]
        cells = "  ".join(f"{name}: {s:6.1f} s ({s / default:.2f})" for name, s in seconds.items())
        print(f"{busy} busy ({ns.busy_kind}): {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
