"""The identical/near-copy warnings' ready-to-paste data.exclude, where split folders reuse file
names (train/images/img03.png, val/images/img03.png, test/images/img03.png): a bare id would
leave out the same-named files of every split, so the advice names the held-out file by its path
from data.root, and pasted it leaves out that one sample and no other."""

import json
import re
import shlex

import numpy as np
from PIL import Image

from peerdistill.cli import main


def _split_folders(root, copy_of=None):
    """train/val/test, each images/ and masks/ of img00..img05.png, distinct pictures; with
    ``copy_of`` (held-out split, id, training id), that held-out pair is a copy of a training pair."""
    rng = np.random.default_rng(0)
    pairs = {(s, i): ((rng.random((16, 16, 3)) * 255).astype(np.uint8), (rng.random((16, 16)) > 0.5).astype(np.uint8))
             for s in ("train", "val", "test") for i in range(6)}
    if copy_of:
        split, i, j = copy_of
        pairs[(split, i)] = pairs[("train", j)]
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


def _pasted(err: str, pair: str) -> list[str]:
    """The data.exclude list the identical-input warning gives, where it names ``pair`` (the held-out
    file and the training file it repeats)."""
    said = " ".join(err.split())
    found = re.search(r"identical to training inputs \(" + re.escape(pair) + r"\).*?\((data\.exclude=\S+|"
                      r"'data\.exclude=[^']*') on the command line\)", said)
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
