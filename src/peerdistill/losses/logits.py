"""Losses on logits (Hinton et al. 2015; Zhang et al., Deep Mutual Learning, 2018; Zhao et al.,
Decoupled Knowledge Distillation, 2022)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..spatial import check_valid, masked_mean


def checked_temperature(value, fn: str) -> float:
    """The temperature as a number, refused where it would soften nothing or reverse the classes."""
    if isinstance(value, torch.Tensor) and value.requires_grad:
        raise ValueError(f"{fn}: the temperature is taken as a number, so a learnable one would get no gradient; "
                         "pass a float")
    t = float(value)
    if not (math.isfinite(t) and t > 0):  # T < 0 reverses both distributions' class order
        raise ValueError(f"{fn}: temperature {t} must be a finite number above 0")
    return t


def _check_logits(logits: torch.Tensor, fn: str) -> None:
    if logits.ndim < 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"{fn}: logits of shape {tuple(logits.shape)}; expected a non-empty batch with the classes on "
                         "dim 1: [B, C] or [B, C, H, W]")
    if not logits.is_floating_point():  # (integer or boolean scores: a slip, taken as numbers without a word)
        raise ValueError(f"{fn}: logits must be floating point, got {logits.dtype}")
    if logits.shape[1] == 1:  # (review 55c: 0 with no gradient, whatever the logits, before)
        raise ValueError(f"{fn}: logits of shape {tuple(logits.shape)} hold one class, and a softmax over one class "
                         "is 1 whatever the logits (the loss would be 0); a sigmoid's logit x is the two-class "
                         "logits [0, x]: torch.cat([torch.zeros_like(x), x], dim=1)")


def _check_distribution(q: torch.Tensor, fn: str) -> None:
    """A target of probabilities over dim 1 (NaN passes, for the trainer's non-finite guard to
    name the term)."""
    if bool((q < 0).any()) or bool(((q.sum(dim=1) - 1).abs() > 1e-3).any()):
        raise ValueError(f"{fn}: the target is not a distribution over dim 1 (negative, or not summing to 1); "
                         "logits go to soft_kl")


def soft_kl(student_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float = 1.0,
            valid: torch.Tensor | None = None) -> torch.Tensor:
    """``T^2 * KL(softmax(target / T) || softmax(student / T))``, averaged over the batch.

    Classes are on dim 1, so [B, C] logits and [B, C, H, W] maps (one distribution per pixel)
    both work; for maps the sum over classes is averaged over batch and pixels, only over the
    ``valid`` ones ([B, H, W] booleans) when given: ignored pixels teach nothing.
    The target is detached: the source of an edge never receives gradient through it.
    The T^2 factor keeps gradient magnitudes comparable across temperatures (Hinton et al.).
    """
    if student_logits.shape != target_logits.shape:
        raise ValueError(
            f"soft_kl: student logits {tuple(student_logits.shape)} and target logits "
            f"{tuple(target_logits.shape)} differ in shape"
        )
    _check_logits(student_logits, "soft_kl")
    t = checked_temperature(temperature, "soft_kl")
    log_p_target = F.log_softmax(target_logits.detach().float() / t, dim=1)
    return _kl(log_p_target.exp(), log_p_target, student_logits, t, valid)


def kl_to_probs(student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float = 1.0,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """``T^2 * KL(q || softmax(student / T))`` for a target distribution ``q`` already softened
    (an average of several sources' ``softmax(z / T)``); ``q`` is detached. ``valid`` as in
    ``soft_kl``."""
    if student_logits.shape != target_probs.shape:
        raise ValueError(f"kl_to_probs: shapes {tuple(student_logits.shape)} and {tuple(target_probs.shape)} differ")
    _check_logits(student_logits, "kl_to_probs")
    q = target_probs.detach().float()
    _check_distribution(q, "kl_to_probs")
    return kl_to_softened(student_logits, q, checked_temperature(temperature, "kl_to_probs"), valid)


def kl_to_softened(student_logits: torch.Tensor, q: torch.Tensor, t: float,
                   valid: torch.Tensor | None = None) -> torch.Tensor:
    """``kl_to_probs`` without its checks, for targets made by ``combine_soft_targets`` (the
    checks would stop the GPU once per term and step)."""
    q = q.detach().float()
    return _kl(q, q.clamp_min(1e-12).log(), student_logits, t, valid)


def _kl(q: torch.Tensor, log_q: torch.Tensor, student_logits: torch.Tensor, t: float,
        valid: torch.Tensor | None) -> torch.Tensor:
    student_logits = student_logits.float()
    if valid is not None:  # a pixel left out teaches nothing and learns nothing: a NaN or inf there
        # (outside a field of view, an fp16 overflow), in the target or the learner, would still reach
        # the learner's gradient (q * log_p, and log_softmax's backward: NaN * 0)
        check_valid(valid, q.shape[:1] + q.shape[2:])
        q = q.masked_fill(~valid.unsqueeze(1), 0)
        student_logits = student_logits.masked_fill(~valid.unsqueeze(1), 0)
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    # q log q is 0 where q is 0; the where() keeps 0 * -inf from producing NaN, while a NaN
    # target stays NaN (for the non-finite guard to name) instead of teaching nothing unseen.
    kl_per_item = torch.where(q == 0, torch.zeros_like(q), q * (log_q - log_p_student)).sum(dim=1)
    return masked_mean(kl_per_item, valid) * (t * t)


def decoupled_kd(student_logits: torch.Tensor, target_probs: torch.Tensor, labels: torch.Tensor,
                 temperature: float = 1.0, nckd_weight: float = 8.0) -> torch.Tensor:
    """Decoupled knowledge distillation (Zhao et al., CVPR 2022) for [B, C] class scores:
    ``T^2 * (TCKD + nckd_weight * NCKD)``, averaged over the batch. With ``t`` the true class and
    ``q`` the target's softened distribution (``softmax(z / T)``, or several sources' average),
    ``p`` the student's: TCKD is the binary KL between ``(q_t, 1 - q_t)`` and ``(p_t, 1 - p_t)``
    (how sure of the true class), NCKD the KL between the non-target classes' distributions
    renormalised without ``t`` (``q_i / (1 - q_t)``; what the wrong classes look like), which
    classic KD weighs down by ``1 - q_t`` exactly where the source is confident. ``q`` is
    detached."""
    if student_logits.ndim != 2 or student_logits.shape != target_probs.shape or labels.shape != student_logits.shape[:1]:
        raise ValueError(f"decoupled_kd compares [B, C] class scores with one label per sample: got "
                         f"{tuple(student_logits.shape)}, {tuple(target_probs.shape)} and labels {tuple(labels.shape)}")
    _check_logits(student_logits, "decoupled_kd")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"decoupled_kd: labels are class indices (int64), got {labels.dtype}")
    classes = student_logits.shape[1]
    if bool(((labels < 0) | (labels >= classes)).any()):
        raise ValueError(f"decoupled_kd: labels are class indices 0 to {classes - 1}, got values "
                         f"{sorted({int(v) for v in labels[(labels < 0) | (labels >= classes)].tolist()})[:5]}")
    if not (isinstance(nckd_weight, (int, float)) and not isinstance(nckd_weight, bool) and math.isfinite(nckd_weight)
            and nckd_weight >= 0):
        raise ValueError(f"decoupled_kd: nckd_weight must be a finite number, 0 or more (the paper's 8), got "
                         f"{nckd_weight!r}")
    q = target_probs.detach().float()
    _check_distribution(q, "decoupled_kd")  # (review 52b: logits given as the target gave 692.7)
    return dkd_to_softened(student_logits, q, labels, checked_temperature(temperature, "decoupled_kd"), nckd_weight)


def dkd_to_softened(student_logits: torch.Tensor, q: torch.Tensor, labels: torch.Tensor, t: float,
                    nckd_weight: float) -> torch.Tensor:
    """``decoupled_kd`` without its checks, for the graph's targets and labels (checked where they
    are made; the checks would stop the GPU once per term and step)."""
    q = q.detach().float()
    z = student_logits.float() / t
    true = F.one_hot(labels.long(), z.shape[1]).bool()
    log_p = F.log_softmax(z, dim=1)
    log_p_true = log_p[true]  # [B]
    log_p_rest = torch.logsumexp(z.masked_fill(true, float("-inf")), dim=1) - torch.logsumexp(z, dim=1)
    q_true = q[true].clamp(0, 1)
    # The wrong classes' mass summed, not 1 - q_t: for a confident source 1 - q_t loses every digit
    # in float32 (q_t rounds to 1 while the q_i it renormalises do not), and NCKD explodes.
    q_rest = q.masked_fill(true, 0).sum(dim=1).clamp_min(0)
    tckd = (torch.xlogy(q_true, q_true) - q_true * log_p_true) + (torch.xlogy(q_rest, q_rest) - q_rest * log_p_rest)
    # Non-target distributions; a source certain of the true class (q_rest 0) has none to teach.
    log_p_hat = F.log_softmax(z.masked_fill(true, float("-inf")), dim=1)
    q_hat = torch.where(true, torch.zeros_like(q), q / q_rest.clamp_min(1e-12)[:, None])
    nckd = torch.where(true, torch.zeros_like(q), torch.xlogy(q_hat, q_hat) - q_hat * log_p_hat).sum(dim=1)
    return (tckd + nckd_weight * nckd).mean() * (t * t)


def combine_soft_targets(logits: list[torch.Tensor], temperature: float,
                         weights: torch.Tensor | list[float] | None = None) -> torch.Tensor:
    """``q = sum_i mu_i softmax(z_i / T) / sum_i mu_i``. ``weights``: one number per source, or a
    per-sample tensor [K, B] (or [K, B, H, W] for maps), normalised over K here."""
    if weights is not None and torch.as_tensor(weights).ndim > 1:
        _check_per_sample_weights(torch.as_tensor(weights), logits)
    return mix_soft_targets(logits, temperature, weights)


def _check_per_sample_weights(w: torch.Tensor, logits: list[torch.Tensor]) -> None:
    """Per-sample weights [K, B, ...] (the sources' shape without the classes), finite, 0 or
    more, and not all 0 for any sample (review 52b: a NaN target, or a negative weight, silently)."""
    if logits and tuple(w.shape) != (len(logits), logits[0].shape[0], *logits[0].shape[2:]):
        raise ValueError(f"combine_soft_targets: per-sample weights of shape {tuple(w.shape)}; expected "
                         f"{(len(logits), logits[0].shape[0], *logits[0].shape[2:])}, one weight per source and sample "
                         "([K, B], or [K, B, H, W] for maps)")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w.sum(dim=0) <= 0).any()):
        raise ValueError("combine_soft_targets: per-sample weights must be finite, 0 or more, and sum above 0 over the "
                         "sources for every sample")


def mix_soft_targets(logits: list[torch.Tensor], temperature: float,
                     weights: torch.Tensor | list[float] | None = None) -> torch.Tensor:
    """``combine_soft_targets`` without its check of per-sample weights' values, for the graph's
    (``confidence_weights``', sound as made; the check would stop the GPU once per step)."""
    if not logits or len({tuple(z.shape) for z in logits}) > 1:
        raise ValueError(f"combine_soft_targets: needs one or more sources of one shape, got shapes "
                         f"{[tuple(z.shape) for z in logits]}")
    t = checked_temperature(temperature, "combine_soft_targets")
    probs = torch.stack([F.softmax(z.detach().float() / t, dim=1) for z in logits])  # [K, B, C, ...]
    k = probs.shape[0]
    w = torch.ones(k) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if w.ndim == 1:  # (checked before it moves to the device: a small CPU tensor, no wait on the GPU)
        if w.shape[0] != k or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"combine_soft_targets: need {k} finite non-negative weights with a positive sum, "
                             f"got {w.tolist()}")
    w = w.to(probs.device)
    if w.ndim == 1:
        w = (w / w.sum()).view(k, *([1] * (probs.ndim - 1)))
    else:
        w = (w / w.sum(dim=0, keepdim=True)).unsqueeze(2)  # a class axis: [K, B, 1, ...]
    return (w * probs).sum(dim=0)


def confidence_weights(logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Per-sample teacher weights of CA-MKD (Zhang, Chen & Wang, "Confidence-Aware Multi-Teacher
    Knowledge Distillation", ICASSP 2022): ``w_k = (1 - softmax_k(CE)) / (K - 1)``, the softmax
    taken over the K teachers' cross-entropies with the label, so the teacher closer to the truth
    weighs more. Returns [K, B] weights ([K, B, H, W] for maps) summing to 1 over K; pixels
    labelled 255 (ignored) weigh the teachers equally (in label maps only: 255 is a class of
    its own in classification)."""
    if not logits or len({tuple(z.shape) for z in logits}) > 1:  # (review 52b: teachers of 5 and 3 classes weighed)
        raise ValueError(f"confidence_weights: needs one or more teachers' logits of one shape, got shapes "
                         f"{[tuple(z.shape) for z in logits]}")
    ignore = 255 if labels.ndim > 1 else -100
    ce = torch.stack([F.cross_entropy(z.detach().float(), labels, reduction="none", ignore_index=ignore)
                      for z in logits])
    k = ce.shape[0]
    if k == 1:
        return torch.ones_like(ce)
    return (1.0 - F.softmax(ce, dim=0)) / (k - 1)
