"""Held-out images that are near-copies of training images (saved again as JPEG, resized, the
next frame of a video): found against a naive recomputation, and warned of as training starts."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from peerdistill import Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec, ClassificationTask
from peerdistill.data import near_copies as near
from peerdistill.errors import PeerdistillWarning
from peerdistill.models import SmallCNN

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _fundus_like(n: int, seed: int, size: int = 48) -> torch.Tensor:
    """Distinct images that share most of their look, as fundus photographs share a bright round
    field of view on black: without the set's mean taken out, distinct ones would read as copies."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((size, size))
    radius = np.sqrt((rows - size / 2) ** 2 + (cols - size / 2) ** 2) / size
    disk = torch.tensor(np.clip((0.45 - radius) / 0.05, 0, 1), dtype=torch.float32)
    detail = F.interpolate(torch.tensor(rng.random((n, 1, 6, 6)), dtype=torch.float32), size=size, mode="bicubic",
                           align_corners=False)
    return (0.7 * disk + 0.3 * detail * disk).clamp(0, 1)


def _jpeg_again(image: torch.Tensor, quality: int = 75) -> torch.Tensor:
    buffer = io.BytesIO()
    Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return torch.tensor(np.asarray(Image.open(buffer)), dtype=torch.float32)[None] / 255


def _resized_and_back(images: torch.Tensor, side: int) -> torch.Tensor:
    smaller = F.interpolate(images, size=side, mode="bilinear", antialias=True)
    return F.interpolate(smaller, size=images.shape[-1], mode="bilinear")


def _naive_closest(held_out: torch.Tensor, training: torch.Tensor) -> list[tuple[int, float]]:
    """Per held-out image, its closest training image and their cosine, by loops over 3x3 blocks
    (48 = 16 x 3): each thumbnail's pattern (centred, unit length) less the set's mean pattern,
    made a pattern again: the rule of near_copies, written out."""
    def thumbnail(image):
        grey = image.mean(0)
        return torch.tensor([[grey[3 * r:3 * r + 3, 3 * c:3 * c + 3].mean().item() for c in range(16)]
                             for r in range(16)]).flatten()

    def pattern(t):  # centred, of unit length
        t = t - t.mean()
        return t / t.norm()

    trained = [pattern(thumbnail(image)) for image in training]
    shared = sum(trained) / len(trained)
    trained = [pattern(t - shared) for t in trained]
    closest = []
    for image in held_out:
        asked = pattern(pattern(thumbnail(image)) - shared)
        cosines = [float(asked @ t) for t in trained]
        closest.append((int(np.argmax(cosines)), max(cosines)))
    return closest


def test_a_training_image_saved_again_is_found_and_look_alikes_are_not():
    training = _fundus_like(40, 0)
    look_alikes = _fundus_like(6, 1)
    held_out = torch.stack([_jpeg_again(training[3]), _jpeg_again(training[7], 50), training[11], *look_alikes])
    found = near.near_copies(held_out, training)
    assert found == [(0, 3), (1, 7), (2, 11)]
    assert near.near_copies(held_out, training, skip={2}) == [(0, 3), (1, 7)]  # (identical ones, said apart)
    naive = _naive_closest(held_out, training)
    assert [(row, match) for row, (match, cosine) in enumerate(naive) if cosine >= near.NEAR_COPY_SIMILARITY] == found
    assert min(cosine for _, cosine in naive[:3]) > 0.99 and max(cosine for _, cosine in naive[3:]) < 0.9
    # the look-alikes are alike before the set's mean is taken out: the case a plain thumbnail fails
    grey = F.adaptive_avg_pool2d(torch.cat([training, look_alikes]), 16).flatten(1)
    grey = grey - grey.mean(1, keepdim=True)
    grey = grey / grey.norm(dim=1, keepdim=True)
    assert (grey[40:] @ grey[:40].T).max() > near.NEAR_COPY_SIMILARITY


def test_faded_images_are_not_near_copies_of_one_another():
    # less the set's mean, images of little contrast were each that mean's negative nearly: alike
    training = _fundus_like(40, 0)
    faded = 0.5 + (_fundus_like(20, 1) - 0.5) * 0.1
    assert near.near_copies(faded, training) == []
    assert near.near_copies(0.5 + (training[:5] - 0.5) * 0.1, training) == [(i, i) for i in range(5)]  # (copies, faded)


def test_a_flat_image_is_not_compared():
    training = _fundus_like(20, 0)
    flat = torch.zeros(1, 1, 48, 48)
    assert near.near_copies(torch.cat([flat, flat + 1]), torch.cat([training, flat])) == []


@pytest.mark.parametrize("held_out, training", [
    (torch.rand(4, 1, 8, 8), torch.rand(10, 1, 8, 8)),  # smaller than a thumbnail: look-alikes are many
    (torch.rand(4, 20), torch.rand(10, 20)),  # not images
    (torch.rand(0, 1, 32, 32), torch.rand(10, 1, 32, 32)),
])
def test_inputs_a_thumbnail_cannot_compare_are_not_compared(held_out, training):
    held_out[:1] = training[:1]
    assert near.near_copies(held_out, training) == []


def test_sets_too_large_to_compare_are_not_compared(monkeypatch):
    training = _fundus_like(20, 0)
    assert near.near_copies(training[:3], training) == [(0, 0), (1, 1), (2, 2)]
    monkeypatch.setattr(near, "MAX_PAIRS", 59)
    assert near.near_copies(training[:3], training) == []


def test_near_copies_among_held_out_images_are_warned_of_naming_both_files(tmp_path):
    training = _fundus_like(60, 0)
    y = torch.arange(60) % 2
    test = torch.cat([_fundus_like(20, 2), _jpeg_again(training[5])[None]])
    data = DataSplits.from_arrays(training.numpy(), y.numpy(), _fundus_like(20, 1).numpy(), np.arange(20) % 2,
                                  test.numpy(), np.arange(21) % 2)
    data.info["files"] = {split: [f"{split}/{i}.png" for i in range(count)]
                          for split, count in (("train", 60), ("val", 20), ("test", 21))}
    cohort = Cohort.from_modules([SmallCNN(1, 2, width=4), SmallCNN(1, 2, width=4)])
    trainer = Trainer(cohort, KnowledgeGraph([]), ClassificationTask(2), train=TrainSpec(epochs=1),
                      run_dir=tmp_path / "r", progress=False)
    with pytest.warns(PeerdistillWarning, match=r"^1 of 21 test inputs are near-copies of training images \('test/20.png' "
                                                r"~ 'train/5.png': the same picture saved again or resized, or the next "
                                                r"frame of a video\?\): their figures are not held out; look at them, "
                                                r"and keep near-copies in one split \(data.group_pattern"):
        trainer.fit(data)
    # detection's data kinds take no group key (review 45b): the advice is what they allow
    import types

    trainer.task = types.SimpleNamespace(name="detection")
    with pytest.warns(PeerdistillWarning, match=r"look at them, and leave one of each pair out: list it in data.exclude "
                                                r"\('data.exclude=\[\"test/20.png\"\]' on the command line\), or "
                                                r"try another data.split_seed$"):
        trainer._warn_of_training_inputs_held_out(data)
    # a run dealing whole groups already is not advised the key it set (review 53c)
    trainer.task = ClassificationTask(2)
    data.info["groups"] = {"train": 30, "val": 10, "test": 11}
    with pytest.warns(PeerdistillWarning, match=r"look at them, and check that the groups are the patients or videos "
                                                r"meant \(data.group_pattern or data.group_column: each pair lies in two "
                                                r"groups\), or leave one of each pair out: list it in data.exclude "
                                                r"\('data.exclude=\[\"test/20.png\"\]' on the command line\)$"):
        trainer._warn_of_training_inputs_held_out(data)
    # patterns given already come first in the example: pasted, the override replaces the list (review 56g)
    data.info["excluded"] = {"patterns": {"a/9.png": 1}, "samples": 1, "files": ["a/9.png"]}
    with pytest.warns(PeerdistillWarning, match=r"or leave one of each pair out: add it to data.exclude "
                                                r"\('data.exclude=\[\"a/9.png\", \"test/20.png\"\]' on the command "
                                                r"line, the 1 pattern given first\)$"):
        trainer._warn_of_training_inputs_held_out(data)
    data.info.pop("excluded")
    # images without file names (arrays from Python): no setting names them
    data.info.pop("files")
    data.info.pop("groups")
    with pytest.warns(PeerdistillWarning, match=r"or, where the names hold none, remove one of each pair from the "
                                                r"arrays$"):
        trainer._warn_of_training_inputs_held_out(data)


@pytest.mark.skipif(not (SHARED / "pneumoniamnist.npz").is_file(),
                    reason="needs ../shared/data/pneumoniamnist.npz (the project's real data, beside the repository)")
def test_pneumoniamnist_holds_no_near_copy_beyond_its_identical_validation_images():
    arrays = np.load(SHARED / "pneumoniamnist.npz")
    as_images = {split: torch.tensor(arrays[f"{split}_images"], dtype=torch.float32)[:, None] / 255
                 for split in ("train", "val", "test")}
    assert near.near_copies(as_images["test"], as_images["train"]) == []
    faded = 0.5 + (as_images["test"][:200] - 0.5) * 0.1  # other patients, faded: 105 of 200 were taken for copies
    assert near.near_copies(faded, as_images["train"]) == []
    found = near.near_copies(as_images["val"], as_images["train"])
    assert len(found) == 8  # MedMNIST's 8 identical ones (said as identical; the check skips them)
    assert all(torch.equal(as_images["val"][row], as_images["train"][match]) for row, match in found)
    # training images saved again as JPEG at quality 50, or resized to 20x20 and back: (nearly) all found
    sources = as_images["train"][:200]
    again = torch.stack([_jpeg_again(image, 50) for image in sources])
    assert near.near_copies(again, as_images["train"]) == [(row, row) for row in range(200)]
    found = near.near_copies(_resized_and_back(sources, 20), as_images["train"])
    assert len(found) >= 190 and all(row == match for row, match in found)  # (198 when measured)


@pytest.mark.skipif(not (SHARED / "kvasir-seg" / "images").is_dir(),
                    reason="needs ../shared/data/kvasir-seg (the project's real data, beside the repository)")
def test_kvasir_seg_holds_four_pairs_of_near_identical_frames():
    files = sorted((SHARED / "kvasir-seg" / "images").glob("*.jpg"))
    pairs = [("cju30bmab08bi0835mvlr6e0r", "cju77k828z46w0871r0avuoo9"),
             ("cju5fydrud94708507vo6oy21", "cju7avvi51iox0817ym55y6tt"),
             ("cju76lsehyia10987u54vn8rb", "cju772304yw5t0818vbw8kkjf"),
             ("cju886ryxnsl50801r93jai7q", "cju8amfdtqi4x09871tygrgqe")]
    firsts = {first for first, _ in pairs}
    held_out = [f for f in files if f.stem in firsts] + [f for f in files[::10] if f.stem not in firsts]
    training = [f for f in files if f not in held_out]

    def read(chosen):
        return torch.stack([torch.tensor(np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.BILINEAR)),
                                         dtype=torch.float32).permute(2, 0, 1) / 255 for f in chosen])

    found = near.near_copies(read(held_out), read(training))
    assert sorted((held_out[row].stem, training[match].stem) for row, match in found) == pairs


def test_eval_marks_and_warns_of_near_copies_in_the_runs_own_test_split(tmp_path, capsys):
    """Review 52a: training warned, yet eval and its per-sample table gave no way to drop them."""
    import csv

    from peerdistill.cli import main

    training, held_out = _fundus_like(24, 0), _fundus_like(8, 3)
    for split, images in (("train", training), ("val", _fundus_like(6, 4)),
                          ("test", torch.cat([held_out, _jpeg_again(training[5])[None]]))):
        for i, image in enumerate(images):
            folder = tmp_path / "d" / split / ("a" if i % 2 else "b")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).save(folder / f"{split}{i}.png")
    assert main(["train", f"out_dir={tmp_path}", "name=r", "data.kind=image_folder", f"data.root={tmp_path / 'd'}",
                 "teacher=null", "distill.preset=independent", "train.epochs=1", "train.batch_size=8", "--quiet"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "1 of 9 test inputs are near-copies of training images ('test/b/test8.png' ~ 'train/a/train5.png'" in said
    assert main(["eval", str(tmp_path / "r")]) == 0  # (looked for with a per-sample table: compare re-scores quietly)
    assert "near-copies" not in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "r"), "--per-sample", str(tmp_path / "s.csv")]) == 0
    assert ("1 of 9 scored inputs are near-copies of training images ('test/b/test8.png' ~ 'train/a/train5.png'; as training "
            "warned): their figures are not wholly held out; --per-sample marks each (near_copy_of)") in \
        " ".join(capsys.readouterr().err.split())
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    marked = {r["file"]: r["near_copy_of"] for r in rows if r["model"] == "student1"}
    assert marked == {**{f: "" for f in marked if f != "test/b/test8.png"}, "test/b/test8.png": "train/a/train5.png"} and len(marked) == 9
    # the run's training split scored: no near-copy column (it is the training images themselves)
    assert main(["eval", str(tmp_path / "r"), "--split", "train", "--per-sample", str(tmp_path / "t.csv")]) == 0
    assert "near_copy_of" not in (tmp_path / "t.csv").read_text().splitlines()[0]
