"""Wall time of the evaluation protocol in one process against N shard processes run at
once (``evaluate --shard I/N``) plus their merge, measured side by side on one machine.

    python benchmarks/sharded_eval.py [--shards 2] [--images 24] [--runs 2]
                                      [--output benchmarks/results/sharded_eval.json]

A generated shapes data set and seeded, settled random weights of the tiny model
(detections are anchor boxes: speed does not depend on the weights). Each command is a
fresh interpreter (`train_siamese.py evaluate`), as a user or a cluster runs it, so the
times include starting Python and TensorFlow and building the model once per process.
Reports the wall times, ``one_over_sharded`` (above 1: sharding helps) and whether the
merged statistics equal the unsharded ones (they must).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine_info, to_json, write_json  # noqa: E402 - sets up sys.path
from mrcnn.cli_support import int_option  # noqa: E402 (stdlib only)

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "sharded_eval.json"
SCRIPT = str(REPO / "samples" / "coco" / "train_siamese.py")
TINY = ["--config", "tiny", "--set", "DETECTION_MIN_CONFIDENCE=0"]


def evaluate(work: Path, *extra: str) -> list:
    return [sys.executable, SCRIPT, "evaluate", "--dataset", str(work / "data"), "--model",
            str(work / "w.h5"), "--classes", "all", "--quiet", *TINY, *extra]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=int_option(1), default=2)
    parser.add_argument("--images", type=int_option(1), default=24, help="val images")
    parser.add_argument("--runs", type=int_option(1), default=2)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args(argv)

    import keras

    from samples.shapes.generate import generate_dataset
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN
    from tests.helpers.settled import settle

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        generate_dataset(work / "data", 8, args.images, seed=0, size=128, workers=1)
        keras.utils.set_random_seed(0)
        model = SiameseMaskRCNN("inference", preset("tiny_eval"), str(work / "logs"))
        settle(model, [0.0, 0.5])
        model.save_weights(str(work / "w.h5"))
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
        runs = ["--runs", str(args.runs)]

        started = time.perf_counter()
        subprocess.run(evaluate(work, *runs, "--output", str(work / "all.json")), env=env,
                       check=True, capture_output=True)
        one = time.perf_counter() - started

        started = time.perf_counter()
        procs = [subprocess.Popen(evaluate(work, *runs, "--shard", f"{i}/{args.shards}",
                                           "--output", str(work / f"part{i}.json")),
                                  env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
                 for i in range(args.shards)]
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"a shard failed: {err.decode()[-2000:]}")
        shards = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([sys.executable, SCRIPT, "evaluate", "--dataset", str(work / "data"),
                        "--classes", "all", "--quiet", *TINY, "--merge",
                        *[str(work / f"part{i}.json") for i in range(args.shards)],
                        "--output", str(work / "merged.json")],
                       env=env, check=True, capture_output=True)
        merge = time.perf_counter() - started
        whole = json.loads((work / "all.json").read_text())
        merged = json.loads((work / "merged.json").read_text())
        equal = all(whole[k] == merged[k] for k in ("stats", "per_class_ap50", "seeds"))

    report = {"machine": machine_info(), "shards": args.shards, "val_images": args.images,
              "runs": args.runs, "one_process_s": one, "shard_processes_s": shards,
              "merge_s": merge, "one_over_sharded": one / (shards + merge),
              "merged_equals_unsharded": equal}
    write_json(report, args.output)
    print(json.dumps({k: v for k, v in to_json(report).items() if k != "machine"}))
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
