"""A run killed with SIGKILL at an arbitrary moment resumes to the result of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from peerdistill.errors import RunDirError


ARGS = ["train", "deterministic=true", "train.epochs=8", "train.batch_size=64", "teacher.args.width=8",
        "train.checkpoint_every_steps=4", "optim.warmup_epochs=2", "optim.clip_grad_norm=1.0", "train.ema_decay=0.9",
        "students.0.args.width=4", "students.1.args.width=4", "--quiet"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "peerdistill", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    started = time.time()
    whole = run(*ARGS, f"out_dir={tmp_path}", "name=whole")
    assert whole.returncode == 0, whole.stderr
    errors = (tmp_path / "cut.err").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "peerdistill", *ARGS, f"out_dir={tmp_path}", "name=cut"],
                            stdout=subprocess.DEVNULL, stderr=errors)
    metrics = tmp_path / "cut" / "metrics.json"
    # A busy machine slows both runs alike: wait as long as the whole run took, many times over.
    deadline = time.time() + max(240, 10 * (time.time() - started))
    while time.time() < deadline and proc.poll() is None:  # kill during the third epoch: after two checkpoints
        try:
            if len(json.loads(metrics.read_text())["epochs"]) >= 2:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.02)
    assert proc.poll() is None, f"the run to be killed ended by itself: {(tmp_path / 'cut.err').read_text()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    errors.close()
    cut = json.loads(metrics.read_text())
    assert cut["status"] == "running" and 2 <= len(cut["epochs"]) < 8
    resumed = run("train", "--resume", str(tmp_path / "cut"))
    assert resumed.returncode == 0, resumed.stderr
    at = json.loads((tmp_path / "cut" / "run.json").read_text())["resumed_at"][0]  # said as it starts, 1-based
    assert resumed.stderr.splitlines()[0].startswith(f"resuming '{tmp_path / 'cut'}' at epoch {at['epoch']} of 8")
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads(metrics.read_text())
    assert b["status"] == "complete" and len(b["epochs"]) == 8
    assert b["test_at_best"] == a["test_at_best"] and b["best_epoch"] == a["best_epoch"]
    # every epoch's mean loss terms and gradient norms (the killed epoch's sums were checkpointed mid-way)
    trained = [{k: v for k, v in row.items() if k.startswith(("train/", "lr/"))} for row in a["epochs"]]
    assert [{k: row[k] for k in t} for row, t in zip(b["epochs"], trained)] == trained
    assert "train/grad_norm/student1" in trained[-1]


def test_a_run_folder_killed_while_being_replaced_or_first_written_is_taken_again(tmp_path, monkeypatch):
    """--overwrite renames the old run away, deleting it once the new run keeps a checkpoint,
    and a folder holding only a temporary file of the first write (run.json) is empty of any
    run: a kill at either moment leaves nothing that every command refuses."""
    import shutil

    from peerdistill.engine.artifacts import RunDir, atomic_write_text

    run = tmp_path / "r"
    RunDir.create(run)
    atomic_write_text(run / "run.json", json.dumps({"status": "running"}))
    (run / "models").mkdir()
    for i in range(20):
        (run / "models" / f"student{i}.safetensors").write_text("x")
    (run / "notes.txt").write_text("mine")

    def killed_midway(path, *args, **kwargs):
        next(path.rglob("*.safetensors")).unlink()  # some of the old run gone, then the process dies
        raise KeyboardInterrupt

    replacing = RunDir.create(run, overwrite=True)
    with monkeypatch.context() as m:
        m.setattr(shutil, "rmtree", killed_midway)
        with pytest.raises(KeyboardInterrupt):
            replacing.discard_replaced()  # killed while deleting the old run, the new one's first checkpoint kept
    run.rmdir()  # (nor the new run's folder, still empty here)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left[0] == f".deleting-r.{os.getpid()}" and left[1].startswith("r.kept-") and len(left) == 2
    RunDir.create(run)  # the next start takes the name and clears what was left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", left[1]] and not any(run.iterdir())
    assert (tmp_path / left[1] / "notes.txt").read_text() == "mine", "the user's file was moved aside first"
    shutil.rmtree(tmp_path / left[1])
    # killed while writing run.json for the first time: only its temporary file is there
    (run / ".run.json.k2x9.tmp").write_text("{")
    RunDir.create(run)
    assert not any(run.iterdir())
    (run / "notes.txt").write_text("mine")  # anything else still makes it someone's folder
    with pytest.raises(RunDirError, match="already exists"):
        RunDir.create(run)


def test_a_resumed_run_says_where_it_goes_on():
    from types import SimpleNamespace

    from peerdistill.engine.distributed import World
    from peerdistill.engine.trainer import Trainer

    trainer = Trainer.__new__(Trainer)  # the line alone: the trainer's set-up is tested above
    trainer.train_spec, trainer.run_dir_path = SimpleNamespace(epochs=8), "runs/cut"
    trainer.train_batches, trainer._stopped_early = [None] * 16, False
    assert trainer._resumed_line(2, 0) == "resuming 'runs/cut' at epoch 3 of 8"
    assert trainer._resumed_line(2, 5) == "resuming 'runs/cut' at epoch 3 of 8, at batch 6 of 16"  # step 5 is done
    after = "resuming 'runs/cut' after its last epoch: the test split is left to score"
    assert trainer._resumed_line(8, 0) == after
    trainer._stopped_early = True  # train.patience had ended it
    assert trainer._resumed_line(4, 0) == after
    trainer._stopped_early = False  # resumed on one process after training on two (torchrun): said (review 49c)
    trainer.world, trainer._processes_before = World(), 2
    assert trainer._resumed_line(2, 0) == ("resuming 'runs/cut' at epoch 3 of 8, on 1 process where it trained on 2: "
                                           "from the same checkpoint, though not to the figures of one uninterrupted "
                                           "run (each process's share of a batch differs)")
    trainer._processes_before = 1
    assert trainer._resumed_line(2, 0) == "resuming 'runs/cut' at epoch 3 of 8"


def test_the_old_run_another_live_process_keeps_aside_is_not_deleted_by_a_new_start(tmp_path):
    """--overwrite keeps the old run as .deleting-NAME.PID until its new run keeps a checkpoint: a
    second start of the name (refused as busy, or anything else) clears what dead processes left,
    never what a running one may still put back."""
    from peerdistill.engine.artifacts import RunDir

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
        for pid in (alive.pid, dead):
            (tmp_path / f".deleting-r.{pid}").mkdir()
            (tmp_path / f".deleting-r.{pid}" / "run.json").write_text("{}")
        RunDir.create(tmp_path / "r")
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".deleting-r.{alive.pid}", "r"]
    finally:
        alive.kill()
        alive.wait()
    RunDir.create(tmp_path / "r")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def _ended_pid() -> str:
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_run_an_overwrite_killed_outright_left_aside_is_put_back_at_the_next_start(tmp_path):
    """kill -9 (or the OOM killer) before the new run's first checkpoint: the next start of the
    name puts the old run back, warned of, and goes on from it (here refused: it is finished);
    after the new run's first checkpoint, what is left aside is deleted."""
    from peerdistill.engine.artifacts import RunDir

    def old_run(folder):
        (folder / "models").mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"status": "complete"}))
        (folder / "models" / "student1.safetensors").write_text("weights")

    pid = _ended_pid()
    old_run(tmp_path / f".replaced-r.{pid}")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps({"status": "running"}))  # the new run, killed in epoch 1
    with pytest.warns(UserWarning, match=rf"'{tmp_path / 'r'}' is the run an --overwrite replaced, put back: the "
                                         r"process replacing it ended before its new run kept a checkpoint"), \
            pytest.raises(RunDirError, match="holds a finished run"):
        RunDir.create(tmp_path / "r")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert (tmp_path / "r" / "models" / "student1.safetensors").read_text() == "weights"
    # the new run had kept a checkpoint: it is the run now, and what was left aside goes
    old_run(tmp_path / f".replaced-r.{pid}")
    (tmp_path / "r" / "checkpoints").mkdir()
    (tmp_path / "r" / "checkpoints" / "last.pt").write_bytes(b"state")
    (tmp_path / "r" / "run.json").write_text(json.dumps({"status": "running"}))
    RunDir.create(tmp_path / "r", overwrite=True).discard_replaced()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"] and not any((tmp_path / "r").iterdir())


@pytest.mark.parametrize("left", ["run.json only", "nothing"])
def test_train_resume_of_a_run_an_overwrite_killed_outright_puts_the_old_one_back_first(tmp_path, capsys, left):
    """Review 50a: --resume refused such a folder (no config.yaml: "is it a peerdistill run
    directory?", or "start it again, with --overwrite", which would delete the old run), the
    old run left aside: it is put back first, and then said to be finished."""
    from peerdistill.cli import main

    assert main(["train", f"out_dir={tmp_path}", "name=r", "train.epochs=1", "--quiet"]) == 0
    pid = _ended_pid()
    (tmp_path / "r").rename(tmp_path / f".replaced-r.{pid}")
    if left == "run.json only":  # the new run, killed in its first second, after moving notes aside
        (tmp_path / "r").mkdir()
        (tmp_path / "r" / "run.json").write_text(json.dumps({"status": "running"}))
        (tmp_path / "r.kept-20261207-010203").mkdir()
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "r")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "is the run an --overwrite replaced, put back" in err and "finished" in err, err
    # the folder of what was moved aside named where there is one, not a made-up 'r.kept-TIME'
    assert ("stays beside it in 'r.kept-20261207-010203'" in err) == (left == "run.json only")
    assert "kept-TIME" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("r.kept")) == ["r"]
    # report, the command tried first after a crash, puts it back too (review 52c: "not a run", the run hidden)
    (tmp_path / "r").rename(tmp_path / f".replaced-r.{pid}")
    (tmp_path / "r").mkdir()
    assert main(["report", str(tmp_path / "r")]) == 0
    assert "is the run an --overwrite replaced, put back" in " ".join(capsys.readouterr().err.split())
    assert (tmp_path / "r" / "report.html").is_file() and not list(tmp_path.glob(".replaced-*"))
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "complete"


def test_a_failure_while_a_replacing_run_writes_its_first_files_puts_the_old_one_back(tiny_data, tmp_path, monkeypatch):
    """Review 49f: between RunDir.create and the trainer knowing its run (run.json, the training
    inputs' digests, config.yaml) a failure was neither put back nor marked."""
    from peerdistill.engine import records

    from .test_trainer import make_cohort, trainer

    trainer(make_cohort(), run_dir=tmp_path / "r").fit(tiny_data)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(records, "digests_record", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer(make_cohort(), run_dir=tmp_path / "r", overwrite=True).fit(tiny_data)
    assert {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_a_failure_as_the_new_folder_is_made_puts_the_old_run_back_with_what_was_moved_aside(tmp_path, monkeypatch):
    """Review 49g: a full disk at mkdir (or the moved-aside warning made an error) came after the
    old run was renamed aside and before anything could put it back."""
    from pathlib import Path

    from peerdistill.engine.artifacts import RunDir

    run = tmp_path / "r"
    (run / "models").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "complete"}))
    (run / "notes.txt").write_text("mine")
    real_mkdir = Path.mkdir

    def full(self, *args, **kwargs):
        if self == run and not self.exists():
            raise OSError(28, "No space left on device")
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", full)
    with pytest.raises(RunDirError, match="No space left on device"):
        RunDir.create(run, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert (run / "notes.txt").read_text() == "mine" and (run / "run.json").is_file()


def test_eval_and_resume_finish_what_a_killed_overwrite_left(tmp_path):
    """Review 49g: after a kill -9, eval and --resume said the run kept nothing, while the run it
    replaced sat hidden beside it; opening the run puts it back (or deletes it once the new run has
    a checkpoint), as a start of the name does."""
    from peerdistill.engine.artifacts import RunDir

    pid = _ended_pid()
    (tmp_path / f".replaced-r.{pid}").mkdir()
    (tmp_path / f".replaced-r.{pid}" / "run.json").write_text(json.dumps({"status": "complete"}))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps({"status": "running"}))
    with pytest.warns(UserWarning, match="is the run an --overwrite replaced"):
        opened = RunDir.open(tmp_path / "r")
    assert opened.is_complete and sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    # a link at the name: what was left stays where it is, said, and nothing fails on it
    (tmp_path / f".replaced-s.{pid}").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "s").symlink_to("elsewhere")
    with pytest.warns(UserWarning, match=r"holds the run an --overwrite of .* replaced.* is no run folder now"):
        with pytest.raises(RunDirError):
            RunDir.open(tmp_path / "s")
    assert (tmp_path / f".replaced-s.{pid}").is_dir()


def test_context_added_to_an_error_keeps_its_kind_and_attributes():
    from peerdistill.errors import NonFiniteError, SplitError, reworded

    said = reworded(SplitError("2 groups", "give more").found_by_every_process(), "fold 1: 2 groups: give more")
    assert type(said) is SplitError and said.problem == "2 groups" and str(said) == "fold 1: 2 groups: give more"
    assert said.said_alike == "fold 1: 2 groups: give more"  # (printed once per node under torchrun, as before)
    stopped = reworded(NonFiniteError("nan in x", "x"), "run a: nan in x")
    assert stopped.finding == "x" and str(stopped) == "run a: nan in x"


def test_the_run_this_process_keeps_aside_is_left_alone_by_its_own_reads(tmp_path):
    """A command in the process that is replacing a run (a report, an eval from Python) opens the
    name: what this process keeps aside is its own, not a killed process's, so it stays aside."""
    from peerdistill.engine.artifacts import RunDir

    run = tmp_path / "r"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "complete"}))
    replacing = RunDir.create(run, overwrite=True)
    (run / "run.json").write_text(json.dumps({"status": "running"}))  # the new run, in its first epoch
    RunDir.open(run)
    assert (tmp_path / f".replaced-r.{os.getpid()}").is_dir()
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert replacing.put_back_replaced() and json.loads((run / "run.json").read_text())["status"] == "complete"


def test_what_a_killed_overwrite_left_is_claimed_once_and_only_for_its_own_name(tmp_path, monkeypatch):
    """Review 49i: two commands finishing one leftover at once could delete the run the first had
    put back; each leftover is now claimed by one rename first. A run named 'r.2' is not r's."""
    from pathlib import Path

    from peerdistill.engine.artifacts import RunDir

    pid = _ended_pid()
    for name in (f".replaced-r.{pid}.claimed", f".replaced-r.2.{pid}"):  # one a recovery left, one another run's
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"status": "complete", "name": name}))
    with pytest.warns(UserWarning, match=r"is the run an --overwrite replaced, put back"):
        RunDir.open(tmp_path / "r")
    assert json.loads((tmp_path / "r" / "run.json").read_text())["name"] == f".replaced-r.{pid}.claimed"
    assert (tmp_path / f".replaced-r.2.{pid}").is_dir()  # (r.2's, left for a start of r.2)
    # claimed by another process first: this one does nothing to it
    (tmp_path / f".replaced-q.{pid}").mkdir()
    real_rename = Path.rename

    def claimed_first(self, target):
        if self.name.startswith(".replaced-q."):
            raise FileNotFoundError(self)
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", claimed_first)
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "run.json").write_text(json.dumps({"status": "running"}))
    RunDir.open(tmp_path / "q")
    assert json.loads((tmp_path / "q" / "run.json").read_text())["status"] == "running"
    # a folder it cannot write (read-only): said, and the command goes on
    def read_only(self, target):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Path, "rename", read_only)
    with pytest.warns(UserWarning, match=r"could not finish what an --overwrite of .* left beside it \(Read-only file "
                                         r"system\)"):
        assert RunDir.open(tmp_path / "q").path == tmp_path / "q"


def test_a_run_replaced_by_another_start_a_moment_ago_is_not_replaced_again(tmp_path, monkeypatch):
    """Review 49i: a start that judged the folder a run to replace, before another start renamed
    that run away and made its new empty folder, renamed the other's new folder away too."""
    from peerdistill.engine.artifacts import RunDir

    (tmp_path / "r").mkdir()  # the other start's new folder, empty yet
    monkeypatch.setattr(RunDir, "verdict", classmethod(lambda cls, path, overwrite=False: "replace"))
    with pytest.raises(RunDirError, match="is being trained by another process"):
        RunDir.create(tmp_path / "r", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]



def test_odd_names_beside_a_run_are_no_leftovers_and_break_nothing(tmp_path):
    """Review 49k: '.replaced-r.99999999999999999999' raised OverflowError, '.replaced-r.²' ValueError,
    out of eval and report."""
    from peerdistill.engine.artifacts import RunDir

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps({"status": "complete"}))
    for odd in (".replaced-r.99999999999999999999", ".replaced-r.\u00b2"):
        (tmp_path / odd).mkdir()
    RunDir.open(tmp_path / "r")
    assert (tmp_path / ".replaced-r.\u00b2").is_dir() and json.loads((tmp_path / "r" / "run.json").read_text())


def test_a_trainer_never_trains_over_a_run_put_back_in_its_new_folder(tiny_data, tmp_path, monkeypatch):
    """Review 49k: a recovery putting a run back into the folder a start had just made (the
    start's claim came first, its folder after) left the trainer writing over that run."""
    from peerdistill.engine.artifacts import RunDir

    from .test_trainer import make_cohort, trainer

    trainer(make_cohort(), run_dir=tmp_path / "r").fit(tiny_data)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    monkeypatch.setattr(RunDir, "create", classmethod(lambda cls, path, overwrite=False: cls(path)))  # (the race)
    with pytest.raises(RunDirError, match="is being trained by another process"):
        trainer(make_cohort(), run_dir=tmp_path / "r", overwrite=True).fit(tiny_data)
    assert {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before


def test_the_final_writes_follow_each_other_without_the_costs_between(tiny_data, tmp_path, monkeypatch):
    """Review 50g: metrics.json said complete, then half a second of cost measurement, then
    run.json: a kill there left the report saying complete and eval not finished. The costs are
    measured before either file says complete."""
    from peerdistill.engine.trainer import Trainer

    from .test_trainer import make_cohort, trainer

    seen = []
    measure = Trainer._costs

    def costs(self, run, meta):
        seen.append(json.loads((run.path / "metrics.json").read_text())["status"])
        return measure(self, run, meta)

    monkeypatch.setattr(Trainer, "_costs", costs)
    trainer(make_cohort(), run_dir=tmp_path / "r").fit(tiny_data)
    assert seen == ["running"]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "complete"


def test_a_second_interruption_while_the_run_is_marked_stopped_leaves_it_marked(tmp_path, monkeypatch):
    """Review 52c: a second Ctrl-C or SIGTERM during the marking left run.json or metrics.json at
    'running' (or a temporary file beside them)."""
    import os
    import signal

    from peerdistill.engine import artifacts
    from peerdistill.engine.artifacts import RunDir, mark_stopped

    (tmp_path / "r").mkdir()
    for name in ("run.json", "metrics.json"):
        (tmp_path / "r" / name).write_text(json.dumps({"status": "running"}))
    real = artifacts.write_json

    def interrupted_again(path, record):
        os.kill(os.getpid(), signal.SIGINT)
        real(path, record)

    def interrupt(signum, frame):  # as the command line's handler: an interruption, at once
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts, "write_json", interrupted_again)
    before = signal.signal(signal.SIGINT, interrupt)
    try:
        mark_stopped(RunDir(tmp_path / "r"), KeyboardInterrupt())
        assert signal.getsignal(signal.SIGINT) is interrupt  # (the handler back as it was)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert [json.loads((tmp_path / "r" / name).read_text())["status"] for name in ("run.json", "metrics.json")] == \
        ["stopped", "stopped"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["metrics.json", "run.json"]


def test_a_second_signal_as_an_interrupted_fit_cleans_up_leaves_the_run_marked_stopped(tiny_data, tmp_path,
                                                                                         monkeypatch):
    """Review 56c: a scheduler's SIGTERM, then torchrun's 1 ms later, landed in fit's cleanup before
    the marking, which it skipped: run.json stayed 'running'."""
    from peerdistill.engine import distributed

    from .test_trainer import make_cohort, trainer

    real = distributed.lost_contact

    def signalled_again(world, exc, advice):
        os.kill(os.getpid(), signal.SIGTERM)  # the second signal, in the cleanup's first step
        return real(world, exc, advice)

    def interrupted(epoch, record):
        raise KeyboardInterrupt

    def interrupt(signum, frame):  # as the command line's handler: an interruption, at once
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "lost_contact", signalled_again)
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            trainer(make_cohort(), run_dir=tmp_path / "r", callbacks=[interrupted]).fit(tiny_data)
        assert signal.getsignal(signal.SIGTERM) is interrupt  # (the handler back as it was)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "stopped"


def test_resume_of_the_empty_folder_a_kill_in_the_first_second_left_says_to_start_again(tmp_path, capsys):
    from peerdistill.cli import main

    (tmp_path / "r").mkdir()
    assert main(["train", "--resume", str(tmp_path / "r")]) == 2
    assert (f"cannot resume '{tmp_path / 'r'}': the folder is empty, the run stopped before it wrote anything, so "
            "there is nothing to resume: run the same train command again (without --resume)") in \
        " ".join(capsys.readouterr().err.split())
