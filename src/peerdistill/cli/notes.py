"""Notes under a table of figures (on stderr): what n/a means, an ensemble of one, HD95's unit, a
region of interest, the patches a model trained on and the window that scores whole images."""

from __future__ import annotations

from typing import Any

from ..config import DataSpec
from ..values import is_count, is_finite_number
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


def patches_in_words(meta: dict[str, Any]) -> tuple[str, str] | None:
    """A patch-trained run's (run.json's ``patches``, else its data section's keys): what it
    trained on (``random 48x48 patches, 16 per training image an epoch, half of them centred on a
    foreground pixel``) and how whole images are scored (``a sliding 48x48 window moved 36 pixels
    at a time (window_overlap 0.25), ...``); None for a run trained on whole images."""
    from ..runs import saved_window

    window, overlap = saved_window(meta)
    if window is None or not is_count(window[0]) or not is_finite_number(overlap) or not 0 <= overlap < 1:
        return None
    side = window[0]
    patches, spec = meta.get("patches") or {}, meta.get("data_spec") or {}
    per_image = patches.get("per_image", spec.get("patches_per_image"))
    foreground = patches.get("foreground", spec.get("foreground_oversample"))
    trained = f"random {side}x{side} patches"
    if is_count(per_image):
        images = (meta.get("split_sizes") or {}).get("train")
        each = f" ({per_image * images:,} from its {images:,} training images)" if is_count(images) and images else ""
        trained += f", {per_image} per training image an epoch{each}"
    if is_finite_number(foreground) and 0 < foreground <= 1:
        share = ("each" if foreground == 1 else "half of them" if foreground == 0.5 else f"{foreground:.0%} of them")
        trained += f", {share} centred on a foreground pixel"
    step = max(1, int(side * (1 - overlap)))  # (MONAI's: the window's side less the overlap, whole pixels)
    scored = (f"a sliding {side}x{side} window moved {step} pixel{'s' if step != 1 else ''} at a time "
              f"(window_overlap {overlap:g}), the predictions of overlapping windows blended with Gaussian weights")
    return trained, scored


def say_how_images_were_cut(meta: dict[str, Any]) -> None:
    """A patch-trained run's figures: that the models trained on patches, and that the figures
    are of whole images, scored window by window (which window, moved how far)."""
    said = patches_in_words(meta)
    if said:
        err_console.print(f"note: the models trained on {said[0]}; these figures are of whole images, scored by "
                          f"{said[1]}", highlight=False, soft_wrap=True)


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
