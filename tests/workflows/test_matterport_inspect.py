"""Matterport's inspect_data, inspect_model and inspect_weights notebooks on this port.

The data is a tiny COCO 2014 layout with the minival split (the notebooks' default:
``load_coco(COCO_DIR, "minival")`` without a year). The notebooks' calls in order:
class listing, masks and boxes, resizing, mini masks, anchors, the data generator
with random ROIs and detection targets; an inference model with detect(verbose=1),
the RPN stages through ``model.ancestor`` and ``run_graph``, the head outputs and the
backbone activations; the weight histograms of ``get_trainable_layers`` and
``display_weight_stats``. Changed only where a user must: sizes and paths.
"""
import imgaug  # noqa: F401 - the notebooks' imports
from imgaug import augmenters as iaa

import os
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest

import mrcnn.model as modellib
from mrcnn import utils, visualize
from mrcnn.model import log
from samples.coco import coco
from tests.helpers.tiny_coco import CATEGORIES, write_tiny_coco

pytestmark = pytest.mark.slow


def small(config_class, **fields):
    """What a CPU user changes in the notebooks' configs: the sizes."""
    values = dict(BACKBONE="resnet_tiny", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64,
                  RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), TOP_DOWN_PYRAMID_SIZE=32,
                  FPN_CLASSIF_FC_LAYERS_SIZE=64, MASK_HEAD_CONV_CHANNELS=32,
                  POST_NMS_ROIS_TRAINING=64, POST_NMS_ROIS_INFERENCE=32,
                  TRAIN_ROIS_PER_IMAGE=16, RPN_TRAIN_ANCHORS_PER_IMAGE=32,
                  MAX_GT_INSTANCES=5, DETECTION_MAX_INSTANCES=8, MINI_MASK_SHAPE=(28, 28),
                  NUM_CLASSES=1 + len(CATEGORIES))
    values.update(fields)
    return type(config_class.__name__, (config_class,), values)()


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    """COCO 2014 layout: train2014, val2014, and minival / valminusminival from val."""
    tiny = write_tiny_coco(str(tmp_path_factory.mktemp("coco2014")), year="2014",
                           num_train=4, num_val=4)
    for subset in ("minival", "valminusminival"):
        shutil.copy(tiny.annotation_path("val"),
                    os.path.join(tiny.root, "annotations", f"instances_{subset}2014.json"))
    return tiny.root


@pytest.fixture(scope="module")
def dataset(coco_dir):
    dataset = coco.CocoDataset()
    dataset.load_coco(coco_dir, "minival")  # Matterport's default year: 2014
    dataset.prepare()
    return dataset


def test_inspect_data(dataset, capsys):
    config = small(coco.CocoConfig)
    print("Image Count: {}".format(len(dataset.image_ids)))
    print("Class Count: {}".format(dataset.num_classes))
    for i, info in enumerate(dataset.class_info):
        print("{:3}. {:50}".format(i, info["name"]))
    out = capsys.readouterr().out
    assert "Image Count: 4" in out and "Class Count: 4" in out
    assert all(os.path.dirname(i["path"]).endswith("val2014") for i in dataset.image_info)

    # Masks and boxes.
    image_id = int(np.random.choice(dataset.image_ids))
    image = dataset.load_image(image_id)
    mask, class_ids = dataset.load_mask(image_id)
    visualize.display_top_masks(image, mask, class_ids, dataset.class_names)
    bbox = utils.extract_bboxes(mask)
    log("image", image)
    log("mask", mask)
    log("class_ids", class_ids)
    log("bbox", bbox)
    visualize.display_instances(image, bbox, mask, class_ids, dataset.class_names)
    plt.close("all")
    for i in range(mask.shape[-1]):
        ys, xs = np.where(mask[:, :, i])
        assert bbox[i].tolist() == [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]

    # Resize as the model does.
    image, window, scale, padding, _ = utils.resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM,
        mode=config.IMAGE_RESIZE_MODE)
    mask = utils.resize_mask(mask, scale, padding)
    assert image.shape == (64, 64, 3) and mask.shape[:2] == (64, 64)

    # Mini masks, with and without augmentation.
    image, image_meta, class_ids, bbox, mask = modellib.load_image_gt(
        dataset, config, image_id, use_mini_mask=False)
    display = dataset.load_image(image_id)
    visualize.display_images([display] + [mask[:, :, i] for i in range(min(mask.shape[-1], 7))])
    image, image_meta, class_ids, bbox, mask = modellib.load_image_gt(
        dataset, config, image_id, augmentation=iaa.Fliplr(0.5), use_mini_mask=True)
    assert mask.shape[:2] == config.MINI_MASK_SHAPE
    full = utils.expand_mask(bbox, mask, image.shape)
    assert full.shape == image.shape[:2] + (mask.shape[-1],)
    plt.close("all")

    # Anchors.
    backbone_shapes = modellib.compute_backbone_shapes(config, config.IMAGE_SHAPE)
    anchors = utils.generate_pyramid_anchors(config.RPN_ANCHOR_SCALES,
                                             config.RPN_ANCHOR_RATIOS, backbone_shapes,
                                             config.BACKBONE_STRIDES,
                                             config.RPN_ANCHOR_STRIDE)
    num_levels = len(backbone_shapes)
    anchors_per_cell = len(config.RPN_ANCHOR_RATIOS)
    assert anchors.shape[0] == sum(anchors_per_cell * s[0] * s[1] for s in backbone_shapes)
    assert num_levels == 5

    # The data generator with random ROIs and detection targets.
    random_rois = 200
    g = modellib.data_generator(dataset, config, shuffle=True, random_rois=random_rois,
                                batch_size=4, detection_targets=True)
    [normalized_images, image_meta, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks,
     rpn_rois, rois], [mrcnn_class_ids, mrcnn_bbox, mrcnn_mask] = next(g)
    log("rois", rois)
    log("mrcnn_class_ids", mrcnn_class_ids)
    log("mrcnn_bbox", mrcnn_bbox)
    log("mrcnn_mask", mrcnn_mask)
    log("gt_masks", gt_masks)
    assert gt_masks.dtype == bool
    assert rpn_rois.shape == (4, random_rois, 4)
    assert rois.shape == (4, config.TRAIN_ROIS_PER_IMAGE, 4)
    assert mrcnn_class_ids.shape == (4, config.TRAIN_ROIS_PER_IMAGE, 1)
    b = 0
    sample_image = modellib.unmold_image(normalized_images[b], config)
    image_id = modellib.parse_image_meta(image_meta)["image_id"][b]
    print("image_id: ", image_id, dataset.image_reference(image_id))
    positive_anchor_ids = np.where(rpn_match[b] == 1)[0]
    refined_anchors = utils.apply_box_deltas(
        anchors[positive_anchor_ids],
        rpn_bbox[b, :len(positive_anchor_ids)] * config.RPN_BBOX_STD_DEV)
    # The RPN targets turn positive anchors into ground-truth boxes.
    ious = utils.compute_overlaps(refined_anchors, gt_boxes[b][gt_class_ids[b] > 0])
    assert len(positive_anchor_ids) and np.allclose(ious.max(axis=1), 1.0, atol=1e-3)
    visualize.draw_boxes(sample_image, boxes=anchors[positive_anchor_ids],
                         refined_boxes=refined_anchors)
    plt.close("all")


@pytest.fixture(scope="module")
def inference_model(tmp_path_factory):
    class InferenceConfig(coco.CocoConfig):
        GPU_COUNT = 1
        IMAGES_PER_GPU = 1
        DETECTION_MIN_CONFIDENCE = 0.0  # random weights: keep every detection
    # More slots than proposals, so the detections are zero padded as the notebook expects.
    config = small(InferenceConfig, DETECTION_MAX_INSTANCES=40)
    return modellib.MaskRCNN(mode="inference", model_dir=str(tmp_path_factory.mktemp("l")),
                             config=config)


def test_inspect_model(inference_model, dataset, capsys):
    model, config = inference_model, inference_model.config
    image_id = int(dataset.image_ids[0])
    image, image_meta, gt_class_id, gt_bbox, gt_mask = modellib.load_image_gt(
        dataset, config, image_id, use_mini_mask=False)
    results = model.detect([image], verbose=1)
    assert "Processing 1 images" in capsys.readouterr().out
    r = results[0]
    visualize.display_instances(image, r["rois"], r["masks"], r["class_ids"],
                                dataset.class_names, r["scores"], ax=plt.gca(),
                                title="Predictions")
    plt.close("all")

    # Run the RPN sub-graph, the way the notebook reaches inside the proposal layer.
    pillar = model.keras_model.get_layer("ROI").output
    nms_node = model.ancestor(pillar, "ROI/rpn_non_max_suppression:0")
    if nms_node is None:
        nms_node = model.ancestor(pillar, "ROI/rpn_non_max_suppression/NonMaxSuppressionV2:0")
    if nms_node is None:  # TF 1.9-1.10
        nms_node = model.ancestor(pillar, "ROI/rpn_non_max_suppression/NonMaxSuppressionV3:0")
    rpn = model.run_graph([image], [
        ("rpn_class", model.keras_model.get_layer("rpn_class").output),
        ("pre_nms_anchors", model.ancestor(pillar, "ROI/pre_nms_anchors:0")),
        ("refined_anchors", model.ancestor(pillar, "ROI/refined_anchors:0")),
        ("refined_anchors_clipped", model.ancestor(pillar, "ROI/refined_anchors_clipped:0")),
        ("post_nms_anchor_ix", nms_node),
        ("proposals", model.keras_model.get_layer("ROI").output),
    ])
    limit = 10
    sorted_anchor_ids = np.argsort(rpn["rpn_class"][:, :, 1].flatten())[::-1]
    visualize.draw_boxes(image, boxes=model.anchors[sorted_anchor_ids[:limit]])
    ixs = rpn["post_nms_anchor_ix"][:limit]
    visualize.draw_boxes(image, refined_boxes=rpn["refined_anchors_clipped"][0, ixs])
    plt.close("all")
    np.testing.assert_allclose(rpn["refined_anchors_clipped"][0, ixs],
                               rpn["proposals"][0, :len(ixs)], atol=1e-6)
    h, w = config.IMAGE_SHAPE[:2]
    proposals = rpn["proposals"][0, :limit] * np.array([h, w, h, w])
    recall, positive_anchor_ids = utils.compute_recall(model.anchors, gt_bbox, 0.7)
    print("All Anchors ({:5})       Recall: {:.3f}  Positive anchors: {}".format(
        model.anchors.shape[0], recall, len(positive_anchor_ids)))
    recall, _ = utils.compute_recall(proposals, gt_bbox, 0.7)
    assert 0.0 <= recall <= 1.0

    # The classifier and mask heads.
    mrcnn = model.run_graph([image], [
        ("proposals", model.keras_model.get_layer("ROI").output),
        ("probs", model.keras_model.get_layer("mrcnn_class").output),
        ("deltas", model.keras_model.get_layer("mrcnn_bbox").output),
        ("masks", model.keras_model.get_layer("mrcnn_mask").output),
        ("detections", model.keras_model.get_layer("mrcnn_detection").output),
    ])
    det_class_ids = mrcnn["detections"][0, :, 4].astype(np.int32)
    det_count = np.where(det_class_ids == 0)[0][0]
    det_class_ids = det_class_ids[:det_count]
    assert det_count == len(r["class_ids"])
    det_boxes = utils.denorm_boxes(mrcnn["detections"][0, :, :4], image.shape[:2])
    det_mask_specific = np.array([mrcnn["masks"][0, i, :, :, c]
                                  for i, c in enumerate(det_class_ids)])
    det_masks = np.array([utils.unmold_mask(m, det_boxes[i], image.shape)
                          for i, m in enumerate(det_mask_specific)])
    if det_count:
        np.testing.assert_array_equal(det_masks.transpose(1, 2, 0), r["masks"])

    # Backbone activations (res4<last block>_out; res4w_out for ResNet-101).
    res4_out = [layer.name for layer in model.keras_model.layers
                if layer.name.startswith("res4") and layer.name.endswith("_out")][-1]
    activations = model.run_graph([image], [
        ("input_image", model.keras_model.get_layer("input_image").output),
        (res4_out, model.keras_model.get_layer(res4_out).output),
        ("rpn_bbox", model.keras_model.get_layer("rpn_bbox").output),
        ("roi", model.keras_model.get_layer("ROI").output),
    ])
    np.testing.assert_allclose(
        modellib.unmold_image(activations["input_image"][0], config), image, atol=0.5)


def test_inspect_weights(inference_model, capsys):
    model = inference_model
    visualize.display_weight_stats(model)
    out = capsys.readouterr().out
    assert "WEIGHT NAME" in out and "mrcnn_class_logits" in out
    LAYER_TYPES = ["Conv2D", "Dense", "Conv2DTranspose"]
    layers = model.get_trainable_layers()
    layers = list(filter(lambda l: l.__class__.__name__ in LAYER_TYPES, layers))
    names = [layer.name for layer in layers]
    # TimeDistributed heads are unwrapped, as in Matterport.
    assert any(n.startswith("mrcnn_class_conv1") for n in names)
    assert any(n.startswith("mrcnn_bbox_fc") for n in names)
    assert any(n.startswith("mrcnn_mask_deconv") for n in names)
    fig, ax = plt.subplots(len(layers), 2, figsize=(10, 3 * len(layers)), squeeze=False)
    for l, layer in enumerate(layers):
        weights = layer.get_weights()
        for w, weight in enumerate(weights):
            tensor = layer.weights[w]
            ax[l, w].set_title(tensor.name)
            _ = ax[l, w].hist(weight[w].flatten(), 50)
    plt.close("all")
