"""predict_on_batch for the models and sub-models that detect() and run_graph() run.

Under TensorFlow every Keras model's first predict traces its own ``tf.function``, but
TensorFlow counts the traces of all of them as one function's (they share one code
object, Keras' ``one_step_on_data_distributed``). So the fifth model traced within ten
calls logs "5 out of the last 7 calls to <function ...> triggered tf.function
retracing. Tracing is expensive ...", although no model traced twice: the README's
Python API example (detect, encode_reference, detect_with_reference, encode_queries,
detect_with_encoded) and Matterport's inspect notebooks (run_graph builds a model per
call) did.

A model's first call traces once by design, so it is made with the tf.function's own
switch for that warning on (``_omit_frequent_tracing_warning``, which Keras does not
expose). A logging filter would not do: TensorFlow warns at most twice per process,
and warnings filtered out would use up those two. The trace still counts, and later
calls, where a trace is a real retrace, warn as before. Under JAX and PyTorch, which
have no such warning, the switch is left alone.

The dtypes of a call's arrays are part of its trace's signature. Matterport's image
meta is int64 for an image that was not resized (scale 1) and float64 for one that
was, so a model traced its graph a second time for whichever kind came second. Numpy
arrays are therefore given the model's input dtypes (float32) before the call: the
model converts them to those dtypes itself, so the values are the same.
"""
from __future__ import annotations

import numpy as np

RETRACING_WARNING = "triggered tf.function retracing"
# tf.function's attribute (TensorFlow 2.x, polymorphic_function.Function): when True, a
# traced call is counted but not warned of. Where it is missing, nothing is changed.
_OMIT_ATTRIBUTE = "_omit_frequent_tracing_warning"


def _runner(model):
    # A ParallelModel predicts through its inner model's predict function.
    return getattr(model, "inner_model", model)


def traced(model) -> bool:
    """Whether ``model``'s predict function exists (its first predict has run)."""
    return getattr(_runner(model), "predict_function", None) is not None


def as_input_dtypes(model, inputs):
    """``inputs`` (one array or a list) with each numpy array in the dtype of the
    model's input it feeds; anything else, or inputs that do not line up with the
    model's, unchanged."""
    specs = getattr(_runner(model), "inputs", None) or []
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    if len(specs) != len(items):
        return inputs
    cast = [x.astype(spec.dtype) if isinstance(x, np.ndarray) and x.dtype != spec.dtype
            else x for x, spec in zip(items, specs)]
    return cast[0] if single else cast


def predict_on_batch(model, inputs):
    """``model.predict_on_batch(inputs)`` traced once per input shape: numpy inputs in
    the model's input dtypes, and the first call (the trace) not counted towards
    TensorFlow's retracing warning (see the module doc)."""
    inputs = as_input_dtypes(model, inputs)
    runner = _runner(model)
    if traced(model) or not hasattr(runner, "make_predict_function"):
        return model.predict_on_batch(inputs)
    runner.make_predict_function()  # what predict_on_batch would make (returns None)
    function = runner.predict_function
    if not hasattr(function, _OMIT_ATTRIBUTE):  # not a tf.function: JAX, PyTorch, eager
        return model.predict_on_batch(inputs)
    setattr(function, _OMIT_ATTRIBUTE, True)
    try:
        return model.predict_on_batch(inputs)
    finally:
        setattr(function, _OMIT_ATTRIBUTE, False)


__all__ = ["RETRACING_WARNING", "traced", "as_input_dtypes", "predict_on_batch"]
