"""Segmentation: [B, C, H, W] logits, per-pixel labels, ensemble = per-pixel mean of probabilities.

Pixels labelled ``IGNORE`` (255) count in no loss on outputs and in no metric (the knowledge
graph leaves them out of the distillation terms too). Loaders use it for pixels outside a
region of interest (a field-of-view mask)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.segmentation import NO_FOREGROUND, has_foreground
from ..arguments import check_class_count, check_flags
from ..errors import DataError
from ..segmentation_metrics import SegmentationMeter, segmentation_metric_names
from ..losses.segmentation import soft_dice_loss
from ..spatial import align_to, mean_at_largest
from .augment import Augmentation
from .classification import checked_class_weights

IGNORE = 255


def _mask_fix(y: torch.Tensor) -> str:
    """What to do about masks of another dtype or shape than [B, H, W] of class indices."""
    if y.ndim == 4 and y.shape[1] == 1:
        return ": drop each mask's channel axis in the dataset (mask[0])"
    if y.is_floating_point() and y.ndim == 3:
        if bool((y == y.round()).all()):
            return ": return each as whole numbers (mask.long())"
        return ": masks of fractions (a resized or [0, 1]-scaled mask) need thresholding, (mask > 0.5).long()"
    return ""


class SegmentationTask:
    """What a dense-prediction run trains and scores: per-pixel cross-entropy (with soft Dice,
    ``loss="ce+dice"``), every model's output checked to be [batch, classes, H, W], Dice, IoU,
    HD95 (``hd95=False`` leaves the distance out) and pixel figures per class and overall; pixels
    labelled 255 are ignored. ``pixel_spacing`` states HD95 in physical units."""

    name = "segmentation"
    default_monitor = "ensemble/dice"

    def __init__(self, num_classes: int, class_names: list[str] | None = None,
                 class_weights: torch.Tensor | None = None, augment: tuple[str, ...] | Augmentation = (), hd95: bool = True,
                 loss: str = "ce+dice", pixel_spacing: list[float] | None = None):
        num_classes = check_class_count("SegmentationTask", num_classes, least=1)  # (1: said below: it needs 2)
        check_flags("SegmentationTask", hd95=hd95)
        if loss not in ("ce", "ce+dice"):
            raise DataError(f"segmentation loss must be 'ce' or 'ce+dice', not '{loss}'")
        self.loss = loss
        self.supervised_name = loss  # the label term's name in the logs: ce or ce+dice
        if num_classes < 2:
            raise DataError("segmentation needs at least two classes (background and one structure)")
        self.num_classes = num_classes
        self.class_weights = checked_class_weights("SegmentationTask", class_weights, num_classes)
        self.augmentation = augment if isinstance(augment, Augmentation) else Augmentation(tuple(augment))
        self.augmentations = self.augmentation.names
        self.hd95 = hd95
        self.pixel_spacing = pixel_spacing  # of the images scored (data.pixel_spacing): HD95 in its unit
        self.name_classes(class_names or [str(c) for c in range(num_classes)])
        # The columns of the console table; every metric is in metrics.json / metrics.csv.
        # (missed beside hd95: the images HD95 leaves out, where a model finds nothing)
        # (two classes: f1, pooled over the split's pixels, is the figure DRIVE results are given in)
        self.summary_metrics = ("dice", "iou") + (("f1",) if num_classes == 2 else ()) + ("pixel_accuracy",) + (
            ("auc",) if num_classes == 2 else ()) + (("hd95",) if hd95 else ()) + ("missed",)

    def name_classes(self, class_names: list[str]) -> None:
        """Per-class metrics are named after these."""
        self.class_names = list(class_names)
        self.metric_names = segmentation_metric_names(self.class_names, self.hd95)

    def supervised_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        if targets.dtype != torch.long:  # (a Python user's uint8 masks, as PNGs read: cross_entropy takes int64)
            targets = targets.long()
        logits = align_to(logits, targets.shape[-2:]).float()
        ignored = targets == IGNORE
        count = int(ignored.sum())  # (one wait on the GPU for both questions)
        if count == targets.numel():  # a batch of crops wholly outside the region of interest
            return logits.masked_fill(ignored.unsqueeze(1), 0).sum() * 0.0  # (NaN there too: no NaN loss)
        if count:  # an ignored pixel's logits are set to 0: cross_entropy leaves them out of its value, yet a
            # NaN or inf there (outside a field of view, an fp16 overflow) would reach the gradient (NaN * 0)
            logits = logits.masked_fill(ignored.unsqueeze(1), 0)
        loss = F.cross_entropy(logits, targets, weight=weight, ignore_index=IGNORE)
        if self.loss == "ce+dice":  # soft Dice counters the small share of foreground pixels
            loss = loss + soft_dice_loss(logits, targets, IGNORE)
        return loss

    def scored_outputs(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The logits the metrics read: at the label maps' size, 0 at ignored pixels (filled, not
        indexed out: no wait on the GPU). A model may write NaN outside a field of view, which no
        loss and no metric reads; one that bleeds into a labelled pixel as the map is resized is
        read, and refused."""
        return align_to(logits, targets.shape[-2:]).masked_fill((targets == IGNORE).unsqueeze(1), 0)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)

    def ensemble(self, probabilities: list[torch.Tensor]) -> torch.Tensor:
        """The students' ensemble: the per-pixel mean of their class probabilities (each first
        resized to the largest output's size)."""
        return mean_at_largest(probabilities)

    def new_meter(self) -> SegmentationMeter:
        return SegmentationMeter(self.class_names, self.hd95, self.pixel_spacing)

    def augment(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
        return self.augmentation.images(x, y, generator) if self.augmentation else (x, y)

    def check_targets(self, y: torch.Tensor, split: str) -> None:
        """Label maps [B, H, W] of class indices 0..K-1, or 255 for ignored pixels."""
        if y.is_floating_point() or y.ndim != 3:
            raise DataError(f"the {split} masks are {str(y.dtype).removeprefix('torch.')} of shape {tuple(y.shape)}; "
                            "segmentation reads label maps [H, W] of class indices per image (255: ignored)"
                            f"{_mask_fix(y)}")
        stray = y[(y != IGNORE) & ((y < 0) | (y >= self.num_classes))]
        if stray.numel():
            raise DataError(f"the {split} masks hold value {int(stray[0])}, outside the {self.num_classes} classes "
                            f"0..{self.num_classes - 1} (255 marks ignored pixels): number the classes from 0, or "
                            "give DataSplits the right num_classes")

    def check_training_data(self, train) -> None:
        """Training masks (in memory) without a pixel of any foreground class teach every model
        to mark nothing: refused, as the image folders are. Datasets without a target tensor
        ``y`` are not scanned (their first validation and test batches are: ``doubtful_targets``)."""
        y = getattr(train, "y", None)
        if not isinstance(y, torch.Tensor) or y.ndim != 3 or not len(y) or has_foreground(y):
            return
        doubtful = self.doubtful_targets(y)
        raise DataError(f"{NO_FOREGROUND}: " + (f"they {doubtful.removeprefix('masks ')}" if doubtful else
                                                 "every model would learn to mark nothing; check the masks given "
                                                 "for training"))

    def doubtful_targets(self, y: torch.Tensor) -> str | None:
        """What is likely wrong with masks that pass ``check_targets``: only 0 and 255, binary
        masks saved as 0/255 whose foreground reads as ignored (every Dice then NaN)."""
        if self.num_classes == 2 and bool((y == IGNORE).any()) and bool(((y == 0) | (y == IGNORE)).all()):
            return ("masks hold only 0 and 255: 255 marks ignored pixels, so none is class 1; masks saved as 0/255 for "
                    "background/foreground need mask // 255 in the dataset (image files: data.binary_masks: true)")
        return None

    def check_output(self, name: str, logits: torch.Tensor, batch: int) -> None:
        if logits.ndim != 4 or logits.shape[0] != batch:
            raise DataError(
                f"model '{name}' outputs a tensor of shape {tuple(logits.shape)}; segmentation needs [batch, "
                f"{self.num_classes}, H, W] maps (a classifier gives [batch, classes]): use a segmentation model, "
                "such as the zoo's (in a config, teacher: {arch: unet} and students' arch: mobile_unet; "
                "recipes/shapes.yaml is a whole segmentation config)"
            )
        if logits.shape[1] != self.num_classes:
            # (review 50b: a one-channel sigmoid net, as MONAI and smp set-ups often are, read "1 classes")
            one = ("; a single map is a sigmoid set-up's (MONAI's out_channels=1): peerdistill takes one map per "
                   "class, background included, and applies a softmax" if logits.shape[1] == 1 else "")
            raise DataError(
                f"model '{name}' outputs {logits.shape[1]} class map{'s' if logits.shape[1] != 1 else ''} (maps "
                f"{tuple(logits.shape)}) but the data has {self.num_classes} classes: build every model with "
                f"num_classes={self.num_classes} (out_channels in MONAI and segmentation_models_pytorch){one}")
