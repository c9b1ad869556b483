"""What int8 costs trained runs: each run's best student and ensemble exported in fp32 and in int8
(as ``peerdistill export --quantize int8`` does), both scored on the run's test split.

    python benchmarks/int8_agreement.py RUN_DIR [RUN_DIR ...] [--models best,ensemble] [--json out.json]

Classification and segmentation runs. Per run and model: the share of test predictions
(samples, or pixels) whose class the int8 graph keeps and the largest probability difference
(the export's own check), and the test accuracy and AUC (classification) or Dice and pixel AUC
(segmentation) of the fp32 and the int8 graph, computed here from onnxruntime's outputs with
the task's own meter: whole images, by sliding window for a patch-trained run (the graph's
logits blended, then the softmax, as evaluation does; such a run's ensemble graph gives its
students' logits side by side, blended the same way before their probabilities are averaged, as
predict does). Nothing is written into the runs (the files go to a temporary folder)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from peerdistill.data import build_data, make_batches
from peerdistill.engine.artifacts import read_json
from peerdistill.engine.evaluate import windowed
from peerdistill.export import export_run, student_count
from peerdistill.predict import as_scores
from peerdistill.runs import saved_data_spec, saved_window, task_for

HEADLINE = {"classification": ("accuracy", "auc"), "segmentation": ("dice", "auc")}


def scores(path: Path, meta: dict, split, output: str) -> dict[str, float]:
    """The headline test figures of the file's outputs (``output``: the export's kind), scored by
    the run's task as evaluation scores a model."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    task = task_for(meta)
    window, overlap = saved_window(meta)
    meter = task.new_meter()

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": x.float().numpy()})[0])

    for x, y in make_batches(split, 16, torch.device("cpu"), shuffle=False):
        out = windowed(run, x, window, overlap)
        meter.update(as_scores(out, {"output": output, "ensemble_of": student_count(meta)}) if output != "logits"
                     else out.softmax(dim=1), y)
    figures = meter.compute()
    return {k: figures[k] for k in HEADLINE[task.name] if k in figures}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--models", default="best,ensemble")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    ns = parser.parse_args()
    rows = []
    print(f"{'run':<24} {'model':<10} {'same class':>10} {'max |dp|':>9} {'fp32 acc':>9} {'int8 acc':>9} "
          f"{'fp32 auc':>9} {'int8 auc':>9}   (segmentation: dice in the acc columns)")
    with tempfile.TemporaryDirectory() as tmp:
        for run in map(Path, ns.runs):
            meta = read_json(run / "run.json")
            data = build_data(saved_data_spec(meta), stats=meta["data_stats"])  # read once per run
            first = HEADLINE[meta.get("task", "classification")][0]
            for model in ns.models.split(","):
                fp32 = export_run(run, model=model, out=Path(tmp) / f"{run.name}-{model}.onnx", data=data)
                int8 = export_run(run, model=model, quantize="int8", min_agreement=0.0,
                                  out=Path(tmp) / f"{run.name}-{model}-int8.onnx", data=data)
                a, b = (scores(r.path, meta, data.test, r.output) for r in (fp32, int8))
                row = {"run": run.name, "model": fp32.model, "agreement": int8.int8.agreement,
                       "class_dice": int8.int8.class_dice,  # segmentation: what export's check judges
                       "max_probability_difference": int8.int8.max_probability_difference,
                       **{f"fp32_{k}": v for k, v in a.items()}, **{f"int8_{k}": v for k, v in b.items()}}
                rows.append(row)
                auc = (f"{a['auc']:>9.4f} {b['auc']:>9.4f}" if "auc" in a else f"{'':>9} {'':>9}")
                print(f"{run.name:<24} {row['model']:<10} {row['agreement']:>10.4f} "
                      f"{row['max_probability_difference']:>9.4f} {a[first]:>9.4f} {b[first]:>9.4f} {auc}",
                      flush=True)
    if ns.json:
        Path(ns.json).write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
