"""The one writer of COCO-format test data: images as PNG files and the annotation JSON.

The fixtures (tiny_coco, siamese_coco, eval_coco, the learning test's two-category set)
decide what to draw; this module writes it the way COCO lays it out:

    {root}/{subset}{year}/{image id:012d}.png
    {root}/annotations/instances_{subset}{year}.json

and encodes masks in COCO's three segmentation formats (polygon, compressed RLE,
uncompressed RLE as COCO's crowds use).
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


def compressed_rle(mask: np.ndarray) -> dict:
    """COCO's compressed RLE of a [H, W] mask, JSON-ready (counts as text)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's crowd encoding: run lengths over the column-major pixels, zeros first."""
    flat = mask.flatten(order="F").astype(np.uint8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"size": [int(s) for s in mask.shape], "counts": [int(c) for c in counts]}


def box_polygon(y1: int, x1: int, y2: int, x2: int) -> list:
    """The polygon of a box whose pixels are mask[y1:y2, x1:x2]."""
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def mask_bbox(mask: np.ndarray) -> list:
    """COCO's [x, y, width, height] of a mask's pixels (floats)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1)]


class CocoSplitWriter:
    """Collects one split's images and annotations, then writes them (``write``)."""

    def __init__(self, root: str, subset: str, year: str = "2017"):
        self.root = str(root)
        self.name = f"{subset}{year}"
        self.image_dir = os.path.join(self.root, self.name)
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    @property
    def annotation_path(self) -> str:
        return os.path.join(self.root, "annotations", f"instances_{self.name}.json")

    def add_image(self, image_id: int, pixels: np.ndarray) -> str:
        """Saves ``pixels`` ([H, W, 3] uint8) as {image_id:012d}.png; returns the path."""
        os.makedirs(self.image_dir, exist_ok=True)
        file_name = f"{image_id:012d}.png"
        path = os.path.join(self.image_dir, file_name)
        Image.fromarray(pixels).save(path)
        self.images.append({"id": image_id, "file_name": file_name,
                            "height": int(pixels.shape[0]), "width": int(pixels.shape[1])})
        return path

    def add_annotation(self, image_id: int, category_id: int, segmentation: Any, *,
                       area: float, bbox: Sequence, iscrowd: int = 0,
                       annotation_id: Optional[int] = None) -> dict:
        """One annotation; ids count from 1 unless given."""
        annotation = {"id": annotation_id if annotation_id is not None
                      else len(self.annotations) + 1,
                      "image_id": image_id, "category_id": category_id,
                      "segmentation": segmentation, "area": float(area), "bbox": list(bbox),
                      "iscrowd": iscrowd}
        self.annotations.append(annotation)
        return annotation

    def write(self, categories: Sequence[dict], **extra: Any) -> str:
        """Writes the annotation file (``extra``: more top-level keys, e.g. info)."""
        os.makedirs(os.path.dirname(self.annotation_path), exist_ok=True)
        data = {**extra, "images": self.images, "annotations": self.annotations,
                "categories": list(categories)}
        with open(self.annotation_path, "w", encoding="utf-8") as f:
            json.dump(data, f)
        return self.annotation_path
