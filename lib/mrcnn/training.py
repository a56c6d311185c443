"""The training loop's pieces: the loss-logging model, weight decay, layer presets,
trainability, an atomic checkpoint callback, and the callback that keeps a data
generator at fit's epoch.

Keras 3 dropped ``metrics_tensors`` and symbolic ``add_loss``. The training graph
therefore outputs its loss components as named scalars, and ``LossModel`` weights
them, adds weight decay, and tracks each component with a ``Mean`` metric (its own
train step under TensorFlow; Keras' step with its ``compute_loss`` under JAX and
PyTorch). The
metrics are created once per model and reset each epoch by Keras, so logged values are
per-epoch means and do not accumulate across compiles (Matterport's metrics doubled
when a second training stage re-compiled the model).
"""
from __future__ import annotations

import logging
import numbers
import os
import re
from typing import Iterable, Sequence

import keras
import numpy as np
from keras import ops
try:  # JAX and PyTorch machines may have no TensorFlow: its paths then never run
    import tensorflow as tf
except ImportError:
    tf = None

from mrcnn.config import LOSS_NAMES
from mrcnn.h5_model import LegacyH5Weights
from mrcnn.multi_worker import is_multi_worker, rank_one_logs

logger = logging.getLogger(__name__)

# Matterport's training presets; the Siamese model adds its own (heads/rpn/2+...).
LAYER_REGEX = {
    # all layers but the backbone
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    # from a specific ResNet stage and up
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    # all layers
    "all": ".*",
}



def weight_decay_loss(variables: Iterable[keras.Variable], weight_decay: float):
    """Matterport's L2 term: sum over weights of WEIGHT_DECAY * sum(w^2) / size(w).

    BatchNorm gamma and beta are excluded, as in Matterport. Returns a float32 scalar
    (any backend; inside a stateless scope, of the values it maps).
    """
    total = ops.zeros((), "float32")
    for v in variables:
        if v.path.endswith("gamma") or v.path.endswith("beta"):
            continue
        size = max(int(np.prod(v.shape)), 1)
        total = total + weight_decay * ops.sum(ops.square(ops.cast(v, "float32"))) / size
    return total


def clip_summed_gradients(grads: list, optimizer) -> list:
    """Clips the whole batch's gradient when training on several replicas.

    Keras optimizers clip each replica's gradient and only then sum over replicas: not
    the clipped gradient of the batch that one device (and Matterport) applies. Here
    the replicas' gradients are summed, clipped as the optimizer would, and each
    replica gets an equal share back. The optimizer's own clipping of a share is then a
    no-op (its norm is at most clip / replicas) and its sum restores the clipped total.
    Outside a multi-replica context, or without clipping, ``grads`` is returned as is.
    """
    context = tf.distribute.get_replica_context()
    clipnorm, global_clipnorm, clipvalue = (
        getattr(optimizer, name, None) for name in ("clipnorm", "global_clipnorm", "clipvalue"))
    if context is None or context.num_replicas_in_sync == 1 or not (
            clipnorm or global_clipnorm or clipvalue):
        return grads
    present = [i for i, g in enumerate(grads) if g is not None]
    summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
    # The same precedence as keras.optimizers.Optimizer._clip_gradients.
    if clipnorm:
        clipped = [tf.clip_by_norm(g, clipnorm) for g in summed]
    elif global_clipnorm:
        clipped, _ = tf.clip_by_global_norm(summed, global_clipnorm)
    else:
        clipped = [tf.clip_by_value(g, -clipvalue, clipvalue) for g in summed]
    shares = list(grads)
    for i, g in zip(present, clipped):
        shares[i] = g / context.num_replicas_in_sync
    return shares


class LossModel(LegacyH5Weights, keras.Model):
    """A functional model whose last outputs are named scalar loss components.

    Construct it like a functional model plus ``loss_names`` (the names of the trailing
    scalar outputs), ``loss_weights`` ({name: weight}) and ``weight_decay``. It is
    compiled with an optimizer only; ``fit`` logs ``loss`` (weighted sum incl. weight
    decay), each weighted component, and ``l2_loss``.
    """

    def __init__(self, *args, loss_names: Sequence[str] = LOSS_NAMES,
                 loss_weights: dict | None = None, weight_decay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_names = list(loss_names)
        self.loss_weights = dict(loss_weights or {})
        self.weight_decay = float(weight_decay)
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in ["loss", *self.loss_names, "l2_loss"]}

    @property
    def metrics(self):
        return list(self._trackers.values())

    def loss_settings(self) -> dict:
        """The constructor's loss keywords, to rebuild an equal model (ParallelModel)."""
        return {"loss_names": list(self.loss_names), "loss_weights": dict(self.loss_weights),
                "weight_decay": self.weight_decay}

    def _loss_components(self, data, training: bool):
        inputs = data[0] if isinstance(data, tuple) else data
        return self._weighted(self(inputs, training=training))

    def _weighted(self, outputs):
        """(total, {name: weighted component}, l2) from the graph's outputs."""
        components = outputs[-len(self.loss_names):]
        weighted = {name: ops.cast(c, "float32") * self.loss_weights.get(name, 1.0)
                    for name, c in zip(self.loss_names, components)}
        l2 = weight_decay_loss(self.trainable_variables, self.weight_decay)
        total = l2
        for value in weighted.values():
            total = total + value
        return total, weighted, l2

    def _update_trackers(self, total, weighted, l2) -> None:
        self._trackers["loss"].update_state(total)
        self._trackers["l2_loss"].update_state(l2)
        for name, value in weighted.items():
            self._trackers[name].update_state(value)

    def _track(self, total, weighted, l2):
        self._update_trackers(total, weighted, l2)
        logs = {name: m.result() for name, m in self._trackers.items()}
        # Multi-worker: rank 1, so that Keras' reduce gives the mean over all replicas.
        return rank_one_logs(logs) if is_multi_worker(self.distribute_strategy) else logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds a distributed model from a first batch, which it takes from the
        # training iterator (that step's data is then skipped) and reduces across
        # replicas (which fails across workers). Everything this model needs is built
        # already (MaskRCNN.compile builds the optimizer): skip it then.
        if (all(layer.built for layer in self._flatten_layers())
                and getattr(self, "_compile_loss", None) is None
                and getattr(self, "_compile_metrics", None) is None
                and (self.optimizer is None or self.optimizer.built)):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # JAX and PyTorch: Keras' own train and test steps (jax.grad over a stateless call,
    # or autograd), with the loss and its logging here. compute_loss runs inside the
    # stateless scope that maps the step's variables and metric states, so the L2 term
    # reads the weights being differentiated and the trackers' updates are kept.
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        if keras.backend.backend() == "tensorflow":
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        total, weighted, l2 = self._weighted(y_pred)
        self._update_trackers(total, weighted, l2)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if keras.backend.backend() == "tensorflow":
            return super().compute_metrics(x, y, y_pred, sample_weight)
        return {name: m.result() for name, m in self._trackers.items()}

    def train_step(self, *args):
        if keras.backend.backend() != "tensorflow":
            return super().train_step(*args)
        (data,) = args
        with tf.GradientTape() as tape:
            total, weighted, l2 = self._loss_components(data, training=True)
            # Gradients are summed over replicas by the optimizer: scale per replica.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            # Under mixed precision the LossScaleOptimizer scales here and unscales
            # in apply_gradients; otherwise scale_loss is the identity.
            scaled = self.optimizer.scale_loss(total / replicas)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        grads = clip_summed_gradients(grads, self.optimizer)
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables) if g is not None])
        return self._track(total, weighted, l2)

    def test_step(self, *args):
        if keras.backend.backend() != "tensorflow":
            return super().test_step(*args)
        (data,) = args
        total, weighted, l2 = self._loss_components(data, training=False)
        return self._track(total, weighted, l2)


def check_layer_regex(keras_model: keras.Model, layer_regex: str, layers: str,
                      presets: Iterable[str] = LAYER_REGEX) -> None:
    """ValueError unless ``layer_regex`` (what ``layers`` resolved to) is a valid regex
    that fully matches at least one layer with weights: otherwise training had nothing
    to update, and Keras failed inside its optimizer ("not enough values to unpack")."""
    try:
        pattern = re.compile(layer_regex)
    except re.error as error:
        raise ValueError(f"layers={layers!r}: not a valid regular expression ({error})") \
            from error

    def weighted_layer_names(model: keras.Model):  # set_trainable's walk
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                yield from weighted_layer_names(layer)
            elif layer.weights:
                yield layer.name

    if not any(pattern.fullmatch(name) for name in weighted_layer_names(keras_model)):
        listed = ", ".join(repr(name) for name in presets)
        raise ValueError(f"layers={layers!r} selects no layer to train: expected one of "
                         f"{listed} or a regular expression that fully matches layer "
                         f"names (such as r'(mrcnn\\_.*)')")


def check_train_request(keras_model: keras.Model, learning_rate, layer_regex: str,
                        layers: str, presets: Iterable[str] = LAYER_REGEX) -> None:
    """What MaskRCNN.train checks before any work: a finite learning rate >= 0 (a
    negative or NaN one trained) and check_layer_regex. A learning-rate schedule object
    passes through to the optimizer."""
    if isinstance(learning_rate, numbers.Real) and not (
            np.isfinite(learning_rate) and learning_rate >= 0):
        raise ValueError(f"learning_rate: expected a finite number >= 0, "
                         f"got {learning_rate!r}")
    check_layer_regex(keras_model, layer_regex, layers, presets)


def set_trainable(keras_model: keras.Model, layer_regex: str, indent: int = 0,
                  verbose: int = 1) -> list[str]:
    """Marks layers whose names fully match ``layer_regex`` trainable, others frozen.

    Walks nested models (Matterport's semantics); wrappers are matched by the wrapper's
    name. Returns the names of the layers that are trainable. With verbose > 0 it prints
    what Matterport printed: the nested models and each trainable layer.
    """
    if verbose > 0 and indent == 0:
        print("Selecting layers to train")
    trainable_names = []
    for layer in keras_model.layers:
        if isinstance(layer, keras.Model):
            if verbose > 0:
                print("{}In model: {}".format(" " * indent, layer.name))
            # Setting a container's flag propagates to every child in Keras 3: set the
            # container first, then decide per child.
            layer.trainable = True
            trainable_names += set_trainable(layer, layer_regex, indent + 4, verbose)
            continue
        if not layer.weights:
            continue
        trainable = bool(re.fullmatch(layer_regex, layer.name))
        inner = getattr(layer, "layer", None)
        if inner is not None:
            inner.trainable = trainable
        layer.trainable = trainable
        if trainable:
            trainable_names.append(layer.name)
            if verbose > 0:
                print("{}{:20}   ({})".format(" " * indent, layer.name,
                                               layer.__class__.__name__))
    return trainable_names


def tensorboard(log_dir: str) -> list:
    """[Keras' TensorBoard callback for log_dir], or [] where TensorFlow is missing (it
    writes with tf.summary): JAX and PyTorch machines may have none."""
    if tf is None:
        logger.warning("No TensorBoard logs: TensorFlow is not installed")
        return []
    return [keras.callbacks.TensorBoard(log_dir=log_dir, histogram_freq=0,
                                        write_graph=False)]


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves name-keyed HDF5 weights at each epoch end, atomically.

    ``path_template`` contains ``{epoch:04d}``, formatted with the 1-based epoch just
    finished (Keras ModelCheckpoint's numbering, which Matterport's resume relies on).
    ``source`` is the model whose weights are written (the inner model under
    ParallelModel).
    """

    def __init__(self, path_template: str, source: keras.Model | None = None):
        super().__init__()
        self.path_template = path_template
        self.source = source

    def on_epoch_end(self, epoch, logs=None):
        from mrcnn.weights import save_weights

        path = self.path_template.format(epoch=epoch + 1)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        save_weights(self.source or self.model, path)
        logger.info("Saved checkpoint %s", path)


class FollowFitEpoch(keras.callbacks.Callback):
    """Keeps data generators that fit() reads itself at fit()'s epoch.

    A DataGenerator's batches are a function of (seed, its ``epoch``, position), and
    its epoch advances in ``on_epoch_end``. Keras calls that hook once more than it
    trains: fit() and evaluate() first reset their iterator, which ends an epoch
    that never ran. Under JAX and PyTorch (and under TensorFlow with loader threads
    or processes, where fit() reads the generator itself) fit's epoch k therefore
    read the generator's epoch k + 1, its validation the epochs 1, 3, 5..., and a run
    resumed at epoch k read epoch 1. This callback sets ``train.epoch`` when each of
    fit's epochs begins, and ``validation.epoch`` when its evaluation begins (after
    that reset, before the first batch), so every backend reads the epochs that
    ``multi_worker.local_dataset`` streams under TensorFlow.
    """

    def __init__(self, train: object | None, validation: object | None = None):
        super().__init__()
        self.train, self.validation = train, validation
        self.fit_epoch: int | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.fit_epoch = epoch
        if self.train is not None:
            self.train.epoch = epoch

    def on_test_begin(self, logs=None):
        # Only fit()'s own evaluation follows an epoch; evaluate() alone starts nothing.
        if self.validation is not None and self.fit_epoch is not None:
            self.validation.epoch = self.fit_epoch

    def on_train_end(self, logs=None):
        self.fit_epoch = None
