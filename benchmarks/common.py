"""What the benchmark scripts share: the repository on sys.path, machine details for
each report (TensorFlow's, or the JAX device's where TensorFlow is absent), JSON-safe
values and one-line reports.

Each script runs standalone (``python benchmarks/speed.py``): Python puts
``benchmarks/`` first on sys.path, so ``import common`` finds this file, and
importing it makes ``lib/`` and the repository root importable.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parents[1]
for _path in (str(REPO / "lib"), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from mrcnn.files import write_atomic  # noqa: E402 - standard library only (no TensorFlow)


def machine_info() -> dict:
    """Where and when the numbers were measured."""
    import keras
    import numpy as np
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
        "gpus": names,
    }


def to_json(value: Any) -> Any:
    """JSON-safe copy (numpy scalars/arrays, inf)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else str(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def accelerator_info() -> tuple[str, float | None]:
    """(the device's name, its peak memory so far in GiB, or None) under the JAX backend;
    (the backend's name, None) otherwise. Needs no TensorFlow (the GPU machine has none)."""
    import keras

    if keras.backend.backend() != "jax":
        return keras.backend.backend(), None
    import jax

    device = jax.devices()[0]
    peak = (device.memory_stats() or {}).get("peak_bytes_in_use")
    return f"{device.platform}: {device.device_kind}", (
        round(peak / 2 ** 30, 2) if peak else None)


def write_json(value: Any, path: str | Path, indent: int | None = 2) -> str:
    """`value`, made JSON-safe, as JSON at `path`, written whole or not at all
    (mrcnn.files.write_atomic). Returns the path."""
    import json

    return write_atomic(path, json.dumps(to_json(value), indent=indent) + "\n")


def report_line(result: dict, output: str | None) -> None:
    """Print `result` as one JSON line and append it to `output` (when given) in a single
    write, so that a killed run leaves every earlier line parseable."""
    import json

    line = json.dumps(to_json(result))
    print(line, flush=True)
    if output:
        with open(output, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def record_trace(function: Callable[[], Any], calls: int, path: str) -> str:
    """Run `function` `calls` times under the JAX profiler and write the trace (one
    XSpace, gzipped) to `path`, which benchmarks/profile_ops.py reads. Needs only JAX
    (the GPU machine has no TensorFlow); written whole or not at all."""
    import glob
    import gzip
    import tempfile

    import jax

    with tempfile.TemporaryDirectory(prefix="jax_trace_") as folder:
        with jax.profiler.trace(folder):
            for _ in range(calls):
                function()
        found = sorted(glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True))
        if not found:
            raise RuntimeError(f"the JAX profiler wrote no .xplane.pb under {folder}")
        with open(found[0], "rb") as f:
            space = f.read()
    return write_atomic(path, gzip.compress(space))


def add_trace(result: dict, function: Callable[[], Any], calls: int, path: str) -> None:
    """record_trace into result["profile"]; a failure is recorded in
    result["profile_error"] instead of raised, so that a profiler that fails on the
    device never costs the measurements taken before it."""
    try:
        result["profile"] = record_trace(function, calls, path)
    except Exception as error:  # noqa: BLE001 - any profiler failure, reported in the line
        result["profile_error"] = f"{type(error).__name__}: {error}"[:500]
