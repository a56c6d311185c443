"""Matching layers against a numpy computation; conv names and shapes."""
import keras
import numpy as np
import pytest

from siamese_mrcnn.matching import (L1Difference, ReferenceAverage, ReferencePool,
                                    build_matching_graph, match_with_vectors,
                                    pool_references)
from tests.helpers.layer_test import check_layer

LEVEL_SIDES = (16, 8, 4, 2, 1)  # P2..P6 of a 64 x 64 query


def _random(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_reference_average_stacked_and_list():
    maps = _random((2, 3, 4, 5, 6), 0)  # [batch, k, h, w, C]
    expected = maps.mean(axis=1)
    (stacked,) = check_layer(ReferenceAverage(), maps, expected_shapes=[(2, 4, 5, 6)])
    np.testing.assert_allclose(stacked, expected, rtol=1e-6, atol=1e-6)
    as_list = keras.ops.convert_to_numpy(ReferenceAverage()([maps[:, i] for i in range(3)]))
    np.testing.assert_allclose(as_list, expected, rtol=1e-6, atol=1e-6)
    # k = 1 is the reference itself, bit for bit.
    single = keras.ops.convert_to_numpy(ReferenceAverage()(maps[:, :1]))
    np.testing.assert_array_equal(single, maps[:, 0])


def test_reference_pool_shapes_and_values():
    maps = _random((2, 4, 5, 6), 1)
    (vector,) = check_layer(ReferencePool(), maps, expected_shapes=[(2, 6)])
    np.testing.assert_allclose(vector, maps.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    (kept,) = check_layer(ReferencePool(keepdims=True), maps, expected_shapes=[(2, 1, 1, 6)])
    np.testing.assert_allclose(kept[:, 0, 0], vector, rtol=1e-6)


def test_l1_difference_broadcasts_vector_over_positions():
    query, vector = _random((2, 3, 4, 6), 2), _random((2, 6), 3)
    expected = np.abs(query - vector[:, None, None, :])
    for v in (vector, vector[:, None, None, :]):
        (result,) = check_layer(L1Difference(), [query, v], expected_shapes=[(2, 3, 4, 6)])
        np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_layers_serialise_through_get_config():
    pool = ReferencePool(keepdims=True, name="pool")
    clone = ReferencePool.from_config(pool.get_config())
    assert clone.keepdims is True and clone.name == "pool"
    for cls in (ReferenceAverage, L1Difference):
        layer = cls(name="x")
        assert cls.from_config(layer.get_config()).name == "x"


def _numpy_matching(queries, references, conv_weights):
    """The paper's matching in numpy: average over k, pool, |q - v|, concat, 1x1 conv."""
    outputs = []
    for query, reference, (kernel, bias) in zip(queries, references, conv_weights):
        vector = reference.mean(axis=1).mean(axis=(1, 2))          # [batch, C]
        diff = np.abs(query - vector[:, None, None, :])            # [batch, H, W, C]
        fused = np.concatenate([query, diff], axis=-1)             # [batch, H, W, 2C]
        outputs.append(np.einsum("bhwc,cf->bhwf", fused, kernel[0, 0]) + bias)
    return outputs


def _build(channels, k, reference_side=4):
    query_inputs = [keras.Input((s, s, channels), name="q%d" % i)
                    for i, s in enumerate(LEVEL_SIDES)]
    reference_inputs = [keras.Input((k, max(reference_side >> i, 1), max(reference_side >> i, 1),
                                     channels), name="r%d" % i) for i in range(5)]
    outputs = build_matching_graph(query_inputs, reference_inputs)
    return keras.Model(query_inputs + reference_inputs, outputs)


@pytest.mark.parametrize("k", [1, 3])
def test_build_matching_graph_matches_numpy(k):
    channels, batch = 8, 2
    model = _build(channels, k)
    queries = [_random((batch, s, s, channels), 10 + i) for i, s in enumerate(LEVEL_SIDES)]
    references = [_random((batch, k) + tuple(model.inputs[5 + i].shape[2:]), 20 + i)
                  for i in range(5)]
    conv_weights = [model.get_layer("fpn_distance_P%d" % n).get_weights() for n in range(2, 7)]
    outputs = model.predict(queries + references, verbose=0)
    expected = _numpy_matching(queries, references, conv_weights)
    for level, (out, exp) in enumerate(zip(outputs, expected)):
        assert out.shape == (batch, LEVEL_SIDES[level], LEVEL_SIDES[level], 3 * channels // 2)
        np.testing.assert_allclose(out, exp, rtol=1e-4, atol=1e-4)


def test_match_with_vectors_equals_the_full_graph():
    channels, k, batch = 8, 2, 1
    full = _build(channels, k)
    query_inputs = [keras.Input((s, s, channels)) for s in LEVEL_SIDES]
    vector_inputs = [keras.Input((channels,)) for _ in range(5)]
    reuse = keras.Model(query_inputs + vector_inputs,
                        match_with_vectors(query_inputs, vector_inputs))
    for n in range(2, 7):
        name = "fpn_distance_P%d" % n
        reuse.get_layer(name).set_weights(full.get_layer(name).get_weights())

    queries = [_random((batch, s, s, channels), 30 + i) for i, s in enumerate(LEVEL_SIDES)]
    references = [_random((batch, k) + tuple(full.inputs[5 + i].shape[2:]), 40 + i)
                  for i in range(5)]
    encoder = keras.Model(full.inputs[5:], pool_references(full.inputs[5:]))
    vectors = encoder.predict(references, verbose=0)
    assert all(v.shape == (batch, channels) for v in vectors)
    expected = full.predict(queries + references, verbose=0)
    result = reuse.predict(queries + vectors, verbose=0)
    for out, exp in zip(result, expected):
        np.testing.assert_allclose(out, exp, rtol=1e-5, atol=1e-5)


def test_reference_lists_in_a_functional_model_and_json_round_trip():
    # k = 2 references as separate pyramids (a list per level), as a model that runs
    # the backbone once per reference produces them.
    channels = 4
    query_inputs = [keras.Input((s, s, channels)) for s in LEVEL_SIDES]
    refs = [[keras.Input((2, 2, channels)) for _ in range(5)] for _ in range(2)]
    per_level = [[refs[0][i], refs[1][i]] for i in range(5)]
    model = keras.Model(query_inputs + refs[0] + refs[1],
                        build_matching_graph(query_inputs, per_level))
    assert model.get_layer("reference_average_P2").output.shape == (None, 2, 2, channels)
    clone = keras.models.model_from_json(model.to_json())
    clone.set_weights(model.get_weights())
    queries = [_random((1, s, s, channels), 50 + i) for i, s in enumerate(LEVEL_SIDES)]
    references = [_random((1, 2, 2, channels), 60 + i) for i in range(10)]
    expected = _numpy_matching(
        queries, [np.stack([references[i], references[5 + i]], axis=1) for i in range(5)],
        [model.get_layer("fpn_distance_P%d" % n).get_weights() for n in range(2, 7)])
    for out, exp in zip(clone.predict(queries + references, verbose=0), expected):
        np.testing.assert_allclose(out, exp, rtol=1e-4, atol=1e-4)


def test_fpn_distance_convs_small_model_shapes():
    # The small model: FPN_FEATUREMAPS 256 -> 512 channels in, 384 out (released layout).
    channels = 256
    query_inputs = [keras.Input((s, s, channels)) for s in (4, 2, 1, 1, 1)]
    reference_inputs = [keras.Input((1, 1, channels)) for _ in range(5)]
    outputs = build_matching_graph(query_inputs, reference_inputs)
    model = keras.Model(query_inputs + reference_inputs, outputs)
    for n in range(2, 7):
        layer = model.get_layer("fpn_distance_P%d" % n)
        assert isinstance(layer, keras.layers.Conv2D)
        assert layer.activation is keras.activations.linear and layer.use_bias
        kernel, bias = layer.get_weights()
        assert kernel.shape == (1, 1, 512, 384) and bias.shape == (384,)
    assert [tuple(o.shape) for o in outputs] == [(None, s, s, 384) for s in (4, 2, 1, 1, 1)]


def test_mismatched_level_counts_raise():
    query_inputs = [keras.Input((4, 4, 8)) for _ in range(5)]
    with pytest.raises(ValueError, match="5 query levels, 4 reference levels"):
        build_matching_graph(query_inputs, [keras.Input((4, 4, 8)) for _ in range(4)])
    with pytest.raises(ValueError, match="at most 5 pyramid levels"):
        match_with_vectors(query_inputs * 2, [keras.Input((8,))] * 10)
