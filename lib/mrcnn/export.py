"""Export to a TensorFlow SavedModel whose signatures take raw images.

The molding (resize, pad, mean subtraction, image meta, anchors) and the unmolding
(boxes in image pixels, full-size masks) that ``detect()`` does in numpy are done here
in the graph, so a client needs only ``tensorflow``:

    served = tf.saved_model.load(path)
    out = served.signatures["serving_default"](image=tf.constant(uint8_hwc))
    out["boxes"], out["class_ids"], out["scores"], out["masks"], out["num_detections"]

Resizing replicates scikit-image's bilinear ``resize`` (mode "constant": a zero border
outside the image) in float64, then truncates to uint8 as Matterport's
``resize_image`` does; masks are pasted with ``crop_and_resize`` (float32) on a
zero-bordered mask and thresholded at 0.5 as ``unmold_mask`` does. Only IMAGE_RESIZE_MODE
"square" is exported: its input size is fixed, so the anchors are constants.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from mrcnn.files import file_above

_F64 = tf.float64


def _sample_rows(n_in: tf.Tensor, n_out: tf.Tensor) -> tuple:
    """For each of ``n_out`` samples at ((i + 0.5) * (n_in / n_out)) - 0.5: the two input
    rows around it (indices into the input with a one-pixel zero border) and their
    weights, computed as scipy computes them (the second is 1 - the first)."""
    step = tf.cast(n_in, _F64) / tf.cast(n_out, _F64)
    coords = (tf.range(tf.cast(n_out, _F64)) + 0.5) * step - 0.5
    low = tf.floor(coords)
    first = 1.0 - (coords - low)
    second = 1.0 - first
    low = tf.cast(low, tf.int32) + 1  # the border
    return (tf.clip_by_value(low, 0, n_in + 1), tf.clip_by_value(low + 1, 0, n_in + 1),
            first, second)


def resize_bilinear(image: tf.Tensor, out_h: tf.Tensor, out_w: tf.Tensor) -> tf.Tensor:
    """[h, w, c] -> [out_h, out_w, c] float64, as skimage.transform.resize(order=1,
    mode="constant", cval=0, anti_aliasing=False) computes it (scipy.ndimage.zoom in
    grid mode): each output pixel samples (i + 0.5) * h / out_h - 0.5, interpolating
    with zeros outside the image. In float64 and in scipy's order of operations, so the
    result is bit for bit scikit-image's and truncating it to uint8 agrees too."""
    image = tf.cast(image, _F64)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    padded = tf.pad(image, [[1, 1], [1, 1], [0, 0]])  # the zero border
    y0, y1, wy0, wy1 = _sample_rows(h, out_h)
    x0, x1, wx0, wx1 = _sample_rows(w, out_w)
    rows0, rows1 = tf.gather(padded, y0, axis=0), tf.gather(padded, y1, axis=0)
    wy0, wy1 = wy0[:, None, None], wy1[:, None, None]
    wx0, wx1 = wx0[None, :, None], wx1[None, :, None]
    # scipy.ndimage.zoom's sum, term by term: ((value * wy) * wx), added in this order.
    return ((((tf.gather(rows0, x0, axis=1) * wy0) * wx0
              + (tf.gather(rows0, x1, axis=1) * wy0) * wx1)
             + (tf.gather(rows1, x0, axis=1) * wy1) * wx0)
            + (tf.gather(rows1, x1, axis=1) * wy1) * wx1)


def resize_image_square(image: tf.Tensor, min_dim: int, max_dim: int,
                        min_scale: Optional[float]) -> tuple:
    """utils.resize_image(mode="square") in the graph: image [H, W, 3] ->
    (resized uint8 [max_dim, max_dim, 3], window int32 [4] (y1, x1, y2, x2), scale)."""
    h = tf.cast(tf.shape(image)[0], _F64)
    w = tf.cast(tf.shape(image)[1], _F64)
    scale = tf.constant(1.0, _F64)
    if min_dim:
        scale = tf.maximum(scale, min_dim / tf.minimum(h, w))
    if min_scale:
        scale = tf.maximum(scale, tf.constant(float(min_scale), _F64))
    image_max = tf.maximum(h, w)
    # Python's round() and tf.round both round half to even.
    scale = tf.where(tf.round(image_max * scale) > max_dim, max_dim / image_max, scale)
    new_h = tf.cast(tf.round(h * scale), tf.int32)
    new_w = tf.cast(tf.round(w * scale), tf.int32)
    # Matterport resizes only when the scale is not 1, then casts the floats back to the
    # input's uint8 (truncating).
    resized = tf.cond(
        tf.equal(scale, 1.0), lambda: tf.cast(image, tf.uint8),
        lambda: tf.cast(tf.clip_by_value(resize_bilinear(image, new_h, new_w), 0.0, 255.0),
                        tf.uint8))
    top = (max_dim - new_h) // 2
    left = (max_dim - new_w) // 2
    padded = tf.image.pad_to_bounding_box(resized, top, left, max_dim, max_dim)
    window = tf.stack([top, left, top + new_h, left + new_w])
    return padded, window, tf.cast(scale, tf.float32)


def compose_image_meta(original_shape: tf.Tensor, image_shape: tf.Tensor,
                       window: tf.Tensor, scale: tf.Tensor, num_classes: int) -> tf.Tensor:
    """mrcnn.molding.compose_image_meta in the graph (image id 0, no active classes)."""
    return tf.concat([tf.zeros([1]), tf.cast(original_shape, tf.float32),
                      tf.cast(image_shape, tf.float32), tf.cast(window, tf.float32),
                      tf.reshape(scale, [1]), tf.zeros([num_classes])], axis=0)


def unmold(detections: tf.Tensor, masks: Optional[tf.Tensor], original_hw: tf.Tensor,
           image_size: int, window: tf.Tensor) -> dict:
    """unmold_detections in the graph, for one image.

    detections: [N, (y1, x1, y2, x2, class_id, score)] normalized, zero padded.
    masks: [N, mh, mw] the detections' own mask probabilities, or None (box-only
        models: each box, filled, is its mask).
    Returns boxes int32 [n, 4] (image pixels, y2 / x2 outside), class_ids int32 [n],
    scores [n], masks uint8 [n, H, W] and num_detections.
    """
    class_ids = tf.cast(detections[:, 4], tf.int32)
    # Rows up to the first zero class id (the padding), as Matterport counts them.
    n = tf.reduce_min(tf.concat([tf.where(class_ids == 0)[:, 0],
                                 [tf.cast(tf.shape(detections)[0], tf.int64)]], 0))
    boxes = detections[:n, :4]
    # norm_boxes: in float64, then float32, as numpy computes it.
    norm_window = tf.cast((tf.cast(window, _F64) - tf.constant([0.0, 0.0, 1.0, 1.0], _F64))
                          / float(image_size - 1), tf.float32)
    wy1, wx1, wy2, wx2 = tf.unstack(norm_window)
    shift = tf.stack([wy1, wx1, wy1, wx1])
    scale = tf.stack([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = (boxes - shift) / scale  # float32, as unmold_boxes computes it
    # denorm_boxes multiplies by the integer sizes in float64, then rounds half to even.
    height = tf.cast(original_hw[0], _F64)
    width = tf.cast(original_hw[1], _F64)
    pixels = tf.round(tf.cast(boxes, _F64)
                      * tf.stack([height - 1, width - 1, height - 1, width - 1])
                      + tf.constant([0.0, 0.0, 1.0, 1.0], _F64))
    pixel_boxes = tf.cast(pixels, tf.int32)
    area = ((pixel_boxes[:, 2] - pixel_boxes[:, 0]) * (pixel_boxes[:, 3] - pixel_boxes[:, 1]))
    keep = tf.where(area > 0)[:, 0]
    pixel_boxes = tf.gather(pixel_boxes, keep)
    scores = tf.gather(detections[:n, 5], keep)
    kept_ids = tf.gather(class_ids[:n], keep)
    inside = _inside_boxes(pixel_boxes, original_hw)  # [n, H, W] bool
    if masks is None:
        full = tf.cast(inside, tf.uint8)
    else:
        full = _paste_masks(tf.gather(masks[:n], keep), pixel_boxes, original_hw, inside)
    return {"boxes": pixel_boxes, "class_ids": kept_ids, "scores": scores, "masks": full,
            "num_detections": tf.shape(pixel_boxes)[0]}


def _inside_boxes(boxes: tf.Tensor, hw: tf.Tensor) -> tf.Tensor:
    """[n, H, W] bool: the pixels of each box [y1, y2) x [x1, x2)."""
    ys = tf.range(hw[0])[None, :, None]
    xs = tf.range(hw[1])[None, None, :]
    y1, x1, y2, x2 = (boxes[:, i][:, None, None] for i in range(4))
    return (ys >= y1) & (ys < y2) & (xs >= x1) & (xs < x2)


def _paste_masks(masks: tf.Tensor, boxes: tf.Tensor, hw: tf.Tensor,
                 inside: tf.Tensor) -> tf.Tensor:
    """utils.unmold_mask for every detection at once: each [mh, mw] mask resized to its
    box like skimage's resize (zero border), thresholded at 0.5, placed in [H, W]."""
    mh = tf.cast(tf.shape(masks)[1], _F64)
    mw = tf.cast(tf.shape(masks)[2], _F64)
    padded = tf.pad(masks, [[0, 0], [1, 1], [1, 1]])[..., None]  # zero border
    b = tf.cast(boxes, _F64)
    sy = mh / (b[:, 2] - b[:, 0])
    sx = mw / (b[:, 3] - b[:, 1])
    # Full-image pixel y samples mask row (y - y1 + 0.5) * sy - 0.5, +1 for the border.
    start_y = (0.5 - b[:, 0]) * sy + 0.5
    start_x = (0.5 - b[:, 1]) * sx + 0.5
    height = tf.cast(hw[0], _F64)
    width = tf.cast(hw[1], _F64)
    crop = tf.stack([start_y / (mh + 1), start_x / (mw + 1),
                     (start_y + sy * (height - 1)) / (mh + 1),
                     (start_x + sx * (width - 1)) / (mw + 1)], axis=1)
    resized = tf.image.crop_and_resize(
        padded, tf.cast(crop, tf.float32), tf.range(tf.shape(masks)[0]),
        tf.stack([hw[0], hw[1]]), method="bilinear", extrapolation_value=0.0)[..., 0]
    return tf.cast((resized >= 0.5) & inside, tf.uint8)


def save(module: tf.Module, path: str, signatures: dict) -> str:
    """tf.saved_model.save into a temporary folder, then renamed to ``path`` (a killed
    export never leaves a half-written model there). ``path`` (str or os.PathLike) must
    not exist, nor have a file above it."""
    path = os.fspath(path)
    if not path.strip():
        raise ValueError(f"export: expected the path of a new folder, got {path!r}")
    if os.path.exists(path):
        raise FileExistsError(f"export: {path} exists already; choose a new folder")
    above = file_above(path)
    if above is not None:
        raise NotADirectoryError(f"export: {path}: {above} is a file, not a folder")
    temporary = path.rstrip("/\\") + ".partial"
    if os.path.exists(temporary):
        import shutil

        shutil.rmtree(temporary)
    tf.saved_model.save(module, temporary, signatures=signatures)
    os.replace(temporary, path)
    return path


class MaskRCNNServing(tf.Module):
    """The plain Mask R-CNN's serving graph: ``image`` -> boxes, class_ids, scores,
    masks, num_detections (see the module doc)."""

    def __init__(self, model):
        super().__init__()
        config = model.config
        check_exportable(model)
        self.keras_model = model.inner_model
        self._config = {"min_dim": int(config.IMAGE_MIN_DIM),
                        "max_dim": int(config.IMAGE_MAX_DIM),
                        "min_scale": float(config.IMAGE_MIN_SCALE or 0),
                        "num_classes": int(config.NUM_CLASSES)}
        self._mean = tf.constant(np.asarray(config.MEAN_PIXEL, np.float32))
        self._anchors = tf.constant(model.get_anchors(config.IMAGE_SHAPE)[None])
        self._with_masks = model.with_masks(config)

    def mold(self, image: tf.Tensor) -> tuple:
        """image [H, W, 3] uint8 -> molded [1, S, S, 3], meta [1, M], window."""
        c = self._config
        resized, window, scale = resize_image_square(image, c["min_dim"], c["max_dim"],
                                                     c["min_scale"])
        molded = tf.cast(resized, tf.float32) - self._mean
        meta = compose_image_meta(tf.shape(image), tf.shape(resized), window, scale,
                                  c["num_classes"])
        return molded[None], meta[None], window

    def outputs(self, raw_outputs: list, image: tf.Tensor, window: tf.Tensor) -> dict:
        detections = raw_outputs[0][0]  # [N, 6]
        masks = None
        if self._with_masks:
            mask_probs = raw_outputs[3][0]  # [N, mh, mw, classes]
            ids = tf.cast(detections[:, 4], tf.int32)
            masks = tf.gather(tf.transpose(mask_probs, [0, 3, 1, 2]), ids, batch_dims=1)
        return unmold(detections, masks, tf.shape(image)[:2], self._config["max_dim"],
                      window)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
    def serve(self, image):
        molded, meta, window = self.mold(image)
        raw = self.keras_model([molded, meta, self._anchors], training=False)
        return self.outputs(raw, image, window)


def check_exportable(model) -> None:
    """ValueError unless the model can be exported: inference mode, one image per batch,
    "square" resizing (a fixed input size)."""
    config = model.config
    if model.mode != "inference":
        raise ValueError(f"export needs a model in inference mode, got {model.mode!r} "
                         "(build it with mode='inference' and load the weights)")
    if config.BATCH_SIZE != 1:
        raise ValueError(f"export needs BATCH_SIZE 1 (IMAGES_PER_GPU 1, GPU_COUNT 1), got "
                         f"{config.BATCH_SIZE}")
    if config.IMAGE_RESIZE_MODE != "square":
        raise ValueError("export supports IMAGE_RESIZE_MODE 'square' (a fixed input size), "
                         f"got {config.IMAGE_RESIZE_MODE!r}")


def export_mask_rcnn(model, path: str) -> str:
    """Writes the plain MaskRCNN's SavedModel (signature serving_default)."""
    module = MaskRCNNServing(model)
    return save(module, path, {"serving_default": module.serve})


__all__ = ["resize_bilinear", "resize_image_square", "compose_image_meta", "unmold",
           "save", "MaskRCNNServing", "check_exportable", "export_mask_rcnn"]
