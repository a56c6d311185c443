"""Mask R-CNN common utilities (numpy): boxes, masks, resizing, anchors,
matching and AP, and the Dataset base class.

Same names, signatures and numerics as Matterport Mask R-CNN 2.1
(mrcnn/utils.py, including its later fixes). Boxes are
[y1, x1, y2, x2] in pixels with y2/x2 *outside* the box.

Parity notes: images and masks are resized with skimage's bilinear resize,
constant zero borders and no anti-aliasing (skimage 0.13 behaviour); mask
zoom uses scipy's nearest neighbour. Assertions of the original became
ValueErrors that say what was expected.
"""
from __future__ import annotations

import logging
import os
import random
import warnings
from typing import Callable, Optional, Tuple

import numpy as np
import scipy.ndimage
import skimage.color
import skimage.io
import skimage.transform

logger = logging.getLogger(__name__)

# Where Matterport publishes its COCO weights. Nothing is downloaded at run
# time; the URL is only quoted in error messages.
COCO_MODEL_URL = ("https://github.com/matterport/Mask_RCNN/releases/download/"
                  "v2.0/mask_rcnn_coco.h5")


############################################################
#  Bounding Boxes
############################################################

def extract_bboxes(mask: np.ndarray) -> np.ndarray:
    """Compute bounding boxes from masks.

    mask: [height, width, num_instances]. Mask pixels are either 1 or 0.

    Returns: bbox array [num_instances, (y1, x1, y2, x2)] int32; an empty
    instance gets the box (0, 0, 0, 0).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError("extract_bboxes expects a mask of shape [height, width, "
                         "num_instances]; got shape {}".format(mask.shape))
    boxes = np.zeros([mask.shape[-1], 4], dtype=np.int32)  # [N, 4]
    for i in range(mask.shape[-1]):
        m = mask[:, :, i]
        columns = np.where(np.any(m, axis=0))[0]
        rows = np.where(np.any(m, axis=1))[0]
        if columns.shape[0]:
            # y2/x2 are exclusive, hence +1.
            boxes[i] = [rows[0], columns[0], rows[-1] + 1, columns[-1] + 1]
        # else: no pixels left (e.g. after resizing or cropping): zeros.
    return boxes


def compute_iou(box: np.ndarray, boxes: np.ndarray, box_area: float,
                boxes_area: np.ndarray) -> np.ndarray:
    """IoU of one box with each of a set of boxes.

    box: 1D vector [y1, x1, y2, x2]
    boxes: [boxes_count, (y1, x1, y2, x2)]
    box_area: float, the area of 'box'
    boxes_area: array of length boxes_count.

    The areas are passed in so that callers compute them once.
    """
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + boxes_area[:] - intersection[:]
    return intersection / union


def compute_overlaps(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU overlaps between two sets of boxes.

    boxes1, boxes2: [N, (y1, x1, y2, x2)].
    Returns [len(boxes1), len(boxes2)] float64. For better performance,
    pass the largest set first and the smaller second.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])

    overlaps = np.zeros((boxes1.shape[0], boxes2.shape[0]))  # [N1, N2]
    for i in range(overlaps.shape[1]):
        overlaps[:, i] = compute_iou(boxes2[i], boxes1, area2[i], area1)
    return overlaps


def compute_overlaps_masks(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """IoU overlaps between two sets of masks.

    masks1, masks2: [Height, Width, instances]. Values > 0.5 are foreground.
    Returns [instances1, instances2].
    """
    # Either set empty: an empty result of the right shape.
    if masks1.shape[-1] == 0 or masks2.shape[-1] == 0:
        return np.zeros((masks1.shape[-1], masks2.shape[-1]))
    masks1 = np.reshape(masks1 > .5, (-1, masks1.shape[-1])).astype(np.float32)
    masks2 = np.reshape(masks2 > .5, (-1, masks2.shape[-1])).astype(np.float32)
    area1 = np.sum(masks1, axis=0)
    area2 = np.sum(masks2, axis=0)

    intersections = np.dot(masks1.T, masks2)  # [N1, N2]
    union = area1[:, None] + area2[None, :] - intersections
    return intersections / union


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray,
                        threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns int32 indices of kept boxes,
    highest score first.

    boxes: [N, (y1, x1, y2, x2)]. (y2, x2) lies outside the box.
    scores: 1-D array of box scores.
    threshold: IoU above which a lower-scored box is dropped.
    """
    if boxes.shape[0] == 0:
        return np.zeros([0], dtype=np.int32)
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)

    y1 = boxes[:, 0]
    x1 = boxes[:, 1]
    y2 = boxes[:, 2]
    x2 = boxes[:, 3]
    area = (y2 - y1) * (x2 - x1)

    ixs = scores.argsort()[::-1]  # highest score first
    pick = []
    while len(ixs) > 0:
        i = ixs[0]
        pick.append(i)
        iou = compute_iou(boxes[i], boxes[ixs[1:]], area[i], area[ixs[1:]])
        # Indices into ixs[1:], so +1 for indices into ixs.
        remove_ixs = np.where(iou > threshold)[0] + 1
        ixs = np.delete(ixs, remove_ixs)
        ixs = np.delete(ixs, 0)
    return np.array(pick, dtype=np.int32)


def apply_box_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Apply refinement deltas to boxes.

    boxes: [N, (y1, x1, y2, x2)]. (y2, x2) is outside the box.
    deltas: [N, (dy, dx, log(dh), log(dw))]
    Returns [N, (y1, x1, y2, x2)] float32.
    """
    boxes = boxes.astype(np.float32)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    center_y = boxes[:, 0] + 0.5 * height
    center_x = boxes[:, 1] + 0.5 * width
    center_y += deltas[:, 0] * height
    center_x += deltas[:, 1] * width
    height *= np.exp(deltas[:, 2])
    width *= np.exp(deltas[:, 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    y2 = y1 + height
    x2 = x1 + width
    return np.stack([y1, x1, y2, x2], axis=1)


def box_refinement_graph(box, gt_box):
    """TF version of box_refinement: deltas that turn box into gt_box.

    box and gt_box are [N, (y1, x1, y2, x2)] tensors. Returns [N, 4] float32.
    """
    import tensorflow as tf  # deferred: the numpy utilities need no TF

    box = tf.cast(box, tf.float32)
    gt_box = tf.cast(gt_box, tf.float32)

    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width

    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width

    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = tf.math.log(gt_height / height)
    dw = tf.math.log(gt_width / width)
    return tf.stack([dy, dx, dh, dw], axis=1)


def box_refinement(box: np.ndarray, gt_box: np.ndarray) -> np.ndarray:
    """Deltas [N, (dy, dx, log(dh), log(dw))] (float32) that transform box
    into gt_box; both [N, (y1, x1, y2, x2)] with (y2, x2) outside the box.
    """
    box = box.astype(np.float32)
    gt_box = gt_box.astype(np.float32)

    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width

    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width

    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = np.log(gt_height / height)
    dw = np.log(gt_width / width)
    return np.stack([dy, dx, dh, dw], axis=1)


############################################################
#  Dataset
############################################################

class Dataset(object):
    """The base class for dataset classes.

    Subclass it and add the data-set specific loading, e.g.::

        class CatsAndDogsDataset(Dataset):
            def load_cats_and_dogs(self): ...
            def load_mask(self, image_id): ...
            def image_reference(self, image_id): ...

    Call ``prepare()`` after adding classes and images.
    """

    def __init__(self, class_map=None):
        self._image_ids = []
        self.image_info = []
        # Background is always the first class
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}

    def add_class(self, source: str, class_id: int, class_name: str) -> None:
        """Register a class of a source; a repeated (source, id) is ignored."""
        if "." in source:
            raise ValueError("Source name cannot contain a dot; got {!r}".format(source))
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({
            "source": source,
            "id": class_id,
            "name": class_name,
        })

    def add_image(self, source: str, image_id, path, **kwargs) -> None:
        """Register an image; extra keyword arguments are kept in its info."""
        image_info = {
            "id": image_id,
            "source": source,
            "path": path,
        }
        image_info.update(kwargs)
        self.image_info.append(image_info)

    def image_reference(self, image_id: int) -> str:
        """Return a link to the image in its source Website or details about
        the image that help looking it up or debugging it.

        Override for your dataset, but pass to this function
        if you encounter images not in your dataset.
        """
        return ""

    def prepare(self, class_map=None) -> None:
        """Build internal ids and the source <-> internal maps.

        class_map is accepted for API compatibility and, as in Matterport,
        not used.
        """
        def clean_name(name):
            """Shorter object names for cleaner display."""
            return ",".join(name.split(",")[:1])

        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)

        # "source.id" -> internal id
        self.class_from_source_map = {"{}.{}".format(info["source"], info["id"]): id
                                      for info, id in zip(self.class_info, self.class_ids)}
        self.image_from_source_map = {"{}.{}".format(info["source"], info["id"]): id
                                      for info, id in zip(self.image_info, self.image_ids)}

        # Map sources to the internal class ids they support (BG in all).
        self.sources = list(set([i["source"] for i in self.class_info]))
        self.source_class_ids = {}
        for source in self.sources:
            self.source_class_ids[source] = [
                i for i, info in enumerate(self.class_info)
                if i == 0 or source == info["source"]]

    def map_source_class_id(self, source_class_id: str) -> int:
        """Internal class id of a "source.class_id" string.

        For example: dataset.map_source_class_id("coco.12") -> 23
        """
        return self.class_from_source_map[source_class_id]

    def get_source_class_id(self, class_id: int, source: str):
        """Map an internal class ID to the class ID in the source dataset."""
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError("Class {} belongs to source {!r}, not {!r}".format(
                class_id, info["source"], source))
        return info["id"]

    def append_data(self, class_info, image_info) -> None:
        """Matterport's unfinished merge API, kept for compatibility.

        Like the original it ignores its arguments and builds
        external_to_class_id / external_to_image_id from the "map" entries
        of self.class_info and the "ds" entries of self.image_info.
        """
        self.external_to_class_id = {}
        for i, c in enumerate(self.class_info):
            for ds, id in c["map"]:
                self.external_to_class_id[ds + str(id)] = i

        self.external_to_image_id = {}
        for i, info in enumerate(self.image_info):
            self.external_to_image_id[info["ds"] + str(info["id"])] = i

    @property
    def image_ids(self):
        return self._image_ids

    def source_image_link(self, image_id: int):
        """Returns the path or URL to the image. Override this to return a
        URL to the image if it's available online for easy debugging.
        """
        return self.image_info[image_id]["path"]

    def load_image(self, image_id: int) -> np.ndarray:
        """Load the specified image and return a [H,W,3] Numpy array.

        Grayscale images are converted to RGB and an alpha channel dropped.
        """
        image = skimage.io.imread(self.image_info[image_id]["path"])
        return _to_rgb(image)

    def load_mask(self, image_id: int) -> Tuple[np.ndarray, np.ndarray]:
        """Load instance masks for the given image.

        Override this for your data set. Returns:
            masks: A bool array of shape [height, width, instance count] with
                a binary mask per instance.
            class_ids: a 1D array of class IDs of the instance masks.
        The base class returns empty arrays.
        """
        mask = np.empty([0, 0, 0])
        class_ids = np.empty([0], np.int32)
        return mask, class_ids


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """[H,W], [H,W,1], [H,W,2] (gray+alpha), [H,W,3] or [H,W,4] -> [H,W,3]."""
    if image.ndim == 3 and image.shape[-1] in (1, 2):
        image = image[..., 0]
    if image.ndim != 3:
        image = skimage.color.gray2rgb(image)
    if image.shape[-1] == 4:
        image = image[..., :3]
    return image


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


############################################################
#  Anchors
############################################################

def generate_anchors(scales, ratios, shape, feature_stride: int,
                     anchor_stride: int) -> np.ndarray:
    """Anchors [N, (y1, x1, y2, x2)] for one feature map.

    scales: 1D array of anchor sizes in pixels. Example: [32, 64, 128]
    ratios: 1D array of anchor ratios of width/height. Example: [0.5, 1, 2]
    shape: [height, width] spatial shape of the feature map.
    feature_stride: Stride of the feature map relative to the image in pixels.
    anchor_stride: Stride of anchors on the feature map (2 = every other cell).

    Anchors are ordered by cell (row-major), then ratio, then scale; centers
    sit at cell * feature_stride.
    """
    # All combinations of scales and ratios
    scales, ratios = np.meshgrid(np.array(scales), np.array(ratios))
    scales = scales.flatten()
    ratios = ratios.flatten()

    heights = scales / np.sqrt(ratios)
    widths = scales * np.sqrt(ratios)

    # Shifts in image space
    shifts_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    shifts_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    shifts_x, shifts_y = np.meshgrid(shifts_x, shifts_y)

    # Every (shift, size) pair
    box_widths, box_centers_x = np.meshgrid(widths, shifts_x)
    box_heights, box_centers_y = np.meshgrid(heights, shifts_y)

    box_centers = np.stack(
        [box_centers_y, box_centers_x], axis=2).reshape([-1, 2])  # [N, (y, x)]
    box_sizes = np.stack([box_heights, box_widths], axis=2).reshape([-1, 2])  # [N, (h, w)]

    return np.concatenate([box_centers - 0.5 * box_sizes,
                           box_centers + 0.5 * box_sizes], axis=1)


def generate_pyramid_anchors(scales, ratios, feature_shapes, feature_strides,
                             anchor_stride: int) -> np.ndarray:
    """Anchors for every pyramid level: scales[i] on level i, every ratio on
    every level.

    Returns [N, (y1, x1, y2, x2)], anchors of scales[0] first, then
    scales[1], and so on.
    """
    anchors = []
    for i in range(len(scales)):
        anchors.append(generate_anchors(scales[i], ratios, feature_shapes[i],
                                        feature_strides[i], anchor_stride))
    return np.concatenate(anchors, axis=0)


############################################################
#  Miscellaneous
############################################################

def trim_zeros(x: np.ndarray) -> np.ndarray:
    """Remove the all-zero (padding) rows of a [rows, columns] array."""
    if len(x.shape) != 2:
        raise ValueError("trim_zeros expects a 2-D array; got shape {}".format(
            x.shape))
    return x[~np.all(x == 0, axis=1)]


def compute_matches(gt_boxes, gt_class_ids, gt_masks,
                    pred_boxes, pred_class_ids, pred_scores, pred_masks,
                    iou_threshold: float = 0.5, score_threshold: float = 0.0):
    """Match predictions to ground truth instances by mask IoU.

    Predictions are visited by decreasing score; each takes the
    highest-IoU unmatched ground truth of its class with IoU >=
    iou_threshold. Zero-padded rows are trimmed first.

    Returns:
        gt_match: 1-D array. For each GT box, the index of the matched
            predicted box (in score order), or -1.
        pred_match: 1-D array. For each predicted box (in score order),
            the index of the matched ground truth box, or -1.
        overlaps: [pred_boxes, gt_boxes] IoU overlaps.
    """
    gt_boxes = trim_zeros(gt_boxes)
    gt_masks = gt_masks[..., :gt_boxes.shape[0]]
    pred_boxes = trim_zeros(pred_boxes)
    pred_scores = pred_scores[:pred_boxes.shape[0]]
    # Sort predictions by score from high to low
    indices = np.argsort(pred_scores)[::-1]
    pred_boxes = pred_boxes[indices]
    pred_class_ids = pred_class_ids[indices]
    pred_scores = pred_scores[indices]
    pred_masks = pred_masks[..., indices]

    overlaps = compute_overlaps_masks(pred_masks, gt_masks)  # [preds, gts]

    pred_match = -1 * np.ones([pred_boxes.shape[0]])
    gt_match = -1 * np.ones([gt_boxes.shape[0]])
    for i in range(len(pred_boxes)):
        # Candidate ground truths by decreasing IoU, low scores removed
        sorted_ixs = np.argsort(overlaps[i])[::-1]
        low_score_idx = np.where(overlaps[i, sorted_ixs] < score_threshold)[0]
        if low_score_idx.size > 0:
            sorted_ixs = sorted_ixs[:low_score_idx[0]]
        for j in sorted_ixs:
            # Already matched. `> -1`, not Matterport 2.1's `> 0`, which let
            # ground truth 0 be matched twice.
            if gt_match[j] > -1:
                continue
            iou = overlaps[i, j]
            if iou < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break

    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes, gt_class_ids, gt_masks,
               pred_boxes, pred_class_ids, pred_scores, pred_masks,
               iou_threshold: float = 0.5):
    """Average Precision at one IoU threshold (VOC style, all points).

    Returns:
    mAP: Mean Average Precision
    precisions: precisions at each score threshold (padded, monotone)
    recalls: recall values at each score threshold (padded)
    overlaps: [pred_boxes, gt_boxes] IoU overlaps.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks,
        pred_boxes, pred_class_ids, pred_scores, pred_masks,
        iou_threshold)

    # Precision and recall after each prediction
    precisions = np.cumsum(pred_match > -1) / (np.arange(len(pred_match)) + 1)
    recalls = np.cumsum(pred_match > -1).astype(np.float32) / len(gt_match)

    # Pad with start and end values to simplify the math
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])

    # Each precision becomes the max over all higher recalls (VOC).
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = np.maximum(precisions[i], precisions[i + 1])

    # Area under the precision-recall steps
    indices = np.where(recalls[:-1] != recalls[1:])[0] + 1
    mAP = np.sum((recalls[indices] - recalls[indices - 1]) *
                 precisions[indices])

    return mAP, precisions, recalls, overlaps


def compute_ap_range(gt_box, gt_class_id, gt_mask,
                     pred_box, pred_class_id, pred_score, pred_mask,
                     iou_thresholds=None, verbose: int = 1) -> float:
    """Mean AP over a range of IoU thresholds (default 0.5:0.05:0.95).

    With verbose, each AP is logged (INFO) instead of printed.
    """
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)

    AP = []
    for iou_threshold in iou_thresholds:
        ap, precisions, recalls, overlaps = compute_ap(
            gt_box, gt_class_id, gt_mask,
            pred_box, pred_class_id, pred_score, pred_mask,
            iou_threshold=iou_threshold)
        if verbose:
            logger.info("AP @%.2f:\t %.3f", iou_threshold, ap)
        AP.append(ap)
    AP = np.array(AP).mean()
    if verbose:
        logger.info("AP @%.2f-%.2f:\t %.3f", iou_thresholds[0],
                    iou_thresholds[-1], AP)
    return AP


def compute_recall(pred_boxes, gt_boxes, iou: float):
    """Fraction of ground truth boxes found by some prediction with IoU >= iou.

    pred_boxes: [N, (y1, x1, y2, x2)] in image coordinates
    gt_boxes: [N, (y1, x1, y2, x2)] in image coordinates
    Returns (recall, indices of the predictions that hit a ground truth).
    """
    overlaps = compute_overlaps(pred_boxes, gt_boxes)
    iou_max = np.max(overlaps, axis=1)
    iou_argmax = np.argmax(overlaps, axis=1)
    positive_ids = np.where(iou_max >= iou)[0]
    matched_gt_boxes = iou_argmax[positive_ids]

    recall = len(set(matched_gt_boxes)) / gt_boxes.shape[0]
    return recall, positive_ids


def batch_slice(inputs, graph_fn: Callable, batch_size: int, names=None):
    """Run a per-sample graph function over each batch item and stack.

    inputs: list of tensors, all with the same first dimension
    graph_fn: function of one slice of every input; returns a tensor or a
        list/tuple of tensors
    batch_size: number of slices
    names: If provided, names of the stacked result tensors.

    Some custom layers support one item only; this is Matterport's quick
    way to run them on batches.
    """
    import tensorflow as tf  # deferred: the numpy utilities need no TF

    if not isinstance(inputs, list):
        inputs = [inputs]

    outputs = []
    for i in range(batch_size):
        inputs_slice = [x[i] for x in inputs]
        output_slice = graph_fn(*inputs_slice)
        if not isinstance(output_slice, (tuple, list)):
            output_slice = [output_slice]
        outputs.append(output_slice)
    # From a list of per-slice outputs to a list of per-output slices
    outputs = list(zip(*outputs))

    if names is None:
        names = [None] * len(outputs)

    result = [tf.stack(o, axis=0, name=n) for o, n in zip(outputs, names)]
    if len(result) == 1:
        result = result[0]
    return result


def download_trained_weights(coco_model_path: str, verbose: int = 1) -> None:
    """Matterport downloaded the COCO weights here; this project never
    downloads at run time.

    If the file is already at coco_model_path this does nothing; otherwise
    it raises FileNotFoundError saying where to put the file.
    """
    if os.path.isfile(coco_model_path):
        if verbose > 0:
            logger.info("Using local COCO weights at %s", coco_model_path)
        return
    raise FileNotFoundError(
        "COCO weights not found at {!r}. This project does not download "
        "files at run time: fetch mask_rcnn_coco.h5 yourself (published at "
        "{}) and place it at that path.".format(coco_model_path, COCO_MODEL_URL))


def norm_boxes(boxes: np.ndarray, shape) -> np.ndarray:
    """Pixel boxes [N, (y1, x1, y2, x2)] -> normalized float32 boxes.

    shape: (height, width) in pixels. In pixel coordinates (y2, x2) is
    outside the box; in normalized coordinates it's inside, hence the
    shift of 1 and the (h - 1, w - 1) scale.
    """
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.divide((boxes - shift), scale).astype(np.float32)


def denorm_boxes(boxes: np.ndarray, shape) -> np.ndarray:
    """Normalized boxes [N, (y1, x1, y2, x2)] -> int32 pixel boxes.
    Inverse of norm_boxes (rounded).

    shape: (height, width) in pixels.
    """
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.around(np.multiply(boxes, scale) + shift).astype(np.int32)


__all__ = [
    "COCO_MODEL_URL", "extract_bboxes", "compute_iou", "compute_overlaps",
    "compute_overlaps_masks", "non_max_suppression", "apply_box_deltas",
    "box_refinement_graph", "box_refinement", "Dataset", "resize", "resize_image",
    "resize_mask", "minimize_mask", "expand_mask", "mold_mask", "unmold_mask",
    "generate_anchors", "generate_pyramid_anchors", "trim_zeros",
    "compute_matches", "compute_ap", "compute_ap_range", "compute_recall",
    "batch_slice", "download_trained_weights", "norm_boxes", "denorm_boxes",
]
