"""The command line: train, eval, compare, resume and the errors a user can make."""

import csv
import errno
import json
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
import pytest
import torch
import yaml

from peerdistill.build import train_from_config
from peerdistill import cli
from peerdistill.cli import main
from peerdistill.config import data_places, validate
from peerdistill.engine.artifacts import jsonable
from peerdistill.errors import ConfigError

FAST = ["train.epochs=2", "train.batch_size=128", "teacher.args.width=8", "students.0.args.width=4",
        "students.1.args.width=4", "deterministic=true"]


def run_cli(*args, expect=0):
    code = main([str(a) for a in args])
    assert code == expect
    return code


def write_config(tmp_path, tree) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_train_writes_a_complete_run_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("peerdistill.engine.artifacts._UMASK", 0o022)  # a usual umask, whatever this machine's
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    run = out / "r"
    for f in ["config.yaml", "run.json", "metrics.csv", "metrics.json", "checkpoints/last.pt",
              "models/student1.safetensors", "models/student2.safetensors", "models/teacher.safetensors"]:
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "complete" and len(metrics["epochs"]) == 2
    assert set(metrics["test_at_best"]) == {"teacher", "student1", "student2", "ensemble"}
    assert list(metrics["test_at_best"]["ensemble"]) == ["accuracy", "balanced_accuracy", "macro_f1", "auc", "ece", "brier"] + [
        f"{family}_{digit}" for family in ("precision", "recall") for digit in range(10)]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 2 and "train/loss/student2/kl<-teacher" in rows[0]
    # student-only weights: each file holds exactly its model's tensors
    from safetensors.torch import load_file

    assert all(k.startswith(("features.", "classifier.")) for k in load_file(run / "models/student1.safetensors"))
    assert "ensemble" in capsys.readouterr().out
    # the resolved config reproduces the run
    assert validate(yaml.safe_load((run / "config.yaml").read_text())).train.epochs == 2
    # files get the mode the umask gives (not the private 0600 of a temporary file)
    for f in ["config.yaml", "run.json", "metrics.json", "models/student1.safetensors"]:
        assert stat.S_IMODE((run / f).stat().st_mode) == 0o644, f


def test_train_dry_run_builds_and_probes_everything_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--dry-run")
    said = capsys.readouterr()
    printed = " ".join(said.out.split())
    assert not out.exists()  # nothing written
    # a ramp-up longer than training: a starting warning, counted as one of those above (review 47d)
    assert "distill.rampup_epochs (5) is not shorter than train.epochs (2)" in said.err
    assert "1 of the warnings above would be given as training starts and kept in run.json (training_warnings)" in \
        " ".join(said.err.split())
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    meta = json.loads((out / "r" / "run.json").read_text())
    for m in meta["members"]:  # the parameters the run then recorded, model by model
        assert re.search(rf"{m['name']} . {m['role']} . cnn . {m['parameters']:,} . yes", printed), m
    assert "data: 1,077 train, 360 val, 360 test samples of 1x8x8, 10 classes" in printed
    # what the splits take in memory (review 52g: nothing said it before an out-of-memory kill): 1,797 digits of
    # 8x8 float32 pixels, and int64 labels
    assert f"held in memory: {(1797 * 64 * 4 + 1797 * 8) / 2**20:,.1f} MiB (every split, images as float32;" in printed
    # every edge, with the weight and temperature the run gives it (review 52f: 8 names and '...')
    assert "train --dry-run: 4 knowledge edge(s)" in printed
    for edge in meta["edges"]:
        name = f"{edge['target']}/kl<-{edge['source']}"
        assert re.search(rf"{re.escape(name)} . kl . {edge['weight']:g} . {edge['temperature']:g}", printed), name
    assert "the edges' weights rise to these over the first 5 epoch(s) (distill.rampup_epochs)" in printed
    assert meta["teacher_weighting"] is None and meta["supervised_weights"] == {}  # (one teacher: none combined)
    assert [m.get("weight") for m in meta["members"]] == [1.0, None, None]  # (a teacher's share of the average)
    assert f"training: 2 epoch(s) of {1077 // 128} step(s), batch 128, on cpu, fp32" in printed
    assert f"the run would be written to '{out / 'r'}'. Nothing was written" in printed
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (out / "r").rglob("*"))
    # where the run would go, as the run itself decides it (review 46f: an exists() check said otherwise)
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--dry-run", expect=2)
    assert f"run directory '{out / 'r'}' holds a finished run: pass --overwrite" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (out / "r").rglob("*")) == before  # refused: untouched
    (out / "r" / "export").mkdir()
    (out / "r" / "export" / "s.onnx").write_text("")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (out / "r").rglob("*"))
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--dry-run", "--overwrite")
    assert (f"'{out / 'r'}' holds a run: the run would replace it (--overwrite), moving what it holds besides the run "
            "(export/) to a folder beside it, 'r.kept-YYYYmmdd-HHMMSS'") in " ".join(capsys.readouterr().out.split())
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (out / "r").rglob("*")) == before  # untouched
    (out / "mine").mkdir()
    (out / "mine" / "notes.txt").write_text("mine")
    run_cli("train", f"out_dir={out}", "name=mine", *FAST, "--dry-run", "--overwrite", expect=2)
    assert f"refusing to overwrite '{out / 'mine'}': it is not a peerdistill run directory" in capsys.readouterr().err
    (out / "empty").mkdir()
    run_cli("train", f"out_dir={out}", "name=empty", *FAST, "--dry-run")
    assert f"the run would be written to '{out / 'empty'}'" in " ".join(capsys.readouterr().out.split())
    run_cli("train", f"out_dir={out / 'mine' / 'notes.txt'}", *FAST, "--dry-run", expect=2)
    assert "Not a directory" in capsys.readouterr().err
    (out / "gone").symlink_to(tmp_path / "nowhere")  # a link to nothing: refused as the run would refuse it
    run_cli("train", f"out_dir={out}", "name=gone", *FAST, "--dry-run", expect=2)
    assert f"'{out / 'gone'}' is a symbolic link to '{tmp_path / 'nowhere'}', which does not exist" in \
        capsys.readouterr().err
    (out / "gone").unlink()
    # a link to nothing above the run's folder: mkdir would fail on it with "File exists" (review 47d)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for last in ("--dry-run", "--quiet"):
        run_cli("train", f"out_dir={tmp_path / 'dangling'}", "name=r", *FAST, last, expect=2)
        assert (f"cannot create the run directory '{tmp_path / 'dangling' / 'r'}': a symbolic link to "
                f"'{tmp_path / 'nowhere'}', which does not exist, stands where a folder goes (point it at a folder, or "
                f"remove it) ('{tmp_path / 'dangling'}')") in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "nowhere").exists()
    # a run stopped in its first epoch, before it kept anything, is started again by the same command
    (out / "early").mkdir()
    (out / "early" / "run.json").write_text(json.dumps({"status": "stopped"}))
    run_cli("train", f"out_dir={out}", "name=early", *FAST, "--dry-run")
    assert (f"'{out / 'early'}' holds a run stopped in its first epoch: the run would start it again"
            in " ".join(capsys.readouterr().out.split()))
    assert [p.name for p in (out / "early").iterdir()] == ["run.json"]
    (out / "early" / "run.json").unlink()
    (out / "early").rmdir()
    assert sorted(p.name for p in out.iterdir()) == ["empty", "mine", "r"] and not any((out / "empty").iterdir())
    run_cli("train", "--resume", out / "r", "--dry-run", expect=2)
    assert "--dry-run checks a new run before it starts" in capsys.readouterr().err


def test_train_into_a_finished_run_is_refused_before_the_data_is_read(tmp_path, capsys, monkeypatch):
    # (review 47a: a Kvasir run read and checked all its images, then refused the folder)
    from peerdistill import build

    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    monkeypatch.setattr(build, "build_data", lambda *a, **k: pytest.fail("the data was read before the refusal"))
    hint = "the data and models are not checked yet: --dry-run --overwrite checks them too, moves nothing"
    for extra in ((), ("--dry-run",)):
        run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet", *extra, expect=2)
        err = " ".join(capsys.readouterr().err.split())
        assert f"run directory '{out / 'r'}' holds a finished run: pass --overwrite" in err
        # a dry run refused as the run would be says that with --overwrite it checks the rest, writing nothing
        assert (hint in err) == bool(extra), err


def test_train_dry_run_finds_what_the_first_forward_would(tmp_path, capsys):
    # a layer read after a later in-place change is found by the forward a dry run makes, before any run is queued
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", *FAST, "distill.preset=custom",
            "distill.edges=[{source: teacher, target: student1, kind: at, source_layer: features.9, "
            "target_layer: features.2}]", "--dry-run", expect=2)
    said = " ".join(capsys.readouterr().err.split())
    assert "model 'teacher': the output of layer(s) ['features.9'] is changed in place by a later module" in said
    assert not out.exists()
    # what to record instead: the module that changes it, or the block whose code does (review 48c)
    assert said.endswith("record the module that changes it instead (the ReLU) or, where a forward's own code "
                         "changes it (out += identity), the block that holds that code ('features')")


def test_a_trainers_check_leaves_the_models_as_they_were_given(tiny_data):
    from peerdistill import ClassificationTask, Cohort, Edge, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.models import SmallCNN

    teacher, student = SmallCNN(1, 3, width=8).eval(), SmallCNN(1, 3, width=4).train()
    edges = [Edge("teacher", "student1", "kl"),
             Edge("teacher", "student1", "hint", source_layer="features.2", target_layer="features.2")]
    trainer = Trainer(Cohort.from_modules([student], teacher=teacher), KnowledgeGraph(edges), ClassificationTask(3),
                      train=TrainSpec(epochs=3, batch_size=32), progress=False)
    plan = trainer.check(tiny_data)
    assert (plan.run_dir, plan.split_sizes, plan.steps_per_epoch) == (None, {"train": 240, "val": 60, "test": 60}, 7)
    assert plan.connectors == 1 and plan.edges == [e.name for e in edges]  # (8 channels taught to 4)
    assert [m["parameters"] for m in plan.members] == [sum(p.numel() for p in m.parameters()) for m in (teacher, student)]
    assert not any(m._forward_hooks or m._forward_pre_hooks for net in (teacher, student) for m in net.modules())
    assert student.training and not teacher.training  # the modes given (review 46f: the probe left eval mode)
    trainer.fit(tiny_data)  # and the trainer still fits


def test_eval_reloads_the_saved_models_and_gives_the_same_numbers(tmp_path, capsys):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    capsys.readouterr()
    run_cli("eval", out / "r", "--json")
    printed = capsys.readouterr()
    scores = json.loads(printed.out)
    assert "test split: 360 samples" in printed.err  # the count beside the JSON, not in it
    saved = json.loads((out / "r" / "metrics.json").read_text())["test_at_best"]
    for model in saved:
        assert scores[model]["accuracy"] == pytest.approx(saved[model]["accuracy"])
    assert "samples" not in scores["ensemble"]  # a count, not a figure: the figures compare with metrics.json's
    from peerdistill.runs import evaluate_run

    assert evaluate_run(out / "r").samples == 360
    run_cli("eval", out / "r", "--split", "val", "--json")
    val = json.loads(capsys.readouterr().out)
    best_val = json.loads((out / "r" / "metrics.json").read_text())["val_at_best"]
    assert val["ensemble"]["accuracy"] == pytest.approx(best_val["ensemble"]["accuracy"])
    # every sample of the data at once: the splits' accuracies weighted by their sizes (digits:
    # 1,797 images cut 60/20/20 with stratification)
    run_cli("eval", out / "r", "--split", "train", "--json")
    train = json.loads(capsys.readouterr().out)
    run_cli("eval", out / "r", "--split", "all", "--json")
    whole = json.loads(capsys.readouterr().out)
    from peerdistill.data import build_data
    from peerdistill.config import DataSpec

    sizes = {s: len(build_data(DataSpec()).split(s)) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 == len(build_data(DataSpec()).split("all"))
    for model in saved:
        expected = sum(sizes[s] * part[model]["accuracy"] for s, part in
                       (("train", train), ("val", val), ("test", scores))) / 1797
        assert whole[model]["accuracy"] == pytest.approx(expected, abs=1e-9)
    assert "has not finished" not in capsys.readouterr().err
    run_cli("eval", out / "r", "--per-class")  # a table per family: a row per class, a column per model
    text = capsys.readouterr().out
    flat = " ".join(text.split())  # a title longer than its table wraps (the run's path is in it)
    assert flat.index("precision per class") < flat.index("recall per class")
    recall = text.split("┃ class ")[2]  # the second table, from its header row on
    row = next(line for line in recall.splitlines() if line.strip("│ ").startswith("3 "))
    assert [cell.strip() for cell in row.split("│")[2:-1]] == [f"{scores[m]['recall_3']:.4f}" for m in scores]
    assert len(scores) == 4
    run_cli("eval", out / "r")  # the table ends with the calibration columns, lower is better
    text = capsys.readouterr().out
    assert "test split of the run's data (360 samples)" in " ".join(text.split())  # which data, how much of it
    row = next(line for line in text.splitlines() if line.strip("│ ").startswith("ensemble "))
    assert [cell.strip() for cell in row.split("│")[-3:-1]] == [f"{scores['ensemble'][m]:.4f}" for m in ("ece", "brier")]
    record = json.loads((out / "r" / "run.json").read_text())
    (out / "r" / "run.json").write_text(json.dumps({**record, "status": "running"}))  # as a killed run leaves it
    run_cli("eval", out / "r", "--json")
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ensemble"] == scores["ensemble"]  # stdout stays pure JSON
    assert "note: " in captured.err and "has not finished: these are the weights of its best epoch so far" in " ".join(
        captured.err.split())


def test_eval_on_other_data(tmp_path, capsys):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    capsys.readouterr()
    run_cli("eval", out / "r", "data.split_seed=7", "--json")
    assert set(json.loads(capsys.readouterr().out)) == {"teacher", "student1", "student2", "ensemble"}
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(f"data: {{kind: npz, root: {tmp_path / 'nope.npz'}}}\n")
    run_cli("eval", out / "r", "--data", data_yaml, expect=2)
    assert "does not exist" in capsys.readouterr().err
    run_cli("eval", out / "r", "--save-images", "2", expect=2)
    assert "--save-images is for segmentation and detection runs" in capsys.readouterr().err
    # an external set as image files: its table names it and its size; a set too small to cut into
    # three splits is pointed at --split all, not told to change training's fractions
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(50):
        folder = tmp_path / ("small" if i < 20 else "larger") / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        for place in [folder] + ([tmp_path / "larger" / str(digits.target[i])] if i < 20 else []):
            place.mkdir(parents=True, exist_ok=True)
            Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(place / f"{i}.png")
    files = ["data.kind=image_folder", "data.grey=true"]
    run_cli("eval", out / "r", *files, f"data.root={tmp_path / 'small'}", expect=2)
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot make a stratified split" in err and "add --split all" in err
    assert "raise data.val_fraction" not in err
    run_cli("eval", out / "r", *files, f"data.root={tmp_path / 'small'}", "--split", "all")
    captured = capsys.readouterr()
    # (compared without whitespace: the table's title wraps a long temporary path at any character)
    assert f"all split of data.kind=image_folder, data.grey=true, data.root={tmp_path / 'small'} (20 samples)".replace(
        " ", "") in "".join(captured.out.split())
    assert "--split all scores every one" not in captured.err
    (tmp_path / "small" / "9").rename(tmp_path / "nine")  # a class folder left empty: no obstacle to scoring
    (tmp_path / "small" / "9").mkdir()
    run_cli("eval", out / "r", *files, f"data.root={tmp_path / 'small'}", "--split", "all")
    captured = capsys.readouterr()  # no digit 9 among them: no AUC, and a note says why
    assert "(18 samples)" in " ".join(captured.out.split())
    assert " n/a " in captured.out
    assert "note: n/a: no value here: the figure is undefined (a class the split lacks has no AUC" in " ".join(
        captured.err.split())
    for split in ("train", "test"):  # given splits whose train lacks a class the test split holds
        shutil.copytree(tmp_path / "small", tmp_path / "given" / split)
    shutil.rmtree(tmp_path / "given" / "train" / "3")
    run_cli("eval", out / "r", *files, f"data.root={tmp_path / 'given'}", expect=2)
    err = " ".join(capsys.readouterr().err.split())
    assert "class(es) ['3', '9'] have no images in" in err and "add --split all" in err and "never learn" not in err
    run_cli("eval", out / "r", *files, f"data.root={tmp_path / 'larger'}")
    captured = capsys.readouterr()
    assert "test split of data.kind=image_folder, data.grey=true, data.root=" in " ".join(captured.out.split())
    assert "(10 samples)" in " ".join(captured.out.split())
    assert ("the data given is cut into train, val and test as training cut the run's: its test split holds 10 of "
            "its 50 samples; --split all scores every one") in " ".join(captured.err.split())
    # the run's own data gone from where training read it: the message says how to point eval at it
    record = json.loads((out / "r" / "run.json").read_text())
    record["data_spec"].update(kind="npz", root="moved.npz")
    (out / "r" / "run.json").write_text(json.dumps(record))
    run_cli("eval", out / "r", expect=2)
    err = " ".join(capsys.readouterr().err.split())
    assert "data.root 'moved.npz'" in err and "peerdistill eval RUN_DIR data.root=PATH" in err


@pytest.mark.parametrize("crash_after", [1, 3], ids=["mid-run", "during-final-evaluation"])
def test_resume_after_a_crash_gives_the_uninterrupted_result(tmp_path, crash_after, capsys):
    tree = {"out_dir": str(tmp_path / "runs"), "deterministic": True,
            "teacher": {"arch": "cnn", "args": {"width": 8}},
            "students": [{"arch": "cnn", "args": {"width": 4}}, {"arch": "cnn", "args": {"width": 4}}],
            "train": {"epochs": 4, "batch_size": 128}, "distill": {"rampup_epochs": 2}}
    whole = train_from_config(validate({**tree, "name": "whole"}), progress=False)

    def crash(epoch, row):
        if epoch == crash_after:
            # as if killed after this epoch's checkpoint; after the last one, the run dies
            # while it evaluates the test split and writes its final files
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_from_config(validate({**tree, "name": "cut"}), progress=False, callbacks=[crash])
    cut = tmp_path / "runs" / "cut"
    assert json.loads((cut / "metrics.json").read_text())["status"] == "stopped"
    if crash_after == 3:  # killed between the last epoch's checkpoint and its metrics rows (review 52c: lost for good)
        lines = (cut / "metrics.csv").read_text().splitlines(keepends=True)
        (cut / "metrics.csv").write_text("".join(lines[:-1]))
        record = json.loads((cut / "metrics.json").read_text())
        (cut / "metrics.json").write_text(json.dumps({**record, "epochs": record["epochs"][:-1]}))
    capsys.readouterr()
    run_cli("train", "--resume", cut)
    said = {1: f"resuming '{cut}' at epoch 3 of 4",
            3: f"resuming '{cut}' after its last epoch: the test split is left to score"}
    assert capsys.readouterr().err.splitlines()[0] == said[crash_after]  # what of the killed session was kept
    resumed = json.loads((cut / "metrics.json").read_text())
    assert resumed["status"] == "complete" and len(resumed["epochs"]) == 4
    where = {"epoch": 3, "step": 0} if crash_after == 1 else {"final_evaluation": True}
    assert json.loads((cut / "run.json").read_text())["resumed_at"] == [{**where, "processes": 1}]
    assert resumed["test_at_best"] == jsonable(whole.test_at_best)
    assert resumed["epochs"][-1]["train/loss/total"] == pytest.approx(whole.history[-1]["train/loss/total"], abs=0)
    rows = list(csv.DictReader((cut / "metrics.csv").open()))
    assert [row["epoch"] for row in rows] == ["1", "2", "3", "4"]
    assert float(rows[-1]["train/loss/total"]) == pytest.approx(whole.history[-1]["train/loss/total"], rel=1e-6)


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    tree = {"out_dir": str(tmp_path), "deterministic": True, "train": {"epochs": 2, "batch_size": 128},
            "teacher": {"arch": "cnn", "args": {"width": 8}},
            "students": [{"arch": "cnn", "args": {"width": 4}}, {"arch": "cnn", "args": {"width": 4}}]}
    a = train_from_config(validate({**tree, "name": "a"}), progress=False)
    b = train_from_config(validate({**tree, "name": "b"}), progress=False)
    c = train_from_config(validate({**tree, "name": "c", "seed": 1}), progress=False)
    assert jsonable(a.test_at_best) == jsonable(b.test_at_best) and a.history[-1]["train/loss/total"] == b.history[-1]["train/loss/total"]
    assert a.history[-1]["train/loss/total"] != c.history[-1]["train/loss/total"]
    for row in a.history:  # kd+ml: the teacher's ce, each student's ce, kd and ml terms, and their sum
        terms = {k: v for k, v in row.items() if k.startswith("train/loss/") and k != "train/loss/total"}
        assert len(terms) == 7 and row["train/loss/total"] == pytest.approx(sum(terms.values()), rel=1e-5)


def test_compare_writes_mean_and_std_tables(tmp_path, capsys):
    cfg = write_config(tmp_path, {"name": "cmp", "out_dir": str(tmp_path / "runs"),
                                  "teacher": {"arch": "cnn", "args": {"width": 8}},
                                  "students": [{"arch": "cnn", "args": {"width": 4}}, {"arch": "cnn", "args": {"width": 4}}],
                                  "train": {"epochs": 1, "batch_size": 256}})
    run_cli("compare", cfg, "--presets", "independent,kd+ml", "--seeds", "2", "--quiet")
    directory = tmp_path / "runs" / "cmp-compare"
    rows = list(csv.DictReader((directory / "compare.csv").open()))
    models = {r["model"] for r in rows}
    assert models == {"teacher", "student1", "student2", "best student", "ensemble"}
    ens = next(r for r in rows if r["setting"] == "kd+ml" and r["model"] == "ensemble" and r["metric"] == "accuracy")
    values = [float(v) for v in ens["values"].split(";")]
    assert len(values) == 2 and float(ens["mean"]) == pytest.approx(sum(values) / 2, abs=1e-6)
    assert float(ens["std"]) == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5, abs=1e-6)
    runs = {p.name for p in directory.iterdir() if p.is_dir()}
    assert runs == {"independent-seed0", "independent-seed1", "kd+ml-seed0", "kd+ml-seed1"}
    md = (directory / "compare.md").read_text()
    assert "| kd+ml |" in md and "### test accuracy" in md and "±" in md
    # kd+ml minus independent, seed by seed, from the runs' own metrics files
    base = next(r for r in rows if r["setting"] == "independent" and r["model"] == "ensemble"
                and r["metric"] == "accuracy")
    diffs = [a - float(b) for a, b in zip(values, base["values"].split(";"))]
    paired = {(d["model"], d["metric"]): d for d in csv.DictReader((directory / "differences.csv").open())}
    row = paired["ensemble", "accuracy"]
    assert row["setting"] == "kd+ml" and row["baseline"] == "independent" and row["pairs"] == "2"
    assert float(row["mean_difference"]) == pytest.approx(sum(diffs) / 2, abs=1e-6)
    assert row["better"] == str(sum(d > 0 for d in diffs))
    assert "### test accuracy: paired differences from independent" in md
    out = capsys.readouterr().out
    assert "paired difference from independent" in out
    # a second call reuses the finished runs instead of training again
    run_cli("compare", cfg, "--presets", "independent,kd+ml", "--seeds", "2", "--quiet")
    assert capsys.readouterr().err.count("reusing finished run") == 4
    # another baseline turns the signs round; one that was not compared is refused before any run
    run_cli("compare", cfg, "--presets", "independent,kd+ml", "--seeds", "2", "--quiet", "--baseline", "kd+ml")
    flipped = {(d["model"], d["metric"]): d for d in csv.DictReader((directory / "differences.csv").open())}
    assert flipped["ensemble", "accuracy"]["setting"] == "independent"
    assert float(flipped["ensemble", "accuracy"]["mean_difference"]) == pytest.approx(-sum(diffs) / 2, abs=1e-6)
    capsys.readouterr()
    assert main(["compare", str(cfg), "--presets", "independent,kd+ml", "--seeds", "3", "--baseline", "kd"]) == 2
    err = capsys.readouterr().err
    assert "--baseline 'kd' is not one of the compared settings: independent, kd+ml" in err
    assert not (directory / "independent-seed2").exists()


@pytest.mark.parametrize("args,message", [
    (["train", "train.epoch=3"], "unknown key 'train.epoch' (did you mean 'epochs'?)"),
    (["train", "distill.preset=fancy"], "distill.preset"),
    (["train", "missing.yaml"], "config file 'missing.yaml' does not exist"),
    (["train", "data.kind=npz", "data.root=d.npz"], "data file 'd.npz' does not exist: set data.root to a .npz file "
                                                   "(a relative path counts from the folder the command runs in)"),
    (["train", "a.yaml", "b.yaml"], "unexpected argument 'b.yaml'"),
    (["train", "train.monitor=ensemble/loss", "train.epochs=1"], "train.monitor 'ensemble/loss'"),
    (["train", "teacher.args.num_classes=5", "train.epochs=1"], "'teacher' outputs 5 classes"),
    (["train", "teacher.arch=resnet9000"], "unknown arch 'resnet9000'"),
    (["train", "students.1.arch=tests.test_api:factory_with_kwargs"],  # the default's args {width, depth} stay
     "if you changed its arch on the command line, the config's students.1.args stayed: give the new model's with it "
     "(students.1.args={} for none)"),
    (["train", "teacher.args.wdth=3"], "model 'teacher': arch 'cnn' rejected its args"),
    (["train", "students.1.args.widht=3"], "('widht': did you mean 'width'?); it takes in_channels, num_classes, width, depth"),
    (["train", "teacher.frozen=true", "teacher.checkpoint=nope.safetensors"], "nope.safetensors' for teacher does not exist"),
    (["eval", "not-a-run"], "'not-a-run' does not exist: give the folder of a run"),
    (["train", "--resume", "not-a-run"], "cannot resume 'not-a-run'"),
    (["compare", "--presets", "kd,fancy"], "--presets: unknown preset 'fancy'; choose from independent, kd,"),
    (["compare", "--presets", "kdml,kd"], "--presets: unknown preset 'kdml' ('kdml': did you mean 'kd+ml'?); choose from"),
    (["compare", "--presets", "kd,custom"], "--presets: unknown preset 'custom'"),
    (["compare", "--presets", " , "], "--presets ' , ' holds an empty name between commas"),
    (["compare", "--teacher-from", "custom"], "--teacher-from: unknown preset 'custom'"),
    (["compare", "--jobs", "0"], "--jobs must be at least 1"),
])
def test_bad_input_gives_one_clear_message(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    run_cli(*args, "--quiet" if args[0] in ("train", "compare") else "--json", expect=2)
    err = capsys.readouterr().err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err


def test_what_is_given_instead_of_a_run_directory_is_named(tmp_path, capsys):
    from peerdistill import run_lock

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    (tmp_path / "plain").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "student1.safetensors").write_bytes(b"x")
    starting = tmp_path / "starting"  # created and locked by train, its run.json not yet written
    starting.mkdir()
    fd = run_lock.hold(starting)
    try:
        for given, message in ((run / "run.json", f"is a file of a run: give its folder, '{run}'"),
                               (tmp_path / "notes.txt", "is a file, not a peerdistill run directory"),
                               (tmp_path / "student1.safetensors", "holds weights alone (no architecture, classes or "
                                "standardisation): give the run's folder, where train wrote run.json, or a .onnx "
                                "export of it"),
                               (tmp_path / "plain", "is not a peerdistill run directory (no run.json)"),
                               (starting, "is a run that has just started"),
                               (tmp_path, f"'{tmp_path}' is not a run but holds runs (1: run): give one of them, "
                                          f"e.g. '{run}'")):  # the out_dir for a run in it
            run_cli("eval", given, expect=2)
            assert message in " ".join(capsys.readouterr().err.split()), given
    finally:
        run_lock.release(fd)


def test_existing_run_is_not_overwritten_and_nothing_is_lost(tmp_path, capsys):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    before = (out / "r" / "metrics.json").read_bytes()
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet", expect=2)
    err = " ".join(capsys.readouterr().err.split())
    assert "holds a finished run: pass --overwrite to train it again" in err and "--resume" not in err
    assert (out / "r" / "metrics.json").read_bytes() == before
    record = (out / "r" / "run.json").read_bytes()
    run_cli("train", "--resume", out / "r", "--quiet", expect=2)
    assert "has finished: nothing to resume" in capsys.readouterr().err
    assert (out / "r" / "run.json").read_bytes() == record, "a refused resume writes nothing"
    capsys.readouterr()
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet", "--overwrite")
    assert "what it held besides" not in capsys.readouterr().err  # the trainer's own files alone: nothing to say
    (out / "r" / "export").mkdir()
    (out / "r" / "NOTES.txt").write_text("mine")
    (out / "r" / "export" / "student1.onnx").write_bytes(b"old export")
    backup = (out / "r" / "checkpoints" / "last.pt").read_bytes()
    (out / "r" / "checkpoints" / "backup-good-epoch.pt").write_bytes(backup)  # in the run's own folders too
    (out / "r" / "models" / "student1-site-B.safetensors").write_bytes(b"tuned")
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet", "--overwrite")
    kept = list(out.glob("r.kept-*"))
    assert len(kept) == 1 and (kept[0] / "NOTES.txt").read_text() == "mine", "the user's files are moved, not lost"
    assert (kept[0] / "export" / "student1.onnx").read_bytes() == b"old export"
    assert (kept[0] / "checkpoints" / "backup-good-epoch.pt").read_bytes() == backup
    assert (kept[0] / "models" / "student1-site-B.safetensors").read_bytes() == b"tuned"
    assert not (kept[0] / "models" / "student1.safetensors").exists(), "the old run's own weights go with it"
    assert (f"warning: overwriting '{out / 'r'}' moved what it held besides the run (NOTES.txt, "
            "checkpoints/backup-good-epoch.pt, export/, models/student1-site-B.safetensors) to "
            f"'{kept[0]}'") in " ".join(capsys.readouterr().err.split())
    assert not (out / "r" / "NOTES.txt").exists() and (out / "r" / "metrics.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["r", kept[0].name], "nothing of the old run is left beside"
    # a run that stopped in its first epoch has nothing to resume: the message says so
    (out / "r" / "checkpoints" / "last.pt").unlink()
    record = json.loads((out / "r" / "run.json").read_text())
    (out / "r" / "run.json").write_text(json.dumps({**record, "status": "running"}))
    capsys.readouterr()
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet", expect=2)
    assert "holds a run with nothing to resume yet" in " ".join(capsys.readouterr().err.split())
    run_cli("train", "--resume", out / "r", "--quiet", expect=2)  # its checkpoint moved or deleted
    assert "moved or deleted since; start the run again" in " ".join(capsys.readouterr().err.split())
    # stopped in its first epoch before keeping anything (a requeued job's first try): the same
    # command starts it again, as --resume has nothing to continue and --overwrite would lose nothing
    shutil.rmtree(out / "r" / "models")
    for left in ("metrics.json", "metrics.csv"):
        (out / "r" / left).unlink(missing_ok=True)
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet", expect=2)  # "running": killed outright, or
    assert "holds a run with nothing to resume yet" in capsys.readouterr().err  # training on a node unseen
    (out / "r" / "run.json").write_text(json.dumps({**record, "status": "stopped"}))  # as training writes it
    run_cli("train", "--resume", out / "r", "--quiet", expect=2)
    assert "the same train command, without --resume, starts it again" in " ".join(capsys.readouterr().err.split())
    # eval, export and predict of it say so, once: not to restore a metrics.json or name a model (review 48b)
    for command in (["eval", out / "r"], ["export", out / "r"], ["export", out / "r", "--model", "student1"],
                    ["predict", out / "r", out / "in.npz", "--out", out / "p.csv"]):
        run_cli(*command, expect=2)
        said = " ".join(capsys.readouterr().err.split())
        assert said == (f"error: '{out / 'r'}' stopped in its first epoch (reason not recorded) and kept no model: "
                        "train it again (the same train command starts it over, as it kept nothing to lose)"), command
    # killed outright in its first epoch (run.json still says running; review 48g), with and without a checkpoint
    (out / "r" / "run.json").write_text(json.dumps({**record, "status": "running"}))
    for command in (["export", out / "r"], ["eval", out / "r"]):
        run_cli(*command, expect=2)
        assert " ".join(capsys.readouterr().err.split()) == (
            f"error: '{out / 'r'}' was ended in its first epoch (killed outright) and kept no model: train it again "
            "(the same train command with --overwrite)")
    (out / "r" / "checkpoints").mkdir(exist_ok=True)
    (out / "r" / "checkpoints" / "last.pt").write_bytes(b"checkpoint")
    run_cli("export", out / "r", "--model", "student1", expect=2)
    assert f"has kept no model yet: continue it, train --resume {out / 'r'}" in " ".join(capsys.readouterr().err.split())
    (out / "r" / "checkpoints" / "last.pt").unlink()
    from peerdistill import run_lock

    lock = run_lock.hold(out / "r")  # in its first epoch now
    try:
        run_cli("predict", out / "r", out / "in.npz", "--out", out / "p.csv", expect=2)
    finally:
        run_lock.release(lock)
    assert f"'{out / 'r'}' is in its first epoch (a process trains it now) and has kept no model yet: wait for the " \
           "epoch to end" in " ".join(capsys.readouterr().err.split())
    (out / "r" / "run.json").write_text(json.dumps({**record, "status": "stopped"}))
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    assert (f"warning: '{out / 'r'}' held a run stopped in its first epoch, before it kept anything (no checkpoint, "
            "no model): started again") in " ".join(capsys.readouterr().err.split())
    assert json.loads((out / "r" / "run.json").read_text())["status"] == "complete"
    run_cli("train", "--resume", out / "gone", "--quiet", expect=2)
    assert f"cannot resume '{out / 'gone'}': no such folder" in " ".join(capsys.readouterr().err.split())



def test_resume_given_a_file_or_a_folder_inside_a_run_names_the_run(tmp_path, capsys):
    """Review 58h: a run's config.yaml was 'no such folder', its models/ 'has no config.yaml'."""
    run = tmp_path / "runs" / "single"
    (run / "models").mkdir(parents=True)
    (run / "checkpoints").mkdir()  # (empty: was 'the run stopped before it wrote anything')
    (run / "config.yaml").write_text("name: single\n")
    (run / "run.json").write_text("{}")
    run_cli("train", "--resume", run / "config.yaml", "--quiet", expect=2)
    assert (f"cannot resume '{run / 'config.yaml'}': it is a file: give the run's folder, '{run}'"
            in " ".join(capsys.readouterr().err.split()))
    for inside in (run / "models", run / "checkpoints"):
        run_cli("train", "--resume", inside, "--quiet", expect=2)
        assert (f"cannot resume '{inside}': it is a folder inside a run: give the run's folder, '{run}'"
                in " ".join(capsys.readouterr().err.split()))
    run_cli("train", "--resume", run / "checkpoints" / "last.pt", "--quiet", expect=2)
    assert (f"cannot resume '{run / 'checkpoints' / 'last.pt'}': no such folder (give the run's folder, '{run}')"
            in " ".join(capsys.readouterr().err.split()))
    # a file in no run: the folder to give is named by its form
    (tmp_path / "mine.yaml").write_text("name: mine\n")
    run_cli("train", "--resume", tmp_path / "mine.yaml", "--quiet", expect=2)
    assert (f"cannot resume '{tmp_path / 'mine.yaml'}': it is a file: give the run's folder, OUT_DIR/NAME"
            in " ".join(capsys.readouterr().err.split()))

def test_a_rampup_as_long_as_the_training_is_named(tmp_path, capsys):
    from scipy.integrate import quad

    for epochs, rampup in ((2, 4), (2, 2)):
        run_cli("train", f"out_dir={tmp_path}", f"name=r{rampup}", f"train.epochs={epochs}",
                f"distill.rampup_epochs={rampup}", "--quiet")
        err = " ".join(capsys.readouterr().err.split())
        ramp = lambda e: math.exp(-5 * (1 - min(e / rampup, 1.0)) ** 2)  # noqa: E731 - the sigmoid ramp-up
        mean = quad(ramp, 0, epochs)[0] / epochs
        assert (f"distill.rampup_epochs ({rampup}) is not shorter than train.epochs ({epochs}): the knowledge terms "
                f"weigh {mean:.0%} of their weight on average over training (and {ramp(epochs):.0%} at its end)") in err
    run_cli("train", f"out_dir={tmp_path}", "name=s", "train.epochs=2", "distill.rampup_epochs=1", "--quiet")
    assert "rampup" not in capsys.readouterr().err
    # a refused run or resume says only why it is refused, not what the training would have been
    run_cli("train", "--resume", tmp_path / "r4", "--quiet", expect=2)
    err = capsys.readouterr().err
    assert "has finished: nothing to resume" in err and "is not shorter than" not in err, err
    run_cli("train", f"out_dir={tmp_path}", "name=r4", "train.epochs=2", "distill.rampup_epochs=4", "--quiet", expect=2)
    err = capsys.readouterr().err
    assert "holds a finished run" in " ".join(err.split()) and "is not shorter than" not in err, err


def test_corrupt_checkpoints_are_named(tmp_path, capsys):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    weights = out / "r" / "models" / "student1.safetensors"
    intact = weights.read_bytes()
    damaged = bytearray(intact)
    damaged[-100:-50] = bytes(50)  # bytes zeroed inside the tensors: the file still parses
    weights.write_bytes(bytes(damaged))
    capsys.readouterr()
    run_cli("eval", out / "r", expect=2)
    assert (f"checkpoint '{weights}' for student1 is corrupt: its tensors differ from those it was written with "
            "(their SHA-256 is not the one the file records)") in " ".join(capsys.readouterr().err.split())
    weights.write_bytes(intact[:100])  # truncated
    run_cli("eval", out / "r", expect=2)
    assert "It is truncated or corrupt; use the file a peerdistill run wrote to models" in capsys.readouterr().err
    # weights of another architecture loaded as a frozen teacher
    run_cli("train", f"out_dir={out}", "name=r2", *FAST, "--quiet", "teacher.frozen=true",
            f"teacher.checkpoint={out / 'r' / 'models' / 'student2.safetensors'}", expect=2)
    assert "does not fit teacher" in capsys.readouterr().err
    resume = out / "r" / "checkpoints" / "last.pt"
    (out / "r" / "metrics.json").write_text('{"status": "running"}')
    record = json.loads((out / "r" / "run.json").read_text())
    (out / "r" / "run.json").write_text(json.dumps({**record, "status": "running"}))  # as if killed
    state = bytearray(resume.read_bytes())
    state[len(state) // 2:len(state) // 2 + 64] = bytes(64)  # zeroed inside a tensor: torch.load takes it as is
    resume.write_bytes(bytes(state))
    run_cli("train", "--resume", out / "r", "--quiet", expect=2)
    assert "differs from what was written: its CRC-32 fails): it is truncated or corrupt" in \
        " ".join(capsys.readouterr().err.split())
    teacher = tmp_path / "teacher.pt"  # a PyTorch file of a user's, damaged alike
    teacher.write_bytes(bytes(state))
    run_cli("train", f"out_dir={out}", "name=r3", *FAST, "--quiet", "teacher.frozen=true", f"teacher.checkpoint={teacher}",
            expect=2)
    assert f"checkpoint '{teacher}' for teacher is corrupt: its part" in " ".join(capsys.readouterr().err.split())
    resume.write_bytes(b"not a checkpoint")
    run_cli("train", "--resume", out / "r", "--quiet", expect=2)
    assert "cannot read resume checkpoint" in capsys.readouterr().err


def test_a_frozen_teacher_from_a_previous_run(tmp_path):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=t", *FAST, "distill.preset=independent", "--quiet")
    teacher = out / "t" / "models" / "teacher.safetensors"
    before = teacher.read_bytes()
    run_cli("train", f"out_dir={out}", "name=s", *FAST, "teacher.frozen=true", f"teacher.checkpoint={teacher}",
            "--quiet")
    assert (out / "s" / "models" / "teacher.safetensors").read_bytes() == before
    # the report says where the frozen teacher came from and how the run distilled (review 48c)
    from peerdistill.html_report.run_page import run_summary_html
    from peerdistill.json_files import read_json

    summary = run_summary_html(out / "s", read_json(out / "s" / "run.json"), read_json(out / "s" / "metrics.json"))
    assert (f"<li><b>models</b>: teacher (teacher; cnn(width=8, depth=3); 6,274 parameters; frozen, from {teacher}), "
            "student1 (student; cnn(width=4, depth=2); 438 parameters)") in summary
    assert ("<li><b>distillation</b>: preset kd+ml; 4 knowledge edge(s): student1 &lt;- teacher (kl, weight 1, T 4), "
            "student2 &lt;- teacher (kl, weight 1, T 4), student1 &lt;- student2 (kl, weight 1, T 1)") in summary


def test_entry_point_runs_as_a_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "peerdistill", "train", "train.epochs=x"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "train.epochs" in proc.stderr and "Traceback" not in proc.stderr
    listed = subprocess.run([sys.executable, "-m", "peerdistill", "presets"], capture_output=True, text=True)
    assert listed.returncode == 0 and "kd+ml" in listed.stdout


def test_tensorboard_logging_writes_every_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=tb", *FAST, "log.tensorboard=true", "--quiet")
    events = EventAccumulator(str(out / "tb" / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("val/ensemble/accuracy")
    history = json.loads((out / "tb" / "metrics.json").read_text())["epochs"]
    assert [s.step for s in scalars] == [1, 2]
    assert [s.value for s in scalars] == pytest.approx([r["val/ensemble/accuracy"] for r in history])
    assert "train/loss/student1/kl<-teacher" in events.Tags()["scalars"]


def test_tensorboard_gets_each_finite_number_of_a_row_at_its_one_based_epoch(tmp_path):
    """Numbers (whole ones too) under their metrics.csv names at the row's epoch; not the epoch
    itself, nor text, nor NaN (a monitor not yet defined), which TensorBoard would plot as a gap."""
    from peerdistill.engine.tensorboard import TensorBoardLogger

    calls = []

    class Writer:
        def __init__(self, log_dir):
            calls.append(("open", log_dir))

        def add_scalar(self, key, value, step):
            calls.append((key, value, step))

        def flush(self):
            calls.append("flush")

    logger = TensorBoardLogger(tmp_path / "tensorboard")
    logger._make_writer = Writer
    logger(0, {"epoch": 1, "train/loss/total": 0.5, "train/skipped_steps": 2, "val/student1/auroc": float("nan"),
               "note": "x", "lr/student1": float("inf")})
    logger(1, {"epoch": 2, "train/loss/total": 0.25})
    assert calls == [("open", str(tmp_path / "tensorboard")), ("train/loss/total", 0.5, 1),
                     ("train/skipped_steps", 2, 1), "flush", ("train/loss/total", 0.25, 2), "flush"]



def test_a_run_directory_serves_as_a_models_checkpoint(tmp_path, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=first", *FAST, "--quiet")
    run_cli("train", f"out_dir={out}", "name=second", *FAST, "teacher.frozen=true",
            f"teacher.checkpoint={out / 'first'}", "--quiet")
    trained, frozen = (load_file(out / run / "models" / "teacher.safetensors") for run in ("first", "second"))
    assert trained.keys() == frozen.keys() and all(torch.equal(trained[k], frozen[k]) for k in trained)
    capsys.readouterr()
    run_cli("train", f"out_dir={out}", "name=third", *FAST, "teacher.frozen=true",
            f"teacher.checkpoint={tmp_path}", "--quiet", expect=2)
    assert "is a directory but not a peerdistill run" in capsys.readouterr().err
    run_cli("train", f"out_dir={out}", "name=fourth", *FAST, "students.0.name=tiny",
            f"students.0.checkpoint={out / 'first'}", "--quiet", expect=2)
    err = capsys.readouterr().err
    assert "has no model 'tiny' (it saved student1, student2, teacher)" in err
    run_cli("train", f"out_dir={out}", "name=fifth", *FAST, "teacher=null", "distill.preset=multi-teacher",
            f"teachers=[{{arch: cnn, frozen: true, checkpoint: {out / 'first'}}}, {{arch: cnn}}]", "--quiet",
            expect=2)  # teacher1 of a run holding a teacher: its file is the example, not a student's
    assert f"has no model 'teacher1' (it saved student1, student2, teacher): give the file itself, e.g. " \
           f"{out / 'first' / 'models' / 'teacher.safetensors'}" in " ".join(capsys.readouterr().err.split())
    assert not (out / "third").exists() and not (out / "fourth").exists()
    record = json.loads((out / "first" / "run.json").read_text())
    (out / "first" / "run.json").write_text(json.dumps({**record, "status": "running"}))  # as if killed
    run_cli("train", f"out_dir={out}", "name=fifth", *FAST, "teacher.frozen=true",
            f"teacher.checkpoint={out / 'first'}", "--quiet", expect=2)
    assert "has not finished, so its teacher is only the best so far" in capsys.readouterr().err


def test_the_final_table_names_the_teacher_its_compression_is_against_where_there_are_several(tmp_path, capsys):
    """Review 56b: 'x smaller' was against the first teacher, unsaid."""
    run_cli("train", f"out_dir={tmp_path}", "name=mt", *FAST, "teacher=null", "distill.preset=multi-teacher",
            "teachers=[{arch: cnn, args: {width: 8, depth: 1}}, {arch: cnn, args: {width: 4, depth: 1}}]")
    assert "x smaller than teacher1" in capsys.readouterr().out


def test_a_single_teacher_goes_by_the_name_its_config_gives(tmp_path):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=n", "teacher.name=wide", *[o for o in FAST if not o.startswith("train.epochs")],
            "train.epochs=1", "--quiet")
    run = out / "n"
    assert (run / "models" / "wide.safetensors").is_file() and not (run / "models" / "teacher.safetensors").exists()
    epoch = json.loads((run / "metrics.json").read_text())["epochs"][0]
    assert "train/loss/student1/kl<-wide" in epoch and "train/loss/wide/ce" in epoch


def test_an_interrupted_command_says_how_to_go_on(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    run_cli("train", f"out_dir={tmp_path}", "name=done", *FAST, "--quiet")  # a finished run, for --overwrite
    run_cli("compare", f"out_dir={tmp_path}", "name=c", *FAST, "--presets", "kd", "--seeds", "1", "--quiet")
    capsys.readouterr()
    monkeypatch.setattr("peerdistill.build.train_from_config", interrupted)
    monkeypatch.setattr("peerdistill.comparison_runs.train_from_config", interrupted)

    def said():
        return " ".join(capsys.readouterr().err.split())
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet", expect=130)
    assert "interrupted before the first checkpoint: nothing to resume; start the run again" in said()
    (tmp_path / "r").mkdir()  # as a run leaves it in its first epoch: the same command replaces it then
    (tmp_path / "r" / "run.json").write_text(json.dumps({"status": "stopped"}))
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet", expect=130)
    assert f"start the run again (the same command replaces '{tmp_path / 'r'}', which holds nothing yet)" in said()
    monkeypatch.setattr("peerdistill.run_lock.fcntl", None)  # where runs are not locked: it is refused
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet", expect=130)
    assert f"start the run again with --overwrite (it replaces '{tmp_path / 'r'}'" in said()
    monkeypatch.undo()
    monkeypatch.setattr("peerdistill.build.train_from_config", interrupted)
    monkeypatch.setattr("peerdistill.comparison_runs.train_from_config", interrupted)
    (tmp_path / "r" / "NOTES.txt").write_text("mine")  # not replaced without --overwrite: it holds this
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet", expect=130)
    assert f"start the run again with --overwrite (it replaces '{tmp_path / 'r'}', which holds no checkpoint)" in said()
    (tmp_path / "r" / "NOTES.txt").unlink()
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)  # as a run leaves it after its first checkpoint
    (tmp_path / "r" / "checkpoints" / "last.pt").write_bytes(b"")
    (tmp_path / "r" / "run.json").write_text(json.dumps({"status": "running"}))
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet", expect=130)
    assert f"continue with peerdistill train --resume {tmp_path / 'r'}" in said()
    run_cli("train", f"out_dir={tmp_path}", "name=done", *FAST, "--overwrite", "--quiet", expect=130)
    assert f"'{tmp_path / 'done'}' holds the finished run it held before" in said()
    shutil.rmtree(tmp_path / "r" / "checkpoints")  # replaced (--overwrite), then interrupted before a checkpoint
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--overwrite", "--quiet", expect=130)
    assert ("interrupted before the first checkpoint: nothing to resume; start the run again with --overwrite (it "
            f"replaces '{tmp_path / 'r'}', which holds no checkpoint)") in said()
    run_cli("compare", f"out_dir={tmp_path}", "name=c", *FAST, "--presets", "kd", "--seeds", "2", "--quiet", expect=130)
    assert "run the same compare command again" in said()
    assert (tmp_path / "c-compare" / "compare.csv").is_file()  # kept: the runs it describes are still there
    run_cli("compare", f"out_dir={tmp_path}", "name=c", *FAST, "--presets", "kd", "--seeds", "1", "--overwrite",
            "--quiet", expect=130)
    assert "again without --overwrite to replace only the runs still marked" in said()
    assert not (tmp_path / "c-compare" / "compare.csv").exists()  # tables of runs being replaced are gone

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as timeout, Slurm or Kubernetes stop a job
        time.sleep(5)
    monkeypatch.setattr("peerdistill.build.train_from_config", terminated)
    run_cli("train", f"out_dir={tmp_path}", "name=t", *FAST, "--quiet", expect=143)
    assert "nothing to resume" in said()
    for sig in (signal.SIGTERM, signal.SIGINT):  # the handlers last as long as the command
        assert signal.getsignal(sig) is not cli.running._interrupt

    def exporter_turns_the_signal_into_its_own_error(*args, **kwargs):
        try:  # as torch's exporter did: interrupted in an import, it failed on the half-imported module
            os.kill(os.getpid(), sig)
            time.sleep(5)
        except KeyboardInterrupt:
            raise AttributeError("module 'torch._dynamo' has no attribute 'exc'") from None
    monkeypatch.setattr("torch.onnx.export", exporter_turns_the_signal_into_its_own_error)
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        run_cli("export", str(tmp_path / "done"), expect=code)
        assert "interrupted: no half-written file is left" in said()
        assert not (tmp_path / "done" / "export").exists() or not any((tmp_path / "done" / "export").iterdir())



def test_a_signal_ignored_as_the_command_starts_stays_ignored_and_sighup_stops_as_sigterm(monkeypatch, capsys):
    """Review 50a: a shell's background job starts with SIGINT ignored (and nohup ignores SIGHUP),
    and the handler switched it back on, so a Ctrl-C meant for the script stopped the training.
    A closed terminal's SIGHUP, not ignored, stops a command as SIGTERM does (exit 128 + 1)."""
    from peerdistill import cli

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    seen = {}

    def command(ns):
        seen.update({sig: signal.getsignal(sig) for sig in signals})
        if seen[signal.SIGHUP] is not signal.SIG_IGN:
            os.kill(os.getpid(), signal.SIGHUP)  # as a closed ssh session's
            time.sleep(5)
        return 0

    before = {sig: signal.getsignal(sig) for sig in signals}
    monkeypatch.setattr(cli.running, "_interrupted_hint", lambda ns: "interrupted: as said")
    monkeypatch.setattr(cli.running, "_one_process_commands", lambda name: None)
    monkeypatch.setattr("peerdistill.cli.arguments.cmd_presets", command)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert cli.main(["presets"]) == 0
        assert seen[signal.SIGINT] == seen[signal.SIGHUP] == signal.SIG_IGN
        assert seen[signal.SIGTERM] is cli.running._interrupt
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        assert cli.main(["presets"]) == 128 + signal.SIGHUP
        assert seen[signal.SIGHUP] is cli.running._interrupt and "interrupted: as said" in capsys.readouterr().err
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)



@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="SIGUSR1 is a POSIX signal")
def test_a_schedulers_early_warning_sigusr1_stops_training_as_sigterm_does(tmp_path):
    """Review 54d: SIGUSR1 (Slurm's --signal=USR1@N, SGE's soft limit) ended the process at once,
    silently, its run left 'running'. Now it stops as SIGTERM does: marked stopped, the last
    checkpoint kept, a hint how to continue, exit 128 + SIGUSR1."""
    run = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "peerdistill", "train", f"out_dir={tmp_path}", "name=r",
                             *FAST[1:], "train.epochs=40", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (run / "metrics.json").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # (an epoch done: a checkpoint kept, and the metrics file there to mark)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGUSR1, err[-3000:]
    assert f"continue with peerdistill train --resume {run}" in " ".join(err.split())
    for name in ("run.json", "metrics.json"):
        record = json.loads((run / name).read_text())
        assert (record["status"], record["stopped_by"]) == ("stopped", "interrupted (SIGUSR1)")

def test_a_terminal_closed_under_a_command_leaves_its_interruption_as_it_was(monkeypatch, tmp_path):
    """Review 50e: SIGHUP as a terminal closes, then the progress bar's last drawing and the hint
    failed on the dead terminal (EIO): exit 2 with stopped_by an OSError, or a traceback. The
    interruption stands, said by its exit code, and stopped_by names the signal."""
    import argparse
    import errno

    from peerdistill.cli import running
    from peerdistill.engine.artifacts import RunDir, mark_stopped
    from peerdistill.engine.progress import Progress
    from peerdistill.stopping import StoppedBySignal

    class DeadTerminal:
        def __exit__(self, *exc):
            raise OSError(errno.EIO, "Input/output error")

    progress = Progress(enabled=False)
    progress._bar = DeadTerminal()
    hangup = StoppedBySignal(signal.SIGHUP)
    assert progress.__exit__(type(hangup), hangup, None) is None  # the interruption goes on
    with pytest.raises(OSError):  # anything else: the terminal's error is news
        progress.__exit__(ValueError, ValueError("x"), None)

    def dead_print(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(running.err_console, "print", dead_print)
    assert running._interrupted(argparse.Namespace(command="presets"), hangup) == 128 + signal.SIGHUP
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps({"status": "running"}))
    mark_stopped(RunDir(tmp_path / "r"), hangup)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["stopped_by"] == "interrupted (SIGHUP)"


def test_under_torchrun_a_stop_the_process_cannot_take_ends_it_after_a_grace(tmp_path):
    """Review 50a: under torchrun SIGTERM had no handler (a process inside a collective runs none),
    so runs stayed marked running. With one, a process that does not stop (here: one that keeps
    swallowing the interruption, as one waiting inside torch's C++ never takes it) is ended
    after the grace, as SIGTERM's default would have ended it, and says so."""
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent('''
        import os, signal, sys, time
        from peerdistill.cli import running, stop_watch

        stop_watch.STOP_GRACE_S = 0.5

        def stuck(ns):
            sent = 0
            while True:
                try:
                    if not sent:
                        sent = 1
                        os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(60)
                except KeyboardInterrupt:
                    if sent == 1:  # a second signal (torchrun's, after the scheduler's), once the first was read
                        sent = 2
                        time.sleep(0.1)
                        try:
                            os.kill(os.getpid(), signal.SIGTERM)
                            time.sleep(1)
                        except KeyboardInterrupt:  # (swallowed too)
                            pass

        running._run = stuck
        sys.exit(running.main(["presets"]))
    '''))
    began = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TORCHELASTIC_RUN_ID": "test"})
    assert proc.returncode == 128 + signal.SIGTERM and time.monotonic() - began < 30
    assert "stopped by SIGTERM, which this process could not take for 0.5 s" in proc.stderr
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr  # (review 56c)


def test_a_signal_after_the_command_is_done_does_not_kill_the_ending_process(capsys):
    # restored to the default in the ~1 s of flushing and torch's teardown, a scheduler's SIGTERM
    # killed a finished run's process (143, its table cut short): a --resume then was refused
    from peerdistill import cli
    from peerdistill.stopping import STOPPING_SIGNALS

    # (every one restored: left ignored, SIGUSR1 was ignored by the processes later tests start)
    before = {sig: signal.getsignal(sig) for sig in STOPPING_SIGNALS}
    try:
        assert cli.main(["presets"], exiting=True) == 0
        assert "kd+ml" in capsys.readouterr().out
        assert all(signal.getsignal(sig) == signal.SIG_IGN for sig in before)
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: this test's process goes on
        for sig, handler in before.items():
            signal.signal(sig, handler)
        assert cli.main(["presets"]) == 0  # called from Python, as a library: the caller's handlers back
        assert {sig: signal.getsignal(sig) for sig in before} == before
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)



def test_a_warning_made_an_error_by_the_warnings_filter_is_one_error_line(tmp_path, capsys):
    # PYTHONWARNINGS=error (a strict CI) turned a warning into a traceback and exit 1
    import warnings

    from peerdistill.errors import PeerdistillWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)
        run_cli("train", f"out_dir={tmp_path}", "name=w", *FAST, "distill.rampup_epochs=5", "--quiet", expect=2)
    assert " ".join(capsys.readouterr().err.split()) == (
        "error: distill.rampup_epochs (5) is not shorter than train.epochs (2): the knowledge terms weigh 6% of their "
        "weight on average over training (and 17% at its end), so this run distils little; train longer or lower "
        "distill.rampup_epochs (a warning, raised as an error by Python's warnings filter: PYTHONWARNINGS or -W)")
    record = json.loads((tmp_path / "w" / "run.json").read_text())  # written before the warning: it said "running"
    assert record["status"] == "stopped" and "distill.rampup_epochs (5)" in record["stopped_by"]
    run_cli("train", f"out_dir={tmp_path}", "name=w", *FAST, "distill.rampup_epochs=1", "--quiet")  # its folder: no bar

def test_a_command_started_with_its_output_closed_runs_without_a_traceback():
    # a daemon's stdout may be closed (`>&-`): sys.stdout is None, which failed at import
    done = subprocess.run([sys.executable, "-m", "peerdistill", "presets"], preexec_fn=lambda: os.close(1),
                          stderr=subprocess.PIPE, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")


def test_eval_json_writes_an_undefined_score_as_null(tmp_path, monkeypatch, capsys):
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet")
    from peerdistill.runs import Scores

    monkeypatch.setattr("peerdistill.runs.evaluate_run",
                        lambda *a, **k: Scores({"ensemble": {"auc": float("nan")}}, samples=3))
    capsys.readouterr()
    run_cli("eval", tmp_path / "r", "--json")
    assert json.loads(capsys.readouterr().out) == {"ensemble": {"auc": None}}


def _with_reader_gone(*args: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "peerdistill", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # as `| head` does, before anything is printed
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    # Training goes on to the end (rich alone would exit 1 at its first print); tables and JSON too.
    _with_reader_gone("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet")
    assert (tmp_path / "r" / "metrics.json").is_file()
    _with_reader_gone("eval", str(tmp_path / "r"), "--json")
    _with_reader_gone("eval", str(tmp_path / "r"))


def test_output_left_over_when_the_reader_went_is_not_an_error_at_exit():
    # What a command printed but Python had not yet flushed goes nowhere once the reader has left:
    # else Python's own flush at exit fails too (exit 120, "Exception ignored ... BrokenPipeError").
    script = ("import sys\nfrom peerdistill import cli\nfrom peerdistill.cli import arguments\n"
              "def presets(ns):\n    sys.stdout.write('left in the buffer')\n    sys.stdout.flush()\n"
              "arguments.cmd_presets = presets\nsys.stdout.write('x')\nsys.exit(cli.main(['presets']))\n")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a pipe is written by default
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=buffered)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"BrokenPipe" not in err, (proc.returncode, err.decode())


def test_files_that_are_not_what_they_claim_are_named(tmp_path, capsys):
    (tmp_path / "data.npz").write_text("train_images: not an archive\n")
    run_cli("train", "data.kind=npz", f"data.root={tmp_path / 'data.npz'}", "--quiet", expect=2)
    assert "data.npz' is not a .npz archive (a zip of arrays" in " ".join(capsys.readouterr().err.split())
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet")
    (tmp_path / "r" / "models" / "student2.safetensors").unlink()
    run_cli("eval", tmp_path / "r", "--json", expect=2)
    assert "student2.safetensors' is missing: the run finished, so it was moved or deleted since" in " ".join(
        capsys.readouterr().err.split())
    folder = tmp_path / "pages"
    folder.mkdir()
    run_cli("report", tmp_path / "r", "--out", folder)
    assert (folder / "report.html").is_file()
    run_cli("report", tmp_path / "r", "--out", tmp_path / "new-pages")  # no extension: a folder to make
    assert (tmp_path / "new-pages" / "report.html").is_file()
    for kept in ("page", "config.yaml", "x.png"):  # an existing file not named .html is never replaced by a page
        (tmp_path / kept).write_text("old")
        run_cli("report", tmp_path / "r", "--out", tmp_path / kept, expect=2)
        assert "does not end in .html" in capsys.readouterr().err and (tmp_path / kept).read_text() == "old"


@pytest.mark.parametrize("damage", [lambda meta: [meta], lambda meta: {k: v for k, v in meta.items() if k != "input_shape"},
                                    lambda meta: {**meta, "members": [{"role": "student"}]},
                                    lambda meta: {**meta, "class_names": None},
                                    lambda meta: {**meta, "class_names": ["a", "b"]},
                                    lambda meta: {**meta, "members": [{**m, "spec": {**m["spec"], "args": "width=8"}}
                                                                      for m in meta["members"]]}],
                         ids=["a-list", "no-input-shape", "member-without-name", "no-class-names", "two-of-ten-names",
                              "args-of-a-string"])
def test_a_damaged_run_json_is_one_message_for_every_command(tmp_path, capsys, damage):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    record = out / "r" / "run.json"
    record.write_text(json.dumps(damage(json.loads(record.read_text()))))
    np.savez(tmp_path / "in.npz", images=np.zeros((2, 8, 8), np.float32))
    before = {p: p.read_bytes() for p in (out / "r").rglob("*") if p.is_file()}
    capsys.readouterr()
    for args in (["eval", out / "r"], ["export", out / "r"], ["report", out / "r", "--out", tmp_path / "page.html"],
                 ["predict", out / "r", tmp_path / "in.npz", "--out", tmp_path / "p.csv"]):
        run_cli(*args, expect=2)
        err = capsys.readouterr().err
        assert "run.json' is damaged: " in err and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in (out / "r").rglob("*") if p.is_file()} == before
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("damage", [lambda m: {**m, "test_at_best": {**m["test_at_best"], "ensemble": 5}},
                                    lambda m: {**m, "test_at_best": "oops"}, lambda m: [], lambda m: None],
                         ids=["a-number-for-figures", "a-text-for-models", "a-list", "null"])
def test_a_damaged_metrics_json_is_one_message(tmp_path, capsys, damage):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    record = out / "r" / "metrics.json"
    record.write_text(json.dumps(damage(json.loads(record.read_text()))))
    capsys.readouterr()
    for args in (["report", out / "r", "--out", tmp_path / "page.html"], ["export", out / "r"]):  # best: by metrics
        run_cli(*args, expect=2)
        err = " ".join(capsys.readouterr().err.split())
        assert "metrics.json' is damaged: " in err and "Traceback" not in err, err
    record.unlink()  # a finished run without it: not "has not finished its first epoch"
    run_cli("report", out / "r", "--out", tmp_path / "page.html", expect=2)
    assert "is a finished run without its metrics.json: restore the file" in capsys.readouterr().err


def test_predict_skip_unreadable_predicts_the_others_and_lists_the_damaged_beside_them(tmp_path, capsys):
    run_cli("train", f"out_dir={tmp_path / 'runs'}", "name=r", *FAST, "--quiet")
    run = tmp_path / "runs" / "r"
    images = tmp_path / "export"
    images.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / f"{name}.png")
    (images / "c.png").write_bytes(b"")  # an interrupted copy
    out = tmp_path / "p.csv"
    capsys.readouterr()
    run_cli("predict", run, images, "--out", out, expect=2)
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: cannot read image '{images / 'c.png'}'" in err
    assert err.endswith("--skip-unreadable predicts the other 2 and lists these in a CSV beside the predictions")
    assert not out.exists()
    run_cli("predict", run, images, "--out", out, "--skip-unreadable")
    with open(out, newline="") as fh:
        assert [row["input"] for row in csv.DictReader(fh)] == [str(images / "a.png"), str(images / "b.png")]
    listing = tmp_path / "p.unreadable.csv"
    with open(listing, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["input"] for row in rows] == [str(images / "c.png")]
    assert rows[0]["why"].startswith(f"cannot read image '{images / 'c.png'}'") and "empty" in rows[0]["why"]
    assert (f"1 of 3 inputs cannot be read and were not predicted, each listed with why in {listing}"
            in " ".join(capsys.readouterr().err.split()))
    # mended: the list of an earlier predict would name a file this one read, so it goes
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "c.png")
    run_cli("predict", run, images, "--out", out, "--skip-unreadable")
    assert not listing.exists() and len(out.read_text().splitlines()) == 4


def test_export_and_predict_replace_their_own_earlier_files_but_no_file_of_the_users(tmp_path, capsys):
    # review 45d: a graph of the user's own under the .onnx name, and a label table under the CSV's,
    # were replaced without a word (the JSON beside an .onnx was protected already)
    run_cli("train", f"out_dir={tmp_path / 'runs'}", "name=r", *FAST, "--quiet")
    run = tmp_path / "runs" / "r"
    mine = {tmp_path / "mine.onnx": b"a graph of my own", tmp_path / "mine.safetensors": b"weights of mine",
            tmp_path / "labels.csv": b"patient,label\np1,1\n", tmp_path / "inputs.csv": b"input,label\nx.png,1\n",
            tmp_path / "p.unreadable.csv": b"my notes on unreadable things\n",
            tmp_path / "two.csv": b"input,predicted\na.png,cat\n", tmp_path / "q.unreadable.csv": b"patient,notes\n"}
    for path, content in mine.items():
        path.write_bytes(content)
    capsys.readouterr()
    run_cli("export", run, "--out", tmp_path / "mine.onnx", expect=2)
    run_cli("export", run, "--format", "safetensors", "--out", tmp_path / "mine.safetensors", expect=2)
    np.savez(tmp_path / "x.npz", images=np.random.default_rng(0).random((3, 8, 8), dtype=np.float32))
    run_cli("predict", run, tmp_path / "x.npz", "--out", tmp_path / "labels.csv", expect=2)
    run_cli("predict", run, tmp_path / "x.npz", "--out", tmp_path / "inputs.csv", expect=2)  # 'input' first, not ours
    run_cli("predict", run, tmp_path / "x.npz", "--out", tmp_path / "two.csv", expect=2)  # no class probabilities
    run_cli("predict", run, tmp_path / "x.npz", "--out", tmp_path / "q.csv", expect=2)  # a list of the user's beside
    run_cli("predict", run, tmp_path / "x.npz", "--out", tmp_path / "p.csv", expect=2)  # notes of the user's beside
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("exists and is not a file export wrote") == 2
    assert "--out '" + str(tmp_path / "labels.csv") + "' exists and is not a table predict wrote" in err
    assert all(path.read_bytes() == content for path, content in mine.items())
    # predict's own table saved again by a spreadsheet (a BOM, quoted header, CRLF) is still its own
    run_cli("predict", run, tmp_path / "x.npz", "--out", tmp_path / "r.csv")
    table = (tmp_path / "r.csv").read_text().splitlines()
    header = ",".join(f'"{field}"' for field in table[0].split(","))
    (tmp_path / "r.csv").write_bytes(("\ufeff" + "\r\n".join([header] + table[1:]) + "\r\n").encode("utf-8"))
    run_cli("predict", run, tmp_path / "x.npz", "--out", tmp_path / "r.csv")
    # their own, written before: replaced as ever
    for _ in range(2):
        run_cli("export", run, "--out", tmp_path / "again.onnx")
        run_cli("export", run, "--format", "safetensors", "--out", tmp_path / "again.safetensors")
        run_cli("predict", run, tmp_path / "x.npz", "--out", tmp_path / "again.csv")
    # 'best' is chosen by the scores in metrics.json: with it gone, said so, and the way round it (review 45d)
    (run / "metrics.json").unlink()
    capsys.readouterr()
    run_cli("export", run, "--out", tmp_path / "best.onnx", expect=2)
    assert (f"'{run / 'metrics.json'}' does not exist, and it holds the validation scores the best student is chosen "
            "by: restore it, or name the model (--model 'student1')") in " ".join(capsys.readouterr().err.split())
    run_cli("export", run, "--model", "student1", "--out", tmp_path / "s1.onnx")


def test_outputs_never_land_on_a_runs_own_files_or_the_inputs(tmp_path, capsys):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    run = out / "r"
    before = {f: (run / f).read_bytes() for f in ("run.json", "metrics.json", "metrics.csv", "config.yaml")}
    capsys.readouterr()
    run_cli("report", run, "--out", run / "metrics.json", expect=2)
    run_cli("export", run, "--out", run / "run.onnx", expect=2)  # its .json sidecar would be the run's run.json
    run_cli("export", run, "--model", "student2", "--format", "safetensors", "--out", out / "r" / "models" / "x.safetensors",
            expect=2)
    np.savez(tmp_path / "x.npz", images=np.random.default_rng(0).random((3, 8, 8), dtype=np.float32))
    run_cli("predict", run, tmp_path / "x.npz", "--out", run / "metrics.csv", expect=2)
    run_cli("predict", run, tmp_path / "x.npz", "--out", tmp_path / "x.npz", expect=2)
    err = capsys.readouterr().err
    assert err.count("is one of the files of the run") == 3 and "is one of the inputs" in err
    assert {f: (run / f).read_bytes() for f in before} == before
    # an image named inside a folder of inputs: the CSV would replace it
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "a.png")
    png = (images / "a.png").read_bytes()
    run_cli("predict", run, images, "--out", images / "a.png", expect=2)
    assert "is one of the inputs" in capsys.readouterr().err and (images / "a.png").read_bytes() == png
    run_cli("predict", run, images, "--out", images / "predictions.csv")  # a CSV beside them is no input
    # a path through a file: one message, not a traceback
    (tmp_path / "afile").write_text("")
    run_cli("export", run, "--out", tmp_path / "afile" / "x.onnx", expect=2)
    assert "error: Not a directory" in capsys.readouterr().err
    run_cli("train", tmp_path, expect=2)
    assert "is a folder: give the YAML file in it" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("train: {epochs: 1}\ntrain: {batch_size: 32}\n", "key 'train' appears twice (lines 1 and 2)"),
    ("optim: {lr: .inf}\n", "'optim.lr': Input should be a finite number (got inf)"),
    ("data: {normalize: {mean: [0], std: [.inf]}}\n", "'data.normalize.std.0': Input should be a finite number"),
    ("name: ../elsewhere\n", "name is the run's folder inside out_dir: one folder name"),
    ("seed: 4294967296\n", "'seed': seed must be in 0..4294967295"),
    ("data: {split_seed: -5}\n", "'data.split_seed': data.split_seed must be in 0..4294967295"),
], ids=["duplicate-key", "inf", "inf-in-stats", "name-path", "seed-range", "split-seed"])
def test_config_values_that_would_fail_late_or_silently_are_refused_at_once(tmp_path, capsys, text, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    run_cli("train", path, f"out_dir={tmp_path / 'runs'}", expect=2)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_preset_given_twice_to_compare_is_refused(tmp_path, capsys):
    run_cli("compare", "--presets", "kd,kd", "--seeds", "1", f"out_dir={tmp_path}", expect=2)
    assert "'kd' given twice; list each preset once" in capsys.readouterr().err


def test_masks_are_never_written_among_the_input_images(tmp_path):
    from peerdistill.errors import ConfigError
    from peerdistill.predict_outputs import check_out

    (tmp_path / "images").mkdir()
    image = tmp_path / "images" / "0.png"
    image.write_bytes(b"")
    for inputs in ([str(image)], [str(tmp_path / "images")]):
        with pytest.raises(ConfigError, match="is a folder of inputs: masks written there could replace"):
            check_out(tmp_path / "images", True, inputs, [])
    with pytest.raises(ConfigError, match="names a file; segmentation writes a folder of masks"):
        check_out(tmp_path / "masks.csv", True, [str(image)], [])
    check_out(tmp_path / "masks", True, [str(image)], [])
    check_out(tmp_path, True, [str(tmp_path / "images")], [])  # the folder above an input folder holds no input image
    # nor among the data the run trained on (its true masks, named as predictions are: <id>_mask.png),
    # though beside it, in the project folder that holds both the data and the runs
    data = {"kind": "folders", "root": str(tmp_path / "project"), "roi": "fov", "split_dirs": {"train": "training"}}
    places = data_places(data)
    for out in ("masks", "images/sub", "fov", "training/masks", "test/images"):
        with pytest.raises(ConfigError, match=rf"out='.*{out}' is (inside )?'.*project/.*', data the run reads"):
            check_out(tmp_path / "project" / out, True, [str(image)], places)
    for out in ("project", "project/runs/r/predicted", "predicted"):
        check_out(tmp_path / out, True, [str(image)], places)


def test_a_run_trained_on_a_relative_root_keeps_its_data_safe_from_anywhere(tmp_path, monkeypatch):
    from peerdistill.runs import run_data_places

    from peerdistill.build import _run_info

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    cfg = validate({"task": "segmentation", "data": {"kind": "folders", "root": "seg"}, "teacher": {"arch": "unet"},
                    "students": [{"arch": "unet"}] * 2})
    meta = _run_info(cfg)  # what run.json records: the saved section's relative root, and where it was
    assert meta["data_spec"]["root"] == "seg" and meta["data_root"] == str((tmp_path / "a" / "seg").resolve())
    monkeypatch.chdir(tmp_path / "b")  # run from elsewhere: the recorded root still counts, and the relative one too
    places = [str(p.resolve()) for p in run_data_places(meta)]
    assert str(tmp_path / "a" / "seg" / "masks") in places and str(tmp_path / "b" / "seg" / "masks") in places
    assert data_places({"kind": "npz", "root": "d.npz"}) == [Path("d.npz")] and data_places({"kind": "digits"}) == []


def test_peerdistills_warnings_are_one_line_and_others_are_left_as_python_prints_them(monkeypatch, capsys):
    import warnings

    from peerdistill import cli
    from peerdistill.errors import NonFiniteStepsWarning

    def warning_command(ns):
        warnings.warn("epoch 2: 3 of 7 training steps skipped for non-finite values: loss term 'x' (3 steps)",
                      NonFiniteStepsWarning)
        warnings.warn("something of torch's", UserWarning)
        return 0

    monkeypatch.setattr(cli.arguments, "cmd_presets", warning_command)  # the command the parser names
    with pytest.warns(UserWarning, match="something of torch's"):  # handed on as Python would show it
        run_cli("presets")
    err = capsys.readouterr().err
    assert err == "warning: epoch 2: 3 of 7 training steps skipped for non-finite values: loss term 'x' (3 steps)\n"


def test_train_says_that_training_stopped_early(tmp_path, capsys, monkeypatch):
    # a monitor that never improves on its first epoch: with patience 1, the second epoch is the last
    monkeypatch.setattr("peerdistill.engine.trainer.ranking_score", lambda metric, value: 0.0)
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *[a for a in FAST if not a.startswith("train.epochs")],
            "train.epochs=4", "train.patience=1", "--quiet")
    printed = " ".join(capsys.readouterr().out.split())
    assert "test split (360 samples) at the best epoch (1 of 2; stopped early: no better val in 1 epochs, by val" in printed
    assert json.loads((out / "r" / "metrics.json").read_text())["stopped_early"] is True
    # a monitor n/a in every epoch: the table says the last epoch stood in, not that it was the best
    monkeypatch.setattr("peerdistill.engine.trainer.ranking_score", lambda metric, value: float("-inf"))
    run_cli("train", f"out_dir={out}", "name=n", *FAST, "--quiet")
    said = capsys.readouterr()
    assert "at the last epoch (" in " ".join(said.out.split()) and "was n/a in every epoch)" in " ".join(said.out.split())
    assert "was n/a in every epoch" in said.err


def test_a_teacher_from_a_run_of_another_task_is_named(tmp_path, capsys):
    run_cli("train", f"out_dir={tmp_path}", "name=seg", "task=segmentation", "data.kind=shapes",
            "data.shapes_counts=[8,4,4]", "teacher=null", "distill.preset=independent",
            "students=[{arch: unet, args: {width: 2, depth: 1}}]", "train.epochs=1", "--quiet")
    capsys.readouterr()
    run_cli("train", f"out_dir={tmp_path}", "name=cls", "teacher.frozen=true", f"teacher.checkpoint={tmp_path / 'seg'}",
            "train.epochs=1", "--quiet", expect=2)
    assert (f"run '{tmp_path / 'seg'}', the checkpoint of teacher, is a segmentation run, and this one is "
            "classification") in " ".join(capsys.readouterr().err.split())
    # the run's model file itself: the same run, named with the file (a bare file names no task)
    weights = tmp_path / "seg" / "models" / "student1.safetensors"
    run_cli("train", f"out_dir={tmp_path}", "name=cls", "teacher.frozen=true", f"teacher.checkpoint={weights}",
            "train.epochs=1", "--quiet", expect=2)
    assert (f"run '{tmp_path / 'seg'}' (whose model '{weights}' is given), the checkpoint of teacher, is a "
            "segmentation run, and this one is classification") in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "cls").exists()


def test_a_frozen_teacher_of_a_run_with_other_input_statistics_or_size_is_said_to_see_another_scale(tmp_path, capsys):
    """Standardised by mean 0 / std 1 in its own run, a digits teacher fed the split's
    statistics (mean 0.31, std 0.38) scored near chance as a frozen teacher, in silence."""
    run_cli("train", f"out_dir={tmp_path}", "name=t", "data.normalize={mean: [0.0], std: [1.0]}", "teacher=null",
            "distill.preset=independent", "students=[{arch: cnn, args: {width: 4, depth: 1}}]", "train.epochs=1",
            "--quiet")
    capsys.readouterr()
    weights = tmp_path / "t" / "models" / "student1.safetensors"
    frozen = ["teacher.frozen=true", f"teacher.checkpoint={weights}", "teacher.arch=cnn",
              "teacher.args={width: 4, depth: 1}", "distill.preset=kd", "train.epochs=1", "--quiet"]
    run_cli("train", f"out_dir={tmp_path}", "name=other", *frozen)
    said = " ".join(capsys.readouterr().err.split())
    assert (f"teacher is frozen from run '{tmp_path / 't'}' (whose model '{weights}' is given), which standardised its inputs by mean / std 0 / 1 per "
            "channel, and this run standardises them by 0.3") in said
    assert "give this run that run's statistics, data.normalize={mean: [0.0], std: [1.0]}" in said
    # kept for the report and compare.md, as the training's own warnings are (review 56b), also by a resume
    kept = json.loads((tmp_path / "other" / "run.json").read_text())["training_warnings"]
    assert sum("is frozen from" in w for w in kept) == 1 and " ".join(kept[0].split()) in said
    from peerdistill.build import build_cohort
    from peerdistill.config import load_saved_config
    from peerdistill.data import build_data

    cfg = load_saved_config(tmp_path / "other" / "config.yaml")
    assert build_cohort(cfg, build_data(cfg.data), saved=True).warnings_when_built == kept[:1]  # a resume's run.json
    run_cli("train", f"out_dir={tmp_path}", "name=same", *frozen, "data.normalize={mean: [0.0], std: [1.0]}")
    assert "is frozen from" not in capsys.readouterr().err
    # another input size: recorded by the run it comes from
    from peerdistill.build import _other_inputs
    from peerdistill.data import DataSplits

    meta = json.loads((tmp_path / "t" / "run.json").read_text())
    (tmp_path / "t" / "run.json").write_text(json.dumps({**meta, "input_shape": [1, 16, 16]}))
    x, y = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32), np.arange(4) % 2
    data = DataSplits.from_arrays(x, y, x, y, x, y, stats={"mean": [0.0], "std": [1.0]})
    said = _other_inputs(str(tmp_path / "t"), "teacher", data, "teacher")
    assert len(said) == 1 and re.search(r"learnt from inputs of 16x16 pixels, and this run's are 8x8: things look "
                                        r"smaller to it", said[0])


def test_starting_imports_neither_torchs_compiler_nor_export():
    # torch._dynamo alone added ~2.5 s to every command's start (help, errors, a non-deterministic train).
    probe = ("import sys; sys.argv = ['peerdistill', '--help']\n"
             "from peerdistill.cli import main\n"
             "from peerdistill.engine.seeding import apply_seed\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "apply_seed(0, deterministic=False)\n"
             "print(sorted(m for m in ('torch._dynamo', 'torch._inductor', 'peerdistill.export') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]


def test_help_and_config_errors_answer_without_importing_torch(tmp_path):
    # torch takes over a second to import (with kornia and the models, ~2.5 s): --help, --version
    # and an error in what was given are answered before any command imports it.
    (tmp_path / "bad.yaml").write_text("model: {arch: x}\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text('{"task": "classification", "data_spec": {"kind": "digits"}}')
    cases = [(["--help"], 0), (["--version"], 0), *[([c, "--help"], 0) for c in
             ("train", "eval", "compare", "export", "predict", "report", "presets")],
             (["train", str(tmp_path / "bad.yaml")], 2), (["train", "train.epochs=-1"], 2),
             (["train", "--epochs", "3"], 2), (["train", "--resume", str(tmp_path / "none")], 2),
             (["eval", str(tmp_path / "run"), "data.bogus=1"], 2), (["eval", str(tmp_path / "run"), "detect.x=1"], 2),
             (["compare", str(tmp_path / "none.yaml")], 2), (["presets"], 0)]
    probe = ("import contextlib, io, json, sys\n"
             "from peerdistill.cli import main\n"
             "said = []\n"
             "for args in json.loads(sys.argv[1]):\n"
             "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
             "        try:\n            code = main(args)\n"
             "        except SystemExit as exc:\n            code = exc.code\n"
             "    said.append([args, code, 'torch' in sys.modules])\n"
             "print(json.dumps(said))")
    out = subprocess.run([sys.executable, "-c", probe, json.dumps([args for args, _ in cases])], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == [[args, code, False] for args, code in cases]


@pytest.mark.parametrize("args, message", [
    (["export", "RUN", "--out", ""], "argument --out: is empty"),  # wrote into the current folder
    (["export", "RUN", "--operating-point", " "], "argument --operating-point: is empty"),  # no threshold, silently
    (["predict", "RUN", "a.png", "--out", "p.csv", "--model", ""], "argument --model: is empty"),  # meant best
    (["eval", "RUN", "--per-sample", ""], "argument --per-sample: is empty"),
    (["eval", "RUN", "--bootstrap", "100000000"], "argument --bootstrap: at most 100,000 resamples"),
    (["eval", "RUN", "--bootstrap", "100001"], "argument --bootstrap: at most 100,000 resamples, got 100,001"),
    (["eval", "RUN", "--save-images=-3"], "argument --save-images/--save-masks: expected a whole number, 0 or more"),
    (["report", ""], "argument RUN_DIR_OR_COMPARE_DIR: is empty"),
    (["train", "--config", "c.yaml"], "unrecognized arguments: --config (the config file goes without --config, "
                                      "before the key=value overrides: peerdistill train CONFIG.yaml"),
    (["eval", "RUN", "--save-images", "\u00b2"], "expected a whole number, 0 or more, got '\u00b2'"),  # (not _count's name)
    (["train", "--quiet", "--quiet"], "--quiet is given twice: give it once"),
    (["--quiet", "train", "train.epochs=1"], "--quiet: a command's options go after it (peerdistill train --quiet"),
    (["--overwrite"], "unrecognized arguments: --overwrite (a command comes first, its options after it"),
    (["--vers"], "unrecognized arguments: --vers"),
])
def test_empty_values_and_endless_counts_are_refused_by_name(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_eval_without_a_run_names_only_the_run_as_required(capsys):
    with pytest.raises(SystemExit):
        main(["eval"])
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.endswith("the following arguments are required: RUN_DIR"), said  # its overrides are optional


def test_the_largest_bootstrap_allowed_is_taken():
    from peerdistill.cli import MAX_BOOTSTRAP, build_parser

    assert build_parser().parse_args(["eval", "RUN", "--bootstrap", str(MAX_BOOTSTRAP)]).bootstrap == 100_000


def test_resume_refuses_other_arguments_and_eval_overrides_of_other_sections(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text("name: r\n")  # (refused before the config is read)
    assert main(["train", "--resume", str(run), "train.epochs=5"]) == 2
    assert "--resume continues a run with its saved config: drop the other arguments" in capsys.readouterr().err
    # an override that is not under data. (nor detect.) is named, whatever its run: none is read
    assert main(["eval", str(tmp_path / "none"), "dataroot=x"]) == 2
    assert "eval takes only data.* and detect.* overrides, got 'dataroot=x'" in capsys.readouterr().err



def test_eval_takes_a_data_mapping_as_train_does(tmp_path, capsys):
    """Review 53i: eval refused data={...}, which train merges into the section."""
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet")
    capsys.readouterr()
    scored = []
    for given in (["data.split_seed=3", "data.augment=[hflip]"], ["data={split_seed: 3, augment: [hflip]}"]):
        run_cli("eval", str(tmp_path / "r"), *given, "--json")
        scored.append(json.loads(capsys.readouterr().out))
    assert scored[0] == scored[1]
    run_cli("eval", str(tmp_path / "r"), "--json")
    assert json.loads(capsys.readouterr().out) != scored[0], "another split: other figures"
    run_cli("eval", str(tmp_path / "r"), "data={split_seed: 3}", "data.split_seed=4", expect=2)
    assert "data.split_seed is given twice" in capsys.readouterr().err
    # data=null leaves the section at its default as train's does (the run's); one value is told how to write it
    run_cli("eval", str(tmp_path / "r"), "data=null", "--json")
    assert json.loads(capsys.readouterr().out) == json.loads(run_cli_json(tmp_path / "r", capsys))
    for given, said in (("data=5", "'data' is a section of keys and was given 5: write its keys under it, key: value"),
                        ("data=[1]", "'data' is a section of keys and was given [1]: write its keys under it"),
                        ("data=scans.npz", "'data' is a section of keys and was given 'scans.npz': write data: "
                                           "{kind: npz, root: scans.npz}")):
        run_cli("eval", str(tmp_path / "r"), given, expect=2)
        assert f"error: invalid data section:\n  {said}" in capsys.readouterr().err


def run_cli_json(run_dir, capsys) -> str:
    """eval's --json of a run's own test split."""
    run_cli("eval", str(run_dir), "--json")
    return capsys.readouterr().out

def test_an_empty_data_file_is_named_not_read_as_the_default_data(tmp_path, capsys):
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet")
    capsys.readouterr()
    for text in ("", "data: {}\n"):
        (tmp_path / "empty.yaml").write_text(text)
        run_cli("eval", tmp_path / "r", "--data", tmp_path / "empty.yaml", expect=2)
        assert f"--data '{tmp_path / 'empty.yaml'}' holds no data section" in " ".join(capsys.readouterr().err.split())
    # a training config without a data section: each of its sections was refused as a data key, 35 keys listed each time
    (tmp_path / "train.yaml").write_text("distill: {preset: ml}\nstudents: [{arch: cnn}, {arch: cnn}]\n")
    run_cli("eval", tmp_path / "r", "--data", tmp_path / "train.yaml", expect=2)
    assert " ".join(capsys.readouterr().err.split()) == (
        f"error: --data '{tmp_path / 'train.yaml'}' is a config without a data section (it holds distill, students): "
        "give a file with one, data: {kind: image_folder, root: PATH}, or a mapping of data keys alone")


def test_a_key_given_twice_or_under_both_its_names_is_refused(capsys):
    from peerdistill.cli.decoding import decoding_from

    run_cli("train", "train.epochs=3", "train.epochs=1", expect=2)  # which was meant? (as in a YAML mapping)
    assert "train.epochs is given twice ('train.epochs=3' and 'train.epochs=1'): keep one" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="detect.wbf_iou is the former name of detect.ensemble_iou: give one"):
        decoding_from(["detect.wbf_iou=0.5", "detect.ensemble_iou=0.6"], "eval")
    assert decoding_from(["detect.wbf_iou=0.5"], "eval") == {"ensemble_iou": 0.5}
    from peerdistill.config.decoding import checked_decoding  # (the Python API's decoding= too: review 44a)

    assert checked_decoding({"wbf_iou": 0.5, "score_threshold": 0.2}, "predict") == {"ensemble_iou": 0.5,
                                                                                     "score_threshold": 0.2}


def test_an_npz_of_other_channels_is_refused_with_the_way_to_convert_it(tmp_path, capsys):
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet")  # digits: one grey channel
    np.savez(tmp_path / "colour.npz", images=np.zeros((2, 8, 8, 3), np.uint8))
    capsys.readouterr()
    run_cli("predict", tmp_path / "r", tmp_path / "colour.npz", "--out", tmp_path / "p.csv", expect=2)
    err = " ".join(capsys.readouterr().err.split())
    assert "inputs have 3 channels but the model takes 1: an .npz's arrays are taken as they are" in err
    assert "e.g. in numpy images[..., :3].mean(axis=-1) for colour to grey" in err  # the way this way round
    assert not (tmp_path / "p.csv").exists()


def test_eval_data_names_data_given_where_a_data_section_belongs(tmp_path, capsys):
    from peerdistill.cli import main

    (tmp_path / "d.npz").write_bytes(b"")
    (tmp_path / "null.yaml").write_text("data: null\n")
    for given, message in ((tmp_path, "--data takes a YAML file holding a data section, and '"),
                           (tmp_path / "d.npz", "is data itself: to score it, give data.root=PATH"),
                           (tmp_path / "null.yaml", "its data section must be a mapping of data keys .* got null$")):
        assert main(["eval", str(tmp_path / "run"), "--data", str(given)]) == 2
        assert re.search(message, " ".join(capsys.readouterr().err.split()))


def test_eval_says_which_data_keys_it_does_not_use_or_reads_otherwise(tmp_path, capsys):
    from peerdistill.cli.eval_command import _warn_of_data_keys_read_otherwise
    from peerdistill.errors import PeerdistillWarning

    # trained with a range for its augmentation: eval leaves both out (its check of the one
    # against the other would refuse an augment given here)
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "data.augment=[rotate]", "data.augment_range={rotate: 10}",
            "--quiet")
    capsys.readouterr()
    run_cli("eval", tmp_path / "r", "data.split_seed=3")
    run_cli("eval", tmp_path / "r", "data.augment=[hflip]", "data.split_seed=3")
    assert "eval does not use data.augment: it reads data with the run's own normalisation statistics" in " ".join(
        capsys.readouterr().err.split())
    saved = {"kind": "folders", "root": "drive", "roi": "mask", "image_size": [64, 64], "grey": False}
    with pytest.warns(PeerdistillWarning, match=r"--data reads its data otherwise than training read the run's "
                                                r"\(data.roi is None, in training 'mask'; data.image_size is \[32, 32\], "
                                                r"in training \[64, 64\]\)"):
        _warn_of_data_keys_read_otherwise({"kind": "folders", "root": "other", "image_size": [32, 32]}, saved,
                                          set(), whole_section=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)  # overrides keep the run's keys: nothing to say
        _warn_of_data_keys_read_otherwise({**saved, "root": "other"}, saved, {"root"}, whole_section=False)
        # a reading key the user changed with an override was meant: only a --data section is warned of
        _warn_of_data_keys_read_otherwise({**saved, "image_size": [32, 32]}, saved, {"image_size"},
                                          whole_section=False)


def test_the_n_a_note_looks_at_the_figures_eval_shows():
    from argparse import Namespace

    from peerdistill.report import has_not_available

    scores = {"student1": {"accuracy": 0.9, "precision_3": float("nan"), "op_ppv": None, "ci95_low_accuracy": 0.8}}
    plain = Namespace(bootstrap=0, per_class=False, operating_point=None, temperature_scaling=False,
                      score_thresholds=None)
    assert cli.eval_command._shown_figures(scores, ("accuracy",), plain) == ["accuracy"]
    assert not has_not_available(scores, cli.eval_command._shown_figures(scores, ("accuracy",), plain))
    per_class = Namespace(**{**vars(plain), "per_class": True})
    assert has_not_available(scores, cli.eval_command._shown_figures(scores, ("accuracy",), per_class))  # precision of a class
    operating = Namespace(**{**vars(plain), "operating_point": "youden"})
    assert has_not_available(scores, cli.eval_command._shown_figures(scores, ("accuracy",), operating))  # its PPV: null in JSON
    assert cli.eval_command._shown_figures(scores, ("accuracy",), Namespace(**{**vars(plain), "bootstrap": 100})) == [
        "accuracy", "ci95_low_accuracy", "ci95_high_accuracy"]
    tempered = {"student1": {"accuracy": 0.9, "cal_ece": float("nan"), "op_ppv": None}}
    assert cli.eval_command._shown_figures(tempered, ("accuracy",), plain) == ["accuracy"]
    assert cli.eval_command._shown_figures(tempered, ("accuracy",), Namespace(**{**vars(plain), "temperature_scaling": True})) == [
        "accuracy", "cal_ece"]
    boxes = {"student1": {"ap": 0.3, "at0.5_precision": float("nan"), "at0.5_recall": 0.0}}  # none kept at 0.5
    assert not has_not_available(boxes, cli.eval_command._shown_figures(boxes, ("ap",), plain))
    assert cli.eval_command._shown_figures(boxes, ("ap",), Namespace(**{**vars(plain), "score_thresholds": ()})) == [
        "ap", "at0.5_precision", "at0.5_recall"]


def test_under_torchrun_only_the_main_process_prints_the_results(tmp_path, monkeypatch, capsys):
    """Every process trains; the others return before the table (they would print it again)."""
    import peerdistill.build as build

    def trained(cfg, run_dir, **kwargs):
        Path(run_dir).mkdir(parents=True)  # what the main process wrote, as one disk shares it
        (Path(run_dir) / "run.json").write_text(json.dumps({"members": [], "task": "classification"}))
        return None  # (the main process alone reads it)

    monkeypatch.setattr(build, "train_from_config", trained)
    for rank in (1, 2):  # the second process of 3, the third
        monkeypatch.setattr(cli.commands, "launched_world", lambda rank=rank: (rank, 3, rank))
        assert main(["train", f"out_dir={tmp_path}", f"name=r{rank}", "--quiet"]) == 0
        assert capsys.readouterr().out == ""


def test_export_says_each_classs_int8_dice_and_which_it_did_not_judge(tmp_path, monkeypatch, capsys):
    import peerdistill.export as export
    from peerdistill.quantize import QuantizedCheck

    run = tmp_path / "seg"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"task": "segmentation", "class_names": ["background", "polyp"]}))
    check = QuantizedCheck(agreement=0.99, max_probability_difference=0.0123, checked=4, predictions=4096,
                           fp32_bytes=40960, int8_bytes=10240, class_dice={0: 0.99876, 1: 0.5, 2: 0.0},
                           judged_classes=(0, 1))
    done = export.ExportResult(tmp_path / "m.onnx", "student1", 2e-6, "logits", int8=check)
    monkeypatch.setattr(export, "export_run", lambda *args, **kwargs: done)
    assert main(["export", str(run), "--quantize", "int8"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    # 0.99 of 4096 pixels is 4055 (rounded); class 2 has no name in the run: its index stands
    assert ("int8: 10 KiB against 40 KiB in fp32" in said and "int8 graph vs fp32 graph on 4 test inputs: same class "
            "for 4055 of 4096 predictions (99.00%), max |probability difference| 0.0123" in said)
    assert ("Dice of each class's int8 mask against the fp32 one: background 0.9988, polyp 0.5000, "
            "2 0.0000 (too few pixels to judge)" in said)


def test_a_process_other_than_the_main_one_keeps_the_warnings_to_itself(monkeypatch, capsys):
    from peerdistill.errors import PeerdistillWarning

    def warns(ns):
        warnings.warn("a warning every process would give", PeerdistillWarning)
        return 0

    monkeypatch.setattr(cli.arguments, "cmd_presets", warns)
    for rank, said in ((0, True), (1, False), (2, False)):
        monkeypatch.setattr(cli.running, "launched_rank", lambda rank=rank: rank)
        assert main(["presets"]) == 0
        assert ("a warning every process would give" in capsys.readouterr().err) == said, rank


def test_settings_of_one_config_go_to_its_own_folder_and_of_several_to_the_shared_one(tmp_path, monkeypatch):
    import peerdistill.compare
    from peerdistill.config import default_config

    given = []
    monkeypatch.setattr(peerdistill.compare, "compare", lambda trees, presets, seeds, **kwargs: given.append(kwargs["out"]))
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**default_config(), "name": name,
                                                                "out_dir": str(tmp_path / "runs")}))
    settings = ["--setting", "x:train.epochs=1", "--setting", "y:train.epochs=2"]
    assert main(["compare", str(tmp_path / "a.yaml"), *settings]) == 0
    assert main(["compare", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"), *settings]) == 0
    assert given == [str(tmp_path / "runs" / "a-compare"), None]  # (None: compare's folder for several configs)


def test_a_file_the_command_could_not_use_is_named_with_what_to_check(monkeypatch, capsys):
    def refused(ns):
        raise PermissionError(13, "Permission denied", "/runs/r/metrics.json")

    monkeypatch.setattr(cli.arguments, "cmd_presets", refused)
    assert main(["presets"]) == 2
    assert ("error: Permission denied: '/runs/r/metrics.json'; check the path and its permissions"
            in " ".join(capsys.readouterr().err.split()))


def test_predict_says_which_student_best_was(tmp_path, capsys):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=r", *FAST, "--quiet")
    metrics = json.loads((out / "r" / "metrics.json").read_text())
    val = {s: metrics["val_at_best"][s]["accuracy"] for s in ("student1", "student2")}
    best = max(val, key=lambda s: (val[s], s == "student1"))  # ties keep the first, as max does
    np.savez(tmp_path / "in.npz", images=np.zeros((2, 8, 8), np.float32))
    capsys.readouterr()
    run_cli("predict", out / "r", tmp_path / "in.npz", "--out", tmp_path / "p.csv")
    bare = lambda text: "".join(text.split())  # noqa: E731 - a long temporary path may wrap anywhere
    said = bare(capsys.readouterr().out)
    assert said == bare(f"wrote {tmp_path / 'p.csv'} (model {best}: the best validation student; a classification "
                        "run: class probabilities)")
    run_cli("predict", out / "r", tmp_path / "in.npz", "--out", tmp_path / "q.csv", "--model", "student2")
    assert bare(capsys.readouterr().out) == bare(f"wrote {tmp_path / 'q.csv'} (model student2; a classification run: "
                                                 "class probabilities)")
    run_cli("predict", out / "r", tmp_path / "in.npz", "--out", tmp_path / "e.csv", "--model", "ensemble")
    assert bare(capsys.readouterr().out) == bare(f"wrote {tmp_path / 'e.csv'} (the ensemble of student1, student2: "
                                                 "probabilities averaged; a classification run: class probabilities)")
    # an export says its JSON's model and task too (review 52a: "wrote FILE" alone)
    from peerdistill import export_run

    onnx = export_run(out / "r", model="student2", out=tmp_path / "s2.onnx").path
    capsys.readouterr()
    run_cli("predict", onnx, tmp_path / "in.npz", "--out", tmp_path / "o.csv")
    assert bare(capsys.readouterr().out) == bare(f"wrote {tmp_path / 'o.csv'} (model student2 of {out / 'r'}; a "
                                                 "classification model: class probabilities)")


def test_a_one_student_runs_ensemble_row_is_said_to_be_that_student(tmp_path, capsys):
    out = tmp_path / "runs"
    run_cli("train", f"out_dir={out}", "name=one", "distill.preset=kd", "students=[{arch: cnn, args: {width: 4}}]",
            "train.epochs=1", "teacher.args.width=8", "--quiet")
    note = "note: one student: 'ensemble' is student1 alone (an ensemble needs two or more)"
    assert note in " ".join(capsys.readouterr().err.split())
    run_cli("eval", out / "one")
    assert note in " ".join(capsys.readouterr().err.split())
    run_cli("train", f"out_dir={out}", "name=two", *FAST, "--quiet")  # two students: nothing to say
    assert "one student" not in capsys.readouterr().err


def test_eval_of_image_files_for_a_grey_run_trained_on_an_npz_needs_no_keys_undone(tmp_path, capsys):
    """A run of an npz with class names, scored on PNG class folders: the names its section kept
    (which image folders give themselves) are dropped, and the files are read grey for its
    one-channel models, so the first command scores them."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 60), ("val", 20), ("test", 20)):
        labels = rng.integers(0, 2, n)
        arrays[f"{split}_images"] = np.clip(rng.normal(90, 30, (n, 8, 8)) + 80 * labels[:, None, None], 0,
                                            255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    np.savez(tmp_path / "d.npz", **arrays)
    run_cli("train", "data.kind=npz", f"data.root={tmp_path / 'd.npz'}", "data.class_names=[normal,pneumonia]",
            f"out_dir={tmp_path / 'runs'}", "name=r", *FAST, "--quiet")
    for i, (image, label) in enumerate(zip(arrays["test_images"], arrays["test_labels"])):
        folder = tmp_path / "pngs" / ("normal", "pneumonia")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    capsys.readouterr()
    run_cli("eval", tmp_path / "runs" / "r", "data.kind=image_folder", f"data.root={tmp_path / 'pngs'}", "--split",
            "all", "--json")
    captured = capsys.readouterr()
    npz = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())["test_at_best"]
    assert json.loads(captured.out)["ensemble"]["accuracy"] == pytest.approx(npz["ensemble"]["accuracy"])
    # a given data.grey=false is the user's: the files are read in colour and refused as before
    run_cli("eval", tmp_path / "runs" / "r", "data.kind=image_folder", f"data.root={tmp_path / 'pngs'}",
            "data.grey=false", "--split", "all", expect=2)
    assert "read image files grey, data.grey=true" in capsys.readouterr().err
    # a --data section is the user's own: a key its kind does not take is refused, not dropped
    section = tmp_path / "d.yaml"
    section.write_text(f"data: {{kind: npz, root: {tmp_path / 'd.npz'}, image_size: [16, 16]}}\n")
    run_cli("eval", tmp_path / "runs" / "r", "--data", section, expect=2)
    assert "data.image_size does not apply to data kind 'npz'" in capsys.readouterr().err
    # a run trained on grey files: a --data section leaving out data.grey is read grey, and not said to differ
    run_cli("train", "data.kind=image_folder", f"data.root={tmp_path / 'pngs'}", "data.grey=true", "data.val_fraction=0.25",
            "data.test_fraction=0.25", f"out_dir={tmp_path / 'runs'}", "name=files", *FAST, "--quiet")
    section.write_text(f"data: {{kind: image_folder, root: {tmp_path / 'pngs'}}}\n")
    capsys.readouterr()
    run_cli("eval", tmp_path / "runs" / "files", "--data", section, "--split", "all")
    assert "data.grey" not in capsys.readouterr().err


def test_a_patch_trained_runs_table_says_its_macs_are_of_one_patch(tmp_path, capsys):
    """A run trained on 32x32 patches of 64x64 images: its MACs are of one patch, while eval,
    predict and an export run a window per patch of a whole image: the column and a note say
    so (a deployment sized by the figure would be sized for a patch)."""
    run_cli("train", "task=segmentation", "data.kind=shapes", "data.shapes_counts=[16,8,8]", "data.patch_size=32",
            "teacher=null", "students=[{arch: unet, args: {width: 4, depth: 1}}, {arch: unet, args: {width: 4, depth: 1}}]",
            "distill.preset=ml", "train.epochs=1", "train.batch_size=8", f"out_dir={tmp_path}", "name=p", "--quiet")
    out, err = capsys.readouterr()
    assert "MMACs/patch" in out and "│ MMACs " not in out
    assert ("note: MMACs/patch are of one 32x32 patch, what training saw; eval, predict and an export score a whole "
            "image window by window (0.5 overlap), each window costing as much") in " ".join(err.split())
    # the ensemble's cells: the sum of its students' (review 53d: blank), said so; timed as exported (side by side)
    costs = json.loads((tmp_path / "p" / "run.json").read_text())["costs"]
    assert _ensemble_cost_cells(out)[:2] == _summed_cells(costs)[:2]  # (no teacher: no x smaller)
    assert "latency_summed" not in costs["ensemble"]
    run_cli("train", f"out_dir={tmp_path}", "name=whole", *FAST, "--quiet")
    out, err = capsys.readouterr()
    assert "MMACs/patch" not in out and "MMACs" in out and "MMACs/patch" not in err
    costs = json.loads((tmp_path / "whole" / "run.json").read_text())["costs"]
    assert _ensemble_cost_cells(out) == _summed_cells(costs)
    assert ("note: ensemble: its params and MMACs are the sum of its 2 students' (student1, student2), and its x "
            "smaller comes from that sum: it runs every student") in " ".join(err.split())


def _summed_cells(costs: dict) -> list[str]:
    """The ensemble's params, MMACs and x smaller worked out here from its students' figures."""
    from peerdistill.report import mmacs

    summed = costs["student1"]["parameters"] + costs["student2"]["parameters"]
    ratio = f"{round(costs['teacher']['parameters'] / summed, 2):.2f}" if "teacher" in costs else ""
    return [f"{summed:,}", mmacs(costs["student1"]["macs"] + costs["student2"]["macs"]), ratio]


def _ensemble_cost_cells(out: str) -> list[str]:
    """The final table's params, MMACs and x smaller of the ensemble, a row or (the table turned
    to fit the terminal) the last cell of those rows."""
    lines = out.splitlines()
    row = next((line for line in lines if line.startswith("│ ensemble ")), None)
    if row:
        return [c.strip() for c in row.split("│")[2:5]]
    return [next(line for line in lines if line.startswith(f"│ {name}")).split("│")[-2].strip()
            for name in ("params ", "MMACs", "x smaller ")]


@pytest.mark.parametrize("args, message", [
    (["train", ""], "an empty argument where a CONFIG.yaml or key=value goes"),  # read as the folder '.'
    (["compare", "", "--dry-run"], "an empty argument where a CONFIG.yaml or key=value goes"),
    (["eval", "data.split_seed=1", "RUN"], "'data.split_seed=1' stands where the run's folder goes: give RUN_DIR "
                                           "first, then the overrides (peerdistill eval RUN_DIR data.split_seed=1)"),
    (["eval", "RUN", "--data", "none.yaml"], "--data file 'none.yaml' does not exist"),  # not a "config file"
])
def test_misplaced_or_empty_arguments_are_named_as_given(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "RUN").mkdir()
    assert main(args) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_a_config_whose_path_holds_an_equals_sign_is_read_as_the_config(tmp_path, monkeypatch, capsys):
    from peerdistill.config import default_config

    monkeypatch.chdir(tmp_path)
    Path("lr=0.1").mkdir()
    write_config(Path("lr=0.1"), {**default_config(), "name": "eq"})
    assert main(["compare", "lr=0.1/cfg.yaml", "--dry-run"]) == 0
    assert "runs/eq-compare/kd+ml-seed0" in capsys.readouterr().out


def test_compare_refuses_a_preset_override_that_presets_would_replace(tmp_path, monkeypatch, capsys):
    # review 55j: distill.preset=nope was dropped for each of --presets without a word (kd-ml meant --presets kd+ml)
    monkeypatch.chdir(tmp_path)
    for override, preset in (("distill.preset=nope", "nope"), ("distill={preset: kd, alpha: 2}", "kd")):
        assert main(["compare", override, "--presets", "kd,ml", "--dry-run"]) == 2
        assert capsys.readouterr().err.strip() == (f"error: compare: the override distill.preset={preset} is replaced "
                                                   "by each preset of --presets kd,ml: drop it, or name the presets to "
                                                   "run in --presets (e.g. --presets kd,kd+ml)")
    # one cleared again by distill=null is no override of it (review 55n: a TypeError traceback)
    assert main(["compare", "distill.preset=ml", "distill=null", "--presets", "kd", "--dry-run"]) == 0


def test_an_override_longer_than_a_file_name_is_read_as_an_override(tmp_path, capsys):
    # review 55j: Python 3.11's Path.is_file raises for a name past 255 bytes: 'File name too long ... check the path'
    students = "students=[" + ", ".join(["{arch: cnn, args: {width: 16, depth: 2}}"] * 6) + "]"
    assert len(students) > 255
    run_cli("train", f"out_dir={tmp_path}", "name=r", "train.epochs=2", students, "--dry-run")
    assert "student6" in capsys.readouterr().out
    # and a long one is not repeated whole in a message (a 100,000-character value was)
    run_cli("train", "train.epochs=[" + "1, " * 50_000, "--dry-run", expect=2)
    said = capsys.readouterr().err
    assert said.startswith("error: override 'train.epochs=[1, 1, 1, ") and "...': the value is not valid YAML" in said
    assert len(said) < 1000
    from peerdistill.config import apply_overrides  # nor a long key, or one of bytes that are not UTF-8 (review 55n)

    for long in ("k" * 5000 + "=", "train.epochs=\udcff" + "1" * 5000):
        with pytest.raises(ConfigError) as refused:
            apply_overrides({}, [long])
        assert len(str(refused.value)) < 1000
    # eval's detect.* and a long word where RUN_DIR goes (review 55n: 'File name too long' there too)
    long_detect = "detect.score_threshold=" + "0" * 300
    assert main(["eval", str(tmp_path / "none"), long_detect]) == 2
    assert "File name too long" not in capsys.readouterr().err
    assert main(["eval", "data.root=" + "x" * 300]) == 2
    said = capsys.readouterr().err
    assert "stands where the run's folder goes" in said and "File name too long" not in said


def test_an_error_is_exit_code_2_though_stderr_cannot_take_it(tmp_path):
    # a full disk, or stderr closed by a scheduler: the message is lost, not the exit code (1 read as a bug)
    for stderr in ("/dev/full", None):
        with open(stderr or os.devnull, "w") as sink:
            done = subprocess.run([sys.executable, "-m", "peerdistill", "eval", str(tmp_path / "none")],
                                  stdout=subprocess.DEVNULL, stderr=sink if stderr else subprocess.DEVNULL,
                                  close_fds=True, timeout=120, **({} if stderr else {"preexec_fn": _close_stderr}))
        assert done.returncode == 2, stderr


def _close_stderr():
    os.close(2)


def test_ctrl_c_while_the_command_line_loads_says_one_line(tmp_path):
    # the command line's modules load in a fraction of a second: Ctrl-C then is as Ctrl-C later
    script = ("import signal, sys, threading, peerdistill\n"
              "from peerdistill import cli\n"
              "original = __import__\n"
              "def interrupting(name, *args, **kwargs):\n"
              "    if name == 'argparse':\n"
              "        raise KeyboardInterrupt\n"
              "    return original(name, *args, **kwargs)\n"
              "import builtins\nbuiltins.__import__ = interrupting\n"
              "sys.modules.pop('argparse', None)\n"
              "cli.run_and_exit(['presets'])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and done.stderr == "interrupted\n", (done.returncode, done.stderr)


def test_a_run_json_that_is_not_a_mapping_is_refused_by_every_command(tmp_path, capsys):
    # valid JSON of another kind ([] by an edit or a flipped bit): train and train --resume crashed on .get
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet")
    (tmp_path / "r" / "run.json").write_text("[]", encoding="utf-8")
    for args in (["train", "--resume", tmp_path / "r"], ["train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet"],
                 ["eval", tmp_path / "r"], ["report", tmp_path / "r"]):
        run_cli(*args, expect=2)
        err = " ".join(capsys.readouterr().err.split())
        assert "run.json' is damaged: it holds list, not a mapping" in err and "Traceback" not in err, (args, err)



def test_a_read_only_place_is_named_as_such_and_write_elsewhere_with_out_is_offered(tmp_path, monkeypatch, capsys):
    """Review 54d: a read-only file system was "Permission denied", and a run folder one may not
    write in (shared read-only) gave report and export no word of --out."""
    import collections

    from peerdistill.cli import arguments
    from peerdistill.engine import artifacts

    flags = collections.namedtuple("statvfs", "f_flag")
    with monkeypatch.context() as patched:
        patched.setattr(artifacts.os, "statvfs", lambda path: flags(os.ST_RDONLY))
        with pytest.raises(OSError) as error:
            artifacts.check_folder_writable(tmp_path / "new")
    assert (error.value.errno, error.value.filename) == (errno.EROFS, str(tmp_path))
    artifacts.check_folder_writable(tmp_path / "new")  # (this one may be written)

    report = tmp_path / "run" / "report.html"
    for code, said in ((errno.EACCES, f"error: Permission denied: '{report}'; check the path and its permissions; "
                                      "or write elsewhere with --out"),
                       (errno.EROFS, f"error: Read-only file system writing '{report}': the file system is mounted "
                                     "read-only; write elsewhere (out_dir; --out for compare, export, predict and "
                                     "report), then run the command again")):
        def refused(ns, code=code):
            raise OSError(code, os.strerror(code), str(report))
        monkeypatch.setattr(arguments, "cmd_report", refused)
        run_cli("report", str(tmp_path / "run"), expect=2)
        assert " ".join(capsys.readouterr().err.split()) == said
    monkeypatch.setattr(arguments, "cmd_report", lambda ns: refused(ns, errno.EACCES))
    run_cli("report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html"), expect=2)  # --out given: not offered
    assert "--out" not in capsys.readouterr().err
    report.parent.mkdir()  # nor where a file there could not be read (review 54f; root reads any file: faked)
    report.write_text("")
    monkeypatch.setattr(cli.running.os, "access", lambda path, mode: not (mode & os.R_OK and path == str(report)))
    run_cli("report", str(tmp_path / "run"), expect=2)
    assert "--out" not in capsys.readouterr().err

def test_a_full_disk_names_the_file_and_says_the_run_can_resume(tmp_path, monkeypatch, capsys):
    # "error: No space left on device" alone: no file, and nothing of the checkpoint the run kept
    import argparse

    from peerdistill.cli import arguments
    from peerdistill.cli.running import _kept_for_resume
    from peerdistill.engine import artifacts

    def full(fd):
        raise OSError(28, "No space left on device")  # (what a write or fsync raises: no file name)

    with monkeypatch.context() as patched:
        patched.setattr(artifacts.os, "fsync", full)
        with pytest.raises(OSError) as error:
            artifacts.atomic_write_bytes(tmp_path / "x.json", b"{}")
    assert error.value.filename == str(tmp_path / "x.json") and not list(tmp_path.glob(".x.json.*"))

    def presets(ns):
        raise OSError(28, "No space left on device", str(tmp_path / "x.json"))

    monkeypatch.setattr(arguments, "cmd_presets", presets)
    run_cli("presets", expect=2)
    assert capsys.readouterr().err.strip() == (f"error: no space left on the device holding '{tmp_path / 'x.json'}': "
                                               "free some, then run the command again")

    def too_large(ns):  # review 51f: told to check the path and its permissions
        raise OSError(27, "File too large", str(tmp_path / "x.json"))

    monkeypatch.setattr(arguments, "cmd_presets", too_large)
    run_cli("presets", expect=2)
    assert capsys.readouterr().err.strip() == (f"error: File too large writing '{tmp_path / 'x.json'}': a file outgrew "
                                               "the size this shell or file system allows (ulimit -f, FAT32's 4 GiB); "
                                               "raise the limit or write elsewhere, then run the command again")

    def no_memory(ns):  # review 55j: numpy's ArrayMemoryError came out as a traceback
        import numpy as np

        return np.empty((2**40, 2**20), np.float32)

    monkeypatch.setattr(arguments, "cmd_presets", no_memory)
    run_cli("presets", expect=2)
    said = capsys.readouterr().err.strip()  # (numpy's own words in the middle, whichever version)
    assert said.startswith("error: out of memory: ") and said.count("\n") == 0 and said.endswith(
        ": ask for less (fewer or smaller images, smaller batches), or run where there is more memory")
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet")
    said = _kept_for_resume(argparse.Namespace(command="train", run_dir=tmp_path / "r"))
    assert said == ""  # (finished: nothing to resume)
    meta = tmp_path / "r" / "run.json"
    meta.write_text(meta.read_text().replace('"complete"', '"stopped"'))
    said = _kept_for_resume(argparse.Namespace(command="train", run_dir=tmp_path / "r"))
    assert said == f" (the run keeps its last checkpoint: peerdistill train --resume {tmp_path / 'r'} continues it)"
    # a path with a space, quoted so that the command pastes whole (review 45d)
    (tmp_path / "r").rename(tmp_path / "my run")
    said = _kept_for_resume(argparse.Namespace(command="train", run_dir=tmp_path / "my run"))
    assert said == (f" (the run keeps its last checkpoint: peerdistill train --resume '{tmp_path / 'my run'}' "
                    "continues it)")


def test_the_commands_printed_after_an_interruption_paste_back_into_a_shell(tmp_path, monkeypatch):
    """Review 56m: 'continue with peerdistill train --resume runs é/int4 it's 中文 🙂' broke in bash, and a run
    folder named '-d' read as an option."""
    import argparse
    import shlex

    from peerdistill.cli.running import _interrupted_hint
    from peerdistill.wording import shell_word

    assert shell_word("-d") == "./-d" and shell_word("runs/a b") == "'runs/a b'" and shell_word("runs/x") == "runs/x"
    monkeypatch.chdir(tmp_path)
    for name in ("runs é/it's 中文 🙂", "-d"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "checkpoints").mkdir()
        (tmp_path / name / "checkpoints" / "last.pt").write_bytes(b"x")
        said = _interrupted_hint(argparse.Namespace(command="train", run_dir=name, overwrite=False))
        command = said.split("continue with ")[1]
        assert shlex.split(command)[-2:] == ["--resume", name if name != "-d" else "./-d"], said


def test_an_interrupted_eval_predict_or_report_says_what_it_leaves():
    import argparse

    from peerdistill.cli.running import _interrupted_hint

    said = {command: _interrupted_hint(argparse.Namespace(command=command)) for command in ("eval", "predict", "report")}
    assert said["eval"].startswith("interrupted: nothing is half-written; with --save-images, the pictures there are "
                                   "this eval's but may be fewer")
    assert said["predict"].startswith("interrupted: each file written is whole (a CSV is written at the end")
    assert said["report"] == ("interrupted: the page is written whole once drawn, so none was written or changed: "
                              "run it again")
    assert _interrupted_hint(argparse.Namespace(command="presets")) == "interrupted"


def test_resuming_a_run_stopped_before_its_config_was_written_says_to_start_it_again(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text('{"status": "running"}', encoding="utf-8")  # (killed in its first second)
    run_cli("train", "--resume", tmp_path / "r", expect=2)
    assert ("it stopped before its config and first checkpoint were written, so there is nothing to resume: start it "
            "again, with --overwrite") in " ".join(capsys.readouterr().err.split())
    from peerdistill import run_lock

    held = run_lock.hold(tmp_path / "r")  # a run writing its first files now: not one that stopped
    try:
        run_cli("train", "--resume", tmp_path / "r", expect=2)
    finally:
        run_lock.release(held)
    said = " ".join(capsys.readouterr().err.split())
    assert "it is a run that has just started (another process holds it), its config and first checkpoint not " \
           "written yet" in said and "--overwrite" not in said
    (tmp_path / "r" / "run.json").unlink()  # killed before it wrote anything (review 52c)
    run_cli("train", "--resume", tmp_path / "r", expect=2)
    assert "the folder is empty, the run stopped before it wrote anything" in " ".join(capsys.readouterr().err.split())
    (tmp_path / "r" / "notes.txt").write_text("mine")
    run_cli("train", "--resume", tmp_path / "r", expect=2)
    assert "it has no config.yaml (is it a peerdistill run directory?)" in capsys.readouterr().err


def test_an_overwrite_interrupted_before_its_first_checkpoint_puts_the_old_run_back(tmp_path, monkeypatch, capsys):
    """Review 49f: Ctrl-C while the new run wrote its first files (here: its first step) left the
    old run hidden, and the hint (--resume, or --overwrite again) would have lost it. The old run
    is back, with its notes, and the hint says so."""
    from peerdistill.engine.trainer import Trainer

    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--quiet")
    (tmp_path / "r" / "notes.txt").write_text("mine")
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "step", interrupted)
    run_cli("train", f"out_dir={tmp_path}", "name=r", *FAST, "--overwrite", "--quiet", expect=130)
    err = " ".join(capsys.readouterr().err.split())
    assert (f"interrupted before the new run kept a checkpoint: '{tmp_path / 'r'}' holds the run --overwrite was "
            "replacing, put back as it was; the same command starts the new run again") in err
    assert {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # nothing left aside, nor kept beside it


def test_workers_asked_for_data_held_in_memory_are_said_unused_and_not_recorded_as_used(tmp_path):
    """Review 51d: run.json said data_workers 2 for a run whose batches no worker ever cut."""
    from peerdistill.errors import TrainingAdvice

    tree = {"out_dir": str(tmp_path), "name": "w", "train": {"epochs": 1, "batch_size": 256, "num_workers": 2},
            "teacher": None, "distill": {"preset": "ml"},
            "students": [{"arch": "cnn", "args": {"width": 4}}, {"arch": "cnn", "args": {"width": 4}}]}
    with pytest.warns(TrainingAdvice, match="train.num_workers=2 is not used: this data is held in memory"):
        train_from_config(validate(tree), progress=False)
    assert json.loads((tmp_path / "w" / "run.json").read_text())["speed"]["data_workers"] == 0


def test_the_dry_run_says_how_teachers_combine_and_how_heads_weigh_their_own_loss(tmp_path, capsys):
    """Review 52f: a CA-MKD run and a weighted one read alike, and (1 - self_alpha) was nowhere before training."""
    recipes = Path(__file__).resolve().parents[1] / "recipes"
    run_cli("train", recipes / "digits-multi-teacher.yaml", f"out_dir={tmp_path}", "--dry-run")
    printed = " ".join(capsys.readouterr().out.split())
    assert "teachers combined by a weighted average (teacher1 1 (67%), teacher2 0.5 (33%): each weight's share)" in printed
    run_cli("train", recipes / "digits-multi-teacher.yaml", f"out_dir={tmp_path}", "distill.teacher_weighting=confidence",
            "teachers.1.weight=1", "--dry-run")
    assert ("teachers combined per sample by how well each predicts the labels (CA-MKD, teacher_weighting: "
            "confidence)") in " ".join(capsys.readouterr().out.split())
    run_cli("train", recipes / "digits-self.yaml", f"out_dir={tmp_path}", "--dry-run")
    printed = " ".join(capsys.readouterr().out.split())
    assert "own label loss weighted student1@features.2 0.5, student1@features.6 0.5" in printed
    assert re.search(r"student1@features.2/kl<-student1 . kl . 0.5 . 3", printed)
    assert re.search(r"student1@features.2/hint<-student1 . hint . 0.1 . +│", printed)  # (no temperature read)
    assert "in no edge" not in printed
    # review 56b: a teacher beside a self-distilled student teaches nothing: said, not only listed as trained
    run_cli("train", recipes / "digits-self.yaml", f"out_dir={tmp_path}", "teacher={arch: cnn}", "--dry-run")
    assert ("teacher is in no edge: trained from the labels alone and scored beside the others"
            in " ".join(capsys.readouterr().out.split()))


def test_the_dry_run_says_which_students_of_one_architecture_are_not_packed_and_why(tmp_path, capsys):
    """Review 56a: a student left out of the packed network was in run.json alone; a GPU run lost the
    speed unsaid. The dry run names it beside the packed ones."""
    students = ("students=[{arch: cnn, args: {width: 8, depth: 2}}, {arch: cnn, args: {width: 8, depth: 2}}, "
                "{arch: cnn, args: {width: 16, depth: 2}}]")
    run_cli("train", f"out_dir={tmp_path}", "teacher=null", "distill.preset=ml", students, "train.fuse_students=true",
            "--dry-run")
    printed = " ".join(capsys.readouterr().out.split())
    assert ("students packed into one network: student1 + student2; student3: one by one (not packed with student1: "
            "student1 differs from student3 in its submodules' settings or its parameters' or buffers' names, shapes, "
            "dtypes or devices)") in printed


def test_the_dry_run_counts_one_class_in_the_singular(tmp_path):
    """Review 56j: '1 classes (polyp)' (Kvasir's detection data)."""
    import dataclasses
    import io

    from rich.console import Console

    from peerdistill.build import make_trainer
    from peerdistill.cli.dry_run import print_run_plan
    from peerdistill.config import load_config

    trainer, data = make_trainer(load_config(None, [f"out_dir={tmp_path}", *FAST]), progress=False)
    plan = trainer.check(data)
    for names, said in ((["polyp"], "1 class (polyp)"), (["a", "b"], "2 classes (a, b)")):
        out = io.StringIO()
        print_run_plan(dataclasses.replace(plan, class_names=names), Console(file=out, width=200), Console(file=out))
        assert f"test samples of 1x8x8, {said}" in out.getvalue()


def test_the_dry_runs_lines_wrap_between_words_on_a_terminal_and_stay_whole_in_a_log():
    """Review 53b: two of the plan's lines wrapped (one mid-sentence at a log's 120 columns), the rest
    broke words in a narrow terminal."""
    import io

    from rich.console import Console as RichConsole

    from peerdistill.cli.dry_run import _say

    text = "held in memory: 42.2 MiB (every split, images as float32, masks as int64)"
    for terminal in (True, False):
        out = io.StringIO()
        _say(RichConsole(file=out, width=30, force_terminal=terminal, color_system=None), text)
        lines = out.getvalue().splitlines()
        if terminal:
            assert len(lines) > 1 and " ".join(line.strip() for line in lines) == text  # no word cut
        else:
            assert lines == [text]


@pytest.mark.parametrize("local_rank, said", [("0", True), ("1", False)])
def test_under_torchrun_a_usage_error_is_said_by_the_nodes_first_process_alone(monkeypatch, capsys, local_rank, said):
    """Review 53a: every process parses the same command line, and each printed its usage error."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", local_rank)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    with pytest.raises(SystemExit) as stop:
        main(["train", "--bogus"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert ("peerdistill train: error: unrecognized arguments: --bogus" in err) is said
    if not said:
        assert err == ""


def test_a_batch_size_leaving_much_of_each_epoch_out_is_warned_of_and_one_past_the_split_said(tmp_path, capsys):
    """Review 53c: train.batch_size=600 left 477 of the embedded set's 1,077 training samples out of every
    epoch without a word, and batch_size=2000 was shown as "batch 2000" for one batch of 1,077."""
    run_cli("train", f"out_dir={tmp_path}", "train.batch_size=600", "--dry-run")
    printed = capsys.readouterr()
    said = " ".join((printed.out + printed.err).split())
    assert ("train.batch_size 600 leaves 477 of the 1,077 training samples out of every epoch (an epoch takes whole "
            "batches: 1 of 600; others are left out each epoch): train.batch_size=538 takes 2 batches, leaving 1 "
            "out") in said
    assert "1 step(s), batch 600, on" in said
    run_cli("train", f"out_dir={tmp_path}", "train.batch_size=64", "--dry-run")  # 53 of 1,077 left out: no news
    assert "leaves" not in capsys.readouterr().err
    run_cli("train", f"out_dir={tmp_path}", "train.batch_size=2000", "--dry-run")
    printed = " ".join(capsys.readouterr().out.split())
    assert ("1 step(s), one batch of the whole training split (1,077 samples; train.batch_size 2000 is larger), "
            "on cpu") in printed


def test_the_dry_run_says_which_trained_models_start_from_a_checkpoint(tmp_path, capsys):
    """Review 53c: a checkpoint on a model that is not frozen is its starting weights (fine-tuning);
    the dry run said only "trained: yes"."""
    import torch

    from peerdistill.models import build_model

    start = tmp_path / "start.pt"
    torch.save(build_model("cnn", {"width": 4, "depth": 2}, 1, 10).state_dict(), start)
    run_cli("train", f"out_dir={tmp_path}", *FAST, f"students.0.checkpoint={start}", "--dry-run")
    printed = " ".join(capsys.readouterr().out.split())
    assert re.search(r"student1 . student . cnn . [\d,]+ . yes, from its checkpoint", printed)
    assert re.search(r"student2 . student . cnn . [\d,]+ . yes +│", printed)
