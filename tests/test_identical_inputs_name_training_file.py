"""The warning of validation/test inputs identical to training inputs names, for each of the first
few, the held-out sample and the training sample it repeats: the file (its path from data.root)
where the data is read from files, the split and position for arrays given in Python."""

import re

import numpy as np
import pytest
from PIL import Image

from peerdistill import Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec
from peerdistill.config import DataSpec
from peerdistill.data import build_data
from peerdistill.errors import PeerdistillWarning
from peerdistill.models import SmallCNN
from peerdistill.tasks import ClassificationTask
from tests.conftest import _blobs


def _identical_warning(data) -> str:
    cohort = Cohort.from_modules([SmallCNN(1, data.num_classes, width=4)])
    trainer = Trainer(cohort, KnowledgeGraph([]), ClassificationTask(data.num_classes), train=TrainSpec(epochs=1),
                      progress=False)
    with pytest.warns(PeerdistillWarning) as caught:
        trainer.fit(data)
    said = [str(w.message) for w in caught if "identical to training inputs" in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in caught]
    return said[0]


def test_arrays_given_in_python_name_the_training_sample_each_repeats():
    (x, y), (xv, yv), (xt, yt) = (_blobs(n, s) for n, s in ((96, 0), (32, 1), (32, 2)))
    for held, trained in ((0, 10), (4, 70), (9, 33), (20, 5)):  # four repeats: the first three shown
        xv[held], yv[held] = x[trained], y[trained]
    said = _identical_warning(DataSplits.from_arrays(x, y, xv, yv, xt, yt))
    assert said.startswith("4 of 32 validation inputs are identical to training inputs ('sample 0 of the val split' = "
                           "'sample 10 of the train split', 'sample 4 of the val split' = 'sample 70 of the train "
                           "split', 'sample 9 of the val split' = 'sample 33 of the train split', ...): the epoch kept "
                           "as best"), said


def test_image_files_name_the_training_file_each_repeats(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "x"
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        for cls in ("a", "b", "c"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n // 3 + 1):
                Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    # a test file that is a training file saved again under another name, in another class folder
    (root / "test" / "b" / "copy.png").write_bytes((root / "train" / "c" / "2.png").read_bytes())
    data = build_data(DataSpec(kind="image_folder", root=str(root), grey=True))
    said = _identical_warning(data)
    assert re.match(r"1 of \d+ test inputs are identical to training inputs \('test/b/copy.png' = 'train/c/2.png'\): "
                    r"their figures are not held out; leave them out of the data: list them in data.exclude "
                    r"\('data.exclude=\[\"test/b/copy.png\"\]' on the command line\)$", said), said
