"""A frozen model's inputs checked against its source run's (build._other_inputs), also where that
run's record has gone by the time its user is resumed."""

import shutil

import pytest

from peerdistill.build import _other_inputs, build_cohort
from peerdistill.cli import main
from peerdistill.config import load_saved_config
from peerdistill.data import build_data
from peerdistill.errors import PeerdistillWarning


def test_a_resume_says_a_frozen_models_source_run_is_gone_rather_than_checking_nothing(tmp_path, capsys):
    """Review 57d: on a resume whose frozen teacher's run had lost its run.json (moved, deleted),
    the check of its input scale and size found nothing to read and said nothing."""
    quick = ["teacher=null", "distill.preset=independent", "students=[{arch: cnn, args: {width: 4, depth: 1}}]",
             "train.epochs=1", "--quiet"]
    assert main(["train", f"out_dir={tmp_path}", "name=t", "data.normalize={mean: [0.0], std: [1.0]}", *quick]) == 0
    weights = tmp_path / "t" / "models" / "student1.safetensors"
    assert main(["train", f"out_dir={tmp_path}", "name=kd", "teacher.frozen=true", f"teacher.checkpoint={weights}",
                 "teacher.arch=cnn", "teacher.args={width: 4, depth: 1}", "distill.preset=kd", "train.epochs=1",
                 "data.normalize={mean: [0.0], std: [1.0]}", "--quiet"]) == 0
    capsys.readouterr()
    cfg = load_saved_config(tmp_path / "kd" / "config.yaml")
    data = build_data(cfg.data)
    assert build_cohort(cfg, data, saved=True).warnings_when_built == []  # the same inputs: nothing to say
    (tmp_path / "t" / "run.json").rename(tmp_path / "t-run.json")  # the run's record gone, its weights left
    gone = (f"teacher is frozen from '{weights}', whose run ('{tmp_path / 't'}') has no run.json any more (moved or "
            "deleted): its input scale and size could not be checked against this run's again; its weights are "
            "used as before")
    with pytest.warns(PeerdistillWarning) as said:  # not refused: said once, and kept for run.json
        assert build_cohort(cfg, data, saved=True).warnings_when_built == [gone]
    assert [str(w.message) for w in said] == [gone]
    # a new run from that file: a bare weights file, as it would be from the start (nothing to check, nothing said)
    assert build_cohort(cfg, data, saved=False).warnings_when_built == []
    # a bare weights file outside a run's models/ folder never had a run to check against: a resume says nothing
    bare = tmp_path / "teacher.safetensors"
    shutil.copy(weights, bare)
    assert _other_inputs(str(bare), "teacher", data, "teacher", saved=True) == []
