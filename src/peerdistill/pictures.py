"""Pictures of predictions for a few samples of a split (Pillow): masks and overlays for
segmentation, predicted and true boxes for detection."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .engine.artifacts import atomic_write_bytes
from .engine.evaluate import predict
from .data.image_io import visible_levels
from .spatial import align_to

# Each class's colour (class 0, the background, black): Okabe and Ito's palette, told apart with
# every common colour-vision deficiency, sky blue first, which stands out on red tissue
# (endoscopy, fundus photographs) and on grey images alike. The report draws with it too.
PALETTE = np.array([[0, 0, 0], [86, 180, 233], [230, 159, 0], [0, 158, 115], [240, 228, 66], [0, 114, 178],
                    [213, 94, 0], [204, 121, 167]], dtype=np.uint8)


# The pictures eval writes in a model's folder: NNN_mask.png, NNN_overlay.png, NNN_boxes.png, or
# NNN_ID_... where the data names its samples.
_PICTURE = re.compile(r"\d{3}(_.+)?_(mask|overlay|boxes)\.png")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Overlays and box pictures of small inputs (Kvasir-SEG at 96x96, 8x8 digits) are enlarged by a
# whole factor, every pixel a square, up to this shorter side: a 96-pixel picture with its
# scores written in it is hard to read.
VIEWING_SIDE = 256


def viewing_factor(height: int, width: int) -> int:
    """The whole factor (1 to 8) that brings an image's shorter side to about ``VIEWING_SIDE``."""
    return max(1, min(8, -(-VIEWING_SIDE // max(1, min(height, width)))))


def _enlarged(a: np.ndarray, factor: int) -> np.ndarray:
    """Every pixel of an [H, W, ...] array as a factor x factor square."""
    return a.repeat(factor, axis=0).repeat(factor, axis=1)


def _stem(i: int, names: list[str] | None) -> str:
    """A picture's name: the sample's place in the split, then its id (a file's stem) where the
    data names it, so a picture can be traced to its image."""
    return f"{i:03d}_{_UNSAFE.sub('_', Path(names[i]).stem)[:80]}" if names else f"{i:03d}"  # (file names: 255 bytes)


def _emptied(folder: Path) -> None:
    """``folder``, made, without the pictures an earlier eval left there (of more samples, say),
    which would pass for this one's; nothing else in it is touched."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if _PICTURE.fullmatch(old.name):
            old.unlink()


def _emptied_folders(out_dir: Path, outputs: dict) -> dict[str, Path]:
    """Each output's folder, emptied of an earlier eval's pictures, all before any is drawn: an
    interrupted eval leaves some of this one's pictures, never old ones passing for this one's."""
    folders = {name: Path(out_dir) / name.replace("/", "_") for name in outputs}
    for folder in folders.values():
        _emptied(folder)
    return folders


def _save_png(picture: Image.Image, path: Path) -> None:
    """Written whole or not at all (an interruption left a cut PNG)."""
    encoded = io.BytesIO()
    picture.save(encoded, format="PNG")
    atomic_write_bytes(path, encoded.getvalue())


def save_mask_pictures(cohort, task, data, out_dir: Path, count: int, stats: dict | None,
                       window: tuple[int, int] | None = None, overlap: float = 0.5,
                       names: list[str] | None = None) -> list[Path]:
    """For the first ``count`` samples: ``<model>/<i>_mask.png`` (class indices, spread over 0..255
    for viewing, at the size scored) and ``<model>/<i>_overlay.png`` (the image with predicted
    classes tinted and the truth's outline in white, enlarged for viewing: ``viewing_factor``;
    pixels the truth ignores, outside a field of view, darkened and left untinted: ``overlay``),
    for every output and the ensemble; ``names``: each sample's id, put after ``<i>``."""
    x, y = first_samples(data, count)
    probs = predict(cohort, task, x, window, overlap)
    image = _displayable(x, stats)
    truths, factor = y.cpu().numpy(), viewing_factor(*x.shape[-2:])
    written = []
    folders = _emptied_folders(out_dir, probs)
    for name, p in probs.items():
        folder = folders[name]
        # a model predicting at another size is read at the image's, as the metrics read it
        pred = align_to(p, x.shape[-2:]).argmax(dim=1).cpu().numpy().astype(np.uint8)
        for i in range(len(pred)):
            stem = _stem(i, names)
            mask_path, overlay_path = folder / f"{stem}_mask.png", folder / f"{stem}_overlay.png"
            _save_png(Image.fromarray(visible_levels(pred[i].astype(np.int64), task.num_classes).astype(np.uint8)),
                      mask_path)
            _save_png(Image.fromarray(overlay(*(_enlarged(a[i], factor) for a in (image, pred, truths)))), overlay_path)
            written += [mask_path, overlay_path]
    return written


PICTURE_MIN_SCORE = 0.3  # boxes drawn in pictures; fainter ones (down to detect.score_threshold) stay in the CSVs


def save_box_pictures(cohort, task, data, out_dir: Path, count: int, stats: dict | None,
                      min_score: float = PICTURE_MIN_SCORE, names: list[str] | None = None) -> list[Path]:
    """For the first ``count`` samples: ``<model>/<i>_boxes.png``, the image (enlarged for
    viewing: ``viewing_factor``) with the true boxes in white and the predicted ones (score at
    least ``min_score``) coloured by class, with their scores, for every output and the
    ensemble; ``names``: each sample's id, put after ``<i>``."""
    x, y = first_samples(data, count)
    detections = predict(cohort, task, x)
    image = _displayable(x, stats)
    factor = viewing_factor(*x.shape[-2:])
    written = []
    folders = _emptied_folders(out_dir, detections)
    for name, per_image in detections.items():
        folder = folders[name]
        for i, det in enumerate(per_image):
            picture = Image.fromarray(_enlarged(image[i], factor))
            draw = ImageDraw.Draw(picture)
            for label, *box in y[i].tolist():
                if label >= 0:
                    draw.rectangle(_inclusive([v * factor for v in box]), outline=(255, 255, 255))
            draw_boxes(draw, (det["boxes"] * factor).tolist(), det["scores"].tolist(), det["labels"].tolist(),
                       class_names=getattr(task, "class_names", None), min_score=min_score)
            path = folder / f"{_stem(i, names)}_boxes.png"
            _save_png(picture, path)
            written.append(path)
    return written


def box_colour_index(label: int) -> int:
    """A box's colour in ``PALETTE`` by its class: the colours after the background's, in turn."""
    return 1 + int(label) % (len(PALETTE) - 1)


def draw_boxes(draw, boxes: list[list[float]], scores: list[float], labels: list[int],
               class_names: list[str] | None = None, min_score: float = 0.0) -> None:
    """Each box scored at least ``min_score`` outlined in its class's colour, with its score
    (and class name) inside it at its top, in that colour ringed by black or white (whichever
    stands out from it): text in the colour alone was lost on tissue of the same hue. A label
    that would cover one drawn before it (boxes sharing a corner) is moved a line down or up
    (``label_places``)."""
    shown = [(box, score, int(label)) for box, score, label in zip(boxes, scores, labels) if score >= min_score]
    texts = [f"{class_names[label] + ' ' if class_names else ''}{score:.2f}" for _, score, label in shown]
    extents = [draw.textbbox((0, 0), text, stroke_width=1) for text in texts]
    sizes = [(right - left + 1, bottom - top + 1) for left, top, right, bottom in extents]
    width, height = draw.im.size
    # label_places puts a label above the corner it is given: given one a label's height below the
    # box's top, the label sits inside it (counted in pixel centres there, from -0.5; PIL in edges)
    places = label_places([(box[0] + 0.5, box[1] + 0.5 + h) for (box, _, _), (_, h) in zip(shown, sizes)],
                          sizes, height, width)
    for (box, _, label), text, (left, top, _, _), (x, y) in zip(shown, texts, extents, places):
        colour = tuple(int(c) for c in PALETTE[box_colour_index(label)])
        draw.text((x + 0.5 - left, y + 0.5 - top), text, fill=colour, stroke_width=1,
                  stroke_fill=_standing_out_from(colour))
        draw.rectangle(_inclusive(box), outline=colour)  # after its label, whose ring would cut a small box's edges


def label_places(corners: list[tuple[float, float]], sizes: list[tuple[float, float]], height: float,
                 width: float) -> list[tuple[float, float]]:
    """Where each box's label goes, as the top left corner of its text, in the image's pixel
    coordinates (the picture spans -0.5 to ``width`` - 0.5 across, -0.5 to ``height`` - 0.5 down,
    y growing downwards): ``corners`` are the boxes' top left corners, ``sizes`` their labels'
    widths and heights. A label sits on its box's top edge, above it, or just inside it where
    above would leave the picture (review 52h: a box at the top edge lost its label); it is
    moved in from the right edge where it would run off it; and a label that would cover one
    placed before it (boxes sharing a corner: "ellipse0.4949") is moved down a line at a time,
    then up, to the first place free of them, each label placed in turn (greedy)."""
    placed: list[tuple[float, float, float, float]] = []
    places = []
    for (x, y), (w, h) in zip(corners, sizes):
        x = max(-0.5, min(x, width - 0.5 - w))
        start = y - h if y - h >= -0.5 else y  # above the box, else inside it
        lowest = max(start, height - 0.5 - h)  # (a label taller than the picture stays at its start)
        tries = [start + k * h for k in range(int((lowest - start) / h) + 1 if h > 0 else 1)]
        tries += [start - k * h for k in range(1, int((start + 0.5) / h) + 1 if h > 0 else 0)]
        top = next((t for t in tries if not any(x < px + pw and px < x + w and t < py + ph and py < t + h
                                                for px, py, pw, ph in placed)), start)
        placed.append((x, top, w, h))
        places.append((x, top))
    return places



def _standing_out_from(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black around a light colour, white around a dark one (by its luma, ITU-R BT.601)."""
    r, g, b = color
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 128 else (255, 255, 255)


def _inclusive(box: list[float]) -> list[float]:
    """PIL's rectangle includes its far edge, a box's edges are exclusive; a box under a pixel
    wide is drawn one pixel wide (PIL refuses a far edge before the near one)."""
    x1, y1, x2, y2 = box
    return [x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)]


# How much darker the pixels the truth ignores (255: outside data.roi) are drawn: not scored, so
# not tinted (DRIVE's dark border, tinted as vessels, read as false positives no figure counts).
IGNORED_SHADE = 0.5


def overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8: predicted foreground classes tinted over the image, the truth's outline (if
    any) in white just outside its regions, pixels the truth ignores darkened and untinted."""
    out = image.astype(np.float32)
    colors = PALETTE[pred % len(PALETTE)].astype(np.float32)
    ignored = truth == 255 if truth is not None else np.zeros(pred.shape, bool)
    tint = ((pred > 0) & ~ignored)[..., None]
    out = np.where(tint, (1 - alpha) * out + alpha * colors, out)
    out[ignored] *= IGNORED_SHADE
    if truth is not None:
        out[_boundary(truth)] = 255
    return out.clip(0, 255).astype(np.uint8)


def viewable(image: np.ndarray) -> np.ndarray:
    """An input as read, [H, W, C] float (files in [0, 1]), as ``display_batch`` shows it: RGB
    uint8."""
    shown = display_batch(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None], None)[0]
    return (shown * 255).astype(np.uint8)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """The pixels just outside the truth's foreground (its dilation by a cross, less itself): an
    outline on its own edge pixels would cover a region a pixel or two wide whole, hiding whether
    it was predicted (review 55h: every thin vessel white, found or not)."""
    fg = (mask > 0) & (mask != 255)
    grown = fg.copy()
    grown[1:, :] |= fg[:-1, :]
    grown[:-1, :] |= fg[1:, :]
    grown[:, 1:] |= fg[:, :-1]
    grown[:, :-1] |= fg[:, 1:]
    return grown & ~fg


def first_samples(data, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` samples of a dataset as two stacked tensors."""
    items = [data[i] for i in range(min(count, len(data)))]
    return torch.stack([torch.as_tensor(a) for a, _ in items]), torch.stack([torch.as_tensor(b) for _, b in items])


def display_batch(x: torch.Tensor, stats: dict | None) -> np.ndarray:
    """Images as a person sees them, [N, H, W, 3] floats in [0, 1]: the run's normalisation
    undone, each image stretched to its own range, grey repeated into RGB; an image of other than
    1 or 3 channels (two MR sequences, say) is shown by its first, in grey. Every picture
    peerdistill draws of an input goes through here (eval's files, predict's, the report's)."""
    x = x.float().cpu()
    if stats:
        x = x * torch.tensor(stats["std"]).view(1, -1, 1, 1) + torch.tensor(stats["mean"]).view(1, -1, 1, 1)
    if x.shape[1] != 3:
        x = x[:, :1]
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    x = ((x - lo) / (hi - lo).clamp(min=1e-6)).permute(0, 2, 3, 1).numpy()
    return np.broadcast_to(x, (*x.shape[:3], 3))


def _displayable(x: torch.Tensor, stats: dict | None) -> np.ndarray:
    """``display_batch`` as uint8, what a PNG holds."""
    return (display_batch(x, stats) * 255).astype(np.uint8)
