"""soft_kl against a naive, loop-by-loop computation of T^2 * KL(p_target^T || p_student^T)."""

import math

import pytest
import torch

from peerdistill.losses import soft_kl
from peerdistill.losses.logits import combine_soft_targets, kl_to_probs


def naive_soft_kl(student, target, T):
    total = 0.0
    rows = student.tolist()
    for s_row, t_row in zip(rows, target.tolist()):
        zs = sum(math.exp(v / T) for v in s_row)
        zt = sum(math.exp(v / T) for v in t_row)
        for s, t in zip(s_row, t_row):
            ps, pt = math.exp(s / T) / zs, math.exp(t / T) / zt
            total += pt * math.log(pt / ps)
    return T * T * total / len(rows)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_soft_kl_matches_naive_formula(T):
    g = torch.Generator().manual_seed(0)
    student, target = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g) * 3
    assert soft_kl(student, target, T).item() == pytest.approx(naive_soft_kl(student, target, T), rel=1e-5)


def test_soft_kl_hand_value_two_classes():
    # p_t = (0.5, 0.5); p_s = softmax(0, ln 3) = (0.25, 0.75):
    # KL = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3); times T^2 = 4 at T = 2 on logits (0, 2 ln 3).
    student = torch.tensor([[0.0, 2 * math.log(3.0)]])
    target = torch.zeros(1, 2)
    assert soft_kl(student, target, 2.0).item() == pytest.approx(4 * 0.5 * math.log(4 / 3), rel=1e-6)


def test_soft_kl_is_zero_for_equal_logits_and_positive_otherwise():
    z = torch.randn(4, 3)
    assert soft_kl(z, z.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_kl(z, z.flip(1), 3.0).item() > 0


def test_soft_kl_per_pixel_maps_average_over_pixels():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    flat_s = s.permute(0, 2, 3, 1).reshape(-1, 3)
    flat_t = t.permute(0, 2, 3, 1).reshape(-1, 3)
    assert soft_kl(s, t, 2.0).item() == pytest.approx(naive_soft_kl(flat_s, flat_t, 2.0), rel=1e-5)


def test_soft_kl_sends_no_gradient_to_its_target():
    student = torch.randn(3, 4, requires_grad=True)
    target = torch.randn(3, 4, requires_grad=True)
    soft_kl(student, target, 4.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert target.grad is None


def test_soft_kl_gradient_matches_closed_form():
    # d/dz_s [T^2 KL(p_t || softmax(z_s/T))] = T (p_s - p_t) / B
    T, B = 3.0, 4
    student = torch.randn(B, 5, requires_grad=True)
    target = torch.randn(B, 5)
    soft_kl(student, target, T).backward()
    expected = T * ((student.detach() / T).softmax(1) - (target / T).softmax(1)) / B
    assert torch.allclose(student.grad, expected, atol=1e-6)


def test_soft_kl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        soft_kl(torch.zeros(2, 3), torch.zeros(2, 4))


def test_a_non_finite_target_makes_the_kl_non_finite_not_zero():
    """A source whose outputs went NaN (a broken frozen teacher, an overflowing peer) must show
    in the term, where the non-finite guard names it; a zero term would hide it. A target
    probability of exactly 0 still contributes 0 (not 0 * log 0 = NaN)."""
    student = torch.randn(4, 3)
    teacher = torch.randn(4, 3)
    teacher[1, 0] = float("nan")
    assert torch.isnan(soft_kl(student, teacher, 4.0))
    probs = torch.tensor([[1.0, 0.0, 0.0], [float("nan"), 0.5, 0.5]])
    assert torch.isnan(kl_to_probs(student[:2], probs))
    one_hot = torch.tensor([[1.0, 0.0, 0.0]])
    expected = -torch.log_softmax(student[:1], dim=1)[0, 0]  # KL(onehot || p) = -log p_0
    assert kl_to_probs(student[:1], one_hot) == pytest.approx(float(expected), rel=1e-6)


def test_kl_to_probs_sends_no_gradient_to_its_target():
    """Like soft_kl: the softened target q is detached, so what made it learns nothing here."""
    student = torch.randn(3, 4, requires_grad=True)
    source = torch.randn(3, 4, requires_grad=True)
    kl_to_probs(student, (source / 2.0).softmax(dim=1), 2.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert source.grad is None


def test_combined_soft_targets_carry_no_gradient_to_their_sources():
    """The sources' logits are detached before they are mixed: the mixture is a constant target."""
    sources = [torch.randn(3, 4, requires_grad=True) for _ in range(2)]
    q = combine_soft_targets(sources, 2.0, [1.0, 3.0])
    assert not q.requires_grad and q.grad_fn is None


def _softmax(row, T):
    e = [math.exp(v / T) for v in row]
    return [v / sum(e) for v in e]


def test_per_sample_weights_are_normalised_over_the_sources_of_each_sample():
    """q_b = sum_k w_kb softmax(z_kb / T) / sum_k w_kb: weights [K, B] need not sum to 1, each
    sample's column is normalised on its own (sample 0: 2 and 6 -> 1/4, 3/4; sample 1: 0.5 and
    1.5 -> 1/4, 3/4; sample 2: 3 and 1 -> 3/4, 1/4). Maps take [K, B, H, W] weights the same way."""
    g = torch.Generator().manual_seed(6)
    T, z = 2.0, [torch.randn(3, 4, generator=g) for _ in range(2)]
    weights = torch.tensor([[2.0, 0.5, 3.0], [6.0, 1.5, 1.0]])
    expected = []
    for b in range(3):
        w = weights[:, b].tolist()
        p = [_softmax(z[k][b].tolist(), T) for k in range(2)]
        expected.append([(w[0] * p[0][c] + w[1] * p[1][c]) / (w[0] + w[1]) for c in range(4)])
    got = combine_soft_targets(z, T, weights)
    assert torch.allclose(got, torch.tensor(expected), atol=1e-7)
    maps = [x.T.reshape(1, 4, 1, 3) for x in z]  # sample b of the batch becomes pixel b of one image
    got_maps = combine_soft_targets(maps, T, weights.view(2, 1, 1, 3))
    assert torch.allclose(got_maps[0, :, 0].T, torch.tensor(expected), atol=1e-7)


def test_pixels_left_out_count_for_nothing_even_when_not_finite():
    """Per-pixel KL and pair-wise affinity over valid pixels only: a NaN source at an ignored
    pixel (outside a field of view) leaves the term, and the student's gradient, as they are
    with a finite value there; no gradient reaches the ignored pixel."""
    from peerdistill.losses.dense import pairwise_affinity

    torch.manual_seed(0)
    student, teacher = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    valid = torch.tensor([[[True, True], [True, False]], [[True, False], [True, True]]])
    terms = {"soft_kl": lambda s, t: soft_kl(s, t, 2.0, valid),
             "kl_to_probs": lambda s, t: kl_to_probs(s, torch.softmax(t / 2.0, dim=1), 2.0, valid),
             "pair": lambda s, t: pairwise_affinity(s, t, node_size=1, valid=valid)}
    broken = teacher.clone()
    broken[0, :, 1, 1] = broken[1, :, 0, 1] = float("nan")
    for name, term in terms.items():
        values, grads = [], []
        for source in (teacher, broken):
            learner = student.clone().requires_grad_(True)
            values.append(term(learner, source))
            grads.append(torch.autograd.grad(values[-1], learner)[0])
        assert values[1].item() == pytest.approx(values[0].item(), rel=1e-6), name
        torch.testing.assert_close(grads[1], grads[0], msg=name)
        assert (grads[1][0, :, 1, 1] == 0).all() and (grads[1][1, :, 0, 1] == 0).all(), name
    assert torch.isnan(soft_kl(student, broken, 2.0))  # counted, it shows
    assert torch.isnan(pairwise_affinity(student, broken, node_size=1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_learners_non_finite_logits_at_ignored_pixels_change_neither_value_nor_gradient(bad):
    """The learner's side of the rule above (an fp16 overflow, a model writing NaN outside its
    field of view): every dense term keeps the value and the gradient it has with finite logits
    there, and no gradient reaches the ignored pixel (log_softmax's backward would give NaN * 0)."""
    from peerdistill.losses.dense import channel_wise, pairwise_affinity

    torch.manual_seed(3)
    student, teacher = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    valid = torch.tensor([[[True, True], [True, False]], [[True, False], [True, True]]])
    terms = {"soft_kl": lambda s: soft_kl(s, teacher, 2.0, valid),
             "kl_to_probs": lambda s: kl_to_probs(s, torch.softmax(teacher / 2.0, dim=1), 2.0, valid),
             "channel_wise": lambda s: channel_wise(s, teacher, 4.0, valid),
             "pair": lambda s: pairwise_affinity(s, teacher, node_size=1, valid=valid)}
    broken = student.clone()
    broken[0, :, 1, 1] = broken[1, :, 0, 1] = bad
    for name, term in terms.items():
        values, grads = [], []
        for learner in (student.clone().requires_grad_(True), broken.clone().requires_grad_(True)):
            values.append(term(learner))
            grads.append(torch.autograd.grad(values[-1], learner)[0])
        assert values[1].item() == pytest.approx(values[0].item(), rel=1e-6), name
        assert torch.isfinite(grads[1]).all(), name
        torch.testing.assert_close(grads[1], grads[0], msg=name)
        assert (grads[1][0, :, 1, 1] == 0).all() and (grads[1][1, :, 0, 1] == 0).all(), name


def test_a_class_the_source_rules_out_with_minus_infinity_contributes_nothing():
    """A source that masks a class with -inf logits (q = 0 there): 0 * log 0 counts 0, so the
    KL is the sum over the other classes, by hand in float64, with a finite gradient."""
    torch.manual_seed(1)
    student, source, t = torch.randn(3, 4), torch.randn(3, 4), 2.0
    source[:, 2] = float("-inf")
    learner = student.clone().requires_grad_(True)
    got = soft_kl(learner, source, t)
    expected = 0.0
    for z, s in zip(student.double().tolist(), source.double().tolist()):
        kept = [i for i in range(4) if i != 2]
        q = {i: math.exp(s[i] / t) / sum(math.exp(s[j] / t) for j in kept) for i in kept}
        log_p = {i: z[i] / t - math.log(sum(math.exp(v / t) for v in z)) for i in kept}
        expected += sum(q[i] * (math.log(q[i]) - log_p[i]) for i in kept)
    assert got.item() == pytest.approx(expected / 3 * t * t, rel=1e-5)
    got.backward()
    assert torch.isfinite(learner.grad).all()


def naive_dkd(student, target_probs, labels, t, nckd_weight):
    """Decoupled KD sample by sample, in float64, from the definitions (Zhao et al. 2022, eqs. 1-4)."""
    total = 0.0
    for z, q, y in zip(student.double().tolist(), target_probs.double().tolist(), labels.tolist()):
        e = [math.exp(v / t) for v in z]
        p = [v / sum(e) for v in e]
        b_t, b_s = (q[y], 1 - q[y]), (p[y], 1 - p[y])
        tckd = sum(a * math.log(a / b) for a, b in zip(b_t, b_s) if a > 0)
        rest = [i for i in range(len(z)) if i != y]
        nckd = sum(q[i] / b_t[1] * math.log((q[i] / b_t[1]) / (p[i] / b_s[1])) for i in rest if q[i] > 0)
        total += tckd + nckd_weight * nckd
    return total / len(labels) * t * t


@pytest.mark.parametrize("t, nckd_weight", [(1.0, 8.0), (4.0, 0.5)])
def test_decoupled_kd_matches_the_definition_sample_by_sample(t, nckd_weight):
    from peerdistill.losses import decoupled_kd

    torch.manual_seed(3)
    student, source, labels = torch.randn(6, 5) * 3, torch.randn(6, 5) * 3, torch.tensor([0, 4, 2, 2, 1, 3])
    target = torch.softmax(source / t, dim=1)
    assert decoupled_kd(student, target, labels, t, nckd_weight).item() == pytest.approx(
        naive_dkd(student, target, labels, t, nckd_weight), rel=1e-5)


def test_decoupled_kd_keeps_its_precision_when_the_source_is_confident():
    """1 - q_t in float32 is 0 or a few ulps for a confident source while the wrong classes' q_i
    are not: the reference takes q in float64 from the same logits."""
    from peerdistill.losses import decoupled_kd

    student, labels = torch.tensor([[1.0, 0.5, -0.2, 0.1]]), torch.tensor([0])
    for t, margin in ((1.0, 14.0), (1.0, 17.0), (1.0, 25.0), (4.0, 80.0)):
        q64 = torch.softmax(torch.tensor([[margin, 0.0, 0.3, -0.5]], dtype=torch.float64) / t, dim=1)
        loss = decoupled_kd(student, q64.float(), labels, t, 8.0).item()
        assert loss == pytest.approx(naive_dkd(student, q64, labels, t, 8.0), rel=1e-4), (t, margin)
    # two classes: DKD is the softened KL itself, T^2 KL(q || p), however sure the source
    q64 = torch.softmax(torch.tensor([[80.0, 0.0]], dtype=torch.float64) / 4, dim=1)
    p64 = torch.softmax(torch.tensor([[1.0, 0.5]], dtype=torch.float64) / 4, dim=1)
    kl = float((q64 * (q64 / p64).log()).sum()) * 16
    assert decoupled_kd(torch.tensor([[1.0, 0.5]]), q64.float(), labels, 4.0, 8.0).item() == pytest.approx(kl, rel=1e-4)


def test_decoupled_kd_terms_hand_values_and_a_certain_source():
    from peerdistill.losses import decoupled_kd

    # two classes: no non-target distribution to compare, so DKD is the binary KL alone
    student, target, labels = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.8, 0.2]]), torch.tensor([0])
    binary = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert decoupled_kd(student, target, labels, 1.0, 8.0).item() == pytest.approx(binary, rel=1e-5)
    # the student already matches the non-target shape: NCKD is 0, whatever its weight
    student = torch.tensor([[2.0, 1.0, 1.0]])
    target = torch.tensor([[0.5, 0.25, 0.25]])
    same_shape = decoupled_kd(student, target, torch.tensor([0]), 1.0, 100.0)
    p0 = math.exp(2) / (math.exp(2) + 2 * math.e)
    assert same_shape.item() == pytest.approx(0.5 * math.log(0.5 / p0) + 0.5 * math.log(0.5 / (1 - p0)), abs=1e-6)
    # a source certain of the true class teaches only TCKD; gradients stay finite, none reach it
    student = torch.randn(4, 3, requires_grad=True)
    certain = torch.eye(3)[[0, 1, 2, 0]].requires_grad_()
    loss = decoupled_kd(student, certain, torch.tensor([0, 1, 2, 0]), 2.0, 8.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all() and certain.grad is None
    with pytest.raises(ValueError, match=r"\[B, C\] class scores with one label per sample"):
        decoupled_kd(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))


def test_class_weights_weigh_each_samples_cross_entropy():
    """``data.class_weights``: sum_i w_{y_i} * -log p_{y_i} / sum_i w_{y_i}, by hand in float64."""
    from peerdistill.tasks import ClassificationTask

    torch.manual_seed(2)
    logits, labels, weights = torch.randn(6, 3) * 2, torch.tensor([0, 2, 2, 1, 0, 2]), [0.5, 4.0, 1.5]
    total = weight_sum = 0.0
    for z, y in zip(logits.double().tolist(), labels.tolist()):
        total += weights[y] * (math.log(sum(math.exp(v) for v in z)) - z[y])
        weight_sum += weights[y]
    task = ClassificationTask(3, class_weights=torch.tensor(weights))
    assert task.supervised_loss(logits, labels).item() == pytest.approx(total / weight_sum, rel=1e-6)
    unweighted = sum(math.log(sum(math.exp(v) for v in z)) - z[y] for z, y in zip(logits.double().tolist(), labels.tolist()))
    assert ClassificationTask(3).supervised_loss(logits, labels).item() == pytest.approx(unweighted / 6, rel=1e-6)


def test_kl_of_a_target_with_tiny_but_positive_probabilities_against_itself_is_zero():
    """log q is taken of the target's own probabilities: one of 1e-4 or 1e-7 is kept as it is (a
    floor meant only for q = 0 that reached such values, 1e-3 say, would add q (log floor - log q)
    per class: about 5e-4 here). The student is the target itself, so the KL is 0."""
    q = torch.tensor([[1 - 2e-4 - 1e-7, 1e-4, 1e-4, 1e-7]], dtype=torch.float64)
    student = q.log().float()  # softmax(log q) = q
    assert kl_to_probs(student, q.float(), 1.0).item() == pytest.approx(0.0, abs=1e-6)
    # and against another student, the formula by hand in float64
    other = torch.tensor([[0.5, -1.0, 2.0, 0.0]])
    p = torch.softmax(other.double(), dim=1)
    expected = float((q * (q.log() - p.log())).sum())
    assert kl_to_probs(other, q.float(), 1.0).item() == pytest.approx(expected, rel=1e-5)


def test_kl_to_softened_sends_no_gradient_to_its_target():
    """The graph's combined targets reach the KL through kl_to_softened, not kl_to_probs: it
    detaches q itself, so a target made with gradient (a caller's mixture) stays a constant."""
    from peerdistill.losses.logits import kl_to_softened

    g = torch.Generator().manual_seed(7)
    student = torch.randn(3, 4, generator=g).requires_grad_(True)
    source = torch.randn(3, 4, generator=g).requires_grad_(True)
    loss = kl_to_softened(student, (source / 2.0).softmax(dim=1), 2.0)
    loss.backward()
    assert source.grad is None and student.grad.abs().sum() > 0
    assert loss.item() == pytest.approx(naive_soft_kl(student.detach(), source.detach(), 2.0), rel=1e-5)


def test_decoupled_kd_keeps_its_precision_when_the_student_is_confident():
    """log(1 - p_t) is taken as logsumexp of the other logits minus logsumexp of all, not as
    log(1 - exp(log p_t)): a student 20 logits sure of the true class has 1 - p_t = 4e-9, which
    float32 rounds to 0 (the loss became inf). Reference: the definition in float64."""
    from peerdistill.losses import decoupled_kd

    student, labels = torch.tensor([[20.0, 0.0, 0.5, -1.0]]), torch.tensor([0])
    target = torch.softmax(torch.tensor([[2.0, 0.0, 1.0, -0.5]], dtype=torch.float64), dim=1)
    loss = decoupled_kd(student, target.float(), labels, 1.0, 8.0)
    assert loss.item() == pytest.approx(naive_dkd(student, target, labels, 1.0, 8.0), rel=1e-4)


def test_confidence_weights_sum_to_one_over_the_teachers_also_for_one_teacher():
    """w_k = (1 - softmax_k(CE)) / (K - 1) sums to 1 over K; a single teacher weighs 1 (not its
    cross-entropy, which is 0 at ignored pixels and would make the mixture 0 / 0)."""
    from peerdistill.losses import confidence_weights

    g = torch.Generator().manual_seed(8)
    logits, labels = [torch.randn(4, 3, generator=g) for _ in range(3)], torch.tensor([0, 2, 1, 1])
    assert torch.equal(confidence_weights(logits[:1], labels), torch.ones(1, 4))
    w = confidence_weights(logits, labels)
    for b in range(4):
        ce = [math.log(sum(math.exp(v) for v in z[b].tolist())) - float(z[b, labels[b]]) for z in logits]
        e = [math.exp(c) for c in ce]
        assert w[:, b].tolist() == pytest.approx([(1 - v / sum(e)) / 2 for v in e], rel=1e-5)


def test_kl_to_probs_refuses_a_target_that_sums_to_a_little_more_than_one():
    """A mixture with a weight off by 2 % is not a distribution (the KL would be scaled with it)."""
    q = torch.softmax(torch.randn(2, 3), dim=1)
    with pytest.raises(ValueError, match="not a distribution"):
        kl_to_probs(torch.zeros(2, 3), q * 1.02)


def test_standalone_losses_refuse_the_slips_their_neighbours_refuse():
    """Review 52b: each gave a silent number (or a bare torch error) where its sibling said what was wrong."""
    from peerdistill.losses import attention_transfer, decoupled_kd, similarity_preserving
    from peerdistill.losses.dense import channel_wise, pairwise_affinity
    from peerdistill.losses.logits import confidence_weights

    z, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    q = torch.softmax(torch.randn(4, 3), dim=1)
    with pytest.raises(ValueError, match="decoupled_kd: the target is not a distribution over dim 1 .*logits go to soft_kl"):
        decoupled_kd(z, z + 3, labels, 4.0)  # logits as the target (692.7 before)
    with pytest.raises(ValueError, match=r"decoupled_kd: labels are class indices 0 to 2, got values \[-100, 7\]"):
        decoupled_kd(z, q, torch.tensor([0, 7, -100, 1]), 4.0)
    with pytest.raises(ValueError, match="decoupled_kd: nckd_weight must be a finite number, 0 or more .*got -1"):
        decoupled_kd(z, q, labels, 4.0, nckd_weight=-1)
    assert float(decoupled_kd(z, q, labels, 4.0, nckd_weight=0)) >= 0  # TCKD alone
    for logits, dtype in ((torch.ones(2, 3, dtype=torch.int64), "torch.int64"), (torch.ones(2, 3).bool(), "torch.bool")):
        with pytest.raises(ValueError, match=f"soft_kl: logits must be floating point, got {dtype}"):
            soft_kl(logits, logits, 1.0)
    with pytest.raises(ValueError, match=r"soft_kl: logits of shape \(2, 0\); expected a non-empty batch"):
        soft_kl(torch.zeros(2, 0), torch.zeros(2, 0))
    x, y = torch.randn(4, 1), torch.randn(4, 1)  # a sigmoid's one logit (review 55c: 0 and no gradient before)
    for fn, target in ((soft_kl, y), (kl_to_probs, torch.ones(4, 1))):
        with pytest.raises(ValueError, match=rf"{fn.__name__}: logits of shape \(4, 1\) hold one class, .* the "
                                             r"two-class logits \[0, x\]"):
            fn(x, target)
    pairs = [torch.cat([torch.zeros_like(v), v], dim=1) for v in (x, y)]  # the fix it names: binary KL
    p_s, p_t = torch.sigmoid(x.double()), torch.sigmoid(y.double())
    by_hand = (p_t * (p_t / p_s).log() + (1 - p_t) * ((1 - p_t) / (1 - p_s)).log()).mean()
    assert float(soft_kl(*pairs)) == pytest.approx(float(by_hand), rel=1e-5)
    with pytest.raises(ValueError, match=r"channel_wise takes maps \[B, C, H, W\] .*for class logits use soft_kl"):
        channel_wise(torch.randn(2, 3), torch.randn(2, 3))  # 0 for any class logits before
    maps = torch.randn(2, 4, 6, 6)
    for size in (0, -1, 2.5):
        with pytest.raises(ValueError, match=f"pairwise_affinity: node_size .* got {size!r}"):
            pairwise_affinity(maps, maps, size)
    with pytest.raises(ValueError, match=r"pairwise_affinity compares \[B, C, H, W\] maps of one batch"):
        pairwise_affinity(torch.randn(2, 4), torch.randn(2, 4))
    empty = torch.zeros(0, 4, 6, 6)
    with pytest.raises(ValueError, match="attention_transfer compares .* maps of one non-empty batch"):
        attention_transfer(empty, empty)  # NaN before
    with pytest.raises(ValueError, match="similarity_preserving compares features of one non-empty batch"):
        similarity_preserving(empty, empty)
    with pytest.raises(ValueError, match=r"attention_transfer: p must be a number above 0 .*got 0"):
        attention_transfer(maps, maps + 1, p=0)  # 0 for any maps before
    with pytest.raises(ValueError, match=r"confidence_weights: needs one or more teachers' logits of one shape, got "
                                         r"shapes \[\(4, 5\), \(4, 3\)\]"):
        confidence_weights([torch.randn(4, 5), torch.randn(4, 3)], labels)
    with pytest.raises(ValueError, match=r"confidence_weights: needs one or more .* got shapes \[\]"):
        confidence_weights([], labels)
    two = [torch.randn(4, 3), torch.randn(4, 3)]
    with pytest.raises(ValueError, match=r"per-sample weights of shape \(4, 2\); expected \(2, 4\)"):
        combine_soft_targets(two, 2.0, torch.ones(4, 2))
    for bad in (torch.zeros(2, 4), torch.tensor([[1.0, 1, 1, -1], [1, 1, 1, 3]]), torch.full((2, 4), float("nan"))):
        with pytest.raises(ValueError, match="per-sample weights must be finite, 0 or more, and sum above 0"):
            combine_soft_targets(two, 2.0, bad)
    mixed = combine_soft_targets(two, 2.0, torch.tensor([[1.0, 0, 1, 3], [1, 1, 0, 1]]))
    by_hand = [torch.softmax(z / 2, dim=1) for z in two]
    assert torch.allclose(mixed[0], (by_hand[0][0] + by_hand[1][0]) / 2) and torch.allclose(mixed[1], by_hand[1][1])
    assert torch.allclose(mixed[3], 0.75 * by_hand[0][3] + 0.25 * by_hand[1][3])
