#!/usr/bin/env python
"""The quick start (`make demo`): one-shot instance segmentation end to end on CPU.

1. generates the shapes data set (cached): 24 categories, split 1 holds out every 4th;
2. trains a small Siamese Mask R-CNN on the background categories only (resumable);
3. evaluates with the paper's protocol on the held-out (one-shot) categories, on the
   background categories, and the random-boxes baseline on the one-shot categories;
4. writes results.json (AP50 as fractions) and a picture of one-shot detections.
5. exports the model (a TensorFlow SavedModel; skipped under another Keras backend)
   and searches the val images with it for one held-out category.

Everything goes under --out (default runs/quickstart). Re-running reuses the data set and
continues training from the last checkpoint.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
for path in (os.path.join(ROOT, "lib"), ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

import numpy as np  # noqa: E402

from mrcnn.cli_support import int_option  # noqa: E402 (stdlib only)
from siamese_mrcnn.config import QUICKSTART_FIELDS  # noqa: E402

logger = logging.getLogger("quickstart")

#: The CPU-sized model of the quick start: the "quickstart" preset's fields (data in
#: siamese_mrcnn.config, overrides of the paper's "small" preset).
QUICKSTART_CONFIG = QUICKSTART_FIELDS

PROFILES = {
    # name: data set size, epochs x steps, evaluation images and runs
    "default": dict(train=2000, val=300, epochs=12, steps=100, eval_images=200, runs=3),
    "long": dict(train=3000, val=300, epochs=24, steps=100, eval_images=300, runs=5),
    "quick": dict(train=60, val=24, epochs=1, steps=4, eval_images=8, runs=1),
}


def build_configs(overrides: dict | None = None):
    """(training config, inference config) of the quick start.

    overrides: {"FIELD": value} on top of QUICKSTART_CONFIG (strings are parsed like
        --set values); they apply to both configs, except that evaluation always runs
        4 images per batch (GPU_COUNT 1). Unknown fields or bad values: ValueError.
    """
    from siamese_mrcnn.config import preset

    overrides = dict(overrides or {})
    train_config = preset("quickstart", **overrides)
    inference_config = preset("quickstart_eval", **dict(overrides, IMAGES_PER_GPU=4,
                                                        GPU_COUNT=1))
    return train_config, inference_config


def training_schedule(epochs: int, learning_rate: float) -> dict:
    """The paper's two stages, scaled to ``epochs``: all layers at ``learning_rate`` for
    the first four fifths, then at a tenth of it (a single stage when epochs is 1).

    Returns {end epoch: {"learning_rate", "layers"}} with distinct end epochs.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected an integer >= 1, got {epochs!r}")
    if epochs == 1:
        return {1: {"learning_rate": learning_rate, "layers": "all"}}
    # At least one epoch in each stage: round(0.8 * 2) would end stage one at epoch 2.
    decay_at = min(epochs - 1, max(1, int(round(epochs * 0.8))))
    return {decay_at: {"learning_rate": learning_rate, "layers": "all"},
            epochs: {"learning_rate": learning_rate / 10, "layers": "all"}}


def train(data_dir: str, logs: str, config, epochs: int, steps: int, val_images: int):
    """Trains on the background categories of split 1; resumes from the last checkpoint
    (and trains no further when it is at ``epochs`` already)."""
    from siamese_mrcnn.cli import load_split_datasets
    from siamese_mrcnn.model import SiameseMaskRCNN

    [(train_ds, _), (val_ds, _)], one_shot, background = load_split_datasets(
        data_dir, "2017", "1", val_images)
    config.STEPS_PER_EPOCH = steps
    model = SiameseMaskRCNN("training", config, logs)
    try:
        model.load_latest_checkpoint()
        logger.info("Resuming from epoch %d", model.epoch)
    except FileNotFoundError:
        logger.info("Training from scratch: %d background categories %s, %d held out %s",
                    len(background), background.tolist(), len(one_shot), one_shot.tolist())
    if model.epoch >= epochs:
        logger.info("Training done already (epoch %d of %d): nothing to do", model.epoch,
                    epochs)
    else:
        schedule = training_schedule(epochs, config.LEARNING_RATE)
        model.train_schedule(train_ds, val_ds, schedule, until=epochs)
    return model.get_latest_checkpoint(), one_shot, background


def evaluate(data_dir: str, checkpoint: str, config, one_shot, background, eval_images: int,
             runs: int, out_dir: str) -> dict:
    """The paper's protocol on val2017: one-shot, background, random baseline."""
    from siamese_mrcnn.coco import IndexedCocoDataset
    from siamese_mrcnn.evaluation import run_evaluation
    from siamese_mrcnn.model import SiameseMaskRCNN

    dataset = IndexedCocoDataset()
    coco = dataset.load_coco(data_dir, "val", year="2017", return_coco=True)
    dataset.prepare()
    model = SiameseMaskRCNN("inference", config, os.path.join(out_dir, "logs"))
    model.load_weights(checkpoint, by_name=True)

    results, details = {}, {}
    settings = [("one_shot", one_shot, False), ("background", background, False),
                ("random", one_shot, True)]
    for name, classes, random_boxes in settings:
        dataset.set_active_classes(classes)
        logger.info("Evaluating %s (%d categories%s), %d run(s)", name, len(classes),
                    ", random boxes" if random_boxes else "", runs)
        summary = run_evaluation(model, dataset, coco, runs=runs, seed=0,
                                 eval_type=("bbox", "segm"), limit=eval_images,
                                 random_detections=random_boxes)
        for eval_type, suffix in (("bbox", ""), ("segm", "_segm")):
            mean, low, high = summary.interval("AP50", eval_type)
            if mean < 0:
                logger.warning("%s %s: no ground truth among the %d evaluated images "
                               "(COCO reports -1)", name, eval_type, eval_images)
            results[f"{name}_ap50{suffix}"] = mean
            results[f"{name}_ap50{suffix}_interval"] = [low, high]
        details[name] = summary.to_dict()
    results["details"] = details
    return results


def draw_examples(data_dir: str, checkpoint: str, config, one_shot, path: str,
                  count: int = 6, seed: int = 1) -> str | None:
    """A grid of one-shot detections (held-out categories), reference inset, as PNG.
    Returns the path, or None when no val image holds a held-out category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from siamese_mrcnn.coco import IndexedCocoDataset
    from siamese_mrcnn.data import get_one_target
    from siamese_mrcnn.model import SiameseMaskRCNN
    from siamese_mrcnn.visualize import display_grid
    from siamese_mrcnn.config import config_from_overrides

    config = config_from_overrides(config, {"IMAGES_PER_GPU": 1})
    dataset = IndexedCocoDataset()
    dataset.load_coco(data_dir, "val", year="2017")
    dataset.prepare()
    model = SiameseMaskRCNN("inference", config, os.path.dirname(path))
    model.load_weights(checkpoint, by_name=True)
    rng = np.random.default_rng(seed)
    refs, images, results = [], [], []
    held_out = set(int(c) for c in one_shot)
    for image_id in rng.permutation(dataset.image_ids):
        present = [c for c in dataset.image_category_index[image_id] if c in held_out]
        if not present:
            continue
        category = int(rng.choice(present))
        reference = get_one_target(category, dataset, config, exclude_image_id=image_id,
                                   rng=rng)
        image = dataset.load_image(image_id)
        r = model.detect([[reference]], [image])[0]
        keep = r["scores"] >= 0.7
        refs.append(reference)
        images.append(image)
        results.append({k: (v[..., keep] if k == "masks" else v[keep]) for k, v in r.items()})
        if len(images) == count:
            break
    if not images:
        logger.warning("No val image holds a held-out category: no picture drawn")
        return None
    display_grid(refs, images, [r["rois"] for r in results],
                   [r["masks"] for r in results], [r["class_ids"] for r in results],
                   [r["scores"] for r in results], save=path)
    plt.close("all")
    return path


def export_and_search(data_dir: str, checkpoint: str, config, one_shot, out: str,
                      seed: int = 2) -> dict:
    """The deployment path: exports the trained model (a SavedModel that takes raw
    images), then searches the val images with it for one held-out category, given one
    reference cut from a val image. Writes OUT/exported/ and OUT/search/ (reference.png,
    results.jsonl, contact_sheet.png); returns the search summary."""
    import shutil

    from PIL import Image

    from mrcnn import utils
    from siamese_mrcnn.coco import IndexedCocoDataset
    from siamese_mrcnn.config import config_from_overrides
    from siamese_mrcnn.model import SiameseMaskRCNN
    from siamese_mrcnn.search import ExportedModel, list_images, search_collection

    exported, found = os.path.join(out, "exported"), os.path.join(out, "search")
    for folder in (exported, found):  # this run's model, not an earlier one's
        shutil.rmtree(folder, ignore_errors=True)
    model = SiameseMaskRCNN("inference", config_from_overrides(config, {"IMAGES_PER_GPU": 1}),
                            os.path.join(out, "logs"))
    model.load_weights(checkpoint, by_name=True)
    model.export(exported)

    dataset = IndexedCocoDataset()
    dataset.load_coco(data_dir, "val", year="2017")
    dataset.prepare()
    rng = np.random.default_rng(seed)
    category = int(rng.choice([int(c) for c in one_shot
                               if len(dataset.category_image_index[int(c)])]))
    image_id = int(rng.choice(dataset.category_image_index[category]))
    masks, class_ids = dataset.load_mask(image_id)
    y1, x1, y2, x2 = utils.extract_bboxes(masks)[
        int(rng.choice(np.flatnonzero(class_ids == category)))]
    crop = dataset.load_image(image_id)[y1:y2, x1:x2]
    os.makedirs(found)
    Image.fromarray(crop.astype(np.uint8)).save(os.path.join(found, "reference.png"))
    files = list_images(os.path.join(data_dir, "val2017"))
    summary = search_collection(ExportedModel(exported), crop, files, found,
                                min_score=0.7, top=16, progress=False)
    summary.update({"category": dataset.class_info[category]["name"],
                    "exported": exported})
    return summary


def table_cell(mean: float, interval) -> str:
    """'mean [low, high]' in percent; COCO's -1 (no ground truth evaluated) as n/a."""
    if mean < 0:
        return "n/a (no ground truth)"
    low, high = interval
    return f"{100 * mean:5.1f} [{100 * low:5.1f}, {100 * high:5.1f}]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/quickstart", help="output directory")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES),
                        help="default (~15 min on 2 CPU cores), long (the accuracy "
                             "benchmark's budget), quick (a smoke test)")
    parser.add_argument("--epochs", type=int_option(1), help="override the profile's epochs")
    parser.add_argument("--steps", type=int_option(1),
                        help="override the profile's steps per epoch")
    parser.add_argument("--runs", type=int_option(1),
                        help="override the profile's evaluation runs")
    parser.add_argument("--eval-images", type=int_option(1),
                        help="override the profile's number of evaluation images")
    parser.add_argument("--seed", type=int_option(0), default=0, help="data set seed")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides on top of the quick-start model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from mrcnn.cli_support import run_command

    profile = dict(PROFILES[args.profile])
    for key in ("epochs", "steps", "runs", "eval_images"):
        if getattr(args, key) is not None:
            profile[key] = getattr(args, key)
    return run_command(
        lambda: run(args, profile), prefix="error",
        interrupted="interrupted: run the same command again to continue from the last "
                    "checkpoint")


def run(args: argparse.Namespace, profile: dict) -> None:
    """The five steps under args.out, then the AP50 table. Bad inputs (a --out that is or
    lies under a file) raise CLIError; a full disk is an OSError (main reports either in
    one line)."""
    from siamese_mrcnn.analysis import save_json
    from mrcnn.cli_support import CLIError, check_output, parse_set

    from samples.shapes.generate import generate_dataset

    overrides = parse_set(args.set)
    # Before anything is written: a bad --set fails at once.
    try:
        train_config, inference_config = build_configs(overrides)
    except ValueError as error:
        raise CLIError(f"--set: {error}") from error
    out = os.path.abspath(check_output(args.out, "--out"))
    os.makedirs(out, exist_ok=True)
    started = time.time()
    timings = {}
    data_dir = os.path.join(out, "data")
    t = time.time()
    try:
        generate_dataset(data_dir, profile["train"], profile["val"], seed=args.seed,
                         size=128)
    except ValueError as error:
        raise CLIError(f"data set: {error}") from error
    timings["data_s"] = time.time() - t

    t = time.time()
    val_images = max(1, profile["train"] // 20)
    checkpoint, one_shot, background = train(
        data_dir, os.path.join(out, "logs"), train_config, profile["epochs"],
        profile["steps"], val_images)
    timings["train_s"] = time.time() - t

    t = time.time()
    results = evaluate(data_dir, checkpoint, inference_config, one_shot, background,
                       profile["eval_images"], profile["runs"], out)
    timings["evaluate_s"] = time.time() - t
    picture = draw_examples(data_dir, checkpoint, inference_config, one_shot,
                            os.path.join(out, "one_shot_detections.png"))
    from mrcnn import backend_ops

    search, skipped = None, None  # the export is a TensorFlow SavedModel
    try:
        backend_ops.require_tensorflow(backend_ops.EXPORT_NEEDS)
    except ValueError as error:
        skipped = str(error)
    if skipped is None:
        t = time.time()
        search = export_and_search(data_dir, checkpoint, inference_config, one_shot, out)
        timings["export_search_s"] = time.time() - t
    timings["total_s"] = time.time() - started
    import keras

    results.update({
        # The backend that ran this invocation: a rerun under another backend resumes
        # the same checkpoints (they load on any backend) and writes its own name here.
        "backend": keras.backend.backend(),
        "checkpoint": checkpoint, "picture": picture, "profile": args.profile,
        "budget": profile, "one_shot_classes": [int(c) for c in one_shot],
        "background_classes": [int(c) for c in background], "timings": timings,
        "config": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in QUICKSTART_CONFIG.items()},
        "overrides": overrides, "search": search,
    })
    # Atomic: make app and the tests read it; a kill must not leave half a file.
    save_json(results, os.path.join(out, "results.json"), indent=2, default=float)
    rows = [("one-shot (held-out categories)", "one_shot"),
            ("background (trained categories)", "background"),
            ("random boxes (one-shot categories)", "random")]
    print("\nAP50 (%), mean over {} run(s) [95% interval]".format(profile["runs"]))
    print(f"{'':38} {'boxes':>22} {'masks':>22}")
    for label, key in rows:
        cells = [table_cell(results[f"{key}_ap50{suffix}"],
                            results[f"{key}_ap50{suffix}_interval"])
                 for suffix in ("", "_segm")]
        print(f"{label:38} {cells[0]:>22} {cells[1]:>22}")
    if skipped is not None:
        print(f"\nexport and search: skipped: {skipped}")
    else:
        from siamese_mrcnn.search import summary_line

        print(f"\nexported model: {search['exported']} (train_siamese.py search --model "
              f"it)\nsearch for a {search['category']} (held out) in the val images: "
              f"{summary_line(search)}")
    print(f"\nresults: {os.path.join(out, 'results.json')}\npicture: {picture}\n"
          f"total {timings['total_s'] / 60:.1f} min")
    if search is not None:
        print(f"try it in a web page: make app (python -m siamese_mrcnn.app --model "
              f"{search['exported']} --images {os.path.join(out, 'data', 'val2017')})")


if __name__ == "__main__":
    sys.exit(main())
