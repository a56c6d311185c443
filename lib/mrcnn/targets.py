"""Training targets (Matterport 2.1).

Graph side: DetectionTargetLayer samples proposals into positive and negative ROIs
and gives each its class, box deltas and mask target (under JAX and PyTorch with
static shapes: mrcnn.targets_ops).
Numpy side: build_rpn_targets (anchor labels and deltas, used by the data generator),
build_detection_targets and generate_random_rois (to train the heads without an RPN).
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence, Tuple

import keras
import numpy as np
try:  # JAX and PyTorch machines may have no TensorFlow: its paths then never run
    import tensorflow as tf
except ImportError:
    tf = None

from mrcnn import utils
from mrcnn.layer_args import float_list, resolve_fields
from mrcnn.sample_random import numpy_random
from mrcnn.targets_ops import sample_detection_targets_ops

logger = logging.getLogger(__name__)


############################################################
#  Graph functions
############################################################

def overlaps_graph(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
    """IoU of every box of boxes1 with every box of boxes2.

    boxes1: [N1, (y1, x1, y2, x2)], boxes2: [N2, (y1, x1, y2, x2)]
    Returns: [N1, N2]
    """
    # Pair every boxes1 row with every boxes2 row without a loop (np.repeat / np.tile).
    b1 = tf.reshape(tf.tile(tf.expand_dims(boxes1, 1),
                            [1, 1, tf.shape(boxes2)[0]]), [-1, 4])  # [N1 * N2, 4]
    b2 = tf.tile(boxes2, [tf.shape(boxes1)[0], 1])  # [N1 * N2, 4]
    b1_y1, b1_x1, b1_y2, b1_x2 = tf.split(b1, 4, axis=1)
    b2_y1, b2_x1, b2_y2, b2_x2 = tf.split(b2, 4, axis=1)
    y1 = tf.maximum(b1_y1, b2_y1)
    x1 = tf.maximum(b1_x1, b2_x1)
    y2 = tf.minimum(b1_y2, b2_y2)
    x2 = tf.minimum(b1_x2, b2_x2)
    intersection = tf.maximum(x2 - x1, 0) * tf.maximum(y2 - y1, 0)
    b1_area = (b1_y2 - b1_y1) * (b1_x2 - b1_x1)
    b2_area = (b2_y2 - b2_y1) * (b2_x2 - b2_x1)
    union = b1_area + b2_area - intersection
    iou = intersection / union  # [N1 * N2, 1]
    return tf.reshape(iou, [tf.shape(boxes1)[0], tf.shape(boxes2)[0]])  # [N1, N2]


def trim_zeros_graph(boxes: tf.Tensor, name: str = "trim_zeros") -> Tuple[tf.Tensor, tf.Tensor]:
    """Drops all-zero padding rows.

    boxes: [N, 4]
    Returns: boxes [M, 4], non_zeros [N] bool (the rows kept)
    """
    non_zeros = tf.cast(tf.reduce_sum(tf.abs(boxes), axis=1), tf.bool)  # [N]
    boxes = tf.boolean_mask(boxes, non_zeros, name=name)
    return boxes, non_zeros


def detection_targets_graph(proposals: tf.Tensor, gt_class_ids: tf.Tensor,
                            gt_boxes: tf.Tensor, gt_masks: tf.Tensor, config: Any):
    """Matterport's signature: sample_detection_targets with TRAIN_ROIS_PER_IMAGE,
    ROI_POSITIVE_RATIO, BBOX_STD_DEV, MASK_SHAPE and USE_MINI_MASK read from config."""
    return sample_detection_targets(
        proposals, gt_class_ids, gt_boxes, gt_masks,
        train_rois_per_image=config.TRAIN_ROIS_PER_IMAGE,
        roi_positive_ratio=config.ROI_POSITIVE_RATIO, bbox_std_dev=config.BBOX_STD_DEV,
        mask_shape=config.MASK_SHAPE, use_mini_mask=config.USE_MINI_MASK)


def sample_detection_targets(proposals: tf.Tensor, gt_class_ids: tf.Tensor,
                             gt_boxes: tf.Tensor, gt_masks: tf.Tensor, *,
                             train_rois_per_image: int, roi_positive_ratio: float,
                             bbox_std_dev: Sequence[float], mask_shape: Sequence[int],
                             use_mini_mask: bool):
    """Samples ROIs of one image and builds their targets.

    proposals: [POST_NMS_ROIS_TRAINING, (y1, x1, y2, x2)] normalized, maybe zero padded
    gt_class_ids: [MAX_GT_INSTANCES] int; negative ids are crowds
    gt_boxes: [MAX_GT_INSTANCES, (y1, x1, y2, x2)] normalized
    gt_masks: [height, width, MAX_GT_INSTANCES] bool or 0/1 uint8 (image size, or mini
        masks spanning their gt boxes when use_mini_mask)

    Returns, each zero padded to train_rois_per_image rows, positives first:
        rois: [train_rois_per_image, (y1, x1, y2, x2)] normalized
        class_ids: [train_rois_per_image] int (0 for negatives and padding)
        deltas: [train_rois_per_image, (dy, dx, log(dh), log(dw))] / bbox_std_dev
        masks: [train_rois_per_image, mask_shape[0], mask_shape[1]] 0/1 float
    """
    mask_shape = [int(v) for v in mask_shape]
    asserts = [tf.Assert(tf.greater(tf.shape(proposals)[0], 0), [proposals],
                         name="roi_assertion")]
    with tf.control_dependencies(asserts):
        proposals = tf.identity(proposals)

    # Remove zero padding
    proposals, _ = trim_zeros_graph(proposals, name="trim_proposals")  # [P, 4]
    gt_boxes, non_zeros = trim_zeros_graph(gt_boxes, name="trim_gt_boxes")  # [G, 4]
    gt_class_ids = tf.boolean_mask(gt_class_ids, non_zeros, name="trim_gt_class_ids")
    gt_masks = tf.gather(gt_masks, tf.where(non_zeros)[:, 0], axis=2,
                         name="trim_gt_masks")  # [h, w, G]

    # COCO crowd boxes (negative ids) surround several instances: never positives,
    # and ROIs touching them are not used as negatives either.
    crowd_ix = tf.where(gt_class_ids < 0)[:, 0]
    non_crowd_ix = tf.where(gt_class_ids > 0)[:, 0]
    crowd_boxes = tf.gather(gt_boxes, crowd_ix)
    gt_class_ids = tf.gather(gt_class_ids, non_crowd_ix)
    gt_boxes = tf.gather(gt_boxes, non_crowd_ix)
    gt_masks = tf.gather(gt_masks, non_crowd_ix, axis=2)

    overlaps = overlaps_graph(proposals, gt_boxes)  # [P, G]
    crowd_overlaps = overlaps_graph(proposals, crowd_boxes)  # [P, crowds]
    crowd_iou_max = tf.reduce_max(crowd_overlaps, axis=1)
    no_crowd_bool = (crowd_iou_max < 0.001)  # [P]

    roi_iou_max = tf.reduce_max(overlaps, axis=1)  # [P]
    positive_indices = tf.where(roi_iou_max >= 0.5)[:, 0]
    negative_indices = tf.where(tf.logical_and(roi_iou_max < 0.5, no_crowd_bool))[:, 0]

    # Subsample: at most roi_positive_ratio positives, negatives to keep the ratio.
    positive_count = int(train_rois_per_image * roi_positive_ratio)
    positive_indices = tf.random.shuffle(positive_indices)[:positive_count]
    positive_count = tf.shape(positive_indices)[0]
    r = 1.0 / roi_positive_ratio
    negative_count = tf.cast(r * tf.cast(positive_count, tf.float32), tf.int32) - positive_count
    negative_indices = tf.random.shuffle(negative_indices)[:negative_count]
    positive_rois = tf.gather(proposals, positive_indices)  # [pos, 4]
    negative_rois = tf.gather(proposals, negative_indices)  # [neg, 4]

    # Each positive ROI takes the gt box it overlaps most.
    positive_overlaps = tf.gather(overlaps, positive_indices)  # [pos, G]
    roi_gt_box_assignment = tf.cond(
        tf.greater(tf.shape(positive_overlaps)[1], 0),
        true_fn=lambda: tf.argmax(positive_overlaps, axis=1),
        false_fn=lambda: tf.cast(tf.constant([]), tf.int64))  # [pos]
    roi_gt_boxes = tf.gather(gt_boxes, roi_gt_box_assignment)  # [pos, 4]
    roi_gt_class_ids = tf.gather(gt_class_ids, roi_gt_box_assignment)  # [pos]

    deltas = utils.box_refinement_graph(positive_rois, roi_gt_boxes)  # [pos, 4]
    deltas /= np.asarray(bbox_std_dev, np.float32)

    masks = _mask_targets_graph(positive_rois, roi_gt_boxes, roi_gt_box_assignment,
                                gt_masks, mask_shape, use_mini_mask)  # [pos, mh, mw]

    # Negatives follow the positives; their deltas and masks stay zero.
    rois = tf.concat([positive_rois, negative_rois], axis=0)
    num_rois = train_rois_per_image
    N = tf.shape(negative_rois)[0]
    P = tf.maximum(num_rois - tf.shape(rois)[0], 0)
    rois = tf.pad(rois, [(0, P), (0, 0)])
    roi_gt_class_ids = tf.pad(roi_gt_class_ids, [(0, N + P)])
    deltas = tf.pad(deltas, [(0, N + P), (0, 0)])
    masks = tf.pad(masks, [[0, N + P], (0, 0), (0, 0)])

    rois.set_shape([num_rois, 4])
    roi_gt_class_ids.set_shape([num_rois])
    deltas.set_shape([num_rois, 4])
    masks.set_shape([num_rois] + mask_shape)
    return rois, roi_gt_class_ids, deltas, masks


def _mask_targets_graph(positive_rois, roi_gt_boxes, roi_gt_box_assignment, gt_masks,
                        mask_shape: list, use_mini_mask: bool):
    """Crops each positive ROI's gt mask to the ROI and resizes it to mask_shape.

    positive_rois, roi_gt_boxes: [pos, 4] normalized; roi_gt_box_assignment: [pos]
    gt_masks: [h, w, G] bool or 0/1. Returns [pos, mask_shape[0], mask_shape[1]] of 0/1.
    """
    transposed_masks = tf.expand_dims(tf.transpose(gt_masks, [2, 0, 1]), -1)  # [G, h, w, 1]
    roi_masks = tf.gather(transposed_masks, roi_gt_box_assignment)  # [pos, h, w, 1]

    boxes = positive_rois
    if use_mini_mask:
        # A mini mask spans its gt box: express the ROI in that box's unit square.
        y1, x1, y2, x2 = tf.split(positive_rois, 4, axis=1)
        gt_y1, gt_x1, gt_y2, gt_x2 = tf.split(roi_gt_boxes, 4, axis=1)
        gt_h = gt_y2 - gt_y1
        gt_w = gt_x2 - gt_x1
        y1 = (y1 - gt_y1) / gt_h
        x1 = (x1 - gt_x1) / gt_w
        y2 = (y2 - gt_y1) / gt_h
        x2 = (x2 - gt_x1) / gt_w
        boxes = tf.concat([y1, x1, y2, x2], 1)
    box_ids = tf.range(0, tf.shape(roi_masks)[0])
    masks = tf.image.crop_and_resize(tf.cast(roi_masks, tf.float32), boxes, box_ids,
                                     mask_shape)  # [pos, mh, mw, 1]
    masks = tf.squeeze(masks, axis=3)
    # Binary targets for the binary cross-entropy loss.
    return tf.round(masks)


############################################################
#  Detection Target Layer
############################################################

@keras.saving.register_keras_serializable(package="mrcnn")
class DetectionTargetLayer(keras.layers.Layer):
    """Subsamples proposals and builds class, box and mask targets for each.

    Params: the CONFIG_FIELDS values as lower-case keywords (the model builder passes
    them), or Matterport's config (IMAGES_PER_GPU, TRAIN_ROIS_PER_IMAGE,
    ROI_POSITIVE_RATIO, BBOX_STD_DEV, MASK_SHAPE, USE_MINI_MASK) for those left None.

    Inputs (one list):
        proposals: [batch, N, (y1, x1, y2, x2)] normalized, maybe zero padded
        gt_class_ids: [batch, MAX_GT_INSTANCES] int
        gt_boxes: [batch, MAX_GT_INSTANCES, (y1, x1, y2, x2)] normalized
        gt_masks: [batch, height, width, MAX_GT_INSTANCES] bool or 0/1 uint8
    Returns, zero padded:
        rois: [batch, TRAIN_ROIS_PER_IMAGE, (y1, x1, y2, x2)] normalized
        target_class_ids: [batch, TRAIN_ROIS_PER_IMAGE] int (gt_class_ids' dtype)
        target_deltas: [batch, TRAIN_ROIS_PER_IMAGE, (dy, dx, log(dh), log(dw))]
        target_mask: [batch, TRAIN_ROIS_PER_IMAGE, MASK_SHAPE[0], MASK_SHAPE[1]]
    """

    #: keyword -> the config field the model builder reads for it (mrcnn.layer_args)
    CONFIG_FIELDS = {"images_per_gpu": "IMAGES_PER_GPU",
                     "train_rois_per_image": "TRAIN_ROIS_PER_IMAGE",
                     "roi_positive_ratio": "ROI_POSITIVE_RATIO", "bbox_std_dev": "BBOX_STD_DEV",
                     "mask_shape": "MASK_SHAPE", "use_mini_mask": "USE_MINI_MASK"}

    def __init__(self, config=None, images_per_gpu: Optional[int] = None,
                 train_rois_per_image: Optional[int] = None,
                 roi_positive_ratio: Optional[float] = None,
                 bbox_std_dev: Optional[Sequence[float]] = None,
                 mask_shape: Optional[Sequence[int]] = None,
                 use_mini_mask: Optional[bool] = None, **kwargs):
        # Box arithmetic, NMS and crop_and_resize run in float32 even under a
        # mixed-precision policy (inputs are cast on entry).
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        v = resolve_fields(config, self.CONFIG_FIELDS, dict(
            images_per_gpu=images_per_gpu, train_rois_per_image=train_rois_per_image,
            roi_positive_ratio=roi_positive_ratio, bbox_std_dev=bbox_std_dev,
            mask_shape=mask_shape, use_mini_mask=use_mini_mask))
        self.images_per_gpu = int(v["images_per_gpu"])
        self.train_rois_per_image = int(v["train_rois_per_image"])
        self.roi_positive_ratio = float(v["roi_positive_ratio"])
        self.bbox_std_dev = float_list(v["bbox_std_dev"], "BBOX_STD_DEV", 4)
        self.mask_shape = [int(s) for s in v["mask_shape"]]
        self.use_mini_mask = bool(v["use_mini_mask"])
        if not 0.0 < self.roi_positive_ratio <= 1.0:
            raise ValueError(
                f"ROI_POSITIVE_RATIO must be in (0, 1], got {self.roi_positive_ratio}")
        if len(self.mask_shape) != 2:
            raise ValueError(f"MASK_SHAPE must be (height, width), got {self.mask_shape}")
        # JAX and PyTorch sample with keras.random (mrcnn.targets_ops): a seed state.
        self.seed_generator = (None if keras.backend.backend() == "tensorflow"
                               else keras.random.SeedGenerator(name="sampling_seed"))

    def call(self, inputs):
        if len(inputs) != 4:
            raise ValueError("DetectionTargetLayer expects [proposals, gt_class_ids, "
                             f"gt_boxes, gt_masks], got {len(inputs)} inputs")
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs
        if self.seed_generator is not None:
            return list(sample_detection_targets_ops(
                proposals, gt_class_ids, gt_boxes, gt_masks,
                train_rois_per_image=self.train_rois_per_image,
                roi_positive_ratio=self.roi_positive_ratio, bbox_std_dev=self.bbox_std_dev,
                mask_shape=self.mask_shape, use_mini_mask=self.use_mini_mask,
                seed=self.seed_generator))
        names = ["rois", "target_class_ids", "target_bbox", "target_mask"]
        outputs = utils.batch_slice(
            [proposals, gt_class_ids, gt_boxes, gt_masks],
            lambda w, x, y, z: sample_detection_targets(
                w, x, y, z, train_rois_per_image=self.train_rois_per_image,
                roi_positive_ratio=self.roi_positive_ratio, bbox_std_dev=self.bbox_std_dev,
                mask_shape=self.mask_shape, use_mini_mask=self.use_mini_mask),
            self.images_per_gpu, names=names)
        return list(outputs)

    def compute_mask(self, inputs, mask=None):
        return [None, None, None, None]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(images_per_gpu=self.images_per_gpu,
                      train_rois_per_image=self.train_rois_per_image,
                      roi_positive_ratio=self.roi_positive_ratio,
                      bbox_std_dev=list(self.bbox_std_dev),
                      mask_shape=list(self.mask_shape),
                      use_mini_mask=self.use_mini_mask)
        return config


############################################################
#  Numpy targets (data generator side)
############################################################

def build_detection_targets(rpn_rois: np.ndarray, gt_class_ids: np.ndarray,
                            gt_boxes: np.ndarray, gt_masks: np.ndarray, config: Any):
    """Stage-2 targets in numpy, to train the heads without the RPN or to debug.

    rpn_rois: [N, (y1, x1, y2, x2)] proposal boxes in pixels
    gt_class_ids: [instances] int32
    gt_boxes: [instances, (y1, x1, y2, x2)] int32 pixels
    gt_masks: [height, width, instances] bool, full size or mini masks

    Returns:
        rois: [TRAIN_ROIS_PER_IMAGE, (y1, x1, y2, x2)]
        class_ids: [TRAIN_ROIS_PER_IMAGE] int
        bboxes: [TRAIN_ROIS_PER_IMAGE, NUM_CLASSES, (dy, dx, log(dh), log(dw))]
            class-specific deltas / BBOX_STD_DEV
        masks: [TRAIN_ROIS_PER_IMAGE, MASK_SHAPE[0], MASK_SHAPE[1], NUM_CLASSES]
            class-specific masks cropped to the ROI
    """
    _check_detection_target_inputs(rpn_rois, gt_class_ids, gt_boxes, gt_masks)

    # Gt boxes are not added to the ROIs: it does not help (Xinlei Chen).
    instance_ids = np.where(gt_class_ids > 0)[0]
    if instance_ids.shape[0] == 0:
        raise ValueError("Image must contain instances (a positive gt_class_id), "
                         f"got gt_class_ids={gt_class_ids.tolist()}")
    gt_class_ids = gt_class_ids[instance_ids]
    gt_boxes = gt_boxes[instance_ids]
    gt_masks = gt_masks[:, :, instance_ids]

    rpn_roi_area = (rpn_rois[:, 2] - rpn_rois[:, 0]) * (rpn_rois[:, 3] - rpn_rois[:, 1])
    gt_box_area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    overlaps = np.zeros((rpn_rois.shape[0], gt_boxes.shape[0]))  # [N, G]
    for i in range(overlaps.shape[1]):
        overlaps[:, i] = utils.compute_iou(gt_boxes[i], rpn_rois, gt_box_area[i], rpn_roi_area)

    rpn_roi_iou_argmax = np.argmax(overlaps, axis=1)  # [N]
    rpn_roi_iou_max = overlaps[np.arange(overlaps.shape[0]), rpn_roi_iou_argmax]
    rpn_roi_gt_boxes = gt_boxes[rpn_roi_iou_argmax]  # [N, 4]
    rpn_roi_gt_class_ids = gt_class_ids[rpn_roi_iou_argmax]  # [N]

    # Matterport uses > 0.5 here (>= 0.5 in the graph version).
    fg_ids = np.where(rpn_roi_iou_max > 0.5)[0]
    bg_ids = np.where(rpn_roi_iou_max < 0.5)[0]

    keep, keep_bg_ids = _sample_rois(fg_ids, bg_ids, rpn_roi_iou_max, config)

    rpn_roi_gt_boxes[keep_bg_ids, :] = 0
    rpn_roi_gt_class_ids[keep_bg_ids] = 0

    rois = rpn_rois[keep]
    roi_gt_boxes = rpn_roi_gt_boxes[keep]
    roi_gt_class_ids = rpn_roi_gt_class_ids[keep]
    roi_gt_assignment = rpn_roi_iou_argmax[keep]

    bboxes = np.zeros((config.TRAIN_ROIS_PER_IMAGE, config.NUM_CLASSES, 4), dtype=np.float32)
    pos_ids = np.where(roi_gt_class_ids > 0)[0]
    bboxes[pos_ids, roi_gt_class_ids[pos_ids]] = utils.box_refinement(
        rois[pos_ids], roi_gt_boxes[pos_ids, :4])
    bboxes /= config.BBOX_STD_DEV

    masks = np.zeros((config.TRAIN_ROIS_PER_IMAGE, config.MASK_SHAPE[0],
                      config.MASK_SHAPE[1], config.NUM_CLASSES), dtype=np.float32)
    for i in pos_ids:
        class_id = roi_gt_class_ids[i]
        gt_id = roi_gt_assignment[i]
        class_mask = gt_masks[:, :, gt_id]
        if config.USE_MINI_MASK:
            class_mask = _expand_mini_mask(class_mask, gt_boxes[gt_id], config.IMAGE_SHAPE[:2])
        y1, x1, y2, x2 = rois[i].astype(np.int32)
        m = class_mask[y1:y2, x1:x2]
        # Bool -> float: old skimage treated bool as 0/1 floats; new skimage refuses bool.
        masks[i, :, :, class_id] = utils.resize(m.astype(np.float64), config.MASK_SHAPE)

    return rois, roi_gt_class_ids, bboxes, masks


def _check_detection_target_inputs(rpn_rois, gt_class_ids, gt_boxes, gt_masks) -> None:
    if rpn_rois.shape[0] == 0:
        raise ValueError("rpn_rois is empty: expected at least one ROI")
    if gt_class_ids.dtype != np.int32:
        raise ValueError(f"gt_class_ids: expected int32 but got {gt_class_ids.dtype}")
    if gt_boxes.dtype != np.int32:
        raise ValueError(f"gt_boxes: expected int32 but got {gt_boxes.dtype}")
    if gt_masks.dtype != np.bool_:
        raise ValueError(f"gt_masks: expected bool but got {gt_masks.dtype}")


def _sample_rois(fg_ids, bg_ids, rpn_roi_iou_max, config):
    """Keeps up to ROI_POSITIVE_RATIO foreground ROIs and fills up with background.

    Returns (keep [TRAIN_ROIS_PER_IMAGE] indices, keep_bg_ids).
    """
    rng = numpy_random()
    fg_roi_count = int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO)
    if fg_ids.shape[0] > fg_roi_count:
        keep_fg_ids = rng.choice(fg_ids, fg_roi_count, replace=False)
    else:
        keep_fg_ids = fg_ids
    remaining = config.TRAIN_ROIS_PER_IMAGE - keep_fg_ids.shape[0]
    if bg_ids.shape[0] > remaining:
        keep_bg_ids = rng.choice(bg_ids, remaining, replace=False)
    else:
        keep_bg_ids = bg_ids
    keep = np.concatenate([keep_fg_ids, keep_bg_ids])
    remaining = config.TRAIN_ROIS_PER_IMAGE - keep.shape[0]
    if remaining > 0:
        # Not enough samples for the ratio: relax it (likely unlike the paper).
        if keep.shape[0] == 0:
            bg_ids = np.where(rpn_roi_iou_max < 0.5)[0]
            if bg_ids.shape[0] < remaining:
                raise ValueError(f"Need {remaining} background ROIs, only "
                                 f"{bg_ids.shape[0]} available")
            keep_bg_ids = rng.choice(bg_ids, remaining, replace=False)
            keep = np.concatenate([keep, keep_bg_ids])
        else:
            # Repeat background ROIs to fill up.
            keep_extra_ids = rng.choice(keep_bg_ids, remaining, replace=True)
            keep = np.concatenate([keep, keep_extra_ids])
    assert keep.shape[0] == config.TRAIN_ROIS_PER_IMAGE, \
        f"keep doesn't match ROI batch size {keep.shape[0]}, {config.TRAIN_ROIS_PER_IMAGE}"
    return keep, keep_bg_ids


def _expand_mini_mask(mini_mask: np.ndarray, gt_box: np.ndarray, image_hw) -> np.ndarray:
    """Places a mini mask, resized to its gt box, in an image-size bool mask."""
    placeholder = np.zeros(tuple(image_hw), dtype=bool)
    gt_y1, gt_x1, gt_y2, gt_x2 = gt_box
    gt_h = gt_y2 - gt_y1
    gt_w = gt_x2 - gt_x1
    placeholder[gt_y1:gt_y2, gt_x1:gt_x2] = np.round(
        utils.resize(mini_mask.astype(np.float64), (gt_h, gt_w))).astype(bool)
    return placeholder


def build_rpn_targets(image_shape, anchors: np.ndarray, gt_class_ids: np.ndarray,
                      gt_boxes: np.ndarray, config: Any):
    """Labels anchors positive / negative / neutral and computes deltas of the positives.

    anchors: [num_anchors, (y1, x1, y2, x2)]
    gt_class_ids: [num_gt_boxes] int; negative ids are crowds
    gt_boxes: [num_gt_boxes, (y1, x1, y2, x2)]

    Returns:
        rpn_match: [num_anchors] int32, 1 positive, -1 negative, 0 neutral
        rpn_bbox: [RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))] deltas of
            the positive anchors in anchor order, / RPN_BBOX_STD_DEV, zero padded
    """
    rpn_match = np.zeros([anchors.shape[0]], dtype=np.int32)
    rpn_bbox = np.zeros((config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4))

    # Anchors touching a crowd box are neither negatives nor matched to it.
    crowd_ix = np.where(gt_class_ids < 0)[0]
    if crowd_ix.shape[0] > 0:
        non_crowd_ix = np.where(gt_class_ids > 0)[0]
        crowd_boxes = gt_boxes[crowd_ix]
        gt_class_ids = gt_class_ids[non_crowd_ix]
        gt_boxes = gt_boxes[non_crowd_ix]
        crowd_overlaps = utils.compute_overlaps(anchors, crowd_boxes)  # [A, crowds]
        crowd_iou_max = np.amax(crowd_overlaps, axis=1)
        no_crowd_bool = (crowd_iou_max < 0.001)
    else:
        no_crowd_bool = np.ones([anchors.shape[0]], dtype=bool)

    overlaps = utils.compute_overlaps(anchors, gt_boxes)  # [A, G]

    # 1. Negatives (IoU < 0.3, away from crowds); overwritten below if matched.
    anchor_iou_argmax = np.argmax(overlaps, axis=1)
    anchor_iou_max = overlaps[np.arange(overlaps.shape[0]), anchor_iou_argmax]
    rpn_match[(anchor_iou_max < 0.3) & no_crowd_bool] = -1
    # 2. Every gt box gets its best anchor(s), whatever the IoU; ties all match.
    gt_iou_argmax = np.argwhere(overlaps == np.max(overlaps, axis=0))[:, 0]
    rpn_match[gt_iou_argmax] = 1
    # 3. IoU >= 0.7 is positive.
    rpn_match[anchor_iou_max >= 0.7] = 1

    # Balance: positives at most half of the anchors per image, negatives fill the rest.
    rng = numpy_random()
    ids = np.where(rpn_match == 1)[0]
    extra = len(ids) - (config.RPN_TRAIN_ANCHORS_PER_IMAGE // 2)
    if extra > 0:
        ids = rng.choice(ids, extra, replace=False)
        rpn_match[ids] = 0
    ids = np.where(rpn_match == -1)[0]
    extra = len(ids) - (config.RPN_TRAIN_ANCHORS_PER_IMAGE - np.sum(rpn_match == 1))
    if extra > 0:
        ids = rng.choice(ids, extra, replace=False)
        rpn_match[ids] = 0

    # Deltas from each positive anchor to its closest gt box (maybe IoU < 0.7).
    ids = np.where(rpn_match == 1)[0]
    for ix, (i, a) in enumerate(zip(ids, anchors[ids])):
        gt = gt_boxes[anchor_iou_argmax[i]]
        gt_h = gt[2] - gt[0]
        gt_w = gt[3] - gt[1]
        gt_center_y = gt[0] + 0.5 * gt_h
        gt_center_x = gt[1] + 0.5 * gt_w
        a_h = a[2] - a[0]
        a_w = a[3] - a[1]
        a_center_y = a[0] + 0.5 * a_h
        a_center_x = a[1] + 0.5 * a_w
        rpn_bbox[ix] = [
            (gt_center_y - a_center_y) / a_h,
            (gt_center_x - a_center_x) / a_w,
            np.log(gt_h / a_h),
            np.log(gt_w / a_w),
        ]
        rpn_bbox[ix] /= config.RPN_BBOX_STD_DEV

    return rpn_match, rpn_bbox


def generate_random_rois(image_shape, count: int, gt_class_ids: np.ndarray,
                         gt_boxes: np.ndarray) -> np.ndarray:
    """Random ROI proposals like an RPN would make: 90% around gt boxes, 10% anywhere.

    image_shape: [height, width, depth]
    count: number of ROIs
    gt_class_ids: [N] int (unused, kept for Matterport's signature)
    gt_boxes: [N, (y1, x1, y2, x2)] pixels
    Returns: [count, (y1, x1, y2, x2)] int32 pixels, no zero-area box
    """
    rois = np.zeros((count, 4), dtype=np.int32)

    rois_per_box = int(0.9 * count / gt_boxes.shape[0])
    for i in range(gt_boxes.shape[0]):
        gt_y1, gt_x1, gt_y2, gt_x2 = gt_boxes[i]
        h = gt_y2 - gt_y1
        w = gt_x2 - gt_x1
        # Corners within one box size of the gt box, inside the image.
        r_y1 = max(gt_y1 - h, 0)
        r_y2 = min(gt_y2 + h, image_shape[0])
        r_x1 = max(gt_x1 - w, 0)
        r_x2 = min(gt_x2 + w, image_shape[1])
        rois[rois_per_box * i:rois_per_box * (i + 1)] = _random_boxes(
            r_y1, r_y2, r_x1, r_x2, rois_per_box)

    remaining_count = count - (rois_per_box * gt_boxes.shape[0])
    global_rois = _random_boxes(0, image_shape[0], 0, image_shape[1], remaining_count)
    rois[-remaining_count:] = global_rois
    return rois


def _random_boxes(y_lo, y_hi, x_lo, x_hi, n: int) -> np.ndarray:
    """n random boxes with corners in [lo, hi) and non-zero area: [n, (y1, x1, y2, x2)]."""
    # Draw twice what is needed and drop zero-size boxes; retry if still short.
    rng = numpy_random()
    while True:
        y1y2 = rng.randint(y_lo, y_hi, (n * 2, 2))
        x1x2 = rng.randint(x_lo, x_hi, (n * 2, 2))
        threshold = 1
        y1y2 = y1y2[np.abs(y1y2[:, 0] - y1y2[:, 1]) >= threshold][:n]
        x1x2 = x1x2[np.abs(x1x2[:, 0] - x1x2[:, 1]) >= threshold][:n]
        if y1y2.shape[0] == n and x1x2.shape[0] == n:
            break
    x1, x2 = np.split(np.sort(x1x2, axis=1), 2, axis=1)
    y1, y2 = np.split(np.sort(y1y2, axis=1), 2, axis=1)
    return np.hstack([y1, x1, y2, x2])
