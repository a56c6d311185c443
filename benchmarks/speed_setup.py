"""What every speed measurement shares: the benchmark configs, interleaved timing,
memory readings and the generated shapes data (benchmarks/speed.py runs them)."""
from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Any, Callable

from common import REPO  # noqa: F401,E402 - sets up sys.path

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from samples.shapes.generate import generate_dataset  # noqa: E402
from siamese_mrcnn.coco import IndexedCocoDataset  # noqa: E402
from siamese_mrcnn.config import Config, preset  # noqa: E402

from precision import reference_crop  # noqa: E402

# Every benchmark config: detection always fills DETECTION_MAX_INSTANCES (speed.py says why).
COMMON_OVERRIDES = {"DETECTION_MIN_CONFIDENCE": 0.0}

# The CPU smoke setting: resnet_tiny at 128 px, narrow heads, few ROIs.
TINY_OVERRIDES = {
    "BACKBONE": "resnet_tiny", "IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128,
    "TARGET_MIN_DIM": 24, "TARGET_MAX_DIM": 32, "FPN_FEATUREMAPS": 64,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 128, "PRE_NMS_LIMIT": 1000, "POST_NMS_ROIS_INFERENCE": 100,
    "POST_NMS_ROIS_TRAINING": 100, "TRAIN_ROIS_PER_IMAGE": 32,
    "RPN_TRAIN_ANCHORS_PER_IMAGE": 32, "DETECTION_MAX_INSTANCES": 10, "MAX_GT_INSTANCES": 10,
}

# name -> (inference preset, training preset, extra overrides)
CONFIGS = {
    "small": ("small_eval", "small", {}),
    "tiny": ("small_eval", "small", TINY_OVERRIDES),
    "large": ("large_eval", "large", {"GPU_COUNT": 1}),
}
# Training batch (IMAGES_PER_GPU) per config: 2 keeps the small config trainable on a
# CPU; the large one is the paper's 3 images per GPU.
CONFIGS_TRAIN_BATCH = {"small": 2, "tiny": 2, "large": 3}


def make_config(name: str, mode: str, images_per_gpu: int, overrides: dict) -> Config:
    """The benchmark config ``name`` ('small', 'tiny', 'large') for 'inference' or
    'training', with IMAGES_PER_GPU and the user's --set overrides applied last."""
    if name not in CONFIGS:
        raise ValueError(f"config: expected one of {sorted(CONFIGS)}, got {name!r}")
    eval_preset, train_preset, extra = CONFIGS[name]
    fields = {**COMMON_OVERRIDES, **extra, "IMAGES_PER_GPU": images_per_gpu, **overrides}
    return preset(eval_preset if mode == "inference" else train_preset, **fields)


def interleaved_seconds(calls: dict[str, Callable[[], Any]], repeats: int,
                        warmup: int = 1) -> dict[str, dict]:
    """Wall times of several calls measured in turns: ``warmup`` untimed rounds, then
    ``repeats`` rounds that call each in order, so a change of machine load hits all of
    them alike. Returns {name: {"median": s, "min": s}}.
    """
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: {"median": statistics.median(t), "min": min(t)} for name, t in times.items()}


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    return interleaved_seconds({"fn": fn}, repeats, warmup)["fn"]["median"]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1024 ** 2 if sys.platform == "darwin" else peak / 1024


def gpu_peak_mb() -> float | None:
    """Peak GPU memory allocated by TensorFlow on GPU:0 since the last reset, MiB."""
    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1024 ** 2


def reset_gpu_peak() -> None:
    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.reset_memory_stats("GPU:0")


def release(*models: Any) -> None:
    """Drops Keras state so the next models start from a clean graph namespace."""
    del models
    keras.backend.clear_session()


def image_size(config: Config) -> int:
    """Side of the generated images: 1.25 x IMAGE_MAX_DIM, so that loading includes the
    downscaling that COCO's 640 x 480 images get at 512 px."""
    return int(config.IMAGE_MAX_DIM) * 5 // 4


class ShapesData:
    """A generated shapes data set (COCO layout) and (query, reference) examples."""

    def __init__(self, root: str, num_images: int, size: int, seed: int = 0):
        paths = generate_dataset(root, num_images, 0, seed=seed, size=size, workers=1)
        self.dataset = IndexedCocoDataset()
        self.coco = self.dataset.load_coco(str(paths.root), "train", return_coco=True,
                                           subsubset=None)
        self.dataset.prepare()

    def queries(self, count: int) -> list[np.ndarray]:
        """``count`` query images (cycling through the data set)."""
        ids = self.dataset.image_ids
        return [self.dataset.load_image(ids[i % len(ids)]) for i in range(count)]

    def references(self, count: int) -> list[np.ndarray]:
        """``count`` reference crops: the first instance's box of successive images,
        taken from the end of the data set so they are not the first queries."""
        ids = self.dataset.image_ids[::-1]
        return [reference_crop(self.dataset, ids[i % len(ids)]) for i in range(count)]
