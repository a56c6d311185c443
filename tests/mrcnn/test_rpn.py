"""Tests for mrcnn.rpn: shapes, anchor ordering of the reshapes, softmax, weight layouts."""
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from mrcnn.rpn import build_rpn_model

DATA = Path(__file__).resolve().parents[1] / "data"


def _layout_rpn(name: str) -> list:
    with open(DATA / name) as f:
        return [tuple(w) for w in json.load(f)["layers"]["rpn_model"]]


@pytest.mark.parametrize("stride, expected_anchors", [(1, 8 * 8 * 3), (2, 4 * 4 * 3)])
def test_rpn_model_output_shapes(stride, expected_anchors):
    model = build_rpn_model(anchor_stride=stride, anchors_per_location=3, depth=16)
    assert model.name == "rpn_model"
    assert [tuple(o.shape) for o in model.outputs] == [(None, None, 2), (None, None, 2),
                                                      (None, None, 4)]
    features = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype(np.float32)
    logits, probs, bbox = (o.numpy() for o in model(features))
    assert logits.shape == (2, expected_anchors, 2)
    assert probs.shape == (2, expected_anchors, 2)
    assert bbox.shape == (2, expected_anchors, 4)


def test_rpn_outputs_follow_anchor_order_and_softmax():
    """Anchor index = (y * W + x) * anchors_per_location + a, as generate_pyramid_anchors."""
    model = build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=8)
    features = np.random.default_rng(1).normal(size=(2, 5, 4, 8)).astype(np.float32)
    logits, probs, bbox = (o.numpy() for o in model(features))
    raw = keras.Model(model.inputs[0], [model.get_layer("rpn_class_raw").output,
                                        model.get_layer("rpn_bbox_pred").output])
    class_raw, bbox_raw = (o.numpy() for o in raw(features))  # [2, 5, 4, 6], [2, 5, 4, 12]
    for b, y, x, a in [(0, 0, 0, 0), (1, 2, 3, 1), (0, 4, 1, 2), (1, 4, 3, 2)]:
        index = (y * 4 + x) * 3 + a
        np.testing.assert_allclose(logits[b, index], class_raw[b, y, x, 2 * a:2 * a + 2],
                                   rtol=1e-6)
        np.testing.assert_allclose(bbox[b, index], bbox_raw[b, y, x, 4 * a:4 * a + 4],
                                   rtol=1e-6)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, exp / exp.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)
    shared = model.get_layer("rpn_conv_shared")
    assert shared.activation is keras.activations.relu
    assert model.get_layer("rpn_class_xxx").activation is keras.activations.softmax


@pytest.mark.parametrize("layout, depth", [("matterport_coco_layout.json", 256),
                                           ("siamese_small_layout.json", 384)])
def test_rpn_model_weights_match_released_layouts(layout, depth):
    model = build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=depth)
    ours = [(f"{v.path}:0", list(v.shape)) for v in model.weights]
    assert ours == _layout_rpn(layout)
