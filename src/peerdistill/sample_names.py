"""How a message or a table names a split's samples: by file or source row where the data says,
else by place in the split. Apart from per_sample.py, which needs the engine's file writers:
the trainer's checks name samples too, and importing it from there went in a circle."""

from __future__ import annotations

SPLITS = ("train", "val", "test")


def names_in_messages(info: dict, split: str, count: int) -> list[str]:
    """How a message names each of a split's ``count`` samples: its file or row in the source
    (``sample_names``), else its place in the split."""
    known = sample_names(info, split)
    if known is not None and len(known[1]) == count:
        return [name if known[0] == "file" else f"row {name}" for name in known[1]]
    return [f"sample {i} of the {split} split" for i in range(count)]


def sample_names(info: dict, split: str) -> tuple[str, list[str]] | None:
    """``(column, a name per sample of split)``: the files (classification images by their path;
    segmentation pairs by the id image and mask share; detection frames by their file name or
    id) or, for array data the run cut itself, each sample's row in the source; None where the
    data names neither (an npz with its own splits: the position in the split is the row of its
    ``test_images``; synthetic data)."""
    split_ids = info.get("split") if isinstance(info.get("split"), dict) else {}
    for column, known in (("file", info.get("files")), ("file", split_ids), ("row", info.get("indices"))):
        known = known or {}
        if split == "all":  # the splits in turn, or data scored whole: all of it in its test split
            parts = [known.get(s) for s in SPLITS] if "train" in known else [known.get("test")]
        else:
            parts = [known.get(split)]
        if all(isinstance(p, list) for p in parts):
            return column, [str(name) for part in parts for name in part]
    return None
