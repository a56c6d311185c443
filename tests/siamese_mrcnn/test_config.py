"""Siamese Config: defaults, computed fields, presets, validation, typed overrides."""
import numpy as np
import pytest

from mrcnn import config as mrcnn_config
from siamese_mrcnn import config as siamese_config
from siamese_mrcnn.config import (Config, LargeConfig, LargeEvalConfig, SmallConfig,
                                  SmallEvalConfig, config_from_overrides, parse_value,
                                  preset)


def test_defaults_are_the_papers_small_model():
    config = Config()
    assert isinstance(config, mrcnn_config.Config)
    expected = {
        "BACKBONE": "resnet50", "IMAGE_MIN_DIM": 400, "IMAGE_MAX_DIM": 512,
        "TARGET_MIN_DIM": 75, "TARGET_MAX_DIM": 96, "FPN_FEATUREMAPS": 256,
        "FPN_CLASSIF_FC_LAYERS_SIZE": 512, "NUM_TARGETS": 1, "IMAGES_PER_GPU": 1,
        "GPU_COUNT": 1, "RPN_TRAIN_ANCHORS_PER_IMAGE": 64, "POST_NMS_ROIS_TRAINING": 500,
        "POST_NMS_ROIS_INFERENCE": 500, "TRAIN_ROIS_PER_IMAGE": 100,
        "MAX_GT_INSTANCES": 30, "DETECTION_MAX_INSTANCES": 30,
        "DETECTION_NMS_THRESHOLD": 0.5, "LEARNING_RATE": 0.02, "TRAIN_BN": False,
        "MODEL": "mrcnn", "CHECKPOINT_DIR": "checkpoints/", "NUM_CLASSES": 2,
        "REFERENCE_MOLDING": True, "NAME": "coco", "EXPERIMENT": "example",
    }
    for name, value in expected.items():
        assert getattr(config, name) == value, name
    assert config.LOSS_WEIGHTS == {"rpn_class_loss": 2.0, "rpn_bbox_loss": 0.1,
                                   "mrcnn_class_loss": 2.0, "mrcnn_bbox_loss": 0.5,
                                   "mrcnn_mask_loss": 1.0}


def test_computed_fields():
    config = Config()
    assert config.BATCH_SIZE == 1
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [512, 512, 3])
    np.testing.assert_array_equal(config.TARGET_SHAPE, [96, 96, 3])
    assert config.IMAGE_META_SIZE == 12 + 2

    class Custom(Config):
        TARGET_MIN_DIM = 40
        TARGET_MAX_DIM = 64
        IMAGES_PER_GPU = 3
        GPU_COUNT = 2

    custom = Custom()
    np.testing.assert_array_equal(custom.TARGET_SHAPE, [64, 64, 3])
    assert custom.BATCH_SIZE == 6


def test_small_and_large_presets():
    small = preset("small")
    assert isinstance(small, SmallConfig)
    assert (small.GPU_COUNT, small.IMAGES_PER_GPU, small.BATCH_SIZE) == (1, 12, 12)
    assert (small.IMAGE_MAX_DIM, small.TARGET_MAX_DIM) == (512, 96)

    large = preset("large")
    assert isinstance(large, LargeConfig)
    expected = {
        "GPU_COUNT": 4, "IMAGES_PER_GPU": 3, "BATCH_SIZE": 12, "IMAGE_MIN_DIM": 800,
        "IMAGE_MAX_DIM": 1024, "TARGET_MIN_DIM": 150, "TARGET_MAX_DIM": 192,
        "FPN_CLASSIF_FC_LAYERS_SIZE": 1024, "FPN_FEATUREMAPS": 256,
        "RPN_TRAIN_ANCHORS_PER_IMAGE": 256, "POST_NMS_ROIS_TRAINING": 2000,
        "POST_NMS_ROIS_INFERENCE": 1000, "TRAIN_ROIS_PER_IMAGE": 200,
        "DETECTION_MAX_INSTANCES": 100, "MAX_GT_INSTANCES": 100,
    }
    for name, value in expected.items():
        assert getattr(large, name) == value, name
    np.testing.assert_array_equal(large.TARGET_SHAPE, [192, 192, 3])
    np.testing.assert_array_equal(large.IMAGE_SHAPE, [1024, 1024, 3])


def test_eval_presets_run_one_image_with_the_training_geometry():
    small_eval, large_eval = preset("small_eval"), preset("large-eval")
    assert isinstance(small_eval, SmallEvalConfig) and isinstance(large_eval, LargeEvalConfig)
    for config in (small_eval, large_eval):
        assert config.BATCH_SIZE == 1 and config.GPU_COUNT == 1
        assert config.EXPERIMENT == "evaluation"
    assert large_eval.IMAGE_MAX_DIM == 1024 and large_eval.POST_NMS_ROIS_INFERENCE == 1000
    assert small_eval.IMAGE_MAX_DIM == 512 and small_eval.FPN_CLASSIF_FC_LAYERS_SIZE == 512


def test_preset_overrides_and_unknown_preset():
    config = preset("small", IMAGES_PER_GPU=2, BACKBONE="resnet_tiny", NUM_TARGETS="5")
    assert config.BATCH_SIZE == 2 and config.BACKBONE == "resnet_tiny"
    assert config.NUM_TARGETS == 5
    with pytest.raises(ValueError, match="preset"):
        preset("medium")


ARCHITECTURE = ("BACKBONE", "FPN_FEATUREMAPS", "FPN_CLASSIF_FC_LAYERS_SIZE",
                "MASK_HEAD_CONV_CHANNELS", "MASK_POOL_SIZE", "MASK_SHAPE", "POOL_SIZE",
                "RPN_ANCHOR_SCALES", "RPN_ANCHOR_RATIOS", "IMAGE_SHAPE", "TARGET_SHAPE",
                "NUM_CLASSES", "MODEL")


@pytest.mark.parametrize("name, fields", [("tiny", siamese_config.TINY_FIELDS),
                                          ("quickstart", siamese_config.QUICKSTART_FIELDS)])
def test_cpu_presets_are_their_data_and_share_weights_with_their_eval_variant(name, fields):
    train, infer = preset(name), preset(name + "_eval")
    for config in (train, infer):
        config.validate()
        for field, value in fields.items():
            if field != "IMAGES_PER_GPU":
                assert np.asarray(getattr(config, field)).tolist() == \
                    np.asarray(value).tolist(), (name, field)
    assert infer.GPU_COUNT == 1 and infer.EXPERIMENT == (
        fields.get("EXPERIMENT", "evaluation"))
    for field in ARCHITECTURE:  # a checkpoint of one loads into the other
        assert np.asarray(getattr(train, field)).tolist() == \
            np.asarray(getattr(infer, field)).tolist(), (name, field)
    assert preset("tiny").BATCH_SIZE == 2 and preset("tiny_eval").BATCH_SIZE == 1
    assert preset("quickstart").BATCH_SIZE == preset("quickstart_eval").BATCH_SIZE == 4


def test_paper_schedules_are_data_in_train_schedules_form():
    assert siamese_config.schedule("paper", 0.02) == {
        1: {"learning_rate": 0.02, "layers": "heads"},
        120: {"learning_rate": 0.02, "layers": "all"},
        160: {"learning_rate": pytest.approx(0.002), "layers": "all"}}
    assert max(siamese_config.schedule("full", 1.0)) == 320
    with pytest.raises(ValueError, match="'full', 'paper'"):
        siamese_config.schedule("short", 0.02)
    # The paper's rate is for 12 images per step; 4 images take a third of it.
    assert siamese_config.paper_learning_rate(preset("small")) == pytest.approx(0.02)
    assert siamese_config.paper_learning_rate(preset("small", IMAGES_PER_GPU=4)) == \
        pytest.approx(0.02 / 3)


@pytest.mark.parametrize("field, value, message", [
    ("NUM_TARGETS", 0, "NUM_TARGETS"),
    ("MODEL", "yolo", "MODEL"),
    ("TARGET_MIN_DIM", 100, "TARGET_MIN_DIM must be <= TARGET_MAX_DIM"),
    ("TARGET_MAX_DIM", -5, "TARGET_MAX_DIM"),
    ("TARGET_MIN_DIM", 0, "TARGET_MIN_DIM"),
    ("BACKBONE", "vgg16", "BACKBONE"),
    ("FPN_FEATUREMAPS", 255, "FPN_FEATUREMAPS must be even"),
    ("FPN_FEATUREMAPS", 0, "FPN_FEATUREMAPS"),
    ("REFERENCE_MOLDING", "yes", "REFERENCE_MOLDING"),
    ("EXPERIMENT", None, "EXPERIMENT"),
    ("IMAGE_MAX_DIM", 500, "IMAGE_MAX_DIM"),  # inherited check: divisible by 64
])
def test_invalid_configs_fail_at_construction_naming_the_field(field, value, message):
    bad = type("Bad", (Config,), {field: value})
    with pytest.raises(ValueError, match=message):
        bad()


def test_coco_class_count_is_a_valid_config_for_a_plain_mask_rcnn(tmp_path):
    # The paper's Mask R-CNN baseline notebook: siamese_mrcnn.config.Config with
    # NUM_CLASSES = 81 builds a plain mrcnn MaskRCNN; only the Siamese model needs 2.
    from mrcnn.model import MaskRCNN
    from siamese_mrcnn.config import check_siamese_classes
    from siamese_mrcnn.model import SiameseMaskRCNN

    coco = type("Coco", (Config,), {"NUM_CLASSES": 81, "BACKBONE": "resnet_tiny",
                                    "IMAGE_MIN_DIM": 64, "IMAGE_MAX_DIM": 64,
                                    "IMAGES_PER_GPU": 1})()
    assert coco.IMAGE_META_SIZE == 12 + 81
    with pytest.raises(ValueError, match=r"NUM_CLASSES must be 2 .*got 81"):
        check_siamese_classes(coco)
    with pytest.raises(ValueError, match=r"NUM_CLASSES must be 2 .*plain mrcnn"):
        SiameseMaskRCNN("inference", coco, str(tmp_path))
    model = MaskRCNN("inference", coco, str(tmp_path))
    assert model.keras_model.get_layer("mrcnn_class_logits").output.shape[-1] == 81


def test_a_reference_size_the_fpn_cannot_take_is_named_when_the_model_is_built(tmp_path):
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN

    odd = preset("tiny_eval", TARGET_MIN_DIM=32, TARGET_MAX_DIM=48)  # data-only: valid
    # Keras failed while building: "Inputs have incompatible shapes (4, 4, 32), (3, 3, 32)".
    with pytest.raises(ValueError, match=r"TARGET_MAX_DIM must be divisible by 32 for the "
                       r"model .*got 48"):
        SiameseMaskRCNN("inference", odd, str(tmp_path))


def test_callable_backbone_is_rejected():
    bad = type("Bad", (Config,), {"BACKBONE": staticmethod(lambda x: x),
                                  "COMPUTE_BACKBONE_SHAPE": staticmethod(lambda s: s)})
    with pytest.raises(ValueError, match="BACKBONE must be a ResNet"):
        bad()


def test_resnet_variants_are_accepted():
    for backbone in ("resnet50", "resnet101", "resnet_tiny"):
        assert config_from_overrides(Config, {"BACKBONE": backbone}).BACKBONE == backbone


def test_overrides_are_typed_like_the_defaults():
    config = config_from_overrides(Config, {
        "IMAGES_PER_GPU": "4", "LEARNING_RATE": "0.01", "TRAIN_BN": "true",
        "USE_MINI_MASK": "False", "NAME": "shapes", "RPN_ANCHOR_SCALES": "(8, 16, 32, 64, 128)",
        "RPN_ANCHOR_RATIOS": "[1]", "MEAN_PIXEL": "[1, 2, 3]", "IMAGE_MIN_SCALE": "1.5",
        "LOSS_WEIGHTS": "{'rpn_class_loss': 1, 'rpn_bbox_loss': 1, 'mrcnn_class_loss': 1,"
                        " 'mrcnn_bbox_loss': 1, 'mrcnn_mask_loss': 0}",
        "GRADIENT_CLIP_NORM": "None", "MINI_MASK_SHAPE": "[28, 28]",
    })
    assert config.IMAGES_PER_GPU == 4 and isinstance(config.IMAGES_PER_GPU, int)
    assert config.BATCH_SIZE == 4  # recomputed
    assert config.LEARNING_RATE == 0.01
    assert config.TRAIN_BN is True and config.USE_MINI_MASK is False
    assert config.NAME == "shapes"
    assert config.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)
    assert config.RPN_ANCHOR_RATIOS == [1]
    assert config.MINI_MASK_SHAPE == (28, 28)  # tuple like the default
    assert isinstance(config.MEAN_PIXEL, np.ndarray)
    np.testing.assert_array_equal(config.MEAN_PIXEL, [1.0, 2.0, 3.0])
    assert config.IMAGE_MIN_SCALE == 1.5
    assert config.LOSS_WEIGHTS["mrcnn_mask_loss"] == 0
    assert config.GRADIENT_CLIP_NORM is None


def test_overrides_recompute_target_shape_and_leave_the_base_untouched():
    base = Config()
    config = config_from_overrides(base, {"TARGET_MAX_DIM": "128", "TARGET_MIN_DIM": "100"})
    np.testing.assert_array_equal(config.TARGET_SHAPE, [128, 128, 3])
    np.testing.assert_array_equal(base.TARGET_SHAPE, [96, 96, 3])
    assert base.TARGET_MAX_DIM == 96


def test_override_errors():
    with pytest.raises(ValueError, match="unknown configuration field 'IMAGE_MAX_DIMS'.*"
                                         "IMAGE_MAX_DIM"):
        config_from_overrides(Config, {"IMAGE_MAX_DIMS": "512"})
    with pytest.raises(ValueError, match="TARGET_SHAPE is computed"):
        config_from_overrides(Config, {"TARGET_SHAPE": "[1, 1, 3]"})
    with pytest.raises(ValueError, match="IMAGES_PER_GPU: expected a value of type int"):
        config_from_overrides(Config, {"IMAGES_PER_GPU": "two"})
    with pytest.raises(ValueError, match="TRAIN_BN"):
        config_from_overrides(Config, {"TRAIN_BN": "maybe"})
    with pytest.raises(ValueError, match="RPN_ANCHOR_SCALES"):
        config_from_overrides(Config, {"RPN_ANCHOR_SCALES": "[1, 2"})
    with pytest.raises(ValueError, match="LOSS_WEIGHTS"):
        config_from_overrides(Config, {"LOSS_WEIGHTS": "[1, 2]"})
    # Values parse but fail validation: the validation message names the field.
    with pytest.raises(ValueError, match="NUM_TARGETS"):
        config_from_overrides(Config, {"NUM_TARGETS": "0"})


def test_parse_value_none_and_strings():
    assert parse_value("IMAGE_MIN_DIM", "None", 400) is None
    assert parse_value("NAME", "None", "coco") == "None"
    assert parse_value("X", "[1, 2]", None) == [1, 2]
    assert parse_value("X", "hello", None) == "hello"


def test_module_lists_models():
    assert siamese_config.MODELS == ("mrcnn", "frcnn")
    frcnn = config_from_overrides(Config, {"MODEL": "frcnn"})
    assert frcnn.MODEL == "frcnn"
