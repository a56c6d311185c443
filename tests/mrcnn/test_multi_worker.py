"""Multi-worker training (mrcnn.multi_worker): TF_CONFIG, sharding, 2 workers == 1, faults.

The process tests start tests/helpers/multi_worker_check.py as workers on 127.0.0.1
(free ports, their own process groups, always killed at the end). Waits are bounded
only to catch a hang (processes.HANG_TIMEOUT_S); the one timed bound, how soon the
survivor of a killed worker gives up, is TensorFlow's heartbeat timeout plus a wide
margin for a busy machine.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mrcnn import multi_worker
from mrcnn.data import DataGenerator
from tests.helpers.processes import HANG_TIMEOUT_S, ROOT, free_ports, kill_group, worker_env
from tests.helpers.rect_dataset import ShapesDataset, make_config

SCRIPT = os.path.join(ROOT, "tests", "helpers", "multi_worker_check.py")
# TensorFlow notices a dead peer after its coordination heartbeats stop (about 10-20 s
# measured); 240 s leaves room for a loaded 2-core machine.
LOST_WORKER_BOUND_S = 240
# How long the non-chief dawdles after fit() in the 2-worker run: train()'s end barrier
# must hold the chief that long (a machine's slowness only lengthens the wait).
LATE_PEER_S = 3.0


def tf_config(ports, index, task_type="worker", chief=None) -> str:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    if chief is not None:
        cluster["chief"] = [f"127.0.0.1:{chief}"]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


############################################################
#  TF_CONFIG
############################################################

def test_read_tf_config_orders_tasks_chief_first():
    assert multi_worker.read_tf_config({}) is None
    assert multi_worker.read_tf_config({"TF_CONFIG": "  "}) is None
    two = multi_worker.read_tf_config({"TF_CONFIG": tf_config([1, 2], 1)})
    assert two.tasks == ("127.0.0.1:1", "127.0.0.1:2") and two.index == 1
    assert two.count == 2 and not two.is_chief
    assert multi_worker.read_tf_config({"TF_CONFIG": tf_config([1, 2], 0)}).is_chief
    with_chief = multi_worker.read_tf_config(
        {"TF_CONFIG": tf_config([1, 2], 0, "chief", chief=9)})
    assert with_chief.tasks[0] == "127.0.0.1:9" and with_chief.is_chief
    worker = multi_worker.read_tf_config({"TF_CONFIG": tf_config([1, 2], 1, chief=9)})
    assert worker.index == 2 and worker.count == 3 and not worker.is_chief


@pytest.mark.parametrize("text, expected", [
    ("{not json", "expected JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', '"cluster" and "task"'),
    ('{"cluster": {"ps": ["a:1"], "worker": ["a:2"]}, "task": {"type": "worker", '
     '"index": 0}}', "ParameterServerStrategy"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     'must be "chief" or "worker"'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     "an int in [0, 1)"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}',
     "at least one task"),
])
def test_read_tf_config_says_what_is_wrong(text, expected):
    with pytest.raises(ValueError, match="TF_CONFIG") as error:
        multi_worker.read_tf_config({"TF_CONFIG": text})
    assert expected in str(error.value)


def test_config_accepts_only_known_distributions():
    assert make_config(1, 1, DISTRIBUTION="multi_worker").DISTRIBUTION == "multi_worker"
    with pytest.raises(ValueError, match="DISTRIBUTION must be one of"):
        make_config(1, 1, DISTRIBUTION="mirrored_everywhere")


############################################################
#  Which samples each worker loads
############################################################

class PositionSource:
    """batch_at returns the positions asked for, to check the sharding arithmetic."""

    def batch_at(self, epoch, index, size):
        return (epoch, list(range(index, index + size)))


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_workers_together_load_each_global_batch_once():
    # 2 workers x 2 replicas x 3 images = global batches of 12; 2 steps per epoch.
    source = PositionSource()
    streams = [multi_worker.worker_batches(source, w, 2, 2, 3, steps_per_epoch=2,
                                           first_epoch=5) for w in range(2)]
    per_worker = [take(s, 2 * 2 * 2) for s in streams]  # 2 epochs x 2 steps x 2 replicas
    for epoch_offset in range(2):
        for step in range(2):
            loaded = []
            for w in range(2):
                for r in range(2):
                    epoch, positions = per_worker[w][(epoch_offset * 2 + step) * 2 + r]
                    assert epoch == 5 + epoch_offset
                    loaded += positions
            # Global replica order (worker 0's replicas, then worker 1's) is batch order.
            assert loaded == list(range(step * 12, step * 12 + 12))


class ArraySource:
    """batch_at as arrays (epoch, positions) of a 2-image batch; Keras' loading options."""
    batch_size = 2

    def __init__(self, workers=0, use_multiprocessing=False):
        self.workers, self.use_multiprocessing = workers, use_multiprocessing

    def batch_at(self, epoch, index, size):
        return (np.full((size, 1), epoch, np.int64),
                np.arange(index, index + size, dtype=np.int64)[:, None])


def test_local_dataset_streams_the_epochs_in_order_without_autotuning():
    """One process's fit() input: epoch 3 on, batch after batch, as worker_batches for
    one worker; tf.data autotuning off (deleting an autotuned iterator at the end of
    fit() waited 10-40 s for its tuning thread)."""
    dataset = multi_worker.local_dataset(ArraySource(), steps_per_epoch=2, first_epoch=3)
    assert dataset.options().autotune.enabled is False
    got = [(int(e[0, 0]), p[:, 0].tolist()) for e, p in dataset.take(5).as_numpy_iterator()]
    assert got == [(3, [0, 1]), (3, [2, 3]), (4, [0, 1]), (4, [2, 3]), (5, [0, 1])]
    # Keras' worker threads or processes load those: Keras turns autotuning off itself.
    for source in (ArraySource(workers=2), ArraySource(workers=1, use_multiprocessing=True)):
        assert multi_worker.local_dataset(source, 2, 0) is source
    assert multi_worker.local_dataset(None, 2, 0) is None


def test_batch_at_gives_the_same_samples_in_any_split():
    dataset = ShapesDataset()
    dataset.load()
    dataset.prepare()
    config = make_config(1, 2)
    generator = DataGenerator(dataset, config, steps_per_epoch=3, seed=11)
    whole = generator.batch_at(1, 2, 2)[0]
    halves = [generator.batch_at(1, 2, 1)[0], generator.batch_at(1, 3, 1)[0]]
    for array, first, second in zip(whole, *halves):
        np.testing.assert_array_equal(array, np.concatenate([first, second]))
    # __getitem__ is batch_at of the current epoch; another seed draws other samples.
    generator.epoch = 1
    for a, b in zip(generator[1][0], whole):
        np.testing.assert_array_equal(a, b)
    other = DataGenerator(dataset, config, steps_per_epoch=3, seed=12).batch_at(1, 2, 2)[0]
    assert any(not np.array_equal(a, b) for a, b in zip(other, whole))


############################################################
#  Worker processes
############################################################

class Cluster:
    """Starts one check process per task; kills every one that is left at exit."""

    def __init__(self, work_dir, count: int, epochs: int, steps: int, tag: str,
                 late_peer_s: float = 0.0):
        self.work_dir = str(work_dir)
        ports = free_ports(count)
        pythonpath = os.pathsep.join([os.path.join(str(ROOT), "lib"), str(ROOT)])
        self.results = [os.path.join(self.work_dir, f"{tag}_{i}.json") for i in range(count)]
        self.logs = [os.path.join(self.work_dir, f"{tag}_{i}.log") for i in range(count)]
        self.procs = []
        temp = os.path.join(self.work_dir, "tmp")  # removed with the test's tmp_path
        os.makedirs(temp, exist_ok=True)
        for i in range(count):
            env = worker_env(ports, i, temp, {"PYTHONPATH": pythonpath,
                                              "LATE_PEER_S": str(late_peer_s)})
            with open(self.logs[i], "w") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, SCRIPT, self.results[i], self.work_dir, str(epochs),
                     str(steps)], cwd=str(ROOT), env=env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True))

    def wait(self, index: int, timeout: float = HANG_TIMEOUT_S) -> int:
        try:
            return self.procs[index].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"task {index} did not exit within {timeout:.0f} s:\n"
                        f"{self.log(index)[-3000:]}")

    def log(self, index: int) -> str:
        with open(self.logs[index], errors="replace") as f:
            return f.read()

    def report(self, index: int) -> dict:
        with open(self.results[index]) as f:
            return json.load(f)

    def weights(self, index: int) -> dict:
        with np.load(self.results[index] + ".npz") as arrays:
            return dict(arrays)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                kill_group(proc)
                proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def finished(cluster: Cluster, index: int) -> dict:
    code = cluster.wait(index)
    assert code == 0, f"task {index} exited {code}:\n{cluster.log(index)[-3000:]}"
    return cluster.report(index)


def test_two_workers_train_as_one_process_with_the_same_global_batch(tmp_path):
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir()
    two_dir.mkdir()
    with Cluster(one_dir, 1, epochs=2, steps=3, tag="one") as one, \
            Cluster(two_dir, 2, epochs=2, steps=3, tag="two",
                    late_peer_s=LATE_PEER_S) as two:
        single = finished(one, 0)
        chief, other = finished(two, 0), finished(two, 1)
        single_weights, chief_weights, other_weights = (
            one.weights(0), two.weights(0), two.weights(1))

    # The logged losses (global means) and validation losses, epoch by epoch.
    assert set(chief["history"]) == set(single["history"])
    assert "val_mrcnn_mask_loss" in chief["history"]
    for name, values in single["history"].items():
        np.testing.assert_allclose(chief["history"][name], values, rtol=2e-4, atol=1e-6,
                                   err_msg=name)
        assert other["history"][name] == chief["history"][name], name
    assert single["history"]["loss"][1] < single["history"]["loss"][0]
    # The weights after 6 SGD steps with global-norm clipping.
    for key, value in single_weights.items():
        np.testing.assert_allclose(chief_weights[key], value, rtol=1e-3, atol=2e-5,
                                   err_msg=key)
        np.testing.assert_array_equal(other_weights[key], chief_weights[key], err_msg=key)
    # Only the chief wrote: its checkpoints and TensorBoard logs; the other, nothing.
    checkpoints = [f for f in chief["files"] if f.endswith(".h5")]
    assert [os.path.basename(f) for f in checkpoints] == ["mask_rcnn_mw_0001.h5",
                                                          "mask_rcnn_mw_0002.h5"]
    assert any("events.out.tfevents" in f for f in chief["files"])
    assert not other["model_dir_exists"]
    assert chief["epoch"] == other["epoch"] == 2
    # Neither leaves train() before the other has ended fit(): the chief, whose peer
    # slept LATE_PEER_S after its last step, waited for it (less the time its own
    # last checkpoint took, which the peer spent ahead).
    assert chief["end_wait_s"] > LATE_PEER_S / 2, chief["end_wait_s"]
    assert other["end_wait_s"] < chief["end_wait_s"]


def test_a_killed_worker_stops_the_other_and_a_restart_resumes(tmp_path):
    chief_dir = tmp_path / "chief"
    first_checkpoint = None
    with Cluster(tmp_path, 2, epochs=3, steps=40, tag="run") as run:
        # Kill worker 1 in the middle of epoch 2: as soon as the chief has written
        # epoch 1's checkpoint.
        deadline = time.monotonic() + HANG_TIMEOUT_S
        while first_checkpoint is None:
            found = [os.path.join(d, f) for d, _, names in os.walk(chief_dir)
                     for f in names if f.endswith("_0001.h5")]
            first_checkpoint = found[0] if found else None
            if run.procs[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no first checkpoint:\n{run.log(0)[-3000:]}")
            time.sleep(0.2)
        os.killpg(run.procs[1].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        code = run.wait(0, timeout=LOST_WORKER_BOUND_S)
        waited = time.monotonic() - killed_at
        log = run.log(0)
    assert code == 3, log[-3000:]
    assert waited < LOST_WORKER_BOUND_S
    message = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(message) == 1, log[-3000:]
    assert "another worker stopped answering" in message[0]
    assert "Restart every worker with the same command" in message[0]
    assert "Traceback" not in log
    written = sorted(f for _, _, names in os.walk(chief_dir) for f in names
                     if f.endswith(".h5"))
    assert written == ["mask_rcnn_mw_0001.h5"], written  # epoch 2 was lost, nothing else

    with Cluster(tmp_path, 2, epochs=3, steps=40, tag="resume") as resume:
        chief, other = finished(resume, 0), finished(resume, 1)
    assert chief["start_epoch"] == 1 and other["start_epoch"] == 0
    assert chief["epoch"] == other["epoch"] == 3
    assert len(chief["history"]["loss"]) == 2  # epochs 2 and 3 only
    assert [os.path.basename(f) for f in chief["files"] if f.endswith(".h5")] == [
        "mask_rcnn_mw_0001.h5", "mask_rcnn_mw_0002.h5", "mask_rcnn_mw_0003.h5"]
    assert not other["model_dir_exists"]
    np.testing.assert_array_equal(resume.weights(0)["conv1/kernel"],
                                  resume.weights(1)["conv1/kernel"])


def test_leave_together_waits_only_on_a_cluster(monkeypatch):
    """One process has no peers: nothing to wait for (and no coordination service)."""
    calls = []
    monkeypatch.setattr(multi_worker, "wait_for_workers",
                        lambda name, cluster: calls.append((name, cluster.index)))
    multi_worker.leave_together(None, "train_end")
    assert calls == []
    cluster = multi_worker.Cluster(("127.0.0.1:1", "127.0.0.1:2"), 1, "worker")
    multi_worker.leave_together(cluster, "train_end")
    assert calls == [("train_end", 1)]


class FakeService:
    """The coordination service's calls that wait_for_workers makes, recorded; each
    method raises what ``fail`` maps its name to."""

    def __init__(self, **fail):
        self.calls, self.fail = [], fail

    def _call(self, method, *args):
        self.calls.append((method, *args))
        if method in self.fail:
            raise self.fail[method]

    def wait_at_barrier(self, barrier, timeout_ms):
        self._call("barrier", barrier, timeout_ms)

    def get_config_key_value(self, key, timeout_ms):
        self._call("get", key, timeout_ms)
        return "1"

    def set_config_key_value(self, key, value):
        self._call("set", key, value)


def fake_service(monkeypatch, **fail) -> FakeService:
    from tensorflow.python.eager import context

    service = FakeService(**fail)
    monkeypatch.setattr(context, "context", lambda: service)
    monkeypatch.setattr(multi_worker, "_barrier_ids", iter([7]))
    return service


def three(index: int) -> multi_worker.Cluster:
    return multi_worker.Cluster(("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), index,
                                "worker")


def test_the_chief_leaves_only_after_every_other_worker_says_its_answer_came(monkeypatch):
    """The chief hosts the coordination service: leaving at once could close the socket
    before the barrier's answers reach the others (CI saw "Socket closed")."""
    service = fake_service(monkeypatch)
    multi_worker.leave_together(three(0), "train_end")
    wait_ms = multi_worker.DEPARTURE_TIMEOUT_S * 1000
    assert service.calls == [
        ("barrier", "mrcnn_train_end_7", multi_worker.END_BARRIER_TIMEOUT_S * 1000),
        ("get", "mrcnn_train_end_7/left/1", wait_ms),
        ("get", "mrcnn_train_end_7/left/2", wait_ms)]


def test_another_worker_says_it_left_after_the_barrier(monkeypatch):
    service = fake_service(monkeypatch)
    multi_worker.leave_together(three(2), "train_end")
    assert service.calls == [
        ("barrier", "mrcnn_train_end_7", multi_worker.END_BARRIER_TIMEOUT_S * 1000),
        ("set", "mrcnn_train_end_7/left/2", "1")]


def test_a_chief_gone_before_it_answered_the_key_is_no_error(monkeypatch):
    """Past the barrier every worker's work is done; the chief may read the key and exit
    before its answer is sent."""
    import tensorflow as tf

    service = fake_service(monkeypatch, set=tf.errors.UnavailableError(None, None, "gone"))
    multi_worker.leave_together(three(1), "train_end")
    assert [c[0] for c in service.calls] == ["barrier", "set"]


def test_a_worker_that_never_says_it_left_is_a_warning_for_the_chief(monkeypatch, caplog):
    import tensorflow as tf

    service = fake_service(
        monkeypatch, get=tf.errors.DeadlineExceededError(None, None, "no key"))
    with caplog.at_level("WARNING", logger=multi_worker.__name__):
        multi_worker.leave_together(three(0), "train_end")
    assert [c[0] for c in service.calls] == ["barrier", "get", "get"]  # both were asked
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2 and "Worker 1 reached mrcnn_train_end_7" in warned[0], warned


def test_a_peer_lost_before_the_barrier_is_a_worker_lost_error(monkeypatch):
    import tensorflow as tf

    service = fake_service(
        monkeypatch, barrier=tf.errors.UnavailableError(None, None, "Socket closed"))
    with pytest.raises(multi_worker.WorkerLostError, match="task 1 of 3.*Socket closed"):
        multi_worker.leave_together(three(1), "train_end")
    assert [c[0] for c in service.calls] == ["barrier"]  # no key after a failed barrier
