"""COCO-format data sets for Mask R-CNN: Matterport's CocoDataset, configs and the
official COCO evaluation (the library half of samples/coco/coco.py, which keeps
Matterport's command line and re-exports these names).

Layout: ``{dataset_dir}/annotations/instances_{subset}{year}.json`` and the images in
``{dataset_dir}/{subset}{year}/``; COCO 2014's minival and valminusminival read their
images from val2014/. Nothing is downloaded.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import time
from collections import Counter
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as maskUtils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from mrcnn import utils
from mrcnn.coco_io import (VAL2014_SUBSETS, add_coco_images, coco_paths,  # noqa: F401
                           images_with_classes, read_coco_annotations)
from mrcnn.config import Config, is_int

logger = logging.getLogger(__name__)

# Matterport's default: COCO 2014 (train2014, val2014 and the minival splits); pass
# year="2017" / --year 2017 for the 2017 layout.
DEFAULT_DATASET_YEAR = "2014"
# MS COCO: background + 80 categories, the class count of mask_rcnn_coco.h5.
COCO_NUM_CLASSES = 1 + 80
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
        self.check_layout(dataset_dir, subset, year, annotation_path, image_dir)
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
    def check_layout(dataset_dir: str, subset: str, year: str, annotation_path: str,
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
            if annotation.get("iscrowd", 0):
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
            # loadRes adds fields to the dicts it gets: keep the caller's intact.
            return coco.loadRes(copy.deepcopy(results))
        empty = COCO()
        empty.dataset = {"images": list(coco.dataset["images"]),
                         "categories": copy.deepcopy(coco.dataset["categories"]),
                         "annotations": []}
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


def evaluation_image_ids(dataset: utils.Dataset, limit: int,
                          image_ids: Sequence[int] | None) -> list[int]:
    """The internal image ids to evaluate: ``image_ids`` (default all), the first
    ``limit`` of them when limit > 0. ValueError, naming it, for a limit that is not an
    integer >= 0 (-1 dropped the last image), an id outside the data set, a repeated id
    (its detections counted twice) or no image at all."""
    if not is_int(limit) or limit < 0:
        raise ValueError(f"limit: expected an integer >= 0 (0: every image), got {limit!r}")
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    if limit:
        ids = ids[:int(limit)]
    bad = [i for i in ids if not 0 <= int(i) < len(dataset.image_info)]
    if bad:
        raise ValueError(f"image_ids: expected internal image ids in "
                         f"0..{len(dataset.image_info) - 1}, got {bad[:10]}")
    repeated = sorted(int(i) for i, n in Counter(int(i) for i in ids).items() if n > 1)
    if repeated:
        raise ValueError(f"image_ids: expected each image once (a repeat counts its "
                         f"detections twice), got {repeated[:10]} more than once")
    if not ids:
        raise ValueError("no images to evaluate: the data set (or image_ids) is empty")
    return [int(i) for i in ids]


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
    image_ids = evaluation_image_ids(dataset, limit, image_ids)
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
#  Training data
############################################################

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
