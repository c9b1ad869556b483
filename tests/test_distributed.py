"""torchrun: each process's share of the data, metrics over the whole split, a 2-process CPU run
(gloo) that ends with identical weights everywhere and files written by the main process only,
and resuming in the middle of an epoch."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from peerdistill.build import train_from_config
from peerdistill.cohort import Cohort
from peerdistill.config import validate
from peerdistill.data.loaders import DatasetBatches, PatchBatches, TensorBatches
from peerdistill.data.splits import TensorData
from peerdistill.engine import Trainer
from peerdistill.engine.evaluate import evaluate, merge_meters
from peerdistill.engine.resume import load_resume_state
from peerdistill.errors import ConfigError
from peerdistill.models import SmallCNN
from peerdistill.tasks import ClassificationTask, SegmentationTask
from peerdistill.engine.artifacts import jsonable

CPU = torch.device("cpu")


def numbered(n: int, size: int = 4) -> TensorData:
    """Images whose pixels all hold their own index, so a batch says which samples it has."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, size, size).contiguous()
    return TensorData(x, torch.arange(n))


def shares(make, world: int):
    return [list(make((rank, world))) for rank in range(world)]


@pytest.mark.parametrize("world", [2, 3])
def test_the_shares_of_a_global_batch_are_the_single_process_batch(world):
    data = numbered(50)
    make = lambda shard: TensorBatches(data, 12, CPU, shuffle=True, generator=torch.Generator().manual_seed(5),
                                       drop_last=True, shard=shard)
    whole = list(make((0, 1)))
    parts = shares(make, world)
    assert all(len(p) == len(whole) == 4 for p in parts)
    for b, (_, y) in enumerate(whole):
        assert [len(p[b][1]) for p in parts] == [12 // world] * world
        joined = torch.cat([p[b][1] for p in parts])
        assert sorted(joined.tolist()) == sorted(y.tolist())


def test_evaluation_shards_cover_the_split_once_without_padding():
    data = numbered(23)
    parts = shares(lambda shard: TensorBatches(data, 8, CPU, shuffle=False, shard=shard), 2)
    seen = torch.cat([y for p in parts for _, y in p])
    assert sorted(seen.tolist()) == list(range(23))


def test_a_dataset_through_a_dataloader_is_sharded_the_same_way():
    data = numbered(40)
    dataset = TensorDataset(data.x, data.y)
    tensors = shares(lambda s: TensorBatches(data, 10, CPU, shuffle=True, generator=torch.Generator().manual_seed(1),
                                             drop_last=True, shard=s), 2)
    loaded = shares(lambda s: DatasetBatches(dataset, 10, CPU, shuffle=True, generator=torch.Generator().manual_seed(1),
                                             drop_last=True, shard=s), 2)
    for rank in range(2):
        assert [y.tolist() for _, y in tensors[rank]] == [y.tolist() for _, y in loaded[rank]]


def test_loader_workers_deliver_the_drawn_batches_in_every_epoch():
    # Persistent workers must see each epoch's new order, not the first epoch's.
    data = numbered(24)
    dataset = TensorDataset(data.x, data.y)
    in_process = DatasetBatches(dataset, 6, CPU, shuffle=True, generator=torch.Generator().manual_seed(2))
    workers = DatasetBatches(dataset, 6, CPU, shuffle=True, generator=torch.Generator().manual_seed(2), num_workers=2)
    epochs = [[y.tolist() for _, y in workers.iterate()] for _ in range(2)]
    assert epochs == [[y.tolist() for _, y in in_process.iterate()] for _ in range(2)]
    assert epochs[0] != epochs[1]


def test_patch_shares_are_the_single_process_crops():
    x = torch.rand(3, 1, 20, 20)
    y = (torch.rand(3, 20, 20) > 0.7).long()
    make = lambda shard: PatchBatches(TensorData(x, y), 8, per_image=8, batch_size=6, device=CPU,
                                      generator=torch.Generator().manual_seed(2), foreground=0.5, shard=shard)
    whole = list(make((0, 1)))
    parts = shares(make, 2)
    for b, (wx, _) in enumerate(whole):
        assert torch.equal(parts[0][b][0], wx[0::2]) and torch.equal(parts[1][b][0], wx[1::2])


def test_resuming_inside_an_epoch_starts_at_the_saved_batch():
    data = numbered(40)
    generator = torch.Generator().manual_seed(9)
    batches = TensorBatches(data, 8, CPU, shuffle=True, generator=generator, drop_last=True)
    start = generator.get_state()
    whole = [y.tolist() for _, y in batches.iterate()]
    generator.set_state(start)
    assert [y.tolist() for _, y in batches.iterate(3)] == whole[3:]


@pytest.mark.parametrize("batch_size", [1, 3, 7, 400])
def test_evaluation_shares_cover_the_split_once_and_no_process_goes_without(batch_size):
    # an evaluation batch smaller than the processes once left one of them no sample at all
    data = numbered(359)
    for make in (lambda shard: TensorBatches(data, batch_size, CPU, shuffle=False, shard=shard),
                 lambda shard: DatasetBatches(data, batch_size, CPU, shuffle=False, shard=shard)):
        parts = [[y.tolist() for _, y in part] for part in shares(make, 2)]
        seen = [i for part in parts for batch in part for i in batch]
        assert sorted(seen) == list(range(359))
        assert [sum(map(len, part)) for part in parts] == [179, 180]  # near-equal, whatever the batch size
        assert all(0 < len(batch) <= -(-batch_size // 2) for part in parts for batch in part)


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused():
    with pytest.raises(ConfigError, match="divisible by the 2 processes") as refused:
        TensorBatches(numbered(20), 7, CPU, shuffle=True, generator=torch.Generator(), shard=(0, 2))
    assert refused.value.said_alike == str(refused.value)  # every process finds it: said once per node
    # a split too small to share, or a last training batch that does not divide: said once too
    with pytest.raises(ConfigError, match="a split of 1 samples cannot be shared by 2 processes") as refused:
        TensorBatches(numbered(1), 2, CPU, shuffle=False, shard=(0, 2))
    assert refused.value.said_alike == str(refused.value)
    with pytest.raises(ConfigError, match="the training split's last batch of 5 samples cannot be shared") as refused:
        TensorBatches(numbered(13), 8, CPU, shuffle=True, generator=torch.Generator(), shard=(0, 2))
    assert refused.value.said_alike == str(refused.value)


def _evaluate_in_shares(cohort, task, data, world=2):
    """As under torchrun: each 'process' scores its share; the meters are merged at the end."""
    collected = []
    for rank in reversed(range(world)):  # the main process merges last, as it holds the rest
        batches = TensorBatches(data, 7, CPU, shuffle=False, shard=(rank, world))
        if rank:
            evaluate(cohort, task, batches, merge=lambda meters: collected.append(meters) or meters)
        else:
            merged = evaluate(cohort, task, batches, merge=lambda meters: merge_meters([meters, *collected]))
    return merged


def test_classification_metrics_from_shares_equal_the_whole_split(tiny_data):
    torch.manual_seed(0)
    cohort = Cohort.from_modules([SmallCNN(1, 3, width=4), SmallCNN(1, 3, width=4)], teacher=SmallCNN(1, 3, width=8))
    task = ClassificationTask(3)
    whole = evaluate(cohort, task, TensorBatches(tiny_data.test, 7, CPU, shuffle=False))
    shared = _evaluate_in_shares(cohort, task, tiny_data.test)
    assert set(shared) == set(whole)
    for model in whole:
        assert shared[model] == pytest.approx(whole[model], abs=1e-12, nan_ok=True)


class _Blob(nn.Module):
    """A fixed per-pixel segmenter: foreground where the image is bright (no training needed)."""

    def forward(self, x):
        return torch.cat([-x, x - 0.5], dim=1) * 4


def test_segmentation_metrics_from_shares_equal_the_whole_split():
    torch.manual_seed(0)
    x = torch.rand(9, 1, 16, 16)
    y = (torch.rand(9, 16, 16) > 0.6).long()
    y[:, :2] = 255  # ignored pixels stay ignored in every share
    data = TensorData(x, y)
    cohort = Cohort.from_modules([_Blob(), _Blob()])
    task = SegmentationTask(2)
    whole = evaluate(cohort, task, TensorBatches(data, 7, CPU, shuffle=False))
    shared = _evaluate_in_shares(cohort, task, data)
    assert set(shared) == set(whole)
    for model in whole:
        assert shared[model] == pytest.approx(whole[model], abs=1e-12, nan_ok=True)



def _nan_outputs(module, inputs, out):
    return torch.full_like(out, float("nan"))


def test_what_merged_meters_fail_on_is_said_once_per_node(tiny_data):
    """Merged, the meters are every process's alike, so their failure is too: a model's NaN outputs
    (review 58h: printed twice per node under torchrun) and a split with no batch."""
    from peerdistill.errors import DataError, NonFiniteError

    torch.manual_seed(0)
    cohort = Cohort.from_modules([SmallCNN(1, 3, width=4), SmallCNN(1, 3, width=4)])
    cohort.students[0].module.register_forward_hook(_nan_outputs)
    task = ClassificationTask(3)
    with pytest.raises(NonFiniteError, match="'student1' gives non-finite outputs") as refused:
        _evaluate_in_shares(cohort, task, tiny_data.test)
    assert refused.value.said_alike == str(refused.value)
    with pytest.raises(DataError, match="holds no batches to score") as refused:
        evaluate(cohort, task, [], merge=lambda meters: meters)
    assert refused.value.said_alike == str(refused.value)
    # one process scoring alone, with nothing merged: no other process finds it
    with pytest.raises(NonFiniteError, match="'student1' gives non-finite outputs") as refused:
        evaluate(cohort, task, TensorBatches(tiny_data.test, 7, CPU, shuffle=False))
    assert refused.value.said_alike is None


def test_an_epoch_every_process_skipped_whole_is_said_once_per_node(tiny_data):
    """The processes agree on every skipped step, so each stops with the same message."""
    from peerdistill import KnowledgeGraph, TrainSpec
    from peerdistill.engine.distributed import World
    from peerdistill.errors import NonFiniteError

    t = Trainer(Cohort.from_modules([SmallCNN(1, 3, 4, 1), SmallCNN(1, 3, 4, 1)]), KnowledgeGraph([]),
                ClassificationTask(3), device="cpu", progress=False, train=TrainSpec(epochs=1, batch_size=8,
                                                                                     nonfinite="skip"))
    t._setup(tiny_data)
    t.skipped_steps, t.skip_causes = 7, {"loss term 'student1/ce'": 7}
    t.world = World(rank=0, size=2, joined=True)
    with pytest.raises(NonFiniteError, match="every step of epoch 1 was skipped") as refused:
        t._check_skipped(0, 7)
    assert refused.value.said_alike == str(refused.value)


def test_resume_in_the_middle_of_an_epoch_gives_the_uninterrupted_metrics(tmp_path, monkeypatch):
    tree = {"out_dir": str(tmp_path), "deterministic": True,
            "teacher": {"arch": "cnn", "args": {"width": 8}},
            "students": [{"arch": "cnn", "args": {"width": 4}}, {"arch": "cnn", "args": {"width": 4}}],
            "data": {"augment": ["hflip", "rotate", "scale", "brightness", "noise", "blur"]},
            "train": {"epochs": 2, "batch_size": 128, "checkpoint_every_steps": 3}, "distill": {"rampup_epochs": 1}}
    whole = train_from_config(validate({**tree, "name": "whole"}), progress=False)
    calls = {"n": 0}
    real_step = Trainer.step

    def crashing_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == len(self.train_batches) + 5:  # the 5th step of the second epoch
            raise RuntimeError("simulated crash")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_from_config(validate({**tree, "name": "cut"}), progress=False)
    monkeypatch.undo()
    cut = tmp_path / "cut"
    state = load_resume_state(cut / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 3), "the last checkpoint is 3 steps into the second epoch"
    resumed = train_from_config(validate({**tree, "name": "cut"}), resume=True, progress=False)
    assert json.loads((cut / "run.json").read_text())["resumed_at"] == [{"epoch": 2, "step": 3, "processes": 1}]
    assert jsonable(resumed.test_at_best) == jsonable(whole.test_at_best)
    assert [r["train/loss/total"] for r in resumed.history] == [r["train/loss/total"] for r in whole.history]



CUT_AND_RESUME_SCRIPT = textwrap.dedent('''
    """Under torchrun: "cut" trains the run uninterrupted as "whole", then again as "cut" with a
    crash on every process at the same step (after a checkpoint in the middle of an epoch);
    "resume" continues "cut". Each process records the runs' logged epochs."""
    import json, os, sys

    from peerdistill.build import make_trainer
    from peerdistill.config import validate
    from peerdistill.engine import Trainer

    tree, mode = json.loads(sys.argv[1]), sys.argv[2]
    epochs = {}
    def fit(name, resume=False):
        trainer, data = make_trainer(validate({**tree, "name": name}), progress=False)
        epochs[name] = [trainer.fit(data, resume=resume).history, None]
    if mode == "cut":
        fit("whole")
        real_step, calls = Trainer.step, []
        def crashing_step(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == len(self.train_batches) + 4:  # the 4th step of the second epoch
                raise RuntimeError("simulated crash")
            return real_step(self, *args, **kwargs)
        Trainer.step = crashing_step
        try:
            fit("cut")
        except RuntimeError as exc:
            epochs["crash"] = str(exc)
    else:
        fit("cut", resume=True)
    with open(os.path.join(tree["out_dir"], f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump(epochs, fh, default=float)
    from peerdistill.engine.distributed import end_process
    end_process(0)
''')


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_an_epoch_resumed_under_torchrun_logs_the_global_batchs_losses_as_an_uninterrupted_one(tmp_path):
    """Review 53a: a checkpoint in the middle of an epoch held the main process's loss sums alone,
    so the resumed epoch logged a loss 5 % off the uninterrupted run's. Now the sums saved are
    averaged over the processes."""
    tree = {"out_dir": str(tmp_path), "deterministic": True, "teacher": {"arch": "cnn", "args": {"width": 4}},
            "students": [{"arch": "cnn", "args": {"width": 4}}] * 2, "data": {"augment": ["hflip", "noise"]},
            "train": {"epochs": 2, "batch_size": 128, "checkpoint_every_steps": 2}, "distill": {"rampup_epochs": 1}}
    first, _ = _two_processes(CUT_AND_RESUME_SCRIPT, tree, "cut")
    assert first["crash"] == "simulated crash"
    state = load_resume_state(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 2), "the last checkpoint is 2 steps into the second epoch"
    _two_processes(CUT_AND_RESUME_SCRIPT, tree, "resume")
    whole, cut = (json.loads((tmp_path / name / "metrics.json").read_text())["epochs"] for name in ("whole", "cut"))
    terms = [key for key in whole[1] if key.startswith("train/loss/")]
    assert len(terms) > 2
    for key in terms:
        assert cut[1][key] == pytest.approx(whole[1][key], rel=1e-5), key
    assert cut[1]["val/student1/accuracy"] == whole[1]["val/student1/accuracy"]



RUN_DIR_ON_THE_MAIN_ALONE_SCRIPT = textwrap.dedent('''
    """Trains with checkpoints inside the epoch, the run directory given to the main process alone."""
    import json, os, sys
    from pathlib import Path

    from peerdistill.build import make_trainer
    from peerdistill.config import validate

    tree, rank = json.loads(sys.argv[1]), int(os.environ["RANK"])
    trainer, data = make_trainer(validate(tree), run_dir=Path(tree["out_dir"]) / "r", progress=False)
    if rank != 0:
        trainer.run_dir_path = None  # (make_trainer would give the config's folder for None)
    trainer.fit(data)
    with open(os.path.join(tree["out_dir"], f"rank{rank}.json"), "w") as fh:
        json.dump(len(trainer._history), fh)
    from peerdistill.engine.distributed import end_process
    end_process(0)
''')


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_a_run_directory_given_to_the_main_process_alone_checkpoints_inside_epochs_without_a_hang(tmp_path):
    """Review 54f: each process decided by its own run_dir whether to checkpoint inside an epoch,
    whose loss sums every process averages: a script giving it to the main alone hung there."""
    tree = {"out_dir": str(tmp_path), "teacher": {"arch": "cnn", "args": {"width": 4}},
            "students": [{"arch": "cnn", "args": {"width": 4}}] * 2,
            "train": {"epochs": 1, "batch_size": 128, "checkpoint_every_steps": 1}}
    assert _two_processes(RUN_DIR_ON_THE_MAIN_ALONE_SCRIPT, tree) == [1, 1]
    assert (tmp_path / "r" / "checkpoints" / "last.pt").is_file()
    # by the main process's clock (0.006 s: after every step), which the others learn in the step
    tree = {**tree, "out_dir": str(tmp_path / "minutes"), "train": {"epochs": 1, "batch_size": 128,
                                                                   "checkpoint_every_minutes": 1e-4}}
    (tmp_path / "minutes").mkdir()
    assert _two_processes(RUN_DIR_ON_THE_MAIN_ALONE_SCRIPT, tree) == [1, 1]
    assert load_resume_state(tmp_path / "minutes" / "r" / "checkpoints" / "last.pt")["epoch"] == 1

REJOIN_SCRIPT = textwrap.dedent('''
    """Joins the process group, sums the ranks and leaves, six times over, as fits one after
    another in one script do; records the sums."""
    import json, os, sys

    import torch
    import torch.distributed as dist

    from peerdistill.engine import distributed

    sums = []
    for _ in range(6):
        world = distributed.join(torch.device("cpu"))
        ranks = torch.tensor([world.rank + 1.0])
        dist.all_reduce(ranks)
        sums.append(float(ranks))
        distributed.leave(world)
    with open(os.path.join(json.loads(sys.argv[1])["out_dir"], f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump(sums, fh)
''')


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_a_process_group_joined_again_in_one_script_meets_under_keys_of_its_own(tmp_path):
    """torch keys every default group alike in torchrun's store: a group joined again read the
    last one's addresses, gone with it, and failed ("Connection refused") or hung."""
    assert _two_processes(REJOIN_SCRIPT, {"out_dir": str(tmp_path)}) == [[3.0] * 6] * 2

DDP_SCRIPT = textwrap.dedent('''
    """Trains under torchrun (the online teacher in DDP, the two students packed into one group
    in DDP) and records, per process, its weights' digest and every file it wrote."""
    import hashlib, json, os, sys

    import peerdistill.engine.checkpointing as checkpointing_module
    import peerdistill.engine.records as records_module
    import peerdistill.engine.trainer as trainer_module
    from peerdistill.build import make_trainer
    from peerdistill.config import validate

    writes = []
    for module in (records_module, trainer_module, checkpointing_module):
        for name in ("write_json", "atomic_write_text", "save_weights", "save_resume_state"):
            if hasattr(module, name):
                real = getattr(module, name)
                def counting(path, *args, _real=real, **kwargs):
                    writes.append(str(path))
                    return _real(path, *args, **kwargs)
                setattr(module, name, counting)

    import peerdistill.engine.distributed as distributed_module

    losses = []  # per epoch: this process's own mean loss terms, and what the run logs
    real_mean = distributed_module.mean_over_processes
    def spying(world, values):
        out = real_mean(world, values)
        if "total" in values:  # the loss terms (not the gradient norms, none here)
            losses.append([{k: float(v) for k, v in values.items()}, {k: float(v) for k, v in out.items()}])
        return out
    distributed_module.mean_over_processes = spying

    tree = json.loads(sys.argv[1])
    trainer, data = make_trainer(validate(tree), progress=False)
    result = trainer.fit(data)
    digest = hashlib.sha256()
    for m in trainer.cohort.members:
        for key, tensor in sorted(m.module.state_dict().items()):
            digest.update(key.encode() + tensor.detach().cpu().numpy().tobytes())
    for key, tensor in sorted(trainer.connectors.state_dict().items()):
        digest.update(key.encode() + tensor.detach().cpu().numpy().tobytes())
    rank = int(os.environ["RANK"])
    with open(os.path.join(tree["out_dir"], f"rank{rank}.json"), "w") as fh:
        json.dump({"digest": digest.hexdigest(), "writes": writes, "test": result.test_at_best,
                   "connectors": len(trainer.connectors), "losses": losses}, fh)
    from peerdistill.engine.distributed import end_process
    end_process(0)  # the results are written; torch's DDP leaves gloo's threads to the exit
''')


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_two_processes_with_torchrun_end_with_identical_weights_and_write_once(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    tree = {"name": "ddp", "out_dir": str(tmp_path), "distill": {"preset": "styles", "rampup_epochs": 1},
            "teacher": {"arch": "cnn", "args": {"width": 8}},
            "students": [{"arch": "cnn", "args": {"width": 4}}, {"arch": "cnn", "args": {"width": 4}}],
            "data": {"augment": ["hflip"]},
            # micro-batches: each process's 32 samples in parts of 12, 12, 8, gradients shared once
            # and weight averages: the digest is of the averages (what the models hold at the end)
            "train": {"epochs": 2, "batch_size": 64, "fuse_students": True, "micro_batch_size": 12, "ema_decay": 0.9}}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run"]  # torchrun, wherever torch's scripts are
    proc = subprocess.run([*torchrun, "--standalone", "--nproc-per-node", "2", str(script), json.dumps(tree)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["connectors"] > 0, "the styles preset on these widths needs connectors"
    assert ranks[0]["digest"] == ranks[1]["digest"], "every process must end with the same weights"
    assert jsonable(ranks[0]["test"]) == jsonable(ranks[1]["test"]), "every process computes the same whole-split metrics"
    assert ranks[1]["writes"] == [], "only the main process writes files"
    written = ranks[0]["writes"]
    assert written.count(str(tmp_path / "ddp" / "metrics.json")) == 3  # two epochs and the final one
    run = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert (run["processes"], run["batch_per_process"], run["status"]) == (2, 32, "complete")
    assert run["fused_students"] == [["student1", "student2"]]  # the packed group ran under DDP too
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["test_at_best"] == jsonable(ranks[0]["test"])
    # the logged training loss is the global batch's: the mean of the processes' own shares
    for epoch, row in enumerate(metrics["epochs"]):
        (own0, logged0), (own1, logged1) = ranks[0]["losses"][epoch], ranks[1]["losses"][epoch]
        assert own0["total"] != own1["total"], "the two shares of a batch differ"
        assert logged0 == logged1
        assert logged0["total"] == pytest.approx((own0["total"] + own1["total"]) / 2, rel=1e-12)
        assert row["train/loss/total"] == pytest.approx(logged0["total"], rel=1e-12)


def _two_processes(script: str, tree: dict, *args: str) -> list[dict]:
    """Run ``script`` (given the config tree and ``args``) under torchrun with two processes on
    gloo; what each process wrote to OUT_DIR/rank<r>.json."""
    out = Path(tree["out_dir"])
    (out / "script.py").write_text(script)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.Popen([*torchrun, str(out / "script.py"), json.dumps(tree), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # a hang fails the test without leaving torchrun's workers behind:
        proc.terminate()  # torchrun passes SIGTERM on to them (each in a session of its own), then SIGKILL
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=60)
        proc.kill()
        raise
    assert proc.returncode == 0, err[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


NAN_ON_ONE_PROCESS_SCRIPT = textwrap.dedent('''
    """Trains under torchrun with a NaN pixel in the second batch of process 1 only; each process
    records the message it stopped with."""
    import json, os, sys

    from peerdistill.build import make_trainer
    from peerdistill.config import validate
    from peerdistill.errors import NonFiniteError

    tree = json.loads(sys.argv[1])
    trainer, data = make_trainer(validate(tree), progress=False)
    rank, augment, batches = int(os.environ["RANK"]), trainer.task.augment, []
    def poisoned(x, y, generator):
        x, y = augment(x, y, generator)
        batches.append(1)
        if rank == 1 and len(batches) == 2:
            x = x.clone()
            x[0] = float("nan")
        return x, y
    trainer.task.augment = poisoned
    try:
        trainer.fit(data)
        message = None
    except NonFiniteError as exc:
        message = str(exc)
    with open(os.path.join(tree["out_dir"], f"rank{rank}.json"), "w") as fh:
        json.dump({"message": message}, fh)
    from peerdistill.engine.distributed import end_process
    end_process(0)  # the results are written; torch's DDP leaves gloo's threads to the exit
''')


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_a_non_finite_loss_on_one_process_is_named_by_every_process(tmp_path):
    tree = {"name": "ddp", "out_dir": str(tmp_path), "distill": {"preset": "ml"},
            "students": [{"arch": "cnn", "args": {"width": 4}}, {"arch": "cnn", "args": {"width": 4}}],
            "train": {"epochs": 1, "batch_size": 64, "nonfinite": "stop"}}
    for message in (rank["message"] for rank in _two_processes(NAN_ON_ONE_PROCESS_SCRIPT, tree)):  # process 0 saw finite terms itself, yet names the one process 1 found
        assert message is not None and "non-finite loss term 'student1/ce', 'student2/ce'" in message, message
        assert "epoch 1, step 2" in message


ERROR_ON_ONE_PROCESS_SCRIPT = textwrap.dedent('''
    """Under torchrun, process 1 alone fails while setting up; each process records how it ended."""
    import json, os, sys

    from peerdistill.build import make_trainer
    from peerdistill.config import validate
    from peerdistill.engine import distributed
    from peerdistill.errors import ConfigError

    distributed.abandon.__defaults__ = (2.0,)  # the wait for the others, 30 s by default
    tree = json.loads(sys.argv[1])
    trainer, data = make_trainer(validate(tree), progress=False)
    rank = int(os.environ["RANK"])
    if rank == 1:
        def failing():
            raise ConfigError("process 1 alone")
        trainer._probe = failing
    try:
        trainer.fit(data)
        ended = "finished"
    except Exception as exc:
        ended = f"{type(exc).__name__}: {exc}"
    with open(os.path.join(tree["out_dir"], f"rank{rank}.json"), "w") as fh:
        json.dump({"ended": ended}, fh)
    from peerdistill.engine.distributed import end_process
    end_process(0)  # the results are written; torch's DDP leaves gloo's threads to the exit
''')


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_an_error_on_a_process_other_than_the_first_ends_every_process(tmp_path):
    # The first process waits in a collective for the second, which left on its error: once,
    # the second waited for ever in gloo's monitored barrier, whose timeout only the first keeps.
    tree = {"name": "ddp", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml"},
            "students": [{"arch": "cnn", "args": {"width": 4}}, {"arch": "cnn", "args": {"width": 4}}],
            "train": {"epochs": 1, "batch_size": 64}}
    ended = [rank["ended"] for rank in _two_processes(ERROR_ON_ONE_PROCESS_SCRIPT, tree)]
    assert ended[1] == "ConfigError: process 1 alone" and ended[0] != "finished", ended


def test_a_last_training_batch_that_does_not_share_equally_is_refused():
    # 15 samples in one batch of 16: shares of 8 and 7 would weigh the samples unequally under DDP
    with pytest.raises(ConfigError, match=r"the training split's only batch \(15 samples: train.batch_size 16 is not "
                                          r"smaller than the split\) cannot be shared equally by 2 processes"):
        TensorBatches(numbered(15), 16, CPU, shuffle=True, generator=torch.Generator(), shard=(0, 2))
    TensorBatches(numbered(15), 16, CPU, shuffle=False, shard=(0, 2))  # evaluation gathers: any shares do
    TensorBatches(numbered(17), 8, CPU, shuffle=True, generator=torch.Generator(), drop_last=True, shard=(0, 2))


def test_a_split_smaller_than_the_number_of_processes_is_refused():
    with pytest.raises(ConfigError, match="cannot be shared by 4 processes"):
        TensorBatches(numbered(3), 8, CPU, shuffle=False, shard=(0, 4))


def test_a_dataloader_epoch_resumed_in_the_middle_draws_the_same_worker_seed():
    data = numbered(30)
    dataset = TensorDataset(data.x, data.y)
    generator = torch.Generator().manual_seed(4)
    batches = DatasetBatches(dataset, 6, CPU, shuffle=True, generator=generator, drop_last=True)
    start = generator.get_state()
    whole = [y.tolist() for _, y in batches.iterate()]
    seed = batches.loader_generator.initial_seed()
    generator.set_state(start)
    torch.manual_seed(123)  # the global RNG no longer matters
    assert [y.tolist() for _, y in batches.iterate(2)] == whole[2:]
    assert batches.loader_generator.initial_seed() == seed


MICRO_SYNC_SCRIPT = textwrap.dedent('''
    """Under torchrun, one training step in micro-batches: each DDP model's gradient buckets are
    all-reduced once (with the last part's backward), as in a step on the whole batch; each
    process's gradients after the step are saved."""
    import collections, json, os, sys

    import torch
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from peerdistill.build import make_trainer
    from peerdistill.config import validate

    tree = json.loads(sys.argv[1])
    out, grads = {}, {}
    for micro in (None, 12):
        tree["train"]["micro_batch_size"] = micro
        trainer, data = make_trainer(validate(tree), progress=False)
        trainer._setup(data)
        trainer.cohort.train()
        calls = collections.Counter()
        ddp = [r for r in list(trainer.runners.values()) + [r for _, r in trainer.groups] if hasattr(r, "no_sync")]
        for i, runner in enumerate(ddp):
            def counting(state, bucket, i=i):
                calls[f"{i}/{bucket.index()}"] += 1
                return allreduce_hook(None, bucket)
            runner.register_comm_hook(None, counting)
        x, y = next(iter(trainer.train_batches))
        trainer.step(x, y)
        out[str(micro)] = {"models": len(ddp), "calls": dict(calls)}
        grads[str(micro)] = torch.cat([p.grad.flatten() for r in ddp for p in r.parameters()])
    with open(os.path.join(tree["out_dir"], f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump(out, fh)
    torch.save(grads, os.path.join(tree["out_dir"], f"grads{os.environ['RANK']}.pt"))
    torch.distributed.barrier()
    from peerdistill.engine.distributed import end_process
    end_process(0)  # the results are written; torch's DDP leaves gloo's threads to the exit
''')


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_micro_batches_share_each_gradient_once_per_step(tmp_path):
    script = tmp_path / "micro_sync.py"
    script.write_text(MICRO_SYNC_SCRIPT)
    tree = {"name": "ms", "out_dir": str(tmp_path), "distill": {"preset": "kd+ml"},
            "teacher": {"arch": "cnn", "args": {"width": 8}},
            "students": [{"arch": "cnn", "args": {"width": 4}}, {"arch": "cnn", "args": {"width": 4}}],
            "train": {"epochs": 1, "batch_size": 64, "fuse_students": True}}  # 32 a process: parts of 12, 12, 8
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), json.dumps(tree)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(2):
        seen = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert seen["None"]["models"] == 2  # the teacher, and the packed students
        assert set(seen["None"]["calls"].values()) == {1}  # each bucket once in a step on the whole batch
        assert seen["12"] == seen["None"]
    # shared with the last part's backward, the whole step's gradients: each process steps alike
    grads = [torch.load(tmp_path / f"grads{rank}.pt", weights_only=True) for rank in range(2)]
    for micro in ("None", "12"):
        torch.testing.assert_close(grads[0][micro], grads[1][micro], rtol=1e-6, atol=1e-8)


COMPARE_SCRIPT = textwrap.dedent('''
    """A comparison under torchrun; each process records what it got back and the tables it wrote."""
    import json, os, sys

    import peerdistill.compare as compare_module

    written = []
    real = compare_module.atomic_write_text
    def counting(path, *args, **kwargs):
        written.append(os.path.basename(str(path)))
        return real(path, *args, **kwargs)
    compare_module.atomic_write_text = counting

    tree = json.loads(sys.argv[1])
    result = compare_module.compare(tree, ["independent", "kd"], 1, progress=False)
    with open(os.path.join(tree["out_dir"], f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump({"rows": result.rows, "written": written}, fh)
    from peerdistill.engine.distributed import end_process
    end_process(0)  # the results are written; torch's DDP leaves gloo's threads to the exit
''')


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_a_comparison_under_torchrun_trains_each_run_on_every_process_and_tabulates_once(tmp_path):
    tree = {"name": "c", "out_dir": str(tmp_path), "teacher": {"arch": "cnn", "args": {"width": 4, "depth": 1}},
            "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
            "train": {"epochs": 1, "batch_size": 128}, "distill": {"rampup_epochs": 0}}
    first, second = _two_processes(COMPARE_SCRIPT, tree)
    assert first["rows"] and second["rows"] == [] and second["written"] == []  # the first process's tables
    assert sorted(first["written"]) == ["compare.csv", "compare.md", "differences.csv"]
    folder = tmp_path / "c-compare"
    for run in ("independent-seed0", "kd-seed0"):
        meta = json.loads((folder / run / "run.json").read_text())
        assert (meta["status"], meta["processes"]) == ("complete", 2)
    trained = {run: (folder / run / "metrics.json").stat().st_mtime_ns for run in ("independent-seed0", "kd-seed0")}
    again, _ = _two_processes(COMPARE_SCRIPT, tree)  # the same command: every run reused, as the first decides
    assert again["rows"] == first["rows"]
    assert {run: (folder / run / "metrics.json").stat().st_mtime_ns for run in trained} == trained


UNUSED_SCRIPT = textwrap.dedent('''
    """A model with a parameter its forward leaves out, in DDP (a group of one process):
    found by unused_parameters, it trains with find_unused; without, DDP stops at step 2."""
    import sys, tempfile

    import torch
    import torch.distributed as dist
    from torch import nn

    from peerdistill.engine import distributed

    class Spare(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x):
            return {"logits": self.used(x)}

    dist.init_process_group("gloo", init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
    x = torch.randn(3, 4)
    model = Spare()
    model.used.weight.grad = torch.ones(2, 4)
    unused = distributed.unused_parameters(model, x)
    assert unused == ["spare.weight", "spare.bias"], unused
    assert model.training and torch.equal(model.used.weight.grad, torch.ones(2, 4)), "mode and gradients kept"
    for find in (True, False):
        ddp = distributed.wrap(Spare(), torch.device("cpu"), find_unused=find)
        try:
            for _ in range(3):
                ddp(x)["logits"].sum().backward()
            print(find, "trains")
        except RuntimeError as exc:
            print(find, "fails:", str(exc).splitlines()[0])
''')


def test_a_parameter_the_forward_leaves_out_is_found_and_ddp_told(tmp_path):
    script = tmp_path / "unused.py"
    script.write_text(UNUSED_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if not line.startswith("[Gloo]")]  # (torch 2.8's notes)
    assert lines[0] == "True trains" and lines[1].startswith("False fails: Expected to have finished reduction")


def test_batchnorm_on_one_value_per_channel_is_named_and_a_resume_on_processes_that_split_the_batch_unequally_is_refused(
        monkeypatch):
    """A BatchNorm1d on one sample (a batch of 1, or a process's share of 1) stops with what to
    change; a BatchNorm2d over a map trains on one sample, so only the failure is named."""
    from peerdistill import DataSplits, KnowledgeGraph, TrainSpec
    from peerdistill.engine import distributed
    from peerdistill.engine.distributed import World

    part = TensorData(torch.randn(20, 4), torch.arange(20) % 4)
    data = DataSplits(part, part, part, num_classes=4, class_names=list("abcd"), input_shape=(4,))
    net = lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 4))  # noqa: E731
    trainer = Trainer(Cohort.from_modules([net(), net()]), KnowledgeGraph([]), ClassificationTask(4), progress=False,
                      device="cpu", train=TrainSpec(epochs=1, batch_size=1))
    with pytest.raises(ConfigError, match=r"model 'student1' has a BatchNorm layer that got one value per channel in "
                                          r"training \(1 sample\(s\) in this batch.*use a larger train.batch_size"):
        trainer.fit(data)
    # a resume on processes that cannot share the run's batch: its batch cannot change, the processes can
    monkeypatch.setattr(distributed, "join", lambda device: World(rank=0, size=3, joined=True))
    monkeypatch.setattr(distributed, "check_same_run", lambda world, what: None)  # (no real group to ask)
    trainer.train_spec = TrainSpec(epochs=1, batch_size=64)
    with pytest.raises(ConfigError, match=r"global batch is 64 samples, which 3 processes cannot share equally: resume "
                                          r"it on a number of processes that divides 64 \(1, 2, 4, 8, 16, 32, ...\)") as refused:
        trainer._setup(data, resume=True)
    assert refused.value.said_alike == str(refused.value)  # every process finds it: said once per node


@pytest.mark.parametrize("argv", [["eval", "runs/x", "--json"], ["export", "runs/x"], ["report", "runs/x"],
                                  ["predict", "runs/x", "a.png", "--out", "p.csv"]])
def test_commands_that_do_not_train_refuse_several_processes(argv, monkeypatch, capsys):
    from peerdistill.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")  # alone, not a launcher's (it sets RANK too): the command runs
    assert main(argv) == 2
    assert "torchrun" not in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 2
    assert f"{argv[0]} runs in one process, not in the 2 torchrun started" in " ".join(capsys.readouterr().err.split())
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: the command runs (here: no such run)
    assert main(argv) == 2
    assert "torchrun" not in capsys.readouterr().err


# What the scripts below share: two students of a class learning from each other (ml) on 60 tiny
# samples of 3 classes, built in that order after seeding.
ML_PAIR_PRELUDE = textwrap.dedent('''
    import json, os, sys

    import torch
    import torch.distributed as dist
    from torch import nn

    from peerdistill import ClassificationTask, Cohort, DataSplits, KnowledgeGraph, TrainSpec, Trainer, preset_edges


    def ml_pair(student, run_dir=None, **train):
        torch.manual_seed(0)
        x, y = torch.randn(60, 4), torch.arange(60) % 3
        data = DataSplits.from_arrays(x[:36], y[:36], x[36:48], y[36:48], x[48:], y[48:])
        trainer = Trainer(Cohort.from_modules([student(), student()]),
                          KnowledgeGraph(preset_edges("ml", None, ["student1", "student2"])), ClassificationTask(3),
                          progress=False, device="cpu", run_dir=run_dir, train=TrainSpec(epochs=1, **train))
        return trainer, data
''')


def _in_a_group_of_one(tmp_path, script: str, *args: str) -> str:
    """``script`` run as torchrun --nproc-per-node 1 would run it (DDP in a group of one process):
    its last line of output."""
    import socket

    path = tmp_path / "script.py"
    path.write_text(script)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()[-1]


# A cohort whose students return an auxiliary output the losses do not read, trained under DDP:
# the trainer declares the auxiliary head's parameters to DDP, so training gets past its second step.
TRAINER_UNUSED_SCRIPT = ML_PAIR_PRELUDE + textwrap.dedent('''
    class WithAux(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head, self.aux = nn.Linear(4, 8), nn.Linear(8, 3), nn.Linear(8, 3)

        def forward(self, x):
            h = self.body(x).relu()
            return self.head(h), self.aux(h)  # the first item is the logits

    trainer, data = ml_pair(WithAux, batch_size=12)
    trainer.fit(data)
    print(json.dumps(trainer.run_info.get("ddp_unused_parameters")))
''')


def test_the_trainer_declares_an_auxiliary_head_the_losses_do_not_read_to_ddp(tmp_path):
    said = _in_a_group_of_one(tmp_path, TRAINER_UNUSED_SCRIPT)
    assert json.loads(said) == {s: ["aux.weight", "aux.bias"] for s in ("student1", "student2")}


# Students that skip a block on every third forward in training (as LayerDrop does at random): no
# backward before training can see it, and DDP stops at the step after a skip unless
# train.find_unused_parameters is true.
SKIPPING_SCRIPT = ML_PAIR_PRELUDE + textwrap.dedent('''
    class SkipsABlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.extra, self.head, self.calls = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3), 0

        def forward(self, x):
            self.calls += 1
            h = self.body(x).relu()
            skip = self.training and self.calls % 3 == 0
            return self.head(h if skip else self.extra(h).relu())

    trainer, data = ml_pair(SkipsABlock, batch_size=6, find_unused_parameters=sys.argv[1] == "true" or "auto")
    try:
        trainer.fit(data)
        print("trains", trainer.run_info.get("ddp_find_unused_parameters"))
    except Exception as exc:
        print("fails:", str(exc).splitlines()[0])
''')


def test_find_unused_parameters_lets_models_that_skip_layers_at_random_train_under_ddp(tmp_path):
    said = {setting: _in_a_group_of_one(tmp_path, SKIPPING_SCRIPT, setting) for setting in ("auto", "true")}
    assert said["auto"] == ("fails: model 'student1' left trained parameters without a gradient in the previous step "
                            "under torchrun (a layer it skips in training, at random as LayerDrop or by a condition): "
                            "set train.find_unused_parameters: true in the config (for a run that kept a checkpoint, "
                            "in its config.yaml, then --resume)")
    assert said["true"] == "trains every trained model (train.find_unused_parameters)"


# Two processes whose students skip a block in training on rank 0 only: rank 1's probe sees the
# block used, rank 0's unused; what either finds must count on both (DDP set up otherwise on each
# stops with a collective mismatch).
RANK_SKIPS_SCRIPT = ML_PAIR_PRELUDE + textwrap.dedent('''
    class RankSkips(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.extra, self.head = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)

        def forward(self, x):
            h = self.body(x).relu()
            skip = self.training and dist.is_initialized() and dist.get_rank() == 0
            return self.head(h if skip else self.extra(h).relu())

    tree = json.loads(sys.argv[1])
    trainer, data = ml_pair(RankSkips, run_dir=tree["out_dir"] + "/run", batch_size=6)
    trainer.fit(data)
    with open(os.path.join(tree["out_dir"], f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump(trainer.run_info.get("ddp_unused_parameters"), f)
    from peerdistill.engine.distributed import end_process
    end_process(0)  # the results are written; torch's DDP leaves gloo's threads to the exit (a SIGABRT seen here)
''')


def test_parameters_one_process_finds_unused_count_on_every_process(tmp_path):
    found = _two_processes(RANK_SKIPS_SCRIPT, {"out_dir": str(tmp_path)})
    assert found == [{s: ["extra.weight", "extra.bias"] for s in ("student1", "student2")}] * 2


def test_unused_parameters_are_those_the_read_outputs_do_not_depend_on():
    """The logits and a self-distilled network's head logits are read; an extra tuple item is not."""
    from peerdistill.engine.distributed import unused_parameters
    from peerdistill.models import build_model
    from peerdistill.models.heads import HeadedModel

    headed = HeadedModel(build_model("cnn", {"width": 4, "depth": 3}, 1, 3), ["features.2"], "features", 3,
                         torch.zeros(2, 1, 8, 8))
    assert unused_parameters(headed, torch.randn(2, 1, 8, 8)) == []

    class Aux(nn.Module):
        def __init__(self):
            super().__init__()
            self.head, self.aux = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            return self.head(x), self.aux(x)

    assert unused_parameters(Aux(), torch.randn(2, 4)) == ["aux.weight", "aux.bias"]


def two_nodes(tmp_path, node_args: list[list[str]], timeout: int = 240) -> list[subprocess.CompletedProcess]:
    """``peerdistill train`` as two torchrun nodes of one process each on this machine (static
    rendezvous), each node in a folder of its own (no shared disk); ``node_args`` per node."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    procs = []
    for rank, args in enumerate(node_args):
        folder = tmp_path / f"node{rank}"
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp_path / f"node{rank}.log", "w") as log:  # (a file: a full pipe would block the node)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                 "--node-rank", str(rank), "--master-addr", "localhost", "--master-port", str(port), "-m",
                 "peerdistill", "train", *args], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        return [subprocess.CompletedProcess(p.args, p.wait(timeout=timeout),
                                            (tmp_path / f"node{rank}.log").read_text()) for rank, p in enumerate(procs)]
    finally:  # (a hang fails the test without leaving processes behind)
        for p in procs:
            p.kill()


def test_nodes_stop_together_when_one_stops_before_training_or_runs_another_config(tmp_path):
    """A node whose data file is missing used to leave the other waiting for 30 minutes in
    init_process_group; nodes given different configs hung, crashed inside gloo or trained on
    different data orders without a word."""
    import numpy as np

    (tmp_path / "missing" / "node0").mkdir(parents=True)  # node 1 lacks its copy of the data
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "missing" / "node0" / "d.npz", **{
        f"{split}_{key}": rng.random((16, 8, 8), dtype=np.float32) if key == "images" else np.arange(16) % 2
        for split in ("train", "val", "test") for key in ("images", "labels")})
    missing = two_nodes(tmp_path / "missing", [["train.epochs=1", "name=m", "data.kind=npz", "data.root=d.npz"]] * 2)
    assert [p.returncode for p in missing] == [1, 1], [p.stdout[-2000:] for p in missing]
    assert "error: data file 'd.npz' does not exist" in missing[1].stdout
    assert "error: process 1 (on " in missing[0].stdout
    assert "stopped before training: data file 'd.npz' does not exist" in missing[0].stdout
    seeds = two_nodes(tmp_path / "seeds", [["train.epochs=1", "name=s", f"seed={seed}"] for seed in (0, 1)])
    assert [p.returncode for p in seeds] == [1, 1], [p.stdout[-2000:] for p in seeds]
    for node in seeds:
        assert ("error: the processes were given different runs: config.seed: 0 on the main process, 1 on process 1 "
                f"(on {socket.gethostname()})" in node.stdout)
    assert not (tmp_path / "seeds" / "node0" / "runs" / "s" / "run.json").exists()
    # review 54g: each node's copy of a frozen teacher's file held other weights, and both trained on
    from safetensors.torch import save_file

    for rank in (0, 1):
        torch.manual_seed(rank)
        (tmp_path / "frozen" / f"node{rank}").mkdir(parents=True)
        save_file(SmallCNN(width=4, depth=3).state_dict(), tmp_path / "frozen" / f"node{rank}" / "t.safetensors")
    frozen = two_nodes(tmp_path / "frozen", [["train.epochs=1", "name=f", "teacher.args.width=4", "teacher.frozen=true",
                                              "teacher.checkpoint=t.safetensors"]] * 2)
    assert [p.returncode for p in frozen] == [1, 1], [p.stdout[-2000:] for p in frozen]
    for node in frozen:
        assert "error: the processes were given different runs: frozen weights (a digest).teacher: " in node.stdout


def test_a_launchers_variables_set_wrongly_are_one_message_and_other_ranks_defer_to_the_main_one(monkeypatch,
                                                                                               tmp_path, capsys):
    import argparse

    from peerdistill.cli import main
    from peerdistill.cli.running import _interrupted_hint
    from peerdistill.engine import distributed

    for env, said in (({"WORLD_SIZE": "two", "RANK": "0"}, "variable WORLD_SIZE is 'two', not a whole number"),
                      ({"WORLD_SIZE": "", "RANK": ""}, "variable RANK is '', not a whole number"),
                      ({"WORLD_SIZE": "1", "RANK": "1"}, "RANK 1 is not below WORLD_SIZE 1")):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert main(["train", "--resume", str(tmp_path)]) == 2
        assert said in " ".join(capsys.readouterr().err.split())
    from peerdistill.launcher import launched_rank, launched_world

    # RANK without WORLD_SIZE is no launcher's (another tool's variable): this process is the main one
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("RANK", "3")
    assert launched_rank() == 0
    for key, value in {"WORLD_SIZE": " 4", "RANK": "3 ", "LOCAL_RANK": "1"}.items():  # spaces, as a script may write
        monkeypatch.setenv(key, value)
    assert launched_world() == (3, 4, 1) and launched_rank() == 3
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="RANK and WORLD_SIZE are set .* but not MASTER_ADDR and MASTER_PORT"):
        distributed.join(torch.device("cpu"))
    # a node whose disk lacks the run is told what it needs (review 54g)
    assert main(["train", "--resume", str(tmp_path / "gone")]) == 2
    assert (f"cannot resume '{tmp_path / 'gone'}': no such folder (give the run's folder, OUT_DIR/NAME); under torchrun "
            "every node reads the run's config.yaml: copy it from the main process's node to this path"
            in " ".join(capsys.readouterr().err.split()))
    (tmp_path / "checkpoints").mkdir()
    ns = argparse.Namespace(command="train", run_dir=tmp_path, overwrite=False)
    assert "nothing to resume" in _interrupted_hint(ns)  # the main process judges by its disk
    monkeypatch.setenv("RANK", "1")  # another's disk need not hold the run
    assert _interrupted_hint(ns) == (
        "interrupted: the main process (rank 0) says what its run keeps and how to continue; if it said nothing (it "
        f"was lost), continue with torchrun ... -m peerdistill train --resume {tmp_path} on every node if the run kept "
        "a checkpoint")  # (review 56c: a main process killed first says nothing)
    # stopped before its run was set up (torchrun ends the others when one fails): no bare 'interrupted' (review 56c)
    assert _interrupted_hint(argparse.Namespace(command="train", run_dir=None, overwrite=False)) == (
        "interrupted before the run was set up (under torchrun a process that fails ends the others: if you did not "
        "stop it, a message above says why)")
    compare = argparse.Namespace(command="compare", overwrite=False)  # said once, by the main process (review 46h)
    assert _interrupted_hint(compare) == ("interrupted: the main process (rank 0) says what the comparison keeps and "
                                          "how to continue")
    # a process interrupted before it imported the engine never joined a group: told without importing torch's
    # parts again (a half-imported torch failed there, a traceback from each process: review 46h)
    import sys

    from peerdistill.cli.running import _trained_under_torchrun

    monkeypatch.delitem(sys.modules, "peerdistill.engine.distributed")
    assert _trained_under_torchrun() is False and "peerdistill.engine.distributed" not in sys.modules


def test_nodes_may_keep_their_copies_of_data_teachers_and_runs_at_other_paths():
    from peerdistill import DataSplits, KnowledgeGraph

    part = TensorData(torch.randn(8, 4), torch.arange(8) % 2)
    data = DataSplits(part, part, part, num_classes=2, class_names=["a", "b"], input_shape=(4,))
    trainer = Trainer(Cohort.from_modules([nn.Linear(4, 2)]), KnowledgeGraph([]), ClassificationTask(2),
                      progress=False, device="cpu")
    seen = []
    for root, out, checkpoint, epochs in (("/a/d.npz", "runs", "/a/t", 3), ("/b/d.npz", "/b/runs", "/b/t", 3),
                                          ("/a/d.npz", "runs", "/a/t", 4)):
        trainer.config_yaml = (f"data: {{kind: npz, root: {root}}}\nout_dir: {out}\n"
                               f"teacher: {{arch: cnn, checkpoint: {checkpoint}}}\ntrain: {{epochs: {epochs}}}\n"
                               f"students: [{{arch: cnn, checkpoint: {checkpoint}s}}]\n")
        seen.append(trainer._what_is_run(data))
    assert seen[0] == seen[1] and seen[0] != seen[2]


def test_processes_meet_in_torchruns_store_before_joining_and_stop_on_a_failure_or_a_deadline(monkeypatch):
    """As torchrun's agent holds it: a store there before any process starts. A process that
    fails says so there; one that never comes is waited for until the deadline."""
    from datetime import timedelta

    import torch.distributed as dist

    from peerdistill.engine import distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = dist.TCPStore("127.0.0.1", port, is_master=True, timeout=timedelta(seconds=10))
    for key, value in {"TORCHELASTIC_USE_AGENT_STORE": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "TORCHELASTIC_RUN_ID": "t", "WORLD_SIZE": "2", "RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=r"process\(es\) \[1\] did not come to train within 1 s"):
        distributed._wait_for_every_process(2, deadline_s=1)
    monkeypatch.setattr(distributed, "_JOINS", [1])  # a meeting of its own
    monkeypatch.setenv("RANK", "1")
    distributed.tell_failure("data file 'd.npz' does not exist")  # said by process 1
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match=r"process 1 \(on .*\) stopped before training: data file 'd.npz' does not "
                                          "exist -- so this one stops too"):
        distributed._wait_for_every_process(2, deadline_s=60)
    assert agent.add("peerdistill/t/0/join0/arrived", 0) == 1  # the first meeting: process 0 alone came


def test_a_process_whose_nodes_first_process_printed_the_same_message_leaves_it_to_say(monkeypatch):
    """The processes of a node share its terminal: a config error every process reads alike is
    said once there, by the node's first process, which marks it said once printed; a message of
    another's own is said by it."""
    from datetime import timedelta

    import torch.distributed as dist

    from peerdistill.engine import distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = dist.TCPStore("127.0.0.1", port, is_master=True, timeout=timedelta(seconds=10))  # torchrun's, held open
    for key, value in {"TORCHELASTIC_USE_AGENT_STORE": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "TORCHELASTIC_RUN_ID": "t", "WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    assert not distributed.said_by_first_on_node("bad epochs", wait_s=0.2)  # the first (rank 2) has said nothing
    distributed.mark_said("bad epochs")  # (only a first process marks)
    assert not agent.check(["peerdistill/t/0/join0/said/3"])
    assert not distributed.said_by_first_on_node("bad epochs", wait_s=0.2)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    distributed.tell_failure("bad epochs")  # told, not yet printed
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not distributed.said_by_first_on_node("bad epochs", wait_s=0.2)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not distributed.said_by_first_on_node("bad epochs")  # the first says its own
    distributed.mark_said("bad epochs")
    assert not distributed.said_by_first_on_node("bad epochs", wait_s=0.2)  # its mark is for the others
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.said_by_first_on_node("bad epochs")
    assert not distributed.said_by_first_on_node("data file 'd.npz' does not exist")
    assert agent.get("peerdistill/t/0/join0/said/2") == b"bad epochs"


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_an_error_every_process_stops_with_under_torchrun_is_said_once(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                           "peerdistill", "train", "train.epochs=-1", f"out_dir={tmp_path}"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert said.count("'train.epochs': Input should be greater than 0 (got -1)") == 1, said[-3000:]
    # the main process's verdict on its run directory, which the other process's copy adds to
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "notes.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                           "peerdistill", "train", "train.epochs=1", "name=taken", f"out_dir={tmp_path / 'runs'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and said.count("error: ") == 1, said[-3000:]
    assert "(found by the main process" not in said  # the main process's own words
    assert (tmp_path / "runs" / "taken" / "notes.txt").read_text() == "mine"


NAN_THROUGH_THE_CLI_SCRIPT = textwrap.dedent('''
    """peerdistill train under torchrun, with a NaN pixel in process 1's second batch."""
    import os, sys

    from peerdistill import build
    from peerdistill.cli import run_and_exit

    made = build.make_trainer
    def poisoned_trainer(*args, **kwargs):
        trainer, data = made(*args, **kwargs)
        augment, batches = trainer.task.augment, []
        def poisoned(x, y, generator):
            x, y = augment(x, y, generator)
            batches.append(1)
            if os.environ["RANK"] == "1" and len(batches) == 2:
                x = x.clone()
                x[0] = float("nan")
            return x, y
        trainer.task.augment = poisoned
        return trainer, data
    build.make_trainer = poisoned_trainer
    run_and_exit(sys.argv[1:])
''')


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_a_non_finite_step_every_process_stops_at_is_said_once_per_node(tmp_path):
    (tmp_path / "nan.py").write_text(NAN_THROUGH_THE_CLI_SCRIPT)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(tmp_path / "nan.py"), "train", "name=nan", f"out_dir={tmp_path}", "train.epochs=1",
                           "train.batch_size=64", "train.nonfinite=stop", "--quiet"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and said.count("error: non-finite loss term 'teacher/ce'") == 1, said[-3000:]
    assert said.count("error: ") == 1, said[-3000:]


END_PROCESS_SCRIPT = textwrap.dedent('''
    import atexit, sys, threading, time

    from peerdistill.engine.distributed import end_process

    atexit.register(lambda: open(sys.argv[1], "w").write("atexit ran"))
    # Not a daemon, as gloo's threads are not to Python: a normal exit would wait for it.
    threading.Thread(target=time.sleep, args=(120,)).start()
    sys.stdout.write("still buffered")
    end_process(3)
''')


def test_end_process_flushes_output_runs_atexit_and_does_not_wait_for_the_teardown(tmp_path):
    script, marker = tmp_path / "end.py", tmp_path / "atexit.txt"
    script.write_text(END_PROCESS_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(marker)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (3, "still buffered"), proc.stderr
    assert marker.read_text() == "atexit ran"


@pytest.mark.parametrize("joined", [True, False])
def test_the_command_ends_at_once_only_after_joining_a_process_group(monkeypatch, capsys, joined):
    """Under torchrun, after training in a group (DDP on gloo leaves its threads to the exit),
    the command ends through end_process with main's code; otherwise by a normal exit."""
    import peerdistill.cli as cli
    from peerdistill.engine import distributed

    class Ended(Exception):
        pass

    def ended(code):
        raise Ended(code)

    monkeypatch.setattr(cli.running, "main", lambda argv=None, exiting=False: 5)
    monkeypatch.setattr(cli.running, "launched", lambda: True)
    monkeypatch.setattr(distributed, "joined_before", lambda: joined)
    monkeypatch.setattr(distributed, "end_process", ended)
    with pytest.raises(Ended if joined else SystemExit) as caught:
        cli.run_and_exit([])
    assert (caught.value.args[0] if joined else caught.value.code) == 5

    def bug(argv=None, exiting=False):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli.running, "main", bug)  # an error no handler knows: its traceback, then the same ending
    with pytest.raises(Ended if joined else RuntimeError) as caught:
        cli.run_and_exit([])
    if joined:
        assert caught.value.args[0] == 1 and "RuntimeError: a bug" in capsys.readouterr().err


def test_make_batches_drops_the_last_partial_batch_when_asked_in_memory_or_not():
    """10 samples in batches of 4 with drop_last: floor(10 / 4) = 2 full batches, for a split
    held in memory and for any other dataset; without it the last batch holds 2."""
    from peerdistill.data.loaders import make_batches

    data = numbered(10)
    for dataset in (data, TensorDataset(data.x, data.y)):
        for drop_last, sizes in ((True, [4, 4]), (False, [4, 4, 2])):
            batches = make_batches(dataset, 4, CPU, shuffle=True, generator=torch.Generator().manual_seed(0),
                                   drop_last=drop_last)
            assert [len(y) for _, y in batches.iterate()] == sizes, (type(dataset).__name__, drop_last)


def test_the_dataloaders_worker_seed_follows_the_runs_generator():
    """Each epoch reseeds the loader's generator (its workers' base seed) with a number the run's
    generator draws after the epoch's order, so runs of other seeds give their workers other
    seeds (a dataset with random transforms in workers draws differently per run seed)."""
    data = numbered(12)
    seeds = []
    for run_seed in (0, 1):
        batches = DatasetBatches(TensorDataset(data.x, data.y), 4, CPU, shuffle=True,
                                 generator=torch.Generator().manual_seed(run_seed), drop_last=True)
        list(batches.iterate())
        copy = torch.Generator().manual_seed(run_seed)
        torch.randperm(12, generator=copy)  # the epoch's order
        assert batches.loader_generator.initial_seed() == int(torch.randint(2**62, (1,), generator=copy))
        seeds.append(batches.loader_generator.initial_seed())
    assert seeds[0] != seeds[1]


def test_in_order_batches_continue_at_the_batch_asked_for():
    batches = TensorBatches(numbered(10), 4, CPU, shuffle=False)
    assert [y.tolist() for _, y in batches.iterate(1)] == [[4, 5, 6, 7], [8, 9]]


COLLECTIVES_SCRIPT = textwrap.dedent('''
    """The collective helpers on two processes of gloo, each given values of its own rank;
    each process records what it got back."""
    import json, os, sys

    import torch
    from torch import nn

    from peerdistill.engine import distributed
    from peerdistill.errors import ConfigError

    out = json.loads(sys.argv[1])["out_dir"]
    world = distributed.join(torch.device("cpu"))
    rank, got = world.rank, {}
    got["is_main"] = world.is_main
    got["all_true_each"] = distributed.all_true_each(world, torch.tensor([True, rank == 0, False]))
    got["all_true"] = [distributed.all_true(world, True, torch.device("cpu")),
                       distributed.all_true(world, rank == 1, torch.device("cpu"))]
    got["gathered"] = distributed.gather_objects(world, {"rank": rank})
    got["from_main"] = distributed.from_main(world, f"rank {rank}")
    got["shared"] = distributed.on_main(world, lambda: f"made on rank {rank}")
    got["kept"] = distributed.on_main(world, lambda: f"made on rank {rank}", share=False)
    for kind, error in (("library", ConfigError("bad run directory")), ("other", OSError("disk full"))):
        def fail():
            raise error
        try:
            distributed.on_main(world, fail)
            got[kind] = None
        except Exception as exc:  # noqa: BLE001
            got[kind] = [type(exc).__name__, str(exc), getattr(exc, "said_alike", None)]
    mean = distributed.mean_over_processes(world, {"a": torch.tensor(1.0 + 2 * rank), "b": torch.tensor(10.0 * rank)})
    got["mean"] = {k: float(v) for k, v in mean.items()}
    got["mean_of_none"] = distributed.mean_over_processes(world, {})
    linear = nn.Linear(2, 1)
    for p in linear.parameters():
        p.grad = torch.full_like(p, rank + 1.0)
    distributed.average_gradients(world, linear.parameters())
    got["grads"] = [p.grad.flatten().tolist() for p in linear.parameters()]
    norm = nn.BatchNorm1d(2)
    with torch.no_grad():
        norm.weight.fill_(rank + 1.0)
        norm.running_mean.fill_(rank + 5.0)
    distributed.broadcast_state(world, norm, parameters=False)  # the main's statistics only
    got["buffers_only"] = [norm.weight.tolist(), norm.running_mean.tolist()]
    distributed.broadcast_state(world, norm)
    got["everything"] = [norm.weight.tolist(), norm.running_mean.tolist()]
    try:
        distributed.check_same_run(world, {"seed": rank})
        got["same_run"] = None
    except ConfigError as exc:
        got["same_run"] = str(exc)
    distributed.check_same_run(world, {"seed": 0})  # the same on both: nothing said
    model = distributed.wrap(nn.Linear(1, 1, bias=False), torch.device("cpu"))
    x = torch.full((1, 1), rank + 1.0)
    with distributed.gradients_kept_local([model]):
        model(x).sum().backward()  # this process's own gradient, kept here
    got["kept_local"] = model.module.weight.grad.item()
    model(x).sum().backward()  # the local sum above and this one, averaged over the processes
    got["shared_grad"] = model.module.weight.grad.item()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump(got, fh)
    distributed.leave(world)
    distributed.end_process(0)  # (DDP on gloo leaves its threads to the exit)
''')


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over localhost is tested on POSIX")
def test_the_collective_helpers_combine_every_processs_values_as_documented(tmp_path):
    """Each helper, on two processes whose values are their rank's, against the values worked
    out by hand: means over processes (not one share), element-wise agreement, rank order, the
    main process's values and errors on every process, buffers sent with or without weights."""
    first, second = _two_processes(COLLECTIVES_SCRIPT, {"out_dir": str(tmp_path)})
    assert (first["is_main"], second["is_main"]) == (True, False)
    for rank, got in enumerate((first, second)):
        assert got["all_true_each"] == [True, False, False]
        assert got["all_true"] == [True, False]
        assert got["gathered"] == [{"rank": 0}, {"rank": 1}]
        assert got["from_main"] == "rank 0"
        assert got["shared"] == "made on rank 0"
        assert got["kept"] == ("made on rank 0" if rank == 0 else None)
        assert got["mean"] == {"a": 2.0, "b": 5.0}  # (1 + 3) / 2 and (0 + 10) / 2
        assert got["mean_of_none"] == {}
        assert got["grads"] == [[1.5, 1.5], [1.5]]  # (1 + 2) / 2
        assert got["buffers_only"] == [[rank + 1.0] * 2, [5.0, 5.0]]  # its own weights, the main's statistics
        assert got["everything"] == [[1.0, 1.0], [5.0, 5.0]]
        assert "seed: 0 on the main process, 1 on process 1" in got["same_run"]
        assert got["kept_local"] == rank + 1.0  # d(w * x) / dw = x, not shared
        assert got["shared_grad"] == pytest.approx(3.0)  # ((1 + 1) + (2 + 2)) / 2
    assert first["library"] == ["ConfigError", "bad run directory", None]  # the main process's own error
    kind, message, said_alike = second["library"]
    assert kind == "ConfigError" and message.startswith("bad run directory (found by the main process, on ")
    assert said_alike == "bad run directory"
    assert first["other"] == ["OSError", "disk full", None]
    assert second["other"][0] == "RuntimeError" and "failed: OSError: disk full" in second["other"][1]


def test_step_seeds_differ_by_process_epoch_and_step_and_depend_on_nothing_else():
    """Each process draws its own augmentations (a seed per rank), every step anew, and a resumed
    run recomputes the same seeds from the position alone."""
    from peerdistill.engine.distributed import step_seed

    positions = [(seed, epoch, step, rank) for seed in (0, 1) for epoch in range(3) for step in range(4)
                 for rank in range(3)]
    seeds = [step_seed(*p) for p in positions]
    assert len(set(seeds)) == len(positions)
    assert all(0 <= s < 2**63 for s in seeds) and seeds == [step_seed(*p) for p in positions]


def test_each_process_drives_the_gpu_of_its_local_rank_and_one_without_a_gpu_is_refused(monkeypatch):
    from peerdistill.engine import distributed

    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.process_device(torch.device("cuda")) == torch.device("cuda")  # not launched: as given
    for key, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    assert distributed.process_device(torch.device("cuda")) == torch.device("cuda", 1) and chosen == [1]
    assert distributed.process_device(CPU) == CPU
    monkeypatch.setenv("LOCAL_RANK", "2")  # a third process on a node of two GPUs
    with pytest.raises(ConfigError, match="local rank 2 has no GPU: this node has 2"):
        distributed.process_device(torch.device("cuda"))


def test_finding_unused_parameters_leaves_the_models_gradients_and_mode_as_they_were():
    from peerdistill.engine.distributed import unused_parameters

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    model.train()
    model(torch.randn(8, 4)).sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    statistics = model[1].running_mean.clone()
    assert unused_parameters(model, torch.randn(8, 4)) == []
    assert model.training
    assert all(torch.equal(p.grad, grads[k]) for k, p in model.named_parameters())
    assert torch.equal(model[1].running_mean, statistics)  # BatchNorm's statistics untouched, in either mode
    assert model[1].num_batches_tracked.item() == 1


def test_parameters_used_in_one_mode_only_are_found_and_the_random_state_kept():
    """A BatchNorm applied to the logits at evaluation alone (its parameters get no gradient in
    training: DDP stopped at step 2 with torch's own error), and a block used in training alone:
    each found by the backward of the mode that leaves it out. The random state is as before
    (dropout in the training-mode forward draws nothing the run would miss)."""
    from peerdistill.engine.distributed import unused_parameters

    class EvalBatchNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.eval_bn = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)), nn.BatchNorm1d(3)

        def forward(self, x):
            z = self.body(x)
            return z if self.training else self.eval_bn(z)

    class TrainOnlyBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.head, self.extra = nn.Linear(4, 3), nn.Linear(4, 4)

        def forward(self, x):
            return self.head(self.extra(x) if self.training else x)

    torch.manual_seed(0)
    evaluated, x = EvalBatchNorm(), torch.randn(4, 4)
    state = torch.get_rng_state()
    assert unused_parameters(evaluated, x) == ["eval_bn.weight", "eval_bn.bias"]
    assert torch.equal(torch.get_rng_state(), state)
    assert unused_parameters(TrainOnlyBlock(), torch.randn(4, 4)) == ["extra.weight", "extra.bias"]


def test_joining_takes_nccl_on_the_gpu_and_gloo_on_the_cpu_and_starts_a_group_only_once(monkeypatch):
    """What join asks torch for (torch's group faked: no second process here): the backend for the
    device, and a group started only when none is, which the process then owns and remembers."""
    import torch.distributed as dist

    from peerdistill.engine import distributed

    started = []
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)  # a hand-made launch: no agent's store
    monkeypatch.setattr(distributed, "_JOINS", [0])
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(started))
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: started.append(kwargs))
    monkeypatch.setattr(dist, "broadcast_object_list", lambda objects, src: None)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_backend", lambda: started[0]["backend"])
    assert not distributed.joined_before()
    world = distributed.join(torch.device("cuda", 0))
    assert started == [{"backend": "nccl", "device_id": torch.device("cuda", 0)}]
    assert (world.owns_group, world.distributed, world.backend, world.size) == (True, True, "nccl", 2)
    assert distributed.joined_before()
    again = distributed.join(torch.device("cuda", 0))  # a group already there (a comparison's next run)
    assert len(started) == 1 and not again.owns_group and again.distributed
    started.clear()
    assert distributed.join(CPU).backend == "gloo" and started == [{"backend": "gloo", "device_id": None}]


def test_a_split_too_small_to_share_is_named(tiny_data):
    """Review 49c: 'a split of 1 samples' left the user to guess which split it was."""
    from peerdistill import Cohort, KnowledgeGraph, Trainer, TrainSpec
    from peerdistill.data import DataSplits
    from peerdistill.engine.distributed import World
    from peerdistill.models import SmallCNN
    from peerdistill.tasks import ClassificationTask

    t = Trainer(Cohort.from_modules([SmallCNN(1, 3, 4, 1)]), KnowledgeGraph([]), ClassificationTask(3), device="cpu",
                progress=False, train=TrainSpec(epochs=1, batch_size=8))
    t.world = World(rank=0, size=2, joined=True)
    small = DataSplits.from_arrays(tiny_data.train.x, tiny_data.train.y, tiny_data.val.x[:1], tiny_data.val.y[:1],
                                   tiny_data.test.x, tiny_data.test.y)
    with pytest.raises(ConfigError, match=r"the val split's 1 sample cannot be shared by 2 processes: every process "
                                          r"needs at least one") as refused:
        t._check_splits(small, resume=False)
    assert refused.value.said_alike == str(refused.value)


@pytest.mark.skipif(sys.platform == "win32", reason="signals to torchrun are tested on POSIX")
def test_a_schedulers_sigterm_to_torchrun_stops_the_run_marked_stopped_and_it_resumes(tmp_path):
    """Review 50a: under torchrun SIGTERM had no handler, so a scheduler's stop ended the processes
    through torch's traceback, run.json still said running, and no hint said how to go on. Now
    the launcher passes SIGTERM on and every process stops as on Ctrl-C; --resume finishes it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
                "peerdistill", "train"]
    run = tmp_path / "r"
    launcher = subprocess.Popen([*torchrun, f"out_dir={tmp_path}", "name=r", "train.epochs=8", "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not (run / "checkpoints" / "last.pt").is_file() and launcher.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert launcher.poll() is None, launcher.communicate()[1][-3000:]
    began = time.monotonic()
    launcher.send_signal(signal.SIGTERM)  # as Slurm or Kubernetes stop a job
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0 and time.monotonic() - began < 25, err[-3000:]
    said = " ".join(err.split())
    assert f"interrupted: the run keeps its last checkpoint; continue with torchrun ... -m peerdistill train --resume {run}" \
        in said, err[-3000:]
    assert json.loads((run / "run.json").read_text())["status"] == "stopped"
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    resumed = subprocess.run([*torchrun, "--resume", str(run), "--quiet"], capture_output=True, text=True,
                             timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert len(json.loads((run / "metrics.json").read_text())["epochs"]) == 8


def test_torchs_error_for_a_process_gone_is_said_as_a_lost_contact_with_what_to_do():
    """Review 54g: a node killed left the other with a raw gloo traceback (after 30 s of silence)."""
    from peerdistill.engine.distributed import World, lost_contact
    from peerdistill.errors import LostContactError

    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by "
                        "peer [127.0.0.1]:39336. This is typically caused by a remote worker crashing.")
    joined = World(rank=0, size=2, joined=True)
    lost = lost_contact(joined, gloo, lambda: "the run keeps its last checkpoint: continue with torchrun ...")
    assert isinstance(lost, LostContactError)
    assert str(lost) == ("lost contact with another process of this run (Connection closed by peer [127.0.0.1]:39336): "
                         "it stopped, was killed or its node was lost; the run keeps its last checkpoint: continue with "
                         "torchrun ...")
    reset = RuntimeError("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Read error [127.0.0.1]:12723: "
                         "Connection reset by peer. This is typically caused by a remote worker hanging")
    assert "(Read error [127.0.0.1]:12723: Connection reset by peer): it stopped" in str(lost_contact(joined, reset,
                                                                                                      lambda: ""))
    asked = []
    loader = RuntimeError("Caught OSError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                          "  ...\nConnectionRefusedError: [Errno 111] Connection refused")  # (the data's, review 54h)
    watchdog = RuntimeError("[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7) ran for 600000 "
                            "milliseconds before timing out. NCCL communicator was aborted")  # (a peer slow, not gone)
    for world, exc in ((World(), gloo), (joined, RuntimeError("CUDA out of memory")), (joined, ValueError("x")),
                       (joined, loader), (joined, watchdog)):
        assert lost_contact(world, exc, lambda: asked.append(1) or "") is None
    assert asked == []  # (the advice is worked out only for a lost contact)
