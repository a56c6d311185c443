"""The paper code's notebooks (bethgelab/siamese-mask-rcnn) run on this port.

train.ipynb: IndexedCocoDataset with subsubset train / val, ACTIVE_CLASSES, a config
subclass, the OrderedDict schedule run stage by stage with model.train, and resuming
with load_latest_checkpoint. evaluate.ipynb: load_checkpoint with the schedule and
siamese_utils.evaluate_dataset(..., verbose=1) printing the COCO table, 1-shot then
5-shot. evaluate-random.ipynb: random detections over boxes and masks. The Mask R-CNN
baseline notebook: a plain MaskRCNN from the Siamese Config with 1 + C classes and its
own classifier head and losses assigned into mrcnn.model. Imports as the notebooks
have them (with the port's package names); sizes cut for a CPU.
"""
import imgaug  # noqa: F401 - the notebooks' imports

import os
from collections import OrderedDict

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import model as modellib
from siamese_mrcnn import config as siamese_config
from siamese_mrcnn import model as siamese_model
from siamese_mrcnn import utils as siamese_utils
from tests.helpers.tiny_coco import CATEGORIES, write_tiny_coco

pytestmark = pytest.mark.slow

SIZES = dict(
    BACKBONE="resnet_tiny", IMAGE_MIN_DIM=64, IMAGE_MAX_DIM=64, TARGET_MIN_DIM=32,
    TARGET_MAX_DIM=32, FPN_FEATUREMAPS=32, FPN_CLASSIF_FC_LAYERS_SIZE=64,
    RPN_ANCHOR_SCALES=(8, 16, 32, 64, 128), RPN_TRAIN_ANCHORS_PER_IMAGE=32,
    POST_NMS_ROIS_TRAINING=32, POST_NMS_ROIS_INFERENCE=32, TRAIN_ROIS_PER_IMAGE=16,
    MAX_GT_INSTANCES=4, DETECTION_MAX_INSTANCES=8, STEPS_PER_EPOCH=1, VALIDATION_STEPS=1)


def cpu_sizes(config_class):
    """What a CPU user changes in the notebooks' configs: the sizes (SIZES)."""
    for name, value in SIZES.items():
        setattr(config_class, name, value)
    return config_class


@cpu_sizes
class SmallTrainConfig(siamese_config.Config):
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 1
    NAME = "small_coco"
    EXPERIMENT = "example"
    LOSS_WEIGHTS = {"rpn_class_loss": 2.0, "rpn_bbox_loss": 0.1, "mrcnn_class_loss": 2.0,
                    "mrcnn_bbox_loss": 0.5, "mrcnn_mask_loss": 1.0}


@cpu_sizes
class SmallEvalConfig(siamese_config.Config):
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 1 + 1
    NAME = "small_coco"
    EXPERIMENT = "example"
    NUM_TARGETS = 1
    DETECTION_MIN_CONFIDENCE = 0.0  # an undertrained model: score what it finds


@pytest.fixture(scope="module")
def coco_data(tmp_path_factory):
    return write_tiny_coco(str(tmp_path_factory.mktemp("coco")), num_train=6,
                           num_val=3).root


def train_and_val(coco_data):
    """The notebooks' cell: train2017 split into training and validation parts (a small
    val_count: the data set's size), all classes active."""
    train_classes = np.array(range(1, 1 + len(CATEGORIES)))
    datasets = []
    for subsubset in ("train", "val"):
        dataset = siamese_utils.IndexedCocoDataset()
        dataset.load_coco(coco_data, subset="train", subsubset=subsubset, year="2017",
                          val_count=2)
        dataset.prepare()
        dataset.build_indices()
        dataset.ACTIVE_CLASSES = train_classes
        datasets.append(dataset)
    return datasets


@pytest.fixture(scope="module")
def trained(coco_data, tmp_path_factory):
    """train.ipynb: returns (model_dir, schedule, training set)."""
    model_dir = str(tmp_path_factory.mktemp("logs"))
    coco_train, coco_val = train_and_val(coco_data)
    assert (coco_train.num_images, coco_val.num_images) == (4, 2)

    config = SmallTrainConfig()
    config.display()
    assert config.BACKBONE == "resnet_tiny" and tuple(config.IMAGE_SHAPE) == (64, 64, 3)
    model = siamese_model.SiameseMaskRCNN(mode="training", model_dir=model_dir, config=config)
    train_schedule = OrderedDict()
    train_schedule[1] = {"learning_rate": config.LEARNING_RATE, "layers": "heads"}
    train_schedule[2] = {"learning_rate": config.LEARNING_RATE / 10, "layers": "all"}
    # A first run has no checkpoint; nothing is downloaded, so without a local ImageNet
    # file the notebook's fallback says where the file must be (this test trains from
    # random weights instead).
    with pytest.raises(FileNotFoundError, match="No checkpoint siamese_mrcnn_####.h5"):
        model.load_latest_checkpoint(training_schedule=train_schedule)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        model.load_imagenet_weights(pretraining="imagenet-687")
    for epochs, parameters in train_schedule.items():
        print("")
        print("training layers {} until epoch {} with learning_rate {}".format(
            parameters["layers"], epochs, parameters["learning_rate"]))
        model.train(coco_train, coco_val, learning_rate=parameters["learning_rate"],
                    epochs=epochs, layers=parameters["layers"])
    return model_dir, train_schedule, coco_train


def test_train_notebook_trains_the_schedule_and_resumes(trained, capsys):
    model_dir, train_schedule, coco_train = trained
    config = SmallTrainConfig()
    model = siamese_model.SiameseMaskRCNN(mode="training", model_dir=model_dir, config=config)
    model.load_latest_checkpoint(training_schedule=train_schedule)
    assert model.epoch == 2
    assert os.path.basename(model.find_last()) == "siamese_mrcnn_0002.h5"
    assert model.find_last()[1] == model.find_last()
    # The old generator protocol, as the notebooks inspect a batch.
    train_generator = siamese_utils.siamese_data_generator(coco_train, config)
    inputs, outputs = next(train_generator)
    assert len(inputs) == 8 and outputs == [] and inputs[2].shape[:2] == (1, 1)


def _val_set(coco_data, classes):
    coco_val = siamese_utils.IndexedCocoDataset()
    coco_object = coco_val.load_coco(coco_data, "val", year="2017", return_coco=True)
    coco_val.prepare()
    coco_val.build_indices()
    coco_val.ACTIVE_CLASSES = classes
    return coco_val, coco_object


def test_evaluate_notebook_prints_the_coco_table(trained, coco_data, capsys):
    model_dir, train_schedule, _ = trained
    train_classes = np.array(range(1, 1 + len(CATEGORIES)))
    coco_val, coco_object = _val_set(coco_data, train_classes)
    config = SmallEvalConfig()
    checkpoint = os.path.join(
        siamese_model.SiameseMaskRCNN("inference", config, model_dir).find_last())
    capsys.readouterr()

    model = siamese_model.SiameseMaskRCNN(mode="inference", model_dir=model_dir, config=config)
    model.load_checkpoint(checkpoint, training_schedule=train_schedule)
    active_class_idx = np.array(coco_val.ACTIVE_CLASSES) - 1
    print("starting evaluation ...")
    result = siamese_utils.evaluate_dataset(
        model, coco_val, coco_object, eval_type="bbox", dataset_type="coco", limit=1000,
        image_ids=None, class_index=active_class_idx, verbose=1)
    out = capsys.readouterr().out
    assert result is None  # as the original, unless return_results
    assert "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]" in out
    assert "Prediction time:" in out and "Total time:" in out

    # 5 references per category (the notebook's second cell), with the results kept.
    config.NUM_TARGETS = 5
    model = siamese_model.SiameseMaskRCNN(mode="inference", model_dir=model_dir, config=config)
    model.load_checkpoint(checkpoint, training_schedule=train_schedule)
    cocoeval = siamese_utils.evaluate_dataset(
        model, coco_val, coco_object, eval_type="bbox", dataset_type="coco", limit=1000,
        image_ids=None, class_index=active_class_idx, verbose=1, return_results=True)
    assert isinstance(cocoeval, siamese_utils.customCOCOeval)
    assert -1.0 <= cocoeval.stats[1] <= 1.0  # AP50
    capsys.readouterr()
    cocoeval.summarize(class_index=active_class_idx)
    assert "Average Recall" in capsys.readouterr().out


def test_random_baseline_notebook_scores_boxes_and_masks(trained, coco_data, capsys):
    model_dir, train_schedule, _ = trained
    one_shot_classes = np.array([1, 3])
    test_dataset, coco_test_object = _val_set(coco_data, one_shot_classes)
    config = SmallEvalConfig()
    checkpoint = siamese_model.SiameseMaskRCNN("inference", config, model_dir).find_last()
    model = siamese_model.SiameseMaskRCNN(mode="inference", model_dir=model_dir, config=config)
    model.load_checkpoint(checkpoint, training_schedule=train_schedule)
    active_class_idx = np.array(test_dataset.ACTIVE_CLASSES) - 1
    capsys.readouterr()
    for run in range(2):
        print("\t*** Evaluation run {} ***".format(run + 1))
        siamese_utils.evaluate_dataset(
            model, test_dataset, coco_test_object, eval_type=["bbox", "segm"],
            dataset_type="coco", limit=0, image_ids=None, class_index=active_class_idx,
            verbose=1, random_detections=True)
    out = capsys.readouterr().out
    assert out.count("*** Evaluation run") == 2
    # Two tables (boxes, masks) per run.
    assert out.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all") == 4


def test_mask_rcnn_baseline_notebook_with_its_own_head_and_losses(coco_data, tmp_path,
                                                                   monkeypatch):
    """The baseline notebook assigns its own fpn_classifier_graph and loss functions
    into mrcnn.model before building a plain MaskRCNN from the Siamese Config."""
    @cpu_sizes
    class TrainConfig(siamese_config.Config):
        GPU_COUNT = 1
        IMAGES_PER_GPU = 2
        NUM_CLASSES = 1 + len(CATEGORIES)  # the notebook: 80 + 1 for COCO
        NAME = "parallel_mrcnn_coco"
        EXPERIMENT = "full"
    config = TrainConfig()
    coco_train, coco_val = train_and_val(coco_data)

    library_head = modellib.fpn_classifier_graph
    library_class_loss = modellib.mrcnn_class_loss_graph
    head_calls = []

    # Matterport's signature: no project keyword arguments reach it.
    def fpn_classifier_graph(rois, feature_maps, image_meta, pool_size, num_classes,
                             train_bn=True, fc_layers_size=1024):
        head_calls.append((pool_size, num_classes, fc_layers_size))
        return library_head(rois, feature_maps, image_meta, pool_size, num_classes,
                            train_bn=train_bn, fc_layers_size=fc_layers_size)

    def mrcnn_class_loss_graph(target_class_ids, pred_class_logits, active_class_ids):
        """Cross entropy over all classes, ignoring the active ones, plus a marker."""
        target_class_ids = tf.cast(target_class_ids, "int64")
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=target_class_ids, logits=pred_class_logits)
        return tf.reduce_mean(loss) + 100.0

    rpn_configs = []

    def rpn_bbox_loss_graph(config, target_bbox, rpn_match, rpn_bbox):
        rpn_configs.append(config)
        return modellib.losses_module.rpn_bbox_loss_graph(config, target_bbox, rpn_match,
                                                          rpn_bbox)

    monkeypatch.setattr(modellib, "fpn_classifier_graph", fpn_classifier_graph)
    monkeypatch.setattr(modellib, "mrcnn_class_loss_graph", mrcnn_class_loss_graph)
    monkeypatch.setattr(modellib, "rpn_bbox_loss_graph", rpn_bbox_loss_graph)
    model = modellib.MaskRCNN(mode="training", model_dir=str(tmp_path), config=config)
    assert head_calls == [(config.POOL_SIZE, 1 + len(CATEGORIES), 64)]
    history = model.train(coco_train, coco_val, learning_rate=config.LEARNING_RATE,
                          epochs=1, layers="heads")
    # The logged component is the replacement's (weighted by LOSS_WEIGHTS, 1.0 here).
    assert history.history["mrcnn_class_loss"][0] >= 100.0
    assert rpn_configs and rpn_configs[0] is config  # Matterport passes the config
    assert library_class_loss is not mrcnn_class_loss_graph

    # As in the paper code, a Siamese model built in the same session keeps its own
    # heads and class loss and takes the RPN / box / mask losses from mrcnn.model.
    siamese = siamese_model.SiameseMaskRCNN("training", SmallTrainConfig(), str(tmp_path))
    assert len(head_calls) == 1
    rpn_bbox_loss = siamese.keras_model.get_layer("rpn_bbox_loss").function
    assert rpn_bbox_loss.func is rpn_bbox_loss_graph and rpn_bbox_loss.args == (siamese.config,)
    assert siamese.keras_model.get_layer("mrcnn_class_loss").function is None
