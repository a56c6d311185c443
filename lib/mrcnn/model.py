"""MaskRCNN: builds the training and inference graphs, trains, detects.

The graph pieces live in their own modules (backbone, fpn, rpn, proposals, roi_align,
targets, heads, detection, losses, data, weights, training); this module assembles them
and re-exports Matterport's public names so ``from mrcnn import model as modellib``
keeps working. MaskRCNN's methods are in three modules: here the graph, checkpoints
and training; inference in model_inference (InferenceMixin); run_graph and ancestor in
model_inspection (InspectionMixin).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from typing import Any, Callable, Sequence

import keras
import numpy as np

from mrcnn import backend_ops, multi_worker, utils  # noqa: F401 - modellib.utils
from mrcnn.backbone import (compute_backbone_shapes, conv_block, identity_block,  # noqa: F401
                            resnet_graph)
from mrcnn.checkpoint_path import LastCheckpoint
from mrcnn.checkpoints import CheckpointPolicy, TimestampedRuns
from mrcnn.config import check_model_arguments
from mrcnn.data import DataGenerator, data_generator, load_image_gt  # noqa: F401
from mrcnn.molding import (compose_image_meta, mold_image, parse_image_meta,  # noqa: F401
                           parse_image_meta_graph, unmold_image)
from mrcnn.detection import DetectionLayer, refine_detections_graph  # noqa: F401
from mrcnn.layer_args import kwargs_from_config
from mrcnn.fpn import fpn_graph
from mrcnn.graph_layers import (ActiveClassIds, AnchorsLayer, DetectionBoxes, Identity,
                                LossLayer, NormBoxes)
from mrcnn.h5_model import GraphModel
from mrcnn.inspection import log
from mrcnn.model_inference import InferenceMixin
from mrcnn.model_inspection import InspectionMixin
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
from mrcnn.training import (LAYER_REGEX, LOSS_NAMES, AtomicCheckpoint, FollowFitEpoch,
                            LossModel, check_train_request, set_trainable, tensorboard)
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


class MaskRCNN(InferenceMixin, InspectionMixin):
    """Encapsulates the Mask R-CNN Keras model (Matterport's API).

    The Keras model is in ``self.keras_model``. ``mode`` is "training" or "inference".
    """

    #: Where training writes checkpoints and how find_last finds them (mrcnn.checkpoints):
    #: Matterport's {name}{%Y%m%dT%H%M}/mask_rcnn_{name}_{epoch:04d}.h5.
    CHECKPOINTS: CheckpointPolicy = TimestampedRuns("mask_rcnn")

    #: train(layers=NAME): the named layer selections (other strings are regexes).
    LAYER_REGEX: dict[str, str] = LAYER_REGEX

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
        check_model_arguments(config, model_dir)
        self.check_config(config)
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
        if config.DISTRIBUTION == "multi_worker" or config.GPU_COUNT > 1:
            backend_ops.require_tensorflow(  # tf.distribute's strategies
                f"DISTRIBUTION={config.DISTRIBUTION!r}, GPU_COUNT={config.GPU_COUNT}")
        if config.DISTRIBUTION == "multi_worker":
            self.strategy = multi_worker.get_strategy()
            local = self.strategy.num_replicas_in_sync // multi_worker.current_cluster().count
            if local != config.GPU_COUNT:
                raise ValueError(
                    f"GPU_COUNT={config.GPU_COUNT} but this worker has {local} replica(s) "
                    "(its visible GPUs, or 1 on a CPU): set GPU_COUNT to that number, or "
                    "choose the GPUs with CUDA_VISIBLE_DEVICES")
            with self.strategy.scope():
                self.keras_model = self.build(mode=mode, config=config)
        elif config.GPU_COUNT > 1:
            from mrcnn.parallel_model import ParallelModel, get_strategy

            self.strategy = get_strategy(config.GPU_COUNT)
            with self.strategy.scope():
                model = self.build(mode=mode, config=config)
            self.keras_model = ParallelModel(model, config.GPU_COUNT)
        else:
            self.keras_model = self.build(mode=mode, config=config)

    def check_config(self, config) -> None:
        """What this model needs of a valid Config beyond its own checks (subclasses);
        called once the config is known to be a Config instance, before the build."""

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
        return weights_io.find_named_weights(source, self.IMAGENET_WEIGHTS,
                                             self.imagenet_weights_dirs())

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
        # Keras' optimizers belong to the strategy current when they are created.
        scope = self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
        with scope:
            optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum,
                                             global_clipnorm=self.config.GRADIENT_CLIP_NORM)
            # TensorFlow: CropAndResize has no XLA kernel, never let Keras turn XLA on.
            # JAX: one jit-compiled step per shape (our ops are XLA's).
            self.keras_model.compile(optimizer=optimizer,
                                     jit_compile=keras.backend.backend() == "jax")
            # Create the momentum slots now. Without a distribution strategy Keras
            # defers this to the first train step, and a tf.function that creates
            # variables is traced twice: the first step of every stage would cost two.
            optimizer = self.keras_model.optimizer
            if not optimizer.built:
                optimizer.build(self.keras_model.trainable_variables)

    def layer_regex(self, layers: str) -> str:
        """Resolves a training preset name to its regex; other strings are regexes."""
        return self.LAYER_REGEX.get(layers, layers)

    def make_data_generator(self, dataset, shuffle: bool = True, augmentation=None,
                            no_augmentation_sources=None, steps: int | None = None,
                            batch_size: int | None = None, seed: int | None = None):
        """The training data source (a keras PyDataset with batch_at(); see mrcnn.data).

        batch_size: default config.BATCH_SIZE (multi-worker training passes the
        global batch); seed: default drawn. Without USE_RPN_ROIS each sample carries
        POST_NMS_ROIS_TRAINING random ROIs, the graph's input_roi.
        """
        random_rois = 0 if self.config.USE_RPN_ROIS else self.config.POST_NMS_ROIS_TRAINING
        return DataGenerator(dataset, self.config, shuffle=shuffle, augmentation=augmentation,
                             no_augmentation_sources=no_augmentation_sources,
                             steps_per_epoch=steps, batch_size=batch_size, seed=seed,
                             random_rois=random_rois)

    @property
    def is_chief(self) -> bool:
        """False only on a multi-worker run's non-chief tasks (which write no files and
        take their weights from the chief: sync_workers)."""
        cluster = self._multi_worker_cluster()
        return cluster is None or cluster.is_chief

    def sync_workers(self) -> None:
        """Multi-worker: every worker takes the chief's weights and epoch (a collective
        call: all workers make it at the same point). Otherwise nothing."""
        if self._multi_worker_cluster() is None:
            return
        self.epoch = multi_worker.sync_from_chief(self.strategy, self.inner_model,
                                                  {"epoch": self.epoch})["epoch"]

    def _multi_worker_cluster(self):
        """This worker's place in TF_CONFIG when training multi-worker, else None."""
        return (multi_worker.current_cluster()
                if self.config.DISTRIBUTION == "multi_worker" else None)

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
        check_train_request(self.keras_model, learning_rate, layer_regex, layers,
                            self.LAYER_REGEX)
        cluster = self._multi_worker_cluster()
        seed = int(np.random.randint(2 ** 31 - 1))
        if cluster is not None:
            # Every worker starts from the chief's weights, epoch and data seed: a restart
            # resumes from the chief's checkpoint (sync_workers: the same, before train()).
            synced = multi_worker.sync_from_chief(self.strategy, self.inner_model,
                                                  {"epoch": self.epoch, "seed": seed})
            self.epoch, seed = synced["epoch"], synced["seed"]
        workers = cluster.count if cluster is not None else 1
        steps = self.config.STEPS_PER_EPOCH
        train_generator = self.make_data_generator(
            train_dataset, shuffle=True, augmentation=augmentation,
            no_augmentation_sources=no_augmentation_sources, steps=steps,
            batch_size=self.config.BATCH_SIZE * workers, seed=seed)
        # VALIDATION_STEPS = 0 (or no validation data) trains without validating.
        validation_steps = self.config.VALIDATION_STEPS if val_dataset is not None else 0
        val_generator = (self.make_data_generator(
            val_dataset, shuffle=True, steps=validation_steps,
            batch_size=self.config.BATCH_SIZE * workers, seed=seed + 1)
            if validation_steps else None)
        callbacks = []
        # Only the chief writes: the other workers' files would race with its own.
        if self.is_chief:
            os.makedirs(self.log_dir, exist_ok=True)
            callbacks += [*tensorboard(self.log_dir),
                          AtomicCheckpoint(self.checkpoint_path, source=self.inner_model)]
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
            multi_worker.leave_together(cluster, "train_end")  # after sync_from_chief
            return None
        if cluster is not None:
            images = self.config.IMAGES_PER_GPU
            train_generator = multi_worker.distributed_dataset(
                self.strategy, train_generator, steps, self.epoch, images)
            if val_generator is not None:
                val_generator = multi_worker.distributed_dataset(
                    self.strategy, val_generator, validation_steps, self.epoch, images)
            failures = multi_worker.worker_failures(cluster)
        else:  # tf.data without autotuning: see multi_worker.local_dataset
            # Where fit() reads a generator itself (JAX, PyTorch, loader threads), it
            # would read epochs shifted by Keras' extra epoch end: FollowFitEpoch.
            callbacks.append(FollowFitEpoch(train_generator, val_generator))
            train_generator = multi_worker.local_dataset(train_generator, steps, self.epoch)
            val_generator = multi_worker.local_dataset(val_generator, validation_steps,
                                                       self.epoch)
            failures = contextlib.nullcontext()
        with failures:
            # The generators shuffle their own seeded stream (Keras' shuffle: irreproducible).
            history = self.keras_model.fit(
                train_generator, initial_epoch=self.epoch, epochs=epochs,
                steps_per_epoch=steps, callbacks=callbacks, shuffle=False,
                validation_data=val_generator, validation_steps=validation_steps or None,
                verbose=1)
        multi_worker.leave_together(cluster, "train_end")  # no one leaves a peer reading
        self.epoch = max(self.epoch, epochs)
        return history


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
