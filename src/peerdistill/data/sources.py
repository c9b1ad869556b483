"""Datasets named in a config: the embedded digits default and MedMNIST-style .npz files."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from ..config import NO_FOLD_KINDS, DataSpec
from ..errors import ConfigError, DataError, DataNote, DataPlaceError, reworded, warn_user
from .digests import file_sha256
from ..npz_layout import NPZ_KEYS, NPZ_READ_ERRORS, npz_holds_one_set, one_set
from .dicom import SATURATED, counting_dicom_reads, unlike_windows
from .exclusion import tracking
from .image_io import GREY_FILES_SAID, noting_reads, warn_of_grey_among_colour
from .image_profile import COLOUR_READ_GREY, FILE_ASPECTS
from .splits import DataSplits, check_names_fit_labels, is_kept_whole, refuse_folds, to_labels


def _whole_npz(archive, path: Path, names: list[str] | None, names_from: str, stats) -> DataSplits:
    """Every split the archive holds ({train,val,test}_{images,labels}), or bare ``images`` and
    ``labels``, as one set to score (eval --split all): an external test set needs no train split."""
    pairs = [(f"{split}_images", f"{split}_labels") for split in ("train", "val", "test")] + [("images", "labels")]
    present = [(x, y) for x, y in pairs if x in archive.files and y in archive.files]
    if not present:
        raise DataError(f"'{path}' holds no labelled images: expected {list(NPZ_KEYS)}, some of those pairs, or "
                        "'images' and 'labels'")
    try:
        x = np.concatenate([archive[k] for k, _ in present])
        y = np.concatenate([to_labels(archive[k], k).numpy() for _, k in present])  # each checked, [N, 1] too
    except ValueError as exc:  # splits of different image sizes
        raise DataError(f"the splits of '{path}' cannot be joined into one set: {exc}") from None
    if not len(y):
        raise DataError(f"'{path}' holds no images to score")
    whole = DataSplits.whole(x, y, class_names=names or [str(c) for c in range(int(y.max()) + 1)],
                             class_names_from=names_from, stats=stats)
    # how many of each split were joined: an archive's rows have no names, and eval warns by
    # these counts when the run's own archive is scored whole
    whole.info["joined_splits"] = {x_key.removesuffix("_images"): len(archive[y_key]) for x_key, y_key in present}
    return whole


def load_digits_splits(spec: DataSpec, stats=None) -> DataSplits:
    """scikit-learn's digits: 1,797 real 8x8 handwritten digits (0..16 grey levels), split
    stratified into train/val/test by ``split_seed``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    splits = DataSplits.stratified(
        x, digits.target, val_fraction=spec.val_fraction, test_fraction=spec.test_fraction,
        seed=spec.split_seed, folds=spec.folds, fold=spec.fold, class_names=[str(c) for c in digits.target_names],
        stats=stats,
    )
    splits.info["source"] = "sklearn.datasets.load_digits"
    return splits


def check_npz(path: Path) -> None:
    """np.load reads anything that is not a zip as a pickle and says so; name the real problem."""
    with open(path, "rb"):  # an unreadable file is that (is_zipfile would call it "not a zip")
        pass
    if not zipfile.is_zipfile(path):
        raise DataError(f"'{path}' is not a .npz archive (a zip of arrays, as numpy.savez writes): "
                        "point at the .npz file")


def load_npz_splits(spec: DataSpec, stats=None) -> DataSplits:
    """A MedMNIST-style archive with keys ``{train,val,test}_{images,labels}``; splits as given.
    A fault in its arrays is said with the file (review 51l: "train inputs contain NaN" read as
    the run's own training data when eval scored another archive)."""
    try:
        return _load_npz_splits(spec, stats)
    except DataError as exc:
        if spec.root and not any(form in str(exc) for form in (str(spec.root), str(Path(spec.root)))):
            raise reworded(exc, f"'{spec.root}': {exc}") from None
        raise


def _load_npz_splits(spec: DataSpec, stats=None) -> DataSplits:
    path = Path(spec.root or "")
    if path.is_dir():
        raise DataError(f"data.root '{path}' is a folder, but data kind 'npz' reads one .npz file: point at the file, "
                        "or set the kind of the folder (data.kind=image_folder for class folders; docs/data.md)")
    if not path.is_file():
        raise DataPlaceError(f"data file '{path}' does not exist", "set data.root to a .npz file (a relative path "
                             "counts from the folder the command runs in)")
    check_npz(path)
    digest = file_sha256(path)  # the archive's own fingerprint: eval knows the run's data in a copy of it
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = [str(n) for n in archive["class_names"]] if "class_names" in archive.files else None
            if names:
                names_from = f"the class_names array of '{path}'"
            elif is_kept_whole():  # scored by eval, whose data section is the run's unless given
                names_from = f"data.class_names (for '{path}': eval takes the run's unless given)"
            else:
                names_from = "data.class_names"
            if is_kept_whole():
                splits = _whole_npz(archive, path, names or spec.class_names, names_from, stats)
                splits.info.update(source=str(path), sha256=digest)
                return splits
            if one_set(archive.files):  # images and labels alone: cut as digits are
                splits = DataSplits.stratified(
                    archive["images"], archive["labels"], val_fraction=spec.val_fraction,
                    test_fraction=spec.test_fraction, seed=spec.split_seed, folds=spec.folds, fold=spec.fold,
                    class_names=names or spec.class_names, class_names_from=names_from, stats=stats)
                splits.info.update(source=str(path), sha256=digest)
                return splits
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                held = sorted(archive.files)
                raise DataError(f"'{path}' lacks the keys {missing} (it holds {held[:8]}{' ...' if len(held) > 8 else ''}): "
                                f"data kind 'npz' reads a MedMNIST-style archive of the three splits, "
                                f"{', '.join(NPZ_KEYS)}, or one set of 'images' and 'labels' to cut (docs/data.md); "
                                "an archive of some splits is scored as one set by eval RUN --split all")
            refuse_folds(spec.folds, f"'{path}' (its train, val and test arrays)")
            arrays = {k: archive[k] for k in NPZ_KEYS}
    except NPZ_READ_ERRORS as exc:
        raise DataError(f"cannot read '{path}' as a .npz archive: {exc}") from None
    splits = DataSplits.from_arrays(*(arrays[k] for k in NPZ_KEYS), class_names=names or spec.class_names,
                                    class_names_from=names_from, stats=stats)
    splits.info.update(source=str(path), sha256=digest)
    return splits


def build_data(spec: DataSpec, stats=None) -> DataSplits:
    """The splits ``spec`` names, standardised by ``stats`` (a saved run's), else by the
    statistics ``data.normalize`` sets, else by the training split's."""
    from .image_files import load_csv, load_image_folder
    from .segmentation import load_folders, load_shapes

    stats = stats or spec.fixed_stats()

    if spec.task == "detection":
        from .detection_sources import load_detection as load
    else:
        load = {"digits": load_digits_splits, "npz": load_npz_splits, "image_folder": load_image_folder,
                "csv": load_csv, "shapes": load_shapes, "folders": load_folders}[spec.kind]
    with counting_dicom_reads() as dicom, noting_reads() as files, tracking(spec) as exclusion:
        data = load(spec, stats=stats)
    if exclusion is not None:  # (every pattern must have left a file out: a typo keeps none in silence)
        exclusion.check(str(spec.root))
        data.info["excluded"] = exclusion.record()
        warn_user(exclusion.summary(str(spec.root)), DataNote)
    if warn_of_grey_among_colour(files, Path(spec.root or "")):  # (the trainer's check of a mixed training
        data.info[GREY_FILES_SAID] = True                            # split then says no more)
    data.info["dicom_files"] = dicom.files()  # (the run records it; eval compares windows where it is not 0)
    if spec.grey and (share := files.colour_share()) is not None:  # (predict: colour inputs no news, or news)
        data.info[COLOUR_READ_GREY] = share
    if files.aspects() is not None:  # (predict: an input squeezed as no training file was)
        data.info[FILE_ASPECTS] = files.aspects()
    if spec.dicom_window is not None and not dicom.files():
        warn_user(f"data.dicom_window is set but the data at '{spec.root}' holds no DICOM file, so it windows "
                  "nothing: drop it (other images are read on their own scale)")
    elif spec.dicom_window is None and len(dicom.ways_scaled()) > 1:
        ways = ", ".join(f"{n} by {way}" for way, n in sorted(dicom.ways_scaled().items(), key=lambda w: (-w[1], w[0])))
        warn_user(f"the DICOM images at '{spec.root}' are put on [0, 1] in different ways ({ways}), so the same "
                  "tissue has different values in them: set data.dicom_window=[CENTER, WIDTH] to read every one "
                  "through one window")
    elif spec.dicom_window is None and (unlike := unlike_windows(dicom.own_windows())):
        windows = dicom.own_windows()
        usual = max(windows, key=windows.get)
        others = sum(windows[w] for w in unlike)
        warn_user(f"the DICOM images at '{spec.root}' are read through their own windows, and {others} of them "
                  f"through windows unlike the {windows[usual]} images' [{usual[0]:g}, {usual[1]:g}] (e.g. "
                  f"[{unlike[0][0]:g}, {unlike[0][1]:g}]: another preset, a lung window beside a soft-tissue one?), "
                  "so the same tissue has different values in them: set data.dicom_window=[CENTER, WIDTH] to read "
                  "every one through one window")
    elif spec.dicom_window is not None and (dicom.share_at_ends() > SATURATED or _many_lost(*dicom.images_at_ends())):
        lost, read = dicom.images_at_ends()
        warn_user(f"data.dicom_window {list(spec.dicom_window)} puts {dicom.share_at_ends():.0%} of the pixels "
                  f"of the DICOM images read at black or white, and over {SATURATED:.0%} of the pixels of {lost} of "
                  f"the {read} images, so the models see little of them: is the window [center, width] in the "
                  "files' values after their rescale (CT: Hounsfield units), and are the files of one kind?")
    return data


# Of the images read through a window, the share it may put almost wholly at black or white before
# it is said (a few slices outside the body are; a quarter of the set is another kind of file).
SATURATED_IMAGES = 0.25


def _many_lost(lost: int, read: int) -> bool:
    """Whether a window put ``SATURATED_IMAGES`` or more of the ``read`` images almost wholly at
    black or white (``lost`` of them)."""
    return lost > 0 and lost >= SATURATED_IMAGES * read


def check_trainable(spec: DataSpec, data: DataSplits) -> None:
    """Data a classifier can learn from: two classes at least (an external set of one class can
    still be scored)."""
    if spec.task == "classification" and data.num_classes < 2:
        names = ", ".join(f"'{n}'" for n in (data.class_names or [])) or "one label"
        raise DataError(f"the data at '{spec.root}' holds one class ({names}): a classifier needs at least two "
                        "(for image folders, one folder per class)")


def check_new_run_data(spec: DataSpec, data: DataSplits) -> None:
    """What a new run's data must also be (a run resumed trains as it began, and eval may score
    data that lacks a class): a name for each class the labels hold and no more (a name too many
    would be a class the models never see, its AUC undefined on every split), and patches no
    larger than the training images (a larger one crops nothing, yet the sliding window of
    validation, test and eval pads every image to it: a typo, 640 for 64, would cost a hundred
    times the compute, unsaid)."""
    check_names_fit_labels(data)
    _refuse_split_keys_unused(spec, data)
    if spec.patch_size is None or len(data.input_shape) != 3:
        return
    h, w = data.input_shape[1:]
    if spec.patch_size > min(h, w):
        raise ConfigError(f"data.patch_size={spec.patch_size} is larger than the training images ({h}x{w}): the "
                          f"sliding window of validation and eval would pad every image to {spec.patch_size}x"
                          f"{spec.patch_size}; give at most {min(h, w)}, or drop data.patch_size to train on whole "
                          "images")


def _refuse_split_keys_unused(spec: DataSpec, data: DataSplits) -> None:
    """Split keys a new run's data would not read: an npz archive of its own train, val and test
    arrays is not cut again, and shapes and boxes are generated split by split, as many as their
    counts say; set, they would change nothing, and a comparison over them would compare one
    split with itself. (Refused for new runs only: eval carries a run's keys onto other data.)"""
    fields = type(spec).model_fields
    own_splits = spec.kind == "npz" and not data.info.get("cut_from_one_set")
    keys = (("split_seed", "val_fraction", "test_fraction") if own_splits
            else ("val_fraction", "test_fraction") if spec.kind in NO_FOLD_KINDS else ())
    given = [f"data.{k}" for k in keys if getattr(spec, k) != fields[k].get_default()]
    if not given:
        return
    cut, them = ("cut", "them") if len(given) > 1 else ("cuts", "it")
    if spec.kind == "npz":
        raise ConfigError(f"{', '.join(given)} {cut} one set into splits, but '{spec.root}' gives its own train, val "
                          f"and test arrays, which are used as they are: remove {them} (to cut the images another way, "
                          "save them as one set, np.savez(FILE, images=..., labels=...), which data.split_seed, "
                          "data.val_fraction, data.test_fraction and data.folds cut)")
    raise ConfigError(f"{', '.join(given)} {cut} one set into splits, but data kind '{spec.kind}' generates each split "
                      f"apart, as many images as data.{spec.kind}_counts says: remove {them}")


def given_test_split(spec: DataSpec) -> str | None:
    """Where the data of ``spec`` gives its own test split (its loader then refuses
    ``data.folds``), found from its layout without reading any image: what lets ``compare --folds``
    refuse such data before a run trains."""
    root = Path(spec.root or "")
    if spec.kind in NO_FOLD_KINDS:
        return f"data kind '{spec.kind}' (it generates its splits apart)"
    if spec.kind == "npz":
        return None if npz_holds_one_set(root) in (True, None) else f"'{root}' (its train, val and test arrays)"
    if spec.split_dirs:
        return f"'{root}' (its split folders, data.split_dirs)"
    if spec.kind == "image_folder" and (root / "train").is_dir() and (root / "test").is_dir():
        return f"'{root}' (its train/ and test/ folders)"
    if spec.kind == "folders" and all((root / s).is_dir() for s in ("train", "test")) and (
            (root / "val").is_dir() or not (root / spec.images).is_dir()):
        return f"'{root}' (its train/{', val/' if (root / 'val').is_dir() else ''} and test/ folders)"
    if spec.kind == "csv" and root.is_file():
        with root.open(newline="", encoding="utf-8-sig") as fh:
            header = fh.readline()
        delimiter = "\t" if header.count("\t") > header.count(",") else ","
        if "split" in next(csv.reader([header], delimiter=delimiter), []):
            return f"'{root}' (its split column)"
    return None
