"""The README's Python API example runs as written (placeholders filled with tiny data)."""

import re
from pathlib import Path

import numpy as np
from torch import nn

from peerdistill.models import SmallCNN
from tests.conftest import _blobs

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example(tmp_path, capsys):
    code = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    code = code.replace('"runs/mine"', repr(str(tmp_path / "mine"))).replace("epochs=20", "epochs=3")
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (_blobs(n, s) for n, s in ((120, 0), (40, 1), (40, 2)))

    def MyBigNet(num_classes):  # noqa: N802 - stands for a user's class
        return SmallCNN(1, num_classes, width=8, depth=2)

    def MySmallNet(num_classes):  # noqa: N802
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, num_classes))

    namespace = dict(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test,
                     MyBigNet=MyBigNet, MySmallNet=MySmallNet, np=np)
    exec(compile(code, str(README), "exec"), namespace)
    result = namespace["result"]
    assert set(result.test_at_best) == {"teacher", "student1", "student2", "ensemble"}
    assert (tmp_path / "mine" / "models" / "student1.safetensors").is_file()
    # Models built in Python have no arch spec and the data no data section: reading the run
    # back needs new instances of the models, and the data.
    import csv

    import pytest

    from peerdistill import evaluate_run, export_run, load_cohort, predict_files
    from peerdistill.cli import main
    from peerdistill.errors import CheckpointError

    run = tmp_path / "mine"
    with pytest.raises(CheckpointError, match=r"\['teacher', 'student1', 'student2'\] .* built in Python.*modules="):
        load_cohort(run)
    assert main(["eval", str(run)]) == 2
    assert "cannot rebuild them" in capsys.readouterr().err
    modules = {"teacher": MyBigNet(3), "student1": MySmallNet(3), "student2": MySmallNet(3)}
    cohort, _ = load_cohort(run, modules=modules)
    assert [m.name for m in cohort.students] == ["student1", "student2"]
    with pytest.raises(CheckpointError, match="data was given in Python"):
        evaluate_run(run, modules=modules)
    data = namespace["data"]
    scores = evaluate_run(run, modules=modules, data=data)
    assert scores["ensemble"]["accuracy"] == pytest.approx(result.test_at_best["ensemble"]["accuracy"], abs=1e-6)
    exported = export_run(run, "student1", out=tmp_path / "s1.onnx", modules=modules)
    assert exported.max_abs_diff <= 1e-4
    np.savez(tmp_path / "x.npz", images=x_test[:5])
    predict_files(run, [str(tmp_path / "x.npz")], tmp_path / "p.csv", model="ensemble", modules=modules)
    assert len(list(csv.DictReader((tmp_path / "p.csv").open()))) == 5
