"""``engine.predict``'s checks of the batch it is given: one refusal before the models run (a
single image without its batch axis, which a convolution would take as unbatched and answer
wrongly) and one hint after they failed on a batch's shape (the fix that shape suggests)."""

from __future__ import annotations

import numpy as np
import torch

from ..cohort import Cohort
from ..errors import DataError


def _image_conv(cohort: Cohort, x: torch.Tensor) -> torch.nn.Conv2d | None:
    """The 2-D convolution that the first model holding one applies first to its input (its
    stem), or None for models of other inputs (feature vectors). Found by running the model up to
    that convolution: the order its layers were registered in need not be the order they run in
    (a head or side branch defined before the stem). Where no probe reaches a convolution, the
    first one registered."""
    for member in cohort.members:
        convs = [layer for layer in member.module.modules() if isinstance(layer, torch.nn.Conv2d)]
        if convs:
            conv = _first_applied(member.module, convs, _probes(x, convs)) or convs[0]
            return conv if conv.in_channels > 0 else None  # (a lazy one's count is not known yet)
    return None


def _probes(x: torch.Tensor, convs: list[torch.nn.Conv2d]):
    """The batch itself, then a small image of each channel count the convolutions take: layers
    before the stem (a per-channel normalisation) may refuse the batch's own shape."""
    yield x
    weight = convs[0].weight
    for channels in dict.fromkeys(conv.in_channels for conv in convs):
        yield torch.zeros(1, channels, 32, 32, dtype=weight.dtype, device=weight.device)


class _Reached(BaseException):
    """Raised by a probe's hook at the first convolution a model applies: nothing after it runs.
    (Not an Exception, which a model's own ``except Exception`` would swallow.)"""

    def __init__(self, conv: torch.nn.Conv2d):
        super().__init__()
        self.conv = conv


def _stop_at(conv: torch.nn.Conv2d):
    def hook(_module, _inputs):
        raise _Reached(conv)
    return hook


def _first_applied(model: torch.nn.Module, convs: list[torch.nn.Conv2d], probes) -> torch.nn.Conv2d | None:
    """The convolution of ``convs`` that the first probe reaching one reaches first, or None."""
    if any(torch.nn.parameter.is_lazy(p) for p in model.parameters()):
        return None  # a probe would fix a lazy layer's shapes
    handles = [conv.register_forward_pre_hook(_stop_at(conv)) for conv in convs]
    was_training = model.training
    model.eval()  # (a probe must not move BatchNorm statistics)
    try:
        with torch.no_grad():
            for probe in probes:
                try:
                    model(probe)
                except _Reached as reached:
                    return reached.conv
                except Exception:  # refused before any convolution ran: the next probe
                    continue
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return None


BATCH_FIXES = ("torch.as_tensor(x) for an array; x[None] for one image; x[:, None] for grey images [N, H, W]; "
               "x.permute(0, 3, 1, 2) for channels-last [N, H, W, C]")


def checked_batch(cohort: Cohort, x) -> torch.Tensor:
    """``predict``'s batch: a tensor (a NumPy array of floats is taken as one, on the models'
    device, in float32). Refused here is only what the models might take without failing and
    answer wrongly: for image models, a 3-D batch whose first axis is their channel count, one
    image [C, H, W] without its batch axis (a convolution takes it as unbatched). Any other shape
    goes to the models, which may take feature vectors [N, F] and reshape them themselves;
    ``batch_hint`` explains a shape they fail on."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise DataError(f"predict takes the images as the models saw them in training, floats (a run from arrays "
                            f"standardised them by meta['data_stats']), got a NumPy array of {x.dtype}: scale and "
                            "standardise them as the training data was, then pass them as floats")
        first = next((p for m in cohort.members for p in m.module.parameters()), None)
        x = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32,
                            device=first.device if first is not None else None)
    elif not isinstance(x, torch.Tensor):
        raise DataError(f"predict takes a batch x as a torch tensor [N, C, H, W] (or a NumPy array), got a "
                        f"{type(x).__name__}: stack the images into one, torch.stack(images)")
    conv = _image_conv(cohort, x) if x.ndim == 3 else None  # (the probe only where it may refuse)
    if conv is not None and x.shape[0] == conv.in_channels:
        raise DataError(_shape_message(conv, x, ": one image [C, H, W] without its batch axis? x[None] makes it a "
                                                "batch of one"))
    return x


def _shape_message(conv: torch.nn.Conv2d, x: torch.Tensor, fix: str) -> str:
    return (f"predict takes a batch x of shape [N, C, H, W] (the models take {conv.in_channels} channel(s)), got "
            f"shape {tuple(x.shape)}{fix}")


def batch_hint(cohort: Cohort, x: torch.Tensor) -> str | None:
    """What to say when image models failed on a batch ``x``: the fix its shape suggests, or None
    where the shape is one they take ([N, C, H, W]), so the failure is not the batch's."""
    conv = _image_conv(cohort, x)
    if conv is None:
        return None
    channels = conv.in_channels
    if x.ndim == 4:
        if x.shape[1] == channels or x.shape[-1] != channels:
            return None
        return _shape_message(conv, x, ", which looks channels-last [N, H, W, C]: x.permute(0, 3, 1, 2)")
    if x.ndim == 3 and channels == 1:
        fix = "grey images [N, H, W] without their channel axis? x[:, None] gives [N, 1, H, W]"
    elif x.ndim == 3:
        fix = "one image without its batch axis (x[None]), or images without their channel axis (x[:, None])?"
    else:
        fix = BATCH_FIXES
    return _shape_message(conv, x, ": " + fix)
