"""Reading COCO-format data sets into a utils.Dataset (Matterport's layout).

Layout: ``{dataset_dir}/annotations/instances_{subset}{year}.json`` and the images in
``{dataset_dir}/{subset}{year}/``; COCO 2014's minival and valminusminival read their
images from val{year}. Nothing is downloaded.

Shared by samples/coco/coco.py (CocoDataset) and siamese_mrcnn.coco
(IndexedCocoDataset), which differ in what they do around the loading.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from typing import Any, Sequence

from pycocotools.coco import COCO

logger = logging.getLogger(__name__)

# Matterport's subsets of COCO 2014 whose images live in val2014/.
VAL2014_SUBSETS = ("minival", "valminusminival")


def coco_paths(dataset_dir: str, subset: str, year: str) -> tuple[str, str]:
    """Returns (annotation file, image folder) of a subset."""
    annotation_path = os.path.join(dataset_dir, "annotations",
                                   "instances_{}{}.json".format(subset, year))
    image_subset = "val" if subset in VAL2014_SUBSETS else subset
    image_dir = os.path.join(dataset_dir, "{}{}".format(image_subset, year))
    return annotation_path, image_dir


def read_coco_annotations(path: str) -> COCO:
    """Reads a COCO instances file into a pycocotools COCO object, without its prints.

    Raises FileNotFoundError when the file is missing and ValueError, naming the file,
    when it is not JSON or lacks the images / annotations / categories lists.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"Corrupt COCO annotation file {path}: not valid JSON ({error})"
                         ) from error
    if not isinstance(data, dict):
        raise ValueError(f"Corrupt COCO annotation file {path}: expected a JSON object, "
                         f"got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"Corrupt COCO annotation file {path}: expected a list "
                             f"'{key}', got {type(data.get(key)).__name__}")
    coco = COCO()
    coco.dataset = data
    # pycocotools prints its progress; keep the log clean.
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def images_with_classes(coco: COCO, class_ids: Sequence[int]) -> list[int]:
    """Sorted COCO ids of the images with an annotation (crowds too) of one of class_ids.
    ValueError naming the ids that are no category of the file (pycocotools' KeyError)."""
    known = sorted(coco.getCatIds())
    unknown = sorted({int(c) for c in class_ids} - set(known))
    if unknown:
        raise ValueError(f"class_ids: {unknown[:10]} are no COCO category ids of these "
                         f"annotations (they have {len(known)}: {known[:10]}"
                         f"{' ...' if len(known) > 10 else ''})")
    return sorted({i for class_id in class_ids for i in coco.getImgIds(catIds=[class_id])})


def add_coco_images(dataset: Any, coco: COCO, class_ids: Sequence[int],
                    image_ids: Sequence[int], image_dir: str, source: str = "coco") -> None:
    """Adds the classes and images to a utils.Dataset, in the order given.

    Each image's info carries its path, width, height and its annotations of
    class_ids (crowds included).
    """
    if len(image_ids) and not os.path.isdir(image_dir):
        # Annotations downloaded without their images: every load_image would fail.
        logger.warning("COCO image folder not found: %s (the images of %d annotated "
                       "entries); loading them will fail", image_dir, len(image_ids))
    for class_id in class_ids:
        dataset.add_class(source, class_id, coco.loadCats(class_id)[0]["name"])
    for image_id in image_ids:
        info = coco.imgs[image_id]
        dataset.add_image(
            source, image_id=image_id,
            path=os.path.join(image_dir, info["file_name"]),
            width=info["width"], height=info["height"],
            annotations=coco.loadAnns(coco.getAnnIds(
                imgIds=[image_id], catIds=class_ids, iscrowd=None)))
