"""`train_siamese.py search`: one reference, a folder of images (siamese_mrcnn.search).

A tiny model with fixed random weights (saved once) searches generated images of
several sizes, next to a corrupt PNG and a text file. DETECTION_MIN_CONFIDENCE and
--min-score are 0 so that the random model reports detections to write and draw.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from siamese_mrcnn import cli, search
from tests.helpers.processes import QUIET_ENV, kill_group, run_python
from tests.helpers.photos import make_folder, photo, tiny_weights

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "samples" / "coco" / "train_siamese.py")
EVERY_DETECTION = ["--config", "tiny", "--set", "DETECTION_MIN_CONFIDENCE=0",
                   "--min-score", "0", "--quiet"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder of 9 photos (+ 2 bad files), a reference, and tiny random weights."""
    root = tmp_path_factory.mktemp("search")
    photos = make_folder(root / "photos", 9)
    Image.fromarray(photo(np.random.default_rng(7), 24, 20)).save(root / "ref.png")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "dot.png")
    (root / "empty").mkdir()
    tiny_weights(root / "tiny.h5")
    return {"root": root, "photos": photos}


def run_search(work, output: str, *extra: str) -> int:
    root = work["root"]
    return cli.main(["search", "--model", str(root / "tiny.h5"), "--reference",
                     str(root / "ref.png"), "--images", str(root / "photos"),
                     "--output", output, "--batch", "2", *EVERY_DETECTION, *extra])


def read_lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_search_writes_one_line_per_image_and_a_contact_sheet(work, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_search(work, str(out)) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("searched 11 files: 9 images now, 0 from an earlier run, "
                              "2 skipped (unreadable)"), summary
    records = read_lines(out / "results.jsonl")
    assert sorted(r["file"] for r in records) == sorted(work["photos"])
    for record in records:
        image = np.asarray(Image.open(record["file"]))
        assert (record["height"], record["width"]) == image.shape[:2]
        scores = [d["score"] for d in record["detections"]]
        assert scores == sorted(scores, reverse=True) and len(scores) <= 8
        for detection in record["detections"]:
            y1, x1, y2, x2 = detection["box"]
            assert 0 <= y1 < y2 <= image.shape[0] and 0 <= x1 < x2 <= image.shape[1]
            mask = mask_utils.decode(detection["mask"])
            assert mask.shape == image.shape[:2]
    assert any(r["detections"] for r in records)
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert sheet.ndim == 3 and min(sheet.shape[:2]) > 100
    assert not (out / "contact_sheet.partial.png").exists()

    # A rerun finds everything done: nothing searched, nothing written twice.
    before = (out / "results.jsonl").read_bytes()
    assert run_search(work, str(out)) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "0 images now, 9 from an earlier run, 2 skipped" in summary, summary
    assert (out / "results.jsonl").read_bytes() == before


def test_results_do_not_depend_on_the_batch(work, tmp_path):
    """Each image's detections are its own: batches of 1 and of 3 (padded) agree."""
    runs = {}
    for batch in ("1", "3"):
        out = tmp_path / batch
        assert run_search(work, str(out), "--batch", batch) == 0
        runs[batch] = {r["file"]: r for r in read_lines(out / "results.jsonl")}
    assert set(runs["1"]) == set(runs["3"])
    for name, record in runs["1"].items():
        assert_same_detections(record, runs["3"][name])


def assert_same_detections(a: dict, b: dict) -> None:
    """Same count, and each detection of `a` pairs with its own detection of `b`: score
    within 1e-4, box within 1 px. Paired by value, not by position: with
    `--min-score 0` two detections' scores can differ by less than the float noise
    between the two runs, and then their order may swap (seen in CI)."""
    assert len(a["detections"]) == len(b["detections"]), a["file"]
    unused = list(b["detections"])
    for x in a["detections"]:
        match = next((y for y in unused if abs(x["score"] - y["score"]) <= 1e-4
                      and np.abs(np.subtract(x["box"], y["box"])).max() <= 1), None)
        assert match is not None, (a["file"], x, b["detections"])
        unused.remove(match)


def test_the_comparison_pairs_by_value_and_still_fails_on_a_difference():
    def record(*detections):
        return {"file": "x.png", "detections": [{"score": s, "box": b} for s, b in detections]}

    one, two = (0.63837, [0, 0, 28, 54]), (0.63838, [55, 41, 70, 49])
    assert_same_detections(record(one, two), record(two, one))  # near-tie, swapped
    for other in (record(one, (0.63838, [55, 41, 70, 52])), record(one, (0.7, two[1])),
                  record(one), record(one, one)):
        with pytest.raises(AssertionError):
            assert_same_detections(record(one, two), other)


def test_search_with_the_exported_model_finds_the_same(work, tmp_path):
    """`--model DIR` of `export`: the SavedModel searches (one image per call) and finds
    what the weights file finds."""
    root = work["root"]
    assert cli.main(["export", "--model", str(root / "tiny.h5"), "--output",
                     str(tmp_path / "served"), "--config", "tiny", "--set",
                     "DETECTION_MIN_CONFIDENCE=0"]) == 0
    assert run_search(work, str(tmp_path / "weights")) == 0
    assert cli.main(["search", "--model", str(tmp_path / "served"), "--reference",
                     str(root / "ref.png"), "--images", str(root / "photos"), "--output",
                     str(tmp_path / "exported"), "--min-score", "0", "--quiet"]) == 0
    weights = {r["file"]: r for r in read_lines(tmp_path / "weights" / "results.jsonl")}
    exported = read_lines(tmp_path / "exported" / "results.jsonl")
    assert sorted(r["file"] for r in exported) == sorted(weights)
    for record in exported:
        assert_same_detections(record, weights[record["file"]])
    assert (tmp_path / "exported" / "contact_sheet.png").is_file()


def test_a_line_cut_short_by_a_kill_is_dropped_on_rerun(work, tmp_path, caplog):
    out = tmp_path / "out"
    assert run_search(work, str(out)) == 0
    path = out / "results.jsonl"
    complete = read_lines(path)
    # What a kill in the middle of a write leaves: the first line again, cut short.
    with open(path, "a") as f:
        f.write(json.dumps(complete[0])[:40])
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n" + lines[-1])  # lose one whole line too
    assert run_search(work, str(out)) == 0
    assert "unfinished last line" in caplog.text
    records = read_lines(path)
    assert sorted(r["file"] for r in records) == sorted(r["file"] for r in complete)


def test_a_results_file_that_is_not_ours_is_an_error(work, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"file": "a"}\nnot json\n{"file": "b"}\n')
    assert run_search(work, str(out)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "line 2 is not JSON" in err[0], err


def test_killed_search_resumes_without_duplicates_or_gaps(work, tmp_path):
    """SIGKILL the command once it has written its first batch, then run it again:
    the results equal those of a run that was never stopped."""
    root = work["root"]
    photos = make_folder(tmp_path / "many", 60, seed=1)

    def arguments(output: Path) -> list[str]:
        return ["search", "--model", str(root / "tiny.h5"), "--reference",
                str(root / "ref.png"), "--images", str(tmp_path / "many"), "--output",
                str(output), "--batch", "2", *EVERY_DETECTION]

    out = tmp_path / "killed"
    results = out / "results.jsonl"
    proc = subprocess.Popen([sys.executable, SCRIPT, *arguments(out)], cwd=str(REPO),
                            env=dict(os.environ, **QUIET_ENV), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # Generous: starting TensorFlow and building the model take seconds to minutes
        # on a loaded machine; the first batch follows within a second.
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and proc.poll() is None:
            if results.exists() and results.stat().st_size > 0:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the search ended before it could be killed"
        assert results.exists(), "no result within 900 s"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            kill_group(proc)
            proc.wait()
    written = len(results.read_text().splitlines())  # a torn last line counts here
    assert 0 < written < len(photos), written

    resumed = run_python([SCRIPT, *arguments(out)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (f"{written} from an earlier run" in resumed.stdout
            or f"{written - 1} from an earlier run" in resumed.stdout), resumed.stdout
    records = read_lines(results)
    assert sorted(r["file"] for r in records) == sorted(photos)  # no gap, no duplicate

    assert cli.main(arguments(tmp_path / "whole")) == 0
    uninterrupted = {r["file"]: r for r in read_lines(tmp_path / "whole" / "results.jsonl")}
    for record in records:
        assert_same_detections(record, uninterrupted[record["file"]])


BAD_INPUT = {
    "empty folder": (["--images", "{root}/empty"], "no files found"),
    "missing weights": (["--model", "{root}/nope.h5"],
                        "weights file not found: {root}/nope.h5 (expected imagenet-687|"
                        "imagenet-771|imagenet-1k|last|none|PATH.h5 or a folder written by "
                        "export)"),
    "a one-pixel reference": (["--reference", "{root}/dot.png"], "expected at least 4x4"),
    "a box of no size": (["--reference", None, "--reference-box", "{root}/ref.png:1,1,0,5"],
                         "width and height must be > 0"),
    "a folder that is no export": (["--model", "{root}/empty"], "not a SavedModel"),
    "no reference": (["--reference", None], "exactly one of --reference"),
    "batch of 0": (["--batch", "0"], "--batch must be >= 1"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(work, tmp_path, case, capsys):
    root = work["root"]
    options = {"--model": str(root / "tiny.h5"), "--reference": str(root / "ref.png"),
               "--images": str(root / "photos"), "--output": str(tmp_path / "out")}
    changes, expected = BAD_INPUT[case]
    for key, value in zip(changes[::2], changes[1::2]):
        options[key] = None if value is None else value.format(root=root)
    argv = ["search"] + [v for k, value in options.items() if value is not None
                         for v in (k, value)] + EVERY_DETECTION
    assert cli.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and expected.format(root=root) in err[0], err
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_list_images_and_load_results_by_themselves(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for name in ("b.png", "a.jpg", ".hidden.png"):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    assert search.list_images(str(folder)) == [str(folder / "a.jpg"), str(folder / "b.png")]
    assert search.list_images(str(folder / "*.png")) == [str(folder / "b.png")]
    with pytest.raises(ValueError, match="no files found"):
        search.list_images(str(folder / "*.gif"))
    assert search.load_results(str(tmp_path / "missing.jsonl")) == []
    path = tmp_path / "r.jsonl"
    path.write_text('{"file": "a"}\n\n{"file": "b"}\n{"fi')
    assert [r["file"] for r in search.load_results(str(path))] == ["a", "b"]
    assert path.read_text() == '{"file": "a"}\n\n{"file": "b"}\n'
    path.write_text('{"file": "a"}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2 is not a search result"):
        search.load_results(str(path))


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["search", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--reference", "--reference-box", "IMAGE:x,y,w,h", "--images",
                   "--output", "--min-score", "--top", "--batch", "--quiet", "--config",
                   "--set", "results.jsonl", "contact_sheet.png"):
        assert option in text, option
