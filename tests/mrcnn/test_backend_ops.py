"""mrcnn.backend_ops: the keras.ops implementations (what JAX and PyTorch run) against
TensorFlow's kernels, on random boxes and edge cases: boxes partly or wholly outside
the map, empty and flipped boxes, 1x1 crops, more outputs asked than boxes, equal
scores. Run here under TensorFlow, and again under JAX and PyTorch in fresh
interpreters."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.backend_ops import (crop_and_resize, crop_and_resize_ops, greedy_keep,
                               non_max_suppression_ops, non_max_suppression_padded,
                               pyramid_crop_and_resize)
from tests.helpers.processes import last_json, needs_backend, run_under_backend


def crop_cases() -> list:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 13, 17, 5)).astype(np.float32)
    inside = np.sort(rng.uniform(0, 1, (12, 2, 2)), axis=1).transpose(0, 2, 1).reshape(12, 4)
    boxes = np.concatenate([
        inside[:, [0, 1, 2, 3]],
        [[-0.3, -0.2, 0.6, 1.4], [1.1, 1.2, 1.5, 1.9], [-0.5, -0.5, -0.1, -0.2]],  # outside
        [[0.4, 0.3, 0.4, 0.8], [0.5, 0.5, 0.5, 0.5]],  # empty
        [[0.9, 0.8, 0.1, 0.2]],  # flipped
        [[0.0, 0.0, 1.0, 1.0]],  # the whole map: samples on the last pixel
    ]).astype(np.float32)
    indices = (np.arange(len(boxes)) % 2).astype(np.int32)
    return [(images, boxes, indices, size) for size in ((7, 7), (1, 1), (14, 3))]


def nms_cases() -> list:
    rng = np.random.default_rng(1)
    centres = rng.uniform(0, 1, (60, 2))
    sizes = rng.uniform(0.05, 0.4, (60, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1)[:, [0, 1, 2, 3]]
    boxes = boxes.astype(np.float32)
    scores = rng.permutation(60).astype(np.float32) / 60  # distinct
    edge = boxes.copy()
    edge[5] = [0.3, 0.3, 0.3, 0.6]  # empty
    edge[6] = edge[7][[2, 3, 0, 1]]  # box 7 flipped
    edge[8] = edge[9]  # a duplicate
    ties = scores.copy()
    ties[::3] = 0.5  # equal scores among overlapping boxes too
    return [(boxes, scores, 10, 0.5), (boxes, scores, 100, 0.3), (boxes, scores, 60, 0.0),
            (edge, scores, 30, 0.7), (boxes, ties, 40, 0.5), (boxes[:1], scores[:1], 5, 0.5)]


def subset_case() -> tuple:
    """(boxes, scores, size, threshold, valid): NMS among the `valid` boxes only (the
    detection layer's per-class NMS)."""
    boxes, scores, _, _ = nms_cases()[0]
    return boxes, scores, 20, 0.4, np.random.default_rng(3).random(len(boxes)) < 0.5


def tf_subset_nms(boxes, scores, size, threshold, valid) -> np.ndarray:
    """TensorFlow's NMS of the gathered valid boxes, as indices into all boxes."""
    subset = np.flatnonzero(valid)
    kept = tf.image.non_max_suppression(boxes[subset], scores[subset], size, threshold)
    return subset[kept.numpy()]


def assert_padded_equal(got, want) -> None:
    """got: kept indices then -1 padding; want: the kept indices."""
    got = np.asarray(got)
    assert got[:len(want)].tolist() == want.tolist() and np.all(got[len(want):] == -1)


def tf_nms(boxes, scores, size, threshold) -> np.ndarray:
    kept = tf.image.non_max_suppression(boxes, scores, size, threshold).numpy()
    return np.concatenate([kept, -np.ones(size - len(kept), np.int32)])


@pytest.mark.parametrize("case", range(3))
def test_crop_and_resize_ops_equals_tensorflow(case):
    images, boxes, indices, size = crop_cases()[case]
    want = tf.image.crop_and_resize(images, boxes, indices, size).numpy()
    got = np.asarray(crop_and_resize_ops(images, boxes, indices, size))
    assert got.shape == want.shape == (len(boxes), *size, 5)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(crop_and_resize(images, boxes, indices, size)),
                                  want)  # the TensorFlow backend's path is TF's kernel
    assert np.all(want[13] == 0)  # wholly outside: zeros


def pyramid_case() -> tuple:
    """(maps, boxes, indices, levels, size): three maps of different sizes, the crop
    cases' boxes (edge cases included) spread over them."""
    rng = np.random.default_rng(4)
    maps = [rng.normal(size=(2, h, w, 5)).astype(np.float32)
            for h, w in ((13, 17), (7, 9), (1, 4))]
    _, boxes, indices, _ = crop_cases()[0]
    levels = (np.arange(len(boxes)) * 7 % 3).astype(np.int32)
    return maps, boxes, indices, levels, (4, 3)


def tf_pyramid_crops(maps, boxes, indices, levels, size) -> np.ndarray:
    """TensorFlow's crop of each box from its own map."""
    return np.stack([tf.image.crop_and_resize(maps[level], boxes[i:i + 1], indices[i:i + 1],
                                              size).numpy()[0]
                     for i, level in enumerate(levels)])


def test_pyramid_crop_equals_tensorflow_crop_of_each_box_from_its_map():
    maps, boxes, indices, levels, size = pyramid_case()
    assert set(levels.tolist()) == {0, 1, 2}
    want = tf_pyramid_crops(maps, boxes, indices, levels, size)
    got = np.asarray(pyramid_crop_and_resize(maps, boxes, indices, levels, size))
    assert got.shape == (len(boxes), *size, 5)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    # The same as crop_and_resize_ops of every map, then the crop of the box's level.
    every = np.stack([np.asarray(crop_and_resize_ops(m, boxes, indices, size)) for m in maps])
    np.testing.assert_allclose(got, every[levels, np.arange(len(boxes))], atol=1e-6)


@pytest.mark.parametrize("case", range(6))
def test_nms_ops_equals_tensorflow(case):
    boxes, scores, size, threshold = nms_cases()[case]
    want = tf_nms(boxes, scores, size, threshold)
    got, count = non_max_suppression_ops(boxes, scores, size, threshold)
    np.testing.assert_array_equal(np.asarray(got), want)
    assert int(count) == int(np.sum(want >= 0))
    padded, tf_count = non_max_suppression_padded(boxes, scores, size, threshold)
    np.testing.assert_array_equal(np.asarray(padded), want)
    assert int(tf_count) == int(count)


def greedy_nms(boxes, scores, size, threshold, valid=None) -> np.ndarray:
    """greedy_keep (PyTorch's NMS) padded as tf_nms: indices into boxes, then -1."""
    order = np.argsort(-scores, kind="stable")
    taking = np.ones(len(boxes), bool) if valid is None else valid[order]
    kept = order[greedy_keep(boxes[order], taking, threshold, size)]
    return np.concatenate([kept, -np.ones(size - len(kept), kept.dtype)])


@pytest.mark.parametrize("case", range(6))
def test_greedy_nms_equals_tensorflow(case):
    boxes, scores, size, threshold = nms_cases()[case]
    np.testing.assert_array_equal(greedy_nms(boxes, scores, size, threshold),
                                  tf_nms(boxes, scores, size, threshold))


def test_greedy_nms_of_a_subset_equals_nms_of_the_gathered_boxes():
    case = subset_case()
    assert_padded_equal(greedy_nms(*case), tf_subset_nms(*case))


def test_nms_keeps_the_lower_index_among_equal_scores():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0.5, 0.5, 1.5, 1.5]], np.float32)
    scores = np.array([0.7, 0.7, 0.7], np.float32)
    got, count = non_max_suppression_ops(boxes, scores, 3, 0.5)
    assert np.asarray(got).tolist() == tf_nms(boxes, scores, 3, 0.5).tolist() == [0, 2, -1]
    assert int(count) == 2


def test_nms_of_a_subset_equals_nms_of_the_gathered_boxes():
    boxes, scores, size, threshold, valid = subset_case()
    want = tf_subset_nms(boxes, scores, size, threshold, valid)
    got, count = non_max_suppression_ops(boxes, scores, size, threshold, valid=valid)
    assert int(count) == len(want)
    assert_padded_equal(got, want)


# The same comparisons under JAX and PyTorch: a fresh interpreter with KERAS_BACKEND set
# runs the ops on the cases and writes what it got; this process compares with
# TensorFlow. Under JAX the NMS is jit-compiled, once per distinct static argument.
OTHER_BACKEND_SCRIPT = r"""
import json, sys
import numpy as np
import keras
backend = keras.backend.backend()
from mrcnn.backend_ops import (crop_and_resize, non_max_suppression_ops,
                               non_max_suppression_padded, pyramid_crop_and_resize)
from tests.mrcnn.test_backend_ops import crop_cases, nms_cases, pyramid_case, subset_case
out = {}
for i, (images, boxes, indices, size) in enumerate(crop_cases()):
    out[f"crop{i}"] = np.asarray(keras.ops.convert_to_numpy(
        crop_and_resize(images, boxes, indices, size)))
out["pyramid"] = keras.ops.convert_to_numpy(pyramid_crop_and_resize(*pyramid_case()))
import mrcnn.backend_ops
# Under JAX twice: on the CPU's host callback, then on the fixed point that runs on an
# accelerator, each jit-compiled (tags "" and "fixed").
traces = {}
for tag in ([""] if backend != "jax" else ["", "fixed"]):
    mrcnn.backend_ops.JAX_CPU_HOST_NMS = tag != "fixed"
    nms = non_max_suppression_padded
    if backend == "jax":
        import jax
        nms = jax.jit(non_max_suppression_padded, static_argnums=(2, 3))
    for i, (boxes, scores, size, threshold) in enumerate(nms_cases()):
        kept, count = nms(boxes, scores, size, threshold)
        out[f"nms{tag}{i}"] = keras.ops.convert_to_numpy(kept)
        out[f"count{tag}{i}"] = keras.ops.convert_to_numpy(count)
    traces[tag] = nms._cache_size() if backend == "jax" else None
    boxes, scores, size, threshold, valid = subset_case()
    out[f"subset{tag}"] = keras.ops.convert_to_numpy(non_max_suppression_ops(
        boxes, scores, size, threshold, valid=valid)[0])
np.savez(sys.argv[1], **out)
print(json.dumps({"backend": backend, "traces": traces}))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_ops_under_another_backend_equal_tensorflow(tmp_path, backend):
    needs_backend(backend)
    script = tmp_path / "other_backend.py"
    script.write_text(OTHER_BACKEND_SCRIPT)
    info = last_json(run_under_backend([script, tmp_path / "out.npz"], backend))
    assert info["backend"] == backend
    got = np.load(tmp_path / "out.npz")
    for i, (images, boxes, indices, size) in enumerate(crop_cases()):
        want = tf.image.crop_and_resize(images, boxes, indices, size).numpy()
        np.testing.assert_allclose(got[f"crop{i}"], want, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got["pyramid"], tf_pyramid_crops(*pyramid_case()),
                               atol=1e-5, rtol=1e-5)
    tags = ["", "fixed"] if backend == "jax" else [""]
    assert set(info["traces"]) == set(tags)
    want_subset = tf_subset_nms(*subset_case())
    for tag in tags:
        for i, (boxes, scores, size, threshold) in enumerate(nms_cases()):
            want = tf_nms(boxes, scores, size, threshold)
            np.testing.assert_array_equal(got[f"nms{tag}{i}"], want,
                                          err_msg=f"nms case {i} {tag}")
            assert int(got[f"count{tag}{i}"]) == int(np.sum(want >= 0))
        assert_padded_equal(got[f"subset{tag}"], want_subset)
        if backend == "jax":  # one trace per distinct (size, threshold, shape), not per call
            distinct = len({(size, threshold, boxes.shape)
                            for boxes, _, size, threshold in nms_cases()})
            assert info["traces"][tag] == distinct


def test_tf_distribute_asks_for_the_tensorflow_backend(monkeypatch, tmp_path):
    """Under TensorFlow nothing is raised; under another backend a model that needs
    tf.distribute (GPU_COUNT > 1, multi-worker) is refused at once with the backend's
    name; one-device training is not."""
    import keras

    from mrcnn import backend_ops
    from mrcnn import model as modellib
    from tests.helpers.rect_dataset import make_config

    backend_ops.require_tensorflow("training")
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match=r"training needs the TensorFlow backend .*'jax'"):
        backend_ops.require_tensorflow("training")
    with pytest.raises(ValueError, match=r"GPU_COUNT=2 needs the TensorFlow backend .*'jax'"):
        modellib.MaskRCNN("training", make_config(2, 1), str(tmp_path))
    with pytest.raises(ValueError, match=r"DISTRIBUTION='multi_worker'.* needs the Tensor"):
        modellib.MaskRCNN("inference", make_config(1, 1, DISTRIBUTION="multi_worker"),
                          str(tmp_path))
