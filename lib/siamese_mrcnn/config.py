"""Siamese Mask R-CNN configuration: defaults, presets and typed overrides.

``Config`` extends ``mrcnn.config.Config`` with the fields of the paper's code
(NAME, EXPERIMENT, MODEL, CHECKPOINT_DIR, NUM_TARGETS, FPN_FEATUREMAPS,
TARGET_MIN_DIM / TARGET_MAX_DIM) and one project switch, REFERENCE_MOLDING.
Its defaults are the paper's "small" model (the old ``lib/config.py``); the
presets reproduce the configurations of the paper's notebooks:

=============  ===============================================================
small          1 GPU x 12 images, images 400/512, references 75/96, FC 512
large          4 GPUs x 3 images, images 800/1024, references 150/192, FC 1024,
               256 RPN anchors, 2000/1000 proposals, 200 ROIs, 100 detections
small_eval     small, one image at a time (inference)
large_eval     large, one image at a time (inference)
=============  ===============================================================

Computed fields: BATCH_SIZE, IMAGE_SHAPE, IMAGE_META_SIZE (12 + NUM_CLASSES)
and TARGET_SHAPE ([TARGET_MAX_DIM, TARGET_MAX_DIM, 3]).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mrcnn import config as mrcnn_config
from mrcnn.config import check_int, is_int, is_number
# Typed overrides live with the base config; these names stay importable from here.
from mrcnn.overrides import config_from_overrides, parse_value  # noqa: F401

MODELS = ("mrcnn", "frcnn")

# Fields the constructor derives from the others; overriding them is an error.
COMPUTED_FIELDS = mrcnn_config.COMPUTED_FIELDS + ("TARGET_SHAPE",)


class Config(mrcnn_config.Config):
    """Base configuration of Siamese Mask R-CNN (the paper's small model).

    Subclass it and override class attributes, as with Matterport's Config,
    or use ``preset()`` / ``config_from_overrides()``.
    """
    # Name of the configuration and of the experiment; the training log
    # directory is logs/siamese_{MODEL}_{NAME}_{EXPERIMENT}/.
    NAME = "coco"
    EXPERIMENT = "example"

    # 'mrcnn' (boxes and masks) or 'frcnn' (Faster R-CNN: no mask head).
    MODEL = "mrcnn"

    # Directory holding pretrained checkpoints (ImageNet backbones, released
    # Siamese weights).
    CHECKPOINT_DIR = "checkpoints/"

    GPU_COUNT = 1
    IMAGES_PER_GPU = 1

    # Siamese Mask R-CNN uses a ResNet-50 ("resnet_tiny" for CPU tests).
    BACKBONE = "resnet50"

    # Background and "same category as the reference".
    NUM_CLASSES = 2

    # Width of the shared FPN (every conv followed by ReLU). The matching
    # convs fpn_distance_P2..P6 output 3 * FPN_FEATUREMAPS / 2 channels.
    # TOP_DOWN_PYRAMID_SIZE (Matterport's field, 256) is not used by the
    # Siamese FPN.
    FPN_FEATUREMAPS = 256
    FPN_CLASSIF_FC_LAYERS_SIZE = 512

    # References per query (k-shot); their pyramid levels are averaged.
    NUM_TARGETS = 1

    # Reference images are resized like the query ("square" mode) to
    # TARGET_MAX_DIM x TARGET_MAX_DIM.
    TARGET_MIN_DIM = 75
    TARGET_MAX_DIM = 96

    # True: references are mean-subtracted (molded) like the query at
    # inference, as they are in training. False: the old code's inference,
    # which fed raw references (reproduces the published numbers).
    REFERENCE_MOLDING = True

    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 400
    IMAGE_MAX_DIM = 512

    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    POST_NMS_ROIS_TRAINING = 500
    POST_NMS_ROIS_INFERENCE = 500
    TRAIN_ROIS_PER_IMAGE = 100
    MAX_GT_INSTANCES = 30
    DETECTION_MAX_INSTANCES = 30
    DETECTION_NMS_THRESHOLD = 0.5

    LEARNING_RATE = 0.02
    LOSS_WEIGHTS = {
        "rpn_class_loss": 2.,
        "rpn_bbox_loss": 0.1,
        "mrcnn_class_loss": 2.,
        "mrcnn_bbox_loss": 0.5,
        "mrcnn_mask_loss": 1.,
    }
    TRAIN_BN = False

    @classmethod
    def computed_fields(cls) -> tuple:
        return COMPUTED_FIELDS

    def compute_derived(self) -> None:
        """Matterport's computed fields plus TARGET_SHAPE."""
        super().compute_derived()
        self.TARGET_SHAPE = np.array([self.TARGET_MAX_DIM, self.TARGET_MAX_DIM, 3])

    def validate(self) -> None:
        """Matterport's checks plus the Siamese fields; ValueError names the field."""
        super().validate()
        self._validate_siamese_model()
        self._validate_references()
        self._validate_names()

    def _validate_siamese_model(self) -> None:
        # NUM_CLASSES is checked by SiameseMaskRCNN (check_siamese_classes), not here:
        # the paper's Mask R-CNN baseline builds a plain MaskRCNN from this Config with
        # NUM_CLASSES = 81.
        if self.MODEL not in MODELS:
            raise ValueError("MODEL must be one of {}; got {!r}".format(
                list(MODELS), self.MODEL))
        if not isinstance(self.BACKBONE, str) or not self.BACKBONE.startswith("resnet"):
            raise ValueError(
                "BACKBONE must be a ResNet for Siamese Mask R-CNN (one of {}); "
                "got {!r}".format(sorted(self.RESNET_ARCHITECTURES), self.BACKBONE))
        check_int(self, "FPN_FEATUREMAPS", minimum=1)
        if self.FPN_FEATUREMAPS % 2:
            raise ValueError(
                "FPN_FEATUREMAPS must be even (the matching convs have "
                "3 * FPN_FEATUREMAPS / 2 filters); got {}".format(self.FPN_FEATUREMAPS))

    def _validate_references(self) -> None:
        check_int(self, "NUM_TARGETS", minimum=1)
        check_int(self, "TARGET_MIN_DIM", minimum=1)
        check_int(self, "TARGET_MAX_DIM", minimum=1)
        if self.TARGET_MIN_DIM > self.TARGET_MAX_DIM:
            raise ValueError(
                "TARGET_MIN_DIM must be <= TARGET_MAX_DIM; got TARGET_MIN_DIM={} and "
                "TARGET_MAX_DIM={}".format(self.TARGET_MIN_DIM, self.TARGET_MAX_DIM))
        if not isinstance(self.REFERENCE_MOLDING, (bool, np.bool_)):
            raise ValueError("REFERENCE_MOLDING must be True or False; got {!r}".format(
                self.REFERENCE_MOLDING))

    def _validate_names(self) -> None:
        # They name the log directory, so they must be usable as text.
        for name in ("NAME", "EXPERIMENT", "CHECKPOINT_DIR"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError("{} must be a non-empty string; got {!r}".format(
                    name, value))


############################################################
#  Presets
############################################################

class SmallConfig(Config):
    """The paper's small model, trained on 1 GPU x 12 images (train.ipynb)."""
    IMAGES_PER_GPU = 12


class LargeConfig(Config):
    """The paper's large model (experiments/train_parallel_coco_*.ipynb),
    trained on 4 GPUs x 3 images."""
    NAME = "parallel_coco"
    GPU_COUNT = 4
    IMAGES_PER_GPU = 3
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    TARGET_MIN_DIM = 150
    TARGET_MAX_DIM = 192
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000
    TRAIN_ROIS_PER_IMAGE = 200
    DETECTION_MAX_INSTANCES = 100
    MAX_GT_INSTANCES = 100


class SmallEvalConfig(Config):
    """Small model at inference, one image at a time (evaluate-experiments.ipynb)."""
    EXPERIMENT = "evaluation"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


class LargeEvalConfig(LargeConfig):
    """Large model at inference, one image at a time (evaluate-experiments.ipynb)."""
    NAME = "coco"
    EXPERIMENT = "evaluation"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


#: CPU sizes for unit tests and smoke runs: resnet_tiny, 64 px queries, 32 px references.
TINY_FIELDS = {
    "NAME": "tiny", "BACKBONE": "resnet_tiny", "IMAGE_MIN_DIM": 64, "IMAGE_MAX_DIM": 64,
    "TARGET_MIN_DIM": 32, "TARGET_MAX_DIM": 32, "FPN_FEATUREMAPS": 32,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 64, "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128),
    "RPN_TRAIN_ANCHORS_PER_IMAGE": 32, "POST_NMS_ROIS_TRAINING": 32,
    "POST_NMS_ROIS_INFERENCE": 32, "TRAIN_ROIS_PER_IMAGE": 16, "MAX_GT_INSTANCES": 4,
    "DETECTION_MAX_INSTANCES": 8, "STEPS_PER_EPOCH": 1, "VALIDATION_STEPS": 1,
}

#: The quick start's model (make demo): 128 px, trained from scratch on a CPU.
QUICKSTART_FIELDS = {
    "NAME": "shapes", "EXPERIMENT": "quickstart", "BACKBONE": "resnet_tiny",
    "IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128, "TARGET_MIN_DIM": 48, "TARGET_MAX_DIM": 64,
    "FPN_FEATUREMAPS": 64, "FPN_CLASSIF_FC_LAYERS_SIZE": 128, "MASK_HEAD_CONV_CHANNELS": 64,
    "MASK_POOL_SIZE": 7, "MASK_SHAPE": [14, 14], "MINI_MASK_SHAPE": (28, 28),
    "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128), "IMAGES_PER_GPU": 4,
    "POST_NMS_ROIS_TRAINING": 200, "POST_NMS_ROIS_INFERENCE": 100,
    "TRAIN_ROIS_PER_IMAGE": 32, "RPN_TRAIN_ANCHORS_PER_IMAGE": 64, "MAX_GT_INSTANCES": 10,
    "DETECTION_MAX_INSTANCES": 20,
    # Trained from scratch (no ImageNet weights offline): BatchNorm must learn.
    "TRAIN_BN": True, "LEARNING_RATE": 0.02, "VALIDATION_STEPS": 5,
}


def _sized(name: str, base: type, fields: dict, doc: str) -> type:
    """A preset class: ``base`` with ``fields`` (data above) as class attributes."""
    return type(name, (base,), {**fields, "__doc__": doc, "__module__": __name__})


TinyConfig = _sized("TinyConfig", SmallConfig, dict(TINY_FIELDS, IMAGES_PER_GPU=2),
                    "TINY_FIELDS for training, 2 images per batch.")
TinyEvalConfig = _sized("TinyEvalConfig", SmallEvalConfig, TINY_FIELDS,
                        "TINY_FIELDS at inference, one image at a time.")
QuickstartConfig = _sized("QuickstartConfig", SmallConfig, QUICKSTART_FIELDS,
                          "The quick start's training config (make demo).")
QuickstartEvalConfig = _sized(
    "QuickstartEvalConfig", SmallEvalConfig, dict(QUICKSTART_FIELDS, IMAGES_PER_GPU=4),
    "The quick start's evaluation config: 4 images per batch.")

PRESETS = {
    "small": SmallConfig,
    "large": LargeConfig,
    "small_eval": SmallEvalConfig,
    "large_eval": LargeEvalConfig,
    "tiny": TinyConfig,
    "tiny_eval": TinyEvalConfig,
    "quickstart": QuickstartConfig,
    "quickstart_eval": QuickstartEvalConfig,
}


############################################################
#  The paper's training schedules
############################################################

#: The batch the paper's learning rates are for (1 GPU x 12 images, or 4 x 3).
PAPER_BATCH_SIZE = 12

#: {end epoch: {"learning_rate", "layers"}}, train_schedule's form, with rates as
#: multiples of the run's base rate (schedule() scales them): "paper" is the paper's
#: 160 epochs x 1000 steps (heads for one epoch, all layers, then a tenth of the rate
#: from epoch 120); "full" is the 320-epoch schedule of the released "full" weights.
SCHEDULES = {
    "paper": {1: {"learning_rate": 1.0, "layers": "heads"},
              120: {"learning_rate": 1.0, "layers": "all"},
              160: {"learning_rate": 0.1, "layers": "all"}},
    "full": {1: {"learning_rate": 1.0, "layers": "heads"},
             240: {"learning_rate": 1.0, "layers": "all"},
             320: {"learning_rate": 0.1, "layers": "all"}},
}


def schedule(name: str, learning_rate: float) -> dict:
    """A named schedule with absolute rates: ``schedule("paper", 0.02)`` ->
    {1: {"learning_rate": 0.02, "layers": "heads"}, 120: ..., 160: {0.002, "all"}}."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {sorted(SCHEDULES)}, got {name!r}")
    return {end: {"learning_rate": learning_rate * stage["learning_rate"],
                  "layers": stage["layers"]}
            for end, stage in SCHEDULES[name].items()}


def check_schedule(schedule: Any) -> dict:
    """train_schedule's ``{end_epoch: {"learning_rate", "layers"}}`` as {int: stage}.
    ValueError, before any training, for what would fail only when its stage begins:
    not a mapping or empty, an end epoch that is not an integer >= 1 ("120" from JSON
    is one), a stage without both keys, a rate that is not a finite number >= 0."""
    expected = '{end_epoch: {"learning_rate": float, "layers": str}, ...}'
    if not isinstance(schedule, Mapping) or not schedule:
        got = "an empty one" if isinstance(schedule, Mapping) else type(schedule).__name__
        raise ValueError(f"schedule: expected {expected}, got {got}")
    checked = {}
    for end, stage in schedule.items():
        epoch = int(end) if isinstance(end, str) and end.strip().isdigit() else end
        if not is_int(epoch) or epoch < 1 or int(epoch) in checked:
            raise ValueError(f"schedule: expected distinct integer end epochs >= 1, got "
                             f"{list(schedule)}")
        if not (isinstance(stage, Mapping) and isinstance(stage.get("layers"), str)
                and "learning_rate" in stage):
            raise ValueError(f"schedule[{end!r}]: expected {{\"learning_rate\": float, "
                             f"\"layers\": str}}, got {stage!r}")
        rate = stage["learning_rate"]
        if not is_number(rate) or rate < 0:
            raise ValueError(f"schedule[{end!r}]: expected a finite learning_rate >= 0, got "
                             f"{rate!r}")
        checked[int(epoch)] = {"learning_rate": rate, "layers": stage["layers"]}
    return checked


def paper_learning_rate(config: Config) -> float:
    """LEARNING_RATE scaled linearly from the paper's batch of 12 to BATCH_SIZE."""
    return config.LEARNING_RATE * config.BATCH_SIZE / PAPER_BATCH_SIZE


def preset(name: str, **overrides: Any) -> Config:
    """A preset configuration (a key of PRESETS: the paper's 'small', 'large',
    'small_eval', 'large_eval'; the CPU sizes 'tiny', 'tiny_eval', 'quickstart',
    'quickstart_eval'), with optional field overrides, e.g.
    ``preset('small', IMAGES_PER_GPU=2)``.

    String override values are parsed like config_from_overrides() does.
    """
    key = str(name).lower().replace("-", "_")
    if key not in PRESETS:
        raise ValueError("preset: expected one of {}, got {!r}".format(
            sorted(PRESETS), name))
    return config_from_overrides(PRESETS[key], overrides)


def check_siamese_classes(config: "Config") -> None:
    """What a SiameseMaskRCNN needs of a valid Config (data-only uses need neither):
    NUM_CLASSES 2, since the heads classify 'background' vs 'same category as the
    reference', and a TARGET_MAX_DIM divisible by 32, since the reference runs through
    the backbone and FPN. ValueError naming the field."""
    if config.NUM_CLASSES != 2:
        raise ValueError(
            "NUM_CLASSES must be 2 for Siamese Mask R-CNN (background and "
            "'same category as the reference'); got {!r}. A config with other classes "
            "builds a plain mrcnn.model.MaskRCNN.".format(config.NUM_CLASSES))
    if config.TARGET_MAX_DIM % 32:
        # The FPN's top-down adds need sides divisible by C5's stride: Keras failed
        # while building, on "Inputs have incompatible shapes".
        raise ValueError(
            "TARGET_MAX_DIM must be divisible by 32 for the model (the reference goes "
            "through the backbone and FPN); got {}. Use e.g. 64, 96, 128 or 192".format(
                config.TARGET_MAX_DIM))
