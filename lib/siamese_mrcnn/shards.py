"""Sharded evaluation: N processes (or machines) each run every N-th pair of the same
seeded protocol; a merge computes the statistics.

The protocol's pairs (query image, category) have a fixed order, and each pair's
references are drawn from a generator keyed by the run's seed, the image and the
category (siamese_mrcnn.pairs), so a pair gets the same references in whichever shard
it runs. ``evaluate_shard`` writes, per run, the COCO detections of its pairs with
each pair's position; ``merge_shards`` puts the detections of all shards back in the
pairs' order and runs COCOeval as the unsharded evaluation does, so that the merged
statistics equal the unsharded ones exactly. The shards share nothing but their files.

The random-boxes baseline is not sharded: its boxes come from one generator per model
batch, so they depend on which pairs share a batch.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import numpy as np
from pycocotools.coco import COCO

from siamese_mrcnn.coco_eval import parse_eval_types
from siamese_mrcnn.pairs import seed_label
from siamese_mrcnn.protocol import (check_model_config, detect_pairs, protocol_pairs,
                                    score_pairs)
from siamese_mrcnn.runs import RunsSummary, run_seeds, summarize_runs

FORMAT = "siamese-mrcnn-shard/1"
#: What every shard of one evaluation must agree on (merge_shards checks it).
SETTINGS = ("runs", "seed", "eval_types", "num_shards", "coco_image_ids", "class_ids",
            "total_pairs", "shots")


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N; ValueError otherwise."""
    index, sep, count = text.partition("/")
    expected = f"--shard expects I/N with 0 <= I < N (e.g. 0/3), got {text!r}"
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise ValueError(expected)
    index, count = int(index), int(count)
    if not 0 <= index < count:
        raise ValueError(expected)
    return index, count


def select_shard(queries: list, index: int, count: int) -> tuple[list, dict]:
    """(the queries of shard ``index`` of ``count``, {(image, class): pair position}):
    pair k of the protocol's order belongs to shard k mod count."""
    position, selected = {}, []
    k = 0
    for image_id, categories in queries:
        mine = []
        for category in categories:
            position[(int(image_id), int(category))] = k
            if k % count == index:
                mine.append(category)
            k += 1
        if mine:
            selected.append((image_id, mine))
    return selected, position


def evaluate_shard(model: Any, dataset: Any, shard: tuple[int, int], runs: int = 5,
                   seed: int = 0, eval_type: Any = ("bbox", "segm"), limit: int = 0,
                   verbose: int = 1, **kwargs: Any) -> dict:
    """Runs shard ``(I, N)`` of ``runs`` seeded runs (the seeds of run_evaluation);
    returns the JSON-ready shard (write it with write_shard). Other keywords go to
    detect_pairs (shared_reference, allow_same_image, workers, cache_queries)."""
    if kwargs.get("random_detections"):
        raise ValueError("the random-boxes baseline cannot be sharded (its boxes depend on "
                         "the batches); evaluate it in one process")
    kwargs.pop("random_detections", None)
    seeds = run_seeds(runs, seed)  # before any work: a bad runs or seed is told at once
    check_model_config(model)
    index, count = shard
    types = parse_eval_types(eval_type)
    image_ids, chosen, queries = protocol_pairs(dataset, limit)
    mine, position = select_shard(queries, index, count)
    started = time.perf_counter()
    run_records = []
    for root in seeds:
        detected = detect_pairs(model, dataset, mine, root, verbose=verbose, **kwargs)
        run_records.append({
            "pairs": [[position[pair], results] for pair, results in detected["pairs"]],
            "skipped": [[int(i), int(c)] for i, c in detected["skipped"]],
            "timing": {k: float(v) for k, v in detected["timing"].items()},
            "seconds": float(detected["seconds"])})
    return {"format": FORMAT, "shard": index, "num_shards": count, "runs": int(runs),
            "seed": int(seed), "eval_types": list(types),
            "coco_image_ids": [int(dataset.image_info[i]["id"]) for i in image_ids],
            "class_ids": [int(c) for c in chosen],
            "total_pairs": sum(len(c) for _, c in queries),
            "shots": int(model.config.NUM_TARGETS),
            "seconds": time.perf_counter() - started, "run_records": run_records}


def write_shard(shard: dict, path: str) -> None:
    """Writes a shard's JSON to a temporary name, then renames it: a killed process
    never leaves a half-written part that a merge would read."""
    from siamese_mrcnn.analysis import save_json

    save_json(shard, path, indent=None)


def read_shard(path: str) -> dict:
    """A shard file; ValueError naming the file when it is missing, not JSON or not a
    shard."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: shard file not found")
    try:
        with open(path, encoding="utf-8") as f:
            shard = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a shard file (corrupt JSON: {error})") from error
    if not isinstance(shard, dict) or shard.get("format") != FORMAT:
        raise ValueError(f"{path}: not a shard file (expected format {FORMAT!r}, written by "
                         "evaluate --shard I/N)")
    return shard


def merge_shards(shards: Sequence[dict], dataset: Any, coco: COCO, verbose: int = 1,
                 confidence: float = 0.95, names: Sequence[str] = ()) -> RunsSummary:
    """The RunsSummary of the evaluation that ``shards`` (all N of one evaluation) ran
    in parts; ValueError when one is missing, repeated or from another evaluation."""
    names = list(names) or [f"shard {i}" for i in range(len(shards))]
    if not shards:
        raise ValueError("--merge: expected the shard files, got none")
    first = shards[0]
    for name, shard in zip(names, shards):
        differ = [k for k in SETTINGS if shard.get(k) != first.get(k)]
        if differ:
            raise ValueError(f"{name}: not from the same evaluation as {names[0]} (they "
                             f"differ in {', '.join(differ)})")
    count = int(first["num_shards"])
    indices = sorted(int(s["shard"]) for s in shards)
    if indices != list(range(count)):
        missing = sorted(set(range(count)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise ValueError(f"--merge: expected shards 0..{count - 1} once each; missing "
                         f"{missing}, repeated {repeated}")
    types = tuple(first["eval_types"])
    known = {int(dataset.image_info[i]["id"]): i for i in dataset.image_ids}
    try:
        image_ids = [known[i] for i in first["coco_image_ids"]]
    except KeyError as error:
        raise ValueError(f"--merge: image {error} of the shards is not in this data set "
                         "(merge with the --dataset/--subset they were evaluated on)")
    chosen = np.asarray(first["class_ids"], dtype=int)
    seeds = np.random.SeedSequence(int(first["seed"])).spawn(int(first["runs"]))
    evaluations = []
    for run, root in enumerate(seeds):
        records = [s["run_records"][run] for s in shards]
        pairs = sorted((p for r in records for p in r["pairs"]), key=lambda p: p[0])
        results = [result for _, pair_results in pairs for result in pair_results]
        timing: dict = {}
        for r in records:
            for k, v in r["timing"].items():
                timing[k] = timing.get(k, 0.0) + v
        skipped = sorted((tuple(p) for r in records for p in r["skipped"]))
        detected = {"total": int(first["total_pairs"]), "skipped": skipped,
                    "timing": timing, "seconds": sum(r["seconds"] for r in records)}
        evaluations.append(score_pairs(dataset, coco, results, image_ids, chosen, types,
                                       verbose, detected, seed_label(root),
                                       time.perf_counter()))
    return summarize_runs(evaluations, confidence)


__all__ = ["parse_shard", "select_shard", "evaluate_shard", "write_shard", "read_shard",
           "merge_shards", "FORMAT"]
