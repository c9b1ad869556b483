"""Checks that need a CUDA GPU (they skip, saying so, on machines without one): the default fast
path, packed students on the GPU, torchrun with NCCL, and timm models as teacher and students."""

import copy
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from peerdistill.build import train_from_config
from peerdistill.config import validate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")

STUDENT = {"arch": "resnet", "args": {"blocks": [1, 1], "width": 8}}
TREE = {"teacher": {"arch": "resnet", "args": {"blocks": [1, 1], "width": 16}}, "students": [STUDENT, STUDENT, STUDENT],
        "train": {"epochs": 2, "batch_size": 128}, "device": "cuda"}


def test_the_default_path_on_cuda_is_bf16_channels_last_fused_and_packed(tmp_path):
    result = train_from_config(validate({**TREE, "name": "d", "out_dir": str(tmp_path)}), progress=False)
    run = json.loads((tmp_path / "d" / "run.json").read_text())
    speed = run["speed"]
    assert speed["precision"] in ("bf16", "fp16") and speed["channels_last"] and speed["cudnn_benchmark"]
    assert run["fused_students"] == [["student1", "student2", "student3"]]
    assert result.test_at_best["ensemble"]["accuracy"] > 0.5
    # a run on a GPU also records each model's latency there (fp32, one input)
    assert all(c["gpu_latency_ms"] > 0 and c["cpu_latency_ms"] > 0 for c in run["costs"].values())


def test_augmentation_on_cuda_matches_the_cpu_and_repeats_with_the_seed():
    from peerdistill.tasks.augment import Augmentation

    x = torch.rand(16, 3, 24, 20)
    masks = torch.randint(0, 2, (16, 24, 20))
    same_everywhere = Augmentation(("hflip", "rot90", "rotate", "scale", "elastic", "brightness", "contrast", "gamma",
                                   "blur"))
    cpu = same_everywhere.images(x, masks, torch.Generator().manual_seed(3))
    gpu = same_everywhere.images(x.cuda().to(memory_format=torch.channels_last), masks.cuda(),
                                 torch.Generator().manual_seed(3))  # the trainer's generator is on the CPU
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-4, rtol=1e-4)
    assert (gpu[1].cpu() == cpu[1]).float().mean() > 0.99  # nearest labels: rounding ties may differ
    noisy = Augmentation(("noise",))  # drawn on the GPU: the same there for the same seed
    a = noisy.images(x.cuda(), None, torch.Generator().manual_seed(4))[0]
    b = noisy.images(x.cuda(), None, torch.Generator().manual_seed(4))[0]
    assert torch.equal(a, b) and not torch.equal(a, x.cuda())


def test_packed_students_match_separate_ones_on_cuda(tiny_data):
    from tests.test_speed import cohort_of, make_trainer, run_steps, same_resnets, weights  # shared helpers

    plain = cohort_of(same_resnets())
    packed = copy.deepcopy(plain)
    fp32 = {"precision": "fp32", "channels_last": False}
    a = make_trainer(plain, fuse_students=False, **fp32)
    b = make_trainer(packed, fuse_students=True, **fp32)
    a.device = b.device = torch.device("cuda")
    la, lb = run_steps(a, tiny_data), run_steps(b, tiny_data)
    assert b.groups
    assert all(opt.defaults.get("fused") for opt in b.optimizers.values())  # fused optimizer kernels
    for sa, sb in zip(la, lb):
        assert sb["total"] == pytest.approx(sa["total"], rel=1e-4)
    wa, wb = weights(plain), weights(packed)
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-3, atol=1e-4, msg=key)


def test_torchrun_with_one_process_uses_nccl(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run"]  # torchrun, wherever torch's scripts are
    proc = subprocess.run([*torchrun, "--standalone", "--nproc-per-node", "1", "-m", "peerdistill", "train",
                           "train.epochs=1", f"out_dir={tmp_path}", "name=n", "device=cuda", "--quiet"],
                          capture_output=True, text=True, timeout=600, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((tmp_path / "n" / "run.json").read_text())
    assert (run["processes"], run["backend"], run["status"]) == (1, "nccl", "complete")


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed")
def test_timm_models_train_as_teacher_and_students(tmp_path):
    """Library models come in by import path; the digits are grey, so timm's in_chans=1."""
    def timm(name):
        return {"arch": "timm:create_model", "args": {"model_name": name, "in_chans": 1, "num_classes": 10}}

    tree = {"name": "timm", "out_dir": str(tmp_path), "device": "cuda", "teacher": timm("resnet18"),
            "students": [timm("mobilenetv3_small_050"), timm("mobilenetv3_small_050")],
            "train": {"epochs": 1, "batch_size": 64}}
    result = train_from_config(validate(tree), progress=False)
    assert result.test_at_best["ensemble"]["accuracy"] > 0.1
