"""The one-shot evaluation protocol and its runs on a hand-made COCO set with stand-in
models whose detections are known (tests/helpers/eval_coco.py); the analyses and writers
are tested in test_analysis.py."""
import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from siamese_mrcnn import evaluation as ev
from siamese_mrcnn import pairs
from siamese_mrcnn import utils as siamese_utils
from siamese_mrcnn.data import ReferenceNotFoundError
from siamese_mrcnn.reference import randomize_detections
from tests.helpers.eval_coco import (INTERNAL, SIZE, StandInSiamese, data,  # noqa: F401
                                     dataset, evaluate, make_config)

# (image, category) pairs of the layout: 2 + 2 + 2 + 3 + 2 + 2.
NUM_PAIRS = 13
# Internal id of COCO category 9 ("blue"), 5 ("green").
BLUE, GREEN = INTERNAL[9], INTERNAL[5]


# ---------------------------------------------------------------- the protocol

@pytest.mark.parametrize("batch_size", [1, 4])
def test_perfect_detections_give_ap_one_with_batches(dataset, batch_size, monkeypatch):
    ds, _ = dataset
    loads = []
    original = ds.load_image
    monkeypatch.setattr(ds, "load_image", lambda i: loads.append(i) or original(i))
    model = StandInSiamese(make_config(batch_size=batch_size))
    result = evaluate(model, dataset)
    for t in ("bbox", "segm"):
        assert result.stat("AP50", t) == 1.0
        assert result.stat("AP", t) == 1.0
        assert result.per_class_ap50[t] == {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}
    assert result.num_pairs == NUM_PAIRS and result.skipped_pairs == []
    # Batches of BATCH_SIZE, the last padded.
    assert len(model.calls) == math.ceil(NUM_PAIRS / batch_size)
    assert all(method == "detect" and size == batch_size for method, size, _ in model.calls)
    # Each query image once (6) and one reference image per pair (13).
    assert len(loads) == 6 + NUM_PAIRS
    assert result.coco_image_ids == [11, 12, 13, 14, 15, 16]
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["stats"]["segm"]["AP50"] == 1.0 and summary["num_pairs"] == NUM_PAIRS


def test_shifted_detections_give_zero(dataset):
    result = evaluate(StandInSiamese(make_config(batch_size=2), mode="shifted"), dataset)
    for t in ("bbox", "segm"):
        assert result.stat("AP50", t) == 0.0
        assert result.stat("AR100", t) == 0.0


def test_class_restriction_averages_only_chosen_classes(dataset):
    model = StandInSiamese(make_config(batch_size=2), bad_categories=[9])
    everything = evaluate(model, dataset)
    assert everything.per_class_ap50["bbox"] == {1: 1.0, 2: 1.0, 3: 0.0, 4: 1.0}
    assert everything.stat("AP50", "bbox") == pytest.approx(0.75)
    assert everything.stat("AP50", "segm") == pytest.approx(0.75)

    # class_index: positions = internal id - 1; blue (3) left out.
    chosen = evaluate(StandInSiamese(make_config(batch_size=2), bad_categories=[9]), dataset,
                      class_index=[0, 1, 3])
    assert chosen.class_ids == [1, 2, 4]
    assert chosen.stat("AP50", "bbox") == 1.0 and chosen.stat("AP50", "segm") == 1.0
    assert 3 not in chosen.per_class_ap50["bbox"]

    # customCOCOeval.summarize itself, on positions of params.catIds (COCO 2, 5, 9, 14).
    coco_eval = everything.coco_evals["bbox"]
    assert coco_eval.params.catIds == [2, 5, 9, 14]
    assert coco_eval.summarize(class_index=[2], verbose=0)[1] == 0.0
    assert coco_eval.summarize(class_index=[0, 1, 3], verbose=0)[1] == 1.0
    assert coco_eval.summarize(class_index=None, verbose=0)[1] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="class_index"):
        coco_eval.summarize(class_index=[4], verbose=0)


def test_evaluate_dataset_prints_and_returns_what_the_paper_code_did(dataset, capsys):
    # The paper's evaluation notebook: verbose=1, the summary and timings on stdout, and
    # return_results=True gives the customCOCOeval (stats[1] is AP50).
    ds, coco = dataset
    model = StandInSiamese(make_config(batch_size=2))
    assert ev.evaluate_dataset(model, ds, coco, "bbox", seed=0, verbose=1) is None
    printed = capsys.readouterr().out
    assert printed.count(" Average Precision  (AP) @[ IoU=0.50      | area=   all | "
                         "maxDets=100 ] = 1.000") == 1
    assert printed.count("Average Recall") == 6
    assert "Prediction time: " in printed and "/image" in printed
    assert "Total time: " in printed
    coco_eval = ev.evaluate_dataset(model, ds, coco, ["bbox", "segm"], seed=0, verbose=0,
                                    return_results=True)
    assert capsys.readouterr().out == ""  # verbose=0: silent
    assert isinstance(coco_eval, ev.customCOCOeval)
    assert coco_eval.params.iouType == "segm"  # the last eval type, as the paper code
    full = ev.evaluate_protocol(model, ds, coco, ["bbox", "segm"], seed=0, verbose=0)
    assert coco_eval.stats[1] == full.stat("AP50", "segm") == 1.0
    coco_eval.summarize()
    assert "Average Precision  (AP) @[ IoU=0.50 " in capsys.readouterr().out
    again = ev.evaluate_coco(model, ds, coco, "bbox", verbose=0, return_results=True,
                             seed=0)
    assert again.params.iouType == "bbox" and again.stats[1] == 1.0


def test_results_are_coco_format_in_original_coordinates(dataset, data):
    _, truth = data
    result = evaluate(StandInSiamese(make_config(batch_size=3)), dataset, keep_results=True)
    results = result.results
    assert len(results) == sum(len(objects) for objects in truth.values())
    expected = sorted((image_id, category, x1, y1, x2 - x1, y2 - y1)
                      for image_id, objects in truth.items()
                      for category, (y1, x1, y2, x2) in objects)
    found = sorted((r["image_id"], r["category_id"], *r["bbox"]) for r in results)
    assert found == expected
    for r in results:
        assert isinstance(r["segmentation"]["counts"], str)
        mask = mask_utils.decode(r["segmentation"])
        x, y, w, h = (int(v) for v in r["bbox"])
        box = np.zeros((SIZE, SIZE), dtype=np.uint8)
        box[y:y + h, x:x + w] = 1
        np.testing.assert_array_equal(mask, box)
    json.dumps(results)  # JSON-ready


def test_pairs_draw_references_of_their_category_from_other_images(dataset, monkeypatch):
    calls = []
    original = pairs.get_one_target

    def spy(category, dataset_, config, **kwargs):
        calls.append((kwargs["exclude_image_id"], int(category), kwargs["allow_same_image"]))
        return original(category, dataset_, config, **kwargs)

    monkeypatch.setattr(pairs, "get_one_target", spy)
    ds, _ = dataset
    model = StandInSiamese(make_config(batch_size=2))
    evaluate(model, dataset)
    expected = {(i, int(c), False) for i in range(len(ds.image_info))
                for c in ds.image_category_index[i]}
    assert sorted(calls) == sorted(expected) and len(calls) == NUM_PAIRS


def test_detected_categories_match_pairs(dataset):
    ds, _ = dataset
    model = StandInSiamese(make_config(batch_size=1))
    evaluate(model, dataset)
    coco_of = {v: k for k, v in INTERNAL.items()}
    expected = [coco_of[int(c)] for i in range(len(ds.image_info))
                for c in ds.image_category_index[i]]
    assert [cats[0] for _, _, cats in model.calls] == expected


def test_active_classes_choose_the_pairs(dataset):
    ds, _ = dataset
    ds.set_active_classes([GREEN])
    model = StandInSiamese(make_config(batch_size=1))
    result = evaluate(model, dataset)
    assert result.class_ids == [GREEN] and result.num_pairs == 3
    assert [cats for _, _, cats in model.calls] == [[5], [5], [5]]
    assert result.stat("AP50") == 1.0


def test_limit_and_image_ids(dataset):
    result = evaluate(StandInSiamese(make_config()), dataset, limit=2)
    assert result.coco_image_ids == [11, 12] and result.num_pairs == 4
    result = evaluate(StandInSiamese(make_config()), dataset, image_ids=[3])
    assert result.coco_image_ids == [14] and result.num_pairs == 3
    assert result.stat("AP50") == 1.0


def test_seeded_draws_are_reproducible_and_independent_of_batching(dataset):
    def references(batch_size, seed, workers=0):
        model = StandInSiamese(make_config(batch_size=batch_size))
        evaluate(model, dataset, seed=seed, workers=workers)
        # Padding slots of the last batch come after the real pairs.
        return [np.asarray(r) for r in model.references[:NUM_PAIRS]]

    first = references(1, seed=0)
    assert len(first) == NUM_PAIRS
    for other in (references(1, seed=0), references(4, seed=0),
                  references(3, seed=0, workers=2)):
        assert len(other) == NUM_PAIRS
        assert all(np.array_equal(a, b) for a, b in zip(first, other))
    changed = references(1, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(first, changed))


def test_k_shot_draws_num_targets_references_per_pair(dataset):
    model = StandInSiamese(make_config(batch_size=1, num_targets=3))
    result = evaluate(model, dataset)
    assert len(model.references) == 3 * NUM_PAIRS
    assert all(np.asarray(r).shape == (16, 16, 3) for r in model.references)
    assert result.stat("AP50") == 1.0


def test_shared_reference_encodes_once_per_category(dataset):
    model = StandInSiamese(make_config(batch_size=3))
    result = evaluate(model, dataset, shared_reference=True)
    methods = [method for method, _, _ in model.calls]
    assert methods.count("encode_reference") == math.ceil(4 / 3)
    assert all(size == 3 for method, size, _ in model.calls if method == "encode_reference")
    assert methods.count("detect_with_reference") == math.ceil(NUM_PAIRS / 3)
    assert "detect" not in methods
    # One reference per category (4), padded to two encoder batches of 3.
    assert len(model.references) == 6
    assert sorted(StandInSiamese._reference_category(r) for r in model.references[:4]) == \
        [2, 5, 9, 14]
    assert result.stat("AP50", "bbox") == 1.0 and result.stat("AP50", "segm") == 1.0


def test_unavailable_reference_skips_the_pair(dataset, monkeypatch):
    original = pairs.get_one_target

    def failing(category, *args, **kwargs):
        if category == BLUE:
            raise ReferenceNotFoundError("no blue reference")
        return original(category, *args, **kwargs)

    monkeypatch.setattr(pairs, "get_one_target", failing)
    result = evaluate(StandInSiamese(make_config(batch_size=2)), dataset)
    assert sorted(c for _, c in result.skipped_pairs) == [BLUE, BLUE, BLUE]
    assert result.num_pairs == NUM_PAIRS - 3
    # The skipped pairs' objects count as missed.
    assert result.per_class_ap50["bbox"][BLUE] == 0.0
    assert result.stat("AP50") == pytest.approx(0.75)


def test_bad_arguments_raise(dataset):
    model = StandInSiamese(make_config())
    with pytest.raises(ValueError, match="eval_type"):
        evaluate(model, dataset, eval_type="keypoints")
    with pytest.raises(ValueError, match="class_index"):
        evaluate(model, dataset, class_index=[4])
    with pytest.raises(ValueError, match="dataset_type"):
        evaluate(model, dataset, dataset_type="ade20k")
    with pytest.raises(ValueError, match="image_ids"):
        evaluate(model, dataset, image_ids=[6])
    with pytest.raises(ValueError, match="seed"):
        evaluate(model, dataset, seed=-1)
    with pytest.raises(ValueError, match="model"):
        evaluate(object(), dataset)



@pytest.mark.parametrize("kwargs, message", [
    # Each was evaluated silently: without the last image, an image twice, nothing,
    # or the first class for 0.5.
    ({"limit": -1}, r"limit: expected an integer >= 0 \(0: every image\), got -1"),
    ({"limit": 1.5}, r"limit: expected an integer >= 0 .*got 1.5"),
    ({"image_ids": [0, 2, 0]}, r"image_ids: expected each image once .*got \[0\] more "
                               r"than once"),
    ({"class_index": []}, r"class_index: expected one or more integer positions .*got \[\]"),
    ({"class_index": [0.5]}, r"class_index: expected one or more integer positions "
                             r".*got \[0.5\]"),
])
def test_arguments_that_evaluated_the_wrong_thing_raise(dataset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(StandInSiamese(make_config()), dataset, **kwargs)


def test_no_active_class_raises(dataset):
    ds, _ = dataset
    ds.set_active_classes([])
    with pytest.raises(ValueError, match=r"no classes to evaluate: the data set has no "
                       r"active classes \(set_active_classes\)"):
        evaluate(StandInSiamese(make_config()), dataset)


def test_segm_without_masks_raises(dataset):
    class NoMasks(StandInSiamese):
        def detect(self, *args, **kwargs):
            return [dict(r, masks=None) for r in super().detect(*args, **kwargs)]

    result = evaluate(NoMasks(make_config()), dataset, eval_type="bbox")
    assert result.stat("AP50") == 1.0
    with pytest.raises(ValueError, match="masks"):
        evaluate(NoMasks(make_config()), dataset, eval_type="segm")


def test_evaluate_coco_and_utils_reexports(dataset):
    ds, coco = dataset
    # The paper code's return value: the customCOCOeval (return_results), else None.
    result = siamese_utils.evaluate_coco(StandInSiamese(make_config()), ds, coco,
                                         eval_type="segm", verbose=0, seed=0,
                                         return_results=True)
    assert isinstance(result, siamese_utils.customCOCOeval)
    assert result.params.iouType == "segm" and result.stats[1] == 1.0
    assert siamese_utils.evaluate_coco(StandInSiamese(make_config()), ds, coco,
                                       eval_type="segm", verbose=0, seed=0) is None
    assert siamese_utils.evaluate_dataset is ev.evaluate_dataset
    from siamese_mrcnn import coco, data, visualize
    assert siamese_utils.IndexedCocoDataset is coco.IndexedCocoDataset
    assert siamese_utils.get_one_target is data.get_one_target
    assert siamese_utils.siamese_data_generator is data.siamese_data_generator
    assert siamese_utils.display_grid is visualize.display_grid
    assert siamese_utils.display_results is visualize.display_results


# ---------------------------------------------------------------- random baseline

def test_randomize_detections_keeps_sizes_inside_the_window():
    rng = np.random.default_rng(3)
    shape = (128, 128, 3)
    window = np.array([[10, 20, 100, 110]])  # pixels
    from mrcnn import utils
    boxes = np.array([[12, 22, 40, 60], [50, 30, 90, 50], [20, 70, 30, 100]])
    detections = np.zeros((1, 5, 6), dtype=np.float32)  # 2 rows of padding
    detections[0, :3, :4] = utils.norm_boxes(boxes, shape[:2])
    detections[0, :3, 4] = [1, 2, 3]
    detections[0, :3, 5] = [0.9, 0.5, 0.7]
    moved = randomize_detections(detections, window, shape, rng)[0]
    norm_window = utils.norm_boxes(window, shape[:2])[0]
    sizes = {int(c): (b[2] - b[0], b[3] - b[1]) for b, c in
             zip(detections[0, :3, :4], detections[0, :3, 4])}
    for row in moved[:3]:
        h, w = sizes[int(row[4])]
        assert row[2] - row[0] == pytest.approx(h, abs=1e-6)
        assert row[3] - row[1] == pytest.approx(w, abs=1e-6)
        assert row[0] >= norm_window[0] - 1e-6 and row[1] >= norm_window[1] - 1e-6
        assert row[2] <= norm_window[2] + 1e-6 and row[3] <= norm_window[3] + 1e-6
    # Scores are shuffled among the detections (rows stay in place).
    assert sorted(moved[:3, 5]) == pytest.approx([0.5, 0.7, 0.9])
    np.testing.assert_array_equal(moved[3:], 0)
    assert not np.allclose(moved[:3, :4], detections[0, :3, :4])


def test_random_baseline_moves_boxes_and_keeps_sizes(dataset, data):
    _, truth = data
    model = StandInSiamese(make_config(batch_size=2))
    result = evaluate(model, dataset, random_detections=True, keep_results=True)
    # One generator per batch of 2 (7 batches, 14 slots with the padding).
    assert len(model.random_calls) == 14
    assert len({id(r) for r in model.random_calls}) == math.ceil(NUM_PAIRS / 2)
    assert all(isinstance(r, np.random.Generator) for r in model.random_calls)
    sizes = {}
    for image_id, objects in truth.items():
        for category, (y1, x1, y2, x2) in objects:
            sizes.setdefault((image_id, category), []).append((x2 - x1, y2 - y1))
    found = {}
    for r in result.results:
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and x + w <= SIZE and y + h <= SIZE
        found.setdefault((r["image_id"], r["category_id"]), []).append((w, h))
    assert found.keys() == sizes.keys()
    for key, expected in sizes.items():
        for (w, h), (ew, eh) in zip(sorted(found[key]), sorted(expected)):
            assert abs(w - ew) <= 1 and abs(h - eh) <= 1
    assert result.stat("AP50") < 0.5
    again = evaluate(StandInSiamese(make_config(batch_size=2)), dataset,
                     random_detections=True, keep_results=True)
    assert [r["bbox"] for r in again.results] == [r["bbox"] for r in result.results]


# ---------------------------------------------------------------- runs

def test_confidence_interval_by_hand():
    mean, half = ev.confidence_interval([0.2, 0.4, 0.6])
    # std(ddof=1) = 0.2, t_0.975(2) = 4.302652729911275
    assert mean == pytest.approx(0.4)
    assert half == pytest.approx(4.302652729911275 * 0.2 / math.sqrt(3))
    mean, half = ev.confidence_interval([0.1, 0.3])
    # std(ddof=1) = 0.141421..., t_0.975(1) = 12.706204736174698
    assert mean == pytest.approx(0.2)
    assert half == pytest.approx(12.706204736174698 * math.sqrt(0.02) / math.sqrt(2))
    assert ev.confidence_interval([0.37]) == (0.37, 0.0)
    assert ev.confidence_interval([-1, -1]) == (-1.0, 0.0)
    with pytest.raises(ValueError):
        ev.confidence_interval([])


def _fake_result(ap50_bbox, seed):
    stats = np.full(12, 0.5)
    stats[1] = ap50_bbox
    return ev.EvaluationResult(
        eval_types=("bbox",), class_ids=[1, 2], class_names=["a", "b"], coco_image_ids=[],
        stats={"bbox": stats}, per_class_ap50={"bbox": {1: ap50_bbox, 2: 1.0}},
        coco_evals={}, num_pairs=0, skipped_pairs=[], timing={"total": 1.0}, seed=seed)


def test_summarize_runs_arithmetic():
    summary = ev.summarize_runs([_fake_result(v, s) for s, v in enumerate([0.2, 0.4, 0.6])])
    half = 4.302652729911275 * 0.2 / math.sqrt(3)
    assert summary.values["bbox"][:, 1].tolist() == [0.2, 0.4, 0.6]
    assert summary.interval("AP50") == pytest.approx((0.4, 0.4 - half, 0.4 + half))
    assert summary.mean["bbox"][0] == 0.5 and summary.half_width["bbox"][0] == 0.0
    data = summary.to_dict()
    assert data["stats"]["bbox"]["AP50"]["runs"] == [0.2, 0.4, 0.6]
    assert data["stats"]["bbox"]["AP50"]["half_width"] == pytest.approx(half)
    assert data["per_class_ap50"]["bbox"]["1"]["mean"] == pytest.approx(0.4)
    assert data["per_class_ap50"]["bbox"]["2"]["half_width"] == 0.0
    row = [r for r in summary.rows() if r["statistic"] == "AP50"][0]
    assert row["low"] == pytest.approx(0.4 - half) and row["run_3"] == 0.6
    assert summary.timing["total"] == 3.0


def test_average_over_splits():
    first = ev.summarize_runs([_fake_result(0.2, 0), _fake_result(0.4, 1)])  # mean 0.3
    second = ev.summarize_runs([_fake_result(0.7, 2)])
    average = ev.average_over_splits([first, second])
    assert average["bbox"]["AP50"] == pytest.approx(0.5)
    assert average["bbox"]["AP"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        ev.average_over_splits([])


def test_run_evaluation_uses_a_different_draw_per_run(dataset):
    ds, coco = dataset
    model = StandInSiamese(make_config(batch_size=1))
    summary, runs = ev.run_evaluation(model, ds, coco, runs=3, seed=7, verbose=0,
                                      keep_evaluations=True)
    assert len(runs) == 3 and len(summary.seeds) == 3
    assert len({json.dumps(s) for s in summary.seeds}) == 3
    assert summary.interval("AP50", "bbox") == (1.0, 1.0, 1.0)
    assert summary.interval("AP50", "segm") == (1.0, 1.0, 1.0)
    refs = [np.asarray(r) for r in model.references]
    run_refs = [refs[k * NUM_PAIRS:(k + 1) * NUM_PAIRS] for k in range(3)]
    assert not all(np.array_equal(a, b) for a, b in zip(run_refs[0], run_refs[1]))
    with pytest.raises(ValueError, match="runs"):
        ev.run_evaluation(model, ds, coco, runs=0)


@pytest.mark.parametrize("runs, seed, message", [
    (0, 0, "runs: expected an integer >= 1, got 0"),
    (True, 0, "runs: expected an integer >= 1, got True"),
    (2, -1, "seed: expected an integer >= 0, got -1"),  # numpy: "expected non-negative integer"
    (2, 1.5, "seed: expected an integer >= 0, got 1.5"),
])
def test_bad_runs_or_seed_are_told_by_name_before_any_detection(dataset, runs, seed, message):
    from siamese_mrcnn.runs import run_seeds
    from siamese_mrcnn.shards import evaluate_shard

    ds, coco = dataset
    model = StandInSiamese(make_config(batch_size=1))
    for call in (lambda: run_seeds(runs, seed),
                 lambda: ev.run_evaluation(model, ds, coco, runs=runs, seed=seed, verbose=0),
                 lambda: evaluate_shard(model, ds, (0, 2), runs=runs, seed=seed, verbose=0)):
        with pytest.raises(ValueError) as caught:
            call()
        assert str(caught.value) == message
    assert model.references == []  # nothing was detected


def test_run_seeds_are_the_children_of_one_seed_sequence():
    from siamese_mrcnn.runs import run_seeds

    seeds = run_seeds(3, np.int64(7))
    expected = np.random.SeedSequence(7).spawn(3)
    assert [s.entropy for s in seeds] == [7, 7, 7]
    assert [s.spawn_key for s in seeds] == [e.spawn_key for e in expected] == [(0,), (1,), (2,)]


def test_evaluate_split_one_shot_vs_background(dataset):
    ds, coco = dataset
    ds.set_active_classes([1, 2])
    # Split 1 of 4 classes: class 1 (COCO 2, red) is one-shot, 2..4 background.
    model = StandInSiamese(make_config(batch_size=2), bad_categories=[2])
    summaries = ev.evaluate_split(model, ds, coco, 1, runs=2, seed=0, verbose=0)
    assert summaries["one_shot"].class_ids == [1]
    assert summaries["background"].class_ids == [2, 3, 4]
    assert summaries["one_shot"].interval("AP50")[0] == 0.0
    assert summaries["background"].interval("AP50")[0] == 1.0
    assert ds.get_active_classes().tolist() == [1, 2]


# ---------------------------------------------------------------- a real model
def test_query_encoding_is_reused_and_changes_no_detection(dataset, tmp_path):
    """With a real (random, tiny) Siamese model: each query image runs through the
    backbone once for all its categories, and the results equal one detect() per pair.

    One pair per batch (IMAGES_PER_GPU=1): every pair crosses a batch boundary, so the
    cache is reused across batches, and both paths compute on the same shapes, so the
    detections are equal on any CPU kernels. With 3 pairs per batch, detect() runs the
    backbone on 3 images and the cache on 1; Eigen kernels (TF_ENABLE_ONEDNN_OPTS=0)
    round those differently in the last bits, which with random weights flipped one
    near-tie detection in 65."""
    from siamese_mrcnn.config import config_from_overrides, preset
    from siamese_mrcnn.model import SiameseMaskRCNN

    config = config_from_overrides(preset("small_eval"), dict(
        BACKBONE="resnet_tiny", IMAGE_MIN_DIM=SIZE, IMAGE_MAX_DIM=SIZE, TARGET_MIN_DIM=32,
        TARGET_MAX_DIM=32, FPN_FEATUREMAPS=16, FPN_CLASSIF_FC_LAYERS_SIZE=32,
        MASK_HEAD_CONV_CHANNELS=16, MASK_POOL_SIZE=7, MASK_SHAPE=[14, 14],
        POST_NMS_ROIS_INFERENCE=20, DETECTION_MAX_INSTANCES=5, DETECTION_MIN_CONFIDENCE=0.0,
        IMAGES_PER_GPU=1))
    model = SiameseMaskRCNN("inference", config, str(tmp_path))
    encoded_images = []
    encode_queries = model.encode_queries

    def counting(images):
        encoded_images.extend(images)
        return encode_queries(images)

    model.encode_queries = counting
    results = {}
    for cache in (True, False):
        result = evaluate(model, dataset, cache_queries=cache, keep_results=True)
        assert result.num_pairs == NUM_PAIRS
        results[cache] = result.results
    # 6 images, 13 pairs: each image encoded once, whatever the batch boundaries.
    assert len(encoded_images) == 6
    cached, direct = results[True], results[False]
    assert len(cached) == len(direct) > 0
    for a, b in zip(cached, direct):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-3)
