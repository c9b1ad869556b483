"""Reading image and mask files as a viewer shows them: EXIF orientation applied, hidden files
(macOS ``._*``, ``.DS_Store``) never listed, one frame per file."""

from __future__ import annotations

import contextlib
import contextvars
import errno
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, DataNote, DataPlaceError, warn_user
from ..wording import first_few
from .dicom import DICOM_SUFFIXES, dicom_size_and_colour, is_dicom_image_by_content, read_dicom
from .each_file import read_each

PILLOW_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"}
IMAGE_SUFFIXES = {*PILLOW_SUFFIXES, *DICOM_SUFFIXES}
# Suffixes of pictures a folder may hold that are not read (formats of the web, cameras, editors,
# and other names of JPEG and PNG): named in a warning, not left out unseen (review 48f)
OTHER_IMAGE_SUFFIXES = {".webp", ".avif", ".heic", ".heif", ".jp2", ".j2k", ".jpx", ".jpf", ".jfif", ".jpe", ".apng",
                        ".dib", ".tga", ".ppm", ".pgm", ".pbm", ".pnm", ".pcx", ".psd", ".ico", ".qoi", ".sgi"}
# Names PACS and scanner exports give DICOM images besides .dcm: none (IM000001), a UID whose last
# part reads as a numeric suffix (1.2.826.0.1.3680043.8.498.17), Siemens' .IMA
EXPORT_SUFFIX = re.compile(r"^(|\.\d+|\.ima)$", re.IGNORECASE)
LOOKED_FOR = (f"{', '.join(sorted(IMAGE_SUFFIXES))} files, and DICOM images named without a suffix, by a UID or "
              ".IMA")  # for messages
IGNORE = 255  # the mask label of pixels that count nowhere
_ORIENTATION = 0x0112  # the EXIF tag
# Modes whose values are the labels themselves (colour masks are reduced to one value per pixel).
_LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "1")
_READ_ERRORS = (OSError, ValueError)  # Pillow's UnidentifiedImageError is an OSError


def is_dicom(path: Path) -> bool:
    """A ``.dcm`` or ``.dicom`` file, or a DICOM image named as exports name them (no suffix, a
    UID, .IMA), found by its content."""
    suffix = Path(path).suffix.lower()
    return suffix in DICOM_SUFFIXES or (bool(EXPORT_SUFFIX.match(suffix)) and is_dicom_image_by_content(path))


def is_image_file(path: Path) -> bool:
    return Path(path).suffix.lower() in PILLOW_SUFFIXES or is_dicom(path)


ID_RULE = "the file name less its suffix; a name ending in a number, as a DICOM UID, whole"  # for messages


def image_id(path: Path) -> str:
    """What an image is known by (its mask and its boxes name it so): its name less its suffix;
    a name whose last part is a number, a DICOM UID ('1.2.840.113619.2.5'), keeps it whole."""
    path = Path(path)
    return path.name if path.suffix[1:].isdigit() else path.stem


def image_files(folder: Path, dead_links: list[Path] | None = None) -> list[Path]:
    """The image files directly in ``folder``, sorted: by suffix, and DICOM images named as
    exports name them by content (``is_dicom``); hidden files left out (macOS writes ``._name.png`` beside every file it
    copies to some disks). Links named as images that lead nowhere (to what does not exist, or round in
    a loop) are refused, or, given ``dead_links``, added to it (sorted) for the caller to name."""
    entries = [p for p in Path(folder).iterdir() if not p.name.startswith(".")]
    # (by an image's suffix, or a DICOM export's UID or .IMA: a stale link without a suffix, to a
    # folder say, is no image left out, review 51k)
    dead = sorted(p for p in entries if p.is_symlink() and not p.exists()
                  and (p.suffix.lower() in IMAGE_SUFFIXES or (p.suffix and EXPORT_SUFFIX.match(p.suffix))))
    if dead_links is None:
        _refuse_dead_links(dead)
    else:
        dead_links += dead
    files = [p for p in entries if p.is_file()]
    images = sorted(p for p in files if is_image_file(p))
    others = sorted(set(files) - set(images))
    _warn_of_images_without_suffix(others)
    _warn_of_images_of_other_formats(others)
    return images


def is_link_loop(path: Path) -> bool:
    """Whether ``path`` is a symbolic link that leads back to itself (to itself, or round a cycle
    of links): it points at no file, but not at a missing one either."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def entry_is(entry: os.DirEntry, kind: str) -> bool:
    """Whether a directory entry is (following links) a ``'file'`` or a ``'dir'``: a link in a
    loop is neither (``DirEntry.is_file`` and ``is_dir`` raise on it, where ``Path``'s say False)."""
    try:
        return entry.is_file() if kind == "file" else entry.is_dir()
    except OSError:
        return False


def dead_link_problem(path: Path) -> str:
    """What is wrong with a symbolic link that leads to no file, and how to mend it: a loop, or a
    link to what does not exist."""
    if is_link_loop(path):
        return (f"'{path}' is a symbolic link in a loop: it points to '{os.readlink(path)}', which leads back to it "
                "(at once or through other links), so it reaches no file: point it at the image, or remove it")
    return (f"'{path}' is a symbolic link to '{os.readlink(path)}', which does not exist: mount or copy what it "
            "points to, or remove the link")


def _refuse_dead_links(links: list[Path]) -> None:
    """Links to files that are not there (a dataset of links into a drive not mounted, or
    copied without their targets), or links in a loop, would else leave images out in silence
    (review 51c)."""
    if not links:
        return
    loops = [p for p in links if is_link_loop(p)]
    missing = [p for p in links if p not in loops]
    said = []
    if missing:
        shown = "; ".join(f"'{p}' -> '{os.readlink(p)}'" for p in missing[:3])
        said.append(f"{len(missing)} symbolic link(s) point to files that do not exist ({shown}"
                    f"{'; ...' if len(missing) > 3 else ''}): mount or copy what they point to, or remove the links")
    if loops:
        shown = "; ".join(f"'{p}' -> '{os.readlink(p)}'" for p in loops[:3])
        said.append(f"{len(loops)} symbolic link(s) are in a loop, leading back to themselves and to no file ({shown}"
                    f"{'; ...' if len(loops) > 3 else ''}): point them at the images, or remove them")
    raise DataError("; and ".join(said))


def _warn_of_images_of_other_formats(others: list[Path]) -> None:
    """Files of an image format Pillow opens but peerdistill does not read (WebP, JPEG 2000...)
    are left out: said, not unseen (review 48f: a folder of .webp files trained on none of them)."""
    skipped = [p for p in others if p.suffix.lower() in OTHER_IMAGE_SUFFIXES]
    if skipped:
        suffixes = sorted({p.suffix.lower() for p in skipped})
        warn_user(f"{len(skipped)} image file(s) in '{skipped[0].parent}' have a suffix not read here "
                  f"({', '.join(suffixes)}; '{skipped[0].name}'...) and are left out: give a JPEG or PNG its own "
                  f"suffix (.jpg, .png), or convert the others to PNG (TIFF for 16-bit)", DataNote)


def refuse_images_in_subfolders(folder: Path, siblings: set[Path] = frozenset()) -> None:
    """Image/mask pairs are read from a folder itself: images in its subfolders would be left
    out unseen. ``siblings`` (resolved): the data's folders; a folder holding another of them is
    the data's root (data.images '.'), not checked."""
    if any(Path(folder).resolve() in sibling.parents for sibling in siblings):
        return  # the data's root (data.images '.'), whose other folders may hold anything
    for sub, found in subfolders_with_images(folder):
        if sub.resolve() not in siblings:
            raise DataError(f"'{sub}' holds {len(found)} image file(s) ('{found[0].name}'...), but image and mask "
                            f"pairs are read from '{folder}' itself, not its subfolders: move them up into it, or "
                            "give split folders through data.split_dirs")


def subfolders_with_images(folder: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Each (visible) subfolder of ``folder`` holding image files, with its image files."""
    for sub in sorted(d for d in Path(folder).iterdir() if d.is_dir() and not d.name.startswith(".")):
        found = image_files(sub, dead_links=[])  # (a subfolder's dead links: not read, no matter here)
        if found:
            yield sub, found


def _warn_of_images_without_suffix(others: list[Path]) -> None:
    """Files named as exports name DICOM that are images of another format (a PNG saved without
    its suffix) are not read: said, not left out unseen."""
    from PIL import Image

    found = {}
    for path in others:
        if EXPORT_SUFFIX.match(path.suffix):
            try:
                with Image.open(path) as im:
                    found[path] = im.format
            except Exception:  # noqa: BLE001 - not an image Pillow knows (or one too large to open): not said
                continue
    if found:
        (first, fmt), *_ = found.items()
        warn_user(f"{len(found)} file(s) in '{first.parent}' without an image suffix are images of another format "
                  f"than DICOM ('{first.name}' is {fmt}) and are not read: give them their suffix "
                  f"(.{str(fmt).lower()})", DataNote)


@contextlib.contextmanager
def opened(path: Path, what: str = "image", upright: bool = True) -> Iterator:
    """The file's image, turned upright by its EXIF orientation (as viewers and annotation tools
    show it). A stack of images (an animation, a TIFF whose pages share one size) is refused
    rather than read as its first frame; a main image with previews (a camera's MPO JPEG, a TIFF
    with a smaller thumbnail page) is read as its main image."""
    from PIL import Image, ImageOps

    if is_dicom(path):  # images only: read_image and the size functions read them with pydicom
        raise DataError(f"{what} '{path}' is a DICOM file: DICOM is read for images, not {what}s; save it as a "
                        "PNG (class indices, or 0/255 with data.binary_masks=true)")
    try:
        with Image.open(path) as im:
            if _is_stack(im):
                raise DataError(f"{what} '{path}' holds {im.n_frames} frames (a multi-page TIFF or an animation): "
                                "save each frame as its own file")
            _refuse_a_misread_tiff(im, path, what)
            turned = upright and im.getexif().get(_ORIENTATION, 1) != 1
            if not turned:
                yield im
                return
            upright_image = ImageOps.exif_transpose(im)
            upright_image.format = im.format  # (a new image has none: a JPEG mask's noise rule reads it)
            yield upright_image
    except PermissionError as exc:  # the file, not its format: the format advice would mislead
        raise DataError(f"cannot read {what} '{path}': {exc.strerror}; check its permissions") from None
    except Image.DecompressionBombError as exc:  # Pillow's guard against files that unpack huge is kept
        raise DataError(f"{what} '{path}' is too large for Pillow to open safely ({exc}): downscale it, or cut it "
                        "into tiles, first") from None
    except _READ_ERRORS as exc:
        raise _unreadable(path, what, exc) from None


# The first bytes of each format by suffix: a file that lacks them is another kind of file.
_MAGIC = {".png": (b"\x89PNG\r\n\x1a\n",), ".jpg": (b"\xff\xd8\xff",), ".jpeg": (b"\xff\xd8\xff",),
          ".bmp": (b"BM",), ".gif": (b"GIF87a", b"GIF89a"), ".tif": (b"II*\x00", b"MM\x00*"),
          ".tiff": (b"II*\x00", b"MM\x00*")}
# Formats Pillow reads in every variant: a file of theirs it cannot read is damaged. JPEG (12-bit,
# lossless), BMP (some compressions) and TIFF (colour float, some compressions) have variants it
# does not read.
_WHOLLY_READ = {".png", ".gif"}
_PILLOW_READS = ("Pillow reads PNG, JPEG, BMP, GIF and TIFF: 8- and 16-bit, and one-channel float; DICOM is read by "
                 "its .dcm or .dicom suffix, or by content under the names exports give it: no suffix, a UID, .IMA")


def _unreadable(path: Path, what: str, exc: Exception) -> DataError:
    """Why Pillow could not read a file: damaged (cut short, empty, or not what its suffix
    says), which only replacing it mends, or in a format or variant it does not read, which
    converting it does."""
    path = Path(path)
    said = f"cannot read {what} '{path}': {exc}"
    if not path.is_file():  # gone since it was listed, or a folder: the error says which
        return DataError(said)
    replace = "replace it with a good copy, or remove it"
    suffix = path.suffix.lower()
    cut_short = ("truncated", "buffer is not large enough")  # (the second: a TIFF's strip, in Pillow 12.2)
    if any(words in str(exc).lower() for words in cut_short) or path.stat().st_size == 0:
        return DataError(f"{said}; the file is damaged (cut short or empty, as an interrupted copy or download leaves "
                         f"it): {replace}")
    if suffix in _MAGIC:
        with open(path, "rb") as fh:
            head = fh.read(8)
        if not head.startswith(_MAGIC[suffix]):
            return DataError(f"{said}; the file does not hold the image its suffix {path.suffix} names (damaged, or "
                             f"another kind of file under that name): {replace}")
        if suffix in _WHOLLY_READ:
            return DataError(f"{said}; the file is damaged (Pillow reads every {suffix[1:].upper()}): {replace}")
        return DataError(f"{said}; the file is damaged, or a variant Pillow does not read (12-bit or lossless JPEG, "
                         f"some BMP compressions, colour float TIFF): {replace}, or convert it to an 8-bit PNG "
                         f"({_PILLOW_READS})")
    return DataError(f"{said} ({_PILLOW_READS}; convert other files, e.g. colour float TIFFs, to one of these)")


def _refuse_a_misread_tiff(im, path: Path, what: str) -> None:
    """Pillow 13 gives a TIFF turned a quarter by its orientation tag (5 to 8) the turned size
    when it opens it, then decodes the stored pixels into that shape: scrambled (reproduced with
    13.0.0, plain ``Image.open`` too). Such a file is refused by name rather than read wrong; a
    Pillow that keeps the stored size reads it, and it is turned as other images are."""
    if im.format != "TIFF" or im.tag_v2.get(_ORIENTATION, 1) not in (5, 6, 7, 8):
        return
    if im.size != (im.tag_v2.get(256), im.tag_v2.get(257)):  # ImageWidth, ImageLength as stored
        import PIL

        raise DataError(f"{what} '{path}' is a TIFF turned a quarter by its orientation tag "
                        f"({im.tag_v2[_ORIENTATION]}), which this Pillow ({PIL.__version__}) reads scrambled: save it "
                        "upright (orientation 1) with a tool that applies the tag, e.g. magick IN.tif -auto-orient "
                        "OUT.tif")


def _is_stack(im) -> bool:
    frames = getattr(im, "n_frames", 1)
    if frames < 2 or im.format == "MPO":
        return False
    if im.format != "TIFF":
        return True  # an animation
    size = im.size
    im.seek(1)
    same = im.size == size
    im.seek(0)
    return same


def image_size(path: Path, upright: bool = True, what: str = "image") -> tuple[int, int]:
    """(height, width) as the file is shown (``upright``: after its EXIF orientation), or as it
    is stored. ``what`` the file is, for messages."""
    if is_dicom(path) and what == "image":
        return dicom_size_and_colour(path)[0]
    with opened(path, what, upright=upright) as im:
        return im.height, im.width


COLOUR_MODES = frozenset({"RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"})


def size_and_colour(path: Path) -> tuple[tuple[int, int], bool]:
    """(height, width) as the file is shown, and whether it is stored in colour (Pillow's mode;
    a palette counts as colour unless its every entry is grey), from one opening of its header."""
    if is_dicom(path):
        return dicom_size_and_colour(path)
    with opened(path) as im:
        return (im.height, im.width), im.mode in COLOUR_MODES and not _grey_palette(im)


def _grey_palette(im) -> bool:
    """A palette image whose entries are all grey (r = g = b): grey pixels, stored another way."""
    if im.mode != "P" or im.palette is None or im.palette.mode != "RGB":
        return False
    entries = _palette_entries(im)
    return bool(len(entries)) and bool((entries == entries[:, :1]).all())


def _palette_entries(im) -> np.ndarray:
    """[entries, 3] RGB values of a palette image's palette (getpalette: the palette's own
    tobytes refuses a palette not yet parsed from the file, as Pillow 12.2 leaves a GIF's)."""
    entries = np.asarray(im.getpalette("RGB") or [], np.uint8)
    return entries[: len(entries) // 3 * 3].reshape(-1, 3)


def check_same_sizes(pairs: list[tuple[Path, Path]], what: str) -> None:
    """Each image and its ``what`` (its mask, its region-of-interest mask) of one size, compared
    as the files are, before any resizing could hide a mismatch; every pair that differs is
    counted in the one message (not found one run at a time)."""
    found = [problem for problem in read_each(pairs, lambda pair: _size_mismatch(*pair, what), "image files and masks")
             if problem]
    if found:
        more = (f"; {len(found)} of the {len(pairs)} pairs differ in size, e.g. also "
                f"{'; '.join(found[1:3])}" if len(found) > 1 else "")
        raise DataError(f"{found[0]}: they must be the same size{more}; save each at its image's size (or resize "
                        "both alike)")


def _size_mismatch(image: Path, other: Path, what: str) -> str | None:
    (h, w), (oh, ow) = image_size(image), image_size(other, what="mask")
    if (h, w) == (oh, ow):
        return None
    turned = image_size(image, upright=False) == image_size(other, upright=False, what="mask")
    why = (" (as shown: the image's EXIF orientation turns it, so its mask must be drawn on the upright "
           "image)") if turned else ""
    return f"image '{image.name}' is {w}x{h} but {what} '{other.name}' is {ow}x{oh}{why}"


def check_root_folder(root: Path, kind: str) -> None:
    """data.root of a kind that reads a folder: there, and a folder."""
    if root.is_dir():
        return
    if root.exists():
        raise DataPlaceError(f"data.root '{root}' is a file, but data kind '{kind}' reads a folder",
                             "set data.root to the folder (or data.kind to the file's kind: npz, csv)")
    raise DataPlaceError(f"data.root '{root}' does not exist", "set data.root to the data's folder (a relative path "
                         "counts from the folder the command runs in)")


def read_image(path: Path, size=None, grey: bool = False, dicom_window=None) -> np.ndarray:
    """[H, W, C] float32, in [0, 1] for 8- and 16-bit images. 8-bit images are divided by 255,
    16-bit grey ones by 65535, and so are 32-bit integer ones (Pillow opens many 16-bit files
    that way): a fixed scale, never an image's own maximum, so images stay comparable. Float
    images are kept as they are. (Pillow reads 16-bit colour images as 8-bit.) DICOM files are
    read as a viewer shows them (``dicom.read_dicom``), through ``dicom_window`` (center, width)
    when given instead of their own."""
    from PIL import Image

    if is_dicom(path):
        a = read_dicom(path, grey, dicom_window)
        _note_read(a.shape[1], a.shape[0])
        return resized_planes(a, size) if size else a

    with opened(path) as im:
        _note_read(im.width, im.height, im, grey, path)
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            if size:
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im).astype(np.float32)
            if im.mode.startswith("I"):
                a = a / 65535.0
            _refuse_non_finite(a, path)
            a = a[..., None]
            return a if grey else np.repeat(a, 3, axis=-1)
        im = im.convert("L" if grey else "RGB")
        if size:
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
        return a[..., None] if grey else a


@dataclass
class FilesRead:
    """What read_image read within ``noting_reads``: the files' shapes (the narrowest and widest
    width to height, before any resize: predict says when an input is squeezed as no training
    file was), and of the files read grey (data.grey; DICOM files aside) how many held colour (a
    grey model that learnt from colour files read grey, fundus photographs say, takes colour
    inputs at predict as no news; one that learnt from grey files does not)."""

    files: int = 0
    narrowest: float = math.inf
    widest: float = 0.0
    read_grey: int = 0
    colour_read_grey: int = 0
    # of the files read in colour: those stored grey (repeated into 3 channels), and the first few
    # stored in colour, to be checked for colour pixels only where some are grey
    stored_grey: list[Path] = field(default_factory=list)
    stored_colour: int = 0
    colour_named: list[Path] = field(default_factory=list)

    def colour_share(self) -> float | None:
        """The share of the files read grey that held colour; None when none was read grey."""
        return round(self.colour_read_grey / self.read_grey, 6) if self.read_grey else None

    def aspects(self) -> list[float] | None:
        """[narrowest, widest] width / height of the files read; None when none was."""
        return [round(self.narrowest, 4), round(self.widest, 4)] if self.files else None


# data.info's mark of a load that named its grey files among colour ones (``warn_of_grey_among_colour``)
GREY_FILES_SAID = "grey_files_among_colour_said"
_NOTING: contextvars.ContextVar[FilesRead | None] = contextvars.ContextVar("noting_reads", default=None)


@contextlib.contextmanager
def noting_reads() -> Iterator[FilesRead]:
    """A record of the files read_image reads meanwhile (in this thread; nothing is kept outside one)."""
    record = FilesRead()
    token = _NOTING.set(record)
    try:
        yield record
    finally:
        _NOTING.reset(token)


def note_original_shape(width: float, height: float) -> None:
    """Into the record being kept, if any: the shape of the image a file was made from (a detection
    JSON's width and height, the files a resized copy), whose squeeze to the model's input is the
    one training made too (review 55i: Kvasir-SEG's original frames were told to be cropped to the
    shape of its 256x256 copy)."""
    record = _NOTING.get()
    if record is not None and width > 0 and height > 0:
        record.narrowest, record.widest = min(record.narrowest, width / height), max(record.widest, width / height)


def _note_read(width: int, height: int, image=None, grey: bool = False, path: Path | None = None) -> None:
    """Into the record being kept, if any: a file's shape; of a file read grey (data.grey), whether
    it held colour (grey pixels stored as RGB are no colour); of one read in colour, whether it is
    stored grey (``image``: the file opened; None for DICOM, whose colour is its own matter)."""
    record = _NOTING.get()
    if record is None:
        return
    record.files += 1
    record.narrowest, record.widest = min(record.narrowest, width / height), max(record.widest, width / height)
    if image is None:
        return
    if grey:
        record.read_grey += 1
        record.colour_read_grey += _shows_colour(image)
    elif _stored_grey(image):
        record.stored_grey.append(Path(path))
    else:
        record.stored_colour += 1
        if len(record.colour_named) < COLOUR_CHECKED:
            record.colour_named.append(Path(path))


COLOUR_CHECKED = 16  # colour-stored files checked for colour pixels, the first first, until one shows colour


def _stored_grey(im) -> bool:
    """Whether an opened file holds one grey channel (8- or 16-bit grey, bilevel, a grey palette)."""
    return im.mode not in COLOUR_MODES or _grey_palette(im)


def _shows_colour(im) -> bool:
    """Whether an opened file stored in colour shows any (grey pixels stored as RGB do not)."""
    if _stored_grey(im):
        return False
    # told on a box-averaged copy of at most 128 pixels a side (review 52i: the whole image
    # converted again cost 69% more a file); a patch of colour still differs after averaging
    factor = max(1, max(im.size) // 128)
    small = (im if im.mode in ("RGB", "RGBA") else im.convert("RGB")).reduce(factor)
    rgb = np.asarray(small.convert("RGB"))
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


def warn_of_grey_among_colour(record: FilesRead, root: Path) -> bool:
    """Files stored grey among colour photographs, read in colour: each is repeated into three equal
    channels without a word, and is usually a mistake or another kind of image. Said once a load
    (whether said is returned), the files named by their paths from ``root`` (data.root), only
    where a colour file shows colour (X-rays saved partly as RGB are grey throughout): the first
    few colour files are opened again to tell, only when some file is grey."""
    if not record.stored_grey or not record.stored_colour:
        return False
    if not any(_file_shows_colour(path) for path in record.colour_named):
        return False
    n, total = len(record.stored_grey), len(record.stored_grey) + record.stored_colour
    them = "it" if n == 1 else "them"
    named = ", ".join(f"'{_from(root, path)}'" for path in sorted(record.stored_grey)[:3])
    more = f" and {n - 3} more" if n > 3 else ""
    warn_user(f"{n} of the {total} images read are grey files ({named}{more}), the other {total - n} colour: each "
              "grey one is read as colour, its channel repeated 3 times. A grey image among colour ones is usually a "
              "mistake, or another kind of image or source (which a model can tell apart by colour alone): check "
              f"{them}, and leave {them} out (data.exclude) if so, or read every image grey (data.grey=true)",
              DataNote)
    return True


def _from(root: Path, path: Path) -> str:
    """``path`` from ``root`` ('/'-separated, as data.exclude takes it), or whole where outside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _file_shows_colour(path: Path) -> bool:
    with opened(path) as im:
        return _shows_colour(im)


def _refuse_non_finite(a: np.ndarray, path: Path) -> None:
    """A float image with NaN or infinite pixels: one spreads through every convolution, so the
    whole output is lost (review 51c: predict wrote a class of NaN probabilities, an all-background
    mask), and the set's own check after stacking could not name the file."""
    if not np.isfinite(a).all():  # (counted after any resizing, which spreads them: not counted)
        raise DataError(f"image '{path}' holds NaN or infinite pixel values: replace them (e.g. "
                        "numpy.nan_to_num with the value the scanner gives no signal) and save it again, or remove it")


def read_images(files: list[Path], size=None, grey: bool = False, dicom_window=None,
                where: str = "images") -> np.ndarray:
    """``files`` read by ``read_image`` into one [N, C, H, W] float32 array, each image written
    in as it is decoded: no list of them beside the set, nor a stacked or transposed copy (a set
    held two or three times over at its peak, review 52g). Every file is tried (``read_each``);
    images of several sizes (none resized) are refused with each size and a file of it, so that
    a stray file among a set meant to be of one size can be found."""
    out: np.ndarray | None = None
    first_of_size: dict[tuple, Path] = {}  # each size's first file (by path: files come split by split)

    def read_into(place: tuple[int, Path]) -> None:
        nonlocal out
        i, path = place
        a = read_image(path, size, grey=grey, dicom_window=dicom_window)
        first_of_size[a.shape[:2]] = min(first_of_size.get(a.shape[:2], path), path)  # (named in path order)
        if out is None:
            out = np.empty((len(files), a.shape[2], *a.shape[:2]), np.float32)
        if a.shape[:2] == out.shape[2:]:  # (another size is refused below, once every file is tried)
            out[i] = a.transpose(2, 0, 1)

    read_each(list(enumerate(files)), read_into)
    if len(first_of_size) > 1:  # (each file by its path below the files' common folder: splits' folders named)
        common = Path(os.path.commonpath([str(f) for f in first_of_size.values()]))
        sizes = "; ".join(f"{h}x{w}: '{f.relative_to(common).as_posix()}'"
                          for (h, w), f in sorted(first_of_size.items(), key=lambda i: i[1])[:4])
        raise DataError(f"{where} differ in size ({len(first_of_size)} sizes, e.g. {sizes}): set data.image_size=[H, W] "
                        "to resize them")
    if out is None:
        return np.zeros((0, 1 if grey else 3, *(size or (0, 0))), np.float32)
    return out


def resized_planes(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W, C] float values, each channel resized to ``size`` (H, W) with Pillow's bilinear
    filter, as 8-bit files are resized."""
    from PIL import Image

    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c], dtype=np.float32)).resize(
        (size[1], size[0]), Image.BILINEAR)) for c in range(a.shape[-1])]
    return np.stack(planes, axis=-1).astype(np.float32)


@dataclass
class MaskValues:
    """One value per pixel of a mask file (before any binary rule), whether its format is lossy
    (JPEG noise), and the file's name (for messages)."""

    values: np.ndarray
    lossy: bool
    name: str = ""


def read_mask_values(path: Path, size=None, binary: bool = False) -> MaskValues:
    """A grey, palette or 16-bit mask's values are its labels; a colour mask gives each pixel its
    brightest channel (so a red mask is not lost to luminance), or its alpha when the colour is
    the same everywhere (a mask painted on a transparent layer). Read for ``binary`` masks, a
    palette of grey entries gives the grey levels shown (tools other than Pillow may list white
    first); read for class indices, a mask in colour is refused (its colours are not indices)
    and so is a grey palette that shows a higher index darker (its picture and its indices
    disagree)."""
    from PIL import Image

    with opened(path, "mask") as im:
        lossy = im.format == "JPEG"  # the file's: a resized image has no format
        if binary and _grey_palette(im):
            im = im.convert("L")
        elif not binary:
            _refuse_colours_as_classes(im, path)
        native = _one_value_per_pixel(im) if binary and not lossy else None
        if native is not None:  # at the file's own size: a resize would thicken a dim edge into regions
            _refuse_labels_with_ignored_pixels(native, Path(path).name)
        if size:
            im = im.resize((size[1], size[0]), Image.NEAREST)
        elif native is not None:
            return MaskValues(native, lossy, Path(path).name)
        return MaskValues(_one_value_per_pixel(im), lossy, Path(path).name)


def _refuse_colours_as_classes(im, path: Path) -> None:
    if im.mode == "P" and _grey_palette(im):
        entries, used = _palette_entries(im), np.unique(np.asarray(im))
        classes = used[(used > 0) & (used < len(entries)) & (used != IGNORE)]  # 255 is the ignored label
        if 0 in used and len(classes) and entries[0, 0] > entries[classes, 0].min():
            raise DataError(f"mask '{Path(path).name}' is a palette image whose grey palette shows the background "
                            f"(index 0, grey {entries[0, 0]}) brighter than a class (grey {entries[classes, 0].min()}): "
                            "read by index, what it shows as the object would be background. For a "
                            "foreground/background mask set data.binary_masks=true (palette masks are then read by "
                            "the grey level shown); else save the mask as a grey image of class indices")
    if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        rgb = np.asarray(im.convert("RGB"))
        if not (rgb == rgb[..., :1]).all():
            raise DataError(f"mask '{Path(path).name}' is in colour (its channels differ): class masks are label "
                            "images, one class index 0..K-1 per pixel (grey or palette); convert each colour to its "
                            "class index. If every coloured pixel is one foreground class, set "
                            "data.binary_masks=true")


def _rule_of(masks: list[MaskValues], top: int) -> tuple[int, str]:
    """The threshold above which a value is foreground, for the whole set (whose largest value
    is ``top``), and why."""
    if top <= 50 and not any(m.lossy for m in masks):
        return 0, "any value above 0 (masks of small values only: 0/1, class indices)"
    if top > 255:
        return 32767, "above 32767, half of 65535 (values above 255: 16-bit masks)"
    why = "JPEG masks: compression moves small values" if any(m.lossy for m in masks) else "0/255 masks"
    return 127, f"above 127, half of 255 ({why})"


def binarized(masks: list[MaskValues]) -> list[np.ndarray]:
    """Foreground 1, by one rule for the whole set, so a grey value means the same in every file:
    in masks of small values only (0/1, class indices; none lossy), any value above 0; otherwise
    (0/255, 0/65535, anti-aliased edges, JPEG noise) a value above half the full scale. A set
    saved two ways (some 0/1, some 0/255 or 0/65535) is refused: no one rule reads both, and
    a set whose foreground the rule loses entirely is warned of."""
    tops = [int(m.values.max(initial=0)) for m in masks]
    _refuse_two_scales(masks, tops)
    top = max(tops, default=0)
    threshold, why = _rule_of(masks, top)
    out = [(m.values > threshold).astype(np.uint8) for m in masks]
    labels = sorted(set().union(*(np.unique(m.values).tolist() for m in masks)) - {0}) if threshold == 0 else []
    if len(labels) > 1:  # class indices of several classes, merged into one foreground
        warn_user(f"with data.binary_masks, masks of the labels {labels[:8]}{' ...' if len(labels) > 8 else ''} are "
                  "read as one foreground class (any value above 0): to keep their classes apart, drop "
                  "data.binary_masks (the masks' values are then the classes)")
    if len(masks) > 1 and threshold and top and not any(o.any() for o in out):
        advice = ("0/1 masks saved as JPEG lose their labels to compression: save them as PNG"
                  if any(m.lossy for m in masks) and top <= 50 else
                  "save the masks as 0/1, or with the foreground at the top of their scale (255, or 65535 for "
                  "16-bit masks)")
        warn_user(f"with data.binary_masks, no mask keeps a foreground pixel: foreground is a value {why}, and the "
                  f"masks' largest value is {top}; {advice}")
    return out


PHOTO_MID_SHARE = 0.25  # a mask with more of its pixels mid-grey than this may be a photograph
PHOTO_SPREAD = 0.5  # ... if its 8 commonest mid-grey levels hold under this share of them


def mid_grey_share(values: np.ndarray, full: int) -> float:
    """The share of a mask's pixels far from both ends of its scale (strictly between 10% and 90%
    of ``full``): a mask's are its edges only (Kvasir-SEG's JPEG masks: under 1%), a
    photograph's most of it (Kvasir-SEG's frames: 38% to 92%)."""
    return float(np.count_nonzero((values > 0.1 * full) & (values < 0.9 * full))) / max(values.size, 1)


def _mid_greys_spread(values: np.ndarray, full: int) -> bool:
    """Whether a mask's mid-grey pixels spread over many levels, as a photograph's do (Kvasir-SEG's
    frames: their 8 commonest levels hold at most a third of them), not gather at a few, as a
    mask of visible class levels (0/128/255) does, JPEG noise and soft edges included (at 96x96,
    70% and more; at 32x32, where its blurred edges and JPEG noise are most of them, it may
    read as a photograph)."""
    mid = values[(values > 0.1 * full) & (values < 0.9 * full)]
    counts = np.sort(np.bincount(mid.ravel().astype(np.int64)))[::-1]
    return counts[:8].sum() < PHOTO_SPREAD * max(mid.size, 1)


def photograph_like(masks: list[MaskValues]) -> list[tuple[str, float]]:
    """The masks read for ``data.binary_masks`` that look like photographs (name, mid-grey
    share): most of their pixels mid-grey, over many levels; when they are at least half the
    set (else none). Masks of small values only (0/1, class indices) are never counted: their
    scale is not 0..255. Only a mask over the share is looked at further."""
    top = max((int(m.values.max(initial=0)) for m in masks), default=0)
    if top <= 50:
        return []
    full = _full_scale(top)
    shares = [(m, mid_grey_share(m.values, full)) for m in masks]
    photos = [(m.name, share) for m, share in shares
              if share > PHOTO_MID_SHARE and _mid_greys_spread(m.values, full)]
    return photos if 2 * len(photos) >= len(masks) else []


SWAP_SAMPLE = 8  # the images folder's first files read as masks, to tell a swap from soft masks


def refuse_photographs_as_masks(raw: list[MaskValues], root: Path, images: str, masks: str, reading: str) -> None:
    """Masks most of whose pixels sit at many mid-grey levels, beside an images folder whose
    files, read as masks, look like masks: data.images and data.masks (the folders ``images`` and
    ``masks`` under ``root``) swapped. Binarized, a colour frame read as a mask trains on some 78%
    of its pixels as foreground, with no other word. Soft masks (probability maps, blurred masks)
    beside photographs are no swap: they are read as before, by the binary rule, with a word.
    Measured on the masks as read (``raw``); the images folder's first files are read only when
    the masks look like photographs. ``reading``: how the masks are read, for the message."""
    photos = photograph_like(raw)
    if not photos:
        return
    images_dir = root / images
    sample = _files_read_as_masks(images_dir, _shared_shape(raw))
    like_masks = sum(mid_grey_share(m.values, _full_scale(int(m.values.max(initial=0)))) <= PHOTO_MID_SHARE
                     for m in sample)
    if 2 * like_masks <= len(sample):  # (none read: no sign of a swap either)
        _warn_of_soft_masks(raw, photos, root / masks)
        return
    shown = ", ".join(f"'{name}' {share:.0%}" for name, share in photos[:3]) + (" ..." if len(photos) > 3 else "")
    swap = f"data.images={masks} data.masks={images}"
    raise DataError(f"{reading}, the masks in '{root / masks}' look like photographs, not masks: "
                    f"{len(photos)} of {len(raw)} have over {PHOTO_MID_SHARE:.0%} of their pixels at many mid-grey "
                    f"levels, far from both background and foreground ({shown}; a mask's are its edges, a few in a "
                    f"hundred at most), and the files in '{images_dir}', read as masks, look like masks ("
                    f"{like_masks} of the first {len(sample)} have at most {PHOTO_MID_SHARE:.0%} of their pixels "
                    f"mid-grey). data.images and data.masks look swapped (now data.images={images}, "
                    f"data.masks={masks}): check the folders, and swap them if so ('{swap}' on the command line)")


def _shared_shape(raw: list[MaskValues]) -> tuple[int, int] | None:
    """The size every mask was read at (data.image_size, or one native size), else None."""
    shapes = {m.values.shape[:2] for m in raw}
    return shapes.pop() if len(shapes) == 1 else None


def _full_scale(top: int) -> int:
    """The scale masks whose largest value is ``top`` are saved on: 8-bit, else 16-bit."""
    return 255 if top <= 255 else 65535


def _files_read_as_masks(folder: Path, size: tuple[int, int] | None) -> list[MaskValues]:
    """The first ``SWAP_SAMPLE`` files Pillow reads in ``folder``, read as binary masks are read;
    a file that cannot be read so is left out (it is no sign of a mask)."""
    try:
        files = sorted(p for p in Path(folder).iterdir()
                       if p.suffix.lower() in PILLOW_SUFFIXES and not p.name.startswith(".") and p.is_file())
    except OSError:
        return []
    read = []
    for path in files[:SWAP_SAMPLE]:
        try:
            read.append(read_mask_values(path, size, binary=True))
        except DataError:
            continue
    return read


def _warn_of_soft_masks(raw: list[MaskValues], photos: list[tuple[str, float]], mask_dir: Path) -> None:
    """Masks that look like photographs beside images that do not look like masks: soft masks
    (probability maps, blurred masks), read by the binary rule as any mask is; or a folder of
    photographs named as the masks, which the word lets the user see."""
    threshold, _ = _rule_of(raw, max(int(m.values.max(initial=0)) for m in raw))
    warn_user(f"with data.binary_masks, {len(photos)} of the {len(raw)} masks in '{mask_dir}' hold over "
              f"{PHOTO_MID_SHARE:.0%} of their pixels at many grey levels between background and foreground "
              f"({first_few([name for name, _ in photos], quoted=True)}): they are read as soft masks, foreground "
              f"where a value is above {threshold}, half the scale. If that folder holds photographs rather than "
              "masks, set data.masks to the masks' folder")


def _refuse_labels_with_ignored_pixels(values_read: np.ndarray, name: str) -> None:
    """A mask of small labels beside 255 and nothing between (Pascal VOC: 0 background, 1 the
    object, 255 a void border to ignore) is class indices: read as 0/255, the border would be the
    object and the object background. Told from an anti-aliased 0/255 mask, whose dim edge
    pixels may hold small values too, by its labels filling regions: a quarter or more of the
    labelled pixels have all four neighbours labelled, where a dim edge is a line or two wide."""
    if values_read.max(initial=0) != IGNORE:
        return
    values = np.unique(values_read)
    between = values[(values > 0) & (values < IGNORE)]
    if not len(between) or between.max() > 50:
        return
    labelled = (values_read > 0) & (values_read < IGNORE)
    inner = labelled[1:-1, 1:-1] & labelled[:-2, 1:-1] & labelled[2:, 1:-1] & labelled[1:-1, :-2] & labelled[1:-1, 2:]
    if inner.sum() * 4 >= labelled.sum():
        raise DataError(f"with data.binary_masks, mask '{name}' holds {values.tolist()}: regions of small labels "
                        "with 255 marking ignored pixels (as Pascal VOC marks a void border), not a 0/255 mask, "
                        "whose rule would read the border as the object and the object as background. Read such "
                        "masks as class indices: data.binary_masks=false (255 is then ignored)")


def _refuse_two_scales(masks: list[MaskValues], tops: list[int]) -> None:
    """0/1 (lossless), 0/255 and 0/65535 masks in one set (``tops``: each one's largest value):
    the rule for the largest would empty the others."""
    first_of = {}
    for m, top in zip(masks, tops):
        scale = ("0/1" if top == 1 and not m.lossy else "0/255" if 127 < top <= 255 else "0/65535" if top > 32767
                 else None)
        if scale:
            first_of.setdefault(scale, m.name)
    if len(first_of) > 1:
        shown = ", ".join(f"'{name}' is {scale}" for scale, name in first_of.items())
        raise DataError(f"with data.binary_masks, the masks are saved at different scales ({shown}): one rule for "
                        "the set (foreground above half the largest scale) would empty the others. Save every mask "
                        "the same way")


def visible_levels(classes, num_classes: int):
    """Class k of K as the grey level round(255 k / (K - 1)): two classes 0 and 255, what a
    viewer shows and ``data.binary_masks`` reads back; the same levels in eval's pictures and
    predict's masks. ``classes``: an integer array or tensor wide enough for 255 * k."""
    return (classes * 255 + (num_classes - 1) // 2) // max(num_classes - 1, 1)


def _hint_for_large_values(values: np.ndarray) -> str:
    """What to do with a mask of values too large for class indices. Values that are all grey
    levels of K <= 11 classes spread over 0..255 may be a mask written for viewing, whose
    classes data.binary_masks would merge: both readings are offered."""
    binary = "for 0/255 masks of one foreground class set data.binary_masks=true"
    if any(np.isin(values, visible_levels(np.arange(k), k)).all() for k in range(3, 12)):
        return (f"{binary}; if they are several classes spread over 0..255 for viewing (class k of K at "
                "round(255 k / (K - 1)), as predict --visible-masks and eval's pictures write them), that would "
                "merge them: save the class indices instead (predict without --visible-masks)")
    return binary


def class_labels(mask: MaskValues, path: Path, num_classes: int | None = None) -> np.ndarray:
    """[H, W] uint8 class indices, checked: below ``num_classes`` when it is given, else at most
    50 (label images hold small indices); 255 marks ignored pixels. JPEG masks are refused:
    compression changes the values near every edge (0/1 masks gain 2s)."""
    if mask.lossy:  # (first: the stray values a JPEG mask holds are its compression's)
        raise DataError(f"mask '{path.name}' is a JPEG: compression changes label values near every edge (0/1 masks "
                        "gain 2s), so class-index masks must be saved losslessly (PNG, TIFF, BMP or GIF); 0/255 "
                        "JPEG masks of one foreground class are read with data.binary_masks=true")
    values = np.unique(mask.values)
    labels = values[values != IGNORE]
    limit = (num_classes - 1) if num_classes else 50
    if labels.max(initial=0) > limit:
        bound = f"below data.num_classes ({num_classes})" if num_classes else "0..K-1"
        raise DataError(
            f"mask '{path.name}' holds values {values[:8].tolist()}{'...' if len(values) > 8 else ''}: masks must "
            f"be label images with class indices {bound} (255: ignored); {_hint_for_large_values(values)}")
    return mask.values.astype(np.uint8)


def read_mask(path: Path, size=None, binary: bool = False, num_classes: int | None = None) -> np.ndarray:
    """One mask file as [H, W] uint8: ``binarized`` alone (``binary``) or ``class_labels``."""
    values = read_mask_values(path, size, binary)
    return binarized([values])[0] if binary else class_labels(values, path, num_classes)


def _one_value_per_pixel(im) -> np.ndarray:
    """Native integer types (uint8, uint16, int32): a set of masks stays small in memory."""
    if im.mode in _LABEL_MODES:
        return np.asarray(im) if im.mode != "1" else np.asarray(im).astype(np.uint8)
    if im.mode == "F":
        return np.asarray(im.convert("L"))
    rgba = np.asarray(im.convert("RGBA"))
    colour, alpha = rgba[..., :3].max(axis=-1), rgba[..., 3]
    if colour.min() == colour.max() and alpha.min() != alpha.max():
        return alpha
    return colour
