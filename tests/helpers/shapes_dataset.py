"""An in-memory shapes data set and a tiny Mask R-CNN config for CPU model tests.

``ShapesDataset`` is an ``mrcnn.utils.Dataset`` of small RGB images (64 px by default)
holding 1-3 non-overlapping coloured squares, circles and triangles on a plain
background. Each shape is drawn from its own boolean mask, so the masks (and the boxes
``utils.extract_bboxes`` derives from them) are exact. Everything is generated from a
seed and kept in memory; nothing is written to disk.

``tiny_config(**fields)`` returns a ``Config`` instance sized for CPU tests
(resnet_tiny backbone, 64 px images, narrow FPN and heads, few ROIs); keyword arguments
override any field.

    from tests.helpers.shapes_dataset import ShapesDataset, tiny_config
    dataset = ShapesDataset.generate(count=4, seed=0)
    config = tiny_config(IMAGES_PER_GPU=1)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.draw import disk, polygon

from mrcnn import utils
from mrcnn.config import Config

SHAPES = ("square", "circle", "triangle")
BACKGROUND = (40, 40, 40)
# One colour per shape class, far apart so a tiny network separates them quickly.
COLORS = {"square": (220, 40, 40), "circle": (40, 210, 60), "triangle": (60, 80, 230)}


@dataclass
class ShapeSpec:
    """One drawn shape: its class name, centre (y, x) and half size, in pixels."""

    shape: str
    y: int
    x: int
    size: int


def shape_mask(spec: ShapeSpec, height: int, width: int) -> np.ndarray:
    """The [height, width] bool mask of one shape."""
    mask = np.zeros((height, width), dtype=bool)
    y, x, s = spec.y, spec.x, spec.size
    if spec.shape == "square":
        mask[y - s:y + s, x - s:x + s] = True
    elif spec.shape == "circle":
        rr, cc = disk((y, x), s, shape=(height, width))
        mask[rr, cc] = True
    elif spec.shape == "triangle":
        rr, cc = polygon([y - s, y + s, y + s], [x, x - s, x + s], shape=(height, width))
        mask[rr, cc] = True
    else:
        raise ValueError(f"shape must be one of {SHAPES}, got {spec.shape!r}")
    return mask


def random_specs(rng: np.random.Generator, shapes: tuple, height: int, width: int,
                 max_shapes: int = 3, min_size: int = 6, max_size: int = 12) -> list:
    """1..max_shapes shapes whose bounding squares do not overlap (with a 2 px gap)."""
    specs: list[ShapeSpec] = []
    target = int(rng.integers(1, max_shapes + 1))
    for _ in range(100):
        if len(specs) == target:
            break
        size = int(rng.integers(min_size, max_size + 1))
        y = int(rng.integers(size + 1, height - size - 1))
        x = int(rng.integers(size + 1, width - size - 1))
        if all(abs(y - o.y) > size + o.size + 2 or abs(x - o.x) > size + o.size + 2
               for o in specs):
            specs.append(ShapeSpec(str(rng.choice(shapes)), y, x, size))
    return specs


class ShapesDataset(utils.Dataset):
    """Coloured shapes with exact masks, generated in memory.

    Class ids follow ``shapes`` (1 = shapes[0], ...). Each image info holds its
    ``specs`` (list of ShapeSpec) and size.
    """

    @classmethod
    def generate(cls, count: int, seed: int = 0, shapes: tuple = SHAPES,
                 height: int = 64, width: int = 64, max_shapes: int = 3) -> "ShapesDataset":
        """A prepared data set of ``count`` random images."""
        rng = np.random.default_rng(seed)
        dataset = cls()
        dataset.add_shape_classes(shapes)
        for i in range(count):
            specs = random_specs(rng, shapes, height, width, max_shapes=max_shapes)
            dataset.add_image("shapes", image_id=i, path=None, height=height,
                              width=width, specs=specs)
        dataset.prepare()
        return dataset

    @classmethod
    def from_specs(cls, images: list, shapes: tuple = SHAPES, height: int = 64,
                   width: int = 64) -> "ShapesDataset":
        """A prepared data set with the given shapes: images is [[ShapeSpec, ...], ...]."""
        dataset = cls()
        dataset.add_shape_classes(shapes)
        for i, specs in enumerate(images):
            dataset.add_image("shapes", image_id=i, path=None, height=height,
                              width=width, specs=list(specs))
        dataset.prepare()
        return dataset

    def add_shape_classes(self, shapes: tuple) -> None:
        self.shapes = tuple(shapes)
        for class_id, name in enumerate(self.shapes, start=1):
            self.add_class("shapes", class_id, name)

    def load_image(self, image_id: int) -> np.ndarray:
        """[H, W, 3] uint8: the background with each shape painted through its mask."""
        info = self.image_info[image_id]
        image = np.empty((info["height"], info["width"], 3), dtype=np.uint8)
        image[:] = BACKGROUND
        masks, _ = self.load_mask(image_id)
        for spec, mask in zip(info["specs"], np.moveaxis(masks, -1, 0)):
            image[mask] = COLORS[spec.shape]
        return image

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """masks [H, W, N] bool and class_ids [N] int32."""
        info = self.image_info[image_id]
        h, w = info["height"], info["width"]
        specs = info["specs"]
        if not specs:
            return np.zeros((h, w, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        masks = np.stack([shape_mask(s, h, w) for s in specs], axis=-1)
        class_ids = np.array([self.shapes.index(s.shape) + 1 for s in specs], np.int32)
        return masks, class_ids

    def image_reference(self, image_id: int) -> str:
        return f"shapes image {image_id}: {[s.shape for s in self.image_info[image_id]['specs']]}"


# A tiny network for CPU tests; every size is a multiple the graph needs (64 px input,
# MASK_SHAPE = 2 * MASK_POOL_SIZE).
TINY_FIELDS = dict(
    NAME="tiny", BACKBONE="resnet_tiny", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64,
    NUM_CLASSES=1 + len(SHAPES), GPU_COUNT=1, IMAGES_PER_GPU=1,
    TOP_DOWN_PYRAMID_SIZE=32, FPN_CLASSIF_FC_LAYERS_SIZE=64, MASK_HEAD_CONV_CHANNELS=32,
    RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), PRE_NMS_LIMIT=600,
    POST_NMS_ROIS_TRAINING=64, POST_NMS_ROIS_INFERENCE=32,
    TRAIN_ROIS_PER_IMAGE=16, RPN_TRAIN_ANCHORS_PER_IMAGE=32, MAX_GT_INSTANCES=5,
    DETECTION_MAX_INSTANCES=8, MINI_MASK_SHAPE=(28, 28), STEPS_PER_EPOCH=1,
    VALIDATION_STEPS=1,
)


def tiny_config(**fields) -> Config:
    """A validated Config with TINY_FIELDS, overridden by ``fields``."""
    values = dict(TINY_FIELDS, **fields)
    return type("TinyConfig", (Config,), values)()
