"""mrcnn.targets_ops (DetectionTargetLayer's sampling under JAX and PyTorch) against
Matterport's TensorFlow graph (mrcnn.targets.sample_detection_targets).

The two draw different random subsets, so a comparison feeds the ROIs that the ops
version chose back to TensorFlow's graph as the only proposals: TensorFlow then keeps
every one of them (they fit its quotas exactly), and each row's class, deltas and mask
must be the same (rows compared as sets within the positive and the negative block).
The counts are checked against the quotas worked out by hand, with crowds, zero
padding, no gt box at all, mini masks and full-image masks. Run here under TensorFlow,
and again through the layer under JAX and PyTorch in fresh interpreters."""
from __future__ import annotations


import numpy as np
import pytest
import tensorflow as tf

from mrcnn.targets import sample_detection_targets
from mrcnn.targets_ops import batched_overlaps, sample_detection_targets_ops
from tests.helpers.processes import last_line, needs_backend, run_under_backend

ROIS, RATIO, STD, MASK = 12, 0.33, [0.1, 0.1, 0.2, 0.2], [6, 6]
GT = 5  # gt slots: 2 objects, 1 crowd, 2 zero padding (image 1: none at all)
SIZE = 32  # full-image masks: SIZE x SIZE


def settings(mini: bool) -> dict:
    return dict(train_rois_per_image=ROIS, roi_positive_ratio=RATIO, bbox_std_dev=STD,
                mask_shape=MASK, use_mini_mask=mini)


def target_case(mini: bool) -> tuple:
    """2 images of 40 proposals (the last 5 zero padding); image 0 has 2 gt objects and a
    crowd, image 1 none (no positives: no negatives either, Matterport's quota)."""
    rng = np.random.default_rng(3 if mini else 4)
    gt_boxes = np.zeros((2, GT, 4), np.float32)
    gt_boxes[0, :3] = [[0.1, 0.1, 0.45, 0.5], [0.5, 0.4, 0.9, 0.95], [0.05, 0.6, 0.3, 0.9]]
    gt_class_ids = np.zeros((2, GT), np.int32)
    gt_class_ids[0, :3] = [1, 3, -2]
    proposals = np.zeros((2, 40, 4), np.float32)
    for i in range(2):
        near = np.repeat(gt_boxes[0, :2], 6, axis=0) + rng.normal(0, 0.03, (12, 4))
        far = np.sort(rng.uniform(0, 1, (23, 2, 2)), axis=1).transpose(0, 2, 1).reshape(23, 4)
        proposals[i, :35] = np.clip(np.concatenate([near, far]), 0, 1)[rng.permutation(35)]
    mask_hw = (8, 9) if mini else (SIZE, SIZE)
    gt_masks = rng.uniform(size=(2, *mask_hw, GT)) > 0.4
    return proposals, gt_class_ids, gt_boxes, gt_masks


def quotas(proposals, gt_class_ids, gt_boxes) -> list[tuple[int, int]]:
    """(positives, negatives) each image must get, from the rules written out in numpy."""
    counts = []
    for p, c, b in zip(proposals, gt_class_ids, gt_boxes):
        p = p[np.abs(p).sum(1) > 0]
        iou = np.asarray(batched_overlaps(p[None], b[None]))[0]
        objects, crowds = c > 0, c < 0
        best = iou[:, objects].max(1) if objects.any() else np.full(len(p), -1.0)
        crowd = iou[:, crowds].max(1) if crowds.any() else np.zeros(len(p))
        positives = min(int(np.sum(best >= 0.5)), int(ROIS * RATIO))
        wanted = int(np.float32(1 / RATIO) * np.float32(positives)) - positives
        negatives = min(int(np.sum((best < 0.5) & (crowd < 0.001))), wanted)
        counts.append((positives, negatives))
    return counts


def check_against_tensorflow(inputs: tuple, outputs: tuple, mini: bool) -> None:
    """Each image's rows, fed back to TensorFlow's graph, get the same targets."""
    proposals, gt_class_ids, gt_boxes, gt_masks = inputs
    rois, class_ids, deltas, masks = (np.asarray(o) for o in outputs)
    assert rois.shape == (2, ROIS, 4) and class_ids.shape == (2, ROIS)
    assert deltas.shape == (2, ROIS, 4) and masks.shape == (2, ROIS, *MASK)
    for i, (positives, negatives) in enumerate(quotas(proposals, gt_class_ids, gt_boxes)):
        used = np.abs(rois[i]).sum(1) > 0
        assert int(used.sum()) == positives + negatives, i
        assert np.all(used[:positives + negatives]) and not np.any(used[positives + negatives:])
        assert np.all(class_ids[i, :positives] > 0) and np.all(class_ids[i, positives:] == 0)
        assert np.all(deltas[i, positives:] == 0) and np.all(masks[i, positives:] == 0)
        if not used.any():
            continue
        want = [np.asarray(t) for t in sample_detection_targets(
            tf.constant(rois[i][used]), gt_class_ids[i], gt_boxes[i], gt_masks[i],
            **settings(mini))]
        for block in (slice(0, positives), slice(positives, positives + negatives)):
            got_order = np.lexsort(rois[i, block].T[::-1])
            want_order = np.lexsort(want[0][block].T[::-1])
            for name, g, w in zip(["rois", "class_ids", "deltas", "masks"],
                                  (rois[i], class_ids[i], deltas[i], masks[i]), want):
                np.testing.assert_allclose(g[block][got_order], w[block][want_order],
                                           atol=1e-5, rtol=1e-5, err_msg=f"{i} {name}")


@pytest.mark.parametrize("mini", [True, False])
def test_the_ops_sampling_gives_tensorflows_targets(mini):
    inputs = target_case(mini)
    # Image 0: 3 of its 12-13 positive candidates (int(12 x 0.33)), then
    # int(3 / 0.33) - 3 = 6 of its 16 negative candidates; image 1: none (no gt box).
    assert quotas(*inputs[:3]) == [(3, 6), (0, 0)]
    outputs = sample_detection_targets_ops(*inputs, **settings(mini), seed=7)
    check_against_tensorflow(inputs, outputs, mini)
    assert np.asarray(outputs[3])[0, :4].any()  # some mask pixels are set


def test_the_sampling_is_random_over_the_candidates():
    """Other seeds draw other subsets: over 60 draws every positive candidate of image 0
    (13, 3 drawn at a time) is drawn, and nothing else is."""
    inputs = target_case(True)
    proposals, _, gt_boxes, _ = inputs
    iou = np.asarray(batched_overlaps(proposals[:1], gt_boxes[:1]))[0]
    candidates = {tuple(np.round(r, 6)) for r in proposals[0][iou[:, :2].max(1) >= 0.5]}
    assert len(candidates) == 13
    drawn = set()
    for seed in range(60):
        rois = np.asarray(sample_detection_targets_ops(*inputs, **settings(True),
                                                       seed=seed)[0])
        drawn |= {tuple(np.round(r, 6)) for r in rois[0, :3]}
    assert drawn == candidates


def test_batched_overlaps_by_hand():
    boxes1 = np.array([[[0, 0, 2, 2], [0, 0, 0, 0]]], np.float32)
    boxes2 = np.array([[[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]]], np.float32)
    got = np.asarray(batched_overlaps(boxes1, boxes2))
    np.testing.assert_allclose(got, [[[1 / 7, 1.0, 0.0], [0.0, 0.0, 0.0]]], rtol=1e-6)


OTHER_BACKEND_SCRIPT = r"""
import sys
import numpy as np
import keras
from mrcnn.targets import DetectionTargetLayer
from tests.mrcnn.test_targets_ops import ROIS, RATIO, STD, MASK, target_case
out = {}
for mini in (True, False):
    layer = DetectionTargetLayer(images_per_gpu=2, train_rois_per_image=ROIS,
                                 roi_positive_ratio=RATIO, bbox_std_dev=STD,
                                 mask_shape=MASK, use_mini_mask=mini)
    outputs = layer(list(target_case(mini)))
    assert not layer.weights  # the seed state is no weight: checkpoints stay the same
    for name, value in zip(["rois", "class_ids", "deltas", "masks"], outputs):
        out[f"{name}_{mini}"] = keras.ops.convert_to_numpy(value)
np.savez(sys.argv[1], **out)
print(keras.backend.backend())
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_layer_under_another_backend_gives_tensorflows_targets(tmp_path, backend):
    needs_backend(backend)
    script = tmp_path / "targets_other_backend.py"
    script.write_text(OTHER_BACKEND_SCRIPT)
    done = run_under_backend([script, tmp_path / "out.npz"], backend)
    assert last_line(done) == backend
    got = np.load(tmp_path / "out.npz")
    for mini in (True, False):
        outputs = tuple(got[f"{name}_{mini}"] for name in ["rois", "class_ids", "deltas",
                                                           "masks"])
        check_against_tensorflow(target_case(mini), outputs, mini)
