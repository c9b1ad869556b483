"""Run several students of one architecture as one packed network per step.

K students of the same architecture are run K times per step by default: K small kernels per
layer, which leaves a GPU mostly idle for compact students. ``StudentGroup`` runs them as one
network instead: each forward stacks the K students' parameters and buffers along a new leading
dimension and calls the architecture once under ``torch.func.vmap`` + ``functional_call``, so each
layer is one batched kernel for all K students.

It is an execution strategy only, mathematically the same as running the students one by one:

- the students' own ``nn.Parameter`` s stay the leaves: ``torch.stack`` is differentiable, so each
  student's gradient lands in its own ``.grad`` (its own optimizer, checkpoint, export, unchanged);
- every student sees the same input batch and keeps its own BatchNorm statistics (updated in its
  own buffers exactly as when it runs alone), and whatever else its forward changes: a buffer
  assigned anew, a parameter changed in place (an Embedding's max_norm); these two are watched
  in eager mode only, not under torch.compile (which would break its graph there) nor under
  inference_mode (whose tensors keep no version counter);
- dropout draws a different mask per student (``randomness="different"``).

Known limits: the students must share class, module structure, settings and plain attributes
(every packed student runs the first one's code), reach no layer under two names, and carry no
hooks of the user's own (``fusable`` says why not); code whose Python control flow reads tensor
values (``.item()``, ``float(t)``, data-dependent ``if``) cannot run under vmap; BatchNorm with ``momentum=None`` (cumulative
average) is one such case and is refused; SyncBatchNorm is refused. The random numbers
drawn under vmap differ from those of separate runs, so dropout models are equivalent in
distribution, not bit for bit. Under autocast, vmap would skip autocast's casts; ``_AutocastOps``
restores them for convolutions, linear layers, attention and batch/instance norm; other ops on
autocast's lists (layer/group norm, softmax, a loss inside a model) do not get its cast and run
in the dtype their inputs and weights promote to. With channels_last inputs, adaptive pooling
has no batching rule for one of its ops (``as_strided_``) and loops over the students with a
performance warning (results are right). On CPU the group is slower than separate runs (vmap
turns each convolution into a grouped one, and moves batch dimensions with copies); the gain
is meant for GPUs, where K small students leave most of the device idle.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm
from torch.func import functional_call, vmap
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map  # the pytree vmap itself uses for inputs and outputs

from ..capture import find_module, first_tensor, is_packing_safe
from ..errors import ConfigError


# Autocast under vmap. The batching rules run before the autocast dispatch key and rewrite the
# heavy ops (a batched-weight conv becomes a grouped ``convolution``, a batched-bias linear an
# ``addmm``, ...) into ops autocast does not list, so they silently stay in fp32; and batch norm
# with a low-precision input and fp32 statistics fails under vmap ("expected scalar type
# BFloat16 but found Float"), though it works outside. Both seen with torch 2.13 on CPU.
# ``_AutocastOps`` fixes both at the Python level, before vmap sees the call: it casts the
# inputs of the heavy ops to the autocast dtype itself, and runs batch/instance norm in fp32 on
# an upcast input, returning the input's dtype (what the mixed-precision kernels do outside vmap).
_LOWER_PRECISION = {F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
                    F.linear, F.scaled_dot_product_attention}
_FP32_STATISTICS = {F.batch_norm, F.instance_norm}


class _AutocastOps(TorchFunctionMode):
    def __init__(self, device_type: str):
        super().__init__()
        self.device_type = device_type
        self.dtype = torch.get_autocast_dtype(device_type)

    def _cast(self, t):
        eligible = (isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64
                    and t.device.type == self.device_type)
        return t.to(self.dtype) if eligible else t

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _LOWER_PRECISION:
            args, kwargs = tree_map(self._cast, (args, kwargs))
        elif func in _FP32_STATISTICS and args and args[0].dtype in (torch.float16, torch.bfloat16):
            return func(args[0].float(), *args[1:], **kwargs).to(args[0].dtype)
        return func(*args, **kwargs)


def _layout(module: nn.Module) -> list:
    """What must match for two modules to run as one: the class, name and settings of every
    submodule (``extra_repr`` holds stride, eps, momentum, dropout p, ...), and the name, shape,
    dtype and device of every parameter and buffer."""
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return ([(name, _kind(m), m.extra_repr()) for name, m in module.named_modules()]
            + [(name, tuple(t.shape), t.dtype, t.device) for name, t in tensors])


# Every packed student runs the template's code, so whatever a module keeps besides its tensors
# and submodules (an activation function, a scale, a flag such as TransformerEncoderLayer's
# norm_first, a DropPath rate) must be the same in each; nn.Module's own bookkeeping is not, nor
# the compiled call Module.compile() keeps per instance.
_BOOKKEEPING = frozenset(vars(nn.Module())) | {"_compiled_call_impl"}
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
# torch's hook-based weight and spectral norm recompute the weight from the module's own
# parameters before each forward: on the template they read each student's (functional_call's)
_NORM_HOOKS = (WeightNorm, SpectralNorm)


def _is_compiled_wrapper(module: nn.Module) -> bool:
    """Whether ``module`` is torch.compile's wrapper. Importing torch._dynamo costs seconds at
    every start; where nothing imported it, nothing was compiled."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(module, eval_frame.OptimizedModule)


def _differing_attribute(first: nn.Module, other: nn.Module) -> str | None:
    """The dotted name of the first plain attribute in which ``other`` differs from ``first``
    (module by module, in the same order: ``_layout`` matched their structure)."""
    for (path, a), (_, b) in zip(first.named_modules(), other.named_modules()):
        if _is_compiled_wrapper(a):  # the module inside is compared
            continue
        norms_a, norms_b = _norm_hooks(a), _norm_hooks(b)
        if [(type(h), vars(h)) for h in norms_a] != [(type(h), vars(h)) for h in norms_b]:
            return f"{path}.<weight norm settings>" if path else "<weight norm settings>"
        recomputed = {h.name for h in norms_a}  # the weight the hook sets from each student's parameters
        keys = (vars(a).keys() | vars(b).keys()) - _BOOKKEEPING - recomputed
        for key in sorted(keys):
            if key not in vars(a) or key not in vars(b) or not _same(vars(a)[key], vars(b)[key], a, b):
                return f"{path}.{key}" if path else key
    return None


def _same(x, y, owner_x: nn.Module, owner_y: nn.Module, depth: int = 0) -> bool:
    """Whether two attribute values would make the template's code do the same: equal values,
    the same function with equal defaults and closure, objects of one class with equal fields,
    a module's own methods."""
    if x is y:
        return True
    if type(x) is not type(y) or depth > 6:
        return False
    same = functools.partial(_same, owner_x=owner_x, owner_y=owner_y, depth=depth + 1)
    if isinstance(x, torch.Tensor):  # a constant (a parameter here is refused by _parameter_in_attribute)
        return x.shape == y.shape and x.dtype == y.dtype and bool(torch.equal(x.cpu(), y.cpu()))
    if isinstance(x, float) and x != x:
        return y != y  # NaN
    if isinstance(x, (tuple, list)):
        return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y))
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, functools.partial):  # a layer factory, say: the same function with the same arguments
        return same(x.func, y.func) and same(x.args, y.args) and same(x.keywords, y.keywords)
    if isinstance(x, types.MethodType):  # a method of the module itself (self.act = self._gelu)
        return x.__func__ is y.__func__ and x.__self__ is owner_x and y.__self__ is owner_y
    if isinstance(x, types.FunctionType):  # a lambda made per instance: the same code, defaults and closure
        cells = [(c.cell_contents, d.cell_contents) for c, d in zip(x.__closure__ or (), y.__closure__ or ())]
        return (x.__code__ is y.__code__ and same(x.__defaults__, y.__defaults__)
                and same(x.__kwdefaults__, y.__kwdefaults__) and all(same(c, d) for c, d in cells))
    if isinstance(x, nn.Module):  # a module kept outside _modules (in a list, say): not swapped per student
        return False
    if type(x).__eq__ is object.__eq__:  # a plain object (a config): its fields
        return hasattr(x, "__dict__") and same(vars(x), vars(y))
    try:
        return bool(x == y)
    except Exception:  # noqa: BLE001 - an __eq__ that gives no truth value (arrays): not the same
        return False


def _parameter_in_attribute(module: nn.Module) -> str | None:
    """'ATTRIBUTE holds PARAMETER' where a plain attribute (a list, say) keeps one of the model's
    parameters or buffers: the packed forward swaps each student's tensors in where modules
    hold them, not there, so every student would use the first one's."""
    own = {id(t): name for name, t in [*module.named_parameters(remove_duplicate=False),
                                       *module.named_buffers(remove_duplicate=False)]}
    for path, sub in module.named_modules():
        recomputed = {h.name for h in _norm_hooks(sub)}
        for key in sorted(set(vars(sub)) - _BOOKKEEPING - recomputed):
            found = _tensors_in(vars(sub)[key], own)
            if found:
                return f"'{path + '.' if path else ''}{key}' holds '{found}'"
    return None


def _tensors_in(value, own: dict[int, str], depth: int = 0) -> str | None:
    if isinstance(value, torch.Tensor):
        return own.get(id(value))
    if depth < 3 and isinstance(value, (tuple, list)):
        return next((f for f in (_tensors_in(v, own, depth + 1) for v in value) if f), None)
    if depth < 3 and isinstance(value, dict):
        return next((f for f in (_tensors_in(v, own, depth + 1) for v in value.values()) if f), None)
    return None


def _norm_hooks(module: nn.Module) -> list:
    return [h for h in module._forward_pre_hooks.values() if isinstance(h, _NORM_HOOKS)]


def _foreign_hook(module: nn.Module) -> str | None:
    """The dotted name of a submodule carrying a hook that peerdistill did not put there for
    packing, nor torch's weight or spectral norm (a user's hook would run only on the template,
    with every student's tensors)."""
    for path, sub in module.named_modules():
        for kind in _HOOKS:
            if any(not (is_packing_safe(h) or isinstance(h, _NORM_HOOKS)) for h in getattr(sub, kind, {}).values()):
                return path or "the model itself"
    return None


def _kind(module: nn.Module) -> type:
    """A module's class; for one under ``torch.nn.utils.parametrize`` (weight_norm,
    spectral_norm), which gets a class of its own per instance, the class it was made from."""
    return type(module).__bases__[0] if parametrize.is_parametrized(module) else type(module)


def fusable(modules: Sequence[nn.Module]) -> str | None:
    """None when the modules can run as one ``StudentGroup``, else why not, in a few words."""
    if len(modules) < 2:
        return f"fusing needs at least 2 models, got {len(modules)}"
    first = modules[0]
    for i, m in enumerate(modules[1:], start=1):
        if _kind(m) is not _kind(first):
            return f"model {i} is a {type(m).__name__}, model 0 a {type(first).__name__}"
        if _layout(m) != _layout(first):
            return (f"model {i} differs from model 0 in its submodules' settings or its parameters' "
                    "or buffers' names, shapes, dtypes or devices")
    for i, m in enumerate(modules):
        if len(list(m.named_modules(remove_duplicate=False))) != len(list(m.named_modules())):
            return f"model {i} reaches a layer under two names (an alias, or a layer shared)"
        kept = _parameter_in_attribute(m)
        if kept is not None:
            return f"model {i}'s attribute {kept} (the packed forward swaps each student's tensors only in layers)"
        attribute = _differing_attribute(first, m) if i else None
        if attribute is not None:
            return f"model {i} differs from model 0 in attribute '{attribute}'"
        hooked = _foreign_hook(m)
        if hooked is not None:
            return f"model {i} has a hook on '{hooked}' (hooks of one's own are not run per student when packed)"
        params = list(m.parameters())
        if not params:
            return f"model {i} has no parameters"
        if not all(p.requires_grad for p in params):
            return f"model {i} has parameters that do not require grad (frozen layers)"
        for name, sub in m.named_modules():
            # Its cross-process statistics go through an autograd.Function that vmap cannot batch.
            if isinstance(sub, nn.SyncBatchNorm):
                return f"model {i} has SyncBatchNorm '{name}'"
            # The cumulative average reads the batch count as a Python float: not possible under vmap.
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.momentum is None and sub.track_running_stats:
                return f"model {i} has BatchNorm '{name}' with momentum=None (cumulative average)"
    return None


def _batchable(output):
    """vmap returns tensors, tuples, lists and dicts; an output object with a ``.logits`` tensor
    (HuggingFace's style) goes out as ``{"logits": ...}``, which the cohort reads the same way."""
    if isinstance(output, (torch.Tensor, tuple, list, dict)) or not isinstance(getattr(output, "logits", None),
                                                                              torch.Tensor):
        return output
    return {"logits": output.logits}


class StudentGroup(nn.Module):
    """K students of one architecture run as one vmapped network; see the module docstring.

    ``forward(x)`` returns ``(outputs, features)``: ``outputs[k]`` is what student k returns on
    its own (a tensor, or a dict/tuple of tensors) and ``features[k]`` maps each path in
    ``capture`` (a dotted module path inside one student, e.g. ``"layers.3"``) to that module's
    output.

    The students are held in ``self.members`` (an ``nn.ModuleList``), so ``.to()``, ``train()`` /
    ``eval()``, ``parameters()`` and DistributedDataParallel see every student. The group runs
    every student in ``members[0]``'s mode (its submodules' ``training`` flags), so all members
    must be in the same mode (``group.train()`` / ``group.eval()`` set them all); forward checks.

    ``members[0]`` is the template that ``functional_call`` runs with each student's tensors, so
    any forward hook on its submodules fires inside vmap and would see (and could leak) batched
    tensors, while hooks on the other members never fire. Callers must not keep other forward
    hooks on fused students: capture features with ``capture`` instead.
    """

    def __init__(self, modules: Sequence[nn.Module], capture: Sequence[str] = ()):
        super().__init__()
        reason = fusable(modules)
        if reason is not None:
            raise ConfigError(f"cannot fuse these students: {reason}")
        self.members = nn.ModuleList(modules)
        self.capture = list(dict.fromkeys(capture))
        # Looked up once (a wrong path fails here, naming the close matches), not every step.
        self._targets = {p: find_module(self.members[0], p, owner="student") for p in self.capture}
        self._names = [n for n, _ in self.members[0].named_parameters()]
        self._buffer_names = [n for n, _ in self.members[0].named_buffers()]
        # Where each buffer lives in the template (module, attribute), found once: a forward
        # that assigns one anew is looked for there at every step.
        self._buffer_homes = [(n, self.members[0].get_submodule(n.rpartition(".")[0]), n.rpartition(".")[2])
                              for n in self._buffer_names]

    def forward(self, x: torch.Tensor) -> tuple[list, list[dict[str, torch.Tensor]]]:
        """Every student on the same batch ``x`` (one positional input)."""
        # Under vmap, adaptive pooling has no batching rule for channels-last inputs and loops
        # over the students; the packed (grouped) convolutions do not need that layout.
        x = x.contiguous()
        template = self.members[0]
        modes = [m.training for m in template.modules()]
        if any([m.training for m in member.modules()] != modes for member in self.members[1:]):
            raise ConfigError("fused students must all be in the same train/eval mode, layer by layer: "
                              "call train() or eval() on the StudentGroup")
        targets, names, buffer_names, buffer_homes = self._targets, self._names, self._buffer_names, self._buffer_homes
        # Same names in the same order in every member (fusable checked it).
        member_params = [[t for _, t in m.named_parameters()] for m in self.members]
        member_buffers = [[t for _, t in m.named_buffers()] for m in self.members]
        # Differentiable stack: gradients flow back into each student's own parameters.
        params = {n: torch.stack(ts) for n, ts in zip(names, zip(*member_params))}
        # What the forward changes besides BatchNorm's statistics is watched in eager mode only:
        # torch.compile traces the forward (a watch would break its graph), and inference
        # tensors keep no version counter.
        watched = not torch.compiler.is_compiling() and not next(iter(params.values())).is_inference()
        versions = [t._version for t in params.values()] if watched else None
        with torch.no_grad():
            buffers = {n: torch.stack(ts) for n, ts in zip(buffer_names, zip(*member_buffers))}

        def one_student(params, buffers, x):
            recorded: dict[str, torch.Tensor] = {}
            reassigned: dict[str, torch.Tensor] = {}

            def hook(path):
                def record(_module, _inputs, output):
                    recorded[path] = first_tensor(output, f"the students' layer '{path}'")
                return record

            def keep_reassigned(_module, _inputs, _output):
                # A forward may assign a new tensor to a buffer (self.count = self.count + 1)
                # instead of updating it in place; functional_call puts the stacked one back
                # after the call, so the new one is taken here, before that.
                for name, module, attribute in buffer_homes:
                    now = module._buffers.get(attribute)
                    if now is not buffers[name] and now is not None:
                        reassigned[name] = now

            # Hooks live only for this call and their tensors leave vmap as its outputs, so no
            # batched tensor escapes.
            handles = [module.register_forward_hook(hook(p)) for p, module in targets.items()]
            if watched:
                handles.append(template.register_forward_hook(keep_reassigned))
            autocast = (_AutocastOps(x.device.type) if torch.is_autocast_enabled(x.device.type)
                        else contextlib.nullcontext())
            try:
                with autocast:
                    return _batchable(functional_call(template, (params, buffers), (x,))), recorded, reassigned
            finally:
                for handle in handles:
                    handle.remove()

        out, recorded, reassigned = vmap(one_student, in_dims=(0, 0, None), randomness="different")(params, buffers, x)
        self._write_back(params, versions, member_params, buffers, reassigned, member_buffers)
        k = len(self.members)
        outputs = [tree_map(lambda t, i=i: t[i], out) for i in range(k)]
        features = [{path: t[i] for path, t in recorded.items()} for i in range(k)]
        return outputs, features

    @torch.no_grad()
    def _write_back(self, params: dict[str, torch.Tensor], versions: list[int] | None, member_params: list[list],
                    buffers: dict[str, torch.Tensor], reassigned: dict[str, torch.Tensor],
                    member_buffers: list[list]) -> None:
        """What the forward changed, back into each student's own tensors, as a student running
        alone keeps it: buffers (updated in place under vmap, such as BatchNorm's statistics,
        which write into their row of the stacked tensor; or assigned anew) and parameters a
        forward changes in place (an Embedding's max_norm, a clamp_ of a constrained weight)."""
        for name, value in reassigned.items():
            if value.shape != buffers[name].shape:
                raise ConfigError(f"a student's forward gives buffer '{name}' a new shape "
                                  f"({list(value.shape[1:])} instead of {list(buffers[name].shape[1:])}), which "
                                  "the packed students cannot keep: set train.fuse_students: false")
            buffers[name] = value
        k = len(self.members)
        if buffers:  # unchanged buffers are copied too: cheaper than finding out which changed
            rows = [t.unbind(0) for t in buffers.values()]  # rows[j][i]: buffer j of student i
            torch._foreach_copy_([b for bs in member_buffers for b in bs],
                                 [rows[j][i] for i in range(k) for j in range(len(rows))])
        for j, (stacked, version) in enumerate(zip(params.values(), versions or ())):
            if stacked._version != version:  # changed in place by the forward (rare: found by its counter)
                for i in range(k):
                    member_params[i][j].copy_(stacked[i])

