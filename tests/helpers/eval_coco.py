"""A hand-made COCO-format set and a stand-in Siamese model for the evaluation tests.

``write_eval_coco(root)`` writes ``annotations/instances_val2017.json`` and
``val2017/*.png``: 128 x 128 grey images holding solid rectangles, one colour per
category, each inside its own 32 x 32 cell (top-left corner at cell + 4, sides
6..14), so objects never overlap and a box shifted by +16 px in y and x overlaps
no object. Masks are stored as compressed RLE of the exact rectangles.

=========  ==============================================================
COCO image  instances (COCO category id x count)
=========  ==============================================================
11          2 x1, 5 x1
12          2 x2, 9 x1
13          5 x3, 14 x1
14          9 x2, 14 x1, 2 x1
15          14 x2, 5 x1
16          2 x1, 9 x1, and a crowd of 5 (uncompressed RLE, drawn in 5's colour)
=========  ==============================================================

Internal class ids: 2 -> 1, 5 -> 2, 9 -> 3, 14 -> 4 (sorted COCO ids).

``StandInSiamese`` detects from pixels: the reference's centre colour names the
category; the query's connected regions of that colour are the detections
(score 1 - 0.01 * index). mode 'perfect' returns them as they are, 'shifted'
moves every box and mask by +16 px (IoU 0 with every object); ``bad_categories``
shifts only those categories; ``confuse`` ({reference COCO id: detected COCO id})
makes references of one category find the objects of another. It records every
call.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from mrcnn import utils
from siamese_mrcnn.config import Config
from siamese_mrcnn.reference import randomize_detections
from tests.helpers.coco_files import (CocoSplitWriter, compressed_rle, mask_bbox,
                                      uncompressed_rle)

SIZE = 128
CELL = 32
OFFSET = 4
SHIFT = 16
BACKGROUND = (90, 90, 90)
COLORS = {2: (230, 30, 30), 5: (30, 210, 30), 9: (30, 30, 230), 14: (230, 220, 20)}
NAMES = {2: "red", 5: "green", 9: "blue", 14: "yellow"}
INTERNAL = {2: 1, 5: 2, 9: 3, 14: 4}

# (COCO image id, [(COCO category id, cell index 0..15, height, width)], crowd cell or None)
LAYOUT = [
    (11, [(2, 0, 10, 12), (5, 5, 8, 14)], None),
    (12, [(2, 1, 12, 9), (2, 10, 7, 13), (9, 6, 14, 14)], None),
    (13, [(5, 0, 9, 9), (5, 3, 12, 6), (5, 15, 10, 11), (14, 9, 13, 8)], None),
    (14, [(9, 2, 6, 12), (9, 8, 14, 10), (14, 13, 9, 9), (2, 4, 11, 13)], None),
    (15, [(14, 7, 12, 12), (14, 12, 8, 13), (5, 1, 14, 7)], None),
    (16, [(2, 3, 9, 11), (9, 14, 13, 6)], 10),
]
CROWD_CATEGORY = 5


def box_of(cell: int, height: int, width: int) -> tuple:
    """(y1, x1, y2, x2) of an object in a cell (exclusive y2 / x2)."""
    y1 = (cell // 4) * CELL + OFFSET
    x1 = (cell % 4) * CELL + OFFSET
    return y1, x1, y1 + height, x1 + width


def _crowd_mask(cell: int) -> np.ndarray:
    """Four small squares in a cell: a crowd region."""
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    y0, x0 = (cell // 4) * CELL, (cell % 4) * CELL
    for dy in (4, 18):
        for dx in (4, 18):
            mask[y0 + dy:y0 + dy + 8, x0 + dx:x0 + dx + 8] = True
    return mask


def write_eval_coco(root: str, subset: str = "val", year: str = "2017") -> dict:
    """Writes the data set; returns {COCO image id: [(COCO cat id, (y1, x1, y2, x2))]}."""
    writer = CocoSplitWriter(root, subset, year)
    truth = {}
    annotation_id = 100
    for image_id, objects, crowd_cell in LAYOUT:
        pixels = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
        pixels[:] = BACKGROUND
        truth[image_id] = []
        for category, cell, height, width in objects:
            y1, x1, y2, x2 = box_of(cell, height, width)
            pixels[y1:y2, x1:x2] = COLORS[category]
            mask = np.zeros((SIZE, SIZE), dtype=bool)
            mask[y1:y2, x1:x2] = True
            annotation_id += 1
            writer.add_annotation(image_id, category, compressed_rle(mask),
                                  area=height * width, bbox=[x1, y1, width, height],
                                  annotation_id=annotation_id)
            truth[image_id].append((category, (y1, x1, y2, x2)))
        if crowd_cell is not None:
            mask = _crowd_mask(crowd_cell)
            pixels[mask] = COLORS[CROWD_CATEGORY]
            annotation_id += 1
            writer.add_annotation(image_id, CROWD_CATEGORY, uncompressed_rle(mask),
                                  area=mask.sum(), bbox=[int(v) for v in mask_bbox(mask)],
                                  iscrowd=1, annotation_id=annotation_id)
        writer.add_image(image_id, pixels)
    writer.write([{"id": c, "name": NAMES[c], "supercategory": "shape"}
                  for c in sorted(COLORS)])
    return truth


class EvalConfig(Config):
    """Config the stand-in carries: 128 px queries, 16 px references."""
    NAME = "eval_test"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    TARGET_MIN_DIM = 16
    TARGET_MAX_DIM = 16
    IMAGES_PER_GPU = 1
    DETECTION_MAX_INSTANCES = 30


def make_config(batch_size: int = 1, num_targets: int = 1) -> EvalConfig:
    config = EvalConfig()
    config.IMAGES_PER_GPU = batch_size
    config.NUM_TARGETS = num_targets
    config.compute_derived()
    return config


def category_of_color(color) -> int:
    """COCO category id whose colour is nearest to an RGB triple."""
    color = np.asarray(color, dtype=float)
    return min(COLORS, key=lambda c: float(np.sum((np.array(COLORS[c]) - color) ** 2)))


class StandInSiamese:
    """A model with SiameseMaskRCNN's inference API whose detections are known."""

    def __init__(self, config, mode: str = "perfect", bad_categories=(), confuse=None):
        if mode not in ("perfect", "shifted"):
            raise ValueError(mode)
        self.config = config
        self.mode = mode
        self.bad_categories = set(bad_categories)
        self.confuse = dict(confuse or {})
        self.calls = []          # (method, batch size, [COCO category per slot])
        self.references = []     # every reference received, as given
        self.random_calls = []   # the rng of each random_detections call

    # ---- the model API ----------------------------------------------------
    def detect(self, targets, images, verbose=0, random_detections=False, rng=None):
        self._check(images)
        if len(targets) != len(images):
            raise ValueError("targets and images differ in length")
        categories = []
        for refs in targets:
            refs = [refs] if isinstance(refs, np.ndarray) and refs.ndim == 3 else list(refs)
            if len(refs) != self.config.NUM_TARGETS:
                raise ValueError(f"expected {self.config.NUM_TARGETS} references")
            self.references.extend(refs)
            found = {self._reference_category(r) for r in refs}
            if len(found) != 1:
                raise AssertionError(f"references of one pair name several categories {found}")
            categories.append(found.pop())
        self.calls.append(("detect", len(images), categories))
        return self._detect(categories, images, random_detections, rng)

    def encode_reference(self, targets):
        colors = []
        for refs in targets:
            refs = [refs] if isinstance(refs, np.ndarray) and refs.ndim == 3 else list(refs)
            self.references.extend(refs)
            colors.append(np.array(COLORS[self._reference_category(refs[0])], dtype=float))
        self.calls.append(("encode_reference", len(targets), []))
        vector = np.stack(colors)  # [n, 3]
        return [vector.copy() for _ in range(5)]

    def detect_with_reference(self, reference_vectors, images, verbose=0,
                              random_detections=False, rng=None):
        self._check(images)
        vectors = np.asarray(reference_vectors[0])
        vectors = np.broadcast_to(vectors, (len(images), vectors.shape[1]))
        categories = [category_of_color(v) for v in vectors]
        self.calls.append(("detect_with_reference", len(images), categories))
        return self._detect(categories, images, random_detections, rng)

    # ---- internals -------------------------------------------------------
    def _check(self, images):
        if len(images) != self.config.BATCH_SIZE:
            raise ValueError(f"expected {self.config.BATCH_SIZE} images, got {len(images)}")

    @staticmethod
    def _reference_category(reference) -> int:
        reference = np.asarray(reference)
        h, w = reference.shape[:2]
        return category_of_color(reference[h // 2, w // 2])

    def _detect(self, categories, images, random_detections, rng):
        results = []
        for category, image in zip(categories, images):
            r = self._regions(image, self.confuse.get(category, category))
            if self.mode == "shifted" or category in self.bad_categories:
                r = _shift(r, image.shape)
            if random_detections:
                self.random_calls.append(rng)
                r = _randomize(r, image.shape, rng)
            results.append(r)
        return results

    @staticmethod
    def _regions(image, category) -> dict:
        match = np.all(np.asarray(image) == np.array(COLORS[category]), axis=-1)
        labels, n = ndimage.label(match)
        masks = np.stack([labels == k for k in range(1, n + 1)], axis=-1) if n else \
            np.zeros(image.shape[:2] + (0,), dtype=bool)
        rois = utils.extract_bboxes(masks).astype(np.int32)
        return {"rois": rois, "class_ids": np.ones(n, dtype=np.int32),
                "scores": (1.0 - 0.01 * np.arange(n)).astype(np.float32), "masks": masks}


def _shift(r: dict, shape) -> dict:
    rois = np.minimum(r["rois"] + SHIFT, [shape[0], shape[1], shape[0], shape[1]])
    masks = np.zeros_like(r["masks"])
    masks[SHIFT:, SHIFT:] = r["masks"][:-SHIFT, :-SHIFT]
    return dict(r, rois=rois.astype(np.int32), masks=masks)


def _randomize(r: dict, shape, rng) -> dict:
    """The random-boxes baseline through siamese_mrcnn.reference.randomize_detections."""
    n = r["rois"].shape[0]
    if n == 0:
        return r
    height, width = shape[:2]
    detections = np.zeros((1, n, 6), dtype=np.float32)
    detections[0, :, :4] = utils.norm_boxes(r["rois"], (height, width))
    # The class column carries the row's index + 1: rows are moved, get shuffled
    # scores and are re-sorted, and each mask must follow its box.
    detections[0, :, 4] = np.arange(1, n + 1)
    detections[0, :, 5] = r["scores"]
    moved = randomize_detections(detections, np.array([[0, 0, height, width]]),
                                 (height, width, 3), rng)[0]
    rois = utils.denorm_boxes(moved[:, :4], (height, width))
    order = moved[:, 4].astype(int) - 1
    masks = np.zeros_like(r["masks"])
    for i, source in enumerate(order):
        y1, x1, y2, x2 = r["rois"][source]
        crop = r["masks"][y1:y2, x1:x2, source]
        ny1, nx1 = rois[i, 0], rois[i, 1]
        h = min(crop.shape[0], height - ny1)
        w = min(crop.shape[1], width - nx1)
        masks[ny1:ny1 + h, nx1:nx1 + w, i] = crop[:h, :w]
    return {"rois": rois.astype(np.int32), "class_ids": r["class_ids"],
            "scores": moved[:, 5].astype(np.float32), "masks": masks}


# Fixtures and the evaluate shortcut shared by test_evaluation.py and test_analysis.py
# (imported there: pytest registers imported fixtures).
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(root of the hand-made COCO set, its ground truth)."""
    root = tmp_path_factory.mktemp("eval_coco")
    truth = write_eval_coco(str(root))
    return str(root), truth


@pytest.fixture
def dataset(data):
    """(prepared IndexedCocoDataset of val2017, its COCO object)."""
    from siamese_mrcnn.coco import IndexedCocoDataset

    root, _ = data
    ds = IndexedCocoDataset()
    coco = ds.load_coco(root, "val", "2017", return_coco=True)
    ds.prepare()
    return ds, coco


def evaluate(model, dataset, **kwargs):
    """evaluate_protocol on the fixture's data set: both eval types, seed 0, silent."""
    from siamese_mrcnn import evaluation as ev

    ds, coco = dataset
    kwargs.setdefault("eval_type", "both")
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("verbose", 0)
    return ev.evaluate_protocol(model, ds, coco, **kwargs)
