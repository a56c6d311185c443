"""5. GPU mode: training and inference images/s at the large config, optionally under
mixed_float16, with the differences from float32 on the same weights and inputs."""
from __future__ import annotations

import logging
import re
from typing import Any, Sequence

from common import REPO  # noqa: F401,E402 - sets up sys.path

import keras  # noqa: E402

from siamese_mrcnn.config import Config  # noqa: E402
from siamese_mrcnn.data import SiameseDataGenerator  # noqa: E402
from siamese_mrcnn.model import SiameseMaskRCNN  # noqa: E402

from precision import (check_dense, check_gradient, copy_weights,  # noqa: E402
                       dense_outputs, dtype_policy, rpn_gradient, scaled_rpn_gradient)
from speed_setup import (CONFIGS_TRAIN_BATCH, ShapesData, gpu_peak_mb,  # noqa: E402
                         make_config, median_seconds, release, reset_gpu_peak)
from speed_training import load_batches, training_model, train_step_seconds  # noqa: E402

logger = logging.getLogger("benchmarks.speed")


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
