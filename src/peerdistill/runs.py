"""Reading finished runs back: rebuild the saved models and score them on any data."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import shlex
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


from .arguments import check_flags, check_modules
from .bootstrap import (check_resamples, paired_intervals, percentile_intervals, resampled, resampled_scores,
                        sample_meters, warn_if_few_units)
from .calibration import calibrated_figures, tempered
from .cohort import Cohort, Member
from .config import KINDS_OF_TASK, DataSpec, data_places
from .data import DataSplits, build_data, make_batches
from .data.digests import count_seen, row_digests
from .data.loaders import check_batch_size
from .data.segmentation import masks_name_classes
from .data.splits import TensorData, group_ids, kept_whole
from .detection_thresholds import check_thresholds, figures_at_thresholds
from .engine import RunDir, evaluate
from . import run_lock
from .engine.artifacts import REPLACE_MARK, RUN_FILE, atomic_write_text, kept_nothing
from .engine.evaluate import ENSEMBLE, scored_outputs, split_probabilities
from .engine.records import load_member_weights
from .engine.devices import resolve_device
from .engine.tta import with_tta
from .post_hoc import check_post_hoc_options
from .errors import (CheckpointError, ConfigError, DataError, DataNote, DataPlaceError, SplitError, TrainingAdvice,
                     reworded, warn_user)
from .wording import first_few
from .models import build_model
from .models.heads import HeadedModel
from .operating_point import at_threshold, operating_points, parse_rule
from .scored_data import (check_unchanged, read_where_training_read, saved_data_spec,
                          warn_of_what_is_scored, where_training_read)
from .per_sample import check_per_sample_path, per_sample_rows, write_per_sample
from .sample_names import sample_names
from .tasks import ClassificationTask, SegmentationTask
from .trust import check_every_arch_trusted
from .metrics import unpaired_metric
from .option_names import option, option_given, options_named_as_flags


def unfinished_note(run_dir: str | Path) -> str | None:
    """What to say of a run that has not finished (killed, or still training) when its saved
    models are used: they are its best epoch's so far. None for a finished run."""
    if RunDir(Path(run_dir)).is_complete or run_lock.is_held(Path(run_dir)):  # (training: said when read)
        return None
    return (f"'{run_dir}' has not finished: these are the weights of its best epoch so far (continue it with "
            f"peerdistill train --resume {shlex.quote(str(run_dir))})")


def warn_if_unfinished(run_dir: str | Path) -> None:
    if (note := unfinished_note(run_dir)) is not None:
        warn_user(note)


def _check_run_dir_given(where: str, run_dir: Any) -> None:
    """A run folder of None: the ``run_dir`` of a fit that kept nothing (``Trainer(run_dir=None)``),
    which failed in os.fspath's words."""
    if run_dir is None:
        raise ConfigError(f"{where}: the run folder is None: a run trained with Trainer(..., run_dir=None) kept "
                          "nothing on disk (its FitResult.run_dir is None), so there is nothing to read back; train "
                          "with run_dir='runs/NAME' to read it back later, or score the models in memory "
                          "(peerdistill.engine.predict)")


def load_cohort(run_dir: str | Path, modules: dict[str, nn.Module] | None = None,
                roles: tuple[str, ...] = ("teacher", "student"), with_heads: bool = True,
                trusted_archs: Iterable[str] = ()) -> tuple[Cohort, dict[str, Any]]:
    """Rebuild the saved models of a run (its best-validation weights), in inference mode
    (``.eval()``), and return them with the run's metadata. Models built in Python (no arch
    spec) must be passed in ``modules``.
    ``with_heads=False`` gives self-distilled networks without their auxiliary heads. Import
    paths are built only when trusted (``check_trusted_arch``; ``trusted_archs`` adds some)."""
    if "student" not in roles:
        raise ConfigError(f"roles={tuple(roles)}: a run is read with its students (what the ensemble and the best "
                          "student are made of); give roles=('student',) or ('teacher', 'student')")
    members, meta = _saved_members(run_dir, lambda entry: entry["role"] in roles, modules, with_heads, trusted_archs)
    if not any(m.role == "student" for m in members):
        raise CheckpointError(f"run '{Path(run_dir)}' holds no student models")
    return Cohort(members, check_names=False), meta


def load_model(run_dir: str | Path, name: str, modules: dict[str, nn.Module] | None = None,
               with_heads: bool = True, trusted_archs: Iterable[str] = ()) -> tuple[Member, dict[str, Any]]:
    """One saved model of a run, as ``load_cohort`` rebuilds it, and the run's metadata. Its file
    alone is read: another model's damaged or missing file, or a model built in Python and not
    given in ``modules``, does not stand in its way."""
    members, meta = _saved_members(run_dir, lambda entry: entry["name"] == name, modules, with_heads, trusted_archs)
    if not members:
        raise CheckpointError(f"'{run_dir}' holds no model '{name}' (its models: "
                              f"{[e['name'] for e in meta['members']]})")
    return members[0], meta


def _saved_members(run_dir: str | Path, wanted: Callable[[dict[str, Any]], bool],
                   modules: dict[str, nn.Module] | None, with_heads: bool,
                   trusted_archs: Iterable[str]) -> tuple[list[Member], dict[str, Any]]:
    """The run's models whose run.json entry is ``wanted``, rebuilt with their saved weights."""
    _check_run_dir_given("load_cohort / load_model", run_dir)
    check_flags("load_cohort / load_model", with_heads=with_heads)
    check_modules(modules)
    run = RunDir.open(run_dir)
    meta = run.meta()
    if (nothing := kept_nothing(run.path)) is not None:
        raise CheckpointError(nothing)
    if (run.path / REPLACE_MARK).is_file():  # an interrupted compare --overwrite has yet to train it again
        warn_user(f"'{run.path}' is marked for replacement by a compare --overwrite that was interrupted: its "
                  "models are still those of the comparison's former config; run that compare command again "
                  f"to replace it, or delete the file {REPLACE_MARK} in it to keep it")
    in_training = run_lock.is_held(run.path)
    if in_training:
        warn_user(f"'{run.path}' is being trained right now: its models are those of its best epoch so far, not "
                  "its final ones; read it again when its training ends")
    unknown = sorted(set(modules or {}) - {e["name"] for e in meta["members"]})
    if unknown:
        raise CheckpointError(f"modules= names {unknown}, which '{run.path}' does not hold "
                              f"(its models: {[e['name'] for e in meta.get('members', [])]})")
    entries = [e for e in meta["members"] if wanted(e)]
    missing = [e["name"] for e in entries if not e.get("spec") and e["name"] not in (modules or {})]
    if missing:
        listed = ", ".join(f"'{n}': ..." for n in missing)
        alone = (" (to score the students alone: eval --students-only; evaluate_run(..., roles=('student',)))"
                 if all(e["role"] == "teacher" for e in entries if e["name"] in missing) else "")
        raise CheckpointError(
            f"model(s) {missing} of '{run.path}' were built in Python, not from an arch spec, so peerdistill "
            f"cannot rebuild them from the run alone (nor can the command line): from Python, pass new instances of them as modules={{{listed}}} to "
            f"load_cohort, evaluate_run, export_run or predict_files{alone}")
    check_every_arch_trusted([(e["name"], e["spec"]) for e in entries if e["name"] not in (modules or {})],
                             f"'{run.path / RUN_FILE}'", trusted_archs)
    members = []
    for entry in entries:
        name, spec = entry["name"], entry.get("spec")
        if modules and name in modules:
            module = modules[name]
            if entry.get("heads") and with_heads and not isinstance(module, HeadedModel):
                warn_user(f"model '{name}' of '{run.path}' was trained with self-distillation heads at "
                          f"{entry['heads']}, and the module given for it in modules= has none: it is read without "
                          "them; to read its heads too, give a HeadedModel of it as trained (load_cohort and "
                          "load_model take with_heads=False for the bare network, without this warning)")
        else:
            module = build_model(spec["arch"], spec.get("args", {}), meta["input_shape"][0], meta["num_classes"],
                                 owner=f"model '{name}'")
            if spec.get("heads") and with_heads:
                module = HeadedModel(module, spec["heads"], spec["deep_layer"], meta["num_classes"],
                                     torch.zeros(2, *meta["input_shape"]), owner=f"model '{name}'",
                                     check_depth=False)
        if not run.model_path(name).exists():
            why = ("the run finished, so it was moved or deleted since" if run.is_complete
                   else "the run is being trained and has not finished its first epoch yet: wait for it"
                   if in_training else "the run ended before its first validation")
            raise CheckpointError(f"'{run.model_path(name)}' is missing: {why}")
        try:
            load_member_weights(module, run, name)
        except CheckpointError as exc:
            if not (modules and name in modules):
                raise
            # (review 50b: "check arch, args and the data" named nothing the caller gave)
            raise reworded(exc, f"{exc}. The module given for '{name}' in modules= is the one that does not fit: "
                                "give an instance built as the run trained it (its class, arguments and "
                                "num_classes)") from None
        # in inference mode, as read to predict with: BatchNorm by its running statistics, no dropout;
        # trainable as the run trained it (review 50b: all frozen, a loaded student could not be
        # trained on, as docs/python-api.md says it can), a frozen teacher frozen still
        members.append(Member(name, module.eval(), entry["role"], frozen=entry.get("frozen") is True, spec=spec))
    return members, meta


def _warn_of_fitting_on_what_is_scored(own: DataSplits, data: DataSplits, split: str, threshold: bool,
                                       temperature: bool) -> None:
    """The threshold and temperature are fitted on the run's validation split (``own.val``):
    scored on its samples, their figures are the fit's own (a sensitivity target met by
    construction). Those samples are found by content when the scored data was read apart (a
    data section naming the run's own data), by the split when it is the run's."""
    scored = data.split(split)
    if own is data:
        overlap = len(own.val) if split in ("val", "all") else 0
    elif isinstance(scored, TensorData) and isinstance(own.val, TensorData) and len(scored) and len(own.val):
        overlap = count_seen(scored.x, set(row_digests(own.val.x)))
    else:
        overlap = 0
    if not overlap:
        return
    fitted = " and ".join(what for what, asked in (("the operating point's threshold", threshold),
                                                   ("the temperature", temperature)) if asked)
    warn_user(f"{fitted} {'are' if threshold and temperature else 'is'} fitted on the run's validation split, "
              f"and {overlap:,} of the {len(scored):,} samples of the {split} split scored here are in it: the "
              "op_ and cal_ figures are in-sample and overstate how the fit holds on unseen images; read them "
              "on the test split")


def evaluate_run(run_dir: str | Path, *, split: str = "test", data_spec: DataSpec | dict | None = None,
                 device: str = "auto", batch_size: int = 64, save_images: int = 0,
                 modules: dict[str, nn.Module] | None = None, data: DataSplits | None = None,
                 roles: tuple[str, ...] = ("teacher", "student"),
                 operating_point: str | None = None,
                 decoding: dict[str, Any] | None = None, bootstrap: int = 0,
                 temperature_scaling: bool = False, tta: str | None = None,
                 per_sample: str | Path | None = None, baseline: str | None = None,
                 score_thresholds: Iterable[float] | None = None,
                 trusted_archs: Iterable[str] = ()) -> dict[str, dict[str, float]]:
    """Metrics of every saved model and the student ensemble on ``split`` of the run's data, of
    ``data_spec`` (normalised with the statistics of the run's training data), or of ``data``
    (splits prepared as for training: a run trained from Python needs them, and its Python-built
    models in ``modules``). ``save_images`` > 0 also writes that many pictures per model under
    ``RUN_DIR/eval/SPLIT/``: predicted masks and overlays (segmentation) or predicted and true
    boxes (detection). ``roles=("student",)`` scores the students and their ensemble only (no
    teacher needed in ``modules``). ``operating_point`` (two-class classification; see
    ``operating_point.py``): each model also gets ``op_threshold``, ``op_sensitivity``, ... at the
    threshold that rule picks on the run's own validation split. ``decoding`` (detection): box
    decoding and fusion settings (``config.DECODING_KEYS``) to score with instead of the run's.
    ``bootstrap`` > 0: each metric also gets ``ci95_low_METRIC`` and ``ci95_high_METRIC``, its
    95% percentile interval over that many resamples of the scored samples (``bootstrap.py``), and
    ``ci95_resamples_METRIC`` where fewer resamples gave the metric a value. ``baseline`` (an
    output's name, with ``bootstrap``): every other output also gets ``diff_METRIC``, its figure
    minus the baseline's, and ``ci95_low_diff_METRIC``, ``ci95_high_diff_METRIC``, the interval of
    that difference over the same resamples (a paired bootstrap: both scored on every draw).
    ``score_thresholds`` (detection): each output also gets ``at{T}_precision``, ``at{T}_recall``,
    ``at{T}_f1`` and ``at{T}_boxes_per_frame`` of its boxes scoring T or more (``detection_thresholds.py``;
    ``()``: the default thresholds); the ensemble, whose boxes are fused from the students'
    decoded at ``detect.score_threshold`` (fused from boxes decoded at T, they would differ), at
    that threshold alone: its fused boxes scoring it or more, what predict keeps.
    ``temperature_scaling`` (classification): each model also gets ``cal_temperature``, fitted on the run's
    own validation split, and ``cal_ece``, ``cal_brier`` of the scored split with it
    (``calibration.py``); with ``operating_point`` too, the threshold is chosen on the tempered
    probabilities (the same decisions; the threshold export and predict use). ``tta``
    (classification, segmentation): every model's probabilities averaged over flips of the
    input, ``hflip`` or ``flips`` (``engine/tta.py``). ``per_sample``: a CSV file to write with
    one row per scored sample and model (``per_sample.py``). ``trusted_archs``: import paths
    the run's models may be built from besides the trusted ones (``check_trusted_arch``). The
    returned mapping (``Scores``) also says how many samples (images) the scored split held:
    ``.samples``. ``data_spec`` may be given as a dict of a config's ``data`` keys."""
    _check_run_dir_given("evaluate_run", run_dir)
    data_spec, rule = _checked_arguments(batch_size, bootstrap, temperature_scaling, data_spec, data, operating_point)
    cohort, meta = load_cohort(run_dir, modules, roles=roles, trusted_archs=trusted_archs)
    _check_request_fits_run(run_dir, cohort, meta, data_spec, roles=roles, baseline=baseline, bootstrap=bootstrap,
                            score_thresholds=score_thresholds, per_sample=per_sample, save_images=save_images,
                            rule=rule, temperature_scaling=temperature_scaling, tta=tta)
    chooses_on_val = bool(rule or temperature_scaling)
    given_in_python = data is not None  # the run's splits, or other data, handed to evaluate_run
    data, own = _scored_and_own_data(meta, data, data_spec, split, chooses_on_val)
    if chooses_on_val:
        _warn_of_fitting_on_what_is_scored(own, data, split, rule is not None, temperature_scaling)
    data = check_compatible(data, meta)
    scored_count = len(data.split(split))
    trained_on = warn_of_what_is_scored(run_dir, meta, data, split, data_spec, given_in_python,
                                        near_copies_asked=per_sample is not None)
    dev = resolve_device(device)
    cohort.to(dev)
    task = task_for(meta, decoding)
    if score_thresholds is not None:  # (empty: the default thresholds from the decoding's own up)
        score_thresholds = check_thresholds(score_thresholds, task.score_threshold)
    if task.name == "segmentation":  # distances in the unit of the scored data's pixel size, if it has one
        task.pixel_spacing = data.info.get("pixel_spacing")
    cohort = with_tta(cohort, tta, task.name, meta["input_shape"])
    window, overlap = saved_window(meta)  # the model's, whatever data it now sees
    kept = _Kept(task, bootstrap > 0 or per_sample is not None or score_thresholds is not None, chooses_on_val)
    scores = evaluate(cohort, task, make_batches(data.split(split), batch_size, dev, shuffle=False), window,
                      overlap, observe=kept)
    # (a run trained from Python has no data section: no groups to draw)
    spec = data_spec or (saved_data_spec(meta) if meta.get("data_spec") else None)
    # (also each row's patient in the per-sample table, review 50c: said as missing only for a bootstrap)
    groups = _scored_groups(data, split, spec, say=bool(bootstrap)) if (
        bootstrap or per_sample is not None) and spec is not None else None
    if bootstrap:
        warn_if_few_units(len(set(groups)) if groups else scored_count, grouped=bool(groups))
        _add_bootstrap_figures(scores, kept.meters, task, bootstrap, groups, baseline)
    if score_thresholds:
        _add_threshold_figures(scores, kept.meters, score_thresholds, task.score_threshold)
    if chooses_on_val:
        val = split_probabilities(cohort, task, check_compatible(own, meta).val, dev)
        _add_chosen_on_val(scores, val, kept.probabilities(), rule, temperature_scaling, bootstrap, groups)
    if per_sample is not None:
        write_per_sample(per_sample, per_sample_rows(task, kept.meters, sample_names(data.info, split), scores,
                                                     trained_on.seen, groups, trained_on.near))
    if save_images:
        _save_pictures(cohort, task, meta, data, split, data_spec, run_dir, dev, save_images, window, overlap)
    return Scores(scores, samples=scored_count)


def _checked_arguments(batch_size: int, bootstrap: int, temperature_scaling: bool, data_spec: DataSpec | dict | None,
                       data: DataSplits | None, operating_point: str | None):
    """evaluate_run's arguments checked alone, before the run is read: the data section (a dict
    made a DataSpec) and the operating-point rule (parsed; None without one)."""
    check_batch_size(batch_size)
    check_resamples(bootstrap)
    check_flags("evaluate_run", temperature_scaling=temperature_scaling)
    if isinstance(data_spec, dict):  # as a config's data section is written
        data_spec = DataSpec(**data_spec)
    if data is not None and not isinstance(data, DataSplits):
        raise DataError(f"data= takes the run's DataSplits (as given to fit), got a {type(data).__name__}: "
                        "DataSplits.from_arrays(...) makes one from arrays")
    rule = parse_rule(operating_point) if operating_point else None
    if data is not None and data_spec is not None:
        raise DataError("evaluate_run takes data_spec or data, not both")
    return data_spec, rule


def _check_request_fits_run(run_dir: str | Path, cohort: Cohort, meta: dict[str, Any], data_spec: DataSpec | None, *,
                            roles: tuple[str, ...], baseline: str | None, bootstrap: int,
                            score_thresholds: Iterable[float] | None, per_sample: str | Path | None,
                            save_images: int, rule, temperature_scaling: bool, tta: str | None) -> None:
    """What was asked of the run fits it (its task, its models, its data's places), said before any
    data is read or scored."""
    _check_baseline(baseline, cohort, bootstrap, roles)
    if score_thresholds is not None and meta.get("task") != "detection":
        raise ConfigError(f"{option('--score-thresholds')} is for detection runs: the boxes a detector keeps at a "
                          f"score; for a two-class classifier's threshold, {option('--operating-point')}")
    if per_sample is not None:  # never over the data the run trained on, or the data scored now
        scored = data_places(data_spec.model_dump()) if data_spec else []
        check_per_sample_path(per_sample, run_data_places(meta) + scored)
    if save_images and meta.get("task") not in ("segmentation", "detection"):
        raise DataError(f"{option('--save-images')} is for segmentation and detection runs")
    task_of_run = meta.get("task", "classification")
    check_post_hoc_options(task_of_run, num_classes=meta.get("num_classes"), input_shape=meta["input_shape"],
                           operating_point=rule is not None, temperature_scaling=temperature_scaling, tta=tta)
    if data_spec is not None and data_spec.task != task_of_run:  # else a class, shape or mask error says it late
        *kinds, last = KINDS_OF_TASK[task_of_run]
        raise DataError(f"data kind '{data_spec.kind}' is {data_spec.task} data, but '{run_dir}' is a {task_of_run} "
                        f"run: give data of its task (data.kind {', '.join(kinds)} or {last})")


def _add_bootstrap_figures(scores: dict[str, dict[str, float]], meters: dict[str, list], task, bootstrap: int,
                           groups: list[str] | None, baseline: str | None) -> None:
    """Each output's 95% intervals over ``bootstrap`` resamples of the scored samples (of their
    groups, where patients are known), and with a baseline, each other output's paired
    differences from it."""
    resamples = {name: resampled_scores(task, output_meters, bootstrap, groups=groups)
                 for name, output_meters in meters.items()}
    for name, figures in resamples.items():
        _add_intervals(scores[name], "", bootstrap, percentile_intervals(figures))
        if groups:
            scores[name]["ci95_groups"] = len(set(groups))
    if baseline is not None:
        _add_differences(scores, resamples, baseline, bootstrap)


def _add_threshold_figures(scores: dict[str, dict[str, float]], meters: dict[str, list],
                           score_thresholds: list[float], decoded_at: float) -> None:
    """Each detector's figures at deployment score thresholds; the ensemble's at the threshold its
    students' boxes were decoded at alone (``decoded_at``, when among them): fused from boxes
    decoded at another T they would differ (review 55i: the ensemble had no deployment figures)."""
    for name, output_meters in meters.items():
        at = score_thresholds if name != ENSEMBLE else [t for t in score_thresholds if t == decoded_at]
        if at:
            scores[name].update(figures_at_thresholds([p for m in output_meters for p in m.predictions],
                                                      [t for m in output_meters for t in m.truths], at))


def _check_baseline(baseline: str | None, cohort: Cohort, bootstrap: int, roles: tuple[str, ...]) -> None:
    """Before anything is scored: a baseline is one of the outputs scored, and needs resamples."""
    if baseline is None:
        return
    if not bootstrap:
        raise ConfigError(f"{option_given('--baseline', baseline)} needs resamples: the differences from it are "
                          f"bootstrapped, so give {option('--bootstrap', '1000')} too")
    names = scored_outputs(cohort)
    if baseline not in names:
        left_out = "" if "teacher" in roles else " (--students-only leaves any teacher out)" if options_named_as_flags() \
            else f" (roles={roles!r} leaves any teacher out)"
        raise ConfigError(f"{option_given('--baseline', baseline)} is not a model of this run{left_out}: give one "
                          f"of {', '.join(names)}")


def _add_differences(scores: dict[str, dict[str, float]], resamples: dict[str, dict[str, np.ndarray]],
                     baseline: str, bootstrap: int) -> None:
    """Every other output's ``diff_METRIC`` (its figure minus the baseline's) and the paired
    interval of that difference; a metric either leaves undefined is left out, and so is HD95
    (``NOT_PAIRED``)."""
    for name, figures in resamples.items():
        if name == baseline:
            continue
        found = paired_intervals({metric: values for metric, values in figures.items() if not unpaired_metric(metric)},
                                 resamples[baseline])
        for metric in found:
            mine, theirs = scores[name].get(metric), scores[baseline].get(metric)
            if metric != "threshold" and isinstance(mine, float) and isinstance(theirs, float):
                scores[name][f"diff_{metric}"] = mine - theirs
        _add_intervals(scores[name], "diff_", bootstrap,
                       {metric: interval for metric, interval in found.items() if f"diff_{metric}" in scores[name]})


def _scored_and_own_data(meta: dict[str, Any], data: DataSplits | None, data_spec: DataSpec | None, split: str,
                         chooses_on_val: bool) -> tuple[DataSplits, DataSplits | None]:
    """The data to score (``data`` given from Python, ``data_spec`` read with the run's
    statistics, else the run's own data) and the run's own splits, whose val split a threshold
    or temperature is chosen on (None when nothing is chosen)."""
    own = data  # splits given from Python are the run's own
    if data is None and data_spec is not None:
        with kept_whole() if split == "all" else contextlib.nullcontext():
            try:
                with read_for_scoring(own=False):
                    data = build_data(data_spec, stats=run_stats(meta))
            except SplitError as exc:  # training's advice does not fit: the set need not be split at all
                raise DataError(f"{exc.problem}: eval reads the data given into train, val and test as training "
                                f"does, to score its {split} split; to score every sample of it as one set (an "
                                "external test set; split folders are joined), add --split all (split='all' in "
                                "Python)") from None
    if data is None:
        data = own = _run_data(meta)
    elif chooses_on_val and own is None:
        own = _threshold_data(meta, data_spec, None if split == "all" else data)
    return data, own


def _add_chosen_on_val(scores: dict[str, dict[str, float]], val, scored, rule, temperature_scaling: bool,
                       bootstrap: int, groups) -> None:
    """Each model's ``op_*`` figures at the threshold ``rule`` picks and ``cal_*`` figures at the
    temperature fitted, both on the run's val split (``val``: probabilities and labels), scored
    on the scored split's (``scored``); with both, the threshold of the tempered probabilities,
    as export and predict choose it. ``bootstrap``: the ``op_*`` figures resampled too."""
    calibrated = calibrated_figures(val, scored) if temperature_scaling else {}
    if rule and calibrated:
        val, scored = (({n: tempered(p, calibrated[n]["temperature"]) for n, p in split[0].items()}, split[1])
                       for split in (val, scored))
    for prefix, chosen in (("op", operating_points(val, scored, rule) if rule else {}), ("cal", calibrated)):
        for name, figures in chosen.items():
            scores[name].update({f"{prefix}_{k}": v for k, v in figures.items()})
            if prefix == "op" and bootstrap:  # the figures at the chosen threshold, resampled alike
                _add_intervals(scores[name], "op_", bootstrap, resampled(
                    lambda i, p=scored[0][name][:, 1], t=figures["threshold"]: at_threshold(p[i], scored[1][i], t),
                    len(scored[1]), bootstrap, groups=groups))


def _save_pictures(cohort, task, meta: dict[str, Any], data: DataSplits, split: str, data_spec: DataSpec | None,
                   run_dir: str | Path, dev: torch.device, count: int, window, overlap) -> None:
    """``count`` pictures per model of the scored split under ``RUN_DIR/eval/SPLIT/``: masks and
    overlays (segmentation) or predicted and true boxes (detection)."""
    from .pictures import save_box_pictures, save_mask_pictures

    samples, folder = _DeviceView(data.split(split), dev), pictures_folder(run_dir, split, data_spec)
    if data_spec is not None:  # which data these pictures are of
        atomic_write_text(folder / "data.json", json.dumps(data_spec.model_dump(mode="json"), indent=2))
    names = (sample_names(data.info, split) or (None, None))[1]  # in the pictures' names: traced to the files
    if names is not None and len(names) != len(data.split(split)):
        names = None  # not of these samples (data given from Python)
    if meta.get("task") == "segmentation":
        save_mask_pictures(cohort, task, samples, folder, count, meta.get("data_stats"), window, overlap, names=names)
    else:
        save_box_pictures(cohort, task, samples, folder, count, meta.get("data_stats"), names=names)


class Scores(dict):
    """evaluate_run's figures, model by model, and how many samples the scored split held
    (``samples``: a count, kept apart from the figures, which compare with a run's metrics)."""

    def __init__(self, figures: dict, samples: int):
        super().__init__(figures)
        self.samples = samples


def run_data_places(meta: dict[str, Any]) -> list[Path]:
    """The data a run trained on (``config.data_places``): where training read it (the absolute
    root it recorded) and where its saved root points from the current folder."""
    section = meta.get("data_spec")
    recorded = data_places(section, meta["data_root"]) if meta.get("data_root") else []
    return recorded + data_places(section)


def pictures_folder(run_dir: str | Path, split: str, data_spec: DataSpec | None) -> Path:
    """Where ``eval --save-images`` puts its pictures: ``RUN_DIR/eval/SPLIT`` for the run's own
    data; other data has a folder of its own (named by its root and a digest of its section),
    so its pictures never mix with the run's own."""
    if data_spec is None:
        return Path(run_dir) / "eval" / split
    section = json.dumps(data_spec.model_dump(mode="json"), sort_keys=True)
    name = (Path(data_spec.root).resolve().stem or "root") if data_spec.root else data_spec.kind
    return Path(run_dir) / "eval" / f"{split}-{name}-{hashlib.sha256(section.encode()).hexdigest()[:8]}"


def _run_data(meta: dict[str, Any]) -> DataSplits:
    """The data the run trained on, read where training read it."""
    return read_run_data(meta, "The run reads its data where training read it (data.root '{root}'; a relative path "
                               "counts from the current folder): run eval from the folder training ran in, or give "
                               "the place, peerdistill eval RUN_DIR data.root=PATH")


@contextlib.contextmanager
def read_for_scoring(own: bool) -> Iterator[None]:
    """Data read to score, export or report a run, not to train: advice for training is not said;
    nor, for the run's ``own`` data (checked unchanged since), what training said it left out."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=TrainingAdvice)
        if own:
            warnings.filterwarnings("ignore", category=DataNote)
        yield


def run_stats(meta: dict[str, Any]) -> dict[str, list[float]] | None:
    """The statistics the run's inputs were standardised by, for other data to be read as the
    models saw theirs. A run trained from Python on data not standardised records none (null):
    that means unit statistics, not the scored data's own."""
    if "data_stats" in meta and meta["data_stats"] is None:
        channels = meta["input_shape"][0]
        return {"mean": [0.0] * channels, "std": [1.0] * channels}
    return meta.get("data_stats")


def read_run_data(meta: dict[str, Any], where: str | None = None) -> DataSplits:
    """The data the run trained on, read where training read it, refused if it has changed since.
    ``where``: what to say, after the loader's message, when it cannot be read at its data.root
    (``{root}`` is filled in)."""
    saved = saved_data_spec(meta, say=True)
    try:
        with read_for_scoring(own=True):
            data = build_data(saved, stats=meta.get("data_stats"))
    except DataError as exc:
        if not saved.root or where is None:
            raise
        if isinstance(exc, DataPlaceError):  # not found: its advice to set data.root is replaced by `where`'s
            raise DataError(f"{exc.problem}. {where.format(root=saved.root)}"
                            f"{where_training_read(meta, saved.root)}") from None
        if read_where_training_read(meta, saved.root):
            raise  # read where training read it: what is wrong is in the data, as its own message says
        raise DataError(f"{exc}. {where.format(root=saved.root)}") from None
    check_unchanged(meta, data)
    return data



class _Kept:
    """What evaluation keeps of the scored split as it goes: a meter per sample (a bootstrap,
    the per-sample table) and every output's class probabilities with the labels (a threshold
    or a temperature)."""

    def __init__(self, task, meters: bool, probabilities: bool):
        self.task, self.keep_meters, self.keep_probabilities = task, meters, probabilities
        self.meters: dict[str, list] = {}
        self.probs: dict[str, list[np.ndarray]] = {}
        self.labels: list[np.ndarray] = []

    def __call__(self, name: str, probs, targets: torch.Tensor) -> None:
        if self.keep_meters:
            self.meters.setdefault(name, []).extend(sample_meters(self.task, probs, targets))
        if self.keep_probabilities:
            self.probs.setdefault(name, []).append(probs.float().cpu().numpy())
            if name == ENSEMBLE:  # every batch has it: the labels once per batch
                self.labels.append(targets.cpu().numpy())

    def probabilities(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """As ``split_probabilities`` gives them: ``({output: [N, C]}, [N] labels)``."""
        return {n: np.concatenate(parts) for n, parts in self.probs.items()}, np.concatenate(self.labels)


def _scored_groups(data: DataSplits, split: str, spec: DataSpec, say: bool = True) -> list[str] | None:
    """The group (``data.group_pattern`` or ``data.group_column``: a patient) of each scored
    sample, in the split's order (``all``: train, val, test), for a bootstrap that draws whole
    groups; None where the data has no groups, and (with ``say``) said where it has but they are
    not known sample by sample (the intervals then draw samples)."""
    if not (spec.group_pattern or spec.group_column):
        return None
    parts = ("train", "val", "test") if split == "all" else (split,)
    files_of, groups_of = data.info.get("files") or {}, data.info.get("sample_groups") or {}
    files = [f for part in parts for f in files_of.get(part) or []]
    drawn = ("so the bootstrap draws samples, not whole groups: its intervals are too narrow where a group's samples "
             "are alike")
    if spec.group_column:
        groups = [g for part in parts for g in groups_of.get(part) or []]
        why = (f"'{spec.root}' has no column '{spec.group_column}' (data.group_column), {drawn}; add it, each "
               "sample's patient, for intervals that draw whole patients")
    else:
        try:
            groups = group_ids(files, spec.group_pattern)
        except DataError:  # an external set named otherwise than the run's files (review 45e)
            groups = None
        why = (f"the scored files' names do not carry the group data.group_pattern '{spec.group_pattern}' finds, "
               f"{drawn}; give data.group_pattern=REGEX matching these names for intervals that draw whole patients")
    if groups and len(groups) == len(data.split(split)):
        return groups
    if not files:  # (data given in Python, which names no file)
        why = (f"the {split} split's samples are not matched to their groups here, {drawn}; score the data through "
               "a data section that names each sample's file")
    if say:
        warn_user(why)
    return None


def _add_intervals(figures: dict[str, float], prefix: str, resamples: int, found: dict) -> None:
    """``ci95_low_``/``ci95_high_`` keys for each interval (``ci95_resamples_`` where fewer
    resamples than drawn gave the figure a value: an AUC of a resample holding one class)."""
    for metric, interval in found.items():
        if metric == "threshold":
            continue  # fixed by the validation split, not resampled
        key = prefix + metric
        point = figures.get(key)
        if isinstance(point, float) and math.isnan(point):
            continue  # undefined on the split (or from non-finite scores): resamples that miss the cause tell nothing

        figures.update({f"ci95_low_{key}": interval.low, f"ci95_high_{key}": interval.high})
        if interval.resamples < resamples:
            figures[f"ci95_resamples_{key}"] = interval.resamples


def _threshold_data(meta: dict[str, Any], given: DataSpec, built: DataSplits | None) -> DataSplits:
    """The run's own splits, for the validation split an operating point or a temperature is
    chosen on: read where training read them. Only when they are gone from there and ``given``
    is the same data at another ``root`` is ``given`` taken as the run's data moved (``built``,
    when not None, is ``given`` read already), with a warning: an external set laid out like the
    training data must never choose its own threshold."""
    if not meta.get("data_spec"):  # no command line reads them: said so, not a command that fails again
        raise DataError("an operating point or a temperature is chosen on the run's own validation split, which a run "
                        "trained from data given in Python does not record: from Python, pass the splits it was "
                        "trained with, evaluate_run(..., data=splits, operating_point=..., temperature_scaling=...)")
    saved = saved_data_spec(meta, say=True)
    try:
        with read_for_scoring(own=True):
            data = build_data(saved, stats=meta.get("data_stats"))
    except DataError as exc:
        same_elsewhere = ({**given.model_dump(), "root": None, "augment": [], "augment_range": {}}
                          == {**saved.model_dump(), "root": None, "augment": [], "augment_range": {}})
        if not same_elsewhere:
            raise DataError(f"{exc}. An operating point or a temperature is chosen on the run's own validation "
                            f"split: run eval where the run's data.root ('{saved.root}') resolves, or give its new "
                            "place alone, data.root=PATH, to score the run's own data") from None
    else:
        check_unchanged(meta, data)
        return data
    warn_user(f"the run's data is no longer at '{saved.root}': its validation split (where the threshold or "
              f"temperature is chosen) is taken from '{given.root}', the same data moved; if that is another "
              "set, put the run's own data back where training read it")
    if built is not None:
        return built
    with read_for_scoring(own=False):
        return build_data(given, stats=run_stats(meta))


def saved_window(meta: dict[str, Any]) -> tuple[tuple[int, int] | None, float]:
    """The sliding window (and its overlap) a patch-trained run predicts whole images by: from
    its data section, or, for a run trained from Python, from the trainer's ``patches``."""
    spec = meta.get("data_spec") or {}
    if spec.get("patch_size"):
        return (spec["patch_size"],) * 2, spec.get("window_overlap", 0.5)
    patches = meta.get("patches") or {}
    if patches.get("size"):
        return (patches["size"],) * 2, patches.get("overlap", 0.5)
    return None, 0.5


class _DeviceView:
    """Index a dataset, moving samples to the device the models are on."""

    def __init__(self, data, device):
        self.data, self.device = data, device

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        x, y = self.data[i]
        return torch.as_tensor(x).to(self.device), torch.as_tensor(y).to(self.device)


def task_for(meta: dict[str, Any], decoding: dict[str, Any] | None = None):
    """The task object of a saved run, for scoring (no loss weights or augmentation needed).
    ``decoding``: a detection run's box decoding and fusion settings to use instead of the
    saved ones (``DECODING_KEYS``; validated by the config's ``detect`` section)."""
    if decoding and meta.get("task") != "detection":
        raise DataError(f"detect.{', detect.'.join(decoding)} decode a detector's boxes: this is a "
                        f"{meta.get('task', 'classification')} run")
    if meta.get("task") == "segmentation":
        return SegmentationTask(meta["num_classes"], meta.get("class_names"))
    if meta.get("task") == "detection":
        from .detection.boxes import HeadLayout
        from .tasks.detection import DetectionTask

        d = meta.get("detection")
        if not isinstance(d, dict):
            raise CheckpointError("this detection run's run.json holds no 'detection' settings (head layout, image "
                                  "size, decoding thresholds): runs built in Python before they were recorded "
                                  "cannot be scored or exported; train the run again")
        layout = HeadLayout(d["num_classes"], d["reg_max"], tuple(d["strides"]))
        settings = {**{k: d[k] for k in ("score_threshold", "nms_iou", "max_detections")},
                    "ensemble": d.get("ensemble", "wbf"), "ensemble_iou": d.get("ensemble_iou", d.get("wbf_iou")),
                    **(decoding or {})}
        return DetectionTask(layout, tuple(d["image_size"]), meta.get("class_names"), **settings)
    return ClassificationTask(meta["num_classes"], class_names=meta.get("class_names"))


def check_compatible(data: DataSplits, meta: dict[str, Any]) -> DataSplits:
    """``data`` checked against the run, its classes numbered as the run numbers them. A
    sliding-window run predicts images of any size: only their channels must match."""
    shape, trained = list(data.input_shape), list(meta["input_shape"])
    windowed = saved_window(meta)[0] is not None and len(shape) == len(trained) == 3
    if (shape[:1] if windowed else shape) != (trained[:1] if windowed else trained):
        if windowed:
            hint = " (its sliding window takes any size, not other channels)"
        elif len(shape) != 3 or len(trained) != 3:  # feature vectors
            hint = ""
        elif shape[:1] != trained[:1]:
            hint = (": read image files with the run's channels (data.grey=true for one, false for three); "
                    "arrays (npz) are read as stored: save them with the run's channels")
        else:
            hint = (f": image files are resized to the run's size by data.image_size={trained[1:]} (or drop a "
                    "data.image_size that differs from it); arrays (npz) must have that size already")
        raise DataError(f"the data's inputs are {shape} but the run was trained on {trained}{hint}")
    # masks without data.class_names are read by value ("background"/"foreground" are then defaults, not names)
    if meta.get("task") != "segmentation" or masks_name_classes(data.info):
        data = _number_classes_as_the_run(data, meta.get("class_names") or [])
    if data.num_classes > meta["num_classes"]:
        raise DataError(f"the data has {data.num_classes} classes but the run's models predict {meta['num_classes']}")
    return data


def _renumbered(y: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Class labels [N], segmentation masks [N, H, W] (255: ignored pixels), or detection targets
    [N, M, 5] whose label column also holds padding (-1) and crowd regions (-2 - class), with
    class c renumbered ``order[c]``."""
    if y.ndim == 1:
        return order[y]
    if not y.is_floating_point():  # masks: detection targets hold box corners, so are float
        table = torch.arange(256, dtype=y.dtype)
        table[: len(order)] = order.to(y.dtype)
        return table[y.long()]
    labels = y[..., 0].long()
    crowd = labels <= -2
    classes = torch.where(crowd, -2 - labels, labels).clamp_min(0)
    new = torch.where(crowd, -2 - order[classes], order[classes])
    out = y.clone()
    out[..., 0] = torch.where(labels == -1, labels, new).to(y.dtype)
    return out


def _folded(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def _number_classes_as_the_run(data: DataSplits, run_names: list[str]) -> DataSplits:
    """Class labels renumbered to the run's class numbers, matched by name: other data (a folder
    tree with fewer classes, a CSV sorting them otherwise, a COCO file numbering its categories
    otherwise, masks declared with other data.class_names) numbers its classes by what it holds.
    Data whose classes have no names of their own ("0", "1", ... absent from the run's) keeps
    its numbers. The caller's ``data`` is left as it is: the renumbered splits are new."""
    names = list(data.class_names)
    unknown = [n for n in names if n not in run_names]
    if not run_names or names == run_names[:len(names)] or (unknown and names == [str(i) for i in range(len(names))]):
        return data
    if unknown:
        alike = {n: r for n in unknown for r in run_names if _folded(n) == _folded(r)}
        hint = (f" ({', '.join(f'{n!r} is {r!r} there' for n, r in alike.items())}: names differ in case or spaces)"
                if alike else "")
        raise DataError(f"the data has classes {unknown[:5]} that the run does not know (its classes: "
                        f"{run_names}){hint}: evaluate on data of the run's classes, named as the run names them "
                        "(rename the class folders, the CSV's labels, the boxes' label values or the COCO "
                        "categories; data.class_names for masks and arrays)")
    order = torch.tensor([run_names.index(n) for n in names])
    if data.info.get("class_names_given"):  # (masks named by data.class_names; folders and tables name their own)
        moved = [f"{n!r} {i} -> {j}" for i, (n, j) in enumerate(zip(names, order.tolist())) if j != i]
        warn_user(f"the data numbers its classes otherwise than the run, matched by name: {first_few(moved, 4)} "
                  "(check data.class_names: a name in the wrong place swaps classes)")
    renumbered = {}
    for split in ("train", "val", "test"):
        part = data.split(split)
        if not isinstance(part, TensorData):
            raise DataError(f"the data's classes {names} are numbered otherwise than the run's {run_names}: give "
                            "labels in the run's order")
        renumbered[split] = TensorData(part.x, _renumbered(part.y, order))
    return dataclasses.replace(data, **renumbered, class_names=list(run_names), num_classes=len(run_names))
