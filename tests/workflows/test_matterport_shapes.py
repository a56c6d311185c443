"""Matterport's train_shapes notebook, run the way a user runs it on this port.

The notebook's steps in order: imports (imgaug first), a Config subclass and
display(), a Dataset subclass, training the heads then all layers with the stage
messages printed, `keras_model.save_weights("mask_rcnn_shapes.h5")`, an inference
model that loads `find_last()` (both the 2.1 `[1]` style and the later path style),
`load_image_gt`, `detect(verbose=1)`, `display_instances` and the mAP loop with
`compute_ap`. Changed from the notebook only where a user must: 64 px images and the
small CPU backbone, and no COCO weights download.
"""
import imgaug  # noqa: F401 - the notebook's first imports; must work with numpy 2
from imgaug import augmenters as iaa  # noqa: F401

import os

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest

import mrcnn.model as modellib
from mrcnn import utils, visualize
from mrcnn.config import Config
from mrcnn.model import log
from mrcnn import weights as weights_io
from tests.helpers.shapes_dataset import ShapesDataset

pytestmark = pytest.mark.slow


class ShapesConfig(Config):
    """The notebook's config; sizes cut down for a CPU test."""
    NAME = "shapes"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 3  # background + 3 shapes
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TRAIN_ROIS_PER_IMAGE = 16
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    # A user on a CPU shrinks the network as well.
    BACKBONE = "resnet_tiny"
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    MASK_HEAD_CONV_CHANNELS = 32
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 5
    DETECTION_MAX_INSTANCES = 8
    MINI_MASK_SHAPE = (28, 28)


class InferenceConfig(ShapesConfig):
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The training half of the notebook; returns what the inference half needs."""
    model_dir = str(tmp_path_factory.mktemp("logs"))
    config = ShapesConfig()
    dataset_train = ShapesDataset.generate(8, seed=0)
    dataset_train.prepare()
    dataset_val = ShapesDataset.generate(3, seed=1)
    dataset_val.prepare()
    model = modellib.MaskRCNN(mode="training", config=config, model_dir=model_dir)
    return model, config, dataset_train, dataset_val, model_dir


def test_config_display_prints_the_table(capsys):
    ShapesConfig().display()
    out = capsys.readouterr().out
    assert "Configurations:" in out
    assert "NUM_CLASSES                    4" in out
    assert "IMAGE_SHAPE" in out and "[64 64  3]" in out


def test_dataset_inspection_as_the_notebook(run):
    _, _, dataset_train, _, _ = run
    image_ids = np.random.choice(dataset_train.image_ids, 2)
    for image_id in image_ids:
        image = dataset_train.load_image(image_id)
        mask, class_ids = dataset_train.load_mask(image_id)
        visualize.display_top_masks(image, mask, class_ids, dataset_train.class_names)
        plt.close("all")
        assert mask.shape[:2] == image.shape[:2] and mask.shape[2] == class_ids.shape[0]


def test_training_then_inference_then_map(run, capsys):
    model, config, dataset_train, dataset_val, model_dir = run

    # Train the head branches, then fine tune all layers (the notebook's two cells).
    model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE, epochs=1,
                layers="heads")
    out = capsys.readouterr().out
    assert "Starting at epoch 0. LR=0.001" in out
    assert "Checkpoint Path: " in out and "mask_rcnn_shapes_{epoch:04d}.h5" in out
    assert "Selecting layers to train" in out and "mrcnn_class_logits" in out
    assert "res2a_branch2a" not in out  # heads only
    model.train(dataset_train, dataset_val, learning_rate=config.LEARNING_RATE / 10,
                epochs=2, layers="all")
    out = capsys.readouterr().out
    assert "Starting at epoch 1. LR=0.0001" in out and "res2a_branch2a" in out

    # Save weights the notebook's way: a Keras 2 layout .h5 (not Keras 3's error).
    model_path = os.path.join(model_dir, "mask_rcnn_shapes.h5")
    model.keras_model.save_weights(model_path)
    with h5py.File(model_path, "r") as f:
        assert "layer_names" in f.attrs and "mrcnn_class_logits" in f

    # Recreate the model in inference mode and load the last trained weights.
    inference_config = InferenceConfig()
    model = modellib.MaskRCNN(mode="inference", config=inference_config,
                              model_dir=model_dir)
    last = model.find_last()
    assert os.path.basename(last) == "mask_rcnn_shapes_0002.h5"
    assert model.find_last()[1] == last  # Matterport 2.1 code: find_last()[1]
    print("Loading weights from ", last)
    model.load_weights(last, by_name=True)
    trained = weights_io.weight_map(run[0].keras_model)
    loaded = weights_io.weight_map(model.keras_model)
    for key in ("mrcnn_class_logits/kernel", "fpn_c5p5/kernel", "conv1/kernel"):
        np.testing.assert_array_equal(np.asarray(loaded[key]), np.asarray(trained[key]))
    # The file save_weights wrote loads too, with the same values.
    model.load_weights(model_path, by_name=True)
    np.testing.assert_array_equal(
        np.asarray(weights_io.weight_map(model.keras_model)["mrcnn_bbox_fc/kernel"]),
        np.asarray(trained["mrcnn_bbox_fc/kernel"]))

    # Test on a random image.
    image_id = int(np.random.choice(dataset_val.image_ids))
    original_image, image_meta, gt_class_id, gt_bbox, gt_mask = modellib.load_image_gt(
        dataset_val, inference_config, image_id, use_mini_mask=False)
    log("original_image", original_image)
    log("gt_bbox", gt_bbox)
    out = capsys.readouterr().out
    assert "original_image" in out and "shape: (64, 64, 3)" in out
    results = model.detect([original_image], verbose=1)
    assert "Processing 1 images" in capsys.readouterr().out
    r = results[0]
    assert set(r) == {"rois", "class_ids", "scores", "masks"}
    assert r["masks"].shape[:2] == original_image.shape[:2]
    visualize.display_instances(original_image, r["rois"], r["masks"], r["class_ids"],
                                dataset_val.class_names, r["scores"], ax=plt.gca())
    plt.close("all")

    # Evaluation: VOC-style mAP @ IoU=0.5 over the validation images.
    APs = []
    for image_id in dataset_val.image_ids:
        image, image_meta, gt_class_id, gt_bbox, gt_mask = modellib.load_image_gt(
            dataset_val, inference_config, image_id, use_mini_mask=False)
        molded_images = np.expand_dims(modellib.mold_image(image, inference_config), 0)
        assert molded_images.shape == (1, 64, 64, 3)
        r = model.detect([image], verbose=0)[0]
        AP, precisions, recalls, overlaps = utils.compute_ap(
            gt_bbox, gt_class_id, gt_mask, r["rois"], r["class_ids"], r["scores"], r["masks"])
        APs.append(AP)
        # The ground truth as a perfect detection scores 1.
        perfect = utils.compute_ap(gt_bbox, gt_class_id, gt_mask, gt_bbox, gt_class_id,
                                   np.ones(len(gt_class_id)), gt_mask)[0]
        assert perfect == pytest.approx(1.0)
    print("mAP: ", np.mean(APs))
    assert 0.0 <= np.mean(APs) <= 1.0


def test_matterport_generator_feeds_fit_with_bool_masks(run):
    """modellib.data_generator yields Matterport's bool masks; the training graph's
    uint8 mask input takes them in fit."""
    model, config, dataset_train, _, _ = run
    generator = modellib.data_generator(dataset_train, config, shuffle=True, batch_size=2)
    inputs, outputs = next(generator)
    assert inputs[6].dtype == bool and outputs == ()
    if model.keras_model.optimizer is None:
        model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    history = model.keras_model.fit(generator, steps_per_epoch=1, epochs=1, verbose=0,
                                    shuffle=False)
    assert np.isfinite(history.history["loss"][0])
