"""Tests for mrcnn.layers: frozen BatchNorm, the reshape-based TimeDistributed, shape layers,
the per-pixel-matmul Conv2DTranspose."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.layers import BatchNorm, Conv2DTranspose, RepeatAlongAxis, Squeeze, TimeDistributed
from tests.helpers.layer_test import check_layer

EPS = 1e-3  # Keras' (and Matterport's) BatchNormalization default epsilon


def _bn_model(frozen: bool, wrapped: bool = False) -> keras.Model:
    """Input -> (TimeDistributed) BatchNorm -> Dense, compiled for a couple of SGD steps."""
    if wrapped:
        inputs = keras.Input((3, 4))
        x = TimeDistributed(BatchNorm(frozen=frozen, name="bn_inner"), name="bn")(inputs)
    else:
        inputs = keras.Input((4,))
        x = BatchNorm(frozen=frozen, name="bn")(inputs)
    outputs = keras.layers.Dense(1, name="head")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=False)
    return model


def _bn_layer(model: keras.Model) -> BatchNorm:
    layer = model.get_layer("bn")
    return layer.layer if isinstance(layer, TimeDistributed) else layer


def _fit_two_steps(model: keras.Model, shape: tuple) -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(8,) + shape) * 3 + 5).astype(np.float32)
    y = rng.normal(size=(8,) + shape[:-1] + (1,)).astype(np.float32)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps


@pytest.mark.parametrize("wrapped", [False, True])
def test_frozen_batchnorm_keeps_statistics_under_fit(wrapped):
    model = _bn_model(frozen=True, wrapped=wrapped)
    shape = (3, 4) if wrapped else (4,)
    _fit_two_steps(model, shape)
    bn = _bn_layer(model)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(4))
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(4))

    # Training mode still uses the moving statistics: output is gamma * x / sqrt(1 + eps) + beta.
    x = np.random.default_rng(2).normal(size=(5,) + shape).astype(np.float32) + 5
    gamma, beta = bn.gamma.numpy(), bn.beta.numpy()
    expected = gamma * x / np.sqrt(1.0 + EPS) + beta
    sub = keras.Model(model.inputs[0], model.get_layer("bn").output)
    np.testing.assert_allclose(sub(x, training=True).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sub(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_unfrozen_batchnorm_updates_statistics_under_fit():
    model = _bn_model(frozen=False)
    _fit_two_steps(model, (4,))
    bn = _bn_layer(model)
    # Data has mean 5: two updates with momentum 0.99 move the mean away from 0.
    assert np.all(bn.moving_mean.numpy() > 0.05)
    assert not np.allclose(bn.moving_variance.numpy(), 1.0)


def test_unfrozen_batchnorm_honours_training_flag():
    bn = BatchNorm()
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32) * 2 + 3
    train_out = bn(x, training=True).numpy()
    batch_norm = (x - x.mean(0)) / np.sqrt(x.var(0) + EPS)
    np.testing.assert_allclose(train_out, batch_norm, rtol=1e-4, atol=1e-4)
    infer_out = bn(x, training=False).numpy()
    moving_mean, moving_var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    np.testing.assert_allclose(infer_out, (x - moving_mean) / np.sqrt(moving_var + EPS),
                               rtol=1e-5, atol=1e-5)


def test_batchnorm_config_round_trip():
    bn = BatchNorm(frozen=True, name="bn_x", momentum=0.9)
    config = bn.get_config()
    assert config["frozen"] is True
    clone = BatchNorm.from_config(config)
    assert clone.frozen is True and clone.name == "bn_x" and clone.momentum == 0.9
    assert clone.epsilon == EPS and clone.axis == -1
    assert BatchNorm().get_config()["frozen"] is False


def _per_step(layer, x, **kwargs) -> np.ndarray:
    """Reference: apply `layer` to each time slice separately and stack on axis 1."""
    return np.stack([layer(x[:, t], **kwargs).numpy() for t in range(x.shape[1])], axis=1)


@pytest.mark.parametrize("make_layer, in_shape, out_tail", [
    (lambda: keras.layers.Conv2D(5, (3, 3), padding="same", name="c_inner"),
     (2, 3, 6, 6, 4), (6, 6, 5)),
    (lambda: keras.layers.Conv2D(7, (6, 6), padding="valid", name="c_inner"),
     (2, 3, 6, 6, 4), (1, 1, 7)),
    (lambda: keras.layers.Conv2DTranspose(3, (2, 2), strides=2, activation="relu",
                                          name="c_inner"),
     (2, 3, 4, 4, 4), (8, 8, 3)),
    (lambda: keras.layers.Dense(6, name="c_inner"), (2, 3, 5), (6,)),
])
def test_time_distributed_matches_per_step(make_layer, in_shape, out_tail):
    x = np.random.default_rng(0).normal(size=in_shape).astype(np.float32)
    td = TimeDistributed(make_layer(), name="td")
    out = td(x).numpy()
    assert out.shape == in_shape[:2] + out_tail
    np.testing.assert_allclose(out, _per_step(td.layer, x), rtol=1e-5, atol=1e-5)
    assert td.compute_output_shape((None, None) + in_shape[2:]) == (None, None) + out_tail


def test_time_distributed_batchnorm_passes_training():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 4, 5)).astype(np.float32) * 2 + 1
    td = TimeDistributed(BatchNorm(name="bn_inner"), name="bn")
    td.build(x.shape)
    td.layer.moving_mean.assign(rng.normal(size=5).astype(np.float32))
    td.layer.moving_variance.assign(rng.uniform(0.5, 2, size=5).astype(np.float32))
    # Inference: per-step equivalence with the moving statistics.
    np.testing.assert_allclose(td(x, training=False).numpy(),
                               _per_step(td.layer, x, training=False), rtol=1e-5, atol=1e-5)
    # Training: statistics over batch, time and space together (the merged batch).
    flat = x.reshape(-1, 5)
    expected = (x - flat.mean(0)) / np.sqrt(flat.var(0) + EPS)
    np.testing.assert_allclose(td(x, training=True).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_time_distributed_dynamic_time_axis_in_tf_function():
    inputs = keras.Input((None, 7, 7, 3))
    td = TimeDistributed(keras.layers.Conv2D(4, (7, 7), name="conv_inner"), name="conv")
    outputs = td(inputs)
    assert tuple(outputs.shape) == (None, None, 1, 1, 4)
    model = keras.Model(inputs, outputs)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 7, 7, 3], tf.float32)])
    def run(x):
        return model(x)

    rng = np.random.default_rng(0)
    for batch, time in [(2, 3), (1, 5)]:
        x = rng.normal(size=(batch, time, 7, 7, 3)).astype(np.float32)
        out = run(tf.constant(x)).numpy()
        assert out.shape == (batch, time, 1, 1, 4)
        np.testing.assert_allclose(out, _per_step(td.layer, x), rtol=1e-5, atol=1e-5)


def test_time_distributed_static_shape_is_kept():
    inputs = keras.Input((6, 5), batch_size=2)
    outputs = TimeDistributed(keras.layers.Dense(3, name="d_inner"), name="d")(inputs)
    assert tuple(outputs.shape) == (2, 6, 3)


def test_time_distributed_variable_names_and_config_round_trip():
    td = TimeDistributed(keras.layers.Conv2D(4, (3, 3), name="mrcnn_x_inner"), name="mrcnn_x")
    td.build((None, None, 5, 5, 2))
    assert [v.name for v in td.weights] == ["kernel", "bias"]
    assert [tuple(v.shape) for v in td.weights] == [(3, 3, 2, 4), (4,)]

    x = np.random.default_rng(0).normal(size=(2, 3, 5, 5, 2)).astype(np.float32)
    check_layer(td, x, expected_shapes=[(2, 3, 3, 3, 4)])  # the clone gets the weights
    clone = TimeDistributed.from_config(td.get_config())
    assert clone.name == "mrcnn_x"
    assert isinstance(clone.layer, keras.layers.Conv2D)
    assert clone.layer.name == "mrcnn_x_inner" and clone.layer.filters == 4

    td_bn = TimeDistributed(BatchNorm(frozen=True, name="b_inner"), name="b")
    clone_bn = TimeDistributed.from_config(td_bn.get_config())
    assert isinstance(clone_bn.layer, BatchNorm) and clone_bn.layer.frozen is True


def test_time_distributed_rejects_bad_input():
    with pytest.raises(ValueError, match="keras.layers.Layer"):
        TimeDistributed("not a layer")
    td = TimeDistributed(keras.layers.Dense(2, name="d_inner"), name="d")
    with pytest.raises(ValueError, match="rank >= 3"):
        td.build((None, 4))


def test_squeeze_removes_unit_axes_and_rejects_others():
    x = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 1, 1, 5)
    layer = Squeeze(axis=(2, 3), name="pool_squeeze")
    (out,) = check_layer(layer, x, expected_shapes=[(2, 3, 5)])
    np.testing.assert_array_equal(out, x.reshape(2, 3, 5))
    assert layer.compute_output_shape((None, None, 1, 1, 5)) == (None, None, 5)
    assert Squeeze.from_config(layer.get_config()).axis == [2, 3]
    with pytest.raises(ValueError, match="size 1"):
        layer(np.zeros((2, 3, 2, 1, 5), np.float32))


def test_repeat_along_axis_tiles_a_unit_axis():
    x = np.random.default_rng(0).normal(size=(2, 3, 1, 4)).astype(np.float32)
    layer = RepeatAlongAxis(5, axis=2, name="rep")
    (out,) = check_layer(layer, x, expected_shapes=[(2, 3, 5, 4)])
    for k in range(5):
        np.testing.assert_array_equal(out[:, :, k], x[:, :, 0])
    assert layer.compute_output_shape((None, None, 1, 4)) == (None, None, 5, 4)
    clone = RepeatAlongAxis.from_config(layer.get_config())
    assert (clone.repeats, clone.axis) == (5, 2)
    with pytest.raises(ValueError, match="size 1"):
        layer(np.zeros((2, 3, 2, 4), np.float32))
    with pytest.raises(ValueError, match="repeats"):
        RepeatAlongAxis(0)


def test_train_bn_values_map_to_frozen_as_matterport():
    from mrcnn.layers import is_frozen

    # TRAIN_BN=False freezes; None (Keras learning phase) and True train normally.
    assert is_frozen(False) is True
    assert is_frozen(None) is False
    assert is_frozen(True) is False


def test_resnet_with_train_bn_none_has_trainable_statistics():
    import keras

    from mrcnn.backbone import resnet_graph

    image = keras.Input((64, 64, 3))
    graph = keras.Model(image, resnet_graph(image, "resnet_tiny", stage5=True,
                                            train_bn=None)[-1])
    bns = [l for l in graph.layers if l.__class__.__name__ == "BatchNorm"]
    assert bns and not any(l.frozen for l in bns)


def test_check_layer_catches_a_config_that_loses_an_argument():
    """The shared layer test (tests/helpers/layer_test.py) fails a layer whose
    get_config() forgets an argument: its clone computes something else."""

    class Scale(keras.layers.Layer):
        def __init__(self, factor: float = 1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            config = super().get_config()  # Keras records factor by itself...
            config.pop("factor", None)  # ...which this layer then loses
            return config

    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(check_layer(Scale(1.0), x, [(2, 3)])[0], x)
    with pytest.raises(AssertionError):
        check_layer(Scale(3.0), x, [(2, 3)])
    with pytest.raises(AssertionError):  # wrong expected shape
        check_layer(Scale(1.0), x, [(2, 4)])


def _transpose_pair(**kwargs):
    """Ours and Keras' Conv2DTranspose, built for 4 input channels, with the same weights."""
    ours, keras_own = Conv2DTranspose(**kwargs), keras.layers.Conv2DTranspose(**kwargs)
    ours.build((None, 5, 3, 4))
    keras_own.build((None, 5, 3, 4))
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in ours.get_weights()]
    ours.set_weights(weights)
    keras_own.set_weights(weights)
    return ours, keras_own


@pytest.mark.parametrize("kwargs, tiles", [
    (dict(filters=3, kernel_size=(2, 2), strides=2, activation="relu"), True),  # the mask head
    (dict(filters=2, kernel_size=(3, 2), strides=(3, 2)), True),
    (dict(filters=2, kernel_size=(2, 2), strides=2, use_bias=False), True),
    (dict(filters=2, kernel_size=(3, 3), strides=2, padding="same"), False),  # overlapping
    (dict(filters=2, kernel_size=(2, 2), strides=1), False),
])
def test_conv2d_transpose_computes_what_keras_computes(kwargs, tiles):
    ours, keras_own = _transpose_pair(**kwargs)
    assert ours.tiles_output() is tiles
    x = np.random.default_rng(1).normal(size=(2, 5, 3, 4)).astype(np.float32)
    want = keras.ops.convert_to_numpy(keras_own(x))
    (got,) = check_layer(ours, x, expected_shapes=[want.shape])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # The same gradients, for the kernel and the input (training runs through it).
    xt = tf.constant(x)
    grads = []
    for layer in (ours, keras_own):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.reduce_sum(tf.sin(layer(xt)))
        grads.append(tape.gradient(loss, [xt, layer.kernel.value]))
    for g_ours, g_keras in zip(*grads):
        np.testing.assert_allclose(g_ours.numpy(), g_keras.numpy(), rtol=1e-4, atol=1e-4)


def test_conv2d_transpose_writes_one_block_per_pixel_by_hand():
    """Two pixels [[1, 2] and [0, -1]] side by side, kernel[a, b, 0] = (a+1, b+1): each
    pixel's 2x2 block is the kernel's rows dotted with that pixel, plus the bias."""
    layer = Conv2DTranspose(1, (2, 2), strides=2)
    layer.build((None, 1, 2, 2))
    kernel = np.zeros((2, 2, 1, 2), np.float32)
    for a in range(2):
        for b in range(2):
            kernel[a, b, 0] = (a + 1, b + 1)
    layer.set_weights([kernel, np.array([0.5], np.float32)])
    x = np.array([[[[1, 2], [0, -1]]]], np.float32)  # [1, 1, 2, 2]
    out = keras.ops.convert_to_numpy(layer(x))[0, :, :, 0]  # [2, 4]
    want = np.array([[1 + 2, 1 + 4, -1, -2],
                     [2 + 2, 2 + 4, -1, -2]], np.float32) + 0.5
    np.testing.assert_array_equal(out, want)
    assert layer.__class__.__name__ == "Conv2DTranspose"  # inspect_weights picks it by name
