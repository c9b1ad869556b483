"""Masks given from Python in the dtype PNGs are read in (uint8) train as int64 ones do: the
loss cast them, where cross_entropy stopped the run with torch's 'expected scalar type Long'."""

import torch
import torch.nn.functional as F

from peerdistill.tasks import SegmentationTask


def test_the_loss_of_uint8_masks_is_that_of_the_same_int64_masks_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    masks = torch.randint(0, 3, (2, 4, 4))
    masks[0, 0, 0] = 255  # an ignored pixel
    task = SegmentationTask(3, loss="ce")
    by_hand = F.cross_entropy(logits.masked_fill((masks == 255).unsqueeze(1), 0), masks, ignore_index=255)
    for dtype in (torch.uint8, torch.int32, torch.int64):
        assert torch.allclose(task.supervised_loss(logits, masks.to(dtype)), by_hand)


def test_a_top_class_of_a_few_pixels_counted_from_the_masks_is_warned_of_as_a_likely_stray_value():
    import warnings

    import pytest

    from peerdistill.data.segmentation import _class_count
    from peerdistill.errors import PeerdistillWarning

    masks = torch.zeros(4, 50, 50, dtype=torch.uint8)
    masks[:, 10:30, 10:30] = 1  # 1,600 foreground pixels of class 1
    masks[0, 0, 0] = 2  # one stray 2: 1 of 1,601 foreground pixels, under 0.1%
    with pytest.warns(PeerdistillWarning, match=r"mask value 2 has 1 pixel\(s\) of the masks' 1,601 foreground ones "
                                                r"\(under 0\.1%\), and makes this a 3-class model: if it is a stray "
                                                r"value, fix the masks that hold it"):
        assert _class_count([masks], None, None) == (3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _class_count([masks], 3, None)  # declared: no word
        masks[1, 30:32, 30:32] = 2  # 5 pixels of 1,605: 0.31%, a class
        _class_count([masks], None, None)
