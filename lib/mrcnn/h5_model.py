"""``keras_model.save_weights("x.h5")`` / ``load_weights("x.h5")`` as Matterport users wrote.

Keras 3 refuses a weights file name that does not end in ``.weights.h5`` and reads only
its own layout. Matterport's users saved and loaded through the Keras model itself,
with ``.h5`` names and ``by_name=True``. The project's models (the inference graph and
the training LossModel) mix in ``LegacyH5Weights``: a ``.h5`` / ``.hdf5`` name that is
not ``.weights.h5`` goes through mrcnn.weights (Keras 2 layout, keyed by layer and
weight name, written atomically); ``.weights.h5`` and ``.keras`` keep Keras 3's own
behaviour.
"""
from __future__ import annotations

import os
from typing import Sequence

import keras

from mrcnn import weights as weights_io

LEGACY_SUFFIXES = (".h5", ".hdf5")


def is_legacy_h5(filepath) -> bool:
    """True for Matterport-style weight files: .h5 / .hdf5 but not Keras 3's .weights.h5."""
    name = os.fspath(filepath).lower()
    return name.endswith(LEGACY_SUFFIXES) and not name.endswith(".weights.h5")


class LegacyH5Weights:
    """Mixin for keras.Model: Keras 2 style save_weights / load_weights for .h5 names."""

    def save_weights(self, filepath, overwrite: bool = True, **kwargs):
        """Writes the Keras 2 HDF5 layout for a .h5 name; Keras 3's format otherwise."""
        if not is_legacy_h5(filepath):
            return super().save_weights(filepath, overwrite=overwrite, **kwargs)
        if kwargs:
            raise TypeError(f"save_weights({os.fspath(filepath)!r}): unexpected arguments "
                            f"{sorted(kwargs)} for a Keras 2 .h5 file")
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError(f"{os.fspath(filepath)} exists and overwrite=False")
        weights_io.save_weights(self, filepath)
        return None

    def load_weights(self, filepath, skip_mismatch: bool = False, by_name: bool = False,
                     exclude: Sequence[str] | None = None, **kwargs):
        """Reads a Keras 2 HDF5 file for a .h5 name (``by_name`` as in Keras 2: False
        needs this very graph, True matches layer names); Keras 3's format otherwise.
        Returns mrcnn.weights' load report for .h5 files."""
        if not is_legacy_h5(filepath):
            if by_name or exclude:
                raise ValueError(
                    f"load_weights({os.fspath(filepath)!r}): by_name / exclude apply to "
                    "Keras 2 .h5 files only, not to Keras 3 .weights.h5 files")
            return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)
        if kwargs:
            raise TypeError(f"load_weights({os.fspath(filepath)!r}): unexpected arguments "
                            f"{sorted(kwargs)} for a Keras 2 .h5 file")
        return weights_io.load_weights(self, filepath, by_name=by_name, exclude=exclude,
                                       skip_mismatch=skip_mismatch)


class GraphModel(LegacyH5Weights, keras.Model):
    """The inference graph of MaskRCNN (a functional keras.Model) with Keras 2 style
    .h5 weight files."""
