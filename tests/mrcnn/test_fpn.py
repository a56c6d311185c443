"""Tests for mrcnn.fpn: numbers against a numpy FPN, names, nested-model weight order."""
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from mrcnn.fpn import build_fpn_model, fpn_graph

DATA = Path(__file__).resolve().parents[1] / "data"
CHANNELS = [4, 6, 8, 10]  # tiny C2..C5
SIZES = [16, 8, 4, 2]  # C2..C5 of a 64 px image
PYRAMID = 5


def _conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Stride-1 'same' convolution (odd kernel) of x [b, h, w, c]."""
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[3],), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,cd->bhwd", padded[:, i:i + h, j:j + w], kernel[i, j])
    return out + bias


def _numpy_fpn(model: keras.Model, features: list, relu: bool) -> list:
    def conv(name, x):
        kernel, bias = (v.numpy().astype(np.float64) for v in model.get_layer(name).weights)
        y = _conv(x, kernel, bias)
        return np.maximum(y, 0) if relu else y

    def up(x):
        return x.repeat(2, axis=1).repeat(2, axis=2)

    C2, C3, C4, C5 = features
    P5 = conv("fpn_c5p5", C5)
    P4 = up(P5) + conv("fpn_c4p4", C4)
    P3 = up(P4) + conv("fpn_c3p3", C3)
    P2 = up(P3) + conv("fpn_c2p2", C2)
    P2, P3, P4, P5 = (conv(f"fpn_p{i}", P) for i, P in zip(range(2, 6), (P2, P3, P4, P5)))
    P6 = P5[:, ::2, ::2]
    return [P2, P3, P4, P5, P6]


def _features(batch: int = 2) -> list:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(batch, s, s, c)).astype(np.float32)
            for s, c in zip(SIZES, CHANNELS)]


@pytest.mark.parametrize("activation", ["relu", None])
def test_fpn_model_matches_numpy(activation):
    model = build_fpn_model(CHANNELS, PYRAMID, activation=activation)
    features = _features()
    outputs = [o.numpy() for o in model(features)]
    expected = _numpy_fpn(model, features, relu=activation == "relu")
    for out, exp, size in zip(outputs, expected, SIZES + [1]):
        assert out.shape == (2, size, size, PYRAMID)
        np.testing.assert_allclose(out, exp, rtol=1e-4, atol=1e-4)
    if activation == "relu":
        assert all(out.min() >= 0 for out in outputs)
    else:
        assert any(out.min() < 0 for out in outputs)


def test_fpn_model_weight_order_matches_siamese_layout():
    expected = [tuple(w) for w in
                json.load(open(DATA / "siamese_small_layout.json"))["layers"]["fpn_model"]]
    model = build_fpn_model([256, 512, 1024, 2048], 256)
    assert [(f"{v.path}:0", list(v.shape)) for v in model.weights] == expected
    assert model.name == "fpn_model"
    assert [tuple(i.shape) for i in model.inputs] == [(None, None, None, c)
                                                      for c in (256, 512, 1024, 2048)]


def test_fpn_model_accepts_full_shapes():
    shapes = [(s, s, c) for s, c in zip(SIZES, CHANNELS)]
    model = build_fpn_model(shapes, PYRAMID, name="fpn_x")
    assert model.name == "fpn_x"
    assert [tuple(o.shape) for o in model.outputs] == [
        (None, s, s, PYRAMID) for s in SIZES + [1]]
    with pytest.raises(ValueError, match="4 shapes"):
        build_fpn_model(CHANNELS[:3], PYRAMID)
    with pytest.raises(ValueError, match=r"\[h, w, c\]"):
        build_fpn_model([(16, 4)] + shapes[1:], PYRAMID)


def test_fpn_graph_layer_names_match_matterport():
    inputs = [keras.Input((s, s, c)) for s, c in zip(SIZES, CHANNELS)]
    outputs = fpn_graph(*inputs, pyramid_size=PYRAMID)
    model = keras.Model(inputs, outputs)
    names = {layer.name for layer in model.layers}
    expected = {"fpn_c5p5", "fpn_c4p4", "fpn_c3p3", "fpn_c2p2",
                "fpn_p5upsampled", "fpn_p4upsampled", "fpn_p3upsampled",
                "fpn_p4add", "fpn_p3add", "fpn_p2add",
                "fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5", "fpn_p6"}
    assert expected <= names
    # Matterport's FPN is linear: no activation inside the convs.
    assert model.get_layer("fpn_p2").activation is keras.activations.linear
    assert model.get_layer("fpn_p6").pool_size == (1, 1)
    assert model.get_layer("fpn_p6").strides == (2, 2)


def test_fpn_graph_weights_match_mask_rcnn_coco_layout():
    layout = json.load(open(DATA / "matterport_coco_layout.json"))
    inputs = [keras.Input((None, None, c)) for c in (256, 512, 1024, 2048)]
    model = keras.Model(inputs, fpn_graph(*inputs, pyramid_size=256))
    ours = [layer for layer in model.layers if layer.weights]
    assert [layer.name for layer in ours] == [
        n for n in layout["layer_names"] if n.startswith("fpn_")]
    for layer in ours:
        assert [(f"{layer.name}/{v.name}:0", list(v.shape)) for v in layer.weights] == [
            tuple(w) for w in layout["layers"][layer.name]]
