"""Checkpoint policies (mrcnn.checkpoints): naming, resuming, finding the latest."""
import datetime
import os
import types

import pytest

from mrcnn.checkpoints import FixedRun, TimestampedRuns, epoch_in_name


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


CONFIG = types.SimpleNamespace(NAME="Shapes", EXPERIMENT="E1", MODEL="mrcnn")


def test_epoch_in_name_reads_the_last_four_digits():
    assert epoch_in_name("/w/small_siamese_mrcnn_0160.h5") == 160
    assert epoch_in_name("large_siamese_mrcnn_coco_full_0320.h5") == 320
    assert epoch_in_name("mask_rcnn_coco.h5") is None
    assert epoch_in_name("x_160.h5") is None


def test_timestamped_runs_locate_a_new_run_and_resume_an_old_one(tmp_path):
    policy = TimestampedRuns("mask_rcnn")
    run = policy.locate(str(tmp_path), CONFIG, now=datetime.datetime(2024, 5, 6, 7, 8))
    assert run.epoch == 0
    assert run.log_dir == str(tmp_path / "shapes20240506T0708")
    assert run.checkpoint_path.format(epoch=3) == str(
        tmp_path / "shapes20240506T0708" / "mask_rcnn_shapes_0003.h5")
    old = os.path.join("x", "logs", "shapes20231231T2359", "mask_rcnn_shapes_0042.h5")
    resumed = policy.locate(str(tmp_path), CONFIG, os.sep + old)
    assert (resumed.log_dir, resumed.epoch) == (str(tmp_path / "shapes20231231T2359"), 42)
    assert policy.epoch_of("C:\\logs\\shapes20231231T2359\\mask_rcnn_shapes_0007.h5") == 7
    # A file outside a timestamped run folder starts a new run.
    assert not policy.is_checkpoint("/w/mask_rcnn_shapes_0007.h5")
    assert policy.locate(str(tmp_path), CONFIG, "/w/mask_rcnn_shapes_0007.h5").epoch == 0


def test_timestamped_runs_latest(tmp_path):
    policy = TimestampedRuns("mask_rcnn")
    _touch(str(tmp_path / "shapes20240101T1200" / "mask_rcnn_shapes_0009.h5"))
    _touch(str(tmp_path / "shapes20240102T1200" / "mask_rcnn_shapes_0001.h5"))
    _touch(str(tmp_path / "shapes20240102T1200" / "mask_rcnn_shapes_0002.h5"))
    os.makedirs(tmp_path / "shapes20240103T1200")  # died before its first checkpoint
    assert policy.latest(str(tmp_path), CONFIG) == str(
        tmp_path / "shapes20240102T1200" / "mask_rcnn_shapes_0002.h5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        policy.latest(str(tmp_path / "nowhere"), CONFIG)


def test_fixed_run_names_resumes_and_finds_the_highest_epoch(tmp_path):
    policy = FixedRun(prefix="siamese_mrcnn",
                      run_name=lambda c: f"siamese_{c.NAME.lower()}_{c.EXPERIMENT.lower()}")
    run = policy.locate(str(tmp_path), CONFIG)
    assert run.log_dir == str(tmp_path / "siamese_shapes_e1")
    assert run.checkpoint_path.format(epoch=12) == str(
        tmp_path / "siamese_shapes_e1" / "siamese_mrcnn_0012.h5")
    assert run.epoch == 0
    assert policy.locate(str(tmp_path), CONFIG, "/a/siamese_mrcnn_0005.h5").epoch == 5
    # Released files carry an epoch in their name but are not this run's checkpoints.
    assert policy.locate(str(tmp_path), CONFIG, "/a/small_siamese_mrcnn_0160.h5").epoch == 0
    with pytest.raises(FileNotFoundError, match=r"siamese_mrcnn_####\.h5"):
        policy.latest(str(tmp_path), CONFIG)
    for epoch in (2, 10, 9):
        _touch(run.checkpoint_path.format(epoch=epoch))
    _touch(str(tmp_path / "siamese_shapes_e1" / "siamese_mrcnn_0099.h5.tmp"))
    _touch(str(tmp_path / "siamese_shapes_e1" / "siamese_mrcnn_final.h5"))
    assert policy.latest(str(tmp_path), CONFIG) == run.checkpoint_path.format(epoch=10)
