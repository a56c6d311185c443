"""Training data for Mask R-CNN: ground truth loading and batching (image meta and
molding are in mrcnn.molding, re-exported here under their old import path).

Ported from Matterport Mask R-CNN 2.1 (mrcnn/model.py, "Data Generator" and
"Data Formatting" sections) with these project changes:

- `DataGenerator` is a `keras.utils.PyDataset` (Keras 3 has no `fit_generator`).
  `model.fit(DataGenerator(...))` gets `(inputs,)` batches, or
  `(inputs, outputs)` when detection targets are requested.
- inputs and outputs are tuples, not lists: Keras 3 on TensorFlow builds a
  tf.data signature from the batch structure and rejects lists in it.
- A sample that fails to load (unreadable image, corrupt annotation, no
  instances) is logged with its image id and replaced by the next image id of
  the epoch order; `config.MAX_CONSECUTIVE_FAILURES` failures in a row raise a
  RuntimeError. Matterport re-raised after 5 failures in total.
- Batched ground truth masks are uint8 (0/1), not bool: MirroredStrategy cannot
  reduce boolean inputs. The model casts them back to bool.
- Batched image meta and RPN box deltas are float32 (Matterport: float64).
- unmold_image() rounds instead of truncating (exact round trip of float32).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import keras
import numpy as np

from mrcnn import compat, utils
from mrcnn.backbone import compute_backbone_shapes
from mrcnn.compat import MASK_AUGMENTERS  # noqa: F401 - Matterport's name, re-exported
from mrcnn.molding import (check_image, compose_image_meta, mold_image,  # noqa: F401
                           parse_image_meta, parse_image_meta_graph, unmold_image)
from mrcnn.sample_random import numpy_random, python_random, seeded_global_random
from mrcnn.targets import build_detection_targets, build_rpn_targets, generate_random_rois

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONSECUTIVE_FAILURES = 10


############################################################
#  Ground truth of one image
############################################################

def _augment(image: np.ndarray, mask: np.ndarray,
             augmentation: Any) -> tuple[np.ndarray, np.ndarray]:
    """Applies the same random imgaug draw to the image and (mask-safe part) to the masks.

    Only augmenters named in MASK_AUGMENTERS act on the masks; some of those
    (e.g. Affine) have settings that are unsafe for masks: test yours.
    """
    image_shape, mask_shape = image.shape, mask.shape
    # Deterministic copy, so the image and the masks get the same random draw.
    det = augmentation.to_deterministic()
    image = det.augment_image(image)
    # imgaug does not support bool arrays.
    mask = det.augment_image(mask.astype(np.uint8), hooks=compat.mask_hook())
    if image.shape != image_shape:
        raise ValueError(f"augmentation must keep the image shape: expected {image_shape}, "
                         f"got {image.shape}")
    if mask.shape != mask_shape:
        raise ValueError(f"augmentation must keep the mask shape: expected {mask_shape}, "
                         f"got {mask.shape}")
    return image, mask.astype(bool)


def _check_annotation(image: np.ndarray, mask: np.ndarray, class_ids: np.ndarray,
                      num_classes: int) -> None:
    """Raises ValueError when load_mask() does not describe the image."""
    if mask.ndim != 3 or mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask: expected shape {image.shape[:2] + ('N',)} matching the "
                         f"image, got {mask.shape}")
    if class_ids.shape != (mask.shape[2],):
        raise ValueError(f"class_ids: expected shape ({mask.shape[2]},) (one per mask), "
                         f"got {class_ids.shape}")
    # An id past the classes trained silently as a wrong target.
    unknown = sorted({int(c) for c in class_ids if abs(c) >= num_classes})
    if unknown:
        raise ValueError(
            f"class_ids: expected the data set's internal ids, below num_classes "
            f"({num_classes}; negative for crowds), got {unknown[:5]}: load_mask returns "
            f"internal ids (dataset.map_source_class_id)")


def check_dataset(dataset: Any, config: Any) -> None:
    """Raises ValueError unless `dataset` is prepared, has images and as many classes as
    config.NUM_CLASSES (whose image metas the model's inputs are built for)."""
    image_ids = np.asarray(getattr(dataset, "image_ids", []))
    if not hasattr(dataset, "num_classes") or image_ids.size == 0:
        raise ValueError(f"dataset: expected at least one image, got {image_ids.size} "
                         "(was dataset.prepare() called?)")
    # A duck-typed data set without Matterport's lists is not compared.
    if all(hasattr(dataset, name) for name in ("num_images", "image_info", "class_info")):
        seen = (dataset.num_images, dataset.num_classes)
        now = (len(dataset.image_info), len(dataset.class_info))
        if seen != now:
            # The ids are prepare()'s: later images are never drawn, later classes unknown.
            raise ValueError(f"dataset: {now[0]} images and {now[1]} classes, but prepare() "
                             f"saw {seen[0]} and {seen[1]}: call dataset.prepare() again "
                             "after adding images or classes")
    if dataset.num_classes != config.NUM_CLASSES:
        raise ValueError(
            f"dataset: has {dataset.num_classes} classes (background and "
            f"{dataset.num_classes - 1} added: {list(dataset.class_names[1:4])}"
            f"{' ...' if dataset.num_classes > 4 else ''}), but config.NUM_CLASSES is "
            f"{config.NUM_CLASSES}: set NUM_CLASSES = {dataset.num_classes} in the Config")


def load_image_gt(dataset: Any, config: Any, image_id: int, augment: bool = False,
                  augmentation: Any = None, use_mini_mask: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Loads, resizes and optionally augments one image and its ground truth.

    augment: deprecated (use augmentation): random horizontal flip.
    augmentation: optional imgaug augmenter; only MASK_AUGMENTERS act on masks.
    use_mini_mask: return masks of config.MINI_MASK_SHAPE cropped to each box
        instead of full image size.

    Returns:
    image: [H, W, 3] resized (and padded) image, dtype of the source image.
    image_meta: [12 + NUM_CLASSES] see compose_image_meta().
    class_ids: [instance_count] int32 class ids (negative for crowds).
    bbox: [instance_count, (y1, x1, y2, x2)] int32, from the final masks.
    mask: [H, W, instance_count] bool, or [MINI_H, MINI_W, instance_count].
    """
    image = dataset.load_image(image_id)
    if config.IMAGE_CHANNEL_COUNT == 3:
        image = check_image(image, name=f"image {image_id}")
    mask, class_ids = dataset.load_mask(image_id)
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids, dtype=np.int32)
    _check_annotation(image, mask, class_ids, dataset.num_classes)
    original_shape = image.shape
    image, window, scale, padding, crop = utils.resize_image(
        image,
        min_dim=config.IMAGE_MIN_DIM,
        min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM,
        mode=config.IMAGE_RESIZE_MODE)
    mask = utils.resize_mask(mask, scale, padding, crop).astype(bool)

    if augment:
        logger.warning("'augment' is deprecated. Use 'augmentation' instead.")
        if python_random().randint(0, 1):
            image = np.fliplr(image)
            mask = np.fliplr(mask)

    if augmentation:
        image, mask = _augment(image, mask, augmentation)

    # Instances whose mask was cropped away (resize crop or augmentation) would
    # give all-zero boxes: drop them.
    keep = np.sum(mask, axis=(0, 1)) > 0
    mask = mask[:, :, keep]
    class_ids = class_ids[keep]
    bbox = utils.extract_bboxes(mask)  # [instance_count, (y1, x1, y2, x2)]

    # Different data sets have different classes: track the classes the data
    # set of this image supports.
    active_class_ids = np.zeros([dataset.num_classes], dtype=np.int32)
    source = dataset.image_info[image_id]["source"]
    active_class_ids[dataset.source_class_ids[source]] = 1

    if use_mini_mask:
        mask = utils.minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)

    image_meta = compose_image_meta(image_id, original_shape, image.shape,
                                    window, scale, active_class_ids)
    return image, image_meta, class_ids, bbox, mask


############################################################
#  Training samples and batches
############################################################

class TrainingSample(NamedTuple):
    """Everything the training graph needs from one image."""
    image: np.ndarray          # [H, W, 3] molded (float)
    image_meta: np.ndarray     # [12 + NUM_CLASSES]
    rpn_match: np.ndarray      # [num_anchors] int32: 1 positive, -1 negative, 0 neutral
    rpn_bbox: np.ndarray       # [RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))]
    gt_class_ids: np.ndarray   # [n <= MAX_GT_INSTANCES] int32
    gt_boxes: np.ndarray       # [n, (y1, x1, y2, x2)] int32
    gt_masks: np.ndarray       # [H, W, n] or [MINI_H, MINI_W, n] bool
    rpn_rois: Optional[np.ndarray] = None        # [random_rois, (y1, x1, y2, x2)]
    detection_targets: Optional[tuple] = None    # (rois, class_ids, bbox, mask)


def generate_anchors_for_config(config: Any) -> np.ndarray:
    """Anchors in pixels for config.IMAGE_SHAPE: [anchor_count, (y1, x1, y2, x2)]."""
    backbone_shapes = compute_backbone_shapes(config, config.IMAGE_SHAPE)
    return utils.generate_pyramid_anchors(config.RPN_ANCHOR_SCALES,
                                          config.RPN_ANCHOR_RATIOS,
                                          backbone_shapes,
                                          config.BACKBONE_STRIDES,
                                          config.RPN_ANCHOR_STRIDE)


def load_training_sample(dataset: Any, config: Any, image_id: int, anchors: np.ndarray,
                         augmentation: Any = None, augment: bool = False,
                         random_rois: int = 0,
                         detection_targets: bool = False) -> TrainingSample:
    """Ground truth, RPN targets and (optionally) ROI targets for one image.

    Raises ValueError when the image has no (non-crowd) instance: the RPN and
    detection targets are undefined for it.
    """
    image, image_meta, gt_class_ids, gt_boxes, gt_masks = load_image_gt(
        dataset, config, image_id, augment=augment, augmentation=augmentation,
        use_mini_mask=config.USE_MINI_MASK)
    # Happens e.g. when training on a subset of classes.
    if not np.any(gt_class_ids > 0):
        raise ValueError(f"image {image_id} has no instances: expected at least one "
                         f"positive class id, got {gt_class_ids.tolist()}")

    rpn_match, rpn_bbox = build_rpn_targets(image.shape, anchors, gt_class_ids,
                                            gt_boxes, config)
    rpn_rois = targets = None
    if random_rois:
        rpn_rois = generate_random_rois(image.shape, random_rois, gt_class_ids, gt_boxes)
        if detection_targets:
            targets = build_detection_targets(rpn_rois, gt_class_ids, gt_boxes,
                                              gt_masks, config)

    # More instances than fit in the batch arrays: keep a random subset.
    if gt_boxes.shape[0] > config.MAX_GT_INSTANCES:
        ids = numpy_random().choice(np.arange(gt_boxes.shape[0]), config.MAX_GT_INSTANCES,
                                    replace=False)
        gt_class_ids = gt_class_ids[ids]
        gt_boxes = gt_boxes[ids]
        gt_masks = gt_masks[:, :, ids]

    return TrainingSample(mold_image(image, config), image_meta, rpn_match, rpn_bbox,
                          gt_class_ids, gt_boxes, gt_masks, rpn_rois, targets)


def stack_training_inputs(samples: Sequence[Any], config: Any,
                          mask_dtype: Any = np.uint8) -> list[np.ndarray]:
    """The per-image inputs every training graph takes, stacked over samples.

    samples: objects with TrainingSample's image, image_meta, rpn_match, rpn_bbox,
    gt_class_ids, gt_boxes and gt_masks fields (the Siamese samples too).
    Returns [images [B, H, W, 3] float32, image_meta [B, META] float32,
    rpn_match [B, anchors, 1] int32, rpn_bbox [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4]
    float32, gt_class_ids [B, MAX_GT_INSTANCES] int32, gt_boxes
    [B, MAX_GT_INSTANCES, 4] int32, gt_masks [B, h, w, MAX_GT_INSTANCES] mask_dtype];
    the ground truth is zero padded to MAX_GT_INSTANCES. The graph's mask input is
    uint8 (boolean inputs break tf.distribute's first cross-replica reduce);
    Matterport's Python generator yields bool (mask_dtype=bool), which fit casts.
    """
    batch_size = len(samples)
    max_gt = config.MAX_GT_INSTANCES
    mask_hw = samples[0].gt_masks.shape[:2]
    gt_class_ids = np.zeros((batch_size, max_gt), dtype=np.int32)
    gt_boxes = np.zeros((batch_size, max_gt, 4), dtype=np.int32)
    gt_masks = np.zeros((batch_size,) + mask_hw + (max_gt,), dtype=mask_dtype)
    for b, sample in enumerate(samples):
        n = sample.gt_class_ids.shape[0]
        gt_class_ids[b, :n] = sample.gt_class_ids
        gt_boxes[b, :n] = sample.gt_boxes
        gt_masks[b, :, :, :n] = sample.gt_masks

    return [
        np.stack([s.image for s in samples]).astype(np.float32),
        np.stack([s.image_meta for s in samples]).astype(np.float32),
        np.stack([s.rpn_match for s in samples])[:, :, np.newaxis].astype(np.int32),
        np.stack([s.rpn_bbox for s in samples]).astype(np.float32),
        gt_class_ids, gt_boxes, gt_masks,
    ]


def assemble_batch(samples: Sequence[TrainingSample], config: Any, mask_dtype: Any = np.uint8
                   ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Stacks samples into Matterport's model inputs and (optional) outputs.

    inputs: the arrays of stack_training_inputs() (images, image_meta, rpn_match,
    rpn_bbox, gt_class_ids, gt_boxes, gt_masks); then rpn_rois [B, R, 4] when
    random ROIs were drawn and rois [B, ROIS, 4] with detection targets.
    outputs: with detection targets, class ids [B, ROIS, 1], bbox deltas
    [B, ROIS, NUM_CLASSES, 4] and masks [B, ROIS, mh, mw, NUM_CLASSES]; else empty.
    Both are tuples (Keras 3 rejects lists in a batch structure).
    """
    first = samples[0]
    inputs = stack_training_inputs(samples, config, mask_dtype=mask_dtype)
    outputs = []
    if first.rpn_rois is not None:
        inputs.append(np.stack([s.rpn_rois for s in samples]))
        if first.detection_targets is not None:
            rois, class_ids, bbox, mask = (np.stack(parts) for parts in
                                           zip(*(s.detection_targets for s in samples)))
            inputs.append(rois)
            # Keras wants outputs and targets of the same rank.
            outputs = [class_ids[:, :, np.newaxis], bbox, mask]
    return tuple(inputs), tuple(outputs)


def max_consecutive_failures(config: Any) -> int:
    """config.MAX_CONSECUTIVE_FAILURES, or the default for configs without the field."""
    return int(getattr(config, "MAX_CONSECUTIVE_FAILURES", DEFAULT_MAX_CONSECUTIVE_FAILURES))


def pydataset_workers(config: Any, workers: Optional[int] = None,
                      use_multiprocessing: Optional[bool] = None) -> dict[str, Any]:
    """keras.utils.PyDataset's workers / use_multiprocessing for a data generator.

    workers / use_multiprocessing default to config.WORKERS (0 = load in the calling
    thread) and config.USE_MULTIPROCESSING. Raises ValueError for workers < 0.
    """
    workers = int(getattr(config, "WORKERS", 0) if workers is None else workers)
    if use_multiprocessing is None:
        use_multiprocessing = bool(getattr(config, "USE_MULTIPROCESSING", False))
    if workers < 0:
        raise ValueError(f"workers: expected an int >= 0, got {workers}")
    # Keras loads in the calling thread for workers <= 1 without multiprocessing.
    return {"workers": max(workers, 1),
            "use_multiprocessing": use_multiprocessing and workers > 0}


def load_batch(load: Callable[[int], TrainingSample], next_image_id: Callable[[], int],
               batch_size: int, max_failures: int) -> list[TrainingSample]:
    """Loads batch_size samples, skipping image ids that fail to load.

    load: image id -> TrainingSample; raises on a bad sample.
    next_image_id: the next image id of the epoch order (called once per attempt).
    Raises RuntimeError after max_failures failures in a row.
    """
    samples = []
    failures = 0
    while len(samples) < batch_size:
        image_id = next_image_id()
        try:
            samples.append(load(image_id))
            failures = 0
        except Exception as error:  # noqa: BLE001 - any bad sample is skipped
            failures += 1
            logger.warning("Skipping image id %s (%d consecutive failures): %s: %s",
                           image_id, failures, type(error).__name__, error)
            if failures >= max_failures:
                raise RuntimeError(
                    f"{failures} consecutive samples failed to load; last image id "
                    f"{image_id}: {type(error).__name__}: {error}") from error
    return samples


class _SampleLoader:
    """Callable image id -> TrainingSample with fixed data settings."""

    def __init__(self, dataset: Any, config: Any, augmentation: Any = None,
                 augment: bool = False, random_rois: int = 0,
                 detection_targets: bool = False,
                 no_augmentation_sources: Optional[Sequence[str]] = None):
        check_dataset(dataset, config)
        self.dataset = dataset
        self.config = config
        self.augmentation = augmentation
        self.augment = augment
        self.random_rois = random_rois
        self.detection_targets = detection_targets
        self.no_augmentation_sources = list(no_augmentation_sources or [])
        self.anchors = generate_anchors_for_config(config)  # [anchors, (y1, x1, y2, x2)]

    def __call__(self, image_id: int) -> TrainingSample:
        source = self.dataset.image_info[image_id]["source"]
        augmentation = (None if source in self.no_augmentation_sources
                        else self.augmentation)
        return load_training_sample(self.dataset, self.config, image_id, self.anchors,
                                    augmentation=augmentation, augment=self.augment,
                                    random_rois=self.random_rois,
                                    detection_targets=self.detection_targets)


def data_generator(dataset: Any, config: Any, shuffle: bool = True, augment: bool = False,
                   augmentation: Any = None, random_rois: int = 0, batch_size: int = 1,
                   detection_targets: bool = False,
                   no_augmentation_sources: Optional[Sequence[str]] = None
                   ) -> Iterator[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]]:
    """Matterport's infinite Python generator of (inputs, outputs) batches.

    Kept for API compatibility (inspection notebooks, custom loops); train with
    DataGenerator. Shuffles with np.random at the start of every epoch.
    Keras 3 fit accepts its `(inputs, ())` items. See assemble_batch() for the
    arrays; gt_masks are bool, as Matterport's (DataGenerator's are uint8).
    """
    loader = _SampleLoader(dataset, config, augmentation=augmentation, augment=augment,
                           random_rois=random_rois, detection_targets=detection_targets,
                           no_augmentation_sources=no_augmentation_sources)
    image_ids = np.copy(dataset.image_ids)
    position = -1

    def next_image_id() -> int:
        nonlocal position
        position = (position + 1) % len(image_ids)
        if shuffle and position == 0:
            np.random.shuffle(image_ids)
        return int(image_ids[position])

    while True:
        samples = load_batch(loader, next_image_id, batch_size, max_consecutive_failures(config))
        yield assemble_batch(samples, config, mask_dtype=bool)


class DataGenerator(keras.utils.PyDataset):
    """Keras PyDataset of Mask R-CNN training batches (config.BATCH_SIZE images).

    The image ids form an endless stream of permutations of dataset.image_ids
    (one permutation per pass, drawn from `seed`; identity when shuffle is
    False). Batch idx of an epoch takes the next BATCH_SIZE ids of the stream
    from the epoch's start; a sample that fails to load is replaced by the
    next id of the stream (see load_batch()). An epoch is one pass over the
    data (len = ceil(images / BATCH_SIZE); the last batch is completed from
    the next pass) or, with steps_per_epoch, that many batches, the next epoch
    continuing where this one stopped. The epoch is ``self.epoch``, which
    on_epoch_end() advances; Keras' fit() calls that once before its first epoch
    too, so MaskRCNN.train sets it to fit's epoch (training.FollowFitEpoch).
    Each sample's random content (RPN anchor subsampling, augmentation draws) is
    seeded by (seed, its stream position) (mrcnn.sample_random), so the batches
    are a pure function of the seed, in any worker thread or process (see
    batch_at()).

    Each item is `(inputs,)`, or `(inputs, outputs)` with detection_targets;
    see assemble_batch(). Note that fit(shuffle=True), the default, also
    permutes the batch indices of an epoch with Python's `random`
    (MaskRCNN.train passes shuffle=False: the stream is shuffled already).

    workers / use_multiprocessing default to config.WORKERS (0 = load in the
    calling thread) and config.USE_MULTIPROCESSING. With workers, an exception
    of __getitem__ (such as the RuntimeError of too many bad samples) reaches
    the caller of fit(); on the TensorFlow backend it arrives wrapped in a
    tf.errors.UnknownError that carries the original message.
    """

    def __init__(self, dataset: Any, config: Any, shuffle: bool = True,
                 augmentation: Any = None, random_rois: int = 0,
                 detection_targets: bool = False,
                 no_augmentation_sources: Optional[Sequence[str]] = None,
                 workers: Optional[int] = None, use_multiprocessing: Optional[bool] = None,
                 max_queue_size: int = 10, seed: Optional[int] = None,
                 steps_per_epoch: Optional[int] = None, batch_size: Optional[int] = None):
        loading = pydataset_workers(config, workers, use_multiprocessing)
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch: expected None or an int >= 1, "
                             f"got {steps_per_epoch}")
        super().__init__(max_queue_size=max_queue_size, **loading)
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        # The loader checks the data set first (check_dataset).
        self._loader = _SampleLoader(dataset, config, augmentation=augmentation,
                                     random_rois=random_rois,
                                     detection_targets=detection_targets,
                                     no_augmentation_sources=no_augmentation_sources)
        self.image_ids = np.asarray(dataset.image_ids)
        self.batch_size = int(config.BATCH_SIZE if batch_size is None else batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {self.batch_size}")
        self.steps_per_epoch = steps_per_epoch
        self.max_failures = max_consecutive_failures(config)
        # Without a seed, draw one: permutations are still a pure function of it.
        self.seed = int(np.random.SeedSequence(seed).entropy)
        self.epoch = 0
        self._permutations: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return math.ceil(len(self.image_ids) / self.batch_size)

    def epoch_start(self, epoch: int) -> int:
        """Position in the image id stream where `epoch` starts."""
        if self.steps_per_epoch is not None:
            return epoch * self.steps_per_epoch * self.batch_size
        return epoch * len(self.image_ids)

    def image_id_at(self, position: int) -> int:
        """The image id at `position` of the stream of permutations."""
        permutation, index = divmod(position, len(self.image_ids))
        return int(self._permutation(permutation)[index])

    def _permutation(self, k: int) -> np.ndarray:
        """Pass k over the data; cached (a race only recomputes the same array)."""
        order = self._permutations.get(k)
        if order is None:
            if self.shuffle:
                order = np.random.default_rng([self.seed, k]).permutation(self.image_ids)
            else:
                order = self.image_ids
            if len(self._permutations) > 4:
                self._permutations = {}
            self._permutations[k] = order
        return order

    def __getitem__(self, idx: int) -> tuple:
        if not 0 <= idx < len(self):
            raise IndexError(f"batch index: expected 0 <= idx < {len(self)}, got {idx}")
        # on_epoch_end() may advance the epoch from another thread: read it once.
        return self.batch_at(self.epoch, idx * self.batch_size, self.batch_size)

    def batch_at(self, epoch: int, index: int, size: int) -> tuple:
        """The ``size`` samples from position ``index`` of ``epoch``, as __getitem__
        returns them (batch idx is batch_at(epoch, idx * batch_size, batch_size)).

        Each sample draws its random content from generators seeded by (seed, its
        stream position) (mrcnn.sample_random.seeded_global_random): the same sample
        whichever process, worker, thread or batch loads it. Multi-worker training
        loads each worker's share this way.
        """
        position = self.epoch_start(epoch) + index - 1

        def next_image_id() -> int:
            nonlocal position
            position += 1
            return self.image_id_at(position)

        def load(image_id: int) -> TrainingSample:
            seed = np.random.SeedSequence([self.seed, position]).generate_state(1)[0]
            with seeded_global_random(int(seed)):
                return self.load_sample(image_id)

        samples = load_batch(load, next_image_id, size, self.max_failures)
        inputs, outputs = assemble_batch(samples, self.config)
        return (inputs, outputs) if outputs else (inputs,)

    def load_sample(self, image_id: int) -> TrainingSample:
        """One image's training sample (override to change what a sample holds)."""
        return self._loader(image_id)

    def on_epoch_end(self) -> None:
        self.epoch += 1
