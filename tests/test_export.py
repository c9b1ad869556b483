"""Export: ONNX with a parity check (student, ensemble, segmentation), safetensors, errors."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from peerdistill.build import train_from_config
from peerdistill.cli import main
from peerdistill.config import validate
from peerdistill.export import export_run, pick_model


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    cfg = validate({"name": "r", "out_dir": str(out), "teacher": {"arch": "cnn", "args": {"width": 4, "depth": 1}},
                    "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}},
                                 {"arch": "cnn", "args": {"width": 6, "depth": 1}}],
                    "train": {"epochs": 1, "batch_size": 256}})
    train_from_config(cfg, progress=False)
    return out / "r"


def test_onnx_ensemble_matches_pytorch_and_has_a_dynamic_batch(digits_run, capsys):
    import onnxruntime as ort

    assert main(["export", str(digits_run), "--model", "ensemble"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "max |difference|" in printed
    path = digits_run / "export" / "ensemble.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, module, output, _ = pick_model(digits_run, "ensemble")
    x = torch.randn(7, 1, 8, 8)
    got = session.run(None, {"input": x.numpy()})[0]
    assert output == "probabilities" and got.shape == (7, 10)
    assert np.allclose(got.sum(axis=1), 1, atol=1e-5)
    assert np.abs(got - module(x).detach().numpy()).max() < 1e-4


def test_best_student_and_safetensors(digits_run):
    result = export_run(digits_run, model="best", fmt="onnx")
    assert result.model in ("student1", "student2") and result.max_abs_diff < 1e-4
    weights = export_run(digits_run, model="student2", fmt="safetensors", out=digits_run / "s2.safetensors")
    assert weights.max_abs_diff is None
    saved = load_file(weights.path)
    assert torch.equal(saved["classifier.weight"], load_file(digits_run / "models" / "student2.safetensors")["classifier.weight"])


def test_export_errors(digits_run, capsys):
    assert main(["export", str(digits_run), "--model", "student9"]) == 2
    assert "the run has ['student1', 'student2', 'teacher']" in capsys.readouterr().err
    assert main(["export", str(digits_run), "--model", "ensemble", "--format", "safetensors"]) == 2
    assert "export it as onnx" in capsys.readouterr().err


def test_tolerance_failure_keeps_nothing(digits_run):
    from peerdistill.export import ExportError

    with pytest.raises(ExportError, match="differs from PyTorch by up to"):
        export_run(digits_run, model="student1", out=digits_run / "strict.onnx", tolerance=-1.0)
    assert not (digits_run / "strict.onnx").exists()


def test_segmentation_model_with_dynamic_height_and_width(tmp_path):
    import onnxruntime as ort

    cfg = validate({"name": "seg", "out_dir": str(tmp_path), "task": "segmentation",
                    "data": {"kind": "shapes", "shapes_counts": [8, 4, 4]},
                    "students": [{"arch": "mobile_unet", "args": {"width": 4, "depth": 2}}],
                    "distill": {"preset": "independent"}, "train": {"epochs": 1, "batch_size": 8}})
    train_from_config(cfg, progress=False)
    result = export_run(tmp_path / "seg", model="student1")
    assert result.max_abs_diff < 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((2, 1, 40, 52), np.float32)})[0].shape == (2, 2, 40, 52)
    # predict writes one mask per image of an .npz, at the image's size
    np.savez(tmp_path / "imgs.npz", images=(np.random.default_rng(0).random((3, 40, 52)) * 255).astype(np.uint8))
    assert main(["predict", str(result.path), str(tmp_path / "imgs.npz"), "--out", str(tmp_path / "masks")]) == 0
    from PIL import Image

    masks = sorted((tmp_path / "masks").iterdir())
    assert [m.name for m in masks] == ["imgs_0_mask.png", "imgs_1_mask.png", "imgs_2_mask.png"]
    assert np.asarray(Image.open(masks[0])).shape == (40, 52)


def test_predict_with_a_run_and_with_the_exported_onnx(digits_run, tmp_path, capsys):
    import csv

    from PIL import Image

    from peerdistill.config import DataSpec
    from peerdistill.data import build_data

    digits = build_data(DataSpec())  # raw images back to PNG files, as a user would have them
    raw = (digits.test.x[:3, 0] * digits.stats["std"][0] + digits.stats["mean"][0]).clamp(0, 1)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(raw):
        Image.fromarray((img.numpy() * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    assert main(["predict", str(digits_run), str(folder), "--out", str(tmp_path / "p.csv"), "--model", "ensemble"]) == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 3 and set(rows[0]) == {"input", "predicted"} | {f"p_{c}" for c in range(10)}
    assert all(abs(sum(float(r[f"p_{c}"]) for c in range(10)) - 1) < 1e-4 for r in rows)
    onnx = export_run(digits_run, model="ensemble", out=tmp_path / "ens.onnx").path
    assert main(["predict", str(onnx), str(folder), "--out", str(tmp_path / "q.csv")]) == 0
    again = list(csv.DictReader((tmp_path / "q.csv").open()))
    for a, b in zip(rows, again):
        assert a["predicted"] == b["predicted"]
        assert abs(float(a["p_3"]) - float(b["p_3"])) < 1e-4
    assert main(["predict", str(onnx), str(tmp_path / "missing.png"), "--out", str(tmp_path / "r.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
