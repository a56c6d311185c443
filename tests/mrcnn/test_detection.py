"""refine_detections_graph and DetectionLayer against a numpy implementation written here."""
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.config import Config
from mrcnn.data import compose_image_meta
from mrcnn.detection import DetectionLayer, refine_detections_graph
from tests.helpers.layer_test import check_layer
from tests.helpers.numpy_reference import np_iou

STD = np.array([0.1, 0.1, 0.2, 0.2], np.float32)


# ---------------------------------------------------------------- numpy reference

def np_refine(rois, probs, deltas, window, min_conf, max_instances, nms_threshold):
    """One image: best class, refine and clip, drop bg / low scores, NMS per class, top k."""
    n = len(rois)
    cls = probs.argmax(1)
    score = probs[np.arange(n), cls]
    d = deltas[np.arange(n), cls] * STD
    h, w = rois[:, 2] - rois[:, 0], rois[:, 3] - rois[:, 1]
    cy, cx = rois[:, 0] + h / 2 + d[:, 0] * h, rois[:, 1] + w / 2 + d[:, 1] * w
    h, w = h * np.exp(d[:, 2]), w * np.exp(d[:, 3])
    boxes = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], 1)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], window[0], window[2])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], window[1], window[3])

    candidates = (cls > 0) & (score >= min_conf if min_conf else True)
    kept = []
    for c in np.unique(cls[candidates]):
        ix = [i for i in np.argsort(-score) if candidates[i] and cls[i] == c]
        chosen = []
        for i in ix:
            if len(chosen) < max_instances and all(
                    np_iou(boxes[i], boxes[k]) <= nms_threshold for k in chosen):
                chosen.append(i)
        kept += chosen
    kept = sorted(kept, key=lambda i: -score[i])[:max_instances]
    out = np.zeros((max_instances, 6), np.float32)
    for row, i in enumerate(kept):
        out[row] = list(boxes[i]) + [cls[i], score[i]]
    return out


def graph_config(min_conf=0.7, max_instances=5, nms=0.3):
    return SimpleNamespace(BBOX_STD_DEV=STD, DETECTION_MIN_CONFIDENCE=min_conf,
                           DETECTION_MAX_INSTANCES=max_instances, DETECTION_NMS_THRESHOLD=nms)


def random_case(rng, n=30, num_classes=4):
    """ROIs jittered around 4 objects, so that NMS has overlaps to suppress."""
    y1x1 = rng.uniform(0, 0.7, (4, 2))[rng.randint(0, 4, n)] + rng.normal(0, 0.02, (n, 2))
    rois = np.concatenate([y1x1, y1x1 + 0.25 + rng.normal(0, 0.02, (n, 2))], 1)
    logits = rng.normal(0, 1.5, (n, num_classes))
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    deltas = rng.normal(0, 0.3, (n, num_classes, 4)).astype(np.float32)
    return rois.astype(np.float32), probs, deltas


# ---------------------------------------------------------------- refine_detections_graph

def test_refine_detections_hand_made_case():
    a = [0.1, 0.1, 0.5, 0.5]
    b = [0.12, 0.1, 0.52, 0.5]  # IoU with a: 0.9
    rois = np.array([a, b, b, a, [0.6, 0.6, 0.9, 0.9]], np.float32)
    probs = np.array([[0.05, 0.90, 0.05],   # class 1, kept
                      [0.10, 0.80, 0.10],   # class 1, suppressed by roi 0
                      [0.05, 0.10, 0.85],   # class 2, same box: NMS is per class -> kept
                      [0.20, 0.60, 0.20],   # class 1 below DETECTION_MIN_CONFIDENCE
                      [0.95, 0.03, 0.02]],  # background
                     np.float32)
    deltas = np.zeros((5, 3, 4), np.float32)
    window = np.array([0, 0, 1, 1], np.float32)
    out = refine_detections_graph(rois, probs, deltas, window, graph_config()).numpy()
    expected = np.zeros((5, 6), np.float32)
    expected[0] = a + [1, 0.90]
    expected[1] = b + [2, 0.85]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # With no confidence threshold roi 3 enters NMS, and roi 0 (same class, same box)
    # suppresses it.
    out = refine_detections_graph(rois, probs, deltas, window,
                                  graph_config(min_conf=0.0)).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_refine_detections_matches_numpy_on_random_inputs():
    rng = np.random.RandomState(0)
    window = np.array([0.1, 0.0, 0.9, 1.0], np.float32)
    for min_conf, max_inst, nms in [(0.5, 8, 0.3), (0.0, 4, 0.5), (0.3, 20, 0.7)]:
        rois, probs, deltas = random_case(rng)
        out = refine_detections_graph(rois, probs, deltas, window,
                                      graph_config(min_conf, max_inst, nms)).numpy()
        ref = np_refine(rois, probs, deltas, window, min_conf, max_inst, nms)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
        assert out.shape == (max_inst, 6)


def test_refine_detections_all_background_gives_zeros():
    rois = np.array([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.7, 0.7]], np.float32)
    probs = np.array([[0.9, 0.1], [0.8, 0.2]], np.float32)
    deltas = np.zeros((2, 2, 4), np.float32)
    fn = tf.function(lambda r, p, d: refine_detections_graph(
        r, p, d, tf.constant([0.0, 0.0, 1.0, 1.0]), graph_config()))
    out = fn(rois, probs, deltas).numpy()
    assert out.shape == (5, 6) and not out.any()


# ---------------------------------------------------------------- DetectionLayer

SIZE = 64


def image_meta(window, num_classes=4):
    return compose_image_meta(0, (SIZE, SIZE, 3), (SIZE, SIZE, 3), window, 1.0,
                              np.ones(num_classes)).astype(np.float32)


def make_layer(**overrides):
    kwargs = dict(images_per_gpu=2, bbox_std_dev=STD, detection_min_confidence=0.4,
                  detection_max_instances=6, detection_nms_threshold=0.3)
    kwargs.update(overrides)
    return DetectionLayer(**kwargs)


def layer_case():
    rng = np.random.RandomState(7)
    cases = [random_case(rng, n=20) for _ in range(2)]
    rois, probs, deltas = [np.stack(x) for x in zip(*cases)]
    # Image 1 is letterboxed: rows 16..47 hold the image.
    metas = np.stack([image_meta((0, 0, SIZE, SIZE)), image_meta((16, 0, 48, SIZE))])
    # Matterport normalization: (y1, x1, y2 - 1, x2 - 1) / (size - 1).
    windows = [np.array([0, 0, 1, 1]), np.array([16 / 63, 0, 47 / 63, 1])]
    return rois, probs, deltas, metas, windows


def test_detection_layer_eager_and_tf_function_match_numpy():
    rois, probs, deltas, metas, windows = layer_case()
    layer = make_layer()
    eager = np.asarray(layer([rois, probs, deltas, metas]))
    graph = tf.function(lambda *x: layer(list(x)))(rois, probs, deltas, metas).numpy()
    assert eager.shape == (2, 6, 6)
    for b in range(2):
        ref = np_refine(rois[b], probs[b], deltas[b], windows[b], 0.4, 6, 0.3)
        np.testing.assert_allclose(eager[b], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-6)
    # The letterboxed image's boxes stay inside its window.
    found = eager[1][eager[1, :, 4] > 0]
    assert len(found) and (found[:, [0, 2]] >= 16 / 63 - 1e-6).all()
    assert (found[:, [0, 2]] <= 47 / 63 + 1e-6).all()


def test_detection_layer_symbolic_shape_config_and_serialization():
    class C(Config):
        NAME = "t"
        NUM_CLASSES = 4
        IMAGES_PER_GPU = 1
        IMAGE_MIN_DIM = 64
        IMAGE_MAX_DIM = 64
        DETECTION_MAX_INSTANCES = 9

    layer = DetectionLayer(C(), name="mrcnn_detection")
    rois, probs, deltas, metas, _ = layer_case()
    check_layer(layer, [rois[:1, :10], probs[:1, :10], deltas[:1, :10], metas[:1]],
                expected_shapes=[(1, 9, 6)])
    clone = DetectionLayer.from_config(layer.get_config())
    assert (clone.images_per_gpu, clone.bbox_std_dev, clone.detection_min_confidence,
            clone.detection_max_instances, clone.detection_nms_threshold) == (
        1, [0.1, 0.1, 0.2, 0.2], 0.7, 9, 0.3)
    with pytest.raises(ValueError, match="DETECTION_MAX_INSTANCES"):
        DetectionLayer(images_per_gpu=1, bbox_std_dev=STD, detection_min_confidence=0.5,
                       detection_nms_threshold=0.3)
