"""Multi-GPU training with Matterport's ``ParallelModel`` API on tf.distribute.

Matterport split each batch across GPUs by hand inside the graph. Keras 3 does this
with ``tf.distribute.MirroredStrategy``: a model built under the strategy's scope keeps
mirrored variables, ``fit`` splits each global batch (BATCH_SIZE = IMAGES_PER_GPU x
GPU_COUNT) into per-replica batches of IMAGES_PER_GPU and sums the gradients.

``MaskRCNN`` builds its graph under ``get_strategy(GPU_COUNT).scope()`` when
GPU_COUNT > 1; ``ParallelModel`` wraps such a model and keeps Matterport's attributes
(``inner_model``, ``gpu_count``). A model built outside a strategy is rebuilt inside one
by cloning its layers and copying its weights by name.
"""
from __future__ import annotations

import logging

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

_STRATEGIES: dict = {}


def get_strategy(gpu_count: int) -> tf.distribute.Strategy:
    """A MirroredStrategy over ``gpu_count`` GPUs, or logical CPUs when no GPUs exist.

    Logical CPUs (``tf.config.set_logical_device_configuration``) make multi-device
    code testable on a CPU-only machine.
    """
    if gpu_count < 1:
        raise ValueError(f"gpu_count must be >= 1, got {gpu_count}")
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= gpu_count:
        devices = tuple(d.name for d in gpus[:gpu_count])
        cross_ops = None
    else:
        cpus = tf.config.list_logical_devices("CPU")
        if len(cpus) < gpu_count:
            raise ValueError(
                f"GPU_COUNT={gpu_count} but only {len(gpus)} GPU(s) and {len(cpus)} logical "
                "CPU device(s) are visible. Lower GPU_COUNT, or for CPU testing configure "
                "logical CPUs with tf.config.set_logical_device_configuration before "
                "TensorFlow initialises.")
        devices = tuple(d.name for d in cpus[:gpu_count])
        # NCCL all-reduce needs GPUs.
        cross_ops = tf.distribute.ReductionToOneDevice()
    if devices not in _STRATEGIES:
        _STRATEGIES[devices] = tf.distribute.MirroredStrategy(
            devices=list(devices), cross_device_ops=cross_ops)
        logger.info("MirroredStrategy over %s", ", ".join(devices))
    return _STRATEGIES[devices]


def _built_under(model: keras.Model, strategy: tf.distribute.Strategy) -> bool:
    return getattr(model, "_distribute_strategy", None) is strategy


class ParallelModel:
    """Matterport's ParallelModel(keras_model, gpu_count) on tf.distribute.

    Behaves like the wrapped Keras model (attribute access is forwarded) and trains it
    data-parallel over ``gpu_count`` replicas. ``inner_model`` is the model whose
    weights are saved: checkpoints are interchangeable with single-device ones.
    """

    def __init__(self, keras_model: keras.Model, gpu_count: int):
        self.gpu_count = gpu_count
        self.strategy = get_strategy(gpu_count)
        if not _built_under(keras_model, self.strategy):
            keras_model = self._rebuild(keras_model)
        self.inner_model = keras_model

    def _rebuild(self, keras_model: keras.Model) -> keras.Model:
        from mrcnn import weights as weights_io

        logger.info("Rebuilding %s under the MirroredStrategy scope", keras_model.name)
        with self.strategy.scope():
            clone = keras.models.clone_model(keras_model)
        source = weights_io.weight_map(keras_model)
        target = weights_io.weight_map(clone)
        for key, variable in target.items():
            variable.assign(source[key].value)
        return clone

    def __getattr__(self, name):
        # Only called for attributes not found on the wrapper itself.
        return getattr(self.__dict__["inner_model"], name)

    def __call__(self, *args, **kwargs):
        return self.inner_model(*args, **kwargs)

    def __repr__(self) -> str:
        return f"ParallelModel({self.inner_model.name!r}, gpu_count={self.gpu_count})"
