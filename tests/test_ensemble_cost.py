"""The students' ensemble's cost (review 53d: blank beside its accuracy, absent from run.json and
the reports): its parameters, MACs and file size the sum of its students', its latency timed
running them all, or the sum of theirs where it was not timed (said so)."""

from __future__ import annotations

import html

import pytest
from torch import nn

from peerdistill.costs import model_costs
from peerdistill.ensemble_cost import ensemble_cost_note, with_ensemble
from peerdistill.exported_models import EnsembleProbabilities
from peerdistill.html_report.costs_html import costs_section


def _cohort():
    teacher = nn.Sequential(nn.Linear(8, 32), nn.Linear(32, 4))  # 8*32+32 + 32*4+4 = 420 parameters, 384 MACs
    students = {"student1": nn.Linear(8, 4), "student2": nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 4))}
    # (36 parameters and 32 MACs; 54+28 = 82 parameters and 48+24 = 72 MACs)
    return teacher, students


def test_the_ensembles_cost_is_the_sum_of_its_students_and_its_latency_is_timed_running_them_all(tmp_path):
    teacher, students = _cohort()
    files = {}
    for name, size in (("student1", 300), ("student2", 500), ("teacher", 2000)):
        files[name] = tmp_path / f"{name}.safetensors"
        files[name].write_bytes(b"x" * size)
    costs = model_costs({"teacher": teacher, **students}, (8,), files, reference="teacher",
                        ensemble_of=list(students), ensemble=EnsembleProbabilities(students))
    ensemble = costs["ensemble"]
    assert ensemble["parameters"] == 36 + 82 and ensemble["macs"] == 32 + 72 and ensemble["size_bytes"] == 800
    assert ensemble["compression"] == round(420 / (36 + 82), 2) == 3.56  # from the sum, not a student's 11.67
    assert ensemble["ensemble_of"] == ["student1", "student2"]
    assert ensemble["cpu_latency_ms"] > 0 and "latency_summed" not in ensemble  # timed, as one model
    assert list(costs) == ["teacher", "student1", "student2", "ensemble"]


def test_an_ensemble_not_timed_gets_the_sum_of_its_students_latencies_said_so():
    teacher, students = _cohort()
    costs = model_costs({"teacher": teacher, **students}, (8,), {}, reference="teacher", ensemble_of=list(students))
    ensemble = costs["ensemble"]
    assert ensemble["latency_summed"] is True
    assert ensemble["cpu_latency_ms"] == pytest.approx(costs["student1"]["cpu_latency_ms"]
                                                       + costs["student2"]["cpu_latency_ms"], abs=1e-3)
    assert ensemble["size_bytes"] is None  # (no files: not summed from nothing)
    assert "its latency is the sum of theirs (not timed as one model)" in ensemble_cost_note(ensemble)


def test_a_run_recorded_before_the_ensembles_cost_gets_it_from_its_students():
    meta = {"members": [{"name": "teacher", "role": "teacher"}, {"name": "student1", "role": "student"},
                        {"name": "student2", "role": "student"}],
            "costs": {"teacher": {"parameters": 2_800_000, "macs": 30_000_000, "size_bytes": 11_200_000,
                                  "cpu_latency_ms": 4.0, "compression": 1.0},
                      "student1": {"parameters": 77_338, "macs": 3_280_000, "size_bytes": 320_000,
                                   "cpu_latency_ms": 0.1, "compression": 36.2},
                      "student2": {"parameters": 77_338, "macs": 3_280_000, "size_bytes": 320_000,
                                   "cpu_latency_ms": 0.12, "compression": 36.2}}}
    costs = with_ensemble(meta["costs"], meta)
    assert "ensemble" not in meta["costs"]  # (run.json's figures are not changed)
    assert costs["ensemble"] == {"ensemble_of": ["student1", "student2"], "parameters": 154_676, "macs": 6_560_000,
                                 "size_bytes": 640_000, "cpu_latency_ms": 0.22, "latency_summed": True,
                                 "compression": round(2_800_000 / 154_676, 2)}
    page = html.unescape(" ".join(costs_section(meta).split()))
    assert "<tr><th>ensemble</th><td>154,676</td><td>6.56</td><td>625.0</td><td>0.220</td><td>18.10</td></tr>" in page
    assert ("ensemble: its parameters, MACs and file size are the sum of its 2 students' (student1, student2), and "
            "how many times fewer parameters than the teacher it has comes from that sum: it runs every "
            "student; its latency is the sum of theirs (not timed as one model)") in page
    assert with_ensemble(costs, meta) is costs  # (recorded: kept as it is)
