"""References for the network (resize, pad, mold, fold into the batch) and the
random-boxes baseline."""
import numpy as np
import pytest

from mrcnn import utils
from siamese_mrcnn.config import Config
from siamese_mrcnn.reference import (MergeReferences, SplitReferences, mold_references,
                                     prepare_reference, randomize_detections, sort_by_score)


class RefConfig(Config):
    BACKBONE = "resnet_tiny"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    TARGET_MIN_DIM = 16
    TARGET_MAX_DIM = 32


def _config(**fields):
    return type("TestConfig", (RefConfig,), fields)()


# ---------------------------------------------------------------- batch folding
def test_merge_and_split_references_round_trip():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    merged = np.asarray(MergeReferences()(x))
    assert merged.shape == (6, 4, 5, 6)
    # Reference i of query b is row b * k + i.
    np.testing.assert_array_equal(merged[1 * 3 + 2], x[1, 2])
    split = np.asarray(SplitReferences(3)(merged))
    np.testing.assert_array_equal(split, x)
    assert SplitReferences(3).compute_output_shape((6, 4, 5, 7)) == (None, 3, 4, 5, 7)
    assert MergeReferences().compute_output_shape((2, 3, 8, 8, 3)) == (6, 8, 8, 3)
    assert SplitReferences(4).get_config()["num_references"] == 4


# ---------------------------------------------------------------- preparing
def test_prepare_reference_resizes_pads_and_molds():
    config = _config()
    reference = np.zeros((10, 20, 3), dtype=np.uint8)
    reference[:] = (200, 100, 50)
    out = prepare_reference(reference, config)
    # min side 10 -> 16 (scale 1.6): 16 x 32, centred vertically in 32 x 32.
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    mean = np.asarray(config.MEAN_PIXEL, dtype=np.float32)
    # Interior only: the bilinear resize blends the border with zeros (constant mode).
    np.testing.assert_allclose(out[10:22, 2:30],
                               np.broadcast_to((200, 100, 50) - mean, (12, 28, 3)), atol=1e-3)
    np.testing.assert_allclose(out[:8], np.broadcast_to(-mean, (8, 32, 3)), atol=1e-4)
    np.testing.assert_allclose(out[24:], np.broadcast_to(-mean, (8, 32, 3)), atol=1e-4)


def test_prepare_reference_matches_training_resize_and_raw_option():
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 256, (50, 37, 3), dtype=np.uint8)
    expected = utils.resize_image(reference, min_dim=16, max_dim=32, mode="square")[0]
    raw = prepare_reference(reference, _config(REFERENCE_MOLDING=False))
    np.testing.assert_allclose(raw, expected.astype(np.float32))
    molded = prepare_reference(reference, _config())
    np.testing.assert_allclose(molded, expected - RefConfig.MEAN_PIXEL, atol=1e-4)


def test_prepare_reference_converts_grayscale_and_rgba():
    config = _config(REFERENCE_MOLDING=False)
    gray = np.full((8, 8), 77, dtype=np.uint8)
    out = prepare_reference(gray, config)
    assert out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out[16, 16], [77, 77, 77])  # 16 x 16, centred
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = (1, 2, 3)
    rgba[..., 3] = 255
    np.testing.assert_array_equal(prepare_reference(rgba, config)[16, 16], [1, 2, 3])


def test_mold_references_shapes():
    rng = np.random.default_rng(2)
    refs = [rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8) for i in range(4)]
    one = mold_references([refs[0], refs[1]], _config())
    assert one.shape == (2, 1, 32, 32, 3) and one.dtype == np.float32
    np.testing.assert_array_equal(one[1, 0], prepare_reference(refs[1], _config()))
    two = mold_references([refs[:2], refs[2:]], _config(NUM_TARGETS=2))
    assert two.shape == (2, 2, 32, 32, 3)
    np.testing.assert_array_equal(two[1, 0], prepare_reference(refs[2], _config()))


@pytest.mark.parametrize("targets, config_fields, message", [
    ("not a list", {}, "targets must be a list"),
    ([], {}, "got none"),
    ([[np.zeros((8, 8, 3))] * 2], {}, "NUM_TARGETS=1"),
    ([[np.zeros((8, 8, 3))]], {"NUM_TARGETS": 2}, "NUM_TARGETS=2"),
    ([5], {}, "targets[0]"),
    ([np.zeros((0, 0, 3), dtype=np.uint8)], {}, "non-empty"),
    ([np.zeros((1, 1, 3), dtype=np.uint8)], {}, "at least 4x4"),
    ([np.zeros((20, 3, 3), dtype=np.uint8)], {}, "got 20x3"),
    ([np.zeros((8, 8, 2), dtype=np.uint8)], {}, "2 channels"),
    ([np.full((8, 8, 3), "a")], {}, "dtype"),
    # One bare reference: its rows were read as 20x3-pixel references.
    (np.zeros((20, 20, 3), dtype=np.uint8), {},
     "got one array of shape (20, 20, 3): a single reference goes in a list, [reference]"),
    ([np.zeros((8, 8, 3), dtype=bool)], {}, "dtype"),
])
def test_mold_references_rejects_bad_input(targets, config_fields, message):
    with pytest.raises(ValueError) as error:
        mold_references(targets, _config(**config_fields))
    assert message in str(error.value)


# ---------------------------------------------------------------- random baseline
def _detections():
    det = np.zeros((2, 6, 6), dtype=np.float32)
    det[0, :4] = [[0.30, 0.30, 0.50, 0.40, 1, 0.9],
                  [0.10, 0.20, 0.20, 0.60, 1, 0.8],
                  [0.40, 0.40, 0.45, 0.45, 1, 0.7],
                  [0.25, 0.00, 0.75, 1.00, 1, 0.6]]  # as wide as the image
    det[1, :1] = [[0.5, 0.5, 0.6, 0.7, 1, 0.55]]
    return det


def test_randomize_detections_keeps_sizes_and_window_and_permutes_scores():
    det = _detections()
    windows = np.array([[16, 0, 48, 64], [0, 8, 64, 56]])  # pixels of a 64 x 64 image
    norm_windows = utils.norm_boxes(windows, (64, 64))
    seen_positions = set()
    for seed in range(20):
        out = randomize_detections(det, windows, (64, 64, 3), np.random.default_rng(seed))
        assert out.shape == det.shape
        for b, n in ((0, 4), (1, 1)):
            sizes = det[b, :n, 2:4] - det[b, :n, :2]
            np.testing.assert_allclose(out[b, :n, 2:4] - out[b, :n, :2], sizes, atol=1e-6)
            wy1, wx1, wy2, wx2 = norm_windows[b]
            fits = (sizes[:, 0] <= wy2 - wy1) & (sizes[:, 1] <= wx2 - wx1)
            inside = ((out[b, :n, 0] >= wy1 - 1e-6) & (out[b, :n, 1] >= wx1 - 1e-6)
                      & (out[b, :n, 2] <= wy2 + 1e-6) & (out[b, :n, 3] <= wx2 + 1e-6))
            assert inside[fits].all()
            # A box wider than the window starts at the window's left edge.
            np.testing.assert_allclose(out[b, :n, 1][~fits], wx1, atol=1e-6)
            np.testing.assert_array_equal(out[b, :n, 4], det[b, :n, 4])
            np.testing.assert_allclose(np.sort(out[b, :n, 5]), np.sort(det[b, :n, 5]))
            np.testing.assert_array_equal(out[b, n:], 0)  # padding untouched
        seen_positions.add(round(float(out[0, 0, 0]), 4))
    assert len(seen_positions) > 10  # really random
    np.testing.assert_array_equal(  # reproducible
        randomize_detections(det, windows, (64, 64), np.random.default_rng(3)),
        randomize_detections(det, windows, (64, 64), np.random.default_rng(3)))
    np.testing.assert_array_equal(det, _detections())  # input unchanged


def test_randomize_detections_permutes_scores():
    det = _detections()
    windows = np.array([[0, 0, 64, 64]] * 2)
    orders = {tuple(randomize_detections(det, windows, (64, 64), np.random.default_rng(s))
                    [0, :4, 5]) for s in range(30)}
    assert len(orders) > 5


def test_randomize_detections_rejects_bad_shape():
    with pytest.raises(ValueError, match="class_id, score"):
        randomize_detections(np.zeros((1, 5, 4)), np.zeros((1, 4)), (64, 64))


def test_sort_by_score_moves_masks_with_detections():
    masks = np.zeros((4, 4, 3), dtype=bool)
    masks[0, 0, 0] = masks[1, 1, 1] = masks[2, 2, 2] = True
    result = {"rois": np.array([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]]),
              "class_ids": np.array([1, 1, 1]), "scores": np.array([0.2, 0.9, 0.5]),
              "masks": masks}
    out = sort_by_score(result)
    np.testing.assert_array_equal(out["scores"], [0.9, 0.5, 0.2])
    np.testing.assert_array_equal(out["rois"][:, 0], [1, 2, 0])
    for i, position in enumerate([1, 2, 0]):
        assert out["masks"][position, position, i]
