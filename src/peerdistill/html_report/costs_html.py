"""The model-costs table of a run or a comparison: parameters, MACs, size, latency and how
many times smaller than the teacher, of each model and of the students' ensemble (the sum of
theirs: ``ensemble_cost.py``)."""

from __future__ import annotations

from typing import Any


from ..ensemble_cost import ENSEMBLE, compression_reference, ensemble_cost_note, with_ensemble
from ..report import fmt, mmacs
from ..values import is_finite_number
from .html_parts import note_html, section_html, table_html

def costs_section(meta: dict[str, Any]) -> str:
    """What each model costs to ship (run.json's ``costs``, written when training ends)."""
    costs, damaged = read_costs(meta)
    costs = with_ensemble(costs, meta)
    if damaged:
        return section_html("Model costs", [note_html(f"costs left out: run.json's costs are damaged ({damaged}); "
                                                      "restore the file, or train the run again.")])
    if not costs:
        return section_html("Model costs", [note_html("no costs recorded (they are measured when a run completes).")])
    from ..runs import saved_window

    window, _ = saved_window(meta)
    macs_of = f"/patch ({window[0]}x{window[1]})" if window else ""
    notes = [n for n in (ensemble_cost_note(costs.get(ENSEMBLE)), timing_noise_note(costs)) if n]
    return section_html("Model costs", [COSTS_CAPTION, table_html(costs_header(costs, macs_of), cost_rows(costs)),
                                        *map(note_html, notes)])


# How far apart the latencies of two alike models (the same parameters and MACs) may lie before the
# table says the machine was busy (review 52a: two identical students timed 3.8 and 5.6 ms).
ALIKE_SPREAD = 1.2


def timing_noise_note(costs: dict[str, dict]) -> str | None:
    """Models alike in parameters and MACs whose latencies differ by more than ``ALIKE_SPREAD``
    times: the timing noise of the machine, said beside the table (None where there is none)."""
    said = []
    for key, device in (("cpu_latency_ms", "CPU"), ("gpu_latency_ms", "GPU")):
        alike: dict[tuple, list[str]] = {}
        for name, c in costs.items():  # (an ensemble of one student does more than it: its averaging, review 53j)
            if is_finite_number(c.get(key)) and c[key] > 0 and not c.get("ensemble_of"):
                alike.setdefault((c["parameters"], c["macs"]), []).append(name)
        for names in (group for group in alike.values() if len(group) > 1):
            fastest, slowest = min(names, key=lambda n: costs[n][key]), max(names, key=lambda n: costs[n][key])
            if costs[slowest][key] > ALIKE_SPREAD * costs[fastest][key]:
                said.append(f"{fastest} and {slowest} are alike (the same parameters and MACs), yet timed "
                            f"{costs[fastest][key]:.3f} and {costs[slowest][key]:.3f} {device} ms")
    if not said:
        return None
    return ("; ".join(said) + ": other work slowed the machine while they were timed, so the latencies hold that "
            "noise; time them again on an idle machine (peerdistill.costs.cpu_latencies_ms), or on your device")


COST_FIGURES, OPTIONAL_COST_FIGURES = ("parameters", "macs", "cpu_latency_ms"), ("size_bytes", "gpu_latency_ms",
                                                                                 "compression")


def read_costs(meta: Any) -> tuple[dict[str, dict] | None, str | None]:
    """run.json's costs as training writes them (model -> figures), and what is wrong with them
    when a hand edit or damage left them otherwise; (None, None) when there are none."""
    costs = meta.get("costs") if isinstance(meta, dict) else None
    if not costs:
        return None, None
    if not isinstance(costs, dict) or not all(isinstance(c, dict) for c in costs.values()):
        return None, f"a {type(costs).__name__}, not a figure mapping per model"
    for name, c in costs.items():
        bad = next((k for k in COST_FIGURES if not is_finite_number(c.get(k))), None) or next(
            (k for k in OPTIONAL_COST_FIGURES if c.get(k) is not None and not is_finite_number(c.get(k))), None)
        if bad:
            return None, f"model '{name}' has {bad} {c.get(bad)!r}"
    return costs, None


def costs_header(costs: dict[str, dict], macs_of: str = "") -> list[str]:
    """The compression column names its reference (``compression_reference``). A cohort without
    a teacher has no such column. ``macs_of``: what the MACs are of where that is not the whole
    input (a patch-trained run's patch)."""
    reference = compression_reference(costs)
    if reference is None:
        reference = "teacher"
    gpu = ["GPU ms"] if _has_gpu_latency(costs) else []
    compared = [f"x fewer parameters than {reference}"] if _has_compression(costs) else []
    return ["model", "parameters", f"MMACs{macs_of}", "file KiB", "CPU ms", *gpu, *compared]


def _has_gpu_latency(costs: dict[str, dict]) -> bool:
    return any(c.get("gpu_latency_ms") is not None for c in costs.values())


def _has_compression(costs: dict[str, dict]) -> bool:
    return any(c.get("compression") is not None for c in costs.values())


COSTS_CAPTION = ("<p>Per model as shipped (no self-distillation heads), for one input (one training patch for "
                 "patch-trained runs): multiply-accumulates counted by torch's FlopCounterMode, the size of its weights' file "
                 "(models/NAME.safetensors, fp32), "
                 "median latency on one CPU thread of the machine that trained it (and, for a run trained on a "
                 "GPU, on that GPU: fp32, one input; the models timed in turns, so that other work on the machine "
                 "slows each alike: compare them within a run, and time a device of your own for its figures), and, "
                 "with a teacher, how many times fewer parameters than it.</p>")


def cost_rows(costs: dict[str, dict]) -> list[list[str]]:
    gpu, compared = _has_gpu_latency(costs), _has_compression(costs)
    return [[name, f"{c['parameters']:,}", mmacs(c["macs"]),
             f"{c['size_bytes'] / 1024:.1f}" if c.get("size_bytes") else "n/a", f"{c['cpu_latency_ms']:.3f}",
             *([fmt(c.get("gpu_latency_ms"), 3)] if gpu else []),
             *([f"{c['compression']:.2f}" if c.get("compression") is not None else "n/a"] if compared else [])]
            for name, c in costs.items()]
