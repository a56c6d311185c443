"""DetectionTargetLayer's sampling in ``keras.ops`` with static shapes (what JAX and
PyTorch run; TensorFlow runs Matterport's graph in mrcnn.targets).

Matterport's graph drops padding, gathers positive and negative ROIs with ``tf.where``
and shuffles each list: shapes that depend on the data. Here the whole batch is
processed at once and every list is a fixed-size ranking instead: each proposal draws a
uniform key, candidates rank above the rest by that key (``top_k``), and the first
``count`` of a ranking are the sampled ones, which is a uniform random subset as
``tf.random.shuffle(...)[:count]`` is. The rules are Matterport's: a positive overlaps a
non-crowd gt box with IoU >= 0.5; a negative has IoU < 0.5 and overlaps no crowd box
(IoU < 0.001); at most TRAIN_ROIS_PER_IMAGE x ROI_POSITIVE_RATIO positives, then
``int(positives / ROI_POSITIVE_RATIO) - positives`` negatives (none when there is no
positive); positives first, negatives next, zero padding last. Each positive takes the
gt box it overlaps most (the first on ties), its class, its deltas over BBOX_STD_DEV
and its gt mask cropped to the ROI (mini masks: in the gt box's unit square), resized
to MASK_SHAPE and rounded. tests/mrcnn/test_targets_ops.py checks each output row
against TensorFlow's graph.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from mrcnn.backend_ops import crop_and_resize_ops
from mrcnn.boxes import encode_box_deltas


def batched_overlaps(boxes1, boxes2):
    """IoU of every box of boxes1 with every box of boxes2, per image.

    boxes1: [batch, N1, (y1, x1, y2, x2)], boxes2: [batch, N2, 4]. Returns [batch, N1, N2]
    (0 where the union is empty, as for zero padding).
    """
    a = boxes1[:, :, None, :]  # [B, N1, 1, 4]
    b = boxes2[:, None, :, :]  # [B, 1, N2, 4]
    height = ops.maximum(ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]), 0)
    width = ops.maximum(ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]), 0)
    intersection = height * width  # [B, N1, N2]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - intersection
    safe = ops.where(union > 0, union, ops.ones_like(union))
    return ops.where(union > 0, intersection / safe, ops.zeros_like(union))


def _ranked(candidates, keys, k: int):
    """Indices [B, k] of the candidates first (in key order), and their count [B]."""
    score = ops.where(candidates, keys + 1.0, ops.zeros_like(keys) - 1.0)  # [B, P]
    _, order = ops.top_k(score, k)  # [B, k]
    return order, ops.sum(ops.cast(candidates, "int32"), axis=1)


def sample_detection_targets_ops(proposals, gt_class_ids, gt_boxes, gt_masks, *,
                                 train_rois_per_image: int, roi_positive_ratio: float,
                                 bbox_std_dev: Sequence[float], mask_shape: Sequence[int],
                                 use_mini_mask: bool, seed=None):
    """The batch's ROIs and targets (see the module's docstring).

    proposals: [batch, P, (y1, x1, y2, x2)] normalized, maybe zero padded
    gt_class_ids: [batch, G] int, negative for crowds, 0 for padding
    gt_boxes: [batch, G, (y1, x1, y2, x2)] normalized
    gt_masks: [batch, height, width, G] bool or 0/1
    seed: a keras.random.SeedGenerator (or int) for the sampling keys
    Returns: rois [batch, T, 4], class_ids [batch, T] (gt_class_ids' dtype), deltas
        [batch, T, 4], masks [batch, T, mask_h, mask_w], T = train_rois_per_image.
    """
    rois_per_image = int(train_rois_per_image)
    mask_shape = [int(s) for s in mask_shape]
    proposals = ops.cast(proposals, "float32")
    gt_boxes = ops.cast(gt_boxes, "float32")
    class_ids = ops.cast(gt_class_ids, "int32")
    batch, num_proposals = proposals.shape[0], proposals.shape[1]
    if batch is None:
        batch = ops.shape(proposals)[0]
    num_gt = gt_boxes.shape[1]

    valid_proposal = ops.sum(ops.abs(proposals), axis=2) > 0  # [B, P]
    valid_gt = ops.sum(ops.abs(gt_boxes), axis=2) > 0  # [B, G]
    is_gt = ops.logical_and(valid_gt, class_ids > 0)[:, None, :]  # [B, 1, G]
    is_crowd = ops.logical_and(valid_gt, class_ids < 0)[:, None, :]
    overlaps = batched_overlaps(proposals, gt_boxes)  # [B, P, G]
    gt_overlaps = ops.where(is_gt, overlaps, ops.zeros_like(overlaps) - 1.0)
    roi_iou_max = ops.max(gt_overlaps, axis=2)  # [B, P]; -1 without gt boxes
    crowd_iou_max = ops.max(ops.where(is_crowd, overlaps, ops.zeros_like(overlaps)), axis=2)
    positive = ops.logical_and(valid_proposal, roi_iou_max >= 0.5)
    negative = ops.logical_and(ops.logical_and(valid_proposal, roi_iou_max < 0.5),
                               crowd_iou_max < 0.001)

    keys = keras.random.uniform(ops.shape(valid_proposal), seed=seed)  # [B, P]
    positive_max = int(rois_per_image * roi_positive_ratio)
    k = min(rois_per_image, num_proposals)
    positive_order, positive_total = _ranked(positive, keys, k)  # [B, k], [B]
    negative_order, negative_total = _ranked(negative, keys, k)
    positive_count = ops.minimum(positive_total, positive_max)  # [B]
    r = 1.0 / roi_positive_ratio
    wanted = ops.cast(r * ops.cast(positive_count, "float32"), "int32") - positive_count
    negative_count = ops.minimum(negative_total, wanted)  # [B]

    # Slot j of the output: positive j, negative j - positive_count, or padding.
    slot = ops.arange(rois_per_image, dtype="int32")[None, :]  # [1, T]
    pc, nc = positive_count[:, None], negative_count[:, None]
    is_positive = slot < pc  # [B, T]
    is_used = slot < pc + nc
    pad = ops.zeros((batch, rois_per_image - k), "int32")
    positive_order = ops.concatenate([ops.cast(positive_order, "int32"), pad], axis=1)
    negative_order = ops.concatenate([ops.cast(negative_order, "int32"), pad], axis=1)
    shifted = ops.clip(slot - pc, 0, rois_per_image - 1)  # [B, T]
    source = ops.where(is_positive, positive_order,
                       ops.take_along_axis(negative_order, shifted, axis=1))  # [B, T]
    rois = ops.take_along_axis(proposals, source[..., None], axis=1)  # [B, T, 4]
    rois = ops.where(is_used[..., None], rois, ops.zeros_like(rois))

    # Each positive's gt box: the first of the highest IoU.
    roi_overlaps = ops.take_along_axis(gt_overlaps, source[..., None], axis=1)  # [B, T, G]
    assignment = ops.cast(ops.argmax(roi_overlaps, axis=2), "int32")  # [B, T]
    roi_gt_boxes = ops.take_along_axis(gt_boxes, assignment[..., None], axis=1)  # [B, T, 4]
    roi_class_ids = ops.take_along_axis(class_ids, assignment, axis=1)  # [B, T]
    roi_class_ids = ops.where(is_positive, roi_class_ids, ops.zeros_like(roi_class_ids))

    # Deltas of the positives; other rows take a unit box so that nothing is NaN.
    unit = ops.convert_to_tensor(np.array([0, 0, 1, 1], np.float32))
    from_boxes = ops.where(is_positive[..., None], rois, unit)
    to_boxes = ops.where(is_positive[..., None], roi_gt_boxes, unit)
    deltas = encode_box_deltas(ops.reshape(from_boxes, (-1, 4)),
                               ops.reshape(to_boxes, (-1, 4)), ops.log, ops.stack)
    deltas = ops.reshape(deltas, (batch, rois_per_image, 4)) / ops.convert_to_tensor(
        np.asarray(bbox_std_dev, np.float32))  # a tensor: torch refuses numpy with grad
    deltas = ops.where(is_positive[..., None], deltas, ops.zeros_like(deltas))

    masks = _mask_targets(from_boxes, to_boxes, assignment, gt_masks, mask_shape,
                          use_mini_mask, batch, num_gt)  # [B, T, mh, mw]
    masks = ops.where(is_positive[..., None, None], masks, ops.zeros_like(masks))
    return rois, ops.cast(roi_class_ids, gt_class_ids.dtype), deltas, masks


def _mask_targets(rois, roi_gt_boxes, assignment, gt_masks, mask_shape: list,
                  use_mini_mask: bool, batch, num_gt: int):
    """Each ROI's assigned gt mask cropped to it, resized and rounded: [B, T, mh, mw]."""
    rois_per_image = rois.shape[1]
    boxes = ops.reshape(rois, (-1, 4))  # [B*T, 4]
    if use_mini_mask:  # a mini mask spans its gt box: the ROI in that box's unit square
        gt = ops.reshape(roi_gt_boxes, (-1, 4))
        gt_h, gt_w = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
        boxes = ops.stack([(boxes[:, 0] - gt[:, 0]) / gt_h, (boxes[:, 1] - gt[:, 1]) / gt_w,
                           (boxes[:, 2] - gt[:, 0]) / gt_h, (boxes[:, 3] - gt[:, 1]) / gt_w],
                          axis=1)
    masks = ops.transpose(ops.cast(gt_masks, "float32"), (0, 3, 1, 2))  # [B, G, h, w]
    masks = ops.reshape(masks, (-1, masks.shape[2], masks.shape[3], 1))  # [B*G, h, w, 1]
    image = ops.arange(batch, dtype="int32")[:, None] * num_gt  # [B, 1]
    box_indices = ops.reshape(image + assignment, (-1,))  # [B*T]
    crops = crop_and_resize_ops(masks, boxes, box_indices, mask_shape)  # [B*T, mh, mw, 1]
    return ops.reshape(ops.round(crops), (-1, rois_per_image, *mask_shape))


__all__ = ["batched_overlaps", "sample_detection_targets_ops"]
