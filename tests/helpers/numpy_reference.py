"""Plain numpy (loop) versions of box and crop operations, the references tests compare to.

Written from the definitions, independently of mrcnn, so that a test against them can fail.
"""
import math

import numpy as np


def np_iou(a, b) -> float:
    """IoU of two (y1, x1, y2, x2) boxes; 0 when both are empty."""
    y1, x1 = max(a[0], b[0]), max(a[1], b[1])
    y2, x2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(y2 - y1, 0) * max(x2 - x1, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def np_crop_and_resize(image: np.ndarray, box, crop_hw) -> np.ndarray:
    """tf.image.crop_and_resize (bilinear, extrapolation 0) for one box, in float64.

    image: [H, W] or [H, W, C]; box: normalized (y1, x1, y2, x2); sample i of n sits at
    y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (n - 1), or at the box centre when n = 1.
    Returns [crop_h, crop_w] or [crop_h, crop_w, C].
    """
    H, W = image.shape[:2]
    ch, cw = crop_hw
    y1, x1, y2, x2 = box
    out = np.zeros((ch, cw) + image.shape[2:], np.float64)
    for i in range(ch):
        y = y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (ch - 1) if ch > 1 \
            else 0.5 * (y1 + y2) * (H - 1)
        if y < 0 or y > H - 1:
            continue
        t, b = int(math.floor(y)), int(math.ceil(y))
        dy = y - t
        for j in range(cw):
            x = x1 * (W - 1) + j * (x2 - x1) * (W - 1) / (cw - 1) if cw > 1 \
                else 0.5 * (x1 + x2) * (W - 1)
            if x < 0 or x > W - 1:
                continue
            l, r = int(math.floor(x)), int(math.ceil(x))
            dx = x - l
            top = image[t, l] + (image[t, r] - image[t, l]) * dx
            bottom = image[b, l] + (image[b, r] - image[b, l]) * dx
            out[i, j] = top + (bottom - top) * dy
    return out
