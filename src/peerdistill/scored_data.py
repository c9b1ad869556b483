"""Which data eval scores, and what a user must hear of it.

The run's own data read again must split as it did in training; its splits' files, read
another way (``--split all``, another split seed), hold images the run trained on; other data
may be the run's training images saved anew, lie on another scale, or be read through another
DICOM window. Each case is one check here, said as a warning (or refused) before scoring, so
no figure is taken for a held-out one when it is not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from .config import SPLIT_KEYS, DataSpec, format_validation_error, saved_data_section
from .data import DataSplits
from .data.digests import digests_path, read_digests, seen_rows
from .data.image_profile import unstandardised_chunks
from .data.near_copies import looked_for, near_copies
from .data.unlike_training import ImageFigures, warn_of_images_unlike_training
from .data.splits import GROUP_FOLD_VAL, TensorData, grey_read_as_colour, off_scale, per_channel, unlike_seen
from .errors import CheckpointError, DataError, warn_user
from .json_files import read_json
from .sample_names import names_in_messages, sample_names
from .wording import first_few


@dataclass
class TrainingOverlap:
    """The scored samples identical to training inputs (positions in the split; None where not
    known: ``seen_in_training``) and those that are near-copies of training images (position ->
    the training image's name; None where not looked for), for ``--per-sample``'s columns."""

    seen: list[int] | None = None
    near: dict[int, str] | None = None


def warn_of_what_is_scored(run_dir: str | Path, meta: dict[str, Any], data: DataSplits, split: str,
                           data_spec: DataSpec | None, given_in_python: bool,
                           near_copies_asked: bool = False) -> TrainingOverlap:
    """Every warning of what ``split`` of ``data`` holds, before it is scored: the run's own
    training and validation samples (by file name, or by content for data saved anew), with
    ``near_copies_asked`` (a per-sample table) near-copies of its training images, another scale,
    another DICOM window, or a part of other data cut as training cut the run's. Returns what of
    the scored samples the run trained on. (Near-copies are looked for only where asked: training
    warned of them, and compare scoring its runs again would repeat it for each.)"""
    seen = seen_in_training(run_dir, data.split(split), kept=bool(meta.get("train_digests")))
    read_from_run_source = _is_run_source(data.info, meta.get("data_info") or {}, meta.get("data_root"))
    own_source = data_spec is not None and read_from_run_source and _reads_the_same_files(data_spec,
                                                                                          meta.get("data_spec"))
    own_split = (data_spec is None and not given_in_python) or (
        own_source and not _split_keys_changed(data_spec, meta.get("data_spec")))
    near = _near_copies_scored(data, split, seen) if own_split and near_copies_asked else None
    _warn_of_scored_split(meta, data, split, data_spec, given_in_python, seen, read_from_run_source, own_source)
    return TrainingOverlap(seen, near)


def _near_copies_scored(data: DataSplits, split: str, seen: list[int] | None) -> dict[int, str] | None:
    """The run's own validation or test images that are near-copies of its training images (as
    training warned, review 52a: eval's table had no way to mark them), by position, with the
    training image's name; None where not looked for (other splits, data not in memory)."""
    scored, training = data.split(split) if split in ("val", "test") else None, data.train
    if not (isinstance(scored, TensorData) and isinstance(training, TensorData) and looked_for(scored.x, training.x)):
        return None
    found = near_copies(scored.x, training.x, skip=set(seen or []))
    if not found:
        return {}
    names, trained = (names_in_messages(data.info, s, len(part)) for s, part in ((split, scored), ("train", training)))
    pairs = first_few([f"'{names[row]}' ~ '{trained[match]}'" for row, match in found])
    warn_user(f"{len(found)} of {len(scored)} scored inputs are near-copies of training images ({pairs}; as "
              "training warned): their figures are not wholly held out; --per-sample marks each (near_copy_of)")
    return {row: trained[match] for row, match in found}


def _warn_of_scored_split(meta, data, split, data_spec, given_in_python, seen, read_from_run_source,
                            own_source) -> None:
    whole_own = data_spec is None and split == "all" and (not given_in_python or read_from_run_source)
    if whole_own:
        _warn_of_whole_own_data({"train": len(data.train), "val": len(data.val), "test": len(data.test)})
    if (given_in_python and not whole_own) or (data_spec is not None and not own_source):
        # the run's own files are traced by name
        _warn_if_trained_on_inputs(seen, len(data.split(split)), sample_names(data.info, split))
    if data_spec is None:
        return
    if own_source and split == "all" and data.info.get("joined_splits"):  # an archive's rows have no names
        _warn_of_whole_own_data(data.info["joined_splits"])
    elif own_source and split != "train":
        _warn_if_trained_on(data.info, meta.get("data_info") or {}, split, _advice_for_own_data(
            split, data_spec, meta.get("data_spec")))
    _warn_if_read_otherwise(data_spec, meta.get("data_spec") or {}, data.info)
    _warn_if_unlike_training(data.split(split), meta, names_in_messages(data.info, split, len(data.split(split))))
    if not own_source:
        _say_part_scored(split, data, len(data.split(split)))


def data_on_the_command_line(meta: dict[str, Any]) -> str:
    """How to give data of the run's task on the command line (for a run trained from Python)."""
    return {"segmentation": "data.kind=folders data.root=FOLDER (images/ and masks/ in it)",
            "detection": "data.kind=coco data.root=FOLDER data.annotations=FILE.json"}.get(
        meta.get("task", "classification"), "data.kind=npz data.root=FILE.npz")


def saved_data_spec(meta: dict[str, Any], say: bool = False) -> DataSpec:
    """The data section a run was trained with, as saved in its run.json. A relative data.root
    not found from the folder the command runs in is taken where training read it (run.json's
    absolute ``data_root``) when that is still there, and with ``say`` said so (the figures are
    of that data, which eval then checks is unchanged)."""
    if not meta.get("data_spec"):
        raise CheckpointError("the run's data was given in Python (DataSplits), not by a data section, so it cannot "
                              "be read again from the run: pass the data (evaluate_run(..., data=splits); on the "
                              f"command line, eval RUN_DIR {data_on_the_command_line(meta)}, or --data DATA.yaml)")
    try:
        spec = DataSpec.model_validate(saved_data_section(meta.get("data_spec") or {}))
    except ValidationError as exc:
        raise CheckpointError(
            f"the run's saved data section does not validate ({format_validation_error(exc, 'data section', DataSpec)}); "
            "it was written by another version: give the data explicitly (eval --data DATA.yaml)"
        ) from None
    absolute = meta.get("data_root")
    if not spec.root or Path(spec.root).is_absolute() or Path(spec.root).exists() or not absolute or \
            not Path(absolute).exists():
        return spec
    if say:
        warn_user(f"data.root '{spec.root}' is not found from this folder (a relative path counts from the folder a "
                  f"command runs in): the run's data is read where training read it, '{absolute}'")
    return spec.model_copy(update={"root": absolute})


def _say_part_scored(split: str, data: DataSplits, scored: int) -> None:
    """Other data given as one set is cut into splits as training cut the run's: a user scoring
    an external set learns that only a part of it is scored, and how to score all of it."""
    if split != "all" and data.info.get("cut_from_one_set"):
        warn_user(f"the data given is cut into train, val and test as training cut the run's: its {split} split "
                  f"holds {scored} of its {len(data.split('all'))} samples; --split all scores every one (for an "
                  "external test set; not for the run's own data moved elsewhere, whose other splits it trained "
                  "on)")


def seen_in_training(run_dir: str | Path, scored: Any, kept: bool = False) -> list[int] | None:
    """The samples of ``scored`` identical to inputs the run trained on (its training images saved
    anew, under another name or in another archive), by position; None where that is not known:
    a run trained from a Dataset keeps no digests (``data/digests.py``), a Dataset is not read
    here, and a damaged record, or one missing where run.json says it was ``kept``, is warned of."""
    path = digests_path(run_dir)
    if not isinstance(scored, TensorData):
        return None
    if not path.is_file():
        if kept:
            warn_user(f"'{path}' is missing (run.json says the run kept it), so the scored inputs are not "
                      "checked against the ones the run trained on; the figures are scored as usual")
        return None
    try:
        seen = read_digests(read_json(path))
    except CheckpointError:
        seen = None
    if seen is None:
        warn_user(f"'{path}' is damaged, so the scored inputs are not checked against the ones the run trained "
                  "on; the figures are scored as usual")
        return None
    return seen_rows(scored.x, seen)


def _warn_if_trained_on_inputs(repeated: list[int] | None, count: int, names: tuple[str, list[str]] | None) -> None:
    """Scored inputs identical to training inputs: their figures are not held out. The first few
    are named by ``names`` (``sample_names.sample_names``: the scored samples' files or rows), else
    by position."""
    if repeated:
        column, each = names if names is not None and len(names[1]) == count else ("sample", None)
        named = [each[i] if column == "file" else f"{column} {each[i] if each else i}" for i in repeated]
        shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
        warn_user(f"{len(repeated)} of {count} scored inputs are identical to inputs the run trained on "
                  f"({shown}; its training images saved anew?): their figures are not held out; score images "
                  "the run has not seen (--per-sample marks each: seen_in_training)")


def _warn_of_whole_own_data(counts: dict[str, int]) -> None:
    """--split all of the run's own data (``counts``: its samples per split) scores its training
    and validation samples too."""
    train, val, test = (counts.get(split, 0) for split in ("train", "val", "test"))
    if train or val:
        warn_user(f"the all split of the run's own data holds its {train} training and {val} validation samples "
                  f"beside its {test} test ones, so these figures are not held out: score its test split instead")


# the folders under a data root that hold its images (beside the root itself)
FOLDER_KEYS = ("images", "masks")


def _reads_the_same_files(spec: DataSpec, saved: dict[str, Any] | None) -> bool:
    """Whether ``spec`` reads the image folders the run's saved data section read (other folders
    under the same root, such as an external set beside the training one, are other data; the
    same folders read as another kind or written another way are not)."""
    now = spec.model_dump(mode="json")
    same = [os.path.normpath(str(now.get(key))) == os.path.normpath(str(saved.get(key, now.get(key))))
            for key in FOLDER_KEYS if now.get(key) is not None] if saved is not None else []
    return all(same)


def _advice_for_own_data(split: str, spec: DataSpec, saved: dict[str, Any] | None) -> str:
    """What to do when the run's own data, read anew, scores images the run trained on."""
    if split == "all":
        return "score its test split instead"
    if saved is None:  # trained from Python: its splits are the ones given to fit
        return "score the splits it was trained with instead (evaluate_run(run, data=splits))"
    differing = _split_keys_changed(spec, saved)
    if differing:
        return f"score the run's own {split} split ({_how_to_split_as_the_run(differing, spec, saved)})"
    return (f"the data has changed since training and its {split} split was cut anew; restore it as it was to score "
            "the run's own split, or score other data")


def _how_to_split_as_the_run(differing: list[str], spec: DataSpec, saved: dict[str, Any]) -> str:
    """How to deal the data as the run did: the keys given that differ dropped, and data.exclude,
    where it lacks the run's patterns (eval RUN data.root=... or --data SECTION.yaml without
    them), given again with the run's list (review 56g: 'drop data.exclude' was said to a user
    who had given none)."""
    from .data.exclusion import EXAMPLE_LIMIT, exclude_example

    others = [key for key in differing if key != "exclude"]
    how = [f"drop {' / '.join(f'data.{key}' for key in others)}"] if others else []
    if "exclude" in differing:
        run = list(saved.get("exclude") or [])
        shown = (exclude_example(run) if len(run) <= EXAMPLE_LIMIT else
                 f"the {len(run)} patterns the run's config.yaml lists, {first_few([repr(p) for p in run])}")
        if "exclude" not in spec.model_fields_set:  # the run's, not carried (data.root given) or not in --data's
            how.append(f"give the run's data.exclude again ({shown}; in a --data section, the same list)")
        elif not run:
            how.append("drop data.exclude")
        else:
            listed = f"[{first_few([repr(p) for p in run], 10)}]"
            how.append(f"drop data.exclude (the run's own, {listed}, then applies; in a --data section, give that "
                       "list)")
    return "; ".join(how) + "; the data as it was in training"


def read_where_training_read(meta: dict[str, Any], root: str) -> bool:
    """Whether data.root, from the folder the command runs in, is the place training read
    (run.json's absolute ``data_root``)."""
    absolute = meta.get("data_root")
    return bool(absolute) and Path(root).resolve() == Path(absolute).resolve()


def where_training_read(meta: dict[str, Any], root: str) -> str:
    """A relative data.root counts from the folder a command runs in: where training found it,
    when something is still there, is likely the place."""
    absolute = meta.get("data_root")
    if not absolute or Path(root).is_absolute() or not Path(absolute).exists():
        return ""
    return f" (training read it at '{absolute}', which is there now)"


def check_unchanged(meta: dict[str, Any], data: DataSplits) -> None:
    """The run's own data read again must split as in training: files added or removed since cut
    other splits, whose test split may hold images the run trained on (runs before split sizes
    were recorded are not checked)."""
    before = meta.get("split_sizes")
    now = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    root = saved_data_spec(meta).root
    elsewhere = root and not read_where_training_read(meta, root) and where_training_read(meta, root)
    digest, digest_now = (meta.get("data_info") or {}).get("sha256"), data.info.get("sha256")
    other_bytes = bool(digest and digest_now and digest != digest_now)
    if elsewhere and ((before and before != now) or other_bytes):  # another file of that name, here
        differs = (f"splits otherwise than the run's (split sizes {now}, {before} in its run.json)"
                   if before and before != now else
                   "is not the archive the run trained on (its SHA-256 differs from run.json's data_info.sha256)")
        raise DataError(f"the data at {root!r}, counted from the folder the command runs in, {differs}{elsewhere}: "
                        "run eval from the folder training ran in, or give the place, peerdistill eval RUN_DIR "
                        "data.root=PATH")
    if other_bytes and before == now:  # warned, not refused: the same arrays saved anew differ in bytes too
        warn_user(f"the run's data at '{root}' is not byte for byte the archive training read (its SHA-256 "
                  "differs from run.json's data_info.sha256): if its arrays changed, its splits hold other images "
                  "than the run's, and its test split may hold images the run trained on; put back the archive "
                  "it was trained on (if it was only saved anew, the figures stand)")
    files = _files_changed(meta, data)
    if ((before and before != now) or files) and _grouped_folds_cut_before(meta, data):
        raise DataError("the run's grouped folds were cut by an earlier version of peerdistill, which took every "
                        "fold's val patients from one order (the same patients were val in every fold but their "
                        "test one, and never trained on); this version draws them per fold, so its splits are not "
                        "the run's. "
                        "Train the run again to score it on its own splits (train --overwrite; a comparison's runs: "
                        "compare --overwrite)")
    if (before and before != now) or files:  # (a file renamed or replaced by another keeps the sizes)
        sizes = f"split sizes {now}, {before} in its run.json" if before and before != now else ""
        raise DataError(f"the run's data{f' at {root!r}' if root else ''} has changed since training "
                        f"({'; '.join(part for part in (sizes, files) if part)}): its splits are no longer the "
                        "run's, and a training image could be scored as a test one. Restore the data the run was "
                        "trained on, or score this data as other data: peerdistill eval RUN_DIR data.root=PATH "
                        "(images the run trained on are then warned of)")


def _grouped_folds_cut_before(meta: dict[str, Any], data: DataSplits) -> bool:
    """A grouped fold's run from before val was drawn per fold (review 50c), read by this
    version, which marks such folds: the same files would split otherwise."""
    return GROUP_FOLD_VAL in data.info and GROUP_FOLD_VAL not in (meta.get("data_info") or {})


def _files_changed(meta: dict[str, Any], data: DataSplits) -> str:
    """Which files were added or removed since training, or fall in another split now, where
    run.json lists every split's: the ones to take out (a folder that keeps growing) or to put
    back. Not said (unknown) where the lists share under half their names: written another way."""
    recorded, listed = (meta.get("data_info") or {}).get("files"), data.info.get("files")
    if not isinstance(recorded, dict) or not isinstance(listed, dict):
        return ""
    split_of = {f: split for split, names in recorded.items() if isinstance(names, list) for f in names}
    split_now = {f: split for split, names in listed.items() for f in names}
    if len(split_of.keys() & split_now.keys()) * 2 < len(split_of):
        return ""
    added, removed = sorted(split_now.keys() - split_of.keys()), sorted(split_of.keys() - split_now.keys())
    moved = sorted(f for f in split_of.keys() & split_now.keys() if split_of[f] != split_now[f])
    said = [f"{len(files)} {what} ({first_few(files, quoted=True)})" for files, what in
            ((added, "added"), (removed, "removed"), (moved, "in another split now")) if files]
    return f"files since training: {', '.join(said)}" if said else ""


def _warn_if_read_otherwise(spec: DataSpec, trained: dict[str, Any], info: dict[str, Any]) -> None:
    """DICOM files read through another window than in training look otherwise to the models
    (predict keeps the run's window; a data section given to eval sets its own)."""
    window, now = trained.get("dicom_window"), spec.dicom_window
    if window and (now is None or list(now) != list(window)) and info.get("dicom_files", 1):
        through = f"data.dicom_window {list(now)}" if now else "each file's own window"
        warn_user(f"the run was trained on DICOM images through data.dicom_window {list(window)}; these are read "
                  f"through {through}, so the models see them otherwise than in training: set "
                  f"data.dicom_window={list(window)} to score them as trained")


def _warn_if_unlike_training(scored: Any, meta: dict[str, Any], names: list[str]) -> None:
    """Other data is scored as given, but not in silence when it is unlike the run's: grey images
    (read as colour) for a run of colour ones, as predict warns; or values that, standardised by
    the run's statistics, come out far from mean 0 and std 1, as the run's own did: another scale
    (16-bit or 0-255 float arrays beside 8-bit training images, another normalisation), on which
    the figures mean nothing. A run trained from a Dataset has no statistics of its own: the
    data is compared with what its models saw (``input_stats``)."""
    if not isinstance(scored, TensorData) or scored.x.ndim != 4 or not len(scored.x):
        return
    if not meta.get("data_stats"):
        seen = meta.get("input_stats")
        if not seen or len(seen["mean"]) != scored.x.shape[1]:  # (a run without them: nothing to compare)
            return
        mean, std = scored.x.mean(dim=(0, 2, 3)).tolist(), scored.x.std(dim=(0, 2, 3)).tolist()
        if unlike_seen(mean, std, seen):
            warn_user(f"the scored images have mean / std {per_channel(mean, std)} per channel as read and given "
                      f"to the models, which saw {per_channel(seen['mean'], seen['std'])} in training (its first "
                      "validation batch, as the Dataset it was trained from prepared it): a run trained from a "
                      "Dataset keeps no normalisation to apply, so score them through a Dataset that prepares "
                      "them as in training (evaluate_run(..., data=DataSplits(...)))")
        return
    trained = meta.get("data_info") or {}
    # (a share of grey training images, recorded since it was, says the run learnt from some too)
    if trained.get("grey_read_as_colour") is False and not trained.get("grey_share") and \
            grey_read_as_colour(scored, meta["data_stats"]):
        warn_user("the scored images are grey (read as colour, one channel repeated) but the run learnt from colour "
                  "images: the models see them otherwise than in training; check they are the kind of image it "
                  "learnt from")
    figures = ImageFigures()
    for part in unstandardised_chunks(scored, meta["data_stats"]):  # a chunk at a time: no copy of the split
        figures.add(part)
    named = warn_of_images_unlike_training(figures, names, "scored images", meta["data_stats"], trained,
                                           "Store them as the run's data was stored")
    # the others taken together (the run's own data standardised: about 0 / 1): a set shifted a few
    # standard deviations lies within the rules image by image
    images = "the scored images" if not named.any() else f"the other {int((~named).sum())} scored images"
    warn_if_set_on_another_scale(figures, ~named, meta["data_stats"], images)


def warn_if_set_on_another_scale(figures: ImageFigures, chosen: np.ndarray, stats: dict[str, list[float]],
                                 images: str, advice: str = "store them as the run's data was stored") -> None:
    """Warn when the ``chosen`` images taken together (``images``, as the message names them),
    standardised by the run's training ``stats``, lie far from mean 0 and std 1, as the run's
    own data does: a set shifted a few standard deviations lies within the rules image by image.
    What eval asks of scored data and predict of the images of its .npz inputs."""
    spread = figures.set_spread(chosen)
    if spread is None:
        return
    train_mean, train_std = (np.asarray(stats[key], np.float64) for key in ("mean", "std"))
    mean, std = (spread[0] - train_mean) / train_std, spread[1] / train_std  # standardised, as the models see them
    if bool(off_scale(torch.from_numpy(mean), torch.from_numpy(std), 0.0, 1.0).any()):
        shown = ", ".join(f"{m:.2f} / {s:.2f}" for m, s in zip(mean.tolist(), std.tolist()))
        warn_user(f"{images}, standardised by the run's training statistics, have mean / std {shown} "
                  "per channel, where the run's own data has about 0 / 1: they are on another scale (16-bit or "
                  "0-255 float arrays beside 8-bit images, other bit depths, another normalisation), so the "
                  f"models see them otherwise than in training; {advice}")


def _warn_if_trained_on(scored: dict[str, Any], trained: dict[str, Any], split: str, how: str) -> None:
    """The run's own data (``scored``: its info now; ``trained``: as training read it) read so
    that images the models trained on are scored: dealt anew (another data.split_seed,
    data.folds or fraction), changed since (files added cut other splits), or scored whole
    (``split`` all): its figures are then no held-out test; ``how`` to score held-out data."""
    names, seen = sample_names(scored, split), sample_names(trained, "train")
    if not names or not seen or names[0] != seen[0]:
        return
    # a name in the run's own held-out splits is not counted: given split folders may number
    # their images alike (train/images/0.png, test/images/0.png)
    held_out = set()
    for part in (("val", "test") if split == "all" else (split,)):
        own = sample_names(trained, part)
        held_out |= set(own[1]) if own and own[0] == names[0] else set()
    overlap = len((set(names[1]) & set(seen[1])) - held_out)
    if not overlap:
        return
    warn_user(f"{overlap} of {len(names[1])} samples of the scored {split} split are training samples of the run "
              f"(its own data, '{scored['source']}'), so these figures are not held out: {how}")


def _is_run_source(scored: dict[str, Any], trained: dict[str, Any], trained_root: str | None) -> bool:
    """Whether the data read (its ``info``) is the data the run trained on (``data_info``): the
    same file or folder, an archive with the same content (a copy, by its sha256), or a folder
    holding the very files the run's splits held, by their names within it (a copy elsewhere)."""
    if scored.get("sha256") and scored.get("sha256") == trained.get("sha256"):
        return True
    files = _every_file(scored)
    if len(files) > 1 and files == _every_file(trained):
        return True
    return bool(scored.get("source")) and _same_source(str(scored["source"]),
                                                       str(trained_root or trained.get("source")))


def _every_file(info: dict[str, Any]) -> frozenset[str]:
    """The names, within its folder, of every file the data's splits hold together."""
    files = info.get("files")
    if not isinstance(files, dict):
        return frozenset()
    return frozenset(str(name) for part in files.values() if isinstance(part, list) for name in part)


def _split_keys_changed(spec: DataSpec, saved: dict[str, Any] | None) -> list[str]:
    """The settings by which ``spec`` deals its data into splits otherwise than the run's saved
    section did (a seed, folds, fractions, data.exclude)."""
    now, saved = spec.model_dump(mode="json"), dict(saved or {})
    if isinstance(saved.get("exclude"), list):  # (a set: a run saved before the list was sorted, review 56g)
        saved["exclude"] = sorted(saved["exclude"], key=str)
    return [key for key in SPLIT_KEYS if now.get(key) != saved.get(key, now.get(key))]


def _same_source(a: str, b: str) -> bool:
    if a == b:
        return True
    try:  # the same file or folder named another way
        return Path(a).exists() and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False
