"""mrcnn.coco_io: Matterport's COCO layout, the annotation reader and adding images."""
import json
import os

import pytest

from mrcnn import utils
from mrcnn.coco_io import (add_coco_images, coco_paths, images_with_classes,
                           read_coco_annotations)

# Sparse category and image ids; image 20 has only a crowd of category 9.
ANNOTATIONS = {
    "images": [{"id": 10, "file_name": "a.png", "width": 40, "height": 30},
               {"id": 20, "file_name": "b.png", "width": 50, "height": 60},
               {"id": 30, "file_name": "c.png", "width": 20, "height": 20}],
    "categories": [{"id": 4, "name": "cat"}, {"id": 9, "name": "dog"}],
    "annotations": [
        {"id": 1, "image_id": 10, "category_id": 4, "iscrowd": 0, "area": 4,
         "bbox": [0, 0, 2, 2], "segmentation": [[0, 0, 2, 0, 2, 2]]},
        {"id": 2, "image_id": 10, "category_id": 9, "iscrowd": 0, "area": 4,
         "bbox": [4, 4, 2, 2], "segmentation": [[4, 4, 6, 4, 6, 6]]},
        {"id": 3, "image_id": 20, "category_id": 9, "iscrowd": 1, "area": 4,
         "bbox": [0, 0, 2, 2], "segmentation": {"counts": [0, 4, 96], "size": [10, 10]}},
    ],
}


@pytest.fixture
def annotation_file(tmp_path):
    path = tmp_path / "instances_train2017.json"
    path.write_text(json.dumps(ANNOTATIONS))
    return str(path)


def test_coco_paths_follow_matterports_layout():
    assert coco_paths("/d", "train", "2017") == (
        os.path.join("/d", "annotations", "instances_train2017.json"),
        os.path.join("/d", "train2017"))
    for subset in ("minival", "valminusminival"):  # annotation subsets of val2014
        assert coco_paths("/d", subset, "2014") == (
            os.path.join("/d", "annotations", f"instances_{subset}2014.json"),
            os.path.join("/d", "val2014"))


def test_read_coco_annotations_indexes_silently(annotation_file, capsys):
    coco = read_coco_annotations(annotation_file)
    assert sorted(coco.imgs) == [10, 20, 30]
    assert sorted(coco.getCatIds()) == [4, 9]
    assert coco.getAnnIds(imgIds=[10]) == [1, 2]
    assert capsys.readouterr().out == ""  # pycocotools' progress prints are dropped


@pytest.mark.parametrize("content, reason", [
    ('{"images": [', "not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"images": [], "categories": []}', "expected a list 'annotations', got NoneType"),
    ('{"images": {}, "annotations": [], "categories": []}',
     "expected a list 'images', got dict"),
])
def test_read_coco_annotations_rejects_bad_files_naming_them(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError) as error:
        read_coco_annotations(str(path))
    assert str(path) in str(error.value) and reason in str(error.value)


def test_read_coco_annotations_missing_file(tmp_path):
    path = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_coco_annotations(path)


def test_images_with_classes_counts_crowds_and_sorts(annotation_file):
    coco = read_coco_annotations(annotation_file)
    assert images_with_classes(coco, [4]) == [10]
    assert images_with_classes(coco, [9]) == [10, 20]  # 20: a crowd only
    assert images_with_classes(coco, [9, 4]) == [10, 20]  # no duplicates
    assert images_with_classes(coco, []) == []


def test_add_coco_images_adds_classes_images_and_their_annotations(annotation_file):
    coco = read_coco_annotations(annotation_file)
    dataset = utils.Dataset()
    add_coco_images(dataset, coco, [9], [20, 10], "/images", source="pets")
    assert [(c["source"], c["id"], c["name"]) for c in dataset.class_info] == [
        ("", 0, "BG"), ("pets", 9, "dog")]
    first, second = dataset.image_info
    assert (first["id"], first["source"], first["path"]) == (20, "pets",
                                                          os.path.join("/images", "b.png"))
    assert (first["width"], first["height"]) == (50, 60)
    # Only the annotations of the classes asked for, crowds included.
    assert [a["id"] for a in first["annotations"]] == [3]
    assert second["id"] == 10 and [a["id"] for a in second["annotations"]] == [2]


@pytest.mark.parametrize("limit, image_ids, message", [
    (-1, None, r"limit: expected an integer >= 0 \(0: every image\), got -1"),  # dropped one
    (2.0, None, r"limit: expected an integer >= 0 .*got 2.0"),
    (0, [0, 2, 2], r"image_ids: expected each image once .*got \[2\] more than once"),
    (0, [3], r"image_ids: expected internal image ids in 0..2, got \[3\]"),
    (0, [], r"no images to evaluate"),
])
def test_evaluation_image_ids_refuses_what_would_evaluate_the_wrong_images(limit, image_ids,
                                                                          message):
    from mrcnn.coco import evaluation_image_ids

    dataset = utils.Dataset()
    for i in range(3):
        dataset.add_image("coco", i, path=None)
    dataset.prepare()
    assert evaluation_image_ids(dataset, 2, None) == [0, 1]
    with pytest.raises(ValueError, match=message):
        evaluation_image_ids(dataset, limit, image_ids)
