"""Anchor-free detection helpers: points, box encodings, IoUs, NMS, decoding and target assignment."""

from .assign import assign
from .boxes import (HeadLayout, anchor_points, batched_nms, box_iou, boxes_to_ltrb, decode,
                    distances_from_distribution, generalized_box_iou_pairwise, ltrb_to_boxes, output_points,
                    split_outputs)

__all__ = ["HeadLayout", "anchor_points", "assign", "batched_nms", "box_iou", "boxes_to_ltrb", "decode",
           "distances_from_distribution", "generalized_box_iou_pairwise", "ltrb_to_boxes", "output_points",
           "split_outputs"]
