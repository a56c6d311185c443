"""Multi-replica Mask R-CNN checks, run in a fresh process on 2 logical CPU devices.

Logical devices must be configured before TensorFlow initialises, so
tests/mrcnn/test_parallel_model.py runs this file as a script:

    python tests/helpers/parallel_check.py RESULT_JSON WORK_DIR

It measures (it does not judge; the test asserts on the JSON it writes):
  errors    GPU_COUNT=3 with 2 devices, ParallelModel(model, 3), uneven batches,
            models ParallelModel cannot rebuild (subclassed, layer without config).
  train     MaskRCNN(GPU_COUNT=2, IMAGES_PER_GPU=1).train(): wrapper, mirrored
            variables, 2 steps from a DataGenerator, the checkpoint written.
  checkpoints  that checkpoint loaded into a single-device inference model; a
            single-device checkpoint loaded into a 2-replica inference model; both
            inference models' outputs on the same batch.
  losses / sgd  one device x 2 images vs 2 replicas x 1 image, same weights, same
            fixed batch: each loss component (evaluate) and every weight after one
            SGD step (train_on_batch).
  clone     ParallelModel(a model built outside the strategy, 2): rebuilt, mirrored,
            same weights, and one training step equal to the 2-replica model's.

Determinism of the loss comparison, by design (see mrcnn/targets.py,
detection_targets_graph): USE_RPN_ROIS=False and every image gets 4 ROIs with
IoU >= 0.5 to a ground-truth box and 4 with IoU 0; TRAIN_ROIS_PER_IMAGE = 8 and
ROI_POSITIVE_RATIO = 0.5 make the quotas int(8 * 0.5) = 4 positives and
int(2 * 4) - 4 = 4 negatives, so every ROI is kept and tf.random.shuffle only
permutes them; the losses are means over ROIs, which ignore order. RPN targets are
fixed inputs. Each image has the same number of positive/negative anchors and ROIs,
so the mean over the batch on one device equals the mean of the two replicas'
per-image means (Matterport's ParallelModel averaged the towers' losses too).
TRAIN_BN is False, so BatchNorm uses its moving statistics in both set-ups.
"""
from __future__ import annotations

import os
import sys

from tests.helpers.distributed import use_logical_cpus

use_logical_cpus(2)  # before anything creates the TensorFlow runtime

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn import model as modellib  # noqa: E402
from mrcnn import utils  # noqa: E402
from mrcnn import weights as weights_io  # noqa: E402
from mrcnn.data import DataGenerator  # noqa: E402
from mrcnn.parallel_model import ParallelModel, get_strategy  # noqa: E402
from tests.helpers.rect_dataset import ShapesDataset, make_config  # noqa: E402
from tests.helpers.distributed import (Stopwatch, copy_weights, max_diff,  # noqa: E402
                                       max_replica_diff, snapshot, training_report,
                                       variable_kinds, write_report)

LEARNING_RATE = 0.05


def error_message(fn) -> dict:
    """The type and text of the exception fn raises (the test checks them)."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return {"raised": type(e).__name__, "message": str(e)}
    return {"raised": None, "message": ""}


############################################################
#  Checks
############################################################

def check_errors(work_dir: str) -> dict:
    def three_gpus():
        modellib.MaskRCNN("training", make_config(3, 1), work_dir)

    def wrap_three():
        ParallelModel(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), 3)

    def uneven_batch():
        wrapped = ParallelModel(
            keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), 2)
        wrapped.predict_on_batch(np.zeros((3, 2), np.float32))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

    class NoConfig(keras.layers.Layer):  # get_config cannot rebuild it
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def call(self, x):
            return x * self.factor

    def unclonable():
        inputs = keras.Input((2,))
        ParallelModel(keras.Model(inputs, NoConfig(3.0)(inputs)), 2)

    return {"gpu_count_3": error_message(three_gpus),
            "subclassed": error_message(lambda: ParallelModel(Subclassed(), 2)),
            "unclonable": error_message(unclonable),
            "parallel_model_3": error_message(wrap_three),
            "strategy_0": error_message(lambda: get_strategy(0)),
            "uneven_batch": error_message(uneven_batch)}


def check_training(dataset, work_dir: str) -> tuple[dict, modellib.MaskRCNN]:
    model = modellib.MaskRCNN("training", make_config(2, 1), work_dir)
    before = snapshot(model.inner_model)
    history = model.train(dataset, dataset, LEARNING_RATE, epochs=1, layers="all")
    result = training_report(model, before, history, model.find_last())
    return result, model


def check_checkpoints(trained: modellib.MaskRCNN, checkpoint: str, dataset,
                      work_dir: str) -> dict:
    trained_values = snapshot(trained.inner_model)
    single = modellib.MaskRCNN("inference", make_config(1, 2), work_dir)
    report = single.load_weights(checkpoint, by_name=True)
    single_values = snapshot(single.keras_model)
    result = {
        "to_single_loaded": len(report.loaded),
        "to_single_missing": list(report.missing_in_file),
        "to_single_keys": len(single_values),
        "to_single_max_diff": max_diff(single_values, trained_values),
    }
    # Vice versa: new values (so nothing passes by accident), saved on one device.
    rng = np.random.default_rng(1)
    for variable in weights_io.weight_map(single.keras_model).values():
        variable.assign(np.asarray(variable.numpy())
                        + rng.normal(0, 0.01, variable.shape).astype("float32"))
    single_values = snapshot(single.keras_model)
    path = os.path.join(work_dir, "single_device.h5")
    single.save_weights(path)
    parallel = modellib.MaskRCNN("inference", make_config(2, 1), work_dir)
    report = parallel.load_weights(path, by_name=True)
    result.update({
        "to_parallel_loaded": len(report.loaded),
        "to_parallel_missing": list(report.missing_in_file),
        "to_parallel_keys": len(weights_io.weight_map(parallel.inner_model)),
        "to_parallel_max_diff": max_replica_diff(parallel.inner_model, single_values),
    })
    images = [dataset.load_image(i) for i in (2, 3)]
    molded, metas, _ = single.mold_inputs(images)
    anchors = np.broadcast_to(single.get_anchors(molded[0].shape),
                              (len(images),) + single.get_anchors(molded[0].shape).shape)
    one = single.keras_model.predict_on_batch([molded, metas, anchors])
    two = parallel.keras_model.predict_on_batch([molded, metas, anchors])
    result["outputs_shapes"] = [[list(a.shape), list(b.shape)] for a, b in zip(one, two)]
    result["outputs_max_diff"] = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                  for a, b in zip(one, two)]
    # Magnitude of each output: its float32 rounding (which depends on the kernels
    # and the per-replica batch shape) scales with it.
    result["outputs_max_abs"] = [float(np.max(np.abs(np.asarray(a)))) for a in one]
    result["detect_results"] = len(parallel.detect(images))
    return result


def fixed_batch(dataset, config) -> list[np.ndarray]:
    """Images 0 and 1 with balanced RPN targets and hand-made ROIs (module docstring)."""
    (images, metas, rpn_match, rpn_bbox, gt_class_ids, gt_boxes,
     gt_masks) = DataGenerator(dataset, config, shuffle=False)[0][0]
    rpn_match = rpn_match.copy()
    rpn_bbox = rpn_bbox.copy()
    # The same number of positive and of negative anchors in both images.
    positives = min(int(np.sum(m == 1)) for m in rpn_match)
    negatives = min(int(np.sum(m == -1)) for m in rpn_match)
    for b in range(len(rpn_match)):
        rpn_match[b, np.where(rpn_match[b, :, 0] == 1)[0][positives:]] = 0
        rpn_match[b, np.where(rpn_match[b, :, 0] == -1)[0][negatives:]] = 0
        rpn_bbox[b, positives:] = 0  # rows follow the positive anchors' order
    rois = []
    corners = [[0, 0, 6, 6], [58, 58, 64, 64], [0, 58, 6, 64], [58, 0, 64, 6]]
    for b in range(len(images)):
        boxes = gt_boxes[b][gt_class_ids[b] > 0]
        positive = [box + shift for box in boxes for shift in ([1, 1, 1, 1], [-1, 0, 0, 1])]
        image_rois = np.array(positive + corners, np.int32)
        iou = utils.compute_overlaps(image_rois.astype(np.float32), boxes.astype(np.float32))
        if not (np.all(iou[:4].max(1) >= 0.5) and np.all(iou[4:].max(1) == 0)):
            raise RuntimeError(f"hand-made ROIs are not 4 positives + 4 negatives: {iou}")
        rois.append(image_rois)
    return [images, metas, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks,
            np.stack(rois)]


def check_losses_and_sgd(dataset, work_dir: str) -> tuple[dict, dict, dict]:
    overrides = dict(USE_RPN_ROIS=False, GRADIENT_CLIP_NORM=0.5)
    single = modellib.MaskRCNN("training", make_config(1, 2, **overrides), work_dir)
    parallel = modellib.MaskRCNN("training", make_config(2, 1, **overrides), work_dir)
    copy_weights(single.keras_model, parallel.inner_model)
    start = snapshot(single.keras_model)
    batch = fixed_batch(dataset, single.config)
    for m in (single, parallel):
        m.compile(LEARNING_RATE, m.config.LEARNING_MOMENTUM)
    result = {
        "single": single.keras_model.test_on_batch(batch, return_dict=True),
        "parallel": parallel.keras_model.test_on_batch(batch, return_dict=True),
    }
    # Step 1, clipping active: GRADIENT_CLIP_NORM clips the global norm of the whole
    # batch's gradient (Keras 2 / Matterport semantics), not each replica's share.
    single_step = single.keras_model.train_on_batch(batch, return_dict=True)
    parallel_step = parallel.keras_model.train_on_batch(batch, return_dict=True)
    after_single = snapshot(single.keras_model)
    after_parallel = snapshot(parallel.inner_model)
    # First SGD step with momentum: w1 - w0 = -lr * clip(gradient), so the update's
    # global norm is lr * clip when the gradient was clipped.
    update_norm = float(np.sqrt(sum(np.sum((after_single[k] - start[k]) ** 2)
                                    for k in start))) / LEARNING_RATE
    # Step 2, no clipping (fresh optimizer): a missing or doubled 1/replicas scaling,
    # which global clipping would hide, shows here.
    for m in (single, parallel):
        m.config.GRADIENT_CLIP_NORM = 1e9
        m.compile(LEARNING_RATE, m.config.LEARNING_MOMENTUM)
    single.keras_model.train_on_batch(batch, return_dict=True)
    parallel.keras_model.train_on_batch(batch, return_dict=True)
    after2_single = snapshot(single.keras_model)
    after2_parallel = snapshot(parallel.inner_model)
    sgd = {
        "max_diff": max_diff(after_single, after_parallel),
        "replica_max_diff": max_replica_diff(parallel.inner_model, after2_single),
        "max_change": max_diff(after_single, start),
        "clip": overrides["GRADIENT_CLIP_NORM"],
        "clipped_update_norm": update_norm,
        "unclipped_max_diff": max_diff(after2_single, after2_parallel),
        "unclipped_max_change": max_diff(after2_single, after_single),
        "single_logs": single_step, "parallel_logs": parallel_step,
    }
    clone = check_clone(start, batch, work_dir, after_parallel, parallel_step)
    return result, sgd, clone


def check_clone(start: dict, batch: list, work_dir: str, expected_after: dict,
                expected_logs: dict) -> dict:
    """ParallelModel around a model built outside any strategy scope."""
    config = make_config(1, 1, USE_RPN_ROIS=False, GRADIENT_CLIP_NORM=0.5)
    plain = modellib.MaskRCNN("training", config, work_dir)
    for key, variable in weights_io.weight_map(plain.keras_model).items():
        variable.assign(start[key])
    wrapped = ParallelModel(plain.keras_model, 2)
    inner = wrapped.inner_model
    result = {
        "rebuilt": inner is not plain.keras_model,
        "class": type(inner).__name__,
        "loss_settings_equal": inner.loss_settings() == plain.keras_model.loss_settings(),
        "variable_kinds": variable_kinds(inner),
        "weights_max_diff": max_replica_diff(inner, start),
    }
    # An optimizer created outside the scope, as MaskRCNN.compile does.
    optimizer = keras.optimizers.SGD(learning_rate=LEARNING_RATE, momentum=0.9,
                                     global_clipnorm=config.GRADIENT_CLIP_NORM)
    wrapped.compile(optimizer=optimizer, jit_compile=False)
    logs = wrapped.train_on_batch(batch, return_dict=True)
    result["logs"] = logs
    result["logs_max_diff"] = max(abs(logs[k] - expected_logs[k]) for k in expected_logs)
    result["after_max_diff"] = max_replica_diff(inner, expected_after)
    return result


def main(result_path: str, work_dir: str) -> None:
    keras.utils.set_random_seed(0)
    dataset = ShapesDataset()
    dataset.load()
    dataset.prepare()
    results = {"logical_cpus": len(tf.config.list_logical_devices("CPU"))}
    stopwatch = Stopwatch()
    results["errors"] = check_errors(work_dir)
    stopwatch.lap("errors")
    results["train"], trained = check_training(dataset, work_dir)
    stopwatch.lap("train")
    results["checkpoints"] = check_checkpoints(trained, results["train"]["checkpoint"],
                                               dataset, work_dir)
    stopwatch.lap("checkpoints")
    results["losses"], results["sgd"], results["clone"] = check_losses_and_sgd(
        dataset, work_dir)
    stopwatch.lap("losses_sgd_clone")
    results["seconds"] = stopwatch.seconds
    write_report(result_path, results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
