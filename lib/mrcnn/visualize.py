"""
Mask R-CNN
Display and visualization functions (Matterport 2.1 API).

Headless-safe: matplotlib draws with whatever backend is configured. The functions that
Matterport ends with plt.show() call it only on interactive backends, so under Agg
(scripts, tests, servers) nothing blocks and the figure stays open for plt.savefig.
"""

from __future__ import annotations

import colorsys
import html
import itertools
import logging
import random
from typing import Sequence

import keras
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import lines, patches
from matplotlib.patches import Polygon
from skimage.measure import find_contours

from mrcnn import utils
from mrcnn import weights as weights_io

logger = logging.getLogger(__name__)

# Backends that render to files only: plt.show() there is a no-op that warns.
_NON_INTERACTIVE_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def show_if_interactive() -> None:
    """plt.show() on interactive backends only (never blocks or warns under Agg)."""
    if matplotlib.get_backend().lower() not in _NON_INTERACTIVE_BACKENDS:
        plt.show()


############################################################
#  Visualization
############################################################

def display_images(images, titles=None, cols=4, cmap=None, norm=None,
                   interpolation=None) -> None:
    """Display the given set of images, optionally with titles.

    images: list or array of image tensors in HWC format.
    titles: optional. A list of titles to display with each image.
    cols: number of images per row
    cmap: Optional. Color map to use. For example, "Blues".
    norm: Optional. A Normalize instance to map values to colors.
    interpolation: Optional. Image interpolation to use for display.
    """
    titles = titles if titles is not None else [""] * len(images)
    rows = len(images) // cols + 1
    plt.figure(figsize=(14, max(1, 14 * rows // cols)))
    for i, (image, title) in enumerate(zip(images, titles), start=1):
        plt.subplot(rows, cols, i)
        plt.title(title, fontsize=9)
        plt.axis("off")
        plt.imshow(np.asarray(image).astype(np.uint8), cmap=cmap,
                   norm=norm, interpolation=interpolation)
    show_if_interactive()


def random_colors(N: int, bright: bool = True) -> list:
    """Generate N visually distinct random colors (RGB floats in [0, 1]).

    Evenly spaced hues in HSV space, converted to RGB and shuffled with Python's
    `random` (seed it for reproducible colors).
    """
    brightness = 1.0 if bright else 0.7
    hsv = [(i / N, 1, brightness) for i in range(N)]
    colors = [colorsys.hsv_to_rgb(*c) for c in hsv]
    random.shuffle(colors)
    return colors


def apply_mask(image: np.ndarray, mask: np.ndarray, color, alpha: float = 0.5) -> np.ndarray:
    """Blend `color` (RGB in [0, 1]) into `image` where mask == 1, in place.

    image: [H, W, 3]; use a wide dtype (Matterport passes uint32) to avoid clipping.
    Pixel = pixel * (1 - alpha) + alpha * color * 255 inside the mask.
    """
    for c in range(3):
        image[:, :, c] = np.where(mask == 1,
                                  image[:, :, c] * (1 - alpha) + alpha * color[c] * 255,
                                  image[:, :, c])
    return image


def check_instances(boxes, masks, class_ids, image=None, class_names=None,
                    scores=None) -> int:
    """The instance count N of boxes [N, 4], masks [H, W, N] and class_ids [N].

    With image, also that it is [H, W, 3] and that the masks have its height and
    width; with class_names, that every class id names one; with scores, that there
    is one per instance. Raises ValueError saying what was expected and what came.
    """
    n = boxes.shape[0]
    if n and not (masks.shape[-1] == n and class_ids.shape[0] == n):
        raise ValueError(
            "boxes, masks and class_ids must describe the same instances: got "
            f"{n} boxes, {masks.shape[-1]} masks ([H, W, N]) and {class_ids.shape[0]} "
            "class ids")
    if image is not None:
        shape = tuple(np.shape(image))
        if len(shape) != 3 or shape[-1] not in (3, 4):  # RGBA: imshow draws it too
            raise ValueError(f"image: expected an RGB image [H, W, 3], got shape {shape}")
        if n and tuple(masks.shape[:2]) != shape[:2]:
            # Matterport's load_image_gt gives 56x56 mini masks under USE_MINI_MASK.
            raise ValueError(
                f"masks: expected [H, W, N] with the image's height and width {shape[:2]}, "
                f"got shape {tuple(masks.shape)}; expand mini masks first: "
                "utils.expand_mask(boxes, masks, image.shape)")
    if scores is not None and len(scores) < n:
        raise ValueError(f"scores: expected one per instance ({n}), got {len(scores)}")
    if class_names is not None and n:
        check_class_names(class_ids, class_names)
    return n


def check_class_names(class_ids: np.ndarray, class_names: Sequence[str]) -> None:
    """ValueError unless every class id names one of class_names (an IndexError in the
    middle of a drawing before)."""
    unnamed = sorted({int(c) for c in np.ravel(class_ids)
                      if not 0 <= int(c) < len(class_names)})
    if unnamed:
        raise ValueError(f"class_ids: {unnamed[:5]} have no name in class_names "
                         f"({len(class_names)} names, so ids 0..{len(class_names) - 1})")


def draw_mask_outline(ax, mask: np.ndarray, color) -> None:
    """Add the contour polygons of a [H, W] mask to `ax`."""
    # Pad so that masks touching the image border still give closed polygons.
    padded_mask = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.uint8)
    padded_mask[1:-1, 1:-1] = mask
    for verts in find_contours(padded_mask, 0.5):
        verts = np.fliplr(verts) - 1  # remove the padding, (y, x) -> (x, y)
        ax.add_patch(Polygon(verts, facecolor="none", edgecolor=color))


def display_instances(image, boxes, masks, class_ids, class_names,
                      scores=None, title="",
                      figsize=(16, 16), ax=None,
                      show_mask=True, show_bbox=True,
                      colors=None, captions=None) -> None:
    """Draw instances (boxes, masks, captions) over an image.

    boxes: [num_instance, (y1, x1, y2, x2)] in image coordinates.
    masks: [height, width, num_instances]
    class_ids: [num_instances]
    class_names: list of class names of the dataset
    scores: (optional) confidence scores for each box
    title: (optional) Figure title
    show_mask, show_bbox: To show masks and bounding boxes or not
    figsize: (optional) the size of the image
    colors: (optional) An array of colors to use with each object
    captions: (optional) A list of strings to use as captions for each object
    ax: (optional) Matplotlib axis to draw on; without one a figure is created and
        shown (on interactive backends).
    """
    N = check_instances(boxes, masks, class_ids, image=image,
                        class_names=None if captions else class_names,
                        scores=None if captions else scores)
    if not N:
        logger.info("*** No instances to display ***")

    auto_show = ax is None
    if ax is None:
        _, ax = plt.subplots(1, figsize=figsize)
    colors = colors if colors is not None else random_colors(N)

    # Show area outside image boundaries.
    height, width = image.shape[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    ax.axis("off")
    ax.set_title(title)

    masked_image = image.astype(np.uint32).copy()
    for i in range(N):
        color = colors[i]
        if not np.any(boxes[i]):
            continue  # no box: the instance was likely lost in image cropping
        y1, x1, y2, x2 = boxes[i]
        if show_bbox:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                           alpha=0.7, linestyle="dashed",
                                           edgecolor=color, facecolor="none"))
        if not captions:
            score = scores[i] if scores is not None else None
            label = class_names[class_ids[i]]
            caption = "{} {:.3f}".format(label, score) if score else label
        else:
            caption = captions[i]
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")

        mask = masks[:, :, i]
        if show_mask:
            masked_image = apply_mask(masked_image, mask, color)
        draw_mask_outline(ax, mask, color)
    ax.imshow(masked_image.astype(np.uint8))
    if auto_show:
        show_if_interactive()


def display_differences(image,
                        gt_box, gt_class_id, gt_mask,
                        pred_box, pred_class_id, pred_score, pred_mask,
                        class_names, title="", ax=None,
                        show_mask=True, show_box=True,
                        iou_threshold=0.5, score_threshold=0.5) -> None:
    """Display ground truth (green) and predictions (red) on the same image.

    Prediction captions show "score / IoU" with the matched (or best) ground truth.
    """
    gt_match, pred_match, overlaps = utils.compute_matches(
        gt_box, gt_class_id, gt_mask,
        pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    colors = [(0, 1, 0, .8)] * len(gt_match) + [(1, 0, 0, 1)] * len(pred_match)
    class_ids = np.concatenate([gt_class_id, pred_class_id])
    scores = np.concatenate([np.zeros([len(gt_match)]), pred_score])
    boxes = np.concatenate([gt_box, pred_box])
    masks = np.concatenate([gt_mask, pred_mask], axis=-1)
    captions = [""] * len(gt_match) + [
        "{:.2f} / {:.2f}".format(
            pred_score[i],
            overlaps[i, int(pred_match[i])] if pred_match[i] > -1 else overlaps[i].max())
        for i in range(len(pred_match))]
    title = title or "Ground Truth and Detections\n GT=green, pred=red, captions: score/IoU"
    display_instances(image, boxes, masks, class_ids, class_names, scores, ax=ax,
                      show_bbox=show_box, show_mask=show_mask,
                      colors=colors, captions=captions, title=title)


def draw_rois(image, rois, refined_rois, mask, class_ids, class_names, limit=10) -> None:
    """Draw ROIs (dashed), their refinements (solid) and masks of positive ROIs.

    rois: [n, (y1, x1, y2, x2)] in image coordinates.
    refined_rois: [n, 4] the same ROIs refined to fit objects better.
    mask: [n, mask_h, mask_w] small masks, unmolded into each ROI.
    class_ids: [n]; 0 marks a negative (background) ROI, drawn in gray.
    At most `limit` ROIs, picked at random, are drawn.
    """
    check_class_names(class_ids, class_names)
    masked_image = image.copy()
    ids = np.arange(rois.shape[0], dtype=np.int32)
    if ids.shape[0] > limit:
        ids = np.random.choice(ids, limit, replace=False)

    _, ax = plt.subplots(1, figsize=(12, 12))
    if rois.shape[0] > limit:
        plt.title("Showing {} random ROIs out of {}".format(len(ids), rois.shape[0]))
    else:
        plt.title("{} ROIs".format(len(ids)))

    # Show area outside image boundaries.
    ax.set_ylim(image.shape[0] + 20, -20)
    ax.set_xlim(-50, image.shape[1] + 20)
    ax.axis("off")

    for i in ids:
        color = np.random.rand(3)
        class_id = class_ids[i]
        y1, x1, y2, x2 = rois[i]
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                       edgecolor=color if class_id else "gray",
                                       facecolor="none", linestyle="dashed"))
        if class_id:
            ry1, rx1, ry2, rx2 = refined_rois[i]
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            # Connect the top-left corners of the ROI and its refinement.
            ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
            ax.text(rx1, ry1 + 8, "{}".format(class_names[class_id]),
                    color="w", size=11, backgroundcolor="none")
            m = utils.unmold_mask(mask[i], rois[i][:4].astype(np.int32), image.shape)
            masked_image = apply_mask(masked_image, m, color)

    ax.imshow(masked_image)

    positives = class_ids[class_ids > 0].shape[0]
    logger.info("Positive ROIs: %d", positives)
    logger.info("Negative ROIs: %d", class_ids[class_ids == 0].shape[0])
    logger.info("Positive Ratio: %.2f", positives / class_ids.shape[0])


def draw_box(image: np.ndarray, box, color) -> np.ndarray:
    """Draw a 2-pixel wide box [y1, x1, y2, x2] into the image array, in place.

    color: list of 3 int values for RGB.
    """
    y1, x1, y2, x2 = box
    image[y1:y1 + 2, x1:x2] = color
    image[y2:y2 + 2, x1:x2] = color
    image[y1:y2, x1:x1 + 2] = color
    image[y1:y2, x2:x2 + 2] = color
    return image


def display_top_masks(image, mask, class_ids, class_names, limit=4) -> None:
    """Display the image and the masks of its `limit` most prominent classes."""
    if mask.shape[-1] != len(class_ids):
        raise ValueError(f"mask [H, W, N] and class_ids [N]: got {mask.shape[-1]} masks and "
                         f"{len(class_ids)} class ids")
    check_class_names(class_ids, class_names)
    to_display = [image]
    titles = ["H x W={}x{}".format(image.shape[0], image.shape[1])]
    # Rank the classes present by their total mask area.
    unique_class_ids = np.unique(class_ids)
    mask_area = [np.sum(mask[:, :, np.where(class_ids == i)[0]]) for i in unique_class_ids]
    top_ids = [v[0] for v in sorted(zip(unique_class_ids, mask_area),
                                    key=lambda r: r[1], reverse=True) if v[1] > 0]
    for i in range(limit):
        class_id = top_ids[i] if i < len(top_ids) else -1
        # All instances of the class in one image, numbered 1..n.
        m = mask[:, :, np.where(class_ids == class_id)[0]]
        m = np.sum(m * np.arange(1, m.shape[-1] + 1), -1)
        to_display.append(m)
        titles.append(class_names[class_id] if class_id != -1 else "-")
    display_images(to_display, titles=titles, cols=limit + 1, cmap="Blues_r")


def plot_precision_recall(AP, precisions, recalls) -> None:
    """Draw the precision-recall curve.

    AP: Average precision at IoU >= 0.5
    precisions: list of precision values
    recalls: list of recall values
    """
    _, ax = plt.subplots(1)
    ax.set_title("Precision-Recall Curve. AP@50 = {:.3f}".format(AP))
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.plot(recalls, precisions)


def plot_overlaps(gt_class_ids, pred_class_ids, pred_scores,
                  overlaps, class_names, threshold=0.5) -> None:
    """Draw a grid showing how ground truth objects are classified.

    gt_class_ids: [N] int. Ground truth class IDs
    pred_class_ids: [N] int. Predicted class IDs
    pred_scores: [N] float. The probability scores of predicted classes
    overlaps: [pred_boxes, gt_boxes] IoU overlaps of predictions and GT boxes.
    class_names: list of all class names in the dataset
    threshold: Float. The prediction probability required to predict a class
    """
    gt_class_ids = gt_class_ids[gt_class_ids != 0]
    pred_class_ids = pred_class_ids[pred_class_ids != 0]
    overlaps = np.asarray(overlaps)
    if overlaps.shape != (len(pred_class_ids), len(gt_class_ids)):
        raise ValueError(
            f"overlaps: expected [predictions, ground truth] = [{len(pred_class_ids)}, "
            f"{len(gt_class_ids)}] (non-zero class ids), got shape {overlaps.shape}")

    plt.figure(figsize=(12, 10))
    if overlaps.size:
        plt.imshow(overlaps, interpolation="nearest", cmap=plt.cm.Blues)
    else:
        # No prediction or no ground truth: an empty grid (imshow can't size one).
        plt.xlim(-0.5, max(len(gt_class_ids), 1) - 0.5)
        plt.ylim(max(len(pred_class_ids), 1) - 0.5, -0.5)
    plt.yticks(np.arange(len(pred_class_ids)),
               ["{} ({:.2f})".format(class_names[int(id_)], pred_scores[i])
                for i, id_ in enumerate(pred_class_ids)])
    plt.xticks(np.arange(len(gt_class_ids)),
               [class_names[int(id_)] for id_ in gt_class_ids], rotation=90)

    thresh = overlaps.max() / 2. if overlaps.size else 0.
    for i, j in itertools.product(range(overlaps.shape[0]), range(overlaps.shape[1])):
        text = ""
        if overlaps[i, j] > threshold:
            text = "match" if gt_class_ids[j] == pred_class_ids[i] else "wrong"
        color = ("white" if overlaps[i, j] > thresh
                 else "black" if overlaps[i, j] > 0
                 else "grey")
        plt.text(j, i, "{:.3f}\n{}".format(overlaps[i, j], text),
                 horizontalalignment="center", verticalalignment="center",
                 fontsize=9, color=color)

    plt.tight_layout()
    plt.xlabel("Ground Truth")
    plt.ylabel("Predictions")


def _box_style(visibility: int, color):
    """(color, linestyle, alpha) for draw_boxes' visibility levels 0, 1, 2."""
    if visibility == 0:
        return "gray", "dotted", 0.5
    if visibility == 1:
        return color, "dotted", 1
    if visibility == 2:
        return color, "solid", 1
    raise ValueError(f"visibilities must be 0, 1 or 2, got {visibility!r}")


def draw_boxes(image, boxes=None, refined_boxes=None,
               masks=None, captions=None, visibilities=None,
               title="", ax=None) -> None:
    """Draw bounding boxes and segmentation masks with different customizations.

    boxes: [N, (y1, x1, y2, x2)] in image coordinates.
    refined_boxes: Like boxes, but draw with solid lines to show
        that they're the result of refining 'boxes'.
    masks: [height, width, N]
    captions: List of N titles to display on each box
    visibilities: (optional) List of values of 0, 1, or 2. Determine how
        prominent each bounding box should be.
    title: An optional title to show over the image
    ax: (optional) Matplotlib axis to draw on.
    """
    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes needs boxes or refined_boxes; got neither")
    N = boxes.shape[0] if boxes is not None else refined_boxes.shape[0]

    if ax is None:
        _, ax = plt.subplots(1, figsize=(12, 12))
    colors = random_colors(N)

    # Show area outside image boundaries.
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    ax.axis("off")
    ax.set_title(title)

    masked_image = image.astype(np.uint32).copy()
    for i in range(N):
        visibility = visibilities[i] if visibilities is not None else 1
        color, style, alpha = _box_style(visibility, colors[i])

        if boxes is not None:
            if not np.any(boxes[i]):
                continue  # no box: the instance was likely lost in cropping
            y1, x1, y2, x2 = boxes[i]
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                           alpha=alpha, linestyle=style,
                                           edgecolor=color, facecolor="none"))

        refined = refined_boxes is not None and visibility > 0
        if refined:
            ry1, rx1, ry2, rx2 = refined_boxes[i].astype(np.int32)
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            if boxes is not None:
                # Connect the top-left corners of the box and its refinement.
                ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))

        if captions is not None:
            # Captions go on the refined box when there is one.
            cy1, cx1 = (ry1, rx1) if refined else (y1, x1)
            ax.text(cx1, cy1, captions[i], size=11, verticalalignment="top",
                    color="w", backgroundcolor="none",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})

        if masks is not None:
            mask = masks[:, :, i]
            # to_rgb: hidden boxes use the color name "gray", apply_mask needs RGB
            masked_image = apply_mask(masked_image, mask, matplotlib.colors.to_rgb(color))
            draw_mask_outline(ax, mask, color)
    ax.imshow(masked_image.astype(np.uint8))


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, where HTML output renders."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _text_table(table: list) -> str:
    widths = [max(len(row[c]) for row in table if c < len(row))
              for c in range(max(len(row) for row in table))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in table)


def display_table(table) -> None:
    """Display values in a table format.

    table: an iterable of rows, and each row is an iterable of values.
    In a Jupyter notebook it is shown as HTML; elsewhere printed as aligned text.
    """
    rows = [[str(col) for col in row] for row in table]
    if not rows:
        return
    if _in_notebook():
        import IPython.display
        body = "".join("<tr>" + "".join("<td>{:40}</td>".format(html.escape(c)) for c in row)
                       + "</tr>" for row in rows)
        IPython.display.display(IPython.display.HTML("<table>" + body + "</table>"))
    else:
        print(_text_table(rows))  # the function's purpose is to show the table


def display_weight_stats(model) -> None:
    """Show a table of every weight of the model with its shape, min, max and std.

    model: a keras Model or a MaskRCNN-like object with `keras_model`. Weights are
    named by their checkpoint key "layer/var"; a constant weight (except conv biases)
    is flagged "*** dead?", and values above 1000 in magnitude "*** Overflow?".
    """
    keras_model = getattr(model, "keras_model", model)
    table = [["WEIGHT NAME", "SHAPE", "MIN", "MAX", "STD"]]
    for entry in weights_io.weight_entries(keras_model):
        w = np.asarray(keras.ops.convert_to_numpy(entry.variable))
        if w.size == 0:
            continue
        is_conv_bias = (isinstance(entry.layer, keras.layers.Conv2D)
                        and entry.variable.name == "bias")
        alert = ""
        if w.min() == w.max() and not is_conv_bias:
            alert += " *** dead?"
        if np.abs(w.min()) > 1000 or np.abs(w.max()) > 1000:
            alert += " *** Overflow?"
        table.append([
            entry.key + alert,
            str(w.shape),
            "{:+9.4f}".format(w.min()),
            "{:+10.4f}".format(w.max()),
            "{:+9.4f}".format(w.std()),
        ])
    display_table(table)
