"""References: preparing them for the network and batching them through the backbone.

The k references of each query share the query's ResNet and FPN. Rather than calling
the backbone k times (the old code sliced the target input with k Lambdas), the
references are folded into the batch axis for one backbone call and unfolded after.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

from mrcnn import utils
from mrcnn.molding import check_image, mold_image

#: A reference smaller than this (pixels, either side) carries no usable appearance.
MIN_REFERENCE_SIDE = 4


@keras.saving.register_keras_serializable(package="siamese_mrcnn")
class MergeReferences(keras.layers.Layer):
    """[batch, k, T, T, 3] -> [batch * k, T, T, 3] (references folded into the batch)."""

    def call(self, references):
        return ops.reshape(references, [-1, *ops.shape(references)[2:]])

    def compute_output_shape(self, input_shape):
        batch, k = input_shape[0], input_shape[1]
        merged = batch * k if batch is not None and k is not None else None
        return (merged,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="siamese_mrcnn")
class SplitReferences(keras.layers.Layer):
    """[batch * k, h, w, C] -> [batch, k, h, w, C] (the inverse of MergeReferences)."""

    def __init__(self, num_references: int, **kwargs):
        super().__init__(**kwargs)
        self.num_references = int(num_references)

    def call(self, features):
        return ops.reshape(features, [-1, self.num_references, *ops.shape(features)[1:]])

    def compute_output_shape(self, input_shape):
        return (None, self.num_references) + tuple(input_shape[1:])

    def get_config(self):
        config = super().get_config()
        config["num_references"] = self.num_references
        return config


def prepare_reference(reference: np.ndarray, config, name: str = "reference") -> np.ndarray:
    """Resizes one raw reference like get_one_target does for training: resize_image in
    "square" mode (min TARGET_MIN_DIM, max TARGET_MAX_DIM), zero-padded to T x T.

    Returns [T, T, 3] float32, mean-subtracted when config.REFERENCE_MOLDING (the
    training-time input), raw pixel values otherwise (the old code's inference).
    """
    reference = check_image(reference, name=name)
    h, w = reference.shape[:2]
    if min(h, w) < MIN_REFERENCE_SIDE:
        raise ValueError(f"{name}: expected a reference of at least {MIN_REFERENCE_SIDE}x"
                         f"{MIN_REFERENCE_SIDE} pixels, got {h}x{w}")
    # "square" whatever IMAGE_RESIZE_MODE says: the network input is T x T.
    resized = utils.resize_image(reference, min_dim=config.TARGET_MIN_DIM,
                                 min_scale=config.IMAGE_MIN_SCALE,
                                 max_dim=config.TARGET_MAX_DIM, mode="square")[0]
    resized = resized.astype(np.float32)  # [T, T, 3]
    if getattr(config, "REFERENCE_MOLDING", True):
        resized = mold_image(resized, config)
    return resized.astype(np.float32)


def mold_references(targets: Sequence, config) -> np.ndarray:
    """Raw references (one list of k per query, or one image per query when k = 1)
    -> [batch, k, T, T, 3] float32 network input.
    """
    if not isinstance(targets, (list, tuple, np.ndarray)):
        raise ValueError(f"targets must be a list (one entry per query image), got "
                         f"{type(targets).__name__}")
    if len(targets) == 0:
        raise ValueError("targets: expected one entry per query image, got none")
    if isinstance(targets, np.ndarray) and targets.ndim == 3:
        # Its rows would be read as references: "got 20x3 pixels".
        raise ValueError(f"targets: expected one entry per query image, got one array of "
                         f"shape {targets.shape}: a single reference goes in a list, "
                         "[reference]")
    k = config.NUM_TARGETS
    batch = []
    for i, refs in enumerate(targets):
        if isinstance(refs, np.ndarray) and refs.ndim in (2, 3):
            refs = [refs]  # one reference given as an image
        if not isinstance(refs, (list, tuple, np.ndarray)):
            raise ValueError(f"targets[{i}]: expected a list of NUM_TARGETS={k} reference "
                             f"image(s), got {type(refs).__name__}")
        if len(refs) != k:
            raise ValueError(f"targets[{i}]: expected NUM_TARGETS={k} reference image(s), "
                             f"got {len(refs)}")
        batch.append(np.stack([prepare_reference(r, config, name=f"targets[{i}][{j}]")
                               for j, r in enumerate(refs)]))
    return np.stack(batch)


def randomize_detections(detections: np.ndarray, windows: np.ndarray, image_shape,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """The random-boxes baseline (SPEC §7): each detection moved uniformly inside the
    image window with its size kept, scores shuffled among the detections.

    Rows stay in place, so each detection keeps its class id and its row of the mask
    output (its mask is pasted at the moved box); sort by score after unmolding.

    detections: [batch, N, (y1, x1, y2, x2, class_id, score)] normalized, zero padded.
    windows: [batch, (y1, x1, y2, x2)] pixel windows of the molded images.
    image_shape: the molded image shape [H, W, ...].
    Returns a new array like detections.
    """
    rng = rng or np.random.default_rng()
    out = np.array(detections, dtype=np.float32, copy=True)
    if out.ndim != 3 or out.shape[-1] != 6:
        raise ValueError("detections: expected [batch, N, (y1, x1, y2, x2, class_id, "
                         f"score)], got shape {out.shape}")
    norm_windows = utils.norm_boxes(np.asarray(windows), tuple(image_shape[:2]))
    for b in range(out.shape[0]):
        det = out[b]
        # Detections come first, zero padding after (DetectionLayer's layout).
        n = int(np.count_nonzero(det[:, 4]))
        if n == 0:
            continue
        wy1, wx1, wy2, wx2 = norm_windows[b]
        boxes = det[:n, :4]
        h = boxes[:, 2] - boxes[:, 0]
        w = boxes[:, 3] - boxes[:, 1]
        # A box larger than the window keeps its size and is placed at the window origin.
        y1 = wy1 + rng.uniform(0, 1, n) * np.maximum(wy2 - wy1 - h, 0)
        x1 = wx1 + rng.uniform(0, 1, n) * np.maximum(wx2 - wx1 - w, 0)
        det[:n, :4] = np.stack([y1, x1, y1 + h, x1 + w], axis=1)
        det[:n, 5] = rng.permutation(det[:n, 5])
    return out


def sort_by_score(result: dict) -> dict:
    """A detect() result dict with its detections in decreasing score order."""
    order = np.argsort(-np.asarray(result["scores"]), kind="stable")
    sorted_result = dict(result)
    for key in ("rois", "class_ids", "scores"):
        sorted_result[key] = np.asarray(result[key])[order]
    sorted_result["masks"] = np.asarray(result["masks"])[..., order]
    return sorted_result
