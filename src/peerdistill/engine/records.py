"""What a training run keeps: the state of its trained modules, the run directory's files
(run.json, metrics, models, the cost table) and the resume checkpoint.

``RunRecords`` is a mixin of ``Trainer``: it reads the trainer's cohort, graph, optimizers and
settings, and owns nothing else."""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from torch import nn

from ..config import as_read, read_saved_config
from ..config_diff import differences, summary, what_is_trained
from ..costs import model_costs
from ..data import DataSplits
from ..data.digests import digests_path, digests_record
from ..data.image_profile import image_profile
from ..data.splits import TensorData
from ..errors import CheckpointError, ConfigError, RunDirError, warn_user
from ..json_files import read_json
from ..models.heads import HeadedModel
from ..run_files import CONFIG_FILE, METRICS_FILE, RESUME_FILE, RUN_FILE
from ..wording import first_few
from .. import run_lock
from .artifacts import RunDir, atomic_write_text, load_weights, non_finite_keys, save_weights, write_json
from .environment import environment
from .state_files import weights_digest
from .resume import capture_rng_states, restore_rng_states, save_resume_state, start_again

if TYPE_CHECKING:
    from .trainer import FitResult

EDGE_FILES = {"@connectors": "connectors.safetensors", "@discriminators": "discriminators.safetensors"}

# What every resume checkpoint train writes holds (the others are there when their part is used)
RESUME_PARTS = ("epoch", "models", "optimizers", "schedulers", "rng", "best_epoch", "best_score", "best_val",
                "best_weights", "history")


class RunRecords:
    # ---- the state of the trained modules ------------------------------------------------
    def _trained_state(self) -> dict[str, dict[str, torch.Tensor]]:
        state = {m.name: m.module.state_dict() for m in self.cohort.trainable}
        for key, modules in self._edge_modules().items():
            if len(modules):
                state[key] = modules.state_dict()
        return state

    def _edge_modules(self) -> dict[str, nn.ModuleDict]:
        """Trainable modules that belong to knowledge edges, not to any model."""
        return {"@connectors": self.connectors, "@discriminators": self.discriminators}

    def _snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        return copy.deepcopy(self._trained_state())

    def _load_snapshot(self, weights: dict[str, dict[str, torch.Tensor]] | None) -> None:
        for name, state in (weights or {}).items():
            target = self._edge_modules()[name] if name.startswith("@") else self.cohort[name].module
            target.load_state_dict(state)

    # ---- the run directory ---------------------------------------------------------------
    def _training_profile(self, data: DataSplits) -> dict[str, Any]:
        """``image_profile`` of the training split (run.json records it, predict and eval read it,
        and a warning of training), worked out once; with ``grey_read_as_colour`` (every
        three-channel image grey), which runs recorded before the share."""
        cached = getattr(self, "_profile", None)
        if cached is None or cached[0] is not data.train:
            profile = image_profile(data.train, data.stats)
            if "grey_share" in profile:
                profile["grey_read_as_colour"] = profile["grey_share"] == 1.0
            self._profile = (data.train, profile)
        return self._profile[1]

    def _open_run_dir(self, data: DataSplits, resume: bool) -> RunDir | None:
        if self.run_dir_path is None:
            if resume:
                raise ConfigError("resume needs a run directory")
            return None
        if resume:
            run = RunDir.open(self.run_dir_path)
            _check_same_data(read_json(run.path / RUN_FILE), data)
            if getattr(self, "_run_lock", None) is None:  # (taken before the set-up, where not under torchrun)
                self._run_lock = run_lock.hold(run.path, take_over=True)  # released when fit ends (run_lock.py)
            return run
        run = RunDir.create(self.run_dir_path, overwrite=self.overwrite)
        # (busy: another process took the new folder first; what this one moved aside stays aside
        # until a start of the name once this process is gone, never put back over that run)
        self._run_lock = run_lock.hold(run.path)
        if not run.path.is_dir() or (run.path / RUN_FILE).exists():  # (taken by another start since, or a run
            raise RunDirError(run_lock.busy_message(run.path))          # put back there: never trained over)
        self._run = run  # from here a failure marks it stopped, or puts back the run it replaced (fit)
        info = {
            "status": "running",
            "task": self.task.name,
            "num_classes": data.num_classes,
            "class_names": data.class_names,
            "input_shape": list(data.input_shape),
            "data_stats": data.stats,
            "split_sizes": _split_sizes(data),
            "data_info": {**data.info, **self._training_profile(data)},
            "patches": self.patches,  # the sliding window whole images are predicted by (or None)
            "seed": self.seed,
            "deterministic": self.deterministic,
            "monitor": self.monitor,
            "roles": self.cohort.roles(),
            "members": [
                {"name": m.name, "role": m.role, "frozen": m.frozen, "spec": m.spec, "heads": m.head_layers,
                 "parameters": count_exported_parameters(m.module), **({"weight": m.weight} if m.role == "teacher" else {})}
                for m in self.cohort.members
            ],
            "edges": self.graph.to_list(),
            # how a `teachers` edge combines them (review 52f: a CA-MKD run read as a weighted one), and
            # the outputs whose own loss weighs other than 1 (self-distillation heads: 1 - self_alpha)
            "teacher_weighting": self.graph.teachers_combined_by,  # (null: no edge combines teachers)
            "rampup_epochs": self.rampup_epochs,  # (the knowledge terms' weights rise over these epochs)
            "supervised_weights": dict(self.graph.supervised_weights),
            "connectors": dict(self._connector_keys),
            "discriminators": dict(self._discriminator_keys),
            # train.batch_size is the global batch: each of the processes takes its share.
            "processes": self.world.size,
            "backend": self.world.backend,
            "batch_per_process": self.train_spec.batch_size // self.world.size,
            "speed": self.speed.to_dict(),
            "environment": environment(self.device),
            "train_digests": isinstance(data.train, TensorData),  # kept: eval says so when the file goes missing
            **(self.task.saved_settings() if hasattr(self.task, "saved_settings") else {}),
            **self.run_info,
        }
        write_json(run.path / RUN_FILE, info)
        if info["train_digests"]:  # eval warns of these inputs in data given as other (digests.py)
            write_json(digests_path(run.path), digests_record(data.train.x, data.train.digests()))
        if self.config_yaml is not None:
            atomic_write_text(run.path / CONFIG_FILE, self.config_yaml)
        return run

    def _save_models(self, run: RunDir) -> None:
        run.check_still_there()
        for m in self.cohort.members:
            save_member_weights(m.module, run, m.name)
        for key, modules in self._edge_modules().items():
            if len(modules):
                save_weights(modules, run.path / EDGE_FILES[key])

    def _write_progress(self, run: RunDir, epoch: int) -> None:
        # The checkpoint first: metrics listing an epoch the checkpoint lacks would have a
        # dry run, the report and eval count an epoch that a resume does again.
        run.check_still_there()
        save_resume_state(run.resume_path, self._resume_state(epoch + 1))
        run.discard_replaced()  # (the run --overwrite replaced: kept until now, in case this one failed)
        self._last_checkpoint = time.monotonic()
        run.write_metrics_csv(self._history)
        write_json(run.path / METRICS_FILE, {"epochs": self._history, "best_epoch": self._best["epoch"] + 1,
                                               "monitor": self.monitor, "status": "running",
                                               "roles": self.cohort.roles()})

    def _write_final(self, run: RunDir, result: FitResult) -> None:
        # the costs first (half a second): a kill between the two files' "complete" is then a
        # moment, not a window in which the report and eval disagreed (review 50g)
        meta = read_json(run.path / RUN_FILE)
        costs = self._costs(run, meta)
        # (a resume from the last epoch's checkpoint, the process killed before that epoch's row was
        # written, trains no epoch that would write it: review 52c found the row lost for good)
        run.write_metrics_csv(result.history)
        write_json(run.path / METRICS_FILE, {
            "status": "complete",
            "monitor": result.monitor,
            "best_epoch": result.best_epoch + 1,
            "last_epoch": len(result.history),
            "stopped_early": result.stopped_early,
            **({"monitor_undefined": True} if result.monitor_undefined else {}),  # the last epoch stood in
            **({"ending_warnings": result.ending_warnings} if result.ending_warnings else {}),
            "roles": self.cohort.roles(),
            "val_at_best": result.val_at_best,
            "test_at_best": result.test_at_best,
            "test_at_last": result.test_at_last,
            "epochs": result.history,
        })
        meta["status"] = "complete"
        meta["costs"] = costs
        write_json(run.path / RUN_FILE, meta)

    def _costs(self, run: RunDir, meta: dict) -> dict:
        """Parameters, MACs, file size and CPU latency (and GPU latency on a CUDA run) of every
        model as shipped (no heads), and of the students' ensemble; on patch-trained runs, for
        one patch-sized input."""
        shape = tuple(meta["input_shape"])
        if self.window:
            shape = (shape[0], *self.window)
        modules = {m.name: (m.module.base if isinstance(m.module, HeadedModel) else m.module)
                   for m in self.cohort.members}
        teacher = self.cohort.teachers[0].name if self.cohort.teachers else None
        students = self.cohort.ensemble_names()
        return model_costs(modules, shape, {n: run.model_path(n) for n in modules}, reference=teacher,
                           gpu=self.device if self.device.type == "cuda" else None,
                           ensemble_of=students, ensemble=self._ensemble_as_deployed({s: modules[s] for s in students}))

    def _ensemble_as_deployed(self, students: dict[str, nn.Module]) -> nn.Module | None:
        """What ``export --model ensemble`` ships, for its latency: every student run, their
        outputs averaged (side by side for a sliding window to blend). None for detection, whose
        ensemble fuses the students' boxes in Python: its latency is then the sum of theirs."""
        from ..exported_models import ensemble_graph

        if not students or self.task.name == "detection":
            return None
        return ensemble_graph(students, windowed=bool(self.window))[0]

    # ---- resume -------------------------------------------------------------------------
    def _resume_state(self, epoch: int, step: int = 0, partial: dict[str, Any] | None = None) -> dict[str, Any]:
        """Where to go on: epoch ``epoch`` (0-based) at batch ``step``; a half-done epoch also
        keeps ``partial`` (its data generator state at the start, the loss sums so far)."""
        best = self._best
        return {
            "epoch": epoch,
            "step": step,
            "partial": partial,
            "history": self._history,
            "best_epoch": best["epoch"],
            "best_score": best["score"],
            "best_val": best["val"],
            # The best epoch's weights travel with the state they belong to: models/ may already
            # hold a newer best when a crash comes between the two writes.
            "best_weights": best["weights"],
            "stopped_early": self._stopped_early,  # train.patience ended training after the last epoch of history
            "models": self._trained_state(),
            "frozen_digests": self._frozen_digests(),  # a resume distils from the same frozen teachers
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "discriminator_optimizers": {k: o.state_dict() for k, o in self.discriminator_optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "grad_scaler": self.scaler.state_dict() if self.scaler else None,
            "weight_average": self.average.state_dict() if self.average is not None else None,
            "rng": capture_rng_states(self.generator),
            "config": self.config_yaml,  # what was trained: an edited config.yaml must not resume it
        }

    def _check_same_config(self, state: dict[str, Any]) -> None:
        """A run resumes with the config it was trained with: its optimizers and schedulers come
        from the checkpoint, so an edited learning rate would be ignored, another epoch count
        would bend the schedule, another batch size would break the saved data position. Keys
        of where files are and how the run executes may change; the saved config is read
        through today's schema, so an option added since, at its default, is no change."""
        saved = state.get("config")
        if not saved or self.config_yaml is None or saved == self.config_yaml:
            return
        try:
            before = as_read(read_saved_config(yaml.safe_load(saved), "the checkpoint's config"))
            # keys no term reads count at their defaults: a run saved with one resumes without it
            now = as_read(read_saved_config(yaml.safe_load(self.config_yaml), "the config"))
        except (ConfigError, yaml.YAMLError) as exc:  # written by a version whose config no longer reads
            warn_user(f"the config saved in the run's checkpoint cannot be read today ({str(exc).splitlines()[0]}), so "
                      f"it is not compared with '{self.run_dir_path / 'config.yaml'}': the run resumes as its "
                      "checkpoint left it")
            return
        changed = differences(what_is_trained(before), what_is_trained(now))
        if changed:
            raise CheckpointError(f"'{self.run_dir_path / 'config.yaml'}' differs from the config the checkpoint was "
                                  f"trained with ({summary(changed)}): the config was edited, or the checkpoint is "
                                  "another run's; set the config back (or put back the run's own checkpoint) to "
                                  "resume, or train a new run with the new config").found_by_every_process()

    def _frozen_digests(self) -> dict[str, str]:
        """A digest of each frozen model's weights (computed once: they never change)."""
        if getattr(self, "_frozen_digest_memo", None) is None:
            self._frozen_digest_memo = {m.name: weights_digest(m.module.state_dict()) for m in self.cohort.frozen}
        return self._frozen_digest_memo

    def _check_resumable(self, state: dict[str, Any]) -> None:
        """The checkpoint's models are finite, and the frozen teachers are those the run began
        with: their weights are read from their files again, which may have been trained again
        or replaced since (checkpoints before this check carry no digests)."""
        for name, weights in state.get("models", {}).items():
            bad = non_finite_keys(weights)
            if bad:
                raise CheckpointError(f"the resume checkpoint's {name} holds NaN or infinite values in {bad[:5]}: it "
                                      f"cannot be continued; {start_again(self.run_dir_path)}")
        saved = state.get("frozen_digests") or {}
        changed = [name for name, digest in self._frozen_digests().items() if saved.get(name, digest) != digest]
        if changed:
            raise CheckpointError(
                f"the frozen {', '.join(repr(n) for n in changed)} loaded from its checkpoint is not the model this "
                "run was distilled from until now (its file was trained again or replaced since the run began): "
                f"put the original file back at its checkpoint path to resume, or {start_again(self.run_dir_path)}")

    def _restore(self, state: dict[str, Any]):
        missing = [part for part in RESUME_PARTS if part not in state]
        if missing:  # a file that loads but is none of train's: "does not fit this cohort ('models')" misled
            raise CheckpointError(f"the resume checkpoint ({RESUME_FILE}) lacks {first_few(missing, 4, quoted=True)}, "
                                  "which every checkpoint train writes holds: it is not this run's (another file put "
                                  f"in its place?); put the run's own back, or {start_again(self.run_dir_path)}")
        self._check_same_config(state)
        self._check_resumable(state)
        try:
            self._load_snapshot(state["models"])
            for name, opt_state in state["optimizers"].items():
                self.optimizers[name].load_state_dict(opt_state)
            for key, opt_state in state.get("discriminator_optimizers", {}).items():
                self.discriminator_optimizers[key].load_state_dict(opt_state)
            for name, sched_state in state["schedulers"].items():
                self.schedulers[name].load_state_dict(sched_state)
            if self.scaler and state.get("grad_scaler"):
                self.scaler.load_state_dict(state["grad_scaler"])
            if self.average is not None:
                self.average.load_state_dict(state["weight_average"])
            restore_rng_states(state["rng"], self.generator)
            self._best = {"epoch": state["best_epoch"], "score": state["best_score"], "val": state["best_val"],
                          "weights": state["best_weights"]}
            self._history = list(state["history"])
            self._stopped_early = bool(state.get("stopped_early", False))
            partial = state.get("partial")
            if partial:
                for part in ("sums", "grad_norms"):
                    partial[part] = {k: v.to(self.device) for k, v in partial.get(part, {}).items()}
            return state["epoch"], state.get("step", 0), partial
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(
                f"the resume checkpoint does not fit this cohort ({exc}); was the config changed?"
            ) from None



def save_member_weights(module: nn.Module, run: RunDir, name: str) -> None:
    """The model alone in models/NAME.safetensors (what ships); self-distillation heads apart."""
    if isinstance(module, HeadedModel):
        save_weights(module.base, run.model_path(name))
        save_weights(module.heads, run.heads_path(name))
    else:
        save_weights(module, run.model_path(name))


def load_member_weights(module: nn.Module, run: RunDir, name: str) -> None:
    if isinstance(module, HeadedModel):
        load_weights(module.base, run.model_path(name), name)
        load_weights(module.heads, run.heads_path(name), f"{name}'s heads")
    else:
        load_weights(module, run.model_path(name), name)


def count_exported_parameters(module: nn.Module) -> int:
    """Parameters of the model as shipped (without self-distillation heads)."""
    inner = module.base if isinstance(module, HeadedModel) else module
    return sum(p.numel() for p in inner.parameters())


def _split_sizes(data: DataSplits) -> dict[str, int]:
    return {"train": len(data.train), "val": len(data.val), "test": len(data.test)}


def _check_same_data(meta: dict[str, Any], data: DataSplits) -> None:
    """``data.root`` may move on resume, not change: the splits keep the sizes and the training
    split the channel statistics the run began with (runs before ``split_sizes`` was recorded,
    or without normalisation, skip that part)."""
    before, now = meta.get("split_sizes"), _split_sizes(data)
    if before is not None and before != now:
        raise ConfigError(f"the data read now is not the data this run was trained on (split sizes {now}, "
                          f"{before} in run.json): point data.root at the data the run began with to resume it, "
                          "or train a new run")
    before, now = meta.get("data_stats"), data.stats
    if before and now and not all(np.allclose(before[k], now[k], rtol=1e-5, atol=1e-7) for k in before):
        raise ConfigError(f"the data read now is not the data this run was trained on (its training split's "
                          f"channel mean and std {now}, {before} in run.json): point data.root at the data the run "
                          "began with to resume it, or train a new run")
