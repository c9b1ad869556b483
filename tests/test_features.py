"""Feature capture, connectors and feature losses against independent computations."""

import math

import pytest
import torch
from torch import nn

from peerdistill.capture import FeatureRecorder, find_module, unwrap
from peerdistill.connectors import Connector
from peerdistill.errors import ConfigError, DataError
from peerdistill.losses import attention_transfer, fitnet_hint, similarity_preserving
from peerdistill.models import SmallCNN


def test_capture_by_path_matches_the_submodule_output():
    model = SmallCNN(1, 3, 8, 2)
    recorder = FeatureRecorder(model, ["features", "features.2"])
    x = torch.randn(4, 1, 8, 8)
    reference = model.features(x)
    recorder.take()
    model(x)
    features = recorder.take()
    assert torch.allclose(features["features"], reference)
    assert features["features.2"].shape == (4, 8, 8, 8)
    assert recorder.take() == {}  # handed over once
    recorder.remove()
    model(x)
    assert recorder.take() == {}


def test_wrong_path_lists_close_matches():
    with pytest.raises(ConfigError, match="no module at path 'featurs.2'; close matches: features.2"):
        find_module(SmallCNN(1, 3), "featurs.2", "model 'student1'")


def test_capture_through_torch_compile_and_data_parallel():
    model = SmallCNN(1, 3, 8, 2)
    x = torch.randn(4, 1, 8, 8)
    # aot_eager traces the hooks with dynamo and AOT autograd like inductor, without compiling C++.
    compiled = torch.compile(model, backend="aot_eager")
    assert unwrap(compiled) is model
    recorder = FeatureRecorder(compiled, ["features"])
    out = compiled(x)
    feature = recorder.take()["features"]
    assert torch.allclose(feature, model.features(x), atol=1e-6)
    assert out.shape == (4, 3)
    # Gradients flow through the captured map: a loss on it alone reaches the first conv's
    # weight, with the gradient the same loss has on the eager model's own map.
    first = model.features[0].weight
    (through_capture,) = torch.autograd.grad(feature.pow(2).mean(), first)
    (eager,) = torch.autograd.grad(model.features(x).pow(2).mean(), first)
    assert through_capture.abs().sum() > 0
    assert torch.allclose(through_capture, eager, rtol=1e-5, atol=1e-7)
    # a second compiled instance of the class recording another layer records it too
    other = SmallCNN(1, 3, 8, 2)
    second = FeatureRecorder(torch.compile(other, backend="aot_eager"), ["features.4"], owner="student2")
    torch.compile(other, backend="aot_eager")(x)
    assert torch.allclose(second.take(complete=True)["features.4"], other.features[:5](x), atol=1e-6)
    wrapped = nn.DataParallel(SmallCNN(1, 3, 8, 2))
    assert unwrap(wrapped) is wrapped.module
    rec = FeatureRecorder(wrapped, ["features.0"])
    wrapped(x)
    assert rec.take()["features.0"].shape == (4, 8, 8, 8)
    # a path as the wrapper's own named_modules() lists it (module.features.0) names the same layer
    assert "module.features.0" in dict(wrapped.named_modules())
    assert find_module(wrapped, "module.features.0") is wrapped.module.features[0]
    assert find_module(compiled, "_orig_mod.features") is model.features
    with pytest.raises(ConfigError, match="no module at path 'module.features.0'"):  # (a plain model has no such path)
        find_module(model, "module.features.0")


@pytest.mark.parametrize("learner,target,kind", [
    ((8, 4, 4), (16, 4, 4), "channels"),
    ((16, 8, 8), (16, 4, 4), "size"),
    ((8, 8, 8), (32, 2, 2), "both"),
    ((10,), (6,), "vector"),
    ((16, 4, 4), (16, 4, 4), "same"),
])
def test_connectors_for_channel_and_spatial_mismatch(learner, target, kind):
    c = Connector(learner, target)
    size = target[1:] if len(target) == 3 else None
    y = c(torch.randn(3, *learner), size)
    assert y.shape == (3, *target)
    has_conv = any(isinstance(m, nn.Conv2d) for m in c.modules())
    assert has_conv == (kind in ("channels", "both"))
    assert any(isinstance(m, nn.Linear) for m in c.modules()) == (kind == "vector")
    assert c.is_identity == (kind in ("same", "size"))
    if kind == "size":  # pure resizing: bilinear interpolation of the input, to the size given at call time
        x = torch.randn(2, *learner)
        expected = nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
        assert torch.allclose(c(x, (4, 4)), expected)
        assert c(x, (6, 6)).shape[-2:] == (6, 6)
    with pytest.raises(ConfigError, match="cannot connect"):
        Connector((4, 2, 2), (4,))


def test_fitnet_hint_is_half_mean_squared_error():
    a, b = torch.randn(2, 3, 4, 4, requires_grad=True), torch.randn(2, 3, 4, 4, requires_grad=True)
    expected = 0.5 * sum((x - y) ** 2 for x, y in zip(a.flatten().tolist(), b.flatten().tolist())) / a.numel()
    loss = fitnet_hint(a, b)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert b.grad is None and a.grad is not None


def naive_attention(feature, p=2):
    """Q_j = sum_c |A_cj|^p per position j, divided by its L2 norm; one list per sample."""
    maps = []
    for sample in feature.tolist():
        c, h, w = len(sample), len(sample[0]), len(sample[0][0])
        q = [sum(abs(sample[k][i][j]) ** p for k in range(c)) for i in range(h) for j in range(w)]
        norm = math.sqrt(sum(v * v for v in q))
        maps.append([v / norm for v in q])
    return maps


def test_attention_transfer_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 5, 4, 4, generator=g), torch.randn(3, 7, 4, 4, generator=g)
    qs, qt = naive_attention(s), naive_attention(t)
    expected = sum(math.sqrt(sum((a - b) ** 2 for a, b in zip(x, y))) for x, y in zip(qs, qt)) / 3
    assert attention_transfer(s, t).item() == pytest.approx(expected, rel=1e-5)
    # a map of another size is resized to the target's first
    big = torch.randn(3, 5, 8, 8, generator=g)
    resized = nn.functional.interpolate(big, size=(4, 4), mode="bilinear", align_corners=False)
    assert attention_transfer(big, t).item() == pytest.approx(attention_transfer(resized, t).item(), rel=1e-6)


@pytest.mark.parametrize("p", [1.0, 3.0])
def test_attention_maps_take_absolute_values_for_any_power(p):
    """Q = sum_c |A_c|^p: with p = 2 the absolute value changes nothing, with odd powers it does
    (signed activations would cancel); both against the loop formula."""
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(2, 3, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    qs, qt = naive_attention(s, p), naive_attention(t, p)
    expected = sum(math.sqrt(sum((a - b) ** 2 for a, b in zip(x, y))) for x, y in zip(qs, qt)) / 2
    assert attention_transfer(s, t, p).item() == pytest.approx(expected, rel=1e-5)


def test_attention_transfer_sends_no_gradient_to_its_target():
    """The source of an at edge learns nothing through it: the target feature is detached inside."""
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 4, 4, 4, generator=g).requires_grad_(True)
    t = torch.randn(2, 6, 4, 4, generator=g).requires_grad_(True)
    attention_transfer(s, t).backward()
    assert t.grad is None and s.grad.abs().sum() > 0


def test_similarity_preserving_matches_the_formula():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 6, 3, 3, generator=g)

    def gram(x):
        rows = [r.flatten().tolist() for r in x]
        G = [[sum(a * b for a, b in zip(ri, rj)) for rj in rows] for ri in rows]
        return [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in G]

    gs, gt = gram(s), gram(t)
    expected = sum((gt[i][j] - gs[i][j]) ** 2 for i in range(4) for j in range(4)) / 16
    assert similarity_preserving(s, t).item() == pytest.approx(expected, rel=1e-5)
    s.requires_grad_(True)
    t.requires_grad_(True)
    similarity_preserving(s, t).backward()
    assert t.grad is None and s.grad is not None


def test_a_sample_or_node_of_zeros_keeps_its_gradient_finite_and_of_normal_size():
    """An all-zero learner sample (SP) or node (pair-wise) has a zero row after normalising; its
    value is F.normalize's, and its gradient stays the size of the others' (F.normalize's
    divide by 1e-12 made it about 1e10)."""
    import torch.nn.functional as F

    from peerdistill.losses.dense import pairwise_affinity

    g = torch.Generator().manual_seed(3)
    learner, target = torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 6, 3, 3, generator=g)
    learner[2] = 0
    q_l, q_t = learner.flatten(1), target.flatten(1)
    reference = (F.normalize(q_t @ q_t.T, dim=1) - F.normalize(q_l @ q_l.T, dim=1)).pow(2).sum() / 16
    maps, sources = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 5, 3, 3, generator=g)
    maps[1, :, 0, 2] = 0  # one node (node_size 1) of zeros
    nodes = [F.normalize(m.flatten(2), dim=1) for m in (maps, sources)]
    affinities = [n.transpose(1, 2) @ n for n in nodes]
    pair_reference = (affinities[0] - affinities[1]).pow(2).mean(dim=(1, 2)).mean()
    for term, x, y, expected in ((similarity_preserving, learner, target, reference),
                                 (lambda a, b: pairwise_affinity(a, b, node_size=1), maps, sources, pair_reference)):
        x = x.clone().requires_grad_(True)
        value = term(x, y)
        assert value.item() == pytest.approx(expected.item(), rel=1e-5)
        value.backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().max() < 10


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gram_matrices_stay_in_fp32_under_autocast(dtype):
    # Sums of 16*32*32 products of ReLU features: above fp16's largest number (65504), and bf16
    # keeps too few digits for the small differences these losses measure.
    from peerdistill.losses.dense import pairwise_affinity

    g = torch.Generator().manual_seed(2)
    s = (torch.randn(4, 16, 32, 32, generator=g).relu() * 3)
    t = s + 0.05 * torch.randn(4, 16, 32, 32, generator=g)
    exact = {"sp": similarity_preserving(s, t).item(), "pair": pairwise_affinity(s, t).item()}
    with torch.autocast("cpu", dtype=dtype):
        mixed = {"sp": similarity_preserving(s, t).item(), "pair": pairwise_affinity(s, t).item()}
    assert mixed == pytest.approx(exact, rel=1e-5)


def test_a_recorded_layer_that_returns_a_dict_is_named():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            return {"feat": self.conv(x)}

    model = nn.ModuleDict({"encoder": Encoder()})
    FeatureRecorder(model, ["encoder"], owner="model 'student1'")
    with pytest.raises(ConfigError, match="layer 'encoder' of model 'student1' returns a dict, not a tensor .* "
                                          "record one of its submodules"):
        model["encoder"](torch.zeros(1, 1, 4, 4))


def test_a_layer_output_changed_in_place_later_is_refused_not_read_changed():
    from peerdistill.models.cnn import SmallCNN
    from peerdistill.models.heads import HeadedModel

    net = SmallCNN(1, 3, 4, 3)  # features.5 is a BatchNorm followed by ReLU(inplace=True)
    recorder = FeatureRecorder(net, ["features.5", "features.6"], owner="student1")
    net(torch.randn(2, 1, 8, 8))
    with pytest.raises(ConfigError, match=r"student1: the output of layer\(s\) \['features.5'\] is changed in place"):
        recorder.take()
    with torch.inference_mode():  # a frozen teacher's tensors keep no version counter: copied when recorded
        net(torch.randn(2, 1, 8, 8))
        features = recorder.take()
    assert features["features.5"].min() < 0 <= features["features.6"].min()  # BatchNorm's own output, not ReLU's
    recorder.remove()
    with pytest.raises(ConfigError, match="changed in place"):  # a self-distillation head placed there too
        HeadedModel(SmallCNN(1, 3, 4, 3), ["features.1"], "features.9", 3, torch.zeros(2, 1, 8, 8))

    class OwnSum(nn.Module):  # the model's own forward changes a top-level layer's output: no block to record
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            out = self.conv(x)
            out += 1
            return out

    model = OwnSum()
    recorder = FeatureRecorder(model, ["conv"], owner="student1")
    model(torch.randn(2, 1, 8, 8))
    with pytest.raises(ConfigError, match=r"the block that holds that code; where the model's own forward changes it, "
                                          r"write that line out of place \(out = out \+ identity\) or record another "
                                          r"layer$"):  # (review 56a)
        recorder.take()
    recorder.remove()


def test_a_connector_projects_at_the_learners_size_then_resizes():
    """Channels and size both differ: the 1x1 convolution and BatchNorm (training statistics over
    the learner's own 8x8 positions) first, then bilinear resizing to the target's 4x4, written out
    with plain tensor operations."""
    torch.manual_seed(0)
    c = Connector((4, 8, 8), (6, 4, 4)).train()
    x = torch.randn(3, 4, 8, 8) * 2 + 1
    conv, norm = c.project[0], c.project[1]
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
        projected = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x)
        mean = projected.mean(dim=(0, 2, 3), keepdim=True)
        var = projected.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        normalised = (projected - mean) / torch.sqrt(var + norm.eps)
        expected = normalised * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
        expected = nn.functional.interpolate(expected, size=(4, 4), mode="bilinear", align_corners=False)
        torch.testing.assert_close(c(x, (4, 4)), expected, rtol=1e-4, atol=1e-5)


def test_a_hint_through_a_connector_reaches_the_targets_channels_and_size():
    """Learner ones [1, 1, 2, 2], target zeros [1, 2, 4, 4]: the graph's connector (1x1 weights 2,
    BatchNorm in eval at its initial mean 0 and variance 1) gives 2 / sqrt(1 + 1e-5) everywhere at
    4x4, so the hint is 0.5 * 4 / (1 + 1e-5), by hand."""
    from peerdistill.cohort import CohortOutput
    from peerdistill.graph import Edge, KnowledgeGraph

    graph = KnowledgeGraph([Edge("t", "s", "hint", 1.0, 1.0, "f", "f")])
    out = CohortOutput(logits={}, features={"s": {"f": torch.ones(1, 1, 2, 2)}, "t": {"f": torch.zeros(1, 2, 4, 4)}})
    connectors = graph.build_connectors(out)
    connector = connectors["s/hint<-t[f<-f]"].eval()
    with torch.no_grad():
        connector.project[0].weight.fill_(2.0)
    loss = graph.losses(out, connectors=connectors)["s/hint<-t[f<-f]"]
    assert loss.item() == pytest.approx(0.5 * 4 / (1 + 1e-5), rel=1e-6)


def _hooks(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in module.modules())


@pytest.mark.parametrize("fits", ["finished", "refused"])
def test_the_users_models_carry_no_hook_after_a_fit(tmp_path, tiny_data, fits):
    """The recorded layers are hooked while a fit runs only: a hook left on kept recording each
    of the user's forwards (holding its activations), failed torch.save(model) and piled up with
    the hooks of a next Cohort of the same modules."""
    import io

    from peerdistill import ClassificationTask, Cohort, Edge, KnowledgeGraph, Trainer, TrainSpec

    # refused: a student of four classes for data of three, found by the first forward of the fit
    teacher, student = SmallCNN(1, 3, width=8), SmallCNN(1, 3 if fits == "finished" else 4, width=4)
    for round_ in range(2):  # a second cohort of the same modules: no hook piled up
        cohort = Cohort.from_modules([student], teacher=teacher)
        edges = [Edge("teacher", "student1", "kl"),
                 Edge("teacher", "student1", "at", source_layer="features.2", target_layer="features.2")]
        trainer = Trainer(cohort, KnowledgeGraph(edges), ClassificationTask(3), train=TrainSpec(epochs=1),
                          run_dir=tmp_path / f"r{round_}", progress=False)
        assert _hooks(teacher) == _hooks(student) == 0  # (the layers are checked, not hooked, until a fit)
        if fits == "finished":
            trainer.fit(tiny_data)
        else:
            with pytest.raises(DataError, match="outputs 4 classes"):
                trainer.fit(tiny_data)
        assert _hooks(teacher) == _hooks(student) == 0
    torch.save(student, io.BytesIO())  # (failed: a hook is a local function, which pickle cannot save)


class _ChannelsLastBlocks(nn.Module):
    """ConvNeXt-like: a stem, then a block whose LayerNorm and Linear act on [B, H, W, C]; with
    ``norm2d`` the norm is timm's LayerNorm2d kind (a LayerNorm giving [B, C, H, W])."""

    class _Norm2d(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def __init__(self, width: int = 4, norm2d: bool = False):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.norm = self._Norm2d(width) if norm2d else nn.LayerNorm(width)
        self.mlp = nn.Linear(width, width)
        self.head = nn.Linear(width, 3)
        self.norm2d = norm2d

    def forward(self, x):
        x = self.stem(x)
        if self.norm2d:
            return self.head(self.norm(x).mean((2, 3)))
        x = self.mlp(self.norm(x.permute(0, 2, 3, 1)))
        return self.head(x.mean((1, 2)))


@pytest.mark.parametrize("kind, layer, norm2d, refused", [
    ("at", "norm", False, True),  # attention over H where channels are meant
    ("hint", "mlp", False, True),  # a connector mixing rows: 4 vs the teacher's 8 channels
    ("at", "norm", True, False),  # timm's LayerNorm2d gives [C, H, W]: read as it is
    ("sp", "norm", False, False),  # sp reads any layout
])
def test_a_layer_giving_channels_last_maps_is_refused_where_channels_first_are_read(tiny_data, kind, layer, norm2d,
                                                                                   refused):
    from peerdistill import ClassificationTask, Cohort, Edge, KnowledgeGraph, Trainer, TrainSpec

    cohort = Cohort.from_modules([_ChannelsLastBlocks(norm2d=norm2d)], teacher=SmallCNN(1, 3, width=8))
    edge = Edge("teacher", "student1", kind, source_layer="features.2", target_layer=layer)
    trainer = Trainer(cohort, KnowledgeGraph([edge]), ClassificationTask(3), train=TrainSpec(epochs=1), progress=False)
    if not refused:
        trainer.fit(tiny_data)
        return
    with pytest.raises(ConfigError, match=rf"model 'student1': layer '{layer}' gives \[8, 8, 4\], channels last "
                                          rf"\(\[H, W, C\]: a (LayerNorm|Linear) over the last axis.*or use sp"):
        trainer.fit(tiny_data)


def test_two_channels_last_layers_of_one_shape_compare_elementwise(tiny_data):
    # hint between two [H, W, C] maps of one shape: no connector, no resize: the layout does not matter
    from peerdistill import ClassificationTask, Cohort, Edge, KnowledgeGraph, Trainer, TrainSpec

    cohort = Cohort.from_modules([_ChannelsLastBlocks()], teacher=_ChannelsLastBlocks())
    edge = Edge("teacher", "student1", "hint", source_layer="mlp", target_layer="mlp")
    Trainer(cohort, KnowledgeGraph([edge]), ClassificationTask(3), train=TrainSpec(epochs=1), progress=False).fit(
        tiny_data)


def test_a_self_distillation_head_on_a_channels_last_layer_is_refused():
    from peerdistill import HeadedModel

    with pytest.raises(ConfigError, match=r"self-distillation: layer 'norm' gives \[8, 8, 4\], channels last"):
        HeadedModel(_ChannelsLastBlocks(), ["norm"], "mlp", 3, torch.zeros(1, 1, 8, 8))


def test_a_channels_last_layer_named_by_a_wrappers_path_is_known_as_one():
    from peerdistill.capture import channels_last_layer

    wrapped = nn.DataParallel(_ChannelsLastBlocks())
    assert channels_last_layer(wrapped, "module.norm", (8, 8, 4)) == "LayerNorm"  # (as named_modules() lists it)
    assert channels_last_layer(wrapped, "norm", (8, 8, 4)) == "LayerNorm"
    assert channels_last_layer(wrapped, "module.stem", (4, 8, 8)) is None


class _ReusedActivation(nn.Module):
    """One nn.ReLU object placed twice in a Sequential, and a layer placed once named twice
    (``last`` is ``features.2``)."""

    def __init__(self):
        super().__init__()
        act = nn.ReLU()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), act, nn.Conv2d(4, 6, 3, stride=2, padding=1), act)
        self.last = self.features[2]
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def test_a_path_to_one_module_placed_twice_is_refused_not_read_at_the_other_place(tiny_data):
    """Review 46c: the hook of 'features.1' sat on the ReLU shared with 'features.3' and kept
    that place's [6, 4, 4] output for the [4, 8, 8] one named, in silence."""
    from peerdistill import ClassificationTask, Cohort, Edge, KnowledgeGraph, Trainer, TrainSpec

    cohort = Cohort.from_modules([_ReusedActivation()], teacher=SmallCNN(1, 3, width=8))
    edge = Edge("teacher", "student1", "hint", source_layer="features.2", target_layer="features.1")
    trainer = Trainer(cohort, KnowledgeGraph([edge]), ClassificationTask(3), train=TrainSpec(epochs=1), progress=False)
    with pytest.raises(ConfigError, match=r"model 'student1': layer 'features.1' is one module object placed at "
                                          r"\['features.1', 'features.3'\] \(a ReLU reused\).*a new nn.ReLU\(\) for each"):
        trainer.fit(tiny_data)


def test_a_layer_placed_once_under_two_names_is_recorded_whatever_ran_before():
    model = _ReusedActivation().eval()
    recorder = FeatureRecorder(model, ["last"])
    x = torch.randn(2, 1, 8, 8)
    model(x)
    model(x)  # (forwards without a take between them, as an evaluation's: no call counted twice)
    got = recorder.take(complete=True)["last"]
    assert torch.equal(got, model.features[:3](x))
    recorder.remove()
    assert _hooks(model) == 0 and not any(m._forward_pre_hooks for m in model.modules())


def test_a_self_distillation_head_on_the_deep_layer_under_another_name_is_refused():
    from peerdistill import HeadedModel

    with pytest.raises(ConfigError, match=r"head layer 'last' and deep layer 'features.2' are one module object "
                                          r"\(placed at \['features.2', 'last'\]: a module reused, or named twice\)"):
        HeadedModel(_ReusedActivation(), ["last"], "features.2", 3, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ConfigError, match=r"head layer 'features.1' and deep layer 'features.3' are one module object "
                                          r"\(placed at \['features.1', 'features.3'\]"):  # (review 46d L3)
        HeadedModel(_ReusedActivation(), ["features.1"], "features.3", 3, torch.zeros(2, 1, 8, 8))


class _SwinLikeStages(nn.Module):
    """Stages of blocks ``x + mlp(norm(x))`` on [B, H, W, C] maps, as timm's Swin stages: their
    output comes from no LayerNorm or Linear of its own (a sum)."""

    class _Block(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.norm, self.mlp = nn.LayerNorm(width), nn.Linear(width, width)

        def forward(self, x):
            return x + self.mlp(self.norm(x))

    def __init__(self, width: int = 6):
        super().__init__()
        self.patch = nn.Conv2d(1, width, 2, stride=2)
        self.stages = nn.Sequential(self._Block(width), self._Block(width))
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.stages(self.patch(x).permute(0, 2, 3, 1)).mean((1, 2)))


def test_a_stage_giving_channels_last_maps_is_warned_of_where_channels_first_are_read(tiny_data):
    """Review 46c: a Swin-like stage ([4, 4, 6]) was read as 4 channels of 4x6 maps in silence;
    only a LayerNorm or Linear recorded itself was known as channels last."""
    from peerdistill import ClassificationTask, Cohort, Edge, HeadedModel, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.capture import channels_last_inside

    model = _SwinLikeStages()
    assert channels_last_inside(model, "stages", (4, 4, 6)) == "LayerNorm 'stages.0.norm'"
    assert channels_last_inside(model, "stages", (6, 4, 4)) is None  # [C, H, W]: its width is not the last axis
    assert channels_last_inside(SmallCNN(1, 3, width=4), "features", (4, 8, 8)) is None
    assert channels_last_inside(SmallCNN(1, 3, width=8), "features", (8, 4, 4)) is None  # (a conv gives 8 channels)
    # MONAI's Swin stages: blocks on [H, W, C], then a merging Linear and a permutation back to [C, H, W]
    holder = nn.Sequential()
    holder.add_module("stage", nn.ModuleDict({"stages": model.stages, "merge": nn.Linear(6, 4)}))
    assert channels_last_inside(holder, "stage", (4, 4, 6)) is None  # (review 46d L2: a width of the first axis)
    cohort = Cohort.from_modules([model], teacher=SmallCNN(1, 3, width=8))
    edge = Edge("teacher", "student1", "at", source_layer="features.2", target_layer="stages")
    with pytest.warns(UserWarning, match=r"model 'student1': layer 'stages' gives \[4, 4, 6\] and holds a LayerNorm "
                                         r"'stages.0.norm' of width 6, its last axis, but nothing of 4 channels: its "
                                         r"maps look channels last"):
        Trainer(cohort, KnowledgeGraph([edge]), ClassificationTask(3), train=TrainSpec(epochs=1),
                progress=False).fit(tiny_data)
    with pytest.warns(UserWarning, match=r"self-distillation: layer 'stages.0' gives \[4, 4, 6\]"):
        HeadedModel(_SwinLikeStages(), ["stages.0"], "stages.1", 3, torch.zeros(2, 1, 8, 8))


def test_a_path_in_a_model_without_submodules_says_none_can_be_recorded():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Parameter(torch.randn(4, 1, 3, 3))

        def forward(self, x):
            return torch.nn.functional.conv2d(x, self.w1).mean((2, 3))

    with pytest.raises(ConfigError, match=r"has no module at path 'w1' \('w1' is a parameter\): it has no submodules "
                                          r"at all .*make the layer to record a module of its own"):
        find_module(Functional(), "w1")


def test_a_self_distilled_network_carries_no_hook_between_forwards(tmp_path, tiny_data):
    """Review 44b: HeadedModel hooked its head layers for good, so the network shipped
    (``net.base``) failed torch.save and a forward of it alone kept two layers' activations."""
    import io

    from peerdistill import ClassificationTask, Cohort, HeadedModel, KnowledgeGraph, Trainer, TrainSpec, preset_edges

    base = SmallCNN(1, 3, width=8)
    net = HeadedModel(base, head_layers=["features.2"], deep_layer="features.6", num_classes=3,
                      sample_input=torch.zeros(2, 1, 8, 8))
    assert _hooks(base) == 0
    out = net(torch.zeros(2, 1, 8, 8))  # the heads still see their layers
    assert set(out["heads"]) == {"features.2"} and _hooks(base) == 0
    cohort = Cohort.from_modules([net])
    during = []  # a fit holds them (a compiled forward registering hooks broke its graph at each: review 44g)
    Trainer(cohort, KnowledgeGraph(preset_edges("self", cohort)), ClassificationTask(3), train=TrainSpec(epochs=1),
            progress=False, callbacks=[lambda epoch, row: during.append(_hooks(base))]).fit(tiny_data)
    assert during == [2] and _hooks(base) == 0
    torch.save(base, io.BytesIO())


def test_a_layer_returning_a_number_then_its_map_is_refused_by_what_it_returns():
    """Review 56a: a (loss, map) pair recorded its number, and the connector then refused 'a feature of
    shape ()', which said nothing of the tuple."""
    from peerdistill.capture import FeatureRecorder
    from peerdistill.errors import ConfigError

    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y.pow(2).mean(), y

    model = nn.Sequential()
    model.add_module("block", WithLoss())
    recorder = FeatureRecorder(model, ["block"], owner="student1")
    with pytest.raises(ConfigError, match=r"^layer 'block' of student1 returns a tuple whose first item, the one "
                                          r"recorded, is a single number: record a submodule that returns the feature "
                                          r"itself$"):
        model(torch.zeros(2, 1, 4, 4))
    recorder.remove()
