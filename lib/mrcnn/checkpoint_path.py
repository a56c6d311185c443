"""find_last()'s return value: a path that also reads as Matterport 2.1's tuple.

Matterport 2.1 (the version the paper's code vendors) returned ``(log_dir,
checkpoint_path)`` from ``find_last()``; later Matterport returns the path alone. User
code exists in both styles:

    model.load_weights(model.find_last(), by_name=True)      # later Matterport
    model.load_weights(model.find_last()[1], by_name=True)   # 2.1
    log_dir, checkpoint = model.find_last()                   # 2.1

``LastCheckpoint`` is a ``str`` (the checkpoint path: ``open``, ``os.path``, ``h5py``
and string methods see an ordinary path) whose integer indices and iteration are the
2.1 pair's. Slices stay string slices. Any other integer index raises an IndexError
that says what to write instead.
"""
from __future__ import annotations

import os
from typing import Iterator


class LastCheckpoint(str):
    """The last checkpoint's path; ``[0]`` / ``[1]`` and unpacking give 2.1's
    ``(log_dir, checkpoint_path)``."""

    def __new__(cls, path: str) -> "LastCheckpoint":
        return super().__new__(cls, os.fspath(path))

    @property
    def log_dir(self) -> str:
        """The run folder that holds the checkpoint (2.1's first element)."""
        return os.path.dirname(str(self))

    def as_tuple(self) -> tuple[str, str]:
        """Matterport 2.1's return value: (log_dir, checkpoint_path) as plain strings."""
        return self.log_dir, str(self)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return str(self)[key]
        if isinstance(key, int) and -2 <= key <= 1:
            return self.as_tuple()[key]
        raise IndexError(
            f"find_last() returns the checkpoint path {str(self)!r}; index 0 / 1 give "
            f"Matterport 2.1's (log_dir, checkpoint_path), got index {key!r}. Use the "
            "value itself as the path, or str(...)[i] for its characters.")

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_tuple())

    def __repr__(self) -> str:
        return f"LastCheckpoint({str(self)!r})"

    def __reduce__(self):
        return (LastCheckpoint, (str(self),))
