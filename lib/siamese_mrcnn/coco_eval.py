"""COCO scoring for the one-shot protocol: COCOeval restricted to chosen classes,
detections as COCO results, one COCOeval run per evaluation type.

``customCOCOeval`` keeps the paper code's name and ``summarize(class_index=...)``.
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Optional, Sequence, Union

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn.coco import load_results

logger = logging.getLogger(__name__)

EVAL_TYPES = ("bbox", "segm")

#: The 12 numbers of COCOeval's summary, in its order.
STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


############################################################
#  COCOeval with a class restriction
############################################################

class customCOCOeval(COCOeval):  # noqa: N801 - the old public name
    """COCOeval whose summary can average over a subset of the categories."""

    # (is AP, IoU threshold, area range, index into params.maxDets) per statistic.
    _SUMMARY = ((True, None, "all", -1), (True, .5, "all", -1), (True, .75, "all", -1),
                (True, None, "small", -1), (True, None, "medium", -1),
                (True, None, "large", -1), (False, None, "all", 0),
                (False, None, "all", 1), (False, None, "all", -1),
                (False, None, "small", -1), (False, None, "medium", -1),
                (False, None, "large", -1))

    def summarize(self, class_index: Union[None, int, Sequence[int]] = None,
                  verbose: int = 1) -> np.ndarray:
        """Computes the 12 COCO statistics (bbox / segm), averaged over the
        categories at positions ``class_index`` of ``params.catIds`` (all when
        None). Entries of -1 (no ground truth) are left out of the averages; a
        statistic with nothing to average is -1.

        Returns the statistics [12] and stores them in ``self.stats``.
        """
        if not self.eval:
            raise ValueError("customCOCOeval.summarize: run evaluate() and accumulate() first")
        if self.params.iouType not in EVAL_TYPES:
            raise ValueError("customCOCOeval.summarize: expected iouType 'bbox' or 'segm', "
                             "got {!r}".format(self.params.iouType))
        index = self._class_positions(class_index)
        stats = np.array([self._summary_value(ap, iou, area, self.params.maxDets[m], index)
                          for ap, iou, area, m in self._SUMMARY])
        if verbose > 0:
            # Printed, as pycocotools and the paper's code print it: the notebooks show it.
            for line in self.summary_lines(stats):
                print(line)
        self.stats = stats
        return stats

    def _class_positions(self, class_index) -> np.ndarray:
        count = len(self.params.catIds) if self.params.useCats else 1
        if class_index is None:
            return np.arange(count)
        index = np.atleast_1d(np.asarray(class_index, dtype=int))
        bad = index[(index < 0) | (index >= count)]
        if bad.size:
            raise ValueError("class_index: expected positions in 0..{} of params.catIds, got "
                             "{}".format(count - 1, bad.tolist()))
        return index

    def _summary_value(self, ap: bool, iou: Optional[float], area: str, max_dets: int,
                       class_positions: np.ndarray) -> float:
        p = self.params
        a = p.areaRngLbl.index(area)
        m = list(p.maxDets).index(max_dets)
        if ap:
            values = self.eval["precision"][:, :, :, a, m]  # [T, R, K]
        else:
            values = self.eval["recall"][:, :, a, m]  # [T, K]
        if iou is not None:
            values = values[np.flatnonzero(np.isclose(p.iouThrs, iou))]
        values = values[..., class_positions]
        values = values[values > -1]
        return float(np.mean(values)) if values.size else -1.0

    def summary_lines(self, stats: Optional[np.ndarray] = None) -> list:
        """The statistics as pycocotools' summary lines."""
        stats = self.stats if stats is None else stats
        p = self.params
        lines = []
        for (ap, iou, area, m), value in zip(self._SUMMARY, stats):
            iou_text = "{:0.2f}:{:0.2f}".format(p.iouThrs[0], p.iouThrs[-1]) \
                if iou is None else "{:0.2f}".format(iou)
            lines.append(" {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = "
                         "{:0.3f}".format("Average Precision" if ap else "Average Recall",
                                          "(AP)" if ap else "(AR)", iou_text, area,
                                          p.maxDets[m], value))
        return lines

    def per_category_ap(self, iou_threshold: float = 0.5, area: str = "all") -> np.ndarray:
        """AP of each category of params.catIds (same order) at one IoU threshold and
        the largest maxDets; -1 for a category without ground truth."""
        if not self.eval:
            raise ValueError("customCOCOeval.per_category_ap: run accumulate() first")
        p = self.params
        t = np.flatnonzero(np.isclose(p.iouThrs, iou_threshold))
        if t.size == 0:
            raise ValueError("iou_threshold: expected one of {}, got {}".format(
                np.round(p.iouThrs, 2).tolist(), iou_threshold))
        precision = self.eval["precision"][t[0], :, :, p.areaRngLbl.index(area), -1]  # [R, K]
        result = np.full(precision.shape[1], -1.0)
        for k in range(precision.shape[1]):
            values = precision[:, k]
            if np.any(values > -1):
                result[k] = float(np.mean(values[values > -1]))
        return result


############################################################
#  COCO results
############################################################

def detections_to_coco(detection: dict, coco_image_id: int, coco_category_id: int
                       ) -> list:
    """One query's detections as COCO results, all labelled coco_category_id.

    detection: model.detect's dict: rois [N, (y1, x1, y2, x2)] pixels of the
        original image, scores [N], masks [H, W, N] (left out when absent).
    Returns dicts image_id, category_id, bbox [x, y, w, h], score and, with
    masks, segmentation (compressed RLE, counts as str: JSON-ready).
    """
    rois = np.asarray(detection["rois"]).reshape(-1, 4)
    scores = np.asarray(detection["scores"]).reshape(-1)
    n = rois.shape[0]
    if scores.shape[0] != n:
        raise ValueError("detection: expected {} scores for {} rois, got {}".format(
            n, n, scores.shape[0]))
    masks = detection.get("masks")
    with_masks = masks is not None and np.ndim(masks) == 3 and np.shape(masks)[2] == n
    results = []
    for i in range(n):
        y1, x1, y2, x2 = (float(v) for v in rois[i])
        result = {"image_id": int(coco_image_id), "category_id": int(coco_category_id),
                  "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[i])}
        if with_masks:
            # pycocotools rejects bool masks and needs Fortran order.
            rle = mask_utils.encode(np.asfortranarray(masks[:, :, i].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            result["segmentation"] = rle
        results.append(result)
    return results


# The shared reader of results (pycocotools' prints silenced, empty results allowed, the
# caller's dicts left intact).
load_coco_results = load_results


def run_coco_eval(coco: COCO, results: list, coco_image_ids: Sequence[int],
                  coco_category_ids: Sequence[int], eval_type: str = "bbox"
                  ) -> customCOCOeval:
    """evaluate() and accumulate() of a customCOCOeval restricted to the given images
    and categories (COCO ids). Call summarize() on the result for the statistics."""
    if eval_type not in EVAL_TYPES:
        raise ValueError("eval_type: expected one of {}, got {!r}".format(EVAL_TYPES,
                                                                         eval_type))
    if eval_type == "segm" and results and any("segmentation" not in r for r in results):
        raise ValueError("eval_type 'segm' needs masks, but the detections have none "
                         "(a MODEL='frcnn' model?): evaluate 'bbox' only")
    coco_eval = customCOCOeval(coco, load_coco_results(coco, results), eval_type)
    coco_eval.params.imgIds = sorted(int(i) for i in coco_image_ids)
    coco_eval.params.catIds = sorted(int(c) for c in coco_category_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval

def parse_eval_types(eval_type: Union[str, Sequence[str]]) -> tuple:
    types = (eval_type,) if isinstance(eval_type, str) else tuple(eval_type)
    if eval_type == "both":
        types = EVAL_TYPES
    bad = [t for t in types if t not in EVAL_TYPES]
    if bad or not types:
        raise ValueError("eval_type: expected 'bbox', 'segm', 'both' or a list of them, got "
                         "{!r}".format(eval_type))
    return types
