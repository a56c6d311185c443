"""Training data for Siamese Mask R-CNN: reference drawing and the batch generator.

A training sample (paper §4, the old ``siamese_data_generator``): pick one
active category present in the query at random, keep only that category's
ground truth (relabelled 1; its crowds stay negative, -1), build the RPN
targets from it and draw NUM_TARGETS references of the category.

Differences from the old code:

- References come from another image than the query when one exists (the
  paper's protocol); ``allow_same_image=True`` restores the old behaviour.
- Crowds of the chosen category are kept as -1 (the old code dropped them), so
  that proposals on a crowd are not trained as background.
- Batches are reproducible: each sample draws from a generator seeded by
  (seed, epoch, position), and Matterport's helpers (RPN anchor subsampling,
  augmentation) draw from generators seeded the same way for the duration of the
  sample (mrcnn.sample_random: other threads' draws do not shift them).
- A bad sample is logged with its image id and replaced by the next image;
  MAX_CONSECUTIVE_FAILURES failures in a row raise RuntimeError. Images
  without an active category are left out beforehand.
"""
from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple, Optional, Sequence

import keras
import numpy as np

from mrcnn import utils
from mrcnn.data import (assemble_batch, generate_anchors_for_config, load_image_gt,
                        max_consecutive_failures, pydataset_workers)
from mrcnn.molding import mold_image
from mrcnn.sample_random import numpy_random, seeded_global_random
from mrcnn.targets import build_detection_targets, build_rpn_targets, generate_random_rois

logger = logging.getLogger(__name__)

# Entries of Matterport's image meta before the active class ids.
_META_PREFIX = 12


class ReferenceNotFoundError(RuntimeError):
    """No usable reference instance was found for a category."""


class _NoActiveCategory(Exception):
    """The loaded query has no instance of an active category (skip, not a failure)."""


############################################################
#  References
############################################################

def _reference_candidates(category: int, dataset: Any, exclude_image_id: Optional[int],
                          allow_same_image: bool) -> np.ndarray:
    """Internal image ids to draw a reference of `category` from."""
    index = dataset.category_image_index
    if isinstance(category, bool) or not isinstance(category, (int, np.integer)) \
            or not 0 < category < len(index):
        raise ValueError("category: expected an internal class id in 1..{}, got {!r}".format(
            len(index) - 1, category))
    candidates = np.asarray(index[category], dtype=int)
    if exclude_image_id is not None and not allow_same_image:
        others = candidates[candidates != exclude_image_id]
        # The query itself is used only when no other image has the category.
        if others.size:
            candidates = others
    if candidates.size == 0:
        raise ReferenceNotFoundError(
            "category {}: no image has a non-crowd instance of it".format(category))
    return candidates


def get_one_target(category: int, dataset: Any, config: Any, augmentation: Any = None,
                   target_size_limit: int = 0, max_attempts: int = 10,
                   return_all: bool = False, return_original_size: bool = False,
                   exclude_image_id: Optional[int] = None, allow_same_image: bool = False,
                   rng: Any = None):
    """Draws one reference image of `category`.

    A random image with a non-crowd instance of the category (another than
    exclude_image_id when one exists, unless allow_same_image) is loaded with
    the query geometry (load_image_gt), one of its instances of the category is
    cropped by its box, resized with resize_image (min TARGET_MIN_DIM, max
    TARGET_MAX_DIM, "square" mode) and zero-padded to TARGET_MAX_DIM squared.

    target_size_limit: crops whose shorter side is below this are redrawn; if
        every attempt is too small, the last crop is used (old behaviour).
    max_attempts: draws before giving up; ReferenceNotFoundError when none of
        them had an instance of the category. An image that fails to load is
        logged and counts as a failed draw.
    rng: numpy Generator / RandomState for the draws (default: the sample's seeded
        generator inside mrcnn.sample_random.seeded_global_random, else np.random).

    Returns the reference [T, T, 3] (dtype of the image); with return_all
    (reference, window, scale, padding, crop) of resize_image; with
    return_original_size (reference, crop shape [h, w, 3]).
    """
    if max_attempts < 1:
        raise ValueError("max_attempts: expected an integer >= 1, got {!r}".format(max_attempts))
    rng = numpy_random() if rng is None else rng
    candidates = _reference_candidates(category, dataset, exclude_image_id, allow_same_image)
    crop, error = None, None
    for _ in range(max_attempts):
        image_id = int(rng.choice(candidates))
        try:
            image, _, class_ids, boxes, _ = load_image_gt(dataset, config, image_id,
                                                          augmentation=augmentation)
        except Exception as exc:  # noqa: BLE001 - a bad reference image is redrawn
            error = exc
            logger.warning("Reference image %d (category %d) failed to load: %s: %s",
                           image_id, category, type(exc).__name__, exc)
            continue
        instances = np.flatnonzero(class_ids == category)
        if instances.size == 0:
            # E.g. the instance was too small to survive resizing.
            logger.debug("Reference image %d lost its instances of category %d",
                         image_id, category)
            continue
        y1, x1, y2, x2 = boxes[int(rng.choice(instances))]
        crop = image[y1:y2, x1:x2]  # [h, w, 3]
        if min(crop.shape[:2]) >= target_size_limit:
            break
    if crop is None:
        last = "; last error: {}: {}".format(type(error).__name__, error) if error else ""
        raise ReferenceNotFoundError(
            "category {}: no instance found in {} attempts (images drawn from {}){}".format(
                category, max_attempts, candidates.tolist()[:10], last)) from error

    original_size = crop.shape
    # "square" whatever IMAGE_RESIZE_MODE is: references are always T x T.
    resized = utils.resize_image(crop, min_dim=config.TARGET_MIN_DIM,
                                 min_scale=config.IMAGE_MIN_SCALE,
                                 max_dim=config.TARGET_MAX_DIM, mode="square")
    reference = resized[0]  # [T, T, 3]
    if return_all:
        return resized
    if return_original_size:
        return reference, original_size
    return reference


############################################################
#  Training samples
############################################################

class SiameseSample(NamedTuple):
    """Everything the training graph needs from one query."""
    image: np.ndarray         # [S, S, 3] molded float32
    image_meta: np.ndarray    # [12 + NUM_CLASSES]
    references: np.ndarray    # [k, T, T, 3] molded float32
    rpn_match: np.ndarray     # [anchors] int32
    rpn_bbox: np.ndarray      # [RPN_TRAIN_ANCHORS_PER_IMAGE, 4]
    gt_class_ids: np.ndarray  # [n] int32: 1, or -1 for a crowd
    gt_boxes: np.ndarray      # [n, (y1, x1, y2, x2)] int32
    gt_masks: np.ndarray      # [h, w, n] bool (mini masks when USE_MINI_MASK)
    category: int             # internal class id the sample is about
    rpn_rois: Optional[np.ndarray] = None      # [random_rois, (y1, x1, y2, x2)] pixels
    detection_targets: Optional[tuple] = None  # (rois, class_ids, bbox, mask)


def active_classes_of(dataset: Any) -> np.ndarray:
    """The active internal class ids of a data set (all classes by default)."""
    if hasattr(dataset, "get_active_classes"):
        return np.asarray(dataset.get_active_classes(), dtype=int)
    active = getattr(dataset, "ACTIVE_CLASSES", None)
    if active is not None:
        return np.asarray(active, dtype=int)
    return np.arange(1, dataset.num_classes)


def eligible_image_ids(dataset: Any, active_classes: Sequence[int]) -> np.ndarray:
    """Internal ids of the images with a non-crowd instance of an active class."""
    if not getattr(dataset, "image_category_index", None):
        if not hasattr(dataset, "build_indices"):
            raise ValueError("dataset: expected an IndexedCocoDataset-like object with "
                             "image_category_index, got {}".format(type(dataset).__name__))
        dataset.build_indices()
    active = set(int(c) for c in active_classes)
    return np.array([image_id for image_id, categories
                     in enumerate(dataset.image_category_index)
                     if active.intersection(categories)], dtype=int)


def load_siamese_sample(dataset: Any, config: Any, image_id: int, anchors: np.ndarray,
                        active_classes: Sequence[int], rng: Any, augmentation: Any = None,
                        allow_same_image: bool = False, target_size_limit: int = 0,
                        random_rois: int = 0,
                        detection_targets: bool = False) -> SiameseSample:
    """Builds one training sample for query `image_id` (see the module doc).

    random_rois: > 0 draws that many random ROIs around the chosen category's boxes
        (Matterport's generate_random_rois), for training the heads without the RPN;
        detection_targets then adds their class / box / mask targets.
    Raises _NoActiveCategory when the loaded query has no active instance.
    """
    image, image_meta, gt_class_ids, gt_boxes, gt_masks = load_image_gt(
        dataset, config, image_id, augmentation=augmentation,
        use_mini_mask=config.USE_MINI_MASK)
    present = np.unique(gt_class_ids[gt_class_ids > 0])
    categories = np.intersect1d(present, np.asarray(active_classes, dtype=int))
    if categories.size == 0:
        raise _NoActiveCategory(image_id)
    category = int(rng.choice(categories))

    # Only the chosen category is an object here; its crowds stay crowds.
    keep = np.abs(gt_class_ids) == category
    class_ids = np.where(gt_class_ids[keep] > 0, 1, -1).astype(np.int32)  # [n]
    boxes = gt_boxes[keep]           # [n, 4]
    masks = gt_masks[:, :, keep]     # [h, w, n]
    rpn_match, rpn_bbox = build_rpn_targets(image.shape, anchors, class_ids, boxes, config)
    rpn_rois = roi_targets = None
    if random_rois:
        rpn_rois = generate_random_rois(image.shape, random_rois, class_ids, boxes)
        if detection_targets:
            roi_targets = build_detection_targets(rpn_rois, class_ids, boxes, masks, config)

    # More instances than fit in the batch arrays: keep a random subset.
    if boxes.shape[0] > config.MAX_GT_INSTANCES:
        ids = rng.choice(boxes.shape[0], config.MAX_GT_INSTANCES, replace=False)
        class_ids, boxes, masks = class_ids[ids], boxes[ids], masks[:, :, ids]

    exclude = None if allow_same_image else image_id
    references = [get_one_target(category, dataset, config, augmentation=augmentation,
                                 target_size_limit=target_size_limit,
                                 exclude_image_id=exclude, allow_same_image=allow_same_image,
                                 rng=rng)
                  for _ in range(config.NUM_TARGETS)]
    molded_references = np.stack([mold_image(r.astype(np.float32), config)
                                  for r in references])

    # Both Siamese classes (background, match) are always active.
    meta = np.concatenate([image_meta[:_META_PREFIX], np.ones(config.NUM_CLASSES)])
    return SiameseSample(mold_image(image.astype(np.float32), config), meta,
                         molded_references,
                         rpn_match, rpn_bbox, class_ids, boxes, masks, category,
                         rpn_rois, roi_targets)


def siamese_batch(samples: Sequence[SiameseSample], config: Any, mask_dtype: Any = np.uint8
                  ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(inputs, outputs) of a batch: Mask R-CNN's (mrcnn.data.assemble_batch) with the
    references [B, k, T, T, 3] float32 after the image meta.

    outputs is empty unless the samples carry detection targets.
    """
    inputs, outputs = assemble_batch(samples, config, mask_dtype=mask_dtype)
    references = np.stack([s.references for s in samples]).astype(np.float32)
    return inputs[:2] + (references,) + inputs[2:], outputs


def assemble_siamese_batch(samples: Sequence[SiameseSample], config: Any) -> list:
    """Stacks samples into the model inputs: Mask R-CNN's, the references after the meta.

    In this order (see mrcnn.data.stack_training_inputs):

    images [B, S, S, 3] float32, image_meta [B, 12 + NUM_CLASSES] float32,
    targets [B, k, T, T, 3] float32, rpn_match [B, anchors, 1] int32,
    rpn_bbox [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32,
    gt_class_ids [B, MAX_GT_INSTANCES] int32, gt_boxes [B, MAX_GT_INSTANCES, 4]
    int32, gt_masks [B, h, w, MAX_GT_INSTANCES] uint8 (zero padded); then, with
    random ROIs, rpn_rois [B, R, 4] and, with detection targets, rois [B, ROIS, 4].
    """
    return list(siamese_batch(samples, config)[0])


############################################################
#  Generator
############################################################

class SiameseDataGenerator(keras.utils.PyDataset):
    """Keras PyDataset of Siamese training batches; each item is ``(inputs,)``, or
    ``(inputs, outputs)`` with detection_targets (see siamese_batch()).

    It is also the old generator: ``next(g)`` returns the next batch as two lists
    ``(inputs, outputs)`` with bool gt_masks, endlessly, epoch after epoch.

    dataset: an IndexedCocoDataset (prepared); its active classes choose the
        categories of the samples.
    batch_size: default config.BATCH_SIZE.
    seed: makes the batches reproducible (default: drawn from np.random).
    allow_same_image: let the reference come from the query image itself.
    steps_per_epoch: batches per epoch (default: one pass over the eligible
        images, ceil(images / batch_size)).
    workers / use_multiprocessing: default config.WORKERS (0 = load in the
        calling thread) and config.USE_MULTIPROCESSING.
    random_rois / detection_targets: see load_siamese_sample() (Matterport's
        options for training the heads on random ROIs, config.USE_RPN_ROIS False).

    Batch idx of an epoch takes the images at positions idx * batch_size, ...
    of the epoch's sequence of passes over the eligible images (each pass
    shuffled anew when shuffle); a failed sample is replaced by the next
    position. The content of a batch depends only on (seed, epoch, idx).
    """

    def __init__(self, dataset: Any, config: Any, shuffle: bool = True,
                 augmentation: Any = None, batch_size: Optional[int] = None,
                 allow_same_image: bool = False, target_size_limit: int = 0,
                 seed: Optional[int] = None, steps_per_epoch: Optional[int] = None,
                 workers: Optional[int] = None, use_multiprocessing: Optional[bool] = None,
                 max_queue_size: int = 10, random_rois: int = 0,
                 detection_targets: bool = False):
        super().__init__(max_queue_size=max_queue_size,
                         **pydataset_workers(config, workers, use_multiprocessing))
        if isinstance(random_rois, bool) or int(random_rois) != random_rois \
                or random_rois < 0:
            raise ValueError("random_rois: expected an integer >= 0, got {!r}".format(
                random_rois))
        self.random_rois = int(random_rois)
        self.detection_targets = bool(detection_targets)
        self._next_index = 0
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.allow_same_image = allow_same_image
        self.target_size_limit = target_size_limit
        self.batch_size = int(config.BATCH_SIZE if batch_size is None else batch_size)
        if self.batch_size < 1:
            raise ValueError("batch_size: expected an integer >= 1, got {}".format(
                self.batch_size))
        self.max_failures = max_consecutive_failures(config)
        self.active_classes = active_classes_of(dataset)
        self.image_ids = eligible_image_ids(dataset, self.active_classes)
        if self.image_ids.size == 0:
            raise ValueError("dataset: expected at least one image with an instance of an "
                             "active class {}, got none".format(self.active_classes.tolist()))
        if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool)
                                            or int(steps_per_epoch) != steps_per_epoch
                                            or steps_per_epoch < 1):
            raise ValueError("steps_per_epoch: expected None or an integer >= 1, got "
                             "{!r}".format(steps_per_epoch))
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        self.anchors = generate_anchors_for_config(config)  # [anchors, (y1, x1, y2, x2)]
        self.seed = int(np.random.randint(2 ** 31 - 1) if seed is None else seed)
        self.epoch = 0

    def __len__(self) -> int:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return math.ceil(len(self.image_ids) / self.batch_size)

    def epoch_order(self, epoch: int, cycle: int = 0) -> np.ndarray:
        """Image ids in the order of pass `cycle` over the data in an epoch."""
        if not self.shuffle:
            return self.image_ids.copy()
        return np.random.default_rng([self.seed, epoch, cycle]).permutation(self.image_ids)

    def __getitem__(self, idx: int) -> tuple:
        if not 0 <= idx < len(self):
            raise IndexError("batch index: expected 0 <= idx < {}, got {}".format(
                len(self), idx))
        # Keras 3 rejects lists in a batch structure: tuples.
        inputs, outputs = self._batch(idx, np.uint8)
        return (inputs, outputs) if outputs else (inputs,)

    def __next__(self) -> tuple[list, list]:
        """The old generator's protocol: the next batch as ``(inputs, outputs)`` lists
        (outputs empty unless detection_targets), gt_masks bool; after the last
        batch of an epoch, on_epoch_end() and the next epoch."""
        if self._next_index >= len(self):
            self.on_epoch_end()
            self._next_index = 0
        inputs, outputs = self._batch(self._next_index, bool)
        self._next_index += 1
        return list(inputs), list(outputs)

    def _batch(self, idx: int, mask_dtype: Any) -> tuple[tuple, tuple]:
        samples = self._load_samples(self.epoch, idx * self.batch_size, self.batch_size)
        return siamese_batch(samples, self.config, mask_dtype=mask_dtype)

    def batch_at(self, epoch: int, index: int, size: int) -> tuple:
        """The ``size`` samples from position ``index`` of ``epoch``, as __getitem__
        returns them (batch idx is batch_at(epoch, idx * batch_size, batch_size)).
        Multi-worker training loads each worker's share of a batch this way."""
        samples = self._load_samples(epoch, index, size)
        inputs, outputs = siamese_batch(samples, self.config, mask_dtype=np.uint8)
        return (inputs, outputs) if outputs else (inputs,)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _load_samples(self, epoch: int, position: int, size: int) -> list:
        """``size`` samples from `position` on, skipping unusable images."""
        samples, failures, skipped = [], 0, 0
        count, orders = len(self.image_ids), {}
        while len(samples) < size:
            cycle = position // count
            if cycle not in orders:
                orders[cycle] = self.epoch_order(epoch, cycle)
            image_id = int(orders[cycle][position % count])
            seed = int(np.random.SeedSequence([self.seed, epoch, position]).generate_state(1)[0])
            position += 1
            try:
                samples.append(self._load_sample(image_id, seed))
                failures = 0
            except _NoActiveCategory:
                skipped += 1
                logger.debug("Image %d has no active instance after loading; skipped",
                             image_id)
                if skipped > count:
                    raise RuntimeError("no image of the data set gave an instance of an "
                                       "active class {}".format(self.active_classes.tolist()))
            except Exception as error:  # noqa: BLE001 - a bad sample is skipped
                failures += 1
                logger.warning("Skipping image %d (%s), %d consecutive failures: %s: %s",
                               image_id, self._describe(image_id), failures,
                               type(error).__name__, error)
                if failures >= self.max_failures:
                    raise RuntimeError(
                        "{} consecutive samples failed; last image {} ({}): {}: {}".format(
                            failures, image_id, self._describe(image_id),
                            type(error).__name__, error)) from error
        return samples

    def _load_sample(self, image_id: int, seed: int) -> SiameseSample:
        rng = np.random.default_rng(seed)
        with seeded_global_random(seed):
            return load_siamese_sample(self.dataset, self.config, image_id, self.anchors,
                                       self.active_classes, rng,
                                       augmentation=self.augmentation,
                                       allow_same_image=self.allow_same_image,
                                       target_size_limit=self.target_size_limit,
                                       random_rois=self.random_rois,
                                       detection_targets=self.detection_targets)

    def _describe(self, image_id: int) -> str:
        info = self.dataset.image_info[image_id]
        return "source id {}, {}".format(info.get("id"), info.get("path"))


# The old function's default augmentation, built when used (imgaug imports slowly).
DEFAULT_AUGMENTATION = "Fliplr(0.5)"


def siamese_data_generator(dataset: Any, config: Any, shuffle: bool = True,
                           augmentation: Any = DEFAULT_AUGMENTATION, random_rois: int = 0,
                           batch_size: int = 1, detection_targets: bool = False,
                           diverse: float = 0, **kwargs: Any) -> SiameseDataGenerator:
    """The paper code's generator, with its signature and defaults.

    Returns a SiameseDataGenerator: ``next(g)`` gives ``(inputs, outputs)`` lists as the
    old generator did, and fit() takes it as a PyDataset.
    augmentation: imgaug augmenter; the default is the old one, a horizontal flip of
        half the images (imgaug.augmenters.Fliplr(0.5)); None for none.
    random_rois / detection_targets: Matterport's options (see load_siamese_sample).
    batch_size: images per batch (default 1, as the old function; the model's train()
        uses config.BATCH_SIZE).
    diverse: accepted and ignored, as the old function ignored it.
    Extra keyword arguments (seed, allow_same_image, steps_per_epoch, workers, ...)
    go to SiameseDataGenerator.
    """
    if augmentation is DEFAULT_AUGMENTATION:
        from imgaug import augmenters as iaa

        augmentation = iaa.Fliplr(0.5)
    if diverse:
        logger.warning("siamese_data_generator: diverse=%s is ignored (the paper code "
                       "accepted and ignored it too)", diverse)
    return SiameseDataGenerator(dataset, config, shuffle=shuffle, augmentation=augmentation,
                                batch_size=batch_size, random_rois=random_rois,
                                detection_targets=detection_targets, **kwargs)
