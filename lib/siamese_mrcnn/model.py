"""SiameseMaskRCNN: Mask R-CNN conditioned on a reference image (paper §4).

What changes against ``mrcnn.model.MaskRCNN`` (SPEC §3):
- one ResNet (``resnet_model``) and one ReLU-FPN (``fpn_model``) encode the query and
  the k references with shared weights; the references' pyramids are averaged;
- the matching step (``siamese_mrcnn.matching``) fuses each query level with the pooled
  reference vector through ``fpn_distance_P2..P6``;
- the RPN and the heads see the 3C/2-channel matched maps; the heads have 2 classes,
  a class-agnostic box and a one-channel mask ('frcnn': no mask head).

Everything else (proposals, ROI align, targets, detection, training loop, weights I/O)
is Matterport's, inherited.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Callable, Mapping, Sequence

import keras
import numpy as np

from mrcnn import heads
from mrcnn.backbone import build_resnet_model
from mrcnn.checkpoints import FixedRun, epoch_in_name
from mrcnn.fpn import build_fpn_model
from mrcnn.graph_layers import LossLayer
from mrcnn.model import MaskRCNN, log
from mrcnn.training import LAYER_REGEX as MRCNN_LAYER_REGEX
from mrcnn.training import check_layer_regex
from mrcnn.molding import check_image
from mrcnn.tracing import predict_on_batch

from siamese_mrcnn.config import check_schedule, check_siamese_classes
# siamese_mrcnn_class_loss_graph: the paper code defined it in this module.
from siamese_mrcnn.losses import CLASS_LOSS_NAME, siamese_mrcnn_class_loss_graph
from siamese_mrcnn.matching import match_with_vectors, pool_references
from siamese_mrcnn.reference import (MergeReferences, SplitReferences, mold_references,
                                     randomize_detections, sort_by_score)

logger = logging.getLogger(__name__)

# Functions the Siamese graph takes from the library whatever mrcnn.model holds.
SIAMESE_OWN_FUNCTIONS = ("fpn_classifier_graph", "build_fpn_mask_graph")

# The paper code's training presets: Matterport's plus "rpn" and "2+".
LAYER_REGEX = dict(MRCNN_LAYER_REGEX)
LAYER_REGEX.update({
    "rpn": r"(rpn\_.*)|(fpn\_.*)",
    "2+": r"(res2.*)|(bn2.*)|(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)"
          r"|(rpn\_.*)|(fpn\_.*)",
})

PRETRAININGS = {"imagenet-1k": "imagenet_1k.h5", "imagenet-771": "imagenet_771.h5",
                "imagenet-687": "imagenet_687.h5"}

# What encode_queries() gives per image and detect_with_encoded() reads.
ENCODED_QUERY_KEYS = ("levels", "molded_image", "image_meta", "window", "shape")



def run_folder(config) -> str:
    """The paper code's run folder: siamese_{model}_{name}_{experiment}."""
    return "siamese_{}_{}_{}".format(config.MODEL.lower(), config.NAME.lower(),
                                     config.EXPERIMENT.lower())


def schedule_stage(schedule: Mapping[int, dict], epoch: int) -> tuple[int, dict]:
    """The stage of a ``{end_epoch: {learning_rate, layers}}`` schedule that ``epoch``
    belongs to: the first stage whose end is >= epoch (the paper code's rule).
    """
    schedule = check_schedule(schedule)  # {int end epoch: stage}
    for end in sorted(schedule):
        if epoch <= end:
            return end, schedule[end]
    return max(schedule), schedule[max(schedule)]


class SiameseMaskRCNN(MaskRCNN):
    """Siamese Mask R-CNN. Inputs: query image, image meta, references, (anchors).

    With GPU_COUNT > 1 the graph is built under the MirroredStrategy and wrapped in
    ParallelModel (MaskRCNN.__init__); detect, encode_reference, detect_with_reference
    and run_graph split their batch over the replicas as well.
    """

    #: logs/siamese_{model}_{name}_{experiment}/siamese_mrcnn_{epoch:04d}.h5; training
    #: resumes in the same folder (mrcnn.checkpoints.FixedRun).
    CHECKPOINTS = FixedRun(prefix="siamese_mrcnn", run_name=run_folder)
    #: get_imagenet_weights(name): the paper's backbones, in config.CHECKPOINT_DIR.
    IMAGENET_WEIGHTS = PRETRAININGS
    #: train(layers=NAME): Matterport's selections plus the paper code's "rpn" and "2+".
    LAYER_REGEX = LAYER_REGEX
    DEFAULT_IMAGENET = "imagenet-1k"

    # Reusing work across pairs: a reference is encoded once for many queries, a query
    # once for many references (the protocol pairs each image with each of its
    # categories). The inference entry points form one family:
    #   detect(targets, images)                 raw references and raw queries
    #   detect_molded(images, metas, targets)   molded inputs (data-set evaluation)
    #   encode_reference(targets) -> vectors    then detect_with_reference(vectors, images)
    #   encode_queries(images) -> queries       then detect_with_encoded(queries, vectors)
    # All run predict_detections + unmold_batch on the full graph or one of these.
    SUB_MODELS = {
        "reference_encoder": "references [batch, k, T, T, 3] -> 5 pooled vectors [batch, C]",
        "vector_detector": "(image, meta, 5 vectors, anchors) -> the inference outputs",
        "query_encoder": "molded queries [batch, S, S, 3] -> 5 FPN levels [batch, S/s, S/s, C]",
        "feature_detector": "(meta, 5 levels, 5 vectors, anchors) -> the inference outputs",
    }

    def __init__(self, mode: str, config, model_dir: str):
        self._reference_vectors = None
        self._query_levels = None
        super().__init__(mode, config, model_dir)

    def check_config(self, config) -> None:
        check_siamese_classes(config)

    # ------------------------------------------------------------------ graph
    def with_masks(self, config) -> bool:
        return config.MODEL == "mrcnn"

    def classifier_head_kwargs(self, config) -> dict:
        # One box for "the reference's category", whatever the class.
        return {**super().classifier_head_kwargs(config), "class_agnostic_bbox": True}

    def mask_head_kwargs(self, config) -> dict:
        return {**super().mask_head_kwargs(config), "mask_channels": 1}

    def build_class_loss(self, target_class_ids, mrcnn_class_logits, input_image_meta,
                         config):
        """The paper's class loss: mean cross-entropy over all ROIs (no active classes)."""
        return LossLayer(CLASS_LOSS_NAME, name="mrcnn_class_loss")(
            [target_class_ids, mrcnn_class_logits])

    def image_input_shape(self, config) -> list:
        # Square mode: the query size is fixed.
        return [int(x) for x in config.IMAGE_SHAPE]

    def build_extra_inputs(self, config) -> list:
        # [batch, k, T, T, 3] references, molded like the query.
        # Named as in the paper's graph (and its weights files): "target" = reference.
        input_references = keras.Input(
            shape=[config.NUM_TARGETS] + [int(x) for x in config.TARGET_SHAPE],
            name="input_target")
        return [input_references]

    def build_feature_pyramid(self, input_image, extra_inputs: list, config) -> list:
        (input_references,) = extra_inputs
        resnet = build_resnet_model([None, None, 3], config.BACKBONE, stage5=True,
                                    train_bn=config.TRAIN_BN)
        channels = [int(c.shape[-1]) for c in resnet.outputs]
        fpn = build_fpn_model(channels, config.FPN_FEATUREMAPS, activation="relu")
        query_levels = fpn(resnet(input_image))  # 5 x [batch, H/s, W/s, C]
        self._query_levels = query_levels
        # All k references of all queries in one backbone call.
        # [batch*k, T, T, 3]
        merged = MergeReferences(name="merge_references")(input_references)
        reference_levels = [
            SplitReferences(config.NUM_TARGETS, name=f"split_references_P{i + 2}")(level)
            for i, level in enumerate(fpn(resnet(merged)))]  # 5 x [batch, k, h, w, C]
        vectors = pool_references(reference_levels)  # 5 x [batch, C]
        self._reference_vectors = vectors
        # 5 x [batch, H/s, W/s, 3C/2]
        return match_with_vectors(query_levels, vectors,
                                  feature_maps=3 * config.FPN_FEATUREMAPS // 2)

    def graph_function(self, name: str):
        """The paper code built its own heads and class loss and took only the RPN,
        box and mask losses from mrcnn.model: replacements assigned there reach those,
        not the Siamese heads."""
        if name in SIAMESE_OWN_FUNCTIONS:
            return getattr(heads, name)
        return super().graph_function(name)

    # ---------------------------------------------------------- reference reuse
    def sub_model_tensors(self, name: str) -> tuple:
        image, meta, reference, anchors = self.inner_model.inputs
        outputs = self.inner_model.outputs
        # A one-input sub-model takes its tensor, not a list of one: it is called with
        # one array, and Keras warns on every call whose structure differs from the
        # model's (under PyTorch, which runs eagerly, once per evaluated pair).
        return {
            "reference_encoder": (reference, self._reference_vectors),
            "vector_detector": ([image, meta, *self._reference_vectors, anchors], outputs),
            "query_encoder": (image, self._query_levels),
            "feature_detector": ([meta, *self._query_levels, *self._reference_vectors,
                                  anchors], outputs),
        }[name]

    def encode_reference(self, targets: Sequence) -> list[np.ndarray]:
        """Encodes references once, for reuse over many queries.

        targets: one entry per query slot (a list of k raw references, or one image when
        k = 1); any length (1 to reuse one reference for the whole batch).
        Returns 5 arrays [len(targets), C]: the pooled P2..P6 reference vectors.
        """
        encoder = self.sub_model("reference_encoder")
        molded = mold_references(targets, self.config)  # [n, k, T, T, 3]
        count = len(molded)
        # Each query's references are encoded on their own, so a batch that does not
        # split evenly over GPU_COUNT replicas is padded with copies of the last entry,
        # whose vectors are dropped.
        padding = -count % self.config.GPU_COUNT
        if padding:
            molded = np.concatenate([molded, np.repeat(molded[-1:], padding, axis=0)])
        return [np.asarray(v)[:count] for v in predict_on_batch(encoder, molded)]

    def _check_vectors(self, reference_vectors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """encode_reference()'s 5 arrays, each [1 or BATCH_SIZE, C], as [BATCH_SIZE, C]."""
        if len(reference_vectors) != 5:
            raise ValueError("reference_vectors: expected the 5 arrays (P2..P6) returned by "
                             f"encode_reference, got {len(reference_vectors)}")
        vectors = []
        for level, v in zip(("P2", "P3", "P4", "P5", "P6"), reference_vectors):
            v = np.asarray(v, dtype=np.float32)
            if (v.ndim != 2 or v.shape[0] not in (1, self.config.BATCH_SIZE)
                    or v.shape[1] != self.config.FPN_FEATUREMAPS):
                raise ValueError(f"reference_vectors[{level}]: expected [1 or BATCH_SIZE="
                                 f"{self.config.BATCH_SIZE}, FPN_FEATUREMAPS="
                                 f"{self.config.FPN_FEATUREMAPS}], got {list(v.shape)}")
            vectors.append(np.broadcast_to(v, (self.config.BATCH_SIZE, v.shape[1])))
        return vectors

    def detect_with_reference(self, reference_vectors: Sequence[np.ndarray],
                              images: Sequence[np.ndarray], verbose: int = 0,
                              random_detections: bool = False,
                              rng: np.random.Generator | None = None,
                              molded: tuple | None = None) -> list[dict]:
        """detect() with references already encoded by encode_reference().

        Vectors with a leading dimension of 1 are broadcast over the batch.
        molded: mold_inputs(images), when it was computed already (e.g. by a thread
        that prepares the next batch while the model runs).
        """
        detector = self.sub_model("vector_detector")
        self._check_batch(images, "images")
        vectors = self._check_vectors(reference_vectors)
        images = [check_image(im, name=f"images[{i}]") for i, im in enumerate(images)]
        molded_images, image_metas, windows = molded or self.mold_inputs(images)
        anchors = self._batch_anchors(molded_images[0].shape)
        return self._detect_inputs(
            [molded_images, image_metas, *vectors, anchors], molded_images, windows,
            [im.shape for im in images], random_detections, rng, model=detector)

    def encode_queries(self, images: Sequence[np.ndarray]) -> list[dict]:
        """Molds query images and runs the backbone and FPN on them once, for reuse with
        several references (detect_with_encoded): the evaluation protocol pairs each
        image with every category present in it.

        images: any number of raw query images.
        Returns one dict per image: "levels" (5 arrays [S/s, S/s, C], P2..P6),
        "molded_image", "image_meta", "window" and "shape" (the original image's).
        """
        encoder = self.sub_model("query_encoder")
        if len(images) == 0:
            return []
        images = [check_image(im, name=f"images[{i}]") for i, im in enumerate(images)]
        molded_images, image_metas, windows = self.mold_inputs(images)
        count = len(molded_images)
        # Chunks of GPU_COUNT images (one per replica under ParallelModel, the last one
        # padded): one input shape, so the encoder is traced once whatever the count.
        step = self.config.GPU_COUNT
        padded = np.concatenate([molded_images,
                                 np.repeat(molded_images[-1:], -count % step, axis=0)])
        levels = [[] for _ in range(5)]
        for start in range(0, count, step):
            for i, level in enumerate(predict_on_batch(encoder, padded[start:start + step])):
                levels[i].extend(np.asarray(level))
        return [{"levels": [level[i] for level in levels], "molded_image": molded_images[i],
                 "image_meta": image_metas[i], "window": windows[i], "shape": images[i].shape}
                for i in range(count)]

    def detect_with_encoded(self, queries: Sequence[dict],
                            reference_vectors: Sequence[np.ndarray],
                            random_detections: bool = False,
                            rng: np.random.Generator | None = None) -> list[dict]:
        """detect() on queries from encode_queries() and references from
        encode_reference(): BATCH_SIZE queries, vectors [1 or BATCH_SIZE, C] per level.
        Gives detect()'s results for the same (query, reference) pairs."""
        detector = self.sub_model("feature_detector")
        self._check_batch(queries, "queries")
        vectors = self._check_vectors(reference_vectors)
        for i, query in enumerate(queries):
            missing = [k for k in ENCODED_QUERY_KEYS
                       if not isinstance(query, dict) or k not in query]
            if missing:
                raise ValueError(f"queries[{i}]: expected a dict from encode_queries(), "
                                 f"with {list(ENCODED_QUERY_KEYS)}; missing {missing}")
        shapes = {q["molded_image"].shape for q in queries}
        if len(shapes) != 1:
            raise ValueError("queries: all molded images must have one size, got "
                             f"{sorted(shapes)}")
        molded_images = np.stack([q["molded_image"] for q in queries])
        levels = [np.stack([q["levels"][i] for q in queries]) for i in range(5)]
        anchors = self._batch_anchors(molded_images[0].shape)
        return self._detect_inputs(
            [np.stack([q["image_meta"] for q in queries]), *levels, *vectors, anchors],
            molded_images, np.stack([q["window"] for q in queries]),
            [q["shape"] for q in queries], random_detections, rng, model=detector)

    def _detect_inputs(self, model_inputs: list, molded_images: np.ndarray,
                       windows: np.ndarray, original_shapes: list, random_detections: bool,
                       rng: np.random.Generator | None, model=None) -> list[dict]:
        """Runs the graph; with random_detections, the random-boxes baseline."""
        detections, mrcnn_mask = self.predict_detections(model_inputs, model)
        if not random_detections:
            return self.unmold_batch(detections, mrcnn_mask, molded_images, windows,
                                     original_shapes)
        detections = randomize_detections(detections, windows, molded_images[0].shape,
                                          rng or np.random.default_rng())
        results = self.unmold_batch(detections, mrcnn_mask, molded_images, windows,
                                    original_shapes)
        # randomize_detections keeps the rows (and masks) in place: sort by the new scores.
        return [sort_by_score(r) for r in results]

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape,
                          window):
        """MaskRCNN.unmold_detections; for the box-only 'frcnn' graph (mrcnn_mask None)
        each box, filled, is its mask, so that mask metrics can still be computed."""
        if mrcnn_mask is not None:
            return super().unmold_detections(detections, mrcnn_mask, original_image_shape,
                                             image_shape, window)
        boxes, class_ids, scores, _ = self.unmold_boxes(detections, original_image_shape,
                                                        image_shape, window)
        masks = np.zeros(original_image_shape[:2] + (len(boxes),), dtype=bool)
        for i, (y1, x1, y2, x2) in enumerate(boxes):
            masks[y1:y2, x1:x2, i] = True
        return boxes, class_ids, scores, masks

    # -------------------------------------------------------------- inference
    def detect(self, targets: Sequence, images: Sequence[np.ndarray], verbose: int = 0,
               random_detections: bool = False, eps: float = 1e-6,
               rng: np.random.Generator | None = None) -> list[dict]:
        """Detects, in each query image, the objects of its reference's category.

        targets: one entry per image: a list of NUM_TARGETS raw references of any size
            (or a single image when NUM_TARGETS = 1); resized, padded and molded here.
        images: BATCH_SIZE raw query images of any size (RGB; grayscale/RGBA converted).
        random_detections: the random-boxes baseline (boxes moved inside the image,
            sizes kept, scores shuffled; rng makes it reproducible).
        eps: unused, kept for the old signature.
        Returns per image a dict rois, class_ids, scores, masks ([H, W, N] bool) in the
        query's original size.
        """
        self._check_inference()
        self._check_batch(images, "images")
        self._check_batch(targets, "targets")
        images = [check_image(im, name=f"images[{i}]") for i, im in enumerate(images)]
        molded_references = mold_references(targets, self.config)
        molded_images, image_metas, windows = self.mold_inputs(images)
        if verbose:
            log("Processing {} images".format(len(images)))
            log("molded_images", molded_images)
            log("molded_targets", molded_references)  # the paper code's label
        anchors = self._batch_anchors(molded_images[0].shape)
        return self._detect_inputs(
            [molded_images, image_metas, molded_references, anchors], molded_images, windows,
            [im.shape for im in images], random_detections, rng)

    def detect_molded(self, molded_images: np.ndarray, image_metas: np.ndarray,
                      molded_targets: np.ndarray | None = None, verbose: int = 0) -> list[dict]:
        """Detection on molded queries [B, S, S, 3] and molded references [B, k, T, T, 3]."""
        self._check_inference()
        if molded_targets is None:
            raise ValueError("detect_molded needs molded_targets [BATCH_SIZE, NUM_TARGETS, "
                             "T, T, 3] for the Siamese model")
        self._check_batch(molded_images, "molded_images")
        molded_images = np.asarray(molded_images)
        molded_targets = np.asarray(molded_targets)
        expected = (self.config.BATCH_SIZE, self.config.NUM_TARGETS,
                    *(int(x) for x in self.config.TARGET_SHAPE))
        if molded_targets.shape != expected:
            raise ValueError(f"molded_targets: expected shape [BATCH_SIZE, NUM_TARGETS, T, T, "
                             f"3] = {list(expected)}, got {list(molded_targets.shape)}")
        shape = molded_images[0].shape
        windows = np.array([[0, 0, shape[0], shape[1]]] * len(molded_images))
        return self._detect(
            [molded_images, np.asarray(image_metas), molded_targets,
             self._batch_anchors(shape)], molded_images, windows, [shape] * len(molded_images))

    def run_graph(self, images, outputs, image_metas=None, targets=None) -> OrderedDict:
        """Matterport's run_graph with the references as an extra input.

        images/targets: raw (molded here) unless image_metas is given, in which case both
        are taken as molded network inputs.
        """
        if targets is None:
            raise ValueError("run_graph needs targets (the references) for the Siamese model")
        return super().run_graph(images, outputs, image_metas=image_metas, targets=targets)

    def _run_graph_feed(self, images, image_metas, targets=None) -> tuple[list, list]:
        molded_references = (mold_references(targets, self.config) if image_metas is None
                             else np.asarray(targets))
        inputs, model_in = super()._run_graph_feed(images, image_metas)
        model = self.inner_model
        # [image, meta, references, (anchors)]: the references follow the meta.
        model_in.insert(2, molded_references)
        return (model.inputs if self.mode == "inference" else model.inputs[:3]), model_in

    # --------------------------------------------------------------- training
    def make_data_generator(self, dataset, shuffle: bool = True, augmentation=None,
                            no_augmentation_sources=None, steps: int | None = None,
                            batch_size: int | None = None, seed: int | None = None):
        """The Siamese training data: a PyDataset of (query, references, targets)
        batches, ``steps`` batches per epoch (no_augmentation_sources is not used).
        batch_size and seed as in MaskRCNN.make_data_generator.
        """
        from siamese_mrcnn.data import SiameseDataGenerator

        random_rois = 0 if self.config.USE_RPN_ROIS else self.config.POST_NMS_ROIS_TRAINING
        return SiameseDataGenerator(dataset, self.config, shuffle=shuffle,
                                    augmentation=augmentation, steps_per_epoch=steps,
                                    batch_size=batch_size, seed=seed,
                                    random_rois=random_rois)

    def train_schedule(self, train_dataset, val_dataset, schedule: Mapping[int, dict],
                       augmentation=None, until: int | None = None) -> None:
        """Runs a paper schedule ``{end_epoch: {"learning_rate", "layers"}}`` from
        self.epoch on, stage after stage, up to ``until`` (default: the last stage).

        A model resumed with load_checkpoint/load_latest_checkpoint continues inside the
        stage its epoch belongs to.
        """
        schedule = check_schedule(schedule)  # {int end epoch: stage}
        until = until if until is not None else max(schedule)
        for params in schedule.values():  # a later stage's typo, told before the first
            check_layer_regex(self.keras_model, self.layer_regex(params["layers"]),
                              params["layers"], self.LAYER_REGEX)
        for end in sorted(schedule):
            params = schedule[end]
            if self.epoch >= min(end, until):
                continue
            self.train(train_dataset, val_dataset, learning_rate=params["learning_rate"],
                       epochs=min(end, until), layers=params["layers"],
                       augmentation=augmentation)
            if self.epoch >= until:
                break

    # ------------------------------------------------------------ checkpoints
    def saved_model_writer(self) -> Callable[[object, str], str]:
        """export()'s writer here is siamese_mrcnn.export's export_siamese: signatures
        serving_default, encode_reference and detect_with_reference, on raw images."""
        from siamese_mrcnn.export import export_siamese

        return export_siamese

    def get_latest_checkpoint(self) -> str:
        """The checkpoint of this run with the highest epoch number (a plain str;
        find_last() gives the same path, also readable as 2.1's (log_dir, path))."""
        return str(self.find_last())

    def load_weights(self, filepath: str, by_name: bool = True,
                     exclude: Sequence[str] | None = None, skip_mismatch: bool = False):
        """Loads by layer and weight name (released checkpoints, ImageNet ResNets, ours)."""
        return super().load_weights(filepath, by_name=by_name, exclude=exclude,
                                    skip_mismatch=skip_mismatch)

    def imagenet_weights_dirs(self) -> list[str]:
        """The paper's backbones are read from config.CHECKPOINT_DIR."""
        return [self.config.CHECKPOINT_DIR]

    def load_imagenet_weights(self, pretraining: str = "imagenet-1k",
                              weights_path: str | None = None):
        """Initialises the backbone from an ImageNet ResNet-50 file (flat or nested)."""
        weights_path = weights_path or self.get_imagenet_weights(pretraining)
        if not os.path.isfile(weights_path):
            raise FileNotFoundError(
                f"ImageNet weights not found: {weights_path}. Weights are never downloaded: "
                f"place the file there or pass weights_path.")
        logger.info("Initializing from ImageNet weights %s", weights_path)
        report = self.load_weights(weights_path, by_name=True)
        self.set_log_dir()
        return report

    def load_checkpoint(self, weights_path: str, training_schedule: Mapping | None = None,
                        verbose: int = 1):
        """Loads a siamese_mrcnn_####.h5 checkpoint and resumes at its epoch; with a
        schedule, the layers of the epoch's stage are made trainable.
        """
        epoch = epoch_in_name(weights_path)
        if epoch is None:
            raise ValueError(f"expected a checkpoint whose name ends in its epoch, _####.h5 "
                             f"(e.g. siamese_mrcnn_0160.h5), got {weights_path!r}")
        if verbose:
            logger.info("Loading %s (epoch %d)", weights_path, epoch)
        if training_schedule is not None:
            _, params = schedule_stage(training_schedule, epoch)
            self.set_trainable(self.layer_regex(params["layers"]), verbose=0)
        else:
            self.set_trainable(".*", verbose=0)
        report = super().load_weights(weights_path, by_name=True)
        self.epoch = epoch
        return report

    def load_latest_checkpoint(self, training_schedule: Mapping | None = None):
        """Resumes from the latest checkpoint of this run (see get_latest_checkpoint)."""
        return self.load_checkpoint(self.get_latest_checkpoint(), training_schedule)


__all__ = ["SiameseMaskRCNN", "LAYER_REGEX", "schedule_stage", "siamese_mrcnn_class_loss_graph"]
