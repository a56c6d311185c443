"""SiameseMaskRCNN against the released checkpoints' layout (tests/data/*_layout.json).

The full-size small (resnet50, FPN 256, FC 512) and large (FC 1024) graphs are built
and compared name by name and shape by shape with the layout of the released Keras 2.1
files; files written in that layout (random values, every weight order a released file
can have) load by name, completely. Only one full-size detection is run (512 px).
"""
import h5py
import numpy as np
import pytest

from mrcnn import weights as weights_io
from siamese_mrcnn.config import preset
from siamese_mrcnn.model import SiameseMaskRCNN
from tests.helpers.legacy_h5 import load_layout, write_legacy_h5

LAYOUTS = {"small": load_layout("siamese_small"), "large": load_layout("siamese_large")}
# Full-size configurations, one image at a time (no multi-GPU wrapper on CPU).
CONFIGS = {"small": lambda: preset("small_eval"), "large": lambda: preset("large_eval")}

_models: dict = {}


def full_model(size: str, mode: str) -> SiameseMaskRCNN:
    """Builds each full-size model once per test session (a few seconds each)."""
    if (size, mode) not in _models:
        _models[(size, mode)] = SiameseMaskRCNN(mode, CONFIGS[size](), "/tmp/unused_logs")
    return _models[(size, mode)]


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    _models.clear()


def model_layout(model: SiameseMaskRCNN) -> dict:
    """{top-level layer: {"layer/var:0": shape}} as mrcnn.weights keys the model."""
    layout: dict = {}
    for entry in weights_io.weight_entries(model.keras_model):
        layout.setdefault(entry.top_level, {})[entry.key + ":0"] = tuple(entry.variable.shape)
    return layout


def file_layout(layout: dict) -> dict:
    return {group: {name: tuple(shape) for name, shape in weights}
            for group, weights in layout["layers"].items()}


def assert_loaded(model: SiameseMaskRCNN, values: dict, keys=None) -> None:
    """Every model variable (or those of `keys`) equals the value written to the file."""
    variables = weights_io.weight_map(model.keras_model)
    for key in (keys if keys is not None else variables):
        np.testing.assert_array_equal(np.asarray(variables[key]), values[key], err_msg=key)


def assert_clean(report, count: int) -> None:
    assert len(report.loaded) == count
    assert not report.missing_in_file
    assert not report.unused_in_file
    assert not report.mismatched
    assert not report.skipped_excluded


# ---------------------------------------------------------------- names and shapes
@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("mode", ["training", "inference"])
def test_weight_names_and_shapes_equal_the_released_layout(size, mode):
    layout = LAYOUTS[size]
    model = full_model(size, mode)
    weighted = [layer.name for layer in model.keras_model.layers if layer.weights]
    expected_order = layout["layer_names"] if mode == "training" else layout[
        "layer_names_inference"]
    assert weighted == expected_order
    assert model_layout(model) == file_layout(layout)
    total = sum(int(np.prod(s)) for group in file_layout(layout).values() for s in group.values())
    assert total == layout["meta"]["total_params"] == model.keras_model.count_params()


def test_frcnn_graph_has_no_mask_layers():
    config = preset("small_eval", MODEL="frcnn")
    for mode in ("training", "inference"):
        model = SiameseMaskRCNN(mode, config, "/tmp/unused_logs")
        names = [layer.name for layer in model.keras_model.layers]
        assert not [n for n in names if n.startswith("mrcnn_mask")]
        expected = {g: w for g, w in file_layout(LAYOUTS["small"]).items()
                    if not g.startswith("mrcnn_mask")}
        assert model_layout(model) == expected


# ---------------------------------------------------------------- released files
@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("released") / "small_siamese_mrcnn_0160.h5"
    values = write_legacy_h5(path, LAYOUTS["small"], seed=1)
    return path, values


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_small_layout_file_loads_completely(small_file, mode):
    path, values = small_file
    model = full_model("small", mode)
    report = model.load_weights(str(path))
    assert_clean(report, len(values))
    assert_loaded(model, values)
    # A released file is no resume point of ours: training would start at epoch 0.
    assert model.epoch == 0


def test_large_layout_file_loads_completely(tmp_path):
    path = tmp_path / "large_siamese_mrcnn_coco_full_0320.h5"
    values = write_legacy_h5(path, LAYOUTS["large"], seed=2, model_weights=True)
    model = full_model("large", "inference")
    report = model.load_weights(str(path))
    assert_clean(report, len(values))
    assert_loaded(model, values)


@pytest.mark.parametrize("stage", ["heads", "4+"])
def test_resnet_group_saved_in_another_stage_loads_by_name(tmp_path, stage):
    """A checkpoint saved while part of the backbone was frozen lists resnet_model's
    weights in another order; loading goes by name, so the order does not matter."""
    layout = LAYOUTS["small"]
    shapes = dict(layout["layers"]["resnet_model"])
    order = layout["nested_weight_order_other_stages"][stage]["resnet_model"]
    assert sorted(order) == sorted(shapes) and order != list(shapes)
    other = dict(layout, layers={"resnet_model": [[n, shapes[n]] for n in order]})
    path = tmp_path / "siamese_mrcnn_0100.h5"
    values = write_legacy_h5(path, other, groups=["resnet_model"], seed=3)
    with h5py.File(path, "r") as f:  # the file really has the other order
        stored = [n.decode() for n in f["resnet_model"].attrs["weight_names"]]
    assert stored == order
    model = full_model("small", "inference")
    report = model.load_weights(str(path))
    assert len(report.loaded) == len(order) and not report.unused_in_file
    assert not report.mismatched
    assert_loaded(model, values, keys=values)


def test_model_weights_wrapped_small_file_loads(tmp_path):
    path = tmp_path / "wrapped.h5"
    values = write_legacy_h5(path, LAYOUTS["small"], seed=4, model_weights=True,
                             shuffle_nested=True)
    model = full_model("small", "training")
    assert_clean(model.load_weights(str(path)), len(values))
    assert_loaded(model, values)


def test_exclude_leaves_layers_untouched(small_file):
    path, values = small_file
    model = full_model("small", "inference")
    variables = weights_io.weight_map(model.keras_model)
    for key in ("mrcnn_class_logits/kernel", "fpn_distance_P3/bias"):
        variables[key].assign(np.full(variables[key].shape, 7.0, dtype=np.float32))
    report = model.load_weights(str(path), exclude=["mrcnn_class_logits", "fpn_distance_P3"])
    assert sorted(report.skipped_excluded) == sorted([
        "mrcnn_class_logits/kernel", "mrcnn_class_logits/bias", "fpn_distance_P3/kernel",
        "fpn_distance_P3/bias"])
    assert np.all(np.asarray(variables["mrcnn_class_logits/kernel"]) == 7.0)
    assert np.all(np.asarray(variables["fpn_distance_P3/bias"]) == 7.0)
    np.testing.assert_array_equal(np.asarray(variables["fpn_distance_P2/bias"]),
                                  values["fpn_distance_P2/bias"])


# ---------------------------------------------------------------- ImageNet backbone
def imagenet_layout() -> dict:
    """A flat keras ResNet-50 file: one group per layer (conv1, bn_conv1, ...)."""
    order = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")
    groups: dict = {}
    for name, shape in LAYOUTS["small"]["layers"]["resnet_model"]:
        groups.setdefault(name.split("/")[0], []).append([name, shape])
    for entries in groups.values():
        entries.sort(key=lambda e: order.index(e[0].split("/")[1].split(":")[0]))
    return {"layers": groups}


def test_flat_imagenet_file_fills_the_nested_resnet(tmp_path):
    layout = imagenet_layout()
    assert list(layout["layers"])[:3] == ["conv1", "bn_conv1", "res2a_branch2a"]
    path = tmp_path / "imagenet_1k.h5"
    weightless = ["input_1", "conv1_pad", "activation_1", "max_pooling2d_1"]
    values = write_legacy_h5(path, layout, seed=5,
                             layer_names=weightless + list(layout["layers"]))
    model = full_model("small", "inference")
    variables = weights_io.weight_map(model.keras_model)
    before = {k: np.asarray(v).copy() for k, v in variables.items() if k not in values}
    report = model.load_imagenet_weights(weights_path=str(path))
    assert len(report.loaded) == len(values) == 318
    assert not report.unused_in_file and not report.mismatched
    assert sorted(report.missing_in_file) == sorted(before)  # heads are left alone
    assert_loaded(model, values, keys=values)
    for key, value in before.items():
        np.testing.assert_array_equal(np.asarray(variables[key]), value)
    assert model.epoch == 0


def test_imagenet_file_found_in_checkpoint_dir_or_missing(tmp_path):
    config = preset("small_eval", CHECKPOINT_DIR=str(tmp_path))
    model = full_model("small", "inference")
    model.config = config
    try:
        (tmp_path / "imagenet_771.h5").write_bytes(b"")
        assert model.get_imagenet_weights("imagenet-771") == str(tmp_path / "imagenet_771.h5")
        # The same rule as MaskRCNN.get_imagenet_weights: a missing file is an error
        # that names it, a path is taken as it is.
        with pytest.raises(FileNotFoundError, match="imagenet_687.h5.*never downloaded"):
            model.get_imagenet_weights("imagenet-687")
        with pytest.raises(FileNotFoundError, match="imagenet_687.h5"):
            model.load_imagenet_weights("imagenet-687")
        assert model.get_imagenet_weights(str(tmp_path / "imagenet_771.h5")) == str(
            tmp_path / "imagenet_771.h5")
        with pytest.raises(FileNotFoundError, match="never downloaded"):
            model.load_imagenet_weights(weights_path=str(tmp_path / "nothing.h5"))
        with pytest.raises(ValueError, match="imagenet-1k"):
            model.get_imagenet_weights("imagenet-22k")
    finally:
        model.config = CONFIGS["small"]()


# ---------------------------------------------------------------- loaded model detects
def test_model_from_a_released_layout_file_detects(small_file, tmp_path):
    """Loads a released-layout file whose values make sense (positive variances, a
    class bias favouring 'match') and runs one full-size detection."""
    path, _ = small_file
    sane = tmp_path / "sane.h5"
    with h5py.File(path, "r") as src, h5py.File(sane, "w") as dst:
        for key in src.attrs:
            dst.attrs[key] = src.attrs[key]
        for group in src:
            src.copy(src[group], dst, name=group)
        for group in dst.values():
            for name in group.attrs["weight_names"] if group.attrs["weight_names"].size else []:
                name = name.decode()
                if name.endswith("moving_variance:0"):
                    group[name][...] = np.abs(group[name][()]) + 1.0
        dst["mrcnn_class_logits"]["mrcnn_class_logits/bias:0"][...] = [0.0, 10.0]
    model = full_model("small", "inference")
    model.load_weights(str(sane))
    rng = np.random.default_rng(6)
    query = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    reference = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    (result,) = model.detect([reference], [query])
    n = len(result["scores"])
    assert 0 < n <= model.config.DETECTION_MAX_INSTANCES
    assert result["rois"].shape == (n, 4) and result["class_ids"].shape == (n,)
    assert result["masks"].shape == (300, 400, n) and result["masks"].dtype == bool
    assert np.all(result["class_ids"] == 1)
    assert np.all(np.diff(result["scores"]) <= 0)
    assert np.all(result["rois"] >= 0)
    assert np.all(result["rois"][:, [0, 2]] <= 300) and np.all(result["rois"][:, [1, 3]] <= 400)
