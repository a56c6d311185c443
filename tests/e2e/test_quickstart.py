"""samples/shapes/quickstart.py (`make demo`) end to end with `--profile quick`.

One module-wide output folder and two runs of the script in a subprocess: the first
generates the shapes data set, trains one epoch of 4 steps, evaluates and draws; the
second must reuse the data set and the checkpoint (no training) and be faster. Plus the
script's pure helpers in process (configs, schedule, table cells, --set errors).
About 1.5 min on 2 busy cores, most of it the first run's training graph.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samples.shapes import quickstart
from tests.helpers.processes import needs_backend, run_python

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "samples" / "shapes" / "quickstart.py")
SETTINGS = ("one_shot", "background", "random")
AP_KEYS = [f"{name}_ap50{suffix}" for name in SETTINGS for suffix in ("", "_segm")]
ROW_LABELS = ("one-shot (held-out categories)", "background (trained categories)",
              "random boxes (one-shot categories)")
# Split 1 of the 24 generated categories holds out every 4th, starting at 1.
ONE_SHOT = [1, 5, 9, 13, 17, 21]
slow = pytest.mark.slow


def run_quickstart(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """quickstart.py --profile quick --out OUT with this interpreter; (process, seconds)."""
    start = time.perf_counter()
    proc = run_python([SCRIPT, "--profile", "quick", "--out", out, *args], cwd=REPO)
    return proc, time.perf_counter() - start


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
        f"stderr:\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both runs in the same folder: first run's results and checkpoint state are read
    before the second run overwrites results.json."""
    out = tmp_path_factory.mktemp("quickstart")
    first, first_s = run_quickstart(out)
    ok(first)
    results = json.loads((out / "results.json").read_text())
    checkpoint = Path(results["checkpoint"])
    before = checkpoint.stat().st_mtime_ns if checkpoint.is_file() else None
    second, second_s = run_quickstart(out)
    return {"out": out, "first": first, "first_s": first_s, "results": results,
            "checkpoint": checkpoint, "mtime_before": before, "second": second,
            "second_s": second_s}


@slow
def test_results_json_has_the_six_ap50s_as_fractions_with_intervals(runs):
    results = runs["results"]
    for key in AP_KEYS:
        value = results[key]
        assert isinstance(value, float) and 0.0 <= value <= 1.0, (key, value)
        low, high = results[f"{key}_interval"]
        assert math.isfinite(low) and math.isfinite(high), key
        assert low <= value <= high, (key, low, value, high)
        # One evaluation run: no spread, so the interval is the point itself.
        assert low == pytest.approx(value) and high == pytest.approx(value), key
    assert results["profile"] == "quick"
    assert results["backend"] == "tensorflow"  # the default; the PyTorch test checks "torch"
    assert results["budget"] == quickstart.PROFILES["quick"]
    assert results["one_shot_classes"] == ONE_SHOT
    assert sorted(results["one_shot_classes"] + results["background_classes"]) == \
        list(range(1, 25))
    assert results["config"]["BACKBONE"] == "resnet_tiny"
    # The means in the details are those of the top-level keys.
    for name in SETTINGS:
        stats = results["details"][name]["stats"]
        assert stats["bbox"]["AP50"]["mean"] == pytest.approx(results[f"{name}_ap50"])
        assert stats["segm"]["AP50"]["mean"] == pytest.approx(results[f"{name}_ap50_segm"])
        assert results["details"][name]["runs"] == 1
    assert results["details"]["one_shot"]["class_ids"] == ONE_SHOT
    assert results["details"]["random"]["class_ids"] == ONE_SHOT
    assert set(results["timings"]) == {"data_s", "train_s", "evaluate_s", "export_search_s",
                                       "total_s"}


@slow
def test_checkpoint_and_picture_are_written(runs):
    out, checkpoint = runs["out"], runs["checkpoint"]
    # One epoch: the checkpoint of epoch 1, in the run's log folder under --out.
    assert checkpoint.name == "siamese_mrcnn_0001.h5"
    assert checkpoint.is_file() and checkpoint.stat().st_size > 100_000
    assert out / "logs" in checkpoint.parents
    picture = Path(runs["results"]["picture"])
    assert picture == out / "one_shot_detections.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(picture) as image:
        assert image.format == "PNG" and min(image.size) > 100
    # The generated data set (COCO layout) is under --out too.
    assert (out / "data" / "annotations" / "instances_val2017.json").is_file()


@slow
def test_the_model_is_exported_and_searches_the_val_images(runs):
    out, search = runs["out"], runs["results"]["search"]
    assert (out / "exported" / "saved_model.pb").is_file()
    assert (out / "search" / "reference.png").is_file()
    val_images = sorted((out / "data" / "val2017").iterdir())
    assert search["images"] == len(val_images) == quickstart.PROFILES["quick"]["val"]
    assert search["searched_now"] == len(val_images) and search["skipped"] == 0
    lines = (out / "search" / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["file"] for line in lines) == [str(p) for p in val_images]
    for line in lines:
        assert all(d["score"] >= 0.7 for d in json.loads(line)["detections"])
    assert (search["contact_sheet"] is None) == (search["with_detections"] == 0)
    assert "search for a " in runs["first"].stdout


@slow
def test_first_run_trains_and_prints_the_table(runs):
    first = runs["first"]
    assert "Training from scratch" in first.stderr
    # One epoch is one stage at the full rate (not the lr/10 of a last stage).
    assert "Starting at epoch 0. LR=0.02" in first.stdout  # printed, as Matterport did
    stdout = first.stdout
    assert "AP50 (%), mean over 1 run(s)" in stdout
    for label in ROW_LABELS:
        # label, then the boxes and masks cells: "mean [low, high]" twice.
        row = re.search(re.escape(label) + r"\s+(\S.*)$", stdout, re.MULTILINE)
        assert row, label
        assert len(re.findall(r"\d+\.\d \[\s*-?\d+\.\d,\s*-?\d+\.\d\]", row.group(1))) == 2
    assert f"results: {runs['out'] / 'results.json'}" in stdout


@slow
def test_second_run_reuses_data_and_checkpoint(runs):
    second = ok(runs["second"])
    log = second.stderr
    assert "reused" in log  # the data set
    assert "Resuming from epoch 1" in log
    assert "nothing to do" in log
    assert "Starting at epoch" not in log + second.stdout  # no call to train()
    assert "Training from scratch" not in log
    assert runs["checkpoint"].stat().st_mtime_ns == runs["mtime_before"]
    checkpoints = sorted(runs["checkpoint"].parent.glob("*.h5"))
    assert checkpoints == [runs["checkpoint"]]
    again = json.loads((runs["out"] / "results.json").read_text())
    assert again["checkpoint"] == str(runs["checkpoint"])
    # Same checkpoint, same seeds: the evaluation is reproducible.
    for key in AP_KEYS:
        assert again[key] == pytest.approx(runs["results"][key], abs=1e-3), key
    # The skipped stage (a checkpoint check) against real training; the runs' wall
    # times are not compared: on a shared machine that would test the load, not the code.
    assert again["timings"]["train_s"] < runs["results"]["timings"]["train_s"]


@slow
def test_under_pytorch_it_runs_and_skips_only_the_export(tmp_path):
    """KERAS_BACKEND=torch: data, training, evaluation and the picture as under
    TensorFlow; the SavedModel export and the search are skipped with a line that says
    why (not a traceback)."""
    needs_backend("torch")
    out = tmp_path / "torch"
    proc = ok(run_python([SCRIPT, "--profile", "quick", "--out", out], cwd=REPO,
                         extra_env={"KERAS_BACKEND": "torch"}))
    assert "export and search: skipped" in proc.stdout and "'torch'" in proc.stdout
    assert "Traceback" not in proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["search"] is None and "export_search_s" not in results["timings"]
    assert results["backend"] == "torch"
    for key in AP_KEYS:
        assert 0.0 <= results[key] <= 1.0, key
    assert Path(results["checkpoint"]).is_file() and Path(results["picture"]).is_file()
    assert not (out / "exported").exists()


def test_bad_arguments_fail_before_any_work(tmp_path):
    out = tmp_path / "bad"
    proc, _ = run_quickstart(out, "--set", "NOT_A_FIELD=1")
    assert proc.returncode == 2
    assert "NOT_A_FIELD" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    proc, _ = run_quickstart(out, "--epochs", "0")
    assert proc.returncode == 2 and "--epochs" in proc.stderr


# ------------------------------------------------------------------ in process
def test_an_unusable_out_is_one_line_before_any_work(tmp_path, capsys):
    """--out a file, or under one (a folder that cannot be made): a usage error (2) in
    one line that names what is in the way; nothing is written."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert quickstart.main(["--profile", "quick", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out {a_file}: expected a folder, found a file\n"
    assert quickstart.main(["--profile", "quick", "--out", str(a_file / "run")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out {a_file / 'run'}: {a_file} is a file, not a folder\n"
    assert a_file.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_build_configs_defaults():
    train, infer = quickstart.build_configs()
    for config in (train, infer):
        config.validate()
        assert config.BACKBONE == "resnet_tiny"
        assert list(config.IMAGE_SHAPE) == [128, 128, 3]
        assert list(config.TARGET_SHAPE) == [64, 64, 3]
        assert config.NUM_CLASSES == 2  # the Siamese heads: background / match
        assert config.NAME == "shapes" and config.EXPERIMENT == "quickstart"
    # As documented in README.md: batch 4 in training and in evaluation.
    assert train.IMAGES_PER_GPU == 4 and train.BATCH_SIZE == 4
    assert infer.IMAGES_PER_GPU == 4 and infer.GPU_COUNT == 1 and infer.BATCH_SIZE == 4
    # Trained from scratch: BatchNorm learns.
    assert train.TRAIN_BN is True
    # The weights of one load into the other: every architecture field agrees.
    for key in QUICKSTART_ARCHITECTURE:
        assert _value(train, key) == _value(infer, key), key
    assert train.LEARNING_RATE == 0.02


QUICKSTART_ARCHITECTURE = ("BACKBONE", "FPN_FEATUREMAPS", "FPN_CLASSIF_FC_LAYERS_SIZE",
                           "MASK_HEAD_CONV_CHANNELS", "MASK_POOL_SIZE", "MASK_SHAPE",
                           "POOL_SIZE", "RPN_ANCHOR_SCALES", "RPN_ANCHOR_RATIOS",
                           "IMAGE_SHAPE", "TARGET_SHAPE", "NUM_CLASSES", "MODEL",
                           "NUM_TARGETS")


def _value(config, key):
    """A config field as plain Python (tuples, lists and arrays alike)."""
    return np.asarray(getattr(config, key)).tolist()


def test_build_configs_overrides_apply_to_both_and_are_validated():
    before = dict(quickstart.QUICKSTART_CONFIG)
    train, infer = quickstart.build_configs({"FPN_FEATUREMAPS": "32",
                                             "IMAGES_PER_GPU": 2})
    assert train.FPN_FEATUREMAPS == infer.FPN_FEATUREMAPS == 32
    # Evaluation keeps 4 images per batch whatever the training batch.
    assert train.BATCH_SIZE == 2 and infer.BATCH_SIZE == 4
    assert quickstart.QUICKSTART_CONFIG == before  # not changed in place
    with pytest.raises(ValueError, match="NOT_A_FIELD"):
        quickstart.build_configs({"NOT_A_FIELD": 1})


@pytest.mark.parametrize("epochs", [1, 2, 3, 5, 12, 24])
def test_training_schedule_has_distinct_stages_ending_at_epochs(epochs):
    schedule = quickstart.training_schedule(epochs, 0.02)
    ends = sorted(schedule)
    assert ends[-1] == epochs and all(e >= 1 for e in ends)
    assert all(stage["layers"] == "all" for stage in schedule.values())
    assert schedule[ends[0]]["learning_rate"] == 0.02
    if epochs == 1:
        assert ends == [1]
    else:
        # Two stages, the second at a tenth of the rate and at least one epoch long.
        assert len(ends) == 2 and ends[0] < epochs
        assert schedule[epochs]["learning_rate"] == pytest.approx(0.002)
    # The default profile: 12 epochs, the rate drops after epoch 10 (four fifths).
    if epochs == 12:
        assert ends == [10, 12]


def test_training_schedule_rejects_bad_epochs():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="epochs"):
            quickstart.training_schedule(bad, 0.02)


def test_table_cell():
    assert quickstart.table_cell(0.462, [0.433, 0.491]) == " 46.2 [ 43.3,  49.1]"
    assert quickstart.table_cell(-1.0, [-1.0, -1.0]).startswith("n/a")
