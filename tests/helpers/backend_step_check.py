"""One backend's part of the cross-backend training check
(tests/mrcnn/test_backend_training.py runs it once per backend, KERAS_BACKEND set).

    python tests/helpers/backend_step_check.py WORK_DIR [--policy P ...] [--data-parallel]
        [--steps N]

The first run (TensorFlow) writes WORK_DIR/start.h5, seeded starting weights (and
start.npz, by variable path), and WORK_DIR/batch.npz, one designed batch of 2 images
(tests/helpers/designed_samples.py: every in-graph draw is a permutation). Every run
loads both, takes STEPS (--steps) steps of SGD with momentum, global-norm clipping and
weight decay on that batch (train_on_batch), and writes WORK_DIR/<run>.json (each
step's logged losses and whether it changed any weight, how often the step's Python
ran, i.e. was traced, and over how many devices the batch and the weights were laid
out) and <run>.npz (the weights after
the steps, by variable path). <run> is the backend, then the policy (--policy
mixed_bfloat16; repeated: one run each, in this process) and "data_parallel"
(--data-parallel: keras.distribution.DataParallel over every device JAX sees, e.g. 2
with XLA_FLAGS=--xla_force_host_platform_device_count=2) where given.
"""
from __future__ import annotations

import argparse
import json
import os

import keras
import numpy as np

from mrcnn.weights import save_weights
from tests.helpers.designed_samples import CheckModel
from tests.helpers.rect_dataset import ShapesDataset, make_config

STEPS = 2
LEARNING_RATE = 0.02


def snapshot(model) -> dict:
    return {v.path: keras.ops.convert_to_numpy(v.value) for v in model.keras_model.weights}


def count_traces(keras_model) -> list:
    """A list that grows each time the loss's Python runs: once per trace under jax.jit,
    once per step where the step runs eagerly (PyTorch)."""
    runs, compute_loss = [], keras_model.compute_loss

    def counted(*args, **kwargs):
        runs.append(1)
        return compute_loss(*args, **kwargs)

    keras_model.compute_loss = counted
    return runs


def batch_devices(inputs) -> int:
    """Over how many devices the current distribution splits the batch: the distinct
    batch slices of the first input laid out by it (1 without one)."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    laid_out = keras.distribution.distribute_tensor(
        inputs[0], distribution.get_data_layout(inputs[0].shape))
    return len({(shard.index[0].start, shard.index[0].stop)
                for shard in laid_out.addressable_shards})


def weight_devices(model) -> int:
    """On how many devices the first weight lives."""
    value = model.keras_model.weights[0].value
    sharding = getattr(value, "sharding", None)
    return len(sharding.device_set) if sharding is not None else 1


def main(work: str, policies: list, data_parallel: bool, steps: int) -> None:
    """One run per policy (float32 when none is given), in this process."""
    if data_parallel:  # before any variable exists, so that every one is laid out
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    for policy in policies or [None]:
        train(work, policy, data_parallel, steps)


def train(work: str, policy: str | None, data_parallel: bool, steps: int) -> None:
    backend = keras.backend.backend()
    run = "_".join([backend] + ([policy] if policy else [])
                   + (["data_parallel"] if data_parallel else []))
    keras.mixed_precision.set_global_policy(policy or "float32")
    config = make_config(1, 2, USE_RPN_ROIS=False, GRADIENT_CLIP_NORM=0.5, NAME="xb",
                         WEIGHT_DECAY=0.01)
    start, batch_file = os.path.join(work, "start.h5"), os.path.join(work, "batch.npz")
    keras.utils.set_random_seed(0)
    model = CheckModel("training", config, os.path.join(work, run))
    if not os.path.exists(start):
        save_weights(model.keras_model, start)
        np.savez(os.path.join(work, "start.npz"), **snapshot(model))
        dataset = ShapesDataset()
        dataset.load()
        dataset.prepare()
        inputs = model.make_data_generator(dataset, shuffle=False, seed=0).batch_at(0, 0, 2)[0]
        np.savez(batch_file, *inputs)
    model.load_weights(start, by_name=True)
    with np.load(batch_file) as arrays:
        inputs = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    model.set_trainable(model.layer_regex("all"), verbose=0)
    model.compile(LEARNING_RATE, config.LEARNING_MOMENTUM)
    traces = count_traces(model.keras_model)
    logs, updated, weights = [], [], snapshot(model)
    for _ in range(steps):
        logs.append({k: float(v) for k, v in model.keras_model.train_on_batch(
            inputs, return_dict=True).items()})
        before, weights = weights, snapshot(model)
        updated.append(any(not np.array_equal(weights[k], before[k]) for k in weights))
    np.savez(os.path.join(work, f"{run}.npz"), **weights)
    with open(os.path.join(work, f"{run}.json"), "w") as f:
        json.dump({"logs": logs, "updated": updated, "traces": len(traces),
                   "batch_devices": batch_devices(inputs),
                   "weight_devices": weight_devices(model)}, f)
    print(run)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work")
    parser.add_argument("--policy", action="append", default=[],
                        help="a dtype policy; repeat it for one run per policy")
    parser.add_argument("--data-parallel", action="store_true")
    parser.add_argument("--steps", type=int, default=STEPS)
    arguments = parser.parse_args()
    main(arguments.work, arguments.policy, arguments.data_parallel, arguments.steps)
