"""One process trains a run directory at a time (engine/run_lock.py)."""

import json
import signal
import subprocess
import sys

import pytest

from peerdistill.cli import main
from peerdistill.comparison_runs import _run_state
from peerdistill.config import validate
from peerdistill.engine import run_lock
from peerdistill.engine.trainer import Trainer
from peerdistill.errors import RunDirError

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
        "import sys, time; from peerdistill.engine import run_lock; run_lock.hold(sys.argv[1]); "
        "print('held', flush=True); time.sleep(120)"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=BUSY):
            run_lock.check_free(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    run_lock.check_free(tmp_path)  # the operating system dropped it with the process
