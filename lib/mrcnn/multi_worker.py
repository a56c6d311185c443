"""Training on several machines: tf.distribute.MultiWorkerMirroredStrategy from TF_CONFIG.

A config with ``DISTRIBUTION = "multi_worker"`` makes ``MaskRCNN`` (and the Siamese
model) build under the strategy that ``get_strategy()`` creates from the standard
``TF_CONFIG`` environment variable::

    TF_CONFIG='{"cluster": {"worker": ["host0:port", "host1:port"]},
                "task": {"type": "worker", "index": 0}}'

Every worker runs the same command; worker 0 (or the "chief" task when the cluster
names one) is the chief. Per worker, BATCH_SIZE = IMAGES_PER_GPU x GPU_COUNT images
and GPU_COUNT is the number of its replicas (its GPUs, or 1 on a CPU); the global
batch is BATCH_SIZE x workers. Each step, global replica g (worker w, local replica
r: g = w x GPU_COUNT + r) takes the images at positions g x IMAGES_PER_GPU, ... of
the global batch the single-process generator would have made, so the samples do
not depend on how the replicas are spread over machines (``worker_batches``); the
generators seed each sample by its position. Gradients, the global-norm clip and
the logged losses are over the global batch (mrcnn.training.LossModel). Only the
chief writes checkpoints and TensorBoard logs; ``sync_from_chief`` starts every
worker from the chief's weights, epoch and data seed, so a restart resumes from the
chief's checkpoint without a shared file system. A worker that dies makes the
others fail within TensorFlow's heartbeat timeout; ``worker_failures`` turns that
into ``WorkerLostError``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
from typing import Any, Iterator, Mapping

import keras
import numpy as np
try:  # JAX and PyTorch machines may have no TensorFlow: its paths then never run
    import tensorflow as tf
except ImportError:
    tf = None

logger = logging.getLogger(__name__)

# wait_for_workers' bound: the workers leave fit() within a step of each other, but the
# chief may still be writing a full model's checkpoint (seconds to a minute on a slow
# disk); past this, a worker that never came is taken for lost.
END_BARRIER_TIMEOUT_S = 900
# How long the chief waits, after the barrier, for each other worker to say that its
# answer came. A worker says so as soon as the answer comes (under a second); one that
# never does died after the barrier, with its work done: a warning, not an error.
DEPARTURE_TIMEOUT_S = 120
_barrier_ids = itertools.count()  # every worker makes the same calls: the ids agree

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


class WorkerLostError(RuntimeError):
    """Another worker of a multi-worker run stopped answering."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The tasks of TF_CONFIG in the strategy's order (chief first) and this task's place."""

    tasks: tuple[str, ...]   # "host:port" of each task, chief (or worker 0) first
    index: int               # this task's position in tasks
    task_type: str           # "chief" or "worker"

    @property
    def count(self) -> int:
        return len(self.tasks)

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def read_tf_config(environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster TF_CONFIG describes, or None when TF_CONFIG is unset or empty.

    Raises ValueError naming what is wrong (not JSON, no cluster or task, a task type
    other than chief/worker, an index outside the cluster).
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG: expected JSON such as {TF_CONFIG_EXAMPLE}, "
                         f"got {text[:80]!r} ({e})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) \
            or not isinstance(spec.get("task"), dict):
        raise ValueError(f"TF_CONFIG: expected an object with \"cluster\" and \"task\" "
                         f"such as {TF_CONFIG_EXAMPLE}, got {text[:80]!r}")
    cluster, task = spec["cluster"], spec["task"]
    unknown = sorted(set(cluster) - {"chief", "worker", "evaluator"})
    if unknown:
        raise ValueError(f"TF_CONFIG: cluster jobs must be \"chief\" and \"worker\"; got "
                         f"{unknown} (parameter servers need ParameterServerStrategy)")
    chief, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    if len(chief) > 1 or not chief + workers:
        raise ValueError(f"TF_CONFIG: expected at most one chief and at least one task; got "
                         f"{len(chief)} chief(s) and {len(workers)} worker(s)")
    task_type, index = task.get("type"), task.get("index")
    jobs = {"chief": chief, "worker": workers}
    if task_type not in jobs:
        raise ValueError(f"TF_CONFIG: task type must be \"chief\" or \"worker\"; "
                         f"got {task_type!r}")
    if isinstance(index, bool) or not isinstance(index, int) \
            or not 0 <= index < len(jobs[task_type]):
        raise ValueError(f"TF_CONFIG: task index must be an int in [0, "
                         f"{len(jobs[task_type])}) for {task_type!r}; got {index!r}")
    position = index if task_type == "chief" else len(chief) + index
    return Cluster(tasks=tuple(chief + workers), index=position, task_type=task_type)


_STRATEGY: Any = None


def get_strategy() -> "tf.distribute.MultiWorkerMirroredStrategy":
    """The process's MultiWorkerMirroredStrategy for TF_CONFIG (created on first call).

    TensorFlow requires it to exist before anything else runs on its runtime: create
    the model (or call this) first in a training script. Blocks until every worker
    of the cluster has started. Raises ValueError without TF_CONFIG, RuntimeError
    when TensorFlow ran something before.
    """
    global _STRATEGY
    if _STRATEGY is None:
        cluster = read_tf_config()
        if cluster is None:
            raise ValueError("DISTRIBUTION='multi_worker' needs the TF_CONFIG environment "
                             f"variable, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}'")
        logger.info("MultiWorkerMirroredStrategy: task %d of %d (%s)", cluster.index,
                    cluster.count, ", ".join(cluster.tasks))
        # TensorFlow logs every collective it builds at INFO (lines per step): keep
        # its logger at WARNING unless the user set a level.
        tf_logger = logging.getLogger("tensorflow")
        if tf_logger.level == logging.NOTSET:
            tf_logger.setLevel(logging.WARNING)
        try:
            _STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            raise RuntimeError(
                "MultiWorkerMirroredStrategy must be created before TensorFlow runs "
                "anything else: build the multi-worker model (or call "
                f"mrcnn.multi_worker.get_strategy()) first in the script ({e})") from e
    return _STRATEGY


def distribution_from_env() -> str | None:
    """Config.DISTRIBUTION for a training command: "multi_worker" when TF_CONFIG is set."""
    return "multi_worker" if read_tf_config() is not None else None


def is_multi_worker(strategy: Any) -> bool:
    """Whether ``strategy`` is a MultiWorkerMirroredStrategy over more than one process."""
    if tf is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = read_tf_config()
    return cluster is not None and cluster.count > 1


def current_cluster() -> Cluster:
    """This process's place in TF_CONFIG; ValueError without TF_CONFIG."""
    cluster = read_tf_config()
    if cluster is None:
        raise ValueError(f"TF_CONFIG is not set; expected e.g. {TF_CONFIG_EXAMPLE}")
    return cluster


def rank_one_logs(logs: Mapping[str, Any]) -> dict:
    """A train/test step's logs as rank-1 tensors: Keras reduces a multi-worker step's
    logs with strategy.reduce(MEAN, axis=0), which fails on scalars (keras#20585); on
    rank 1 it is the mean over every worker's replicas."""
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


class MultiWorkerSteps:
    """Mixin for a keras.Model (before it in the bases) that trains multi-worker with
    Keras' own train_step: rank-1 logs (rank_one_logs), and the model built from one
    local batch instead of a batch Keras reduces across workers, which fails there."""

    def train_step(self, data):
        logs = super().train_step(data)
        return rank_one_logs(logs) if is_multi_worker(self.distribute_strategy) else logs

    def test_step(self, data):
        logs = super().test_step(data)
        return rank_one_logs(logs) if is_multi_worker(self.distribute_strategy) else logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self.distribute_strategy
        if iterator is None or not is_multi_worker(strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:  # Keras takes this batch from training too
            batch = next(batches)
            break
        local = tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0],
                                      batch)
        with strategy.scope():
            self._symbolic_build(data_batch=local)


############################################################
#  Data
############################################################

def worker_batches(source: Any, worker: int, workers: int, replicas: int,
                   images_per_replica: int, steps_per_epoch: int,
                   first_epoch: int) -> Iterator[tuple]:
    """This worker's per-replica batches, step after step, epoch after epoch.

    source: a generator with ``batch_at(epoch, index, size)`` (mrcnn.data.DataGenerator,
        siamese_mrcnn.data.SiameseDataGenerator): the ``size`` samples from position
        ``index`` of the epoch, as its ``__getitem__`` returns them.
    Step s of an epoch yields, for each local replica r, the images of global replica
    g = worker x replicas + r: positions s x G + g x images_per_replica, ... where
    G = images_per_replica x replicas x workers is the global batch.
    """
    global_batch = images_per_replica * replicas * workers
    epoch = first_epoch
    while True:
        for step in range(steps_per_epoch):
            for replica in range(replicas):
                first = (worker * replicas + replica) * images_per_replica
                yield source.batch_at(epoch, step * global_batch + first, images_per_replica)
        epoch += 1


def _batch_spec(example: tuple) -> Any:
    """TensorSpecs of a batch (nested numpy arrays), the batch dimension left open."""
    return tf.nest.map_structure(
        lambda a: tf.TensorSpec((None,) + np.shape(a)[1:], tf.as_dtype(np.asarray(a).dtype)),
        example)


def local_dataset(source: Any, steps_per_epoch: int, first_epoch: int) -> Any:
    """One process's fit() input from ``source`` (a DataGenerator, or None): its batches
    in worker_batches' order for one worker (epoch ``first_epoch`` on, endless),
    prefetched by one batch, without tf.data autotuning.

    Keras' own tf.data for a PyDataset autotunes, and deleting that iterator at the end
    of fit() waited for the autotune thread's next wake-up (10 to 40 s measured on busy
    cores). A source that loads with Keras' worker threads or processes (workers > 1,
    or use_multiprocessing) is returned as it is: Keras then turns autotuning off itself,
    and MaskRCNN.train keeps the source at fit's epoch (training.FollowFitEpoch), as it
    does under JAX and PyTorch, where the source is returned as it is too.
    """
    if source is None or tf is None or keras.backend.backend() != "tensorflow":
        return source
    workers = int(getattr(source, "workers", 0) or 0)
    if workers > 1 or (workers > 0 and getattr(source, "use_multiprocessing", False)):
        return source
    size = source.batch_size

    def generate():
        return worker_batches(source, 0, 1, 1, size, steps_per_epoch, first_epoch)

    spec = _batch_spec(source.batch_at(first_epoch, 0, size))
    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.from_generator(generate, output_signature=spec).prefetch(1) \
        .with_options(options)


def distributed_dataset(strategy: Any, source: Any, steps_per_epoch: int,
                        first_epoch: int, images_per_replica: int) -> Any:
    """The strategy's per-replica input from ``source`` (see worker_batches), endless.

    fit() must be given steps_per_epoch; its iterator then runs on across epochs.
    """
    def dataset_fn(context):
        worker, workers = context.input_pipeline_id, context.num_input_pipelines
        local = context.num_replicas_in_sync // workers
        spec = _batch_spec(source.batch_at(first_epoch, 0, images_per_replica))

        def generate():
            return worker_batches(source, worker, workers, local, images_per_replica,
                                  steps_per_epoch, first_epoch)

        dataset = tf.data.Dataset.from_generator(generate, output_signature=spec)
        return dataset.prefetch(2)

    return strategy.distribute_datasets_from_function(dataset_fn)


############################################################
#  State from the chief, failures
############################################################

def _broadcast(strategy: Any, tensors: list) -> list:
    """The chief's values of ``tensors`` on every worker (an all-reduce where only
    global replica 0 contributes)."""

    @tf.function
    def replica_fn(values):
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group, 0)
        mine = [tf.where(first, v, tf.zeros_like(v)) for v in values]
        # One all-reduce per dtype: a collective packs its tensors into one buffer.
        out = [None] * len(mine)
        for dtype in sorted({v.dtype for v in mine}, key=str):
            group = [i for i, v in enumerate(mine) if v.dtype == dtype]
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [mine[i] for i in group])
            for i, value in zip(group, summed):
                out[i] = value
        return out

    results = strategy.run(replica_fn, args=(tensors,))
    return [strategy.experimental_local_results(r)[0] for r in results]


def sync_from_chief(strategy: Any, keras_model: Any,
                    values: Mapping[str, int]) -> dict[str, int]:
    """Sets every weight of ``keras_model`` to the chief's and returns the chief's
    ``values`` (integers such as the epoch and the data seed, exact below 2**53).

    Every worker must call it at the same point (it is a collective operation).
    """
    variables = list(keras_model.weights)
    numbers = [tf.constant(float(values[k]), tf.float64) for k in values]
    tensors = [tf.convert_to_tensor(v.value) for v in variables] + numbers
    with strategy.scope():
        synced = _broadcast(strategy, tensors)
    for variable, value in zip(variables, synced):
        variable.assign(value)
    chief = {k: int(round(float(v))) for k, v in zip(values, synced[len(variables):])}
    logger.info("Synced %d weights and %s from the chief", len(variables), chief)
    return chief


# What a collective operation raises when a peer is gone or the cluster gave up on it.
_PEER_FAILURES = () if tf is None else (
    tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
    tf.errors.CancelledError)


@contextlib.contextmanager
def worker_failures(cluster: Cluster) -> Iterator[None]:
    """Raises WorkerLostError, with what to do, for TensorFlow's errors of a lost peer."""
    try:
        yield
    except _PEER_FAILURES as e:
        detail = " ".join(str(e).split())[:300]
        raise WorkerLostError(
            f"multi-worker training stopped on task {cluster.index} of {cluster.count}: "
            f"another worker stopped answering ({type(e).__name__}: {detail}). Restart "
            "every worker with the same command: training resumes from the chief's last "
            "checkpoint.") from e


def wait_for_workers(name: str, cluster: Cluster,
                     timeout_s: float = END_BARRIER_TIMEOUT_S) -> None:
    """Returns once every worker of the cluster has called it (with the same ``name``).

    A worker that leaves right after its last collective operation can take away a
    buffer that a slower peer is still reading for that operation: the peer then fails
    with "Connection reset by peer" at the very end of a good run. Each worker calls
    this after its last collective, before it exits; it is a barrier of TensorFlow's
    coordination service (which MultiWorkerMirroredStrategy starts), not another
    collective, so it does not have that race itself. Raises what a collective raises
    when a peer is lost (wrap it in ``worker_failures``).

    The barrier's answers to the other workers are sent from the chief's process (it
    hosts the coordination service), so a chief that exits as soon as its own wait
    returns can close the socket before they go out: the peer then fails with "Socket
    closed" after a good run (seen once in CI). So every other worker writes a key once
    its answer has come, and the chief returns only when it has read them all.
    """
    from tensorflow.python.eager import context  # the barrier has no public name

    barrier = f"mrcnn_{name}_{next(_barrier_ids)}"
    service = context.context()
    service.wait_at_barrier(barrier, int(timeout_s * 1000))
    logger.debug("Every worker reached %s", barrier)
    if cluster.is_chief:
        for index in range(1, cluster.count):
            try:
                service.get_config_key_value(f"{barrier}/left/{index}",
                                             int(DEPARTURE_TIMEOUT_S * 1000))
            except _PEER_FAILURES as e:
                logger.warning("Worker %d reached %s but did not say it left (%s); "
                               "its work was done", index, barrier, type(e).__name__)
    else:
        try:
            service.set_config_key_value(f"{barrier}/left/{cluster.index}", "1")
        except _PEER_FAILURES:
            # The chief read the key and left before it answered: nothing is lost.
            logger.debug("The chief left %s before it answered", barrier)


def leave_together(cluster: Cluster | None, name: str) -> None:
    """``wait_for_workers(name, cluster)`` on a multi-worker run (its lost peers raising
    WorkerLostError); without a cluster, nothing."""
    if cluster is None:
        return
    with worker_failures(cluster):
        wait_for_workers(name, cluster)
