"""Resuming keeps its promises: models/ ends at the reported best epoch whatever a killed run
wrote there, and a run resumes only with the config it was trained with."""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from peerdistill.build import train_from_config
from peerdistill.cli import main
from peerdistill.config import default_config, validate
from peerdistill.runs import evaluate_run
from peerdistill.engine.artifacts import jsonable


def small(tmp_path, name, **train):
    tree = default_config()
    tree.update(name=name, out_dir=str(tmp_path), deterministic=True)
    tree["teacher"]["args"]["width"] = 8
    for student in tree["students"]:
        student["args"]["width"] = 4
    tree["train"].update(epochs=3, **train)
    return validate(tree)


def killed_after_second_epoch(cfg):
    def crash(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_from_config(cfg, progress=False, callbacks=[crash])
    return cfg.out_dir + "/" + cfg.name


def test_models_hold_the_reported_best_after_a_resume(tmp_path):
    # Monitored on a frozen teacher, every epoch scores the same: the best stays the first, so
    # the resumed run finds no newer best that would rewrite models/ anyway.
    source = small(tmp_path, "source")
    source.train.epochs = 1
    train_from_config(source, progress=False)
    cfg = small(tmp_path, "r", monitor="teacher/accuracy")
    cfg.teacher.checkpoint = f"{tmp_path}/source"
    cfg.teacher.frozen = True
    run = killed_after_second_epoch(cfg)
    # A killed run can leave models/ newer than its checkpoint (written between the two): here,
    # weights no epoch ever had.
    path = f"{run}/models/student1.safetensors"
    save_file({k: torch.randn_like(v) if v.is_floating_point() else v for k, v in load_file(path).items()}, path)
    stale = f"{run}/checkpoints/.last.pt.k1ll3d.tmp"  # a write the kill cut short
    open(stale, "wb").write(b"half a checkpoint")
    assert main(["train", "--resume", run, "--quiet", "--overwrite"]) == 2  # which one is meant?
    assert main(["train", "--resume", run, "--quiet"]) == 0
    assert not os.path.exists(stale)
    reported = json.loads(open(f"{run}/metrics.json").read())
    assert reported["best_epoch"] == 1
    assert jsonable(evaluate_run(run)["student1"]) == pytest.approx(reported["test_at_best"]["student1"])



def test_a_run_that_stops_says_so_and_why_in_its_files_and_a_resume_clears_it(tmp_path):
    # both files said "running" for a run killed or failed: a script polling run folders could
    # not tell it from one still training
    run = killed_after_second_epoch(small(tmp_path, "r"))
    for name in ("run.json", "metrics.json"):
        record = json.loads(open(f"{run}/{name}").read())
        assert (record["status"], record["stopped_by"]) == ("stopped", "interrupted (Ctrl-C or SIGINT)")
    assert main(["report", run, "--out", str(tmp_path / "r.html")]) == 0
    assert "<b>status</b>: stopped: interrupted (Ctrl-C or SIGINT)" in (tmp_path / "r.html").read_text()
    resumed = json.loads(open(f"{run}/run.json").read())
    assert main(["train", "--resume", run, "--quiet"]) == 0
    for name in ("run.json", "metrics.json"):
        record = json.loads(open(f"{run}/{name}").read())
        assert record["status"] == "complete" and "stopped_by" not in record
    assert json.loads(open(f"{run}/run.json").read())["resumed_at"] == [{"epoch": 3, "step": 0, "processes": 1}]
    assert resumed["members"] == json.loads(open(f"{run}/run.json").read())["members"]

    cfg = small(tmp_path, "nan")
    cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay = "sgd", 1e4, 0.0, 0.0  # non-finite
    from peerdistill.errors import NonFiniteError

    with pytest.raises(NonFiniteError) as stopped:
        train_from_config(cfg, progress=False)
    record = json.loads(open(f"{tmp_path}/nan/run.json").read())
    assert record["status"] == "stopped" and record["stopped_by"].endswith(str(stopped.value))
    assert main(["report", f"{tmp_path}/nan", "--out", str(tmp_path / "nan.html")]) == 2  # stopped in epoch 1

def test_a_run_resumes_only_with_the_config_it_was_trained_with(tmp_path, capsys):
    run = killed_after_second_epoch(small(tmp_path, "e"))
    saved = yaml.safe_load(open(f"{run}/config.yaml"))
    edited = {**saved, "optim": {**saved["optim"], "lr": 0.1}, "train": {**saved["train"], "epochs": 5}}
    open(f"{run}/config.yaml", "w").write(yaml.safe_dump(edited))
    before = open(f"{run}/run.json").read()
    assert main(["train", "--resume", run, "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "differs from the config the checkpoint was trained with (optim.lr: 0.003 in the run, 0.1 now; " \
           "train.epochs: 3 in the run, 5 now)" in err, err
    assert open(f"{run}/run.json").read() == before, "a refused resume writes nothing"
    from peerdistill.config import load_saved_config
    from peerdistill.errors import CheckpointError

    with pytest.raises(CheckpointError) as refused:  # every process finds it alike: said once (review 46h)
        train_from_config(load_saved_config(Path(run) / "config.yaml"), run_dir=run, resume=True, progress=False)
    assert refused.value.said_alike == str(refused.value)
    open(f"{run}/config.yaml", "w").write(yaml.safe_dump(saved))
    assert main(["train", "--resume", run, "--quiet"]) == 0
    # a finished run is not trained further, even with more epochs written into its config
    open(f"{run}/config.yaml", "w").write(yaml.safe_dump(edited))
    assert main(["train", "--resume", run, "--quiet"]) == 2
    assert "has finished: nothing to resume" in capsys.readouterr().err


def test_a_checkpoint_whose_config_cannot_be_read_resumes_with_a_warning(tmp_path, capsys):
    # (a run of an older version whose config no longer reads) it resumed as its checkpoint left it,
    # unchecked and unsaid: another run's checkpoint put in its place went on in silence
    from peerdistill.engine.resume import load_resume_state, save_resume_state

    run = killed_after_second_epoch(small(tmp_path, "u"))
    checkpoint = Path(run) / "checkpoints" / "last.pt"
    state = load_resume_state(checkpoint)
    save_resume_state(checkpoint, {**state, "config": "seed: [not closed"})
    assert main(["train", "--resume", run, "--quiet"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "the config saved in the run's checkpoint cannot be read today" in err, err
    assert "the run resumes as its checkpoint left it" in err


def test_where_files_are_and_how_the_run_executes_may_change_on_resume(tmp_path, capsys):
    from peerdistill.engine.resume import load_resume_state, save_resume_state

    import numpy as np
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16).reshape(-1, 8, 8).astype(np.float32)
    np.savez(tmp_path / "digits.npz", train_images=x[:1200], train_labels=y[:1200], val_images=x[1200:1500],
             val_labels=y[1200:1500], test_images=x[1500:], test_labels=y[1500:])
    cfg = small(tmp_path, "m")
    cfg.data = type(cfg.data)(kind="npz", root=str(tmp_path / "digits.npz"))
    run = killed_after_second_epoch(cfg)
    (tmp_path / "moved").mkdir()
    (tmp_path / "digits.npz").rename(tmp_path / "moved" / "digits.npz")  # the data folder moved
    # the loader's "set data.root" cannot be done on the command line of a resume: the file and key are named
    assert main(["train", "--resume", run, "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert (f"data file '{tmp_path / 'digits.npz'}' does not exist: if the run's data moved, set data.root (root: "
            f"under data:) in '{Path(run) / 'config.yaml'}' to where it is now and resume again (--resume takes no "
            "key=value overrides") in err, err
    assert main(["train", "--resume", run, f"data.root={tmp_path / 'moved' / 'digits.npz'}", "--quiet"]) == 2
    assert ("drop the other arguments; to read its data where it moved, set data.root (root: under data:) in "
            f"'{Path(run) / 'config.yaml'}' instead") in " ".join(capsys.readouterr().err.split())
    saved = yaml.safe_load(open(f"{run}/config.yaml"))
    saved["data"]["root"] = str(tmp_path / "moved" / "digits.npz")
    saved["train"]["checkpoint_every_minutes"] = 1.0
    saved["train"]["nonfinite"] = "skip"  # to go on past a step that stopped the run
    saved["train"]["val_every"] = 2  # validation found slow mid-way (review 45a): no weight changes
    del saved["data"]["normalize"]  # as a version before that option wrote it
    open(f"{run}/config.yaml", "w").write(yaml.safe_dump(saved))
    state = load_resume_state(Path(run) / "checkpoints" / "last.pt")
    older = yaml.safe_load(state["config"])
    del older["data"]["normalize"]
    state["config"] = yaml.safe_dump(older)
    save_resume_state(Path(run) / "checkpoints" / "last.pt", state)
    # data.root may move, not change: other data of the same layout is refused, naming what differs
    for name, other, differs in [("fewer.npz", dict(test_images=x[1500:1700], test_labels=y[1500:1700]),
                                  "split sizes {'train': 1200, 'val': 300, 'test': 200}"),
                                 ("brighter.npz", dict(train_images=x[:1200] * 0.9, test_images=x[1500:]),
                                  "its training split's channel mean and std")]:
        arrays = dict(train_images=x[:1200], train_labels=y[:1200], val_images=x[1200:1500], val_labels=y[1200:1500],
                      test_images=x[1500:], test_labels=y[1500:])
        np.savez(tmp_path / name, **{**arrays, **other})
        open(f"{run}/config.yaml", "w").write(yaml.safe_dump({**saved, "data": {**saved["data"],
                                                                                 "root": str(tmp_path / name)}}))
        assert main(["train", "--resume", run, "--quiet"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "the data read now is not the data this run was trained on (" + differs in err, err
    open(f"{run}/config.yaml", "w").write(yaml.safe_dump(saved))
    os.makedirs(f"{run}/export")
    beside = f"{run}/export/.student1.onnx.x1y2.tmp"  # an export writing at the same time
    open(beside, "w").write("in flight")
    assert main(["train", "--resume", run, "--quiet"]) == 0
    assert os.path.exists(beside), "only the trainer's own temporaries are removed"


def test_a_resume_refuses_a_changed_frozen_teacher_and_a_checkpoint_it_cannot_continue(tmp_path, capsys):
    from peerdistill.engine.resume import load_resume_state, save_resume_state

    source = small(tmp_path, "source")
    source.train.epochs = 1
    train_from_config(source, progress=False)
    cfg = small(tmp_path, "f")
    cfg.teacher.checkpoint = f"{tmp_path}/source"
    cfg.teacher.frozen = True
    run = killed_after_second_epoch(cfg)
    before = open(f"{run}/run.json").read()

    def refused(message):
        assert main(["train", "--resume", run, "--quiet"]) == 2
        assert message in " ".join(capsys.readouterr().err.split())
        assert open(f"{run}/run.json").read() == before, "a refused resume writes nothing"

    # the teacher's file trained again (here: one weight moved) since the run began
    teacher_file = f"{tmp_path}/source/models/teacher.safetensors"
    original = {k: v.clone() for k, v in load_file(teacher_file).items()}  # (older safetensors map the file)
    key = next(k for k, v in original.items() if v.is_floating_point())
    save_file({**original, key: original[key] + 1e-3}, teacher_file)
    refused("the frozen 'teacher' loaded from its checkpoint is not the model this run was distilled from until now")
    save_file(original, teacher_file)
    # the teacher's file gone: the resume checkpoint holds only the trained models, so the file is needed back
    os.rename(f"{tmp_path}/source", f"{tmp_path}/gone")
    refused(f"cannot resume '{run}': the frozen teacher's checkpoint '{tmp_path}/source' (teacher.checkpoint) does "
            "not exist: the resume checkpoint holds the trained models' weights, not the frozen ones', which are read "
            f"from their files again, so put it back, or, if it moved, set teacher.checkpoint in "
            f"'{Path(run) / 'config.yaml'}' to where it is now")
    os.rename(f"{tmp_path}/gone", f"{tmp_path}/source")

    checkpoint = Path(run) / "checkpoints" / "last.pt"
    good = checkpoint.read_bytes()
    # the run's own config, in its own folder: a bare train --overwrite trained the embedded default (review 51f)
    again = (f"start the run again (peerdistill train {Path(run) / 'config.yaml'} out_dir={Path(run).parent} "
             f"name={Path(run).name} --overwrite)")
    state = load_resume_state(checkpoint)  # as a version without the step's statistics check could save
    state["models"]["student1"]["features.1.running_var"][0] = float("inf")
    save_resume_state(checkpoint, state)
    refused("the resume checkpoint's student1 holds NaN or infinite values in ['features.1.running_var']: it cannot "
            f"be continued; {again}")
    checkpoint.write_bytes(good[: len(good) // 2])
    refused(f"it is truncated or corrupt, so the run cannot be continued; {again}")
    save_resume_state(checkpoint, {"hello": 1})  # loads, but is none of train's (review 48b: "('models')")
    refused("the resume checkpoint (checkpoints/last.pt) lacks 'epoch', 'models', 'optimizers', 'schedulers', ..., "
            "which every checkpoint train writes holds: it is not this run's (another file put in its place?); put "
            f"the run's own back, or {again}")
    checkpoint.write_bytes(good)
    assert main(["train", "--resume", run, "--quiet"]) == 0


def test_a_packed_run_may_go_on_one_by_one_and_run_json_says_how_each_session_ran(tmp_path):
    run = killed_after_second_epoch(small(tmp_path, "p", fuse_students=True))
    saved = yaml.safe_load(open(f"{run}/config.yaml"))
    saved["train"]["fuse_students"] = False  # the same computation, run otherwise
    open(f"{run}/config.yaml", "w").write(yaml.safe_dump(saved))
    assert main(["train", "--resume", run, "--quiet"]) == 0
    meta = json.loads(open(f"{run}/run.json").read())
    assert meta["speed"]["fuse_students"] is True and meta["fused_students"] == [["student1", "student2"]]
    (resumed,) = meta["resumed_at"]
    assert resumed["speed"]["fuse_students"] is False and resumed["fused_students"] == []
    uninterrupted = small(tmp_path, "u", fuse_students=True)
    train_from_config(uninterrupted, progress=False)
    ended = json.loads(open(f"{run}/metrics.json").read())["test_at_best"]
    expected = json.loads(open(tmp_path / "u" / "metrics.json").read())["test_at_best"]
    for model, figures in expected.items():  # packed or not: the same students, to float rounding
        assert ended[model]["accuracy"] == pytest.approx(figures["accuracy"], abs=1 / 360), model


def test_an_in_epoch_checkpoint_is_not_written_over_the_last_good_one_with_non_finite_weights(tmp_path):
    """A step can leave weights non-finite with finite losses and gradients (here a weight the
    forward never reads, as a runaway optimizer state could): the checkpoint of that moment
    is skipped, the one before stays, and no weights are saved."""
    from torch import nn

    from peerdistill import Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.errors import PeerdistillError
    from peerdistill.tasks import ClassificationTask

    class BreaksAtStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.spare, self.calls = nn.Linear(4, 2), nn.Parameter(torch.zeros(3)), 0

        def forward(self, x):
            self.calls += self.training
            if self.training and self.calls == 3:
                with torch.no_grad():
                    self.spare.fill_(float("inf"))
            return self.fc(x)

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    data = DataSplits.from_arrays(x[:40], y[:40], x[40:52], y[40:52], x[52:], y[52:])
    trainer = Trainer(Cohort.from_modules([BreaksAtStep()]), KnowledgeGraph([]), ClassificationTask(2),
                      train=TrainSpec(epochs=1, batch_size=8, checkpoint_every_steps=1), run_dir=tmp_path / "r")
    with pytest.raises(PeerdistillError):
        trainer.fit(data)
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    tensors = []

    def collect(o):
        if isinstance(o, torch.Tensor) and o.is_floating_point():
            tensors.append(o)
        elif isinstance(o, dict):
            [collect(v) for v in o.values()]
        elif isinstance(o, (list, tuple)):
            [collect(v) for v in o]

    collect(state)
    assert tensors and all(torch.isfinite(t).all() for t in tensors)
    assert not list((tmp_path / "r").rglob("*.safetensors"))


def test_a_run_saved_with_a_key_no_term_read_resumes_without_it():
    """A run saved before unread distill keys were refused (kd_temperature under ml) resumes with
    today's config, which no longer holds the key; a key its terms read still counts."""
    from types import SimpleNamespace

    from peerdistill.config import apply_overrides, to_yaml
    from peerdistill.engine.records import RunRecords
    from peerdistill.errors import CheckpointError

    now = apply_overrides(default_config(), ["distill.preset=ml"])
    trained = yaml.safe_load(to_yaml(validate(now)))
    trained["distill"]["kd_temperature"] = 2.0
    run = SimpleNamespace(config_yaml=to_yaml(validate(now)), run_dir_path=Path("r"))
    RunRecords._check_same_config(run, {"config": yaml.safe_dump(trained)})
    trained["distill"]["ml_temperature"] = 2.0
    with pytest.raises(CheckpointError, match=r"distill.ml_temperature: 2.0 in the run, 1.0 now"):
        RunRecords._check_same_config(run, {"config": yaml.safe_dump(trained)})


def test_a_run_saved_with_teacher_weights_under_confidence_weighting_resumes(tmp_path):
    """Teachers' weights under confidence weighting (which reads none) are refused since; a run
    saved with them before trains on, built with weights 1 (as it trained: they were never read),
    and a config without them is the same run."""
    from types import SimpleNamespace

    from peerdistill.build import make_trainer
    from peerdistill.config import apply_overrides, to_yaml
    from peerdistill.engine.records import RunRecords
    from peerdistill.errors import ConfigError

    tree = apply_overrides(default_config(), [
        "teacher=null", "distill.preset=multi-teacher", "distill.teacher_weighting=confidence",
        "teachers=[{arch: cnn, args: {width: 4, depth: 1}, weight: 0.5}, {arch: cnn, args: {width: 4, depth: 1}}]",
        "students=[{arch: cnn, args: {width: 4, depth: 1}}]", f"out_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="reads no teacher weight"):  # a new run: refused
        make_trainer(validate(tree), progress=False)
    trainer, _ = make_trainer(validate(tree, saved=True), progress=False, resume=True)  # the run it was: trains
    assert [m.weight for m in trainer.cohort.teachers] == [1.0, 1.0]
    now = yaml.safe_load(to_yaml(validate(tree, saved=True)))
    del now["teachers"][0]["weight"]
    run = SimpleNamespace(config_yaml=yaml.safe_dump(now), run_dir_path=Path("r"))
    RunRecords._check_same_config(run, {"config": to_yaml(validate(tree, saved=True))})


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    import os

    from peerdistill.engine.artifacts import atomic_write_text

    target = tmp_path / "metrics.json"
    target.write_text("old")

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)  # the new contents written, not yet on disk
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_an_atomic_write_gives_the_file_the_usual_mode_not_a_private_one(tmp_path):
    import os

    from peerdistill.engine.artifacts import atomic_write_text

    mask = os.umask(0)  # read it (the only way is to set it), then put it back
    os.umask(mask)
    atomic_write_text(tmp_path / "run.json", "{}")
    # what open() would give (0644 under the usual umask 022); mkstemp's temporary file alone is 0600
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_killed_trainers_temporary_files_are_removed_and_others_kept(tmp_path):
    from peerdistill.engine.artifacts import RunDir

    run = RunDir(tmp_path)
    left = [".run.json.a1.tmp", ".metrics.csv.b2.tmp", ".config.yaml.c3.tmp", "checkpoints/.last.pt.d4.tmp",
            "models/.student1.safetensors.e5.tmp", "heads/.student1.safetensors.f6.tmp"]
    kept = [".report.html.g7.tmp", "export/.model.onnx.h8.tmp", "run.json"]  # a report or an export writing beside
    for name in left + kept:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    run.remove_partial_writes()
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)


def test_a_run_with_a_partial_write_beside_its_files_is_not_taken_for_an_empty_start(tmp_path):
    from peerdistill.engine.artifacts import RunDir
    from peerdistill.errors import RunDirError

    (tmp_path / "run.json").write_text(json.dumps({"status": "complete"}))
    (tmp_path / ".metrics.json.x1.tmp").write_text("{")  # killed while rewriting metrics.json
    with pytest.raises(RunDirError, match="holds a finished run"):
        RunDir.create(tmp_path)
    assert (tmp_path / "run.json").is_file()
    (tmp_path / "run.json").unlink()  # a temporary file alone: killed while writing its first file
    RunDir.create(tmp_path)
    assert not any(tmp_path.iterdir())


def test_overwriting_a_run_twice_in_one_second_keeps_both_old_runs_extra_files(tmp_path, monkeypatch):
    import time
    import warnings

    from peerdistill.engine.artifacts import RunDir

    monkeypatch.setattr(time, "strftime", lambda fmt: "20261205-120000")  # both replacements in the same second
    run = tmp_path / "r"
    for text in ("first", "second"):
        run.mkdir(exist_ok=True)
        (run / "run.json").write_text(json.dumps({"status": "complete"}))
        (run / "models").mkdir(exist_ok=True)
        (run / "models" / "student1.safetensors").write_text("weights")
        (run / "report.html").write_text(text)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            RunDir.create(run, overwrite=True).discard_replaced()  # (as the new run's first checkpoint does)
        assert len(caught) == 1 and "moved what it held besides the run (report.html)" in str(caught[0].message)
        assert not any(run.iterdir()), "the run's own files are gone, the folder is empty for the new run"
    assert (tmp_path / "r.kept-20261205-120000" / "report.html").read_text() == "first"
    assert (tmp_path / "r.kept-20261205-120000-2" / "report.html").read_text() == "second"
    assert not list(tmp_path.glob("r.kept-*/models")), "the old run's weights are not kept"


def test_overwriting_keeps_a_users_files_in_the_runs_tensorboard_folder_but_not_its_event_files(tmp_path):
    import warnings

    from peerdistill.engine.artifacts import RunDir

    run = tmp_path / "r"
    (run / "tensorboard" / "baseline").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "complete", "members": [{"name": "student1"}]}))
    (run / "tensorboard" / "events.out.tfevents.1764936000.host.123.0").write_bytes(b"the run's log")
    (run / "tensorboard" / "baseline" / "events.out.tfevents.1.host.1.0").write_bytes(b"another run's log")
    (run / "tensorboard" / "projector_config.pbtxt").write_text("mine")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RunDir.create(run, overwrite=True)
    assert len(caught) == 1 and ("(tensorboard/baseline/, tensorboard/projector_config.pbtxt)"
                                 in str(caught[0].message)), [str(w.message) for w in caught]
    kept = next(tmp_path.glob("r.kept-*"))
    assert (kept / "tensorboard" / "baseline" / "events.out.tfevents.1.host.1.0").read_bytes() == b"another run's log"
    assert (kept / "tensorboard" / "projector_config.pbtxt").read_text() == "mine"
    assert not (kept / "tensorboard" / "events.out.tfevents.1764936000.host.123.0").exists(), "the run's own log goes"


def test_outputs_are_refused_over_a_runs_files_and_its_data_but_not_beside_them(tmp_path):
    from peerdistill.engine.artifacts import check_not_a_run_file, check_not_in_data
    from peerdistill.errors import ConfigError

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    for target in (run / "models" / "x.onnx", run / "metrics.json"):
        with pytest.raises(ConfigError):
            check_not_a_run_file(target)
    loose = tmp_path / "models"  # a folder named models outside any run is the user's
    loose.mkdir()
    check_not_a_run_file(loose / "x.onnx")
    check_not_a_run_file(run / "report.html")
    comparison = tmp_path / "cmp"  # a comparison's tables, the paired differences among them (review 48d)
    comparison.mkdir()
    (comparison / "compare.csv").write_text("setting\n")
    for name in ("compare.csv", "compare.md", "differences.csv"):
        with pytest.raises(ConfigError, match=r"one of the files of the run \(or comparison\)"):
            check_not_a_run_file(comparison / name)
    check_not_a_run_file(comparison / "notes.csv")
    data = tmp_path / "data"
    with pytest.raises(ConfigError, match="is inside"):
        check_not_in_data(data / "masks" / "a.png", [data])
    check_not_in_data(tmp_path / "data-out" / "a.png", [data])


def test_a_csv_of_rows_has_every_column_in_the_order_first_seen(tmp_path):
    from peerdistill.engine.artifacts import write_rows_csv

    write_rows_csv(tmp_path / "t.csv", [{"a": 1, "b": 2}, {"a": 3, "c": 4}])
    assert (tmp_path / "t.csv").read_text().splitlines() == ["a,b,c", "1,2,", "3,,4"]


def test_infinite_figures_are_written_as_null_like_nan(tmp_path):
    from peerdistill.engine.artifacts import write_json

    write_json(tmp_path / "m.json", {"loss": float("inf"), "rows": [float("-inf"), float("nan"), 1.5]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"loss": None, "rows": [None, None, 1.5]}


def test_a_model_with_tied_weights_is_saved_and_loads_back(tmp_path):
    from torch import nn

    from peerdistill.engine.artifacts import load_weights, save_weights

    def tied():
        model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
        model[1].weight = model[0].weight  # one tensor under two names: safetensors refuses shared memory
        return model

    torch.manual_seed(0)
    model, copy = tied(), tied()
    save_weights(model, tmp_path / "m.safetensors")
    load_weights(copy, tmp_path / "m.safetensors")
    assert torch.equal(copy[0].weight, model[0].weight) and torch.equal(copy[1].weight, model[0].weight)


def test_every_random_state_a_checkpoint_keeps_is_restored_through_the_file(tmp_path):
    """Python's, NumPy's (their cached Gaussian too), torch's and the data generator's: after a
    save and a load (weights_only) the draws go on exactly as they would have without the stop."""
    import random

    import numpy as np

    from peerdistill.engine.resume import capture_rng_states, load_resume_state, restore_rng_states, save_resume_state

    def draws(generator):
        return (random.random(), random.gauss(0, 1), np.random.rand(), np.random.standard_normal(),
                torch.rand(2).tolist(), torch.randperm(8, generator=generator).tolist())

    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    generator = torch.Generator().manual_seed(6)
    random.gauss(0, 1)  # each leaves a second Gaussian cached for the next call
    np.random.standard_normal()
    save_resume_state(tmp_path / "last.pt", {"rng": capture_rng_states(generator)})
    expected = draws(generator)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    restore_rng_states(load_resume_state(tmp_path / "last.pt")["rng"], generator)
    assert draws(generator) == expected


def test_a_resume_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    """A save that fails part way (a full disk) leaves the last good checkpoint, not a cut one."""
    from peerdistill.engine.resume import load_resume_state, save_resume_state

    save_resume_state(tmp_path / "last.pt", {"epoch": 1})

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space left"):
        save_resume_state(tmp_path / "last.pt", {"epoch": 2, "weights": torch.zeros(1000)})
    assert load_resume_state(tmp_path / "last.pt") == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_missing_or_cut_resume_checkpoint_is_named_as_such(tmp_path):
    from peerdistill.engine.resume import load_resume_state, save_resume_state
    from peerdistill.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no resume checkpoint at .*moved or deleted since"):
        load_resume_state(tmp_path / "last.pt")
    save_resume_state(tmp_path / "whole.pt", {"weights": torch.randn(64, 64)})
    whole = (tmp_path / "whole.pt").read_bytes()
    for cut in (10, 100, len(whole) // 2, len(whole) - 100):  # (each length fails in torch in its own way)
        (tmp_path / "last.pt").write_bytes(whole[:cut])
        with pytest.raises(CheckpointError, match="cannot read resume checkpoint .*truncated or corrupt") as refused:
            load_resume_state(tmp_path / "last.pt")
        assert "not the zip archive" not in str(refused.value)  # (cut short, not of another kind: review 52i)
    (tmp_path / "last.pt").write_bytes(b"")  # (review 52j: an empty file said to be of another kind)
    with pytest.raises(CheckpointError, match=r"cannot read resume checkpoint .* \(it is empty\): it is truncated"):
        load_resume_state(tmp_path / "last.pt")
    # text in its place (review 52c: a traceback, KeyError 101; or a fragment of it named as an object)
    for text in (b"hello\n", b"checkpoint moved to backup server\n"):
        (tmp_path / "last.pt").write_bytes(text)
        with pytest.raises(CheckpointError, match=r"cannot read resume checkpoint .* \(it is not the zip archive torch "
                                                  r"saves a checkpoint as\): it is truncated or corrupt"):
            load_resume_state(tmp_path / "last.pt")


def test_overwrite_of_a_run_folder_that_is_a_symbolic_link_is_refused_before_anything_moves(tmp_path):
    from peerdistill.engine.artifacts import RunDir
    from peerdistill.errors import RunDirError

    run = tmp_path / "r1"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "complete"}))
    (run / "notes.txt").write_text("mine")
    (tmp_path / "latest").symlink_to("r1")
    with pytest.raises(RunDirError, match=r"'.*latest' is a symbolic link to 'r1', which holds a run: replacing it "
                                          r"would replace the link; give the run's own folder"):
        RunDir.create(tmp_path / "latest", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "r1"], "nothing moved, renamed or left behind"
    assert (run / "notes.txt").read_text() == "mine"
    # a run stopped in its first epoch, through a link: refused alike, before any "started again"
    import warnings

    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "run.json").write_text(json.dumps({"status": "stopped"}))
    (stopped / "config.yaml").write_text("a: 1")
    (tmp_path / "to-stopped").symlink_to("stopped")
    with warnings.catch_warnings(record=True) as said, pytest.raises(RunDirError, match="is a symbolic link"):
        warnings.simplefilter("always")
        RunDir.create(tmp_path / "to-stopped")
    assert not said and (stopped / "run.json").is_file()
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True).stdout.strip()  # (a process no longer running: a fixed number may be one)
    left = tmp_path / f".deleting-latest.{ended}"
    left.symlink_to("r1")  # left by a version that renamed such links away
    with pytest.raises(RunDirError, match="holds a finished run"):  # the next start clears what a replacement left
        RunDir.create(tmp_path / "latest")
    assert not left.is_symlink() and (run / "run.json").is_file()


def test_overwrite_leaves_what_a_linked_run_folder_points_to_where_it_is(tmp_path):
    """checkpoints/ linked to a scratch disk: replacing the run removes the link alone; a backup
    there is neither moved across file systems nor deleted."""
    from peerdistill.engine.artifacts import RunDir

    run, scratch = tmp_path / "runs" / "r", tmp_path / "scratch"
    run.mkdir(parents=True)
    scratch.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "complete", "members": []}))
    (scratch / "last.pt").write_bytes(b"state")
    (scratch / "epoch3-backup.pt").write_bytes(b"mine")
    (run / "checkpoints").symlink_to(scratch)
    RunDir.create(run, overwrite=True).discard_replaced()  # (as the new run's first checkpoint does)
    assert not any(run.iterdir()) and sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]
    assert (scratch / "epoch3-backup.pt").read_bytes() == b"mine" and (scratch / "last.pt").is_file()


def test_run_json_records_what_a_repeat_depends_on_and_a_resume_where_it_differed(tmp_path):
    """Review 51d: one thread against two changed a student's test accuracy, and nothing in the run
    said which versions, device or threads it had trained with."""
    import platform

    import numpy as np
    import torch

    import peerdistill

    run = killed_after_second_epoch(small(tmp_path, "e"))
    meta = json.loads(open(f"{run}/run.json").read())
    here = {"peerdistill": peerdistill.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "device": "cpu", "threads": torch.get_num_threads()}
    assert {key: meta["environment"][key] for key in here} == here
    assert set(meta["environment"]) == {*here, "source", "platform"}
    # as though the first session had run elsewhere: the resume records what differs, and the page says it
    meta["environment"].update(torch="2.10.0", threads=torch.get_num_threads() + 5)
    open(f"{run}/run.json", "w").write(json.dumps(meta))
    assert main(["train", "--resume", run, "--quiet"]) == 0
    (resumed,) = json.loads(open(f"{run}/run.json").read())["resumed_at"]
    assert resumed == {"epoch": 3, "step": 0, "processes": 1,
                       "environment": {"torch": torch.__version__, "threads": torch.get_num_threads()}}
    assert main(["report", run, "--out", str(tmp_path / "e.html")]) == 0
    page = " ".join((tmp_path / "e.html").read_text().split())
    one = "" if torch.get_num_threads() == 1 else "s"
    assert (f"torch 2.10.0, numpy {np.__version__}, python {platform.python_version()}, on cpu, "
            f"{torch.get_num_threads() + 5} threads; resumed at epoch 3 with torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread{one}</li>") in page
    # a resume that changed the source alone says it (review 51l: "resumed at epoch 3 with " and nothing)
    from peerdistill.html_report.run_page import _environment_in_words

    meta = json.loads(open(f"{run}/run.json").read())
    meta["resumed_at"] = [{"epoch": 2, "step": 0, "environment": {"source": "abc123-dirty"}}]
    assert _environment_in_words(meta).endswith("; resumed at epoch 2 with peerdistill's source, git commit abc123-dirty")


def test_the_command_that_starts_a_run_again_names_its_own_folder_and_an_old_configs_keys(tmp_path, monkeypatch):
    """Review 51k: a moved run's folder is not named after its config, so out_dir alone trained
    elsewhere; an earlier version's config may hold keys this one refuses."""
    from peerdistill.config import default_config
    from peerdistill.engine.resume import start_again

    run = tmp_path / "moved"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({**default_config(), "name": "r", "out_dir": "runs"}))
    assert start_again(run) == (f"start the run again (peerdistill train {run / 'config.yaml'} out_dir={tmp_path} "
                                "name=moved --overwrite)")
    old = default_config()
    old["data"] = {**old.get("data", {}), "grey": True}  # (digits never read it; accepted before 2026-12-07)
    (run / "config.yaml").write_text(yaml.safe_dump({**old, "name": "r"}))
    assert start_again(run).endswith("--overwrite, once its config.yaml holds none of the keys that command names "
                                     "as not read: an earlier version accepted them)")
    assert start_again(tmp_path / "python-run") == "start the run again (train it with overwrite)"
    (run / "config.yaml").write_text(yaml.safe_dump({**default_config(), "name": "r"}))
    with monkeypatch.context() as launcher:  # under torchrun: started as it was (review 56c)
        launcher.setenv("WORLD_SIZE", "2")
        launcher.setenv("RANK", "0")
        assert start_again(run) == (f"start the run again (torchrun ... -m peerdistill train {run / 'config.yaml'} "
                                    f"out_dir={tmp_path} name=moved --overwrite)")
    os.chdir(run)  # (resumed as '.': its name was empty, review 51m)
    try:
        assert start_again(Path(".")) == (f"start the run again (peerdistill train {run / 'config.yaml'} "
                                          f"out_dir={tmp_path} name=moved --overwrite)")
    finally:
        os.chdir(tmp_path)


def test_a_run_of_an_earlier_version_resumed_records_this_sessions_environment_and_no_change_it_did_not_make(
        tmp_path, capsys):
    """Review 51k: such a run never gained an environment, and its resume recorded data_workers 2 -> 0,
    workers that had never run (data held in memory)."""
    run = killed_after_second_epoch(small(tmp_path, "old"))
    meta = json.loads(open(f"{run}/run.json").read())
    del meta["environment"]
    meta["speed"]["data_workers"] = 2  # as an earlier version recorded train.num_workers=2
    open(f"{run}/run.json", "w").write(json.dumps(meta))
    assert main(["train", "--resume", run, "--quiet"]) == 0
    (resumed,) = json.loads(open(f"{run}/run.json").read())["resumed_at"]
    assert "speed" not in resumed and resumed["environment"]["torch"] == torch.__version__
    assert set(resumed["environment"]) >= {"peerdistill", "python", "torch", "numpy", "device", "threads"}
    assert "num_workers" not in capsys.readouterr().err


def test_a_resume_needs_no_trained_students_starting_checkpoint_and_keeps_the_digest_it_began_with(tmp_path):
    """A student fine-tuned from a checkpoint resumes with its weights from the resume
    checkpoint: the file it started from, gone or changed since, makes no difference, and run.json
    keeps the SHA-256 of the file the run began from (compare reuses the run only while it holds)."""
    import shutil

    from peerdistill.data.digests import file_sha256

    source = small(tmp_path, "source")
    source.train.epochs = 1
    train_from_config(source, progress=False)
    start = tmp_path / "source" / "models" / "student1.safetensors"
    began = file_sha256(start)
    cfg = small(tmp_path, "r")
    cfg.train.epochs = 2
    cfg.students[0].checkpoint = str(start)

    def crash(epoch, row):
        if epoch == 0:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_from_config(cfg, progress=False, callbacks=[crash])
    for copy in ("gone", "changed"):
        shutil.copytree(tmp_path / "r", tmp_path / copy)

    def resumed(run):
        assert main(["train", "--resume", str(tmp_path / run), "--quiet"]) == 0
        assert json.loads((tmp_path / run / "run.json").read_text())["checkpoint_sha256"]["student1"] == began
        return load_file(tmp_path / run / "models" / "student1.safetensors")

    with_file = resumed("r")
    original = start.read_bytes()
    start.unlink()
    without = resumed("gone")
    # changed since (the resumed weights moved by 1): neither read nor recorded in place of the one it began from
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in with_file.items()}, start)
    assert file_sha256(start) != began
    changed = resumed("changed")
    start.write_bytes(original)
    for other in (without, changed):
        assert set(other) == set(with_file) and all(torch.equal(other[k], with_file[k]) for k in with_file)
