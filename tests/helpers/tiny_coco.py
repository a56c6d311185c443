"""A tiny COCO-format data set written on the fly, for tests of COCO data loading.

``write_tiny_coco(root)`` writes ``annotations/instances_{subset}{year}.json`` and
``{subset}{year}/*.png`` for a train and a val split: coloured rectangles, disks and bars
on a grey background, one object of each category per image, each in its own quadrant.
Segmentations use all three COCO encodings: polygons (rectangles, bars), compressed RLE
(disks) and, for the one crowd annotation (train image 0), uncompressed RLE.
Category and image ids are deliberately not contiguous, so tests catch code that confuses
COCO ids with internal ids.

The returned ``TinyCoco`` holds the ground truth as numpy masks drawn independently of
pycocotools, so tests can compare decoded annotations against them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from tests.helpers.coco_files import (CocoSplitWriter, box_polygon, compressed_rle,
                                      mask_bbox, uncompressed_rle)

# COCO category ids, deliberately sparse; drawn in this colour (RGB).
CATEGORIES = [
    {"id": 3, "name": "rectangle", "supercategory": "shape", "color": (220, 40, 40)},
    {"id": 7, "name": "disk", "supercategory": "shape", "color": (40, 200, 60)},
    {"id": 12, "name": "bar", "supercategory": "shape", "color": (50, 70, 230)},
]
BACKGROUND = (110, 110, 110)
CROWD_CATEGORY_ID = 7


@dataclass
class TinyAnnotation:
    """One annotation as written, with its mask drawn by numpy."""

    id: int
    category_id: int
    iscrowd: int
    mask: np.ndarray  # [H, W] bool
    encoding: str  # "polygon", "rle" or "uncompressed_rle"


@dataclass
class TinyImage:
    """One image as written."""

    id: int
    file_name: str
    path: str
    height: int
    width: int
    annotations: list[TinyAnnotation] = field(default_factory=list)


@dataclass
class TinyCoco:
    """What ``write_tiny_coco`` wrote: the data set root and the ground truth per split."""

    root: str
    year: str
    categories: list[dict]
    splits: dict[str, list[TinyImage]]

    def annotation_path(self, subset: str) -> str:
        return os.path.join(self.root, "annotations", f"instances_{subset}{self.year}.json")


def _rectangle(size: int, y1: int, x1: int, y2: int, x2: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _disk(size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2


def _quadrant_object(category_id: int, size: int, quadrant: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, dict | list, str]:
    """Draws one object of the category inside a quadrant; returns mask, segmentation."""
    half = size // 2
    oy, ox = (quadrant // 2) * half, (quadrant % 2) * half
    margin = max(2, size // 16)
    if category_id == 3:  # rectangle: polygon with integer corners = mask[y1:y2, x1:x2]
        h, w = rng.integers(half // 3, half - 2 * margin, size=2)
        y1 = oy + int(rng.integers(margin, half - h - margin + 1))
        x1 = ox + int(rng.integers(margin, half - w - margin + 1))
        y2, x2 = y1 + int(h), x1 + int(w)
        mask = _rectangle(size, y1, x1, y2, x2)
        return mask, box_polygon(y1, x1, y2, x2), "polygon"
    if category_id == 7:  # disk: compressed RLE
        radius = float(rng.integers(half // 5, half // 2 - margin))
        cy = oy + half / 2 + float(rng.integers(-margin, margin + 1))
        cx = ox + half / 2 + float(rng.integers(-margin, margin + 1))
        mask = _disk(size, cy, cx, radius)
        return mask, compressed_rle(mask), "rle"
    # bar: a long thin rectangle, horizontal or vertical, as a polygon
    long_side = half - 2 * margin
    short_side = max(3, half // 6)
    h, w = (short_side, long_side) if rng.random() < 0.5 else (long_side, short_side)
    y1 = oy + int(rng.integers(margin, half - h - margin + 1))
    x1 = ox + int(rng.integers(margin, half - w - margin + 1))
    y2, x2 = y1 + h, x1 + w
    mask = _rectangle(size, y1, x1, y2, x2)
    return mask, box_polygon(y1, x1, y2, x2), "polygon"


def _crowd(size: int, quadrant: int) -> np.ndarray:
    """A cluster of small disks filling one quadrant: the crowd region."""
    half = size // 2
    oy, ox = (quadrant // 2) * half, (quadrant % 2) * half
    radius = half / 8
    mask = np.zeros((size, size), dtype=bool)
    for cy in (oy + half * 0.3, oy + half * 0.7):
        for cx in (ox + half * 0.3, ox + half * 0.7):
            mask |= _disk(size, cy, cx, radius)
    return mask


def _draw(size: int, annotations: list[TinyAnnotation], rng: np.random.Generator) -> np.ndarray:
    colors = {c["id"]: np.array(c["color"], dtype=np.int16) for c in CATEGORIES}
    image = np.empty((size, size, 3), dtype=np.int16)
    image[:] = BACKGROUND
    image += rng.integers(-6, 7, size=image.shape, dtype=np.int16)
    for ann in annotations:
        image[ann.mask] = colors[ann.category_id]
    return np.clip(image, 0, 255).astype(np.uint8)


def _write_split(root: str, subset: str, year: str, num_images: int, size: int,
                 first_image_id: int, first_ann_id: int, with_crowd: bool,
                 rng: np.random.Generator) -> list[TinyImage]:
    writer = CocoSplitWriter(root, subset, year)
    images = []
    ann_id = first_ann_id
    for i in range(num_images):
        image_id = first_image_id + 7 * i
        file_name = f"{image_id:012d}.png"
        info = TinyImage(image_id, file_name, os.path.join(writer.image_dir, file_name),
                         size, size)
        quadrants = rng.permutation(4)
        segmentations = []
        for category, quadrant in zip(CATEGORIES, quadrants[:3]):
            mask, segmentation, encoding = _quadrant_object(category["id"], size,
                                                            int(quadrant), rng)
            info.annotations.append(TinyAnnotation(ann_id, category["id"], 0, mask, encoding))
            segmentations.append(segmentation)
            ann_id += 1
        if with_crowd and i == 0:
            mask = _crowd(size, int(quadrants[3]))
            info.annotations.append(TinyAnnotation(ann_id, CROWD_CATEGORY_ID, 1, mask,
                                                   "uncompressed_rle"))
            segmentations.append(uncompressed_rle(mask))
            ann_id += 1
        writer.add_image(image_id, _draw(size, info.annotations, rng))
        for ann, segmentation in zip(info.annotations, segmentations):
            writer.add_annotation(image_id, ann.category_id, segmentation,
                                  area=ann.mask.sum(), bbox=mask_bbox(ann.mask),
                                  iscrowd=ann.iscrowd, annotation_id=ann.id)
        images.append(info)
    categories = [{k: c[k] for k in ("id", "name", "supercategory")} for c in CATEGORIES]
    writer.write(categories, info={"description": f"tiny COCO {subset}{year}"}, licenses=[])
    return images


def write_tiny_coco(root: str, year: str = "2017", num_train: int = 6, num_val: int = 3,
                    size: int = 64, seed: int = 0, val_crowd: bool = False) -> TinyCoco:
    """Writes the tiny data set under ``root`` and returns its ground truth.

    num_train / num_val: images per split (train2017 / val2017 by default).
    size: image side in pixels (a multiple of 16; 64 or 128 are sensible).
    val_crowd: also put a crowd annotation in the first val image (train always has one).
    """
    if size % 16 or size < 32:
        raise ValueError(f"size must be a multiple of 16 and >= 32, got {size}")
    rng = np.random.default_rng(seed)
    year = str(year)
    splits = {}
    for subset, count, first_id, first_ann, crowd in (
            ("train", num_train, 1001, 1, True), ("val", num_val, 5003, 5001, val_crowd)):
        splits[subset] = _write_split(root, subset, year, count, size, first_id, first_ann,
                                      crowd, rng)
    categories = [{k: c[k] for k in ("id", "name", "supercategory")} for c in CATEGORIES]
    return TinyCoco(root=str(root), year=year, categories=categories, splits=splits)
