"""Detection losses against naive per-location loops in plain Python: GFL's supervised terms, the
classification-map KD and Localization Distillation; plus a training sanity check."""

import math

import pytest
import torch

from peerdistill.detection import HeadLayout, anchor_points, assign, box_iou, decode
from peerdistill.errors import ConfigError
from peerdistill.losses.detection import (GFL_WEIGHTS, classification_map_kd, detection_distillation,
                                          detection_loss, localization_kd)
from peerdistill.models.detector import Detector


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def iou_giou(p, g):
    iw, ih = max(0.0, min(p[2], g[2]) - max(p[0], g[0])), max(0.0, min(p[3], g[3]) - max(p[1], g[1]))
    union = (p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - iw * ih
    hull = (max(p[2], g[2]) - min(p[0], g[0])) * (max(p[3], g[3]) - min(p[1], g[1]))
    return iw * ih / union, iw * ih / union - (hull - union) / hull


def naive_detection_loss(out, targets, layout, height, width):
    points, strides = anchor_points(height, width, layout.strides)
    labels, gt = assign(points, strides, targets, layout)  # the assignment has its own tests
    c, n = layout.num_classes, layout.reg_max + 1
    cls = box = dfl = weights = 0.0
    positives = 0
    for b in range(out.shape[0]):
        for a in range(out.shape[1]):
            row, label, q = out[b, a].tolist(), int(labels[b, a]), 0.0
            if label < c:
                positives += 1
                (px, py), s, g = points[a].tolist(), float(strides[a]), gt[b, a].tolist()
                wanted = [(px - g[0]) / s, (py - g[1]) / s, (g[2] - px) / s, (g[3] - py) / s]
                dist, edge_dfl = [], []
                for e in range(4):
                    probs = softmax(row[c + e * n:c + (e + 1) * n])
                    dist.append(s * sum(k * p for k, p in enumerate(probs)))
                    y = min(max(wanted[e], 0.0), layout.reg_max - 0.01)
                    lo = math.floor(y)
                    edge_dfl.append(-((lo + 1 - y) * math.log(probs[lo]) + (y - lo) * math.log(probs[lo + 1])))
                q, giou = iou_giou([px - dist[0], py - dist[1], px + dist[2], py + dist[3]], g)
                box += q * (1 - giou)
                dfl += q * sum(edge_dfl) / 4
                weights += q
            for k in range(c):
                sig, y = sigmoid(row[k]), (q if k == label else 0.0)
                cls += -(y * math.log(sig) + (1 - y) * math.log(1 - sig)) * abs(y - sig) ** 2
    return {"cls": cls / max(positives, 1), "box": box / weights, "dfl": dfl / weights}, positives


def test_detection_loss_matches_a_naive_loop():
    layout = HeadLayout(num_classes=3, reg_max=4)  # levels take max distances (0, 32], (32, 64], (64, inf)
    g = torch.Generator().manual_seed(0)
    out = torch.randn(2, 36 + 9 + 4, layout.channels, generator=g)
    targets = torch.tensor([[[0, 4.0, 6.0, 20.0, 30.0], [2, 2.0, 2.0, 46.0, 40.0], [-1, 0.0, 0.0, 9.0, 9.0]],
                            [[1, 10.0, 12.0, 42.0, 44.0], [-1, 3.0, 3.0, 4.0, 4.0], [-1, 0.0, 0.0, 0.0, 0.0]]])
    got = detection_loss(out, targets, layout, (48, 48))
    expected, positives = naive_detection_loss(out, targets, layout, 48, 48)
    assert positives >= 6
    assert set(got) == {"cls", "box", "dfl"}
    for key in expected:
        assert got[key].item() == pytest.approx(expected[key], rel=1e-4), key


def test_the_quality_target_sends_no_gradient_to_the_box_outputs():
    """GFL's classification target q = IoU(predicted box, true box) is a target, not a path: the
    cls term's gradient reaches the class logits only, the box outputs (channels C:) get exactly
    zero from it, while the box and dfl terms do train them."""
    layout = HeadLayout(num_classes=3, reg_max=4)
    g = torch.Generator().manual_seed(0)
    out = torch.randn(2, 36 + 9 + 4, layout.channels, generator=g).requires_grad_(True)
    targets = torch.tensor([[[0, 4.0, 6.0, 20.0, 30.0], [2, 2.0, 2.0, 46.0, 40.0]],
                            [[1, 10.0, 12.0, 42.0, 44.0], [-1, 0.0, 0.0, 0.0, 0.0]]])
    got = detection_loss(out, targets, layout, (48, 48))
    (cls_grad,) = torch.autograd.grad(got["cls"], out, retain_graph=True)
    assert cls_grad[..., :3].abs().max() > 0
    assert cls_grad[..., 3:].abs().max() == 0
    (box_grad,) = torch.autograd.grad(got["box"] + got["dfl"], out)
    assert box_grad[..., 3:].abs().max() > 0


def test_detection_loss_without_boxes_is_the_background_term_only():
    layout = HeadLayout(num_classes=2, reg_max=4)
    out = torch.randn(3, 21, layout.channels, requires_grad=True)
    for targets in (torch.zeros(3, 0, 5), torch.full((3, 2, 5), -1.0)):
        got = detection_loss(out, targets, layout, (32, 32))
        assert all(torch.isfinite(v) for v in got.values()) and got["box"] == 0 and got["dfl"] == 0
        sig = out[..., :2].detach().sigmoid().double()
        assert got["cls"].item() == pytest.approx(float((-(1 - sig).log() * sig**2).sum()), rel=1e-5)
        sum(got.values()).backward()
        assert torch.isfinite(out.grad).all() and out.grad[..., 2:].abs().max() == 0
        out.grad = None


def test_a_detector_fits_one_box():
    torch.manual_seed(0)
    model = Detector(num_classes=1, width=8)
    x = torch.randn(1, 3, 64, 64) * 0.1
    x[:, :, 20:52, 16:44] += 1.0
    targets = torch.tensor([[[0, 16.0, 20.0, 44.0, 52.0]]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        terms = detection_loss(model(x), targets, model.layout, (64, 64))
        loss = sum(GFL_WEIGHTS[k] * v for k, v in terms.items())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.5 * history[0]
    with torch.no_grad():
        best = decode(model(x), model.layout, (64, 64))[0]
    assert box_iou(best["boxes"][:1], targets[0, :, 1:]).item() > 0.7


def rows(out):
    return out.reshape(-1, out.shape[-1]).tolist()


def naive_cls_kd(student, teacher, c, t):
    total, locations = 0.0, 0
    for s_row, t_row in zip(rows(student), rows(teacher)):
        locations += 1
        for k in range(c):
            p, q = sigmoid(t_row[k] / t), sigmoid(s_row[k] / t)
            total += -(p * math.log(q) + (1 - p) * math.log(1 - q))
    return t * t * total / locations


def naive_ld(student, teacher, c, n, t, region=None):
    num = den = 0.0
    inside = [True] * len(rows(student)) if region is None else region.reshape(-1).tolist()
    for s_row, t_row, counted in zip(rows(student), rows(teacher), inside):
        weight = max(sigmoid(v) for v in t_row[:c]) if counted else 0.0
        kl = 0.0
        for e in range(4):
            p = softmax([v / t for v in t_row[c + e * n:c + (e + 1) * n]])
            q = softmax([v / t for v in s_row[c + e * n:c + (e + 1) * n]])
            kl += sum(a * math.log(a / b) for a, b in zip(p, q)) / 4
        num += weight * kl
        den += weight
    return t * t * num / max(den, 1e-6)


@pytest.fixture
def pair():
    layout = HeadLayout(num_classes=3, reg_max=4)
    g = torch.Generator().manual_seed(1)
    student = (2 * torch.randn(2, 7, layout.channels, generator=g)).requires_grad_()
    teacher = (2 * torch.randn(2, 7, layout.channels, generator=g)).requires_grad_()
    return layout, student, teacher


@pytest.mark.parametrize("t", [1.0, 3.0])
def test_distillation_terms_match_naive_loops(pair, t):
    layout, student, teacher = pair
    cls = classification_map_kd(student, teacher, layout, t)
    ld = localization_kd(student, teacher, layout, t)
    assert cls.item() == pytest.approx(naive_cls_kd(student, teacher, 3, t), rel=1e-5)
    assert ld.item() == pytest.approx(naive_ld(student, teacher, 3, 5, t), rel=1e-5)
    assert detection_distillation(student, teacher, layout, t).item() == pytest.approx(cls.item() + ld.item(), rel=1e-6)


@pytest.mark.parametrize("cls_weight, loc_weight", [(0.3, 2.0), (0.0, 1.0), (1.0, 0.0)])
def test_distillation_weighs_its_terms_against_the_naive_loops(pair, cls_weight, loc_weight):
    layout, student, teacher = pair
    expected = cls_weight * naive_cls_kd(student, teacher, 3, 2.0) + loc_weight * naive_ld(student, teacher, 3, 5, 2.0)
    loss = detection_distillation(student, teacher, layout, 2.0, cls_weight, loc_weight)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    # a switched-off term sends no gradient to the outputs it reads
    assert (student.grad[..., :3].abs().max() > 0) == (cls_weight > 0)
    assert (student.grad[..., 3:].abs().max() > 0) == (loc_weight > 0)


def test_localization_distillation_in_a_region_counts_only_its_points(pair):
    layout, student, teacher = pair
    region = torch.zeros(2, 7, dtype=torch.bool)
    region[0, [1, 4]] = True
    region[1, 6] = True
    got = localization_kd(student, teacher, layout, 2.0, region)
    assert got.item() == pytest.approx(naive_ld(student, teacher, 3, 5, 2.0, region), rel=1e-5)
    got.backward()
    assert student.grad[~region].abs().max() == 0 and student.grad[region].abs().max() > 0
    empty = localization_kd(student, teacher, layout, 2.0, torch.zeros(2, 7, dtype=torch.bool))
    assert empty.item() == 0.0


def test_the_task_distills_localization_at_the_assigned_points():
    from peerdistill.tasks.detection import DetectionTask

    layout = HeadLayout(num_classes=3, reg_max=4)
    g = torch.Generator().manual_seed(2)
    student = torch.randn(2, 36 + 9 + 4, layout.channels, generator=g)
    teacher = torch.randn(2, 36 + 9 + 4, layout.channels, generator=g)
    targets = torch.tensor([[[0, 4.0, 6.0, 20.0, 30.0], [-1, 0.0, 0.0, 0.0, 0.0]],
                            [[1, 10.0, 12.0, 42.0, 44.0], [2, 30.0, 2.0, 46.0, 20.0]]])
    points, strides = anchor_points(48, 48, layout.strides)
    labels, _ = assign(points, strides, targets, layout)  # the assignment has its own tests
    region = labels < 3
    assert 0 < int(region.sum()) < region.numel()
    task = DetectionTask(layout, (48, 48), kd_cls_weight=0.0, kd_loc_region="assigned")
    got = task.distill(student, teacher, 2.0, targets)
    assert got.item() == pytest.approx(naive_ld(student, teacher, 3, 5, 2.0, region), rel=1e-5)
    # the assignment is kept for the batch's targets, and redone for other boxes
    assert task.distill(student, teacher, 2.0, targets).item() == pytest.approx(got.item(), rel=1e-6)
    targets[1, 1, 0] = -1.0  # in place: the second image loses a box
    fewer = assign(points, strides, targets, layout)[0] < 3
    assert int(fewer.sum()) < int(region.sum())
    assert task.distill(student, teacher, 2.0, targets).item() == pytest.approx(
        naive_ld(student, teacher, 3, 5, 2.0, fewer), rel=1e-5)
    other = targets.clone()
    other[0, 0, 0] = -1.0
    fewest = assign(points, strides, other, layout)[0] < 3
    assert task.distill(student, teacher, 2.0, other).item() == pytest.approx(
        naive_ld(student, teacher, 3, 5, 2.0, fewest), rel=1e-5)
    everywhere = DetectionTask(layout, (48, 48), kd_cls_weight=0.0).distill(student, teacher, 2.0, targets)
    assert everywhere.item() == pytest.approx(naive_ld(student, teacher, 3, 5, 2.0), rel=1e-5)
    with pytest.raises(ConfigError, match="needs the batch's boxes"):
        task.distill(student, teacher, 2.0)


def test_one_assignment_per_batch_serves_every_models_loss_and_edge(monkeypatch):
    from peerdistill.tasks import detection as task_module

    layout = HeadLayout(num_classes=3, reg_max=4)
    g = torch.Generator().manual_seed(3)
    outs = [torch.randn(2, 36 + 9 + 4, layout.channels, generator=g) for _ in range(3)]
    targets = torch.tensor([[[0, 4.0, 6.0, 20.0, 30.0], [-1, 0.0, 0.0, 0.0, 0.0]],
                            [[1, 10.0, 12.0, 42.0, 44.0], [2, 30.0, 2.0, 46.0, 20.0]]])
    task = task_module.DetectionTask(layout, (48, 48), kd_loc_region="assigned")
    calls = []
    real = task_module.assignment
    monkeypatch.setattr(task_module, "assignment", lambda *a: calls.append(1) or real(*a))

    def weighted(terms):
        return (terms["cls"] + 2.0 * terms["box"] + 0.25 * terms["dfl"]).item()  # GFL's weights

    for out in outs:  # each model's supervised loss is the uncached one
        assert task.supervised_loss(out, targets).item() == pytest.approx(
            weighted(detection_loss(out, targets, layout, (48, 48))), rel=1e-6)
    task.distill(outs[1], outs[0], 2.0, targets)
    assert len(calls) == 1
    targets[1, 1, 0] = -1.0  # changed in place: assigned again
    assert task.supervised_loss(outs[0], targets).item() == pytest.approx(
        weighted(detection_loss(outs[0], targets, layout, (48, 48))), rel=1e-6)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="output has 45 points"):  # another size is never served the cache
        task.supervised_loss(outs[0][:, :45], targets)


def test_distillation_with_both_terms_off_is_a_zero_in_the_graph(pair):
    layout, student, teacher = pair
    loss = detection_distillation(student, teacher, layout, 2.0, 0.0, 0.0)
    loss.backward()
    assert loss.item() == 0.0 and student.grad.abs().max() == 0


def test_distillation_floors_when_student_equals_teacher(pair):
    layout, _, teacher = pair
    same = teacher.detach().clone().requires_grad_()
    assert localization_kd(same, teacher, layout, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    # The cls term is a BCE, not a divergence: at student == teacher it is the teacher's binary
    # entropy T^2 mean_locations sum_c H(sigmoid(t / T)), and its gradient is zero.
    p = (teacher[..., :3].detach().double() / 2.0).sigmoid()
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).sum(-1).mean() * 4.0
    loss = classification_map_kd(same, teacher, layout, 2.0)
    assert loss.item() == pytest.approx(entropy.item(), rel=1e-5)
    loss.backward()
    assert same.grad.abs().max() < 1e-6


def test_distillation_gradients_reach_the_student_only(pair):
    layout, student, teacher = pair
    t = 2.0
    classification_map_kd(student, teacher, layout, t).backward()
    assert teacher.grad is None
    # d/ds of T^2 BCE(sigmoid(s/T), sigmoid(t/T)) / (B A) = T (sigmoid(s/T) - sigmoid(t/T)) / (B A)
    expected = t * ((student[..., :3] / t).sigmoid() - (teacher[..., :3] / t).sigmoid()) / 14
    assert torch.allclose(student.grad[..., :3], expected.detach(), atol=1e-6)
    assert student.grad[..., 3:].abs().max() == 0
    student.grad = None
    localization_kd(student, teacher, layout, t).backward()
    assert teacher.grad is None
    assert student.grad[..., :3].abs().max() == 0 and student.grad[..., 3:].abs().max() > 0


def test_distillation_rejects_different_layouts(pair):
    layout, student, teacher = pair
    with pytest.raises(ValueError, match="same shape"):
        localization_kd(student[:, :5], teacher, layout, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        classification_map_kd(student, teacher, HeadLayout(3, 6), 1.0)
