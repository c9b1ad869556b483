"""Learning-rate warm-up, gradient clipping, early stopping and micro-batches, against hand-computed
values or the plain path."""

import csv
import math
import re
import warnings

import pytest
import torch

from torch import nn

from peerdistill import Cohort, Edge, KnowledgeGraph, OptimSpec, Trainer, TrainSpec
from peerdistill.engine import seed_everything
from peerdistill.tasks import ClassificationTask
from peerdistill.config import load_config
from peerdistill.json_files import read_json
from peerdistill.engine.optim import build_optimizer, build_scheduler
from peerdistill.errors import ConfigError, PeerdistillWarning

from .test_trainer import make_cohort, trainer


def _lrs(spec: OptimSpec, epochs: int, state_from: int | None = None) -> list[float]:
    """The learning rate of each epoch; with ``state_from``, the scheduler and optimizer are
    rebuilt from their state dicts after that many epochs, as a resumed run rebuilds them."""
    model = torch.nn.Linear(2, 1)
    optimizer = build_optimizer(model, spec)
    scheduler = build_scheduler(optimizer, spec, epochs)
    seen = []
    for epoch in range(epochs):
        if epoch == state_from:
            saved = (optimizer.state_dict(), scheduler.state_dict())
            optimizer = build_optimizer(model, spec)
            scheduler = build_scheduler(optimizer, spec, epochs)
            optimizer.load_state_dict(saved[0])
            scheduler.load_state_dict(saved[1])
        seen.append(optimizer.param_groups[0]["lr"])
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("scheduler", ["cosine", "step", "none"])
def test_warmup_rises_linearly_then_the_schedule_runs_over_the_remaining_epochs(scheduler):
    lr, warmup, epochs = 0.1, 3, 10
    spec = OptimSpec(lr=lr, warmup_epochs=warmup, scheduler=scheduler, step_size=2, gamma=0.5)
    after = {
        "cosine": lambda k: lr * (1 + math.cos(math.pi * k / (epochs - warmup))) / 2,
        "step": lambda k: lr * 0.5 ** (k // 2),
        "none": lambda k: lr,
    }[scheduler]
    expected = [lr * (e + 1) / (warmup + 1) for e in range(warmup)] + [after(k) for k in range(epochs - warmup)]
    assert _lrs(spec, epochs) == pytest.approx(expected, rel=1e-9)
    for resumed_at in (2, 3, 6):  # inside the warm-up, at its end, inside the schedule
        assert _lrs(spec, epochs, state_from=resumed_at) == pytest.approx(expected, rel=1e-9)


def test_no_warmup_keeps_the_plain_schedule():
    scheduler = build_scheduler(build_optimizer(torch.nn.Linear(2, 1), OptimSpec()), OptimSpec(), 5)
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max == 5


def test_a_warmup_as_long_as_the_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"optim.warmup_epochs \(3\) must be fewer than train.epochs \(3\)"):
        load_config(None, ["optim.warmup_epochs=3", "train.epochs=3"])
    with pytest.raises(ConfigError, match="fewer than train.epochs"):
        build_scheduler(build_optimizer(torch.nn.Linear(2, 1), OptimSpec()), OptimSpec(warmup_epochs=4), 4)


def test_a_runs_learning_rates_follow_the_warmup(tiny_data):
    t = trainer(make_cohort(), optim=OptimSpec(lr=0.01, warmup_epochs=2, scheduler="none"),
                train=TrainSpec(epochs=3, batch_size=32))
    history = t.fit(tiny_data).history
    assert [row["lr/student1"] for row in history] == pytest.approx([0.01 / 3, 0.02 / 3, 0.01])


def _gradients(t) -> dict[str, list[torch.Tensor]]:
    return {name: [p.grad.clone() for g in o.param_groups for p in g["params"]] for name, o in t.optimizers.items()}


@pytest.mark.parametrize("fuse", [False, True])
def test_each_models_gradient_is_clipped_to_the_norm_on_its_own(tiny_data, fuse):
    """Clipped gradients are the unclipped ones times min(1, c / (norm + 1e-6)) with each model's
    own norm (torch's rule), also when the students run packed; the logged norms are those
    before clipping."""
    free = trainer(make_cohort(), optim=OptimSpec(lr=1e-3))
    free._setup(tiny_data)
    free.cohort.train()  # as each epoch starts
    x, y = next(iter(free.train_batches))
    free.step(x, y)
    unclipped = _gradients(free)
    norms = {name: math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads)) for name, grads in unclipped.items()}
    assert free.grad_norms == {}  # nothing clipped, nothing measured
    # Between the smallest and the largest norm: one model is clipped, another is not.
    limit = math.sqrt(min(norms.values()) * max(norms.values()))
    clipped = trainer(make_cohort(), optim=OptimSpec(lr=1e-3, clip_grad_norm=limit),
                      train=TrainSpec(epochs=2, batch_size=32, fuse_students=fuse))
    clipped._setup(tiny_data)
    # the packed trial step leaves the students in the mode the probe left them in (eval)
    assert not any(sub.training for m in clipped.cohort.members for sub in m.module.modules())
    clipped.cohort.train()
    assert bool(clipped.groups) is fuse
    clipped.step(x, y)
    for name, grads in _gradients(clipped).items():
        factor = min(1.0, limit / (norms[name] + 1e-6))
        for got, free_grad in zip(grads, unclipped[name]):
            torch.testing.assert_close(got, free_grad * factor, rtol=1e-4, atol=1e-7)
        assert float(clipped.grad_norms[name]) == pytest.approx(norms[name], rel=1e-5)
    assert {min(1.0, limit / n) < 1 for n in norms.values()} == {True, False}


def test_a_run_with_clipping_logs_each_models_mean_gradient_norm(tiny_data):
    seen = []
    t = trainer(make_cohort(), optim=OptimSpec(clip_grad_norm=0.5), train=TrainSpec(epochs=1, batch_size=32))
    step = t.step

    def recorded_step(x, y, ramp):
        terms = step(x, y, ramp)
        seen.append({name: float(norm) for name, norm in t.grad_norms.items()})
        return terms

    t.step = recorded_step
    row = t.fit(tiny_data).history[0]
    for name in ("teacher", "student1", "student2"):
        assert row[f"train/grad_norm/{name}"] == pytest.approx(sum(s[name] for s in seen) / len(seen), rel=1e-6)


def _scripted(t, scores: list[float], metric: str = "accuracy") -> None:
    """The validation monitor (ensemble/``metric``) reads ``scores`` one epoch after another."""
    evaluate = t._evaluate

    def scripted(batches, where, *shown):
        result = evaluate(batches, where, *shown)
        if where.startswith("the validation split"):
            result["ensemble"][metric] = scores.pop(0)
        return result

    t._evaluate = scripted


def test_training_stops_once_the_monitor_has_not_improved_for_patience_epochs(tiny_data, tmp_path):
    t = trainer(make_cohort(), train=TrainSpec(epochs=8, batch_size=32, patience=2), run_dir=tmp_path / "run")
    _scripted(t, [0.5, 0.7, 0.6, 0.7, 0.9, 0.9, 0.9, 0.9])  # a tie is no improvement
    result = t.fit(tiny_data)
    assert len(result.history) == 4 and result.best_epoch == 1 and result.stopped_early
    assert result.val_at_best["ensemble"]["accuracy"] == 0.7
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert (metrics["status"], metrics["best_epoch"], metrics["last_epoch"], metrics["stopped_early"]) == (
        "complete", 2, 4, True)


def test_a_choice_of_epoch_worth_little_is_kept_in_metrics_json_as_an_ending_warning(tiny_data, tmp_path):
    """A monitor that never moved (or kept weights that give every image one class, said first)."""
    t = trainer(make_cohort(), train=TrainSpec(epochs=3, batch_size=32), run_dir=tmp_path / "run")
    _scripted(t, [0.5, 0.5, 0.5])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = t.fit(tiny_data)
    said = [str(w.message) for w in caught if issubclass(w.category, PeerdistillWarning)]
    assert len(result.ending_warnings) == 1 and result.ending_warnings[0] in said
    assert "no epoch was better than the first" in result.ending_warnings[0] or \
        "for every validation image" in result.ending_warnings[0]
    assert read_json(tmp_path / "run" / "metrics.json")["ending_warnings"] == result.ending_warnings
    moved = trainer(make_cohort(), train=TrainSpec(epochs=2, batch_size=32), run_dir=tmp_path / "moved")
    _scripted(moved, [0.5, 0.6])
    kept = moved.fit(tiny_data).ending_warnings
    assert not any("no epoch was better" in w for w in kept)
    assert read_json(tmp_path / "moved" / "metrics.json").get("ending_warnings", []) == kept  # (none: no key)


def test_patience_reaching_the_last_epoch_is_not_an_early_stop(tiny_data):
    t = trainer(make_cohort(), train=TrainSpec(epochs=3, batch_size=32, patience=2))
    _scripted(t, [0.5, 0.4, 0.4])
    result = t.fit(tiny_data)
    assert len(result.history) == 3 and result.best_epoch == 0 and not result.stopped_early


def test_a_monitor_never_finite_stops_after_patience_epochs_with_the_last_standing_in(tiny_data, tmp_path):
    t = trainer(make_cohort(), train=TrainSpec(epochs=6, batch_size=32, patience=2), run_dir=tmp_path / "run")
    _scripted(t, [math.nan] * 6)
    with pytest.warns(PeerdistillWarning, match=r"val ensemble/accuracy was n/a in every epoch .* so no epoch was "
                                                r"chosen by it: the last epoch's weights stand in as the best"):
        result = t.fit(tiny_data)
    assert len(result.history) == 2 and result.best_epoch == 1 and result.stopped_early and result.monitor_undefined
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["monitor_undefined"] is True
    # kept where the run's report and a comparison read it, not on the console alone
    assert len(result.ending_warnings) == 1 and metrics["ending_warnings"] == result.ending_warnings
    assert result.ending_warnings[0].startswith("val ensemble/accuracy was n/a in every epoch")
    finite = trainer(make_cohort(), train=TrainSpec(epochs=2, batch_size=32))
    _scripted(finite, [math.nan, 0.5])  # finite once: chosen by it
    assert not finite.fit(tiny_data).monitor_undefined


def test_a_run_killed_after_it_stopped_early_resumes_to_its_final_evaluation_only(tiny_data, tmp_path):
    run = tmp_path / "run"
    first = trainer(make_cohort(), train=TrainSpec(epochs=8, batch_size=32, patience=1), run_dir=run)
    _scripted(first, [0.8, 0.7])
    evaluate = first._evaluate

    def killed_at_test(batches, where, *shown):
        if where.startswith("the test split"):
            raise KeyboardInterrupt
        return evaluate(batches, where, *shown)

    first._evaluate = killed_at_test
    with pytest.raises(KeyboardInterrupt):
        first.fit(tiny_data)
    assert read_json(run / "metrics.json")["status"] == "stopped"

    again = trainer(make_cohort(), train=TrainSpec(epochs=8, batch_size=32, patience=1), run_dir=run)
    again.step = lambda *a, **k: pytest.fail("a run that stopped early trained again after its resume")
    result = again.fit(tiny_data, resume=True)
    assert len(result.history) == 2 and result.best_epoch == 0 and result.stopped_early
    assert read_json(run / "metrics.json")["stopped_early"] is True
    assert read_json(run / "run.json")["resumed_at"][-1]["final_evaluation"] is True


def _norm_free_net(width: int) -> nn.Module:
    """No batch statistics: a batch in parts is then the same arithmetic as the whole batch."""
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 3))


def _micro_trainer(micro, nets=None):
    seed_everything(0)
    nets = nets or {"teacher": _norm_free_net(8), "student1": _norm_free_net(4), "student2": _norm_free_net(4)}
    cohort = Cohort.from_modules([nets["student1"], nets["student2"]], teacher=nets["teacher"])
    edges = [Edge("teacher", "student1", "kl", 1.0, 4.0), Edge("student2", "student1"), Edge("student1", "student2"),
             Edge("student1", "student2", "hint", 0.5, source_layer="2", target_layer="2")]  # same width: no connector
    return Trainer(cohort, KnowledgeGraph(edges), ClassificationTask(3), device="cpu", progress=False,
                   optim=OptimSpec(lr=1e-3), train=TrainSpec(epochs=1, batch_size=32, micro_batch_size=micro))


@pytest.mark.parametrize("micro", [10, 32, 64])  # parts of 8 (near-equal, none of 2); one part; one part
def test_a_batch_in_micro_batches_gives_the_whole_batchs_terms_and_gradients(tiny_data, micro):
    whole, parts = _micro_trainer(None), _micro_trainer(micro)
    for t in (whole, parts):
        t._setup(tiny_data)
        t.cohort.train()
    x, y = next(iter(whole.train_batches))
    expected, got = whole.step(x, y), parts.step(x, y)
    assert got.keys() == expected.keys() and "student2/hint<-student1[2<-2]" in got
    for name in expected:
        torch.testing.assert_close(got[name], expected[name].float(), rtol=1e-5, atol=1e-7)
    for name in whole.optimizers:
        for a, b in zip(_gradients(parts)[name], _gradients(whole)[name]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _naive_sp(learner, target):
    """Tung & Mori's term written out: row-normalised batch Gram matrices, squared difference / b^2."""
    def gram(f):
        g = f.flatten(1).double() @ f.flatten(1).double().T
        return g / g.norm(dim=1, keepdim=True)
    return ((gram(target) - gram(learner)) ** 2).sum() / len(learner) ** 2


def test_sp_in_micro_batches_is_each_parts_own_term_and_is_warned_of(tiny_data):
    """Similarity-preserving KD compares the samples of a batch: in parts it is the parts'
    terms averaged, not the whole batch's (measured 2x at parts of 2, review 49a), and said."""
    def make(micro):
        seed_everything(0)
        cohort = Cohort.from_modules([_norm_free_net(4)], teacher=_norm_free_net(8))
        return Trainer(cohort, KnowledgeGraph([Edge("teacher", "student1", "sp", 1.0, source_layer="2",
                                                    target_layer="2")]),
                       ClassificationTask(3), device="cpu", progress=False, optim=OptimSpec(lr=1e-3),
                       train=TrainSpec(epochs=1, batch_size=8, micro_batch_size=micro))

    whole = make(None)
    whole._setup(tiny_data)
    parts = make(2)
    parts._setup(tiny_data)
    said = parts._warned_about_training(tiny_data)  # (what run.json's training_warnings keep)
    assert any(re.match(r"similarity-preserving KD \(student1/sp<-teacher\[2<-2\]\) compares the samples of a batch "
                        r"with each other, but train.micro_batch_size 2 computes it within parts of at most 2 samples: "
                        r"another term", line) for line in said), said
    x, y = tiny_data.train.x[:8], tiny_data.train.y[:8]
    features = {}
    for name in ("teacher", "student1"):
        module = whole.cohort[name].module
        module[2].register_forward_hook(lambda m, a, out, name=name: features.__setitem__(name, out.detach()))
        module(x)
    expected_whole = _naive_sp(features["student1"], features["teacher"])
    expected_parts = sum(_naive_sp(features["student1"][i:i + 2], features["teacher"][i:i + 2]) for i in
                         range(0, 8, 2)) / 4
    name = "student1/sp<-teacher[2<-2]"
    got_whole, got_parts = whole.step(x, y)[name], parts.step(x, y)[name]
    torch.testing.assert_close(got_whole.double(), expected_whole, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(got_parts.double(), expected_parts, rtol=1e-5, atol=1e-8)
    assert got_parts > 1.2 * got_whole
    one_part = make(8)
    one_part._setup(tiny_data)
    assert not any("similarity-preserving" in line for line in one_part._warned_about_training(tiny_data))


def test_each_micro_batch_is_a_batch_to_batchnorm(tiny_data):
    t = trainer(make_cohort(), train=TrainSpec(epochs=1, batch_size=32, micro_batch_size=10))
    t._setup(tiny_data)
    t.cohort.train()
    x, y = next(iter(t.train_batches))
    t.step(x, y)
    counts = {int(b) for m in t.cohort.trainable for n, b in m.module.named_buffers() if n.endswith("num_batches_tracked")}
    assert counts == {4}  # 32 samples in near-equal parts of at most 10: 8, 8, 8, 8


def test_a_batch_is_cut_into_near_equal_parts(tiny_data):
    """33 samples in parts of at most 16: 11, 11, 11 (not 16, 16 and a stray 1, on which
    BatchNorm cannot train)."""
    t = trainer(make_cohort(), train=TrainSpec(epochs=1, batch_size=33, micro_batch_size=16))
    t._setup(tiny_data)
    t.cohort.train()
    sizes = []
    t.cohort["student1"].module.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    x, y = tiny_data.train.x[:33], tiny_data.train.y[:33]
    t.step(x, y)
    assert sizes == [11, 11, 11]


@pytest.mark.parametrize("micro, batch", [(2, 33), (1, 5)])
def test_batchnorm_models_never_get_a_part_of_one_sample(tiny_data, micro, batch):
    t = trainer(make_cohort(), train=TrainSpec(epochs=1, batch_size=batch, micro_batch_size=micro))
    t._setup(tiny_data)
    t.cohort.train()
    sizes = []
    t.cohort["student1"].module.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    t.step(tiny_data.train.x[:batch], tiny_data.train.y[:batch])  # BatchNorm would raise on a part of one
    assert sum(sizes) == batch and min(sizes) == 2 and max(sizes) == 3


def test_models_without_batchnorm_may_take_parts_of_one_sample(tiny_data):
    t = _micro_trainer(1)
    t._setup(tiny_data)
    sizes = []
    t.cohort["student1"].module.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    t.step(tiny_data.train.x[:5], tiny_data.train.y[:5])
    assert sizes == [1] * 5


def test_a_models_connectors_are_clipped_with_it_in_one_norm(tiny_data):
    """A hint edge's connector is trained by its learner's optimizer: the learner's norm covers the
    connector's gradients too, and they are scaled by the same factor as the model's."""
    from peerdistill import preset_edges

    def make(clip):
        cohort = make_cohort()
        edges = preset_edges("kd+ml", "teacher", ["student1", "student2"]) + [
            Edge("teacher", "student1", "hint", 1.0, source_layer="features.0", target_layer="features.0")]  # 8 vs 4
        t = Trainer(cohort, KnowledgeGraph(edges), ClassificationTask(3), device="cpu", progress=False,
                    optim=OptimSpec(lr=1e-3, clip_grad_norm=clip), train=TrainSpec(epochs=2, batch_size=32))
        t._setup(tiny_data)
        t.cohort.train()
        return t

    free = make(None)
    connector = [p for p in free.connectors.parameters()]
    learner = {id(p) for g in free.optimizers["student1"].param_groups for p in g["params"]}
    assert connector and {id(p) for p in connector} <= learner
    x, y = next(iter(free.train_batches))
    free.step(x, y)
    unclipped = _gradients(free)["student1"]
    norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in unclipped))
    own = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in free.cohort["student1"].module.parameters()))
    assert norm > own * (1 + 1e-4)  # the connector's gradient counts
    clipped = make(norm / 2)
    clipped.step(x, y)
    assert float(clipped.grad_norms["student1"]) == pytest.approx(norm, rel=1e-5)
    factor = (norm / 2) / (norm + 1e-6)
    for got, free_grad in zip(_gradients(clipped)["student1"], unclipped):
        torch.testing.assert_close(got, free_grad * factor, rtol=1e-4, atol=1e-7)


def test_a_calibration_monitor_picks_the_epoch_with_the_lowest_error(tiny_data):
    t = trainer(make_cohort(), train=TrainSpec(epochs=3, batch_size=32, monitor="ensemble/ece"))
    _scripted(t, [0.3, 0.1, 0.2], "ece")
    result = t.fit(tiny_data)
    assert result.best_epoch == 1 and result.val_at_best["ensemble"]["ece"] == 0.1


def test_a_best_epoch_that_is_the_last_one_run_is_tested_once(tiny_data):
    """Stopped early with the last epoch standing in: its test scores are the last ones, not a second
    evaluation of the same weights."""
    t = trainer(make_cohort(), train=TrainSpec(epochs=6, batch_size=32, patience=2))
    _scripted(t, [math.nan] * 6)
    tested = []
    evaluate = t._evaluate

    def recorded(batches, where, *shown):
        if where.startswith("the test split"):
            tested.append(where)
        return evaluate(batches, where, *shown)

    t._evaluate = recorded
    result = t.fit(tiny_data)
    assert result.stopped_early and result.best_epoch == len(result.history) - 1 == 1
    assert tested == ["the test split after the last epoch"] and result.test_at_best == result.test_at_last


def test_a_weight_average_follows_the_formula_with_its_warm_up():
    from peerdistill.engine.averaging import WeightAverage

    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    average = WeightAverage({"m": model}, decay=0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for t in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        model(torch.randn(4, 2))  # moves the running statistics and the batch counter
        average.update()
        d = min(0.9, (1 + t) / (10 + t))
        for k, v in model.state_dict().items():
            expected[k] = v.clone() if not v.is_floating_point() else d * expected[k] + (1 - d) * v
    for k, v in average.average["m"].items():
        torch.testing.assert_close(v, expected[k])
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with average.swapped_in():
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, expected[k])
    for k, v in model.state_dict().items():
        assert torch.equal(v, live[k])  # the live weights are back, exactly


def test_the_models_a_run_ships_under_ema_are_the_averages_of_its_live_weights(tiny_data, tmp_path):
    """Averaging never changes training: a run without it follows the same weights, from which
    the average is computed by hand and compared with what the run with it saved."""
    from peerdistill.engine import load_weights

    def run(ema, record=None):
        t = trainer(make_cohort(), train=TrainSpec(epochs=2, batch_size=32, ema_decay=ema),
                    run_dir=tmp_path / f"ema{ema}")
        _scripted(t, [0.5, 0.6])  # the last epoch is the best
        if record is not None:
            step = t.step

            def recorded(x, y, ramp):
                terms = step(x, y, ramp)
                record.append({k: v.clone() for k, v in t.cohort["student1"].module.state_dict().items()})
                return terms

            t.step = recorded
        return t, t.fit(tiny_data)

    trajectory = []
    start = {k: v.clone() for k, v in make_cohort()["student1"].module.state_dict().items()}
    run(None, trajectory)
    averaged, result = run(0.8)
    expected = dict(start)
    for t, live in enumerate(trajectory):
        d = min(0.8, (1 + t) / (10 + t))
        expected = {k: (d * expected[k] + (1 - d) * v) if v.is_floating_point() else v for k, v in live.items()}
    shipped = make_cohort()["student1"].module
    load_weights(shipped, tmp_path / "ema0.8" / "models" / "student1.safetensors")
    for k, v in shipped.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6)
        if v.is_floating_point() and k.endswith("weight"):
            assert not torch.allclose(v, trajectory[-1][k])  # not the live weights
    # the models in memory after fit are the averages too, and the test figures are theirs
    in_memory = averaged.cohort["student1"].module
    for k, v in in_memory.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6)
    shipped.eval()
    with torch.no_grad():
        by_hand = (shipped(tiny_data.test.x).argmax(1) == tiny_data.test.y).float().mean().item()
    assert result.test_at_last["student1"]["accuracy"] == pytest.approx(by_hand)


def test_a_buffer_assigned_anew_each_step_is_averaged_too():
    """A model may keep a statistic by assigning a new tensor (self.mu = ...), not in place."""
    from peerdistill.engine.averaging import WeightAverage

    class Running(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mu", torch.zeros(2))

        def forward(self, x):
            self.mu = 0.5 * self.mu + 0.5 * x.mean(dim=0)
            return x

    model = Running()
    average = WeightAverage({"m": model}, decay=0.9)
    expected = torch.zeros(2)
    for t in range(3):
        model(torch.full((4, 2), float(t + 1)))
        average.update()
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * model.mu
    torch.testing.assert_close(average.average["m"]["mu"], expected)
    live = model.mu.clone()
    with average.swapped_in():
        torch.testing.assert_close(model.mu, expected)
    assert torch.equal(model.mu, live)


def test_a_models_own_learning_rate_follows_the_warmup_and_schedule(tiny_data):
    """A member's lr replaces optim.lr for that model alone: warm-up factor (e + 1) / (W + 1), then
    cosine over the other epochs, lr (1 + cos(pi k / 2)) / 2, written out for 0.05 and 0.003."""
    cohort = make_cohort()
    cohort["student1"].lr = 0.05
    t = trainer(cohort, optim=OptimSpec(lr=0.003, warmup_epochs=1), train=TrainSpec(epochs=3, batch_size=32))
    history = t.fit(tiny_data).history
    for name, lr in (("student1", 0.05), ("student2", 0.003), ("teacher", 0.003)):
        expected = [lr / 2, lr * (1 + math.cos(0)) / 2, lr * (1 + math.cos(math.pi / 2)) / 2]
        assert [row[f"lr/{name}"] for row in history] == pytest.approx(expected, rel=1e-9), name


def _recording(t, kill_before: int | None = None) -> list[dict]:
    """Wraps ``t.step``: each step's returned terms and gradient norms as floats, appended to the
    list returned; with ``kill_before``, a KeyboardInterrupt instead of that step (counted from 0)."""
    seen, step = [], t.step

    def recorded(x, y, ramp):
        if kill_before is not None and len(seen) == kill_before:
            raise KeyboardInterrupt
        terms = step(x, y, ramp)
        seen.append({"terms": {k: float(v) for k, v in terms.items()},
                     "norms": {k: float(v) for k, v in t.grad_norms.items()}})
        return terms

    t.step = recorded
    return seen


class _NaNOnFirstStepOfEachEpoch(nn.Module):
    """A small CNN whose first training forward of every epoch (7 steps: 240 samples in batches
    of 32, the last dropped) is NaN."""

    def __init__(self):
        super().__init__()
        from peerdistill.models import SmallCNN

        self.net, self.calls = SmallCNN(1, 3, width=4, depth=1), 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls % 7 == 1:
                x = x * float("nan")
        return self.net(x)


def test_each_epochs_loss_means_are_over_its_kept_steps_and_its_skips_are_its_own(tiny_data):
    """With one step of each epoch skipped for a NaN, each row counts that epoch's skip (1, not a
    running total) and each term's mean is the sum over the 6 kept steps / 6, by hand from the
    terms each step returned."""
    from peerdistill.models import SmallCNN

    seed_everything(0)
    cohort = Cohort.from_modules([SmallCNN(1, 3, width=4, depth=1), _NaNOnFirstStepOfEachEpoch()],
                                 teacher=SmallCNN(1, 3, width=8, depth=2))
    t = trainer(cohort, train=TrainSpec(epochs=2, batch_size=32, nonfinite="skip"))
    seen = _recording(t)
    with pytest.warns(UserWarning, match="1 of 7 training steps skipped"):
        history = t.fit(tiny_data).history
    assert [row["skipped_steps"] for row in history] == [1, 1]
    for epoch, row in enumerate(history):
        kept = [s["terms"] for s in seen[7 * epoch:7 * epoch + 7] if s["terms"]]
        assert len(kept) == 6
        for name in kept[0]:
            assert row[f"train/loss/{name}"] == pytest.approx(sum(k[name] for k in kept) / 6, rel=1e-6), name


def test_an_epoch_resumed_from_a_step_checkpoint_logs_the_means_over_all_its_steps(tiny_data, tmp_path):
    """Checkpoints every 2 steps, killed before step 5 of 7 of epoch 1, resumed: the epoch's loss
    and gradient-norm means are over its 7 steps, the 4 of the first session (whose sums the
    checkpoint after step 4 holds) and the 3 trained after the resume."""
    spec, optim = TrainSpec(epochs=2, batch_size=32, checkpoint_every_steps=2), OptimSpec(clip_grad_norm=0.5)
    first = trainer(make_cohort(), train=spec, optim=optim, run_dir=tmp_path / "run")
    before = _recording(first, kill_before=4)
    with pytest.raises(KeyboardInterrupt):
        first.fit(tiny_data)
    again = trainer(make_cohort(), train=spec, optim=optim, run_dir=tmp_path / "run")
    after = _recording(again)
    row = again.fit(tiny_data, resume=True).history[0]
    steps = before + after[:3]  # the checkpoint after step 4 (index 3) holds the sums of steps 0-3
    assert len(steps) == 7
    for name in ("teacher", "student1", "student2"):
        assert row[f"train/grad_norm/{name}"] == pytest.approx(sum(s["norms"][name] for s in steps) / 7, rel=1e-6)
    for name in steps[0]["terms"]:
        assert row[f"train/loss/{name}"] == pytest.approx(sum(s["terms"][name] for s in steps) / 7, rel=1e-6)


def test_a_running_runs_metrics_file_counts_its_best_epoch_from_one(tiny_data, tmp_path):
    run = tmp_path / "run"
    t = trainer(make_cohort(), train=TrainSpec(epochs=2, batch_size=32), run_dir=run)
    _scripted(t, [0.5, 0.4])
    seen = []
    t.callbacks.append(lambda epoch, row: seen.append(read_json(run / "metrics.json")["best_epoch"]))
    t.fit(tiny_data)
    assert seen == [1, 1]  # epoch 1 is the best after either, counted from 1 as the history rows are


def test_a_resumed_run_remembers_the_best_score_before_the_kill(tiny_data, tmp_path):
    """Scores 0.9, 0.5, killed, then 0.6: the best of the three is epoch 1's 0.9, not the first
    epoch trained after the resume."""
    spec = TrainSpec(epochs=3, batch_size=32)
    first = trainer(make_cohort(), train=spec, run_dir=tmp_path / "run")
    _scripted(first, [0.9, 0.5])

    def killed_after_the_second_epoch(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    first.callbacks.append(killed_after_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        first.fit(tiny_data)
    again = trainer(make_cohort(), train=spec, run_dir=tmp_path / "run")
    _scripted(again, [0.6])
    result = again.fit(tiny_data, resume=True)
    assert result.best_epoch == 0 and result.val_at_best["ensemble"]["accuracy"] == 0.9


def test_unequal_micro_batches_weigh_by_their_share_of_the_batch(tiny_data):
    """10 samples in parts of at most 4 (4, 3, 3): the terms and gradients of the whole batch of
    10, and the cross-entropy of student 1 as F.cross_entropy over the 10 samples."""
    whole, parts = _micro_trainer(None), _micro_trainer(4)
    for t in (whole, parts):
        t._setup(tiny_data)
        t.cohort.train()
    x, y = tiny_data.train.x[:10], tiny_data.train.y[:10]
    with torch.no_grad():
        by_hand = torch.nn.functional.cross_entropy(parts.cohort["student1"].module(x), y)
    expected, got = whole.step(x, y), parts.step(x, y)
    assert float(got["student1/ce"]) == pytest.approx(float(by_hand), rel=1e-5)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name].float(), rtol=1e-5, atol=1e-7)
    for name in whole.optimizers:
        for a, b in zip(_gradients(parts)[name], _gradients(whole)[name]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("batch", [2, 3])
def test_a_batchnorm_batch_of_two_or_three_is_never_cut(tiny_data, batch):
    """micro_batch_size 1 on a batch of 2 or 3: len // 2 = 1 part, the batch whole."""
    t = trainer(make_cohort(), train=TrainSpec(epochs=1, batch_size=batch, micro_batch_size=1))
    t._setup(tiny_data)
    t.cohort.train()
    sizes = []
    t.cohort["student1"].module.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    t.step(tiny_data.train.x[:batch], tiny_data.train.y[:batch])
    assert sizes == [batch]


def test_each_step_applies_its_own_batchs_gradients_only(tiny_data):
    """After a second step, each student's gradient is that of its own loss on the second batch,
    by plain autograd on a copy taken between the steps (no edges: cross-entropy alone)."""
    import copy

    seed_everything(0)
    nets = [_norm_free_net(4), _norm_free_net(4)]
    t = Trainer(Cohort.from_modules(nets), KnowledgeGraph([]), ClassificationTask(3), device="cpu", progress=False,
                optim=OptimSpec(lr=1e-2), train=TrainSpec(epochs=1, batch_size=32))
    t._setup(tiny_data)
    t.cohort.train()
    (x1, y1), (x2, y2) = list(t.train_batches)[:2]
    t.step(x1, y1)
    for member in t.cohort.students:
        twin = copy.deepcopy(member.module)
        torch.nn.functional.cross_entropy(twin(x2), y2).backward()
        member.twin = twin
    t.step(x2, y2)
    for member in t.cohort.students:
        for p, q in zip(member.module.parameters(), member.twin.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW)])
def test_each_model_gets_the_optimizer_and_settings_the_config_names(tiny_data, name, kind):
    spec = OptimSpec(name=name, lr=0.02, momentum=0.8, weight_decay=3e-4)
    t = trainer(make_cohort(), optim=spec)
    t._setup(tiny_data)
    for model, optimizer in t.optimizers.items():
        group = optimizer.param_groups[0]
        assert type(optimizer) is kind, model
        assert (group["lr"], group["weight_decay"]) == (0.02, 3e-4), model
        if name == "sgd":
            assert (group["momentum"], group["nesterov"]) == (0.8, True), model


def test_a_monitor_that_never_moved_is_warned_of():
    """Review 44c: DRIVE's students never predicted a vessel, their ensemble's dice 0 in every
    epoch, and ties keep the first: the first epoch's weights shipped without a word."""
    from peerdistill.engine.selection import flat_monitor

    rows = [{"epoch": e, "val/ensemble/dice": 0.0, "val/teacher/dice": 0.1 * e} for e in (1, 2, 3)]
    said = flat_monitor(rows, "ensemble/dice", "segmentation")
    assert said == ("val ensemble/dice was 0 in every epoch (3): no epoch was better than the first, whose weights are "
                    "kept as the best (and train.patience, if set, stopped the run for it); the models may not have "
                    "learnt (check the learning rate and the data) or may predict one class for every image; monitor "
                    "a figure that moves (train.monitor, e.g. ensemble/auc)")
    assert flat_monitor(rows, "teacher/dice", "segmentation") is None  # it moved
    # under train.val_every the first validated epoch is the one kept (review 45a)
    sparse = [{"epoch": e, **({"val/ensemble/dice": 0.0} if e % 3 == 0 else {})} for e in range(1, 7)]
    assert flat_monitor(sparse, "ensemble/dice", "segmentation").startswith(
        "val ensemble/dice was 0 in every validated epoch (2): no epoch was better than the first validated one "
        "(epoch 3), whose weights are kept as the best")
    assert flat_monitor(rows[:1], "ensemble/dice", "segmentation") is None  # one epoch chooses nothing
    nan = [{**r, "val/ensemble/dice": math.nan} for r in rows]  # never finite: warned of elsewhere
    assert flat_monitor(nan, "ensemble/dice", "segmentation") is None
    assert flat_monitor(rows, "ensemble/auc", "segmentation") is None  # not validated: no value
    perfect = [{"val/ensemble/accuracy": 1.0, "val/ensemble/ece": 0.0}] * 3  # easy data: ties at the best
    assert flat_monitor(perfect, "ensemble/accuracy", "classification") is None
    assert flat_monitor(perfect, "ensemble/ece", "classification") is None


def test_kept_weights_predicting_one_class_are_warned_of():
    """Reviews 44b and 44f: val accuracy stayed flat while the models predicted the majority
    class (PneumoniaMNIST, 74% one class), or every model called every image one class after 5
    steps an epoch (BatchNorm's running statistics lagging), and the weights were kept in
    silence. One class predicted: every other class's precision undefined; two classes or more
    present. Every model is looked at, the cause named by the steps an epoch."""
    from peerdistill.engine.selection import one_class_kept

    nan = math.nan
    names = ["normal", "pneumonia"]
    majority = {"precision_normal": nan, "precision_pneumonia": 0.74, "recall_normal": 0.0, "recall_pneumonia": 1.0}
    learnt = {"precision_normal": 0.8, "precision_pneumonia": 0.9, "recall_normal": 0.7, "recall_pneumonia": 0.95}
    val = {"teacher": majority, "student1": learnt, "student2": majority, "ensemble": learnt}
    said = one_class_kept(val, names, 0, steps_per_epoch=5)
    assert said == ("with the weights kept as the best (epoch 1), teacher and student2 predict 'pneumonia' for every "
                    "validation image, though the split holds other classes: nothing of them was learnt; with 5 "
                    "optimizer steps an epoch, BatchNorm's running statistics (which evaluation uses) may lag the "
                    "weights: a smaller train.batch_size or more epochs")
    assert one_class_kept({"ensemble": majority}, names, 3, steps_per_epoch=200).endswith(
        "ensemble predicts 'pneumonia' for every validation image, though the split holds other classes: nothing of "
        "them was learnt; an imbalanced split? monitor ensemble/balanced_accuracy or ensemble/auc (train.monitor), "
        "weigh the classes (data.class_weights=true) or train longer")
    # review 45a: models without BatchNorm (a linear probe, a ViT) are not sent to change the batch size
    three = one_class_kept({"teacher": majority, "student1": majority, "ensemble": majority}, names, 0, 5,
                           batch_norm=False)
    assert three.startswith("with the weights kept as the best (epoch 1), teacher, student1 and ensemble predict ")
    assert three.endswith("nothing of them was learnt; an imbalanced split? monitor ensemble/balanced_accuracy or "
                          "ensemble/auc (train.monitor), weigh the classes (data.class_weights=true) or train longer")
    # a run built in Python has no data.class_weights: the task's weights are named (review 55a)
    assert one_class_kept({"ensemble": majority}, names, 3, 200, from_python=True).endswith(
        "weigh the classes (ClassificationTask(K, class_weights=balanced_class_weights(train_labels, K)), from "
        "peerdistill.tasks) or train longer")
    # review 56b: a model ranking the images well learnt the ranking; its decision is what fails, and the monitor in
    # use is not advised again
    ranks = {**majority, "auc": 0.9766}
    assert one_class_kept({"student1": ranks, "ensemble": ranks}, names, 0, 200, monitor="student1/auc").endswith(
        "though the split holds other classes: student1 and ensemble rank the images all the same (val AUC 0.977, "
        "0.977): the ranking was learnt, the decision at the larger probability was not; an imbalanced split? weigh "
        "the classes (data.class_weights=true), or call the classes at a threshold chosen on the validation split "
        "(eval, export and predict take --operating-point, e.g. youden)")
    assert one_class_kept({"student1": ranks, "ensemble": {**majority, "auc": 0.6}}, names, 0, 200,
                          monitor="ensemble/auc").endswith(
        "student1 ranks the images all the same (val AUC 0.977): the ranking was learnt, the decision at the larger "
        "probability was not; nothing of ensemble was learnt; an imbalanced split? monitor ensemble/balanced_accuracy "
        "(train.monitor), weigh the classes (data.class_weights=true) or train longer")
    three_classes = {**majority, "precision_other": nan, "recall_other": 0.0, "auc": 0.95}
    assert "nothing of them was learnt" in one_class_kept({"ensemble": three_classes}, [*names, "other"], 0, 200)
    from peerdistill.tasks import balanced_class_weights  # (where it says)

    assert balanced_class_weights(torch.tensor([0, 0, 0, 1]), 2).tolist() == pytest.approx([4 / 6, 4 / 2])
    assert one_class_kept({"ensemble": learnt}, names, 0, 5) is None
    assert one_class_kept({"ensemble": {**majority, "recall_normal": nan}}, names, 0, 5) is None  # one class present
    assert one_class_kept({"ensemble": {"precision_pneumonia": 0.7}}, names, 0, 5) is None  # figures not kept
    # a frozen teacher was not trained by the run: no training advice for it (review 50b)
    frozen = "frozen teacher predicts 'pneumonia' for every validation image: this run did not train it, so check the " \
             "weights given to it (and any BatchNorm running statistics, which evaluation uses)"
    assert one_class_kept({"teacher": majority, "ensemble": learnt}, names, 0, 5, frozen=("teacher",)) == frozen
    both = one_class_kept(val, names, 0, 5, frozen=("teacher",))
    assert both.startswith("with the weights kept as the best (epoch 1), student2 predicts 'pneumonia' for every ")
    assert both.endswith(f"a smaller train.batch_size or more epochs. And {frozen}")


def test_a_fit_that_learnt_nothing_says_so():
    """The two warnings reach the user from a fit. A learning rate of 1e-12 leaves models
    without BatchNorm (whose running statistics would move) predicting in every epoch as in the
    first: random linear models give the classes in turn (a flat monitor); SmallCNNs here all
    the same class (weights predicting one class, said instead)."""
    from tests.conftest import _blobs
    from peerdistill import DataSplits

    (x, y), (xv, yv), (xt, yt) = (_blobs(n, s) for n, s in ((96, 0), (32, 1), (32, 2)))
    data = DataSplits.from_arrays(x, y, xv, yv, xt, yt)
    seed_everything(0)
    linear = Cohort.from_modules([nn.Sequential(nn.Flatten(), nn.Linear(64, 3)) for _ in range(2)])
    flat = Trainer(linear, KnowledgeGraph([]), ClassificationTask(3), train=TrainSpec(epochs=3, batch_size=32),
                   optim=OptimSpec(lr=1e-12), progress=False)
    with pytest.warns(PeerdistillWarning, match=r"^val ensemble/accuracy was \S+ in every epoch \(3\): no epoch was "
                                                r"better than the first"):
        flat.fit(data)
    seed_everything(0)
    one_class = trainer(make_cohort(), train=TrainSpec(epochs=3, batch_size=32), optim=OptimSpec(lr=1e-12))
    with pytest.warns(PeerdistillWarning, match=r"^with the weights kept as the best \(epoch 1\), .*predicts? '2' for "
                                                r"every validation image, though the split holds other classes"):
        one_class.fit(data)


def test_validation_every_nth_epoch_and_the_last_chooses_the_best_among_those(tiny_data, tmp_path):
    """train.val_every: DRIVE's sliding-window validation cost about three quarters of a
    training epoch. Validated after epochs 3, 6 and 7 (the last) of 7; the best epoch is one of
    those, patience counts epochs and is judged there; the other rows hold training figures."""
    seen = []
    t = trainer(make_cohort(), train=TrainSpec(epochs=7, batch_size=32, val_every=3), run_dir=tmp_path / "run")
    _scripted(t, [0.5, 0.8, 0.6])
    evaluate = t._evaluate
    t._evaluate = lambda batches, where, *shown: seen.append(where) or evaluate(batches, where, *shown)
    result = t.fit(tiny_data)
    assert [w for w in seen if w.startswith("the validation")] == [
        f"the validation split after epoch {e}" for e in (3, 6, 7)]
    assert result.best_epoch == 5 and result.val_at_best["ensemble"]["accuracy"] == 0.8
    assert [any(k.startswith("val/") for k in row) for row in result.history] == [False, False, True] * 2 + [True]
    assert all("train/loss/total" in row for row in result.history)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [r["val/ensemble/accuracy"] for r in rows][:3] == ["", "", "0.5"]
    # patience counts epochs, judged where validated: no better after epoch 6 by epoch 9 of 12
    patient = trainer(make_cohort(), train=TrainSpec(epochs=12, batch_size=32, val_every=3, patience=3))
    _scripted(patient, [0.5, 0.8, 0.6, 0.9])
    result = patient.fit(tiny_data)
    assert (len(result.history), result.best_epoch, result.stopped_early) == (9, 5, True)
    # patience shorter than the validations' spacing: the first validation no better stops it (review 45a)
    hasty = trainer(make_cohort(), train=TrainSpec(epochs=12, batch_size=32, val_every=3, patience=2))
    _scripted(hasty, [0.5, 0.8, 0.6, 0.9])
    with pytest.warns(PeerdistillWarning, match=r"train.patience \(2\) is shorter than train.val_every \(3\): patience "
                                                r"is judged at validated epochs only, so training stops at the first "
                                                r"validation \(every 3 epochs\) that is not better than the best"):
        result = hasty.fit(tiny_data)
    assert (len(result.history), result.best_epoch, result.stopped_early) == (9, 5, True)


def test_the_learning_curves_draw_the_validated_epochs_alone():
    import warnings

    from matplotlib import pyplot as plt

    from peerdistill.html_report.run_page import learning_curves_section

    from peerdistill.html_report.comparison_page import settings_curve_figure
    from peerdistill.html_report.run_page import monitor_curve_figure

    epochs = [{"epoch": e, "train/loss/total": 1.0 / e, **({"val/ensemble/accuracy": e / 10} if e % 2 == 0 else {})}
              for e in range(1, 6)]
    fig = monitor_curve_figure(epochs, "accuracy", 4)
    (line,) = [line for line in fig.axes[0].get_lines() if line.get_label() == "ensemble"]
    assert (list(line.get_xdata()), list(line.get_ydata())) == ([2, 4], [0.2, 0.4])
    plt.close(fig)
    every = {"epochs": [{"epoch": e, "val/ensemble/accuracy": 0.1} for e in range(1, 5)]}
    fig = settings_curve_figure({"kd": [{"epochs": epochs}, every]}, "ensemble", "accuracy")
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [1, 2, 3, 4]
    assert list(line.get_ydata()) == pytest.approx([0.1, 0.15, 0.1, 0.25])  # each epoch: the seeds validated there
    plt.close(fig)
    # a report read before the first validation: said, and no empty chart (nor matplotlib's warning of one)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        section = learning_curves_section({"epochs": epochs[:1], "monitor": "ensemble/accuracy"})
    assert "No epoch has been validated yet (train.val_every" in section and section.count("<img") == 1
