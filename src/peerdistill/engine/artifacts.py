"""Files of a run: atomic writes, safetensors weights with clear errors, the run directory."""

from __future__ import annotations

import contextlib
import csv
import errno
import glob
import io
import itertools
import json
import math
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn
from torch.nn.parameter import is_lazy

from ..config.data_spec import IMAGE_FILE_KINDS
from ..data.digests import DIGESTS_FILE
from ..errors import CheckpointError, ConfigError, PeerdistillWarning, RunDirError, warn_user
from ..json_files import read_json
from ..option_names import option
from ..stopping import stopping_signals_held
from ..run_files import (COMPARISON_TABLES, CONFIG_FILE, DELETING_PREFIX, METRICS_FILE, REPLACED_PREFIX,
                         RESUME_FILE, RUN_FILE)
from ..values import is_count, is_finite_number
from ..wording import first_few
from .. import run_lock
from .run_meta import run_record_problem
from .state_files import DIGEST_KEY, read_state, weights_digest

# The files a trainer writes at the top of its run directory.
TRAINER_FILES = (RUN_FILE, METRICS_FILE, "metrics.csv", CONFIG_FILE, "connectors.safetensors",
                 "discriminators.safetensors", DIGESTS_FILE)


# The folders of a run directory that hold its own files (weights, resume state, logs).
RUN_FOLDERS = ("models", "heads", "checkpoints", "tensorboard")
# Left in each existing run by ``compare --overwrite`` until that run is trained again (which
# empties its folder): a rerun after an interruption replaces only the runs still marked.
REPLACE_MARK = "replaced-by-compare-overwrite"


def check_not_a_run_file(target: str | Path, flag: str = "--out", named: str | None = None) -> None:
    """Refuse to write ``target`` over a file that a run or a comparison owns (run.json,
    metrics, config, weights, checkpoints of any run directory): a report, an export or
    predictions written there would destroy the run. The message names it as the option
    ``flag`` given it (``named``: otherwise)."""
    label = named or option(flag, repr(str(target)))
    path = Path(target).resolve()
    elsewhere = "write elsewhere (the run's export/ or eval/ folder, or another place)"
    for folder in path.parents:
        if folder.name in RUN_FOLDERS and (folder.parent / RUN_FILE).is_file():
            raise ConfigError(f"{label} is inside the run's {folder.name}/ folder, which holds its own "
                              f"files: {elsewhere}")
    folder = path.parent
    if ((path.name in TRAINER_FILES and (folder / RUN_FILE).is_file())
            or (path.name in COMPARISON_TABLES and (folder / "compare.csv").is_file())):
        raise ConfigError(f"{label} is one of the files of the run (or comparison) in '{folder}': "
                          f"writing there would destroy it; {elsewhere}")


def check_not_in_data(target: str | Path, places: list[Path], flag: str = "--out") -> None:
    """Refuse to write ``target`` into data a run reads (``places``: its data files and the
    folders of its images, masks and regions, ``config.data_places``): predictions named like
    the true masks, or a table over the label CSV, would replace the ground truth, silently."""
    path = Path(target).resolve()
    for place in places:
        data = Path(place).resolve()
        if path == data or data in path.parents:
            raise ConfigError(f"{option(flag, repr(str(target)))} {'is' if path == data else 'is inside'} '{place}', "
                              "data the run reads: writing there could replace its images, masks or labels; write "
                              "elsewhere (the run's eval/ or export/ folder, or another place)")


def _current_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, flush to disk, then rename over it, so a crash
    leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise RunDirError(f"'{path}' is a directory: give a file name to write")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # name the file asked for, not the temporary one beside it
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with contextlib.suppress(OSError):  # some network file systems refuse chmod: keep mkstemp's mode
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private (0600); give them the usual mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # (a full disk: named by the file asked for, not the temporary one)
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def names_a_folder(out: str | Path) -> bool:
    """An --out that means a folder: an existing one, or a path ending in '/', or a path without an
    extension that is not an existing file."""
    path = Path(out)
    return path.is_dir() or str(out).endswith(("/", os.sep)) or (not path.suffix and not path.exists())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV, atomically; the columns are every key in the order first seen (a row
    without one leaves its cell empty)."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def csv_header(path: Path) -> list[str] | None:
    """A CSV's first row, its fields stripped ([]: an empty file; None: not readable): how a table
    peerdistill wrote, which a new one may replace, is told from a user's."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
            return [field.strip() for field in next(csv.reader(fh), [])]
    except (OSError, csv.Error):
        return None


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def jsonable(obj: Any) -> Any:
    """NaN is not JSON: write it as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def save_weights(module: nn.Module, path: Path) -> None:
    """A model's own state (parameters and buffers) as safetensors, refusing non-finite values."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    bad = non_finite_keys(state)
    if bad:
        raise CheckpointError(f"refusing to save '{path}': non-finite values in {bad[:5]}")
    state = _unshare(state)
    atomic_write_bytes(path, save(state, metadata={DIGEST_KEY: weights_digest(state)}))  # read_state checks it


def non_finite_keys(state: dict[str, torch.Tensor]) -> list[str]:
    """The keys of a state dict whose floating-point values are not all finite."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def _unshare(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors rejects tensors that share memory (tied weights); store each one separately."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def _batch_counters(module: nn.Module) -> set[str]:
    return {f"{path}.num_batches_tracked" if path else "num_batches_tracked"
            for path, sub in module.named_modules()
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.num_batches_tracked is not None}


def load_weights(module: nn.Module, path: str | Path, name: str = "model", data_kind: str | None = None) -> None:
    """Load weights into ``module`` from safetensors or a PyTorch state dict (``state_files``);
    a truncated file or one of another architecture or class count fails with one message
    saying which. ``data_kind``: the config's data kind, where known, for the fix of a file whose
    first layer takes another number of channels (image files and arrays are fixed differently)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' for {name} does not exist")
    with open(path, "rb"):  # an unreadable file is that, not "corrupt" (the caller reports OSError)
        pass
    own = module.state_dict()
    state = read_state(path, name, set(own), {k: tuple(v.shape) for k, v in own.items() if not is_lazy(v)})
    # BatchNorm's batch counter, absent from older PyTorch files and converted weights, is only a
    # count (torch's own loading fills it in too): the model keeps its own
    for key in _batch_counters(module) - set(state):
        state[key] = own[key]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    # A lazy module's tensors (nn.LazyLinear before its first forward) have no shape yet: loading
    # gives them the file's.
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and not is_lazy(own[k]) and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        detail = "; ".join(filter(None, [
            f"missing {missing[:4]}" if missing else "",
            f"unexpected {unexpected[:4]}" if unexpected else "",
            f"shape mismatch {mismatched[:3]}" if mismatched else "",
        ]))
        channels = not missing and not unexpected and _input_channels_differ(own, state, mismatched, data_kind)
        raise CheckpointError(
            f"checkpoint '{path}' does not fit {name} ({detail}): "
            + (channels or "it was saved from another architecture or number of classes; check arch, args and the data"))
    bad = non_finite_keys(state)
    if bad:  # peerdistill never saves such weights: the file was damaged or made elsewhere
        raise CheckpointError(f"checkpoint '{path}' for {name} holds NaN or infinite values in {bad[:5]}: it is "
                              "corrupt or was not written by a finished peerdistill run; train it again")
    lazy = [(layer, sub) for layer, sub in module.named_modules()
            if any(is_lazy(t) for t in sub.parameters(recurse=False))]
    module.load_state_dict(state)
    for layer, sub in lazy:  # sized by the file: it must give the outputs the layer was built for
        outputs = _outputs_of(sub)
        if outputs is not None and outputs[0] != outputs[1]:
            raise CheckpointError(
                f"checkpoint '{path}' does not fit {name} (its layer '{layer}' gets {outputs[0]} outputs from the "
                f"file but was built for {outputs[1]}): it was saved from another architecture or number of classes; "
                "check arch, args and the data")


def _input_channels_differ(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                           mismatched: list[str], data_kind: str | None) -> str:
    """What to say where the first convolution alone differs, and only in its input channels: the
    grey/colour slip (image files are read in colour unless data.grey), not another architecture."""
    first = next((key for key, tensor in own.items() if tensor.dim() == 4 and not is_lazy(tensor)), None)
    if first is None or len(mismatched) != 1 or not mismatched[0].startswith(f"{first}: "):
        return ""
    saved, built = state[first].shape, own[first].shape
    if saved[0] != built[0] or saved[2:] != built[2:]:
        return ""
    return (f"its first layer ('{first}') takes {saved[1]} input channel(s) in the file and {built[1]} in the model "
            f"built for this data; {_channels_fix(saved[1], built[1], data_kind)}")


# A colour network on one-channel arrays, which data.grey (image files only) cannot turn into three
REPEAT_THE_CHANNEL = ("give the model a wrapper that repeats the channel, as GreyToColour does in docs/config.md (\"A "
                      "colour teacher on grey data\"), or save the arrays with three channels")


def _channels_fix(saved: int, built: int, data_kind: str | None) -> str:
    """How to give the model the channels its file takes: image files by data.grey, arrays
    (digits, npz: data.grey is not theirs) by a wrapper or the arrays themselves; both where the
    data's kind is not known."""
    files = None if data_kind is None else data_kind in IMAGE_FILE_KINDS
    if (saved, built) == (1, 3):
        if files is False:
            return f"data kind '{data_kind}' gives three-channel arrays here: give them one channel"
        return "the images are read in colour here: data.grey=true reads image files grey" + (
            "" if files else " (arrays: give them one channel)")
    if (saved, built) != (3, 1):
        return "the data here has another number of channels"
    if files:
        return "the images are read grey here: data.grey=false reads image files in colour"
    if files is False:
        return (f"data kind '{data_kind}' gives one-channel arrays, and data.grey is for image files: "
                f"{REPEAT_THE_CHANNEL}")
    return ("the data gives one channel here: image files are read grey only under data.grey=true (data.grey=false "
            f"reads them in colour); for one-channel arrays (digits, npz), {REPEAT_THE_CHANNEL}")


def _outputs_of(layer: nn.Module) -> tuple[int, int] | None:
    """(outputs its weight gives, outputs it was built for) of a linear or convolution layer."""
    if isinstance(layer, nn.Linear):
        return layer.weight.shape[0], layer.out_features
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):  # weight [in, out / groups, ...]
        return layer.weight.shape[1] * layer.groups, layer.out_channels
    if isinstance(layer, nn.modules.conv._ConvNd):
        return layer.weight.shape[0], layer.out_channels
    return None


def _metrics_problem(metrics: Any) -> str | None:
    """What is wrong with the shape of a metrics.json's contents, or None."""
    if not isinstance(metrics, dict):
        return f"it holds {type(metrics).__name__}, not a mapping"
    for key in ("val_at_best", "test_at_best", "test_at_last"):
        scores = metrics.get(key, {})
        if not isinstance(scores, dict) or not all(
                isinstance(figures, dict) and all(_is_figure(v) for v in figures.values())
                for figures in scores.values()):
            return f"its {key} is not a mapping of each model to its figures (finite numbers, or null for none)"
    epochs = metrics.get("epochs", [])
    if not isinstance(epochs, list) or not all(isinstance(row, dict) for row in epochs):
        return "its epochs are not a list of rows"
    for row in epochs:
        if not is_count(row.get("epoch")):
            return "an epoch row lacks its epoch number"
        bad = next((k for k, v in row.items() if k.split("/")[0] in ("train", "val", "lr") and not _is_figure(v)), None)
        if bad:
            return f"epoch {row['epoch']}'s {bad} is {row[bad]!r}, not a figure"
    monitor = metrics.get("monitor", "m/m")
    if not is_count(metrics.get("best_epoch", 0)) or not (isinstance(monitor, str) and "/" in monitor):
        return "its best_epoch or monitor (MODEL/METRIC) is of the wrong kind"
    return None


def _is_figure(value: Any) -> bool:
    """A figure as peerdistill writes it: a finite number, or null (NaN is written as null)."""
    return value is None or is_finite_number(value)


# A run --overwrite replaces is renamed aside (REPLACED_PREFIX) until the new run keeps its first
# checkpoint, then renamed again (DELETING_PREFIX) and deleted: what a killed process leaves under
# the first name is a whole run to put back, under the second one a run partly deleted.
# The runs this process put back after their replacement failed (the interruption's hint says so).
PUT_BACK: set[Path] = set()
# The runs this process keeps aside now (``.replaced-NAME.PID`` of its own PID, not left by a
# process that ended with that PID before).
_KEPT_HERE: set[Path] = set()


def finish_replacing(path: Path) -> None:
    """What a process that ended while replacing the run in ``path`` left beside it, not what a
    live process still keeps: a run partly deleted is deleted; a run kept aside is put back where
    the new run kept nothing yet (it had no checkpoint: the replacement failed), said in a warning,
    and deleted where the new run has kept something. Each leftover is first claimed by a rename to
    this process's name, so that two commands finishing it at once never both act on it; a folder
    this cannot change (read-only) is said and left as it is."""
    try:
        for left in _left_beside(path, DELETING_PREFIX):
            if not _kept_by_a_live_process(left):
                _delete_claimed(left, path)
        for left in _left_beside(path, REPLACED_PREFIX):
            if not _kept_by_a_live_process(left):
                _finish_one_replacement(left, path)
    except OSError as exc:
        warn_user(PeerdistillWarning(f"could not finish what an --overwrite of '{path}' left beside it "
                                     f"({exc.strerror}): the next start of that name where it can write does"))


def _left_beside(path: Path, prefix: str) -> list[Path]:
    """``PREFIX NAME.PID`` (or ``.PID.claimed``) beside ``path``: not a run of another name that
    begins as this one does (``r.2`` beside ``r``)."""
    start = f"{prefix}{path.name}."
    return sorted(p for p in path.parent.glob(f"{start}*")
                  if (pid := p.name[len(start):].removesuffix(".claimed")).isascii() and pid.isdecimal())


def _delete_claimed(left: Path, path: Path) -> None:
    claimed = path.with_name(f"{DELETING_PREFIX}{path.name}.{os.getpid()}.claimed")
    try:
        left.rename(claimed)
    except FileNotFoundError:  # (another process claimed it first)
        return
    if claimed.is_symlink():  # (renamed by a version that replaced links)
        claimed.unlink(missing_ok=True)
    else:
        shutil.rmtree(claimed, ignore_errors=True)


def _finish_one_replacement(left: Path, path: Path) -> None:
    if path.is_dir() and ((path / RESUME_FILE).is_file() or (path / RUN_FILE).is_file()
                          and read_json(path / RUN_FILE).get("status") == "complete"):
        _delete_claimed(left, path)  # (the new run kept a checkpoint: it is the run now)
        return
    try:
        run_lock.check_free(path)  # (a run another process trains there now is not ours to replace)
    except RunDirError:
        return
    if path.is_symlink() or (path.exists() and not path.is_dir()):  # (not a run folder: not ours to replace)
        warn_user(PeerdistillWarning(f"'{left}' holds the run an --overwrite of '{path}' replaced, left by a process "
                                     f"that ended before its new run kept a checkpoint; '{path}' is no run folder "
                                     "now, so it stays there: move it where you want it"))
        return
    claimed = path.with_name(f"{REPLACED_PREFIX}{path.name}.{os.getpid()}.claimed")
    try:
        left.rename(claimed)
    except FileNotFoundError:  # (another process claimed it first)
        return
    _KEPT_HERE.add(claimed.absolute())
    try:
        if path.is_dir():  # the new run that kept nothing, out of the way in one step, then deleted
            failed = path.with_name(f"{DELETING_PREFIX}{path.name}.{os.getpid()}.claimed")
            path.rename(failed)
            shutil.rmtree(failed, ignore_errors=True)
        claimed.rename(path)
    finally:
        _KEPT_HERE.discard(claimed.absolute())
    # (which kept folder this replacement filled is not recorded: the ones there are named, none if none)
    kept = sorted(p.name for p in path.parent.glob(f"{glob.escape(path.name)}.kept-*") if p.is_dir())
    aside = (f" (what it had moved aside from the run, exports or notes of yours, stays beside it in "
             f"{first_few(kept, quoted=True)})" if kept else "")
    warn_user(PeerdistillWarning(
        f"'{path}' is the run an --overwrite replaced, put back: the process replacing it ended before its new run "
        f"kept a checkpoint{aside}"))


def _kept_by_a_live_process(left: Path) -> bool:
    """Whether the process named by ``.replaced-NAME.PID`` (or ``.deleting-``) still keeps it:
    this one, where it is among what it keeps aside now; another, where it still runs (on this
    machine: a folder shared with others is checked here alone)."""
    pid = left.name.removesuffix(".claimed").rpartition(".")[2]
    if not (pid.isascii() and pid.isdecimal()):
        return False
    if int(pid) == os.getpid():
        return left.absolute() in _KEPT_HERE
    return process_is_running(int(pid))


def process_is_running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine; where that cannot be asked (Windows, whose
    signal 0 is a console Ctrl+C, not a probe), True: what it may hold is left alone."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # (alive, another user's)
        return True
    return True


def _is_partial_write(path: Path) -> bool:
    """A temporary file of the trainer's own writes (``.NAME.XXXX.tmp``)."""
    return path.is_file() and path.name.endswith(".tmp") and any(
        path.name.startswith(f".{name}.") for name in TRAINER_FILES)


def _not_the_trainers(path: Path) -> list[str]:
    """What a run directory holds that training did not write (exports, reports, eval pictures,
    a user's notes; in its own folders, a backup of a checkpoint or another copy of a model), as
    paths within it, folders marked with a slash."""
    own = {*TRAINER_FILES, *RUN_FOLDERS, REPLACE_MARK}
    found = [p.name + ("/" if p.is_dir() else "") for p in path.iterdir()
             if p.name not in own and not _is_partial_write(p)]
    members = _member_names(path)
    weights = None if members is None else {f"{m}.safetensors" for m in members}
    # which files of each folder the trainer writes (a run.json that cannot be read names no models: its
    # models/ and heads/ are taken as the trainer's)
    own_files = {"checkpoints": lambda name: name == Path(RESUME_FILE).name, "tensorboard": _is_event_file,
                 **({} if weights is None else dict.fromkeys(("models", "heads"), weights.__contains__))}
    for folder, trainers in own_files.items():
        # (a folder linked elsewhere, a scratch disk say: replacing the run removes the link alone, and what it
        # points to stays where it is)
        if (path / folder).is_dir() and not (path / folder).is_symlink():
            found += [f"{folder}/{p.name}" + ("/" if p.is_dir() else "") for p in (path / folder).iterdir()
                      if not (p.is_file() and (trainers(p.name) or _is_temporary(p.name)))]
    return sorted(found)


def _is_temporary(name: str) -> bool:
    """A file being written in one of the run's folders (``.NAME.XXXX.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def _is_event_file(name: str) -> bool:
    """TensorBoard's own files (``events.out.tfevents.TIME.HOST...``), which a run's log writes."""
    return name.startswith("events.out.tfevents.")


def _member_names(path: Path) -> set[str] | None:
    """The models a run directory's run.json lists, or None when it cannot be read."""
    try:
        members = read_json(path / RUN_FILE).get("members")
        return {m["name"] for m in members}
    except (CheckpointError, AttributeError, KeyError, TypeError):
        return None


def kept_aside_when_replaced(path: Path) -> list[str]:
    """What replacing the run in ``path`` would move to ``NAME.kept-TIME`` (``train --dry-run``)."""
    return _not_the_trainers(path) if (path / RUN_FILE).is_file() else []


def _move_aside_what_is_not_the_trainers(path: Path) -> tuple[Path, list[str]] | None:
    """Move what a run folder holds besides the run (exports, reports, a user's notes, a backup
    in its checkpoints/) to a sibling ``NAME.kept-TIME``, at the same paths within it, before the
    folder is replaced; return that folder and what was moved (None when there was nothing).
    One entry at a time, each a rename: a process killed meanwhile leaves every entry in one
    folder or the other, never in the old run's deleted one."""
    besides = _not_the_trainers(path)
    if not besides:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.name}.kept-{stamp}")
    for n in itertools.count(2):
        try:
            kept.mkdir()
            break
        except FileExistsError:
            kept = path.with_name(f"{path.name}.kept-{stamp}-{n}")
    done: list[str] = []
    try:
        for entry in (name.rstrip("/") for name in besides):
            (kept / entry).parent.mkdir(exist_ok=True)
            (path / entry).rename(kept / entry)
            done.append(entry)
    except BaseException:  # (interrupted: what was moved goes back, the run is left as it was)
        _move_back(path, (kept, done))
        raise
    return kept, besides


def _move_back(path: Path, moved: tuple[Path, list[str]] | None) -> None:
    """The entries ``_move_aside_what_is_not_the_trainers`` moved, back into ``path``, and its
    folder removed when that left it empty."""
    if not moved:
        return
    folder, names = moved
    for entry in (name.rstrip("/") for name in names):
        with contextlib.suppress(OSError):
            (path / entry).parent.mkdir(parents=True, exist_ok=True)
            (folder / entry).rename(path / entry)
    with contextlib.suppress(OSError):  # (empty now, unless something could not move back)
        for sub in sorted(folder.rglob("*"), reverse=True):
            sub.rmdir()
        folder.rmdir()


def stopped_before_keeping_anything(path: Path) -> bool:
    """A run folder whose run stopped before its first epoch ended (interrupted, a setting refused,
    a non-finite stop): its config and run.json alone, nothing a user or a later epoch put there.
    Its run.json says ``stopped``, written as training ended: a run killed outright (``kill -9``)
    says ``running``, as does one training now (where locks are per node, a cluster's
    ``localflock``, another node's lock is not seen), and is never taken for it."""
    if not (path / RUN_FILE).is_file() or (path / METRICS_FILE).exists() or _not_the_trainers(path):
        return False
    kept = [f for folder in ("models", "heads", "checkpoints") for f in (path / folder).rglob("*")
            if f.is_file() and not f.name.endswith(".tmp")]
    return not kept and read_json(path / RUN_FILE).get("status") == "stopped"


def kept_nothing(path: Path) -> str | None:
    """Why a run folder holds no model to use yet, where its first epoch has not ended (stopped,
    killed outright, or still training), with what to do; None where it kept a model or a score.
    What eval, export and predict say before asking for a metrics file or a model name that could
    not help (reviews 48b, 48g)."""
    if not (path / RUN_FILE).is_file() or (path / METRICS_FILE).exists() or \
            any(f.is_file() for f in (path / "models").glob("*.safetensors")):
        return None
    try:
        record = read_json(path / RUN_FILE)
    except (OSError, CheckpointError):
        return None  # (a damaged run.json: the command's own reading of it says so)
    if record.get("status") == "complete":
        return None  # finished, its files deleted since: the command's own message names them
    if run_lock.is_held(path):
        return (f"'{path}' is in its first epoch (a process trains it now) and has kept no model yet: wait for the "
                "epoch to end")
    stopped = (f"stopped in its first epoch ({record.get('stopped_by') or 'reason not recorded'})"
               if record.get("status") == "stopped" else "was ended in its first epoch (killed outright)")
    if (path / RESUME_FILE).is_file():  # a checkpoint within the epoch (train.checkpoint_every_*)
        return f"'{path}' {stopped} and has kept no model yet: continue it, train --resume {path}"
    again = ("the same train command starts it over, as it kept nothing to lose" if replaced_by_the_same_command(path)
             else "the same train command with --overwrite")
    return f"'{path}' {stopped} and kept no model: train it again ({again})"


def replaced_by_the_same_command(path: Path) -> bool:
    """Whether ``train`` without --overwrite starts the run in ``path`` again: it stopped before
    keeping anything, and runs are locked here (where they are not, a run in its first epoch in
    another process could not be told from it)."""
    try:
        return path.is_dir() and stopped_before_keeping_anything(path) and run_lock.is_locked_here(path)
    except RunDirError:  # a process trains it now
        return False


def mark_stopped(run: "RunDir", exc: BaseException) -> None:
    """run.json's and metrics.json's ``status`` of a run whose training ended without finishing:
    ``stopped``, and why in ``stopped_by`` (a script polling run folders tells it from one still
    training; a run killed outright, ``kill -9``, stays ``running``, and its lock is free)."""
    signum = getattr(exc, "signum", None)  # (the command line's stopping signals say which they were)
    why = ((f"interrupted ({signal.Signals(signum).name})" if signum else "interrupted (Ctrl-C or SIGINT)")
           if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
    with stopping_signals_held():  # (a second Ctrl-C here left a file at 'running': review 52c)
        for path in (run.path / RUN_FILE, run.path / METRICS_FILE):
            try:
                record = read_json(path) if path.is_file() else None
                if isinstance(record, dict) and record.get("status") != "complete":
                    write_json(path, {**record, "status": "stopped", "stopped_by": why[:2000]})
            except Exception:  # noqa: BLE001 - the failure itself is what the command says; the record stays
                pass


class RunDir:
    """The directory of one run. An existing run is never overwritten unless asked."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.replaced = False  # create replaced a run of this name (--overwrite)
        # That run, renamed aside until this one keeps a checkpoint: put back if it never does,
        # with what was moved from it (NAME.kept-TIME and the entries).
        self._replaced_copy: Path | None = None
        self._moved_aside: tuple[Path, list[str]] | None = None

    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False) -> "RunDir":
        path = Path(path)
        PUT_BACK.discard(path.resolve())  # (said of an earlier command in this process)
        finish_replacing(path)
        verdict = cls.verdict(path, overwrite)
        if verdict == "new" and path.is_dir():
            # killed while writing its first file (run.json): nothing of a run is here yet
            for partial in path.iterdir():
                if _is_partial_write(partial):  # (a file another process put there since is not ours)
                    partial.unlink()
        if verdict == "again":
            # A job requeued after being stopped in its first epoch runs the same command
            # again: refusing it (and --resume, with no checkpoint) would need a script. Not
            # where runs are not locked: a run in its first epoch elsewhere looks the same.
            warn_user(PeerdistillWarning(f"'{path}' held a run stopped in its first epoch, before it kept "
                                         "anything (no checkpoint, no model): started again"))
        if verdict in ("again", "replace"):
            # Renamed away first (one atomic step), then deleted: a process killed while deleting
            # leaves a hidden folder the next start removes, not half a run that no command takes.
            # The lock is held across the rename: a second --overwrite starting at the same instant
            # finds the run busy, or gone, rather than renaming the new run away.
            trash = path.with_name(f"{REPLACED_PREFIX if verdict == 'replace' else DELETING_PREFIX}{path.name}."
                                   f"{os.getpid()}")
            lock = run_lock.hold(path)
            try:
                if not (path / RUN_FILE).is_file():  # (another start replaced it since: its new run's folder)
                    raise FileNotFoundError(path / RUN_FILE)
                moved = _move_aside_what_is_not_the_trainers(path)
                try:
                    path.rename(trash)
                except BaseException:
                    _move_back(path, moved)
                    raise
            except FileNotFoundError:
                raise RunDirError(run_lock.busy_message(path)) from None
            finally:
                run_lock.release(lock)
            if verdict == "again":  # (it kept nothing to put back)
                shutil.rmtree(trash)
        made = cls(path)
        if verdict == "replace":
            made.replaced, made._replaced_copy, made._moved_aside = True, trash, moved
            _KEPT_HERE.add(trash.absolute())
        try:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RunDirError(f"cannot create the run directory '{path}': {exc.strerror}; choose another out_dir "
                                  "(for compare: --out)") from None
            if made._moved_aside:  # an export's default place is inside the run: said where it went
                kept, names = made._moved_aside
                warn_user(PeerdistillWarning(
                    f"overwriting '{path}' moved what it held besides the run ({', '.join(names)}) to '{kept}': "
                    "they belong to the old run; delete that folder once you no longer need them"))
        except BaseException:  # (a full disk, an interruption: the old run back where it was)
            if not path.exists() or (path.is_dir() and not any(path.iterdir())):
                made.put_back_replaced()
            raise
        return made

    def discard_replaced(self) -> None:
        """This run kept a checkpoint: the run it replaced (--overwrite) is deleted now."""
        kept, self._replaced_copy = self._replaced_copy, None
        if kept is None:
            return
        _KEPT_HERE.discard(kept.absolute())
        deleting = kept.with_name(DELETING_PREFIX + kept.name[len(REPLACED_PREFIX):])
        try:
            kept.rename(deleting)
        except OSError:  # (gone already: nothing to delete; a start of the name clears what is left)
            return
        shutil.rmtree(deleting, ignore_errors=True)

    def put_back_replaced(self) -> bool:
        """A run that failed before keeping a checkpoint gives its place back to the run it
        replaced (--overwrite), with what was moved aside from it: True when it did, the new
        run's files deleted."""
        kept = self._replaced_copy
        if kept is None or not kept.is_dir() or self.resume_path.exists():
            return False
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            kept.rename(self.path)
        except OSError as exc:  # (the new run's folder could not be emptied)
            warn_user(PeerdistillWarning(f"could not put back the run --overwrite replaced ({exc.strerror}): it is "
                                         f"in '{kept}'; move it back to '{self.path}' by hand"))
            return False
        self._replaced_copy = None
        _KEPT_HERE.discard(kept.absolute())
        _move_back(self.path, self._moved_aside)  # (an export, notes: they belong to it)
        PUT_BACK.add(self.path.resolve())
        return True

    @classmethod
    def verdict(cls, path: str | Path, overwrite: bool = False) -> str:
        """What ``create`` would do with ``path``, found without writing anything (``train
        --dry-run``): ``new`` (nothing of a run there), ``again`` (a run the same command stopped
        in its first epoch, started again), ``replace`` (a run, with ``overwrite``); the
        ``RunDirError`` it would raise where it would refuse."""
        path = Path(path)
        if path.is_symlink() and not path.exists():
            raise RunDirError(f"'{path}' is a symbolic link to '{os.readlink(path)}', which does not exist: point "
                              "it at a folder, or remove it, or choose another name=/out_dir=")
        if path.exists() and not path.is_dir():
            raise RunDirError(f"cannot create the run directory '{path}': a file of that name is there; choose another "
                              "name=/out_dir=")
        if path.is_dir() and any(path.iterdir()) and all(_is_partial_write(p) for p in path.iterdir()):
            run_lock.check_free(path)  # (unless a live process is writing its first file now)
            return "new"
        if not (path.exists() and any(path.iterdir())):
            run_lock.check_free(path)  # (an --overwrite that made it a moment ago may be about to train in it)
            _check_creatable(path)
            return "new"
        run_lock.check_free(path)  # neither trained nor deleted beside the process training it
        if path.is_symlink() and (overwrite or replaced_by_the_same_command(path)):
            # replacing it would replace the link, not the run it points to
            raise RunDirError(f"'{path}' is a symbolic link to '{os.readlink(path)}', which holds a run: replacing "
                              "it would replace the link; give the run's own folder (name= or the path it points "
                              "to), or remove the link")
        if not overwrite and replaced_by_the_same_command(path):
            return "again"
        if not overwrite:
            if (path / RUN_FILE).is_file() and not (path / RESUME_FILE).is_file() \
                    and read_json(path / RUN_FILE).get("status") != "complete":
                raise RunDirError(f"run directory '{path}' holds a run with nothing to resume yet (it stopped "
                                  "in its first epoch, or is still in it): pass --overwrite to start it again, "
                                  "or choose another name=/out_dir= (in Python: Trainer(overwrite=True) or "
                                  "another run_dir)")
            if (path / RUN_FILE).is_file() and read_json(path / RUN_FILE).get("status") == "complete":
                raise RunDirError(f"run directory '{path}' holds a finished run: pass --overwrite to train it "
                                  "again, or choose another name=/out_dir= to keep both (in Python: "
                                  "Trainer(overwrite=True) or another run_dir)")
            raise RunDirError(
                f"run directory '{path}' already exists: pass --overwrite to replace it, "
                "--resume to continue it, or choose another name=/out_dir= (in Python: Trainer(overwrite=True), "
                "fit(data, resume=True), or another run_dir)"
            )
        if not (path / RUN_FILE).exists():
            raise RunDirError(f"refusing to overwrite '{path}': it is not a peerdistill run directory")
        return "replace"

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        path = Path(path)
        finish_replacing(path)  # (a run an --overwrite killed outright had moved aside: back, or gone)
        if not (path / RUN_FILE).is_file():
            raise RunDirError(_not_a_run(path))
        return cls(path)

    def remove_partial_writes(self) -> None:
        """The temporary files of the trainer's writes a killed process left unfinished
        (``atomic_write_bytes`` names them ``.NAME.XXXX.tmp``; a checkpoint's is as large as the
        checkpoint). Only the trainer's own files: an export or a report may be writing beside."""
        own = [self.path.glob(f".{name}.*.tmp") for name in TRAINER_FILES]
        own += [(self.path / folder).glob(".*.tmp") for folder in ("checkpoints", "models", "heads")]
        for tmp in (p for found in own for p in found):
            tmp.unlink(missing_ok=True)

    def meta(self) -> dict[str, Any]:
        """run.json, checked to hold what reading a run back needs (a damaged or hand-edited file
        is named here, not met as a KeyError later)."""
        meta = read_json(self.path / RUN_FILE)
        problem = run_record_problem(meta)
        if problem:
            raise CheckpointError(f"'{self.path / RUN_FILE}' is damaged: {problem}; restore it or train the run again")
        return meta

    def metrics(self) -> dict[str, Any]:
        """metrics.json, checked to have the shape its readers rely on (a damaged or hand-edited
        file is named here, not met as a TypeError later)."""
        path = self.path / METRICS_FILE
        metrics = read_json(path)
        problem = _metrics_problem(metrics)
        if problem:
            raise CheckpointError(f"'{path}' is damaged: {problem}; restore it or train the run again")
        return metrics

    def model_path(self, name: str) -> Path:
        return self.path / "models" / f"{name}.safetensors"

    def heads_path(self, name: str) -> Path:
        return self.path / "heads" / f"{name}.safetensors"

    def check_still_there(self) -> None:
        """Before a training writes into its run again: a folder deleted or moved meanwhile would
        be made anew by the write, and trained into to the end outside the run's lock."""
        if not (self.path / RUN_FILE).is_file():
            raise RunDirError(f"the run directory '{self.path}' was deleted or moved while training (its run.json is "
                              "gone): the training stopped, writing nothing more; start it again (with --overwrite "
                              "where a folder of that name is left)")

    @property
    def resume_path(self) -> Path:
        return self.path / RESUME_FILE

    @property
    def is_complete(self) -> bool:
        """Whether the run wrote its final files (run.json says so last of all)."""
        path = self.path / RUN_FILE
        return path.is_file() and read_json(path).get("status") == "complete"

    def check_resumable(self) -> None:
        """A finished run is never trained further (nor its results rewritten), whatever its
        checkpoint or an edited config.yaml say."""
        if self.is_complete:
            raise CheckpointError(f"run '{self.path}' has finished: nothing to resume (train a new run to train "
                                  "longer)")

    def write_metrics_csv(self, rows: list[dict[str, Any]]) -> None:
        write_rows_csv(self.path / "metrics.csv", rows)


def exported_from(onnx_path: Path) -> dict[str, Any]:
    """The ``exported_from`` record of the JSON beside an exported graph (which run and model it
    came from), read leniently: {} where there is none or it cannot be read."""
    try:
        origin = json.loads(Path(onnx_path).with_suffix(".json").read_text()).get("exported_from")
    except (OSError, ValueError, AttributeError):
        return {}
    return origin if isinstance(origin, dict) else {}


def _an_export_is_no_run(path: Path) -> str:
    """An exported graph given where a run goes: the run it came from, and how the graph itself is scored."""
    origin = exported_from(path)
    came_from = (f" (this one came from '{origin['run']}', model '{origin.get('model')}')"
                 if isinstance(origin.get("run"), str) else "")
    return (f"'{path}' is an exported graph, not a run directory: eval scores a run's models{came_from}; the graph "
            "itself was checked against them by export (its parity, or its int8 check), and predict applies it to "
            "images, whose masks or probabilities can be compared with the truth")


def check_folder_writable(place: Path) -> None:
    """Files can be written in the folder ``place`` (made if missing): its nearest existing folder
    is a folder this process may write in; else an OSError naming that one. Found before work that
    takes a while (an export's checks, a predict's inputs, a run), so that none is lost to it."""
    existing = next(folder for folder in (place, *place.parents)
                    if folder.is_symlink() or folder.exists() or folder == folder.parent)
    if existing.is_symlink() and not existing.exists():  # (mkdir would fail on it with "File exists")
        raise OSError(errno.ENOENT, f"a symbolic link to '{os.readlink(existing)}', which does not exist, stands where "
                                    "a folder goes (point it at a folder, or remove it)", str(existing))
    if not existing.is_dir():  # (a file where a folder of the path goes)
        raise OSError(errno.ENOTDIR, "Not a directory", str(existing))
    if hasattr(os, "statvfs") and os.statvfs(existing).f_flag & os.ST_RDONLY:  # (root may write nothing there)
        raise OSError(errno.EROFS, "Read-only file system", str(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, "Permission denied (the folder cannot be written in)", str(existing))


def _check_creatable(path: Path) -> None:
    """A run directory can be made at ``path`` (said as ``create`` says a failure to make it)."""
    try:
        check_folder_writable(path)
    except OSError as exc:
        why = {errno.ENOTDIR: "Not a directory", errno.ENOENT: exc.strerror, errno.EROFS: exc.strerror}.get(
            exc.errno, "Permission denied")
        raise RunDirError(f"cannot create the run directory '{path}': {why} ('{exc.filename}'); choose another "
                          "out_dir (for compare: --out)") from None


def _not_a_run(path: Path) -> str:
    """Why ``path`` is no run directory, and what was likely meant."""
    if not path.exists():
        return f"'{path}' does not exist: give the folder of a run (where train wrote run.json)"
    if path.is_file():
        if (path.parent / RUN_FILE).is_file():
            return f"'{path}' is a file of a run: give its folder, '{path.parent}'"
        if path.suffix.lower() == ".onnx":  # (review 46e: an export, given to eval to score it)
            return _an_export_is_no_run(path)
        if path.suffix.lower() == ".safetensors":  # (review 52e: an export of weights alone)
            return (f"'{path}' holds weights alone (no architecture, classes or standardisation): give the run's "
                    "folder, where train wrote run.json, or a .onnx export of it")
        return f"'{path}' is a file, not a peerdistill run directory: give the folder where train wrote run.json"
    if run_lock.is_held(path) and not run_lock.resuming_here(path):  # (a resume's own lock: not another run)
        return f"'{path}' is a run that has just started: its run.json is written in a moment, try again then"
    runs = sorted(p.parent.name for p in path.glob(f"*/{RUN_FILE}"))
    if runs:  # the out_dir (runs/) or a comparison's folder, for one of the runs in it
        shown = first_few(runs)
        return (f"'{path}' is not a run but holds runs ({len(runs)}: {shown}): give one of them, e.g. "
                f"'{path / runs[0]}'")
    return f"'{path}' is not a peerdistill run directory (no {RUN_FILE})"
