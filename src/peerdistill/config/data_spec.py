"""The data section: data kinds, their keys, splits and augmentation, and the files a
section reads."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path, PureWindowsPath
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .messages import refuse, shown_value
from .sections import Section, check_seed, home_expanded

# The most data.augment_range.elastic may be: the warp must not fold the image over itself. Of
# 20,000 random fields on images of 8 to 129 pixels a side, none folded at 0.065 and 1 to 9 did at
# 0.07 (bicubic between control points a quarter of the side apart overshoots their moves).
ELASTIC_LIMIT = 0.06
# images a split of the synthetic data (shapes, boxes) may ask for: 100,000 64 x 64 images are 2 GB in memory;
# a billion, asked for by a slip, stopped with numpy's traceback (review 55j)
SYNTHETIC_COUNT_LIMIT = 100_000
# data.exclude: at most this many patterns (every file read is matched against them), each at most
# PATH_MAX's bytes long
EXCLUDE_LIMIT = 10_000
EXCLUDE_PATTERN_LIMIT = 4096


# data kinds that name their classes themselves (folders, labels, categories): data.class_names
# does not apply to them
SELF_NAMING_KINDS = ("digits", "image_folder", "csv", "shapes", "boxes", "coco", "box_json")
# data kinds read from files at data.root (the others are generated or embedded)
FILE_KINDS = ("npz", "image_folder", "csv", "folders", "coco", "box_json", "mask_boxes")
FIXED_SIZE_KINDS = ("digits", "npz", "shapes")  # arrays used at their own size (no data.image_size)
IMAGE_FILE_KINDS = tuple(k for k in FILE_KINDS if k != "npz")  # image files (PNG, JPEG, DICOM, ...)
# the task each data kind's targets are for
KINDS_OF_TASK = {"classification": ("digits", "npz", "image_folder", "csv"), "segmentation": ("shapes", "folders"),
                 "detection": ("boxes", "coco", "box_json", "mask_boxes")}


class ChannelStats(Section):
    mean: list[float] = Field(min_length=1)
    std: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_per_channel(self) -> "ChannelStats":
        if len(self.mean) != len(self.std):
            raise ValueError(f"data.normalize gives {len(self.mean)} means and {len(self.std)} stds: "
                             "give one of each per input channel")
        return self


# ImageNet's per-channel statistics of RGB images in [0, 1], which pretrained backbones expect.
IMAGENET_STATS = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


# Keys read by the image/mask folder loader only; set for another kind they would be ignored.
FOLDERS_ONLY_KEYS = ("split_dirs", "roi", "num_classes", "binary_masks")
# Keys of one or two kinds, refused for the others when changed from their defaults.
KIND_ONLY_KEYS = {"masks": ("folders", "mask_boxes"), "pattern": ("folders", "mask_boxes"), "shapes_counts": ("shapes",), "boxes_counts": ("boxes",),
                  "path_column": ("csv",), "label_column": ("csv",), "bad_boxes": ("coco", "box_json"),
                  "group_pattern": ("image_folder", "csv", "folders"), "group_stratify": ("image_folder", "csv"),
                  "group_column": ("csv",),
                  "pixel_spacing": ("folders",), "dicom_window": IMAGE_FILE_KINDS, "grey": IMAGE_FILE_KINDS,
                  "images": ("folders", "coco", "box_json", "mask_boxes"), "annotations": ("coco", "box_json"),
                  "exclude": IMAGE_FILE_KINDS}
# Keys read only in patch training (data.patch_size set).
PATCH_KEYS = ("patches_per_image", "foreground_oversample", "window_overlap")


# data kinds whose splits are generated: data.folds is refused for them (an npz archive of its own
# splits is refused by its loader, which sees the arrays; one of images and labels alone is cut)
NO_FOLD_KINDS = ("shapes", "boxes")

# How the data keys act, for comparing two data sections:
# those that deal a set into train, val and test,
SPLIT_KEYS = ("split_seed", "folds", "fold", "val_fraction", "test_fraction", "split_dirs", "group_pattern",
              "group_column", "group_stratify", "exclude")
# those that act in training only: what is read, and the models it builds, stay the same,
TRAINING_ONLY_KEYS = frozenset({"fold", "augment", "augment_range", "class_weights"})
# and those that change how images are read, scaled or cut, not which images (with which truth) are in
# which split: with the training-only ones, what settings may differ in and still pair run by run.
# (pixel_spacing is not among them: it changes the unit of HD95.)
NOT_THE_SPLIT = TRAINING_ONLY_KEYS | {"image_size", "patch_size", "patches_per_image", "foreground_oversample",
                                      "window_overlap", "normalize", "grey"}


def _exclude_problem(item: Any) -> str | None:
    """What is wrong with one pattern of data.exclude (None: nothing)."""
    if not isinstance(item, str):
        written = "null" if item is None else str(item).lower() if isinstance(item, bool) else shown_value(item)
        return (f"an item is {written}, not a file name: quote it ('{written}') where a file is named so, or give "
                "a name or glob pattern")
    if not item.strip():
        return "an item is empty: give a file name or glob pattern, or remove it"
    if len(item) > EXCLUDE_PATTERN_LIMIT:
        return (f"an item is {len(item):,} characters long, longer than any path ({EXCLUDE_PATTERN_LIMIT:,}): "
                "shorten it")
    control = next((c for c in item if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return (f"{shown_value(item)} holds the control character {control!r}: names of files, so printable "
                "characters only (no NUL, newline, tab or escape)")
    windows = PureWindowsPath(item)
    if item.startswith(("/", "~")) or windows.drive or windows.root:
        return (f"{item!r} is an absolute path: give it relative to data.root (e.g. 'NORMAL/IM-0001.jpeg'), or a "
                "file name")
    if ".." in re.split(r"[/\\]", item):
        return f"{item!r} reaches out of data.root ('..'): name files under it, relative to it"
    return None


def key_applies(key: str, kind: str) -> bool:
    """Whether data key ``key`` is read for data kind ``kind``."""
    kinds = ("folders",) if key in FOLDERS_ONLY_KEYS else KIND_ONLY_KEYS.get(key)
    return kinds is None or kind in kinds


class DataSpec(Section):
    kind: Literal["digits", "npz", "image_folder", "csv", "shapes", "folders", "boxes", "coco", "box_json",
                  "mask_boxes"] = "digits"
    root: str | None = Field(default=None, description="npz / csv: the file; image_folder / folders / coco / "
                                                      "box_json / mask_boxes: the folder")
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    split_seed: int = 0
    folds: int | None = Field(default=None, ge=2, description="k-fold cross-validation: the test split is fold "
                                                               "data.fold of this many (stratified for classes), "
                                                               "val is cut from the other folds; "
                                                               "data.test_fraction is not used")
    fold: int = Field(default=0, ge=0, description="which fold is the test split (0 .. data.folds - 1)")
    class_weights: bool = False
    normalize: Literal["split", "imagenet"] | ChannelStats = Field(
        default="split", description="standardise inputs (in [0, 1]) per channel by the training split's mean and "
                                     "std, by ImageNet's (pretrained torchvision / timm backbones), or by "
                                     "{mean: [...], std: [...]}"
    )
    augment: list[Literal["hflip", "vflip", "rot90", "rotate", "scale", "elastic", "brightness", "contrast", "gamma",
                          "noise", "blur", "crop"]] = Field(
        default_factory=list, description="each applied to a random half of every training batch, in the order "
                                          "listed: flips, 90-degree turns, rotations, zooms, elastic warps "
                                          "(identical on image and mask), brightness, contrast, gamma, Gaussian "
                                          "noise, Gaussian blur; "
                                          "detection: hflip, vflip, scale, crop (boxes move with the image) and the "
                                          "intensity ones"
    )
    augment_range: dict[Literal["rotate", "scale", "elastic", "brightness", "contrast", "gamma", "noise", "blur"],
                        Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="the largest change of each: rotate degrees (15), zoom factor 1 +- r "
                                          "(0.2), elastic control point move in fractions of the shorter side "
                                          "(0.05), brightness shift (0.2) and noise std (0.1) in standard deviations "
                                          "of the training images, contrast factor 1 +- r (0.2), gamma in "
                                          "[1 / (1 + r), 1 + r] (0.3), blur std in pixels (1)")
    group_pattern: str | None = Field(
        default=None, description="regex searched in each image's path (relative to data.root): its first group "
                                  "(or the whole match) is the image's group, a patient say, and the split keeps "
                                  "each group whole (image_folder, csv, folders)")
    group_column: str | None = Field(
        default=None, description="csv: the column naming each image's group, a patient say (its id): the split "
                                  "keeps each group whole, as data.group_pattern does from the paths")
    group_stratify: bool = Field(
        default=False, description="classification with data.group_pattern or group_column: deal the groups so "
                                   "that every split "
                                   "holds the classes in about their proportions (scikit-learn's "
                                   "StratifiedGroupKFold; the fractions become 1/k)")
    exclude: list[str] = Field(
        default_factory=list, description="files left out of every split before it is cut: names or glob "
                                          "patterns, e.g. [NORMAL/IM-0001.jpeg, '*_copy.png']; one with '/' is "
                                          "matched against each file's path relative to data.root (a csv: its "
                                          "folder), one without against its name, with or without its suffix, "
                                          "or the sample's id; a sample is left out where its image, mask or "
                                          "region matches (image file kinds; docs/data.md)")
    # csv (classification)
    path_column: str = "path"
    label_column: str = "label"
    # image/mask folders (kind: folders)
    images: str = "images"
    masks: str = "masks"
    pattern: str | None = Field(default=None, description="regex whose first group is the id shared by image and mask")
    # 5 or more a side: images 4 or fewer pixels high would be read as channels
    image_size: list[Annotated[int, Field(ge=5)]] | None = Field(default=None, min_length=2, max_length=2,
                                                                description="resize to [H, W] (5 or more each)")
    binary_masks: bool = Field(default=False, description="masks are 0/255 (or JPEG-noisy) images: > 127 is class 1")
    pixel_spacing: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2)] | \
        Literal["dicom"] | None = Field(
        default=None,
        description="[rows, columns]: the size of a pixel of the image files (e.g. millimetres), so that HD95 is "
                    "in that unit (resized with data.image_size); dicom: every image's own PixelSpacing (all "
                    "DICOM, one spacing as the models see them); default: in pixels")
    grey: bool = Field(default=False, description="read images as one grey channel")
    dicom_window: tuple[float, Annotated[float, Field(gt=1)]] | None = Field(
        default=None, description="[center, width] for DICOM files, in their values after rescaling (CT: "
                                  "Hounsfield units, e.g. a lung window [-600, 1500]), instead of each file's own "
                                  "window; default: the file's")
    # masks are read as 8-bit labels, 255 marking ignored pixels: at most 255 classes (0..254)
    num_classes: int | None = Field(default=None, ge=2, le=255)
    class_names: list[str] | None = Field(default=None, description="npz (without its own) and folders: the "
                                                                     "classes' names, in label order; mask_boxes: "
                                                                     "the name of its one class (default object)")
    # the synthetic segmentation default (kind: shapes)
    split_dirs: dict[Literal["train", "val", "test"], str] | None = Field(
        default=None, description="folders: subfolders holding given splits, e.g. {train: training, test: testing}; "
                                  "a missing val is cut from train")
    roi: str | None = Field(default=None, description="folders: a folder of region-of-interest masks (same ids); "
                                                      "pixels outside count nowhere")
    patch_size: int | None = Field(default=None, ge=8, description="train on random square crops of this side")
    patches_per_image: int = Field(default=16, ge=1, description="crops per training image per epoch")
    foreground_oversample: float = Field(default=0.0, ge=0, le=1,
                                         description="share of crops centred on a foreground pixel")
    window_overlap: float = Field(default=0.5, ge=0, description="sliding-window overlap when patch_size is set")
    shapes_counts: list[Annotated[int, Field(gt=0, le=SYNTHETIC_COUNT_LIMIT)]] = Field(default_factory=lambda: [600, 150, 150], min_length=3, max_length=3,
                                     description="train / val / test image counts of the synthetic data")
    # detection (kinds: boxes, coco, box_json, mask_boxes)
    annotations: str | None = Field(default=None, description="coco / box_json: the JSON file (relative to root)")
    bad_boxes: Literal["error", "skip", "clip"] = Field(
        default="error", description="coco / box_json: boxes without area or outside their image stop the load "
                                     "(error), are left out with a warning (skip), or are cut to the image, those "
                                     "without area left out (clip)")
    boxes_counts: list[Annotated[int, Field(gt=0, le=SYNTHETIC_COUNT_LIMIT)]] = Field(default_factory=lambda: [800, 200, 200], min_length=3, max_length=3,
                                    description="train / val / test image counts of the synthetic boxes default")

    @field_validator("root")
    @classmethod
    def _root_at_home(cls, value: str | None) -> str | None:
        return home_expanded(value) if isinstance(value, str) else value

    @field_validator("window_overlap")
    @classmethod
    def _window_moves(cls, value: float) -> float:
        if value >= 1:  # (review 56i: 'less than 1' said nothing of why)
            raise ValueError(f"{value:g} would never move the window (each step is window x (1 - overlap) pixels): "
                             "give a share below 1; 0.5, the default, scores each pixel in about 4 windows")
        return value

    @field_validator("split_seed")
    @classmethod
    def _split_seed_range(cls, v: int, info: ValidationInfo) -> int:
        return check_seed("data.split_seed", v, info)

    @model_validator(mode="after")
    def _root_for_files(self) -> "DataSpec":
        problems: list[str] = []  # every one is reported, not the first only
        if self.kind in FILE_KINDS and not self.root:
            problems.append(f"data kind '{self.kind}' needs data.root=PATH")
        if self.root and self.kind not in FILE_KINDS:  # a forgotten kind would train on the embedded data
            by_suffix = {".npz": "npz", ".csv": "csv", ".tsv": "csv"}.get(Path(self.root).suffix.lower())
            layout = (f"data.kind={by_suffix} for '{self.root}'" if by_suffix else
                      f"data.kind to the layout at '{self.root}' ({', '.join(FILE_KINDS)}; docs/data.md)")
            problems.append(f"data.root is set but data kind '{self.kind}' reads no files (it is generated or "
                            f"embedded{'; digits is the default kind' if self.kind == 'digits' else ''}): set "
                            f"{layout}")
        if self.kind in ("coco", "box_json") and not self.annotations:
            problems.append(f"data kind '{self.kind}' needs data.annotations=FILE.json (relative to data.root)")
        if self.class_names is not None and self.kind in SELF_NAMING_KINDS:
            problems.append(f"data.class_names does not apply to data kind '{self.kind}', which names its classes "
                            "itself (folder names, label values, categories): remove it (from the config file, or "
                            "data.class_names=null on the command line)")
        if self.kind == "mask_boxes" and self.class_names is not None and len(self.class_names) != 1:
            problems.append(f"data.class_names names the one class of data kind 'mask_boxes' (every component of a "
                            f"mask is an object of it), so it holds one name, not {len(self.class_names)}: e.g. "
                            "data.class_names=[polyp]")
        if self.image_size is not None and self.kind in FIXED_SIZE_KINDS:
            problems.append(f"data.image_size does not apply to data kind '{self.kind}', whose arrays are used at "
                            "their own size: remove it")
        problems += self._augment_problems()
        for key, kinds in KIND_ONLY_KEYS.items():
            default = type(self).model_fields[key].get_default(call_default_factory=True)
            if not key_applies(key, self.kind) and getattr(self, key) != default:
                if key == "exclude":
                    problems.append(self._exclude_not_applying())
                    continue
                # (a kind changed on the command line leaves the file's keys of the other kind there)
                dropped = f" (from the config file, or data.{key}=null on the command line)" if default is None else ""
                problems.append(f"data.{key} applies to data kind {' or '.join(map(repr, kinds))}, not "
                                f"'{self.kind}': remove it{dropped}")
        if self.patch_size is None:
            unread = [k for k in PATCH_KEYS if getattr(self, k) != type(self).model_fields[k].default]
            if unread:
                problems.append(f"data.{', data.'.join(unread)} {'is' if len(unread) == 1 else 'are'} read only in "
                                "patch training: set data.patch_size, or remove "
                                f"{'it' if len(unread) == 1 else 'them'}")
        ignored = [k for k in FOLDERS_ONLY_KEYS if getattr(self, k) not in (None, False)]
        if ignored and not key_applies(ignored[0], self.kind):
            given = ((" (detection splits are drawn by data.split_seed" + (", as many images as data.boxes_counts says)"
                      if self.kind == "boxes" else ", data.val_fraction and data.test_fraction)"))
                     if "split_dirs" in ignored and self.task == "detection" else "")
            problems.append(f"data.{', data.'.join(ignored)} applies to data kind 'folders' (image and mask folders) "
                            f"only, not '{self.kind}'{given}: remove it")
        problems += self._fold_problems()
        if self.binary_masks and self.num_classes not in (None, 2):
            problems.append(f"data.binary_masks reads masks as background and one foreground class, so "
                            f"data.num_classes must be 2 (or left out), not {self.num_classes}")
        if self.binary_masks and self.class_names is not None and len(self.class_names) != 2:
            problems.append(f"data.binary_masks reads masks as background and one foreground class, so "
                            f"data.class_names names two classes, not {len(self.class_names)}")
        if self.group_stratify and not (self.group_pattern or self.group_column):
            problems.append("data.group_stratify deals groups by class: it needs the groups, data.group_pattern (or "
                            "data.group_column for a CSV)")
        if self.group_pattern and self.group_column:
            problems.append("data.group_pattern and data.group_column both name the groups: keep one")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                problems.append(f"data.pattern is not a valid regular expression: {exc}")
        refuse(problems)
        return self

    def _exclude_not_applying(self) -> str:
        if self.kind == "npz":
            # (review 56g: the one-set layout alone was advised, which loses a MedMNIST archive's official split)
            return ("data.exclude leaves image files out, but data kind 'npz' reads arrays, whose rows have no file "
                    "names: remove the rows from the arrays and drop data.exclude; save the archive with the keys it "
                    "has, each without those rows: np.savez(FILE, images=..., labels=...) for one set to cut, or, to "
                    "keep an archive's own split (MedMNIST's), np.savez(FILE, train_images=..., train_labels=..., "
                    "val_images=..., val_labels=..., test_images=..., test_labels=...)")
        return (f"data.exclude leaves image files out, but data kind '{self.kind}' reads no files (it is generated or "
                "embedded): remove it (on the command line: data.exclude=[])")

    def _augment_problems(self) -> list[str]:
        problems = []
        if "crop" in self.augment and self.task != "detection":
            problems.append("data.augment crop is for detection; use hflip, vflip, rot90, rotate, scale or elastic")
        turns = {"rot90", "rotate", "elastic"} & set(self.augment)
        if turns and self.task == "detection":  # a turned or warped box is no longer an axis-aligned box
            problems.append(f"data.augment {sorted(turns)} is not available for detection; use hflip, vflip, scale "
                            "or crop, and any of brightness, contrast, gamma, noise, blur")
        unused = sorted(set(self.augment_range) - set(self.augment))
        if unused:
            problems.append(f"data.augment_range sets {unused}, which data.augment does not name: add "
                            f"{', '.join(unused)} to data.augment or remove the range")
        for key in ("contrast", "scale"):
            if self.augment_range.get(key, 0) >= 1:
                problems.append(f"data.augment_range.{key} is {self.augment_range[key]}: keep it below 1 (the factor "
                                "1 - r must stay positive)")
        rotate = self.augment_range.get("rotate", 0)
        if rotate > 180:
            problems.append(f"data.augment_range.rotate is {rotate}: at most 180 degrees")
        elastic = self.augment_range.get("elastic", 0)
        if elastic > ELASTIC_LIMIT:
            problems.append(f"data.augment_range.elastic is {elastic}: at most {ELASTIC_LIMIT} (stronger warps can "
                            "fold the image over itself)")
        return problems

    def _fold_problems(self) -> list[str]:
        problems = []
        if self.folds is None:
            if self.fold:
                problems.append(f"data.fold={self.fold} needs data.folds, the number of folds (e.g. data.folds=5)")
            return problems
        if self.fold >= self.folds:
            problems.append(f"data.fold={self.fold} is not one of the {self.folds} folds: use 0 .. {self.folds - 1}")
        if self.kind in NO_FOLD_KINDS:
            problems.append(f"data.folds cuts one labelled set into folds, but data kind '{self.kind}' generates its "
                            "splits apart: remove data.folds")
        if self.split_dirs:
            problems.append("data.folds cuts one set into folds, but data.split_dirs gives the splits: remove one")
        if self.test_fraction != type(self).model_fields["test_fraction"].default:
            # (review 55r: a recipe's test_fraction, given folds on the command line, was told to be removed)
            problems.append("data.folds makes one fold the test split, so data.test_fraction is not used: remove it "
                            "(on the command line: data.test_fraction=null)")
        if self.val_fraction >= 1 - 1 / self.folds:
            problems.append(f"data.val_fraction {self.val_fraction} is the share of the whole set cut from the other "
                            f"{self.folds - 1} folds for val: with {self.folds} folds it must be below "
                            f"{1 - 1 / self.folds:.2f}")
        return problems

    @field_validator("group_pattern")
    @classmethod
    def _group_pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"data.group_pattern '{value}' is not a regular expression: {exc}") from None
        return value

    @field_validator("exclude", mode="before")
    @classmethod
    def _exclude_patterns(cls, value: Any) -> Any:
        if value is None:  # (null: the default, none)
            return []
        if isinstance(value, str):  # data.exclude=a.png: one name (not cut at commas: a file's name may hold one)
            value = [value]
        if not isinstance(value, (list, tuple)):
            what = "a mapping" if isinstance(value, dict) else "true or false" if isinstance(value, bool) else \
                "a number" if isinstance(value, (int, float)) else type(value).__name__
            raise ValueError(f"data.exclude takes a list of file names or glob patterns relative to data.root, e.g. "
                             f"[NORMAL/IM-0001.jpeg, '*_copy.png'], not {what}")
        if len(value) > EXCLUDE_LIMIT:
            raise ValueError(f"data.exclude lists {len(value):,} patterns, more than the {EXCLUDE_LIMIT:,} it takes: "
                             "name the files by a few glob patterns (e.g. 'site_b/*'), or remove them from the "
                             "data (every file read is matched against every pattern)")
        problems, seen = [], set()
        for item in value:
            problem = _exclude_problem(item)
            if problem is None and item in seen:
                problem = f"{item!r} is listed twice: list each once"
            if problem is not None:
                problems.append(problem)
            elif isinstance(item, str):
                seen.add(item)
            if len(problems) >= 5:
                problems.append("... (the first 5 problems)")
                break
        refuse(problems)
        # sorted: which files are left out does not hang on the order they are listed in, so a run resumed or
        # reused with the list reordered is the same run (review 56g), as its fingerprint already took it
        return sorted(value)

    @field_validator("augment", mode="before")
    @classmethod
    def _one_augmentation_is_a_list(cls, value: Any) -> Any:
        # data.augment=hflip means [hflip], and hflip,rotate [hflip, rotate] (no name holds a comma)
        return [part.strip() for part in value.split(",")] if isinstance(value, str) else value

    @field_validator("pixel_spacing", mode="before")
    @classmethod
    def _spacing_choice(cls, value: Any) -> Any:
        # one message, not one per member of the union (the list's, then "should be 'dicom'": review 55j)
        if value is None or value == "dicom" or isinstance(value, (list, tuple)):
            return value
        if isinstance(value, str) and value.strip().lower() == "dicom":  # (review 55n: the hint was lost)
            raise ValueError("pixel_spacing takes dicom in lower case (did you mean 'dicom'?)")
        numbers = re.findall(r"\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+", str(value)) if isinstance(value, (str, int, float)) \
            and not isinstance(value, bool) and str(value) not in ("nan", "inf", "-inf") else []
        example = f"[{numbers[0]}, {numbers[-1] if len(numbers) > 1 else numbers[0]}]" if numbers else "[0.5, 0.5]"
        raise ValueError(f"pixel_spacing takes [rows, columns], the size of a pixel (e.g. data.pixel_spacing={example}), "
                         "or dicom")

    @field_validator("normalize", mode="before")
    @classmethod
    def _normalize_choice(cls, value: Any) -> Any:
        # one message instead of one per member of the union
        if not isinstance(value, (dict, ChannelStats)) and value not in ("split", "imagenet"):
            raise ValueError("use split, imagenet or {mean: [...], std: [...]}")
        return value

    def fixed_stats(self) -> dict[str, list[float]] | None:
        """The normalisation statistics set by ``normalize``; None: the training split's."""
        if self.normalize == "split":
            return None
        return dict(IMAGENET_STATS) if self.normalize == "imagenet" else self.normalize.model_dump()

    @property
    def task(self) -> str:
        return next(task for task, kinds in KINDS_OF_TASK.items() if self.kind in kinds)


def saved_data_section(section: dict[str, Any], absolute_root: str | None = None) -> dict[str, Any]:
    """A run's saved data section, readable by this version: earlier versions accepted (and
    ignored) ``class_names`` for kinds that name their classes, the folder-only keys for other
    kinds and the patch keys without ``patch_size``, which are now refused. ``absolute_root``:
    run.json's ``data_root``, where the run recorded it (its root wherever the command runs)."""
    saved_root = absolute_root if isinstance(absolute_root, str) and absolute_root else section.get("root")
    section = without_other_kinds_keys(section)  # ignored then, refused now (a stray class_names, root, ...)
    if section.get("patch_size") is None:  # (so were the patch keys without patch training)
        section = {k: v for k, v in section.items() if k not in PATCH_KEYS}
    return SavedSection(section, saved_root)


class SavedSection(dict):
    """A run's saved data section (a plain mapping of its keys) that remembers the root it was
    saved with, after overrides set another: ``without_other_kinds_keys`` keeps the run's
    data.exclude where the root given is the run's own folder written otherwise."""

    def __init__(self, section: dict[str, Any], saved_root: Any = None):
        super().__init__(section)
        self.saved_root = saved_root


def data_places(section: dict[str, Any] | None, root: str | Path | None = None) -> list[Path]:
    """The files and folders a data section reads (none for generated and embedded data): its
    file (npz, csv), its class folders' root (image_folder), or the image, mask and region
    folders and the annotation file under its root, not the rest of that folder (where a
    project may keep its runs). ``root``: the section's root as an absolute path (a run records
    it; its saved section's may be relative to where it trained)."""
    section = section or {}
    kind, root = section.get("kind", "digits"), Path(root or section.get("root") or "")
    if kind not in FILE_KINDS or not (root.name or section.get("root")):
        return []
    if kind in ("npz", "csv", "image_folder"):
        return [root]
    images, masks = section.get("images", "images"), section.get("masks", "masks")
    if kind in ("coco", "box_json"):
        return [root / images] + ([root / section["annotations"]] if section.get("annotations") else [])
    if kind == "mask_boxes":
        return [root / images, root / masks]
    bases = [root] + [root / d for d in (section.get("split_dirs") or {}).values()] + [
        root / s for s in ("train", "val", "test")]
    return [base / sub for base in dict.fromkeys(bases) for sub in (images, masks, section.get("roi")) if sub]


def without_other_kinds_keys(section: dict[str, Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    """A data section without the keys that do not apply to its kind (but those in ``keep``,
    which a user gave and should hear about): a run's section read as another kind (eval
    RUN data.kind=image_folder of a run trained on an npz) drops its class names and size."""
    kind, keep = section.get("kind", "digits"), set(keep)
    other_kinds = {"class_names": kind in SELF_NAMING_KINDS, "image_size": kind in FIXED_SIZE_KINDS,
                   "root": kind not in FILE_KINDS}
    kept = {k: v for k, v in section.items()
            if k in keep or (key_applies(k, kind) and not (other_kinds.get(k) and v is not None))}
    saved_root = getattr(section, "saved_root", None)
    if "root" in keep and "exclude" not in keep and kept.get("exclude") and \
            not same_folder(kept.get("root"), saved_root):
        # the run's exclusions name files of its own folder: on other data (eval RUN data.root=OTHER) they
        # would match nothing, or other files (said: the run's own data moved needs them given again)
        from ..data.exclusion import EXAMPLE_LIMIT, exclude_example
        from ..errors import warn_user

        listed = kept["exclude"]
        again = f" ({exclude_example(listed)})" if len(listed) <= EXAMPLE_LIMIT else " (the run's config.yaml lists it)"
        warn_user(f"the run's data.exclude ({shown_value(listed)}) names files of the folder it trained on "
                  f"and is not carried to data.root '{kept.get('root')}', another folder: to leave those files out "
                  f"here too, give the run's data.exclude as well{again}")
        kept.pop("exclude")
    return kept


def same_folder(given: Any, saved: Any) -> bool:
    """Whether data.root ``given`` names the folder ``saved`` (a run's saved data.root) names:
    the same path resolved, or the same file; a relative ``saved`` not found from here (the run
    trained from another folder) is that folder where ``given`` ends in its parts."""
    if not isinstance(given, str) or not isinstance(saved, str) or not given or not saved:
        return False
    if os.path.normpath(given) == os.path.normpath(saved):
        return True
    try:
        if os.path.exists(given) and os.path.exists(saved):
            return os.path.samefile(given, saved)
        # (an absolute root, run.json's data_root, is the folder itself: no guess by its last parts, review 56l)
        if not os.path.isabs(saved) and os.path.exists(given):
            parts = [p for p in Path(os.path.normpath(saved)).parts if p not in ("..", ".")]
            return bool(parts) and list(Path(os.path.abspath(given)).parts[-len(parts):]) == parts
    except OSError:
        return False
    return False
