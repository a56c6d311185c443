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

Modules: ``coco_eval`` (COCOeval with a class restriction, COCO results),
``pairs`` (the pairs, their seeds and the PairRunner that detects them),
``protocol`` (evaluate_protocol, EvaluationResult), ``runs`` (runs, intervals,
splits) and ``analysis`` (confusion matrix, AP50 by instance count, writers). This
module holds the paper code's entry points and re-exports the others' public names,
so the old import paths keep working.

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

from typing import Any, Optional, Sequence, Union

from pycocotools.coco import COCO

from siamese_mrcnn.analysis import (DEFAULT_INSTANCE_BINS, ConfusionResult,  # noqa: F401
                                    ap50_by_instance_count, confusion_matrix,
                                    instance_counts, most_confused, save_csv, save_json,
                                    write_confusion, write_instance_count,
                                    write_runs_summary)
from siamese_mrcnn.coco_eval import (EVAL_TYPES, STAT_NAMES, customCOCOeval,  # noqa: F401
                                     detections_to_coco, load_coco_results, run_coco_eval)
from siamese_mrcnn.data import get_one_target  # noqa: F401
from siamese_mrcnn.pairs import (PairRunner, SeedLike, evaluation_pairs,  # noqa: F401
                                 seed_label)
from siamese_mrcnn.protocol import EvaluationResult, evaluate_protocol  # noqa: F401
from siamese_mrcnn.runs import (RunsSummary, average_over_splits,  # noqa: F401
                                confidence_interval, evaluate_split, run_evaluation,
                                summarize_runs)


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


__all__ = [
    # the paper code's entry points
    "evaluate_dataset", "evaluate_coco", "customCOCOeval", "get_one_target",
    # coco_eval
    "EVAL_TYPES", "STAT_NAMES", "detections_to_coco", "load_coco_results", "run_coco_eval",
    # pairs, protocol, runs
    "PairRunner", "SeedLike", "evaluation_pairs", "seed_label", "EvaluationResult",
    "evaluate_protocol", "RunsSummary", "average_over_splits", "confidence_interval",
    "evaluate_split", "run_evaluation", "summarize_runs",
    # analysis
    "DEFAULT_INSTANCE_BINS", "ConfusionResult", "ap50_by_instance_count", "confusion_matrix",
    "instance_counts", "most_confused", "save_csv", "save_json", "write_confusion",
    "write_instance_count", "write_runs_summary",
]
