"""The Python API met with bad arguments: one clear error from peerdistill (or a right result),
never a file written outside the run, a wrong objective trained to the end, or labels scored
that are not classes."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from peerdistill import ClassificationTask, Cohort, DataSplits, Edge, KnowledgeGraph, Member, SegmentationTask, \
    TensorData, Trainer, TrainSpec, evaluate, preset_edges, soft_kl
from peerdistill.detection.boxes import HeadLayout
from peerdistill.errors import ConfigError, DataError
from peerdistill.losses import attention_transfer, combine_soft_targets, decoupled_kd, kl_to_probs, \
    similarity_preserving
from peerdistill.losses.dense import channel_wise
from peerdistill.losses.detection import classification_map_kd, localization_kd


def _net(k=3):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, k))


def _arrays(n=60, k=3, seed=0):
    g = np.random.default_rng(seed)
    y = np.arange(n) % k
    return (g.normal(size=(n, 1, 8, 8)) + y[:, None, None, None]).astype("float32"), y


def _splits(x, y, test_y=None):
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    return DataSplits(TensorData(t(x[:36]), t(y[:36])), TensorData(t(x[36:48]), t(y[36:48])),
                      TensorData(t(x[48:]), t(y[48:] if test_y is None else test_y)), num_classes=3,
                      class_names=["a", "b", "c"], input_shape=(1, 8, 8))


def _fit(data, cohort=None, edges=(), run_dir=None, batch_size=12):
    torch.manual_seed(0)
    cohort = cohort or Cohort.from_modules([_net(), _net()])
    return Trainer(cohort, KnowledgeGraph(list(edges)), ClassificationTask(3), progress=False, device="cpu",
                   train=TrainSpec(epochs=1, batch_size=batch_size), run_dir=run_dir, seed=0).fit(data)


@pytest.mark.parametrize("name, message", [
    ("../../victim/important", "nor contain"), ("a/b", "nor contain"), ("a\\b", "nor contain"), ("", "be empty"),
    ("..", "be empty"), ("ensemble", "reserved"), ("teachers", "reserved"), ("best", "reserved"),
])
def test_a_model_name_that_is_a_path_or_reserved_is_refused(tmp_path, name, message):
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "important.safetensors").write_text("the user's own file")
    with pytest.raises(ConfigError, match=message):
        Cohort.from_modules([_net(), _net()], student_names=[name, "s2"])
    assert (tmp_path / "victim" / "important.safetensors").read_text() == "the user's own file"


@pytest.mark.parametrize("member, message", [
    (dict(module="resnet18"), "not a torch.nn.Module"),
    (dict(lr=-1.0), "learning rate -1.0"),
    (dict(lr=float("nan")), "learning rate nan"),
    (dict(role="pupil"), "'teacher' or a 'student'"),
    (dict(weight=float("nan")), "weight nan"),
    # (review 55a: torch's "Cannot copy out of meta tensor" as the run moved it to its device)
    (dict(module=_net().to("meta")), r"model 's1' holds tensors on the meta device, shapes without values: give it "
                                     r"its weights first \(module.to_empty\(device='cpu'\), then load_state_dict"),
])
def test_a_member_is_checked_when_the_cohort_is_made(member, message):
    fields = {"name": "s1", "module": _net(), "role": "student", **member}
    with pytest.raises(ConfigError, match=message):
        Cohort([Member(**fields), Member("s2", _net(), "student")])
    with pytest.raises(ConfigError, match="a list of student modules"):
        Cohort.from_modules(_net())


def test_a_student_with_nothing_to_learn_is_named():
    frozen = _net()
    for p in frozen.parameters():
        p.requires_grad_(False)
    x, y = _arrays()
    with pytest.raises(ConfigError, match="model 'student1' has no parameter that requires a gradient"):
        _fit(_splits(x, y), Cohort.from_modules([frozen, _net()]))


@pytest.mark.parametrize("edge, message", [
    (dict(temperature=-4.0), "temperature -4.0"), (dict(temperature=0.0), "temperature 0.0"),
    (dict(weight=-1.0), "weight -1.0"), (dict(weight=float("nan")), "weight nan"), (dict(weight="2"), "weight '2'"),
    (dict(kind="dkd", nckd_weight=-8.0), "nckd_weight -8.0"),
])
def test_an_edge_that_would_train_a_wrong_objective_is_refused(edge, message):
    with pytest.raises(ConfigError, match=f"edge teacher -> student1: {message}"):
        Edge("teacher", "student1", **edge)
    assert Edge("teacher", "student1", weight=0.0).weight == 0.0  # a term switched off is fine


def test_preset_edges_refuses_repeated_names_and_a_text_for_the_students():
    with pytest.raises(ConfigError, match=r"\['student1'\] are given twice"):
        preset_edges("ml", None, ["student1", "student1"])
    with pytest.raises(ConfigError, match="list of student names"):
        preset_edges("ml", None, "ab")
    assert len(preset_edges("ml", None, ["a", "b"])) == 2


def test_loss_functions_refuse_what_they_would_compute_wrong():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    for temperature in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            soft_kl(s, t, temperature)
    with pytest.raises(ValueError, match="learnable one"):
        soft_kl(s, t, torch.tensor(2.0, requires_grad=True))
    # the dense and detection distillation losses divide by T too: a bad one is refused, not computed
    layout = HeadLayout(num_classes=3, reg_max=4)
    boxes, maps = torch.randn(2, 7, layout.channels, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    for name, loss in (("channel_wise", lambda T: channel_wise(maps, maps.flip(0), T)),
                       ("classification_map_kd", lambda T: classification_map_kd(boxes, boxes.flip(0), layout, T)),
                       ("localization_kd", lambda T: localization_kd(boxes, boxes.flip(0), layout, T))):
        for temperature in (0.0, -1.0, float("nan")):
            with pytest.raises(ValueError, match=f"^{name}: temperature .* must be a finite number above 0"):
                loss(temperature)
    with pytest.raises(ValueError, match="non-empty batch"):
        soft_kl(s[:0], t[:0])
    maps = torch.randn(2, 3, 4, 4, generator=g)
    with pytest.raises(ValueError, match=r"valid must be a boolean mask of shape \(2, 4, 4\)"):
        soft_kl(maps, maps.flip(0), 1.0, torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="logits go to soft_kl"):
        kl_to_probs(s, t, 2.0)
    q = torch.softmax(t / 2, dim=1)  # a distribution is taken, and gives soft_kl's number
    assert kl_to_probs(s, q, 2.0).item() == pytest.approx(soft_kl(s, t, 2.0).item(), rel=1e-5)
    with pytest.raises(ValueError, match="labels are class indices"):
        decoupled_kd(s, q, torch.zeros(4), 2.0)
    with pytest.raises(ValueError, match="finite non-negative weights"):
        combine_soft_targets([s, t], 2.0, [float("nan"), 1.0])
    with pytest.raises(ValueError, match="sources of one shape"):
        combine_soft_targets([], 2.0)
    a, b = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    with pytest.raises(ValueError, match="one non-empty batch"):
        attention_transfer(a[:1], b)
    with pytest.raises(ValueError, match="one non-empty batch"):
        similarity_preserving(a[:1], b)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\] maps"):
        attention_transfer(a.flatten(1), b.flatten(1))


def test_labels_outside_the_classes_are_refused_in_every_split_and_by_evaluate():
    x, y = _arrays()
    bad = y[48:].copy()
    bad[5] = 5
    with pytest.raises(DataError, match="^the test labels run from 0 to 5, outside the 3 classes"):
        _fit(_splits(x, y, bad))  # in the first test batch: refused before training
    later = _splits(x, y)
    bad = y[48:].copy()
    bad[9] = 5
    later.test = _Pairs(x[48:], bad)
    with pytest.raises(DataError, match="scoring the test split .* labels run from 1 to 5, outside the 3 classes"):
        Trainer(Cohort.from_modules([_net(), _net()]), KnowledgeGraph([]), ClassificationTask(3), progress=False,
                device="cpu", train=TrainSpec(epochs=1, batch_size=12, eval_batch_size=4), seed=0).fit(later)
    cohort = Cohort.from_modules([_net(), _net()])
    batches = [(torch.as_tensor(x[:8]), torch.as_tensor(y[:8])), (torch.as_tensor(x[8:16]), torch.as_tensor(y[8:16]) + 5)]
    with pytest.raises(DataError, match="labels run from 5 to 7"):
        evaluate(cohort, ClassificationTask(3), batches)


class _Pairs(Dataset):
    """A user's dataset: (image, label) pairs, read one by one."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.as_tensor(self.x[i]), int(self.y[i])


def test_a_training_label_outside_the_classes_after_the_first_batch_is_named():
    x, y = _arrays()
    y_train = y[:36].copy()
    y_train[30] = 9
    data = _splits(x, y)
    data.train = _Pairs(x[:36], y_train)
    with pytest.raises(DataError, match="the training labels run from .* to 9"):
        _fit(data, batch_size=4)


def test_dataset_images_of_different_sizes_are_named_with_what_to_do():
    x, y = _arrays()
    data = _splits(x, y)
    images = [torch.as_tensor(image) for image in x[:36]]
    images[2] = torch.zeros(images[2].shape[0], 9, 8)  # one image a row taller, in the first batch
    data.train = _Pairs(images, y[:36])
    with pytest.raises(DataError, match=r"the dataset's images are not all of one shape \(one batch holds "
                                        r"\[1, 8, 8\] and \[1, 9, 8\]\), so they cannot be batched: resize them"):
        _fit(data, batch_size=4)
    from peerdistill.data.loaders import DatasetBatches

    for workers in (0, 1):  # a worker process's error comes back as the message alone, not its traceback
        batches = DatasetBatches(_Pairs(images, y[:36]), 4, torch.device("cpu"), shuffle=False, num_workers=workers)
        with pytest.raises(DataError) as refused:
            list(batches.iterate())
        assert str(refused.value).startswith("the dataset's images are not all of one shape (one batch holds [1, 8, 8] "
                                             "and [1, 9, 8])"), str(refused.value)[:300]
    for odd, fix in ((torch.zeros(3, 8, 8), "give each the same channels"), (torch.zeros(8, 8), "give each the same axes")):
        batches = DatasetBatches(_Pairs([odd, *images[1:4]], y[:4]), 4, torch.device("cpu"), shuffle=False)
        with pytest.raises(DataError, match=fix):
            list(batches.iterate())


def test_a_test_split_that_cannot_be_read_is_refused_before_the_first_epoch(monkeypatch):
    """The test split is read after the last epoch only: refused then, the training is lost."""
    from peerdistill.engine import trainer as trainer_module

    epochs = []
    real = trainer_module.Trainer._train_epoch
    monkeypatch.setattr(trainer_module.Trainer, "_train_epoch", lambda self, *a, **k: epochs.append(1) or real(self, *a, **k))
    x, y = _arrays()
    uint8 = _splits(x, y)
    uint8.test = _Pairs([(torch.as_tensor(image) * 40).clamp(0, 255).to(torch.uint8) for image in x[48:]], y[48:])
    mixed = _splits(x, y)
    images = [torch.as_tensor(image) for image in x[48:]]
    images[1] = torch.zeros(1, 9, 8)
    mixed.test = _Pairs(images, y[48:])
    for data, message in ((uint8, "the test images are uint8, not floating point"),
                          (mixed, r"the dataset's images are not all of one shape")):
        with pytest.raises(DataError, match=message):
            _fit(data, batch_size=4)
        assert epochs == [], "refused only after training"


def test_class_indices_given_as_one_item_arrays_are_read_as_the_indices():
    # MedMNIST's own datasets return np.array([y]): refused as "labels of shape (B, 1)", or, mixed
    # with plain indices, told to resize masks
    import numpy as np

    from peerdistill.data.loaders import DatasetBatches

    x, y = _arrays()
    plain = [(torch.as_tensor(image), int(label)) for image, label in zip(x, y)]
    data = _splits(x, y)
    data.train, data.val, data.test = plain[:36], plain[36:48], plain[48:]
    indices_scored = json.dumps(_fit(data).test_at_best, sort_keys=True)
    for as_given in (lambda i, label: np.array([label]), lambda i, label: torch.tensor([label]),
                     lambda i, label: torch.tensor([label]) if i % 2 else torch.tensor(label)):
        pairs = [(torch.as_tensor(image), as_given(i, int(label))) for i, (image, label) in enumerate(zip(x, y))]
        batches = DatasetBatches(pairs, 4, torch.device("cpu"), shuffle=False)  # (a list serves as a Dataset)
        assert torch.equal(torch.cat([labels for _, labels in batches.iterate()]), torch.as_tensor(y))
        data = _splits(x, y)
        data.train, data.val, data.test = pairs[:36], pairs[36:48], pairs[48:]
        assert json.dumps(_fit(data).test_at_best, sort_keys=True) == indices_scored
    in_memory = TensorData(torch.as_tensor(x), torch.as_tensor(y)[:, None])  # [N, 1], as from_arrays reads them
    assert torch.equal(in_memory.y, torch.as_tensor(y))
    # a one-hot label beside an index: named as labels, not as masks to resize
    pairs = [(torch.as_tensor(image), torch.eye(3)[int(label)].long() if i == 1 else int(label))
             for i, (image, label) in enumerate(zip(x[:4], y[:4]))]
    with pytest.raises(DataError) as refused:
        list(DatasetBatches(pairs, 4, torch.device("cpu"), shuffle=False).iterate())
    message = str(refused.value)
    assert message.startswith("the dataset's labels are not all of one shape (one batch holds [] and [3])"), message
    assert "an int or a 0-d tensor each" in message and "mask" not in message, message


def test_samples_that_cannot_be_batched_are_named_with_the_fix():
    import numpy as np

    from peerdistill.data.loaders import DatasetBatches

    x, _ = _arrays()
    for text in ("cat", np.array(["cat"])):  # a class name for its index: named, not torch's "too many dimensions"
        with pytest.raises(DataError, match=r"labels are text \(such as 'cat'\); peerdistill reads class indices"):
            list(DatasetBatches([(torch.as_tensor(x[0]), text)] * 2, 2, torch.device("cpu"), shuffle=False).iterate())
    from PIL import Image  # a torchvision-style dataset without its ToTensor: named with the conversion

    for workers in (0, 1):
        with pytest.raises(DataError, match=r"^the dataset's images are PIL.Image.Image objects, which cannot be "
                                            r"batched: convert each to a float tensor \[C, H, W\] on \[0, 1\]"):
            list(DatasetBatches([(Image.new("L", (8, 8)), 0)] * 2, 2, torch.device("cpu"), shuffle=False,
                                num_workers=workers).iterate())


def test_float64_images_and_narrow_integer_labels_train_as_float32_and_int64():
    x, y = _arrays()
    as_given = _fit(_splits(x.astype(np.float64), y.astype(np.int32))).test_at_best
    converted = _fit(_splits(x, y.astype(np.int64))).test_at_best
    assert json.dumps(as_given, sort_keys=True) == json.dumps(converted, sort_keys=True)  # (NaN equal to NaN)


def test_an_empty_split_and_too_few_class_names_are_named():
    x, y = _arrays()
    data = _splits(x, y)
    data.val = TensorData(torch.as_tensor(x[:0]), torch.as_tensor(y[:0]))
    with pytest.raises(DataError, match="the val split is empty"):
        _fit(data)
    with pytest.raises(DataError, match="class_names has 2 names for num_classes=3"):
        DataSplits(data.train, data.train, data.train, num_classes=3, class_names=["a", "b"], input_shape=(1, 8, 8))
    assert math.isfinite(_fit(_splits(x, y)).test_at_best["ensemble"]["accuracy"])


def test_specs_built_in_python_raise_config_errors_with_hints():
    from peerdistill import OptimSpec, RunConfig

    with pytest.raises(ConfigError, match=r"unknown key 'epoch' \(did you mean 'epochs'\?\)"):
        TrainSpec(epoch=3)
    with pytest.raises(ConfigError, match="'lr': Input should be greater than 0"):
        OptimSpec(lr=-1)
    with pytest.raises(ConfigError, match="invalid RunConfig arguments"):
        RunConfig(trian={})
    assert TrainSpec(epochs=3).epochs == 3
    spec = TrainSpec(epochs=3)
    with pytest.raises(ConfigError, match="invalid TrainSpec.epochs"):
        spec.epochs = 0  # assigned as it is constructed
    assert spec.epochs == 3


def test_run_reading_functions_name_wrong_arguments(tmp_path):
    from PIL import Image

    from peerdistill import evaluate_run, predict_files
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    train_from_config(validate({"name": "r", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml"},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": 1, "batch_size": 256}}), progress=False)
    run = tmp_path / "r"
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    with pytest.raises(ConfigError, match="no inputs given"):
        predict_files(run, [], tmp_path / "p.csv")
    with pytest.raises(ConfigError, match="batch size 0"):
        predict_files(run, [image], tmp_path / "p.csv", batch_size=0)
    with pytest.raises(ConfigError, match="batch size 0"):
        evaluate_run(run, batch_size=0)
    with pytest.raises(DataError, match="got a tuple: DataSplits.from_arrays"):
        evaluate_run(run, data=(1, 2))
    with pytest.raises(ConfigError, match=r"roles=\('teacher',\): a run is read with its students"):
        evaluate_run(run, roles=("teacher",))
    with pytest.raises(DataError, match="holds no batches to score"):
        evaluate(Cohort.from_modules([_net(), _net()]), ClassificationTask(3), [])
    predict_files(run, str(image), tmp_path / "p.csv")  # one file alone, not a list of its characters
    assert (tmp_path / "p.csv").read_text().count("\n") == 2


def test_a_model_of_another_precision_seeds_and_load_config_arguments_are_named():
    from peerdistill import load_config, seed_everything

    x, y = _arrays()
    with pytest.raises(ConfigError, match="model 'student1' has float64 parameters but the data is float32: call "
                                          r"\.float\(\) on it"):
        _fit(_splits(x, y), Cohort.from_modules([_net().double(), _net()]))
    for seed in (-1, 2**40, 1.5, "0", True):
        with pytest.raises(ConfigError, match=r"seed .*: give a whole number in 0\.\.4294967295"):
            seed_everything(seed)
    seed_everything(np.int64(3))  # a NumPy integer is a whole number
    with pytest.raises(ConfigError, match="seed -1"):
        Trainer(Cohort.from_modules([_net(), _net()]), KnowledgeGraph([]), ClassificationTask(3), seed=-1)
    assert load_config(None, "train.epochs=3").train.epochs == 3  # one override alone
    with pytest.raises(ConfigError, match="takes the path of a YAML file, got a dict"):
        load_config({"train": {"epochs": 3}})


def test_from_arrays_is_told_where_the_channels_are():
    g = np.random.default_rng(0)
    bands = g.random((30, 16, 16, 5)).astype(np.float32)  # five bands, channels last
    y = np.arange(30) % 3
    guessed = DataSplits.from_arrays(bands, y, bands, y, bands, y)
    assert guessed.input_shape == (16, 16, 5)  # the guess: 16 channels of 16 x 5 (the rule the docstring states)
    told = DataSplits.from_arrays(bands, y, bands, y, bands, y, channels_last=True)
    assert told.input_shape == (5, 16, 16)
    np.testing.assert_allclose(told.train.x[3, 2].numpy() * told.stats["std"][2] + told.stats["mean"][2],
                               bands[3, :, :, 2], rtol=1e-5, atol=1e-6)
    rgb = g.random((30, 16, 16, 3)).astype(np.float32)
    assert DataSplits.from_arrays(rgb, y, rgb, y, rgb, y).input_shape == (3, 16, 16)
    assert DataSplits.from_arrays(rgb, y, rgb, y, rgb, y, channels_last=False).input_shape == (16, 16, 3)


def test_trainer_arguments_of_the_wrong_kind_are_named_and_sections_may_be_dicts():
    cohort = Cohort.from_modules([_net(), _net()])
    task = ClassificationTask(3)
    for kwargs, message in ((dict(graph=KnowledgeGraph([]), task=None), "task= takes a task"),
                            (dict(graph="kd", task=task), "graph= takes a KnowledgeGraph"),
                            (dict(graph=[], task=task, train=5), "train= takes a TrainSpec"),
                            (dict(graph=[], task=task, rampup_epochs=-3), "rampup_epochs -3")):
        with pytest.raises(ConfigError, match=message):
            Trainer(cohort, **kwargs)
    with pytest.raises(ConfigError, match="Trainer takes a Cohort first"):
        Trainer([_net()], KnowledgeGraph([]), task)
    trainer = Trainer(cohort, [], task, train={"epochs": 1, "batch_size": 12}, optim={"lr": 0.01}, progress=False,
                      device="cpu")
    assert trainer.train_spec.epochs == 1 and trainer.optim_spec.lr == 0.01
    with pytest.raises(DataError, match="fit takes DataSplits"):
        trainer.fit(_arrays())


def test_evaluate_names_single_samples_and_outputs_of_other_classes_and_run_dir_a_file(tmp_path):
    from peerdistill.errors import RunDirError

    x, y = _arrays()
    data = _splits(x, y)
    cohort = Cohort.from_modules([_net(), _net()])
    with pytest.raises(DataError, match="got single samples: give a DataLoader"):
        evaluate(cohort, ClassificationTask(3), data.test)
    with pytest.raises(DataError, match="outputs 3 classes"):
        evaluate(cohort, ClassificationTask(4), [(torch.as_tensor(x[:8]), torch.as_tensor(y[:8]))])
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(RunDirError, match="is a file: give a folder"):
        Trainer(cohort, [], ClassificationTask(3), run_dir=a_file)
    assert a_file.read_text() == "mine"


def test_a_saved_run_with_names_of_older_rules_is_still_read(tmp_path):
    """Names the rules now refuse ('best') were accepted before: such a run is read, not refused."""
    from peerdistill import load_cohort
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    train_from_config(validate({"name": "r", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml"},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": 1, "batch_size": 256}}), progress=False)
    run = tmp_path / "r"
    for name in ("run.json", "metrics.json", "config.yaml"):  # as an older version wrote them
        text = (run / name).read_text().replace("student2", "best")
        (run / name).write_text(text)
    (run / "models" / "student2.safetensors").rename(run / "models" / "best.safetensors")
    cohort, _ = load_cohort(run)
    assert [m.name for m in cohort.students] == ["student1", "best"]


class _Standardised(Dataset):
    """A user's dataset that prepares its images itself: [0, 1] pixels standardised by fixed
    statistics, as a torchvision Normalize would."""

    def __init__(self, images, labels, mean=0.5, std=0.05):
        self.images, self.labels, self.mean, self.std = images, labels, mean, std

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return (torch.as_tensor(self.images[i]) - self.mean) / self.std, int(self.labels[i])


def test_predict_on_a_run_trained_from_a_dataset_that_normalised_its_images_says_so(tmp_path):
    import warnings

    from PIL import Image

    from peerdistill import predict_files
    from peerdistill.errors import PeerdistillWarning

    rng = np.random.default_rng(0)
    images = rng.uniform(0.3, 0.7, (60, 1, 8, 8)).astype("float32")  # pixels on [0, 1], as image files give
    labels = np.arange(60) % 3
    for i in range(4):
        Image.fromarray((images[48 + i, 0] * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    nets = {}
    for name, prepared in (("raw", _Pairs), ("normalised", _Standardised)):
        parts = [prepared(images[a:b], labels[a:b]) for a, b in ((0, 36), (36, 48), (48, 60))]
        data = DataSplits(*parts, num_classes=3, class_names=["a", "b", "c"], input_shape=(1, 8, 8))
        nets[name] = {"student1": _net(), "student2": _net()}
        _fit(data, Cohort.from_modules(list(nets[name].values())), run_dir=tmp_path / name)
        seen = json.loads((tmp_path / name / "run.json").read_text())["input_stats"]
        assert seen["mean"][0] == pytest.approx(float(np.mean(images[36:48])) if name == "raw"
                                                else float((np.mean(images[36:48]) - 0.5) / 0.05), rel=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)  # inputs prepared as in training: nothing to say
        predict_files(tmp_path / "raw", [str(tmp_path / f"{i}.png") for i in range(4)], tmp_path / "raw.csv",
                      modules=nets["raw"])
    with pytest.warns(PeerdistillWarning, match=r"the inputs have mean / std 0\.\d+ / 0\.\d+ per channel as read .*"
                                                r"which saw -?\d.* in training .*give predict an .npz of images "
                                                r"prepared that way"):
        predict_files(tmp_path / "normalised", [str(tmp_path / f"{i}.png") for i in range(4)], tmp_path / "n.csv",
                      modules=nets["normalised"])
    # eval, too, gives other data to such a run's models as read
    from peerdistill import evaluate_run
    from peerdistill.config import DataSpec

    np.savez(tmp_path / "d.npz", **{f"{s}_{k}": (images if k == "images" else labels)[a:b]
                                    for s, (a, b) in (("train", (0, 36)), ("val", (36, 48)), ("test", (48, 60)))
                                    for k in ("images", "labels")})
    other_data = DataSpec(kind="npz", root=str(tmp_path / "d.npz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerdistillWarning)
        evaluate_run(tmp_path / "raw", modules=nets["raw"], data_spec=other_data)
    with pytest.warns(PeerdistillWarning, match=r"the scored images have mean / std 0\.\d+ / 0\.1\d* per channel as "
                                                r"read and given to the models, which saw -?\d.* in training"):
        evaluate_run(tmp_path / "normalised", modules=nets["normalised"], data_spec=other_data)


def test_datasplits_reads_input_shape_from_the_first_sample_and_names_classes_by_number():
    x, y = _arrays()
    pairs = [{"image": torch.as_tensor(image), "label": int(label)} for image, label in zip(x, y)]
    data = DataSplits(pairs[:36], pairs[36:48], pairs[48:], num_classes=3)
    assert data.input_shape == (1, 8, 8) and data.class_names == ["0", "1", "2"]
    assert _fit(data).test_at_best["ensemble"]["accuracy"] >= 0
    in_memory = TensorData(torch.as_tensor(x), torch.as_tensor(y))
    assert DataSplits(in_memory, in_memory, in_memory, num_classes=3).input_shape == (1, 8, 8)
    with pytest.raises(DataError, match="the train split is empty"):
        DataSplits([], pairs, pairs, num_classes=3)
    # the usual slips, named by the shape read (they reached the models as H channels of a row)
    from PIL import Image

    for image, said in ((torch.zeros(8, 8), r"shape \(8, 8\), without a channel axis: return image\[None\]"),
                        (torch.zeros(8, 8, 1), r"shape \(8, 8, 1\), channels-last \[H, W, C\]: return "
                                               r"image.permute\(2, 0, 1\)"),
                        (Image.new("L", (8, 8)), r"images are PIL.Image.Image objects: convert each to a float tensor")):
        with pytest.raises(DataError, match=said):
            DataSplits([(image, 0)], pairs, pairs, num_classes=3)
    assert DataSplits([(torch.zeros(12), 0)], pairs, pairs, num_classes=3).input_shape == (12,)  # feature vectors
    assert DataSplits([(torch.zeros(8, 8), 0)], pairs, pairs, num_classes=3, input_shape=(8, 8)).input_shape == (8, 8)
    with pytest.raises(DataError, match=r"could not read input_shape from the first training sample .* give "
                                        r"input_shape=\(C, H, W\)"):
        DataSplits([("not", "an image")], pairs, pairs, num_classes=3)
    # dict samples of keys of their own: the keys named first (review 46c: input_shape= was advised, which got
    # past this to the same failure at the first batch)
    with pytest.raises(DataError, match=r"a sample of the dataset is a dict with keys \['img', 'target'\]; "
                                        r"peerdistill reads 'image' and 'label' \(or 'mask'\)"):
        DataSplits([{"img": torch.zeros(1, 8, 8), "target": 0}], pairs, pairs, num_classes=3)


def test_a_run_of_class_names_given_as_numbers_or_of_volumes_is_read_back(tmp_path):
    # run.json's check refused runs the trainer had just written: class names 0, 1, 2 (as given in
    # Python) and inputs of four dimensions (a Dataset's volumes)
    from peerdistill.runs import load_cohort

    x, y = _arrays()
    data = DataSplits.from_arrays(x[:24], y[:24], x[24:36], y[24:36], x[36:], y[36:], class_names=[0, 1, 2])
    _fit(data, run_dir=tmp_path / "numbers")
    cohort, meta = load_cohort(tmp_path / "numbers", modules={"student1": _net(), "student2": _net()})
    assert meta["class_names"] == [0, 1, 2] and len(cohort.students) == 2

    from peerdistill.engine.run_meta import run_record_problem

    volumes = {**meta, "input_shape": [1, 4, 8, 8]}
    assert run_record_problem(volumes) is None


def test_the_training_dataset_given_as_the_test_split_is_warned_of():
    from peerdistill.errors import PeerdistillWarning

    x, y = _arrays()
    data = _splits(x, y)
    data.test = data.train  # its figures would be training figures, in silence
    with pytest.warns(PeerdistillWarning, match=r"^the test split is the training split itself \(the same dataset given "
                                                r"twice\): its figures are not held out") as caught:
        _fit(data)
    # it points at the user's call (the first frame outside peerdistill), not at a line inside it
    said = [w for w in caught if str(w.message).startswith("the test split is the training split")]
    assert [(w.filename, w.lineno) for w in said] == [(__file__, _fit.__code__.co_firstlineno + 4)]  # .fit(data)


def test_a_scored_split_lacking_classes_is_warned_of():
    # a model calling everything class 0 scored accuracy, balanced accuracy and macro F1 1.0 on a test
    # split of class 0 alone, in silence
    import warnings

    from peerdistill.errors import PeerdistillWarning

    x, y = _arrays()
    with pytest.warns(PeerdistillWarning, match=r"^the test split holds no sample of 2 of the 3 classes \('b', 'c'\): "
                                                r"its AUC is n/a"):
        _fit(_splits(x, y, test_y=np.zeros(12, dtype=np.int64)))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "the (val|test) split holds no sample", PeerdistillWarning)
        _fit(_splits(x, y))


@pytest.mark.parametrize("call", [
    lambda: Cohort.from_modules([_net()], teacher=_net(), frozen_teacher="false"),
    lambda: Cohort([Member("student1", _net(), "student", frozen="no")]),
    lambda: Trainer(Cohort.from_modules([_net()]), [], ClassificationTask(3), overwrite="no"),
    lambda: Trainer(Cohort.from_modules([_net()]), [], ClassificationTask(3), progress="off"),
    lambda: Trainer(Cohort.from_modules([_net()]), [], ClassificationTask(3), deterministic="yes"),
    lambda: DataSplits.from_arrays(*_arrays()[0:2], *_arrays()[0:2], *_arrays()[0:2], normalize="no"),
    lambda: SegmentationTask(2, hd95="false"),
])
def test_a_flag_given_as_a_word_is_refused_not_read_by_its_truth(call):
    # "false", "no" and "off" are truthy: a teacher was frozen, a finished run trained over, in silence
    with pytest.raises(ConfigError, match=r"must be True or False, got '(false|no|off|yes)'"):
        call()


def test_fit_resume_and_the_readers_flags_are_refused_as_words(tmp_path):
    from peerdistill import evaluate_run, export_run, load_cohort, predict_files, seed_everything

    x, y = _arrays()
    trainer = Trainer(Cohort.from_modules([_net()]), [], ClassificationTask(3), progress=False)
    with pytest.raises(ConfigError, match="fit: resume must be True or False, got 'yes'"):
        trainer.fit(_splits(x, y), resume="yes")
    with pytest.raises(ConfigError, match="seed_everything: deterministic must be True or False"):
        seed_everything(0, deterministic="true")
    for call in (lambda: evaluate_run(tmp_path, temperature_scaling="no"),
                 lambda: export_run(tmp_path, temperature_scaling="no"),
                 lambda: load_cohort(tmp_path, with_heads="no"),
                 lambda: predict_files(tmp_path, ["x.png"], tmp_path / "p.csv", visible_masks="no")):
        with pytest.raises(ConfigError, match="must be True or False, got 'no'"):
            call()


def test_arguments_of_the_wrong_kind_are_named_with_the_fix(tmp_path):
    from torch.utils.data import DataLoader

    from peerdistill import evaluate_run, export_run

    x, y = _arrays()
    good = _splits(x, y)
    with pytest.raises(DataError, match=r"the train split is a DataLoader: give DataSplits the Dataset it loads "
                                        r"\(train_loader.dataset\)"):
        DataSplits(DataLoader(good.train), good.val, good.test, num_classes=3)
    with pytest.raises(DataError, match="num_classes must be a whole number, 1 or more, got '3'"):
        DataSplits(good.train, good.val, good.test, num_classes="3")
    with pytest.raises(DataError, match="class_names takes a list of names, one per class in label order, got 'abc'"):
        DataSplits.from_arrays(x[:36], y[:36], x[36:48], y[36:48], x[48:], y[48:], class_names="abc")
    with pytest.raises(DataError, match=r"stats= takes \{'mean': \[...\], 'std': \[...\]\}"):
        DataSplits.from_arrays(x[:36], y[:36], x[36:48], y[36:48], x[48:], y[48:], stats={"mean": [0.5]})
    with pytest.raises(ConfigError, match="KnowledgeGraph takes a list of Edge, got 'kd': a preset's graph is "
                                          r"KnowledgeGraph.from_preset\(name, cohort\)"):
        KnowledgeGraph("kd")
    with pytest.raises(ConfigError, match=r"KnowledgeGraph takes a list of Edge, and .* is a dict: .*Edge\(\*\*it\)"):
        KnowledgeGraph([{"source": "teacher", "target": "student1"}])
    with pytest.raises(ConfigError, match=r"unknown kind 'kll' \(did you mean 'kl'\?\)"):
        Edge("teacher", "student1", "kll")
    with pytest.raises(ConfigError, match=r"preset 'custom' is a config's own list of edges .*KnowledgeGraph\(\[Edge"):
        KnowledgeGraph.from_preset("custom", Cohort.from_modules([_net()], teacher=_net()))
    with pytest.raises(ConfigError, match="ClassificationTask: num_classes must be a whole number, 1 or more, got '2'"):
        ClassificationTask("2")
    # labels of one class: counted as one class, which a softmax learns nothing of (review 52b: loss 0, accuracy 1)
    one_class = DataSplits.from_arrays(x[:36], 0 * y[:36], x[36:48], 0 * y[36:48], x[48:], 0 * y[48:])
    with pytest.raises(DataError, match=r"classification needs at least two classes: a softmax over one class is 1 "
                                        r"whatever the model sees, so nothing would be learnt \(labels of one class"):
        ClassificationTask(one_class.num_classes)
    # supervised weights: a name of no output, a negative weight (its model would learn to raise its loss)
    kd = [Edge("teacher", "student1", "kl", 1.0, 4.0)]
    with pytest.raises(ConfigError, match=r"supervised_weights: 'student1' must be a number, 0 or more, got -1.0"):
        KnowledgeGraph(kd, supervised_weights={"student1": -1.0})
    with pytest.raises(ConfigError, match=r"supervised_weights: 'student1' must be a number, 0 or more, got nan"):
        KnowledgeGraph(kd, supervised_weights={"student1": float("nan")})
    with pytest.raises(ConfigError, match=r"supervised_weights= takes a dict of output names to weights, got \[1.0\]"):
        KnowledgeGraph(kd, supervised_weights=[1.0])
    misspelt = KnowledgeGraph(kd, supervised_weights={"studentX": 0.5})
    with pytest.raises(ConfigError, match=r"supervised_weights names \['studentX'\], not in the cohort \(outputs: "
                                          r"\['student1', 'teacher'\]\)"):
        misspelt.bind(Cohort.from_modules([_net()], teacher=_net()))
    for size in (0, 2.5, True):  # (nodes of 0 were taken as 1; from_preset's section refuses them too)
        with pytest.raises(ConfigError, match=f"pair_node_size must be a whole number, 1 or more, got {size!r}"):
            KnowledgeGraph(kd, pair_node_size=size)
    cohort = Cohort.from_modules([_net()])
    with pytest.raises(ConfigError, match=r"callbacks= takes a list of functions .*: put it in a list, \[f\]"):
        Trainer(cohort, [], ClassificationTask(3), callbacks=lambda epoch, row: None)
    with pytest.raises(ConfigError, match="callbacks= holds 1, which cannot be called"):
        Trainer(cohort, [], ClassificationTask(3), callbacks=[1])  # it failed after a whole epoch
    with pytest.raises(ConfigError, match=r"callbacks= holds '<lambda>', which cannot be called as f\(epoch, metrics\)"):
        Trainer(cohort, [], ClassificationTask(3), callbacks=[lambda metrics: None])  # (review 44b)
    Trainer(cohort, [], ClassificationTask(3), callbacks=[lambda *args: None, print])  # (taking more, or any)
    with pytest.raises(ConfigError, match="run_dir= takes a path"):
        Trainer(cohort, [], ClassificationTask(3), run_dir=5)
    with pytest.raises(ConfigError, match="Trainer: discriminator_lr must be a number above 0, got -1"):
        Trainer(cohort, [], ClassificationTask(3), discriminator_lr=-1)
    # read by a holistic edge's discriminator alone: without one they would change nothing, in silence
    with pytest.raises(ConfigError, match=r"Trainer: discriminator_lr=0.001, gp_weight=5.0 set the discriminator of a "
                                          r"holistic \(adversarial\) edge, and the graph has none"):
        Trainer(cohort, [], ClassificationTask(3), discriminator_lr=1e-3, gp_weight=5.0)
    with pytest.raises(ConfigError, match="from_modules: frozen_teacher=True but no teacher is given"):
        Cohort.from_modules([_net()], frozen_teacher=True)
    # both: the teacher= one was kept beside them in silence, and teacher_weights weighed the others alone (review 50b)
    with pytest.raises(ConfigError, match="give one teacher as teacher=, or several as teachers=.*not both"):
        Cohort.from_modules([_net()], teacher=_net(), teachers=[_net(), _net()], teacher_weights=[1, 2])
    with pytest.raises(ConfigError, match=r"modules= takes the run's Python-built models by name, .*; got a Sequential"):
        evaluate_run(tmp_path, modules=_net())
    with pytest.raises(ConfigError, match=r"modules\['student1'\] is a str, not a torch.nn.Module"):
        evaluate_run(tmp_path, modules={"student1": "SmallCNN"})
    with pytest.raises(ConfigError, match=r"fmt= must be onnx or safetensors, not 'onxx'"):
        export_run(tmp_path, fmt="onxx")  # the Python name beside the command line's
    with pytest.raises(ConfigError, match=r"calibration=5 sets the int8 quantization, and nothing is quantized"):
        export_run(tmp_path, calibration=5)
    with pytest.raises(ConfigError, match="export_run: tolerance must be a number, 0 or more, got -1"):
        export_run(tmp_path, tolerance=-1)


@pytest.mark.parametrize("task_classes, model_classes", [(3, 3), (3, 2)])
def test_a_task_of_another_class_count_than_the_data_is_refused_before_training(task_classes, model_classes):
    # 2-class data: a task of 3 trained a whole epoch, then failed deep in the metrics; or blamed the data
    x, y = _arrays(k=2)
    t = lambda a: torch.as_tensor(a)  # noqa: E731
    data = DataSplits(TensorData(t(x[:36]), t(y[:36])), TensorData(t(x[36:48]), t(y[36:48])),
                      TensorData(t(x[48:]), t(y[48:])), num_classes=2, input_shape=(1, 8, 8))
    trainer = Trainer(Cohort.from_modules([_net(model_classes)]), [], ClassificationTask(task_classes),
                      progress=False, train=TrainSpec(epochs=1, batch_size=12))
    with pytest.raises(DataError, match=r"the task has 3 classes but the data 2 \(0, 1\): build the task for the "
                                        r"data, ClassificationTask\(data.num_classes, class_names=data.class_names\)"):
        trainer.fit(data)


def test_numpy_and_tensor_values_of_the_right_kind_are_taken(tmp_path):
    # numpy bools and statistics, 0/1 flags, a count computed as labels.max() + 1: taken as meant,
    # and kept as Python values (a numpy bool is no JSON: run.json could not be written)
    x, y = _arrays()
    cohort = Cohort.from_modules([_net()], teacher=_net(), frozen_teacher=np.bool_(False))
    assert cohort["teacher"].frozen is False
    trainer = Trainer(cohort, [], ClassificationTask(torch.tensor(y).max() + 1), overwrite=0, progress=np.bool_(False),
                      deterministic=np.bool_(True), train=TrainSpec(epochs=1, batch_size=12),
                      run_dir=tmp_path / "r", seed=0)
    assert (trainer.overwrite, trainer.show_progress, trainer.deterministic) == (False, False, True)
    assert trainer.task.num_classes == 3 and type(trainer.task.num_classes) is int
    with pytest.raises(ConfigError, match="num_classes must be a whole number, 1 or more, got tensor\\(True\\)"):
        ClassificationTask(torch.tensor(True))  # a bool is no count (it was taken as 1 class)
    assert Trainer(cohort, [], ClassificationTask(3), overwrite=np.int64(1), progress=torch.tensor(False)).overwrite
    mean, std = x[:36].mean(), x[:36].std()
    data = DataSplits.from_arrays(x[:36], y[:36], x[36:48], y[36:48], x[48:], y[48:],
                                  stats={"mean": np.array([mean]), "std": [np.float32(std)]}, normalize=1)
    assert data.stats == {"mean": [pytest.approx(float(mean))], "std": [pytest.approx(float(std))]}
    trainer.fit(data)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "complete"


def test_compare_refuses_a_flag_given_as_a_word_before_anything_trains(tmp_path):
    # overwrite="no" retrained every finished run in silence
    from peerdistill.compare import compare

    tree = {"name": "c", "out_dir": str(tmp_path), "train": {"epochs": 1}}
    for flag in ("overwrite", "progress", "dry_run", "temperature_scaling", "by_name"):
        with pytest.raises(ConfigError, match=f"compare: {flag} must be True or False, got 'no'"):
            compare(tree, ["kd"], 1, **{flag: "no"})
    assert not any(tmp_path.iterdir())


def test_messages_name_an_option_as_its_caller_gave_it():
    """Review 44b: the Python API's refusals named command-line flags (--tta, --bootstrap) to a
    caller who had passed keyword arguments; a command running names its flags."""
    from peerdistill.bootstrap import check_resamples
    from peerdistill.option_names import option, options_as_flags

    assert (option("--tta", "'x'"), option("--format"), option("--overwrite"), option("--min-agreement")) == (
        "tta='x'", "fmt=", "overwrite=True", "min_agreement=")
    with pytest.raises(ConfigError, match=r"^bootstrap=10: a 95% interval needs at least 40 resamples"):
        check_resamples(10)
    with options_as_flags():
        assert (option("--tta", "'x'"), option("--format"), option("--overwrite")) == ("--tta 'x'", "--format",
                                                                                      "--overwrite")
        with pytest.raises(ConfigError, match=r"^--bootstrap 10: a 95% interval needs at least 40 resamples"):
            check_resamples(10)
    assert option("--tta") == "tta="  # (set back as the command ends)
