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
