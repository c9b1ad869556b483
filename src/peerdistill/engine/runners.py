"""How each trained model runs in training: students of one architecture packed into one
network, every trained model (or packed group) in DDP under torchrun, each compiled on request.

Deciding this takes a trial: a packed group's first step is tried on the probe batch, and
under DDP the parameters a model's logits skip are found by a backward before wrapping.
``Trainer`` takes this as a mixin, as it takes ``Preflight``: it reads the trainer's cohort,
graph, speed settings, probe batch and world, and fills ``runners`` and ``groups``.
"""

from __future__ import annotations

import re

import torch

from ..capture import FeatureRecorder, unwrap
from ..errors import ConfigError, TrainingAdvice, warn_user
from ..models.heads import HeadedModel
from . import distributed
from .fused import StudentGroup, fusable
from .speed import compiled


class RunnerSetup:
    """The trainer's runners (see the module's docstring)."""

    def _build_runners(self) -> None:
        """How each model runs in training: students of one architecture packed into one
        network (``train.fuse_students``), every trained model or group in DDP under torchrun
        (a frozen teacher never: it has no gradients to share), each compiled on request. In
        this order: unused parameters are found before packing (a packed group holds its
        students' spare heads too) and before SyncBatchNorm (whose training-mode forward would
        talk to the other processes)."""
        self._say_unread_settings()
        unused = self._unused_parameters()
        if self.train_spec.sync_batchnorm and self.world.distributed:
            self._convert_to_sync_batchnorm()
        self._pack_students()
        grouped = {n for names, _ in self.groups for n in names}
        if self.world.distributed:
            self._wrap_in_ddp(unused, grouped)
        if self.speed.compile:
            for m in self.cohort.members:
                if m.name not in grouped:
                    self.runners[m.name] = compiled(self.runners.get(m.name, m.module), self.speed.compile_backend)
            self.groups = [(names, compiled(g, self.speed.compile_backend)) for names, g in self.groups]

    def _unused_parameters(self) -> dict[str, list[str]]:
        """Under DDP, each trained model's parameters its logits do not use, which must be declared
        (in one process they need nothing). Each process probes its own share of the data, so what
        any of them found counts."""
        unused: dict[str, list[str]] = {}
        if self.world.distributed:
            found = {m.name: distributed.unused_parameters(m.module, self._probe_input, m.name)
                     for m in self.cohort.trainable}
            everyone = distributed.gather_objects(self.world, found)  # (one collective for all models)
            anywhere = {name: {key for each in everyone for key in each[name]} for name in found}
            unused = {name: [key for key, _ in self.cohort[name].module.named_parameters() if key in keys]
                      for name, keys in anywhere.items()}
        unused = {name: found for name, found in unused.items() if found}
        if unused:  # trained like a single process would, at the cost of a search per step
            self.run_info["ddp_unused_parameters"] = unused
        if self.world.distributed and self.train_spec.find_unused_parameters is True:
            # layers skipped at random (LayerDrop) are not seen by one backward: every model searches
            unused = {**{m.name: [] for m in self.cohort.trainable}, **unused}
            self.run_info["ddp_find_unused_parameters"] = "every trained model (train.find_unused_parameters)"
        return unused

    def _say_unread_settings(self) -> None:
        """Settings this run never reads, warned of (the DDP ones recorded in run.json too; not refused, as
        optim's unread keys are: one config runs both under torchrun and in one process, and
        with compile turned on and off, without changing the run's results). A resumed run is
        not told again: its config cannot change."""
        ts, unread = self.train_spec, []
        if not self.world.distributed:
            for key in ("sync_batchnorm", "find_unused_parameters"):
                if getattr(ts, key) is True:
                    self.run_info[key] = "ignored: a single process"
                    unread.append(f"train.{key}=true is read only under torchrun (several processes), and this run "
                                  "is one process")
        if not ts.compile and ts.compile_backend != type(ts).model_fields["compile_backend"].default:
            unread.append(f"train.compile_backend={ts.compile_backend} is read only with train.compile=true")
        for said in unread if not getattr(self, "_resuming", False) else []:
            warn_user(f"{said}: it changes nothing here; remove it, or keep it for the runs that read it",
                      TrainingAdvice)

    def _convert_to_sync_batchnorm(self) -> None:
        if self.device.type != "cuda":
            raise ConfigError("train.sync_batchnorm needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
                              "set train.sync_batchnorm=false for CPU runs").found_by_every_process()
        for m in self.cohort.trainable:  # in place: the member, its optimizer and its files see it
            m.module = distributed.sync_batchnorm(m.module)
        self.cohort.capture(self.graph.feature_requests())  # hooks follow the converted layers
        self.cohort.hold_heads(True)

    def _pack_students(self) -> None:
        """``self.groups``: the students packed into one network each (train.fuse_students), where
        a trial forward of the group succeeded on every process; the others run one by one, said
        why in run.json."""
        self.groups = []
        if self.speed.fuse_students:
            for names in self._fusable_sets():
                group = StudentGroup([self.cohort[n].module for n in names], self.cohort.release_capture(names))
                problem = self._trial(group)
                # Every process must pack the same students, or their DDP set-ups would differ.
                if distributed.all_true(self.world, problem is None, self.device):
                    self.groups.append((names, group))
                else:  # run them one by one, and say why
                    self.run_info.setdefault("fused_students_fallback", {})[", ".join(names)] = (
                        problem or "the packed forward failed on another process")
        self.run_info["fused_students"] = [names for names, _ in self.groups]
        self._say_what_was_not_packed()
        grouped = {n for names, _ in self.groups for n in names}
        if self.run_info.get("fused_students_fallback"):  # record the fallen-back students' layers again
            self.cohort.capture({n: p for n, p in self.graph.feature_requests().items() if n not in grouped})

    def _wrap_in_ddp(self, unused: dict[str, list[str]], grouped: set[str]) -> None:
        """Every trained model and packed group in DDP (searching for unused parameters where it
        has some); connectors and critics start alike on every process."""
        for m in self.cohort.trainable:
            if m.name not in grouped:
                self.runners[m.name] = distributed.wrap(m.module, self.device, find_unused=m.name in unused)
        self.groups = [(names, distributed.wrap(g, self.device, find_unused=bool(set(names) & set(unused))))
                       for names, g in self.groups]
        distributed.broadcast_state(self.world, self.connectors)
        distributed.broadcast_state(self.world, self.discriminators)

    def _say_what_was_not_packed(self) -> None:
        """Asked for explicitly (``train.fuse_students: true``, not ``auto``), packing that did
        not happen is a warning, not only a line in run.json."""
        if self.train_spec.fuse_students is not True or not self.world.is_main:
            return
        for students, why in self.run_info.get("fused_students_fallback", {}).items():
            warn_user(f"train.fuse_students: {students} run one by one: {why}")
        if not self.groups and not self.run_info.get("fused_students_fallback"):
            warn_user("train.fuse_students: no two trained students share an architecture, so none are packed")

    def _trial(self, group: StudentGroup) -> str | None:
        """One packed training step's forward and backward on the probe batch, as training will
        run it (train mode: dropout and stochastic depth included); an error (an operation vmap
        cannot batch, say) is returned so those students fall back to separate runs. Buffers,
        gradients and train/eval modes are put back as they were.

        The recorded layers are first checked on one student alone, in train mode: the packed
        group cannot see a later module change a recorded output in place (an in-place dropout,
        active in training only, which the probe's eval mode misses), so such students run
        separately, where the first step says so."""
        members = list(group.members)
        # (a forward may change parameters in place too: an Embedding's max_norm, a clamp_)
        saved = [t.detach().clone() for m in members for t in (*m.buffers(), *m.parameters())]
        modes = [sub.training for m in members for sub in m.modules()]
        try:
            group.train()
            with self.speed.autocast(self.device):
                if group.capture:
                    alone = FeatureRecorder(members[0], group.capture, owner="student")
                    try:
                        members[0](self._probe_input)
                        alone.take(complete=True)
                    finally:
                        alone.remove()
                outputs, features = group(self._probe_input)
            leaves = [t for out in outputs for t in _tensors(out)] + [t for f in features for t in f.values()]
            torch.stack([t.float().mean() for t in leaves]).sum().backward()
        except Exception as exc:  # any failure of the packed path: the separate path still works
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        finally:
            with torch.no_grad():
                for tensor, before in zip([t for m in members for t in (*m.buffers(), *m.parameters())], saved):
                    tensor.copy_(before)
            for m in members:
                m.zero_grad(set_to_none=True)
            for sub, training in zip([sub for m in members for sub in m.modules()], modes):
                sub.training = training
        return None

    def _fusable_sets(self) -> list[list[str]]:
        """Trained students that can run as one packed network, in sets of two or more. A
        student left alone although another is of its class is recorded, with the reason, in
        ``run_info['fused_students_fallback']``."""
        sets: list[list[str]] = []
        trained = [m for m in self.cohort.students if not m.frozen]
        headed = [m.name for m in trained if isinstance(unwrap(m.module), HeadedModel)]
        if headed and len(trained) > 1:
            self.run_info.setdefault("fused_students_fallback", {})[", ".join(headed)] = (
                "their self-distillation heads read inner layers through hooks, which a packed forward would run "
                "once for all students")
        candidates = [m for m in trained if m.name not in headed]
        for m in candidates:
            home = next((s for s in sets if fusable([self.cohort[s[0]].module, m.module]) is None), None)
            if home is not None:
                home.append(m.name)
            else:
                sets.append([m.name])
        alones = [s[0] for s in sets if len(s) == 1]
        for alone in alones:
            module = self.cohort[alone].module
            peer = next((c for c in candidates if c.name != alone and type(c.module) is type(module)), None)
            problem = fusable([module, peer.module]) if peer is not None else None
            if not problem:
                continue
            # in fusable's words, this student is model 0 and its peer model 1
            named = re.sub(r"\bmodel ([01])\b", lambda found: (alone, peer.name)[int(found.group(1))], problem)
            fallback = self.run_info.setdefault("fused_students_fallback", {})
            if peer.name in alones:  # two left alone by one difference: said once, of both
                pair = ", ".join(n for n in alones if n in (alone, peer.name))
                fallback.setdefault(pair, named)
            else:
                fallback[alone] = f"not packed with {peer.name}: {named}"
        return [s for s in sets if len(s) > 1]


def _tensors(output) -> list[torch.Tensor]:
    """The tensors of a model's output (a tensor, or a tuple / dict of them)."""
    if isinstance(output, torch.Tensor):
        return [output]
    values = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else []
    return [t for v in values for t in _tensors(v)]
