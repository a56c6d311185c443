"""mrcnn.losses_ops (the loss graphs JAX and PyTorch run) against mrcnn.losses'
TensorFlow graphs: every loss on random batches with neutral and padded anchors,
inactive classes, background-only images and a batch with no positive at all (0, not
NaN); the gradients of the two versions; then the same numbers from each ``*_graph``
under JAX and PyTorch in fresh interpreters (where they dispatch to losses_ops)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import losses, losses_ops
from siamese_mrcnn.losses import siamese_mrcnn_class_loss_graph
from tests.helpers.processes import last_line, needs_backend, run_under_backend

BATCH, ANCHORS, ROWS, ROIS, CLASSES, MASK = 2, 40, 12, 7, 4, 5


def loss_cases() -> list[dict]:
    """Inputs of every loss: a mixed batch, then one with no positive anchor or ROI."""
    rng = np.random.default_rng(0)
    cases = []
    for positives in (True, False):
        match = rng.choice([-1, 0, 1], size=(BATCH, ANCHORS, 1), p=[0.4, 0.4, 0.2])
        if not positives:
            match[match == 1] = -1
        match[1, :, 0] = np.where(match[1, :, 0] == 1, 0, match[1, :, 0])  # image 1: none
        class_ids = rng.integers(0, CLASSES, size=(BATCH, ROIS))
        class_ids[1, -3:] = 0  # zero padding
        if not positives:
            class_ids[:] = 0
        active = np.ones((BATCH, CLASSES), np.int32)
        active[:, 2] = 0  # a class of another data set
        cases.append({
            "rpn_match": match.astype(np.int32),
            "rpn_class_logits": rng.normal(size=(BATCH, ANCHORS, 2)).astype(np.float32),
            "rpn_target_bbox": rng.normal(size=(BATCH, ROWS, 4)).astype(np.float32),
            "rpn_bbox": (rng.normal(size=(BATCH, ANCHORS, 4)) * 2).astype(np.float32),
            "class_ids": class_ids.astype(np.int32),
            "class_logits": (rng.normal(size=(BATCH, ROIS, CLASSES)) * 3).astype(np.float32),
            "active": active,
            "target_bbox": rng.normal(size=(BATCH, ROIS, 4)).astype(np.float32),
            "pred_bbox": (rng.normal(size=(BATCH, ROIS, CLASSES, 4)) * 2).astype(np.float32),
            "target_masks": (rng.uniform(size=(BATCH, ROIS, MASK, MASK)) > 0.5).astype(
                np.float32),
            "pred_masks": rng.uniform(0, 1, (BATCH, ROIS, MASK, MASK, CLASSES)).astype(
                np.float32),
        })
    cases[0]["pred_masks"][0, 0, 0, 0, :] = [0.0, 1.0, 0.0, 1.0]  # clipped at 1e-7
    return cases


def graph_losses(c: dict) -> dict:
    """Every loss through mrcnn.losses' public graphs (whichever backend runs)."""
    return {
        "rpn_class": losses.rpn_class_loss_graph(c["rpn_match"], c["rpn_class_logits"]),
        "rpn_bbox": losses.rpn_bbox_loss_graph(BATCH, c["rpn_target_bbox"], c["rpn_match"],
                                               c["rpn_bbox"]),
        "mrcnn_class": losses.mrcnn_class_loss_graph(c["class_ids"], c["class_logits"],
                                                     c["active"]),
        "mrcnn_bbox": losses.mrcnn_bbox_loss_graph(c["target_bbox"], c["class_ids"],
                                                   c["pred_bbox"]),
        "mrcnn_mask": losses.mrcnn_mask_loss_graph(c["target_masks"], c["class_ids"],
                                                   c["pred_masks"]),
        "siamese_class": siamese_mrcnn_class_loss_graph(c["class_ids"], c["class_logits"]),
    }


def ops_losses(c: dict) -> dict:
    return {
        "rpn_class": losses_ops.rpn_class_loss(c["rpn_match"], c["rpn_class_logits"]),
        "rpn_bbox": losses_ops.rpn_bbox_loss(c["rpn_target_bbox"], c["rpn_match"],
                                             c["rpn_bbox"]),
        "mrcnn_class": losses_ops.mrcnn_class_loss(c["class_ids"], c["class_logits"],
                                                   c["active"]),
        "mrcnn_bbox": losses_ops.mrcnn_bbox_loss(c["target_bbox"], c["class_ids"],
                                                 c["pred_bbox"]),
        "mrcnn_mask": losses_ops.mrcnn_mask_loss(c["target_masks"], c["class_ids"],
                                                 c["pred_masks"]),
        "siamese_class": losses_ops.siamese_class_loss(c["class_ids"], c["class_logits"]),
    }


def as_floats(values: dict) -> dict:
    return {k: float(np.asarray(v)) for k, v in values.items()}


@pytest.mark.parametrize("case", [0, 1])
def test_losses_ops_equal_the_tensorflow_graphs(case):
    c = loss_cases()[case]
    want, got = as_floats(graph_losses(c)), as_floats(ops_losses(c))
    assert set(got) == set(want)
    for name in want:
        assert np.isfinite(got[name]), name
        assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-6), name
    if case == 1:  # no positive anchor or ROI: the positives' losses are 0
        assert got["rpn_bbox"] == got["mrcnn_bbox"] == got["mrcnn_mask"] == 0.0
    else:
        assert min(got.values()) > 0


def test_rpn_bbox_loss_by_hand():
    """Image 0's positives are anchors 1 and 3 (target rows 0 and 1), image 1's anchor 0
    (row 0): the mean of 3 x 4 Smooth-L1 terms."""
    match = np.array([[[0], [1], [-1], [1]], [[1], [0], [0], [-1]]], np.int32)
    target = np.zeros((2, 3, 4), np.float32)
    target[0, 0], target[0, 1], target[1, 0] = 0.5, 3.0, -1.0
    target[0, 2] = 100.0  # a padding row: never used
    pred = np.zeros((2, 4, 4), np.float32)
    # |d| = 0.5 -> 0.125 (x4); |d| = 3 -> 2.5 (x4); |d| = 1 -> 0.5 (x4)
    expected = (4 * 0.125 + 4 * 2.5 + 4 * 0.5) / 12
    assert float(losses_ops.rpn_bbox_loss(target, match, pred)) == pytest.approx(expected)
    assert float(losses.rpn_bbox_loss_graph(2, target, match, pred)) == pytest.approx(expected)


def test_losses_ops_gradients_equal_the_tensorflow_graphs():
    c = {k: tf.constant(v) for k, v in loss_cases()[0].items()}
    names = ["rpn_class_logits", "rpn_bbox", "class_logits", "pred_bbox", "pred_masks"]
    grads = []
    for compute in (graph_losses, ops_losses):
        with tf.GradientTape() as tape:
            for name in names:
                tape.watch(c[name])
            total = tf.add_n([tf.cast(v, tf.float32) for v in compute(c).values()])
        grads.append(tape.gradient(total, [c[name] for name in names]))
    for name, want, got in zip(names, *grads):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-7,
                                   err_msg=name)
        assert np.any(want.numpy() != 0), name


OTHER_BACKEND_SCRIPT = r"""
import json, sys
import numpy as np
import keras
from tests.mrcnn.test_losses_ops import graph_losses, loss_cases
out = [{k: float(keras.ops.convert_to_numpy(v)) for k, v in graph_losses(c).items()}
       for c in loss_cases()]
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
print(keras.backend.backend())
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_loss_graphs_under_another_backend_equal_tensorflow(tmp_path, backend):
    needs_backend(backend)
    script = tmp_path / "losses_other_backend.py"
    script.write_text(OTHER_BACKEND_SCRIPT)
    done = run_under_backend([script, tmp_path / "out.json"], backend)
    assert last_line(done) == backend
    got = json.loads((tmp_path / "out.json").read_text())
    for case, values in zip(loss_cases(), got):
        want = as_floats(graph_losses(case))  # this process: TensorFlow's graphs
        assert set(values) == set(want)
        for name in want:
            assert values[name] == pytest.approx(want[name], rel=1e-5, abs=1e-6), name
