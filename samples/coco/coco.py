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
import contextlib
import io
import logging
import os
import sys
import time
from typing import Any, Iterable, Sequence

import numpy as np
from pycocotools import mask as maskUtils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

# Root directory of the project; lib/ holds the mrcnn package when it is not installed.
ROOT_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.append(os.path.join(ROOT_DIR, "lib"))

from mrcnn import compat, utils  # noqa: E402
from mrcnn import model as modellib  # noqa: E402
from mrcnn.config import Config  # noqa: E402
from mrcnn.coco_io import (VAL2014_SUBSETS, add_coco_images, coco_paths,  # noqa: E402
                           images_with_classes, read_coco_annotations)
from mrcnn.weights import read_layout  # noqa: E402

logger = logging.getLogger(__name__)

# Matterport's trained weights; looked up locally, never downloaded (see resolve_weights).
COCO_WEIGHTS_FILE = "mask_rcnn_coco.h5"
COCO_WEIGHTS_ENV = "MRCNN_COCO_WEIGHTS"
IMAGENET_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_WEIGHTS_ENV = "MRCNN_IMAGENET_WEIGHTS"

# Directory to save logs and model checkpoints, if not provided through --logs.
DEFAULT_LOGS_DIR = os.path.join(ROOT_DIR, "logs")
# Matterport's default: COCO 2014 (train2014, val2014 and the minival splits); pass
# year="2017" / --year 2017 for the 2017 layout.
DEFAULT_DATASET_YEAR = "2014"

# MS COCO: background + 80 categories, the class count of mask_rcnn_coco.h5.
COCO_NUM_CLASSES = 1 + 80
# Layers whose shapes depend on the class count: re-initialised when it changes.
HEAD_LAYERS = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]
# Matterport's schedule: the epoch each stage trains up to (heads, 4+, all at lr/10).
DEFAULT_SCHEDULE = (40, 120, 160)
MODEL_KEYWORDS = ("coco", "last", "imagenet", "none")
EVAL_TYPES = ("bbox", "segm")

############################################################
#  Configurations
############################################################


class CocoConfig(Config):
    """Configuration for training on MS COCO (and, with NUM_CLASSES set, on any
    COCO-format data set)."""
    # Give the configuration a recognizable name
    NAME = "coco"

    # A GPU with 12GB memory fits two images at 1024 px.
    IMAGES_PER_GPU = 2

    # Number of classes (including background): COCO has 80 classes.
    NUM_CLASSES = COCO_NUM_CLASSES


class CocoInferenceConfig(CocoConfig):
    """Evaluation settings: one image at a time, keep every detection for COCOeval."""
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0


def make_config(training: bool, num_classes: int = COCO_NUM_CLASSES, **overrides: Any
                ) -> CocoConfig:
    """Builds a CocoConfig (training) or CocoInferenceConfig with field overrides.

    overrides: Config field names and values, e.g. BACKBONE="resnet_tiny". Invalid values
    raise the Config's ValueError naming the field.
    """
    base = CocoConfig if training else CocoInferenceConfig
    fields = {"NUM_CLASSES": num_classes, **overrides}
    return type(base.__name__, (base,), fields)()


############################################################
#  Dataset
############################################################

class CocoDataset(utils.Dataset):
    """A COCO-format data set (source "coco"); crowds get negative class ids."""

    def load_coco(self, dataset_dir: str, subset: str, year: str = DEFAULT_DATASET_YEAR,
                  class_ids: Sequence[int] | None = None, class_map: Any = None,
                  return_coco: bool = False, auto_download: bool = False) -> COCO | None:
        """Loads a subset of a COCO-format data set.

        dataset_dir: the root directory, holding annotations/instances_{subset}{year}.json
            and the images in {subset}{year}/.
        subset: what to load (train, val, minival, valminusminival).
        year: what data set year to load (2014, 2017), as a string.
        class_ids: if given, only loads images that have the given classes (COCO ids).
        class_map: not implemented (as in Matterport): accepted and ignored.
        return_coco: if True, returns the pycocotools COCO object.
        auto_download: not supported; True raises ValueError (nothing is downloaded).
        """
        year = str(year)
        if auto_download:
            self.auto_download(dataset_dir, subset, year)
        annotation_path, image_dir = coco_paths(dataset_dir, subset, year)
        self._check_layout(dataset_dir, subset, year, annotation_path, image_dir)
        coco = read_coco_annotations(annotation_path)

        # All classes, or the subset asked for (COCO category ids)?
        if not class_ids:
            class_ids = sorted(coco.getCatIds())
        image_ids = images_with_classes(coco, class_ids)
        add_coco_images(self, coco, class_ids, image_ids, image_dir)
        logger.info("Loaded %d images and %d classes from %s", len(image_ids),
                    len(class_ids), annotation_path)
        if return_coco:
            return coco
        return None

    @staticmethod
    def _check_layout(dataset_dir: str, subset: str, year: str, annotation_path: str,
                      image_dir: str) -> None:
        image_subset = "val" if subset in VAL2014_SUBSETS else subset
        layout = (f"a COCO-format data set under {dataset_dir} needs "
                  f"annotations/instances_{subset}{year}.json and the images in "
                  f"{image_subset}{year}/; nothing is downloaded")
        if not os.path.isfile(annotation_path):
            other = {"2014": "2017", "2017": "2014"}.get(year)
            # 2017 has no minival / valminusminival: its counterpart is val.
            other_subset = "val" if other == "2017" and image_subset == "val" else subset
            if other and os.path.isfile(coco_paths(dataset_dir, other_subset, other)[0]):
                layout += f"; the {other} layout is there: pass year={other} (--year {other})"
            raise FileNotFoundError(f"COCO annotation file not found: {annotation_path} "
                                    f"({layout})")
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"COCO image folder not found: {image_dir} ({layout})")

    def auto_download(self, dataDir: str, dataType: str, dataYear: str) -> None:
        """Matterport downloaded COCO here; this project downloads nothing at run time."""
        annotation_path, image_dir = coco_paths(dataDir, dataType, str(dataYear))
        raise ValueError(
            "auto_download is not supported: nothing is downloaded at run time. Download "
            f"MS COCO {dataYear} from https://cocodataset.org yourself and unpack it so that "
            f"{annotation_path} and {image_dir}{os.sep} exist (pass --download False)")

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Loads the instance masks of an image.

        Returns:
        masks: A bool array of shape [height, width, instance count] with one mask per
            instance ([height, width, 0] when the image has none).
        class_ids: a 1D int32 array of internal class IDs, negative for crowds.
        """
        # If not a COCO image, delegate to parent class.
        image_info = self.image_info[image_id]
        if image_info["source"] != "coco":
            return super().load_mask(image_id)

        height, width = image_info["height"], image_info["width"]
        instance_masks, class_ids = [], []
        for annotation in image_info["annotations"]:
            class_id = self.map_source_class_id("coco.{}".format(annotation["category_id"]))
            if not class_id:
                continue
            m = self.annToMask(annotation, height, width)
            # Objects smaller than a pixel get rounded out: skip them.
            if m.max() < 1:
                continue
            if annotation["iscrowd"]:
                # Crowds get a negative class ID: the targets ignore them.
                class_id *= -1
                # annToMask() sometimes returns a smaller crowd mask: cover the image.
                if m.shape[0] != height or m.shape[1] != width:
                    m = np.ones([height, width], dtype=bool)
            instance_masks.append(m)
            class_ids.append(class_id)

        if not class_ids:
            return (np.zeros([height, width, 0], dtype=bool), np.zeros([0], dtype=np.int32))
        mask = np.stack(instance_masks, axis=2).astype(bool)  # [H, W, N]
        return mask, np.array(class_ids, dtype=np.int32)

    def image_reference(self, image_id: int) -> str:
        """Returns a link to the image on the COCO website."""
        info = self.image_info[image_id]
        if info["source"] == "coco":
            return "http://cocodataset.org/#explore?id={}".format(info["id"])
        return super().image_reference(image_id)

    # The following two functions are from pycocotools with a few changes.

    def annToRLE(self, ann: dict, height: int, width: int) -> dict:
        """Converts an annotation's segmentation (polygons, uncompressed or compressed
        RLE) to compressed RLE."""
        segm = ann["segmentation"]
        if isinstance(segm, list):
            # A polygon; an object may have several parts: merge them into one RLE.
            rles = maskUtils.frPyObjects(segm, height, width)
            return maskUtils.merge(rles)
        if isinstance(segm.get("counts"), list):
            # Uncompressed RLE (crowds).
            return maskUtils.frPyObjects(segm, height, width)
        return segm

    def annToMask(self, ann: dict, height: int, width: int) -> np.ndarray:
        """Converts an annotation's segmentation to a binary mask [height, width] uint8."""
        return maskUtils.decode(self.annToRLE(ann, height, width))


############################################################
#  COCO Evaluation
############################################################

def build_coco_results(dataset: utils.Dataset, image_ids: Sequence[int], rois: np.ndarray,
                       class_ids: np.ndarray, scores: np.ndarray, masks: np.ndarray
                       ) -> list[dict]:
    """Arranges detections as COCO results (http://cocodataset.org/#format).

    image_ids: COCO image ids; every detection is reported for each of them (Matterport
        calls this with one image id at a time).
    rois: [N, (y1, x1, y2, x2)] pixels; class_ids: [N] internal ids; scores: [N];
    masks: [H, W, N].
    Returns dicts with image_id, category_id (COCO id), bbox [x, y, width, height],
    score and segmentation (compressed RLE).
    """
    if rois is None:
        return []
    rois = np.asarray(rois)
    masks = np.asarray(masks)
    n = rois.shape[0]
    if rois.ndim != 2 or rois.shape[1] != 4:
        raise ValueError(f"rois: expected shape [N, 4], got {rois.shape}")
    if len(class_ids) != n or len(scores) != n or masks.ndim != 3 or masks.shape[2] != n:
        raise ValueError(f"expected {n} class_ids, scores and masks [H, W, {n}]; got "
                         f"{len(class_ids)}, {len(scores)} and {masks.shape}")

    results = []
    for image_id in image_ids:
        for i in range(n):
            bbox = np.around(rois[i], 1)
            # COCO tools reject bool masks; RLE needs Fortran order.
            mask = np.asfortranarray(masks[:, :, i].astype(np.uint8))
            results.append({
                "image_id": int(image_id),
                "category_id": dataset.get_source_class_id(int(class_ids[i]), "coco"),
                "bbox": [float(bbox[1]), float(bbox[0]), float(bbox[3] - bbox[1]),
                         float(bbox[2] - bbox[0])],
                "score": float(scores[i]),
                "segmentation": maskUtils.encode(mask),
            })
    return results


def _batch_size(model: Any) -> int:
    return int(getattr(getattr(model, "config", None), "BATCH_SIZE", 1))


def detect_coco_results(model: Any, dataset: utils.Dataset,
                        image_ids: Sequence[int]) -> tuple[list[dict], float]:
    """Runs model.detect over the images (in batches of model.config.BATCH_SIZE).

    Returns the COCO results and the time spent in detect() (seconds).
    """
    batch_size = _batch_size(model)
    results: list[dict] = []
    t_prediction = 0.0
    with tqdm(total=len(image_ids), desc="Detecting", unit="image") as progress:
        for start in range(0, len(image_ids), batch_size):
            batch_ids = list(image_ids[start:start + batch_size])
            images = [dataset.load_image(i) for i in batch_ids]
            # A short last batch is padded with repeats; their results are dropped.
            images += [images[-1]] * (batch_size - len(images))
            t = time.time()
            detections = model.detect(images, verbose=0)
            t_prediction += time.time() - t
            for image_id, r in zip(batch_ids, detections):
                coco_image_id = dataset.image_info[image_id]["id"]
                results.extend(build_coco_results(dataset, [coco_image_id], r["rois"],
                                                  r["class_ids"], r["scores"], r["masks"]))
            progress.update(len(batch_ids))
    return results, t_prediction


def load_results(coco: COCO, results: list[dict]) -> COCO:
    """coco.loadRes(results), also when there are no results (loadRes fails on [])."""
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            return coco.loadRes(results)
        empty = COCO()
        empty.dataset = {"images": list(coco.dataset["images"]),
                         "categories": list(coco.dataset["categories"]), "annotations": []}
        empty.createIndex()
    return empty


def run_cocoeval(coco: COCO, results: list[dict], coco_image_ids: Sequence[int],
                 eval_type: str = "bbox") -> COCOeval:
    """Runs COCOeval on the results, restricted to the given COCO image ids.

    Prints pycocotools' summary table; the 12 numbers are in the returned object's
    ``stats`` (stats[0] AP@[.5:.95], stats[1] AP50, stats[2] AP75, ...).
    """
    if eval_type not in EVAL_TYPES:
        raise ValueError(f"eval_type must be one of {EVAL_TYPES}, got {eval_type!r}")
    coco_results = load_results(coco, results)
    coco_eval = COCOeval(coco, coco_results, eval_type)
    coco_eval.params.imgIds = list(coco_image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval


def _evaluation_image_ids(dataset: utils.Dataset, limit: int,
                          image_ids: Sequence[int] | None) -> list[int]:
    image_ids = list(dataset.image_ids if image_ids is None else image_ids)
    if limit:
        image_ids = image_ids[:limit]
    if not image_ids:
        raise ValueError("No images to evaluate: the data set (or image_ids) is empty")
    return image_ids


def evaluate_coco(model: Any, dataset: utils.Dataset, coco: COCO, eval_type: str = "bbox",
                  limit: int = 0, image_ids: Sequence[int] | None = None) -> COCOeval:
    """Runs the official COCO evaluation of a model on a data set.

    model: anything with Matterport's detect(images, verbose) (a MaskRCNN in inference
        mode); images are fed in batches of model.config.BATCH_SIZE (default 1).
    dataset: a prepared CocoDataset; coco: its COCO object (load_coco(return_coco=True)).
    eval_type: "bbox" or "segm" for bounding box or segmentation evaluation.
    limit: if not 0, the number of images to use for evaluation.
    image_ids: internal image ids to evaluate (default: all of the data set).
    Returns the COCOeval object; its ``stats`` hold the summary numbers.
    """
    if eval_type not in EVAL_TYPES:
        raise ValueError(f"eval_type must be one of {EVAL_TYPES}, got {eval_type!r}")
    image_ids = _evaluation_image_ids(dataset, limit, image_ids)
    coco_image_ids = [dataset.image_info[i]["id"] for i in image_ids]
    t_start = time.time()
    results, t_prediction = detect_coco_results(model, dataset, image_ids)
    coco_eval = run_cocoeval(coco, results, coco_image_ids, eval_type)
    # Printed, as Matterport printed them (after pycocotools' summary table).
    print("Prediction time: {}. Average {}/image".format(
        t_prediction, t_prediction / len(image_ids)))
    print("Total time: ", time.time() - t_start)
    return coco_eval


############################################################
#  Command line: weights and data
############################################################

class CliError(Exception):
    """A problem with the command line's inputs: reported in one line, exit code 2."""


@contextlib.contextmanager
def user_input(what: str):
    """Reports missing or invalid inputs (data, config values) as CliError."""
    try:
        yield
    except (FileNotFoundError, ValueError) as error:
        raise CliError(f"{what}: {error}") from error


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


def validation_subset(dataset_dir: str, year: str) -> str:
    """Matterport validates on 'minival' for 2014 and 'val' for 2017.

    A 2014 data set without the minival split but with val2014 uses 'val'; with neither,
    'minival' (so that the error names the file Matterport's layout expects).
    """
    if str(year) != "2014":
        return "val"
    if not _has_minival(dataset_dir, year) and os.path.isfile(
            coco_paths(dataset_dir, "val", year)[0]):
        return "val"
    return "minival"


def _has_minival(dataset_dir: str, year: str) -> bool:
    return all(os.path.isfile(coco_paths(dataset_dir, s, year)[0]) for s in VAL2014_SUBSETS)


def load_training_data(dataset_dir: str, year: str, auto_download: bool = False
                       ) -> tuple[CocoDataset, CocoDataset]:
    """The training and validation data sets, Matterport's split.

    COCO 2014 with minival: train + valminusminival for training, minival for validation
    (as in the Mask R-CNN paper). Otherwise train and val.
    """
    dataset_train = CocoDataset()
    dataset_train.load_coco(dataset_dir, "train", year=year, auto_download=auto_download)
    val_type = validation_subset(dataset_dir, year)
    if val_type == "minival":
        dataset_train.load_coco(dataset_dir, "valminusminival", year=year,
                                auto_download=auto_download)
    dataset_train.prepare()

    dataset_val = CocoDataset()
    dataset_val.load_coco(dataset_dir, val_type, year=year, auto_download=auto_download)
    dataset_val.prepare()
    if dataset_train.class_info != dataset_val.class_info:
        raise ValueError(
            "The training and validation annotation files list different categories "
            f"({len(dataset_train.class_info) - 1} vs {len(dataset_val.class_info) - 1}): "
            "their internal class ids would not agree")
    return dataset_train, dataset_val


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


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}")
    return number


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
    parser.add_argument("--limit", type=_non_negative_int, default=500,
                        metavar="<image count>",
                        help="Images to use for evaluation, 0 = all (default=500)")
    parser.add_argument("--download", type=str2bool, default=False, metavar="<True|False>",
                        help="Not supported: nothing is downloaded (default=False)")
    small = parser.add_argument_group("run size (defaults: Matterport's)")
    for stage, default in zip(("heads", "4plus", "all"), DEFAULT_SCHEDULE):
        small.add_argument(f"--epochs-{stage}", type=_non_negative_int, default=default,
                           metavar="N",
                           help=f"Train the {stage} stage up to epoch N (cumulative, as "
                                f"Matterport's epochs; 0 skips it) (default={default})")
    small.add_argument("--steps-per-epoch", type=_positive_int, metavar="N",
                       help="Training steps per epoch (default: config's 1000)")
    small.add_argument("--validation-steps", type=_positive_int, metavar="N",
                       help="Validation steps per epoch (default: config's 50)")
    small.add_argument("--image-size", type=_positive_int, metavar="PX",
                       help="IMAGE_MAX_DIM (a multiple of 64); IMAGE_MIN_DIM becomes "
                            "min(800, PX) (default: 800/1024)")
    small.add_argument("--backbone", choices=["resnet50", "resnet101", "resnet_tiny"],
                       help="Backbone (default: config's resnet101)")
    small.add_argument("--num-classes", type=_positive_int, metavar="N",
                       help="Classes including background (default: 1 + the categories "
                            "in the annotation file)")
    small.add_argument("--eval-type", choices=["bbox", "segm", "both"], default="bbox",
                       help="COCO evaluation type (default=bbox)")
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
    exclude = head_exclusions(model_arg, weights_path, model.config.NUM_CLASSES)
    logger.info("Loading weights %s", weights_path)
    try:
        model.load_weights(weights_path, by_name=True, exclude=exclude or None)
    except (OSError, ValueError) as error:
        raise CliError(f"Could not load weights {weights_path}: {error}") from error


def train(args: argparse.Namespace) -> None:
    """Loads the data, builds the model and runs Matterport's three training stages."""
    with user_input("data set"):
        dataset_train, dataset_val = load_training_data(args.dataset, args.year,
                                                        args.download)
    num_classes = choose_num_classes(args.num_classes, dataset_train, training=True)
    with user_input("configuration"):
        config = make_config(True, num_classes, **config_overrides(args))
    config.display()
    model = modellib.MaskRCNN(mode="training", config=config, model_dir=args.logs)
    load_model_weights(model, args.model)

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
        config = make_config(False, num_classes, **config_overrides(args))
    config.display()
    model = modellib.MaskRCNN(mode="inference", config=config, model_dir=args.logs)
    load_model_weights(model, args.model)

    with user_input("data set"):
        image_ids = _evaluation_image_ids(dataset_val, args.limit, None)
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
    try:
        if not os.path.isdir(args.dataset):
            raise CliError(f"Data set directory not found: {args.dataset}")
        # Fail on missing weights before the data and the model are loaded.
        if args.model.lower() != "last":
            resolve_weights(args.model)
        if args.command == "train":
            train(args)
        else:
            evaluate(args)
    except CliError as error:
        message = " ".join(str(error).split())
        sys.stderr.write(f"{parser.prog}: error: {message}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
