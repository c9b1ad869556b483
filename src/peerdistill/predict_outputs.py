"""Where ``peerdistill predict`` writes: the checks made before any input is read (never over
the run's data, an input, or a file predict did not write), the predictions themselves (a CSV of
class probabilities or boxes, a folder of masks, pictures), and the list of inputs it could not
read."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from .data.image_io import IMAGE_SUFFIXES, image_id, is_image_file, visible_levels
from .engine.artifacts import (atomic_write_bytes, atomic_write_text, check_folder_writable, check_not_a_run_file,
                               check_not_in_data, csv_header)
from .errors import ConfigError, DataError, warn_user
from .exported_models import STUDENT_LOGITS
from .option_names import option
from .predict_inputs import Inputs
from .spatial import align_to
from .wording import first_few


def write_predictions(read: Inputs, results: list, info: dict, out: Path, size: tuple[int, ...],
                       visible_masks: bool, overlays: str | Path | None, regions: list | None = None) -> Path:
    if info["task"] == "detection":
        if overlays is not None:
            draw_boxes(read, size, results, info["class_names"], Path(overlays))
        return write_boxes(read, size, results, info["class_names"], out)
    # one input's scores: classes first ([C] or [C, H, W])
    probs = [p if info["output"] in ("probabilities", STUDENT_LOGITS) else p.float().softmax(dim=0) for p in results]
    if info["task"] == "segmentation":
        return write_masks(read, probs, out, visible_masks, info.get("class_names"), regions,
                           None if overlays is None else Path(overlays))
    return write_csv(read.names, torch.stack(probs), info["class_names"], out, info.get("threshold"))


def unreadable_list(out: Path, dense: bool) -> Path:
    """Where predict lists the inputs it could not read: beside the CSV (``NAME.unreadable.csv``),
    or in the folder of masks."""
    return out / "unreadable.csv" if dense else out.with_name(f"{out.stem}.unreadable.csv")


def list_unreadable(read: Inputs, listing: Path) -> None:
    """The inputs left out, each with why. An earlier predict's list there goes: beside these
    predictions it would name files this one read (a file of that name predict did not write
    stays)."""
    if not read.unreadable:
        if listing.is_file() and csv_header(listing) == ["input", "why"]:
            listing.unlink()
        return
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["input", "why"])
    writer.writerows(read.unreadable)
    atomic_write_text(listing, buf.getvalue())
    total = len(read.unreadable) + len(read.names)
    warn_user(f"{len(read.unreadable)} of {total} inputs cannot be read and were not predicted, each listed with why "
              f"in {listing} (e.g. {read.unreadable[0][1]})")


def check_out(out: Path, dense: bool, inputs: list[str], data_places: list[Path], pictures: bool = False) -> None:
    """``dense``: ``out`` is a folder of PNGs (masks, or with ``pictures`` the --overlays folder).
    ``data_places``: the data the run trained on, never written into."""
    flag, what = ("--overlays", "pictures") if pictures else ("--out", "masks")
    named = option(flag, repr(str(out)))
    check_not_in_data(out, data_places, flag)
    if dense and out.exists() and not out.is_dir():
        raise ConfigError(f"{named} is a file; {'it' if pictures else 'segmentation'} writes a folder of "
                          f"{what}: give a folder")
    if dense and not out.exists() and out.suffix.lower() in (".csv", ".json", ".txt"):
        raise ConfigError(f"{named} names a file; {'it' if pictures else 'segmentation'} writes a folder of "
                          f"{what}: give a folder")
    if not dense and out.is_dir():
        raise ConfigError(f"{named} is a folder; give the CSV file to write, e.g. {out / 'predictions.csv'}")
    check_not_a_run_file(out / "mask.png" if dense else out, flag)
    check_folder_writable(out if dense else out.parent)  # (before the inputs are read: nothing half written)
    given = [Path(i).resolve() for i in inputs]
    here = out.resolve()
    if not dense and (here in given or (here.parent in given and here.suffix.lower() in IMAGE_SUFFIXES)):
        # an image named inside a folder of inputs is an input too (or would become one)
        raise ConfigError(f"{named} is one of the inputs: write the predictions elsewhere, to a .csv file")
    if dense and any(g == here or (g.parent == here and is_image_file(g)) for g in given):
        # among the images: over their true masks
        raise ConfigError(f"{named} is a folder of inputs: {what} written there could replace files beside "
                          f"them (their true masks); write the {what if pictures else 'predictions'} to another "
                          "folder")
    if not dense and out.suffix.lower() != ".csv":  # never a CSV over an image or a config of that name
        raise ConfigError(f"{named} does not end in .csv: predictions are written as a CSV file, e.g. "
                          f"{out.with_suffix('.csv')}")
    if not dense and out.is_file() and not _a_table_predict_wrote(out):  # a label table, say
        raise ConfigError(f"{named} exists and is not a table predict wrote (its header is not predict's): write the "
                          "predictions to another file, or delete it to replace it")
    listing = unreadable_list(out, dense)
    if not pictures and listing.is_file() and csv_header(listing) not in ([], ["input", "why"]):  # a user's file
        raise ConfigError(f"'{listing}' exists and is not a list predict wrote, which it would replace: move it, or "
                          f"write the predictions elsewhere ({option(flag)})")


def _a_table_predict_wrote(path: Path) -> bool:
    """Whether a CSV is predict's own, which a new predict may replace: its header is a
    classifier's (input, predicted, [threshold,] p_CLASS...) or a detector's (input, class,
    score, x1, y1, x2, y2), as written or saved again (a BOM, quotes); an empty file holds
    nothing to lose either."""
    header = csv_header(path)
    if header is None:
        return False
    if not header:
        return True
    classifier = header[:2] == ["input", "predicted"] and any(h.startswith("p_") for h in header[2:]) and all(
        h.startswith("p_") or h == "threshold" for h in header[2:])
    return classifier or header == ["input", "class", "score", "x1", "y1", "x2", "y2"]


def remove_earlier_pictures_of(read: Inputs, mask_folders: list[Path], overlays: str | Path | None) -> None:
    """A skipped input's mask and picture from an earlier predict into the same folders go: beside
    this call's, they would pass for predictions of a file this call could not read."""
    written = [(folder, ("mask",)) for folder in mask_folders]
    if overlays is not None:
        written.append((Path(overlays), ("overlay", "boxes")))
    for name, _ in read.unreadable:
        if Path(name).suffix.lower() == ".npz":
            continue  # (an archive's images are named by their positions, which it no longer tells)
        stem = image_id(Path(name))
        if stem in read.stems:  # this call's own, of a readable input of that name (review 45f)
            continue
        for folder, kinds in written:
            for kind in kinds:
                earlier = folder / f"{stem}_{kind}.png"
                if written_by_predict(earlier):  # (a file of the user's of that name stays)
                    earlier.unlink()


# The PNG text chunk predict's masks and pictures carry: what lets a later predict replace its
# own files in a folder, never a user's of the same name (a folder of true masks, case1_mask.png).
PREDICT_MARK = ("Software", "peerdistill predict")


def written_by_predict(path: Path) -> bool:
    """Whether ``path`` is a PNG predict wrote (it carries ``PREDICT_MARK``)."""
    from PIL import Image

    try:
        with Image.open(path) as picture:
            return picture.format == "PNG" and getattr(picture, "text", {}).get(PREDICT_MARK[0]) == PREDICT_MARK[1]
    except (OSError, ValueError, SyntaxError):  # (not there, not an image, damaged)
        return False


def check_pictures_replaceable(read: Inputs, folders: list[tuple[Path, str, str]]) -> None:
    """Before anything is written: no mask or picture predict would write, ``(folder, kind,
    option)``, may replace a file of that name predict did not write (a folder of true masks
    named ``case1_mask.png``; masks of a predict before 2026-12-06 carry no mark either)."""
    for folder, kind, flag in folders:
        theirs = [folder / f for f in picture_names(read, kind) if (folder / f).exists()
                  and not written_by_predict(folder / f)]
        if theirs:
            raise ConfigError(f"{option(flag, repr(str(folder)))} holds {len(theirs)} file(s) that predict would "
                              f"replace and did not write, or wrote before it marked its pictures (2026-12-06) "
                              f"({first_few([p.name for p in theirs], quoted=True)}): "
                              f"write the {'masks' if kind == 'mask' else 'pictures'} to another folder, or delete "
                              "those files to replace them")


def write_csv(names: list[str], probs: torch.Tensor, classes: list[str], out: Path,
               threshold: float | None = None) -> Path:
    """A row per input: the predicted class (the larger probability's, or with ``threshold``
    the second class where its probability reaches it) and every class's probability; with a
    threshold, a column holding it, so that a call against the larger probability says why."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["input", "predicted"] + (["threshold"] if threshold is not None else [])
                    + [f"p_{c}" for c in classes])
    for name, p in zip(names, probs.tolist()):
        called = int(np.argmax(p)) if threshold is None else int(p[1] >= threshold)
        writer.writerow([name, classes[called]] + ([f"{threshold:.9g}"] if threshold is not None else [])
                        + [f"{v:.9g}" for v in p])  # (9 digits: confident calls still ranked, as eval --per-sample)
    atomic_write_text(out, buf.getvalue())
    return out


def write_boxes(read: Inputs, seen_size: tuple[int, int], detections: list[dict], class_names: list[str],
                 out: Path) -> Path:
    """One CSV row per kept box, in pixels of each input as it is on disk (the model saw it
    resized to ``seen_size``): input, class, score, x1, y1, x2, y2; an input without a box, one
    row of its name alone (else a frame without a polyp read as one never processed)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["input", "class", "score", "x1", "y1", "x2", "y2"])
    for name, (height, width), det in zip(read.names, read.sizes, detections, strict=True):
        scale = torch.tensor([width / seen_size[1], height / seen_size[0]] * 2)
        boxes = det["boxes"].float().cpu() * scale
        if not len(boxes):
            writer.writerow([name, "", "", "", "", "", ""])
        for box, score, label in zip(boxes.tolist(), det["scores"].tolist(), det["labels"].tolist()):
            # (9 significant digits, float32 exactly: rounded to 0.01 px, a recomputed AP moved, review 51h)
            writer.writerow([name, class_names[int(label)], f"{score:.9g}", *(f"{v:.9g}" for v in box)])
    atomic_write_text(out, buf.getvalue())
    return out


def _input_classes(p: torch.Tensor, size, regions: list[np.ndarray] | None, i: int) -> torch.Tensor:
    """Input ``i``'s class of each pixel at its own ``size`` (probabilities ``p`` resized before
    the argmax), background outside its region where ``regions`` are given."""
    labels = align_to(p[None].float(), tuple(size))[0].argmax(dim=0)
    return labels if regions is None else labels.masked_fill(~torch.from_numpy(regions[i]), 0)


def write_masks(read: Inputs, probs: list[torch.Tensor], out: Path, visible: bool = False,
                class_names: list[str] | None = None, regions: list[np.ndarray] | None = None,
                overlays: Path | None = None) -> Path:
    """One label PNG per input at that input's size (probabilities resized before the argmax):
    class indices, or with ``visible`` the classes spread over 0..255 (two classes: 0 and 255,
    what a viewer shows and what ``data.binary_masks`` reads back). Each file names its classes
    by value in a PNG text chunk, ``classes`` (review 49e: a mask of 0/1/2 said nothing of them).
    ``regions``: per input, where it is predicted (``predict_regions``); background elsewhere.
    ``overlays``: a folder where each input is drawn too, ``<stem>_overlay.png``, its predicted
    classes tinted. One input's class map is held at a time (review 53b: int64 maps of every
    input at full size held at once took 8 bytes a pixel of the whole set)."""
    from .pictures import overlay, viewable

    files = picture_names(read, "mask")
    pictures = picture_names(read, "overlay") if overlays is not None else None
    for folder in (out, overlays):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    for i, (file, p) in enumerate(zip(files, probs)):
        labels = _input_classes(p, read.sizes[i], regions, i)
        if pictures is not None:
            atomic_write_bytes(overlays / pictures[i], _png(overlay(viewable(read.originals[i]), labels.numpy(), None)))
        values = list(range(len(p)))
        if visible:
            labels = visible_levels(labels, len(p))
            values = visible_levels(torch.arange(len(p)), len(p)).tolist()
        names = class_names if class_names and len(class_names) == len(p) else [str(c) for c in range(len(p))]
        legend = json.dumps({str(v): name for v, name in zip(values, names)})
        atomic_write_bytes(out / file, _png(labels.to(torch.uint8).numpy(), ("classes", legend)))
    return out


def picture_names(read: Inputs, kind: str) -> list[str]:
    """``<stem>_<kind>.png`` for every input, refused (before anything is written) when two
    inputs of one name in different folders would write the same file."""
    files = [f"{stem}_{kind}.png" for stem in read.stems]
    clashes = sorted({f for f in files if files.count(f) > 1})
    if clashes:
        same = [n for n, f in zip(read.names, files) if f == clashes[0]]
        raise DataError(f"inputs {same[:3]} would all be written as '{clashes[0]}': predict them in separate calls, "
                        "into separate folders")
    return files


def draw_boxes(read: Inputs, seen_size: tuple[int, int], detections: list[dict], class_names: list[str],
                folder: Path) -> None:
    """``<stem>_boxes.png``: each input at its own size with its boxes scored at least
    ``PICTURE_MIN_SCORE`` (as eval's pictures; the CSV has them all), class and score."""
    from PIL import Image, ImageDraw

    from .pictures import PICTURE_MIN_SCORE, draw_boxes, viewable

    files = picture_names(read, "boxes")
    folder.mkdir(parents=True, exist_ok=True)
    for file, (height, width), det, image in zip(files, read.sizes, detections, read.originals, strict=True):
        picture = Image.fromarray(viewable(image))
        scale = torch.tensor([width / seen_size[1], height / seen_size[0]] * 2)
        draw_boxes(ImageDraw.Draw(picture), (det["boxes"].float().cpu() * scale).tolist(), det["scores"].tolist(),
                   det["labels"].tolist(), class_names, min_score=PICTURE_MIN_SCORE)
        atomic_write_bytes(folder / file, _png_bytes(picture))


def _png(mask: np.ndarray, *texts: tuple[str, str]) -> bytes:
    from PIL import Image

    return _png_bytes(Image.fromarray(mask), *texts)


def _png_bytes(picture, *texts: tuple[str, str]) -> bytes:
    """A PNG of ``picture`` carrying ``PREDICT_MARK`` (and ``texts``, key and value each)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (PREDICT_MARK, *texts):
        info.add_text(key, value)
    buf = io.BytesIO()
    picture.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()
