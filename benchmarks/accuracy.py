#!/usr/bin/env python
"""Accuracy benchmark: the quick-start protocol with a longer budget.

Trains the quick-start model on the background categories of the generated shapes data
set and evaluates it with the paper's protocol (5 runs with different reference draws by
default): one-shot vs background vs random-boxes AP50, boxes and masks, mean and 95%
interval. Writes benchmarks/results/accuracy.json (the quick start's results.json plus
the machine) and prints the table.

    python benchmarks/accuracy.py                    # profile "long" (~35-50 min on 2 CPU cores)
    python benchmarks/accuracy.py --profile default  # the quick start's budget (~15 min)
"""
import argparse
import json
import os
import shutil
import sys

from common import REPO, machine_info, write_json  # sets up sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = str(REPO)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="long", help="quick-start profile (long)")
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "accuracy"),
                        help="working directory (data set, checkpoints)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "accuracy.json"))
    parser.add_argument("--runs", type=int, default=5, help="evaluation runs (default 5)")
    args, rest = parser.parse_known_args(argv)

    from samples.shapes import quickstart

    code = quickstart.main(["--out", args.out, "--profile", args.profile,
                            "--runs", str(args.runs), *rest])
    if code:
        return code
    with open(os.path.join(args.out, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    results["machine"] = machine_info()
    write_json(results, args.output)
    picture = os.path.join(os.path.dirname(args.output), "accuracy_one_shot_detections.png")
    shutil.copyfile(results["picture"], picture)
    print(f"wrote {args.output} and {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
