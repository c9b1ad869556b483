"""engine.predict's hint names the channel count of the convolution a model applies first to its
input, not of the first one it registered (a head defined before the stem)."""

import pytest
import torch

from peerdistill.errors import DataError

TAKES_3 = r"^predict takes a batch x of shape \[N, C, H, W\] \(the models take 3 channel\(s\)\), "


class _HeadDefinedFirst(torch.nn.Module):
    """Registers its head (8 input channels) before its stem (3): module order is not call order."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Conv2d(8, 2, 1)
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return self.head(torch.relu(self.stem(x))).flatten(-2).mean(-1)


class _NormalisesFirst(_HeadDefinedFirst):
    """Standardises each of its 3 channels before the stem, so a batch of another layout fails
    before any convolution runs."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5))

    def forward(self, x):
        return super().forward(x - self.mean)


def _predict(model, x):
    from peerdistill import ClassificationTask, Cohort
    from peerdistill.engine import predict

    return predict(Cohort.from_modules([model]), ClassificationTask(2), x)


@pytest.mark.parametrize("model_class", [_HeadDefinedFirst, _NormalisesFirst])
def test_the_hint_names_the_channels_of_the_stem_not_of_the_first_registered_conv(model_class):
    """The head's 8 channels were named: a channels-last batch [N, H, W, 3] was not recognised
    (its last side is not 8) and torch's own error came out."""
    torch.manual_seed(0)
    model = model_class()
    with pytest.raises(DataError, match=TAKES_3 + r"got shape \(2, 12, 12, 3\), which looks channels-last "
                                                  r"\[N, H, W, C\]: x\.permute\(0, 3, 1, 2\)$") as caught:
        _predict(model, torch.rand(2, 12, 12, 3))
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert not any(conv._forward_pre_hooks for conv in (model.head, model.stem))  # the probe's hooks are gone


def test_one_image_without_its_batch_axis_is_refused_by_the_stem_channel_count():
    """[3, H, W] was let through (3 is not the head's 8): the stem took it as unbatched."""
    torch.manual_seed(0)
    with pytest.raises(DataError, match=TAKES_3 + r"got shape \(3, 12, 12\): one image \[C, H, W\] without its "
                                                  r"batch axis\? x\[None\] makes it a batch of one$"):
        _predict(_HeadDefinedFirst(), torch.rand(3, 12, 12))


def test_a_probe_leaves_a_training_model_training_and_its_batchnorm_statistics_alone():
    from peerdistill.engine.predict_batches import _image_conv
    from peerdistill import Cohort

    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3), _HeadDefinedFirst())
    cohort = Cohort.from_modules([model])
    model.train()
    assert _image_conv(cohort, torch.rand(2, 3, 12, 12)) is model[1].stem
    assert model.training and model[0].training
    assert model[0].num_batches_tracked.item() == 0
    torch.testing.assert_close(model[0].running_mean, torch.zeros(3))


def test_the_batch_passes_and_answers_as_the_model_does():
    torch.manual_seed(0)
    model = _NormalisesFirst()
    x = torch.rand(2, 3, 12, 12)
    torch.testing.assert_close(_predict(model, x)["student1"], torch.softmax(model.eval()(x), 1))
