"""samples/coco/coco.py: COCO-format data loading, COCO results and evaluation, the CLI.

The data is the tiny COCO-format set of tests/helpers/tiny_coco.py. The end-to-end tests
run `coco.py train` and `coco.py evaluate` in subprocesses on it (resnet_tiny, 64 px).
"""
from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn import utils
from samples.coco import coco
from tests.helpers.processes import run_python
from tests.helpers.legacy_h5 import load_layout, write_legacy_h5
from tests.helpers.tiny_coco import CATEGORIES, write_tiny_coco

SCRIPT = os.path.abspath(coco.__file__)
# COCO category id -> internal class id (categories sorted by COCO id).
INTERNAL_ID = {c["id"]: i + 1 for i, c in enumerate(sorted(CATEGORIES, key=lambda c: c["id"]))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """train2017 (6 images, one crowd) and val2017 (3 images, one crowd), 64 px."""
    return write_tiny_coco(str(tmp_path_factory.mktemp("tiny_coco")), val_crowd=True)


def _load(tiny, subset, **kwargs):
    dataset = coco.CocoDataset()
    result = dataset.load_coco(tiny.root, subset, year=tiny.year, **kwargs)
    dataset.prepare()
    return dataset, result


# ----------------------------------------------------------------------------- data set

def test_load_coco_classes_images_and_references(tiny):
    dataset, cocoapi = _load(tiny, "train", return_coco=True)
    assert dataset.num_classes == 1 + len(CATEGORIES)
    assert dataset.class_names == ["BG", "rectangle", "disk", "bar"]
    assert [dataset.get_source_class_id(i, "coco") for i in (1, 2, 3)] == [3, 7, 12]
    assert sorted(info["id"] for info in dataset.image_info) == [i.id for i in
                                                                tiny.splits["train"]]
    assert cocoapi.getCatIds() == [3, 7, 12]
    for info in dataset.image_info:
        assert os.path.isfile(info["path"])
        assert os.path.dirname(info["path"]) == os.path.join(tiny.root, "train2017")
    assert dataset.image_reference(0) == (
        "http://cocodataset.org/#explore?id={}".format(dataset.image_info[0]["id"]))
    image = dataset.load_image(0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_load_mask_matches_annotations_and_crowds_are_negative(tiny):
    dataset, _ = _load(tiny, "train")
    encodings = set()
    by_id = {info["id"]: i for i, info in enumerate(dataset.image_info)}
    for expected in tiny.splits["train"]:
        masks, class_ids = dataset.load_mask(by_id[expected.id])
        assert masks.dtype == bool and masks.shape == (64, 64, len(expected.annotations))
        want_ids = [INTERNAL_ID[a.category_id] * (-1 if a.iscrowd else 1)
                    for a in expected.annotations]
        assert class_ids.dtype == np.int32 and class_ids.tolist() == want_ids
        for k, ann in enumerate(expected.annotations):
            np.testing.assert_array_equal(masks[:, :, k], ann.mask)
            encodings.add(ann.encoding)
    # Polygons, compressed RLE and the crowd's uncompressed RLE were all decoded.
    assert encodings == {"polygon", "rle", "uncompressed_rle"}
    assert sum(a.iscrowd for i in tiny.splits["train"] for a in i.annotations) == 1


def test_load_coco_class_subset_keeps_only_those_classes(tiny):
    dataset, _ = _load(tiny, "train", class_ids=[12])
    assert dataset.class_names == ["BG", "bar"]
    for image_id in dataset.image_ids:
        masks, class_ids = dataset.load_mask(image_id)
        assert class_ids.tolist() == [1] and masks.shape[2] == 1


def test_annotation_encodings_decode_to_the_drawn_masks(tiny):
    dataset, _ = _load(tiny, "val")
    for image_id, expected in zip(dataset.image_ids, tiny.splits["val"]):
        for ann, stored in zip(expected.annotations, dataset.image_info[image_id]["annotations"]):
            rle = dataset.annToRLE(stored, 64, 64)
            assert isinstance(rle["counts"], (bytes, str))
            np.testing.assert_array_equal(dataset.annToMask(stored, 64, 64).astype(bool),
                                          ann.mask)


def test_image_without_annotations_gives_empty_masks(tiny):
    dataset, _ = _load(tiny, "train")
    dataset.image_info[0]["annotations"] = []
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (64, 64, 0) and class_ids.shape == (0,)


def test_missing_annotation_file_names_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        coco.CocoDataset().load_coco(str(tmp_path), "val", year="2017")
    message = str(error.value)
    assert os.path.join(str(tmp_path), "annotations", "instances_val2017.json") in message
    assert "annotations/instances_val2017.json" in message and "val2017/" in message


def test_missing_image_folder_is_reported(tiny, tmp_path):
    os.makedirs(tmp_path / "annotations")
    shutil.copy(tiny.annotation_path("val"), tmp_path / "annotations")
    with pytest.raises(FileNotFoundError, match="image folder not found.*val2017"):
        coco.CocoDataset().load_coco(str(tmp_path), "val", year="2017")


@pytest.mark.parametrize("content, reason", [
    ('{"images": [', "not valid JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"images": [], "categories": []}', "'annotations'"),
])
def test_corrupt_annotation_file_raises_value_error_naming_it(tmp_path, content, reason):
    os.makedirs(tmp_path / "annotations")
    os.makedirs(tmp_path / "val2017")
    path = tmp_path / "annotations" / "instances_val2017.json"
    path.write_text(content)
    with pytest.raises(ValueError) as error:
        coco.CocoDataset().load_coco(str(tmp_path), "val", year="2017")
    assert str(path) in str(error.value) and reason in str(error.value)


def test_auto_download_downloads_nothing(tmp_path):
    target = tmp_path / "coco"
    with pytest.raises(ValueError, match="nothing is downloaded"):
        coco.CocoDataset().load_coco(str(target), "train", year="2017", auto_download=True)
    assert not target.exists()


def test_minival_subsets_read_images_from_val2014(tmp_path):
    tiny = write_tiny_coco(str(tmp_path), year="2014", num_train=2, num_val=2)
    root = tiny.root
    assert coco.validation_subset(root, "2014") == "val"  # no minival files yet
    for subset in coco.VAL2014_SUBSETS:
        shutil.copy(tiny.annotation_path("val"),
                    os.path.join(root, "annotations", f"instances_{subset}2014.json"))
    assert coco.validation_subset(root, "2014") == "minival"
    assert coco.validation_subset(root, "2017") == "val"
    dataset = coco.CocoDataset()
    dataset.load_coco(root, "minival", year="2014")
    assert {os.path.dirname(i["path"]) for i in dataset.image_info} == {
        os.path.join(root, "val2014")}
    # Training on 2014 with minival: train + valminusminival, validation on minival.
    train, val = coco.load_training_data(root, "2014")
    assert train.num_images == 4 and val.num_images == 2


def test_default_year_is_2014_as_in_matterport(tmp_path, tiny):
    """load_coco and --year default to 2014; a 2017 set asked for as 2014 gets a hint."""
    assert coco.DEFAULT_DATASET_YEAR == "2014"
    tiny14 = write_tiny_coco(str(tmp_path / "c14"), year="2014", num_train=2, num_val=1)
    dataset = coco.CocoDataset()
    dataset.load_coco(tiny14.root, "train")  # no year: 2014
    assert dataset.image_info and all(
        os.path.dirname(i["path"]) == os.path.join(tiny14.root, "train2014")
        for i in dataset.image_info)
    with pytest.raises(FileNotFoundError) as error:
        coco.CocoDataset().load_coco(tiny.root, "train")
    assert "instances_train2014.json" in str(error.value)
    assert "the 2017 layout is there: pass year=2017 (--year 2017)" in str(error.value)
    # Empty folder, 2014: the error names minival (Matterport's 2014 validation split).
    assert coco.validation_subset(str(tmp_path / "nowhere"), "2014") == "minival"


def test_training_data_for_a_train_val_data_set(tiny):
    train, val = coco.load_training_data(tiny.root, tiny.year)
    assert (train.num_images, val.num_images) == (6, 3)
    assert train.class_names == val.class_names


# --------------------------------------------------------------------- results and eval

def test_build_coco_results_format(tiny):
    dataset, _ = _load(tiny, "val")
    masks = np.zeros((64, 64, 2), dtype=bool)
    masks[10:20, 5:30, 0] = True
    masks[40:60, 33:41, 1] = True
    rois = np.array([[10, 5, 20, 30], [40, 33, 60, 41]])
    results = coco.build_coco_results(dataset, [5003, 5010], rois, np.array([3, 1]),
                                      np.array([0.9, 0.25], dtype=np.float32), masks)
    assert len(results) == 4  # every detection for each image id, as Matterport
    assert [r["image_id"] for r in results] == [5003, 5003, 5010, 5010]
    first, second = results[0], results[1]
    assert first["category_id"] == 12 and second["category_id"] == 3
    assert first["bbox"] == [5.0, 10.0, 25.0, 10.0]  # [x, y, width, height]
    assert second["bbox"] == [33.0, 40.0, 8.0, 20.0]
    assert first["score"] == pytest.approx(0.9) and isinstance(first["score"], float)
    for k, r in enumerate(results[:2]):
        assert isinstance(r["segmentation"]["counts"], bytes)
        np.testing.assert_array_equal(mask_utils.decode(r["segmentation"]).astype(bool),
                                      masks[:, :, k])
        # The RLE's own box agrees with the reported box.
        np.testing.assert_allclose(mask_utils.toBbox(r["segmentation"]), r["bbox"])
    assert coco.build_coco_results(dataset, [5003], None, None, None, None) == []


def test_build_coco_results_rejects_inconsistent_counts(tiny):
    dataset, _ = _load(tiny, "val")
    with pytest.raises(ValueError, match="masks"):
        coco.build_coco_results(dataset, [1], np.zeros((2, 4)), np.array([1, 2]),
                                np.array([0.5, 0.5]), np.zeros((64, 64, 3), bool))


class GroundTruthModel:
    """A stand-in for MaskRCNN: detect() returns each image's non-crowd ground truth.

    shift: move every box and mask right by this many pixels (a worse detector).
    """

    def __init__(self, dataset, batch_size=1, shift=0, empty=False):
        self.dataset = dataset
        self.config = SimpleNamespace(BATCH_SIZE=batch_size)
        self.shift = shift
        self.empty = empty
        self.calls = []
        self._by_pixels = {dataset.load_image(i).tobytes(): i for i in dataset.image_ids}

    def detect(self, images, verbose=0):
        assert len(images) == self.config.BATCH_SIZE
        self.calls.append(len(images))
        return [self._detect(self._by_pixels[image.tobytes()]) for image in images]

    def _detect(self, image_id):
        masks, class_ids = self.dataset.load_mask(image_id)
        keep = class_ids > 0
        if self.empty:
            keep[:] = False
        masks = np.roll(masks[:, :, keep], self.shift, axis=1)
        return {"rois": utils.extract_bboxes(masks), "class_ids": class_ids[keep],
                "scores": np.linspace(1.0, 0.9, int(keep.sum())), "masks": masks}


@pytest.mark.parametrize("eval_type", ["bbox", "segm"])
def test_evaluate_coco_ground_truth_scores_ap_one(tiny, eval_type, capsys):
    dataset, cocoapi = _load(tiny, "val", return_coco=True)
    evaluation = coco.evaluate_coco(GroundTruthModel(dataset), dataset, cocoapi, eval_type)
    assert evaluation.params.iouType == eval_type
    assert evaluation.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP50
    # What Matterport's evaluate_coco printed: the summary table, then the timings.
    printed = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 1.000" \
        in printed
    assert printed.index("Average Recall") < printed.index("Prediction time: ") \
        < printed.index("Total time: ")


def test_evaluate_coco_batches_limit_and_worse_detections(tiny):
    dataset, cocoapi = _load(tiny, "val", return_coco=True)
    model = GroundTruthModel(dataset, batch_size=2)
    evaluation = coco.evaluate_coco(model, dataset, cocoapi, "bbox", limit=3)
    assert model.calls == [2, 2]  # the short last batch is padded
    assert evaluation.stats[0] == pytest.approx(1.0)
    assert evaluation.params.imgIds == [i.id for i in tiny.splits["val"]]

    limited = coco.evaluate_coco(GroundTruthModel(dataset), dataset, cocoapi, "segm",
                                 limit=1)
    assert limited.params.imgIds == [dataset.image_info[0]["id"]]

    shifted = coco.evaluate_coco(GroundTruthModel(dataset, shift=3), dataset, cocoapi, "bbox")
    assert shifted.stats[0] < 0.9

    nothing = coco.evaluate_coco(GroundTruthModel(dataset, empty=True), dataset, cocoapi,
                                 "segm")
    assert nothing.stats[0] == pytest.approx(0.0)


def test_evaluate_coco_rejects_unknown_eval_type(tiny):
    dataset, cocoapi = _load(tiny, "val", return_coco=True)
    with pytest.raises(ValueError, match="eval_type"):
        coco.evaluate_coco(GroundTruthModel(dataset), dataset, cocoapi, "keypoints")


# -------------------------------------------------------------- CLI arguments and weights

def test_parser_defaults_are_matterports():
    args = coco.build_parser().parse_args(["train", "--dataset", "D", "--model", "coco"])
    assert (args.epochs_heads, args.epochs_4plus, args.epochs_all) == (40, 120, 160)
    assert args.limit == 500 and args.download is False and args.eval_type == "bbox"
    assert args.year == coco.DEFAULT_DATASET_YEAR and args.logs == coco.DEFAULT_LOGS_DIR
    assert coco.config_overrides(args) == {}


@pytest.mark.parametrize("text, value", [("False", False), ("false", False), ("0", False),
                                         ("True", True), ("yes", True)])
def test_download_flag_parses_booleans(text, value):
    args = coco.build_parser().parse_args(
        ["evaluate", "--dataset", "D", "--model", "last", "--download", text])
    assert args.download is value


@pytest.mark.parametrize("argv", [
    ["predict", "--dataset", "D", "--model", "coco"],
    ["train", "--dataset", "D"],
    ["train", "--dataset", "D", "--model", "coco", "--backbone", "vgg"],
    ["train", "--dataset", "D", "--model", "coco", "--epochs-heads", "-1"],
    ["train", "--dataset", "D", "--model", "coco", "--download", "maybe"],
])
def test_parser_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as error:
        coco.build_parser().parse_args(argv)
    assert error.value.code == 2


def test_small_run_options_make_the_config():
    args = coco.build_parser().parse_args(
        ["train", "--dataset", "D", "--model", "none", "--backbone", "resnet_tiny",
         "--image-size", "64", "--steps-per-epoch", "2", "--validation-steps", "1"])
    config = coco.make_config(True, 4, **coco.config_overrides(args))
    assert isinstance(config, coco.CocoConfig) and config.NAME == "coco"
    assert (config.BACKBONE, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM) == ("resnet_tiny",
                                                                             64, 64)
    assert (config.STEPS_PER_EPOCH, config.VALIDATION_STEPS) == (2, 1)
    assert config.NUM_CLASSES == 4 and config.BATCH_SIZE == 2
    assert config.IMAGE_META_SIZE == 12 + 4
    inference = coco.make_config(False, 4)
    assert (inference.BATCH_SIZE, inference.DETECTION_MIN_CONFIDENCE) == (1, 0)
    assert coco.CocoConfig().NUM_CLASSES == 81 and coco.CocoConfig().IMAGES_PER_GPU == 2
    with pytest.raises(ValueError, match="IMAGE_MAX_DIM"):
        coco.make_config(True, 4, IMAGE_MAX_DIM=100, IMAGE_MIN_DIM=100)


def test_set_overrides_apply_after_the_run_size_options():
    args = coco.build_parser().parse_args(
        ["train", "--dataset", "D", "--model", "none", "--backbone", "resnet_tiny",
         "--image-size", "64", "--set", "IMAGES_PER_GPU=1", "DETECTION_MIN_CONFIDENCE=0.5",
         "--set", "BACKBONE=resnet50"])
    config = coco.build_config(args, True, 4)
    assert (config.IMAGES_PER_GPU, config.BATCH_SIZE) == (1, 1)
    assert config.DETECTION_MIN_CONFIDENCE == 0.5 and config.BACKBONE == "resnet50"
    assert config.IMAGE_MAX_DIM == 64 and config.NUM_CLASSES == 4


def test_training_stages_follow_matterport():
    config = coco.make_config(True)
    stages = coco.training_stages(config, 40, 120, 160)
    assert [(s[1], s[3]) for s in stages] == [("heads", 40), ("4+", 120), ("all", 160)]
    assert [s[2] for s in stages] == pytest.approx(
        [config.LEARNING_RATE, config.LEARNING_RATE, config.LEARNING_RATE / 10])


def test_num_classes_inferred_or_checked(tiny):
    dataset, _ = _load(tiny, "train")
    assert coco.choose_num_classes(None, dataset, training=True) == 4
    assert coco.choose_num_classes(4, dataset, training=True) == 4
    assert coco.choose_num_classes(81, dataset, training=False) == 81
    for requested, training in ((81, True), (3, False)):
        with pytest.raises(coco.CliError, match="--num-classes"):
            coco.choose_num_classes(requested, dataset, training=training)


def test_resolve_weights_looks_only_at_local_files(tmp_path, monkeypatch):
    monkeypatch.delenv(coco.COCO_WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(coco.IMAGENET_WEIGHTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    if os.path.exists(os.path.join(coco.SCRIPT_DIR, coco.COCO_WEIGHTS_FILE)):
        pytest.skip("a mask_rcnn_coco.h5 lies next to coco.py")
    assert coco.resolve_weights("none") is None
    with pytest.raises(coco.CliError, match=coco.COCO_WEIGHTS_ENV):
        coco.resolve_weights("coco")
    with pytest.raises(coco.CliError, match=coco.IMAGENET_WEIGHTS_ENV):
        coco.resolve_weights("imagenet")
    with pytest.raises(coco.CliError, match="Weights file not found"):
        coco.resolve_weights(str(tmp_path / "missing.h5"))

    (tmp_path / coco.COCO_WEIGHTS_FILE).write_bytes(b"")
    assert os.path.samefile(coco.resolve_weights("COCO"), tmp_path / coco.COCO_WEIGHTS_FILE)
    other = tmp_path / "elsewhere.h5"
    other.write_bytes(b"")
    monkeypatch.setenv(coco.COCO_WEIGHTS_ENV, str(other))
    assert coco.resolve_weights("coco") == str(other)
    monkeypatch.setenv(coco.COCO_WEIGHTS_ENV, str(tmp_path / "gone.h5"))
    with pytest.raises(coco.CliError, match="gone.h5"):
        coco.resolve_weights("coco")
    imagenet = tmp_path / "resnet.h5"
    imagenet.write_bytes(b"")
    monkeypatch.setenv(coco.IMAGENET_WEIGHTS_ENV, str(imagenet))
    assert coco.resolve_weights("imagenet") == str(imagenet)


def test_head_exclusions_only_when_class_count_differs(tmp_path):
    assert coco.head_exclusions("coco", "unused", 81) == []
    assert coco.head_exclusions("coco", "unused", 4) == coco.HEAD_LAYERS
    path = str(tmp_path / "heads.h5")
    write_legacy_h5(path, load_layout("matterport_coco"),
                    groups=["mrcnn_class_logits", "mrcnn_mask"], fill="zeros")
    assert coco.weights_class_count(path) == 81
    assert coco.head_exclusions(path, path, 81) == []
    assert coco.head_exclusions(path, path, 4) == coco.HEAD_LAYERS
    backbone_only = str(tmp_path / "backbone.h5")
    write_legacy_h5(backbone_only, load_layout("matterport_coco"), groups=["conv1"],
                    fill="zeros")
    assert coco.head_exclusions("imagenet", backbone_only, 4) == []


def test_coco_weights_load_without_the_heads_for_other_class_counts(tmp_path, monkeypatch):
    from mrcnn import model as modellib

    groups = ["mrcnn_class_conv1", "mrcnn_mask_conv1", "mrcnn_class_logits", "mrcnn_mask",
              "mrcnn_bbox_fc"]
    path = str(tmp_path / coco.COCO_WEIGHTS_FILE)
    values = write_legacy_h5(path, load_layout("matterport_coco"), groups=groups)
    monkeypatch.setenv(coco.COCO_WEIGHTS_ENV, path)
    config = coco.make_config(False, 4, BACKBONE="resnet_tiny", IMAGE_MAX_DIM=64,
                              IMAGE_MIN_DIM=64)
    model = modellib.MaskRCNN("inference", config, str(tmp_path / "logs"))
    coco.load_model_weights(model, "coco")
    report = model.last_load_report
    assert {k.split("/")[0] for k in report.loaded} == {"mrcnn_class_conv1",
                                                        "mrcnn_mask_conv1"}
    assert {k.split("/")[0] for k in report.skipped_excluded} >= {
        "mrcnn_class_logits", "mrcnn_mask", "mrcnn_bbox_fc"}
    kernel = model.keras_model.get_layer("mrcnn_class_conv1").get_weights()[0]
    np.testing.assert_array_equal(kernel, values["mrcnn_class_conv1/kernel"])


def test_weights_of_another_size_ask_for_the_options_that_size_the_model(tmp_path):
    """--model PATH.h5 written by a model with smaller heads: a one-line CliError naming
    the first weight that does not fit and this command line's options."""
    from mrcnn import model as modellib
    from mrcnn.weights import save_weights

    tiny = dict(BACKBONE="resnet_tiny", IMAGE_MAX_DIM=64, IMAGE_MIN_DIM=64)
    other = coco.make_config(False, 4, FPN_CLASSIF_FC_LAYERS_SIZE=32, **tiny)
    path = str(tmp_path / "other.h5")
    save_weights(modellib.MaskRCNN("inference", other, str(tmp_path / "logs")).keras_model,
                 path)
    model = modellib.MaskRCNN("inference", coco.make_config(False, 4, **tiny),
                              str(tmp_path / "logs"))
    with pytest.raises(coco.CliError) as error:
        coco.load_model_weights(model, path)
    message = str(error.value)
    assert message.startswith(f"Could not load weights {path}: ")
    assert "(first: 'mrcnn_class_conv1/kernel' is (7, 7, 256, 32) in the file, " \
           "(7, 7, 256, 1024) in the model)" in message, message
    assert message.endswith("give the --backbone, --num-classes and --set it was trained "
                            "with")


@pytest.mark.parametrize("content", [b"", b"not an h5 file"])
def test_a_weights_file_that_is_no_h5_is_one_cli_error(tmp_path, content):
    """The class-count read (head_exclusions) ran outside the load's error handling, so
    such a file was a traceback."""
    from mrcnn import model as modellib

    path = tmp_path / "w.h5"
    path.write_bytes(content)
    model = modellib.MaskRCNN("inference", coco.make_config(
        False, 4, BACKBONE="resnet_tiny", IMAGE_MAX_DIM=64, IMAGE_MIN_DIM=64),
        str(tmp_path / "logs"))
    with pytest.raises(coco.CliError, match=f"Could not load weights {path}: {path} is not "
                                            "an HDF5 file"):
        coco.load_model_weights(model, str(path))


# ------------------------------------------------------------------ CLI, in process

def _main_error(argv, capsys):
    """Runs main() in-process; returns (exit code, stderr lines)."""
    code = coco.main(argv)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("coco.py: error:")]


def test_cli_reports_bad_inputs_in_one_line(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(coco.COCO_WEIGHTS_ENV, raising=False)
    base = ["--model", "none", "--logs", str(tmp_path / "logs")]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["train", "--dataset", str(tmp_path / "nowhere")] + base, "not found"),
        (["evaluate", "--dataset", str(tmp_path)] + base, "instances_minival2014.json"),
        (["evaluate", "--dataset", str(tmp_path), "--year", "2017"] + base,
         "instances_val2017.json"),
        (["evaluate", "--dataset", tiny.root] + base, "pass year=2017 (--year 2017)"),
        (["train", "--dataset", tiny.root, "--year", tiny.year, "--download", "True"]
         + base,
         "nothing is downloaded"),
        (["train", "--dataset", tiny.root, "--year", tiny.year, "--image-size", "100"]
         + base, "IMAGE_MAX_DIM"),
        (["evaluate", "--dataset", tiny.root, "--year", tiny.year, "--model", "last",
          "--logs", str(tmp_path / "no_logs")], "no checkpoint"),
        (["train", "--dataset", tiny.root, "--year", tiny.year, "--set", "IMAGES_PER_GPUS=1"]
         + base, "did you mean IMAGES_PER_GPU"),
        (["train", "--dataset", tiny.root, "--year", tiny.year, "--set", "BATCH_SIZE=4"]
         + base, "BATCH_SIZE is computed"),
        (["train", "--dataset", tiny.root, "--year", tiny.year, "--set", "IMAGES_PER_GPU"]
         + base, "--set expects KEY=VALUE"),
        # Before the data and the model are loaded (os.makedirs failed after them).
        (["train", "--dataset", tiny.root, "--year", tiny.year] + base
         + ["--logs", str(a_file / "logs")],
         f"--logs {a_file / 'logs'}: {a_file} is a file, not a folder"),
    ]
    for argv, needle in cases:
        code, lines = _main_error(argv, capsys)
        assert code == 2, argv
        assert len(lines) == 1 and needle in lines[0], (argv, lines)


# ------------------------------------------------------------------ CLI, end to end

def _run_cli(args, cwd):
    env = dict(os.environ)
    env.pop(coco.COCO_WEIGHTS_ENV, None)
    env.pop(coco.IMAGENET_WEIGHTS_ENV, None)
    return run_python([SCRIPT] + args, cwd=cwd, env=env)


SMALL_RUN = ["--backbone", "resnet_tiny", "--image-size", "64"]


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """One `coco.py train` run: 1 epoch of 2 steps of the heads from random weights."""
    logs = str(tmp_path_factory.mktemp("coco_logs"))
    result = _run_cli(["train", "--dataset", tiny.root, "--year", tiny.year, "--model",
                       "none", "--logs", logs, *SMALL_RUN, "--steps-per-epoch", "2", "--validation-steps", "1",
                       "--epochs-heads", "1", "--epochs-4plus", "0", "--epochs-all", "0"],
                      cwd=logs)
    return SimpleNamespace(logs=logs, result=result)


@pytest.mark.slow
def test_cli_train_writes_a_checkpoint(trained):
    assert trained.result.returncode == 0, trained.result.stderr[-3000:]
    runs = [d for d in os.listdir(trained.logs) if d.startswith("coco")]
    assert len(runs) == 1
    assert "mask_rcnn_coco_0001.h5" in os.listdir(os.path.join(trained.logs, runs[0]))
    assert "Training network heads" in trained.result.stderr
    assert "Skipping stage '4+'" in trained.result.stderr


@pytest.mark.slow
def test_cli_evaluate_last_prints_stats(tiny, trained):
    assert trained.result.returncode == 0, trained.result.stderr[-3000:]
    result = _run_cli(["evaluate", "--dataset", tiny.root, "--year", tiny.year, "--model",
                       "last", "--logs", trained.logs, *SMALL_RUN, "--limit", "2", "--eval-type", "both"],
                      cwd=trained.logs)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mask_rcnn_coco_0001.h5" in result.stderr  # found by --model last
    assert "Running COCO evaluation on 2 images" in result.stderr
    assert result.stdout.count("Average Precision  (AP) @[ IoU=0.50 ") == 2  # bbox, segm
    assert "bbox stats: AP" in result.stderr and "segm stats: AP" in result.stderr


def test_cli_missing_coco_weights_exit_2_without_traceback(tiny, tmp_path):
    if os.path.exists(os.path.join(coco.SCRIPT_DIR, coco.COCO_WEIGHTS_FILE)):
        pytest.skip("a mask_rcnn_coco.h5 lies next to coco.py")
    result = _run_cli(["train", "--dataset", tiny.root, "--year", tiny.year, "--model",
                       "coco", "--logs", str(tmp_path / "logs")], cwd=str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("coco.py: error:")]
    assert len(errors) == 1 and errors[0] == lines[-1]
    assert coco.COCO_WEIGHTS_ENV in errors[0] and coco.COCO_WEIGHTS_FILE in errors[0]
    assert not os.path.exists(tmp_path / "logs")


@pytest.mark.parametrize("task", [0, 1])
def test_cli_train_with_tf_config_is_multi_worker(tiny, tmp_path, monkeypatch, task):
    """coco.py train with TF_CONFIG builds a DISTRIBUTION='multi_worker' model; only the
    chief loads --model, every task then takes the chief's weights (sync_workers) and
    trains the stages. The model is a recording stand-in: MaskRCNN.train's multi-worker
    run itself (2 processes, chief-only files, the same steps as one process) is
    tests/mrcnn/test_multi_worker.py's and the train_siamese.py CLI's 2-worker test's, so
    this is coco.py's own wiring without 2 more minutes of training processes."""
    from tests.helpers.processes import free_ports, tf_config

    calls, configs = [], []

    class Recorder:
        def __init__(self, mode, config, model_dir):
            self.config, self.epoch = config, 0
            configs.append(config)
            self.is_chief = task == 0

        def sync_workers(self):
            calls.append("sync")

        def train(self, *args, epochs, layers, **kwargs):
            calls.append(("train", layers, epochs))
            self.epoch = epochs

    monkeypatch.setenv("TF_CONFIG", tf_config(free_ports(2), task))
    monkeypatch.setattr(coco.modellib, "MaskRCNN", Recorder)
    monkeypatch.setattr(coco, "load_model_weights", lambda model, arg: calls.append("load"))
    args = coco.build_parser().parse_args(
        ["train", "--dataset", tiny.root, "--year", tiny.year, "--model", "none",
         "--logs", str(tmp_path), *SMALL_RUN, "--epochs-heads", "1", "--epochs-4plus", "2",
         "--epochs-all", "2"])
    coco.train(args)
    assert configs[0].DISTRIBUTION == "multi_worker"
    assert calls == (["load"] if task == 0 else []) + [
        "sync", ("train", "heads", 1), ("train", "4+", 2)]
    monkeypatch.delenv("TF_CONFIG")
    assert coco.build_config(args, True, 4).DISTRIBUTION is None
