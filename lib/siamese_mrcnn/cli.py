"""The Siamese Mask R-CNN command line: train, evaluate, detect.

``samples/coco/train_siamese.py`` runs ``main()``. Every step is a function so that the
quick start, the notebooks and the tests drive the same code.
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import logging
import os
import sys
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: The paper's schedules, {end epoch: stage}; learning rates are multiples of the
#: (batch-scaled) config.LEARNING_RATE.
SCHEDULES = {
    "paper": {1: ("heads", 1.0), 120: ("all", 1.0), 160: ("all", 0.1)},
    "full": {1: ("heads", 1.0), 240: ("all", 1.0), 320: ("all", 0.1)},
}
#: Batch size the paper's learning rate was tuned for (1 GPU x 12 / 4 GPUs x 3).
PAPER_BATCH_SIZE = 12
MODEL_CHOICES = "imagenet-687|imagenet-771|imagenet-1k|last|none|PATH.h5"


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


# --------------------------------------------------------------------- config
def parse_set(items: Sequence[str] | None) -> dict:
    """["KEY=VALUE", ...] -> {"KEY": "VALUE"} (values typed later, like the default)."""
    overrides = {}
    for item in items or []:
        if "=" not in item:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value
    return overrides


def _config_class(spec: str, evaluation: bool):
    from siamese_mrcnn import config as sconfig

    if spec.endswith(".py"):
        if not os.path.isfile(spec):
            raise CLIError(f"config file not found: {spec}")
        module_spec = importlib.util.spec_from_file_location("user_config", spec)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        if isinstance(getattr(module, "config", None), sconfig.Config):
            return module.config
        classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
                   if issubclass(c, sconfig.Config) and c.__module__ == module.__name__]
        if not classes:
            raise CLIError(f"{spec}: expected a siamese_mrcnn.config.Config subclass or a "
                           "`config` instance in the file")
        return classes[-1]
    key = spec.lower() + ("_eval" if evaluation else "")
    if key not in sconfig.PRESETS:
        raise CLIError(f"--config must be small, large or a PATH.py, got {spec!r}")
    return sconfig.PRESETS[key]


def build_config(spec: str = "small", overrides: dict | None = None, evaluation: bool = False,
                 **fields: Any):
    """A validated Siamese config from a preset or file, explicit fields, then --set."""
    from siamese_mrcnn.config import config_from_overrides

    merged = {k: v for k, v in fields.items() if v is not None}
    merged.update(overrides or {})
    try:
        return config_from_overrides(_config_class(spec, evaluation), merged)
    except ValueError as error:
        raise CLIError(f"configuration: {error}") from error


# ----------------------------------------------------------------------- data
def load_split_datasets(dataset_dir: str, year: str, split: str, val_images: int,
                        subset: str | None = None):
    """Training/validation (from train{year}) or test (from `subset`) data sets.

    Returns (datasets, one_shot_ids, background_ids). With subset None: the train ids
    sorted, the last val_images are validation; both have the background classes
    active. With a subset: one data set of that subset, all classes active.
    """
    from siamese_mrcnn.coco import IndexedCocoDataset, get_class_split

    if not os.path.isdir(dataset_dir):
        raise CLIError(f"data set directory not found: {dataset_dir}")

    def load(sub, subsubset=None, val_count=0):
        ds = IndexedCocoDataset()
        coco = ds.load_coco(dataset_dir, sub, year=year, return_coco=True,
                            subsubset=subsubset, val_count=val_count)
        ds.prepare()
        return ds, coco

    try:
        if subset is not None:
            ds, coco = load(subset)
            one_shot, background = get_class_split(split, ds.num_classes - 1)
            return [(ds, coco)], one_shot, background
        probe, _ = load("train")
        n = len(probe.image_ids)
        if val_images >= n:
            fallback = max(1, n // 10)
            logger.warning("--val-images %d >= %d training images: using the last %d",
                           val_images, n, fallback)
            val_images = fallback
        train = load("train", "train", val_images)
        val = load("train", "val", val_images)
        one_shot, background = get_class_split(split, train[0].num_classes - 1)
    except (FileNotFoundError, ValueError) as error:
        raise CLIError(str(error)) from error
    for ds, _ in (train, val):
        ds.set_active_classes(background)
    return [train, val], one_shot, background


def resolve_schedule(spec: str, learning_rate: float) -> dict:
    """'paper' | 'full' | PATH.json -> {end_epoch: {"learning_rate", "layers"}}."""
    if spec in SCHEDULES:
        return {end: {"layers": layers, "learning_rate": learning_rate * factor}
                for end, (layers, factor) in SCHEDULES[spec].items()}
    if not os.path.isfile(spec):
        raise CLIError(f"--schedule must be paper, full or a JSON file; not found: {spec}")
    try:
        with open(spec, encoding="utf-8") as f:
            raw = json.load(f)
        return {int(end): {"layers": stage["layers"],
                           "learning_rate": float(stage["learning_rate"])}
                for end, stage in raw.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CLIError(f"{spec}: expected {{\"end_epoch\": {{\"learning_rate\": float, "
                       f"\"layers\": str}}}}, got an error: {error}") from error


# ---------------------------------------------------------------------- model
def init_weights(model, spec: str, schedule: dict | None = None) -> str:
    """Initialises a model from --model; returns a description of what was loaded."""
    spec = spec or "none"
    if spec == "none":
        return "random initialisation"
    try:
        if spec.startswith("imagenet"):
            model.load_imagenet_weights(pretraining=spec)
            return f"ImageNet backbone ({spec})"
        if spec == "last":
            model.load_latest_checkpoint(training_schedule=schedule)
            return f"latest checkpoint (epoch {model.epoch})"
        if not os.path.isfile(spec):
            raise CLIError(f"--model: weights file not found: {spec} (expected "
                           f"{MODEL_CHOICES})")
        if os.path.basename(spec).startswith("siamese_mrcnn_"):
            model.load_checkpoint(spec, training_schedule=schedule)
        else:
            model.load_weights(spec, by_name=True)
        return spec
    except FileNotFoundError as error:
        raise CLIError(str(error)) from error
    except ValueError as error:
        raise CLIError(f"--model {spec}: {error}") from error


# ---------------------------------------------------------------------- train
def cmd_train(args) -> dict:
    from siamese_mrcnn.model import SiameseMaskRCNN

    overrides = parse_set(args.set)
    fields = dict(GPU_COUNT=args.gpus, STEPS_PER_EPOCH=args.steps_per_epoch,
                  VALIDATION_STEPS=args.validation_steps)
    if "EXPERIMENT" not in overrides:
        fields["EXPERIMENT"] = "full" if str(args.split) == "full" else f"i{args.split}"
    config = build_config(args.config, overrides, **fields)
    (train, _), (val, _) = load_split_datasets(args.dataset, args.year, args.split,
                                               args.val_images)[0]
    lr = config.LEARNING_RATE * config.BATCH_SIZE / PAPER_BATCH_SIZE
    schedule = resolve_schedule(args.schedule, lr)
    model = SiameseMaskRCNN("training", config, args.logs)
    source = init_weights(model, args.model, schedule)
    until = args.epochs or max(schedule)
    logger.info("Training %s from %s, epochs %d..%d, lr %.5g (scaled to batch %d), "
                "logs %s", config.EXPERIMENT, source, model.epoch + 1, until, lr,
                config.BATCH_SIZE, model.log_dir)
    augmentation = None
    if args.augment:
        from mrcnn.compat import imgaug_augmenters

        augmentation = imgaug_augmenters().Fliplr(0.5)
    model.train_schedule(train, val, schedule, augmentation=augmentation, until=until)
    checkpoint = model.get_latest_checkpoint()
    logger.info("Done at epoch %d: %s", model.epoch, checkpoint)
    return {"checkpoint": checkpoint, "epoch": model.epoch, "log_dir": model.log_dir}


# ------------------------------------------------------------------- evaluate
CLASS_SETS = ("one-shot", "background", "all")


def cmd_evaluate(args) -> dict:
    from siamese_mrcnn.evaluation import run_evaluation
    from siamese_mrcnn.model import SiameseMaskRCNN

    overrides = parse_set(args.set)
    config = build_config(args.config, overrides, evaluation=True, NUM_TARGETS=args.shots)
    [(dataset, coco)], one_shot, background = load_split_datasets(
        args.dataset, args.year, args.split, 0, subset=args.subset)
    classes = {"one-shot": one_shot, "background": background,
               "all": np.arange(1, dataset.num_classes)}[args.classes]
    if len(classes) == 0:
        raise CLIError(f"--classes {args.classes}: split {args.split} has no such classes")
    dataset.set_active_classes(classes)
    model = SiameseMaskRCNN("inference", config, args.logs)
    if args.model == "last":
        try:
            checkpoint = model.get_latest_checkpoint()
        except FileNotFoundError as error:
            raise CLIError(str(error)) from error
    else:
        checkpoint = args.model
    init_weights(model, checkpoint)
    eval_types = [t.strip() for t in args.eval_type.split(",") if t.strip()]
    try:
        summary = run_evaluation(model, dataset, coco, runs=args.runs, seed=args.seed,
                                 eval_type=eval_types, limit=args.limit,
                                 random_detections=args.random_baseline,
                                 verbose=0 if args.quiet else 1)
    except ValueError as error:
        raise CLIError(str(error)) from error
    results = summary.to_dict()
    results["meta"] = {"checkpoint": checkpoint, "split": str(args.split),
                       "classes": args.classes, "shots": config.NUM_TARGETS,
                       "random_baseline": bool(args.random_baseline), "runs": args.runs}
    print(format_results_table(results))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, default=_json_default)
        logger.info("Wrote %s", args.output)
    return results


def format_results_table(results: dict) -> str:
    """A plain-text table of the main statistics (mean and 95% interval over runs)."""
    names = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
    lines = [f"{'type':6} " + " ".join(f"{n:>16}" for n in names)]
    for eval_type, stats in results["stats"].items():
        cells = []
        for n in names:
            s = stats.get(n)
            cells.append(f"{100 * s['mean']:7.1f} ± {100 * s['half_width']:4.1f}" if s else "-")
        lines.append(f"{eval_type:6} " + " ".join(f"{c:>16}" for c in cells))
    lines.append(f"({results['runs']} run(s); mean ± 95% half interval, in %; "
                 f"{len(results['class_ids'])} categories)")
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# --------------------------------------------------------------------- detect
def read_image(path: str) -> np.ndarray:
    """An RGB uint8 image from disk (grayscale/RGBA converted)."""
    import skimage.io

    from mrcnn.data import check_image

    if not os.path.isfile(path):
        raise CLIError(f"image not found: {path}")
    try:
        return check_image(skimage.io.imread(path), name=path)
    except (ValueError, OSError) as error:
        raise CLIError(f"{path}: {error}") from error


def reference_from_box(spec: str) -> np.ndarray:
    """'IMAGE:x,y,w,h' -> the crop of IMAGE at that box (pixels)."""
    path, _, box = spec.rpartition(":")
    try:
        x, y, w, h = (int(round(float(v))) for v in box.split(","))
    except ValueError as error:
        raise CLIError(f"--reference-box expects IMAGE:x,y,w,h, got {spec!r}") from error
    image = read_image(path)
    crop = image[max(y, 0):y + h, max(x, 0):x + w]
    if min(crop.shape[:2]) < 1 or w <= 0 or h <= 0:
        raise CLIError(f"--reference-box {spec}: the box is empty or outside the "
                       f"{image.shape[1]}x{image.shape[0]} image")
    return crop


def cmd_detect(args) -> dict:
    from siamese_mrcnn.model import SiameseMaskRCNN
    from siamese_mrcnn.visualize import display_results

    if bool(args.reference) == bool(args.reference_box):
        raise CLIError("give exactly one of --reference or --reference-box")
    config = build_config(args.config, parse_set(args.set), evaluation=True,
                          IMAGES_PER_GPU=1, GPU_COUNT=1)
    query = read_image(args.image)
    reference = (read_image(args.reference) if args.reference
                 else reference_from_box(args.reference_box))
    model = SiameseMaskRCNN("inference", config, args.logs)
    init_weights(model, args.model)
    try:
        result = model.detect([[reference] * config.NUM_TARGETS], [query])[0]
    except ValueError as error:
        raise CLIError(str(error)) from error
    keep = result["scores"] >= args.min_score
    result = {k: (v[..., keep] if k == "masks" else v[keep]) for k, v in result.items()}
    summary = {"image": args.image, "detections": [
        {"box_yxyx": [int(v) for v in box], "score": float(score)}
        for box, score in zip(result["rois"], result["scores"])]}
    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, figsize=(8, 8))
        display_results(reference, query, result["rois"], result["masks"],
                        result["class_ids"], result["scores"], ax=ax,
                        title=f"{len(result['scores'])} detections")
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        fig.savefig(args.output, bbox_inches="tight", dpi=100)
        plt.close(fig)
        summary["picture"] = args.output
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    print(f"{len(summary['detections'])} detection(s)"
          + (f"; picture: {args.output}" if args.output else "")
          + (f"; json: {args.json}" if args.json else ""))
    return summary


# ----------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_siamese.py",
        description="Siamese Mask R-CNN (one-shot instance segmentation): train on "
                    "COCO-format data, evaluate with the paper's one-shot protocol, detect "
                    "objects like a reference in a query image.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default="small",
                        help="small | large | PATH.py (a siamese_mrcnn.config.Config "
                             "subclass or a `config` instance); default small")
    common.add_argument("--set", nargs="*", metavar="KEY=VALUE", default=[],
                        help="override config fields, typed like their default "
                             "(e.g. IMAGES_PER_GPU=2 BACKBONE=resnet_tiny "
                             "RPN_ANCHOR_SCALES=(16,32,64,128,256))")
    common.add_argument("--logs", default="logs",
                        help="checkpoint directory root (default ./logs)")
    common.add_argument("--year", default="2017", help="data set year suffix (default 2017)")
    common.add_argument("--split", default="1",
                        help="class split: 1..4 hold out every 4th class; full: none "
                             "(default 1)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", parents=[common], help="train with a schedule, resumable")
    train.add_argument("--dataset", required=True,
                       help="COCO-format root: annotations/instances_train{year}.json, "
                            "train{year}/")
    train.add_argument("--model", default="imagenet-687",
                       help=f"initial weights: {MODEL_CHOICES} (imagenet-* are read from "
                            "config.CHECKPOINT_DIR; last resumes at the next epoch)")
    train.add_argument("--schedule", default="paper",
                       help="paper ({1: heads, 120: all, 160: all lr/10}) | full "
                            "({1: heads, 240: all, 320: all lr/10}) | PATH.json "
                            "({\"end_epoch\": {\"learning_rate\": .., \"layers\": ..}})")
    train.add_argument("--epochs", type=int, default=0,
                       help="train up to this epoch (default: the schedule's end)")
    train.add_argument("--steps-per-epoch", type=int, default=None,
                       help="override STEPS_PER_EPOCH (paper: 1000)")
    train.add_argument("--validation-steps", type=int, default=None,
                       help="override VALIDATION_STEPS")
    train.add_argument("--val-images", type=int, default=3000,
                       help="validation = the last N train images by sorted id (default "
                            "3000, the paper's)")
    train.add_argument("--gpus", type=int, default=None, help="GPU_COUNT (tf.distribute)")
    train.add_argument("--augment", action="store_true", help="random horizontal flips")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", parents=[common],
                              help="the paper's one-shot evaluation protocol")
    evaluate.add_argument("--dataset", required=True, help="COCO-format root")
    evaluate.add_argument("--model", required=True, help="PATH.h5 or last")
    evaluate.add_argument("--subset", default="val", help="subset to test on (default val)")
    evaluate.add_argument("--classes", default="one-shot", choices=CLASS_SETS,
                          help="categories to evaluate (default one-shot)")
    evaluate.add_argument("--runs", type=int, default=5,
                          help="runs with different reference draws (default 5)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the first run")
    evaluate.add_argument("--shots", type=int, default=None,
                          help="references per query at test time (NUM_TARGETS)")
    evaluate.add_argument("--limit", type=int, default=0,
                          help="evaluate on the first N images only (0: all)")
    evaluate.add_argument("--eval-type", default="bbox,segm",
                          help="bbox, segm or bbox,segm (default)")
    evaluate.add_argument("--random-baseline", action="store_true",
                          help="random boxes: detections moved at random (SPEC §7)")
    evaluate.add_argument("--output", default=None, help="write the results JSON here")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=cmd_evaluate)

    detect = sub.add_parser("detect", parents=[common],
                            help="find objects like a reference in a query image")
    detect.add_argument("--model", required=True, help="weights PATH.h5")
    detect.add_argument("--image", required=True, help="query image")
    detect.add_argument("--reference", default=None, help="reference image")
    detect.add_argument("--reference-box", default=None, metavar="IMAGE:x,y,w,h",
                        help="reference cropped from IMAGE at box x,y,w,h (pixels)")
    detect.add_argument("--min-score", type=float, default=0.0,
                        help="drop detections below this score")
    detect.add_argument("--output", default=None, help="picture with the detections (PNG)")
    detect.add_argument("--json", default=None, help="detections as JSON")
    detect.set_defaults(func=cmd_detect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except CLIError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch's checkpoint is kept", file=sys.stderr)
        return 130
    return 0
