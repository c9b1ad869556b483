"""Reading DICOM images (``.dcm``) as a radiology viewer shows them, as [H, W, C] float32 in
[0, 1], with pydicom.

The stored values go through the file's modality LUT (rescale slope and intercept) and its
VOI transform (the first window, else its VOI LUT), the steps a viewer takes; the result is
scaled by the range those transforms can output, a fixed scale per file and never the image's
own minimum and maximum, so images stay comparable. MONOCHROME1 images (dense is dark) and
an INVERSE presentation LUT are inverted, so that in every image dense is bright. Colour
images (RGB, and YBR, which pydicom turns into RGB) are divided by the largest value their bits
can store.
"""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import functools
import os
import stat
import struct
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError

DICOM_SUFFIXES = {".dcm", ".dicom"}
GREY_INTERPRETATIONS = ("MONOCHROME1", "MONOCHROME2")


def is_dicom_image_by_content(path: Path) -> bool:
    """Whether a file of any name is a DICOM image: 'DICM' after the 128-byte preamble, as every
    DICOM Part 10 file begins (or, without one, a data set from its first element), and a
    header with rows and columns (the DICOMDIR index, reports and other objects without pixels
    are left out). Answered once per version of the file:
    listing, sizing and reading a set ask it of every image."""
    try:
        found = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISREG(found.st_mode):  # a folder named as exports name files
        return False
    return _dicom_image_at(str(path), found.st_mtime_ns, found.st_size)


@functools.lru_cache(maxsize=1 << 16)
def _dicom_image_at(path: str, _mtime_ns: int, _size: int) -> bool:
    # A file that cannot be opened is said so (as an unreadable PNG is), not left out unseen:
    # its mask would then be named as one without an image.
    start = dicom_start(path)
    if start is None:
        return False
    part10 = start == "part10"
    try:
        import pydicom

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"], force=not part10)
        if ds.get("Rows") not in (None, "") and ds.get("Columns") not in (None, ""):
            return True
        # no size: a report or an index, unless its file meta calls it an image (a file cut off
        # after its meta), which is listed for reading it to say what is wrong
        sop_class = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
        return part10 and "Image" in str(getattr(sop_class, "name", ""))
    except Exception:  # noqa: BLE001 - a header pydicom cannot parse
        # Marked DICOM (a truncated or damaged file) is listed, for reading it to say what is
        # wrong; bytes that only begin like a data set are not taken for one.
        return part10


def dicom_start(path) -> str | None:
    """How a file begins as DICOM: 'part10' ('DICM' after the preamble), 'data set' (older
    archives and some exports write the data set alone, from its first element: a little-endian
    tag of group 0002, the file meta, or 0008), or None: not as DICOM."""
    with open(path, "rb") as f:
        start = f.read(132)
    if start[128:132] == b"DICM":
        return "part10"
    return "data set" if start[:2] in (b"\x02\x00", b"\x08\x00") else None


def _read(path: Path, pixels: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's notes on odd values: the checks below name what matters
            ds = pydicom.dcmread(path, stop_before_pixels=not pixels, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read DICOM image '{path}': {exc}") from None
    try:  # pydicom converts values when they are first read: a damaged element fails here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _check_header(ds, path, pixels)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a damaged header
        raise DataError(f"cannot read the header of DICOM image '{path}': {exc}; the file is damaged, or written "
                        "by a program pydicom cannot read: convert it (e.g. dcmconv, gdcmconv) or leave it out") from None
    return ds


def _check_header(ds, path: Path, pixels: bool) -> None:
    essentials = ("Rows", "Columns", "PhotometricInterpretation")
    if all(k not in ds for k in essentials) and dicom_start(path) is None:  # force=True reads any bytes
        raise DataError(f"'{path}' is not a DICOM file: no DICOM header was found in it (another format under a "
                        "DICOM name?)")
    interpretation = ds.get("PhotometricInterpretation")
    if isinstance(interpretation, str) and interpretation.strip().upper() != interpretation:
        ds.PhotometricInterpretation = interpretation.strip().upper()  # 'monochrome2' means MONOCHROME2
    missing = [k for k in essentials if ds.get(k) in (None, "")]
    if missing:
        raise DataError(f"DICOM file '{path}' lacks {', '.join(missing)}: is it an image (not a report or a "
                        "structured set)?")
    int(ds.Rows), int(ds.Columns)  # (a damaged one raises here, within the caller's try)
    if pixels and "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise DataError(f"DICOM image '{path}' holds float pixel data (a parametric map), which is not read: "
                            "convert it to integer pixel data, or to a TIFF or .npz")
        raise DataError(f"DICOM file '{path}' holds no pixel data: is it an image (not a report or a structured set)?")
    frames = ds.get("NumberOfFrames", 1)
    try:
        frames = int(frames or 1)
    except (TypeError, ValueError):
        raise DataError(f"DICOM image '{path}' gives NumberOfFrames {frames!r}, not a whole number: its header is "
                        "damaged; fix or leave out the file") from None
    if frames > 1:
        raise DataError(f"DICOM image '{path}' holds {frames} frames (a cine loop or a volume): save each frame "
                        "as its own file")
    _lift_functional_groups(ds)
    meta = getattr(ds, "file_meta", None)
    if pixels and meta is not None and "TransferSyntaxUID" not in meta and ds.original_encoding[0] is not None:
        # a data set without file meta (no preamble either): its encoding is the one pydicom found
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = ds.original_encoding
        meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                  ExplicitVRLittleEndian if little else ExplicitVRBigEndian)


# Where an enhanced (multi-frame IOD) image keeps what a classic one holds at the top: its frame's
# functional groups, shared by every frame or given per frame (one frame here: multi-frame is refused)
_GROUPED = {"PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
            "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
            "PixelMeasuresSequence": ("PixelSpacing",)}


def _lift_functional_groups(ds) -> None:
    """An enhanced CT or MR image's rescale, window and pixel spacing, kept in functional groups,
    copied to the top of the data set where a classic image has them (and pydicom's LUT functions
    and this reader look): read without them, its raw stored values were shown where a viewer
    applies the window (review 48f). What the top already gives is kept whole."""
    for sequence, keys in _GROUPED.items():
        if any(key in ds for key in keys):
            continue  # the top gives it: not mixed with a group's (a centre of one, a width of the other)
        # the frame's own group before the shared one, the more particular
        for groups in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
            items = [item for group in (ds.get(groups) or [])[:1] for item in (group.get(sequence) or [])[:1]]
            if items:
                for key in keys:
                    if key in items[0]:
                        setattr(ds, key, items[0].get(key))
                break


def dicom_size_and_colour(path: Path) -> tuple[tuple[int, int], bool]:
    """(height, width), and whether the image is in colour, from the header alone."""
    ds = _read(path, pixels=False)
    return (int(ds.Rows), int(ds.Columns)), ds.PhotometricInterpretation not in GREY_INTERPRETATIONS


def dicom_size_and_spacing(path: Path) -> tuple[tuple[int, int], tuple[float, float] | None]:
    """(height, width), and the file's PixelSpacing (rows, columns: the distance between adjacent
    rows, then columns, in millimetres in the patient) or None where the header gives none, from
    one reading of the header. ImagerPixelSpacing, at the detector of a projection image, is not
    read: it is not a size in the patient."""
    ds = _read(path, pixels=False)
    size, value = (int(ds.Rows), int(ds.Columns)), ds.get("PixelSpacing")
    if value in (None, ""):
        return size, None
    try:
        rows, columns = (float(v) for v in value)
    except (TypeError, ValueError):
        rows = columns = float("nan")
    if not (np.isfinite(rows) and np.isfinite(columns) and rows > 0 and columns > 0):
        raise DataError(f"DICOM image '{path}' gives PixelSpacing {value!r}, not two sizes above 0: give "
                        "data.pixel_spacing=[ROWS, COLUMNS] to state the pixel size instead")
    return size, (rows, columns)


def read_dicom(path: Path, grey: bool = False, window: tuple[float, float] | None = None) -> np.ndarray:
    """[H, W, C] float32 in [0, 1]: one channel with ``grey`` (colour by luminance), else three
    (grey repeated). ``window`` (center, width; ``data.dicom_window``), in the values after the
    modality LUT (Hounsfield units for CT), replaces the file's own window: those values are
    mapped to [0, 1] by DICOM's linear window function."""
    READS["files"] += 1
    ds = _read(path, pixels=True)
    if window is not None and ds.PhotometricInterpretation not in GREY_INTERPRETATIONS:
        raise DataError(f"data.dicom_window windows grey images, but DICOM image '{path}' is "
                        f"{ds.PhotometricInterpretation} colour: drop data.dicom_window for colour data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's notes on a header that does not fit its data
            stored = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises several types for data it cannot decode
        raise DataError(f"cannot decode the pixels of DICOM image '{path}': {exc}{_why_undecoded(ds, exc)}") from None
    _complete_rescale(ds, path)
    if ds.PhotometricInterpretation in GREY_INTERPRETATIONS:
        if stored.shape != (int(ds.Rows), int(ds.Columns)):
            raise DataError(f"DICOM image '{path}' is {ds.PhotometricInterpretation} of {ds.Rows}x{ds.Columns} "
                            f"pixels, but its pixel data reads as {stored.shape}: its header contradicts its data")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's note on an odd number: non-finite results are named below
                a = (_windowed(stored, ds, window) if window is not None else _viewed_grey(stored, ds))[..., None]
            READS[f"way: {_own_scale(ds, window)}"] += 1
            own = _first_window(ds) if window is None else None
            if own is not None:
                READS[("own window", *own)] += 1
        except (ValueError, KeyError, AttributeError, TypeError, IndexError, NotImplementedError, OverflowError,
                struct.error) as exc:  # a malformed window or LUT
            raise DataError(f"cannot apply the display transforms of DICOM image '{path}': {exc}") from None
        if not np.isfinite(a).all():
            raise DataError(f"DICOM image '{path}' gives non-finite values through its rescale slope and intercept or "
                            "its window: its header holds NaN or infinite numbers there")
    else:
        a = stored.astype(np.float32) / float(2 ** int(ds.get("BitsStored", 8)) - 1)
        if a.ndim == 2 and ds.PhotometricInterpretation in ("RGB", "YBR_FULL", "YBR_FULL_422"):
            raise DataError(f"DICOM image '{path}' says {ds.PhotometricInterpretation} colour but holds one sample "
                            f"per pixel (SamplesPerPixel {ds.get('SamplesPerPixel')}): its header contradicts its data")
        if a.ndim == 2:  # a palette or other one-sample colour model
            raise DataError(f"DICOM image '{path}' uses {ds.PhotometricInterpretation} colour, which is not read: "
                            "convert it to MONOCHROME2 or RGB")
    a = np.clip(a, 0.0, 1.0).astype(np.float32)
    if grey and a.shape[-1] == 3:
        a = (a @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]  # luminance, as Pillow's "L"
    elif not grey and a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if window is not None:
        at_ends = int(np.count_nonzero((a <= 0) | (a >= 1)))
        READS["windowed"] += a.size
        READS["at_ends"] += at_ends
        READS["windowed images"] += 1
        READS["images at ends"] += at_ends > SATURATED * a.size
    return a


def _why_undecoded(ds, exc: Exception) -> str:
    """What to do about pixels pydicom could not decode."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        compressed = bool(syntax is not None and syntax.is_compressed)
    except ValueError:  # a private UID that is no transfer syntax pydicom knows (old GE exports)
        return (f"; its transfer syntax {syntax} is not one pydicom knows: convert the file to explicit VR little "
                "endian (e.g. dcmconv +te, gdcmconv --raw)")
    if not compressed:
        return ": its header (size, bits, samples per pixel, photometric interpretation) does not fit its pixel data"
    # pydicom's words for no decoder at hand (a decoder that ran and raised met damaged data)
    if any(word in str(exc).lower() for word in ("missing", "not supported", "does not support",
                                                  "no pixel data decoders", "required dependencies")):
        return "; compressed files need a decoder, e.g. pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
    return "; its compressed data is damaged"


def _complete_rescale(ds, path: Path) -> None:
    """A rescale slope without an intercept (or the reverse) is applied with the other's default
    (1, 0), as viewers do and as the output range is taken; pydicom would skip both."""
    for key in ("RescaleSlope", "RescaleIntercept"):
        if key in ds and ds.get(key) in (None, ""):  # an empty element is an unknown value: as if absent
            del ds[key]
    given = {k: ds.get(k) for k in ("RescaleSlope", "RescaleIntercept") if k in ds}
    for key, value in given.items():
        try:
            float(value)
        except (TypeError, ValueError):
            raise DataError(f"DICOM image '{path}' gives {key} {value!r}, not a number: fix the header (slope 1 and "
                            "intercept 0 leave the values as stored)") from None
    if given.get("RescaleSlope") is not None and float(given["RescaleSlope"]) == 0:
        raise DataError(f"DICOM image '{path}' gives RescaleSlope 0, which maps every pixel to one value: fix the "
                        "header (1 leaves the values as stored)")
    if len(given) == 1 and not ds.get("ModalityLUTSequence"):
        ds.RescaleSlope = given.get("RescaleSlope", 1)
        ds.RescaleIntercept = given.get("RescaleIntercept", 0)


# A window that clips more than this share of the pixels (of a set, or of an image) shows almost
# nothing of them.
SATURATED = 0.9
# What read_dicom has read so far: files; of the pixels read through a window of the user's, how
# many it put at black or white (whether data.dicom_window applied, and fits); and how the grey
# files were put on [0, 1] ("way: ...", ``_own_scale``: a set read in several ways holds the same
# tissue at different values).
READS: collections.Counter = collections.Counter()


class DicomReads:
    """What was read since it was made (``READS``)."""

    def __init__(self):
        self.start = READS.copy()

    def _since(self) -> collections.Counter:
        return READS - self.start

    def files(self) -> int:
        return self._since()["files"]

    def ways_scaled(self) -> dict[str, int]:
        return {key.removeprefix("way: "): n for key, n in self._since().items()
                if isinstance(key, str) and key.startswith("way: ")}

    def own_windows(self) -> dict[tuple[float, float], int]:
        """The grey files read through their own window: how many through each (center, width)."""
        return {key[1:]: n for key, n in self._since().items() if isinstance(key, tuple) and key[0] == "own window"}

    def images_at_ends(self) -> tuple[int, int]:
        """Of the images read through a window of the user's, how many it puts almost wholly
        (``SATURATED``) at black or white, and how many it read."""
        since = self._since()
        return since["images at ends"], since["windowed images"]

    def share_at_ends(self) -> float:
        since = self._since()
        return since["at_ends"] / since["windowed"] if since["windowed"] else 0.0


@contextlib.contextmanager
def counting_dicom_reads():
    yield DicomReads()


def _first_window(ds) -> tuple[float, float] | None:
    """A file's own window (center, width): its first, as the VOI transform applies it; None
    without one (elements absent, or present and empty)."""
    def first(value):  # (a multi-valued element is a sequence; a number is none)
        return float(value[0] if isinstance(value, collections.abc.Sequence) and not isinstance(value, str) else value)

    try:
        return first(ds.get("WindowCenter")), first(ds.get("WindowWidth"))
    except (TypeError, ValueError, IndexError):
        return None


def unlike_windows(windows: dict[tuple[float, float], int]) -> list[tuple[float, float]]:
    """The files' own windows (center, width: how many files each) unlike the most common one:
    a width twice as wide or narrow, or a center a quarter of the wider width away (a lung window
    beside a mediastinal one). Windows set per image, alike, are no other reading."""
    if not windows:
        return []
    (center, width), _ = max(windows.items(), key=lambda item: item[1])
    if width <= 0:  # (no window to compare with: a width of 0 or below is refused as it is read)
        return []
    return [(c, w) for c, w in windows if not (0.5 <= w / width <= 2 and abs(c - center) <= max(w, width) / 4)]


def _own_scale(ds, window) -> str:
    if window is not None:
        return "the user's window"
    if "WindowCenter" in ds and "WindowWidth" in ds:
        return "their own window"
    if ds.get("VOILUTSequence"):
        return "their VOI LUT"
    if ds.get("ModalityLUTSequence"):
        return "their modality LUT's range"
    return f"their {ds.get('BitsStored', ds.get('BitsAllocated', 16))}-bit stored range"


def _viewed_grey(stored: np.ndarray, ds) -> np.ndarray:
    """Modality LUT, then the VOI transform, scaled to [0, 1] by the output range; MONOCHROME1
    inverted."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    low, high = _modality_range(ds)
    values = apply_modality_lut(stored, ds)
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if has_window:
        values = apply_voi_lut(values, ds, prefer_lut=False)
        # pydicom's window maps onto the modality ends in stored order: under a negative slope the
        # lowest values come out at the top end, so the range is read unsorted (else dense is dark)
        low, high = _modality_ends(ds)
    elif ds.get("VOILUTSequence"):
        values, high = _voi_lut(values, ds, low)
        low = 0.0
    span = high - low if abs(high - low) > 1e-12 else 1e-12
    scaled = (np.asarray(values, np.float64) - low) / span
    # MONOCHROME1 shows low values bright. DX and CR files of it say so twice, with an INVERSE
    # presentation LUT (PS3.3 C.8.11): one inversion, not two; INVERSE alone inverts too.
    inverted = ds.PhotometricInterpretation == "MONOCHROME1" or ds.get("PresentationLUTShape") == "INVERSE"
    return 1.0 - scaled if inverted else scaled


def _voi_lut(values: np.ndarray, ds, low: float) -> tuple[np.ndarray, float]:
    """The first VOI LUT (PS3.3 C.11.2.1.1), looked up here with indices as wide as the values
    (pydicom 3.0 indexes with the LUT's entry type: an 8-bit LUT of 4096 entries wraps), and
    its output's largest possible value. The first value mapped is signed where the values can be
    negative (CT in HU), whatever VR an implicit-VR file leaves pydicom to guess."""
    item = ds.VOILUTSequence[0]
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 2**16
    if low < 0 and first > 2**15 - 1:  # SS read as US
        first -= 2**16
    if bits != 8 and not 10 <= bits <= 16:
        raise ValueError(f"its VOI LUT has {bits} bits per entry; DICOM allows 8 or 10 to 16")
    data = item.get("LUTData")
    if data is None:
        raise ValueError("its VOI LUT has no LUTData")
    if isinstance(data, bytes):  # OW: 16-bit words in the file's byte order
        little = ds.original_encoding[1] if ds.original_encoding[1] is not None else True
        table = np.frombuffer(data, dtype="<u2" if little else ">u2")
    else:
        table = np.asarray(data if isinstance(data, (list, tuple)) else [data], dtype=np.int64)
    if len(table) < entries:
        raise ValueError(f"its VOI LUT holds {len(table)} entries where its descriptor says {entries}")
    table = table[:entries].astype(np.float64)
    index = np.clip(np.floor(np.asarray(values, np.float64)) - first, 0, entries - 1).astype(np.int64)
    # a descriptor's bit depth is known to understate its entries in real files: viewers then
    # take the output range from the largest entry, as here
    return table[index], max(float(2**bits - 1), float(table.max()))


def _windowed(stored: np.ndarray, ds, window: tuple[float, float]) -> np.ndarray:
    """The modality LUT, then a window of the user's choosing by DICOM's LINEAR function (PS3.3
    C.11.2.1.2.1) straight to [0, 1]; MONOCHROME1 inverted as for the file's own window."""
    from pydicom.pixels import apply_modality_lut

    center, width = window
    values = np.asarray(apply_modality_lut(stored, ds), np.float64)
    scaled = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    inverted = ds.PhotometricInterpretation == "MONOCHROME1" or ds.get("PresentationLUTShape") == "INVERSE"
    return 1.0 - scaled if inverted else scaled


def _modality_ends(ds) -> tuple[float, float]:
    """The lowest and the highest stored value after the modality LUT, in that order (the first
    is the larger under a negative slope): the ends a file's own window maps onto (pydicom's
    ``apply_windowing``)."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return low * slope + intercept, high * slope + intercept


def _modality_range(ds) -> tuple[float, float]:
    """The range of the stored values after the modality LUT: the fixed scale of an image
    without a window."""
    first, last = _modality_ends(ds)
    return min(first, last), max(first, last)
