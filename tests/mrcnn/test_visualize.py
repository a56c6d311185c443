"""Tests for mrcnn.visualize: every Matterport 2.1 function rendered under Agg."""
import colorsys
import logging
import random

import keras
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib import lines, patches
from matplotlib.patches import Polygon

from mrcnn import visualize

CLASS_NAMES = ["BG", "square", "circle"]


@pytest.fixture(autouse=True)
def _close_figures():
    plt.close("all")
    yield
    plt.close("all")


@pytest.fixture
def no_show(monkeypatch):
    """Fail if anything calls plt.show() under Agg."""
    def _fail(*args, **kwargs):
        raise AssertionError("plt.show() called on a non-interactive backend")
    monkeypatch.setattr(plt, "show", _fail)


def _patches(ax, kind):
    return [p for p in ax.patches if type(p) is kind]


def _saved(fig, tmp_path, name):
    path = tmp_path / name
    fig.savefig(path)
    return path.exists() and path.stat().st_size > 0


def _scene():
    """A 32x40 image with two square instances and one instance with no box."""
    image = np.full((32, 40, 3), 100, dtype=np.uint8)
    boxes = np.array([[2, 3, 12, 15], [15, 20, 30, 38], [0, 0, 0, 0]])
    masks = np.zeros((32, 40, 3), dtype=bool)
    masks[2:12, 3:15, 0] = True
    masks[15:30, 20:38, 1] = True
    class_ids = np.array([1, 2, 1])
    return image, boxes, masks, class_ids


############################################################
#  Pixel functions
############################################################

def test_random_colors_count_brightness_and_hues():
    random.seed(3)
    colors = visualize.random_colors(6)
    assert len(colors) == 6
    expected = {colorsys.hsv_to_rgb(i / 6, 1, 1.0) for i in range(6)}
    assert set(colors) == expected
    assert all(np.isclose(max(c), 1.0) for c in colors)
    dark = visualize.random_colors(4, bright=False)
    assert all(np.isclose(max(c), 0.7) for c in dark)


def test_apply_mask_blends_only_masked_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 7, 3)).astype(np.float64)
    original = image.copy()
    mask = np.zeros((6, 7), dtype=np.uint8)
    mask[1:4, 2:5] = 1
    color, alpha = (0.2, 0.5, 1.0), 0.3
    out = visualize.apply_mask(image, mask, color, alpha)
    assert out is image
    inside = mask == 1
    for c in range(3):
        np.testing.assert_allclose(out[..., c][inside],
                                   original[..., c][inside] * 0.7 + 0.3 * color[c] * 255)
        np.testing.assert_array_equal(out[..., c][~inside], original[..., c][~inside])


def test_draw_box_paints_two_pixel_border():
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    out = visualize.draw_box(image, (3, 4, 12, 15), [255, 0, 0])
    painted = out[..., 0] == 255
    expected = np.zeros((20, 20), dtype=bool)
    expected[3:5, 4:15] = True
    expected[12:14, 4:15] = True
    expected[3:12, 4:6] = True
    expected[3:12, 15:17] = True
    np.testing.assert_array_equal(painted, expected)
    assert not out[..., 1:].any()


############################################################
#  Figures
############################################################

def test_display_instances_draws_each_boxed_instance(tmp_path, no_show):
    image, boxes, masks, class_ids = _scene()
    colors = [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)]
    visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                scores=np.array([0.9, 0.75, 0.5]), colors=colors,
                                title="scene")
    ax = plt.gca()
    assert len(_patches(ax, patches.Rectangle)) == 2  # the zero box is skipped
    assert len(_patches(ax, Polygon)) == 2  # one contour per drawn mask
    assert [t.get_text() for t in ax.texts] == ["square 0.900", "circle 0.750"]
    assert ax.get_title() == "scene"
    expected = image.astype(np.uint32)
    for i in range(2):
        expected = visualize.apply_mask(expected, masks[..., i], colors[i])
    np.testing.assert_array_equal(ax.images[0].get_array(), expected.astype(np.uint8))
    assert _saved(plt.gcf(), tmp_path, "instances.png")


def test_display_instances_on_given_ax_without_boxes_or_masks():
    image, boxes, masks, class_ids = _scene()
    fig, ax = plt.subplots(1)
    visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, ax=ax,
                                show_bbox=False, show_mask=False,
                                captions=["a", "b", "c"])
    assert plt.get_fignums() == [fig.number]
    assert _patches(ax, patches.Rectangle) == []
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    np.testing.assert_array_equal(ax.images[0].get_array(), image)


def test_display_instances_shows_only_its_own_figure(monkeypatch):
    calls = []
    monkeypatch.setattr(matplotlib, "get_backend", lambda: "TkAgg")
    monkeypatch.setattr(plt, "show", lambda *a, **k: calls.append(1))
    image, boxes, masks, class_ids = _scene()
    _, ax = plt.subplots(1)
    visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, ax=ax)
    assert calls == []
    visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES)
    assert calls == [1]


def test_display_instances_rejects_inconsistent_counts():
    image, boxes, masks, class_ids = _scene()
    with pytest.raises(ValueError, match="3 boxes, 2 masks"):
        visualize.display_instances(image, boxes, masks[..., :2], class_ids, CLASS_NAMES)


@pytest.mark.parametrize("change, message", [
    (lambda s: dict(s, image=s["image"][..., 0]), r"image: expected an RGB image \[H, W, 3\], "
     r"got shape \(32, 40\)"),
    # load_image_gt's mini masks (USE_MINI_MASK) in place of full-size ones.
    (lambda s: dict(s, masks=np.zeros((56, 56, 3), bool)),
     r"height and width \(32, 40\), got shape \(56, 56, 3\); expand mini masks first: "
     r"utils.expand_mask"),
    (lambda s: dict(s, class_ids=np.array([1, 7, 3])),
     r"class_ids: \[3, 7\] have no name in class_names \(3 names, so ids 0..2\)"),
    (lambda s: dict(s, scores=np.array([0.9, 0.8])),
     r"scores: expected one per instance \(3\), got 2"),
])
def test_display_instances_names_what_does_not_fit(change, message):
    image, boxes, masks, class_ids = _scene()
    scene = change(dict(image=image, boxes=boxes, masks=masks, class_ids=class_ids,
                        scores=None))
    with pytest.raises(ValueError, match=message):
        visualize.display_instances(scene["image"], scene["boxes"], scene["masks"],
                                    scene["class_ids"], CLASS_NAMES, scores=scene["scores"])


def test_display_instances_draws_on_an_rgba_image():
    image, boxes, masks, class_ids = _scene()
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    visualize.display_instances(rgba, boxes, masks, class_ids, CLASS_NAMES)
    assert plt.gca().images[0].get_array().shape == (32, 40, 4)


def test_display_instances_captions_replace_names_and_scores():
    image, boxes, masks, _ = _scene()
    # With captions, class names and scores are not read: unnamed ids are fine.
    visualize.display_instances(image, boxes, masks, np.array([9, 9, 9]), CLASS_NAMES,
                                captions=["a", "b", "c"])
    assert [t.get_text() for t in plt.gca().texts] == ["a", "b"]


def test_display_instances_with_no_instances(caplog):
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    with caplog.at_level(logging.INFO, logger="mrcnn.visualize"):
        visualize.display_instances(image, np.zeros((0, 4)), np.zeros((10, 10, 0)),
                                    np.zeros((0,), int), CLASS_NAMES)
    assert "No instances to display" in caplog.text
    assert _patches(plt.gca(), patches.Rectangle) == []


def test_display_differences_colors_and_captions(tmp_path):
    image, boxes, masks, class_ids = _scene()
    gt_box, gt_mask, gt_ids = boxes[:2], masks[..., :2], class_ids[:2]
    pred_box = np.array([[2, 3, 12, 15], [20, 0, 30, 8]])
    pred_mask = np.zeros((32, 40, 2), dtype=bool)
    pred_mask[2:12, 3:15, 0] = True
    pred_mask[20:30, 0:8, 1] = True
    visualize.display_differences(image, gt_box, gt_ids, gt_mask,
                                  pred_box, np.array([1, 2]), np.array([0.9, 0.6]),
                                  pred_mask, CLASS_NAMES)
    ax = plt.gca()
    rects = _patches(ax, patches.Rectangle)
    assert len(rects) == 4
    edge = [tuple(np.round(r.get_edgecolor()[:3], 3)) for r in rects]
    assert edge == [(0, 1, 0), (0, 1, 0), (1, 0, 0), (1, 0, 0)]
    assert [t.get_text() for t in ax.texts] == ["", "", "0.90 / 1.00", "0.60 / 0.00"]
    assert "GT=green" in ax.get_title()
    assert _saved(plt.gcf(), tmp_path, "diff.png")


def test_draw_rois_counts_and_stats(caplog, tmp_path):
    image = np.full((40, 40, 3), 50, dtype=np.uint8)
    rois = np.array([[2, 2, 12, 12], [5, 5, 20, 25], [20, 20, 35, 35], [0, 10, 8, 30]])
    refined = rois + 1
    small_masks = np.ones((4, 7, 7), dtype=np.float32)
    class_ids = np.array([1, 0, 2, 0])
    with caplog.at_level(logging.INFO, logger="mrcnn.visualize"):
        visualize.draw_rois(image, rois, refined, small_masks, class_ids, CLASS_NAMES)
    ax = plt.gca()
    assert ax.get_title() == "4 ROIs"
    assert len(_patches(ax, patches.Rectangle)) == 4 + 2  # every ROI + refined positives
    assert len([a for a in ax.lines if isinstance(a, lines.Line2D)]) == 2
    assert sorted(t.get_text() for t in ax.texts) == ["circle", "square"]
    assert "Positive ROIs: 2" in caplog.text and "Positive Ratio: 0.50" in caplog.text
    # the positive ROIs' masks were blended in, negative ones not
    shown = ax.images[0].get_array()
    assert (shown[3, 3] != 50).any() and (shown[1, 20] == 50).all()
    assert _saved(plt.gcf(), tmp_path, "rois.png")


def test_draw_rois_and_top_masks_name_what_does_not_fit():
    image, boxes, masks, class_ids = _scene()
    # Each was an IndexError midway through the drawing, or (counts) the wrong masks.
    with pytest.raises(ValueError, match=r"class_ids: \[3\] have no name in class_names "
                       r"\(3 names, so ids 0..2\)"):
        visualize.draw_rois(image, boxes, boxes, np.ones((3, 7, 7)), np.array([1, 3, 0]),
                            CLASS_NAMES)
    with pytest.raises(ValueError, match=r"class_ids: \[4\] have no name"):
        visualize.display_top_masks(image, masks, np.array([1, 4, 2]), CLASS_NAMES)
    with pytest.raises(ValueError, match=r"mask \[H, W, N\] and class_ids \[N\]: got 3 masks "
                       r"and 2 class ids"):
        visualize.display_top_masks(image, masks, class_ids[:2], CLASS_NAMES)


def test_draw_rois_limit_samples():
    rois = np.tile(np.array([[2, 2, 12, 12]]), (12, 1))
    visualize.draw_rois(np.zeros((20, 20, 3), np.uint8), rois, rois,
                        np.ones((12, 4, 4)), np.zeros(12, int), CLASS_NAMES, limit=5)
    ax = plt.gca()
    assert ax.get_title() == "Showing 5 random ROIs out of 12"
    assert len(_patches(ax, patches.Rectangle)) == 5


def test_display_images_and_top_masks(tmp_path, no_show):
    images = [np.full((8, 8, 3), v, np.uint8) for v in (0, 100, 200)]
    visualize.display_images(images, titles=["a", "b", "c"], cols=2)
    fig = plt.gcf()
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    assert _saved(fig, tmp_path, "images.png")

    plt.close("all")
    image, _, masks, class_ids = _scene()
    visualize.display_top_masks(image, masks, class_ids, CLASS_NAMES, limit=3)
    titles = [ax.get_title() for ax in plt.gcf().axes]
    # circle (270 px) before square (120 px), then an empty slot
    assert titles == ["H x W=32x40", "circle", "square", "-"]
    square = plt.gcf().axes[2].images[0].get_array()
    assert square.max() == 1 and square.sum() == 120


def test_plot_precision_recall(tmp_path):
    visualize.plot_precision_recall(0.5, [1.0, 0.5, 0.5], [0.0, 0.5, 1.0])
    ax = plt.gca()
    assert ax.get_title() == "Precision-Recall Curve. AP@50 = 0.500"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [1.0, 0.5, 0.5])
    assert _saved(plt.gcf(), tmp_path, "pr.png")


def test_plot_overlaps_labels_matches(tmp_path):
    overlaps = np.array([[0.9, 0.0], [0.1, 0.7]])
    visualize.plot_overlaps(np.array([1, 2, 0]), np.array([1, 1]), np.array([0.8, 0.6]),
                            overlaps, CLASS_NAMES)
    texts = [t.get_text() for t in plt.gca().texts]
    assert texts == ["0.900\nmatch", "0.000\n", "0.100\n", "0.700\nwrong"]
    assert _saved(plt.gcf(), tmp_path, "overlaps.png")


def test_plot_overlaps_without_predictions_or_with_wrong_shape(tmp_path):
    # No detections: Matterport's overlaps.max() failed on the empty array.
    visualize.plot_overlaps(np.array([1, 2]), np.array([], int), np.array([]),
                            np.zeros((0, 2)), CLASS_NAMES)
    ax = plt.gca()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["square", "circle"]
    assert len(ax.texts) == 0
    assert _saved(plt.gcf(), tmp_path, "empty.png")
    with pytest.raises(ValueError, match=r"overlaps: expected \[predictions, ground truth\] "
                       r"= \[1, 2\] \(non-zero class ids\), got shape \(2, 2\)"):
        visualize.plot_overlaps(np.array([1, 2]), np.array([1]), np.array([0.5]),
                                np.zeros((2, 2)), CLASS_NAMES)


def test_draw_boxes_visibilities_refined_and_captions(tmp_path):
    image, boxes, masks, _ = _scene()
    boxes = np.array([[2, 3, 12, 15], [15, 20, 30, 38], [5, 25, 10, 35]])
    visualize.draw_boxes(image, boxes=boxes, refined_boxes=boxes + 1, masks=masks,
                         captions=["x", "y", "z"], visibilities=[0, 1, 2], title="t")
    ax = plt.gca()
    rects = _patches(ax, patches.Rectangle)
    assert len(rects) == 3 + 2  # refined boxes only where visibility > 0
    drawn = [rects[0], rects[1], rects[3]]  # box, box, refined, box, refined
    assert [r.get_linestyle() for r in drawn] == ["dotted", "dotted", "solid"]
    assert [r.get_alpha() for r in drawn] == [0.5, 1, 1]
    assert matplotlib.colors.to_hex(drawn[0].get_edgecolor()) == "#808080"  # gray
    assert len(ax.lines) == 2
    assert [t.get_text() for t in ax.texts] == ["x", "y", "z"]
    assert len(_patches(ax, Polygon)) == 2  # the third mask is empty
    assert _saved(plt.gcf(), tmp_path, "boxes.png")
    with pytest.raises(ValueError, match="boxes or refined_boxes"):
        visualize.draw_boxes(image)


############################################################
#  Tables
############################################################

def test_display_table_text(capsys):
    visualize.display_table([["NAME", "VALUE"], ["a", 1], ["longer", 2.5]])
    out = capsys.readouterr().out.splitlines()
    assert out == ["NAME    VALUE", "a       1", "longer  2.5"]


def test_display_table_html_in_notebook(monkeypatch):
    import IPython.display
    shown = []
    monkeypatch.setattr(visualize, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", shown.append)
    visualize.display_table([["a<b", 1]])
    assert "<table><tr><td>a&lt;b" in shown[0].data


def test_display_weight_stats(capsys):
    inp = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 1, name="conv")(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(2, name="fc")(x)
    model = keras.Model(inp, out)
    model.get_layer("fc").kernel.assign(np.full((48, 2), 5000.0, "float32"))
    visualize.display_weight_stats(model)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["WEIGHT", "NAME", "SHAPE", "MIN", "MAX", "STD"]
    by_name = {r[0]: r for r in rows[1:]}
    assert set(by_name) == {"conv/kernel", "conv/bias", "fc/kernel", "fc/bias"}
    assert "dead?" not in " ".join(by_name["conv/bias"])  # conv biases start at zero
    assert "dead?" in " ".join(by_name["fc/bias"])
    assert "Overflow?" in " ".join(by_name["fc/kernel"])
    assert by_name["fc/kernel"][-3:] == ["+5000.0000", "+5000.0000", "+0.0000"]
