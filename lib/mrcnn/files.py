"""Result files written whole or not at all (standard library only).

A run killed while writing must never leave half a file under the real name, where the
next run, ``make app`` or a test would read it. One writer serves the evaluation's
tables and JSON (siamese_mrcnn.analysis), the generated data set's annotation files
(samples/shapes/generate.py) and the benchmark reports and traces (benchmarks/common.py,
which must run without TensorFlow on the GPU machine: hence no import beyond ``os``).
file_above tells, before any work, when a file blocks an output folder's path.
"""
from __future__ import annotations

import contextlib
import os
from typing import Optional, Union


def file_above(path: Union[str, os.PathLike]) -> Optional[str]:
    """The nearest existing path above ``path`` when it is a file, not a folder (so that
    ``path`` can never be made: os.makedirs and TensorFlow fail only after the work);
    else None."""
    above = os.path.dirname(os.path.abspath(os.fspath(path)))
    while not os.path.exists(above):  # the root exists: this ends
        above = os.path.dirname(above)
    return None if os.path.isdir(above) else above


def write_atomic(path: Union[str, os.PathLike], data: Union[str, bytes]) -> str:
    """Writes ``data`` (text as UTF-8, its line ends as given; or bytes) to PATH.partial,
    then renames it onto ``path``, making the folder. A killed process leaves the
    previous file whole, and a failed write (a full disk, Ctrl-C) removes PATH.partial.
    Returns ``path`` as a str."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = path + ".partial"
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(temporary, "wb") as f:
            f.write(payload)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    return path


__all__ = ["write_atomic"]
