"""2b. eval_vs_old_loop (= batched_eval_speedup): whole evaluations (detections and
COCOeval) per pair, the old lib/utils.py evaluate_dataset loop re-created on our model
vs siamese_mrcnn.evaluation.evaluate_protocol, on the same images."""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from common import REPO  # noqa: F401,E402 - sets up sys.path

import numpy as np  # noqa: E402

from mrcnn.data import load_image_gt  # noqa: E402
from siamese_mrcnn.coco import IndexedCocoDataset  # noqa: E402
from siamese_mrcnn.data import (ReferenceNotFoundError, active_classes_of,  # noqa: E402
                                get_one_target)
from siamese_mrcnn.evaluation import (detections_to_coco, evaluate_protocol,  # noqa: E402
                                      run_coco_eval)
from siamese_mrcnn.model import SiameseMaskRCNN  # noqa: E402
from siamese_mrcnn.reference import mold_references  # noqa: E402

from speed_batching import max_score_difference  # noqa: E402
from speed_setup import ShapesData, interleaved_seconds  # noqa: E402

# The protocol's two evaluation types, as the quick start and the paper report them.
EVAL_TYPES = ("bbox", "segm")


def predict_detect(model: SiameseMaskRCNN, references: Sequence, images: Sequence
                   ) -> list[dict]:
    """detect() as the old code ran it: ``keras_model.predict(..., verbose=0)`` per call
    (Keras' data iterator, callbacks and output concatenation each time) instead of
    ``predict_on_batch``; molding and unmolding as ``detect`` does them."""
    molded_images, image_metas, windows = model.mold_inputs(images)  # [B, S, S, 3] ...
    molded_targets = mold_references(references, model.config)  # [B, k, T, T, 3]
    anchors = model._batch_anchors(molded_images[0].shape)  # [B, anchors, 4]
    outputs = model.inner_model.predict([molded_images, image_metas, molded_targets,
                                         anchors], verbose=0)
    detections, mrcnn_mask = np.asarray(outputs[0]), np.asarray(outputs[3])
    results = []
    for i, image in enumerate(images):
        rois, class_ids, scores, masks = model.unmold_detections(
            detections[i], mrcnn_mask[i], image.shape, molded_images[i].shape, windows[i])
        results.append({"rois": rois, "class_ids": class_ids, "scores": scores,
                        "masks": masks})
    return results


def coco_stats(coco: Any, results: list, coco_image_ids: Sequence[int],
               coco_category_ids: Sequence[int]) -> dict:
    """COCOeval of the results for each of EVAL_TYPES: {type: AP50}."""
    stats = {}
    for eval_type in EVAL_TYPES:
        coco_eval = run_coco_eval(coco, results, coco_image_ids, coco_category_ids,
                                  eval_type)
        stats[eval_type] = float(coco_eval.summarize(verbose=0)[1])
    return stats


def evaluate_old_loop(model: SiameseMaskRCNN, dataset: IndexedCocoDataset, coco: Any,
                      image_ids: Sequence[int], seed: int = 0) -> dict:
    """The old ``lib/utils.py`` evaluate_dataset, on our model (BATCH_SIZE 1).

    Per image: ``load_image_gt`` for its class ids; then per active category present:
    the query image loaded again, one reference drawn with ``get_one_target`` (from
    any image, the query's included, as the old code allowed), one ``predict_detect``
    call, and the detections converted to COCO results. Finally COCOeval per eval type.
    Returns the number of pairs, the AP50s and the time per step (seconds).
    """
    config = model.config
    rng = np.random.default_rng(seed)
    active = set(int(c) for c in active_classes_of(dataset))
    timing = {"load": 0.0, "references": 0.0, "detect": 0.0, "coco": 0.0}
    results, pairs = [], 0
    for image_id in image_ids:
        t = time.perf_counter()
        _, _, gt_class_ids, _, _ = load_image_gt(dataset, config, image_id,
                                                 use_mini_mask=config.USE_MINI_MASK)
        timing["load"] += time.perf_counter() - t
        categories = [int(c) for c in np.unique(gt_class_ids) if c > 0 and int(c) in active]
        for category in categories:
            t = time.perf_counter()
            image = dataset.load_image(image_id)
            timing["load"] += time.perf_counter() - t
            t = time.perf_counter()
            try:
                reference = get_one_target(category, dataset, config,
                                           allow_same_image=True, rng=rng)
            except ReferenceNotFoundError:
                continue  # the old loop printed and skipped the pair
            timing["references"] += time.perf_counter() - t
            t = time.perf_counter()
            detection = predict_detect(model, [[reference]], [image])[0]
            timing["detect"] += time.perf_counter() - t
            t = time.perf_counter()
            results.extend(detections_to_coco(detection, dataset.image_info[image_id]["id"],
                                              dataset.class_info[category]["id"]))
            timing["coco"] += time.perf_counter() - t
            pairs += 1
    t = time.perf_counter()
    coco_image_ids = [int(dataset.image_info[i]["id"]) for i in image_ids]
    category_ids = [int(dataset.class_info[c]["id"]) for c in sorted(active)]
    stats = coco_stats(coco, results, coco_image_ids, category_ids)
    timing["coco"] += time.perf_counter() - t
    return {"pairs": pairs, "ap50": stats, "timing": timing}


def evaluate_ours(model: SiameseMaskRCNN, dataset: IndexedCocoDataset, coco: Any,
                  image_ids: Sequence[int], shared_reference: bool, seed: int = 0,
                  cache_queries: bool = True) -> dict:
    """``siamese_mrcnn.evaluation.evaluate_protocol`` on the same images (its BATCH_SIZE
    is the model's); the same summary as evaluate_old_loop."""
    result = evaluate_protocol(model, dataset, coco, eval_type=EVAL_TYPES,
                               image_ids=list(image_ids), verbose=0, seed=seed,
                               shared_reference=shared_reference, workers=0,
                               cache_queries=cache_queries)
    timing = result.timing
    return {"pairs": result.num_pairs,
            "ap50": {t: result.stat("AP50", t) for t in EVAL_TYPES},
            "timing": {"load": timing["load"], "references": timing["references"],
                       "detect": timing["detect"],
                       "coco": timing["total"] - timing["detections"]}}


def breakdown(run: dict) -> dict:
    """Seconds per pair of one evaluation's steps; 'other' is the rest of its wall time
    (e.g. our conversion to COCO results, which evaluate_protocol does not time apart)."""
    pairs = max(run["pairs"], 1)
    parts = {k: v / pairs for k, v in run["timing"].items()}
    parts["other"] = max(0.0, run["wall"] / pairs - sum(parts.values()))
    return parts


def bench_eval_vs_old_loop(models: dict[int, SiameseMaskRCNN], data: ShapesData,
                           num_images: int, repeats: int) -> dict:
    """Whole evaluations (detections and COCOeval) of the same images, per pair: the old
    loop (BATCH_SIZE 1, predict per call) vs evaluate_protocol at each BATCH_SIZE of
    ``models`` ({batch size: model with the same weights}), with fresh references (the
    paper's protocol) and with shared_reference=True. The ratios use the fastest
    BATCH_SIZE of each kind."""
    dataset, coco = data.dataset, data.coco
    image_ids = [int(i) for i in dataset.image_ids[:num_images]]
    paths: dict[str, Callable[[Sequence[int]], dict]] = {
        "old_loop": lambda ids: evaluate_old_loop(models[1], dataset, coco, ids)}
    for batch, model in sorted(models.items()):
        for shared, kind in ((False, "fresh"), (True, "shared")):
            paths[f"ours_{kind}_reference_B{batch}"] = (
                lambda ids, m=model, s=shared: evaluate_ours(m, dataset, coco, ids, s))
    # What encoding each query image once (cache_queries) saves: the default protocol at
    # the largest BATCH_SIZE with one full detect() per pair instead.
    largest = max(models)
    uncached = f"ours_fresh_reference_B{largest}_detect_per_pair"
    paths[uncached] = lambda ids: evaluate_ours(models[largest], dataset, coco, ids, False,
                                                cache_queries=False)
    # Warm-up on one image (2-4 pairs, a padded batch): traces predict() and the
    # reference-vector models.
    for fn in paths.values():
        fn(image_ids[:1])
    # The re-created old detect gives what detect() gives on the same pair.
    query, reference = data.queries(1)[0], data.references(1)[0]
    same = max_score_difference(predict_detect(models[1], [[reference]], [query]),
                                models[1].detect([[reference]], [query]))
    out: dict[str, dict] = {}

    def timed_run(name: str) -> None:
        start = time.perf_counter()
        out[name] = paths[name](image_ids)
        out[name]["wall"] = time.perf_counter() - start

    timed = interleaved_seconds({name: (lambda name=name: timed_run(name)) for name in paths},
                                repeats, warmup=0)
    per_pair = {name: timed[name]["median"] / max(out[name]["pairs"], 1) for name in paths}

    def fastest(kind: str) -> str:
        names = [n for n in paths if n.startswith(f"ours_{kind}_") and n != uncached]
        return min(names, key=per_pair.__getitem__)

    best_fresh, best_shared = fastest("fresh"), fastest("shared")
    return {
        "eval_vs_old_loop": per_pair["old_loop"] / per_pair[best_fresh],
        "eval_vs_old_loop_shared_reference": per_pair["old_loop"] / per_pair[best_shared],
        "fastest": {"fresh_reference": best_fresh, "shared_reference": best_shared},
        "query_cache_speedup": per_pair[uncached] / per_pair[f"ours_fresh_reference_B{largest}"],
        "seconds_per_pair": per_pair,
        "seconds_per_pair_min": {n: timed[n]["min"] / max(out[n]["pairs"], 1)
                                 for n in paths},
        # Where the time goes, seconds per pair (last timed run of each path).
        "breakdown_per_pair": {n: breakdown(out[n]) for n in paths},
        "pairs": {n: out[n]["pairs"] for n in paths},
        "ap50": {n: out[n]["ap50"] for n in paths},
        "images": len(image_ids),
        "categories_active": int(len(active_classes_of(dataset))),
        "max_score_difference_predict_vs_detect": same,
        "batch_sizes": sorted(models),
        "repeats": repeats,
    }
