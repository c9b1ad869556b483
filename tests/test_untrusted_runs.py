"""A run folder from elsewhere is data: reading it (eval, predict, export, report) never calls a
factory its run.json names unless the user trusts it."""

import json

import pytest
from PIL import Image

from peerdistill.cli import main
from peerdistill.errors import CheckpointError
from peerdistill.trust import check_trusted_arch


@pytest.fixture
def run_naming(fast_tree, tmp_path):
    """A finished run whose run.json is then edited to name another factory for student2."""
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    train_from_config(validate(fast_tree | {"train": {"epochs": 1, "batch_size": 256}, "distill": {"rampup_epochs": 0}}),
                      progress=False)
    run = tmp_path / "runs" / "t"

    def edit(spec):
        meta = json.loads((run / "run.json").read_text())
        meta["members"][2]["spec"] = spec
        (run / "run.json").write_text(json.dumps(meta))
        return run
    return edit


def test_a_run_naming_a_command_runs_nothing(run_naming, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "ran"
    run = run_naming({"arch": "os:system", "args": {"command": f"touch {marker}"}})
    image = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(image)
    for command in (["eval", str(run)], ["predict", str(run), str(image), "--model", "student2",
                                         "--out", str(tmp_path / "p.csv")],
                    ["export", str(run), "--model", "student2", "--out", str(tmp_path / "m.onnx")]):
        assert main(command) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "names the model factory 'os:system'" in err and "PEERDISTILL_TRUSTED_ARCHS=os" in err
        assert not marker.exists()
    # a listed module trusts its own definitions, not what it imports: os.system is posix's
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "os")
    assert main(["eval", str(run)]) == 2
    assert ("'os:system', which is not defined in 'os' (the module PEERDISTILL_TRUSTED_ARCHS trusts) nor in another "
            "module it trusts, but in 'posix'") \
        in " ".join(capsys.readouterr().err.split()) and not marker.exists()
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "os:system")  # the path itself: then it is built (and fails as such)
    assert main(["eval", str(run)]) == 2
    assert "returned int, not a torch.nn.Module" in capsys.readouterr().err and marker.exists()


def test_resuming_a_run_whose_config_names_a_command_runs_nothing(run_naming, tmp_path, capsys):
    # train --resume builds the models from the folder's config.yaml: a folder from elsewhere is data there too
    import yaml

    marker = tmp_path / "ran"
    run = run_naming({"arch": "cnn", "args": {"width": 4, "depth": 1}})
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(meta | {"status": "running"}))  # as if killed: resumable
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["students"][1] = {"arch": "os:system", "args": {"command": f"touch {marker}"}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--resume", str(run)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"'{run / 'config.yaml'}' (model 'student2') names the model factory 'os:system'" in err
    assert "PEERDISTILL_TRUSTED_ARCHS=os" in err and not marker.exists()


def test_model_libraries_and_listed_modules_are_built(run_naming, capsys, monkeypatch):
    check_trusted_arch("cnn", "here")
    check_trusted_arch("peerdistill.models:SmallCNN", "here")
    check_trusted_arch("peerdistill.models.torchvision_detection:TorchvisionFCOS", "here")
    with pytest.raises(CheckpointError, match="names the model factory 'torchvisionx:f'"):
        check_trusted_arch("torchvisionx:f", "here")  # a prefix of a name is not its package
    check_trusted_arch("mymodels.nets:Net", "here", trusted={"mymodels.nets:Net"})  # a comparison's own config
    run = run_naming({"arch": "tests.test_untrusted_runs:tiny_student", "args": {}})
    assert main(["eval", str(run), "--json"]) == 2
    assert "PEERDISTILL_TRUSTED_ARCHS=tests.test_untrusted_runs" in " ".join(capsys.readouterr().err.split())
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "somewhere, tests")  # modules, comma-separated
    assert main(["eval", str(run), "--json"]) == 0


def tiny_student(in_channels, num_classes):
    """The fixture's student2 (cnn, width 4, depth 1), named by import path."""
    from peerdistill.models import SmallCNN

    return SmallCNN(in_channels=in_channels, num_classes=num_classes, width=4, depth=1)


class _Command:
    """Pickles as a call of os.system, as a tampered checkpoint would."""

    def __reduce__(self):
        import os

        return (os.system, ("echo should-never-run",))


def test_a_resume_checkpoint_holding_objects_is_refused_without_advice_to_unsafe_loading(tmp_path):
    import torch

    from peerdistill.engine.resume import load_resume_state

    torch.save({"state": _Command()}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError) as caught:
        load_resume_state(tmp_path / "last.pt")
    message = str(caught.value)
    assert "holds more than tensors" in message and ("posix.system" in message or "os.system" in message)
    assert "weights_only" not in message and "start the run again" in message


def test_a_raw_pickle_given_as_a_checkpoint_is_refused_without_torchs_noise(tmp_path):
    # torch printed a 2-line advice to file an issue about the pickle's protocol before the refusal
    import pickle
    import warnings

    from peerdistill.engine.state_files import read_state

    with open(tmp_path / "raw.pt", "wb") as handle:
        pickle.dump({"state": _Command()}, handle, protocol=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError, match=r"raw.pt' for teacher holds more than tensors"):
            read_state(tmp_path / "raw.pt", "teacher", set())


@pytest.mark.parametrize("arch", [
    "peerdistill.engine.artifacts:os.system",  # peerdistill's modules other than its models
    "peerdistill.models:difflib.get_close_matches",  # reached through a module the models' module imports
    "peerdistill.models:count_parameters",  # a function of the models' module that builds no model
    "peerdistill.models:build_model",  # returns a model, built from whatever arch its arguments name
])
def test_only_a_model_librarys_models_are_built_from_a_run(arch):
    from peerdistill.trust import check_trusted_arch

    with pytest.raises(CheckpointError, match=rf"^here names (the model factory )?'{arch}'.*PEERDISTILL_TRUSTED_ARCHS="):
        check_trusted_arch(arch, "here")


@pytest.mark.parametrize("spec", [
    {"arch": "peerdistill.engine.artifacts:os.system", "args": {"command": "touch MARKER"}},
    {"arch": "peerdistill.models:build_model", "args": {"arch": "os:system", "args": {"command": "touch MARKER"}}},
])
def test_a_run_reaching_a_command_through_a_library_module_runs_nothing(run_naming, tmp_path, capsys, spec):
    marker = tmp_path / "ran"
    run = run_naming(json.loads(json.dumps(spec).replace("MARKER", str(marker))))
    assert main(["eval", str(run)]) == 2
    assert f"'{spec['arch']}'" in " ".join(capsys.readouterr().err.split())
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0  # the page, without predictions
    assert "Predictions skipped" in (tmp_path / "r.html").read_text(encoding="utf-8")
    assert not marker.exists()


def test_a_run_may_not_make_a_library_model_read_files(run_naming, capsys, monkeypatch):
    run = run_naming({"arch": "peerdistill.models:SmallCNN", "args": {"checkpoint_path": "elsewhere.pth"}})
    assert main(["eval", str(run)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "gives 'peerdistill.models:SmallCNN' the arguments ['checkpoint_path'], which make it read files" in err
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "peerdistill.models:SmallCNN")  # then built (and fails as such)
    assert main(["eval", str(run)]) == 2
    assert "checkpoint_path" in capsys.readouterr().err
    # timm's model_name schemes (local-dir:, hf-hub:, in any case) read a folder or download: refused
    # for any model factory, which needs neither library to check
    monkeypatch.delenv("PEERDISTILL_TRUSTED_ARCHS")
    for name in ("local-dir:/somewhere", "LOCAL-DIR:/somewhere", "hf-hub:someone/model"):
        with pytest.raises(CheckpointError, match="the arguments \\['model_name'\\], which make it read files"):
            check_trusted_arch("peerdistill.models:SmallCNN", "here", args={"model_name": name})
    check_trusted_arch("peerdistill.models:SmallCNN", "here", args={"model_name": "resnet18"})  # a name alone reads nothing


def test_a_trusted_module_does_not_trust_a_module_whose_name_merely_starts_like_it():
    # PEERDISTILL_TRUSTED_ARCHS=tests trusts tests and tests.*, not tests_elsewhere (refused before any import)
    with pytest.raises(CheckpointError, match="names the model factory 'tests_elsewhere:Net'"):
        check_trusted_arch("tests_elsewhere:Net", "here", trusted=("tests",))


@pytest.mark.parametrize("argument", ["checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir",
                                      "pretrained_path"])
def test_every_argument_naming_a_file_to_read_is_refused(argument):
    with pytest.raises(CheckpointError, match=rf"the arguments \['{argument}'\], which make it read files"):
        check_trusted_arch("peerdistill.models:SmallCNN", "here", args={argument: "elsewhere"})



def test_a_library_function_counts_as_a_model_factory_only_when_annotated_to_return_a_module():
    from torch import nn

    import functools

    from peerdistill.trust import _builds_a_model

    def factory() -> nn.Linear:
        return nn.Linear(1, 1)

    def lister() -> list:
        return []

    def unannotated():
        return nn.Linear(1, 1)

    # torchvision's list_models or get_model_weights would pass the package check: the annotation must refuse them
    assert _builds_a_model(factory, own=False) and _builds_a_model(nn.Linear, own=False)
    assert not _builds_a_model(lister, own=False) and not _builds_a_model(unannotated, own=False)
    # a callable object (a partial binding who knows what) is no function: its own annotation is not trusted
    assert not _builds_a_model(functools.partial(factory), own=False)


def _own_modules(folder, names, monkeypatch):
    """Modules of one's own, each defining ``net`` (a SmallCNN), importable from ``folder``."""
    for name in names:
        (folder / f"{name}.py").write_text("from peerdistill.models import SmallCNN\n\n\n"
                                           "def net(in_channels, num_classes, width=4):\n"
                                           "    return SmallCNN(in_channels, num_classes, width=width, depth=1)\n")
    monkeypatch.syspath_prepend(str(folder))


def test_every_untrusted_factory_of_a_run_is_named_at_once_with_one_value_allowing_them_all(
        run_naming, tmp_path, capsys, monkeypatch):
    # refused one model at a time, a run of three modules of one's own took three tries to allow
    _own_modules(tmp_path, ["mine_a", "mine_b"], monkeypatch)
    run = run_naming({"arch": "mine_b:net", "args": {"width": 4}})
    meta = json.loads((run / "run.json").read_text())
    meta["members"][1]["spec"] = {"arch": "mine_a:net", "args": {"width": 4}}
    meta["members"][0]["spec"] = {"arch": "peerdistill.models:build_model", "args": {}}
    (run / "run.json").write_text(json.dumps(meta))
    assert main(["eval", str(run)]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert ("names model factories that building would import and call, which a run folder from elsewhere may not "
            "have built: peerdistill.models:build_model (teacher); mine_a:net (student1); mine_b:net (student2)") in said
    assert "PEERDISTILL_TRUSTED_ARCHS=peerdistill.models:build_model,mine_a,mine_b peerdistill" in said
    # why the first is refused, and one advice for all (the first's own advice was given too: review 48c)
    assert (f". Why the first is refused: '{run / 'run.json'}' (model 'teacher') names 'peerdistill.models:build_model', "
            "which is not a model class or model factory of peerdistill.models") in said
    assert said.count("PEERDISTILL_TRUSTED_ARCHS=") == 1 and "If the run is yours" not in said
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "mine_a,mine_b")
    assert main(["eval", str(run)]) == 2  # the two allowed: the one left is refused alone, in its own words
    said = " ".join(capsys.readouterr().err.split())
    assert "(model 'teacher') names 'peerdistill.models:build_model'" in said and "mine_a:net" not in said
    assert "PEERDISTILL_TRUSTED_ARCHS=mine_a,mine_b,peerdistill.models:build_model peerdistill" in said  # kept


def test_the_value_allowing_several_refusals_keeps_what_is_trusted_and_names_paths_reached_through_it(
        run_naming, tmp_path, capsys, monkeypatch):
    # trusting the module again cannot allow a path reached through it: the advice, followed, failed
    _own_modules(tmp_path, ["mine_c", "mine_d"], monkeypatch)
    run = run_naming({"arch": "mine_d:net", "args": {"width": 4}})
    meta = json.loads((run / "run.json").read_text())
    meta["members"][1]["spec"] = {"arch": "mine_c:SmallCNN", "args": {"width": 4, "depth": 1}}
    meta["members"][0]["spec"] = {"arch": "mine_c:net", "args": {"width": 8}}
    (run / "run.json").write_text(json.dumps(meta))
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "mine_c")
    assert main(["eval", str(run)]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "mine_c:SmallCNN (student1); mine_d:net (student2)" in said
    assert "PEERDISTILL_TRUSTED_ARCHS=mine_c,mine_c:SmallCNN,mine_d peerdistill" in said
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "mine_c,mine_c:SmallCNN,mine_d")  # the advice, followed
    main(["eval", str(run)])
    assert "PEERDISTILL_TRUSTED_ARCHS" not in capsys.readouterr().err


def test_one_refusal_keeps_what_is_trusted_and_one_factory_of_several_models_is_said_once(
        run_naming, tmp_path, capsys, monkeypatch):
    # PEERDISTILL_TRUSTED_ARCHS=mine_f allowed student2; the advice for student1 set mine_e alone, refusing student2
    _own_modules(tmp_path, ["mine_e", "mine_f"], monkeypatch)
    run = run_naming({"arch": "mine_f:net", "args": {"width": 4}})
    meta = json.loads((run / "run.json").read_text())
    meta["members"][1]["spec"] = {"arch": "mine_e:net", "args": {"width": 4}}
    (run / "run.json").write_text(json.dumps(meta))
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "mine_f")
    assert main(["eval", str(run)]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "(model 'student1') names the model factory 'mine_e:net'" in said
    assert "PEERDISTILL_TRUSTED_ARCHS=mine_f,mine_e peerdistill ... (or PEERDISTILL_TRUSTED_ARCHS=mine_f,mine_e:net)" \
        in said
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "mine_f,mine_e")  # the advice, followed
    assert main(["eval", str(run)]) == 0
    capsys.readouterr()
    meta["members"][2]["spec"] = {"arch": "mine_e:net", "args": {"width": 4}}  # both students one factory
    (run / "run.json").write_text(json.dumps(meta))
    monkeypatch.delenv("PEERDISTILL_TRUSTED_ARCHS")
    assert main(["eval", str(run)]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "(models 'student1', 'student2') names the model factory 'mine_e:net'" in said
    assert "names model factories" not in said and said.count("PEERDISTILL_TRUSTED_ARCHS=mine_e ") == 1


def test_a_factory_reached_through_one_trusted_module_and_defined_in_another_is_allowed(
        run_naming, tmp_path, capsys, monkeypatch):
    # only the first trusted module containing the path was asked where the factory is defined
    _own_modules(tmp_path, ["mine_g"], monkeypatch)
    (tmp_path / "mine_h.py").write_text("from mine_g import net as small  # noqa: F401\n")
    run = run_naming({"arch": "mine_h:small", "args": {"width": 4}})
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "mine_h")
    assert main(["eval", str(run)]) == 2
    assert "which is not defined in 'mine_h'" in " ".join(capsys.readouterr().err.split())
    monkeypatch.setenv("PEERDISTILL_TRUSTED_ARCHS", "mine_h,mine_g")  # the module that defines it, trusted too
    assert main(["eval", str(run)]) == 0
