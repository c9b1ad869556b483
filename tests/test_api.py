"""The README's Python API example runs as written (placeholders filled with tiny data)."""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from peerdistill.models import SmallCNN
from peerdistill.engine.artifacts import jsonable
from tests.conftest import _blobs

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example(tmp_path, capsys):
    code = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    code = code.replace('"runs/mine"', repr(str(tmp_path / "mine"))).replace("epochs=20", "epochs=3")
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (_blobs(n, s) for n, s in ((120, 0), (40, 1), (40, 2)))

    class MyBigNet(SmallCNN):  # a user's class (a zoo subclass may differ from it: not rebuilt as the zoo's)
        def __init__(self, num_classes):
            super().__init__(1, num_classes, width=8, depth=2)

    def MySmallNet(num_classes):  # noqa: N802
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, num_classes))

    namespace = dict(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test,
                     MyBigNet=MyBigNet, MySmallNet=MySmallNet, np=np)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        exec(compile(code, str(README), "exec"), namespace)
    # a run built in Python is told of its own settings, not a config's (review 55a: distill.rampup_epochs)
    assert any(str(w.message).startswith("the Trainer's rampup_epochs (5) is not shorter than train.epochs (3): ")
               and str(w.message).endswith("train longer or lower the Trainer's rampup_epochs") for w in said)
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
    with pytest.raises(CheckpointError, match=r"modules= names \['studnet1'\], which .* does not hold"):
        load_cohort(run, modules={**modules, "studnet1": MySmallNet(3)})
    with pytest.raises(CheckpointError, match=r"does not fit student2 .*The module given for 'student2' in modules= is "
                                              r"the one that does not fit"):  # (review 50b: it said check arch, args)
        load_cohort(run, modules={**modules, "student2": MyBigNet(3)})
    cohort, meta = load_cohort(run, modules=modules)
    assert [m.name for m in cohort.students] == ["student1", "student2"]
    # probabilities in memory, as docs/python-api.md gives them: the ensemble is the mean of the students'
    import torch

    from peerdistill.engine import predict
    from peerdistill.runs import task_for

    data = namespace["data"]
    x, y = torch.as_tensor(data.test.x), torch.as_tensor(data.test.y)
    probs = predict(cohort, task_for(meta), x)
    with torch.no_grad():
        by_hand = (cohort["student1"].module(x).softmax(1) + cohort["student2"].module(x).softmax(1)) / 2
    assert torch.allclose(probs["ensemble"], by_hand, atol=1e-6) and set(probs) == {"teacher", "student1", "student2",
                                                                                  "ensemble"}
    assert float((probs["ensemble"].argmax(1) == y).float().mean()) == pytest.approx(
        result.test_at_best["ensemble"]["accuracy"], abs=1e-6)
    # read to predict with (review 45d: BatchNorm used each batch's own statistics, 0.62 off in the logits)
    assert not any(module.training for member in cohort.members for module in member.module.modules())
    # and trainable as the run trained them, as docs/python-api.md says (review 50b: every parameter came frozen)
    assert not any(member.frozen for member in cohort.members)
    student = cohort["student1"].module.train()
    torch.nn.functional.cross_entropy(student(torch.as_tensor(x_test[:4])), torch.as_tensor(y_test[:4])).backward()
    assert all(p.grad is not None for p in student.parameters())
    student.zero_grad()
    student.eval()
    with pytest.raises(CheckpointError, match="data was given in Python"):
        evaluate_run(run, modules=modules)
    scores = evaluate_run(run, modules=modules, data=data)
    assert scores["ensemble"]["accuracy"] == pytest.approx(result.test_at_best["ensemble"]["accuracy"], abs=1e-6)
    exported = export_run(run, "student1", out=tmp_path / "s1.onnx", modules=modules)
    assert exported.max_abs_diff <= 1e-4
    np.savez(tmp_path / "x.npz", images=x_test[:5])
    predict_files(run, [str(tmp_path / "x.npz")], tmp_path / "p.csv", model="ensemble", modules=modules)
    assert len(list(csv.DictReader((tmp_path / "p.csv").open()))) == 5
    # the students alone: no teacher instance needed to score, export or predict with them
    students = {k: v for k, v in modules.items() if k != "teacher"}
    alone = evaluate_run(run, modules=students, data=data, roles=("student",))
    assert set(alone) == {"student1", "student2", "ensemble"} and jsonable(alone["ensemble"]) == jsonable(scores["ensemble"])
    # a bootstrap of splits given in Python: no data section to read groups from, and none needed
    drawn = evaluate_run(run, modules=students, data=data, roles=("student",), bootstrap=40)["ensemble"]
    assert drawn["ci95_low_accuracy"] <= drawn["accuracy"] <= drawn["ci95_high_accuracy"]
    assert export_run(run, "student2", out=tmp_path / "s2.onnx", modules=students).max_abs_diff <= 1e-4
    predict_files(run, [str(tmp_path / "x.npz")], tmp_path / "q.csv", model="ensemble", modules=students)
    assert (tmp_path / "q.csv").read_text() == (tmp_path / "p.csv").read_text()


def test_zoo_models_built_in_python_are_read_back_by_the_command_line(tmp_path, capsys):
    """A run of zoo models built in Python (ResNet(...), a self-distilled SmallCNN) records what
    rebuilds them, so eval, export and predict need no modules=; a module of another class, a
    subclass, or one built with arguments a run.json cannot hold is still named."""
    import torch

    from peerdistill import ClassificationTask, Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.cli import main
    from peerdistill.models import ZOO, ResNet
    from peerdistill.models.built_with import zoo_spec
    from peerdistill.models.heads import HeadedModel

    (x, y), (xv, yv), (xt, yt) = (_blobs(n, s) for n, s in ((96, 0), (32, 1), (32, 2)))
    data = DataSplits.from_arrays(x, y, xv, yv, xt, yt)
    headed = HeadedModel(SmallCNN(1, 3, width=8, depth=3), ["features.2"], "features.10", 3, torch.zeros(2, 1, 8, 8))
    teacher = ResNet(in_channels=1, num_classes=3, blocks=(1, 1), width=8)
    cohort = Cohort.from_modules([SmallCNN(1, 3, width=8), headed], teacher=teacher)
    assert cohort["teacher"].spec == {"arch": "resnet", "args": {"in_channels": 1, "num_classes": 3, "blocks": [1, 1],
                                                                  "width": 8, "block": "basic", "stem": "small"}}
    assert cohort["student2"].spec["heads"] == ["features.2"] and cohort["student2"].spec["deep_layer"] == "features.10"
    run = tmp_path / "zoo"
    Trainer(cohort, KnowledgeGraph.from_preset("kd+ml", cohort), ClassificationTask(3), train=TrainSpec(epochs=1),
            run_dir=run, progress=False).fit(data)
    np.savez(tmp_path / "d.npz", train_images=x, train_labels=y, val_images=xv, val_labels=yv, test_images=xt,
             test_labels=yt)
    capsys.readouterr()
    assert main(["eval", str(run), "data.kind=npz", f"data.root={tmp_path / 'd.npz'}", "--json"]) == 0
    scores = __import__("json").loads(capsys.readouterr().out)
    assert {"teacher", "student1", "student2", "ensemble", "student2@features.2"} <= set(scores)  # heads rebuilt too
    # a bare module given for the headed one is read without its heads: said, not done in silence (review 47c)
    import warnings

    from peerdistill.errors import PeerdistillWarning
    from peerdistill.runs import load_cohort

    with pytest.warns(PeerdistillWarning, match=r"^model 'student2' of '.*zoo' was trained with self-distillation "
                                                r"heads at \['features.2'\], and the module given for it in modules= "
                                                r"has none: it is read without them; to read its heads too, give a "
                                                r"HeadedModel of it as trained"):
        bare, _ = load_cohort(run, {"student2": SmallCNN(1, 3, width=8, depth=3)})
    assert bare["student2"].head_layers == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)
        load_cohort(run, {"student2": SmallCNN(1, 3, width=8, depth=3)}, with_heads=False)
        given = HeadedModel(SmallCNN(1, 3, width=8, depth=3), ["features.2"], "features.10", 3, torch.zeros(2, 1, 8, 8))
        assert load_cohort(run, {"student2": given})[0]["student2"].head_layers == ["features.2"]
    assert main(["export", str(run), "--model", "student2", "--out", str(tmp_path / "s2.onnx")]) == 0
    assert (tmp_path / "s2.onnx").is_file()
    np.savez(tmp_path / "x.npz", images=xt[:4])
    assert main(["predict", str(run), str(tmp_path / "x.npz"), "--out", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 5
    # a temperature is chosen on the run's own validation split, which a run from Python data does not record
    capsys.readouterr()
    assert main(["eval", str(run), "data.kind=npz", f"data.root={tmp_path / 'd.npz'}", "--temperature-scaling"]) == 2
    assert ("a temperature is chosen on the run's own validation split, which a run trained from data given in Python "
            "does not record: from Python, pass the splits it was trained with, evaluate_run(..., data=splits,"
            ) in " ".join(capsys.readouterr().err.split())
    assert main(["export", str(run), "--temperature-scaling", "--out", str(tmp_path / "t.onnx")]) == 2
    assert "does not record: from Python, pass the splits it was trained with, export_run(..., data=splits)" in \
        " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "t.onnx").exists()
    assert main(["report", str(run)]) == 0  # the data of a run from Python is not the report's to read
    assert "eval scores its models on data you give: peerdistill eval RUN_DIR data.kind=npz" in capsys.readouterr().err
    assert "Predictions skipped: the run&#x27;s data was given in Python" in (run / "report.html").read_text()
    # not rebuilt as a zoo model: a subclass, another class, arguments run.json cannot hold
    assert zoo_spec(type("Mine", (SmallCNN,), {})(1, 3), ZOO) is None
    assert zoo_spec(nn.Linear(2, 2), ZOO) is None and zoo_spec("cnn", ZOO) is None
    assert zoo_spec(SmallCNN(1, 3, width=np.int64(8)), ZOO) is None
    # nor a zoo model changed after it was built: its arguments would rebuild another network
    pooled, headed_anew, patched = SmallCNN(1, 3), ResNet(in_channels=1, num_classes=10, width=8), SmallCNN(1, 3)
    pooled.pool = nn.AdaptiveMaxPool2d(1)
    headed_anew.fc = nn.Linear(headed_anew.fc.in_features, 3)
    patched.features[1].forward = lambda x: x
    unbuildable = SmallCNN(1, 3)
    unbuildable.built_with["width"] = 0  # arguments that no longer build it: no spec, not a crash
    assert zoo_spec(unbuildable, ZOO) is None
    hooked = SmallCNN(1, 3)
    hooked.features[0].register_forward_pre_hook(lambda module, args: (args[0] * 2,))
    assert zoo_spec(hooked, ZOO) is None
    assert zoo_spec(SmallCNN(1, 3), ZOO) is not None
    assert zoo_spec(pooled, ZOO) is None and zoo_spec(headed_anew, ZOO) is None and zoo_spec(patched, ZOO) is None


def test_eval_scores_the_students_alone_when_only_the_teacher_was_built_in_python(tmp_path, capsys):
    import json

    from peerdistill import ClassificationTask, Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.cli import main

    (x, y), (xv, yv), (xt, yt) = (_blobs(n, s) for n, s in ((96, 0), (32, 1), (32, 2)))
    teacher = nn.Sequential(nn.Identity(), SmallCNN(1, 3, width=8))  # a model of the user's own
    cohort = Cohort.from_modules([SmallCNN(1, 3, width=4), SmallCNN(1, 3, width=4)], teacher=teacher)
    run = tmp_path / "run"
    Trainer(cohort, KnowledgeGraph.from_preset("kd", cohort), ClassificationTask(3), train=TrainSpec(epochs=1),
            run_dir=run, progress=False).fit(DataSplits.from_arrays(x, y, xv, yv, xt, yt))
    np.savez(tmp_path / "d.npz", train_images=x, train_labels=y, val_images=xv, val_labels=yv, test_images=xt,
             test_labels=yt)
    data = ["data.kind=npz", f"data.root={tmp_path / 'd.npz'}"]
    capsys.readouterr()
    assert main(["eval", str(run), *data]) == 2
    assert "(to score the students alone: eval --students-only; evaluate_run(..., roles=('student',)))" in \
        " ".join(capsys.readouterr().err.split())
    assert main(["eval", str(run), *data, "--students-only", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"student1", "student2", "ensemble"}


def factory_with_kwargs(*, weights=None, **kwargs):
    """Written as torchvision's resnet18 and timm's create_model are: options passed on."""
    return _Net(**kwargs)


class _Net(nn.Module):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, num_classes, 1)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


def test_import_path_factories_get_num_classes_and_wrong_paths_are_named():
    import pytest

    from peerdistill.errors import ConfigError
    from peerdistill.models import build_model

    model = build_model("tests.test_api:factory_with_kwargs", {"in_chans": 1}, in_channels=1, num_classes=4)
    assert model.conv.out_channels == 4 and model.conv.in_channels == 1  # in_channels is not passed on blindly
    with pytest.raises(ConfigError, match="'_Net' has no attribute 'wide'"):
        build_model("tests.test_api:_Net.wide", {}, 1, 4)
    with pytest.raises(ConfigError, match="module 'tests.test_api' has no attribute 'Nett'"):
        build_model("tests.test_api:Nett", {}, 1, 4)
    with pytest.raises(ConfigError, match=r"cannot import module 'tests.nowhere' \(No module named 'tests.nowhere'\)$"):
        build_model("tests.nowhere:f", {}, 1, 4)
    with pytest.raises(ConfigError, match=r"cannot import module 'nopackage_xyz.models' .*: a module of your own "
                                          r"\(nopackage_xyz.py, or a folder nopackage_xyz/\) is found in the folder the "
                                          r"command runs in or on PYTHONPATH: run from the folder that holds it") as said:
        build_model("nopackage_xyz.models:resnet18", {}, 1, 4)
    assert "pip install" not in str(said.value)  # whatever PyPI holds under a name of the user's own (review 48c)
    with pytest.raises(ConfigError, match=r"module 'tests.test_api' has no attribute 'factory_with_kwarg' \(did you "
                                          r"mean 'factory_with_kwargs'\?\)$"):
        build_model("tests.test_api:factory_with_kwarg", {}, 1, 4)
    with pytest.raises(ConfigError, match=r"^arch 'math:pi': 'pi' is not callable$"):
        build_model("math:pi", {}, 1, 4)
    with pytest.raises(ConfigError, match=r"unknown arch 'resnt' \(did you mean 'resnet'\?\)"):
        build_model("resnt", {}, 1, 4)



def test_a_module_of_ones_own_in_the_working_folder_is_found_without_python_dash_m(tmp_path, monkeypatch):
    # the `peerdistill` command, unlike `python -m peerdistill`, has no working folder on sys.path
    import os
    import sys

    (tmp_path / "byo_models_in_cwd.py").write_text(
        "from torch import nn\ndef mlp(num_classes):\n    return nn.Linear(4, num_classes)\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "byo_models_in_cwd", raising=False)
    from peerdistill.models import build_model

    assert build_model("byo_models_in_cwd:mlp", {}, 1, 3).out_features == 3
    assert str(tmp_path) not in sys.path  # for that import only: a later library lookup never finds this folder
    monkeypatch.delitem(sys.modules, "byo_models_in_cwd")
    # so a sibling module imported when the factory is called is not found: said, with the two ways out
    import pytest

    from peerdistill.errors import ConfigError

    (tmp_path / "byo_blocks_in_cwd.py").write_text("from torch import nn\nhead = nn.Linear\n")
    (tmp_path / "byo_lazy_in_cwd.py").write_text(
        "def mlp(num_classes):\n    from byo_blocks_in_cwd import head\n    return head(4, num_classes)\n")
    monkeypatch.delitem(sys.modules, "byo_lazy_in_cwd", raising=False)
    with pytest.raises(ConfigError, match=r"No module named 'byo_blocks_in_cwd' \(.*byo_lazy_in_cwd.py, line 2\); "
                                          r"'byo_blocks_in_cwd' is in the folder the command runs in, which is on "
                                          r"Python's path only while the model's own module is imported: import "
                                          r"'byo_blocks_in_cwd' at the top of that module, or put the folder on the "
                                          r"path \(PYTHONPATH=. peerdistill ...\)$"):
        build_model("byo_lazy_in_cwd:mlp", {}, 1, 3)
    monkeypatch.delitem(sys.modules, "byo_lazy_in_cwd")


def test_a_model_librarys_name_is_never_imported_from_the_working_folder(tmp_path, monkeypatch):
    # a run folder holding torchvision/ would otherwise run its code as trust.py checks a library arch
    import importlib.util
    import os
    import sys

    from peerdistill.errors import CheckpointError, ConfigError
    from peerdistill.models import build_model
    from peerdistill.trust import check_trusted_arch

    marker = tmp_path / "ran"
    for name in ("torchvision", "timm"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('{name}')\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd(), str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    for arch in ("torchvision.models:resnet18", "timm:create_model"):
        if importlib.util.find_spec(arch.partition(".")[0].partition(":")[0]) is not None:
            continue  # installed (the GPU machine has both): the working folder is never searched
        try:
            check_trusted_arch(arch, "run.json")  # what eval does first with a run folder's arch
            build_model(arch, {} if "resnet" in arch else {"model_name": "resnet18"}, 3, 2)
        except (CheckpointError, ConfigError) as exc:
            assert "pip install" in str(exc)  # not installed here: said so, and nothing of the folder's ran
        assert not marker.exists()
    assert str(tmp_path) not in sys.path


def test_errors_in_a_users_own_module_or_factory_name_its_file_and_line(tmp_path, monkeypatch):
    # a traceback (exit 1) or "rejected its args" sent the user to the config for a bug in their code
    import sys

    import pytest

    from peerdistill.errors import ConfigError
    from peerdistill.models import build_model

    (tmp_path / "byo_broken_import.py").write_text("import math\nx = undefined_name\n")
    (tmp_path / "byo_broken_syntax.py").write_text("def f(:\n")
    (tmp_path / "byo_buggy_factory.py").write_text(
        "from torch import nn\n\ndef make(num_classes):\n    return nn.Linear(4, num_classes) + 1\n\n"
        "def fails(num_classes):\n    raise ValueError('no weights here')\n\n"
        "def bad_size(num_classes):\n    return nn.Linear(4, None)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("byo_broken_import", "byo_broken_syntax", "byo_buggy_factory"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ConfigError, match=r"^arch 'byo_broken_import:f': importing module 'byo_broken_import' failed: "
                                          r"NameError: name 'undefined_name' is not defined \(.*byo_broken_import.py, "
                                          r"line 2\)$"):
        build_model("byo_broken_import:f", {}, 1, 3)
    with pytest.raises(ConfigError, match=r"importing module 'byo_broken_syntax' failed: SyntaxError: .*"
                                          r"\(byo_broken_syntax.py, line 1\)$"):
        build_model("byo_broken_syntax:f", {}, 1, 3)
    with pytest.raises(ConfigError, match=r"^model 'student1': arch 'byo_buggy_factory:make' with args "
                                          r"\{'num_classes': 3\} failed: TypeError: unsupported operand.*"
                                          r"\(.*byo_buggy_factory.py, line 4\)$"):
        build_model("byo_buggy_factory:make", {}, 1, 3, owner="model 'student1'")
    with pytest.raises(ConfigError, match=r"failed: no weights here \(.*byo_buggy_factory.py, line 7\)$"):
        build_model("byo_buggy_factory:fails", {}, 1, 3)
    # refused inside torch: the user's line first (torch's alone lost it), then where it was raised
    with pytest.raises(ConfigError, match=r"failed: TypeError: .* \(.*byo_buggy_factory.py, line 10; raised in "
                                          r".*torch.*linear.py, line \d+\)$"):
        build_model("byo_buggy_factory:bad_size", {}, 1, 3)
    with pytest.raises(ConfigError, match=r"rejected its args \{'widht': 2, 'num_classes': 3\}"):
        build_model("byo_buggy_factory:make", {"widht": 2}, 1, 3)  # args its signature cannot take: still the args
    with pytest.raises(ConfigError, match=r"^arch ':make': no module is named before the ':'"):
        build_model(":make", {}, 1, 3)
    with pytest.raises(ConfigError, match=r"^arch '.byo_buggy_factory:make': '.byo_buggy_factory' is a relative"):
        build_model(".byo_buggy_factory:make", {}, 1, 3)
    for name in ("byo_broken_import", "byo_broken_syntax", "byo_buggy_factory"):
        monkeypatch.delitem(sys.modules, name, raising=False)

def test_a_factorys_wrong_argument_is_named_with_a_guess_only_when_one_is_close():
    import pytest

    from peerdistill.errors import ConfigError
    from peerdistill.models import build_model

    # a key like none of the factory's own: its arguments listed, no far-fetched guess
    with pytest.raises(ConfigError, match=r"rejected its args .*; it takes in_channels, num_classes, width, depth$"):
        build_model("cnn", {"zzz": 1}, 1, 4)
    with pytest.raises(ConfigError) as caught:
        build_model("cnn", {"zzz": 1}, 1, 4)
    assert "did you mean" not in str(caught.value)
    # a factory taking **kwargs passes on what it does not name: listing its own would mislead
    with pytest.raises(ConfigError, match=r"rejected its args .*unexpected keyword argument 'widht'$"):
        build_model("tests.test_api:factory_with_kwargs", {"widht": 3}, 1, 4)
    # a value of millions of items (YAML aliases) is cut short, not printed whole (review 55j: a 28 MB message)
    huge = [["x"] * 1000] * 1000
    with pytest.raises(ConfigError, match=r"rejected its args \{'x': \[\['x', 'x', .*\.\.\., 'in_channels': 1, "
                                          r"'num_classes': 4\}: .*unexpected keyword") as caught:
        build_model("cnn", {"x": huge}, 1, 4)
    assert len(str(caught.value)) < 1000


def test_a_module_given_twice_is_refused():
    import pytest

    from peerdistill import Cohort
    from peerdistill.errors import ConfigError

    net = SmallCNN(1, 3, width=4, depth=1)
    with pytest.raises(ConfigError, match="'student1' and 'student2' share parameters"):
        Cohort.from_modules([net, net])
    with pytest.raises(ConfigError, match="'teacher' and 'student2' share parameters"):  # a shared backbone
        Cohort.from_modules([SmallCNN(1, 3, width=4, depth=1), nn.Sequential(net.features, nn.Flatten())],
                            teacher=net)
    Cohort.from_modules([SmallCNN(1, 3, width=4, depth=1), SmallCNN(1, 3, width=4, depth=1)], teacher=net)


def test_a_run_is_not_scored_on_its_data_split_otherwise_since_training(tmp_path):
    """Test images added to the run's npz: the saved data now splits otherwise, so eval refuses
    to call it the run's test split; read as other data (data.root given) it is scored."""
    import numpy as np
    import pytest

    from peerdistill import evaluate_run
    from peerdistill.config import DataSpec
    from peerdistill.errors import DataError
    from tests.conftest import train_two_class_npz_run

    run, arrays = train_two_class_npz_run(tmp_path, seed=0, epochs=1)
    before = evaluate_run(run)["ensemble"]["accuracy"]  # on the 40 test samples
    arrays["test_images"] = np.concatenate([arrays["test_images"], arrays["train_images"][:5]])
    arrays["test_labels"] = np.concatenate([arrays["test_labels"], arrays["train_labels"][:5]])
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=r"has changed since training \(split sizes \{'train': 80, 'val': 40, "
                                        r"'test': 45\}, \{'train': 80, 'val': 40, 'test': 40\}"):
        evaluate_run(run)
    scores = evaluate_run(run, data_spec=DataSpec(kind="npz", root=str(tmp_path / "d.npz")))
    added_right = scores["ensemble"]["accuracy"] * 45 - before * 40  # all 45 scored, the 40 as before
    assert added_right == pytest.approx(round(added_right), abs=1e-6) and 0 <= round(added_right) <= 5
    # nor is a threshold chosen on its validation split, to score or to export
    with pytest.raises(DataError, match="has changed since training"):
        evaluate_run(run, data_spec=DataSpec(kind="npz", root=str(tmp_path / "d.npz")), operating_point="youden")
    from peerdistill import export_run
    from peerdistill.errors import ConfigError

    with pytest.raises(ConfigError, match="which cannot be read: the run's data .* has changed since training"):
        export_run(run, "student1", out=tmp_path / "s.onnx", operating_point="youden")


def test_a_run_trained_on_data_not_standardised_scores_other_data_unstandardised(tmp_path):
    """From Python with normalize=False the run records no statistics: data read from a file for
    it is then not standardised by its own statistics either (the models never saw such inputs)."""
    import numpy as np
    import pytest
    import torch

    from peerdistill import (ClassificationTask, Cohort, DataSplits, KnowledgeGraph, Trainer, TrainSpec, evaluate_run,
                             preset_edges)
    from peerdistill.config import DataSpec
    from peerdistill.models import SmallCNN

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 64), ("val", 32), ("test", 32)):
        y = rng.integers(0, 2, n)
        arrays[f"{split}_images"] = np.clip(rng.normal(60, 30, (n, 8, 8)) + 120 * y[:, None, None], 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = y
    np.savez(tmp_path / "d.npz", **arrays)
    tensors = [torch.as_tensor(arrays[f"{s}_{k}"]) for s in ("train", "val", "test") for k in ("images", "labels")]
    raw = DataSplits.from_arrays(*[t.float() / 255 if t.ndim == 3 else t for t in tensors], normalize=False)

    def cohort():
        torch.manual_seed(0)
        return {"student1": SmallCNN(1, 2, width=4, depth=1), "student2": SmallCNN(1, 2, width=4, depth=1)}

    graph = KnowledgeGraph(preset_edges("ml", None, ["student1", "student2"]))
    Trainer(Cohort.from_modules(list(cohort().values())), graph, ClassificationTask(2),
            train=TrainSpec(epochs=2, batch_size=16), progress=False, run_dir=tmp_path / "raw").fit(raw)
    given = evaluate_run(tmp_path / "raw", data=raw, modules=cohort())
    read = evaluate_run(tmp_path / "raw", data_spec=DataSpec(kind="npz", root=str(tmp_path / "d.npz")), modules=cohort())
    for model in given:
        assert read[model]["accuracy"] == pytest.approx(given[model]["accuracy"]), model
        assert read[model]["auc"] == pytest.approx(given[model]["auc"], abs=1e-6), model


def test_other_data_on_another_scale_is_warned_of(tmp_path):
    import warnings

    import numpy as np
    import pytest

    from peerdistill import evaluate_run
    from peerdistill.config import DataSpec
    from peerdistill.errors import PeerdistillWarning
    from tests.conftest import train_two_class_npz_run

    run, arrays = train_two_class_npz_run(tmp_path, seed=0, epochs=1)
    np.savez(tmp_path / "same.npz", **arrays)
    np.savez(tmp_path / "wide.npz", **{k: v * 257 if k.endswith("images") else v for k, v in arrays.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)
        evaluate_run(run, data_spec=DataSpec(kind="npz", root=str(tmp_path / "same.npz")))
    # each image far off (257 times the values: 16-bit beside 8-bit), as predict says of each input
    with pytest.warns(PeerdistillWarning, match=r"^\d+ of 40 scored images lie far outside the intensities of the "
                                                r"training data \(e.g. 'sample \d+ of the test split': values") as caught:
        evaluate_run(run, data_spec=DataSpec(kind="npz", root=str(tmp_path / "wide.npz")))
    assert {w.filename for w in caught} == {__file__}  # the user's call, however deep inside the warning is raised
    named = int(re.match(r"(\d+) of 40", next(str(w.message) for w in caught)).group(1))
    # the others, within the rule one by one, are on another scale taken together: said of them alone
    assert named == 40 or [w for w in caught if str(w.message).startswith(f"the other {40 - named} scored images, "
                                                                         "standardised by the run's training")]
    # shifted by 4 training stds, every image within the per-image rule: the set's mean says it
    shifted = {k: v + 4 * arrays["train_images"].std() if k.endswith("images") else v for k, v in arrays.items()}
    np.savez(tmp_path / "shifted.npz", **shifted)
    with pytest.warns(PeerdistillWarning, match=r"have mean / std -?\d+\.\d\d / \d+\.\d\d per channel, where the run's "
                                                r"own data has about 0 / 1: they are on another scale"):
        evaluate_run(run, data_spec=DataSpec(kind="npz", root=str(tmp_path / "shifted.npz")))
    # one of them flat (and so named image by image) does not hide the others' shift
    level, spread = arrays["train_images"].mean(), arrays["train_images"].std()
    flat = shifted["test_images"][0] * 0 + level + 4 * spread
    flat[0, 0] += spread / 100
    np.savez(tmp_path / "flat.npz", **{**shifted, "test_images": np.concatenate([flat[None], shifted["test_images"][1:]])})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate_run(run, data_spec=DataSpec(kind="npz", root=str(tmp_path / "flat.npz")))
    said = [str(w.message) for w in caught if issubclass(w.category, PeerdistillWarning)]
    assert [m for m in said if m.startswith("1 of 40 scored images vary in intensity far less")]
    assert [m for m in said if m.startswith("the other 39 scored images, standardised by the run's training statistics")]
    # a flat image at the training level (a blank tile) among the run's own is no other scale
    flat = arrays["test_images"][0] * 0 + level
    flat[0, 0] += spread / 100
    np.savez(tmp_path / "blank.npz", **{**arrays, "test_images": np.concatenate([flat[None], arrays["test_images"][1:]])})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)
        evaluate_run(run, data_spec=DataSpec(kind="npz", root=str(tmp_path / "blank.npz")))


def test_other_data_of_another_task_or_grey_for_a_colour_run_is_named(tmp_path):
    import warnings

    import numpy as np
    import pytest
    from PIL import Image

    from peerdistill import evaluate_run
    from peerdistill.build import train_from_config
    from peerdistill.config import DataSpec, validate
    from peerdistill.errors import DataError, PeerdistillWarning

    rng = np.random.default_rng(0)
    for colour, hue in (("red", 0), ("green", 1)):
        for i in range(12):
            pixels = rng.integers(0, 60, (8, 8, 3)).astype(np.uint8)
            pixels[..., hue] += 150 + 10 * (i % 3)
            for root, mode in ((tmp_path / "rgb", "RGB"), (tmp_path / "grey", "L")):
                (root / colour).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).convert(mode).save(root / colour / f"{i}.png")
    small = {"arch": "cnn", "args": {"width": 4, "depth": 1}}
    train_from_config(validate({"name": "c", "out_dir": str(tmp_path), "distill": {"preset": "ml"},
                                "data": {"kind": "image_folder", "root": str(tmp_path / "rgb")},
                                "students": [small, small], "train": {"epochs": 1, "batch_size": 8}}), progress=False)
    run = tmp_path / "c"
    with pytest.raises(DataError, match=r"data kind 'shapes' is segmentation data, but '.*c' is a classification run: "
                                        r"give data of its task \(data.kind digits, npz, image_folder or csv\)"):
        evaluate_run(run, data_spec=DataSpec(kind="shapes"))
    with warnings.catch_warnings(record=True) as said:  # the run's own colour images: not taken for grey ones
        warnings.simplefilter("always")
        evaluate_run(run, split="all", data_spec=DataSpec(kind="image_folder", root=str(tmp_path / "rgb")))
    assert [str(w.message) for w in said] == [str(w.message) for w in said if "training samples of the run" in
                                              str(w.message)] and said  # scored whole: its training images said
    with pytest.warns(PeerdistillWarning, match="the scored images are grey .* but the run learnt from colour images"):
        evaluate_run(run, split="all", data_spec=DataSpec(kind="image_folder", root=str(tmp_path / "grey")))


def test_an_npz_of_test_images_alone_is_scored_whole(tmp_path):
    import warnings

    import numpy as np
    import pytest

    from peerdistill import evaluate_run
    from peerdistill.config import DataSpec
    from peerdistill.errors import DataError
    from tests.conftest import train_two_class_npz_run

    run, arrays = train_two_class_npz_run(tmp_path, seed=0, epochs=1)
    np.savez(tmp_path / "test.npz", test_images=arrays["test_images"], test_labels=arrays["test_labels"][:, None])
    np.savez(tmp_path / "bare.npz", images=arrays["test_images"], labels=arrays["test_labels"])
    own = evaluate_run(run, data_spec=DataSpec(kind="npz", root=str(tmp_path / "d.npz")))
    for name in ("test.npz", "bare.npz"):
        scores = evaluate_run(run, split="all", data_spec=DataSpec(kind="npz", root=str(tmp_path / name)))
        assert scores["ensemble"]["accuracy"] == pytest.approx(own["ensemble"]["accuracy"])  # the same test images
    with warnings.catch_warnings(record=True) as said:  # test images alone: nothing the run trained on
        warnings.simplefilter("always")
        evaluate_run(run, split="all", data_spec=DataSpec(kind="npz", root=str(tmp_path / "test.npz")))
    assert not [w for w in said if "not held out" in str(w.message)]
    with pytest.raises(DataError, match=r"lacks the keys \['train_images', 'train_labels', 'val_images', 'val_labels'\] "
                                        r"\(it holds \['test_images', 'test_labels'\]\): .*or one set of 'images' and "
                                        r"'labels' to cut .*an archive of some splits is scored as one set by eval RUN "
                                        r"--split all"):
        evaluate_run(run, data_spec=DataSpec(kind="npz", root=str(tmp_path / "test.npz")))
    with pytest.raises(DataError, match="is a folder, but data kind 'npz' reads one .npz file"):
        evaluate_run(run, data_spec=DataSpec(kind="npz", root=str(tmp_path)))


def test_the_public_names_are_imported_on_first_use_and_all_resolve():
    # peerdistill imports its names on first use (PEP 562): importing the package brings no torch,
    # and every listed name is there when asked for (engine.evaluate is the function, not the module).
    import ast
    import subprocess
    import sys

    import peerdistill

    assert sorted(peerdistill.__all__) == sorted(peerdistill._ON_FIRST_USE)
    tree = ast.parse(Path(peerdistill.__file__).read_text())
    typed = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    seen = {alias.name: "." * imp.level + imp.module for imp in typed.body for alias in imp.names}
    assert seen == peerdistill._ON_FIRST_USE  # what type checkers see is what is imported
    probe = ("import sys, types\n"
             "import peerdistill\n"
             "assert 'torch' not in sys.modules, 'import peerdistill imported torch'\n"
             "import peerdistill.engine.trainer\n"
             "from peerdistill.engine import evaluate\n"
             "assert isinstance(evaluate, types.FunctionType), evaluate\n"
             "import peerdistill.engine as engine\n"
             "for package in (peerdistill, engine):\n"
             "    assert set(package.__all__) <= set(dir(package))\n"
             "    missing = [n for n in package.__all__ if getattr(package, n, None) is None]\n"
             "    assert not missing, missing\n"
             "from peerdistill import *\n"
             "assert peerdistill.evaluate is engine.evaluate is evaluate\n"
             "print('ok')")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_run_without_students_is_refused_with_its_reason(tmp_path):
    import json

    import pytest

    from peerdistill import load_cohort
    from peerdistill.engine.artifacts import save_weights
    from peerdistill.errors import CheckpointError

    # a run directory written by hand: its run.json lists a teacher alone, whose weights are there
    spec = {"arch": "cnn", "args": {"width": 4, "depth": 1}}
    (tmp_path / "run.json").write_text(json.dumps({"task": "classification", "num_classes": 3, "input_shape": [1, 8, 8],
                                                   "status": "complete",
                                                   "members": [{"name": "teacher", "role": "teacher", "spec": spec}]}))
    save_weights(SmallCNN(in_channels=1, num_classes=3, width=4, depth=1), tmp_path / "models" / "teacher.safetensors")
    with pytest.raises(CheckpointError, match="holds no student models"):
        load_cohort(tmp_path)


def test_renumbering_classes_keeps_padding_ignored_pixels_and_crowd_regions_of_every_class():
    import torch

    from peerdistill.runs import _renumbered

    order = torch.tensor([1, 0])  # the data's class 0 is the run's class 1, and back
    # detection rows [label, x1, y1, x2, y2]: crowd of class 0 (-2), class 0, padding (-1), crowd of class 1 (-3)
    boxes = torch.tensor([[[-2.0, 0, 0, 1, 1], [0, 1, 1, 2, 2], [-1, 0, 0, 0, 0], [-3, 2, 2, 3, 3]]])
    out = _renumbered(boxes, order)
    assert out[0, :, 0].tolist() == [-3.0, 1.0, -1.0, -2.0]  # by hand: crowd -2 - c becomes -2 - order[c]
    assert torch.equal(out[..., 1:], boxes[..., 1:])
    masks = torch.tensor([[[0, 1], [255, 0]]], dtype=torch.uint8)
    assert _renumbered(masks, order).tolist() == [[[1, 0], [255, 1]]]
    assert _renumbered(torch.tensor([0, 1, 1]), order).tolist() == [1, 0, 0]


def test_eval_pictures_go_in_a_folder_of_the_split_scored(tmp_path):
    from peerdistill.config import DataSpec
    from peerdistill.runs import pictures_folder

    assert pictures_folder(tmp_path, "val", None) == tmp_path / "eval" / "val"
    other = pictures_folder(tmp_path, "all", DataSpec(kind="image_folder", root=str(tmp_path / "external")))
    assert other.parent == tmp_path / "eval" and other.name.startswith("all-external-")  # never the run's own


def test_the_runs_own_npz_scored_whole_as_other_data_says_it_holds_the_training_images(tmp_path, monkeypatch):
    import pytest

    from peerdistill import evaluate_run
    from peerdistill.config import DataSpec
    from peerdistill.errors import PeerdistillWarning
    from tests.conftest import train_two_class_npz_run

    import shutil

    run, _ = train_two_class_npz_run(tmp_path, seed=0, epochs=1)
    monkeypatch.chdir(tmp_path)  # the same archive named another way than training named it, or a copy
    (tmp_path / "scratch").mkdir()
    shutil.copy(tmp_path / "d.npz", tmp_path / "scratch" / "copy.npz")
    for root in (str(tmp_path / "d.npz"), "d.npz", "./d.npz", "scratch/copy.npz"):
        with pytest.warns(PeerdistillWarning, match=r"the all split of the run's own data holds its 80 training and "
                                                    r"40 validation samples beside its 40 test ones"):
            scores = evaluate_run(run, split="all", data_spec=DataSpec(kind="npz", root=root))
        assert scores.samples == 160


def test_training_images_saved_anew_and_scored_as_other_data_are_found_by_their_content(tmp_path):
    """Another archive of some training images (another name, other keys, other bytes) is not
    the run's data by any name: the digests the run keeps of its training inputs find them."""
    import json
    import warnings

    import numpy as np
    import pytest

    from peerdistill import DataSplits, evaluate_run
    from peerdistill.config import DataSpec
    from peerdistill.data.digests import read_digests
    from peerdistill.errors import PeerdistillWarning
    from tests.conftest import train_two_class_npz_run

    run, arrays = train_two_class_npz_run(tmp_path, seed=0, epochs=1)
    record = json.loads((run / "train_digests.json").read_text())
    assert record["rows"] == 80 and len(read_digests(record)) == len({a.tobytes() for a in arrays["train_images"]})
    mixed = np.concatenate([arrays["test_images"][:7], arrays["train_images"][10:13]])
    np.savez_compressed(tmp_path / "external.npz", images=mixed, labels=np.zeros(10, dtype=np.int64))
    external = DataSpec(kind="npz", root=str(tmp_path / "external.npz"))
    with pytest.warns(PeerdistillWarning, match=r"3 of 10 scored inputs are identical to inputs the run trained on "
                                                r"\(row 7, row 8, row 9; its training"):
        assert evaluate_run(run, split="all", data_spec=external, per_sample=tmp_path / "ps.csv").samples == 10
    import csv

    rows = [row for row in csv.DictReader((tmp_path / "ps.csv").open()) if row["model"] == "ensemble"]
    assert [int(row["sample"]) for row in rows if row["seen_in_training"] == "1"] == [7, 8, 9]
    np.savez(tmp_path / "held_out.npz", images=arrays["test_images"], labels=arrays["test_labels"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)  # held-out images: nothing to say
        evaluate_run(run, split="all", data_spec=DataSpec(kind="npz", root=str(tmp_path / "held_out.npz")))
    # splits handed over from Python, standardised by the run's statistics as the files are
    stats = json.loads((run / "run.json").read_text())["data_stats"]
    val = arrays["val_images"][:, None], arrays["val_labels"]
    given = DataSplits.from_arrays(*val, *val, mixed[:, None], np.zeros(10, int), stats=stats)
    with pytest.warns(PeerdistillWarning, match=r"3 of 10 scored inputs are identical"):
        evaluate_run(run, data=given)
    # a damaged record is said, and the figures are still given
    (run / "train_digests.json").write_text(json.dumps({**record, "digests": record["digests"][:-8]}))
    with pytest.warns(PeerdistillWarning, match=r"train_digests.json' is damaged, so the scored inputs are not checked"):
        assert evaluate_run(run, split="all", data_spec=external).samples == 10
    (run / "train_digests.json").unlink()
    with pytest.warns(PeerdistillWarning, match=r"train_digests.json' is missing \(run.json says the run kept it\)"):
        assert evaluate_run(run, split="all", data_spec=external).samples == 10


def test_evaluate_run_takes_a_data_section_as_a_dict(tmp_path):
    import pytest

    from peerdistill import evaluate_run
    from peerdistill.config import DataSpec
    from peerdistill.errors import ConfigError
    from tests.conftest import train_two_class_npz_run

    run, _ = train_two_class_npz_run(tmp_path, seed=0, epochs=1)
    section = {"kind": "npz", "root": str(tmp_path / "d.npz")}
    assert evaluate_run(run, data_spec=section) == evaluate_run(run, data_spec=DataSpec(**section))  # was AttributeError
    with pytest.raises(ConfigError, match=r"unknown key 'rot' \(did you mean 'root'\?\)"):
        evaluate_run(run, data_spec={"kind": "npz", "rot": "d.npz"})


def test_the_runs_npz_changed_in_place_with_the_same_split_sizes_is_warned_of(tmp_path):
    import warnings

    import numpy as np
    import pytest

    from peerdistill import evaluate_run
    from peerdistill.errors import PeerdistillWarning
    from tests.conftest import train_two_class_npz_run

    run, arrays = train_two_class_npz_run(tmp_path, seed=0, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)  # the archive as trained on: nothing to say
        evaluate_run(run)
    np.savez(tmp_path / "d.npz", **{**arrays, "test_images": arrays["train_images"][:40]})  # training images as test
    with pytest.warns(PeerdistillWarning, match=r"the run's data at '.*d.npz' is not byte for byte the archive training "
                                                r"read \(its SHA-256 differs from run.json's data_info.sha256\)"):
        evaluate_run(run)


def test_another_file_of_the_runs_relative_data_name_says_where_training_read_it(tmp_path, monkeypatch):
    # "the run's data has changed since training: restore it" sent the user to fix data that was intact
    import json

    import numpy as np
    import pytest

    from peerdistill import evaluate_run
    from peerdistill.errors import DataError
    from tests.conftest import train_two_class_npz_run

    (tmp_path / "project").mkdir()
    run, arrays = train_two_class_npz_run(tmp_path / "project", seed=0, epochs=1)
    meta = json.loads((run / "run.json").read_text())
    meta["data_spec"]["root"] = "d.npz"  # as trained from the project folder with data.root=d.npz
    (run / "run.json").write_text(json.dumps(meta))
    (tmp_path / "elsewhere").mkdir()
    np.savez(tmp_path / "elsewhere" / "d.npz", **{**arrays, "test_images": arrays["test_images"][:5],
                                                 "test_labels": arrays["test_labels"][:5]})
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"^the data at 'd.npz', counted from the folder the command runs in, splits "
                                        r"otherwise than the run's .*\(training read it at '.*project.d.npz', which is "
                                        r"there now\): run eval from the folder training ran in"):
        evaluate_run(run)
    np.savez(tmp_path / "elsewhere" / "d.npz", **{**arrays, "test_images": arrays["train_images"][:40]})
    with pytest.raises(DataError, match=r"^the data at 'd.npz', counted from the folder the command runs in, is not "
                                        r"the archive the run trained on \(its SHA-256 differs.*\(training read it at "
                                        r"'.*project.d.npz', which is there now\): run eval from the folder"):
        evaluate_run(run)  # the same split sizes: it was scored with a warning, as if the run's data had changed
    monkeypatch.chdir(tmp_path / "project")
    assert evaluate_run(run).samples == 40


def test_every_module_imports_on_its_own():
    # `pytest tests/test_per_sample.py` alone failed: per_sample -> engine -> preflight -> per_sample
    # went in a circle that the whole suite, importing another module first, never met
    script = ("import importlib, pkgutil, sys\n"
              "import peerdistill\n"
              "names = [m.name for m in pkgutil.walk_packages(peerdistill.__path__, 'peerdistill.')]\n"
              "failed = []\n"
              "for name in names:\n"
              "    for loaded in [n for n in sys.modules if n == 'peerdistill' or n.startswith('peerdistill.')]:\n"
              "        del sys.modules[loaded]\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "    except Exception as exc:\n"
              "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
              "print(len(names))\n"
              "print('\\n'.join(failed))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    count, *failed = done.stdout.strip().splitlines()
    assert int(count) > 60 and failed == [], failed


def test_a_changed_image_folder_is_refused_naming_the_files_added_and_removed(tmp_path):
    # review 44f: a folder that keeps growing was refused by its split sizes alone; run.json lists every
    # split's files, so the ones to take out (or put back) are named
    import numpy as np
    import pytest
    from PIL import Image

    from peerdistill import evaluate_run
    from peerdistill.build import train_from_config
    from peerdistill.config import validate
    from peerdistill.errors import DataError

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "tree" / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "tree" / label / f"{i}.png")
    train_from_config(validate({"name": "f", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "independent"},
                                "data": {"kind": "image_folder", "root": str(tmp_path / "tree"), "grey": True},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}],
                                "train": {"epochs": 1, "batch_size": 8}}), progress=False)
    before = evaluate_run(tmp_path / "f")["student1"]["accuracy"]
    # a file renamed: the same split sizes, yet 7 files fell in other splits, and were scored in silence
    (tmp_path / "tree" / "b" / "0.png").rename(tmp_path / "tree" / "b" / "new.png")
    with pytest.raises(DataError, match=r"has changed since training \(files since training: 1 added "
                                        r"\('b/new.png'\), 1 removed \('b/0.png'\), \d+ in another split now "
                                        r"\('b/[^)]*\)\): its splits are no longer the run's"):
        evaluate_run(tmp_path / "f")
    (tmp_path / "tree" / "b" / "new.png").rename(tmp_path / "tree" / "b" / "0.png")
    # a file added: the sizes differ, and the file is named
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "tree" / "a" / "extra.png")
    with pytest.raises(DataError, match=r"has changed since training \(split sizes .*; files since training: 1 "
                                        r"added \('a/extra.png'\)"):
        evaluate_run(tmp_path / "f")
    (tmp_path / "tree" / "a" / "extra.png").unlink()
    assert evaluate_run(tmp_path / "f")["student1"]["accuracy"] == before  # as trained: scored as before


def test_classes_matched_to_a_runs_by_name_are_said(tiny_data):
    """Review 49e: eval renumbered data named in another order without a word; masks named by
    data.class_names in a wrong order would so be scored with their classes swapped."""
    import dataclasses

    from peerdistill.runs import _number_classes_as_the_run

    other = dataclasses.replace(tiny_data, class_names=["2", "0", "1"], info={"class_names_given": True})
    with pytest.warns(UserWarning, match=r"the data numbers its classes otherwise than the run, matched by name: "
                                         r"'2' 0 -> 2, '0' 1 -> 0, '1' 2 -> 1 \(check data.class_names"):
        renumbered = _number_classes_as_the_run(other, ["0", "1", "2"])
    assert (renumbered.test.y == (tiny_data.test.y + 2) % 3).all()
    with warnings.catch_warnings():  # a folder tree or a CSV names its own classes: nothing to check
        warnings.simplefilter("error")
        _number_classes_as_the_run(dataclasses.replace(other, info={}), ["0", "1", "2"])


def test_the_python_api_pages_folder_block_reads_a_folder_as_train_does(tmp_path, monkeypatch):
    """docs/python-api.md shows reading a folder of class subfolders from Python (review 55o: it
    was read by hand): run as written, on a folder of that layout."""
    from PIL import Image

    page = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "build_data(DataSpec(" in b)
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for name in ("NORMAL", "PNEUMONIA"):
            (tmp_path / "xrays" / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray((rng.random((20, 24)) * 255).astype(np.uint8)).save(
                    tmp_path / "xrays" / split / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "docs/python-api.md", "exec"), scope)  # noqa: S102 - the page's own block
    data = scope["data"]
    assert data.class_names == ["NORMAL", "PNEUMONIA"] and data.input_shape == (1, 64, 64)
    assert (len(data.train) + len(data.val), len(data.test)) == (24, 8)  # test/ is the test split, val cut from train/
