"""The suite's own machinery: pytest.ini's choices, checked by running pytest under it
on a small suite of its own, and tests/helpers/processes.py: the hang bound, and how
a script runs under another Keras backend.

tmp_path_retention_policy = failed: `make test` writes about 2 GB under the temp folder;
a passing run leaves none of it, and a failing test's tmp_path stays for a look.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.processes import (last_json, last_line, run_command, run_python,
                                     run_under_backend)

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
    done = run_python(
        ["-m", "pytest", "-c", str(ROOT / "pytest.ini"), "--rootdir", str(suite),
         "-p", "no:cacheprovider", "-q", str(suite / "test_suite.py")],
        cwd=suite, env=env, timeout=600)  # a hang bound: two trivial tests take about 2 s
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


def test_a_hung_script_and_what_it_started_are_killed_and_reported(tmp_path):
    """A shell script whose child holds its output pipe open (as gpu.sh's Python does):
    at the bound, the whole process group goes, and the test fails with the output."""
    child_pid = tmp_path / "child.pid"
    script = f'sleep 600 & echo $! > {child_pid}; echo started; wait'
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as failure:
        run_command(["bash", "-c", script], timeout=5)
    # Killing the shell alone would leave the sleep running and, here, holding the pipes
    # that communicate() reads to their end: 600 s.
    assert time.monotonic() - started < 300
    assert "did not exit within 5 s" in str(failure.value)
    assert "stdout:\nstarted" in str(failure.value)
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 60  # a hang bound: SIGKILL lands at once
    while is_running(pid):
        if time.monotonic() > deadline:
            pytest.fail(f"the script's child {pid} outlived the kill")
        time.sleep(0.1)


def is_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan waits for a reaper, which a container's init
    may never be)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


REPORT_ENV = """
import json, os, sys
print("working")
print(json.dumps({"backend": os.environ["KERAS_BACKEND"], "jax": os.environ["JAX_PLATFORMS"],
                  "path": sys.path[1:4], "extra": os.environ.get("EXTRA")}))
"""


def test_a_script_under_a_backend_gets_the_backend_the_paths_and_its_report_is_read(tmp_path):
    script = tmp_path / "report.py"
    script.write_text(REPORT_ENV)
    done = run_under_backend([script], "torch", path=[tmp_path / "site"],
                             extra_env={"EXTRA": "1"})
    assert last_json(done) == {"backend": "torch", "jax": "cpu", "extra": "1",
                               "path": [str(tmp_path / "site"), str(ROOT / "lib"), str(ROOT)]}
    assert done.stdout.splitlines()[0] == "working"


def test_a_failing_or_silent_script_fails_the_test_with_its_stderr(tmp_path):
    failing = tmp_path / "failing.py"
    failing.write_text("import sys\nprint('the cause', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(AssertionError, match=r"(?s)under jax exited 3:.*the cause"):
        run_under_backend([failing], "jax")
    silent = tmp_path / "silent.py"
    silent.write_text("import sys\nprint('only stderr', file=sys.stderr)\n")
    with pytest.raises(AssertionError, match=r"(?s)printed nothing:.*only stderr"):
        last_line(run_under_backend([silent], "jax"))
