"""IndexedCocoDataset on a hand-made COCO-format data set; class splits; errors."""
import json
import os

import numpy as np
import pytest

from siamese_mrcnn.coco import (IndexedCocoDataset, get_class_split, split_train_val)
from tests.helpers.siamese_coco import INTERNAL, write_siamese_coco


@pytest.fixture
def coco_root(tmp_path):
    write_siamese_coco(str(tmp_path))
    return str(tmp_path)


@pytest.fixture
def dataset(coco_root):
    ds = IndexedCocoDataset()
    ds.load_coco(coco_root, "train", year="2017", subsubset=None)
    ds.prepare()
    return ds


def _index_of(dataset, coco_image_id):
    return [info["id"] for info in dataset.image_info].index(coco_image_id)


def test_classes_are_sorted_coco_ids(dataset):
    assert dataset.num_classes == 6
    for coco_id, internal in INTERNAL.items():
        assert dataset.map_source_class_id("coco.{}".format(coco_id)) == internal
    assert [c["name"] for c in dataset.class_info] == ["BG", "square", "bar", "disk",
                                                       "ring", "unused"]


def test_only_annotated_images_are_loaded_with_paths(dataset, coco_root):
    assert sorted(info["id"] for info in dataset.image_info) == [101, 108, 115, 122, 129, 136]
    info = dataset.image_info[_index_of(dataset, 122)]
    assert info["path"] == os.path.join(coco_root, "train2017", "000000000122.png")
    assert (info["height"], info["width"]) == (64, 64)
    image = dataset.load_image(_index_of(dataset, 122))
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_load_mask_boxes_and_crowds(dataset):
    masks, class_ids = dataset.load_mask(_index_of(dataset, 115))
    assert masks.dtype == bool and masks.shape == (64, 64, 2)
    np.testing.assert_array_equal(class_ids, [INTERNAL[2], -INTERNAL[2]])  # crowd negative
    expected = np.zeros((64, 64), dtype=bool)
    expected[10:28, 10:40] = True
    np.testing.assert_array_equal(masks[:, :, 0], expected)
    crowd = np.zeros((64, 64), dtype=bool)
    crowd[40:60, 40:60] = True  # uncompressed RLE decoded
    np.testing.assert_array_equal(masks[:, :, 1], crowd)

    masks, class_ids = dataset.load_mask(_index_of(dataset, 129))  # compressed RLE
    assert masks[:, :, 0].sum() == 32 * 32
    assert class_ids.tolist() == [INTERNAL[9], -INTERNAL[5]]


def test_masks_that_rasterise_to_nothing_are_skipped(dataset):
    masks, class_ids = dataset.load_mask(_index_of(dataset, 136))
    assert class_ids.tolist() == [INTERNAL[11]]
    assert masks.shape == (64, 64, 1)


def test_indices(dataset):
    image_categories = {info["id"]: dataset.image_category_index[i]
                        for i, info in enumerate(dataset.image_info)}
    assert image_categories == {
        101: [1], 108: [1, 2], 115: [1],  # crowds are not indexed
        122: [2], 129: [3],  # 129's crowd of class 2 is not indexed
        136: [1, 4],  # 136 has a degenerate polygon of class 1
    }
    assert len(dataset.category_image_index) == dataset.num_classes
    as_coco = [sorted(dataset.image_info[i]["id"] for i in ids)
               for ids in dataset.category_image_index]
    assert as_coco == [[], [101, 108, 115, 136], [108, 122], [129], [136], []]


def test_build_indices_is_rebuildable(dataset):
    before = [ids.tolist() for ids in dataset.category_image_index]
    dataset.build_indices()
    assert [ids.tolist() for ids in dataset.category_image_index] == before


def test_active_classes(dataset, tmp_path):
    np.testing.assert_array_equal(dataset.get_active_classes(), [1, 2, 3, 4, 5])
    dataset.set_active_classes([3, 1, 1])
    np.testing.assert_array_equal(dataset.get_active_classes(), [1, 3])
    np.testing.assert_array_equal(dataset.ACTIVE_CLASSES, [1, 3])
    dataset.ACTIVE_CLASSES = np.array([2])  # the old notebooks' way
    np.testing.assert_array_equal(dataset.get_active_classes(), [2])
    path = tmp_path / "active.txt"
    path.write_text("4\n5\n\n")
    dataset.set_active_classes(str(path))
    np.testing.assert_array_equal(dataset.get_active_classes(), [4, 5])
    with pytest.raises(ValueError, match=r"1\.\.5.*\[0, 6\]"):
        dataset.set_active_classes([0, 2, 6])
    path.write_text("4\n\nperson\n")  # a name for an id: int()'s "invalid literal"
    with pytest.raises(ValueError, match=r"active.txt, line 3: expected one integer class id "
                       r"per line, got 'person'"):
        dataset.set_active_classes(path)


def test_class_ids_subset(coco_root):
    ds = IndexedCocoDataset()
    ds.load_coco(coco_root, "train", class_ids=[5, 9], subsubset=None)
    ds.prepare()
    assert sorted(info["id"] for info in ds.image_info) == [108, 122, 129]
    masks, class_ids = ds.load_mask(_index_of(ds, 108))
    assert class_ids.tolist() == [1]  # category 5 is internal 1 here; 2 is not loaded


def test_unknown_class_ids_and_a_missing_image_folder_are_named(coco_root, caplog):
    ds = IndexedCocoDataset()
    # Internal ids (1..5) passed for COCO ids: pycocotools' bare KeyError 3.
    with pytest.raises(ValueError, match=r"class_ids: \[1, 3\] are no COCO category ids of "
                       r"these annotations \(they have 5: \[2, 5, 9, 11, 20\]\)"):
        ds.load_coco(coco_root, "train", class_ids=[1, 2, 3], subsubset=None)
    os.rename(os.path.join(coco_root, "train2017"), os.path.join(coco_root, "elsewhere"))
    ds = IndexedCocoDataset()
    with caplog.at_level("WARNING", logger="mrcnn.coco_io"):
        ds.load_coco(coco_root, "train", subsubset=None)  # loads; each image would fail
    assert f"COCO image folder not found: {os.path.join(coco_root, 'train2017')}" \
        in caplog.text


def test_subsubset_split_and_return_coco(coco_root):
    train = IndexedCocoDataset()
    coco = train.load_coco(coco_root, "train", subsubset="train", val_count=2,
                           return_coco=True)
    val = IndexedCocoDataset()
    val.load_coco(coco_root, "train", subsubset="val", val_count=2)
    assert [i["id"] for i in train.image_info] == [101, 108, 115, 122]
    assert [i["id"] for i in val.image_info] == [129, 136]
    assert sorted(coco.getImgIds()) == [101, 108, 115, 122, 129, 136]
    with pytest.raises(ValueError, match="subsubset"):
        IndexedCocoDataset().load_coco(coco_root, "train", subsubset="test")


def test_train_subset_defaults_to_the_training_part_as_the_paper_code(coco_root):
    """load_coco(dir, "train") = subsubset="train": all but the last val_count images;
    other subsets load everything; a set too small for the split is an error."""
    train = IndexedCocoDataset()
    train.load_coco(coco_root, "train", val_count=2)
    assert [i["id"] for i in train.image_info] == [101, 108, 115, 122]
    with pytest.raises(ValueError, match=r"6 images.*val_count=3000.*subsubset=None"):
        IndexedCocoDataset().load_coco(coco_root, "train")


def test_active_classes_attribute_and_get_class_ids(dataset, coco_root):
    assert dataset.active_classes == []  # nothing set: every class is active
    np.testing.assert_array_equal(dataset.get_active_classes(), [1, 2, 3, 4, 5])
    dataset.set_active_classes([3, 1])
    assert dataset.active_classes == [1, 3]
    np.testing.assert_array_equal(dataset.ACTIVE_CLASSES, [1, 3])
    dataset.active_classes = [2]
    np.testing.assert_array_equal(dataset.get_active_classes(), [2])
    dataset.active_classes = []
    np.testing.assert_array_equal(dataset.get_active_classes(), [1, 2, 3, 4, 5])
    # COCO category ids of the file: unknown ids are dropped, the result sorted.
    known = sorted(INTERNAL)
    assert dataset.get_class_ids([known[-1], 1000, known[0]], coco_root, "train",
                                 "2017") == [known[0], known[-1]]
    dataset.set_active_classes([1, 2])  # None: the ids set (as the paper code read them)
    assert dataset.get_class_ids(None, coco_root, "train", "2017") == [
        c for c in (1, 2) if c in INTERNAL]


def test_image_reference(dataset):
    assert dataset.image_reference(_index_of(dataset, 129)).endswith("id=129")


def test_split_train_val_is_sorted_and_deterministic():
    train, val = split_train_val([9, 3, 7, 1, 5], val_count=2)
    assert train == [1, 3, 5] and val == [7, 9]
    assert split_train_val([2, 1], val_count=0) == ([1, 2], [])
    with pytest.raises(ValueError, match="val_count"):
        split_train_val([1, 2, 3], val_count=3)


@pytest.mark.parametrize("split", [1, 2, 3, 4])
def test_coco_class_splits(split):
    one_shot, background = get_class_split(split)
    np.testing.assert_array_equal(one_shot, [4 * k + split for k in range(20)])
    assert len(background) == 60
    assert sorted(np.concatenate([one_shot, background]).tolist()) == list(range(1, 81))
    np.testing.assert_array_equal(get_class_split("i{}".format(split))[0], one_shot)


def test_class_splits_any_size_and_full():
    one_shot, background = get_class_split(2, num_classes=26)
    np.testing.assert_array_equal(one_shot, [2, 6, 10, 14, 18, 22, 26])
    assert len(background) == 19 and 1 in background and 2 not in background
    one_shot, background = get_class_split("full", num_classes=26)
    assert one_shot.size == 0 and background.tolist() == list(range(1, 27))
    for bad in (0, 5, "i5", "half"):
        with pytest.raises(ValueError, match="split"):
            get_class_split(bad)
    with pytest.raises(ValueError, match="num_classes"):
        get_class_split(1, num_classes=0)


def test_missing_annotation_file_names_the_path(tmp_path):
    expected = os.path.join(str(tmp_path), "annotations", "instances_val2017.json")
    with pytest.raises(FileNotFoundError, match=expected):
        IndexedCocoDataset().load_coco(str(tmp_path), "val", year="2017")


def test_corrupt_annotation_file_names_the_file(tmp_path):
    os.makedirs(tmp_path / "annotations")
    path = tmp_path / "annotations" / "instances_train2017.json"
    path.write_text('{"images": [')
    with pytest.raises(ValueError, match="instances_train2017.json.*JSON"):
        IndexedCocoDataset().load_coco(str(tmp_path), "train")
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="instances_train2017.json.*annotations"):
        IndexedCocoDataset().load_coco(str(tmp_path), "train")


def test_auto_download_is_refused(coco_root):
    with pytest.raises(ValueError, match="auto_download"):
        IndexedCocoDataset().load_coco(coco_root, "train", auto_download=True)
