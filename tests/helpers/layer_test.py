"""The shared layer test (after keras-hub's ``run_layer_test``): one call checks what
every graph layer must do, so each layer's own tests are about its numbers.

    outputs = check_layer(PyramidROIAlign([7, 7]), [boxes, meta, p2, p3, p4, p5],
                          expected_shapes=[(1, 5, 7, 7, 8)])

1. Called on arrays, the outputs have ``expected_shapes``.
2. Called on symbolic inputs (batch dimension unknown), the outputs have the same shapes
   with the batch left open: the layer's shape inference agrees with what it computes.
3. ``get_config()`` holds plain JSON values, and ``from_config(get_config())`` builds a
   layer with the same config which, given the same weights, computes the same outputs
   (``deterministic=False`` skips the comparison for layers that sample).
"""
from __future__ import annotations

import copy
import json
from typing import Any, Optional, Sequence

import keras
import numpy as np


def _as_list(values: Any) -> list:
    return list(values) if isinstance(values, (list, tuple)) else [values]


def _call(layer: keras.layers.Layer, inputs: Any) -> list:
    return [keras.ops.convert_to_numpy(o) for o in _as_list(layer(inputs))]


def check_layer(layer: keras.layers.Layer, inputs: Any,
                expected_shapes: Optional[Sequence[tuple]] = None,
                deterministic: bool = True, rtol: float = 1e-6) -> list:
    """Runs the three checks of the module doc; returns the outputs as numpy arrays."""
    outputs = _call(layer, inputs)
    if expected_shapes is not None:
        assert [tuple(o.shape) for o in outputs] == [tuple(s) for s in expected_shapes]

    symbolic_inputs = [keras.Input(batch_shape=(None,) + tuple(np.shape(x))[1:],
                                   dtype=keras.ops.convert_to_numpy(x).dtype.name)
                       for x in _as_list(inputs)]
    symbolic = _as_list(layer(symbolic_inputs if isinstance(inputs, (list, tuple))
                              else symbolic_inputs[0]))
    for tensor, value in zip(symbolic, outputs):
        shape = tuple(tensor.shape)
        assert len(shape) == value.ndim and all(
            d is None or d == v for d, v in zip(shape[1:], value.shape[1:])), (
                f"{layer.name}: symbolic output {shape}, computed {value.shape}")

    config = layer.get_config()
    json.dumps(config)  # plain values only: raises TypeError otherwise
    # A copy: keras.layers.Wrapper.from_config pops "layer" from the dict it is given.
    clone = type(layer).from_config(copy.deepcopy(config))
    assert clone.get_config() == config
    if deterministic:
        _call(clone, inputs)  # builds the clone's weights, if any
        clone.set_weights(layer.get_weights())
        for a, b in zip(outputs, _call(clone, inputs)):
            np.testing.assert_allclose(b, a, rtol=rtol)
    return outputs
