"""One process trains a run directory at a time (run_lock.py)."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from peerdistill.cli import main
from peerdistill.comparison_runs import _run_state
from peerdistill.config import validate
from peerdistill import run_lock
from peerdistill.engine.trainer import Trainer
from peerdistill.errors import CheckpointError, PeerdistillWarning, RunDirError
from peerdistill.runs import load_cohort

pytestmark = pytest.mark.skipif(run_lock.fcntl is None, reason="run directories are locked with flock (not on Windows)")

TINY = ["train.epochs=1", "train.batch_size=256", "teacher=null", "distill.preset=ml",
        "students.0.args.width=4", "students.1.args.width=4", "--quiet"]
BUSY = "is being trained by another process right now"


def test_a_run_being_trained_is_neither_resumed_nor_replaced_nor_reused(tmp_path, capsys):
    assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY]) == 0
    run = tmp_path / "r"
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "status": "running"}))  # as a run in training shows it
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    held = run_lock.hold(run)  # another process training it (a second descriptor conflicts as one would)
    try:
        capsys.readouterr()
        assert main(["train", "--resume", str(run), "--quiet"]) == 2
        assert BUSY in " ".join(capsys.readouterr().err.split())
        assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY, "--overwrite"]) == 2
        assert BUSY in " ".join(capsys.readouterr().err.split())
        with pytest.raises(RunDirError, match=BUSY):
            _run_state(run, None)  # compare: checked before the run's config is read (so none is needed)
        with pytest.warns(PeerdistillWarning, match="is being trained right now: its models are those of its best"):
            load_cohort(run)  # read from Python (evaluate_run, export_run), said to be unfinished
        from peerdistill.runs import unfinished_note

        assert unfinished_note(run) is None  # not "continue it with --resume" (that warning says it goes on)
        (run / "models" / "student1.safetensors").rename(run / "s1")
        with pytest.raises(CheckpointError, match="is being trained and has not finished its first epoch yet"), \
                pytest.warns(PeerdistillWarning):
            load_cohort(run)
        (run / "s1").rename(run / "models" / "student1.safetensors")
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before, "nothing written or deleted"
    finally:
        run_lock.release(held)
    assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY, "--overwrite"]) == 0  # free again


def test_the_trainer_holds_the_lock_while_it_trains_and_frees_it_however_it_ends(tmp_path, monkeypatch):
    from peerdistill.build import train_from_config

    cfg = validate({"teacher": None, "distill": {"preset": "ml", "rampup_epochs": 1}, "train": {"epochs": 2, "batch_size": 256},
                    "students": [{"arch": "cnn", "args": {"width": 4}}] * 2, "out_dir": str(tmp_path), "name": "r"})
    seen = []
    real_epoch = Trainer._train_epoch

    def epoch(self, *args, **kwargs):
        with pytest.raises(RunDirError, match=BUSY):
            run_lock.check_free(tmp_path / "r")
        seen.append(True)
        if len(seen) == 2:
            raise KeyboardInterrupt  # stopped in its second epoch
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", epoch)
    with pytest.raises(KeyboardInterrupt):
        train_from_config(cfg, run_dir=tmp_path / "r", progress=False)
    assert seen == [True, True]
    run_lock.check_free(tmp_path / "r")  # released by the interrupted fit
    monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)
    train_from_config(cfg, run_dir=tmp_path / "r", resume=True, progress=False)
    run_lock.check_free(tmp_path / "r")  # and by a finished one


def test_a_killed_process_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from peerdistill import run_lock; run_lock.hold(sys.argv[1]); "
        "print('held', flush=True); time.sleep(120)"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match="is being trained by another process") as refused:
            run_lock.check_free(tmp_path)
        if Path("/proc/locks").is_file():  # the holder named: it may be out of sight (a killed compare's worker)
            assert f"being trained by another process (process {holder.pid}) right now" in str(refused.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    run_lock.check_free(tmp_path)  # the operating system dropped it with the process


def test_a_forked_worker_does_not_keep_the_lock(tmp_path):
    """Data-loader workers are forked while the trainer holds the lock: their copies of the
    descriptor would keep it locked after the trainer let go."""
    import multiprocessing

    held = run_lock.hold(tmp_path)
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=_wait_a_while, args=(ready,))
    child.start()
    try:
        assert ready.wait(30)
        run_lock.release(held)
        run_lock.check_free(tmp_path)  # the child is still alive, and holds nothing
    finally:
        child.terminate()
        child.join()


def _wait_a_while(ready) -> None:
    import time

    ready.set()
    time.sleep(60)


def test_a_fit_with_loader_workers_frees_the_run_directory(tmp_path):
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from peerdistill import ClassificationTask, Cohort, DataSplits, KnowledgeGraph, TrainSpec, preset_edges

    class Noise(Dataset):
        def __init__(self, n):
            generator = torch.Generator().manual_seed(n)
            self.x, self.y = torch.rand(n, 1, 8, 8, generator=generator), torch.randint(0, 2, (n,), generator=generator)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i], self.y[i]

    data = DataSplits(Noise(32), Noise(16), Noise(16), num_classes=2, class_names=["a", "b"], input_shape=(1, 8, 8))

    def fit() -> Trainer:
        cohort = Cohort.from_modules([nn.Sequential(nn.Flatten(), nn.Linear(64, 2)) for _ in range(2)])
        trainer = Trainer(cohort, KnowledgeGraph(preset_edges("ml", None, ["student1", "student2"])),
                          ClassificationTask(2), train=TrainSpec(epochs=1, batch_size=8, num_workers=1),
                          run_dir=tmp_path / "r", overwrite=True, progress=False, device="cpu")
        trainer.fit(data)
        return trainer

    first = fit()  # its persistent workers live on with the trainer object, as in a notebook
    run_lock.check_free(tmp_path / "r")
    second = fit()  # and the folder can be trained again at once
    assert first is not second


def test_two_overwrites_starting_at_once_never_both_replace_the_run(tmp_path, monkeypatch):
    """Both passed the in-use check before either locked: the lock is held across the rename, so
    the second finds the run busy, or already renamed away, and says so, never deleting the first's."""
    from peerdistill.engine.artifacts import RunDir

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "complete"}))
    checked = []
    monkeypatch.setattr(run_lock, "check_free", lambda path: checked.append(path))  # the race: checked, not yet held
    first = run_lock.hold(run)  # the other process holds it now
    with pytest.raises(RunDirError, match="is being trained by another process"):
        RunDir.create(run, overwrite=True)
    assert checked and (run / "run.json").is_file()
    run_lock.release(first)
    # the other process already renamed it away: the rename finds nothing, and says the same
    def renamed_by_the_other(path):
        run.rename(tmp_path / ".deleting-run.1")
        return None  # (the lock of a folder gone is not taken)

    monkeypatch.setattr(run_lock, "hold", renamed_by_the_other)
    with pytest.raises(RunDirError, match="is being trained by another process"):
        RunDir.create(run, overwrite=True)
    assert (tmp_path / ".deleting-run.1" / "run.json").is_file()  # the other's to delete, untouched here


def test_a_run_that_kept_nothing_is_started_again_only_where_a_live_one_would_hold_its_lock(
        tmp_path, capsys, monkeypatch):
    # stopped in its first epoch, a folder of config.yaml and run.json is replaced by the same
    # command; one in training holds its lock, but where runs are not locked it looks the same
    run = tmp_path / "r"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "stopped"}))
    (run / "config.yaml").write_text("{}")
    held = run_lock.hold(run)
    try:
        assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY]) == 2
        assert BUSY in " ".join(capsys.readouterr().err.split())
    finally:
        run_lock.release(held)
    monkeypatch.setattr(run_lock, "fcntl", None)  # a file system without flock
    assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY]) == 2
    assert "holds a run with nothing to resume yet" in " ".join(capsys.readouterr().err.split())
    assert json.loads((run / "run.json").read_text()) == {"status": "stopped"}  # left as it was
    monkeypatch.undo()
    # "running" with its lock free: killed outright, or training where locks are per node
    # (a cluster's localflock): never replaced without --overwrite
    (run / "run.json").write_text(json.dumps({"status": "running"}))
    assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY]) == 2
    assert "holds a run with nothing to resume yet" in " ".join(capsys.readouterr().err.split())
    (run / "run.json").write_text(json.dumps({"status": "stopped"}))
    assert main(["train", f"out_dir={tmp_path}", "name=r", *TINY]) == 0
    assert "held a run stopped in its first epoch" in capsys.readouterr().err


def test_a_run_directory_deleted_while_training_stops_the_training(tmp_path, monkeypatch):
    # the next checkpoint made the folder anew (mkdir parents), and the run trained on to the end
    # outside its lock, then failed on run.json, which was gone
    import shutil

    from peerdistill.build import train_from_config

    cfg = validate({"teacher": None, "distill": {"preset": "ml", "rampup_epochs": 1}, "train": {"epochs": 3, "batch_size": 256},
                    "students": [{"arch": "cnn", "args": {"width": 4}}] * 2, "out_dir": str(tmp_path), "name": "r"})
    real_epoch, epochs = Trainer._train_epoch, []

    def epoch(self, *args, **kwargs):
        epochs.append(True)
        if len(epochs) == 2:
            shutil.rmtree(tmp_path / "r")  # (rm -rf by someone, mid-epoch)
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", epoch)
    with pytest.raises(RunDirError, match=r"the run directory '.*r' was deleted or moved while training \(its run.json "
                                          r"is gone\): the training stopped, writing nothing more"):
        train_from_config(cfg, run_dir=tmp_path / "r", progress=False)
    assert len(epochs) == 2 and not (tmp_path / "r").exists()  # stopped there, nothing made anew


def test_a_fit_stops_its_data_loader_workers_when_it_ends(tmp_path):
    """Review 51d: persistent workers outlived the fit; a later fit's workers, forked from the same
    process, inherited them and printed 'can only test a child process' tracebacks."""
    import multiprocessing

    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from peerdistill import ClassificationTask, Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec, preset_edges

    class Noise(Dataset):
        def __init__(self, n):
            self.x, self.y = torch.randn(n, 1, 8, 8), torch.arange(n) % 2

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i], self.y[i]

    data = DataSplits(Noise(16), Noise(8), Noise(8), num_classes=2, class_names=["a", "b"], input_shape=(1, 8, 8))
    cohort = Cohort.from_modules([nn.Sequential(nn.Flatten(), nn.Linear(64, 2)) for _ in range(2)])
    trainer = Trainer(cohort, KnowledgeGraph(preset_edges("ml", None, ["student1", "student2"])),
                      ClassificationTask(2), train=TrainSpec(epochs=1, batch_size=8, num_workers=1),
                      progress=False, device="cpu")
    before = set(multiprocessing.active_children())
    trainer.check(data)  # (a dry run reads val and test batches too: review 51k)
    assert set(multiprocessing.active_children()) <= before
    trainer.fit(data)
    assert set(multiprocessing.active_children()) <= before
    assert trainer.train_batches.loader._iterator is None and trainer.test_batches.loader._iterator is None
