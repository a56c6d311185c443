"""Region proposals: the box-delta graph functions and ProposalLayer (Matterport 2.1).

Box graph helpers live here because every later stage (detection targets, the
detection layer, the model's gt normalization) builds on them:
- apply_box_deltas_graph: boxes + deltas -> boxes (inverse: utils.box_refinement_graph).
- clip_boxes_graph: clip boxes to a window.
- norm_boxes_graph / denorm_boxes_graph: pixel <-> normalized coordinates. In pixels
  (y2, x2) lies outside the box, normalized it lies inside: shift (0, 0, 1, 1) and
  scale (h - 1, w - 1).
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import keras
import numpy as np
from keras import ops

from mrcnn.backend_ops import non_max_suppression_padded, top_k

try:  # the TensorFlow backend's graph; JAX and PyTorch run call_ops (keras.ops)
    import tensorflow as tf
except ImportError:  # a machine with JAX or PyTorch only
    tf = None

from mrcnn import utils
from mrcnn.boxes import decode_box_deltas
from mrcnn.layer_args import float_list, resolve_fields

logger = logging.getLogger(__name__)


############################################################
#  Box graph functions
############################################################

def apply_box_deltas_graph(boxes: tf.Tensor, deltas: tf.Tensor) -> tf.Tensor:
    """Applies refinement deltas to boxes.

    boxes: [N, (y1, x1, y2, x2)] boxes to update
    deltas: [N, (dy, dx, log(dh), log(dw))] refinements to apply
    Returns: [N, (y1, x1, y2, x2)]
    """
    return decode_box_deltas(boxes, deltas, tf.exp, tf.stack)  # [N, 4]


def clip_boxes_graph(boxes: tf.Tensor, window) -> tf.Tensor:
    """Clips boxes to a window.

    boxes: [N, (y1, x1, y2, x2)]
    window: [4] as (y1, x1, y2, x2)
    Returns: [N, (y1, x1, y2, x2)]
    """
    wy1, wx1, wy2, wx2 = tf.split(tf.cast(window, boxes.dtype), 4)
    y1, x1, y2, x2 = tf.split(boxes, 4, axis=1)  # each [N, 1]
    y1 = tf.maximum(tf.minimum(y1, wy2), wy1)
    x1 = tf.maximum(tf.minimum(x1, wx2), wx1)
    y2 = tf.maximum(tf.minimum(y2, wy2), wy1)
    x2 = tf.maximum(tf.minimum(x2, wx2), wx1)
    clipped = tf.concat([y1, x1, y2, x2], axis=1, name="clipped_boxes")  # [N, 4]
    clipped.set_shape((clipped.shape[0], 4))
    return clipped


def norm_boxes_graph(boxes: tf.Tensor, shape) -> tf.Tensor:
    """Pixel boxes -> normalized boxes.

    boxes: [..., (y1, x1, y2, x2)] in pixels ((y2, x2) outside the box)
    shape: [(height, width)] in pixels
    Returns: [..., (y1, x1, y2, x2)] normalized ((y2, x2) inside the box)
    """
    h, w = tf.split(tf.cast(shape, tf.float32), 2)
    scale = tf.concat([h, w, h, w], axis=-1) - tf.constant(1.0)  # [4]
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return tf.divide(tf.cast(boxes, tf.float32) - shift, scale)


def denorm_boxes_graph(boxes: tf.Tensor, shape) -> tf.Tensor:
    """Normalized boxes -> pixel boxes (int32), the inverse of norm_boxes_graph.

    boxes: [..., (y1, x1, y2, x2)] normalized
    shape: [(height, width)] in pixels
    Returns: [..., (y1, x1, y2, x2)] int32 pixels
    """
    h, w = tf.split(tf.cast(shape, tf.float32), 2)
    scale = tf.concat([h, w, h, w], axis=-1) - tf.constant(1.0)  # [4]
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return tf.cast(tf.round(tf.multiply(boxes, scale) + shift), tf.int32)


############################################################
#  Proposal Layer
############################################################

@keras.saving.register_keras_serializable(package="mrcnn")
class ProposalLayer(keras.layers.Layer):
    """Turns anchor scores and deltas into proposals for the second stage.

    Keeps the top min(PRE_NMS_LIMIT, num_anchors) anchors by foreground score,
    refines them with deltas * RPN_BBOX_STD_DEV, clips them to [0, 0, 1, 1], runs NMS
    and zero-pads to proposal_count.

    Params: proposal_count, nms_threshold, and config (IMAGES_PER_GPU,
    RPN_BBOX_STD_DEV, PRE_NMS_LIMIT) or those values as keywords.

    Inputs:
        rpn_probs: [batch, num_anchors, (bg prob, fg prob)]
        rpn_bbox: [batch, num_anchors, (dy, dx, log(dh), log(dw))]
        anchors: [batch, num_anchors, (y1, x1, y2, x2)] normalized
    Returns:
        [batch, proposal_count, (y1, x1, y2, x2)] normalized, zero padded
    """

    #: keyword -> the config field the model builder reads for it (mrcnn.layer_args)
    CONFIG_FIELDS = {"images_per_gpu": "IMAGES_PER_GPU",
                     "rpn_bbox_std_dev": "RPN_BBOX_STD_DEV", "pre_nms_limit": "PRE_NMS_LIMIT"}

    def __init__(self, proposal_count: int, nms_threshold: float, config=None,
                 images_per_gpu: Optional[int] = None,
                 rpn_bbox_std_dev: Optional[Sequence[float]] = None,
                 pre_nms_limit: Optional[int] = None, **kwargs):
        # Box arithmetic, NMS and crop_and_resize run in float32 even under a
        # mixed-precision policy (inputs are cast on entry).
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        v = resolve_fields(config, self.CONFIG_FIELDS, dict(
            images_per_gpu=images_per_gpu, rpn_bbox_std_dev=rpn_bbox_std_dev,
            pre_nms_limit=pre_nms_limit))
        self.images_per_gpu = int(v["images_per_gpu"])
        self.rpn_bbox_std_dev = float_list(v["rpn_bbox_std_dev"], "RPN_BBOX_STD_DEV", 4)
        self.pre_nms_limit = int(v["pre_nms_limit"])
        if self.proposal_count < 1:
            raise ValueError(f"proposal_count must be >= 1, got {proposal_count}")

    def call(self, inputs):
        if keras.backend.backend() != "tensorflow":
            return self.call_ops(inputs)
        scores, deltas, pre_nms_anchors = self._top_anchors(inputs)
        _, boxes = self._refine(pre_nms_anchors, deltas)
        # No small-box filter: it hurts small objects (Matterport, after Xinlei Chen).
        proposals = utils.batch_slice([boxes, scores], self._nms, self.images_per_gpu)
        return proposals  # [batch, proposal_count, 4]

    def call_ops(self, inputs):
        """call() in keras.ops with static shapes (the JAX and PyTorch backends)."""
        if len(inputs) != 3:
            raise ValueError(
                f"ProposalLayer expects [rpn_probs, rpn_bbox, anchors], got {len(inputs)} inputs")
        scores = ops.cast(inputs[0][:, :, 1], "float32")  # [batch, A]
        # A tensor, not a numpy array: torch would turn a tensor with grad into numpy.
        deltas = ops.cast(inputs[1], "float32") * ops.convert_to_tensor(np.reshape(
            np.array(self.rpn_bbox_std_dev, np.float32), [1, 1, 4]))  # [batch, A, 4]
        anchors = ops.cast(inputs[2], "float32")  # [batch, A, 4]
        limit = min(self.pre_nms_limit, int(anchors.shape[1]))
        scores, ix = top_k(scores, limit)  # [batch, L], best first, ties by index
        deltas = ops.take_along_axis(deltas, ix[..., None], axis=1)  # [batch, L, 4]
        anchors = ops.take_along_axis(anchors, ix[..., None], axis=1)  # [batch, L, 4]
        boxes = decode_box_deltas(ops.reshape(anchors, (-1, 4)), ops.reshape(deltas, (-1, 4)),
                                  ops.exp, ops.stack)
        boxes = ops.clip(ops.reshape(boxes, (-1, limit, 4)), 0.0, 1.0)  # the unit window
        proposals = []
        for b in range(self.images_per_gpu):
            kept, _ = non_max_suppression_padded(boxes[b], scores[b], self.proposal_count,
                                                 self.nms_threshold)
            chosen = ops.take(boxes[b], ops.maximum(kept, 0), axis=0)
            proposals.append(ops.where((kept >= 0)[:, None], chosen, 0.0))
        return ops.stack(proposals)  # [batch, proposal_count, 4]

    def _top_anchors(self, inputs) -> tuple:
        """(scores [batch, L], deltas [batch, L, 4], anchors [batch, L, 4]) of the
        L = min(PRE_NMS_LIMIT, num_anchors) best anchors by foreground score."""
        if len(inputs) != 3:
            raise ValueError(
                f"ProposalLayer expects [rpn_probs, rpn_bbox, anchors], got {len(inputs)} inputs")
        scores = inputs[0][:, :, 1]  # [batch, num_anchors] foreground probability
        deltas = inputs[1] * np.reshape(
            np.array(self.rpn_bbox_std_dev, np.float32), [1, 1, 4])  # [batch, num_anchors, 4]
        anchors = inputs[2]  # [batch, num_anchors, 4]

        # Trim to the best anchors first: everything after is cheaper on fewer boxes.
        pre_nms_limit = tf.minimum(self.pre_nms_limit, tf.shape(anchors)[1])
        ix = tf.nn.top_k(scores, pre_nms_limit, sorted=True,
                         name="top_anchors").indices  # [batch, pre_nms_limit]
        scores = utils.batch_slice([scores, ix], lambda x, y: tf.gather(x, y),
                                   self.images_per_gpu)  # [batch, pre_nms_limit]
        deltas = utils.batch_slice([deltas, ix], lambda x, y: tf.gather(x, y),
                                   self.images_per_gpu)  # [batch, pre_nms_limit, 4]
        pre_nms_anchors = utils.batch_slice([anchors, ix], lambda a, x: tf.gather(a, x),
                                            self.images_per_gpu,
                                            names=["pre_nms_anchors"])  # [batch, pre_nms_limit, 4]
        return scores, deltas, pre_nms_anchors

    def _refine(self, pre_nms_anchors, deltas) -> tuple:
        """(refined, clipped) anchors, each [batch, pre_nms_limit, 4]."""
        boxes = utils.batch_slice([pre_nms_anchors, deltas],
                                  lambda x, y: apply_box_deltas_graph(x, y),
                                  self.images_per_gpu,
                                  names=["refined_anchors"])  # [batch, pre_nms_limit, 4]
        # Normalized coordinates: the image is the unit square.
        window = np.array([0, 0, 1, 1], dtype=np.float32)
        clipped = utils.batch_slice(boxes, lambda x: clip_boxes_graph(x, window),
                                    self.images_per_gpu,
                                    names=["refined_anchors_clipped"])  # [batch, pre_nms_limit, 4]
        return boxes, clipped

    def stages(self, inputs: Sequence[np.ndarray]) -> dict:
        """The intermediate values of call() on concrete inputs, by the names that
        Matterport's inspect_model reads through model.ancestor():

        pre_nms_anchors, refined_anchors, refined_anchors_clipped: [batch, L, 4];
        post_nms_anchor_ix: indices into refined_anchors_clipped kept by NMS, [N] for
        one image (as Matterport's graph node), else [batch, proposal_count] padded with
        -1; proposals: the layer's output [batch, proposal_count, 4].
        Runs eagerly, one image at a time (any batch size).
        """
        inputs = [tf.convert_to_tensor(np.asarray(x, np.float32)) for x in inputs]
        values: dict = {k: [] for k in ("pre_nms_anchors", "refined_anchors",
                                        "refined_anchors_clipped", "post_nms_anchor_ix",
                                        "proposals")}
        per_image = ProposalLayer.from_config({**self.get_config(), "images_per_gpu": 1})
        for b in range(int(inputs[0].shape[0])):
            one = [x[b:b + 1] for x in inputs]
            scores, deltas, pre_nms_anchors = per_image._top_anchors(one)
            refined, clipped = per_image._refine(pre_nms_anchors, deltas)
            indices = tf.image.non_max_suppression(clipped[0], scores[0],
                                                   self.proposal_count, self.nms_threshold)
            values["pre_nms_anchors"].append(pre_nms_anchors.numpy()[0])
            values["refined_anchors"].append(refined.numpy()[0])
            values["refined_anchors_clipped"].append(clipped.numpy()[0])
            values["post_nms_anchor_ix"].append(indices.numpy())
            values["proposals"].append(per_image._nms(clipped[0], scores[0]).numpy())
        result = {k: np.stack(v) for k, v in values.items() if k != "post_nms_anchor_ix"}
        kept = values["post_nms_anchor_ix"]
        if len(kept) == 1:
            result["post_nms_anchor_ix"] = kept[0]
        else:
            padded = np.full((len(kept), self.proposal_count), -1, dtype=np.int32)
            for b, ix in enumerate(kept):
                padded[b, :len(ix)] = ix
            result["post_nms_anchor_ix"] = padded
        return result

    def _nms(self, boxes: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
        """NMS on one image, zero padded. boxes [N, 4], scores [N] -> [proposal_count, 4]."""
        indices = tf.image.non_max_suppression(
            boxes, scores, self.proposal_count, self.nms_threshold,
            name="rpn_non_max_suppression")
        proposals = tf.gather(boxes, indices)  # [<= proposal_count, 4]
        padding = tf.maximum(self.proposal_count - tf.shape(proposals)[0], 0)
        proposals = tf.pad(proposals, [(0, padding), (0, 0)])
        proposals.set_shape([self.proposal_count, 4])
        return proposals

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(proposal_count=self.proposal_count,
                      nms_threshold=self.nms_threshold,
                      images_per_gpu=self.images_per_gpu,
                      rpn_bbox_std_dev=list(self.rpn_bbox_std_dev),
                      pre_nms_limit=self.pre_nms_limit)
        return config
