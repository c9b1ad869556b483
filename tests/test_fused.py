"""StudentGroup: K students run as one vmapped network must equal the same students run one by one."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from peerdistill.engine.fused import StudentGroup, fusable
from peerdistill.errors import ConfigError
from peerdistill.models import ResNet, SmallCNN, UNet

K = 3

# name: (factory, input shape, module paths to capture)
MODELS = {
    "resnet": (lambda: ResNet(in_channels=3, num_classes=5, blocks=[1, 1], width=8), (4, 3, 8, 8),
               ["stem", "layers.1"]),
    "cnn": (lambda: SmallCNN(in_channels=3, num_classes=5, width=4, depth=2), (4, 3, 8, 8), ["features", "features.1"]),
    "unet": (lambda: UNet(in_channels=3, num_classes=2, width=4, depth=2), (2, 3, 12, 12), ["down.1", "up.1"]),
}


def students(name: str, k: int = K) -> tuple[list[nn.Module], list[nn.Module]]:
    """k students with different random weights, and an identical copy of them to run separately."""
    factory = MODELS[name][0]
    fused = []
    for seed in range(k):
        torch.manual_seed(seed)
        fused.append(factory())
    return fused, copy.deepcopy(fused)


def batch(name: str, seed: int = 100) -> torch.Tensor:
    return torch.randn(*MODELS[name][1], generator=torch.Generator().manual_seed(seed))


def loss_of(outputs: list[torch.Tensor]) -> torch.Tensor:
    """A different weight per student, so gradients swapped between students would show."""
    return sum((i + 1) * (out ** 2).mean() for i, out in enumerate(outputs))


@pytest.mark.parametrize("name", list(MODELS))
def test_train_outputs_equal_separate_runs(name):
    fused, separate = students(name)
    x = batch(name)
    outputs, features = StudentGroup(fused).train()(x)
    assert len(outputs) == K and features == [{}] * K
    for out, model in zip(outputs, separate):
        torch.testing.assert_close(out, model.train()(x), atol=1e-5, rtol=1e-4)
    # The students really differ, so equal outputs are not a coincidence.
    assert not torch.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize("name", list(MODELS))
def test_gradients_land_in_each_students_own_parameters(name):
    fused, separate = students(name)
    x = batch(name)
    outputs, _ = StudentGroup(fused).train()(x)
    loss_of(outputs).backward()
    loss_of([model.train()(x) for model in separate]).backward()
    for f, s in zip(fused, separate):
        for (param_name, p), q in zip(f.named_parameters(), s.parameters()):
            assert p.grad is not None, param_name
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=param_name)


@pytest.mark.parametrize("name", list(MODELS))
def test_batchnorm_statistics_are_each_students_own(name):
    fused, separate = students(name)
    group = StudentGroup(fused).train()
    for step in range(2):
        x = batch(name, seed=step)
        group(x)
        for model in separate:
            model.train()(x)
    for f, s in zip(fused, separate):
        buffers = dict(s.named_buffers())
        assert any(n.endswith("num_batches_tracked") for n in buffers)
        for buffer_name, b in f.named_buffers():
            torch.testing.assert_close(b, buffers[buffer_name], atol=1e-6, rtol=1e-5, msg=buffer_name)
        assert f.state_dict()[next(n for n in buffers if n.endswith("num_batches_tracked"))].item() == 2


@pytest.mark.parametrize("name", list(MODELS))
def test_eval_outputs_equal_and_leave_statistics_alone(name):
    fused, separate = students(name)
    group = StudentGroup(fused).train()
    group(batch(name, seed=1))  # running statistics that differ from their initial values
    for model in separate:
        model.train()(batch(name, seed=1))
    group.eval()
    assert not any(m.training for m in group.modules())
    before = [{n: b.clone() for n, b in f.named_buffers()} for f in fused]
    x = batch(name, seed=2)
    with torch.inference_mode():
        outputs, _ = group(x)
    for out, model in zip(outputs, separate):
        torch.testing.assert_close(out, model.eval()(x), atol=1e-5, rtol=1e-4)
    for f, old in zip(fused, before):
        for buffer_name, b in f.named_buffers():
            assert torch.equal(b, old[buffer_name]), buffer_name


@pytest.mark.parametrize("name", list(MODELS))
def test_captured_features_equal_hooked_separate_runs(name):
    fused, separate = students(name)
    paths = MODELS[name][2]
    x = batch(name)
    _, features = StudentGroup(fused, capture=paths).train()(x)
    for recorded, model in zip(features, separate):
        expected = {}
        modules = dict(model.named_modules())
        handles = [modules[p].register_forward_hook(lambda _m, _i, out, p=p: expected.__setitem__(p, out))
                   for p in paths]
        model.train()(x)
        for handle in handles:
            handle.remove()
        assert set(recorded) == set(paths)
        for path in paths:
            torch.testing.assert_close(recorded[path], expected[path], atol=1e-5, rtol=1e-4, msg=path)


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # adaptive pooling, see fused.py
def test_channels_last_input():
    fused, separate = students("resnet")
    x = batch("resnet").contiguous(memory_format=torch.channels_last)
    outputs, _ = StudentGroup(fused).train()(x)
    for out, model in zip(outputs, separate):
        torch.testing.assert_close(out, model.train()(x), atol=1e-5, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("name", ["resnet", "unet"])
def test_autocast_bf16(name):
    fused, separate = students(name)
    x = batch(name).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, features = StudentGroup(fused, capture=MODELS[name][2][:1]).train()(x)
        expected_dtype = copy.deepcopy(separate[0])(x).dtype
    reference = [model.train()(x) for model in separate]  # fp32
    for out, ref in zip(outputs, reference):
        # Autocast really ran the students in bf16 (vmap alone would leave convolutions in fp32).
        assert out.dtype == expected_dtype == torch.bfloat16
        assert ((out.float() - ref).norm() / ref.norm()).item() < 5e-2
    assert features[0][MODELS[name][2][0]].dtype == torch.bfloat16
    loss_of([out.float() for out in outputs]).backward()
    for f in fused:
        for p in f.parameters():
            assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        assert all(b.dtype in (torch.float32, torch.int64) for b in f.buffers())


class _DictNet(nn.Module):
    """Dropout and a nested dict/tuple output."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.body(x)
        return {"logits": self.head(h), "aux": (h.mean(1), h.amax(1))}


def test_nested_outputs_and_dropout_per_student():
    torch.manual_seed(0)
    same = _DictNet()
    fused = [copy.deepcopy(same) for _ in range(K)]  # identical weights: only dropout can tell them apart
    group = StudentGroup(fused)
    x = torch.randn(8, 6)
    outputs, _ = group.train()(x)
    assert set(outputs[0]) == {"logits", "aux"} and outputs[0]["aux"][1].shape == (8,)
    assert not torch.allclose(outputs[0]["logits"], outputs[1]["logits"])  # a mask of its own per student
    outputs, _ = group.eval()(x)
    expected = same.eval()(x)
    for out in outputs:
        torch.testing.assert_close(out["logits"], expected["logits"])
        torch.testing.assert_close(out["aux"][0], expected["aux"][0])


def test_fusable_accepts_one_architecture_and_says_why_not_otherwise():
    assert fusable(students("resnet")[0]) is None
    assert fusable(students("unet")[0]) is None
    assert "2 models" in fusable([SmallCNN()])
    assert "ResNet" in fusable([SmallCNN(3, 5), ResNet(3, 5, [1], 8)])
    assert "shapes" in fusable([SmallCNN(3, 5, width=4), SmallCNN(3, 5, width=8)])
    # Same tensors, different settings: the template's settings would silently win.
    assert "settings" in fusable([nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)),
                                  nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))])
    frozen = SmallCNN(3, 5)
    frozen.classifier.requires_grad_(False)
    assert "grad" in fusable([SmallCNN(3, 5), frozen])
    cumulative = [SmallCNN(3, 5), SmallCNN(3, 5)]
    for model in cumulative:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None
    assert "momentum=None" in fusable(cumulative)
    assert "SyncBatchNorm" in fusable([nn.SyncBatchNorm.convert_sync_batchnorm(SmallCNN(3, 5)) for _ in range(2)])
    with pytest.raises(ConfigError, match="cannot fuse"):
        StudentGroup([SmallCNN(3, 5, width=4), SmallCNN(3, 5, width=8)])


def test_wrong_capture_path_names_close_matches():
    with pytest.raises(ConfigError, match="no module at path 'layer.1'.*layers.1"):
        StudentGroup(students("resnet")[0], capture=["layer.1"])


def test_members_are_registered_for_optimizers_and_ddp():
    fused, _ = students("cnn")
    group = StudentGroup(fused)
    assert list(group.members) == fused
    assert {id(p) for p in group.parameters()} == {id(p) for f in fused for p in f.parameters()}
    # One optimizer per student still trains it through the group.
    optimizers = [torch.optim.SGD(f.parameters(), lr=0.1) for f in fused]
    before = [f.classifier.weight.detach().clone() for f in fused]
    outputs, _ = group.train()(batch("cnn"))
    F.cross_entropy(torch.cat(outputs), torch.zeros(len(outputs) * 4, dtype=torch.long)).backward()
    for opt in optimizers:
        opt.step()
    assert all(not torch.equal(f.classifier.weight, b) for f, b in zip(fused, before))


def test_students_in_different_modes_are_refused():
    fused, _ = students("cnn")
    group = StudentGroup(fused).train()
    fused[2].features[1].eval()  # one student's BatchNorm frozen: the template's mode would win silently
    with pytest.raises(ConfigError, match="same train/eval mode"):
        group(batch("cnn"))
    group.eval()
    group(batch("cnn"))


class Scaled(nn.Module):
    """Settings kept as plain attributes, outside any submodule: packing must compare them."""

    def __init__(self, act=F.relu, scale=1.0):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)
        self.act, self.scale = act, scale
        self.norm = functools.partial(F.normalize, dim=1)
        self.finish = self.identity  # a method of its own

    def identity(self, x):
        return x

    def forward(self, x):
        return self.finish(self.norm(self.fc2(self.act(self.fc1(x)))) * self.scale)


def test_students_that_differ_in_plain_attributes_are_not_packed():
    """Each packed student runs the first one's code: a different activation, scale, or
    TransformerEncoderLayer flag would train the others as another network."""
    assert fusable([Scaled(), Scaled()]) is None  # partials and own methods alike count as the same
    assert fusable([Scaled(), Scaled(act=torch.tanh)]) == "model 1 differs from model 0 in attribute 'act'"
    assert fusable([Scaled(), Scaled(scale=10.0)]) == "model 1 differs from model 0 in attribute 'scale'"
    odd = Scaled()
    odd.norm = functools.partial(F.normalize, dim=0)
    assert "attribute 'norm'" in fusable([Scaled(), odd])
    layer = dict(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
    assert fusable([nn.TransformerEncoderLayer(**layer), nn.TransformerEncoderLayer(**layer)]) is None
    assert "attribute 'norm_first'" in fusable([nn.TransformerEncoderLayer(**layer),
                                                nn.TransformerEncoderLayer(**layer, norm_first=True)])
    assert "attribute 'activation'" in fusable([nn.TransformerEncoderLayer(**layer),
                                                nn.TransformerEncoderLayer(**layer, activation="gelu")])
    # the packed and separate outputs of the refused pair do differ: refusing them is needed
    a, b = Scaled(), Scaled(scale=10.0)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 6)
    assert not torch.allclose(a(x), b(x))


def test_aliased_layers_and_hooks_of_ones_own_are_not_packed():
    aliased = [Scaled(), Scaled()]
    for m in aliased:
        m.head = m.fc2  # one layer under two names: functional_call would leave a vmapped tensor behind
    assert "under two names" in fusable(aliased)
    hooked = [Scaled(), Scaled()]
    hooked[1].fc2.register_forward_hook(lambda _m, _i, out: out * 0)  # would run on the first student only
    assert fusable(hooked) == "model 1 has a hook on 'fc2' (hooks of one's own are not run per student when packed)"
    from peerdistill.capture import FeatureRecorder

    recorded = [Scaled(), Scaled()]
    for m in recorded:  # peerdistill's own feature capture is released before packing: no obstacle
        FeatureRecorder(m, ["fc1"])
    assert fusable(recorded) is None


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.decode = nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False)
        self.decode.weight = self.embed.weight  # tied weights (one parameter, two layers): packable

    def forward(self, x):
        return self.decode(torch.relu(self.embed(x)))


class _Configured(nn.Module):
    class Settings:  # a plain object without __eq__
        def __init__(self, gain):
            self.gain = gain

    def __init__(self, gain=2.0, floor=float("nan")):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.settings, self.floor = self.Settings(gain), floor
        self.act = lambda t: torch.relu(t) * gain  # a lambda made per instance

    def forward(self, x):
        return self.act(self.fc(x)) * self.settings.gain


def test_identical_students_in_every_form_torch_allows_are_packed():
    assert fusable([_Tied(), _Tied()]) is None
    assert fusable([_Configured(), _Configured()]) is None  # NaN, per-instance lambdas, plain objects
    assert "attribute 'act'" in fusable([_Configured(), _Configured(gain=3.0)])  # the lambda's closure differs
    assert fusable([torch.compile(Scaled()), torch.compile(Scaled())]) is None
    compiled = [Scaled(), Scaled()]
    for m in compiled:
        m.compile()
    assert fusable(compiled) is None
    with pytest.warns(FutureWarning):  # torch's hook-based weight norm recomputes each student's weight
        normed = [nn.utils.weight_norm(nn.Linear(6, 6)) for _ in range(2)]
    assert fusable(normed) is None
    x = torch.randn(4, 6)
    outputs, _ = StudentGroup(normed).train()(x)
    for out, model in zip(outputs, normed):  # each alone (they cannot be deep-copied)
        torch.testing.assert_close(out, model(x))
    assert not torch.allclose(outputs[0], outputs[1])


def test_a_parameter_kept_in_a_plain_attribute_is_not_packed():
    """functional_call swaps each student's tensors in where layers hold them, not in a list."""
    kept = [Scaled(), Scaled()]
    for m in kept:
        m.weights = [m.fc1.weight]
    assert fusable(kept) == ("model 0's attribute 'weights' holds 'fc1.weight' (the packed forward swaps each "
                             "student's tensors only in layers)")


class _ChangesItself(nn.Module):
    """A forward that changes the model's own tensors as ordinary PyTorch code may: a buffer
    assigned anew, a weight clamped in place, an Embedding renormalising its rows (max_norm)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.emb = nn.Embedding(10, 4, max_norm=1.0)
        with torch.no_grad():
            self.emb.weight.mul_(10)  # rows longer than max_norm: the forward shortens them
        self.register_buffer("running_abs", torch.zeros(()))

    def forward(self, x):
        h = self.lin(x)
        with torch.no_grad():
            self.lin.weight.clamp_(-0.1, 0.1)
        self.running_abs = 0.9 * self.running_abs + 0.1 * h.detach().abs().mean()
        return h + self.emb(torch.arange(len(x)))


def test_what_a_forward_changes_in_its_own_tensors_is_kept_per_student():
    torch.manual_seed(0)
    alone = [_ChangesItself() for _ in range(K)]
    packed = copy.deepcopy(alone)
    group = StudentGroup(packed)
    for seed in (1, 2):  # the second forward starts from what the first kept
        x = batch("cnn", seed)[:, 0, 0, :4]
        outputs, _ = group(x)
        for model, out in zip(alone, outputs):
            torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-6)
    for a, p in zip(alone, packed):
        for (name, expected), got in zip(a.state_dict().items(), p.state_dict().values()):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)
        assert float(p.running_abs) > 0 and float(p.lin.weight.abs().max()) <= 0.1 + 1e-7
        assert float(p.emb.weight.norm(dim=1)[:4].max()) <= 1.0 + 1e-5


def test_a_buffer_assigned_a_new_shape_is_refused_by_name():
    class Grows(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)
            self.register_buffer("seen", torch.zeros(1))

        def forward(self, x):
            self.seen = torch.cat([self.seen, x.detach().mean().reshape(1)])
            return self.lin(x)

    group = StudentGroup([Grows(), Grows()])
    with pytest.raises(ConfigError, match="gives buffer 'seen' a new shape"):
        group(torch.randn(3, 4))


def test_torch_compile_captures_the_packed_forward_in_one_graph():
    # What eager mode watches besides BatchNorm's statistics (a buffer assigned anew, a parameter
    # changed in place) would break the graph; under compile it is not watched.
    torch.manual_seed(0)
    group = StudentGroup([ResNet(1, 3, blocks=[1, 1], width=4) for _ in range(2)]).train()
    explained = torch._dynamo.explain(group)(torch.randn(8, 1, 12, 12))
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
    captured = [str(n.target) for g in explained.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert sum("conv" in name for name in captured) >= 2  # the students' layers are in the graph
