"""mrcnn.tracing: numpy inputs in the model's input dtypes (one trace whatever dtypes
came), and a model's first predict (its trace) not counted towards TensorFlow's
retracing warning; later calls are, and the warning stays available."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from mrcnn import tracing
from tests.helpers.processes import last_json, run_under_backend


class Function:
    """A stand-in tf.function: the switch that tracing turns on for a first call."""

    def __init__(self):
        self._omit_frequent_tracing_warning = False


class StandIn:
    """A stand-in Keras model: what its predict saw of the switch, call by call."""

    def __init__(self, function_type=Function, fail: bool = False):
        self.predict_function = None
        self.function_type = function_type
        self.fail = fail
        self.made = 0
        self.seen = []

    def make_predict_function(self):  # Keras 3's returns None
        if self.predict_function is None:
            self.made += 1
            self.predict_function = self.function_type()

    def predict_on_batch(self, x):
        self.make_predict_function()
        function = self.predict_function
        self.seen.append(getattr(function, "_omit_frequent_tracing_warning", None))
        if self.fail:
            raise RuntimeError("the graph failed")
        return x * 2


def test_only_the_first_call_is_left_out_of_the_warning():
    model = StandIn()
    assert not tracing.traced(model)
    assert tracing.predict_on_batch(model, 3) == 6
    assert tracing.traced(model)
    assert tracing.predict_on_batch(model, 4) == 8
    assert model.seen == [True, False] and model.made == 1
    assert model.predict_function._omit_frequent_tracing_warning is False


def test_a_failing_first_call_turns_the_switch_back():
    model = StandIn(fail=True)
    with pytest.raises(RuntimeError, match="the graph failed"):
        tracing.predict_on_batch(model, 1)
    assert model.seen == [True]
    assert model.predict_function._omit_frequent_tracing_warning is False


def test_a_predict_function_without_the_switch_is_left_alone():
    # JAX's and PyTorch's predict functions are no tf.function.
    model = StandIn(function_type=object)
    assert tracing.predict_on_batch(model, 5) == 10
    assert model.seen == [None] and not hasattr(model.predict_function,
                                                "_omit_frequent_tracing_warning")


def test_a_parallel_model_predicts_through_its_inner_model():
    inner = StandIn()
    wrapper = type("Parallel", (), {"inner_model": inner,
                                    "predict_on_batch": lambda self, x: inner.predict_on_batch(x)})()
    assert not tracing.traced(wrapper)
    assert tracing.predict_on_batch(wrapper, 2) == 4
    assert tracing.traced(wrapper) and inner.seen == [True]


def _two_input_model():
    image = keras.Input((4,), name="image")              # float32, as Keras' default
    ids = keras.Input((2,), dtype="int32", name="ids")
    out = keras.layers.Dense(3)(image) + keras.ops.cast(ids[:, :1], "float32")
    return keras.Model([image, ids], out)


def test_numpy_inputs_take_the_model_s_input_dtypes():
    model = _two_input_model()
    image64 = np.random.default_rng(0).normal(size=(2, 4))     # float64
    ids64 = np.array([[1, 2], [3, 4]])                          # int64
    cast = tracing.as_input_dtypes(model, [image64, ids64])
    assert [a.dtype for a in cast] == [np.float32, np.int32]
    np.testing.assert_array_equal(cast[0], image64.astype(np.float32))
    same = [image64.astype(np.float32), ids64.astype(np.int32)]
    assert all(a is b for a, b in zip(tracing.as_input_dtypes(model, same), same))
    # What does not line up with the inputs is handed on as it came.
    assert tracing.as_input_dtypes(model, [image64]) == [image64]
    assert tracing.as_input_dtypes(object(), [image64]) == [image64]
    inputs = keras.Input((4,))
    single = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    assert tracing.as_input_dtypes(single, image64).dtype == np.float32
    assert tracing.as_input_dtypes(single, [image64.tolist()]) == [image64.tolist()]


def test_cast_inputs_give_what_the_model_makes_of_the_uncast_ones():
    # The model converts its inputs to these dtypes itself: the outputs are identical.
    model = _two_input_model()
    image64 = np.random.default_rng(1).normal(size=(2, 4)) * 1e3 + 1e-7
    ids64 = np.array([[7, 0], [9, 1]])
    plain = np.asarray(model.predict_on_batch([image64, ids64]))
    through = np.asarray(tracing.predict_on_batch(model, [image64, ids64]))
    np.testing.assert_array_equal(through, plain)


# In a fresh interpreter: TensorFlow warns at most twice per process, so other tests'
# calls must not have used the warnings up.
TENSORFLOW_SCRIPT = r"""
import json, logging
import keras, numpy as np
from mrcnn import tracing

records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("tensorflow").addHandler(handler)

def warnings():
    found = [r.getMessage() for r in records if tracing.RETRACING_WARNING in r.getMessage()]
    records.clear()
    return found

def first_calls(predict):
    for _ in range(6):
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        assert np.asarray(predict(model, np.zeros((1, 3), np.float32))).shape == (1, 2)

first_calls(tracing.predict_on_batch)
quiet = warnings()
first_calls(lambda model, x: model.predict_on_batch(x))
print(json.dumps({"quiet": quiet, "plain": warnings()}))
"""


def test_first_calls_of_many_models_are_quiet_where_tensorflow_warns():
    report = last_json(run_under_backend(["-c", TENSORFLOW_SCRIPT], "tensorflow"))
    assert report["quiet"] == []
    # Plain first calls, as before: TensorFlow warns, so it still can (none used up),
    # and the first calls above were counted ("... out of the last ... calls").
    assert report["plain"] and all("one_step_on_data_distributed" in m
                                   for m in report["plain"]), report
