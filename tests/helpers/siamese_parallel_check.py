"""Multi-replica SiameseMaskRCNN checks, run in a fresh process on 2 logical CPU devices.

Logical devices must be configured before TensorFlow initialises, so
tests/siamese_mrcnn/test_parallel.py runs this file as a script:

    python tests/helpers/siamese_parallel_check.py RESULT_JSON WORK_DIR

It measures (it does not judge; the test asserts on the JSON it writes):
  train     SiameseMaskRCNN("training", GPU_COUNT=2, IMAGES_PER_GPU=1).train() on the
            hand-made COCO set of tests/helpers/siamese_coco.py: wrapper, mirrored
            variables, 2 steps, the checkpoint siamese_mrcnn_0001.h5.
  losses    one device x 2 queries vs 2 replicas x 1 query, same weights, same fixed
            batch: each loss component (evaluate).
  checkpoint  that checkpoint loaded into a one-device inference model (every array
            compared) and detect run on it.
  inference a 2-replica inference model (GPU_COUNT=2, IMAGES_PER_GPU=1) and a one-device
            one (IMAGES_PER_GPU=2) with the same weights: the raw outputs, detect,
            encode_reference (2 references, and 1, which does not split evenly over
            2 replicas), detect_with_reference (2 vectors and 1 broadcast) and run_graph.

Determinism of the loss comparison, as in tests/helpers/parallel_check.py:
USE_RPN_ROIS=False, and every query gets 4 hand-made ROIs with IoU >= 0.5 to its first
ground-truth box and 4 with IoU 0 to every box (crowds included);
TRAIN_ROIS_PER_IMAGE = 8 and ROI_POSITIVE_RATIO = 0.5 make the quotas 4 positives
and 4 negatives, so every ROI is kept and tf.random.shuffle only permutes them; the
losses are means over ROIs, which ignore order. The RPN targets are fixed inputs with
the same number of positive and negative anchors in both queries, so the mean over
the batch on one device equals the mean of the two replicas' means. TRAIN_BN is False.
The Siamese training graph takes the references (input_target) after image_meta.
"""
from __future__ import annotations

import os
import sys

from tests.helpers.distributed import use_logical_cpus

use_logical_cpus(2)  # before anything creates the TensorFlow runtime

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn import utils  # noqa: E402
from mrcnn import weights as weights_io  # noqa: E402
from siamese_mrcnn.coco import IndexedCocoDataset  # noqa: E402
from siamese_mrcnn.config import TINY_FIELDS, Config, preset  # noqa: E402
from siamese_mrcnn.data import SiameseDataGenerator  # noqa: E402
from siamese_mrcnn.model import SiameseMaskRCNN  # noqa: E402
from siamese_mrcnn.reference import mold_references  # noqa: E402
from tests.helpers.distributed import (Stopwatch, copy_weights, max_diff,  # noqa: E402
                                       max_replica_diff, snapshot, training_report,
                                       variable_kinds, write_report)
from tests.helpers.siamese_coco import write_siamese_coco  # noqa: E402

SIZE = TINY_FIELDS["IMAGE_MAX_DIM"]  # the "tiny" preset's query size
LEARNING_RATE = 0.01


def make_config(gpu_count: int, images_per_gpu: int, **overrides) -> Config:
    """A tiny Siamese config (64 px queries, 32 px references, resnet_tiny)."""
    fields = dict(
        EXPERIMENT="parallel", GPU_COUNT=gpu_count, IMAGES_PER_GPU=images_per_gpu,
        RPN_TRAIN_ANCHORS_PER_IMAGE=16, POST_NMS_ROIS_TRAINING=8, POST_NMS_ROIS_INFERENCE=16,
        TRAIN_ROIS_PER_IMAGE=8, ROI_POSITIVE_RATIO=0.5, DETECTION_MIN_CONFIDENCE=0.0,
        STEPS_PER_EPOCH=2)
    fields.update(overrides)
    return preset("tiny_eval", **fields)


def array_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def compare_detections(one: list[dict], two: list[dict]) -> list[dict]:
    """Per image: detection count and how the two models' results differ."""
    report = []
    for a, b in zip(one, two):
        same_shape = a["masks"].shape == b["masks"].shape
        report.append({
            "count": int(len(a["scores"])), "other_count": int(len(b["scores"])),
            "rois_equal": bool(np.array_equal(a["rois"], b["rois"])),
            "class_ids_equal": bool(np.array_equal(a["class_ids"], b["class_ids"])),
            "scores_max_diff": array_diff(a["scores"], b["scores"]),
            "masks_mismatch": float(np.mean(a["masks"] != b["masks"])) if same_shape
            else 1.0,
        })
    return report


def load_dataset(work_dir: str) -> IndexedCocoDataset:
    root = os.path.join(work_dir, "coco")
    write_siamese_coco(root)
    dataset = IndexedCocoDataset()
    dataset.load_coco(root, "train", subsubset=None)
    dataset.prepare()
    return dataset


############################################################
#  Checks
############################################################

def check_training(dataset, work_dir: str) -> tuple[dict, SiameseMaskRCNN]:
    model = SiameseMaskRCNN("training", make_config(2, 1), work_dir)
    before = snapshot(model.inner_model)
    history = model.train(dataset, dataset, LEARNING_RATE, epochs=1, layers="all")
    result = training_report(model, before, history, model.get_latest_checkpoint())
    result["epoch"] = model.epoch
    return result, model


def fixed_batch(dataset, config) -> list[np.ndarray]:
    """Two queries with balanced RPN targets and hand-made ROIs (module docstring)."""
    (images, metas, targets, rpn_match, rpn_bbox, gt_class_ids, gt_boxes,
     gt_masks) = SiameseDataGenerator(dataset, config, shuffle=False, seed=0)[0][0]
    rpn_match = rpn_match.copy()
    rpn_bbox = rpn_bbox.copy()
    positives = min(int(np.sum(m == 1)) for m in rpn_match)
    negatives = min(int(np.sum(m == -1)) for m in rpn_match)
    if positives == 0 or negatives == 0:
        raise RuntimeError("a query has no positive or no negative anchor")
    for b in range(len(rpn_match)):
        rpn_match[b, np.where(rpn_match[b, :, 0] == 1)[0][positives:]] = 0
        rpn_match[b, np.where(rpn_match[b, :, 0] == -1)[0][negatives:]] = 0
        rpn_bbox[b, positives:] = 0  # rows follow the positive anchors' order
    # 6 px squares along the border, the first 4 clear of every box become negatives.
    border = [[y, x, y + 6, x + 6] for y in (0, 29, 58) for x in (0, 29, 58)
              if (y, x) != (29, 29)]
    rois = []
    for b in range(len(images)):
        boxes = gt_boxes[b][gt_class_ids[b] != 0].astype(np.float32)  # crowds too
        first = gt_boxes[b][np.flatnonzero(gt_class_ids[b] > 0)[0]]
        positive = [np.clip(first + shift, 0, SIZE) for shift in
                    ([0, 0, 0, 0], [1, 1, 1, 1], [-1, 0, 0, 1], [0, -1, 1, 0])]
        clear = [c for c in border
                 if utils.compute_overlaps(np.array([c], np.float32), boxes).max() == 0]
        image_rois = np.array(positive + clear[:4], np.int32)
        iou = utils.compute_overlaps(image_rois.astype(np.float32), boxes)
        if not (len(image_rois) == 8 and np.all(iou[:4].max(1) >= 0.5)
                and np.all(iou[4:] == 0)):
            raise RuntimeError(f"hand-made ROIs are not 4 positives + 4 negatives: {iou}")
        rois.append(image_rois)
    return [images, metas, targets, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks,
            np.stack(rois)]


def check_losses(dataset, work_dir: str) -> dict:
    single = SiameseMaskRCNN("training", make_config(1, 2, USE_RPN_ROIS=False), work_dir)
    parallel = SiameseMaskRCNN("training", make_config(2, 1, USE_RPN_ROIS=False), work_dir)
    copy_weights(single.keras_model, parallel.inner_model)
    batch = fixed_batch(dataset, single.config)
    for m in (single, parallel):
        m.compile(LEARNING_RATE, m.config.LEARNING_MOMENTUM)
    return {
        "input_names": [t.name for t in single.keras_model.inputs],
        "single": single.keras_model.test_on_batch(batch, return_dict=True),
        "parallel": parallel.keras_model.test_on_batch(batch, return_dict=True),
    }


def query_reference_pairs(dataset) -> tuple[list, list]:
    """Two queries and, for each, an instance of the same category from another image."""
    def crop(image_id: int, class_id: int) -> np.ndarray:
        masks, class_ids = dataset.load_mask(image_id)
        y1, x1, y2, x2 = utils.extract_bboxes(masks)[int(np.flatnonzero(class_ids == class_id)[0])]
        return dataset.load_image(image_id)[y1:y2, x1:x2]

    queries, references = [], []
    for query_id in (1, 3):  # COCO images 108 (square + bar) and 122 (two bars)
        _, class_ids = dataset.load_mask(query_id)
        class_id = int(class_ids[class_ids > 0][0])
        other = int([i for i in dataset.category_image_index[class_id] if i != query_id][0])
        queries.append(dataset.load_image(query_id))
        references.append(crop(other, class_id))
    return queries, references


def check_checkpoint(trained: SiameseMaskRCNN, checkpoint: str, dataset,
                     work_dir: str) -> tuple[dict, SiameseMaskRCNN]:
    trained_values = snapshot(trained.inner_model)
    single = SiameseMaskRCNN("inference", make_config(1, 2), work_dir)
    report = single.load_weights(checkpoint)
    single_values = snapshot(single.keras_model)
    queries, references = query_reference_pairs(dataset)
    results = single.detect(references, queries)
    return {
        "loaded": len(report.loaded),
        "missing": list(report.missing_in_file),
        "keys": len(single_values),
        "trained_keys": len(trained_values),
        "max_diff": max_diff(single_values, trained_values),
        "detect_results": len(results),
        "detect_masks_shapes": [list(r["masks"].shape) for r in results],
    }, single


def check_inference(single: SiameseMaskRCNN, checkpoint: str, dataset,
                    work_dir: str) -> dict:
    parallel = SiameseMaskRCNN("inference", make_config(2, 1), work_dir)
    parallel.load_weights(checkpoint)
    # Two steps of training leave the class head on background (how firmly depends on
    # the batches drawn): damp its kernel and favour 'match' in both models alike, so
    # that there are detections to compare.
    for model in (single, parallel):
        head = weights_io.weight_map(model.inner_model)
        head["mrcnn_class_logits/kernel"].assign(head["mrcnn_class_logits/kernel"] * 0.1)
        head["mrcnn_class_logits/bias"].assign(np.array([0.0, 3.0], np.float32))
    result = {
        "wrapper": type(parallel.keras_model).__name__,
        "variable_kinds": variable_kinds(parallel.inner_model),
        "weights_max_diff": max_replica_diff(parallel.inner_model,
                                             snapshot(single.keras_model)),
    }
    queries, references = query_reference_pairs(dataset)

    # Raw graph outputs on the same molded batch.
    molded, metas, _ = single.mold_inputs(queries)
    inputs = [molded, metas, mold_references(references, single.config),
              single._batch_anchors(molded[0].shape)]
    one = single.keras_model.predict_on_batch(inputs)
    two = parallel.keras_model.predict_on_batch(inputs)
    result["outputs_shapes"] = [[list(a.shape), list(b.shape)] for a, b in zip(one, two)]
    result["outputs_max_diff"] = [array_diff(a, b) for a, b in zip(one, two)]

    direct_single = single.detect(references, queries)
    direct = parallel.detect(references, queries)
    result["detect"] = compare_detections(direct_single, direct)

    # encode_reference: a full batch, and one reference (padded to 2 replicas).
    vectors = parallel.encode_reference(references)
    vectors_single = single.encode_reference(references)
    one_vector = parallel.encode_reference(references[:1])
    result["encode_shapes"] = [list(v.shape) for v in vectors]
    result["encode_one_shapes"] = [list(v.shape) for v in one_vector]
    result["encode_max_diff"] = max(array_diff(a, b) for a, b in zip(vectors, vectors_single))
    result["encode_one_max_diff"] = max(array_diff(a[:1], b)
                                        for a, b in zip(vectors_single, one_vector))

    reused = parallel.detect_with_reference(vectors, queries)
    result["reuse_vs_single_detect"] = compare_detections(direct_single, reused)
    result["reuse_vs_detect"] = compare_detections(direct, reused)
    # One encoded reference broadcast over both queries.
    shared = parallel.detect_with_reference(one_vector, queries)
    shared_single = single.detect([references[0], references[0]], queries)
    result["broadcast_vs_single_detect"] = compare_detections(shared_single, shared)

    # Queries encoded once (the evaluation's path): two, and one padded to 2 replicas.
    encoded = parallel.encode_queries(queries)
    (alone,) = parallel.encode_queries(queries[1:])
    result["encoded_query_levels_max_diff"] = max(
        array_diff(a, b) for a, b in zip(alone["levels"], encoded[1]["levels"]))
    result["encoded_vs_single_detect"] = compare_detections(
        direct_single, parallel.detect_with_encoded(encoded, vectors))

    # run_graph (a sub-model past the per-image ProposalLayer).
    outputs = lambda m: [("rois", m.inner_model.get_layer("ROI").output)]  # noqa: E731
    rois_two = parallel.run_graph(queries, outputs(parallel), targets=references)["rois"]
    rois_one = single.run_graph(queries, outputs(single), targets=references)["rois"]
    result["run_graph_shapes"] = [list(rois_one.shape), list(rois_two.shape)]
    result["run_graph_max_diff"] = array_diff(rois_one, rois_two)
    return result


def main(result_path: str, work_dir: str) -> None:
    keras.utils.set_random_seed(0)
    dataset = load_dataset(work_dir)
    results = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}
    stopwatch = Stopwatch()
    results["train"], trained = check_training(dataset, work_dir)
    stopwatch.lap("train")
    results["losses"] = check_losses(dataset, work_dir)
    stopwatch.lap("losses")
    checkpoint = results["train"]["checkpoint"]
    results["checkpoint"], single = check_checkpoint(trained, checkpoint, dataset, work_dir)
    stopwatch.lap("checkpoint")
    results["inference"] = check_inference(single, checkpoint, dataset, work_dir)
    stopwatch.lap("inference")
    results["seconds"] = stopwatch.seconds
    write_report(result_path, results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
