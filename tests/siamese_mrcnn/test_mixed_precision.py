"""Mixed precision (mixed_float16): the graph runs and stays close to float32.

The proposal, ROI-align, target and detection layers and the losses compute in float32
whatever the policy; convolutions run in float16. Checked on CPU with a tiny model.
"""
import contextlib

import keras
import numpy as np
import pytest

from mrcnn import weights as weights_io
from siamese_mrcnn.config import config_from_overrides, preset
from siamese_mrcnn.model import SiameseMaskRCNN

TINY = dict(BACKBONE="resnet_tiny", IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=128, TARGET_MIN_DIM=48,
            TARGET_MAX_DIM=64, FPN_FEATUREMAPS=32, FPN_CLASSIF_FC_LAYERS_SIZE=64,
            MASK_HEAD_CONV_CHANNELS=32, MASK_POOL_SIZE=7, MASK_SHAPE=[14, 14],
            POST_NMS_ROIS_INFERENCE=50, IMAGES_PER_GPU=1)


@contextlib.contextmanager
def mixed_precision():
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.fixture
def mixed_policy():
    with mixed_precision():
        yield


def _models(tmp_path):
    """(float32 model, mixed_float16 model) with the same weights."""
    config = config_from_overrides(preset("small_eval"), TINY)
    reference = SiameseMaskRCNN("inference", config, str(tmp_path))
    with mixed_precision():
        half = SiameseMaskRCNN("inference", config, str(tmp_path))
    source = weights_io.weight_map(reference.keras_model)
    for key, variable in weights_io.weight_map(half.keras_model).items():
        variable.assign(source[key].value)
    return reference, half


def test_mixed_precision_inference_matches_float32(tmp_path):
    full, half = _models(tmp_path)
    assert half.inner_model.get_layer("fpn_distance_P2").compute_dtype == "float16"
    assert half.inner_model.get_layer("ROI").compute_dtype == "float32"
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    reference = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
    outputs = {}
    for name, model in (("full", full), ("half", half)):
        graph = model.inner_model
        outputs[name] = model.run_graph([image], [
            ("rpn_class", graph.get_layer("rpn_class").output),
            ("proposals", graph.get_layer("ROI").output),
            ("mrcnn_class", graph.get_layer("mrcnn_class").output),
        ], targets=[[reference]])
    # The dense part agrees within float16 precision. Later stages are not compared
    # position by position: near-equal proposal scores may swap in float16.
    np.testing.assert_allclose(outputs["half"]["rpn_class"].astype(np.float32),
                               outputs["full"]["rpn_class"], atol=2e-2)
    assert outputs["half"]["proposals"].dtype == np.float32
    # Detections run end to end under the policy.
    result = half.detect([[reference]], [image])[0]
    assert result["masks"].shape[:2] == (128, 128)


def test_mixed_precision_training_step_is_finite(tmp_path, mixed_policy):
    config = config_from_overrides(preset("small"), dict(
        TINY, IMAGES_PER_GPU=1, POST_NMS_ROIS_TRAINING=50, TRAIN_ROIS_PER_IMAGE=16,
        RPN_TRAIN_ANCHORS_PER_IMAGE=32, MAX_GT_INSTANCES=4))
    model = SiameseMaskRCNN("training", config, str(tmp_path))
    model.compile(0.01, 0.9)
    assert type(model.keras_model.optimizer).__name__ == "LossScaleOptimizer"
    rng = np.random.default_rng(0)
    anchors = model.get_anchors(config.IMAGE_SHAPE)
    rpn_match = np.zeros((1, len(anchors), 1), np.int32)
    rpn_match[0, :16] = -1
    rpn_match[0, 16:20] = 1
    batch = [
        rng.normal(size=(1, 128, 128, 3)).astype(np.float32),
        np.concatenate([[0, 128, 128, 3, 128, 128, 3, 0, 0, 128, 128, 1], [1, 1]])[None]
        .astype(np.float32),
        rng.normal(size=(1, 1, 64, 64, 3)).astype(np.float32),
        rpn_match,
        np.zeros((1, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), np.float32),
        np.array([[1, 0, 0, 0]], np.int32),
        np.array([[[20, 20, 60, 70], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32),
        np.ones((1,) + tuple(config.MINI_MASK_SHAPE) + (4,), np.uint8),
    ]
    before = {k: np.array(v.value) for k, v in weights_io.weight_map(model.keras_model).items()}
    logs = model.keras_model.train_on_batch(batch, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values()), logs
    after = weights_io.weight_map(model.keras_model)
    # The loss scale is undone before the update: the step stays SGD-sized.
    change = max(float(np.max(np.abs(np.array(after[k].value) - before[k]))) for k in before)
    assert 0 < change < 1.0
