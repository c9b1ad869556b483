"""Soak benchmark: a long run on the embedded data, recording resident memory and step time
per epoch, to show neither grows with time (no leak of tensors, graphs or file handles).

    python benchmarks/soak.py --epochs 50

Prints one line per epoch and a summary: the first and last five epochs' mean resident set
size and seconds per step, and their ratios."""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path


def rss_mib() -> float:
    """Current resident set size from /proc (Linux); the peak from getrusage elsewhere."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--preset", default="kd+ml")
    ns = parser.parse_args(argv)

    from peerdistill.build import train_from_config
    from peerdistill.config import default_config, validate

    rows = []
    started = [time.perf_counter()]

    def record(epoch, row):
        steps = 1077 // 64  # digits training split / batch size (drop_last)
        rows.append((epoch + 1, rss_mib(), row["seconds"] / steps))
        print(f"epoch {epoch + 1:3d}  rss {rows[-1][1]:8.1f} MiB  step {1000 * rows[-1][2]:7.2f} ms", flush=True)

    with tempfile.TemporaryDirectory() as out:
        tree = default_config()
        tree.update(out_dir=out, name="soak")
        tree["train"]["epochs"] = ns.epochs
        tree["distill"]["preset"] = ns.preset
        train_from_config(validate(tree), progress=False, callbacks=[record])
    head, tail = rows[:5], rows[-5:]
    rss0, rss1 = statistics.mean(r[1] for r in head), statistics.mean(r[1] for r in tail)
    t0, t1 = statistics.mean(r[2] for r in head), statistics.mean(r[2] for r in tail)
    print(f"\nfirst 5 epochs: rss {rss0:.1f} MiB, step {1000 * t0:.2f} ms")
    print(f"last 5 epochs:  rss {rss1:.1f} MiB, step {1000 * t1:.2f} ms")
    print(f"ratio last/first: rss {rss1 / rss0:.3f}, step time {t1 / t0:.3f}  "
          f"({time.perf_counter() - started[0]:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
