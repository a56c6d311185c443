"""Shared by the multi-replica check scripts and the tests that run them.

Logical devices can only be configured before TensorFlow initialises its runtime, so
tests/helpers/parallel_check.py and tests/helpers/siamese_parallel_check.py run in a
fresh interpreter (run_check_script): each calls use_logical_cpus() before it builds a
model, measures with the weight helpers below and writes a JSON report (Stopwatch
times its stages); the tests assert on that report.

Importing this module only sets quiet, CPU-only defaults for TensorFlow (as
tests/conftest.py does), so the scripts import it first; it is safe in the pytest
process too.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Sequence

# Before TensorFlow loads; no-ops where conftest.py or the caller set them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn import weights as weights_io  # noqa: E402
from tests.helpers.processes import run_python  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


############################################################
#  Devices and processes
############################################################

def use_logical_cpus(count: int) -> None:
    """Splits the first physical CPU into `count` logical devices.

    Must run before TensorFlow creates its runtime (before any tensor or model).
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def run_check_script(script: str, work_dir: str) -> dict:
    """Runs `python script RESULT_JSON WORK_DIR` in a fresh interpreter; its JSON.

    lib/ and the repository root go on PYTHONPATH (for mrcnn / siamese_mrcnn and
    tests.helpers). Fails the calling test with the end of stderr when the script fails.
    """
    out = os.path.join(str(work_dir), "results.json")
    pythonpath = os.pathsep.join(
        [os.path.join(ROOT, "lib"), ROOT, os.environ.get("PYTHONPATH", "")])
    # The 2-replica scripts are among the slowest subprocesses of the suite (about 2 min).
    proc = run_python([script, out, work_dir], extra_env={"PYTHONPATH": pythonpath})
    if proc.returncode != 0:
        pytest.fail(f"{script} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    with open(out) as f:
        return json.load(f)


class Stopwatch:
    """Wall and CPU seconds per named stage, in the form the check reports store."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = {}
        self._clock = (time.perf_counter(), time.process_time())

    def lap(self, name: str) -> None:
        """Records the time since the previous lap (or the start) under `name`."""
        now = (time.perf_counter(), time.process_time())
        self.seconds[name] = {"wall": round(now[0] - self._clock[0], 1),
                              "cpu": round(now[1] - self._clock[1], 1)}
        self._clock = now


def write_report(path: str, results: dict) -> None:
    """Writes a check report as JSON (numpy scalars as floats)."""
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=float)


############################################################
#  Weights
############################################################

def snapshot(model: Any) -> dict[str, np.ndarray]:
    """A copy of every weight, keyed as in the .h5 files (weights.weight_map)."""
    return {k: np.array(v.numpy()) for k, v in weights_io.weight_map(model).items()}


def copy_weights(source: Any, target: Any) -> None:
    """Assigns source's weights to target; both must have the same weight keys."""
    values = snapshot(source)
    target_map = weights_io.weight_map(target)
    if values.keys() != target_map.keys():
        raise RuntimeError("weight keys differ between the models")
    for key, variable in target_map.items():
        variable.assign(values[key])


def replica_values(variable: Any) -> list[np.ndarray]:
    """Every replica's copy of a (possibly mirrored) Keras variable."""
    value = variable.value
    if isinstance(value, tf.distribute.DistributedValues):
        return [np.asarray(t) for t in value.values]
    return [np.asarray(value)]


def max_diff(a: dict, b: dict) -> float:
    """Largest absolute difference between two snapshots with the same keys."""
    return float(max(np.max(np.abs(a[k] - b[k])) if a[k].size else 0.0 for k in a))


def max_replica_diff(model: Any, reference: dict) -> float:
    """Largest difference between any replica copy of any variable and reference."""
    worst = 0.0
    for key, variable in weights_io.weight_map(model).items():
        for copy in replica_values(variable):
            if copy.size:
                worst = max(worst, float(np.max(np.abs(copy - reference[key]))))
    return worst


def variable_kinds(model: Any) -> dict[str, int]:
    """How many of the model's variables hold each kind of value (e.g. MirroredVariable)."""
    kinds: dict[str, int] = {}
    for variable in model.weights:
        name = type(variable.value).__name__
        kinds[name] = kinds.get(name, 0) + 1
    return kinds


############################################################
#  Training on two replicas
############################################################

def training_report(model: Any, before: dict, history: Any, checkpoint: str) -> dict:
    """What train() on a ParallelModel left: wrapper, variables, history, checkpoint.

    model: a MaskRCNN or SiameseMaskRCNN after train(); before: snapshot of its
    inner model taken before training; history: what train() returned.
    """
    inner = model.inner_model
    after = snapshot(inner)
    return {
        "wrapper": type(model.keras_model).__name__,
        "replicas": model.keras_model.strategy.num_replicas_in_sync,
        "built_under_strategy": inner.distribute_strategy is model.keras_model.strategy,
        "variable_kinds": variable_kinds(inner),
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "checkpoint": checkpoint,
        "checkpoint_exists": os.path.isfile(checkpoint),
        "optimizer_iterations": int(inner.optimizer.iterations.numpy()),
        "weights_changed": max_diff(before, after),
        "replicas_agree": max_replica_diff(inner, after),
    }


def assert_trained_on_two_replicas(train: dict, loss_names: Sequence[str]) -> None:
    """Checks a training_report of one epoch of STEPS_PER_EPOCH=2 on 2 replicas."""
    assert train["wrapper"] == "ParallelModel"
    assert train["replicas"] == 2
    assert train["built_under_strategy"]
    kinds = train["variable_kinds"]
    assert list(kinds) == ["MirroredVariable"] and kinds["MirroredVariable"] > 100
    assert train["optimizer_iterations"] == 2  # STEPS_PER_EPOCH=2, one epoch
    for name in ("loss", "val_loss", *loss_names):
        assert len(train["history"][name]) == 1, name
        assert math.isfinite(train["history"][name][0]), name
    assert train["checkpoint_exists"]
    assert train["weights_changed"] > 1e-3
    assert train["replicas_agree"] == 0.0
