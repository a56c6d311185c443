"""The generated one-shot shapes data set: COCO validity, content, determinism, caching."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samples.shapes import generate as shapes
from tests.helpers.processes import run_python

REPO = Path(__file__).resolve().parents[2]
SIZE = 128
PARAMS = dict(n_train=12, n_val=6, seed=3, size=SIZE, workers=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    return shapes.generate_dataset(out, **PARAMS)


def _coco(path):
    return COCO(str(path))


def _read(path):
    return Path(path).read_bytes()


def test_layout_images_and_info(dataset):
    assert dataset.train_annotations == dataset.root / "annotations" / "instances_train2017.json"
    assert dataset.val_annotations == dataset.root / "annotations" / "instances_val2017.json"
    all_ids = []
    for subset, count in (("train", 12), ("val", 6)):
        content = json.loads(dataset.annotations(subset).read_text())
        assert set(content) == {"info", "licenses", "images", "annotations", "categories"}
        assert content["info"] == shapes.dataset_info(12, 6, 3, SIZE)
        assert len(content["images"]) == count
        for record in content["images"]:
            assert os.path.dirname(record["file_name"]) == ""  # relative to the folder
            with Image.open(dataset.images(subset) / record["file_name"]) as image:
                assert image.size == (record["width"], record["height"]) == (SIZE, SIZE)
                assert image.mode == "RGB"
            all_ids.append(record["id"])
    assert len(set(all_ids)) == len(all_ids) == 18


def test_masks_match_bbox_and_area(dataset):
    for subset in ("train", "val"):
        coco = _coco(dataset.annotations(subset))
        for image_id in coco.getImgIds():
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
            assert anns, "every image has instances"
            cover = np.zeros((SIZE, SIZE), int)
            for ann in anns:
                mask = coco.annToMask(ann)  # [H, W] uint8
                assert mask.shape == (SIZE, SIZE)
                ys, xs = np.nonzero(mask)
                assert len(ys) >= shapes.MIN_VISIBLE_PIXELS
                assert ann["area"] == len(ys)
                box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert ann["bbox"] == pytest.approx(box)
                assert ann["iscrowd"] == 0
                cover += mask
            assert cover.max() == 1, "visible masks of one image must not overlap"
        ann_ids = coco.getAnnIds()
        assert len(set(ann_ids)) == len(ann_ids) and min(ann_ids) > 0


def test_categories_distinct_and_split_friendly(dataset):
    cats = json.loads(dataset.val_annotations.read_text())["categories"]
    assert [c["id"] for c in cats] == list(range(1, 25))
    names = [c["name"] for c in cats]
    assert len(set(names)) == len(names) == 24
    for c in cats:
        assert c["name"].endswith("-" + c["supercategory"])
        assert c["supercategory"] in shapes.SHAPE_NAMES
    # Each held-out split mixes all appearances and shapes that training also sees.
    by_id = {c["id"]: c for c in cats}
    for split in range(1, 5):
        held = [by_id[i] for i in shapes.split_classes(24, split)]
        appearances = {c["name"][: -len(c["supercategory"]) - 1] for c in held}
        assert appearances == {a.name for a in shapes.APPEARANCES}
        assert len({c["supercategory"] for c in held}) == len(held) == 6


def test_several_instances_and_categories_per_image(dataset):
    coco = _coco(dataset.train_annotations)
    instances, categories = [], []
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        instances.append(len(anns))
        categories.append(len({a["category_id"] for a in anns}))
    assert max(instances) <= shapes.MAX_INSTANCES
    assert np.mean(instances) >= 3
    assert np.mean(categories) >= 2
    sizes = [max(a["bbox"][2:]) / SIZE for a in coco.loadAnns(coco.getAnnIds())]
    assert min(sizes) < 0.2 and max(sizes) > 0.3, "object sizes vary"


def test_deterministic_by_seed_and_independent_of_workers(dataset, tmp_path):
    again = shapes.generate_dataset(tmp_path / "again", **{**PARAMS, "workers": 2})
    for subset in ("train", "val"):
        assert _read(again.annotations(subset)) == _read(dataset.annotations(subset))
    name = sorted(os.listdir(dataset.val_images))[0]
    assert _read(again.val_images / name) == _read(dataset.val_images / name)
    other = shapes.generate_dataset(tmp_path / "other", **{**PARAMS, "seed": 4})
    assert _read(other.val_annotations) != _read(dataset.val_annotations)


def test_a_pool_that_breaks_midway_leaves_the_rest_to_this_process(dataset, tmp_path,
                                                                    monkeypatch, caplog):
    """The images come as they finish (for the progress bar); when the worker pool breaks
    after some, this process draws the others, each once, and the data set is the same."""
    class BreaksAfterThree:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, function, tasks, chunksize=1):
            for task in list(tasks)[:3]:
                yield function(task)
            raise shapes.BrokenProcessPool("a worker died")

    drawn = []
    render = shapes._render_task
    monkeypatch.setattr(shapes, "ProcessPoolExecutor", BreaksAfterThree)
    monkeypatch.setattr(shapes, "_render_task", lambda task: drawn.append(task[1:3])
                        or render(task))
    with caplog.at_level("WARNING", logger=shapes.logger.name):
        again = shapes.generate_dataset(tmp_path / "again", **{**PARAMS, "workers": 2})
    for subset in ("train", "val"):
        assert _read(again.annotations(subset)) == _read(dataset.annotations(subset))
    assert sorted(drawn) == sorted({*drawn}) and len(drawn) == 12 + 6  # each image once
    assert [r.getMessage() for r in caplog.records] == [
        "Worker processes failed after 3 of 12 images; drawing the rest in this process",
        "Worker processes failed after 3 of 6 images; drawing the rest in this process"]


def test_cache_skips_identical_request_only(tmp_path, monkeypatch):
    params = dict(n_train=2, n_val=1, seed=0, size=64, workers=1)
    paths = shapes.generate_dataset(tmp_path, **params)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(shapes, "_write_subset", fail)
    assert shapes.generate_dataset(tmp_path, **params) == paths
    assert shapes.is_cached(tmp_path, shapes.dataset_info(2, 1, 0, 64))
    assert not shapes.is_cached(tmp_path, shapes.dataset_info(2, 1, 0, 96))
    with pytest.raises(AssertionError, match="regenerated"):
        shapes.generate_dataset(tmp_path, **{**params, "seed": 5})


def test_cache_detects_missing_image(tmp_path):
    paths = shapes.generate_dataset(tmp_path, n_train=2, n_val=1, seed=0, size=64, workers=1)
    info = shapes.dataset_info(2, 1, 0, 64)
    assert shapes.is_cached(tmp_path, info)
    os.remove(paths.train_images / sorted(os.listdir(paths.train_images))[0])
    assert not shapes.is_cached(tmp_path, info)
    shapes.generate_dataset(tmp_path, n_train=2, n_val=1, seed=0, size=64, workers=1)
    assert shapes.is_cached(tmp_path, info)


def test_split_classes_every_fourth():
    assert shapes.split_classes(24, 1) == [1, 5, 9, 13, 17, 21]
    assert shapes.split_classes(24, 4) == [4, 8, 12, 16, 20, 24]
    assert shapes.split_classes(30, 2) == [2, 6, 10, 14, 18, 22, 26, 30]
    assert shapes.split_classes(24, "full") == []
    held = [c for s in range(1, 5) for c in shapes.split_classes(24, s)]
    assert sorted(held) == list(range(1, 25))
    assert shapes.train_classes(24, 3) == [c for c in range(1, 25) if c % 4 != 3]
    for bad in (0, 5, "1", 1.0):
        with pytest.raises(ValueError, match="split"):
            shapes.split_classes(24, bad)


def test_perfect_detections_score_ap50_one(dataset):
    coco = _coco(dataset.val_annotations)
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "segmentation": a["segmentation"], "score": 1.0}
               for a in coco.loadAnns(coco.getAnnIds())]
    detections = coco.loadRes(results)
    for iou_type in ("bbox", "segm"):
        evaluator = COCOeval(coco, detections, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        assert evaluator.stats[1] == pytest.approx(1.0)  # AP50


def test_render_image_is_a_pure_function_of_seed_subset_index():
    a = shapes.render_image(7, "val", 2, 96)
    b = shapes.render_image(7, "val", 2, 96)
    c = shapes.render_image(7, "train", 2, 96)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])
    image, labels, category_ids = a
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8
    assert labels.max() == len(category_ids) and set(np.unique(labels)) <= set(
        range(len(category_ids) + 1))


@pytest.mark.parametrize("kwargs, match", [
    ({"size": 32}, "size"),
    ({"n_train": -1}, "n_train"),
    ({"seed": -2}, "seed"),
    ({"num_categories": 100}, "num_categories"),
    ({"workers": 0}, "workers must be an int >= 1"),  # was taken as 1 and logged "0 workers"
    ({"workers": -3}, "workers must be an int >= 1"),
])
def test_bad_arguments_raise(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        shapes.generate_dataset(tmp_path, **{**PARAMS, **kwargs})


@pytest.mark.parametrize("flag, value, expected", [
    ("--train", "-1", "an integer in 0..9999999"),
    ("--val", "10000000", "an integer in 0..9999999"),
    ("--size", "32", "an integer in 64..4096"),
    ("--categories", "100", "an integer in 4..32"),
    ("--workers", "0", "an integer >= 1"),
    ("--seed", "two", "an integer >= 0"),
])
def test_command_line_names_the_flag_of_a_bad_number(tmp_path, capsys, flag, value, expected):
    """A bad number is told by its flag (--train), not by generate_dataset's argument
    (n_train, as before), in one line with exit 2, and nothing is written."""
    with pytest.raises(SystemExit) as exit_info:
        shapes.main(["--out", str(tmp_path / "data"), "--train", "1", "--val", "1",
                     flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].endswith(
        f": error: argument {flag}: expected {expected}, got {value!r}"), err
    assert not (tmp_path / "data").exists()


def _python_lines_per_image(size: int, images: int = 4) -> float:
    """Python lines executed per rendered image (sys.settrace): a count, not a time."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        count += event == "line"
        return tracer

    sys.settrace(tracer)
    try:
        for index in range(images):
            shapes.render_image(0, "train", index, size)
    finally:
        sys.settrace(None)
    return count / images


def test_rendering_is_vectorised():
    # Guard against per-pixel Python loops (target: thousands of images/min), counted in
    # executed lines so that a slow machine cannot fail it: about 2,500 lines per image
    # whatever its size, where one line per pixel would add 25,600 at 160 px.
    small, large = _python_lines_per_image(80), _python_lines_per_image(320)
    assert _python_lines_per_image(160) < 8000
    assert large < 1.5 * small, (small, large)  # 16x the pixels, about the same Python


def test_command_line_script_matches_library(tmp_path):
    out = tmp_path / "cli"
    done = run_python([REPO / "samples" / "shapes" / "generate.py",
                       "--out", out, "--train", "3", "--val", "2", "--seed", "1",
                       "--size", "64", "--categories", "28", "--workers", "2"])
    assert done.returncode == 0, done.stderr[-3000:]
    lib = shapes.generate_dataset(tmp_path / "lib", n_train=3, n_val=2, seed=1, size=64,
                                  workers=1, num_categories=28)
    cli = shapes.DatasetPaths.under(out)
    assert _read(cli.train_annotations) == _read(lib.train_annotations)
    assert _read(cli.val_annotations) == _read(lib.val_annotations)
    assert len(json.loads(_read(cli.val_annotations))["categories"]) == 28


def test_command_line_reports_an_unusable_out_in_one_line(tmp_path, capsys):
    """A file as --out, or a file above it, is a usage error (2) told before any image is
    drawn, in the words of the other command lines (cli_support.check_output); an --out
    that cannot be written for another reason stays an I/O error (1). No traceback."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        shapes.main(["--out", str(a_file), "--train", "1", "--val", "1", "--workers", "1"])
    assert exit_info.value.code == 2
    assert f"--out {a_file}: expected a folder, found a file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        shapes.main(["--out", str(a_file / "data"), "--train", "1", "--val", "1",
                     "--workers", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].endswith(
        f"error: --out {a_file / 'data'}: {a_file} is a file, not a folder"), err
    assert "Traceback" not in err
    assert a_file.read_text() == "not a folder"
    assert sorted(os.listdir(tmp_path)) == ["a_file"]  # nothing written


def test_command_line_reports_an_unwritable_out_in_one_line(tmp_path, capsys, monkeypatch):
    """An OSError while writing (a full disk, permissions) is one line and exit 1."""
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shapes, "_write_json", full_disk)
    code = shapes.main(["--out", str(tmp_path / "data"), "--train", "1", "--val", "1",
                        "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == "error: [Errno 28] No space left on device\n", err


def test_readable_by_matterport_coco_loader(dataset):
    coco_sample = pytest.importorskip("samples.coco.coco")
    data = coco_sample.CocoDataset()
    data.load_coco(str(dataset.root), "val", year="2017")
    data.prepare()
    assert data.num_images == 6 and data.num_classes == 25  # + background
    masks, class_ids = data.load_mask(0)
    assert masks.shape[:2] == (SIZE, SIZE) and masks.shape[2] == len(class_ids) > 0
    assert data.load_image(0).shape == (SIZE, SIZE, 3)


def test_readable_by_indexed_coco_dataset(dataset):
    siamese_utils = pytest.importorskip("siamese_mrcnn.utils")
    data = siamese_utils.IndexedCocoDataset()
    data.load_coco(str(dataset.root), "train", year="2017", subsubset=None)
    data.prepare()
    assert data.num_images == 12 and data.num_classes == 25
    data.set_active_classes(shapes.train_classes(24, 1))
    coco = _coco(dataset.train_annotations)
    for internal_id, info in enumerate(data.image_info):
        expected = {a["category_id"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]]))}
        found = {data.class_info[c]["id"] for c in data.image_category_index[internal_id]}
        assert found == expected
    masks, class_ids = data.load_mask(0)
    assert masks.shape == (SIZE, SIZE, len(class_ids)) and (class_ids > 0).all()
