"""``peerdistill predict``: apply a trained model (a run directory or an exported ONNX file) to
image files, folders or an .npz, writing class probabilities (CSV), masks (PNG) or boxes (CSV;
a detector's NMS runs here, outside the exported graph)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from .arguments import check_flags
from .config import DataSpec
from .data.dicom import counting_dicom_reads
from .data.image_profile import COLOUR_READ_GREY, FILE_ASPECTS
from .data.digests import file_sha256
from .data.loaders import check_batch_size
from .data.sources import SATURATED
from .data.splits import per_channel, standardize, unlike_seen
from .data.unlike_training import ImageFigures, warn_of_images_unlike_training
from .engine.artifacts import RunDir, exported_from
from .engine.evaluate import windowed
from .post_hoc import check_post_hoc_options
from .sidecar import fields_digest, model_info, read_sidecar, sidecar_path
from .exported_models import STUDENT_LOGITS, ensemble_of_stacked
from .errors import CheckpointError, ConfigError, DataError, PeerdistillError, warn_user
from .predict_inputs import Inputs, read_inputs
from .predict_regions import region_masks
from .predict_outputs import (check_out, check_pictures_replaceable, list_unreadable, remove_earlier_pictures_of,
                              unreadable_list, write_predictions)
from .run_files import RUN_FILE
from .runs import run_data_places
from .scored_data import warn_if_set_on_another_scale


def as_scores(output: torch.Tensor, info: dict) -> torch.Tensor:
    """A model's (blended) output as predict scores it: a sliding-window ensemble's students'
    logits become their mean probability, as evaluation computes it; others are kept."""
    if info["output"] == STUDENT_LOGITS:
        return ensemble_of_stacked(output, info["ensemble_of"])
    return output


def predict_files(model_path: str | Path, inputs: list[str], out: str | Path, model: str | None = None,
                  batch_size: int = 64, modules: dict | None = None, temperature_scaling: bool = False,
                  operating_point: str | None = None, visible_masks: bool = False,
                  overlays: str | Path | None = None, tta: str | None = None,
                  decoding: dict | None = None, skip_unreadable: bool = False, roi: str | Path | None = None) -> Path:
    """Write ``out`` (a CSV for classification and detection, a folder of masks for
    segmentation). ``model`` picks a run directory's model (default ``best``); ``modules``: new
    instances of a run's models built in Python (as for ``load_cohort``). A run directory's
    classifier can be tempered (``temperature_scaling``) and call the positive class at the
    threshold ``operating_point`` picks, both on the run's validation split; an ONNX file
    carries what its export chose (its JSON's ``temperature`` and ``threshold``).
    ``visible_masks`` (segmentation): mask PNGs with the classes spread over 0..255.
    ``overlays`` (segmentation, detection): a folder for pictures of the predictions on each
    input at its own size, ``<stem>_overlay.png`` (classes tinted) or ``<stem>_boxes.png``.
    ``tta`` (``hflip``, ``flips``; a run directory's classifier or segmenter): probabilities
    averaged over flips of each input, as ``eval --tta`` scores them (an ONNX file has them in
    its graph if it was exported with ``--tta``). ``decoding`` (detection): box decoding and
    fusion settings (``config.DECODING_KEYS``) instead of the run's or the export's.
    An input that cannot be read stops it (every one is named), unless ``skip_unreadable``
    predicts the others and lists those in ``unreadable_list(out)`` with why. ``roi``
    (segmentation): a folder of region masks (DRIVE's field of view), one per input paired by
    name as training paired them; the masks written are background outside it."""
    model_path, out = Path(model_path), Path(out)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)  # one file or folder alone
    if not inputs:
        raise ConfigError("no inputs given: name image files or folders of them")
    check_batch_size(batch_size)
    check_flags("predict_files", temperature_scaling=temperature_scaling, visible_masks=visible_masks,
                skip_unreadable=skip_unreadable)
    info, run = _model_to_predict_with(model_path, model, modules, temperature_scaling, operating_point, tta, decoding)
    dense = info["task"] == "segmentation"
    if visible_masks and not dense:
        raise ConfigError(f"--visible-masks is for segmentation masks; this model is a {info['task']} model: drop it")
    if roi is not None and not dense:
        raise ConfigError(f"--roi keeps a segmentation mask inside its region; this model is a {info['task']} model: "
                          "drop it")
    if roi is not None and Path(roi).resolve() in (out.resolve(), Path(overlays or out).resolve()):
        raise ConfigError(f"--roi '{roi}' is where predict would write: write the masks elsewhere (--out, --overlays)")
    if overlays is not None and info["task"] == "classification":
        raise ConfigError("--overlays draws masks or boxes on the inputs; a classifier's predictions are the CSV: "
                          "drop --overlays")
    # a run directory names its training data, which no output may replace (an .onnx, the run it came from)
    trained_on = _data_places_of(model_path)
    check_out(out, dense, inputs, trained_on)
    if overlays is not None:
        check_out(Path(overlays), True, inputs, trained_on, pictures=True)
    channels, size = info["input_shape"][0], tuple(info["input_shape"][1:])
    # Segmentation models see images at the size they were trained at (their own size, or
    # data.image_size when training resized them); masks come back at each input's size.
    trained_size = tuple(info["image_size"]) if info.get("image_size") else None
    with counting_dicom_reads() as dicom:
        read = read_inputs(inputs, channels, trained_size if dense else size, keep_originals=overlays is not None,
                           dicom_window=info.get("dicom_window"), trained_on_converted=_trained_on_converted(info, channels),
                           trained_resized=trained_size is not None, skip_unreadable=skip_unreadable,
                           trained_aspects=(info.get("training_images") or {}).get(FILE_ASPECTS))
    _say_how_dicom_was_read(dicom, info, model_path)
    if dense and trained_size is None and not info.get("window"):
        _say_if_another_scale_of_size(read, size)
    _say_if_unlike_training_images(read, info.get("data_stats"), info.get("training_images"))
    if not info.get("data_stats"):
        _say_if_unlike_what_the_models_saw(read, info.get("input_stats"))
    pictures = [(out, "mask", "--out")] if dense else []
    if overlays is not None:
        pictures.append((Path(overlays), "overlay" if dense else "boxes", "--overlays"))
    check_pictures_replaceable(read, pictures)
    regions = region_masks(read, Path(roi), info) if roi is not None else None
    results = _predicted(read, info, run, batch_size)
    written = write_predictions(read, results, info, out, size, visible_masks, overlays, regions)
    list_unreadable(read, unreadable_list(out, dense))
    remove_earlier_pictures_of(read, [out] if dense else [], overlays)
    return written


def _model_to_predict_with(model_path: Path, model: str | None, modules: dict | None, temperature_scaling: bool,
                           operating_point: str | None, tta: str | None,
                           decoding: dict | None = None) -> tuple[dict, Callable]:
    """What predicting needs of the model (its task, input, classes, statistics...) and a function
    running it on a batch: an ONNX file (which carries what its export chose), or a run
    directory's model (``best`` by default), tempered, thresholded and flipped as asked."""
    if model_path.suffix.lower() != ".onnx":  # (as export accepts it)
        return _run_model(model_path, model or "best", modules, temperature_scaling, operating_point, tta, decoding)
    if model is not None:
        raise ConfigError(f"--model '{model}' picks a model of a run directory; '{model_path}' is one model "
                          "already: drop --model")
    if temperature_scaling or operating_point or tta:
        raise ConfigError(f"'{model_path}' carries what its export chose (its JSON's temperature, threshold and "
                          "tta): export with --temperature-scaling / --operating-point RULE / --tta FLIPS, or "
                          "predict from the run directory")
    return _onnx_model(model_path, decoding)


def _data_places_of(model_path: Path) -> list[Path]:
    """Where the model's training data is: its run's, or for an .onnx the run its JSON says it
    came from while that run is there (review 46e: masks were written into its mask folder)."""
    if model_path.suffix.lower() != ".onnx":
        return run_data_places(RunDir.open(model_path).meta())
    origin = exported_from(model_path)
    run = Path(origin["run"]) if isinstance(origin.get("run"), str) else None
    if run is None or not (run / RUN_FILE).is_file():
        return []
    try:
        return run_data_places(RunDir.open(run).meta())
    except PeerdistillError:  # a run damaged since: the graph is predicted all the same
        return []


def _predicted(read: Inputs, info: dict, run: Callable, batch_size: int) -> list:
    """Each input's output, in input order: scores (classes first, [C] or [C, H, W]) or, for a
    detector, its boxes; inputs of one size are standardised and run in batches."""
    channels = info["input_shape"][0]
    results: list = [None] * len(read.images)
    for indices in _same_size_groups(read.images):  # segmentation inputs may differ in size
        x = torch.from_numpy(np.stack([read.images[i] for i in indices])).permute(0, 3, 1, 2).contiguous()
        if x.shape[1] != channels:
            example = ("np.repeat(images[..., None], 3, axis=-1) for grey to colour" if channels == 3 and x.shape[1] == 1
                       else "images[..., :3].mean(axis=-1) for colour to grey" if channels == 1
                       else f"images[..., :{channels}] to drop the extra ones" if x.shape[1] > channels else None)
            raise DataError(f"inputs have {x.shape[1]} channels but the model takes {channels}: an .npz's arrays are "
                            f"taken as they are (image files are converted): give them {channels} channel(s)"
                            f"{f', e.g. in numpy {example}' if example else ''}, or save them as image files")
        if info.get("data_stats"):
            x = standardize(x, info["data_stats"])
        for start in range(0, len(x), batch_size):
            output = run(x[start:start + batch_size])
            items = info["boxes"](output) if info["task"] == "detection" else list(output)
            for i, item in zip(indices[start:start + batch_size], items, strict=True):
                results[i] = item
    return results


def _trained_on_converted(info: dict, channels: int) -> bool:
    """Whether the model learnt from files converted as inputs of the other kind are (all of
    them, or some): a colour model from grey files read as colour, a grey one from colour files
    read grey (data.grey); such inputs are then no news."""
    profile = info.get("training_images") or {}
    if channels == 1:
        return profile.get(COLOUR_READ_GREY, 0) > 0
    return bool(info.get("grey_read_as_colour")) or profile.get("grey_share", 0) > 0


def _say_if_another_scale_of_size(read: Inputs, size: tuple[int, ...]) -> None:
    """A dense model trained on inputs of one size, without a resize or a sliding window that
    predict could repeat (images of one size, or resized before training: a run trained from
    Python), sees each input at its own size: things 5 times larger than it learnt them. Said
    when a side differs twofold or more."""
    if len(size) != 2:
        return
    off = [(name, image.shape[:2]) for name, image in zip(read.names, read.images)
           if max(image.shape[0] / size[0], size[0] / image.shape[0], image.shape[1] / size[1],
                  size[1] / image.shape[1]) >= 2]
    if off:
        name, (h, w) = off[0]
        warn_user(f"{len(off)} of {len(read.names)} inputs are of another scale than the {size[0]}x{size[1]} "
                  f"images the model was trained on ('{name}' is {h}x{w}), and are predicted at their own size, "
                  "as the run records no resize (data.image_size) or sliding window to repeat: resize them to "
                  f"{size[0]}x{size[1]} as in training, and the masks come back at that size")


def _say_if_unlike_training_images(read: Inputs, stats: dict | None, profile: dict | None) -> None:
    """A model predicts whatever it is given; inputs unlike every training image (12-bit values
    in 16-bit files, a uint16 .npz kept as it is against 16-bit files divided by 65535) would be
    predicted wrong in silence: eval asks the same of each scored image."""
    if not read.images:
        return
    figures = ImageFigures()
    for image in read.images:  # one at a time: inputs may differ in size
        figures.add(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])
    named = warn_of_images_unlike_training(figures, read.names, "inputs", stats, profile,
                                           "Image files are divided by 255 (8-bit) or 65535 (16-bit); an .npz's "
                                           "uint8 arrays by 255, other types are kept as they are")
    _say_if_arrays_on_another_scale(read, figures, named, stats)


def _say_if_arrays_on_another_scale(read: Inputs, figures: ImageFigures, named: np.ndarray, stats: dict | None) -> None:
    """The images of .npz inputs taken together, as eval checks a scored set (review 58h: raw
    0..16 digits, a whole file 12 training stds off, each image within the rule above, were all
    called one class in silence). Arrays only: image files are read onto [0, 1] as training read
    its files, and a few photographs need not look like a training set. One image is no set."""
    arrays = np.array(read.from_arrays, bool)
    if not stats or len(arrays) != len(read.images):
        return
    chosen = arrays & ~named
    channels = len(stats["mean"])
    if chosen.sum() < 2 or any(len(figures.channel_means[i]) != channels for i in np.flatnonzero(chosen)):
        return  # (other channels: refused by the channel check, saying so)
    images = ("the inputs" if chosen.all() else
              f"the {int(chosen.sum())} inputs of .npz arrays{' not named above' if named.any() else ''}")
    warn_if_set_on_another_scale(figures, chosen, stats, images, "store them as the run's data was stored (an .npz's "
                                 "uint8 arrays are divided by 255, other types are kept as they are)")


def _say_if_unlike_what_the_models_saw(read: Inputs, seen: dict | None) -> None:
    """A run trained from a Dataset keeps no normalisation, so its inputs are given to the model
    as read ([0, 1]); a Dataset that normalised its images (ImageNet statistics) showed the
    models values on another scale, and every prediction would be wrong in silence."""
    if not seen or not read.images:
        return
    channels = read.images[0].shape[-1]
    if any(image.shape[-1] != channels for image in read.images) or channels != len(seen["mean"]):
        return  # other channels: refused by the channel check, saying so
    count, total, squares = 0, np.zeros(channels), np.zeros(channels)
    for image in read.images:  # image by image: all of them as float64 at once could be gigabytes
        pixels = image.reshape(-1, channels).astype(np.float64)
        count, total, squares = count + len(pixels), total + pixels.sum(axis=0), squares + (pixels ** 2).sum(axis=0)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
    if unlike_seen(mean, std, seen):
        warn_user(f"the inputs have mean / std {per_channel(mean, std)} per channel as read (image files on "
                  f"[0, 1], an .npz's float arrays as they are) and given to the model, which saw "
                  f"{per_channel(seen['mean'], seen['std'])} in training (its first validation batch, as the Dataset "
                  "it was trained from prepared it): a run trained from a Dataset keeps no normalisation to "
                  "apply, so if the Dataset normalised or rescaled its images, give predict an .npz of images "
                  "prepared that way")


def _same_size_groups(images: list[np.ndarray]) -> list[list[int]]:
    """Indices of the inputs of each size, in input order."""
    groups: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    return list(groups.values())


def above(detections: dict[str, torch.Tensor], threshold: float) -> dict[str, torch.Tensor]:
    """One image's boxes scoring at least ``threshold``."""
    kept = detections["scores"] >= threshold
    return {key: value[kept] for key, value in detections.items()}


def _run_model(run_dir: Path, which: str, modules: dict | None, temperature_scaling: bool = False,
               operating_point: str | None = None, tta: str | None = None, decoding: dict | None = None):
    from .engine.evaluate import ENSEMBLE, predict
    from .export import chosen_on_validation, flip_averaged, pick_model, with_decoding
    from .runs import load_cohort, saved_window, task_for, warn_if_unfinished

    meta = RunDir.open(run_dir).meta()
    if decoding:
        meta = with_decoding(meta, decoding, "predict", one_model=None if which == "ensemble" else f"model '{which}'")
    # checked before anything is built (a detector's TTA refused, saying why)
    check_post_hoc_options(meta.get("task", "classification"), num_classes=meta.get("num_classes"),
                           input_shape=meta["input_shape"], operating_point=bool(operating_point),
                           temperature_scaling=temperature_scaling, tta=tta)
    if meta.get("task") == "detection" and which == "ensemble":
        # the students' boxes, decoded and fused as evaluation does it
        cohort, _ = load_cohort(run_dir, modules, roles=("student",), with_heads=False)
        warn_if_unfinished(run_dir)
        task = task_for(meta)
        info = {**model_info(meta, "boxes"), "boxes": lambda detections: detections}
        # Fusion lowers the score of a box fewer students found (wbf): those below the threshold
        # go, as a deployed threshold promises (review 51h: a quarter of the rows were under it).
        # Evaluation keeps them, its AP ranking every box.
        return info, lambda batch: [above(d, task.score_threshold) for d in predict(cohort, task, batch)[ENSEMBLE]]
    _, module, output, _ = pick_model(run_dir, which, modules)
    module = flip_averaged(module, output, meta, tta)
    chosen = chosen_on_validation(module, output, meta, None, temperature_scaling, operating_point)
    module = chosen.module
    info = {**model_info(meta, output), "temperature": chosen.temperature, "threshold": chosen.threshold}
    if meta.get("task") == "detection":
        info["boxes"] = task_for(meta).probabilities
    window, overlap = saved_window(meta)

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return as_scores(windowed(module, batch, window, overlap), info)

    return info, run


def _say_how_dicom_was_read(dicom, info: dict, model_path: Path) -> None:
    """DICOM inputs read otherwise than training read its images: through their own windows
    where the export does not say which window training used, or washed out by the window."""
    if not dicom.files():
        return
    if "dicom_window" not in info:  # an export written before it recorded the window
        warn_user(f"'{sidecar_path(model_path)}' does not say which DICOM window training read its images "
                  "through, so the DICOM inputs are read through their own windows: export the run again")
    elif info["dicom_window"] is not None and dicom.share_at_ends() > SATURATED:
        warn_user(f"the run's DICOM window {list(info['dicom_window'])} puts {dicom.share_at_ends():.0%} of the "
                  "inputs' pixels at black or white: are these images of the kind the run was trained on?")


def _checked_window(info: dict, side: Path) -> None:
    """The exported window, as data.dicom_window is checked (a hand edit would read every input wrong)."""
    if info.get("dicom_window") is None:
        return
    try:
        DataSpec.model_validate({"kind": "image_folder", "root": ".", "dicom_window": info["dicom_window"]})
    except ValidationError:
        raise CheckpointError(f"'{side}' gives dicom_window {info['dicom_window']!r}: expected [center, width], two "
                              "numbers with the width above 1 (or null); export the run again") from None


def _onnx_model(path: Path, decoding: dict | None = None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("predicting with an ONNX file needs onnxruntime: pip install 'peerdistill[export]'") from None
    if not path.is_file():
        raise DataError(f"'{path}' does not exist: give an .onnx file written by peerdistill export, or a run directory")
    side = sidecar_path(path)
    info = read_sidecar(path)
    _checked_window(info, side)
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
        raise CheckpointError(f"cannot load '{path}': {str(exc).splitlines()[0]}. It is truncated or not an ONNX "
                              "model; export it again") from None
    _check_graph_fits(session, info, path, side)
    if info.get("run_finished") is False:  # (older exports do not say)
        warn_user(f"'{path}' was exported from a run that had not finished: the weights of its best epoch at "
                  "the time (export it again once the run is finished)")
    window = (info["window"],) * 2 if info.get("window") else None
    if decoding:
        from .export import with_decoding

        info = with_decoding(info, decoding, "predict", one_model=f"the graph '{path.name}'")
    if info["task"] == "detection":
        from .runs import task_for

        info["boxes"] = task_for(info).probabilities

    def whole(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": batch.numpy().astype(np.float32)})[0])

    def run(batch: torch.Tensor) -> torch.Tensor:  # by sliding window, as the run directory predicts
        return as_scores(windowed(whole, batch, window, info.get("window_overlap", 0.5)), info)

    return info, run


def _said_by_onnxruntime(exc: Exception) -> str:
    """onnxruntime's message, its lines joined (review 52e: the first one stopped mid-sentence, which
    index got which size on the next), kept short."""
    said = " ".join(str(exc).split())
    return said if len(said) <= 300 else said[:297] + "..."


def _check_detector_outputs(session, info: dict, path: Path, side: Path, fix: str) -> None:
    """A detector's graph gives, for an input of its size, one row per point of every level of
    its head ([1, A, classes + 4 (reg_max + 1)]), as the JSON's detection settings read it (a
    graph of another detector beside the JSON failed deep in the decoding)."""
    d = info["detection"]
    height, width = d["image_size"]
    points = sum(-(-height // stride) * -(-width // stride) for stride in d["strides"])
    expected = (1, points, d["num_classes"] + 4 * (d["reg_max"] + 1))
    try:
        out = session.run(None, {"input": np.zeros([1, info["input_shape"][0], height, width], np.float32)})[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own types
        raise CheckpointError(f"'{path}' does not run on the inputs '{side}' describes "
                              f"({_said_by_onnxruntime(exc)}): {fix}") from None
    if tuple(out.shape) != expected:
        raise CheckpointError(f"'{path}' gives outputs of shape {list(out.shape)}, but '{side}' describes a detector "
                              f"whose outputs are {list(expected)} ({d['num_classes']} classes, reg_max "
                              f"{d['reg_max']}, strides {d['strides']} on {height}x{width} inputs): {fix}")


def _check_graph_fits(session, info: dict, path: Path, side: Path) -> None:
    """The JSON must describe the graph beside it (files copied or renamed by hand pair one
    model's graph with another's JSON, whose classes, sizes or kind of output would be applied
    to it without a word): the digest export recorded, else (a JSON written before it was, or
    set to null for a graph changed on purpose) the graph's input and its output on a probe,
    which costs as much as predicting one input (benchmarks/predict_graph_check.py). The probe
    is spared for a JSON as export wrote it for this graph (both digests match): export
    checked that graph against PyTorch and described it."""
    fix = f"keep the JSON that export wrote beside '{path.name}', or export the model again"
    recorded = info.get("onnx_sha256")
    if recorded is not None and recorded != file_sha256(path):
        raise CheckpointError(f"'{side}' was written for another graph than '{path}' (the .onnx file's SHA-256 is "
                              f"not the one recorded at export): {fix}. A graph changed on purpose (simplified, "
                              "converted) that still takes and gives what the JSON says: set onnx_sha256 to null "
                              "in the JSON")
    if recorded is not None and info.get("json_sha256") == fields_digest(info):
        return  # untouched since export: a probe would cost a forward to learn nothing
    inputs = session.get_inputs()
    if [i.name for i in inputs] != ["input"]:
        raise CheckpointError(f"'{path}' takes inputs {[i.name for i in inputs]}, not the one 'input' of a graph "
                              f"peerdistill export writes: {fix}")
    expected = [1, *info["input_shape"]]
    fixed = [(axis, size) for axis, size in enumerate(inputs[0].shape) if isinstance(size, int) and axis > 0]
    if len(inputs[0].shape) != len(expected) or any(size != expected[axis] for axis, size in fixed
                                                     if axis == 1 or info["task"] == "classification"):
        raise CheckpointError(f"'{path}' takes inputs of shape {inputs[0].shape}, but '{side}' describes a model of "
                              f"{'x'.join(map(str, info['input_shape']))} inputs: {fix}")
    if info["task"] == "detection":
        _check_detector_outputs(session, info, path, side, fix)
        return
    probe_size = [info["window"]] * 2 if info.get("window") else info["input_shape"][1:]
    try:
        out = session.run(None, {"input": np.zeros([1, info["input_shape"][0], *probe_size], np.float32)})[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own types
        raise CheckpointError(f"'{path}' does not run on the inputs '{side}' describes "
                              f"({_said_by_onnxruntime(exc)}): {fix}") from None
    students = (info.get("ensemble_of") or 1) if info["output"] == STUDENT_LOGITS else 1  # their maps side by side
    channels = info["num_classes"] * students
    dims = 2 if info["task"] == "classification" else 4
    if out.ndim != dims or out.shape[1] != channels:
        raise CheckpointError(f"'{path}' gives outputs of shape {list(out.shape)} on one input, but '{side}' "
                              f"describes {channels} {'class scores' if dims == 2 else 'score maps'} per input: {fix}")
    sums_to_one = bool(np.allclose(out.sum(axis=1), 1, atol=1e-2))
    if info["output"] == "probabilities" and not sums_to_one:
        raise CheckpointError(f"'{side}' says its graph gives probabilities, but those of '{path}' do not sum to 1 "
                              f"over the classes (a graph of logits?): {fix}")
    # the other way round, logits read as probabilities would be softmaxed twice (0.995 -> 0.73);
    # logits in [0, 1] summing to 1 to 4 decimals on a blank input are no chance
    if info["output"] != "probabilities" and np.allclose(out.sum(axis=1), 1, atol=1e-4) and \
            out.min() >= 0 and out.max() <= 1:
        raise CheckpointError(f"'{side}' says its graph gives logits, but those of '{path}' are probabilities (in "
                              f"[0, 1], summing to 1 over the classes): a graph of probabilities, as an ensemble's "
                              f"or a tempered export's? {fix}")


