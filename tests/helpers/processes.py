"""The project's scripts run in a fresh interpreter, for the end-to-end tests.

Every wait is bounded only to catch a hang, never to judge speed. HANG_TIMEOUT_S (25
minutes) is 8 times the slowest correct script in the fresh-clone CI runs of 2026-12-07
(gpu.sh's CPU check, at most 181 s, beside the suite's other worker on the same 2
cores; README, "Tests"). pytest.ini's per-test limit (pytest-timeout, 40
minutes) is above it, so that a hung script is killed here and reported with its output
before pytest-timeout has to stop the test's worker.

The child gets its own process group: on a hang, it and anything it started (data
loader workers, notebook kernels) are killed together, so nothing outlives the test.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANG_TIMEOUT_S = 1500
# Quiet, CPU-only, headless: what every script run by the tests gets unless told otherwise.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg"}


def _tail(text: str | bytes | None, limit: int = 3000) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "")[-limit:]


def run_command(command: Sequence[str | os.PathLike], cwd: str | os.PathLike = ROOT,
                env: Mapping[str, str] | None = None, extra_env: Mapping[str, str] = (),
                timeout: float = HANG_TIMEOUT_S) -> subprocess.CompletedProcess:
    """COMMAND (a program and its arguments); its CompletedProcess (text stdout/stderr).

    env: the whole environment (default: this process's); QUIET_ENV and then
    extra_env are laid over it. A run still going after `timeout` seconds is a hang:
    its process group is killed (a shell script's children too: subprocess.run's
    timeout kills the shell alone and leaves them running) and the calling test fails
    with the ends of its output.
    """
    full_env = dict(os.environ if env is None else env, **QUIET_ENV)
    full_env.update(dict(extra_env))
    command = [str(a) for a in command]
    proc = subprocess.Popen(command, cwd=str(cwd), env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        stdout, stderr = proc.communicate()
        pytest.fail(f"hung: {' '.join(command)} did not exit within {timeout:.0f} s "
                    f"(a correct run takes a few minutes at most); killed.\n"
                    f"stdout:\n{_tail(stdout)}\nstderr:\n{_tail(stderr)}")
    except BaseException:
        kill_group(proc)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def run_python(args: Sequence[str | os.PathLike], cwd: str | os.PathLike = ROOT,
               env: Mapping[str, str] | None = None, extra_env: Mapping[str, str] = (),
               timeout: float = HANG_TIMEOUT_S) -> subprocess.CompletedProcess:
    """`python ARGS` with this interpreter, through run_command."""
    return run_command([sys.executable, *args], cwd, env, extra_env, timeout)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the process group that `proc` leads (started with start_new_session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports on 127.0.0.1 that were free a moment ago."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    """TF_CONFIG of worker ``index`` of a cluster on 127.0.0.1:ports."""
    import json

    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def worker_env(ports: Sequence[int], index: int, temp: str | os.PathLike,
               extra_env: Mapping[str, str] = ()) -> dict:
    """The environment of worker ``index`` of a TF_CONFIG cluster on 127.0.0.1:ports:
    this process's, QUIET_ENV, extra_env and TMPDIR=temp.

    TMPDIR: a worker that is killed, or leaves with os._exit (TensorFlow's collective
    threads can hold a normal exit), skips TensorFlow's removal of its autograph files;
    under ``temp``, a folder the caller removes, they go with it.
    """
    return dict(os.environ, **QUIET_ENV, **dict(extra_env),
                TF_CONFIG=tf_config(ports, index), TMPDIR=str(temp))


def run_workers(commands: Sequence[Sequence[str | os.PathLike]], cwd: str | os.PathLike = ROOT,
                extra_env: Mapping[str, str] = (),
                timeout: float = HANG_TIMEOUT_S) -> list[subprocess.CompletedProcess]:
    """Runs ``python COMMAND`` for each command at once, command i as worker i of one
    TF_CONFIG cluster on free 127.0.0.1 ports; their CompletedProcesses (text output).

    Output goes to files, not pipes: a worker blocked on a full pipe that nobody reads
    yet would stall the others in their collectives. Every process is killed (its
    group) when this returns or fails; a hang fails the calling test with the ends of
    the outputs.
    """
    import tempfile

    ports = free_ports(len(commands))
    procs, files = [], []
    with tempfile.TemporaryDirectory() as folder:
        try:
            for index, args in enumerate(commands):
                env = worker_env(ports, index, folder, extra_env)
                out = open(os.path.join(folder, f"{index}.out"), "w+")
                err = open(os.path.join(folder, f"{index}.err"), "w+")
                files.append((out, err))
                procs.append(subprocess.Popen(
                    [sys.executable, *[str(a) for a in args]], cwd=str(cwd), env=env,
                    text=True, stdout=out, stderr=err, start_new_session=True))
            for index, proc in enumerate(procs):
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    for other in procs:
                        kill_group(other)
                    files[index][1].seek(0)
                    pytest.fail(f"hung: worker {index} did not exit within {timeout:.0f} s; "
                                f"killed.\nstderr:\n{_tail(files[index][1].read())}")
            results = []
            for proc, (out, err) in zip(procs, files):
                out.seek(0)
                err.seek(0)
                results.append(subprocess.CompletedProcess(proc.args, proc.returncode,
                                                           out.read(), err.read()))
            return results
        finally:
            for proc in procs:
                if proc.poll() is None:
                    kill_group(proc)
                    proc.wait()
            for out, err in files:
                out.close()
                err.close()


def needs_backend(backend: str) -> None:
    """Skip the calling test where `backend`'s package (jax, torch) is not installed:
    requirements-test.txt installs both, a user's own environment may lack them."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (requirements-test.txt)")


def run_under_backend(args: Sequence[str | os.PathLike], backend: str,
                      cwd: str | os.PathLike = ROOT, path: Sequence[str | os.PathLike] = (),
                      extra_env: Mapping[str, str] = ()) -> subprocess.CompletedProcess:
    """`python ARGS` in a fresh interpreter whose Keras backend is `backend` (tensorflow,
    jax, torch), as a user sets it: KERAS_BACKEND before import. JAX stays on the CPU;
    PYTHONPATH is `path`, then lib/ and the repository. The run must exit 0: otherwise
    the calling test fails here with the end of its stderr. Its CompletedProcess."""
    pythonpath = os.pathsep.join(str(p) for p in [*path, ROOT / "lib", ROOT])
    done = run_python(args, cwd, extra_env={"KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu",
                                            "PYTHONPATH": pythonpath, **dict(extra_env)})
    assert done.returncode == 0, (f"{' '.join(done.args)} under {backend} exited "
                                  f"{done.returncode}:\n{_tail(done.stderr)}")
    return done


def last_line(done: subprocess.CompletedProcess) -> str:
    """The last line a script printed: where the tests' helper scripts put their report."""
    lines = done.stdout.strip().splitlines()
    assert lines, f"{' '.join(done.args)} printed nothing:\n{_tail(done.stderr)}"
    return lines[-1]


def last_json(done: subprocess.CompletedProcess):
    """The report a helper script printed as JSON on its last line."""
    import json

    return json.loads(last_line(done))
