"""Box graph functions and ProposalLayer against numpy references (here and in helpers)."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import utils
from mrcnn.config import Config
from mrcnn.proposals import (ProposalLayer, apply_box_deltas_graph, clip_boxes_graph,
                             denorm_boxes_graph, norm_boxes_graph)
from tests.helpers.numpy_reference import np_iou
from tests.helpers.layer_test import check_layer

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


# ---------------------------------------------------------------- numpy references

def np_apply_deltas(boxes, deltas):
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + 0.5 * h + deltas[:, 0] * h
    cx = boxes[:, 1] + 0.5 * w + deltas[:, 1] * w
    h = h * np.exp(deltas[:, 2])
    w = w * np.exp(deltas[:, 3])
    return np.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=1)


def np_nms(boxes, scores, max_out, threshold):
    order = np.argsort(-scores, kind="stable")
    keep = []
    for i in order:
        if len(keep) == max_out:
            break
        if all(np_iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


def np_proposals(probs, deltas, anchors, count, threshold, pre_nms_limit):
    """One image: top-k by fg score, refine, clip to unit square, NMS, zero pad."""
    scores = probs[:, 1]
    k = min(pre_nms_limit, len(scores))
    top = np.argsort(-scores, kind="stable")[:k]
    boxes = np_apply_deltas(anchors[top], deltas[top] * STD)
    boxes = np.clip(boxes, 0.0, 1.0)
    keep = np_nms(boxes, scores[top], count, threshold)
    out = np.zeros((count, 4), np.float32)
    out[:len(keep)] = boxes[keep]
    return out


# ---------------------------------------------------------------- box graph functions

def test_apply_box_deltas_graph_matches_numpy_and_inverts_box_refinement():
    rng = np.random.RandomState(1)
    y1x1 = rng.uniform(0, 0.5, (6, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(0.1, 0.4, (6, 2))], 1).astype(np.float32)
    deltas = rng.uniform(-0.5, 0.5, (6, 4)).astype(np.float32)
    out = apply_box_deltas_graph(tf.constant(boxes), tf.constant(deltas)).numpy()
    np.testing.assert_allclose(out, np_apply_deltas(boxes, deltas), rtol=1e-5, atol=1e-6)
    # Refining toward `out` gives back the deltas.
    back = utils.box_refinement_graph(tf.constant(boxes), tf.constant(out)).numpy()
    np.testing.assert_allclose(back, deltas, rtol=1e-4, atol=1e-5)


def test_apply_box_deltas_graph_hand_values():
    # Box of height 2 / width 4 centred at (2, 3): shift by half a size, double the height.
    boxes = tf.constant([[1.0, 1.0, 3.0, 5.0]])
    deltas = tf.constant([[0.5, -0.25, np.log(2.0), 0.0]])
    out = apply_box_deltas_graph(boxes, deltas).numpy()
    np.testing.assert_allclose(out, [[1.0, 0.0, 5.0, 4.0]], atol=1e-6)


def test_clip_boxes_graph_hand_values():
    boxes = tf.constant([[-0.2, 0.1, 0.5, 1.3], [0.2, 0.3, 0.4, 0.5], [1.2, -1.0, 1.5, -0.5]])
    window = np.array([0.0, 0.0, 1.0, 1.0], np.float32)
    out = clip_boxes_graph(boxes, window).numpy()
    np.testing.assert_allclose(out, [[0.0, 0.1, 0.5, 1.0], [0.2, 0.3, 0.4, 0.5],
                                     [1.0, 0.0, 1.0, 0.0]])
    out = clip_boxes_graph(boxes, tf.constant([0.25, 0.25, 0.75, 0.75])).numpy()
    np.testing.assert_allclose(out[1], [0.25, 0.3, 0.4, 0.5])


def test_norm_and_denorm_boxes_graph():
    # Matterport convention: shift (0, 0, 1, 1), scale (h - 1, w - 1).
    boxes = tf.constant([[10, 20, 50, 100], [0, 0, 100, 200]], tf.int32)
    shape = tf.constant([100, 200])
    norm = norm_boxes_graph(boxes, shape).numpy()
    np.testing.assert_allclose(norm, [[10 / 99, 20 / 199, 49 / 99, 99 / 199],
                                      [0, 0, 1, 1]], rtol=1e-6)
    np.testing.assert_array_equal(denorm_boxes_graph(tf.constant(norm), shape).numpy(),
                                  boxes.numpy())
    # Agrees with the numpy utilities.
    np.testing.assert_allclose(norm, utils.norm_boxes(boxes.numpy(), (100, 200)), rtol=1e-6)


# ---------------------------------------------------------------- ProposalLayer

def hand_made_inputs():
    """Two images, 7 anchors each, normalized.

    Image 0: anchor 0 (best) overlaps anchor 1 (IoU 0.82) -> 1 suppressed; anchor 2 is
    moved by its deltas; anchor 6 has the 6th score and falls outside PRE_NMS_LIMIT = 5
    although it overlaps nothing.
    """
    anchors = np.array([
        [0.10, 0.10, 0.30, 0.30],
        [0.11, 0.11, 0.31, 0.31],
        [0.80, 0.80, 0.95, 0.95],
        [0.50, 0.10, 0.70, 0.30],
        [0.10, 0.50, 0.30, 0.70],
        [0.40, 0.40, 0.60, 0.60],
        [0.70, 0.10, 0.90, 0.30],
    ], np.float32)
    fg0 = np.array([0.95, 0.90, 0.85, 0.80, 0.20, 0.70, 0.60], np.float32)
    fg1 = np.array([0.30, 0.20, 0.40, 0.99, 0.98, 0.10, 0.50], np.float32)
    probs = np.stack([np.stack([1 - f, f], -1) for f in (fg0, fg1)])  # [2, 7, 2]
    deltas = np.zeros((2, 7, 4), np.float32)
    deltas[0, 2] = [2.0, 2.0, 0.0, 0.0]  # moves anchor 2 by 0.2 * 0.15 down/right
    deltas[1, 3] = [-1.0, 0.5, 1.0, -1.0]
    anchors = np.stack([anchors, anchors])  # [2, 7, 4]
    return probs, deltas, anchors


def make_layer(**kwargs):
    return ProposalLayer(proposal_count=6, nms_threshold=0.7, images_per_gpu=2,
                         rpn_bbox_std_dev=STD, pre_nms_limit=5, **kwargs)


def test_proposal_layer_hand_made_case():
    probs, deltas, anchors = hand_made_inputs()
    (out,) = check_layer(make_layer(), [probs, deltas, anchors], expected_shapes=[(2, 6, 4)])
    # Image 0: top 5 = anchors 0, 1, 2, 3, 5; 1 suppressed by 0 -> 4 boxes, 2 zero rows.
    expected0 = np.array([
        [0.10, 0.10, 0.30, 0.30],
        [0.83, 0.83, 0.98, 0.98],  # anchor 2 shifted by 2 * 0.1 * 0.15 = 0.03
        [0.50, 0.10, 0.70, 0.30],
        [0.40, 0.40, 0.60, 0.60],
        [0, 0, 0, 0], [0, 0, 0, 0],
    ])
    np.testing.assert_allclose(out[0], expected0, atol=1e-5)
    for b in range(2):
        ref = np_proposals(probs[b], deltas[b], anchors[b], 6, 0.7, 5)
        np.testing.assert_allclose(out[b], ref, atol=1e-5)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_proposal_layer_clips_to_unit_square():
    probs, deltas, anchors = hand_made_inputs()
    # Shift by 10 * 0.1 * 0.15 = 0.15: [0.95, 0.95, 1.10, 1.10] -> clipped at 1.
    deltas[0, 2] = [10.0, 10.0, 0.0, 0.0]
    out = np.asarray(make_layer()([probs, deltas, anchors]))
    np.testing.assert_allclose(out[0, 1], [0.95, 0.95, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[0], np_proposals(probs[0], deltas[0], anchors[0], 6, 0.7, 5),
                               atol=1e-5)


def test_proposal_layer_random_inputs_in_tf_function_match_numpy():
    rng = np.random.RandomState(3)
    n = 60
    y1x1 = rng.uniform(0, 0.8, (2, n, 2))
    anchors = np.concatenate([y1x1, y1x1 + rng.uniform(0.05, 0.3, (2, n, 2))], -1)
    fg = rng.permutation(2 * n).reshape(2, n) / (2.0 * n)  # distinct scores
    probs = np.stack([1 - fg, fg], -1).astype(np.float32)
    deltas = rng.normal(0, 1, (2, n, 4)).astype(np.float32)
    layer = ProposalLayer(proposal_count=20, nms_threshold=0.5, images_per_gpu=2,
                          rpn_bbox_std_dev=STD, pre_nms_limit=40)
    run = tf.function(lambda p, d, a: layer([p, d, a]))
    out = run(tf.constant(probs), tf.constant(deltas), tf.constant(anchors.astype(np.float32)))
    for b in range(2):
        ref = np_proposals(probs[b], deltas[b], anchors[b].astype(np.float32), 20, 0.5, 40)
        np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-5)


def test_proposal_layer_reads_config_and_serializes():
    class C(Config):
        NAME = "t"
        IMAGES_PER_GPU = 1
        PRE_NMS_LIMIT = 123
        IMAGE_MIN_DIM = 64
        IMAGE_MAX_DIM = 64

    layer = ProposalLayer(proposal_count=10, nms_threshold=0.6, config=C(), name="ROI")
    assert layer.images_per_gpu == 1 and layer.pre_nms_limit == 123
    assert layer.rpn_bbox_std_dev == [0.1, 0.1, 0.2, 0.2]
    cfg = layer.get_config()
    json.dumps(cfg)  # plain values only
    clone = ProposalLayer.from_config(cfg)
    assert (clone.proposal_count, clone.nms_threshold, clone.images_per_gpu,
            clone.pre_nms_limit, clone.rpn_bbox_std_dev) == (10, 0.6, 1, 123,
                                                             [0.1, 0.1, 0.2, 0.2])
    assert clone.name == "ROI"


def test_proposal_layer_symbolic_shape():
    layer = make_layer()
    probs = keras.Input((None, 2))
    deltas = keras.Input((None, 4))
    anchors = keras.Input((None, 4))
    out = layer([probs, deltas, anchors])
    assert tuple(out.shape) == (None, 6, 4)


def test_proposal_layer_needs_its_config_values():
    with pytest.raises(ValueError, match="IMAGES_PER_GPU"):
        ProposalLayer(proposal_count=6, nms_threshold=0.7)
    with pytest.raises(ValueError, match="RPN_BBOX_STD_DEV"):
        ProposalLayer(proposal_count=6, nms_threshold=0.7, images_per_gpu=1,
                      rpn_bbox_std_dev=[0.1, 0.2], pre_nms_limit=10)
