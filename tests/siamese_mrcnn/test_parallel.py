"""SiameseMaskRCNN with GPU_COUNT=2 (ParallelModel over tf.distribute) on 2 logical CPUs.

Logical devices can only be configured before TensorFlow initialises, so the
multi-device work runs once, in a fresh interpreter, in
tests/helpers/siamese_parallel_check.py (whose docstring explains why the loss
comparison is deterministic); the tests below assert on the numbers it writes.
2 replicas x 1 query are compared with one device x 2 queries on the same weights.
"""
import os

import pytest

from tests.helpers.distributed import ROOT, assert_trained_on_two_replicas, run_check_script

HELPER = os.path.join(ROOT, "tests", "helpers", "siamese_parallel_check.py")
LOSSES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
          "mrcnn_mask_loss")

# The helper trains and traces several tiny Siamese models: about 50 s of CPU.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_check_script(HELPER, tmp_path_factory.mktemp("siamese_parallel"))


def assert_same_detections(report: list) -> None:
    """Per-image comparison written by the helper's compare_detections."""
    assert len(report) == 2
    assert sum(image["count"] for image in report) > 0  # something was compared
    for image in report:
        assert image["count"] == image["other_count"]
        assert image["rois_equal"] and image["class_ids_equal"]
        assert image["scores_max_diff"] < 1e-5
        # A mask pixel right at the 0.5 threshold may flip with float rounding.
        assert image["masks_mismatch"] < 1e-3


def test_helper_ran_on_two_logical_cpus(results):
    assert results["logical_cpus"] == 2


def test_training_on_two_replicas_writes_a_checkpoint(results):
    train = results["train"]
    assert_trained_on_two_replicas(train, LOSSES)
    assert train["epoch"] == 1
    assert train["checkpoint"].endswith(
        os.path.join("siamese_mrcnn_tiny_parallel", "siamese_mrcnn_0001.h5"))


def test_losses_match_one_device_on_the_same_batch(results):
    losses = results["losses"]
    # The Siamese training graph takes the references right after the image meta.
    assert losses["input_names"][:4] == ["input_image", "input_image_meta", "input_target",
                                         "input_rpn_match"]
    assert losses["input_names"][-1] == "input_roi"
    single, parallel = losses["single"], losses["parallel"]
    assert set(single) == set(parallel) == {"loss", "l2_loss", *LOSSES}
    for name in single:
        assert parallel[name] == pytest.approx(single[name], rel=1e-5, abs=1e-7), name
    # Positive ROIs in both queries: every component is measured, none is a padded 0.
    for name in LOSSES:
        assert single[name] > 1e-3, name


def test_checkpoint_loads_into_a_one_device_inference_model(results):
    ck = results["checkpoint"]
    assert ck["loaded"] == ck["keys"] == ck["trained_keys"] > 100
    assert ck["missing"] == []
    assert ck["max_diff"] == 0.0
    assert ck["detect_results"] == 2
    for shape in ck["detect_masks_shapes"]:
        assert shape[:2] == [64, 64]


def test_inference_on_two_replicas_equals_one_device(results):
    inference = results["inference"]
    assert inference["wrapper"] == "ParallelModel"
    assert list(inference["variable_kinds"]) == ["MirroredVariable"]
    assert inference["weights_max_diff"] == 0.0
    # The batch of 2 is split over the replicas and put back together in order.
    for one, two in inference["outputs_shapes"]:
        assert one == two and one[0] == 2
    assert max(inference["outputs_max_diff"]) < 1e-4
    assert_same_detections(inference["detect"])


def test_reference_reuse_on_two_replicas(results):
    inference = results["inference"]
    assert inference["encode_shapes"] == [[2, 32]] * 5
    assert inference["encode_max_diff"] < 1e-5
    # One reference does not split over 2 replicas: padded, and the padding dropped.
    assert inference["encode_one_shapes"] == [[1, 32]] * 5
    assert inference["encode_one_max_diff"] < 1e-5
    assert_same_detections(inference["reuse_vs_single_detect"])
    assert_same_detections(inference["reuse_vs_detect"])
    assert_same_detections(inference["broadcast_vs_single_detect"])
    # Encoded queries: one image alone is padded to the 2 replicas, the padding dropped.
    assert inference["encoded_query_levels_max_diff"] < 1e-4
    assert_same_detections(inference["encoded_vs_single_detect"])


def test_run_graph_on_two_replicas(results):
    inference = results["inference"]
    assert inference["run_graph_shapes"] == [[2, 16, 4], [2, 16, 4]]
    assert inference["run_graph_max_diff"] < 1e-5
