"""Pictures of Siamese Mask R-CNN results and of the evaluation analyses.

display_results: one query with its detections and the reference beside it.
display_grid: a grid of results, each reference as an inset in its query.
plot_confusion_matrix, plot_most_confused, plot_ap_by_instance_count: the figures
of siamese_mrcnn.evaluation's analyses.

Differences from the old code: ``display_results`` honours ``ax`` (the old one
failed without its own figure); ``display_grid`` accepts ``ax`` (axes to draw
into), ``save`` may be a path, and it returns the figure. Like mrcnn.visualize,
plt.show() is called only on interactive backends, so nothing blocks under Agg.
"""
from __future__ import annotations

import logging
import math
from typing import Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patches

from mrcnn import visualize as mrcnn_visualize
from mrcnn.visualize import check_instances, draw_mask_outline, show_if_interactive

logger = logging.getLogger(__name__)


def _caption(i: int, scores: Optional[Sequence[float]], captions: Optional[Sequence[str]]
             ) -> str:
    if captions:
        return captions[i]
    if scores is not None and scores[i] is not None:
        return "{:.3f}".format(float(scores[i]))
    return "no score"


def _draw_detections(ax, image: np.ndarray, boxes: np.ndarray, masks: np.ndarray,
                     scores=None, colors=None, captions=None, show_mask: bool = True,
                     show_bbox: bool = True, show_captions: bool = True,
                     fontsize: float = 11, linewidth: float = 2) -> None:
    """Query image with masks, dashed boxes, outlines and captions on ax."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    n = boxes.shape[0]
    colors = colors if colors is not None else mrcnn_visualize.random_colors(n)
    masked_image = np.asarray(image).astype(np.uint32).copy()
    for i in range(n):
        if not np.any(boxes[i]):
            continue  # no box: the instance was lost in cropping
        color = colors[i]
        y1, x1, y2, x2 = boxes[i]
        if show_bbox:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=linewidth,
                                           alpha=0.7, linestyle="dashed", edgecolor=color,
                                           facecolor="none"))
        if show_captions:
            ax.text(x1, y1 + 8, _caption(i, scores, captions), color="w", size=fontsize,
                    backgroundcolor="none")
        mask = masks[:, :, i]
        if show_mask:
            masked_image = mrcnn_visualize.apply_mask(masked_image, mask, color)
        draw_mask_outline(ax, mask, color)
    ax.imshow(masked_image.astype(np.uint8))


def display_results(target: np.ndarray, image: np.ndarray, boxes: np.ndarray,
                    masks: np.ndarray, class_ids: np.ndarray, scores=None, title: str = "",
                    figsize: tuple = (16, 16), ax=None, show_mask: bool = True,
                    show_bbox: bool = True, colors=None, captions=None, target_ax=None) -> None:
    """A query with its detections, the reference beside it.

    target: the reference image [h, w, 3]; image: the query [H, W, 3].
    boxes: [N, (y1, x1, y2, x2)] in image pixels; masks: [H, W, N]; class_ids: [N].
    scores: optional [N] (captions show them with 3 decimals).
    ax: axes for the query; the reference goes into target_ax or, without one, an
        inset left of ax (``ax.child_axes``). Without ax a figure is made (reference
        left, query right) and shown on interactive backends.
    Returns None, as the paper's did: a notebook cell that ends with this call shows the
    picture alone (pass ax, or use plt.gcf(), to reach the axes).
    """
    boxes = np.asarray(boxes).reshape(-1, 4)
    masks = np.asarray(masks)
    n = check_instances(boxes, masks, np.asarray(class_ids).reshape(-1), image=image,
                        scores=None if captions else scores)
    if not n:
        logger.info("*** No instances to display ***")
    auto_show = ax is None
    if ax is None:
        fig = plt.figure(figsize=figsize)
        grid = fig.add_gridspec(3, 3)
        ax = fig.add_subplot(grid[:, 1:])
        target_ax = fig.add_subplot(grid[1, 0])
    elif target_ax is None:
        # Beside the query, in its axes coordinates: left of it, vertically centred.
        target_ax = ax.inset_axes([-0.36, 0.33, 0.33, 0.33])

    height, width = image.shape[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)
    _draw_detections(ax, image, boxes, masks, scores=scores, colors=colors,
                     captions=captions, show_mask=show_mask, show_bbox=show_bbox)

    target_height, target_width = target.shape[:2]
    target_ax.set_ylim(target_height + 10, -10)
    target_ax.set_xlim(-10, target_width + 10)
    target_ax.axis("off")
    target_ax.imshow(np.asarray(target).astype(np.uint8))
    if auto_show:
        show_if_interactive()


def _grid_axes(count: int, figsize: tuple, ax) -> tuple:
    """(figure, list of at least `count` axes): ax's when given, else a new grid of
    ceil(sqrt(count)) columns and as many rows as needed (the height scales with them)."""
    if ax is not None:
        axes = list(np.ravel(ax)) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(axes) < count:
            raise ValueError("ax: expected at least {} axes (one per result), got {}".format(
                count, len(axes)))
        return axes[0].figure, axes
    side = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / side))
    fig = plt.figure(figsize=(figsize[0], figsize[1] * rows / side))
    grid = fig.add_gridspec(rows, side, hspace=0.1, wspace=0.02, left=0, right=1, bottom=0,
                            top=1)
    axes = [fig.add_subplot(grid[r, c]) for r in range(rows) for c in range(side)]
    for extra in axes[count:]:
        extra.axis("off")
    return fig, axes


def _draw_reference_inset(ax, reference: np.ndarray, height: int, width: int,
                          shift: float, linewidth: float = 5) -> None:
    """The reference in the query's bottom-left corner, framed in white.

    Its longer side is a third of the query's shorter side (aspect ratio kept)."""
    ref_height, ref_width = reference.shape[:2]
    scale = (min(height, width) / 3.0) / max(ref_height, ref_width, 1)
    inset_height, inset_width = ref_height * scale, ref_width * scale
    left, bottom = shift, height - shift
    ax.imshow(np.asarray(reference).astype(np.uint8),
              extent=[left, left + inset_width, bottom, bottom - inset_height], zorder=9)
    ax.add_patch(patches.Rectangle((left, bottom), inset_width, -inset_height,
                                   linewidth=linewidth, edgecolor="white", facecolor="none",
                                   zorder=10))


def display_grid(target_list, image_list, boxes_list, masks_list, class_ids_list,
                 scores_list=None, category_names_list=None, title: str = "",
                 figsize: tuple = (16, 16), ax=None, show_mask: bool = True,
                 show_bbox: bool = True, colors=None, captions=None,
                 show_scores: bool = True, target_shift: float = 10, fontsize: float = 14,
                 linewidth: float = 2, save: Union[bool, str] = False) -> None:
    """A grid of results, each query with its detections and its reference as an inset.

    *_list: one entry per result (a single result may be passed without lists).
    category_names_list: optional titles (one per result); else `title`.
    ax: optional axes to draw into (at least one per result); default a new
        ceil(sqrt(n)) square grid.
    colors / captions: optional, one list per result.
    save: False; True writes 'grid.pdf'; a path writes there.
    Returns None, as the paper's did: a notebook shows a returned figure a second time,
    after the inline backend has shown it (the figure: plt.gcf(), or pass ax).
    """
    single = not isinstance(target_list, (list, tuple))
    targets = [target_list] if single else list(target_list)
    images = [image_list] if single else list(image_list)
    boxes_all = [boxes_list] if single else list(boxes_list)
    masks_all = [masks_list] if single else list(masks_list)
    class_ids_all = [class_ids_list] if single else list(class_ids_list)
    count = len(targets)
    scores_all = [None] * count if scores_list is None else \
        ([scores_list] if single else list(scores_list))
    lengths = {len(images), len(boxes_all), len(masks_all), len(class_ids_all),
               len(scores_all)}
    if lengths != {count} or count == 0:
        raise ValueError("display_grid: expected the same number (>= 1) of targets, images, "
                         "boxes, masks, class ids and scores, got {}".format(
                             [len(targets), len(images), len(boxes_all), len(masks_all),
                              len(class_ids_all), len(scores_all)]))
    fig, axes = _grid_axes(count, figsize, ax)
    for index, axis in enumerate(axes):
        axis.axis("off")
        if index >= count:
            continue
        boxes = np.asarray(boxes_all[index]).reshape(-1, 4)
        masks = np.asarray(masks_all[index])
        check_instances(boxes, masks, np.asarray(class_ids_all[index]).reshape(-1),
                        image=images[index],
                        scores=scores_all[index] if captions is None else None)
        height, width = images[index].shape[:2]
        axis.set_ylim(height, 0)
        axis.set_xlim(0, width)
        _draw_detections(axis, images[index], boxes, masks, scores=scores_all[index],
                         colors=None if colors is None else colors[index],
                         captions=None if captions is None else captions[index],
                         show_mask=show_mask, show_bbox=show_bbox,
                         show_captions=show_scores, fontsize=10 / 14 * fontsize,
                         linewidth=linewidth)
        _draw_reference_inset(axis, targets[index], height, width, target_shift)
        name = category_names_list[index] if category_names_list is not None else title
        axis.set_title(name, fontsize=fontsize)
    if save:
        path = save if isinstance(save, str) else "grid.pdf"
        fig.savefig(path, bbox_inches="tight")
        logger.info("Saved the grid to %s", path)
    if ax is None:
        show_if_interactive()


############################################################
#  Evaluation figures
############################################################

def _new_axes(ax, figsize: tuple):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], ax=None,
                          title: str = "", cmap: str = "viridis", vmin: float = 0.0,
                          vmax: float = 1.0, colorbar: bool = True):
    """The confusion matrix [n, n] (rows: reference category, columns: category the
    detections are scored as); NaN cells (no ground truth) are left blank.
    Returns the axes."""
    matrix = np.asarray(matrix, dtype=float)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise ValueError("matrix: expected shape [{0}, {0}] for {0} class names, got "
                         "{1}".format(n, list(matrix.shape)))
    ax = _new_axes(ax, (8, 7))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=vmin, vmax=vmax,
                      interpolation="nearest")
    fontsize = max(4, min(10, 300 // max(n, 1)))
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(class_names, rotation=90, fontsize=fontsize)
    ax.set_yticklabels(class_names, fontsize=fontsize)
    ax.set_xlabel("scored as category")
    ax.set_ylabel("reference category")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="AP50")
    return ax


def plot_most_confused(histogram: Sequence[dict], ax=None, top_k: int = 20,
                       title: str = "Most confused categories"):
    """Bar chart of evaluation.most_confused's histogram: for each category, how many
    reference categories confuse it most. Returns the axes."""
    rows = list(histogram)[:top_k]
    ax = _new_axes(ax, (8, 4.5))
    names = [r["name"] for r in rows]
    ax.bar(range(len(rows)), [r["count"] for r in rows], color="tab:blue")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(names, rotation=60, ha="right")
    ax.set_ylabel("reference categories")
    ax.set_title(title)
    if not rows:
        ax.text(0.5, 0.5, "no confusion", ha="center", va="center", transform=ax.transAxes)
    return ax


def plot_ap_by_instance_count(rows: Sequence[dict], ax=None,
                              title: str = "AP50 by instances per image"):
    """Grouped bars of evaluation.ap50_by_instance_count's rows (one group per bucket,
    one bar per eval type, empty buckets left out), pairs per bucket annotated.
    Returns the axes."""
    rows = list(rows)
    ax = _new_axes(ax, (7, 4.5))
    types = [t for t in ("bbox", "segm") if rows and t in rows[0]]
    width = 0.8 / max(len(types), 1)
    x = np.arange(len(rows))
    for k, t in enumerate(types):
        values = np.array([r[t] if r[t] is not None and r[t] >= 0 else np.nan for r in rows])
        ax.bar(x + (k - (len(types) - 1) / 2) * width, np.nan_to_num(values), width,
               label=t)
    for i, row in enumerate(rows):
        ax.text(i, 1.02, "n={}".format(row["pairs"]), ha="center", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([r["bucket"] for r in rows])
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("instances of the category in the image")
    ax.set_ylabel("AP50")
    ax.set_title(title)
    if types:
        ax.legend()
    return ax
