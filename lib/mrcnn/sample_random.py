"""Random draws of one training sample, the same whichever thread loads it.

Matterport's sample helpers (build_rpn_targets, build_detection_targets,
generate_random_rois, load_image_gt's flip) draw from the global np.random and
random. The data generators seed each sample (seeded_global_random) so that it is
the same in any process, worker or batch. The global generators are shared by every
thread of the process, though, and a lock only holds back the threads that take it:
one draw by any other thread between the seeding and a helper's draw shifts the
sample's stream (seen once in CI: one of the 13 negative anchors kept differed).
Inside the block the helpers therefore draw from this thread's own generators,
seeded alike: np.random.RandomState(seed) and random.Random(seed) give the streams
np.random.seed(seed) and random.seed(seed) give. Outside it they draw from the global
ones, as Matterport's did.
"""
from __future__ import annotations

import contextlib
import random
import sys
import threading
from typing import Any, Iterator

import numpy as np

_LOCAL = threading.local()
# Code that draws from the global generators itself (a load_sample override, imgaug)
# still gets its seeded stream when its threads go through seeded_global_random.
_GLOBAL_RANDOM_LOCK = threading.RLock()  # a load_sample override may nest a block


def numpy_random() -> Any:
    """The generator a sample helper draws from: this thread's seeded RandomState
    inside seeded_global_random, else the np.random module (same methods)."""
    state = getattr(_LOCAL, "numpy", None)
    return np.random if state is None else state


def python_random() -> Any:
    """As numpy_random, for Python's random: a random.Random or the random module."""
    state = getattr(_LOCAL, "python", None)
    return random if state is None else state


@contextlib.contextmanager
def seeded_global_random(seed: int) -> Iterator[None]:
    """Seeds this thread's sample generators and np.random, random and imgaug for a
    block; restores numpy's and random's global states (imgaug has no getter)."""
    with _GLOBAL_RANDOM_LOCK:
        numpy_state, python_state = np.random.get_state(), random.getstate()
        outer = getattr(_LOCAL, "numpy", None), getattr(_LOCAL, "python", None)
        np.random.seed(seed)
        random.seed(seed)
        _LOCAL.numpy, _LOCAL.python = np.random.RandomState(seed), random.Random(seed)
        imgaug = sys.modules.get("imgaug")
        if imgaug is not None and hasattr(getattr(imgaug, "random", None), "seed"):
            imgaug.random.seed(seed)
        try:
            yield
        finally:
            _LOCAL.numpy, _LOCAL.python = outer
            np.random.set_state(numpy_state)
            random.setstate(python_state)
