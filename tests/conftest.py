"""Test-wide settings: quiet TensorFlow, headless matplotlib, deterministic seeds."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    yield


# Modules that take a minute or more, slowest first. `make test` runs two xdist workers,
# each taking a whole module at a time (--dist loadfile) in collection order: started
# first, these overlap with the many short modules on the other worker instead of
# running last with one core idle. The sort is stable: everything else keeps its order.
SLOW_MODULES = (
    "tests/mrcnn/test_parallel_model.py",
    "tests/siamese_mrcnn/test_parallel.py",
    "tests/siamese_mrcnn/test_model.py",
    "tests/mrcnn/test_training.py",
    "tests/e2e/test_coco_cli.py",
    "tests/e2e/test_train_siamese_cli.py",
    "tests/e2e/test_benchmarks.py",
    "tests/e2e/test_notebooks.py",
    "tests/e2e/test_quickstart.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {path: i for i, path in enumerate(SLOW_MODULES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
