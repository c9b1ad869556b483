"""docs/python-api.md's runnable first example (the embedded digits and the zoo's models), run as
written: the first example needs arrays and model classes of the reader's own."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def test_the_pages_self_contained_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    block = next(b for b in blocks if "from peerdistill.models import ResNet, SmallCNN" in b)
    assert "x_train" not in block and "MyBigNet" not in block  # nothing left for the reader to supply
    assert "epochs=5" in block
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block.replace("epochs=5", "epochs=1"), str(PAGE), "exec"), scope)  # noqa: S102 - the page's own
    result = scope["result"]
    assert set(result.test_at_best) == {"teacher", "student1", "student2", "ensemble"}
    assert scope["data"].num_classes == 10 and scope["data"].input_shape == (1, 8, 8)
    assert (tmp_path / "runs" / "digits-python" / "models" / "student1.safetensors").is_file()
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(printed) == result.test_at_best["ensemble"]["accuracy"]
    # the first block's names are said to be the reader's own
    page = PAGE.read_text()
    first = blocks[0]
    assert "x_train" in first and "MyBigNet" in first
    assert page.index("The block needs what you supply") > page.index(first)
