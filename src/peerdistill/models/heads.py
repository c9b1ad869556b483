"""Auxiliary classifier heads for self-distillation (Be Your Own Teacher, Zhang et al. 2019).

``HeadedModel`` wraps any network: forward hooks take the feature maps at the chosen module
paths, and each feeds a shallow head (1x1 bottleneck conv + BN + ReLU, global pooling, linear
classifier). The network's own output is the deepest classifier; its pooled features at
``deep_layer`` are the hint target of every head's bottleneck features.

A layer may give maps [C, H, W], token sequences [L, D] (a transformer's blocks: the head's
bottleneck is a linear layer over D, pooled over the L tokens) or vectors [F].
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..capture import FeatureRecorder, find_module, places_of, refuse_channels_last
from ..errors import ConfigError

DEEP_FEATURE = "@deep"
HEAD_FEATURE = "@bottleneck"


def pooled(feature: torch.Tensor) -> torch.Tensor:
    """One vector per sample: maps averaged over positions, token sequences over tokens."""
    if feature.ndim == 4:
        return feature.mean(dim=(2, 3))
    return feature.mean(dim=1) if feature.ndim == 3 else feature


def channels(shape: tuple[int, ...], where: str) -> int:
    """The channels of a feature of per-sample ``shape``: C of [C, H, W], D of [L, D], F of [F]."""
    if len(shape) not in (1, 2, 3):
        raise ConfigError(f"{where} gives features of shape {list(shape)}: heads take [C, H, W] maps, [L, D] token "
                          "sequences or [F] vectors; pick another layer")
    return shape[-1] if len(shape) == 2 else shape[0]


class AuxHead(nn.Module):
    def __init__(self, in_channels: int, feature_dim: int, num_classes: int, spatial: bool):
        super().__init__()
        # Maps: a 1x1 convolution; tokens and vectors: a linear layer over their last dimension.
        self.bottleneck = (nn.Sequential(nn.Conv2d(in_channels, feature_dim, 1, bias=False),
                                         nn.BatchNorm2d(feature_dim), nn.ReLU(inplace=True))
                           if spatial else nn.Sequential(nn.Linear(in_channels, feature_dim), nn.ReLU(inplace=True)))
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = pooled(self.bottleneck(x))
        return self.classifier(feature), feature


class HeadedModel(nn.Module):
    """A network with self-distillation heads (Be Your Own Teacher, the ``self`` preset): a small
    classifier on the output of each of ``head_layers``, taught by the network's own output and
    matched to ``deep_layer``'s features. Its forward returns a dict: the network's ``logits``,
    each head's logits (``heads``) and features (``head_features``), and ``deep_layer``'s pooled
    feature (``deep_feature``); a saved run's model is read back with or without the heads
    (``load_cohort(..., with_heads=False)``)."""

    def __init__(self, base: nn.Module, head_layers: list[str], deep_layer: str, num_classes: int,
                 sample_input: torch.Tensor, owner: str = "model", check_depth: bool = True,
                 deep_from: str = "deep_layer"):
        """``check_depth``: refuse a head whose layer runs after ``deep_layer`` (off for a saved
        run's model, which trained so); ``deep_from``: where the deep layer came from, for that message."""
        super().__init__()
        if not head_layers:
            raise ConfigError(f"{owner}: self-distillation needs at least one head layer")
        deep = find_module(base, deep_layer, owner)
        if deep_layer in head_layers:
            raise ConfigError(f"{owner}: head layer '{deep_layer}' is the deepest layer itself")
        same = [p for p in head_layers if find_module(base, p, owner) is deep]
        if same:  # one module object under two paths: one hook cannot tell them apart
            raise ConfigError(f"{owner}: head layer '{same[0]}' and deep layer '{deep_layer}' are one module object "
                              f"(placed at {places_of(base, deep)}: a module reused, or named twice), so their "
                              "recorded outputs would be one: give each place a module of its own (a new nn.ReLU() "
                              "for each, say), or pick other layers")
        self.base = base
        self.head_layers = list(head_layers)
        self.deep_layer = deep_layer
        self.owner = owner
        self._held: FeatureRecorder | None = None
        was_training = base.training
        base.eval()
        with self._recording() as recorder:
            try:
                with torch.no_grad():
                    base(sample_input)
            except (RuntimeError, ValueError) as exc:
                raise ConfigError(f"{owner} failed on an input of shape {tuple(sample_input.shape[1:])}: "
                                  f"{str(exc).splitlines()[0]}") from None
            recorded = recorder.take(complete=True)
        base.train(was_training)
        shapes = {path: tuple(f.shape[1:]) for path, f in recorded.items()}
        order = list(shapes)  # the order the layers gave the outputs kept in (a module's after its children's)
        deeper = [p for p in head_layers if order.index(p) > order.index(deep_layer)]
        if check_depth and deeper:
            raise ConfigError(f"{owner}: head layer(s) {deeper} run after {deep_from} '{deep_layer}', whose features "
                              "each head learns from: heads sit on shallower layers; pick earlier ones, or a "
                              f"deeper deep_layer (forward order: {', '.join(order)})")
        for path in (*head_layers, deep_layer):  # (a head convolves, the deep feature pools, [C, H, W] maps)
            refuse_channels_last(base, path, shapes[path], f"{owner}, self-distillation")
        deep_dim = channels(shapes[deep_layer], f"{owner}'s deep layer '{deep_layer}'")
        self.heads = nn.ModuleList(
            AuxHead(channels(shapes[p], f"{owner}'s head layer '{p}'"), deep_dim, num_classes,
                    spatial=len(shapes[p]) == 3)
            for p in head_layers
        )

    @contextlib.contextmanager
    def _recording(self) -> Iterator[FeatureRecorder]:
        """The head and deep layers hooked: for the duration only, unless held (``hold_hooks``).
        The network carries no hook of ours between forwards otherwise (``torch.save(model.base)``
        works, a forward of the bare network keeps nothing)."""
        if self._held is not None:
            yield self._held
            return
        recorder = FeatureRecorder(self.base, [*self.head_layers, self.deep_layer], self.owner)
        try:
            yield recorder
        finally:
            recorder.remove()

    def hold_hooks(self, on: bool) -> None:
        """Keep the layers hooked between forwards (the trainer, for a fit: a compiled forward
        registering hooks broke its graph at each), hooked anew on the layers there now (after
        SyncBatchNorm replaced them); or let them go."""
        if self._held is not None:
            self._held.remove()
            self._held = None
        if on:
            self._held = FeatureRecorder(self.base, [*self.head_layers, self.deep_layer], self.owner)

    def forward(self, x: torch.Tensor) -> dict:
        with self._recording() as recorder:
            logits = self.base(x)
            features = recorder.take(complete=True)
        heads, head_features = {}, {}
        for path, head in zip(self.head_layers, self.heads):
            if not features[path].requires_grad and self.training and torch.is_grad_enabled() and any(
                    p.requires_grad for p in self.base.parameters()):
                # Recorded inside torch.utils.checkpoint(use_reentrant=True): the head would learn,
                # the layers beneath it nothing from it.
                raise ConfigError(f"{self.owner}: head layer '{path}' gives its output without a gradient "
                                  "in training, so its head cannot teach the layers beneath: no trainable layer "
                                  "comes before it (it reshapes the input, or follows frozen layers only), or it "
                                  "runs inside torch.utils.checkpoint(use_reentrant=True) (use use_reentrant=False); "
                                  "pick a layer after a trained one")
            heads[path], head_features[path] = head(features[path])
        return {"logits": logits, "heads": heads, "head_features": head_features,
                "deep_feature": pooled(features[self.deep_layer])}
