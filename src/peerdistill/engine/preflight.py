"""What the trainer checks before the first step: the data's classes and first batches, the
models' first outputs, and what to warn of in the training to come.

A mistake found here costs a message before any epoch; found later, it would cost the run
(the test split is read only after the last epoch) or pass in silence (a softmax before the
losses, masks of 0 and 255, a split lacking classes). ``Trainer`` takes these as a mixin,
as it takes ``RunRecords``: they read its task, cohort, data batches and speed settings.
"""

from __future__ import annotations

import re
import warnings

import torch
from torch.utils.data import ConcatDataset, Subset

from ..config.data_spec import IMAGE_FILE_KINDS
from ..data import DataSplits, TensorData
from ..data.image_io import GREY_FILES_SAID
from ..data.near_copies import near_copies
from ..data.splits import ADD_CHANNEL_AXIS, TO_CHANNELS_FIRST, standardised_spread
from ..errors import ConfigError, DataError, PeerdistillWarning, TrainingAdvice, warn_again, warn_user
from .evaluate import windows_per_image
from ..data.exclusion import exclude_example
from ..sample_names import names_in_messages, sample_names
from ..wording import first_few

# The share of the training split an epoch may leave out (the last, partial batch) before a run
# warns: some is the usual price of whole batches (53 of 1,077 at batch 64), a quarter is not.
LEFT_OUT_SHARE = 0.25
DENSE_OVERLAP = 0.75  # window overlaps above it are warned of: 4x the windows of 0.5 and more (100x at 0.95)


def _known_image_sizes(dataset) -> set[tuple[int, int]] | None:
    """The image sizes [H, W] of a dataset known without reading its images: those of arrays
    (``TensorData``, one size for all), also within a ``Subset`` or ``ConcatDataset`` of them;
    None for any other dataset, whose images are known only by reading them."""
    if isinstance(dataset, TensorData):
        return {tuple(int(n) for n in dataset.x.shape[-2:])} if dataset.x.ndim >= 3 else None
    if isinstance(dataset, Subset):
        return _known_image_sizes(dataset.dataset) if len(dataset) else set()
    if isinstance(dataset, ConcatDataset):
        parts = [_known_image_sizes(part) for part in dataset.datasets if len(part)]
        return None if any(p is None for p in parts) else set().union(*parts)
    return None


_SAID: dict = {}  # the training warnings given already, for the warnings filter's "default" action


class Preflight:
    """The trainer's checks before training (see the module's docstring)."""

    def _name_classes(self, data: DataSplits) -> None:
        """The task counts as many classes as the data (else the metrics are cut to its count),
        and per-class metrics are named after the task's class names while run.json records the
        data's, so they must agree: a task left with numbers as names takes the data's."""
        counted = getattr(self.task, "num_classes", None)
        if counted is not None and counted != data.num_classes:  # metrics would be cut to the task's count
            fix = ("build the detectors (and the task from their head layout) for the data's classes (in a config, "
                   "remove num_classes from the models' args: a detector takes its count from the data)"
                   if getattr(self.task, "name", "") == "detection" else
                   f"build the task for the data, {type(self.task).__name__}(data.num_classes, "
                   "class_names=data.class_names), and every model with as many outputs")
            raise DataError(f"the task has {counted} classes but the data {data.num_classes} "
                            f"({first_few(list(map(str, data.class_names)), 10)}): {fix}")
        names = getattr(self.task, "class_names", None)
        if names is None or list(names) == list(data.class_names):
            return
        if list(names) != [str(c) for c in range(len(names))]:
            raise DataError(f"the task names the classes {list(names)} but the data {list(data.class_names)}: "
                            f"build the task with the data's names, e.g. {type(self.task).__name__}"
                            "(data.num_classes, class_names=data.class_names)")
        self.task.name_classes(data.class_names)
        self._parse_monitor(self.monitor)  # a per-class monitor named by number no longer exists

    def _warned_about_training(self, data: DataSplits) -> list[str]:
        """``_warn_about_training``, and what it said (run.json keeps it for the report). The
        warnings are held while the checks run, then given to the caller's filters in order."""
        with warnings.catch_warnings(record=True) as held:
            warnings.simplefilter("always")
            self._warn_about_training(data)
        for caught in held:  # (a registry: said once, as where they were raised, under the default filter)
            warn_again(caught, registry=_SAID)
        return [*self.cohort.warnings_when_built,  # (said as the cohort was built)
                *(str(caught.message) for caught in held if issubclass(caught.category, PeerdistillWarning))]

    def _warn_about_training(self, data: DataSplits) -> None:
        """Warnings about the training to come, said once (main process), after a resume is accepted."""
        if not self.world.is_main:
            return
        epochs = self.train_spec.epochs
        if self.graph.edges and 0 < epochs <= self.rampup_epochs:
            mean = sum(self._ramp(epochs * (k + 0.5) / 1000) for k in range(1000)) / 1000
            # (review 55a: a run built in Python has no distill section; its ramp-up is the Trainer's)
            rampup = "the Trainer's rampup_epochs" if self.built_in_python else "distill.rampup_epochs"
            warn_user(f"{rampup} ({self.rampup_epochs}) is not shorter than train.epochs ({epochs}): "
                      f"the knowledge terms weigh {mean:.0%} of their weight on average over training (and "
                      f"{self._ramp(epochs):.0%} at its end), so this run distils little; train longer or lower "
                      f"{rampup}")
        patience, every = self.train_spec.patience, self.train_spec.val_every
        if patience is not None and 1 < every and patience < every < epochs:
            warn_user(f"train.patience ({patience}) is shorter than train.val_every ({every}): patience is judged "
                      f"at validated epochs only, so training stops at the first validation (every {every} epochs) "
                      f"that is not better than the best; to wait for k validations, set train.patience to k x "
                      f"{every} epochs")
        self._warn_of_sp_within_parts()
        self._warn_of_samples_left_out_each_epoch(len(data.train))
        self._warn_of_dense_windows(data)
        self._warn_if_standardised_off_scale(data)
        self._warn_of_grey_and_colour_mixed(data)
        self._warn_of_classes_missing_from_scored_splits(data)
        self._warn_of_training_inputs_held_out(data)
        if hasattr(self.task, "inspect_training_data"):
            self.task.inspect_training_data(data.train)
        if hasattr(self.task, "inspect_held_out"):
            for split, what in (("val", "validation"), ("test", "test")):
                self.task.inspect_held_out(data.split(split), what)

    def _warn_of_samples_left_out_each_epoch(self, n: int) -> None:
        """An epoch takes whole batches only, so a batch size dividing the training split badly
        leaves much of it out of every epoch (review 53c: 477 of 1,077 with batch 600, unsaid)."""
        size = self.train_spec.batch_size
        left = n % size if n > size and not self.patches else 0
        if left >= LEFT_OUT_SHARE * n:
            batches = n // size
            warn_user(f"train.batch_size {size} leaves {left:,} of the {n:,} training samples out of every epoch (an "
                      f"epoch takes whole batches: {batches} of {size}; others are left out each epoch): "
                      f"train.batch_size={n // (batches + 1)} takes {batches + 1} batches, leaving "
                      f"{n % (n // (batches + 1))} out", TrainingAdvice)

    def _warn_of_dense_windows(self, data: DataSplits) -> None:
        """A window overlap near 1 multiplies the windows every validation and test image is
        scored by (review 56i: 0.9 took a DRIVE image from 2.1 s to 67 s), unsaid before the first
        validation pass. Judged by the largest validation image where the sizes are known without
        reading the images (arrays), else by the first image, and said so: reading every image of
        a dataset to size it would cost what the warning is about."""
        if not self.window or self.window_overlap <= DENSE_OVERLAP or not len(data.val):
            return
        known = _known_image_sizes(data.val)
        sizes = known or {tuple(int(n) for n in data.val[0][0].shape[-2:])}
        size = max(sizes, key=lambda s: windows_per_image(s, self.window, self.window_overlap))
        many, usual = (windows_per_image(size, self.window, o) for o in (self.window_overlap, 0.5))
        if many <= usual:  # (an image within one window is scored whole: review 56l)
            return
        window, aside = f"{self.window[0]}x{self.window[1]}", ""
        if known is None and len(data.val) > 1:  # (review 57d: the others may be larger, and cost more)
            image = f"images of the first validation image's size, {size[0]}x{size[1]}, are each scored by"
            aside = " (the other validation images are not read for this warning: larger ones take more windows)"
        elif len(sizes) > 1:
            image = f"the largest validation image, {size[0]}x{size[1]}, is scored by"
        else:
            image = f"a {size[0]}x{size[1]} image is scored by"
        warn_user(f"data.window_overlap {self.window_overlap:g}: {image} {many:,} windows of {window}, "
                  f"{many / usual:.0f}x the {usual:,} of overlap 0.5, at every validation and test pass and in eval, "
                  f"predict and an export; 0.5 blends the windows' edges already{aside}", TrainingAdvice)

    def _warn_of_sp_within_parts(self) -> None:
        """Similarity-preserving KD compares a batch's samples with each other: cut into
        micro-batches or torchrun's shares, it compares them within each part, another term
        (larger the smaller the parts; review 49a), where every other term is a mean over samples."""
        edges = [e.name for e in self.graph.edges if e.kind == "sp"]
        share = self.train_spec.batch_size // self.world.size
        micro = self.train_spec.micro_batch_size
        cuts = ([f"train.micro_batch_size {micro} computes it within parts of at most {micro} samples"]
                if micro and micro < share else [])
        if self.world.distributed:
            cuts.insert(0, f"torchrun computes it within each of the {self.world.size} processes' {share} samples")
        if edges and cuts:
            warn_user(f"similarity-preserving KD ({first_few(edges, 3)}) compares the samples of a batch with each "
                      f"other, but {' and '.join(cuts)}: another term than the whole batch's, and larger the smaller "
                      "the parts (a weight tuned without parts does not carry over); for the whole batch's term, "
                      "train without micro-batches on one process, or choose another feature loss (at, hint)")

    def _warn_of_grey_and_colour_mixed(self, data: DataSplits) -> None:
        """A training split of grey and colour files (grey ones read as colour) often mixes
        sources, scanners or sites, which a model can tell apart by colour alone: said, with the
        counts (predict and eval then take grey inputs as no news). Worded for where the images
        came from, whoever built the trainer: image files (``data.info['files']``, or a config's
        file kind), which ``grey`` reads grey (``data.grey=true`` in a config, ``DataSpec(...,
        grey=True)`` in Python); or arrays, which are taken as given (passed to
        ``DataSplits.from_arrays``, or read from a .npz file: ``grey`` does not apply to them)."""
        share = self._training_profile(data).get("grey_share")
        n = len(data.train)
        kind = (self.run_info.get("data_spec") or {}).get("kind")
        from_files = data.info.get("files") is not None or kind in IMAGE_FILE_KINDS
        grey_key = "DataSpec(..., grey=True)" if self.built_in_python else "data.grey=true"
        # arrays read from a file (a config's or build_data's .npz) are saved anew; others passed anew
        verb = "save" if kind is not None or data.info.get("source") is not None else "pass"
        if share == 1 and not from_files:  # (review 57d: grey does not apply to arrays)
            warn_user(f"every one of the {n} training images has three equal channels (a grey image repeated "
                      f"three times): {verb} the arrays with one channel instead ([N, 1, H, W] or [N, H, W]), the "
                      "same information at a third of the input's size", TrainingAdvice)
        elif share == 1:  # (review 56j: a forgotten data.grey=true, recorded in run.json alone)
            warn_user(f"every one of the {n} training images is a grey file read as colour (its one "
                      f"channel repeated three times): {grey_key} reads them with one channel, the same "
                      "information at a third of the input's size", TrainingAdvice)
        if share is None or not 0 < share < 1:
            return
        grey = round(share * n)
        if not from_files:
            warn_user(f"{grey} of the {n} training images are grey (three equal channels) and the others colour: "
                      "if they come from different sources (scanners, sites, cameras), a model can learn colour as "
                      "a shortcut to them; check that each class has both kinds, or convert every image to grey "
                      "(one channel)")
            return
        if data.info.get(GREY_FILES_SAID):  # (said as the files were read, each named)
            return
        warn_user(f"{grey} of the {n} training images are grey files (read as colour, one channel "
                  f"repeated) and the others colour: if they come from different sources (scanners, sites, "
                  "cameras), a model can learn colour as a shortcut to them; check that each class has both kinds, "
                  f"or read every image grey ({grey_key})")

    def _warn_of_classes_missing_from_scored_splits(self, data: DataSplits) -> None:
        """A val or test split (in memory) lacking classes: a model that calls everything its one
        class scores accuracy 1 there, AUC is n/a, and balanced accuracy and macro F1 cover the
        classes present only. Said, with the split and the classes."""
        if getattr(self.task, "name", "") != "classification":
            return
        for split in ("val", "test"):
            part = getattr(data, split)
            if not isinstance(part, TensorData) or not len(part) or part.y.ndim != 1:
                continue
            present = set(torch.unique(part.y).tolist())
            missing = [name for c, name in enumerate(data.class_names) if c not in present]
            if missing and len(missing) < len(data.class_names):
                shown = first_few(missing, 5, quoted=True)
                warn_user(f"the {split} split holds no sample of {len(missing)} of the {len(data.class_names)} "
                          f"classes ({shown}): its AUC is n/a, balanced accuracy and macro F1 cover the classes it "
                          "holds only, and a model calling everything one of those scores well there; deal the "
                          "splits stratified (every class in each)")

    def _warn_of_training_inputs_held_out(self, data: DataSplits) -> None:
        """Validation and test inputs identical to training inputs (PneumoniaMNIST's validation
        split holds 8 of its training images; a file copied under another name; a split cut by
        hand), or near-copies of them (saved again as JPEG, resized, the next frame of a video:
        ``near_copies``), named where the data names its samples: the best epoch is chosen partly
        on images the models trained on, or the test figures are training figures in part."""
        if not isinstance(data.train, TensorData) or not len(data.train):
            return
        trained = _first_rows(data.train.digests())
        for split, what in (("val", "validation"), ("test", "test")):
            part = data.split(split)
            if part is data.train or not isinstance(part, TensorData) or not len(part):
                continue  # (the training split itself is said as such where the trainer sets up)
            # each repeat's training row: the warning names the training input it repeats
            repeats = {row: trained[d] for row, d in enumerate(part.digests()) if d in trained}
            repeated = list(repeats)
            near = near_copies(part.x, data.train.x, skip=set(repeated))
            if not repeated and not near:
                continue
            names = self._names_shown(data, split, len(part))
            trained_names = self._names_shown(data, "train", len(data.train))
            # data.exclude leaves files out; data named by rows (arrays) or not at all has none
            files = (sample_names(data.info, split) or ("",))[0] == "file"
            # (the patterns given come first in the example: an override replaces the list, review 56g)
            given = list((data.info.get("excluded") or {}).get("patterns") or {})
            # (the run's own folder once this run holds it: a dry run writes nothing there, review 56l)
            run = getattr(self, "_run", None)
            folder = run.path if run is not None and run.path.is_dir() else None
            where = "add them to data.exclude" if given else "list them in data.exclude"
            cost = ("the epoch kept as best is chosen partly on images the models trained on, its validation "
                    "figures are optimistic, and so is a threshold or temperature fitted on validation later "
                    "(--operating-point, --temperature-scaling)" if split == "val" else
                    "their figures are not held out")
            if repeated:
                pairs = [f"'{names[row]}' = '{trained_names[match]}'" for row, match in repeats.items()]
                which = f" ({first_few(pairs)})"
                pasted = [names[i] for i in repeated]
                how = (f"leave them out of the data: {where} "
                       f"({exclude_example(pasted, given, folder=folder)})" if files else
                       "remove their rows from the arrays (data.exclude leaves image files out, not rows)")
                warn_user(f"{len(repeated)} of {len(part)} {what} inputs are identical to training inputs{which}: "
                          f"{cost}; {how}")  # (review 55r: how was not said)
            if near:
                pairs = first_few([f"'{names[row]}' ~ '{trained_names[match]}'" for row, match in near])
                pasted = [names[row] for row, _ in near]
                leave = (f"leave one of each pair out: {where.replace('them', 'it')} "
                         f"({exclude_example(pasted, given, folder=folder)})" if files else
                         "remove one of each pair from the arrays")
                # (detection's kinds take no group key: review 45b followed the advice into a refusal)
                keep = (f"{leave}, or try another data.split_seed"
                        if getattr(self.task, "name", "") == "detection" else
                        # (review 53c: the key was advised to a run already dealing whole groups)
                        "check that the groups are the patients or videos meant (data.group_pattern or "
                        f"data.group_column: each pair lies in two groups), or {leave}"
                        if "groups" in data.info else
                        # (review 55r: hashed names hold no id to group by)
                        "keep near-copies in one split (data.group_pattern, for a patient or video id in the file "
                        f"names), or, where the names hold none, {leave}")
                warn_user(f"{len(near)} of {len(part)} {what} inputs are near-copies of training images ({pairs}: "
                          f"the same picture saved again or resized, or the next frame of a video?): {cost}; look at "
                          f"them, and {keep}")

    def _names_shown(self, data: DataSplits, split: str, count: int) -> list[str]:
        """How the warnings of held-out copies name each of ``split``'s ``count`` samples (as
        ``names_in_messages``), in the form data.exclude takes to leave out that sample alone."""
        return self._exclusion_names(data, split, names_in_messages(data.info, split, count))

    def _exclusion_names(self, data: DataSplits, split: str, names: list[str]) -> list[str]:
        """``names`` (samples of ``split``) as data.exclude should take them to leave out those
        samples alone: a bare id that another split's sample shares (split folders reusing file
        names: train/images/img03.png, val/images/img03.png) would leave out both, so it is given
        as its image file's path from data.root (a pattern with '/' is matched against that path),
        where the image/mask folders say which file it is."""
        shared = set()
        for other in ("train", "val", "test"):
            if other == split:
                continue
            known = sample_names(data.info, other)
            if known is not None and known[0] == "file":
                shared |= set(known[1])
        if not any("/" not in n and n in shared for n in names):
            return names
        paths = self._split_image_paths(data, split)
        return [paths.get(n, n) if "/" not in n and n in shared else n for n in names]

    def _split_image_paths(self, data: DataSplits, split: str) -> dict[str, str]:
        """For image/mask folders with split folders: each id of ``split``'s folder to its image
        file's path relative to data.root ('/'-separated); empty where that is not known."""
        from pathlib import Path

        from ..data.segmentation import files_by_key, split_folders

        spec = self._folders_spec(data)
        if spec is None:
            return {}
        root = Path(data.info["source"])
        dirs = split_folders(root, spec)
        folder = dirs.get(split) or (dirs.get("train") if split == "val" else None)
        if folder is None:  # (one folder cut into splits: ids are unique already)
            return {}
        try:
            found = files_by_key(root / folder / spec.images, spec.pattern)
        except (DataError, OSError):
            return {}
        if "data_spec" not in self.run_info and not self._ids_found(data, split, found):
            return {}  # (the default layout assumed for data read in Python is not this data's)
        out = {}
        for key, path in found.items():
            try:  # (as the loader joined it to data.root: a link's target is not what data.exclude sees)
                out[key] = Path(path).relative_to(root).as_posix()
            except ValueError:
                continue
        return out

    @staticmethod
    def _ids_found(data: DataSplits, split: str, found: dict) -> bool:
        """Whether every sample ``data`` names in ``split`` is an id of ``found`` (a folder's image
        files by id): the folder read is the one the split was read from."""
        known = sample_names(data.info, split)
        return known is not None and known[0] == "file" and set(known[1]) <= set(found)

    def _folders_spec(self, data: DataSplits):
        """The image/mask folders' layout the data was read with (its images folder, id pattern,
        split folders): the run's recorded data spec; for data read in Python (no record), the
        default layout, which ``_split_image_paths`` checks against the split's ids; None where the
        data is not read from such folders."""
        from ..config.data_spec import DataSpec

        if not data.info.get("source"):
            return None
        given = self.run_info.get("data_spec")
        if given is None:  # (a Trainer built in Python: data.info keeps no layout)
            given = {"kind": "folders", "root": str(data.info["source"])}
        if given.get("kind") != "folders":
            return None
        try:
            return DataSpec(**given)
        except Exception:  # (a record from another version: the bare names stand)
            return None

    @staticmethod
    def _warn_if_standardised_off_scale(data: DataSplits) -> None:
        """Statistics given on another scale than the inputs (data.normalize {mean: [127.5], std:
        [58.4]} for images in [0, 1]) leave the training images nowhere near mean 0 and std 1:
        every input then looks alike to the models."""
        spread = standardised_spread(data.train)
        if spread is None or data.stats is None:
            return
        mean, std = spread
        varying = std > 0  # a constant channel says nothing of the scale
        if ((std[varying] < 0.05) | (std[varying] > 20)).any() or (mean[varying].abs() > 10).any():
            warn_user(f"the training images, standardised by the data's statistics (mean "
                      f"{[round(v, 4) for v in data.stats['mean']]}, std {[round(v, 4) for v in data.stats['std']]}),"
                      f" have per-channel mean {[round(v, 3) for v in mean.tolist()]} and std "
                      f"{[round(v, 4) for v in std.tolist()]}, far from 0 and 1: the statistics are on another "
                      "scale than the inputs, which image files give in [0, 1] (divide statistics of 0..255 "
                      "values by 255), or leave data.normalize at split")

    def _probe_forward(self, x: torch.Tensor):
        try:
            with torch.no_grad():
                return self.cohort.forward(x)
        except (RuntimeError, ValueError, TypeError) as exc:
            failing = self._failing_model(x)
            dtypes = {p.dtype for m in self.cohort.members if f"'{m.name}'" in failing
                      for p in m.module.parameters() if p.is_floating_point()} - {x.dtype}
            if dtypes:  # a model of another precision than the data: its in_channels are not the matter
                raise ConfigError(f"{failing} has {', '.join(str(d).removeprefix('torch.') for d in dtypes)} "
                                  f"parameters but the data is {str(x.dtype).removeprefix('torch.')}: call .float() "
                                  "on it (mixed precision is train.precision's)") from None
            layout = ("; or, with the models in channels-last memory format (train.channels_last), a .view() "
                      "that needs .reshape() or train.channels_last=false") if self.speed.channels_last else ""
            raise ConfigError(
                f"{failing} failed on inputs of shape {tuple(x.shape[1:])} from the data: "
                f"{str(exc).splitlines()[0]}; {_channels_advice(str(exc))}{layout}"
            ) from None

    def _failing_model(self, x: torch.Tensor) -> str:
        """Which model a cohort's failed forward came from: the first that fails alone."""
        for m in self.cohort.members:
            try:
                with torch.no_grad():
                    m.module(x)
            except Exception:
                return f"model '{m.name}'"
        return "a model"

    def _check_batch(self, x: torch.Tensor, y: torch.Tensor, split: str) -> None:
        """The first batch of a split, before any model sees it: float images, and targets the
        task can read (a Dataset given in Python is otherwise unchecked)."""
        if not x.is_floating_point():
            raise DataError(f"the {split} images are {str(x.dtype).removeprefix('torch.')}, not floating point: "
                            "return float tensors from the dataset (uint8 pixels divided by 255, for example)")
        if hasattr(self.task, "check_targets"):
            self.task.check_targets(y, split)
        # The run records input_shape and sizes its cost figures and exports by it: a classifier
        # trains at that shape (it may be scored at another, as FixRes does); dense tasks may
        # crop or meet images of several sizes, so only the channels must agree there.
        declared, seen = tuple(self._declared_input_shape), tuple(x.shape[1:])
        whole = getattr(self.task, "name", "") == "classification" and split == "training"
        if (seen != declared) if whole else (seen[:1] != declared[:1]):
            raise DataError(f"the {split} inputs have shape {seen} but the data declares input_shape={declared}: "
                            f"{_input_shape_fix(seen, declared)}")

    def _warn_of_doubtful_targets(self, first: dict[str, torch.Tensor]) -> None:
        """Targets a task reads but likely not as meant (masks of 0 and 255), said once for the
        splits whose first batch holds them."""
        doubtful = getattr(self.task, "doubtful_targets", None)
        said = {split: doubtful(y) for split, y in first.items()} if doubtful else {}
        splits = [split for split, problem in said.items() if problem]
        if splits:
            warn_user(f"the first {' and '.join(splits)} {said[splits[0]]}")

    def _check_outputs(self, out, batch: int) -> None:
        """The models' outputs of a batch of ``batch`` inputs: floating-point logits the task takes.
        A refusal is marked as found by every process (each runs the same models: said once a node)."""
        try:
            for name, logits in out.logits.items():
                if isinstance(logits, torch.Tensor) and not logits.is_floating_point():
                    raise DataError(f"model '{name}' outputs {str(logits.dtype).removeprefix('torch.')} values; "
                                    "the class scores (logits) must be floating point: return them before any "
                                    "rounding or argmax")
                self.task.check_output(name, logits, batch)
        except (DataError, ConfigError) as exc:
            raise exc.found_by_every_process() from None

    def _warn_of_probabilities(self, out) -> None:
        """Softmax over a model's probabilities flattens them (the losses apply softmax to what
        a model returns; at T=4 a teacher's soft targets become almost uniform): a model ending
        in nn.Softmax trains worse without a word. Random logits are not non-negative rows
        summing to 1, so this does not fire for an untrained model."""
        if getattr(self.task, "name", "") not in ("classification", "segmentation"):
            return
        for name, logits in out.logits.items():
            scores = logits.detach().float()
            if scores.shape[1] > 1 and bool((scores >= 0).all()) and torch.allclose(
                    scores.sum(dim=1), torch.ones((), device=scores.device), atol=1e-3):
                warn_user(f"model '{name}' seems to return probabilities (its outputs are non-negative and sum "
                          "to 1 over the classes): peerdistill takes logits and applies softmax itself, so "
                          "training and distillation see them flattened; drop its final Softmax (a "
                          "LogSoftmax is fine)")

    def _warn_of_random_evaluation(self, x: torch.Tensor, out) -> None:
        """A model whose eval-mode output differs on the same input (a functional dropout left on,
        ``F.dropout(x, p)`` without ``training=self.training``): its validation picks, test figures
        and export's parity check all see noise (review 51i: export blamed ONNX). A second
        forward, where a model meant to be deterministic draws no random numbers."""
        again = self._probe_forward(x)
        for name, logits in out.logits.items():
            other = again.logits.get(name)
            if isinstance(logits, torch.Tensor) and isinstance(other, torch.Tensor) and logits.shape == other.shape \
                    and not torch.allclose(logits.float(), other.float(), rtol=1e-3, atol=1e-4):
                warn_user(f"model '{name}' gives different outputs for the same input in evaluation mode (up to "
                          f"{float((logits.float() - other.float()).abs().max()):.3g} apart): its validation, test "
                          "and exported figures would be random. A dropout left on is the usual cause: "
                          "F.dropout(x, p) without training=self.training, or a random draw in forward; make "
                          "evaluation deterministic", TrainingAdvice)


def _first_rows(digests: list[bytes]) -> dict[bytes, int]:
    """Each input digest to the first row holding it: the training input a held-out copy repeats."""
    first: dict[bytes, int] = {}
    for row, digest in enumerate(digests):
        first.setdefault(digest, row)
    return first


def _input_shape_fix(seen: tuple[int, ...], declared: tuple[int, ...]) -> str:
    """What to do about inputs of another shape than declared: the two usual slips, named."""
    if len(declared) == 3 and seen == declared[1:]:
        return f"each input lacks its channel axis: {ADD_CHANNEL_AXIS}"
    if len(declared) == 3 and len(seen) == 3 and seen == (*declared[1:], declared[0]):
        return f"each input is channels-last [H, W, C]: {TO_CHANNELS_FIRST}"
    return "give DataSplits the shape of one input"


def _channels_advice(error: str) -> str:
    """What to check after a model's first forward failed: when torch says the channels differ,
    how to give the model the data's channel count (a factory may name it otherwise than
    ``in_channels``, which peerdistill passes only to one that names it), or the data the model's."""
    if re.search(r"forward\(\) takes 1 positional argument but 2 were given", error):  # (forward(*, pixel_values))
        return ("peerdistill calls model(x) with the images as its one positional argument: wrap a model that takes "
                "them by keyword in a module whose forward(x) calls it so, net(pixel_values=x)")
    found = re.search(r"to have (\d+) channels, but got (\d+) channels", error)
    if not found:
        return "check its in_channels and the input size it expects"
    wants, has = (int(n) for n in found.groups())
    advice = (f"the model takes {wants} channel(s), the data gives {has}: set the channel count in its args "
              "(in_channels, or what its factory calls it: timm's in_chans; peerdistill passes in_channels only to a "
              "factory that names it)")
    if wants == 3 and has == 1:
        advice += (", or, for a colour model (pretrained), give it the data as colour: image files are read so "
                   "unless data.grey=true, and arrays through a wrapper repeating the channel (README, 'A colour "
                   "teacher on grey data')")
    return advice
