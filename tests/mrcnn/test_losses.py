"""Loss graphs on hand-made inputs with hand-computed values, eager and in tf.function."""
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.losses import (batch_pack_graph, mrcnn_bbox_loss_graph, mrcnn_class_loss_graph,
                          mrcnn_mask_loss_graph, rpn_bbox_loss_graph, rpn_class_loss_graph,
                          smooth_l1_loss)

LN2, LN3 = np.log(2.0), np.log(3.0)


def both(fn, *args):
    """fn(*args) eagerly and traced; asserts they agree and returns the value."""
    eager = float(fn(*args))
    traced = float(tf.function(fn)(*args))
    assert eager == pytest.approx(traced, rel=1e-6, abs=1e-7)
    return eager


def test_smooth_l1_loss():
    out = smooth_l1_loss(tf.zeros((1, 4)), tf.constant([[0.5, -2.0, 1.0, 0.2]])).numpy()
    # 0.5 * d^2 below 1, |d| - 0.5 from 1 on.
    np.testing.assert_allclose(out, [[0.125, 1.5, 0.5, 0.02]], rtol=1e-6)


def test_batch_pack_graph():
    x = tf.reshape(tf.range(12), (2, 3, 2))
    out = batch_pack_graph(x, tf.constant([2, 1]), 2).numpy()
    np.testing.assert_array_equal(out, [[0, 1], [2, 3], [6, 7]])


def test_rpn_class_loss():
    rpn_match = np.array([[[1], [-1], [0]], [[0], [0], [1]]], np.int32)
    logits = np.array([[[0, LN3], [LN3, 0], [100, -100]],     # p=3/4, p=3/4, neutral
                       [[5, 5], [-7, 3], [0, 0]]], np.float32)  # neutral, neutral, p=1/2
    expected = (2 * -np.log(0.75) + LN2) / 3
    assert both(rpn_class_loss_graph, rpn_match, logits) == pytest.approx(expected, rel=1e-5)


def test_rpn_class_loss_without_anchors_is_zero():
    assert both(rpn_class_loss_graph, np.zeros((1, 3, 1), np.int32),
                np.ones((1, 3, 2), np.float32)) == 0.0


def rpn_bbox_case():
    rpn_match = np.array([[[1], [0], [1], [-1]], [[0], [1], [0], [0]]], np.int32)
    rpn_bbox = np.full((2, 4, 4), 9.0, np.float32)  # non-positive anchors: ignored
    rpn_bbox[0, 0] = [0.5, 0, 0, 0]
    rpn_bbox[0, 2] = [0, 0, 2, 0]
    rpn_bbox[1, 1] = [0, 0, 0, 0.1]
    # Targets of each image's positives in anchor order, then padding (never read).
    target = np.array([[[0.5, 0, 0, 0], [0, 0, 0, 0], [7, 7, 7, 7]],
                       [[0, 0, 0, 0.1], [7, 7, 7, 7], [7, 7, 7, 7]]], np.float32)
    return target, rpn_match, rpn_bbox


def test_rpn_bbox_loss_with_int_or_config():
    target, rpn_match, rpn_bbox = rpn_bbox_case()
    # Only image 0's second positive is off, by 2 in one delta: 2 - 0.5 = 1.5, over 3 x 4.
    expected = 1.5 / 12
    assert both(lambda *a: rpn_bbox_loss_graph(2, *a), target, rpn_match, rpn_bbox) == \
        pytest.approx(expected, rel=1e-6)
    config = SimpleNamespace(IMAGES_PER_GPU=2)
    assert float(rpn_bbox_loss_graph(config, target, rpn_match, rpn_bbox)) == \
        pytest.approx(expected, rel=1e-6)


def test_rpn_bbox_loss_without_positives_is_zero_and_bad_config_raises():
    target, rpn_match, rpn_bbox = rpn_bbox_case()
    empty = np.zeros_like(rpn_match)
    assert both(lambda *a: rpn_bbox_loss_graph(2, *a), target, empty, rpn_bbox) == 0.0
    with pytest.raises(ValueError, match="IMAGES_PER_GPU"):
        rpn_bbox_loss_graph("two", target, rpn_match, rpn_bbox)


def test_mrcnn_class_loss_masks_inactive_predictions():
    target = np.array([[0, 1, 1]], np.int32)
    logits = np.array([[[LN2, 0, 0],     # predicts 0 (active): -ln(2/4)
                        [0, LN3, 0],     # predicts 1 (active): -ln(3/5)
                        [0, 0, np.log(4.0)]]], np.float32)  # predicts 2: inactive, dropped
    active = np.array([[1, 1, 0]], np.float32)
    expected = (LN2 - np.log(0.6)) / 2
    assert both(mrcnn_class_loss_graph, target, logits, active) == pytest.approx(expected,
                                                                               rel=1e-5)


def test_mrcnn_class_loss_uses_first_images_active_classes():
    target = np.array([[1], [1]], np.int32)
    logits = np.array([[[0, LN3, 0]], [[0, LN3, 0]]], np.float32)
    active = np.array([[1, 1, 1], [0, 0, 0]], np.float32)  # Matterport reads row 0 only
    assert both(mrcnn_class_loss_graph, target, logits, active) == pytest.approx(
        -np.log(0.6), rel=1e-5)


def test_mrcnn_bbox_loss_uses_true_class_deltas_of_positives():
    target_ids = np.array([[1, 0, 2]], np.int32)
    target = np.array([[[1, 0, 0, 0], [5, 5, 5, 5], [0, 0, 0, 0]]], np.float32)
    pred = np.full((1, 3, 3, 4), 9.0, np.float32)  # other classes / negatives: ignored
    pred[0, 0, 1] = [0, 0, 0, 0]  # |1| -> 0.5
    pred[0, 2, 2] = [0, 3, 0, 0]  # |3| -> 2.5
    assert both(mrcnn_bbox_loss_graph, target, target_ids, pred) == pytest.approx(3.0 / 8)
    assert both(mrcnn_bbox_loss_graph, target, np.zeros_like(target_ids), pred) == 0.0


def test_mrcnn_mask_loss():
    target_ids = np.array([[1, 0]], np.int32)
    target = np.array([[[[1, 0]], [[1, 1]]]], np.float32)  # [1, 2 rois, 1, 2]
    pred = np.full((1, 2, 1, 2, 2), 0.3, np.float32)
    pred[0, 0, 0, :, 1] = [0.5, 0.8]  # class 1 channel of the positive ROI
    expected = (LN2 - np.log(0.2)) / 2
    assert both(mrcnn_mask_loss_graph, target, target_ids, pred) == pytest.approx(expected,
                                                                                rel=1e-5)
    assert both(mrcnn_mask_loss_graph, target, np.zeros_like(target_ids), pred) == 0.0


def test_mrcnn_mask_loss_clips_probabilities_like_keras2():
    # p = 0 with target 1: clipped to 1e-7 -> -ln(1e-7), finite.
    target_ids = np.array([[1]], np.int32)
    target = np.ones((1, 1, 1, 1), np.float32)
    pred = np.zeros((1, 1, 1, 1, 2), np.float32)
    assert both(mrcnn_mask_loss_graph, target, target_ids, pred) == pytest.approx(
        -np.log(1e-7), rel=1e-4)
