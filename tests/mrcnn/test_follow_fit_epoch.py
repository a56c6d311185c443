"""mrcnn.training.FollowFitEpoch: a data generator that fit() reads itself serves fit's
epoch, in training and in validation, under every backend.

Keras ends one epoch more than it trains (fit() and evaluate() reset their iterator
first), and a DataGenerator advances its epoch there; without the callback a run resumed
at epoch 3 read epochs 1 and 2, and its validation 1 and 3
(tests/helpers/fit_epoch_check.py, under TensorFlow in this process, under JAX and
PyTorch in a fresh interpreter each). MaskRCNN.train's use of it, with the real
DataGenerator, is tested in test_training.py.
"""
from __future__ import annotations

import json

import pytest

from tests.helpers.fit_epoch_check import epochs_read
from tests.helpers.processes import ROOT, needs_backend, run_python

# A run resumed at epoch 3 and trained to 5, 2 batches an epoch: each epoch's batches
# come from that epoch of the generator, the training's and the validation's.
FOLLOWED = {3: {"train": [3, 3], "val": [3, 3]}, 4: {"train": [4, 4], "val": [4, 4]}}


def test_keras_reads_shifted_epochs_without_it():
    """Why the callback exists (a Keras upgrade that stops the extra epoch end fails
    here: the callback is then harmless but no longer needed)."""
    assert epochs_read(follow=False) == {3: {"train": [1, 1], "val": [1, 1]},
                                         4: {"train": [2, 2], "val": [3, 3]}}


def test_generators_serve_fits_epochs_under_tensorflow():
    assert epochs_read(follow=True) == FOLLOWED


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_generators_serve_fits_epochs_under(backend):
    needs_backend(backend)
    done = run_python([ROOT / "tests" / "helpers" / "fit_epoch_check.py", "follow"],
                      extra_env={"KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu",
                                 "PYTHONPATH": f"{ROOT / 'lib'}:{ROOT}"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert {int(k): v for k, v in report["read"].items()} == FOLLOWED
