"""What ``data.exclude`` costs per file read: ``Exclusion.kept`` over synthetic paths (no disk).

    python benchmarks/exclude_matching.py                 # 100,000 paths, 3 rounds each
    python benchmarks/exclude_matching.py --paths 2000    # fewer (the tests)

Every image (and mask) file a loader lists is matched against every pattern before the split
is cut (``data/exclusion.py``). Per pattern set this prints the median seconds over the rounds
for the paths given, and microseconds per path; plain names are dictionary look-ups, globs one
combined regular expression per candidate name.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from peerdistill.data.exclusion import Exclusion


def pattern_sets(paths: int) -> list[tuple[str, list[str]]]:
    names = [f"IM-{i:06d}" for i in range(0, paths, max(1, paths // 1000))][:1000]
    return [("3 globs", ["class0/IM-00001?.jpeg", "*_copy.jpeg", "class1/IM-0002*"]),
            (f"{len(names):,} plain names", names),
            ("200 globs", [f"class{i % 2}/IM-{i:05d}?.jpeg" for i in range(200)])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time, for a machine others share")
    args = parser.parse_args()
    root = Path(tempfile.gettempdir()) / "exclude-bench"  # (never read: the paths are only matched)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    files = [root / f"class{i % 2}" / f"IM-{i:06d}.jpeg" for i in range(args.paths)]
    print(f"{'patterns':<22}{'paths':>9}{'seconds':>10}{'us/path':>9}{'left out':>10}")
    for label, patterns in pattern_sets(args.paths):
        times, kept = [], []
        for _ in range(args.rounds):
            exclusion = Exclusion(patterns, root)
            start = clock()
            kept = exclusion.kept(files)
            times.append(clock() - start)
        seconds = statistics.median(times)
        print(f"{label:<22}{len(files):>9,}{seconds:>10.3f}{seconds / len(files) * 1e6:>9.1f}"
              f"{len(files) - len(kept):>10,}")
    print(f"({args.clock} clock, {os.cpu_count()} cores; median of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
