"""Multi-worker training throughput: 2 worker processes against 1, side by side on one
machine, with the same global batch, and the time of one step's gradient all-reduce.

    python benchmarks/multi_worker.py [--config quickstart] [--global-batch 4]
                                      [--steps 12] [--output benchmarks/results/multi_worker.json]

Each run is the library's multi-worker path (DISTRIBUTION="multi_worker", TF_CONFIG on
127.0.0.1): one process with IMAGES_PER_GPU = global batch, then two processes at once
with half of it each. A run trains 2 epochs of --steps steps on a generated shapes set
(all layers); the step times of epoch 2 are measured (epoch 1 includes tracing). Then
each worker times an all-reduce of tensors shaped like every trainable weight, which is
what a step adds for communication. On one machine the two workers share its cores, so
the ratio shows the price of the collectives and the contention, not a cluster's
speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine_info, write_json  # noqa: E402 - sets up sys.path
from mrcnn.cli_support import int_option  # noqa: E402 (stdlib only)

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "multi_worker.json"
ALL_REDUCE_REPEATS = 10


def worker(args) -> None:
    """One task of a run (TF_CONFIG set): trains and writes its timings to --report."""
    import keras
    import numpy as np
    import tensorflow as tf

    from mrcnn.multi_worker import current_cluster, get_strategy, leave_together
    from siamese_mrcnn.cli_inputs import load_split_datasets
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN

    cluster = current_cluster()
    strategy = get_strategy()
    config = preset(args.config, IMAGES_PER_GPU=args.global_batch // cluster.count,
                    STEPS_PER_EPOCH=args.steps, VALIDATION_STEPS=0,
                    DISTRIBUTION="multi_worker")
    keras.utils.set_random_seed(0)
    model = SiameseMaskRCNN("training", config, os.path.join(args.work, f"logs{cluster.index}"))
    (train, _), _ = load_split_datasets(os.path.join(args.work, "data"), "2017", "1", 1)[0]

    class StepTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: dict[int, list] = {}
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            self.times.setdefault(self.epoch, []).append(now - self.last)
            self.last = now

    steps = StepTimes()
    model.train(train, None, learning_rate=0.001, epochs=2, layers="all",
                custom_callbacks=[steps])
    step_s = statistics.median(steps.times[1])

    variables = model.inner_model.trainable_variables
    zeros = [tf.zeros(v.shape, v.dtype) for v in variables]

    @tf.function
    def all_reduce():
        def replica_fn():
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.SUM, zeros)
        return strategy.run(replica_fn)

    all_reduce()  # trace
    times = []
    for _ in range(ALL_REDUCE_REPEATS):
        start = time.perf_counter()
        all_reduce()
        times.append(time.perf_counter() - start)
    report = {"task": cluster.index, "workers": cluster.count,
              "images_per_worker": config.IMAGES_PER_GPU, "step_s_median": step_s,
              "step_s_epoch2": steps.times[1],
              "all_reduce_s_median": statistics.median(times),
              "gradient_mb": sum(int(np.prod(v.shape)) for v in variables) * 4 / 2 ** 20}
    write_json(report, args.report, indent=None)  # the parent reads it once we are gone
    leave_together(cluster, "benchmark_end")  # the last all-reduce may still read from us
    sys.stdout.flush()
    os._exit(0)  # TensorFlow's collective threads may hold the interpreter


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run(work: Path, args, count: int) -> list[dict]:
    """Starts ``count`` workers at once; their reports."""
    ports = free_ports(count)
    procs, reports = [], []
    for index in range(count):
        config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                  "task": {"type": "worker", "index": index}}
        report = work / f"report_{count}_{index}.json"
        # TMPDIR: the workers leave with os._exit, which skips TensorFlow's removal of
        # its autograph files; under `work` they go when the benchmark ends.
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps(config), TMPDIR=str(work))
        # A file, not a pipe: a worker blocked on a full pipe would stall the other.
        log = work / f"worker_{count}_{index}.log"
        with open(log, "w") as stderr:
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--worker", "--report", str(report), "--work",
                 str(work), "--config", args.config, "--global-batch",
                 str(args.global_batch), "--steps", str(args.steps)], env=env,
                stdout=subprocess.DEVNULL, stderr=stderr))
        reports.append(report)
    try:
        for index, proc in enumerate(procs):
            proc.wait(timeout=3600)
            if proc.returncode != 0:
                err = (work / f"worker_{count}_{index}.log").read_text()
                raise SystemExit(f"a worker failed ({proc.returncode}):\n{err[-3000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return [json.loads(r.read_text()) for r in reports]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="quickstart")
    parser.add_argument("--global-batch", type=int_option(2), default=4)
    parser.add_argument("--steps", type=int_option(1), default=12)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.global_batch % 2:
        parser.error("--global-batch must be even (2 workers share it)")

    from samples.shapes.generate import generate_dataset

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        generate_dataset(work / "data", 40, 4, seed=0, size=128, workers=1)
        start = time.perf_counter()
        one = run(work, args, 1)
        two = run(work, args, 2)
        wall = time.perf_counter() - start
    one_ips = args.global_batch / one[0]["step_s_median"]
    two_ips = args.global_batch / max(r["step_s_median"] for r in two)
    result = {
        "benchmark": "multi_worker", "config": args.config,
        "global_batch": args.global_batch, "steps_per_epoch": args.steps,
        "one_process_images_per_s": round(one_ips, 3),
        "two_workers_images_per_s": round(two_ips, 3),
        "two_over_one": round(two_ips / one_ips, 3),
        "all_reduce_s_per_step_two_workers": round(
            max(r["all_reduce_s_median"] for r in two), 4),
        "all_reduce_s_per_step_one_process": round(one[0]["all_reduce_s_median"], 4),
        "gradient_mb": round(one[0]["gradient_mb"], 2),
        "reports": one + two, "wall_s": round(wall, 1), "machine": machine_info(),
    }
    write_json(result, args.output, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k not in ("reports", "machine")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
