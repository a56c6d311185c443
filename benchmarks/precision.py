"""Mixed precision (``mixed_float16``) against float32: same weights, same inputs.

    python benchmarks/precision.py [--weights PATH | --random-weights] [--data DIR]
                                   [--config quickstart|large] [--images N] [--steps K]
                                   [--checks dense,evaluation,gradient,training]
                                   [--set KEY=VALUE ...] [--output PATH]

By default it checks the quick start's model (run ``make demo`` first): its last
checkpoint under ``runs/quickstart/logs`` and its data set ``runs/quickstart/data``. With
``--config large`` it checks the paper's large config (1024 px, ResNet-50), for which a
GPU and trained weights (``--weights``, e.g. a released checkpoint) are what make sense.

Four checks, each with a tolerance fixed before measuring (see benchmarks/README.md):

1. ``dense``: the RPN outputs (``rpn_class`` probabilities, ``rpn_bbox`` deltas) on the
   same molded (query, reference) batch: max abs difference.
2. ``evaluation``: the paper's protocol on the same val images with the same reference
   draws (same seed) in both precisions: AP50 (boxes and masks) difference, and how
   many confident detections (score >= 0.5) of one precision the other also finds
   (same image and category, box IoU >= 0.5).
3. ``gradient``: the gradient of the RPN losses (deterministic given a batch: the head
   losses depend on random ROI sampling) with respect to every weight that gets one:
   cosine similarity and norm ratio. Under float16 the loss is scaled as a
   LossScaleOptimizer would (2^15, halved while the gradient overflows) and unscaled.
4. ``training``: K SGD steps from the same weights on the same batches, then the mean
   losses on held-out batches; R runs per precision, because training samples ROIs at
   random. The difference of the two means must stay within 3 standard errors of that
   difference (from the runs' spread), or 1 % of the loss when the runs agree closer.
   Steps that dynamic loss scaling skips (an overflowing first step) are counted.

Writes a JSON report (default benchmarks/results/precision.json) and prints a table.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from common import REPO, machine_info, write_json  # noqa: E402 - sets up sys.path

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from mrcnn import utils  # noqa: E402
from mrcnn import weights as weights_io  # noqa: E402
from siamese_mrcnn.config import Config, config_from_overrides, preset  # noqa: E402
from siamese_mrcnn.data import SiameseDataGenerator  # noqa: E402
from siamese_mrcnn.evaluation import evaluate_protocol  # noqa: E402
from siamese_mrcnn.model import SiameseMaskRCNN  # noqa: E402

logger = logging.getLogger("benchmarks.precision")

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "precision.json"
QUICKSTART_DIR = REPO / "runs" / "quickstart"

#: Tolerances, fixed before any measurement (README: "Mixed precision").
TOLERANCES = {
    "rpn_class_max_abs": 1e-2,         # probabilities
    "rpn_bbox_max_abs": 5e-2,          # deltas (divided by RPN_BBOX_STD_DEV: order 1)
    "ap50_abs": 0.01,                  # one AP50 point, boxes and masks
    "confident_matched_min": 0.95,     # share of score >= 0.5 detections found by both
    "gradient_cosine_min": 0.99,
    "gradient_norm_ratio": 0.05,       # |ratio - 1|
    "training_standard_errors": 3.0,   # x the standard error of the mean difference...
    "training_floor_rel": 0.01,        # ... but at least 1 % of the float32 loss
}
RPN_LOSSES = ("rpn_class_loss", "rpn_bbox_loss")
CONFIDENT = 0.5


# ------------------------------------------------------------------------ setup
@contextlib.contextmanager
def dtype_policy(name: str):
    """Sets the global Keras dtype policy for the models built inside."""
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def copy_weights(source: SiameseMaskRCNN, target: SiameseMaskRCNN) -> None:
    """Copies every weight by (layer, weight) name: float32 values into either precision
    (mixed_float16 keeps its variables in float32)."""
    values = weights_io.weight_map(source.keras_model)
    targets = weights_io.weight_map(target.keras_model)
    missing = sorted(set(targets) - set(values))
    if missing:
        raise ValueError(f"copy_weights: the source model lacks {missing[:5]}")
    for key, variable in targets.items():
        variable.assign(values[key].value)


def make_configs(name: str, overrides: dict) -> tuple[Config, Config]:
    """(training config, inference config) of 'quickstart' or 'large'."""
    if name == "quickstart":
        from samples.shapes.quickstart import build_configs

        return build_configs(overrides)
    if name == "large":
        fields = {"GPU_COUNT": 1, **overrides}
        return (config_from_overrides(preset("large"), fields),
                config_from_overrides(preset("large_eval"), {"IMAGES_PER_GPU": 2, **fields}))
    raise ValueError(f"config: expected 'quickstart' or 'large', got {name!r}")


def latest_quickstart_checkpoint(root: Path = QUICKSTART_DIR) -> Path:
    """The quick start's last checkpoint, or FileNotFoundError saying how to get one."""
    found = sorted(root.glob("logs/*/siamese_mrcnn_*.h5"))
    if not found:
        raise FileNotFoundError(
            f"no quick-start checkpoint under {root}/logs: run `make demo` first, or pass "
            "--weights PATH (or --random-weights)")
    return found[-1]


def reference_crop(dataset: Any, image_id: int) -> np.ndarray:
    """A reference from a data set image: its first instance's box (at least 4 px a
    side)."""
    image = dataset.load_image(image_id)
    masks, _ = dataset.load_mask(image_id)
    y1, x1, y2, x2 = utils.extract_bboxes(masks[:, :, :1])[0]
    return image[y1:max(y2, y1 + 4), x1:max(x2, x1 + 4)]


class Data:
    """The train and val subsets of a generated shapes data set (COCO layout)."""

    def __init__(self, root: str, size: int, images: int):
        from samples.shapes.generate import generate_dataset
        from siamese_mrcnn.coco import IndexedCocoDataset

        if not (Path(root) / "annotations" / "instances_val2017.json").exists():
            logger.info("Generating a shapes data set of %d px under %s", size, root)
            generate_dataset(root, max(24, images), images, seed=0, size=size, workers=1)
        self.train = IndexedCocoDataset()
        self.train.load_coco(root, "train", year="2017", subsubset=None)
        self.train.prepare()
        self.val = IndexedCocoDataset()
        self.val_coco = self.val.load_coco(root, "val", year="2017", return_coco=True)
        self.val.prepare()

    def pairs(self, count: int) -> tuple[list, list]:
        """``count`` val queries and as many reference crops (the first instance of the
        images counted from the end)."""
        ids = list(self.val.image_ids)
        queries = [self.val.load_image(ids[i % len(ids)]) for i in range(count)]
        references = [reference_crop(self.val, ids[-1 - i % len(ids)]) for i in range(count)]
        return queries, references


def build(mode: str, config: Config, model_dir: str, weights: str | None,
          source: SiameseMaskRCNN | None = None) -> SiameseMaskRCNN:
    """A model under the current policy, with ``weights`` (a file) or ``source``'s."""
    model = SiameseMaskRCNN(mode, config, model_dir)
    if source is not None:
        copy_weights(source, model)
    elif weights:
        model.load_weights(weights, by_name=True)
    return model


# ---------------------------------------------------------------- 1. dense
def dense_outputs(model: SiameseMaskRCNN, queries: list, references: list) -> list:
    """[rpn_class, rpn_bbox] as float32 arrays for one batch."""
    graph = model.inner_model
    outputs = model.run_graph(queries, [(n, graph.get_layer(n).output)
                                        for n in ("rpn_class", "rpn_bbox")],
                              targets=[[r] for r in references])
    return [np.asarray(v, np.float32) for v in outputs.values()]


def check_dense(fp32: list, fp16: list) -> dict:
    differences = {"rpn_class_max_abs": float(np.max(np.abs(fp32[0] - fp16[0]))),
                   "rpn_bbox_max_abs": float(np.max(np.abs(fp32[1] - fp16[1])))}
    within = all(differences[k] <= TOLERANCES[k] for k in differences)
    return {"differences": differences, "within_tolerance": within,
            "tolerances": {k: TOLERANCES[k] for k in differences}}


# ----------------------------------------------------------- 2. evaluation
def evaluate(model: SiameseMaskRCNN, data: Data, images: int) -> Any:
    """The paper's protocol on the first ``images`` val images, seed 0."""
    return evaluate_protocol(model, data.val, data.val_coco, eval_type=("bbox", "segm"),
                             limit=images, seed=0, keep_results=True, verbose=0)


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two COCO [x, y, w, h] boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match_detections(ours: list, theirs: list, min_iou: float = 0.5) -> tuple[list, int]:
    """Greedy matching of ``ours``' confident detections to ``theirs`` (COCO results),
    per image and category, by score order. Returns the matches as (ours, theirs) pairs
    and the number of confident detections in ``ours``."""
    pool: dict[tuple, list] = {}
    for result in theirs:
        pool.setdefault((result["image_id"], result["category_id"]), []).append(result)
    confident = sorted((r for r in ours if r["score"] >= CONFIDENT),
                       key=lambda r: -r["score"])
    matches = []
    for result in confident:
        candidates = pool.get((result["image_id"], result["category_id"]), [])
        ious = [_box_iou(result["bbox"], c["bbox"]) for c in candidates]
        if ious and max(ious) >= min_iou:
            matches.append((result, candidates.pop(int(np.argmax(ious)))))
    return matches, len(confident)


def check_evaluation(fp32: Any, fp16: Any) -> dict:
    """AP50 differences and the agreement of the confident detections."""
    ap = {t: (fp32.stat("AP50", t), fp16.stat("AP50", t)) for t in ("bbox", "segm")}
    forward, count32 = match_detections(fp32.results, fp16.results)
    backward, count16 = match_detections(fp16.results, fp32.results)
    box_ious = [_box_iou(a["bbox"], b["bbox"]) for a, b in forward]
    mask_ious = [float(mask_utils.iou([a["segmentation"]], [b["segmentation"]], [0])[0, 0])
                 for a, b in forward]
    score_diff = [abs(a["score"] - b["score"]) for a, b in forward]
    matched = min(len(forward) / max(count32, 1), len(backward) / max(count16, 1))
    differences = {
        "ap50_bbox_abs": abs(ap["bbox"][0] - ap["bbox"][1]),
        "ap50_segm_abs": abs(ap["segm"][0] - ap["segm"][1]),
        "confident_matched": matched,
    }
    within = (differences["ap50_bbox_abs"] <= TOLERANCES["ap50_abs"]
              and differences["ap50_segm_abs"] <= TOLERANCES["ap50_abs"]
              and (count32 + count16 == 0 or matched >= TOLERANCES["confident_matched_min"]))
    return {
        "differences": differences, "within_tolerance": within,
        "tolerances": {"ap50_bbox_abs": TOLERANCES["ap50_abs"],
                       "ap50_segm_abs": TOLERANCES["ap50_abs"],
                       "confident_matched": f">= {TOLERANCES['confident_matched_min']}"},
        "ap50": {"float32": {t: v[0] for t, v in ap.items()},
                 "mixed_float16": {t: v[1] for t, v in ap.items()}},
        "pairs": fp32.num_pairs,
        "confident_detections": {"float32": count32, "mixed_float16": count16},
        "matched_box_iou_mean": float(np.mean(box_ious)) if box_ious else None,
        "matched_mask_iou_mean": float(np.mean(mask_ious)) if mask_ious else None,
        "matched_score_diff_max": float(max(score_diff)) if score_diff else None,
    }


# ------------------------------------------------------------- 3. gradient
def rpn_gradient(model: SiameseMaskRCNN, batch: tuple, scale: float) -> tuple[float, dict]:
    """(RPN loss, {weight key: gradient}) of one batch in training mode; the loss is
    multiplied by ``scale`` before differentiation and the gradient divided by it."""
    keras_model = model.keras_model
    names = list(keras_model.loss_names)
    keys = {id(v): k for k, v in weights_io.weight_map(keras_model).items()}
    variables = keras_model.trainable_variables
    with tf.GradientTape() as tape:
        outputs = keras_model(list(batch), training=True)
        losses = dict(zip(names, outputs[-len(names):]))
        loss = tf.add_n([tf.cast(losses[n], tf.float32) for n in RPN_LOSSES])
        scaled = loss * scale
    grads = tape.gradient(scaled, variables)
    return float(loss), {keys[id(v)]: np.asarray(g, np.float64) / scale
                         for v, g in zip(variables, grads) if g is not None}


def scaled_rpn_gradient(model: SiameseMaskRCNN, batch: tuple) -> tuple[float, dict, float]:
    """The float16 gradient as dynamic loss scaling gets it: start at 2^15 and halve
    while any gradient is not finite. Returns (loss, gradient, scale)."""
    scale = 2.0 ** 15
    for _ in range(40):
        loss, grads = rpn_gradient(model, batch, scale)
        if all(np.all(np.isfinite(g)) for g in grads.values()):
            return loss, grads, scale
        scale /= 2
    raise FloatingPointError("the float16 RPN gradient overflows at every loss scale")


def check_gradient(loss32: float, grads32: dict, loss16: float, grads16: dict,
                   scale: float) -> dict:
    keys = sorted(set(grads32) & set(grads16))
    a = np.concatenate([grads32[k].ravel() for k in keys])
    b = np.concatenate([grads16[k].ravel() for k in keys])
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    cosine = float(a @ b / max(norm_a * norm_b, 1e-30))
    ratio = norm_b / max(norm_a, 1e-30)
    differences = {"gradient_cosine": cosine, "gradient_norm_ratio": ratio,
                   "rpn_loss_rel": abs(loss16 - loss32) / max(abs(loss32), 1e-12)}
    within = (cosine >= TOLERANCES["gradient_cosine_min"]
              and abs(ratio - 1) <= TOLERANCES["gradient_norm_ratio"])
    return {"differences": differences, "within_tolerance": within,
            "tolerances": {"gradient_cosine": f">= {TOLERANCES['gradient_cosine_min']}",
                           "gradient_norm_ratio": f"1 +- {TOLERANCES['gradient_norm_ratio']}"},
            "weights_compared": len(keys), "loss_scale": scale,
            "only_in_one": sorted(set(grads32) ^ set(grads16))}


# ------------------------------------------------------------- 4. training
def train_and_score(model: SiameseMaskRCNN, batches: Sequence[tuple],
                    held_out: Sequence[tuple]) -> dict:
    """K train_on_batch steps, then the mean losses over the held-out batches."""
    config = model.config
    model.set_trainable(model.layer_regex("all"), verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    curve = [float(model.keras_model.train_on_batch(list(b), return_dict=True)["loss"])
             for b in batches]
    scores: dict[str, list] = {}
    for batch in held_out:
        for name, value in model.keras_model.test_on_batch(list(batch),
                                                           return_dict=True).items():
            scores.setdefault(name, []).append(float(value))
    applied = int(keras.ops.convert_to_numpy(model.keras_model.optimizer.iterations))
    return {"train_loss_curve": curve,
            "held_out": {k: float(np.mean(v)) for k, v in scores.items()},
            "skipped_steps": len(batches) - applied}


def check_training(fp32_runs: Sequence[dict], fp16_runs: Sequence[dict]) -> dict:
    """Held-out losses after K steps, several runs per precision (training samples ROIs
    at random): the difference of the means against their standard error."""
    rows, within = {}, True
    factor, floor = TOLERANCES["training_standard_errors"], TOLERANCES["training_floor_rel"]
    for name in ("loss", *RPN_LOSSES):
        a = np.array([r["held_out"][name] for r in fp32_runs])
        b = np.array([r["held_out"][name] for r in fp16_runs])
        error = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))) \
            if min(len(a), len(b)) > 1 else 0.0
        allowed = max(factor * error, floor * abs(a.mean()))
        difference = abs(float(b.mean() - a.mean()))
        rows[name] = {"float32": a.tolist(), "mixed_float16": b.tolist(),
                      "mean_float32": float(a.mean()), "mean_mixed_float16": float(b.mean()),
                      "standard_error": error, "difference": difference, "allowed": allowed}
        within &= difference <= allowed
    return {"held_out": rows, "within_tolerance": bool(within),
            "skipped_steps": {"float32": [r["skipped_steps"] for r in fp32_runs],
                              "mixed_float16": [r["skipped_steps"] for r in fp16_runs]},
            "train_loss_curve": {"float32": [r["train_loss_curve"] for r in fp32_runs],
                                 "mixed_float16": [r["train_loss_curve"] for r in fp16_runs]},
            "tolerance": (f"|mean fp16 - mean fp32| <= max({factor} standard errors of the "
                          f"difference, {floor} x mean fp32)")}


# ------------------------------------------------------------------ driver
def timed(report: dict, key: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    value = fn()
    report.setdefault("seconds", {})[key] = time.perf_counter() - start
    return value


CHECKS = ("dense", "evaluation", "gradient", "training")


def verify(train_config: Config, inference_config: Config, data: Data, model_dir: str,
           weights: str | None, images: int = 100, steps: int = 10,
           held_out: int = 4, runs: int = 3, checks: Sequence[str] = CHECKS) -> dict:
    """The chosen checks (default all four); returns the report (``within_tolerance``
    over the checks that ran)."""
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown or not checks:
        raise ValueError(f"checks: expected some of {', '.join(CHECKS)}, got {list(checks)}")
    report: dict[str, Any] = {"weights": str(weights) if weights else "random",
                              "images": images, "steps": steps, "held_out_batches": held_out,
                              "training_runs": runs,
                              "checks": [c for c in CHECKS if c in checks]}
    if {"dense", "evaluation"} & set(checks):
        verify_inference(report, inference_config, data, model_dir, weights, images)
    if {"gradient", "training"} & set(checks):
        verify_training(report, train_config, data, model_dir, weights, steps, held_out,
                        runs)
    report["within_tolerance"] = all(report[k]["within_tolerance"] for k in report["checks"])
    return report


def verify_inference(report: dict, config: Config, data: Data, model_dir: str,
                     weights: str | None, images: int) -> None:
    """Checks 1-2 (forward passes only) into `report`, as far as report["checks"] asks."""
    logger.info("1-2/4 inference: dense outputs and the evaluation, both precisions")
    queries, references = data.pairs(config.BATCH_SIZE)
    fp32 = build("inference", config, model_dir, weights)
    with dtype_policy("mixed_float16"):
        fp16 = build("inference", config, model_dir, None, source=fp32)
    if "dense" in report["checks"]:
        report["dense"] = check_dense(dense_outputs(fp32, queries, references),
                                      dense_outputs(fp16, queries, references))
    if "evaluation" in report["checks"]:
        eval32 = timed(report, "evaluation_float32", lambda: evaluate(fp32, data, images))
        eval16 = timed(report, "evaluation_mixed_float16",
                       lambda: evaluate(fp16, data, images))
        report["evaluation"] = check_evaluation(eval32, eval16)
    keras.backend.clear_session()


def verify_training(report: dict, config: Config, data: Data, model_dir: str,
                    weights: str | None, steps: int, held_out: int, runs: int) -> None:
    """Checks 3-4 (float16 gradients: slow on CPUs without fast float16 kernels) into
    `report`, as far as report["checks"] asks."""
    generator = SiameseDataGenerator(data.train, config, shuffle=True, seed=0, workers=0)
    count = min(len(generator), steps + held_out)
    batches = [generator[i][0] for i in range(count)]
    train_batches, held_batches = batches[:count - held_out], batches[count - held_out:]
    fp32 = build("training", config, model_dir, weights)
    with dtype_policy("mixed_float16"):
        fp16 = build("training", config, model_dir, None, source=fp32)
    if "gradient" in report["checks"]:
        logger.info("3/4 the RPN-loss gradient, both precisions")
        loss32, grads32 = rpn_gradient(fp32, batches[0], 1.0)
        loss16, grads16, scale = scaled_rpn_gradient(fp16, batches[0])
        report["gradient"] = check_gradient(loss32, grads32, loss16, grads16, scale)
    if "training" in report["checks"]:
        logger.info("4/4 %d training steps, %d runs per precision", len(train_batches), runs)
        start_values = {k: keras.ops.convert_to_numpy(v)
                        for k, v in weights_io.weight_map(fp32.keras_model).items()}

        def fresh(model: SiameseMaskRCNN) -> SiameseMaskRCNN:
            for key, variable in weights_io.weight_map(model.keras_model).items():
                variable.assign(start_values[key])
            return model

        results: dict[str, list] = {"float32": [], "mixed_float16": []}
        for _ in range(runs):
            for name, model in (("float32", fp32), ("mixed_float16", fp16)):
                results[name].append(timed(
                    report, f"training_{name}",
                    lambda: train_and_score(fresh(model), train_batches, held_batches)))
        report["training"] = check_training(results["float32"], results["mixed_float16"])
    keras.backend.clear_session()


def table(report: dict) -> str:
    """The report as a markdown table."""
    rows = [("check", "measured", "tolerance", "ok")]
    empty: dict = {"differences": {}, "held_out": {}}
    dense, ev, grad, train = (report.get(k, empty) for k in CHECKS)
    for key, value in dense["differences"].items():
        rows.append((f"dense {key}", f"{value:.2e}", f"<= {dense['tolerances'][key]:g}",
                     value <= dense["tolerances"][key]))
    if "evaluation" in report:
        ap = ev["ap50"]
        for kind in ("bbox", "segm"):
            rows.append((f"AP50 {kind}: float32 / mixed_float16",
                         f"{100 * ap['float32'][kind]:.1f} / "
                         f"{100 * ap['mixed_float16'][kind]:.1f}",
                         f"|diff| <= {100 * TOLERANCES['ap50_abs']:.0f} point",
                         ev["differences"][f"ap50_{kind}_abs"] <= TOLERANCES["ap50_abs"]))
        rows.append(("confident detections found by both",
                     f"{ev['differences']['confident_matched']:.3f}",
                     ev["tolerances"]["confident_matched"],
                     ev["differences"]["confident_matched"]
                     >= TOLERANCES["confident_matched_min"]))
    if "gradient" in report:
        rows.append(("RPN gradient cosine", f"{grad['differences']['gradient_cosine']:.5f}",
                     grad["tolerances"]["gradient_cosine"],
                     grad["differences"]["gradient_cosine"]
                     >= TOLERANCES["gradient_cosine_min"]))
        ratio = grad["differences"]["gradient_norm_ratio"]
        rows.append(("RPN gradient norm ratio", f"{ratio:.4f}",
                     grad["tolerances"]["gradient_norm_ratio"],
                     abs(ratio - 1) <= TOLERANCES["gradient_norm_ratio"]))
    for name, row in train["held_out"].items():
        rows.append((f"after {report['steps']} steps, held-out {name}: fp32 / fp16 "
                     f"(mean of {report['training_runs']} runs)",
                     f"{row['mean_float32']:.4f} / {row['mean_mixed_float16']:.4f}",
                     f"|diff| <= {row['allowed']:.4f}", row["difference"] <= row["allowed"]))
    lines = ["| " + " | ".join(str(c) for c in rows[0]) + " |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(c if isinstance(c, str) else ("yes" if c else "**no**")
                                for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="quickstart", choices=("quickstart", "large"))
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help="a checkpoint (default: the quick start's last)")
    source.add_argument("--random-weights", action="store_true",
                        help="compare untrained weights (not representative: see README)")
    parser.add_argument("--data", help="a generated shapes data set (default: the quick "
                        "start's for --config quickstart, else one generated in a temp dir)")
    parser.add_argument("--images", type=int, default=100, help="val images evaluated")
    parser.add_argument("--steps", type=int, default=10, help="training steps compared")
    parser.add_argument("--held-out", type=int, default=4, help="held-out batches scored")
    parser.add_argument("--runs", type=int, default=3,
                        help="training runs per precision (at least 2 for a spread)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override (repeatable)")
    parser.add_argument("--checks", default=",".join(CHECKS),
                        help="comma-separated checks to run (default all: "
                             f"{','.join(CHECKS)}); gradient and training run float16 "
                             "gradients, which are slow on CPUs without fast float16 kernels")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args(argv)
    args.checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = sorted(set(args.checks) - set(CHECKS))
    if unknown or not args.checks:
        parser.error(f"--checks: expected some of {','.join(CHECKS)}, got "
                     f"{','.join(args.checks) or 'nothing'}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from siamese_mrcnn.cli import parse_set

    args = parse_args(argv)
    if args.runs < 2 or args.steps < 1 or args.images < 1 or args.held_out < 1:
        print("precision.py: expected --runs >= 2 and --steps, --images, --held-out >= 1, "
              f"got {args.runs}, {args.steps}, {args.images}, {args.held_out}",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    weights = None
    if not args.random_weights:
        try:
            weights = args.weights or str(latest_quickstart_checkpoint())
        except FileNotFoundError as error:
            print(f"precision.py: {error}", file=sys.stderr)
            return 2
        if not os.path.isfile(weights):
            print(f"precision.py: --weights {weights}: no such file", file=sys.stderr)
            return 2
    train_config, inference_config = make_configs(args.config, parse_set(args.set))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="precision_") as tmp:
        data_dir = args.data or (str(QUICKSTART_DIR / "data") if args.config == "quickstart"
                                 else os.path.join(tmp, "shapes"))
        data = Data(data_dir, int(inference_config.IMAGE_MAX_DIM), args.images)
        report = verify(train_config, inference_config, data, tmp, weights, args.images,
                        args.steps, args.held_out, args.runs, args.checks)
    report.update(config=args.config, machine=machine_info(), data=data_dir,
                  total_seconds=time.perf_counter() - start)
    write_json(report, args.output, indent=1)
    print(table(report))
    print(f"\nwithin tolerance: {report['within_tolerance']}; report: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
