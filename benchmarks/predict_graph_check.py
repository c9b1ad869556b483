"""What `predict MODEL.onnx` spends checking that the JSON beside the graph describes it (the
graph's SHA-256 against the recorded one, and one forward on a blank input), against what it
spends predicting, for a segmentation U-Net at a DRIVE-like size.

    python benchmarks/predict_graph_check.py --width 32 --depth 4 --size 576 --images 8

Prints the graph's size, the digest's and the probe's times, one image's inference time, and
each way of checking as a share of predicting 1 and N images (median of --repeats timings
each): the digest alone when the JSON records it (export writes it), the probe when it is
set to null."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _median_ms(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--size", type=int, default=576, help="the square input side, in pixels")
    parser.add_argument("--images", type=int, default=8, help="images predicted in one batch")
    parser.add_argument("--repeats", type=int, default=5)
    ns = parser.parse_args(argv)

    import numpy as np
    import onnxruntime as ort
    import torch

    from peerdistill.export import to_onnx
    from peerdistill.models.unet import UNet
    from peerdistill.data.digests import _sha256_of, file_sha256

    torch.manual_seed(0)
    model = UNet(in_channels=3, num_classes=2, width=ns.width, depth=ns.depth).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unet.onnx"
        to_onnx(model, torch.randn(1, 3, ns.size, ns.size), path, dense=True)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        blank = np.zeros((1, 3, ns.size, ns.size), np.float32)
        batch = np.random.default_rng(0).standard_normal((ns.images, 3, ns.size, ns.size)).astype(np.float32)
        session.run(None, {"input": blank})  # (warm-up)
        # the digest as predict first reads it: file_sha256 keeps each file's digest while the file stays
        # the same (review 52g: the script timed that lookup, 0.1 ms), so its cache is emptied each time
        digest_ms = _median_ms(lambda: (_sha256_of.cache_clear(), file_sha256(path)), ns.repeats)
        probe_ms = _median_ms(lambda: session.run(None, {"input": blank}), ns.repeats)
        batch_ms = _median_ms(lambda: session.run(None, {"input": batch}), ns.repeats)
        size_mib = path.stat().st_size / 2**20
    print(f"U-Net width {ns.width}, depth {ns.depth}, {ns.size}x{ns.size} inputs: graph {size_mib:.1f} MiB, "
          f"torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(f"SHA-256 {digest_ms:.1f} ms; probe forward {probe_ms:.1f} ms; {ns.images} images in one batch "
          f"{batch_ms:.1f} ms ({batch_ms / ns.images:.1f} ms an image)")
    for what, check in (("JSON with its digest (the SHA-256)", digest_ms),
                        ("JSON with onnx_sha256 null (SHA-256 skipped, probe)", probe_ms)):
        print(f"{what}: adds {check / (batch_ms / ns.images):.1%} to predicting 1 image, "
              f"{check / batch_ms:.1%} to predicting {ns.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
