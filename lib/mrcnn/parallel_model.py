"""Multi-GPU training with Matterport's ``ParallelModel`` API on tf.distribute.

Matterport split each batch across GPUs by hand inside the graph and averaged the
towers' losses. Keras 3 does the same with ``tf.distribute.MirroredStrategy``: a model
built under the strategy's scope keeps mirrored variables, ``fit`` splits each global
batch (BATCH_SIZE = IMAGES_PER_GPU x GPU_COUNT) into per-replica batches of
IMAGES_PER_GPU, and the logged losses are the mean over replicas, as Matterport's were.

``MaskRCNN`` builds its graph under ``get_strategy(GPU_COUNT).scope()`` when
GPU_COUNT > 1 and wraps it in ``ParallelModel``. A model built outside the strategy is
rebuilt inside it (its layers cloned from their configs, its weights copied by name).
Optimizers passed to ``ParallelModel.compile`` are (re)created under the scope, which
Keras requires. Gradient scaling and clipping across replicas live in
``mrcnn.training.LossModel.train_step``.
"""
from __future__ import annotations

import logging

import keras
try:  # JAX and PyTorch machines may have no TensorFlow: its paths then never run
    import tensorflow as tf
except ImportError:
    tf = None

logger = logging.getLogger(__name__)

# One strategy per device set: Keras insists that a model, its optimizer and its
# training loop all use the very same strategy object.
_STRATEGIES: dict[tuple[str, ...], tf.distribute.Strategy] = {}


def _replica_devices(gpu_count: int) -> tuple[tuple[str, ...], bool]:
    """Names of the ``gpu_count`` devices to replicate over, and whether they are GPUs."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= gpu_count:
        return tuple(d.name for d in gpus[:gpu_count]), True
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) >= gpu_count:
        return tuple(d.name for d in cpus[:gpu_count]), False
    raise ValueError(
        f"GPU_COUNT={gpu_count} but only {len(gpus)} GPU(s) and {len(cpus)} logical CPU "
        "device(s) are visible. Lower GPU_COUNT, or, to test on a CPU, split the CPU into "
        "logical devices with tf.config.set_logical_device_configuration before "
        "TensorFlow initialises.")


def get_strategy(gpu_count: int) -> tf.distribute.Strategy:
    """A MirroredStrategy over ``gpu_count`` GPUs, or logical CPUs when GPUs are fewer.

    Logical CPUs (``tf.config.set_logical_device_configuration``) make multi-device
    code testable on a CPU-only machine. The same object is returned for the same
    device set. Raises ValueError when fewer than ``gpu_count`` devices exist.
    """
    if isinstance(gpu_count, bool) or not isinstance(gpu_count, int) or gpu_count < 1:
        raise ValueError(f"gpu_count: expected an int >= 1, got {gpu_count!r}")
    devices, on_gpus = _replica_devices(gpu_count)
    if devices not in _STRATEGIES:
        # NCCL all-reduce (the default) needs GPUs.
        cross_ops = None if on_gpus else tf.distribute.ReductionToOneDevice()
        _STRATEGIES[devices] = tf.distribute.MirroredStrategy(
            devices=list(devices), cross_device_ops=cross_ops)
        logger.info("MirroredStrategy over %s", ", ".join(devices))
    return _STRATEGIES[devices]


def built_under(model: keras.Model, strategy: tf.distribute.Strategy) -> bool:
    """Whether ``model`` was created under ``strategy``'s scope (its variables mirrored)."""
    return getattr(model, "_distribute_strategy", None) is strategy


def _clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    return layer.__class__.from_config(layer.get_config())


def rebuild_under(keras_model: keras.Model,
                  strategy: tf.distribute.Strategy) -> keras.Model:
    """A copy of a functional ``keras_model`` created under ``strategy``, same weights.

    Every layer is re-created from its config (custom layers must implement
    get_config), then every variable is copied by its "layer/variable" key. A
    ``LossModel`` keeps its loss names, loss weights and weight decay.
    """
    from mrcnn import weights as weights_io
    from mrcnn.training import LossModel

    # Subclassed models have no graph to clone.
    if not (isinstance(keras_model, keras.Model) and getattr(keras_model, "inputs", None)):
        raise ValueError("ParallelModel: expected a functional or Sequential keras.Model, "
                         f"got {type(keras_model).__name__}")
    logger.info("Rebuilding %s under the MirroredStrategy scope", keras_model.name)
    with strategy.scope():
        try:
            clone = keras.models.clone_model(keras_model, clone_function=_clone_layer)
        except (TypeError, ValueError, NotImplementedError) as e:
            raise ValueError(
                f"ParallelModel: cannot rebuild {keras_model.name!r} under the "
                f"MirroredStrategy ({e}). Build the model under "
                "mrcnn.parallel_model.get_strategy(gpu_count).scope() instead.") from e
        if isinstance(keras_model, LossModel):
            # clone_model calls the class with (inputs, outputs) only: pass the rest.
            clone = LossModel(clone.inputs, clone.outputs, name=keras_model.name,
                              **keras_model.loss_settings())
    source = weights_io.weight_map(keras_model)
    target = weights_io.weight_map(clone)
    if source.keys() != target.keys():
        missing = sorted(source.keys() ^ target.keys())
        raise ValueError(f"ParallelModel: the rebuilt model's weights differ from the "
                         f"original's: {missing[:8]}")
    for key, variable in target.items():
        variable.assign(source[key].value)
    return clone


def _optimizer_under(optimizer, strategy: tf.distribute.Strategy):
    """The optimizer itself when it belongs to ``strategy``, else a fresh copy that does.

    Keras' TF optimizers remember the strategy current at construction; one made
    outside the scope fails at the first update ("Mixing different
    tf.distribute.Strategy objects").
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer  # a name such as "sgd": Keras creates it under the scope
    if getattr(optimizer, "_distribution_strategy", strategy) is strategy:
        return optimizer
    if optimizer.built:
        raise ValueError("ParallelModel.compile: the optimizer already holds state built "
                         "outside the MirroredStrategy scope; pass a new optimizer")
    return optimizer.__class__.from_config(optimizer.get_config())


class ParallelModel:
    """Matterport's ParallelModel(keras_model, gpu_count) on tf.distribute.

    Behaves like the wrapped Keras model (attribute reads and writes are forwarded)
    and trains it data-parallel over ``gpu_count`` replicas: ``fit`` takes batches of
    IMAGES_PER_GPU x gpu_count. ``inner_model`` is the Keras model itself; its
    checkpoints are interchangeable with single-device ones.

    keras_model: a functional model, ideally built under
        ``get_strategy(gpu_count).scope()``; otherwise it is rebuilt under it
        (see ``rebuild_under``) and the original is left untouched.
    gpu_count: replicas; ValueError when fewer devices are visible.
    """

    _OWN = ("inner_model", "gpu_count", "strategy")

    def __init__(self, keras_model: keras.Model, gpu_count: int):
        strategy = get_strategy(gpu_count)
        if not built_under(keras_model, strategy):
            keras_model = rebuild_under(keras_model, strategy)
        object.__setattr__(self, "gpu_count", gpu_count)
        object.__setattr__(self, "strategy", strategy)
        object.__setattr__(self, "inner_model", keras_model)

    def compile(self, optimizer="rmsprop", **kwargs) -> None:
        """Compiles the inner model under the strategy scope (see Keras Model.compile)."""
        with self.strategy.scope():
            optimizer = _optimizer_under(optimizer, self.strategy)
            self.inner_model.compile(optimizer=optimizer, **kwargs)

    def sub_model(self, inputs, outputs, name: str | None = None) -> "ParallelModel":
        """A model between tensors of the inner model, sharing its layers and weights.

        It is created under the strategy and wrapped, so that its predict_on_batch
        splits a batch over the replicas as this model's does: graphs with per-image
        loops (ProposalLayer, DetectionLayer) are built for IMAGES_PER_GPU images and
        fail on the whole batch.
        """
        with self.strategy.scope():
            model = keras.Model(inputs, outputs, name=name)
        return ParallelModel(model, self.gpu_count)

    # Keras' *_on_batch methods hand the whole batch to every replica (and predict
    # concatenates the replicas' outputs). Matterport's ParallelModel split the batch
    # over the GPUs: go through fit/evaluate/predict, which distribute a batch of
    # BATCH_SIZE as IMAGES_PER_GPU per replica.
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict: bool = False):
        """One optimizer step on one batch split over the replicas (Keras semantics)."""
        history = self.inner_model.fit(
            x, y, sample_weight=sample_weight, class_weight=class_weight,
            batch_size=self._batch_size(x), epochs=1, shuffle=False, verbose=0)
        logs = {name: values[-1] for name, values in history.history.items()}
        return logs if return_dict else self._flatten(logs)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict: bool = False):
        """The model's losses and metrics on one batch split over the replicas."""
        return self.inner_model.evaluate(x, y, sample_weight=sample_weight,
                                         batch_size=self._batch_size(x), verbose=0,
                                         return_dict=return_dict)

    def predict_on_batch(self, x):
        """The model's outputs for one batch split over the replicas, in batch order."""
        return self.inner_model.predict(x, batch_size=self._batch_size(x), verbose=0)

    def _batch_size(self, x) -> int:
        """The batch's length; ValueError unless the replicas can share it evenly."""
        sizes = {int(a.shape[0]) for a in tf.nest.flatten(x)}
        if len(sizes) != 1:
            raise ValueError(f"ParallelModel: inputs disagree on the batch size: {sorted(sizes)}")
        size = sizes.pop()
        if size == 0 or size % self.gpu_count:
            raise ValueError(f"ParallelModel: a batch of {size} cannot be split evenly over "
                             f"{self.gpu_count} replicas; expected a multiple of "
                             f"{self.gpu_count} (BATCH_SIZE = IMAGES_PER_GPU x GPU_COUNT)")
        return size

    def _flatten(self, logs: dict):
        """Logs as a list in metric order, like Keras' train_on_batch."""
        order = [m.name for m in self.inner_model.metrics if m.name in logs]
        values = [logs[n] for n in order] + [logs[k] for k in sorted(logs) if k not in order]
        return values[0] if len(values) == 1 else values

    def __getattr__(self, name):
        # Only reached for names not found on the wrapper itself.
        inner = self.__dict__.get("inner_model")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def __setattr__(self, name, value) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner_model, name, value)

    def __call__(self, *args, **kwargs):
        return self.inner_model(*args, **kwargs)

    def __repr__(self) -> str:
        return f"ParallelModel({self.inner_model.name!r}, gpu_count={self.gpu_count})"
