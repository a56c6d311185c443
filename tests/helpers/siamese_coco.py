"""A small hand-made COCO-format data set for the Siamese data tests.

``write_siamese_coco(root)`` writes ``annotations/instances_train2017.json`` and
``train2017/*.png``: 64 x 64 images on a dark grey background with textured
rectangles whose pixels identify their instance. Categories occur in chosen
images only, so tests can check indices, reference drawing from other images,
crowds and annotations too small to rasterise:

=====  ========  =========================================================
index  COCO id   annotations (category COCO id, box y1 x1 y2 x2)
=====  ========  =========================================================
0      101       2: (4, 4, 20, 24)
1      108       2: (30, 30, 50, 54); 5: (5, 40, 25, 60)
2      115       2: (10, 10, 28, 40); 2 crowd (uncompressed RLE): (40, 40, 60, 60)
3      122       5: (2, 2, 18, 14); 5: (30, 20, 58, 44)
4      129       9 (compressed RLE): (8, 8, 40, 40); 5 crowd: (44, 44, 60, 60)
5      136       11: (20, 20, 44, 36); 2: a degenerate polygon (no pixel)
=====  ========  =========================================================

Category 20 has no annotation. Category ids map to internal ids 2->1, 5->2,
9->3, 11->4, 20->5 (sorted COCO ids).
"""
from __future__ import annotations

import numpy as np

from tests.helpers.coco_files import (CocoSplitWriter, box_polygon, compressed_rle,
                                      uncompressed_rle)

SIZE = 64
BACKGROUND = 40
CATEGORIES = [(2, "square"), (5, "bar"), (9, "disk"), (11, "ring"), (20, "unused")]
INTERNAL = {coco_id: i + 1 for i, (coco_id, _) in enumerate(CATEGORIES)}

# (COCO image id, [(category COCO id, (y1, x1, y2, x2) or None, iscrowd, encoding)])
IMAGES = [
    (101, [(2, (4, 4, 20, 24), 0, "polygon")]),
    (108, [(2, (30, 30, 50, 54), 0, "polygon"), (5, (5, 40, 25, 60), 0, "polygon")]),
    (115, [(2, (10, 10, 28, 40), 0, "polygon"), (2, (40, 40, 60, 60), 1, "rle_list")]),
    (122, [(5, (2, 2, 18, 14), 0, "polygon"), (5, (30, 20, 58, 44), 0, "polygon")]),
    (129, [(9, (8, 8, 40, 40), 0, "rle"), (5, (44, 44, 60, 60), 1, "rle_list")]),
    (136, [(11, (20, 20, 44, 36), 0, "polygon"), (2, None, 0, "degenerate")]),
]


def instance_pixels(instance: int, height: int, width: int) -> np.ndarray:
    """Texture of instance number `instance`: [height, width, 3] uint8, never 0."""
    yy, xx = np.mgrid[:height, :width]
    base = np.array([60 + 23 * instance, 200 - 17 * instance, 90 + 11 * instance])
    texture = ((yy + 2 * xx) % 5) * 7
    return (base[None, None, :] + texture[:, :, None]).astype(np.uint8)


def _segmentation(box, encoding):
    if encoding == "degenerate":
        return [[10, 10, 20, 10, 30, 10, 20, 10]]  # collinear: rasterises to nothing
    y1, x1, y2, x2 = box
    if encoding == "polygon":
        return box_polygon(y1, x1, y2, x2)
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    return compressed_rle(mask) if encoding == "rle" else uncompressed_rle(mask)


def write_siamese_coco(root: str, subset: str = "train", year: str = "2017") -> dict:
    """Writes the data set under root; returns {COCO image id: image array [64, 64, 3]}."""
    writer = CocoSplitWriter(root, subset, year)
    arrays = {}
    for image_id, objects in IMAGES:
        pixels = np.full((SIZE, SIZE, 3), BACKGROUND, dtype=np.uint8)
        for category_id, box, iscrowd, encoding in objects:
            instance = len(writer.annotations) + 1
            if box is not None:
                y1, x1, y2, x2 = box
                pixels[y1:y2, x1:x2] = instance_pixels(instance, y2 - y1, x2 - x1)
                bbox = [x1, y1, x2 - x1, y2 - y1]
            else:
                bbox = [10, 10, 20, 0]
            writer.add_annotation(image_id, category_id, _segmentation(box, encoding),
                                  area=bbox[2] * bbox[3], bbox=bbox, iscrowd=iscrowd)
        writer.add_image(image_id, pixels)
        arrays[image_id] = pixels
    writer.write([{"id": i, "name": n, "supercategory": "shape"} for i, n in CATEGORIES])
    return arrays
