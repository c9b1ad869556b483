"""Notes under a table of figures (on stderr): what n/a means, an ensemble of one, HD95's unit, a
region of interest."""

from __future__ import annotations

from ..config import DataSpec
from .consoles import err_console


def say_what_not_available_means(scores: dict, metrics) -> None:
    from ..report import NOT_AVAILABLE_MEANS, has_not_available

    if has_not_available(scores, metrics):
        err_console.print(f"note: {NOT_AVAILABLE_MEANS}", highlight=False, soft_wrap=True)


def say_ensemble_of_one(meta: dict, scores: dict) -> None:
    """One student's 'ensemble' is that student: its row repeats the student's, said so."""
    from ..report import ensemble_of_one_note

    note = ensemble_of_one_note(meta)
    if note and "ensemble" in scores:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)


def say_what_detection_figures_are(meta: dict, decoding: dict | None = None) -> None:
    """A detection table's ap (COCO's, over IoU 0.50 to 0.95) and how its ensemble row is fused."""
    from ..report import detection_note

    note = detection_note(meta, decoding)
    if note:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)


def say_which_pixels_count(meta: dict, data_spec: DataSpec | None) -> None:
    """Segmentation's dice (each image's) and f1 (pooled) told apart; HD95 after a resize is in
    pixels of the resized grid, not of the files: said beside it; and, with a region of interest,
    that the figures count the pixels inside it alone."""
    from ..report import distance_unit_note, region_note

    spec = data_spec.model_dump() if data_spec is not None else None
    # (review 55r: dice 0.489 beside f1 0.563 read as rival values of one figure; the report said why, not the console)
    pooled = ("dice and iou are each image's, averaged over the images; f1 is the Dice of the split's pixels pooled, "
              "which weighs large regions more" if meta.get("task") == "segmentation" else None)
    for note in (pooled, region_note(meta, spec), distance_unit_note(meta, spec)):
        if note:
            err_console.print(f"note: {note}", highlight=False, soft_wrap=True)


def say_how_to_read_differences(baseline: str, metrics, left_out=()) -> None:
    """What a paired interval of a difference covers, which way is better, and which figures have
    no paired difference."""
    from ..metrics import NOT_PAIRED_WHY, lower_is_better

    lower = [m for m in metrics if lower_is_better(m)]
    sign = f" ({', '.join(lower)}: lower is better, so a negative difference is the better one)" if lower else ""
    if left_out:
        sign += f". {', '.join(left_out)} is left out: {NOT_PAIRED_WHY} (eval --per-sample gives each image's)"
    err_console.print(f"note: each interval is of the difference itself, both models scored on the same resamples; one "
                      f"wholly above or below 0 says the difference from {baseline} is not explained by which scored "
                      f"images were drawn. It holds these trained models fixed: whether another training "
                      f"seed keeps the difference is what compare --seeds measures{sign}", highlight=False, soft_wrap=True)


def say_what_the_ensemble_costs(costs: dict | None, students: list[str]) -> None:
    """The ensemble's params and MMACs are the sum of its students' (it runs them all): said
    beside the final table, whose ensemble row would otherwise read as costing nothing more."""
    from ..ensemble_cost import ENSEMBLE, ensemble_cost_note, ensemble_parameters_note

    if len(students) < 2:  # (an ensemble of one is that student: say_ensemble_of_one says it)
        return
    if costs and ENSEMBLE in costs:
        note = ensemble_cost_note(costs[ENSEMBLE], "params and MMACs", "its x smaller", latency=False)
    else:
        note = ensemble_parameters_note(students)
    if note:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
