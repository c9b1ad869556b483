"""Held-out images that are near-copies of training images: the same picture saved again as JPEG,
resized, or the next frame of a video (Kvasir-SEG holds such pairs). Byte-identical inputs are
found by their digests (``digests.py``); these are not identical, and their figures are not held
out either.

Each image is read as a 16x16 grey thumbnail, made its pattern (centred, of unit length: its
brightness and contrast left out), less the training set's mean pattern (what every image of the
set shares: a fundus photograph's round field of view made distinct DRIVE images alike), made a
pattern again; two images are near-copies where the cosine of theirs reaches
``NEAR_COPY_SIMILARITY``. Measured on the project's data: distinct images reach at most 0.960
(PneumoniaMNIST's train, validation and test images, every pair), 0.960 (Kvasir-SEG at 64x64, but
for its four pairs of near-identical frames, at 0.994 to 0.99998) and 0.903 (DRIVE's 40); of 200
PneumoniaMNIST training images saved again at JPEG quality 50, all are found, and of the same
resized to 20x20 and back, 198.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

THUMBNAIL_SIDE = 16
NEAR_COPY_SIMILARITY = 0.98
# Above this many pairs of held-out and training images, no near-copy is looked for (a CIFAR-size
# set, 50,000 x 10,000, would take tens of seconds at training start); identical ones still are.
MAX_PAIRS = 250_000_000
_ROWS_AT_ONCE = 256  # held-out thumbnails compared at once (a block of 256 x N similarities)


def _thumbnails(x: torch.Tensor) -> torch.Tensor:
    """Each image [C, H, W] as its grey 16x16 thumbnail, flattened; a few rows at a time (a grey
    copy of a whole set of large images would cost a third of its memory again)."""
    return torch.cat([F.adaptive_avg_pool2d(x[start:start + _ROWS_AT_ONCE].float().mean(1, keepdim=True),
                                            THUMBNAIL_SIDE).flatten(1)
                      for start in range(0, len(x), _ROWS_AT_ONCE)])


def _standardised(thumbnails: torch.Tensor) -> torch.Tensor:
    """Each thumbnail centred and of unit length: its pattern, whatever its brightness and contrast."""
    centred = thumbnails - thumbnails.mean(1, keepdim=True)
    return centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _own_parts(patterns: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """The patterns less what the set's share (``shared``), standardised again. Patterns first:
    less the set's mean, faded images (little contrast) were each the mean's negative nearly,
    alike, and 105 of 200 faded PneumoniaMNIST test images read as near-copies."""
    return _standardised(patterns - shared)


def _spreads(thumbnails: torch.Tensor) -> torch.Tensor:
    """How far each thumbnail's pixels stray from its own mean (0: a flat image)."""
    return (thumbnails - thumbnails.mean(1, keepdim=True)).norm(dim=1)


def comparable(x: object) -> bool:
    """Images [N, C, H, W] at least a thumbnail's size: smaller ones hold too little to tell a
    near-copy from a look-alike (two writers' ones among the 8x8 digits reach 0.990)."""
    return isinstance(x, torch.Tensor) and x.ndim == 4 and min(x.shape[-2:]) >= THUMBNAIL_SIDE


def looked_for(held_out: object, training: object) -> bool:
    """Whether ``near_copies`` compares these sets (images of a thumbnail's size at least, not
    too many pairs): where not, its [] says nothing of them."""
    return (comparable(held_out) and comparable(training) and bool(len(held_out)) and bool(len(training))
            and len(held_out) * len(training) <= MAX_PAIRS)


def near_copies(held_out: torch.Tensor, training: torch.Tensor, skip: set[int] = frozenset()
                ) -> list[tuple[int, int]]:
    """``(row in held_out, row in training)`` for each held-out image whose closest training image
    is a near-copy of it (rows in ``skip``, identical ones say, left out); [] where either set is
    not images or the sets are too large to compare (``MAX_PAIRS``)."""
    if not looked_for(held_out, training):
        return []
    trained = _thumbnails(training)
    asked = _thumbnails(held_out)
    # a flat image (a blank tile, a black frame) holds nothing to tell a copy by: left out, on
    # either side (less the set's mean, every flat image would be that mean's negative alone)
    plain = 0.01 * _spreads(trained).median().clamp_min(1e-12)
    trained_rows = (_spreads(trained) > plain).nonzero().squeeze(1)
    if not len(trained_rows):
        return []
    asked_plain = _spreads(asked) <= plain
    trained, asked = _standardised(trained[trained_rows]), _standardised(asked)
    shared = trained.mean(0, keepdim=True)
    trained, asked = _own_parts(trained, shared), _own_parts(asked, shared)
    found = []
    for start in range(0, len(asked), _ROWS_AT_ONCE):
        block = asked[start:start + _ROWS_AT_ONCE]
        similarity, closest = (block @ trained.T).max(1)
        for offset in (similarity >= NEAR_COPY_SIMILARITY).nonzero().squeeze(1).tolist():
            row = start + offset
            if not asked_plain[row] and row not in skip:
                found.append((row, int(trained_rows[closest[offset]])))
    return found
