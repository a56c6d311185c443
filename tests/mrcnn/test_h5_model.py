"""keras_model.save_weights / load_weights with Matterport's .h5 names (mrcnn.h5_model)."""
import h5py
import keras
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn import weights as weights_io
from mrcnn.h5_model import is_legacy_h5
from tests.helpers.distributed import snapshot
from tests.helpers.shapes_dataset import tiny_config


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("h5_model"))
    keras.utils.set_random_seed(3)
    training = modellib.MaskRCNN("training", tiny_config(), model_dir)
    keras.utils.set_random_seed(4)
    inference = modellib.MaskRCNN("inference", tiny_config(), model_dir)
    return training, inference


def test_legacy_names():
    assert is_legacy_h5("mask_rcnn_shapes_0001.h5") and is_legacy_h5("x.HDF5")
    assert not is_legacy_h5("x.weights.h5") and not is_legacy_h5("x.keras")


def test_training_keras_model_h5_loads_into_inference_by_name(models, tmp_path):
    training, inference = models
    path = tmp_path / "mask_rcnn_user.h5"
    training.keras_model.save_weights(str(path))  # Keras 3 alone: "must end in .weights.h5"
    with h5py.File(path, "r") as f:  # the Keras 2 layout that Matterport's loader reads
        assert "layer_names" in f.attrs and "mrcnn_class_conv1" in f
    report = inference.keras_model.load_weights(str(path), by_name=True)
    assert not report.missing_in_file and report.loaded
    saved, loaded = snapshot(training.keras_model), snapshot(inference.keras_model)
    shared = saved.keys() & loaded.keys()
    assert len(shared) == len(loaded)
    for key in shared:
        np.testing.assert_array_equal(loaded[key], saved[key], err_msg=key)


def test_same_graph_round_trip_without_by_name(models, tmp_path):
    _, inference = models
    path = tmp_path / "same.h5"
    before = snapshot(inference.keras_model)
    inference.keras_model.save_weights(path)
    for variable in weights_io.weight_map(inference.keras_model).values():
        variable.assign(np.zeros(variable.shape, "float32"))
    inference.keras_model.load_weights(path)  # Keras 2's default: by_name=False
    after = snapshot(inference.keras_model)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    with pytest.raises(FileExistsError, match="overwrite=False"):
        inference.keras_model.save_weights(path, overwrite=False)


def test_keras3_weights_files_keep_keras3_behaviour(models, tmp_path):
    _, inference = models
    path = tmp_path / "native.weights.h5"
    before = snapshot(inference.keras_model)
    inference.keras_model.save_weights(str(path))
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f.attrs  # Keras 3's own layout
    inference.keras_model.load_weights(str(path))
    for key, value in snapshot(inference.keras_model).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    with pytest.raises(ValueError, match="Keras 2 .h5 files only"):
        inference.keras_model.load_weights(str(path), by_name=True)


def test_h5_file_of_another_graph_is_refused_naming_the_layers(models, tmp_path):
    _, inference = models
    # The training and inference graphs have the same weighted layers (they load
    # topologically too, test above); a file of another model does not.
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="other_dense")])
    path = tmp_path / "other.h5"
    weights_io.save_weights(other, str(path))
    with pytest.raises(ValueError, match="other_dense"):
        inference.keras_model.load_weights(str(path))
    with pytest.raises(ValueError, match=r"shares no weight with the model.*other_dense"):
        inference.keras_model.load_weights(str(path), by_name=True)
