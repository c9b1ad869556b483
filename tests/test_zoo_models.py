"""The zoo's small CNN, U-Nets and ResNet blocks are the architectures their docstrings describe:
parameter counts from the layer list written out by hand, the residual blocks against a
functional forward, the spatial sizes each stage keeps, and the feature layer the classifier reads."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from peerdistill.models import MobileUNet, ResNet, SmallCNN, UNet, count_parameters
from peerdistill.models.resnet import BasicBlock, Bottleneck


def conv_bn(c_in, c_out, k=3, groups=1):
    """A bias-free convolution and its BatchNorm (weight and bias)."""
    return c_in // groups * c_out * k * k + 2 * c_out


def small_cnn_count(c_in, k, width, depth):
    channels = [c_in] + [width * 2**i for i in range(depth)]
    return sum(conv_bn(a, b) for a, b in zip(channels, channels[1:])) + channels[-1] * k + k


def unet_count(c_in, k, width, depth, block):
    channels = [width * 2**i for i in range(depth + 1)]
    down = block(c_in, channels[0]) + sum(block(channels[i], channels[i + 1]) for i in range(depth))
    up = sum(block(channels[i + 1] + channels[i], channels[i]) for i in range(depth))
    return down + up + channels[0] * k + k


def double_conv(a, b):
    return conv_bn(a, b) + conv_bn(b, b)


def separable_twice(a, b):  # depthwise 3x3 + pointwise 1x1, twice
    return conv_bn(a, a, groups=a) + conv_bn(a, b, k=1) + conv_bn(b, b, groups=b) + conv_bn(b, b, k=1)


@pytest.mark.parametrize("c_in, k, width, depth", [(1, 10, 4, 2), (3, 2, 5, 3)])
def test_the_small_cnn_and_the_u_nets_have_the_parameters_of_their_layers(c_in, k, width, depth):
    assert count_parameters(SmallCNN(c_in, k, width, depth)) == small_cnn_count(c_in, k, width, depth)
    assert count_parameters(UNet(c_in, k, width, depth)) == unet_count(c_in, k, width, depth, double_conv)
    assert count_parameters(MobileUNet(c_in, k, width, depth)) == unet_count(c_in, k, width, depth, separable_twice)


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _randomised(block):
    """Random weights and BatchNorm statistics, in eval mode: every term of the block shows."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
                module.weight.copy_(torch.randn(module.num_features, generator=g))
                module.bias.copy_(torch.randn(module.num_features, generator=g))
    return block.eval()


@pytest.mark.parametrize("c_in, c_out, stride", [(4, 4, 1), (4, 8, 2)])
def test_a_basic_block_is_relu_of_two_convolutions_plus_its_shortcut(c_in, c_out, stride):
    block = _randomised(BasicBlock(c_in, c_out, stride))
    x = torch.randn(2, c_in, 6, 6, generator=torch.Generator().manual_seed(1))
    out = F.relu(_bn(F.conv2d(x, block.conv1.weight, stride=stride, padding=1), block.bn1))
    out = _bn(F.conv2d(out, block.conv2.weight, padding=1), block.bn2)
    shortcut = x if stride == 1 else _bn(F.conv2d(x, block.shortcut[0].weight, stride=stride), block.shortcut[1])
    torch.testing.assert_close(block(x), F.relu(out + shortcut))


@pytest.mark.parametrize("c_in, c_out, stride", [(8, 8, 1), (4, 16, 2)])
def test_a_bottleneck_reduces_convolves_with_the_stride_expands_and_adds_its_shortcut(c_in, c_out, stride):
    block = _randomised(Bottleneck(c_in, c_out, stride))
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (stride, stride)  # the stride in the 3x3
    x = torch.randn(2, c_in, 6, 6, generator=torch.Generator().manual_seed(1))
    out = F.relu(_bn(F.conv2d(x, block.conv1.weight), block.bn1))
    out = F.relu(_bn(F.conv2d(out, block.conv2.weight, stride=stride, padding=1), block.bn2))
    out = _bn(F.conv2d(out, block.conv3.weight), block.bn3)
    shortcut = x if stride == 1 and c_in == c_out else _bn(F.conv2d(x, block.shortcut[0].weight, stride=stride),
                                                           block.shortcut[1])
    torch.testing.assert_close(block(x), F.relu(out + shortcut))


def _shapes(model, paths, x):
    seen = {}
    for path in paths:
        model.get_submodule(path).register_forward_hook(lambda m, i, o, p=path: seen.update({p: tuple(o.shape[2:])}))
    model.eval()(x)
    return [seen[p] for p in paths]


def test_each_stem_gives_the_size_its_images_call_for():
    # small: full resolution into the first stage, halved at each later one (32 -> 32, 16, 8)
    small = ResNet(3, 10, blocks=[1, 1, 1], width=4)
    assert _shapes(small, ["stem", "layers.0", "layers.1", "layers.2"], torch.zeros(1, 3, 32, 32)) == [
        (32, 32), (32, 32), (16, 16), (8, 8)]
    # imagenet: a stride-2 convolution and a padded stride-2 max-pool, 224 -> 56 (torchvision's layout)
    big = ResNet(3, 10, blocks=[1], width=4, stem="imagenet")
    assert _shapes(big, ["stem.0", "stem"], torch.zeros(1, 3, 224, 224)) == [(112, 112), (56, 56)]


def test_odd_sizes_keep_their_edge_pixels_down_the_levels():
    # a 2x2 pooling rounds up (ceil_mode): 7 -> 4 in the CNN, 9 -> 5 -> 3 in the U-Net
    assert _shapes(SmallCNN(1, 3, 4, 2), ["features"], torch.zeros(1, 1, 7, 7)) == [(4, 4)]
    unet = UNet(1, 2, width=4, depth=2)
    assert _shapes(unet, ["down.0", "down.1", "down.2"], torch.zeros(1, 1, 9, 9)) == [(9, 9), (5, 5), (3, 3)]
    assert unet(torch.zeros(1, 1, 9, 9)).shape == (1, 2, 9, 9)


@pytest.mark.parametrize("model, reads", [
    (SmallCNN(1, 3, 4, 3), lambda m, f: m.classifier(m.pool(f).flatten(1))),
    (ResNet(1, 3, blocks=[1, 1, 1], width=4), lambda m, f: m.fc(m.pool(f).flatten(1))),
    (UNet(1, 2, width=4, depth=2), lambda m, f: m.head(f)),
    (MobileUNet(1, 2, width=4, depth=3), lambda m, f: m.head(f)),
], ids=["cnn", "resnet", "unet", "mobile_unet"])
def test_the_feature_layer_is_the_last_map_before_the_classifier(model, reads):
    # feature edges attach there: the deepest features (the decoder's full-resolution ones in a U-Net)
    seen = {}
    model.get_submodule(model.feature_layer).register_forward_hook(lambda m, i, o: seen.update(feature=o))
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    out = model.eval()(x)
    torch.testing.assert_close(reads(model, seen["feature"]), out)
    assert seen["feature"].shape[-1] > 1  # a map, not the pooled vector
    if isinstance(model, UNet | MobileUNet):
        assert seen["feature"].shape[-2:] == x.shape[-2:]


@pytest.mark.parametrize("make, message", [
    (lambda: SmallCNN(depth=0), "SmallCNN needs width >= 1 and depth >= 1"),
    (lambda: SmallCNN(width=0), "SmallCNN needs width >= 1 and depth >= 1"),
    (lambda: UNet(depth=0), "U-Net needs width >= 1 and depth >= 1"),
    (lambda: MobileUNet(width=0), "U-Net needs width >= 1 and depth >= 1"),
    (lambda: ResNet(blocks=[2, 0, 2]), "at least one block per stage"),
    (lambda: ResNet(blocks=[]), "at least one block per stage"),
])
def test_a_size_that_builds_no_layer_is_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("arch,args,message", [
    ("cnn", {"width": "abc"}, "args.width='abc': input should be a valid integer, unable to parse string"),
    ("unet", {"depth": 2.5}, "args.depth=2.5: input should be a valid integer, got a number with a fractional part"),
    ("resnet", {"blocks": [1, "x"]}, "args.blocks=[1, 'x']: input should be a valid"),
    ("resnet", {"block": 3}, "args.block=3: input should be a valid string"),
    ("cnn", {"width": True}, "args.width=True: input should be a valid integer"),  # not read as 1
    ("cnn", {"width": np.True_}, f"args.width={np.True_!r}: input should be a valid integer"),  # (numpy's repr)
    # args are passed as written, null as None (not the config keys' "null is the default"): said how to get that
    ("cnn", {"depth": None}, "args.depth=None: input should be a valid integer; for the model's default, leave "
                             "depth out of args"),
])
def test_a_zoo_models_argument_of_the_wrong_type_is_named(arch, args, message):
    """Said against the constructor's annotation, not as the constructor's comparison of str and int."""
    from peerdistill.errors import ConfigError
    from peerdistill.models import build_model

    with pytest.raises(ConfigError, match=re.escape(f"model 'student1': arch '{arch}': {message}")):
        build_model(arch, args, 3, 2, owner="model 'student1'")
    # the same arguments of the right types build (a list of blocks from YAML included)
    fixed = {"width": 4, "depth": 2, "blocks": [1, 1, 1, 1], "block": "basic"}
    built = build_model(arch, {k: fixed[k] for k in args}, 3, 2).built_with
    assert {k: built[k] for k in args} == {k: fixed[k] for k in args}


def test_a_zoo_model_too_large_to_train_is_refused_before_it_takes_memory():
    # a cnn of depth 100 doubles its channels 100 times: it took 21 GB, then the kernel killed it, without a word
    from peerdistill.errors import ConfigError
    from peerdistill.models import ZOO_PARAMETER_LIMIT, build_model

    said = ("model 'student1': arch 'cnn' with args {'width': 8, 'depth': %s, 'in_channels': 3, 'num_classes': 2} "
            "would have ")
    with pytest.raises(ConfigError, match=re.escape(said % 100 + "more parameters than a tensor can hold")):
        build_model("cnn", {"width": 8, "depth": 100}, 3, 2, owner="model 'student1'")
    count = small_cnn_count(3, 2, 8, 12)  # 1.6 billion: more than the limit, less than a tensor can hold
    assert count > ZOO_PARAMETER_LIMIT
    too_many = (f"{count:,} parameters (the zoo's limit: 1,000,000,000): lower width (the first level's channels, "
                "doubled at each level or stage after it); depth (the levels (cnn, unet) or the layers of each stage "
                "(detector))")
    with pytest.raises(ConfigError, match=re.escape(said % 12 + too_many)):
        build_model("cnn", {"width": 8, "depth": 12}, 3, 2, owner="model 'student1'")
    assert count_parameters(build_model("cnn", {"width": 8, "depth": 4}, 3, 2)) == small_cnn_count(3, 2, 8, 4)
    with pytest.raises(ConfigError, match=r"would have [\d,]+ parameters .*: lower blocks \(the stages, each "
                                          r"doubling the channels, and the blocks of each\)$"):
        build_model("resnet", {"blocks": [2] * 10}, 1, 2)  # the size args it was given, whichever the arch
    # arguments that are no size (a block's kind, a stem, strides) are not asked to be lowered
    with pytest.raises(ConfigError, match=r"lower width \(the first level's channels, doubled at each level or "
                                          r"stage after it\); block \(bottleneck blocks are four times as wide as "
                                          r"basic ones\)$"):
        build_model("resnet", {"width": 4096, "block": "bottleneck", "stem": "imagenet"}, 3, 2)
    with pytest.raises(ConfigError, match=r"lower reg_max \(the bins of each box side's distribution\)$"):
        build_model("detector", {"reg_max": 10_000_000}, 3, 2)
    with pytest.raises(ConfigError, match=r"lower width \([^)]*\)$"):
        build_model("detector", {"width": 4096, "strides": [8, 16, 32]}, 3, 2)


def test_a_model_arg_written_without_a_space_after_its_colon_is_said_as_such():
    from peerdistill.errors import ConfigError
    from peerdistill.models import build_model

    with pytest.raises(ConfigError, match=re.escape("model 'teacher': arch 'cnn' args: YAML reads 'width:4' as one "
                                                    "key: put a space after the colon, width: 4")):
        build_model("cnn", {"width:4": None}, 1, 2, owner="model 'teacher'")


def test_a_zoo_models_arguments_reach_it_as_it_takes_them():
    """A whole number written as a float or a text (YAML's 16.0, '16') is the int the annotation
    names, as a config's own numbers are read: the model built is the one with width 16."""
    from peerdistill.models import build_model

    for width in (16, 16.0, "16"):
        built = build_model("cnn", {"width": width, "depth": 1}, 3, 2)
        assert count_parameters(built) == small_cnn_count(3, 2, 16, 1), width
    assert build_model("detector", {"strides": [8, 16]}, 3, 2).layout.strides == (8, 16)  # a YAML list: a tuple
