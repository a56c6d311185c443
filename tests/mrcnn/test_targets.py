"""Detection targets (graph) and RPN / detection targets (numpy) against numpy references."""
import json

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import utils
from mrcnn.config import Config
from mrcnn.targets import (DetectionTargetLayer, build_detection_targets, build_rpn_targets,
                           generate_random_rois, overlaps_graph, trim_zeros_graph)
from tests.helpers.numpy_reference import np_crop_and_resize, np_iou
from tests.helpers.layer_test import check_layer

STD = np.array([0.1, 0.1, 0.2, 0.2])
TRAIN_ROIS = 12
RATIO = 0.33
MASK_SHAPE = (6, 6)


# ---------------------------------------------------------------- numpy references

def np_iou_matrix(boxes1, boxes2):
    return np.array([[np_iou(a, b) for b in boxes2] for a in boxes1]).reshape(
        len(boxes1), len(boxes2))


# ---------------------------------------------------------------- graph helpers

def test_overlaps_graph_matches_numpy():
    rng = np.random.RandomState(0)
    y1x1 = rng.uniform(0, 0.6, (7, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(0.05, 0.4, (7, 2))], 1).astype(np.float32)
    out = overlaps_graph(tf.constant(boxes[:4]), tf.constant(boxes[4:])).numpy()
    np.testing.assert_allclose(out, np_iou_matrix(boxes[:4], boxes[4:]), rtol=1e-5)
    empty = overlaps_graph(tf.constant(boxes), tf.zeros((0, 4))).numpy()
    assert empty.shape == (7, 0)


def test_trim_zeros_graph():
    boxes = tf.constant([[0.1, 0.1, 0.2, 0.2], [0, 0, 0, 0], [0.3, 0.3, 0.4, 0.5], [0, 0, 0, 0]])
    trimmed, non_zeros = trim_zeros_graph(boxes)
    np.testing.assert_allclose(trimmed.numpy(), boxes.numpy()[[0, 2]])
    assert non_zeros.numpy().tolist() == [True, False, True, False]


# ---------------------------------------------------------------- DetectionTargetLayer

SIZE = 64
GT_A = [0.10, 0.10, 0.40, 0.40]
GT_B = [0.50, 0.50, 0.90, 0.90]
CROWD = [0.00, 0.60, 0.30, 0.95]


def pixel_mask(box, left_half=True):
    """Full-size mask: the left half (or all) of the box's pixels."""
    m = np.zeros((SIZE, SIZE), bool)
    y1, x1, y2, x2 = (np.array(box) * (SIZE - 1)).round().astype(int)
    m[y1:y2 + 1, x1:(x1 + x2) // 2 + 1 if left_half else x2 + 1] = True
    return m


def image_inputs():
    """Two images of gt (padded to 5) and proposals (padded to 24), normalized."""
    gt_boxes = np.zeros((2, 5, 4), np.float32)
    gt_ids = np.zeros((2, 5), np.int32)
    gt_masks = np.zeros((2, SIZE, SIZE, 5), bool)
    gt_boxes[0, :3] = [GT_A, GT_B, CROWD]
    gt_ids[0, :3] = [1, 2, -1]
    gt_boxes[1, :1] = [GT_B]
    gt_ids[1, :1] = [3]
    for b, k, box in [(0, 0, GT_A), (0, 1, GT_B), (0, 2, CROWD), (1, 0, GT_B)]:
        gt_masks[b, :, :, k] = pixel_mask(box)

    rng = np.random.RandomState(5)

    def jitter(box, n, amount):
        return np.array(box) + rng.uniform(-amount, amount, (n, 4))

    near_crowd = [[0.20, 0.50, 0.28, 0.62], [0.25, 0.90, 0.35, 1.00]]  # touch the crowd only
    far = [[0.60, 0.05, 0.70, 0.15], [0.75, 0.10, 0.95, 0.30], [0.05, 0.45, 0.12, 0.55],
           [0.45, 0.20, 0.55, 0.30], [0.80, 0.02, 0.98, 0.08]]
    proposals = np.zeros((2, 24, 4), np.float32)
    p0 = np.concatenate([jitter(GT_A, 4, 0.03), jitter(GT_B, 3, 0.03), near_crowd, far])
    p1 = np.concatenate([jitter(GT_B, 2, 0.02), far[:3]])
    proposals[0, :len(p0)] = p0
    proposals[1, :len(p1)] = p1
    return proposals, gt_ids, gt_boxes, gt_masks


def make_layer(**overrides):
    kwargs = dict(images_per_gpu=2, train_rois_per_image=TRAIN_ROIS, roi_positive_ratio=RATIO,
                  bbox_std_dev=STD, mask_shape=MASK_SHAPE, use_mini_mask=False)
    kwargs.update(overrides)
    return DetectionTargetLayer(**kwargs)


def check_image_targets(outputs, b, proposals, gt_ids, gt_boxes, gt_masks, mini=False):
    rois, class_ids, deltas, masks = [np.asarray(o)[b] for o in outputs]
    keep = np.abs(gt_boxes[b]).sum(1) > 0
    ids, boxes, gmasks = gt_ids[b][keep], gt_boxes[b][keep], gt_masks[b][..., keep]
    crowd = boxes[ids < 0]
    boxes, ids, gmasks = boxes[ids > 0], ids[ids > 0], gmasks[..., ids > 0]
    props = proposals[b][np.abs(proposals[b]).sum(1) > 0]
    iou = np_iou_matrix(props, boxes)
    crowd_iou = np_iou_matrix(props, crowd).max(1) if len(crowd) else np.zeros(len(props))
    n_pos_avail = int((iou.max(1) >= 0.5).sum())
    n_neg_avail = int(((iou.max(1) < 0.5) & (crowd_iou < 0.001)).sum())

    pos = int((class_ids > 0).sum())
    assert pos == min(n_pos_avail, int(TRAIN_ROIS * RATIO))
    neg = min(n_neg_avail, int(pos / RATIO) - pos)
    assert pos <= RATIO * TRAIN_ROIS
    # Layout: positives, negatives, zero padding.
    assert (class_ids[:pos] > 0).all() and (class_ids[pos:] == 0).all()
    assert (np.abs(rois[:pos + neg]).sum(1) > 0).all()
    assert not rois[pos + neg:].any() and not deltas[pos:].any() and not masks[pos:].any()

    for i in range(pos + neg):
        j = np.where(np.abs(props - rois[i]).max(1) < 1e-6)[0]
        assert len(j) == 1, "every ROI is one of the proposals"
        j = j[0]
        if i >= pos:  # negative: below 0.5 with all gt, away from crowds
            assert iou[j].max() < 0.5 and crowd_iou[j] < 0.001
            continue
        g = int(np.argmax(iou[j]))
        assert iou[j, g] >= 0.5 and class_ids[i] == ids[g]
        expected = utils.box_refinement(rois[i:i + 1], boxes[g:g + 1])[0] / STD
        np.testing.assert_allclose(deltas[i], expected, rtol=1e-4, atol=1e-5)
        box = rois[i]
        if mini:
            gy1, gx1, gy2, gx2 = boxes[g]
            h, w = gy2 - gy1, gx2 - gx1
            box = [(box[0] - gy1) / h, (box[1] - gx1) / w, (box[2] - gy1) / h,
                   (box[3] - gx1) / w]
        ref = np_crop_and_resize(gmasks[..., g].astype(np.float64), box, MASK_SHAPE)
        decided = np.abs(ref - 0.5) > 1e-4  # exact halves may round either way
        np.testing.assert_array_equal(masks[i][decided], np.round(ref)[decided])
    return pos, neg


def test_detection_target_layer_eager():
    proposals, gt_ids, gt_boxes, gt_masks = image_inputs()
    # Sampling is random: the shared checks without comparing the clone's outputs.
    out = check_layer(make_layer(), [proposals, gt_ids, gt_boxes, gt_masks],
                      expected_shapes=[(2, TRAIN_ROIS, 4), (2, TRAIN_ROIS),
                                       (2, TRAIN_ROIS, 4), (2, TRAIN_ROIS) + MASK_SHAPE],
                      deterministic=False)
    assert out[1].dtype == np.int32
    pos0, neg0 = check_image_targets(out, 0, proposals, gt_ids, gt_boxes, gt_masks)
    pos1, neg1 = check_image_targets(out, 1, proposals, gt_ids, gt_boxes, gt_masks)
    # Image 0: 7 positives available -> 3 kept; 5 far negatives (the 2 near-crowd
    # boxes are excluded) of int(3 / 0.33) - 3 = 6 wanted. Image 1: 2 pos, 3 neg.
    assert (pos0, neg0, pos1, neg1) == (3, 5, 2, 3)


def test_detection_target_layer_in_tf_function_with_uint8_masks():
    proposals, gt_ids, gt_boxes, gt_masks = image_inputs()
    layer = make_layer()
    fn = tf.function(lambda *x: layer(list(x)))
    for _ in range(3):  # different random subsets, same invariants
        out = fn(proposals, gt_ids, gt_boxes, gt_masks.astype(np.uint8))
        for b in range(2):
            check_image_targets(out, b, proposals, gt_ids, gt_boxes, gt_masks)


def test_detection_target_layer_mini_masks():
    proposals, gt_ids, gt_boxes, _ = image_inputs()
    mini = np.zeros((2, 8, 8, 5), bool)
    mini[:, :, :5, :] = True  # left part of every gt box
    mini[:, 6:, :, :] = False
    out = make_layer(use_mini_mask=True)([proposals, gt_ids, gt_boxes, mini])
    for b in range(2):
        check_image_targets(out, b, proposals, gt_ids, gt_boxes, mini, mini=True)


def test_detection_target_layer_without_positives_returns_zeros():
    proposals, gt_ids, gt_boxes, gt_masks = image_inputs()
    proposals[:, :9] = [0.60, 0.05, 0.70, 0.15]  # no proposal near a gt box
    out = make_layer()([proposals, gt_ids, gt_boxes, gt_masks])
    # Matterport: no positives -> no negatives either (the ratio gives 0).
    for o in out:
        assert not np.asarray(o).any()


def test_detection_target_layer_config_and_serialization():
    class C(Config):
        NAME = "t"
        NUM_CLASSES = 4
        IMAGE_MIN_DIM = 64
        IMAGE_MAX_DIM = 64
        TRAIN_ROIS_PER_IMAGE = 16
        MASK_POOL_SIZE = 4
        MASK_SHAPE = [8, 8]

    layer = DetectionTargetLayer(C(), name="proposal_targets")
    cfg = layer.get_config()
    json.dumps(cfg)
    clone = DetectionTargetLayer.from_config(cfg)
    assert (clone.images_per_gpu, clone.train_rois_per_image, clone.roi_positive_ratio,
            clone.bbox_std_dev, clone.mask_shape, clone.use_mini_mask) == (
        2, 16, 0.33, [0.1, 0.1, 0.2, 0.2], [8, 8], True)
    with pytest.raises(ValueError, match="ROI_POSITIVE_RATIO"):
        make_layer(roi_positive_ratio=0.0)
    with pytest.raises(ValueError, match="TRAIN_ROIS_PER_IMAGE"):
        DetectionTargetLayer(images_per_gpu=1)


# ---------------------------------------------------------------- build_rpn_targets

class RpnConfig(Config):
    NAME = "rpn"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256


def grid_anchors():
    """16 px anchors every 8 px and 32 px anchors every 16 px on a 64 px image."""
    a16 = [[y, x, y + 16, x + 16] for y in range(0, 49, 8) for x in range(0, 49, 8)]
    a32 = [[y, x, y + 32, x + 32] for y in range(0, 33, 16) for x in range(0, 33, 16)]
    return np.array(a16 + a32, np.float64)


# G1 equals an anchor; G2 (6 x 6) has IoU < 0.3 with every anchor and two tied best
# anchors; the crowd box keeps nearby anchors from being negatives.
RPN_GT = np.array([[8, 8, 24, 24], [40, 36, 46, 42], [0, 40, 20, 64]], np.int32)
RPN_IDS = np.array([1, 2, -1], np.int32)


def rpn_reference(anchors, gt_boxes, gt_ids):
    boxes, crowd = gt_boxes[gt_ids > 0], gt_boxes[gt_ids < 0]
    iou = np_iou_matrix(anchors, boxes)
    crowd_iou = np_iou_matrix(anchors, crowd).max(1)
    match = np.zeros(len(anchors), np.int32)
    match[(iou.max(1) < 0.3) & (crowd_iou < 0.001)] = -1
    for g in range(len(boxes)):
        match[np.isclose(iou[:, g], iou[:, g].max())] = 1
    match[iou.max(1) >= 0.7] = 1
    return match, iou, boxes


def deltas_of(anchor, gt):
    ah, aw = anchor[2] - anchor[0], anchor[3] - anchor[1]
    gh, gw = gt[2] - gt[0], gt[3] - gt[1]
    return np.array([(gt[0] + gh / 2 - anchor[0] - ah / 2) / ah,
                     (gt[1] + gw / 2 - anchor[1] - aw / 2) / aw,
                     np.log(gh / ah), np.log(gw / aw)]) / STD


def test_build_rpn_targets_deterministic_content():
    anchors = grid_anchors()
    match, bbox = build_rpn_targets((64, 64, 3), anchors, RPN_IDS, RPN_GT, RpnConfig())
    ref, iou, boxes = rpn_reference(anchors, RPN_GT, RPN_IDS)
    np.testing.assert_array_equal(match, ref)
    assert match.dtype == np.int32 and bbox.shape == (256, 4)
    # Best-anchor rule: the small gt's two tied anchors are positive despite IoU 0.14.
    tied = np.where(np.isclose(iou[:, 1], 36 / 256))[0]
    assert len(tied) == 2 and (match[tied] == 1).all()
    # Some anchors are neutral only because of the crowd.
    assert ((iou.max(1) < 0.3) & (match == 0)).any()
    pos = np.where(match == 1)[0]
    expected = [deltas_of(anchors[i], boxes[np.argmax(iou[i])]) for i in pos]
    np.testing.assert_allclose(bbox[:len(pos)], expected, rtol=1e-6, atol=1e-9)
    assert not bbox[len(pos):].any()


def test_build_rpn_targets_subsamples_within_limits():
    class Small(RpnConfig):
        RPN_TRAIN_ANCHORS_PER_IMAGE = 4

    anchors = grid_anchors()
    ref, iou, boxes = rpn_reference(anchors, RPN_GT, RPN_IDS)
    match, bbox = build_rpn_targets((64, 64, 3), anchors, RPN_IDS, RPN_GT, Small())
    pos, neg = np.where(match == 1)[0], np.where(match == -1)[0]
    assert len(pos) <= 2 and len(pos) + len(neg) == 4
    assert (ref[pos] == 1).all() and (ref[neg] == -1).all()
    expected = [deltas_of(anchors[i], boxes[np.argmax(iou[i])]) for i in pos]
    np.testing.assert_allclose(bbox[:len(pos)], expected, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- build_detection_targets

class DetConfig(Config):
    NAME = "det"
    NUM_CLASSES = 3
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    TRAIN_ROIS_PER_IMAGE = 8
    MASK_POOL_SIZE = 4
    MASK_SHAPE = [8, 8]
    USE_MINI_MASK = False


def detection_inputs():
    gt_boxes = np.array([[4, 4, 36, 36], [30, 30, 62, 58], [0, 0, 0, 0]], np.int32)
    gt_ids = np.array([1, 2, 0], np.int32)
    masks = np.zeros((64, 64, 3), bool)
    masks[4:36, 4:36, 0] = True
    masks[30:62, 30:58, 1] = True
    rois = np.array([[5, 5, 35, 35], [6, 4, 36, 34], [32, 31, 60, 57], [31, 32, 62, 58],
                     [40, 0, 60, 20], [0, 40, 20, 60], [0, 0, 10, 10], [50, 0, 64, 10]],
                    np.int32)
    return rois, gt_ids, gt_boxes, masks


def test_build_detection_targets_values():
    config = DetConfig()
    rois_in, gt_ids, gt_boxes, masks = detection_inputs()
    rois, class_ids, bboxes, tmasks = build_detection_targets(
        rois_in, gt_ids, gt_boxes, masks, config)
    assert rois.shape == (8, 4) and class_ids.shape == (8,)
    assert bboxes.shape == (8, 3, 4) and tmasks.shape == (8, 8, 8, 3)
    pos = np.where(class_ids > 0)[0]
    # 4 ROIs have IoU > 0.5; at most int(8 * 0.33) = 2 of them are kept.
    assert len(pos) == 2 and (pos == [0, 1]).all()
    iou = np_iou_matrix(rois.astype(float), gt_boxes[:2].astype(float))
    for i in range(8):
        c = class_ids[i]
        if c == 0:
            assert iou[i].max() < 0.5
            assert not bboxes[i].any() and not tmasks[i].any()
            continue
        g = int(np.argmax(iou[i]))
        assert iou[i, g] > 0.5 and c == gt_ids[g]
        np.testing.assert_allclose(bboxes[i, c], utils.box_refinement(
            rois[i:i + 1], gt_boxes[g:g + 1])[0] / STD, rtol=1e-5)
        others = [k for k in range(3) if k != c]
        assert not bboxes[i, others].any() and not tmasks[i][..., others].any()
        # ROIs lie inside their solid gt mask: the target is all ones.
        np.testing.assert_allclose(tmasks[i][..., c], 1.0)


def test_build_detection_targets_rejects_bad_input():
    config = DetConfig()
    rois, gt_ids, gt_boxes, masks = detection_inputs()
    with pytest.raises(ValueError, match="gt_boxes"):
        build_detection_targets(rois, gt_ids, gt_boxes.astype(np.float32), masks, config)
    with pytest.raises(ValueError, match="gt_masks"):
        build_detection_targets(rois, gt_ids, gt_boxes, masks.astype(np.uint8), config)
    with pytest.raises(ValueError, match="instances"):
        build_detection_targets(rois, np.zeros(3, np.int32), gt_boxes, masks, config)


# ---------------------------------------------------------------- generate_random_rois

def test_generate_random_rois():
    gt_boxes = np.array([[10, 10, 20, 30], [40, 5, 60, 25]], np.int32)
    rois = generate_random_rois((64, 64, 3), 20, np.array([1, 2]), gt_boxes)
    assert rois.shape == (20, 4) and rois.dtype == np.int32
    assert (rois[:, 2] > rois[:, 0]).all() and (rois[:, 3] > rois[:, 1]).all()
    assert rois.min() >= 0 and rois.max() <= 64
    # 9 ROIs per gt box within one box size around it; the last 2 anywhere.
    for k, (y1, x1, y2, x2) in enumerate(gt_boxes):
        part = rois[9 * k:9 * (k + 1)]
        h, w = y2 - y1, x2 - x1
        assert (part[:, [0, 2]] >= max(y1 - h, 0)).all()
        assert (part[:, [0, 2]] < min(y2 + h, 64)).all()
        assert (part[:, [1, 3]] >= max(x1 - w, 0)).all()
        assert (part[:, [1, 3]] < min(x2 + w, 64)).all()


def test_detection_target_layer_in_functional_model():
    import keras

    inputs = [keras.Input((24, 4)), keras.Input((5,), dtype="int32"), keras.Input((5, 4)),
              keras.Input((SIZE, SIZE, 5), dtype="bool")]
    outputs = make_layer()(inputs)
    # batch_slice stacks IMAGES_PER_GPU slices: the batch axis becomes static.
    assert [tuple(o.shape) for o in outputs] == [
        (2, TRAIN_ROIS, 4), (2, TRAIN_ROIS), (2, TRAIN_ROIS, 4), (2, TRAIN_ROIS) + MASK_SHAPE]
    assert outputs[1].dtype == "int32"
    model = keras.Model(inputs, outputs)
    proposals, gt_ids, gt_boxes, gt_masks = image_inputs()
    out = model.predict_on_batch([proposals, gt_ids, gt_boxes, gt_masks])
    for b in range(2):
        check_image_targets(out, b, proposals, gt_ids, gt_boxes, gt_masks)
