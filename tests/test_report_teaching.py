"""The run page's summary says how the teachers taught: how several were combined, the
self-distillation heads' own label-loss weight, which teachers trained online and which file a
frozen one was read from (review 56b)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import yaml

from peerdistill.build import train_from_config
from peerdistill.config import validate
from peerdistill.engine.artifacts import RunDir
from peerdistill.html_report.run_page import run_summary_html
from peerdistill.html_report.teaching import label_loss_weights, teachers_combined

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def recipe_run(recipe: str, folder: Path, **changes) -> Path:
    """A recipe's run, for one epoch, in ``folder`` (``changes``: sections updated)."""
    tree = yaml.safe_load((RECIPES / f"{recipe}.yaml").read_text())
    tree["out_dir"] = str(folder)
    tree["train"] = {**tree["train"], "epochs": 1}
    tree["distill"] = {**tree["distill"], "rampup_epochs": 0}
    for section, value in changes.items():
        tree[section] = value if not isinstance(value, dict) else {**tree.get(section, {}), **value}
    return train_from_config(validate(tree), progress=False).run_dir


def facts(run_dir: Path) -> dict[str, str]:
    """The summary's lines, by their name, as read on the page."""
    run = RunDir.open(run_dir)
    page = run_summary_html(run_dir, run.meta(), run.metrics())
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r"<li><b>(.*?)</b>: (.*?)</li>", page)}


@pytest.fixture(scope="module")
def multi_teacher_run(tmp_path_factory):
    return recipe_run("digits-multi-teacher", tmp_path_factory.mktemp("mt"))


def test_a_multi_teacher_run_says_each_teachers_weight_and_share_and_that_they_trained_online(multi_teacher_run):
    said = facts(multi_teacher_run)
    assert said["teachers combined"] == ("a weighted average of their softened predictions, each teacher's weight "
                                         "(its share): teacher1 1 (67%), teacher2 0.5 (33%)")
    assert "teacher1 (teacher; cnn(width=32, depth=3); 94,186 parameters; trained online)" in said["models"]
    assert "teacher2 (teacher; cnn(width=24, depth=2); 11,218 parameters; trained online)" in said["models"]
    assert "student1 (student; cnn(width=16, depth=2); 5,178 parameters)," in said["models"]  # (students: no word)
    assert "own label loss" not in said


def test_teachers_frozen_from_a_run_folder_name_the_file_of_it_that_was_read(multi_teacher_run, tmp_path, monkeypatch):
    monkeypatch.chdir(multi_teacher_run.parent)  # the checkpoints as a user writes them: from the runs' folder
    teachers = yaml.safe_load((RECIPES / "digits-multi-teacher.yaml").read_text())["teachers"]
    teachers[0].update(frozen=True, checkpoint=multi_teacher_run.name)
    teachers[1].update(frozen=True, checkpoint=f"{multi_teacher_run.name}/models/teacher2.safetensors")
    said = facts(recipe_run("digits-multi-teacher", tmp_path, name="frozen", teachers=teachers))
    assert (f"teacher1 (teacher; cnn(width=32, depth=3); 94,186 parameters; frozen, from {multi_teacher_run.name} "
            "(its models/teacher1.safetensors))") in said["models"]
    assert (f"teacher2 (teacher; cnn(width=24, depth=2); 11,218 parameters; frozen, from {multi_teacher_run.name}/"
            "models/teacher2.safetensors)") in said["models"]
    assert said["teachers combined"].endswith("teacher1 1 (67%), teacher2 0.5 (33%)")


def test_a_self_distilled_run_says_its_heads_own_label_loss_weight(tmp_path):
    said = facts(recipe_run("digits-self", tmp_path, distill={"self_alpha": 0.3}))
    assert said["own label loss"] == ("the self-distillation heads' cross-entropy with the labels weighs 0.7 "
                                      "(1 - distill.self_alpha) for student1@features.2, student1@features.6; the "
                                      "networks' own weighs 1")
    assert "teachers combined" not in said


def test_confidence_weighting_is_named_and_weights_not_recorded_are_said_so():
    members = [{"name": "teacher1", "role": "teacher"}, {"name": "teacher2", "role": "teacher"},
               {"name": "student1", "role": "student"}]
    assert teachers_combined({"teacher_weighting": "confidence", "members": members}) == (
        "teacher1, teacher2 combined per sample by their confidence (CA-MKD, teacher_weighting: confidence): on each "
        "sample, the teacher whose cross-entropy with the label is lower weighs more")
    assert teachers_combined({"teacher_weighting": "weighted", "members": members}) == (
        "teacher1, teacher2 combined by a weighted average (weighted; the weights are not recorded)")
    # one teacher, or no edge combining them: nothing to say
    assert teachers_combined({"teacher_weighting": "weighted", "members": members[:1]}) is None
    assert teachers_combined({"teacher_weighting": None, "members": members}) is None
    # weights given in Python, differing
    assert label_loss_weights({"supervised_weights": {"a": 0.5, "b": 0.25}}) == "a 0.5, b 0.25; every other output's 1"
    assert label_loss_weights({"supervised_weights": {}}) is None


def test_a_checkpoint_is_named_a_file_or_a_run_folder_by_what_it_is(tmp_path):
    """Review 56l: a weights file without a suffix was called a run folder; a run folder with a dot in its name, a file."""
    from peerdistill.html_report.teaching import checkpoint_in_words

    (tmp_path / "weights").write_bytes(b"x")
    (tmp_path / "resnet50.v2").mkdir()
    assert checkpoint_in_words(str(tmp_path / "weights"), "teacher") == str(tmp_path / "weights")
    assert checkpoint_in_words(str(tmp_path / "resnet50.v2"), "teacher") == (
        f"{tmp_path / 'resnet50.v2'} (its models/teacher.safetensors)")
    assert checkpoint_in_words("gone/t.safetensors", "teacher") == "gone/t.safetensors"
    assert checkpoint_in_words("gone/run", "teacher1") == "gone/run (its models/teacher1.safetensors)"
