"""Tests for mrcnn.model.MaskRCNN: graphs and layer names, legacy weights, checkpoint
paths, and the inference API (detect, detect_molded, run_graph, molding).

Models are built once per module (fixtures); nothing here trains. Training behaviour is
in test_training.py.
"""
import logging
import math
import os
import re

import h5py
import keras
import numpy as np
import pytest

from mrcnn import model as modellib
from mrcnn import weights as weights_io
from mrcnn.config import Config
from tests.helpers.legacy_h5 import load_layout, write_legacy_h5
from tests.helpers.shapes_dataset import ShapesDataset, ShapeSpec, tiny_config

LOSS_LAYERS = ["rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
               "mrcnn_mask_loss"]
HEAD_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
# Layer names shared by the training and the inference graph (Matterport's contract).
COMMON_LAYERS = (
    ["conv1", "bn_conv1", "res2a_branch2a", "bn2a_branch2a", "res2a_branch1", "bn2a_branch1",
     "res3a_branch2b", "res4a_branch2c", "res5a_branch1", "bn5a_branch2c",
     "fpn_c5p5", "fpn_c4p4", "fpn_c3p3", "fpn_c2p2", "fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5",
     "fpn_p6", "rpn_model", "ROI", "roi_align_classifier", "roi_align_mask",
     "mrcnn_class_conv1", "mrcnn_class_bn1", "mrcnn_class_conv2", "mrcnn_class_bn2",
     "mrcnn_class_logits", "mrcnn_class", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask_deconv",
     "mrcnn_mask", "input_image", "input_image_meta"]
    + [f"mrcnn_mask_conv{i}" for i in range(1, 5)]
    + [f"mrcnn_mask_bn{i}" for i in range(1, 5)])


class CocoConfig(Config):
    """Matterport's COCO inference setup (resnet101, 81 classes), one image."""
    NAME = "coco"
    NUM_CLASSES = 81
    IMAGES_PER_GPU = 1


def _layer_names(model: keras.Model) -> set:
    return {layer.name for layer in model.layers}


def _snapshot(model: keras.Model) -> dict:
    """{weight key: numpy copy} of every variable."""
    return {k: np.array(v.numpy()) for k, v in weights_io.weight_map(model).items()}


def _model_layout(model: keras.Model) -> dict:
    """{top-level layer: {(weight_name, shape), ...}} as a Keras 2 file would list it."""
    layout: dict = {}
    for e in weights_io.weight_entries(model):
        layout.setdefault(e.top_level, set()).add((f"{e.key}:0", tuple(e.variable.shape)))
    return layout


def _file_layout(layout: dict, drop=lambda group: False) -> dict:
    return {g: {(w, tuple(s)) for w, s in ws} for g, ws in layout["layers"].items()
            if not drop(g)}


############################################################
#  Fixtures: models built once
############################################################

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="module")
def tiny_training(model_dir):
    keras.utils.set_random_seed(0)
    return modellib.MaskRCNN("training", tiny_config(), model_dir)


@pytest.fixture(scope="module")
def tiny_inference(model_dir):
    # Random weights: with no confidence threshold every non-background ROI is a
    # detection, so outputs are never empty.
    keras.utils.set_random_seed(1)
    return modellib.MaskRCNN("inference", tiny_config(DETECTION_MIN_CONFIDENCE=0.0),
                             model_dir)


@pytest.fixture(scope="module")
def coco_layout():
    return load_layout("matterport_coco")


@pytest.fixture(scope="module")
def coco_model(model_dir):
    """MaskRCNN(inference, resnet101, NUM_CLASSES=81): mask_rcnn_coco.h5's graph."""
    return modellib.MaskRCNN("inference", CocoConfig(), model_dir)


@pytest.fixture(scope="module")
def coco_h5(tmp_path_factory, coco_layout):
    """A file laid out like mask_rcnn_coco.h5 with seeded random values (all 64M),
    the nested rpn_model group in shuffled order. Returns (path, {key: array})."""
    path = str(tmp_path_factory.mktemp("coco") / "mask_rcnn_coco.h5")
    values = write_legacy_h5(path, coco_layout, shuffle_nested=True, seed=3)
    return path, values


@pytest.fixture(scope="module")
def image_64():
    """A 64 x 64 shapes image (the tiny model's input size)."""
    return ShapesDataset.from_specs(
        [[ShapeSpec("square", 18, 18, 10), ShapeSpec("circle", 44, 42, 11)]]).load_image(0)


############################################################
#  Graphs
############################################################

def test_training_graph_has_matterport_layers(tiny_training):
    model = tiny_training.keras_model
    names = _layer_names(model)
    expected = COMMON_LAYERS + LOSS_LAYERS + [
        "proposal_targets", "output_rois", "input_rpn_match", "input_rpn_bbox",
        "input_gt_class_ids", "input_gt_boxes", "input_gt_masks"]
    assert not [n for n in expected if n not in names]
    assert "mrcnn_detection" not in names
    rpn = model.get_layer("rpn_model")
    assert {"rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"} <= _layer_names(rpn)
    # The last five outputs are the scalar loss components, in Matterport's order.
    assert [t.shape for t in model.outputs[-5:]] == [()] * 5
    assert model.loss_names == LOSS_LAYERS


def test_inference_graph_has_matterport_layers(tiny_inference):
    model = tiny_inference.keras_model
    names = _layer_names(model)
    assert not [n for n in COMMON_LAYERS + ["mrcnn_detection", "input_anchors"]
                if n not in names]
    assert not names & set(LOSS_LAYERS + ["proposal_targets"])
    assert [t.name for t in model.inputs] == ["input_image", "input_image_meta",
                                              "input_anchors"]
    config = tiny_inference.config
    # detections, mrcnn_class, mrcnn_bbox, mrcnn_mask, rpn_rois, rpn_class, rpn_bbox
    assert len(model.outputs) == 7
    assert tuple(model.outputs[0].shape[1:]) == (config.DETECTION_MAX_INSTANCES, 6)
    assert tuple(model.outputs[3].shape[2:]) == (28, 28, config.NUM_CLASSES)


def test_resnet101_coco_graph_matches_mask_rcnn_coco_layout(coco_model, coco_layout):
    """Every group, weight name and shape of mask_rcnn_coco.h5 and nothing else."""
    model_layout = _model_layout(coco_model.keras_model)
    file_layout = _file_layout(coco_layout)
    assert sorted(model_layout) == sorted(file_layout)
    differing = [g for g in file_layout if model_layout[g] != file_layout[g]]
    assert differing == []
    n_params = sum(math.prod(s) for ws in file_layout.values() for _, s in ws)
    assert n_params == coco_layout["meta"]["total_params"] == \
        coco_model.keras_model.count_params()
    # inspect_model reads the last stage-4 activation of ResNet-101 by name.
    assert "res4w_out" in _layer_names(coco_model.keras_model)


def test_resnet50_graph_is_resnet101_without_extra_stage4_blocks(model_dir, coco_layout):
    class Resnet50Config(CocoConfig):
        BACKBONE = "resnet50"

    model = modellib.MaskRCNN("inference", Resnet50Config(), model_dir).keras_model
    # resnet101 stage 4 has blocks a..w (23), resnet50 a..f (6).
    extra = re.compile(r"(res|bn)4[g-w]_")
    assert "res4f_branch2c" in _layer_names(model)
    assert _model_layout(model) == _file_layout(coco_layout, drop=extra.match)


def _small_backbone(input_image, stage5=True, train_bn=False):
    """A callable BACKBONE: five stride-2 convs, C1..C5 at strides 2..32."""
    x = input_image
    outputs = []
    for i, filters in enumerate([8, 8, 16, 16, 32], start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu",
                                name=f"small_backbone_conv{i}")(x)
        outputs.append(x)
    return outputs


def _small_backbone_shapes(image_shape):
    return np.array([[math.ceil(image_shape[0] / s), math.ceil(image_shape[1] / s)]
                     for s in (4, 8, 16, 32, 64)])


def test_callable_backbone(model_dir, image_64):
    config = tiny_config(BACKBONE=_small_backbone,
                         COMPUTE_BACKBONE_SHAPE=_small_backbone_shapes,
                         DETECTION_MIN_CONFIDENCE=0.0)
    assert config.BACKBONE is _small_backbone
    model = modellib.MaskRCNN("inference", config, model_dir)
    names = _layer_names(model.keras_model)
    assert {"small_backbone_conv5", "fpn_c5p5", "mrcnn_detection"} <= names
    assert "conv1" not in names
    # Anchors come from COMPUTE_BACKBONE_SHAPE: 3 ratios per cell of each level.
    assert model.get_anchors(config.IMAGE_SHAPE).shape == (3 * (256 + 64 + 16 + 4 + 1), 4)
    result = model.detect([image_64])[0]
    assert result["masks"].shape[:2] == (64, 64)
    assert result["rois"].shape == (result["class_ids"].shape[0], 4)


############################################################
#  Legacy weights (mask_rcnn_coco.h5 layout)
############################################################

def test_legacy_coco_file_loads_every_array(coco_model, coco_h5):
    path, values = coco_h5
    report = coco_model.load_weights(path, by_name=True)
    assert sorted(report.loaded) == sorted(values)
    assert (report.missing_in_file, report.unused_in_file, report.mismatched,
            report.skipped_excluded) == ([], [], [], [])
    model_values = weights_io.weight_map(coco_model.keras_model)
    assert sorted(model_values) == sorted(values)
    unequal = [k for k, v in model_values.items() if not np.array_equal(v.numpy(), values[k])]
    assert unequal == []
    # Loading a file without its run directory in the path starts at epoch 0.
    assert coco_model.epoch == 0


def test_legacy_coco_heads_need_exclude_for_other_class_count(model_dir, coco_h5):
    """The "load COCO, retrain the heads" path on a 3-class model."""
    path, values = coco_h5

    class ThreeClassConfig(CocoConfig):
        NUM_CLASSES = 3

    model = modellib.MaskRCNN("inference", ThreeClassConfig(), model_dir)
    before = _snapshot(model.keras_model)

    with pytest.raises(ValueError) as error:
        model.load_weights(path, by_name=True)
    message = str(error.value)
    shapes = {"mrcnn_class_logits": ("(1024, 3)", "(1024, 81)"),
              "mrcnn_bbox_fc": ("(1024, 12)", "(1024, 324)"),
              "mrcnn_mask": ("(1, 1, 256, 3)", "(1, 1, 256, 81)")}
    named = [layer for layer in shapes if f"'{layer}'" in message]
    assert len(named) == 1, message
    assert all(s in message for s in shapes[named[0]]), message
    # A failed load assigns nothing.
    after_error = _snapshot(model.keras_model)
    assert all(np.array_equal(after_error[k], v) for k, v in before.items())

    report = model.load_weights(path, by_name=True, exclude=HEAD_LAYERS)
    head_keys = {k for k in before if k.split("/")[0] in HEAD_LAYERS}
    assert len(head_keys) == 6  # mrcnn_bbox and mrcnn_class have no weights
    assert set(report.skipped_excluded) == head_keys
    assert (report.missing_in_file, report.unused_in_file, report.mismatched) == ([], [], [])
    loaded = _snapshot(model.keras_model)
    for key, value in loaded.items():
        expected = before[key] if key in head_keys else values[key]
        np.testing.assert_array_equal(value, expected, err_msg=key)


############################################################
#  Checkpoint files and run directories
############################################################

def test_save_load_round_trip(tiny_inference, tiny_training, tmp_path):
    path = str(tmp_path / "weights.h5")
    original = _snapshot(tiny_inference.keras_model)
    tiny_inference.save_weights(path)
    try:
        for variable in weights_io.weight_map(tiny_inference.keras_model).values():
            variable.assign(np.full(variable.shape, 0.5, dtype=variable.dtype))
        report = tiny_inference.load_weights(path)  # by_name=False: the same graph
        assert sorted(report.loaded) == sorted(original)
        restored = _snapshot(tiny_inference.keras_model)
        assert all(np.array_equal(restored[k], v) for k, v in original.items())
    finally:
        tiny_inference.load_weights(path)
    # The inference file also loads into the training graph: both hold the same weights.
    report = tiny_training.load_weights(path, by_name=True)
    assert sorted(report.loaded) == sorted(original)
    assert report.missing_in_file == report.unused_in_file == []
    training_values = _snapshot(tiny_training.keras_model)
    assert all(np.array_equal(training_values[k], v) for k, v in original.items())


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def test_get_trainable_layers_unwraps_time_distributed(tiny_inference):
    # inspect_weights: weighted layers, filtered by class name for the histograms.
    layers = tiny_inference.get_trainable_layers()
    for layer in layers:
        assert not isinstance(layer, (keras.Model, keras.layers.Wrapper)), layer.name
        assert layer.get_weights(), layer.name
    assert len({id(layer) for layer in layers}) == len(layers)
    kinds = ("Conv2D", "Dense", "Conv2DTranspose")
    names = [layer.name for layer in layers if layer.__class__.__name__ in kinds]
    # The heads are there, as the layers inside their TimeDistributed wrappers (which
    # carry the checkpoint names; the inner layers are named <wrapper>_inner).
    for name in ("conv1", "fpn_c5p5", "rpn_conv_shared", "mrcnn_class_conv1_inner",
                 "mrcnn_bbox_fc_inner", "mrcnn_class_logits_inner", "mrcnn_mask_conv1_inner",
                 "mrcnn_mask_deconv_inner", "mrcnn_mask_inner"):
        assert name in names, name
    assert "mrcnn_class_bn1_inner" in [layer.name for layer in layers]
    wrapper = tiny_inference.keras_model.get_layer("mrcnn_class_conv1")
    assert tiny_inference.find_trainable_layer(wrapper) is wrapper.layer


def test_set_trainable_prints_the_layers_as_matterport(tiny_inference, capsys):
    names = tiny_inference.set_trainable(modellib.LAYER_REGEX["heads"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Selecting layers to train"
    assert "In model: rpn_model" in [line.strip() for line in lines]
    assert "mrcnn_class_conv1      (TimeDistributed)" in lines
    assert "    rpn_conv_shared        (Conv2D)" in lines
    assert len([line for line in lines if line.endswith(")")]) == len(names)
    tiny_inference.set_trainable(".*", verbose=0)
    assert capsys.readouterr().out == ""


def test_find_last(tiny_inference, tmp_path, monkeypatch):
    model = tiny_inference
    monkeypatch.setattr(model, "model_dir", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.find_last()
    monkeypatch.setattr(model, "model_dir", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="tiny"):
        model.find_last()
    _touch(str(tmp_path / "tiny20240101T1200" / "mask_rcnn_tiny_0001.h5"))
    _touch(str(tmp_path / "tiny20240101T1200" / "mask_rcnn_tiny_0012.h5"))
    _touch(str(tmp_path / "tiny20240102T0800" / "mask_rcnn_tiny_0002.h5"))
    _touch(str(tmp_path / "tiny20240102T0800" / "events.out.tfevents"))
    _touch(str(tmp_path / "other20250101T0000" / "mask_rcnn_other_0009.h5"))
    assert model.find_last() == str(tmp_path / "tiny20240102T0800" / "mask_rcnn_tiny_0002.h5")
    # A newer run that died before its first checkpoint does not hide older ones.
    os.makedirs(tmp_path / "tiny20240103T0900")
    assert model.find_last().endswith(os.path.join("tiny20240102T0800",
                                                   "mask_rcnn_tiny_0002.h5"))
    # Matterport 2.1's (log_dir, checkpoint_path) style works on the same value.
    log_dir, checkpoint = model.find_last()
    assert log_dir == str(tmp_path / "tiny20240102T0800")
    assert model.find_last()[1] == checkpoint == model.find_last()


def test_find_last_loads_in_both_matterport_styles(tiny_inference, tmp_path, monkeypatch):
    model = tiny_inference
    monkeypatch.setattr(model, "model_dir", str(tmp_path))
    path = str(tmp_path / "tiny20240102T0800" / "mask_rcnn_tiny_0003.h5")
    os.makedirs(os.path.dirname(path))
    model.save_weights(path)
    for weights in (model.find_last(), model.find_last()[1]):  # later Matterport, 2.1
        report = model.load_weights(weights, by_name=True)
        assert report.loaded and not report.missing_in_file
        assert model.epoch == 3


def test_get_imagenet_weights_by_name_path_or_environment(tiny_inference, tmp_path,
                                                          monkeypatch):
    model = tiny_inference
    name = model.IMAGENET_WEIGHTS["imagenet"]
    monkeypatch.delenv("MRCNN_IMAGENET_WEIGHTS", raising=False)
    monkeypatch.setattr(model, "imagenet_weights_dirs", lambda: [str(tmp_path / "a"),
                                                                  str(tmp_path / "b")])
    with pytest.raises(FileNotFoundError, match=name + ".*never downloaded"):
        model.get_imagenet_weights()
    _touch(str(tmp_path / "b" / name))
    assert model.get_imagenet_weights() == str(tmp_path / "b" / name)
    assert model.get_imagenet_weights("imagenet") == str(tmp_path / "b" / name)
    other = tmp_path / "mine.h5"
    _touch(str(other))
    assert model.get_imagenet_weights(str(other)) == str(other)
    monkeypatch.setenv("MRCNN_IMAGENET_WEIGHTS", str(other))
    assert model.get_imagenet_weights() == str(other)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        model.get_imagenet_weights(str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="'imagenet'"):
        model.get_imagenet_weights("imagenet-22k")


def test_set_log_dir_reads_run_and_epoch(tiny_inference):
    model = tiny_inference
    try:
        model.set_log_dir("/somewhere/logs/tiny20240101T1200/mask_rcnn_tiny_0003.h5")
        assert model.epoch == 3
        assert model.log_dir == os.path.join(model.model_dir, "tiny20240101T1200")
        assert model.checkpoint_path == os.path.join(
            model.model_dir, "tiny20240101T1200", "mask_rcnn_tiny_{epoch:04d}.h5")
        assert model.checkpoint_path.format(epoch=4).endswith("mask_rcnn_tiny_0004.h5")
        # Anything else starts a new run at epoch 0.
        model.set_log_dir("/somewhere/weights.h5")
        assert model.epoch == 0
        assert re.fullmatch(r"tiny\d{8}T\d{4}", os.path.basename(model.log_dir))
    finally:
        model.set_log_dir()


############################################################
#  Inference API
############################################################

@pytest.mark.parametrize("shape", [(48, 80, 3), (80, 48), (50, 64, 1), (64, 40, 4)])
def test_detect_returns_original_size(tiny_inference, shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    result = tiny_inference.detect([image])[0]
    assert sorted(result) == ["class_ids", "masks", "rois", "scores"]
    n = result["class_ids"].shape[0]
    assert n >= 1
    assert result["rois"].shape == (n, 4) and result["scores"].shape == (n,)
    assert result["masks"].shape == (shape[0], shape[1], n)
    assert result["masks"].dtype == bool
    rois = result["rois"]
    assert np.all((rois[:, 0] >= 0) & (rois[:, 2] <= shape[0]) & (rois[:, 0] < rois[:, 2]))
    assert np.all((rois[:, 1] >= 0) & (rois[:, 3] <= shape[1]) & (rois[:, 1] < rois[:, 3]))
    assert np.all((result["class_ids"] >= 1)
                  & (result["class_ids"] < tiny_inference.config.NUM_CLASSES))
    # Grayscale is the RGB image with three equal channels; RGBA drops alpha.
    if image.ndim == 2 or shape[2] == 1:
        rgb = np.repeat(image.reshape(shape[:2] + (1,)), 3, axis=2)
    else:
        rgb = image[:, :, :3]
    if rgb.shape != image.shape:
        expected = tiny_inference.detect([rgb])[0]
        for key in result:
            np.testing.assert_array_equal(result[key], expected[key], err_msg=key)


@pytest.mark.parametrize("images, match", [
    ([], r"BATCH_SIZE \(1\), got 0"),
    ([np.zeros((64, 64, 3), np.uint8)] * 2, r"BATCH_SIZE \(1\), got 2"),
    (np.zeros((64, 64, 3), np.uint8), r"BATCH_SIZE \(1\), got 64"),
    ("image.png", r"list of 1 arrays, got str"),
    ([np.zeros((1, 64, 64, 3), np.uint8)], r"shape \(1, 64, 64, 3\)"),
    ([np.zeros((0, 64, 3), np.uint8)], r"non-empty"),
    ([np.zeros((64, 64, 2), np.uint8)], r"got 2 channels"),
    ([np.full((64, 64, 3), "a")], r"dtype <U1"),
    ([np.zeros((64, 64, 3), bool)], r"dtype bool"),
])
def test_detect_rejects_bad_input(tiny_inference, images, match):
    with pytest.raises(ValueError, match=match):
        tiny_inference.detect(images)


def test_detect_needs_inference_mode(tiny_training, image_64):
    with pytest.raises(ValueError, match="inference mode"):
        tiny_training.detect([image_64])
    with pytest.raises(ValueError, match="inference mode"):
        tiny_training.detect_molded(np.zeros((1, 64, 64, 3)), np.zeros((1, 16)))


def test_detect_names_what_its_resize_mode_cannot_feed(model_dir):
    """Each was a numpy or TensorFlow graph error, or (crop) a detection in a random
    crop of the image."""
    square, wide = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 128, 3), np.uint8)
    pad64 = modellib.MaskRCNN("inference", tiny_config(
        IMAGES_PER_GPU=2, IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=64), model_dir)
    with pytest.raises(ValueError, match=r"After resizing, all images must have the same "
                       r"size. Check IMAGE_RESIZE_MODE and image sizes \(got \[\(64, 64, "
                       r"3\), \(64, 128, 3\)\]\)"):
        pad64.detect([square, wide])
    crop = modellib.MaskRCNN("inference", tiny_config(IMAGE_RESIZE_MODE="crop"), model_dir)
    with pytest.raises(ValueError, match=r"'crop' takes a random crop and is for training "
                       r"only: set 'square' or 'pad64'"):
        crop.detect([square])
    none = modellib.MaskRCNN("inference", tiny_config(IMAGE_RESIZE_MODE="none"), model_dir)
    with pytest.raises(ValueError, match=r"images\[0\]: IMAGE_RESIZE_MODE 'none' feeds "
                       r"images unresized: expected a height and width divisible by 32, got "
                       r"48x64"):
        none.detect([np.zeros((48, 64, 3), np.uint8)])
    assert len(none.detect([np.zeros((96, 160, 3), np.uint8)])) == 1  # 32 | 96, 160


def test_train_needs_training_mode(tiny_inference):
    with pytest.raises(ValueError, match="training mode"):
        tiny_inference.train(None, None, 0.01, 1, "heads")


def test_image_size_must_be_multiple_of_64(model_dir):
    with pytest.raises(ValueError, match="IMAGE_MAX_DIM"):
        tiny_config(IMAGE_MAX_DIM=100)
    config = tiny_config()
    config.IMAGE_SHAPE = np.array([96, 96, 3])  # edited after validation
    with pytest.raises(ValueError, match=r"IMAGE_SHAPE \(96, 96, 3\)"):
        modellib.MaskRCNN("inference", config, model_dir)


def test_mode_must_be_known(model_dir):
    with pytest.raises(ValueError, match="'training' or 'inference'"):
        modellib.MaskRCNN("train", tiny_config(), model_dir)


def test_load_weights_bad_files(tiny_inference, tmp_path):
    with pytest.raises(FileNotFoundError):
        tiny_inference.load_weights(str(tmp_path / "missing.h5"))
    text = tmp_path / "not_hdf5.h5"
    text.write_text("these are not weights")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        tiny_inference.load_weights(str(text))
    empty = tmp_path / "no_layers.h5"
    with h5py.File(empty, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="layer_names"):
        tiny_inference.load_weights(str(empty))


def test_run_graph_returns_named_arrays(tiny_inference, image_64):
    model = tiny_inference.keras_model
    config = tiny_inference.config
    outputs = tiny_inference.run_graph([image_64], [
        ("proposals", model.get_layer("ROI").output),
        ("detections", model.get_layer("mrcnn_detection").output),
    ])
    assert list(outputs) == ["proposals", "detections"]
    proposals, detections = outputs["proposals"], outputs["detections"]
    assert proposals.shape == (1, config.POST_NMS_ROIS_INFERENCE, 4)
    assert detections.shape == (1, config.DETECTION_MAX_INSTANCES, 6)
    assert proposals.min() >= 0 and proposals.max() <= 1
    # The detections are those detect() unmolds (a 64 px image is not resized).
    result = tiny_inference.detect([image_64])[0]
    n = result["class_ids"].shape[0]
    np.testing.assert_array_equal(detections[0, :n, 4].astype(int), result["class_ids"])
    np.testing.assert_allclose(detections[0, :n, 5], result["scores"])


def test_detect_traces_once_for_images_resized_or_not(model_dir, image_64):
    """A 64 px image is not resized (scale 1: compose_image_meta gives an int64 meta),
    a 40 x 90 one is (float64): fed as they come, the graph was traced once per dtype.
    mrcnn.tracing gives them the model's input dtypes, which the graph converted them
    to anyway, so the detections are the same."""
    model = modellib.MaskRCNN("inference", tiny_config(DETECTION_MIN_CONFIDENCE=0.0),
                              model_dir)
    wide = np.random.default_rng(2).integers(0, 256, (40, 90, 3), dtype=np.uint8)
    molded = [model.mold_inputs([image])[1] for image in (image_64, wide)]
    assert [meta.dtype for meta in molded] == [np.int64, np.float64]
    first = model.detect([image_64])[0]
    model.detect([wide])
    again = model.detect([image_64])[0]
    assert model.keras_model.predict_function.experimental_get_tracing_count() == 1
    for key in ("rois", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(first[key], again[key])


def test_run_graph_calls_in_a_row_do_not_warn_of_retracing(tiny_inference, image_64,
                                                           caplog):
    """Matterport's inspect notebooks call run_graph again and again, and each call
    builds and traces a model of its own: TensorFlow counted those first traces as one
    function's retraces and warned (mrcnn.tracing)."""
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for name in ("rpn_class", "rpn_bbox", "ROI", "mrcnn_class", "mrcnn_detection",
                     "mrcnn_mask"):
            layer = tiny_inference.keras_model.get_layer(name)
            assert tiny_inference.run_graph([image_64], [(name, layer.output)])[name].size
    assert [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()] == []


def test_ancestor_gives_the_proposal_stages_inspect_model_reads(tiny_inference, image_64):
    """Matterport's inspect_model: model.ancestor(pillar, "ROI/...:0") into run_graph.
    The stages are checked against numpy: top-k anchors, box deltas, clipping, NMS."""
    model = tiny_inference.keras_model
    config = tiny_inference.config
    pillar = model.get_layer("ROI").output
    nms_node = tiny_inference.ancestor(pillar, "ROI/rpn_non_max_suppression:0")
    assert nms_node is not None
    assert tiny_inference.ancestor(
        pillar, "ROI/rpn_non_max_suppression/NonMaxSuppressionV2:0") == nms_node
    assert tiny_inference.ancestor(pillar, "ROI/no_such_node:0") is None
    assert tiny_inference.ancestor(pillar, "nowhere/pre_nms_anchors:0") is None
    rpn = tiny_inference.run_graph([image_64], [
        ("rpn_class", model.get_layer("rpn_class").output),
        ("rpn_bbox", model.get_layer("rpn_bbox").output),
        ("pre_nms_anchors", tiny_inference.ancestor(pillar, "ROI/pre_nms_anchors:0")),
        ("refined_anchors", tiny_inference.ancestor(pillar, "ROI/refined_anchors:0")),
        ("refined_anchors_clipped",
         tiny_inference.ancestor(pillar, "ROI/refined_anchors_clipped:0")),
        ("post_nms_anchor_ix", nms_node),
        ("proposals", pillar),
    ])
    anchors = tiny_inference.get_anchors(config.IMAGE_SHAPE)
    limit = min(config.PRE_NMS_LIMIT, anchors.shape[0])
    order = np.argsort(-rpn["rpn_class"][0, :, 1], kind="stable")[:limit]
    np.testing.assert_allclose(rpn["pre_nms_anchors"][0], anchors[order], atol=1e-6)
    deltas = rpn["rpn_bbox"][0, order] * config.RPN_BBOX_STD_DEV
    refined = modellib.utils.apply_box_deltas(anchors[order].astype(np.float64), deltas)
    np.testing.assert_allclose(rpn["refined_anchors"][0], refined, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rpn["refined_anchors_clipped"][0], np.clip(refined, 0, 1),
                               rtol=1e-5, atol=1e-6)
    ix = rpn["post_nms_anchor_ix"]
    assert ix.ndim == 1 and 0 < len(ix) <= config.POST_NMS_ROIS_INFERENCE
    # The notebook draws refined_anchors_clipped[0, ix]: those are the proposals.
    np.testing.assert_allclose(rpn["refined_anchors_clipped"][0, ix],
                               rpn["proposals"][0, :len(ix)], atol=1e-6)
    assert not rpn["proposals"][0, len(ix):].any()
    with pytest.raises(ValueError, match="ancestor.*ROI/refined_anchors:0"):
        tiny_inference.run_graph([image_64], [("x", None)])
    # A layer's name for its output, or nothing: the errors said "the outputs need other
    # inputs" around Keras' "must be KerasTensors" / "cannot be empty".
    with pytest.raises(ValueError, match=r"expected \(name, tensor\) pairs with this "
                       r"model's tensors, e.g. .*get_layer\('ROI'\).output; got \{'x': 'str'\}"):
        tiny_inference.run_graph([image_64], [("x", "ROI")])
    with pytest.raises(ValueError, match=r"expected at least one \(name, tensor\) output"):
        tiny_inference.run_graph([image_64], [])


def test_run_graph_in_training_mode(tiny_training, image_64):
    """Matterport's run_graph also inspects the training graph on molded inputs, for
    tensors that need only the image and its meta."""
    config = tiny_training.config
    model = tiny_training.keras_model
    molded = modellib.mold_image(image_64.astype(np.float32), config)[np.newaxis]
    meta = modellib.compose_image_meta(0, image_64.shape, image_64.shape, (0, 0, 64, 64),
                                       1.0, np.ones(config.NUM_CLASSES, np.int32))[np.newaxis]
    outputs = tiny_training.run_graph(molded, [
        ("p2", model.get_layer("fpn_p2").output),
        ("rpn_class", model.get_layer("rpn_class").output),
    ], image_metas=meta)
    anchors = tiny_training.get_anchors(config.IMAGE_SHAPE).shape[0]
    assert outputs["p2"].shape == (1, 16, 16, config.TOP_DOWN_PYRAMID_SIZE)
    assert outputs["rpn_class"].shape == (1, anchors, 2)
    np.testing.assert_allclose(outputs["rpn_class"].sum(axis=-1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="need other inputs"):
        tiny_training.run_graph(molded, [
            ("rois", model.get_layer("proposal_targets").output[0])], image_metas=meta)


def test_detect_molded_matches_detect(tiny_inference, image_64):
    config = tiny_inference.config
    molded = modellib.mold_image(image_64.astype(np.float32), config)
    meta = modellib.compose_image_meta(7, image_64.shape, image_64.shape, (0, 0, 64, 64),
                                       1.0, np.ones(config.NUM_CLASSES, np.int32))
    molded_result = tiny_inference.detect_molded(molded[np.newaxis], meta[np.newaxis])[0]
    result = tiny_inference.detect([image_64])[0]
    assert molded_result["masks"].shape[:2] == (64, 64)
    for key in result:
        np.testing.assert_array_equal(molded_result[key], result[key], err_msg=key)
    with pytest.raises(ValueError, match="BATCH_SIZE"):
        tiny_inference.detect_molded(np.stack([molded] * 2), np.stack([meta] * 2))


def test_mold_inputs_numbers(tiny_inference):
    config = tiny_inference.config
    image = np.random.default_rng(0).integers(0, 256, size=(32, 64, 3), dtype=np.uint8)
    molded, metas, windows = tiny_inference.mold_inputs([image])
    # 32 x 64 fits 64 x 64 at scale 1 (min 64 would need 2, max 64 caps it at 1) and
    # is padded by 16 rows above and below.
    assert molded.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(windows, [[16, 0, 48, 64]])
    meta = modellib.parse_image_meta(metas)
    np.testing.assert_array_equal(meta["original_image_shape"], [[32, 64, 3]])
    np.testing.assert_array_equal(meta["image_shape"], [[64, 64, 3]])
    np.testing.assert_array_equal(meta["window"], [[16, 0, 48, 64]])
    np.testing.assert_array_equal(meta["scale"], [1.0])
    mean = np.asarray(config.MEAN_PIXEL)
    np.testing.assert_allclose(molded[0, 16:48], image - mean, rtol=1e-6)
    np.testing.assert_allclose(molded[0, :16], np.broadcast_to(-mean, (16, 64, 3)), rtol=1e-6)
    np.testing.assert_allclose(molded[0, 48:], np.broadcast_to(-mean, (16, 64, 3)), rtol=1e-6)


def test_unmold_detections_numbers(tiny_inference):
    """Boxes go back to the original image through the window of a 32 x 64 image
    padded into 64 x 64 (window rows 16..48)."""
    num_classes = tiny_inference.config.NUM_CLASSES
    # Normalized molded coordinates (pixel box / (64 - 1), minus 1 on y2/x2):
    # molded pixels (20, 8, 40, 24), class 2; a zero-area box; then padding.
    detections = np.array([
        [20 / 63, 8 / 63, 39 / 63, 23 / 63, 2, 0.9],
        [30 / 63, 30 / 63, 29 / 63, 39 / 63, 1, 0.8],  # pixels (30, 30, 30, 40)
        [0, 0, 0, 0, 0, 0],
    ], dtype=np.float32)
    masks = np.zeros((3, 28, 28, num_classes), dtype=np.float32)
    masks[0, :, :, 2] = 1.0  # the class-2 channel of detection 0 covers its box
    masks[0, :, :, 1] = 0.0
    boxes, class_ids, scores, full_masks = tiny_inference.unmold_detections(
        detections, masks, (32, 64, 3), (64, 64, 3), np.array([16, 0, 48, 64]))
    # (20 - 16, 8, 40 - 16, 24) in the original image; the zero-area box is dropped.
    np.testing.assert_array_equal(boxes, [[4, 8, 24, 24]])
    np.testing.assert_array_equal(class_ids, [2])
    np.testing.assert_allclose(scores, [0.9])
    expected = np.zeros((32, 64, 1), dtype=bool)
    expected[4:24, 8:24, 0] = True
    np.testing.assert_array_equal(full_masks, expected)
    # No detections: empty arrays in the original size.
    boxes, class_ids, scores, full_masks = tiny_inference.unmold_detections(
        np.zeros((3, 6), np.float32), masks, (32, 64, 3), (64, 64, 3),
        np.array([16, 0, 48, 64]))
    assert boxes.shape == (0, 4) and class_ids.shape == (0,) and scores.shape == (0,)
    assert full_masks.shape == (32, 64, 0)


def test_unmold_boxes_reports_the_kept_rows(tiny_inference):
    # Row 1 has zero area, row 3 follows the padding row: neither is kept.
    detections = np.array([
        [20 / 63, 8 / 63, 39 / 63, 23 / 63, 2, 0.9],
        [30 / 63, 30 / 63, 29 / 63, 39 / 63, 1, 0.8],
        [10 / 63, 10 / 63, 33 / 63, 41 / 63, 1, 0.7],
        [0, 0, 0, 0, 0, 0],
        [10 / 63, 10 / 63, 33 / 63, 41 / 63, 1, 0.6],
    ], dtype=np.float32)
    boxes, class_ids, scores, rows = tiny_inference.unmold_boxes(
        detections, (64, 64, 3), (64, 64, 3), np.array([0, 0, 64, 64]))
    np.testing.assert_array_equal(rows, [0, 2])
    np.testing.assert_array_equal(boxes, [[20, 8, 40, 24], [10, 10, 34, 42]])
    np.testing.assert_array_equal(class_ids, [2, 1])
    np.testing.assert_allclose(scores, [0.9, 0.7])


def test_detection_stages_compose_to_detect(tiny_inference, image_64):
    molded, metas, windows = tiny_inference.mold_inputs([image_64])
    anchors = tiny_inference._batch_anchors(molded[0].shape)
    detections, mrcnn_mask = tiny_inference.predict_detections([molded, metas, anchors])
    config = tiny_inference.config
    assert detections.shape == (1, config.DETECTION_MAX_INSTANCES, 6)
    assert mrcnn_mask.shape == (1, config.DETECTION_MAX_INSTANCES,
                                *config.MASK_SHAPE, config.NUM_CLASSES)
    staged = tiny_inference.unmold_batch(detections, mrcnn_mask, molded, windows,
                                         [image_64.shape])[0]
    result = tiny_inference.detect([image_64])[0]
    for key in result:
        np.testing.assert_array_equal(staged[key], result[key], err_msg=key)


def test_plain_model_has_no_sub_models(tiny_inference, tiny_training):
    with pytest.raises(ValueError, match="unknown name 'query_encoder'.*none"):
        tiny_inference.sub_model("query_encoder")
    with pytest.raises(ValueError, match="inference mode"):
        tiny_training.sub_model("query_encoder")
