"""The scripts under benchmarks/ still run, at the smallest sizes (their figures are for the
benchmarks themselves to print, not for tests to time): a GPU session that finds one broken
loses its device time."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_step_throughput_prints_every_implementation_of_both_cases(tmp_path):
    out = run("step_throughput.py", "--device", "cpu", "--students", "2", "--batch", "4", "--batch-b", "2",
              "--image-b", "32", "--steps", "1", "--warmup", "0", "--rounds", "1", "--json", "rows.json", cwd=tmp_path)
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    implementations = ["usual (fp32, loop)", "peerdistill (default)", "peerdistill packed", "peerdistill separate"]
    assert [(r["case"], r["impl"]) for r in rows] == [(case, impl) for case in "ab" for impl in implementations]
    assert all(r["img_per_s"] > 0 and r["tflops"] > 0 for r in rows)
    assert [r["ratio"] for r in rows if r["impl"].startswith("usual")] == [1.0, 1.0]
    assert "peerdistill defaults on this device" in out
    # timed by CPU time, for a machine others share: the same rows, said so
    out = run("step_throughput.py", "--device", "cpu", "--case", "a", "--students", "1", "--batch", "4", "--steps", "1",
              "--warmup", "0", "--rounds", "1", "--clock", "cpu", "--json", "cpu.json", cwd=tmp_path)
    assert "timed by CPU time (img/s per CPU-second)" in out
    timed = json.loads((tmp_path / "cpu.json").read_text())
    assert timed["clock"] == "cpu" and all(r["img_per_s"] > 0 for r in timed["rows"])


def test_cpu_precision_times_fp32_and_bf16_with_the_trainer_using_each(tmp_path):
    out = run("cpu_precision.py", "--batch", "4", "--steps", "1", "--warmup", "0", "--rounds", "1",
              "--json", "rows.json", cwd=tmp_path)
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [(r["precision"], r["trainer_precision"]) for r in rows] == [("fp32", "fp32"), ("bf16", "bf16")]
    assert rows[0]["time_vs_fp32"] == 1.0 and all(r["s_per_step"] > 0 for r in rows)
    assert "x fp32's time" in out


def test_soak_cpu_layout_and_compare_jobs_run(tmp_path):
    soak = run("soak.py", "--epochs", "1", cwd=tmp_path)  # (one epoch: its first and last five are that one)
    assert "epoch   1  rss" in soak and "ratio last/first: rss 1.000, step time 1.000" in soak
    layout = run("cpu_layout.py", "--cohorts", "shapes", "--rounds", "1", cwd=tmp_path)
    assert layout.splitlines()[-1].startswith("shapes") and "x" in layout.splitlines()[-1]
    jobs = run("compare_jobs.py", "--jobs", "2", "--epochs", "1", "--seeds", "1", "--presets", "kd", cwd=tmp_path)
    assert "speed-up of --jobs 2 over --jobs 1" in jobs


def test_micro_batches_prints_a_line_per_setting(tmp_path):
    out = run("micro_batches.py", "--batch", "4", "--image", "32", "--parts", "1,2", "--steps", "1", cwd=tmp_path)
    lines = out.strip().splitlines()
    whole, halves = lines[-2].split(), lines[-1].split()
    assert (whole[0], whole[2], whole[4]) == ("whole", "1.00", "1.00")  # the reference: its own ratios
    assert halves[0] == "2" and float(halves[1]) > 0  # batch 4 in parts of 2


def test_int8_latency_prints_both_files_per_model_and_batch(tmp_path):
    out = run("int8_latency.py", "--models", "resnet8x4-32", "--batches", "1,2", "--rounds", "1", cwd=tmp_path)
    rows = [line.split() for line in out.strip().splitlines()[-2:]]
    assert [(r[0], r[1]) for r in rows] == [("resnet8x4-32", "1"), ("resnet8x4-32", "2")]
    fp32_kib, int8_kib = (float(v.replace(",", "")) for v in rows[0][5:7])
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows) and int8_kib < fp32_kib / 3  # int8 weights


def test_int8_agreement_scores_a_runs_fp32_and_int8_files(tmp_path):
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    train_from_config(validate({"name": "r", "out_dir": str(tmp_path), "teacher": None, "distill": {"preset": "ml"},
                                "students": [{"arch": "cnn", "args": {"width": 4, "depth": 1}}] * 2,
                                "train": {"epochs": 1, "batch_size": 256}}), progress=False)
    run("int8_agreement.py", str(tmp_path / "r"), "--models", "ensemble", "--json", "rows.json", cwd=tmp_path)
    (row,) = json.loads((tmp_path / "rows.json").read_text())["rows"]
    tested = json.loads((tmp_path / "r" / "metrics.json").read_text())["test_at_best"]["ensemble"]["accuracy"]
    assert row["model"] == "ensemble" and abs(row["fp32_accuracy"] - tested) < 1e-9  # the run's own figure
    # int8 keeps nearly every class (measured 0.994) and so the figures (0.0000 and 0.0004 apart)
    assert row["agreement"] >= 0.9 and row["max_probability_difference"] < 0.05
    assert abs(row["int8_accuracy"] - row["fp32_accuracy"]) < 0.05 and abs(row["int8_auc"] - row["fp32_auc"]) < 0.02
    assert not (tmp_path / "r" / "export").exists()  # nothing written into the run


def test_detection_fusion_scores_every_rule_and_the_runs_own_setting_as_training_did(tmp_path):
    from peerdistill.build import train_from_config
    from peerdistill.config import validate

    detector = {"arch": "detector", "args": {"width": 4, "depth": 1}}
    train_from_config(validate({"name": "d", "out_dir": str(tmp_path), "task": "detection", "teacher": None,
                                "data": {"kind": "boxes", "boxes_counts": [32, 16, 16], "image_size": [32, 32]},
                                "students": [detector, detector], "distill": {"preset": "independent"},
                                "detect": {"score_threshold": 0.01}, "train": {"epochs": 1, "batch_size": 16}}),
                      progress=False)
    out = run("detection_fusion.py", str(tmp_path), "--split", "test", "--ious", "0.6,0.7", "--json", "fusion.json",
              cwd=tmp_path)
    assert "mean over 1 run(s)" in out
    mean = json.loads((tmp_path / "fusion.json").read_text())["mean"]
    assert {n for n in mean if n.startswith("ensemble")} == {f"ensemble {r} iou {i}" for r in ("wbf", "nms", "nmw")
                                                            for i in ("0.6", "0.7")}
    tested = json.loads((tmp_path / "d" / "metrics.json").read_text())["test_at_best"]
    # the run's own setting (WBF at 0.7) and each student give the figures training wrote
    assert abs(mean["ensemble wbf iou 0.7"]["ap"] - tested["ensemble"]["ap"]) < 1e-9
    assert abs(mean["student student1"]["ap50"] - tested["student1"]["ap50"]) < 1e-9


def test_int8_agreement_scores_a_segmentation_runs_masks_with_the_tasks_meter(shapes_run, patch_shapes_run,
                                                                             tmp_path):
    def scored(run_dir, model: str) -> tuple[dict, dict]:
        """The benchmark's row for a tiny shapes run's model, and the run's own test figures of it."""
        run("int8_agreement.py", str(run_dir), "--models", model, "--json", "rows.json", cwd=tmp_path)
        (row,) = json.loads((tmp_path / "rows.json").read_text())["rows"]
        return row, json.loads((run_dir / "metrics.json").read_text())["test_at_best"][model]

    row, tested = scored(shapes_run, "student1")
    assert abs(row["fp32_dice"] - tested["dice"]) < 1e-3 and abs(row["fp32_auc"] - tested["auc"]) < 1e-3
    # int8 keeps the calls (measured agreement 1.0) and so the figures (Dice equal, AUC 0.0004 apart)
    assert row["agreement"] >= 0.9 and row["class_dice"]["1"] >= 0.9
    assert abs(row["int8_dice"] - row["fp32_dice"]) < 0.05 and abs(row["int8_auc"] - row["fp32_auc"]) < 0.02
    # a patch-trained run's ensemble (its students' logits side by side) is scored as evaluation scores it
    row, tested = scored(patch_shapes_run, "ensemble")
    assert abs(row["fp32_dice"] - tested["dice"]) < 1e-3 and abs(row["fp32_auc"] - tested["auc"]) < 1e-3


def test_hd95_methods_prints_every_case_with_all_three_ways(tmp_path):
    out = run("hd95_methods.py", "--scale", "0.1", "--rounds", "1", "--json", "rows.json", cwd=tmp_path)
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert len(rows) == 7 and all(line.startswith(r["case"]) for r, line in zip(rows, out.splitlines()[2:]))
    assert all(r["kdtree_ms"] > 0 and r["edt_ms"] > 0 and r["rule_ms"] > 0 for r in rows)
    assert {r["takes"] for r in rows} == {"kdtree", "edt"}  # the cases fall on both sides of the rule


def test_busy_cores_times_each_thread_setting(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "busy_cores.py"), "--busy", "0", "--epochs", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = proc.stdout.splitlines()[-1]
    assert row.startswith("0 busy (python): torch's default:") and "(1.00)" in row
    assert "OMP_WAIT_POLICY=PASSIVE:" in row and "OMP_NUM_THREADS=1:" in row
    refused = subprocess.run([sys.executable, str(BENCHMARKS / "busy_cores.py")], cwd=tmp_path, capture_output=True,
                             text=True, env={**env, "OMP_NUM_THREADS": "2"})
    assert refused.returncode == 2 and "unset OMP_NUM_THREADS first" in refused.stderr


def test_input_digests_prints_every_set():
    out = run("input_digests.py", "--rows", "0.01", "--rounds", "1", cwd=BENCHMARKS.parent)
    lines = out.splitlines()
    assert lines[0].split() == ["set", "MB", "seconds", "s", "per", "GB", "record", "KB"]
    assert [line.split()[0] for line in lines[1:]] == ["pneumoniamnist", "kvasir-seg", "cifar-size"]
    assert all(float(line.split()[-2]) > 0 for line in lines[1:])


def test_exclude_matching_prints_a_line_per_pattern_set(tmp_path):
    out = run("exclude_matching.py", "--paths", "2000", "--rounds", "1", cwd=tmp_path)
    rows = [line.split() for line in out.strip().splitlines()[1:-1]]
    assert [r[0] for r in rows] == ["3", "1,000", "200"] and all(float(r[-3]) > 0 for r in rows)
