"""PyramidROIAlign: pools each ROI from the FPN level that suits its size (Matterport 2.1)."""
from __future__ import annotations

import logging
from typing import Sequence

import keras
from keras import ops

from mrcnn.backend_ops import pyramid_crop_and_resize
from mrcnn.molding import parse_image_meta_graph

try:  # the TensorFlow backend's graph; JAX and PyTorch run call_ops (keras.ops)
    import tensorflow as tf
except ImportError:  # a machine with JAX or PyTorch only
    tf = None

logger = logging.getLogger(__name__)

# Sorting key of (batch, box) pairs: more boxes per image than this would collide.
_BOX_SORT_STRIDE = 100000


def log2_graph(x: tf.Tensor) -> tf.Tensor:
    """Base-2 logarithm."""
    return tf.math.log(x) / tf.math.log(2.0)


def roi_level_graph(boxes: tf.Tensor, image_shape: tf.Tensor) -> tf.Tensor:
    """FPN level (2..5) of each ROI, equation 1 of the FPN paper.

    A 224x224 ROI (in pixels of a 224-px reference image, scaled by sqrt(image area))
    maps to P4; each halving of the size goes one level down.
    boxes: [batch, num_boxes, (y1, x1, y2, x2)] normalized
    image_shape: [3] (height, width, channels) of the molded image
    Returns: [batch, num_boxes] int32
    """
    y1, x1, y2, x2 = tf.split(boxes, 4, axis=2)  # each [batch, num_boxes, 1]
    h = y2 - y1
    w = x2 - x1
    # Boxes are normalized, so the 224 px reference is scaled by the image size too.
    image_area = tf.cast(image_shape[0] * image_shape[1], tf.float32)
    roi_level = log2_graph(tf.sqrt(h * w) / (224.0 / tf.sqrt(image_area)))
    roi_level = tf.minimum(5, tf.maximum(2, 4 + tf.cast(tf.round(roi_level), tf.int32)))
    return tf.squeeze(roi_level, 2)  # [batch, num_boxes]


def roi_level_ops(boxes, image_shape):
    """roi_level_graph in keras.ops: [batch, N, 4] normalized boxes -> [batch, N] int32
    levels 2..5 (padding boxes, of area 0, go to level 2 as in the TF graph)."""
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    area = ops.cast(image_shape[0] * image_shape[1], "float32")
    size = ops.sqrt(ops.maximum(h * w, 1e-30)) / (224.0 / ops.sqrt(area))
    level = 4 + ops.cast(ops.round(ops.log(size) / ops.log(2.0)), "int32")
    return ops.where(h * w > 0, ops.clip(level, 2, 5), 2)


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(keras.layers.Layer):
    """ROI pooling over the feature pyramid.

    Each box is cropped from one level (see roi_level_graph) with bilinear
    crop_and_resize, a single sample per output bin.

    Params:
        pool_shape: (pool_height, pool_width), usually (7, 7)
    Inputs (one list): [boxes, image_meta, P2, P3, P4, P5]
        boxes: [batch, num_boxes, (y1, x1, y2, x2)] normalized, maybe zero padded
        image_meta: [batch, META] (see compose_image_meta); the first image's
            image_shape is used: images of a batch share one size
        P2..P5: [batch, height, width, channels] each
    Returns:
        [batch, num_boxes, pool_height, pool_width, channels], boxes in input order
    """

    def __init__(self, pool_shape: Sequence[int], **kwargs):
        # Box arithmetic, NMS and crop_and_resize run in float32 even under a
        # mixed-precision policy (inputs are cast on entry).
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        pool_shape = tuple(int(s) for s in pool_shape)
        if len(pool_shape) != 2 or min(pool_shape) < 1:
            raise ValueError(f"pool_shape must be (height, width) >= 1, got {pool_shape}")
        self.pool_shape = pool_shape

    def call(self, inputs):
        if len(inputs) != 6:
            raise ValueError("PyramidROIAlign expects [boxes, image_meta, P2, P3, P4, P5], "
                             f"got {len(inputs)} inputs")
        if keras.backend.backend() != "tensorflow":
            return self.call_ops(inputs)
        boxes = inputs[0]  # [batch, num_boxes, 4]
        image_meta = inputs[1]  # [batch, META]
        feature_maps = inputs[2:]  # P2..P5, each [batch, h, w, C]

        image_shape = parse_image_meta_graph(image_meta)["image_shape"][0]  # [3]
        roi_level = roi_level_graph(boxes, image_shape)  # [batch, num_boxes]

        pooled = []
        box_to_level = []
        for i, level in enumerate(range(2, 6)):
            ix = tf.where(tf.equal(roi_level, level))  # [n_level, (batch, box)]
            level_boxes = tf.gather_nd(boxes, ix)  # [n_level, 4]
            box_indices = tf.cast(ix[:, 0], tf.int32)  # [n_level]
            box_to_level.append(ix)
            # Proposals are targets of their own losses; no gradient through the crop.
            level_boxes = tf.stop_gradient(level_boxes)
            box_indices = tf.stop_gradient(box_indices)
            pooled.append(tf.image.crop_and_resize(
                feature_maps[i], level_boxes, box_indices, self.pool_shape,
                method="bilinear"))  # [n_level, ph, pw, C]

        pooled = tf.concat(pooled, axis=0)  # [batch * num_boxes, ph, pw, C], level order

        # Put the pooled boxes back in (batch, box) order.
        box_to_level = tf.concat(box_to_level, axis=0)  # [batch * num_boxes, 2]
        box_range = tf.expand_dims(tf.range(tf.shape(box_to_level)[0]), 1)
        box_to_level = tf.concat([tf.cast(box_to_level, tf.int32), box_range], axis=1)
        sorting_tensor = box_to_level[:, 0] * _BOX_SORT_STRIDE + box_to_level[:, 1]
        ix = tf.nn.top_k(sorting_tensor, k=tf.shape(box_to_level)[0]).indices[::-1]
        ix = tf.gather(box_to_level[:, 2], ix)
        pooled = tf.gather(pooled, ix)

        shape = tf.concat([tf.shape(boxes)[:2], tf.shape(pooled)[1:]], axis=0)
        pooled = tf.reshape(pooled, shape)
        pooled.set_shape(self._output_shape(boxes.shape, feature_maps[0].shape))
        return pooled  # [batch, num_boxes, ph, pw, C]

    def call_ops(self, inputs):
        """call() in keras.ops with static shapes (the JAX and PyTorch backends): each
        box cropped from its own level in one gather over the four maps."""
        boxes = ops.stop_gradient(ops.cast(inputs[0], "float32"))  # [batch, N, 4]
        image_shape = parse_image_meta_graph(inputs[1])["image_shape"][0]  # [3]
        batch, count = int(boxes.shape[0]), int(boxes.shape[1])
        level = ops.reshape(roi_level_ops(boxes, image_shape), (-1,))  # [batch * N] 2..5
        index = ops.repeat(ops.arange(batch, dtype="int32"), count)  # the image of each box
        pooled = pyramid_crop_and_resize(inputs[2:], ops.reshape(boxes, (-1, 4)), index,
                                         level - 2, self.pool_shape)  # [batch * N, ph, pw, C]
        return ops.reshape(pooled, (batch, count, *self.pool_shape, -1))

    def _output_shape(self, boxes_shape, feature_shape) -> tuple:
        return tuple(boxes_shape[:2]) + self.pool_shape + (feature_shape[-1],)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape[0], input_shape[2])

    def get_config(self) -> dict:
        config = super().get_config()
        config["pool_shape"] = list(self.pool_shape)
        return config
