"""Speed benchmark of Siamese Mask R-CNN: ratios measured in one run on one machine.

    python benchmarks/speed.py [--quick] [--config small|tiny] [--repeats N]
                               [--eval-images N] [--eval-repeats N]
                               [--output benchmarks/results/speed.json] [--gpu]
                               [--mixed-precision] [--set KEY=VALUE ...]

What is measured (see benchmarks/README.md for the numbers):

1. ``inference_over_dense``: one full ``detect()`` of a (query, reference) pair over the
   forward pass of the model's dense part alone on the same input (ResNet + FPN on query
   and reference, matching, RPN convolutions, up to the ``rpn_class``/``rpn_bbox``
   outputs). The cumulative graph stages (proposals, heads + detection layer, mask head)
   and the Python molding/unmolding are timed too, so the ratio can be broken down.
2. ``batched_eval_speedup`` (= ``eval_vs_old_loop``): the evaluation as a whole, time
   per (query, category) pair of the old ``lib/utils.py`` evaluate_dataset loop over
   that of ``siamese_mrcnn.evaluation.evaluate_protocol``, on the same generated images,
   detections and COCOeval (bbox and segm) included. The old loop is re-created on our
   model (``evaluate_old_loop``): per image ``load_image_gt``, per category present the
   query loaded again, a reference from ``get_one_target`` and one
   ``keras_model.predict`` call with BATCH_SIZE 1. Ours: the paper's protocol (fresh
   references) at the fastest BATCH_SIZE of 1 and B; ``eval_vs_old_loop_shared_reference``
   the same with ``shared_reference=True``.
   ``batched_model_speedup``: model calls only, N pairs one ``detect()`` per pair with
   BATCH_SIZE 1 over the same pairs with BATCH_SIZE B, each distinct reference encoded
   once (``encode_reference``, then ``detect_with_reference``); batching alone
   (``detect`` with BATCH_SIZE B) is ``batched_fresh_reference_speedup``.
3. ``data_over_train``: samples/s of ``SiameseDataGenerator.__getitem__`` (one thread) on
   a generated shapes data set over samples/s of ``train_on_batch`` (all layers
   trainable) on the same batches. Above 1 means one loading thread outpaces training.
4. Peak memory: the process's max RSS after each part (and the GPU's peak allocation).
5. GPU mode (when a GPU is present, or with ``--gpu``): training and inference images/s
   at the large config (1024 px), optionally under ``mixed_float16``, with the
   differences from float32 on the same weights and inputs.

Weights are random (the numbers do not depend on their values), except that the number
of detections does: DETECTION_MIN_CONFIDENCE is 0 here so that the detection layer and
the unmolding always handle DETECTION_MAX_INSTANCES detections (the worst case).
Timings exclude a warm-up call (graph tracing) and are the median over --repeats.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from common import REPO, machine_info, to_json  # noqa: E402 - sets up sys.path

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn.data import load_image_gt  # noqa: E402
from samples.shapes.generate import generate_dataset  # noqa: E402
from siamese_mrcnn.cli import parse_set  # noqa: E402
from siamese_mrcnn.coco import IndexedCocoDataset  # noqa: E402
from siamese_mrcnn.config import Config, preset  # noqa: E402
from siamese_mrcnn.data import (ReferenceNotFoundError, SiameseDataGenerator,  # noqa: E402
                                active_classes_of, get_one_target)
from siamese_mrcnn.evaluation import (detections_to_coco, evaluate_protocol,  # noqa: E402
                                      run_coco_eval)
from siamese_mrcnn.model import SiameseMaskRCNN  # noqa: E402
from siamese_mrcnn.reference import mold_references  # noqa: E402

from precision import (check_dense, check_gradient, copy_weights,  # noqa: E402
                       dense_outputs, dtype_policy, reference_crop, rpn_gradient,
                       scaled_rpn_gradient)

logger = logging.getLogger("benchmarks.speed")

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "speed.json"

# Targets of the project issue (item 2). batched_eval_speedup is the evaluation as a
# whole against the old one-pair-per-call loop (eval_vs_old_loop).
TARGETS = {"inference_over_dense": ("<=", 1.3), "batched_eval_speedup": (">=", 3.0),
           "data_over_train": (">=", 1.0)}

# The protocol's two evaluation types, as the quick start and the paper report them.
EVAL_TYPES = ("bbox", "segm")

# Every benchmark config: detection always fills DETECTION_MAX_INSTANCES (see above).
COMMON_OVERRIDES = {"DETECTION_MIN_CONFIDENCE": 0.0}

# The CPU smoke setting: resnet_tiny at 128 px, narrow heads, few ROIs.
TINY_OVERRIDES = {
    "BACKBONE": "resnet_tiny", "IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128,
    "TARGET_MIN_DIM": 24, "TARGET_MAX_DIM": 32, "FPN_FEATUREMAPS": 64,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 128, "PRE_NMS_LIMIT": 1000, "POST_NMS_ROIS_INFERENCE": 100,
    "POST_NMS_ROIS_TRAINING": 100, "TRAIN_ROIS_PER_IMAGE": 32,
    "RPN_TRAIN_ANCHORS_PER_IMAGE": 32, "DETECTION_MAX_INSTANCES": 10, "MAX_GT_INSTANCES": 10,
}

# name -> (inference preset, training preset, extra overrides)
CONFIGS = {
    "small": ("small_eval", "small", {}),
    "tiny": ("small_eval", "small", TINY_OVERRIDES),
    "large": ("large_eval", "large", {"GPU_COUNT": 1}),
}
# Training batch (IMAGES_PER_GPU) per config: 2 keeps the small config trainable on a
# CPU; the large one is the paper's 3 images per GPU.
CONFIGS_TRAIN_BATCH = {"small": 2, "tiny": 2, "large": 3}


# ------------------------------------------------------------------------ helpers
def make_config(name: str, mode: str, images_per_gpu: int, overrides: dict) -> Config:
    """The benchmark config ``name`` ('small', 'tiny', 'large') for 'inference' or
    'training', with IMAGES_PER_GPU and the user's --set overrides applied last."""
    if name not in CONFIGS:
        raise ValueError(f"config: expected one of {sorted(CONFIGS)}, got {name!r}")
    eval_preset, train_preset, extra = CONFIGS[name]
    fields = {**COMMON_OVERRIDES, **extra, "IMAGES_PER_GPU": images_per_gpu, **overrides}
    return preset(eval_preset if mode == "inference" else train_preset, **fields)


def interleaved_seconds(calls: dict[str, Callable[[], Any]], repeats: int,
                        warmup: int = 1) -> dict[str, dict]:
    """Wall times of several calls measured in turns: ``warmup`` untimed rounds, then
    ``repeats`` rounds that call each in order, so a change of machine load hits all of
    them alike. Returns {name: {"median": s, "min": s}}.
    """
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: {"median": statistics.median(t), "min": min(t)} for name, t in times.items()}


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    return interleaved_seconds({"fn": fn}, repeats, warmup)["fn"]["median"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1024 ** 2 if sys.platform == "darwin" else peak / 1024


def gpu_peak_mb() -> float | None:
    """Peak GPU memory allocated by TensorFlow on GPU:0 since the last reset, MiB."""
    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1024 ** 2


def reset_gpu_peak() -> None:
    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.reset_memory_stats("GPU:0")



def release(*models: Any) -> None:
    """Drops Keras state so the next models start from a clean graph namespace."""
    del models
    keras.backend.clear_session()


# ------------------------------------------------------------------------- data
def image_size(config: Config) -> int:
    """Side of the generated images: 1.25 x IMAGE_MAX_DIM, so that loading includes the
    downscaling that COCO's 640 x 480 images get at 512 px."""
    return int(config.IMAGE_MAX_DIM) * 5 // 4


class ShapesData:
    """A generated shapes data set (COCO layout) and (query, reference) examples."""

    def __init__(self, root: str, num_images: int, size: int, seed: int = 0):
        paths = generate_dataset(root, num_images, 0, seed=seed, size=size, workers=1)
        self.dataset = IndexedCocoDataset()
        self.coco = self.dataset.load_coco(str(paths.root), "train", return_coco=True,
                                           subsubset=None)
        self.dataset.prepare()

    def queries(self, count: int) -> list[np.ndarray]:
        """``count`` query images (cycling through the data set)."""
        ids = self.dataset.image_ids
        return [self.dataset.load_image(ids[i % len(ids)]) for i in range(count)]

    def references(self, count: int) -> list[np.ndarray]:
        """``count`` reference crops: the first instance's box of successive images,
        taken from the end of the data set so they are not the first queries."""
        ids = self.dataset.image_ids[::-1]
        return [reference_crop(self.dataset, ids[i % len(ids)]) for i in range(count)]


# ------------------------------------------------------------------ 1. inference
def graph_stage_model(model: SiameseMaskRCNN, layer: str) -> keras.Model:
    """The inference graph cut at ``layer``'s output (all four inputs kept)."""
    inner = model.inner_model
    return keras.Model(inner.inputs, inner.get_layer(layer).output, name=f"to_{layer}")


def dense_model(model: SiameseMaskRCNN) -> keras.Model:
    """(image, references) -> (rpn_class, rpn_bbox): backbone, FPN, matching, RPN convs."""
    inner = model.inner_model
    image, _, target, _ = inner.inputs
    return keras.Model([image, target], [inner.get_layer("rpn_class").output,
                                         inner.get_layer("rpn_bbox").output], name="dense")


def bench_inference(model: SiameseMaskRCNN, query: np.ndarray, reference: np.ndarray,
                    repeats: int) -> dict:
    """detect() of one pair vs its dense part, plus the cumulative graph stages."""
    config = model.config
    molded_images, image_metas, _ = model.mold_inputs([query])
    molded_targets = mold_references([reference], config)
    anchors = model._batch_anchors(molded_images[0].shape)
    graph_inputs = [molded_images, image_metas, molded_targets, anchors]

    dense = dense_model(model)
    to_proposals = graph_stage_model(model, "ROI")
    to_detections = graph_stage_model(model, "mrcnn_detection")
    results = []
    # Cumulative stages: each includes everything before it.
    timed = interleaved_seconds({
        "dense": lambda: dense.predict_on_batch([molded_images, molded_targets]),
        "to_proposals": lambda: to_proposals.predict_on_batch(graph_inputs),
        "to_detections": lambda: to_detections.predict_on_batch(graph_inputs),
        "graph": lambda: model.inner_model.predict_on_batch(graph_inputs),
        "detect": lambda: results.append(model.detect([reference], [query])),
    }, repeats)
    seconds = {name: t["median"] for name, t in timed.items()}
    dense_s = seconds["dense"]
    return {
        "inference_over_dense": seconds["detect"] / dense_s,
        "seconds": seconds,
        "seconds_min": {name: t["min"] for name, t in timed.items()},
        "added_over_dense": {
            "proposals (RPN decode, NMS)": (seconds["to_proposals"] - dense_s) / dense_s,
            "ROI align + classifier head + detection layer":
                (seconds["to_detections"] - seconds["to_proposals"]) / dense_s,
            "ROI align + mask head": (seconds["graph"] - seconds["to_detections"]) / dense_s,
            "molding + unmolding (Python)": (seconds["detect"] - seconds["graph"]) / dense_s,
        },
        "detections_per_image": int(len(results[-1][0]["scores"])),
    }


# ------------------------------------------------------------- 2. batched eval
def detect_one_per_call(model: SiameseMaskRCNN, pairs: Sequence[tuple]) -> list[dict]:
    """The old evaluation loop: one detect() per pair, the reference re-encoded each time."""
    return [model.detect([reference], [query])[0] for query, reference in pairs]


def detect_batched(model: SiameseMaskRCNN, pairs: Sequence[tuple]) -> list[dict]:
    """detect() on BATCH_SIZE pairs per call; the last batch padded with repeats."""
    batch = model.config.BATCH_SIZE
    results = []
    for start in range(0, len(pairs), batch):
        chunk = list(pairs[start:start + batch])
        used = len(chunk)
        chunk += [chunk[-1]] * (batch - used)
        out = model.detect([r for _, r in chunk], [q for q, _ in chunk])
        results += out[:used]
    return results


def detect_cached(model: SiameseMaskRCNN, queries: Sequence[np.ndarray],
                  references: Sequence[np.ndarray], pair_refs: Sequence[int]) -> list[dict]:
    """Each distinct reference encoded once, then BATCH_SIZE queries per call."""
    batch = model.config.BATCH_SIZE
    vectors = []  # 5 x [references, C]
    for start in range(0, len(references), batch):
        encoded = model.encode_reference(list(references[start:start + batch]))
        vectors = encoded if not vectors else [np.concatenate([a, b])
                                               for a, b in zip(vectors, encoded)]
    results = []
    for start in range(0, len(queries), batch):
        rows = list(pair_refs[start:start + batch])
        images = list(queries[start:start + batch])
        used = len(rows)
        rows += [rows[-1]] * (batch - used)
        images += [images[-1]] * (batch - used)
        out = model.detect_with_reference([v[rows] for v in vectors], images)
        results += out[:used]
    return results


def max_score_difference(a: Sequence[dict], b: Sequence[dict]) -> float:
    """Largest |score difference| between two runs' detections of the same pairs
    (detections sorted by score; inf when the counts differ)."""
    worst = 0.0
    for x, y in zip(a, b):
        if len(x["scores"]) != len(y["scores"]):
            return float("inf")
        if len(x["scores"]):
            worst = max(worst, float(np.max(np.abs(np.sort(x["scores"])
                                                   - np.sort(y["scores"])))))
    return worst


def bench_batched_model(single: SiameseMaskRCNN, batched: SiameseMaskRCNN,
                       queries: Sequence[np.ndarray], references: Sequence[np.ndarray],
                       repeats: int) -> dict:
    """Per-pair time of the three evaluation paths on the same pairs and weights."""
    pair_refs = [i % len(references) for i in range(len(queries))]
    pairs = [(q, references[r]) for q, r in zip(queries, pair_refs)]
    out: dict[str, list] = {}

    def run(key: str, fn: Callable[[], list]) -> Callable[[], None]:
        return lambda: out.__setitem__(key, fn())

    timed = interleaved_seconds({
        "one_pair_per_call": run("single", lambda: detect_one_per_call(single, pairs)),
        "batched_fresh_reference": run("batched", lambda: detect_batched(batched, pairs)),
        "batched_cached_reference": run(
            "cached", lambda: detect_cached(batched, queries, references, pair_refs)),
    }, repeats)
    per_pair = {name: t["median"] / len(pairs) for name, t in timed.items()}
    return {
        "batched_model_speedup": per_pair["one_pair_per_call"]
        / per_pair["batched_cached_reference"],
        "batched_fresh_reference_speedup": per_pair["one_pair_per_call"]
        / per_pair["batched_fresh_reference"],
        "seconds_per_pair": per_pair,
        "pairs": len(pairs),
        "distinct_references": len(references),
        "batch_size": batched.config.BATCH_SIZE,
        "max_score_difference_vs_one_pair_per_call": {
            "batched_fresh_reference": max_score_difference(out["single"], out["batched"]),
            "batched_cached_reference": max_score_difference(out["single"], out["cached"]),
        },
    }


# ------------------------------------------------- 2b. evaluation vs the old loop
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


# ------------------------------------------------------------ 3. data vs train
def load_batches(generator: SiameseDataGenerator, count: int) -> tuple[list, float]:
    """``count`` batches from the generator and the loading rate in samples/s."""
    batches = []
    start = time.perf_counter()
    for idx in range(count):
        batches.append(generator[idx % len(generator)][0])
    seconds = time.perf_counter() - start
    return batches, count * generator.batch_size / seconds


def training_model(config: Config, model_dir: str, layers: str = "all") -> SiameseMaskRCNN:
    """A compiled training model with ``layers`` trainable."""
    model = SiameseMaskRCNN("training", config, model_dir)
    model.set_trainable(model.layer_regex(layers), verbose=0)
    model.compile(learning_rate=1e-4, momentum=config.LEARNING_MOMENTUM)
    return model


def train_step_seconds(model: SiameseMaskRCNN, batches: Sequence[list],
                       repeats: int) -> float:
    """Median seconds of one train_on_batch, cycling through ``batches``."""
    position = iter(range(10 ** 9))

    def step() -> None:
        model.keras_model.train_on_batch(batches[next(position) % len(batches)])

    return median_seconds(step, repeats)


def bench_data_vs_train(config: Config, data: ShapesData, model_dir: str,
                        batches: int, repeats: int) -> dict:
    """Data pipeline samples/s (one thread) vs training samples/s on the same batches."""
    generator = SiameseDataGenerator(data.dataset, config, shuffle=True, seed=0, workers=0)
    loaded, data_rate = load_batches(generator, batches)
    model = training_model(config, model_dir)
    step = train_step_seconds(model, loaded, repeats)
    train_rate = config.BATCH_SIZE / step
    release(model)
    return {
        "data_over_train": data_rate / train_rate,
        "data_samples_per_s": data_rate,
        "train_samples_per_s": train_rate,
        "train_step_s": step,
        "batch_size": config.BATCH_SIZE,
        "trainable_layers": "all",
    }


# --------------------------------------------------------------------- 5. GPU
def error_text(error: Exception) -> str:
    """One line: the exception type, where (Keras' first line) and the cause."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    # Keras: "Exception encountered when calling X.call()." ... "Error encountered:" cause
    cause = [line for line in lines if not line.startswith(("•", "Arguments", "Could not"))
             and "encountered" not in line]
    parts = [lines[0]] + cause[:1]
    return f"{type(error).__name__}: {' '.join(dict.fromkeys(parts))}"[:400]


def train_throughput(config: Config, data: ShapesData, model_dir: str, repeats: int,
                     source: SiameseMaskRCNN | None = None) -> dict:
    """Training images/s under the current dtype policy, and the gradient of the RPN
    losses on the first batch (for the precision comparison).

    source: a training model to copy the weights from (the float32 run).
    """
    generator = SiameseDataGenerator(data.dataset, config, seed=0, workers=0)
    batches, _ = load_batches(generator, 2)
    trainer = training_model(config, model_dir)
    if source is not None:
        copy_weights(source, trainer)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        gradient = scaled_rpn_gradient(trainer, batches[0])
    else:
        gradient = rpn_gradient(trainer, batches[0], 1.0) + (1.0,)
    step = train_step_seconds(trainer, batches, repeats)
    return {"train_images_per_s": config.BATCH_SIZE / step,
            "train_batch_size": config.BATCH_SIZE,
            "_gradient": gradient, "_model": trainer}


def inference_throughput(config: Config, data: ShapesData, model_dir: str, repeats: int,
                         source: SiameseMaskRCNN | None = None) -> dict:
    """Inference images/s (batched detect()) under the current dtype policy, plus the
    dense outputs of one batch for the precision comparison."""
    batch = config.BATCH_SIZE
    detector = SiameseMaskRCNN("inference", config, model_dir)
    if source is not None:
        copy_weights(source, detector)
    queries, references = data.queries(batch), data.references(batch)
    detect_s = median_seconds(lambda: detector.detect(references, queries), repeats)
    return {"inference_images_per_s": batch / detect_s, "inference_batch_size": batch,
            "_rpn": dense_outputs(detector, queries, references), "_model": detector}


def compare_training(fp32: dict, fp16: dict) -> dict:
    """The RPN-loss gradient of one batch (deterministic: the head losses depend on
    random ROI sampling), mixed precision vs float32 (precision.check_gradient)."""
    (loss32, grads32, _), (loss16, grads16, scale) = fp32["_gradient"], fp16["_gradient"]
    return check_gradient(loss32, grads32, loss16, grads16, scale)


def compare_inference(fp32: dict, fp16: dict) -> dict:
    """The dense outputs (RPN), mixed precision vs float32 (precision.check_dense).
    Detections are compared by precision.py, on trained weights."""
    return check_dense(fp32["_rpn"], fp16["_rpn"])


def public(result: dict) -> dict:
    """A measurement without its private (underscored) arrays and models."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


# GPU-mode parts: (name, config mode, measure, compare). A measure takes (config, data,
# model_dir, repeats, source=None) and returns its images/s and private (_) results.
GPU_PARTS = (("training", "training", train_throughput, compare_training),
             ("inference", "inference", inference_throughput, compare_inference))


def bench_gpu(config_name: str, overrides: dict, data: ShapesData, model_dir: str,
              eval_batch: int, repeats: int, mixed_precision: bool,
              parts: Sequence[tuple] = GPU_PARTS) -> dict:
    """Training/inference images/s in float32 and, optionally, mixed_float16 with the
    same weights and inputs (each part's failure is reported, not raised).

    parts: GPU_PARTS; tests inject cheap measures to check the bookkeeping.
    """
    batch_sizes = {"training": CONFIGS_TRAIN_BATCH[config_name], "inference": eval_batch}
    report: dict[str, Any] = {"config": config_name}
    for part, mode, measure, compare in parts:
        config = make_config(config_name, mode, batch_sizes[mode], overrides)
        reset_gpu_peak()
        fp32 = measure(config, data, model_dir, repeats)
        report.setdefault("float32", {}).update(public(fp32))
        report["float32"][f"{part}_gpu_peak_mb"] = gpu_peak_mb()
        if not mixed_precision:
            continue
        entry = report.setdefault("mixed_float16", {})
        try:
            reset_gpu_peak()
            with dtype_policy("mixed_float16"):
                fp16 = measure(config, data, model_dir, repeats, source=fp32["_model"])
        except Exception as error:  # noqa: BLE001 - reported, not hidden
            logger.warning("mixed_float16 %s failed: %s", part, error_text(error))
            entry[f"{part}_error"] = error_text(error)
            continue
        entry.update(public(fp16))
        entry[f"{part}_gpu_peak_mb"] = gpu_peak_mb()
        entry[f"{part}_check"] = compare(fp32, fp16)
        key = "train_images_per_s" if part == "training" else "inference_images_per_s"
        entry[f"{part}_speedup"] = fp16[key] / fp32[key]
    release()
    return report


# ------------------------------------------------------------------------- main
def settings(args: argparse.Namespace) -> dict:
    """Sizes of the run; --quick is the CPU smoke setting."""
    quick = args.quick
    config = "tiny" if quick and args.config is None else (args.config or "small")
    return {
        "config": config,
        "repeats": args.repeats or (2 if quick else 3),
        "eval_batch": args.eval_batch or (2 if quick else 4),
        "pairs": args.pairs or (4 if quick else 8),
        "references": 2,
        "train_batch": CONFIGS_TRAIN_BATCH[config],
        "data_batches": 2 if quick else 4,
        "gpu_config": "tiny" if quick else "large",
        # Whole evaluations: a few dozen images for tiny, fewer for the slow small model.
        "eval_images": args.eval_images or (6 if quick else 24 if config == "tiny" else 8),
        "eval_repeats": args.eval_repeats or (1 if quick or config != "tiny" else 3),
    }


def run(args: argparse.Namespace) -> dict:
    """All measurements; returns the JSON report."""
    overrides = parse_set(args.set)
    plan = settings(args)
    report: dict[str, Any] = {"machine": machine_info(), "settings": plan,
                              "overrides": overrides}
    name = plan["config"]
    single_config = make_config(name, "inference", 1, overrides)
    batched_config = make_config(name, "inference", plan["eval_batch"], overrides)
    train_config = make_config(name, "training", plan["train_batch"], overrides)
    report["config"] = {"inference": single_config.to_dict(),
                        "training": train_config.to_dict()}
    memory = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="speed_bench_") as tmp:
        size = image_size(single_config)
        count = max(plan["pairs"], plan["data_batches"] * plan["train_batch"], 4,
                    plan["eval_images"])
        logger.info("Generating %d shapes images of %d px", count, size)
        data = ShapesData(os.path.join(tmp, "shapes"), count, size)
        queries = data.queries(plan["pairs"])
        references = data.references(plan["references"])

        logger.info("1/4 full detect() vs the dense forward (%s config)", name)
        single = SiameseMaskRCNN("inference", single_config, tmp)
        report["inference"] = bench_inference(single, queries[0], references[0],
                                              plan["repeats"])
        memory["after_inference"] = peak_rss_mb()

        logger.info("2/4 model calls: batched + cached reference vs one pair per call")
        batched = SiameseMaskRCNN("inference", batched_config, tmp)
        copy_weights(single, batched)
        report["batched_model"] = bench_batched_model(single, batched, queries, references,
                                                      plan["repeats"])
        memory["after_batched_model"] = peak_rss_mb()

        logger.info("3/4 whole evaluations: evaluate_dataset vs the old loop (%d images)",
                    plan["eval_images"])
        models = {1: single, batched.config.BATCH_SIZE: batched}
        report["evaluation"] = bench_eval_vs_old_loop(
            models, data, plan["eval_images"], plan["eval_repeats"])
        memory["after_eval_vs_old_loop"] = peak_rss_mb()
        release(single, batched)
        del single, batched

        logger.info("4/4 data pipeline vs training steps")
        report["data_vs_train"] = bench_data_vs_train(train_config, data, tmp,
                                                      plan["data_batches"], plan["repeats"])
        memory["after_training"] = peak_rss_mb()

        if args.gpu or tf.config.list_physical_devices("GPU"):
            gpu_name = plan["gpu_config"]
            logger.info("GPU mode (%s config)", gpu_name)
            gpu_data = data
            if gpu_name != name:
                size = image_size(make_config(gpu_name, "inference", 1, overrides))
                gpu_data = ShapesData(os.path.join(tmp, "shapes_gpu"), 8, size)
            report["gpu"] = bench_gpu(gpu_name, overrides, gpu_data, tmp, plan["eval_batch"],
                                      plan["repeats"], args.mixed_precision)
            memory["after_gpu"] = peak_rss_mb()
    memory["peak_rss_mb"] = peak_rss_mb()
    report["memory"] = memory
    report["total_seconds"] = time.perf_counter() - start
    report["machine"]["load_average_1min_end"] = (os.getloadavg()[0]
                                                  if hasattr(os, "getloadavg") else None)
    report["inference_over_dense"] = report["inference"]["inference_over_dense"]
    report["batched_model_speedup"] = report["batched_model"]["batched_model_speedup"]
    for key in ("eval_vs_old_loop", "eval_vs_old_loop_shared_reference"):
        report[key] = report["evaluation"][key]
    # The measure: the evaluation as a whole, with the default protocol.
    report["batched_eval_speedup"] = report["eval_vs_old_loop"]
    report["data_over_train"] = report["data_vs_train"]["data_over_train"]
    report["targets"] = {key: {"target": f"{op} {value}", "measured": report[key],
                               "met": report[key] <= value if op == "<="
                               else report[key] >= value}
                         for key, (op, value) in TARGETS.items()}
    return report


def gpu_rows(gpu: dict | None) -> list[tuple]:
    """Table rows of the GPU-mode part: images/s per precision, checks and failures."""
    rows: list[tuple] = []
    for precision in ("float32", "mixed_float16"):
        entry = (gpu or {}).get(precision)
        if entry is None:
            continue
        for part, key, batch in (("training", "train_images_per_s", "train_batch_size"),
                                 ("inference", "inference_images_per_s",
                                  "inference_batch_size")):
            label = f"{gpu['config']} {part} images/s, {precision}"
            if f"{part}_error" in entry:
                rows.append((label, "failed", entry[f"{part}_error"].replace("|", "/")))
                continue
            detail = f"batch {entry[batch]}"
            check = entry.get(f"{part}_check")
            if check is not None:
                detail += ", {:.2f}x float32; within tolerance: {} {}".format(
                    entry[f"{part}_speedup"], check["within_tolerance"],
                    {k: round(v, 5) if isinstance(v, float) else v
                     for k, v in check["differences"].items()})
            rows.append((label, f"{entry[key]:.2f}", detail))
    return rows


def markdown_table(report: dict) -> str:
    """The README table of a report."""
    machine = report["machine"]
    inference, batched = report["inference"], report["batched_model"]
    evaluation = report["evaluation"]
    data = report["data_vs_train"]
    seconds = inference["seconds"]
    per_pair = batched["seconds_per_pair"]
    eval_pair = evaluation["seconds_per_pair"]
    fresh, shared = (evaluation["fastest"][k] for k in ("fresh_reference",
                                                          "shared_reference"))
    rows = [
        ("inference_over_dense (target <= 1.3)", f"{report['inference_over_dense']:.2f}",
         f"detect {seconds['detect']:.3f} s / dense {seconds['dense']:.3f} s"),
        ("batched_eval_speedup = eval_vs_old_loop (target >= 3)",
         f"{report['batched_eval_speedup']:.2f}",
         f"old loop {eval_pair['old_loop']:.3f} s/pair -> evaluate_dataset "
         f"{eval_pair[fresh]:.3f} s/pair ({fresh}; {evaluation['images']} images, "
         f"{evaluation['pairs']['old_loop']} pairs, bbox + segm)"),
        ("eval_vs_old_loop_shared_reference", f"{report['eval_vs_old_loop_shared_reference']:.2f}",
         f"{eval_pair[shared]:.3f} s/pair ({shared})"),
        ("query_cache_speedup", f"{evaluation['query_cache_speedup']:.2f}",
         "each query image encoded once for all its categories vs one detect() per pair"),
        ("batched_model_speedup", f"{report['batched_model_speedup']:.2f}",
         f"detect calls: {per_pair['one_pair_per_call']:.3f} s/pair (B=1) -> "
         f"{per_pair['batched_cached_reference']:.3f} s/pair "
         f"(B={batched['batch_size']}, {batched['pairs']} pairs, "
         f"{batched['distinct_references']} references cached)"),
        ("batched_fresh_reference_speedup", f"{batched['batched_fresh_reference_speedup']:.2f}",
         f"{per_pair['batched_fresh_reference']:.3f} s/pair"),
        ("data_over_train (target >= 1)", f"{report['data_over_train']:.2f}",
         f"data {data['data_samples_per_s']:.2f} samples/s (1 thread), "
         f"train {data['train_samples_per_s']:.2f} samples/s (batch {data['batch_size']})"),
        ("peak RSS", f"{report['memory']['peak_rss_mb']:.0f} MiB", ""),
    ]
    for part, value in inference["added_over_dense"].items():
        rows.append((f"  + {part}", f"{value:+.2f} x dense", ""))
    rows += gpu_rows(report.get("gpu"))
    lines = [f"Measured {machine['date']} on {machine['platform']}, "
             f"{machine['cpu_count']} CPUs (load {machine['load_average_1min']:.1f}), "
             f"TF {machine['tensorflow']}, config `{report['settings']['config']}`, "
             f"median of {report['settings']['repeats']}.", "",
             "| measure | value | detail |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)



def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke setting: tiny config (resnet_tiny, 128 px), 2 repeats")
    parser.add_argument("--config", choices=("small", "tiny"), default=None,
                        help="model size of the CPU ratios (default small; tiny with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per measure after one warm-up (median reported)")
    parser.add_argument("--eval-batch", type=int, default=None,
                        help="BATCH_SIZE of the batched evaluation (default 4; 2 with --quick)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="(query, reference) pairs of the evaluation comparison")
    parser.add_argument("--eval-images", type=int, default=None,
                        help="images of the whole-evaluation comparison (default 24 for "
                             "tiny, 8 for small, 6 with --quick)")
    parser.add_argument("--eval-repeats", type=int, default=None,
                        help="timed runs of each whole evaluation (default 3 for tiny, "
                             "1 for small and --quick)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON report path")
    parser.add_argument("--gpu", action="store_true",
                        help="run the GPU-mode throughput part even without a GPU "
                             "(it runs by itself when TensorFlow sees one)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="GPU mode: also measure under mixed_float16 and compare")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="config override for every model (repeatable)")
    args = parser.parse_args(argv)
    for name in ("repeats", "eval_batch", "pairs", "eval_images", "eval_repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = to_json(run(args))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(report))
    print(f"\nJSON: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
