"""The web page in a real browser: Debian's headless Chromium driven by Playwright
(through the system browser; Playwright downloads nothing). The server runs as a user
starts it, ``python -m siamese_mrcnn.app``, on 127.0.0.1 and a free port.

What a person does: pick a reference, drag a box on it, pick queries, run, read the
matches, move the score slider, search the server's folder. What the page shows is
checked against the JSON API on the same inputs (counts, and the mask pixels that the
page decoded from the RLE masks).

SIAMESE_APP_QUICKSTART=runs/quickstart runs the same steps on the quick start's model
(``make demo``) and its val images; SIAMESE_APP_SCREENSHOT=PATH also saves the last
screenshot there (the README's picture is made that way).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tests.helpers.photos import make_folder, photo, tiny_weights
from tests.helpers.processes import QUIET_ENV, ROOT, kill_group

CHROMIUM = "/usr/bin/chromium"
# Flags for a closed network and a root user (the machine's notes): no background
# connections, no sandbox (root), a fresh profile.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# Bounds that only catch a hang: the server imports TensorFlow and builds the model
# (10 s idle, a minute on a loaded 2-core machine); a search of 9 tiny images takes
# seconds, 300 quick-start images about 15 s.
SERVER_START_S = 600
RUN_TIMEOUT_MS = 600_000


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = ("BROWSER TEST SKIPPED: playwright is not installed (pip install -r "
                   "requirements-test.txt)")
        warnings.warn(message)
        pytest.skip(message)
    if not os.access(CHROMIUM, os.X_OK):
        message = (f"BROWSER TEST SKIPPED: {CHROMIUM} not found; .ci/run installs Debian's "
                   "chromium package (apt-get install chromium, as root)")
        warnings.warn(message)
        pytest.skip(message)
    return sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """The model, folder, reference image and the box to drag (image pixels)."""
    quickstart = os.environ.get("SIAMESE_APP_QUICKSTART")
    if quickstart:
        return quickstart_scenario(Path(quickstart))
    root = tmp_path_factory.mktemp("page")
    photos = make_folder(root / "photos", 9)
    reference = photo(np.random.default_rng(3), 60, 80)
    reference[20:40, 30:52] = (230, 40, 40)
    Image.fromarray(reference).save(root / "reference.png")
    tiny_weights(root / "tiny.h5")
    return {"args": ["--model", str(root / "tiny.h5"), "--config", "tiny", "--set",
                     "DETECTION_MIN_CONFIDENCE=0"],
            "folder": root / "photos", "reference": root / "reference.png",
            "box": (26, 16, 56, 44), "queries": photos[:3], "readable": 9}


def quickstart_scenario(out: Path) -> dict:
    """The quick start's export, its val images, and a reference drawn on a val image
    around the largest held-out (one-shot, split 1) object of the first 40 images."""
    data = out / "data"
    coco = json.loads((data / "annotations" / "instances_val2017.json").read_text())
    first = {img["id"]: img for img in sorted(coco["images"], key=lambda i: i["id"])[:40]}
    held_out = [a for a in coco["annotations"]
                if a["image_id"] in first and a["category_id"] % 4 == 1]
    best = max(held_out, key=lambda a: a["area"])
    x, y, w, h = best["bbox"]
    files = sorted((data / "val2017").iterdir())
    return {"args": ["--model", str(out / "exported")], "folder": data / "val2017",
            "reference": data / "val2017" / first[best["image_id"]]["file_name"],
            "box": (x - 2, y - 2, x + w + 2, y + h + 2),
            "queries": [str(f) for f in files[:6]], "readable": len(files)}


@pytest.fixture(scope="module")
def server(scenario, tmp_path_factory):
    """The server, started as a user starts it, with a temporary folder of its own
    (TMPDIR) so that the test can see what it leaves there."""
    port = free_port()
    command = [sys.executable, "-m", "siamese_mrcnn.app", *scenario["args"], "--images",
               str(scenario["folder"]), "--port", str(port)]
    env = dict(os.environ, **QUIET_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "lib"), env.get("PYTHONPATH", "")])
    temporary = tmp_path_factory.mktemp("server_tmp")
    env["TMPDIR"] = str(temporary)
    proc = subprocess.Popen(command, cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx2

        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n"
                            f"{proc.stdout.read()[-3000:]}")
            try:
                if httpx2.get(url + "/api/info", timeout=5).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start (hung?)"
            time.sleep(0.5)
        yield {"url": url, "proc": proc, "tmp": temporary}
    finally:
        kill_group(proc)
        proc.communicate()


def api_detect(url: str, reference: Path, box: str, queries: list) -> list:
    import httpx2

    files = [("reference", (reference.name, reference.read_bytes(), "image/png"))]
    files += [("query", (Path(q).name, Path(q).read_bytes(), "image/png")) for q in queries]
    answer = httpx2.post(url + "/api/detect", files=files, data={"box": box},
                         timeout=RUN_TIMEOUT_MS / 1000)
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


def shown(page) -> dict:
    """What the page shows: {file: (detections, mask pixels)} and the total."""
    cards = page.eval_on_selector_all(
        "#results figure.card",
        "cards => cards.map(c => [c.dataset.file, +c.dataset.detections, "
        "+c.dataset.maskPixels])")
    total = int(page.get_attribute("#results", "data-detections"))
    return {"cards": {f: (n, p) for f, n, p in cards}, "total": total}


def expected(records: list, minimum: float) -> dict:
    cards = {}
    for record in records:
        kept = [d for d in record["detections"] if d["score"] >= minimum]
        cards[record["file"]] = (len(kept), int(sum(mask_utils.area(d["mask"])
                                                    for d in kept)))
    return {"cards": cards, "total": sum(n for n, _ in cards.values())}


def test_the_page_end_to_end_in_chromium(scenario, server, tmp_path, request):
    sync_playwright = _browser_or_skip()
    url = server["url"]
    requests = []
    # Chromium now and then leaves an empty .org.chromium.Chromium.* folder (its
    # SingletonSocket's) in its TMPDIR; a TMPDIR of its own, removed after, keeps the
    # machine's clean. Made directly in TMPDIR, not in tmp_path: a socket path has at
    # most 107 bytes, and Chromium aborts ("Socket path too long") beyond.
    browser_tmp = tempfile.mkdtemp(prefix="chromium-")
    request.addfinalizer(lambda: shutil.rmtree(browser_tmp, ignore_errors=True))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS,
                                             env={**os.environ, "TMPDIR": browser_tmp})
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            assert list(server["tmp"].iterdir()) != []  # the jobs folder, made at start
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready=true]")

            # 1. The reference, and a box dragged on it with the mouse.
            page.set_input_files("#reference-file", str(scenario["reference"]))
            page.wait_for_function("document.querySelector('#box-text').textContent"
                                   ".startsWith('whole image')")
            canvas = page.locator("#reference-canvas").bounding_box()
            width, height = Image.open(scenario["reference"]).size
            x1, y1, x2, y2 = scenario["box"]

            def at(x, y):
                return (canvas["x"] + x * canvas["width"] / width,
                        canvas["y"] + y * canvas["height"] / height)

            page.mouse.move(*at(x1, y1))
            page.mouse.down()
            page.mouse.move(*at((x1 + x2) / 2, (y1 + y2) / 2), steps=4)
            page.mouse.move(*at(x2, y2), steps=4)
            page.mouse.up()
            box = page.get_attribute("#box-text", "data-box")
            got = [int(v) for v in box.split(",")]
            want = [max(x1, 0), max(y1, 0), min(x2, width) - max(x1, 0),
                    min(y2, height) - max(y1, 0)]
            assert np.abs(np.subtract(got, want)).max() <= 2, (got, want)

            # 2. Queries uploaded, the run, the matches.
            page.set_input_files("#query-files", scenario["queries"])
            page.click("#run-uploads")
            page.wait_for_selector("#results[data-state=done]", timeout=RUN_TIMEOUT_MS)
            assert page.text_content("#error") == ""
            records = api_detect(url, scenario["reference"], box, scenario["queries"])
            assert shown(page) == expected(records, 0.5)
            assert shown(page)["total"] > 0

            # 3. The slider filters in the page: no request to the server.
            scores = sorted({d["score"] for r in records for d in r["detections"]})
            steps = next(k for k in range(1, 50)
                         if expected(records, round(0.5 + k / 100, 2))["total"]
                         < expected(records, 0.5)["total"])
            level = round(0.5 + steps / 100, 2)  # the slider's value, as the page reads it
            before = len(requests)
            page.focus("#score")
            for _ in range(steps):
                page.keyboard.press("ArrowRight")
            assert page.text_content("#score-value") == f"{level:.2f}"
            assert shown(page) == expected(records, level)
            assert len(requests) == before, requests[before:]
            assert scores  # the page was checked against real detections

            # The download: search's results.jsonl format, what the slider shows.
            with page.expect_download() as download:
                page.click("#download")
            saved = tmp_path / "results.jsonl"
            download.value.save_as(str(saved))
            lines = [json.loads(line) for line in saved.read_text().splitlines()]
            assert sorted(r["file"] for r in lines) == sorted(r["file"] for r in records)
            by_file = {r["file"]: r for r in records}
            for line in lines:
                assert set(line) == {"file", "height", "width", "detections"}
                want = [d for d in by_file[line["file"]]["detections"] if d["score"] >= level]
                assert line["detections"] == want

            # 4. The server's folder, with its progress bar.
            page.click("#run-folder")
            page.wait_for_selector("#results[data-state=done]", timeout=RUN_TIMEOUT_MS)
            assert page.text_content("#error") == ""
            assert int(page.get_attribute("#results", "data-images")) == scenario["readable"]
            assert page.evaluate("document.querySelector('#progress').value") == \
                page.evaluate("document.querySelector('#progress').max")
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            if os.environ.get("SIAMESE_APP_SCREENSHOT"):
                shutil.copy(shot, os.environ["SIAMESE_APP_SCREENSHOT"])

            # 5. A text file as the reference: the page says what is wrong.
            notes = tmp_path / "notes.png"
            notes.write_text("not an image")
            page.set_input_files("#reference-file", str(notes))
            page.wait_for_function("document.querySelector('#error').textContent !== ''")
            assert "must be an image" in page.text_content("#error")
        finally:
            browser.close()

    # 6. Stopped as Ctrl-C or a service manager stops it: its temporary files are gone.
    server["proc"].send_signal(signal.SIGTERM)
    server["proc"].wait(timeout=300)  # a hang bound; it exits in about a second
    assert list(server["tmp"].iterdir()) == []
