"""samples/coco/train_siamese.py end to end on a generated shapes data set.

One module-wide data set (40 train / 12 val images of 128 px, 24 categories) and one
training run: train 1 epoch, resume to epoch 2, train again (nothing to do); then
evaluate and detect with its checkpoints, the user errors, --help, and the helpers of
siamese_mrcnn.cli in process. The model is the quick start's, smaller (resnet_tiny).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats as scipy_stats

from samples.shapes.generate import generate_dataset
from siamese_mrcnn import cli
from siamese_mrcnn.coco import get_class_split
from tests.helpers.processes import run_python

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "samples" / "coco" / "train_siamese.py")
NUM_CATEGORIES = 24
STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")
LOSSES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
          "mrcnn_mask_loss")

#: The quick start's model, smaller still. EXPERIMENT is left to the CLI (i1 for split 1)
#: so that evaluate/detect `--model last` must find the directory train wrote.
TINY = {
    "NAME": "shapes",
    "BACKBONE": "resnet_tiny",
    "IMAGE_MIN_DIM": 128,
    "IMAGE_MAX_DIM": 128,
    "TARGET_MIN_DIM": 48,
    "TARGET_MAX_DIM": 64,
    "FPN_FEATUREMAPS": 32,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 64,
    "MASK_HEAD_CONV_CHANNELS": 32,
    "MASK_POOL_SIZE": 7,
    "MASK_SHAPE": [14, 14],
    "MINI_MASK_SHAPE": (28, 28),
    "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128),
    "IMAGES_PER_GPU": 2,
    "POST_NMS_ROIS_TRAINING": 64,
    "POST_NMS_ROIS_INFERENCE": 32,
    "TRAIN_ROIS_PER_IMAGE": 16,
    "RPN_TRAIN_ANCHORS_PER_IMAGE": 32,
    "MAX_GT_INSTANCES": 10,
    "DETECTION_MAX_INSTANCES": 10,
    "TRAIN_BN": True,
}
TINY_SET = ["--set"] + [f"{k}={v}" if isinstance(v, str) else f"{k}={v!r}"
                        for k, v in TINY.items()]
# Two stages, both on the heads (cheap), told apart by their learning rates.
SCHEDULE = {"1": {"learning_rate": 0.01, "layers": "heads"},
            "2": {"learning_rate": 0.002, "layers": "heads"}}
ONE_SHOT, BACKGROUND = (ids.tolist() for ids in get_class_split(1, NUM_CATEGORIES))
# Everything that starts TensorFlow in a subprocess (about 4 minutes in all on 2 busy cores).
slow = pytest.mark.slow


def run_cli(*args, cwd) -> subprocess.CompletedProcess:
    """train_siamese.py with this interpreter, in cwd; output captured as text."""
    return run_python([SCRIPT, *args], cwd=cwd, extra_env={"COLUMNS": "2000"})


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}")
    return proc


def error_lines(proc: subprocess.CompletedProcess | str) -> list:
    stderr = proc if isinstance(proc, str) else proc.stderr
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Working directory: data/ (the shapes set), schedule.json, tiny_config.py and
    q.png (a black 64 px image)."""
    root = tmp_path_factory.mktemp("train_siamese_cli")
    generate_dataset(root / "data", 40, 12, seed=0, size=128, workers=1)
    (root / "schedule.json").write_text(json.dumps(SCHEDULE))
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "q.png")
    fields = "\n".join(f"    {k} = {v!r}" for k, v in TINY.items())
    (root / "tiny_config.py").write_text(
        "from siamese_mrcnn.config import Config\n\n\n"
        f"class TinyShapesConfig(Config):\n{fields}\n")
    return root


@pytest.fixture(scope="module")
def trained(work) -> dict:
    """train 1 epoch from scratch, resume to 2, ask for 2 again; what each left behind."""
    log_dir = work / "logs" / "siamese_mrcnn_shapes_i1"
    common = ["--dataset", "data", "--schedule", "schedule.json", "--steps-per-epoch", 2,
              "--validation-steps", 1, "--val-images", 8, "--logs", "logs", *TINY_SET]
    first = run_cli("train", "--model", "none", "--epochs", 1, *common, cwd=work)
    ckpt1 = log_dir / "siamese_mrcnn_0001.h5"
    before = (ckpt1.stat().st_mtime_ns, digest(ckpt1)) if ckpt1.exists() else None
    resumed = run_cli("train", "--model", "last", "--epochs", 2, *common, cwd=work)
    again = run_cli("train", "--model", "last", "--epochs", 2, *common, cwd=work)
    after = (ckpt1.stat().st_mtime_ns, digest(ckpt1)) if ckpt1.exists() else None
    return {"first": first, "resumed": resumed, "again": again, "log_dir": log_dir,
            "ckpt1_before": before, "ckpt1_after": after}


def _checkpoints(log_dir: Path) -> list:
    return sorted(p.name for p in log_dir.glob("siamese_mrcnn_*.h5"))


# ------------------------------------------------------------------------ train

@slow
def test_train_writes_the_first_checkpoint_and_shows_each_loss(trained):
    first = ok(trained["first"])
    assert trained["ckpt1_before"] is not None, _checkpoints(trained["log_dir"])
    output = first.stdout + first.stderr
    for loss in LOSSES:
        assert loss in output, loss
        assert f"val_{loss}" in output, loss
    assert re.search(r"siamese_mrcnn\.cli: Training i1: epoch 1 to 1, weights none", output)
    assert "trained to epoch 1:" in first.stdout
    assert "Traceback" not in output


@slow
def test_train_model_last_resumes_at_the_next_epoch(trained):
    resumed = ok(trained["resumed"])
    output = resumed.stdout + resumed.stderr
    assert _checkpoints(trained["log_dir"]) == ["siamese_mrcnn_0001.h5",
                                                "siamese_mrcnn_0002.h5"]
    assert re.search(r"siamese_mrcnn\.cli: Training i1: epoch 2 to 2, weights \S*"
                     r"siamese_mrcnn_0001\.h5", output)
    assert "epoch 1 to" not in output
    # Keras counts from the resumed epoch; the stage of epoch 2 (lr 0.002) is used.
    assert "Epoch 2/2" in resumed.stdout and "Epoch 1/2" not in resumed.stdout
    assert "LR=0.002" in output and "LR=0.01" not in output
    # Epoch 1 was not trained again: its checkpoint is untouched.
    assert trained["ckpt1_after"] == trained["ckpt1_before"]
    assert "trained to epoch 2:" in resumed.stdout


@slow
def test_train_again_to_the_same_epoch_has_nothing_to_do(trained):
    again = ok(trained["again"])
    assert "already trained to epoch 2 (asked for 2): nothing to do" in again.stdout
    assert "Epoch " not in again.stdout  # no fit
    assert _checkpoints(trained["log_dir"]) == ["siamese_mrcnn_0001.h5",
                                                "siamese_mrcnn_0002.h5"]


@slow
def test_a_kill_during_a_checkpoint_write_leaves_nothing_that_resume_loads(work, tmp_path):
    """SIGKILL while epoch 2's checkpoint is written (the test hook holds the writer
    after the temporary file is complete, before the rename): no siamese_mrcnn_0002.h5
    appears, and `--model last` resumes from epoch 1 and writes epoch 2."""
    import signal
    import sys
    import time

    from mrcnn.weights import PAUSE_ENV
    from tests.helpers.processes import QUIET_ENV, kill_group

    logs = tmp_path / "logs"
    run_dir = logs / "siamese_mrcnn_shapes_i1"
    common = ["--dataset", "data", "--schedule", "schedule.json", "--steps-per-epoch", "2",
              "--validation-steps", "1", "--val-images", "8", "--logs", str(logs), *TINY_SET]
    env = dict(os.environ, **QUIET_ENV, **{PAUSE_ENV: "siamese_mrcnn_0002.h5"})
    proc = subprocess.Popen([sys.executable, SCRIPT, "train", "--model", "none", "--epochs",
                             "2", *common], cwd=work, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    flag = run_dir / "siamese_mrcnn_0002.h5.paused"
    try:
        # Generous: two tiny epochs take well under a minute; this only catches a hang.
        deadline = time.monotonic() + 900
        while not flag.exists():
            assert proc.poll() is None, f"training ended ({proc.returncode}) before the write"
            assert time.monotonic() < deadline, "the checkpoint write never started"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        kill_group(proc)
    assert _checkpoints(run_dir) == ["siamese_mrcnn_0001.h5"]
    assert list(run_dir.glob(".tmp_*.h5"))  # the complete but unrenamed file is left
    resumed = ok(run_cli("train", "--model", "last", "--epochs", 2, *common, cwd=work))
    output = resumed.stdout + resumed.stderr
    assert re.search(r"epoch 2 to 2, weights \S*siamese_mrcnn_0001\.h5", output), output[-2000:]
    assert _checkpoints(run_dir) == ["siamese_mrcnn_0001.h5", "siamese_mrcnn_0002.h5"]


# --------------------------------------------------------------------- evaluate

def _check_stats(results: dict, eval_types: list, runs: int) -> None:
    assert results["eval_types"] == eval_types and results["runs"] == runs
    assert sorted(results["stats"]) == sorted(eval_types)
    t = scipy_stats.t.ppf(0.975, runs - 1) if runs > 1 else 0.0
    for eval_type in eval_types:
        stats = results["stats"][eval_type]
        assert list(stats) == list(STAT_NAMES)
        for name, s in stats.items():
            values = np.array(s["runs"])
            assert len(values) == runs and np.all((values >= 0) & (values <= 1)
                                                  | (values == -1)), (name, values)
            assert s["mean"] == pytest.approx(values.mean())
            half = 0.0 if runs == 1 or np.all(values == -1) else (
                t * values.std(ddof=1) / math.sqrt(runs))
            assert s["half_width"] == pytest.approx(half, abs=1e-12)
            assert s["interval"] == pytest.approx([s["mean"] - half, s["mean"] + half])


@slow
def test_evaluate_last_prints_a_table_and_writes_runs_and_per_class_ap50(work, trained):
    proc = ok(run_cli("evaluate", "--dataset", "data", "--model", "last", "--runs", 2,
                      "--limit", 6, "--output", "out/r.json", "--logs", "logs", "--quiet",
                      *TINY_SET, cwd=work))
    header, bbox, segm, footer = proc.stdout.strip().splitlines()[-4:]
    assert header.split() == ["type", "AP", "AP50", "AP75", "AP_small", "AP_medium",
                              "AP_large"]
    assert bbox.startswith("bbox") and segm.startswith("segm")
    assert footer.startswith("(2 run(s)") and f"{len(ONE_SHOT)} categories" in footer

    results = json.loads((work / "out" / "r.json").read_text())
    _check_stats(results, ["bbox", "segm"], runs=2)
    assert results["class_ids"] == ONE_SHOT
    for eval_type in ("bbox", "segm"):
        per_class = results["per_class_ap50"][eval_type]
        assert sorted(per_class, key=int) == [str(c) for c in ONE_SHOT]
        for entry in per_class.values():
            assert len(entry["runs"]) == 2 and entry["mean"] == pytest.approx(
                np.mean(entry["runs"]))
            assert isinstance(entry["name"], str) and entry["name"]
    meta = results["meta"]
    assert meta["checkpoint"].endswith(os.path.join("siamese_mrcnn_shapes_i1",
                                                    "siamese_mrcnn_0002.h5"))
    assert (meta["classes"], meta["shots"], meta["random_baseline"]) == ("one-shot", 1, False)


@slow
def test_evaluate_background_random_baseline_with_two_shots(work, trained):
    checkpoint = trained["log_dir"] / "siamese_mrcnn_0001.h5"
    proc = ok(run_cli("evaluate", "--dataset", "data", "--model", checkpoint,
                      "--classes", "background", "--random-baseline", "--shots", 2,
                      "--runs", 1, "--limit", 4, "--eval-type", "bbox", "--seed", 3,
                      "--output", "out/background.json", "--logs", "logs", "--quiet",
                      *TINY_SET, cwd=work))
    assert "(1 run(s)" in proc.stdout
    results = json.loads((work / "out" / "background.json").read_text())
    _check_stats(results, ["bbox"], runs=1)
    assert results["class_ids"] == BACKGROUND
    assert sorted(results["per_class_ap50"]["bbox"], key=int) == [str(c) for c in BACKGROUND]
    meta = results["meta"]
    assert (meta["classes"], meta["shots"], meta["random_baseline"], meta["seed"]) == (
        "background", 2, True, 3)


# ----------------------------------------------------------------------- detect

def _val_image(index: int) -> str:
    return f"data/val2017/{10_000_000 + index:012d}.png"


def _check_detection_outputs(work: Path, picture: str, json_path: str) -> dict:
    png = (work / picture).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert min(Image.open(work / picture).size) >= 200
    summary = json.loads((work / json_path).read_text())
    scores = [d["score"] for d in summary["detections"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    for d in summary["detections"]:
        y1, x1, y2, x2 = d["box_yxyx"]
        assert 0 <= y1 < y2 <= 128 and 0 <= x1 < x2 <= 128, d
        assert 0 <= d["mask_pixels"] <= (y2 - y1) * (x2 - x1)
    assert summary["picture"] == picture
    return summary


@slow
def test_detect_with_a_reference_image_and_a_config_file(work, trained):
    """The reference is an object cropped from another image; the model is described
    by --config tiny_config.py instead of --set."""
    annotations = json.loads((work / "data/annotations/instances_val2017.json").read_text())
    annotation = next(a for a in annotations["annotations"] if a["image_id"] == 10_000_002)
    x, y, w, h = (int(round(v)) for v in annotation["bbox"])
    source = np.asarray(Image.open(work / _val_image(2)).convert("RGB"))
    Image.fromarray(source[y:y + h, x:x + w]).save(work / "reference.png")
    checkpoint = trained["log_dir"] / "siamese_mrcnn_0002.h5"
    proc = ok(run_cli("detect", "--model", checkpoint, "--image", _val_image(1),
                      "--reference", "reference.png", "--config", "tiny_config.py",
                      "--output", "out/detect.png", "--json", "out/detect.json",
                      cwd=work))
    summary = _check_detection_outputs(work, "out/detect.png", "out/detect.json")
    assert summary["reference"] == "reference.png"
    assert f"{len(summary['detections'])} detection(s)" in proc.stdout
    # The tiny config's weights load by name without a mismatch.
    assert "shape mismatch 0" in proc.stderr


@slow
def test_detect_with_a_reference_box_and_model_last(work, trained):
    box = f"{_val_image(3)}:20,30,40,35"
    ok(run_cli("detect", "--model", "last", "--image", _val_image(4),
               "--reference-box", box, "--min-score", 0.1, "--output", "out/box.png",
               "--json", "out/box.json", "--logs", "logs", *TINY_SET, cwd=work))
    summary = _check_detection_outputs(work, "out/box.png", "out/box.json")
    assert summary["reference"] == box
    assert summary["model"].endswith("siamese_mrcnn_0002.h5")
    assert all(d["score"] >= 0.1 for d in summary["detections"])


@slow
def test_a_checkpoint_of_another_size_asks_for_its_config(work, trained):
    """A checkpoint loaded into a model of another configuration: one line that names
    the first weight that does not fit and the options to give, not the library's
    exclude=/skip_mismatch= advice."""
    checkpoint = trained["log_dir"] / "siamese_mrcnn_0002.h5"
    proc = run_cli("detect", "--model", checkpoint, "--image", "q.png", "--reference",
                   "q.png", *TINY_SET, "FPN_CLASSIF_FC_LAYERS_SIZE=32", cwd=work)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert f"--model {checkpoint}: " in lines[0]
    # The first head layer after the ROI align: 64 filters in the file, 32 asked for.
    assert ("(first: 'mrcnn_class_conv1/kernel' is (7, 7, 48, 64) in the file, "
            "(7, 7, 48, 32) in the model)") in lines[0], lines[0]
    assert lines[0].endswith("give the --config and --set it was trained with")
    assert "skip_mismatch" not in lines[0]


# ----------------------------------------------------------------------- errors

ERRORS = {
    "missing data set": (["train", "--dataset", "no_such_dir", "--model", "none"],
                         "data set directory not found: no_such_dir"),
    "last without checkpoints": (["evaluate", "--dataset", "data", "--model", "last",
                                  "--logs", "empty_logs", *TINY_SET],
                                 "no checkpoint"),
    "unknown split": (["train", "--dataset", "data", "--split", "7"], "--split"),
    "unknown --set key": (["train", "--dataset", "data", "--set", "NOT_A_FIELD=1"],
                          "NOT_A_FIELD"),
    "invalid --set value": (["evaluate", "--dataset", "data", "--model", "none",
                             "--set", "IMAGE_MAX_DIM=100"], "IMAGE_MAX_DIM"),
    "missing --model file": (["detect", "--model", "missing.h5", "--image", "q.png",
                              "--reference", "q.png"],
                             # detect takes no export folder, so none is offered
                             "weights file not found: missing.h5 (expected imagenet-687|"
                             "imagenet-771|imagenet-1k|last|none|PATH.h5)"),
    "malformed --reference-box": (["detect", "--model", "none", "--image", "q.png",
                                   "--reference-box", "q.png:1,2,3"],
                                  "--reference-box expects IMAGE:x,y,w,h"),
}


@pytest.mark.parametrize("case", [
    pytest.param(case, marks=slow) if case == "last without checkpoints" else case
    for case in ERRORS])
def test_user_errors_print_one_line_and_exit_non_zero(work, case):
    argv, expected = ERRORS[case]
    proc = run_cli(*argv, cwd=work)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert expected.lower() in lines[0].lower(), lines[0]


IN_PROCESS_ERRORS = {
    "unknown preset": (["evaluate", "--dataset", "data", "--model", "none",
                        "--config", "medium"],
                       "--config must be small, large, tiny, quickstart or a PATH.py"),
    "missing config file": (["detect", "--model", "none", "--image", "q.png",
                             "--reference", "q.png", "--config", "nope.py"],
                            "config file not found"),
    "missing image": (["detect", "--model", "none", "--image", "nope.png",
                       "--reference", "nope.png"], "image not found: nope.png"),
    "both references": (["detect", "--model", "none", "--image", "q.png", "--reference",
                         "q.png", "--reference-box", "q.png:1,2,3,4"], "exactly one of"),
    "box outside the image": (["detect", "--model", "none", "--image", "q.png",
                               "--reference-box", "q.png:300,300,10,10"], "outside"),
    "missing schedule": (["train", "--dataset", "data", "--schedule", "nope.json"],
                         "--schedule must be paper, full or a JSON file"),
    "epochs past the schedule": (["train", "--dataset", "data", "--epochs", "200"],
                                 "past the end of the schedule (epoch 160)"),
    "no --val-images": (["train", "--dataset", "data", "--val-images", "0"],
                        "--val-images must be >= 1"),
    "bad eval type": (["evaluate", "--dataset", "data", "--model", "none",
                       "--eval-type", "bbox,keypoints"], "--eval-type"),
    "no runs": (["evaluate", "--dataset", "data", "--model", "none", "--runs", "0"],
                "--runs must be >= 1"),
    # was numpy's "expected non-negative integer", after the data and the model loaded
    "negative seed": (["evaluate", "--dataset", "data", "--model", "none", "--seed", "-1"],
                      "--seed must be >= 0, got -1"),
    "report negative seed": (["report", "--dataset", "data", "--models", "none",
                              "--seed", "-2", "--output", "report"],
                             "--runs must be >= 1, --limit >= 0 and --seed >= 0, got 5, 0 "
                             "and -2"),
    "no such subset": (["evaluate", "--dataset", "data", "--model", "none",
                        "--subset", "test"], "instances_test2017.json"),
    "min-score as percent": (["detect", "--model", "none", "--image", "q.png",
                              "--reference", "q.png", "--min-score", "50"],
                             "--min-score must be in [0, 1], got 50.0"),
    "search min-score nan": (["search", "--model", "none", "--images", "q.png",
                              "--reference", "q.png", "--min-score", "nan",
                              "--output", "found"],
                             "--min-score must be in [0, 1], got nan"),
    "--set without =": (["detect", "--model", "none", "--image", "q.png",
                         "--reference", "q.png", "--set", "IMAGES_PER_GPU"],
                        "--set expects KEY=VALUE"),
    # Both were tracebacks from the model's constructor (Keras' "incompatible shapes").
    "reference size the FPN cannot take": (
        ["detect", "--model", "none", "--image", "q.png", "--reference", "q.png",
         "--config", "tiny", "--set", "TARGET_MIN_DIM=32", "TARGET_MAX_DIM=48"],
        "configuration: TARGET_MAX_DIM must be divisible by 32 for the model"),
    "three classes": (["detect", "--model", "none", "--image", "q.png", "--reference",
                       "q.png", "--set", "NUM_CLASSES=3"],
                      "configuration: NUM_CLASSES must be 2 for Siamese Mask R-CNN"),
}


@pytest.mark.parametrize("case", list(IN_PROCESS_ERRORS))
def test_more_user_errors_in_process(work, case, capsys, monkeypatch):
    """Checked before TensorFlow is imported, so they run in this process."""
    monkeypatch.chdir(work)
    argv, expected = IN_PROCESS_ERRORS[case]
    assert cli.main(argv) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and expected in lines[0], lines


# Each output option is checked before any work (a model run takes minutes; os.makedirs
# used to fail only after it, and export's TensorFlow printed a traceback). FILE is a
# file, DIR a folder; {FILE} stands for its path.
OUTPUT_ERRORS = {
    "train --logs under a file": (
        ["train", "--dataset", "data", "--model", "none", "--logs", "FILE/logs"],
        "--logs FILE/logs: {FILE} is a file, not a folder"),
    "evaluate --output a folder": (
        ["evaluate", "--dataset", "data", "--model", "none", "--output", "DIR"],
        "--output DIR: expected a file, found a folder"),
    "evaluate --merge --output a folder": (
        ["evaluate", "--dataset", "data", "--merge", "part0.json", "--output", "DIR"],
        "--output DIR: expected a file, found a folder"),
    "detect --output under a file": (
        ["detect", "--model", "none", "--image", "q.png", "--reference", "q.png",
         "--output", "FILE/picture.png"], "--output FILE/picture.png: {FILE} is a file"),
    "detect --json a folder": (
        ["detect", "--model", "none", "--image", "q.png", "--reference", "q.png",
         "--json", "DIR"], "--json DIR: expected a file, found a folder"),
    "search --output a file": (
        ["search", "--model", "none", "--images", "DIR", "--reference", "q.png",
         "--output", "FILE"], "--output FILE: expected a folder, found a file"),
    "export --output under a file": (
        ["export", "--model", "none", "--output", "FILE/saved"],
        "--output FILE/saved: {FILE} is a file, not a folder"),
    "report --output a file": (
        ["report", "--dataset", "data", "--models", "none", "--output", "FILE"],
        "--output FILE: expected a folder, found a file"),
}


@pytest.mark.parametrize("case", list(OUTPUT_ERRORS))
def test_an_unusable_output_is_one_line_before_any_work(work, tmp_path, case, capsys,
                                                        monkeypatch):
    """Each command's output paths: a file where a folder goes (or under a file), a
    folder where a file goes. A usage error (2) naming the option; nothing is written."""
    monkeypatch.chdir(work)
    (tmp_path / "a_folder").mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    before = sorted(p.name for p in work.iterdir())
    argv, expected = OUTPUT_ERRORS[case]
    names = {"FILE": str(a_file), "DIR": str(tmp_path / "a_folder")}

    def path(arg: str) -> str:
        head, sep, tail = arg.partition("/")
        return names[head] + sep + tail if head in names else arg

    if "--merge" in argv:  # a part file that exists, so only --output can be wrong
        (tmp_path / "part0.json").write_text("{}")
        names["part0.json"] = str(tmp_path / "part0.json")
    assert cli.main([path(arg) for arg in argv]) == 2
    lines = error_lines(capsys.readouterr().err)
    line = expected.replace("{FILE}", str(a_file))
    for name, value in names.items():
        line = line.replace(f" {name}", f" {value}")
    assert len(lines) == 1 and lines[0].startswith(f"error: {line}"), (line, lines)
    assert a_file.read_text() == "not a folder"
    assert list((tmp_path / "a_folder").iterdir()) == []
    assert sorted(p.name for p in work.iterdir()) == before


# ------------------------------------------------------------------------- help

HELP_OPTIONS = {
    "train": ["--dataset", "--year", "--split", "--config", "--set", "--model", "--schedule",
              "--epochs", "--steps-per-epoch", "--val-images", "--logs", "--gpus",
              "--augment", "imagenet-687", "imagenet-1k", "last", "none", "paper", "full",
              "small", "large", "PATH.py", "PATH.json", "PATH.h5", "3000"],
    "evaluate": ["--dataset", "--model", "--subset", "--split", "--classes", "one-shot",
                 "background", "all", "--runs", "--shots", "--limit", "--eval-type",
                 "bbox,segm", "--random-baseline", "--output", "--set", "--config"],
    "detect": ["--model", "--image", "--reference", "--reference-box", "IMAGE:x,y,w,h",
               "--output", "--json", "--set", "--config"],
}


def test_help_of_each_command_documents_every_option(tmp_path):
    top = ok(run_cli("--help", cwd=tmp_path))
    for command in ("train", "evaluate", "detect"):
        assert command in top.stdout
    for command, options in HELP_OPTIONS.items():
        proc = ok(run_cli(command, "--help", cwd=tmp_path))
        missing = [o for o in options if o not in proc.stdout]
        assert not missing, (command, missing)


# ------------------------------------------------------------ helpers in process

def test_parse_set():
    assert cli.parse_set(["A=1", " B = x=y ", "C="]) == {"A": "1", "B": " x=y ", "C": ""}
    assert cli.parse_set(None) == {} and cli.parse_set([]) == {}
    for bad in (["A"], ["=1"], [" =1"]):
        with pytest.raises(cli.CLIError, match="KEY=VALUE"):
            cli.parse_set(bad)


def test_set_may_be_repeated_and_values_are_typed_like_the_defaults():
    args = cli.build_parser().parse_args(
        ["evaluate", "--dataset", "d", "--model", "m", "--set", "IMAGES_PER_GPU=2",
         "RPN_ANCHOR_SCALES=(8,16,32,64,128)", "--set", "MASK_SHAPE=[14,14]", "MASK_POOL_SIZE=7",
         "TRAIN_BN=true", "BACKBONE=resnet_tiny"])
    overrides = cli.parse_set(args.set)
    assert len(overrides) == 6
    config = cli.build_config("small", overrides, evaluation=True)
    assert config.IMAGES_PER_GPU == 2 and config.BATCH_SIZE == 2
    assert config.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)
    assert config.MASK_SHAPE == [14, 14] and config.TRAIN_BN is True
    assert config.BACKBONE == "resnet_tiny"
    assert config.EXPERIMENT == "evaluation"  # the small_eval preset
    with pytest.raises(cli.CLIError, match="NOT_A_FIELD"):
        cli.build_config("small", {"NOT_A_FIELD": "1"})
    with pytest.raises(cli.CLIError, match="IMAGES_PER_GPU"):
        cli.build_config("small", {"IMAGES_PER_GPU": "two"})


def test_run_names_put_train_evaluate_and_detect_in_one_log_directory():
    for spec, split, name, experiment in (("small", "2", "coco", "i2"),
                                          ("small", "i3", "coco", "i3"),
                                          ("large", "full", "parallel_coco", "full"),
                                          ("tiny", "1", "tiny", "i1")):
        names = cli.run_names(spec, split)
        assert names == {"NAME": name, "EXPERIMENT": experiment}
        train = cli.build_config(spec, {}, **names)
        evaluation = cli.build_config(spec, {}, evaluation=True, **names)
        assert (evaluation.NAME, evaluation.EXPERIMENT) == (train.NAME, train.EXPERIMENT)
        assert evaluation.IMAGES_PER_GPU == 1 and train.IMAGES_PER_GPU > 1
    # --set wins over the derived names.
    config = cli.build_config("small", {"EXPERIMENT": "mine"}, **cli.run_names("small", "1"))
    assert config.EXPERIMENT == "mine"


def test_config_file_with_a_subclass_an_instance_or_an_error(tmp_path):
    derived = tmp_path / "derived.py"
    derived.write_text("from siamese_mrcnn.config import Config\n"
                       "class Base(Config):\n    NAME = 'base'\n    IMAGES_PER_GPU = 3\n"
                       "class Mine(Base):\n    NAME = 'mine'\n    EXPERIMENT = 'exp'\n")
    config = cli.build_config(str(derived), {"IMAGES_PER_GPU": "2"})
    assert (config.NAME, config.EXPERIMENT, config.BATCH_SIZE) == ("mine", "exp", 2)
    assert cli.run_names(str(derived), "1") == {"NAME": "mine", "EXPERIMENT": "exp"}

    instance = tmp_path / "instance.py"
    instance.write_text("from siamese_mrcnn.config import preset\n"
                        "config = preset('small', NAME='inst', IMAGES_PER_GPU=5)\n")
    config = cli.build_config(str(instance), {}, evaluation=True)
    assert (config.NAME, config.IMAGES_PER_GPU) == ("inst", 5)

    two = tmp_path / "two.py"
    two.write_text("from siamese_mrcnn.config import Config\n"
                   "class A(Config):\n    pass\nclass B(Config):\n    pass\n")
    with pytest.raises(cli.CLIError, match="one siamese_mrcnn.config.Config subclass, "
                                           "found A, B"):
        cli.build_config(str(two))
    broken = tmp_path / "broken.py"
    broken.write_text("class Oops(:\n")
    with pytest.raises(cli.CLIError, match="failed to run: SyntaxError"):
        cli.build_config(str(broken))


def test_resolve_schedule(tmp_path):
    assert cli.resolve_schedule("paper", 0.01) == {
        1: {"layers": "heads", "learning_rate": 0.01},
        120: {"layers": "all", "learning_rate": 0.01},
        160: {"layers": "all", "learning_rate": pytest.approx(0.001)}}
    assert max(cli.resolve_schedule("full", 0.02)) == 320
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"3": {"learning_rate": "0.5", "layers": "4+"},
                                "1": {"learning_rate": 0.1, "layers": "heads"}}))
    assert cli.resolve_schedule(str(path), 99.0) == {
        3: {"layers": "4+", "learning_rate": 0.5}, 1: {"layers": "heads", "learning_rate": 0.1}}
    for bad in ([1, 2], {"1": {"layers": "heads"}}, {"x": {"learning_rate": 1, "layers": "a"}},
                {}, {"0": {"learning_rate": 0.1, "layers": "all"}},
                {"2": {"learning_rate": -1, "layers": "all"}},
                {"2": {"learning_rate": float("inf"), "layers": "all"}},  # JSON's Infinity
                {"2": {"learning_rate": float("nan"), "layers": "all"}}):
        path.write_text(json.dumps(bad))
        with pytest.raises(cli.CLIError, match="s.json: expected"):
            cli.resolve_schedule(str(path), 0.01)
    with pytest.raises(cli.CLIError, match="not found: nope.json"):
        cli.resolve_schedule("nope.json", 0.01)


def test_reference_from_box_crops_clips_and_rejects(tmp_path):
    image = np.arange(20 * 30 * 3, dtype=np.uint32).reshape(20, 30, 3) % 251
    image = image.astype(np.uint8)
    path = tmp_path / "a:b.png"  # a colon in the path: the box is after the last one
    Image.fromarray(image).save(path)
    np.testing.assert_array_equal(cli.reference_from_box(f"{path}:4,2,10,6"),
                                  image[2:8, 4:14])
    np.testing.assert_array_equal(cli.reference_from_box(f"{path}:3.6,1.4,2.2,3"),
                                  image[1:4, 4:6])
    # Clipped to the image at every border.
    np.testing.assert_array_equal(cli.reference_from_box(f"{path}:-5,-3,10,8"),
                                  image[0:5, 0:5])
    np.testing.assert_array_equal(cli.reference_from_box(f"{path}:25,15,100,100"),
                                  image[15:, 25:])
    gray = tmp_path / "gray.png"
    Image.fromarray(image[..., 0]).save(gray)
    crop = cli.reference_from_box(f"{gray}:0,0,4,3")
    assert crop.shape == (3, 4, 3)
    np.testing.assert_array_equal(crop[..., 2], image[:3, :4, 0])
    for spec, message in ((f"{path}:1,2,3", "expects IMAGE:x,y,w,h"),
                          ("1,2,3,4", "expects IMAGE:x,y,w,h"),
                          (f"{path}:a,2,3,4", "expects IMAGE:x,y,w,h"),
                          (f"{path}:1,2,inf,4", "expects IMAGE:x,y,w,h"),
                          (f"{path}:1,2,0,4", "width and height must be > 0"),
                          (f"{path}:-20,2,10,4", "outside the 30x20 image"),
                          (f"{path}:1,-9,10,4", "outside the 30x20 image"),
                          (f"{tmp_path}/none.png:1,2,3,4", "image not found")):
        with pytest.raises(cli.CLIError, match=re.escape(message)):
            cli.reference_from_box(spec)


def test_format_results_table():
    def stat(mean, half):
        return {"mean": mean, "half_width": half}

    results = {"runs": 3, "class_ids": [1, 5],
               "stats": {"bbox": {"AP": stat(0.25, 0.01), "AP50": stat(0.5, 0.125),
                                  "AP75": stat(0.0, 0.0), "AP_small": stat(-1.0, 0.0),
                                  "AP_medium": stat(1.0, 0.0)},
                         "segm": {"AP50": stat(0.123, 0.0456)}}}
    header, bbox, segm, footer = cli.format_results_table(results).splitlines()
    assert header.split() == ["type", "AP", "AP50", "AP75", "AP_small", "AP_medium",
                              "AP_large"]
    # Six right-aligned cells of 14 characters after the 6 of the type.
    cells = [bbox[7 + 15 * i:7 + 15 * i + 14].strip() for i in range(6)]
    assert bbox.startswith("bbox")
    assert cells == ["25.0 ±  1.0", "50.0 ± 12.5", "0.0 ±  0.0", "n/a", "100.0 ±  0.0",
                     "n/a"]
    assert segm.startswith("segm") and "12.3 ±  4.6" in segm and segm.count("n/a") == 5
    assert footer == "(3 run(s); mean ± 95% half interval, in %; 2 categories)"


def test_check_split_and_eval_types():
    for split in ("1", "4", "i2", "full", "FULL"):
        assert cli.check_split(split) == split
    for split in ("0", "5", "7", "half", ""):
        with pytest.raises(cli.CLIError, match="--split: expected 1, 2, 3, 4 or full"):
            cli.check_split(split)
    assert cli.parse_eval_types("bbox, segm") == ["bbox", "segm"]
    assert cli.parse_eval_types("segm") == ["segm"]
    for bad in ("", ",", "box", "bbox,mask"):
        with pytest.raises(cli.CLIError, match="--eval-type"):
            cli.parse_eval_types(bad)


def test_split_datasets_read_the_train_file_once(work, monkeypatch):
    import siamese_mrcnn.coco as coco_module

    reads = []
    original = coco_module.read_coco_annotations

    def counting(path):
        reads.append(path)
        return original(path)

    monkeypatch.setattr(coco_module, "read_coco_annotations", counting)
    monkeypatch.setattr(coco_module, "load_coco_api", counting)
    [(train, _), (val, _)], one_shot, background = cli.load_split_datasets(
        str(work / "data"), "2017", "1", 8)
    assert len(reads) == 1 and reads[0].endswith("instances_train2017.json")
    assert len(val.image_ids) == 8 and len(train.image_ids) == 40 - 8
    train_ids = {info["id"] for info in train.image_info}
    assert train_ids.isdisjoint(info["id"] for info in val.image_info)
    assert list(train.get_active_classes()) == list(background)


# ------------------------------------------------------------- sharded evaluation
def evaluate_in_process(work: Path, *extra) -> int:
    """evaluate every category on the 12 val images, 2 runs, every detection kept."""
    return cli.main(["evaluate", "--dataset", str(work / "data"), "--runs", "2",
                     "--classes", "all", "--eval-type", "bbox,segm", "--seed", "5",
                     "--logs", str(work / "logs"), "--quiet", *TINY_SET,
                     "DETECTION_MIN_CONFIDENCE=0", "DETECTION_MAX_INSTANCES=32",
                     *map(str, extra)])


@pytest.fixture(scope="module")
def settled(tmp_path_factory) -> Path:
    """Seeded random weights of the tiny model, settled: a trained-for-2-steps model
    finds nothing (every statistic 0, equal for any reason); settled, the detections
    are anchor boxes with foreground scores, some of them on objects. Seeded, so that
    every run gets the same weights (and the same non-zero statistics)."""
    import keras

    from siamese_mrcnn.model import SiameseMaskRCNN
    from tests.helpers.settled import settle

    root = tmp_path_factory.mktemp("settled")
    keras.utils.set_random_seed(0)
    config = cli.build_config("small", cli.parse_set(TINY_SET[1:]), evaluation=True)
    model = SiameseMaskRCNN("inference", config, str(root / "logs"))
    settle(model, [0.0, 0.5])
    model.save_weights(str(root / "settled.h5"))
    return root / "settled.h5"


@slow
def test_three_shards_merged_equal_the_unsharded_evaluation(work, settled, tmp_path, capsys):
    checkpoint = settled
    assert evaluate_in_process(work, "--model", checkpoint, "--output",
                               tmp_path / "all.json") == 0
    parts = [tmp_path / f"part{i}.json" for i in range(3)]
    for i, part in enumerate(parts):
        assert evaluate_in_process(work, "--model", checkpoint, "--shard", f"{i}/3",
                                   "--output", part) == 0
        assert f"shard {i}/3:" in capsys.readouterr().out
    # Any order of the parts; no model.
    assert evaluate_in_process(work, "--merge", *reversed(parts), "--output",
                               tmp_path / "merged.json") == 0
    table = capsys.readouterr().out
    assert "(2 run(s)" in table
    whole = json.loads((tmp_path / "all.json").read_text())
    merged = json.loads((tmp_path / "merged.json").read_text())
    for key in ("stats", "per_class_ap50", "seeds", "class_ids", "eval_types", "runs"):
        assert merged[key] == whole[key], key
    # Not a comparison of zeros: the model finds something in every run.
    assert all(v > 0 for v in whole["stats"]["bbox"]["AR100"]["runs"]), whole["stats"]["bbox"]
    pairs = [json.loads(p.read_text())["run_records"][0]["pairs"] for p in parts]
    positions = sorted(k for part in pairs for k, _ in part)
    assert positions == list(range(len(positions))) and all(len(p) > 0 for p in pairs)
    assert merged["meta"]["merged"] == [str(p) for p in reversed(parts)]


@pytest.mark.parametrize("case, words", [
    ("missing shard", "expected shards 0..2 once each; missing [2]"),
    ("corrupt part", "not a shard file (corrupt JSON"),
    ("bad shard", "--shard expects I/N with 0 <= I < N"),
    ("random baseline", "the random-boxes baseline cannot be sharded"),
    ("no output", "--shard needs --output"),
    ("no model", "evaluate needs --model"),
])
def test_sharded_evaluation_errors_are_one_line(work, tmp_path, case, words, capsys):
    part = {"format": "siamese-mrcnn-shard/1", "shard": 0, "num_shards": 3, "runs": 1,
            "seed": 0, "eval_types": ["bbox"], "coco_image_ids": [], "class_ids": [],
            "total_pairs": 0, "shots": 1, "run_records": [{"pairs": [], "skipped": [],
                                                           "timing": {}, "seconds": 0}]}
    (tmp_path / "p0.json").write_text(json.dumps(part))
    (tmp_path / "p1.json").write_text(json.dumps(dict(part, shard=1)))
    (tmp_path / "bad.json").write_text('{"format": "siamese-mrcnn-shard/1", "sha')
    args = {
        "missing shard": ["--merge", tmp_path / "p0.json", tmp_path / "p1.json"],
        "corrupt part": ["--merge", tmp_path / "p0.json", tmp_path / "bad.json"],
        "bad shard": ["--model", "none", "--shard", "3/3", "--output", tmp_path / "x"],
        "random baseline": ["--model", "none", "--shard", "0/2", "--random-baseline",
                            "--output", tmp_path / "x"],
        "no output": ["--model", "none", "--shard", "0/2"],
        "no model": [],
    }[case]
    assert evaluate_in_process(work, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


# ------------------------------------------------------------------------ report
@slow
def test_report_writes_both_tables_and_the_figures_and_reuses_its_cells(work, settled,
                                                                        tmp_path, capsys):
    common = ["report", "--dataset", str(work / "data"), "--runs", "2", "--limit", "6",
              "--shots", "1,2", "--seed", "1", "--logs", str(work / "logs"), "--quiet",
              *TINY_SET, "DETECTION_MIN_CONFIDENCE=0", "DETECTION_MAX_INSTANCES=32"]
    out = tmp_path / "report"
    assert cli.main([*common, "--models", f"{settled},{settled}", "--output",
                     str(out)]) == 0
    printed = capsys.readouterr().out
    assert "8 cell(s) evaluated, 0 read" in printed
    table2 = (out / "table2.md").read_text()
    assert table2.splitlines()[0] == "|  |  | S1 | S2 | mean |"
    labels = [line.split("|")[1].strip() + "/" + line.split("|")[2].strip()
              for line in table2.splitlines()[2:] if line.startswith("| ")]
    assert labels == [f"{row}/{kind}" for row in (
        "Siamese, background", "Siamese, one-shot", "Random boxes, one-shot",
        "Siamese 2-shot, one-shot") for kind in ("boxes", "masks")]
    rows = json.loads((out / "table2.json").read_text())
    cell = json.loads((out / "cells" / "s2_one-shot_2shot.json").read_text())
    assert cell["meta"]["shots"] == 2 and cell["runs"] == 2
    two_shot = next(r for r in rows if r["row"] == "Siamese 2-shot, one-shot"
                    and r["kind"] == "boxes")
    assert two_shot["values"]["S2"]["runs"] == cell["stats"]["bbox"]["AP50"]["runs"]
    for row in rows:  # the mean column: run r averaged over the splits, then its mean
        s1, s2, mean = (row["values"][k] for k in ("S1", "S2", "mean"))
        averaged = (np.array(s1["runs"]) + np.array(s2["runs"])) / 2
        assert mean["runs"] == pytest.approx(averaged.tolist())
        assert mean["mean"] == pytest.approx((s1["mean"] + s2["mean"]) / 2)
        assert mean["low"] <= mean["mean"] <= mean["high"]
    table1 = (out / "table1.md").read_text()
    assert "| Siamese, one-shot, mean of the splits |" in table1
    assert any(v > 0 for r in rows for v in r["values"]["S1"]["runs"])  # not all zeros
    for name in ("confusion_bbox.png", "confusion_segm.json", "ap50_by_instances.png"):
        assert (out / "figures_s1" / name).is_file(), name

    # Again from its cells (no models): the same tables, nothing evaluated.
    again = tmp_path / "again"
    assert cli.main([*common, "--splits", "2", "--results", str(out / "cells"), "--output",
                     str(again)]) == 0
    assert "0 cell(s) evaluated, 8 read" in capsys.readouterr().out
    assert (again / "table2.md").read_text() == table2
    assert (again / "table1.md").read_text() == table1


@pytest.mark.parametrize("args, words", [
    ([], "give --models"),
    (["--splits", "2"], "no result and no model for split(s) ['1', '2']"),
    (["--models", "missing.h5"], "--models: weights file not found: missing.h5"),
    (["--models", "none", "--full", "nothing.h5"], "--full: weights file not found: nothing.h5"),
    (["--models", "none", "--shots", "1,x"], "--shots expects numbers"),
])
def test_report_errors_are_one_line(work, tmp_path, args, words, capsys):
    assert cli.main(["report", "--dataset", str(work / "data"), "--output",
                     str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def _cell(runs):
    return {"stats": {"bbox": {"AP50": {"runs": runs}}}}


def test_report_from_results_alone_needs_no_data_set(tmp_path, capsys):
    """Cells evaluated elsewhere (evaluate --merge): the tables from --results, with a
    --dataset that does not exist here (it was loaded, and refused, before)."""
    cells = tmp_path / "cells"
    cells.mkdir()
    for name, runs in [("s1_background_1shot", [0.5, 0.4]), ("s1_one-shot_1shot", [0.2, 0.3]),
                       ("s1_one-shot_1shot_random", [0.0, 0.01])]:
        (cells / f"{name}.json").write_text(json.dumps(_cell(runs)))
    common = ["report", "--dataset", str(tmp_path / "nowhere"), "--splits", "1", "--shots",
              "1", "--results", str(cells), "--output"]
    assert cli.main([*common, str(tmp_path / "r")]) == 0
    assert "0 cell(s) evaluated, 3 read" in capsys.readouterr().out
    rows = json.loads((tmp_path / "r" / "table2.json").read_text())
    background = next(r for r in rows if r["row"] == "Siamese, background"
                      and r["kind"] == "boxes")
    assert background["values"]["S1"]["mean"] == pytest.approx(0.45)
    assert background["values"]["mean"]["runs"] == pytest.approx([0.5, 0.4])
    assert next(r for r in rows if r["kind"] == "masks")["values"]["S1"] is None  # no segm

    for text, words in [("42", "not an evaluate result (expected an object with 'stats')"),
                        (json.dumps(_cell([])), "stats.bbox.AP50.runs: expected a list of "
                         "numbers, one per run, got []"),
                        (json.dumps({"stats": {"bbox": {"AP50": 0.5}}}),
                         "stats.bbox.AP50.runs: expected a list of numbers")]:
        (cells / "s1_background_1shot.json").write_text(text)  # was a TypeError traceback
        assert cli.main([*common, str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "s1_background_1shot.json: " + words in err[0], err
    assert cli.main([*common[:-2], str(tmp_path / "typo"), "--output",
                     str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # It said "no result and no model for split(s) ['1']", as if no folder were needed.
    assert err == [f"error: --results {tmp_path / 'typo'}: expected a folder of cell "
                   "results, found none"]
    assert not (tmp_path / "bad").exists()


@slow
def test_two_workers_train_and_resume_from_the_chief(work, tmp_path):
    """TF_CONFIG makes `train` multi-worker: the chief (worker 0) writes the
    checkpoints into its --logs, worker 1 writes nothing; `--model last` on both
    resumes: the chief from its checkpoint, worker 1 from the chief's weights."""
    from tests.helpers.processes import run_workers

    def run_both(*args):
        return run_workers([[SCRIPT, "train", *args, "--logs", tmp_path / f"logs{index}"]
                            for index in range(2)], cwd=work, extra_env={"COLUMNS": "2000"})

    common = ["--dataset", "data", "--schedule", "schedule.json", "--steps-per-epoch", 2,
              "--validation-steps", 1, "--val-images", 8, *TINY_SET]
    chief_logs = tmp_path / "logs0" / "siamese_mrcnn_shapes_i1"
    first = run_both("--model", "none", "--epochs", 1, *common)
    for proc in first:
        ok(proc)
    assert _checkpoints(chief_logs) == ["siamese_mrcnn_0001.h5"]
    resumed = run_both("--model", "last", "--epochs", 2, *common)
    for proc in resumed:
        ok(proc)
        assert "Epoch 2/2" in proc.stdout and "Epoch 1/2" not in proc.stdout
        assert "trained to epoch 2" in proc.stdout
    assert "weights the chief's" in resumed[1].stderr
    assert _checkpoints(chief_logs) == ["siamese_mrcnn_0001.h5", "siamese_mrcnn_0002.h5"]
    assert not (tmp_path / "logs1").exists()
