"""The inputs of ``peerdistill predict``: image files, folders and .npz archives, read as
training read its images, with each input's own size and a name for its mask."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .data.image_io import IMAGE_SUFFIXES, image_files, image_size, read_image
from .data.sources import check_npz
from .data.splits import to_nchw
from .errors import DataError


class Inputs(NamedTuple):
    names: list[str]  # as written in the CSV: the file path, or ARCHIVE.npz[i]
    stems: list[str]  # what a mask is named after: the file's stem, or ARCHIVE_i
    images: list[np.ndarray]  # [H, W, C] float32 each; sizes may differ (segmentation without image_size)
    sizes: list[tuple[int, int]]  # each input's own (height, width)


def read_inputs(inputs: list[str], channels: int, size: tuple[int, int] | None) -> Inputs:
    """Image files, folders of images, or .npz files (key ``images`` or ``test_images``), read
    as training reads them (files in [0, 1]; .npz arrays as an npz dataset's: uint8 divided by
    255, other types kept), resized to ``size`` when given."""
    names, stems, arrays, sizes = [], [], [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = image_files(path)
            if not files:
                raise DataError(f"'{path}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) directly inside: "
                                "predict reads the images in a folder, not in its subfolders (give those)")
        elif path.suffix == ".npz":
            for i, a in enumerate(_npz_images(path)):
                names.append(f"{path.name}[{i}]")
                stems.append(f"{path.stem}_{i}")
                sizes.append(a.shape[:2])
                arrays.append(_resized(a, size) if size is not None and a.shape[:2] != tuple(size) else a)
            continue
        elif path.is_file():
            files = [path]
        else:
            raise DataError(f"input '{path}' does not exist")
        for f in files:
            names.append(str(f))
            stems.append(f.stem)
            sizes.append(image_size(f))
            arrays.append(read_image(f, size, grey=channels == 1))
    return Inputs(names, stems, arrays, sizes)


def _npz_images(path: Path) -> np.ndarray:
    """[N, H, W, C] float32, scaled and laid out as an npz dataset's images are in training."""
    if not path.is_file():
        raise DataError(f"input '{path}' does not exist")
    check_npz(path)
    with np.load(path, allow_pickle=False) as archive:
        key = next((k for k in ("images", "test_images") if k in archive.files), None)
        if key is None:
            raise DataError(f"'{path}' has no 'images' or 'test_images' array")
        batch = archive[key]
    if batch.ndim not in (3, 4):
        raise DataError(f"'{path}' holds images of shape {batch.shape}; expected [N, H, W], [N, H, W, C] or [N, C, H, W]")
    return to_nchw(batch, str(path)).permute(0, 2, 3, 1).numpy()


def _resized(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Each channel resized with Pillow's bilinear filter, as ``read_image`` resizes files."""
    from PIL import Image

    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c], dtype=np.float32)).resize(
        (size[1], size[0]), Image.BILINEAR)) for c in range(a.shape[-1])]
    return np.stack(planes, axis=-1).astype(np.float32)
