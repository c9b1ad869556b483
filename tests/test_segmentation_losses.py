"""Dense losses against naive computations: pixel-wise KD, pair-wise affinity, CWD, soft Dice,
the gradient penalty, and the interpolation rule."""

import itertools
import math

import pytest
import torch
from torch import nn

from peerdistill.cohort import CohortOutput
from peerdistill.graph import Edge, KnowledgeGraph
from peerdistill.losses import soft_kl
from peerdistill.losses.adversarial import (MapDiscriminator, discriminator_loss, gradient_penalty,
                                            holistic_generator_loss)
from peerdistill.losses.dense import channel_wise, pairwise_affinity
from peerdistill.losses.segmentation import soft_dice_loss
from tests.test_losses import naive_soft_kl


def test_pixelwise_kd_is_the_mean_of_per_pixel_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    per_pixel = [naive_soft_kl(s[b, :, i, j].view(1, -1), t[b, :, i, j].view(1, -1), 2.0)
                 for b in range(2) for i in range(4) for j in range(5)]
    assert soft_kl(s, t, 2.0).item() == pytest.approx(sum(per_pixel) / len(per_pixel), rel=1e-5)


def test_maps_of_different_size_are_compared_at_the_source_size():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    graph = KnowledgeGraph([Edge("teacher", "s", "kl", 1.0, 2.0)])
    got = graph.losses(CohortOutput({"teacher": teacher, "s": student}))["s/kl<-teacher"]
    resized = nn.functional.interpolate(student, size=(8, 8), mode="bilinear", align_corners=False)
    assert got.item() == pytest.approx(soft_kl(resized, teacher, 2.0).item(), rel=1e-6)


def test_cwd_maps_of_different_size_are_compared_at_the_source_size():
    """As for kl: a cwd edge resizes the learner's logits (bilinear) to the source's map before the
    per-channel softmax over positions; checked against the loop formula at 8 x 8."""
    g = torch.Generator().manual_seed(11)
    student, teacher = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    graph = KnowledgeGraph([Edge("teacher", "s", "cwd", 1.0, 2.0)])
    got = graph.losses(CohortOutput({"teacher": teacher, "s": student}))["s/cwd<-teacher"]
    resized = nn.functional.interpolate(student, size=(8, 8), mode="bilinear", align_corners=False)
    assert got.item() == pytest.approx(naive_channel_wise(resized, teacher, 2.0), rel=1e-5)


def naive_pairwise(fs, ft, node, valid=None):
    """Pool node x node regions, cosine similarity of every pair of nodes, mean squared gap; with
    ``valid`` [B, H, W], a node is the mean of its valid pixels, and only pairs of nodes that hold
    a valid pixel count (images without any skipped)."""
    def nodes(f, keep):
        c, h, w = f.shape
        out = []
        for i in range(0, h, node):
            for j in range(0, w, node):
                block = f[:, i:i + node, j:j + node]
                if keep is None:
                    out.append([float(block[k].mean()) for k in range(c)])
                elif bool(keep[i:i + node, j:j + node].any()):
                    inside = keep[i:i + node, j:j + node]
                    out.append([float(block[k][inside].mean()) for k in range(c)])
        return out

    def cos(u, v):
        return sum(a * c for a, c in zip(u, v)) / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(c * c for c in v)))

    per_image = []
    for b in range(fs.shape[0]):
        keep = None if valid is None else valid[b]
        ns, nt = nodes(fs[b], keep), nodes(ft[b], keep)
        n = len(ns)
        if n:
            per_image.append(sum((cos(ns[i], ns[j]) - cos(nt[i], nt[j])) ** 2 for i in range(n) for j in range(n)) / n ** 2)
    return sum(per_image) / len(per_image)


def test_pairwise_affinity_matches_a_naive_implementation():
    g = torch.Generator().manual_seed(2)
    fs, ft = torch.randn(2, 3, 4, 6, generator=g), torch.randn(2, 5, 4, 6, generator=g)  # channels may differ
    assert pairwise_affinity(fs, ft, node_size=2).item() == pytest.approx(naive_pairwise(fs, ft, 2), rel=1e-5)
    assert pairwise_affinity(fs, ft, node_size=1).item() == pytest.approx(naive_pairwise(fs, ft, 1), rel=1e-5)
    assert pairwise_affinity(fs, ft).item() == pytest.approx(naive_pairwise(fs, ft, 2), rel=1e-5)  # the default node: 2 x 2
    # sides that are not multiples of the node size: the last row / column of nodes averages the
    # pixels there are (a 5 x 7 map makes 3 x 4 nodes of 2 x 2, 2 x 3 nodes of 3 x 3)
    odd_s, odd_t = torch.randn(2, 3, 5, 7, generator=g), torch.randn(2, 4, 5, 7, generator=g)
    for node in (2, 3):
        exact = naive_pairwise(odd_s, odd_t, node)
        assert pairwise_affinity(odd_s, odd_t, node).item() == pytest.approx(exact, rel=1e-5)
    fs.requires_grad_(True)
    ft.requires_grad_(True)
    pairwise_affinity(fs, ft).backward()
    assert ft.grad is None and fs.grad is not None


def naive_channel_wise(s, t, T, valid=None):
    """Per image and channel, softmax over the (valid) positions; images without any skipped."""
    per_image = []
    for b in range(s.shape[0]):
        keep = [True] * s[b, 0].numel() if valid is None else valid[b].flatten().tolist()
        if not any(keep):
            continue
        total = 0.0
        for c in range(s.shape[1]):
            zs = [v for v, k in zip(s[b, c].flatten().tolist(), keep) if k]
            zt = [v for v, k in zip(t[b, c].flatten().tolist(), keep) if k]
            es, et = [math.exp(v / T) for v in zs], [math.exp(v / T) for v in zt]
            ps, pt = [v / sum(es) for v in es], [v / sum(et) for v in et]
            total += sum(q * math.log(q / p) for p, q in zip(ps, pt)) * T * T / s.shape[1]
        per_image.append(total)
    return sum(per_image) / len(per_image)


def test_channel_wise_distillation_matches_the_formula():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 3, 2, 3, generator=g), torch.randn(2, 3, 2, 3, generator=g)
    assert channel_wise(s, t, 2.0).item() == pytest.approx(naive_channel_wise(s, t, 2.0), rel=1e-5)
    assert channel_wise(s, t).item() == pytest.approx(naive_channel_wise(s, t, 1.0), rel=1e-5)  # default T = 1
    with pytest.raises(ValueError, match="channels"):
        channel_wise(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 2, 2))


def test_channel_wise_sends_no_gradient_to_its_target():
    """The source of a cwd edge learns nothing through it: the target map is detached inside."""
    g = torch.Generator().manual_seed(12)
    s = torch.randn(2, 3, 4, 4, generator=g).requires_grad_(True)
    t = torch.randn(2, 3, 4, 4, generator=g).requires_grad_(True)
    channel_wise(s, t, 2.0).backward()
    assert t.grad is None and s.grad.abs().sum() > 0


def _half_ignored_labels(b, h, w):
    """Labels 0/1 on the left half of each image, 255 (ignore) on the right; the last image is
    ignored everywhere."""
    labels = torch.randint(0, 2, (b, h, w), generator=torch.Generator().manual_seed(9))
    labels[:, :, w // 2:] = 255
    labels[-1] = 255
    return labels


def test_ignored_pixels_teach_nothing_in_the_dense_terms_nor_nodes_made_of_them():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(3, 3, 4, 8, generator=g), torch.randn(3, 3, 4, 8, generator=g)
    labels = _half_ignored_labels(3, 4, 8)  # ignored half on node boundaries
    valid = labels != 255
    per_pixel = [naive_soft_kl(s[b, :, i, j].view(1, -1), t[b, :, i, j].view(1, -1), 2.0)
                 for b in range(3) for i in range(4) for j in range(8) if valid[b, i, j]]
    assert soft_kl(s, t, 2.0, valid).item() == pytest.approx(sum(per_pixel) / len(per_pixel), rel=1e-5)
    assert channel_wise(s, t, 2.0, valid).item() == pytest.approx(naive_channel_wise(s, t, 2.0, valid), rel=1e-5)
    fs, ft = torch.randn(3, 2, 4, 8, generator=g), torch.randn(3, 5, 4, 8, generator=g)
    assert pairwise_affinity(fs, ft, 2, valid).item() == pytest.approx(naive_pairwise(fs, ft, 2, valid), rel=1e-5)

    # Ignored pixels inside a node (a field of view's edge does not follow the node grid), on a
    # map whose sides are not multiples of the node size: a node is the mean of its valid pixels.
    fs, ft = torch.randn(2, 2, 5, 7, generator=g), torch.randn(2, 3, 5, 7, generator=g)
    ragged = torch.ones(2, 5, 7, dtype=torch.bool)
    ragged[0, :, 3:] = False  # node columns 2-3 are half valid
    ragged[1, 0, 0] = ragged[1, 4, 6] = False  # one pixel of a full node, the only one of a corner node
    for node in (2, 3):
        exact = naive_pairwise(fs, ft, node, ragged)
        assert pairwise_affinity(fs, ft, node, ragged).item() == pytest.approx(exact, rel=1e-5)
        loud = (fs.masked_fill(~ragged[:, None], 50.0), ft.masked_fill(~ragged[:, None], -50.0))
        assert pairwise_affinity(*loud, node, ragged).item() == pytest.approx(exact, rel=1e-5)

    # Through the graph: what the models say on ignored pixels changes no term and gets no gradient.
    graph = KnowledgeGraph([Edge("teacher", "s", "kl", 1.0, 2.0), Edge("teacher", "s", "cwd", 1.0, 2.0),
                            Edge("teacher", "s", "pair", 1.0, 1.0, "f", "f")])

    def terms(student, teacher):
        out = CohortOutput({"teacher": teacher, "s": student}, {"teacher": {"f": teacher}, "s": {"f": student}})
        return graph.losses(out, labels)

    student = s.clone().requires_grad_(True)
    before = terms(student, t)
    sum(before.values()).backward()
    assert float(student.grad[~valid[:, None].expand_as(s)].abs().max()) == 0.0
    assert float(student.grad[valid[:, None].expand_as(s)].abs().max()) > 0.0
    outside = ~valid[:, None].expand_as(s)
    after = terms(s.masked_fill(outside, 7.0), t.masked_fill(outside, -3.0))
    assert {k: round(v.item(), 5) for k, v in after.items()} == {k: round(v.item(), 5) for k, v in before.items()}
    assert before["s/kl<-teacher"].item() == pytest.approx(soft_kl(s, t, 2.0, valid).item(), rel=1e-6)


def test_soft_dice_loss_by_hand():
    # one image 1x2 pixels, 2 classes; labels (0, 1); probabilities of class 1: 0.2, 0.6
    logits = torch.log(torch.tensor([[[[0.8, 0.4]], [[0.2, 0.6]]]]))
    labels = torch.tensor([[[0, 1]]])
    dice_fg = (2 * 0.6 + 1) / (0.2 + 0.6 + 1 + 1)
    assert soft_dice_loss(logits, labels).item() == pytest.approx(1 - dice_fg, rel=1e-5)
    ignored = torch.tensor([[[255, 1]]])  # the first pixel counts nowhere
    dice_ignored = (2 * 0.6 + 1) / (0.6 + 1 + 1)
    assert soft_dice_loss(logits, ignored).item() == pytest.approx(1 - dice_ignored, rel=1e-5)


def _dice_by_loops(logits, labels):
    """Each class's smoothed Dice over the labelled pixels of the whole batch, by plain loops over
    a softmax written out (pixels labelled 255 left out)."""
    classes = logits.shape[1]
    overlap, predicted, true = [0.0] * classes, [0.0] * classes, [0.0] * classes
    for b, i, j in itertools.product(*map(range, labels.shape)):
        if int(labels[b, i, j]) == 255:
            continue
        e = [math.exp(v) for v in logits[b, :, i, j].tolist()]
        for c in range(classes):
            p, t = e[c] / sum(e), float(labels[b, i, j] == c)
            overlap[c] += p * t
            predicted[c] += p
            true[c] += t
    return [(2 * overlap[c] + 1) / (predicted[c] + true[c] + 1) for c in range(classes)]


def test_soft_dice_loss_pools_the_batch_and_averages_every_foreground_class():
    """Two images, three classes: each class's Dice sums p * g, p and g over the pixels of the
    whole batch (not image by image), and the loss averages classes 1 and 2 (all three with
    include_background). Expected values by plain loops over a softmax written out."""
    g = torch.Generator().manual_seed(13)
    logits = torch.randn(2, 3, 2, 3, generator=g)
    labels = torch.tensor([[[0, 1, 2], [2, 2, 1]], [[1, 0, 0], [2, 1, 0]]])
    dice = _dice_by_loops(logits, labels)
    assert soft_dice_loss(logits, labels).item() == pytest.approx(1 - (dice[1] + dice[2]) / 2, rel=1e-5)
    assert soft_dice_loss(logits, labels, include_background=True).item() == pytest.approx(1 - sum(dice) / 3, rel=1e-5)


def test_soft_dice_loss_leaves_ignored_pixels_out_of_every_class_background_included():
    """Pixels labelled 255 add neither probability nor a one-hot to any class, class 0 included
    (the one-hot is built from a clamped label, so an ignored pixel must not turn into a
    background pixel once the background counts). Loops over the labelled pixels only."""
    g = torch.Generator().manual_seed(16)
    logits = torch.randn(2, 3, 2, 3, generator=g)
    labels = torch.tensor([[[0, 255, 2], [255, 1, 0]], [[1, 255, 0], [2, 255, 255]]])
    dice = _dice_by_loops(logits, labels)
    assert soft_dice_loss(logits, labels, include_background=True).item() == pytest.approx(1 - sum(dice) / 3, rel=1e-5)
    assert soft_dice_loss(logits, labels).item() == pytest.approx(1 - (dice[1] + dice[2]) / 2, rel=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_at_ignored_pixels_leave_the_supervised_loss_and_its_gradient_as_they_are(bad):
    """Soft Dice and cross-entropy (ce+dice, the default) at pixels labelled 255: a NaN or inf
    logit there (NaN * 0 in a masked product) changes neither the value, by loops over the
    labelled pixels, nor the gradient of the labelled pixels, and sends none to the ignored ones."""
    from peerdistill.tasks.segmentation import SegmentationTask

    g = torch.Generator().manual_seed(17)
    logits = torch.randn(2, 3, 2, 3, generator=g)
    labels = torch.tensor([[[0, 255, 2], [255, 1, 0]], [[1, 255, 0], [2, 255, 255]]])
    broken = logits.clone()
    broken.permute(0, 2, 3, 1)[labels == 255] = bad
    dice = _dice_by_loops(logits, labels)
    assert soft_dice_loss(broken, labels).item() == pytest.approx(1 - (dice[1] + dice[2]) / 2, rel=1e-5)
    labelled = logits.permute(0, 2, 3, 1)[labels != 255].double()  # [P, C]
    ce = -(labelled.log_softmax(dim=1).gather(1, labels[labels != 255][:, None])).mean().item()
    grads = []
    for z in (logits, broken):
        z = z.clone().requires_grad_(True)
        loss = SegmentationTask(3).supervised_loss(z, labels)
        grads.append(torch.autograd.grad(loss, z)[0])
        assert loss.item() == pytest.approx(ce + 1 - (dice[1] + dice[2]) / 2, rel=1e-5)
    assert torch.isfinite(grads[1]).all() and (grads[1].permute(0, 2, 3, 1)[labels == 255] == 0).all()
    torch.testing.assert_close(grads[1], grads[0])
    z = broken.clone().requires_grad_(True)  # a batch of crops wholly outside the field of view: nothing to learn
    loss = SegmentationTask(3).supervised_loss(z, torch.full_like(labels, 255))
    assert loss.item() == 0 and (torch.autograd.grad(loss, z)[0] == 0).all()


class LinearCritic(nn.Module):
    """D(I, m) = sum(w * m): its gradient in m is w everywhere, so the penalty is (||w|| - 1)^2."""

    def __init__(self, shape):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape))

    def forward(self, image, probs):
        return (probs * self.w).flatten(1).sum(1)


def test_gradient_penalty_value_for_a_linear_critic():
    critic = LinearCritic((2, 3, 3))
    image = torch.zeros(4, 1, 3, 3)
    real, fake = torch.rand(4, 2, 3, 3), torch.rand(4, 2, 3, 3)
    expected = (critic.w.detach().norm() - 1) ** 2
    assert gradient_penalty(critic, image, real, fake).item() == pytest.approx(expected.item(), rel=1e-5)
    d_real, d_fake = critic(image, real).mean(), critic(image, fake).mean()
    total = discriminator_loss(critic, image, real, fake, gp_weight=10.0)
    assert total.item() == pytest.approx((d_fake - d_real + 10 * expected).item(), rel=1e-5)
    assert holistic_generator_loss(critic, image, fake).item() == pytest.approx(-d_fake.item(), rel=1e-6)


def test_the_critics_loss_sends_no_gradient_to_the_maps_it_scores():
    """discriminator_loss trains the critic only: the learner's (fake) and the source's (real)
    maps are detached, so the critic's step cannot push the learner toward a lower score; the
    learner's side is holistic_generator_loss, whose gradient in the map is -w / B here."""
    critic = LinearCritic((2, 3, 3))
    image = torch.zeros(4, 1, 3, 3)
    real = torch.rand(4, 2, 3, 3).requires_grad_(True)
    fake = torch.rand(4, 2, 3, 3).requires_grad_(True)
    discriminator_loss(critic, image, real, fake).backward()
    assert real.grad is None and fake.grad is None
    assert critic.w.grad is not None and critic.w.grad.abs().sum() > 0
    holistic_generator_loss(critic, image, fake).backward()
    assert torch.allclose(fake.grad, (-critic.w.detach() / 4).expand(4, 2, 3, 3))


class SquareCritic(nn.Module):
    """D(I, m) = sum(w * m^2): its gradient in m is 2 w m, which depends on where it is taken."""

    def __init__(self, shape, generator):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape, generator=generator))

    def forward(self, image, probs):
        return (self.w * probs**2).flatten(1).sum(1)


def test_gradient_penalty_is_taken_at_one_random_interpolate_per_sample():
    """With a critic whose gradient varies, the penalty shows where it is evaluated: at
    m_b = eps_b real_b + (1 - eps_b) fake_b, eps_b one uniform draw per sample from the generator
    given (drawn in sample order). Expected: mean_b (||2 w m_b|| - 1)^2 written out by hand, and
    its gradient in w (the penalty trains the critic) from that same formula."""
    g = torch.Generator().manual_seed(14)
    critic = SquareCritic((2, 3, 3), g)
    image = torch.zeros(4, 1, 3, 3)
    real, fake = torch.rand(4, 2, 3, 3, generator=g), torch.rand(4, 2, 3, 3, generator=g)
    eps = torch.rand(4, generator=torch.Generator().manual_seed(5)).tolist()
    w = critic.w.detach().flatten().tolist()
    per_sample = []
    for b in range(4):
        mixed = [eps[b] * r + (1 - eps[b]) * f for r, f in zip(real[b].flatten().tolist(), fake[b].flatten().tolist())]
        norm = math.sqrt(sum((2 * wi * mi) ** 2 for wi, mi in zip(w, mixed)))
        per_sample.append((norm - 1) ** 2)
    got = gradient_penalty(critic, image, real, fake, torch.Generator().manual_seed(5))
    assert got.item() == pytest.approx(sum(per_sample) / 4, rel=1e-5)

    wt = critic.w.detach().clone().requires_grad_(True)
    mixed = torch.stack([e * r + (1 - e) * f for e, r, f in zip(eps, real, fake)])
    by_hand = ((2 * wt * mixed).flatten(1).norm(dim=1) - 1).pow(2).mean()
    (expected_grad,) = torch.autograd.grad(by_hand, wt)
    (got_grad,) = torch.autograd.grad(got, critic.w)
    assert torch.allclose(got_grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_map_discriminator_scores_each_sample():
    """One score per sample: the image resized to the map, concatenated with it, strided
    convolutions with LeakyReLU(0.2), the global average over positions, then the linear score;
    compared with that forward pass written out with the module's own weights."""
    torch.manual_seed(0)
    d = MapDiscriminator(image_channels=1, num_classes=2, width=4, depth=2)
    g = torch.Generator().manual_seed(15)
    image, probs = torch.randn(3, 1, 32, 32, generator=g), torch.rand(3, 2, 16, 16, generator=g)
    scores = d(image, probs)  # the image is resized to the map
    assert scores.shape == (3,)
    h = torch.cat([nn.functional.interpolate(image, size=(16, 16), mode="bilinear", align_corners=False), probs], 1)
    for conv in (d.features[0], d.features[2]):
        h = nn.functional.leaky_relu(nn.functional.conv2d(h, conv.weight, conv.bias, stride=2, padding=1), 0.2)
    pooled = h.sum(dim=(2, 3)) / (h.shape[2] * h.shape[3])
    expected = pooled @ d.score.weight[0] + d.score.bias[0]
    assert torch.allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_only_integer_label_maps_mark_ignored_pixels():
    from peerdistill.spatial import valid_pixels

    maps = torch.zeros(1, 2, 16, 16)
    boxes = torch.tensor([[[0.0, 10.0, 10.0, 255.0, 200.0]]])  # a detection batch: [B, K, 5] floats
    assert valid_pixels(boxes, maps) is None and valid_pixels(torch.tensor([1, 0]), maps) is None
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 0, 0] = 255
    assert valid_pixels(labels, maps).sum() == 255


def test_label_maps_are_brought_to_a_smaller_maps_size_by_nearest_neighbour():
    # Labels larger than the maps are sampled (nearest: pixel 2i, 2j when halving), never blended
    # into classes no pixel has; the ignored pixels follow them to the maps' size.
    from peerdistill.spatial import labels_at, valid_pixels

    labels = torch.tensor([[[0, 3, 1, 1], [3, 3, 1, 1], [255, 0, 2, 2], [0, 0, 2, 2]]])
    maps = torch.zeros(1, 4, 2, 2)
    assert labels_at(labels, maps).tolist() == [[[0, 1], [255, 2]]]
    assert valid_pixels(labels, maps).tolist() == [[[True, True], [False, True]]]


def test_masked_mean_takes_only_a_boolean_mask_of_the_values_shape_and_is_zero_when_none_counts():
    from peerdistill.spatial import align_to, masked_mean

    values = torch.tensor([[1.0, float("nan")], [3.0, 5.0]])
    assert masked_mean(values, torch.tensor([[True, False], [True, True]])) == 3.0  # NaN left out
    assert masked_mean(values, torch.zeros(2, 2, dtype=torch.bool)) == 0.0
    with pytest.raises(ValueError, match="valid must be a boolean mask of shape \\(2, 2\\).*got float32"):
        masked_mean(values, torch.ones(2, 2))
    with pytest.raises(ValueError, match="got bool of shape \\(4,\\)"):
        masked_mean(values, torch.ones(4, dtype=torch.bool))
    half = torch.ones(1, 1, 2, 2, dtype=torch.half)
    assert align_to(half, (2, 2)) is half  # equal sizes: the same maps, not a float copy



def naive_supervised_segmentation_loss(logits, targets, weights, dice):
    """Cross-entropy over the labelled pixels (PyTorch's weighted mean: sum w_y * -log p_y over
    sum w_y), plus, for 'ce+dice', 1 - the mean over foreground classes of
    (2 sum p g + 1) / (sum p + sum g + 1) over the labelled pixels; pixel by pixel, in float64."""
    k = logits.shape[1]
    ce_sum = weight_sum = 0.0
    overlap, predicted, truth = [0.0] * k, [0.0] * k, [0.0] * k
    for b in range(logits.shape[0]):
        for i in range(logits.shape[2]):
            for j in range(logits.shape[3]):
                label = int(targets[b, i, j])
                if label == 255:
                    continue
                z = logits[b, :, i, j].double().tolist()
                norm = math.log(sum(math.exp(v) for v in z))
                p = [math.exp(v - norm) for v in z]
                ce_sum += weights[label] * (norm - z[label])
                weight_sum += weights[label]
                for c in range(k):
                    predicted[c] += p[c]
                    truth[c] += c == label
                    overlap[c] += p[c] * (c == label)
    loss = ce_sum / weight_sum
    if dice:
        loss += 1 - sum((2 * overlap[c] + 1) / (predicted[c] + truth[c] + 1) for c in range(1, k)) / (k - 1)
    return loss


@pytest.mark.parametrize("loss, weighted", [("ce+dice", False), ("ce+dice", True), ("ce", True)])
def test_the_segmentation_label_loss_is_weighted_cross_entropy_plus_soft_dice_by_hand(loss, weighted):
    from peerdistill.tasks import SegmentationTask

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 4, 5, generator=g) * 2
    targets = torch.randint(0, 3, (2, 4, 5), generator=g)
    targets[0, 0, :3] = targets[1, 2, 4] = 255  # ignored pixels count in neither part
    weights = [0.2, 1.0, 3.5] if weighted else [1.0, 1.0, 1.0]
    task = SegmentationTask(3, class_weights=torch.tensor(weights) if weighted else None, loss=loss)
    expected = naive_supervised_segmentation_loss(logits, targets, weights, dice=loss == "ce+dice")
    assert task.supervised_loss(logits, targets).item() == pytest.approx(expected, rel=1e-5)
    wholly_ignored = task.supervised_loss(logits.requires_grad_(True), torch.full_like(targets, 255))
    assert wholly_ignored.item() == 0.0
    wholly_ignored.backward()  # a zero that keeps the graph: the step's backward still runs
    assert (logits.grad == 0).all()
