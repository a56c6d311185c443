"""find_last()'s return value reads as a path and as Matterport 2.1's tuple."""
import os
import pickle

import pytest

from mrcnn.checkpoint_path import LastCheckpoint

PATH = os.path.join("logs", "shapes20240102T0800", "mask_rcnn_shapes_0002.h5")


def test_is_the_path_for_everything_that_takes_a_path(tmp_path):
    value = LastCheckpoint(PATH)
    assert isinstance(value, str) and value == PATH
    assert os.fspath(value) == PATH and os.path.basename(value) == "mask_rcnn_shapes_0002.h5"
    assert value.endswith(".h5") and value[:4] == "logs" and value[-3:] == ".h5"
    assert f"{value}" == PATH and str(value) == PATH and type(str(value)) is str
    real = tmp_path / "x.h5"
    real.write_bytes(b"x")
    with open(LastCheckpoint(str(real)), "rb") as f:
        assert f.read() == b"x"
    assert pickle.loads(pickle.dumps(value)) == value


def test_indices_and_unpacking_are_matterport_2_1s_pair():
    value = LastCheckpoint(PATH)
    log_dir, checkpoint = value
    assert (log_dir, checkpoint) == (os.path.dirname(PATH), PATH)
    assert value[1] == PATH and value[-1] == PATH and value[0] == os.path.dirname(PATH)
    assert value[-2] == value.log_dir == os.path.dirname(PATH)
    assert value.as_tuple() == (os.path.dirname(PATH), PATH)
    assert type(value[1]) is str


def test_other_indices_say_what_to_write_instead():
    with pytest.raises(IndexError, match=r"index 0 / 1 give Matterport 2.1's \(log_dir, "
                                         r"checkpoint_path\), got index 2"):
        LastCheckpoint(PATH)[2]
