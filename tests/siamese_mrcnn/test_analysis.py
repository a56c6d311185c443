"""The analyses of the one-shot evaluation (confusion matrix, most confused categories,
AP50 by instance count) and their writers, on the hand-made COCO set of
tests/helpers/eval_coco.py with stand-in models whose detections are known."""
import csv
import json
import os

import matplotlib.image
import numpy as np
import pytest

from siamese_mrcnn import analysis as an
from siamese_mrcnn import evaluation as ev
from tests.helpers.processes import run_python
from tests.helpers.eval_coco import (INTERNAL, StandInSiamese, data, dataset,  # noqa: F401
                                     evaluate, make_config)

# Internal id of COCO category 9 ("blue"), 5 ("green").
BLUE, GREEN = INTERNAL[9], INTERNAL[5]


# ---------------------------------------------------------------- re-exports

def test_evaluation_reexports_the_analysis_names():
    for name in ("DEFAULT_INSTANCE_BINS", "ConfusionResult", "confusion_matrix",
                 "most_confused", "instance_counts", "ap50_by_instance_count", "save_json",
                 "save_csv", "write_runs_summary", "write_confusion", "write_instance_count"):
        assert getattr(ev, name) is getattr(an, name) and name in dir(ev)
    with pytest.raises(AttributeError, match="no_such_name"):
        ev.no_such_name  # noqa: B018


def test_either_module_can_be_imported_first():
    # A fresh interpreter: an eager re-export would be a circular import in one order.
    lib = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "lib")
    pythonpath = {"PYTHONPATH": os.path.abspath(lib)}
    for first in ("analysis", "evaluation"):
        code = ("import siamese_mrcnn.{}; from siamese_mrcnn.evaluation import "
                "confusion_matrix; from siamese_mrcnn.analysis import confusion_matrix as c; "
                "assert confusion_matrix is c".format(first))
        result = run_python(["-c", code], extra_env=pythonpath)
        assert result.returncode == 0, (first, result.stderr[-2000:])


# ---------------------------------------------------------------- analyses

def test_confusion_matrix_of_a_perfect_model_is_the_identity(dataset):
    ds, coco = dataset
    model = StandInSiamese(make_config(batch_size=4))
    confusion = an.confusion_matrix(model, ds, coco, eval_type="both", seed=0, verbose=0)
    assert confusion.class_ids == [1, 2, 3, 4]
    for t in ("bbox", "segm"):
        np.testing.assert_array_equal(confusion.matrix[t], np.eye(4))
    # One detection per (evaluated image, reference category).
    assert sum(size for _, size, _ in model.calls) >= 6 * 4
    assert an.most_confused(confusion) == {"rows": [], "histogram": []}


def test_confusion_matrix_finds_a_confused_pair(dataset):
    ds, coco = dataset
    # References of green (5) make the model find blue (9) objects.
    model = StandInSiamese(make_config(batch_size=4), confuse={5: 9})
    confusion = an.confusion_matrix(model, ds, coco, seed=0, verbose=0)
    expected = np.eye(4)
    expected[GREEN - 1] = 0
    expected[GREEN - 1, BLUE - 1] = 1
    np.testing.assert_array_equal(confusion.matrix["bbox"], expected)
    confused = an.most_confused(confusion)
    assert confused["rows"] == [{"reference": GREEN, "reference_name": "green",
                                 "most_confused": BLUE, "most_confused_name": "blue",
                                 "ap50": 1.0, "diagonal": 0.0}]
    assert confused["histogram"] == [{"class_id": BLUE, "name": "blue", "count": 1}]


def test_ap50_by_instance_count(dataset):
    model = StandInSiamese(make_config(batch_size=2), bad_categories=[9])
    result = evaluate(model, dataset)
    rows = an.ap50_by_instance_count(result, dataset[1])
    assert [r["bucket"] for r in rows] == ["1", "2", "3", "4", "5", "6-10", "11+"]
    assert [r["pairs"] for r in rows] == [9, 3, 1, 0, 0, 0, 0]
    # Bucket 1: red, green, yellow perfect, blue missed -> 3/4. Bucket 2: red (12),
    # blue (14), yellow (15) -> 2/3. Bucket 3: green (13) -> 1.
    for t in ("bbox", "segm"):
        assert [r[t] for r in rows] == pytest.approx([0.75, 2 / 3, 1.0, -1, -1, -1, -1])
    rows = an.ap50_by_instance_count(result, dataset[1], bins=(1, 3))
    assert [(r["bucket"], r["pairs"]) for r in rows] == [("1-2", 12), ("3+", 1)]
    with pytest.raises(ValueError, match="bins"):
        an.ap50_by_instance_count(result, dataset[1], bins=(2, 2))


def test_save_csv_writes_whole_files_only(tmp_path, monkeypatch):
    path = str(tmp_path / "out" / "rows.csv")
    assert an.save_csv([{"a": 1}, {"b": "x,y"}], path) == path
    with open(path, newline="") as f:
        assert f.read() == 'a,b\r\n1,\r\n,"x,y"\r\n'  # csv's dialect, quoted commas

    def killed(source, target):  # the process dies between the write and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(an.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        an.save_csv([{"a": 2}], path)
    with open(path) as f:
        assert list(csv.DictReader(f)) == [{"a": "1", "b": ""}, {"a": "", "b": "x,y"}]
    assert os.listdir(tmp_path / "out") == ["rows.csv"]  # the failed write's temp is gone


def test_writers_save_json_csv_and_figures(dataset, tmp_path):
    ds, coco = dataset
    model = StandInSiamese(make_config(batch_size=4), confuse={5: 9})
    summary, runs = ev.run_evaluation(model, ds, coco, runs=2, seed=0, verbose=0,
                                      keep_evaluations=True)
    paths = an.write_runs_summary(summary, str(tmp_path))
    with open(paths["json"]) as f:
        assert json.load(f)["stats"]["bbox"]["AP50"]["mean"] == summary.mean["bbox"][1]
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and set(rows[0]) >= {"eval_type", "statistic", "mean", "run_2"}

    confusion = an.confusion_matrix(model, ds, coco, seed=0, verbose=0)
    paths = an.write_confusion(confusion, str(tmp_path))
    with open(paths["confusion_bbox_json"]) as f:
        assert json.load(f)["matrix"]["bbox"] == confusion.matrix["bbox"].tolist()
    with open(paths["confusion_bbox_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert rows[GREEN - 1]["reference"] == "green" and float(rows[GREEN - 1]["blue"]) == 1.0
    with open(paths["most_confused_bbox_json"]) as f:
        assert json.load(f)["histogram"][0]["name"] == "blue"

    rows = an.ap50_by_instance_count(runs[0], coco)
    paths.update(an.write_instance_count(rows, str(tmp_path)))
    with open(paths["json"]) as f:
        assert json.load(f) == rows
    for key, path in paths.items():
        if key.endswith("png"):
            image = matplotlib.image.imread(path)
            assert image.ndim == 3 and image.shape[0] > 100
