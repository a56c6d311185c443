"""Boxes (numpy): from masks, overlaps, NMS, deltas, normalization.

Matterport's mrcnn.utils names and numerics; boxes are [y1, x1, y2, x2] in pixels with
y2 / x2 *outside* the box. ``mrcnn.utils`` re-exports every name.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


############################################################
#  Bounding Boxes
############################################################

def extract_bboxes(mask: np.ndarray) -> np.ndarray:
    """Compute bounding boxes from masks.

    mask: [height, width, num_instances]. Mask pixels are either 1 or 0.

    Returns: bbox array [num_instances, (y1, x1, y2, x2)] int32; an empty
    instance gets the box (0, 0, 0, 0).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError("extract_bboxes expects a mask of shape [height, width, "
                         "num_instances]; got shape {}".format(mask.shape))
    boxes = np.zeros([mask.shape[-1], 4], dtype=np.int32)  # [N, 4]
    for i in range(mask.shape[-1]):
        m = mask[:, :, i]
        columns = np.where(np.any(m, axis=0))[0]
        rows = np.where(np.any(m, axis=1))[0]
        if columns.shape[0]:
            # y2/x2 are exclusive, hence +1.
            boxes[i] = [rows[0], columns[0], rows[-1] + 1, columns[-1] + 1]
        # else: no pixels left (e.g. after resizing or cropping): zeros.
    return boxes


def compute_iou(box: np.ndarray, boxes: np.ndarray, box_area: float,
                boxes_area: np.ndarray) -> np.ndarray:
    """IoU of one box with each of a set of boxes.

    box: 1D vector [y1, x1, y2, x2]
    boxes: [boxes_count, (y1, x1, y2, x2)]
    box_area: float, the area of 'box'
    boxes_area: array of length boxes_count.

    The areas are passed in so that callers compute them once.
    """
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + boxes_area[:] - intersection[:]
    return intersection / union


def compute_overlaps(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU overlaps between two sets of boxes.

    boxes1, boxes2: [N, (y1, x1, y2, x2)].
    Returns [len(boxes1), len(boxes2)] float64. For better performance,
    pass the largest set first and the smaller second.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])

    overlaps = np.zeros((boxes1.shape[0], boxes2.shape[0]))  # [N1, N2]
    for i in range(overlaps.shape[1]):
        overlaps[:, i] = compute_iou(boxes2[i], boxes1, area2[i], area1)
    return overlaps


def compute_overlaps_masks(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """IoU overlaps between two sets of masks.

    masks1, masks2: [Height, Width, instances]. Values > 0.5 are foreground.
    Returns [instances1, instances2].
    """
    # Either set empty: an empty result of the right shape.
    if masks1.shape[-1] == 0 or masks2.shape[-1] == 0:
        return np.zeros((masks1.shape[-1], masks2.shape[-1]))
    if masks1.shape[:-1] != masks2.shape[:-1]:
        # Typically mini masks (USE_MINI_MASK) against full-size ones.
        raise ValueError(
            f"masks: expected two [H, W, N] sets of the same height and width, got shapes "
            f"{masks1.shape} and {masks2.shape}; expand mini masks first (utils.expand_mask)")
    masks1 = np.reshape(masks1 > .5, (-1, masks1.shape[-1])).astype(np.float32)
    masks2 = np.reshape(masks2 > .5, (-1, masks2.shape[-1])).astype(np.float32)
    area1 = np.sum(masks1, axis=0)
    area2 = np.sum(masks2, axis=0)

    intersections = np.dot(masks1.T, masks2)  # [N1, N2]
    union = area1[:, None] + area2[None, :] - intersections
    return intersections / union


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray,
                        threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns int32 indices of kept boxes,
    highest score first.

    boxes: [N, (y1, x1, y2, x2)]. (y2, x2) lies outside the box.
    scores: 1-D array of box scores.
    threshold: IoU above which a lower-scored box is dropped.
    """
    if np.shape(scores) != (boxes.shape[0],):
        raise ValueError(f"scores: expected one per box, shape ({boxes.shape[0]},), got "
                         f"{np.shape(scores)}")
    if boxes.shape[0] == 0:
        return np.zeros([0], dtype=np.int32)
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)

    y1 = boxes[:, 0]
    x1 = boxes[:, 1]
    y2 = boxes[:, 2]
    x2 = boxes[:, 3]
    area = (y2 - y1) * (x2 - x1)

    ixs = scores.argsort()[::-1]  # highest score first
    pick = []
    while len(ixs) > 0:
        i = ixs[0]
        pick.append(i)
        iou = compute_iou(boxes[i], boxes[ixs[1:]], area[i], area[ixs[1:]])
        # Indices into ixs[1:], so +1 for indices into ixs.
        remove_ixs = np.where(iou > threshold)[0] + 1
        ixs = np.delete(ixs, remove_ixs)
        ixs = np.delete(ixs, 0)
    return np.array(pick, dtype=np.int32)


def decode_box_deltas(boxes, deltas, exp: Callable, stack: Callable):
    """The arithmetic of apply_box_deltas for numpy arrays or tensors of any backend.

    boxes: [N, (y1, x1, y2, x2)] float32; deltas: [N, (dy, dx, log(dh), log(dw))]
    exp, stack: np.exp / np.stack or tf.exp / tf.stack.
    Returns [N, (y1, x1, y2, x2)].
    """
    height = boxes[:, 2] - boxes[:, 0]  # [N]
    width = boxes[:, 3] - boxes[:, 1]  # [N]
    # No in-place updates: PyTorch's autograd needs the values it saved.
    center_y = boxes[:, 0] + 0.5 * height
    center_x = boxes[:, 1] + 0.5 * width
    center_y = center_y + deltas[:, 0] * height
    center_x = center_x + deltas[:, 1] * width
    height = height * exp(deltas[:, 2])
    width = width * exp(deltas[:, 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return stack([y1, x1, y1 + height, x1 + width], axis=1)  # [N, 4]


def encode_box_deltas(box, gt_box, log: Callable, stack: Callable):
    """The arithmetic of box_refinement for numpy arrays or TF tensors alike.

    box, gt_box: [N, (y1, x1, y2, x2)] float32; log, stack: np.log / np.stack or
    tf.math.log / tf.stack. Returns [N, (dy, dx, log(dh), log(dw))].
    """
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width

    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width

    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = log(gt_height / height)
    dw = log(gt_width / width)
    return stack([dy, dx, dh, dw], axis=1)


def apply_box_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Apply refinement deltas to boxes.

    boxes: [N, (y1, x1, y2, x2)]. (y2, x2) is outside the box.
    deltas: [N, (dy, dx, log(dh), log(dw))]
    Returns [N, (y1, x1, y2, x2)] float32.
    """
    return decode_box_deltas(boxes.astype(np.float32), deltas, np.exp, np.stack)


def box_refinement_graph(box, gt_box):
    """TF version of box_refinement: deltas that turn box into gt_box.

    box and gt_box are [N, (y1, x1, y2, x2)] tensors. Returns [N, 4] float32.
    """
    import tensorflow as tf  # deferred: the numpy utilities need no TF

    return encode_box_deltas(tf.cast(box, tf.float32), tf.cast(gt_box, tf.float32),
                             tf.math.log, tf.stack)


def box_refinement(box: np.ndarray, gt_box: np.ndarray) -> np.ndarray:
    """Deltas [N, (dy, dx, log(dh), log(dw))] (float32) that transform box
    into gt_box; both [N, (y1, x1, y2, x2)] with (y2, x2) outside the box.
    """
    return encode_box_deltas(box.astype(np.float32), gt_box.astype(np.float32), np.log,
                             np.stack)


def norm_boxes(boxes: np.ndarray, shape) -> np.ndarray:
    """Pixel boxes [N, (y1, x1, y2, x2)] -> normalized float32 boxes.

    shape: (height, width) in pixels. In pixel coordinates (y2, x2) is
    outside the box; in normalized coordinates it's inside, hence the
    shift of 1 and the (h - 1, w - 1) scale.
    """
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.divide((boxes - shift), scale).astype(np.float32)


def denorm_boxes(boxes: np.ndarray, shape) -> np.ndarray:
    """Normalized boxes [N, (y1, x1, y2, x2)] -> int32 pixel boxes.
    Inverse of norm_boxes (rounded).

    shape: (height, width) in pixels.
    """
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.around(np.multiply(boxes, scale) + shift).astype(np.int32)


def norm_boxes_ops(boxes, shape):
    """norm_boxes in keras.ops (any backend): pixel boxes [..., 4] -> normalized
    float32. shape: (height, width), ints or scalar tensors."""
    from keras import ops

    h = ops.cast(shape[0], "float32")
    w = ops.cast(shape[1], "float32")
    scale = ops.stack([h, w, h, w]) - 1.0  # [4]
    shift = ops.convert_to_tensor([0.0, 0.0, 1.0, 1.0])
    return (ops.cast(boxes, "float32") - shift) / scale
