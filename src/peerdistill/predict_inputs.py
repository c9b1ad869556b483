"""The inputs of ``peerdistill predict``: image files, folders and .npz archives, read as
training read its images, with each input's own size and a name for its mask."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .data.each_file import failures_error
from .data.image_io import (LOOKED_FOR, dead_link_problem, image_files, image_id, read_image, resized_planes,
                            size_and_colour, subfolders_with_images)
from .data.image_profile import GREY_TOLERANCE
from .data.sources import NPZ_READ_ERRORS, check_npz
from .data.splits import to_nchw
from .errors import DataError, PeerdistillWarning, warn_user
from .option_names import option
from .values import is_finite_number
from .wording import first_few


class Inputs(NamedTuple):
    names: list[str]  # as written in the CSV: the file path, or PATH/ARCHIVE.npz[i]
    stems: list[str]  # what a mask is named after: the file's stem, or ARCHIVE_i
    images: list[np.ndarray]  # [H, W, C] float32 each; sizes may differ (segmentation without image_size)
    sizes: list[tuple[int, int]]  # each input's own (height, width)
    originals: list[np.ndarray] | None = None  # with keep_originals: each input as read, at its own size
    unreadable: tuple[tuple[str, str], ...] = ()  # with skip_unreadable: (name, why) of each input left out
    from_arrays: tuple[bool, ...] = ()  # whether each input is an .npz's array (kept on its own scale), not a file


def read_inputs(inputs: list[str], channels: int, size: tuple[int, int] | None,
                keep_originals: bool = False, dicom_window=None, trained_on_converted: bool = False,
                trained_resized: bool = False, skip_unreadable: bool = False,
                trained_aspects: list[float] | None = None) -> Inputs:
    """Image files, folders of images, or .npz files (key ``images`` or ``test_images``), read
    as training reads them (files in [0, 1]; .npz arrays as an npz dataset's: uint8 divided by
    255, other types kept), resized to ``size`` when given; with ``keep_originals`` also as
    they are (``Inputs.originals``). ``trained_on_converted``: the model learnt from files
    converted as such inputs are (grey files read as colour for a colour model, colour files read
    grey for a grey one), so those are no news; ``trained_resized``: it learnt from files
    resized to ``size`` (``data.image_size``), so resized inputs are no news either, but for
    those squeezed otherwise than any training file was (``trained_aspects``: the narrowest and
    widest width / height of its files).
    An image file that cannot be read stops it, after every input was tried (all are named), unless
    ``skip_unreadable`` leaves it out and lists it in ``Inputs.unreadable``."""
    read: list[_Read] = []
    unreadable: list[tuple[str, DataError]] = []
    seen, repeated = set(), []  # a file named twice (alone and in its folder, say) is predicted once
    for item in inputs:
        path = Path(item)
        if _place(path) in seen:
            repeated.append(str(path))
            continue
        if path.is_dir():
            seen.add(_place(path))
            dead: list[Path] = []
            files = image_files(path, dead_links=dead)
            # links named as images that lead to no file: inputs that cannot be read, named with the others
            # (or left out with skip_unreadable), not a stop of their own
            for link in dead:
                seen.add(_place(link))
                unreadable.append((str(link), DataError(f"input {dead_link_problem(link)}")))
            if not files and not dead:
                raise DataError(f"'{path}' holds no images ({LOOKED_FOR}) directly inside: "
                                "predict reads the images in a folder, not in its subfolders (give those)")
            _warn_of_images_in_subfolders(path)
        elif path.is_symlink() and not path.exists():  # a link to what does not exist, or in a loop
            seen.add(_place(path))
            unreadable.append((str(path), DataError(f"input {dead_link_problem(path)}")))
            continue
        elif path.suffix.lower() == ".npz":  # (any case, as image suffixes)
            seen.add(_place(path))
            try:
                read += _read_npz(path, size, keep_originals)
            except DataError as exc:  # damaged, or holding no images: one input that cannot be read
                unreadable.append((str(path), exc))
            continue
        elif path.is_file():
            files = [path]
        else:
            raise DataError(f"input '{path}' does not exist")
        for f in files:
            if _place(f) in seen:
                repeated.append(str(f))
                continue
            seen.add(_place(f))
            try:
                read.append(_read_file(f, channels, size, keep_originals, dicom_window, trained_on_converted))
            except DataError as exc:  # damaged, or a format not read: every input is tried before stopping
                unreadable.append((str(f), exc))
    names = [r.name for r in read]
    _check_unreadable(unreadable, len(names), skip_unreadable)
    if repeated:
        warn_user(PeerdistillWarning(f"{len(repeated)} input{'s were' if len(repeated) > 1 else ' was'} named "
                                     f"more than once (e.g. '{repeated[0]}'): each is predicted once"))
    sizes = [r.size for r in read]
    _say_what_changed(names, sizes, [r.name for r in read if r.converted], channels,
                      None if trained_resized else size)
    if trained_resized and size is not None:
        _say_if_squeezed_otherwise(names, sizes, size, trained_aspects)
    return Inputs(names, [r.stem for r in read], [r.image for r in read], sizes,
                  [r.original for r in read] if keep_originals else None,
                  tuple((name, str(exc)) for name, exc in unreadable), tuple(r.from_array for r in read))


class _Read(NamedTuple):
    """One input as read: its name and stem (as Inputs has them), the image the model gets, its
    own size, the image as it was (with keep_originals), whether its colour was converted, and
    whether it is an .npz's array."""
    name: str
    stem: str
    image: np.ndarray
    size: tuple[int, int]
    original: np.ndarray | None
    converted: bool = False
    from_array: bool = False


def _read_npz(path: Path, size: tuple[int, int] | None, keep_originals: bool) -> list[_Read]:
    """Each image of an .npz archive, named by its place in it."""
    return [_Read(f"{path}[{i}]", f"{path.stem}_{i}",  # the path as given, as files are named
                  resized_planes(a, size) if size is not None and a.shape[:2] != tuple(size) else a,
                  a.shape[:2], a if keep_originals else None, from_array=True)
            for i, a in enumerate(_npz_images(path))]


def _read_file(f: Path, channels: int, size: tuple[int, int] | None, keep_originals: bool, dicom_window,
               trained_on_converted: bool) -> _Read:
    """An image file as training reads it, resized to ``size`` where given."""
    (height, width), colour = size_and_colour(f)
    # a grey picture stored as RGB is no colour image: told by its pixels (a second decode, of
    # colour-mode files given to a grey model alone)
    if colour and channels == 1:
        colour = _holds_colour(read_image(f, grey=False, dicom_window=dicom_window))
    read = functools.partial(read_image, f, grey=channels == 1, dicom_window=dicom_window)
    array = read(size)
    resized = size is not None and tuple(size) != (height, width)
    original = (read() if resized else array) if keep_originals else None
    converted = colour != (channels == 3) and not trained_on_converted
    return _Read(str(f), image_id(f), array, (height, width), original, converted)


def _check_unreadable(unreadable: list[tuple[str, DataError]], read: int, skip_unreadable: bool) -> None:
    """Inputs that cannot be read stop predict, all named at once, unless ``skip_unreadable``
    leaves them out (and there are others to predict)."""
    if not unreadable or (skip_unreadable and read):
        return
    total = len(unreadable) + read
    advice = (f"\n{option('--skip-unreadable')} predicts the other {read} and lists these in a CSV beside the "
              "predictions" if read else "")
    raise failures_error([exc for _, exc in unreadable], total, "inputs", advice)


def _holds_colour(image: np.ndarray) -> bool:
    """Whether an image read as colour [H, W, 3] has channels that differ (not grey stored as RGB)."""
    return bool(np.abs(image[..., 0] - image[..., 1]).max() > GREY_TOLERANCE or
                np.abs(image[..., 1] - image[..., 2]).max() > GREY_TOLERANCE)


def _place(path: Path) -> str:
    """Where an input is, as named: its absolute path without following links (a link to an
    image is an input of its own, with its own row)."""
    return os.path.abspath(path)


def _say_what_changed(names: list[str], sizes: list[tuple[int, int]], converted: list[str], channels: int,
                      size: tuple[int, int] | None) -> None:
    """Inputs unlike the training images are still predicted (a model cannot refuse them), but
    not in silence: colour read as grey or grey as colour, and another size resized."""
    if converted:
        how = ("colour images read as grey, for a model that learnt from grey ones" if channels == 1 else
               "grey images read as colour (one channel repeated), for a model that learnt from colour ones only")
        warn_user(f"{len(converted)} of {len(names)} inputs are {how} (e.g. '{converted[0]}'): check they are "
                  "the kind of image it learnt from")
    other = [(n, s) for n, s in zip(names, sizes) if size is not None and tuple(s) != tuple(size)]
    if other:
        name, (h, w) = other[0]
        warn_user(f"{len(other)} of {len(names)} inputs differ in size from the model's {size[0]}x{size[1]} "
                  f"(height x width) input and were resized to it (e.g. '{name}', {h}x{w}): check they are the kind "
                  "of image it learnt from")


# How far (as a factor) an input's width to height may lie outside the training files' before its
# squeeze to the model's input is said (review 52a: a 16:9 frame for a model of square ones).
ASPECT_SLACK = 1.1


def _say_if_squeezed_otherwise(names: list[str], sizes: list[tuple[int, int]], size: tuple[int, int],
                               trained_aspects: list[float] | None) -> None:
    """Inputs resized to the model's input as training resized its files, but of a shape no
    training file had: squeezed or stretched in a way the model never saw."""
    if not (isinstance(trained_aspects, list) and len(trained_aspects) == 2
            and all(is_finite_number(a) and a > 0 for a in trained_aspects)):
        return  # (a run of an earlier version, or data not read from files)
    narrowest, widest = trained_aspects
    other = [(n, (h, w)) for n, (h, w) in zip(names, sizes) if (h, w) != tuple(size) and
             not narrowest / ASPECT_SLACK <= w / h <= widest * ASPECT_SLACK]
    if other:
        name, (h, w) = other[0]
        shapes = f"{narrowest:.2f}" if narrowest == widest else f"{narrowest:.2f} to {widest:.2f}"
        # (sizes as the config's image_size gives them, height first, and said so: review 55i read 529x619 as
        # a width of 529 beside its width to height of 1.17)
        warn_user(f"{len(other)} of {len(names)} inputs are of another shape than every training file (e.g. "
                  f"'{name}', {h}x{w} (height x width): width to height {w / h:.2f}, the training files' {shapes}): "
                  "each was "
                  f"squeezed to the model's {size[0]}x{size[1]} input otherwise than any training image was: if the "
                  "training files were cut from such frames, cut these alike; if they were such frames resized "
                  "whole (Kvasir-SEG's 256x256 copy is), this squeeze is the one training made, and the inputs can "
                  "stay as they are")
        # (review 55r: cropping as told, where the training files were squeezed whole, lowered Dice 0.50 to 0.43)


def _npz_images(path: Path) -> np.ndarray:
    """[N, H, W, C] float32, scaled and laid out as an npz dataset's images are in training."""
    if not path.is_file():
        raise DataError(f"input '{path}' does not exist")
    check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            key = next((k for k in ("images", "test_images") if k in archive.files), None)
            if key is None:
                held = sorted(archive.files)
                raise DataError(f"'{path}' has no 'images' or 'test_images' array (it holds {held[:8]}"
                                f"{' ...' if len(held) > 8 else ''}): save the images to predict under one of those names")
            batch = archive[key]
    except NPZ_READ_ERRORS as exc:
        raise DataError(f"cannot read '{path}' as a .npz archive of images: {exc}") from None
    if batch.ndim not in (3, 4):
        raise DataError(f"'{path}' holds images of shape {batch.shape}; expected [N, H, W], [N, H, W, C] or [N, C, H, W]")
    if len(batch) == 0:
        raise DataError(f"'{path}' holds no images (its '{key}' array is empty)")
    return to_nchw(batch, str(path)).permute(0, 2, 3, 1).numpy()


def _warn_of_images_in_subfolders(folder: Path) -> None:
    """A folder's images are read, not its subfolders': said, not left out unseen."""
    holding = [sub.name for sub, _ in subfolders_with_images(folder)]
    if holding:
        warn_user(f"subfolder(s) of '{folder}' hold images that are not read ({first_few(holding)}): predict reads "
                  "the images directly in a folder; give the subfolders as inputs too")
