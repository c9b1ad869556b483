"""torchvision's and timm's models as cohort members: trained together with zoo models, then scored,
exported and used to predict from their run folders, as a user would. CI has neither library, so
these skip there; docs/config.md ("Models from torchvision and timm") says where they ran and how."""

import csv
from pathlib import Path

import numpy as np
import pytest

from peerdistill import evaluate_run, export_run, predict_files
from peerdistill.build import train_from_config
from peerdistill.config import validate

pytest.importorskip("torchvision", reason="torchvision is not installed on this machine")


def _torchvision(factory, **args):
    return {"arch": f"torchvision.models{factory}", "args": args}


def _rgb_classes(path: Path, seed: int = 0):
    """Three classes told apart by the colour of a bright square on noise (RGB, 32x32)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 192), ("val", 48), ("test", 48)):
        labels = rng.integers(0, 3, n)
        images = rng.normal(0.3, 0.15, (n, 32, 32, 3))
        for image, label in zip(images, labels):
            top, left = rng.integers(0, 16, 2)
            image[top:top + 16, left:left + 16, label] += 0.6
        arrays[f"{split}_images"] = (np.clip(images, 0, 1) * 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    np.savez(path, **arrays)


def _rgb_discs(root: Path, count: int = 40, seed: int = 0):
    """Image/mask folders: a tinted disc on RGB noise, its mask 0/1 (64x64)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, cols = np.mgrid[:64, :64]
    for i in range(count):
        (cy, cx), radius = rng.integers(16, 48, 2), rng.integers(6, 14)
        mask = ((rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2).astype(np.uint8)
        image = rng.normal(90, 20, (64, 64, 3))
        image[mask > 0] += (80, -30, 40)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")


def _same_scores(read_back, at_training):
    for model, scores in at_training.items():
        for metric, value in scores.items():
            if np.isfinite(value):
                assert read_back[model][metric] == pytest.approx(value, abs=1e-6), (model, metric)


def test_torchvision_and_timm_classifiers_teach_each_other(tmp_path):
    """A torchvision ResNet-18 teaches a timm MobileNetV3 and a torchvision MobileNetV3, logits and
    features (the `styles` preset, layers named by module path); the run folder is then scored,
    exported and used to predict without the Python objects."""
    pytest.importorskip("timm", reason="timm is not installed on this machine")
    _rgb_classes(tmp_path / "rgb.npz")
    tree = {"name": "lib", "out_dir": str(tmp_path), "data": {"kind": "npz", "root": str(tmp_path / "rgb.npz")},
            "teacher": {**_torchvision(":resnet18"), "feature_layer": "layer3"},
            "students": [{"arch": "timm:create_model", "args": {"model_name": "mobilenetv3_small_050"},
                          "feature_layer": "blocks.3"},
                         {**_torchvision(":mobilenet_v3_small"), "feature_layer": "features.6"}],
            "distill": {"preset": "styles", "rampup_epochs": 1}, "train": {"epochs": 3, "batch_size": 32}}
    result = train_from_config(validate(tree), progress=False)
    terms = result.history[-1]
    assert "train/loss/student1/kl<-teacher" in terms
    assert "train/loss/student2/hint<-teacher[features.6<-layer3]" in terms
    assert "train/loss/student1/hint<-student2[blocks.3<-features.6]" in terms
    assert result.test_at_best["teacher"]["accuracy"] > 0.8  # colours: learnt in three epochs from scratch

    run = tmp_path / "lib"
    _same_scores(evaluate_run(run), result.test_at_best)
    assert export_run(run, "student1").max_abs_diff <= 1e-4  # timm's model through ONNX
    images = np.load(tmp_path / "rgb.npz")["test_images"][:6]
    np.savez(tmp_path / "x.npz", images=images)
    predict_files(run, [str(tmp_path / "x.npz")], tmp_path / "p.csv", model="ensemble")
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 6 and all(abs(sum(float(r[f"p_{c}"]) for c in range(3)) - 1) < 1e-4 for r in rows)


def test_torchvision_segmentation_models_in_a_cohort(tmp_path):
    """DeepLabV3 (a dict of `out` and `aux`) teaches LR-ASPP and a zoo MobileUNet on RGB folders;
    the run is scored, the students exported and a mask predicted from the run folder."""
    _rgb_discs(tmp_path / "discs")
    # weights_backbone=None: the segmentation models' default would download ImageNet weights
    tree = {"name": "seg", "out_dir": str(tmp_path), "task": "segmentation",
            "data": {"kind": "folders", "root": str(tmp_path / "discs")},
            "teacher": _torchvision(".segmentation:deeplabv3_mobilenet_v3_large", weights_backbone=None,
                                    aux_loss=True),
            "students": [_torchvision(".segmentation:lraspp_mobilenet_v3_large", weights_backbone=None),
                         {"arch": "mobile_unet", "args": {"width": 8}}],
            "distill": {"preset": "kd+ml", "rampup_epochs": 1}, "train": {"epochs": 2, "batch_size": 8}}
    result = train_from_config(validate(tree), progress=False)
    assert {"train/loss/student1/kl<-teacher", "train/loss/student1/kl<-student2"} <= set(result.history[-1])
    assert all(0 <= s["pixel_accuracy"] <= 1 for s in result.test_at_best.values())

    run = tmp_path / "seg"
    _same_scores(evaluate_run(run), result.test_at_best)
    assert export_run(run, "student1").max_abs_diff <= 1e-4
    predict_files(run, [str(tmp_path / "discs" / "images" / "3.png")], tmp_path / "masks", model="ensemble")
    assert (tmp_path / "masks" / "3_mask.png").is_file()


def test_timm_vision_transformers_learn_on_logits_and_tokens(tmp_path):
    """ViTs (patches of 4 pixels at 32x32, 65 tokens): a wider teacher's block output teaches the
    students' through a linear connector over the token width; a student exports to ONNX."""
    pytest.importorskip("timm", reason="timm is not installed on this machine")
    _rgb_classes(tmp_path / "rgb.npz")

    def vit(name):
        return {"arch": "timm:create_model", "feature_layer": "blocks.1",
                "args": {"model_name": name, "img_size": 32, "patch_size": 4, "depth": 2}}

    tree = {"name": "vit", "out_dir": str(tmp_path), "data": {"kind": "npz", "root": str(tmp_path / "rgb.npz")},
            "teacher": vit("vit_small_patch16_224"), "students": [vit("vit_tiny_patch16_224")] * 2,
            "distill": {"preset": "styles", "rampup_epochs": 1}, "train": {"epochs": 2, "batch_size": 32}}
    result = train_from_config(validate(tree), progress=False)
    assert "train/loss/student2/hint<-teacher[blocks.1<-blocks.1]" in result.history[-1]
    assert result.test_at_best["ensemble"]["accuracy"] > 0.5
    assert export_run(tmp_path / "vit", "student2").max_abs_diff <= 1e-4


def test_a_run_folder_may_name_the_libraries_models_but_not_their_loaders():
    from peerdistill.errors import CheckpointError
    from peerdistill.trust import check_trusted_arch

    for arch in ("torchvision.models:resnet18", "torchvision.models.segmentation:lraspp_mobilenet_v3_large",
                 "torchvision.models.detection:FCOS", "timm:create_model", "timm.models.resnet:ResNet"):
        check_trusted_arch(arch, "here", args={"num_classes": 3})
    for arch in ("timm.models:load_state_dict", "torchvision.models.resnet:torch.load",
                 "torchvision.models.resnet:torch.nn.Linear"):  # the last a model, but not torchvision's
        with pytest.raises(CheckpointError, match=f"names '{arch}', which is not a model class or model factory"):
            check_trusted_arch(arch, "here")
    with pytest.raises(CheckpointError, match="the arguments \\['checkpoint_path'\\], which make it read files"):
        check_trusted_arch("timm:create_model", "here", args={"model_name": "resnet18", "checkpoint_path": "x.pth"})
    with pytest.raises(CheckpointError, match="the arguments \\['model_name'\\], which make it read files"):
        check_trusted_arch("timm:create_model", "here", args={"model_name": "local-dir:/somewhere"})
    for name in ("LOCAL-DIR:/somewhere", "hf-hub:someone/model"):  # timm reads the scheme in any case
        with pytest.raises(CheckpointError, match="the arguments \\['model_name'\\], which make it read files"):
            check_trusted_arch("timm:create_model", "here", args={"model_name": name})
    with pytest.raises(CheckpointError, match="names 'timm.task.distillation:DistillationTeacher', which is not"):
        check_trusted_arch("timm.task.distillation:DistillationTeacher", "here")  # outside timm.models
