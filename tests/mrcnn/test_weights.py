"""Tests for mrcnn.weights: the name-keyed legacy Keras 2 HDF5 reader/writer."""
import os

import h5py
import keras
import numpy as np
import pytest

from mrcnn import weights as W
from mrcnn.layers import BatchNorm, TimeDistributed
from tests.helpers.legacy_h5 import load_layout, write_legacy_h5

KL = keras.layers


############################################################
#  Small models in Matterport's naming scheme
############################################################

def _backbone(frozen: bool = False, nested: bool = True):
    """conv1 -> bn_conv1 -> res2a_branch2a, nested as `resnet_model` or flat."""
    inp = KL.Input((16, 16, 3), name="input_image")
    x = KL.Conv2D(4, 3, padding="same", name="conv1")(inp)
    x = BatchNorm(name="bn_conv1")(x)
    x = KL.Activation("relu")(x)
    x = KL.Conv2D(6, 1, name="res2a_branch2a")(x)
    if not nested:
        return inp, x
    model = keras.Model(inp, x, name="resnet_model")
    if frozen:
        model.get_layer("conv1").trainable = False
    return model


def _rpn_model(depth: int = 6):
    feat = KL.Input((None, None, depth), name="input_rpn_feature_map")
    shared = KL.Conv2D(8, 3, padding="same", name="rpn_conv_shared")(feat)
    logits = KL.Conv2D(2, 1, name="rpn_class_raw")(shared)
    deltas = KL.Conv2D(4, 1, name="rpn_bbox_pred")(shared)
    return keras.Model(feat, [logits, deltas], name="rpn_model")


def build_model(training: bool = True, mask_filters: int = 5, frozen: bool = False,
                extra_head: bool = False) -> keras.Model:
    """A Mask R-CNN shaped toy: nested backbone + nested RPN + TimeDistributed head.

    training=True adds weightless layers (and names) the inference variant lacks, as
    Matterport's training graph does.
    """
    backbone = _backbone(frozen=frozen)
    inp = KL.Input((16, 16, 3), name="input_image")
    feat = backbone(inp)  # [batch, 16, 16, 6]
    if training:
        feat = KL.Activation("linear", name="train_only_identity")(feat)
    logits, deltas = _rpn_model()(feat)
    rois = KL.Reshape((4, 96), name="roi_reshape")(
        KL.Cropping2D(((0, 8), (0, 8)), name="crop")(feat))  # [batch, 4 rois, 96]
    x = TimeDistributed(KL.Dense(mask_filters, name="mrcnn_mask_conv1_inner"),
                        name="mrcnn_mask_conv1")(rois)  # [batch, 4, mask_filters]
    x = TimeDistributed(BatchNorm(name="mrcnn_mask_bn1_inner"), name="mrcnn_mask_bn1")(x)
    outputs = [logits, deltas, x]
    if extra_head:
        outputs.append(KL.Dense(3, name="extra_head")(x))
    return keras.Model(inp, outputs, name="mask_rcnn")


def randomize(model: keras.Model, seed: int) -> dict:
    """Give every variable distinct random values; return {key: array}."""
    rng = np.random.default_rng(seed)
    values = {}
    for key, var in W.weight_map(model).items():
        value = rng.standard_normal(tuple(var.shape)).astype("float32")
        var.assign(value)
        values[key] = value
    return values


def current(model: keras.Model) -> dict:
    return {k: keras.ops.convert_to_numpy(v) for k, v in W.weight_map(model).items()}


############################################################
#  Keys and layout
############################################################

def test_weight_map_keys_follow_keras2_names():
    keys = set(W.weight_map(build_model()))
    expected = {
        "conv1/kernel", "conv1/bias", "res2a_branch2a/kernel", "res2a_branch2a/bias",
        "rpn_conv_shared/kernel", "rpn_class_raw/bias", "rpn_bbox_pred/kernel",
        "mrcnn_mask_conv1/kernel", "mrcnn_mask_conv1/bias",
        *(f"bn_conv1/{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance")),
        *(f"mrcnn_mask_bn1/{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance")),
    }
    assert expected <= keys
    assert len(keys) == 20  # 8 backbone + 6 rpn + 2 + 4 head
    tops = {e.key: e.top_level for e in W.weight_entries(build_model())}
    assert tops["bn_conv1/gamma"] == "resnet_model"
    assert tops["rpn_class_raw/kernel"] == "rpn_model"
    assert tops["mrcnn_mask_conv1/kernel"] == "mrcnn_mask_conv1"


def test_duplicate_keys_raise():
    a = KL.Input((4,))
    inner1 = keras.Model(a, KL.Dense(2, name="fc")(a), name="head_a")
    b = KL.Input((4,))
    inner2 = keras.Model(b, KL.Dense(2, name="fc")(b), name="head_b")
    inp = KL.Input((4,))
    model = keras.Model(inp, [inner1(inp), inner2(inp)])
    with pytest.raises(ValueError, match="Duplicate weight key 'fc/kernel'.*head_a.*head_b"):
        W.weight_map(model)


def test_save_writes_keras21_layout(tmp_path):
    model = build_model(frozen=True)
    path = tmp_path / "w.h5"
    W.save_weights(model, path)
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names == [layer.name for layer in model.layers]  # weightless ones too
        assert f.attrs["backend"] == b"tensorflow"
        assert f.attrs["keras_version"] == b"2.1.6"
        assert list(f["crop"].attrs["weight_names"]) == []
        nested = [n.decode() for n in f["resnet_model"].attrs["weight_names"]]
        # Keras 2 order: trainable first; conv1 is frozen so its weights come last.
        assert nested == ["bn_conv1/gamma:0", "bn_conv1/beta:0",
                          "res2a_branch2a/kernel:0", "res2a_branch2a/bias:0",
                          "conv1/kernel:0", "conv1/bias:0",
                          "bn_conv1/moving_mean:0", "bn_conv1/moving_variance:0"]
        td = [n.decode() for n in f["mrcnn_mask_bn1"].attrs["weight_names"]]
        assert td == ["mrcnn_mask_bn1/gamma:0", "mrcnn_mask_bn1/beta:0",
                      "mrcnn_mask_bn1/moving_mean:0", "mrcnn_mask_bn1/moving_variance:0"]
        assert f["resnet_model/conv1/kernel:0"].shape == (3, 3, 3, 4)
    layout = W.read_layout(path)
    assert list(layout) == names
    assert layout["mrcnn_mask_conv1"] == [("mrcnn_mask_conv1/kernel:0", (96, 5)),
                                          ("mrcnn_mask_conv1/bias:0", (5,))]


############################################################
#  Loading
############################################################

def test_round_trip_into_fresh_model(tmp_path):
    source = build_model()
    values = randomize(source, seed=1)
    path = tmp_path / "w.h5"
    W.save_weights(source, path)
    target = build_model()
    report = W.load_weights(target, path)
    loaded = current(target)
    assert set(report.loaded) == set(values)
    assert not (report.missing_in_file or report.unused_in_file or report.mismatched)
    for key, value in values.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


def test_load_into_graph_with_other_layers(tmp_path):
    training = build_model(training=True, extra_head=True)
    values = randomize(training, seed=2)
    path = tmp_path / "train.h5"
    W.save_weights(training, path)
    inference = build_model(training=False)
    report = W.load_weights(inference, path)
    assert sorted(report.unused_in_file) == ["extra_head/bias", "extra_head/kernel"]
    assert report.missing_in_file == []
    for key, value in current(inference).items():
        np.testing.assert_array_equal(value, values[key], err_msg=key)
    # and the other way round: the training graph's extra head is reported missing
    training2 = build_model(training=True, extra_head=True)
    W.save_weights(inference, tmp_path / "inf.h5")
    report2 = W.load_weights(training2, tmp_path / "inf.h5")
    assert sorted(report2.missing_in_file) == ["extra_head/bias", "extra_head/kernel"]
    assert "missing in file 2" in report2.summary()


def test_shuffled_nested_group_loads_by_name(tmp_path):
    source = build_model()
    values = randomize(source, seed=3)
    path = tmp_path / "w.h5"
    W.save_weights(source, path)
    with h5py.File(path, "a") as f:
        for group in ("resnet_model", "rpn_model"):
            names = list(f[group].attrs["weight_names"])
            f[group].attrs["weight_names"] = np.array(names[::-1])
    target = build_model(frozen=True)  # a different trainable split: order irrelevant
    W.load_weights(target, path)
    for key, value in current(target).items():
        np.testing.assert_array_equal(value, values[key], err_msg=key)


def test_flat_file_fills_nested_model(tmp_path):
    inp, out = _backbone(nested=False)
    flat = keras.Model(inp, out, name="flat_resnet")
    values = randomize(flat, seed=4)
    path = tmp_path / "imagenet.h5"
    W.save_weights(flat, path)
    assert "conv1" in W.read_layout(path)  # one group per leaf layer
    target = build_model()
    report = W.load_weights(target, path)
    assert sorted(report.loaded) == sorted(values)
    got = current(target)
    for key, value in values.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert "rpn_conv_shared/kernel" in report.missing_in_file


def test_model_weights_group(tmp_path):
    source = build_model()
    values = randomize(source, seed=5)
    plain, wrapped = tmp_path / "plain.h5", tmp_path / "wrapped.h5"
    W.save_weights(source, plain)
    with h5py.File(plain, "r") as src, h5py.File(wrapped, "w") as dst:
        group = dst.create_group("model_weights")
        for name in src:
            src.copy(name, group)
        for key, value in src.attrs.items():
            group.attrs[key] = value
    target = build_model()
    W.load_weights(target, wrapped)
    for key, value in current(target).items():
        np.testing.assert_array_equal(value, values[key], err_msg=key)


def test_exclude_top_level_and_leaf(tmp_path, caplog):
    source = build_model()
    randomize(source, seed=6)
    path = tmp_path / "w.h5"
    W.save_weights(source, path)
    target = build_model()
    before = current(target)
    with caplog.at_level("WARNING", logger="mrcnn.weights"):
        report = W.load_weights(target, path, exclude=["rpn_model", "mrcnn_mask_conv1",
                                                       "bn_conv1", "mrcnn_class_logit"])
    # A misspelt name (mrcnn_class_logits) excludes nothing: said, not refused.
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "exclude: no layer with weights named 'mrcnn_class_logit' in the model; those "
        "names exclude nothing"]
    after = current(target)
    excluded = {k for k in before if k.split("/")[0] in
                ("rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred",
                 "mrcnn_mask_conv1", "bn_conv1")}
    assert set(report.skipped_excluded) == excluded
    assert report.unused_in_file == []  # excluded file weights are not "unused"
    for key in before:
        same = np.array_equal(before[key], after[key])
        assert same == (key in excluded), key


def test_shape_mismatch_error_and_skip(tmp_path):
    W.save_weights(build_model(mask_filters=5), tmp_path / "w.h5")
    target = build_model(mask_filters=7)
    with pytest.raises(W.ShapeMismatchError) as err:  # a ValueError, as before
        W.load_weights(target, tmp_path / "w.h5")
    assert isinstance(err.value, ValueError)
    text = str(err.value)
    assert "mrcnn_mask_conv1" in text and "(96, 7)" in text and "(96, 5)" in text
    before = current(target)
    report = W.load_weights(target, tmp_path / "w.h5", skip_mismatch=True)
    assert err.value.mismatched == report.mismatched
    mismatched = {m[0] for m in report.mismatched}
    assert ("mrcnn_mask_conv1/kernel", (96, 7), (96, 5)) in report.mismatched
    assert {"mrcnn_mask_bn1/gamma", "mrcnn_mask_conv1/bias"} <= mismatched
    after = current(target)
    np.testing.assert_array_equal(before["mrcnn_mask_conv1/kernel"],
                                  after["mrcnn_mask_conv1/kernel"])
    assert "conv1/kernel" in report.loaded


def test_mismatch_error_assigns_nothing(tmp_path):
    source = build_model(mask_filters=5)
    randomize(source, seed=7)
    W.save_weights(source, tmp_path / "w.h5")
    target = build_model(mask_filters=7)
    before = current(target)
    with pytest.raises(ValueError):
        W.load_weights(target, tmp_path / "w.h5")
    after = current(target)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_by_name_false_topological(tmp_path):
    source = build_model()
    values = randomize(source, seed=8)
    W.save_weights(source, tmp_path / "w.h5")
    target = build_model(training=False)  # same weighted layers, other weightless ones
    W.load_weights(target, tmp_path / "w.h5", by_name=False)
    for key, value in current(target).items():
        np.testing.assert_array_equal(value, values[key], err_msg=key)
    with pytest.raises(ValueError, match="by_name=False.*only in the model.*extra_head"):
        W.load_weights(build_model(extra_head=True), tmp_path / "w.h5", by_name=False)


def test_by_name_false_accepts_other_group_order(tmp_path):
    source = build_model()
    values = randomize(source, seed=9)
    path = tmp_path / "w.h5"
    W.save_weights(source, path)
    with h5py.File(path, "a") as f:
        f.attrs["layer_names"] = f.attrs["layer_names"][::-1]
    target = build_model()
    W.load_weights(target, path, by_name=False)
    for key, value in current(target).items():
        np.testing.assert_array_equal(value, values[key], err_msg=key)


def test_keras1_style_names_load_by_position(tmp_path):
    path = tmp_path / "old.h5"
    kernel = np.arange(3 * 3 * 3 * 4, dtype="float32").reshape(3, 3, 3, 4)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"conv1"])
        g = f.create_group("conv1")
        g.attrs["weight_names"] = np.array([b"conv1_W:0", b"conv1_b:0"])
        g["conv1_W:0"] = kernel
        g["conv1_b:0"] = np.ones(4, "float32")
    target = build_model()
    report = W.load_weights(target, path)
    assert report.by_position == ["conv1"]
    assert sorted(report.loaded) == ["conv1/bias", "conv1/kernel"]
    np.testing.assert_array_equal(current(target)["conv1/kernel"], kernel)


############################################################
#  Bad files
############################################################

def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        W.load_weights(build_model(), "/tmp/definitely/nope.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        W.load_weights(build_model(), path)


def test_hdf5_without_layer_names(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="expected a root.*layer_names"):
        W.load_weights(build_model(), path)


def test_file_sharing_nothing(tmp_path):
    inp = KL.Input((3,))
    other = keras.Model(inp, KL.Dense(2, name="unrelated_fc")(inp))
    W.save_weights(other, tmp_path / "other.h5")
    with pytest.raises(ValueError, match="shares no weight.*resnet_model.*unrelated_fc"):
        W.load_weights(build_model(), tmp_path / "other.h5")


def test_chunked_attributes_are_read(tmp_path):
    path = tmp_path / "chunked.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names0"] = np.array([b"conv1"])
        f.attrs["layer_names1"] = np.array([b"crop"])
        g = f.create_group("conv1")
        g.attrs["weight_names"] = np.array([b"conv1/kernel:0"])
        g["conv1/kernel:0"] = np.zeros((3, 3, 3, 4), "float32")
        f.create_group("crop").attrs["weight_names"] = []
    assert W.read_layout(path) == {"conv1": [("conv1/kernel:0", (3, 3, 3, 4))],
                                   "crop": []}


############################################################
#  Atomic writing
############################################################

def _failing_writer(real):
    calls = []

    def write(f, top, entries):
        calls.append(top.name)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        real(f, top, entries)
    return write


def test_atomic_write_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "_write_layer_group", _failing_writer(W._write_layer_group))
    with pytest.raises(OSError, match="simulated"):
        W.save_weights(build_model(), tmp_path / "w.h5")
    assert os.listdir(tmp_path) == []


def test_atomic_write_keeps_existing_file(tmp_path, monkeypatch):
    path = tmp_path / "w.h5"
    W.save_weights(build_model(), path)
    original = path.read_bytes()
    monkeypatch.setattr(W, "_write_layer_group", _failing_writer(W._write_layer_group))
    with pytest.raises(OSError):
        W.save_weights(build_model(), path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["w.h5"]


############################################################
#  Legacy Matterport layout (synthesized from tests/data)
############################################################

LEGACY_GROUPS = ["conv1", "bn_conv1", "rpn_model", "mrcnn_bbox_fc"]


def _matterport_standin() -> keras.Model:
    """conv1/bn_conv1 as a nested resnet_model, the real rpn_model, mrcnn_bbox_fc."""
    inp = KL.Input((32, 32, 3), name="input_image")
    x = KL.Conv2D(64, 7, strides=2, padding="same", name="conv1")(inp)
    x = BatchNorm(name="bn_conv1")(x)
    backbone = keras.Model(inp, x, name="resnet_model")
    feat_in = KL.Input((None, None, 256))
    shared = KL.Conv2D(512, 3, padding="same", name="rpn_conv_shared")(feat_in)
    rpn = keras.Model(feat_in, [KL.Conv2D(6, 1, name="rpn_class_raw")(shared),
                                KL.Conv2D(12, 1, name="rpn_bbox_pred")(shared)],
                      name="rpn_model")
    image = KL.Input((32, 32, 3), name="input_image")
    c1 = backbone(image)  # [batch, 16, 16, 64]
    p = KL.Conv2D(256, 1, name="fpn_p2_standin")(c1)  # not in the file
    logits, deltas = rpn(p)
    fc = KL.Input((3, 1024), name="input_fc")
    bbox = TimeDistributed(KL.Dense(324, name="mrcnn_bbox_fc_inner"),
                           name="mrcnn_bbox_fc")(fc)  # [batch, 3, 81 * 4]
    return keras.Model([image, fc], [logits, deltas, bbox], name="mask_rcnn")


def test_legacy_layout_subset_loads_by_name(tmp_path):
    layout = load_layout("matterport_coco")
    path = tmp_path / "coco_subset.h5"
    written = write_legacy_h5(path, layout, groups=LEGACY_GROUPS, shuffle_nested=True)
    assert set(W.read_layout(path)) == set(layout["all_layer_names_training"]) - (
        set(layout["layers"]) - set(LEGACY_GROUPS))
    model = _matterport_standin()
    report = W.load_weights(model, path)
    assert sorted(report.loaded) == sorted(written)
    assert sorted(report.missing_in_file) == ["fpn_p2_standin/bias", "fpn_p2_standin/kernel"]
    assert report.unused_in_file == []
    got = current(model)
    for key, value in written.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_legacy_full_layout_reports_unused(tmp_path):
    layout = load_layout("matterport_coco")
    path = tmp_path / "coco_full.h5"
    written = write_legacy_h5(path, layout, fill="zeros", model_weights=True)
    assert os.path.getsize(path) < 5_000_000  # unallocated datasets
    assert len(written) == sum(len(v) for v in layout["layers"].values())
    model = _matterport_standin()
    report = W.load_weights(model, path, exclude=["mrcnn_bbox_fc"])
    assert len(report.loaded) == 2 + 4 + 6
    assert sorted(report.skipped_excluded) == ["mrcnn_bbox_fc/bias", "mrcnn_bbox_fc/kernel"]
    assert len(report.unused_in_file) == len(written) - 12 - 2
    assert "res5c_branch2c/kernel" in report.unused_in_file
    assert np.all(current(model)["conv1/kernel"] == 0)


def test_the_report_shows_counts_and_a_few_names_not_every_key():
    """A notebook cell ending in model.load_weights(...) displays the report's repr."""
    loaded = [f"res{i}_branch/kernel" for i in range(400)]
    whole = W.LoadReport(loaded=loaded)
    assert repr(whole) == ("<LoadReport: Loaded 400 weights; excluded 0, missing in file 0, "
                           "unused in file 0, shape mismatch 0.>")
    partial = W.LoadReport(loaded=loaded, missing_in_file=[f"head{i}/bias" for i in range(5)],
                           mismatched=[("mrcnn_class_logits/kernel", (8, 81), (8, 2))])
    shown = repr(partial)
    assert shown.splitlines() == [
        "<LoadReport: Loaded 400 weights; excluded 0, missing in file 5, unused in file 0, "
        "shape mismatch 1.",
        "  missing in file: head0/bias, head1/bias, head2/bias, ... (+2)",
        "  shape mismatch (key, model, file): ('mrcnn_class_logits/kernel', (8, 81), (8, 2))>"]
    assert partial.loaded == loaded  # the fields keep every key
