"""Mask R-CNN common utilities: Matterport's ``mrcnn.utils`` names, from the modules
that hold them (boxes, dataset, resizing, anchors, metrics), plus batch_slice.

Same names, signatures and numerics as Matterport Mask R-CNN 2.1
(mrcnn/utils.py, including its later fixes). Boxes are
[y1, x1, y2, x2] in pixels with y2/x2 *outside* the box.

Parity notes: images and masks are resized with skimage's bilinear resize,
constant zero borders and no anti-aliasing (skimage 0.13 behaviour); mask
zoom uses scipy's nearest neighbour. Assertions of the original became
ValueErrors that say what was expected.
"""
from __future__ import annotations

import logging
import os
from typing import Callable

from mrcnn.anchors import generate_anchors, generate_pyramid_anchors  # noqa: F401
from mrcnn.boxes import (apply_box_deltas, box_refinement, box_refinement_graph,  # noqa: F401
                         compute_iou, compute_overlaps, compute_overlaps_masks,
                         denorm_boxes, extract_bboxes, non_max_suppression, norm_boxes)
from mrcnn.dataset import Dataset  # noqa: F401
from mrcnn.metrics import (compute_ap, compute_ap_range, compute_matches,  # noqa: F401
                           compute_recall, trim_zeros)
from mrcnn.resizing import (expand_mask, minimize_mask, mold_mask, resize,  # noqa: F401
                            resize_image, resize_mask, unmold_mask)

logger = logging.getLogger(__name__)

# Where Matterport publishes its COCO weights. Nothing is downloaded at run
# time; the URL is only quoted in error messages.
COCO_MODEL_URL = ("https://github.com/matterport/Mask_RCNN/releases/download/"
                  "v2.0/mask_rcnn_coco.h5")


def batch_slice(inputs, graph_fn: Callable, batch_size: int, names=None):
    """Run a per-sample graph function over each batch item and stack.

    inputs: list of tensors, all with the same first dimension
    graph_fn: function of one slice of every input; returns a tensor or a
        list/tuple of tensors
    batch_size: number of slices
    names: If provided, names of the stacked result tensors.

    Some custom layers support one item only; this is Matterport's quick
    way to run them on batches.
    """
    import tensorflow as tf  # deferred: the numpy utilities need no TF

    if not isinstance(inputs, list):
        inputs = [inputs]

    outputs = []
    for i in range(batch_size):
        inputs_slice = [x[i] for x in inputs]
        output_slice = graph_fn(*inputs_slice)
        if not isinstance(output_slice, (tuple, list)):
            output_slice = [output_slice]
        outputs.append(output_slice)
    # From a list of per-slice outputs to a list of per-output slices
    outputs = list(zip(*outputs))

    if names is None:
        names = [None] * len(outputs)

    result = [tf.stack(o, axis=0, name=n) for o, n in zip(outputs, names)]
    if len(result) == 1:
        result = result[0]
    return result


def download_trained_weights(coco_model_path: str, verbose: int = 1) -> None:
    """Matterport downloaded the COCO weights here; this project never
    downloads at run time.

    If the file is already at coco_model_path this does nothing; otherwise
    it raises FileNotFoundError saying where to put the file.
    """
    if os.path.isfile(coco_model_path):
        if verbose > 0:
            logger.info("Using local COCO weights at %s", coco_model_path)
        return
    raise FileNotFoundError(
        "COCO weights not found at {!r}. This project does not download "
        "files at run time: fetch mask_rcnn_coco.h5 yourself (published at "
        "{}) and place it at that path.".format(coco_model_path, COCO_MODEL_URL))


__all__ = [
    "COCO_MODEL_URL", "extract_bboxes", "compute_iou", "compute_overlaps",
    "compute_overlaps_masks", "non_max_suppression", "apply_box_deltas",
    "box_refinement_graph", "box_refinement", "Dataset", "resize", "resize_image",
    "resize_mask", "minimize_mask", "expand_mask", "mold_mask", "unmold_mask",
    "generate_anchors", "generate_pyramid_anchors", "trim_zeros",
    "compute_matches", "compute_ap", "compute_ap_range", "compute_recall",
    "batch_slice", "download_trained_weights", "norm_boxes", "denorm_boxes",
]
