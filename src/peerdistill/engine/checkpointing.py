"""The resume checkpoint from the training loop's side: how a fit resumes from one (the run's
record of it, the line that says so), when one is written within an epoch, and where it is
for the messages that tell a user how to go on.

What a checkpoint holds, and how it is restored, is ``RunRecords``' job (records.py); its file,
resume.py's. ``Trainer`` takes this as a mixin, as it takes ``Preflight``: it reads the trainer's
run directory, world and train spec, keeps the clock of the last checkpoint (``_last_checkpoint``:
``_fit`` starts it, every epoch's checkpoint sets it again) and, under torchrun, learns the main
process's clock from the step's finite checks (``_main_late_for_a_checkpoint``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..json_files import read_json
from ..run_files import RESUME_FILE, RUN_FILE
from . import distributed
from .artifacts import RunDir, jsonable, stopped_before_keeping_anything, write_json
from .environment import DEPENDS_ON, environment, session_environments
from .resume import load_resume_state, save_resume_state
from ..wording import shell_word


class Checkpointing:
    """The trainer's resume checkpoints (see the module's docstring)."""

    # ---- resuming a fit -----------------------------------------------------------------
    def _resume(self, run: RunDir | None) -> tuple[int, int, Any]:
        """Every state restored from the run's resume checkpoint (read by the main process and
        handed over: no shared disk needed), and where training goes on: (epoch, step in it, the
        epoch's partial sums). A run killed after its last epoch, during the final test evaluation,
        still resumes: no epoch is left, only the evaluation and the final files."""
        self._on_main(RunDir(self.run_dir_path).check_resumable)  # before the checkpoint is read
        start_epoch, start_step, partial = self._restore(self._on_main(self._read_resume_state))
        self._run = run
        if run is not None:  # the resume is accepted: what the killed process left half written goes
            run.remove_partial_writes()
            self._record_resumption(run, start_epoch, start_step)
        return start_epoch, start_step, partial

    def _read_resume_state(self) -> dict[str, Any]:
        # without a checkpoint, the message says whether train alone starts the run again: it kept
        # nothing, and runs are locked here (this process holds the lock then)
        started_again = self._run_lock is not None and stopped_before_keeping_anything(self.run_dir_path)
        return load_resume_state(self.run_dir_path / RESUME_FILE, started_again)

    def _record_resumption(self, run: RunDir, start_epoch: int, start_step: int) -> None:
        """run.json says where the run was resumed, on how many processes, and how it executes
        where that differs from the first session's (device, compile, packing, the non-finite
        policy...: run.json's own speed and packing)."""
        meta = read_json(run.path / RUN_FILE)
        sessions = [meta, *meta.get("resumed_at", [])]
        self._processes_before = next((s["processes"] for s in reversed(sessions) if "processes" in s), None)
        trains = start_epoch < self.train_spec.epochs and not self._stopped_early
        where = {"epoch": start_epoch + 1, "step": start_step} if trains else {"final_evaluation": True}
        where["processes"] = self.world.size  # a run may resume on another number of processes
        # (data_workers: those an earlier version recorded for data held in memory never ran)
        now = {"speed": self.speed.to_dict(), "fused_students": self.run_info["fused_students"]}
        was = dict(meta)
        if isinstance(meta.get("speed"), dict) and not self.speed.data_workers:
            was["speed"] = {**meta["speed"], "data_workers": 0}
        where.update({key: value for key, value in now.items() if jsonable(was.get(key)) != jsonable(value)})
        here = environment(self.device)
        if not isinstance(meta.get("environment"), dict):  # (a run of an earlier version: all of it, said once)
            where["environment"] = here
        else:  # (against the last session's: a return to the first values is a change too, review 51m)
            last = {key: value for env in session_environments(meta) for key, value in env.items()}
            changed = {key: here[key] for key in DEPENDS_ON if last.get(key, here[key]) != here[key]}
            if changed:  # (another torch, device or thread count: the run no longer repeats bit for bit)
                where["environment"] = changed
        meta.setdefault("resumed_at", []).append(where)
        meta["status"] = "running"
        meta.pop("stopped_by", None)
        write_json(run.path / RUN_FILE, meta)

    def _resumed_line(self, epoch: int, step: int) -> str:
        epochs = self.train_spec.epochs
        if epoch >= epochs or self._stopped_early:
            return f"resuming '{self.run_dir_path}' after its last epoch: the test split is left to score"
        at = f", at batch {step + 1} of {len(self.train_batches)}" if step else ""
        before = getattr(self, "_processes_before", None)
        if before is not None and before != self.world.size:
            at += (f", on {self.world.size} process{'es' if self.world.size > 1 else ''} where it trained on {before}: "
                   "from the same checkpoint, though not to the figures of one uninterrupted run (each process's "
                   "share of a batch differs)")
        return f"resuming '{self.run_dir_path}' at epoch {epoch + 1} of {epochs}{at}"

    # ---- within an epoch ----------------------------------------------------------------
    def _checkpoint_due(self, steps_done: int) -> bool:
        """Whether a checkpoint is written after this step; every process gets the same answer
        (each takes part in averaging the loss sums the checkpoint holds): by the main process's
        clock, which the step's checks carried to the others (the others said yes there)."""
        ts = self.train_spec
        if ts.checkpoint_every_steps and steps_done % ts.checkpoint_every_steps == 0:
            return True
        return self._main_late_for_a_checkpoint if self.world.distributed else self._late_for_a_checkpoint()

    def _late_for_a_checkpoint(self) -> bool:
        minutes, last = self.train_spec.checkpoint_every_minutes, getattr(self, "_last_checkpoint", None)
        return bool(minutes) and last is not None and time.monotonic() - last >= 60 * minutes

    def _save_within_epoch(self, epoch: int, steps_done: int, partial: dict[str, Any]) -> None:
        """The resume checkpoint in the middle of an epoch. Its loss sums are averaged over the
        processes, so that a resumed epoch logs the global batch's losses as an uninterrupted one
        does (every process goes on from these sums, and the epoch's means are averaged again)."""
        for part in ("sums", "grad_norms"):
            means = distributed.mean_over_processes(self.world, partial[part])
            partial[part] = {name: means[name].to(value.dtype) for name, value in partial[part].items()}
        # (a step can overflow the weights with finite gradients: the last good file then stays)
        if self._run is not None and self._weights_finite():
            save_resume_state(self._run.resume_path, self._resume_state(epoch, steps_done, partial))
            self._run.discard_replaced()
        self._last_checkpoint = time.monotonic()

    # ---- where it is, for messages ------------------------------------------------------
    def _saved_checkpoint(self) -> Path | None:
        last = RunDir(self.run_dir_path).resume_path if self.run_dir_path else None
        return last if last is not None and last.exists() else None

    def _resume_command(self) -> str:
        """The command that continues this run, as it was started (under torchrun or not)."""
        command = f"peerdistill train --resume {shell_word(self.run_dir_path)}"
        return f"torchrun ... -m {command}" if self.world.distributed else command

    def _lost_contact_advice(self) -> str:
        """After a process of the run was lost under torchrun: what the run keeps, how to go on."""
        if self.run_dir_path is None:
            return "start the run again on every node"
        resume = f"{self._resume_command()} on every node"
        if not self.world.is_main:  # (the run is on the main's disk)
            return f"the main process's node keeps the run: if it kept a checkpoint, continue with {resume}"
        if self._saved_checkpoint() is None:
            return "the run kept no checkpoint yet: start it again on every node, with --overwrite"
        return f"the run keeps its last checkpoint: continue with {resume}"
