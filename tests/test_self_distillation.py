"""Self-distillation heads: layers a head or the deep layer may not take, preset self without
heads said in one message, and a headed student fine-tuned from a self-distillation run."""

import json
import shutil
import warnings

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from peerdistill.build import build_cohort, build_member_module
from peerdistill.cli import main
from peerdistill.config import validate
from peerdistill.data import build_data
from peerdistill.errors import ConfigError
from peerdistill.models import SmallCNN
from peerdistill.models.heads import HeadedModel

X = torch.zeros(2, 1, 8, 8)
# SmallCNN(depth=3): features.0-2 conv/bn/relu, .3 pool, .4-6, .7 pool, .8 conv, .9 bn, .10 relu(inplace)
STUDENT = {"arch": "cnn", "args": {"width": 4, "depth": 3}, "heads": ["features.2", "features.6"],
           "deep_layer": "features"}


def config(tmp_path, name="s", **student):
    return {"name": name, "out_dir": str(tmp_path), "data": {"kind": "digits", "split_seed": 0},
            "students": [{**STUDENT, **student}], "distill": {"preset": "self", "rampup_epochs": 0},
            "train": {"epochs": 1, "batch_size": 128}}


def train_cli(tmp_path, capsys, tree, *args, expect=0):
    path = tmp_path / f"{tree['name']}.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert main(["train", str(path), *args]) == expect
    return " ".join(capsys.readouterr().err.split())


class _Tail(nn.Module):
    """A network without a feature_layer of its own: its block, then an identity after it."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())
        self.tail = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.tail(self.body(x)))))


@pytest.mark.parametrize("heads,deep", [
    (["features.2", "features.10"], "features"),  # the deep block's last module gives its output
    (["features.2", "features.9"], "features"),  # changed in place by that ReLU: the same tensor
    (["features.9"], "features.10"),
])
def test_a_head_on_the_deep_layers_own_output_is_refused(heads, deep):
    with pytest.raises(ConfigError) as info:
        HeadedModel(SmallCNN(1, 3, 4, 3), heads, deep, 3, X)
    said = " ".join(str(info.value).split())
    assert (f"model: head layer '{heads[-1]}' gives the very output of deep_layer '{deep}' (one tensor: the deep "
            "block's last layer, or one it changes in place), whose features every head learns from, so its head "
            f"would learn them from themselves: put the head on an earlier layer, one that runs before '{deep}' "
            "ends") == said
    if heads[-1] == "features.10":  # a saved run that trained so is read back as it trained
        HeadedModel(SmallCNN(1, 3, 4, 3), heads, deep, 3, X, check_depth=False)


def test_a_head_on_a_layer_that_passes_the_deep_output_on_is_refused_and_an_earlier_one_taken():
    with pytest.raises(ConfigError, match="head layer 'tail' gives the very output of deep_layer 'body'"):
        HeadedModel(_Tail(), ["body.1", "tail"], "body", 3, X)
    with pytest.raises(ConfigError, match="head layer 'body.3' gives the very output of deep_layer 'body'"):
        HeadedModel(_Tail(), ["body.3"], "body", 3, X)
    net = HeadedModel(_Tail(), ["body.1"], "body", 3, X)
    assert set(net(X)["heads"]) == {"body.1"}


def test_the_deep_layer_itself_as_a_head_says_why():
    with pytest.raises(ConfigError) as info:
        HeadedModel(SmallCNN(1, 3, 4, 3), ["features.2", "features"], "features", 3, X,
                    deep_from="deep_layer (unset: the model's last feature block)")
    assert " ".join(str(info.value).split()) == (
        "model: head layer 'features' is the deepest layer itself, deep_layer (unset: the model's last feature "
        "block) 'features', whose features every head learns from: a head there would learn them from "
        "themselves; put heads on earlier layers")


def test_a_deep_layer_that_gives_the_logits_is_refused_naming_the_feature_layer():
    with pytest.raises(ConfigError) as info:
        HeadedModel(SmallCNN(1, 3, 4, 3), ["features.2"], "classifier", 3, X)
    assert " ".join(str(info.value).split()) == (
        "model: deep_layer 'classifier' gives the network's own output (its classifier's scores), where "
        "deep_layer is the last feature layer before the classifier, whose features the heads are matched to: "
        "set deep_layer to the feature layer before it, 'features'")
    # a network naming no feature layer: the last block with weights before the classifier
    # (pooling and flattening passed over)
    with pytest.raises(ConfigError, match="deep_layer 'fc' gives the network's own output .* set deep_layer to "
                                          "the feature layer before it, 'body'"):
        HeadedModel(_Tail(), ["body.1"], "fc", 3, X)
    HeadedModel(_Tail(), ["body.1"], "body", 3, X)
    HeadedModel(SmallCNN(1, 3, 4, 3), ["features.2"], "classifier", 3, X, check_depth=False)  # (a saved run)


def test_layers_of_the_deep_output_are_refused_from_the_command_line(tmp_path, capsys):
    said = train_cli(tmp_path, capsys, config(tmp_path, heads=["features.2", "features.10"]), "--dry-run", expect=2)
    assert "error: model 'student1': head layer 'features.10' gives the very output of deep_layer 'features'" in said
    said = train_cli(tmp_path, capsys, config(tmp_path, deep_layer="classifier"), "--dry-run", expect=2)
    assert ("error: model 'student1': deep_layer 'classifier' gives the network's own output (its classifier's "
            "scores)") in said and "set deep_layer to the feature layer before it, 'features'" in said
    # the deep layer unset: the model's own feature block, so named
    said = train_cli(tmp_path, capsys, config(tmp_path, heads=["features.10"], deep_layer=None), "--dry-run",
                     expect=2)
    assert ("head layer 'features.10' gives the very output of deep_layer (unset: the model's last feature block) "
            "'features'") in said
    assert not (tmp_path / "s").exists()


def test_emptied_heads_are_refused_once_with_both_ways_out(tmp_path, capsys):
    tree = config(tmp_path, heads=[])
    tree["distill"]["self_alpha"] = 0.3
    said = train_cli(tmp_path, capsys, tree, "--dry-run", expect=2)
    assert said.split(f"error: invalid config '{tmp_path / 's.yaml'}': ")[1] == (
        "preset 'self' needs heads on a student (students.0.heads is empty): set students.N.heads to module paths, "
        "e.g. students.0.heads=[PATH, ...] on layers that run before its deep_layer 'features'; or, to train "
        "without heads, set distill.preset to another preset (independent: each model learns from the labels "
        "alone), and remove students.0.deep_layer, distill.self_alpha, which only heads read")
    # either way out, taken as said, is accepted at once
    train_cli(tmp_path, capsys, tree, "students.0.heads=[features.2]", "--dry-run")
    without = config(tmp_path, heads=[], deep_layer=None)
    without["distill"] = {"preset": "independent"}
    train_cli(tmp_path, capsys, without, "--dry-run")


def test_a_deep_layer_without_heads_under_another_preset_names_its_key():
    tree = {"students": [{"arch": "cnn", "heads": [], "deep_layer": "features"}, {"arch": "cnn"}],
            "distill": {"preset": "ml"}}
    with pytest.raises(ConfigError) as info:
        validate(tree)
    assert ("students.0.deep_layer is the layer self-distillation heads learn from, and students.0 has no heads: "
            "set students.0.heads too, or remove students.0.deep_layer") in " ".join(str(info.value).split())
    # a frozen teacher takes no heads: told to remove its deep_layer alone
    tree = {"teacher": {"arch": "cnn", "frozen": True, "checkpoint": "t.safetensors", "deep_layer": "features.2"},
            "students": [{"arch": "cnn"}, {"arch": "cnn"}], "distill": {"preset": "kd"}}
    with pytest.raises(ConfigError) as info:
        validate(tree)
    said = " ".join(str(info.value).split())
    assert ("teacher.deep_layer is the layer self-distillation heads learn from, and teacher has no heads: remove "
            "teacher.deep_layer (a frozen model has no heads: they would never learn)") in said
    assert "set teacher.heads" not in said


def _refusal(tree) -> str:
    with pytest.raises(ConfigError) as info:
        validate(tree)
    return " ".join(str(info.value).split())


def test_a_model_spec_built_in_python_with_a_deep_layer_and_no_heads_is_refused_as_in_a_config():
    """build_member_module ignored it without a word: RunConfig refused it, a ModelSpec alone was not judged."""
    from peerdistill.config import ModelSpec

    spec = ModelSpec(arch="cnn", args={"width": 4, "depth": 3}, deep_layer="features")
    with pytest.raises(ConfigError) as info:
        build_member_module(spec, "student1", (1, 8, 8), 10, key="students.0")
    config_said = _refusal({"students": [{"arch": "cnn", "deep_layer": "features"}, {"arch": "cnn"}],
                            "distill": {"preset": "ml"}})
    assert str(info.value) == ("students.0.deep_layer is the layer self-distillation heads learn from, and "
                               "students.0 has no heads: set students.0.heads too, or remove students.0.deep_layer")
    assert str(info.value) in config_said  # the very words of the config's refusal
    # without a config key, the model's name; a frozen model is told to remove it alone
    frozen = ModelSpec(arch="cnn", frozen=True, checkpoint="t.safetensors", deep_layer="features.2")
    with pytest.raises(ConfigError, match=r"^teacher\.deep_layer is the layer self-distillation heads learn from, "
                                          r"and teacher has no heads: remove teacher\.deep_layer \(a frozen model "
                                          r"has no heads: they would never learn\)$"):
        build_member_module(frozen, "teacher", (1, 8, 8), 10)
    # a saved run's (earlier versions ignored it) is still built, as its config is still read
    assert isinstance(build_member_module(spec, "student1", (1, 8, 8), 10, saved=True, key="students.0"), SmallCNN)


def test_preset_self_without_heads_names_each_emptied_key_and_no_head_at_the_deep_layer():
    tree = {"teacher": None, "distill": {"preset": "self"},
            "students": [{"arch": "cnn", "heads": []}, {"arch": "cnn", "heads": []}]}
    with pytest.raises(ConfigError) as info:
        validate(tree)
    assert "(students.0.heads, students.1.heads are empty)" in " ".join(str(info.value).split())
    tree = {"teacher": None, "distill": {"preset": "self"}, "students": [{"arch": "cnn", "deep_layer": "features.2"}]}
    with pytest.raises(ConfigError) as info:
        validate(tree)
    said = " ".join(str(info.value).split())
    assert "e.g. students.0.heads=[PATH, ...] on layers that run before its deep_layer 'features.2'" in said
    assert "heads=[features.2]" not in said


def _heads_of(run, name="student1"):
    return load_file(run / "heads" / f"{name}.safetensors")


def test_fine_tuning_a_headed_student_carries_on_its_heads(tmp_path, capsys):
    first = tmp_path / "s"
    train_cli(tmp_path, capsys, config(tmp_path), "--quiet")
    saved = _heads_of(first)
    # from the run: every head on the same layer takes that run's weights, without a word
    tree = config(tmp_path, "f", checkpoint=str(first))
    cfg = validate(tree)
    notes = []
    module = build_member_module(cfg.students[0], "student1", (1, 8, 8), 10, key="students.0", notes=notes)
    assert notes == []
    own = module.heads.state_dict()
    assert set(own) == set(saved) and all(torch.equal(own[k], saved[k]) for k in saved)
    # heads moved: the one on a layer the run had carries on, the other starts afresh, said so
    tree = config(tmp_path, "g", checkpoint=str(first / "models" / "student1.safetensors"),
                  heads=["features.4", "features.6"])
    said = train_cli(tmp_path, capsys, tree, "--dry-run")
    note = (f"model 'student1': its self-distillation heads at ['features.4'] start from fresh weights: its "
            f"checkpoint, run '{first}' (whose model '{first / 'models' / 'student1.safetensors'}' is given), "
            "trained heads at ['features.2', 'features.6'] (those at ['features.6'] carry on from that run's)")
    assert f"warning: {note}" in said
    notes = []
    module = build_member_module(validate(tree).students[0], "student1", (1, 8, 8), 10, notes=notes)
    assert notes == [note]
    assert torch.equal(module.heads[1].bottleneck[0].weight, saved["1.bottleneck.0.weight"])
    assert not torch.equal(module.heads[0].bottleneck[0].weight, saved["1.bottleneck.0.weight"])
    # a shallower deep_layer: the heads' features are narrower than the run's, so they start afresh, said why
    tree = config(tmp_path, "n", checkpoint=str(first), heads=["features.2"], deep_layer="features.6")
    notes = []
    build_member_module(validate(tree).students[0], "student1", (1, 8, 8), 10, notes=notes)
    assert notes == [f"model 'student1': its self-distillation heads at ['features.2'] start from fresh weights: its "
                     f"checkpoint, run '{first}', trained heads at ['features.2', 'features.6'], and those at "
                     "['features.2'] do not fit them (another deep_layer's width, or number of classes)"]


def test_a_headed_student_from_weights_alone_says_its_heads_start_afresh(tmp_path, capsys):
    first = tmp_path / "s"
    train_cli(tmp_path, capsys, config(tmp_path), "--quiet")
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes((first / "models" / "student1.safetensors").read_bytes())
    said = train_cli(tmp_path, capsys, config(tmp_path, "b", checkpoint=str(bare)), "--quiet")
    note = (f"model 'student1': its self-distillation heads at ['features.2', 'features.6'] start from fresh "
            f"weights: its checkpoint '{bare}' is a weights file of the network alone; to carry on the heads of "
            "a self-distillation run, give that run's directory as the checkpoint")
    assert f"warning: {note}" in said
    # kept with the run's warnings, and by a resume's run.json, not said again by it
    kept = json.loads((tmp_path / "b" / "run.json").read_text())["training_warnings"]
    assert note in kept
    from peerdistill.config import load_saved_config

    cfg = load_saved_config(tmp_path / "b" / "config.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cohort = build_cohort(cfg, build_data(cfg.data), saved=True)
    assert note in cohort.warnings_when_built and not [w for w in caught if note == str(w.message)]
    # a run trained without heads, its network given heads now: they start afresh, said so
    plain = config(tmp_path, "p", heads=[], deep_layer=None)
    plain["distill"] = {"preset": "independent"}
    train_cli(tmp_path, capsys, plain, "--quiet")
    said = train_cli(tmp_path, capsys, config(tmp_path, "h", checkpoint=str(tmp_path / "p")), "--dry-run")
    assert (f"its self-distillation heads at ['features.2', 'features.6'] start from fresh weights: its checkpoint, "
            f"run '{tmp_path / 'p'}', trained 'student1' without self-distillation heads") in said



class _Residual(nn.Module):
    """A ResNet basic block as torchvision writes it: one ReLU(inplace=True) after bn1 and again
    after ``out += x``, so the block's output is bn2's tensor changed in place."""

    def __init__(self, channels):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += x
        return self.relu(out)


class _ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.layer1, self.layer2 = nn.Conv2d(1, 4, 3, padding=1), _Residual(4), _Residual(4)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.layer2(self.layer1(self.stem(x))))


def test_a_head_changed_in_place_inside_its_deep_block_is_told_a_way_that_fits_a_head():
    """The in-place advice (record the ReLU, or the block) suits a feature edge; for a head inside
    its deep layer's block both give the deep layer's own output, refused next: the message says
    so and names what fits a head, which builds."""
    from peerdistill.capture import FeatureRecorder

    with pytest.raises(ConfigError) as refused:
        HeadedModel(_ResidualNet(), ["layer2.bn1"], "layer2", 3, X)
    said = str(refused.value)
    assert "['layer2.bn1'] is changed in place by a later module" in said
    assert said.endswith("; 'layer2' is recorded here too (a self-distillation deep layer, say), and that block, or a "
                         "ReLU that ends it, gives the block's own output: for a head inside it, record a layer whose "
                         "output no later module changes in place (a convolution followed by a BatchNorm, say) or a "
                         "layer of an earlier block")
    for what_it_names in (["layer2.conv1"], ["layer1"]):  # the ways it names build
        HeadedModel(_ResidualNet(), what_it_names, "layer2", 3, X)
    for head in ("layer2.relu", "layer2"):  # (the ways that fit an edge do not, here)
        with pytest.raises(ConfigError, match="very output|deepest layer itself"):
            HeadedModel(_ResidualNet(), [head], "layer2", 3, X)
    # an edge's layer alone (its block not recorded): the edge's advice only
    net = _ResidualNet()
    recorder = FeatureRecorder(net, ["layer2.bn1"])
    net(X)
    with pytest.raises(ConfigError) as refused:
        recorder.take()
    assert str(refused.value).endswith("the block that holds that code ('layer2')")


def test_a_headed_student_resumes_without_the_run_it_was_fine_tuned_from_keeping_its_heads_note(tmp_path, capsys):
    """The resume checkpoint holds the student's weights and heads: the run it started from, gone
    since, is not needed, and run.json keeps the note of how its heads began, not one guessed anew."""
    from peerdistill.build import train_from_config

    first = tmp_path / "s"
    train_cli(tmp_path, capsys, config(tmp_path), "--quiet")
    tree = config(tmp_path, "g", checkpoint=str(first), heads=["features.4", "features.6"])
    tree["train"]["epochs"] = 2

    def crash(epoch, row):
        if epoch == 0:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_from_config(validate(tree), progress=False, callbacks=[crash])
    note = (f"model 'student1': its self-distillation heads at ['features.4'] start from fresh weights: its "
            f"checkpoint, run '{first}', trained heads at ['features.2', 'features.6'] (those at ['features.6'] carry "
            "on from that run's)")
    assert json.loads((tmp_path / "g" / "run.json").read_text())["training_warnings"] == [note]
    shutil.copytree(tmp_path / "g", tmp_path / "g2")
    first.rename(tmp_path / "gone")
    assert main(["train", "--resume", str(tmp_path / "g"), "--quiet"]) == 0
    assert json.loads((tmp_path / "g" / "run.json").read_text())["training_warnings"] == [note]
    assert note not in " ".join(capsys.readouterr().err.split())  # (said when the run began, not again)
    # another run in its place since, trained without heads: the note stays the one of the run it began from
    plain = config(tmp_path, "s", heads=[], deep_layer=None)
    plain["distill"] = {"preset": "independent"}
    train_cli(tmp_path, capsys, plain, "--quiet")
    assert main(["train", "--resume", str(tmp_path / "g2"), "--quiet"]) == 0
    assert json.loads((tmp_path / "g2" / "run.json").read_text())["training_warnings"] == [note]


def test_a_head_after_the_deep_layer_that_is_also_changed_in_place_is_refused_for_its_order_first():
    # features.9 (a BatchNorm) runs after deep_layer features.6, and the ReLU(inplace=True) after it
    # changes its output: the order is said first, since moving the head earlier mends both
    # (said the other way round, following the in-place advice led to the order refusal next)
    with pytest.raises(ConfigError) as refused:
        HeadedModel(SmallCNN(1, 10, width=4, depth=3), ["features.9"], "features.6", 10, X, owner="model 'student1'")
    assert str(refused.value) == (
        "model 'student1': head layer(s) ['features.9'] run after deep_layer 'features.6', whose features each head "
        "learns from: heads sit on shallower layers; pick earlier ones, or a deeper deep_layer (forward order: "
        "features.6, features.9)")
