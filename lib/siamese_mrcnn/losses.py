"""The Siamese classifier loss (the paper code's ``siamese_mrcnn_class_loss_graph``).

The RPN, box and mask losses are Matterport's (``mrcnn.losses``). The class loss
differs: the heads classify background vs "same category as the reference", every ROI
counts, and there are no per-data-set active classes.
"""
from __future__ import annotations

try:  # JAX and PyTorch machines may have no TensorFlow: its paths then never run
    import tensorflow as tf
except ImportError:
    tf = None

import keras

from mrcnn import losses_ops
from mrcnn.losses import mean_or_zero

#: How a LossLayer names this function (so that a saved graph finds it again).
CLASS_LOSS_NAME = "siamese_mrcnn.losses.siamese_mrcnn_class_loss_graph"


def siamese_mrcnn_class_loss_graph(target_class_ids: tf.Tensor,
                                   pred_class_logits: tf.Tensor) -> tf.Tensor:
    """Siamese classifier loss: mean sparse softmax CE over all ROIs (0 if none).

    target_class_ids: [batch, num_rois] int (0 background, 1 the reference's category)
    pred_class_logits: [batch, num_rois, num_classes]
    Returns: scalar
    """
    if keras.backend.backend() != "tensorflow":
        return losses_ops.siamese_class_loss(target_class_ids, pred_class_logits)
    target_class_ids = tf.cast(target_class_ids, tf.int64)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=target_class_ids, logits=pred_class_logits)  # [batch, num_rois]
    return mean_or_zero(loss)


__all__ = ["siamese_mrcnn_class_loss_graph", "CLASS_LOSS_NAME"]
