"""Image meta, molding and input validation (Matterport 2.1's "Data Formatting").

The image meta is the per-image vector the graph reads (ids, shapes, window, scale,
active classes); molding subtracts the mean pixel. check_image turns what a user passes
(any dtype, grey, RGBA) into the uint8-compatible RGB array the model expects, or says
what is wrong with it.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
try:  # JAX and PyTorch machines may have no TensorFlow: its paths then never run
    import tensorflow as tf
except ImportError:
    tf = None


logger = logging.getLogger(__name__)

#: Whether check_image has told that float pixels in 0..1 are taken as 0..255 (told once
#: per process: a loop over a data set would otherwise repeat it for every image).
_told_unit_range = False

############################################################
#  Image meta
############################################################

def compose_image_meta(image_id: int, original_image_shape: Sequence[int],
                       image_shape: Sequence[int], window: Sequence[int],
                       scale: float, active_class_ids: Sequence[int]) -> np.ndarray:
    """Packs the attributes of an image into one 1D array.

    image_id: an int id of the image, useful for debugging.
    original_image_shape: [H, W, C] before resizing or padding.
    image_shape: [H, W, C] after resizing and padding.
    window: (y1, x1, y2, x2) in pixels: the area of the image holding the real
        image (excluding the padding).
    scale: the scaling factor applied to the original image.
    active_class_ids: [NUM_CLASSES] 1 for the classes of the data set the image
        came from, 0 otherwise.

    Returns: [12 + NUM_CLASSES] float64 array.
    """
    meta = np.array(
        [image_id] +                  # size=1
        list(original_image_shape) +  # size=3
        list(image_shape) +           # size=3
        list(window) +                # size=4 (y1, x1, y2, x2) in image coordinates
        [scale] +                     # size=1
        list(active_class_ids)        # size=num_classes
    )
    return meta


def parse_image_meta(meta: np.ndarray) -> dict[str, np.ndarray]:
    """Splits a batch of image meta arrays into its components (numpy).

    meta: [batch, 12 + NUM_CLASSES]. See compose_image_meta().
    Returns a dict of int32 arrays (scale: float32).
    """
    meta = np.asarray(meta)
    return {
        "image_id": meta[:, 0].astype(np.int32),                  # [batch]
        "original_image_shape": meta[:, 1:4].astype(np.int32),    # [batch, 3]
        "image_shape": meta[:, 4:7].astype(np.int32),             # [batch, 3]
        "window": meta[:, 7:11].astype(np.int32),                 # [batch, (y1, x1, y2, x2)]
        "scale": meta[:, 11].astype(np.float32),                  # [batch]
        "active_class_ids": meta[:, 12:].astype(np.int32),        # [batch, NUM_CLASSES]
    }


def parse_image_meta_graph(meta: tf.Tensor) -> dict[str, tf.Tensor]:
    """Splits a batch of image meta tensors into its components (TF graph).

    meta: [batch, 12 + NUM_CLASSES]. See compose_image_meta().
    Returns a dict of tensors with the dtype of `meta`.
    """
    return {
        "image_id": meta[:, 0],
        "original_image_shape": meta[:, 1:4],
        "image_shape": meta[:, 4:7],
        "window": meta[:, 7:11],  # (y1, x1, y2, x2) window of image in pixels
        "scale": meta[:, 11],
        "active_class_ids": meta[:, 12:],
    }


############################################################
#  Molding and input validation
############################################################

def mold_image(images: np.ndarray, config: Any) -> np.ndarray:
    """Subtracts config.MEAN_PIXEL from RGB image(s) [..., 3].

    Returns floats: float64 with the default float64 MEAN_PIXEL (numpy's
    promotion of float32 - float64), as in Matterport.
    """
    return images.astype(np.float32) - config.MEAN_PIXEL


def unmold_image(normalized_images: np.ndarray, config: Any) -> np.ndarray:
    """Inverse of mold_image(): adds the mean pixel back, returns uint8.

    Rounds and clips to [0, 255] before the cast. Matterport truncated, which
    turns about half of the pixels of a float32 batch image into value - 1.
    """
    image = np.round(normalized_images + config.MEAN_PIXEL)
    return np.clip(image, 0, 255).astype(np.uint8)


def check_image(image: Any, name: str = "image") -> np.ndarray:
    """Validates an image and returns it as [H, W, 3] with its dtype kept.

    Grayscale ([H, W] or [H, W, 1]) is repeated to RGB and RGBA loses its alpha
    channel. Raises ValueError, naming `name`, for anything that is not a
    non-empty 2D/3D integer or float array with 1, 3 or 4 channels, and for NaN or
    infinite pixels; logs a warning (once) for float pixels that are all in 0..1.
    """
    array = np.asarray(image)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer)
                                   or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name}: expected an integer or float array (e.g. uint8 RGB), "
                         f"got dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise ValueError(f"{name}: expected shape [H, W] or [H, W, C], "
                         f"got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: expected a non-empty image, got shape {array.shape}")
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    channels = array.shape[2]
    if channels not in (1, 3, 4):
        raise ValueError(f"{name}: expected 1, 3 or 4 channels (gray, RGB, RGBA), "
                         f"got {channels} channels in shape {np.shape(image)}")
    if channels == 1:
        array = np.repeat(array, 3, axis=2)
    elif channels == 4:
        array = array[:, :, :3]
    if np.issubdtype(array.dtype, np.floating):
        _check_float_pixels(array, name)
    return array


def _check_float_pixels(array: np.ndarray, name: str) -> None:
    """NaN or inf pixels raise; pixels all in 0..1 (torchvision's and PIL-to-float
    convention) are told once, since the model takes them as 0..255 values (MEAN_PIXEL
    is in 0..255) and finds nothing, without any error."""
    global _told_unit_range
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(f"{name}: expected finite pixel values (0..255), got "
                         f"{array.size - int(finite.sum())} NaN or infinite value(s)")
    if not _told_unit_range and 0 <= array.min() and 0 < array.max() <= 1:
        _told_unit_range = True
        logger.warning("%s: float pixels all in 0..1, but the model reads pixel values in "
                       "0..255 (like a uint8 image): multiply by 255, or the detections "
                       "mean nothing (told once)", name)
