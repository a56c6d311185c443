"""Training speed of the Siamese model under the Keras JAX backend (the GPU machine has
JAX but no TensorFlow; see gpu.sh, TRAIN=1).

    KERAS_BACKEND=jax python benchmarks/gpu_train.py --config large --batch 3 \
        --policy mixed_bfloat16 [--run-steps 300] --output gpu.jsonl

Random starting weights, the generated shapes set at the config's size (written once
under --data). Measures, after one warm-up step (the compile):
- step: one SGD step (all layers, the loss model, clipping, weight decay) on a fixed
  batch, train_on_batch, images/s, with the spread of the timed steps (a retrace per
  step would make them as slow as the first) and the accelerator's peak memory;
- with --run-steps N: N steps of model.train() on the generated set (data loading
  included; ``STEPS_PER_EPOCH`` = N / 3, 3 epochs), its images/s and each epoch's mean
  loss, which must fall;
- with --profile, a JAX profiler trace of 2 more steps (profile_ops.py sums it per layer).
Prints one JSON object and appends it to --output.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

from common import accelerator_info, add_trace, report_line  # and lib/, the repo on sys.path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="large")
    parser.add_argument("--batch", type=int, default=3, help="images per step (3)")
    parser.add_argument("--policy", default="float32",
                        help="float32 | mixed_bfloat16 | mixed_float16")
    parser.add_argument("--iterations", type=int, default=10, help="timed steps (10)")
    parser.add_argument("--run-steps", type=int, default=0,
                        help="then train this many steps with model.train (0: no)")
    parser.add_argument("--data", default=None, help="the generated set (default: a temp dir)")
    parser.add_argument("--output", default=None, help="append the JSON line here")
    parser.add_argument("--profile", default=None, metavar="PATH",
                        help="also trace 2 steps under the JAX profiler into PATH "
                             "(.xplane.pb.gz; summed per layer by profile_ops.py)")
    args = parser.parse_args(argv)

    import keras

    keras.mixed_precision.set_global_policy(args.policy)
    # The data (unless --data) and the --run-steps run's checkpoints (one per epoch: 13 MB
    # each at the tiny config, far more at large) go to a folder removed at the end.
    with tempfile.TemporaryDirectory(prefix="gpu_train_") as work:
        result = _measure(args, work)
    result.update(python=platform.python_version(), keras=keras.__version__)
    report_line(result, args.output)
    return 0


def _measure(args: argparse.Namespace, work: str) -> dict:
    """The result line's measurements; the data (unless --data) and logs under `work`."""
    import keras

    from samples.shapes.generate import generate_dataset
    from siamese_mrcnn.cli_inputs import load_split_datasets
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN

    run_epochs = 3
    config = preset(args.config, IMAGES_PER_GPU=args.batch, GPU_COUNT=1,
                    STEPS_PER_EPOCH=max(1, args.run_steps // run_epochs), VALIDATION_STEPS=0)
    size = int(config.IMAGE_MAX_DIM)
    data = args.data or os.path.join(work, "data")
    if not os.path.exists(os.path.join(data, "annotations")):
        # At least 128 px: the generator's smallest scenes (the model resizes them).
        generate_dataset(data, 48, 8, seed=0, size=max(size, 128), workers=1)
    (train, _), _ = load_split_datasets(data, "2017", "1", 1)[0]

    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    model = SiameseMaskRCNN("training", config, os.path.join(work, "logs"))
    build_s = time.perf_counter() - started
    model.set_trainable(model.layer_regex("all"), verbose=0)
    model.compile(0.001, config.LEARNING_MOMENTUM)
    batch = model.make_data_generator(train, shuffle=False, seed=0).batch_at(
        0, 0, args.batch)[0]

    def step():
        logs = model.keras_model.train_on_batch(batch, return_dict=True)
        float(logs["loss"])  # wait for the device

    times = []
    for _ in range(args.iterations + 1):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    first, times = times[0], times[1:]
    median = statistics.median(times)
    device, peak = accelerator_info()
    result = {
        "benchmark": "train", "backend": keras.backend.backend(), "device": device,
        "config": args.config, "image_size": size, "batch": args.batch,
        "policy": args.policy, "build_s": round(build_s, 2),
        "step_first_s": round(first, 3), "step_median_s": round(median, 4),
        "step_max_s": round(max(times), 4),
        "train_images_per_s": round(args.batch / median, 2),
        "slow_steps": sum(t > 3 * median for t in times),
        "peak_memory_gib": peak, "iterations": args.iterations,
    }
    if args.profile:
        add_trace(result, step, 2, args.profile)
    if args.run_steps:
        model.epoch = 0
        started = time.perf_counter()
        history = model.train(train, None, learning_rate=0.001, epochs=run_epochs,
                              layers="all")
        wall = time.perf_counter() - started
        losses = [round(float(v), 4) for v in history.history["loss"]]
        steps = config.STEPS_PER_EPOCH * run_epochs
        result.update(run_steps=steps, run_wall_s=round(wall, 1),
                      run_images_per_s=round(steps * args.batch / wall, 2),
                      run_epoch_losses=losses, run_loss_fell=losses[-1] < losses[0])
    return result


if __name__ == "__main__":
    sys.exit(main())
