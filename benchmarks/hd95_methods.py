"""HD95's two ways to the nearest edge pixels, and the rule that picks one, side by side.

    python benchmarks/hd95_methods.py                 # every case at full size, 5 rounds
    python benchmarks/hd95_methods.py --rounds 9 --json rows.json

``hausdorff95`` finds each edge pixel's nearest edge pixel of the other mask with a k-d tree
over the edge pixels, or with a distance transform of the box holding both regions once the
edge pixels are over ``EDT_FROM_EDGE_SHARE`` of that box. Per case this times the whole
function three ways: the tree always (the share set to infinity), the transform always (set to
0) and the rule, alternating in every round (after an untimed one) so that a busy machine slows
all three alike, and checks the three values agree to 1e-9. Prints per case the box, the share
of its pixels that are edge pixels, what the rule takes, the median milliseconds per image of
each way, and the rule's time over the faster of the other two. The last case is where the rule
is known to pick the slower way: holes in a large region, whose edges are all nearly as near."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np
from scipy.ndimage import gaussian_filter

from peerdistill import segmentation_metrics


def disc(shape, center, radii) -> np.ndarray:
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return ((rows - center[0]) / radii[0]) ** 2 + ((cols - center[1]) / radii[1]) ** 2 <= 1


def sparse(rng, s):
    """A 1024 px image: a round region predicted a little off, plus a few specks near the corners."""
    n = round(1024 * s)
    truth = disc((n, n), (0.40 * n, 0.50 * n), (0.15 * n, 0.15 * n))
    pred = disc((n, n), (0.41 * n, 0.51 * n), (0.14 * n, 0.15 * n))
    for r, c in ((0.03, 0.05), (0.05, 0.93), (0.95, 0.04), (0.92, 0.96), (0.7, 0.8), (0.85, 0.3)):
        pred[round(r * n):round(r * n) + 2, round(c * n):round(c * n) + 2] = True
    return pred, truth


def noise(rng, s):
    """A 1024 px image: a prediction of 20% random pixels against a round region."""
    n = round(1024 * s)
    return rng.random((n, n)) < 0.2, disc((n, n), (n / 2, n / 2), (0.3 * n, 0.3 * n))


def checkerboard(rng, s):
    """A 512 px image: a checkerboard prediction (every pixel an edge) against a round region."""
    n = round(512 * s)
    return np.indices((n, n)).sum(0) % 2 == 1, disc((n, n), (n / 2, n / 2), (0.4 * n, 0.4 * n))


def vessels(rng, shape):
    """Thin curving lines, about 12% of a round field of view, as DRIVE's vessels are."""
    fov = disc(shape, (shape[0] / 2, shape[1] / 2), (0.47 * shape[0], 0.47 * shape[1]))
    field = np.abs(gaussian_filter(rng.standard_normal(shape), 6 * shape[1] / 565))
    return (field < np.quantile(field[fov], 0.12)) & fov, fov


def drive(rng, s):
    """DRIVE's 565x584: a vessel-like truth, its prediction with 10% of the field's pixels flipped."""
    truth, fov = vessels(rng, (round(584 * s), round(565 * s)))
    return (truth ^ (rng.random(truth.shape) < 0.1)) & fov, truth


def drive_clean(rng, s):
    """The same truth, predicted without the noise but with its thin lines a pixel off."""
    truth, _ = vessels(rng, (round(584 * s), round(565 * s)))
    return np.roll(truth, 1, axis=1), truth


def polyp(rng, s):
    """A 64 px image: an oval polyp-like region, predicted a little smaller and off centre."""
    n = max(round(64 * s), 16)
    truth = disc((n, n), (0.5 * n, 0.5 * n), (0.3 * n, 0.25 * n))
    return disc((n, n), (0.52 * n, 0.47 * n), (0.28 * n, 0.22 * n)), truth


def holes(rng, s):
    """A 1024 px image: a large round region predicted with 1% of its pixels missing, scattered."""
    n = round(1024 * s)
    truth = disc((n, n), (n / 2, n / 2), (0.44 * n, 0.44 * n))
    return truth & (rng.random((n, n)) >= 0.01), truth


CASES = {"sparse 1024": sparse, "noise 20% 1024": noise, "checkerboard 512": checkerboard,
         "DRIVE noisy 565x584": drive, "DRIVE clean 565x584": drive_clean, "polyp 64": polyp,
         "holes 1% 1024": holes}
WAYS = {"kdtree": math.inf, "edt": 0.0, "rule": segmentation_metrics.EDT_FROM_EDGE_SHARE}


def measure(pred, truth, rounds: int) -> dict:
    rule = segmentation_metrics.EDT_FROM_EDGE_SHARE
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    values = {}
    try:
        for round_ in range(rounds + 1):  # round 0 untimed: scipy's lazy imports
            for way, share in WAYS.items():
                segmentation_metrics.EDT_FROM_EDGE_SHARE = share
                started = time.perf_counter()
                values[way] = segmentation_metrics.hausdorff95(pred, truth)
                if round_:
                    times[way].append(time.perf_counter() - started)
    finally:
        segmentation_metrics.EDT_FROM_EDGE_SHARE = rule
    if max(values.values()) - min(values.values()) > 1e-9:
        raise SystemExit(f"the ways disagree: {values}")
    return {"hd95": values["rule"], **{f"{way}_ms": 1000 * statistics.median(t) for way, t in times.items()}}


def describe(pred, truth) -> dict:
    """The box holding both regions and the share of its pixels that are edge pixels (what the rule reads)."""
    from scipy.ndimage import binary_erosion

    rows, cols = np.flatnonzero((pred | truth).any(axis=1)), np.flatnonzero((pred | truth).any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    edges = sum(np.count_nonzero(m[box] & ~binary_erosion(m[box])) for m in (pred, truth))
    area = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    share = edges / area
    return {"image": f"{pred.shape[0]}x{pred.shape[1]}", "box": f"{rows[-1] - rows[0] + 1}x{cols[-1] - cols[0] + 1}",
            "edge_share": share, "takes": "edt" if share > segmentation_metrics.EDT_FROM_EDGE_SHARE else "kdtree"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="the images' sides times this (a quick run)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    ns = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"hausdorff95, ms per image (median of {ns.rounds}); the rule takes the transform above an edge share of "
          f"{segmentation_metrics.EDT_FROM_EDGE_SHARE}")
    print(f"{'case':<20} {'box':>9} {'edge share':>10} {'takes':>6} "
          f"{'kdtree':>9} {'edt':>9} {'rule':>9} {'rule/best':>9}")
    rows = []
    for name, make in CASES.items():
        pred, truth = make(rng, ns.scale)
        row = {"case": name, **describe(pred, truth), **measure(pred, truth, ns.rounds)}
        row["rule_over_best"] = row["rule_ms"] / min(row["kdtree_ms"], row["edt_ms"])
        rows.append(row)
        print(f"{name:<20} {row['box']:>9} {row['edge_share']:10.4f} {row['takes']:>6} {row['kdtree_ms']:9.2f} "
              f"{row['edt_ms']:9.2f} {row['rule_ms']:9.2f} {row['rule_over_best']:9.2f}", flush=True)
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
