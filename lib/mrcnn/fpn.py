"""The feature pyramid (Matterport's top-down FPN) and its nested-model form.

Matterport's FPN convs are linear; the Siamese FPN puts a ReLU inside every conv
(Conv2D(..., activation="relu") in its code), which `activation="relu"` reproduces.
The fused activation adds no layers, so layer names and weights are the same in both.
"""
import logging
from typing import Optional, Sequence, Union

import keras

logger = logging.getLogger(__name__)


def fpn_graph(C2, C3, C4, C5, pyramid_size: int, activation: Optional[str] = None) -> list:
    """Builds the top-down pyramid on the backbone stages.

    C2..C5: [batch, H/4, W/4, c2] ... [batch, H/32, W/32, c5]
    pyramid_size: channels of every pyramid level (TOP_DOWN_PYRAMID_SIZE)
    activation: None (Matterport, linear convs) or e.g. "relu" (Siamese FPN)
    Returns [P2, P3, P4, P5, P6], each [batch, h, w, pyramid_size]; P6 subsamples P5
    with stride 2 and feeds only the RPN.
    """
    def lateral(name):
        return keras.layers.Conv2D(pyramid_size, (1, 1), activation=activation, name=name)

    def output_conv(name):
        return keras.layers.Conv2D(pyramid_size, (3, 3), padding="same",
                                   activation=activation, name=name)

    P5 = lateral("fpn_c5p5")(C5)  # [batch, H/32, W/32, pyramid_size]
    P4 = keras.layers.Add(name="fpn_p4add")([
        keras.layers.UpSampling2D(size=(2, 2), name="fpn_p5upsampled")(P5),
        lateral("fpn_c4p4")(C4)])  # [batch, H/16, W/16, pyramid_size]
    P3 = keras.layers.Add(name="fpn_p3add")([
        keras.layers.UpSampling2D(size=(2, 2), name="fpn_p4upsampled")(P4),
        lateral("fpn_c3p3")(C3)])  # [batch, H/8, W/8, pyramid_size]
    P2 = keras.layers.Add(name="fpn_p2add")([
        keras.layers.UpSampling2D(size=(2, 2), name="fpn_p3upsampled")(P3),
        lateral("fpn_c2p2")(C2)])  # [batch, H/4, W/4, pyramid_size]
    # A 3x3 conv on every level smooths the aliasing of the upsampling.
    P2 = output_conv("fpn_p2")(P2)
    P3 = output_conv("fpn_p3")(P3)
    P4 = output_conv("fpn_p4")(P4)
    P5 = output_conv("fpn_p5")(P5)
    # P6 gives the RPN its 5th anchor scale.
    P6 = keras.layers.MaxPooling2D(pool_size=(1, 1), strides=2, name="fpn_p6")(P5)
    return [P2, P3, P4, P5, P6]


def _level_shape(shape: Union[int, Sequence[Optional[int]]]) -> tuple:
    """A backbone level's [h, w, c] shape; a bare channel count means [None, None, c]."""
    if isinstance(shape, int):
        return (None, None, shape)
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(f"Each feature shape must be [h, w, c] or a channel count, "
                         f"got {shape}")
    return shape


def build_fpn_model(feature_shapes: Sequence, pyramid_size: int,
                    activation: Optional[str] = "relu",
                    name: str = "fpn_model") -> keras.Model:
    """The FPN as a nested model mapping [C2, C3, C4, C5] to [P2, P3, P4, P5, P6].

    feature_shapes: four [h, w, c] shapes (h, w may be None) or four channel counts,
        e.g. [256, 512, 1024, 2048] for ResNet-50/101.
    Its weights come in the order fpn_c5p5, fpn_c4p4, fpn_c3p3, fpn_c2p2, fpn_p5,
    fpn_p2, fpn_p3, fpn_p4, as in the released Siamese checkpoints.
    """
    if len(feature_shapes) != 4:
        raise ValueError(f"feature_shapes must hold 4 shapes (C2..C5), "
                         f"got {len(feature_shapes)}")
    inputs = [keras.Input(shape=_level_shape(s), name=f"input_C{level}")
              for level, s in zip(range(2, 6), feature_shapes)]
    outputs = fpn_graph(*inputs, pyramid_size=pyramid_size, activation=activation)
    return keras.Model(inputs, outputs, name=name)
