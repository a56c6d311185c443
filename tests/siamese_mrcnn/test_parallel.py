"""SiameseMaskRCNN with GPU_COUNT=2 (ParallelModel over tf.distribute) on 2 logical CPUs.

Logical devices can only be configured before TensorFlow initialises, so the
multi-device work runs once, in a fresh interpreter, in
tests/helpers/siamese_parallel_check.py (whose docstring explains why the loss
comparison is deterministic); the tests below assert on the numbers it writes.
2 replicas x 1 query are compared with one device x 2 queries on the same weights.
"""
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELPER = os.path.join(ROOT, "tests", "helpers", "siamese_parallel_check.py")
LOSSES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
          "mrcnn_mask_loss")

# The helper trains and traces several tiny Siamese models: about 50 s of CPU.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("siamese_parallel")
    out = work / "results.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(ROOT, "lib"), ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, HELPER, str(out), str(work)], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"{HELPER} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    with open(out) as f:
        return json.load(f)


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
    assert train["wrapper"] == "ParallelModel"
    assert train["replicas"] == 2
    assert train["built_under_strategy"]
    kinds = train["variable_kinds"]
    assert list(kinds) == ["MirroredVariable"] and kinds["MirroredVariable"] > 100
    assert train["optimizer_iterations"] == 2  # STEPS_PER_EPOCH=2, one epoch
    for name in ("loss", "val_loss", *LOSSES):
        assert len(train["history"][name]) == 1
        assert math.isfinite(train["history"][name][0]), name
    assert train["epoch"] == 1
    assert train["checkpoint"].endswith(
        os.path.join("siamese_mrcnn_tiny_parallel", "siamese_mrcnn_0001.h5"))
    assert train["checkpoint_exists"]
    assert train["weights_changed"] > 1e-3
    assert train["replicas_agree"] == 0.0


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


def test_run_graph_on_two_replicas(results):
    inference = results["inference"]
    assert inference["run_graph_shapes"] == [[2, 16, 4], [2, 16, 4]]
    assert inference["run_graph_max_diff"] < 1e-5
