"""One row per scored sample and model: what ``eval --per-sample`` writes.

A split's mean hides which images a model gets wrong or segments badly; this table names
them (the file, where the data has files), so they can be looked at, and gives per-image
figures for statistics of one's own (paired tests between models, failure by subgroup).
Each sample's figures come from a meter holding that sample alone (``bootstrap.sample_meters``),
so they are the task's own metrics of one image: a segmentation's Dice and HD95 of that image,
a detection's COCO AP over that frame."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .calibration import tempered
from .engine.artifacts import check_not_a_run_file, check_not_in_data, csv_header, write_rows_csv
from .errors import ConfigError
from .option_names import option



def check_per_sample_path(path: str | Path, data_places: list[Path] = ()) -> None:
    """Refuse, before anything is scored, a place the table cannot or must not go: a folder, a
    run's own file, a name not ending in .csv (never a table over an image or a config of that
    name), or the data the command reads (``data_places``)."""
    if Path(path).is_dir():
        raise ConfigError(f"{option('--per-sample', repr(str(path)))} is a folder; give the CSV file to write, e.g. "
                          f"{Path(path) / 'per_sample.csv'}")
    check_not_a_run_file(path, "--per-sample")
    if Path(path).suffix.lower() != ".csv":
        raise ConfigError(f"{option('--per-sample', repr(str(path)))} does not end in .csv: the table is written as "
                          f"a CSV file, e.g. {Path(path).with_suffix('.csv')}")
    check_not_in_data(path, list(data_places), "--per-sample")
    if Path(path).is_file() and not _a_table_eval_wrote(Path(path)):  # a patients' table, say (review 48b)
        raise ConfigError(f"{option('--per-sample', repr(str(path)))} exists and is not a table eval wrote (its header "
                          "is not eval's): write the table to another file, or delete it to replace it")


def _a_table_eval_wrote(path: Path) -> bool:
    """Whether a CSV is eval's per-sample table, which a new one may replace: its first column is
    ``sample`` and it has a ``model`` column (as written or saved again: a BOM, quotes); an empty
    file holds nothing to lose either."""
    header = csv_header(path)
    return header is not None and (not header or (header[0] == "sample" and "model" in header))


def per_sample_rows(task, meters: dict[str, list], names: tuple[str, list[str]] | None,
                    scores: dict[str, dict[str, float]], seen_in_training: list[int] | None = None,
                    groups: list[str] | None = None, near_copies: dict[int, str] | None = None) -> list[dict]:
    """Rows sample by sample, every output (``meters``: its sample meters in split order) in
    turn. ``scores``: eval's figures, for the threshold an operating point chose (and the
    temperature it was chosen under). ``seen_in_training``: the samples identical to inputs the
    run trained on (a 0/1 column ``seen_in_training``; left out where not known). ``groups``:
    each sample's group (a ``group`` column: patient-level figures without parsing names).
    ``near_copies``: the samples that are near-copies of training images, with that image's name
    (a ``near_copy_of`` column, empty for the others; left out where not looked for)."""
    rows = []
    count = len(next(iter(meters.values())))
    if names is not None and len(names[1]) != count:
        names = None  # the names are not of these samples (data given from Python): leave them out
    seen = None if seen_in_training is None else set(seen_in_training)
    if groups is not None and len(groups) != count:
        groups = None
    for i in range(count):
        head = {"sample": i} | ({names[0]: names[1][i]} if names else {})
        head |= {"group": groups[i]} if groups else {}
        head |= {"seen_in_training": int(i in seen)} if seen is not None else {}
        head |= {"near_copy_of": near_copies.get(i, "")} if near_copies is not None else {}
        for model, sample_meters in meters.items():
            figures = _figures(task, sample_meters[i], scores.get(model, {}))
            rows.append(head | {"model": model} | figures)
    return rows


def _figures(task, meter, scores: dict[str, float]) -> dict:
    classes = task.class_names
    if task.name == "classification":
        probs, truth = meter.probs[0][0].numpy(), int(meter.targets[0][0])
        if "cal_temperature" in scores:  # the calibrated probabilities asked for (the same largest class)
            probs = tempered(probs[None], scores["cal_temperature"])[0]
        predicted = int(np.argmax(probs))
        out = {"truth": classes[truth], "predicted": classes[predicted], "correct": int(predicted == truth)}
        if "op_threshold" in scores:  # two classes: the second called where its probability reaches the threshold
            called = int(float(probs[1]) >= scores["op_threshold"])  # in float64, as eval calls it
            out |= {"op_predicted": classes[called], "op_correct": int(called == truth)}
        if "cal_temperature" in scores:  # the p_ columns are tempered: by what, said in the file (review 51j)
            out |= {"temperature": float(scores["cal_temperature"])}
        return out | {f"p_{c}": float(v) for c, v in zip(classes, probs)}
    if task.name == "segmentation":
        confusion = meter.confusion
        out = {}
        for k, c in enumerate(classes[1:], start=1):
            out |= {f"truth_pixels_{c}": int(confusion[k].sum()), f"predicted_pixels_{c}": int(confusion[:, k].sum())}
        return out | meter.compute()
    return {"true_boxes": len(meter.truths[0]), "detections": len(meter.predictions[0]["scores"])} | meter.compute()


def write_per_sample(path: str | Path, rows: list[dict]) -> Path:
    """The rows as CSV, numbers to 9 significant digits (a float32 probability exactly: an AUC
    recomputed from the file equals the one scored; review 47b found ties at 6 decimals), an undefined figure (a Dice where the class is in
    neither mask, an HD95 of an empty mask, an AP of a frame without objects) left empty."""
    write_rows_csv(Path(path), [{k: _cell(v) for k, v in row.items()} for row in rows])
    return Path(path)


def _cell(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.9g}"
    return value
