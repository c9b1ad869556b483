"""How the detection ensemble's fusion rule and IoU change its AP, on trained runs.

    python benchmarks/detection_fusion.py RUN_DIR [RUN_DIR ...] [--rules wbf,nms,nmw]
        [--ious 0.55,0.6,0.7,0.8] [--split val] [--json out.json]

A RUN_DIR may also be a comparison folder (every run in it). Each run's students are applied
once to the split; their boxes are then fused under every rule and IoU (``detect.ensemble``,
``detect.ensemble_iou``: what ``peerdistill eval RUN_DIR detect.ensemble=nms`` would score one
at a time) and scored with pycocotools, beside each student alone. Printed: the mean over the
runs of AP, AP50 and AP75. Nothing is written into the runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from peerdistill.data import build_data, make_batches
from peerdistill.engine.evaluate import logits_of
from peerdistill.runs import check_compatible, load_cohort, saved_data_spec, task_for
from peerdistill.tasks.detection import FUSION_RULES

FIGURES = ("ap", "ap50", "ap75")


def run_dirs(paths: list[str]) -> list[Path]:
    """The runs named, a comparison folder standing for every run in it."""
    out = []
    for path in map(Path, paths):
        out += [path] if (path / "run.json").is_file() else sorted(p.parent for p in path.glob("*/run.json"))
    if not out:
        raise SystemExit(f"no run directory (with run.json) in {paths}")
    return out


@torch.no_grad()
def student_boxes(run: Path, split: str):
    """The run's task, each student's decoded boxes per image on ``split``, and the targets."""
    cohort, meta = load_cohort(run, roles=("student",))
    if meta.get("task") != "detection":
        raise SystemExit(f"'{run}' is a {meta.get('task', 'classification')} run: this benchmark is for detection")
    data = check_compatible(build_data(saved_data_spec(meta), stats=meta.get("data_stats")), meta)
    task = task_for(meta)
    cohort.eval()
    names = cohort.ensemble_names()
    boxes: dict[str, list] = {n: [] for n in names}
    targets = []
    for x, y in make_batches(data.split(split), 64, torch.device("cpu"), shuffle=False):
        outputs = logits_of(cohort, x)
        for name in names:
            boxes[name] += task.probabilities(outputs[name])
        targets.append(y)
    return meta, boxes, torch.cat(targets)


def score(task, detections, targets) -> dict[str, float]:
    meter = task.new_meter()
    meter.update(detections, targets)
    figures = meter.compute()
    return {k: figures[k] for k in FIGURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--rules", default=",".join(FUSION_RULES))
    parser.add_argument("--ious", default="0.55,0.6,0.7,0.8")
    # (val by default: a rule chosen by test AP is a choice made on the test labels)
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args()
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    ious = [float(v) for v in args.ious.split(",")]
    rows: dict[str, list[dict[str, float]]] = {}
    for run in run_dirs(args.runs):
        meta, boxes, targets = student_boxes(run, args.split)
        students = {name: score(task_for(meta), b, targets) for name, b in boxes.items()}
        for name, figures in students.items():
            rows.setdefault(f"student {name}", []).append(figures)
        rows.setdefault("best student (by test AP, an upper bound)", []).append(
            max(students.values(), key=lambda f: f["ap"]))
        for rule in rules:
            for iou in ious:
                task = task_for(meta, {"ensemble": rule, "ensemble_iou": iou})
                rows.setdefault(f"ensemble {rule} iou {iou:g}", []).append(
                    score(task, task.ensemble(list(boxes.values())), targets))
        print(f"{run}: scored", flush=True)
    runs = len(next(iter(rows.values())))
    print(f"\n{args.split} split, mean over {runs} run(s)\n")
    print(f"| {'model':<45} | " + " | ".join(f"{f:>6}" for f in FIGURES) + " |")
    print(f"|{'-' * 47}|" + "|".join("-" * 7 + ":" for _ in FIGURES) + "|")
    summary = {}
    for name, values in rows.items():
        summary[name] = {f: float(np.mean([v[f] for v in values])) for f in FIGURES}
        print(f"| {name:<45} | " + " | ".join(f"{summary[name][f]:.4f}" for f in FIGURES) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "split": args.split, "mean": summary,
                                               "per_run": rows}, indent=2))


if __name__ == "__main__":
    main()
