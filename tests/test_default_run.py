"""The README's first command: the embedded default reaches the issue's bar."""

import json

from peerdistill.cli import main


def test_default_run_reaches_095_ensemble_test_accuracy(tmp_path, capsys):
    assert main(["train", f"out_dir={tmp_path}", "--quiet"]) == 0
    metrics = json.loads((tmp_path / "digits-kd+ml" / "metrics.json").read_text())
    assert metrics["test_at_best"]["ensemble"]["accuracy"] >= 0.95
    out = capsys.readouterr().out
    for model in ("teacher", "student1", "student2", "ensemble"):
        assert model in out
