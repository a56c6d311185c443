"""One process of the multi-worker checks (tests/mrcnn/test_multi_worker.py runs it).

    TF_CONFIG=... python tests/helpers/multi_worker_check.py RESULT_JSON WORK_DIR [EPOCHS STEPS]

One task of MaskRCNN training under DISTRIBUTION="multi_worker" with a global batch of
2 images: IMAGES_PER_GPU=2 on a cluster of one worker (the one-process run), 1 on a
cluster of two. Starting weights come from a fixed seed; the chief resumes from its
last checkpoint under WORK_DIR/chief when that folder exists. Every process trains
EPOCHS (default 2) epochs of STEPS (default 3) steps and writes RESULT_JSON: its
history, its final weights (RESULT_JSON + ".npz"), its epoch at the start, and the
files its model directory holds. A lost worker ends the process with exit code 3 and
the error's message on stderr, as the command lines do. With LATE_PEER_S set, the
non-chief tasks sleep that long once fit() ends (before train()'s end barrier), and
every report has ``end_wait_s``: from fit()'s end to train()'s return.

Determinism by design (tests/helpers/designed_samples.py): every ROI is kept, so the
graph's random sampling only permutes them, and a mean over a batch equals the mean
of per-image means. The samples come from DataGenerator.batch_at, seeded by stream
position.
"""
from __future__ import annotations

import os
import sys
import time

from tests.helpers.distributed import snapshot, write_report  # sets quiet CPU defaults

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mrcnn.multi_worker import WorkerLostError, read_tf_config  # noqa: E402
from tests.helpers.designed_samples import CheckModel  # noqa: E402
from tests.helpers.rect_dataset import OBJECTS, ShapesDataset, make_config  # noqa: E402

LEARNING_RATE = 0.02

class EndTimer(keras.callbacks.Callback):
    """Marks the end of fit(); on a late task, sleeps there first."""

    def __init__(self, late_s: float):
        super().__init__()
        self.late_s, self.fit_end = late_s, None

    def on_train_end(self, logs=None):
        time.sleep(self.late_s)
        self.fit_end = time.monotonic()


def files_under(path: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), path)
                  for d, _, names in os.walk(path) for f in names)


def main(result_path: str, work_dir: str, epochs: int, steps: int) -> None:
    cluster = read_tf_config()
    # The same global batch of 2 on any number of workers.
    config = make_config(1, 2 // cluster.count, DISTRIBUTION="multi_worker",
                         USE_RPN_ROIS=False, GRADIENT_CLIP_NORM=0.5, STEPS_PER_EPOCH=steps,
                         VALIDATION_STEPS=1, NAME="mw")
    model_dir = os.path.join(work_dir, "chief" if cluster.is_chief else
                             f"worker{cluster.index}")
    keras.utils.set_random_seed(0)  # the same starting weights in every run
    model = CheckModel("training", config, model_dir)
    if cluster.is_chief and os.path.isdir(model_dir):
        model.load_weights(model.find_last(), by_name=True)  # resume
    dataset = ShapesDataset()
    dataset.load()
    dataset.prepare()
    assert len(OBJECTS) == 4
    start_epoch = model.epoch
    np.random.seed(1234)  # the same data seed in the single run and on the chief
    timer = EndTimer(0.0 if cluster.is_chief else float(os.environ.get("LATE_PEER_S", 0)))
    try:
        history = model.train(dataset, dataset, LEARNING_RATE, epochs=epochs, layers="all",
                              custom_callbacks=[timer])
    except WorkerLostError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        os._exit(3)  # TensorFlow's collective threads may block a normal exit
    end_wait_s = None if timer.fit_end is None else time.monotonic() - timer.fit_end
    np.savez(result_path + ".npz", **snapshot(model.inner_model))
    write_report(result_path, {
        "workers": cluster.count, "task": cluster.index,
        "start_epoch": start_epoch, "epoch": model.epoch,
        "history": ({} if history is None else
                    {k: [float(v) for v in vs] for k, vs in history.history.items()}),
        "files": files_under(model_dir) if os.path.isdir(model_dir) else [],
        "model_dir_exists": os.path.isdir(model_dir), "end_wait_s": end_wait_s,
    })
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], int(args[2]) if len(args) > 2 else 2,
         int(args[3]) if len(args) > 3 else 3)
