"""``peerdistill predict``: apply a trained model (a run directory or an exported ONNX file) to
image files, folders or an .npz, writing class probabilities (CSV), masks (PNG) or boxes (CSV;
a detector's NMS runs here, outside the exported graph)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from .data.segmentation import IMAGE_SUFFIXES, read_image
from .data.splits import standardize, to_nchw
from .engine.artifacts import atomic_write_text
from .engine.evaluate import windowed
from .errors import ConfigError, DataError
from .spatial import align_to


def sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def write_sidecar(onnx_path: Path, meta: dict, output: str) -> None:
    """What predicting with an ONNX file needs to know: the normalisation, classes, task, and
    for segmentation the size images were resized to and the sliding window."""
    info = {k: meta.get(k) for k in ("task", "class_names", "num_classes", "input_shape", "data_stats", "detection")}
    info["output"] = output
    spec = meta.get("data_spec") or {}
    info["image_size"] = spec.get("image_size")
    info["window"] = spec.get("patch_size")
    info["window_overlap"] = spec.get("window_overlap", 0.5)
    atomic_write_text(sidecar_path(onnx_path), json.dumps(info, indent=2))


def read_inputs(inputs: list[str], channels: int,
                size: tuple[int, int] | None) -> tuple[list[str], np.ndarray, list[tuple[int, int]]]:
    """Image files, folders of images, or .npz files (key ``images`` or ``test_images``), as
    [N, H, W, C] float32 in [0, 1], resized to ``size`` when given (as training resized its
    images); with each input's own (height, width)."""
    names, arrays, sizes = [], [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"'{path}' holds no images")
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                key = next((k for k in ("images", "test_images") if k in archive.files), None)
                if key is None:
                    raise DataError(f"'{path}' has no 'images' or 'test_images' array")
                batch = archive[key]
            for i, a in enumerate(batch):
                a = _as_hwc_unit(a, f"{path}[{i}]")
                names.append(f"{path.name}[{i}]")
                sizes.append(a.shape[:2])
                arrays.append(_resized(a, size) if size is not None and a.shape[:2] != tuple(size) else a)
            continue
        elif path.is_file():
            files = [path]
        else:
            raise DataError(f"input '{path}' does not exist")
        for f in files:
            names.append(str(f))
            sizes.append(_image_size(f))
            arrays.append(read_image(f, size, grey=channels == 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"inputs differ in size {sorted(shapes)[:3]}: predict them separately")
    return names, np.stack(arrays), sizes


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image '{path}': {exc}") from None


def _as_hwc_unit(a: np.ndarray, name: str) -> np.ndarray:
    """An .npz image as [H, W, C] float32 in [0, 1], like an image file read from disk: integer
    images divided by their type's maximum, floats kept."""
    a = a[..., None] if a.ndim == 2 else a
    if a.ndim != 3:
        raise DataError(f"{name} has shape {a.shape}; expected [H, W] or [H, W, C] images")
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    return a.astype(np.float32)


def _resized(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Each channel resized with Pillow's bilinear filter, as ``read_image`` resizes files."""
    from PIL import Image

    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c], dtype=np.float32)).resize(
        (size[1], size[0]), Image.BILINEAR)) for c in range(a.shape[-1])]
    return np.stack(planes, axis=-1).astype(np.float32)


def predict_files(model_path: str | Path, inputs: list[str], out: str | Path, model: str = "best",
                  batch_size: int = 64) -> Path:
    """Write ``out`` (a CSV for classification, a folder of masks for segmentation)."""
    model_path = Path(model_path)
    if model_path.suffix == ".onnx":
        info, run = _onnx_model(model_path)
    else:
        info, run = _run_model(model_path, model)
    channels, size = info["input_shape"][0], tuple(info["input_shape"][1:])
    dense = info["task"] == "segmentation"
    # Segmentation models see images at the size they were trained at (their own size, or
    # data.image_size when training resized them); masks come back at each input's size.
    trained_size = tuple(info["image_size"]) if info.get("image_size") else None
    names, images, sizes = read_inputs(inputs, channels, trained_size if dense else size)
    x = to_nchw(images, "inputs")
    if x.shape[1] != channels:
        raise DataError(f"inputs have {x.shape[1]} channels but the model takes {channels}")
    if info.get("data_stats"):
        x = standardize(x, info["data_stats"])
    outputs = torch.cat([run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    if info["task"] == "detection":
        return _write_boxes(names, outputs, info, Path(out))
    probs = outputs if info["output"] == "probabilities" else outputs.float().softmax(dim=1)
    if dense:
        return _write_masks(names, probs, sizes, Path(out))
    return _write_csv(names, probs, info["class_names"], Path(out))


def _run_model(run_dir: Path, which: str):
    from .export import pick_model

    name, module, output, meta = pick_model(run_dir, which)
    spec = meta.get("data_spec") or {}
    window = (spec["patch_size"],) * 2 if spec.get("patch_size") else None

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return windowed(module, batch, window, spec.get("window_overlap", 0.5))

    info = {k: meta.get(k) for k in ("task", "class_names", "input_shape", "data_stats", "detection")}
    info["output"] = output
    info["image_size"] = spec.get("image_size")
    return info, run


def _onnx_model(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("predicting with an ONNX file needs onnxruntime: pip install 'peerdistill[export]'") from None
    side = sidecar_path(path)
    if not side.is_file():
        raise ConfigError(f"'{side}' is missing: it is written by peerdistill export beside the .onnx file")
    info = json.loads(side.read_text())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    window = (info["window"],) * 2 if info.get("window") else None

    def whole(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": batch.numpy().astype(np.float32)})[0])

    def run(batch: torch.Tensor) -> torch.Tensor:  # by sliding window, as the run directory predicts
        return windowed(whole, batch, window, info.get("window_overlap", 0.5))

    return info, run


def _write_csv(names: list[str], probs: torch.Tensor, classes: list[str], out: Path) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["input", "predicted"] + [f"p_{c}" for c in classes])
    for name, p in zip(names, probs.tolist()):
        writer.writerow([name, classes[int(np.argmax(p))]] + [f"{v:.6f}" for v in p])
    atomic_write_text(out, buf.getvalue())
    return out


def _write_boxes(names: list[str], outputs: torch.Tensor, info: dict, out: Path) -> Path:
    """One CSV row per kept box, in pixels of the image as the model saw it (resized to its
    input size): input, class, score, x1, y1, x2, y2."""
    from .runs import task_for

    task = task_for(info)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["input", "class", "score", "x1", "y1", "x2", "y2"])
    for name, det in zip(names, task.probabilities(outputs)):
        for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
            writer.writerow([name, task.class_names[int(label)], f"{score:.6f}", *(f"{v:.2f}" for v in box)])
    atomic_write_text(out, buf.getvalue())
    return out


def _write_masks(names: list[str], probs: torch.Tensor, sizes: list[tuple[int, int]], out: Path) -> Path:
    """One label PNG per input at that input's size (probabilities resized before the argmax)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for name, p, size in zip(names, probs, sizes):
        mask = align_to(p[None].float(), size)[0].argmax(dim=0).to(torch.uint8).numpy()
        stem = Path(name.split("[")[0]).stem + (f"_{name.split('[')[1][:-1]}" if "[" in name else "")
        Image.fromarray(mask).save(out / f"{stem}_mask.png")
    return out
