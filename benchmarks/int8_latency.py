"""CPU latency and file size of a student exported as fp32 ONNX and as int8 ONNX, side by side.

    python benchmarks/int8_latency.py                       # ResNet-8x4 at 32x32, ResNet-18 at 224x224, U-Net at 256x256
    python benchmarks/int8_latency.py --threads 1 --rounds 20

Each model of peerdistill's zoo is exported and quantized as ``peerdistill export --quantize
int8`` does it (the same functions), then both files run in onnxruntime on the CPU, one after
the other, alternating in every round so that a busy machine slows both alike. Untrained
weights and random inputs (calibration too): this measures speed, not accuracy (the agreement
of a trained model's decisions is what ``export`` checks and prints). Prints, per model and
batch size, the median milliseconds per image of each file, their ratio, and the file sizes."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from peerdistill.export import Logits, to_onnx
from peerdistill.models.resnet import ResNet
from peerdistill.models.unet import MobileUNet
from peerdistill.quantize import quantize_int8

CASES = {
    "resnet8x4-32": (lambda: ResNet(3, 100, blocks=[1, 1, 1], width=64), (3, 32, 32), False),
    "resnet18-224": (lambda: ResNet(3, 1000, blocks=[2, 2, 2, 2], width=64, stem="imagenet"), (3, 224, 224), False),
    "mobile_unet-256": (lambda: MobileUNet(1, 2, width=16, depth=3), (1, 256, 256), True),
    # recipes/kvasir-seg.yaml's students: 8 channels at 96x96 (review 55r found int8 slower there)
    "mobile_unet8-96": (lambda: MobileUNet(3, 2, width=8, depth=3), (3, 96, 96), True),
}


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure(name: str, batches: list[int], rounds: int, threads: int, folder: Path) -> list[dict]:
    make, shape, dense = CASES[name]
    torch.manual_seed(0)
    model = Logits(make().eval(), name).eval()
    fp32, int8 = folder / f"{name}.onnx", folder / f"{name}-int8.onnx"
    to_onnx(model, torch.randn(2, *shape), fp32, dense=dense)
    quantize_int8(fp32, int8, np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32))
    sessions = {"fp32": session(fp32, threads), "int8": session(int8, threads)}
    rows = []
    for batch in batches:
        x = {"input": np.random.default_rng(1).standard_normal((batch, *shape)).astype(np.float32)}
        times = {kind: [] for kind in sessions}
        for kind, s in sessions.items():  # warm-up
            s.run(None, x)
        for _ in range(rounds):
            for kind, s in sessions.items():
                started = time.perf_counter()
                s.run(None, x)
                times[kind].append((time.perf_counter() - started) * 1000 / batch)
        ms = {kind: statistics.median(t) for kind, t in times.items()}
        rows.append({"model": name, "batch": batch, "fp32_ms": ms["fp32"], "int8_ms": ms["int8"],
                     "speedup": ms["fp32"] / ms["int8"], "fp32_kib": fp32.stat().st_size / 1024,
                     "int8_kib": int8.stat().st_size / 1024})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--batches", default="1,16", help="batch sizes (default 1,16)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="onnxruntime's intra-op threads")
    ns = parser.parse_args()
    batches = [int(b) for b in ns.batches.split(",")]
    print(f"onnxruntime on the CPU, {ns.threads} thread(s), median of {ns.rounds} rounds; ms per image")
    print(f"{'model':<16} {'batch':>5} {'fp32 ms':>9} {'int8 ms':>9} {'int8 speed-up':>13} {'fp32 KiB':>9} {'int8 KiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ns.models.split(","):
            if name not in CASES:
                parser.error(f"unknown model '{name}': choose from {', '.join(CASES)}")
            for r in measure(name, batches, ns.rounds, ns.threads, Path(tmp)):
                print(f"{r['model']:<16} {r['batch']:>5} {r['fp32_ms']:>9.3f} {r['int8_ms']:>9.3f} "
                      f"{r['speedup']:>12.2f}x {r['fp32_kib']:>9,.0f} {r['int8_kib']:>9,.0f}", flush=True)


if __name__ == "__main__":
    main()
