"""The one-shot evaluation protocol (paper §5.2, SPEC §7): evaluate_protocol and
its EvaluationResult. See siamese_mrcnn.evaluation for the protocol's description.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
from pycocotools.coco import COCO

from mrcnn.coco import evaluation_image_ids
from siamese_mrcnn.coco_eval import (STAT_NAMES, customCOCOeval, detections_to_coco,
                                     parse_eval_types, run_coco_eval)
from siamese_mrcnn.data import active_classes_of
from siamese_mrcnn.pairs import (PairRunner, SeedLike, check_indexed, evaluation_pairs,
                                 progress_bar, seed_label, seed_sequence)

logger = logging.getLogger(__name__)


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




def chosen_classes(dataset: Any, class_index: Any) -> np.ndarray:
    """Internal class ids from class_index (positions = internal id - 1, the old
    code's convention) or the active classes."""
    if class_index is None:
        ids = np.unique(active_classes_of(dataset))
        if not ids.size:
            raise ValueError("no classes to evaluate: the data set has no active classes "
                             "(set_active_classes) and class_index is None")
        return ids
    positions = np.atleast_1d(np.asarray(class_index))
    if not positions.size or positions.dtype.kind not in "iu":
        # Floats were truncated to positions (0.5 -> the first class).
        raise ValueError(f"class_index: expected one or more integer positions (internal "
                         f"class id - 1), got {class_index!r}")
    ids = np.unique(positions.astype(int)) + 1
    bad = ids[(ids < 1) | (ids >= dataset.num_classes)]
    if bad.size:
        raise ValueError("class_index: expected positions 0..{} (internal class id - 1), got "
                         "{}".format(dataset.num_classes - 2, (bad - 1).tolist()))
    return ids


def source_category_id(dataset: Any, class_id: int) -> int:
    return int(dataset.class_info[int(class_id)]["id"])


def class_name_of(dataset: Any, class_id: int) -> str:
    return str(dataset.class_info[int(class_id)]["name"])


def per_class_ap50(coco_eval: customCOCOeval, dataset: Any, class_ids: Sequence[int],
               iou_threshold: float = 0.5) -> dict:
    values = coco_eval.per_category_ap(iou_threshold)
    position = {c: k for k, c in enumerate(coco_eval.params.catIds)}
    return {int(c): float(values[position[source_category_id(dataset, c)]]) for c in class_ids}


def check_model_config(model: Any) -> None:
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
    check_model_config(model)
    types = parse_eval_types(eval_type)
    image_ids, chosen, queries = protocol_pairs(dataset, limit, image_ids, class_index)
    root = seed_sequence(seed)
    t_start = time.perf_counter()
    detected = detect_pairs(model, dataset, queries, root, random_detections=random_detections,
                            shared_reference=shared_reference,
                            allow_same_image=allow_same_image, workers=workers,
                            cache_queries=cache_queries, verbose=verbose)
    results = [r for _, pair_results in detected["pairs"] for r in pair_results]
    return score_pairs(dataset, dataset_object, results, image_ids, chosen, types, verbose,
                       detected, seed_label(root), t_start,
                       keep_results=keep_results)


def protocol_pairs(dataset: Any, limit: int = 0, image_ids: Optional[Sequence[int]] = None,
                   class_index: Any = None) -> tuple:
    """(image ids, chosen class ids, queries): what the protocol evaluates. queries:
    [(internal image id, [internal class ids])], the pairs in their fixed order."""
    check_indexed(dataset)
    image_ids = evaluation_image_ids(dataset, limit, image_ids)
    chosen = chosen_classes(dataset, class_index)
    active = set(int(c) for c in active_classes_of(dataset))
    not_active = sorted(set(chosen.tolist()) - active)
    if not_active:
        logger.warning("Classes %s are averaged over but not active: they get no references "
                       "(AP 0)", not_active)
    return image_ids, chosen, evaluation_pairs(dataset, image_ids,
                                               active.intersection(chosen.tolist()))


def detect_pairs(model: Any, dataset: Any, queries: list, root: np.random.SeedSequence, *,
                 random_detections: bool = False, shared_reference: bool = False,
                 allow_same_image: bool = False, workers: Optional[int] = None,
                 cache_queries: bool = True, verbose: int = 1) -> dict:
    """Runs the pairs of ``queries``. Returns {"pairs": [((image id, class id), COCO
    results)] in the order of ``queries``, "skipped": [(image id, class id)], "total":
    the number of pairs, "timing": {...}, "seconds": detection wall time}."""
    workers = getattr(model.config, "WORKERS", 0) if workers is None else workers
    t_start = time.perf_counter()
    detector = PairRunner(model, dataset, root, random_detections, shared_reference,
                          allow_same_image, workers or 0, cache_queries)
    total = sum(len(categories) for _, categories in queries)
    pairs = []
    with progress_bar(total, verbose, "Evaluating") as progress:
        for image_id, category, detection in detector.run(queries, progress):
            pairs.append(((int(image_id), int(category)), detections_to_coco(
                detection, dataset.image_info[image_id]["id"],
                source_category_id(dataset, category))))
    return {"pairs": pairs, "skipped": list(detector.skipped), "total": total,
            "timing": dict(detector.timing), "seconds": time.perf_counter() - t_start}


def score_pairs(dataset: Any, dataset_object: COCO, results: list, image_ids: Sequence[int],
                chosen: Sequence[int], types: tuple, verbose: int, detected: dict,
                seed: Any, t_start: float, keep_results: bool = False) -> EvaluationResult:
    """COCOeval of ``results`` (COCO detections of every pair, in the pairs' order) per
    eval type, and the EvaluationResult; detected: detect_pairs()'s skipped, total,
    timing and seconds (of all shards, when merged)."""
    total, skipped = detected["total"], detected["skipped"]
    t_detections = detected["seconds"]
    coco_image_ids = [int(dataset.image_info[i]["id"]) for i in image_ids]
    coco_category_ids = [source_category_id(dataset, c) for c in chosen]
    stats, per_class, coco_evals = {}, {}, {}
    for current in types:
        coco_eval = run_coco_eval(dataset_object, results, coco_image_ids, coco_category_ids,
                                  current)
        if verbose > 0:
            logger.info("Evaluation '%s' over %d classes, %d images, %d pairs:", current,
                        len(chosen), len(coco_image_ids), total - len(skipped))
        stats[current] = coco_eval.summarize(verbose=verbose)
        per_class[current] = per_class_ap50(coco_eval, dataset, chosen)
        coco_evals[current] = coco_eval
    total_time = time.perf_counter() - t_start
    timing = dict(detected["timing"], detections=t_detections, total=total_time,
                  pairs_per_second=total / t_detections if t_detections > 0 else 0.0)
    if verbose > 0:
        # The paper code's lines (it timed per image, one pair per image and category).
        print("Prediction time: {}. Average {}/image".format(
            timing["detect"], timing["detect"] / max(len(image_ids), 1)))
        print("Total time: ", total_time)
    return EvaluationResult(
        eval_types=types, class_ids=[int(c) for c in chosen],
        class_names=[class_name_of(dataset, c) for c in chosen],
        coco_image_ids=coco_image_ids, stats=stats, per_class_ap50=per_class,
        coco_evals=coco_evals, num_pairs=total - len(skipped),
        skipped_pairs=skipped, timing=timing, seed=seed,
        results=results if keep_results else None)
