"""Inference speed of the Siamese model under the Keras JAX backend (the GPU machine has
JAX but no TensorFlow; see gpu.sh).

    KERAS_BACKEND=jax python benchmarks/gpu.py --config large_eval --batch 3 \
        --policy float32 --output gpu.json

Random weights (speed does not depend on them) and random images of the config's
size. Measures, after one warm-up call (the compile):
- graph: the detection graph alone (vector_detector: molded queries and encoded
  references in, detections and masks out), images/s;
- detect: detect() end to end (molding, graph, unmolding the masks on the CPU),
  images/s; with random weights it depends on how many detections pass the threshold
  (each mask is resized on the CPU), so only the graph figure compares across runs;
- the compile time, the spread of the timed calls (a retrace per call would show as
  calls as slow as the first), and the accelerator's peak memory;
- with --profile, a JAX profiler trace of 3 more graph calls (profile_ops.py sums it
  per layer).
Prints one JSON object and appends it to --output.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

from common import accelerator_info, add_trace, report_line  # and lib/ on sys.path


def timed(function, repeats: int) -> list:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="large_eval")
    parser.add_argument("--batch", type=int, default=3, help="images per call (3)")
    parser.add_argument("--policy", default="float32",
                        help="float32 | mixed_bfloat16 | mixed_float16")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--output", default=None, help="append the JSON line here")
    parser.add_argument("--profile", default=None, metavar="PATH",
                        help="also trace 3 graph calls under the JAX profiler into PATH "
                             "(.xplane.pb.gz; summed per layer by profile_ops.py)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    keras.mixed_precision.set_global_policy(args.policy)
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN

    config = preset(args.config, IMAGES_PER_GPU=args.batch, GPU_COUNT=1)
    started = time.perf_counter()
    model = SiameseMaskRCNN("inference", config, "/tmp/gpu_bench_logs")
    build_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    size = int(config.IMAGE_MAX_DIM)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(args.batch)]
    reference = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)

    vectors = model.encode_reference([[reference] * config.NUM_TARGETS])
    molded = model.mold_inputs(images)
    detector = model.sub_model("vector_detector")
    vectors = [np.repeat(np.asarray(v), args.batch, axis=0) for v in vectors]  # [B, C]
    anchors = np.broadcast_to(model.get_anchors(molded[0][0].shape),
                              (args.batch,) + model.get_anchors(molded[0][0].shape).shape)
    inputs = [molded[0], molded[1], *vectors, np.ascontiguousarray(anchors)]

    def graph():
        outputs = detector.predict_on_batch(inputs)
        np.asarray(outputs[0])  # wait for the device

    first = timed(graph, 1)[0]
    graph_times = timed(graph, args.iterations)

    targets = [[reference] * config.NUM_TARGETS] * args.batch
    detect_first = timed(lambda: model.detect(targets, images), 1)[0]
    detect_times = timed(lambda: model.detect(targets, images), max(3, args.iterations // 4))

    device_name, peak = accelerator_info()
    median = statistics.median(graph_times)
    result = {
        "backend": keras.backend.backend(), "device": device_name, "config": args.config,
        "image_size": size, "batch": args.batch, "policy": args.policy,
        "build_s": round(build_s, 2), "graph_first_call_s": round(first, 3),
        "graph_median_s": round(median, 4), "graph_max_s": round(max(graph_times), 4),
        "graph_images_per_s": round(args.batch / median, 2),
        "detect_first_call_s": round(detect_first, 3),
        "detect_median_s": round(statistics.median(detect_times), 4),
        "detect_images_per_s": round(args.batch / statistics.median(detect_times), 2),
        # A retrace per call would make every call as slow as the first (the compile).
        "slow_calls": sum(t > 3 * median for t in graph_times),
        "peak_memory_gib": peak,
        "iterations": args.iterations, "python": platform.python_version(),
        "keras": keras.__version__,
    }
    if args.profile:
        add_trace(result, graph, 3, args.profile)
    report_line(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
