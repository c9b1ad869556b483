"""The identical/near-copy warnings' ready-to-paste data.exclude, where split folders reuse file
names (train/images/img03.png, val/images/img03.png, test/images/img03.png): a bare id would
leave out the same-named files of every split, so the advice names the held-out file by its path
from data.root, and pasted it leaves out that one sample and no other."""

import json
import re
import shlex
import shutil

import numpy as np
from PIL import Image

from peerdistill.cli import main


def _split_folders(root, copy_of=None, near=False):
    """train/val/test, each images/ and masks/ of img00..img05.png, distinct pictures; with
    ``copy_of`` (held-out split, id, training id), that held-out pair is a copy of a training pair
    (``near``: its image saved again a shade brighter, a near-copy, not identical)."""
    rng = np.random.default_rng(0)
    pairs = {(s, i): ((rng.random((16, 16, 3)) * 200).astype(np.uint8), (rng.random((16, 16)) > 0.5).astype(np.uint8))
             for s in ("train", "val", "test") for i in range(6)}
    if copy_of:
        split, i, j = copy_of
        image, mask = pairs[("train", j)]
        pairs[(split, i)] = (image + 3 if near else image), mask
    for (s, i), (image, mask) in pairs.items():
        for sub, array in (("images", image), ("masks", mask)):
            (root / s / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / s / sub / f"img{i:02d}.png")


def _args(root, out, *more):
    config = root.parent / "seg.yaml"
    config.write_text("name: sp\ntask: segmentation\ndata: {kind: folders}\n"
                      "students:\n  - {arch: mobile_unet, args: {width: 4, depth: 2}}\n"
                      "distill: {preset: independent}\ntrain: {epochs: 1, batch_size: 6}\n")
    return ["train", str(config), f"data.root={root}", f"out_dir={out}", *more, "--dry-run"]


def _pasted(err: str, pair: str, said_of: str = "identical to training inputs") -> list[str]:
    """The data.exclude list the identical-input warning (or the one ``said_of``) gives, where it
    names ``pair`` (the held-out file and the training file it repeats)."""
    said = " ".join(err.split())
    found = re.search(re.escape(f"{said_of} ({pair}") + r".*?\((data\.exclude=\S+|'data\.exclude=[^']*') on the "
                      r"command line\)", said)
    assert found, said
    return json.loads(shlex.split(found.group(1))[0].partition("=")[2])


def test_identical_val_pair_is_named_by_its_path_and_the_paste_leaves_out_it_alone(tmp_path, capsys):
    root = tmp_path / "sp"
    _split_folders(root, copy_of=("val", 3, 5))
    assert main(_args(root, tmp_path / "runs")) == 0
    # both named by their paths: each id is in every split
    pasted = _pasted(capsys.readouterr().err, "'val/images/img03.png' = 'train/images/img05.png'")
    assert pasted == ["val/images/img03.png"]
    assert main(_args(root, tmp_path / "runs", "data.exclude=" + json.dumps(pasted))) == 0
    said = capsys.readouterr()
    err, out = " ".join(said.err.split()), " ".join(said.out.split())
    assert "data.exclude left out 1 sample of" in err and "identical to training inputs" not in err
    # the innocent train/ and test/ img03 pairs are kept: only val lost one
    assert "data: 6 train, 5 val, 6 test samples" in out


def test_bare_id_stays_where_no_other_split_shares_it(tmp_path, capsys):
    root = tmp_path / "sp"
    _split_folders(root, copy_of=("val", 3, 5))
    for sub in ("images", "masks"):  # the training and test img03 renamed: the id names one sample alone
        for s in ("train", "test"):
            (root / s / sub / "img03.png").rename(root / s / sub / "other03.png")
    assert main(_args(root, tmp_path / "runs")) == 0
    # (the training img05 is named by its path: val and test hold an img05 too)
    assert _pasted(capsys.readouterr().err, "'img03' = 'train/images/img05.png'") == ["img03"]


def test_near_copy_val_pair_is_named_by_its_path_and_the_paste_leaves_out_it_alone(tmp_path, capsys):
    root = tmp_path / "sp"
    _split_folders(root, copy_of=("val", 3, 5), near=True)
    assert main(_args(root, tmp_path / "runs")) == 0
    err = capsys.readouterr().err
    assert "identical to training inputs" not in " ".join(err.split())
    pasted = _pasted(err, "'val/images/img03.png' ~ 'train/images/img05.png'", "near-copies of training images")
    assert pasted == ["val/images/img03.png"]
    assert main(_args(root, tmp_path / "runs", "data.exclude=" + json.dumps(pasted))) == 0
    said = capsys.readouterr()
    err, out = " ".join(said.err.split()), " ".join(said.out.split())
    assert "data.exclude left out 1 sample of" in err and "near-copies of training images" not in err
    assert "data: 6 train, 5 val, 6 test samples" in out


def _warned_in_python(spec, *what):
    """The warnings of held-out copies a Trainer built in Python (no recorded data spec) gives."""
    import warnings

    from peerdistill import Cohort, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.data import build_data
    from peerdistill.models import UNet
    from peerdistill.tasks import SegmentationTask

    trainer = Trainer(Cohort.from_modules([UNet(3, 2, width=4, depth=1)]), KnowledgeGraph([]), SegmentationTask(2),
                      train=TrainSpec(epochs=1, batch_size=6), progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(build_data(spec))
    return [str(w.message) for w in caught if any(s in str(w.message) for s in what)]


def test_a_trainer_built_in_python_names_the_files_by_their_paths_too(tmp_path):
    from peerdistill.config import DataSpec

    root = tmp_path / "sp"
    _split_folders(root, copy_of=("val", 3, 5))
    said, = _warned_in_python(DataSpec(kind="folders", root=str(root)), "identical to training inputs")
    assert "('val/images/img03.png' = 'train/images/img05.png')" in said
    assert _pasted(said, "'val/images/img03.png' = 'train/images/img05.png'") == ["val/images/img03.png"]
    _split_folders(tmp_path / "near", copy_of=("test", 1, 2), near=True)
    said, = _warned_in_python(DataSpec(kind="folders", root=str(tmp_path / "near")), "near-copies of training")
    assert _pasted(said, "'test/images/img01.png' ~ 'train/images/img02.png'",
                   "near-copies of training images") == ["test/images/img01.png"]


def test_a_layout_other_than_the_default_read_in_python_keeps_the_bare_ids(tmp_path):
    """Data read in Python leaves no record of its layout: the default one (images/, the file name
    as id) is taken where it gives the split's ids, never a path to another file."""
    from peerdistill.config import DataSpec

    root = tmp_path / "sp"
    _split_folders(root, copy_of=("val", 3, 5))
    for image in root.glob("*/*/*.png"):  # ids by a pattern: img03_a.png pairs by 'img03'
        image.rename(image.with_name(f"{image.stem}_a.png"))
    said, = _warned_in_python(DataSpec(kind="folders", root=str(root), pattern=r"^(img\d+)_"),
                              "identical to training inputs")
    assert _pasted(said, "'img03' = 'img05'") == ["img03"]
    # images read from scans/ beside an images/ folder of some of them (not read): not named by it
    root = tmp_path / "other"
    _split_folders(root, copy_of=("val", 3, 5))
    for folder in root.glob("*/images"):
        shutil.copytree(folder, folder.with_name("scans"))
        for image in folder.glob("*.png"):
            if image.stem not in ("img03", "img05"):
                image.unlink()
    said, = _warned_in_python(DataSpec(kind="folders", root=str(root), images="scans"), "identical to training inputs")
    assert _pasted(said, "'img03' = 'img05'") == ["img03"]
