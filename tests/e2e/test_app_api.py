"""The web page's JSON API (siamese_mrcnn.app) with Starlette's test client, on tiny
random weights: the search format, bad uploads, concurrency, folder jobs, cleanup."""
from __future__ import annotations

import asyncio
import io
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

pytest.importorskip("starlette", reason="the app extra: pip install -e .[app]")
from starlette.testclient import TestClient  # noqa: E402

from siamese_mrcnn.app import __main__ as app_main  # noqa: E402
from siamese_mrcnn.app.engine import Engine  # noqa: E402
from siamese_mrcnn.app.server import create_app  # noqa: E402
from siamese_mrcnn.app.uploads import Limits  # noqa: E402
from siamese_mrcnn.search import detections_record  # noqa: E402
from tests.helpers.photos import make_folder, photo, tiny_weights  # noqa: E402

# Generous bound on a folder job of 9 tiny images (a second each when the machine is
# loaded); it only catches a job that never ends.
JOB_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN

    root = tmp_path_factory.mktemp("app")
    photos = make_folder(root / "photos", 9)
    rng = np.random.default_rng(7)
    reference = photo(rng, 40, 36)
    Image.fromarray(reference).save(root / "ref.png")
    tiny_weights(root / "tiny.h5")
    model = SiameseMaskRCNN("inference", preset("tiny_eval", DETECTION_MIN_CONFIDENCE=0.0),
                            str(root / "logs"))
    model.load_weights(str(root / "tiny.h5"))
    engine = Engine(model, "tiny.h5", images=str(root / "photos"))
    yield {"root": root, "photos": photos, "reference": reference, "engine": engine,
           "model": model}
    engine.close()


@pytest.fixture()
def client(work):
    return TestClient(create_app(work["engine"], Limits()))


def upload(path) -> tuple:
    return (os.path.basename(str(path)), open(path, "rb").read(), "image/png")


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_detect_answers_in_the_search_format_what_detect_finds(work, client):
    queries = work["photos"][:3]
    files = [("reference", upload(work["root"] / "ref.png"))] + [
        ("query", upload(q)) for q in queries]
    answer = client.post("/api/detect", files=files, data={"min_score": "0"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["shots"] == 1 and body["model"] == "tiny.h5"
    assert [r["file"] for r in body["results"]] == [os.path.basename(q) for q in queries]
    model = work["model"]
    for path, record in zip(queries, body["results"]):
        image = np.asarray(Image.open(path).convert("RGB"))
        assert (record["height"], record["width"]) == image.shape[:2]
        # detect() is another path through the model (no encode-once): same detections.
        expected = detections_record(record["file"], image.shape,
                                     model.detect([[work["reference"]]], [image])[0], 0.0)
        assert len(record["detections"]) == len(expected["detections"]) > 0
        scores = [d["score"] for d in record["detections"]]
        assert scores == sorted(scores, reverse=True)
        for got, want in zip(record["detections"], expected["detections"]):
            assert abs(got["score"] - want["score"]) <= 1e-4
            assert np.abs(np.subtract(got["box"], want["box"])).max() <= 1
            mask = mask_utils.decode(got["mask"])
            assert mask.shape == image.shape[:2]
            y1, x1, y2, x2 = got["box"]
            assert mask[:y1].sum() == mask[y2:].sum() == 0  # inside its box
            assert mask[:, :x1].sum() == mask[:, x2:].sum() == 0


def test_min_score_filters_and_a_box_equals_an_uploaded_crop(work, client):
    ref, query = work["root"] / "ref.png", work["photos"][1]
    everything = client.post("/api/detect", files=[("reference", upload(ref)),
                                                   ("query", upload(query))]).json()
    scores = sorted(d["score"] for d in everything["results"][0]["detections"])
    middle = len(scores) // 2
    # Between two scores: the records' scores are rounded to 6 decimals, the filter
    # compares the model's own.
    cut = (scores[middle - 1] + scores[middle]) / 2
    kept = client.post("/api/detect", files=[("reference", upload(ref)),
                                             ("query", upload(query))],
                       data={"min_score": str(cut)}).json()
    assert [d["score"] for d in kept["results"][0]["detections"]] == \
        sorted([s for s in scores if s >= cut], reverse=True)

    crop = work["reference"][5:30, 3:27]
    boxed = client.post("/api/detect", files=[("reference", upload(ref)),
                                              ("query", upload(query))],
                        data={"box": "3,5,24,25"}).json()
    cropped = client.post("/api/detect", files=[
        ("reference", ("crop.png", png_bytes(crop), "image/png")),
        ("query", upload(query))]).json()
    assert boxed["results"] == cropped["results"]
    assert boxed["results"] != everything["results"]  # the box made a difference


def big_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (10000, 10000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("case, status, words", [
    ("text reference", 400, "reference 'notes.txt': not an image"),
    ("empty query", 400, "query 'empty.png': the file is empty"),
    ("10000x10000 query", 413, "10000x10000 pixels is above the limit"),
    ("no reference", 400, "missing field 'reference'"),
    ("no query", 400, "missing field 'query'"),
    ("bad box", 400, "box 1: expected 'x,y,w,h'"),
    ("box outside", 400, "outside the image"),
    ("min_score 2", 400, "min_score: expected a number in [0, 1]"),
    ("two references, 1-shot", 400, "expected 1 to 1 reference(s)"),
    ("urlencoded", 415, "expected a multipart/form-data body"),
])
def test_bad_requests_get_a_4xx_with_a_message(work, client, case, status, words):
    ref = ("reference", upload(work["root"] / "ref.png"))
    query = ("query", upload(work["photos"][0]))
    requests = {
        "text reference": dict(files=[("reference", ("notes.txt", b"hello\n", "text/plain")),
                                      query]),
        "empty query": dict(files=[ref, ("query", ("empty.png", b"", "image/png"))]),
        "10000x10000 query": dict(files=[ref, ("query", ("big.png", big_png(),
                                                         "image/png"))]),
        "no reference": dict(files=[query]),
        "no query": dict(files=[ref]),
        "bad box": dict(files=[ref, query], data={"box": "1,2,three,4"}),
        "box outside": dict(files=[ref, query], data={"box": "500,500,10,10"}),
        "min_score 2": dict(files=[ref, query], data={"min_score": "2"}),
        "two references, 1-shot": dict(files=[ref, ref, query]),
        "urlencoded": dict(data={"reference": "x"}),
    }
    answer = client.post("/api/detect", **requests[case])
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


def test_a_body_above_the_upload_limit_gets_413(work):
    client = TestClient(create_app(work["engine"], Limits(max_bytes=10_000)))
    answer = client.post("/api/detect", files=[
        ("reference", upload(work["root"] / "ref.png")),
        ("query", ("noise.png", png_bytes(np.random.default_rng(0).integers(
            0, 256, (100, 100, 3)).astype(np.uint8)), "image/png"))])
    assert answer.status_code == 413
    assert answer.json()["error"].endswith("the limit is 10 KB (--max-upload-mb)")
    assert client.get("/api/info").json()["max_upload_mb"] == round(10_000 / 2 ** 20, 3)


def test_the_page_answers_while_the_model_is_busy_and_every_request_answers(work):
    """The model thread is held by a task; the page and /api/info still answer, the
    detect requests wait, and all of them answer once it is released."""
    import httpx2 as httpx

    engine = work["engine"]
    app = create_app(engine, Limits())
    release = threading.Event()
    held = engine.executor.submit(release.wait, 300)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            files = [("reference", upload(work["root"] / "ref.png")),
                     ("query", upload(work["photos"][2]))]
            detects = [asyncio.create_task(http.post("/api/detect", files=files))
                       for _ in range(4)]
            await asyncio.sleep(0.5)
            assert not any(task.done() for task in detects)  # queued behind the model
            page = await asyncio.wait_for(http.get("/"), timeout=120)
            info = await asyncio.wait_for(http.get("/api/info"), timeout=120)
            assert page.status_code == info.status_code == 200
            assert "One-shot search" in page.text
            release.set()
            return await asyncio.wait_for(asyncio.gather(*detects), timeout=600)

    try:
        answers = asyncio.run(scenario())
    finally:
        release.set()
        held.result()
    assert [a.status_code for a in answers] == [200] * 4
    assert len({str(a.json()["results"]) for a in answers}) == 1  # the same answer


def wait_for_job(client, job: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    records = []
    while True:
        status = client.get(f"/api/jobs/{job}", params={"since": len(records)}).json()
        records += status["records"]
        assert status["since"] == len(records) - len(status["records"])
        if status["state"] in ("done", "failed", "cancelled"):
            return dict(status, records=records)
        assert time.monotonic() < deadline, f"job {job} still {status['state']}"
        time.sleep(0.2)


def test_folder_search_reports_progress_and_finds_what_detect_finds(work, client):
    started = client.post("/api/search", files=[
        ("reference", upload(work["root"] / "ref.png"))], data={"min_score": "0"})
    assert started.status_code == 202, started.text
    status = wait_for_job(client, started.json()["job"])
    assert status["state"] == "done", status["error"]
    assert status["done"] == status["total"] == 11  # 9 photos, a broken PNG, a text file
    assert sorted(r["file"] for r in status["records"]) == sorted(work["photos"])
    uploaded = client.post("/api/detect", files=[
        ("reference", upload(work["root"] / "ref.png"))] + [
        ("query", upload(p)) for p in work["photos"]]).json()["results"]
    by_name = {os.path.basename(r["file"]): r for r in status["records"]}
    for record in uploaded:
        assert record["detections"] == by_name[record["file"]]["detections"]
    lines = client.get(f"/api/jobs/{status['job']}/results.jsonl").text.splitlines()
    assert len(lines) == 9
    image = client.get("/api/folder/photo_000.png")
    assert image.status_code == 200 and image.content == open(work["photos"][0], "rb").read()
    assert client.get("/api/folder/secret.png").status_code == 404
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.get(f"/api/jobs/{status['job']}", params={"since": "-1"}).status_code == 400


def test_a_new_folder_search_cancels_the_one_before(work, client):
    engine = work["engine"]
    release = threading.Event()
    held = engine.executor.submit(release.wait, 300)  # both jobs queue behind this
    try:
        ref = [("reference", upload(work["root"] / "ref.png"))]
        first = client.post("/api/search", files=ref).json()["job"]
        second = client.post("/api/search", files=ref).json()["job"]
    finally:
        release.set()
        held.result()
    assert wait_for_job(client, first)["state"] == "cancelled"
    assert wait_for_job(client, second)["state"] == "done"


def test_without_a_folder_search_is_409(work):
    engine = Engine(work["model"], "tiny.h5")
    try:
        answer = TestClient(create_app(engine)).post("/api/search", files=[
            ("reference", upload(work["root"] / "ref.png"))])
        assert answer.status_code == 409 and "--images" in answer.json()["error"]
    finally:
        engine.close()
    assert not os.path.exists(engine.workdir)


def test_close_removes_the_jobs_folder(work):
    engine = Engine(work["model"], "tiny.h5", images=str(work["root"] / "photos"))
    job = engine.start_folder_search([work["reference"]])
    engine.close()  # waits for the job (or cancels it), then removes its files
    assert job.state in ("done", "cancelled")
    assert not os.path.exists(engine.workdir)


@pytest.mark.parametrize("args, words", [
    (["--model", "missing.h5"], "missing.h5 (expected imagenet-687|imagenet-771|imagenet-1k|"
                                "last|none|PATH.h5 or a folder written by export)"),
    (["--model", "{tiny}", "--config", "tiny", "--images", "{empty}"], "no files found"),
    (["--model", "{tiny}", "--port", "0"], "--port must be in 1..65535"),
    # nan was a traceback from int() (a ValueError that run_command does not report)
    (["--model", "{tiny}", "--max-upload-mb", "nan"],
     "--max-upload-mb and --max-pixels must be finite and > 0, got nan and 25000000"),
    (["--model", "{tiny}", "--max-pixels", "0"], "got 20 and 0"),
    (["--model", "{root}"], "not a SavedModel"),
])
def test_command_line_errors_are_one_line(work, args, words, capsys):
    empty = work["root"] / "empty_folder"
    empty.mkdir(exist_ok=True)
    names = {"tiny": str(work["root"] / "tiny.h5"), "empty": str(empty),
             "root": str(work["root"])}
    assert app_main.main([a.format(**names) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err


def test_a_k_shot_model_takes_up_to_k_references_each_with_its_box(work):
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN

    model = SiameseMaskRCNN("inference", preset("tiny_eval", DETECTION_MIN_CONFIDENCE=0.0,
                                                NUM_TARGETS=3), str(work["root"] / "logs"))
    model.load_weights(str(work["root"] / "tiny.h5"))
    engine = Engine(model, "tiny.h5")
    try:
        client = TestClient(create_app(engine))
        assert client.get("/api/info").json()["shots"] == 3
        other = photo(np.random.default_rng(11), 30, 30)
        files = [("reference", upload(work["root"] / "ref.png")),
                 ("reference", ("other.png", png_bytes(other), "image/png")),
                 ("query", upload(work["photos"][3]))]
        answer = client.post("/api/detect", files=files, data={"box": ["", "2,3,20,25"]})
        assert answer.status_code == 200, answer.text
        query = np.asarray(Image.open(work["photos"][3]).convert("RGB"))
        first, second = work["reference"], other[3:28, 2:22]
        want = detections_record("photo_003.png", query.shape, model.detect(
            [[first, second, first]], [query])[0], 0.0)  # two references, in turn
        got = answer.json()["results"][0]
        assert len(got["detections"]) == len(want["detections"]) > 0
        for a, b in zip(got["detections"], want["detections"]):
            assert abs(a["score"] - b["score"]) <= 1e-4
            assert np.abs(np.subtract(a["box"], b["box"])).max() <= 1
        four = client.post("/api/detect", files=[files[0]] * 4 + [files[2]])
        assert four.status_code == 400 and "expected 1 to 3" in four.json()["error"]
    finally:
        engine.close()


def test_the_server_shutdown_closes_the_engine(work):
    engine = Engine(work["model"], "tiny.h5", images=str(work["root"] / "photos"))
    with TestClient(create_app(engine, close_engine=True)) as client:  # runs the lifespan
        assert client.get("/api/info").status_code == 200
        assert os.path.isdir(engine.workdir)
    assert not os.path.exists(engine.workdir)
