"""From a validated config to the objects of a run: data, cohort, knowledge graph, task, trainer."""

from __future__ import annotations

import shlex
import warnings
from pathlib import Path

import numpy as np
import torch

from .cohort import Cohort, Member, check_feature_layer, default_feature_layer, names_module
from .config import ModelSpec, RunConfig, to_yaml
from .config.cohort_spec import deep_layer_without_heads
from .data import DataSplits, TensorData, build_data
from .data.segmentation import masks_name_classes
from .data.digests import file_sha256
from .data.fingerprint import data_fingerprint
from .data.splits import per_channel
from .data.sources import check_new_run_data, check_trainable
from .engine import Trainer, load_weights, seed_everything
from .engine.artifacts import RUN_FILE, RunDir, non_finite_keys
from .engine.state_files import read_state
from .errors import CheckpointError, ConfigError, DataNote, reemit, warn_user
from .graph import Edge, KnowledgeGraph
from .json_files import read_json
from .launcher import launched
from .models import build_model
from .models.heads import HeadedModel
from .tasks import ClassificationTask, SegmentationTask
from .tasks.augment import Augmentation
from .tasks.segmentation import IGNORE
from .tasks.classification import balanced_class_weights


def build_member_module(spec: ModelSpec, name: str, input_shape: tuple[int, ...], num_classes: int,
                        saved: bool = False, key: str = "", notes: list[str] | None = None,
                        begun_with: list[str] | None = None, data_kind: str | None = None):
    """The model of one config entry (at ``key``, ``students.0``); wrapped with self-distillation
    heads when it has any. ``saved``: the entry of a run that trained so (resumed), whose head
    layers are not judged again, and whose trained model's checkpoint is not read (the resume
    checkpoint holds its weights). ``notes``: where a headed model's checkpoint leaves heads to
    start afresh, that is said (warned, or for a resumed run only kept) and added to it.
    ``begun_with``: a resumed run's warnings from when it began (run.json's), whose note of its
    heads is kept as it was (its checkpoint may have gone or changed since). ``data_kind``: the
    config's, for the fix of a checkpoint taking another number of channels (load_weights)."""
    if spec.deep_layer and not spec.heads and not saved:  # (a saved run's was ignored, as RunConfig ignores it)
        raise ConfigError(deep_layer_without_heads(key or name, spec.frozen))
    module = build_model(spec.arch, spec.args, input_shape[0], num_classes, owner=f"model '{name}'",
                         args_key=f"{key}.args" if key else "")
    if spec.checkpoint and (spec.frozen or not saved):
        # (a resume replaces a trained model's weights with its checkpoint's: the file it started
        # from may have moved or changed since, run.json keeping its SHA-256; a frozen model's
        # weights are read again, checked against the resume checkpoint's digest of them)
        load_weights(module, checkpoint_file(spec.checkpoint, name), name, data_kind=data_kind)
    if spec.heads and not saved:
        for setting, paths in ((f"{key}.heads", spec.heads), (f"{key}.deep_layer", [spec.deep_layer])):
            for path in filter(None, paths):
                _check_layer(module, path, name, setting, "[PATH, ...]" if setting.endswith("heads") else "PATH")
    if spec.heads:
        deep = spec.deep_layer or spec.feature_layer or default_feature_layer(module)
        if not deep:
            raise ConfigError(f"model '{name}' has heads but no deep_layer: set it to the module path of its "
                              "last feature block")
        deep_from = ("deep_layer" if spec.deep_layer else "deep_layer (unset: its feature_layer)" if spec.feature_layer
                     else "deep_layer (unset: the model's last feature block)")
        module = HeadedModel(module, spec.heads, deep, num_classes, torch.zeros(2, *input_shape), owner=f"model '{name}'",
                             check_depth=not saved, deep_from=deep_from)
        if spec.checkpoint:
            note = (_start_heads(module, spec.checkpoint, name) if not saved
                    else _heads_note_kept(name, begun_with) if begun_with is not None
                    else _start_heads(module, spec.checkpoint, name, load=False))
            if note and not saved:  # (a resumed run's heads come from its own checkpoint: only kept for run.json)
                warn_user(note)
            if note and notes is not None:
                notes.append(note)
    return module


def _start_heads(module: HeadedModel, checkpoint: str, name: str, load: bool = True) -> str | None:
    """A headed model fine-tuned from ``checkpoint``: each head takes the weights of the head on
    the same layer that the checkpoint's run trained beside the network, where they fit; what
    starts afresh is said in the note returned (None when every head was loaded). ``load``:
    False for a resumed run, whose own checkpoint holds its heads (the note only; None where the
    checkpoint is gone since: nothing says any more how the heads began)."""
    if not load and not _still_there(checkpoint, name):
        return None
    file = checkpoint_file(checkpoint, name)
    run = _run_of(checkpoint)
    loaded: list[str] = []
    if run is None:
        why = (f"its checkpoint '{checkpoint}' is a weights file of the network alone; to carry on the heads of a "
               "self-distillation run, give that run's directory as the checkpoint")
    else:
        folder, label = run
        trained = file.stem  # the run's model whose file it is
        entry = next((e for e in read_json(folder / RUN_FILE).get("members", []) if e.get("name") == trained), {})
        layers = list(entry.get("heads") or (entry.get("spec") or {}).get("heads") or [])
        heads_file = RunDir(folder).heads_path(trained)
        if not layers:
            why = f"its checkpoint, {label}, trained '{trained}' without self-distillation heads"
        elif not heads_file.is_file():
            why = f"its checkpoint, {label}, has no file {heads_file} of the heads it trained '{trained}' with"
        else:
            state = read_state(heads_file, f"{name}'s heads", set(module.heads.state_dict()))
            unfit = []
            for layer, head in zip(module.head_layers, module.heads):
                if layer not in layers:
                    continue
                own = head.state_dict()
                theirs = {k: state.get(f"{layers.index(layer)}.{k}") for k in own}
                if not all(v is not None and v.shape == own[k].shape for k, v in theirs.items()):
                    unfit.append(layer)
                    continue
                bad = non_finite_keys(theirs)
                if bad:
                    raise CheckpointError(f"'{heads_file}', the heads of {name}'s checkpoint, holds NaN or infinite "
                                          f"values in {bad[:5]}: it is corrupt; give a checkpoint of a finished run")
                if load:
                    head.load_state_dict(theirs)
                loaded.append(layer)
            why = f"its checkpoint, {label}, trained heads at {layers}" + (
                f", and those at {unfit} do not fit them (another deep_layer's width, or number of classes)"
                if unfit else "") + (f" (those at {loaded} carry on from that run's)" if loaded else "")
    fresh = [layer for layer in module.head_layers if layer not in loaded]
    if not fresh:
        return None
    return f"{_heads_note_start(name)}{fresh} start from fresh weights: {why}"


def _heads_note_start(name: str) -> str:
    """How the note of a model's heads starting afresh begins (found by it in a run's warnings)."""
    return f"model '{name}': its self-distillation heads at "


def _heads_note_kept(name: str, begun_with: list[str]) -> str | None:
    """The note of ``name``'s heads among the warnings a resumed run recorded as it began."""
    return next((said for said in begun_with if said.startswith(_heads_note_start(name))), None)


def _still_there(checkpoint: str, name: str) -> bool:
    """Whether a model's checkpoint can still be read (a resumed run needs a trained one no more)."""
    try:
        return checkpoint_file(checkpoint, name).is_file()
    except CheckpointError:
        return False


def checkpoint_file(checkpoint: str, name: str) -> Path:
    """A model's ``checkpoint``: a weights file (.safetensors, .pt, .pth), or a run directory, whose
    model of the same name is meant (``runs/X`` for a teacher is ``runs/X/models/teacher.safetensors``)."""
    path = Path(checkpoint)
    if not path.is_dir():
        return path
    if not (path / RUN_FILE).is_file():
        raise CheckpointError(f"checkpoint '{path}' for {name} is a directory but not a peerdistill run: "
                              "give a .safetensors or PyTorch (.pt, .pth) weights file, or a run directory")
    run = RunDir(path)
    file = run.model_path(name)
    if file.is_file() and not run.is_complete:
        raise CheckpointError(f"run '{path}' has not finished, so its {name} is only the best so far: finish it "
                              f"with `peerdistill train --resume {shlex.quote(str(path))}`, or give the file {file} "
                              "to use it anyway")
    if not file.is_file():
        saved = sorted(p.stem for p in (path / "models").glob("*.safetensors"))
        # the example of the same role first: a teacher's file for a teacher
        alike = [s for s in saved if s.rstrip("0123456789") == name.rstrip("0123456789")] or saved or ["NAME"]
        raise CheckpointError(f"run '{path}' has no model '{name}' (it saved {', '.join(saved) or 'none'}): "
                              f"give the file itself, e.g. {path / 'models' / alike[0]}.safetensors")
    return file


def _run_of(checkpoint: str) -> tuple[Path, str] | None:
    """The run a checkpoint comes from, and how to name it: a run directory, or a weights file
    in a run's ``models/`` folder (``runs/X/models/teacher.safetensors``); None for a bare file."""
    path = Path(checkpoint)
    if (path / RUN_FILE).is_file():
        return path, f"run '{path}'"
    if path.parent.name == "models" and (path.parent.parent / RUN_FILE).is_file():
        return path.parent.parent, f"run '{path.parent.parent}' (whose model '{path}' is given)"
    return None


def _check_same_task(checkpoint: str, name: str, task: str) -> None:
    """A model taken from a run of another task (a segmenter as a classifier's teacher) would
    fail on its outputs' shape, or worse be read as class scores: named first."""
    if (run := _run_of(checkpoint)) is None:
        return  # a bare weights file names no task
    saved = read_json(run[0] / RUN_FILE).get("task", "classification")
    if saved != task:
        raise CheckpointError(f"{run[1]}, the checkpoint of {name}, is a {saved} run, and this one is "
                              f"{task}: give the checkpoint of a {task} run")


def _check_same_classes(checkpoint: str, name: str, data: DataSplits, task: str) -> None:
    """A model taken from a run must number the classes as the data does: otherwise its output
    for one class would be read as another's (say a run on a CSV sorting labels as numbers,
    reused on class folders sorted as text). Masks are compared only when the data names their
    classes, as eval matches them: unnamed, their values are all that says the classes."""
    run = _run_of(checkpoint)
    if run is None or (task == "segmentation" and not masks_name_classes(data.info)):
        return  # a bare weights file names no classes
    saved, class_names = read_json(run[0] / RUN_FILE).get("class_names"), data.class_names
    if saved and list(saved) != list(class_names):
        fix = (f"set data.class_names to {list(saved)} if the mask values mean the same, or drop it to read masks by "
               "value" if task == "segmentation" else "give data with the run's classes in its order")
        raise CheckpointError(f"{run[1]}, the checkpoint of {name}, numbers its classes {saved}, the data "
                              f"{list(class_names)}: its outputs would be read as other classes; {fix}")


# How far a checkpoint run's standardisation may lie from this run's before a frozen model sees
# its inputs on another scale: its mean moved by a quarter of its std, or its std by a quarter.
OTHER_STATS = 0.25


def _other_inputs(checkpoint: str, name: str, data: DataSplits, key: str, saved: bool = False) -> list[str]:
    """A frozen model from another run learnt from inputs standardised by that run's statistics
    and of its size; fed this run's, it sees another scale (a digits teacher of mean 0 / std 1
    scored near chance beside one of the training split's statistics) or another size, and
    teaches what it cannot see. The warnings that say so, with the fix, since nothing else would
    show it. ``saved`` (a resume): a run's model file whose run record has gone since is said to
    be checked no more, where it would otherwise pass in silence."""
    said: list[str] = []
    run = _run_of(checkpoint)
    if run is None:  # a bare weights file records neither
        path = Path(checkpoint)
        if saved and path.parent.name == "models" and not (path.parent.parent / RUN_FILE).is_file():
            # (review 57d: the run the file was taken from moved or was deleted since this run began)
            said.append(f"{name} is frozen from '{path}', whose run ('{path.parent.parent}') has no {RUN_FILE} any "
                        "more (moved or deleted): its input scale and size could not be checked against this run's "
                        "again; its weights are used as before")
        return said
    meta = read_json(run[0] / RUN_FILE)
    before, now = meta.get("data_stats"), data.stats
    if before and now and len(before["mean"]) == len(now["mean"]):
        mean_a, std_a = np.asarray(before["mean"], float), np.asarray(before["std"], float)
        mean_b, std_b = np.asarray(now["mean"], float), np.asarray(now["std"], float)
        if (np.abs(mean_a - mean_b) > OTHER_STATS * std_a).any() or (np.abs(std_b / std_a - 1) > OTHER_STATS).any():
            fix = f"{{mean: {[round(v, 6) for v in mean_a.tolist()]}, std: {[round(v, 6) for v in std_a.tolist()]}}}"
            said.append(f"{name} is frozen from {run[1]}, which standardised its inputs by mean / std "
                      f"{per_channel(mean_a, std_a)} per channel, and this run standardises them by "
                      f"{per_channel(mean_b, std_b)}: {name} sees its inputs on another scale than it learnt "
                      f"from, and teaches what it cannot see; give this run that run's statistics, "
                      f"data.normalize={fix}")
    shape = meta.get("input_shape")
    if shape and list(shape)[1:] != list(data.input_shape)[1:]:
        said.append(f"{name} is frozen from {run[1]}, which learnt from inputs of {'x'.join(map(str, shape[1:]))} "
                  f"pixels, and this run's are {'x'.join(map(str, data.input_shape[1:]))}: things look "
                  f"{'larger' if data.input_shape[-1] > shape[-1] else 'smaller'} to it than they did in its "
                  f"training (set data.image_size to [{shape[1]}, {shape[2]}] for this run, or train {key} "
                  "online)")
    return said


def build_cohort(cfg: RunConfig, data: DataSplits, saved: bool = False,
                 begun_with: list[str] | None = None) -> Cohort:
    """Models are built after seeding, so their initial weights follow ``cfg.seed``. ``saved``:
    the config of a run being resumed, which trained as it is (checks added since do not stop it);
    ``begun_with``: the warnings its run.json recorded as it began (build_member_module)."""
    names = cfg.member_names()
    teachers = cfg.all_teachers()
    specs = teachers + list(cfg.students)
    members, warned = [], []
    for i, (name, spec) in enumerate(zip(names, specs)):
        if spec.checkpoint:
            _check_same_task(spec.checkpoint, name, cfg.task)
        # (masks' and boxes' classes are checked since this run may have begun: a resumed one is not stopped)
        if spec.checkpoint and (not saved or cfg.task == "classification"):
            _check_same_classes(spec.checkpoint, name, data, cfg.task)
        key = ("teacher" if cfg.teacher is not None else f"teachers.{i}") if i < len(teachers) else \
            f"students.{i - len(teachers)}"
        module = build_member_module(spec, name, data.input_shape, data.num_classes, saved=saved, key=key,
                                     notes=warned, begun_with=begun_with, data_kind=cfg.data.kind)
        if spec.checkpoint and spec.frozen:  # (once its weights are found and loaded)
            # (kept with the cohort for run.json, which a resumed run writes anew: review 56b)
            for warning in _other_inputs(spec.checkpoint, name, data, key, saved):
                warn_user(warning)
                warned.append(warning)
        if spec.feature_layer and not saved:
            _check_layer(module, spec.feature_layer, name, f"{key}.feature_layer")
        layer = spec.feature_layer or default_feature_layer(module)
        if saved and layer and not names_module(module, layer):
            layer = None  # saved before unread layers were checked: none of its edges reads it
        role = "teacher" if i < len(teachers) else "student"
        rebuild = {"arch": spec.arch, "args": spec.args}
        if isinstance(module, HeadedModel):
            rebuild.update(heads=module.head_layers, deep_layer=module.deep_layer)
        # (a run saved before weights under confidence weighting were refused never read them)
        unread_weight = saved and cfg.distill.teacher_weighting == "confidence"
        members.append(Member(name, module, role, frozen=spec.frozen, lr=spec.lr, spec=rebuild,
                              feature_layer=layer, weight=1.0 if unread_weight else spec.weight))
    return Cohort(members, warnings_when_built=warned)


def _check_layer(module, path: str, name: str, setting: str, example: str = "PATH") -> None:
    """A config's module path (``students.0.feature_layer``, ``.heads``, ``.deep_layer``) that
    names no module of its model: most often the arch was changed on the command line and the
    config's path, of the old arch, stayed."""
    try:
        check_feature_layer(module, path, f"model '{name}' ({setting})")
    except ConfigError as exc:
        own = default_feature_layer(module) if setting.endswith(".feature_layer") else None
        instead = f", or {setting}=null for its own ('{own}')" if own else ""
        raise ConfigError(f"{exc}; if you changed its arch on the command line, the config's {setting} stayed: give "
                          f"the new model's ({setting}={example}){instead}") from None


def build_graph(cfg: RunConfig, cohort: Cohort, task=None) -> KnowledgeGraph:
    """``task``: a task whose outputs are not class scores brings its own ``distill`` for kl edges."""
    d = cfg.distill
    distiller = getattr(task, "distill", None)
    if d.preset != "custom":
        return KnowledgeGraph.from_preset(d.preset, cohort, None, d, logit_distiller=distiller)
    edges = [Edge(e.source, e.target, e.kind, e.weight, e.temperature, e.source_layer, e.target_layer, e.nckd_weight)
             for e in d.edges or []]
    models = {m.name: m.module for m in cohort.members}
    for i, e in enumerate(edges):  # a wrong path named by the key to fix, as a model's feature_layer is
        for end, layer, key in ((e.source, e.source_layer, "source_layer"), (e.target, e.target_layer, "target_layer")):
            if layer and not layer.startswith("@") and end in models:
                _check_layer(models[end], layer, end, f"distill.edges.{i}.{key}")
    return KnowledgeGraph(edges, supervised_weights={}, teacher_weighting=d.teacher_weighting,
                          pair_node_size=d.pair_node_size, logit_distiller=distiller)


def augmentation(cfg: RunConfig, data: DataSplits) -> Augmentation:
    """data.augment at data.augment_range's strengths (images only)."""
    if cfg.data.augment and len(data.input_shape) != 3:
        raise ConfigError(f"data.augment turns and shades images, but the inputs are vectors of "
                          f"{data.input_shape[0]} features: remove data.augment")
    return Augmentation(tuple(cfg.data.augment), dict(cfg.data.augment_range))


def build_task(cfg: RunConfig, data: DataSplits, cohort: Cohort | None = None):
    if cfg.task == "detection":
        from .tasks.detection import DetectionTask, layout_of

        modules = {m.name: m.module for m in cohort.members} if cohort else {}
        if cfg.data.class_weights:
            raise ConfigError("data.class_weights is not available for detection (the focal loss balances classes)")
        det = cfg.detect
        return DetectionTask(layout_of(modules), data.input_shape[1:], data.class_names, augment=augmentation(cfg, data),
                             score_threshold=det.score_threshold, nms_iou=det.nms_iou,
                             max_detections=det.max_detections, ensemble=det.ensemble,
                             ensemble_iou=det.ensemble_iou,
                             kd_cls_weight=det.kd_cls_weight, kd_loc_weight=det.kd_loc_weight,
                             kd_loc_region=det.kd_loc_region)
    weights = None
    if cfg.data.class_weights:
        if not isinstance(data.train, TensorData):
            raise ConfigError("data.class_weights needs in-memory data")
        weights = balanced_class_weights(data.train.y, data.num_classes,
                                         ignore_index=IGNORE if cfg.task == "segmentation" else None)
    augment = augmentation(cfg, data)
    if cfg.task == "segmentation":
        return SegmentationTask(data.num_classes, data.class_names, class_weights=weights, augment=augment,
                                loss=cfg.train.segmentation_loss, pixel_spacing=data.info.get("pixel_spacing"))
    return ClassificationTask(data.num_classes, class_weights=weights, augment=augment, class_names=data.class_names)


def patch_settings(cfg: RunConfig) -> dict | None:
    d = cfg.data
    if d.patch_size is None:
        return None
    return {"size": d.patch_size, "per_image": d.patches_per_image, "foreground": d.foreground_oversample,
            "overlap": d.window_overlap}


def run_dir_for(cfg: RunConfig) -> Path:
    return Path(cfg.out_dir) / cfg.name


def make_trainer(cfg: RunConfig, *, run_dir: str | Path | None = None, overwrite: bool = False,
                 progress: bool = True, callbacks=None, resume: bool = False) -> tuple[Trainer, DataSplits]:
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(cfg)
    # A folder the run would refuse, refused before the data is read; under torchrun the trainer
    # refuses it, said once for every process (a refusal here, by one process, would be said twice).
    if not resume and not launched():
        RunDir.verdict(run_dir, overwrite)
    data, notes = _read_noting(cfg.data)
    check_trainable(cfg.data, data)
    if not resume:  # (a run resumed trains as it began: checks added since do not stop it)
        check_new_run_data(cfg.data, data)
    seed_everything(cfg.seed, cfg.deterministic)
    cohort = build_cohort(cfg, data, saved=resume, begun_with=_warnings_begun_with(run_dir) if resume else None)
    task = build_task(cfg, data, cohort)
    graph = build_graph(cfg, cohort, task)
    callbacks = list(callbacks or [])
    if cfg.log.tensorboard:
        from .engine.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger(run_dir / "tensorboard"))
    trainer = Trainer(
        cohort, graph, task, train=cfg.train, optim=cfg.optim, rampup_epochs=cfg.distill.rampup_epochs,
        seed=cfg.seed, deterministic=cfg.deterministic, device=cfg.device,
        run_dir=run_dir, overwrite=overwrite, progress=progress,
        callbacks=callbacks, run_info={**_run_info(cfg, resume), **({"data_notes": notes} if notes else {})},
        config_yaml=to_yaml(cfg), discriminator_lr=cfg.distill.discriminator_lr, gp_weight=cfg.distill.gp_weight,
        patches=patch_settings(cfg),
    )
    return trainer, data


def _warnings_begun_with(run_dir: Path) -> list[str] | None:
    """The warnings a run being resumed recorded as it began (None without a readable run.json:
    the resume then refuses it, naming why)."""
    try:
        said = read_json(run_dir / RUN_FILE).get("training_warnings")
    except CheckpointError:
        return None
    return [str(w) for w in said] if isinstance(said, list) else []


def _read_noting(spec) -> tuple[DataSplits, list[str]]:
    """The data, and what reading it left out (DataNote warnings, said as they come): kept in
    run.json's ``data_notes``, since scoring the run's own data later does not say them again
    (review 50j: after training, nothing recorded them)."""
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            data = build_data(spec)
    finally:  # (said to the caller's filters as they came, each once, also where reading then failed)
        reemit(said)
    return data, list(dict.fromkeys(str(w.message) for w in said if issubclass(w.category, DataNote)))


def _run_info(cfg: RunConfig, resume: bool = False) -> dict:
    """What run.json records of the config beside the trainer's own: the data section, the
    preset, and the data's root as an absolute path (a relative root counts from where the run
    trained, which later commands, run elsewhere, need to find the data a run must not write over).
    A resume keeps run.json's own: the checkpoints' digests are not taken again (a trained
    model's file, which the resume does not read, may have gone or changed since)."""
    info = {"data_spec": cfg.data.model_dump(mode="json"), "preset": cfg.distill.preset}
    if cfg.data.root:
        info["data_root"] = str(Path(cfg.data.root).resolve())
    started_from = {} if resume else checkpoint_digests(cfg)
    if started_from:  # (compare reuses a run only while the files it started from are the same)
        info["checkpoint_sha256"] = started_from
    held = data_fingerprint(cfg.data)
    if held is not None:  # (and while its data.root holds what it trained on)
        info["data_fingerprint"] = held
    return info


def checkpoint_digests(cfg: RunConfig) -> dict[str, str]:
    """The SHA-256 of each model's ``checkpoint`` file, by model name (a frozen teacher's weights,
    a student's starting point): what a run was trained from, beside its config's paths."""
    specs = (*cfg.all_teachers(), *cfg.students)
    return {name: file_sha256(checkpoint_file(spec.checkpoint, name))
            for name, spec in zip(cfg.member_names(), specs, strict=True) if spec.checkpoint}


def train_from_config(cfg: RunConfig, *, run_dir=None, overwrite=False, resume=False, progress=True, callbacks=None):
    trainer, data = make_trainer(cfg, run_dir=run_dir, overwrite=overwrite, progress=progress, callbacks=callbacks,
                                 resume=resume)
    return trainer.fit(data, resume=resume)
