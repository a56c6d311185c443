"""ResNet backbone (Matterport's resnet_graph) and the backbone feature-map shapes.

Layer names follow Matterport exactly (conv1, bn_conv1, res{stage}{block}_branch{2a,2b,
2c,1}, bn{stage}{block}_branch...): released weights and the training-stage regexes
depend on them.
"""
import logging
import math
from typing import List, Optional, Sequence, Tuple

import keras
import numpy as np

from mrcnn.layers import BatchNorm, is_frozen

from mrcnn.config import RESNET_ARCHITECTURES

logger = logging.getLogger(__name__)

# Filters of conv1 and of the three convs of each bottleneck in stages 2..5, for the
# full-width ResNets. Smaller variants divide them (resnet_tiny: by 4, for CPU tests).
_CONV1_FILTERS = 64
_STAGE_FILTERS = ((64, 64, 256), (128, 128, 512), (256, 256, 1024), (512, 512, 2048))
_WIDTH_DIVISOR = {"resnet_tiny": 4}


def _check_architecture(architecture: str) -> Tuple[int, int, int, int]:
    """Blocks per stage (2..5) of a named architecture; ValueError when unknown."""
    if architecture not in RESNET_ARCHITECTURES:
        raise ValueError(
            f"Unknown backbone architecture {architecture!r}; "
            f"expected one of {sorted(RESNET_ARCHITECTURES)}"
        )
    return tuple(RESNET_ARCHITECTURES[architecture])


def stage_filters(architecture: str) -> Tuple[int, List[Tuple[int, int, int]]]:
    """(conv1 filters, [filters of stage 2..5]) for an architecture."""
    _check_architecture(architecture)
    divisor = _WIDTH_DIVISOR.get(architecture, 1)
    stages = [tuple(f // divisor for f in filters) for filters in _STAGE_FILTERS]
    return _CONV1_FILTERS // divisor, stages


def feature_channels(architecture: str) -> List[int]:
    """Channels of C2..C5 for an architecture, e.g. [256, 512, 1024, 2048]."""
    return [filters[2] for filters in stage_filters(architecture)[1]]


def _main_path(input_tensor, kernel_size: int, filters: Sequence[int], stage: int,
               block: str, strides, use_bias: bool, frozen: bool):
    """The bottleneck's 1x1 (stride `strides`) -> kxk -> 1x1 convs, before the add."""
    nb_filter1, nb_filter2, nb_filter3 = filters
    conv_name_base = f"res{stage}{block}_branch"
    bn_name_base = f"bn{stage}{block}_branch"

    x = keras.layers.Conv2D(nb_filter1, (1, 1), strides=strides,
                            name=conv_name_base + "2a", use_bias=use_bias)(input_tensor)
    x = BatchNorm(frozen=frozen, name=bn_name_base + "2a")(x)
    x = keras.layers.Activation("relu", name=f"res{stage}{block}_branch2a_relu")(x)

    x = keras.layers.Conv2D(nb_filter2, (kernel_size, kernel_size), padding="same",
                            name=conv_name_base + "2b", use_bias=use_bias)(x)
    x = BatchNorm(frozen=frozen, name=bn_name_base + "2b")(x)
    x = keras.layers.Activation("relu", name=f"res{stage}{block}_branch2b_relu")(x)

    x = keras.layers.Conv2D(nb_filter3, (1, 1), name=conv_name_base + "2c",
                            use_bias=use_bias)(x)
    return BatchNorm(frozen=frozen, name=bn_name_base + "2c")(x)


def identity_block(input_tensor, kernel_size: int, filters: Sequence[int], stage: int,
                   block: str, use_bias: bool = True, train_bn: bool = True):
    """Bottleneck block whose shortcut is the identity.

    input_tensor: [batch, H, W, filters[2]]
    kernel_size: size of the middle conv of the main path (3)
    filters: filters of the three convs of the main path
    stage, block: used to name the layers, e.g. stage 2, block 'b' -> res2b_branch2a
    train_bn: False freezes the BatchNorm layers (inference mode, no updates)
    Returns [batch, H, W, filters[2]].
    """
    x = _main_path(input_tensor, kernel_size, filters, stage, block, (1, 1), use_bias,
                   is_frozen(train_bn))
    x = keras.layers.Add(name=f"res{stage}{block}_add")([x, input_tensor])
    return keras.layers.Activation("relu", name=f"res{stage}{block}_out")(x)


def conv_block(input_tensor, kernel_size: int, filters: Sequence[int], stage: int,
               block: str, strides=(2, 2), use_bias: bool = True, train_bn: bool = True):
    """Bottleneck block with a 1x1 conv on the shortcut (first block of a stage).

    The first conv of the main path and the shortcut conv both use `strides`
    (2 from stage 3 on, 1 in stage 2).
    input_tensor: [batch, H, W, C] -> [batch, H / s, W / s, filters[2]]
    """
    frozen = is_frozen(train_bn)
    x = _main_path(input_tensor, kernel_size, filters, stage, block, strides, use_bias,
                   frozen)
    shortcut = keras.layers.Conv2D(filters[2], (1, 1), strides=strides,
                                   name=f"res{stage}{block}_branch1",
                                   use_bias=use_bias)(input_tensor)
    shortcut = BatchNorm(frozen=frozen, name=f"bn{stage}{block}_branch1")(shortcut)
    x = keras.layers.Add(name=f"res{stage}{block}_add")([x, shortcut])
    return keras.layers.Activation("relu", name=f"res{stage}{block}_out")(x)


def _stage(x, stage: int, num_blocks: int, filters: Sequence[int], strides, train_bn: bool):
    """One ResNet stage: a conv_block 'a' then identity blocks 'b', 'c', ..."""
    x = conv_block(x, 3, filters, stage=stage, block="a", strides=strides,
                   train_bn=train_bn)
    for i in range(num_blocks - 1):
        x = identity_block(x, 3, filters, stage=stage, block=chr(98 + i),
                           train_bn=train_bn)
    return x


def resnet_graph(input_image, architecture: str, stage5: bool = False,
                 train_bn: bool = True) -> list:
    """Builds a ResNet graph on `input_image` ([batch, H, W, 3]).

    architecture: a key of RESNET_ARCHITECTURES (resnet50, resnet101, resnet_tiny)
    stage5: if False, stage 5 is not built and C5 is None
    train_bn: False freezes every BatchNorm (inference mode, statistics never updated)
    Returns [C1, C2, C3, C4, C5] at strides 4, 4, 8, 16, 32.
    """
    blocks = _check_architecture(architecture)
    conv1_filters, filters = stage_filters(architecture)

    # Stage 1
    x = keras.layers.ZeroPadding2D((3, 3), name="conv1_pad")(input_image)
    x = keras.layers.Conv2D(conv1_filters, (7, 7), strides=(2, 2), name="conv1",
                            use_bias=True)(x)
    x = BatchNorm(frozen=is_frozen(train_bn), name="bn_conv1")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    C1 = x = keras.layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same",
                                       name="pool1")(x)
    # Stages 2..4 (stage 2 keeps the resolution: the max pool already halved it)
    C2 = x = _stage(x, 2, blocks[0], filters[0], (1, 1), train_bn)
    C3 = x = _stage(x, 3, blocks[1], filters[1], (2, 2), train_bn)
    C4 = x = _stage(x, 4, blocks[2], filters[2], (2, 2), train_bn)
    # Stage 5
    C5 = _stage(x, 5, blocks[3], filters[3], (2, 2), train_bn) if stage5 else None
    return [C1, C2, C3, C4, C5]


def build_resnet_model(input_shape: Sequence[Optional[int]], architecture: str,
                       stage5: bool = True, train_bn: bool = False,
                       name: str = "resnet_model") -> keras.Model:
    """The ResNet as a nested Keras model mapping an image to [C2, C3, C4, C5].

    Used by the Siamese model to encode the query and the references with shared
    weights. Inner layer names carry no prefix, as in the released checkpoints.
    input_shape: [H, W, 3]; H and W may be None.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be [H, W, C], got {list(input_shape)}")
    if not stage5:
        raise ValueError("build_resnet_model needs stage5=True: its outputs include C5")
    input_image = keras.Input(shape=tuple(input_shape), name="input_image")
    _, C2, C3, C4, C5 = resnet_graph(input_image, architecture, stage5=True,
                                     train_bn=train_bn)
    return keras.Model(input_image, [C2, C3, C4, C5], name=name)


def compute_backbone_shapes(config, image_shape: Sequence[int]) -> np.ndarray:
    """[N, (height, width)] of the backbone feature maps at config.BACKBONE_STRIDES.

    A callable BACKBONE must come with config.COMPUTE_BACKBONE_SHAPE.
    """
    if callable(config.BACKBONE):
        return config.COMPUTE_BACKBONE_SHAPE(image_shape)
    _check_architecture(config.BACKBONE)
    return np.array(
        [[int(math.ceil(image_shape[0] / stride)),
          int(math.ceil(image_shape[1] / stride))]
         for stride in config.BACKBONE_STRIDES])
