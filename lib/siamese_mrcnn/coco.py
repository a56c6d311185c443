"""COCO-format data for Siamese Mask R-CNN: IndexedCocoDataset and class splits.

Layout read (Matterport's): ``{dataset_dir}/annotations/instances_{subset}{year}.json``
and images under ``{dataset_dir}/{subset}{year}/``. Nothing is downloaded.

Internal class ids are 1..N in the order of the sorted COCO category ids
(0 is the background), so for COCO 1..80 as in the paper.

Differences from the old ``IndexedCocoDataset``:

- The indices list only non-crowd annotations: a category that occurs in an
  image only as a crowd can neither serve as a reference nor as a positive
  there. The old index could send the reference drawing into an endless loop.
- ``set_active_classes`` is the one way to choose the active classes (the old
  method stored them where nothing read them; the notebooks set
  ``ACTIVE_CLASSES`` directly, which still works: it is the same value).
- Sub-splitting train2017 into train / validation sorts the image ids first;
  the old code sliced the ids in ``set`` order. As in the old code,
  ``load_coco(dir, "train")`` loads the training part only (``subsubset="train"``);
  a train set too small for that split is an error instead of an empty data set.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
from pycocotools.coco import COCO

from mrcnn.coco import CocoDataset
from mrcnn.coco_io import (add_coco_images, coco_paths, images_with_classes,
                           read_coco_annotations)

logger = logging.getLogger(__name__)

SOURCE = "coco"

# Images of the last part of train2017 (sorted by id) used for validation.
DEFAULT_VAL_COUNT = 3000


############################################################
#  Class splits
############################################################

def get_class_split(split: Union[int, str], num_classes: int = 80
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """One-shot (held-out) and background (training) internal class ids.

    split: 1..4 (also '1'..'4' or 'i1'..'i4'): class i + 4k (k = 0, 1, ...) is
        held out, every other class is a background class; 'full': no class is
        held out.
    num_classes: number of object categories (80 for COCO), ids 1..num_classes.
    Returns (one_shot_ids, background_ids), sorted int arrays.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError("num_classes: expected an integer >= 1, got {!r}".format(num_classes))
    all_ids = np.arange(1, num_classes + 1)
    key = str(split).strip().lower()
    if key == "full":
        return np.array([], dtype=int), all_ids
    if key.startswith("i"):
        key = key[1:]
    if key not in ("1", "2", "3", "4"):
        raise ValueError("split: expected 1, 2, 3, 4 or 'full', got {!r}".format(split))
    one_shot = all_ids[(all_ids - int(key)) % 4 == 0]
    if one_shot.size == 0:
        raise ValueError("split {}: no class is held out among {} classes".format(
            split, num_classes))
    return one_shot, all_ids[(all_ids - int(key)) % 4 != 0]


def split_train_val(image_ids: Iterable[int], val_count: int = DEFAULT_VAL_COUNT
                    ) -> Tuple[list, list]:
    """Deterministic train / validation split of COCO image ids.

    The ids are sorted; the last val_count are the validation images.
    Returns (train_ids, val_ids), both sorted lists.
    """
    ids = sorted(int(i) for i in image_ids)
    if isinstance(val_count, bool) or not isinstance(val_count, (int, np.integer)) \
            or not 0 <= val_count < len(ids):
        raise ValueError("val_count: expected an integer in [0, {}) for {} images, "
                         "got {!r}".format(len(ids), len(ids), val_count))
    cut = len(ids) - int(val_count)
    return ids[:cut], ids[cut:]


############################################################
#  Annotation file
############################################################

def annotation_path(dataset_dir: str, subset: str, year: str) -> str:
    """Path of the COCO annotation file of a subset."""
    return coco_paths(dataset_dir, subset, year)[0]


# The Siamese modules' name for the shared reader (FileNotFoundError / ValueError
# naming the file, pycocotools' prints silenced).
load_coco_api = read_coco_annotations


############################################################
#  Dataset
############################################################

def _read_class_ids(path: Union[str, os.PathLike]) -> list[int]:
    """The class ids of a text file, one per line (blank lines skipped); ValueError naming
    the line that is not an integer (int()'s message named neither file nor line)."""
    ids = []
    with open(path, "r", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                ids.append(int(line))
            except ValueError:
                raise ValueError(f"{os.fspath(path)}, line {number}: expected one integer "
                                 f"class id per line, got {line.strip()[:40]!r}") from None
    return ids


class IndexedCocoDataset(CocoDataset):
    """Matterport's CocoDataset with image<->category indices and active classes.

    Masks, crowds, image references and annToRLE / annToMask are CocoDataset's.

    After ``prepare()`` (which builds the indices):
    image_category_index[i]: sorted internal class ids with a non-crowd
        instance in image i (internal image id).
    category_image_index[c]: int array of the internal image ids with a
        non-crowd instance of class c (empty for c = 0, the background).
    """

    def __init__(self, class_map: Any = None):
        super().__init__(class_map)
        self.image_category_index: list = []
        self.category_image_index: list = []
        self._active_classes: Optional[np.ndarray] = None

    # ---- loading -------------------------------------------------------
    def load_coco(self, dataset_dir: str, subset: str, year: str = "2017",
                  class_ids: Optional[Sequence[int]] = None, class_map: Any = None,
                  return_coco: bool = False, auto_download: bool = False,
                  subsubset: Optional[str] = "train",
                  val_count: int = DEFAULT_VAL_COUNT,
                  annotations: Optional[COCO] = None) -> Optional[COCO]:
        """Loads a subset of a COCO-format data set (Matterport's signature).

        dataset_dir: root directory (annotations/ and {subset}{year}/).
        subset: 'train', 'val', 'minival' or 'valminusminival' (the last two
            read their images from val{year}).
        class_ids: COCO category ids to load (default all); only images with
            an annotation of one of them are added.
        class_map: not implemented (as in Matterport).
        return_coco: return the pycocotools COCO object.
        auto_download: not supported (True raises ValueError).
        subsubset: for subset 'train' only (as in the paper code): 'train' (the
            default: all but the last val_count images), 'val' (those val_count
            images, the validation set) or None (all images). See split_train_val().
            Other subsets always load all their images.
        annotations: this subset's annotation file already read (a COCO object, e.g.
            returned by an earlier load_coco): it is used instead of reading the file
            again (COCO's train file takes tens of seconds to parse).
        """
        if auto_download:
            self.auto_download(dataset_dir, subset, year)  # refuses, saying what to get
        path, image_dir = coco_paths(dataset_dir, subset, year)
        coco = annotations if annotations is not None else read_coco_annotations(path)

        class_ids = sorted(class_ids) if class_ids else sorted(coco.getCatIds())
        image_ids = images_with_classes(coco, class_ids)
        if subset == "train":
            image_ids = self._select_subsubset(image_ids, subsubset, val_count)
        add_coco_images(self, coco, class_ids, image_ids, image_dir, source=SOURCE)
        logger.info("Loaded %d images and %d classes from %s", len(image_ids),
                    len(class_ids), path)
        return coco if return_coco else None

    @staticmethod
    def _select_subsubset(image_ids: list, subsubset: Optional[str], val_count: int) -> list:
        if subsubset is None:
            return image_ids
        if subsubset not in ("train", "val"):
            raise ValueError("subsubset: expected None, 'train' or 'val', got {!r}".format(
                subsubset))
        if not isinstance(val_count, bool) and isinstance(val_count, (int, np.integer)) \
                and 0 <= val_count and val_count >= len(image_ids):
            raise ValueError(
                "subsubset={!r}: the train subset has {} images, not more than val_count="
                "{} (the validation part): pass subsubset=None to load all of them, or a "
                "smaller val_count".format(subsubset, len(image_ids), val_count))
        train_ids, val_ids = split_train_val(image_ids, val_count)
        return train_ids if subsubset == "train" else val_ids

    def prepare(self, class_map: Any = None) -> None:
        """Matterport's prepare(), then the indices and the default active
        classes (all classes)."""
        super().prepare(class_map)
        self.build_indices()

    # ---- indices -------------------------------------------------------
    def build_indices(self) -> None:
        """Builds image_category_index and category_image_index (needs prepare())."""
        self.image_category_index = [self._image_categories(image_id)
                                     for image_id in range(len(self.image_info))]
        members: list = [[] for _ in range(self.num_classes)]
        for image_id, categories in enumerate(self.image_category_index):
            for category in categories:
                members[category].append(image_id)
        self.category_image_index = [np.array(ids, dtype=int) for ids in members]

    def _image_categories(self, image_id: int) -> list:
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return []
        categories = set()
        for annotation in info["annotations"]:
            source_id = "{}.{}".format(SOURCE, annotation["category_id"])
            if not annotation.get("iscrowd", 0) and source_id in self.class_from_source_map:
                categories.add(self.map_source_class_id(source_id))
        return sorted(categories)

    # ---- active classes -------------------------------------------------
    def set_active_classes(self, active_classes: Union[Iterable[int], str]) -> None:
        """Sets the internal class ids that may serve as references.

        active_classes: class ids (1..num_classes-1), or the path of a text
            file with one id per line.
        """
        if isinstance(active_classes, (str, os.PathLike)):
            active_classes = _read_class_ids(active_classes)
        ids = np.unique(np.asarray(list(active_classes), dtype=int))
        num_classes = len(self.class_info)
        bad = ids[(ids < 1) | (ids >= num_classes)]
        if bad.size:
            raise ValueError("active classes: expected internal class ids in 1..{}, got "
                             "{}".format(num_classes - 1, bad.tolist()))
        self._active_classes = ids

    def get_active_classes(self) -> np.ndarray:
        """The active internal class ids (default: every class but the background)."""
        if self._active_classes is None:
            return np.arange(1, len(self.class_info))
        return self._active_classes.copy()

    @property
    def active_classes(self) -> list:
        """The class ids set with set_active_classes (the paper code's attribute);
        [] when none were set (then every class is active, see get_active_classes)."""
        return [] if self._active_classes is None else self._active_classes.tolist()

    @active_classes.setter
    def active_classes(self, value: Iterable[int]) -> None:
        value = list(value)
        if value:
            self.set_active_classes(value)
        else:
            self._active_classes = None

    def get_class_ids(self, active_classes: Optional[Iterable[int]], dataset_dir: str,
                      subset: str, year: str) -> list:
        """The given ids that are category ids of a subset's annotation file, sorted.

        active_classes: COCO category ids; None uses self.active_classes (the paper
            code always used those and ignored this argument).
        Useful as load_coco's class_ids. Reads annotations/instances_{subset}{year}.json.
        """
        wanted = self.active_classes if active_classes is None else active_classes
        categories = set(read_coco_annotations(annotation_path(dataset_dir, subset,
                                                               str(year))).getCatIds())
        return sorted(int(c) for c in set(int(c) for c in wanted) if c in categories)

    # The old notebooks assign dataset.ACTIVE_CLASSES directly.
    @property
    def ACTIVE_CLASSES(self) -> np.ndarray:  # noqa: N802 - the old public name
        return self.get_active_classes()

    @ACTIVE_CLASSES.setter
    def ACTIVE_CLASSES(self, value: Iterable[int]) -> None:  # noqa: N802
        self.set_active_classes(value)
