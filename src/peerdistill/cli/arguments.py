"""The command line's parser: every command, its options and their argument types (an option
given twice, or abbreviated, is refused)."""

from __future__ import annotations

import argparse

from .. import __version__
from .commands import cmd_compare, cmd_export, cmd_predict, cmd_presets, cmd_report, cmd_train
from .eval_command import cmd_eval


def _whole(text: str) -> int:
    """An argparse type: a whole number (its range is checked where it is used, and said so)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number such as 3, got '{text}'") from None


def _given_first_time(parser: argparse.ArgumentParser, namespace: argparse.Namespace, dest: str,
                      option_string: str | None) -> None:
    """Refuse an option given a second time (``_Once``, ``_OnceFlag``)."""
    seen = namespace.__dict__.setdefault("_given_once", set())
    if dest in seen:
        parser.error(f"{option_string} is given twice: give it once"
                     + (" (several presets: --presets kd,kd+ml)" if dest == "presets" else ""))
    seen.add(dest)


class _Once(argparse._StoreAction):
    """An option given once: given again, it would silently replace the first (as --presets kd
    --presets ml ran ml alone), while --setting adds up. Every command's plain options are so
    (``_Parser``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        _given_first_time(parser, namespace, self.dest, option_string)
        setattr(namespace, self.dest, values)


class _OnceFlag(argparse._StoreTrueAction):
    """A flag given once (twice is likely a line pasted in twice, or a mistake for another flag)."""

    def __call__(self, parser, namespace, values, option_string=None):
        _given_first_time(parser, namespace, self.dest, option_string)
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    """argparse with ``_Once`` as its plain option action and ``_OnceFlag`` as its flag action,
    and no abbreviations (--seed must not silently mean --seeds)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.register("action", None, _Once)
        self.register("action", "store", _Once)
        self.register("action", "store_true", _OnceFlag)


def _count(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    if not (text.isascii() and text.isdigit()):  # ('²' is a digit to str.isdigit, not to int)
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got '{text}'")
    return int(text)


# More resamples than this add nothing to a 95% interval's percentiles and would run for hours.
MAX_BOOTSTRAP = 100_000


def _resamples(text: str) -> int:
    """An argparse type: --bootstrap's count."""
    count = _count(text)
    if count > MAX_BOOTSTRAP:
        raise argparse.ArgumentTypeError(f"at most {MAX_BOOTSTRAP:,} resamples, got {count:,} (1,000 to 10,000 give a "
                                         "95% interval's percentiles to well within its width)")
    return count


def _scores(text: str) -> tuple[float, ...]:
    """An argparse type: --score-thresholds' comma-separated scores."""
    try:
        scores = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        scores = ()
    if not scores:  # (an empty word, an unset shell variable: not the default list in silence)
        after = " (an override after --score-thresholds is taken as its value: put it before)" if "=" in text else ""
        raise argparse.ArgumentTypeError(f"expected scores separated by commas, e.g. 0.1,0.3,0.5, got '{text}'{after}")
    return scores


def _given(text: str) -> str:
    """An argparse type: a text that is not empty (an unset shell variable, --out "$DIR", would
    otherwise quietly mean the default, or the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: give a value (an unset shell variable gives an empty one)")
    return text


# engine.tta.TTA_FLIPS' names, here without torch (the parser comes before it; a test keeps them alike)
TTA_CHOICES = ("hflip", "flips")


def _chosen_on_validation_options(parser: argparse.ArgumentParser, where: str, threshold_where: str | None = None
                                  ) -> None:
    """export's and predict's --temperature-scaling, --operating-point (``export.chosen_on_validation``)
    and --tta (``export.flip_averaged``); ``where`` says what becomes of each, ``threshold_where``
    of the threshold where that differs."""
    parser.add_argument("--temperature-scaling", action="store_true",
                        help=f"classification: the temperature the model's probabilities fit on the run's validation "
                             f"split (as eval --temperature-scaling fits it), {where}")
    parser.add_argument("--operating-point", metavar="RULE", default=None, type=_given,
                        help=f"two-class classification: the threshold RULE (youden, sensitivity=S, specificity=S) "
                             f"picks on the run's validation split, the positive (second) class called where its "
                             f"probability reaches it, {threshold_where or where}")
    parser.add_argument("--tta", choices=TTA_CHOICES, default=None,
                        help=f"classification, segmentation: probabilities averaged over the input and its mirror "
                             f"(hflip) or all four mirrorings (flips), as eval --tta scores them, {where}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="peerdistill",
        description="Knowledge distillation in a cohort: a teacher and several students trained together. "
                    "Train, compare presets over seeds, score, export, predict and report.")
    parser.add_argument("--version", action="version", version=f"peerdistill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.commands = sub.choices  # each command's parser: its usage goes with its errors
    _add_train(sub)
    _add_eval(sub)
    _add_compare(sub)
    _add_export(sub)
    _add_predict(sub)
    _add_report(sub)
    _add_presets(sub)
    return parser


def _add_train(sub: argparse._SubParsersAction) -> None:
    """train: a run from a config (or the embedded default), or one resumed."""
    train = sub.add_parser("train", help="train a cohort (no CONFIG: the embedded digits default)")
    train.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                       help="a config file (default: the embedded digits config) and key=value overrides of it "
                            "(e.g. train.epochs=5 data.root=x.npz)")
    train.add_argument("--resume", metavar="RUN_DIR", type=_given,
                       help="continue an interrupted run from its last checkpoint, with its saved config (no "
                            "CONFIG, overrides or --overwrite)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument("--quiet", action="store_true",
                       help="no progress (bars on a terminal, a line per epoch in a log)")
    train.add_argument("--dry-run", action="store_true",
                       help="read the data, build the models and edges, run one forward of a few validation samples "
                            "and print what the run would be (models, sizes, steps, device, the warnings), writing "
                            "nothing")
    train.set_defaults(func=cmd_train)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    """eval: a run's saved models scored on a split or on other data."""
    ev = sub.add_parser("eval", help="score the saved models of a run on a split or other data")
    ev.add_argument("run_dir", metavar="RUN_DIR", type=_given)
    ev.add_argument("overrides", nargs="*", default=[], metavar="data.key=value | detect.key=value",
                    help="other data (data.*), or for a detection run other box decoding and fusion: "
                         "detect.score_threshold, nms_iou, max_detections, ensemble (wbf, nms, nmw), ensemble_iou")
    ev.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                    help="the split to score (default test); all: train, val and test together (other data scored "
                         "whole)")
    ev.add_argument("--data", metavar="DATA.yaml", type=_given, help="a YAML file with a data section (default: the run's data)")
    ev.add_argument("--device", default="auto", type=_given,
                    help="auto (CUDA when there is an NVIDIA GPU, else cpu), cpu, cuda, cuda:N or mps (default auto)")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON (every metric, per class too)")
    ev.add_argument("--per-class", action="store_true",
                    help="also a table per class: precision and recall (classification), dice and iou "
                         "(segmentation), ap and ap50 (detection)")
    ev.add_argument("--operating-point", metavar="RULE", default=None, type=_given,
                    help="two-class classification: also score at the threshold RULE picks on the run's validation "
                         "split: youden, sensitivity=S or specificity=S (e.g. specificity=0.95)")
    ev.add_argument("--temperature-scaling", action="store_true",
                    help="classification: also fit each model's temperature on the run's validation split "
                         "(temperature scaling) and score the split with it: ece and brier before and after "
                         "(in --json: cal_temperature, cal_ece, cal_brier)")
    ev.add_argument("--tta", choices=TTA_CHOICES, default=None,
                    help="classification and segmentation: average each model's probabilities over the image and "
                         "its mirror (hflip) or all four mirrorings (flips), masks mirrored back")
    ev.add_argument("--bootstrap", type=_resamples, default=0, metavar="N",
                    help="also a 95%% interval for every metric: the percentiles over N resamples (with replacement) "
                         "of the split's samples, each scored as the split is (40 to 100,000, e.g. 1000; in --json: "
                         "ci95_low_METRIC, ci95_high_METRIC)")
    ev.add_argument("--baseline", metavar="MODEL", default=None, type=_given,
                    help="with --bootstrap: also every other model's metrics minus MODEL's (e.g. teacher, ensemble; not the "
                         "--operating-point or --temperature-scaling figures, nor HD95), "
                         "with the 95%% interval of each difference over the same resamples (a paired bootstrap; in "
                         "--json: diff_METRIC, ci95_low_diff_METRIC, ci95_high_diff_METRIC)")
    ev.add_argument("--score-thresholds", type=_scores, nargs="?", const=(), default=None,  # (): the default
                    metavar="T1,T2,...",
                    help="detection: also each model's boxes per frame, precision, recall and F1 at IoU 0.5 of the "
                         "boxes scoring each T or more (default 0.05,0.1,0.2,...,0.9, from the run's "
                         "detect.score_threshold up; the ensemble at detect.score_threshold alone): choose on --split val the "
                         "detect.score_threshold predict and export run at (in --json: atT_precision, ...)")
    ev.add_argument("--save-images", "--save-masks", dest="save_images", type=_count, default=0, metavar="N",
                    help="segmentation and detection: save pictures of N samples per model to RUN_DIR/eval/SPLIT/ "
                         "(other data's to RUN_DIR/eval/SPLIT-NAME-DIGEST/): predicted masks and overlays "
                         "(segmentation), predicted and true boxes (detection)")
    ev.add_argument("--per-sample", metavar="FILE.csv", default=None, type=_given,
                    help="also write a CSV with a row per scored sample and model: the file (where the data has "
                         "files), truth, prediction and class probabilities (classification), the image's own "
                         "dice, iou, hd95, ... (segmentation), its AP and box counts (detection)")
    ev.add_argument("--students-only", action="store_true",
                    help="score the students and their ensemble without rebuilding the teacher(s)")
    ev.set_defaults(func=cmd_eval)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    """compare: settings over seeds (and folds), their tables and paired differences."""
    cmp_ = sub.add_parser("compare", help="run presets or configs over several seeds and tabulate mean ± std")
    cmp_.add_argument("args", nargs="*", metavar="[CONFIG.yaml ...] [key=value ...]")
    cmp_.add_argument("--setting", action="append", metavar="NAME:KEY=VALUE", type=_given,
                      help="a row of its own: every config with this override, named NAME (repeat with the same "
                           "NAME for more keys; NAME alone: the config as it is), e.g. --setting flips --setting "
                           "turns:data.augment=[hflip,rotate] --setting 'turns:data.augment_range={rotate: 10}'")
    cmp_.add_argument("--presets", default=None, type=_given,
                      help="comma-separated presets run with every config (default: each config's own preset)")
    cmp_.add_argument("--out", default=None, type=_given,
                      help="directory of the comparison (default OUT_DIR/NAME-compare)")
    cmp_.add_argument("--seeds", type=_whole, default=3,
                      help="runs per setting, with seeds seed, seed+1, ... (default 3)")
    cmp_.add_argument("--folds", type=_whole, default=None, metavar="K",
                      help="k-fold cross-validation: every seed runs K times, each fold of the data once the "
                           "test split (data.folds=K, data.fold=0..K-1); the table is over folds and seeds")
    cmp_.add_argument("--operating-point", metavar="RULE", default=None, type=_given,
                      help="two-class classification: also tabulate every model at the threshold RULE picks on its "
                           "run's validation split (youden, sensitivity=S, specificity=S), as eval does")
    cmp_.add_argument("--teacher-from", default=None, metavar="PRESET", type=_given,
                      help="train the teachers in PRESET's runs first, then freeze them (per seed) as the "
                           "teachers of the other presets, e.g. --teacher-from independent")
    cmp_.add_argument("--temperature-scaling", action="store_true",
                      help="classification: also tabulate each run's models tempered by the temperature fitted on its "
                           "validation split (cal_temperature, cal_ece, cal_brier)")
    cmp_.add_argument("--tta", choices=TTA_CHOICES, default=None,
                      help="classification, segmentation: also tabulate each run's models with their probabilities "
                           "averaged over flips of the test images (tta_METRIC), as eval --tta does")
    cmp_.add_argument("--baseline", default=None, metavar="SETTING", type=_given,
                      help="tabulate every other setting's paired difference from this one, with a 95%% confidence "
                           "interval (default: independent when compared, else the first setting)")
    cmp_.add_argument("--jobs", type=_whole, default=1, metavar="N",
                      help="train N runs at once, each in its own process with its share of the CPU threads "
                           "(default 1; on one GPU they share it: worth it when one run leaves it idle; with several GPUs "
                           "each worker takes one in turn)")
    cmp_.add_argument("--overwrite", action="store_true", help="rerun finished runs instead of reusing them")
    cmp_.add_argument("--dry-run", action="store_true",
                      help="list each run and what it would do (train, continue, reuse), then stop")
    cmp_.add_argument("--quiet", action="store_true", help="no progress bars (the tables are still printed)")
    cmp_.set_defaults(func=cmd_compare)


def _add_export(sub: argparse._SubParsersAction) -> None:
    """export: a student or the ensemble as ONNX or safetensors."""
    exp = sub.add_parser("export", help="write a trained student (or the ensemble) as ONNX or safetensors")
    exp.add_argument("run_dir", metavar="RUN_DIR", type=_given)
    exp.add_argument("overrides", nargs="*", default=[], metavar="detect.key=value",
                     help="detection: the box decoding the JSON beside the graph carries, for predict to apply "
                          "(detect.score_threshold, nms_iou, max_detections; as eval takes them)")
    exp.add_argument("--model", default="best", type=_given,
                     help="a model name, 'best' (best validation student; the default) or 'ensemble'")
    exp.add_argument("--format", default=None, choices=["onnx", "safetensors"],
                     help="default: from the --out file's extension, else onnx")
    exp.add_argument("--out", default=None, type=_given,
                     help="output file, or a folder (one that exists, or a path without an extension) to write "
                          "MODEL.FORMAT in (default RUN_DIR/export/MODEL.FORMAT)")
    exp.add_argument("--quantize", default=None, choices=["int8"],
                     help="ONNX, classification and segmentation: quantize to int8 (static, calibrated on the "
                          "run's training images), written as MODEL-int8.onnx only if it keeps the fp32 class "
                          "(the call at --operating-point's threshold) for --min-agreement of the test predictions; "
                          "a segmenter's mask of each class must reach that Dice against the fp32 one")
    exp.add_argument("--calibration-samples", type=_whole, metavar="N",
                     help="training images the int8 activation ranges are taken from (default 200)")
    exp.add_argument("--min-agreement", type=float, metavar="SHARE",
                     help="int8: the share of test predictions that must keep the fp32 graph's class, or for "
                          "segmentation the Dice each class's int8 mask must reach against the fp32 one (default "
                          "0.99)")
    _chosen_on_validation_options(exp, "put into the ONNX graph",
                                  threshold_where="written into the JSON beside the ONNX file, which predict applies")
    exp.set_defaults(func=cmd_export)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    """predict: a run's model or an exported file applied to images."""
    pred = sub.add_parser("predict", help="apply a run's model or an exported .onnx to images, folders or an .npz")
    pred.add_argument("model_path", metavar="RUN_DIR_OR_MODEL.onnx", type=_given)
    pred.add_argument("inputs", nargs="+", metavar="INPUT", type=_given,
                      help="image files, folders of them or an .npz; for a detector, also detect.key=value: box "
                           "decoding and fusion other than the run's or the export's (detect.score_threshold, "
                           "nms_iou, max_detections, ensemble, ensemble_iou)")
    _chosen_on_validation_options(pred, "applied to a run directory's model (an exported file carries its own)")
    pred.add_argument("--visible-masks", action="store_true",
                      help="segmentation: write masks with the classes spread over 0..255 (two classes: 0 and 255, "
                           "as viewers show them and data.binary_masks reads them back) instead of class indices")
    pred.add_argument("--overlays", metavar="DIR", default=None, type=_given,
                      help="segmentation and detection: also draw the predictions on each input, at its own size, "
                           "into DIR (<name>_overlay.png: classes tinted; <name>_boxes.png: boxes, class and score)")
    pred.add_argument("--roi", metavar="DIR", default=None, type=_given,
                      help="segmentation: a folder of region masks (DRIVE's field of view), one per input, paired "
                           "by name as training paired them (the run's data.pattern); the masks written are "
                           "background outside the region, where evaluation counts no pixel")
    pred.add_argument("--out", required=True, type=_given, help="classification and detection: a CSV file; segmentation: a folder for masks")
    pred.add_argument("--skip-unreadable", action="store_true",
                      help="predict the inputs that can be read, and list the others (damaged files, formats not "
                           "read), each with why, in NAME.unreadable.csv beside the --out CSV (in the masks' folder "
                           "for segmentation); without it, any unreadable input stops predict, all of them named")
    pred.add_argument("--model", default=None, type=_given,
                      help="with a RUN_DIR: a model name, 'best' (default) or 'ensemble' (for detection, the "
                           "students' boxes fused as in evaluation)")
    pred.set_defaults(func=cmd_predict)


def _add_report(sub: argparse._SubParsersAction) -> None:
    """report: a run's or a comparison's HTML page."""
    rep = sub.add_parser("report", help="one self-contained HTML page of a run or a comparison")
    rep.add_argument("path", metavar="RUN_DIR_OR_COMPARE_DIR", type=_given)
    rep.add_argument("--out", default=None, type=_given,
                     help="output file, or a folder (one that exists, or a path without an extension) for "
                          "report.html (default PATH/report.html)")
    rep.set_defaults(func=cmd_report)


def _add_presets(sub: argparse._SubParsersAction) -> None:
    """presets: the list of presets."""
    pre = sub.add_parser("presets", help="list the presets")
    pre.set_defaults(func=cmd_presets)
