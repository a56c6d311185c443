"""DetectionLayer: final boxes from classified, refined proposals (Matterport 2.1)."""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import keras
import numpy as np
from keras import ops

from mrcnn import utils
from mrcnn.backend_ops import non_max_suppression_ops, top_k
from mrcnn.boxes import decode_box_deltas, norm_boxes_ops
from mrcnn.molding import parse_image_meta_graph
from mrcnn.layer_args import float_list, resolve_fields
from mrcnn.proposals import apply_box_deltas_graph, clip_boxes_graph, norm_boxes_graph

try:  # the TensorFlow backend's graph; JAX and PyTorch run refine_detections_ops
    import tensorflow as tf
except ImportError:  # a machine with JAX or PyTorch only
    tf = None

logger = logging.getLogger(__name__)


def refine_detections_graph(rois: tf.Tensor, probs: tf.Tensor, deltas: tf.Tensor,
                            window: tf.Tensor, config: Any) -> tf.Tensor:
    """Matterport's signature: refine_detections with BBOX_STD_DEV,
    DETECTION_MIN_CONFIDENCE, DETECTION_MAX_INSTANCES and DETECTION_NMS_THRESHOLD
    read from config."""
    return refine_detections(rois, probs, deltas, window,
                             bbox_std_dev=config.BBOX_STD_DEV,
                             min_confidence=config.DETECTION_MIN_CONFIDENCE,
                             max_instances=config.DETECTION_MAX_INSTANCES,
                             nms_threshold=config.DETECTION_NMS_THRESHOLD)


def refine_detections(rois: tf.Tensor, probs: tf.Tensor, deltas: tf.Tensor,
                      window: tf.Tensor, *, bbox_std_dev: Sequence[float],
                      min_confidence: float, max_instances: int,
                      nms_threshold: float) -> tf.Tensor:
    """Refines, filters and suppresses the classified proposals of one image.

    rois: [N, (y1, x1, y2, x2)] normalized
    probs: [N, num_classes] class probabilities
    deltas: [N, num_classes, (dy, dx, log(dh), log(dw))] class-specific, divided by
        bbox_std_dev
    window: [4] (y1, x1, y2, x2) normalized: the image area without padding
    min_confidence: scores below are dropped (0: keep all); nms_threshold: per-class IoU
    Returns: [max_instances, (y1, x1, y2, x2, class_id, score)] normalized,
        sorted by score, zero padded
    """
    class_ids = tf.argmax(probs, axis=1, output_type=tf.int32)  # [N] best class
    indices = tf.stack([tf.range(tf.shape(probs)[0]), class_ids], axis=1)  # [N, 2]
    class_scores = tf.gather_nd(probs, indices)  # [N]
    deltas_specific = tf.gather_nd(deltas, indices)  # [N, 4]
    refined_rois = apply_box_deltas_graph(
        rois, deltas_specific * np.asarray(bbox_std_dev, np.float32))  # [N, 4]
    refined_rois = clip_boxes_graph(refined_rois, window)

    # Drop background, then low confidence.
    keep = tf.where(class_ids > 0)[:, 0]  # [K] int64
    if min_confidence:
        conf_keep = tf.where(class_scores >= min_confidence)[:, 0]
        keep = tf.sets.intersection(tf.expand_dims(keep, 0), tf.expand_dims(conf_keep, 0))
        keep = tf.sparse.to_dense(keep)[0]

    # Per-class NMS.
    pre_nms_class_ids = tf.gather(class_ids, keep)
    pre_nms_scores = tf.gather(class_scores, keep)
    pre_nms_rois = tf.gather(refined_rois, keep)
    unique_pre_nms_class_ids = tf.unique(pre_nms_class_ids)[0]

    def nms_keep_map(class_id):
        """Indices (into rois) kept by NMS for one class, padded with -1."""
        ixs = tf.where(tf.equal(pre_nms_class_ids, class_id))[:, 0]
        class_keep = tf.image.non_max_suppression(
            tf.gather(pre_nms_rois, ixs), tf.gather(pre_nms_scores, ixs),
            max_output_size=max_instances,
            iou_threshold=nms_threshold)
        class_keep = tf.gather(keep, tf.gather(ixs, class_keep))
        # Same length for every class so map_fn can stack them.
        gap = max_instances - tf.shape(class_keep)[0]
        class_keep = tf.pad(class_keep, [(0, gap)], mode="CONSTANT", constant_values=-1)
        class_keep.set_shape([max_instances])
        return class_keep

    nms_keep = tf.map_fn(nms_keep_map, unique_pre_nms_class_ids,
                         fn_output_signature=tf.int64)  # [classes, max_instances]
    nms_keep = tf.reshape(nms_keep, [-1])
    nms_keep = tf.gather(nms_keep, tf.where(nms_keep > -1)[:, 0])
    keep = tf.sets.intersection(tf.expand_dims(keep, 0), tf.expand_dims(nms_keep, 0))
    keep = tf.sparse.to_dense(keep)[0]

    # Best max_instances over all classes.
    class_scores_keep = tf.gather(class_scores, keep)
    num_keep = tf.minimum(tf.shape(class_scores_keep)[0], max_instances)
    top_ids = tf.nn.top_k(class_scores_keep, k=num_keep, sorted=True)[1]
    keep = tf.gather(keep, top_ids)

    detections = tf.concat([
        tf.gather(refined_rois, keep),
        tf.cast(tf.gather(class_ids, keep), tf.float32)[..., tf.newaxis],
        tf.gather(class_scores, keep)[..., tf.newaxis],
    ], axis=1)  # [num_keep, 6]

    gap = max_instances - tf.shape(detections)[0]
    detections = tf.pad(detections, [(0, gap), (0, 0)], "CONSTANT")
    detections.set_shape([max_instances, 6])
    return detections  # [max_instances, 6]


def refine_detections_ops(rois, probs, deltas, window, *, bbox_std_dev: Sequence[float],
                          min_confidence: float, max_instances: int,
                          nms_threshold: float):
    """refine_detections in keras.ops with static shapes (JAX and PyTorch): the same
    detections, in the same order.

    rois [N, 4], probs [N, C], deltas [N, C, 4], window [4] (normalized).
    Returns [max_instances, (y1, x1, y2, x2, class_id, score)], zero padded.
    """
    class_ids = ops.cast(ops.argmax(probs, axis=1), "int32")  # [N]
    class_scores = ops.take_along_axis(probs, class_ids[:, None], axis=1)[:, 0]  # [N]
    specific = ops.take_along_axis(deltas, class_ids[:, None, None], axis=1)[:, 0]  # [N, 4]
    refined = decode_box_deltas(ops.cast(rois, "float32"),
                                # A tensor: a torch tensor times a numpy array is
                                # deprecated in NumPy 2 (and refused with grad).
                                specific * ops.convert_to_tensor(
                                    np.asarray(bbox_std_dev, np.float32)),
                                ops.exp, ops.stack)  # [N, 4]
    low = ops.stack([window[0], window[1], window[0], window[1]])
    high = ops.stack([window[2], window[3], window[2], window[3]])
    refined = ops.maximum(ops.minimum(refined, high), low)  # clipped to the window
    keep = class_ids > 0
    if min_confidence:
        keep = ops.logical_and(keep, class_scores >= min_confidence)
    kept = ops.zeros_like(keep)
    for class_id in range(1, int(probs.shape[1])):  # NMS per class, max_instances each
        members = ops.logical_and(keep, class_ids == class_id)
        chosen, _ = non_max_suppression_ops(refined, class_scores, max_instances,
                                            nms_threshold, valid=members)
        hits = ops.any(ops.arange(refined.shape[0])[:, None] == chosen[None], axis=1)
        kept = ops.logical_or(kept, hits)
    ranked = ops.where(kept, class_scores, -1.0)  # scores are >= 0
    top, ix = top_k(ranked, min(max_instances, int(refined.shape[0])))
    detections = ops.concatenate([ops.take(refined, ix, axis=0),
                                  ops.cast(ops.take(class_ids, ix), "float32")[:, None],
                                  ops.take(class_scores, ix)[:, None]], axis=1)
    detections = ops.where((top >= 0)[:, None], detections, 0.0)
    gap = max_instances - int(detections.shape[0])
    if gap:
        detections = ops.concatenate([detections, ops.zeros((gap, 6))], axis=0)
    return detections  # [max_instances, 6]


@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionLayer(keras.layers.Layer):
    """Classified proposals and their deltas -> final detections.

    Params: the CONFIG_FIELDS values as lower-case keywords (the model builder passes
    them), or Matterport's config (IMAGES_PER_GPU, BBOX_STD_DEV, DETECTION_MIN_CONFIDENCE,
    DETECTION_MAX_INSTANCES, DETECTION_NMS_THRESHOLD) for those left None.

    Inputs (one list):
        rois: [batch, N, (y1, x1, y2, x2)] normalized
        mrcnn_class: [batch, N, num_classes] probabilities
        mrcnn_bbox: [batch, N, num_classes, (dy, dx, log(dh), log(dw))]
        image_meta: [batch, META]; window and image_shape come from it
    Returns:
        [batch, DETECTION_MAX_INSTANCES, (y1, x1, y2, x2, class_id, score)] normalized
    """

    #: keyword -> the config field the model builder reads for it (mrcnn.layer_args)
    CONFIG_FIELDS = {"images_per_gpu": "IMAGES_PER_GPU", "bbox_std_dev": "BBOX_STD_DEV",
                     "detection_min_confidence": "DETECTION_MIN_CONFIDENCE",
                     "detection_max_instances": "DETECTION_MAX_INSTANCES",
                     "detection_nms_threshold": "DETECTION_NMS_THRESHOLD"}

    def __init__(self, config=None, images_per_gpu: Optional[int] = None,
                 bbox_std_dev: Optional[Sequence[float]] = None,
                 detection_min_confidence: Optional[float] = None,
                 detection_max_instances: Optional[int] = None,
                 detection_nms_threshold: Optional[float] = None, **kwargs):
        # Box arithmetic, NMS and crop_and_resize run in float32 even under a
        # mixed-precision policy (inputs are cast on entry).
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        v = resolve_fields(config, self.CONFIG_FIELDS, dict(
            images_per_gpu=images_per_gpu, bbox_std_dev=bbox_std_dev,
            detection_min_confidence=detection_min_confidence,
            detection_max_instances=detection_max_instances,
            detection_nms_threshold=detection_nms_threshold))
        self.images_per_gpu = int(v["images_per_gpu"])
        self.bbox_std_dev = float_list(v["bbox_std_dev"], "BBOX_STD_DEV", 4)
        self.detection_min_confidence = float(v["detection_min_confidence"])
        self.detection_max_instances = int(v["detection_max_instances"])
        self.detection_nms_threshold = float(v["detection_nms_threshold"])
        if self.detection_max_instances < 1:
            raise ValueError("DETECTION_MAX_INSTANCES must be >= 1, got "
                             f"{self.detection_max_instances}")

    def call(self, inputs):
        if len(inputs) != 4:
            raise ValueError("DetectionLayer expects [rois, mrcnn_class, mrcnn_bbox, "
                             f"image_meta], got {len(inputs)} inputs")
        rois, mrcnn_class, mrcnn_bbox, image_meta = inputs
        if keras.backend.backend() != "tensorflow":
            return self.call_ops(inputs)

        # Images of a batch share one molded size: the first one's normalizes all windows.
        m = parse_image_meta_graph(image_meta)
        image_shape = m["image_shape"][0]  # [3]
        window = norm_boxes_graph(m["window"], image_shape[:2])  # [batch, 4]

        detections_batch = utils.batch_slice(
            [rois, mrcnn_class, mrcnn_bbox, window],
            lambda x, y, w, z: refine_detections(
                x, y, w, z, bbox_std_dev=self.bbox_std_dev,
                min_confidence=self.detection_min_confidence,
                max_instances=self.detection_max_instances,
                nms_threshold=self.detection_nms_threshold),
            self.images_per_gpu)
        # Matterport reshapes to BATCH_SIZE; per replica the batch is IMAGES_PER_GPU.
        return tf.reshape(detections_batch,
                          [self.images_per_gpu, self.detection_max_instances, 6])

    def call_ops(self, inputs):
        """call() in keras.ops (the JAX and PyTorch backends)."""
        rois, mrcnn_class, mrcnn_bbox, image_meta = (ops.cast(x, "float32") for x in inputs)
        m = parse_image_meta_graph(image_meta)
        window = norm_boxes_ops(m["window"], m["image_shape"][0][:2])  # [batch, 4]
        return ops.stack([refine_detections_ops(
            rois[b], mrcnn_class[b], mrcnn_bbox[b], window[b],
            bbox_std_dev=self.bbox_std_dev, min_confidence=self.detection_min_confidence,
            max_instances=self.detection_max_instances,
            nms_threshold=self.detection_nms_threshold) for b in range(self.images_per_gpu)])

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.detection_max_instances, 6)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(images_per_gpu=self.images_per_gpu,
                      bbox_std_dev=list(self.bbox_std_dev),
                      detection_min_confidence=self.detection_min_confidence,
                      detection_max_instances=self.detection_max_instances,
                      detection_nms_threshold=self.detection_nms_threshold)
        return config
