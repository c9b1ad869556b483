"""Running under ``torchrun``: the process group, this process's place in it, and the few
collective operations the trainer needs.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with ``WORLD_SIZE`` > 1 the
trainer joins (or reuses) the default process group: NCCL when training on CUDA, gloo on
the CPU. Without torchrun everything here is a no-op for a world of one.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn

from ..cohort import as_logits
from ..errors import ConfigError, LostContactError, PeerdistillError
from ..launcher import launched, launched_world


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this trainer started the process group, so it ends it
    joined: bool = False  # launched by torchrun (even with one process: then DDP runs on one)
    backend: str | None = None
    token: str = ""  # the same on every process of one group: names its keys in the group's store
    main_host: str = ""  # where the main process runs (and so where the run directory is)

    @property
    def distributed(self) -> bool:
        return self.joined

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and draws progress."""
        return self.rank == 0


def process_device(device: torch.device) -> torch.device:
    """Under torchrun every process drives the GPU of its local rank."""
    _, _, local_rank = launched_world()
    if launched() and device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                              "start torchrun with --nproc-per-node at most the number of GPUs")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return device


def join(device: torch.device) -> World:
    """This process's place; joins the default process group when torchrun launched it (once
    every process has come to join it: one that stopped before, say so, see ``tell_failure``)."""
    rank, size, local_rank = launched_world()
    if not launched():
        return World()
    owns = False
    if not dist.is_initialized():
        if not {"MASTER_ADDR", "MASTER_PORT"} <= set(os.environ):
            raise ConfigError("RANK and WORLD_SIZE are set (a launcher's variables) but not MASTER_ADDR and "
                              "MASTER_PORT, where the processes meet: start the command with torchrun, or set them, "
                              "or unset RANK and WORLD_SIZE")
        _wait_for_every_process(size)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None,
                                **_keys_of_its_own())
        _JOINS[0] += 1
        owns = True
    token = [uuid.uuid4().hex, socket.gethostname()]
    dist.broadcast_object_list(token, src=0)
    return World(dist.get_rank(), dist.get_world_size(), local_rank, owns, joined=True,
                 backend=str(dist.get_backend()), token=token[0], main_host=token[1])


# ---- before the group: a process that stops early tells the others ---------------------------
# A process of another node that stops before joining (its copy of the data missing) would leave
# the others blocked in init_process_group, deaf to signals, for its 30-minute timeout. So they
# first meet in torchrun's own key-value store, there before any process starts, where a process
# that stops says why; waiting there, in Python, signals still stop them.
_JOINS = [0]  # groups this process has joined: each join meets under keys of its own
JOIN_DEADLINE_S = 30 * 60  # torch's own wait in init_process_group (its default timeout)


def _agent_store():
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true":
        return None  # not torchrun's (a hand-made launch): init_process_group alone
    try:
        return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                             timeout=timedelta(seconds=30))
    except (KeyError, ValueError, RuntimeError):
        return None


def _keys_of_its_own() -> dict[str, Any]:
    """A group joined again by this process (a second fit in one script) meets in torchrun's
    store under keys of its own: torch keys every default group alike, so the processes could
    read the first group's addresses, gone with it (gloo: "Connection refused", or a hang)."""
    store = _agent_store() if _JOINS[0] else None
    if store is None:
        return {}  # the first group (or a hand-made launch): torch's own rendezvous
    store.set_timeout(timedelta(minutes=30))  # (torch's own default for joining)
    rank, size, _ = launched_world()
    return {"store": dist.PrefixStore(f"{_meeting()}/group", store), "rank": rank, "world_size": size}


def _meeting() -> str:
    return (f"peerdistill/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/"
            f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/join{_JOINS[0]}")


def _wait_for_every_process(size: int, deadline_s: float = JOIN_DEADLINE_S) -> None:
    store = _agent_store()
    if store is None:
        return
    meeting, start, said_waiting = _meeting(), time.monotonic(), False
    store.set(f"{meeting}/arrived/{launched_world()[0]}", socket.gethostname())
    store.add(f"{meeting}/arrived", 1)
    while store.add(f"{meeting}/arrived", 0) < size:
        if store.add(f"{meeting}/failures", 0):
            rank = next(r for r in range(size) if store.check([f"{meeting}/failed/{r}"]))
            said = json.loads(store.get(f"{meeting}/failed/{rank}"))
            raise ConfigError(f"process {rank} (on {said['host']}) stopped before training: {said['error']} -- so "
                              "this one stops too; fix that and start every node again")
        waited = time.monotonic() - start
        if waited > deadline_s or (waited > 120 and not said_waiting):
            absent = [r for r in range(size) if not store.check([f"{meeting}/arrived/{r}"])]
            if waited > deadline_s:  # (torch's own wait in init_process_group ends so too, with a traceback)
                within = f"{deadline_s / 60:.0f} minutes" if deadline_s >= 120 else f"{deadline_s:.0f} s"
                raise ConfigError(f"process(es) {absent} did not come to train within {within}: "
                                  "see their own output (a process killed, or one that failed before it could say "
                                  "so); start every node again")
            print(f"waiting for process(es) {absent} to come to train ({waited / 60:.0f} min so far; one that fails "
                  "says so here, one killed does not)", file=sys.stderr, flush=True)
            said_waiting = True
        time.sleep(0.2)


def tell_failure(error: str) -> None:
    """Said by a torchrun process that stops before joining the group, to the processes that
    wait to join it (on every node): they stop with its message instead of waiting for it."""
    if not launched() or dist.is_initialized():
        return
    store = _agent_store()
    if store is None:
        return
    meeting = _meeting()
    store.set(f"{meeting}/failed/{launched_world()[0]}",
              json.dumps({"host": socket.gethostname(), "error": error}))
    store.add(f"{meeting}/failures", 1)


def joined_before() -> bool:
    """Whether this process has joined a process group (it may have left it since, on an error)."""
    return _JOINS[0] > 0


def _said_key(rank: int) -> str:
    return f"{_meeting()}/said/{rank}"


def mark_said(error: str) -> None:
    """Said by a node's first process (local rank 0) once it has printed ``error``, for the
    node's other processes (``said_by_first_on_node``); written after the message is out, so
    that none of them ends (and has torchrun stop the first) before it is."""
    rank, _, local_rank = launched_world()
    store = _agent_store() if launched() and local_rank == 0 else None
    if store is not None:
        store.set(_said_key(rank), error)


def said_by_first_on_node(error: str, wait_s: float = 10.0) -> bool:
    """Whether this node's first process (local rank 0) has printed this same message (a config
    every process reads alike, the main process's verdict on its run directory): the processes
    of a node share its terminal, so one says it for them all. Waits for it a little, as they
    fail at about the same moment; a message of its own, or none in time, is this one's to say."""
    rank, _, local_rank = launched_world()
    store = _agent_store() if launched() and local_rank > 0 else None
    if store is None:
        return False
    first = _said_key(rank - local_rank)  # torchrun numbers a node's processes one after another
    deadline = time.monotonic() + wait_s
    while not store.check([first]):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return store.get(first).decode() == error


def check_same_run(world: World, what: dict[str, Any]) -> None:
    """Every process must train the same run on the same data (each node reads its own copy of
    the config and the files): ``what`` (the config, the splits) compared with the main
    process's, refused on every process with the differences."""
    if not world.distributed:
        return
    everyone: list[Any] = [None] * world.size
    dist.all_gather_object(everyone, (socket.gethostname(), what))
    from ..config_diff import differences, summary

    for rank, (host, theirs) in enumerate(everyone[1:], start=1):
        changed = differences(everyone[0][1], theirs, sides=("on the main process", f"on process {rank} (on {host})"))
        if changed:
            raise ConfigError(f"the processes were given different runs: {summary(changed)}; give every node the "
                              "same command, config, data and checkpoint files")


def leave(world: World) -> None:
    if world.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def end_process(code: int) -> NoReturn:
    """End this process now with exit ``code``: its output flushed and its ``atexit`` handlers
    run, the interpreter's teardown skipped. For the end of a process that trained under
    DistributedDataParallel on gloo: torch's DDP keeps the process group, and its threads,
    alive past ``destroy_process_group``, and a process whose peer exits while it tears down
    may then abort (SIGABRT, "terminate called without an active exception") with its work
    already done, which torchrun reports as a failed run (benchmarks/gloo_exit_race.py)."""
    atexit._run_exitfuncs()  # (logging's shutdown, a tracker's upload: what a normal exit runs)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing left to say on it
            pass
    os._exit(code)


# What gloo, NCCL and torch's store say when a peer process is gone (killed, its node lost)
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Connection refused", "Broken pipe",
              "recvValue failed", "remote process exited")


def lost_contact(world: World | None, exc: BaseException, advice: Callable[[], str]) -> LostContactError | None:
    """The error to say where ``exc`` is torch's for a peer process gone (review 54g: a raw gloo
    traceback, after 30 s of silence); ``advice()``: what the run keeps and how to continue."""
    if world is None or not world.distributed or not isinstance(exc, RuntimeError):
        return None
    # torch's own first line only (review 54h: a data loader's error quotes a whole traceback, which
    # may hold these words), and not a watchdog's timeout (a peer slow or hung, not gone)
    said = (str(exc).strip().splitlines() or [""])[0]
    gone = isinstance(exc, dist.DistNetworkError) or any(sign in said for sign in _PEER_GONE)
    if not gone or "Watchdog" in said or "Timed out" in said:
        return None
    said = said[said.rfind("] ") + 2:] if "] " in said else said  # (gloo's source position dropped)
    said = said.split(". ")[0].rstrip(".")  # (its first sentence: the rest is torch's advice)
    return LostContactError(f"lost contact with another process of this run ({said[:200]}): it stopped, was killed or "
                            f"its node was lost; {advice()}")


def abandon(world: World | None, wait_s: float = 30.0) -> None:
    """Leave the process group after an error. Processes that stop together (an error every one
    of them raises, as a non-finite step does) meet first, so that none tears down the group
    while another still talks to it (gloo then aborts the process); one whose peers are busy
    elsewhere waits ``wait_s`` at most, then leaves, and they fail at their next collective.
    On gloo only: NCCL's group is left at once."""
    if world is None or not world.owns_group or not dist.is_initialized():
        return
    if world.backend == "gloo":
        _meet(world, wait_s)
    dist.destroy_process_group()


def _meet(world: World, wait_s: float) -> None:
    """Wait until every process has come to leave, or ``wait_s`` has passed, counting them in
    the group's key-value store. Not gloo's monitored barrier: only the first process gives up
    after its timeout, any other waits for ever when the first is in another collective."""
    key = f"peerdistill/leaving/{world.token}"
    deadline = time.monotonic() + wait_s
    try:
        store = dist.distributed_c10d._get_default_store()
        count = store.add(key, 1)
        while count < world.size and time.monotonic() < deadline:
            time.sleep(0.05)
            count = store.add(key, 0)
    except Exception:  # noqa: BLE001 (the store gone with the process that held it: nobody to wait for)
        return


def all_true(world: World, flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on every process (so all take the same branch)."""
    return all_true_each(world, torch.tensor([flag], device=device))[0]


def all_true_each(world: World, flags: torch.Tensor) -> list[bool]:
    """Element-wise: whether each of a boolean tensor's entries holds on every process (one
    collective, one device sync)."""
    if world.distributed:
        flags = flags.to(torch.int32)
        dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    return [bool(v) for v in flags.tolist()]


def gather_objects(world: World, obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order, on every process."""
    if not world.distributed:
        return [obj]
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, obj)
    return gathered


def from_main(world: World, obj: Any) -> Any:
    """The main process's ``obj`` on every process."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(world: World, action: Callable[[], Any], share: bool = True) -> Any:
    """Run ``action`` on the main process only; its error (a bad run directory, an unreadable
    checkpoint) is raised on every process, so none waits forever. ``share``: hand the result
    to the others too."""
    result, error = None, None
    if world.is_main:
        try:
            result = action()
        except Exception as exc:
            if not world.distributed:
                raise
            error = exc
    if world.distributed:
        # Library errors travel as they are; anything else (a full disk) as its message.
        sent = error if isinstance(error, PeerdistillError) or error is None else f"{type(error).__name__}: {error}"
        sent = from_main(world, sent)
        if error is not None:
            raise error
        if sent is not None:
            raise (_as_the_main_said(sent, world) if isinstance(sent, PeerdistillError)
                   else RuntimeError(f"the main process (on {world.main_host}) failed: {sent}"))
    return from_main(world, result) if share else result


def _as_the_main_said(error: PeerdistillError, world: World) -> PeerdistillError:
    """The main process's error, said on another: about the main process's disk (its run
    directory), which need not be this node's."""
    said = copy.copy(error)  # (its other attributes kept: a non-finite error's finding)
    said.args = (f"{error} (found by the main process, on {world.main_host})",)
    said.said_alike = str(error)  # what the main process prints: on its node, for the others too
    return said


def mean_over_processes(world: World, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each value averaged over the processes (every process holds the same names): a loss
    over the global batch, not one process's share."""
    if not world.distributed or not values:
        return values
    stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(()) for v in values.values()])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    return dict(zip(values, (stacked / world.size).unbind()))


def average_gradients(world: World, parameters) -> None:
    """What DDP does for a model, for the small modules of knowledge edges (connectors and
    critics; a critic's gradient penalty needs a double backward, which DDP does not support)."""
    if not world.distributed:
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world.size)


def broadcast_state(world: World, module: nn.Module, parameters: bool = True) -> None:
    """Copy the main process's weights (``parameters``) and buffers to every process. DDP syncs
    buffers (BatchNorm statistics) at the start of a forward, so after an epoch's last step they
    must be sent once more before evaluation and saving."""
    broadcast_tensors(world, (list(module.parameters()) if parameters else []) + list(module.buffers()))


def broadcast_tensors(world: World, tensors: list[torch.Tensor]) -> None:
    """The main process's values of ``tensors`` on every process."""
    if not world.distributed:
        return
    with torch.no_grad():
        for tensor in tensors:
            dist.broadcast(tensor, src=0)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with SyncBatchNorm layers (a self-distillation model's heads find the new
    layers at its next forward)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def wrap(module: nn.Module, device: torch.device, find_unused: bool = False) -> nn.Module:
    """A trained model under DistributedDataParallel; ``find_unused`` for a model with trained
    parameters its forward leaves out (DDP otherwise waits for their gradients and fails)."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def unused_parameters(module: nn.Module, x: torch.Tensor, name: str = "model") -> list[str]:
    """The trained parameters the logits of a forward on ``x`` get no gradient from (a spare
    head, an auxiliary classifier whose output the losses do not read), found by one backward in
    eval mode and one in training mode (a layer used in one mode only: a BatchNorm applied at
    evaluation alone, a block skipped in training); the model's gradients, mode, buffers
    (BatchNorm's running statistics) and torch's random state are as before after them (not
    what the model keeps itself: a counter of its calls goes on). A layer skipped at random
    (LayerDrop) may be seen used: ``train.find_unused_parameters`` is for it."""
    unused = _unused_in_mode(module, x, name, training=False)
    buffers = {key: b.clone() for key, b in module.named_buffers()}
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            unused |= _unused_in_mode(module, x, name, training=True)
    except (RuntimeError, ValueError):
        pass  # (a BatchNorm1d given one sample per channel: training says so, by name, at its first step)
    finally:
        with torch.no_grad():
            for key, b in module.named_buffers():
                if key in buffers:  # (one the forward made is left as it made it)
                    b.copy_(buffers[key])
    return [key for key, p in module.named_parameters() if p.requires_grad and key in unused]


def _unused_in_mode(module: nn.Module, x: torch.Tensor, name: str, training: bool) -> set[str]:
    trained = {key: p for key, p in module.named_parameters() if p.requires_grad}
    kept = {key: p.grad for key, p in trained.items()}
    was_training = module.training
    module.train(training)
    try:
        for p in trained.values():
            p.grad = None
        with torch.enable_grad():
            out = module(x)
            # what the losses read of the output: the logits, and self-distillation heads' logits
            read = [as_logits(out, name)] + (list(out["heads"].values()) if isinstance(out, dict)
                                             and isinstance(out.get("heads"), dict) else [])
            read = [t for t in read if isinstance(t, torch.Tensor) and t.requires_grad]
            if read:
                sum(t.float().sum() for t in read).backward()
        return {key for key, p in trained.items() if p.grad is None}
    finally:
        for key, p in trained.items():
            p.grad = kept[key]
        module.train(was_training)


@contextlib.contextmanager
def gradients_kept_local(runners) -> Iterator[None]:
    """Backward passes inside leave their gradients unshared (DDP's ``no_sync``), to be summed
    with the next backward's and shared with it: micro-batches share once per step."""
    with contextlib.ExitStack() as stack:
        for runner in runners:
            ddp = getattr(runner, "_orig_mod", runner)  # a compiled DDP model wraps it
            if isinstance(ddp, nn.parallel.DistributedDataParallel):
                stack.enter_context(ddp.no_sync())
        yield


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """A seed for one process's random draws at one step: distinct per process, and a pure
    function of the position so a resumed run draws the same numbers without saving the
    states of every process."""
    return (seed * 1_000_003 + epoch * 100_003 + step * 101 + rank * 7_919) % 2**63
