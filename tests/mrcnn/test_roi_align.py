"""PyramidROIAlign: level assignment, crop values vs a numpy bilinear crop, box order."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.data import compose_image_meta
from mrcnn.roi_align import PyramidROIAlign, log2_graph, roi_level_graph
from tests.helpers.numpy_reference import np_crop_and_resize
from tests.helpers.layer_test import check_layer


def meta(batch, size, num_classes=3):
    one = compose_image_meta(0, (size, size, 3), (size, size, 3), (0, 0, size, size), 1.0,
                             np.ones(num_classes))
    return np.stack([one] * batch).astype(np.float32)


def square(center, side_px, image_px):
    """Normalized square box of `side_px` pixels centred at normalized `center`."""
    half = side_px / image_px / 2
    return [center - half, center - half, center + half, center + half]


def constant_pyramid(batch, size, channels=2):
    """P2..P5 (strides 4..32) filled with their level number."""
    return [np.full((batch, size // s, size // s, channels), float(level), np.float32)
            for level, s in zip(range(2, 6), (4, 8, 16, 32))]


def test_log2_graph():
    np.testing.assert_allclose(log2_graph(tf.constant([1.0, 8.0, 0.5])).numpy(), [0, 3, -1],
                               atol=1e-6)


@pytest.mark.parametrize("side, level", [(224, 4), (112, 3), (448, 5), (56, 2), (8, 2),
                                         (1000, 5), (160, 4), (150, 3)])
def test_roi_level_for_boxes_of_known_size_on_1024_image(side, level):
    # 224 px on a 1024 image -> P4; every factor 2 one level; clipped to 2..5.
    # 160 px: log2(160/224) = -0.49 rounds to 0 -> P4; 150 px: -0.58 -> P3.
    boxes = tf.constant([[square(0.5, side, 1024)]], tf.float32)
    levels = roi_level_graph(boxes, tf.constant([1024.0, 1024.0, 3.0])).numpy()
    assert levels.tolist() == [[level]]


def test_level_depends_on_pixel_size_not_normalized_size():
    # The same normalized box: 256 px on a 1024 image (P4), 64 px on a 256 image (P2).
    boxes = tf.constant([[[0.0, 0.0, 0.25, 0.25]]], tf.float32)
    big = roi_level_graph(boxes, tf.constant([1024.0, 1024.0, 3.0])).numpy()
    small = roi_level_graph(boxes, tf.constant([256.0, 256.0, 3.0])).numpy()
    assert big.tolist() == [[4]] and small.tolist() == [[2]]


def test_layer_pools_each_box_from_its_level_in_input_order():
    size = 512
    # Pixel sides -> levels: < 79 P2, 79..158 P3, 158..317 P4, > 317 P5.
    sides = [[224, 40, 400, 112], [480, 350, 20, 200]]
    boxes = np.array([[square(0.5, s, size) for s in row] for row in sides], np.float32)
    layer = PyramidROIAlign([3, 3])
    out = layer([tf.constant(boxes), meta(2, size)] + constant_pyramid(2, size))
    out = np.asarray(out)
    assert out.shape == (2, 4, 3, 3, 2)
    np.testing.assert_allclose(out[..., 0, 0, 0], [[4, 2, 5, 3], [5, 5, 2, 4]])


def test_crop_values_match_numpy_bilinear_crop():
    size = 512
    rng = np.random.RandomState(0)
    pyramid = [rng.normal(size=(2, size // s, size // s, 3)).astype(np.float32)
               for s in (4, 8, 16, 32)]
    # Sides of about 0.1, 0.3, 0.5, 0.9 of 512 px: levels 2, 3, 4, 5.
    boxes = np.array([
        [[0.10, 0.20, 0.20, 0.31], [0.05, 0.05, 0.95, 0.90], [0.40, 0.10, 0.70, 0.40]],
        [[0.30, 0.20, 0.80, 0.70], [0.00, 0.30, 0.12, 0.38], [0.20, 0.20, 0.50, 0.50]],
    ], np.float32)
    # sqrt(h * w) in px: 54, 448, 154 / 256, 50, 154 -> log2(. / 224) rounded, + 4.
    levels = np.array([[2, 5, 3], [4, 2, 3]])
    np.testing.assert_array_equal(
        roi_level_graph(tf.constant(boxes), tf.constant([512.0, 512.0, 3.0])).numpy(), levels)
    layer = PyramidROIAlign((4, 5))
    out = np.asarray(layer([boxes, meta(2, size)] + pyramid))
    for b in range(2):
        for n in range(3):
            ref = np_crop_and_resize(pyramid[levels[b, n] - 2][b], boxes[b, n], (4, 5))
            np.testing.assert_allclose(out[b, n], ref, rtol=1e-5, atol=1e-5)


def test_layer_in_tf_function_and_symbolic_static_shape():
    size = 64
    layer = PyramidROIAlign((7, 7), name="roi_align_classifier")
    boxes = keras.Input((5, 4))
    image_meta = keras.Input((15,))
    maps = [keras.Input((size // s, size // s, 8)) for s in (4, 8, 16, 32)]
    out = layer([boxes, image_meta] + maps)
    assert tuple(out.shape) == (None, 5, 7, 7, 8)

    rng = np.random.RandomState(1)
    y1x1 = rng.uniform(0, 0.5, (1, 5, 2))
    b = np.concatenate([y1x1, y1x1 + rng.uniform(0.05, 0.5, (1, 5, 2))], -1).astype(np.float32)
    pyramid = [rng.normal(size=(1, size // s, size // s, 8)).astype(np.float32)
               for s in (4, 8, 16, 32)]
    fn = tf.function(lambda *x: layer(list(x)))
    graph_out = fn(b, meta(1, size), *pyramid)
    assert graph_out.shape == (1, 5, 7, 7, 8)
    np.testing.assert_allclose(graph_out.numpy(), np.asarray(layer([b, meta(1, size)] + pyramid)),
                               rtol=1e-6)


def test_get_config_round_trip_and_bad_pool_shape():
    layer = PyramidROIAlign([7, 7], name="roi_align_mask")
    boxes = np.array([[[0.1, 0.1, 0.6, 0.5], [0.0, 0.2, 0.9, 0.9]]], np.float32)
    check_layer(layer, [boxes, meta(1, 64)] + constant_pyramid(1, 64, channels=3),
                expected_shapes=[(1, 2, 7, 7, 3)])
    clone = PyramidROIAlign.from_config(layer.get_config())
    assert clone.pool_shape == (7, 7) and clone.name == "roi_align_mask"
    with pytest.raises(ValueError, match="pool_shape"):
        PyramidROIAlign([7])


def test_keras_ops_path_equals_the_tensorflow_path():
    # call_ops (what JAX and PyTorch run: one gather over the four maps) against call
    # (TensorFlow's per-level crops, then the sort back to box order), on every level,
    # zero-padded boxes and boxes that reach past the image.
    size = 1024
    rng = np.random.RandomState(2)
    pyramid = [rng.normal(size=(2, size // s, size // s, 4)).astype(np.float32)
               for s in (4, 8, 16, 32)]
    sides = np.array([[40, 112, 224, 448] * 2 + [80]] * 2) / size  # levels 2..5
    y1x1 = rng.uniform(-0.1, 0.9, (2, 9, 2))
    boxes = np.concatenate([y1x1, y1x1 + sides[..., None]], -1).astype(np.float32)
    boxes[1, -2:] = 0  # padding
    layer = PyramidROIAlign((5, 4))
    inputs = [boxes, meta(2, size)] + pyramid
    levels = roi_level_graph(tf.constant(boxes), tf.constant([size, size, 3.0])).numpy()
    assert set(levels[0].tolist()) == {2, 3, 4, 5}
    want = np.asarray(layer(inputs))
    got = np.asarray(layer.call_ops([tf.constant(x) for x in inputs]))
    assert got.shape == want.shape == (2, 9, 5, 4, 4)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert np.all(got[1, -2:] == want[1, -2:])
