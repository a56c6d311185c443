"""The few graph ops that ``keras.ops`` lacks, one implementation per backend.

- ``crop_and_resize``: bilinear crops of boxes from feature maps (ROI align with one
  sample per bin), the semantics of ``tf.image.crop_and_resize`` (normalized boxes
  whose corners map to pixel centres 0 and size - 1; samples outside the map are 0).
  ``pyramid_crop_and_resize`` crops each box from its own one of several maps (ROI
  align over the FPN levels) with one gather, in ``keras.ops`` on every backend.
- ``non_max_suppression_padded``: greedy NMS with a static output size, the
  semantics of ``tf.image.non_max_suppression`` (IoU strictly above the threshold
  suppresses; corners in either order; equal scores keep the lower index first).

Under the TensorFlow backend both call TensorFlow's kernels. Under JAX and PyTorch
they are written with ``keras.ops`` on static shapes (every output has a size known
when the graph is traced, as ``jax.jit`` needs): the crop gathers the four neighbours
of every sample, the NMS iterates the greedy rule on the IoU matrix of the boxes in
score order until it holds (a fixed point; see non_max_suppression_ops). PyTorch runs
eagerly, so there the NMS takes the greedy rule one kept box at a time instead (one IoU
row per kept box, not [N, N] passes: about 5x faster on a CPU), and so does JAX on a
CPU, through a host callback (JAX_CPU_HOST_NMS).
``tests/mrcnn/test_backend_ops.py`` checks each against TensorFlow's op on random boxes
and on edge cases, under each backend installed.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops


def _tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


# Under JAX on a CPU, NMS calls greedy_keep on the host (jax.pure_callback) instead of
# the fixed point: 3x the quickstart graph's speed there. On an accelerator the fixed
# point stays (no round trip to the host). False: the fixed point everywhere (tests).
JAX_CPU_HOST_NMS = True


def _jax_on_cpu() -> bool:
    if keras.backend.backend() != "jax" or not JAX_CPU_HOST_NMS:
        return False
    import jax

    return jax.default_backend() == "cpu"


# What require_tensorflow names when a SavedModel export is asked for.
EXPORT_NEEDS = "export (a TensorFlow SavedModel)"


def require_tensorflow(what: str) -> None:
    """A ValueError that names the backend when ``what`` needs TensorFlow's."""
    if not _tensorflow():
        raise ValueError(
            f"{what} needs the TensorFlow backend (KERAS_BACKEND=tensorflow), this one is "
            f"{keras.backend.backend()!r}: it uses TensorFlow's tf.distribute or "
            "SavedModel; one-device training, inference and evaluation run on any backend")


def crop_and_resize(images, boxes, box_indices, crop_size: Sequence[int]):
    """Bilinear crops.

    images: [batch, height, width, channels]
    boxes: [num_boxes, (y1, x1, y2, x2)] normalized (0..1 spans the map)
    box_indices: [num_boxes] int, the image of each box
    crop_size: (crop_height, crop_width)
    Returns: [num_boxes, crop_height, crop_width, channels] float32
    """
    crop_height, crop_width = (int(s) for s in crop_size)
    if _tensorflow():
        import tensorflow as tf

        return tf.image.crop_and_resize(images, boxes, box_indices,
                                        (crop_height, crop_width), method="bilinear")
    return crop_and_resize_ops(images, boxes, box_indices, (crop_height, crop_width))


def crop_and_resize_ops(images, boxes, box_indices, crop_size: Sequence[int]):
    """crop_and_resize in keras.ops (any backend; what JAX and PyTorch run)."""
    images = ops.cast(images, "float32")
    height, width, channels = (int(s) for s in images.shape[1:])
    rows = ops.cast(box_indices, "int32") * (height * width)  # [n] first row of each image
    return _bilinear_crops(ops.reshape(images, (-1, channels)), rows, height, width,
                           boxes, crop_size)


def pyramid_crop_and_resize(feature_maps: Sequence, boxes, box_indices, levels,
                            crop_size: Sequence[int]):
    """Each box's crop_and_resize from its own map: what cropping every box from every
    map and keeping the crop of its level gives, with one gather instead of one per map
    (any backend; ROI align of the JAX and PyTorch backends).

    feature_maps: L maps [batch, height_l, width_l, channels] (sizes may differ)
    boxes: [n, (y1, x1, y2, x2)] normalized; box_indices: [n] int, the image of each box
    levels: [n] int in 0..L-1, the map of each box
    Returns: [n, crop_height, crop_width, channels] float32
    """
    channels = int(feature_maps[0].shape[-1])
    tables, firsts, heights, widths = [], [], [], []
    first = 0
    for feature_map in feature_maps:
        batch, height, width = (int(s) for s in feature_map.shape[:3])
        tables.append(ops.reshape(ops.cast(feature_map, "float32"), (-1, channels)))
        firsts.append(first)
        heights.append(height)
        widths.append(width)
        first += batch * height * width
    levels = ops.cast(levels, "int32")

    def of_level(values):  # [L] python ints -> [n] int32, each box's level's value
        return ops.take(ops.convert_to_tensor(np.array(values, np.int32)), levels)

    height, width = of_level(heights), of_level(widths)
    rows = of_level(firsts) + ops.cast(box_indices, "int32") * height * width  # [n]
    return _bilinear_crops(ops.concatenate(tables, axis=0), rows, height, width, boxes,
                           crop_size)


def _bilinear_crops(table, rows, height, width, boxes, crop_size: Sequence[int]):
    """tf.image.crop_and_resize's bilinear samples, gathered from a table of pixels.

    table: [pixels, C] float32, maps flattened row-major
    rows: [n] int32, the table row of each box's map's pixel (0, 0)
    height, width: ints (every box's map) or [n] int32 (each box's map)
    Returns: [n, crop_height, crop_width, C]
    """
    crop_height, crop_width = (int(s) for s in crop_size)
    boxes = ops.cast(boxes, "float32")
    height, width = _as_column(height), _as_column(width)  # int, or [n, 1] int32
    last_y, last_x = _last_position(height), _last_position(width)
    ys = _sample_positions(boxes[:, 0], boxes[:, 2], crop_height, last_y)  # [n, ch]
    xs = _sample_positions(boxes[:, 1], boxes[:, 3], crop_width, last_x)  # [n, cw]
    top, y_lerp, y_valid = _neighbours(ys, last_y)
    left, x_lerp, x_valid = _neighbours(xs, last_x)
    row_width = width if isinstance(width, int) else width[:, :, None]  # [n, 1, 1]

    def gather(y, x):  # y [n, ch], x [n, cw] -> [n, ch, cw, C]
        index = rows[:, None, None] + y[:, :, None] * row_width + x[:, None, :]
        return ops.reshape(ops.take(table, ops.reshape(index, (-1,)), axis=0),
                           (-1, crop_height, crop_width, table.shape[-1]))

    bottom = ops.minimum(top + 1, height - 1)
    right = ops.minimum(left + 1, width - 1)
    x_lerp = x_lerp[:, None, :, None]
    top_row = gather(top, left) + (gather(top, right) - gather(top, left)) * x_lerp
    bottom_row = gather(bottom, left) + (gather(bottom, right) - gather(bottom, left)) * x_lerp
    crops = top_row + (bottom_row - top_row) * y_lerp[:, :, None, None]
    valid = ops.logical_and(y_valid[:, :, None], x_valid[:, None, :])[..., None]
    return ops.where(valid, crops, ops.zeros_like(crops))


def _as_column(size):
    """A map size: a python int as it is, a per-box [n] tensor as [n, 1] (broadcasts
    against [n, samples])."""
    return int(size) if isinstance(size, (int, np.integer)) else ops.reshape(size, (-1, 1))


def _last_position(size):
    """The last pixel's position on a map ``size`` pixels long: a float, or [n, 1]
    float32 per box."""
    return float(size - 1) if isinstance(size, int) else ops.cast(size - 1, "float32")


def _sample_positions(start, end, count: int, last):
    """Positions (in pixels) of ``count`` samples from start to end (normalized) on a
    map whose last pixel is at ``last`` (a float, or [n, 1] per box)."""
    if count > 1:
        step = (end - start)[:, None] * last / (count - 1)  # [n, 1]
        return start[:, None] * last + ops.arange(count, dtype="float32")[None] * step
    return 0.5 * (start + end)[:, None] * last


# Samples within this many pixels of the map's edge count as on it. A box that spans
# the map puts its last sample exactly on the last pixel, where XLA's arithmetic (a
# division done as a multiplication by the reciprocal) can land a few ulps outside;
# TensorFlow's kernel lands on it.
EDGE_TOLERANCE = 1e-3


def _neighbours(position, last):
    """(floor index clipped to the map, fraction, inside the map) of sample positions
    on a map whose last pixel is at ``last`` (a float, or [n, 1] per box)."""
    valid = ops.logical_and(position >= -EDGE_TOLERANCE, position <= last + EDGE_TOLERANCE)
    position = ops.minimum(ops.maximum(position, 0.0), last)
    low = ops.floor(position)
    fraction = position - low
    return ops.cast(low, "int32"), fraction, valid


def non_max_suppression_padded(boxes, scores, max_output_size: int, iou_threshold: float):
    """Greedy NMS of one image with a static output size.

    boxes: [N, (y1, x1, y2, x2)]; scores: [N]
    Returns (indices [max_output_size] int32, the kept boxes in score order then -1,
    count: the number kept, int32 scalar).
    """
    max_output_size = int(max_output_size)
    if _tensorflow():
        import tensorflow as tf

        kept = tf.image.non_max_suppression(boxes, scores, max_output_size, iou_threshold)
        count = tf.shape(kept)[0]
        padded = tf.pad(kept, [[0, max_output_size - count]], constant_values=-1)
        return tf.ensure_shape(padded, [max_output_size]), count
    return non_max_suppression_ops(boxes, scores, max_output_size, iou_threshold)


def non_max_suppression_ops(boxes, scores, max_output_size: int, iou_threshold: float,
                            valid=None):
    """non_max_suppression_padded without TensorFlow's kernel (what JAX and PyTorch run;
    any backend): the keep decision is the static-shape fixed point, or greedy_keep
    under PyTorch and, through a host callback, under JAX on a CPU.
    valid: [N] bool, the boxes that take part (the others are neither kept nor
    suppress): NMS of a subset, with indices into the whole set."""
    max_output_size = int(max_output_size)
    boxes = ops.cast(boxes, "float32")
    scores = ops.cast(scores, "float32")
    n = boxes.shape[0]
    # Score order, ties by index: argsort of -score is stable in keras.ops.
    order = ops.argsort(-scores)
    ordered = ops.take(boxes, order, axis=0)
    taking = (ops.ones((n,), dtype="bool") if valid is None
              else ops.take(ops.cast(valid, "bool"), order))
    if keras.backend.backend() == "torch":
        keep = ops.convert_to_tensor(greedy_keep(
            ops.convert_to_numpy(ordered), ops.convert_to_numpy(taking), iou_threshold,
            max_output_size))
    elif _jax_on_cpu():
        import jax

        keep = jax.pure_callback(
            lambda o, t: greedy_keep(o, t, iou_threshold, max_output_size),
            jax.ShapeDtypeStruct((n,), "bool"), jax.lax.stop_gradient(ordered), taking)
    else:
        keep = _fixed_point_keep(ordered, taking, iou_threshold)
    # The kept positions in order, then the rest: a stable sort on "not kept".
    rank = ops.argsort(ops.cast(ops.logical_not(keep), "int32"))
    count = ops.minimum(ops.sum(ops.cast(keep, "int32")), max_output_size)
    width = min(max_output_size, n)
    chosen = ops.take(order, rank[:width])
    chosen = ops.where(ops.arange(width) < count, ops.cast(chosen, "int32"), -1)
    if width < max_output_size:
        chosen = ops.concatenate([chosen, -ops.ones((max_output_size - width,), "int32")])
    return chosen, count


def _fixed_point_keep(ordered, taking, iou_threshold: float):
    """[N] bool: the greedy NMS of score-ordered boxes [N, 4] among `taking` [N], in
    static shapes (what jax.jit traces)."""
    n = ordered.shape[0]
    iou = _iou_matrix(ordered)  # [N, N]
    # Greedy NMS as a fixed point: box i is kept when no kept box before it overlaps it
    # above the threshold. Each pass decides at least one more box for good (box k's
    # answer depends only on boxes before it), so from "all kept" it reaches the greedy
    # answer in at most N passes, and in practice in as many as the longest chain of
    # suppressions. Each pass is one [N, N] reduction: far fewer sequential steps on an
    # accelerator than a loop over the N boxes.
    earlier = ops.arange(n)[:, None] < ops.arange(n)[None, :]  # [j, i]: j before i
    overlaps = ops.logical_and(iou > iou_threshold, earlier)

    def step(keep):
        suppressed = ops.any(ops.logical_and(keep[:, None], overlaps), axis=0)
        return ops.logical_and(taking, ops.logical_not(suppressed))

    def cond(keep, changed, passes):
        return ops.logical_and(changed, passes <= n)

    def body(keep, changed, passes):
        new = step(keep)
        return new, ops.any(ops.not_equal(new, keep)), passes + 1

    keep, _, _ = ops.while_loop(cond, body, (taking, ops.convert_to_tensor(True),
                                             ops.convert_to_tensor(0)))
    return keep


def greedy_keep(ordered, taking, iou_threshold: float, max_output_size: int) -> np.ndarray:
    """[N] bool: the greedy NMS of score-ordered boxes [N, 4] (numpy) among `taking`
    [N], one kept box at a time, up to max_output_size kept (for eager backends: each
    kept box costs one IoU row, where the fixed point costs [N, N] passes). The IoU is
    _iou_matrix's, in float32, so both keep the same boxes."""
    boxes = np.asarray(ordered, np.float32)
    y1, y2 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    x1, x2 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    area = (y2 - y1) * (x2 - x1)
    open_ = np.array(taking, bool)  # taking part and not suppressed yet
    keep, kept = np.zeros(len(boxes), bool), 0
    for i in np.flatnonzero(open_):
        if not open_[i]:
            continue
        keep[i], kept = True, kept + 1
        if kept == max_output_size:
            break
        rest = slice(i + 1, None)  # a kept box suppresses only the boxes after it
        height = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        width = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        inter = height * width
        union = area[i] + area[rest] - inter
        empty = np.logical_or(area[i] <= 0, area[rest] <= 0)
        iou = np.where(empty, np.float32(0), inter / np.where(union > 0, union, np.float32(1)))
        open_[rest] &= ~(iou > iou_threshold)
    return keep


def top_k(x, k: int):
    """(values, indices) of the k largest entries along the last axis, ties by the lower
    index first, as TensorFlow's top_k and jax.lax.top_k give them; torch.topk does
    not promise an order among ties, so PyTorch takes a stable sort instead."""
    if keras.backend.backend() == "torch":
        indices = ops.argsort(-x, axis=-1)[..., :k]  # keras' argsort is stable
        return ops.take_along_axis(x, indices, axis=-1), indices
    return ops.top_k(x, k)


def _iou_matrix(boxes):
    """IoU of every pair of boxes [N, 4] (corners in either order; 0 for empty boxes)."""
    y1 = ops.minimum(boxes[:, 0], boxes[:, 2])
    y2 = ops.maximum(boxes[:, 0], boxes[:, 2])
    x1 = ops.minimum(boxes[:, 1], boxes[:, 3])
    x2 = ops.maximum(boxes[:, 1], boxes[:, 3])
    area = (y2 - y1) * (x2 - x1)
    height = ops.maximum(ops.minimum(y2[:, None], y2[None]) - ops.maximum(y1[:, None], y1[None]), 0)
    width = ops.maximum(ops.minimum(x2[:, None], x2[None]) - ops.maximum(x1[:, None], x1[None]), 0)
    inter = height * width
    union = area[:, None] + area[None] - inter
    empty = ops.logical_or(area[:, None] <= 0, area[None] <= 0)
    return ops.where(empty, ops.zeros_like(inter), inter / ops.where(union > 0, union, 1.0))


__all__ = ["EXPORT_NEEDS", "crop_and_resize", "crop_and_resize_ops", "greedy_keep",
           "non_max_suppression_padded", "non_max_suppression_ops",
           "pyramid_crop_and_resize", "require_tensorflow", "top_k"]
