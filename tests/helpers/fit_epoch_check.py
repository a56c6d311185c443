"""Which epoch of a data generator each of fit()'s epochs reads, under the backend that
KERAS_BACKEND names: prints one JSON line.

A toy model is fit on two recording PyDatasets (a DataGenerator's epoch protocol: batches
are a function of ``epoch``, which ``on_epoch_end`` advances) from initial_epoch 3 to
epoch 5, as a resumed run would be, with validation, with or without
mrcnn.training.FollowFitEpoch ("follow" as the first argument). The output lists, per
fit epoch, the generator epochs that its training batches and its validation batches
were read from. Reads before the epoch (training) or before its evaluation began
(validation) are left out: Keras peeks at a batch there to build the model or the
tf.data signature, and drops it.
"""
import json
import sys

import keras
import numpy as np

from mrcnn.training import FollowFitEpoch

STEPS = 2


class Recording(keras.utils.PyDataset):
    def __init__(self, log: list, name: str):
        super().__init__()
        self.log, self.name, self.epoch = log, name, 0

    def __len__(self):
        return STEPS

    def __getitem__(self, idx):
        self.log.append((self.name, self.epoch))
        x = np.full((2, 3), float(self.epoch), np.float32)
        return x, np.zeros((2, 1), np.float32)

    def on_epoch_end(self):
        self.epoch += 1


class Marks(keras.callbacks.Callback):
    def __init__(self, log: list):
        super().__init__()
        self.log = log

    def on_epoch_begin(self, epoch, logs=None):
        self.log.append(("fit", epoch))

    def on_test_begin(self, logs=None):
        self.log.append(("test", None))


def epochs_read(follow: bool) -> dict:
    """{fit epoch: {"train": [generator epochs], "val": [...]}} (see the module)."""
    log: list = []
    train, val = Recording(log, "train"), Recording(log, "val")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callbacks = [Marks(log)] + ([FollowFitEpoch(train, val)] if follow else [])
    model.fit(train, validation_data=val, epochs=5, initial_epoch=3, callbacks=callbacks,
              verbose=0, shuffle=False)
    read: dict = {}
    epoch, testing = None, False
    for name, value in log:
        if name == "fit":
            epoch, testing = value, False
            read[epoch] = {"train": [], "val": []}
        elif name == "test":
            testing = True
        elif epoch is not None and (name == "train" or testing):
            read[epoch][name].append(value)
    return read


if __name__ == "__main__":
    print(json.dumps({"backend": keras.backend.backend(),
                      "read": epochs_read(sys.argv[1:] == ["follow"])}))
