"""Reference drawing and the Siamese training generator on a hand-made COCO set."""
import logging

import numpy as np
import pytest

from siamese_mrcnn.coco import IndexedCocoDataset
from siamese_mrcnn.config import Config
from siamese_mrcnn.data import (ReferenceNotFoundError, SiameseDataGenerator,
                                get_one_target, siamese_data_generator)
from tests.helpers.siamese_coco import IMAGES, INTERNAL, write_siamese_coco

COCO_ID_OF = {internal: coco for coco, internal in INTERNAL.items()}


class DataConfig(Config):
    """64 px queries, references of at most 32 px: no instance needs resizing."""
    BACKBONE = "resnet_tiny"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    TARGET_MIN_DIM = 8
    TARGET_MAX_DIM = 32
    IMAGES_PER_GPU = 2
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    MAX_GT_INSTANCES = 4
    MAX_CONSECUTIVE_FAILURES = 3


def _config(**fields):
    return type("TestConfig", (DataConfig,), fields)()


@pytest.fixture
def coco(tmp_path):
    arrays = write_siamese_coco(str(tmp_path))
    dataset = IndexedCocoDataset()
    dataset.load_coco(str(tmp_path), "train", subsubset=None)
    dataset.prepare()
    return dataset, arrays, tmp_path


def _index_of(dataset, coco_image_id):
    return [info["id"] for info in dataset.image_info].index(coco_image_id)


def _crops(arrays, category, iscrowd=0, exclude=()):
    """{(COCO image id, box): pixels} of the instances of an internal category."""
    crops = {}
    for image_id, objects in IMAGES:
        for category_id, box, crowd, _ in objects:
            if (box is not None and crowd == iscrowd and image_id not in exclude
                    and INTERNAL[category_id] == category):
                y1, x1, y2, x2 = box
                crops[(image_id, box)] = arrays[image_id][y1:y2, x1:x2]
    return crops


def _match(content, crops):
    """The key of the crop equal to content, or None."""
    for key, crop in crops.items():
        if crop.shape == content.shape and np.array_equal(crop, content):
            return key
    return None


def _window_content(reference, window):
    """Content inside the window; asserts the padding around it is zero."""
    y1, x1, y2, x2 = window
    outside = np.ones(reference.shape[:2], dtype=bool)
    outside[y1:y2, x1:x2] = False
    assert not reference[outside].any(), "padding must be zero"
    return reference[y1:y2, x1:x2]


############################################################
#  get_one_target
############################################################

def test_reference_is_a_crop_of_an_instance_from_another_image(coco):
    dataset, arrays, _ = coco
    config = DataConfig()
    query = _index_of(dataset, 101)
    rng = np.random.default_rng(0)
    sources = set()
    for _ in range(20):
        reference, window, scale, padding, crop = get_one_target(
            1, dataset, config, exclude_image_id=query, return_all=True, rng=rng)
        assert reference.shape == (32, 32, 3) and reference.dtype == np.uint8
        assert scale == 1
        key = _match(_window_content(reference, window), _crops(arrays, 1, exclude=(101,)))
        assert key is not None, "reference must equal a crop of a non-crowd instance"
        sources.add(key[0])
    # 136 is indexed for class 1 but its instance does not rasterise: redrawn.
    assert sources == {108, 115}


def test_reference_falls_back_to_the_query_when_no_other_image_has_it(coco):
    dataset, arrays, _ = coco
    query = _index_of(dataset, 129)  # the only image of class 3
    reference, window, *_ = get_one_target(3, dataset, DataConfig(), exclude_image_id=query,
                                           return_all=True)
    assert _match(_window_content(reference, window), _crops(arrays, 3)) == (129, (8, 8, 40, 40))


def test_allow_same_image(coco):
    dataset, arrays, _ = coco
    query = _index_of(dataset, 101)
    rng = np.random.default_rng(1)
    sources = set()
    for _ in range(30):
        reference, window, *_ = get_one_target(1, dataset, DataConfig(), exclude_image_id=query,
                                               allow_same_image=True, return_all=True, rng=rng)
        sources.add(_match(_window_content(reference, window), _crops(arrays, 1))[0])
    assert 101 in sources


def test_large_instances_are_resized_to_the_target_size(coco):
    dataset, arrays, _ = coco
    config = _config(TARGET_MIN_DIM=10, TARGET_MAX_DIM=16)
    rng = np.random.default_rng(2)
    for _ in range(5):
        reference, original = get_one_target(2, dataset, config, return_original_size=True,
                                             rng=rng)
        assert reference.shape == (16, 16, 3)
        assert original[:2] in [(20, 20), (16, 12), (28, 24)]  # the class-2 boxes
        rows, cols = np.nonzero(reference.any(axis=2))
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        # Long side scaled to 16 (the 16 x 12 box is already small enough).
        assert max(height, width) == 16
        assert height / width == pytest.approx(original[0] / original[1], rel=0.15)


def test_target_size_limit_redraws_small_instances(coco):
    dataset, _, _ = coco
    rng = np.random.default_rng(3)
    sizes = {get_one_target(2, dataset, DataConfig(), target_size_limit=18,
                            return_original_size=True, rng=rng)[1][:2] for _ in range(15)}
    assert sizes <= {(20, 20), (28, 24)} and sizes


def test_reference_errors(coco):
    dataset, _, _ = coco
    config = DataConfig()
    with pytest.raises(ReferenceNotFoundError, match="category 5"):
        get_one_target(5, dataset, config)  # no image has class 5
    for bad in (0, 6, "1"):
        with pytest.raises(ValueError, match="category"):
            get_one_target(bad, dataset, config)
    with pytest.raises(ValueError, match="max_attempts"):
        get_one_target(1, dataset, config, max_attempts=0)
    # Only the image whose instance does not rasterise: every attempt fails.
    dataset.category_image_index[1] = np.array([_index_of(dataset, 136)])
    with pytest.raises(ReferenceNotFoundError, match="4 attempts"):
        get_one_target(1, dataset, config, max_attempts=4)


def test_unreadable_reference_images_are_redrawn(coco, caplog):
    dataset, arrays, root = coco
    (root / "train2017" / "000000000108.png").write_bytes(b"broken")
    rng = np.random.default_rng(4)
    with caplog.at_level(logging.WARNING, logger="siamese_mrcnn.data"):
        for _ in range(5):
            reference, window, *_ = get_one_target(2, dataset, DataConfig(), return_all=True,
                                                   rng=rng)
            assert _match(_window_content(reference, window), _crops(arrays, 2))[0] == 122
    assert any("Reference image {}".format(_index_of(dataset, 108)) in r.getMessage()
               for r in caplog.records)
    (root / "train2017" / "000000000122.png").write_bytes(b"broken")
    with pytest.raises(ReferenceNotFoundError, match="last error"):
        get_one_target(2, dataset, DataConfig(), rng=rng)


############################################################
#  Generator
############################################################

def _unmold(array, config):
    return np.round(array + config.MEAN_PIXEL).astype(np.uint8)


def test_batch_order_shapes_and_dtypes(coco):
    dataset, _, _ = coco
    config = DataConfig()
    generator = SiameseDataGenerator(dataset, config, seed=1)
    item = generator[0]
    assert isinstance(item, tuple) and len(item) == 1
    images, meta, targets, rpn_match, rpn_bbox, class_ids, boxes, masks = item[0]
    num_anchors = 3 * (16 ** 2 + 8 ** 2 + 4 ** 2 + 2 ** 2 + 1)
    expected = [
        (images, (2, 64, 64, 3), np.float32), (meta, (2, 14), np.float32),
        (targets, (2, 1, 32, 32, 3), np.float32), (rpn_match, (2, num_anchors, 1), np.int32),
        (rpn_bbox, (2, 32, 4), np.float32), (class_ids, (2, 4), np.int32),
        (boxes, (2, 4, 4), np.int32), (masks, (2, 56, 56, 4), np.uint8),
    ]
    for array, shape, dtype in expected:
        assert array.shape == shape and array.dtype == dtype
    assert set(np.unique(rpn_match)) <= {-1, 0, 1} and (rpn_match == 1).any()
    np.testing.assert_array_equal(meta[:, 12:], 1)  # both Siamese classes active
    np.testing.assert_array_equal(meta[:, 4:7], [[64, 64, 3]] * 2)


def _check_sample(arrays, config, images, meta, targets, class_ids, boxes, masks, b):
    """Asserts that sample b is about one category, returns (image id, category)."""
    image_id = int(meta[b, 0])
    coco_image_id = dict(enumerate(i for i, _ in IMAGES))[image_id]
    np.testing.assert_array_equal(_unmold(images[b], config), arrays[coco_image_id])
    n = int((class_ids[b] != 0).sum())
    assert n >= 1 and not class_ids[b, n:].any() and not boxes[b, n:].any()
    assert not masks[b, :, :, n:].any() and masks[b, :, :, :n].any(axis=(0, 1)).all()
    objects = dict(IMAGES)[coco_image_id]
    # The category is the one whose ground truth matches the boxes.
    got = sorted((int(c), tuple(int(v) for v in box))
                 for c, box in zip(class_ids[b, :n], boxes[b, :n]))
    candidates = {}
    for category_id, box, crowd, _ in objects:
        if box is not None:
            candidates.setdefault(INTERNAL[category_id], []).append((-1 if crowd else 1, box))
    matches = [c for c, gt in candidates.items() if sorted(gt) == got]
    assert len(matches) == 1, "gt must be exactly one category's instances: {}".format(got)
    category = matches[0]
    for k in range(targets.shape[1]):
        reference = _unmold(targets[b, k], config)
        rows, cols = np.nonzero(reference.any(axis=2))
        window = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        key = _match(_window_content(reference, window),
                     _crops(arrays, category, exclude=(coco_image_id,)))
        other_images = [i for i, objs in IMAGES if i != coco_image_id and any(
            INTERNAL[c] == category and box is not None and not crowd
            for c, box, crowd, _ in objs)]
        if other_images:
            assert key is not None, "reference from another image, same category"
        else:
            assert _match(reference[window[0]:window[2], window[1]:window[3]],
                          _crops(arrays, category)) is not None
    return coco_image_id, category


def test_samples_keep_only_the_chosen_category(coco):
    dataset, arrays, _ = coco
    dataset.set_active_classes([1, 2])
    config = _config(NUM_TARGETS=2)
    generator = SiameseDataGenerator(dataset, config, seed=4)
    seen = set()
    for epoch in range(8):
        generator.epoch = epoch
        for idx in range(len(generator)):
            images, meta, targets, _, _, class_ids, boxes, masks = generator[idx][0]
            assert targets.shape == (2, 2, 32, 32, 3)
            for b in range(2):
                seen.add(_check_sample(arrays, config, images, meta, targets, class_ids,
                                       boxes, masks, b))
    # Both categories of image 108 occur; 136 (no active instance once loaded) never.
    assert {(108, 1), (108, 2)} <= seen
    assert all(image_id != 136 for image_id, _ in seen)


def test_crowds_of_the_chosen_category_stay_negative(coco):
    dataset, _, _ = coco
    dataset.set_active_classes([1])
    generator = SiameseDataGenerator(dataset, DataConfig(), seed=5, shuffle=False)
    # Eligible images in order: 101, 108, 115, 136; batch 1 = 115 and 136 -> wraps to 101.
    _, meta, _, _, _, class_ids, boxes, _ = generator[1][0]
    assert meta[:, 0].tolist() == [_index_of(dataset, 115), _index_of(dataset, 101)]
    assert class_ids[0].tolist() == [1, -1, 0, 0]
    assert boxes[0, :2].tolist() == [[10, 10, 28, 40], [40, 40, 60, 60]]
    assert class_ids[1].tolist() == [1, 0, 0, 0]


def test_active_classes_select_images_and_categories(coco):
    dataset, arrays, _ = coco
    dataset.set_active_classes([2])
    config = _config(MAX_GT_INSTANCES=1)
    generator = SiameseDataGenerator(dataset, config, seed=6)
    assert sorted(dataset.image_info[i]["id"] for i in generator.image_ids) == [108, 122]
    assert len(generator) == 1
    images, meta, targets, _, _, class_ids, boxes, masks = generator[0][0]
    for b in range(2):
        assert class_ids[b].tolist() == [1]  # 2 instances in 122, MAX_GT_INSTANCES 1
    dataset.set_active_classes([5])
    with pytest.raises(ValueError, match="active class"):
        SiameseDataGenerator(dataset, config)


def test_generator_is_deterministic(coco):
    dataset, _, _ = coco
    config = DataConfig()
    first, second = (SiameseDataGenerator(dataset, config, seed=7) for _ in range(2))
    other = SiameseDataGenerator(dataset, config, seed=8)
    differs = False
    for idx in range(len(first)):
        a, b, again, c = first[idx][0], second[idx][0], first[idx][0], other[idx][0]
        for x, y, z in zip(a, b, again):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)
        differs |= any(not np.array_equal(x, y) for x, y in zip(a, c))
    assert differs
    np.random.seed(11)
    seeded = SiameseDataGenerator(dataset, config)
    np.random.seed(11)
    assert SiameseDataGenerator(dataset, config).seed == seeded.seed


def test_augmentation_is_applied_and_reproducible(coco):
    from mrcnn.compat import import_imgaug
    imgaug = import_imgaug()
    dataset, arrays, _ = coco
    config = DataConfig()
    flip = imgaug.augmenters.Fliplr(0.5)
    first, second = (SiameseDataGenerator(dataset, config, augmentation=flip, seed=13)
                     for _ in range(2))
    flipped = unflipped = 0
    for idx in range(len(first)):
        a, b = first[idx][0], second[idx][0]
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        for image, meta in zip(a[0], a[1]):
            original = arrays[IMAGES[int(meta[0])][0]]
            image = _unmold(image, config)
            flipped += np.array_equal(image, original[:, ::-1])
            unflipped += np.array_equal(image, original)
    assert flipped and unflipped and flipped + unflipped == 2 * len(first)


def test_epochs_reshuffle_the_eligible_images(coco):
    dataset, _, _ = coco
    generator = SiameseDataGenerator(dataset, DataConfig(), seed=9)
    orders = [generator.epoch_order(e).tolist() for e in range(4)]
    assert all(sorted(o) == sorted(generator.image_ids.tolist()) for o in orders)
    assert len({tuple(o) for o in orders}) > 1
    generator.on_epoch_end()
    assert generator.epoch == 1
    unshuffled = SiameseDataGenerator(dataset, DataConfig(), shuffle=False)
    assert unshuffled.epoch_order(3).tolist() == unshuffled.image_ids.tolist()


def test_steps_per_epoch_runs_several_passes(coco):
    dataset, _, _ = coco
    dataset.set_active_classes([2, 3])  # images 108, 122, 129
    generator = SiameseDataGenerator(dataset, DataConfig(), seed=14, steps_per_epoch=6)
    assert len(generator) == 6
    ids = [int(i) for idx in range(6) for i in generator[idx][0][1][:, 0]]
    # 12 samples = 4 passes over the 3 images, each pass a permutation.
    for p in range(4):
        assert sorted(ids[3 * p:3 * p + 3]) == sorted(generator.image_ids.tolist())
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="steps_per_epoch"):
            SiameseDataGenerator(dataset, DataConfig(), steps_per_epoch=bad)


def test_bad_samples_are_logged_and_skipped(coco, caplog):
    dataset, _, root = coco
    (root / "train2017" / "000000000101.png").write_bytes(b"not a png")
    dataset.set_active_classes([1])
    generator = SiameseDataGenerator(dataset, DataConfig(), seed=10, shuffle=False)
    with caplog.at_level(logging.WARNING, logger="siamese_mrcnn.data"):
        _, meta, *_ = generator[0][0]
    # Order 101 (broken), 108, 115: the batch is 108 and 115.
    assert meta[:, 0].tolist() == [_index_of(dataset, 108), _index_of(dataset, 115)]
    assert any("Skipping image {}".format(_index_of(dataset, 101)) in r.getMessage()
               and "000000000101.png" in r.getMessage() for r in caplog.records)


def test_consecutive_failures_raise(coco):
    dataset, _, root = coco
    for image_id, _ in IMAGES:
        (root / "train2017" / "{:012d}.png".format(image_id)).write_bytes(b"broken")
    generator = SiameseDataGenerator(dataset, DataConfig(), seed=12)
    with pytest.raises(RuntimeError, match="3 consecutive samples failed"):
        generator[0]
    with pytest.raises(IndexError):
        generator[len(generator)]


############################################################
#  The paper code's siamese_data_generator
############################################################

def test_old_generator_signature_defaults_and_next(coco, caplog):
    """Original defaults: batch_size 1, Fliplr(0.5); next(g) -> (inputs, outputs) lists
    with bool masks, endlessly across epochs; fit gets the same object's uint8 items."""
    dataset, _, _ = coco
    config = DataConfig()
    generator = siamese_data_generator(dataset, config, seed=3)
    assert isinstance(generator, SiameseDataGenerator)
    assert generator.batch_size == 1
    assert type(generator.augmentation).__name__ == "Fliplr"
    assert generator.augmentation.p.p.value == 0.5
    count = len(generator)
    batches = [next(generator) for _ in range(count + 2)]  # into the second epoch
    assert generator.epoch == 1
    for inputs, outputs in batches:
        assert isinstance(inputs, list) and outputs == []
        assert len(inputs) == 8 and inputs[0].shape == (1, 64, 64, 3)
        assert inputs[7].dtype == bool and inputs[7].any()
    # The PyDataset item of the same (epoch, batch) holds the same arrays, masks uint8.
    item = generator[1][0]
    np.testing.assert_array_equal(item[7].astype(bool), batches[count + 1][0][7])
    np.testing.assert_array_equal(item[0], batches[count + 1][0][0])
    assert siamese_data_generator(dataset, config, augmentation=None).augmentation is None
    with caplog.at_level(logging.WARNING, logger="siamese_mrcnn.data"):
        siamese_data_generator(dataset, config, diverse=0.5)
    assert "diverse=0.5 is ignored" in caplog.text


def test_random_rois_and_detection_targets(coco):
    """random_rois adds rpn_rois to the inputs; detection_targets adds rois to the inputs
    and the class / box / mask targets as outputs (Matterport's shapes)."""
    dataset, _, _ = coco
    config = _config(USE_RPN_ROIS=False, TRAIN_ROIS_PER_IMAGE=8, ROI_POSITIVE_RATIO=0.25)
    generator = siamese_data_generator(dataset, config, augmentation=None, random_rois=20,
                                       batch_size=2, detection_targets=True, seed=2)
    inputs, outputs = next(generator)
    assert len(inputs) == 10
    rpn_rois, rois = inputs[8], inputs[9]
    assert rpn_rois.shape == (2, 20, 4) and rois.shape == (2, 8, 4)
    class_ids, bbox, masks = outputs
    assert class_ids.shape == (2, 8, 1)
    assert bbox.shape == (2, 8, config.NUM_CLASSES, 4)
    assert masks.shape == (2, 8) + tuple(config.MASK_SHAPE) + (config.NUM_CLASSES,)
    assert set(np.unique(class_ids)) <= {0, 1} and (class_ids == 1).any()
    # Random ROIs lie inside the 64 px image.
    assert rpn_rois.min() >= 0 and rpn_rois.max() <= 64
    # As a PyDataset item: (inputs, outputs) tuples.
    item = generator[0]
    assert len(item) == 2 and len(item[0]) == 10 and len(item[1]) == 3
    with pytest.raises(ValueError, match="random_rois"):
        SiameseDataGenerator(dataset, config, random_rois=-1)
