"""Matterport's demo notebook: mask_rcnn_coco.h5 into the COCO inference model, detect
on a photo with verbose=1 and draw the instances.

The weights file is written by the test in mask_rcnn_coco.h5's exact Keras 2 layout
(every group, name and shape of the released file; seeded random values), so the
demo's load_weights(COCO_MODEL_PATH, by_name=True) runs on the real graph (ResNet-101,
81 classes). Changed from the notebook only where a CPU user would: 256 px images.
"""
import imgaug  # noqa: F401 - the notebook's imports

import os
import random

import matplotlib.pyplot as plt
import numpy as np
import pytest
import skimage.io

import mrcnn.model as modellib
from mrcnn import visualize
from mrcnn import weights as weights_io
from samples.coco import coco
from tests.helpers.legacy_h5 import load_layout, write_legacy_h5

pytestmark = pytest.mark.slow

class_names = ["BG"] + [f"class {i}" for i in range(1, 81)]  # the demo lists COCO's 80


def test_demo_loads_coco_weights_and_detects(tmp_path, capsys):
    COCO_MODEL_PATH = str(tmp_path / "mask_rcnn_coco.h5")
    values = write_legacy_h5(COCO_MODEL_PATH, load_layout("matterport_coco"), seed=5)
    IMAGE_DIR = tmp_path / "images"
    IMAGE_DIR.mkdir()
    rng = np.random.default_rng(0)
    skimage.io.imsave(str(IMAGE_DIR / "street.png"),
                      rng.integers(0, 256, (200, 300, 3), dtype=np.uint8), check_contrast=False)

    class InferenceConfig(coco.CocoConfig):
        # Set batch size to 1 since we'll be running inference on one image at a time.
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        IMAGE_MIN_DIM = 256  # a CPU user's size
        IMAGE_MAX_DIM = 256

    config = InferenceConfig()
    config.display()
    assert "BACKBONE                       resnet101" in capsys.readouterr().out

    model = modellib.MaskRCNN(mode="inference", model_dir=str(tmp_path / "logs"),
                              config=config)
    model.load_weights(COCO_MODEL_PATH, by_name=True)
    loaded = weights_io.weight_map(model.keras_model)
    for key in ("conv1/kernel", "res4w_branch2c/kernel", "mrcnn_mask/kernel"):
        np.testing.assert_array_equal(np.asarray(loaded[key]), values[key])

    file_names = next(os.walk(IMAGE_DIR))[2]
    image = skimage.io.imread(os.path.join(IMAGE_DIR, random.choice(file_names)))
    results = model.detect([image], verbose=1)
    out = capsys.readouterr().out
    assert "Processing 1 images" in out and "molded_images" in out
    r = results[0]
    assert r["masks"].shape[:2] == (200, 300)
    assert len(r["rois"]) == len(r["class_ids"]) == len(r["scores"]) == r["masks"].shape[2]
    visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"], class_names,
                                r["scores"])
    plt.close("all")
