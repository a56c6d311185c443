"""SiameseMaskRCNN on tiny CPU configurations: graph, k-shot matching, reference reuse,
batching, unmolding, the random baseline, bad input, training, checkpoints and resume.

The full-size graphs are checked against the released layout in test_weights.py.
"""
import hashlib
import logging
import os
import warnings

import keras
import numpy as np
import pytest

from mrcnn import utils
from mrcnn import weights as weights_io
from mrcnn.tracing import traced
from siamese_mrcnn.coco import IndexedCocoDataset
from siamese_mrcnn.config import Config, preset
from siamese_mrcnn.model import SiameseMaskRCNN, schedule_stage
from siamese_mrcnn.reference import mold_references
from tests.helpers.coco_files import CocoSplitWriter, compressed_rle, mask_bbox
from tests.helpers.siamese_coco import write_siamese_coco


def tiny_config(**fields) -> Config:
    """The "tiny_eval" preset (resnet_tiny, 64 px) for these tests, plus ``fields``."""
    return preset("tiny_eval", **{"EXPERIMENT": "test", "DETECTION_MIN_CONFIDENCE": 0.5,
                                  **fields})


def copy_weights(source: SiameseMaskRCNN, target: SiameseMaskRCNN) -> None:
    target_vars = weights_io.weight_map(target.keras_model)
    for key, variable in weights_io.weight_map(source.keras_model).items():
        target_vars[key].assign(np.asarray(variable))


def random_images(seed: int, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in shapes]


@pytest.fixture(scope="module")
def k1():
    """k = 1 inference model whose class head favours 'match' (so it detects)."""
    keras.utils.set_random_seed(0)
    model = SiameseMaskRCNN("inference", tiny_config(), "/tmp/unused_logs")
    variables = weights_io.weight_map(model.keras_model)
    rng = np.random.default_rng(0)
    variables["mrcnn_class_logits/kernel"].assign(
        rng.normal(0, 0.3, variables["mrcnn_class_logits/kernel"].shape).astype(np.float32))
    variables["mrcnn_class_logits/bias"].assign(np.array([0.0, 1.5], dtype=np.float32))
    return model


@pytest.fixture(scope="module")
def k3(k1):
    model = SiameseMaskRCNN("inference", tiny_config(NUM_TARGETS=3), "/tmp/unused_logs")
    copy_weights(k1, model)
    return model


@pytest.fixture(scope="module")
def b2(k1):
    model = SiameseMaskRCNN("inference", tiny_config(IMAGES_PER_GPU=2), "/tmp/unused_logs")
    copy_weights(k1, model)
    return model


def assert_same_detections(a: dict, b: dict) -> None:
    np.testing.assert_array_equal(a["rois"], b["rois"])
    np.testing.assert_array_equal(a["class_ids"], b["class_ids"])
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-5, atol=1e-6)
    assert a["masks"].shape == b["masks"].shape
    # A mask pixel right at the 0.5 threshold may flip with float rounding.
    assert np.mean(a["masks"] != b["masks"]) < 1e-3


# ---------------------------------------------------------------- graph
def test_inputs_outputs_and_heads(k1, k3):
    names = [(t.name, tuple(t.shape)) for t in k3.keras_model.inputs]
    assert names == [("input_image", (None, 64, 64, 3)), ("input_image_meta", (None, 14)),
                     ("input_target", (None, 3, 32, 32, 3)), ("input_anchors", (None, None, 4))]
    layers = {layer.name: layer for layer in k1.keras_model.layers}
    assert {"resnet_model", "fpn_model", "rpn_model"} <= set(layers)
    for level in ("P2", "P3", "P4", "P5", "P6"):
        kernel = layers["fpn_distance_" + level].kernel
        assert tuple(kernel.shape) == (1, 1, 64, 48)  # [P, |P - r|] -> 3C/2
    variables = weights_io.weight_map(k1.keras_model)
    assert tuple(variables["mrcnn_bbox_fc/kernel"].shape) == (64, 4)  # class-agnostic
    assert tuple(variables["mrcnn_mask/kernel"].shape) == (1, 1, 256, 1)  # one mask
    assert tuple(variables["mrcnn_class_logits/kernel"].shape) == (64, 2)
    assert tuple(variables["rpn_conv_shared/kernel"].shape) == (3, 3, 48, 512)


def test_frcnn_has_no_mask_head_and_detects_boxes(k1):
    model = SiameseMaskRCNN("inference", tiny_config(MODEL="frcnn"), "/tmp/unused_logs")
    assert not [l.name for l in model.keras_model.layers if l.name.startswith("mrcnn_mask")]
    variables = weights_io.weight_map(model.keras_model)
    for key, variable in weights_io.weight_map(k1.keras_model).items():
        if not key.startswith("mrcnn_mask"):
            variables[key].assign(np.asarray(variable))
    reference, query = random_images(1, (30, 40, 3), (64, 64, 3))
    (result,) = model.detect([reference], [query])
    (with_masks,) = k1.detect([reference], [query])
    np.testing.assert_array_equal(result["rois"], with_masks["rois"])
    assert len(result["rois"]) > 0
    for i, (y1, x1, y2, x2) in enumerate(result["rois"]):  # box-only: the box is the mask
        expected = np.zeros((64, 64), dtype=bool)
        expected[y1:y2, x1:x2] = True
        np.testing.assert_array_equal(result["masks"][:, :, i], expected)


# ---------------------------------------------------------------- k-shot and reuse
def test_sub_models_are_one_cache_sharing_the_weights(k1):
    assert set(k1.SUB_MODELS) == {"reference_encoder", "vector_detector", "query_encoder",
                                  "feature_detector"}
    encoder = k1.sub_model("reference_encoder")
    assert k1.sub_model("reference_encoder") is encoder  # built once
    # Layers are shared with keras_model, not copied: the encoder sees a weight change.
    reference = random_images(4, (30, 40, 3))[0]
    before = k1.encode_reference([reference])
    kernel = k1.keras_model.get_layer("fpn_model").get_layer("fpn_c5p5").kernel
    saved = np.asarray(kernel)
    try:
        kernel.assign(saved * 2.0)
        after = k1.encode_reference([reference])
    finally:
        kernel.assign(saved)
    assert not np.allclose(before[3], after[3])
    with pytest.raises(ValueError, match="unknown name 'decoder'.*feature_detector"):
        k1.sub_model("decoder")


def test_one_input_sub_models_take_one_array_without_a_warning(k1):
    """The encoders are called with one array (encode_reference, encode_queries, the
    export's reference signature): built on a list of one input, every such call warned
    that the structure did not match, once per evaluated pair under PyTorch."""
    reference, query = random_images(5, (30, 40, 3), (64, 64, 3))
    references = mold_references([reference], k1.config)  # [1, 1, T, T, 3]
    molded = k1.mold_inputs([query])[0]  # [1, S, S, 3]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vectors = k1.sub_model("reference_encoder")(references)
        levels = k1.sub_model("query_encoder")(molded)
        encoded = k1.encode_reference([reference])
        k1.encode_queries([query])
    mismatches = [str(w.message) for w in caught if "expected structure" in str(w.message)]
    assert mismatches == []
    assert len(vectors) == len(levels) == 5
    for direct, through_encode in zip(vectors, encoded):
        np.testing.assert_allclose(np.asarray(direct), through_encode, rtol=1e-5, atol=1e-6)


def test_the_readme_api_calls_trace_each_model_once_without_a_warning(tmp_path, caplog):
    """detect, encode_reference, detect_with_reference, encode_queries and
    detect_with_encoded each trace a model of their own once: TensorFlow counted those
    first traces as one function's retraces and warned on the fifth (mrcnn.tracing)."""
    model = SiameseMaskRCNN("inference", tiny_config(), str(tmp_path))
    reference, query, other = random_images(3, (30, 40, 3), (64, 64, 3), (50, 70, 3))
    assert not any(traced(m) for m in (model.keras_model, model.sub_model("query_encoder")))
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        model.detect([[reference]], [query])
        vectors = model.encode_reference([[reference]])
        for image in (query, other):
            model.detect_with_reference(vectors, [image])
        (encoded,) = model.encode_queries([query])
        for ref in (reference, other):
            model.detect_with_encoded([encoded], model.encode_reference([[ref]]))
    # Each of the five models (the inference graph and the four sub-models) was traced
    # once, although the query (64 px, not resized: an int64 image meta) and `other`
    # (resized: float64) gave metas of two dtypes (mrcnn.tracing.as_input_dtypes).
    models = [model.keras_model] + [model.sub_model(name) for name in model.SUB_MODELS]
    assert [m.predict_function.experimental_get_tracing_count() for m in models] == [1] * 5
    assert [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()] == []


def test_k_references_are_averaged(k1, k3):
    references = random_images(2, (30, 40, 3), (50, 20, 3), (32, 32, 3))
    query = random_images(3, (64, 64, 3))[0]
    pooled = [k3.keras_model.get_layer(f"reference_pool_P{i}").output for i in range(2, 7)]
    outputs = k3.run_graph([query], [(f"P{i}", p) for i, p in zip(range(2, 7), pooled)],
                           targets=[references])
    encoded = k3.encode_reference([references])
    singles = [k1.encode_reference([r]) for r in references]
    for level in range(5):
        expected = np.mean([s[level][0] for s in singles], axis=0)  # [C]
        assert encoded[level].shape == (1, 32)
        np.testing.assert_allclose(encoded[level][0], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outputs[f"P{level + 2}"][0], expected, rtol=1e-5, atol=1e-6)
    # The k-shot model really depends on each of its references.
    other = k3.encode_reference([[references[0], references[0], references[2]]])
    assert not np.allclose(other[0], encoded[0])


def test_encoded_reference_gives_the_same_detections(k1):
    reference, query, query2 = random_images(4, (40, 30, 3), (64, 64, 3), (50, 70, 3))
    vectors = k1.encode_reference([reference])
    assert [v.shape for v in vectors] == [(1, 32)] * 5
    for q in (query, query2):
        (direct,) = k1.detect([reference], [q])
        (reused,) = k1.detect_with_reference(vectors, [q])
        assert len(direct["scores"]) > 0
        assert_same_detections(direct, reused)


def test_batch_of_two_equals_two_single_detections(k1, b2):
    ref_a, ref_b, query_a, query_b = random_images(6, (30, 40, 3), (50, 50, 3),
                                                   (64, 64, 3), (48, 80, 3))
    batched = b2.detect([ref_a, ref_b], [query_a, query_b])
    assert_same_detections(batched[0], k1.detect([ref_a], [query_a])[0])
    assert_same_detections(batched[1], k1.detect([ref_b], [query_b])[0])
    # One encoded reference is broadcast over the batch.
    shared = b2.detect_with_reference(b2.encode_reference([ref_a]), [query_a, query_b])
    assert_same_detections(shared[1], k1.detect([ref_a], [query_b])[0])


def test_encoded_queries_give_the_same_detections(k1, b2):
    ref_a, ref_b, query_a, query_b = random_images(14, (30, 40, 3), (50, 50, 3),
                                                   (64, 64, 3), (48, 80, 3))
    encoded = b2.encode_queries([query_a, query_b])
    assert len(encoded) == 2
    assert [level.shape for level in encoded[0]["levels"]] == [
        (16, 16, 32), (8, 8, 32), (4, 4, 32), (2, 2, 32), (1, 1, 32)]
    assert encoded[1]["shape"] == (48, 80, 3)
    # Each query paired with each reference, as the evaluation does.
    for ref in (ref_a, ref_b):
        vectors = b2.encode_reference([ref, ref])
        reused = b2.detect_with_encoded(encoded, vectors)
        direct = b2.detect([ref, ref], [query_a, query_b])
        assert len(direct[0]["scores"]) + len(direct[1]["scores"]) > 0
        for a, b in zip(direct, reused):
            assert_same_detections(a, b)
    # One query encoded alone is the same entry; queries of a batch can repeat.
    (alone,) = b2.encode_queries([query_b])
    for a, b in zip(alone["levels"], encoded[1]["levels"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    twice = b2.detect_with_encoded([alone, alone], b2.encode_reference([ref_a]))
    assert_same_detections(twice[1], b2.detect([ref_a, ref_a], [query_b, query_b])[1])
    assert b2.encode_queries([]) == []


def test_detect_with_encoded_rejects_bad_input(k1, b2):
    image = random_images(15, (64, 64, 3))[0]
    vectors = k1.encode_reference([image])
    (query,) = k1.encode_queries([image])
    with pytest.raises(ValueError, match="BATCH_SIZE"):
        k1.detect_with_encoded([query, query], vectors)
    with pytest.raises(ValueError, match="5 arrays"):
        k1.detect_with_encoded([query], vectors[:4])
    with pytest.raises(ValueError, match=r"queries\[0\]: expected a dict from "
                       r"encode_queries\(\), .*missing \['levels'\]"):  # was KeyError
        k1.detect_with_encoded([{k: v for k, v in query.items() if k != "levels"}], vectors)
    with pytest.raises(ValueError, match="images\\[0\\]"):
        k1.encode_queries([np.zeros((64, 64), np.float32)[None]])


def test_detect_returns_masks_in_the_original_size(k1):
    reference, query = random_images(7, (20, 60, 3), (40, 100, 3))
    (result,) = k1.detect([reference], [query])
    n = len(result["scores"])
    assert n > 0
    assert result["rois"].shape == (n, 4) and result["class_ids"].tolist() == [1] * n
    assert result["masks"].shape == (40, 100, n) and result["masks"].dtype == bool
    assert np.all(result["rois"] >= 0)
    assert np.all(result["rois"][:, 2] <= 40) and np.all(result["rois"][:, 3] <= 100)
    assert np.all(np.diff(result["scores"]) <= 0)
    # Grayscale and RGBA inputs are converted.
    gray = k1.detect([reference[..., 0]], [query.mean(axis=2).astype(np.uint8)])[0]
    assert gray["masks"].shape[:2] == (40, 100)
    rgba = np.concatenate([reference, np.full(reference.shape[:2] + (1,), 255, np.uint8)], 2)
    assert_same_detections(k1.detect([rgba], [query])[0], result)


def test_detect_molded_equals_detect_for_square_queries(k1):
    reference, query = random_images(8, (30, 30, 3), (64, 64, 3))
    molded, metas, _ = k1.mold_inputs([query])
    (result,) = k1.detect_molded(molded, metas, mold_references([reference], k1.config))
    assert_same_detections(result, k1.detect([reference], [query])[0])
    with pytest.raises(ValueError, match="molded_targets"):
        k1.detect_molded(molded, metas)
    with pytest.raises(ValueError, match=r"\[1, 1, 32, 32, 3\], got \[1, 1, 16, 16, 3\]"):
        k1.detect_molded(molded, metas, np.zeros((1, 1, 16, 16, 3), np.float32))


def test_random_detections_move_boxes_and_shuffle_scores(k1):
    reference, query = random_images(9, (30, 30, 3), (48, 64, 3))
    (plain,) = k1.detect([reference], [query])
    (moved,) = k1.detect([reference], [query], random_detections=True,
                         rng=np.random.default_rng(0))
    n = len(plain["scores"])
    assert n > 1 and len(moved["scores"]) == n
    np.testing.assert_allclose(np.sort(moved["scores"]), np.sort(plain["scores"]), rtol=1e-6)
    assert np.all(np.diff(moved["scores"]) <= 0)
    assert not np.array_equal(moved["rois"], plain["rois"])
    # Sizes kept (up to the rounding of the corners to pixels), inside the image.
    def sizes(rois):
        return np.sort(np.stack([rois[:, 2] - rois[:, 0], rois[:, 3] - rois[:, 1]], 1), 0)
    assert np.abs(sizes(moved["rois"]) - sizes(plain["rois"])).max() <= 1
    assert np.all(moved["rois"] >= 0)
    assert np.all(moved["rois"][:, 2] <= 48) and np.all(moved["rois"][:, 3] <= 64)
    # Each mask is pasted inside its own moved box.
    for i, (y1, x1, y2, x2) in enumerate(moved["rois"]):
        outside = moved["masks"][:, :, i].copy()
        outside[y1:y2, x1:x2] = False
        assert not outside.any()
    again = k1.detect([reference], [query], random_detections=True,
                      rng=np.random.default_rng(0))[0]
    np.testing.assert_array_equal(again["rois"], moved["rois"])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("targets, images, message", [
    ("two", "one", "len(targets) must be equal to BATCH_SIZE (1), got 2"),
    ("pair", "one", "NUM_TARGETS=1"),
    ("empty", "one", "non-empty"),
    ("pixel", "one", "at least 4x4"),
    ("two_channels", "one", "2 channels"),
    ("text", "one", "dtype"),
    ("one", "two", "len(images) must be equal to BATCH_SIZE (1), got 2"),
    ("one", "two_channels", "images[0]"),
    # A bare image (not in a list): its height was the only clue.
    ("one", "bare", "len(images) must be equal to BATCH_SIZE (1), got 20 (one array of "
                    "shape (20, 20, 3): a single image goes in a list, [image])"),
])
def test_detect_rejects_bad_input(k1, targets, images, message):
    good = random_images(10, (20, 20, 3))[0]
    values = {
        "one": [good], "two": [good, good], "pair": [[good, good]],
        "empty": [np.zeros((0, 0, 3), np.uint8)], "pixel": [np.zeros((1, 1, 3), np.uint8)],
        "two_channels": [np.zeros((20, 20, 2), np.uint8)], "text": [np.full((9, 9, 3), "x")],
        "bare": good,
    }
    with pytest.raises(ValueError) as error:
        k1.detect(values[targets], values[images])
    assert message in str(error.value)


def test_k_shot_model_wants_k_references(k3):
    image = random_images(11, (20, 20, 3))[0]
    with pytest.raises(ValueError, match="NUM_TARGETS=3"):
        k3.detect([[image, image]], [image])
    with pytest.raises(ValueError, match="NUM_TARGETS=3"):
        k3.detect([image], [image])


def test_reuse_and_run_graph_reject_bad_input(k1):
    image = random_images(12, (64, 64, 3))[0]
    vectors = k1.encode_reference([image])
    with pytest.raises(ValueError, match="5 arrays"):
        k1.detect_with_reference(vectors[:4], [image])
    with pytest.raises(ValueError, match="FPN_FEATUREMAPS=32"):
        k1.detect_with_reference([v[:, :8] for v in vectors], [image])
    with pytest.raises(ValueError, match="BATCH_SIZE=1"):
        k1.detect_with_reference([np.concatenate([v, v]) for v in vectors], [image])
    with pytest.raises(ValueError, match="targets"):
        k1.run_graph([image], [("rois", k1.keras_model.get_layer("ROI").output)])


# ---------------------------------------------------------------- schedules, checkpoints
PAPER_SCHEDULE = {1: {"learning_rate": 0.02, "layers": "heads"},
                  120: {"learning_rate": 0.02, "layers": "all"},
                  160: {"learning_rate": 0.002, "layers": "all"}}


@pytest.mark.parametrize("epoch, end, layers", [
    (0, 1, "heads"), (1, 1, "heads"), (2, 120, "all"), (120, 120, "all"), (121, 160, "all"),
    (160, 160, "all"), (200, 160, "all")])
def test_schedule_stage(epoch, end, layers):
    stage_end, params = schedule_stage(PAPER_SCHEDULE, epoch)
    assert (stage_end, params["layers"]) == (end, layers)
    assert schedule_stage({str(k): v for k, v in PAPER_SCHEDULE.items()}, epoch)[0] == end
    with pytest.raises(ValueError, match="empty"):
        schedule_stage({}, 1)
    # load_checkpoint(training_schedule=...) reads the stage: a stage without layers
    # was a KeyError.
    with pytest.raises(ValueError, match=r"schedule\[1\]: expected \{\"learning_rate\""):
        schedule_stage({1: {"learning_rate": 0.02}}, 1)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """A tiny training-mode model logging under a temporary model_dir."""
    keras.utils.set_random_seed(1)
    return SiameseMaskRCNN("training", tiny_config(), str(tmp_path_factory.mktemp("logs")))


def test_log_dir_checkpoint_names_and_latest(trainer, tmp_path):
    assert trainer.log_dir == os.path.join(trainer.model_dir, "siamese_mrcnn_tiny_test")
    assert trainer.checkpoint_path.format(epoch=7).endswith(
        os.path.join("siamese_mrcnn_tiny_test", "siamese_mrcnn_0007.h5"))
    with pytest.raises(FileNotFoundError, match="siamese_mrcnn_####.h5"):
        trainer.get_latest_checkpoint()
    os.makedirs(trainer.log_dir)
    try:
        for epoch in (2, 10, 9):  # the newest file is not the highest epoch
            trainer.save_weights(trainer.checkpoint_path.format(epoch=epoch))
        open(os.path.join(trainer.log_dir, "other_0099.h5"), "w").close()
        assert trainer.get_latest_checkpoint().endswith("siamese_mrcnn_0010.h5")
        assert trainer.find_last() == trainer.get_latest_checkpoint()
        # The paper's notebooks: model.find_last()[1] (Matterport 2.1's tuple).
        assert trainer.find_last()[1] == trainer.get_latest_checkpoint()
        assert trainer.find_last()[0] == trainer.log_dir
        trainer.load_latest_checkpoint(PAPER_SCHEDULE)
        assert trainer.epoch == 10
        # Stage of epoch 10 is 'all': the backbone is trainable.
        resnet = trainer.keras_model.get_layer("resnet_model")
        assert resnet.get_layer("res2a_branch2a").trainable
        trainer.load_checkpoint(trainer.checkpoint_path.format(epoch=2), {1: PAPER_SCHEDULE[1],
                                                                         3: PAPER_SCHEDULE[1]})
        assert trainer.epoch == 2 and not resnet.get_layer("res2a_branch2a").trainable
        assert trainer.keras_model.get_layer("fpn_distance_P2").trainable
    finally:
        for name in os.listdir(trainer.log_dir):
            os.remove(os.path.join(trainer.log_dir, name))
    # Released files: the epoch comes from the name's end (the old load_checkpoint's rule)
    # for load_checkpoint; a plain load_weights of them starts a new run at epoch 0.
    released = str(tmp_path / "large_siamese_mrcnn_coco_full_0320.h5")
    trainer.save_weights(released)
    trainer.load_checkpoint(released)
    assert trainer.epoch == 320
    trainer.load_weights(released)
    assert trainer.epoch == 0
    with pytest.raises(ValueError, match="_####.h5"):
        trainer.load_checkpoint(str(tmp_path / "weights.h5"))


def test_train_schedule_continues_and_never_repeats(trainer, monkeypatch):
    """Stage logic with train() stubbed: which epochs each call trains."""
    calls = []

    def fake_train(train_dataset, val_dataset, learning_rate, epochs, layers,
                   augmentation=None):
        if trainer.epoch < epochs:
            calls.append((trainer.epoch, epochs, layers, learning_rate))
            trainer.epoch = epochs

    monkeypatch.setattr(trainer, "train", fake_train)
    trainer.epoch = 0
    trainer.train_schedule(None, None, PAPER_SCHEDULE, until=50)  # interrupted at 50
    assert calls == [(0, 1, "heads", 0.02), (1, 50, "all", 0.02)]
    calls.clear()
    trainer.train_schedule(None, None, PAPER_SCHEDULE)  # resumed
    assert calls == [(50, 120, "all", 0.02), (120, 160, "all", 0.002)]
    calls.clear()
    trainer.train_schedule(None, None, PAPER_SCHEDULE)  # finished: nothing to do
    assert calls == []
    trainer.epoch = 0


def test_train_schedule_tells_a_later_stages_bad_layers_before_the_first(trainer,
                                                                          monkeypatch):
    calls = []
    monkeypatch.setattr(trainer, "train", lambda *args, **kwargs: calls.append(kwargs))
    schedule = {1: {"learning_rate": 0.02, "layers": "heads"},
                2: {"learning_rate": 0.02, "layers": "rpn"},  # the paper code's preset
                3: {"learning_rate": 0.002, "layers": "al"}}
    with pytest.raises(ValueError, match="layers='al' selects no layer to train: expected "
                                         "one of 'heads', .*'all', 'rpn', '2\\+' or"):
        trainer.train_schedule(None, None, schedule)
    assert calls == []
    schedule[3]["layers"] = "all"
    trainer.epoch = 0
    trainer.train_schedule(None, None, schedule)
    assert [c["layers"] for c in calls] == ["heads", "rpn", "all"]



@pytest.mark.parametrize("schedule, message", [
    ({}, r"schedule: expected \{end_epoch: .*got an empty one"),  # was max()'s error
    ([(1, {"learning_rate": 0.02, "layers": "heads"})], r"expected \{end_epoch: .*got list"),
    ({1: {"learning_rate": 0.02, "layers": "heads"}, "x": {}},
     r"expected distinct integer end epochs >= 1, got \[1, 'x'\]"),
    ({1: {"learning_rate": 0.02, "layers": "heads"}, "1": {}},
     r"expected distinct integer end epochs"),
    ({0: {"learning_rate": 0.02, "layers": "heads"}}, r"end epochs >= 1, got \[0\]"),
    # The last stage's mistakes failed only when it began: a KeyError, train()'s check.
    ({1: {"learning_rate": 0.02, "layers": "heads"}, 2: {"layers": "all"}},
     r"schedule\[2\]: expected \{\"learning_rate\": float, \"layers\": str\}"),
    ({1: {"learning_rate": 0.02, "layers": "heads"},
      2: {"learning_rate": float("nan"), "layers": "all"}},
     r"schedule\[2\]: expected a finite learning_rate >= 0, got nan"),
])
def test_train_schedule_refuses_a_malformed_schedule_first(trainer, monkeypatch, schedule,
                                                           message):
    calls = []
    monkeypatch.setattr(trainer, "train", lambda *args, **kwargs: calls.append(kwargs))
    trainer.epoch = 0
    with pytest.raises(ValueError, match=message):
        trainer.train_schedule(None, None, schedule)
    assert calls == []


def test_train_schedule_reads_json_end_epochs(trainer, monkeypatch):
    calls = []
    monkeypatch.setattr(trainer, "train", lambda *args, **kwargs: calls.append(kwargs))
    trainer.epoch = 0
    trainer.train_schedule(None, None, {"2": {"learning_rate": 0.01, "layers": "all"},
                                        "1": {"learning_rate": 0.02, "layers": "heads"}})
    assert [(c["epochs"], c["layers"]) for c in calls] == [(1, "heads"), (2, "all")]


def test_detect_and_reuse_need_inference_mode(trainer):
    image = random_images(13, (64, 64, 3))[0]
    with pytest.raises(ValueError, match="inference mode"):
        trainer.detect([image], [image])
    with pytest.raises(ValueError, match="inference mode"):
        trainer.encode_reference([image])
    with pytest.raises(ValueError, match="inference mode"):
        trainer.encode_queries([image])


# ---------------------------------------------------------------- training
@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("siamese_coco")
    write_siamese_coco(str(root))
    dataset = IndexedCocoDataset()
    dataset.load_coco(str(root), "train", subsubset=None)
    dataset.prepare()
    return dataset


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.slow
def test_train_writes_checkpoints_and_resumes_after_an_interruption(trainer, coco,
                                                                     monkeypatch):
    schedule = {3: {"learning_rate": 0.01, "layers": "heads"},
                4: {"learning_rate": 0.001, "layers": "all"}}
    history = trainer.train(coco, coco, learning_rate=0.01, epochs=1, layers="heads")
    first = os.path.join(trainer.log_dir, "siamese_mrcnn_0001.h5")
    assert sorted(os.listdir(trainer.log_dir))[:1] == ["siamese_mrcnn_0001.h5"]
    for name in ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
                 "mrcnn_mask_loss", "loss", "val_loss"):
        assert len(history.history[name]) == 1 and np.isfinite(history.history[name][0])
    assert trainer.epoch == 1
    digest = _digest(first)

    # "Interrupted" after epoch 1: a new process resumes from the latest checkpoint.
    resumed = SiameseMaskRCNN("training", tiny_config(), trainer.model_dir)
    resumed.load_latest_checkpoint(schedule)
    assert resumed.epoch == 1
    for key, variable in weights_io.weight_map(trainer.keras_model).items():
        np.testing.assert_array_equal(
            np.asarray(weights_io.weight_map(resumed.keras_model)[key]), np.asarray(variable))
    fits = []
    fit = resumed.keras_model.fit

    def spy_fit(*args, **kwargs):
        fits.append((kwargs["initial_epoch"], kwargs["epochs"]))
        return fit(*args, **kwargs)

    monkeypatch.setattr(resumed.keras_model, "fit", spy_fit)
    resumed.train_schedule(coco, coco, schedule, until=2)
    assert fits == [(1, 2)]
    assert resumed.epoch == 2
    assert sorted(f for f in os.listdir(resumed.log_dir) if f.endswith(".h5")) == [
        "siamese_mrcnn_0001.h5", "siamese_mrcnn_0002.h5"]
    assert _digest(first) == digest  # epoch 1 was not trained again
    assert resumed.get_latest_checkpoint().endswith("siamese_mrcnn_0002.h5")


@pytest.mark.slow
def test_frcnn_trains_without_mask_loss(coco, tmp_path):
    keras.utils.set_random_seed(2)
    model = SiameseMaskRCNN("training", tiny_config(MODEL="frcnn"), str(tmp_path))
    history = model.train(coco, coco, learning_rate=0.01, epochs=1, layers="all")
    assert "mrcnn_mask_loss" not in history.history
    assert np.isfinite(history.history["mrcnn_class_loss"][0])
    assert os.listdir(os.path.join(str(tmp_path), "siamese_frcnn_tiny_test")).count(
        "siamese_mrcnn_0001.h5") == 1


# ---------------------------------------------------------------- learning
COLOURS = {1: (220, 40, 40), 2: (40, 60, 220)}  # category 1: red squares, 2: blue discs


def _draw_two_category_coco(root: str, subset: str, count: int,
                            rng: np.random.Generator) -> None:
    """64 px noisy grey images, each with a red square and a blue disc (sometimes a
    third object), written in COCO format (RLE masks)."""
    size = 64
    writer = CocoSplitWriter(root, subset)
    yy, xx = np.mgrid[:size, :size]
    for index in range(count):
        image = rng.normal(110, 12, (size, size, 3))
        taken = np.zeros((size, size), dtype=bool)
        for category in [1, 2] + [int(c) for c in rng.integers(1, 3, rng.integers(0, 2))]:
            for _ in range(20):  # a free place, else the object is left out
                side = int(rng.integers(12, 22))
                y, x = rng.integers(0, size - side, 2)
                if category == 1:
                    mask = (yy >= y) & (yy < y + side) & (xx >= x) & (xx < x + side)
                else:
                    r = side / 2
                    mask = (yy - y - r) ** 2 + (xx - x - r) ** 2 <= r * r
                if not (mask & taken).any():
                    break
            else:
                continue
            taken |= mask
            image[mask] = np.array(COLOURS[category]) + rng.normal(0, 10, (mask.sum(), 3))
            writer.add_annotation(index + 1, category, compressed_rle(mask),
                                  area=mask.sum(), bbox=mask_bbox(mask))
        writer.add_image(index + 1, np.clip(image, 0, 255).astype(np.uint8))
    writer.write([{"id": 1, "name": "red-square"}, {"id": 2, "name": "blue-disc"}])


def _instance_scores(model, dataset, rng) -> dict:
    """{(reference category, instance category): [best score on each instance]}: the
    highest score of a detection overlapping the instance (IoU > 0.5), 0 if none."""
    scores = {(a, b): [] for a in (1, 2) for b in (1, 2)}
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        boxes = utils.extract_bboxes(masks)
        for category in (1, 2):
            # A reference instance from another image.
            other = int(rng.choice([i for i in dataset.category_image_index[category]
                                    if i != image_id]))
            other_masks, other_ids = dataset.load_mask(other)
            y1, x1, y2, x2 = utils.extract_bboxes(other_masks)[
                int(rng.choice(np.flatnonzero(other_ids == category)))]
            reference = dataset.load_image(other)[y1:y2, x1:x2]
            (result,) = model.detect([reference], [image])
            overlaps = (utils.compute_overlaps(boxes, result["rois"]) if len(result["rois"])
                        else np.zeros((len(boxes), 0)))
            for overlap, instance_category in zip(overlaps, class_ids):
                hits = result["scores"][overlap > 0.5]
                scores[(category, int(instance_category))].append(
                    float(hits.max()) if hits.size else 0.0)
    return scores


@pytest.mark.slow
def test_model_learns_to_find_the_reference_category(tmp_path):
    """After ~1 min of training on two categories per image, a reference of either
    category makes the model score that category's instances above the other's."""
    rng = np.random.default_rng(0)
    datasets = []
    for subset, count in (("train", 40), ("val", 12)):
        _draw_two_category_coco(str(tmp_path / "data"), subset, count, rng)
        dataset = IndexedCocoDataset()
        dataset.load_coco(str(tmp_path / "data"), subset, subsubset=None)
        dataset.prepare()
        datasets.append(dataset)
    train, val = datasets
    # Box-only ('frcnn'): the matching is the same, and without the mask head a step
    # is several times cheaper on a CPU.
    fields = dict(MODEL="frcnn", POST_NMS_ROIS_TRAINING=64, POST_NMS_ROIS_INFERENCE=64,
                  TRAIN_ROIS_PER_IMAGE=32, DETECTION_MIN_CONFIDENCE=0.0, STEPS_PER_EPOCH=300)
    keras.utils.set_random_seed(0)
    model = SiameseMaskRCNN("training", tiny_config(IMAGES_PER_GPU=4, **fields),
                            str(tmp_path / "logs"))
    model.train(train, val, learning_rate=0.01, epochs=1, layers="all")
    detector = SiameseMaskRCNN("inference", tiny_config(**fields), str(tmp_path / "logs"))
    detector.load_weights(model.get_latest_checkpoint())

    scores = _instance_scores(detector, val, np.random.default_rng(1))
    means = {key: float(np.mean(value)) for key, value in scores.items()}
    assert means[(1, 1)] > means[(1, 2)] + 0.5, means
    assert means[(2, 2)] > means[(2, 1)] + 0.5, means
