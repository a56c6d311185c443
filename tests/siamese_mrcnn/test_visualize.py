"""Siamese result pictures and evaluation figures render under Agg (conftest) and
honour ax."""
import matplotlib
import matplotlib.image
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import pytest

from siamese_mrcnn import visualize


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def result(n=2, size=64, seed=0):
    """A query [size, size, 3] with n square detections and a reference [20, 30, 3]."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    boxes = np.array([[4 + 12 * i, 6 + 10 * i, 14 + 12 * i, 20 + 10 * i] for i in range(n)])
    masks = np.zeros((size, size, n), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        masks[y1:y2, x1:x2, i] = True
    target = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    return target, image, boxes, masks, np.ones(n, dtype=np.int32), np.linspace(0.9, 0.5, n)


def test_display_results_draws_into_the_given_axes():
    target, image, boxes, masks, class_ids, scores = result(n=2)
    fig, ax = plt.subplots()
    before = plt.get_fignums()
    returned = visualize.display_results(target, image, boxes, masks, class_ids, scores,
                                         title="query", ax=ax)
    assert returned is None  # as the paper's: a notebook shows no "(<Axes>, <Axes>)" line
    assert plt.get_fignums() == before  # no new figure
    assert ax.get_title() == "query"
    (target_ax,) = ax.child_axes  # the reference beside the query
    np.testing.assert_array_equal(target_ax.images[0].get_array(), target)
    # 2 dashed boxes + 1 outline per mask; captions are the scores.
    rectangles = [p for p in ax.patches if isinstance(p, matplotlib.patches.Rectangle)]
    assert len(rectangles) == 2
    assert [t.get_text() for t in ax.texts] == ["0.900", "0.500"]
    shown = ax.images[0].get_array()
    assert shown.shape == image.shape
    assert not np.array_equal(shown[boxes[0][0], boxes[0][1]], image[boxes[0][0], boxes[0][1]])
    np.testing.assert_array_equal(shown[0, 0], image[0, 0])  # outside the masks


def test_display_results_uses_target_ax_and_makes_its_own_figure():
    target, image, boxes, masks, class_ids, scores = result(n=1)
    fig, (left, right) = plt.subplots(1, 2)
    visualize.display_results(target, image, boxes, masks, class_ids, ax=right,
                              target_ax=left)
    assert len(left.images) == 1 and right.texts[0].get_text() == "no score"
    assert not right.child_axes
    count = len(plt.get_fignums())
    visualize.display_results(target, image, boxes, masks, class_ids)
    assert len(plt.get_fignums()) == count + 1
    query_ax, reference_ax = plt.gcf().axes  # in the order they were added
    np.testing.assert_array_equal(reference_ax.images[0].get_array(), target)
    assert len(query_ax.patches) == 2  # the box and the mask's outline


def test_display_results_rejects_mismatched_instances():
    target, image, boxes, masks, class_ids, scores = result(n=2)
    with pytest.raises(ValueError, match="same instances"):
        visualize.display_results(target, image, boxes, masks[:, :, :1], class_ids)


def test_display_results_and_grid_name_masks_or_scores_that_do_not_fit():
    target, image, boxes, masks, class_ids, scores = result(n=2)
    with pytest.raises(ValueError, match=r"height and width \(64, 64\), got shape "
                       r"\(28, 28, 2\); expand mini masks"):
        visualize.display_results(target, image, boxes, masks[::2, ::2][:28, :28], class_ids)
    with pytest.raises(ValueError, match=r"image: expected an RGB image \[H, W, 3\], got "
                       r"shape \(64, 64\)"):
        visualize.display_results(target, image[..., 0], boxes, masks, class_ids)
    with pytest.raises(ValueError, match=r"scores: expected one per instance \(2\), got 1"):
        visualize.display_grid([target], [image], [boxes], [masks], [class_ids],
                               [scores[:1]])


def test_display_results_without_detections():
    target, image, _, _, _, _ = result(n=1)
    visualize.display_results(target, image, np.zeros((0, 4)),
                              np.zeros((64, 64, 0), dtype=bool), np.zeros(0))
    ax, _ = plt.gcf().axes  # the query, then the reference
    assert not ax.patches and len(ax.images) == 1


def test_display_grid_layout_insets_and_save(tmp_path):
    results = [result(n=k + 1, seed=k) for k in range(3)]
    lists = [list(x) for x in zip(*results)]
    path = tmp_path / "grid.png"
    assert visualize.display_grid(*lists, category_names_list=["a", "b", "c"],
                                  save=str(path)) is None  # a notebook shows it once
    fig = plt.gcf()
    assert len(fig.axes) == 4  # 2 x 2 grid for 3 results
    used = fig.axes[:3]
    assert [ax.get_title() for ax in used] == ["a", "b", "c"]
    for ax, (target, *_rest) in zip(used, results):
        assert len(ax.images) == 2  # query and reference inset
        np.testing.assert_array_equal(ax.images[1].get_array(), target)
        # Inset in the bottom-left corner, inside the 64 x 64 query.
        left, right, bottom, top = ax.images[1].get_extent()
        assert 0 <= left < right <= 64 and 0 <= top < bottom <= 64 and left == 10
    assert not fig.axes[3].images
    saved = matplotlib.image.imread(str(path))
    assert saved.ndim == 3 and saved.shape[0] > 100


def test_display_grid_single_result_given_axes_and_default_save(tmp_path, monkeypatch):
    target, image, boxes, masks, class_ids, scores = result(n=2)
    fig, axes = plt.subplots(1, 2)
    visualize.display_grid([target], [image], [boxes], [masks], [class_ids], [scores],
                           ax=axes, show_scores=False, title="t")
    assert len(axes[0].images) == 2 and not axes[0].texts
    assert axes[0].get_title() == "t"
    count = len(plt.get_fignums())
    visualize.display_grid(target, image, boxes, masks, class_ids, scores)
    assert len(plt.get_fignums()) == count + 1
    assert len(plt.gcf().axes) == 1 and len(plt.gcf().axes[0].texts) == 2
    monkeypatch.chdir(tmp_path)
    visualize.display_grid(target, image, boxes, masks, class_ids, scores, save=True)
    assert (tmp_path / "grid.pdf").stat().st_size > 0
    with pytest.raises(ValueError, match="at least 2 axes"):
        visualize.display_grid([target, target], [image, image], [boxes, boxes],
                               [masks, masks], [class_ids, class_ids], ax=axes[0])
    with pytest.raises(ValueError, match="same number"):
        visualize.display_grid([target, target], [image], [boxes], [masks], [class_ids])


def test_plot_confusion_matrix_shows_the_matrix():
    matrix = np.array([[1.0, 0.2, np.nan], [0.0, 0.8, 0.1], [0.3, 0.0, 0.5]])
    ax = visualize.plot_confusion_matrix(matrix, ["a", "b", "c"], title="m")
    shown = ax.images[0].get_array()
    assert shown.mask[0, 2] and not shown.mask[0, 0]
    np.testing.assert_array_equal(shown.filled(-1), np.nan_to_num(matrix, nan=-1))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_ylabel() == "reference category"
    with pytest.raises(ValueError, match="expected shape"):
        visualize.plot_confusion_matrix(matrix, ["a", "b"])


def test_plot_most_confused_and_ap_by_instance_count():
    histogram = [{"class_id": 3, "name": "cat", "count": 4},
                 {"class_id": 1, "name": "dog", "count": 2},
                 {"class_id": 2, "name": "cow", "count": 1}]
    ax = visualize.plot_most_confused(histogram, top_k=2)
    assert [p.get_height() for p in ax.patches] == [4, 2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]

    rows = [{"bucket": "1", "pairs": 9, "bbox": 0.75, "segm": 0.5},
            {"bucket": "2", "pairs": 0, "bbox": -1.0, "segm": -1.0},
            {"bucket": "3+", "pairs": 1, "bbox": 1.0, "segm": 0.25}]
    ax = visualize.plot_ap_by_instance_count(rows)
    heights = [p.get_height() for p in ax.patches]
    assert heights == [0.75, 0.0, 1.0, 0.5, 0.0, 0.25]  # bbox bars, then segm bars
    assert [t.get_text() for t in ax.texts] == ["n=9", "n=0", "n=1"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["bbox", "segm"]
