"""The test predictions of a run's saved models: reliability, confusion and ROC figures
(classification), masks beside the truth (segmentation), boxes (detection)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


import matplotlib.pyplot as plt
import numpy as np
import torch

from ..sample_names import sample_names
from ..engine.artifacts import RunDir
from ..engine.evaluate import ENSEMBLE, split_probabilities
from ..errors import CheckpointError, ConfigError, DataError
from ..metrics import ECE_BINS, expected_calibration_error, reliability_bins
from ..operating_point import FIGURES, Rule, operating_points
from ..pictures import PALETTE, PICTURE_MIN_SCORE, box_colour_index, display_batch, label_places
from ..report import fmt
from ..scored_data import data_on_the_command_line
from .html_parts import figure_html, legend_name, note_html, section_html, table_html

PICTURED_SAMPLES = 4  # the test images drawn with their masks or boxes
CLASS_COLORS = ["#{:02x}{:02x}{:02x}".format(*colour) for colour in PALETTE.tolist()]  # eval's pictures' colours


def predictions_section(directory: Path, meta: dict[str, Any]) -> tuple[str, str | None]:
    """Confusion matrix and ROC curves (classification) or sample masks (segmentation) on the
    test split; a note when the models or the data cannot be loaded again, and why."""
    segmentation = meta.get("task") == "segmentation"
    title = "Test samples" if segmentation else "Test predictions"  # detection: samples too, below
    if not meta.get("data_spec"):  # evaluate_run's advice (data=) is not the report's to take
        why = ("the run's data was given in Python (DataSplits), which the run cannot read again; eval scores its "
               f"models on data you give: peerdistill eval RUN_DIR {data_on_the_command_line(meta)}")
        return section_html(title, [note_html(f"Predictions skipped: {why}.")]), why
    try:
        cohort, task, data, window, overlap = load_for_predictions(directory)
    except (CheckpointError, ConfigError, DataError) as exc:  # ConfigError: a model's library is missing here
        return section_html(title, [note_html(f"Predictions skipped: the saved models or the data could not be "
                                              f"loaded again ({exc}).")]), str(exc)
    unfinished = [] if RunDir(directory).is_complete else [note_html(
        "The run has not finished: these use the weights of its best epoch so far.")]
    trained_on, now = (meta.get("data_info") or {}).get("sha256"), data.info.get("sha256")
    if trained_on and now and trained_on != now:  # (review 50h: said on the console alone, beside figures of it)
        unfinished.append(note_html(
            "The run's data file is not byte for byte the one training read (its SHA-256 differs from run.json's "
            "data_info.sha256): if its arrays changed, these are of other images than the test table above; put "
            "back the archive training read (if it was only saved anew, they stand)."))
    if segmentation:
        return section_html(title, unfinished + segmentation_parts(cohort, task, data.test, meta, window, overlap,
                                                                      _pictured_names(data))), None
    if meta.get("task") == "detection":
        return section_html("Test samples", unfinished + detection_parts(cohort, task, data.test, meta,
                                                                                names=_pictured_names(data))), None
    return section_html(title, unfinished + classification_parts(cohort, task, data, meta, window, overlap)), None


def load_for_predictions(directory: Path):
    from ..runs import check_compatible, load_cohort, read_run_data, saved_window, task_for

    cohort, meta = load_cohort(directory)
    # checked and numbered as eval does it: data changed since training is not drawn as the run's
    data = read_run_data(meta, "The report reads the data where training read it (a relative data.root counts "
                               "from the current folder): run it from the folder training ran in, or put the data "
                               "back where training read it")
    data = check_compatible(data, meta)
    cohort.to(torch.device("cpu"))
    window, overlap = saved_window(meta)
    return cohort, task_for(meta), data, window, overlap


def classification_parts(cohort, task, data, meta, window, overlap) -> list[str]:
    probs, y = split_probabilities(cohort, task, data.test, torch.device("cpu"), window, overlap)
    num_classes = meta["num_classes"]
    names = meta.get("class_names") or [str(c) for c in range(num_classes)]
    parts = [figure_html(confusion_figure(y, probs[ENSEMBLE].argmax(axis=1), names, ensemble_words(meta)),
                         f"confusion matrix of {ensemble_words(meta)} on the test split ({len(y)} samples), each "
                         "assigned its most probable class" + (f" ('{names[1]}' where its probability is above 0.5, "
                                                               "not at a threshold chosen on validation)"
                                                               if num_classes == 2 else ""))]
    if len(np.unique(y)) < 2:
        parts.append(note_html("ROC curves skipped: the test split holds a single class."))
        return parts
    absent = [names[c] for c in range(num_classes) if not (y == c).any()]
    if num_classes > 2 and absent:  # (their one-vs-rest curves have no positives: the table's auc is n/a too)
        parts.append(note_html(f"ROC curves skipped: the test split holds no sample of {', '.join(absent)}, whose "
                               "one-vs-rest curves are undefined (the table's auc is n/a for the same reason)."))
        parts.append(figure_html(reliability_figure(probs, y), RELIABILITY_CAPTION))
        return parts
    kind = (f"'{names[1]}' as the positive class, {int((y == 1).sum())} of {len(y)} test samples" if num_classes == 2 else "per model, the mean of each class's one-vs-rest curve, "
            "whose area is the table's macro-average auc")
    chosen = youden_points(cohort, task, data.val, (probs, y), window, overlap) if num_classes == 2 else None
    marked = "; the cross marks the ensemble's threshold chosen on the validation split (Youden)" if chosen else ""
    parts.append(figure_html(roc_figure(probs, y, num_classes, chosen),
                             f"ROC curves on the test split ({kind}); the legend gives each curve's area{marked}"))
    if chosen:
        parts.append("<p>At the threshold each model's Youden index picks on the validation split (as <code>eval "
                     "--operating-point youden</code>), on the test split:</p>")
        parts.append(table_html(["model", *FIGURES], [[name, *(fmt(figures[f]) for f in FIGURES)]
                                                      for name, figures in chosen.items()]))
    parts.append(figure_html(reliability_figure(probs, y), RELIABILITY_CAPTION))
    return parts


RELIABILITY_CAPTION = (f"reliability diagram on the test split: accuracy against confidence in {ECE_BINS} equal-width "
                       "bins (filled bins only, each point's area by its share of the samples); on the diagonal a "
                       "model's confidence is its accuracy, below it the model is overconfident; the legend gives "
                       "each model's ECE")


def reliability_figure(probs: dict[str, np.ndarray], y: np.ndarray):
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, p in probs.items():
        confidence, accuracy, counts = reliability_bins(p, y)  # binned once, for the curve and its ECE
        filled = counts > 0
        ece = expected_calibration_error(confidence, accuracy, counts)
        style = {"color": "black", "linewidth": 2.5} if name == ENSEMBLE else {}
        (line,) = ax.plot(confidence[filled], accuracy[filled], label=legend_name(f"{name} (ECE {ece:.3f})"), **style)
        # each bin's point by its share of the samples: a bin of two weighs as little as it counts
        ax.scatter(confidence[filled], accuracy[filled], s=6 + 200 * counts[filled] / counts.sum(),
                   color=line.get_color(), alpha=0.7, zorder=line.get_zorder() + 1)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="confidence (largest probability)", ylabel="accuracy", title="reliability (test)",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")  # (distilled students often lie upper left: underconfident)
    return fig


def ensemble_words(meta: dict) -> str:
    """What the ensemble is, in a caption: with one student, that student (an ensemble needs two)."""
    students = [m["name"] for m in meta.get("members", []) if m.get("role") == "student"]
    return f"{students[0]} (the one student)" if len(students) == 1 else "the student ensemble"


def confusion_figure(y: np.ndarray, pred: np.ndarray, class_names: list[str], of: str = "the student ensemble"):
    from sklearn.metrics import confusion_matrix

    k = len(class_names)
    matrix = confusion_matrix(y, pred, labels=list(range(k)))
    size = min(4 + 0.4 * k, 12)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if k <= 30:
        slanted = k > 10 or sum(len(name) for name in class_names) > 36  # (long names side by side ran together)
        ax.set_xticks(range(k), class_names, rotation=45 if slanted else 0, ha="right" if slanted else "center")
        ax.set_yticks(range(k), class_names)
    if k <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize="small",
                        color="white" if matrix[i, j] > threshold else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"{of.removeprefix('the ')}: confusion matrix (test)")
    return fig


def roc_points(p: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary: the positive class's curve. Multi-class: the macro average of each class's
    one-vs-rest curve, whose area is the mean of theirs, the table's ``auc`` (a micro-averaged
    curve, of every class's scores pooled, had another area: 0.75 where the table said 0.97)."""
    from sklearn.metrics import roc_curve

    if num_classes == 2:
        fpr, tpr, _ = roc_curve(y == 1, p[:, 1])
        return fpr, tpr
    curves = [roc_curve(y == c, p[:, c])[:2] for c in range(num_classes)]
    grid = np.unique(np.concatenate([fpr for fpr, _ in curves]))
    below, above = np.mean([_rates_at(fpr, tpr, grid) for fpr, tpr in curves], axis=0)
    # each grid point twice: the curves rise there (at one false positive rate) from below to above
    return np.repeat(grid, 2), np.column_stack([below, above]).ravel()


def _rates_at(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ROC curve's true positive rate at each of ``grid``'s false positive rates, as it arrives
    there and as it leaves (it rises straight up where several thresholds share a false positive
    rate); between its points, on the straight line joining them."""
    steps, first = np.unique(fpr, return_index=True)
    last = len(fpr) - 1 - np.unique(fpr[::-1], return_index=True)[1]
    arriving, leaving = tpr[first], tpr[last]
    at = np.clip(np.searchsorted(steps, grid, side="right") - 1, 0, len(steps) - 1)  # the point at or before
    on_point = steps[at] == grid
    ahead = np.minimum(at + 1, len(steps) - 1)
    span = np.where(ahead > at, steps[ahead] - steps[at], 1.0)
    between = leaving[at] + (arriving[ahead] - leaving[at]) * (grid - steps[at]) / span
    return np.where(on_point, arriving[at], between), np.where(on_point, leaving[at], between)


def youden_points(cohort, task, val, scored, window, overlap) -> dict[str, dict[str, float]] | None:
    """Each model's figures on the test split at its Youden threshold on ``val``; None where
    validation cannot choose one (a single class)."""
    try:
        return operating_points(split_probabilities(cohort, task, val, torch.device("cpu"), window, overlap),
                                scored, Rule("youden"))
    except DataError:
        return None


def roc_figure(probs: dict[str, np.ndarray], y: np.ndarray, num_classes: int,
               chosen: dict[str, dict[str, float]] | None = None):
    from sklearn.metrics import auc

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, p in probs.items():
        fpr, tpr = roc_points(p, y, num_classes)
        style = {"color": "black", "linewidth": 2.5} if name == ENSEMBLE else {}
        ax.plot(fpr, tpr, label=legend_name(f"{name} (area {auc(fpr, tpr):.3f})"), **style)
    if chosen and ENSEMBLE in chosen:
        point = chosen[ENSEMBLE]
        ax.plot([1 - point["specificity"]], [point["sensitivity"]], marker="X", markersize=13, color="#d55e00",
                markeredgecolor="white", linestyle="none")  # (seen on the ensemble's black line)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)", xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return fig


def _pictured_names(data) -> list[str] | None:
    """The test samples' files or source rows (review 52a: a panel the reader could not find
    again without run.json), None where the data names neither."""
    known = sample_names(data.info, "test")
    if known is None or len(known[1]) != len(data.test):
        return None
    return [name if known[0] == "file" else f"row {name}" for name in known[1][:PICTURED_SAMPLES]]


def segmentation_parts(cohort, task, dataset, meta, window, overlap, names: list[str] | None = None) -> list[str]:
    from ..engine.evaluate import predict
    from ..pictures import first_samples

    count = min(PICTURED_SAMPLES, len(dataset))
    if count == 0:
        return [note_html("the test split is empty.")]
    x, truth = first_samples(dataset, count)
    x, truth = x.float(), truth.cpu().numpy()
    with torch.no_grad():
        pred = predict(cohort, task, x, window, overlap)[ENSEMBLE].argmax(dim=1).cpu().numpy()
    images = display_images(x, meta.get("data_stats"))
    return [figure_html(segmentation_figure(images, truth, pred, meta["num_classes"], meta.get("class_names"), names),
                        f"the first {count} test images{', named at the left' if names else ''}, their true masks and "
                        f"the prediction of {ensemble_words(meta)}")]


def detection_parts(cohort, task, dataset, meta, min_score: float = PICTURE_MIN_SCORE,
                    names: list[str] | None = None) -> list[str]:
    from matplotlib.patches import Rectangle
    from matplotlib.patheffects import withStroke

    from ..engine.evaluate import predict
    from ..pictures import first_samples

    count = min(PICTURED_SAMPLES, len(dataset))
    if count == 0:
        return [note_html("the test split is empty.")]
    x, truth = first_samples(dataset, count)
    x = x.float()
    with torch.no_grad():
        detections = predict(cohort, task, x)[ENSEMBLE]
    images = display_images(x, meta.get("data_stats"))
    classes = meta.get("class_names") or [str(c) for c in range(meta["num_classes"])]
    fig, axes = plt.subplots(1, count, figsize=(2.6 * count, 2.8), squeeze=False)
    labelled = []  # each panel's axes, its labels' box corners and its image's height and width
    for i, (ax, image, boxes, det) in enumerate(zip(axes[0], images, truth, detections)):
        ax.imshow(image, cmap="gray")
        if names:
            ax.set_title(_shortened(names[i]), fontsize="small")
        for label, x1, y1, x2, y2 in boxes.tolist():
            if label >= 0:
                ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor="white",
                                       linewidth=1.5))  # (box edges on pixel edges: imshow centres pixels on integers)
        corners = []
        for (x1, y1, x2, y2), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(),
                                                  det["labels"].tolist()):
            if score >= min_score:
                colour = CLASS_COLORS[box_colour_index(label)]  # (as eval's pictures draw it)
                ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                                       linewidth=1))
                ax.text(x1 - 0.5, y1 - 0.5, f"{classes[int(label)]} {score:.2f}", color=colour, fontsize=8,
                        va="top", clip_on=True,  # (placed by _place_labels once the panel's scale is known)
                        path_effects=[withStroke(linewidth=2, foreground="black")])  # (readable on any background)
                corners.append((x1 - 0.5, y1 - 0.5))
        ax.axis("off")
        labelled.append((ax, corners, image.shape[:2]))
    shown = sorted({int(label) for det in detections for label, score in zip(det["labels"].tolist(),
                                                                             det["scores"].tolist())
                    if score >= min_score})
    if shown:  # which colour is which class (review 52h: the labels alone said it, where readable)
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(facecolor="none", edgecolor=CLASS_COLORS[box_colour_index(c)],
                                  label=legend_name(classes[c])) for c in shown],
                   loc="lower center", ncol=min(len(shown), 4), fontsize="small", frameon=False)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
    else:
        fig.tight_layout()
    for ax, corners, (height, width) in labelled:  # (after the layout: a label's size in pixels of the image)
        _place_labels(ax, corners, height, width)
    found = (f"the boxes of {ensemble_words(meta)} scoring at least {min_score} coloured by class, with class and "
             "score" if shown else f"no box of {ensemble_words(meta)} scored at least {min_score} in these "
             "images")  # (review 53b: the colour of boxes none drawn was said)
    return [figure_html(fig, f"the first {count} test images{' (named above each)' if names else ''}: true boxes in "
                             f"white; {found}")]


def _place_labels(ax, corners: list[tuple[float, float]], height: int, width: int) -> None:
    """``ax``'s texts (one a box, in ``corners``' order) moved where ``label_places`` puts them,
    their sizes measured in the image's pixels as the figure draws them."""
    if not corners:
        return
    renderer = ax.figure.canvas.get_renderer()
    to_data = ax.transData.inverted()
    sizes = []
    for text in ax.texts:
        extent = text.get_window_extent(renderer).padded(1)  # (a pixel apart: their black rings do not touch)
        (left, bottom), (right, top) = to_data.transform(extent.get_points())
        sizes.append((abs(right - left), abs(top - bottom)))
    for text, place in zip(ax.texts, label_places(corners, sizes, height, width)):
        text.set_position(place)


def display_images(x: torch.Tensor, stats: dict[str, list[float]] | None) -> np.ndarray:
    """``pictures.display_batch`` for matplotlib: [N, H, W] (grey, drawn with a grey colour map) or
    [N, H, W, 3]."""
    shown = display_batch(x, stats)
    return shown[..., 0] if x.shape[1] != 3 else shown


def class_colormap(num_classes: int):
    from matplotlib.colors import ListedColormap

    if num_classes <= len(CLASS_COLORS):
        return ListedColormap(CLASS_COLORS[:max(num_classes, 2)])
    return plt.get_cmap("viridis", num_classes)


def _shortened(name: str, most: int = 32) -> str:
    """A file's name as a panel shows it: its end, where names differ (folders in front are alike)."""
    return name if len(name) <= most else "…" + name[-(most - 1):]


def segmentation_figure(images: np.ndarray, truth: np.ndarray, pred: np.ndarray, num_classes: int,
                        class_names: list[str] | None = None, names: list[str] | None = None):
    rows = len(images)
    cmap = class_colormap(num_classes)
    vmax = max(num_classes - 1, 1)
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for i in range(rows):
        panels = [(images[i], {"cmap": "gray"}, "image"),
                  (np.ma.masked_equal(truth[i], 255), {"cmap": cmap, "vmin": 0, "vmax": vmax}, "truth"),
                  (np.ma.masked_where(truth[i] == 255, pred[i]), {"cmap": cmap, "vmin": 0, "vmax": vmax},
                   "ensemble")]  # (where the truth ignores, outside a field of view, nothing is scored: not drawn)
        for ax, (picture, style, label) in zip(axes[i], panels):
            ax.imshow(picture, interpolation="nearest", **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label)
        if names:
            axes[i][0].set_ylabel(_shortened(names[i]), fontsize="small")
    if num_classes <= len(CLASS_COLORS):  # which colour is which class (beyond, a continuous colour map)
        from matplotlib.patches import Patch

        names = class_names or [str(c) for c in range(num_classes)]
        fig.legend(handles=[Patch(facecolor=CLASS_COLORS[c], edgecolor="grey", label=legend_name(names[c]))
                            for c in range(num_classes)], loc="lower center", ncol=min(num_classes, 4),
                   fontsize="small", frameon=False)
        fig.tight_layout(rect=(0, 0.06 / rows ** 0.5, 1, 1))
    return fig
