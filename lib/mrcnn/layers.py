"""Small general-purpose Keras layers shared by the Mask R-CNN graph.

- BatchNorm: Matterport's name for batch normalization, with a `frozen` switch that
  really freezes it under Keras 3 (whose `fit` passes its outer `training=True` down to
  every layer, overriding a call-time `training=False`).
- TimeDistributed: applies a layer to every ROI by merging the batch and ROI axes,
  which is fast and correct whether the ROI axis is static or dynamic.
- Squeeze, RepeatAlongAxis: shape helpers used by the heads, as real layers instead of
  anonymous Lambdas so that models serialize and read well.
- Conv2DTranspose: Keras' (same weights, same numbers), computed as one matmul per
  input pixel where the kernel equals the stride: the mask head's 2x2, stride-2
  deconv, whose kernel gradient XLA's CPU backend computes about 12 times slower than
  the matmul (benchmarks/README.md, "The JAX backend").
"""
import logging
from typing import Optional, Sequence, Union

import keras
from keras import ops

logger = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="mrcnn")
class BatchNorm(keras.layers.BatchNormalization):
    """Batch normalization that can be frozen.

    frozen: if True the layer always runs in inference mode (moving mean and variance
        are used and never updated), whatever `training` flag it receives. gamma and
        beta stay trainable unless `trainable` is set to False, as in Matterport where
        TRAIN_BN=False freezes the statistics but later training stages still fit the
        affine parameters.
    All other keyword arguments are those of keras.layers.BatchNormalization (Keras
    defaults: axis=-1, momentum=0.99, epsilon=0.001), as in Matterport.
    """

    def __init__(self, frozen: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.frozen = bool(frozen)

    def call(self, inputs, training=None, mask=None):
        if self.frozen:
            # Keras 3 passes the outer training flag down during fit; a frozen
            # layer must ignore it or its statistics drift.
            training = False
        return super().call(inputs, training=training, mask=mask)

    def get_config(self) -> dict:
        config = super().get_config()
        config["frozen"] = self.frozen
        return config


def is_frozen(train_bn) -> bool:
    """Matterport's TRAIN_BN -> BatchNorm(frozen=...).

    False: frozen (moving statistics, never updated). None: normal BatchNorm (batch
    statistics while training, moving ones at inference). True: the same as None here;
    Matterport kept batch statistics even at inference, which makes a detection depend
    on the rest of its batch, so inference uses the moving statistics.
    """
    return train_bn is False


def _dims(tensor) -> list:
    """Shape of `tensor` as a list: Python ints where static, scalar tensors where not
    (any backend; under JAX and PyTorch every dimension is static)."""
    return list(ops.shape(tensor))


@keras.saving.register_keras_serializable(package="mrcnn")
class TimeDistributed(keras.layers.Wrapper):
    """Applies `layer` to every slice along axis 1 (the ROI axis).

    Input [batch, time, ...] is reshaped to [batch * time, ...], passed through the
    wrapped layer once, and reshaped back to [batch, time, ...]. Unlike
    keras.layers.TimeDistributed this does not loop in Python over a static time axis,
    and it handles a dynamic (None) time axis inside tf.function.

    The wrapper's name is the one checkpoints use (Keras 2 stored the inner weights
    under the wrapper's name). Give the inner layer an explicit name too, so that its
    variable paths never depend on Keras' global name counter.
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                f"TimeDistributed expects a keras.layers.Layer to wrap, got {type(layer)!r}"
            )
        super().__init__(layer, **kwargs)

    @staticmethod
    def _inner_shape(input_shape: Sequence[Optional[int]]) -> tuple:
        if input_shape is None or len(input_shape) < 3:
            raise ValueError(
                "TimeDistributed expects an input of rank >= 3 [batch, time, ...], "
                f"got shape {input_shape}"
            )
        batch, time = input_shape[0], input_shape[1]
        merged = batch * time if batch is not None and time is not None else None
        return (merged, *input_shape[2:])

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(self._inner_shape(tuple(input_shape)))
        self.built = True

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        inner = self.layer.compute_output_shape(self._inner_shape(input_shape))
        return (input_shape[0], input_shape[1], *inner[1:])

    def call(self, inputs, training=None):
        dims = _dims(inputs)  # [batch, time, d1, d2, ...]
        merged = ops.reshape(inputs, [-1] + dims[2:])  # [batch * time, d1, d2, ...]
        kwargs = {}
        if self.layer._call_has_training_arg:
            kwargs["training"] = training
        outputs = self.layer(merged, **kwargs)  # [batch * time, o1, o2, ...]
        return ops.reshape(outputs, dims[:2] + _dims(outputs)[1:])  # [batch, time, o1, ...]


def unit_axes(input_shape, axes: Sequence[int], layer_name: str, verb: str) -> list:
    """``axes`` made non-negative and sorted; ValueError unless each has size 1 (or is
    unknown) in ``input_shape``."""
    rank = len(input_shape)
    found = sorted(a % rank for a in axes)
    for a in found:
        if input_shape[a] is not None and input_shape[a] != 1:
            raise ValueError(f"{layer_name}: axis {a} must have size 1 to be {verb}, "
                             f"input shape is {tuple(input_shape)}")
    return found


@keras.saving.register_keras_serializable(package="mrcnn")
class Squeeze(keras.layers.Layer):
    """Removes the given size-1 axes, e.g. [batch, rois, 1, 1, C] -> [batch, rois, C]."""

    def __init__(self, axis: Union[int, Sequence[int]], **kwargs):
        super().__init__(**kwargs)
        self.axis = [int(axis)] if isinstance(axis, int) else [int(a) for a in axis]

    def _check(self, input_shape) -> list:
        return unit_axes(input_shape, self.axis, self.name, "squeezed")

    def call(self, inputs):
        self._check(inputs.shape)
        return ops.squeeze(inputs, axis=self.axis)

    def compute_output_shape(self, input_shape):
        axes = self._check(input_shape)
        return tuple(d for i, d in enumerate(input_shape) if i not in axes)

    def get_config(self) -> dict:
        config = super().get_config()
        config["axis"] = list(self.axis)
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class RepeatAlongAxis(keras.layers.Layer):
    """Repeats a size-1 axis `repeats` times, e.g. [b, r, 1, 4] -> [b, r, n, 4].

    Used where the Siamese heads predict one class-agnostic box or mask and the rest of
    the graph expects one per class.
    """

    def __init__(self, repeats: int, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if int(repeats) < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.repeats = int(repeats)
        self.axis = int(axis)

    def _check(self, input_shape) -> int:
        return unit_axes(input_shape, [self.axis], self.name, "repeated")[0]

    def call(self, inputs):
        axis = self._check(inputs.shape)
        multiples = [1] * len(inputs.shape)
        multiples[axis] = self.repeats
        return ops.tile(inputs, multiples)

    def compute_output_shape(self, input_shape):
        axis = self._check(input_shape)
        shape = list(input_shape)
        shape[axis] = self.repeats
        return tuple(shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"repeats": self.repeats, "axis": self.axis})
        return config


@keras.saving.register_keras_serializable(package="mrcnn")
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """keras.layers.Conv2DTranspose (same constructor, weights, config and numbers) that
    computes a kernel which tiles its output (kernel_size == strides, "valid" padding,
    no dilation, no output_padding, channels_last) as one einsum: every input pixel
    writes its own block, out[i*kh + a, j*kw + b] = in[i, j] @ kernel[a, b].T. Other
    kernels go through Keras' own transposed convolution.

    Named as Keras' class because Matterport's inspect_weights notebook picks the layers
    to plot by class name ("Conv2D", "Dense", "Conv2DTranspose").
    """

    def tiles_output(self) -> bool:
        """Whether every input pixel writes a block of its own (no overlap, no gaps)."""
        return (tuple(self.strides) == tuple(self.kernel_size) and self.padding == "valid"
                and tuple(self.dilation_rate) == (1, 1)
                and self.data_format == "channels_last"
                and getattr(self, "output_padding", None) in (None, (0, 0), [0, 0]))

    def call(self, inputs):
        if not self.tiles_output():
            return super().call(inputs)
        # inputs: [batch, height, width, in_channels]; kernel: [kh, kw, filters, in]
        kh, kw = self.kernel_size
        height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
        # [batch, height, kh, width, kw, filters]
        blocks = ops.einsum("nhwc,abfc->nhawbf", inputs, self.kernel)
        # [batch, height * kh, width * kw, filters]
        outputs = ops.reshape(blocks, (-1, height * kh, width * kw, self.filters))
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs
