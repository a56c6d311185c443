"""Small named layers that glue the Mask R-CNN graph together.

Matterport built these as anonymous ``Lambda`` layers. In Keras 3 a Lambda cannot be
serialized safely and hides its logic from readers, so each gets a tiny named class.
"""
from __future__ import annotations

import functools
import importlib
from typing import Callable

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="mrcnn")
class AnchorsLayer(keras.layers.Layer):
    """Broadcasts a fixed anchor array to the batch.

    The anchors are a constant of the graph, not a weight: they never appear in
    checkpoints (Matterport's Lambda with a tf.Variable did not either).

    Inputs: any tensor whose first axis is the batch (the image input).
    Output: [batch, num_anchors, 4] normalized anchors.
    """

    def __init__(self, anchors: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.anchors = np.asarray(anchors, dtype=np.float32)  # [num_anchors, 4]

    def call(self, image):
        batch = ops.shape(image)[0]
        anchors = ops.convert_to_tensor(self.anchors)
        return ops.broadcast_to(anchors[None], [batch, self.anchors.shape[0], 4])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.anchors.shape[0], 4)

    def get_config(self):
        config = super().get_config()
        config["anchors"] = self.anchors.tolist()
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class NormBoxes(keras.layers.Layer):
    """Pixel boxes [batch, N, 4] -> normalized boxes, using the image input's size.

    Matterport: ``norm_boxes_graph(x, K.shape(input_image)[1:3])``.
    """

    def call(self, inputs):
        from mrcnn.boxes import norm_boxes_ops

        boxes, image = inputs  # [batch, N, 4], [batch, H, W, C]
        return norm_boxes_ops(boxes, ops.shape(image)[1:3])

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="mrcnn")
class ActiveClassIds(keras.layers.Layer):
    """image_meta [batch, META] -> active_class_ids [batch, NUM_CLASSES] (meta[:, 12:])."""

    def call(self, image_meta):
        return image_meta[:, 12:]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] - 12 if input_shape[1] else None)


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionBoxes(keras.layers.Layer):
    """detections [batch, N, 6] -> boxes [batch, N, 4] (y1, x1, y2, x2 normalized)."""

    def call(self, detections):
        return detections[..., :4]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (4,)


@keras.saving.register_keras_serializable(package="mrcnn")
class Identity(keras.layers.Layer):
    """Names a tensor (Matterport's ``output_rois`` Lambda)."""

    def call(self, x):
        return ops.copy(x)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="mrcnn")
class LossLayer(keras.layers.Layer):
    """Computes one loss component from graph tensors; the layer name is the loss name.

    ``loss_fn`` names a function of ``mrcnn.losses``, or of another module as
    "package.module.function" (kept as a string so the layer serializes). Plain
    (JSON-able) arguments that precede the tensors in the loss function's signature, such
    as rpn_bbox_loss_graph's images-per-GPU, go in ``leading_args``. Output: a scalar.
    """

    def __init__(self, loss_fn: str, leading_args: list | None = None,
                 function: Callable | None = None, **kwargs):
        # Losses are computed in float32 under a mixed-precision policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.loss_fn = loss_fn
        self.leading_args = list(leading_args or [])
        # A user's replacement for the named function (not serialized); it is called
        # with the tensors only, so bind any leading arguments into it.
        self.function = function

    def _function(self) -> Callable:
        if self.function is not None:
            return self.function
        if "." in self.loss_fn:  # another package's loss: "package.module.function"
            module_name, _, name = self.loss_fn.rpartition(".")
            module = importlib.import_module(module_name)
        else:
            from mrcnn import losses as module
            name = self.loss_fn
        return functools.partial(getattr(module, name), *self.leading_args)

    def call(self, inputs):
        return ops.reshape(self._function()(*inputs), [])

    def compute_output_shape(self, input_shape):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update(loss_fn=self.loss_fn, leading_args=self.leading_args)
        return config
