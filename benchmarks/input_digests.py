"""What keeping a digest of every training input costs at a run's start (train_digests.json).

    python benchmarks/input_digests.py                # three set sizes, 3 rounds each
    python benchmarks/input_digests.py --rounds 5
    python benchmarks/input_digests.py --rows 0.01    # a hundredth of each set's rows (the tests)

A run trained from in-memory data hashes each training input once, before its first epoch
(``data/digests.py``: 8-byte BLAKE2b digests, rows copied to host memory 1,024 at a time), so
that eval can warn of training images saved anew. Per set this prints its size in MB, the
median seconds of ``digests_record`` over the rounds, the seconds per GB, and the record's size
on disk (JSON), and checks a channels-last copy of the set gives the same digests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from peerdistill.data.digests import digests_record

# (name, rows, channels, side): PneumoniaMNIST's training split, Kvasir-SEG at 96x96, a CIFAR-size set
SETS = (("pneumoniamnist 28x28", 4708, 1, 28), ("kvasir-seg 96x96", 698, 3, 96), ("cifar-size 32x32", 50000, 3, 32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=float, default=1.0, help="the share of each set's rows to hash")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"{'set':<22}{'MB':>9}{'seconds':>10}{'s per GB':>10}{'record KB':>11}")
    for name, rows, channels, side in SETS:
        x = torch.rand(max(1, round(rows * args.rows)), channels, side, side)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            record = digests_record(x)
            times.append(time.perf_counter() - start)
        if digests_record(x.contiguous(memory_format=torch.channels_last))["digests"] != record["digests"]:
            raise SystemExit(f"{name}: a channels-last copy gave other digests")
        megabytes = x.numel() * x.element_size() / 1e6
        seconds = statistics.median(times)
        print(f"{name:<22}{megabytes:>9.1f}{seconds:>10.3f}{seconds / megabytes * 1e3:>10.2f}"
              f"{len(json.dumps(record)) / 1e3:>11.1f}")


if __name__ == "__main__":
    main()
