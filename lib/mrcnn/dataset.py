"""The Dataset base class (Matterport's mrcnn.utils.Dataset; re-exported there).
"""
from __future__ import annotations

import logging
from typing import Tuple

import numpy as np
import skimage.color
import skimage.io

logger = logging.getLogger(__name__)


############################################################
#  Dataset
############################################################

class Dataset(object):
    """The base class for dataset classes.

    Subclass it and add the data-set specific loading, e.g.::

        class CatsAndDogsDataset(Dataset):
            def load_cats_and_dogs(self): ...
            def load_mask(self, image_id): ...
            def image_reference(self, image_id): ...

    Call ``prepare()`` after adding classes and images.
    """

    def __init__(self, class_map=None):
        self._image_ids = []
        self.image_info = []
        # Background is always the first class
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids = {}

    # Built by prepare(); reading one before it was Python's bare AttributeError.
    _SET_BY_PREPARE = frozenset({
        "num_classes", "class_ids", "class_names", "num_images", "class_from_source_map",
        "image_from_source_map", "sources"})

    def __getattr__(self, name: str):
        # Called only for attributes that are not set.
        if name in Dataset._SET_BY_PREPARE:
            raise AttributeError(f"{type(self).__name__}.{name} is set by prepare(): call "
                                 "dataset.prepare() after adding the classes and images")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def add_class(self, source: str, class_id: int, class_name: str) -> None:
        """Register a class of a source; a repeated (source, id) is ignored."""
        if "." in source:
            raise ValueError("Source name cannot contain a dot; got {!r}".format(source))
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({
            "source": source,
            "id": class_id,
            "name": class_name,
        })

    def add_image(self, source: str, image_id, path, **kwargs) -> None:
        """Register an image; extra keyword arguments are kept in its info."""
        image_info = {
            "id": image_id,
            "source": source,
            "path": path,
        }
        image_info.update(kwargs)
        self.image_info.append(image_info)

    def image_reference(self, image_id: int) -> str:
        """Return a link to the image in its source Website or details about
        the image that help looking it up or debugging it.

        Override for your dataset, but pass to this function
        if you encounter images not in your dataset.
        """
        return ""

    def prepare(self, class_map=None) -> None:
        """Build internal ids and the source <-> internal maps.

        class_map is accepted for API compatibility and, as in Matterport,
        not used.
        """
        def clean_name(name):
            """Shorter object names for cleaner display."""
            return ",".join(name.split(",")[:1])

        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [clean_name(c["name"]) for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)

        # "source.id" -> internal id
        self.class_from_source_map = {"{}.{}".format(info["source"], info["id"]): id
                                      for info, id in zip(self.class_info, self.class_ids)}
        self.image_from_source_map = {"{}.{}".format(info["source"], info["id"]): id
                                      for info, id in zip(self.image_info, self.image_ids)}

        # Map sources to the internal class ids they support (BG in all).
        self.sources = list(set([i["source"] for i in self.class_info]))
        self.source_class_ids = {}
        for source in self.sources:
            self.source_class_ids[source] = [
                i for i, info in enumerate(self.class_info)
                if i == 0 or source == info["source"]]

    def map_source_class_id(self, source_class_id: str) -> int:
        """Internal class id of a "source.class_id" string.

        For example: dataset.map_source_class_id("coco.12") -> 23
        """
        return self.class_from_source_map[source_class_id]

    def get_source_class_id(self, class_id: int, source: str):
        """Map an internal class ID to the class ID in the source dataset."""
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError("Class {} belongs to source {!r}, not {!r}".format(
                class_id, info["source"], source))
        return info["id"]

    def append_data(self, class_info, image_info) -> None:
        """Matterport's unfinished merge API, kept for compatibility.

        Like the original it ignores its arguments and builds
        external_to_class_id / external_to_image_id from the "map" entries
        of self.class_info and the "ds" entries of self.image_info.
        """
        self.external_to_class_id = {}
        for i, c in enumerate(self.class_info):
            for ds, id in c["map"]:
                self.external_to_class_id[ds + str(id)] = i

        self.external_to_image_id = {}
        for i, info in enumerate(self.image_info):
            self.external_to_image_id[info["ds"] + str(info["id"])] = i

    @property
    def image_ids(self):
        return self._image_ids

    def source_image_link(self, image_id: int):
        """Returns the path or URL to the image. Override this to return a
        URL to the image if it's available online for easy debugging.
        """
        return self.image_info[image_id]["path"]

    def load_image(self, image_id: int) -> np.ndarray:
        """Load the specified image and return a [H,W,3] Numpy array.

        Grayscale images are converted to RGB and an alpha channel dropped.
        """
        image = skimage.io.imread(self.image_info[image_id]["path"])
        return _to_rgb(image)

    def load_mask(self, image_id: int) -> Tuple[np.ndarray, np.ndarray]:
        """Load instance masks for the given image.

        Override this for your data set. Returns:
            masks: A bool array of shape [height, width, instance count] with
                a binary mask per instance.
            class_ids: a 1D array of class IDs of the instance masks.
        The base class returns empty arrays.
        """
        mask = np.empty([0, 0, 0])
        class_ids = np.empty([0], np.int32)
        return mask, class_ids


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """[H,W], [H,W,1], [H,W,2] (gray+alpha), [H,W,3] or [H,W,4] -> [H,W,3]."""
    if image.ndim == 3 and image.shape[-1] in (1, 2):
        image = image[..., 0]
    if image.ndim != 3:
        image = skimage.color.gray2rgb(image)
    if image.shape[-1] == 4:
        image = image[..., :3]
    return image
