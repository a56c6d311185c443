"""Mask R-CNN base configuration (Matterport 2.1 fields, validated).

Don't use ``Config`` directly: subclass it, override the class attributes that
need to change and call ``super().__init__()``, exactly as with Matterport's
class. Construction computes the derived fields (BATCH_SIZE, IMAGE_SHAPE,
IMAGE_META_SIZE) and then validates every field, raising a ``ValueError`` that
names the offending field.

Project extensions to Matterport's fields: BACKBONE may also be
``"resnet_tiny"`` (see RESNET_ARCHITECTURES), WORKERS, USE_MULTIPROCESSING and
MAX_CONSECUTIVE_FAILURES (data loading).
"""
from __future__ import annotations

import inspect
import logging
import math
import numbers
import os
import types
from typing import Any, Dict

import numpy as np

logger = logging.getLogger(__name__)

# Blocks per ResNet stage (conv2_x .. conv5_x) for each named backbone.
# "resnet_tiny" is a CPU-test backbone: 1 bottleneck block per stage and a
# quarter of the filters, with the same layer-name scheme as the real ones.
RESNET_ARCHITECTURES = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet_tiny": (1, 1, 1, 1),
}

# The five loss components of Mask R-CNN, in Matterport's order.
LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
              "mrcnn_bbox_loss", "mrcnn_mask_loss")

IMAGE_RESIZE_MODES = ("none", "square", "pad64", "crop")
# Fields compute_derived() sets from the others: not settable by overrides.
COMPUTED_FIELDS = ("BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE")

# Config.DISTRIBUTION values.
DISTRIBUTIONS = (None, "multi_worker")

# The FPN halves the feature maps 6 times (P2..P6), so the input side must be
# divisible by 2**6.
_SIZE_DIVISOR = 64


class Config(object):
    """Base configuration class. For custom configurations, create a
    sub-class that inherits from this one and override properties
    that need to be changed.
    """
    # Name the configurations. For example, 'COCO', 'Experiment 3', ...etc.
    NAME = None  # Override in sub-classes

    # Number of GPUs (replicas) to use. When using only a CPU, this is 1.
    GPU_COUNT = 1

    # Number of images to train with on each GPU.
    IMAGES_PER_GPU = 2

    # Number of training steps per epoch.
    STEPS_PER_EPOCH = 1000

    # Number of validation steps to run at the end of every training epoch.
    VALIDATION_STEPS = 50

    # Backbone network architecture: a key of RESNET_ARCHITECTURES
    # ("resnet50", "resnet101", "resnet_tiny") or a callable with the
    # signature of model.resnet_graph; a callable also needs
    # COMPUTE_BACKBONE_SHAPE.
    BACKBONE = "resnet101"

    # Only used with a callable BACKBONE: computes the shape of each level
    # of the FPN pyramid (see model.compute_backbone_shapes).
    COMPUTE_BACKBONE_SHAPE = None

    # The strides of each layer of the FPN Pyramid (ResNet based values).
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]

    # Size of the fully-connected layers in the classification graph
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024

    # Width of the mask head's four 3x3 convs and its deconv (project extension;
    # Matterport hard-codes 256, which the released weights need).
    MASK_HEAD_CONV_CHANNELS = 256

    # Size of the top-down layers used to build the feature pyramid
    TOP_DOWN_PYRAMID_SIZE = 256

    # Number of classification classes (including background)
    NUM_CLASSES = 1  # Override in sub-classes

    # Length of square anchor side in pixels, one per pyramid level
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)

    # Ratios of anchors at each cell (width/height)
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]

    # Anchor stride on the feature map (1 = an anchor set at every cell)
    RPN_ANCHOR_STRIDE = 1

    # Non-max suppression threshold to filter RPN proposals.
    RPN_NMS_THRESHOLD = 0.7

    # How many anchors per image to use for RPN training
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256

    # ROIs kept after tf.nn.top_k and before non-maximum suppression
    PRE_NMS_LIMIT = 6000

    # ROIs kept after non-maximum suppression (training and inference)
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # Resize instance masks to a smaller size to reduce memory load.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)  # (height, width) of the mini-mask

    # Input image resizing: "none", "square", "pad64" or "crop"
    # (see utils.resize_image for what each mode does).
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    # Minimum scaling ratio, checked after IMAGE_MIN_DIM (0 = no minimum).
    IMAGE_MIN_SCALE = 0
    # Number of color channels per image. RGB = 3, grayscale = 1, RGB-D = 4
    IMAGE_CHANNEL_COUNT = 3

    # Image mean (RGB)
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # Number of ROIs per image to feed to classifier/mask heads
    TRAIN_ROIS_PER_IMAGE = 200

    # Percent of positive ROIs used to train classifier/mask heads
    ROI_POSITIVE_RATIO = 0.33

    # Pooled ROIs
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14

    # Shape of output mask (the mask head upsamples MASK_POOL_SIZE by 2)
    MASK_SHAPE = [28, 28]

    # Maximum number of ground truth instances to use in one image
    MAX_GT_INSTANCES = 100

    # Bounding box refinement standard deviation for RPN and final detections.
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    # Max number of final detections
    DETECTION_MAX_INSTANCES = 100

    # Minimum probability value to accept a detected instance
    DETECTION_MIN_CONFIDENCE = 0.7

    # Non-maximum suppression threshold for detection
    DETECTION_NMS_THRESHOLD = 0.3

    # Learning rate and momentum
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9

    # Weight decay regularization
    WEIGHT_DECAY = 0.0001

    # Loss weights for more precise optimization.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.,
        "rpn_bbox_loss": 1.,
        "mrcnn_class_loss": 1.,
        "mrcnn_bbox_loss": 1.,
        "mrcnn_mask_loss": 1.
    }

    # Use RPN ROIs (True) or externally generated ROIs for training
    USE_RPN_ROIS = True

    # Train or freeze batch normalization layers
    #     None: Train BN layers. This is the normal mode
    #     False: Freeze BN layers. Good when using a small batch size
    #     True: (don't use). Set layer in training mode even when predicting
    TRAIN_BN = False  # Defaulting to False since batch size is often small

    # Gradient norm clipping
    GRADIENT_CLIP_NORM = 5.0

    # ---- Project extensions -------------------------------------------
    # Named ResNet backbones and their blocks per stage.
    RESNET_ARCHITECTURES = dict(RESNET_ARCHITECTURES)

    # Data loading workers (0 = load in the main thread) and whether they
    # are processes rather than threads. Threads overlap loading with training but
    # load one sample at a time (each sample's seeded draws hold one lock, see
    # mrcnn.sample_random); processes load in parallel.
    WORKERS = 0
    USE_MULTIPROCESSING = False

    # None: one process (MirroredStrategy when GPU_COUNT > 1). "multi_worker":
    # tf.distribute.MultiWorkerMirroredStrategy over the workers TF_CONFIG names
    # (mrcnn.multi_worker); BATCH_SIZE is then each worker's share and GPU_COUNT
    # the replicas of one worker.
    DISTRIBUTION = None

    # The data generator skips a bad sample (logging its id); this many
    # failures in a row stop it with an error.
    MAX_CONSECUTIVE_FAILURES = 10

    def __init__(self):
        """Set values of computed attributes, then validate every field."""
        self._unbind_callable_fields()
        self.compute_derived()
        self.validate()

    def _unbind_callable_fields(self) -> None:
        """Keep function-valued fields plain functions.

        A function set as a class attribute would otherwise be read back as
        a bound method (called with the config as first argument); copying
        it to the instance makes config.BACKBONE the function itself.
        """
        for name in ("BACKBONE", "COMPUTE_BACKBONE_SHAPE"):
            value = inspect.getattr_static(self, name, None)
            if isinstance(value, types.FunctionType):
                setattr(self, name, value)

    # ------------------------------------------------------------------
    # Computed fields
    # ------------------------------------------------------------------
    @classmethod
    def computed_fields(cls) -> tuple:
        """Names of the fields compute_derived() sets (overrides may not set them)."""
        return COMPUTED_FIELDS

    def compute_derived(self) -> None:
        """Compute BATCH_SIZE, IMAGE_SHAPE and IMAGE_META_SIZE.

        Subclasses with more computed fields override this (calling super)
        so that ``validate()`` runs after all of them exist.
        """
        # Effective batch size
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT

        # Input image size: crop mode feeds IMAGE_MIN_DIM squares.
        side = (self.IMAGE_MIN_DIM if self.IMAGE_RESIZE_MODE == "crop"
                else self.IMAGE_MAX_DIM)
        self.IMAGE_SHAPE = np.array([side, side, self.IMAGE_CHANNEL_COUNT])

        # Image meta data length: id, original shape (3), image shape (3),
        # window (4), scale (1), active class ids (NUM_CLASSES).
        # See model.compose_image_meta().
        self.IMAGE_META_SIZE = 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES

    # ------------------------------------------------------------------
    # Validation
    # ------------------------------------------------------------------
    def validate(self) -> None:
        """Check every field; raise ValueError naming the first bad one.

        Subclasses extend this (call ``super().validate()`` first).
        """
        self._validate_counts()
        self._validate_backbone()
        self._validate_image()
        self._validate_anchors()
        self._validate_rois_and_masks()
        self._validate_detection()
        self._validate_training()
        self._validate_data_loading()

    def _validate_counts(self) -> None:
        check_int(self, "NUM_CLASSES", minimum=1)
        check_int(self, "GPU_COUNT", minimum=1)
        check_int(self, "IMAGES_PER_GPU", minimum=1)
        check_int(self, "STEPS_PER_EPOCH", minimum=1)
        check_int(self, "VALIDATION_STEPS", minimum=0)

    def _validate_backbone(self) -> None:
        backbone = self.BACKBONE
        if callable(backbone):
            if not callable(self.COMPUTE_BACKBONE_SHAPE):
                raise ValueError(
                    "COMPUTE_BACKBONE_SHAPE must be a callable when BACKBONE is "
                    "a callable; got {!r}".format(self.COMPUTE_BACKBONE_SHAPE))
        elif backbone not in self.RESNET_ARCHITECTURES:
            raise ValueError(
                "BACKBONE must be one of {} or a callable; got {!r}".format(
                    sorted(self.RESNET_ARCHITECTURES), backbone))
        if (self.COMPUTE_BACKBONE_SHAPE is not None
                and not callable(self.COMPUTE_BACKBONE_SHAPE)):
            raise ValueError("COMPUTE_BACKBONE_SHAPE must be None or a callable; "
                             "got {!r}".format(self.COMPUTE_BACKBONE_SHAPE))
        check_int(self, "FPN_CLASSIF_FC_LAYERS_SIZE", minimum=1)
        check_int(self, "MASK_HEAD_CONV_CHANNELS", minimum=1)
        check_int(self, "TOP_DOWN_PYRAMID_SIZE", minimum=1)

    def _validate_image(self) -> None:
        mode = self.IMAGE_RESIZE_MODE
        if mode not in IMAGE_RESIZE_MODES:
            raise ValueError("IMAGE_RESIZE_MODE must be one of {}; got {!r}".format(
                list(IMAGE_RESIZE_MODES), mode))
        check_int(self, "IMAGE_MAX_DIM", minimum=1)
        # IMAGE_MIN_DIM may be None ("no upscaling") except where it sets
        # the crop size or must be a multiple of 64.
        if self.IMAGE_MIN_DIM is not None or mode in ("crop", "pad64"):
            check_int(self, "IMAGE_MIN_DIM", minimum=1)
        # The network input side (IMAGE_SHAPE) must survive 6 halvings;
        # pad64 mode also asserts it on IMAGE_MIN_DIM (utils.resize_image).
        size_field = "IMAGE_MIN_DIM" if mode == "crop" else "IMAGE_MAX_DIM"
        _check_divisible(self, size_field, _SIZE_DIVISOR, mode)
        if mode == "pad64":
            _check_divisible(self, "IMAGE_MIN_DIM", _SIZE_DIVISOR, mode)
        scale = self.IMAGE_MIN_SCALE
        if scale is not None and (not is_number(scale) or scale < 0):
            raise ValueError("IMAGE_MIN_SCALE must be a number >= 0 or None; "
                             "got {!r}".format(scale))
        check_int(self, "IMAGE_CHANNEL_COUNT", minimum=1)
        mean = np.asarray(self.MEAN_PIXEL)
        if mean.ndim != 1 or mean.shape[0] != self.IMAGE_CHANNEL_COUNT:
            raise ValueError(
                "MEAN_PIXEL must have one value per channel "
                "(IMAGE_CHANNEL_COUNT={}); got shape {}".format(
                    self.IMAGE_CHANNEL_COUNT, mean.shape))

    def _validate_anchors(self) -> None:
        _check_positive_sequence(self, "RPN_ANCHOR_SCALES")
        _check_positive_sequence(self, "RPN_ANCHOR_RATIOS")
        _check_positive_sequence(self, "BACKBONE_STRIDES")
        if len(self.BACKBONE_STRIDES) != len(self.RPN_ANCHOR_SCALES):
            raise ValueError(
                "BACKBONE_STRIDES must have one stride per RPN_ANCHOR_SCALES "
                "entry (one per pyramid level): {} strides for {} scales".format(
                    len(self.BACKBONE_STRIDES), len(self.RPN_ANCHOR_SCALES)))
        check_int(self, "RPN_ANCHOR_STRIDE", minimum=1)
        _check_fraction(self, "RPN_NMS_THRESHOLD", low_open=True)
        check_int(self, "RPN_TRAIN_ANCHORS_PER_IMAGE", minimum=1)
        check_int(self, "PRE_NMS_LIMIT", minimum=1)
        check_int(self, "POST_NMS_ROIS_TRAINING", minimum=1)
        check_int(self, "POST_NMS_ROIS_INFERENCE", minimum=1)
        _check_std_dev(self, "RPN_BBOX_STD_DEV")

    def _validate_rois_and_masks(self) -> None:
        _check_bool(self, "USE_MINI_MASK")
        _check_shape2(self, "MINI_MASK_SHAPE")
        check_int(self, "TRAIN_ROIS_PER_IMAGE", minimum=1)
        _check_fraction(self, "ROI_POSITIVE_RATIO", low_open=True)
        check_int(self, "POOL_SIZE", minimum=1)
        check_int(self, "MASK_POOL_SIZE", minimum=1)
        _check_shape2(self, "MASK_SHAPE")
        expected = [2 * self.MASK_POOL_SIZE] * 2
        if list(self.MASK_SHAPE) != expected:
            raise ValueError(
                "MASK_SHAPE must be twice MASK_POOL_SIZE (the mask head "
                "upsamples once): expected {}, got {}".format(
                    expected, list(self.MASK_SHAPE)))
        check_int(self, "MAX_GT_INSTANCES", minimum=1)
        _check_std_dev(self, "BBOX_STD_DEV")

    def _validate_detection(self) -> None:
        check_int(self, "DETECTION_MAX_INSTANCES", minimum=1)
        _check_fraction(self, "DETECTION_MIN_CONFIDENCE", low_open=False)
        _check_fraction(self, "DETECTION_NMS_THRESHOLD", low_open=True)

    def _validate_training(self) -> None:
        _check_number(self, "LEARNING_RATE", positive=True)
        momentum = self.LEARNING_MOMENTUM
        if not is_number(momentum) or not 0 <= momentum < 1:
            raise ValueError("LEARNING_MOMENTUM must be in [0, 1); got {!r}".format(
                momentum))
        _check_number(self, "WEIGHT_DECAY", positive=False)
        if self.GRADIENT_CLIP_NORM is not None:
            _check_number(self, "GRADIENT_CLIP_NORM", positive=True)
        self._validate_loss_weights()
        _check_bool(self, "USE_RPN_ROIS")
        if self.TRAIN_BN not in (None, True, False):
            raise ValueError("TRAIN_BN must be None, True or False; got {!r}".format(
                self.TRAIN_BN))

    def _validate_loss_weights(self) -> None:
        weights = self.LOSS_WEIGHTS
        if not isinstance(weights, dict):
            raise ValueError("LOSS_WEIGHTS must be a dict; got {}".format(
                type(weights).__name__))
        unknown = sorted(set(weights) - set(LOSS_NAMES))
        missing = [name for name in LOSS_NAMES if name not in weights]
        if unknown or missing or len(weights) != len(LOSS_NAMES):
            raise ValueError(
                "LOSS_WEIGHTS must have exactly the keys {}; unknown keys {}, "
                "missing keys {}".format(list(LOSS_NAMES), unknown, missing))
        for name, value in weights.items():
            if not is_number(value) or value < 0:
                raise ValueError("LOSS_WEIGHTS[{!r}] must be a number >= 0; "
                                 "got {!r}".format(name, value))

    def _validate_data_loading(self) -> None:
        check_int(self, "WORKERS", minimum=0)
        _check_bool(self, "USE_MULTIPROCESSING")
        check_int(self, "MAX_CONSECUTIVE_FAILURES", minimum=1)
        if self.DISTRIBUTION not in DISTRIBUTIONS:
            raise ValueError("DISTRIBUTION must be one of {}; got {!r}".format(
                list(DISTRIBUTIONS), self.DISTRIBUTION))

    # ------------------------------------------------------------------
    # Display / export
    # ------------------------------------------------------------------
    def _field_names(self) -> list:
        """Names of the configuration values, sorted like dir().

        Matterport shows every non-dunder, non-callable attribute; upper-case
        names are fields even when callable (a callable BACKBONE).
        """
        names = []
        for name in dir(self):
            if name.startswith("_"):
                continue
            if name.isupper() or not callable(getattr(self, name)):
                names.append(name)
        return names

    def display(self) -> None:
        """Print the configuration table (Matterport's format); also logged
        at DEBUG level."""
        lines = ["", "Configurations:"]
        lines += ["{:30} {}".format(name, getattr(self, name))
                  for name in self._field_names()]
        lines += ["", ""]
        text = "\n".join(lines)
        logger.debug(text)
        # display() is the user-facing call that shows the table.
        print(text)

    def to_dict(self) -> Dict[str, Any]:
        """All configuration values as a JSON-friendly dict.

        numpy arrays become lists, numpy scalars Python numbers, tuples
        lists, and callables their dotted name.
        """
        return {name: _plain(getattr(self, name)) for name in self._field_names()}


# ----------------------------------------------------------------------
# Field checks: each raises ValueError naming the field.
# ----------------------------------------------------------------------
def check_model_arguments(config: Any, model_dir: Any) -> None:
    """What MaskRCNN(mode, config, model_dir) needs, told before anything reads them: a
    Config instance (not its class: a forgotten ``()``), a NAME for the runs and
    checkpoints (Matterport's base Config has None), and a folder path."""
    if isinstance(config, type) and issubclass(config, Config):
        raise TypeError(f"config: expected a Config instance, got the class "
                        f"{config.__name__}: pass {config.__name__}()")
    if not isinstance(config, Config):
        raise TypeError(f"config: expected an instance of a mrcnn.config.Config subclass, "
                        f"got {type(config).__name__}")
    if not isinstance(config.NAME, str) or not config.NAME:
        raise ValueError(f"config.NAME: expected a non-empty name (it names the training "
                         f"runs and checkpoints): set NAME in your Config subclass, got "
                         f"{config.NAME!r}")
    if not isinstance(model_dir, (str, os.PathLike)):
        raise TypeError(f"model_dir: expected the folder for logs and checkpoints (a path), "
                        f"got {model_dir!r}")


def is_number(value: Any) -> bool:
    """A finite real number, not a bool (nan and inf pass every "> 0" or ">= 0" range
    check). Public: the library's argument checks share it."""
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(config: Config, name: str, minimum: int) -> None:
    """ValueError unless the config field ``name`` is an integer >= minimum."""
    value = getattr(config, name)
    if not is_int(value) or value < minimum:
        raise ValueError("{} must be an integer >= {}; got {!r}".format(
            name, minimum, value))


def _check_number(config: Config, name: str, positive: bool) -> None:
    value = getattr(config, name)
    ok = is_number(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError("{} must be a finite number {} 0; got {!r}".format(
            name, ">" if positive else ">=", value))


def _check_fraction(config: Config, name: str, low_open: bool) -> None:
    """Value in (0, 1] when low_open, else in [0, 1]."""
    value = getattr(config, name)
    ok = is_number(value) and value <= 1 and (value > 0 if low_open else value >= 0)
    if not ok:
        raise ValueError("{} must be in {}0, 1]; got {!r}".format(
            name, "(" if low_open else "[", value))


def _check_bool(config: Config, name: str) -> None:
    value = getattr(config, name)
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError("{} must be True or False; got {!r}".format(name, value))


def _check_divisible(config: Config, name: str, divisor: int, mode: str) -> None:
    value = getattr(config, name)
    if value % divisor != 0:
        raise ValueError(
            "{} must be divisible by {} (2**6, for the 6 FPN levels) in "
            "IMAGE_RESIZE_MODE {!r}; got {}. Use e.g. 256, 320, 384, 448, "
            "512, 640, 768, 832, 1024.".format(name, divisor, mode, value))


def _check_positive_sequence(config: Config, name: str) -> None:
    value = getattr(config, name)
    try:
        items = list(np.asarray(value).reshape(-1)) if value is not None else []
    except Exception:  # noqa: BLE001 - anything not array-like is rejected below
        items = []
    if not items or not all(is_number(v) and v > 0 for v in items):
        raise ValueError("{} must be a non-empty sequence of positive numbers; "
                         "got {!r}".format(name, value))


def _check_shape2(config: Config, name: str) -> None:
    value = getattr(config, name)
    try:
        items = list(value)
    except TypeError:
        items = []
    if len(items) != 2 or not all(is_int(v) and v > 0 for v in items):
        raise ValueError("{} must be (height, width) of two positive integers; "
                         "got {!r}".format(name, value))


def _check_std_dev(config: Config, name: str) -> None:
    value = np.asarray(getattr(config, name))
    if value.shape != (4,) or not np.all(value > 0):
        raise ValueError("{} must be 4 positive numbers (dy, dx, dh, dw); "
                         "got {!r}".format(name, getattr(config, name)))


def _plain(value: Any) -> Any:
    """Convert a config value to plain JSON-friendly Python."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if callable(value):
        return "{}.{}".format(getattr(value, "__module__", "?"),
                              getattr(value, "__qualname__", repr(value)))
    return value
