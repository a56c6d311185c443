"""Tests of mrcnn.data: image meta, molding, load_image_gt, DataGenerator, check_image."""
import contextlib
import logging
import math
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import compat, data, utils
from mrcnn.config import Config

HEIGHT, WIDTH = 80, 120  # source image size: resized by 64/120 into the 64x64 input


class TinyConfig(Config):
    NAME = "data_test"
    BACKBONE = "resnet_tiny"
    IMAGE_MIN_DIM = 32
    IMAGE_MAX_DIM = 64
    NUM_CLASSES = 1 + 3
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    MAX_GT_INSTANCES = 3
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (14, 14)
    TRAIN_ROIS_PER_IMAGE = 16
    MAX_CONSECUTIVE_FAILURES = 3


class BoxesDataset(utils.Dataset):
    """Synthetic images with rectangular instances; some ids can be made to fail.

    boxes_per_image: list, per image, of (class_id, y1, x1, y2, x2) in source pixels.
    fail_ids: image ids whose load_image raises OSError.
    """

    def __init__(self, boxes_per_image, fail_ids=(), source="shapes"):
        super().__init__()
        self.fail_ids = set(fail_ids)
        for class_id, name in enumerate(["square", "wide", "tall"], start=1):
            self.add_class(source, class_id, name)
        rng = np.random.RandomState(42)
        for i, boxes in enumerate(boxes_per_image):
            image = rng.randint(0, 60, (HEIGHT, WIDTH, 3)).astype(np.uint8)
            for k, (_, y1, x1, y2, x2) in enumerate(boxes):
                image[y1:y2, x1:x2] = 100 + 30 * k
            self.add_image(source, image_id=i, path=None, image=image, boxes=boxes)
        self.prepare()

    def load_image(self, image_id):
        if image_id in self.fail_ids:
            raise OSError(f"cannot read image {image_id}")
        return self.image_info[image_id]["image"]

    def load_mask(self, image_id):
        boxes = self.image_info[image_id]["boxes"]
        mask = np.zeros((HEIGHT, WIDTH, len(boxes)), dtype=bool)
        for k, (_, y1, x1, y2, x2) in enumerate(boxes):
            mask[y1:y2, x1:x2, k] = True
        class_ids = np.array([b[0] for b in boxes], dtype=np.int32)
        return mask, class_ids


TWO_BOXES = [(1, 10, 10, 40, 50), (2, 45, 60, 75, 110)]
FIVE_BOXES = [(1, 2, 2, 12, 20), (2, 20, 5, 40, 30), (3, 45, 10, 70, 40),
              (1, 5, 60, 30, 100), (2, 40, 70, 78, 115)]


@pytest.fixture(scope="module")
def config():
    return TinyConfig()


def make_dataset(n=5, fail_ids=(), boxes=TWO_BOXES):
    return BoxesDataset([boxes] * n, fail_ids=fail_ids)


def batch_ids(batch):
    """Image ids of a DataGenerator item, read back from its image meta."""
    return data.parse_image_meta(batch[0][1])["image_id"].tolist()


############################################################
#  load_image_gt
############################################################

def test_load_image_gt_matches_resize_and_boxes(config):
    dataset = make_dataset(n=2)
    image, meta, class_ids, bbox, mask = data.load_image_gt(dataset, config, 1)

    raw = dataset.load_image(1)
    expected_image, window, scale, padding, _ = utils.resize_image(
        raw, min_dim=32, max_dim=64, mode="square")
    np.testing.assert_array_equal(image, expected_image)
    assert image.shape == (64, 64, 3)
    assert scale == pytest.approx(64 / 120)
    assert window == (10, 0, 53, 64)  # 80 * 64/120 = 42.7 -> 43 rows, top pad (64-43)//2
    raw_mask, _ = dataset.load_mask(1)
    np.testing.assert_array_equal(mask, utils.resize_mask(raw_mask, scale, padding))
    assert mask.shape == (64, 64, 2) and mask.dtype == bool

    assert class_ids.tolist() == [1, 2]
    np.testing.assert_array_equal(bbox, utils.extract_bboxes(mask))
    # Box 1 (10, 10, 40, 50) scaled by 8/15 and shifted by the 10-row top padding.
    np.testing.assert_allclose(bbox[0], [10 + 10 * scale, 10 * scale, 10 + 40 * scale,
                                         50 * scale], atol=1.01)

    parsed = data.parse_image_meta(meta[np.newaxis])
    assert parsed["image_id"][0] == 1
    assert parsed["original_image_shape"][0].tolist() == [80, 120, 3]
    assert parsed["image_shape"][0].tolist() == [64, 64, 3]
    assert parsed["window"][0].tolist() == list(window)
    assert parsed["scale"][0] == pytest.approx(scale)
    assert parsed["active_class_ids"][0].tolist() == [1, 1, 1, 1]


def test_load_image_gt_mini_mask(config):
    dataset = make_dataset(n=1)
    _, _, _, full_bbox, full_mask = data.load_image_gt(dataset, config, 0)
    _, _, _, bbox, mini = data.load_image_gt(dataset, config, 0, use_mini_mask=True)
    assert mini.shape == (14, 14, 2) and mini.dtype == bool
    np.testing.assert_array_equal(bbox, full_bbox)
    np.testing.assert_array_equal(mini, utils.minimize_mask(full_bbox, full_mask, (14, 14)))
    assert mini.all()  # rectangles fill their boxes


def test_load_image_gt_fliplr_flips_image_and_mask(config):
    iaa = compat.imgaug_augmenters()
    dataset = make_dataset(n=1)
    image, _, class_ids, bbox, mask = data.load_image_gt(dataset, config, 0)
    f_image, _, f_class_ids, f_bbox, f_mask = data.load_image_gt(
        dataset, config, 0, augmentation=iaa.Fliplr(1.0))
    np.testing.assert_array_equal(f_image, image[:, ::-1])
    np.testing.assert_array_equal(f_mask, mask[:, ::-1])
    assert f_class_ids.tolist() == class_ids.tolist()
    # x1' = W - x2 and x2' = W - x1 (x2 exclusive).
    np.testing.assert_array_equal(f_bbox[:, [1, 3]], 64 - bbox[:, [3, 1]])
    np.testing.assert_array_equal(f_bbox[:, [0, 2]], bbox[:, [0, 2]])


def test_load_image_gt_mask_safe_augmenters_only_touch_masks(config):
    iaa = compat.imgaug_augmenters()
    dataset = make_dataset(n=1)
    image, _, _, _, mask = data.load_image_gt(dataset, config, 0)
    # Multiply is not in MASK_AUGMENTERS: it must change the image, not the masks.
    aug = iaa.Multiply(0.5)
    m_image, _, _, _, m_mask = data.load_image_gt(dataset, config, 0, augmentation=aug)
    np.testing.assert_array_equal(m_mask, mask)
    assert not np.array_equal(m_image, image)


def test_load_image_gt_drops_empty_masks(config):
    dataset = make_dataset(n=1)
    original = dataset.load_mask

    def load_mask_with_empty(image_id):
        mask, class_ids = original(image_id)
        mask = np.concatenate([mask, np.zeros_like(mask[:, :, :1])], axis=2)
        return mask, np.append(class_ids, 3).astype(np.int32)

    dataset.load_mask = load_mask_with_empty
    _, _, class_ids, bbox, mask = data.load_image_gt(dataset, config, 0)
    assert class_ids.tolist() == [1, 2]
    assert mask.shape[2] == 2 and bbox.shape == (2, 4)


def test_load_image_gt_active_classes_follow_source(config):
    dataset = utils.Dataset()
    dataset.add_class("a", 1, "a1")
    dataset.add_class("b", 1, "b1")
    dataset.add_class("b", 2, "b2")
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    dataset.add_image("b", image_id=0, path=None)
    dataset.prepare()
    dataset.load_image = lambda image_id: image
    mask = np.zeros((HEIGHT, WIDTH, 1), bool)
    mask[5:20, 5:20] = True
    dataset.load_mask = lambda image_id: (mask, np.array([2], np.int32))
    cfg = TinyConfig()
    _, meta, class_ids, _, _ = data.load_image_gt(dataset, cfg, 0)
    assert class_ids.tolist() == [2]
    # Internal ids: 0 BG, 1 a.1, 2 b.1, 3 b.2 -> BG and the two "b" classes.
    assert meta[12:].tolist() == [1, 0, 1, 1]


def test_load_image_gt_rejects_mask_not_matching_image(config):
    dataset = make_dataset(n=1)
    dataset.load_mask = lambda image_id: (np.zeros((10, 10, 1), bool),
                                          np.array([1], np.int32))
    with pytest.raises(ValueError, match="mask: expected shape"):
        data.load_image_gt(dataset, config, 0)


def test_load_image_gt_rejects_class_ids_past_the_data_sets_classes(config):
    dataset = make_dataset(n=1)  # BG + 3 classes
    # Source ids in place of internal ones: trained silently as wrong targets.
    dataset.load_mask = lambda image_id: (np.ones((HEIGHT, WIDTH, 2), bool),
                                          np.array([2, 4], np.int32))
    with pytest.raises(ValueError, match=r"below num_classes \(4; negative for crowds\), "
                       r"got \[4\]: load_mask returns internal ids"):
        data.load_image_gt(dataset, config, 0)
    dataset.load_mask = lambda image_id: (np.ones((HEIGHT, WIDTH, 2), bool),
                                          np.array([3, -3], np.int32))  # -3: a crowd
    assert data.load_image_gt(dataset, config, 0)[2].tolist() == [3, -3]


class _Unprepared(utils.Dataset):
    pass


@pytest.mark.parametrize("make", [data.DataGenerator,
                                  lambda dataset, config: next(data.data_generator(
                                      dataset, config))], ids=["DataGenerator", "legacy"])
def test_generators_name_an_unprepared_or_mismatched_data_set(config, make):
    unprepared = _Unprepared()
    unprepared.add_class("shapes", 1, "square")
    unprepared.add_image("shapes", 0, path=None)
    with pytest.raises(ValueError, match=r"expected at least one image, got 0 \(was "
                       r"dataset.prepare\(\) called\?\)"):
        make(unprepared, config)
    unprepared.prepare()  # now 1 image, but BG + 1 classes for a config of 4
    # The model's image meta input is built for NUM_CLASSES: Keras failed at fit with
    # "expected shape=(None, 16), found shape=(None, 14)".
    with pytest.raises(ValueError, match=r"dataset: has 2 classes \(background and 1 added: "
                       r"\['square'\]\), but config.NUM_CLASSES is 4: set NUM_CLASSES = 2"):
        make(unprepared, config)
    prepared = make_dataset(n=2)
    prepared.add_image("shapes", 99, path=None)  # after prepare(): never drawn
    with pytest.raises(ValueError, match=r"dataset: 3 images and 4 classes, but prepare\(\) "
                       r"saw 2 and 4: call dataset.prepare\(\) again"):
        make(prepared, config)


############################################################
#  DataGenerator
############################################################

def test_data_generator_batch_shapes_and_content(config):
    dataset = make_dataset(n=3)
    generator = data.DataGenerator(dataset, config, shuffle=False)
    assert len(generator) == 2  # ceil(3 / 2)
    batch = generator[0]
    assert len(batch) == 1 and isinstance(batch[0], tuple)
    images, meta, rpn_match, rpn_bbox, gt_class_ids, gt_boxes, gt_masks = batch[0]
    num_anchors = data.generate_anchors_for_config(config).shape[0]
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.float32
    assert meta.shape == (2, config.IMAGE_META_SIZE) and meta.dtype == np.float32
    assert rpn_match.shape == (2, num_anchors, 1) and rpn_match.dtype == np.int32
    assert rpn_bbox.shape == (2, 32, 4) and rpn_bbox.dtype == np.float32
    assert gt_class_ids.shape == (2, 3) and gt_class_ids.dtype == np.int32
    assert gt_boxes.shape == (2, 3, 4) and gt_boxes.dtype == np.int32
    assert gt_masks.shape == (2, 14, 14, 3) and gt_masks.dtype == np.uint8
    assert set(np.unique(gt_masks)) <= {0, 1}

    assert batch_ids(batch) == [0, 1]
    image, image_meta, class_ids, bbox, mini = data.load_image_gt(
        dataset, config, 1, use_mini_mask=True)
    np.testing.assert_allclose(images[1], data.mold_image(image, config), atol=1e-4)
    np.testing.assert_allclose(meta[1], image_meta, rtol=1e-6)
    # Two instances, then zero padding up to MAX_GT_INSTANCES.
    assert gt_class_ids[1].tolist() == class_ids.tolist() + [0]
    np.testing.assert_array_equal(gt_boxes[1, :2], bbox)
    assert not gt_boxes[1, 2].any() and not gt_masks[1, :, :, 2].any()
    np.testing.assert_array_equal(gt_masks[1, :, :, :2], mini.astype(np.uint8))
    assert (rpn_match[1] == 1).sum() >= 2  # every gt box has an anchor
    # The last batch is completed from the next pass, so it is full too.
    assert batch_ids(generator[1]) == [2, 0]


def test_pydataset_workers_defaults_and_checks(config):
    # Config defaults: WORKERS=0 loads in the calling thread (Keras' workers=1).
    assert data.pydataset_workers(config) == {"workers": 1, "use_multiprocessing": False}
    threads = type("Threads", (TinyConfig,), {"WORKERS": 3, "USE_MULTIPROCESSING": True})()
    assert data.pydataset_workers(threads) == {"workers": 3, "use_multiprocessing": True}
    # Explicit arguments win; no worker means no process pool.
    assert data.pydataset_workers(threads, workers=0) == {"workers": 1,
                                                          "use_multiprocessing": False}
    assert data.pydataset_workers(config, 2, True) == {"workers": 2,
                                                       "use_multiprocessing": True}
    with pytest.raises(ValueError, match="workers: expected an int >= 0, got -1"):
        data.pydataset_workers(config, workers=-1)


def test_data_generator_subsamples_to_max_gt_instances(config):
    dataset = BoxesDataset([FIVE_BOXES])
    _, _, all_ids, all_boxes, _ = data.load_image_gt(dataset, config, 0)
    (inputs,) = data.DataGenerator(dataset, config, shuffle=False)[0]
    gt_class_ids, gt_boxes = inputs[4], inputs[5]
    for b in range(2):
        assert (gt_class_ids[b] > 0).sum() == 3
        # Each kept row is one of the five instances, with its own class id.
        for class_id, box in zip(gt_class_ids[b], gt_boxes[b]):
            matches = np.where((all_boxes == box).all(axis=1))[0]
            assert len(matches) == 1 and all_ids[matches[0]] == class_id
        assert len({tuple(box) for box in gt_boxes[b]}) == 3


def test_data_generator_order_is_deterministic_given_seed(config):
    dataset = make_dataset(n=6)

    def epochs(seed, count=3):
        generator = data.DataGenerator(dataset, config, seed=seed)
        orders = []
        for _ in range(count):
            orders.append(sum((batch_ids(generator[i]) for i in range(len(generator))), []))
            generator.on_epoch_end()
        return orders

    first = epochs(seed=3)
    assert first == epochs(seed=3)
    assert first != epochs(seed=4)
    for order in first:
        assert sorted(order) == list(range(6))  # each epoch is a permutation
    assert first[0] != first[1]  # reshuffled between epochs

    unshuffled = data.DataGenerator(dataset, config, shuffle=False)
    assert [batch_ids(unshuffled[i]) for i in range(3)] == [[0, 1], [2, 3], [4, 5]]


def test_data_generator_steps_per_epoch_continues_the_stream(config):
    dataset = make_dataset(n=5)
    generator = data.DataGenerator(dataset, config, shuffle=False, steps_per_epoch=2)
    assert len(generator) == 2
    assert [batch_ids(generator[i]) for i in range(2)] == [[0, 1], [2, 3]]
    generator.on_epoch_end()
    assert [batch_ids(generator[i]) for i in range(2)] == [[4, 0], [1, 2]]
    with pytest.raises(IndexError):
        generator[2]


def test_data_generator_skips_bad_samples(config, caplog):
    dataset = make_dataset(n=5, fail_ids={1})
    # Image 3 has no instances: skipped as well.
    dataset.image_info[3]["boxes"] = []
    generator = data.DataGenerator(dataset, config, shuffle=False)
    with caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        assert batch_ids(generator[0]) == [0, 2]  # 1 replaced by the next id
        assert batch_ids(generator[1]) == [2, 4]  # 3 replaced by 4
    messages = [r.getMessage() for r in caplog.records]
    assert any("image id 1" in m and "cannot read image 1" in m for m in messages)
    assert any("image id 3" in m and "no instances" in m for m in messages)


def test_data_generator_stops_after_consecutive_failures(config):
    dataset = make_dataset(n=4, fail_ids={0, 1, 2, 3})
    generator = data.DataGenerator(dataset, config, shuffle=False)
    with pytest.raises(RuntimeError, match=r"3 consecutive samples failed to load; "
                                           r"last image id 2: OSError: cannot read image 2"):
        generator[0]


def test_data_generator_detection_targets(config):
    dataset = make_dataset(n=2)
    generator = data.DataGenerator(dataset, config, shuffle=False, random_rois=20,
                                   detection_targets=True)
    inputs, outputs = generator[0]
    assert len(inputs) == 9
    assert inputs[7].shape == (2, 20, 4)   # rpn_rois
    assert inputs[8].shape == (2, 16, 4)   # rois: TRAIN_ROIS_PER_IMAGE
    class_ids, bbox, masks = outputs
    assert class_ids.shape == (2, 16, 1)
    assert bbox.shape == (2, 16, 4, 4)
    assert masks.shape == (2, 16, 28, 28, 4)


def test_no_augmentation_sources_are_not_augmented(config):
    iaa = compat.imgaug_augmenters()
    dataset = make_dataset(n=2)
    plain = data.DataGenerator(dataset, config, shuffle=False)[0][0][0]
    flipped = data.DataGenerator(dataset, config, shuffle=False,
                                 augmentation=iaa.Fliplr(1.0))[0][0][0]
    skipped = data.DataGenerator(dataset, config, shuffle=False, augmentation=iaa.Fliplr(1.0),
                                 no_augmentation_sources=["shapes"])[0][0][0]
    np.testing.assert_array_equal(flipped, plain[:, :, ::-1])
    np.testing.assert_array_equal(skipped, plain)


def test_legacy_data_generator_yields_matterport_batches(config):
    dataset = make_dataset(n=3, fail_ids={1})
    np.random.seed(0)
    generator = data.data_generator(dataset, config, shuffle=False, batch_size=2)
    inputs, outputs = next(generator)
    assert outputs == ()
    assert len(inputs) == 7 and inputs[0].shape == (2, 64, 64, 3)
    assert data.parse_image_meta(inputs[1])["image_id"].tolist() == [0, 2]
    # Matterport's generator yields bool masks (the PyDataset feeds the graph uint8).
    assert inputs[6].dtype == bool and inputs[6].any()
    uint8_masks = data.DataGenerator(dataset, config, shuffle=False)[0][0][6]
    assert uint8_masks.dtype == np.uint8
    np.testing.assert_array_equal(inputs[6], uint8_masks.astype(bool))
    inputs, _ = next(generator)
    assert data.parse_image_meta(inputs[1])["image_id"].tolist() == [0, 2]


############################################################
#  Keras fit
############################################################

class _ToyLoss(keras.layers.Layer):
    """Adds a loss that reads every input, so bad dtypes or shapes fail the step."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(), initializer="ones", name="w")

    def call(self, inputs):
        images, meta, rpn_match, rpn_bbox, class_ids, boxes, masks = inputs
        total = (tf.reduce_mean(images) + tf.reduce_mean(meta)
                 + tf.reduce_mean(tf.cast(rpn_match, tf.float32)) + tf.reduce_mean(rpn_bbox)
                 + tf.reduce_mean(tf.cast(class_ids, tf.float32))
                 + tf.reduce_mean(tf.cast(boxes, tf.float32))
                 + tf.reduce_mean(tf.cast(masks, tf.float32)))
        self.add_loss(tf.square(self.w) + 0.0 * total)
        return self.w * tf.ones_like(meta[:, :1])


def toy_model(config):
    """7 inputs of the training model, batch fixed to BATCH_SIZE so partial batches fail."""
    b = config.BATCH_SIZE
    inputs = [
        keras.Input(batch_shape=(b, 64, 64, 3)),
        keras.Input(batch_shape=(b, config.IMAGE_META_SIZE)),
        keras.Input(batch_shape=(b, None, 1), dtype="int32"),
        keras.Input(batch_shape=(b, None, 4)),
        keras.Input(batch_shape=(b, None), dtype="int32"),
        keras.Input(batch_shape=(b, None, 4), dtype="int32"),
        keras.Input(batch_shape=(b, 14, 14, None), dtype="uint8"),
    ]
    model = keras.Model(inputs, _ToyLoss()(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    return model


def test_fit_accepts_data_generator_with_worker_threads(config):
    dataset = make_dataset(n=5, fail_ids={2})
    model = toy_model(config)
    generator = data.DataGenerator(dataset, config, workers=2, seed=0)
    history = model.fit(generator, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 2 and losses[1] < losses[0] < 1.0  # w shrinks from 1
    # Keras also calls on_epoch_end() when it resets its iterator: at least 2.
    assert generator.epoch >= 2


def test_fit_propagates_worker_failure(config):
    dataset = make_dataset(n=8)
    # Keras loads two batches in the main thread to build the signature; fail after.
    calls = {"n": 0}
    original = dataset.load_image

    def flaky(image_id):
        calls["n"] += 1
        if calls["n"] > 4:
            raise OSError("disk gone")
        return original(image_id)

    dataset.load_image = flaky
    model = toy_model(config)
    generator = data.DataGenerator(dataset, config, workers=2, shuffle=False)
    with pytest.raises(Exception, match="consecutive samples failed to load"):
        model.fit(generator, epochs=1, verbose=0)


def test_fit_accepts_legacy_generator(config):
    model = toy_model(config)
    generator = data.data_generator(make_dataset(n=2), config, batch_size=2)
    history = model.fit(generator, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    assert math.isfinite(history.history["loss"][0])


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fails the test instead of hanging CI if loading ever blocks."""
    def _timeout(signum, frame):
        raise TimeoutError(f"data loading did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_fit_accepts_data_generator_with_worker_processes(config):
    dataset = make_dataset(n=5, fail_ids={2})
    model = toy_model(config)
    generator = data.DataGenerator(dataset, config, workers=2, use_multiprocessing=True,
                                   seed=0)
    with _deadline(240):
        history = model.fit(generator, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 2 and losses[1] < losses[0] < 1.0


def test_failures_in_worker_processes_stop_fit(config):
    dataset = make_dataset(n=8)
    main_pid = os.getpid()
    original = dataset.load_image

    def fails_in_workers(image_id):
        # Loads in the main process (Keras' signature batches) work; every load in a
        # worker process fails, so the run of failures must stop training there.
        if os.getpid() != main_pid:
            raise OSError("disk gone")
        return original(image_id)

    dataset.load_image = fails_in_workers
    model = toy_model(config)
    generator = data.DataGenerator(dataset, config, workers=2, use_multiprocessing=True,
                                   shuffle=False)
    with _deadline(240), pytest.raises(Exception, match="consecutive samples failed to load"):
        model.fit(generator, epochs=1, verbose=0)
