"""Loss graphs of Mask R-CNN (Matterport 2.1 numerics).

Every loss is a scalar. Where Matterport used K.switch(size > 0, mean, 0) an empty
selection (no positive ROI / anchor) gives 0, not NaN. Under the TensorFlow backend
these are Matterport's graphs; under JAX and PyTorch each ``*_graph`` computes the same
number with static shapes (``mrcnn.losses_ops``).
"""
from __future__ import annotations

import logging
import numbers
from typing import Any, Union

import keras

from mrcnn import losses_ops

try:  # JAX and PyTorch machines may have no TensorFlow: its paths then never run
    import tensorflow as tf
except ImportError:
    tf = None

logger = logging.getLogger(__name__)

# Keras 2's backend epsilon, used to clip probabilities in binary cross-entropy.
_EPSILON = 1e-7


def smooth_l1_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Element-wise Smooth-L1: 0.5 d^2 where |d| < 1, else |d| - 0.5.

    y_true, y_pred: same shape, typically [N, 4]. Returns that shape.
    """
    diff = tf.abs(y_true - y_pred)
    less_than_one = tf.cast(tf.less(diff, 1.0), tf.float32)
    return (less_than_one * 0.5 * diff ** 2) + (1 - less_than_one) * (diff - 0.5)


def mean_or_zero(loss: tf.Tensor) -> tf.Tensor:
    """Mean of `loss`, or 0.0 when it is empty (K.switch in Matterport)."""
    return tf.cond(tf.size(loss) > 0, lambda: tf.reduce_mean(loss), lambda: tf.constant(0.0))


def batch_pack_graph(x: tf.Tensor, counts: tf.Tensor, num_rows: int) -> tf.Tensor:
    """Concatenates the first counts[i] entries of each row i of x.

    x: [num_rows, M, ...], counts: [num_rows] int. Returns [sum(counts), ...].
    """
    outputs = []
    for i in range(num_rows):
        outputs.append(x[i, :counts[i]])
    return tf.concat(outputs, axis=0)


def _binary_crossentropy(target: tf.Tensor, output: tf.Tensor) -> tf.Tensor:
    """Keras 2.1's binary_crossentropy on probabilities: clip, logit, sigmoid CE."""
    output = tf.clip_by_value(output, _EPSILON, 1 - _EPSILON)
    logits = tf.math.log(output / (1 - output))
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)


def rpn_class_loss_graph(rpn_match: tf.Tensor, rpn_class_logits: tf.Tensor) -> tf.Tensor:
    """RPN anchor classifier loss: softmax CE over positive and negative anchors.

    rpn_match: [batch, anchors, 1] int, 1 positive, -1 negative, 0 neutral (ignored)
    rpn_class_logits: [batch, anchors, 2] BG/FG logits
    Returns: scalar
    """
    if keras.backend.backend() != "tensorflow":
        return losses_ops.rpn_class_loss(rpn_match, rpn_class_logits)
    rpn_match = tf.squeeze(rpn_match, -1)  # [batch, anchors]
    anchor_class = tf.cast(tf.equal(rpn_match, 1), tf.int32)  # -1/+1 -> 0/1
    indices = tf.where(tf.not_equal(rpn_match, 0))  # [n, 2]
    rpn_class_logits = tf.gather_nd(rpn_class_logits, indices)  # [n, 2]
    anchor_class = tf.gather_nd(anchor_class, indices)  # [n]
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=anchor_class, logits=rpn_class_logits)  # [n]
    return mean_or_zero(loss)


def _images_per_gpu(config: Union[Any, int]) -> int:
    if isinstance(config, numbers.Integral):
        return int(config)
    if hasattr(config, "IMAGES_PER_GPU"):
        return int(config.IMAGES_PER_GPU)
    raise ValueError("rpn_bbox_loss_graph needs a config with IMAGES_PER_GPU or an int, "
                     f"got {type(config).__name__}")


def rpn_bbox_loss_graph(config: Union[Any, int], target_bbox: tf.Tensor,
                        rpn_match: tf.Tensor, rpn_bbox: tf.Tensor) -> tf.Tensor:
    """RPN box loss: Smooth-L1 over positive anchors.

    config: the model config, or just IMAGES_PER_GPU as an int
    target_bbox: [batch, max positive anchors, (dy, dx, log(dh), log(dw))], zero padded;
        row i holds the deltas of image i's positive anchors in anchor order
    rpn_match: [batch, anchors, 1] int, 1 positive, -1 negative, 0 neutral
    rpn_bbox: [batch, anchors, (dy, dx, log(dh), log(dw))]
    Returns: scalar
    """
    if keras.backend.backend() != "tensorflow":
        return losses_ops.rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox)
    num_rows = _images_per_gpu(config)
    rpn_match = tf.squeeze(rpn_match, -1)  # [batch, anchors]
    indices = tf.where(tf.equal(rpn_match, 1))  # [n, 2]
    rpn_bbox = tf.gather_nd(rpn_bbox, indices)  # [n, 4]

    # Line the targets up with the gathered predictions.
    batch_counts = tf.reduce_sum(tf.cast(tf.equal(rpn_match, 1), tf.int32), axis=1)
    target_bbox = batch_pack_graph(target_bbox, batch_counts, num_rows)  # [n, 4]

    loss = smooth_l1_loss(tf.cast(target_bbox, tf.float32), rpn_bbox)
    return mean_or_zero(loss)


def mrcnn_class_loss_graph(target_class_ids: tf.Tensor, pred_class_logits: tf.Tensor,
                           active_class_ids: tf.Tensor) -> tf.Tensor:
    """Classifier loss, counting only ROIs whose predicted class is active.

    target_class_ids: [batch, num_rois] int, zero padded
    pred_class_logits: [batch, num_rois, num_classes]
    active_class_ids: [batch, num_classes] 1 for classes of the image's data set
    Returns: sum(CE * active(pred)) / sum(active(pred)), scalar
    """
    if keras.backend.backend() != "tensorflow":
        return losses_ops.mrcnn_class_loss(target_class_ids, pred_class_logits,
                                           active_class_ids)
    target_class_ids = tf.cast(target_class_ids, tf.int64)
    pred_class_ids = tf.argmax(pred_class_logits, axis=2)  # [batch, num_rois]
    # Matterport: the first image's active classes stand for the whole batch.
    pred_active = tf.gather(tf.cast(active_class_ids[0], tf.float32),
                            pred_class_ids)  # [batch, num_rois]
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=target_class_ids, logits=pred_class_logits)  # [batch, num_rois]
    loss = loss * pred_active
    return tf.reduce_sum(loss) / tf.reduce_sum(pred_active)


def mrcnn_bbox_loss_graph(target_bbox: tf.Tensor, target_class_ids: tf.Tensor,
                          pred_bbox: tf.Tensor) -> tf.Tensor:
    """Box refinement loss: Smooth-L1 on the true class's deltas of positive ROIs.

    target_bbox: [batch, num_rois, (dy, dx, log(dh), log(dw))]
    target_class_ids: [batch, num_rois] int
    pred_bbox: [batch, num_rois, num_classes, (dy, dx, log(dh), log(dw))]
    Returns: scalar
    """
    if keras.backend.backend() != "tensorflow":
        return losses_ops.mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox)
    target_class_ids = tf.reshape(target_class_ids, (-1,))  # [B*R]
    target_bbox = tf.reshape(target_bbox, (-1, 4))  # [B*R, 4]
    num_classes = pred_bbox.shape[2] if pred_bbox.shape[2] is not None else tf.shape(pred_bbox)[2]
    pred_bbox = tf.reshape(pred_bbox, (-1, num_classes, 4))  # [B*R, classes, 4]

    positive_roi_ix = tf.where(target_class_ids > 0)[:, 0]  # [pos]
    positive_roi_class_ids = tf.cast(tf.gather(target_class_ids, positive_roi_ix), tf.int64)
    indices = tf.stack([positive_roi_ix, positive_roi_class_ids], axis=1)  # [pos, 2]

    target_bbox = tf.gather(target_bbox, positive_roi_ix)  # [pos, 4]
    pred_bbox = tf.gather_nd(pred_bbox, indices)  # [pos, 4]

    loss = smooth_l1_loss(y_true=tf.cast(target_bbox, tf.float32), y_pred=pred_bbox)
    return mean_or_zero(loss)


def mrcnn_mask_loss_graph(target_masks: tf.Tensor, target_class_ids: tf.Tensor,
                          pred_masks: tf.Tensor) -> tf.Tensor:
    """Mask loss: binary CE on the true class's mask of positive ROIs.

    target_masks: [batch, num_rois, height, width] of 0/1, zero padded
    target_class_ids: [batch, num_rois] int, zero padded
    pred_masks: [batch, num_rois, height, width, num_classes] probabilities
    Returns: scalar
    """
    if keras.backend.backend() != "tensorflow":
        return losses_ops.mrcnn_mask_loss(target_masks, target_class_ids, pred_masks)
    target_class_ids = tf.reshape(target_class_ids, (-1,))  # [B*R]
    mask_shape = tf.shape(target_masks)
    target_masks = tf.reshape(target_masks, (-1, mask_shape[2], mask_shape[3]))  # [B*R, h, w]
    pred_shape = tf.shape(pred_masks)
    pred_masks = tf.reshape(pred_masks,
                            (-1, pred_shape[2], pred_shape[3], pred_shape[4]))  # [B*R, h, w, C]
    pred_masks = tf.transpose(pred_masks, [0, 3, 1, 2])  # [B*R, C, h, w]

    positive_ix = tf.where(target_class_ids > 0)[:, 0]  # [pos]
    positive_class_ids = tf.cast(tf.gather(target_class_ids, positive_ix), tf.int64)
    indices = tf.stack([positive_ix, positive_class_ids], axis=1)  # [pos, 2]

    y_true = tf.cast(tf.gather(target_masks, positive_ix), tf.float32)  # [pos, h, w]
    y_pred = tf.gather_nd(pred_masks, indices)  # [pos, h, w]

    loss = _binary_crossentropy(target=y_true, output=y_pred)
    return mean_or_zero(loss)
