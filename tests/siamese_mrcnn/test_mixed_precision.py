"""Mixed precision (mixed_float16): the graph runs and stays close to float32.

The proposal, ROI-align, target and detection layers and the losses compute in float32
whatever the policy; convolutions run in float16. Checked on CPU with a tiny model.
"""
import contextlib

import keras
import numpy as np
import pytest

from mrcnn import weights as weights_io
from mrcnn.graph_layers import LossLayer
from mrcnn.layers import BatchNorm
from mrcnn.training import LossModel
from tests.helpers.distributed import copy_weights
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
    copy_weights(reference.keras_model, half.keras_model)
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


def _small_training_graph(policy: str) -> LossModel:
    """A few layers of the real training graph: conv, frozen BatchNorm, conv and the RPN
    heads (in the policy's compute dtype), the RPN losses as the model's LossLayers
    (float32), in a LossModel compiled as MaskRCNN.compile does (SGD with momentum and a
    global clip norm). Small on purpose: float16 gradients of a whole model run on kernels
    whose speed depends on the host CPU (about 100x float32 on some), which is the
    benchmark's concern, not a test's."""
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        image = keras.Input((32, 32, 3), name="input_image")
        match = keras.Input((None, 1), name="input_rpn_match", dtype="int32")
        target = keras.Input((None, 4), name="input_rpn_bbox")
        x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(image)
        x = BatchNorm(name="bn_conv1")(x, training=False)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                                name="rpn_conv_shared")(x)                  # [B, 16, 16, 8]
        logits = keras.layers.Reshape((-1, 2))(
            keras.layers.Conv2D(2, 1, name="rpn_class_raw")(x))            # [B, 256, 2]
        deltas = keras.layers.Reshape((-1, 4))(
            keras.layers.Conv2D(4, 1, name="rpn_bbox_pred")(x))            # [B, 256, 4]
        losses = [
            LossLayer("rpn_class_loss_graph", name="rpn_class_loss")([match, logits]),
            LossLayer("rpn_bbox_loss_graph", leading_args=[2],
                      name="rpn_bbox_loss")([target, match, deltas])]
        model = LossModel([image, match, target], [logits] + losses,
                          loss_names=["rpn_class_loss", "rpn_bbox_loss"], weight_decay=1e-4)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, global_clipnorm=5.0),
                      jit_compile=False)
        return model
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _rpn_batch(rng: np.random.Generator) -> list[np.ndarray]:
    """2 images; per image 8 positive and 64 negative anchors of 256, 16 target rows."""
    images = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    match = np.zeros((2, 256, 1), np.int32)
    target = np.zeros((2, 16, 4), np.float32)
    for i in range(2):
        order = rng.permutation(256)
        match[i, order[:8], 0] = 1
        match[i, order[8:72], 0] = -1
        target[i, :8] = 0.5 * rng.normal(size=(8, 4))
    return [images, match, target]


def test_mixed_precision_training_follows_float32_on_a_small_graph():
    full, half = _small_training_graph("float32"), _small_training_graph("mixed_float16")
    # float16 compute, float32 variables and losses, and loss scaling in the optimizer.
    assert type(half.optimizer).__name__ == "LossScaleOptimizer"
    assert type(full.optimizer).__name__ == "SGD"
    assert half.get_layer("conv1").compute_dtype == "float16"
    assert half.get_layer("conv1").kernel.dtype == "float32"
    assert half.get_layer("rpn_bbox_loss").compute_dtype == "float32"
    copy_weights(full, half)
    batch = _rpn_batch(np.random.default_rng(0))
    losses = {name: [float(model.train_on_batch(batch, return_dict=True)["loss"])
                     for _ in range(8)]
              for name, model in (("float32", full), ("mixed_float16", half))}
    assert all(np.isfinite(v) for v in losses["mixed_float16"]), losses
    # Measured: the two curves agree within 3e-4 over 8 steps (losses 0.81 -> 0.44).
    np.testing.assert_allclose(losses["mixed_float16"], losses["float32"], rtol=1e-2)
    assert losses["mixed_float16"][-1] < 0.7 * losses["mixed_float16"][0], losses
    # No step was skipped, and the loss scale (2^15) was undone before each update:
    # the weights are where float32 SGD put them, not 32768 steps away.
    assert int(half.optimizer.iterations) == 8
    after = weights_io.weight_map(half)
    for key, variable in weights_io.weight_map(full).items():
        np.testing.assert_allclose(np.array(after[key].value), np.array(variable.value),
                                   atol=2e-3, err_msg=key)


def test_mixed_precision_training_model_compiles_with_loss_scaling(tmp_path, mixed_policy):
    # The whole training graph under the policy: built, compiled with a loss-scaling
    # optimizer, float16 convolutions and float32 proposal/ROI/loss layers. Its training
    # step is the small graph's (above); a whole-model float16 step is benchmark work.
    config = config_from_overrides(preset("small"), dict(
        TINY, IMAGES_PER_GPU=1, POST_NMS_ROIS_TRAINING=50, TRAIN_ROIS_PER_IMAGE=16,
        RPN_TRAIN_ANCHORS_PER_IMAGE=32, MAX_GT_INSTANCES=4))
    model = SiameseMaskRCNN("training", config, str(tmp_path))
    model.compile(0.01, 0.9)
    graph = model.keras_model
    assert type(graph.optimizer).__name__ == "LossScaleOptimizer"
    assert graph.optimizer.built
    assert graph.get_layer("fpn_distance_P2").compute_dtype == "float16"
    assert graph.get_layer("mrcnn_mask_conv1").compute_dtype == "float16"
    for name in ("ROI", "proposal_targets", "rpn_class_loss", "mrcnn_mask_loss"):
        assert graph.get_layer(name).compute_dtype == "float32", name
    assert all(v.dtype == "float32" for v in graph.trainable_variables)
