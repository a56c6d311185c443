"""Analyses of the one-shot evaluation (SPEC §7, paper Figs. 7 and 8) and their writers.

``confusion_matrix`` scores the detections made with a reference of category i
as category j (AP50); ``most_confused`` reads, per reference category, the
category it is most confused with; ``ap50_by_instance_count`` regroups an
evaluation's (image, category) pairs by how many instances of the category the
image holds. The ``write_*`` functions save these and a ``RunsSummary`` as JSON,
CSV and PNG (``save_json`` / ``save_csv`` are the plain file writers).

The pairs and reference draws (``siamese_mrcnn.pairs``: the confusion matrix is one
more consumer of its PairRunner) and the COCO scoring (``siamese_mrcnn.coco_eval``)
are the protocol's; this module only recombines them.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
from pycocotools.coco import COCO

from mrcnn.coco import evaluation_image_ids
from mrcnn.files import write_atomic  # noqa: F401 - also this module's public name
from siamese_mrcnn.data import active_classes_of
from siamese_mrcnn.coco_eval import (customCOCOeval, detections_to_coco, parse_eval_types,
                                     run_coco_eval)
from siamese_mrcnn.pairs import (PairRunner, SeedLike, check_indexed, evaluation_pairs,
                                 progress_bar, seed_label, seed_sequence)
from siamese_mrcnn.protocol import (EvaluationResult, check_model_config, class_name_of,
                                    per_class_ap50, source_category_id)
from siamese_mrcnn.runs import RunsSummary

#: Instance-count buckets of ap50_by_instance_count: [1], [2], ..., [6, 10], [11, inf).
DEFAULT_INSTANCE_BINS = (1, 2, 3, 4, 5, 6, 11)

############################################################
#  Confusion matrix
############################################################

@dataclass
class ConfusionResult:
    """matrix[t][i, j]: AP50 (eval type t) of the detections made with a reference of
    class_ids[i], labelled and scored as class_ids[j]; NaN where class j has no
    ground truth in the evaluated images."""
    class_ids: list
    class_names: list
    matrix: dict
    iou_threshold: float = 0.5
    seed: Any = None

    def to_dict(self) -> dict:
        def clean(m):
            return [[None if np.isnan(v) else float(v) for v in row] for row in m]
        return {"class_ids": [int(c) for c in self.class_ids],
                "class_names": list(self.class_names), "iou_threshold": self.iou_threshold,
                "rows": "reference category", "columns": "category scored as",
                "matrix": {t: clean(m) for t, m in self.matrix.items()}, "seed": self.seed}


def confusion_matrix(model: Any, dataset: Any, coco: COCO,
                     class_ids: Optional[Sequence[int]] = None,
                     eval_type: Union[str, Sequence[str]] = "bbox", limit: int = 0,
                     image_ids: Optional[Sequence[int]] = None, seed: SeedLike = None,
                     iou_threshold: float = 0.5, verbose: int = 1,
                     shared_reference: bool = False, allow_same_image: bool = False,
                     workers: Optional[int] = None) -> ConfusionResult:
    """The confusion matrix of SPEC §7 (paper Fig. 7).

    For every evaluated image q (one with a non-crowd instance of a class in
    class_ids) and every class i of class_ids, a reference of i is drawn and
    detections are made in q. Entry [i, j] is the AP50 of category j, computed by
    COCOeval over the evaluated images, when the detections made with references of
    i in the images containing j are all labelled j. The diagonal is the
    protocol's per-class AP50; a high off-diagonal entry means references of i
    make the model find objects of j.

    class_ids: internal class ids (default: the active classes). Costs
    len(class_ids) detections per image.
    """
    check_model_config(model)
    types = parse_eval_types(eval_type)
    check_indexed(dataset)
    chosen = np.unique(np.asarray(class_ids if class_ids is not None
                                  else active_classes_of(dataset), dtype=int))
    bad = chosen[(chosen < 1) | (chosen >= dataset.num_classes)]
    if bad.size or chosen.size == 0:
        raise ValueError("class_ids: expected internal class ids in 1..{}, got {}".format(
            dataset.num_classes - 1, chosen.tolist()))
    requested = evaluation_image_ids(dataset, limit, image_ids)
    present = dict(evaluation_pairs(dataset, requested, chosen))
    queries = [(image_id, chosen.tolist()) for image_id in present]
    root = seed_sequence(seed)
    workers = getattr(model.config, "WORKERS", 0) if workers is None else workers
    detector = PairRunner(model, dataset, root, False, shared_reference, allow_same_image,
                             workers or 0)
    rows = {int(c): [] for c in chosen}
    with progress_bar(len(queries) * len(chosen), verbose, "Confusion") as progress:
        for image_id, reference, detection in detector.run(queries, progress):
            coco_image_id = dataset.image_info[image_id]["id"]
            for scored in present[image_id]:
                rows[reference].extend(detections_to_coco(detection, coco_image_id,
                                                          source_category_id(dataset, scored)))
    coco_image_ids = [int(dataset.image_info[i]["id"]) for i in present]
    coco_category_ids = [source_category_id(dataset, c) for c in chosen]
    matrices = {}
    for t in types:
        matrix = np.full((len(chosen), len(chosen)), np.nan)
        for i, reference in enumerate(chosen):
            coco_eval = run_coco_eval(coco, rows[int(reference)], coco_image_ids,
                                      coco_category_ids, t)
            per_class = per_class_ap50(coco_eval, dataset, chosen, iou_threshold)
            matrix[i] = [per_class[int(c)] if per_class[int(c)] > -1 else np.nan
                         for c in chosen]
        matrices[t] = matrix
    return ConfusionResult([int(c) for c in chosen],
                           [class_name_of(dataset, c) for c in chosen], matrices,
                           iou_threshold, seed_label(root))


def most_confused(confusion: ConfusionResult, eval_type: str = "bbox") -> dict:
    """For each reference class, the other class scored highest with its detections.

    Returns {"rows": [{reference, reference_name, most_confused, most_confused_name,
    ap50, diagonal}] (rows whose off-diagonal entries are all 0 / NaN are left out),
    "histogram": [{class_id, name, count}] (how often each class is the most
    confused one; sorted by count, then class id)}.
    """
    matrix = np.array(confusion.matrix[eval_type], dtype=float)
    off = matrix.copy()
    np.fill_diagonal(off, np.nan)
    rows = []
    for i, reference in enumerate(confusion.class_ids):
        row = np.where(np.isnan(off[i]), -np.inf, off[i])
        j = int(np.argmax(row))
        if not np.isfinite(row[j]) or row[j] <= 0:
            continue
        rows.append({"reference": int(reference), "reference_name": confusion.class_names[i],
                     "most_confused": int(confusion.class_ids[j]),
                     "most_confused_name": confusion.class_names[j], "ap50": float(row[j]),
                     "diagonal": None if np.isnan(matrix[i, i]) else float(matrix[i, i])})
    counts = Counter(r["most_confused"] for r in rows)
    names = dict(zip(confusion.class_ids, confusion.class_names))
    histogram = [{"class_id": int(c), "name": names[c], "count": int(n)}
                 for c, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    return {"rows": rows, "histogram": histogram}


############################################################
#  AP50 by number of instances per image
############################################################

def _bucket_labels(bins: Sequence[int]) -> list:
    labels = []
    for k, low in enumerate(bins):
        high = bins[k + 1] - 1 if k + 1 < len(bins) else None
        labels.append(str(low) if high == low else
                      "{}-{}".format(low, high) if high is not None else "{}+".format(low))
    return labels


def instance_counts(coco: COCO, coco_image_ids: Iterable[int],
                    coco_category_ids: Iterable[int]) -> dict:
    """{(COCO image id, COCO category id): non-crowd instances} for pairs with >= 1."""
    categories = set(int(c) for c in coco_category_ids)
    counts: Counter = Counter()
    for image_id in coco_image_ids:
        for annotation in coco.imgToAnns.get(int(image_id), []):
            if not annotation.get("iscrowd", 0) and annotation["category_id"] in categories:
                counts[(int(image_id), int(annotation["category_id"]))] += 1
    return dict(counts)


def ap50_by_instance_count(evaluation: EvaluationResult, coco: COCO,
                           bins: Sequence[int] = DEFAULT_INSTANCE_BINS) -> list:
    """AP50 of the protocol's (image, category) pairs grouped by how many instances of
    the category the image holds (paper Fig. 8).

    Uses the evaluation's COCOeval per-image results: for each bucket only the pairs
    in it are accumulated, averaged over the evaluated classes as in summarize().
    bins: increasing lower edges of the buckets (the last one is open).
    Returns one row per bucket: bucket, low, high (None: open), pairs, and the AP50
    per eval type ("bbox", "segm"; -1 when the bucket is empty).
    """
    edges = [int(b) for b in bins]
    if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError("bins: expected increasing integers >= 1, got {}".format(list(bins)))
    first = evaluation.coco_evals[evaluation.eval_types[0]]
    counts = instance_counts(coco, first.params.imgIds, first.params.catIds)
    bucket_of = {pair: int(np.searchsorted(edges, n, side="right")) - 1
                 for pair, n in counts.items()}
    labels = _bucket_labels(edges)
    rows = []
    for b, label in enumerate(labels):
        keep = set(pair for pair, bucket in bucket_of.items() if bucket == b)
        row = {"bucket": label, "low": edges[b],
               "high": edges[b + 1] - 1 if b + 1 < len(edges) else None, "pairs": len(keep)}
        for t in evaluation.eval_types:
            row[t] = _subset_ap50(evaluation.coco_evals[t], keep) if keep else -1.0
        rows.append(row)
    return rows


def _subset_ap50(coco_eval: customCOCOeval, keep: set) -> float:
    """AP50 accumulated over the (image, category) pairs in keep only."""
    subset = copy.copy(coco_eval)
    # accumulate() skips per-image entries that are None.
    subset.evalImgs = [e if e is not None and (e["image_id"], e["category_id"]) in keep
                       else None for e in coco_eval.evalImgs]
    subset.eval = {}
    with contextlib.redirect_stdout(io.StringIO()):
        subset.accumulate()
    return float(subset.summarize(verbose=0)[1])


############################################################
#  Writing data and figures
############################################################

def save_json(data: Any, path: str, indent: Optional[int] = 2,
              default: Optional[Callable] = None) -> str:
    """Writes data as JSON (indented by default; json.dumps' default for other types),
    atomically (mrcnn.files.write_atomic); returns the path."""
    return write_atomic(path, json.dumps(data, indent=indent, default=default))


def save_csv(rows: Sequence[dict], path: str, fieldnames: Optional[Sequence[str]] = None
             ) -> str:
    """Writes a list of dicts as CSV (columns: fieldnames or the union of the keys),
    atomically (write_atomic); returns the path."""
    if fieldnames is None:
        fieldnames = []
        for row in rows:
            fieldnames.extend(k for k in row if k not in fieldnames)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(fieldnames))
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, text.getvalue())


def _save_figure(draw: Callable, path: str, figsize: tuple) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    try:
        draw(ax)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def write_runs_summary(summary: RunsSummary, out_dir: str, name: str = "evaluation") -> dict:
    """Writes {name}.json and {name}.csv; returns {"json": path, "csv": path}."""
    return {"json": save_json(summary.to_dict(), os.path.join(out_dir, name + ".json")),
            "csv": save_csv(summary.rows(), os.path.join(out_dir, name + ".csv"))}


def write_confusion(confusion: ConfusionResult, out_dir: str, top_k: int = 20) -> dict:
    """Writes, per eval type t: confusion_{t}.json/.csv/.png and most_confused_{t}
    .json/.csv/.png (the histogram). Returns the paths by key."""
    from siamese_mrcnn import visualize

    paths = {}
    for t, matrix in confusion.matrix.items():
        base = os.path.join(out_dir, "confusion_{}".format(t))
        paths["confusion_{}_json".format(t)] = save_json(confusion.to_dict(), base + ".json")
        rows = [dict({"reference": name},
                     **{n: (None if np.isnan(v) else float(v))
                        for n, v in zip(confusion.class_names, matrix[i])})
                for i, name in enumerate(confusion.class_names)]
        paths["confusion_{}_csv".format(t)] = save_csv(
            rows, base + ".csv", ["reference"] + list(confusion.class_names))
        size = max(5.0, 0.18 * len(confusion.class_ids) + 3)
        paths["confusion_{}_png".format(t)] = _save_figure(
            lambda ax: visualize.plot_confusion_matrix(
                matrix, confusion.class_names, ax=ax,
                title="AP50 ({}): reference vs scored category".format(t)),
            base + ".png", (size + 1, size))
        confused = most_confused(confusion, t)
        base = os.path.join(out_dir, "most_confused_{}".format(t))
        paths["most_confused_{}_json".format(t)] = save_json(confused, base + ".json")
        paths["most_confused_{}_csv".format(t)] = save_csv(
            confused["rows"], base + ".csv",
            ["reference", "reference_name", "most_confused", "most_confused_name", "ap50",
             "diagonal"])
        paths["most_confused_{}_png".format(t)] = _save_figure(
            lambda ax: visualize.plot_most_confused(
                confused["histogram"], ax=ax, top_k=top_k,
                title="Most confused categories ({})".format(t)),
            base + ".png", (8, 4.5))
    return paths


def write_instance_count(rows: Sequence[dict], out_dir: str,
                         name: str = "ap50_by_instances") -> dict:
    """Writes {name}.json/.csv/.png of ap50_by_instance_count's rows."""
    from siamese_mrcnn import visualize

    base = os.path.join(out_dir, name)
    return {"json": save_json(list(rows), base + ".json"),
            "csv": save_csv(list(rows), base + ".csv"),
            "png": _save_figure(lambda ax: visualize.plot_ap_by_instance_count(rows, ax=ax),
                                base + ".png", (7, 4.5))}
