"""Region Proposal Network: a small conv head shared by every pyramid level."""
import logging

import keras

logger = logging.getLogger(__name__)


def rpn_graph(feature_map, anchors_per_location: int, anchor_stride: int) -> list:
    """Builds the RPN head on one feature map.

    feature_map: [batch, height, width, depth]
    anchors_per_location: anchors per feature-map position (len(RPN_ANCHOR_RATIOS))
    anchor_stride: 1 for anchors at every position, 2 for every other one
    Returns:
        rpn_class_logits: [batch, H * W * anchors_per_location, 2] (before softmax)
        rpn_probs: [batch, H * W * anchors_per_location, 2] (bg, fg) probabilities
        rpn_bbox: [batch, H * W * anchors_per_location, (dy, dx, log(dh), log(dw))]
    """
    shared = keras.layers.Conv2D(512, (3, 3), padding="same", activation="relu",
                                 strides=anchor_stride,
                                 name="rpn_conv_shared")(feature_map)

    # Anchor scores: [batch, height, width, anchors_per_location * 2]
    x = keras.layers.Conv2D(2 * anchors_per_location, (1, 1), padding="valid",
                            activation="linear", name="rpn_class_raw")(shared)
    # Row-major reshape keeps the anchor order of generate_pyramid_anchors.
    rpn_class_logits = keras.layers.Reshape((-1, 2), name="rpn_class_logits_reshape")(x)
    rpn_probs = keras.layers.Activation("softmax", name="rpn_class_xxx")(rpn_class_logits)

    # Box refinements: [batch, height, width, anchors_per_location * 4]
    x = keras.layers.Conv2D(anchors_per_location * 4, (1, 1), padding="valid",
                            activation="linear", name="rpn_bbox_pred")(shared)
    rpn_bbox = keras.layers.Reshape((-1, 4), name="rpn_bbox_reshape")(x)

    return [rpn_class_logits, rpn_probs, rpn_bbox]


def build_rpn_model(anchor_stride: int, anchors_per_location: int, depth: int) -> keras.Model:
    """The RPN as a model named "rpn_model", so one set of weights serves every level.

    depth: channels of the feature maps it is applied to.
    Outputs as rpn_graph: [rpn_class_logits, rpn_probs, rpn_bbox].
    """
    input_feature_map = keras.Input(shape=(None, None, depth),
                                    name="input_rpn_feature_map")
    outputs = rpn_graph(input_feature_map, anchors_per_location, anchor_stride)
    return keras.Model(input_feature_map, outputs, name="rpn_model")
