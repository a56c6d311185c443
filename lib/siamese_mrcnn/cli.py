"""The Siamese Mask R-CNN command line: train, evaluate, detect, search, export.

``samples/coco/train_siamese.py`` runs ``main()``. Every step is a function so that the
quick start, the notebooks and the tests drive the same code.

Each command checks its arguments (configuration, data set files, split, weights path,
images) before TensorFlow is imported and a model is built, so that a user error costs a
second and reads as one ``error: ...`` line, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Sequence

import numpy as np

from mrcnn.cli_support import (CLIError, add_set_option, check_output,  # noqa: F401
                               parse_set, run_command, user_input)
# What the subcommands read (--config, --dataset/--split, --schedule, --model), re-exported
# under their old names.
from siamese_mrcnn.cli_inputs import (EVAL_TYPES, MODEL_CHOICES,  # noqa: F401
                                      annotation_file, build_config, check_model_spec,
                                      check_split, init_weights, json_default,
                                      load_inference_model, load_split_datasets, parse_eval_types,
                                      resolve_schedule, run_names)
from siamese_mrcnn.cli_report import add_report_parser

logger = logging.getLogger(__name__)

CLASS_SETS = ("one-shot", "background", "all")


# ---------------------------------------------------------------------- train
def cmd_train(args) -> dict:
    """Trains with the schedule up to --epochs; resumes from --model last."""
    from siamese_mrcnn.config import PAPER_BATCH_SIZE, SCHEDULES, paper_learning_rate

    from mrcnn.multi_worker import distribution_from_env

    overrides = parse_set(args.set)
    split = check_split(args.split)
    try:  # TF_CONFIG set: multi-worker training (mrcnn.multi_worker)
        distribution = distribution_from_env()
    except ValueError as error:
        raise CLIError(str(error)) from error
    config = build_config(args.config, overrides, GPU_COUNT=args.gpus,
                          STEPS_PER_EPOCH=args.steps_per_epoch,
                          VALIDATION_STEPS=args.validation_steps,
                          DISTRIBUTION=distribution, **run_names(args.config, split))
    if args.val_images < 1:
        raise CLIError(f"--val-images must be >= 1, got {args.val_images}")
    if args.epochs < 0:
        raise CLIError(f"--epochs must be >= 0 (0: the schedule's end), got {args.epochs}")
    annotation_file(args.dataset, "train", args.year)
    check_model_spec(args.model)
    check_output(args.logs, "--logs")
    lr = paper_learning_rate(config)
    schedule = resolve_schedule(args.schedule, lr)
    until = args.epochs or max(schedule)
    if until > max(schedule):
        raise CLIError(f"--epochs {until} is past the end of the schedule "
                       f"(epoch {max(schedule)})")

    from siamese_mrcnn.model import SiameseMaskRCNN

    with user_input("train"):  # e.g. a backend that cannot train, a GPU_COUNT mismatch
        model = SiameseMaskRCNN("training", config, args.logs)
    # A multi-worker run's other tasks take the chief's weights and epoch instead.
    source = init_weights(model, args.model, schedule) if model.is_chief else "the chief's"
    model.sync_workers()
    if model.epoch >= until:
        message = (f"already trained to epoch {model.epoch} (asked for {until}): "
                   "nothing to do")
        logger.info("%s", message)
        print(message)
        return {"checkpoint": source, "epoch": model.epoch, "log_dir": model.log_dir}
    # Weights first: `nothing to do` above must not wait for a large annotation file.
    (train, _), (val, _) = load_split_datasets(args.dataset, args.year, split,
                                               args.val_images)[0]
    rates = (f"LEARNING_RATE x BATCH_SIZE {config.BATCH_SIZE} / {PAPER_BATCH_SIZE} = {lr:.5g}"
             if args.schedule in SCHEDULES else f"from {args.schedule}")
    logger.info("Training %s: epoch %d to %d, weights %s, %d training / %d validation "
                "images, learning rate %s, logs %s", config.EXPERIMENT, model.epoch + 1,
                until, source, len(train.image_ids), len(val.image_ids), rates, model.log_dir)
    augmentation = None
    if args.augment:
        from mrcnn.compat import imgaug_augmenters

        augmentation = imgaug_augmenters().Fliplr(0.5)
    model.train_schedule(train, val, schedule, augmentation=augmentation, until=until)
    checkpoint = model.get_latest_checkpoint() if model.is_chief else "the chief's"
    logger.info("Done at epoch %d: %s", model.epoch, checkpoint)
    print(f"trained to epoch {model.epoch}: {checkpoint}")
    return {"checkpoint": checkpoint, "epoch": model.epoch, "log_dir": model.log_dir}


# ------------------------------------------------------------------- evaluate


def evaluation_dataset(args, split: str):
    """The --dataset/--subset data set with the --classes of ``split`` active."""
    [(dataset, coco)], one_shot, background = load_split_datasets(
        args.dataset, args.year, split, 0, subset=args.subset)
    classes = {"one-shot": one_shot, "background": background,
               "all": np.arange(1, dataset.num_classes)}[args.classes]
    if len(classes) == 0:
        raise CLIError(f"--classes {args.classes}: split {split} has no such classes")
    dataset.set_active_classes(classes)
    return dataset, coco


def cmd_evaluate(args) -> dict:
    """The paper's one-shot protocol; prints a table, writes the JSON of --output.
    --shard I/N writes one part instead; --merge computes the table from all parts."""
    overrides = parse_set(args.set)
    split = check_split(args.split)
    if args.output:  # the JSON (or a shard's part file), also of --merge
        check_output(args.output, "--output", "file")
    if args.merge:
        return merge_evaluation(args, split)
    eval_types = parse_eval_types(args.eval_type)
    if args.runs < 1:
        raise CLIError(f"--runs must be >= 1, got {args.runs}")
    if args.limit < 0:
        raise CLIError(f"--limit must be >= 0 (0: all images), got {args.limit}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    shard = None
    if args.shard:
        from siamese_mrcnn.shards import parse_shard

        with user_input("--shard"):
            shard = parse_shard(args.shard)
        if args.random_baseline:
            raise CLIError("--shard: the random-boxes baseline cannot be sharded (its boxes "
                           "depend on the batches); evaluate it in one process")
        if not args.output:
            raise CLIError("--shard needs --output (the part file, e.g. part0.json)")
    if not args.model:
        raise CLIError("evaluate needs --model (or --merge with the part files)")
    config = build_config(args.config, overrides, evaluation=True, NUM_TARGETS=args.shots,
                          **run_names(args.config, split))
    check_model_spec(args.model)
    dataset, coco = evaluation_dataset(args, split)

    from siamese_mrcnn.evaluation import run_evaluation
    from siamese_mrcnn.model import SiameseMaskRCNN

    model = SiameseMaskRCNN("inference", config, args.logs)
    checkpoint = init_weights(model, args.model)
    meta = {"checkpoint": checkpoint, "dataset": args.dataset,
            "subset": args.subset, "split": split, "classes": args.classes,
            "shots": config.NUM_TARGETS, "limit": args.limit,
            "random_baseline": bool(args.random_baseline), "runs": args.runs,
            "seed": args.seed, "overrides": overrides}
    if shard is not None:
        from siamese_mrcnn.shards import evaluate_shard, write_shard

        part = evaluate_shard(model, dataset, shard, runs=args.runs, seed=args.seed,
                              eval_type=eval_types, limit=args.limit,
                              verbose=0 if args.quiet else 1)
        part["meta"] = meta
        write_shard(part, args.output)
        done = len(part["run_records"][0]["pairs"]) + len(part["run_records"][0]["skipped"])
        print(f"shard {shard[0]}/{shard[1]}: {done} of {part['total_pairs']} pairs x "
              f"{args.runs} run(s); wrote {args.output} (merge all {shard[1]} with "
              "evaluate --merge)")
        return part
    try:
        summary = run_evaluation(model, dataset, coco, runs=args.runs, seed=args.seed,
                                 eval_type=eval_types, limit=args.limit,
                                 random_detections=args.random_baseline,
                                 verbose=0 if args.quiet else 1)
    except ValueError as error:
        raise CLIError(str(error)) from error
    results = summary.to_dict()
    results["meta"] = meta
    return report_evaluation(results, args.output)


def merge_evaluation(args, split: str) -> dict:
    """evaluate --merge part0.json ...: the statistics of the sharded evaluation."""
    from siamese_mrcnn.shards import merge_shards, read_shard

    with user_input("--merge"):
        shards = [read_shard(path) for path in args.merge]
    dataset, coco = evaluation_dataset(args, split)
    with user_input("--merge"):
        summary = merge_shards(shards, dataset, coco, verbose=0 if args.quiet else 1,
                               names=args.merge)
    results = summary.to_dict()
    results["meta"] = dict(shards[0].get("meta", {}), merged=list(args.merge))
    return report_evaluation(results, args.output)


def report_evaluation(results: dict, output: str | None) -> dict:
    """Prints the table; writes the JSON to ``output`` (temporary name, then renamed)."""
    print(format_results_table(results))
    if output:
        from siamese_mrcnn.analysis import save_json

        save_json(results, output, default=json_default)
        logger.info("Wrote %s", output)
    return results


def format_results_table(results: dict) -> str:
    """A plain-text table of the main statistics: mean ± 95% half interval over the runs,
    in %; 'n/a' where COCO has no value (-1: no ground truth of that size)."""
    names = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
    lines = [f"{'type':6} " + " ".join(f"{n:>14}" for n in names)]
    for eval_type, stats in results["stats"].items():
        cells = []
        for n in names:
            s = stats.get(n)
            if not s or s["mean"] == -1:
                cells.append("n/a")
            else:
                cells.append(f"{100 * s['mean']:5.1f} ± {100 * s['half_width']:4.1f}")
        lines.append(f"{eval_type:6} " + " ".join(f"{c:>14}" for c in cells))
    lines.append(f"({results['runs']} run(s); mean ± 95% half interval, in %; "
                 f"{len(results['class_ids'])} categories)")
    return "\n".join(lines)




# --------------------------------------------------------------------- detect
def read_image(path: str) -> np.ndarray:
    """An RGB image [H, W, 3] from disk (grayscale repeated, alpha dropped)."""
    from siamese_mrcnn.search import read_rgb

    if not os.path.isfile(path):
        raise CLIError(f"image not found: {path}")
    try:
        return read_rgb(path)
    except (ValueError, OSError) as error:
        raise CLIError(str(error)) from error


def reference_from_box(spec: str) -> np.ndarray:
    """'IMAGE:x,y,w,h' -> the crop of IMAGE at that box (pixels, clipped to the image)."""
    path, sep, box = spec.rpartition(":")
    parts = box.split(",")
    expected = f"--reference-box expects IMAGE:x,y,w,h (pixels), got {spec!r}"
    if not sep or not path or len(parts) != 4:
        raise CLIError(expected)
    try:
        x, y, w, h = (int(round(float(v))) for v in parts)
    except (ValueError, OverflowError) as error:
        raise CLIError(expected) from error
    if w <= 0 or h <= 0:
        raise CLIError(f"--reference-box {spec}: width and height must be > 0")
    image = read_image(path)
    crop = image[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)]
    if min(crop.shape[:2]) < 1:
        raise CLIError(f"--reference-box {spec}: the box is outside the "
                       f"{image.shape[1]}x{image.shape[0]} image")
    return crop


def check_min_score(args) -> None:
    """--min-score is a score in [0, 1] (50, meant as percent, kept nothing, silently)."""
    if not 0 <= args.min_score <= 1:  # NaN fails too
        raise CLIError(f"--min-score must be in [0, 1], got {args.min_score}")


def check_one_reference(args) -> None:
    """--reference and --reference-box: exactly one (detect, search)."""
    if bool(args.reference) == bool(args.reference_box):
        raise CLIError("give exactly one of --reference or --reference-box")


def read_reference(args) -> np.ndarray:
    """The reference image of --reference, or the crop of --reference-box."""
    return (read_image(args.reference) if args.reference
            else reference_from_box(args.reference_box))


def inference_config(args, **forced):
    """The evaluation config of --config / --split / --set, with ``forced`` fields over
    --set (detect, search, export)."""
    overrides = parse_set(args.set)
    split = check_split(args.split)
    return build_config(args.config, dict(overrides, **forced), evaluation=True,
                        **run_names(args.config, split))


def cmd_detect(args) -> dict:
    """Detects the objects like the reference in the query; writes a picture and JSON."""
    check_one_reference(args)
    check_min_score(args)
    # One query at a time, whatever the configuration trained with.
    config = inference_config(args, IMAGES_PER_GPU=1, GPU_COUNT=1)
    check_model_spec(args.model)
    for option, path in (("--output", args.output), ("--json", args.json)):
        if path:
            check_output(path, option, "file")
    query = read_image(args.image)
    reference = read_reference(args)

    from siamese_mrcnn.model import SiameseMaskRCNN

    model = SiameseMaskRCNN("inference", config, args.logs)
    checkpoint = init_weights(model, args.model)
    try:
        result = model.detect([[reference] * config.NUM_TARGETS], [query])[0]
    except ValueError as error:
        raise CLIError(str(error)) from error
    keep = result["scores"] >= args.min_score
    result = {k: (v[..., keep] if k == "masks" else v[keep]) for k, v in result.items()}
    summary = {"image": args.image, "reference": args.reference or args.reference_box,
               "model": checkpoint, "detections": _detections_json(result)}
    if args.output:
        _save_picture(args.output, reference, query, result)
        summary["picture"] = args.output
    if args.json:
        from siamese_mrcnn.analysis import save_json

        save_json(summary, args.json)  # temp name, then renamed
    print(f"{len(summary['detections'])} detection(s)"
          + (f"; picture: {args.output}" if args.output else "")
          + (f"; json: {args.json}" if args.json else ""))
    return summary


def _detections_json(result: dict) -> list:
    """[{box_yxyx, score, mask_pixels}] of one detect() result (no masks: no pixels)."""
    masks = np.asarray(result["masks"])
    with_masks = masks.ndim == 3 and masks.shape[-1] == len(result["scores"])
    detections = []
    for i, (box, score) in enumerate(zip(result["rois"], result["scores"])):
        detection = {"box_yxyx": [int(v) for v in box], "score": float(score)}
        if with_masks:
            detection["mask_pixels"] = int(masks[..., i].sum())
        detections.append(detection)
    return detections


def _save_picture(path: str, reference: np.ndarray, query: np.ndarray, result: dict) -> None:
    """The query with its detections, the reference inset beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from siamese_mrcnn.visualize import display_results

    fig, ax = plt.subplots(1, figsize=(8, 8))
    display_results(reference, query, result["rois"], result["masks"], result["class_ids"],
                    result["scores"], ax=ax, title=f"{len(result['scores'])} detections")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------- search
def cmd_search(args) -> dict:
    """Searches a folder (or glob) of images for objects like one reference."""
    from siamese_mrcnn.search import list_images, search_collection, summary_line

    check_one_reference(args)
    check_min_score(args)
    if args.batch < 1:
        raise CLIError(f"--batch must be >= 1, got {args.batch}")
    if args.top < 0:
        raise CLIError(f"--top must be >= 0, got {args.top}")
    check_output(args.output, "--output")
    exported = os.path.isdir(args.model)
    config = inference_config(args, IMAGES_PER_GPU=args.batch, GPU_COUNT=1)
    if not exported:
        check_model_spec(args.model, exports=True)
    try:
        files = list_images(args.images)
    except ValueError as error:
        raise CLIError(str(error)) from error
    reference = read_reference(args)
    from siamese_mrcnn.reference import MIN_REFERENCE_SIDE  # imports TensorFlow

    if min(reference.shape[:2]) < MIN_REFERENCE_SIDE:
        raise CLIError(f"the reference is {reference.shape[0]}x{reference.shape[1]} pixels; "
                       f"expected at least {MIN_REFERENCE_SIDE}x{MIN_REFERENCE_SIDE}")

    # A SavedModel from `export` takes no --config, --set or --batch.
    model, checkpoint = load_inference_model(args.model, config, args.logs)
    try:
        summary = search_collection(model, reference, files, args.output,
                                    min_score=args.min_score, top=args.top,
                                    progress=not args.quiet)
    except ValueError as error:  # a results.jsonl that is not ours, a bad reference
        raise CLIError(str(error)) from error
    summary["model"] = checkpoint
    print(summary_line(summary))
    return summary


# --------------------------------------------------------------------- export
def cmd_export(args) -> dict:
    """Writes a TensorFlow SavedModel that takes raw images (siamese_mrcnn.export)."""
    from mrcnn import backend_ops  # keras: not imported for --help

    try:  # before the model is built
        backend_ops.require_tensorflow(backend_ops.EXPORT_NEEDS)
    except ValueError as error:
        raise CLIError(str(error)) from error
    if args.shots is not None and args.shots < 1:
        raise CLIError(f"--shots must be >= 1, got {args.shots}")
    if os.path.exists(args.output):
        raise CLIError(f"--output {args.output} exists already; choose a new folder")
    check_output(args.output, "--output")  # e.g. under a file: TensorFlow's traceback
    shots = {} if args.shots is None else {"NUM_TARGETS": args.shots}
    config = inference_config(args, IMAGES_PER_GPU=1, GPU_COUNT=1, **shots)
    check_model_spec(args.model)

    from siamese_mrcnn.model import SiameseMaskRCNN

    model = SiameseMaskRCNN("inference", config, args.logs)
    checkpoint = init_weights(model, args.model)
    try:
        path = model.export(args.output)
    except (ValueError, FileExistsError) as error:
        raise CLIError(str(error)) from error
    print(f"exported {checkpoint} ({config.NUM_TARGETS}-shot) to {path}: signatures "
          "serving_default, encode_reference, detect_with_reference")
    return {"model": checkpoint, "output": path, "shots": config.NUM_TARGETS}


# ----------------------------------------------------------------------- main
def build_parser(prog: str = "train_siamese.py") -> argparse.ArgumentParser:
    """The argument parser of train | evaluate | detect | search | export | report."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Siamese Mask R-CNN (one-shot instance segmentation): train on "
                    "COCO-format data, evaluate with the paper's one-shot protocol, detect "
                    "objects like a reference in a query image. User errors print one "
                    "'error: ...' line and exit with status 2.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default="small",
                        help="small | large (the paper's) | tiny | quickstart (CPU sizes) | "
                             "PATH.py (a file with a `config` instance or one "
                             "siamese_mrcnn.config.Config subclass); default small "
                             "(evaluate and detect use its _eval variant)")
    add_set_option(common)
    common.add_argument("--logs", default="logs",
                        help="checkpoint directory root (default ./logs); a run's "
                             "checkpoints are logs/siamese_{MODEL}_{NAME}_{EXPERIMENT}/"
                             "siamese_mrcnn_####.h5, EXPERIMENT i{split} by default")
    common.add_argument("--year", default="2017", help="data set year suffix (default 2017)")
    common.add_argument("--split", default="1",
                        help="class split: 1|2|3|4 hold out every 4th class starting at "
                             "that one (the one-shot classes); full: none (default 1)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", parents=[common], help="train with a schedule, resumable",
                           description="Train on the background classes of --split with a "
                                       "schedule, up to --epochs; a checkpoint per epoch; "
                                       "each loss is shown per step.")
    train.add_argument("--dataset", required=True,
                       help="COCO-format root: annotations/instances_train{year}.json, "
                            "train{year}/")
    train.add_argument("--model", default="imagenet-687",
                       help=f"initial weights: {MODEL_CHOICES} (default imagenet-687; "
                            "imagenet-* are read from config.CHECKPOINT_DIR; last resumes "
                            "from the run's latest checkpoint at the next epoch; none: random)")
    train.add_argument("--schedule", default="paper",
                       help="paper ({1: heads, 120: all, 160: all lr/10}) | full "
                            "({1: heads, 240: all, 320: all lr/10}), learning rate "
                            "LEARNING_RATE x BATCH_SIZE / 12 | PATH.json ({\"end_epoch\": "
                            "{\"learning_rate\": .., \"layers\": ..}}, rates as given)")
    train.add_argument("--epochs", type=int, default=0,
                       help="train up to this epoch (default: the schedule's end)")
    train.add_argument("--steps-per-epoch", type=int, default=None,
                       help="override STEPS_PER_EPOCH (paper: 1000)")
    train.add_argument("--validation-steps", type=int, default=None,
                       help="override VALIDATION_STEPS")
    train.add_argument("--val-images", type=int, default=3000,
                       help="validation = the last N train images by sorted id (default "
                            "3000, the paper's; a tenth of a smaller data set)")
    train.add_argument("--gpus", type=int, default=None, help="GPU_COUNT (tf.distribute)")
    train.add_argument("--augment", action="store_true", help="random horizontal flips")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", parents=[common],
                              help="the paper's one-shot evaluation protocol",
                              description="Evaluate with the paper's protocol: per query "
                                          "image and category present, a random reference "
                                          "of that category; --runs draws, mean and 95% "
                                          "interval. Prints a table; --output writes JSON "
                                          "(per statistic each run's value, mean, interval; "
                                          "per-class AP50).")
    evaluate.add_argument("--dataset", required=True, help="COCO-format root")
    evaluate.add_argument("--model", default=None,
                          help="PATH.h5 or last (the latest checkpoint of the run of "
                               "--config/--split/--set); required but with --merge")
    evaluate.add_argument("--subset", default="val", help="subset to test on (default val)")
    evaluate.add_argument("--classes", default="one-shot", choices=CLASS_SETS,
                          help="categories to evaluate: one-shot (held out), background "
                               "(trained on) or all (default one-shot)")
    evaluate.add_argument("--runs", type=int, default=5,
                          help="runs with different reference draws (default 5)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the first run")
    evaluate.add_argument("--shots", type=int, default=None,
                          help="references per query, K-shot (NUM_TARGETS; default the "
                               "config's, 1)")
    evaluate.add_argument("--limit", type=int, default=0,
                          help="evaluate on the first N images only (0: all)")
    evaluate.add_argument("--eval-type", default="bbox,segm",
                          help="bbox, segm or bbox,segm (default)")
    evaluate.add_argument("--random-baseline", action="store_true",
                          help="random boxes: detections moved at random (the paper's "
                               "baseline)")
    evaluate.add_argument("--output", default=None, help="write the results JSON here")
    evaluate.add_argument("--shard", default=None, metavar="I/N",
                          help="evaluate only every N-th pair, starting at pair I, of the "
                               "same seeded protocol, and write them to --output (a part "
                               "file); run I = 0..N-1 anywhere, then --merge")
    evaluate.add_argument("--merge", nargs="+", default=None, metavar="PART.json",
                          help="the statistics of a sharded evaluation from all N part "
                               "files (with the same --dataset/--subset/--split/--classes; "
                               "no model needed); equal to the unsharded evaluation")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=cmd_evaluate)

    # detect and search: one reference, as an image or a box on an image.
    reference = argparse.ArgumentParser(add_help=False)
    reference.add_argument("--reference", default=None, help="reference image")
    reference.add_argument("--reference-box", default=None, metavar="IMAGE:x,y,w,h",
                           help="reference cropped from IMAGE at box x,y,w,h (pixels; x, y "
                                "the top left corner)")

    detect = sub.add_parser("detect", parents=[common, reference],
                            help="find objects like a reference in a query image",
                            description="Detect the objects of the reference's category in "
                                        "a query image; draws them with the reference "
                                        "inset.")
    detect.add_argument("--model", required=True, help="weights PATH.h5 or last")
    detect.add_argument("--image", required=True, help="query image")
    detect.add_argument("--min-score", type=float, default=0.0,
                        help="drop detections below this score")
    detect.add_argument("--output", default=None, help="picture with the detections (PNG)")
    detect.add_argument("--json", default=None, help="detections as JSON")
    detect.set_defaults(func=cmd_detect)

    search = sub.add_parser("search", parents=[common, reference],
                            help="search a folder of images for objects like a reference",
                            description="Visual search by example: encode the reference "
                                        "once, run every image (in batches, the next one "
                                        "loaded while the model runs), append each "
                                        "image's detections to OUT/results.jsonl and draw "
                                        "the best in OUT/contact_sheet.png. Rerunning "
                                        "with the same --output resumes.")
    search.add_argument("--model", required=True,
                        help="weights PATH.h5, last, or the folder of an exported model")
    search.add_argument("--images", required=True,
                        help="a folder of images or a glob such as 'photos/*.jpg'")
    search.add_argument("--output", required=True,
                        help="folder for results.jsonl and contact_sheet.png")
    search.add_argument("--min-score", type=float, default=0.5,
                        help="keep detections scoring at least this (default 0.5)")
    search.add_argument("--top", type=int, default=16,
                        help="images on the contact sheet (default 16)")
    search.add_argument("--batch", type=int, default=4,
                        help="images per model call (default 4; an exported model runs "
                             "one image per call, and --config/--set do not apply to it)")
    search.add_argument("--quiet", action="store_true", help="no progress bar")
    search.set_defaults(func=cmd_search)

    export = sub.add_parser("export", parents=[common],
                            help="write a TensorFlow SavedModel that takes raw images",
                            description="Export for serving: a SavedModel whose signatures "
                                        "(serving_default, encode_reference, "
                                        "detect_with_reference) take uint8 images of any "
                                        "size and do the resizing and unmolding in the "
                                        "graph; a client needs only tensorflow.")
    export.add_argument("--model", required=True, help="weights PATH.h5 or last")
    export.add_argument("--output", required=True, help="the SavedModel folder (new)")
    export.add_argument("--shots", type=int, default=None,
                        help="references per query, K (NUM_TARGETS; default the config's)")
    export.set_defaults(func=cmd_export)
    add_report_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "train_siamese.py") -> int:
    """Runs one command; returns the exit status (0, 1 I/O error, 2 user error).
    prog: the program name that usage and help show."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_command(lambda: args.func(args), prefix="error",
                       interrupted="interrupted: the last finished epoch's checkpoint is kept")
