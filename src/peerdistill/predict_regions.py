"""predict --roi: each input's region of interest (DRIVE's field of view), paired with it by name
as training paired its region masks (the run's data.pattern, else the file name less its
suffix); outside it the masks written are background, as evaluation counts no pixel there."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np

from .data.image_io import image_files, read_mask
from .data.image_profile import REGION_SHARES
from .data.segmentation import file_key
from .errors import ConfigError, DataError, warn_user
from .option_names import option
from .predict_inputs import Inputs
from .values import is_finite_number
from .wording import first_few


def region_masks(read: Inputs, folder: Path, info: dict) -> list[np.ndarray]:
    """Per input, its region (True inside) at the input's own size; an input without one, or
    with one of another size, refused by name before anything is written. ``info``: the model's
    (``sidecar.model_info``), whose ``pattern`` pairs them; files of the folder no input needs,
    or that the pattern does not name, are no matter here."""
    if not folder.is_dir():
        raise ConfigError(f"{option('--roi', repr(str(folder)))} is not a folder: give the folder of region masks "
                          "(DRIVE's mask/), each named as its image pairs with it")
    pattern = info.get("pattern")
    regions: dict[str, list[Path]] = {}
    files = image_files(folder)
    for path in files:
        key = file_key(path, pattern)
        if key is not None:
            regions.setdefault(unicodedata.normalize("NFC", key), []).append(path)
    paths, lacking = [], []
    for name in read.names:
        if name.endswith("]"):  # (an .npz's image, named by its place in the archive)
            raise ConfigError(f"{option('--roi')} pairs region masks with image files by name; '{name}' is an image "
                              "of an .npz, which has none: predict image files, or leave out --roi")
        key = file_key(Path(name), pattern)
        found = regions.get(unicodedata.normalize("NFC", key), []) if key is not None else []
        if len(found) > 1:
            raise DataError(f"'{found[0]}' and '{found[1]}' both pair with input '{name}' (id '{key}'): keep one in "
                            f"{option('--roi')}'s folder")
        (paths if found else lacking).append(found[0] if found else name)
    if lacking:
        rule = f"data.pattern '{pattern}'" if pattern else "the file name less its suffix"
        older = (" (this export's JSON records no data.pattern, as exports before 2026-12-07 did not: export the "
                 "run again if its region masks paired by one)" if "pattern" not in info else "")
        # what the folder gives instead (review 55h: a folder of other ids and one matching no pattern read alike)
        named = sum(map(len, regions.values()))
        example = _expected_name(lacking, files, pattern)
        if regions or not files:
            held = (f"of its {len(files)} image file(s), {named} give{'s' if named == 1 else ''} an id by {rule}: "
                    f"{first_few(sorted(regions), quoted=True)}" if regions else "it holds no image file")
            advice = f"add theirs{example}"
        else:  # the region masks may well be there, named so that the run's pattern gives them no id
            held = (f"none of its {len(files)} image file(s) ({first_few([f.name for f in files], quoted=True)}) "
                    f"gives an id by {rule}")
            advice = (f"if they are these inputs' region masks, rename them so that {rule} gives each its input's "
                      f"id{example}")
        if not example and pattern:  # (nor does it name the inputs: no renaming of the masks alone pairs them)
            advice = (f"{rule} gives these inputs no id either: name each input and its region mask so that it gives "
                      "both one id")
        raise DataError(f"no region mask in '{folder}' for {len(lacking)} input(s) ({first_few(lacking, quoted=True)}), "
                        f"paired by {rule}{older}; {held}: {advice}, or predict them without {option('--roi')}")
    masks = []
    for path, name, size in zip(paths, read.names, read.sizes):
        region = read_mask(path, None, binary=True) > 0
        if region.shape != tuple(size):
            raise DataError(f"region mask '{path}' is {region.shape[0]}x{region.shape[1]} (height x width), and its "
                            f"input '{name}' {size[0]}x{size[1]}: they must be of one size")
        masks.append(region)
    _say_if_regions_smaller(masks, paths, (info.get("training_images") or {}).get(REGION_SHARES))
    return masks


def _expected_name(lacking: list[str], files: list[Path], pattern: str | None) -> str:
    """`` (e.g. 'NAME' for 'INPUT')``: a region mask's name that pairs with the first input lacking
    one whose own name gives an id (its name less its suffix, then ``_mask``, as DRIVE names its
    fields of view, in the folder's image format), or ``''`` where none gives one."""
    suffix = files[0].suffix if files else ".png"
    for name in lacking:
        given = Path(name)
        key = file_key(given, pattern)
        if key is None:
            continue
        for candidate in (f"{given.stem}_mask{suffix}", f"{given.stem}{suffix}", given.name):
            if file_key(Path(candidate), pattern) == key:
                return f" (e.g. '{candidate}' for '{given.name}')"
    return ""


# How much smaller than the smallest training region (as a share of its image) a region may be
# before it is said: a field of view cut closer is no news, the vessels given for it are.
REGION_SLACK = 2.0


def _say_if_regions_smaller(masks: list[np.ndarray], paths: list[Path], trained: list[float] | None) -> None:
    """Region masks far smaller than every training image's region (review 55h: DRIVE's vessel
    annotations given for its fields of view kept the vessels alone, a prediction scoring perfect)."""
    if not (isinstance(trained, list) and len(trained) == 2 and all(is_finite_number(v) for v in trained)):
        return  # (a run of an earlier version, or one without data.roi)
    small = [(path, float(region.mean())) for path, region in zip(paths, masks)
             if region.mean() < trained[0] / REGION_SLACK]
    if small:
        path, share = small[0]
        spread = f"{trained[0]:.0%}" if f"{trained[0]:.0%}" == f"{trained[1]:.0%}" else \
            f"{trained[0]:.0%} to {trained[1]:.0%}"
        warn_user(f"{len(small)} of {len(masks)} region masks cover far less of their image than the training "
                  f"images' regions did (e.g. '{path}': {share:.0%}, the training regions {spread}): outside its region an input's mask is background, so check that "
                  f"{option('--roi')} names the folder of regions of interest (DRIVE's mask/), not the annotations")
