"""``peerdistill eval``: a run's models scored on its own splits or on other data, with the
data section eval builds from the run's and the overrides given."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from pydantic import ValidationError

from ..config import (IMAGE_FILE_KINDS, NO_FOLD_KINDS, DataSpec, RunConfig, format_validation_error,
                      load_yaml, saved_data_section, without_other_kinds_keys)
from ..config.messages import section_given_one_value
from ..config.overrides import applied_keys
from ..errors import ConfigError, warn_user
from ..npz_layout import npz_holds_one_set
from ..json_files import read_json
from ..run_files import RUN_FILE
from ..values import is_finite_number
from .consoles import console, err_console
from .decoding import decoding_from
from .words import names_anything
from .notes import (say_which_pixels_count, say_ensemble_of_one, say_how_images_were_cut,
                    say_how_to_read_differences, say_what_detection_figures_are, say_what_not_available_means)


def cmd_eval(ns: argparse.Namespace) -> int:
    if "=" in ns.run_dir and not names_anything(ns.run_dir):  # an override first took the run folder's place
        raise ConfigError(f"'{ns.run_dir}' stands where the run's folder goes: give RUN_DIR first, then the "
                          f"overrides (peerdistill eval RUN_DIR {ns.run_dir})")
    data_overrides = [o for o in ns.overrides if not o.startswith("detect.")]
    decoding_overrides = [o for o in ns.overrides if o.startswith("detect.")]
    decoding = decoding_from(decoding_overrides, "eval")
    data_spec = _data_spec(ns, data_overrides) if ns.data or data_overrides else None
    # torch comes with these: only once the overrides are checked
    from ..engine.artifacts import jsonable
    from ..runs import evaluate_run, unfinished_note

    scores = evaluate_run(ns.run_dir, split=ns.split, data_spec=data_spec, device=ns.device, save_images=ns.save_images,
                          operating_point=ns.operating_point, decoding=decoding, bootstrap=ns.bootstrap,
                          temperature_scaling=ns.temperature_scaling, tta=ns.tta, per_sample=ns.per_sample,
                          baseline=ns.baseline, score_thresholds=ns.score_thresholds,
                          roles=("student",) if ns.students_only else ("teacher", "student"))
    if ns.json:
        # under --tta every figure is of the flipped predictions: named so, as compare names them
        printed = {model: {f"tta_{k}": v for k, v in figures.items()} for model, figures in scores.items()} \
            if ns.tta else scores
        print(json.dumps(jsonable(printed), indent=2, allow_nan=False))  # NaN is not JSON: null
        # how much was scored, as the table's title says: on stderr, the JSON holding only figures
        err_console.print(f"{ns.split} split: {scores.samples:,} samples{_decoded_with(decoding_overrides)}",
                          highlight=False, soft_wrap=True)
    else:
        _show_tables(ns, scores, data_overrides, data_spec, decoding_overrides, decoding)
    if ns.per_sample:  # on stderr: --json keeps stdout pure JSON
        err_console.print(f"per-sample figures: {ns.per_sample}", highlight=False, soft_wrap=True)
    if ns.save_images:
        from ..runs import pictures_folder

        err_console.print(f"pictures: {pictures_folder(ns.run_dir, ns.split, data_spec)}/MODEL/", highlight=False,
                          soft_wrap=True)
    if (note := unfinished_note(ns.run_dir)) is not None:  # last, under the figures it qualifies
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    return 0


def _data_spec(ns: argparse.Namespace, data_overrides: list[str]) -> DataSpec:
    """The data eval scores: the run's data section, or --data's, with the data.* overrides given
    (keys of another kind and the augmentation dropped; grey image files for a grey model)."""
    meta = read_json(Path(ns.run_dir) / RUN_FILE) if (Path(ns.run_dir) / RUN_FILE).exists() else {}
    tree = {"data": saved_data_section(meta.get("data_spec") or {}, meta.get("data_root"))}
    if ns.data:
        tree["data"] = _data_section(ns.data)
    for override in data_overrides:
        if not override.startswith(("data.", "data=")):
            raise ConfigError(f"eval takes only data.* and detect.* overrides, got '{override}'")
    base = copy.deepcopy(tree["data"])  # (the overrides change the section in place)
    overridden = applied_keys(tree, data_overrides)
    if tree.get("data") is None:  # data=null leaves the section at its default, as train's does: the run's (--data's)
        tree["data"] = base
    if not isinstance(tree["data"], dict):
        raise ConfigError(f"invalid data section:\n  {section_given_one_value('data', tree['data'], DataSpec)}")
    # the saved section's keys of another kind (data.kind=... changed it) and its
    # augmentation (eval does not augment) go; what the user gave is checked
    # (data={root: x, kind: npz} merges into the section as train's does: review 53i)
    given = {key.split(".")[1] for key in overridden if "." in key}
    written = given | (set(tree["data"]) if ns.data else set())  # a --data section is the user's own
    if "grey" not in written and (meta.get("input_shape") or [0])[0] == 1 and \
            tree["data"].get("kind") in IMAGE_FILE_KINDS:
        tree["data"]["grey"] = True  # the models take one channel: image files are read so
    _warn_of_data_keys_read_otherwise(tree["data"], saved_data_section(meta.get("data_spec") or {}), given,
                                      whole_section=bool(ns.data))
    tree["data"] = without_other_kinds_keys(tree["data"], keep=written)
    if not ns.data:  # each apart: the run's ranges would not fit an augment given here
        for key in {"augment", "augment_range"} - given:
            tree["data"].pop(key, None)
    kind = tree["data"].get("kind")
    own_splits = kind == "npz" and npz_holds_one_set(tree["data"].get("root")) is False  # (None: unreadable)
    unread = (("split_seed", "val_fraction", "test_fraction") if own_splits
              else ("val_fraction", "test_fraction") if kind in NO_FOLD_KINDS else ())
    typed = [f"data.{k}" for k in unread if k in given]
    if typed:  # (the run's own keys, carried, are not the user's: not said; review 47d)
        why = (f"'{tree['data'].get('root')}' gives its own train, val and test arrays, which eval scores as they "
               "are" if own_splits else
               f"data kind '{kind}' generates each split apart, as many images as data.{kind}_counts says")
        warn_user(f"{', '.join(typed)} change{'s' if len(typed) == 1 else ''} nothing here: {why}")
    if not ns.data and (kind in NO_FOLD_KINDS or tree["data"].get("folds") is None or (
            kind == "npz" and not npz_holds_one_set(tree["data"].get("root")))):
        # the run's folds do not carry over to data that cannot be cut into folds, or past data.folds=null
        for key in ("folds", "fold"):
            if key not in given:
                tree["data"].pop(key, None)
    try:
        return DataSpec.model_validate(tree["data"])
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "data section", DataSpec)) from None


def _group_key(data_spec: DataSpec | None, meta: dict) -> str:
    """The key that found the scored samples' groups, and its value."""
    read = data_spec.model_dump() if data_spec is not None else (meta.get("data_spec") or {})
    if read.get("group_column"):
        return f"data.group_column '{read['group_column']}'"
    return f"data.group_pattern '{read.get('group_pattern')}'" if read.get("group_pattern") else "the run's groups"


def _decoded_with(decoding_overrides: list[str]) -> str:
    """What a title adds when boxes were decoded otherwise than the run decodes them."""
    return f", boxes decoded with {', '.join(decoding_overrides)}" if decoding_overrides else ""


def say_ece_intervals_run_high(scores) -> None:
    """ECE's bootstrap interval is biased upward (review 52d: one lay wholly above its ECE): said,
    naming a model whose ECE lies below its own interval where one does."""
    below = [(m, f) for m, f in scores.items() if is_finite_number(f.get("ece")) and
             is_finite_number(f.get("ci95_low_ece")) and f["ece"] < f["ci95_low_ece"]]
    here = (f" (here {below[0][0]}'s {below[0][1]['ece']:.4f} against [{below[0][1]['ci95_low_ece']:.4f}, "
            f"{below[0][1]['ci95_high_ece']:.4f}])" if below else "")
    err_console.print(f"note: resampling biases ECE upward (repeated samples add noise to its bins, which it counts "
                      f"as miscalibration), so its interval runs high and may lie wholly above the ECE itself{here}: "
                      "read it as the spread of resampled ECEs, not as bounds on the ECE (two models' ECEs are "
                      "better compared by --baseline's paired differences, where the bias partly cancels)", highlight=False, soft_wrap=True)


def _show_tables(ns: argparse.Namespace, scores, data_overrides: list[str], data_spec: DataSpec | None,
                 decoding_overrides: list[str], decoding: dict | None) -> None:
    """eval's tables on the console, titled with the data scored, and the notes under them."""
    from ..report import (calibration_table, difference_table, fitted, interval_table, operating_point_table,
                          per_class_rich_tables, results_table, threshold_table, THRESHOLD_FIGURE)
    from ..runs import task_for

    meta = read_json(Path(ns.run_dir) / RUN_FILE)
    # which data and how much of it: a table of other data must not read as the run's test figures
    of = f"--data {ns.data}" if ns.data else ", ".join(data_overrides) if data_overrides else "the run's data"
    count = scores.samples
    title = (f"{ns.run_dir}: {ns.split} split of {of} ({count:,} samples)"
             + (f", test-time {ns.tta}" if ns.tta else "") + _decoded_with(decoding_overrides))
    summary = task_for(meta).summary_metrics

    def show(table):  # figures whole, even in a narrow terminal
        console.print(fitted(table, console.width))

    if ns.bootstrap:
        groups = next(iter(scores.values())).get("ci95_groups")
        of = f"its {groups} groups ({_group_key(data_spec, meta)})" if groups else "its samples"
        show(interval_table(scores, f"{title}: [95% interval, bootstrap over {ns.bootstrap} resamples of {of}]",
                            summary))
        if "ece" in summary:
            say_ece_intervals_run_high(scores)
        if ns.baseline:
            from ..metrics import unpaired_metric

            paired = tuple(m for m in summary if not unpaired_metric(m))
            show(difference_table(scores, f"{title}: minus {ns.baseline}, paired [95% interval of the difference over "
                                          "the same resamples]", paired, ns.baseline))
            say_how_to_read_differences(ns.baseline, paired, left_out=[m for m in summary if unpaired_metric(m)])
    else:
        show(results_table(title, scores, metrics=summary))
    if ns.per_class:
        for table in per_class_rich_tables(scores, title):
            show(table)
    if ns.temperature_scaling:
        show(calibration_table(scores, f"{title}: tempered by the temperature each model's probabilities fit "
                                       "on the run's validation split"))
    say_which_pixels_count(meta, data_spec)
    say_how_images_were_cut(meta)
    say_ensemble_of_one(meta, scores)
    say_what_detection_figures_are(meta, decoding)
    if ns.score_thresholds is not None:
        for model in (m for m in scores if m != "ensemble"):
            show(threshold_table(scores[model], f"{title}: {model}'s boxes scoring each threshold or more, matched at "
                                                "IoU 0.5"))
        decoded = (decoding or {}).get("score_threshold", (meta.get("detection") or {}).get("score_threshold"))
        shown = "ensemble" in scores and any(THRESHOLD_FIGURE.match(key) for key in scores["ensemble"])
        if shown:
            show(threshold_table(scores["ensemble"], f"{title}: the ensemble's boxes, fused from the students' decoded "
                                                     f"at {decoded:g}, scoring {decoded:g} or more (what predict "
                                                     "keeps), matched at IoU 0.5"))
        # (review 55n: said scored when --score-thresholds left the decoding's own threshold out)
        alone = (f"scored at detect.score_threshold ({decoded:g}) alone" if shown else
                 f"scored at detect.score_threshold ({decoded:g}) alone, which --score-thresholds does not list here")
        err_console.print("note: choose the threshold on the validation split (--split val), check it on the test "
                          f"split, and give it to predict and export as detect.score_threshold=T. The ensemble is "
                          f"{alone}: its boxes are fused from the students' decoded there, so score it at T by "
                          "decoding at it: eval RUN_DIR detect.score_threshold=T --score-thresholds T", highlight=False,
                          soft_wrap=True)
    if ns.operating_point:
        names = meta.get("class_names") or ["0", "1"]
        tempered = (", on the tempered probabilities (the threshold is on that scale, as export and predict apply "
                    "it)" if ns.temperature_scaling else "")
        show(operating_point_table(scores, f"{title}: at the threshold {ns.operating_point} picks on the run's "
                                           f"validation split{tempered} (positive: '{names[-1]}')"))
    say_what_not_available_means(scores, _shown_figures(scores, summary, ns))


# data keys eval does not apply: the run's own statistics and window hold; nothing is augmented, weighted or cut
UNUSED_BY_EVAL = ("normalize", "class_weights", "augment", "augment_range", "patch_size", "patches_per_image",
                  "foreground_oversample", "window_overlap")
# data keys that change what is read or counted (a DICOM window is warned of by evaluate_run)
READING_KEYS = ("roi", "binary_masks", "pattern", "image_size", "grey", "pixel_spacing")


def _warn_of_data_keys_read_otherwise(section: dict, saved: dict, given: set[str], whole_section: bool) -> None:
    """A key eval ignores, given on the command line, or a --data section leaving out (or
    changing) how training read its data, is said, not dropped in silence."""
    unused = sorted(k for k in given if k in UNUSED_BY_EVAL)
    if unused:
        warn_user(f"eval does not use {', '.join('data.' + k for k in unused)}: it reads data with the run's own "
                  "normalisation statistics and window, and does not augment, weight or cut it into patches")
    changed = [k for k in READING_KEYS if whole_section and saved.get(k) not in (None, False)
               and section.get(k) != saved[k]]
    if changed:
        shown = "; ".join(f"data.{k} is {section.get(k)!r}, in training {saved[k]!r}" for k in changed)
        warn_user(f"--data reads its data otherwise than training read the run's ({shown}): what is read or "
                  "counted differs (a region of interest left out counts the pixels outside it); give those keys "
                  "to score it as the run was scored")


def _data_section(path: str) -> dict:
    """eval --data: a YAML file's data section (or a bare mapping of data keys)."""
    given = Path(path)
    if given.is_dir() or given.suffix.lower() in (".npz", ".csv", ".png", ".jpg", ".jpeg", ".dcm"):
        raise ConfigError(f"--data takes a YAML file holding a data section, and '{path}' is data itself: to score "
                          "it, give data.root=PATH (and data.kind=... when it is not of the run's kind)")
    loaded = load_yaml(path, "--data file")
    others = sorted(set(loaded) & (set(RunConfig.model_fields) - {"data"})) if isinstance(loaded, dict) else []
    if others and "data" not in loaded:  # (read as data keys, each was refused with the 35 valid ones)
        raise ConfigError(f"--data '{path}' is a config without a data section (it holds {', '.join(others)}): give a "
                          "file with one, data: {kind: image_folder, root: PATH}, or a mapping of data keys alone")
    section = loaded.get("data", loaded) if isinstance(loaded, dict) else loaded
    if not isinstance(section, dict):
        raise ConfigError(f"--data '{path}': its data section must be a mapping of data keys (e.g. data: {{kind: "
                          f"image_folder, root: PATH}}), got {'null' if section is None else type(section).__name__}")
    if not section:  # else the defaults: the embedded digits
        raise ConfigError(f"--data '{path}' holds no data section: write one, e.g. data: {{kind: image_folder, "
                          "root: PATH}")
    return section


def _shown_figures(scores: dict, summary, ns: argparse.Namespace) -> list[str]:
    """The figures eval's tables show, by the options given (a note on n/a looks at these)."""
    from ..metrics import per_class_part
    from ..report import THRESHOLD_FIGURE

    shown = [f"{bound}{m}" for m in summary for bound in (("", "ci95_low_", "ci95_high_") if ns.bootstrap else ("",))]
    for key in next(iter(scores.values()), {}):
        if ((ns.per_class and per_class_part(key)) or (ns.operating_point and key.startswith("op_"))
                or (ns.temperature_scaling and key.startswith("cal_"))
                or (ns.score_thresholds is not None and THRESHOLD_FIGURE.match(key))):
            shown.append(key)
    return shown
