"""compare says when the compared settings' students differ (their paired differences then
compare different models) and that the self-distillation heads are in compare.csv alone
(review 56b)."""

from __future__ import annotations

import html
import re

from peerdistill.compare import compare
from peerdistill.comparison_students import heads_left_out_note, students_apart_note
from peerdistill.html_report import write_report

DEEP = {"arch": "cnn", "args": {"width": 4, "depth": 3}}
SMALL = {"arch": "cnn", "args": {"width": 4, "depth": 1}}


def test_students_that_differ_are_named_beside_the_paired_differences_and_heads_left_out_are_said(tmp_path, capsys):
    base = {"deterministic": True, "out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 256},
            "distill": {"rampup_epochs": 0}}
    plain = {**base, "name": "plain", "students": [DEEP], "distill": {"preset": "independent"}}
    own = {**base, "name": "own", "students": [{**DEEP, "heads": ["features.2"]}],
           "distill": {"preset": "self", "rampup_epochs": 0}}  # the same network as plain's, with a head
    several = {**base, "name": "mt", "teachers": [DEEP, SMALL], "students": [SMALL, SMALL],
               "distill": {"preset": "multi-teacher", "rampup_epochs": 0}}
    result = compare([plain, own, several], None, 1, progress=False)
    printed = " ".join(capsys.readouterr().out.split())
    note = re.search(r"The settings' students differ, so these paired differences compare different models, not one "
                     r"model trained two ways: student1 \(plain: cnn\(width=4, depth=3\), ([\d,]+) parameters; mt: "
                     r"cnn\(width=4, depth=1\), ([\d,]+) parameters\); plain has 1 student\(s\), mt 2 \('best "
                     r"student' and 'ensemble' are then of other sets\)\.", result.markdown)
    assert note, result.markdown
    assert int(note[1].replace(",", "")) > int(note[2].replace(",", ""))
    assert "own:" not in note[0]  # its student is plain's network: alike
    # compare.md: under the paired differences, before the tables of figures
    assert result.markdown.index("paired differences from plain") < result.markdown.index(note[0]) < \
        result.markdown.index("### test accuracy\n")
    assert f"note: t{note[0][1:]}" in printed
    assert ("note: self-distillation heads (student1@features.2, student1@ensemble) are left out of these tables: "
            "their figures are in compare.csv") in printed
    page = html.unescape(write_report(result.directory).read_text())
    assert note[0] in page


def test_students_alike_or_of_settings_not_paired_are_not_noted():
    def meta(*students):
        return {"members": [{"name": f"student{i + 1}", "role": "student", "spec": spec, "parameters": size}
                            for i, (spec, size) in enumerate(students)]}

    alike = {"kd": meta((DEEP, 100), (DEEP, 100)), "kd+ml": meta((DEEP, 100), (DEEP, 100))}
    assert students_apart_note(alike, "kd", ["kd", "kd+ml"]) is None
    unlike = {**alike, "small": meta((SMALL, 40), (DEEP, 100))}
    assert students_apart_note(unlike, "kd", ["kd", "kd+ml"]) is None  # ('small' has no paired difference)
    assert students_apart_note(unlike, "kd", ["kd", "kd+ml", "small"]) == (
        "The settings' students differ, so these paired differences compare different models, not one model trained "
        "two ways: student1 (kd: cnn(width=4, depth=3), 100 parameters; small: cnn(width=4, depth=1), 40 "
        "parameters).")
    assert heads_left_out_note(["student1", "ensemble"]) is None
