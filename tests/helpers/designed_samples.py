"""Training samples whose every in-graph random draw is a mere permutation (the
multi-worker and cross-backend checks compare training steps exactly).

With USE_RPN_ROIS=False every sample's ROIs are 4 with IoU >= 0.5 to a ground-truth box
and 4 with IoU 0, so with TRAIN_ROIS_PER_IMAGE = 8 and ROI_POSITIVE_RATIO = 0.5 the
detection-target layer keeps every ROI and its random sampling only orders them; every
sample keeps 2 positive and 8 negative RPN anchors, so a mean over a batch equals the
mean of per-image means. Use with tests.helpers.rect_dataset's ShapesDataset and
make_config(..., USE_RPN_ROIS=False).
"""
from __future__ import annotations

import numpy as np

from mrcnn import model as modellib
from mrcnn import utils
from mrcnn.data import DataGenerator

POSITIVE_ANCHORS, NEGATIVE_ANCHORS = 2, 8
CORNERS = [[0, 0, 6, 6], [58, 58, 64, 64], [0, 58, 6, 64], [58, 0, 64, 6]]


class DesignedSamples(DataGenerator):
    """Samples whose RPN anchors and ROIs are chosen so that no in-graph draw matters."""

    def load_sample(self, image_id):
        sample = super().load_sample(image_id)
        match = sample.rpn_match.copy()
        positive, negative = np.where(match == 1)[0], np.where(match == -1)[0]
        if len(positive) < POSITIVE_ANCHORS or len(negative) < NEGATIVE_ANCHORS:
            raise RuntimeError(f"image {image_id}: too few anchors {len(positive)}, "
                               f"{len(negative)}")
        match[positive[POSITIVE_ANCHORS:]] = 0
        match[negative[NEGATIVE_ANCHORS:]] = 0
        bbox = sample.rpn_bbox.copy()
        bbox[POSITIVE_ANCHORS:] = 0  # rows follow the positive anchors' order
        boxes = sample.gt_boxes[sample.gt_class_ids > 0]
        positives = [box + shift for box in boxes for shift in ([1, 1, 1, 1], [-1, 0, 0, 1])]
        rois = np.array(positives + CORNERS, np.int32)
        iou = utils.compute_overlaps(rois.astype(np.float32), boxes.astype(np.float32))
        if not (np.all(iou[:4].max(1) >= 0.5) and np.all(iou[4:].max(1) == 0)):
            raise RuntimeError(f"ROIs are not 4 positives + 4 negatives: {iou}")
        return sample._replace(rpn_match=match, rpn_bbox=bbox, rpn_rois=rois)


class CheckModel(modellib.MaskRCNN):
    """MaskRCNN that trains on DesignedSamples."""

    def make_data_generator(self, dataset, shuffle=True, augmentation=None,
                            no_augmentation_sources=None, steps=None, batch_size=None,
                            seed=None):
        return DesignedSamples(dataset, self.config, shuffle=shuffle, steps_per_epoch=steps,
                               batch_size=batch_size, seed=seed,
                               random_rois=self.config.POST_NMS_ROIS_TRAINING)
