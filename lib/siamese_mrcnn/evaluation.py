"""One-shot evaluation of Siamese Mask R-CNN on COCO-format data (paper §5.2, SPEC §7).

The protocol (``evaluate_protocol``; the paper code's ``evaluate_dataset`` runs it
and returns what the paper code returned): for every test image and every active
category present in it (non-crowd), draw NUM_TARGETS references of the category
(from other images), detect, label all detections with that category and
collect them as COCO results (boxes [x, y, w, h] in original image pixels,
masks as compressed RLE). COCOeval then runs restricted to the evaluated images
and to the chosen categories; its 12 summary numbers are averages over the
chosen categories only (``customCOCOeval.summarize(class_index=...)``).

Runs (``run_evaluation``): N evaluations with different, seeded reference
draws, reported per statistic as the mean and a 95% t-interval. Splits
(``evaluate_split``): one-shot vs background classes of a COCO split;
``average_over_splits`` averages the splits' means. k-shot:
build the inference model with NUM_TARGETS = k (the weights do not depend on
k); the protocol draws config.NUM_TARGETS references per pair. Random-boxes
baseline: ``random_detections=True``.

The analyses (``confusion_matrix``, ``most_confused``,
``ap50_by_instance_count``) and the ``write_*`` / ``save_*`` writers live in
``siamese_mrcnn.analysis``; they are re-exported here (lazily, to avoid a
circular import) so the old import paths keep working.

Differences from the old ``lib/utils.py`` code, all deliberate:

- Each query image is loaded once (not once per category), its categories come
  from the data set's index (no ground-truth loading), and (query, reference)
  pairs are fed to ``model.detect`` in batches of BATCH_SIZE (the last batch is
  padded with repeats whose detections are dropped). With ``workers`` > 0,
  references are drawn in threads while the model runs.
- The query's backbone and FPN run once per image, not once per (image,
  category) pair (``cache_queries=True``, the default: ``model.encode_queries``,
  then ``model.detect_with_encoded`` with the pair's encoded reference). The
  detections are those of ``detect()`` on the same pair.
- Reference draws are reproducible: every pair draws from its own generator
  derived from the run's seed, the query image id and the category, so the
  numbers depend neither on batching, nor on the number of workers, nor on
  which other images are evaluated. The numpy global state is
  used only when no seed is given.
- References come from another image than the query when one exists (SPEC §5);
  ``allow_same_image=True`` restores the old behaviour.
- ``shared_reference=True`` (an option; the default is the paper's fresh
  reference per pair): one set of references per category and run, encoded
  once (``model.encode_reference``) and reused for every query with
  ``model.detect_with_reference``. That reference may come from one of the
  evaluated images.
- COCOeval's categories are restricted to the chosen ones (the numbers are the
  same: COCOeval scores each category independently) and ``class_index=None``
  means the active classes (the old code then averaged over all categories,
  including never-referenced ones with AP 0).
- A pair whose reference cannot be drawn is logged and skipped (its ground
  truth still counts as missed); detection errors are raised, not swallowed.
- Nothing is printed: summaries go to the logger, progress to a tqdm bar.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from siamese_mrcnn.data import ReferenceNotFoundError, active_classes_of, get_one_target

logger = logging.getLogger(__name__)

EVAL_TYPES = ("bbox", "segm")

#: The 12 numbers of COCOeval's summary, in its order.
STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")

# Keys of the explicit seed derivation (see _child_rng).
_KEY_PAIR, _KEY_SHARED, _KEY_RANDOM = 0, 1, 2

SeedLike = Union[None, int, np.random.SeedSequence, np.random.Generator]


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


def load_coco_results(coco: COCO, results: list) -> COCO:
    """coco.loadRes(results) without its prints; also for no results (loadRes fails)."""
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            return coco.loadRes(copy.deepcopy(results))
        empty = COCO()
        empty.dataset = {"images": list(coco.dataset["images"]),
                         "categories": copy.deepcopy(coco.dataset["categories"]),
                         "annotations": []}
        empty.createIndex()
    return empty


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


############################################################
#  Seeds
############################################################

def _seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """A SeedSequence from an int, a SeedSequence, a Generator or None (drawn from
    the numpy global state, so np.random.seed still makes a run reproducible)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(2 ** 63)))
    if seed is None:
        return np.random.SeedSequence(int(np.random.randint(0, 2 ** 31 - 1)))
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
            or seed < 0:
        raise ValueError("seed: expected None, an integer >= 0, a SeedSequence or a "
                         "Generator, got {!r}".format(seed))
    return np.random.SeedSequence(int(seed))


def _child_rng(root: np.random.SeedSequence, kind: int, *index: int) -> np.random.Generator:
    """A generator that depends only on the run's seed, a kind and an index (never on
    the order of the calls, so threads and batching do not change the draws)."""
    key = tuple(root.spawn_key) + (kind,) + tuple(int(i) for i in index)
    return np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=key))


def seed_label(root: np.random.SeedSequence) -> Any:
    """A JSON-ready description of a SeedSequence (entropy and spawn key)."""
    return {"entropy": int(root.entropy), "spawn_key": [int(k) for k in root.spawn_key]}


############################################################
#  Pairs and detection
############################################################

@dataclass
class _Query:
    """A query image and its references, one entry per reference category."""
    image_id: int
    image: np.ndarray          # [H, W, 3] raw
    categories: list           # internal class ids
    references: list           # per category: k references [T, T, 3], or None (failed)


def _check_indexed(dataset: Any) -> None:
    if not getattr(dataset, "image_category_index", None):
        if not hasattr(dataset, "build_indices"):
            raise ValueError("dataset: expected an IndexedCocoDataset (with "
                             "image_category_index), got {}".format(type(dataset).__name__))
        dataset.build_indices()


def _requested_images(dataset: Any, image_ids: Optional[Sequence[int]], limit: int) -> list:
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    if limit:
        ids = ids[:int(limit)]
    bad = [i for i in ids if not 0 <= int(i) < len(dataset.image_info)]
    if bad:
        raise ValueError("image_ids: expected internal image ids in 0..{}, got {}".format(
            len(dataset.image_info) - 1, bad[:10]))
    if not ids:
        raise ValueError("no images to evaluate: the data set (or image_ids) is empty")
    return [int(i) for i in ids]


def evaluation_pairs(dataset: Any, image_ids: Sequence[int], categories: Iterable[int]
                     ) -> list:
    """The protocol's (image, categories) list: for each image, the given categories
    that have a non-crowd instance in it (images without one are left out).

    Returns [(internal image id, [internal class ids, sorted])].
    """
    _check_indexed(dataset)
    wanted = set(int(c) for c in categories)
    pairs = []
    for image_id in image_ids:
        present = sorted(wanted.intersection(dataset.image_category_index[image_id]))
        if present:
            pairs.append((int(image_id), present))
    return pairs


def _draw_references(dataset: Any, config: Any, category: int, rng: np.random.Generator,
                     exclude_image_id: Optional[int], allow_same_image: bool
                     ) -> Optional[list]:
    """NUM_TARGETS references of a category, or None (logged) when none can be drawn."""
    try:
        return [get_one_target(category, dataset, config, exclude_image_id=exclude_image_id,
                               allow_same_image=allow_same_image, rng=rng)
                for _ in range(config.NUM_TARGETS)]
    except ReferenceNotFoundError as error:
        logger.warning("No reference for category %d (query image %s): %s; pair skipped",
                       category, exclude_image_id, error)
        return None


class _PairDetector:
    """Runs (query, reference) pairs through the model in batches of BATCH_SIZE."""

    def __init__(self, model: Any, dataset: Any, seed: np.random.SeedSequence,
                 random_detections: bool, shared_reference: bool, allow_same_image: bool,
                 workers: int, cache_queries: bool = True):
        self.model, self.dataset, self.config = model, dataset, model.config
        self.seed = seed
        self.random_detections = random_detections
        self.shared_reference = shared_reference
        self.allow_same_image = allow_same_image
        self.workers = int(workers)
        self.batch_size = int(model.config.BATCH_SIZE)
        self.encoded: dict = {}
        self.batches = 0
        self.timing = {"load": 0.0, "references": 0.0, "detect": 0.0}
        self.skipped: list = []
        self._timing_lock = threading.Lock()
        # Pairs come image by image: encode each query image once for all its categories.
        self.cache_queries = bool(cache_queries) and hasattr(model, "encode_queries")
        self._encoded_queries: dict = {}  # image id -> encode_queries() entry

    # ---- preparing queries (possibly in threads) --------------------------
    def _prepare(self, item: tuple) -> _Query:
        image_id, categories = item
        t = time.perf_counter()
        image = self.dataset.load_image(image_id)
        t_load = time.perf_counter() - t
        references = []
        for category in categories:
            if self.shared_reference:
                references.append(None)
                continue
            # One generator per (image, category): the draws depend neither on threads,
            # batching nor on which other images are evaluated.
            rng = _child_rng(self.seed, _KEY_PAIR, image_id, category)
            references.append(_draw_references(self.dataset, self.config, category, rng,
                                               image_id, self.allow_same_image))
        with self._timing_lock:
            self.timing["load"] += t_load
            self.timing["references"] += time.perf_counter() - t - t_load
        return _Query(image_id, image, list(categories), references)

    def _queries(self, items: list) -> Iterator[_Query]:
        if self.workers <= 0:
            for item in items:
                yield self._prepare(item)
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending: deque = deque()
            remaining = iter(items)
            for item in remaining:
                pending.append(pool.submit(self._prepare, item))
                if len(pending) >= 2 * self.workers:
                    break
            while pending:
                query = pending.popleft().result()
                following = next(remaining, None)
                if following is not None:
                    pending.append(pool.submit(self._prepare, following))
                yield query

    # ---- shared references ------------------------------------------------
    def encode_shared(self, categories: Iterable[int]) -> list:
        """Draws and encodes one reference set per category (shared_reference mode).
        Returns the categories that have none."""
        t = time.perf_counter()
        failed = []
        drawn = {}
        for category in sorted(set(int(c) for c in categories)):
            rng = _child_rng(self.seed, _KEY_SHARED, category)
            references = _draw_references(self.dataset, self.config, category, rng, None,
                                          True)
            if references is None:
                failed.append(category)
            else:
                drawn[category] = references
        ids = list(drawn)
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            # Padded to BATCH_SIZE: one input shape, so the encoder is traced once.
            padded = chunk + [chunk[-1]] * (self.batch_size - len(chunk))
            vectors = self.model.encode_reference([drawn[c] for c in padded])  # 5 x [B, C]
            for row, category in enumerate(chunk):
                self.encoded[category] = [np.asarray(v)[row:row + 1] for v in vectors]
        self.timing["references"] += time.perf_counter() - t
        return failed

    # ---- detection ----------------------------------------------------------
    def _detect_batch(self, batch: list) -> list:
        """batch: [(query, category, references)] of at most BATCH_SIZE pairs."""
        n = len(batch)
        padded = batch + [batch[-1]] * (self.batch_size - n)
        images = [query.image for query, _, _ in padded]
        kwargs = {}
        if self.random_detections:
            # detect() takes one generator per call, so the random boxes (unlike the
            # references) depend on the batch size.
            kwargs = {"random_detections": True,
                      "rng": _child_rng(self.seed, _KEY_RANDOM, self.batches)}
        t = time.perf_counter()
        if self.cache_queries:
            detections = self._detect_encoded(padded, kwargs)
        elif self.shared_reference:
            detections = self.model.detect_with_reference(self._shared_vectors(padded),
                                                          images, **kwargs)
        else:
            targets = [references for _, _, references in padded]
            detections = self.model.detect(targets, images, verbose=0, **kwargs)
        self.timing["detect"] += time.perf_counter() - t
        self.batches += 1
        if len(detections) < n:
            raise ValueError("model.detect returned {} results for a batch of {}".format(
                len(detections), self.batch_size))
        return list(detections[:n])

    def _shared_vectors(self, padded: list) -> list:
        """The shared references' vectors of a batch: 5 x [BATCH_SIZE, C]."""
        return [np.concatenate([self.encoded[c][level] for _, c, _ in padded])
                for level in range(5)]

    def _detect_encoded(self, padded: list, kwargs: dict) -> list:
        """One batch with each query image encoded once (backbone + FPN) and reused for
        every category paired with it; the references are encoded in the batch."""
        missing: dict = {}
        for query, _, _ in padded:
            if query.image_id not in self._encoded_queries:
                missing.setdefault(query.image_id, query.image)
        if missing:
            encoded = self.model.encode_queries(list(missing.values()))
            self._encoded_queries.update(zip(missing, encoded))
        if self.shared_reference:
            vectors = self._shared_vectors(padded)
        else:
            vectors = self.model.encode_reference([refs for _, _, refs in padded])
        queries = [self._encoded_queries[query.image_id] for query, _, _ in padded]
        detections = self.model.detect_with_encoded(queries, vectors, **kwargs)
        # Only the last image can have pairs in the next batch.
        last = padded[-1][0].image_id
        self._encoded_queries = {last: self._encoded_queries[last]}
        return detections

    def run(self, queries: list, progress: Optional[tqdm] = None
            ) -> Iterator[tuple]:
        """Yields (internal image id, reference category, detection dict) per pair;
        pairs without a reference are skipped (their count is in self.skipped)."""
        self.skipped = []
        unavailable: set = set()
        if self.shared_reference:
            needed = set(c for _, categories in queries for c in categories)
            unavailable = set(self.encode_shared(needed))
        batch: list = []
        for query in self._queries(list(queries)):
            for category, references in zip(query.categories, query.references):
                missing = (category in unavailable) if self.shared_reference \
                    else references is None
                if missing:
                    self.skipped.append((query.image_id, category))
                    if progress is not None:
                        progress.update(1)
                    continue
                batch.append((query, category, references))
                if len(batch) == self.batch_size:
                    yield from self._emit(batch, progress)
                    batch = []
        if batch:
            yield from self._emit(batch, progress)

    def _emit(self, batch: list, progress: Optional[tqdm]) -> Iterator[tuple]:
        for (query, category, _), detection in zip(batch, self._detect_batch(batch)):
            yield query.image_id, category, detection
        if progress is not None:
            progress.update(len(batch))


def _progress(total: int, verbose: int, description: str) -> tqdm:
    return tqdm(total=total, desc=description, unit="pair", disable=verbose <= 0,
                dynamic_ncols=True)


############################################################
#  The protocol
############################################################

@dataclass
class EvaluationResult:
    """What evaluate_protocol computed.

    stats: eval type -> the 12 statistics [12] (STAT_NAMES), averaged over class_ids.
    per_class_ap50: eval type -> {internal class id: AP50 (-1: no ground truth)}.
    coco_evals: eval type -> the customCOCOeval (evaluated and accumulated).
    results: the COCO results (only with keep_results=True).
    """
    eval_types: tuple
    class_ids: list
    class_names: list
    coco_image_ids: list
    stats: dict
    per_class_ap50: dict
    coco_evals: dict
    num_pairs: int
    skipped_pairs: list
    timing: dict
    seed: Any
    results: Optional[list] = None

    @property
    def coco_eval(self) -> customCOCOeval:
        """The customCOCOeval of the last eval type (what the old code returned)."""
        return self.coco_evals[self.eval_types[-1]]

    def stat(self, name: str, eval_type: Optional[str] = None) -> float:
        """One statistic by name, e.g. result.stat('AP50', 'segm')."""
        eval_type = eval_type or self.eval_types[0]
        return float(self.stats[eval_type][STAT_NAMES.index(name)])

    def to_dict(self) -> dict:
        """JSON-ready summary (no COCOeval objects, no results)."""
        return {
            "eval_types": list(self.eval_types),
            "class_ids": [int(c) for c in self.class_ids],
            "class_names": list(self.class_names),
            "num_images": len(self.coco_image_ids),
            "num_pairs": int(self.num_pairs),
            "skipped_pairs": [[int(i), int(c)] for i, c in self.skipped_pairs],
            "stats": {t: dict(zip(STAT_NAMES, (float(v) for v in s)))
                      for t, s in self.stats.items()},
            "per_class_ap50": {t: {str(c): float(v) for c, v in d.items()}
                               for t, d in self.per_class_ap50.items()},
            "timing": {k: float(v) for k, v in self.timing.items()},
            "seed": self.seed,
        }


def _eval_types(eval_type: Union[str, Sequence[str]]) -> tuple:
    types = (eval_type,) if isinstance(eval_type, str) else tuple(eval_type)
    if eval_type == "both":
        types = EVAL_TYPES
    bad = [t for t in types if t not in EVAL_TYPES]
    if bad or not types:
        raise ValueError("eval_type: expected 'bbox', 'segm', 'both' or a list of them, got "
                         "{!r}".format(eval_type))
    return types


def _chosen_classes(dataset: Any, class_index: Any) -> np.ndarray:
    """Internal class ids from class_index (positions = internal id - 1, the old
    code's convention) or the active classes."""
    if class_index is None:
        return np.unique(active_classes_of(dataset))
    ids = np.unique(np.atleast_1d(np.asarray(class_index, dtype=int))) + 1
    bad = ids[(ids < 1) | (ids >= dataset.num_classes)]
    if bad.size:
        raise ValueError("class_index: expected positions 0..{} (internal class id - 1), got "
                         "{}".format(dataset.num_classes - 2, (bad - 1).tolist()))
    return ids


def _source_id(dataset: Any, class_id: int) -> int:
    return int(dataset.class_info[int(class_id)]["id"])


def _class_name(dataset: Any, class_id: int) -> str:
    return str(dataset.class_info[int(class_id)]["name"])


def _per_class(coco_eval: customCOCOeval, dataset: Any, class_ids: Sequence[int],
               iou_threshold: float = 0.5) -> dict:
    values = coco_eval.per_category_ap(iou_threshold)
    position = {c: k for k, c in enumerate(coco_eval.params.catIds)}
    return {int(c): float(values[position[_source_id(dataset, c)]]) for c in class_ids}


def _model_config_check(model: Any) -> None:
    config = getattr(model, "config", None)
    for name in ("BATCH_SIZE", "NUM_TARGETS"):
        if not isinstance(getattr(config, name, None), (int, np.integer)):
            raise ValueError("model: expected a model with config.{} (a SiameseMaskRCNN in "
                             "inference mode), got {}".format(name, type(model).__name__))


def evaluate_protocol(model: Any, dataset: Any, dataset_object: COCO,
                      eval_type: Union[str, Sequence[str]] = "bbox", dataset_type: str = "coco",
                      limit: int = 0, image_ids: Optional[Sequence[int]] = None,
                      class_index: Any = None, verbose: int = 1,
                      random_detections: bool = False, keep_results: bool = False, *,
                      seed: SeedLike = None, shared_reference: bool = False,
                      allow_same_image: bool = False, workers: Optional[int] = None,
                      cache_queries: bool = True) -> EvaluationResult:
    """Runs the one-shot COCO evaluation protocol (see the module doc); returns
    everything it computed (EvaluationResult). ``evaluate_dataset`` is the paper code's
    entry point to it, with the paper code's return value.

    model: a SiameseMaskRCNN in inference mode (or anything with its detect /
        encode_reference / detect_with_reference and a config).
    dataset: a prepared IndexedCocoDataset; its active classes are referenced.
    dataset_object: the pycocotools COCO object of the data set's annotations.
    eval_type: 'bbox', 'segm', 'both' or a list of them.
    limit: if not 0, evaluate only the first `limit` images.
    image_ids: internal image ids to evaluate (default: all).
    class_index: positions (internal class id - 1) of the classes to average over;
        default the active classes.
    verbose: 0 silent; 1 a progress bar, and the COCO summary and timings printed.
    random_detections: the random-boxes baseline.
    keep_results: also keep the COCO results in the returned object.
    seed: int / SeedSequence / Generator for the reference draws (default: drawn
        from the numpy global state).
    shared_reference: one reference set per category, encoded once (see module doc).
    allow_same_image: let a reference come from the query image itself.
    workers: threads drawing references while the model runs (default
        config.WORKERS, 0: in the calling thread).
    cache_queries: run the backbone and FPN once per query image and reuse them for
        every category of the image (encode_queries / detect_with_encoded; the same
        detections as detect()). False: one full detect() per pair.
    """
    if dataset_type != "coco":
        raise ValueError("dataset_type: only 'coco' is supported, got {!r}".format(dataset_type))
    _model_config_check(model)
    types = _eval_types(eval_type)
    _check_indexed(dataset)
    image_ids = _requested_images(dataset, image_ids, limit)
    chosen = _chosen_classes(dataset, class_index)
    active = set(int(c) for c in active_classes_of(dataset))
    not_active = sorted(set(chosen.tolist()) - active)
    if not_active:
        logger.warning("Classes %s are averaged over but not active: they get no references "
                       "(AP 0)", not_active)
    queries = evaluation_pairs(dataset, image_ids, active.intersection(chosen.tolist()))
    root = _seed_sequence(seed)
    workers = getattr(model.config, "WORKERS", 0) if workers is None else workers

    t_start = time.perf_counter()
    detector = _PairDetector(model, dataset, root, random_detections, shared_reference,
                             allow_same_image, workers or 0, cache_queries)
    total = sum(len(categories) for _, categories in queries)
    results = []
    with _progress(total, verbose, "Evaluating") as progress:
        for image_id, category, detection in detector.run(queries, progress):
            results.extend(detections_to_coco(detection, dataset.image_info[image_id]["id"],
                                              _source_id(dataset, category)))
    t_detections = time.perf_counter() - t_start

    coco_image_ids = [int(dataset.image_info[i]["id"]) for i in image_ids]
    coco_category_ids = [_source_id(dataset, c) for c in chosen]
    stats, per_class, coco_evals = {}, {}, {}
    for current in types:
        coco_eval = run_coco_eval(dataset_object, results, coco_image_ids, coco_category_ids,
                                  current)
        if verbose > 0:
            logger.info("Evaluation '%s' over %d classes, %d images, %d pairs:", current,
                        len(chosen), len(coco_image_ids), total - len(detector.skipped))
        stats[current] = coco_eval.summarize(verbose=verbose)
        per_class[current] = _per_class(coco_eval, dataset, chosen)
        coco_evals[current] = coco_eval
    total_time = time.perf_counter() - t_start
    timing = dict(detector.timing, detections=t_detections, total=total_time,
                  pairs_per_second=total / t_detections if t_detections > 0 else 0.0)
    if verbose > 0:
        # The paper code's lines (it timed per image, one pair per image and category).
        print("Prediction time: {}. Average {}/image".format(
            timing["detect"], timing["detect"] / max(len(image_ids), 1)))
        print("Total time: ", total_time)
    return EvaluationResult(
        eval_types=types, class_ids=[int(c) for c in chosen],
        class_names=[_class_name(dataset, c) for c in chosen],
        coco_image_ids=coco_image_ids, stats=stats, per_class_ap50=per_class,
        coco_evals=coco_evals, num_pairs=total - len(detector.skipped),
        skipped_pairs=detector.skipped, timing=timing, seed=seed_label(root),
        results=results if keep_results else None)


def evaluate_dataset(model: Any, dataset: Any, dataset_object: COCO,
                     eval_type: Union[str, Sequence[str]] = "bbox", dataset_type: str = "coco",
                     limit: int = 0, image_ids: Optional[Sequence[int]] = None,
                     class_index: Any = None, verbose: int = 1,
                     random_detections: bool = False, return_results: bool = False,
                     **kwargs: Any) -> Optional[customCOCOeval]:
    """The paper code's evaluation: evaluate_protocol with its return value.

    Prints the COCO summary and timings at verbose=1. Returns the customCOCOeval of the
    last eval type (``.stats[1]`` is AP50, ``.summarize()`` prints it again) when
    return_results, else None, as the paper's code did. For everything the protocol
    computed (stats per eval type, per-class AP50, skipped pairs, timings, the seed),
    call evaluate_protocol. Extra keywords (seed, shared_reference, ...) are passed on.
    """
    result = evaluate_protocol(model, dataset, dataset_object, eval_type=eval_type,
                               dataset_type=dataset_type, limit=limit, image_ids=image_ids,
                               class_index=class_index, verbose=verbose,
                               random_detections=random_detections, **kwargs)
    return result.coco_evals[result.eval_types[-1]] if return_results else None


def evaluate_coco(model: Any, dataset: Any, coco_object: COCO,
                  eval_type: Union[str, Sequence[str]] = "bbox", limit: int = 0,
                  image_ids: Optional[Sequence[int]] = None, class_index: Any = None,
                  verbose: int = 1, return_results: bool = False, **kwargs: Any
                  ) -> Optional[customCOCOeval]:
    """The old name of evaluate_dataset (COCO data); extra keywords are passed on."""
    return evaluate_dataset(model, dataset, coco_object, eval_type=eval_type,
                            dataset_type="coco", limit=limit, image_ids=image_ids,
                            class_index=class_index, verbose=verbose,
                            return_results=return_results, **kwargs)


############################################################
#  Runs: mean and 95% interval
############################################################

def confidence_interval(values: Sequence[float], confidence: float = 0.95) -> tuple:
    """(mean, half width) of a t-interval: t.ppf((1 + c) / 2, n - 1) * std(ddof=1) / sqrt(n).

    One value: half width 0. Values of -1 (COCO's "undefined") only: (-1, 0).
    """
    from scipy import stats as scipy_stats

    values = np.asarray(values, dtype=float).reshape(-1)
    if values.size == 0:
        raise ValueError("confidence_interval: expected at least one value, got none")
    if not 0 < confidence < 1:
        raise ValueError("confidence: expected a number in (0, 1), got {}".format(confidence))
    if np.all(values == -1):
        return -1.0, 0.0
    n = values.size
    mean = float(np.mean(values))
    if n == 1:
        return mean, 0.0
    t = scipy_stats.t.ppf((1 + confidence) / 2, n - 1)
    return mean, float(t * np.std(values, ddof=1) / math.sqrt(n))


@dataclass
class RunsSummary:
    """N evaluation runs: per eval type, each run's statistics and their mean / interval.

    values: eval type -> [runs, 12]; mean, half_width: eval type -> [12];
    per_class_ap50: eval type -> {class id: [AP50 per run]}.
    """
    eval_types: tuple
    class_ids: list
    class_names: list
    seeds: list
    values: dict
    mean: dict
    half_width: dict
    per_class_ap50: dict
    confidence: float = 0.95
    timing: dict = field(default_factory=dict)

    def interval(self, name: str, eval_type: Optional[str] = None) -> tuple:
        """(mean, low, high) of one statistic."""
        eval_type = eval_type or self.eval_types[0]
        k = STAT_NAMES.index(name)
        mean, half = self.mean[eval_type][k], self.half_width[eval_type][k]
        return float(mean), float(mean - half), float(mean + half)

    def to_dict(self) -> dict:
        stats = {}
        for t in self.eval_types:
            stats[t] = {name: {"mean": float(self.mean[t][k]),
                               "half_width": float(self.half_width[t][k]),
                               "interval": [float(self.mean[t][k] - self.half_width[t][k]),
                                            float(self.mean[t][k] + self.half_width[t][k])],
                               "runs": [float(v) for v in self.values[t][:, k]]}
                        for k, name in enumerate(STAT_NAMES)}
        names = dict(zip(self.class_ids, self.class_names))
        per_class = {}
        for t in self.eval_types:
            per_class[t] = {}
            for c, runs in self.per_class_ap50[t].items():
                mean, half = confidence_interval(runs, self.confidence)
                per_class[t][str(c)] = {"name": names[c], "mean": mean, "half_width": half,
                                        "runs": [float(x) for x in runs]}
        return {"eval_types": list(self.eval_types), "runs": len(self.seeds),
                "confidence": self.confidence, "class_ids": [int(c) for c in self.class_ids],
                "class_names": list(self.class_names), "seeds": self.seeds,
                "stats": stats, "per_class_ap50": per_class,
                "timing": {k: float(v) for k, v in self.timing.items()}}

    def rows(self) -> list:
        """CSV rows: eval_type, statistic, mean, half_width, low, high, run_1..run_N."""
        rows = []
        for t in self.eval_types:
            for k, name in enumerate(STAT_NAMES):
                mean, half = float(self.mean[t][k]), float(self.half_width[t][k])
                row = {"eval_type": t, "statistic": name, "mean": mean, "half_width": half,
                       "low": mean - half, "high": mean + half}
                row.update({"run_{}".format(r + 1): float(v)
                            for r, v in enumerate(self.values[t][:, k])})
                rows.append(row)
        return rows


def summarize_runs(evaluations: Sequence[EvaluationResult], confidence: float = 0.95
                   ) -> RunsSummary:
    """Mean and t-interval per statistic over evaluation runs of the same setting."""
    if not evaluations:
        raise ValueError("summarize_runs: expected at least one evaluation, got none")
    first = evaluations[0]
    values, mean, half, per_class = {}, {}, {}, {}
    for t in first.eval_types:
        values[t] = np.stack([e.stats[t] for e in evaluations])  # [runs, 12]
        pairs = [confidence_interval(values[t][:, k], confidence)
                 for k in range(len(STAT_NAMES))]
        mean[t] = np.array([p[0] for p in pairs])
        half[t] = np.array([p[1] for p in pairs])
        per_class[t] = {c: [e.per_class_ap50[t][c] for e in evaluations]
                        for c in first.class_ids}
    timing = {"total": sum(e.timing.get("total", 0.0) for e in evaluations),
              "detect": sum(e.timing.get("detect", 0.0) for e in evaluations)}
    return RunsSummary(first.eval_types, list(first.class_ids), list(first.class_names),
                       [e.seed for e in evaluations], values, mean, half, per_class,
                       confidence, timing)


def run_evaluation(model: Any, dataset: Any, coco: COCO, runs: int = 5, seed: int = 0,
                   eval_type: Union[str, Sequence[str]] = ("bbox", "segm"),
                   confidence: float = 0.95, keep_evaluations: bool = False,
                   **kwargs: Any) -> Union[RunsSummary, tuple]:
    """`runs` evaluations with different reference draws (run r uses the r-th child of
    SeedSequence(seed)); returns their RunsSummary (and the EvaluationResults
    when keep_evaluations). Other keywords go to evaluate_protocol."""
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
        raise ValueError("runs: expected an integer >= 1, got {!r}".format(runs))
    seeds = np.random.SeedSequence(int(seed)).spawn(int(runs))
    evaluations = []
    for r, run_seed in enumerate(seeds):
        logger.info("Evaluation run %d/%d", r + 1, runs)
        evaluations.append(evaluate_protocol(model, dataset, coco, eval_type=eval_type,
                                             seed=run_seed, **kwargs))
    summary = summarize_runs(evaluations, confidence)
    for t in summary.eval_types:
        mean, low, high = summary.interval("AP50", t)
        logger.info("%s AP50 over %d runs: %.4f (95%% interval %.4f - %.4f)", t, runs, mean,
                    low, high)
    return (summary, evaluations) if keep_evaluations else summary


def evaluate_split(model: Any, dataset: Any, coco: COCO, split: Union[int, str],
                   runs: int = 5, seed: int = 0, **kwargs: Any) -> dict:
    """run_evaluation on the one-shot and on the background classes of a split.

    split: 1..4 or 'full' (see siamese_mrcnn.coco.get_class_split; 'full' has no
        one-shot classes). The data set's active classes are restored afterwards.
    Returns {'one_shot': RunsSummary, 'background': RunsSummary} ('background' only
    for 'full').
    """
    from siamese_mrcnn.coco import get_class_split

    one_shot, background = get_class_split(split, dataset.num_classes - 1)
    previous = active_classes_of(dataset)
    summaries = {}
    try:
        for name, classes in (("one_shot", one_shot), ("background", background)):
            if len(classes) == 0:
                continue
            dataset.set_active_classes(classes)
            logger.info("Split %s, %s classes (%d)", split, name, len(classes))
            summaries[name] = run_evaluation(model, dataset, coco, runs=runs, seed=seed,
                                             **kwargs)
    finally:
        dataset.set_active_classes(previous)
    return summaries


def average_over_splits(summaries: Sequence[RunsSummary]) -> dict:
    """The paper's split average: per eval type and statistic, the mean of the
    splits' run means (e.g. of evaluate_split(...)['one_shot'] for splits 1..4).

    Returns {eval type: {statistic: mean}} over the eval types all summaries have.
    """
    if not summaries:
        raise ValueError("average_over_splits: expected at least one RunsSummary, got none")
    types = [t for t in summaries[0].eval_types if all(t in s.mean for s in summaries)]
    return {t: {name: float(np.mean([s.mean[t][k] for s in summaries]))
                for k, name in enumerate(STAT_NAMES)} for t in types}



############################################################
#  Re-exports of siamese_mrcnn.analysis
############################################################

# Imported on first use: analysis imports this module, so an eager import at
# either end would be circular when analysis is imported first.
_ANALYSIS_NAMES = ("DEFAULT_INSTANCE_BINS", "ConfusionResult", "confusion_matrix",
                   "most_confused", "instance_counts", "ap50_by_instance_count", "save_json",
                   "save_csv", "write_runs_summary", "write_confusion", "write_instance_count")


def __getattr__(name: str) -> Any:
    if name in _ANALYSIS_NAMES:
        return getattr(importlib.import_module("siamese_mrcnn.analysis"), name)
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))


def __dir__() -> list:
    return sorted(set(globals()) | set(_ANALYSIS_NAMES))
