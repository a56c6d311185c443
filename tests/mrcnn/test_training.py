"""Tests for MaskRCNN.train and mrcnn.training: layer presets, frozen BatchNorm, loss
logging and weighting, weight decay, checkpoints and resuming, and a learning test.

Every ``train()`` call compiles and traces the training step (seconds on CPU), so the
fixtures run a few training stages once and the tests inspect what they recorded.
"""
import os
import re
import shutil
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import model as modellib
from mrcnn import utils
from mrcnn import weights as weights_io
from mrcnn.training import LAYER_REGEX, LossModel, check_layer_regex, weight_decay_loss
from tests.helpers.shapes_dataset import ShapesDataset, ShapeSpec, tiny_config

LOSS_NAMES = ["rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss"]
LOGGED = ["loss", *LOSS_NAMES, "l2_loss"]
BN_STATS = ("moving_mean", "moving_variance")


def _snapshot(model: keras.Model) -> dict:
    """{weight key ("layer/var"): numpy copy} of every variable."""
    return {k: np.array(v.numpy()) for k, v in weights_io.weight_map(model).items()}


def _changed(before: dict, after: dict) -> set:
    return {k for k in before if not np.array_equal(before[k], after[k])}


def _layer(key: str) -> str:
    return key.split("/")[0]


def _numpy_weight_decay(values: dict, keys, weight_decay: float) -> float:
    """Matterport's L2 term computed independently: sum over the given weights, BN
    gamma/beta excluded, of WEIGHT_DECAY * sum(w^2) / size(w)."""
    return sum(weight_decay * np.sum(np.square(values[k].astype(np.float64))) / values[k].size
               for k in keys if k.rsplit("/", 1)[1] not in ("gamma", "beta"))


def _assert_total_is_sum(history: keras.callbacks.History) -> None:
    """Logged loss == sum of the logged (weighted) components + l2, every epoch."""
    h = history.history
    for epoch in range(len(h["loss"])):
        parts = sum(h[name][epoch] for name in LOSS_NAMES) + h["l2_loss"][epoch]
        assert h["loss"][epoch] == pytest.approx(parts, rel=1e-5, abs=1e-6)


############################################################
#  Two training stages on one model (heads, then all), resumed from a checkpoint name
############################################################

@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """Stage 1 'heads' for epoch 1; the checkpoint is copied to a file named like a
    run's epoch-3 checkpoint and loaded; stage 2 'all' with epochs=4 then runs epoch 4.
    One step per epoch, TRAIN_BN False, one validation step."""
    model_dir = str(tmp_path_factory.mktemp("stages"))
    keras.utils.set_random_seed(0)
    config = tiny_config(STEPS_PER_EPOCH=1, VALIDATION_STEPS=1, TRAIN_BN=False)
    dataset = ShapesDataset.generate(count=4, seed=1)
    model = modellib.MaskRCNN("training", config, model_dir)
    s = types.SimpleNamespace(model=model, config=config, model_dir=model_dir)
    s.first_log_dir = model.log_dir
    s.before = _snapshot(model.keras_model)
    s.history1 = model.train(dataset, dataset, learning_rate=0.01, epochs=1, layers="heads")
    s.trainable1 = [e for e in weights_io.weight_entries(model.keras_model)
                    if any(e.variable is t for t in model.keras_model.trainable_variables)]
    s.after1 = _snapshot(model.keras_model)
    s.checkpoint1 = os.path.join(s.first_log_dir, "mask_rcnn_tiny_0001.h5")

    s.resume_dir = os.path.join(model_dir, "tiny20240101T1200")
    s.resume_path = os.path.join(s.resume_dir, "mask_rcnn_tiny_0003.h5")
    os.makedirs(s.resume_dir)
    shutil.copy(s.checkpoint1, s.resume_path)
    model.load_weights(s.resume_path, by_name=True)
    s.epoch_after_load = model.epoch
    s.history2 = model.train(dataset, dataset, learning_rate=0.01, epochs=4, layers="all")
    s.trainable2 = [e.key for e in weights_io.weight_entries(model.keras_model)
                    if any(e.variable is t for t in model.keras_model.trainable_variables)]
    s.after2 = _snapshot(model.keras_model)
    return s


def test_heads_stage_trains_only_heads(stages):
    heads = LAYER_REGEX["heads"]
    trainable_layers = {e.leaf for e in stages.trainable1}
    assert trainable_layers, "nothing was trainable in the heads stage"
    assert all(re.fullmatch(heads, name) for name in trainable_layers)
    # Every weighted layer of the heads (nested rpn_model included) was trainable.
    for key in stages.before:
        if re.fullmatch(heads, _layer(key)):
            assert _layer(key) in trainable_layers, key
    changed = _changed(stages.before, stages.after1)
    assert {_layer(k) for k in changed} <= trainable_layers
    assert not [k for k in changed if re.match(r"(res|bn)\d|conv1|bn_conv1", k)]
    # The RPN, the FPN and the heads all moved.
    for prefix in ("rpn_conv_shared", "rpn_class_raw", "fpn_c5p5", "fpn_p2",
                   "mrcnn_class_logits", "mrcnn_class_conv1"):
        assert any(_layer(k) == prefix for k in changed), prefix


def test_all_stage_trains_backbone_but_frozen_bn_statistics_stay(stages):
    changed = _changed(stages.after1, stages.after2)
    assert "conv1/kernel" in changed and "res2a_branch2a/kernel" in changed
    # BN gamma/beta are trained with 'all'; the moving statistics never are (TRAIN_BN
    # False), neither in the backbone nor in the heads, in either stage.
    assert any(k.endswith("/gamma") and k.startswith("bn") for k in changed)
    stats = [k for k in stages.before if k.rsplit("/", 1)[1] in BN_STATS]
    # resnet_tiny: 4 stages x 4 BN + bn_conv1; classifier 2 BN; mask head 4 BN.
    assert len(stats) == 2 * (4 * 4 + 1 + 2 + 4)
    assert not _changed({k: stages.before[k] for k in stats}, stages.after2)
    assert "rpn_conv_shared/kernel" in stages.trainable2
    assert not [k for k in stages.trainable2 if k.rsplit("/", 1)[1] in BN_STATS]


def test_each_loss_logged_once_per_epoch_in_both_stages(stages):
    for history in (stages.history1, stages.history2):
        expected = set(LOGGED) | {f"val_{name}" for name in LOGGED}
        assert set(history.history) == expected
        assert all(len(values) == 1 for values in history.history.values())
        assert all(np.isfinite(v[0]) for v in history.history.values())
        assert history.history["rpn_class_loss"][0] > 0
        _assert_total_is_sum(history)


def test_weight_decay_matches_numpy_formula(stages):
    """With one step per epoch, the logged l2_loss is the term at the stage's start."""
    wd = stages.config.WEIGHT_DECAY
    keys1 = [e.key for e in stages.trainable1]
    expected1 = _numpy_weight_decay(stages.before, keys1, wd)
    assert stages.history1.history["l2_loss"][0] == pytest.approx(expected1, rel=1e-5)
    # Weights were loaded from the stage-1 checkpoint: identical to after1.
    expected2 = _numpy_weight_decay(stages.after1, stages.trainable2, wd)
    assert stages.history2.history["l2_loss"][0] == pytest.approx(expected2, rel=1e-5)
    assert expected2 > expected1 > 0  # 'all' adds the backbone's weights


def test_training_checkpoint_loads_into_inference_model(stages):
    assert os.path.isfile(stages.checkpoint1)
    inference = modellib.MaskRCNN("inference", stages.config, stages.model_dir)
    report = inference.load_weights(stages.checkpoint1, by_name=True)
    loaded = _snapshot(inference.keras_model)
    assert sorted(report.loaded) == sorted(loaded)
    assert report.missing_in_file == [] and report.mismatched == []
    unequal = [k for k, v in loaded.items() if not np.array_equal(v, stages.after1[k])]
    assert unequal == []
    # The checkpoint written at the end of the resumed stage holds the final weights.
    final = os.path.join(stages.resume_dir, "mask_rcnn_tiny_0004.h5")
    inference.load_weights(final, by_name=True)
    assert inference.epoch == 4
    loaded = _snapshot(inference.keras_model)
    assert not [k for k, v in loaded.items() if not np.array_equal(v, stages.after2[k])]


def test_resume_continues_at_the_checkpoint_epoch(stages):
    model = stages.model
    assert stages.epoch_after_load == 3
    assert stages.history2.epoch == [3]  # 0-based: the 4th epoch only
    assert model.log_dir == stages.resume_dir
    checkpoints = sorted(f for f in os.listdir(stages.resume_dir) if f.endswith(".h5"))
    assert checkpoints == ["mask_rcnn_tiny_0003.h5", "mask_rcnn_tiny_0004.h5"]
    assert model.epoch == 4
    # Asking again for epoch 4 trains nothing.
    dataset = ShapesDataset.generate(count=1, seed=2)
    assert model.train(dataset, dataset, 0.01, epochs=4, layers="all") is None
    # find_last picks the newest run directory by name (the first stage's, dated now).
    assert model.find_last() == stages.checkpoint1


@pytest.mark.parametrize("layers, learning_rate, message", [
    # A typo of "heads" selected nothing; Keras then failed in its optimizer with
    # "not enough values to unpack (expected 2, got 0)".
    ("head", 0.01, "layers='head' selects no layer to train: expected one of 'heads', "
                   "'3+', '4+', '5+', 'all' or a regular expression"),
    ("(mrcnn", 0.01, "layers='(mrcnn': not a valid regular expression (missing ), "),
    ("heads", -0.01, "learning_rate: expected a finite number >= 0, got -0.01"),
    ("heads", float("nan"), "learning_rate: expected a finite number >= 0, got nan"),
    ("heads", np.float32(-0.5), "learning_rate: expected a finite number >= 0, got "
                                "np.float32(-0.5)"),
])
def test_train_names_bad_layers_or_rate_before_any_work(stages, layers, learning_rate,
                                                         message):
    model = stages.model
    files = sorted(os.listdir(model.log_dir))
    trainable = [w.path for w in model.keras_model.trainable_weights]
    with pytest.raises(ValueError) as caught:
        model.train(ShapesDataset.generate(count=1, seed=2), None, learning_rate,
                    epochs=6, layers=layers)
    assert str(caught.value).startswith(message), caught.value
    assert model.epoch == 4 and sorted(os.listdir(model.log_dir)) == files
    assert [w.path for w in model.keras_model.trainable_weights] == trainable


def test_check_layer_regex_walks_nested_models_and_skips_layers_without_weights():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="rpn_dense")],
                             name="rpn_model")
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(1, name="mrcnn_out")(
        keras.layers.Activation("relu", name="res5_relu")(inner(inputs)))
    model = keras.Model(inputs, outputs)
    check_layer_regex(model, r"rpn\_.*", "rpn")  # a nested model's layer
    check_layer_regex(model, LAYER_REGEX["heads"], "heads")
    with pytest.raises(ValueError, match=r"layers='res5.\*' selects no layer to train: "
                                         r"expected one of 'a', 'b' or"):
        check_layer_regex(model, r"res5.*", "res5.*", presets=("a", "b"))  # no weights
    with pytest.raises(ValueError, match="layers='rpn' selects no layer"):
        check_layer_regex(model, "rpn", "rpn")  # a full match: 'rpn' is not 'rpn_dense'


############################################################
#  Trained BatchNorm, loss weights, no validation
############################################################

LOSS_WEIGHTS_ZEROED = dict(rpn_class_loss=0.0, rpn_bbox_loss=1.0, mrcnn_class_loss=1.0,
                           mrcnn_bbox_loss=1.0, mrcnn_mask_loss=0.0)


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    """5 steps, 'all', TRAIN_BN True, two loss weights 0, no validation."""
    keras.utils.set_random_seed(0)
    config = tiny_config(STEPS_PER_EPOCH=5, VALIDATION_STEPS=0, TRAIN_BN=True,
                         LOSS_WEIGHTS=LOSS_WEIGHTS_ZEROED)
    model = modellib.MaskRCNN("training", config, str(tmp_path_factory.mktemp("bn")))
    dataset = ShapesDataset.generate(count=4, seed=3)
    before = _snapshot(model.keras_model)
    traces = []
    train_step = LossModel.train_step

    def counting_train_step(self, data):
        traces.append(1)  # Python runs only while tf.function traces
        return train_step(self, data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LossModel, "train_step", counting_train_step)
        history = model.train(dataset, None, 0.01, epochs=1, layers="all")
    return types.SimpleNamespace(model=model, before=before, history=history,
                                 after=_snapshot(model.keras_model), traces=len(traces))


def test_train_bn_true_updates_statistics(bn_run):
    changed = _changed(bn_run.before, bn_run.after)
    stats = [k for k in bn_run.before if k.rsplit("/", 1)[1] in BN_STATS]
    assert {"bn_conv1/moving_mean", "bn_conv1/moving_variance",
            "bn5a_branch2c/moving_mean", "mrcnn_class_bn1/moving_mean"} <= changed
    assert len(set(stats) & changed) > len(stats) // 2


def test_training_step_is_traced_once(bn_run):
    # The optimizer's slots exist before fit, so tf.function does not trace twice.
    assert bn_run.traces == 1
    assert bn_run.model.keras_model.optimizer.built


def test_loss_weights_scale_logged_components(bn_run):
    assert bn_run.model.keras_model.loss_weights == LOSS_WEIGHTS_ZEROED
    h = bn_run.history.history
    # No validation data: no val_ logs.
    assert set(h) == set(LOGGED)
    # Weight 0: logged as 0 (the RPN class loss itself is never 0).
    assert h["rpn_class_loss"] == [0.0] and h["mrcnn_mask_loss"] == [0.0]
    assert h["rpn_bbox_loss"][0] > 0
    _assert_total_is_sum(bn_run.history)


############################################################
#  Loader threads: fit() reads the DataGenerator itself
############################################################

def test_resumed_run_with_loader_threads_reads_its_epochs_of_the_stream(tmp_path):
    """WORKERS=2: fit() reads the DataGenerator through Keras' threads, as it does under
    JAX and PyTorch, not through multi_worker.local_dataset's tf.data stream. A run
    resumed at epoch 2 (what loading an epoch-2 checkpoint sets) trains and validates
    on the generators' epoch 2, as that stream does (FollowFitEpoch; without it, Keras'
    extra epoch end made it epoch 1, a new run's second epoch)."""
    from mrcnn.data import DataGenerator

    keras.utils.set_random_seed(0)
    config = tiny_config(STEPS_PER_EPOCH=2, VALIDATION_STEPS=1, TRAIN_BN=False, WORKERS=2)
    model = modellib.MaskRCNN("training", config, str(tmp_path))
    model.epoch = 2
    dataset = ShapesDataset.generate(count=4, seed=1)
    events, batch_at = [], DataGenerator.batch_at

    class Marks(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            events.append(("fit", epoch))

        def on_test_begin(self, logs=None):
            events.append(("test", None))

    def recording(self, epoch, index, size):
        # The two generators told apart by their steps: 2 training, 1 validation.
        events.append(("train" if self.steps_per_epoch == 2 else "val", int(epoch)))
        return batch_at(self, epoch, index, size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DataGenerator, "batch_at", recording)
        history = model.train(dataset, dataset, 0.01, epochs=3, layers="heads",
                              custom_callbacks=[Marks()])
    assert history.epoch == [2]
    # Reads before the epoch's (or its evaluation's) start are Keras' peeks, dropped.
    fit_at, test_at = events.index(("fit", 2)), events.index(("test", None))
    assert [e for kind, e in events[fit_at:test_at] if kind == "train"] == [2, 2]
    assert [e for kind, e in events[test_at:] if kind == "val"] == [2]


############################################################
#  LossModel on a toy graph: weighting and weight decay by hand
############################################################

class MeanSquare(keras.layers.Layer):
    """x -> mean(x^2), a scalar."""

    def call(self, x):
        return tf.reduce_mean(tf.square(x))

    def compute_output_shape(self, input_shape):
        return ()


def test_loss_model_weights_components_and_adds_weight_decay():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), name="x")
    dense_a = keras.layers.Dense(2, name="dense_a", bias_initializer="ones")
    dense_b = keras.layers.Dense(1, name="dense_b")
    bn = keras.layers.BatchNormalization(name="bn")  # gamma = 1 would count if included
    outputs = [bn(inputs), MeanSquare(name="a_loss")(dense_a(inputs)),
               MeanSquare(name="b_loss")(dense_b(inputs))]
    model = LossModel(inputs, outputs, loss_names=["a_loss", "b_loss"],
                      loss_weights={"a_loss": 2.0, "b_loss": 0.0}, weight_decay=0.1)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), jit_compile=False)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    w_a, b_a = (v.numpy() for v in dense_a.weights)
    w_b, b_b = (v.numpy() for v in dense_b.weights)

    history = model.fit(x, batch_size=4, epochs=1, verbose=0).history

    a = np.mean(np.square(x @ w_a + b_a))
    l2 = 0.1 * (np.sum(w_a ** 2) / w_a.size + np.sum(b_a ** 2) / b_a.size
                + np.sum(w_b ** 2) / w_b.size)  # b_b is zero; gamma/beta excluded
    assert history["a_loss"][0] == pytest.approx(2 * a, rel=1e-5)
    assert history["b_loss"][0] == 0.0
    assert history["l2_loss"][0] == pytest.approx(l2, rel=1e-5)
    assert history["loss"][0] == pytest.approx(2 * a + l2, rel=1e-5)
    # The library's term over the same variables agrees (gamma/beta skipped by path).
    term = weight_decay_loss(model.trainable_variables, 0.1).numpy()
    assert term == pytest.approx(0.1 * sum(
        np.sum(v.numpy() ** 2) / v.numpy().size
        for v in (dense_a.kernel, dense_a.bias, dense_b.kernel, dense_b.bias)), rel=1e-5)
    # A second compile + fit (a second stage) logs the same metrics once, not twice.
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), jit_compile=False)
    again = model.fit(x, batch_size=4, epochs=1, verbose=0).history
    assert set(again) == {"loss", "a_loss", "b_loss", "l2_loss"}
    assert again["loss"][0] == pytest.approx(again["a_loss"][0] + again["l2_loss"][0],
                                             rel=1e-5)


############################################################
#  Learning: the loss falls and one image is overfit
############################################################

class StepLosses(keras.callbacks.Callback):
    """Per-step logged values, recovered from Keras' running means (reset each epoch)."""

    def __init__(self, key: str = "loss"):
        super().__init__()
        self.key = key
        self.steps: list = []
        self._means: list = []

    def on_epoch_begin(self, epoch, logs=None):
        self._means = []

    def on_train_batch_end(self, batch, logs=None):
        self._means.append(float(logs[self.key]))

    def on_epoch_end(self, epoch, logs=None):
        n = np.arange(1, len(self._means) + 1)
        self.steps.extend(np.diff(n * np.array(self._means), prepend=0.0))

    def losses(self) -> np.ndarray:
        return np.array(self.steps)


# Two shapes of different classes, a batch of two copies of the image (two independent
# anchor and ROI samplings per step), lr 0.01 then 0.001. Measured: with three shapes,
# or with batches of one image, about 1 run in 8 missed an object; with this setting
# 14 of 14 seeds found both objects at scores >= 0.98.
OVERFIT_SHAPES = [ShapeSpec("square", 18, 18, 10), ShapeSpec("circle", 44, 42, 11)]


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """One image overfit in two stages ('all'): 150 steps at lr 0.01, then 100 at 0.001
    (Matterport's lr/10 last stage). A checkpoint every 50 steps."""
    model_dir = str(tmp_path_factory.mktemp("overfit"))
    keras.utils.set_random_seed(0)
    dataset = ShapesDataset.from_specs([OVERFIT_SHAPES])
    config = tiny_config(STEPS_PER_EPOCH=50, VALIDATION_STEPS=0, IMAGES_PER_GPU=2)
    model = modellib.MaskRCNN("training", config, model_dir)
    steps = StepLosses()
    model.train(dataset, None, learning_rate=0.01, epochs=3, layers="all",
                custom_callbacks=[steps])
    model.train(dataset, None, learning_rate=0.001, epochs=5, layers="all",
                custom_callbacks=[steps])
    return types.SimpleNamespace(model=model, dataset=dataset, losses=steps.losses(),
                                 model_dir=model_dir)


def test_training_loss_falls(overfit):
    losses = overfit.losses
    assert losses.shape == (250,) and np.all(np.isfinite(losses))
    first, last = losses[:20].mean(), losses[-20:].mean()
    assert last < first / 10, (first, last)


def test_overfit_image_is_detected(overfit):
    config = tiny_config(DETECTION_MIN_CONFIDENCE=0.5)
    inference = modellib.MaskRCNN("inference", config, overfit.model_dir)
    checkpoint = inference.find_last()
    assert checkpoint.endswith("mask_rcnn_tiny_0005.h5")
    inference.load_weights(checkpoint, by_name=True)
    image = overfit.dataset.load_image(0)
    gt_masks, gt_class_ids = overfit.dataset.load_mask(0)
    gt_boxes = utils.extract_bboxes(gt_masks)
    result = inference.detect([image])[0]
    overlaps = (utils.compute_overlaps(gt_boxes, result["rois"]) if len(result["rois"])
                else np.zeros((len(gt_boxes), 0)))
    for i, class_id in enumerate(gt_class_ids):
        hits = (overlaps[i] > 0.5) & (result["class_ids"] == class_id)
        assert hits.any(), (i, class_id, overlaps[i], result["class_ids"], result["scores"])
