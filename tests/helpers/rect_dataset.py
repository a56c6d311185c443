"""Two-object rectangle images and the tiny Mask R-CNN config of the multi-replica checks
(parallel_check.py, multi_worker_check.py). Importing it creates no TensorFlow state."""
from __future__ import annotations

import numpy as np

from mrcnn import utils
from mrcnn.config import Config
from tests.helpers.shapes_dataset import TINY_FIELDS, tiny_config

SIZE = TINY_FIELDS["IMAGE_MAX_DIM"]  # the tiny config's input size


def make_config(gpu_count: int, images_per_gpu: int, **overrides) -> Config:
    """A tiny Mask R-CNN config (64 px, resnet_tiny)."""
    fields = dict(
        NAME="par", NUM_CLASSES=3, GPU_COUNT=gpu_count, IMAGES_PER_GPU=images_per_gpu,
        RPN_TRAIN_ANCHORS_PER_IMAGE=16, POST_NMS_ROIS_TRAINING=8, POST_NMS_ROIS_INFERENCE=16,
        TRAIN_ROIS_PER_IMAGE=8, ROI_POSITIVE_RATIO=0.5, MAX_GT_INSTANCES=4,
        DETECTION_MIN_CONFIDENCE=0.0, STEPS_PER_EPOCH=2, TRAIN_BN=False)
    fields.update(overrides)
    return tiny_config(**fields)


# Per image id: two objects (class id, [y1, x1, y2, x2] pixels), in different places.
OBJECTS = {
    0: [(1, (10, 10, 30, 30)), (2, (36, 30, 56, 50))],
    1: [(2, (6, 34, 26, 58)), (1, (30, 10, 56, 30))],
    2: [(1, (20, 20, 44, 44)), (2, (44, 8, 60, 28))],
    3: [(2, (12, 12, 32, 40)), (1, (34, 36, 54, 56))],
}


class ShapesDataset(utils.Dataset):
    """Filled rectangles of two classes on a grey background."""

    def load(self) -> None:
        self.add_class("rect", 1, "red")
        self.add_class("rect", 2, "green")
        for image_id in OBJECTS:
            self.add_image("rect", image_id=image_id, path=None)

    def load_image(self, image_id):
        image = np.full((SIZE, SIZE, 3), 40, np.uint8)
        for class_id, (y1, x1, y2, x2) in OBJECTS[image_id]:
            image[y1:y2, x1:x2] = (200, 40, 40) if class_id == 1 else (40, 200, 40)
        return image

    def load_mask(self, image_id):
        objects = OBJECTS[image_id]
        masks = np.zeros((SIZE, SIZE, len(objects)), bool)
        for i, (_, (y1, x1, y2, x2)) in enumerate(objects):
            masks[y1:y2, x1:x2, i] = True
        return masks, np.array([c for c, _ in objects], np.int32)
