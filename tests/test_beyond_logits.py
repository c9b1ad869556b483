"""Styles, several teachers, online ensemble and self-distillation, end to end and in detail."""

import json

import pytest
import torch
from safetensors.torch import load_file

from peerdistill import Cohort, KnowledgeGraph, Trainer, TrainSpec
from peerdistill.build import build_cohort, build_graph, train_from_config
from peerdistill.config import validate
from peerdistill.data import build_data
from peerdistill.engine import seed_everything
from peerdistill.models import SmallCNN
from peerdistill.models.heads import HeadedModel
from peerdistill.runs import load_cohort
from peerdistill.tasks import ClassificationTask
from peerdistill.engine.artifacts import jsonable

SMALL = {"arch": "cnn", "args": {"width": 4, "depth": 2}}
TEACHER = {"arch": "cnn", "args": {"width": 8, "depth": 3}}


def tree(tmp_path, name, **extra):
    base = {"name": name, "out_dir": str(tmp_path), "teacher": TEACHER, "students": [SMALL, SMALL],
            "train": {"epochs": 2, "batch_size": 128}, "distill": {"rampup_epochs": 1}}
    base.update(extra)
    return validate(base)


def final(tmp_path, name):
    return json.loads((tmp_path / name / "metrics.json").read_text())


def test_styles_end_to_end_with_automatic_connector(tmp_path):
    result = train_from_config(tree(tmp_path, "st", distill={"preset": "styles"}), progress=False)
    row = result.history[-1]
    assert "train/loss/student1/kl<-teacher" in row and "train/loss/student2/hint<-teacher[features<-features]" in row
    assert "train/loss/student2/kl<-teacher" not in row
    assert "train/loss/student1/hint<-student2[features<-features]" in row
    run = tmp_path / "st"
    meta = json.loads((run / "run.json").read_text())
    # teacher features [32, 2, 2] vs student [8, 4, 4]: one connector, saved apart from the students
    assert list(meta["connectors"]) == ["student2/hint<-teacher[features<-features]"]
    connector = load_file(run / "connectors.safetensors")
    assert any(v.shape == (32, 8, 1, 1) for v in connector.values())
    assert all(k.startswith(("features.", "classifier.")) for k in load_file(run / "models/student2.safetensors"))


@pytest.mark.parametrize("kind", ["at", "sp"])
def test_styles_features_with_other_feature_losses(tmp_path, kind):
    result = train_from_config(tree(tmp_path, kind, distill={"preset": "styles-features", "feature_loss": kind}),
                               progress=False)
    assert f"train/loss/student1/{kind}<-teacher[features<-features]" in result.history[-1]


def test_connector_learns_with_its_student(tmp_path):
    cfg = tree(tmp_path, "c", distill={"preset": "styles"})
    data = build_data(cfg.data)
    seed_everything(0)
    cohort = build_cohort(cfg, data)
    trainer = Trainer(cohort, build_graph(cfg, cohort), ClassificationTask(10), train=TrainSpec(epochs=1),
                      device="cpu", progress=False)
    trainer._setup(data)
    (connector,) = trainer.connectors.values()
    owned = {id(p) for g in trainer.optimizers["student2"].param_groups for p in g["params"]}
    assert all(id(p) in owned for p in connector.parameters())
    before = [p.clone() for p in connector.parameters()]
    x, y = next(iter(trainer.train_batches))
    trainer.step(x, y)
    assert any(not torch.equal(a, b) for a, b in zip(before, connector.parameters()))


@pytest.mark.parametrize("weighting", ["weighted", "confidence"])
def test_multi_teacher_end_to_end(tmp_path, weighting):
    cfg = tree(tmp_path, weighting, teacher=None,
               teachers=[TEACHER, {"arch": "cnn", "args": {"width": 6, "depth": 2},
                                   **({"weight": 0.5} if weighting == "weighted" else {})}],  # (confidence reads none)
               distill={"preset": "multi-teacher", "teacher_weighting": weighting})
    result = train_from_config(cfg, progress=False)
    assert set(result.test_at_best) == {"teacher1", "teacher2", "student1", "student2", "ensemble"}
    assert "train/loss/student1/kl<-teachers" in result.history[-1]
    assert "train/loss/teacher2/ce" in result.history[-1]
    meta = json.loads((result.run_dir / "run.json").read_text())  # (review 53b: only null was pinned)
    assert meta["teacher_weighting"] == weighting


def test_ensemble_teaches_students_and_teacher_can_be_frozen(tmp_path):
    first = train_from_config(tree(tmp_path, "t", distill={"preset": "independent"}), progress=False)
    assert first.best_epoch >= 0
    teacher = {**TEACHER, "frozen": True, "checkpoint": str(tmp_path / "t" / "models" / "teacher.safetensors")}
    result = train_from_config(tree(tmp_path, "e", teacher=teacher, distill={"preset": "kd+ml", "ensemble_weight": 0.5}),
                               progress=False)
    assert "train/loss/student2/kl<-ensemble" in result.history[-1]
    assert "train/loss/teacher/ce" not in result.history[-1]


def test_self_distillation_heads_gradients_and_detached_deepest(tmp_path):
    seed_everything(0)
    base = SmallCNN(1, 3, 4, 3)
    net = HeadedModel(base, ["features.2", "features.6"], "features", 3, torch.zeros(2, 1, 8, 8))
    cohort = Cohort.from_modules([net])
    graph = KnowledgeGraph.from_preset("self", None, ["student1"], heads={"student1": net.head_layers})
    graph.bind(cohort)
    out = cohort.forward(torch.randn(6, 1, 8, 8))
    assert set(out.logits) == {"student1", "student1@features.2", "student1@features.6"}
    sum(graph.losses(out).values()).backward()
    # the distillation terms train the heads and the layers under them ...
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.heads.parameters())
    assert base.features[0].weight.grad.abs().sum() > 0
    # ... but never the deepest classifier, their teacher: its logits and features are detached targets
    assert base.classifier.weight.grad is None
    assert base.features[8].weight.grad is None  # the last conv block feeds only the deepest output


def test_self_preset_end_to_end_and_export_without_heads(tmp_path):
    cfg = validate({"name": "self", "out_dir": str(tmp_path), "train": {"epochs": 2, "batch_size": 128},
                    "students": [{"arch": "cnn", "args": {"width": 4, "depth": 3},
                                  "heads": ["features.2", "features.6"]}],
                    "distill": {"preset": "self", "self_alpha": 0.3}})
    result = train_from_config(cfg, progress=False)
    assert set(result.test_at_best) == {"student1", "student1@features.2", "student1@features.6",
                                        "student1@ensemble", "ensemble"}
    # the students' ensemble is their own outputs (here one); the heads have an ensemble of their own
    assert jsonable(result.test_at_best["ensemble"]) == jsonable(result.test_at_best["student1"])
    row = result.history[-1]
    assert "train/loss/student1@features.2/kl<-student1" in row and "train/loss/student1@features.6/hint<-student1" in row
    shipped = load_file(tmp_path / "self" / "models" / "student1.safetensors")
    assert not any(k.startswith("heads") for k in shipped)
    with_heads, _ = load_cohort(tmp_path / "self")
    without, _ = load_cohort(tmp_path / "self", with_heads=False)
    assert with_heads.output_names() == ["student1", "student1@features.2", "student1@features.6"]
    assert without.output_names() == ["student1"]
    x = torch.randn(3, 1, 8, 8)
    with_heads.eval(), without.eval()
    assert torch.allclose(with_heads.forward(x).logits["student1"], without.forward(x).logits["student1"])


def test_heads_and_feature_edges_together(tmp_path):
    """Layer paths of feature edges name the user's network even when heads wrap it."""
    heads = {"arch": "cnn", "args": {"width": 4, "depth": 3}, "heads": ["features.2"]}
    result = train_from_config(tree(tmp_path, "hf", students=[heads, heads], distill={"preset": "styles"}),
                               progress=False)
    row = result.history[-1]
    assert "train/loss/student2/hint<-teacher[features<-features]" in row
    assert "train/loss/student1@features.2/kl<-student1" in row


def test_self_distillation_heads_follow_their_layers_into_syncbatchnorm():
    from peerdistill.engine.distributed import sync_batchnorm

    seed_everything(0)
    base = SmallCNN(1, 3, 4, 3)
    base.features[6].inplace = base.features[10].inplace = False  # the BatchNorm outputs stay as recorded
    net = HeadedModel(base, ["features.5"], "features.9", 3, torch.zeros(2, 1, 8, 8))
    x = torch.randn(2, 1, 8, 8)
    before = net.eval()(x)
    synced = sync_batchnorm(net).eval()  # SyncBatchNorm runs on the CPU in eval mode only
    assert isinstance(synced.base.features[5], torch.nn.SyncBatchNorm)
    after = synced(x)
    assert torch.allclose(after["heads"]["features.5"], before["heads"]["features.5"])
    assert torch.allclose(after["logits"], before["logits"])


def test_self_distillation_total_matches_the_byot_formula(tmp_path):
    """One step's total against the formula by hand: for each head i,
    (1 - a) CE(y, q_i) + a T^2 KL(q_deep^T || q_i^T) + lambda 1/2 mean((F_i - F_deep)^2),
    plus CE(y, q_deep)."""
    import math

    from peerdistill.build import make_trainer

    a, lam, T = 0.3, 0.2, 3.0
    cfg = validate({"name": "byot", "out_dir": str(tmp_path), "train": {"epochs": 1, "batch_size": 16},
                    "students": [{"arch": "cnn", "args": {"width": 4, "depth": 3},
                                  "heads": ["features.2", "features.6"]}],
                    "distill": {"preset": "self", "self_alpha": a, "self_lambda": lam, "self_temperature": T,
                                "rampup_epochs": 0}})
    trainer, data = make_trainer(cfg, progress=False)
    trainer._setup(data)
    x, y = data.train.x[:16], data.train.y[:16]
    with torch.no_grad():  # the weights the step starts from (training mode: batch statistics)
        out = trainer.cohort.forward(x)

    def log_softmax_rows(z, t):
        rows = []
        for row in (z / t).tolist():
            top = max(row)
            norm = top + math.log(sum(math.exp(v - top) for v in row))
            rows.append([v - norm for v in row])
        return rows

    def ce(z):
        return -sum(r[int(label)] for r, label in zip(log_softmax_rows(z, 1.0), y)) / len(y)

    deep = out.logits["student1"]
    expected = ce(deep)
    for head in ("student1@features.2", "student1@features.6"):
        log_q, log_p = log_softmax_rows(deep, T), log_softmax_rows(out.logits[head], T)
        kl = sum(math.exp(q) * (q - p) for rq, rp in zip(log_q, log_p) for q, p in zip(rq, rp)) / len(y)
        f_head, f_deep = out.features[head]["@bottleneck"], out.features["student1"]["@deep"]
        hint = 0.5 * sum((u - v) ** 2 for u, v in zip(f_head.flatten().tolist(), f_deep.flatten().tolist())) / f_head.numel()
        expected += (1 - a) * ce(out.logits[head]) + a * T * T * kl + lam * hint
    terms = trainer.step(x, y, ramp=1.0)
    assert terms["total"].item() == pytest.approx(expected, rel=1e-5)


def test_predict_gives_a_self_distilled_networks_own_ensemble_as_evaluate_scores_it():
    """The report's ROC curves and eval's pictures come from predict: it must hold
    student1@ensemble, the mean of the network's classifier and heads, like the metrics."""
    from peerdistill.build import build_cohort, build_task
    from peerdistill.data import build_data
    from peerdistill.engine.evaluate import predict

    cfg = validate({"students": [{"arch": "cnn", "args": {"width": 4, "depth": 3}, "heads": ["features.2"]}],
                    "distill": {"preset": "self"}})
    data = build_data(cfg.data)
    cohort = build_cohort(cfg, data)
    x = torch.stack([data.test[i][0] for i in range(4)])
    probs = predict(cohort, build_task(cfg, data, cohort), x)
    assert set(probs) == {"student1", "student1@features.2", "student1@ensemble", "ensemble"}
    torch.testing.assert_close(probs["student1@ensemble"], (probs["student1"] + probs["student1@features.2"]) / 2)
