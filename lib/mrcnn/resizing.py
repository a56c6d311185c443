"""Resizing images and masks, mini masks (Matterport's mrcnn.utils names).

Parity notes: images and masks are resized with skimage's bilinear resize, constant
zero borders and no anti-aliasing (skimage 0.13 behaviour); mask zoom uses scipy's
nearest neighbour. Assertions of the original are ValueErrors that say what was
expected.
"""
from __future__ import annotations

import random
import warnings
from typing import Optional, Tuple

import numpy as np
import scipy.ndimage
import skimage.transform


############################################################
#  Resizing
############################################################

def resize(image: np.ndarray, output_shape, order: int = 1, mode: str = "constant",
           cval: float = 0, clip: bool = True, preserve_range: bool = False,
           anti_aliasing: bool = False, anti_aliasing_sigma=None) -> np.ndarray:
    """A wrapper for skimage.transform.resize with Matterport's defaults.

    Bilinear, constant (zero) borders and no anti-aliasing, as skimage 0.13
    did. Boolean input is resized as 0/1 floats (what skimage 0.13 did;
    modern skimage refuses bool with order > 0).
    """
    if image.dtype == bool and order != 0:
        image = image.astype(np.float64)
    return skimage.transform.resize(
        image, output_shape,
        order=order, mode=mode, cval=cval, clip=clip,
        preserve_range=preserve_range, anti_aliasing=anti_aliasing,
        anti_aliasing_sigma=anti_aliasing_sigma)


def resize_image(image: np.ndarray, min_dim: Optional[int] = None,
                 max_dim: Optional[int] = None, min_scale: Optional[float] = None,
                 mode: str = "square"):
    """Resizes an image keeping the aspect ratio unchanged.

    image: [H, W] or [H, W, C].
    min_dim: if provided, scales the image up so that its smaller side is
        min_dim (never down).
    max_dim: in square mode, ensures that the longest side doesn't exceed
        this value, and pads to [max_dim, max_dim].
    min_scale: if provided, scale up by at least this factor even if
        min_dim doesn't require it.
    mode: Resizing mode.
        none: No resizing. Return the image unchanged.
        square: Resize and pad with zeros to get a square image
            of size [max_dim, max_dim].
        pad64: Pads width and height with zeros to make them multiples of 64.
            If min_dim or min_scale are provided, it scales the image up
            before padding. max_dim is ignored in this mode.
        crop: Picks random crops from the image. First, scales the image based
            on min_dim and min_scale, then picks a random crop of
            size min_dim x min_dim. Can be used in training only.
            max_dim is not used in this mode.

    Returns:
    image: the resized image, same dtype as the input
    window: (y1, x1, y2, x2) of the image inside the padded result
        (y2, x2 excluded).
    scale: The scale factor used to resize the image
    padding: Padding added to the image [(top, bottom), (left, right), (0, 0)]
    crop: (y, x, h, w) of the crop in crop mode, else None
    """
    _check_image(image)
    image_dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None

    if mode == "none":
        return image, window, scale, padding, crop
    _check_resize_args(mode, min_dim, max_dim)

    if min_dim:
        # Scale up but not down
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale

    # Does it exceed max dim?
    if max_dim and mode == "square":
        image_max = max(h, w)
        if round(image_max * scale) > max_dim:
            scale = max_dim / image_max

    if scale != 1:
        image = resize(image, (round(h * scale), round(w * scale)),
                       preserve_range=True)

    h, w = image.shape[:2]
    if mode == "square":
        top_pad = (max_dim - h) // 2
        bottom_pad = max_dim - h - top_pad
        left_pad = (max_dim - w) // 2
        right_pad = max_dim - w - left_pad
        padding = [(top_pad, bottom_pad), (left_pad, right_pad), (0, 0)]
        image = _pad(image, padding)
        window = (top_pad, left_pad, h + top_pad, w + left_pad)
    elif mode == "pad64":
        top_pad, bottom_pad = _pad64_split(h)
        left_pad, right_pad = _pad64_split(w)
        padding = [(top_pad, bottom_pad), (left_pad, right_pad), (0, 0)]
        image = _pad(image, padding)
        window = (top_pad, left_pad, h + top_pad, w + left_pad)
    else:  # crop
        if h < min_dim or w < min_dim:
            raise ValueError("crop mode needs an image of at least {0}x{0} after "
                             "scaling; got {1}x{2}".format(min_dim, h, w))
        y = random.randint(0, (h - min_dim))
        x = random.randint(0, (w - min_dim))
        crop = (y, x, min_dim, min_dim)
        image = image[y:y + min_dim, x:x + min_dim]
        window = (0, 0, min_dim, min_dim)
    return image.astype(image_dtype), window, scale, padding, crop


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError("resize_image expects a numpy array; got {}".format(
            type(image).__name__))
    if image.ndim not in (2, 3):
        raise ValueError("resize_image expects an image of shape [H, W] or "
                         "[H, W, C]; got shape {}".format(image.shape))
    if image.shape[0] == 0 or image.shape[1] == 0 or image.size == 0:
        raise ValueError("resize_image got an empty image of shape {}".format(
            image.shape))


def _check_resize_args(mode: str, min_dim, max_dim) -> None:
    if mode not in ("square", "pad64", "crop"):
        raise ValueError("Mode {} not supported: expected one of 'none', "
                         "'square', 'pad64', 'crop'".format(mode))
    if mode == "square" and not max_dim:
        raise ValueError("square mode needs max_dim; got {!r}".format(max_dim))
    if mode == "pad64" and (min_dim is None or min_dim % 64 != 0):
        raise ValueError("Minimum dimension must be a multiple of 64 in pad64 "
                         "mode; got min_dim={!r}".format(min_dim))
    if mode == "crop" and not min_dim:
        raise ValueError("crop mode needs min_dim (the crop size); got {!r}".format(
            min_dim))


def _pad64_split(size: int) -> Tuple[int, int]:
    """(before, after) zero padding that makes size a multiple of 64."""
    if size % 64 == 0:
        return 0, 0
    total = size - (size % 64) + 64 - size
    return total // 2, total - total // 2


def _pad(image: np.ndarray, padding) -> np.ndarray:
    """Zero-pad; a 2-D (grayscale) image uses the first two entries."""
    return np.pad(image, padding[:image.ndim], mode="constant", constant_values=0)


def resize_mask(mask: np.ndarray, scale: float, padding, crop=None) -> np.ndarray:
    """Resize masks [H, W, N] with the scale and padding (or crop) returned
    by resize_image(), so that image and masks stay aligned.

    scale: mask scaling factor
    padding: [(top, bottom), (left, right), (0, 0)]
    crop: (y, x, h, w) or None
    """
    # scipy warns that zoom() computes the output shape with round().
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask = scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0)
    if crop is not None:
        y, x, h, w = crop
        mask = mask[y:y + h, x:x + w]
    else:
        mask = np.pad(mask, padding, mode="constant", constant_values=0)
    return mask


def minimize_mask(bbox: np.ndarray, mask: np.ndarray, mini_shape) -> np.ndarray:
    """Crop each mask to its box and resize it to mini_shape (bool) to
    reduce memory load. expand_mask() reverses it.

    bbox: [N, (y1, x1, y2, x2)]; mask: [H, W, N]; returns [h, w, N] bool.
    """
    mini_shape = tuple(mini_shape)
    mini_mask = np.zeros(mini_shape + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        # Cast to bool in case load_mask() returned another dtype
        m = mask[:, :, i].astype(bool)
        y1, x1, y2, x2 = bbox[i][:4]
        m = m[y1:y2, x1:x2]
        if m.size == 0:
            raise ValueError("Invalid bounding box with area of zero: {}".format(
                list(bbox[i][:4])))
        m = resize(m, mini_shape)
        mini_mask[:, :, i] = np.around(m).astype(bool)
    return mini_mask


def expand_mask(bbox: np.ndarray, mini_mask: np.ndarray, image_shape) -> np.ndarray:
    """Resize mini masks back into their boxes of an image-size mask.
    Reverses minimize_mask().

    bbox: [N, (y1, x1, y2, x2)]; mini_mask: [h, w, N]; returns [H, W, N] bool.
    """
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        m = mini_mask[:, :, i]
        y1, x1, y2, x2 = bbox[i][:4]
        h = y2 - y1
        w = x2 - x1
        m = resize(m, (h, w))
        mask[y1:y2, x1:x2, i] = np.around(m).astype(bool)
    return mask


def mold_mask(mask, config):
    """Placeholder in Matterport (an unimplemented TODO that returned None);
    raises instead of silently returning nothing."""
    raise NotImplementedError("mold_mask is not implemented (it was a TODO in "
                              "Matterport Mask R-CNN and is never used)")


def unmold_mask(mask: np.ndarray, bbox, image_shape) -> np.ndarray:
    """Convert a small float mask from the network (e.g. 28x28) into a
    binary mask of the image size, placed at bbox [y1, x1, y2, x2].

    Returns a [H, W] bool mask.
    """
    threshold = 0.5
    y1, x1, y2, x2 = bbox
    if y2 <= y1 or x2 <= x1:
        raise ValueError("unmold_mask needs a box with positive height and width; "
                         "got {}".format(list(bbox)))
    mask = resize(mask, (y2 - y1, x2 - x1))
    mask = np.where(mask >= threshold, 1, 0).astype(bool)

    full_mask = np.zeros(tuple(image_shape[:2]), dtype=bool)
    full_mask[y1:y2, x1:x2] = mask
    return full_mask
