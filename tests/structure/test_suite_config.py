"""pytest.ini's choices, checked by running pytest under it on a small suite of its own.

tmp_path_retention_policy = failed: `make test` writes about 2 GB under the temp folder;
a passing run leaves none of it, and a failing test's tmp_path stays for a look.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SUITE = '''
import os

def test_passes(tmp_path):
    (tmp_path / "kept_only_on_failure.bin").write_bytes(os.urandom(1000))

def test_fails(tmp_path):
    (tmp_path / "look_at_me.txt").write_text("what the failing test wrote")
    assert os.environ["SUITE_FAILS"] == "0"
'''


def files_under(folder: Path) -> list[str]:
    """The regular files under `folder` (pytest's `pytest-current` links aside)."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def run_suite(tmp_path: Path, fails: bool) -> tuple[subprocess.CompletedProcess, Path]:
    suite = tmp_path / ("failing" if fails else "passing")
    temp = suite / "tmp"
    temp.mkdir(parents=True)
    (suite / "test_suite.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    env.update(TMPDIR=str(temp), SUITE_FAILS="1" if fails else "0")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pytest.ini"), "--rootdir",
         str(suite), "-p", "no:cacheprovider", "-q", str(suite / "test_suite.py")],
        cwd=str(suite), env=env, capture_output=True, text=True,
        timeout=600)  # a hang bound: two trivial tests take about 2 s
    return done, temp


def test_a_passing_run_leaves_nothing_in_the_temp_folder(tmp_path):
    done, temp = run_suite(tmp_path, fails=False)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "2 passed" in done.stdout
    assert files_under(temp) == []


def test_a_failing_test_keeps_what_it_wrote_and_only_that(tmp_path):
    done, temp = run_suite(tmp_path, fails=True)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "1 failed, 1 passed" in done.stdout
    assert files_under(temp) == ["look_at_me.txt"]
