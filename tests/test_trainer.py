"""The training loop's correctness rules, on tiny in-memory data."""

import copy
import dataclasses
import math
import os
import re
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from peerdistill import Cohort, DataSplits, KnowledgeGraph, OptimSpec, Trainer, TrainSpec, preset_edges
from peerdistill.engine import save_weights, seed_everything
from peerdistill.errors import DataError, PeerdistillWarning
from peerdistill.data.splits import TensorData
from peerdistill.models import SmallCNN
from peerdistill.tasks import ClassificationTask

FAST = TrainSpec(epochs=2, batch_size=32, monitor="ensemble/accuracy")


def make_cohort(frozen_teacher=False, students=2, num_classes=3, teacher_path=None):
    seed_everything(0)
    teacher = SmallCNN(1, num_classes, width=8, depth=2)
    if teacher_path is not None:
        from peerdistill.engine import load_weights

        load_weights(teacher, teacher_path)
    return Cohort.from_modules([SmallCNN(1, num_classes, width=4, depth=1) for _ in range(students)],
                               teacher=teacher, frozen_teacher=frozen_teacher)


def kdml(cohort):
    return KnowledgeGraph(preset_edges("kd+ml", "teacher", [m.name for m in cohort.students]))


def trainer(cohort, **kw):
    kw.setdefault("train", FAST)
    return Trainer(cohort, kdml(cohort), ClassificationTask(3), device="cpu", progress=False, **kw)


def test_each_model_is_forwarded_exactly_once_per_step(tiny_data):
    cohort = make_cohort()
    t = trainer(cohort)
    t._setup(tiny_data)
    calls = {m.name: 0 for m in cohort.members}
    for m in cohort.members:
        m.module.register_forward_hook(lambda mod, i, o, name=m.name: calls.__setitem__(name, calls[name] + 1))
    x, y = next(iter(t.train_batches))
    t.step(x, y)
    assert calls == {"teacher": 1, "student1": 1, "student2": 1}


def test_peer_and_frozen_teacher_targets_get_no_gradient(tiny_data, tmp_path):
    seed_everything(0)
    save_weights(SmallCNN(1, 3, width=8, depth=2), tmp_path / "t.safetensors")
    cohort = make_cohort(frozen_teacher=True, teacher_path=tmp_path / "t.safetensors")
    outputs = cohort.forward(tiny_data.train.x[:8])
    assert not outputs.logits["teacher"].requires_grad
    graph = kdml(cohort)
    # Only the loss terms whose *target* is student1: no gradient may reach student2 or the teacher.
    terms = {k: v for k, v in graph.losses(outputs).items() if k.startswith("student1/")}
    assert set(terms) == {"student1/kl<-teacher", "student1/kl<-student2"}
    sum(terms.values()).backward()
    assert all(p.grad is None for p in cohort["student2"].module.parameters())
    assert all(p.grad is None for p in cohort["teacher"].module.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in cohort["student1"].module.parameters())


def test_frozen_teacher_is_unchanged_and_stays_in_eval_mode(tiny_data, tmp_path):
    seed_everything(0)
    save_weights(SmallCNN(1, 3, width=8, depth=2), tmp_path / "t.safetensors")
    cohort = make_cohort(frozen_teacher=True, teacher_path=tmp_path / "t.safetensors")
    before = copy.deepcopy(cohort["teacher"].module.state_dict())  # includes BatchNorm running stats
    modes = []
    cohort["teacher"].module.register_forward_hook(lambda m, i, o: modes.append(m.training))
    t = trainer(cohort)
    t.fit(tiny_data)
    after = cohort["teacher"].module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert modes and not any(modes)
    assert "teacher" not in t.optimizers
    assert all(not p.requires_grad for p in cohort["teacher"].module.parameters())


def test_online_teacher_learns_and_every_model_has_its_own_optimizer(tiny_data):
    cohort = make_cohort()
    before = copy.deepcopy(cohort["teacher"].module.state_dict())
    t = trainer(cohort, optim=OptimSpec(name="sgd", lr=0.05))
    t.fit(tiny_data)
    assert not torch.equal(before["classifier.weight"], cohort["teacher"].module.state_dict()["classifier.weight"])
    assert set(t.optimizers) == {"teacher", "student1", "student2"}
    param_sets = [{id(p) for g in o.param_groups for p in g["params"]} for o in t.optimizers.values()]
    assert all(not (a & b) for i, a in enumerate(param_sets) for b in param_sets[i + 1:])
    assert len({id(s) for s in t.schedulers.values()}) == 3


def test_fit_learns_and_records_every_loss_term(tiny_data):
    cohort = make_cohort()
    result = trainer(cohort, train=TrainSpec(epochs=5, batch_size=32), optim=OptimSpec(lr=0.01)).fit(tiny_data)
    assert result.test_at_best["ensemble"]["accuracy"] > 0.8  # 3 balanced classes: chance is 1/3
    row = result.history[-1]
    for key in ["train/loss/teacher/ce", "train/loss/student1/ce", "train/loss/student1/kl<-teacher",
                "train/loss/student1/kl<-student2", "train/loss/student2/kl<-student1", "val/ensemble/auc"]:
        assert key in row
    assert 0 <= result.best_epoch < 5


def test_rampup_scales_distillation_terms(tiny_data):
    cohort = make_cohort()
    t = trainer(cohort, rampup_epochs=4)
    t._setup(tiny_data)
    x, y = next(iter(t.train_batches))
    assert t._ramp(0.0) == pytest.approx(math.exp(-5.0))
    assert t._ramp(2.0) == pytest.approx(math.exp(-5.0 * (1 - 2 / 4) ** 2))  # halfway through 4 ramp epochs
    assert t._ramp(4.0) == t._ramp(9.0) == 1.0
    cohort.eval()  # BatchNorm in eval mode: both forwards give the same outputs
    full = t.graph.losses(cohort.forward(x), scale=1.0)
    small = t.graph.losses(cohort.forward(x), scale=t._ramp(2.0))
    for name in full:
        assert small[name].item() == pytest.approx(full[name].item() * t._ramp(2.0), rel=1e-4)


def test_class_count_mismatch_is_a_clear_error(tiny_data):
    seed_everything(0)
    cohort = Cohort.from_modules([SmallCNN(1, 3, 4, 1), SmallCNN(1, 5, 4, 1)], teacher=SmallCNN(1, 3, 8, 2))
    with pytest.raises(DataError, match="'student2' outputs 5 classes .* data has 3 classes"):
        trainer(cohort).fit(tiny_data)
    # a binary head of one sigmoid logit on two-class data: one class, and why two (review 55a)
    task = ClassificationTask(2)
    with pytest.raises(DataError, match=r"^model 'student1' outputs 1 class \(logits \(4, 1\)\) but the data has 2 "
                                        r"classes: a two-class model here gives two scores, one per class \(softmax\), "
                                        r"not one sigmoid logit: build every teacher and student with num_classes=2"):
        task.check_output("student1", torch.zeros(4, 1), 4)


class ListDataset(Dataset):
    """A plain map-style Dataset, as a user would write: goes through a DataLoader."""

    def __init__(self, tensor_data):
        self.items = [(tensor_data.x[i], int(tensor_data.y[i])) for i in range(len(tensor_data))]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_any_torch_dataset_and_any_module_work(tiny_data):
    class Flat(nn.Module):  # not from the zoo, returns a dict like some libraries do
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

        def forward(self, x):
            return {"logits": self.net(x)}

    data = DataSplits(ListDataset(tiny_data.train), ListDataset(tiny_data.val), ListDataset(tiny_data.test),
                      num_classes=3, class_names=["a", "b", "c"], input_shape=(1, 8, 8))
    seed_everything(0)
    cohort = Cohort.from_modules([Flat(), SmallCNN(1, 3, 4, 1)], teacher=SmallCNN(1, 3, 8, 2))
    result = trainer(cohort, train=TrainSpec(epochs=3, batch_size=16)).fit(data)
    assert result.test_at_best["student1"]["accuracy"] > 0.6


class NaNAfter(nn.Module):
    """A student whose inputs turn NaN from the ``after``-th forward in training mode on, so its
    BatchNorm statistics would be poisoned too."""

    def __init__(self, after):
        super().__init__()
        self.net = SmallCNN(1, 3, 4, 1)
        self.after, self.calls = after, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                x = x * float("nan")
        return self.net(x)


def test_a_non_finite_loss_from_a_nan_in_the_inputs_names_the_data_not_the_learning_rate(tiny_data):
    from peerdistill.errors import NonFiniteError

    seed_everything(0)
    x = tiny_data.train.x.clone()
    x[3, 0, 2, 2] = float("nan")  # one pixel of one image (a Dataset's images are not checked value by value)
    data = DataSplits(TensorData(x, tiny_data.train.y), tiny_data.val, tiny_data.test, num_classes=3,
                      class_names=["a", "b", "c"], input_shape=(1, 8, 8))
    with pytest.raises(NonFiniteError, match=r"this batch's inputs hold 1 NaN or infinite values: the data has them"):
        trainer(make_cohort(), train=TrainSpec(epochs=1, batch_size=32)).fit(data)


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_non_finite_loss_is_caught_named_and_handled(tiny_data, tmp_path, policy):
    from peerdistill.errors import NonFiniteError

    seed_everything(0)
    bad = NaNAfter(after=9)  # 7 steps per epoch: the second epoch's second step
    cohort = Cohort.from_modules([SmallCNN(1, 3, 4, 1), bad], teacher=SmallCNN(1, 3, 8, 2))
    t = trainer(cohort, train=TrainSpec(epochs=2, batch_size=32, nonfinite=policy), run_dir=tmp_path / "r")
    if policy == "stop":
        with pytest.raises(NonFiniteError, match=r"'student2/ce'.*epoch 2, step 2.*checkpoints/last.pt. Lower "
                                                 r"optim.lr"):  # a model's NaN: not the data's
            t.fit(tiny_data)
        from safetensors.torch import load_file

        saved = load_file(tmp_path / "r" / "models" / "student2.safetensors")
        assert all(torch.isfinite(v).all() for v in saved.values())  # the last good weights
        # how to go on skipping: a config run resumes; under torchrun on as many processes again
        (tmp_path / "r" / "config.yaml").write_text("{}")
        assert t._skip_advice().endswith(f"continue with peerdistill train --resume {tmp_path / 'r'}")
        t.world = dataclasses.replace(t.world, joined=True, size=2)
        assert t._skip_advice().endswith(f"continue with torchrun ... -m peerdistill train --resume {tmp_path / 'r'} "
                                         "on 2 processes again")
    else:
        before = copy.deepcopy(bad.net.state_dict())
        from peerdistill.errors import NonFiniteStepsWarning

        with pytest.warns(NonFiniteStepsWarning, match=r"epoch 2: 6 of 7 training steps skipped for non-finite "
                                                       r"values: loss term 'student2/ce' \(6 steps\)"):
            result = t.fit(tiny_data)
        assert result.history[0]["skipped_steps"] == 0 and result.history[1]["skipped_steps"] == 6
        # every term the NaN student takes part in: its own, and its peer's term learning from it
        assert (result.history[0]["skipped_for"], result.history[1]["skipped_for"]) == ("", "; ".join(
            f"loss term '{t}': 6" for t in ("student2/ce", "student2/kl<-teacher", "student1/kl<-student2",
                                            "student2/kl<-student1")))
        # parameters and BatchNorm statistics alike: nothing from the skipped steps
        assert all(torch.isfinite(v.float()).all() for v in bad.net.state_dict().values())
        assert not torch.equal(before["classifier.weight"], bad.net.state_dict()["classifier.weight"])


class OverflowingStatistics(nn.Module):
    """A student with a BatchNorm that tracks its inputs' sums times 1e30 from the ``after``-th
    training forward on: its running variance overflows while its outputs (which do not use
    it), the losses and the gradients stay finite."""

    def __init__(self, after):
        super().__init__()
        self.net = SmallCNN(1, 3, 4, 1)
        self.tracker = nn.BatchNorm1d(1, affine=False)
        self.after, self.calls = after, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            self.tracker(x.flatten(1).sum(1, keepdim=True) * (1e30 if self.calls >= self.after else 1.0))
        return self.net(x)


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_running_statistics_that_overflow_are_caught_as_non_finite(tiny_data, tmp_path, policy):
    from peerdistill.errors import NonFiniteError, NonFiniteStepsWarning

    seed_everything(0)
    bad = OverflowingStatistics(after=9)  # 7 steps per epoch: the second epoch's second step
    cohort = Cohort.from_modules([SmallCNN(1, 3, 4, 1), bad], teacher=SmallCNN(1, 3, 8, 2))
    t = trainer(cohort, train=TrainSpec(epochs=2, batch_size=32, nonfinite=policy), run_dir=tmp_path / "r",
                config_yaml="name: r\n")  # as the command line writes one: a resume can change the policy
    if policy == "stop":
        with pytest.raises(NonFiniteError, match=r"non-finite running statistics \(BatchNorm buffers\) of 'student2' "
                                                 r"at epoch 2, step 2; the last good checkpoint is .*last.pt.*set "
                                                 r"train.nonfinite: skip in '.*config.yaml' and continue with "
                                                 r"peerdistill train --resume"):
            t.fit(tiny_data)
        from peerdistill.engine.resume import load_resume_state

        kept = load_resume_state(tmp_path / "r" / "checkpoints" / "last.pt")
        assert kept["epoch"] == 1 and torch.isfinite(kept["models"]["student2"]["tracker.running_var"]).all()
    else:
        with pytest.warns(NonFiniteStepsWarning, match=r"epoch 2: 6 of 7 training steps skipped for non-finite "
                                                       r"values: running statistics \(BatchNorm buffers\) of "
                                                       r"'student2' \(6 steps\)"):
            t.fit(tiny_data)
        assert torch.isfinite(bad.tracker.running_var).all() and bad.tracker.running_var.item() != 1.0


def test_an_epoch_whose_every_step_is_skipped_stops_the_run_naming_the_term(tiny_data, tmp_path):
    """A term that is never finite: skipping would leave the models untrained to the end."""
    from peerdistill.errors import NonFiniteError

    seed_everything(0)
    cohort = Cohort.from_modules([SmallCNN(1, 3, 4, 1), NaNAfter(after=0)], teacher=SmallCNN(1, 3, 8, 2))
    t = trainer(cohort, train=TrainSpec(epochs=2, batch_size=32, nonfinite="skip"), run_dir=tmp_path / "r")
    with pytest.raises(NonFiniteError, match=r"every step of epoch 1 was skipped for non-finite values: loss term "
                                             r"'student2/ce' \(7 steps\).*nothing was saved\. Train a new run with a lower "
                                             r"optim.lr or with the named terms changed or dropped \(a resume keeps "
                                             r"the run's config\)"):
        t.fit(tiny_data)
    # a run that replaced another one (--overwrite) and kept nothing puts it back (it was deleted as the new one
    # began, review 48b)
    finished = trainer(Cohort.from_modules([SmallCNN(1, 3, 4, 1), SmallCNN(1, 3, 4, 1)], teacher=SmallCNN(1, 3, 8, 2)),
                       train=TrainSpec(epochs=1, batch_size=32), run_dir=tmp_path / "done")
    finished.fit(tiny_data)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "done").rglob("*") if p.is_file()}
    seed_everything(0)
    cohort = Cohort.from_modules([SmallCNN(1, 3, 4, 1), NaNAfter(after=0)], teacher=SmallCNN(1, 3, 8, 2))
    again = trainer(cohort, train=TrainSpec(epochs=2, batch_size=32, nonfinite="skip"), run_dir=tmp_path / "done",
                    overwrite=True)
    with pytest.raises(NonFiniteError, match=r"nothing was saved \(the run this one replaced, --overwrite, is put "
                                             r"back\)"):
        again.fit(tiny_data)
    assert {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "done").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done", "r"]  # nothing of either left aside


def test_an_overwrite_deletes_the_run_it_replaced_once_its_first_checkpoint_is_kept(tiny_data, tmp_path):
    """Until the new run's first checkpoint the old run is kept aside; from then on the new run
    is the one to resume: a later failure leaves it, stopped, and the old run is gone."""
    from peerdistill.json_files import read_json

    trainer(make_cohort(), train=TrainSpec(epochs=1, batch_size=32), run_dir=tmp_path / "r").fit(tiny_data)
    aside = lambda: sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))  # noqa: E731
    during_first_step, after_epoch = [], []

    def stop_in_epoch_2(epoch, row):
        after_epoch.append(aside())
        if epoch == 1:
            raise RuntimeError("stopped in epoch 2")

    cohort = make_cohort()
    cohort["student1"].module.register_forward_pre_hook(
        lambda module, args: during_first_step.append(aside()) if module.training and not during_first_step else None)
    again = trainer(cohort, train=TrainSpec(epochs=3, batch_size=32), run_dir=tmp_path / "r", overwrite=True,
                    callbacks=[stop_in_epoch_2])
    with pytest.raises(RuntimeError, match="stopped in epoch 2"):
        again.fit(tiny_data)
    assert during_first_step == [[f".replaced-r.{os.getpid()}"]] and after_epoch == [[], []]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert read_json(tmp_path / "r" / "run.json")["status"] == "stopped" and (tmp_path / "r" / "checkpoints").is_dir()


class NaNInSecondBatch(ClassificationTask):
    """One bad input pixel in the second training batch."""

    def __init__(self, num_classes):
        super().__init__(num_classes)
        self.batches = 0

    def augment(self, x, y, generator):
        self.batches += 1
        if self.batches == 2:
            x = x.clone()
            x[0, 0, 0, 0] = float("nan")
        return x, y


def test_a_skipped_step_leaves_no_trace_in_the_connectors_batchnorm(tiny_data, tmp_path):
    seed_everything(0)
    cohort = Cohort.from_modules([SmallCNN(1, 3, width=4, depth=2) for _ in range(2)],
                                 teacher=SmallCNN(1, 3, width=8, depth=2))
    graph = KnowledgeGraph(preset_edges("styles", "teacher", [m.name for m in cohort.students],
                                        feature_layers={m.name: m.feature_layer for m in cohort.members}))
    t = Trainer(cohort, graph, NaNInSecondBatch(3), device="cpu", progress=False, run_dir=tmp_path / "r",
                train=TrainSpec(epochs=1, batch_size=32, nonfinite="skip", monitor="ensemble/accuracy"))
    t._setup(tiny_data)
    assert len(t.connectors), "teacher and students differ in width: the feature edge needs a connector"
    result = t.fit(tiny_data)
    assert result.history[0]["skipped_steps"] == 1
    stats = [b for b in t.connectors.buffers() if b.is_floating_point()]
    assert stats and all(torch.isfinite(b).all() for b in stats)


def test_weights_stepped_out_of_range_stop_the_run_naming_the_model(tiny_data, tmp_path):
    from peerdistill.errors import NonFiniteError

    cohort = make_cohort()
    # a finite loss and gradient, then weights so large the outputs are NaN: no step policy helps
    # (beyond what a config accepts, optim.lr <= 1e4: built without validation, as Python may)
    huge = OptimSpec.model_construct(**{**OptimSpec().model_dump(), "name": "sgd", "lr": 1e38, "momentum": 0.0,
                                        "weight_decay": 0.0})
    t = trainer(cohort, train=TrainSpec(epochs=1, batch_size=32, nonfinite="skip"), optim=huge, run_dir=tmp_path / "r")
    with pytest.raises(NonFiniteError, match="'teacher' gives non-finite outputs on the validation split after "
                                             "epoch 1: its weights have diverged"):
        t.fit(tiny_data)
    assert not (tmp_path / "r" / "models").exists() or not any((tmp_path / "r" / "models").iterdir())


def test_large_finite_gradients_are_not_taken_for_non_finite_ones():
    from peerdistill.engine.nonfinite import _all_finite, _gradients

    weight = nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    weight.grad = torch.full((4,), 1e20)  # its 2-norm overflows float32; every element is finite
    assert bool(_all_finite(_gradients(optimizer), torch.device("cpu")))
    weight.grad[2] = float("nan")
    assert not bool(_all_finite(_gradients(optimizer), torch.device("cpu")))
    weight.grad[2] = float("-inf")
    assert not bool(_all_finite(_gradients(optimizer), torch.device("cpu")))


class UserNet(nn.Module):
    """A user's model with the habits of torchvision's: an auxiliary branch run only in training,
    where the output is a tuple; an encoder returning a dict; vector features."""

    def __init__(self, aux_logits_first=False):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.enc = nn.Linear(16, 8)
        self.fc = nn.Linear(8, 3)
        self.aux = nn.Linear(16, 8)
        self.aux_logits_first = aux_logits_first

    def forward(self, x):
        f = self.body(x).flatten(1)
        logits = self.fc(self.enc(f))
        if self.training:
            aux = self.aux(f)
            return (aux, logits) if self.aux_logits_first else (logits, aux)
        return logits


def _edge_trainer(students, edge, **feature_layers):
    from peerdistill.graph import Edge

    cohort = Cohort.from_modules(students, feature_layers=feature_layers)
    graph = KnowledgeGraph([Edge("student2", "student1", **edge)])
    return Trainer(cohort, graph, ClassificationTask(3), device="cpu", progress=False,
                   train=TrainSpec(epochs=1, batch_size=32, monitor="ensemble/accuracy"))


@pytest.mark.parametrize("edge, message", [
    ({"kind": "hint", "source_layer": "aux", "target_layer": "aux"},
     r"model 'student1': layer\(s\) \['aux'\] gave no output in this evaluation forward \(not called, or called only "
     r"in training"),
    ({"kind": "at", "source_layer": "enc", "target_layer": "enc"},
     r"kind 'at' compares \[C, H, W\] feature maps, but layer 'enc' of 'student\d' gives \[8\]"),
])
def test_feature_layers_that_cannot_serve_are_named_before_training(tiny_data, edge, message):
    from peerdistill.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        _edge_trainer([UserNet(), UserNet()], edge).fit(tiny_data)


def test_a_model_whose_training_output_is_not_its_logits_is_named(tiny_data):
    # In eval mode it gives logits; in training a tuple whose first item is an 8-wide vector.
    seed_everything(0)
    cohort = Cohort.from_modules([UserNet(aux_logits_first=True), SmallCNN(1, 3, 4, 1)])
    with pytest.raises(DataError, match=r"in training mode \(its output in eval mode passed.*model 'student1' outputs "
                                        r"8 classes \(logits \(32, 8\)\).*the first item is taken as the logits"
                        ) as refused:
        Trainer(cohort, KnowledgeGraph(preset_edges("ml", None, ["student1", "student2"])), ClassificationTask(3),
                device="cpu", progress=False, train=TrainSpec(epochs=1, batch_size=32)).fit(tiny_data)
    assert refused.value.said_alike == str(refused.value)  # (the same models in every process: said once a node)
    cohort = Cohort.from_modules([UserNet(), UserNet()])  # logits first: trains
    Trainer(cohort, KnowledgeGraph(preset_edges("ml", None, ["student1", "student2"])), ClassificationTask(3),
            device="cpu", progress=False, train=TrainSpec(epochs=1, batch_size=32)).fit(tiny_data)


def test_the_test_split_is_scored_once_when_the_best_epoch_is_the_last(tiny_data):
    t = trainer(make_cohort(), train=TrainSpec(epochs=1, batch_size=32, monitor="ensemble/accuracy"))
    calls = []
    evaluate = t._evaluate
    t._evaluate = lambda batches, where, *shown: calls.append(batches) or evaluate(batches, where, *shown)
    result = t.fit(tiny_data)
    assert result.best_epoch == 0 and len(calls) == 2  # one validation, one test pass (not two)
    # the same scores, and what the best weights score when they are loaded again (a student
    # never predicting a class has no precision for it: NaN)
    again = t._evaluate(t.test_batches, "the test split")
    for scores in (result.test_at_last, again):
        assert scores.keys() == result.test_at_best.keys()
        for model, values in scores.items():
            assert values == pytest.approx(result.test_at_best[model], nan_ok=True)


def test_distillation_weights_ramp_up_step_by_step_by_the_formula(tiny_data):
    # 240 samples, batch 32: 7 full steps an epoch; rampup_epochs 2: step s of epoch e (from 0)
    # trains with exp(-5 (1 - t)^2) of the edges' weights, t = (e + s / 7) / 2, and 1 from epoch 2 on.
    cohort = make_cohort()
    t = Trainer(cohort, kdml(cohort), ClassificationTask(3), device="cpu", progress=False, rampup_epochs=2,
                train=TrainSpec(epochs=3, batch_size=32))
    seen, step = [], t.step
    t.step = lambda x, y, ramp: seen.append(ramp) or step(x, y, ramp)
    result = t.fit(tiny_data)
    expected = [math.exp(-5 * (1 - min((e + s / 7) / 2, 1.0)) ** 2) for e in range(3) for s in range(7)]
    assert seen == pytest.approx(expected, rel=1e-6)
    assert [row["rampup"] for row in result.history] == pytest.approx([math.exp(-5 * 0.25), 1.0, 1.0])


def test_a_trainer_given_no_seed_takes_that_of_the_last_seed_everything_call(tiny_data):
    from peerdistill.engine.seeding import last_seeding

    orders = {}
    for seed in (0, 1, 1):
        cohort = make_cohort()
        seed_everything(seed)
        t = Trainer(cohort, KnowledgeGraph([]), ClassificationTask(3), device="cpu", progress=False)
        assert (t.seed, t.deterministic) == (seed, False) == last_seeding()
        t._setup(tiny_data)  # the data order comes from the trainer's seed
        orders.setdefault(seed, []).append(torch.randperm(240, generator=t.generator)[:8].tolist())
    assert orders[1][0] == orders[1][1] and orders[0][0] != orders[1][0]
    cohort = make_cohort()
    seed_everything(3, deterministic=True)
    assert (Trainer(cohort, KnowledgeGraph([]), ClassificationTask(3)).deterministic, last_seeding()) == (True, (3, True))
    explicit = Trainer(cohort, KnowledgeGraph([]), ClassificationTask(3), seed=5, deterministic=False)
    assert (explicit.seed, explicit.deterministic) == (5, False)
    explicit._setup(tiny_data)  # a trainer seeding itself is not the user's call: the next takes (3, True)
    assert (Trainer(cohort, KnowledgeGraph([]), ClassificationTask(3)).seed, last_seeding()) == (3, (3, True))
    seed_everything(0)


class ShapedDataset(Dataset):
    """``ListDataset``'s samples as ``shape(image, label)`` returns them."""

    def __init__(self, tensor_data, shape):
        self.x, self.y, self.shape = tensor_data.x, tensor_data.y, shape

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.shape(self.x[i], self.y[i])


def shaped_data(tiny_data, shape, input_shape=(1, 8, 8), num_classes=3):
    return DataSplits(*(ShapedDataset(s, shape) for s in (tiny_data.train, tiny_data.val, tiny_data.test)),
                      num_classes=num_classes, class_names=[str(c) for c in range(num_classes)],
                      input_shape=input_shape)


@pytest.mark.parametrize("shape", [
    lambda x, y: {"image": x, "label": int(y)},  # HuggingFace datasets / albumentations habit
    lambda x, y: (x.double(), y.to(torch.int32)),  # numpy's float64, int32 labels
    lambda x, y: [x, y.numpy()],
], ids=["dict", "float64-int32", "list-numpy-label"])
def test_dataset_samples_as_users_return_them_are_read(tiny_data, shape):
    result = trainer(make_cohort(), train=TrainSpec(epochs=1, batch_size=32)).fit(shaped_data(tiny_data, shape))
    assert result.test_at_best["teacher"]["accuracy"] > 0.4


@pytest.mark.parametrize("shape,kwargs,message", [
    (lambda x, y: (x, y, 7), {}, r"is a tuple of 3 items; peerdistill reads \(image, target\) pairs"),
    (lambda x, y: {"img": x, "target": y}, {}, r"dict with keys \['img', 'target'\]; peerdistill reads 'image'"),
    (lambda x, y: ((x * 255).clamp(0, 255).to(torch.uint8), y), {}, "images are uint8, not floating point"),
    (lambda x, y: (x, nn.functional.one_hot(y, 3).float()), {}, r"labels are float32 of shape \(\d+, 3\); "
                                                                "classification reads class indices"),
    # (review 55a: class indices stored as floats were told of one-hot labels)
    (lambda x, y: (x, y.float()), {}, r"labels are float32 of shape \(\d+,\); classification reads class indices, "
                                      r"one integer per sample \(these are whole numbers stored as floats: return "
                                      r"int\(label\), or label.long\(\) for a tensor\)"),
    (lambda x, y: (x, y), {"num_classes": 2}, "labels run from 0 to 2, outside the 2 classes 0..1"),
    (lambda x, y: (x, y), {"input_shape": (3, 32, 32)}, r"validation inputs have shape \(1, 8, 8\) but the data "
                                                        r"declares input_shape=\(3, 32, 32\): give DataSplits"),
    (lambda x, y: (x[0], y), {}, r"shape \(8, 8\) .* lacks its channel axis: return image\[None\]"),
    (lambda x, y: (x.permute(1, 2, 0), y), {}, r"shape \(8, 8, 1\) .* channels-last \[H, W, C\]: return "
                                               r"image.permute\(2, 0, 1\)"),
], ids=["triple", "dict-keys", "uint8", "one-hot", "float-indices", "label-range", "input-shape", "no-channel-axis", "channels-last"])
def test_dataset_samples_that_cannot_be_read_are_one_message_before_training(tiny_data, shape, kwargs, message):
    seed_everything(0)
    k = kwargs.get("num_classes", 3)
    cohort = Cohort.from_modules([SmallCNN(1, k, 4, 1), SmallCNN(1, k, 4, 1)], teacher=SmallCNN(1, k, 8, 2))
    t = Trainer(cohort, kdml(cohort), ClassificationTask(k), device="cpu", progress=False,
                train=TrainSpec(epochs=1, batch_size=32))
    with pytest.raises(DataError, match=message):
        t.fit(shaped_data(tiny_data, shape, **kwargs))


class Flattening(nn.Module):
    """A user's classifier that flattens with .view(), which channels-last activations refuse."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 64, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


def test_automatic_channels_last_gives_way_to_a_model_that_needs_contiguous_activations(tiny_data, monkeypatch):
    import peerdistill.engine.trainer as trainer_module
    from peerdistill.errors import ConfigError

    real = trainer_module.resolve_speed  # as on CUDA, where channels_last: auto means on
    monkeypatch.setattr(trainer_module, "resolve_speed", lambda *a: replace(real(*a), channels_last=True))
    seed_everything(0)
    cohort = Cohort.from_modules([Flattening(), Flattening()], teacher=Flattening())
    t = trainer(cohort, train=TrainSpec(epochs=1, batch_size=32))
    t.fit(tiny_data)
    assert not t.speed.channels_last and "train.channels_last=false" in t.run_info["channels_last_fallback"]
    cohort = Cohort.from_modules([Flattening(), Flattening()], teacher=Flattening())
    with pytest.raises(ConfigError, match=r"view.*a \.view\(\) that needs \.reshape\(\) or train.channels_last=false"):
        trainer(cohort, train=TrainSpec(epochs=1, batch_size=32, channels_last=True)).fit(tiny_data)


def test_a_classifier_may_be_validated_at_another_size_than_it_trains_at(tiny_data):
    """FixRes' habit: train on crops, score larger images; a globally pooled model takes both."""
    big = [TensorData(torch.nn.functional.interpolate(s.x, size=(12, 12)), s.y) for s in (tiny_data.val, tiny_data.test)]
    data = DataSplits(tiny_data.train, *big, num_classes=3, class_names=["a", "b", "c"], input_shape=(1, 8, 8))
    result = trainer(make_cohort(), train=TrainSpec(epochs=1, batch_size=32)).fit(data)
    assert result.test_at_best["teacher"]["accuracy"] > 0.3


def test_per_class_metrics_are_named_after_the_datas_classes():
    """A task built without names takes the data's (run.json records them, eval names its
    figures after them); one naming them otherwise is refused, and so is a per-class monitor
    that named a class by its number."""
    from peerdistill.errors import ConfigError

    x, y = torch.randn(60, 1, 8, 8), torch.arange(60) % 2
    data = DataSplits.from_arrays(x, y, x, y, x, y, class_names=["normal", "pneumonia"])

    def fit(task, **spec):
        cohort = Cohort.from_modules([SmallCNN(1, 2, 4, 1)])
        return Trainer(cohort, KnowledgeGraph([]), task, train=TrainSpec(epochs=1, batch_size=30, **spec),
                       device="cpu", progress=False).fit(data)

    scores = fit(ClassificationTask(2)).test_at_best["ensemble"]
    assert {"recall_normal", "recall_pneumonia", "precision_normal", "precision_pneumonia"} <= set(scores)
    assert "recall_1" not in scores
    with pytest.raises(ConfigError, match="train.monitor 'ensemble/recall_1' .*'recall_pneumonia'"):
        fit(ClassificationTask(2), monitor="ensemble/recall_1")
    with pytest.raises(DataError, match=r"the task names the classes \['a', 'b'\] but the data \['normal', 'pneumonia'\]"):
        fit(ClassificationTask(2, class_names=["a", "b"]))


def test_per_class_figures_of_many_classes_stay_out_of_each_epochs_row():
    """Above 20 classes each epoch's row keeps the whole-split metrics (and a per-class monitor);
    the best and last epochs' results keep every figure."""
    x, y = torch.randn(84, 1, 8, 8), torch.arange(84) % 21
    data = DataSplits.from_arrays(x, y, x, y, x, y)
    cohort = Cohort.from_modules([SmallCNN(1, 21, 4, 1)])
    result = Trainer(cohort, KnowledgeGraph([]), ClassificationTask(21), device="cpu", progress=False,
                     train=TrainSpec(epochs=1, batch_size=42, monitor="ensemble/recall_20")).fit(data)
    row = result.history[0]
    assert "val/ensemble/accuracy" in row and "val/ensemble/recall_20" in row
    assert not any(key.startswith(("val/ensemble/recall_1", "val/student1/precision_")) for key in row)
    assert {f"recall_{c}" for c in range(21)} <= set(result.test_at_best["student1"])
    assert {f"precision_{c}" for c in range(21)} <= set(result.val_at_best["ensemble"])


def test_under_loss_scaling_only_gradient_overflows_are_routine(tiny_data):
    """With a gradient scaler (fp16), skips for overflowing gradients alone are its calibration:
    neither warned of nor stopped for; a non-finite loss term among them is named, and an epoch
    of skips only stops the run. (A stand-in scaler: the CPU has none.)"""
    from peerdistill.errors import NonFiniteError

    t = trainer(make_cohort())
    t._setup(tiny_data)
    t.scaler = object()
    t.skipped_steps, t.skip_causes = 7, {"gradient of model 'student1'": 7}
    t._check_skipped(0, 7)
    t.skip_causes = {"gradient of model 'student1'": 6, "loss term 'student1/ce'": 1}
    with pytest.raises(NonFiniteError, match=r"every step of epoch 1 was skipped .*loss term 'student1/ce' \(1 step\)"):
        t._check_skipped(0, 7)



def test_an_epoch_skipped_whole_is_advised_by_what_it_names(tiny_data):
    """Review 58h: BatchNorm statistics alone were told to 'change or drop the named term', and
    'Lower optim.lr' followed the last good checkpoint, though a resume refuses an edited optim.lr."""
    from peerdistill.errors import NonFiniteError

    t = trainer(make_cohort())
    t._setup(tiny_data)
    t.skipped_steps = 7
    t.skip_causes = {"running statistics (BatchNorm buffers) of 'teacher'": 7, "gradient of model 'student1'": 2}
    with pytest.raises(NonFiniteError) as stopped:
        t._check_skipped(0, 7)
    assert str(stopped.value).endswith("nothing was saved. Train a new run with a lower optim.lr (a resume keeps the "
                                       "run's learning rate), or check the data for extreme values")
    t.skip_causes = {"loss term 'student1/ce'": 4, "loss term 'student1->student2/kd'": 3}
    with pytest.raises(NonFiniteError, match=r"Train a new run with a lower optim.lr or with the named terms changed "
                                             r"or dropped \(a resume keeps the run's config\), or check the data"):
        t._check_skipped(0, 7)

def test_a_run_without_skipped_steps_warns_of_none(tiny_data):
    import warnings

    from peerdistill.errors import NonFiniteStepsWarning

    t = trainer(make_cohort(), train=TrainSpec(epochs=2, batch_size=32))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteStepsWarning)
        assert len(t.fit(tiny_data).history) == 2


def test_seed_everything_seeds_python_numpy_and_torch_and_sets_the_deterministic_switch(monkeypatch):
    """The draws after seed_everything(s) are those of each library seeded with s by hand (NumPy
    with s modulo 2**32); the deterministic switch turns torch's check and cuDNN's autotuning
    off as asked and back on for the next run without it."""
    import random

    import numpy as np

    from peerdistill.config import SEED_LIMIT
    from peerdistill.engine.seeding import seed_everything as seed_all
    from peerdistill.errors import ConfigError

    seed = SEED_LIMIT - 1  # the largest a config takes
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    seed_all(seed)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    for bad in (True, -1, SEED_LIMIT, 1.5):  # (a bool is an int to Python, not a seed)
        with pytest.raises(ConfigError, match="give a whole number in 0.."):
            seed_all(bad)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    seed_all(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # what cuBLAS needs to be deterministic
    seed_all(0)
    assert not torch.are_deterministic_algorithms_enabled()


def test_progress_bars_count_epochs_and_steps_from_where_a_run_resumed_and_are_silent_when_off():
    """A run resumed in epoch 3 (of 5) at step 4 (of 10) shows 2 epochs done and 4 steps done; the
    epoch bar counts the finished epoch and shows its loss and monitor; a step's bar goes when
    its epoch ends. Disabled, nothing is drawn."""
    import io

    from peerdistill.engine.progress import Progress
    from peerdistill.terminal import Console

    with Progress(enabled=True, console=Console(file=io.StringIO(), force_terminal=True)) as progress:
        bar = progress._bar
        task = progress.start_epoch(2, 5, 10, done=4)
        progress.advance(task)
        tasks = {t.description: t for t in bar.tasks}
        assert (tasks["epochs"].total, tasks["epochs"].completed) == (5, 2)
        assert (tasks["epoch 3"].total, tasks["epoch 3"].completed) == (10, 5)
        progress.finish_epoch(task)
        progress.epoch_done(2, 5, {"train/loss/total": 0.25, "train/loss/teacher": 9.0, "val/s1/accuracy": 0.5},
                            "s1", "accuracy")
        assert [t.description for t in bar.tasks] == ["epochs"]
        assert bar.tasks[0].completed == 3
        assert bar.tasks[0].fields["status"] == "loss 0.250  val s1/accuracy 0.5000"
    with Progress(enabled=False) as off:
        assert off._bar is None and off.start_epoch(0, 5, 10) is None


def test_progress_in_a_log_is_a_plain_line_per_epoch(monkeypatch):
    # rich draws its bars once, at the end, where stderr is no terminal: a scheduler's log stayed
    # empty for the whole run
    import io

    from peerdistill.engine import progress as progress_module
    from peerdistill.terminal import Console

    clock = iter([100.0, 100.0 + 3725.4])  # entered; then 1 h 2 min 5.4 s later
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    log = io.StringIO()
    with progress_module.Progress(enabled=True, console=Console(file=log, width=40)) as progress:
        assert progress._bar is None and progress.start_epoch(2, 5, 10) is None
        progress.epoch_done(2, 5, {"train/loss/total": 0.25, "val/s1/accuracy": 0.5}, "s1", "accuracy")
    assert log.getvalue() == "epoch 3/5  loss 0.250  val s1/accuracy 0.5000  (1:02:05 elapsed)\n"  # unwrapped
    # in the ramp-up the total sums knowledge terms whose weight still grows: said (review 47a)
    for row, said in (({"train/loss/s1/kl<-t": 0.1, "rampup": 0.4375}, " (knowledge terms ramping up: 44% of their weight by the epoch's end)"),
                      ({"train/loss/s1/kl<-t": 0.1, "rampup": 1.0}, ""), ({"train/loss/s1/ce": 0.1, "rampup": 0.5}, "")):
        clock = iter([0.0, 2.0])  # (read by the patched monotonic above)
        log = io.StringIO()
        with progress_module.Progress(enabled=True, console=Console(file=log, width=40)) as progress:
            progress.epoch_done(0, 5, {"train/loss/total": 0.25, **row}, "s1", "accuracy")
        assert log.getvalue() == f"epoch 1/5  loss 0.250{said}  (not validated: train.val_every)  (0:00:02 elapsed)\n"


def test_the_epoch_line_shows_an_undefined_monitor_as_n_a(monkeypatch):
    """An AUC on a validation split lacking a class is NaN that epoch: the line says n/a, as the
    report's tables do, not Python's nan (bars and log lines alike)."""
    import io

    from peerdistill.engine import progress as progress_module
    from peerdistill.terminal import Console

    clock = iter([0.0, 2.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    row = {"train/loss/total": 0.25, "val/s1/auc": float("nan")}
    log = io.StringIO()
    with progress_module.Progress(enabled=True, console=Console(file=log, width=40)) as progress:
        progress.epoch_done(0, 5, row, "s1", "auc")
    assert log.getvalue() == "epoch 1/5  loss 0.250  val s1/auc n/a  (0:00:02 elapsed)\n"
    with progress_module.Progress(enabled=True, console=Console(file=io.StringIO(), force_terminal=True)) as progress:
        progress.start_epoch(0, 5, 10)
        progress.epoch_done(0, 5, row, "s1", "auc")
        assert progress._bar.tasks[0].fields["status"] == "loss 0.250  val s1/auc n/a"


def test_the_final_scoring_of_the_test_split_is_said_in_a_log(tmp_path, capsys):
    # DRIVE's final scoring (sliding windows, twice) took half a minute after the last epoch's line, in silence
    import json

    from peerdistill.cli import main

    assert main(["train", "train.epochs=1", f"out_dir={tmp_path}", "teacher.args.width=4", "students.0.args.width=4",
                 "students.1.args.width=4", "distill.rampup_epochs=0"]) == 0
    lines = capsys.readouterr().err.splitlines()
    epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/1"))
    assert lines[epoch - 1] == f"training '{tmp_path / 'digits-kd+ml'}': 1 epoch of 16 steps"  # (review 54d)
    assert lines[epoch + 1] == "scoring the test split (360 samples) with the weights of the last epoch"
    # weights that hardly move: the second epoch scores as the first, which stays the best
    assert main(["train", "train.epochs=2", f"out_dir={tmp_path}", "name=still", "optim.lr=1e-12",
                 "teacher.args.width=4", "students.0.args.width=4", "students.1.args.width=4",
                 "distill.rampup_epochs=0"]) == 0
    lines = capsys.readouterr().err.splitlines()
    epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch 2/2"))
    best = json.loads((tmp_path / "still" / "metrics.json").read_text())["best_epoch"]  # 1 here (BatchNorm's
    # running statistics could still move a prediction elsewhere): the line says what was done
    assert lines[epoch + 1] == ("scoring the test split (360 samples) with the weights of the last epoch"
                                + (" and of the best one" if best == 1 else ""))
    # each pass closes with how long it took (review 46a: DRIVE's took minutes in silence)
    passes = ["test split, last epoch's weights"] + (["test split, best epoch's (1) weights"] if best == 1 else [])
    assert [re.sub(r"\d+:\d\d$", "M:SS", line) for line in lines[epoch + 2:epoch + 2 + len(passes)]] == [
        f"{p}: scored in M:SS" for p in passes]


def test_the_trainer_advances_the_final_scorings_bar_batch_by_batch(tiny_data, monkeypatch):
    # (review 46d L4: the bar was tested by hand, a trainer that never advanced it would have passed)
    from peerdistill import ClassificationTask, Cohort, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.engine.progress import Progress
    from peerdistill.models import SmallCNN

    passes, advanced = [], []
    start = Progress.start_pass
    monkeypatch.setattr(Progress, "start_pass", lambda self, what, batches: (
        passes.append((what, batches)), start(self, what, batches), what)[-1])
    advance = Progress.advance
    monkeypatch.setattr(Progress, "advance", lambda self, task: (advanced.append(task), advance(self, task)))
    cohort = Cohort.from_modules([SmallCNN(1, 3, width=4)])
    Trainer(cohort, KnowledgeGraph([]), ClassificationTask(3), train=TrainSpec(epochs=1, eval_batch_size=16),
            progress=True).fit(tiny_data)
    assert passes == [("test split, last epoch's weights", 4)]  # 60 test samples, 16 a batch
    assert advanced.count("test split, last epoch's weights") == 4


def test_the_final_scoring_draws_a_bar_of_its_batches_on_a_terminal(monkeypatch):
    import io

    from peerdistill.engine.progress import Progress
    from peerdistill.terminal import Console

    with Progress(enabled=True, console=Console(file=io.StringIO(), force_terminal=True)) as progress:
        task = progress.start_pass("test split, last epoch's weights", 20)
        for _ in range(3):
            progress.advance(task)
        shown = {t.description: (t.completed, t.total) for t in progress._bar.tasks}
        assert shown == {"test split, last epoch's weights": (3, 20)}
        progress.finish_pass(task, "test split, last epoch's weights")
        assert not progress._bar.tasks


def test_training_warnings_held_then_said_keep_their_module_for_the_callers_filters(tmp_path):
    """Review 44a: the warnings training begins with are held, then said again; said so without
    their module, a filter by module (``module="__main__"`` in a script, here this test's own)
    no longer matched them."""
    import warnings

    from tests.conftest import _blobs

    (x, y), (xv, yv), (xt, yt) = (_blobs(n, s) for n, s in ((96, 0), (32, 1), (32, 2)))
    xv[:2], yv[:2] = x[:2], y[:2]
    data = DataSplits.from_arrays(x, y, xv, yv, xt, yt)
    for module, passed in ((__name__, []), ("elsewhere", ["2 of 32 validation inputs are identical"])):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", module=module.replace(".", r"\."))
            Trainer(Cohort.from_modules([SmallCNN(1, 3, width=4)]), KnowledgeGraph([]), ClassificationTask(3),
                    train=TrainSpec(epochs=1), progress=False).fit(data)
        said = [str(w.message)[:39] for w in got if "identical" in str(w.message)]
        assert said == passed, module
    # a notebook cell: its code's file (ipykernel's /tmp/ipykernel_N/M.py) names no module, but it
    # runs in __main__, which its filter names (review 45a)
    from peerdistill.errors import warn_again, warn_user

    cell = compile("warn_user('held warning')", "/tmp/ipykernel_1/2881.py", "exec")
    with warnings.catch_warnings(record=True) as held:
        warnings.simplefilter("always")
        exec(cell, {"__name__": "__main__", "warn_user": warn_user})  # noqa: S102
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", module="__main__")
        warn_again(held[0])
    assert again == []


def test_validation_inputs_identical_to_training_inputs_are_warned_of_once_the_run_starts(tmp_path):
    """PneumoniaMNIST's validation split holds 8 of its training images: the best epoch is then
    chosen partly on them. Said at training (not where eval reads other data)."""
    import warnings

    from peerdistill.errors import PeerdistillWarning
    from tests.conftest import _blobs

    (x, y), (xv, yv), (xt, yt) = (_blobs(n, s) for n, s in ((96, 0), (32, 1), (32, 2)))
    xv[:3], yv[:3] = x[10:13], y[10:13]
    data = DataSplits.from_arrays(x, y, xv, yv, xt, yt)
    cohort = Cohort.from_modules([SmallCNN(1, 3, width=4), SmallCNN(1, 3, width=4)])
    trainer = Trainer(cohort, KnowledgeGraph(preset_edges("ml", cohort)), ClassificationTask(3),
                      train=TrainSpec(epochs=1), run_dir=tmp_path / "r", progress=False)
    with pytest.warns(PeerdistillWarning, match=r"^3 of 32 validation inputs are identical to training inputs \('sample 0 of "
                                                r"the val split' = 'sample 10 of the train split', 'sample 1 of the "
                                                r"val split' = 'sample 11 of the train split', 'sample 2 of the val "
                                                r"split' = 'sample 12 of the train split'\): the "
                                                r"epoch kept as best is chosen partly on images the models trained on, "
                                                r"its validation figures are optimistic, and so is a threshold or "
                                                r"temperature fitted on validation later"):
        trainer.fit(data)
    assert (tmp_path / "r" / "train_digests.json").is_file()
    clean = DataSplits.from_arrays(x, y, *_blobs(32, 1), xt, yt)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*identical to training inputs", PeerdistillWarning)
        Trainer(Cohort.from_modules([SmallCNN(1, 3, width=4), SmallCNN(1, 3, width=4)]), KnowledgeGraph([]),
                ClassificationTask(3), train=TrainSpec(epochs=1), progress=False).fit(clean)
    # test inputs too, named by the rows (or files) the data gives them
    xt[5], yt[5] = x[40], y[40]
    leaked = DataSplits.from_arrays(x, y, *_blobs(32, 1), xt, yt)
    leaked.info["indices"] = {"train": list(range(96)), "val": list(range(96, 128)), "test": list(range(128, 160))}
    with pytest.warns(PeerdistillWarning, match=r"^1 of 32 test inputs are identical to training inputs \('row 133' = "
                                                r"'row 40'\): their figures are not held out; remove their rows from "
                                                r"the arrays "
                                                r"\(data.exclude leaves image files out, not rows\)$"):
        Trainer(Cohort.from_modules([SmallCNN(1, 3, width=4), SmallCNN(1, 3, width=4)]), KnowledgeGraph([]),
                ClassificationTask(3), train=TrainSpec(epochs=1), progress=False).fit(leaked)
    # data read from files: data.exclude leaves them out, a ready list given
    leaked.info.pop("indices")
    leaked.info["files"] = {s: [f"{s}/{i}.png" for i in range(n)] for s, n in (("train", 96), ("val", 32), ("test", 32))}
    with pytest.warns(PeerdistillWarning, match=r"^1 of 32 test inputs are identical to training inputs \('test/5.png' = "
                                                r"'train/40.png'\): their figures are not held out; leave them out of "
                                                r"the data: list them in data.exclude "
                                                r"\('data.exclude=\[\"test/5.png\"\]' on the command line\)$"):
        Trainer(Cohort.from_modules([SmallCNN(1, 3, width=4), SmallCNN(1, 3, width=4)]), KnowledgeGraph([]),
                ClassificationTask(3), train=TrainSpec(epochs=1), progress=False).fit(leaked)


def test_the_exclude_list_goes_into_the_runs_folder_once_the_run_holds_it_never_in_a_dry_run(tmp_path, monkeypatch):
    """Review 56l: a dry run over a finished run (--overwrite) replaced its data-exclude-suggested.yaml, then said
    nothing was written."""
    import warnings

    from peerdistill.engine import preflight
    from tests.conftest import _blobs

    folders = []
    monkeypatch.setattr(preflight, "exclude_example", lambda names, given, folder=None: folders.append(folder) or "x")
    (x, y), (xv, yv), (xt, yt) = (_blobs(n, s) for n, s in ((96, 0), (32, 1), (32, 2)))
    xv[:3], yv[:3] = x[10:13], y[10:13]
    data = DataSplits.from_arrays(x, y, xv, yv, xt, yt)
    data.info["files"] = {s: [f"{s}/{i}.png" for i in range(n)] for s, n in (("train", 96), ("val", 32), ("test", 32))}

    def trainer_of(**kw):
        cohort = Cohort.from_modules([SmallCNN(1, 3, width=4), SmallCNN(1, 3, width=4)])
        return Trainer(cohort, KnowledgeGraph([]), ClassificationTask(3), train=TrainSpec(epochs=1),
                       run_dir=tmp_path / "r", progress=False, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer_of().fit(data)
        trainer_of(overwrite=True).check(data)
    assert folders == [tmp_path / "r", None]


def test_settings_for_several_processes_are_recorded_as_ignored_in_one(tiny_data):
    """train.sync_batchnorm and train.find_unused_parameters act under torchrun alone: in one
    process run.json says they were ignored, rather than leave them seemingly applied."""
    t = trainer(make_cohort(), train=FAST.model_copy(update={"sync_batchnorm": True, "find_unused_parameters": True}))
    with pytest.warns(PeerdistillWarning, match="is read only under torchrun"):  # (and said: below)
        t._setup(tiny_data)
    assert t.run_info["sync_batchnorm"] == t.run_info["find_unused_parameters"] == "ignored: a single process"
    t = trainer(make_cohort())
    t._setup(tiny_data)
    assert "sync_batchnorm" not in t.run_info and "find_unused_parameters" not in t.run_info


def test_settings_this_run_never_reads_are_warned_of(tiny_data):
    """Review 53c: not refused, as unread optim keys are (one config runs under torchrun and in
    one process, with compile on and off, to the same results), but said, not only in run.json."""
    import warnings

    from peerdistill.errors import TrainingAdvice

    unread = {"sync_batchnorm": True, "find_unused_parameters": True, "compile_backend": "aot_eager"}
    t = trainer(make_cohort(), train=FAST.model_copy(update=unread))
    with pytest.warns(TrainingAdvice) as said:
        t._setup(tiny_data)
    assert [str(w.message) for w in said if issubclass(w.category, TrainingAdvice)] == [
        f"{what}: it changes nothing here; remove it, or keep it for the runs that read it" for what in (
            "train.sync_batchnorm=true is read only under torchrun (several processes), and this run is one process",
            "train.find_unused_parameters=true is read only under torchrun (several processes), and this run is "
            "one process",
            "train.compile_backend=aot_eager is read only with train.compile=true")]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingAdvice)
        trainer(make_cohort())._setup(tiny_data)  # the defaults: nothing to say


def test_a_second_fit_of_one_trainer_is_refused_once_the_first_has_trained(tiny_data, tmp_path):
    """A notebook cell run twice: the second fit would train on from the first's weights with a
    new optimizer and connectors, and report only its own epochs (review 47c)."""
    from peerdistill.errors import ConfigError

    cohort = make_cohort()
    t = trainer(cohort)
    bad = dataclasses.replace(tiny_data, test=TensorData(torch.zeros(0, 1, 8, 8), torch.zeros(0).long()))
    with pytest.raises(DataError):  # refused before any step: the data can be fixed and fit called again
        t.fit(bad)

    class Damaged(Dataset):  # a training sample that cannot be read: the first batch fails, before any step
        def __len__(self):
            return len(tiny_data.train)

        def __getitem__(self, i):
            reads[0] += 1
            if reads[0] == 2:  # the first batch's second sample
                raise OSError("sample cut short")
            return tiny_data.train[i]

    reads = [0]
    with pytest.raises(OSError, match="sample cut short"):  # (review 47f: this too was refused as trained)
        t.fit(dataclasses.replace(tiny_data, train=Damaged()))
    t.fit(tiny_data)
    weights = {k: v.clone() for k, v in cohort.members[1].module.state_dict().items()}
    with pytest.raises(ConfigError, match=r"^this Trainer has trained its models already: a second fit would train "
                                          r"them on from the first's weights"):
        t.fit(tiny_data)
    assert all(torch.equal(v, cohort.members[1].module.state_dict()[k]) for k, v in weights.items())
    trainer(cohort).fit(tiny_data)  # on purpose: a new Trainer over the trained models


@pytest.mark.parametrize("raised, waited", [(KeyboardInterrupt, 0.0), (RuntimeError, 30.0)])
def test_an_interrupted_process_leaves_its_group_without_waiting_for_its_peers(tiny_data, monkeypatch, raised, waited):
    """Under torchrun Ctrl-C reaches every process, but one inside a collective (DDP's backward)
    takes it only once a peer leaves: a peer that waited for it to come and leave too hung both
    for 30 s until torchrun killed them (review 49c, 4 of 8 tries). Other errors still meet."""
    from peerdistill.engine import distributed

    seen = []
    monkeypatch.setattr(distributed, "abandon", lambda world, wait_s=30.0: seen.append(wait_s))

    def stop(epoch, row):
        raise raised("stopped")

    with pytest.raises(raised):
        trainer(make_cohort(), callbacks=[stop]).fit(tiny_data)
    assert seen == [waited]
