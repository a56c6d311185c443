"""mrcnn.files.write_atomic: whole files or none, the folder made, no temp file left."""
import os
from pathlib import Path

import pytest

from mrcnn import files
from tests.helpers.processes import run_python

REPO = Path(__file__).resolve().parents[2]


def test_text_and_bytes_are_written_exactly(tmp_path):
    text_path = tmp_path / "a" / "b" / "table.csv"
    assert files.write_atomic(text_path, "x,é\r\n1,2\n") == str(text_path)
    assert text_path.read_bytes() == "x,é\r\n1,2\n".encode("utf-8")  # no line-end rewrite
    assert files.write_atomic(str(tmp_path / "t.bin"), b"\x00\xff") == str(tmp_path / "t.bin")
    assert (tmp_path / "t.bin").read_bytes() == b"\x00\xff"
    assert sorted(os.listdir(tmp_path)) == ["a", "t.bin"]


@pytest.mark.parametrize("failing", ["write", "replace"])
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch,
                                                                   failing):
    path = tmp_path / "results.json"
    files.write_atomic(path, '{"run": 1}')

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    if failing == "replace":  # the process dies between the write and the rename
        monkeypatch.setattr(files.os, "replace", killed)
        data = '{"run": 2}'
    else:  # the payload cannot be written (a full disk, say): here it is not bytes
        data = object()
    with pytest.raises((KeyboardInterrupt, TypeError)):
        files.write_atomic(path, data)
    assert path.read_text() == '{"run": 1}'
    assert os.listdir(tmp_path) == ["results.json"]


def test_imports_only_the_standard_library():
    """benchmarks/common.py uses it on the GPU machine, which has no TensorFlow."""
    code = ("import sys; sys.path.insert(0, 'lib'); import mrcnn.files; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules))")
    done = run_python(["-c", code], cwd=REPO, timeout=300)  # hang bound: a cold interpreter
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_file_above_names_the_file_that_blocks_a_path(tmp_path):
    (tmp_path / "f").write_text("x")
    assert files.file_above(tmp_path / "f" / "a" / "b") == str(tmp_path / "f")
    assert files.file_above(str(tmp_path / "f" / "a")) == str(tmp_path / "f")
    assert files.file_above(tmp_path / "new" / "deeper") is None
    assert files.file_above(tmp_path / "f") is None  # the path itself may be a file
    assert files.file_above("relative/name") is None
