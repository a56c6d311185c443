"""One backend's part of the cross-backend training check
(tests/mrcnn/test_backend_training.py runs it once per backend, KERAS_BACKEND set).

    python tests/helpers/backend_step_check.py WORK_DIR

The first run (TensorFlow) writes WORK_DIR/start.h5, seeded starting weights (and start.npz, by variable path), and
WORK_DIR/batch.npz, one designed batch of 2 images (tests/helpers/designed_samples.py:
every in-graph draw is a permutation). Every run loads both, takes STEPS steps of SGD
with momentum, global-norm clipping and weight decay on that batch (train_on_batch),
and writes WORK_DIR/<backend>.json (each step's logged losses) and <backend>.npz (the
weights after the steps, by variable path).
"""
from __future__ import annotations

import json
import os
import sys

import keras
import numpy as np

from mrcnn.weights import save_weights
from tests.helpers.designed_samples import CheckModel
from tests.helpers.rect_dataset import ShapesDataset, make_config

STEPS = 2
LEARNING_RATE = 0.02


def snapshot(model) -> dict:
    return {v.path: keras.ops.convert_to_numpy(v.value) for v in model.keras_model.weights}


def main(work: str) -> None:
    backend = keras.backend.backend()
    config = make_config(1, 2, USE_RPN_ROIS=False, GRADIENT_CLIP_NORM=0.5, NAME="xb",
                         WEIGHT_DECAY=0.01)
    start, batch_file = os.path.join(work, "start.h5"), os.path.join(work, "batch.npz")
    keras.utils.set_random_seed(0)
    model = CheckModel("training", config, os.path.join(work, backend))
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
    logs = [{k: float(v) for k, v in model.keras_model.train_on_batch(
        inputs, return_dict=True).items()} for _ in range(STEPS)]
    np.savez(os.path.join(work, f"{backend}.npz"), **snapshot(model))
    with open(os.path.join(work, f"{backend}.json"), "w") as f:
        json.dump(logs, f)
    print(backend)


if __name__ == "__main__":
    main(sys.argv[1])
