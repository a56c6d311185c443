"""Which epoch of a data generator each of fit()'s epochs trains and validates on, under
the backend that KERAS_BACKEND names: prints one JSON line.

Two PyDatasets follow a DataGenerator's epoch protocol (batches are a function of
``epoch``, which ``on_epoch_end`` advances): every target of a batch is the epoch it was
made for, and the inputs are zeros. A model that predicts 0 and learns nothing (learning
rate 0) then logs a loss of epoch ** 2 for each epoch, so the logged losses say which
epochs' batches fit() consumed, whatever Keras peeked at and dropped. The fit runs from
initial_epoch 3 to epoch 5, as a resumed run would, with validation, with or without
mrcnn.training.FollowFitEpoch (argument "follow"), loading in the calling thread
(epochs_consumed(workers=2): two of Keras' loader threads, in process).

Threads under JAX and PyTorch show a Keras quirk that the callback does not touch:
this model's loss is unbuilt at fit(), so Keras peeks at one batch through the loader
threads, and the prefetched rest of that epoch is served first in the next one.
MaskRCNN.train's model is built and has no compiled loss, so Keras does not peek
there (measured on 2026-12-07 under JAX with WORKERS=2: no read before the first
epoch; test_training.py checks the reads under TensorFlow).
"""
import json
import math
import sys

import keras
import numpy as np

from mrcnn.training import FollowFitEpoch


class EpochTargets(keras.utils.PyDataset):
    def __init__(self, workers: int):
        super().__init__(workers=workers)
        self.epoch = 0

    def __len__(self):
        return 2

    def __getitem__(self, idx):
        return np.zeros((2, 3), np.float32), np.full((2, 1), float(self.epoch), np.float32)

    def on_epoch_end(self):
        self.epoch += 1


def epochs_consumed(follow: bool, workers: int = 1) -> dict:
    """{"train": [generator epoch per fit epoch], "val": [...]} (see the module);
    workers as keras.utils.PyDataset's (1: the calling thread)."""
    train, val = EpochTargets(workers), EpochTargets(workers)
    model = keras.Sequential([keras.Input((3,)),
                              keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    history = model.fit(train, validation_data=val, epochs=5, initial_epoch=3,
                        callbacks=[FollowFitEpoch(train, val)] if follow else [],
                        verbose=0, shuffle=False)
    return {name: [math.sqrt(loss) for loss in history.history[key]]
            for name, key in (("train", "loss"), ("val", "val_loss"))}


if __name__ == "__main__":
    print(json.dumps({"backend": keras.backend.backend(),
                      "consumed": epochs_consumed(sys.argv[1:] == ["follow"])}))
