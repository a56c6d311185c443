"""MaskRCNN: builds the training and inference graphs, trains, detects.

The graph pieces live in their own modules (backbone, fpn, rpn, proposals, roi_align,
targets, heads, detection, losses, data, weights, training); this module assembles them
and re-exports Matterport's public names so ``from mrcnn import model as modellib``
keeps working.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections import OrderedDict
from typing import Any, Callable, Sequence

import keras
import numpy as np

from mrcnn import utils
from mrcnn.backbone import (compute_backbone_shapes, conv_block, identity_block,  # noqa: F401
                            resnet_graph)
from mrcnn.checkpoint_path import LastCheckpoint
from mrcnn.checkpoints import CheckpointPolicy, TimestampedRuns
from mrcnn.data import (DataGenerator, check_image, compose_image_meta,  # noqa: F401
                        data_generator, load_image_gt, mold_image, parse_image_meta,
                        parse_image_meta_graph, unmold_image)
from mrcnn.detection import DetectionLayer, refine_detections_graph  # noqa: F401
from mrcnn.layer_args import kwargs_from_config
from mrcnn.fpn import fpn_graph
from mrcnn.graph_layers import (ActiveClassIds, AnchorsLayer, DetectionBoxes, Identity,
                                LossLayer, NormBoxes)
from mrcnn.h5_model import GraphModel
from mrcnn.inspection import (LayerStage, compute_stages, find_stage, known_stage_names,
                              stage_inputs)
from mrcnn.heads import (DEFAULT_MASK_CONV_CHANNELS, build_fpn_mask_graph,  # noqa: F401
                         fpn_classifier_graph)
from mrcnn.layers import BatchNorm, TimeDistributed  # noqa: F401
from mrcnn.losses import (batch_pack_graph, mrcnn_bbox_loss_graph,  # noqa: F401
                          mrcnn_class_loss_graph, mrcnn_mask_loss_graph, rpn_bbox_loss_graph,
                          rpn_class_loss_graph, smooth_l1_loss)
from mrcnn.proposals import (ProposalLayer, apply_box_deltas_graph,  # noqa: F401
                             clip_boxes_graph, denorm_boxes_graph, norm_boxes_graph)
from mrcnn.roi_align import PyramidROIAlign, log2_graph  # noqa: F401
from mrcnn.rpn import build_rpn_model, rpn_graph  # noqa: F401
from mrcnn.targets import (DetectionTargetLayer, build_detection_targets,  # noqa: F401
                           build_rpn_targets, detection_targets_graph, generate_random_rois,
                           overlaps_graph)
from mrcnn.training import (LAYER_REGEX, LOSS_NAMES, AtomicCheckpoint, LossModel,
                            set_trainable)
from mrcnn import losses as losses_module
from mrcnn import weights as weights_io

logger = logging.getLogger(__name__)


def graph_function(name: str) -> Callable:
    """The head or loss function `name`, as this module holds it when a graph is built.

    User code replaces Matterport's graph functions by assigning them here
    (``modellib.mrcnn_class_loss_graph = f``, ``modellib.fpn_classifier_graph = f``;
    the paper's Mask R-CNN baseline notebook does); the graph built afterwards uses
    them. Names this module does not hold come from mrcnn.losses.
    """
    function = globals().get(name)
    return function if callable(function) else getattr(losses_module, name)


def loss_layer(loss_fn: str, name: str, function: Callable, config: Any = None
               ) -> LossLayer:
    """A LossLayer computing `function` (the library's `loss_fn` or a replacement),
    named `name`.

    config: passed first, as Matterport passes it to rpn_bbox_loss_graph; the
    library's own function needs only its IMAGES_PER_GPU, which serializes.
    """
    leading_args = [] if config is None else [config.IMAGES_PER_GPU]
    if function is getattr(losses_module, loss_fn, None):
        return LossLayer(loss_fn, leading_args=leading_args, name=name)
    replacement = function if config is None else functools.partial(function, config)
    return LossLayer(loss_fn, leading_args=leading_args, function=replacement, name=name)


def log(text: str, array: np.ndarray | None = None) -> None:
    """Prints a text message and, optionally, an array's shape, min, max and dtype.

    A display helper for notebooks (Matterport's), hence print rather than logging.
    """
    if array is not None:
        text = text.ljust(25)
        text += "shape: {:20}  ".format(str(array.shape))
        if array.size:
            text += "min: {:10.5f}  max: {:10.5f}".format(array.min(), array.max())
        else:
            text += "min: {:10}  max: {:10}".format("", "")
        text += "  {}".format(array.dtype)
    print(text)


class MaskRCNN:
    """Encapsulates the Mask R-CNN Keras model (Matterport's API).

    The Keras model is in ``self.keras_model``. ``mode`` is "training" or "inference".
    """

    #: Where training writes checkpoints and how find_last finds them (mrcnn.checkpoints):
    #: Matterport's {name}{%Y%m%dT%H%M}/mask_rcnn_{name}_{epoch:04d}.h5.
    CHECKPOINTS: CheckpointPolicy = TimestampedRuns("mask_rcnn")

    #: get_imagenet_weights(name) -> a file of this name in imagenet_weights_dirs().
    IMAGENET_WEIGHTS: dict[str, str] = {
        "imagenet": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"}
    DEFAULT_IMAGENET = "imagenet"

    #: Named inference sub-models (name -> what it computes) that sub_model() builds;
    #: subclasses add theirs and say which tensors bound them in sub_model_tensors().
    SUB_MODELS: dict[str, str] = {}

    def __init__(self, mode: str, config, model_dir: str):
        if mode not in ("training", "inference"):
            raise ValueError(f"mode must be 'training' or 'inference', got {mode!r}")
        self.mode = mode
        self.config = config
        self.model_dir = model_dir
        self.epoch = 0
        self.log_dir = None
        self.checkpoint_path = None
        self.last_load_report = None
        self._anchor_cache: dict = {}
        self._sub_models: dict[str, keras.Model] = {}
        self.set_log_dir()
        self.strategy = None
        if config.GPU_COUNT > 1:
            from mrcnn.parallel_model import ParallelModel, get_strategy

            self.strategy = get_strategy(config.GPU_COUNT)
            with self.strategy.scope():
                model = self.build(mode=mode, config=config)
            self.keras_model = ParallelModel(model, config.GPU_COUNT)
        else:
            self.keras_model = self.build(mode=mode, config=config)

    # ------------------------------------------------------------------ graph
    def build_backbone(self, input_image, config):
        """Returns [C2, C3, C4, C5] for the image input."""
        if callable(config.BACKBONE):
            _, C2, C3, C4, C5 = config.BACKBONE(input_image, stage5=True,
                                                train_bn=config.TRAIN_BN)
        else:
            _, C2, C3, C4, C5 = resnet_graph(input_image, config.BACKBONE, stage5=True,
                                             train_bn=config.TRAIN_BN)
        return C2, C3, C4, C5

    # Extension points. A subclass (the Siamese model) overrides these; the base reads
    # no flag of its subclasses.
    def with_masks(self, config) -> bool:
        """Whether the graph has a mask head (False: a box-only, Faster R-CNN graph)."""
        return True

    def classifier_head_kwargs(self, config) -> dict:
        """Keyword arguments of the box/class head after Matterport's positional ones.

        Only values that differ from the head's defaults beyond Matterport's own, so that
        a replacement head with Matterport's signature still fits.
        """
        return dict(train_bn=config.TRAIN_BN, fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE)

    def mask_head_kwargs(self, config) -> dict:
        """Keyword arguments of the mask head after Matterport's positional ones."""
        kwargs = dict(train_bn=config.TRAIN_BN)
        if config.MASK_HEAD_CONV_CHANNELS != DEFAULT_MASK_CONV_CHANNELS:
            kwargs["conv_channels"] = config.MASK_HEAD_CONV_CHANNELS
        return kwargs

    def make_loss_layer(self, loss_fn: str, name: str, config: Any = None) -> LossLayer:
        """A LossLayer for the library loss `loss_fn` (or its replacement in mrcnn.model)."""
        return loss_layer(loss_fn, name, self.graph_function(loss_fn), config)

    def build_class_loss(self, target_class_ids, mrcnn_class_logits, input_image_meta,
                         config):
        """The classifier loss tensor "mrcnn_class_loss": Matterport's cross-entropy
        counted over the classes active in the image's data set."""
        active_class_ids = ActiveClassIds(name="active_class_ids")(input_image_meta)
        return self.make_loss_layer("mrcnn_class_loss_graph", "mrcnn_class_loss")(
            [target_class_ids, mrcnn_class_logits, active_class_ids])

    def image_input_shape(self, config) -> list:
        """Shape of the image input (without batch)."""
        return [None, None, config.IMAGE_SHAPE[2]]

    def build_extra_inputs(self, config) -> list:
        """Inputs that follow input_image_meta (the Siamese model adds input_target)."""
        return []

    def build_feature_pyramid(self, input_image, extra_inputs: list, config) -> list:
        """Returns the pyramid [P2, P3, P4, P5, P6] the RPN and heads run on."""
        C2, C3, C4, C5 = self.build_backbone(input_image, config)
        return list(fpn_graph(C2, C3, C4, C5, config.TOP_DOWN_PYRAMID_SIZE))

    def graph_function(self, name: str) -> Callable:
        """The head or loss function `name` this model's graph uses (see the module's
        graph_function: replacements assigned into mrcnn.model take effect)."""
        return graph_function(name)

    @staticmethod
    def check_image_size(config) -> None:
        """Image sides must be divisible by 64 (six stride-2 stages)."""
        shape = tuple(int(v) for v in config.IMAGE_SHAPE)
        h, w = shape[:2]
        if h / 2 ** 6 != int(h / 2 ** 6) or w / 2 ** 6 != int(w / 2 ** 6):
            raise ValueError(
                "Image size must be dividable by 2 at least 6 times to avoid fractions "
                f"when downscaling and upscaling; got IMAGE_SHAPE {shape}. "
                "For example, use 256, 320, 384, 448, 512, ... etc.")

    def build(self, mode: str, config) -> keras.Model:
        """Builds the Mask R-CNN architecture (Matterport's graph and layer names)."""
        self.check_image_size(config)
        input_image = keras.Input(shape=self.image_input_shape(config), name="input_image")
        input_image_meta = keras.Input(shape=[config.IMAGE_META_SIZE], name="input_image_meta")
        extra_inputs = self.build_extra_inputs(config)
        if mode == "training":
            input_rpn_match = keras.Input(shape=[None, 1], name="input_rpn_match",
                                          dtype="int32")
            input_rpn_bbox = keras.Input(shape=[None, 4], name="input_rpn_bbox",
                                         dtype="float32")
            input_gt_class_ids = keras.Input(shape=[None], name="input_gt_class_ids",
                                             dtype="int32")
            # [batch, MAX_GT_INSTANCES, (y1, x1, y2, x2)] in pixels
            input_gt_boxes = keras.Input(shape=[None, 4], name="input_gt_boxes",
                                         dtype="float32")
            gt_boxes = NormBoxes(name="norm_gt_boxes")([input_gt_boxes, input_image])
            mask_shape = (config.MINI_MASK_SHAPE if config.USE_MINI_MASK
                          else config.IMAGE_SHAPE[:2])
            # [batch, height, width, MAX_GT_INSTANCES]; uint8, not bool: boolean inputs
            # break tf.distribute's first cross-replica reduce.
            input_gt_masks = keras.Input(shape=[mask_shape[0], mask_shape[1], None],
                                         name="input_gt_masks", dtype="uint8")
        else:
            input_anchors = keras.Input(shape=[None, 4], name="input_anchors")

        rpn_feature_maps = self.build_feature_pyramid(input_image, extra_inputs, config)
        mrcnn_feature_maps = rpn_feature_maps[:4]  # P6 feeds the RPN only
        depth = int(rpn_feature_maps[0].shape[-1])

        if mode == "training":
            anchors = AnchorsLayer(self.get_anchors(config.IMAGE_SHAPE),
                                   name="anchors")(input_image)
        else:
            anchors = input_anchors

        rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS), depth)
        rpn_class_logits, rpn_class, rpn_bbox = self._rpn_outputs(rpn, rpn_feature_maps)

        proposal_count = (config.POST_NMS_ROIS_TRAINING if mode == "training"
                          else config.POST_NMS_ROIS_INFERENCE)
        # [batch, proposal_count, (y1, x1, y2, x2)] normalized, zero padded
        rpn_rois = ProposalLayer(proposal_count=proposal_count,
                                 nms_threshold=config.RPN_NMS_THRESHOLD, name="ROI",
                                 **kwargs_from_config(config, ProposalLayer))(
                                     [rpn_class, rpn_bbox, anchors])
        with_masks = self.with_masks(config)
        classifier_head = self.graph_function("fpn_classifier_graph")
        mask_head = self.graph_function("build_fpn_mask_graph")

        loss = self.make_loss_layer
        head_kwargs = self.classifier_head_kwargs(config)
        mask_kwargs = self.mask_head_kwargs(config)

        if mode == "training":
            inputs = [input_image, input_image_meta, *extra_inputs, input_rpn_match,
                      input_rpn_bbox, input_gt_class_ids, input_gt_boxes, input_gt_masks]
            if not config.USE_RPN_ROIS:
                # Ignore predicted ROIs and use ROIs provided as an input (pixels).
                input_rois = keras.Input(shape=[config.POST_NMS_ROIS_TRAINING, 4],
                                         name="input_roi", dtype="int32")
                target_rois = NormBoxes(name="norm_input_rois")([input_rois, input_image])
                inputs.append(input_rois)
            else:
                target_rois = rpn_rois

            # Subsampled ROIs and their targets, zero padded to TRAIN_ROIS_PER_IMAGE.
            rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
                name="proposal_targets", **kwargs_from_config(config, DetectionTargetLayer))(
                    [target_rois, input_gt_class_ids, gt_boxes, input_gt_masks])

            mrcnn_class_logits, mrcnn_class, mrcnn_bbox = classifier_head(
                rois, mrcnn_feature_maps, input_image_meta, config.POOL_SIZE,
                config.NUM_CLASSES, **head_kwargs)
            output_rois = Identity(name="output_rois")(rois)

            losses = [
                loss("rpn_class_loss_graph", "rpn_class_loss")(
                    [input_rpn_match, rpn_class_logits]),
                loss("rpn_bbox_loss_graph", "rpn_bbox_loss", config)(
                    [input_rpn_bbox, input_rpn_match, rpn_bbox]),
                self.build_class_loss(target_class_ids, mrcnn_class_logits,
                                      input_image_meta, config),
                loss("mrcnn_bbox_loss_graph", "mrcnn_bbox_loss")(
                    [target_bbox, target_class_ids, mrcnn_bbox]),
            ]
            outputs = [rpn_class_logits, rpn_class, rpn_bbox, mrcnn_class_logits, mrcnn_class,
                       mrcnn_bbox]
            loss_names = list(LOSS_NAMES[:4])
            if with_masks:
                mrcnn_mask = mask_head(
                    rois, mrcnn_feature_maps, input_image_meta, config.MASK_POOL_SIZE,
                    config.NUM_CLASSES, **mask_kwargs)
                losses.append(loss("mrcnn_mask_loss_graph", "mrcnn_mask_loss")(
                    [target_mask, target_class_ids, mrcnn_mask]))
                outputs.append(mrcnn_mask)
                loss_names.append(LOSS_NAMES[4])
            outputs += [rpn_rois, output_rois] + losses
            return LossModel(inputs=inputs, outputs=outputs, name="mask_rcnn",
                             loss_names=loss_names, loss_weights=config.LOSS_WEIGHTS,
                             weight_decay=config.WEIGHT_DECAY)

        mrcnn_class_logits, mrcnn_class, mrcnn_bbox = classifier_head(
            rpn_rois, mrcnn_feature_maps, input_image_meta, config.POOL_SIZE,
            config.NUM_CLASSES, **head_kwargs)
        # [batch, DETECTION_MAX_INSTANCES, (y1, x1, y2, x2, class_id, score)] normalized
        detections = DetectionLayer(name="mrcnn_detection",
                                    **kwargs_from_config(config, DetectionLayer))(
            [rpn_rois, mrcnn_class, mrcnn_bbox, input_image_meta])
        outputs = [detections, mrcnn_class, mrcnn_bbox]
        if with_masks:
            detection_boxes = DetectionBoxes(name="detection_boxes")(detections)
            mrcnn_mask = mask_head(
                detection_boxes, mrcnn_feature_maps, input_image_meta, config.MASK_POOL_SIZE,
                config.NUM_CLASSES, **mask_kwargs)
            outputs.append(mrcnn_mask)
        outputs += [rpn_rois, rpn_class, rpn_bbox]
        return GraphModel([input_image, input_image_meta, *extra_inputs, input_anchors],
                          outputs, name="mask_rcnn")

    @staticmethod
    def _rpn_outputs(rpn: keras.Model, feature_maps: Sequence) -> tuple:
        """Runs the shared RPN on each level and concatenates over levels.

        Returns rpn_class_logits [batch, anchors, 2], rpn_class [batch, anchors, 2],
        rpn_bbox [batch, anchors, 4].
        """
        layer_outputs = [rpn(p) for p in feature_maps]
        names = ["rpn_class_logits", "rpn_class", "rpn_bbox"]
        outputs = list(zip(*layer_outputs))
        return tuple(keras.layers.Concatenate(axis=1, name=n)(list(o))
                     for o, n in zip(outputs, names))

    @property
    def inner_model(self) -> keras.Model:
        """The Keras model itself (unwrapped from ParallelModel when multi-GPU)."""
        return getattr(self.keras_model, "inner_model", self.keras_model)

    # ------------------------------------------------------------ checkpoints
    def find_last(self) -> LastCheckpoint:
        """Returns the path of the last checkpoint of the latest run of this config.

        The value is a str; ``[1]`` and ``log_dir, path = ...`` also work as with
        Matterport 2.1's ``(log_dir, checkpoint_path)`` (mrcnn.checkpoint_path).
        """
        return LastCheckpoint(self.CHECKPOINTS.latest(self.model_dir, self.config))

    def load_weights(self, filepath: str, by_name: bool = False,
                     exclude: Sequence[str] | None = None, skip_mismatch: bool = False):
        """Loads weights from a (legacy Keras 2 or our) HDF5 file, keyed by layer name.

        ``exclude``: layer names to skip (implies by_name, as in Matterport). Returns the
        load report (also in ``self.last_load_report``) and sets the log dir so training
        resumes at the epoch in the file name.
        """
        if exclude:
            by_name = True
        report = weights_io.load_weights(self.inner_model, filepath, by_name=by_name,
                                         exclude=exclude, skip_mismatch=skip_mismatch)
        self.last_load_report = report
        self.set_log_dir(filepath)
        return report

    def save_weights(self, filepath: str) -> None:
        """Writes a name-keyed checkpoint that loads into training and inference models."""
        weights_io.save_weights(self.inner_model, filepath)

    def get_imagenet_weights(self, source: str | None = None) -> str:
        """The local ImageNet ResNet weights file for the backbone (nothing is downloaded).

        ``source``: one of the names in ``IMAGENET_WEIGHTS`` (a file looked up in
        ``imagenet_weights_dirs()``) or a file path; None: ``$MRCNN_IMAGENET_WEIGHTS``
        when set, else ``DEFAULT_IMAGENET``. The same rule in every subclass: only the
        names and folders differ. Raises FileNotFoundError (what was looked for, where)
        or ValueError (a name that is neither known nor a file).
        """
        source = source or os.environ.get("MRCNN_IMAGENET_WEIGHTS") or self.DEFAULT_IMAGENET
        if source in self.IMAGENET_WEIGHTS:
            file_name = self.IMAGENET_WEIGHTS[source]
            places = self.imagenet_weights_dirs()
            for folder in places:
                path = os.path.join(folder, file_name)
                if os.path.isfile(path):
                    return path
            raise FileNotFoundError(
                f"ImageNet weights {source!r} ({file_name}) not found in "
                f"{', '.join(places)}: weights are never downloaded, place the file there "
                "(or pass its path, or set MRCNN_IMAGENET_WEIGHTS).")
        if os.path.isfile(source):
            return source
        if os.sep in source or source.endswith(".h5"):
            raise FileNotFoundError(f"ImageNet weights not found: {source} (weights are "
                                    "never downloaded)")
        raise ValueError(f"ImageNet weights: expected a file path or one of "
                         f"{sorted(self.IMAGENET_WEIGHTS)}, got {source!r}")

    def imagenet_weights_dirs(self) -> list[str]:
        """Folders searched for the named ImageNet files: the working directory, the
        model directory and Keras' cache (where Matterport's download put the file)."""
        return [os.getcwd(), self.model_dir,
                os.path.join(os.path.expanduser("~"), ".keras", "models")]

    def set_log_dir(self, model_path: str | None = None) -> None:
        """Sets the run directory and epoch; a checkpoint path resumes its run and epoch."""
        run = self.CHECKPOINTS.locate(self.model_dir, self.config, model_path)
        self.log_dir, self.checkpoint_path, self.epoch = (run.log_dir, run.checkpoint_path,
                                                          run.epoch)
        if run.epoch:
            logger.info("Re-starting from epoch %d", run.epoch)

    # --------------------------------------------------------------- training
    def get_trainable_layers(self) -> list:
        """Returns the layers that have weights, as Matterport does: wrappers
        (TimeDistributed) are unwrapped to the layer inside them (mrcnn_class_conv1,
        mrcnn_mask, ...). Nested models (the ResNet, FPN and RPN sub-models, which
        Matterport's flat graph did not have) are expanded into their layers."""
        layers = []

        def visit(layer) -> None:
            if isinstance(layer, keras.Model):
                for inner in layer.layers:
                    visit(inner)
                return
            layer = self.find_trainable_layer(layer)
            if layer.weights:
                layers.append(layer)

        for layer in self.inner_model.layers:
            visit(layer)
        return layers

    def set_trainable(self, layer_regex: str, keras_model: keras.Model | None = None,
                      indent: int = 0, verbose: int = 1) -> list[str]:
        """Sets layers matching the regex (full match) trainable, the others frozen."""
        return set_trainable(keras_model or self.keras_model, layer_regex, indent, verbose)

    def compile(self, learning_rate: float, momentum: float) -> None:
        """SGD with momentum and gradient clipping; losses come from the graph.

        GRADIENT_CLIP_NORM clips the global norm of all gradients together: Keras 2's
        ``clipnorm``, which Matterport used, did that (Keras 3's clips per variable).
        """
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum,
                                         global_clipnorm=self.config.GRADIENT_CLIP_NORM)
        # CropAndResize has no XLA kernel: never let Keras turn XLA on.
        self.keras_model.compile(optimizer=optimizer, jit_compile=False)
        # Create the momentum slots now. Without a distribution strategy Keras defers
        # this to the first train step, and a tf.function that creates variables is
        # traced twice: the first step of every stage would cost two traces.
        # ParallelModel.compile re-creates an optimizer made outside its strategy.
        optimizer = self.keras_model.optimizer
        if not optimizer.built:
            scope = self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
            with scope:
                optimizer.build(self.keras_model.trainable_variables)

    def layer_regex(self, layers: str) -> str:
        """Resolves a training preset name to its regex; other strings are regexes."""
        return LAYER_REGEX.get(layers, layers)

    def make_data_generator(self, dataset, shuffle: bool = True, augmentation=None,
                            no_augmentation_sources=None, steps: int | None = None):
        """The training data source (a keras PyDataset)."""
        return DataGenerator(dataset, self.config, shuffle=shuffle, augmentation=augmentation,
                             no_augmentation_sources=no_augmentation_sources,
                             steps_per_epoch=steps)

    def train(self, train_dataset, val_dataset, learning_rate: float, epochs: int,
              layers: str, augmentation=None, custom_callbacks: list | None = None,
              no_augmentation_sources=None) -> keras.callbacks.History | None:
        """Trains up to ``epochs`` (total, not additional) on the layers selected.

        layers: "heads", "3+", "4+", "5+", "all" or a regex of layer names.
        augmentation: an imgaug augmenter (mask-safe augmenters only).
        """
        if self.mode != "training":
            raise ValueError("Create model in training mode to train it "
                             f"(this one is in {self.mode!r} mode)")
        layer_regex = self.layer_regex(layers)
        train_generator = self.make_data_generator(
            train_dataset, shuffle=True, augmentation=augmentation,
            no_augmentation_sources=no_augmentation_sources,
            steps=self.config.STEPS_PER_EPOCH)
        # VALIDATION_STEPS = 0 (or no validation data) trains without validating.
        validation_steps = self.config.VALIDATION_STEPS if val_dataset is not None else 0
        val_generator = (self.make_data_generator(val_dataset, shuffle=True,
                                                  steps=validation_steps)
                         if validation_steps else None)
        os.makedirs(self.log_dir, exist_ok=True)
        callbacks = [
            keras.callbacks.TensorBoard(log_dir=self.log_dir, histogram_freq=0,
                                        write_graph=False),
            AtomicCheckpoint(self.checkpoint_path, source=self.inner_model),
        ]
        if custom_callbacks:
            callbacks += custom_callbacks
        # Printed, as Matterport printed them: the user watches training in a notebook.
        log("\nStarting at epoch {}. LR={}\n".format(self.epoch, learning_rate))
        log("Checkpoint Path: {}".format(self.checkpoint_path))
        self.set_trainable(layer_regex)
        self.compile(learning_rate, self.config.LEARNING_MOMENTUM)
        if self.epoch >= epochs:
            log("Already trained to epoch {} (asked for {}): nothing to do".format(
                self.epoch, epochs))
            return None
        history = self.keras_model.fit(
            train_generator, initial_epoch=self.epoch, epochs=epochs,
            steps_per_epoch=self.config.STEPS_PER_EPOCH, callbacks=callbacks,
            validation_data=val_generator, validation_steps=validation_steps or None,
            verbose=1)
        self.epoch = max(self.epoch, epochs)
        return history

    # -------------------------------------------------------------- inference
    def mold_inputs(self, images: Sequence[np.ndarray]):
        """Resizes and normalizes images for the network.

        Returns molded_images [N, h, w, 3], image_metas [N, META], windows [N, 4] (pixels,
        the part of the molded image that holds the original image).
        """
        molded_images, image_metas, windows = [], [], []
        for i, image in enumerate(images):
            image = check_image(image, name=f"images[{i}]")
            molded_image, window, scale, padding, crop = utils.resize_image(
                image,
                min_dim=self.config.IMAGE_MIN_DIM,
                min_scale=self.config.IMAGE_MIN_SCALE,
                max_dim=self.config.IMAGE_MAX_DIM,
                mode=self.config.IMAGE_RESIZE_MODE)
            molded_image = mold_image(molded_image, self.config)
            image_meta = compose_image_meta(0, image.shape, molded_image.shape, window, scale,
                                            np.zeros([self.config.NUM_CLASSES], dtype=np.int32))
            molded_images.append(molded_image)
            windows.append(window)
            image_metas.append(image_meta)
        return np.stack(molded_images), np.stack(image_metas), np.stack(windows)

    def unmold_boxes(self, detections: np.ndarray, original_image_shape, image_shape,
                     window) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One image's detections as boxes in the original image's pixels.

        detections: [N, (y1, x1, y2, x2, class_id, score)] normalized, zero-padded.
        Returns boxes [n, 4] int, class_ids [n], scores [n] and rows [n], the indices
        of the kept detections (padding and zero-area boxes dropped).
        """
        zero_ix = np.where(detections[:, 4] == 0)[0]
        N = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
        rows = np.arange(N)
        boxes = detections[:N, :4]
        class_ids = detections[:N, 4].astype(np.int32)
        scores = detections[:N, 5]

        # Window to normalized coordinates, then boxes relative to the window.
        window = utils.norm_boxes(window, image_shape[:2])
        wy1, wx1, wy2, wx2 = window
        shift = np.array([wy1, wx1, wy1, wx1])
        wh = wy2 - wy1
        ww = wx2 - wx1
        scale = np.array([wh, ww, wh, ww])
        boxes = np.divide(boxes - shift, scale)
        boxes = utils.denorm_boxes(boxes, original_image_shape[:2])

        # Drop zero-area boxes (possible in early training).
        keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
        return boxes[keep], class_ids[keep], scores[keep], rows[keep]

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape,
                          window):
        """Turns one image's detections into boxes, class ids, scores and full masks.

        detections: [N, (y1, x1, y2, x2, class_id, score)] normalized.
        mrcnn_mask: [N, height, width, num_classes].
        Returns boxes [N, 4] pixels of the original image, class_ids [N], scores [N],
        masks [height, width, N] bool.
        """
        boxes, class_ids, scores, rows = self.unmold_boxes(
            detections, original_image_shape, image_shape, window)
        masks = mrcnn_mask[rows, :, :, class_ids]  # [n, h, w]
        full_masks = [utils.unmold_mask(masks[i], boxes[i], original_image_shape)
                      for i in range(len(rows))]
        full_masks = (np.stack(full_masks, axis=-1) if full_masks
                      else np.empty(original_image_shape[:2] + (0,), dtype=bool))
        return boxes, class_ids, scores, full_masks

    def _check_batch(self, items: Sequence, what: str) -> None:
        if not isinstance(items, (list, tuple, np.ndarray)):
            raise ValueError(f"{what} must be a list of {self.config.BATCH_SIZE} arrays, "
                             f"got {type(items).__name__}")
        if len(items) != self.config.BATCH_SIZE:
            raise ValueError(f"len({what}) must be equal to BATCH_SIZE "
                             f"({self.config.BATCH_SIZE}), got {len(items)}")

    def _batch_anchors(self, image_shape) -> np.ndarray:
        """[BATCH_SIZE, num_anchors, 4] normalized anchors for the molded image shape."""
        anchors = self.get_anchors(image_shape)
        return np.broadcast_to(anchors, (self.config.BATCH_SIZE,) + anchors.shape)

    # Detection runs in two stages, so that a caller can edit the raw detections in
    # between (the Siamese random-boxes baseline does): predict_detections, then
    # unmold_batch.
    def predict_detections(self, model_inputs: list, model: keras.Model | None = None
                           ) -> tuple[np.ndarray, np.ndarray | None]:
        """Runs the inference graph, or a sub_model() with the same outputs.

        Returns detections [batch, N, (y1, x1, y2, x2, class_id, score)] normalized and
        mrcnn_mask [batch, N, h, w, num_classes] (None where with_masks() is False).
        """
        outputs = (model or self.keras_model).predict_on_batch(model_inputs)
        detections = np.asarray(outputs[0])
        mrcnn_mask = np.asarray(outputs[3]) if self.with_masks(self.config) else None
        return detections, mrcnn_mask

    def unmold_batch(self, detections: np.ndarray, mrcnn_mask: np.ndarray | None,
                     molded_images: np.ndarray, windows: np.ndarray,
                     original_shapes: Sequence) -> list[dict]:
        """unmold_detections for each image of a batch, as detect()'s result dicts."""
        results = []
        for i, original_shape in enumerate(original_shapes):
            masks = mrcnn_mask[i] if mrcnn_mask is not None else None
            rois, class_ids, scores, full_masks = self.unmold_detections(
                detections[i], masks, original_shape, molded_images[i].shape, windows[i])
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores,
                            "masks": full_masks})
        return results

    def _detect(self, model_inputs: list, molded_images: np.ndarray, windows: np.ndarray,
                original_shapes: Sequence, model: keras.Model | None = None) -> list[dict]:
        detections, mrcnn_mask = self.predict_detections(model_inputs, model)
        return self.unmold_batch(detections, mrcnn_mask, molded_images, windows,
                                 original_shapes)

    def _check_inference(self) -> None:
        if self.mode != "inference":
            raise ValueError(f"Create model in inference mode to detect (got {self.mode!r})")

    def detect(self, images: Sequence[np.ndarray], verbose: int = 0) -> list[dict]:
        """Runs detection on BATCH_SIZE images of any size.

        Returns one dict per image: rois [N, (y1, x1, y2, x2)], class_ids [N],
        scores [N], masks [H, W, N] bool, in the original image's coordinates.
        """
        self._check_inference()
        self._check_batch(images, "images")
        images = [check_image(image, name=f"images[{i}]") for i, image in enumerate(images)]
        if verbose:
            log("Processing {} images".format(len(images)))
            for image in images:
                log("image", image)
        molded_images, image_metas, windows = self.mold_inputs(images)
        image_shape = molded_images[0].shape
        for g in molded_images[1:]:
            if g.shape != image_shape:
                raise ValueError("After resizing, all images must have the same size. "
                                 "Check IMAGE_RESIZE_MODE and image sizes.")
        anchors = self._batch_anchors(image_shape)
        if verbose:
            log("molded_images", molded_images)
            log("image_metas", image_metas)
            log("anchors", anchors)
        return self._detect([molded_images, image_metas, anchors], molded_images, windows,
                            [image.shape for image in images])

    def detect_molded(self, molded_images: np.ndarray, image_metas: np.ndarray,
                      verbose: int = 0) -> list[dict]:
        """Runs detection on images already molded (e.g. from load_image_gt + mold_image).

        Boxes and masks are returned in the molded image's coordinates.
        """
        self._check_inference()
        self._check_batch(molded_images, "molded_images")
        molded_images = np.asarray(molded_images)
        image_shape = molded_images[0].shape
        windows = np.array([[0, 0, image_shape[0], image_shape[1]]] * len(molded_images))
        return self._detect(
            [molded_images, np.asarray(image_metas), self._batch_anchors(image_shape)],
            molded_images, windows, [image_shape] * len(molded_images))

    def get_anchors(self, image_shape) -> np.ndarray:
        """Returns the normalized anchor pyramid for the given image shape (cached)."""
        backbone_shapes = compute_backbone_shapes(self.config, image_shape)
        key = tuple(image_shape)
        if key not in self._anchor_cache:
            a = utils.generate_pyramid_anchors(
                self.config.RPN_ANCHOR_SCALES, self.config.RPN_ANCHOR_RATIOS, backbone_shapes,
                self.config.BACKBONE_STRIDES, self.config.RPN_ANCHOR_STRIDE)
            # Kept in pixels too for visualisation, as Matterport does.
            self.anchors = a
            self._anchor_cache[key] = utils.norm_boxes(a, image_shape[:2]).astype(np.float32)
        return self._anchor_cache[key]

    # ------------------------------------------------------------- debugging
    def ancestor(self, tensor, name: str, checked: list | None = None):
        """Finds an intermediate value by its Matterport (TF1) graph name, for run_graph.

        Known: the proposal layer's "ROI/pre_nms_anchors:0", "ROI/refined_anchors:0",
        "ROI/refined_anchors_clipped:0" and "ROI/rpn_non_max_suppression:0" (also its
        .../NonMaxSuppressionV2:0 and V3:0 names), what inspect_model reads. Returns a
        LayerStage that run_graph computes, or None for other names, as Matterport
        returned None for a name it did not find. `tensor` and `checked` are accepted
        for the old signature; Keras 3 layers have no inner graph to walk.
        """
        return find_stage(self.inner_model, name)

    def find_trainable_layer(self, layer):
        """Returns the wrapped layer for TimeDistributed wrappers, else the layer."""
        inner = getattr(layer, "layer", None)
        return self.find_trainable_layer(inner) if inner is not None else layer

    def sub_model(self, name: str) -> keras.Model:
        """The inference sub-model ``name`` (one of SUB_MODELS), built on first use.

        A sub-model runs between two sets of tensors of this model's inference graph and
        shares its layers, so it sees the weights loaded later too. This is the one
        cache of sub-models; it lives as long as keras_model. Under ParallelModel a
        sub-model is wrapped the same way, so that predict_on_batch splits its batch into
        IMAGES_PER_GPU per replica (the graph's per-image loops need it).
        """
        self._check_inference()
        if name not in self._sub_models:
            if name not in self.SUB_MODELS:
                raise ValueError(f"sub_model: unknown name {name!r}; {type(self).__name__} "
                                 f"has {sorted(self.SUB_MODELS) or 'none'}")
            inputs, outputs = self.sub_model_tensors(name)
            self._sub_models[name] = self._sub_model(inputs, outputs, name=name)
        return self._sub_models[name]

    def _sub_model(self, inputs, outputs, name: str | None = None) -> keras.Model:
        # Uncached: run_graph builds one per call for the tensors it is asked for.
        if hasattr(self.keras_model, "sub_model"):
            return self.keras_model.sub_model(inputs, outputs, name=name)
        return keras.Model(inputs, outputs, name=name)

    def sub_model_tensors(self, name: str) -> tuple[list, list]:
        """(inputs, outputs) of the inference graph that bound sub-model ``name``."""
        raise NotImplementedError(f"{type(self).__name__} defines no sub-model {name!r}")

    def _run_graph_feed(self, images, image_metas, **extra) -> tuple[list, list]:
        """(graph inputs, arrays to feed them) for run_graph.

        In training mode only the image and its meta are fed: the ground-truth inputs
        are not available here, as in Matterport.
        """
        model = self.inner_model
        if image_metas is None:
            molded_images, image_metas, _ = self.mold_inputs(images)
        else:
            molded_images = np.asarray(images)
        model_in = [molded_images, np.asarray(image_metas)]
        if self.mode == "inference":
            anchors = self.get_anchors(molded_images[0].shape)
            model_in.append(np.broadcast_to(anchors, (len(molded_images),) + anchors.shape))
            return model.inputs, model_in
        return model.inputs[:2], model_in

    def run_graph(self, images: Sequence[np.ndarray], outputs: list[tuple[str, Any]],
                  image_metas: np.ndarray | None = None, **extra) -> OrderedDict:
        """Runs a sub-graph and returns the named intermediate tensors as numpy arrays.

        outputs: [(name, keras_tensor), ...], e.g.
        ``[("proposals", model.keras_model.get_layer("ROI").output)]``.
        images: raw images (molded here), or molded ones when image_metas is given.
        In training mode only tensors that depend on the inputs fed (backbone, FPN, RPN,
        proposals) can be run, as in Matterport.
        """
        outputs = OrderedDict(outputs)
        missing = [k for k, v in outputs.items() if v is None]
        if missing:
            raise ValueError(
                f"run_graph: outputs {missing} are None: model.ancestor() returns None for "
                f"names it does not know; it knows {known_stage_names()}")
        stages = {k: v for k, v in outputs.items() if isinstance(v, LayerStage)}
        tensors = {k: v for k, v in outputs.items() if k not in stages}
        # A stage is computed from its layer's inputs: fetch those as well.
        stage_layers = sorted({s.layer for s in stages.values()})
        stage_tensors = {name: stage_inputs(self.inner_model, name) for name in stage_layers}
        fetch = list(tensors.values()) + [t for name in stage_layers
                                          for t in stage_tensors[name]]
        inputs, model_in = self._run_graph_feed(images, image_metas, **extra)
        try:
            sub_model = self._sub_model(inputs, fetch)
        except ValueError as error:
            raise ValueError(
                f"run_graph in {self.mode} mode feeds only {[t.name for t in inputs]}; "
                f"the outputs {list(outputs)} need other inputs ({error})") from error
        values = sub_model.predict_on_batch(model_in)
        if not isinstance(values, (list, tuple)):
            values = [values]
        values = [np.asarray(v) for v in values]
        fetched = dict(zip(tensors.keys(), values))
        position = len(tensors)
        stage_values = {}
        for name in stage_layers:
            count = len(stage_tensors[name])
            stage_values[name] = values[position:position + count]
            position += count
        fetched.update(compute_stages(self.inner_model, stages, stage_values))
        result = OrderedDict((k, np.asarray(fetched[k])) for k in outputs)
        for k, v in result.items():
            log(k, v)
        return result


__all__ = [
    "MaskRCNN", "log", "resnet_graph", "identity_block", "conv_block", "build_rpn_model",
    "rpn_graph", "fpn_classifier_graph", "build_fpn_mask_graph", "ProposalLayer",
    "PyramidROIAlign", "DetectionTargetLayer", "DetectionLayer", "BatchNorm",
    "rpn_class_loss_graph", "rpn_bbox_loss_graph", "mrcnn_class_loss_graph",
    "mrcnn_bbox_loss_graph", "mrcnn_mask_loss_graph", "smooth_l1_loss", "load_image_gt",
    "build_rpn_targets", "build_detection_targets", "generate_random_rois", "data_generator",
    "compose_image_meta", "parse_image_meta", "parse_image_meta_graph", "mold_image",
    "unmold_image", "compute_backbone_shapes", "LAYER_REGEX", "norm_boxes_graph",
    "denorm_boxes_graph", "apply_box_deltas_graph", "clip_boxes_graph", "TimeDistributed",
]
