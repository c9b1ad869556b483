"""Ship a trained student: safetensors weights, or an ONNX graph checked against PyTorch.

``export_run(RUN_DIR, model=..., fmt=...)`` picks a model of a finished run (a name,
``best`` = the student with the best validation score, or ``ensemble`` = every student in one
graph that averages their probabilities), writes it, and for ONNX runs the file with
onnxruntime on samples of the run's test split, refusing to keep it when the largest absolute
difference from PyTorch exceeds the tolerance (1e-4 in fp32)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .arguments import check_flags, check_not_negative
from .data.digests import file_sha256
from .data.splits import DataSplits
from .engine.artifacts import (RunDir, atomic_write_bytes, check_folder_writable, check_not_a_run_file,
                               kept_nothing, names_a_folder, process_is_running, save_weights)
from .errors import CheckpointError, ConfigError, PeerdistillError, warn_user
from .metrics import ranking_score
from .quantize import (CALIBRATION_SAMPLES, MIN_AGREEMENT, SLOWER_THAN_FP32, QuantizedCheck, check_int8, evenly_spaced,
                       percent, quantize_int8, quantized_weights, speed_ratio)
from .engine.state_files import DIGEST_KEY, safetensors_metadata
from .post_hoc import check_post_hoc_options
from .sidecar import is_export_json, sidecar_path, write_sidecar
from .runs import load_cohort, load_model, read_run_data, saved_window, warn_if_unfinished
from .exported_models import Logits, Tempered, ensemble_graph, flip_averaged, student_count
from .option_names import option, option_given
from .run_files import METRICS_FILE

OPSET = 18
TOLERANCE = 1e-4


class ExportError(PeerdistillError):
    """The exported file does not compute what the trained model does."""


@dataclass
class ExportResult:
    path: Path
    model: str
    max_abs_diff: float | None  # onnxruntime (fp32) against PyTorch
    output: str
    int8: QuantizedCheck | None = None  # with quantize="int8": the int8 graph against the fp32 one
    temperature: float | None = None  # with temperature_scaling: the T in the graph
    threshold: float | None = None  # with operating_point: in the JSON, applied by predict
    tta: str | None = None  # with tta: the flips averaged in the graph
    compared_on: str = "test inputs"  # what the parity was measured on (random inputs when the data is gone)


def best_student(run_dir: Path, meta: dict) -> str:
    """The student of a finished run with the best final validation score by its monitor."""
    if (nothing := kept_nothing(Path(run_dir))) is not None:  # (neither metrics.json nor --model would help)
        raise CheckpointError(nothing)
    if not (Path(run_dir) / METRICS_FILE).is_file():  # the scores 'best' is chosen by, gone
        raise CheckpointError(f"'{Path(run_dir) / METRICS_FILE}' does not exist, and it holds the validation scores "
                              f"the best student is chosen by: restore it, or name the model "
                              f"({option('--model', repr('student1'))})")
    metrics = RunDir(run_dir).metrics()
    if metrics.get("status") != "complete" or meta.get("status") != "complete":  # (run.json says last: review 50g)
        raise CheckpointError(f"'{run_dir}' has not finished: name the model ({option('--model', repr('student1'))}) "
                              "or resume it first")
    metric = metrics["monitor"].split("/", 1)[1]
    students = [e["name"] for e in meta["members"] if e["role"] == "student"]
    scores = metrics.get("val_at_best") or {}
    unscored = [n for n in students if metric not in (scores.get(n) or {})]
    if unscored:
        raise CheckpointError(f"'{run_dir}' metrics.json has no validation {metric} of {unscored}, so the best "
                              f"student cannot be chosen: name the model ({option('--model', repr('student1'))})")
    return max(students, key=lambda s: ranking_score(metric, scores[s][metric]))


def provenance(run_dir: Path, name: str, meta: dict) -> dict:
    """Where an exported graph came from, for a device team to trace a shipped file: the model
    (the ensemble's students), the run, the SHA-256 of each weights file read, and the versions
    of peerdistill and torch that wrote it, at ONNX opset ``OPSET``."""
    from . import __version__

    read = [e["name"] for e in meta["members"] if e["role"] == "student"] if name == "ensemble" else [name]
    run = RunDir(run_dir)
    return {"model": name, "run": str(Path(run_dir).resolve()),
            "weights_sha256": {n: file_sha256(run.model_path(n)) for n in read if run.model_path(n).is_file()},
            "peerdistill": __version__, "torch": torch.__version__, "opset": OPSET}


def pick_model(run_dir: Path, which: str, modules: dict[str, nn.Module] | None = None
               ) -> tuple[str, nn.Module, str, dict]:
    """(name, module, output kind, run metadata) for a model name, 'best' or 'ensemble'. Only
    the model asked for is read (for the ensemble, the students; 'best' is chosen from the
    final validation scores first), so another model's damaged file, or a model built in Python
    and not given in ``modules``, does not stand in its way."""
    saved = RunDir.open(run_dir).meta()
    role_of = {e["name"]: e["role"] for e in saved["members"]}
    if which == "ensemble" and saved.get("task") == "detection":
        raise ConfigError("a detection ensemble fuses the students' boxes after NMS (weighted boxes fusion or "
                          "detect.ensemble's rule): a rule applied to boxes, neither a graph nor a set of weights; "
                          f"export each student ({option('--model', repr('student1'))}); predict RUN_DIR --model ensemble "
                          "fuses them in Python")
    if which == "best":  # chosen by the final validation scores, before any model is read
        which = best_student(run_dir, saved)
    elif which != "ensemble" and which not in role_of:
        raise ConfigError(f"{option('--model', repr(which))}: the run has {sorted(role_of)}, 'best' and 'ensemble'")
    if which == "ensemble":
        cohort, meta = load_cohort(run_dir, modules, roles=("student",), with_heads=False)
        students = {m.name: m.module for m in cohort.students}
        # (by sliding window: blended per student first, see StudentLogits)
        module, output = ensemble_graph(students, windowed=saved_window(meta)[0] is not None)
    else:
        member, meta = load_model(run_dir, which, modules, with_heads=False)
        module, output = Logits(member.module, which), "logits"
    warn_if_unfinished(run_dir)
    return which, module.eval(), output, meta


def sample_inputs(meta: dict, count: int = 4, data: DataSplits | None = None) -> tuple[torch.Tensor, str]:
    """A few real test inputs (normalised as in training; of ``data`` when given, as read
    already), or random ones if the data is gone, and which they are."""
    try:
        data = data or read_run_data(meta)  # (checked unchanged, as eval reads it: else not "test inputs")
        x, what = torch.stack([data.test[i][0] for i in range(min(count, len(data.test)))]).float(), "test inputs"
    except PeerdistillError:
        x, what = torch.randn(count, *meta["input_shape"]), "random inputs (the run's data cannot be read here)"
    window, _ = saved_window(meta)
    return _windowed(x, meta), f"{what}{', window-sized crops' if window else ''}"


def _windowed(x: torch.Tensor, meta: dict) -> torch.Tensor:
    window, _ = saved_window(meta)
    if window:  # whole images of patch-trained runs can be huge; a window-sized crop
        x = x[..., : window[0], : window[1]]
    return x


def _run_splits(meta: dict, data: DataSplits | None, why: str) -> DataSplits:
    """The run's splits (``data``, or read where training read them); ``why`` they are needed
    goes into the message when they cannot be read."""
    if data is not None:
        return data
    if not meta.get("data_spec"):  # no command line reads them: said so, not a command that fails again
        raise ConfigError(f"{why}, which a run trained from data given in Python does not record: from Python, pass "
                          "the splits it was trained with, export_run(..., data=splits) (predict then applies what "
                          "the exported .onnx file carries: peerdistill predict FILE.onnx ...)")
    try:
        return read_run_data(meta, "The run's data is read where training read it (data.root '{root}'; a relative "
                                   "path counts from the current folder): run the command from the folder training "
                                   "ran in, or put the data back there")
    except PeerdistillError as exc:
        raise ConfigError(f"{why}, which cannot be read: {exc} (from Python: export_run(..., data=splits))") from None


@dataclass
class ChosenOnValidation:
    """What the run's validation split chose for one model: its temperature, its threshold."""

    module: nn.Module  # tempered when a temperature was fitted
    temperature: float | None = None
    threshold: float | None = None  # on the positive (second) class's probability
    rule: str | None = None


def chosen_on_validation(module: nn.Module, output: str, meta: dict, data: DataSplits | None,
                         temperature_scaling: bool, operating_point: str | None) -> ChosenOnValidation:
    """``module`` tempered by the temperature its validation probabilities fit (``calibration``)
    and the threshold ``operating_point`` picks on them afterwards (``operating_point``), as
    ``eval`` chooses them; what export puts into the graph and its JSON, and predict applies."""
    from .calibration import fit_temperature, tempered
    from .operating_point import choose_threshold, parse_rule

    chosen = ChosenOnValidation(module)
    if not (temperature_scaling or operating_point):
        return chosen
    check_post_hoc_options(meta.get("task", "classification"), num_classes=meta.get("num_classes"),
                           operating_point=bool(operating_point), temperature_scaling=temperature_scaling)
    rule = parse_rule(operating_point) if operating_point else None
    data = _run_splits(meta, data, "the temperature and threshold are chosen on the run's validation images")
    probs, labels = _val_probabilities(module, output, data)
    if temperature_scaling:
        chosen.temperature = fit_temperature(probs, labels)
        chosen.module = Tempered(module, chosen.temperature, output).eval()
        probs = tempered(probs, chosen.temperature)  # what the tempered graph gives, without a second pass
    if rule:
        chosen.threshold, chosen.rule = choose_threshold(probs[:, 1], labels, rule), str(rule)
        if chosen.threshold > 1:  # the rule did best by calling nothing positive
            warn_user(f"the threshold '{rule}' picks on the run's validation split is above 1: no input will "
                      "ever be called positive (the model does not rank the validation split's positives above "
                      "its negatives); choose another model or rule, or train further")
    return chosen


@torch.no_grad()
def _val_probabilities(module: nn.Module, output: str, data: DataSplits) -> tuple[np.ndarray, np.ndarray]:
    from .data import make_batches

    probs, labels = [], []
    for x, y in make_batches(data.val, 256, torch.device("cpu"), shuffle=False):
        out = module(x).float()
        probs.append((out.softmax(dim=1) if output == "logits" else out).numpy())
        labels.append(y.numpy())
    return np.concatenate(probs), np.concatenate(labels)


def _quantization_inputs(meta: dict, calibration: int, data: DataSplits) -> tuple[np.ndarray, np.ndarray, bool]:
    """Calibration inputs (up to ``calibration`` training images, spread over the split) and the
    test inputs the int8 graph is checked on, normalised as in training, and whether the
    calibration took every one there is. Only those images are read. A patch-trained run's graph
    sees windows: its images are cut into window-sized tiles covering each whole image
    (calibration: ``calibration`` tiles spread over every tile of the split; check: every tile of
    up to ``CHECK_LIMIT`` test images)."""
    limit = CHECK_LIMIT[meta.get("task", "classification")]
    window, _ = saved_window(meta)
    if not window:
        calibration_x, test_x = (
            torch.stack([split[int(i)][0] for i in evenly_spaced(np.arange(len(split)), count)]).float().numpy()
            for split, count in ((data.train, calibration), (data.test, limit)))
        return calibration_x, test_x, len(calibration_x) == len(data.train)
    tiles = [(i, top, left) for i in range(len(data.train))
             for top, left in _tile_corners(_image_size(data.train, i), window)]
    chosen = evenly_spaced(np.array(tiles), calibration)
    calibration_x = _cut(data.train, chosen, window)
    test = [(int(i), top, left) for i in evenly_spaced(np.arange(len(data.test)), limit)
            for top, left in _tile_corners(_image_size(data.test, int(i)), window)]
    return calibration_x, _cut(data.test, evenly_spaced(np.array(test), CHECK_TILES), window), len(chosen) == len(tiles)


def _image_size(split, i: int) -> tuple[int, int]:
    x = getattr(split, "x", None)
    return tuple((x if isinstance(x, torch.Tensor) else split[i][0]).shape[-2:])


def _tile_corners(size: tuple[int, int], window: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners of window-sized tiles that together cover an image of ``size``."""
    def starts(n: int, w: int) -> list[int]:
        s = list(range(0, max(n - w, 0) + 1, w))
        return s + [n - w] if s[-1] + w < n else s
    return [(top, left) for top in starts(size[0], window[0]) for left in starts(size[1], window[1])]


def _cut(split, tiles: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    out, cached = [], (None, None)
    for i, top, left in tiles.tolist():
        if cached[0] != i:
            cached = (i, split[i][0])
        out.append(cached[1][..., top:top + window[0], left:left + window[1]])
    return torch.stack(out).float().numpy()


# Test inputs the int8 graph is checked on, at most: samples, or whole images for segmentation.
CHECK_LIMIT = {"classification": 2048, "segmentation": 32}
CHECK_TILES = 2048  # window-sized tiles of those images, at most (patch-trained runs)
# Fewer test inputs than these make the int8 check's figure a rough one, and it says so
# (classification, segmentation): a test split of 6 images gave "100%" for a constant model.
FEW_CHECKED_INPUTS, FEW_CHECKED_IMAGES = 100, 10


FORMATS = ("onnx", "safetensors")


def export_run(run_dir: str | Path, model: str = "best", fmt: str | None = None, out: str | Path | None = None,
               tolerance: float = TOLERANCE, modules: dict[str, nn.Module] | None = None,
               quantize: str | None = None, calibration: int = CALIBRATION_SAMPLES,
               min_agreement: float = MIN_AGREEMENT, data: DataSplits | None = None,
               temperature_scaling: bool = False, operating_point: str | None = None,
               tta: str | None = None, decoding: dict | None = None) -> ExportResult:
    """``fmt``: onnx or safetensors; by default the ``out`` file's extension, else onnx. ``out``:
    a file, or a folder to write ``MODEL.FORMAT`` in. ``modules``: new instances of models built
    in Python (as for ``load_cohort``).

    ``quantize="int8"`` (ONNX; classification and segmentation): the checked fp32 graph is
    quantized statically, calibrated on ``calibration`` training images, and written only if
    it keeps the fp32 graph's class (with ``operating_point``, the call at its threshold) for at
    least ``min_agreement`` of the test samples, or for segmentation if each class's int8 mask
    reaches that Dice against the fp32 one (classes of fewer than ``quantize.MIN_JUDGED_PIXELS``
    pixels are shown, not judged); default name ``MODEL-int8.onnx``. ``data``: the splits, for a run whose
    data was given in Python (as for ``evaluate_run``); the parity check's samples come from it
    too.

    ``temperature_scaling`` (classification, ONNX): the model's temperature is fitted on the
    run's validation split as ``eval --temperature-scaling`` fits it and put into the graph, so
    the file's probabilities are the tempered ones (``ExportResult.temperature``).
    ``operating_point`` (two-class classification, ONNX): the threshold the rule picks on the
    validation split (after the temperature) goes into the JSON beside the file, and predict
    calls the positive class by it (``ExportResult.threshold``).

    ``tta`` (``hflip`` or ``flips``; classification and segmentation, ONNX): the model's
    probabilities averaged over flips of the input, as ``eval --tta`` scores it, in the graph (a
    temperature and a threshold are then chosen on the averaged probabilities, as eval chooses
    them).

    ``decoding`` (detection, ONNX): box decoding settings (``config.DECODING_KEYS``, checked as
    the config's detect section checks them) written into the JSON instead of the run's, for
    predict to apply (say, the score threshold chosen with ``eval detect.score_threshold=...``)."""
    run_dir = Path(run_dir)
    if fmt is None:
        fmt = Path(out).suffix[1:].lower() if out and Path(out).suffix[1:].lower() in FORMATS else "onnx"
    if fmt not in FORMATS:
        raise ConfigError(f"{option('--format')} must be onnx or safetensors, not '{fmt}'")
    check_flags("export_run", temperature_scaling=temperature_scaling)
    check_not_negative("export_run", tolerance=tolerance)
    _check_quantize(quantize, fmt, calibration, min_agreement)
    if fmt != "onnx":  # before any weights are read (or a temperature fitted)
        _check_safetensors_holds_it(model, tta, decoding, temperature_scaling, operating_point)
    name, module, output, meta = pick_model(run_dir, model, modules)
    if fmt != "onnx" and name == "ensemble":
        raise ConfigError("the ensemble is several models: export it as onnx, or export each student")
    if decoding:
        meta = with_decoding(meta, decoding, "export", one_model=None if name == "ensemble" else f"model '{name}'")
    finished = RunDir(run_dir).is_complete  # when its weights were read (training may end meanwhile)
    module = flip_averaged(module, output, meta, tta)
    if quantize and meta.get("task") == "detection":
        raise ConfigError(f"{option('--quantize', repr('int8'))} is for classification and segmentation: a "
                          "detector's box regression is not checked by class agreement; export it in fp32")
    chosen = chosen_on_validation(module, output, meta, data, temperature_scaling, operating_point)
    module = chosen.module
    target = _target(run_dir, name + (f"-{quantize}" if quantize else ""), fmt, out)
    if fmt == "safetensors":
        save_weights(module.model, target)  # (a plain Logits: no tta, temperature or threshold here)
        return ExportResult(target, name, None, output)
    if quantize:  # read once: for the parity samples, calibration and the check
        data = _run_splits(meta, data, "int8 export calibrates on the run's training images and checks on its "
                                       "test images")
    x, compared_on = sample_inputs(meta, data=data)
    int8_check = (lambda staged: _quantized(staged, meta, output, calibration, min_agreement, name, data,
                                            chosen)) if quantize else None
    def describe(digest: str) -> None:
        write_sidecar(target, meta, output, quantized=quantize, temperature=chosen.temperature,
                      threshold=chosen.threshold, operating_point=chosen.rule, tta=tta,
                      run_finished=finished, onnx_sha256=digest, exported_from=provenance(run_dir, name, meta))

    diff, int8 = _write_checked_onnx(module, x, target, tolerance, name, meta.get("task") == "segmentation",
                                     int8_check, describe)
    return ExportResult(target, name, diff, output, int8, chosen.temperature, chosen.threshold, tta, compared_on)


def _check_safetensors_holds_it(model: str, tta: str | None, decoding: dict | None, temperature_scaling: bool,
                                operating_point: str | None) -> None:
    """What a safetensors export cannot hold, refused before the run is read: it holds a model's
    weights alone, not a graph (flips, a temperature) or a JSON (a threshold, box decoding). (The
    ensemble is refused once the run's task is known: a detector's cannot be a graph either.)"""
    if tta:
        raise ConfigError(f"{option('--tta')} puts the flips into an ONNX graph; safetensors holds weights alone: "
                          "export as onnx")
    if decoding:
        raise ConfigError("detect.* settings go into the JSON beside an ONNX graph; safetensors holds weights "
                          "alone: export as onnx")
    if temperature_scaling or operating_point:
        raise ConfigError(f"{option('--temperature-scaling')} and {option('--operating-point')} go into an ONNX graph "
                          "and its JSON; "
                          "safetensors holds weights alone (eval prints T and the threshold: apply them yourself)")


def with_decoding(record: dict, decoding: dict, command: str, one_model: str | None = None) -> dict:
    """A run's (or an export's) record with other box decoding settings: a detector's only.
    ``one_model``: what is decoded where it is one model (its name), whose boxes no fusion key
    changes: said (review 55i: detect.ensemble=nms on one student's graph, taken in silence)."""
    from .config.decoding import checked_decoding

    if record.get("task") != "detection" or not isinstance(record.get("detection"), dict):
        raise ConfigError(f"detect.* settings decode a detector's boxes; this is a "
                          f"{record.get('task', 'classification')} model: drop them from {command}")
    checked = checked_decoding(decoding, command)
    fusing = [f"detect.{key}" for key in checked if key in FUSION_KEYS]
    if one_model is not None and fusing:
        warn_user(f"{' and '.join(fusing)} fuse{'s' if len(fusing) == 1 else ''} the students' boxes into the "
                  f"ensemble's; {one_model} is one model, so {'it changes' if len(fusing) == 1 else 'they change'} "
                  f"nothing here: drop {'it' if len(fusing) == 1 else 'them'}")
    return {**record, "detection": {**record["detection"], **checked}}


FUSION_KEYS = ("ensemble", "ensemble_iou")  # (checked_decoding names wbf_iou ensemble_iou)


def _write_checked_onnx(module: nn.Module, x: torch.Tensor, target: Path, tolerance: float, name: str, dense: bool,
                        int8_check: Callable[[Path], tuple[Path, QuantizedCheck]] | None,
                        describe: Callable[[str], None]) -> tuple[float, QuantizedCheck | None]:
    """``module`` exported to ``target`` only once onnxruntime computes what PyTorch does on ``x``
    (the largest difference within ``tolerance``) and, with ``int8_check``, once its int8 graph
    keeps the fp32 one's calls: staged beside the target (one file system: a move, not a copy),
    so that nothing is written otherwise. ``describe`` writes the JSON for the checked graph's
    SHA-256 before the graph is moved into place: a move that fails puts the earlier JSON back
    (the earlier export stays whole); a process killed between the two leaves a JSON that is
    still export's (so the next export may replace the pair) and that predict refuses beside the
    earlier graph (the digests differ), instead of a graph without its JSON, which the next export
    would refuse as the user's own. Returns the difference and the int8 check."""
    # Staged in the target's own folder, so that the move into place is a rename: staged on
    # another file system (a tmpfs /tmp), it was a copy, which an interruption or a full disk cut
    # short at the target's name. A folder made for it and left empty by a failure goes again.
    made = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    int8 = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_staging(target.parent)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f"{STAGING_PREFIX}{os.getpid()}-") as tmp:
            staged = Path(tmp) / target.name
            to_onnx(module, x, staged, dense=dense)
            diff = onnx_parity(module, staged, x, dense=dense)
            if not diff <= tolerance:
                raise ExportError(f"the ONNX file of '{name}' differs from PyTorch by up to {diff:.3g} "
                                  f"(tolerance {tolerance:g}); it was not written")
            if int8_check is not None:
                staged, int8 = int8_check(staged)
            earlier = sidecar_path(target).read_bytes() if sidecar_path(target).is_file() else None
            describe(file_sha256(staged))  # (of the graph checked, whatever lands at the target later)
            try:
                os.replace(staged, target)
            except BaseException:  # the earlier export stays whole (a kill -9 here leaves a pair predict refuses)
                _put_back(sidecar_path(target), earlier)
                raise
    except OSError as exc:  # a full disk, a folder it may not write in: named by the file asked for
        _remove_empty(made)
        staging = exc.filename is None or ".export-" in str(exc.filename) or Path(exc.filename) == target.parent
        if not staging:
            raise
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    except BaseException:
        _remove_empty(made)
        raise
    return diff, int8


STAGING_PREFIX = ".export-"  # then the exporting process's id: a folder of a process no longer alive was abandoned
ABANDONED_AFTER_S = 3600  # and untouched this long (a process of that id on another machine sharing the folder)


def _remove_abandoned_staging(folder: Path) -> None:
    """The staging folders an export killed outright (kill -9, a lost node) left beside its
    target, a whole graph each: removed once their process is gone and they have lain an hour."""
    for staging in folder.glob(f"{STAGING_PREFIX}*-*"):
        pid = staging.name[len(STAGING_PREFIX):].split("-", 1)[0]
        try:
            recent = time.time() - staging.stat().st_mtime < ABANDONED_AFTER_S
            if not pid.isdigit() or process_is_running(int(pid)) or recent:
                continue
            shutil.rmtree(staging)
        except (OSError, OverflowError):  # (removed meanwhile, not ours to remove, or no process id: left)
            continue


def _put_back(path: Path, earlier: bytes | None) -> None:
    """A file as it was before: its earlier bytes, or none."""
    if earlier is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_bytes(path, earlier)


def _remove_empty(folders: list[Path]) -> None:
    """The folders an export made, deepest first, where it left them empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _check_quantize(quantize: str | None, fmt: str, calibration: int, min_agreement: float) -> None:
    if quantize is None:  # its settings alone would be dropped in silence
        unused = [f"{name}={value!r}" for name, value, default in (
            ("calibration", calibration, CALIBRATION_SAMPLES), ("min_agreement", min_agreement, MIN_AGREEMENT))
            if value != default]
        if unused:
            raise ConfigError(f"{', '.join(unused)} set{'s' if len(unused) == 1 else ''} the int8 quantization, "
                              f"and nothing is quantized: add {option('--quantize', repr('int8'))}, or drop "
                              f"{'it' if len(unused) == 1 else 'them'}")
        return
    if quantize != "int8":
        raise ConfigError(f"{option('--quantize', repr(quantize))}: the one quantization is int8")
    if fmt != "onnx":
        raise ConfigError(f"{option('--quantize', repr('int8'))} writes an ONNX graph, not safetensors: export to a .onnx file")
    if calibration < 1:
        raise ConfigError(f"{option('--calibration-samples')} must be at least 1, got {calibration}")
    if not 0 <= min_agreement <= 1:
        raise ConfigError(f"{option('--min-agreement')} is a share of predictions, 0 to 1, got {min_agreement}")


def _quantized(fp32: Path, meta: dict, output: str, calibration: int, min_agreement: float,
               name: str, data: DataSplits, chosen: ChosenOnValidation) -> tuple[Path, QuantizedCheck]:
    """The int8 graph of the checked fp32 graph ``fp32``, staged beside it, and its check (of the
    calls at ``chosen``'s threshold when the file ships one, as predict makes them: that threshold
    chosen anew on the int8 graph's own validation probabilities)."""
    calibration_x, test_x, every_one = _quantization_inputs(meta, calibration, data)
    int8 = fp32.with_name(f"int8-{fp32.name}")
    quantize_int8(fp32, int8, calibration_x)
    if not quantized_weights(int8):
        raise ExportError(f"nothing of '{name}' was quantized: onnxruntime quantizes Conv, ConvTranspose, Gemm and "
                          "MatMul, and none of them comes before its output (an Einsum is not quantized); export "
                          "it in fp32")
    if chosen.rule is not None:
        _choose_again_on_int8(int8, output, data, chosen)
    check = check_int8(fp32, int8, test_x, output, students=student_count(meta), threshold=chosen.threshold,
                       dense=meta.get("task") == "segmentation")
    if saved_window(meta)[0]:
        check.inputs = "window-sized tiles of the test images"
    if not check.judged >= min_agreement:
        used = f"{len(calibration_x)} {'tiles' if saved_window(meta)[0] else 'training images'}"
        flag = option('--calibration-samples')
        ways = (f"accept less ({option('--min-agreement')}), or export in fp32; calibration used every one of its "
                f"{used} already, so more cannot be had ({flag})" if every_one else
                f"accept less ({option('--min-agreement')}), calibrate on more images ({flag}; {used} were used), "
                "or export in fp32")
        raise ExportError(f"the int8 graph of '{name}' {short_of(check, meta.get('class_names'), min_agreement)}; "
                          f"it was not written: {ways}")
    for caveat in int8_caveats(check, meta.get("class_names")):  # (written: the check passed, with less behind it)
        warn_user(f"the int8 graph of '{name}' passed its check, but {caveat}")
    check.speed = speed_ratio(fp32, int8, test_x[:1])
    if check.speed.ratio < SLOWER_THAN_FP32:
        warn_user(f"the int8 graph of '{name}' ran at {check.speed.ratio:.2f}x the fp32 graph's speed on this "
                  f"machine (one input at a time, median of {check.speed.rounds} runs each): in a narrow model the "
                  "steps into and out of 8 bits can cost more than they save. If speed is what int8 was for, "
                  f"export in fp32 (without {option('--quantize')}), or time both on the device you ship to")
    return int8, check


def _choose_again_on_int8(int8: Path, output: str, data: DataSplits, chosen: ChosenOnValidation) -> None:
    """The operating point's threshold chosen on the int8 graph's validation probabilities, which
    the file ships with (review 52e: chosen on the fp32 model's, the int8 file found 369 of 389
    validation positives where 'sensitivity=0.95' asked for 370); said where it moved."""
    from .operating_point import choose_threshold, parse_rule
    from .quantize import graph_probabilities

    samples = [data.val[i] for i in range(len(data.val))]  # (each read once: a Dataset may decode a file)
    x = torch.stack([image for image, _ in samples]).float().numpy()
    labels = np.asarray([int(label) for _, label in samples])
    fp32_threshold = chosen.threshold
    chosen.threshold = choose_threshold(graph_probabilities(int8, x, output)[:, 1], labels, parse_rule(chosen.rule))
    if chosen.threshold != fp32_threshold:
        warn_user(f"the threshold '{chosen.rule}' picks is chosen on the int8 graph's own validation probabilities: "
                  f"{chosen.threshold:.4g}, where the fp32 model's gave {fp32_threshold:.4g} (int8 moves each "
                  "probability a little), so the shipped file meets the rule on the validation split")


def short_of(check: QuantizedCheck, class_names: list[str] | None, min_agreement: float) -> str:
    """What the int8 graph kept, and that the judged figure (a class's Dice for segmentation,
    else the share of decisions) fell below ``min_agreement``."""
    below = (f": that Dice is below {option('--min-agreement', f'{min_agreement:.4g}')}" if check.class_dice else
             f", below {option('--min-agreement', f'{min_agreement:.2%}')}")
    # the verdict next to the figure it judges, the caveats after it (review 47d)
    return "; ".join([kept_by_int8(check, class_names, caveats=False) + below, *int8_caveats(check, class_names)])


def kept_by_int8(check: QuantizedCheck, class_names: list[str] | None, caveats: bool = True) -> str:
    """What the int8 graph keeps of the fp32 graph's decisions, as the check judged it (and, with
    ``caveats``, what makes that say less than it seems)."""
    if check.class_dice:
        worst = check.lowest_class
        name = class_names[worst] if class_names and worst < len(class_names) else str(worst)
        said = (f"gives class '{name}' a mask of Dice {check.class_dice[worst]:.4f} against the fp32 graph's (the "
                f"lowest of the classes judged) on {check.checked} {check.inputs} ({percent(check.agreement)} of "
                f"{check.predictions} pixels keep their class)")
    else:
        changed = round((1 - check.agreement) * check.predictions)
        decision = f"call at the threshold {check.threshold:.4g}" if check.threshold is not None else "class"
        said = (f"keeps the fp32 {decision} for {percent(check.agreement)} of {check.predictions} test predictions "
                f"({changed} changed; one is {percent(1 / check.predictions)} here)")
    return "; ".join([said, *(int8_caveats(check, class_names) if caveats else [])])


def int8_caveats(check: QuantizedCheck, class_names: list[str] | None) -> list[str]:
    """What makes the int8 check's figure say less than it seems (review 46e: "100%" on 6 images of
    a model calling every pixel one class): said with a refusal, warned of with a file written."""
    caveats = []
    if check.class_dice and len(check.class_dice) == 1:
        only = next(iter(check.class_dice))
        name = class_names[only] if class_names and only < len(class_names) else str(only)
        caveats.append(f"both graphs call every pixel '{name}' on these inputs, so the check says nothing of the "
                       "other classes: a model that predicts one class everywhere")
    few = FEW_CHECKED_IMAGES if check.class_dice else FEW_CHECKED_INPUTS  # (whole images, for segmentation)
    if check.checked < few and check.inputs == "test inputs":
        caveats.append(f"on {check.checked} test inputs alone, a rough figure")
    return caveats


def _target(run_dir: Path, name: str, fmt: str, out: str | Path | None) -> Path:
    """The file to write: never one of the run's own weights, named for its format, in a place
    that can be written (found before the export and its checks, which take a while)."""
    target = _named_target(run_dir, name, fmt, out)
    check_folder_writable(target.parent)
    return target


def _named_target(run_dir: Path, name: str, fmt: str, out: str | Path | None) -> Path:
    if out is None:
        return run_dir / "export" / f"{name}.{fmt}"
    target = Path(out)
    if names_a_folder(out):
        target = target / f"{name}.{fmt}"
    elif target.suffix.lower() != f".{fmt}":
        raise ConfigError(f"{option('--out', repr(str(out)))} does not end in .{fmt}, the format written: name it "
                          f"{target.with_suffix('.' + fmt).name}, or give a folder")
    check_not_a_run_file(target)
    if fmt == "onnx":
        sidecar = sidecar_path(target)
        check_not_a_run_file(sidecar, named=f"the .json beside the .onnx {option('--out')} names, '{sidecar}',")
        if sidecar.exists() and not is_export_json(sidecar):  # an annotation file or a config of that name
            raise ConfigError(f"{option('--out', repr(str(out)))} would replace '{sidecar}', which export did not "
                              "write (its JSON goes beside the .onnx, under the same name): choose another name or "
                              "folder")
    if target.is_file() and not _an_earlier_export(target, fmt):  # a graph or weights of the user's own
        raise ConfigError(f"{option('--out', repr(str(target)))} exists and is not a file export wrote (an .onnx is "
                          "one with export's JSON beside it, a .safetensors one with peerdistill's digest inside): "
                          "choose another name or folder, or delete it to replace it")
    return target


def _an_earlier_export(path: Path, fmt: str) -> bool:
    """Whether ``path`` is a file an earlier export wrote, which a new one may replace."""
    if fmt == "onnx":
        return sidecar_path(path).is_file() and is_export_json(sidecar_path(path))
    try:
        return DIGEST_KEY in safetensors_metadata(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def to_onnx(module: nn.Module, x: torch.Tensor, path: Path, dense: bool) -> None:
    """Opset 18, dynamic batch (and height and width for segmentation), torch's exporter."""
    dims = {0: torch.export.Dim("batch", min=1, max=65536)}
    if dense:
        dims.update({2: torch.export.Dim("height", min=8, max=16384), 3: torch.export.Dim("width", min=8, max=16384)})
    scripted = next((name or "the model" for name, m in module.named_modules() if isinstance(m, torch.jit.ScriptModule)),
                    None)
    if scripted is not None:
        raise ExportError(f"torch could not export this model to ONNX: '{scripted}' is a torch.jit.script module, "
                          "which torch.export cannot trace: train the plain nn.Module, or export with "
                          f"{option_given('--format', 'safetensors')}")
    quiet = io.StringIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its notes on absent torchvision ops
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet), warnings.catch_warnings():
            # torch's own deprecation notes from inside the exporter: not the model's, and under
            # PYTHONWARNINGS=error they failed the export as if the model could not be exported
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            with _without_draft_export():
                torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["input"],
                                  output_names=["output"], dynamic_shapes=(dims,), opset_version=OPSET,
                                  external_data=False)
        _without_trace_notes(path)
    except ImportError as exc:
        raise ConfigError(f"ONNX export needs onnx and onnxscript: pip install 'peerdistill[export]' ({exc})") from None
    except OSError:  # the file not written (a full disk): not the model's doing
        raise
    except Exception as exc:  # the exporter's own errors name the unsupported operator
        hint = (" (the model's forward branches on a tensor's value, e.g. `if x.mean() > 0:`, which an exported "
                "graph cannot hold: write it with torch.where or torch.cond)") if "data-dependent" in str(exc) else ""
        raise ExportError(f"torch could not export this model to ONNX: {_export_failure(exc)}{hint}") from None


def _without_trace_notes(path: Path) -> None:
    """The graph without the notes torch's exporter puts on every node (its stack traces, with the
    exporting machine's paths, and the module each node came from): 30 to 75% of a small model's
    file (review 52e), nothing onnxruntime reads, and no paths of ours in a shipped file."""
    import onnx

    model = onnx.load(str(path))
    graphs = [model.graph, *(f for f in model.functions)]
    noted = False
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            noted = noted or bool(len(node.metadata_props))
            del node.metadata_props[:]
            graphs += [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
    if noted:
        onnx.save(model, str(path))


@contextlib.contextmanager
def _without_draft_export():
    """torch's draft export (TORCH_ONNX_ENABLE_DRAFT_EXPORT=1) writes a model it cannot trace with
    the branch its sample input took baked in: a graph wrong on other inputs, which the parity
    check on a few inputs may not see. Left out of torch's strategies (read when it exports)
    while peerdistill exports; where torch keeps them elsewhere, nothing is changed."""
    try:
        from torch.onnx._internal.exporter import _capture_strategies as capture
    except ImportError:
        yield
        return
    kept = getattr(capture, "CAPTURE_STRATEGIES", None)
    if not isinstance(kept, tuple):
        yield
        return
    capture.CAPTURE_STRATEGIES = tuple(s for s in kept if "draft" not in s.__name__.lower())
    try:
        yield
    finally:
        capture.CAPTURE_STRATEGIES = kept


def _export_failure(exc: BaseException) -> str:
    """The exporter's first line, and the root cause with the model's source line it names (the
    first line alone says only which step failed)."""
    plain = (lambda text: re.sub(r"\x1b\[[0-9;]*m", "", text).strip())  # the exporter colours its text
    top = plain(str(exc)).splitlines()[0] if str(exc).strip() else type(exc).__name__
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if root is exc:
        return top
    lines = [plain(line) for line in str(root).splitlines() if line.strip()]
    where = next((line for line in lines if line.startswith("Caused by:")), "")
    return " ".join(part for part in (f"{top.split('. ')[0]}:", f"{type(root).__name__}:",
                                      lines[0] if lines else "", where) if part)


def _check_free_axes(input_shape: list, dense: bool) -> None:
    """The graph takes any batch size (and, for ``dense`` maps, any height and width): a forward
    reading the batch size as a Python number (``cls_token.expand(len(x), -1, -1)``; not so
    ``x.shape[0]`` or ``x.size(0)``) has the exporter write the sample's size into the graph,
    which then fails on any other batch."""
    axes = {0: "batch size", **({2: "height", 3: "width"} if dense else {})}
    fixed = [f"the {what} at {input_shape[axis]}" for axis, what in axes.items()
             if axis < len(input_shape) and isinstance(input_shape[axis], int)]
    if fixed:
        read = ("len(x), int(x.shape[0])" if isinstance(input_shape[0], int) else
                "int(x.shape[2]), a size given to F.interpolate from Python numbers")
        raise ExportError(f"the ONNX graph fixed {' and '.join(fixed)} (the sample's): the model's forward reads it "
                          f"as a Python number ({read}), which the exporter writes into the graph as a constant: use "
                          "the tensor's own sizes instead (x.shape[0] or x.size(0), as in token.expand(x.shape[0], -1, "
                          f"-1); size=x.shape[-2:]), or export with {option_given('--format', 'safetensors')}")


def onnx_parity(module: nn.Module, path: Path, x: torch.Tensor, dense: bool = False) -> float:
    """Largest absolute difference between onnxruntime and PyTorch on ``x`` and on a batch of
    another size (and, for ``dense`` maps, another height and width) to check the dynamic axes."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("the ONNX parity check needs onnxruntime: pip install 'peerdistill[export]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, (os.cpu_count() or 1))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    _check_free_axes(session.get_inputs()[0].shape, dense)
    inputs = [x, torch.cat([x, x[:1]])]
    if dense and x.shape[-1] > 16:
        inputs.append(x[..., : x.shape[-2] - 8, : x.shape[-1] - 4])
    worst = 0.0
    with torch.no_grad():
        for batch in inputs:
            expected = module(batch).float().numpy()
            got = session.run(None, {"input": batch.numpy().astype(np.float32)})[0]
            if got.shape != expected.shape:
                raise ExportError(f"the ONNX output has shape {got.shape}, PyTorch's {expected.shape}")
            if not (np.isfinite(got).all() and np.isfinite(expected).all()):
                # a NaN would fall out of the max below and pass the check
                raise ExportError(f"non-finite outputs on sample inputs (ONNX: {int((~np.isfinite(got)).sum())}, "
                                  f"PyTorch: {int((~np.isfinite(expected)).sum())} values): the model or its export "
                                  "is broken")
            worst = max(worst, float(np.abs(got - expected).max()))
    return worst

