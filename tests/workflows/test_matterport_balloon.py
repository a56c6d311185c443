"""Matterport's balloon sample, run the way a user runs it on this port.

A VIA-annotated data set (train/ and val/ folders, each with via_region_data.json of
polygon regions, in both the VIA 1 dict and the VIA 2 list form), the sample's Dataset
subclass, `train` on the heads, then `--weights last`: a new training model that
loads `find_last()`, continues at the next epoch in the same log folder, and an
inference model that detects and makes the colour splash. Changed only where a user
must: sizes, and no COCO weights.
"""
import imgaug  # noqa: F401 - the sample's imports

import json
import os

import numpy as np
import pytest
import skimage.color
import skimage.draw
import skimage.io

import mrcnn.model as modellib
from mrcnn import utils
from mrcnn.config import Config

pytestmark = pytest.mark.slow


class BalloonConfig(Config):
    """The sample's config; sizes cut down for a CPU test."""
    NAME = "balloon"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 1  # background + balloon
    STEPS_PER_EPOCH = 2
    DETECTION_MIN_CONFIDENCE = 0.9
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    BACKBONE = "resnet_tiny"
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    MASK_HEAD_CONV_CHANNELS = 32
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32
    TRAIN_ROIS_PER_IMAGE = 16
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 4
    DETECTION_MAX_INSTANCES = 8
    VALIDATION_STEPS = 1


class BalloonDataset(utils.Dataset):
    """The sample's data set: one class, polygons from VIA's JSON export."""

    def load_balloon(self, dataset_dir, subset):
        self.add_class("balloon", 1, "balloon")
        assert subset in ["train", "val"]
        dataset_dir = os.path.join(dataset_dir, subset)
        with open(os.path.join(dataset_dir, "via_region_data.json")) as f:
            annotations = list(json.load(f).values())
        # VIA keeps images without regions: skip them.
        annotations = [a for a in annotations if a["regions"]]
        for a in annotations:
            # VIA 1.x stores regions as a dict, VIA 2.x as a list.
            if isinstance(a["regions"], dict):
                polygons = [r["shape_attributes"] for r in a["regions"].values()]
            else:
                polygons = [r["shape_attributes"] for r in a["regions"]]
            image_path = os.path.join(dataset_dir, a["filename"])
            height, width = skimage.io.imread(image_path).shape[:2]
            self.add_image("balloon", image_id=a["filename"], path=image_path,
                           width=width, height=height, polygons=polygons)

    def load_mask(self, image_id):
        image_info = self.image_info[image_id]
        if image_info["source"] != "balloon":
            return super().load_mask(image_id)
        info = self.image_info[image_id]
        mask = np.zeros([info["height"], info["width"], len(info["polygons"])],
                        dtype=np.uint8)
        for i, p in enumerate(info["polygons"]):
            rr, cc = skimage.draw.polygon(p["all_points_y"], p["all_points_x"],
                                          shape=mask.shape[:2])
            mask[rr, cc, i] = 1
        return mask.astype(bool), np.ones([mask.shape[-1]], dtype=np.int32)

    def image_reference(self, image_id):
        info = self.image_info[image_id]
        if info["source"] == "balloon":
            return info["path"]
        return super().image_reference(image_id)


def _octagon(cy, cx, r):
    angles = np.arange(8) * np.pi / 4
    return (cx + r * np.cos(angles)).round().tolist(), (cy + r * np.sin(angles)).round().tolist()


def write_via_dataset(root, seed=0):
    """train/ (4 images, VIA 1 regions dict) and val/ (2 images, VIA 2 list, plus an
    image without regions), 64 px, red balloons on grey."""
    rng = np.random.default_rng(seed)
    for subset, count, as_list in (("train", 4, False), ("val", 2, True)):
        folder = os.path.join(root, subset)
        os.makedirs(folder)
        annotations = {}
        for i in range(count + (1 if as_list else 0)):
            image = np.full((64, 64, 3), 120, np.uint8)
            regions = []
            if i < count:
                for _ in range(2):
                    cy, cx, r = rng.integers(14, 50), rng.integers(14, 50), rng.integers(6, 12)
                    xs, ys = _octagon(cy, cx, r)
                    rr, cc = skimage.draw.polygon(ys, xs, shape=(64, 64))
                    image[rr, cc] = (220, 30, 30)
                    regions.append({"shape_attributes": {"name": "polygon",
                                                         "all_points_x": xs,
                                                         "all_points_y": ys},
                                    "region_attributes": {}})
            name = f"{subset}{i}.png"
            skimage.io.imsave(os.path.join(folder, name), image, check_contrast=False)
            size = os.path.getsize(os.path.join(folder, name))
            annotations[f"{name}{size}"] = {
                "filename": name, "size": size, "file_attributes": {},
                "regions": regions if as_list else {str(k): r for k, r in enumerate(regions)}}
        with open(os.path.join(folder, "via_region_data.json"), "w") as f:
            json.dump(annotations, f)


def _datasets(root):
    dataset_train = BalloonDataset()
    dataset_train.load_balloon(root, "train")
    dataset_train.prepare()
    dataset_val = BalloonDataset()
    dataset_val.load_balloon(root, "val")
    dataset_val.prepare()
    return dataset_train, dataset_val


def color_splash(image, mask):
    """The sample's splash: grey everywhere but the detected balloons."""
    gray = np.repeat(skimage.color.rgb2gray(image)[..., None] * 255, 3, axis=-1)
    if mask.shape[-1] > 0:
        mask = (np.sum(mask, -1, keepdims=True) >= 1)
        return np.where(mask, image, gray).astype(np.uint8)
    return gray.astype(np.uint8)


def test_train_then_resume_with_weights_last_then_splash(tmp_path, capsys):
    root = str(tmp_path / "balloon")
    write_via_dataset(root)
    logs = str(tmp_path / "logs")
    dataset_train, dataset_val = _datasets(root)
    assert dataset_train.num_images == 4 and dataset_val.num_images == 2  # empty one skipped
    assert dataset_train.class_names == ["BG", "balloon"]
    mask, class_ids = dataset_val.load_mask(0)
    assert mask.dtype == bool and mask.shape == (64, 64, 2) and class_ids.tolist() == [1, 1]

    # balloon.py train --weights=none
    config = BalloonConfig()
    model = modellib.MaskRCNN(mode="training", config=config, model_dir=logs)
    print("Training network heads")
    model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE, epochs=1,
                layers="heads")
    first_run = model.log_dir
    assert os.path.isfile(os.path.join(first_run, "mask_rcnn_balloon_0001.h5"))

    # balloon.py train --weights=last: a new process would build the model again.
    model = modellib.MaskRCNN(mode="training", config=config, model_dir=logs)
    weights_path = model.find_last()
    print("Loading weights ", weights_path)
    model.load_weights(weights_path, by_name=True)
    assert model.epoch == 1 and model.log_dir == first_run
    model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE, epochs=2,
                layers="heads")
    out = capsys.readouterr().out
    assert "Starting at epoch 1." in out
    assert os.path.isfile(os.path.join(first_run, "mask_rcnn_balloon_0002.h5"))
    assert sorted(os.listdir(logs)) == [os.path.basename(first_run)]  # same run folder

    # balloon.py splash --weights=last --image=...
    class InferenceConfig(BalloonConfig):
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        DETECTION_MIN_CONFIDENCE = 0.0  # an undertrained model: keep what it finds
    model = modellib.MaskRCNN(mode="inference", config=InferenceConfig(), model_dir=logs)
    weights_path = model.find_last()
    assert weights_path.endswith("mask_rcnn_balloon_0002.h5")
    model.load_weights(weights_path, by_name=True)
    image = skimage.io.imread(dataset_val.image_info[0]["path"])
    r = model.detect([image], verbose=1)[0]
    splash = color_splash(image, r["masks"])
    assert splash.shape == image.shape and splash.dtype == np.uint8
    inside = r["masks"].any(axis=-1)
    np.testing.assert_array_equal(splash[inside], image[inside])
    if (~inside).any():
        outside = splash[~inside]
        assert (outside[:, 0] == outside[:, 1]).all()  # grey
