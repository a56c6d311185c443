"""Evaluation runs and their statistics: N seeded runs of the protocol, each statistic's
mean and 95% t-interval, the paper's splits and their average.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import numpy as np
from pycocotools.coco import COCO

from mrcnn.config import is_int
from siamese_mrcnn.coco_eval import STAT_NAMES
from siamese_mrcnn.data import active_classes_of
from siamese_mrcnn.protocol import EvaluationResult, evaluate_protocol

logger = logging.getLogger(__name__)

############################################################
#  Runs: mean and 95% interval
############################################################

def confidence_interval(values: Sequence[float], confidence: float = 0.95) -> tuple:
    """(mean, half width) of a t-interval: t.ppf((1 + c) / 2, n - 1) * std(ddof=1) / sqrt(n).

    One value: half width 0. Values of -1 (COCO's "undefined") only: (-1, 0).
    """
    from scipy import stats as scipy_stats

    values = np.asarray(values, dtype=float).reshape(-1)
    if values.size == 0:
        raise ValueError("confidence_interval: expected at least one value, got none")
    if not 0 < confidence < 1:
        raise ValueError("confidence: expected a number in (0, 1), got {}".format(confidence))
    if np.all(values == -1):
        return -1.0, 0.0
    n = values.size
    mean = float(np.mean(values))
    if n == 1:
        return mean, 0.0
    t = scipy_stats.t.ppf((1 + confidence) / 2, n - 1)
    return mean, float(t * np.std(values, ddof=1) / math.sqrt(n))


@dataclass
class RunsSummary:
    """N evaluation runs: per eval type, each run's statistics and their mean / interval.

    values: eval type -> [runs, 12]; mean, half_width: eval type -> [12];
    per_class_ap50: eval type -> {class id: [AP50 per run]}.
    """
    eval_types: tuple
    class_ids: list
    class_names: list
    seeds: list
    values: dict
    mean: dict
    half_width: dict
    per_class_ap50: dict
    confidence: float = 0.95
    timing: dict = field(default_factory=dict)

    def interval(self, name: str, eval_type: Optional[str] = None) -> tuple:
        """(mean, low, high) of one statistic."""
        eval_type = eval_type or self.eval_types[0]
        k = STAT_NAMES.index(name)
        mean, half = self.mean[eval_type][k], self.half_width[eval_type][k]
        return float(mean), float(mean - half), float(mean + half)

    def to_dict(self) -> dict:
        stats = {}
        for t in self.eval_types:
            stats[t] = {name: {"mean": float(self.mean[t][k]),
                               "half_width": float(self.half_width[t][k]),
                               "interval": [float(self.mean[t][k] - self.half_width[t][k]),
                                            float(self.mean[t][k] + self.half_width[t][k])],
                               "runs": [float(v) for v in self.values[t][:, k]]}
                        for k, name in enumerate(STAT_NAMES)}
        names = dict(zip(self.class_ids, self.class_names))
        per_class = {}
        for t in self.eval_types:
            per_class[t] = {}
            for c, runs in self.per_class_ap50[t].items():
                mean, half = confidence_interval(runs, self.confidence)
                per_class[t][str(c)] = {"name": names[c], "mean": mean, "half_width": half,
                                        "runs": [float(x) for x in runs]}
        return {"eval_types": list(self.eval_types), "runs": len(self.seeds),
                "confidence": self.confidence, "class_ids": [int(c) for c in self.class_ids],
                "class_names": list(self.class_names), "seeds": self.seeds,
                "stats": stats, "per_class_ap50": per_class,
                "timing": {k: float(v) for k, v in self.timing.items()}}

    def rows(self) -> list:
        """CSV rows: eval_type, statistic, mean, half_width, low, high, run_1..run_N."""
        rows = []
        for t in self.eval_types:
            for k, name in enumerate(STAT_NAMES):
                mean, half = float(self.mean[t][k]), float(self.half_width[t][k])
                row = {"eval_type": t, "statistic": name, "mean": mean, "half_width": half,
                       "low": mean - half, "high": mean + half}
                row.update({"run_{}".format(r + 1): float(v)
                            for r, v in enumerate(self.values[t][:, k])})
                rows.append(row)
        return rows


def summarize_runs(evaluations: Sequence[EvaluationResult], confidence: float = 0.95
                   ) -> RunsSummary:
    """Mean and t-interval per statistic over evaluation runs of the same setting."""
    if not evaluations:
        raise ValueError("summarize_runs: expected at least one evaluation, got none")
    first = evaluations[0]
    values, mean, half, per_class = {}, {}, {}, {}
    for t in first.eval_types:
        values[t] = np.stack([e.stats[t] for e in evaluations])  # [runs, 12]
        pairs = [confidence_interval(values[t][:, k], confidence)
                 for k in range(len(STAT_NAMES))]
        mean[t] = np.array([p[0] for p in pairs])
        half[t] = np.array([p[1] for p in pairs])
        per_class[t] = {c: [e.per_class_ap50[t][c] for e in evaluations]
                        for c in first.class_ids}
    timing = {"total": sum(e.timing.get("total", 0.0) for e in evaluations),
              "detect": sum(e.timing.get("detect", 0.0) for e in evaluations)}
    return RunsSummary(first.eval_types, list(first.class_ids), list(first.class_names),
                       [e.seed for e in evaluations], values, mean, half, per_class,
                       confidence, timing)


def run_seeds(runs: int, seed: int) -> list:
    """The seeds of `runs` evaluation runs: the children of SeedSequence(seed), as
    run_evaluation and evaluate_shard draw them. ValueError naming the argument for a
    `runs` < 1 or a negative `seed` (numpy's own message names neither)."""
    for name, value, low in (("runs", runs, 1), ("seed", seed, 0)):
        if not is_int(value) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return np.random.SeedSequence(int(seed)).spawn(int(runs))


def run_evaluation(model: Any, dataset: Any, coco: COCO, runs: int = 5, seed: int = 0,
                   eval_type: Union[str, Sequence[str]] = ("bbox", "segm"),
                   confidence: float = 0.95, keep_evaluations: bool = False,
                   **kwargs: Any) -> Union[RunsSummary, tuple]:
    """`runs` evaluations with different reference draws (run r uses the r-th child of
    SeedSequence(seed)); returns their RunsSummary (and the EvaluationResults
    when keep_evaluations). Other keywords go to evaluate_protocol."""
    seeds = run_seeds(runs, seed)
    evaluations = []
    for r, run_seed in enumerate(seeds):
        logger.info("Evaluation run %d/%d", r + 1, runs)
        evaluations.append(evaluate_protocol(model, dataset, coco, eval_type=eval_type,
                                             seed=run_seed, **kwargs))
    summary = summarize_runs(evaluations, confidence)
    for t in summary.eval_types:
        mean, low, high = summary.interval("AP50", t)
        logger.info("%s AP50 over %d runs: %.4f (95%% interval %.4f - %.4f)", t, runs, mean,
                    low, high)
    return (summary, evaluations) if keep_evaluations else summary


def evaluate_split(model: Any, dataset: Any, coco: COCO, split: Union[int, str],
                   runs: int = 5, seed: int = 0, **kwargs: Any) -> dict:
    """run_evaluation on the one-shot and on the background classes of a split.

    split: 1..4 or 'full' (see siamese_mrcnn.coco.get_class_split; 'full' has no
        one-shot classes). The data set's active classes are restored afterwards.
    Returns {'one_shot': RunsSummary, 'background': RunsSummary} ('background' only
    for 'full').
    """
    from siamese_mrcnn.coco import get_class_split

    one_shot, background = get_class_split(split, dataset.num_classes - 1)
    previous = active_classes_of(dataset)
    summaries = {}
    try:
        for name, classes in (("one_shot", one_shot), ("background", background)):
            if len(classes) == 0:
                continue
            dataset.set_active_classes(classes)
            logger.info("Split %s, %s classes (%d)", split, name, len(classes))
            summaries[name] = run_evaluation(model, dataset, coco, runs=runs, seed=seed,
                                             **kwargs)
    finally:
        dataset.set_active_classes(previous)
    return summaries


def average_over_splits(summaries: Sequence[RunsSummary]) -> dict:
    """The paper's split average: per eval type and statistic, the mean of the
    splits' run means (e.g. of evaluate_split(...)['one_shot'] for splits 1..4).

    Returns {eval type: {statistic: mean}} over the eval types all summaries have.
    """
    if not summaries:
        raise ValueError("average_over_splits: expected at least one RunsSummary, got none")
    types = [t for t in summaries[0].eval_types if all(t in s.mean for s in summaries)]
    return {t: {name: float(np.mean([s.mean[t][k] for s in summaries]))
                for k, name in enumerate(STAT_NAMES)} for t in types}
