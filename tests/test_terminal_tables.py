"""Tables printed to the terminal keep every figure whole: one too wide for the console is turned."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from peerdistill.report import fitted, results_table

MODELS = ("teacher", "student1", "student2", "ensemble")
SCORES = {m: {"accuracy": 0.9012 + i / 100, "balanced_accuracy": 0.8811, "macro_f1": 0.8755, "auc": 0.9901,
              "ece": 0.0123, "brier": 0.0456} for i, m in enumerate(MODELS)}
COSTS = {m: {"parameters": 2_812_345 // (i + 1), "macs": 1.25e6, "compression": float(i + 1)}
         for i, m in enumerate(MODELS[:3])}


def printed(table, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(fitted(table, width))
    return console.export_text()


def cells(text: str) -> list[list[str]]:
    """The text of each body row's cells."""
    return [[c.strip() for c in line.strip("│").split("│")] for line in text.splitlines() if line.startswith("│")]


def test_a_table_too_wide_for_the_console_is_turned_and_every_figure_stays_whole():
    table = results_table("run: test split", SCORES, val=SCORES, val_metric="auc", costs=COSTS)
    wide, narrow = printed(table, 200), printed(table, 80)
    assert "…" not in wide and "…" not in narrow
    assert [row[0] for row in cells(wide)] == list(MODELS)  # fits: a row per model, as built
    turned = {row[0]: row[1:] for row in cells(narrow)}  # a row per figure, a column per model
    assert turned["balanced_accuracy"] == ["0.8811"] * 4
    assert turned["accuracy"] == ["0.9012", "0.9112", "0.9212", "0.9312"]
    assert turned["params"] == ["2,812,345", "1,406,172", "937,448", ""]  # the ensemble has no cost row
    assert turned["val auc"] == ["0.9901"] * 4
    assert all(len(line) <= 80 for line in narrow.splitlines())


def test_a_table_is_left_as_built_when_turning_it_would_be_no_narrower():
    many = {f"student{i}": {"dice": 0.5} for i in range(1, 30)}  # 29 models, one figure: as built
    text = printed(results_table("run", many), 60)
    assert [row[0] for row in cells(text)] == list(many)
    fits = results_table("run", {"ensemble": {"dice": 0.5}})
    assert fitted(fits, 80) is fits


def test_a_turned_table_still_too_wide_is_split_into_parts_that_repeat_the_row_labels():
    models = [f"student{i}" for i in range(1, 7)]
    scores = {m: {**SCORES["teacher"], "accuracy": 0.9 + i / 1000} for i, m in enumerate(models)}
    costs = {m: {"parameters": 11_181_380 // (i + 1), "macs": 1.25e6, "compression": 1.0} for i, m in enumerate(models)}
    text = printed(results_table("run: test split", scores, costs=costs), 80)
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    rows = cells(text)
    labels = [row[0] for row in rows]
    assert labels.count("balanced_accuracy") >= 2  # every part repeats the figures' names
    accuracy = [value for row in rows if row[0] == "accuracy" for value in row[1:]]
    assert accuracy == [f"{0.9 + i / 1000:.4f}" for i in range(6)]  # each model once, in order, whole
    params = [value for row in rows if row[0] == "params" for value in row[1:]]
    assert params == [f"{11_181_380 // (i + 1):,}" for i in range(6)]
    assert text.count("run: test split") == 1  # the title once, over the first part


def test_a_table_without_rows_is_printed_as_built():
    empty = Table("model", *(f"figure_{i}" for i in range(12)))  # wider than 40 columns, nothing to turn
    assert fitted(empty, 40) is empty


def test_a_title_wider_than_its_table_is_printed_whole_above_it():
    # rich wraps a title to its table's width: the train table's title broke mid-phrase
    title = "test split (400 samples) at the best epoch (23 of 30, by val ensemble/accuracy)"
    table = results_table(title, {"student1": {"dice": 0.5}})
    lines = printed(table, 120).splitlines()
    assert lines[0] == title and lines[1].startswith("┏")  # one line, at the left, then the table
    assert table.title == title  # the caller's table is left as it was
    narrow = printed(table, 40).splitlines()
    top = next(i for i, line in enumerate(narrow) if line.startswith("┏"))
    assert " ".join(line.strip() for line in narrow[:top]) == title and top == 3  # wrapped at the console's width
    short = results_table("run", {"student1": {"dice": 0.5}})
    assert printed(short, 120).splitlines()[0].strip() == "run"  # one that fits stays centred over it
    assert fitted(short, 120) is short


def test_a_console_without_the_characters_printed_gets_them_spelled_out_not_an_error():
    # compare's '0.93 ± 0.01' raised UnicodeEncodeError on an ASCII console once every run was done
    import os
    import subprocess
    import sys

    from peerdistill.terminal import write_any_character

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    write_any_character(stream)
    stream.write("0.93 \u00b1 0.01, 0.9\u2026, class z\u00e9ro, \u2265 0.5\n")
    stream.flush()
    assert raw.getvalue().decode("ascii") == "0.93 +/- 0.01, 0.9..., class z\\xe9ro, >= 0.5\n"
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    write_any_character(utf8)
    assert utf8.errors == "strict"  # a console that shows them keeps them
    # the command line sets its own streams so before any command
    done = subprocess.run([sys.executable, "-c", "from peerdistill.cli import main; main(['presets']); print('\u00b1')"],
                          capture_output=True, env={**os.environ, "PYTHONIOENCODING": "ascii"}, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-1500:]
    assert done.stdout.decode("ascii").splitlines()[-1] == "+/-"


def test_a_warning_is_printed_once_per_text_and_other_warnings_go_to_pythons_display(capsys):
    """Review 54d: compare's runs of every seed printed the same warning again (ten seeds, ten lines)."""
    import warnings

    from peerdistill.errors import PeerdistillWarning
    from peerdistill.terminal import one_line_warnings

    others = []
    show = one_line_warnings(lambda *args: others.append(str(args[0])), source="kd-seed0")
    for text in ("train longer", "train longer", "lower the lr"):
        show(text, PeerdistillWarning, "x.py", 1)
    show("deprecated", DeprecationWarning, "x.py", 1)
    show("deprecated", DeprecationWarning, "x.py", 1)
    assert capsys.readouterr().err.splitlines() == ["warning: kd-seed0: train longer", "warning: kd-seed0: lower the lr"]
    assert others == ["deprecated", "deprecated"]  # (Python's own filters decide for those)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = one_line_warnings(warnings.showwarning)
        for _ in range(3):
            warnings.warn("say once", PeerdistillWarning)
    assert capsys.readouterr().err == "warning: say once\n"
