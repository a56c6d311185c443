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
import logging
import os
import sys
import tempfile
import time
from typing import Any, Sequence

from common import REPO, machine_info, to_json, write_json  # noqa: E402,F401 - sets up sys.path

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from siamese_mrcnn.cli import parse_set  # noqa: E402
from siamese_mrcnn.model import SiameseMaskRCNN  # noqa: E402

from precision import copy_weights  # noqa: E402
# One file per measurement; their names are re-exported here for the tests and for
# `import speed` users.
from speed_batching import (bench_batched_model, detect_batched,  # noqa: E402,F401
                            detect_cached, detect_one_per_call, detection_agreement,
                            max_score_difference)
from speed_evaluation import (EVAL_TYPES, bench_eval_vs_old_loop, breakdown,  # noqa: E402,F401
                              coco_stats, evaluate_old_loop, evaluate_ours, predict_detect)
from speed_gpu import (GPU_PARTS, bench_gpu, compare_inference,  # noqa: E402,F401
                       compare_training, error_text, inference_throughput, public,
                       train_throughput)
from speed_inference import bench_inference, dense_model, graph_stage_model  # noqa: E402,F401
from speed_setup import (COMMON_OVERRIDES, CONFIGS, CONFIGS_TRAIN_BATCH,  # noqa: E402,F401
                         TINY_OVERRIDES, ShapesData, image_size, interleaved_seconds,
                         make_config, median_seconds, peak_rss_mb, release)
from speed_training import (bench_data_vs_train, load_batches,  # noqa: E402,F401
                            train_step_seconds, training_model)

logger = logging.getLogger("benchmarks.speed")

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "speed.json"

# Targets of the project issue (item 2). batched_eval_speedup is the evaluation as a
# whole against the old one-pair-per-call loop (eval_vs_old_loop).
TARGETS = {"inference_over_dense": ("<=", 1.3), "batched_eval_speedup": (">=", 3.0),
           "data_over_train": (">=", 1.0)}


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
        # The same random weights every run: the report's detections are reproducible.
        keras.utils.set_random_seed(0)
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
    output = write_json(report, args.output)
    print(markdown_table(report))
    print(f"\nJSON: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
