"""Mask R-CNN on MS COCO and other COCO-format data sets.

Configuration, data loading, COCO evaluation and Matterport's command line, ported from
Matterport Mask R-CNN 2.1 (samples/coco/coco.py) to the Keras 3 package. Nothing is
downloaded: data sets and weights are local files.

Usage: import the module (see the notebooks), or run from the command line:

    # Train a new model starting from the COCO weights (a local mask_rcnn_coco.h5)
    python samples/coco/coco.py train --dataset=/path/to/coco/ --model=coco

    # Train a new model starting from ImageNet weights (MRCNN_IMAGENET_WEIGHTS)
    python samples/coco/coco.py train --dataset=/path/to/coco/ --model=imagenet

    # Continue training a model that you had trained earlier
    python samples/coco/coco.py train --dataset=/path/to/coco/ --model=/path/to/weights.h5

    # Continue training the last model you trained
    python samples/coco/coco.py train --dataset=/path/to/coco/ --model=last

    # Run COCO evaluation on the last model you trained
    python samples/coco/coco.py evaluate --dataset=/path/to/coco/ --model=last

    # A small run: tiny backbone, 64 px images, 2 steps of head training, random init
    python samples/coco/coco.py train --dataset=DIR --model=none --backbone=resnet_tiny \\
        --image-size=64 --steps-per-epoch=2 --validation-steps=1 \\
        --epochs-heads=1 --epochs-4plus=0 --epochs-all=0
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Iterable, Sequence

# Before TensorFlow is first imported, as train_siamese.py does: its C++ logs (the first
# detection's eight "PredictCost" lines) are not for the user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pycocotools.cocoeval import COCOeval  # noqa: E402

# Root directory of the project; lib/ holds the mrcnn package when it is not installed.
ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.join(ROOT_DIR, "lib"))

from mrcnn import compat, utils  # noqa: E402,F401
from mrcnn import model as modellib  # noqa: E402
from mrcnn.coco import (COCO_NUM_CLASSES, DEFAULT_DATASET_YEAR, EVAL_TYPES,  # noqa: E402,F401
                        VAL2014_SUBSETS, CocoConfig, CocoDataset, CocoInferenceConfig,
                        build_coco_results, detect_coco_results, evaluate_coco,
                        evaluation_image_ids, load_results, load_training_data, make_config,
                        run_cocoeval, validation_subset)
from mrcnn.cli_support import (CliError, add_set_option, check_output,  # noqa: E402,F401
                               int_option, parse_set, run_command, user_input,
                               weights_error)
from mrcnn.config import Config  # noqa: E402
from mrcnn.multi_worker import distribution_from_env  # noqa: E402
from mrcnn.overrides import config_from_overrides  # noqa: E402
from mrcnn.weights import read_layout  # noqa: E402

logger = logging.getLogger(__name__)

# Matterport's trained weights; looked up locally, never downloaded (see resolve_weights).
COCO_WEIGHTS_FILE = "mask_rcnn_coco.h5"
COCO_WEIGHTS_ENV = "MRCNN_COCO_WEIGHTS"
IMAGENET_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_WEIGHTS_ENV = "MRCNN_IMAGENET_WEIGHTS"

# Directory to save logs and model checkpoints, if not provided through --logs.
DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")
# Layers whose shapes depend on the class count: re-initialised when it changes.
HEAD_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
# Matterport's schedule: the epoch each stage trains up to (heads, 4+, all at lr/10).
DEFAULT_SCHEDULE = (40, 120, 160)
MODEL_KEYWORDS = ("coco", "last", "imagenet", "none")

############################################################
#  Command line: weights and data
############################################################

def _first_file(candidates: Iterable[str]) -> str | None:
    for path in candidates:
        if path and os.path.isfile(path):
            return path
    return None


def _local_weights(env_var: str, file_name: str, what: str) -> str:
    """The weights file named by env_var, else file_name in the working directory or
    next to this script."""
    env_path = os.environ.get(env_var)
    if env_path:
        if not os.path.isfile(env_path):
            raise CliError(f"{what} weights not found: {env_var}={env_path} is not a file")
        return env_path
    places = [os.getcwd(), SCRIPT_DIR]
    found = _first_file(os.path.join(p, file_name) for p in places)
    if found is None:
        raise CliError(f"{what} weights not found: set {env_var} or put {file_name} in "
                       f"{' or '.join(places)} (nothing is downloaded)")
    return found


def resolve_weights(model_arg: str) -> str | None:
    """Maps --model to a weights file: 'coco', 'imagenet' or a path; None for 'none'.

    'last' needs the model (find_last) and is resolved by the caller.
    Raises CliError when the file does not exist.
    """
    keyword = model_arg.lower()
    if keyword == "none":
        return None
    if keyword == "coco":
        return _local_weights(COCO_WEIGHTS_ENV, COCO_WEIGHTS_FILE, "COCO")
    if keyword == "imagenet":
        return _local_weights(IMAGENET_WEIGHTS_ENV, IMAGENET_WEIGHTS_FILE, "ImageNet")
    if keyword == "last":
        raise ValueError("'last' is resolved with model.find_last()")
    if not os.path.isfile(model_arg):
        raise CliError(f"Weights file not found: {model_arg} (expected a .h5 file or one "
                       f"of {', '.join(MODEL_KEYWORDS)})")
    return model_arg


def weights_class_count(path: str) -> int | None:
    """The class count of a weights file's classifier head (None if it has none)."""
    for name, shape in read_layout(path).get("mrcnn_class_logits", []):
        if name.split("/")[-1].startswith("kernel"):
            return int(shape[-1])
    return None


def head_exclusions(model_arg: str, weights_path: str, num_classes: int) -> list[str]:
    """Head layers to skip when loading: those whose shapes depend on the class count,
    when the file's count (81 for 'coco') differs from the model's."""
    if model_arg.lower() == "coco":
        file_classes = COCO_NUM_CLASSES
    else:
        file_classes = weights_class_count(weights_path)
    if file_classes is None or file_classes == num_classes:
        return []
    logger.info("Weights have %d classes, the model %d: not loading %s", file_classes,
                num_classes, ", ".join(HEAD_LAYERS))
    return list(HEAD_LAYERS)



def choose_num_classes(requested: int | None, dataset: utils.Dataset, training: bool) -> int:
    """The model's class count: --num-classes, or 1 + the data set's categories.

    Training needs exactly the data set's count (image metas carry one flag per class);
    evaluation accepts more (a model trained on more classes).
    """
    inferred = dataset.num_classes
    if requested is None:
        return inferred
    if requested < inferred or (training and requested != inferred):
        need = "exactly" if training else "at least"
        raise CliError(f"--num-classes {requested}: the data set has {inferred - 1} "
                       f"categories, so {need} {inferred} classes (with background) are needed")
    return requested


############################################################
#  Command line: training and evaluation
############################################################

def str2bool(value: str | bool) -> bool:
    """argparse type for true/false flags (Matterport's type=bool took 'False' as True)."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "y", "on"):
        return True
    if lowered in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    """Matterport's arguments plus options for small runs."""
    parser = argparse.ArgumentParser(prog=os.path.basename(__file__),
                                     description="Train Mask R-CNN on MS COCO.")
    parser.add_argument("command", metavar="<command>", choices=["train", "evaluate"],
                        help="'train' or 'evaluate' on MS COCO")
    parser.add_argument("--dataset", required=True, metavar="/path/to/coco/",
                        help="Directory of the MS-COCO (or COCO-format) data set")
    parser.add_argument("--year", default=DEFAULT_DATASET_YEAR, metavar="<year>",
                        help="Year of the data set (2014 or 2017) "
                             f"(default={DEFAULT_DATASET_YEAR})")
    parser.add_argument("--model", required=True, metavar="/path/to/weights.h5",
                        help="Path to weights .h5 file, 'coco', 'last', 'imagenet' or "
                             "'none' (random initialisation)")
    parser.add_argument("--logs", default=DEFAULT_LOGS_DIR, metavar="/path/to/logs/",
                        help="Logs and checkpoints directory (default=logs/)")
    parser.add_argument("--limit", type=int_option(0), default=500,
                        metavar="<image count>",
                        help="Images to use for evaluation, 0 = all (default=500)")
    parser.add_argument("--download", type=str2bool, default=False, metavar="<True|False>",
                        help="Not supported: nothing is downloaded (default=False)")
    small = parser.add_argument_group("run size (defaults: Matterport's)")
    for stage, default in zip(("heads", "4plus", "all"), DEFAULT_SCHEDULE):
        small.add_argument(f"--epochs-{stage}", type=int_option(0), default=default,
                           metavar="N",
                           help=f"Train the {stage} stage up to epoch N (cumulative, as "
                                f"Matterport's epochs; 0 skips it) (default={default})")
    small.add_argument("--steps-per-epoch", type=int_option(1), metavar="N",
                       help="Training steps per epoch (default: config's 1000)")
    small.add_argument("--validation-steps", type=int_option(1), metavar="N",
                       help="Validation steps per epoch (default: config's 50)")
    small.add_argument("--image-size", type=int_option(1), metavar="PX",
                       help="IMAGE_MAX_DIM (a multiple of 64); IMAGE_MIN_DIM becomes "
                            "min(800, PX) (default: 800/1024)")
    small.add_argument("--backbone", choices=["resnet50", "resnet101", "resnet_tiny"],
                       help="Backbone (default: config's resnet101)")
    small.add_argument("--num-classes", type=int_option(1), metavar="N",
                       help="Classes including background (default: 1 + the categories "
                            "in the annotation file)")
    small.add_argument("--eval-type", choices=["bbox", "segm", "both"], default="bbox",
                       help="COCO evaluation type (default=bbox)")
    add_set_option(small)
    return parser


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields set by the run-size options."""
    overrides: dict[str, Any] = {}
    if args.steps_per_epoch is not None:
        overrides["STEPS_PER_EPOCH"] = args.steps_per_epoch
    if args.validation_steps is not None:
        overrides["VALIDATION_STEPS"] = args.validation_steps
    if args.backbone is not None:
        overrides["BACKBONE"] = args.backbone
    if args.image_size is not None:
        overrides["IMAGE_MAX_DIM"] = args.image_size
        overrides["IMAGE_MIN_DIM"] = min(CocoConfig.IMAGE_MIN_DIM, args.image_size)
    return overrides


def build_config(args: argparse.Namespace, training: bool, num_classes: int) -> Config:
    """The COCO config with the run-size options, then --set KEY=VALUE applied."""
    overrides = config_overrides(args)
    if training:  # TF_CONFIG set: multi-worker training (mrcnn.multi_worker)
        overrides["DISTRIBUTION"] = distribution_from_env()
    config = make_config(training, num_classes, **overrides)
    return config_from_overrides(config, parse_set(getattr(args, "set", None)))


def training_stages(config: Config, epochs_heads: int, epochs_4plus: int,
                    epochs_all: int) -> list[tuple[str, str, float, int]]:
    """Matterport's schedule as (message, layers, learning rate, final epoch)."""
    return [
        ("Training network heads", "heads", config.LEARNING_RATE, epochs_heads),
        ("Fine tune Resnet stage 4 and up", "4+", config.LEARNING_RATE, epochs_4plus),
        ("Fine tune all layers", "all", config.LEARNING_RATE / 10, epochs_all),
    ]


def load_model_weights(model: modellib.MaskRCNN, model_arg: str) -> None:
    """Resolves --model and loads the weights into the model (none: random init)."""
    if model_arg.lower() == "last":
        try:
            weights_path = model.find_last()
        except FileNotFoundError as error:
            raise CliError(f"--model last: no checkpoint found ({error})") from error
    else:
        weights_path = resolve_weights(model_arg)
    if weights_path is None:
        logger.info("No weights loaded: random initialisation")
        return
    logger.info("Loading weights %s", weights_path)
    try:  # head_exclusions reads the file too: a file that is no .h5 fails there first
        exclude = head_exclusions(model_arg, weights_path, model.config.NUM_CLASSES)
        model.load_weights(weights_path, by_name=True, exclude=exclude or None)
    except (OSError, ValueError) as error:
        message = weights_error(error, "--backbone, --num-classes and --set")
        raise CliError(f"Could not load weights {weights_path}: {message}") from error


def train(args: argparse.Namespace) -> None:
    """Loads the data, builds the model and runs Matterport's three training stages."""
    with user_input("data set"):
        dataset_train, dataset_val = load_training_data(args.dataset, args.year,
                                                        args.download)
    num_classes = choose_num_classes(args.num_classes, dataset_train, training=True)
    with user_input("configuration"):
        config = build_config(args, True, num_classes)
    config.display()
    with user_input("train"):  # e.g. a backend that cannot train, a GPU_COUNT mismatch
        model = modellib.MaskRCNN(mode="training", config=config, model_dir=args.logs)
    # A multi-worker run's other tasks take the chief's weights and epoch instead.
    if model.is_chief:
        load_model_weights(model, args.model)
    model.sync_workers()

    # Right/Left flip 50% of the time.
    augmentation = compat.imgaug_augmenters().Fliplr(0.5)
    stages = training_stages(config, args.epochs_heads, args.epochs_4plus, args.epochs_all)
    for message, layers, learning_rate, epochs in stages:
        if epochs <= model.epoch:
            logger.info("Skipping stage '%s': it ends at epoch %d, the model is at epoch %d",
                        layers, epochs, model.epoch)
            continue
        logger.info(message)
        model.train(dataset_train, dataset_val, learning_rate=learning_rate, epochs=epochs,
                    layers=layers, augmentation=augmentation)


def evaluate(args: argparse.Namespace) -> dict[str, COCOeval]:
    """Evaluates the model on the validation subset; returns COCOeval per eval type."""
    dataset_val = CocoDataset()
    val_type = validation_subset(args.dataset, args.year)
    with user_input("data set"):
        coco = dataset_val.load_coco(args.dataset, val_type, year=args.year,
                                     return_coco=True, auto_download=args.download)
    dataset_val.prepare()
    num_classes = choose_num_classes(args.num_classes, dataset_val, training=False)
    with user_input("configuration"):
        config = build_config(args, False, num_classes)
    config.display()
    model = modellib.MaskRCNN(mode="inference", config=config, model_dir=args.logs)
    load_model_weights(model, args.model)

    with user_input("data set"):
        image_ids = evaluation_image_ids(dataset_val, args.limit, None)
    coco_image_ids = [dataset_val.image_info[i]["id"] for i in image_ids]
    logger.info("Running COCO evaluation on %d images.", len(image_ids))
    # Detect once, score for each requested evaluation type.
    results, t_prediction = detect_coco_results(model, dataset_val, image_ids)
    logger.info("%d detections. Prediction time: %.1f s. Average %.3f s/image",
                len(results), t_prediction, t_prediction / len(image_ids))
    eval_types = EVAL_TYPES if args.eval_type == "both" else (args.eval_type,)
    evaluations = {}
    for eval_type in eval_types:
        logger.info("COCO evaluation: %s", eval_type)
        evaluations[eval_type] = run_cocoeval(coco, results, coco_image_ids, eval_type)
        stats = evaluations[eval_type].stats
        logger.info("%s stats: AP %.4f  AP50 %.4f  AP75 %.4f", eval_type, stats[0],
                    stats[1], stats[2])
    return evaluations


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code (2 for bad inputs)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("command", "model", "dataset", "year", "logs", "download"):
        logger.info("%s: %s", name.capitalize(), getattr(args, name))

    def command() -> None:
        if not os.path.isdir(args.dataset):
            raise CliError(f"Data set directory not found: {args.dataset}")
        # Fail on missing weights before the data and the model are loaded.
        if args.model.lower() != "last":
            resolve_weights(args.model)
        if args.command == "train":
            check_output(args.logs, "--logs")
            train(args)
        else:
            evaluate(args)

    return run_command(command, prefix=f"{parser.prog}: error")

if __name__ == "__main__":
    sys.exit(main())
