"""Smoke test of benchmarks/speed.py: the --quick run (resnet_tiny, 128 px, 2 repeats, a
6-image whole-evaluation comparison, the GPU-mode part in float32 on the CPU) in a
subprocess writes a JSON report with the three target ratios and the evaluation-vs-old-loop
ratios and prints the table; plus the script's pure helpers, and the GPU mode's
float32 / mixed_float16 bookkeeping with injected measurements.

The subprocess never trains under mixed_float16: float16 gradients of a whole model run
on kernels whose speed depends on the host CPU (about 100x slower than float32 on some
hosts), so that part stays in the benchmark; the mixed-precision code path is covered by
tests/siamese_mrcnn/test_mixed_precision.py on small graphs.
"""
import importlib.metadata
import json
import math
import os
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "speed.py"
sys.path.insert(0, str(SCRIPT.parent))

import speed  # noqa: E402
from tests.helpers.processes import needs_backend, run_command, run_python  # noqa: E402


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    output = tmp_path_factory.mktemp("speed") / "speed.json"
    # --gpu runs the GPU-mode part on the CPU (tiny config with --quick), so that its
    # float32 code path is exercised without a GPU (about 70 s in all on 2 idle cores).
    done = run_python([str(SCRIPT), "--quick", "--gpu", "--output", str(output)], cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(output.read_text()), done.stdout


def test_quick_run_reports_the_three_ratios(quick_report):
    report, _ = quick_report
    for key in ("inference_over_dense", "batched_eval_speedup", "data_over_train"):
        assert _positive(report[key]), (key, report[key])
        assert report["targets"][key]["measured"] == report[key]
        assert isinstance(report["targets"][key]["met"], bool)
    assert set(report["targets"]) == {"inference_over_dense", "batched_eval_speedup",
                                      "data_over_train"}
    for key in ("batched_model_speedup", "eval_vs_old_loop",
                "eval_vs_old_loop_shared_reference"):
        assert _positive(report[key]), (key, report[key])
    # The target is about the evaluation as a whole, default protocol.
    assert report["batched_eval_speedup"] == report["eval_vs_old_loop"]
    assert report["settings"]["config"] == "tiny"
    assert report["config"]["inference"]["BACKBONE"] == "resnet_tiny"
    assert report["config"]["inference"]["IMAGE_MAX_DIM"] == 128
    assert report["config"]["training"]["IMAGES_PER_GPU"] == 2



def test_gpu_mode_runs_in_float32(quick_report):
    report, _ = quick_report
    gpu = report["gpu"]
    assert gpu["config"] == "tiny"
    assert "mixed_float16" not in gpu  # only with --mixed-precision
    part = gpu["float32"]
    assert not [k for k in part if k.endswith("_error")], part
    assert _positive(part["train_images_per_s"])
    assert _positive(part["inference_images_per_s"])
    assert (part["train_batch_size"], part["inference_batch_size"]) == (2, 2)
    assert part["training_gpu_peak_mb"] is None  # no GPU here


def _fake_part(key: str, images_per_s: float, calls: list, fail_under_mixed: bool = False):
    """A GPU-mode measure that records the dtype policy and source it ran with."""
    def measure(config, data, model_dir, repeats, source=None):
        policy = keras.mixed_precision.global_policy().name
        calls.append((config.BATCH_SIZE, policy, source))
        if fail_under_mixed and policy != "float32":
            raise TypeError("Input 'boxes' has type float16.")
        rate = images_per_s * (2 if policy == "mixed_float16" else 1)
        return {key: rate, "_model": f"model-{policy}", "_outputs": [rate]}
    return measure


def test_gpu_mode_bookkeeping_in_float32_and_mixed_precision(monkeypatch):
    # bench_gpu with injected measures: the real ones train under mixed_float16, which
    # is a benchmark's work (see the module docstring), not a test's.
    monkeypatch.setattr(speed, "release", lambda *models: None)
    calls = []
    compared = []

    def compare(fp32, fp16):
        compared.append((fp32["_outputs"], fp16["_outputs"]))
        return {"within_tolerance": True}

    parts = (("training", "training", _fake_part("train_images_per_s", 3.0, calls), compare),
             ("inference", "inference", _fake_part("inference_images_per_s", 5.0, calls,
                                          fail_under_mixed=True),
              compare))
    report = speed.bench_gpu("tiny", {}, data=None, model_dir="unused", eval_batch=4,
                             repeats=1, mixed_precision=True, parts=parts)
    # Training uses the config's training batch (2 for tiny), inference eval_batch; the
    # mixed run starts from the float32 run's model and the policy is restored after.
    assert calls == [(2, "float32", None), (2, "mixed_float16", "model-float32"),
                     (4, "float32", None), (4, "mixed_float16", "model-float32")]
    assert keras.mixed_precision.global_policy().name == "float32"
    assert report["float32"] == {"train_images_per_s": 3.0, "training_gpu_peak_mb": None,
                                 "inference_images_per_s": 5.0,
                                 "inference_gpu_peak_mb": None}
    mixed = report["mixed_float16"]
    assert mixed["training_check"] == {"within_tolerance": True}
    assert mixed["train_images_per_s"] == 6.0 and mixed["training_speedup"] == 2.0
    assert compared == [([3.0], [6.0])]  # the failed inference part is not compared
    # A failure under mixed precision is reported in one line, not raised.
    assert mixed["inference_error"] == "TypeError: Input 'boxes' has type float16."
    assert "inference_check" not in mixed and "inference_speedup" not in mixed
    assert not any(key.startswith("_") for key in report["float32"])


def test_quick_run_details_are_consistent(quick_report):
    report, _ = quick_report
    inference = report["inference"]
    seconds = inference["seconds"]
    assert all(_positive(v) for v in seconds.values())
    assert report["inference_over_dense"] == pytest.approx(seconds["detect"] / seconds["dense"])
    assert 0 <= inference["detections_per_image"] <= 10  # tiny: DETECTION_MAX_INSTANCES
    batched = report["batched_model"]
    per_pair = batched["seconds_per_pair"]
    assert report["batched_model_speedup"] == pytest.approx(
        per_pair["one_pair_per_call"] / per_pair["batched_cached_reference"])
    assert batched["batched_model_speedup"] == report["batched_model_speedup"]
    assert batched["batch_size"] == 2 and batched["pairs"] == 4
    # Same weights, same pairs: every detection both paths found scores alike. The
    # weights are untrained, so many anchors tie within 1e-6 and a batch shape's rounding
    # may swap one past the top-k or NMS: a few detections may be found by one path only.
    for agreement in batched["agreement_vs_one_pair_per_call"].values():
        assert agreement["max_score_difference"] < 1e-4
        assert agreement["unmatched"] <= 0.1 * agreement["detections"]
    data = report["data_vs_train"]
    assert report["data_over_train"] == pytest.approx(
        data["data_samples_per_s"] / data["train_samples_per_s"])
    memory = report["memory"]
    assert memory["peak_rss_mb"] >= memory["after_inference"] > 100


def test_quick_run_whole_evaluation_vs_old_loop(quick_report):
    report, _ = quick_report
    evaluation = report["evaluation"]
    assert evaluation["images"] == 6 and evaluation["batch_sizes"] == [1, 2]
    assert evaluation["repeats"] == 1 and evaluation["categories_active"] == 24
    paths = {"old_loop", "ours_fresh_reference_B2_detect_per_pair"} | {
        f"ours_{kind}_reference_B{b}" for kind in ("fresh", "shared") for b in (1, 2)}
    per_pair = evaluation["seconds_per_pair"]
    assert set(per_pair) == paths and all(_positive(v) for v in per_pair.values())
    # Every path evaluates the same (image, category) pairs: 2-4 categories per image.
    pairs = evaluation["pairs"]
    assert set(pairs) == paths and len(set(pairs.values())) == 1
    assert 2 * 6 <= pairs["old_loop"] <= 4 * 6
    # The ratios use the fastest BATCH_SIZE of each kind.
    fresh = evaluation["fastest"]["fresh_reference"]
    shared = evaluation["fastest"]["shared_reference"]
    assert per_pair[fresh] == min(per_pair[f"ours_fresh_reference_B{b}"] for b in (1, 2))
    assert per_pair[shared] == min(per_pair[f"ours_shared_reference_B{b}"] for b in (1, 2))
    assert report["eval_vs_old_loop"] == pytest.approx(per_pair["old_loop"] / per_pair[fresh])
    assert report["eval_vs_old_loop_shared_reference"] == pytest.approx(
        per_pair["old_loop"] / per_pair[shared])
    assert evaluation["query_cache_speedup"] == pytest.approx(
        per_pair["ours_fresh_reference_B2_detect_per_pair"]
        / per_pair["ours_fresh_reference_B2"])
    # Encoding each query once changes no detection: the same AP as detect() per pair.
    assert evaluation["ap50"]["ours_fresh_reference_B2_detect_per_pair"] == \
        evaluation["ap50"]["ours_fresh_reference_B2"]
    for name in paths:
        assert set(evaluation["ap50"][name]) == {"bbox", "segm"}
        assert all(v == -1 or 0 <= v <= 1 for v in evaluation["ap50"][name].values())
        parts = evaluation["breakdown_per_pair"][name]
        assert set(parts) == {"load", "references", "detect", "coco", "other"}
        assert all(v >= 0 for v in parts.values())
        assert parts["detect"] > 0
    # The re-created old detect (predict per call) matches detect().
    assert evaluation["max_score_difference_predict_vs_detect"] < 1e-4


def test_quick_run_machine_info_and_table(quick_report):
    report, stdout = quick_report
    machine = report["machine"]
    for key in ("date", "platform", "cpu_count", "tensorflow", "keras", "python"):
        assert machine[key], key
    assert machine["tensorflow"].startswith("2.")
    assert machine["keras_backend"] == "tensorflow"  # the tests' default backend
    assert "| measure | value | detail |" in stdout
    assert "inference_over_dense" in stdout and "data_over_train" in stdout
    assert "eval_vs_old_loop" in stdout and "batched_model_speedup" in stdout


def test_interleaved_seconds_calls_each_function_in_turns():
    order = []
    timed = speed.interleaved_seconds({"a": lambda: order.append("a"),
                                       "b": lambda: order.append("b")}, repeats=3, warmup=1)
    assert order == ["a", "b"] * 4
    assert set(timed) == {"a", "b"}
    assert all(0 <= t["min"] <= t["median"] for t in timed.values())


def test_max_score_difference():
    a = [{"scores": np.array([0.9, 0.5])}, {"scores": np.array([])}]
    b = [{"scores": np.array([0.52, 0.9])}, {"scores": np.array([])}]
    assert speed.max_score_difference(a, b) == pytest.approx(0.02)
    c = [{"scores": np.array([0.9])}, {"scores": np.array([])}]
    assert speed.max_score_difference(a, c) == float("inf")


def _detections(*rows):
    return {"scores": np.array([r[0] for r in rows]), "class_ids": np.array([r[1] for r in rows]),
            "rois": np.array([r[2] for r in rows]).reshape(-1, 4)}


def test_detection_agreement_pairs_by_value():
    box, other = [10, 10, 50, 50], [60, 60, 90, 90]
    a = [_detections((0.9, 1, box), (0.8, 1, other)), _detections()]
    # Near-tied order swapped, one box 1 px off: all matched.
    b = [_detections((0.80002, 1, [61, 60, 90, 90]), (0.9, 1, box)), _detections()]
    agreement = speed.detection_agreement(a, b)
    assert agreement == {"max_score_difference": pytest.approx(2e-5, abs=1e-7),
                         "unmatched": 0, "detections": 4}
    # A detection found by one run only, a moved box, a changed class, a changed score.
    assert speed.detection_agreement(a, [_detections((0.9, 1, box)), _detections()]) \
        == {"max_score_difference": 0.0, "unmatched": 1, "detections": 3}
    for changed in ((0.8, 1, [62, 60, 90, 90]), (0.8, 2, other), (0.81, 1, other)):
        b = [_detections((0.9, 1, box), changed), _detections()]
        assert speed.detection_agreement(a, b)["unmatched"] == 2


def test_to_json_and_error_text():
    value = speed.to_json({"x": np.float32(1.5), "n": np.int64(3), "a": np.arange(2),
                           "inf": float("inf"), "t": (1, 2)})
    assert value == {"x": 1.5, "n": 3, "a": [0, 1], "inf": "inf", "t": [1, 2]}
    json.dumps(value)
    keras_like = TypeError("Exception encountered when calling X.call().\n\n\x1b[1mCould not "
                           "infer. Error encountered:\n\nInput 'boxes' has type float16.\x1b[0m"
                           "\n\nArguments received by X.call():\n  • args=(1,)")
    assert speed.error_text(keras_like) == ("TypeError: Exception encountered when calling "
                                            "X.call(). Input 'boxes' has type float16.")


def test_write_json_makes_the_folder_and_never_leaves_half_a_report(tmp_path, monkeypatch):
    import common

    path = tmp_path / "results" / "speed.json"
    assert common.write_json({"x": np.float32(0.5), "a": np.arange(2)}, path) == str(path)
    assert json.loads(path.read_text()) == {"x": 0.5, "a": [0, 1]}
    assert os.listdir(path.parent) == ["speed.json"]

    def killed(source, target):  # the run dies after the write, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(common.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        common.write_json({"x": 2.0}, path, indent=1)
    assert json.loads(path.read_text()) == {"x": 0.5, "a": [0, 1]}  # the last whole one
    assert os.listdir(path.parent) == ["speed.json"]  # and no temp file
    monkeypatch.undo()
    common.write_json({"x": 3.0}, path, indent=None)
    assert path.read_text() == '{"x": 3.0}\n'
    assert os.listdir(path.parent) == ["speed.json"]


def test_make_config_rejects_unknown_names_and_applies_overrides():
    config = speed.make_config("tiny", "training", 3, {"MAX_GT_INSTANCES": "7"})
    assert config.BATCH_SIZE == 3 and config.MAX_GT_INSTANCES == 7
    assert config.DETECTION_MIN_CONFIDENCE == 0.0
    with pytest.raises(ValueError, match="config"):
        speed.make_config("huge", "training", 1, {})


def test_settings_of_the_whole_evaluation_comparison():
    quick = speed.settings(speed.parse_args(["--quick"]))
    assert (quick["config"], quick["eval_images"], quick["eval_repeats"]) == ("tiny", 6, 1)
    tiny = speed.settings(speed.parse_args(["--config", "tiny"]))
    assert (tiny["eval_images"], tiny["eval_repeats"], tiny["eval_batch"]) == (24, 3, 4)
    small = speed.settings(speed.parse_args([]))
    assert (small["config"], small["eval_images"], small["eval_repeats"]) == ("small", 8, 1)
    chosen = speed.settings(speed.parse_args(["--eval-images", "5", "--eval-repeats", "2"]))
    assert (chosen["eval_images"], chosen["eval_repeats"]) == (5, 2)
    with pytest.raises(SystemExit):
        speed.parse_args(["--eval-images", "0"])


def test_breakdown_is_per_pair_with_the_untimed_rest():
    run = {"pairs": 4, "timing": {"load": 0.4, "detect": 2.0}, "wall": 4.0}
    assert speed.breakdown(run) == pytest.approx({"load": 0.1, "detect": 0.5, "other": 0.4})
    # Never negative when the parts add up to more than the wall time (timer noise).
    assert speed.breakdown({"pairs": 1, "timing": {"detect": 1.0}, "wall": 0.9})["other"] == 0


def test_search_speed_smoke(tmp_path):
    """benchmarks/search_speed.py on 6 tiny images, one repeat: a report with the ratio of
    search to the model alone, and both rates."""
    output = tmp_path / "search.json"
    done = run_python([str(REPO / "benchmarks" / "search_speed.py"), "--images", "6",
                       "--batch", "2", "--repeats", "1", "--output", str(output)], cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    rates = report["images_per_s"]
    assert _positive(rates["search"]) and _positive(rates["model_only"])
    assert report["search_over_model"] == pytest.approx(rates["search"] / rates["model_only"])
    assert report["images"] == 6 and report["batch"] == 2
    assert "search_over_model" in done.stdout
    latency = report["export"]["seconds_per_image"]
    assert _positive(latency["exported"]) and _positive(latency["detect"])
    assert report["export_over_detect"] == pytest.approx(latency["exported"] / latency["detect"])


def test_gpu_script_cpu_check(tmp_path):
    """benchmarks/gpu.sh as its CPU check: the JAX backend, tiny configs, one JSON line
    with the graph's rate, the compile and no slow calls (no retrace per call); then
    one training line: the step's rate, its compile, no slow steps, and a
    model.train() run of 3 epochs of 1 step whose loss is reported per epoch; then the
    extra batch size's inference line. The first two traced, and the traces read per
    layer by profile_ops.py. Nothing is left in the temp folder (the data set and the
    run's checkpoints are removed)."""
    needs_backend("jax")
    results = tmp_path / "gpu.jsonl"
    temp = tmp_path / "tmp"
    temp.mkdir()
    # run_command: on a hang, gpu.sh's Python children are killed with it. Bounded by
    # HANG_TIMEOUT_S; a correct run took 132 to 181 s in the 2026-12-07 CI runs.
    done = run_command(
        ["bash", REPO / "benchmarks" / "gpu.sh"], cwd=REPO,
        extra_env={"CONFIG": "tiny_eval", "BATCHES": "2", "EXTRA_BATCHES": "1",
                   "POLICIES": "float32", "ITERATIONS": "4", "RESULTS": str(results),
                   "TRAIN_CONFIG": "tiny", "TRAIN_BATCH": "2", "TRAIN_ITERATIONS": "2",
                   "RUN_STEPS": "3", "TRACES": str(tmp_path / "traces"),
                   "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu", "TMPDIR": str(temp)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in temp.iterdir()) == []
    # In this order: a cut-short device run keeps the inference and training lines first.
    line, train, extra = [json.loads(x) for x in results.read_text().splitlines()]
    assert (extra["batch"], extra["config"], "benchmark" in extra) == (1, "tiny_eval", False)
    assert _positive(extra["graph_images_per_s"])
    assert line["backend"] == "jax" and line["batch"] == 2 and line["config"] == "tiny_eval"
    assert _positive(line["graph_images_per_s"]) and _positive(line["detect_images_per_s"])
    assert line["graph_first_call_s"] > line["graph_median_s"]  # the compile
    assert line["slow_calls"] == 0
    assert (train["benchmark"], train["backend"], train["config"], train["batch"]) == (
        "train", "jax", "tiny", 2)
    assert _positive(train["train_images_per_s"]) and train["slow_steps"] == 0
    assert train["step_first_s"] > 3 * train["step_median_s"]  # the compile, once
    assert train["run_steps"] == 3 and len(train["run_epoch_losses"]) == 3
    assert all(np.isfinite(train["run_epoch_losses"]))
    # A trace for the first inference line and the training line, not the extra batch.
    import profile_ops

    assert "profile" not in extra
    assert sorted(p.name for p in (tmp_path / "traces").iterdir()) == [
        "gpu_tiny_eval_b2_float32.xplane.pb.gz", "train_tiny_b2_float32.xplane.pb.gz"]
    inference = profile_ops.summarize(line["profile"], depth=1)
    training = profile_ops.summarize(train["profile"], depth=1)
    for summary in (inference, training):
        assert summary["total_ms"] > 0
        assert sum(share for _, _, share in summary["layers"]) == pytest.approx(1.0)
    layers = {name for name, _, _ in inference["layers"]}
    assert {"resnet_model", "fpn_model", "rpn_model", "mrcnn_mask_deconv"} <= layers
    assert "mrcnn_mask_deconv (grad)" in {name for name, _, _ in training["layers"]}


GPU_WHEELS = ["keras", "namex", "optree", "pycocotools", "imgaug"]


def test_gpu_wheels_are_the_pinned_and_installed_versions():
    """The wheels carried to the GPU machine are requirements.txt's pins, which are the
    versions installed here (the ones the tests run with)."""
    done = run_command(["bash", REPO / "benchmarks" / "gpu_wheels.sh", "--list"], timeout=60)
    assert done.returncode == 0, done.stderr
    listed = [line.split("==") for line in done.stdout.split()]
    assert [name for name, _ in listed] == GPU_WHEELS
    for name, version in listed:
        assert f"{name}=={version}" in (REPO / "requirements.txt").read_text().splitlines()
        assert importlib.metadata.version(name) == version, name


def test_gpu_wheels_refuses_an_unpinned_package(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(REPO / "benchmarks" / "gpu_wheels.sh", tmp_path / "benchmarks")
    (tmp_path / "requirements.txt").write_text("keras==3.15.1\nnamex==0.1.0\noptree>=0.2\n")
    done = run_command(["bash", tmp_path / "benchmarks" / "gpu_wheels.sh", "--list"],
                       timeout=60)
    assert done.returncode == 2
    assert "pins no version of optree (expected a line optree==VERSION)" in done.stderr
    assert not (tmp_path / ".whl").exists()


def test_sharded_eval_smoke(tmp_path):
    """benchmarks/sharded_eval.py with 2 shards on 6 images, one run: both wall times,
    their ratio, and merged statistics equal to the unsharded ones."""
    output = tmp_path / "sharded.json"
    done = run_python([str(REPO / "benchmarks" / "sharded_eval.py"), "--shards", "2",
                       "--images", "6", "--runs", "1", "--output", str(output)], cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["merged_equals_unsharded"] is True
    assert _positive(report["one_process_s"]) and _positive(report["shard_processes_s"])
    assert report["one_over_sharded"] == pytest.approx(
        report["one_process_s"] / (report["shard_processes_s"] + report["merge_s"]))


def test_multi_worker_smoke(tmp_path):
    """benchmarks/multi_worker.py on the tiny config, 2 steps: both throughputs, their
    ratio, the all-reduce times, each worker's report with its share of the batch.
    Nothing is left in the temp folder, though the workers leave with os._exit (which
    skips TensorFlow's removal of its autograph files)."""
    output = tmp_path / "multi_worker.json"
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = run_python([str(REPO / "benchmarks" / "multi_worker.py"), "--config", "tiny",
                       "--steps", "2", "--global-batch", "2", "--output", str(output)],
                      cwd=REPO, extra_env={"TMPDIR": str(temp)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in temp.iterdir()) == []
    report = json.loads(output.read_text())
    one, two = report["one_process_images_per_s"], report["two_workers_images_per_s"]
    assert _positive(one) and _positive(two)
    assert report["two_over_one"] == pytest.approx(two / one, rel=1e-2)
    assert _positive(report["all_reduce_s_per_step_two_workers"])
    assert [(r["workers"], r["task"], r["images_per_worker"]) for r in report["reports"]] == [
        (1, 0, 2), (2, 0, 1), (2, 1, 1)]
    assert all(len(r["step_s_epoch2"]) == 2 for r in report["reports"])


@pytest.mark.parametrize("script, flag, value", [
    ("sharded_eval", "--shards", "0"),  # a traceback from the evaluate subprocess before
    ("sharded_eval", "--runs", "0"),
    ("multi_worker", "--steps", "0"),  # a traceback from the config before
    ("multi_worker", "--global-batch", "0"),
])
def test_benchmark_flags_are_checked_before_any_work(script, flag, value, capsys):
    module = importlib.import_module(script)
    with pytest.raises(SystemExit) as exit_info:
        module.main([flag, value])
    assert exit_info.value.code == 2
    lowest = 2 if flag == "--global-batch" else 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f"error: argument {flag}: expected an integer >= {lowest}, got '{value}'")
