"""Tests for mrcnn.utils against hand-computed values (Matterport 2.1 parity)."""
import math
import random

import numpy as np
import pytest
import skimage.io
import skimage.transform

from mrcnn import utils

A = [0, 0, 10, 10]        # area 100
B = [5, 5, 15, 15]        # overlaps A by 5x5 = 25 -> IoU 25/175
A_SHIFT = [1, 1, 11, 11]  # overlaps A by 9x9 = 81 -> IoU 81/119
C = [0, 0, 10, 5]         # inside A, area 50 -> IoU 0.5
D = [20, 20, 30, 30]      # disjoint


# ----------------------------------------------------------------------
# Boxes
# ----------------------------------------------------------------------
def test_extract_bboxes_hand_values():
    mask = np.zeros([6, 8, 3], dtype=bool)
    mask[1:3, 2:5, 0] = True   # rows 1-2, cols 2-4
    mask[4:6, 7, 1] = True     # touches the bottom and right borders
    boxes = utils.extract_bboxes(mask)
    assert boxes.dtype == np.int32
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 5], [4, 7, 6, 8], [0, 0, 0, 0]])


def test_extract_bboxes_empty_and_wrong_rank():
    boxes = utils.extract_bboxes(np.zeros([5, 5, 0], dtype=bool))
    assert boxes.shape == (0, 4) and boxes.dtype == np.int32
    with pytest.raises(ValueError, match="height, width, num_instances"):
        utils.extract_bboxes(np.zeros([5, 5], dtype=bool))


def test_compute_iou_hand_values():
    boxes = np.array([B, C, D, A], dtype=np.float32)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = utils.compute_iou(np.array(A), boxes, 100., areas)
    np.testing.assert_allclose(iou, [25 / 175, 0.5, 0., 1.])


def test_compute_overlaps_hand_values_and_empty():
    overlaps = utils.compute_overlaps(np.array([A, D]), np.array([B, C, A_SHIFT]))
    np.testing.assert_allclose(overlaps, [[25 / 175, 0.5, 81 / 119], [0, 0, 0]])
    assert utils.compute_overlaps(np.zeros([0, 4]), np.array([A, B])).shape == (0, 2)
    assert utils.compute_overlaps(np.array([A, B]), np.zeros([0, 4])).shape == (2, 0)


def test_compute_overlaps_degenerate_box_has_zero_iou():
    overlaps = utils.compute_overlaps(np.array([[3, 3, 3, 8]]), np.array([A]))
    np.testing.assert_array_equal(overlaps, [[0.]])


def test_compute_overlaps_masks_hand_values_and_empty():
    m1 = np.zeros([4, 4, 2])
    m1[0:2, 0:2, 0] = 1          # 4 pixels
    m1[2:4, 2:4, 1] = 0.9        # > 0.5 counts as foreground
    m2 = np.zeros([4, 4, 1])
    m2[0:2, :, 0] = 1            # 8 pixels, contains m1[..., 0]
    np.testing.assert_allclose(utils.compute_overlaps_masks(m1, m2), [[0.5], [0.]])
    assert utils.compute_overlaps_masks(m1, np.zeros([4, 4, 0])).shape == (2, 0)
    assert utils.compute_overlaps_masks(np.zeros([4, 4, 0]), m2).shape == (0, 1)
    # Mini masks against full-size ones: numpy's "shapes (2,16) and (4,1) not aligned".
    with pytest.raises(ValueError, match=r"same height and width, got shapes \(4, 4, 2\) "
                       r"and \(2, 2, 1\); expand mini masks first"):
        utils.compute_overlaps_masks(m1, np.ones([2, 2, 1]))


def test_non_max_suppression_hand_values():
    boxes = np.array([A, B, A_SHIFT, D])
    scores = np.array([0.9, 0.8, 0.95, 0.1])
    # A_SHIFT wins; A (IoU 0.68 with it) goes; B (IoU 36/164) and D stay.
    keep = utils.non_max_suppression(boxes, scores, 0.5)
    assert keep.dtype == np.int32
    np.testing.assert_array_equal(keep, [2, 1, 3])
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 0.7),
                                  [2, 0, 1, 3])
    empty = utils.non_max_suppression(np.zeros([0, 4]), np.zeros([0]), 0.5)
    assert empty.shape == (0,) and empty.dtype == np.int32
    with pytest.raises(ValueError, match=r"scores: expected one per box, shape \(4,\), got "
                       r"\(3,\)"):  # was an IndexError inside the loop
        utils.non_max_suppression(boxes, scores[:3], 0.5)


def test_box_refinement_hand_values():
    box = np.array([[0, 0, 10, 10], [0, 0, 10, 10]])
    gt = np.array([[2, 2, 12, 12], [0, 0, 20, 40]])
    deltas = utils.box_refinement(box, gt)
    assert deltas.dtype == np.float32
    np.testing.assert_allclose(deltas, [[0.2, 0.2, 0., 0.],
                                        [0.5, 1.5, math.log(2), math.log(4)]], rtol=1e-6)
    np.testing.assert_allclose(utils.apply_box_deltas(box, deltas), gt, atol=1e-5)


def test_box_deltas_round_trip_random():
    rng = np.random.RandomState(1)
    y1x1 = rng.uniform(0, 100, size=(20, 2))
    a = np.concatenate([y1x1, y1x1 + rng.uniform(1, 50, size=(20, 2))], axis=1)
    y1x1 = rng.uniform(0, 100, size=(20, 2))
    b = np.concatenate([y1x1, y1x1 + rng.uniform(1, 50, size=(20, 2))], axis=1)
    back = utils.apply_box_deltas(a, utils.box_refinement(a, b))
    np.testing.assert_allclose(back, b, rtol=1e-4, atol=1e-3)


def test_box_refinement_graph_matches_numpy():
    tf = pytest.importorskip("tensorflow")
    box = np.array([[0, 0, 10, 10], [3, 4, 20, 9]], dtype=np.float32)
    gt = np.array([[0, 0, 20, 40], [2, 5, 18, 11]], dtype=np.float32)
    graph = utils.box_refinement_graph(tf.constant(box), tf.constant(gt)).numpy()
    np.testing.assert_allclose(graph, utils.box_refinement(box, gt), rtol=1e-6)


def test_apply_box_deltas_graph_matches_numpy():
    """Both apply the same decode_box_deltas arithmetic (mrcnn.boxes)."""
    tf = pytest.importorskip("tensorflow")
    from mrcnn.proposals import apply_box_deltas_graph

    box = np.array([[0, 0, 10, 10], [3, 4, 20, 9]], dtype=np.float32)
    deltas = np.array([[0.1, -0.2, 0.3, -0.4], [0.0, 0.5, -0.1, 0.2]], dtype=np.float32)
    graph = apply_box_deltas_graph(tf.constant(box), tf.constant(deltas)).numpy()
    np.testing.assert_allclose(graph, utils.apply_box_deltas(box, deltas), rtol=1e-6)
    # By hand, the first box: centre (5, 5) + (1, -2), size 10 x e^0.3, 10 x e^-0.4.
    h, w = 10 * math.exp(0.3), 10 * math.exp(-0.4)
    np.testing.assert_allclose(graph[0], [6 - h / 2, 3 - w / 2, 6 + h / 2, 3 + w / 2],
                               rtol=1e-5)


def test_batch_slice_stacks_per_item_outputs():
    tf = pytest.importorskip("tensorflow")
    x = tf.constant(np.arange(6, dtype=np.float32).reshape(2, 3))
    y = tf.constant([10., 20.])
    total, scaled = utils.batch_slice([x, y], lambda a, b: (tf.reduce_sum(a) + b, a * 2),
                                      2, names=["total", "scaled"])
    np.testing.assert_allclose(total.numpy(), [13., 32.])
    np.testing.assert_allclose(scaled.numpy(), np.arange(6).reshape(2, 3) * 2)
    single = utils.batch_slice(x, lambda a: a[:2], 2)
    assert single.shape == (2, 2)


def test_norm_denorm_boxes_hand_values_and_round_trip():
    boxes = np.array([[0, 0, 64, 64], [5, 3, 10, 20]])
    norm = utils.norm_boxes(boxes, (64, 64))
    assert norm.dtype == np.float32
    np.testing.assert_allclose(norm, [[0, 0, 1, 1], [5 / 63, 3 / 63, 9 / 63, 19 / 63]],
                               rtol=1e-6)
    back = utils.denorm_boxes(norm, (64, 64))
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, boxes)
    # Non-square shape
    boxes = np.array([[10, 20, 40, 90]])
    np.testing.assert_array_equal(
        utils.denorm_boxes(utils.norm_boxes(boxes, (48, 128)), (48, 128)), boxes)


# ----------------------------------------------------------------------
# Anchors
# ----------------------------------------------------------------------
def test_generate_anchors_tiny_case_by_hand():
    anchors = utils.generate_anchors(8, [0.5, 1, 2], [2, 2], 4, 1)
    assert anchors.shape == (2 * 2 * 3, 4)
    r2 = math.sqrt(2)
    # Cell (0, 0), ratio 0.5 (w/h): h = 8*sqrt(2), w = 8/sqrt(2), centred at 0.
    np.testing.assert_allclose(anchors[0], [-4 * r2, -2 * r2, 4 * r2, 2 * r2])
    # Cell (0, 1) is centred at (y, x) = (0, 4); ratio 1 -> 8x8 square.
    np.testing.assert_allclose(anchors[4], [-4, 0, 4, 8])
    # Cell (1, 1), ratio 2: h = 8/sqrt(2), w = 8*sqrt(2), centred at (4, 4).
    np.testing.assert_allclose(anchors[11], [4 - 2 * r2, 4 - 4 * r2, 4 + 2 * r2, 4 + 4 * r2])
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    np.testing.assert_allclose(centers[::3], [[0, 0], [0, 4], [4, 0], [4, 4]])
    sizes = anchors[:, 2:] - anchors[:, :2]
    np.testing.assert_allclose(sizes[:3], [[8 * r2, 8 / r2], [8, 8], [8 / r2, 8 * r2]])
    # Every anchor has area scale**2.
    np.testing.assert_allclose(sizes[:, 0] * sizes[:, 1], 64)


def test_generate_anchors_anchor_stride():
    anchors = utils.generate_anchors([16], [1], [4, 4], 4, 2)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    np.testing.assert_allclose(centers, [[0, 0], [0, 8], [8, 0], [8, 8]])


def test_generate_pyramid_anchors_order_and_count():
    anchors = utils.generate_pyramid_anchors((8, 16), [0.5, 1, 2], [[2, 2], [1, 1]],
                                             [4, 8], 1)
    assert anchors.shape == (12 + 3, 4)
    np.testing.assert_allclose(anchors[:12],
                               utils.generate_anchors(8, [0.5, 1, 2], [2, 2], 4, 1))
    # The level-2 anchors are last: scale 16 at (0, 0).
    np.testing.assert_allclose(anchors[13], [-8, -8, 8, 8])


# ----------------------------------------------------------------------
# Resizing
# ----------------------------------------------------------------------
def skimage_bilinear(image, shape):
    """Independent reference: Matterport's skimage call."""
    return skimage.transform.resize(image, shape, order=1, mode="constant", cval=0,
                                    clip=True, preserve_range=True, anti_aliasing=False)


def test_resize_zero_border_and_no_antialiasing():
    image = np.zeros([2, 2])
    image[0, 0] = 16.
    up = utils.resize(image, (4, 4), preserve_range=True)
    # Pixel (0, 0) samples (-0.25, -0.25): 0.75 * 0.75 of the bright pixel,
    # the rest from the zero border (edge replication would give 16).
    assert up[0, 0] == pytest.approx(9.)
    assert up[0, 2] == pytest.approx(3.)
    assert up[3, 3] == pytest.approx(0.)
    image = np.zeros([4, 4])
    image[0, 0] = 16.
    # Halving samples (0.5, 0.5): a quarter of the pixel, no blur first.
    assert utils.resize(image, (2, 2), preserve_range=True)[0, 0] == pytest.approx(4.)


def test_resize_accepts_bool_like_skimage_0_13():
    m = np.zeros([4, 4], dtype=bool)
    m[:, :2] = True
    out = utils.resize(m, (4, 8))
    np.testing.assert_allclose(out[0], [0.75, 1, 1, 0.75, 0.25, 0, 0, 0])


def test_resize_image_square_non_square_input():
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, size=(30, 60, 3)).astype(np.uint8)
    out, window, scale, padding, crop = utils.resize_image(
        image, min_dim=32, max_dim=64, mode="square")
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert scale == pytest.approx(32 / 30)
    assert window == (16, 0, 48, 64)
    assert padding == [(16, 16), (0, 0), (0, 0)]
    assert crop is None
    assert not out[:16].any() and not out[48:].any()
    expected = skimage_bilinear(image, (32, 64)).astype(np.uint8)
    np.testing.assert_array_equal(out[16:48], expected)


def test_resize_image_square_max_dim_wins():
    image = np.ones([40, 100, 3], dtype=np.uint8)
    out, window, scale, padding, _ = utils.resize_image(image, min_dim=50, max_dim=64)
    # min_dim asks for 1.25, which would make the long side 125 > 64.
    assert scale == pytest.approx(0.64)
    assert out.shape == (64, 64, 3)
    assert window == (19, 0, 45, 64)
    assert padding == [(19, 19), (0, 0), (0, 0)]


def test_resize_image_grayscale_pads_to_max_dim():
    image = np.arange(200, dtype=np.float32).reshape(20, 10) + 1
    out, window, scale, padding, _ = utils.resize_image(image, max_dim=32, mode="square")
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert scale == 1
    assert window == (6, 11, 26, 21)
    assert padding == [(6, 6), (11, 11), (0, 0)]
    np.testing.assert_array_equal(out[6:26, 11:21], image)
    assert out.sum() == image.sum()


def test_resize_image_min_scale():
    image = np.ones([10, 10, 3], dtype=np.uint8)
    out, window, scale, _, _ = utils.resize_image(image, min_scale=2, max_dim=64)
    assert scale == 2 and window == (22, 22, 42, 42) and out.shape == (64, 64, 3)


def test_resize_image_none_mode_returns_input():
    image = np.ones([7, 9, 3], dtype=np.uint8)
    out, window, scale, padding, crop = utils.resize_image(image, 32, 64, mode="none")
    assert out is image
    assert (window, scale, padding, crop) == ((0, 0, 7, 9), 1, [(0, 0)] * 3, None)


def test_resize_image_pad64():
    image = np.ones([100, 70, 3], dtype=np.uint8)
    out, window, scale, padding, _ = utils.resize_image(image, min_dim=64, mode="pad64")
    assert scale == 1 and out.shape == (128, 128, 3)
    assert padding == [(14, 14), (29, 29), (0, 0)]
    assert window == (14, 29, 114, 99)
    assert out.sum() == image.sum()
    # Already multiples of 64: untouched; max_dim is ignored in this mode.
    image = np.ones([128, 64, 3], dtype=np.uint8)
    out, window, _, padding, _ = utils.resize_image(image, min_dim=64, max_dim=32,
                                                    mode="pad64")
    assert out.shape == (128, 64, 3) and window == (0, 0, 128, 64)
    assert padding == [(0, 0), (0, 0), (0, 0)]
    with pytest.raises(ValueError, match="multiple of 64"):
        utils.resize_image(image, min_dim=100, mode="pad64")


def test_resize_image_pad64_scales_up_first():
    image = np.ones([32, 48, 3], dtype=np.uint8)
    out, window, scale, _, _ = utils.resize_image(image, min_dim=64, mode="pad64")
    # 64/32 = 2 -> 64x96, width padded to 128.
    assert scale == 2 and out.shape == (64, 128, 3) and window == (0, 16, 64, 112)


def test_resize_image_crop():
    random.seed(3)
    image = np.random.RandomState(0).randint(0, 256, (80, 100, 3)).astype(np.uint8)
    out, window, scale, padding, crop = utils.resize_image(image, min_dim=64, mode="crop")
    y, x, h, w = crop
    assert (h, w) == (64, 64) and 0 <= y <= 16 and 0 <= x <= 36
    assert scale == 1 and window == (0, 0, 64, 64)
    np.testing.assert_array_equal(out, image[y:y + 64, x:x + 64])
    # A small image is scaled up so that its short side is the crop size.
    out, _, scale, _, crop = utils.resize_image(np.ones([40, 50, 3], np.uint8),
                                                min_dim=64, mode="crop")
    assert scale == pytest.approx(1.6) and out.shape == (64, 64, 3)
    assert crop[0] == 0 and 0 <= crop[1] <= 16


@pytest.mark.parametrize("image,match", [
    (np.zeros([5]), "shape"),
    (np.zeros([2, 5, 5, 3]), "shape"),
    (np.zeros([0, 5, 3]), "empty"),
    (np.zeros([5, 0]), "empty"),
    ([[1, 2], [3, 4]], "numpy array"),
])
def test_resize_image_rejects_bad_images(image, match):
    with pytest.raises(ValueError, match=match):
        utils.resize_image(image, min_dim=8, max_dim=64)


def test_resize_image_rejects_bad_mode_and_missing_args():
    image = np.ones([8, 8, 3], np.uint8)
    with pytest.raises(ValueError, match="stretch"):
        utils.resize_image(image, 8, 64, mode="stretch")
    with pytest.raises(ValueError, match="max_dim"):
        utils.resize_image(image, min_dim=8, mode="square")
    with pytest.raises(ValueError, match="min_dim"):
        utils.resize_image(image, mode="crop")


def test_resize_mask_matches_image_geometry():
    image = np.ones([30, 60, 3], dtype=np.uint8)
    mask = np.zeros([30, 60, 2], dtype=bool)
    mask[:, :30, 0] = True
    mask[10:20, 40:50, 1] = True
    _, window, scale, padding, crop = utils.resize_image(image, 32, 64)
    out = utils.resize_mask(mask, scale, padding, crop)
    assert out.shape == (64, 64, 2) and out.dtype == bool
    # Nothing in the padding; the first instance fills the left half of the window.
    assert not out[:window[0]].any() and not out[window[2]:].any()
    np.testing.assert_array_equal(utils.extract_bboxes(out)[0], [16, 0, 48, 32])


def test_resize_mask_nearest_zoom_and_crop():
    mask = (np.random.RandomState(0).rand(4, 6, 1) > 0.5)
    out = utils.resize_mask(mask, 2, [(1, 1), (0, 2), (0, 0)])
    assert out.shape == (10, 14, 1)
    expected = np.kron(mask[..., 0], np.ones([2, 2], dtype=bool))
    np.testing.assert_array_equal(out[1:9, 0:12, 0], expected)
    assert not out[0].any() and not out[9].any() and not out[:, 12:].any()
    cropped = utils.resize_mask(mask, 1, None, crop=(1, 2, 2, 3))
    np.testing.assert_array_equal(cropped, mask[1:3, 2:5])


def test_minimize_expand_round_trip():
    mask = np.zeros([20, 24, 2], dtype=bool)
    mask[2:10, 4:16, 0] = True                  # a full box
    mask[4:20, 8:24, 1][:, :8] = True           # left half of a 16x16 box, at borders
    boxes = np.array([[2, 4, 10, 16], [4, 8, 20, 24]])
    mini = utils.minimize_mask(boxes, mask, (8, 8))
    assert mini.shape == (8, 8, 2) and mini.dtype == bool
    assert mini[..., 0].all()
    np.testing.assert_array_equal(mini[:, :4, 1], True)
    np.testing.assert_array_equal(mini[:, 4:, 1], False)
    back = utils.expand_mask(boxes, mini, (20, 24, 3))
    assert back.shape == (20, 24, 2) and back.dtype == bool
    np.testing.assert_array_equal(back, mask)


def test_minimize_mask_zero_area_box():
    with pytest.raises(ValueError, match="area of zero"):
        utils.minimize_mask(np.array([[3, 3, 3, 8]]), np.ones([10, 10, 1]), (4, 4))


def test_unmold_mask_placement():
    small = np.zeros([4, 4], dtype=np.float32)
    small[:, :2] = 0.9
    full = utils.unmold_mask(small, [2, 3, 6, 11], (10, 12, 3))
    assert full.shape == (10, 12) and full.dtype == bool
    expected = np.zeros([10, 12], dtype=bool)
    expected[2:6, 3:7] = True   # left half of the 4x8 box
    np.testing.assert_array_equal(full, expected)
    with pytest.raises(ValueError, match="positive height and width"):
        utils.unmold_mask(small, [2, 3, 2, 11], (10, 12, 3))


def test_mold_mask_is_not_silent():
    with pytest.raises(NotImplementedError):
        utils.mold_mask(np.zeros([4, 4]), None)


# ----------------------------------------------------------------------
# Matching and AP
# ----------------------------------------------------------------------
def two_instance_case():
    """2 ground truths; predictions TP (0.9), FP (0.8), TP (0.7)."""
    gt_masks = np.zeros([10, 10, 2], dtype=bool)
    gt_masks[0:5, 0:5, 0] = True
    gt_masks[5:10, 5:10, 1] = True
    gt_boxes = np.array([[0, 0, 5, 5], [5, 5, 10, 10]])
    pred_masks = np.zeros([10, 10, 3], dtype=bool)
    pred_masks[5:10, 5:10, 0] = True   # = gt 1, lowest score, given first
    pred_masks[0:5, 0:5, 1] = True     # = gt 0
    pred_masks[0:5, 5:10, 2] = True    # matches nothing
    pred_boxes = np.array([[5, 5, 10, 10], [0, 0, 5, 5], [0, 5, 5, 10]])
    pred_scores = np.array([0.7, 0.9, 0.8])
    ones = np.ones(3, dtype=np.int32)
    return (gt_boxes, ones[:2], gt_masks, pred_boxes, ones, pred_scores, pred_masks)


def test_compute_matches_sorts_by_score():
    gt_match, pred_match, overlaps = utils.compute_matches(*two_instance_case())
    # Predictions in score order: 0.9 (-> gt 0), 0.8 (none), 0.7 (-> gt 1).
    np.testing.assert_array_equal(pred_match, [0, -1, 1])
    np.testing.assert_array_equal(gt_match, [0, 2])
    np.testing.assert_allclose(overlaps, [[1, 0], [0, 0], [0, 1]])


def test_compute_matches_gt_zero_cannot_match_twice():
    """Upstream's fix: gt 0 already matched is skipped (`> -1`, not `> 0`)."""
    gt_masks = np.zeros([6, 6, 1], dtype=bool)
    gt_masks[1:4, 1:4, 0] = True
    pred_masks = np.repeat(gt_masks, 2, axis=2)
    boxes = np.array([[1, 1, 4, 4]])
    gt_match, pred_match, _ = utils.compute_matches(
        boxes, np.array([1]), gt_masks, np.repeat(boxes, 2, axis=0),
        np.array([1, 1]), np.array([0.9, 0.8]), pred_masks)
    np.testing.assert_array_equal(gt_match, [0])
    np.testing.assert_array_equal(pred_match, [0, -1])
    ap, precisions, recalls, _ = utils.compute_ap(
        boxes, np.array([1]), gt_masks, np.repeat(boxes, 2, axis=0),
        np.array([1, 1]), np.array([0.9, 0.8]), pred_masks)
    assert ap == pytest.approx(1.0)
    np.testing.assert_allclose(recalls, [0, 1, 1, 1])


def test_compute_matches_class_and_threshold():
    case = list(two_instance_case())
    case[4] = np.array([1, 2, 1])   # the 0.9 prediction has the wrong class
    _, pred_match, _ = utils.compute_matches(*case)
    np.testing.assert_array_equal(pred_match, [-1, -1, 1])
    # Trimming: zero-padded ground truth rows are dropped.
    case = list(two_instance_case())
    case[0] = np.concatenate([case[0], np.zeros([2, 4], int)])
    gt_match, _, overlaps = utils.compute_matches(*case)
    assert gt_match.shape == (2,) and overlaps.shape == (3, 2)


def test_compute_matches_refuses_fewer_ids_scores_or_masks_than_boxes():
    case = list(two_instance_case())
    case[4], case[5] = case[4][:2], case[5][:2]  # 3 boxes, 2 class ids and scores
    # AP came out of the first two predictions, silently.
    with pytest.raises(ValueError, match=r"prediction instances: 3 non-zero boxes, so "
                       r"expected at least 3 .*'pred_class_ids': 2, 'pred_scores': 2, "
                       r"'pred_masks': 3"):
        utils.compute_ap(*case)
    case = list(two_instance_case())
    case[2] = case[2][..., :1]
    with pytest.raises(ValueError, match=r"gt instances: 2 non-zero boxes, .*'gt_masks': 1"):
        utils.compute_matches(*case)


def test_compute_ap_hand_case():
    ap, precisions, recalls, overlaps = utils.compute_ap(*two_instance_case())
    # P = [1, 1/2, 2/3], R = [1/2, 1/2, 1] -> AP = 0.5 * 1 + 0.5 * 2/3.
    assert ap == pytest.approx(5 / 6)
    np.testing.assert_allclose(precisions, [1, 1, 2 / 3, 2 / 3, 0])
    np.testing.assert_allclose(recalls, [0, 0.5, 0.5, 1, 1])


def test_compute_ap_range(capsys):
    ap = utils.compute_ap_range(*two_instance_case(), iou_thresholds=np.array([0.5, 0.75]))
    assert ap == pytest.approx(5 / 6)
    # Printed as Matterport printed it (verbose=1 by default). The matches are exact, so
    # both thresholds give 1/2 * 1 + 1/2 * 2/3 (TP, FP, TP by score).
    assert capsys.readouterr().out.splitlines() == [
        "AP @0.50:\t 0.833", "AP @0.75:\t 0.833", "AP @0.50-0.75:\t 0.833"]
    assert utils.compute_ap_range(*two_instance_case(), verbose=0) == pytest.approx(5 / 6)
    assert capsys.readouterr().out == ""


def test_compute_recall():
    recall, positive_ids = utils.compute_recall(np.array([A, A_SHIFT, B]),
                                                np.array([A, D]), 0.5)
    assert recall == 0.5
    np.testing.assert_array_equal(positive_ids, [0, 1])


def test_trim_zeros():
    x = np.array([[0, 0], [1, 0], [0, 0], [0, 2]])
    np.testing.assert_array_equal(utils.trim_zeros(x), [[1, 0], [0, 2]])
    with pytest.raises(ValueError, match="2-D"):
        utils.trim_zeros(np.zeros(4))


# ----------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------
def two_source_dataset():
    ds = utils.Dataset()
    ds.add_class("coco", 1, "person")
    ds.add_class("coco", 2, "bicycle, bike")
    ds.add_class("shapes", 1, "square")
    ds.add_class("coco", 1, "duplicate is ignored")
    ds.add_image("coco", 42, "/data/a.jpg", width=5, height=4)
    ds.add_image("shapes", 7, None)
    ds.prepare()
    return ds


def test_dataset_prepare_two_sources():
    ds = two_source_dataset()
    assert ds.num_classes == 4 and ds.num_images == 2
    np.testing.assert_array_equal(ds.class_ids, [0, 1, 2, 3])
    np.testing.assert_array_equal(ds.image_ids, [0, 1])
    assert ds.class_names == ["BG", "person", "bicycle", "square"]
    assert ds.class_from_source_map == {".0": 0, "coco.1": 1, "coco.2": 2, "shapes.1": 3}
    assert ds.image_from_source_map == {"coco.42": 0, "shapes.7": 1}
    assert sorted(ds.sources) == ["", "coco", "shapes"]
    assert ds.source_class_ids == {"": [0], "coco": [0, 1, 2], "shapes": [0, 3]}
    assert ds.map_source_class_id("shapes.1") == 3
    assert ds.get_source_class_id(2, "coco") == 2
    assert ds.get_source_class_id(3, "shapes") == 1
    with pytest.raises(ValueError, match="shapes"):
        ds.get_source_class_id(3, "coco")
    assert ds.source_image_link(0) == "/data/a.jpg"
    assert ds.image_info[0]["width"] == 5 and ds.image_reference(0) == ""


def test_dataset_rejects_dotted_source_and_default_mask():
    ds = utils.Dataset()
    with pytest.raises(ValueError, match="dot"):
        ds.add_class("co.co", 1, "x")
    mask, class_ids = ds.load_mask(0)
    assert mask.shape == (0, 0, 0) and class_ids.shape == (0,)
    assert class_ids.dtype == np.int32


def test_dataset_says_prepare_was_not_called():
    import pickle
    ds = utils.Dataset()
    ds.add_class("shapes", 1, "square")
    with pytest.raises(AttributeError, match=r"Dataset.class_names is set by prepare\(\): "
                       r"call dataset.prepare\(\)"):
        ds.class_names
    with pytest.raises(AttributeError, match="Dataset.num_classes is set by prepare"):
        ds.num_classes
    with pytest.raises(AttributeError, match="'Dataset' object has no attribute 'nope'$"):
        ds.nope
    assert not hasattr(ds, "num_images")
    # Worker processes receive data sets by pickle, before and after prepare().
    assert pickle.loads(pickle.dumps(ds)).class_info == ds.class_info
    ds.prepare()
    assert pickle.loads(pickle.dumps(ds)).class_names == ["BG", "square"]


def test_dataset_load_image_converts_gray_and_rgba(tmp_path):
    rng = np.random.RandomState(0)
    gray = rng.randint(0, 256, (6, 5)).astype(np.uint8)
    rgba = rng.randint(0, 256, (6, 5, 4)).astype(np.uint8)
    rgb = rng.randint(0, 256, (6, 5, 3)).astype(np.uint8)
    ds = utils.Dataset()
    for name, image in [("gray", gray), ("rgba", rgba), ("rgb", rgb)]:
        path = str(tmp_path / (name + ".png"))
        skimage.io.imsave(path, image, check_contrast=False)
        ds.add_image("test", name, path)
    ds.prepare()
    out = ds.load_image(0)
    assert out.shape == (6, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    np.testing.assert_array_equal(ds.load_image(1), rgba[..., :3])
    np.testing.assert_array_equal(ds.load_image(2), rgb)


# ----------------------------------------------------------------------
# Weights download
# ----------------------------------------------------------------------
def test_download_trained_weights_never_downloads(tmp_path):
    missing = str(tmp_path / "mask_rcnn_coco.h5")
    with pytest.raises(FileNotFoundError) as info:
        utils.download_trained_weights(missing)
    assert missing in str(info.value) and "place" in str(info.value)
    present = tmp_path / "present.h5"
    present.write_bytes(b"x")
    assert utils.download_trained_weights(str(present)) is None
