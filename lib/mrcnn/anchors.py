"""Anchor generation (Matterport's mrcnn.utils names; re-exported there).
"""
from __future__ import annotations

import numpy as np


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
