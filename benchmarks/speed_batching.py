"""2a. batched_model_speedup: model calls only, one detect() per pair (BATCH_SIZE 1)
over BATCH_SIZE B with each distinct reference encoded once; batching alone is
batched_fresh_reference_speedup."""
from __future__ import annotations

from typing import Callable, Sequence

from common import REPO  # noqa: F401,E402 - sets up sys.path

import numpy as np  # noqa: E402

from siamese_mrcnn.model import SiameseMaskRCNN  # noqa: E402

from speed_setup import interleaved_seconds  # noqa: E402


def detect_one_per_call(model: SiameseMaskRCNN, pairs: Sequence[tuple]) -> list[dict]:
    """The old evaluation loop: one detect() per pair, the reference re-encoded each time."""
    return [model.detect([reference], [query])[0] for query, reference in pairs]


def detect_batched(model: SiameseMaskRCNN, pairs: Sequence[tuple]) -> list[dict]:
    """detect() on BATCH_SIZE pairs per call; the last batch padded with repeats."""
    batch = model.config.BATCH_SIZE
    results = []
    for start in range(0, len(pairs), batch):
        chunk = list(pairs[start:start + batch])
        used = len(chunk)
        chunk += [chunk[-1]] * (batch - used)
        out = model.detect([r for _, r in chunk], [q for q, _ in chunk])
        results += out[:used]
    return results


def detect_cached(model: SiameseMaskRCNN, queries: Sequence[np.ndarray],
                  references: Sequence[np.ndarray], pair_refs: Sequence[int]) -> list[dict]:
    """Each distinct reference encoded once, then BATCH_SIZE queries per call."""
    batch = model.config.BATCH_SIZE
    vectors = []  # 5 x [references, C]
    for start in range(0, len(references), batch):
        encoded = model.encode_reference(list(references[start:start + batch]))
        vectors = encoded if not vectors else [np.concatenate([a, b])
                                               for a, b in zip(vectors, encoded)]
    results = []
    for start in range(0, len(queries), batch):
        rows = list(pair_refs[start:start + batch])
        images = list(queries[start:start + batch])
        used = len(rows)
        rows += [rows[-1]] * (batch - used)
        images += [images[-1]] * (batch - used)
        out = model.detect_with_reference([v[rows] for v in vectors], images)
        results += out[:used]
    return results


def max_score_difference(a: Sequence[dict], b: Sequence[dict]) -> float:
    """Largest |score difference| between two runs' detections of the same pairs
    (detections sorted by score; inf when the counts differ)."""
    worst = 0.0
    for x, y in zip(a, b):
        if len(x["scores"]) != len(y["scores"]):
            return float("inf")
        if len(x["scores"]):
            worst = max(worst, float(np.max(np.abs(np.sort(x["scores"])
                                                   - np.sort(y["scores"])))))
    return worst


def detection_agreement(a: Sequence[dict], b: Sequence[dict], score_tol: float = 1e-3,
                        box_tol: float = 1.0) -> dict:
    """How two runs' detections of the same pairs agree, paired by value: a detection of
    ``a`` matches an unused one of ``b`` with the same class, every box coordinate within
    ``box_tol`` px and the score within ``score_tol``.

    Returns the largest score difference over matched detections, and how many of either
    run found no match. Used across batch shapes, where kernels round differently: with
    untrained weights many RPN anchors score within 1e-6 of each other, so such a change
    can swap which anchors survive the top-k and NMS, and a detection appears in one run
    only; every detection both runs found must still score alike.
    """
    worst, unmatched, total = 0.0, 0, 0
    for x, y in zip(a, b):
        x_scores, y_scores = np.asarray(x["scores"]), np.asarray(y["scores"])
        y_classes, y_rois = np.asarray(y["class_ids"]), np.asarray(y["rois"], float)
        used = np.zeros(len(y_scores), bool)
        total += len(x_scores) + len(y_scores)
        for i in np.argsort(-x_scores, kind="stable"):
            gap = np.abs(y_scores - x_scores[i])
            close = (~used & (y_classes == x["class_ids"][i]) & (gap <= score_tol)
                     & np.all(np.abs(y_rois - np.asarray(x["rois"][i], float)) <= box_tol,
                              axis=-1))
            if not close.any():
                unmatched += 1
                continue
            candidates = np.flatnonzero(close)
            j = candidates[np.argmin(gap[candidates])]
            used[j] = True
            worst = max(worst, float(gap[j]))
        unmatched += int((~used).sum())
    return {"max_score_difference": worst, "unmatched": unmatched, "detections": total}


def bench_batched_model(single: SiameseMaskRCNN, batched: SiameseMaskRCNN,
                       queries: Sequence[np.ndarray], references: Sequence[np.ndarray],
                       repeats: int) -> dict:
    """Per-pair time of the three evaluation paths on the same pairs and weights."""
    pair_refs = [i % len(references) for i in range(len(queries))]
    pairs = [(q, references[r]) for q, r in zip(queries, pair_refs)]
    out: dict[str, list] = {}

    def run(key: str, fn: Callable[[], list]) -> Callable[[], None]:
        return lambda: out.__setitem__(key, fn())

    timed = interleaved_seconds({
        "one_pair_per_call": run("single", lambda: detect_one_per_call(single, pairs)),
        "batched_fresh_reference": run("batched", lambda: detect_batched(batched, pairs)),
        "batched_cached_reference": run(
            "cached", lambda: detect_cached(batched, queries, references, pair_refs)),
    }, repeats)
    per_pair = {name: t["median"] / len(pairs) for name, t in timed.items()}
    return {
        "batched_model_speedup": per_pair["one_pair_per_call"]
        / per_pair["batched_cached_reference"],
        "batched_fresh_reference_speedup": per_pair["one_pair_per_call"]
        / per_pair["batched_fresh_reference"],
        "seconds_per_pair": per_pair,
        "pairs": len(pairs),
        "distinct_references": len(references),
        "batch_size": batched.config.BATCH_SIZE,
        "agreement_vs_one_pair_per_call": {
            "batched_fresh_reference": detection_agreement(out["single"], out["batched"]),
            "batched_cached_reference": detection_agreement(out["single"], out["cached"]),
        },
    }
