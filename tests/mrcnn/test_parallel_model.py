"""Multi-device training (mrcnn.parallel_model, LossModel.train_step) on 2 logical CPUs.

Logical devices can only be configured before TensorFlow initialises, so the
multi-device work runs once, in a fresh interpreter, in tests/helpers/parallel_check.py
(whose docstring explains why the loss comparison is deterministic); the tests below
assert on the numbers it writes. One device x 2 images is compared with
2 replicas x 1 image on the same weights and the same fixed batch.
"""
import os

import pytest
import tensorflow as tf

from mrcnn.parallel_model import get_strategy
from mrcnn.training import LOSS_NAMES
from tests.helpers.distributed import ROOT, assert_trained_on_two_replicas, run_check_script

HELPER = os.path.join(ROOT, "tests", "helpers", "parallel_check.py")

# The helper trains and traces several tiny models: about 90 s of CPU in all.
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_check_script(HELPER, tmp_path_factory.mktemp("parallel"))


def test_get_strategy_needs_enough_devices():
    # In this process TensorFlow sees its default devices only.
    visible = max(len(tf.config.list_logical_devices("GPU")),
                  len(tf.config.list_logical_devices("CPU")))
    with pytest.raises(ValueError, match=f"GPU_COUNT={visible + 1} but only"):
        get_strategy(visible + 1)
    with pytest.raises(ValueError, match="expected an int >= 1"):
        get_strategy(0)


@slow
def test_helper_ran_on_two_logical_cpus(results):
    assert results["logical_cpus"] == 2


@slow
def test_bad_device_counts_raise_clear_errors(results):
    errors = results["errors"]
    for case in ("gpu_count_3", "parallel_model_3"):
        assert errors[case]["raised"] == "ValueError"
        assert "GPU_COUNT=3" in errors[case]["message"]
        assert "2 logical CPU device(s)" in errors[case]["message"]
    # Models ParallelModel cannot rebuild under the strategy say so.
    assert errors["subclassed"]["raised"] == "ValueError"
    assert "expected a functional or Sequential keras.Model" in errors["subclassed"]["message"]
    assert errors["unclonable"]["raised"] == "ValueError"
    assert "get_strategy(gpu_count).scope()" in errors["unclonable"]["message"]
    assert errors["strategy_0"]["raised"] == "ValueError"
    assert errors["uneven_batch"]["raised"] == "ValueError"
    assert "a batch of 3 cannot be split evenly over 2 replicas" in \
        errors["uneven_batch"]["message"]


@slow
def test_training_on_two_replicas_writes_a_checkpoint(results):
    train = results["train"]
    assert_trained_on_two_replicas(train, LOSS_NAMES)
    assert train["checkpoint"].endswith("mask_rcnn_par_0001.h5")


@slow
def test_losses_match_one_device_on_the_same_batch(results):
    single, parallel = results["losses"]["single"], results["losses"]["parallel"]
    assert set(single) == set(parallel) == {"loss", "l2_loss", *LOSS_NAMES}
    for name in single:
        assert parallel[name] == pytest.approx(single[name], rel=1e-5, abs=1e-7), name
    # Every component is exercised: the ROIs hold positives (box and mask losses).
    for name in LOSS_NAMES:
        assert single[name] > 1e-3, name


@slow
def test_one_sgd_step_matches_one_device(results):
    sgd = results["sgd"]
    # Clipped step: the batch gradient's global norm was clipped (the update's norm is
    # exactly lr * clip), identically on one device and on two replicas; clipping each
    # replica's share instead would move weights by about max_change. (The step's
    # size depends on the batch's RPN draws, seeded by sample position: 7.8e-4 here.)
    assert sgd["max_change"] > 2e-4
    assert sgd["clipped_update_norm"] == pytest.approx(sgd["clip"], rel=1e-3)
    assert sgd["max_diff"] < 2e-6
    # Unclipped step: a missing (2x) or doubled (0.5x) 1/replicas scaling would make
    # the two differ by about the step itself; float round-off is ~1e-4 of it.
    assert sgd["unclipped_max_change"] > 1e-3
    assert sgd["unclipped_max_diff"] < 1e-3 * sgd["unclipped_max_change"]
    assert sgd["replica_max_diff"] < 1e-3 * sgd["unclipped_max_change"]
    for name, value in sgd["single_logs"].items():
        assert sgd["parallel_logs"][name] == pytest.approx(value, rel=1e-5, abs=1e-7)


@slow
def test_checkpoints_move_between_one_and_two_replicas(results):
    ck = results["checkpoints"]
    # 2 replicas -> one-device inference model, every array equal.
    assert ck["to_single_loaded"] == ck["to_single_keys"] > 100
    assert ck["to_single_missing"] == []
    assert ck["to_single_max_diff"] == 0.0
    # One device -> 2-replica inference model, every replica's copy equal.
    assert ck["to_parallel_loaded"] == ck["to_parallel_keys"] == ck["to_single_keys"]
    assert ck["to_parallel_missing"] == []
    assert ck["to_parallel_max_diff"] == 0.0
    # Inference splits the batch over the replicas: same outputs, same shapes.
    for one, two in ck["outputs_shapes"]:
        assert one == two and one[0] == 2
    # Equal up to float32 rounding of each output's magnitude: one device computes a
    # batch of 2, each replica a batch of 1, and some CPU kernels (Eigen, e.g. with
    # TF_ENABLE_ONEDNN_OPTS=0) round differently by batch shape (measured 2.7e-5 on
    # mrcnn_bbox there, 0 with oneDNN). A wrong split of the batch differs by O(1).
    for diff, scale in zip(ck["outputs_max_diff"], ck["outputs_max_abs"]):
        assert diff <= 1e-5 * max(1.0, scale), (ck["outputs_max_diff"], ck["outputs_max_abs"])
    assert ck["detect_results"] == 2


@slow
def test_parallel_model_rebuilds_a_model_built_outside_the_scope(results):
    clone = results["clone"]
    assert clone["rebuilt"]
    assert clone["class"] == "LossModel"
    assert clone["loss_settings_equal"]
    assert list(clone["variable_kinds"]) == ["MirroredVariable"]
    assert clone["weights_max_diff"] == 0.0
    # Its training step equals the one of the model built under the scope.
    assert clone["logs_max_diff"] < 1e-6
    assert clone["after_max_diff"] < 1e-6
