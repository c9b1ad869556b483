"""The training loop: one forward per model, named loss terms, one backward, every optimizer steps."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ..cohort import Cohort
from ..arguments import (check_callbacks, check_flags, check_not_negative, check_optional_flags, check_path,
                         check_positive, whole_number)
from ..config_diff import without_paths
from ..config import DistillSpec, OptimSpec, TrainSpec
from ..data import DataSplits, TensorData, make_batches
from ..data.loaders import DatasetBatches, PatchBatches
from ..data.splits import channel_stats, check_names_fit_labels
from ..errors import ConfigError, DataError, NonFiniteError, RunDirError, TrainingAdvice, reworded, warn_user
from ..metrics import PER_EPOCH_CLASS_LIMIT, per_class_part, ranking_score
from ..graph import KnowledgeGraph, sigmoid_rampup
from ..json_files import read_json
from ..losses.adversarial import MapDiscriminator, discriminator_loss
from ..run_files import RUN_FILE
from ..spatial import align_to
from ..stopping import stopping_signals_held
from ..wording import first_few
from .. import run_lock
from . import distributed, selection
from .artifacts import RunDir, finish_replacing, mark_stopped, write_json
from .devices import resolve_device
from .distributed import World
from .averaging import WeightAverage
from .checkpointing import Checkpointing
from .evaluate import ENSEMBLE, evaluate, merge_meters
from .optim import build_optimizer, build_scheduler
from .progress import Progress
from .run_plan import RunPlan, run_plan
from ..launcher import launched
from .nonfinite import NonFiniteSteps
from .preflight import Preflight
from .records import RunRecords
from .runners import RunnerSetup
from .seeding import apply_seed, check_seed, last_seeding
from .speed import apply_backend_settings, resolve_speed, to_channels_last



@dataclass
class FitResult:
    """What ``Trainer.fit`` returns: the epochs' history and each model's figures at the best and
    the last epoch (``{model: {metric: value}}``, the ensemble and heads included), as the run
    folder's metrics.json holds them."""

    history: list[dict[str, Any]]  # a row per epoch: losses, validation figures, seconds (metrics.json's epochs)
    best_epoch: int  # an index into history, from 0 (history rows and metrics.json count epochs from 1)
    val_at_best: dict[str, dict[str, float]]  # the validation figures of the best epoch, which chose it
    test_at_best: dict[str, dict[str, float]]  # the test split scored with the best epoch's weights
    test_at_last: dict[str, dict[str, float]]  # ... and with the last epoch's (the same when it is the best)
    run_dir: Path | None = None  # where the run's files are (None: run_dir=None kept nothing)
    monitor: str = ""  # the model/metric that chose the best epoch (train.monitor, resolved)
    stopped_early: bool = False  # train.patience ended training before train.epochs
    monitor_undefined: bool = False  # the monitor was n/a in every epoch: the last epoch stands in
    ending_warnings: list[str] = field(default_factory=list)  # what training warned of as it ended (the
    # best epoch chosen by nothing, kept weights that give every image one class): metrics.json keeps them


# The holistic (adversarial) term's discriminator: its learning rate and WGAN gradient penalty,
# as a config's distill section defaults them.
DISCRIMINATOR_LR = DistillSpec.model_fields["discriminator_lr"].default
GP_WEIGHT = DistillSpec.model_fields["gp_weight"].default


def _checked_parts(cohort: Cohort, graph: KnowledgeGraph | list, task, rampup_epochs: int) -> KnowledgeGraph:
    """The Trainer's cohort, graph (a list of edges made one), task and ramp-up, checked to be
    what it takes and to go together (self-distillation heads are for classification)."""
    if not isinstance(cohort, Cohort):
        raise ConfigError(f"Trainer takes a Cohort first, got a {type(cohort).__name__}: Cohort.from_modules([...])")
    if isinstance(graph, (list, tuple)):  # the edges alone
        graph = KnowledgeGraph(list(graph))
    if not isinstance(graph, KnowledgeGraph):
        raise ConfigError(f"graph= takes a KnowledgeGraph (or a list of Edge), got a {type(graph).__name__}")
    if not hasattr(task, "default_monitor"):
        raise ConfigError(f"task= takes a task, e.g. ClassificationTask(num_classes), got {task!r}")
    ramp = whole_number(rampup_epochs)
    if ramp is None or ramp < 0:
        raise ConfigError(f"rampup_epochs {rampup_epochs!r}: give a whole number of epochs, 0 or more")
    headed = [m.name for m in cohort.members if m.head_layers]
    if headed and getattr(task, "name", "classification") != "classification":
        raise ConfigError(f"{', '.join(repr(n) for n in headed)} {'carries' if len(headed) == 1 else 'carry'} "
                          "self-distillation heads (HeadedModel, the "
                          f"'self' preset), which are for classification: their classifiers pool features to one "
                          f"class vector, not the maps {task.name} needs; give the bare model")
    return graph


def _check_discriminator_settings(graph: KnowledgeGraph, discriminator_lr: float, gp_weight: float) -> None:
    """The discriminator's settings are read only by a holistic edge: set without one, they would
    change nothing, in silence (a config's are refused alike)."""
    check_positive("Trainer", discriminator_lr=discriminator_lr)
    check_not_negative("Trainer", gp_weight=gp_weight)
    unread = [f"{name}={value!r}" for name, value, default in (
        ("discriminator_lr", discriminator_lr, DISCRIMINATOR_LR), ("gp_weight", gp_weight, GP_WEIGHT))
        if value != default]
    if unread and not any(edge.kind == "holistic" for edge in graph.edges):
        raise ConfigError(f"Trainer: {', '.join(unread)} set{'s' if len(unread) == 1 else ''} the discriminator of a "
                          "holistic (adversarial) edge, and the graph has none: drop "
                          f"{'it' if len(unread) == 1 else 'them'}, or add an Edge(..., kind='holistic')")


class Trainer(RunRecords, Preflight, RunnerSetup, NonFiniteSteps, Checkpointing):
    """Trains every non-frozen member of a cohort together on the losses of a knowledge graph.

    Each step: forward each model once (frozen ones under inference mode), the supervised loss
    of every trainable output, the graph's distillation terms scaled by the ramp-up, one
    backward, then each model's own optimizer steps (its connectors' parameters included).
    Validation every epoch picks the best epoch by ``train.monitor``; the test split is scored
    with the best epoch's weights (and with the last epoch's).
    """

    def __init__(
        self,
        cohort: Cohort,
        graph: KnowledgeGraph,
        task,
        *,
        train: TrainSpec | None = None,
        optim: OptimSpec | None = None,
        rampup_epochs: int = 0,
        seed: int | None = None,
        deterministic: bool | None = None,
        device: str | torch.device = "auto",
        run_dir: str | Path | None = None,
        overwrite: bool = False,
        progress: bool = True,
        callbacks: list[Callable[[int, dict[str, Any]], None]] | None = None,
        run_info: dict[str, Any] | None = None,
        config_yaml: str | None = None,
        discriminator_lr: float = DISCRIMINATOR_LR,
        gp_weight: float = GP_WEIGHT,
        patches: dict[str, Any] | None = None,
    ):
        graph = _checked_parts(cohort, graph, task, rampup_epochs)
        self.cohort, self.graph, self.task = cohort, graph, task
        _check_discriminator_settings(graph, discriminator_lr, gp_weight)
        # the sections as a config gives them: a spec, or a dict of its keys
        self.train_spec = TrainSpec(**train) if isinstance(train, dict) else train or TrainSpec()
        self.optim_spec = OptimSpec(**optim) if isinstance(optim, dict) else optim or OptimSpec()
        for key, spec, kind in (("train", self.train_spec, TrainSpec), ("optim", self.optim_spec, OptimSpec)):
            if not isinstance(spec, kind):
                raise ConfigError(f"{key}= takes a {kind.__name__} (or a dict of its keys), got a {type(spec).__name__}")
        self.rampup_epochs = int(rampup_epochs)
        # Unset: the values of the last seed_everything call (which seeded the models' weights),
        # so that one call sets a Python run's seed; 0 and False before any.
        last_seed, last_deterministic = last_seeding()
        if seed is not None:
            check_seed(seed)
        self.seed = last_seed if seed is None else int(seed)
        check_flags("Trainer", overwrite=overwrite, progress=progress)
        check_optional_flags("Trainer", deterministic=deterministic)
        self.deterministic = last_deterministic if deterministic is None else bool(deterministic)
        self.device = resolve_device(device)
        self.run_dir_path = check_path("run_dir", run_dir) if run_dir is not None else None
        self._has_trained = False  # an optimizer step was taken: a second fit would train on from its weights
        if self.run_dir_path is not None and self.run_dir_path.exists() and not self.run_dir_path.is_dir():
            raise RunDirError(f"run_dir '{self.run_dir_path}' is a file: give a folder for the run (new or empty)")
        self.overwrite = bool(overwrite)
        self.show_progress = bool(progress)
        self.callbacks = check_callbacks(callbacks)
        self.run_info = dict(run_info or {})
        self.config_yaml = config_yaml
        # (its messages name a Python caller's settings, not a config's keys: review 55a)
        self.built_in_python = config_yaml is None
        graph.bind(cohort)
        cohort.capture(graph.feature_requests())  # each recorded layer exists: said before any fit,
        cohort.capture({})  # and hooked only while one runs (_setup; released after it)
        self.monitor = self.train_spec.monitor or task.default_monitor
        self.supervised_name = getattr(task, "supervised_name", "ce")  # how the label loss is named
        self.monitor_model, self.monitor_metric = self._parse_monitor(self.monitor)
        self.connectors = nn.ModuleDict()
        self._connector_keys: dict[str, str] = {}
        self.discriminators = nn.ModuleDict()
        self._discriminator_keys: dict[str, str] = {}
        self.discriminator_lr, self.gp_weight = discriminator_lr, gp_weight
        # Patch training: {"size", "per_image", "foreground", "overlap"}; evaluation then slides a
        # window of the patch size over whole images.
        self.patches = patches
        self.window = (patches["size"], patches["size"]) if patches else None
        self.window_overlap = patches["overlap"] if patches else 0.5
        self.discriminator_optimizers: dict[str, torch.optim.Optimizer] = {}
        self.skipped_steps = 0
        self.skip_causes: dict[str, int] = {}  # this epoch's skipped steps per cause ("loss term 'x'")
        self.grad_norms: dict[str, torch.Tensor] = {}  # the last step's per-model gradient norms (when clipping)
        self._training_outputs_checked = False
        self._position = (0, 0)
        self.world = World()
        # What runs a member's forward in training when it is not the bare module: its DDP
        # wrapper under torchrun, its compiled form.
        self.runners: dict[str, nn.Module] = {}
        self.groups: list[tuple[list[str], nn.Module]] = []  # packed students: (names, runner)
        self.speed = resolve_speed(self.train_spec, self.device, deterministic)  # settled again in _setup
        self.scaler = None
        self.average: WeightAverage | None = None  # train.ema_decay
        self._trains_batchnorm = False  # settled in _setup

    def _parse_monitor(self, monitor: str) -> tuple[str, str]:
        model, _, metric = monitor.partition("/")
        valid_models = self.cohort.output_names() + [ENSEMBLE]
        if model not in valid_models or metric not in self.task.metric_names:
            raise ConfigError(
                f"train.monitor '{monitor}' must be MODEL/METRIC with MODEL in {valid_models} "
                f"and METRIC in {list(self.task.metric_names)}"
            )
        if metric.partition("_")[0] == "hd95":
            warn_user(f"train.monitor '{monitor}': HD95 leaves out the images where a model finds nothing of a "
                      "class the truth holds, so an epoch that misses a structure scores better than one that "
                      "finds it roughly (missed counts those images); monitor dice, or read missed beside HD95")
        return model, metric

    # ---- set-up -------------------------------------------------------------------------
    def _setup(self, data: DataSplits, resume: bool = False) -> None:
        """Everything a fit needs before its first step, in this order: the process group and the
        device, the splits checked, the batches, a first forward (_probe), the runners (packed,
        wrapped, compiled) and the optimizers."""
        self._name_classes(data)
        self._join_and_place(data)
        self._check_splits(data, resume)
        self._resuming = resume
        self._make_batches(data)
        self._seen_input_stats = None
        if hasattr(self.task, "check_training_data"):
            self.task.check_training_data(data.train)
        self._probe()
        if not data.stats and self._seen_input_stats is not None:  # a run that keeps no normalisation to apply
            self.run_info["input_stats"] = self._seen_input_stats
        self._build_runners()
        self._make_optimizers()

    def _join_and_place(self, data: DataSplits) -> None:
        """The process group joined, the seed and speed settings applied, the models on the device
        (channels-last where that is faster) recording the layers the graph reads."""
        # BatchNorm cannot train on one sample: micro-batches then hold two or more.
        self._trains_batchnorm = any(isinstance(sub, nn.modules.batchnorm._BatchNorm)
                                     for m in self.cohort.trainable for sub in m.module.modules())
        self.device = distributed.process_device(self.device)
        self.world = distributed.join(self.device)
        if self.world.distributed:
            distributed.check_same_run(self.world, self._what_is_run(data))
        self._declared_input_shape = tuple(data.input_shape)
        apply_seed(self.seed, self.deterministic)
        self.speed = resolve_speed(self.train_spec, self.device, self.deterministic)
        apply_backend_settings(self.speed)
        self.cohort.to(self.device)
        if self.speed.channels_last:
            for m in self.cohort.members:
                to_channels_last(m.module, self.device.type)
        # Every model records its layers again: a fit before this one handed packed students'
        # layers to their group, which is built anew below.
        self.cohort.capture(self.graph.feature_requests())
        self.cohort.hold_heads(True)
        self.scaler = self.speed.grad_scaler(self.device)

    def _check_splits(self, data: DataSplits, resume: bool) -> None:
        """The splits hold samples of their own, and a resumed run's batch is shared out equally."""
        ts = self.train_spec
        if not resume:  # (DataSplits made in Python; make_trainer checks a config's before building anything)
            check_names_fit_labels(data)
        if resume and ts.batch_size % self.world.size:  # (the batch is the run's: a resume cannot change it)
            divisors = [str(n) for n in range(1, ts.batch_size + 1) if ts.batch_size % n == 0]
            listed = first_few(divisors, 6)
            raise ConfigError(f"this run's global batch is {ts.batch_size} samples, which {self.world.size} processes "
                              f"cannot share equally: resume it on a number of processes that divides "
                              f"{ts.batch_size} ({listed})").found_by_every_process()
        for split in ("train", "val", "test"):
            count = len(getattr(data, split))
            if count == 0:
                raise DataError(f"the {split} split is empty: training needs samples in train, val and test")
            if count < self.world.size:  # (said here, where the split has its name)
                raise ConfigError(f"the {split} split's {count} sample{'s' if count > 1 else ''} cannot be shared by "
                                  f"{self.world.size} processes: every process needs at least one; use fewer "
                                  "processes or more data").found_by_every_process()
        for split in ("val", "test"):
            if getattr(data, split) is data.train:  # its figures would be training figures
                warn_user(f"the {split} split is the training split itself (the same dataset given twice): its "
                          "figures are not held out; give it samples of its own")

    def _make_batches(self, data: DataSplits) -> None:
        """Each split's batches, this process's share of them; the training order drawn from one
        generator, in step on every process."""
        ts = self.train_spec
        if self.speed.data_workers and all(isinstance(getattr(data, s), TensorData) for s in ("train", "val", "test")):
            # (review 51d: run.json said 2 workers that never ran; a resume takes no config to mend)
            if ts.num_workers != "auto" and not self._resuming:
                warn_user(f"train.num_workers={ts.num_workers} is not used: this data is held in memory, and its "
                          "batches are cut from it without DataLoader workers; remove it", TrainingAdvice)
            self.speed = replace(self.speed, data_workers=0)
        self.generator = torch.Generator().manual_seed(self.seed)
        shard = (self.world.rank, self.world.size)
        drop_last = len(data.train) > ts.batch_size
        if self.patches:
            if not isinstance(data.train, TensorData):
                raise ConfigError("patch training needs in-memory images (a folders or arrays dataset)")
            self.train_batches = PatchBatches(data.train, self.patches["size"], self.patches["per_image"],
                                              ts.batch_size, self.device, self.generator, self.patches["foreground"],
                                              shard=shard)
        else:
            check = (lambda y: self.task.check_targets(y, "training")) if hasattr(self.task, "check_targets") else None
            self.train_batches = make_batches(data.train, ts.batch_size, self.device, shuffle=True,
                                              generator=self.generator, num_workers=self.speed.data_workers,
                                              drop_last=drop_last, shard=shard, check=check)
        self.val_batches = make_batches(data.val, ts.eval_batch_size, self.device, shuffle=False,
                                        num_workers=self.speed.data_workers, shard=shard)
        self.test_batches = make_batches(data.test, ts.eval_batch_size, self.device, shuffle=False,
                                         num_workers=self.speed.data_workers, shard=shard)

    def _make_optimizers(self) -> None:
        """Each trained model's optimizer (its connectors' parameters with it) and schedule, the
        critics' optimizers, and the weight average, built last: after every move of the weights."""
        self.optimizers = {
            m.name: build_optimizer(m.module, self.optim_spec, m.lr, extra=self._connector_params(m.name),
                                     name=m.name)
            for m in self.cohort.trainable
        }
        self.schedulers = {n: build_scheduler(o, self.optim_spec, self.train_spec.epochs)
                           for n, o in self.optimizers.items()}
        # WGAN-GP's usual critic optimiser (Gulrajani et al. 2017): Adam, betas (0.5, 0.9).
        self.discriminator_optimizers = {
            key: torch.optim.Adam(d.parameters(), lr=self.discriminator_lr, betas=(0.5, 0.9))
            for key, d in self.discriminators.items()
        }
        decay = self.train_spec.ema_decay
        if decay is not None:  # last: after every move of the weights (device, layout, SyncBatchNorm)
            self.average = WeightAverage({m.name: m.module for m in self.cohort.trainable}, decay)

    def _what_is_run(self, data: DataSplits) -> dict[str, Any]:
        """What every process must agree on: the config, the splits (sizes, classes, and the
        files of each, as a digest of their names relative to the data's folder) and the frozen
        models' weights (DDP makes the trained ones the main's; a frozen teacher each node reads
        from its own copy of the file: review 54g). Paths may differ: each node may keep its copy
        of the data, the checkpoints and the runs elsewhere."""
        files = data.info.get("files")
        return {"config": without_paths(yaml.safe_load(self.config_yaml)) if self.config_yaml else None,
                "data": {"split sizes": {s: len(getattr(data, s)) for s in ("train", "val", "test")},
                         "class names": list(data.class_names),
                         "files (a digest of their names)": hashlib.sha256(
                             json.dumps(files, sort_keys=True).encode()).hexdigest()[:12] if files else None},
                "frozen weights (a digest)": {name: digest[:12] for name, digest in self._frozen_digests().items()}}

    def _probe(self) -> None:
        """A dry run on a few validation samples: every output must have the task's shape, and
        connectors are created where a learner's feature shape differs from its target's. The
        test split's first batch is checked too, before any epoch."""
        x, y = next(iter(self.val_batches))
        self._check_batch(x, y, "validation")
        # The test split is read only after the last epoch: a problem there would lose the run's result.
        test_x, test_y = next(iter(self.test_batches))
        self._check_batch(test_x, test_y, "test")
        self._warn_of_doubtful_targets({"validation": y, "test": test_y})
        if x.ndim == 4:  # what the models see (as a Dataset prepared it): predict compares its inputs with it
            self._seen_input_stats = channel_stats(x.detach().float().cpu())
        x = x[:2]
        if self.window:  # a window-sized crop is what training sees, and cheap
            x = x[..., : self.window[0], : self.window[1]]
        self._probe_input = x
        self.cohort.eval()
        try:
            out = self._probe_forward(x)
        except ConfigError as exc:
            if not (self.speed.channels_last and self.train_spec.channels_last == "auto"):
                raise
            # A model that flattens with .view() cannot take channels-last activations: the
            # automatic setting gives way (recorded), as packing students does.
            for m in self.cohort.members:
                m.module.to(memory_format=torch.contiguous_format)
            self.speed = replace(self.speed, channels_last=False)
            out = self._probe_forward(x)
            self.run_info["channels_last_fallback"] = str(exc)
        self._check_outputs(out, len(x))
        self._warn_of_probabilities(out)
        self._warn_of_random_evaluation(x, out)
        try:  # the last batch of a split may hold one sample
            self._check_outputs(self._probe_forward(x[:1]), 1)
        except (DataError, ConfigError) as exc:
            raise reworded(exc, f"for a batch of one input (two passed): {exc}; a .squeeze() drops the batch "
                            "dimension then: squeeze only the dimensions meant (.flatten(1), .squeeze(-1))") from None
        self.graph.check_dense(out)
        connectors = self.graph.build_connectors(out)
        self._connector_keys = {edge: f"c{i}" for i, edge in enumerate(connectors)}
        self.connectors = nn.ModuleDict({self._connector_keys[e]: c for e, c in connectors.items()}).to(self.device)
        adversarial = self.graph.adversarial_edges()
        self._discriminator_keys = {edge.name: f"d{i}" for i, edge in enumerate(adversarial)}
        self.discriminators = nn.ModuleDict({
            self._discriminator_keys[e.name]: MapDiscriminator(x.shape[1], out.logits[e.source].shape[1])
            for e in adversarial
        }).to(self.device)

    def _step_generator(self, epoch: int, step: int, stream: int = 0) -> torch.Generator:
        """Augmentation (``stream`` 0) and the critics' draws (1). One process: the run's
        generator. Under torchrun: a generator per process, step and stream, so processes draw
        differently yet a resumed run draws the same numbers."""
        if not self.world.distributed:
            return self.generator
        return torch.Generator(device="cpu").manual_seed(
            distributed.step_seed(self.seed + 2 * stream, epoch, step, self.world.rank))

    def _connector_params(self, member: str) -> list[nn.Parameter]:
        """A connector learns with the model at the learning end of its edge."""
        params = []
        for edge in self.graph.connector_edges():
            key = self._connector_keys.get(edge.name)
            if key is not None and self.cohort.owner(edge.target).name == member:
                params += list(self.connectors[key].parameters())
        return params

    def _connector_map(self) -> dict[str, nn.Module]:
        return {edge: self.connectors[key] for edge, key in self._connector_keys.items()}

    def _discriminator_map(self) -> dict[str, nn.Module]:
        return {edge: self.discriminators[key] for edge, key in self._discriminator_keys.items()}

    # ---- the loop -----------------------------------------------------------------------
    def fit(self, data: DataSplits, resume: bool = False) -> FitResult:
        """Train the cohort on ``data``'s train split, validating each epoch and keeping the best
        epoch's weights by ``train.monitor``, then score the test split with the last and the best
        weights. With ``run_dir`` the run's files are written there (``resume=True`` continues a
        stopped run from its checkpoint). Returns the history, the best epoch and the scores."""
        if not isinstance(data, DataSplits):
            raise DataError(f"fit takes DataSplits (train, val and test), got a {type(data).__name__}: "
                            "DataSplits.from_arrays(x_train, y_train, x_val, y_val, x_test, y_test) makes one")
        check_flags("fit", resume=resume)
        resume = bool(resume)
        if self._has_trained and not resume:
            raise ConfigError("this Trainer has trained its models already: a second fit would train them on from the "
                              "first's weights, with a new optimizer and schedule (and new connectors), and report its "
                              "own epochs alone. To train from scratch, build new models and a new Trainer; to train "
                              "these weights on, on purpose, build a new Trainer over them; to continue a stopped run, "
                              "fit(data, resume=True) with its run_dir")
        self._run = None
        try:
            return self._fit(data, resume)
        except BaseException as exc:
            # (signals held: a second one, torchrun's SIGTERM 1 ms after a scheduler's, skipped the marking, review 56c)
            with stopping_signals_held():
                lost = distributed.lost_contact(getattr(self, "world", None), exc, self._lost_contact_advice)
                # The run --overwrite replaced goes back first: under torchrun the wait below may end
                # with the launcher's SIGTERM, which no handler takes there.
                if self._run is not None:
                    if self._run.put_back_replaced():
                        if not isinstance(exc, KeyboardInterrupt):  # (the interruption's hint says it)
                            warn_user(f"'{self._run.path}': the run --overwrite was replacing is put back as it "
                                      "was, this one having kept no checkpoint")
                    else:
                        mark_stopped(self._run, lost or exc)
            # Under torchrun: leave the process group at once (no barrier: another process may
            # be stopping too), so this one exits with its message instead of aborting in the
            # group's destructor, and a process still waiting on it fails instead of hanging.
            # Interrupted (Ctrl-C reaches every process), none waits for the others: one stuck in a
            # collective cannot take its interruption until a peer leaves (review 49c: 30 s hangs).
            # (a peer gone will not come to meet either)
            waited = 0.0 if isinstance(exc, KeyboardInterrupt) or lost else 30.0
            distributed.abandon(getattr(self, "world", None), wait_s=waited)
            if lost is not None:
                raise lost from exc  # (torch's error kept as its cause, for a traceback's reader)
            raise
        finally:  # the run directory is free for another process (or another fit) again
            run_lock.release(getattr(self, "_run_lock", None))
            self._run_lock = None
            # The models are the user's again: a hook left on would keep recording (holding each
            # forward's activations), fail torch.save(model) and torch.jit.script, and pile up
            # with the hooks of a next Cohort of the same modules.
            self.cohort.capture({})
            self.cohort.hold_heads(False)
            self._stop_loader_workers()

    def _stop_loader_workers(self) -> None:
        """Persistent DataLoader workers left running: a later fit's workers, forked from this
        process, inherited their handles and printed tracebacks at exit (review 51d)."""
        for batches in (getattr(self, name, None) for name in ("train_batches", "val_batches", "test_batches")):
            if isinstance(batches, DatasetBatches):
                batches.close()

    def check(self, data: DataSplits) -> RunPlan:
        """Everything ``fit`` does before its first step, writing nothing: the data's batches, the
        models on their device, one forward of a few validation samples (connectors, packed
        students), the warnings training begins with; returns what the run would be (``RunPlan``),
        what ``train --dry-run`` prints. The models keep no hook afterwards."""
        if not isinstance(data, DataSplits):
            raise DataError(f"check takes DataSplits (train, val and test), got a {type(data).__name__}: "
                            "DataSplits.from_arrays(x_train, y_train, x_val, y_val, x_test, y_test) makes one")
        if launched():  # (each process would check alone, and the group be left half formed on an error)
            raise ConfigError("a dry run checks a run in one process: run it without torchrun (the check is the "
                              "same; what differs under torchrun is the share of each batch a process takes)")
        # where the run would go, as creating it would decide (refused: said now, as the run would say it)
        verdict = RunDir.verdict(self.run_dir_path, self.overwrite) if self.run_dir_path is not None else None
        modes = [(sub, sub.training) for m in self.cohort.members for sub in m.module.modules()]
        try:
            self._setup(data)
            self._check_gradients_of_the_probe()
            return run_plan(self, data, self._warned_about_training(data), verdict)
        finally:
            self.cohort.capture({})
            self.cohort.hold_heads(False)
            for sub, training in modes:  # (the probe ran in eval mode: the models are left as given)
                sub.train(training)
            self._stop_loader_workers()

    def _fit(self, data: DataSplits, resume: bool) -> FitResult:
        if resume and self.run_dir_path is not None and not launched():
            # A run another process trains is refused before the set-up (the batches, the probe),
            # and held from here (taken over where the command line took it first); under torchrun
            # the main process takes it in _open_run_dir, its refusal said by every process.
            finish_replacing(self.run_dir_path)  # (the folder the run is in, before its lock is taken)
            self._run_lock = run_lock.hold(self.run_dir_path, take_over=True)
        self._setup(data, resume)
        run = self._on_main(lambda: self._open_run_dir(data, resume), share=False)
        if not resume:  # from here a failure marks the run stopped; a refused resume writes nothing
            self._run = run
        self._history: list[dict[str, Any]] = []
        self._best = {"epoch": -1, "score": -math.inf, "val": {}, "weights": None}
        self._stopped_early = False
        start_epoch, start_step, partial = self._resume(run) if resume else (0, 0, None)
        said = self._warned_about_training(data)  # here, so that a refused run or resume says only why
        if run is not None and said:  # kept for the report: a page read alone says them too
            meta = read_json(run.path / RUN_FILE)
            write_json(run.path / RUN_FILE, {**meta, "training_warnings": said})
        self._last_checkpoint = time.monotonic()
        # the main process's answer for every process, which take part in each such checkpoint
        # (a script may give its run_dir on the main process alone)
        self._checkpoints_within_epochs = self._on_main(lambda: self.run_dir_path is not None)
        with Progress(enabled=self.show_progress and self.world.is_main) as progress:
            if resume:  # how much of the killed session's work was kept
                progress.say(self._resumed_line(start_epoch, start_step))
            elif run is not None:  # (a log read while the run trains says where its files go)
                epochs, steps = self.train_spec.epochs, len(self.train_batches)
                progress.say(f"training '{run.path}': {epochs:,} epoch{'s' if epochs > 1 else ''} of {steps:,} "
                             f"step{'s' if steps > 1 else ''}")
            for epoch in range(start_epoch, self.train_spec.epochs):
                if self._stopped_early:  # resumed after the epoch that ended training
                    break
                self._run_epoch(epoch, start_step if epoch == start_epoch else 0, partial, progress, run)
            twice = self._best["epoch"] != len(self._history) - 1
            progress.say(f"scoring the test split ({len(data.test):,} samples) with the weights of the last epoch"
                         + (" and of the best one" if twice else ""))
            result = self._scored_on_test(run, progress)
        if run is not None:
            if resume:
                # models/ holds the best epoch's weights (now in the cohort), whatever the killed
                # process wrote there after its last checkpoint.
                self._save_models(run)
            self._write_final(run, result)
            run.discard_replaced()
        distributed.leave(self.world)
        return result

    def _run_epoch(self, epoch: int, start_step: int, partial, progress: Progress, run: RunDir | None) -> None:
        """One epoch: trained, validated, the best weights kept (and saved), the schedulers
        stepped, progress written and the callbacks called."""
        epochs = self.train_spec.epochs
        started = time.perf_counter()
        losses, norms = self._train_epoch(epoch, progress, start_step, partial)
        if not self._validates_after(epoch):  # (train.val_every: a row of the training's figures alone)
            row = self._row(epoch, losses, norms, {}, time.perf_counter() - started)
            self._history.append(row)
        else:
            with self._shipped_weights():  # validated, kept and saved: the averages under train.ema_decay
                val = self._evaluate(self.val_batches, f"the validation split after epoch {epoch + 1}")
                row = self._row(epoch, losses, norms, val, time.perf_counter() - started)
                self._history.append(row)
                self._keep_if_best(epoch, val, run)
        for scheduler in self.schedulers.values():
            scheduler.step()
        progress.epoch_done(epoch, epochs, row, self.monitor_model, self.monitor_metric)
        if run is not None:
            self._write_progress(run, epoch)
        if self.world.is_main:
            for callback in self.callbacks:
                callback(epoch, row)

    def _validates_after(self, epoch: int) -> bool:
        """``train.val_every``: after every Nth epoch, and the last."""
        return (epoch + 1) % self.train_spec.val_every == 0 or epoch == self.train_spec.epochs - 1

    def _keep_if_best(self, epoch: int, val: dict[str, dict[str, float]], run: RunDir | None) -> None:
        """The validated weights kept (and saved) when the monitor improved; ``train.patience``
        judged."""
        score = ranking_score(self.monitor_metric, val[self.monitor_model][self.monitor_metric])
        improved = score > self._best["score"]
        if improved:
            self._best.update(epoch=epoch, score=score, val=val)
        self._stopped_early = self._out_of_patience(epoch)
        if improved or (self._best["epoch"] < 0 and (epoch == self.train_spec.epochs - 1 or self._stopped_early)):
            # The last epoch stands in when the monitor was never finite (say, AUC on a
            # validation split lacking a class), so a run always ships weights.
            self._best.update(epoch=epoch, score=score, val=val, weights=self._snapshot())
            if run is not None:
                self._save_models(run)

    def _scored_on_test(self, run: RunDir | None, progress: Progress) -> FitResult:
        """The test split scored with the last epoch's weights and the best epoch's (which the
        models keep from here on: averaged under train.ema_decay), as the fit's result."""
        if self.average is not None:  # training is over: the models are their averages from here on
            self.average.copy_to_models()
        test_last = self._evaluate(self.test_batches, "the test split after the last epoch", progress,
                                   "test split, last epoch's weights")
        if self._best["epoch"] == len(self._history) - 1:  # the best weights are the last ones: the same scores
            test_best = copy.deepcopy(test_last)
        else:
            self._load_snapshot(self._best["weights"])
            best = self._best["epoch"] + 1
            test_best = self._evaluate(self.test_batches, f"the test split at the best epoch ({best})", progress,
                                       f"test split, best epoch's ({best}) weights")
        undefined = not math.isfinite(self._best["score"])
        said = []
        if undefined and self.world.is_main:
            other = self._defined_monitor()
            said = [f"val {self.monitor} was n/a in every epoch (a class absent from the validation split, or "
                    "never predicted there), so no epoch was chosen by it: the last epoch's weights stand in "
                    "as the best; monitor a figure the validation split defines (train.monitor"
                    + (f", e.g. {other})" if other else ")")]
        elif self.world.is_main:
            said = [w for w in [self._choice_worth_little()] if w]
        for warning in said:
            warn_user(warning)
        return FitResult(self._history, self._best["epoch"], self._best["val"], test_best, test_last,
                         self.run_dir_path if run else None, self.monitor, stopped_early=self._stopped_early,
                         monitor_undefined=undefined, ending_warnings=said)

    def _defined_monitor(self) -> str | None:
        """A monitor other than the one in use that the last validation defined (finite): for the
        warning of a monitor n/a in every epoch, which must not advise the monitor that failed."""
        val = self._best.get("val") or {}
        model = self.monitor_model if self.monitor_model in val else next(iter(val), None)
        figures = val.get(model) or {}
        preferred = ["pixel_accuracy", "accuracy", "balanced_accuracy", getattr(self.task, "default_monitor", "")
                     .rpartition("/")[2]]
        for metric in dict.fromkeys(preferred):
            value = figures.get(metric)
            if (f"{model}/{metric}" != self.monitor and isinstance(value, (int, float))
                    and math.isfinite(value)):
                return f"{model}/{metric}"
        return None

    def _choice_worth_little(self) -> str | None:
        """The warning for kept weights that predict one class for every validation image, else for
        a monitor that never moved (engine/selection.py): either way the best epoch is the first in
        name only."""
        names = getattr(self.task, "class_names", None)
        frozen = tuple(m.name for m in self.cohort.frozen)
        batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for member in self.cohort.members
                         if not member.frozen for m in member.module.modules())
        one_class = (selection.one_class_kept(self._best["val"], names, self._best["epoch"], len(self.train_batches),
                                              batch_norm, frozen, from_python=self.built_in_python,
                                              monitor=self.monitor)
                     if names and getattr(self.task, "name", "") == "classification" else None)
        return one_class or selection.flat_monitor(self._history, self.monitor, getattr(self.task, "name", ""))

    def _shipped_weights(self):
        """The weights that are validated and shipped: each model's average under
        ``train.ema_decay``, swapped in for the duration; else the live ones."""
        return self.average.swapped_in() if self.average is not None else contextlib.nullcontext()

    def _out_of_patience(self, epoch: int) -> bool:
        """``train.patience``: the monitor has not improved in that many epochs up to ``epoch``
        (never finite counts as never improved). Every process sees the same gathered scores,
        so all stop together."""
        patience = self.train_spec.patience
        return (patience is not None and epoch < self.train_spec.epochs - 1
                and epoch - self._best["epoch"] >= patience)

    def _on_main(self, action: Callable[[], Any], share: bool = True) -> Any:
        return distributed.on_main(self.world, action, share)

    def _evaluate(self, batches, where: str, progress: Progress | None = None,
                  shown_as: str = "") -> dict[str, dict[str, float]]:
        """``progress``: a bar of the batches scored, named ``shown_as`` (the final scoring)."""
        def gathered(meters):  # every process's share of the split in one meter per output
            return merge_meters(distributed.gather_objects(self.world, meters))

        merge = gathered if self.world.distributed else None
        if progress is None:
            return evaluate(self.cohort, self.task, batches, self.window, self.window_overlap, merge=merge, where=where)
        task_id = progress.start_pass(shown_as, len(batches))
        scores = evaluate(self.cohort, self.task, batches, self.window, self.window_overlap, merge=merge, where=where,
                          batch_done=lambda: progress.advance(task_id))
        progress.finish_pass(task_id, shown_as)
        return scores

    def _train_epoch(self, epoch: int, progress: Progress, start_step: int = 0,
                     partial: dict[str, Any] | None = None) -> tuple[dict[str, float], dict[str, float]]:
        """One pass over the training batches; ``start_step`` > 0 continues an epoch a resumed
        checkpoint left half done (``partial``: the data generator's state when that epoch
        began and the loss sums so far). Returns the epoch's mean loss terms and, when
        gradients are clipped, each model's mean gradient norm before clipping."""
        self.cohort.train()
        self.connectors.train()
        self.discriminators.train()
        steps = len(self.train_batches)
        if start_step:
            now = self.generator.get_state()
            epoch_start = partial["epoch_data_state"]
            self.generator.set_state(epoch_start)
            batches = self.train_batches.iterate(start_step)  # redraws this epoch's order
            self.generator.set_state(now)
            sums, count, self.skipped_steps = dict(partial["sums"]), partial["count"], partial["skipped"]
            norm_sums = dict(partial.get("grad_norms", {}))
            self.skip_causes = dict(partial.get("skip_causes", {}))  # checkpoints written before it was kept lack it
        else:
            epoch_start = self.generator.get_state()
            batches = self.train_batches.iterate()
            sums, norm_sums, count, self.skipped_steps, self.skip_causes = {}, {}, 0, 0, {}
        task_id = progress.start_epoch(epoch, self.train_spec.epochs, steps, done=start_step)
        for step, (x, y) in enumerate(batches, start=start_step):
            self._position = (epoch, step)
            if self.world.distributed:  # dropout masks differ per process, reproducibly
                torch.manual_seed(distributed.step_seed(self.seed + 1, epoch, step, self.world.rank))
            x, y = self.task.augment(x, y, self._step_generator(epoch, step))
            terms = self.step(x, y, self._ramp(epoch + step / max(steps, 1)))
            for name, value in terms.items():
                sums[name] = sums.get(name, 0) + value.detach()
            for name, value in (self.grad_norms if terms else {}).items():
                norm_sums[name] = norm_sums.get(name, 0) + value
            count += 1 if terms else 0
            progress.advance(task_id)
            if self._checkpoints_within_epochs and step + 1 < steps and self._checkpoint_due(step + 1):
                self._save_within_epoch(epoch, step + 1, {
                    "epoch_data_state": epoch_start, "sums": sums, "grad_norms": norm_sums, "count": count,
                    "skipped": self.skipped_steps, "skip_causes": self.skip_causes})
        progress.finish_epoch(task_id)
        self._check_skipped(epoch, steps)
        for module in [m.module for m in self.cohort.trainable] + [self.connectors, self.discriminators]:
            distributed.broadcast_state(self.world, module, parameters=False)  # the main's BatchNorm statistics
        if self.average is not None:  # and the main's averages of them
            distributed.broadcast_tensors(self.world, self.average.tensors())
        means = [{name: total / max(count, 1) for name, total in part.items()} for part in (sums, norm_sums)]
        return tuple({name: float(v) for name, v in distributed.mean_over_processes(self.world, m).items()}
                     for m in means)

    def step(self, x: torch.Tensor, y: torch.Tensor, ramp: float = 1.0) -> dict[str, torch.Tensor]:
        """One optimisation step of the whole cohort; returns the named loss terms (none when a
        non-finite value made it skip). With ``train.micro_batch_size`` the batch is forwarded
        and backpropagated in parts whose gradients add up, weighted by their share of it."""
        # Under the skip policy a bad step must leave no trace: keep the buffers (BatchNorm
        # running statistics) the forward pass is about to update.
        self._buffers_before = ([b.detach().clone() for b in self._trained_buffers()]
                                if self.speed.nonfinite == "skip" else None)
        self._step_inputs = x  # a non-finite loss may come from the data itself: said so then
        self.grad_norms = {}
        if not self._training_outputs_checked:
            self._check_batch(x, y, "training")
        if self.speed.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        # Near-equal parts (33 in parts of at most 16: 11, 11, 11); with BatchNorm none of a
        # single sample: 33 in parts of 2 (or 1) is sixteen parts, one of 3.
        count = -(-len(x) // (self.train_spec.micro_batch_size or len(x)))
        if self._trains_batchnorm:
            count = min(count, max(len(x) // 2, 1))
        parts = list(zip(x.tensor_split(count), y.tensor_split(count)))
        terms: dict[str, torch.Tensor] = {}
        critic_parts = []
        for i, (xi, yi) in enumerate(parts):
            share = len(xi) / len(x)
            # DDP shares the gradients once, with the last part's backward.
            last = i == len(parts) - 1
            with contextlib.nullcontext() if last else distributed.gradients_kept_local(self._ddp_runners()):
                out, part_terms = self._forward_terms(xi, yi, ramp)
                part_total = torch.stack([t.float() for t in part_terms.values()]).sum() * share
                (self.scaler.scale(part_total) if self.scaler else part_total).backward()
            for name, value in part_terms.items():
                terms[name] = terms.get(name, 0) + share * value.detach().float()
            critic_parts.append((share, xi, self._critic_inputs(out)))
        term_values = torch.stack(list(terms.values()))
        total = term_values.sum()
        distributed.average_gradients(self.world, self.connectors.parameters())
        if self.scaler:
            for optimizer in self.optimizers.values():
                self.scaler.unscale_(optimizer)
        # One device sync for every check: the total, each loss term (so that every process can
        # name the term another one found), each model's gradients, then the statistics its
        # forward updated (activations can overflow a BatchNorm's running variance while the
        # normalised outputs, and so the losses, stay finite). Every process takes the same
        # branch, or DDP's collectives would wait forever.
        statistics = self._trained_buffers_by_model()
        checks = self._finite_checks(total, term_values, statistics)
        if self.world.distributed:  # the same collective carries whether the main's clock says checkpoint
            checks.append(torch.tensor([self._late_for_a_checkpoint() or not self.world.is_main], device=self.device))
        finite = distributed.all_true_each(self.world, torch.cat(checks))
        if self.world.distributed:
            *finite, self._main_late_for_a_checkpoint = finite
        skipped = self._skipped_if_non_finite(finite, terms, statistics)
        if skipped is not None:
            return skipped
        self.grad_norms = self._clip_gradients()
        for optimizer in self.optimizers.values():
            (self.scaler.step(optimizer) if self.scaler else optimizer.step())
        self._has_trained = True  # (the models have moved: a second fit would train on from here)
        if self.scaler:
            self.scaler.update()
        if self.average is not None:
            self.average.update()
        terms["total"] = total
        terms.update(self._discriminator_step(critic_parts))
        return terms

    def _forward_terms(self, x: torch.Tensor, y: torch.Tensor, ramp: float):
        """Every model's forward on ``x`` and the named loss terms: each trainable output's
        supervised loss and the graph's edges."""
        with self.speed.autocast(self.device):
            out = self.cohort.forward(x, self.runners, self.groups)
            if not self._training_outputs_checked:  # a model may return something else in training mode
                try:
                    self._check_outputs(out, len(x))
                except DataError as exc:
                    # (every process runs the same models: under torchrun each finds it alike)
                    raise DataError(f"in training mode (its output in eval mode passed the check before "
                                    f"training): {exc}. Of a tuple or list output the first item is taken as "
                                    "the logits: return them first").found_by_every_process() from None
                self._check_logits_carry_gradients(out)
                self._check_features_carry_gradients(out)
                self._training_outputs_checked = True
            terms = {}
            for m in self.cohort.trainable:
                for name in m.output_names():
                    weight = self.graph.supervised_weights.get(name, 1.0)
                    if weight:
                        terms[f"{name}/{self.supervised_name}"] = weight * self.task.supervised_loss(out.logits[name], y)
            terms.update(self.graph.losses(out, y, self._connector_map(), scale=ramp, inputs=x,
                                           discriminators=self._discriminator_map()))
        return out, terms

    def _check_gradients_of_the_probe(self) -> None:
        """What the first step checks of the trained models' outputs, for a dry run: one forward
        of the probe's samples with autograd on, still in eval mode (no running statistics move;
        review 53c: a model returning detached logits passed the dry run and failed at once)."""
        with torch.enable_grad():  # (one sample: the activations autograd keeps count at the dry run's peak)
            out = self.cohort.forward(self._probe_input[:1])
        self._check_logits_carry_gradients(out)
        self._check_features_carry_gradients(out)

    def _check_logits_carry_gradients(self, out) -> None:
        """A trained model's logits must lead back to its weights: detached ones (``.detach()``,
        a forward under ``torch.no_grad``) leave it as built, shipped and scored all the same."""
        for m in self.cohort.trainable:
            for name in m.output_names():
                if not out.logits[name].requires_grad:
                    raise ConfigError(f"model '{name}' returns its logits without a gradient in training "
                                      "(detached, or computed under torch.no_grad or inference_mode), so it "
                                      "cannot learn: return them as the layers computed them").found_by_every_process()

    def _check_features_carry_gradients(self, out) -> None:
        """A feature an edge teaches must lead back into its trained model; one recorded inside
        ``torch.utils.checkpoint(use_reentrant=True)`` (whose forward runs without autograd) or
        above frozen layers does not, and the edge would teach nothing, unseen."""
        for edge in self.graph.edges:
            if not edge.on_features or self.cohort.owner(edge.target).frozen:
                continue
            if not out.features[edge.target][edge.target_layer].requires_grad:
                raise ConfigError(
                    f"edge {edge.name}: layer '{edge.target_layer}' of '{edge.target}' gives its output without a "
                    "gradient in training, so the edge cannot teach the model: no trainable layer comes before it "
                    "(it reshapes the input, or follows frozen layers only), or it runs inside "
                    "torch.utils.checkpoint(use_reentrant=True) (use use_reentrant=False), or its output is "
                    "detached (.detach(), torch.no_grad); record a layer after a trained one").found_by_every_process()

    def _ddp_runners(self) -> list[nn.Module]:
        return list(self.runners.values()) + [runner for _, runner in self.groups]

    def _clip_gradients(self) -> dict[str, torch.Tensor]:
        """``optim.clip_grad_norm``: each model's gradient (its optimizer's parameters, connectors
        included) scaled down to that 2-norm, after the fp16 scaler's unscaling; the norms before
        clipping are returned (logged per epoch). Each model alone, as if it trained by itself."""
        limit = self.optim_spec.clip_grad_norm
        if limit is None:
            return {}
        return {name: torch.nn.utils.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None], limit,
                    foreach=True).detach()
                for name, optimizer in self.optimizers.items()}

    def _critic_inputs(self, out) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """What the critics of holistic edges learn from: each edge's source and learner maps, detached."""
        return {edge.name: (out.logits[edge.source].detach(), out.logits[edge.target].detach())
                for edge in self.graph.adversarial_edges()}

    def _discriminator_step(self, parts: list[tuple[float, torch.Tensor, dict]]) -> dict[str, torch.Tensor]:
        """The critics of holistic edges learn after the models: source maps are 'real', the
        learner's 'fake', Wasserstein loss plus gradient penalty; over micro-batches, each part's
        loss weighted by its share of the batch, one step."""
        terms = {}
        for edge in self.graph.adversarial_edges():
            key = self._discriminator_keys[edge.name]
            critic, optimizer = self.discriminators[key], self.discriminator_optimizers[key]
            optimizer.zero_grad(set_to_none=True)
            loss, generator = 0.0, self._step_generator(*self._position, stream=1)
            for share, x, maps in parts:
                source, target = maps[edge.name]
                real = source.float().softmax(dim=1)
                fake = align_to(target, source.shape[-2:]).float().softmax(dim=1)
                part = share * discriminator_loss(critic, x, real, fake, self.gp_weight, generator)
                if torch.isfinite(part):
                    part.backward()
                loss = loss + part.detach()
            if not distributed.all_true(self.world, bool(torch.isfinite(loss)), self.device):
                if self.speed.nonfinite == "stop":
                    finding = (f"non-finite critic loss of edge '{edge.name}' at epoch {self._position[0] + 1}, "
                               f"step {self._position[1] + 1}")
                    raise NonFiniteError(f"{finding}; {self._last_good()}. Lower distill.discriminator_lr and train "
                                         f"again, or {self._skip_advice()}", finding).found_by_every_process()
                optimizer.zero_grad(set_to_none=True)
                continue  # skip: this critic does not learn from this step
            distributed.average_gradients(self.world, critic.parameters())
            optimizer.step()
            terms[f"critic/{edge.name}"] = loss
        return terms

    def _ramp(self, epoch_progress: float) -> float:
        if self.rampup_epochs <= 0:
            return 1.0
        return sigmoid_rampup(epoch_progress / self.rampup_epochs)

    # ---- records ------------------------------------------------------------------------
    def _row(self, epoch: int, losses: dict[str, float], grad_norms: dict[str, float],
             val: dict[str, dict[str, float]], seconds: float) -> dict:
        row: dict[str, Any] = {"epoch": epoch + 1, "seconds": round(seconds, 3), "rampup": self._ramp(epoch + 1),
                               "skipped_steps": self.skipped_steps,
                               "skipped_for": "; ".join(f"{c}: {n}" for c, n in self.skip_causes.items())}
        for name, opt in self.optimizers.items():
            row[f"lr/{name}"] = opt.param_groups[0]["lr"]
        row.update({f"train/loss/{k}": v for k, v in losses.items()})
        row.update({f"train/grad_norm/{k}": v for k, v in grad_norms.items()})
        many = len(getattr(self.task, "class_names", None) or ()) > PER_EPOCH_CLASS_LIMIT
        for model, metrics in val.items():
            row.update({f"val/{model}/{k}": v for k, v in metrics.items()
                        if not (many and per_class_part(k) and k != self.monitor_metric)})
        return row
