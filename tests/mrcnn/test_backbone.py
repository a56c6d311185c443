"""Tests for mrcnn.backbone: layer names, weight layouts of the released files, shapes."""
import json
import math
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from mrcnn.backbone import (
    RESNET_ARCHITECTURES,
    build_resnet_model,
    compute_backbone_shapes,
    feature_channels,
    resnet_graph,
)
from mrcnn.layers import BatchNorm

DATA = Path(__file__).resolve().parents[1] / "data"
BACKBONE_PREFIXES = ("conv1", "bn_conv1", "res", "bn")


def _layout(name: str) -> dict:
    with open(DATA / name) as f:
        return json.load(f)


def _weight_list(layer) -> list:
    """[(Keras-2 style weight name, shape)] of a layer, in its own order."""
    return [(f"{layer.name}/{v.name}:0", list(v.shape)) for v in layer.weights]


def _resnet_model(architecture: str, train_bn: bool = False) -> keras.Model:
    image = keras.Input((None, None, 3))
    C1, C2, C3, C4, C5 = resnet_graph(image, architecture, stage5=True, train_bn=train_bn)
    return keras.Model(image, [C1, C2, C3, C4, C5])


def test_architectures_match_the_project_table():
    assert RESNET_ARCHITECTURES["resnet50"] == (3, 4, 6, 3)
    assert RESNET_ARCHITECTURES["resnet101"] == (3, 4, 23, 3)
    assert RESNET_ARCHITECTURES["resnet_tiny"] == (1, 1, 1, 1)
    assert feature_channels("resnet50") == [256, 512, 1024, 2048]
    assert feature_channels("resnet_tiny") == [64, 128, 256, 512]


def test_resnet101_matches_mask_rcnn_coco_layout():
    """Every backbone group of mask_rcnn_coco.h5: same layers, order, weight names, shapes."""
    layout = _layout("matterport_coco_layout.json")
    model = _resnet_model("resnet101")
    ours = [layer for layer in model.layers if layer.weights]
    expected_names = [n for n in layout["layer_names"] if n.startswith(BACKBONE_PREFIXES)]
    assert [layer.name for layer in ours] == expected_names
    assert len(expected_names) == 208
    for layer in ours:
        assert _weight_list(layer) == [tuple(w) for w in layout["layers"][layer.name]], \
            layer.name
    assert "res4w_branch2c" in expected_names and "res4x_branch2a" not in expected_names


def test_resnet50_nested_model_matches_siamese_resnet_model_group():
    """The nested resnet_model group lists trainable weights first (Keras 2 order)."""
    expected = [tuple(w) for w in _layout("siamese_small_layout.json")["layers"]["resnet_model"]]
    model = build_resnet_model((None, None, 3), "resnet50", train_bn=False)
    weights = model.trainable_weights + model.non_trainable_weights
    assert [(f"{v.path}:0", list(v.shape)) for v in weights] == expected
    assert model.name == "resnet_model"
    assert model.get_layer("conv1").name == "conv1"  # unprefixed inner names
    assert model.get_layer("res4f_branch2c") is not None
    with pytest.raises(ValueError):
        model.get_layer("res4g_branch2a")


@pytest.mark.parametrize("size", [64, 128])
def test_resnet_tiny_output_shapes(size):
    model = _resnet_model("resnet_tiny")
    image = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    outputs = model(image)
    expected_channels = [16, 64, 128, 256, 512]
    strides = [4, 4, 8, 16, 32]
    for out, stride, channels in zip(outputs, strides, expected_channels):
        assert tuple(out.shape) == (2, size // stride, size // stride, channels)
    # ReLU outputs of every stage
    assert all(float(np.min(out)) >= 0 for out in outputs)


def test_resnet_tiny_layer_names_and_widths():
    model = _resnet_model("resnet_tiny")
    shapes = {layer.name: [tuple(v.shape) for v in layer.weights]
              for layer in model.layers if layer.weights}
    assert shapes["conv1"] == [(7, 7, 3, 16), (16,)]
    assert shapes["res2a_branch2a"] == [(1, 1, 16, 16), (16,)]
    assert shapes["res2a_branch1"] == [(1, 1, 16, 64), (64,)]
    assert shapes["res5a_branch2c"] == [(1, 1, 128, 512), (512,)]
    assert shapes["bn5a_branch1"] == [(512,)] * 4
    # One conv block per stage, no identity blocks.
    assert not any(name.startswith(("res2b", "res3b", "res4b", "res5b")) for name in shapes)
    assert len(shapes) == 2 + 4 * 8


def test_stage5_false_returns_no_c5():
    image = keras.Input((64, 64, 3))
    C1, C2, C3, C4, C5 = resnet_graph(image, "resnet_tiny", stage5=False)
    assert C5 is None
    assert tuple(C4.shape) == (None, 4, 4, 256)


@pytest.mark.parametrize("train_bn", [True, False])
def test_train_bn_controls_frozen_batchnorm(train_bn):
    model = _resnet_model("resnet_tiny", train_bn=train_bn)
    bns = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert len(bns) == 1 + 4 * 4
    assert all(bn.frozen is (not train_bn) for bn in bns)


def test_build_resnet_model_shares_weights_between_calls():
    resnet = build_resnet_model((None, None, 3), "resnet_tiny")
    assert len(resnet.outputs) == 4
    a = keras.Input((64, 64, 3))
    b = keras.Input((32, 32, 3))
    outer = keras.Model([a, b], resnet(a) + resnet(b))
    assert len(outer.weights) == len(resnet.weights)
    image = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype(np.float32)
    outs = outer([image, image[:, :32, :32]])
    np.testing.assert_allclose(outs[0].numpy(), resnet(image)[0].numpy(), rtol=1e-5,
                               atol=1e-5)
    assert tuple(outs[7].shape) == (1, 1, 1, 512)


def test_bad_architecture_and_shapes_raise():
    image = keras.Input((64, 64, 3))
    with pytest.raises(ValueError, match="resnet50"):
        resnet_graph(image, "resnet18")
    with pytest.raises(ValueError, match="input_shape"):
        build_resnet_model((64, 64), "resnet_tiny")


def test_compute_backbone_shapes():
    config = SimpleNamespace(BACKBONE="resnet_tiny", BACKBONE_STRIDES=[4, 8, 16, 32, 64],
                             COMPUTE_BACKBONE_SHAPE=None)
    shapes = compute_backbone_shapes(config, (100, 130, 3))
    expected = [[math.ceil(100 / s), math.ceil(130 / s)] for s in (4, 8, 16, 32, 64)]
    np.testing.assert_array_equal(shapes, expected)
    assert expected == [[25, 33], [13, 17], [7, 9], [4, 5], [2, 3]]

    config.BACKBONE = "resnet101"
    np.testing.assert_array_equal(compute_backbone_shapes(config, (1024, 1024, 3)),
                                  [[256, 256], [128, 128], [64, 64], [32, 32], [16, 16]])

    custom = SimpleNamespace(BACKBONE=lambda image: None,
                             COMPUTE_BACKBONE_SHAPE=lambda shape: np.array([[shape[0], 7]]))
    np.testing.assert_array_equal(compute_backbone_shapes(custom, (64, 64, 3)), [[64, 7]])

    config.BACKBONE = "vgg16"
    with pytest.raises(ValueError, match="vgg16"):
        compute_backbone_shapes(config, (64, 64, 3))
