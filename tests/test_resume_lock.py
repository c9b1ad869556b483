"""A run another process trains is refused by train --resume before its data is read and its models
built, and the lock then taken is held until the run ends (run_lock.py: held_ahead)."""

import json

import pytest

from peerdistill import build
from peerdistill.cli import main
from peerdistill.config import load_saved_config, validate
from peerdistill import run_lock
from peerdistill.engine.trainer import Trainer
from peerdistill.errors import ConfigError, RunDirError

pytestmark = pytest.mark.skipif(run_lock.fcntl is None, reason="run directories are locked with flock (not on Windows)")

TINY = ["train.epochs=1", "train.batch_size=256", "teacher=null", "distill.preset=ml",
        "students.0.args.width=4", "students.1.args.width=4", "--quiet"]
BUSY = "is being trained by another process right now"


def _as_in_training(run) -> None:
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "status": "running"}))  # as a run in training shows it


def _set_up_fails(monkeypatch) -> list[str]:
    """Reading the data and building the models (the command line's), and the trainer's own set-up
    (batches, the probe), each noted and failing the test where reached."""
    reached = []

    def read_data(*args, **kwargs):  # (make_trainer's first step past its checks)
        reached.append("read the data")
        raise AssertionError("the data was read before the run's lock was checked")

    def setup(self, *args, **kwargs):
        reached.append("_setup")
        raise AssertionError("the trainer set up before the run's lock was checked")

    monkeypatch.setattr(build, "_read_noting", read_data)
    monkeypatch.setattr(Trainer, "_setup", setup)
    return reached


def test_a_resume_of_a_run_being_trained_is_refused_before_any_set_up(tmp_path, capsys, monkeypatch):
    assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY]) == 0
    run = tmp_path / "r"
    _as_in_training(run)
    cfg = load_saved_config(run / "config.yaml")
    trainer, data = build.make_trainer(cfg, run_dir=run, resume=True, progress=False)  # (a script's, for fit below)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    held = run_lock.hold(run)  # another process training it (a second descriptor conflicts as one would)
    try:
        reached = _set_up_fails(monkeypatch)
        capsys.readouterr()
        assert main(["train", "--resume", str(run), "--quiet"]) == 2
        assert BUSY in " ".join(capsys.readouterr().err.split())
        assert reached == []
        # --overwrite of it: refused before the data is read too
        assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY, "--overwrite"]) == 2
        assert BUSY in " ".join(capsys.readouterr().err.split())
        assert reached == []
        # from Python: before the trainer's set-up (its batches, a forward of the probe)
        with pytest.raises(RunDirError, match=BUSY):
            trainer.fit(data, resume=True)
        assert reached == []
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before, "nothing written or deleted"
    finally:
        run_lock.release(held)
    assert not run_lock._AHEAD


def _stopped_in_its_second_epoch(tmp_path, monkeypatch):
    cfg = validate({"teacher": None, "distill": {"preset": "ml", "rampup_epochs": 1},
                    "train": {"epochs": 2, "batch_size": 256}, "students": [{"arch": "cnn", "args": {"width": 4}}] * 2,
                    "out_dir": str(tmp_path), "name": "r"})
    real_epoch = Trainer._train_epoch
    epochs = []

    def epoch(self, *args, **kwargs):
        epochs.append(True)
        if len(epochs) == 2:
            raise KeyboardInterrupt
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", epoch)
    with pytest.raises(KeyboardInterrupt):
        build.train_from_config(cfg, run_dir=tmp_path / "r", progress=False)
    monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)
    return tmp_path / "r"


def test_the_lock_a_resume_takes_first_is_held_through_set_up_and_training_then_freed(tmp_path, capsys,
                                                                                      monkeypatch):
    run = _stopped_in_its_second_epoch(tmp_path, monkeypatch)
    seen = []
    real_make, real_setup, real_epoch = build.make_trainer, Trainer._setup, Trainer._train_epoch

    def held(where):
        seen.append((where, run_lock.is_held(run)))

    def make_trainer(*args, **kwargs):
        held("reading the data, building the models")
        return real_make(*args, **kwargs)

    def setup(self, *args, **kwargs):
        held("the trainer's set-up")
        return real_setup(self, *args, **kwargs)

    def epoch(self, *args, **kwargs):
        held("training")
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(build, "make_trainer", make_trainer)
    monkeypatch.setattr(Trainer, "_setup", setup)
    monkeypatch.setattr(Trainer, "_train_epoch", epoch)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert seen == [("reading the data, building the models", True), ("the trainer's set-up", True),
                    ("training", True)]
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert not run_lock.is_held(run) and not run_lock._AHEAD and not run_lock._HELD  # freed, nothing left open


def test_a_resume_whose_set_up_fails_frees_the_lock(tmp_path, capsys, monkeypatch):
    run = _stopped_in_its_second_epoch(tmp_path, monkeypatch)

    def make_trainer(*args, **kwargs):
        assert run_lock.is_held(run)  # (taken before)
        raise ConfigError("the data is not there")

    monkeypatch.setattr(build, "make_trainer", make_trainer)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert "the data is not there" in capsys.readouterr().err
    assert not run_lock.is_held(run) and not run_lock._AHEAD and not run_lock._HELD
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # free: resumed to the end


def test_a_resumed_folder_without_run_json_is_no_run_not_one_just_started(tmp_path, capsys):
    # the resume's own lock, taken before its set-up, is no other process starting the run
    assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY]) == 0
    run = tmp_path / "r"
    (run / "run.json").unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert f"'{run}' is not a peerdistill run directory (no run.json)" in said and "just started" not in said
    assert not run_lock.is_held(run)  # let go as the command ended
    held = run_lock.hold(run)  # another holder (a run starting in it, say) is no resume of this process's
    try:
        assert run_lock.is_held(run) and not run_lock.resuming_here(run)
    finally:
        run_lock.release(held)
    with run_lock.held_ahead(run):  # a resume's lock, taken ahead of its set-up
        assert run_lock.resuming_here(run)
    assert not run_lock.resuming_here(run)


def test_under_torchrun_one_process_of_a_node_puts_back_what_a_killed_overwrite_left(tmp_path, monkeypatch):
    # every process finishing it at once raced: the put-back was said only where the main process won
    import threading

    from peerdistill.cli import commands
    from peerdistill.engine import artifacts
    from peerdistill.run_files import REPLACED_PREFIX

    run = tmp_path / "r"
    run.mkdir()
    aside = tmp_path / f"{REPLACED_PREFIX}r.12345"
    aside.mkdir()
    finished = []
    monkeypatch.setattr(artifacts, "finish_replacing", lambda path: finished.append(path))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    commands.put_back_replaced(run)  # the node's first process finishes it
    assert finished == [run]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")  # another: waits until the first has, and touches nothing
    mover = threading.Timer(0.5, lambda: aside.rename(tmp_path / "gone"))
    mover.start()
    try:
        commands.put_back_replaced(run, wait=30)
    finally:
        mover.cancel()
    assert finished == [run] and not aside.exists()
    aside.mkdir()  # a first process that never finishes: said, not waited for forever
    with pytest.raises(ConfigError, match=r"this node's first process has not finished putting back what a killed "
                                          r"--overwrite left beside it within 0 s"):
        commands.put_back_replaced(run, wait=0.3)
    assert finished == [run]


def test_a_resume_of_a_run_being_trained_is_refused_before_torch_is_imported(tmp_path):
    # the refusal is said at once: torch's import alone took 2 s of the 4 s it took when the lock lived in engine
    import subprocess
    import sys
    from pathlib import Path

    assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY]) == 0
    run = tmp_path / "r"
    _as_in_training(run)
    script = ("import sys\nfrom peerdistill.cli import main\n"
              f"code = main(['train', '--resume', {str(run)!r}, '--quiet'])\n"
              "print(code, 'torch' in sys.modules)\n")
    held = run_lock.hold(run)
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    finally:
        run_lock.release(held)
    assert done.stdout.split() == ["2", "False"], (done.stdout, done.stderr[-2000:])
    assert f"'{run}' is being trained by another process (process " in " ".join(done.stderr.split())
