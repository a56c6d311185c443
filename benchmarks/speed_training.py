"""3. data_over_train: samples/s of SiameseDataGenerator (one thread) over samples/s
of train_on_batch (all layers trainable) on the same batches."""
from __future__ import annotations

import time
from typing import Sequence

from common import REPO  # noqa: F401,E402 - sets up sys.path

from siamese_mrcnn.config import Config  # noqa: E402
from siamese_mrcnn.data import SiameseDataGenerator  # noqa: E402
from siamese_mrcnn.model import SiameseMaskRCNN  # noqa: E402

from speed_setup import ShapesData, median_seconds, release  # noqa: E402


def load_batches(generator: SiameseDataGenerator, count: int) -> tuple[list, float]:
    """``count`` batches from the generator and the loading rate in samples/s."""
    batches = []
    start = time.perf_counter()
    for idx in range(count):
        batches.append(generator[idx % len(generator)][0])
    seconds = time.perf_counter() - start
    return batches, count * generator.batch_size / seconds


def training_model(config: Config, model_dir: str, layers: str = "all") -> SiameseMaskRCNN:
    """A compiled training model with ``layers`` trainable."""
    model = SiameseMaskRCNN("training", config, model_dir)
    model.set_trainable(model.layer_regex(layers), verbose=0)
    model.compile(learning_rate=1e-4, momentum=config.LEARNING_MOMENTUM)
    return model


def train_step_seconds(model: SiameseMaskRCNN, batches: Sequence[list],
                       repeats: int) -> float:
    """Median seconds of one train_on_batch, cycling through ``batches``."""
    position = iter(range(10 ** 9))

    def step() -> None:
        model.keras_model.train_on_batch(batches[next(position) % len(batches)])

    return median_seconds(step, repeats)


def bench_data_vs_train(config: Config, data: ShapesData, model_dir: str,
                        batches: int, repeats: int) -> dict:
    """Data pipeline samples/s (one thread) vs training samples/s on the same batches."""
    generator = SiameseDataGenerator(data.dataset, config, shuffle=True, seed=0, workers=0)
    loaded, data_rate = load_batches(generator, batches)
    model = training_model(config, model_dir)
    step = train_step_seconds(model, loaded, repeats)
    train_rate = config.BATCH_SIZE / step
    release(model)
    return {
        "data_over_train": data_rate / train_rate,
        "data_samples_per_s": data_rate,
        "train_samples_per_s": train_rate,
        "train_step_s": step,
        "batch_size": config.BATCH_SIZE,
        "trainable_layers": "all",
    }
