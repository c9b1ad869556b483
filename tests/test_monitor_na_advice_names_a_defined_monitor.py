"""A monitor n/a in every epoch: the warning suggests a monitor the validation split did define
(ensemble/pixel_accuracy for segmentation, as docs/segmentation.md says), never the one that failed."""

import math

import numpy as np
import pytest

from peerdistill import ClassificationTask, Cohort, KnowledgeGraph, SegmentationTask, Trainer, TrainSpec
from peerdistill.data.segmentation import segmentation_splits
from peerdistill.errors import PeerdistillWarning
from peerdistill.models import SmallCNN, UNet


def _never_defined(trainer, metric):
    """The validation's ``metric`` of the ensemble reads n/a every epoch (as Dice does on val masks
    without foreground that nothing is predicted on); every other figure is the real one."""
    evaluate = trainer._evaluate

    def scored(batches, where, *shown):
        result = evaluate(batches, where, *shown)
        if where.startswith("the validation split"):
            result["ensemble"][metric] = math.nan
        return result

    trainer._evaluate = scored


def _said(trainer, data) -> str:
    with pytest.warns(PeerdistillWarning) as caught:
        result = trainer.fit(data)
    assert result.monitor_undefined
    return next(str(w.message) for w in caught if "n/a in every epoch" in str(w.message))


def test_segmentation_dice_na_suggests_pixel_accuracy_not_dice():
    rng = np.random.default_rng(0)
    images = [rng.random((n, 8, 8)).astype(np.float32) for n in (6, 4, 4)]
    masks = [(image > 0.5).astype(np.int64) for image in images]
    data = segmentation_splits(images, masks)
    trainer = Trainer(Cohort.from_modules([UNet(1, 2, width=4, depth=1)]), KnowledgeGraph([]), SegmentationTask(2),
                      train=TrainSpec(epochs=1, batch_size=2), progress=False)
    _never_defined(trainer, "dice")
    said = _said(trainer, data)
    assert said.startswith("val ensemble/dice was n/a in every epoch")
    assert said.endswith("monitor a figure the validation split defines (train.monitor, e.g. "
                         "ensemble/pixel_accuracy)")
    assert "e.g. ensemble/dice" not in said


def test_classification_accuracy_na_suggests_another_figure(tiny_data):
    trainer = Trainer(Cohort.from_modules([SmallCNN(1, 3, width=4)]), KnowledgeGraph([]), ClassificationTask(3),
                      train=TrainSpec(epochs=1, batch_size=32), progress=False)
    _never_defined(trainer, "accuracy")
    said = _said(trainer, tiny_data)
    assert said.endswith("(train.monitor, e.g. ensemble/balanced_accuracy)")


def test_no_suggestion_where_no_other_figure_is_defined(tiny_data):
    trainer = Trainer(Cohort.from_modules([SmallCNN(1, 3, width=4)]), KnowledgeGraph([]), ClassificationTask(3),
                      train=TrainSpec(epochs=1, batch_size=32), progress=False)
    evaluate = trainer._evaluate

    def all_na(batches, where, *shown):
        result = evaluate(batches, where, *shown)
        if where.startswith("the validation split"):
            for model in result.values():
                for key in list(model):
                    if isinstance(model[key], float):
                        model[key] = math.nan
        return result

    trainer._evaluate = all_na
    said = _said(trainer, tiny_data)
    assert said.endswith("monitor a figure the validation split defines (train.monitor)")
