"""Matching detections to ground truth, AP and recall (Matterport's mrcnn.utils names).
"""
from __future__ import annotations

import numpy as np

from mrcnn.boxes import compute_overlaps, compute_overlaps_masks


def trim_zeros(x: np.ndarray) -> np.ndarray:
    """Remove the all-zero (padding) rows of a [rows, columns] array."""
    if len(x.shape) != 2:
        raise ValueError("trim_zeros expects a 2-D array; got shape {}".format(
            x.shape))
    return x[~np.all(x == 0, axis=1)]


def _check_counts(kind: str, boxes: np.ndarray, **arrays) -> None:
    """ValueError unless class ids [N], scores [N] and masks [H, W, N] cover the N
    non-zero rows of boxes (fewer matched the wrong instances, silently). Longer is
    fine: zero-padded rows (Matterport's data generator) are trimmed."""
    n = trim_zeros(boxes).shape[0]
    counts = {name: (np.shape(a)[-1] if name.endswith("masks") else len(a))
              for name, a in arrays.items()}
    if any(count < n for count in counts.values()):
        raise ValueError(f"{kind} instances: {n} non-zero boxes, so expected at least {n} "
                         f"class ids, scores and masks [H, W, N], got {counts}")


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
    _check_counts("gt", gt_boxes, gt_class_ids=gt_class_ids, gt_masks=gt_masks)
    _check_counts("prediction", pred_boxes, pred_class_ids=pred_class_ids,
                  pred_scores=pred_scores, pred_masks=pred_masks)
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
            # Printed, as Matterport printed it: notebooks show it.
            print("AP @{:.2f}:\t {:.3f}".format(iou_threshold, ap))
        AP.append(ap)
    AP = np.array(AP).mean()
    if verbose:
        print("AP @{:.2f}-{:.2f}:\t {:.3f}".format(iou_thresholds[0], iou_thresholds[-1], AP))
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
