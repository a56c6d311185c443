"""Second-stage heads: the classifier/box head and the mask head (Matterport names).

Every per-ROI layer is wrapped in mrcnn.layers.TimeDistributed under the Matterport
name (the name the checkpoints use); the wrapped layer is named "<name>_inner".
The Siamese variant predicts one class-agnostic box and one mask channel and repeats
them for every class, so the rest of the graph (losses, detection) is unchanged.
"""
import logging
from typing import Optional

import keras

from mrcnn.layers import (BatchNorm, Conv2DTranspose, RepeatAlongAxis, Squeeze, TimeDistributed,
                          is_frozen)
from mrcnn.roi_align import PyramidROIAlign

logger = logging.getLogger(__name__)


# Matterport's mask head width (config.MASK_HEAD_CONV_CHANNELS can make it smaller).
DEFAULT_MASK_CONV_CHANNELS = 256


def _per_roi(layer_class, name: str, *args, **kwargs) -> TimeDistributed:
    """`layer_class(*args, **kwargs)` applied to every ROI, under the checkpoint name."""
    return TimeDistributed(layer_class(*args, name=name + "_inner", **kwargs), name=name)


def _conv_bn_relu(x, filters: int, kernel_size: int, padding: str, conv_name: str,
                  bn_name: str, train_bn: bool):
    """Per-ROI conv, BatchNorm (frozen unless train_bn), ReLU."""
    x = _per_roi(keras.layers.Conv2D, conv_name, filters, (kernel_size, kernel_size),
                 padding=padding)(x)
    x = _per_roi(BatchNorm, bn_name, frozen=is_frozen(train_bn))(x)
    return keras.layers.Activation("relu", name=conv_name + "_relu")(x)


def fpn_classifier_graph(rois, feature_maps, image_meta, pool_size: int, num_classes: int,
                         train_bn: bool = True, fc_layers_size: int = 1024,
                         class_agnostic_bbox: bool = False):
    """Builds the classifier and box-regression head.

    rois: [batch, num_rois, (y1, x1, y2, x2)] proposals in normalized coordinates
    feature_maps: [P2, P3, P4, P5], each [batch, height, width, channels]
    image_meta: [batch, META] (see compose_image_meta)
    pool_size: side of the ROI-aligned feature crops (POOL_SIZE, 7)
    num_classes: classes including the background
    train_bn: False freezes the BatchNorm layers
    fc_layers_size: width of the two fully connected layers (as convs)
    class_agnostic_bbox: predict one box per ROI (Dense(4), the Siamese head) and repeat
        it for every class, instead of one box per class
    Returns:
        mrcnn_class_logits: [batch, num_rois, num_classes] (before softmax)
        mrcnn_probs: [batch, num_rois, num_classes]
        mrcnn_bbox: [batch, num_rois, num_classes, (dy, dx, log(dh), log(dw))]
    """
    # [batch, num_rois, pool_size, pool_size, channels]
    x = PyramidROIAlign([pool_size, pool_size],
                        name="roi_align_classifier")([rois, image_meta] + list(feature_maps))
    # Two fully connected layers, as convs: the first one spans the whole crop.
    x = _conv_bn_relu(x, fc_layers_size, pool_size, "valid", "mrcnn_class_conv1",
                      "mrcnn_class_bn1", train_bn)  # [batch, num_rois, 1, 1, fc]
    x = _conv_bn_relu(x, fc_layers_size, 1, "valid", "mrcnn_class_conv2",
                      "mrcnn_class_bn2", train_bn)  # [batch, num_rois, 1, 1, fc]
    shared = Squeeze(axis=(2, 3), name="pool_squeeze")(x)  # [batch, num_rois, fc]

    # Classifier head
    mrcnn_class_logits = _per_roi(keras.layers.Dense, "mrcnn_class_logits",
                                  num_classes)(shared)  # [batch, num_rois, num_classes]
    mrcnn_probs = keras.layers.Activation("softmax", name="mrcnn_class")(mrcnn_class_logits)

    # Box head: [batch, num_rois, boxes_per_roi * (dy, dx, log(dh), log(dw))]
    boxes_per_roi = 1 if class_agnostic_bbox else num_classes
    x = _per_roi(keras.layers.Dense, "mrcnn_bbox_fc", boxes_per_roi * 4,
                 activation="linear")(shared)
    # [batch, num_rois, boxes_per_roi, 4]
    mrcnn_bbox = keras.layers.Reshape((-1, boxes_per_roi, 4), name="mrcnn_bbox")(x)
    if class_agnostic_bbox:
        # [batch, num_rois, num_classes, 4]
        mrcnn_bbox = RepeatAlongAxis(num_classes, axis=2,
                                     name="mrcnn_bbox_repeat")(mrcnn_bbox)
    return mrcnn_class_logits, mrcnn_probs, mrcnn_bbox


def build_fpn_mask_graph(rois, feature_maps, image_meta, pool_size: int, num_classes: int,
                         train_bn: bool = True, mask_channels: Optional[int] = None,
                         conv_channels: int = DEFAULT_MASK_CONV_CHANNELS):
    """Builds the mask head.

    rois: [batch, num_rois, (y1, x1, y2, x2)] boxes in normalized coordinates
    feature_maps: [P2, P3, P4, P5], each [batch, height, width, channels]
    image_meta: [batch, META]
    pool_size: side of the ROI-aligned crops (MASK_POOL_SIZE, 14)
    num_classes: classes including the background
    train_bn: False freezes the BatchNorm layers
    mask_channels: None for one mask per class (Matterport); 1 for a single
        class-agnostic mask repeated for every class (Siamese)
    conv_channels: width of the four convs and the deconv (Matterport: 256; smaller
        for CPU-sized models, config.MASK_HEAD_CONV_CHANNELS)
    Returns: masks [batch, num_rois, 2 * pool_size, 2 * pool_size, num_classes]
    """
    if mask_channels is None:
        mask_channels = num_classes
    if mask_channels not in (1, num_classes):
        raise ValueError(f"mask_channels must be None, 1 or num_classes ({num_classes}), "
                         f"got {mask_channels}")

    # [batch, num_rois, pool_size, pool_size, channels]
    x = PyramidROIAlign([pool_size, pool_size],
                        name="roi_align_mask")([rois, image_meta] + list(feature_maps))
    for i in range(1, 5):
        # [batch, num_rois, pool_size, pool_size, conv_channels]
        x = _conv_bn_relu(x, conv_channels, 3, "same", f"mrcnn_mask_conv{i}", f"mrcnn_mask_bn{i}",
                          train_bn)
    # [batch, num_rois, 2 * pool_size, 2 * pool_size, conv_channels]
    # (Matterport's Conv2DTranspose; ours computes it as a per-pixel matmul)
    x = _per_roi(Conv2DTranspose, "mrcnn_mask_deconv", conv_channels, (2, 2),
                 strides=2, activation="relu")(x)
    # [batch, num_rois, 2 * pool_size, 2 * pool_size, mask_channels]
    x = _per_roi(keras.layers.Conv2D, "mrcnn_mask", mask_channels, (1, 1), strides=1,
                 activation="sigmoid")(x)
    if mask_channels != num_classes:
        # [batch, num_rois, 2 * pool_size, 2 * pool_size, num_classes]
        x = RepeatAlongAxis(num_classes, axis=-1, name="mrcnn_mask_repeat")(x)
    return x
