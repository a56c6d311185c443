"""Tests for mrcnn.config: Matterport defaults, computed fields, display,
to_dict and construction-time validation."""
import json

import numpy as np
import pytest

from mrcnn.config import LOSS_NAMES, RESNET_ARCHITECTURES, Config


def make(**fields):
    """A Config subclass with the given class attributes, instantiated."""
    return type("TestConfig", (Config,), fields)()


# ----------------------------------------------------------------------
# Defaults and computed fields
# ----------------------------------------------------------------------
def test_matterport_defaults():
    c = Config()
    assert c.NAME is None
    assert (c.GPU_COUNT, c.IMAGES_PER_GPU) == (1, 2)
    assert (c.STEPS_PER_EPOCH, c.VALIDATION_STEPS) == (1000, 50)
    assert c.BACKBONE == "resnet101" and c.COMPUTE_BACKBONE_SHAPE is None
    assert c.BACKBONE_STRIDES == [4, 8, 16, 32, 64]
    assert (c.FPN_CLASSIF_FC_LAYERS_SIZE, c.TOP_DOWN_PYRAMID_SIZE) == (1024, 256)
    assert c.NUM_CLASSES == 1
    assert c.RPN_ANCHOR_SCALES == (32, 64, 128, 256, 512)
    assert c.RPN_ANCHOR_RATIOS == [0.5, 1, 2]
    assert (c.RPN_ANCHOR_STRIDE, c.RPN_NMS_THRESHOLD) == (1, 0.7)
    assert (c.RPN_TRAIN_ANCHORS_PER_IMAGE, c.PRE_NMS_LIMIT) == (256, 6000)
    assert (c.POST_NMS_ROIS_TRAINING, c.POST_NMS_ROIS_INFERENCE) == (2000, 1000)
    assert c.USE_MINI_MASK is True and c.MINI_MASK_SHAPE == (56, 56)
    assert (c.IMAGE_RESIZE_MODE, c.IMAGE_MIN_DIM, c.IMAGE_MAX_DIM) == ("square", 800, 1024)
    assert (c.IMAGE_MIN_SCALE, c.IMAGE_CHANNEL_COUNT) == (0, 3)
    np.testing.assert_array_equal(c.MEAN_PIXEL, [123.7, 116.8, 103.9])
    assert (c.TRAIN_ROIS_PER_IMAGE, c.ROI_POSITIVE_RATIO) == (200, 0.33)
    assert (c.POOL_SIZE, c.MASK_POOL_SIZE, c.MASK_SHAPE) == (7, 14, [28, 28])
    assert c.MAX_GT_INSTANCES == 100
    np.testing.assert_array_equal(c.RPN_BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])
    np.testing.assert_array_equal(c.BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])
    assert (c.DETECTION_MAX_INSTANCES, c.DETECTION_MIN_CONFIDENCE,
            c.DETECTION_NMS_THRESHOLD) == (100, 0.7, 0.3)
    assert (c.LEARNING_RATE, c.LEARNING_MOMENTUM, c.WEIGHT_DECAY) == (0.001, 0.9, 0.0001)
    assert c.LOSS_WEIGHTS == {name: 1. for name in LOSS_NAMES}
    assert c.USE_RPN_ROIS is True and c.TRAIN_BN is False
    assert c.GRADIENT_CLIP_NORM == 5.0
    # Project extensions
    assert c.RESNET_ARCHITECTURES == {"resnet50": (3, 4, 6, 3),
                                      "resnet101": (3, 4, 23, 3),
                                      "resnet_tiny": (1, 1, 1, 1)}
    assert RESNET_ARCHITECTURES == c.RESNET_ARCHITECTURES
    assert (c.WORKERS, c.USE_MULTIPROCESSING, c.MAX_CONSECUTIVE_FAILURES) == (0, False, 10)


def test_computed_fields_square():
    c = make(GPU_COUNT=2, IMAGES_PER_GPU=3, NUM_CLASSES=81,
             IMAGE_MIN_DIM=400, IMAGE_MAX_DIM=512)
    assert c.BATCH_SIZE == 6
    np.testing.assert_array_equal(c.IMAGE_SHAPE, [512, 512, 3])
    assert c.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 81 == 93


def test_computed_fields_crop_uses_min_dim_and_channels():
    c = make(IMAGE_RESIZE_MODE="crop", IMAGE_MIN_DIM=256, IMAGE_MAX_DIM=1000,
             IMAGE_CHANNEL_COUNT=4, MEAN_PIXEL=np.array([1., 2., 3., 4.]))
    np.testing.assert_array_equal(c.IMAGE_SHAPE, [256, 256, 4])


def test_computed_fields_pad64_and_none_use_max_dim():
    c = make(IMAGE_RESIZE_MODE="pad64", IMAGE_MIN_DIM=128, IMAGE_MAX_DIM=320)
    np.testing.assert_array_equal(c.IMAGE_SHAPE, [320, 320, 3])
    c = make(IMAGE_RESIZE_MODE="none", IMAGE_MIN_DIM=None, IMAGE_MAX_DIM=128)
    np.testing.assert_array_equal(c.IMAGE_SHAPE, [128, 128, 3])


def test_subclass_pattern_and_extended_validate():
    """The Siamese Config pattern: class attributes, more computed fields,
    and an extended validate() that sees them."""
    class Sub(Config):
        NUM_CLASSES = 2
        TARGET_MAX_DIM = 96

        def compute_derived(self):
            super().compute_derived()
            self.TARGET_SHAPE = np.array([self.TARGET_MAX_DIM] * 2 + [3])

        def validate(self):
            super().validate()
            if self.TARGET_SHAPE[0] % 32:
                raise ValueError("TARGET_MAX_DIM bad")

    c = Sub()
    np.testing.assert_array_equal(c.TARGET_SHAPE, [96, 96, 3])
    assert c.IMAGE_META_SIZE == 14
    with pytest.raises(ValueError, match="TARGET_MAX_DIM"):
        type("Bad", (Sub,), {"TARGET_MAX_DIM": 90})()


def test_callable_backbone_with_shape_function():
    def backbone(*args, **kwargs):
        return None

    def shapes(config, image_shape):
        return np.zeros((5, 2))

    c = make(BACKBONE=backbone, COMPUTE_BACKBONE_SHAPE=shapes)
    # Plain functions, not methods bound to the config.
    assert c.BACKBONE is backbone
    assert c.COMPUTE_BACKBONE_SHAPE is shapes
    # A callable field is still listed by to_dict() as its dotted name.
    assert c.to_dict()["BACKBONE"].endswith("backbone")


@pytest.mark.parametrize("name", ["resnet50", "resnet101", "resnet_tiny"])
def test_named_backbones_accepted(name):
    assert make(BACKBONE=name).BACKBONE == name


# ----------------------------------------------------------------------
# display / to_dict
# ----------------------------------------------------------------------
def test_display_prints_matterport_table(capsys):
    c = make(NAME="shapes", NUM_CLASSES=4)
    c.display()
    out = capsys.readouterr().out
    lines = out.split("\n")
    assert lines[0] == "" and lines[1] == "Configurations:"
    assert "{:30} {}".format("NAME", "shapes") in lines
    assert "{:30} {}".format("NUM_CLASSES", 4) in lines
    assert "{:30} {}".format("BATCH_SIZE", 2) in lines
    assert "{:30} {}".format("IMAGE_META_SIZE", 16) in lines
    # Methods are not listed; names are in dir() (sorted) order.
    assert not any(line.startswith(("display", "to_dict", "validate")) for line in lines)
    names = [line.split()[0] for line in lines[2:] if line.strip()]
    assert names == sorted(names)


def test_display_logs(caplog):
    with caplog.at_level("DEBUG", logger="mrcnn.config"):
        make(NAME="logged").display()
    assert "Configurations:" in caplog.text and "logged" in caplog.text


def test_to_dict_is_json_friendly_and_complete():
    c = make(NAME="x", NUM_CLASSES=3)
    d = c.to_dict()
    json.dumps(d)  # must not raise
    assert d["NAME"] == "x" and d["NUM_CLASSES"] == 3
    assert d["IMAGE_SHAPE"] == [1024, 1024, 3]
    assert d["MEAN_PIXEL"] == [123.7, 116.8, 103.9]
    assert d["RPN_ANCHOR_SCALES"] == [32, 64, 128, 256, 512]
    assert d["LOSS_WEIGHTS"]["mrcnn_mask_loss"] == 1.0
    assert d["IMAGE_META_SIZE"] == 15
    assert "display" not in d and "validate" not in d


# ----------------------------------------------------------------------
# Validation: each bad field raises ValueError naming it
# ----------------------------------------------------------------------
BAD_FIELDS = [
    ("NUM_CLASSES", {"NUM_CLASSES": 0}),
    ("NUM_CLASSES", {"NUM_CLASSES": 2.0}),
    ("GPU_COUNT", {"GPU_COUNT": 0}),
    ("IMAGES_PER_GPU", {"IMAGES_PER_GPU": 0}),
    ("STEPS_PER_EPOCH", {"STEPS_PER_EPOCH": 0}),
    ("VALIDATION_STEPS", {"VALIDATION_STEPS": -1}),
    ("IMAGE_MAX_DIM", {"IMAGE_MAX_DIM": 0}),
    ("IMAGE_MAX_DIM", {"IMAGE_MAX_DIM": -64}),
    ("IMAGE_MIN_DIM", {"IMAGE_MIN_DIM": -1}),
    ("IMAGE_MIN_DIM", {"IMAGE_MIN_DIM": 0}),
    ("IMAGE_MAX_DIM", {"IMAGE_MAX_DIM": 1000}),  # square: not a multiple of 64
    ("IMAGE_MAX_DIM", {"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MIN_DIM": 128,
                       "IMAGE_MAX_DIM": 100}),
    ("IMAGE_MIN_DIM", {"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MIN_DIM": 100}),
    ("IMAGE_MIN_DIM", {"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MIN_DIM": None}),
    ("IMAGE_MIN_DIM", {"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 100}),
    ("IMAGE_MIN_DIM", {"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": None}),
    ("IMAGE_RESIZE_MODE", {"IMAGE_RESIZE_MODE": "squash"}),
    ("IMAGE_MIN_SCALE", {"IMAGE_MIN_SCALE": -1}),
    ("IMAGE_CHANNEL_COUNT", {"IMAGE_CHANNEL_COUNT": 0}),
    ("MEAN_PIXEL", {"MEAN_PIXEL": np.array([1., 2.])}),
    ("MEAN_PIXEL", {"IMAGE_CHANNEL_COUNT": 1}),
    ("BACKBONE", {"BACKBONE": "resnet18"}),
    ("COMPUTE_BACKBONE_SHAPE", {"BACKBONE": lambda *a: None}),
    ("COMPUTE_BACKBONE_SHAPE", {"COMPUTE_BACKBONE_SHAPE": 5}),
    ("FPN_CLASSIF_FC_LAYERS_SIZE", {"FPN_CLASSIF_FC_LAYERS_SIZE": 0}),
    ("TOP_DOWN_PYRAMID_SIZE", {"TOP_DOWN_PYRAMID_SIZE": 0}),
    ("RPN_ANCHOR_SCALES", {"RPN_ANCHOR_SCALES": ()}),
    ("RPN_ANCHOR_RATIOS", {"RPN_ANCHOR_RATIOS": []}),
    ("RPN_ANCHOR_RATIOS", {"RPN_ANCHOR_RATIOS": [0.5, -1]}),
    ("BACKBONE_STRIDES", {"BACKBONE_STRIDES": [4, 8, 16, 32]}),
    ("BACKBONE_STRIDES", {"BACKBONE_STRIDES": []}),
    ("RPN_ANCHOR_STRIDE", {"RPN_ANCHOR_STRIDE": 0}),
    ("RPN_NMS_THRESHOLD", {"RPN_NMS_THRESHOLD": 1.5}),
    ("RPN_TRAIN_ANCHORS_PER_IMAGE", {"RPN_TRAIN_ANCHORS_PER_IMAGE": 0}),
    ("PRE_NMS_LIMIT", {"PRE_NMS_LIMIT": 0}),
    ("POST_NMS_ROIS_TRAINING", {"POST_NMS_ROIS_TRAINING": 0}),
    ("POST_NMS_ROIS_INFERENCE", {"POST_NMS_ROIS_INFERENCE": -5}),
    ("RPN_BBOX_STD_DEV", {"RPN_BBOX_STD_DEV": np.array([0.1, 0.1, 0.2])}),
    ("BBOX_STD_DEV", {"BBOX_STD_DEV": np.array([0.1, 0.1, 0.2, 0.])}),
    ("USE_MINI_MASK", {"USE_MINI_MASK": "yes"}),
    ("MINI_MASK_SHAPE", {"MINI_MASK_SHAPE": (56,)}),
    ("TRAIN_ROIS_PER_IMAGE", {"TRAIN_ROIS_PER_IMAGE": 0}),
    ("ROI_POSITIVE_RATIO", {"ROI_POSITIVE_RATIO": 0}),
    ("POOL_SIZE", {"POOL_SIZE": 0}),
    ("MASK_POOL_SIZE", {"MASK_POOL_SIZE": 0}),
    ("MASK_SHAPE", {"MASK_SHAPE": [28, 28, 1]}),
    ("MASK_SHAPE", {"MASK_POOL_SIZE": 7}),  # head would output 14x14
    ("MAX_GT_INSTANCES", {"MAX_GT_INSTANCES": 0}),
    ("DETECTION_MAX_INSTANCES", {"DETECTION_MAX_INSTANCES": 0}),
    ("DETECTION_MIN_CONFIDENCE", {"DETECTION_MIN_CONFIDENCE": 1.2}),
    ("DETECTION_NMS_THRESHOLD", {"DETECTION_NMS_THRESHOLD": 0}),
    ("LEARNING_RATE", {"LEARNING_RATE": 0}),
    ("LEARNING_MOMENTUM", {"LEARNING_MOMENTUM": 1.0}),
    ("WEIGHT_DECAY", {"WEIGHT_DECAY": -0.1}),
    # Infinite values passed every range check (nan never did).
    ("LEARNING_RATE", {"LEARNING_RATE": float("inf")}),
    ("WEIGHT_DECAY", {"WEIGHT_DECAY": float("inf")}),
    ("IMAGE_MIN_SCALE", {"IMAGE_MIN_SCALE": float("inf")}),
    ("RPN_ANCHOR_SCALES", {"RPN_ANCHOR_SCALES": (8, 16, 32, 64, float("inf"))}),
    ("GRADIENT_CLIP_NORM", {"GRADIENT_CLIP_NORM": 0}),
    ("LOSS_WEIGHTS", {"LOSS_WEIGHTS": {"rpn_class_loss": 1.}}),
    ("LOSS_WEIGHTS", {"LOSS_WEIGHTS": dict({n: 1. for n in LOSS_NAMES}, extra_loss=1.)}),
    ("LOSS_WEIGHTS", {"LOSS_WEIGHTS": dict({n: 1. for n in LOSS_NAMES[:4]},
                                           mask_loss=1.)}),
    ("LOSS_WEIGHTS", {"LOSS_WEIGHTS": dict({n: 1. for n in LOSS_NAMES},
                                           mrcnn_mask_loss=-1.)}),
    ("LOSS_WEIGHTS", {"LOSS_WEIGHTS": [1.] * 5}),
    ("USE_RPN_ROIS", {"USE_RPN_ROIS": 1}),
    ("TRAIN_BN", {"TRAIN_BN": "no"}),
    ("WORKERS", {"WORKERS": -1}),
    ("USE_MULTIPROCESSING", {"USE_MULTIPROCESSING": None}),
    ("MAX_CONSECUTIVE_FAILURES", {"MAX_CONSECUTIVE_FAILURES": 0}),
]


@pytest.mark.parametrize("field,fields", BAD_FIELDS,
                         ids=["{}-{}".format(f, i) for i, (f, _) in enumerate(BAD_FIELDS)])
def test_validation_error_names_field(field, fields):
    with pytest.raises(ValueError) as info:
        make(**fields)
    assert field in str(info.value)


def test_loss_weights_error_lists_unknown_and_missing_keys():
    weights = dict({n: 1. for n in LOSS_NAMES[:4]}, mask_loss=1.)
    with pytest.raises(ValueError) as info:
        make(LOSS_WEIGHTS=weights)
    assert "mask_loss" in str(info.value) and "mrcnn_mask_loss" in str(info.value)


def test_valid_edge_values_accepted():
    c = make(IMAGE_MIN_DIM=None, IMAGE_MIN_SCALE=None, TRAIN_BN=None,
             GRADIENT_CLIP_NORM=None, VALIDATION_STEPS=0, WORKERS=4,
             USE_MULTIPROCESSING=True, NUM_CLASSES=np.int64(3),
             IMAGE_CHANNEL_COUNT=1, MEAN_PIXEL=np.array([100.]),
             MASK_POOL_SIZE=7, MASK_SHAPE=[14, 14],
             RPN_ANCHOR_SCALES=(8, 16), BACKBONE_STRIDES=[4, 8],
             IMAGE_MAX_DIM=128)
    assert c.IMAGE_META_SIZE == 15
    np.testing.assert_array_equal(c.IMAGE_SHAPE, [128, 128, 1])


def test_validate_can_be_rerun_after_changes():
    c = Config()
    c.NUM_CLASSES = 0
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        c.validate()


def test_model_arguments_are_checked_before_anything_reads_them(tmp_path):
    """MaskRCNN(mode, config, model_dir): a forgotten () on the config class, a dict, a
    config without NAME (Matterport's base Config) or no model_dir were AttributeErrors
    and TypeErrors from deep inside (posixpath, checkpoints)."""
    from pathlib import Path

    from mrcnn import model as modellib
    from mrcnn.config import check_model_arguments
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN

    class ShapesConfig(Config):
        NAME = "shapes"

    cases = [
        (ShapesConfig, str(tmp_path), TypeError,
         "config: expected a Config instance, got the class ShapesConfig: pass "
         "ShapesConfig()"),
        ({"NAME": "x"}, str(tmp_path), TypeError,
         "config: expected an instance of a mrcnn.config.Config subclass, got dict"),
        (Config(), str(tmp_path), ValueError,
         "config.NAME: expected a non-empty name (it names the training runs and "
         "checkpoints): set NAME in your Config subclass, got None"),
        (ShapesConfig(), None, TypeError,
         "model_dir: expected the folder for logs and checkpoints (a path), got None"),
    ]
    for config, model_dir, error, message in cases:
        for build in (modellib.MaskRCNN, SiameseMaskRCNN):
            with pytest.raises(error) as caught:
                build("inference", config, model_dir)
            assert str(caught.value) == message, (build, caught.value)
    check_model_arguments(ShapesConfig(), Path(tmp_path))  # a pathlib folder is fine
    check_model_arguments(preset("tiny"), str(tmp_path))
    assert list(tmp_path.iterdir()) == []
