"""Training under JAX and PyTorch equals training under TensorFlow: the same starting
weights (written by TensorFlow) and the same designed batch, two SGD steps each (momentum,
global-norm clipping, weight decay, frozen BatchNorm), in a fresh interpreter per
backend (tests/helpers/backend_step_check.py); every logged loss component and every
updated weight is compared with TensorFlow's."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from tests.helpers.processes import ROOT, run_python

SCRIPT = ROOT / "tests" / "helpers" / "backend_step_check.py"
ENV = {"JAX_PLATFORMS": "cpu", "PYTHONPATH": f"{ROOT / 'lib'}:{ROOT}"}


def run_backend(work, backend: str) -> None:
    done = run_python([SCRIPT, work], extra_env={**ENV, "KERAS_BACKEND": backend})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == backend


@pytest.fixture(scope="module")
def tensorflow_step(tmp_path_factory):
    work = tmp_path_factory.mktemp("backend_step")
    run_backend(work, "tensorflow")
    return work


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_two_sgd_steps_equal_tensorflows(tensorflow_step, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (requirements-test.txt)")
    work = tensorflow_step
    run_backend(work, backend)
    want_logs = json.loads((work / "tensorflow.json").read_text())
    got_logs = json.loads((work / f"{backend}.json").read_text())
    for step, (want, got) in enumerate(zip(want_logs, got_logs)):
        assert set(got) == set(want)
        for name in want:
            assert got[name] == pytest.approx(want[name], rel=1e-4, abs=1e-6), (step, name)
    # The steps learned something, and from positives: every loss is in play.
    assert want_logs[1]["loss"] < want_logs[0]["loss"]
    assert all(want_logs[0][name] > 0 for name in want_logs[0])
    with np.load(work / "start.npz") as s, np.load(work / "tensorflow.npz") as w, \
            np.load(work / f"{backend}.npz") as g:
        start, want, got = dict(s), dict(w), dict(g)
    assert set(got) == set(want) == set(start)
    worst = {}  # per tensor: the largest gap between the updates, over the largest update
    for name, value in want.items():
        step, got_step = value - start[name], got[name] - start[name]
        scale = float(np.abs(step).max())
        worst[name] = float(np.abs(got_step - step).max()) / max(scale, 1e-12)
    # Each tensor's update to 0.2% of its largest entry (measured: at most 0.06%, the
    # backends' float32 sums in other orders).
    assert max(worst.values()) < 2e-3, sorted(worst.items(), key=lambda kv: -kv[1])[:5]
