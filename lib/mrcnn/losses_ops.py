"""The loss graphs of ``mrcnn.losses`` in ``keras.ops``, with static shapes (what JAX and
PyTorch run).

TensorFlow's versions gather the anchors and ROIs that count (``tf.where``), so their
shapes depend on the data. Here every anchor and ROI stays in place and a 0/1 mask
says which count: a mean over the selection is ``sum(loss * mask) / count`` with the
count floored at 1, which is 0 for an empty selection, as Matterport's ``K.switch``.
The numbers are those of ``mrcnn.losses`` (tests/mrcnn/test_losses_ops.py compares them
under each backend installed), and the gradients too, since masked-out terms add zero.
"""
from __future__ import annotations

from keras import ops

# Keras 2's backend epsilon, as in mrcnn.losses' binary cross-entropy.
EPSILON = 1e-7


def smooth_l1(y_true, y_pred):
    """Element-wise Smooth-L1: 0.5 d^2 where |d| < 1, else |d| - 0.5 (same shape)."""
    diff = ops.abs(ops.cast(y_true, "float32") - ops.cast(y_pred, "float32"))
    less_than_one = ops.cast(ops.less(diff, 1.0), "float32")
    return less_than_one * 0.5 * diff ** 2 + (1 - less_than_one) * (diff - 0.5)


def masked_mean(loss, mask):
    """Mean of ``loss`` where ``mask`` (broadcast to its shape) is 1; 0 when none is."""
    mask = ops.broadcast_to(ops.cast(mask, "float32"), ops.shape(loss))
    return ops.sum(loss * mask) / ops.maximum(ops.sum(mask), 1.0)


def sparse_softmax_cross_entropy(labels, logits):
    """-log softmax(logits)[label] over the last axis. labels: logits' shape less one."""
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    labels = ops.expand_dims(ops.cast(labels, "int32"), -1)
    return -ops.squeeze(ops.take_along_axis(log_probs, labels, axis=-1), -1)


def binary_crossentropy(target, output):
    """Keras 2.1's binary cross-entropy on probabilities: clip, logit, sigmoid CE."""
    output = ops.clip(ops.cast(output, "float32"), EPSILON, 1 - EPSILON)
    logits = ops.log(output / (1 - output))
    return ops.binary_crossentropy(ops.cast(target, "float32"), logits, from_logits=True)


def rpn_class_loss(rpn_match, rpn_class_logits):
    """rpn_match: [batch, anchors, 1] (1, -1, 0 ignored); rpn_class_logits: [batch,
    anchors, 2]. Returns: scalar, the mean CE over non-neutral anchors."""
    rpn_match = ops.squeeze(ops.cast(rpn_match, "int32"), -1)  # [batch, anchors]
    anchor_class = ops.cast(ops.equal(rpn_match, 1), "int32")  # [batch, anchors]
    loss = sparse_softmax_cross_entropy(anchor_class, rpn_class_logits)  # [batch, anchors]
    return masked_mean(loss, ops.not_equal(rpn_match, 0))


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """target_bbox: [batch, rows, 4], row k of image i the deltas of its k-th positive
    anchor (in anchor order); rpn_match: [batch, anchors, 1]; rpn_bbox: [batch, anchors,
    4]. Returns: scalar, the mean Smooth-L1 over positive anchors."""
    positive = ops.equal(ops.squeeze(ops.cast(rpn_match, "int32"), -1), 1)  # [B, A]
    # Each positive anchor's rank among its image's positives is its target's row.
    rank = ops.cumsum(ops.cast(positive, "int32"), axis=1) - 1  # [B, A]
    rows = ops.shape(target_bbox)[1]
    rank = ops.clip(rank, 0, rows - 1)
    targets = ops.take_along_axis(ops.cast(target_bbox, "float32"),
                                  ops.expand_dims(rank, -1), axis=1)  # [B, A, 4]
    loss = smooth_l1(targets, rpn_bbox)  # [B, A, 4]
    return masked_mean(loss, ops.expand_dims(positive, -1))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """target_class_ids: [batch, rois]; pred_class_logits: [batch, rois, classes];
    active_class_ids: [batch, classes]. Returns: sum(CE x active(pred)) / sum(active(pred))
    with the first image's active classes for the whole batch (Matterport)."""
    pred_class_ids = ops.argmax(pred_class_logits, axis=2)  # [batch, rois]
    pred_active = ops.take(ops.cast(active_class_ids[0], "float32"),
                           pred_class_ids)  # [batch, rois]
    loss = sparse_softmax_cross_entropy(target_class_ids, pred_class_logits)
    return ops.sum(loss * pred_active) / ops.sum(pred_active)


def _of_true_class(values, class_ids):
    """values: [N, classes, ...] -> [N, ...], each row's entry of its class."""
    index = ops.reshape(ops.cast(class_ids, "int32"),
                        (-1, 1) + (1,) * (len(values.shape) - 2))
    return ops.squeeze(ops.take_along_axis(values, index, axis=1), 1)


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """target_bbox: [batch, rois, 4]; target_class_ids: [batch, rois]; pred_bbox: [batch,
    rois, classes, 4]. Returns: scalar, the mean Smooth-L1 of the true class's deltas
    over positive ROIs."""
    class_ids = ops.reshape(ops.cast(target_class_ids, "int32"), (-1,))  # [B*R]
    num_classes = pred_bbox.shape[2]
    pred = ops.reshape(pred_bbox, (-1, num_classes, 4))  # [B*R, classes, 4]
    pred = _of_true_class(pred, class_ids)  # [B*R, 4]
    loss = smooth_l1(ops.reshape(target_bbox, (-1, 4)), pred)  # [B*R, 4]
    return masked_mean(loss, ops.expand_dims(class_ids > 0, -1))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """target_masks: [batch, rois, h, w]; target_class_ids: [batch, rois]; pred_masks:
    [batch, rois, h, w, classes] probabilities. Returns: scalar, the mean binary CE of
    the true class's mask over positive ROIs."""
    height, width, num_classes = pred_masks.shape[2:]
    class_ids = ops.reshape(ops.cast(target_class_ids, "int32"), (-1,))  # [B*R]
    pred = ops.reshape(pred_masks, (-1, height, width, num_classes))  # [B*R, h, w, C]
    pred = _of_true_class(ops.transpose(pred, (0, 3, 1, 2)), class_ids)  # [B*R, h, w]
    target = ops.reshape(target_masks, (-1, height, width))  # [B*R, h, w]
    loss = binary_crossentropy(target, pred)  # [B*R, h, w]
    return masked_mean(loss, ops.reshape(class_ids > 0, (-1, 1, 1)))


def siamese_class_loss(target_class_ids, pred_class_logits):
    """The Siamese class loss: the mean CE over every ROI. target_class_ids: [batch,
    rois]; pred_class_logits: [batch, rois, classes]. Returns: scalar."""
    return masked_mean(sparse_softmax_cross_entropy(target_class_ids, pred_class_logits), 1)


__all__ = ["smooth_l1", "masked_mean", "sparse_softmax_cross_entropy",
           "binary_crossentropy", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
           "mrcnn_bbox_loss", "mrcnn_mask_loss", "siamese_class_loss", "EPSILON"]
