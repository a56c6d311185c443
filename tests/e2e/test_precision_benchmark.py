"""benchmarks/precision.py: its comparison helpers on hand-made numbers, and a short run
(random weights, a few images, the forward-pass checks) in a subprocess that writes a
consistent report."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "precision.py"
sys.path.insert(0, str(SCRIPT.parent))

import precision  # noqa: E402
from tests.helpers.processes import run_python  # noqa: E402


def _det(image_id, category_id, bbox, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}


def test_box_iou_of_coco_boxes():
    assert precision._box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == pytest.approx(1.0)
    # 5 x 10 overlap, union 100 + 100 - 50
    assert precision._box_iou([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(50 / 150)
    assert precision._box_iou([0, 0, 10, 10], [20, 20, 5, 5]) == 0.0


def test_match_detections_is_per_image_and_category_and_one_to_one():
    ours = [_det(1, 1, [0, 0, 10, 10], 0.9), _det(1, 1, [1, 0, 10, 10], 0.8),
            _det(1, 2, [0, 0, 10, 10], 0.9),   # other category: no partner
            _det(2, 1, [50, 50, 10, 10], 0.3)]  # not confident: not counted
    theirs = [_det(1, 1, [0, 0, 10, 10], 0.85), _det(2, 1, [50, 50, 10, 10], 0.3)]
    matches, confident = precision.match_detections(ours, theirs)
    assert confident == 3
    # The best-scored detection takes the only partner; the second finds none left.
    assert [(a["score"], b["score"]) for a, b in matches] == [(0.9, 0.85)]


def test_check_training_uses_the_standard_error_of_the_difference():
    def runs(values):
        return [{"held_out": {"loss": v, "rpn_class_loss": v, "rpn_bbox_loss": v},
                 "train_loss_curve": [v], "skipped_steps": 0} for v in values]

    # means 1.0 and 1.2; variances 0.01 each -> SE sqrt(0.01/3 * 2) = 0.0816
    report = precision.check_training(runs([0.9, 1.0, 1.1]), runs([1.1, 1.2, 1.3]))
    row = report["held_out"]["loss"]
    assert row["standard_error"] == pytest.approx(np.sqrt(2 * 0.01 / 3))
    assert row["allowed"] == pytest.approx(3 * np.sqrt(2 * 0.01 / 3))
    assert row["difference"] == pytest.approx(0.2)
    assert report["within_tolerance"] is True
    # Runs that agree exactly: the 1 % floor decides.
    assert precision.check_training(runs([1.0, 1.0]), runs([1.005, 1.005]))[
        "within_tolerance"] is True
    assert precision.check_training(runs([1.0, 1.0]), runs([1.02, 1.02]))[
        "within_tolerance"] is False


def test_check_gradient_cosine_and_norm_ratio():
    grads = {"a/kernel": np.array([3.0, 4.0]), "b/bias": np.array([0.0])}
    same = precision.check_gradient(1.0, grads, 1.0, grads, 1.0)
    assert same["differences"]["gradient_cosine"] == pytest.approx(1.0)
    assert same["within_tolerance"] is True
    scaled = {k: 1.1 * v for k, v in grads.items()}
    longer = precision.check_gradient(1.0, grads, 1.0, scaled, 1.0)
    assert longer["differences"]["gradient_norm_ratio"] == pytest.approx(1.1)
    assert longer["within_tolerance"] is False  # 10 % > 5 %
    turned = {"a/kernel": np.array([4.0, 3.0]), "b/bias": np.array([0.0])}
    assert precision.check_gradient(1.0, grads, 1.0, turned, 1.0)["differences"][
        "gradient_cosine"] == pytest.approx(24 / 25)


def test_check_dense_flags_a_large_difference():
    a = [np.zeros((1, 4, 2)), np.zeros((1, 4, 4))]
    b = [np.full((1, 4, 2), 0.02), np.zeros((1, 4, 4))]
    report = precision.check_dense(a, b)
    assert report["differences"]["rpn_class_max_abs"] == pytest.approx(0.02)
    assert report["within_tolerance"] is False


def test_missing_weights_file_is_a_clear_error(tmp_path):
    done = run_python([SCRIPT, "--weights", tmp_path / "nope.h5"], cwd=REPO)
    assert done.returncode == 2
    assert "nope.h5: no such file" in done.stderr


def test_checks_option_is_validated():
    assert precision.parse_args([]).checks == list(precision.CHECKS)
    assert precision.parse_args(["--checks", "evaluation, dense"]).checks == [
        "evaluation", "dense"]
    for bad in ("dense,speed", ","):
        with pytest.raises(SystemExit):
            precision.parse_args(["--checks", bad])
    with pytest.raises(ValueError, match="expected some of dense"):
        precision.verify(None, None, None, "unused", None, checks=["speed"])


def test_short_run_writes_a_consistent_report(tmp_path):
    # Forward passes only: the gradient and training checks run float16 gradients of the
    # whole model, whose speed depends on the host CPU (about 100x float32 on some); they
    # stay in the benchmark, and their arithmetic is tested above on hand-made numbers.
    output = tmp_path / "precision.json"
    done = run_python(
        [SCRIPT, "--random-weights", "--data", tmp_path / "data", "--images", "3",
         "--checks", "dense,evaluation", "--set", "POST_NMS_ROIS_INFERENCE=50",
         "--output", output], cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["weights"] == "random"
    assert report["checks"] == ["dense", "evaluation"]
    assert "gradient" not in report and "training" not in report
    assert report["within_tolerance"] == (report["dense"]["within_tolerance"]
                                          and report["evaluation"]["within_tolerance"])
    dense = report["dense"]
    assert dense["within_tolerance"] == all(
        dense["differences"][k] <= dense["tolerances"][k] for k in dense["differences"])
    evaluation = report["evaluation"]
    assert evaluation["pairs"] > 0
    for precision_name in ("float32", "mixed_float16"):
        assert 0 <= evaluation["ap50"][precision_name]["bbox"] <= 1
    assert set(report["seconds"]) == {"evaluation_float32", "evaluation_mixed_float16"}
    assert "| dense rpn_class_max_abs |" in done.stdout
    assert "| AP50 bbox: float32 / mixed_float16 |" in done.stdout
    assert "RPN gradient" not in done.stdout


def test_table_of_a_full_report_has_every_check():
    report = {
        "steps": 2, "training_runs": 2,
        "dense": {"differences": {"rpn_class_max_abs": 0.001},
                  "tolerances": {"rpn_class_max_abs": 0.01}},
        "evaluation": {"ap50": {"float32": {"bbox": 0.5, "segm": 0.4},
                                "mixed_float16": {"bbox": 0.5, "segm": 0.41}},
                       "differences": {"ap50_bbox_abs": 0.0, "ap50_segm_abs": 0.01,
                                       "confident_matched": 0.99},
                       "tolerances": {"confident_matched": ">= 0.95"}},
        "gradient": {"differences": {"gradient_cosine": 0.9999, "gradient_norm_ratio": 1.2},
                     "tolerances": {"gradient_cosine": ">= 0.99",
                                    "gradient_norm_ratio": "within 5 %"}},
        "training": {"held_out": {"loss": {"mean_float32": 1.0, "mean_mixed_float16": 1.1,
                                           "allowed": 0.05, "difference": 0.1}}},
    }
    lines = precision.table(report).splitlines()
    assert len(lines) == 2 + 1 + 3 + 2 + 1
    assert lines[-1].startswith("| after 2 steps, held-out loss") and "**no**" in lines[-1]
    assert [line for line in lines if "norm ratio" in line][0].endswith("| **no** |")
    assert [line for line in lines if "AP50 segm" in line][0].endswith("| yes |")
