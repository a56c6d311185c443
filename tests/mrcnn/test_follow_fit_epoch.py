"""mrcnn.training.FollowFitEpoch: a data generator that fit() reads itself serves fit's
epoch, in training and in validation, under every backend.

Keras ends one epoch more than it trains (fit() and evaluate() reset their iterator
first), and a DataGenerator advances its epoch there: without the callback, a run
resumed at epoch 3 trained on epochs 1 and 2 and validated on 1 and 3. The epochs are
read from the losses that fit() logs (tests/helpers/fit_epoch_check.py), under
TensorFlow in this process, under JAX and PyTorch in a fresh interpreter each.
MaskRCNN.train's use of it, with the real DataGenerator, is tested in test_training.py.
"""
from __future__ import annotations

import pytest

from tests.helpers.fit_epoch_check import epochs_consumed
from tests.helpers.processes import ROOT, last_json, needs_backend, run_under_backend

# Resumed at epoch 3, trained to 5: each epoch trains and validates on its own epoch.
FOLLOWED = {"train": [3.0, 4.0], "val": [3.0, 4.0]}


def test_keras_serves_shifted_epochs_without_it():
    """Why the callback exists (a Keras upgrade that drops the extra epoch end fails
    here: the callback is then harmless and no longer needed)."""
    assert epochs_consumed(follow=False) == {"train": [1.0, 2.0], "val": [1.0, 3.0]}


@pytest.mark.parametrize("workers", [1, 2])
def test_generators_serve_fits_epochs_under_tensorflow(workers):
    """workers=2: Keras' loader threads, which prefetch (and stop between epochs)."""
    assert epochs_consumed(follow=True, workers=workers) == FOLLOWED


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_generators_serve_fits_epochs_under(backend):
    needs_backend(backend)
    report = last_json(run_under_backend(
        [ROOT / "tests" / "helpers" / "fit_epoch_check.py", "follow"], backend))
    assert report == {"backend": backend, "consumed": FOLLOWED}
