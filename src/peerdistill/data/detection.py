"""Object-detection data: boxes from COCO JSON, Kvasir-style per-image JSON or masks, and a
synthetic default.

Every loader returns images ``x`` float32 [N, C, H, W] in [0, 1], all resized to one
``image_size`` (h, w), and targets ``y`` float32 [N, M, 5] with rows (label, x1, y1, x2, y2)
in pixels of the RESIZED image. x2 and y2 are exclusive edges: a box covering pixel columns
3..7 is x1 = 3, x2 = 8, so its width is x2 - x1. Images with fewer than M boxes are padded
with rows (-1, 0, 0, 0, 0); M is the largest box count of any image, at least 1.

A crowd region (COCO's ``iscrowd: 1``) is a row labelled ``crowd_label(class)`` = -2 - class:
training and augmentation take only labels >= 0, so it teaches nothing, and evaluation passes it
to COCOeval as a crowd box, where detections on it count neither as hits nor as false positives.
"""

from __future__ import annotations

import collections
import json
import math
import os
import posixpath
import reprlib
import unicodedata
from pathlib import Path, PureWindowsPath

import numpy as np
import torch

from ..config import DataSpec
from ..errors import DataError, DataNote, SplitError, TrainingAdvice, warn_user
from ..sample_names import SPLITS
from ..wording import first_few
from .image_files import _portable
from .image_io import (IMAGE_SUFFIXES, LOOKED_FOR, binarized, check_same_sizes, entry_is, image_files,
                       image_id, image_size, note_original_shape, read_images, read_mask_values,
                       refuse_images_in_subfolders, refuse_photographs_as_masks)
from .segmentation import _unpaired_message, files_by_key
from .splits import TensorData, fold_cut
# Annotation tools round to whole pixels and some write x + w one past the edge.
TOLERANCE = 1.0


def crowd_label(label: int) -> int:
    """The target label of a crowd region of class ``label`` (see the module's docstring)."""
    return -2 - label


def pad_targets(per_image: list, min_boxes: int = 1) -> torch.Tensor:
    """Stack per-image [n_i, 5] rows (label, x1, y1, x2, y2) into [N, M, 5], padding with
    label -1 and zero coordinates; M = max n_i, at least ``min_boxes``."""
    rows = []
    for i, t in enumerate(per_image):
        a = np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float32)
        if a.size == 0:
            a = a.reshape(0, 5)
        if a.ndim != 2 or a.shape[1] != 5:
            raise DataError(f"targets of image {i} have shape {a.shape}; expected [n, 5] rows (label, x1, y1, x2, y2)")
        rows.append(a)
    m = max([len(a) for a in rows] + [min_boxes])
    out = torch.zeros(len(rows), m, 5)
    out[:, :, 0] = -1
    for i, a in enumerate(rows):
        out[i, : len(a)] = torch.from_numpy(a)
    return out


def boxes_from_mask(mask: np.ndarray, min_area: int = 0) -> np.ndarray:
    """One box [n, 4] (x1, y1, x2, y2) float32 per 8-connected component of the non-zero
    pixels, in scan order of the components. x2 / y2 are exclusive edges (largest index + 1).
    Components with fewer than ``min_area`` pixels are left out."""
    from scipy import ndimage  # here: SciPy takes a while to import

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DataError(f"a mask must be one [H, W] image, got shape {mask.shape}")
    labels, count = ndimage.label(mask != 0, structure=np.ones((3, 3), dtype=bool))
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    boxes = [(s[1].start, s[0].start, s[1].stop, s[0].stop)
             for k, s in enumerate(ndimage.find_objects(labels), start=1) if areas[k] >= min_area]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def _size(image_size) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if h < 1 or w < 1:
        raise DataError(f"image_size must be positive (h, w), got {image_size}")
    return int(h), int(w)


def _read_json(path) -> object:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file '{path}' does not exist")
    try:  # utf-8-sig: a byte-order mark, as Windows editors write one, is not content
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, RecursionError) as exc:  # also numbers and nesting beyond Python's limits
        raise DataError(f"cannot read '{path}' as JSON: {exc}") from None


def _check_ids(ids: list, where: str, source: str) -> None:
    """COCO ids are numbers or text (a list or a mapping cannot be looked up)."""
    odd = [i for i in ids if isinstance(i, (list, dict))]
    if odd:
        raise DataError(f"an id in '{where}' of {source} is {odd[0]!r}: ids must be numbers or strings")


class _NotANumber(DataError):
    """A box value that is no number: no policy can cut such a box to its image."""


def _check_box(box, width: float, height: float, where: str, written=None) -> list[float]:
    """(x1, y1, x2, y2) in original pixels, clipped to the image after the tolerance check.
    ``written``: the box as its file writes it, which a message quotes (COCO's [x, y, width,
    height]: review 55i could not find the corners quoted in the file)."""
    if not all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in box):
        raise _NotANumber(f"{where}: box {_shown(box)} holds a value that is not a number")
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (ValueError, OverflowError):
        raise _NotANumber(f"{where}: box {_shown(box)} holds a value that is not a number") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise _NotANumber(f"{where}: box {list(box)} holds a value that is not a finite number")
    quoted = f"bbox {_shown(written)}" if written is not None else f"box {[x1, y1, x2, y2]}"
    if not (x2 > x1 and y2 > y1):
        raise DataError(f"{where}: {quoted} has a non-positive width or height")
    if x1 < -TOLERANCE or y1 < -TOLERANCE or x2 > width + TOLERANCE or y2 > height + TOLERANCE:
        raise DataError(f"{where}: {quoted} lies outside its {width:g}x{height:g} image")
    return _clipped((x1, y1, x2, y2), width, height)


def _shown(box) -> str:
    """A box as written, each value cut short (a corrupt file may hold a number of 400 digits)."""
    return "[" + ", ".join(reprlib.repr(v) for v in box) + "]"


def _clipped(box, width: float, height: float) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height)]


def _as_on_disk(path: Path) -> Path:
    """``path``, or the same name in the other Unicode normal form where only that one exists:
    macOS writes accented names decomposed (NFD), most tools and Linux composed (NFC), so a JSON
    made on one machine may spell a file of another differently, invisibly."""
    if path.is_file():
        return path
    for form in ("NFC", "NFD"):
        other = Path(unicodedata.normalize(form, str(path)))
        if other.is_file():
            return other
    return path


def _polygon_box(segmentation) -> list[float] | None:
    """[x, y, width, height] around COCO polygons ``[[x1, y1, x2, y2, ...], ...]``; None for
    anything else (RLE masks, nothing)."""
    if not isinstance(segmentation, list) or not segmentation:
        return None
    points = [v for polygon in segmentation if isinstance(polygon, list) for v in polygon]
    if len(points) < 6 or len(points) % 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                     for v in points):
        return None
    xs, ys = points[0::2], points[1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _corner_like(bbox: list, width: float, height: float, area=None) -> tuple[bool, bool]:
    """Whether a box reaching outside its image as [x, y, width, height] lies inside it, with area,
    as [x1, y1, x2, y2] corners (a converter wrote corners where COCO wants a width and a height,
    or a large box pokes out: they look the same), and whether its COCO ``area`` is that of the
    corners' box (which tells them apart, unless by chance)."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError, OverflowError):
        return False, False
    if not ((x + w > width + TOLERANCE or y + h > height + TOLERANCE) and 0 <= x < w <= width and 0 <= y < h <= height):
        return False, False
    corners, sides = (w - x) * (h - y), w * h
    said = (isinstance(area, (int, float)) and not isinstance(area, bool) and abs(area - corners) <= 0.01 * corners + 1
            and abs(area - sides) > 0.01 * sides + 1)
    return True, said


class _BadBoxes:
    """Boxes without area or outside their image, as an annotation tool's export often holds a
    few: counted in one error (``error``), left out with one warning (``skip``), or cut to the
    image (``clip``: a box sticking out is still an object; one left without area is left out)."""

    def __init__(self, policy: str, source: str):
        self.policy, self.source, self.found, self.clipped = policy, source, [], 0
        # (COCO) boxes outside as [x, y, w, h] but inside as corners, and those whose area says corners
        self.checked, self.corner_like, self.area_says_corners = 0, 0, 0
        self.size_like = 0  # (box JSON) corners reversed, but inside their image as [x, y, width, height]

    def check(self, box, width: float, height: float, where: str, written=None) -> list[float] | None:
        self.checked += 1
        try:
            return _check_box(box, width, height, where, written)
        except DataError as exc:
            if self.policy == "clip" and not isinstance(exc, _NotANumber):
                inside = _clipped(box, width, height)
                if inside[2] > inside[0] and inside[3] > inside[1]:
                    self.clipped += 1
                    return inside
            self.found.append(str(exc))
            return None

    def settle(self, emptied: list[str] = ()) -> dict:
        """Raise (``error``) or warn about the boxes found; their counts for the data's info. Boxes
        whose COCO area says they are corners written as widths are refused whatever the policy
        (cutting or leaving them out would train on wrong boxes); without the area, a share of
        them that looks so is said beside the count (large boxes poking out look the same).
        ``emptied``: the images every box of which was left out, which the loader leaves out too."""
        self._refuse_sizes_as_corners()
        corners = (f"{self.corner_like} box(es) in {self.source} reach outside their image as COCO's [x, y, width, "
                   "height] but lie inside it as [x1, y1, x2, y2] corners")
        convert = "convert them (width = x2 - x1, height = y2 - y1)"
        looks_so = self.corner_like >= max(2, self.checked / 5, (len(self.found) + self.clipped) / 2)
        # most of them by their area (a polygon's area matches a corners' box now and then by chance)
        if looks_so and self.area_says_corners >= 2 and self.area_says_corners > self.corner_like / 2:
            raise DataError(f"{corners}, and {self.area_says_corners} of them give the area of the corners' box: the "
                            f"file gives corners where COCO wants a width and a height. {convert.capitalize()}; "
                            "data.bad_boxes would only cut or drop wrong boxes")
        # a fifth of all boxes, and most of those outside: perhaps corners, said beside the count
        hint = (f" ({corners}: if the file gives corners where COCO wants a width and a height, {convert} rather "
                "than cut or drop them)" if looks_so else "")
        info = {}
        if self.clipped:
            warn_user(f"{self.clipped} box(es) in {self.source} reaching outside their image cut to it "
                      f"(data.bad_boxes=clip){hint}")
            info["clipped_bad_boxes"] = self.clipped
            hint = ""
        if not self.found:
            return info
        more = len(self.found) - 3
        named = "; ".join(self.found[:3]) + (f"; and {more} more" if more > 0 else "")
        if self.policy == "error":
            raise DataError(f"{len(self.found)} box(es) in {self.source} without area or outside their image: "
                            f"{named}.{hint} Correct them, or set data.bad_boxes=skip to leave them out (clip: cut "
                            "the ones reaching outside to the image)")
        # (review 55i: such an image stayed, its objects training as background)
        gone = (f"; {len(emptied)} image(s) lost every box so and are left out too, since each would train as an "
                f"image without objects: {first_few(emptied, quoted=True)}" if emptied else "")
        warn_user(f"{len(self.found)} box(es) in {self.source} left out (data.bad_boxes={self.policy}): "
                  f"{named}{hint}{gone}", DataNote)
        return {**info, "skipped_bad_boxes": len(self.found),
                **({"images_left_out_without_boxes": len(emptied)} if emptied else {})}

    def _refuse_sizes_as_corners(self) -> None:
        """Corners reversed in a fifth of the boxes or more, and most of the bad ones, each lying inside
        its image when read as [x, y, width, height]: a converter wrote widths and heights into xmax and
        ymax (review 55i). Refused whatever the policy: skipping them would drop true objects, and the
        boxes that pass (a width above its x) would be wrong."""
        if self.size_like >= max(2, self.checked / 5) and self.size_like > len(self.found) / 2:
            raise DataError(f"{self.size_like} of the {self.checked} boxes in {self.source} end before they start "
                            "(xmax below xmin or ymax below ymin) but lie inside their image as [x, y, width, "
                            "height]: the file gives widths and heights where xmax and ymax are wanted. Convert them "
                            "(xmax = xmin + width, ymax = ymin + height); data.bad_boxes would only drop wrong boxes")

    def left_out(self) -> str:
        """For a message about what is left: the bad boxes it lacks."""
        return (f"; data.bad_boxes={self.policy} left out {len(self.found)} bad box(es)" if self.found else "")


def _size_like(corners, width: float, height: float) -> bool:
    """Corners that end before they start but fit their image as [x, y, width, height]."""
    try:
        x1, y1, x2, y2 = map(float, corners)
    except (TypeError, ValueError):
        return False
    return (x2 < x1 or y2 < y1) and min(x1, y1, x2, y2) >= 0 and x1 + x2 <= width + 1 and y1 + y2 <= height + 1


def _is_crowd(ann: dict, where: str) -> bool:
    """COCO's ``iscrowd``: 0 or 1 (also as text or a boolean); anything else is refused rather
    than read as true ("0" is a non-empty string)."""
    flag = ann.get("iscrowd", 0)
    if flag in (0, 1) or flag in ("0", "1"):  # (False and True compare equal to 0 and 1)
        return int(flag) == 1
    raise DataError(f"{where}: 'iscrowd' is {flag!r}; expected 0 (an object) or 1 (a crowd region)")


def _rescaled(label: int, box: list[float], width: float, height: float, size: tuple[int, int]) -> list[float]:
    sx, sy = size[1] / width, size[0] / height
    return [label, box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]


def _image_dims(entry: dict, where: str) -> tuple[float, float]:
    try:
        width, height = float(entry["width"]), float(entry["height"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise DataError(f"{where} lacks a numeric width and height (the original image size)") from None
    if not (math.isfinite(width) and math.isfinite(height)):
        raise DataError(f"{where} lacks a numeric width and height (the original image size): it gives "
                        f"{width:g}x{height:g}")
    if width <= 0 or height <= 0:
        raise DataError(f"{where} has a non-positive size {width:g}x{height:g}")
    return width, height


def _by_stem(folder: Path, what: str = "images") -> dict[str, Path]:
    """The image files of ``folder`` by id (``image_id``); two files of one id refused."""
    found: dict[str, Path] = {}
    for p in image_files(folder):
        key = image_id(p)
        if key in found:
            raise DataError(f"'{found[key].name}' and '{p.name}' in '{folder}' share the id '{key}': keep one "
                            f"file per id among the {what}")
        found[key] = p
    return found


def _check_annotated_size(path: Path, width: float, height: float, where: str) -> None:
    """The JSON's size against the file's, where a mix-up would put every box on the wrong
    pixels without a word: annotation tools show a photo turned by its EXIF orientation, and
    peerdistill reads it so (a JSON of the size as stored gives boxes on the unturned picture);
    and a width and height swapped (DICOM's Rows are the height, its Columns the width)."""
    stored, shown = image_size(path, upright=False), image_size(path)
    if stored[0] != stored[1] and (round(height), round(width)) == stored and shown == stored[::-1]:
        raise DataError(f"{where} gives the size {width:g}x{height:g} of '{path.name}' as stored, but the file's EXIF "
                        f"orientation turns it to {stored[0]}x{stored[1]} as shown (and as it is read here), so its "
                        "boxes would land on the wrong pixels: annotate the upright image, or save the file with "
                        "its pixels turned and no orientation tag")
    if shown[0] != shown[1] and (round(height), round(width)) == shown[::-1]:
        raise DataError(f"{where} gives '{path.name}' as {width:g} wide and {height:g} high, but the file is "
                        f"{shown[1]} wide and {shown[0]} high: are width and height swapped (a DICOM's Columns are "
                        "its width, its Rows its height)? Its boxes would land on the wrong pixels")


def _stack(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _read(files: list[Path], size, grey: bool, dicom_window) -> torch.Tensor:
    """[N, C, H, W] float32, read straight into place (``read_images``)."""
    return torch.from_numpy(read_images(files, size, grey=grey, dicom_window=dicom_window))


def _rows(n: int, order) -> list[int]:
    """A loader's ``n`` images' indices in the order it reads them: ``order(n)`` (a split order,
    decided before any file is decoded), or as listed."""
    return list(range(n)) if order is None else list(order(n))


def load_coco(images_dir, annotation_json, image_size, *, grey: bool = False, dicom_window=None,
              bad_boxes: str = "error", order=None, exclusion=None, original_sizes: list | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str], dict]:
    """A COCO-style JSON (``images``: id, file_name, width, height; ``annotations``: image_id,
    category_id, bbox [x, y, w, h]; ``categories``: id, name). Returns (x, y, class_names, ids,
    info): ids are the images' ``file_name`` in the JSON's order, the categories annotations use
    become labels 0..C-1 in sorted id order, and boxes are rescaled from the JSON's width/height
    to ``image_size``. A category no annotation uses (the supercategory entry annotation tools
    such as Roboflow export) is not a class: ``info["unused_categories"]`` names them. Boxes
    without area or outside their image stop the load, counted in one message (``bad_boxes="skip"``:
    left out, counted in ``info["skipped_bad_boxes"]``; a category only such boxes have is then
    unused).
    Crowd annotations (``iscrowd: 1``) are kept as crowd regions (label ``crowd_label(class)``:
    ignored in training, ignored regions in evaluation); images without annotations are kept
    with no boxes. ``order``: given the number of images, the order to read them in (indices
    into the JSON's order: ``split_order``); x, y and ids come in it. ``exclusion`` (data.exclude):
    the images it names are left out with their annotations, before anything else is judged.
    ``original_sizes``: a list extended with each image's (width, height) in the JSON, in the order
    of ids (None for an image without annotations, which need not give it)."""
    images_dir, source = Path(images_dir), Path(annotation_json).name
    size = _size(image_size)
    data = _read_json(annotation_json)
    if _looks_like_box_json(data):  # (both kinds are one table row apart in the docs: the likeliest slip)
        raise DataError(f"'{annotation_json}' looks like a box JSON ({{id: {{height, width, bbox: [...]}}}}), not a "
                        "COCO file: set data.kind=box_json")
    if not isinstance(data, dict) or not data.get("images"):
        raise DataError(f"'{annotation_json}' lists no images: a COCO file needs 'images', 'annotations' "
                        "and 'categories'")
    listed, name_of = _coco_categories(data, source)
    images = _coco_images(data, source)
    left_out = _left_out_entries(images, images_dir, exclusion)
    bad = _BadBoxes(bad_boxes, source)
    # annotated: each annotated image's width and height as the JSON gives them, read once
    kept, from_polygons, annotated = _coco_boxes(data, images, listed, bad, source, set(left_out))
    if from_polygons:
        warn_user(f"{from_polygons} annotation(s) in {source} without a 'bbox' take the box around their "
                  "polygon 'segmentation'")
    # The files and their sizes before the boxes are judged: a width and height swapped (or a
    # photo turned by its EXIF tag) puts boxes outside "their image", and the advice to skip or
    # clip those would drop true boxes before the real cause is named.
    listed_info: dict = {}
    paths = _listed_files(images, images_dir, source, listed_info, also_listed=left_out.values())
    for entry_id in images:
        if entry_id in annotated:  # (an image without boxes: no box depends on its size)
            _check_annotated_size(paths[entry_id], *annotated[entry_id], f"image {entry_id} in {source}")
    with_boxes = {row[0] for row in kept}  # (a set: each image looked up once, review 55n)
    emptied = [entry_id for entry_id in images if entry_id in annotated and entry_id not in with_boxes]
    info = {**bad.settle([images[i]["file_name"] for i in emptied]), **listed_info}
    for entry_id in emptied:  # (their objects would train as background)
        del images[entry_id]
    kept = _once_each(kept, images, source, info)
    if not any(not crowd for *_, crowd in kept):
        raise DataError(f"{source} holds no box to learn from (its 'annotations' are empty or all crowd regions"
                        f"{bad.left_out()}): detection needs annotated images")
    used = {category for _, category, *_ in kept}  # after bad boxes are left out, as box_json counts
    crowd_only = sorted(str(name_of[c]) for c in used - {category for _, category, _, _, crowd in kept if not crowd})
    if crowd_only:
        warn_user(f"the categories {crowd_only} of {source} have crowd regions only: classes no box teaches "
                  "(their AP is n/a); give them annotated objects, or leave them out of the file")
    categories = [c for c in listed if c["id"] in used]
    label_of = {c["id"]: k for k, c in enumerate(categories)}
    per_image: dict = {i: [] for i in images}
    for entry_id, category, box, (width, height), crowd in kept:
        label = label_of[category]
        per_image[entry_id].append(_rescaled(crowd_label(label) if crowd else label, box, width, height, size))
    entries = list(images)
    entries = [entries[i] for i in _rows(len(entries), order)]
    for entry_id in entries:  # (the originals' shapes, which predict's inputs may have; an image without
        if entry_id in annotated:  # boxes need not give its size: review 55n)
            note_original_shape(*annotated[entry_id])
    x = _read([paths[entry_id] for entry_id in entries], size, grey, dicom_window)
    names = [str(c.get("name", c["id"])) for c in categories]
    unused = [str(c.get("name", c["id"])) for c in listed if c["id"] not in used]
    if unused:
        info["unused_categories"] = unused
    if original_sizes is not None:  # (an image without boxes need not give its size)
        original_sizes.extend(annotated.get(entry_id) for entry_id in entries)
    return (x, pad_targets([per_image[i] for i in entries]), names, [images[i]["file_name"] for i in entries],
            info)


def _coco_categories(data: dict, source: str) -> tuple[list[dict], dict]:
    """A COCO file's ``categories`` checked (ids present, unique, of one kind), sorted by id, and
    each id's name."""
    if not all(isinstance(c, dict) and "id" in c for c in data.get("categories") or []):
        raise DataError(f"an entry of 'categories' in {source} lacks 'id'")
    _check_ids([c["id"] for c in data.get("categories") or []], "categories", source)
    kinds = {isinstance(c["id"], str) for c in data.get("categories") or []}
    if len(kinds) > 1:  # 1 and "1" would be two classes, in no order
        raise DataError(f"the ids of 'categories' in {source} mix numbers and strings "
                        f"({[c['id'] for c in data['categories']][:4]}): give every category an id of one kind")
    listed = sorted(data.get("categories") or [], key=lambda c: c["id"])
    name_of: dict = {}
    for c in listed:  # one id named twice would become a class without boxes
        if c["id"] in name_of:
            raise DataError(f"category id {c['id']} appears twice in 'categories' of {source} ('{name_of[c['id']]}' "
                            f"and '{c.get('name', c['id'])}'): ids must be unique")
        name_of[c["id"]] = c.get("name", c["id"])
    return listed, name_of


def _coco_images(data: dict, source: str) -> dict:
    """A COCO file's ``images`` by id, checked (an id and a file name each, ids and files listed
    once), their file names made portable."""
    images, id_of_file = {}, {}
    for entry in data["images"]:
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise DataError(f"an entry of 'images' in {source} lacks 'id' or 'file_name'")
        _check_ids([entry["id"]], "images", source)
        if entry["id"] in images:
            raise DataError(f"image id {entry['id']} appears twice in 'images' of {source} "
                            f"('{images[entry['id']]['file_name']}' and '{entry['file_name']}'): ids must be unique")
        file_name = _portable(str(entry["file_name"]))
        same_file = posixpath.normpath(file_name)  # './a.png' and 'sub//b.png' name a.png and sub/b.png
        if same_file in id_of_file:  # its two entries could land in train and test, each with some boxes
            first = images[id_of_file[same_file]]["file_name"]
            raise DataError(f"'{file_name}' is listed twice in 'images' of {source} (ids {id_of_file[same_file]} and "
                            f"{entry['id']}{'' if first == file_name else f', the first as {first!r}'}): list each "
                            "image once, with all its annotations on that id")
        id_of_file[same_file] = entry["id"]
        images[entry["id"]] = {**entry, "file_name": file_name}
    return images


def _left_out_entries(images: dict, images_dir: Path, exclusion) -> dict:
    """The entries of a COCO file's ``images`` whose file ``data.exclude`` names, taken out of
    ``images``: their files by id."""
    if exclusion is None:
        return {}
    left_out = {}
    for entry_id, entry in images.items():
        path = _as_on_disk(images_dir / entry["file_name"])
        if exclusion.left_out(path, base=images_dir, ids=(entry["file_name"],)):
            left_out[entry_id] = path
    for entry_id in left_out:
        del images[entry_id]
    return left_out


def _coco_boxes(data: dict, images: dict, listed: list[dict], bad: "_BadBoxes",
                source: str, left_out: set = frozenset()) -> tuple[list[tuple], int, dict]:
    """A COCO file's ``annotations`` checked (unique ids, known images and categories, a box or a
    polygon each): the boxes kept, as (image id, category id, box in the JSON's pixels, the JSON's
    image size, crowd), bad ones counted in ``bad``; how many boxes came from polygons; the images
    annotated, by id, with the width and height the JSON gives them (each read once). Annotations
    of the images in ``left_out`` (data.exclude) are passed over."""
    category_ids = {c["id"] for c in listed}
    kept = []  # (image id, category id, box in the JSON's pixels, the JSON's image size, crowd)
    annotation_ids, from_polygons, annotated = set(), 0, {}
    for ann in data.get("annotations") or []:
        if not isinstance(ann, dict):
            raise DataError(f"an entry of 'annotations' in {source} is not an object: {ann!r}")
        if ann.get("id") is not None:  # a merged or twice-converted export: each object would count twice
            _check_ids([ann["id"]], "annotations", source)
            if ann["id"] in annotation_ids:
                raise DataError(f"annotation id {ann['id']} appears twice in 'annotations' of {source}: ids must be "
                                "unique across the file (a converter numbering them per image, or files merged, "
                                "may repeat them: renumber them; an object listed twice would be a second true box "
                                "no prediction can match)")
            annotation_ids.add(ann["id"])
        image_id = ann.get("image_id")
        _check_ids([image_id, ann.get("category_id")], "annotations (image_id, category_id)", source)
        if image_id in left_out:
            continue
        if image_id not in images:
            raise DataError(f"unknown image id {image_id} in {source}: every annotation's image_id must be in 'images'")
        if ann.get("category_id") not in category_ids:
            raise DataError(f"unknown category id {ann.get('category_id')} in {source}: "
                            f"'categories' lists {[c['id'] for c in listed]}")
        entry = images[image_id]
        if image_id not in annotated:
            annotated[image_id] = _image_dims(entry, f"image {image_id} in {source}")
        width, height = annotated[image_id]
        where = f"annotation {ann.get('id', '?')} of image {image_id} ('{entry['file_name']}') in {source}"
        bbox = ann.get("bbox")
        around = _polygon_box(ann.get("segmentation")) if bbox is None else None
        if around:  # as COCO's tools make it from the outline
            bbox, from_polygons = around, from_polygons + 1
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            problem = f"{where}: 'bbox' is {bbox!r}; expected [x, y, width, height] in pixels"
            if bad.policy == "error":
                raise DataError(f"{problem}: add it, or set data.bad_boxes=skip to leave out annotations without one")
            bad.found.append(problem)
            continue
        bx, by, bw, bh = bbox
        corner_like, area_says_so = _corner_like(bbox, width, height, ann.get("area"))
        bad.corner_like, bad.area_says_corners = bad.corner_like + corner_like, bad.area_says_corners + area_says_so
        box = bad.check((bx, by, bx + bw, by + bh), width, height, where, written=bbox)
        if box is not None:
            kept.append((image_id, ann["category_id"], box, (width, height), _is_crowd(ann, where)))
    return kept, from_polygons, annotated


def _once_each(kept: list[tuple], images: dict, source: str, info: dict) -> list[tuple]:
    """An annotation repeating another exactly (image, category, box, crowd), which a merged or
    twice-converted export leaves, is kept once: a second true box no prediction can match would
    lower every recall. Counted in ``info["repeated_annotations"]`` and warned of."""
    unique: dict[tuple, tuple] = {}
    repeats = []
    for row in kept:
        image_id, category, box, _, crowd = row
        key = (image_id, category, tuple(box), crowd)
        if key in unique:
            repeats.append(image_id)
        else:
            unique[key] = row
    if repeats:
        info["repeated_annotations"] = len(repeats)
        warn_user(f"{len(repeats)} annotation(s) in {source} repeat another of the same image exactly (category "
                  f"and box; the first in '{images[repeats[0]]['file_name']}'): each is kept once", DataNote)
    return list(unique.values())


def _listed_files(images: dict, images_dir: Path, source: str, info: dict, also_listed=()) -> dict:
    """The file of each image the COCO file lists, by id: the missing ones refused together
    (how many, some names); files reached out of data.images (an absolute or '..' name) warned
    of, as they leave the data's folder; image files beside the listed ones that the JSON leaves
    out warned of and counted (``info["skipped_without_entry"]``, as for box JSON). Paths are
    compared as written, not resolved: a folder of 100,000 images is listed in a fraction of a
    second."""
    paths = {i: _as_on_disk(images_dir / entry["file_name"]) for i, entry in images.items()}
    missing = [entry["file_name"] for i, entry in images.items() if not paths[i].is_file()]
    if missing:
        foreign = (" (absolute names, perhaps of the machine the file was made on: give names relative to "
                   "data.images)" if any(PureWindowsPath(m).drive or m.startswith("/") for m in missing) else "")
        raise DataError(f"{len(missing)} of the {len(images)} image files listed in {source} are missing from "
                        f"'{images_dir}' ({first_few(missing, quoted=True)}){foreign}: check data.images (the "
                        "folder that file_name counts from, relative to data.root)")
    base = os.path.normpath(os.path.abspath(images_dir))
    located = {i: _within(os.path.normpath(os.path.abspath(p)), base) for i, p in paths.items()}
    inside = {i: loc.startswith(base + os.sep) for i, loc in located.items()}
    outside = [images[i]["file_name"] for i in images if not inside[i]]
    if outside:
        warn_user(f"{len(outside)} file_name(s) in {source} reach out of data.images ('{images_dir}') "
                  f"({first_few(outside, quoted=True)}): read from there; keep a data set's images under its "
                  "data.images")
    listed = {unicodedata.normalize("NFC", loc) for loc in located.values()}
    # (files data.exclude left out are listed, not "left out by the JSON")
    listed |= {unicodedata.normalize("NFC", _within(os.path.normpath(os.path.abspath(p)), base)) for p in also_listed}
    beside = {os.path.dirname(loc) for i, loc in located.items() if inside[i]}  # not a whole tree
    unlisted = sorted(os.path.relpath(entry.path, base) for folder in beside for entry in os.scandir(folder)
                      if not entry.name.startswith(".") and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES
                      and entry_is(entry, "file") and unicodedata.normalize("NFC", entry.path) not in listed)
    if unlisted:
        info["skipped_without_entry"] = len(unlisted)
        warn_user(f"{len(unlisted)} image files in '{images_dir}' are not listed in {source}'s 'images' "
                  f"({first_few(unlisted, quoted=True)}): left out", DataNote)
    return paths


def _within(location: str, base: str) -> str:
    """``location`` written under ``base`` when it is there by another way (an absolute name of
    the real folder while data.images goes through a link), else as it is."""
    if location.startswith(base + os.sep):
        return location
    real, real_base = os.path.realpath(location), os.path.realpath(base)
    return os.path.join(base, os.path.relpath(real, real_base)) if real.startswith(real_base + os.sep) else location


def _warn_of_label_slips(labels: list, source: str, label_key: str) -> None:
    """A box JSON names its classes by its labels alone (COCO lists its categories): a slip in one
    label (``Polyp`` among ``polyp``, a number among words) would make a class of its own, trained
    and scored with one box. Said, with the labels and their counts."""
    counts = collections.Counter(str(label) for label in labels)
    alike: dict[str, list[str]] = {}
    for name in counts:
        alike.setdefault(" ".join(name.split()).casefold(), []).append(name)
    slips = [sorted(names) for names in alike.values() if len(names) > 1]
    if slips:
        shown = "; ".join(", ".join(f"'{n}' ({counts[n]} boxes)" for n in names) for names in slips)
        warn_user(f"labels of {source} that differ only in case or spaces are different classes: {shown}; if "
                  f"they are one class, write its '{label_key}' alike")
    kinds = {"numbers" if isinstance(label, (int, float)) else "text" for label in labels}
    if len(kinds) > 1:
        numbers = sorted({str(label) for label in labels if isinstance(label, (int, float))})
        warn_user(f"labels of {source} mix numbers ({', '.join(numbers[:5])}) and text: the classes are the "
                  f"labels as text ({sorted(counts)}); give every '{label_key}' as the class's name")
    # fewer boxes than the three splits, beside a class with ten times as many: a slip, or a class
    # that cannot be both learnt and scored
    few = sorted(name for name, n in counts.items() if n < 3 and max(counts.values()) >= 10 * n)
    if few:
        warn_user(f"classes of {source} with fewer than 3 boxes, too few to be in the training split and in the "
                  f"scored ones (their AP is n/a, or from one box): "
                  f"{', '.join(f'{n!r} ({counts[n]})' for n in few)}; a slip in a label makes such a class")


COCO_KEYS = ("images", "annotations", "categories")
BOX_JSON_SHAPE = "{id: {height, width, bbox: [...]}}"


def _looks_like_coco(data) -> bool:
    """A COCO file's top level: an object with a list of 'images' and of 'annotations'."""
    return isinstance(data, dict) and all(isinstance(data.get(key), list) for key in COCO_KEYS[:2])


def _looks_like_box_json(data) -> bool:
    """A box JSON's top level: an object whose values are entries holding a 'bbox' list."""
    return (isinstance(data, dict) and bool(data) and not _looks_like_coco(data)
            and all(isinstance(entry, dict) and isinstance(entry.get("bbox"), list) for entry in data.values()))


def _check_box_json_shape(data, boxes_json) -> None:
    """A box JSON is an object keyed by image id: a COCO file, a list of entries or an empty
    object are refused, each said as what it is."""
    if _looks_like_coco(data):
        raise DataError(f"'{boxes_json}' looks like a COCO file (keys {', '.join(map(repr, COCO_KEYS))}), not a box "
                        "JSON: set data.kind=coco")
    if isinstance(data, list):
        raise DataError(f"'{boxes_json}' holds a list of {len(data)} item(s); a box JSON is an object keyed by image "
                        f"id: {BOX_JSON_SHAPE} (an exporter's list of entries with an 'id' becomes one by keying "
                        "each entry by its id)")
    if not isinstance(data, dict) or not data:
        raise DataError(f"'{boxes_json}' holds no entries: expected {BOX_JSON_SHAPE}")


def _files_by_key(keys, files: dict[str, Path]) -> dict[str, Path]:
    """The image file of each JSON key that has one: the file of that id (any image suffix), or
    the file of exactly that name (a key written with its suffix, 'a.jpg', as many exporters
    write it)."""
    by_name = {path.name: path for path in files.values()}
    found = {}
    for key in keys:
        path = files.get(key) or by_name.get(key)
        if path is not None:
            found[key] = path
    return found


def load_box_json(images_dir, boxes_json, image_size, label_key: str = "label", *, grey: bool = False,
                  dicom_window=None, bad_boxes: str = "error", order=None, exclusion=None,
                  original_sizes: list | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str], dict]:
    """Kvasir-SEG's ``kavsir_bboxes.json`` layout: ``{id: {"height": H, "width": W, "bbox":
    [{"label": ..., "xmin", "ymin", "xmax", "ymax"}, ...]}}``, boxes in the ORIGINAL image's
    pixels. The image is ``images_dir/<id>.<suffix>`` (any image suffix), or the file named exactly
    as the key (a key written with its suffix, ``a.jpg``). Boxes are rescaled from the
    JSON's width/height to ``image_size``, never from the file's own size: the files may be a
    resized copy (Kvasir-SEG's 256x256 copy keeps the original sizes in the JSON).

    Returns (x, y, class_names, ids, info): class names are the sorted labels, ids the sorted
    JSON keys that have an image. Entries without an image file and images without an entry
    are skipped and counted in ``info["skipped_without_image"]`` and
    ``info["skipped_without_entry"]``; boxes without area or outside their image as in
    ``load_coco``. ``order`` and ``original_sizes``: as ``load_coco``'s (indices into the sorted ids)."""
    images_dir, source = Path(images_dir), Path(boxes_json).name
    size = _size(image_size)
    data = _read_json(boxes_json)
    _check_box_json_shape(data, boxes_json)
    if not images_dir.is_dir():
        raise DataError(f"images folder '{images_dir}' does not exist")
    by_id = _by_stem(images_dir)
    excluded = set()  # (data.exclude: the images it names, and their entries, go before anything is judged)
    if exclusion is not None:
        gone = {key: path for key, path in by_id.items() if exclusion.matches(path, base=images_dir, ids=(key,))}
        for key, path in gone.items():
            if key in data or path.name in data:
                exclusion.note_sample(path)
            del by_id[key]
        excluded = set(gone) | {path.name for path in gone.values()}
    files = _files_by_key(data, by_id)  # (by the JSON's keys, some perhaps written with their suffix)
    ids = sorted(files)
    if not ids:
        raise DataError(f"no entry of {source} has an image in '{images_dir}' (looked for <id> with a suffix of "
                        f"{sorted(IMAGE_SUFFIXES)}, a DICOM file named <id>, or a file named exactly as the key; "
                        f"keys {first_few(sorted(data), quoted=True)}, files "
                        f"{first_few(sorted(p.name for p in by_id.values()), quoted=True) or 'none'})")
    rows, labels = [], []
    bad = _BadBoxes(bad_boxes, source)
    for key in ids:
        entry = data[key]
        if not isinstance(entry, dict) or not isinstance(entry.get("bbox"), list):
            raise DataError(f"entry '{key}' in {source} is not {{height, width, bbox: [...]}} "
                            "(an image without objects has bbox: [])")
        width, height = _image_dims(entry, f"entry '{key}' in {source}")
        if entry["bbox"]:
            _check_annotated_size(files[key], width, height, f"entry '{key}' in {source}")
        boxes = []
        for k, b in enumerate(entry["bbox"]):
            where = f"box {k} of '{key}' in {source}"
            if not isinstance(b, dict):
                raise DataError(f"{where} is {b!r}; expected {{{label_key}, xmin, ymin, xmax, ymax}}")
            if label_key not in b:
                raise DataError(f"{where} has no '{label_key}' key (keys {sorted(b)}): every box needs its class "
                                f"name under '{label_key}'")
            try:
                corners = (b["xmin"], b["ymin"], b["xmax"], b["ymax"])
            except KeyError as exc:
                raise DataError(f"{where} lacks {exc}: boxes need xmin, ymin, xmax, ymax") from None
            bad.size_like += _size_like(corners, width, height)
            box = bad.check(corners, width, height, where)
            if box is not None:
                boxes.append((str(b[label_key]), box))
                labels.append(b[label_key])
        rows.append((boxes, width, height))
    emptied = [key for key, (boxes, *_) in zip(ids, rows) if data[key]["bbox"] and not boxes]
    skipped = bad.settle(emptied)
    if emptied:  # (their objects would train as background)
        gone = set(emptied)
        kept_rows = [(key, row) for key, row in zip(ids, rows) if key not in gone]
        ids, rows = [key for key, _ in kept_rows], [row for _, row in kept_rows]
    if not labels:
        raise DataError(f"{source} holds no box to learn from (every entry's bbox list is empty{bad.left_out()}): "
                        "detection needs annotated images")
    _warn_of_label_slips(labels, source, label_key)
    names = sorted({str(label) for label in labels})
    index = {n: k for k, n in enumerate(names)}
    targets = [[_rescaled(index[lab], box, w, h, size) for lab, box in boxes] for boxes, w, h in rows]
    read = _rows(len(ids), order)
    targets, ids_read = [targets[i] for i in read], [ids[i] for i in read]
    for i in read:  # (the originals' shapes, which predict's inputs may have)
        note_original_shape(rows[i][1], rows[i][2])
    x = _read([files[key] for key in ids_read], size, grey, dicom_window)
    without_image = sorted(k for k in data if k not in files and k not in excluded)
    used = set(files.values())
    without_entry = sorted(key for key, path in by_id.items() if path not in used)
    info = {"skipped_without_image": len(without_image), "skipped_without_entry": len(without_entry), **skipped}
    if original_sizes is not None:
        original_sizes.extend((rows[i][1], rows[i][2]) for i in read)
    for left_out, what in ((without_image, f"entries of {source} have no image in '{images_dir}'"),
                           (without_entry, f"images in '{images_dir}' have no entry in {source}")):
        if left_out:
            warn_user(f"{len(left_out)} {what} ({first_few(left_out, quoted=True)}): left out", DataNote)
    return x, pad_targets(targets), names, ids_read, info


def load_mask_boxes(images_dir, masks_dir, image_size, min_area: int = 4, *, grey: bool = False, dicom_window=None,
                    class_name: str = "object", order=None, exclusion=None, pattern: str | None = None,
                    named: tuple[Path, str, str] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """Boxes of the connected components of binary masks, image and mask paired by file stem.
    Foreground as ``read_mask(binary=True)`` reads it (0/1 and 0/255 masks, coloured masks, JPEG
    noise). Each mask is resized to ``image_size`` with nearest-neighbour interpolation first
    and the boxes are taken there, so they enclose exactly the mask pixels a model of that size
    sees; components under ``min_area`` pixels (of the resized mask) are noise and dropped.
    Returns (x, y, [class_name], ids) with ids the sorted stems (``order``: as ``load_coco``'s,
    indices into them). ``pattern``: a regular expression whose first group is the id image and
    mask share, as data.pattern pairs image and mask folders ('a.png' with 'a_mask.png').
    ``named``: data.root, data.images and data.masks as the config gives them, which messages
    name (else the folders' common parent and their paths from it)."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    named = named or _named_from_common_parent(images_dir, masks_dir)
    size = _size(image_size)
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise DataError(f"'{d}' is not a directory")
    for folder in (images_dir, masks_dir):
        refuse_images_in_subfolders(folder, {images_dir.resolve(), masks_dir.resolve()})
    images, masks = _files_by_id(images_dir, pattern), _files_by_id(masks_dir, pattern, "masks")
    if exclusion is not None:  # (data.exclude: a pair goes where its image or its mask is named)
        gone = {key for files, base in ((images, images_dir), (masks, masks_dir)) for key, path in files.items()
                if exclusion.matches(path, base=base, ids=(key,))}
        for key in gone:
            if key in images:
                exclusion.note_sample(images[key])
        images = {k: p for k, p in images.items() if k not in gone}
        masks = {k: p for k, p in masks.items() if k not in gone}
    _check_pairs(images_dir, masks_dir, images, masks, pattern, named)
    ids = sorted(images)
    check_same_sizes([(images[key], masks[key]) for key in ids], "its mask")
    targets = []
    raw = [read_mask_values(masks[key], size, binary=True) for key in ids]
    refuse_photographs_as_masks(raw, *named, "for boxes from masks")
    for mask in binarized(raw):
        boxes = boxes_from_mask(mask, min_area=min_area)
        targets.append(np.concatenate([np.zeros((len(boxes), 1), np.float32), boxes], axis=1))
    if not any(len(t) for t in targets):
        raise DataError(f"the masks in '{masks_dir}' hold no object of {min_area} pixels or more at "
                        f"{size[1]}x{size[0]}: check the mask files (foreground is any value above 0 in 0/1 "
                        "masks, above half the scale in 0/255 or JPEG ones)")
    read = _rows(len(ids), order)
    targets, ids = [targets[i] for i in read], [ids[i] for i in read]
    x = _read([images[key] for key in ids], size, grey, dicom_window)
    return x, pad_targets(targets), [class_name], ids


def _files_by_id(folder: Path, pattern: str | None, what: str = "images") -> dict[str, Path]:
    """The image files of ``folder`` by the id they pair by: data.pattern's first group, as image
    and mask folders pair (``files_by_key``), else the name less its suffix (``_by_stem``)."""
    return files_by_key(folder, pattern) if pattern else _by_stem(folder, what)


def _named_from_common_parent(images_dir: Path, masks_dir: Path) -> tuple[Path, str, str]:
    """The folders' common parent, and each folder's path from it (for messages naming them)."""
    images_dir, masks_dir = images_dir.absolute(), masks_dir.absolute()
    root = Path(os.path.commonpath([images_dir, masks_dir]))
    return root, images_dir.relative_to(root).as_posix(), masks_dir.relative_to(root).as_posix()


def _check_pairs(images_dir: Path, masks_dir: Path, images: dict, masks: dict, pattern: str | None,
                 named: tuple[Path, str, str]) -> None:
    """Every image has its mask and every mask its image, else refused as image and mask folders
    are (``_unpaired_message``: each side counted, by file name, and a data.pattern that pairs
    them); an empty masks folder is said as such."""
    if images and not masks:
        raise DataError(f"the masks folder '{masks_dir}' holds no image files (looked for {LOOKED_FOR}) beside the "
                        f"{len(images)} image(s) of '{images_dir}': put the masks there, or point data.masks at "
                        "their folder")
    lone_images, lone_masks = sorted(set(images) - set(masks)), sorted(set(masks) - set(images))
    if lone_images or lone_masks:
        root, images_named, masks_named = named
        spec = DataSpec.model_construct(kind="mask_boxes", root=str(root), pattern=pattern, images=images_named,
                                        masks=masks_named)
        raise DataError(_unpaired_message(root, spec, images, masks, lone_images, lone_masks))
    if not images:
        raise DataError(f"no images found in '{images_dir}' (looked for {LOOKED_FOR})")


class NamedBoxes(TensorData):
    """A split of boxes that knows its images: ``names`` (one per row, as data.exclude names them),
    the data.exclude patterns given (``exclude``: an example extending them keeps them), and each
    image's original (width, height), None where the data does not say it (``original_sizes``).
    Warnings about some images name them, with a ready data.exclude."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, names: list[str], exclude=(), original_sizes=None):
        super().__init__(x, y)
        if len(names) != len(self):
            raise DataError(f"{len(names)} names for {len(self)} images: give one name per image")
        self.names, self.exclude = [str(n) for n in names], list(exclude or ())
        self.original_sizes = list(original_sizes) if original_sizes is not None else [None] * len(self)


def check_labels(y: torch.Tensor, class_names: list[str]) -> None:
    """Targets [N, M, 5] whose labels all name one of ``class_names``."""
    if len(y) and float(y[..., 0].max()) >= len(class_names):
        raise DataError(f"targets hold label {int(y[..., 0].max())} but there are {len(class_names)} class names")




def detection_cut(n: int, val_fraction: float, test_fraction: float, seed: int, folds: int | None = None,
                  fold: int = 0) -> dict[str, list[int]]:
    """The sorted indices of the train, val and test splits of ``n`` images: a random split fixed
    by ``seed`` (no stratification: an image holds several classes), or with ``folds`` fold
    ``fold`` of a k-fold partition as the test split (``fold_cut``). The number of images alone
    decides it: a loader cuts before decoding a file (``split_order``)."""
    if folds:
        parts = dict(zip(SPLITS, fold_cut(n, fold, folds, val_fraction, seed)))
    else:
        n_test, n_val = (max(1, round(n * f)) for f in (test_fraction, val_fraction))
        if n - n_test - n_val < 1:
            raise SplitError(f"{n} images are too few to split off {val_fraction:.0%} val and {test_fraction:.0%} "
                                "test", "give more images, or lower data.val_fraction / data.test_fraction")
        order = np.random.default_rng(seed).permutation(n)
        parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    return {k: sorted(int(i) for i in parts[k]) for k in SPLITS}


def split_order(indices: dict[str, list[int]]) -> list[int]:
    """The images' indices split after split (train, val, test): the order a loader reads them in,
    so that the splits are consecutive rows of one array (``consecutive_parts``: no copy of each
    split beside the whole, review 53g)."""
    return [i for k in SPLITS for i in indices[k]]


def detection_splits(x: torch.Tensor, y: torch.Tensor, class_names: list[str], val_fraction: float,
                     test_fraction: float, seed: int, folds: int | None = None, fold: int = 0
                     ) -> tuple[tuple[TensorData, TensorData, TensorData], dict[str, list[int]]]:
    """``detection_cut`` of a set held in memory: the three TensorData (copies of ``x``'s rows)
    and the sorted indices of each split. ``class_names`` only sets the error message's context:
    labels must be below its length."""
    n = len(x)
    if len(y) != n:
        raise DataError(f"{n} images but {len(y)} target rows: every image needs one [M, 5] target")
    check_labels(y, class_names)
    indices = detection_cut(n, val_fraction, test_fraction, seed, folds, fold)
    data = tuple(TensorData(x[indices[k]], y[indices[k]]) for k in SPLITS)
    warn_of_val_without_boxes(data[1].y)
    return data, indices


def warn_of_val_without_boxes(val: torch.Tensor) -> None:
    """The val split's targets [N, M, 5]: without a box, its AP is undefined."""
    if len(val) and not (val[..., 0] >= 0).any():
        warn_user(f"the val split ({len(val)} images) holds no box: val AP is n/a every epoch, so training "
                  "cannot choose its best epoch by it (it keeps the last); give more annotated images, or a "
                  "larger data.val_fraction or another data.split_seed", TrainingAdvice)


# ---- the embedded default ------------------------------------------------------------------

# Class colours (RGB); shapes alternate ellipse / rectangle / diamond with the class.
PALETTE = np.array([[0.9, 0.3, 0.2], [0.2, 0.5, 0.9], [0.3, 0.8, 0.3], [0.9, 0.8, 0.2],
                    [0.7, 0.3, 0.8], [0.2, 0.8, 0.8]], np.float32)
SHAPES = ("ellipse", "rectangle", "diamond")


def _shape_mask(kind: str, yy, xx, cy, cx, ry, rx) -> np.ndarray:
    u, v = (xx + 0.5 - cx) / rx, (yy + 0.5 - cy) / ry  # pixel centres
    if kind == "ellipse":
        return u**2 + v**2 <= 1.0
    if kind == "rectangle":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if kind == "ring":
        r = u**2 + v**2
        return (r <= 1.0) & (r >= 0.45)
    return (v >= -1.0) & (v <= 1.0) & (np.abs(u) <= (v + 1.0) / 2)  # triangle


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def synthetic_boxes(n: int = 600, image_size=64, seed: int = 0, num_classes: int = 2
                    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n`` RGB images with one to three objects each and their exact boxes; no download.

    An object of class c is a filled shape (ellipse, rectangle, diamond, cycling with c) tinted
    with the class colour, 1/8 to 1/2 of the image side across, blended with a random opacity
    (0.25 to 0.9, so the contrast varies) over a smooth coloured texture, under pixel noise.
    Objects may partly overlap (box IoU at most 0.3; later ones are drawn on top). One to
    three distractors per image are not objects: rings, triangles and smooth irregular blobs,
    often in a class colour, so colour alone does not tell them apart; the shape has to be
    seen through the noise.
    Returns (x [n, 3, h, w] in [0, 1], y [n, M <= 3, 5], class names); the same seed, the same data."""
    from scipy import ndimage

    if not 1 <= num_classes <= len(PALETTE):
        raise DataError(f"synthetic_boxes supports 1 to {len(PALETTE)} classes, got {num_classes}")
    h, w = _size(image_size)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    side = min(h, w)
    lo, hi = max(4.0, side / 8), side / 2  # object extent in pixels
    images, targets = np.empty((n, h, w, 3), np.float32), []
    for i in range(n):
        texture = ndimage.gaussian_filter(rng.normal(0, 1, (h, w, 3)), sigma=(side / 10, side / 10, 0))
        image = 0.5 + 0.12 * texture / (texture.std() + 1e-6) + rng.uniform(-0.1, 0.1, 3)
        for _ in range(rng.integers(1, 4)):  # distractors first: objects are never hidden under them
            ry, rx = rng.uniform(lo, hi, 2) / 2
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            kind = rng.choice(["ring", "triangle", "blob"])
            if kind == "blob":
                noise = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), sigma=max(ry, rx) / 2)
                region = (noise > noise.std()) & (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.5)
            else:
                region = _shape_mask(kind, yy, xx, cy, cx, ry, rx)
            colour = PALETTE[rng.integers(num_classes)] if rng.random() < 0.7 else rng.uniform(0, 1, 3)
            image[region] += rng.uniform(0.35, 0.9) * (colour - image[region])
        boxes: list[list[float]] = []
        for _ in range(rng.integers(1, 4)):
            for _attempt in range(20):
                label = int(rng.integers(num_classes))
                ry, rx = rng.uniform(lo, hi, 2) / 2
                cy, cx = rng.uniform(ry, h - ry), rng.uniform(rx, w - rx)
                region = _shape_mask(SHAPES[label % len(SHAPES)], yy, xx, cy, cx, ry, rx)
                if not region.any():
                    continue
                rows, cols = np.nonzero(region)
                box = [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]
                if all(_iou(box, b[1:]) <= 0.3 for b in boxes):
                    break
            else:
                continue  # no free place: fewer objects in this image
            colour = PALETTE[label] + rng.normal(0, 0.05, 3)
            image[region] += rng.uniform(0.25, 0.9) * (colour - image[region])
            boxes.append([label, *box])
        images[i] = np.clip(image + rng.normal(0, 0.1, (h, w, 3)), 0.0, 1.0)
        targets.append(boxes)
    names = [f"{SHAPES[c % len(SHAPES)]}{c // len(SHAPES) or ''}" for c in range(num_classes)]
    return _stack(list(images)), pad_targets(targets), names
