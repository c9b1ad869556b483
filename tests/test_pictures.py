"""Pictures of predictions: which boxes are drawn, and inputs of any channel count shown."""

import numpy as np
from PIL import Image, ImageDraw

from peerdistill.pictures import PALETTE, draw_boxes, overlay, viewable


def test_boxes_under_the_minimum_score_are_not_drawn():
    picture = Image.new("RGB", (40, 30))
    draw_boxes(ImageDraw.Draw(picture), [[2, 2, 12, 12], [20, 5, 35, 25]], [0.2, 0.5], [0, 1], ["a", "b"],
               min_score=0.3)
    pixels = np.asarray(picture)
    assert not (pixels == PALETTE[1]).all(axis=-1).any()  # the faint box left out (class 0's colour nowhere)
    assert (pixels[5, 20:34] == PALETTE[2]).all(axis=-1).mean() > 0.5  # the other's top edge, class 1's colour


def test_inputs_of_one_two_or_three_channels_are_shown_in_colour():
    rng = np.random.default_rng(0)
    for channels in (1, 2, 3):
        image = rng.random((6, 5, channels)).astype(np.float32)
        shown = viewable(image)
        assert shown.shape == (6, 5, 3) and shown.dtype == np.uint8
        assert shown.min() == 0 and shown.max() == 255  # stretched to its own range
        if channels != 3:  # the first channel, grey
            assert (shown[..., 0] == shown[..., 1]).all()
            expected = (image[..., 0] - image[..., 0].min()) / (image[..., 0].max() - image[..., 0].min()) * 255
            assert np.array_equal(shown[..., 0], expected.astype(np.uint8))
    tinted = overlay(viewable(rng.random((6, 5, 2))), np.eye(6, 5, dtype=np.int64), None)
    assert tinted.shape == (6, 5, 3)


def test_eval_pictures_of_a_model_of_one_two_or_three_input_channels_are_written(tmp_path):
    """Review 48d: eval's pictures kept a 2-channel input as 2 channels and the overlay failed;
    every picture of an input is now drawn by display_batch, which shows such an input by its first
    channel, with the run's normalisation undone and stretched to its own range."""
    import torch
    from torch import nn

    from peerdistill.cohort import Cohort
    from peerdistill.pictures import display_batch, save_mask_pictures
    from peerdistill.tasks import SegmentationTask

    for channels in (1, 2, 3):
        cohort = Cohort.from_modules([nn.Conv2d(channels, 2, 1)])
        cohort.eval()
        data = [(torch.rand(channels, 8, 8), torch.zeros(8, 8, dtype=torch.long)) for _ in range(2)]
        folder = tmp_path / str(channels)
        save_mask_pictures(cohort, SegmentationTask(2), data, folder, 2, None)
        pictures = sorted(folder.rglob("*_overlay.png"))
        assert pictures and all(np.asarray(Image.open(p)).shape[-1] == 3 for p in pictures)
    x = torch.stack([torch.full((2, 2, 2), 1.0), torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[9.0, 9.0], [9.0, 9.0]]])])
    stats = {"mean": [1.0, 0.0], "std": [2.0, 1.0]}  # undone first: x * 2 + 1 on the shown channel
    shown = display_batch(x, stats)
    assert shown.shape == (2, 2, 2, 3) and (shown[..., 0] == shown[..., 2]).all()
    assert (shown[0] == 0).all()  # a flat image stays dark, not divided by zero
    np.testing.assert_allclose(shown[1, ..., 0], [[0, 1 / 3], [2 / 3, 1]], rtol=1e-6)  # (1, 3, 5, 7) stretched


def test_two_inputs_of_one_name_are_refused_before_any_picture_is_written():
    import pytest

    from peerdistill.errors import DataError
    from peerdistill.predict_outputs import picture_names
    from peerdistill.predict_inputs import Inputs

    read = Inputs(["site1/img001.png", "site2/img001.png"], ["img001", "img001"], [], [])
    with pytest.raises(DataError, match="would all be written as 'img001_boxes.png'"):
        picture_names(read, "boxes")


def test_an_overlay_tints_predicted_classes_at_alpha_and_outlines_the_truth_in_white():
    from peerdistill.pictures import PALETTE

    image = np.full((5, 5, 3), 100, dtype=np.uint8)
    pred = np.zeros((5, 5), dtype=np.int64)
    pred[0, 0] = 2
    truth = np.zeros((5, 5), dtype=np.int64)
    truth[1:4, 1:4] = 1  # a 3x3 square: outlined on the 12 pixels just outside it (its cross dilation less it)
    truth[4, 4] = 255  # an ignored pixel is no foreground: no outline
    out = overlay(image, pred, truth, alpha=0.45)
    expected = (0.55 * 100 + 0.45 * PALETTE[2].astype(np.float64)).astype(np.uint8)  # by hand: 55 + 0.45 * colour
    assert out[0, 0].tolist() == expected.tolist()
    assert out[0, 4].tolist() == [100, 100, 100]  # background (class 0) is not tinted
    boundary = np.zeros((5, 5), bool)
    boundary[0, 1:4] = boundary[4, 1:4] = boundary[1:4, 0] = boundary[1:4, 4] = True
    assert (out[boundary] == 255).all() and (out[1:4, 1:4] == 100).all() and not (out[~boundary] == 255).all(-1).any()
    # a true region a pixel wide (a thin vessel) keeps its prediction in sight (review 55h: outlined whole)
    vessel = np.zeros((5, 5), dtype=np.int64)
    vessel[2, :] = 1
    found = overlay(image, vessel, vessel, alpha=0.45)
    assert (found[2] == (0.55 * 100 + 0.45 * PALETTE[1].astype(np.float64)).astype(np.uint8)).all()
    assert (found[1] == 255).all() and (found[3] == 255).all()
    assert out[4, 4].tolist() == [50, 50, 50]  # ignored (outside data.roi): darkened, not scored
    pred[4, 4] = 2  # a prediction there is not tinted either: no figure counts it
    assert overlay(image, pred, truth, alpha=0.45)[4, 4].tolist() == [50, 50, 50]


def test_a_box_at_the_minimum_score_is_drawn_inside_its_exclusive_far_edge():
    picture = Image.new("RGB", (12, 12))
    draw_boxes(ImageDraw.Draw(picture), [[2, 2, 6, 6]], [0.3], [0], min_score=0.3)  # "at least": 0.3 is drawn
    drawn = (np.asarray(picture) == PALETTE[1]).all(axis=-1)  # class 0's colour
    # pixels 2..5 hold the box (its edges at 6 are exclusive): the outline is there, not at 6
    assert drawn[2, 2:6].all() and drawn[5, 2:6].all() and drawn[2:6, 5].all()
    assert not drawn[6, :].any() and not drawn[:, 6].any()


def test_box_pictures_draw_true_boxes_of_class_0_on_the_image_as_the_run_saw_it(tmp_path, monkeypatch):
    import torch

    from peerdistill import pictures

    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    monkeypatch.setattr(pictures, "predict", lambda cohort, task, x: {"ensemble": [empty]})
    x = torch.zeros(3, 10, 10)  # standardised zeros: the channel means once unstandardised
    y = torch.tensor([[0.0, 2, 2, 6, 6], [-1, 0, 0, 0, 0]])  # a box of class 0, then padding
    written = pictures.save_box_pictures(None, None, [(x, y)], tmp_path, 1, {"mean": [0.0, 0.5, 1.0],
                                                                              "std": [1.0, 1.0, 1.0]})
    assert written == [tmp_path / "ensemble" / "000_boxes.png"]
    shown = np.asarray(Image.open(written[0]))[::8, ::8]  # (enlarged 8 times for viewing)
    # 0, 0.5, 1 stretched over the image's range 0..1: 0, 127 (127.5 cut), 255
    assert shown[8, 8].tolist() == [0, 127, 255]
    white = (shown == 255).all(axis=-1)
    assert white[2, 2:6].all() and white[2:6, 2].all() and not white[0, 0]  # class 0's true box, padding left out


def test_a_drawn_box_is_labelled_with_its_class_name_and_score():
    draw = _Recorder()
    draw_boxes(draw, [[4, 6, 20, 30], [60, 6, 80, 30]], [0.876, 0.5], [1, 4], ["cat", "dog", "eel", "fox", "gnu"])
    # inside the box's corner, in its class's colour ringed to stand out: black around orange, white around blue
    orange, blue = (tuple(int(c) for c in PALETTE[i]) for i in (2, 5))
    assert (orange, blue) == ((230, 159, 0), (0, 114, 178))  # (Okabe and Ito's palette)
    assert draw.texts == [((5, 7), "dog 0.88", orange, 1, (0, 0, 0)), ((61, 7), "gnu 0.50", blue, 1, (255, 255, 255))]


class _Recorder:
    """What draw_boxes asks of PIL's ImageDraw, on a 120x60 picture whose characters are 6x10."""
    im = type("core", (), {"size": (120, 60)})

    def __init__(self):
        self.texts = []

    def textbbox(self, at, text, stroke_width):
        return (0, 0, 6 * len(text) - 1, 9)

    def rectangle(self, box, outline):
        pass

    def text(self, at, text, fill, stroke_width, stroke_fill):
        self.texts.append((at, text, tuple(fill), stroke_width, tuple(stroke_fill)))


def test_labels_of_boxes_sharing_a_corner_or_at_the_pictures_edge_stay_apart_and_in_it():
    """Review 52h, in eval's and predict's pictures too: labels of boxes sharing a corner were
    drawn over each other ("0.4949"), and one near the right edge ran off the picture."""
    draw = _Recorder()
    draw_boxes(draw, [[10, 10, 30, 30], [10, 10, 40, 25], [10, 10, 20, 20], [110, 40, 119, 59]], [0.5, 0.6, 0.7, 0.8],
               [0, 0, 0, 0])
    spans = [(x, y, x + 6 * len(text), y + 10) for (x, y), text, *_ in draw.texts]
    assert len(spans) == 4
    for i, (x1, y1, x2, y2) in enumerate(spans):
        assert 0 <= x1 and x2 <= 120 and 0 <= y1 and y2 <= 60  # in the picture
        for a1, b1, a2, b2 in spans[:i]:
            assert not (x1 < a2 and a1 < x2 and y1 < b2 and b1 < y2), (spans[i], (a1, b1, a2, b2))
    assert spans[0][:2] == (11, 11)  # the first where it always was: inside its box's corner


def test_eval_pictures_of_small_inputs_are_enlarged_by_a_whole_factor_and_masks_kept_at_the_scored_size(
        tmp_path, monkeypatch):
    # Kvasir-SEG's overlays were 96x96, a 64x64 frame's scores unreadable: now a 256-pixel shorter side
    import torch

    import peerdistill.pictures as pictures
    from peerdistill.pictures import save_box_pictures, save_mask_pictures, viewing_factor

    assert [viewing_factor(h, w) for h, w in ((8, 8), (96, 120), (64, 64), (300, 256), (584, 565))] == [8, 3, 4, 1, 1]
    image = torch.zeros(1, 3, 6, 6)
    image[0, :, 5, 5] = 1.0  # black but for the bottom-right pixel
    truth = torch.zeros(1, 6, 6, dtype=torch.long)
    truth[0, 2:4, 2:4] = 1
    probs = torch.zeros(1, 2, 6, 6)
    probs[0, 0] = 1
    probs[0, 1, 0, 0], probs[0, 0, 0, 0] = 1, 0  # class 1 predicted at the top-left pixel only
    monkeypatch.setattr(pictures, "predict", lambda *a, **k: {"m": probs})
    save_mask_pictures(None, type("Task", (), {"num_classes": 2})(), [(image[0], truth[0])], tmp_path, 1, None)
    mask = np.asarray(Image.open(tmp_path / "m" / "000_mask.png"))
    over = np.asarray(Image.open(tmp_path / "m" / "000_overlay.png"))
    assert mask.shape == (6, 6) and mask[0, 0] == 255 and mask.sum() == 255  # as scored
    k = 256 // 6 + 1  # 43, capped at 8
    assert k > 8 and over.shape == (48, 48, 3)
    tint = (0.45 * PALETTE[1].astype(np.float64)).astype(np.uint8)  # on black: 0.55 * 0 + 0.45 * colour
    assert (over[:8, :8] == tint).all()  # the predicted pixel, a whole 8x8 square
    assert (over[8:16, :8] == 0).all() and (over[40:, 40:] == 255).all()  # untouched pixels, squares of their own
    white = (over == 255).all(axis=-1)
    # the truth's outline one pixel wide, not 8, just outside it (rows 16 to 31 hold it)
    assert white[15, 16:32].all() and not white[16:32, 16:32].any() and white[32, 16:32].all()
    # boxes: the enlarged picture with every box scaled by the same factor
    boxes = torch.zeros(1, 3, 16, 16)
    monkeypatch.setattr(pictures, "predict", lambda *a, **k: {"m": [
        {"boxes": torch.tensor([[2.0, 2.0, 10.0, 6.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}]})
    save_box_pictures(None, None, [(boxes[0], torch.tensor([[0, 1.0, 1.0, 5.0, 5.0]]))], tmp_path, 1, None)
    drawn = np.asarray(Image.open(tmp_path / "m" / "000_boxes.png"))
    assert drawn.shape == (128, 128, 3)  # 16 x 8
    assert (drawn[8, 8:40] == 255).all() and (drawn[39, 8:16] == 255).all()  # the truth, rows 8 and 5 * 8 - 1
    assert (drawn[47, 16:80] == PALETTE[1]).all(axis=-1).all()  # the prediction's bottom edge, at 6 * 8 - 1


def test_an_interrupted_eval_leaves_no_cut_picture_and_no_earlier_eval_s(tmp_path, monkeypatch):
    # PNGs were written in place (Ctrl-C left cut ones), and each model's folder was emptied only
    # when its turn came (a model not reached kept the earlier eval's pictures, passing for this one's)
    import pytest
    import torch

    import peerdistill.pictures as pictures
    from peerdistill.pictures import save_mask_pictures

    images, truths = torch.rand(3, 1, 8, 8), torch.zeros(3, 8, 8, dtype=torch.long)
    monkeypatch.setattr(pictures, "predict", lambda *a, **k: {m: torch.rand(3, 2, 8, 8) for m in ("a", "b")})
    for model in ("a", "b"):
        (tmp_path / model).mkdir()
        for i in range(3):
            (tmp_path / model / f"00{i}_mask.png").write_bytes(b"an earlier eval's picture")
    written = []
    real = pictures.atomic_write_bytes

    def interrupted_at_the_third(path, data):
        if len(written) == 2:  # (atomic_write_bytes leaves nothing of a file it was writing)
            raise KeyboardInterrupt
        written.append(path)
        real(path, data)

    monkeypatch.setattr(pictures, "atomic_write_bytes", interrupted_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        save_mask_pictures(None, type("Task", (), {"num_classes": 2})(), list(zip(images, truths)), tmp_path, 3, None)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert left == ["a/000_mask.png", "a/000_overlay.png"]  # this eval's, whole; model b's earlier ones gone
    for path in written:
        Image.open(path).verify()


def test_evals_box_pictures_label_boxes_with_their_class_names(tmp_path, monkeypatch):
    # eval's pictures showed "0.51" alone: the class only by its colour, with no legend
    import torch

    import peerdistill.pictures as pictures

    monkeypatch.setattr(pictures, "predict", lambda *a, **k: {"m": [
        {"boxes": torch.tensor([[2.0, 2.0, 10.0, 6.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]})
    labelled = []
    monkeypatch.setattr(pictures, "draw_boxes", lambda draw, boxes, scores, labels, class_names=None, min_score=0.0:
                        labelled.append(class_names))
    task = type("Task", (), {"class_names": ["ellipse", "polyp"]})()
    pictures.save_box_pictures(None, task, [(torch.zeros(3, 16, 16), torch.zeros(0, 5))], tmp_path, 1, None)
    assert labelled == [["ellipse", "polyp"]]
