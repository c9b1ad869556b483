"""Users' own models that earlier versions mishandled: lazy layers, transformer token features,
checkpointed blocks, a final .squeeze(), a model that cannot take the data."""

import re

import pytest
import torch
import torch.utils.checkpoint as activation_checkpoint
from torch import nn

from peerdistill import Cohort, Edge, KnowledgeGraph, Trainer, TrainSpec, evaluate_run, load_cohort, preset_edges
from peerdistill.engine import seed_everything
from peerdistill.errors import ConfigError, DataError, PeerdistillWarning
from peerdistill.models.heads import HeadedModel
from peerdistill.tasks import ClassificationTask

FAST = TrainSpec(epochs=1, batch_size=32)


class LazyNet(nn.Module):
    """Layers that learn their input sizes at the first forward."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.features = nn.Sequential(nn.LazyConv2d(width, 3, padding=1), nn.ReLU(), nn.Flatten())
        self.fc = nn.LazyLinear(3)

    def forward(self, x):
        return self.fc(self.features(x))


class TokenNet(nn.Module):
    """A tiny vision transformer: patches -> an encoder block -> LayerNorm ``norm`` -> mean -> head."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.embed = nn.Conv2d(1, dim, 2, stride=2)
        self.blocks = nn.Sequential(nn.TransformerEncoderLayer(dim, 2, dim * 2, dropout=0.0, batch_first=True))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        tokens = self.norm(self.blocks(self.embed(x).flatten(2).transpose(1, 2)))
        return self.head(tokens.mean(dim=1))


class CheckpointedNet(nn.Module):
    """Its middle block recomputed in the backward pass (activation checkpointing)."""

    def __init__(self, reentrant: bool, width: int = 4):
        super().__init__()
        self.reentrant = reentrant
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(width, 3)

    def forward(self, x):
        x = self.stem(x)
        x = activation_checkpoint.checkpoint(self.block, x, use_reentrant=self.reentrant) if self.training else self.block(x)
        return self.fc(x.mean(dim=(2, 3)))


def _fit(students, teacher, edges, tiny_data, run_dir=None):
    cohort = Cohort.from_modules(students, teacher=teacher)
    trainer = Trainer(cohort, KnowledgeGraph(edges), ClassificationTask(3), device="cpu", progress=False, train=FAST,
                      run_dir=run_dir)
    return trainer, trainer.fit(tiny_data)


def test_a_cohort_of_lazy_models_trains_and_is_read_back(tiny_data, tmp_path):
    seed_everything(0)
    _, result = _fit([LazyNet(), LazyNet()], LazyNet(8), preset_edges("kd+ml", "teacher", ["student1", "student2"]),
                     tiny_data, run_dir=tmp_path / "run")
    fresh = {"teacher": LazyNet(8), "student1": LazyNet(), "student2": LazyNet()}
    cohort, _ = load_cohort(tmp_path / "run", modules=fresh)  # loading gives the lazy layers their sizes
    assert cohort["student1"].module.fc.weight.shape == (3, 4 * 8 * 8)
    scores = evaluate_run(tmp_path / "run", modules=fresh, data=tiny_data)
    assert scores["ensemble"]["accuracy"] == pytest.approx(result.test_at_best["ensemble"]["accuracy"])


def test_a_hint_between_token_sequences_of_other_widths_gets_a_linear_connector(tiny_data):
    seed_everything(0)
    edge = Edge("teacher", "student1", "hint", 1.0, source_layer="norm", target_layer="norm")
    trainer, result = _fit([TokenNet(4)], TokenNet(8), [edge], tiny_data)
    (connector,) = trainer.connectors.values()
    assert isinstance(connector.project, nn.Linear) and connector.project.weight.shape == (8, 4)
    assert result.history[0]["train/loss/student1/hint<-teacher[norm<-norm]"] > 0


def test_token_sequences_of_other_lengths_are_refused_before_training(tiny_data):
    seed_everything(0)
    edge = Edge("teacher", "student1", "hint", 1.0, source_layer="norm", target_layer="norm")
    teacher = TokenNet(4)
    teacher.embed = nn.Conv2d(1, 4, 4, stride=4)  # 4 tokens against the student's 16
    with pytest.raises(ConfigError, match=r"token sequences of different lengths, \(16, 4\) to \(4, 4\)"):
        _fit([TokenNet(4)], teacher, [edge], tiny_data)


def test_a_map_taught_to_token_sequences_is_refused_naming_the_edge(tiny_data):
    from peerdistill.models import SmallCNN

    seed_everything(0)
    edge = Edge("teacher", "student1", "hint", 1.0, source_layer="features.0", target_layer="norm")
    with pytest.raises(ConfigError, match=r"^edge student1/hint<-teacher\[norm<-features.0\]: cannot connect a feature of "
                                          r"shape \(16, 4\) to one of shape \(4, 8, 8\): .*both \[L, D\] token.*but kind "
                                          r"sp compares them"):
        _fit([TokenNet(4)], SmallCNN(1, 3, width=4, depth=1), [edge], tiny_data)


def test_attention_transfer_on_token_sequences_is_refused_pointing_to_sp(tiny_data):
    """at compares spatial maps; a transformer's tokens are none, and hint would not connect them
    to a map either: the message names sp, which compares any two layers."""
    from peerdistill.models import SmallCNN

    seed_everything(0)
    edge = Edge("teacher", "student1", "at", 1.0, source_layer="features.0", target_layer="norm")
    with pytest.raises(ConfigError, match=r"kind 'at' compares \[C, H, W\] feature maps, but layer 'norm' of "
                                          r"'student1' gives \[16, 4\]: pick a convolutional layer, or use sp, which "
                                          r"compares layers of any shapes"):
        _fit([TokenNet(4)], SmallCNN(1, 3, width=4, depth=1), [edge], tiny_data)


def test_self_distillation_heads_pool_token_sequences_over_their_tokens():
    seed_everything(0)
    model = HeadedModel(TokenNet(8), ["embed", "blocks.0"], "norm", 3, torch.zeros(2, 1, 8, 8))
    embed_head, block_head = model.heads
    assert isinstance(embed_head.bottleneck[0], nn.Conv2d)  # a [C, H, W] map
    assert block_head.bottleneck[0].in_features == 8  # the D of [L, D] tokens, not L (16)
    x = torch.randn(2, 1, 8, 8)
    out = model(x)
    tokens = model.base.norm(model.base.blocks(model.base.embed(x).flatten(2).transpose(1, 2)))
    torch.testing.assert_close(out["deep_feature"], tokens.mean(dim=1))
    assert out["heads"]["blocks.0"].shape == (2, 3)


def test_a_feature_edge_into_a_reentrant_checkpointed_block_is_refused(tiny_data):
    edge = Edge("teacher", "student1", "hint", 1.0, source_layer="block.0", target_layer="block.0")
    seed_everything(0)
    with pytest.raises(ConfigError, match=r"layer 'block.0' of 'student1' gives its output without a gradient.*"
                                          r"use_reentrant=False") as refused:
        _fit([CheckpointedNet(reentrant=True)], CheckpointedNet(False), [edge], tiny_data)
    assert refused.value.said_alike == str(refused.value)  # (the same models in every process: said once a node)
    seed_everything(0)  # recomputed without reentrance, the recorded output keeps its gradient
    _, result = _fit([CheckpointedNet(reentrant=False)], CheckpointedNet(False), [edge], tiny_data)
    assert result.history[0]["train/loss/student1/hint<-teacher[block.0<-block.0]"] > 0


class Squeezed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3), keepdim=True).squeeze()  # [3] for one input


def test_a_model_that_squeezes_away_a_batch_of_one_is_refused_before_training(tiny_data):
    with pytest.raises(DataError, match=r"batch of one input \(two passed\): model 'student1' outputs a tensor of "
                                        r"shape \(3,\).*\.squeeze\(\)"):
        _fit([Squeezed()], None, [], tiny_data)


class SqueezedInside(nn.Module):
    """Squeezes before its BatchNorm head: fails outright on one input, which two do not."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)).squeeze())


def test_a_model_failing_on_a_batch_of_one_is_told_so(tiny_data):
    with pytest.raises(ConfigError, match=r"for a batch of one input \(two passed\): model 'student1' failed"):
        _fit([SqueezedInside()], None, [], tiny_data)


def test_the_model_that_cannot_take_the_data_is_named(tiny_data):
    rgb = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    grey = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ConfigError, match=r"model 'student2' failed on inputs of shape \(1, 8, 8\) from the "
                                          r"data: .*; the model "
                                          r"takes 3 channel\(s\), the data gives 1: set the channel count in its args "
                                          r"\(in_channels, or what its factory calls it: timm's in_chans; .*, or, for a "
                                          r"colour model \(pretrained\), give it the data as colour: .*'A colour "
                                          r"teacher on grey data'\)"):
        _fit([grey, rgb], None, preset_edges("ml", None, ["student1", "student2"]), tiny_data)
    four = nn.Sequential(nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(ConfigError, match=r"the model takes 4 channel\(s\), the data gives 1: set the channel count "
                                          r"in its args \([^)]*\)$"):  # no colour advice but for 3 against 1
        _fit([grey, four], None, preset_edges("ml", None, ["student1", "student2"]), tiny_data)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(5, 3))  # another failure: the general advice
    with pytest.raises(ConfigError, match=r"; check its in_channels and the input size it expects$"):
        _fit([grey, flat], None, preset_edges("ml", None, ["student1", "student2"]), tiny_data)


def test_a_self_distillation_head_inside_a_reentrant_checkpointed_block_is_refused():
    seed_everything(0)
    model = HeadedModel(CheckpointedNet(reentrant=True), ["block.0"], "block", 3, torch.zeros(2, 1, 8, 8),
                        owner="model 'student1'")
    model.train()
    with pytest.raises(ConfigError, match=r"model 'student1': head layer 'block.0' gives its output without a gradient"):
        model(torch.randn(2, 1, 8, 8))
    model.base.reentrant = False
    model(torch.randn(2, 1, 8, 8))["heads"]["block.0"].sum().backward()
    assert model.base.stem[0].weight.grad is not None  # the head's loss reaches the layers beneath



def test_a_self_distillation_head_on_the_reshaped_input_is_refused_naming_that_cause():
    # blamed on torch.utils.checkpoint, which the model did not use: the layer sees only the input
    seed_everything(0)
    model = HeadedModel(_Logits(lambda t: t), ["net.0"], "net.2", 3, torch.zeros(2, 1, 8, 8), owner="model 'student1'")
    model.train()
    with pytest.raises(ConfigError, match=r"head layer 'net.0' gives its output without a gradient in training, .*: "
                                          r"no trainable layer comes before it \(it reshapes the input"):
        model(torch.randn(2, 1, 8, 8))

def test_a_lazy_layer_loaded_from_a_file_of_another_size_is_named(tmp_path):
    from peerdistill.engine import load_weights, save_weights
    from peerdistill.errors import CheckpointError

    three = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    three(torch.zeros(1, 1, 8, 8))
    save_weights(three, tmp_path / "three.safetensors")
    with pytest.raises(CheckpointError, match=r"layer '2' gets 3 outputs from the file but was built for 5"):
        load_weights(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(5)), tmp_path / "three.safetensors")
    same = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(3))
    load_weights(same, tmp_path / "three.safetensors")
    torch.testing.assert_close(same(torch.ones(1, 1, 8, 8)), three(torch.ones(1, 1, 8, 8)))


def test_heads_over_a_frozen_backbone_train_without_complaint():
    """Features without a gradient because every layer beneath is frozen (not checkpointed): the
    heads still learn, and there is nothing beneath for them to teach, so nothing is refused."""
    seed_everything(0)
    model = HeadedModel(CheckpointedNet(reentrant=False), ["block.0"], "block", 3, torch.zeros(2, 1, 8, 8),
                        owner="model 'student1'")
    model.base.requires_grad_(False)
    model.train()
    model(torch.randn(2, 1, 8, 8))["heads"]["block.0"].sum().backward()
    assert all(p.grad is not None for p in model.heads.parameters() if p.requires_grad)
    assert model.base.stem[0].weight.grad is None


def _small_cnn():
    from peerdistill.models import SmallCNN

    seed_everything(0)
    return SmallCNN(1, 3, width=4, depth=1)


@pytest.mark.parametrize("saved_as", ["plain", "training script", "DataParallel", "compiled", "compiled DDP",
                                      "Lightning", "safetensors named .pth", "DataParallel safetensors",
                                      "without BatchNorm counters"])
def test_weights_saved_by_pytorch_elsewhere_load(tmp_path, saved_as):
    """What users bring: torch.save(model.state_dict()), a script's {"epoch", "state_dict", ...},
    the keys of a DataParallel / DDP model ("module.") or of a compiled one ("_orig_mod.")."""
    from peerdistill.engine import load_weights

    trained = _small_cnn()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    state = trained.state_dict()
    prefix = {"DataParallel": "module.", "compiled": "_orig_mod.", "compiled DDP": "_orig_mod.module.",
              "Lightning": "model.", "DataParallel safetensors": "module."}.get(saved_as, "")
    state = {prefix + k: v for k, v in state.items() if not (saved_as.startswith("without") and "num_batches" in k)}
    saved = {"epoch": 12, "state_dict": state, "optimizer": {"lr": 0.1}} if saved_as == "training script" else state
    if "safetensors" in saved_as:
        from safetensors.torch import save_file

        save_file(state, str(tmp_path / "w.pth"))
    else:
        torch.save(saved, tmp_path / "w.pth")
    fresh = _small_cnn()
    counters = {k: v.clone() for k, v in fresh.state_dict().items() if "num_batches" in k}
    assert counters  # SmallCNN has BatchNorm: the counters case is a real one
    load_weights(fresh, tmp_path / "w.pth", "teacher")
    for (key, a), b in zip(fresh.state_dict().items(), trained.state_dict().values()):
        assert torch.equal(a, counters[key] if saved_as.startswith("without") and key in counters else b), key


class _GreyToColour(nn.Module):
    """A user's wrapper giving a colour network grey images: the network's weights load into it."""

    def __init__(self):
        super().__init__()
        self.net = _small_cnn()

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_a_networks_weights_load_into_a_wrapper_holding_it(tmp_path, prefix):
    # every key of the wrapper starts with 'net.', which the network's file lacks: it was refused
    # as "saved from another architecture"
    from peerdistill.engine import load_weights

    trained = _small_cnn()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    torch.save({prefix + k: v for k, v in trained.state_dict().items()}, tmp_path / "w.pth")
    wrapper = _GreyToColour()
    load_weights(wrapper, tmp_path / "w.pth", "teacher")
    for (key, a), b in zip(wrapper.state_dict().items(), trained.state_dict().values(), strict=True):
        assert key.startswith("net.") and torch.equal(a, b), key


def test_pytorch_files_that_cannot_be_loaded_safely_or_fully_are_named(tmp_path):
    from peerdistill.engine import load_weights
    from peerdistill.errors import CheckpointError

    model = _small_cnn()
    torch.save(model, tmp_path / "whole.pth")  # a pickled module: code, not weights
    with pytest.raises(CheckpointError, match=r"holds more than tensors \(an object of [\w.]*SmallCNN\), which cannot be "
                                              r"loaded safely: .*torch.save\(model.state_dict\(\), ") as refused:
        load_weights(_small_cnn(), tmp_path / "whole.pth", "teacher")
    assert "safe_globals" not in str(refused.value)  # torch's advice to allow it is left out
    (tmp_path / "notes.pt").write_text("a: 1\n")  # not a PyTorch file at all
    with pytest.raises(CheckpointError, match="is neither a .safetensors file nor a PyTorch file"):
        load_weights(_small_cnn(), tmp_path / "notes.pt", "teacher")
    torch.save({"epoch": 3, "notes": "x"}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match=r"holds no state dict \(found \['epoch', 'notes'\]\)"):
        load_weights(_small_cnn(), tmp_path / "empty.pt", "teacher")
    torch.save({"epoch": 3, "model": {"config": "x", "step": 9}}, tmp_path / "nested.pt")  # what 'model' holds, said
    with pytest.raises(CheckpointError, match=r"holds no state dict \(found \['epoch', 'model'\]; 'model' holds "
                                              r"\['config', 'step'\], no state dict\)"):
        load_weights(_small_cnn(), tmp_path / "nested.pt", "teacher")
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "model": {"state_dict": changed}}, tmp_path / "deeper.pt")  # two levels down
    loaded = _small_cnn()
    load_weights(loaded, tmp_path / "deeper.pt", "teacher")
    assert all(torch.equal(v, changed[k]) for k, v in loaded.state_dict().items())
    torch.save(model.state_dict(), tmp_path / "w.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "w.pth").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*truncated or corrupt"):
        load_weights(_small_cnn(), tmp_path / "cut.pth", "teacher")
    from peerdistill.models import SmallCNN

    with pytest.raises(CheckpointError, match="does not fit teacher.*saved from another architecture or number of "
                                              "classes"):  # another number of classes
        load_weights(SmallCNN(1, 5, width=4, depth=1), tmp_path / "w.pth", "teacher")
    # the grey/colour slip: the first layer's input channels alone differ (review 48c)
    grey = SmallCNN(1, 4, width=4, depth=1)
    torch.save(grey.state_dict(), tmp_path / "grey.pth")
    first = next(k for k, v in grey.state_dict().items() if v.dim() == 4)
    with pytest.raises(CheckpointError, match=rf"its first layer \('{first}'\) takes 1 input channel\(s\) in the file "
                                              r"and 3 in the model built for this data; the images are read in colour "
                                              r"here: data.grey=true reads image files grey \(arrays: give them one "
                                              r"channel\)$"):
        load_weights(SmallCNN(3, 4, width=4, depth=1), tmp_path / "grey.pth", "teacher")
    torch.save(SmallCNN(3, 4, width=4, depth=1).state_dict(), tmp_path / "rgb.pth")
    # review 58e: one-channel arrays were told data.grey=false, a key array data refuses (data kind not known here)
    with pytest.raises(CheckpointError, match=re.escape(
            "3 input channel(s) in the file and 1 in the model built for this data; the data gives one channel here: "
            "image files are read grey only under data.grey=true (data.grey=false reads them in colour); for "
            "one-channel arrays (digits, npz), give the model a wrapper that repeats the channel, as GreyToColour "
            "does in docs/config.md (\"A colour teacher on grey data\"), or save the arrays with three channels")):
        load_weights(grey, tmp_path / "rgb.pth", "teacher")
    with pytest.raises(CheckpointError, match="saved from another architecture"):  # channels and classes both differ
        load_weights(SmallCNN(3, 5, width=4, depth=1), tmp_path / "grey.pth", "teacher")


@pytest.mark.parametrize(("data_kind", "saved", "fix"), [
    ("npz", 3, "data kind 'npz' gives one-channel arrays, and data.grey is for image files: give the model a wrapper "
               "that repeats the channel, as GreyToColour does in docs/config.md (\"A colour teacher on grey data\"), "
               "or save the arrays with three channels"),
    ("digits", 3, "data kind 'digits' gives one-channel arrays, and data.grey is for image files: give the model a "
                  "wrapper"),
    ("image_folder", 3, "the images are read grey here: data.grey=false reads image files in colour"),
    ("npz", 1, "data kind 'npz' gives three-channel arrays here: give them one channel"),
    ("csv", 1, "the images are read in colour here: data.grey=true reads image files grey"),
])
def test_a_file_of_other_input_channels_is_told_the_fix_for_its_data_kind(tmp_path, data_kind, saved, fix):
    """Review 58e: data.grey fixes image files only; arrays need three channels, or a wrapper."""
    from peerdistill.engine import load_weights
    from peerdistill.errors import CheckpointError
    from peerdistill.models import SmallCNN

    torch.save(SmallCNN(saved, 4, width=4, depth=1).state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=re.escape(f"in the model built for this data; {fix}")) as refused:
        load_weights(SmallCNN(4 - saved, 4, width=4, depth=1), tmp_path / "w.pth", "teacher", data_kind=data_kind)
    assert str(refused.value).endswith(fix) or data_kind == "digits"


def test_students_returning_an_object_with_logits_are_packed(tiny_data):
    """HuggingFace-style outputs (an object with a .logits tensor, not a tuple or dict) run in
    the packed group too, with the separate students' outputs."""
    from dataclasses import dataclass

    from peerdistill.engine.fused import StudentGroup

    @dataclass
    class Output:
        logits: torch.Tensor

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(4, 3))

        def forward(self, x):
            return Output(self.net(x))

    seed_everything(0)
    students = [Wrapped(), Wrapped()]
    x = tiny_data.train.x[:8]
    outputs, _ = StudentGroup(students).eval()(x)
    for student, out in zip(students, outputs):
        torch.testing.assert_close(out["logits"], student(x).logits)
    trainer = Trainer(Cohort.from_modules(students), KnowledgeGraph(preset_edges("ml", None, ["student1", "student2"])),
                      ClassificationTask(3), device="cpu", progress=False,
                      train=TrainSpec(epochs=1, batch_size=32, fuse_students=True))
    trainer.fit(tiny_data)
    assert trainer.run_info["fused_students"] == [["student1", "student2"]]


@pytest.mark.parametrize("fuse", [False, True])
def test_a_namedtuple_output_gives_its_logits_field_wherever_it_stands(tiny_data, fuse):
    """A namedtuple (aux, logits) is a tuple: its first item, the aux head, was trained as the
    logits, silently (review 56a). Its logits field is read, packed or not."""
    import collections

    from peerdistill.cohort import as_logits

    Output = collections.namedtuple("Output", "aux logits")
    aux, logits = torch.zeros(2, 5), torch.ones(2, 3)
    assert as_logits(Output(aux, logits), "m") is logits
    assert as_logits((logits, aux), "m") is logits  # a plain tuple: its first item, as torchvision's aux heads

    class AuxFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.aux, self.head = nn.Linear(4, 5), nn.Linear(4, 3)

        def forward(self, x):
            h = self.body(x)
            return Output(self.aux(h), self.head(h))

    seed_everything(0)
    students = [AuxFirst(), AuxFirst()]
    aux_before = [s.aux.weight.detach().clone() for s in students]
    trainer = Trainer(Cohort.from_modules(students), KnowledgeGraph(preset_edges("ml", None, ["student1", "student2"])),
                      ClassificationTask(3), device="cpu", progress=False,
                      train=TrainSpec(epochs=1, batch_size=32, fuse_students=fuse))
    trainer.fit(tiny_data)
    assert trainer.run_info["fused_students"] == ([["student1", "student2"]] if fuse else [])
    for student, before in zip(students, aux_before):  # the aux head takes no loss: untouched
        torch.testing.assert_close(student.aux.weight.detach(), before, rtol=0, atol=0)


class _NamedLayer(nn.Module):
    """A user's model with a layer called feature_layer and a dict output holding 'heads'."""

    def __init__(self):
        super().__init__()
        self.feature_layer = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.fc, self.aux = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        pooled = self.feature_layer(x).mean((2, 3))
        return {"logits": self.fc(pooled), "heads": [self.aux(pooled)]}


def test_a_users_feature_layer_module_and_heads_key_are_the_users_own():
    cohort = Cohort.from_modules([_NamedLayer(), _NamedLayer()])
    assert [m.feature_layer for m in cohort.members] == [None, None]  # a module, not a path
    out = cohort.forward(torch.randn(2, 1, 8, 8))
    assert set(out.logits) == {"student1", "student2"} and out.logits["student1"].shape == (2, 3)
    named = Cohort.from_modules([_NamedLayer(), _NamedLayer()], feature_layers={"student1": "feature_layer",
                                                                                "student2": "feature_layer.0"})
    assert [m.feature_layer for m in named.members] == ["feature_layer", "feature_layer.0"]


class _AliasedBlock(nn.Module):
    """A user's model reaching one block by two paths (``alias`` is ``block``), with its own string
    attribute ``feature_layer`` that is no module path of it."""
    feature_layer = "the last block"

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.alias, self.fc = self.block, nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.block(x).mean((2, 3)))


def test_an_alias_path_names_its_module_and_a_stray_string_attribute_names_nothing():
    from peerdistill.capture import FeatureRecorder

    with pytest.warns(PeerdistillWarning, match=r"_AliasedBlock.feature_layer has no module at path 'the last "
                                                r"block'.*, so it names no feature layer"):
        cohort = Cohort.from_modules([_AliasedBlock(), _AliasedBlock()], feature_layers={"student2": "alias.0"})
    assert [m.feature_layer for m in cohort.members] == [None, "alias.0"]  # the attribute names no layer: not chosen
    recorder = FeatureRecorder(cohort["student2"].module, ["alias.0"])
    cohort["student2"].module(torch.randn(2, 1, 8, 8))
    assert recorder.take(complete=True)["alias.0"].shape == (2, 4, 8, 8)


class _SharedBlock(nn.Module):
    """One block run twice (weights shared), a middle layer between its two calls."""

    def __init__(self):
        super().__init__()
        self.stem, self.block, self.middle = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.block(self.middle(self.block(self.stem(x))))
        return self.fc(x.mean((2, 3)))


def test_a_shared_layer_run_twice_counts_by_the_output_kept_its_last():
    from peerdistill.models.heads import HeadedModel

    sample = torch.zeros(2, 1, 8, 8)
    HeadedModel(_SharedBlock(), ["middle"], "block", 3, sample)  # the deep features kept come after the head's
    with pytest.raises(ConfigError, match=r"\['block'\] run after deep_layer 'middle'.*forward order: middle, "
                                          r"block\)"):
        HeadedModel(_SharedBlock(), ["block"], "middle", 3, sample)


def test_python_api_lengths_and_names_are_checked_with_one_message():
    with pytest.raises(ConfigError, match=r"feature_layers names \['studnet1'\], not models of this cohort "
                                          r"\(student1, student2\)"):
        Cohort.from_modules([_small_cnn(), _small_cnn()], feature_layers={"studnet1": "features"})
    with pytest.raises(ConfigError, match="teacher_weights has 1 entries for 2 teachers: give one per teacher"):
        Cohort.from_modules([_small_cnn()], teachers=[_small_cnn(), _small_cnn()], teacher_weights=[1.0])
    with pytest.raises(ConfigError, match="student_names has 1 entries for 2 students"):
        Cohort.from_modules([_small_cnn(), _small_cnn()], student_names=["a"])
    # one teacher's weight is read by nothing (review 56g): refused, as a config's is
    with pytest.raises(ConfigError, match=r"^teacher_weights \[0.5\]: a teacher's weight is its share in the average of "
                                          r"several teachers, and there is one: drop teacher_weights; the teacher's KD "
                                          r"term is weighed by its edge \(preset_edges\(..., alpha=...\), or "
                                          r"Edge\(weight=...\)\)$"):
        Cohort.from_modules([_small_cnn()], teachers=[_small_cnn()], teacher_weights=[__import__("numpy").float64(0.5)])
    assert len(Cohort.from_modules([_small_cnn()], teachers=[_small_cnn()], teacher_weights=[1.0]).teachers) == 1


def test_a_scripted_model_can_be_a_frozen_teacher():
    teacher = torch.jit.script(_small_cnn())
    cohort = Cohort.from_modules([_small_cnn()], teacher=teacher, frozen_teacher=True)
    assert not any(p.requires_grad for p in cohort["teacher"].module.parameters())
    assert cohort.forward(torch.randn(2, 1, 8, 8)).logits["teacher"].shape == (2, 3)


@pytest.mark.parametrize("key", ["model_state_dict", "model", "net", "weights", "module"])
def test_weights_under_any_of_the_usual_keys_of_a_training_scripts_file_load(tmp_path, key):
    """The keys training scripts keep a model's weights under besides "state_dict"."""
    from peerdistill.engine import load_weights

    trained = _small_cnn()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    torch.save({"epoch": 3, key: trained.state_dict(), "best": 0.9}, tmp_path / "w.pth")
    fresh = _small_cnn()
    load_weights(fresh, tmp_path / "w.pth", "teacher")
    for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()):
        assert torch.equal(a, b)


def _shifted(model: nn.Module, by: float) -> dict[str, torch.Tensor]:
    return {k: v + by if v.is_floating_point() else v for k, v in model.state_dict().items()}


def test_weights_under_two_usual_keys_load_the_one_that_fits_or_are_refused_naming_both(tmp_path):
    """Review 58e: {'model': A, 'state_dict': B} loaded the first key in the list's order, silently;
    where that one did not fit, the run failed on shapes though the other fitted."""
    from peerdistill.engine import load_weights
    from peerdistill.errors import CheckpointError
    from peerdistill.models import SmallCNN

    fits, wider = _shifted(_small_cnn(), 1.0), SmallCNN(1, 3, width=8, depth=1).state_dict()
    for saved in ({"model": fits, "state_dict": wider}, {"state_dict": wider, "net": {"state_dict": fits}}):
        torch.save({"epoch": 3, **saved}, tmp_path / "w.pth")
        loaded = _small_cnn()
        load_weights(loaded, tmp_path / "w.pth", "teacher")
        assert all(torch.equal(v, fits[k]) for k, v in loaded.state_dict().items())
    torch.save({"model": fits, "state_dict": {k: v.clone() for k, v in fits.items()}}, tmp_path / "copies.pth")
    load_weights(loaded := _small_cnn(), tmp_path / "copies.pth", "teacher")  # one dict saved twice: fine
    assert all(torch.equal(v, fits[k]) for k, v in loaded.state_dict().items())
    torch.save({"model": fits, "state_dict": _shifted(_small_cnn(), 2.0)}, tmp_path / "both.pth")
    with pytest.raises(CheckpointError, match=re.escape(
            "holds different weights that fit teacher under ['state_dict'] and ['model']: which was meant cannot be "
            "told; save that one alone (checkpoint = torch.load(PATH), then torch.save(checkpoint['state_dict'], "
            "'weights.pth'))")):
        load_weights(_small_cnn(), tmp_path / "both.pth", "teacher")
    # a half-precision copy beside the weights is the same weights: the precise one loads
    torch.save({"model": {k: v.half() if v.is_floating_point() else v for k, v in fits.items()}, "state_dict": fits},
               tmp_path / "half.pth")
    load_weights(loaded := _small_cnn(), tmp_path / "half.pth", "teacher")
    assert all(torch.equal(v, fits[k]) for k, v in loaded.state_dict().items())
    # none fits: the first is named as one file is, with the grey/colour advice where channels alone differ
    colour = SmallCNN(3, 3, width=4, depth=1).state_dict()
    torch.save({"model": wider, "state_dict": colour}, tmp_path / "none.pth")
    with pytest.raises(CheckpointError, match=r"its first layer \('features.0.weight'\) takes 3 input channel\(s\) "
                                              r"in the file and 1 in the model"):
        load_weights(_small_cnn(), tmp_path / "none.pth", "teacher")


def test_weights_in_the_legacy_pickle_format_load_and_a_cut_safetensors_file_is_named(tmp_path):
    """torch.save wrote plain pickles before PyTorch 1.6 (_use_new_zipfile_serialization=False),
    still read by torch.load; a safetensors file cut short says it is truncated."""
    from safetensors.torch import save_file

    from peerdistill.engine import load_weights
    from peerdistill.errors import CheckpointError

    trained = _small_cnn()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    torch.save(trained.state_dict(), tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert (tmp_path / "old.pth").read_bytes()[:1] == b"\x80"  # a pickle, not a zip archive
    fresh = _small_cnn()
    load_weights(fresh, tmp_path / "old.pth", "teacher")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))
    many = nn.Sequential(*[nn.Linear(1, 1) for _ in range(60)])  # a header of several kB, as real models have
    save_file({k: torch.full_like(v, 2.0) for k, v in many.state_dict().items()}, str(tmp_path / "many.pth"))
    load_weights(many, tmp_path / "many.pth", "teacher")
    assert all(bool((p == 2.0).all()) for p in many.parameters())
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "w.safetensors").read_bytes()[:-64])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*cut.safetensors' for teacher: .*truncated or "
                                              "corrupt"):
        load_weights(_small_cnn(), tmp_path / "cut.safetensors", "teacher")


def test_a_file_of_another_model_is_refused_naming_its_keys_as_saved(tmp_path):
    """No prefix matches the model's keys better than none (a tie at nothing): the file's keys are
    reported as they are in it, not cut at their first component; a file of no tensors at all is
    said to hold no state dict."""
    from peerdistill.engine import load_weights
    from peerdistill.errors import CheckpointError

    torch.save({"backbone.layer.weight": torch.zeros(2), "backbone.layer.bias": torch.zeros(2)}, tmp_path / "o.pth")
    with pytest.raises(CheckpointError, match=r"unexpected \['backbone.layer.bias', 'backbone.layer.weight'\]"):
        load_weights(_small_cnn(), tmp_path / "o.pth", "teacher")
    torch.save({}, tmp_path / "empty.pth")  # no tensors at all: not a state dict that fits nothing
    with pytest.raises(CheckpointError, match=r"holds no state dict \(found \[\]\)"):
        load_weights(_small_cnn(), tmp_path / "empty.pth", "teacher")


class _Logits(nn.Module):
    """A small MLP whose forward hands its logits on through ``finish`` (what a user's model did)."""

    def __init__(self, finish):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))
        self.finish = finish

    def forward(self, x):
        return self.finish(self.net(x))


@pytest.mark.parametrize("finish, error", [
    (torch.Tensor.detach, r"^model 'student1' returns its logits without a gradient in training \(detached"),
    (lambda t: t.round().long(), r"^model 'student1' outputs int64 values; the class scores \(logits\) must be "
                                 r"floating point"),
])
def test_a_student_whose_logits_cannot_teach_it_is_refused(tiny_data, finish, error):
    # it trained silently at ln(3) loss, was shipped and scored, and dragged the ensemble down
    seed_everything(0)
    with pytest.raises((ConfigError, DataError), match=error) as refused:
        _fit([_Logits(finish)], None, [], tiny_data)
    assert refused.value.said_alike == str(refused.value)  # (the same models in every process: said once a node)
    # and by a dry run, which promises what training checks before its first step (review 53c)
    trainer = Trainer(Cohort.from_modules([_Logits(finish)]), KnowledgeGraph([]), ClassificationTask(3), device="cpu",
                      progress=False, train=FAST)
    with pytest.raises((ConfigError, DataError), match=error):
        trainer.check(tiny_data)


def test_a_model_returning_probabilities_is_warned_of_and_log_probabilities_are_not(tiny_data, recwarn):
    seed_everything(0)
    with pytest.warns(PeerdistillWarning, match=r"^model 'teacher' seems to return probabilities .*drop its final "
                                                 r"Softmax"):
        _fit([_Logits(lambda t: t)], _Logits(lambda t: t.softmax(dim=1)),
             preset_edges("kd", "teacher", ["student1"]), tiny_data)
    recwarn.clear()
    seed_everything(0)
    _fit([_Logits(lambda t: t.log_softmax(dim=1))], _Logits(lambda t: t), preset_edges("kd", "teacher", ["student1"]),
         tiny_data)
    assert not [w for w in recwarn if "probabilities" in str(w.message)]


def test_outputs_that_hide_the_logits_are_named_with_what_they_hold(tiny_data):
    # a dict of other keys, or a tuple with the features first, was named without its keys or the order
    seed_everything(0)
    with pytest.raises(ConfigError, match=r"^model 'student1' returned dict with keys \['feat', 'scores'\]; "
                                          r"peerdistill needs logits as a tensor"):
        _fit([_Logits(lambda t: {"scores": t, "feat": t})], None, [], tiny_data)
    with pytest.raises(DataError, match=r"^model 'student1' outputs 8 classes \(logits \(2, 8\)\) but the data has 3 "
                                        r"classes: .*for a tuple output, check that its first item is the logits"):
        features_first = _Logits(lambda t: t)
        features_first.forward = lambda x: (features_first.net[:3](x), features_first.net(x))
        _fit([features_first], None, [], tiny_data)


class _DictNet(nn.Module):
    """A network that answers with a dict of its own, as Hugging Face-style models do."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        feature = self.body(x).mean(dim=(2, 3))
        return {"logits": self.fc(feature), "features": feature}


def test_an_exported_self_distilled_network_answering_with_a_dict_gives_its_logits():
    """Review 51i: export read the heads' dict once, and met the network's own dict where logits
    were due ("has no 'logits' entry", though it had one)."""
    from peerdistill.exported_models import EnsembleProbabilities, Logits

    seed_everything(0)
    models = [HeadedModel(_DictNet(), ["body.1"], "body", 3, torch.zeros(2, 1, 8, 8)).eval() for _ in range(2)]
    x = torch.randn(5, 1, 8, 8)
    own = [m.base(x)["logits"] for m in models]
    torch.testing.assert_close(Logits(models[0], "student1")(x), own[0])
    ensemble = EnsembleProbabilities({"student1": models[0], "student2": models[1]})(x)
    torch.testing.assert_close(ensemble, (own[0].softmax(dim=1) + own[1].softmax(dim=1)) / 2)


class _LeakyDropoutNet(nn.Module):
    """F.dropout without training=self.training: on in evaluation too."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(nn.functional.dropout(self.conv(x).mean(dim=(2, 3)), 0.5))


def test_a_model_random_in_evaluation_is_said_before_training(tiny_data):
    """Review 51i: its scores changed on every evaluation, and only export's parity check (blaming
    ONNX) showed it."""
    from peerdistill.errors import TrainingAdvice
    from peerdistill.models import SmallCNN

    seed_everything(0)
    with pytest.warns(TrainingAdvice, match="model 'student1' gives different outputs for the same input in "
                                            "evaluation mode .*F.dropout\\(x, p\\) without training=self.training"):
        _fit([_LeakyDropoutNet()], SmallCNN(1, 3, width=4, depth=1), [], tiny_data)


class _KeywordOnlyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, *, pixel_values):
        return self.fc(pixel_values.flatten(1))


def test_a_model_taking_its_images_by_keyword_only_is_told_to_be_wrapped(tiny_data):
    """Review 51i: it was told to check its in_channels."""
    from peerdistill.models import SmallCNN

    seed_everything(0)
    with pytest.raises(ConfigError, match=r"model 'student1' failed on inputs .*takes 1 positional argument but 2 were "
                                          r"given; peerdistill calls model\(x\) with the images as its one positional "
                                          r"argument: wrap"):
        _fit([_KeywordOnlyNet()], SmallCNN(1, 3, width=4, depth=1), [], tiny_data)


def test_a_configs_checkpoint_of_other_input_channels_is_told_the_fix_for_the_configs_data_kind(tmp_path):
    """The config's data kind reaches load_weights: a colour teacher on digits (one-channel arrays)
    is told of the wrapper, not of data.grey, which digits refuses."""
    from peerdistill.build import build_cohort
    from peerdistill.config import validate
    from peerdistill.data import build_data
    from peerdistill.errors import CheckpointError
    from peerdistill.models import SmallCNN

    torch.save(SmallCNN(3, 10, width=4, depth=1).state_dict(), tmp_path / "rgb.pth")
    cfg = validate({"data": {"kind": "digits"},
                    "teacher": {"arch": "cnn", "args": {"width": 4, "depth": 1}, "checkpoint": str(tmp_path / "rgb.pth"),
                                "frozen": True},
                    "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}], "distill": {"preset": "kd"}})
    with pytest.raises(CheckpointError, match=re.escape("data kind 'digits' gives one-channel arrays, and data.grey is "
                                                        "for image files: give the model a wrapper")):
        build_cohort(cfg, build_data(cfg.data))
