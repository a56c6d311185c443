"""The package as a user installs it: a wheel built from setup.py, installed into a fresh
virtual environment, used from a folder outside the repository.

The wheel must carry every file of lib/ (modules, the web page's static files, the
ImageNet class lists) and imgaug_numpy2_hook.pth, which makes a plain `import imgaug`
work under numpy 2; `python -m siamese_mrcnn` (the command line without samples/) and
`python -m siamese_mrcnn.app` must run. The new environment borrows this one's
dependencies through a .pth file (no download), so only the project comes from the wheel.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import site
import sys
from pathlib import Path

import pytest

from tests.helpers.processes import ROOT, run_command, run_python

SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")

CHECK = r"""
import json, os
import imgaug, numpy  # imgaug: the .pth hook makes it import under numpy 2
import mrcnn, siamese_mrcnn
from siamese_mrcnn.app import server
from siamese_mrcnn.pretraining import class_list
with open(os.path.join(server.STATIC_DIR, "index.html"), encoding="utf-8") as f:
    index = f.read()
print(json.dumps({"mrcnn": mrcnn.__file__, "siamese_mrcnn": siamese_mrcnn.__file__,
                  "numpy": numpy.__version__,
                  "static": sorted(os.listdir(server.STATIC_DIR)), "index": index,
                  "lists": [len(class_list(n, "")) for n in ("imagenet-687", "imagenet-771")]}))
"""


def lib_files() -> set[str]:
    """What lib/ holds for the wheel: every file but caches and build records."""
    lib = ROOT / "lib"
    return {p.relative_to(lib).as_posix() for p in lib.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
            and not any(part.endswith(".egg-info") for part in p.parts)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel's path, the new environment's python and a folder outside the project."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"  # a copy: the build writes build/ and *.egg-info beside it
    shutil.copytree(ROOT / "lib", source / "lib", ignore=SKIPPED)
    for name in ("setup.py", "requirements.txt", "requirements-app.txt"):
        shutil.copy(ROOT / name, source / name)
    built = run_python(["-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "-w", work / "dist", source])
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("*.whl")

    venv = work / "venv"
    made = run_command([getattr(sys, "_base_executable", sys.executable), "-m", "venv",
                        "--without-pip", venv])
    assert made.returncode == 0, made.stderr[-3000:]
    python = venv / "bin" / "python"
    done = run_command([python, "-c", "import site; print(site.getsitepackages()[0])"])
    new_site = Path(done.stdout.strip())
    # Appended after the new site-packages: the wheel's packages come first, and the
    # project's editable install here is not seen (its .pth files are not read there).
    (new_site / "zz_borrowed_dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    done = run_python(["-m", "pip", "--python", python, "install", "-q", "--no-deps",
                       "--no-index", wheel])
    assert done.returncode == 0, done.stderr[-3000:]
    outside = work / "elsewhere"
    outside.mkdir()
    return {"wheel": wheel, "python": python, "site": new_site, "cwd": outside}


def run_installed(installed: dict, *args):
    """python ARGS in the new environment, from outside the project, with no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return run_command([installed["python"], *args], cwd=installed["cwd"], env=env)


def test_the_wheel_carries_every_file_of_lib_and_the_imgaug_hook(installed):
    import zipfile

    names = {n for n in zipfile.ZipFile(installed["wheel"]).namelist()
             if ".dist-info/" not in n}
    assert names == lib_files()
    assert "imgaug_numpy2_hook.pth" in names
    assert "siamese_mrcnn/__main__.py" in names


def test_the_installed_package_imports_and_finds_its_data(installed):
    done = run_installed(installed, "-c", CHECK)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    for package in ("mrcnn", "siamese_mrcnn"):
        assert Path(found[package]).is_relative_to(installed["site"]), found[package]
    assert found["numpy"].startswith("2.")  # imgaug imported under numpy 2: the hook ran
    static = sorted(p.name for p in (ROOT / "lib" / "siamese_mrcnn" / "app" / "static")
                    .iterdir())
    assert found["static"] == static
    loaded = re.findall(r'"/static/([^"]+)"', found["index"])  # what the page loads
    assert len(loaded) >= 3 and set(loaded) <= set(found["static"]), loaded
    assert found["lists"] == [687, 771]


def test_python_m_siamese_mrcnn_is_the_command_line(installed):
    done = run_installed(installed, "-m", "siamese_mrcnn", "--help")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("usage: python -m siamese_mrcnn")
    for command in ("train", "evaluate", "detect", "search", "export", "report"):
        assert command in done.stdout.split("\n\n")[0]
    done = run_installed(installed, "-m", "siamese_mrcnn", "detect", "--model", "missing.h5",
                         "--image", "q.jpg", "--reference", "r.jpg", "--output", "o.png")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --model: weights file not found: missing.h5 (expected "
        "imagenet-687|imagenet-771|imagenet-1k|last|none|PATH.h5)"]
    assert done.stdout == ""


def test_python_m_siamese_mrcnn_app_runs(installed):
    pytest.importorskip("starlette", reason="the app extra: pip install -e .[app]")
    done = run_installed(installed, "-m", "siamese_mrcnn.app", "--help")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("usage: python -m siamese_mrcnn.app")
