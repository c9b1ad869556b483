"""compare: continuing a killed comparison, reusing runs, and teachers trained first then frozen."""

import hashlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file, save_file

from peerdistill.build import train_from_config
from peerdistill.cli import main
from peerdistill.compare import compare
from peerdistill.errors import CheckpointError, ConfigError, DataError, RunDirError
from peerdistill.html_report import write_report
from peerdistill.engine.artifacts import jsonable


COMPARED = {"deterministic": True, "teacher": {"arch": "cnn", "args": {"width": 8}},
            "students": [{"arch": "cnn", "args": {"width": 4}}, {"arch": "cnn", "args": {"width": 4}}],
            "train": {"epochs": 3, "batch_size": 128}, "distill": {"rampup_epochs": 1}}


@pytest.mark.parametrize("killed_after", [1, 2], ids=["second-epoch", "final-evaluation"])
def test_a_killed_comparison_continues_its_unfinished_run(tmp_path, monkeypatch, capsys, killed_after):
    whole = compare({**COMPARED, "name": "w", "out_dir": str(tmp_path)}, ["kd"], 2, progress=False)

    def killed(cfg, **kwargs):  # the second seed dies after an epoch's checkpoint
        def crash(epoch, row):
            if cfg.seed == 1 and epoch == killed_after:
                raise KeyboardInterrupt
        return train_from_config(cfg, **kwargs, callbacks=[crash])

    tree = {**COMPARED, "name": "c", "out_dir": str(tmp_path)}
    monkeypatch.setattr("peerdistill.comparison_runs.train_from_config", killed)
    with pytest.raises(KeyboardInterrupt):
        compare(tree, ["kd"], 2, progress=False)
    monkeypatch.undo()
    before = sorted(str(p) for p in (tmp_path / "c-compare").rglob("*"))
    capsys.readouterr()
    compare(tree, ["kd"], 2, progress=False, dry_run=True, console=Console(width=250))
    plan = capsys.readouterr().out
    assert re.search(r"kd +│ 0 +│ \S+kd-seed0 +│ reuse", plan)
    assert re.search(rf"kd +│ 1 +│ \S+kd-seed1 +│ continue after epoch {killed_after + 1}", plan)
    assert sorted(str(p) for p in (tmp_path / "c-compare").rglob("*")) == before, "a dry run writes nothing"
    checkpoint = tmp_path / "c-compare" / "kd-seed1" / "checkpoints" / "last.pt"
    good = checkpoint.read_bytes()
    checkpoint.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt.*delete '.*kd-seed1' to train that run again"):
        compare(tree, ["kd"], 2, progress=False)
    checkpoint.write_bytes(good)
    capsys.readouterr()
    again = compare(tree, ["kd"], 2, progress=False)
    printed = capsys.readouterr().err
    assert "kd, seed 0: reusing finished run" in printed
    assert "kd, seed 1: resuming unfinished run" in printed
    run = again.directory / "kd-seed1"
    where = {"epoch": 3, "step": 0} if killed_after == 1 else {"final_evaluation": True}
    assert json.loads((run / "run.json").read_text())["resumed_at"] == [{**where, "processes": 1}]
    assert jsonable(again.rows) == jsonable(whole.rows)  # NaN as null: an undefined figure equals itself


def test_an_interrupted_overwrite_is_finished_by_the_same_command_without_it(tmp_path, monkeypatch, capsys):
    from peerdistill.comparison_runs import REPLACE_MARK

    tree = {"name": "o", "out_dir": str(tmp_path), "deterministic": True, "teacher": None,
            "students": COMPARED["students"], "train": {"epochs": 1, "batch_size": 128}}
    first = compare(tree, ["independent"], 3, progress=False)
    write_report(first.directory)
    changed = {**tree, "optim": {"lr": 0.01}}

    def killed(cfg, **kwargs):  # the second seed dies after its epoch's checkpoint, before its final evaluation
        def crash(epoch, row):
            if cfg.seed == 1 and epoch == 0:
                raise KeyboardInterrupt
        return train_from_config(cfg, **kwargs, callbacks=[crash])

    monkeypatch.setattr("peerdistill.comparison_runs.train_from_config", killed)
    with pytest.raises(KeyboardInterrupt):
        compare(changed, ["independent"], 3, progress=False, overwrite=True)
    monkeypatch.undo()
    runs = tmp_path / "o-compare"
    assert [(runs / f"independent-seed{s}" / REPLACE_MARK).exists() for s in range(3)] == [False, False, True]
    # the former runs' tables and report are gone (the report showed the replaced figures)
    stale = ("compare.csv", "compare.md", "differences.csv", "report.html")
    assert not [name for name in stale if (runs / name).exists()]
    from peerdistill.errors import PeerdistillWarning
    from peerdistill.runs import evaluate_run

    with pytest.warns(PeerdistillWarning, match="is marked for replacement by a compare --overwrite that was"):
        evaluate_run(runs / "independent-seed2")  # still the former config's models: said
    capsys.readouterr()
    compare(changed, ["independent"], 3, progress=False, dry_run=True, console=Console(width=250))
    plan = capsys.readouterr().out
    for seed, action in enumerate(["reuse", "continue after epoch 1", "train"]):
        assert re.search(rf"independent +│ {seed} +│ \S+seed{seed} +│ {action}", plan), plan
    compare(changed, ["independent"], 3, progress=False)
    printed = capsys.readouterr().err
    assert "seed 0: reusing finished run" in printed and "seed 1: resuming unfinished run" in printed
    assert "independent, seed 2 ->" in printed
    for seed in range(3):
        assert yaml.safe_load((runs / f"independent-seed{seed}" / "config.yaml").read_text())["optim"]["lr"] == 0.01
        assert not (runs / f"independent-seed{seed}" / REPLACE_MARK).exists()


def test_an_overwrite_refused_for_a_run_in_training_marks_nothing_and_keeps_the_tables(tmp_path):
    from types import SimpleNamespace

    from peerdistill.comparison_runs import REPLACE_MARK, mark_for_replacement
    from peerdistill import run_lock

    plans = []
    for seed in range(3):
        (tmp_path / f"run{seed}").mkdir()
        (tmp_path / f"run{seed}" / "run.json").write_text("{}")
        plans.append(SimpleNamespace(run_dir=tmp_path / f"run{seed}"))
    held = run_lock.hold(plans[2].run_dir)  # another process trains the last run
    try:
        with pytest.raises(RunDirError, match="being trained by another process"):
            mark_for_replacement(plans)
    finally:
        run_lock.release(held)
    assert not any((plan.run_dir / REPLACE_MARK).exists() for plan in plans)


def test_an_overwrite_with_a_mistake_the_first_run_would_meet_replaces_nothing(tmp_path, monkeypatch):
    from peerdistill.comparison_runs import REPLACE_MARK

    tree = {"name": "o", "out_dir": str(tmp_path), "teacher": None, "students": COMPARED["students"],
            "train": {"epochs": 1, "batch_size": 256}}
    done = compare(tree, ["independent"], 2, progress=False, console=Console(quiet=True))
    tables = {name: (done.directory / name).read_bytes() for name in ("compare.csv", "compare.md")}

    def no_training(cfg, **kwargs):
        raise AssertionError("nothing trains before the mistake is found")

    monkeypatch.setattr("peerdistill.comparison_runs.train_from_config", no_training)
    mistakes = [({"students": [{"arch": "cnn", "args": {"widht": 4}}] * 2}, ConfigError, "did you mean 'width'"),
                ({"data": {"kind": "npz", "root": str(tmp_path / "missing.npz")}}, ConfigError,
                 "missing.npz' does not exist: give the right path"),
                ({"teacher": {"arch": "cnn", "frozen": True, "checkpoint": str(tmp_path / "t.safetensors")}},
                 ConfigError, "the teacher's checkpoint .*t.safetensors' does not exist")]
    if not torch.cuda.is_available():
        mistakes.append(({"device": "cuda"}, ConfigError, "device 'cuda' was asked for but CUDA is not available"))
    for change, error, says in mistakes:
        with pytest.raises(error, match=rf"(independent, seed 0: .*)?{says}"):
            compare({**tree, **change}, ["independent"], 2, progress=False, overwrite=True,
                    console=Console(quiet=True))
        assert {name: (done.directory / name).read_bytes() for name in tables} == tables
        assert not list(done.directory.glob(f"*/{REPLACE_MARK}"))
    # a mistake met only later (here the second run's training fails) leaves the runs marked: said
    def second_fails(cfg, **kwargs):
        if cfg.seed == 1:
            raise ConfigError("something only this run meets")
        return train_from_config(cfg, **kwargs)

    monkeypatch.setattr("peerdistill.comparison_runs.train_from_config", second_fails)
    with pytest.raises(ConfigError, match=r"something only this run meets. \(overwrite=True has marked the comparison's "
                                          "runs for replacement: once this is fixed, the same call without"):
        compare(tree, ["independent"], 2, progress=False, overwrite=True, console=Console(quiet=True))
    assert [(done.directory / f"independent-seed{s}" / REPLACE_MARK).exists() for s in (0, 1)] == [False, True]


def test_the_overwrite_check_reads_the_data_once_per_way_of_reading_it(tmp_path, monkeypatch):
    from peerdistill import comparison_runs
    from peerdistill.comparison_configs import variant_trees

    tree = {"name": "v", "out_dir": str(tmp_path), "teacher": None, "students": COMPARED["students"],
            "distill": {"preset": "ml"}, "train": {"epochs": 1, "batch_size": 256}}
    trees = variant_trees([tree], ["flips:data.augment=[hflip]", "turns:data.augment=[rot90]"])
    compare(trees, None, 1, progress=False, by_name=True, console=Console(quiet=True))
    reads, real = [], comparison_runs.build_data
    monkeypatch.setattr(comparison_runs, "build_data", lambda spec, **kw: reads.append(spec) or real(spec, **kw))

    def stop(cfg, **kwargs):
        raise KeyboardInterrupt  # the check is done once the first run would start

    monkeypatch.setattr(comparison_runs, "train_from_config", stop)
    with pytest.raises(KeyboardInterrupt):
        compare(trees, None, 1, progress=False, by_name=True, overwrite=True, console=Console(quiet=True))
    assert len(reads) == 1  # the augmentations differ, the data read does not


def test_a_comparison_is_not_put_inside_a_training_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    with pytest.raises(ConfigError, match="is a training run's folder: give the comparison a folder of its own"):
        compare({"name": "x", "teacher": None, "students": COMPARED["students"]}, ["independent"], 1,
                out=tmp_path / "run", dry_run=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.json"]
    # a folder name with a control character, refused as a config's out_dir is (review 55j)
    with pytest.raises(ConfigError, match=r"out= holds the control character '\\n': it names a folder"):
        compare({"name": "x", "teacher": None, "students": COMPARED["students"]}, ["independent"], 1,
                out=tmp_path / "a\nb", dry_run=True)
    assert not (tmp_path / "a\nb").exists()
    with pytest.raises(ConfigError, match=r"out= .*256 bytes"):
        compare({"name": "x", "teacher": None, "students": COMPARED["students"]}, ["independent"], 1,
                out=tmp_path / ("c" * 256), dry_run=True)


def test_an_operating_point_on_other_than_two_classes_is_refused_before_any_run_trains(tmp_path, monkeypatch):
    def no_training(cfg, **kwargs):
        raise AssertionError("refused before training")

    monkeypatch.setattr("peerdistill.comparison_runs.train_from_config", no_training)
    tree = {"name": "d", "out_dir": str(tmp_path), "teacher": None, "students": COMPARED["students"]}
    for dry_run in (True, False):  # the dry run says so too
        with pytest.raises(ConfigError, match="it is for two-class classification comparisons, and this is a 10-class "
                                            "classification comparison; drop operating_point="):
            compare(tree, ["independent", "ml"], 2, operating_point="youden", dry_run=dry_run,
                    console=Console(quiet=True))
    assert not (tmp_path / "d-compare").exists()


def test_kd_and_multi_teacher_of_a_config_with_several_teachers_are_said_to_train_the_same_runs(tmp_path, capsys):
    import warnings

    from peerdistill.errors import PeerdistillWarning

    teachers = [{"arch": "cnn", "args": {"width": 8, "depth": 1}}, {"arch": "cnn", "args": {"width": 6, "depth": 1}}]
    tree = {"name": "mt", "out_dir": str(tmp_path), "teacher": None, "teachers": teachers,
            "students": COMPARED["students"]}
    with pytest.warns(PeerdistillWarning, match="kd and multi-teacher train the same runs for config .* whose several "
                                                "teachers kd distils by their combined target"):
        compare(tree, ["kd", "multi-teacher"], 1, dry_run=True, console=Console(quiet=True))
    one = {**tree, "teacher": teachers[0], "teachers": []}
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)
        compare(one, ["kd", "ml"], 1, dry_run=True, console=Console(quiet=True))
        compare(tree, ["kd", "independent"], 1, dry_run=True, console=Console(quiet=True))  # kd alone: no pair
    (tmp_path / "mt.yaml").write_text(yaml.safe_dump(tree))  # the command checks its configs twice: said once
    assert main(["compare", str(tmp_path / "mt.yaml"), "--presets", "kd,multi-teacher", "--seeds", "1",
                 "--dry-run"]) == 0
    assert capsys.readouterr().err.count("kd and multi-teacher train the same runs") == 1


def test_a_non_finite_stop_in_a_comparison_gives_the_comparisons_way_on(tmp_path, monkeypatch):
    from peerdistill.errors import NonFiniteError

    def stopped(cfg, **kwargs):  # as the trainer stops: a single run's advice after the finding
        raise NonFiniteError("non-finite loss term 'student1/ce' at epoch 1, step 2; the last good checkpoint is "
                             "X. Lower optim.lr and train again, ..., or continue with peerdistill train --resume X",
                             "non-finite loss term 'student1/ce' at epoch 1, step 2")

    monkeypatch.setattr("peerdistill.comparison_runs.train_from_config", stopped)
    with pytest.raises(NonFiniteError) as caught:
        compare({**COMPARED, "name": "n", "out_dir": str(tmp_path)}, ["kd"], 1, progress=False)
    assert str(caught.value) == (
        f"{tmp_path / 'n-compare' / 'kd-seed0'}: non-finite loss term 'student1/ce' at epoch 1, step 2. In a "
        "comparison every run follows its config: lower optim.lr, or set train.nonfinite: skip, there and run "
        "compare again with --overwrite; or check the data for extreme values")


def test_a_non_finite_error_without_a_finding_is_passed_on_as_it_is(tmp_path, monkeypatch):
    # Only a stop that says its finding apart can be rewritten with the comparison's way on;
    # any other non-finite error keeps its own message (not "...: None. In a comparison ...").
    from peerdistill.errors import NonFiniteError

    def stopped(cfg, **kwargs):
        raise NonFiniteError("the model's outputs are not finite")

    monkeypatch.setattr("peerdistill.comparison_runs.train_from_config", stopped)
    with pytest.raises(NonFiniteError) as caught:
        compare({**COMPARED, "name": "n", "out_dir": str(tmp_path)}, ["kd"], 1, progress=False)
    assert str(caught.value) == "the model's outputs are not finite"


def test_a_comparison_reuses_runs_saved_before_an_option_existed(tmp_path, capsys):
    tree = {**COMPARED, "name": "c", "out_dir": str(tmp_path), "train": {**COMPARED["train"], "epochs": 1}}
    compare(tree, ["kd"], 1, progress=False)
    saved = tmp_path / "c-compare" / "kd-seed0" / "config.yaml"
    older = yaml.safe_load(saved.read_text())
    del older["detect"], older["train"]["monitor"]  # options a later version added, at their defaults
    older["distill"]["ml_temperature"] = 3.0  # kept by a version that ran kd without dropping the peers' keys
    saved.write_text(yaml.safe_dump(older, sort_keys=False))
    capsys.readouterr()
    compare(tree, ["kd"], 1, progress=False)
    assert "reusing finished run" in capsys.readouterr().err
    # how it runs (device, evaluation batch, workers) leaves a finished run's results as they are
    compare({**tree, "device": "cpu", "train": {**tree["train"], "eval_batch_size": 64, "num_workers": 0}},
            ["kd"], 1, progress=False)
    assert "reusing finished run" in capsys.readouterr().err
    older["train"]["batch_size"] = 64  # a real difference is still refused
    saved.write_text(yaml.safe_dump(older, sort_keys=False))
    with pytest.raises(RunDirError, match=r"holds a run with a different config \(train.batch_size: 64 in the "
                                          r"run, 128 now\): delete that run folder \(and its other seeds'\) to train "
                                          r"that row again, pass overwrite=True to redo the whole comparison, or give it "
                                          r"another folder to keep both \(out=DIR\) \(a config of another name "
                                          r"keeps both too\)$"):  # (Python's words: it has no --out, no --setting)
        compare(tree, ["kd"], 1, progress=False)
    from peerdistill.option_names import options_as_flags

    with options_as_flags(), pytest.raises(RunDirError, match=r"pass --overwrite to redo the whole comparison, or "
                                                              r"give it another folder to keep both \(--out DIR\) "
                                                              r"\(a --setting of another NAME keeps both too\)$"):
        compare(tree, ["kd"], 1, progress=False)  # as the command runs it
    capsys.readouterr()
    with pytest.raises(RunDirError, match="holds a run with a different config"):  # after its table, as compare does
        compare(tree, ["kd", "ml"], 1, progress=False, dry_run=True, console=Console(width=300))
    plan = capsys.readouterr().out
    assert re.search(r"kd +│ 0 +│ \S+ +│ refused: '\S+kd-seed0' holds a run with a different config", plan)
    assert re.search(r"ml +│ 0 +│ \S+ml-seed0 +│ train", plan)


def test_a_finished_run_is_reused_for_the_same_data_file_and_teachers_only():
    from peerdistill.config_diff import differences, what_a_result_depends_on, what_is_trained

    run = {"device": "cuda", "data": {"root": "/data/sub/../x.npz"}, "teacher": {"checkpoint": "/t/a.safetensors"},
           "train": {"eval_batch_size": 512, "num_workers": 4, "epochs": 3}}
    same = {"device": "cpu", "data": {"root": "/data/x.npz"}, "teacher": {"checkpoint": "/t/a.safetensors"},
            "train": {"eval_batch_size": 64, "num_workers": 0, "epochs": 3,
                      "find_unused_parameters": True}}  # (DDP's search changes no gradient)
    assert differences(what_a_result_depends_on(run), what_a_result_depends_on(same)) == []
    assert "find_unused_parameters" not in what_is_trained(same)["train"]  # a stopped run resumes with it set
    micro = {**same, "train": {**same["train"], "micro_batch_size": 8}}  # BatchNorm sees other batches
    assert differences(what_a_result_depends_on(run), what_a_result_depends_on(micro)) == [
        "train.micro_batch_size: absent in the run, 8 now"]
    other = {**same, "data": {"root": "/data/y.npz"}, "teacher": {"checkpoint": "/t/b.safetensors"}}
    assert differences(what_a_result_depends_on(run), what_a_result_depends_on(other)) == [
        "data.root: '/data/x.npz' in the run, '/data/y.npz' now",
        "teacher.checkpoint: '/t/a.safetensors' in the run, '/t/b.safetensors' now"]


def test_a_callers_own_console_gets_which_run_starts_too(tmp_path, capsys):
    # from Python, a console writing elsewhere (a notebook's buffer) lost these lines to stderr
    import io

    written = io.StringIO()
    tree = {**COMPARED, "name": "c", "out_dir": str(tmp_path), "train": {**COMPARED["train"], "epochs": 1}}
    compare(tree, ["independent"], 1, progress=False, console=Console(file=written, width=300))
    assert f"independent, seed 0 -> {tmp_path / 'c-compare' / 'independent-seed0'}" in written.getvalue()
    assert " -> " not in capsys.readouterr().err
    compare(tree, ["independent"], 1, progress=False, console=Console(width=300))  # one writing to stdout: stderr
    printed = capsys.readouterr()
    assert "reusing finished run" in printed.err and "reusing finished run" not in printed.out
    assert "test accuracy, one run each" in printed.out


def test_a_moved_comparison_keeps_its_runs_frozen_teachers_included(tmp_path, capsys):
    tree = {**COMPARED, "name": "f", "out_dir": str(tmp_path), "train": {**COMPARED["train"], "epochs": 2}}
    first = compare(tree, ["kd"], 1, progress=False, teacher_from="independent")
    moved = tmp_path / "elsewhere" / "f-compare"
    moved.parent.mkdir()
    first.directory.rename(moved)
    capsys.readouterr()
    again = compare(tree, ["kd"], 1, progress=False, teacher_from="independent", out=moved)
    printed = capsys.readouterr().err
    assert printed.count("reusing finished run") == 2 and " -> " not in printed, printed
    assert again.markdown == first.markdown
    # an unfinished run of a moved comparison continues from its checkpoint too
    run = moved / "kd-frozen-teacher-seed0"
    (run / "metrics.json").unlink()
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "status": "running"}))
    moved.rename(tmp_path / "third")
    capsys.readouterr()
    last = compare(tree, ["kd"], 1, progress=False, teacher_from="independent", out=tmp_path / "third")
    assert "resuming unfinished run" in capsys.readouterr().err
    assert last.markdown == first.markdown


def test_a_dry_run_names_the_files_a_run_would_miss(tmp_path, capsys):
    tree = {**COMPARED, "name": "m", "out_dir": str(tmp_path), "data": {"kind": "npz", "root": "PATH"}}
    # listed, then refused as the command would refuse it: a non-zero exit (review 49h: it exited 0)
    with pytest.raises(ConfigError, match="kd, seed 0: data.root 'PATH' does not exist: give the right path"):
        compare(tree, ["kd"], 1, progress=False, dry_run=True, console=Console(width=300))
    assert re.search(r"kd +│ 0 +│ \S+ +│ would stop: data.root 'PATH' does not exist", capsys.readouterr().out)
    teacher = {**COMPARED["teacher"], "frozen": True, "checkpoint": str(tmp_path / "gone.safetensors")}
    with pytest.raises(ConfigError, match="the teacher's checkpoint"):
        compare({**COMPARED, "name": "t", "out_dir": str(tmp_path), "teacher": teacher}, ["kd"], 1, progress=False,
                dry_run=True, console=Console(width=300))
    assert "would stop: the teacher's checkpoint" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="data.root is set but data kind 'digits' reads no files"):
        compare({**COMPARED, "name": "d", "out_dir": str(tmp_path), "data": {"kind": "digits", "root": "unused"}},
                ["kd"], 1, progress=False, dry_run=True, console=Console(width=300))  # digits are embedded
    assert not any(tmp_path.iterdir()), "a dry run writes nothing"


def test_teachers_trained_first_then_frozen_per_seed(tmp_path, capsys):
    tree = {**COMPARED, "name": "f", "out_dir": str(tmp_path), "train": {**COMPARED["train"], "epochs": 2}}
    result = compare(tree, ["kd"], 2, progress=False, teacher_from="independent")
    directory = tmp_path / "f-compare"
    assert {p.name for p in directory.iterdir() if p.is_dir()} == {
        "independent-seed0", "independent-seed1", "kd-frozen-teacher-seed0", "kd-frozen-teacher-seed1"}
    for seed in (0, 1):
        source = directory / f"independent-seed{seed}"
        frozen_run = directory / f"kd-frozen-teacher-seed{seed}"
        teacher = yaml.safe_load((frozen_run / "config.yaml").read_text())["teacher"]
        assert teacher["frozen"] is True and teacher["checkpoint"] == str(source)
        shipped = load_file(frozen_run / "models" / "teacher.safetensors")
        trained = load_file(source / "models" / "teacher.safetensors")
        assert shipped.keys() == trained.keys() and all((shipped[k] == trained[k]).all() for k in trained)
    seed0 = load_file(directory / "independent-seed0" / "models" / "teacher.safetensors")
    seed1 = load_file(directory / "independent-seed1" / "models" / "teacher.safetensors")
    assert any((seed0[k] != seed1[k]).any() for k in seed0), "each seed trains its own teacher"
    # two seeds, two pairs: the interval's width is said where the differences are shown
    said = "With two pairs the interval is 12.7 standard errors wide on each side"
    printed = " ".join(capsys.readouterr().out.split())
    assert said in result.markdown and said in printed
    # and how to read it, on the console too, where the table has no caption (review 52d)
    from peerdistill.paired import ONE_TEST_SPLIT_CAVEAT, READING_CAVEAT

    assert READING_CAVEAT in printed and ONE_TEST_SPLIT_CAVEAT in printed

    def row(setting, model):
        return next(r for r in result.rows if r["setting"] == setting and r["model"] == model
                    and r["metric"] == "accuracy")

    assert {r["setting"] for r in result.rows} == {"independent", "kd (frozen teacher)"}
    # the frozen teacher scores, seed by seed, what it scored where it was trained
    assert row("kd (frozen teacher)", "teacher")["values"] == row("independent", "teacher")["values"]
    assert row("kd (frozen teacher)", "student1")["values"] != row("independent", "student1")["values"]
    assert "distil from the teachers of the `independent` run of the same seed, frozen" in result.markdown
    assert "| kd (frozen teacher) |" in result.markdown
    page = write_report(directory).read_text(encoding="utf-8")
    assert "<tr><th>kd (frozen teacher)</th>" in page and "<tr><th>independent</th>" in page
    capsys.readouterr()
    compare(tree, ["kd"], 2, progress=False, teacher_from="independent")
    assert capsys.readouterr().err.count("reusing finished run") == 4
    # the source trained again (say on a GPU, not bit for bit): its students are not reused
    source = directory / "independent-seed1" / "models" / "teacher.safetensors"
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in load_file(source).items()}, source)
    with pytest.raises(RunDirError, match="kd-frozen-teacher-seed1' was distilled from a teacher that .* "
                                          "no longer holds.*the same call with dry_run=True lists every run so refused"):
        compare(tree, ["kd"], 2, progress=False, teacher_from="independent")
    import io

    printed = io.StringIO()
    with pytest.raises(RunDirError, match="kd-frozen-teacher-seed1' was distilled from a teacher") as refused:
        compare(tree, ["kd"], 2, progress=False, teacher_from="independent", dry_run=True,
                console=Console(file=printed, width=400))
    assert "lists every run so refused" not in str(refused.value)  # (the dry run is that list)
    assert " ".join(printed.getvalue().split()).count("refused: ") == 1  # seed 1's, by name


def test_several_teachers_are_each_frozen_from_their_own_file(tmp_path):
    cnn = {"arch": "cnn", "args": {"width": 4}}
    tree = {**COMPARED, "name": "m", "out_dir": str(tmp_path), "teachers": [cnn, {**cnn, "name": "wide"}],
            "train": {**COMPARED["train"], "epochs": 1}}
    del tree["teacher"]
    result = compare(tree, ["multi-teacher"], 1, progress=False, teacher_from="independent")
    directory = tmp_path / "m-compare"
    # both teachers are frozen: the row says so in the plural; its runs' folders are named as before (reused)
    assert [s for s in dict.fromkeys(r["setting"] for r in result.rows)] == [
        "independent", "multi-teacher (frozen teachers)"]
    assert "Settings marked '(frozen teachers)' distil from" in result.markdown
    teachers = yaml.safe_load((directory / "multi-teacher-frozen-teacher-seed0" / "config.yaml").read_text())["teachers"]
    assert [(t["frozen"], t["checkpoint"]) for t in teachers] == [(True, str(directory / "independent-seed0"))] * 2
    for name in ("teacher1", "wide"):
        shipped, trained = (load_file(directory / run / "models" / f"{name}.safetensors")
                            for run in ("multi-teacher-frozen-teacher-seed0", "independent-seed0"))
        assert all(torch.equal(shipped[k], trained[k]) for k in trained)


def test_teacher_from_with_several_configs_labels_each_cohort(tmp_path):
    base = {**COMPARED, "out_dir": str(tmp_path), "train": {**COMPARED["train"], "epochs": 1}}
    result = compare([{**base, "name": "a"}, {**base, "name": "b", "teacher": {"arch": "cnn", "args": {"width": 6}}}],
                     ["kd"], 1, progress=False, teacher_from="independent")
    assert [s for s in dict.fromkeys(r["setting"] for r in result.rows)] == [
        "a:independent", "a:kd (frozen teacher)", "b:independent", "b:kd (frozen teacher)"]
    for name in ("a", "b"):
        teacher = yaml.safe_load((tmp_path / "compare" / f"{name}-kd-frozen-teacher-seed0" / "config.yaml").read_text())
        assert teacher["teacher"]["checkpoint"] == str(tmp_path / "compare" / f"{name}-independent-seed0")


def test_settings_that_would_share_run_directories_are_refused(tmp_path):
    base = {**COMPARED, "out_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="the settings 'x:y' and 'x-y' would share run directories"):
        compare([{**base, "name": "x:y"}, {**base, "name": "x-y"}], None, 1, progress=False)
    assert not (tmp_path / "compare").exists()



def test_a_later_configs_patch_larger_than_its_images_is_refused_before_any_run_trains(tmp_path):
    seg = {"task": "segmentation", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "independent"},
           "data": {"kind": "shapes", "shapes_counts": [8, 4, 4]}, "train": {"epochs": 1, "batch_size": 4},
           "students": [{"arch": "unet", "args": {"width": 2, "depth": 1}}]}
    patched = {**seg, "name": "patched", "data": {**seg["data"], "patch_size": 65}}
    with pytest.raises(ConfigError, match=re.escape("patched, seed 0: data.patch_size=65 is larger than the training "
                                                    "images (64x64)")):
        compare([{**seg, "name": "whole"}, patched], None, 1, progress=False)
    assert not (tmp_path / "compare").exists()

@pytest.mark.parametrize("change,source,message,in_python", [
    ({}, "fancy", "--teacher-from: unknown preset 'fancy'", None),
    ({}, "kd+ml", "--teacher-from kd+ml: no other preset to distil into; name them with --presets kd,kd+ml",
     "teacher_from='kd+ml': no other preset to distil into; name them with presets=['kd', 'kd+ml']"),
    ({"teacher": None, "distill": {"preset": "ml"}}, "independent", "has no teacher to train first", None),
    ({"teacher": {"arch": "cnn", "frozen": True, "checkpoint": "t.safetensors"}}, "independent",
     "--teacher-from independent: the teacher of config 'x' is already frozen (teacher.frozen: true): drop "
     "--teacher-from", "teacher_from='independent': the teacher of config 'x' is already frozen (teacher.frozen: "
     "true): drop teacher_from="),
])
def test_teacher_from_mistakes_are_one_clear_message(tmp_path, change, source, message, in_python, capsys):
    tree = {**COMPARED, "name": "x", "out_dir": str(tmp_path), **change}
    with pytest.raises(ConfigError, match=re.escape(in_python or message)):
        compare(tree, None, 1, progress=False, teacher_from=source)
    assert not (tmp_path / "x-compare").exists()
    config = tmp_path / "x.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in tree.items() if v is not None}))
    assert main(["compare", str(config), "--teacher-from", source, "--seeds", "1", "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_runs_trained_in_parallel_processes_match_the_runs_trained_one_by_one(tmp_path, capfd):
    tree = {**COMPARED, "name": "p", "out_dir": str(tmp_path), "train": {**COMPARED["train"], "epochs": 1},
            "distill": {"rampup_epochs": 0}}
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the threads each of the two workers below gets
        one_by_one = compare({**tree, "name": "s"}, ["kd"], 2, progress=False, teacher_from="independent")
        torch.set_num_threads(2)
        capfd.readouterr()
        parallel = compare(tree, ["kd"], 2, progress=False, teacher_from="independent", jobs=2)
    finally:
        torch.set_num_threads(threads)
    printed = " ".join(capfd.readouterr().err.split())  # the workers print too
    assert jsonable(parallel.rows) == jsonable(one_by_one.rows)
    assert re.search(r"kd \(frozen teacher\), seed \d: done \(4 of 4\)", printed)  # one pool, teachers first
    # each frozen run started after the run that trained its teacher had finished
    for seed in (0, 1):
        assert printed.index(f"independent, seed {seed}: done") < printed.index(f"kd (frozen teacher), seed {seed} ->")


def test_an_overwrite_removes_the_comparisons_own_report_never_a_page_of_ones_own(tmp_path):
    from peerdistill.compare import _replace
    from peerdistill.html_report.html_parts import GENERATOR

    (tmp_path / "report.html").write_text("<html><title>my notes</title></html>")
    _replace([], tmp_path)
    assert (tmp_path / "report.html").read_text() == "<html><title>my notes</title></html>"
    from peerdistill.html_report.writing import _signed

    page = f"<html><head>{GENERATOR}</head><body></body></html>"
    for written, kept in ((page, True),  # an earlier version's, without its digest: whether edited cannot be told
                          (_signed(page.encode()).decode().replace("<body>", "<body>notes"), True),  # edited since
                          (_signed(page.encode()).decode(), False)):  # as report writes it
        (tmp_path / "report.html").write_text(written)
        _replace([], tmp_path)
        assert (tmp_path / "report.html").exists() == kept


def test_a_run_the_comparison_would_refuse_is_refused_before_any_run_trains(tmp_path):
    """Review 50i: a run refused as its turn came (another config here) let the runs before it
    train first, with --jobs the ones beside it too; the dry run listed the refusal up front.
    (A run failing as it trains lets the others under way finish: tests/test_run_pool.py.)"""
    tree = {**COMPARED, "name": "f", "out_dir": str(tmp_path), "train": {**COMPARED["train"], "epochs": 1}}
    taken = tmp_path / "f-compare" / "kd-seed1"
    taken.mkdir(parents=True)
    (taken / "config.yaml").write_text(yaml.safe_dump({**tree, "seed": 7}))
    for jobs in (1, 2):
        with pytest.raises(RunDirError, match="kd-seed1' holds a run with a different config"):
            compare(tree, ["kd"], 2, progress=False, jobs=jobs)
        assert not (tmp_path / "f-compare" / "kd-seed0").exists()
    assert not (tmp_path / "f-compare" / "compare.md").exists()


def _plans(*devices):
    from peerdistill.comparison_runs import Plan
    from peerdistill.config import validate
    return [Plan("kd", validate({**COMPARED, "device": device}), Path(f"run{i}"), None)
            for i, device in enumerate(devices)]


@pytest.mark.parametrize("devices, count, visible, gpus", [
    (("auto", "auto"), 4, None, ["0", "1", "2", "3"]),
    (("cuda", "cpu"), 2, None, ["0", "1"]),
    (("auto",), 3, "5, 7,", ["5", "7"]),  # a scheduler's choice, by its names
    (("auto",), 3, "4,5,6", ["4", "5"]),  # names past the GPUs CUDA finds (2 here) get no worker
    (("auto", "cuda:1"), 4, None, []),  # a run that names its GPU would not find it
    (("auto",), 1, None, []),
    (("cpu", "cpu"), 4, None, []),
])
def test_jobs_take_the_visible_gpus_in_turn_when_the_runs_leave_the_choice_open(monkeypatch, devices, count,
                                                                                visible, gpus):
    from peerdistill.comparison_runs import gpus_to_share
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if visible is None else 2)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpus_to_share(_plans(*devices)) == gpus


def test_runs_on_two_kinds_of_device_cannot_share_one_torchrun_group(monkeypatch):
    # Under torchrun every run of a comparison joins one process group, whose backend one kind of
    # device picks: a config on the GPU and one on the CPU are refused before any group is joined.
    from peerdistill import comparison_runs
    monkeypatch.setattr(comparison_runs, "launched", lambda: True)
    monkeypatch.setattr(comparison_runs, "resolve_device", lambda name: torch.device(name))
    monkeypatch.setattr(comparison_runs, "join", lambda device: pytest.fail("joined a group"))
    with pytest.raises(ConfigError, match="one kind of device: these configs ask for cpu and cuda; set device"):
        comparison_runs.comparison_world(_plans("cuda", "cpu"))


def _pool_on_two_gpus(monkeypatch) -> dict:
    """comparison_runs' process pool replaced by one that records what it is handed; two GPUs."""
    from peerdistill import comparison_runs
    handed = {}

    def pool(plans, work, jobs, threads, console, describe, needs, worker_envs):
        handed.update(jobs=jobs, threads=threads, envs=worker_envs)
        return [{} for _ in plans]

    monkeypatch.setattr(comparison_runs, "run_in_processes", pool)
    monkeypatch.setattr(comparison_runs, "gpus_to_share", lambda plans: ["0", "1"])
    return handed


def test_each_jobs_worker_is_given_one_gpu_and_the_command_says_which(monkeypatch, capsys):
    from peerdistill import comparison_runs

    handed = _pool_on_two_gpus(monkeypatch)
    comparison_runs.run_all(_plans("auto", "auto", "auto"), False, False, Console(width=200), jobs=3)
    assert (handed["jobs"], handed["envs"]) == (3, [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}])
    assert "3 runs at once, each worker on one GPU (CUDA_VISIBLE_DEVICES 0, 1, 0)" in capsys.readouterr().out


def test_more_jobs_than_runs_start_one_worker_per_run_with_its_share_of_the_threads(monkeypatch, capsys):
    # --jobs 8 for two runs: two workers (not eight idle ones), each with half the threads.
    from peerdistill import comparison_runs

    handed = _pool_on_two_gpus(monkeypatch)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    comparison_runs.run_all(_plans("auto", "auto"), False, False, Console(width=200), jobs=8)
    assert (handed["jobs"], handed["threads"]) == (2, 4)
    assert "2 runs at once, each worker on one GPU (CUDA_VISIBLE_DEVICES 0, 1)" in capsys.readouterr().out


@pytest.mark.parametrize("processes, jobs, message", [
    (2, 2, "jobs= starts processes of its own, which would join torchrun's process group: drop jobs="),
    (1, 2, "jobs= starts processes of its own, which would join torchrun's process group: drop jobs=")])
def test_compare_with_jobs_under_torchrun_is_refused(tmp_path, monkeypatch, processes, jobs, message):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", str(processes))
    with pytest.raises(ConfigError, match=message):
        compare({**COMPARED, "name": "t", "out_dir": str(tmp_path)}, ["kd"], 1, progress=False, jobs=jobs)
    assert not (tmp_path / "t-compare").exists()


def test_a_per_class_monitor_of_a_class_named_with_a_slash_picks_the_best_student():
    """train.monitor is MODEL/METRIC, and a per-class metric carries the class name, which may
    hold a '/' (a COCO category, an npz class name)."""
    from peerdistill.compare import aggregate

    def scores(recall):
        return {"accuracy": 0.5, "recall_cat/dog": recall}

    metrics = {"monitor": "ensemble/recall_cat/dog", "roles": {"student1": "student", "student2": "student"},
               "val_at_best": {"student1": scores(0.2), "student2": scores(0.9)},
               "test_at_best": {"student1": scores(0.3), "student2": scores(0.7)}}
    rows = aggregate([{"setting": "kd", "seed": 0, "run": "kd-seed0", "metrics": metrics}])
    best = next(r for r in rows if r["model"] == "best student" and r["metric"] == "recall_cat/dog")
    assert best["mean"] == 0.7


def test_settings_given_on_the_command_line_are_rows_of_one_config(tmp_path, capsys):
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump({**COMPARED, "name": "base", "out_dir": str(tmp_path),
                                      "train": {"epochs": 1, "batch_size": 128}}))
    # overrides typed after the settings still apply to every row
    assert main(["compare", str(config), "--seeds", "1", "--quiet", "--setting", "flips:data.augment=[hflip]",
                 "--setting", "turns:data.augment=[hflip, rotate]", "--setting", "turns:data.augment_range={rotate: 10}",
                 "distill.preset=independent"]) == 0
    out = tmp_path / "base-compare"  # the config's own comparison folder
    saved = {name: yaml.safe_load((out / f"{name}-seed0" / "config.yaml").read_text()) for name in ("flips", "turns")}
    assert saved["flips"]["data"]["augment"] == ["hflip"] and saved["flips"]["data"]["augment_range"] == {}
    assert saved["turns"]["data"]["augment"] == ["hflip", "rotate"]
    assert saved["turns"]["data"]["augment_range"] == {"rotate": 10.0}
    assert saved["flips"]["distill"]["preset"] == saved["turns"]["distill"]["preset"] == "independent"
    table = (out / "compare.md").read_text()
    assert "| flips |" in table and "| turns |" in table
    assert "### test accuracy: paired differences from flips" in table  # the first setting is the baseline
    # what was compared, said where the tables are cited from (review 55d: the split sizes were in no table)
    from peerdistill import __version__

    assert (f"What was compared: data kind `digits` (built in); 1,077 train, 360 val, 360 test samples "
            f"(data.split_seed 0); 1 epoch each; trained by peerdistill {__version__} (git commit ") in table
    assert "best student: in each run, the student its monitor scores best on the validation split" in \
        " ".join(capsys.readouterr().out.split())


def test_what_was_compared_names_the_data_splits_epochs_and_code_of_the_runs():
    """Review 55d: compare.md and the comparison's page never named the data, its split sizes, the
    epochs or the code; folds cut the set otherwise, settings may train for other epochs."""
    from types import SimpleNamespace

    from peerdistill.comparison_context import what_was_compared

    def plan(label, epochs, patience=None):
        return SimpleNamespace(label=label, cfg=SimpleNamespace(train=SimpleNamespace(epochs=epochs, patience=patience)))

    env = {"peerdistill": "0.1.0", "source": "abc123", "torch": "2.13.0", "device": "cpu"}
    spec = {"kind": "npz", "root": "scans.npz", "split_seed": 3}
    records = {Path(f"r{i}"): {"data_spec": spec, "split_sizes": {"train": 80 + i, "val": 10, "test": 10 - i},
                               "environment": env} for i in range(3)}
    assert what_was_compared(records, [plan("kd", 30), plan("kd", 30), plan("ml", 40, patience=5)]) == (
        "What was compared: data kind `npz`, `scans.npz`; 80 to 82 train, 10 val, 8 to 10 test samples over the runs "
        "(data.split_seed 3); epochs kd 30, ml 40 (at most: train.patience may end a run sooner); trained by "
        "peerdistill 0.1.0 (git commit abc123), torch 2.13.0, on cpu. Each run's folder holds its whole config "
        "(`config.yaml`) and its record (`run.json`).")
    # a run lacking a split, or a hand-edited record, changes no count said (review 55n: "over the runs", a crash)
    assert what_was_compared({Path("a"): {"split_sizes": {"train": 10, "val": 5, "test": 5}, "environment": "cpu"},
                              Path("b"): {"split_sizes": {"train": 10, "val": 5}, "data_spec": "x"}},
                             [plan("a", 2)]).startswith("What was compared: 10 train, 5 val, 5 test samples; 2 epochs")
    # a run trained from Python records no data section: the rest is still said
    assert what_was_compared({Path("r"): {"environment": env}}, [plan("a", 2)]) == (
        "What was compared: 2 epochs each; trained by peerdistill 0.1.0 (git commit abc123), torch 2.13.0, on cpu. Each "
        "run's "
        "folder holds its whole config (`config.yaml`) and its record (`run.json`).")


def test_compare_md_words_the_runs_code_and_device_as_their_run_pages_do():
    """compare.md said `(source abc123), torch 2.13.0, cpu` where the run's page said `(git commit
    abc123), torch 2.13.0, ..., on cpu`: one wording (``environment_in_words``) for both."""
    from types import SimpleNamespace

    from peerdistill.comparison_context import what_was_compared
    from peerdistill.html_report.run_page import _environment_in_words

    env = {"peerdistill": "0.1.0", "source": "abc123", "torch": "2.13.0", "numpy": "2.4.6", "python": "3.11.7",
           "device": "cuda: NVIDIA H100", "threads": 2}
    assert _environment_in_words({"environment": env}) == (
        "peerdistill 0.1.0 (git commit abc123), torch 2.13.0, numpy 2.4.6, python 3.11.7, on cuda: NVIDIA H100, 2 threads")
    plan = SimpleNamespace(label="a", cfg=SimpleNamespace(train=SimpleNamespace(epochs=2, patience=None)))
    assert "; trained by peerdistill 0.1.0 (git commit abc123), torch 2.13.0, on cuda: NVIDIA H100. " in \
        what_was_compared({Path("r"): {"environment": env}}, [plan])
    # (a record without the commit: the version alone, as on the run's page)
    assert "; trained by peerdistill 0.1.0, torch 2.13.0, on cpu. " in what_was_compared(
        {Path("r"): {"environment": {"peerdistill": "0.1.0", "torch": "2.13.0", "device": "cpu"}}}, [plan])


def test_the_seeds_used_are_read_from_the_runs_records():
    """compare.md and the comparison's page said `seed, seed+1, ...`, what the command meant, not
    what its runs (some reused, one trained by hand into the folder) trained with."""
    from peerdistill.comparison_context import seeds_used

    folded = {Path(f"f{s}-{k}"): {"seed": s, "data_spec": {"folds": 3, "fold": k}} for s in (0, 1) for k in range(3)}
    assert seeds_used({"kd": list(folded)}, folded) == "Seeds used (each run's run.json): kd 0, 1 (folds 0 to 2)."
    records = {Path(f"r{s}"): {"seed": s} for s in [*range(10), 12, 20, 21]}
    records[Path("edited")] = {"seed": "3"}  # (hand-edited: no seed)
    runs = {"a": [Path(f"r{s}") for s in [*range(10), 12, 20, 21]], "b": [Path("r0"), Path("r3"), Path("edited"),
                                                                         Path("gone")]}
    assert seeds_used(runs, records) == ("Seeds used (each run's run.json): a 0 to 9, 12, 20, 21; b 0, 3; 2 run(s) "
                                         "whose run.json records no seed (unreadable, or hand-edited).")
    same = {"a": [Path("r4"), Path("r5")], "b": [Path("r5"), Path("r4")]}
    assert seeds_used(same, records) == "Seeds used (each run's run.json): 4, 5 in every setting."


@pytest.mark.parametrize("setting, message", [
    (["--setting", "data.augment=[hflip]"], "write NAME:KEY=VALUE"),
    (["--setting", "a:other.yaml"], "'other.yaml' is not a key=value override"),
    # what compare sets for every run would drop the setting's value without a word
    (["--setting", "x:name=foo", "--setting", "y"], "name cannot differ between settings"),
    (["--setting", "x:out_dir=/elsewhere", "--setting", "y"], "out_dir cannot differ between settings"),
    (["--setting", "a:seed=1", "--setting", "b"], "seed cannot differ between settings; compare sets each run's seed"),
    (["--setting", "a:", "--setting", "b"], "--setting 'a:' has nothing after its ':': write NAME:KEY=VALUE"),
    (["--setting", "a:train.epochs=2", "--setting", "a:train.epochs=3"],
     "--setting 'a': train.epochs is given twice"),
    (["--setting", "x:distill.preset=ml", "--setting", "y", "--presets", "independent,kd"],
     "--presets sets every run's preset: drop --presets"),
    (["--setting", "x:distill={preset: ml}", "--setting", "y", "--presets", "independent,kd"],
     "distill.preset cannot differ between settings"),  # set inside a mapping too
    # a key one of --presets does not read: that preset's row would be its plain run, not the setting's
    (["--setting", "hiT:distill.kd_temperature=8", "--setting", "y", "--presets", "kd,ml"],
     "--setting 'hiT' sets distill.kd_temperature, which preset ml (from --presets) does not read (it is read only "
     "under presets kd, kd+ml,"),
    (["--setting", "hiT:distill={kd_temperature: 8}", "--presets", "kd+ml,ml"], "which preset ml (from --presets)"),
    (["--setting", "g:distill.gamma=2", "--presets", "kd,kd+ml"],
     "--setting 'g' sets distill.gamma, which none of --presets kd,kd+ml reads (it is read only under presets styles"),
    (["--setting", "a/b:seed=1"], "its NAME 'a/b' names the runs' folders, so it is one folder name"),
    (["--setting", "a;b:seed=1"], "its NAME 'a;b' names the runs' folders, so it is one folder name (no /, \\ or ;)"),
    (["--setting", "..:seed=1"], "its NAME '..' names the runs' folders, so it is one folder name"),
    (["--seeds", "20000"], "--seeds must be 1 to 10,000 (got 20,000)"),
    (["seed=4294967295", "--seeds", "2"], "--seeds 2 from seed 4294967295 reaches seed 4294967296, past the largest"),
    (["--out", ""], "argument --out: is empty: give a value"),  # an unset shell variable: not the default folder
    (["--operating-point", ""], "argument --operating-point: is empty"),  # not: no operating point
])
def test_compare_mistakes_are_one_clear_message(tmp_path, setting, message, capsys):
    try:
        code = main(["compare", "--dry-run", "--out", str(tmp_path / "c"), *setting])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    assert code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "c").exists()


def test_a_setting_keeps_its_distill_keys_under_every_preset_that_reads_them(tmp_path):
    from peerdistill.comparison_configs import setting_tree, variant_trees
    from peerdistill.comparison_runs import plan_runs, settings_of
    from peerdistill.config import validate

    tree = {**COMPARED, "out_dir": str(tmp_path), "distill": {"preset": "ml"}}
    trees = variant_trees([tree], ["hiT:distill.kd_temperature=8", "plain"], presets=["kd", "kd+ml"])
    bases = [validate(setting_tree(t, "kd", None, None, None)) for t in trees]  # as compare checks each config
    plans = plan_runs(settings_of(trees, bases, ["kd", "kd+ml"], None, by_name=True), 1, tmp_path)
    temperatures = {p.label: p.cfg.distill.kd_temperature for p in plans}
    assert temperatures == {"hiT:kd": 8, "hiT:kd+ml": 8, "plain:kd": 4, "plain:kd+ml": 4}


def test_settings_are_named_by_config_and_setting_and_one_setting_keeps_its_name(tmp_path, capsys):
    from peerdistill.comparison_configs import variant_trees

    trees = variant_trees([{"name": "a"}, {}], ["x:train.epochs=2", "y", "x:deterministic=true"])
    assert [t["name"] for t in trees] == ["a-x", "a-y", "digits-kd+ml-x", "digits-kd+ml-y"]
    assert trees[0]["train"] == {"epochs": 2} and trees[0]["deterministic"] is True and "train" not in trees[1]
    assert main(["compare", "--dry-run", "--seeds", "1", "--out", str(tmp_path / "c"), "--setting",
                 "solo:train.epochs=3"]) == 0
    assert "solo" in capsys.readouterr().out


def test_settings_picked_by_different_monitors_say_so(tmp_path):
    base = {"out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml", "rampup_epochs": 1},
            "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2, "train": {"epochs": 1, "batch_size": 256}}
    same = compare([{**base, "name": "a"}, {**base, "name": "b"}], None, 1, progress=False)
    assert "(monitor `ensemble/accuracy`)" in same.markdown and "own monitor" not in same.markdown
    mixed = compare([{**base, "name": "a"}, {**base, "name": "b", "train": {**base["train"], "monitor": "ensemble/auc"}}],
                    None, 1, progress=False, out=tmp_path / "mixed")
    assert "(each setting's own monitor: `a`: `ensemble/accuracy`; `b`: `ensemble/auc`)" in mixed.markdown
    assert "by its setting's monitor (settings picked by different monitors differ in that rule too)" in mixed.markdown


def test_presets_without_a_teacher_drop_the_configs_teacher_term_weights():
    """--presets independent,ml,kd over a segmentation config with the structured-KD weights."""
    from peerdistill.comparison_configs import setting_tree
    from peerdistill.config import default_config, validate

    tree = {**default_config(), "distill": {"preset": "kd", "cwd_weight": 1.0, "ensemble_weight": 0.5}}
    ml = setting_tree(tree, "ml", 0, "ml", None)
    assert "cwd_weight" not in ml["distill"] and ml["distill"]["ensemble_weight"] == 0.5
    validate(ml)
    assert setting_tree(tree, "kd+ml", 0, "kd+ml", None)["distill"]["cwd_weight"] == 1.0


def test_each_preset_of_a_comparison_drops_the_distill_keys_it_would_not_read():
    """--presets ml,kd,styles over one config that tunes the teacher's, the peers' and the
    feature edges' terms: each run keeps what its preset reads, and passes validation."""
    from peerdistill.comparison_configs import setting_tree
    from peerdistill.config import default_config, validate

    tree = {**default_config(), "distill": {"preset": "styles", "alpha": 0.5, "kd_temperature": 2.0, "beta": 2.0,
                                            "gamma": 3.0, "feature_loss": "at"}}
    kept = {preset: setting_tree(tree, preset, 0, preset, None)["distill"] for preset in ("ml", "kd", "styles")}
    assert set(kept["ml"]) == {"preset", "edges", "beta"}
    assert set(kept["kd"]) == {"preset", "edges", "alpha", "kd_temperature"}
    assert kept["styles"] == tree["distill"]
    for distill in kept.values():
        validate({**tree, "distill": distill})
    # a key read only beside a dropped one goes with it: the critic's keys with the holistic term
    holistic = {**default_config(), "task": "segmentation", "data": {"kind": "shapes"},
                "distill": {"preset": "kd", "holistic_weight": 0.1, "gp_weight": 5.0}}
    assert set(setting_tree(holistic, "ml", 0, "ml", None)["distill"]) == {"preset", "edges"}


def test_a_key_the_configs_own_preset_never_read_is_refused_as_train_refuses_it(tmp_path):
    """Only what the config's preset read and another does not is dropped: a key no term of the
    config read (one teacher's weighting) is the user's mistake under every preset."""
    tree = {**COMPARED, "out_dir": str(tmp_path), "distill": {"preset": "kd+ml", "teacher_weighting": "confidence"}}
    with pytest.raises(ConfigError, match="distill.teacher_weighting is read only where several teachers teach"):
        compare(tree, ["kd", "ml"], 1, dry_run=True, console=Console(quiet=True))


def test_a_setting_that_moves_to_another_preset_drops_what_it_would_not_read_unless_it_sets_it():
    from peerdistill.comparison_configs import variant_trees
    from peerdistill.config import validate

    tree = {**COMPARED, "distill": {"preset": "kd", "alpha": 0.5, "kd_temperature": 2.0}}
    same, peers, meant = variant_trees([tree], ["same", "peers:distill.preset=ml", "meant:distill.preset=ml",
                                                "meant:distill.alpha=0.7"])
    assert same["distill"] == tree["distill"]
    assert peers["distill"] == {"preset": "ml"}
    validate(peers)
    assert meant["distill"] == {"preset": "ml", "alpha": 0.7}  # set for this setting: refused, as train refuses it
    with pytest.raises(ConfigError, match="distill.alpha is read only under presets"):
        validate(meant)
    custom = {**COMPARED, "distill": {"preset": "custom", "edges": [{"source": "teacher", "target": "student1"}]}}
    [moved] = variant_trees([custom], ["moved:distill.preset=ml"])
    assert moved["distill"] == {"preset": "ml"}  # custom's edges go as --presets drops them
    validate(moved)
    # a whole distill section given merges into the config's (as train's overrides do); none that is
    # a mapping: validation says what is wrong
    [whole] = variant_trees([tree], ["whole:distill={rampup_epochs: 0}"])
    assert whole["distill"] == {**tree["distill"], "rampup_epochs": 0}
    for broken in ({**COMPARED, "distill": "kd"}, tree):
        [bad] = variant_trees([broken], ["bad:distill=kd" if broken is tree else "bad:train.epochs=1"])
        with pytest.raises(ConfigError, match=r"'distill' is a section of keys and was given 'kd': write distill: "
                                              r"\{preset: kd\}"):
            compare(bad, ["ml"], 1, dry_run=True, console=Console(quiet=True))

def no_training(cfg, **kwargs):
    raise AssertionError("refused before any run trains")


def test_teachers_frozen_for_presets_that_never_read_them_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="teacher_from='kd': preset\\(s\\) independent, ml do not learn from a "
                                          "teacher"):
        compare({**COMPARED, "out_dir": str(tmp_path)}, ["kd", "independent", "ml"], 1, teacher_from="kd",
                dry_run=True, console=Console(quiet=True))


def test_a_later_config_that_cannot_start_is_found_before_the_first_trains(tmp_path, monkeypatch):
    monkeypatch.setattr("peerdistill.comparison_runs.train_from_config", no_training)
    good = {**COMPARED, "name": "good", "out_dir": str(tmp_path)}
    missing = {**good, "name": "missing", "data": {"kind": "npz", "root": str(tmp_path / "none.npz")}}
    mistyped = {**good, "name": "mistyped", "students": [{"arch": "cnn", "args": {"widht": 4}}] * 2}
    with pytest.raises(ConfigError, match="missing:independent, seed 0.*none.npz' does not exist"):
        compare([good, missing], ["independent"], 1, progress=False, console=Console(quiet=True))
    for dry_run in (False, True):  # the dry run says it too, after the plan
        with pytest.raises(ConfigError, match="mistyped.*widht"):
            compare([good, mistyped], ["independent"], 1, progress=False, dry_run=dry_run, console=Console(quiet=True))
    # and of one config, whose first run the mistake would stop at once (review 50c: listed as "train", exit 0)
    with pytest.raises(ConfigError, match="mistyped:independent, seed 0.*widht"):
        compare([mistyped], ["independent"], 1, progress=False, dry_run=True, by_name=True, console=Console(quiet=True))


def test_more_folds_than_a_class_holds_are_refused_in_the_dry_run_too(tmp_path):
    tree = {**COMPARED, "out_dir": str(tmp_path)}
    with pytest.raises(DataError, match="folds=200: .*smallest class has 174.*use at most 174 folds"):
        compare(tree, ["independent"], 1, folds=200, dry_run=True, console=Console(quiet=True))
    two = tmp_path / "two.npz"  # data with its own test split: the --folds message, not the config key's
    save_npz_of_two_classes(two)
    with pytest.raises(ConfigError, match="folds= cuts one set into folds, but .* drop folds="):
        compare({**tree, "data": {"kind": "npz", "root": str(two)}}, ["independent"], 1, folds=3, dry_run=True)


def save_npz_of_two_classes(path):
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {f"{s}_{k}": (rng.random((8, 8, 8), dtype=np.float32) if k == "images" else np.arange(8) % 2)
              for s in ("train", "val", "test") for k in ("images", "labels")}
    np.savez(path, **arrays)


def test_comparison_folders_configs_and_tasks_that_cannot_share_a_table_are_refused(tmp_path):
    (tmp_path / "a-file").write_text("mine")
    tree = {**COMPARED, "out_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="a-file' is a file: .* give another out="):
        compare(tree, ["independent"], 1, out=tmp_path / "a-file", dry_run=True)
    assert (tmp_path / "a-file").read_text() == "mine"
    # a folder holding tables of the user's under compare's names: refused, never replaced (review 48b)
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, text in (("compare.md", "my notes\n"), ("compare.csv", "a,b\n"), ("differences.csv", "my,differences\n")):
        (mine / name).write_text(text)
        with pytest.raises(ConfigError, match=rf"'{re.escape(str(mine / name))}' exists and is not a table compare "
                                              r"wrote, which the comparison would replace: move it, or give the "
                                              r"comparison another folder \(out=\)"):
            compare(tree, ["independent"], 1, out=mine, progress=False)
        assert (mine / name).read_text() == text
        (mine / name).unlink()
    from peerdistill.compare import _a_table_compare_wrote

    own = {"compare.md": "\ufeff# peerdistill compare\n\nTest-split", "compare.csv": "setting,model,metric,mean,std,n\n",
           "differences.csv": '"setting","baseline","model","metric","mean_difference"\n', "compare.csv ": ""}
    for name, text in own.items():  # compare's own (an earlier version's, saved again) and an empty file
        (mine / name.strip()).write_text(text)
        assert _a_table_compare_wrote(mine / name.strip()), name
    with pytest.raises(ConfigError, match="config 1 and config 2 are both named 'same'.*its own `name`"):
        compare([{**tree, "name": "same"}, {**tree, "name": "same", "seed": 5}], None, 1, dry_run=True)
    with pytest.raises(ConfigError, match="config 'a.yaml' and config 'b.yaml' are both named 'same'"):
        compare([{**tree, "name": "same"}, {**tree, "name": "same", "seed": 5}], None, 1, dry_run=True,
                config_names=["config 'a.yaml'", "config 'b.yaml'"])
    with pytest.raises(ConfigError, match="config 'a.yaml' is given twice: give it once"):  # (not: rename it)
        compare([{**tree, "name": "same"}] * 2, None, 1, dry_run=True, config_names=["config 'a.yaml'"] * 2)
    unnamed = {**tree, "data": {"kind": "npz", "root": str(tmp_path / "x.npz")}}  # both named x-kd+ml
    with pytest.raises(ConfigError, match="config 1 and config 2 are both named 'x-kd\\+ml' \\(a config without "
                                          "name: is named after its data and preset\\)"):
        compare([unnamed, {**unnamed, "seed": 5}], None, 1, dry_run=True)
    with pytest.raises(ConfigError, match="config_names names 1 configs; 2 were given"):
        compare([{**tree, "name": "a"}, {**tree, "name": "b"}], None, 1, dry_run=True, config_names=["a.yaml"])
    shapes = {"task": "segmentation", "name": "s", "data": {"kind": "shapes"}, "teacher": None,
              "students": [{"arch": "unet", "args": {"width": 4, "depth": 2}}] * 2}
    with pytest.raises(ConfigError, match="configs of one task; these are of 2: classification \\(config 1\\), "
                                          "segmentation \\(config 2\\)"):
        compare([{**tree, "name": "c"}, shapes], ["independent"], 1, dry_run=True)


def test_compare_from_python_checks_its_arguments_as_the_command_does(tmp_path):
    tree = {**COMPARED, "out_dir": str(tmp_path)}
    for presets, message in ((["independent", "independent"], "independent.*twice|repeat|more than once"),
                             ("kd", "presets must be a list of preset names"), ([], "presets must be a list")):
        with pytest.raises(ConfigError, match=message):
            compare(tree, presets, 2, dry_run=True)
    for keyword, value in (("seeds", 2.5), ("seeds", "2"), ("jobs", 1.5), ("folds", 2.5)):
        arguments = {"seeds": 2, keyword: value}
        with pytest.raises(ConfigError, match=f"{keyword} must be a whole number, got"):
            compare(tree, ["kd"], arguments.pop("seeds"), dry_run=True, **arguments)


def test_options_given_twice_and_counts_that_are_not_whole_are_refused(capsys):
    for argv, said in ((["--presets", "kd", "--presets", "ml"], "--presets is given twice"),
                       (["--seeds", "3", "--seeds", "1"], "--seeds is given twice"),
                       (["--seeds", "1.5"], "expected a whole number such as 3, got '1.5'")):
        with pytest.raises(SystemExit) as stop:
            main(["compare", *argv, "--dry-run"])
        assert stop.value.code == 2 and said in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # every command's options alike
        main(["eval", "runs/x", "--split", "test", "--split", "val"])
    assert stop.value.code == 2 and "--split is given twice" in capsys.readouterr().err


def test_one_seed_promises_no_std_and_no_interval(tmp_path, capsys):
    done = compare({**COMPARED, "name": "one", "out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 256}},
                   ["independent", "ml"], 1, progress=False, console=Console(width=250))
    printed = " ".join(capsys.readouterr().out.split())  # (a title wraps at its table's width)
    assert "one run (seed) per setting, so no std" in done.markdown and "sample std" not in done.markdown
    assert "one pair: its difference alone, no interval" in done.markdown
    assert "test accuracy, one run each" in printed and "(one pair: no interval)" in printed


def test_runs_already_there_are_checked_before_training_as_they_trained(tmp_path, monkeypatch):
    """With several configs every run's models are built before any trains: a run to be reused
    or resumed is built as a saved run (checks added since it trained do not stop it), a new
    run, or one --overwrite trains again, as a new config."""
    import peerdistill.comparison_runs as runs

    import shutil

    tree = {**COMPARED, "name": "a", "train": {**COMPARED["train"], "epochs": 1}}
    other = {**tree, "name": "b", "students": [{"arch": "cnn", "args": {"width": 6}}] * 2}
    compare([tree, other], ["kd"], 1, progress=False, out=tmp_path / "c")
    shutil.rmtree(tmp_path / "c" / "b-kd-seed0")
    built = []
    real = runs.build_cohort
    monkeypatch.setattr(runs, "build_cohort", lambda cfg, data, saved=False: built.append((cfg.name, saved)) or
                        real(cfg, data, saved=saved))
    compare([tree, other], ["kd"], 1, dry_run=True, out=tmp_path / "c", console=Console(quiet=True))
    assert built == [("a-kd-seed0", True), ("b-kd-seed0", False)]
    built.clear()
    compare([tree, other], ["kd"], 1, dry_run=True, overwrite=True, out=tmp_path / "c", console=Console(quiet=True))
    assert built == [("a-kd-seed0", False), ("b-kd-seed0", False)]


def test_the_command_names_a_bad_config_by_its_file_or_setting_before_loading_torch(tmp_path):
    """A config mistake in compare is said as train says it, naming the file (it was "config 1"),
    and before torch is imported (as for train: a fraction of the time)."""
    import subprocess
    import sys

    import yaml

    from peerdistill.config import default_config

    good = {**default_config(), "name": "good"}
    bad = {**good, "name": "bad", "train": {"epochs": -1}}
    del bad["distill"]  # (a config without one: its setting is still checked)
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    probe = ("import sys; from peerdistill.cli import main; code = main(sys.argv[1:]); "
             "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded'); sys.exit(code)")
    cases = {
        "files": ([str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml"), "--presets", "kd,ml"],
                  f"error: invalid config '{tmp_path / 'bad.yaml'}':"),
        "setting": ([str(tmp_path / "bad.yaml"), "--setting", "hot:distill.kd_temperature=8", "--presets", "kd"],
                    f"error: invalid setting 'hot' of config '{tmp_path / 'bad.yaml'}':"),
        "default": (["train.epochs=0", "--presets", "ml"], "error: invalid config (the embedded default):"),
    }
    for case, (args, said) in cases.items():
        proc = subprocess.run([sys.executable, "-c", probe, "compare", *args, "--dry-run"], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 2 and said in proc.stderr, (case, proc.stderr)
        assert "'train.epochs': Input should be greater than 0" in proc.stderr, case
        assert proc.stdout.strip() == "torch not loaded", case


def _fake_run(seed, val, test, monitor="ensemble/hd95"):
    """A finished run's metrics as compare reads them, written by hand (no training)."""
    roles = {"teacher": "teacher", "student1": "student", "student2": "student", "student1@head1": "head"}
    return {"setting": "kd", "seed": seed, "run": f"kd-seed{seed}",
            "metrics": {"monitor": monitor, "roles": roles,
                        "val_at_best": {m: {"hd95": v} for m, v in val.items()},
                        "test_at_best": {m: {"hd95": v} for m, v in test.items()}}}


def test_the_best_student_is_the_student_best_on_validation_by_the_monitors_direction():
    """'best student' is chosen per run among the students alone, on the validation figure, and
    for a lower-is-better monitor (HD95) the lowest wins; its cell is then that student's test
    figure, averaged over the runs."""
    import math

    from peerdistill.compare import aggregate

    # seed 0: student2 has the lower val HD95 (3 < 5) though student1 tests better; the teacher,
    # a head and the ensemble are better still on validation but are no students
    seed0 = _fake_run(0, val={"teacher": 1.0, "student1": 5.0, "student2": 3.0, "student1@head1": 0.5, "ensemble": 0.2},
                      test={"teacher": 2.0, "student1": 4.0, "student2": 6.0, "student1@head1": 0.1, "ensemble": 1.0})
    # seed 1: student1 wins on validation (2 < 7) and tests worse than student2
    seed1 = _fake_run(1, val={"teacher": 1.0, "student1": 2.0, "student2": 7.0, "student1@head1": 0.5, "ensemble": 0.2},
                      test={"teacher": 2.0, "student1": 9.0, "student2": 8.0, "student1@head1": 0.1, "ensemble": 1.0})
    best = next(r for r in aggregate([seed0, seed1]) if r["model"] == "best student")
    assert best["values"] == [6.0, 9.0]  # student2's test HD95 in seed 0, student1's in seed 1
    assert best["mean"] == 7.5 and best["std"] == pytest.approx(math.sqrt(((6 - 7.5) ** 2 + (9 - 7.5) ** 2) / 1))


def test_compare_csv_holds_each_runs_value_whole_and_the_mean_and_sample_std():
    import csv
    import io
    import statistics

    from peerdistill.compare import _csv, aggregate

    values = [0.1234567, 0.2345678, 0.3456789]
    runs = [{"setting": "kd", "seed": s, "run": f"kd-seed{s}",
             "metrics": {"monitor": "ensemble/accuracy", "roles": {"student1": "student"},
                         "val_at_best": {"student1": {"accuracy": v}}, "test_at_best": {"student1": {"accuracy": v}}}}
            for s, v in enumerate(values)]
    (row, *_) = [r for r in csv.DictReader(io.StringIO(_csv(aggregate(runs)))) if r["model"] == "student1"]
    # each value as the run gave it (review 54d: rounded to 6 decimals, they did not give the mean)
    assert [float(v) for v in row["values"].split(";")] == values
    assert float(row["mean"]) == pytest.approx(sum(values) / 3, abs=1e-15)
    assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=1e-15)  # sample std (n - 1)
    assert (row["n"], row["runs"]) == ("3", "kd-seed0;kd-seed1;kd-seed2")


def test_overwrite_removes_every_table_of_the_runs_it_replaces(tmp_path):
    from peerdistill.compare import _replace

    for name in ("compare.csv", "compare.md", "differences.csv", "notes.txt"):
        (tmp_path / name).write_text("old")
    _replace([], tmp_path)  # (no runs to mark)
    # the differences too: they pair runs about to be replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_configs_seed_is_the_first_of_its_runs_seeds(tmp_path):
    # --seeds 3 of a config of seed 5: seeds 5, 6 and 7, each in its own directory
    from peerdistill.comparison_runs import plan_runs, settings_of
    from peerdistill.config import validate

    tree = {**COMPARED, "seed": 5, "distill": {"preset": "kd"}}
    plans = plan_runs(settings_of([tree], [validate(tree)], None, None), 3, tmp_path)
    assert [(p.cfg.seed, p.run_dir) for p in plans] == [(s, tmp_path / f"kd-seed{s}") for s in (5, 6, 7)]


def test_a_settings_runs_are_found_by_seed_then_fold_and_only_where_a_run_was_saved(tmp_path):
    """Run directories named by hand: 'a:kd (frozen teacher)' -> a-kd-frozen-teacher-seed...,
    ';' and '/' (which would split compare.csv's lists or make folders) as '-'; found back in
    the order seed, then fold (seed 10 after seed 2), a folder without run.json left out."""
    from peerdistill.comparison_runs import run_name, setting_runs

    assert run_name("a:kd (frozen teacher)", 0, 1) == "a-kd-frozen-teacher-seed0-fold1"
    assert run_name("x;y/z", 3) == "x-y-z-seed3" and run_name("kd", 2, 0) == "kd-seed2-fold0"
    for name in ("kd-seed10-fold1", "kd-seed2-fold1", "kd-seed10-fold0", "kd-seed2-fold0", "kd-seed3-fold0",
                 "kd+ml-seed1-fold0", "kd-seedx", "b-seed10", "b-seed2"):
        (tmp_path / name).mkdir()
        if name != "kd-seed3-fold0":  # begun, never saved
            (tmp_path / name / "run.json").write_text("{}")
    assert [p.name for p in setting_runs(tmp_path, "kd")] == ["kd-seed2-fold0", "kd-seed2-fold1", "kd-seed10-fold0",
                                                              "kd-seed10-fold1"]
    assert [p.name for p in setting_runs(tmp_path, "b")] == ["b-seed2", "b-seed10"]


def test_a_dry_run_reuses_a_finished_run_whose_data_file_has_gone(tmp_path, capsys):
    # a finished run is reused, never trained again: a data file moved away since stops nothing
    import numpy as np

    from tests.conftest import alternating_npz_arrays

    np.savez(tmp_path / "d.npz", **alternating_npz_arrays((24, 8, 8)))
    tree = {**COMPARED, "name": "f", "out_dir": str(tmp_path), "train": {"epochs": 2, "batch_size": 64},
            "data": {"kind": "npz", "root": str(tmp_path / "d.npz")}}
    compare(tree, ["kd"], 1, progress=False)
    (tmp_path / "d.npz").unlink()
    capsys.readouterr()
    compare(tree, ["kd"], 1, progress=False, dry_run=True, console=Console(width=300))
    out = capsys.readouterr().out
    assert re.search(r"kd +│ 0 +│ \S+ +│ reuse", out) and "would stop" not in out, out
    again = compare(tree, ["kd"], 1, progress=False, console=Console(quiet=True))  # as the dry run said (it refused)
    assert again.rows and {r["setting"] for r in again.rows} == {"kd"}
    # a temperature is fitted on the run's own val split: its data is needed after all (review 50i: the dry run
    # said reuse and exited 0, the command then stopped)
    for dry_run in (True, False):
        with pytest.raises(ConfigError, match=r"kd, seed 0: data.root '.*d.npz' does not exist"):
            compare(tree, ["kd"], 1, progress=False, dry_run=dry_run, temperature_scaling=True,
                    console=Console(quiet=True))


def test_presets_are_read_from_a_comma_list_with_spaces_and_a_trailing_comma():
    # '--presets kd, ml,' as typed: two presets, no empty name
    from peerdistill.comparison_configs import parse_presets

    assert parse_presets("kd, ml,") == ["kd", "ml"] and parse_presets(None) is None
    for slip in ("kd,,ml", ",kd", ","):  # an empty name between commas: a preset left out by mistake?
        with pytest.raises(ConfigError, match=f"--presets '{slip}' holds an empty name between commas"):
            parse_presets(slip)


def test_a_finished_run_without_its_metrics_or_a_folder_with_only_its_config_is_not_reused(tmp_path, capsys):
    # A finished run whose metrics.json is gone has no test figures to reuse: named, its models kept
    # (a finished run is not resumed, nor silently trained over). A folder holding only a config.yaml
    # and run.json (no resume checkpoint) has nothing to continue from: it trains again.
    tree = {"name": "g", "out_dir": str(tmp_path), "deterministic": True, "teacher": None,
            "students": COMPARED["students"], "train": {"epochs": 1, "batch_size": 128}}
    whole = compare(tree, ["independent"], 2, progress=False)
    runs = tmp_path / "g-compare"
    (runs / "independent-seed0" / "metrics.json").unlink()
    stopped = runs / "independent-seed1"  # as a run killed in its first epoch leaves it: no checkpoint yet
    for name in list(stopped.iterdir()):
        if name.name not in ("config.yaml", "run.json"):
            shutil.rmtree(name) if name.is_dir() else name.unlink()
    meta = json.loads((stopped / "run.json").read_text())
    (stopped / "run.json").write_text(json.dumps({**meta, "status": "running"}))
    said = "seed0' is a finished run without its metrics.json: restore the file, or delete the folder to train that run"
    capsys.readouterr()
    with pytest.raises(RunDirError, match=re.escape(said)):  # listed, then refused, as the command refuses it
        compare(tree, ["independent"], 2, progress=False, dry_run=True, console=Console(width=1000))
    assert said in " ".join(capsys.readouterr().out.split())  # the dry run's row says refused, why and what to do
    with pytest.raises(RunDirError, match=re.escape(said)):
        compare(tree, ["independent"], 2, progress=False)
    assert sorted(p.name for p in stopped.iterdir()) == ["config.yaml", "run.json"]  # refused before any training
    shutil.rmtree(runs / "independent-seed0")  # as the message advises
    capsys.readouterr()
    compare(tree, ["independent"], 2, progress=False, dry_run=True, console=Console(width=250))
    plan = capsys.readouterr().out
    assert re.search(r"independent +│ 0 +│ \S+seed0 +│ train", plan), plan
    assert re.search(r"independent +│ 1 +│ \S+seed1 +│ train again \(it stopped before its first checkpoint\)",
                     plan), plan
    again = compare(tree, ["independent"], 2, progress=False)
    printed = capsys.readouterr().err
    assert "independent, seed 1: training again run" in printed and "resuming" not in printed
    assert jsonable(again.rows) == jsonable(whole.rows)  # deterministic: the same figures as the first time


def test_a_setting_may_set_what_the_configs_teachers_and_heads_make_read():
    # Whether a setting's key is read depends on the config's models: two teachers (teacher plus
    # teachers) read distill.teacher_weighting, a student with heads reads distill.self_alpha.
    from peerdistill.comparison_configs import variant_trees

    cnn = {"arch": "cnn", "args": {"width": 4}}
    two = {**COMPARED, "teachers": [{"arch": "cnn", "args": {"width": 8}}]}
    assert variant_trees([two], ["w:distill.teacher_weighting=confidence"], presets=["kd", "kd+ml"])
    with pytest.raises(ConfigError, match="teacher_weighting.*where several teachers teach \\(1 here\\)"):
        variant_trees([COMPARED], ["w:distill.teacher_weighting=confidence"], presets=["kd", "kd+ml"])
    heads = {**COMPARED, "students": [{**cnn, "args": {"width": 4, "depth": 3}, "heads": ["features.2"]}, cnn]}
    assert variant_trees([heads], ["s:distill.self_alpha=0.3"], presets=["kd", "ml"])
    with pytest.raises(ConfigError, match="self_alpha"):
        variant_trees([COMPARED], ["s:distill.self_alpha=0.3"], presets=["kd", "ml"])


def test_a_teacher_file_is_the_same_only_with_the_same_tensors_under_the_same_names(tmp_path):
    # A frozen run is reused only while its source still holds the very teacher it learned from:
    # a file with one more tensor (another architecture's) is another teacher.
    from peerdistill.comparison_runs import _same_tensors

    weight = {"w": torch.arange(4.0)}
    save_file(weight, str(tmp_path / "a.safetensors"))
    save_file({"w": torch.arange(4.0)}, str(tmp_path / "same.safetensors"))
    save_file({**weight, "extra": torch.zeros(1)}, str(tmp_path / "more.safetensors"))
    save_file({"w": torch.arange(4.0) + 1}, str(tmp_path / "other.safetensors"))
    assert _same_tensors(tmp_path / "a.safetensors", tmp_path / "same.safetensors")
    assert not _same_tensors(tmp_path / "a.safetensors", tmp_path / "more.safetensors")
    assert not _same_tensors(tmp_path / "a.safetensors", tmp_path / "other.safetensors")


def test_a_config_without_a_name_keeps_its_own_name_whatever_preset_a_comparison_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("distill: {preset: ml}\nteacher: null\nstudents: [{arch: cnn}, {arch: cnn}]\n")
    assert main(["compare", "my.yaml", "--presets", "independent,ml", "--seeds", "1", "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert "runs/digits-ml-compare/independent-seed0" in said and "digits-independent" not in said


def test_temporary_table_files_a_killed_compare_left_are_removed_when_old(tmp_path):
    import os
    import time

    from peerdistill.compare import STALE_SECONDS, _remove_stale_table_writes

    old, recent, other = (tmp_path / ".compare.csv.ab12.tmp", tmp_path / ".compare.md.cd34.tmp",
                          tmp_path / ".notes.txt.ef56.tmp")
    for path in (old, recent, other):
        path.write_text("half a table")
    long_ago = time.time() - STALE_SECONDS - 60
    os.utime(old, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    _remove_stale_table_writes(tmp_path)
    assert not old.exists() and recent.exists() and other.exists()  # (recent: maybe another compare's, writing now)


def test_a_run_is_not_reused_once_its_archive_or_teacher_file_holds_something_else(tmp_path):
    """Runs were reused in silence after the archive at data.root, or the file a frozen teacher was
    loaded from, was replaced under the same name: a table of runs trained on two data sets."""
    import numpy as np

    from peerdistill.models import SmallCNN
    from tests.conftest import _blobs

    def archive(seed):
        arrays = {}
        for split, n, offset in (("train", 96, 0), ("val", 32, 1), ("test", 32, 2)):
            x, y = _blobs(n, seed * 10 + offset)
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = (x[:, 0] * 60 + 100).clip(0, 255).astype(np.uint8), y
        np.savez(tmp_path / "blobs.npz", **arrays)

    archive(0)
    torch.manual_seed(0)
    save_file(SmallCNN(1, 3, width=8).state_dict(), str(tmp_path / "t.safetensors"))
    tree = {**COMPARED, "name": "f", "out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 64},
            "data": {"kind": "npz", "root": str(tmp_path / "blobs.npz")},
            "teacher": {"arch": "cnn", "args": {"width": 8}, "frozen": True, "checkpoint": str(tmp_path / "t.safetensors")}}
    first = compare(tree, ["kd"], 1, progress=False)
    run = first.directory / "kd-seed0"
    assert json.loads((run / "run.json").read_text())["checkpoint_sha256"]["teacher"]
    compare(tree, ["kd"], 1, progress=False)  # the same files: reused
    torch.manual_seed(1)
    save_file(SmallCNN(1, 3, width=8).state_dict(), str(tmp_path / "t.safetensors"))  # a teacher trained again
    with pytest.raises(RunDirError, match=r"kd-seed0' was trained from another teacher checkpoint than the file its "
                                          r"config names holds now .*delete '.*kd-seed0' to train it again"):
        compare(tree, ["kd"], 1, progress=False)
    torch.manual_seed(0)
    save_file(SmallCNN(1, 3, width=8).state_dict(), str(tmp_path / "t.safetensors"))  # put back
    compare(tree, ["kd"], 1, progress=False)
    archive(1)  # other images under the same name
    with pytest.raises(RunDirError, match=r"kd-seed0' was trained on another version of '.*blobs.npz' \(its SHA-256 "
                                          r"differs from run.json's data_info.sha256\): its figures are not of this data"):
        compare(tree, ["kd"], 1, progress=False)


def test_tables_rewritten_beside_an_earlier_report_say_it_is_of_the_earlier_ones(tmp_path):
    import io

    tree = {**COMPARED, "name": "r", "out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 256}}
    first = compare(tree, ["independent"], 1, progress=False)
    write_report(first.directory)
    note = f"note: '{first.directory / 'report.html'}' is of the tables as they were before: peerdistill report"
    printed = io.StringIO()
    compare(tree, ["independent"], 1, progress=False, console=Console(file=printed, width=300))
    assert note not in " ".join(printed.getvalue().split())  # the same tables: the report still holds (review 47b)
    printed = io.StringIO()
    compare(tree, ["independent"], 1, progress=False, temperature_scaling=True,
            console=Console(file=printed, width=300))
    assert note in " ".join(printed.getvalue().split())


def test_what_choosing_a_temperature_warned_of_is_listed_in_compare_md(tmp_path, monkeypatch):
    """Review 50h: a temperature stuck at its search bound was said on the console alone, while
    compare.md showed its mean beside real fits."""
    import peerdistill.runs as runs
    from peerdistill.errors import warn_user

    real = runs.evaluate_run

    def at_the_bound(*args, **kwargs):
        scores = real(*args, **kwargs)
        warn_user("the fitted temperature of student1 0.05 is at the end of the range searched")
        return scores

    monkeypatch.setattr(runs, "evaluate_run", at_the_bound)
    tree = {**COMPARED, "name": "t", "out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 256}}
    with pytest.warns(UserWarning, match="independent-seed0: the fitted temperature"):
        result = compare(tree, ["independent"], 2, progress=False, temperature_scaling=True,
                         console=Console(quiet=True))
    listed = ("as the threshold or temperature was chosen on val: the fitted temperature of student1 0.05 is at the "
              "end of the range searched (2 of 2 runs)")
    assert f"- {listed}" in result.markdown
    write_report(result.directory)  # and on the comparison's page, which reads it from compare.md
    page = (result.directory / "report.html").read_text()
    assert page.count("was chosen on val: ") == 1 and f"<li>{listed}</li>" in page


def _image_folder(root, rng, per_class=12):
    import numpy as np
    from PIL import Image

    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(root / cls / f"{i}.png")


def _folder_run(tmp_path, root, out_dir):
    return {"name": "g", "out_dir": str(out_dir), "teacher": None, "distill": {"preset": "independent"},
            "students": [{"arch": "cnn", "args": {"width": 4}}], "train": {"epochs": 1, "batch_size": 16},
            "data": {"kind": "image_folder", "root": str(root), "image_size": [8, 8], "grey": True}}


def test_a_run_is_not_reused_once_its_image_folder_holds_other_files(tmp_path):
    """An image folder changed under the same data.root (files added, removed or replaced by others
    of another size): its runs were reused in silence. Fingerprinted by a listing (names, sizes)."""
    import numpy as np
    from PIL import Image

    from peerdistill.config import DataSpec
    from peerdistill.data.fingerprint import data_fingerprint

    _image_folder(tmp_path / "imgs", np.random.default_rng(0))
    tree = _folder_run(tmp_path, tmp_path / "imgs", tmp_path / "runs")
    first = compare(tree, None, 1, progress=False)
    held = json.loads((first.directory / "independent-seed0" / "run.json").read_text())["data_fingerprint"]
    assert held == data_fingerprint(DataSpec(kind="image_folder", root=str(tmp_path / "imgs")))
    assert held.startswith("folder:")
    compare(tree, None, 1, progress=False)  # the same files: reused
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "imgs" / "a" / "12.png")  # one more image
    with pytest.raises(RunDirError, match=r"independent-seed0' was trained on another version of '.*imgs' \(the names "
                                          r"or sizes of its image and annotation files differ from run.json's "
                                          r"data_fingerprint\)"):
        compare(tree, None, 1, progress=False)
    one, other = (DataSpec(kind="npz", root=str(tmp_path / "imgs" / "a" / f"{i}.png")) for i in (0, 1))
    assert data_fingerprint(one) != data_fingerprint(other)  # a file: its SHA-256
    assert data_fingerprint(one) == hashlib.sha256((tmp_path / "imgs" / "a" / "0.png").read_bytes()).hexdigest()
    assert data_fingerprint(DataSpec()) is None
    assert data_fingerprint(DataSpec(kind="npz", root=str(tmp_path / "none"))) is None


def _csv_of_images(tmp_path, count: int) -> list[str]:
    """t.csv listing ``count`` random 8x8 images in img/, two classes alternating; its lines."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(2)
    (tmp_path / "img").mkdir()
    lines = ["path,label"]
    for i in range(count):
        Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "img" / f"{i}.png")
        lines.append(f"img/{i}.png,{i % 2}")
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    return lines


def test_a_csv_runs_fingerprint_of_the_earlier_form_is_compared_as_the_tables_sha256(tmp_path):
    """Review 45a: a CSV's fingerprint was its bare SHA-256 before its images were listed too; the
    comparisons finished then were all refused as trained on another version of the table."""
    lines = _csv_of_images(tmp_path, 32)
    tree = {**_folder_run(tmp_path, tmp_path / "t.csv", tmp_path / "runs")}
    tree["data"] = {**tree["data"], "kind": "csv"}
    first = compare(tree, None, 1, progress=False)
    run_json = first.directory / "independent-seed0" / "run.json"
    meta = json.loads(run_json.read_text())
    meta["data_fingerprint"] = hashlib.sha256((tmp_path / "t.csv").read_bytes()).hexdigest()  # as recorded then
    run_json.write_text(json.dumps(meta))
    compare(tree, None, 1, progress=False)  # the same table: reused
    (tmp_path / "t.csv").write_text("\n".join(lines[:-1]) + "\n")  # a row fewer
    with pytest.raises(RunDirError, match=r"independent-seed0' was trained on another version of '.*t.csv' \(its "
                                          r"SHA-256 differs from run.json's data_fingerprint\)"):
        compare(tree, None, 1, progress=False)


def test_runs_kept_inside_the_data_folder_and_stray_files_leave_the_fingerprint_alone(tmp_path):
    """Review 44a: a project folder holding its images and its runs (out_dir inside data.root)
    had every run refused by the next compare (the runs' own files were listed), as had one
    where Finder left a .DS_Store or a notes file appeared: only image and annotation files
    count, outside any run's folder and a comparison's tables."""
    import numpy as np
    from PIL import Image

    _image_folder(tmp_path / "proj", np.random.default_rng(1))
    tree = _folder_run(tmp_path, tmp_path / "proj", tmp_path / "proj" / "runs")
    first = compare(tree, None, 1, progress=False)
    write_report(first.directory)
    (tmp_path / "proj" / ".DS_Store").write_bytes(b"\0" * 10)
    (tmp_path / "proj" / "a" / "notes.txt").write_text("scanner B from March")
    (tmp_path / "proj" / "a" / "Thumbs.db").write_bytes(b"\0")
    again = compare(tree, None, 1, progress=False)  # reused, not refused
    assert again.directory == first.directory
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "proj" / "b" / "extra.jpg")  # an image does count
    with pytest.raises(RunDirError, match="was trained on another version of"):
        compare(tree, None, 1, progress=False)
    # the dry run's table is the list its hint points to: the hint goes, and the folder to delete is
    # there whole, folded over lines rather than cut (review 44a)
    printed = io.StringIO()
    with pytest.raises(RunDirError, match="was trained on another version of") as refused:  # after the table
        compare(tree, None, 1, progress=False, dry_run=True, console=Console(file=printed, width=100))
    assert "lists every run so refused" not in str(refused.value)  # (this is that list)
    table = printed.getvalue()
    assert "trained on another version" in " ".join(table.split()) and "lists every run so refused" not in " ".join(table.split())
    whole = "".join(line.strip(" │┃") for line in table.splitlines())
    assert f"delete '{first.directory / 'independent-seed0'}'" in whole.replace(" ", "").replace("delete'", "delete '")


def test_a_folders_fingerprint_follows_linked_folders_and_counts_dicom_names(tmp_path):
    """Review 44g: a class folder linked into data.root was not walked, so an image added there
    went unseen; a data root holding a run.json listed nothing and so saw no change at all."""
    import numpy as np

    from peerdistill.config import DataSpec
    from peerdistill.data.fingerprint import data_fingerprint

    _image_folder(tmp_path / "store", np.random.default_rng(3), per_class=2)
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a").symlink_to(tmp_path / "store" / "a", target_is_directory=True)
    (tmp_path / "root" / "loop").symlink_to(tmp_path / "root", target_is_directory=True)  # walked once
    spec = DataSpec(kind="image_folder", root=str(tmp_path / "root"))
    held = data_fingerprint(spec)
    (tmp_path / "store" / "a" / "2.png").write_bytes((tmp_path / "store" / "a" / "0.png").read_bytes())
    assert data_fingerprint(spec) != held
    held = data_fingerprint(spec)
    # under a DICOM export's name, a file counts by the DICM mark after its preamble (one small read);
    # a README, a LICENSE or a rotated log.1 beside the images does not (review 45a)
    for name in ("README", "LICENSE", "log.1"):
        (tmp_path / "store" / "a" / name).write_text("notes, edited now and then")
    assert data_fingerprint(spec) == held
    (tmp_path / "store" / "a" / "1.2.840.113619.2.5").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 68)
    assert data_fingerprint(spec) != held
    held = data_fingerprint(spec)
    # a DICOM data set without the preamble
    (tmp_path / "store" / "a" / "1.2.840.99.1").write_bytes(b"\x08\x00\x16\x00" + b"\0" * 196)
    assert data_fingerprint(spec) != held  # (training reads it: review 45e)
    # the form recorded by the previous version counted such names unread, README included: a
    # fingerprint of that form is compared as it was made (review 45e: every run refused otherwise)
    before = data_fingerprint(spec, like="files:")
    assert before.startswith("files:") and before != data_fingerprint(spec)
    (tmp_path / "store" / "a" / "LICENSE").write_text("notes, edited now and THEN")  # the same size: unseen alike
    assert data_fingerprint(spec, like="files:") == before
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "run.json").write_text("{}")
    assert data_fingerprint(DataSpec(kind="image_folder", root=str(tmp_path / "bare"))) is None


def test_a_csv_runs_fingerprint_covers_the_images_it_lists(tmp_path):
    """Review 44a: for kind csv only the table was hashed, so runs were reused after every image
    it lists was replaced by another."""
    import numpy as np
    from PIL import Image

    from peerdistill.config import DataSpec
    from peerdistill.data.fingerprint import data_fingerprint

    _csv_of_images(tmp_path, 24)
    spec = DataSpec(kind="csv", root=str(tmp_path / "t.csv"), image_size=[8, 8], grey=True)
    held = data_fingerprint(spec)
    assert held.startswith("csv:")
    (tmp_path / "unlisted.png").write_bytes(b"x")  # beside the table, listed nowhere: no change
    assert data_fingerprint(spec) == held
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "img" / "3.png")  # a listed image replaced
    assert data_fingerprint(spec) != held
    (tmp_path / "img" / "3.png").unlink()  # a listed image gone
    gone = data_fingerprint(spec)
    assert gone != held and gone.startswith("csv:")


def test_the_warnings_runs_began_with_are_listed_once_in_compare_md_and_on_the_page(tmp_path, capsys, monkeypatch):
    """Review 47b: validation images identical to training ones were said on each run's console
    alone; compare.md and the comparison page, what goes into a paper, said nothing."""
    import numpy as np

    from tests.conftest import _blobs

    (x, y), (xv, yv), (xt, yt) = (_blobs(n, s) for n, s in ((96, 0), (32, 1), (32, 2)))
    xv[:2] = x[:2]  # two validation images that are training images
    np.savez(tmp_path / "d.npz", train_images=x, train_labels=y, val_images=xv, val_labels=yv, test_images=xt,
             test_labels=yt)
    tree = {**COMPARED, "name": "w", "out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 256},
            "data": {"kind": "npz", "root": str(tmp_path / "d.npz")}}
    import peerdistill.comparison_runs
    import peerdistill.engine.artifacts

    reads = []  # each run.json read once for the tables (it was twice, and metrics.json again, which run_all read)
    real = peerdistill.comparison_runs.read_json
    monkeypatch.setattr(peerdistill.comparison_runs, "read_json", lambda path: reads.append(Path(path)) or real(path))
    printed = io.StringIO()
    result = compare(tree, ["independent", "kd"], 1, progress=False, console=Console(file=printed, width=300))
    assert sorted(f"{p.parent.name}/{p.name}" for p in reads) == ["independent-seed0/run.json", "kd-seed0/run.json"]
    said = ("2 of 32 validation inputs are identical to training inputs ('sample 0 of the val split' = 'sample 0 "
            "of the train split', 'sample 1 of the val split' = 'sample 1 of the train split'): the epoch kept as best "
            "is chosen partly on images the models trained on")
    markdown = " ".join(result.markdown.split())
    assert f"### Warnings the runs gave - {said}" in markdown and "(2 of 2 runs)" in markdown
    assert markdown.count(said) == 1
    # and what they warned of as training ended: the kept weights give every validation image one class
    assert "- as training ended: with the weights kept as the best (epoch 1), teacher predicts" in markdown
    # the online teacher trained alike in both presets: its figures differ by the epoch each run's
    # monitor picked (review 47b), so it is left out of the paired differences (review 49b)
    assert "The teacher columns: `teacher` trained alike in every setting" in markdown
    assert "it is left out of the paired differences" in markdown
    assert {d["model"] for d in result.differences} == {"student1", "student2", "best student", "ensemble"}
    assert "teacher," not in (result.directory / "differences.csv").read_text()
    assert "| setting | student1 | student2 | best student | ensemble |" in result.markdown
    assert "distill.rampup_epochs (1) is not shorter than train.epochs (1)" in markdown  # kd's alone, named
    assert "of their weight on average over training (and 100% at its end), so this run distils little; train longer " \
           "or lower distill.rampup_epochs (1 of 2 runs: kd-seed0)" in markdown
    assert "note: the runs gave 3 warning(s), listed in compare.md" in " ".join(printed.getvalue().split())
    # the page: each run.json read once (review 53b: three times, for its notes, warnings and costs), and
    # each metrics.json once (it was again for the warnings)
    reads.clear()
    for module in (peerdistill.comparison_runs, peerdistill.engine.artifacts):
        monkeypatch.setattr(module, "read_json", lambda path: reads.append(Path(path)) or real(path))
    write_report(result.directory)
    assert sorted(f"{p.parent.name}/{p.name}" for p in reads if p.name in ("run.json", "metrics.json")) == [
        "independent-seed0/metrics.json", "independent-seed0/run.json", "kd-seed0/metrics.json", "kd-seed0/run.json"]
    page = " ".join((result.directory / "report.html").read_text().split())
    assert "Warnings the runs gave" in page and said.replace("'", "&#x27;") in page
    assert "Left out: <code>teacher</code>, which trained alike in every setting" in page


def test_the_warnings_runs_gave_as_training_ended_are_listed_with_those_it_began_with(tmp_path):
    """metrics.json's ending_warnings (a best epoch chosen by nothing) went to the console alone."""
    from peerdistill.comparison_runs import run_records, warning_lines, warnings_of_runs

    for name, began, ended in (("a", ["dup"], ["flat"]), ("b", ["dup"], []), ("c", [], ["flat", "one class"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"training_warnings": began}))
        (tmp_path / name / "metrics.json").write_text(json.dumps({"ending_warnings": ended} if ended else {}))
    (tmp_path / "d").mkdir()  # no files yet: nothing to list, no error
    (tmp_path / "e").mkdir()  # files edited by hand: neither a list nor a mapping (review 48g)
    (tmp_path / "e" / "run.json").write_text(json.dumps({"training_warnings": "dup"}))
    (tmp_path / "e" / "metrics.json").write_text(json.dumps([1, 2]))
    def warnings_of(paths):
        metrics = {p: json.loads((p / "metrics.json").read_text()) for p in paths if (p / "metrics.json").is_file()}
        return warnings_of_runs(paths, run_records(paths), metrics)

    assert warnings_of([tmp_path / "e"]) == []
    given = warnings_of([tmp_path / n for n in "abcd"])
    assert given == [("dup", ["a", "b"]), ("as training ended: flat", ["a", "c"]),
                     ("as training ended: one class", ["c"])]
    assert warning_lines(given, 4)[1] == "as training ended: flat (2 of 4 runs: a, c)"


def test_a_run_stopped_before_its_first_checkpoint_is_said_to_be_trained_again(tmp_path):
    """Review 47b: it was trained again with the words of a new run, its folder replaced unsaid."""
    tree = {**COMPARED, "name": "s", "out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 256}}
    first = compare(tree, ["independent"], 1, progress=False, console=Console(file=io.StringIO()))
    run = first.directory / "independent-seed0"
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "status": "stopped"}))  # as Ctrl-C in epoch 1 leaves it
    (run / "checkpoints" / "last.pt").unlink(missing_ok=True)  # (run_files.RESUME_FILE: none kept yet)
    planned = io.StringIO()
    compare(tree, ["independent"], 1, progress=False, dry_run=True, console=Console(file=planned, width=300))
    assert "train again (it stopped before its first checkpoint)" in " ".join(planned.getvalue().split())
    printed = io.StringIO()
    compare(tree, ["independent"], 1, progress=False, console=Console(file=printed, width=300))
    assert f"independent, seed 0: training again run {run} (it stopped before its first checkpoint)" in \
        " ".join(printed.getvalue().split())
    assert json.loads((run / "run.json").read_text())["status"] == "complete"


def test_only_teachers_whose_figures_match_epoch_by_epoch_are_counted_as_trained_alike():
    """Review 49b: the teacher column of the paired differences showed an interval excluding 0
    where the teacher trained alike and only the monitor's epoch differed. Judged on the runs'
    figures: equal epoch by epoch over the epochs both runs have (one stopped early) is alike;
    a teacher a setting taught (its own kl term) or trained otherwise is not, nor is a frozen one."""
    from types import SimpleNamespace

    from peerdistill.compare import teachers_trained_alike

    def plan(frozen=False):
        teachers = [SimpleNamespace(frozen=frozen)]
        return SimpleNamespace(cfg=SimpleNamespace(all_teachers=lambda: teachers,
                                                   member_names=lambda: ["teacher", "student1"]))

    def run(setting, seed, teacher_losses, student_loss=1.0):
        epochs = [{"epoch": e + 1, "seconds": 0.1 * (e + 1), "lr/teacher": 0.01, "val/teacher/accuracy": 0.5 + e / 10,
                   "train/loss/student1/kl<-teacher": student_loss, **loss} for e, loss in enumerate(teacher_losses)]
        return {"setting": setting, "seed": seed, "fold": None, "metrics": {"epochs": epochs}}

    ce = [{"train/loss/teacher/ce": 2.0}, {"train/loss/teacher/ce": 1.5}]
    alike = [run("independent", s, ce) for s in (0, 1)] + [run("kd", s, ce[:1], student_loss=0.3) for s in (0, 1)]
    assert teachers_trained_alike([plan()], alike) == ["teacher"]
    taught = [{**epoch, "train/loss/teacher/kl<-student1": 0.2} for epoch in ce]
    assert teachers_trained_alike([plan()], alike[:3] + [run("kd", 1, taught)]) == []
    other = [{"train/loss/teacher/ce": 2.0}, {"train/loss/teacher/ce": 1.4}]  # another learning rate, say
    assert teachers_trained_alike([plan()], alike[:2] + [run("kd", s, other) for s in (0, 1)]) == []
    assert teachers_trained_alike([plan(frozen=True)], alike) == []
    assert teachers_trained_alike([plan()], alike[:2]) == []  # one setting: nothing to compare
    assert teachers_trained_alike([plan()], [alike[0], run("kd", 1, ce)]) == []  # no seed run by both
    # the last digits of a sum another thread count gave (review 50h): alike still
    nudged = [{"train/loss/teacher/ce": 2.0 + 1e-8}, {"train/loss/teacher/ce": 1.5}]
    assert teachers_trained_alike([plan()], alike[:2] + [run("kd", s, nudged) for s in (0, 1)]) == ["teacher"]


def test_a_reused_run_scored_again_needs_its_data_not_its_teachers_file(tmp_path):
    """Review 50j: with --temperature-scaling a finished run whose frozen teacher's file had gone
    was refused, though scoring it reads its own saved weights alone."""
    fast = {"epochs": 1, "batch_size": 256}
    first = compare({**COMPARED, "name": "s", "out_dir": str(tmp_path), "train": fast}, ["independent"], 1,
                    progress=False, console=Console(quiet=True))
    checkpoint = tmp_path / "teacher.safetensors"
    shutil.copy(first.directory / "independent-seed0" / "models" / "teacher.safetensors", checkpoint)
    tree = {**COMPARED, "name": "f", "out_dir": str(tmp_path), "train": fast,
            "teacher": {**COMPARED["teacher"], "frozen": True, "checkpoint": str(checkpoint)}}
    compare(tree, ["kd"], 1, progress=False, console=Console(quiet=True))
    checkpoint.unlink()
    for dry_run in (True, False):
        again = compare(tree, ["kd"], 1, progress=False, dry_run=dry_run, temperature_scaling=True,
                        console=Console(quiet=True))
    assert any(r["metric"] == "cal_temperature" for r in again.rows)


def test_runs_that_trained_with_other_threads_or_versions_are_said_to_above_the_tables(tmp_path):
    """Review 51d: reused runs may come from another machine or another --jobs, which changes
    figures too; nothing said so."""
    tree = {**COMPARED, "name": "env", "out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 256}}
    first = compare(tree, ["independent"], 2, progress=False, console=Console(quiet=True))
    assert "did not all train alike" not in first.markdown
    run_json = first.directory / "independent-seed1" / "run.json"
    meta = json.loads(run_json.read_text())
    threads = meta["environment"]["threads"]
    meta["environment"].update(threads=threads + 3, torch="2.10.0")
    run_json.write_text(json.dumps(meta))
    printed = io.StringIO()
    again = compare(tree, ["independent"], 2, progress=False, console=Console(file=printed, width=400))
    said = (f"The runs did not all train alike (torch: {torch.__version__} (1 run), 2.10.0 (1 run); threads: "
            f"{threads} (1 run), {threads + 3} (1 run)): their figures differ by that as well as by their settings")
    from peerdistill.comparison_runs import environments_apart, run_records

    def environments_of(paths):
        return environments_apart(run_records(paths))

    # of three, the odd one out named (review 51k)
    shutil.copytree(first.directory / "independent-seed0", tmp_path / "third")
    assert f"threads: {threads} (2 runs), {threads + 3} (1 run: independent-seed1)" in environments_of(
        [first.directory / "independent-seed0", run_json.parent, tmp_path / "third"])
    # a run resumed with other threads (compare run again with another --jobs: review 51l)
    resumed = json.loads((tmp_path / "third" / "run.json").read_text())
    resumed["resumed_at"] = [{"epoch": 2, "step": 0, "processes": 1, "environment": {"threads": threads + 1}}]
    (tmp_path / "third" / "run.json").write_text(json.dumps(resumed))
    assert f"threads: {threads} then {threads + 1} (1 run: third)" in environments_of([tmp_path / "third"])
    resumed["resumed_at"].append({"epoch": 3, "step": 0, "processes": 1, "environment": {"threads": threads}})
    (tmp_path / "third" / "run.json").write_text(json.dumps(resumed))  # and back (review 51m)
    assert f"threads: {threads} then {threads + 1} then {threads} (1 run" in environments_of([tmp_path / "third"])
    assert said in again.markdown and f"note: {said}" in " ".join(printed.getvalue().split())


def test_one_config_file_given_twice_under_two_spellings_is_told_to_be_given_once(tmp_path, capsys, monkeypatch):
    """Review 51l: ./a.yaml beside a.yaml was told to give each config its own name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({**COMPARED, "name": "a"}))
    assert main(["compare", "a.yaml", "./a.yaml", "--dry-run"]) == 2
    assert ("compare: config 'a.yaml' is given twice (also as './a.yaml'): give it once (its runs over several "
            "seeds: --seeds)") in " ".join(capsys.readouterr().err.split())


def test_hd95_has_no_paired_differences_between_runs_as_eval_gives_none(tmp_path, capsys):
    """Each run's HD95 is over the images its model found the class in (review 52a: a student that
    missed the hard images "won" 1/1 in compare, where eval --baseline leaves HD95 out)."""
    from peerdistill.html_report import write_report
    from peerdistill.paired import differences

    rows = [{"setting": s, "model": "student1", "metric": m, "values": [v], "runs": [f"{s}-seed0"]}
            for s, v in (("a", 0.5), ("b", 0.6)) for m in ("dice", "hd95", "hd95_polyp", "tta_hd95")]
    assert [d["metric"] for d in differences(rows, "a")] == ["dice"]
    seg = {"task": "segmentation", "out_dir": str(tmp_path), "name": "s", "teacher": None,
           "data": {"kind": "shapes", "shapes_counts": [8, 4, 4]}, "train": {"epochs": 1, "batch_size": 4},
           "students": [{"arch": "unet", "args": {"width": 2, "depth": 1}}] * 2}
    result = compare(seg, ["independent", "ml"], 1, progress=False)
    said = " ".join(capsys.readouterr().out.split())
    assert {d["metric"] for d in result.differences} >= {"dice", "iou"}
    assert not any(d["metric"].startswith("hd95") for d in result.differences)
    note = ("hd95 is left out of the paired differences: each model's is averaged over the images it found the class "
            "in, so two models' figures are over different images, and a model that misses the hardest images would "
            "look better for it (the `missed` column says how often each did)")
    assert f"{note}; differences.csv holds the others'." in " ".join(result.markdown.split())
    assert "hd95" not in (result.directory / "differences.csv").read_text()
    assert "hd95 is left out" not in said  # (the console's table is of the monitor's, dice)
    # a comparison of an earlier version paired HD95 too: its page leaves them out all the same
    with (result.directory / "differences.csv").open("a") as table:
        table.write("ml,independent,student1,hd95,-2.0,-3.0,-1.0,1,1,0,\n")
    page = " ".join(write_report(result.directory).read_text().split())
    hd95 = page[page.index("<h2>test hd95"):]
    assert "hd95 is left out of the paired differences: each model" in hd95 and "1/1 better" not in hd95
    # what the columns mean, as on the run pages (review 52h: a pixel sensitivity read as per polyp)
    assert "sensitivity: TP / (TP + FN) of the split&#x27;s pixels pooled: the share of the foreground&#x27;s pixels" in page
    assert "dice: per image 2TP / (2TP + FP + FN)" in page and "f1: the Dice of the split&#x27;s pixels pooled" in page


def test_an_hd95_monitor_still_names_the_settings_left_out_once(tmp_path):
    """Review 52i: with the monitor unpaired, no caption named a setting on another split, and the note was lost."""
    import io

    from rich.console import Console

    seg = {"task": "segmentation", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml"},
           "data": {"kind": "shapes", "shapes_counts": [8, 4, 4]}, "students": [{"arch": "unet", "args": {"width": 2, "depth": 1}}] * 2,
           "train": {"epochs": 1, "batch_size": 4, "monitor": "ensemble/hd95"}}
    configs = [{**seg, "name": "a"}, {**seg, "name": "b", "data": {**seg["data"], "split_seed": 1}},
               {**seg, "name": "c", "train": {**seg["train"], "batch_size": 2}}]
    printed = io.StringIO()
    result = compare(configs, None, 1, progress=False, console=Console(file=printed, width=200))
    note = "Left out, having no run of the same seed on the same data split as `a`: `b`."
    assert result.markdown.count(note) == 1 and printed.getvalue().count(note) == 1
    assert "hd95 is left out of the paired differences" in " ".join(printed.getvalue().split())


def test_a_comparison_of_runs_with_a_region_of_interest_says_only_its_pixels_count(tmp_path, capsys):
    """compare's console and compare.md say, as train, eval and the report do, that the figures
    count only the pixels inside data.roi (DRIVE's field of view): published DRIVE figures do too."""
    import numpy as np
    from PIL import Image

    from peerdistill.comparison_context import pixels_counted

    root = tmp_path / "drive"
    for folder in ("images", "manual", "fov"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(21, 31):
        Image.fromarray(rng.integers(0, 255, (16, 12, 3), dtype=np.uint8)).save(root / "images" / f"{i}_training.tif")
        vessel = np.zeros((16, 12), np.uint8)
        vessel[:, 4:6] = 255
        Image.fromarray(vessel).save(root / "manual" / f"{i}_manual1.gif")
        fov = np.zeros((16, 12), np.uint8)
        fov[2:14, 1:11] = 255
        Image.fromarray(fov).save(root / "fov" / f"{i}_training_mask.gif")
    seg = {"task": "segmentation", "out_dir": str(tmp_path / "out"), "name": "fov", "teacher": None,
           "data": {"kind": "folders", "root": str(root), "images": "images", "masks": "manual", "roi": "fov",
                    "pattern": r"^(\d+)_", "binary_masks": True},
           "train": {"epochs": 1, "batch_size": 3}, "students": [{"arch": "unet", "args": {"width": 2, "depth": 1}}] * 2}
    result = compare(seg, ["independent", "ml"], 1, progress=False)
    region = ("Only the pixels inside each image's region of interest (data.roi: the masks in 'fov') count in these "
              "figures")
    assert f"note: {region}" in " ".join(capsys.readouterr().out.split())
    markdown = " ".join(result.markdown.split())
    assert region in markdown and markdown.index(region) < markdown.index("Seeds used")
    # runs that count other pixels are said apart
    records = {Path("a-seed0"): {"task": "segmentation", "data_spec": {"roi": "fov"}},
               Path("b-seed0"): {"task": "segmentation", "data_spec": {"roi": None}}}
    assert pixels_counted(records) == (
        "The runs count different pixels: 1 run(s) (a-seed0) count only those inside each image's region of interest "
        "(data.roi: the masks in 'fov'); 1 run(s) (b-seed0) count every pixel.")
    assert pixels_counted({Path("c"): {"task": "segmentation", "data_spec": {}}}) is None
