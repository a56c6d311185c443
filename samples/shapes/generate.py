"""Generator of a COCO-format one-shot instance segmentation data set of synthetic shapes.

Every category is a shape outline (circle, square, triangle, ...) combined with an
appearance (colour family + pattern: solid red, blue stripes, green checker, yellow dots).
Images show 2-4 categories with 1-4 instances each on textured backgrounds with muted
distractor clutter; later objects occlude earlier ones and the instance masks are the
visible parts. The output mirrors COCO's layout so that `samples/coco/coco.py` and
`siamese_mrcnn.utils.IndexedCocoDataset` read it unchanged:

    OUT/annotations/instances_train2017.json    OUT/train2017/000000000001.png ...
    OUT/annotations/instances_val2017.json      OUT/val2017/000010000001.png ...

Masks are compressed RLE (`iscrowd: 0`), bbox [x, y, w, h] and area come from the mask.
Each image has its own random generator seeded by (seed, subset, index), so the output is
byte-identical for a seed whatever the number of worker processes. One-shot splits follow
COCO's: split i (1..4) holds out the categories {4k + i}.

Command line:
    python samples/shapes/generate.py --out DIR --train N --val N --seed S --size PX \
        [--categories 24] [--workers K] [--force]
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import skimage.draw
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

_LIB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
if _LIB not in sys.path:  # the benchmarks and tests import this module: add lib/ once
    sys.path.insert(0, _LIB)
from mrcnn.cli_support import (CliError, check_output,  # noqa: E402 (stdlib only)
                               int_option)
from mrcnn.files import write_atomic  # noqa: E402 (stdlib only)

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "1.0"
YEAR = "2017"
SUBSETS = ("train", "val")
_SUBSET_CODE = {"train": 0, "val": 1}
# Image ids of val2017 start here so that ids are unique across both subsets and do not
# depend on the number of training images.
VAL_ID_OFFSET = 10_000_000
NUM_SPLITS = 4
DEFAULT_NUM_CATEGORIES = 24

# Object geometry, as fractions of the image side (largest extent of the shape).
MIN_OBJECT_FRACTION = 0.12
MAX_OBJECT_FRACTION = 0.45
MIN_ASPECT = 0.6
# A placement that would leave an earlier instance with less than this share of its full
# area (or fewer pixels) visible is rejected and retried elsewhere, so every drawn
# instance is annotated and every annotation is recognisable.
MIN_VISIBLE_FRACTION = 0.5
MIN_VISIBLE_PIXELS = 20
MAX_INSTANCES = 8
PLACEMENT_TRIES = 12
MIN_SIZE, MAX_SIZE = 64, 4096
# zlib level 1: images are noisy, higher levels cost much more time for a few % of space.
PNG_COMPRESS_LEVEL = 1
_IMAGE_FILE = re.compile(r"^\d{12}\.png$")


# ----------------------------------------------------------------------------------------
# Categories and splits
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Appearance:
    """Colour family and surface pattern shared by all categories of one appearance."""

    name: str
    pattern: str  # "solid", "stripes", "checker" or "dots"
    colour_a: tuple[int, int, int]  # main colour (RGB)
    colour_b: tuple[int, int, int]  # second colour of the pattern (unused by "solid")


APPEARANCES = (
    Appearance("red", "solid", (215, 45, 40), (0, 0, 0)),
    Appearance("blue-striped", "stripes", (35, 85, 220), (235, 235, 240)),
    Appearance("green-checkered", "checker", (45, 175, 70), (20, 80, 30)),
    Appearance("yellow-dotted", "dots", (240, 205, 40), (110, 35, 135)),
)


def _regular_polygon(n: int, radius: float = 1.0, phase: float = np.pi / 2) -> np.ndarray:
    """Vertices [n, (x, y)] of a regular polygon, y pointing down like image rows."""
    angles = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), -radius * np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = np.pi / 2 + np.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), -radii * np.sin(angles)], axis=1)


def _cross(half_width: float = 0.33) -> np.ndarray:
    t = half_width
    return np.array([[t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1],
                     [-t, 1], [-t, t], [-1, t], [-1, -t], [-t, -t], [-t, -1]], float)


_CIRCLE = _regular_polygon(48)
# Shape outlines in a unit frame: (outer polygon, hole polygon or None). The most
# distinct outlines come first because the default 24 categories use the first six.
SHAPES: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
    "circle": (_CIRCLE, None),
    "square": (_regular_polygon(4, 1.05, np.pi / 4), None),
    "triangle": (_regular_polygon(3, 1.1), None),
    "star": (_star(), None),
    "cross": (_cross(), None),
    "ring": (_CIRCLE, 0.55 * _CIRCLE),
    "hexagon": (_regular_polygon(6), None),
    "crescent": (_CIRCLE, 0.8 * _CIRCLE + np.array([0.45, 0.0])),
}
SHAPE_NAMES = tuple(SHAPES)
MAX_CATEGORIES = len(SHAPE_NAMES) * len(APPEARANCES)


def _category_parts(num_categories: int) -> list[tuple[str, Appearance]]:
    """(shape, appearance) of categories 1..num_categories.

    Category c (0-based) = 4k + r gets shape k and appearance (r + k) mod 4, so every split
    {4k + i} holds out one category of each shape and all four appearances, and each held
    out category pairs a shape and an appearance that training sees in other pairings.
    """
    _check_num_categories(num_categories)
    parts = []
    for c in range(num_categories):
        k, r = divmod(c, len(APPEARANCES))
        parts.append((SHAPE_NAMES[k], APPEARANCES[(r + k) % len(APPEARANCES)]))
    return parts


def category_table(num_categories: int = DEFAULT_NUM_CATEGORIES) -> list[dict]:
    """COCO `categories` entries: ids 1..N, names like "red-circle", supercategory = shape."""
    return [{"id": i + 1, "name": f"{appearance.name}-{shape}", "supercategory": shape}
            for i, (shape, appearance) in enumerate(_category_parts(num_categories))]


def split_classes(num_categories: int, split: int | str) -> list[int]:
    """Category ids held out as one-shot classes in `split`: {4k + split}, like COCO's.

    split: 1..4, or "full" (nothing held out).
    """
    _check_num_categories(num_categories)
    if split == "full":
        return []
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)) \
            or not 1 <= split <= NUM_SPLITS:
        raise ValueError(f"split must be 1..{NUM_SPLITS} or 'full', got {split!r}")
    return list(range(int(split), num_categories + 1, NUM_SPLITS))


def train_classes(num_categories: int, split: int | str) -> list[int]:
    """Category ids used for training in `split`: all ids not held out."""
    held_out = set(split_classes(num_categories, split))
    return [c for c in range(1, num_categories + 1) if c not in held_out]


def _check_num_categories(num_categories: int) -> None:
    if not isinstance(num_categories, (int, np.integer)) \
            or not NUM_SPLITS <= num_categories <= MAX_CATEGORIES:
        raise ValueError(f"num_categories must be an int in {NUM_SPLITS}..{MAX_CATEGORIES}, "
                         f"got {num_categories!r}")


# ----------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------

def _linear_upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of grid [n, n, C] to [size, size, C], corners aligned.

    Gathers and blends instead of a matrix product: BLAS threads would spin and compete
    with the worker processes.
    """
    n = grid.shape[0]
    pos = np.linspace(0, n - 1, size, dtype=np.float32)
    lo = np.minimum(pos.astype(int), n - 2)
    frac = pos - lo
    rows = grid[lo] * (1 - frac)[:, None, None] + grid[lo + 1] * frac[:, None, None]
    return rows[:, lo] * (1 - frac)[None, :, None] + rows[:, lo + 1] * frac[None, :, None]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int,
                  amplitude: float, chroma: float) -> np.ndarray:
    """[size, size, 3] bilinearly upsampled noise; mostly luminance so it stays muted."""
    n = int(cells) + 1
    luminance = rng.normal(0, amplitude, (n, n, 1))
    colour = rng.normal(0, amplitude * chroma, (n, n, 3))
    grid = (luminance + colour).astype(np.float32)  # [n, n, 3]
    return _linear_upsample(grid, size)  # [size, size, 3]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """[size, size, 3] float32 low-saturation textured background."""
    base = rng.uniform(60, 200) + rng.normal(0, 14, 3)
    image = _smooth_noise(rng, size, rng.integers(2, 5), rng.uniform(10, 35), 0.35)
    image += _smooth_noise(rng, size, size // rng.integers(4, 10), rng.uniform(3, 12), 0.3)
    image += base.astype(np.float32)
    if rng.random() < 0.4:
        # Faint stripes or grid so that patterns alone do not mark an object.
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(5, 20)
        yy, xx = np.mgrid[:size, :size].astype(np.float32)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        wave = np.sin(2 * np.pi * u / period)
        if rng.random() < 0.5:
            v = -xx * np.sin(angle) + yy * np.cos(angle)
            wave = wave * np.sin(2 * np.pi * v / period)
        image += (rng.uniform(4, 12) * wave)[..., None]
    return image


def _transform(vertices: np.ndarray, radius: float, aspect: float, angle: float) -> np.ndarray:
    """Scale a unit-frame polygon [n, (x, y)] to pixels and rotate it by `angle`."""
    scaled = vertices * np.array([radius, radius * aspect])
    c, s = np.cos(angle), np.sin(angle)
    return scaled @ np.array([[c, s], [-s, c]])  # x' = x c - y s, y' = x s + y c


def _rasterize(outer: np.ndarray, hole: np.ndarray | None, cx: float, cy: float,
               size: int) -> tuple[int, int, np.ndarray] | None:
    """Binary mask of a polygon (minus its hole) centred at (cx, cy), cut to the image.

    Returns (y0, x0, mask [h, w]) of the bounding box, or None when nothing is inside.
    """
    xs, ys = outer[:, 0] + cx, outer[:, 1] + cy
    y0, x0 = max(int(np.floor(ys.min())), 0), max(int(np.floor(xs.min())), 0)
    y1 = min(int(np.ceil(ys.max())) + 1, size)
    x1 = min(int(np.ceil(xs.max())) + 1, size)
    if y1 <= y0 or x1 <= x0:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    rr, cc = skimage.draw.polygon(ys - y0, xs - x0, shape=mask.shape)
    mask[rr, cc] = True
    if hole is not None:
        rr, cc = skimage.draw.polygon(hole[:, 1] + cy - y0, hole[:, 0] + cx - x0,
                                      shape=mask.shape)
        mask[rr, cc] = False
    if not mask.any():
        return None
    return y0, x0, mask


def _object_frame(y0: int, x0: int, shape: tuple[int, int], cx: float, cy: float,
                  angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u, v) [h, w] of a box in the object's own rotated frame."""
    dy = np.arange(y0, y0 + shape[0], dtype=np.float32)[:, None] - np.float32(cy)
    dx = np.arange(x0, x0 + shape[1], dtype=np.float32)[None, :] - np.float32(cx)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return dx * c + dy * s, -dx * s + dy * c


def _jitter_colour(rng: np.random.Generator, colour: Sequence[int]) -> np.ndarray:
    jittered = np.asarray(colour, np.float32) * rng.uniform(0.85, 1.12) + rng.normal(0, 6, 3)
    return np.clip(jittered, 0, 255).astype(np.float32)


def _paint(rng: np.random.Generator, pattern: str, colour_a: np.ndarray,
           colour_b: np.ndarray, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """[h, w, 3] colours of a pattern given object-frame coordinates u, v [h, w]."""
    if pattern == "solid":
        phi = rng.uniform(0, 2 * np.pi)
        shade = 1 + 0.18 * (u * np.cos(phi) + v * np.sin(phi)) / radius  # soft lighting
        return colour_a * shade[..., None]
    period = max(3.0, 2 * radius * rng.uniform(0.19, 0.26))
    u = u + rng.uniform(0, 2 * period)  # random phase of the pattern
    v = v + rng.uniform(0, 2 * period)
    if pattern == "stripes":
        second = np.floor(u / period) % 2 == 1
    elif pattern == "checker":
        second = (np.floor(u / period) + np.floor(v / period)) % 2 == 1
    elif pattern == "dots":
        pitch = 1.5 * period
        fu, fv = u / pitch, v / pitch
        second = (fu - np.round(fu)) ** 2 + (fv - np.round(fv)) ** 2 < 0.32 ** 2
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return np.where(second[..., None], colour_b, colour_a)


class _Canvas:
    """Image under construction plus a label map of which instance owns each pixel."""

    def __init__(self, image: np.ndarray):
        self.image = image  # [H, W, 3] float32
        self.labels = np.zeros(image.shape[:2], np.int32)  # [H, W] 0 = not an instance
        self.full_area: list[int] = []
        self.visible: list[int] = []
        self.category_ids: list[int] = []

    def paste(self, y0: int, x0: int, mask: np.ndarray, colours: np.ndarray,
              category_id: int | None = None) -> bool:
        """Draw `colours` [h, w, 3] where `mask` [h, w] is set, on top of everything.

        category_id None draws clutter. Refuses (returns False) when an instance would
        stay less than MIN_VISIBLE_FRACTION / MIN_VISIBLE_PIXELS visible.
        """
        h, w = mask.shape
        region = self.labels[y0:y0 + h, x0:x0 + w]  # view
        covered = np.bincount(region[mask], minlength=len(self.visible) + 1)[1:]
        if len(self.visible):
            remaining = np.asarray(self.visible) - covered
            floor = np.maximum(MIN_VISIBLE_FRACTION * np.asarray(self.full_area),
                               MIN_VISIBLE_PIXELS)
            if np.any((covered > 0) & (remaining < floor)):
                return False
        area = int(mask.sum())
        if category_id is not None and area < MIN_VISIBLE_PIXELS:
            return False
        self.image[y0:y0 + h, x0:x0 + w][mask] = colours[mask]
        self.visible = [int(a - b) for a, b in zip(self.visible, covered)]
        if category_id is None:
            region[mask] = 0
        else:
            self.full_area.append(area)
            self.visible.append(area)
            self.category_ids.append(category_id)
            region[mask] = len(self.category_ids)
        return True


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.uniform(30, 225) + rng.normal(0, 12, 3), 0, 255).astype(np.float32)


def _blob_polygon(rng: np.random.Generator) -> np.ndarray:
    """Irregular unit-frame polygon, unlike any category outline."""
    n = rng.integers(7, 13)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.45, 1.0, n)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _stroke_polygon(length: float, width: float) -> np.ndarray:
    """Thin rectangle centred at the origin, length along x (rotated later)."""
    return np.array([[-length, -width], [length, -width], [length, width], [-length, width]]) / 2


def _add_clutter(canvas: _Canvas, rng: np.random.Generator, count: int,
                 strokes_only: bool = False) -> None:
    """Muted blobs and strokes that belong to no category."""
    size = canvas.labels.shape[0]
    for _ in range(count):
        angle = rng.uniform(0, 2 * np.pi)
        if strokes_only or rng.random() < 0.4:
            width = rng.uniform(1.0, 1.8 if strokes_only else 3.5)
            polygon = _stroke_polygon(size * rng.uniform(0.2, 0.7), width)
            radius = 1.0
        else:
            radius = size * rng.uniform(0.03, 0.12)
            polygon = _blob_polygon(rng)
        outer = _transform(polygon, radius, 1.0, angle)
        cx, cy = rng.uniform(0, size, 2)
        drawn = _rasterize(outer, None, cx, cy, size)
        if drawn is None:
            continue
        y0, x0, mask = drawn
        colour_a = _muted_colour(rng)
        colour_b = np.clip(colour_a + rng.choice([-1, 1]) * rng.uniform(20, 45), 0, 255)
        pattern = rng.choice(["solid", "solid", "stripes", "checker"])
        u, v = _object_frame(y0, x0, mask.shape, cx, cy, angle)
        canvas.paste(y0, x0, mask, _paint(rng, pattern, colour_a, colour_b.astype(np.float32),
                                         u, v, max(radius, 4.0)))


def _plan_instances(rng: np.random.Generator, num_categories: int) -> list[int]:
    """Category ids to draw, bottom first: 2-4 categories, 1-4 instances each, <= 8."""
    n_cats = int(rng.integers(2, 5))
    cats = rng.choice(num_categories, size=n_cats, replace=False) + 1
    counts = rng.integers(1, 5, size=n_cats)
    while counts.sum() > MAX_INSTANCES:
        counts[np.argmax(counts)] -= 1
    # One instance of each category first so that each has its best chance of a place.
    extra = [int(c) for c, n in zip(cats, counts) for _ in range(n - 1)]
    rng.shuffle(extra)
    return [int(c) for c in cats] + extra


def _place_instance(canvas: _Canvas, rng: np.random.Generator, category_id: int,
                    shape: str, appearance: Appearance) -> bool:
    """Draw one instance at a random place where it hides no instance too much."""
    size = canvas.labels.shape[0]
    outline, hole = SHAPES[shape]
    extent = size * np.exp(rng.uniform(np.log(MIN_OBJECT_FRACTION),
                                       np.log(MAX_OBJECT_FRACTION)))
    aspect = np.exp(rng.uniform(np.log(MIN_ASPECT), 0))
    angle = rng.uniform(0, 2 * np.pi)
    colour_a = _jitter_colour(rng, appearance.colour_a)
    colour_b = _jitter_colour(rng, appearance.colour_b)
    for attempt in range(PLACEMENT_TRIES):
        if attempt and attempt % 3 == 0:
            extent *= 0.85  # crowded image: try smaller
        radius = extent / 2
        outer = _transform(outline, radius, aspect, angle)
        inner = None if hole is None else _transform(hole, radius, aspect, angle)
        # Keep the whole shape inside the image so its full area is known.
        lo = -outer.min(axis=0)
        hi = size - 1 - outer.max(axis=0)
        if np.any(hi < lo):
            continue
        cx, cy = rng.uniform(lo, hi)
        drawn = _rasterize(outer, inner, cx, cy, size)
        if drawn is None:
            continue
        y0, x0, mask = drawn
        u, v = _object_frame(y0, x0, mask.shape, cx, cy, angle)
        colours = _paint(rng, appearance.pattern, colour_a, colour_b, u, v, radius)
        if canvas.paste(y0, x0, mask, colours, category_id):
            return True
    return False


def _image_rng(seed: int, subset: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SUBSET_CODE[subset], int(index)])


def render_image(seed: int, subset: str, index: int, size: int = 128,
                 num_categories: int = DEFAULT_NUM_CATEGORIES
                 ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Draw image `index` of `subset`, independent of every other image.

    Returns image [size, size, 3] uint8, labels [size, size] int32 (0 = no instance,
    k = the k-th instance) and the category id of each instance.
    """
    _check_subset(subset)
    _check_num_categories(num_categories)
    parts = _category_parts(num_categories)
    rng = _image_rng(seed, subset, index)
    canvas = _Canvas(_background(rng, size))
    _add_clutter(canvas, rng, int(rng.integers(2, 7)))
    for category_id in _plan_instances(rng, num_categories):
        shape, appearance = parts[category_id - 1]
        _place_instance(canvas, rng, category_id, shape, appearance)
    if rng.random() < 0.3:
        _add_clutter(canvas, rng, int(rng.integers(1, 3)), strokes_only=True)
    image = canvas.image + rng.normal(0, rng.uniform(2, 6), canvas.image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), canvas.labels, canvas.category_ids


# ----------------------------------------------------------------------------------------
# COCO records
# ----------------------------------------------------------------------------------------

def image_id_of(subset: str, index: int) -> int:
    """Deterministic COCO image id: train 1.., val VAL_ID_OFFSET + 1.."""
    _check_subset(subset)
    return index + 1 + (VAL_ID_OFFSET if subset == "val" else 0)


def annotations_of(labels: np.ndarray, category_ids: Sequence[int], image_id: int) -> list[dict]:
    """COCO annotations (compressed RLE of the visible masks) of one label map."""
    ids = np.arange(1, len(category_ids) + 1)
    if not len(ids):
        return []
    masks = (labels[..., None] == ids).astype(np.uint8, order="F")  # [H, W, N]
    rles = mask_utils.encode(masks)
    boxes = mask_utils.toBbox(rles)  # [N, (x, y, w, h)]
    areas = mask_utils.area(rles)
    annotations = []
    for k, (rle, box, area) in enumerate(zip(rles, boxes, areas)):
        if area < MIN_VISIBLE_PIXELS:  # cannot happen given _Canvas.paste; keep data sane
            continue
        annotations.append({
            "id": image_id * 100 + k + 1,  # <= MAX_INSTANCES per image, ids > 0
            "image_id": image_id,
            "category_id": int(category_ids[k]),
            "segmentation": {"size": [int(s) for s in rle["size"]],
                             "counts": rle["counts"].decode("ascii")},
            "area": int(area),
            "bbox": [float(b) for b in box],
            "iscrowd": 0,
        })
    return annotations


def _render_task(task: tuple) -> tuple[dict, list[dict]]:
    """Worker: draw one image, write it as PNG, return its COCO records."""
    seed, subset, index, size, num_categories, image_dir = task
    image, labels, category_ids = render_image(seed, subset, index, size, num_categories)
    image_id = image_id_of(subset, index)
    file_name = f"{image_id:012d}.png"
    Image.fromarray(image).save(os.path.join(image_dir, file_name),
                                compress_level=PNG_COMPRESS_LEVEL)
    record = {"id": image_id, "file_name": file_name, "width": size, "height": size,
              "license": 1}
    return record, annotations_of(labels, category_ids, image_id)


# ----------------------------------------------------------------------------------------
# Data set on disk
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetPaths:
    """Where a generated data set lives (COCO layout, year 2017)."""

    root: Path
    train_annotations: Path
    val_annotations: Path
    train_images: Path
    val_images: Path

    @classmethod
    def under(cls, root: str | os.PathLike) -> "DatasetPaths":
        root = Path(root)
        return cls(root, root / "annotations" / f"instances_train{YEAR}.json",
                   root / "annotations" / f"instances_val{YEAR}.json",
                   root / f"train{YEAR}", root / f"val{YEAR}")

    def annotations(self, subset: str) -> Path:
        _check_subset(subset)
        return self.train_annotations if subset == "train" else self.val_annotations

    def images(self, subset: str) -> Path:
        _check_subset(subset)
        return self.train_images if subset == "train" else self.val_images


def dataset_info(n_train: int, n_val: int, seed: int, size: int,
                 num_categories: int = DEFAULT_NUM_CATEGORIES) -> dict:
    """COCO `info` block; also the cache key of a generated data set."""
    return {
        "description": "Synthetic one-shot shapes (samples/shapes/generate.py)",
        "version": GENERATOR_VERSION,
        "year": int(YEAR),
        "contributor": "siamese-mask-rcnn-tf2",
        "seed": int(seed),
        "size": int(size),
        "num_train": int(n_train),
        "num_val": int(n_val),
        "num_categories": int(num_categories),
    }


def _write_json(path: Path, content: dict) -> None:
    """Written whole or not at all, so that a killed run never leaves a valid-looking file."""
    write_atomic(path, json.dumps(content, separators=(",", ":")))


def _count_images(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for name in os.listdir(folder) if _IMAGE_FILE.match(name))


def is_cached(out: str | os.PathLike, info: dict) -> bool:
    """True when `out` holds a complete data set generated with exactly `info`."""
    paths = DatasetPaths.under(out)
    if not (paths.val_annotations.is_file() and paths.train_annotations.is_file()):
        return False
    try:
        with open(paths.val_annotations) as f:
            found = json.load(f).get("info")
    except (OSError, ValueError):
        return False
    return (found == info and _count_images(paths.train_images) == info["num_train"]
            and _count_images(paths.val_images) == info["num_val"])


def _pool_context() -> multiprocessing.context.BaseContext:
    # Not "fork": callers often have TensorFlow's threads running already.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _main_is_importable() -> bool:
    """Workers re-import __main__ from its file; `python - < script` has none."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.isfile(main_file)


def _render_subset(tasks: list[tuple], workers: int) -> Iterator[tuple[dict, list[dict]]]:
    """Each task's (image record, annotations), in the tasks' order, as they finish."""
    done = 0
    if workers > 1 and len(tasks) > 1 and _main_is_importable():
        chunk = max(1, min(32, len(tasks) // (4 * workers)))
        try:
            with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
                for result in pool.map(_render_task, tasks, chunksize=chunk):
                    done += 1
                    yield result
            return
        except BrokenProcessPool:
            # E.g. a __main__ that workers cannot re-import (python - < script). Every
            # image depends only on its own seed, so drawing the rest here gives the same
            # data.
            logger.warning("Worker processes failed after %d of %d images; drawing the "
                           "rest in this process", done, len(tasks))
    for task in tasks[done:]:
        yield _render_task(task)


def _write_subset(paths: DatasetPaths, subset: str, count: int, info: dict,
                  workers: int) -> None:
    folder = paths.images(subset)
    folder.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(folder):  # stale images of an earlier, larger run
        if _IMAGE_FILE.match(name):
            os.remove(folder / name)
    tasks = [(info["seed"], subset, i, info["size"], info["num_categories"], str(folder))
             for i in range(count)]
    images, annotations = [], []
    # A bar on a terminal only (disable=None): 1024 px images take a worker ~0.4 s each.
    for record, anns in tqdm(_render_subset(tasks, workers), total=count, unit="img",
                             desc=f"{subset}2017", disable=None):
        images.append(record)
        annotations.extend(anns)
    _write_json(paths.annotations(subset), {
        "info": info,
        "licenses": [{"id": 1, "name": "CC0 1.0 (generated data)",
                      "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
        "images": images,
        "annotations": annotations,
        "categories": category_table(info["num_categories"]),
    })


def generate_dataset(out: str | os.PathLike, n_train: int, n_val: int, seed: int = 0,
                     size: int = 128, workers: int | None = None,
                     num_categories: int = DEFAULT_NUM_CATEGORIES,
                     force: bool = False) -> DatasetPaths:
    """Write the data set under `out` (COCO layout) unless an identical one is there.

    workers: processes drawing images (None = all CPUs, 1 = in this process); the output
    does not depend on it. force: regenerate even when the cache matches.
    Returns the paths of the annotation files and image folders.
    """
    for name, value, low in (("n_train", n_train, 0), ("n_val", n_val, 0), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an int in {MIN_SIZE}..{MAX_SIZE} px, got {size!r}")
    if n_train >= VAL_ID_OFFSET or n_val >= VAL_ID_OFFSET:
        raise ValueError(f"at most {VAL_ID_OFFSET - 1} images per subset, "
                         f"got n_train={n_train}, n_val={n_val}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ValueError(f"workers must be an int >= 1 (None: all CPUs), got {workers!r}")
    _check_num_categories(num_categories)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    paths = DatasetPaths.under(out)
    info = dataset_info(n_train, n_val, seed, size, num_categories)
    if not force and is_cached(out, info):
        logger.info("Shapes data set in %s matches (seed %d, %d px, %d/%d images): reused",
                    paths.root, seed, size, n_train, n_val)
        return paths
    paths.train_annotations.parent.mkdir(parents=True, exist_ok=True)
    # The val file marks a complete data set, so it goes first and is written last.
    for stale in (paths.val_annotations, paths.train_annotations):
        stale.unlink(missing_ok=True)
    start = time.perf_counter()
    _write_subset(paths, "train", n_train, info, workers)
    _write_subset(paths, "val", n_val, info, workers)
    seconds = time.perf_counter() - start
    logger.info("Wrote %d + %d images of %d px to %s in %.1f s (%.0f images/min, %d workers)",
                n_train, n_val, size, paths.root, seconds,
                60 * (n_train + n_val) / max(seconds, 1e-9), workers)
    return paths


def _check_subset(subset: str) -> None:
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The flags are checked here too, so that a bad value is told by its flag (--train),
    # not by generate_dataset's argument (n_train).
    count = int_option(0, VAL_ID_OFFSET - 1)
    parser.add_argument("--out", required=True, help="output directory (COCO layout)")
    parser.add_argument("--train", type=count, default=2000, help="number of train2017 images")
    parser.add_argument("--val", type=count, default=500, help="number of val2017 images")
    parser.add_argument("--seed", type=int_option(0), default=0)
    parser.add_argument("--size", type=int_option(MIN_SIZE, MAX_SIZE), default=128,
                        help=f"image side in pixels ({MIN_SIZE}..{MAX_SIZE})")
    parser.add_argument("--categories", type=int_option(NUM_SPLITS, MAX_CATEGORIES),
                        default=DEFAULT_NUM_CATEGORIES,
                        help=f"number of categories ({NUM_SPLITS}..{MAX_CATEGORIES})")
    parser.add_argument("--workers", type=int_option(1), default=None,
                        help="processes (default: all CPUs)")
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:  # a file as --out, or above it, is told before any image is drawn
        check_output(args.out, "--out")
    except CliError as error:
        parser.error(str(error))
    try:
        generate_dataset(args.out, args.train, args.val, args.seed, args.size,
                         args.workers, args.categories, args.force)
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:  # an unwritable --out, a full disk: one line, like the CLIs
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to write the data set",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
