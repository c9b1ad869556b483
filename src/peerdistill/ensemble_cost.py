"""What the students' ensemble costs to ship. Shipped, it runs every student, so its parameters,
MACs and weights' size are the sum of theirs, and its "x fewer" comes from that sum; its latency
is timed running its exported graph (every student: averaged there, or side by side for a
sliding window to blend), or, where it was not timed, is the sum of theirs (said so). One rule
for run.json's costs, the final table and the reports (review 53d: its cells were blank beside
its accuracy, readable as "no extra cost")."""

from __future__ import annotations

from typing import Any

from .graph import ENSEMBLE
from .values import is_finite_number

SUMMED = ("parameters", "macs", "size_bytes")
LATENCIES = ("cpu_latency_ms", "gpu_latency_ms")


def student_names(meta: Any) -> list[str]:
    """The students of a run's run.json, in order: what its ensemble averages."""
    members = meta.get("members") if isinstance(meta, dict) else None
    return [m["name"] for m in members or [] if isinstance(m, dict) and m.get("role") == "student"]


def compression(reference_parameters: int, parameters: int) -> float:
    """How many times fewer parameters than the reference (the first teacher)."""
    return round(reference_parameters / max(parameters, 1), 2)


def compression_reference(costs: dict[str, dict]) -> str | None:
    """The model the costs' compression is against, the first teacher (of several, the others are
    not it): costs list the teachers first, so it is the first model whose own ratio is 1. None in
    a cohort without a teacher."""
    return next((name for name, c in costs.items() if c.get("compression") == 1.0), None)


def ensemble_cost(costs: dict[str, dict], students: list[str],
                  timed: dict[str, float] | None = None) -> dict[str, Any] | None:
    """The ensemble's costs from its students' (``costs``: per model): the sums, with each
    latency the ``timed`` one where given, else the sum of theirs (``latency_summed``). None
    where a student has no costs."""
    if not students or any(s not in costs for s in students):
        return None
    parts = [costs[s] for s in students]
    cost: dict[str, Any] = {"ensemble_of": list(students)}
    for key in SUMMED:
        values = [p.get(key) for p in parts]
        cost[key] = sum(values) if all(is_finite_number(v) for v in values) else None
    for key in LATENCIES:
        if timed and key in timed:
            cost[key] = round(timed[key], 3)
        elif all(is_finite_number(p.get(key)) for p in parts):
            cost[key] = round(sum(p[key] for p in parts), 3)
            cost["latency_summed"] = True
    return cost


def with_ensemble(costs: dict[str, dict] | None, meta: Any) -> dict[str, dict] | None:
    """``costs`` with the ensemble's, worked out from its students' where run.json has none (a
    run recorded before they were): its latency the sum of theirs."""
    if not costs or ENSEMBLE in costs:
        return costs
    cost = ensemble_cost(costs, student_names(meta))
    if cost is None:
        return costs
    reference = compression_reference(costs)
    if reference is not None and cost["parameters"] is not None:
        cost["compression"] = compression(costs[reference]["parameters"], cost["parameters"])
    return {**costs, ENSEMBLE: cost}


def members_parameters(meta: Any) -> dict[str, Any]:
    """Each model's parameters as run.json records them, and the ensemble's, the sum of its
    students' where they all have one (the final table and the report's test table)."""
    members = meta.get("members") if isinstance(meta, dict) else None
    params = {m["name"]: m.get("parameters") for m in members or [] if isinstance(m, dict) and "name" in m}
    if (summed := ensemble_parameters(params, student_names(meta))) is not None:
        params[ENSEMBLE] = summed
    return params


def ensemble_parameters(params: dict[str, Any], students: list[str]) -> int | None:
    """The ensemble's parameters in a table of each model's: the sum of its students'."""
    values = [params.get(s) for s in students]
    return sum(values) if values and all(is_finite_number(v) for v in values) else None


def _of_students(students: list[str]) -> str:
    return (f"its one student's ({students[0]}: an ensemble of one is that student)" if len(students) == 1
            else f"the sum of its {len(students)} students' ({', '.join(students)})")


def ensemble_cost_note(cost: dict[str, Any] | None, columns: str = "parameters, MACs and file size",
                       ratio: str = "how many times fewer parameters than the teacher it has",
                       latency: bool = True) -> str | None:
    """What the ensemble's row of a cost table is, said beside it (``columns``: the summed ones
    the table shows, ``ratio``: its compression column's words; ``latency``: whether it shows
    latencies); None without one."""
    if not cost or not cost.get("ensemble_of"):
        return None
    students = list(cost["ensemble_of"])
    said = f"ensemble: its {columns} are {_of_students(students)}"
    if len(students) > 1:  # (review 53j: "that sum" and "every student" said of one)
        if cost.get("compression") is not None:
            said += f", and {ratio} comes from that sum"
        said += ": it runs every student"
    if latency:
        said += ("; its latency is the sum of theirs (not timed as one model)" if cost.get("latency_summed") else
                 "; its latency was timed on it as exported")
    return said


def ensemble_parameters_note(students: list[str]) -> str:
    """The same said of a table whose only cost is the parameters."""
    return f"ensemble: its parameters are {_of_students(students)}" + (": it runs every student" if len(students) > 1
                                                                        else "")
