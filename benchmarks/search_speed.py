"""Speed of `train_siamese.py search` against the model alone, measured side by side.

    python benchmarks/search_speed.py [--config tiny|small] [--images N] [--batch B]
                                      [--repeats R] [--output benchmarks/results/search.json]

``search_over_model``: images/s of ``siamese_mrcnn.search.search_collection`` over a
folder of generated PNGs (reading, molding in its loader thread, the model, RLE masks,
results.jsonl; the contact sheet is drawn after the clock stops) over images/s of
``detect_with_reference`` on the same images already read and molded, same weights and
batches. The goal is >= 0.9: reading and molding hidden behind the model. Also the
peak memory of the process. ``export_over_detect``: the exported model's
serving_default latency per image (raw image and reference in, unmolded detections out)
over ``detect()``'s on the same images with the same weights, one image per call (goal
<= 1.0). Weights are random and DETECTION_MIN_CONFIDENCE is 0, so every image yields
DETECTION_MAX_INSTANCES detections to encode (the worst case).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from typing import Sequence

from common import REPO, machine_info, to_json, write_json  # noqa: E402 - sets up sys.path

from samples.shapes.generate import generate_dataset  # noqa: E402
from siamese_mrcnn.model import SiameseMaskRCNN  # noqa: E402
from siamese_mrcnn.search import list_images, read_rgb, search_collection  # noqa: E402

from speed_setup import (image_size, interleaved_seconds, make_config,  # noqa: E402
                         peak_rss_mb)

logger = logging.getLogger("benchmarks.search")

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "search.json"
GOAL = 0.9


def model_only(model: SiameseMaskRCNN, vectors: list, molded_batches: list) -> None:
    """detect_with_reference on batches read and molded beforehand."""
    for padded, molded in molded_batches:
        model.detect_with_reference(vectors, padded, molded=molded)


def export_latency(model: SiameseMaskRCNN, config_name: str, reference, images: list,
                   repeats: int, work: str) -> dict:
    """Per-image latency of the exported serving_default over detect() (BATCH_SIZE 1,
    the same weights)."""
    import tensorflow as tf

    single = SiameseMaskRCNN("inference", make_config(config_name, "inference", 1, {}), work)
    weights = os.path.join(work, "weights.h5")
    model.save_weights(weights)
    single.load_weights(weights)
    served = tf.saved_model.load(single.export(os.path.join(work, "exported")))
    serve = served.signatures["serving_default"]
    references = [reference] * single.config.NUM_TARGETS
    timed = interleaved_seconds({
        "exported": lambda: [serve(query=tf.constant(q), reference=tf.constant(reference))
                             for q in images],
        "detect": lambda: [single.detect([references], [q]) for q in images],
    }, repeats)
    per_image = {name: t["median"] / len(images) for name, t in timed.items()}
    return {"export_over_detect": per_image["exported"] / per_image["detect"],
            "seconds_per_image": per_image, "images": len(images)}


def measure(config_name: str, count: int, batch: int, repeats: int, work: str) -> dict:
    config = make_config(config_name, "inference", batch, {})
    paths = generate_dataset(os.path.join(work, "shapes"), count, 0, seed=0,
                             size=image_size(config), workers=1)
    files = list_images(str(paths.train_images))
    model = SiameseMaskRCNN("inference", config, work)
    reference = read_rgb(files[-1])[8:56, 8:56]
    vectors = model.encode_reference([[reference] * config.NUM_TARGETS])
    images = [read_rgb(f) for f in files]
    molded_batches = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        padded = chunk + [chunk[-1]] * (batch - len(chunk))
        molded_batches.append((padded, model.mold_inputs(padded)))
    runs = iter(range(10 ** 6))

    def search_once() -> None:
        out = os.path.join(work, f"out_{next(runs)}")
        search_collection(model, reference, files, out, min_score=0.0, top=0,
                          progress=False)

    timed = interleaved_seconds({"search": search_once,
                                 "model_only": lambda: model_only(model, vectors,
                                                                  molded_batches)},
                                repeats)
    rates = {name: len(files) / t["median"] for name, t in timed.items()}
    latency = export_latency(model, config_name, reference, images[:8], repeats, work)
    return {"search_over_model": rates["search"] / rates["model_only"],
            "export_over_detect": latency["export_over_detect"], "export": latency,
            "images_per_s": rates, "seconds": timed, "images": len(files),
            "batch": batch, "config": config_name, "image_side": image_size(config),
            "peak_rss_mb": peak_rss_mb()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=("tiny", "small"), default="tiny")
    parser.add_argument("--images", type=int, default=48, help="folder size (default 48)")
    parser.add_argument("--batch", type=int, default=4, help="BATCH_SIZE (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON report path")
    args = parser.parse_args(argv)
    for name in ("images", "batch", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="search_bench_") as work:
        report = measure(args.config, args.images, args.batch, args.repeats, work)
    report = to_json({"machine": machine_info(), **report})
    output = write_json(report, args.output)
    rates = report["images_per_s"]
    print(f"search_over_model {report['search_over_model']:.2f} (goal >= {GOAL}): search "
          f"{rates['search']:.1f} images/s, detect_with_reference on molded batches "
          f"{rates['model_only']:.1f} images/s ({report['images']} images of "
          f"{report['image_side']} px, batch {report['batch']}, config {report['config']}, "
          f"peak RSS {report['peak_rss_mb']:.0f} MiB)")
    latency = report["export"]["seconds_per_image"]
    print(f"export_over_detect {report['export_over_detect']:.2f} (goal <= 1.0): exported "
          f"serving_default {1000 * latency['exported']:.1f} ms/image, detect() "
          f"{1000 * latency['detect']:.1f} ms/image")
    print(f"JSON: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
