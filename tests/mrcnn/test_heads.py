"""Tests for mrcnn.heads: weight layouts of the released files, shapes, numbers vs numpy."""
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from mrcnn.data import compose_image_meta
from mrcnn.heads import build_fpn_mask_graph, fpn_classifier_graph
from mrcnn.layers import BatchNorm, TimeDistributed

DATA = Path(__file__).resolve().parents[1] / "data"
IMAGE = 64
LEVEL_SIZES = [16, 8, 4, 2]  # P2..P5 of a 64 px image
EPS = 1e-3


def _inputs(num_classes: int, channels: int, static_sizes: bool = True) -> list:
    rois = keras.Input((None, 4), name="rois")
    meta = keras.Input((12 + num_classes,), name="image_meta")
    maps = [keras.Input((s if static_sizes else None, s if static_sizes else None, channels),
                        name=f"P{level}")
            for level, s in zip(range(2, 6), LEVEL_SIZES)]
    return [rois, meta] + maps


def _heads_model(num_classes: int, channels: int, fc: int = 16, pool: int = 7,
                 mask_pool: int = 14, train_bn: bool = True, siamese: bool = False,
                 static_sizes: bool = True) -> keras.Model:
    inputs = _inputs(num_classes, channels, static_sizes)
    rois, meta, maps = inputs[0], inputs[1], inputs[2:]
    logits, probs, bbox = fpn_classifier_graph(
        rois, maps, meta, pool, num_classes, train_bn=train_bn, fc_layers_size=fc,
        class_agnostic_bbox=siamese)
    masks = build_fpn_mask_graph(rois, maps, meta, mask_pool, num_classes, train_bn=train_bn,
                                 mask_channels=1 if siamese else None)
    return keras.Model(inputs, [logits, probs, bbox, masks])


def _expected_heads(layout_file: str) -> dict:
    with open(DATA / layout_file) as f:
        layout = json.load(f)
    return {name: [tuple(w) for w in layout["layers"][name]]
            for name in layout["layer_names"] if name.startswith("mrcnn_")}


def _our_weights(model: keras.Model) -> dict:
    return {layer.name: [(f"{layer.name}/{v.name}:0", list(v.shape)) for v in layer.weights]
            for layer in model.layers if layer.weights}


def _sample_inputs(num_classes: int, channels: int, batch: int, num_rois: int) -> list:
    rng = np.random.default_rng(0)
    y1x1 = rng.uniform(0, 0.6, size=(batch, num_rois, 2))
    hw = rng.uniform(0.1, 0.4, size=(batch, num_rois, 2))
    rois = np.concatenate([y1x1, y1x1 + hw], axis=-1).astype(np.float32)
    meta = compose_image_meta(0, (IMAGE, IMAGE, 3), (IMAGE, IMAGE, 3), (0, 0, IMAGE, IMAGE),
                              1.0, np.ones(num_classes))
    metas = np.repeat(meta[None].astype(np.float32), batch, axis=0)
    maps = [rng.normal(size=(batch, s, s, channels)).astype(np.float32) for s in LEVEL_SIZES]
    return [rois, metas] + maps


def test_matterport_heads_match_mask_rcnn_coco_layout():
    model = _heads_model(num_classes=81, channels=256, fc=1024)
    assert _our_weights(model) == _expected_heads("matterport_coco_layout.json")


@pytest.mark.parametrize("layout, fc", [("siamese_small_layout.json", 512),
                                        ("siamese_large_layout.json", 1024)])
def test_siamese_heads_match_released_layouts(layout, fc):
    model = _heads_model(num_classes=2, channels=384, fc=fc, siamese=True,
                         static_sizes=False)
    assert _our_weights(model) == _expected_heads(layout)


@pytest.mark.parametrize("batch, num_rois", [(2, 4), (1, 6)])
def test_head_output_shapes_and_consistency(batch, num_rois):
    num_classes, channels = 3, 8
    model = _heads_model(num_classes, channels)
    logits, probs, bbox, masks = (o.numpy() for o in model(
        _sample_inputs(num_classes, channels, batch, num_rois)))
    assert logits.shape == (batch, num_rois, num_classes)
    assert probs.shape == (batch, num_rois, num_classes)
    assert bbox.shape == (batch, num_rois, num_classes, 4)
    assert masks.shape == (batch, num_rois, 28, 28, num_classes)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, exp / exp.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert masks.min() >= 0 and masks.max() <= 1


def test_classifier_head_matches_numpy():
    """Frozen BN head: pooled crop -> conv1 (FC) -> BN -> ReLU -> conv2 -> BN -> ReLU -> dense."""
    num_classes, channels, fc = 3, 8, 6
    model = _heads_model(num_classes, channels, fc=fc, train_bn=False)
    rng = np.random.default_rng(3)
    for name in ("mrcnn_class_bn1", "mrcnn_class_bn2"):
        bn = model.get_layer(name).layer
        bn.moving_mean.assign(rng.normal(size=fc).astype(np.float32))
        bn.moving_variance.assign(rng.uniform(0.5, 2, size=fc).astype(np.float32))
        bn.gamma.assign(rng.uniform(0.5, 1.5, size=fc).astype(np.float32))
        bn.beta.assign(rng.normal(size=fc).astype(np.float32))
    probe = keras.Model(model.inputs, [model.get_layer("roi_align_classifier").output]
                        + model.outputs)
    pooled, logits, _, bbox, _ = (o.numpy() for o in probe(
        _sample_inputs(num_classes, channels, 2, 4), training=True))

    def weights(name):
        return [v.numpy().astype(np.float64) for v in model.get_layer(name).weights]

    def bn(x, name):
        gamma, beta, mean, var = weights(name)
        return gamma * (x - mean) / np.sqrt(var + EPS) + beta

    kernel1, bias1 = weights("mrcnn_class_conv1")  # [7, 7, C, fc]
    x = np.einsum("brhwc,hwcd->brd", pooled, kernel1) + bias1
    x = np.maximum(bn(x, "mrcnn_class_bn1"), 0)
    kernel2, bias2 = weights("mrcnn_class_conv2")  # [1, 1, fc, fc]
    x = np.maximum(bn(x @ kernel2[0, 0] + bias2, "mrcnn_class_bn2"), 0)
    kernel, bias = weights("mrcnn_class_logits")
    np.testing.assert_allclose(logits, x @ kernel + bias, rtol=1e-4, atol=1e-4)
    kernel, bias = weights("mrcnn_bbox_fc")
    expected_bbox = (x @ kernel + bias).reshape(2, 4, num_classes, 4)
    np.testing.assert_allclose(bbox, expected_bbox, rtol=1e-4, atol=1e-4)


def test_siamese_heads_repeat_box_and_mask_for_every_class():
    num_classes, channels = 2, 8
    model = _heads_model(num_classes, channels, siamese=True)
    _, _, bbox, masks = (o.numpy() for o in model(
        _sample_inputs(num_classes, channels, 2, 3)))
    assert bbox.shape == (2, 3, 2, 4) and masks.shape == (2, 3, 28, 28, 2)
    np.testing.assert_array_equal(bbox[:, :, 0], bbox[:, :, 1])
    np.testing.assert_array_equal(masks[..., 0], masks[..., 1])
    assert model.get_layer("mrcnn_bbox_fc").layer.units == 4
    assert model.get_layer("mrcnn_mask").layer.filters == 1


@pytest.mark.parametrize("train_bn", [True, False])
def test_head_batchnorms_follow_train_bn(train_bn):
    model = _heads_model(3, 8, train_bn=train_bn)
    names = [layer.name for layer in model.layers
             if isinstance(layer, TimeDistributed) and isinstance(layer.layer, BatchNorm)]
    assert sorted(names) == ["mrcnn_class_bn1", "mrcnn_class_bn2", "mrcnn_mask_bn1",
                             "mrcnn_mask_bn2", "mrcnn_mask_bn3", "mrcnn_mask_bn4"]
    assert all(model.get_layer(n).layer.frozen is (not train_bn) for n in names)


def test_head_layer_names():
    model = _heads_model(3, 8)
    names = {layer.name for layer in model.layers}
    assert {"roi_align_classifier", "roi_align_mask", "pool_squeeze", "mrcnn_class",
            "mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask_deconv",
            "mrcnn_mask"} <= names
    deconv = model.get_layer("mrcnn_mask_deconv").layer
    assert isinstance(deconv, keras.layers.Conv2DTranspose) and deconv.strides == (2, 2)
    assert model.get_layer("mrcnn_mask").layer.activation is keras.activations.sigmoid


def test_bad_mask_channels_raise():
    inputs = _inputs(3, 8)
    with pytest.raises(ValueError, match="mask_channels"):
        build_fpn_mask_graph(inputs[0], inputs[2:], inputs[1], 14, 3, mask_channels=2)
