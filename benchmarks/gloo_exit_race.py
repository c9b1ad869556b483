"""Why a process that trained under DDP on gloo ends through `end_process`: how often a bare
torch script (one DDP step on 2 processes, then the second process exiting a few milliseconds
after the first) aborts at exit, ending normally against ending through
`peerdistill.engine.distributed.end_process` (atexit handlers, then `os._exit`).

    python benchmarks/gloo_exit_race.py --runs 6

torch's DistributedDataParallel keeps the gloo group's threads past `destroy_process_group`;
a peer that exits while a process tears itself down can then make it abort ("terminate called
without an active exception"), which torchrun reports as a failed run. Prints, per way of
ending, the runs that aborted out of those made."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WORKER = textwrap.dedent('''
    import os, sys, time
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))
    model(torch.ones(4, 3)).sum().backward()
    dist.barrier()
    dist.destroy_process_group()
    if os.environ["RANK"] == "1":
        time.sleep(float(sys.argv[1]))  # exit just after the other process
    if sys.argv[2] == "end_process":
        from peerdistill.engine.distributed import end_process

        end_process(0)
''')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6, help="runs per delay and way of ending (default 6)")
    parser.add_argument("--delays-ms", default="1,2,3,4", help="the second process's delay before exiting")
    ns = parser.parse_args(argv)
    delays = [float(d) / 1000 for d in ns.delays_ms.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        worker = Path(tmp) / "worker.py"
        worker.write_text(WORKER)
        for ending in ("normal exit", "end_process"):
            aborted = made = 0
            for delay in delays:
                for _ in range(ns.runs):
                    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                           "--nproc-per-node", "2", str(worker), str(delay), ending],
                                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                    made += 1
                    aborted += proc.returncode != 0
            print(f"{ending:12s} aborted {aborted} of {made} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
