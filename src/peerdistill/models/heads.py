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

from ..config.cohort_spec import repeated_heads
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


def same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two recorded outputs are one tensor: the same object, or a view of the same
    memory of the same shape and layout (an output returned through ``.view`` or ``.squeeze``)."""
    if a is b:
        return True
    try:
        return (a.data_ptr() == b.data_ptr() != 0 and a.shape == b.shape and a.stride() == b.stride()
                and a.dtype == b.dtype and a.device == b.device)
    except (RuntimeError, NotImplementedError):  # (a tensor without plain storage: its object alone tells)
        return False


def last_feature_layer(base: nn.Module, deep_layer: str, sample_input: torch.Tensor) -> str | None:
    """The network's own ``feature_layer`` where it names one (zoo models), else the last module
    with weights to finish its forward before ``deep_layer`` begins (the block that feeds the
    classifier, pooling and flattening passed over); None if there is none."""
    own = getattr(base, "feature_layer", None)
    paths = dict(base.named_modules())
    if isinstance(own, str) and own and own != deep_layer and own in paths:
        return own
    finished: list[str] = []  # the modules with weights that ended before deep_layer began, in that order
    started: list[bool] = []

    def begin(*_):
        started.append(True)

    def end(path):
        def hook(*_):
            if not started:
                finished.append(path)
        return hook

    handles = [paths[deep_layer].register_forward_pre_hook(begin)]
    for path, module in paths.items():
        if path and path != deep_layer and any(True for _ in module.parameters()):
            handles.append(module.register_forward_hook(end(path)))
    try:
        with torch.no_grad():
            base(sample_input)
    except (RuntimeError, ValueError):
        return None
    finally:
        for handle in handles:
            handle.remove()
    return finished[-1] if finished else None


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
        """``check_depth``: refuse a head whose layer runs after ``deep_layer`` or gives its very
        output, and a ``deep_layer`` that gives the network's output (off for a saved run's model,
        which trained so); ``deep_from``: where the deep layer came from, for those messages."""
        super().__init__()
        if not head_layers:
            raise ConfigError(f"{owner}: self-distillation needs at least one head layer")
        if (problem := repeated_heads(list(head_layers))) is not None:
            raise ConfigError(f"{owner}: head layers {problem}")
        deep = find_module(base, deep_layer, owner)
        if deep_layer in head_layers:
            raise ConfigError(f"{owner}: head layer '{deep_layer}' is the deepest layer itself, {deep_from} "
                              f"'{deep_layer}', whose features every head learns from: a head there would learn "
                              "them from themselves; put heads on earlier layers")
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
                    output = base(sample_input)
            except (RuntimeError, ValueError) as exc:
                raise ConfigError(f"{owner} failed on an input of shape {tuple(sample_input.shape[1:])}: "
                                  f"{str(exc).splitlines()[0]}") from None
            if check_depth:  # (before take(): a layer changed in place is the tensor of the layer that changed it)
                self._refuse_deep_output(base, recorder.features, output, deep_from, sample_input)
                # (and before take()'s refusal of a layer changed in place: a head moved to an earlier
                # layer, as this one says, needs no other fix for that)
                self._refuse_heads_after_deep(base, list(recorder.features), deep_from)
            recorded = recorder.take(complete=True)
        base.train(was_training)
        shapes = {path: tuple(f.shape[1:]) for path, f in recorded.items()}
        for path in (*head_layers, deep_layer):  # (a head convolves, the deep feature pools, [C, H, W] maps)
            refuse_channels_last(base, path, shapes[path], f"{owner}, self-distillation")
        deep_dim = channels(shapes[deep_layer], f"{owner}'s deep layer '{deep_layer}'")
        self.heads = nn.ModuleList(
            AuxHead(channels(shapes[p], f"{owner}'s head layer '{p}'"), deep_dim, num_classes,
                    spatial=len(shapes[p]) == 3)
            for p in head_layers
        )

    def _refuse_heads_after_deep(self, base: nn.Module, order: list[str], deep_from: str) -> None:
        """Refuse head layers that run after the deep layer (``order``: the order the layers gave
        the outputs recorded in, a module's after its children's), whose features each head
        learns from. A layer that gave nothing, or a module placed at several paths (recorded at
        its last place), is left to the recorder, which names it."""
        head_layers, deep_layer, owner = self.head_layers, self.deep_layer, self.owner
        layers = [*head_layers, deep_layer]
        if any(p not in order for p in layers) or any(len(places_of(base, find_module(base, p, owner))) > 1
                                                      for p in layers):
            return
        deeper = [p for p in head_layers if order.index(p) > order.index(deep_layer)]
        if deeper:
            raise ConfigError(f"{owner}: head layer(s) {deeper} run after {deep_from} '{deep_layer}', whose features "
                              "each head learns from: heads sit on shallower layers; pick earlier ones, or a "
                              f"deeper deep_layer (forward order: {', '.join(order)})")

    def _refuse_deep_output(self, base: nn.Module, recorded: dict[str, torch.Tensor], output,
                            deep_from: str, sample_input: torch.Tensor) -> None:
        """Refuse what a probe forward shows that layer names cannot: a ``deep_layer`` whose output
        is the network's own (its classifier: the heads' hint would be the class scores, and no
        feature layer), and a head layer whose output is the very tensor of the deep layer (the
        last module of the deep block, or a layer the deep block's last module changes in place),
        whose head would learn the deep features from themselves."""
        deep_layer, owner = self.deep_layer, self.owner
        deep = recorded.get(deep_layer)
        if deep is None:
            return  # (take(complete=True) names the layer that gave nothing)
        from ..cohort import as_logits  # (cohort builds on this module)

        try:
            logits = as_logits(output, owner)
        except ConfigError:
            logits = None  # (said where the network's outputs are read)
        if logits is not None and same_tensor(deep, logits):
            other = last_feature_layer(base, deep_layer, sample_input)
            instead = (f"set deep_layer to the feature layer before it, '{other}'" if other
                       else "set deep_layer to the module path of the network's last feature block")
            raise ConfigError(f"{owner}: {deep_from} '{deep_layer}' gives the network's own output (its classifier's "
                              "scores), where deep_layer is the last feature layer before the classifier, whose "
                              f"features the heads are matched to: {instead}")
        same = [p for p in self.head_layers if p in recorded and same_tensor(recorded[p], deep)]
        if same:
            raise ConfigError(f"{owner}: head layer '{same[0]}' gives the very output of {deep_from} '{deep_layer}' "
                              "(one tensor: the deep block's last layer, or one it changes in place), whose features "
                              "every head learns from, so its head would learn them from themselves: put the head on "
                              f"an earlier layer, one that runs before '{deep_layer}' ends")

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
