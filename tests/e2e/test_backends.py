"""The Siamese model under the JAX and PyTorch backends detects what it detects under
TensorFlow.

This process (TensorFlow) writes tiny weights and the inputs, and detects; a fresh
interpreter with KERAS_BACKEND=jax (or torch), where importing TensorFlow fails (as on
a machine that has none), loads the same .h5 file by name and detects on the same inputs, with
detect() and with encode_reference + detect_with_reference, one image per call and
two. Boxes must agree to a
pixel, scores to 1e-4, masks but for boundary pixels. The seeded evaluation protocol,
run under each backend on a small COCO-layout set, gives the same COCO results.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.photos import photo
from tests.helpers.processes import ROOT, last_json, needs_backend, run_under_backend


NO_TENSORFLOW = r"""
# As if TensorFlow were not installed: every finder answers None for it, so that
# importlib.util.find_spec("tensorflow") is None and importing it raises
# ModuleNotFoundError (PyTorch's dynamo probes for it with find_spec).
import sys
class _Hidden:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            return None
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find else None
    def __getattr__(self, attribute):
        return getattr(self.inner, attribute)
sys.meta_path[:] = [_Hidden(finder) for finder in sys.meta_path]
"""

DETECT = r"""
import json, sys, warnings
import numpy as np
work = sys.argv[1]
# A warning raised from our own code (NumPy's deprecations of a tensor-and-array mix
# under PyTorch, say) is an error here, under every backend.
warnings.filterwarnings("error", module=r"(siamese_)?mrcnn(\.|$)")
import keras
from siamese_mrcnn.config import preset
from siamese_mrcnn.model import SiameseMaskRCNN
inputs = np.load(work + "/inputs.npz")
model = SiameseMaskRCNN("inference", preset("tiny_eval", DETECTION_MIN_CONFIDENCE=0.0),
                        work + "/logs")
model.load_weights(work + "/w.h5", by_name=True)
reference = inputs["reference"]
queries = [inputs[k] for k in sorted(inputs) if k.startswith("query")]
out = {}
vectors = model.encode_reference([[reference]])
for i, query in enumerate(queries):
    for how, result in (("detect", model.detect([[reference]], [query])[0]),
                        ("encoded", model.detect_with_reference(vectors, [query])[0])):
        for key in ("rois", "scores", "masks"):
            out[f"{how}{i}_{key}"] = result[key]
# Two images per call: the batched paths (proposals, NMS, detection) of the JAX graph,
# with the NMS that JAX runs on an accelerator (the static-shape fixed point), not the
# CPU's host callback that the one-image model took.
import mrcnn.backend_ops
mrcnn.backend_ops.JAX_CPU_HOST_NMS = False
pair = SiameseMaskRCNN("inference", preset("tiny_eval", DETECTION_MIN_CONFIDENCE=0.0,
                                           IMAGES_PER_GPU=2), work + "/logs2")
pair.load_weights(work + "/w.h5", by_name=True)
for i, result in enumerate(pair.detect([[reference], [reference]], queries[:2])):
    for key in ("rois", "scores", "masks"):
        out[f"pair{i}_{key}"] = result[key]
np.savez(work + "/" + keras.backend.backend() + ".npz", **out)
# The weights written back by this backend (the Keras 2 .h5 layout), for the round trip.
model.save_weights(work + "/saved_by_" + keras.backend.backend() + ".h5")
print(json.dumps({"backend": keras.backend.backend(),
                  "tensorflow_loaded": "tensorflow" in sys.modules}))
"""


EVALUATE = r"""
import json, sys
import numpy as np
work, data = sys.argv[1], sys.argv[2]
import keras
from siamese_mrcnn import evaluation as ev
from siamese_mrcnn.coco import IndexedCocoDataset
from siamese_mrcnn.config import preset
from siamese_mrcnn.model import SiameseMaskRCNN
dataset = IndexedCocoDataset()
coco = dataset.load_coco(data, "val", "2017", return_coco=True)
dataset.prepare()
model = SiameseMaskRCNN("inference", preset("tiny_eval", DETECTION_MIN_CONFIDENCE=0.0,
                                            IMAGES_PER_GPU=2), work + "/logs_eval")
model.load_weights(work + "/w.h5", by_name=True)
result = ev.evaluate_protocol(model, dataset, coco, "both", seed=0, verbose=0,
                              keep_results=True)
print(json.dumps({"backend": keras.backend.backend(),
                  "tensorflow_loaded": "tensorflow" in sys.modules,
                  "AP50": {t: result.stat("AP50", t) for t in ("bbox", "segm")},
                  "results": [{k: r[k] for k in ("image_id", "category_id", "bbox", "score")}
                              for r in result.results]}))
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Tiny settled weights with a mask head whose masks are neither empty nor full,
    three queries of different sizes and a reference."""
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN
    from tests.helpers.settled import settle

    import keras

    root = tmp_path_factory.mktemp("backends")
    keras.utils.set_random_seed(3)  # the same weights every run: masks that are not empty
    model = SiameseMaskRCNN("inference", preset("tiny_eval"), str(root / "logs"))
    settle(model, [0.0, 0.5])
    mask = model.keras_model.get_layer("mrcnn_mask")
    kernel, bias = mask.get_weights()
    mask.set_weights([kernel * 40.0, bias])  # masks with real boundaries
    model.save_weights(str(root / "w.h5"))
    rng = np.random.default_rng(0)
    inputs = {"reference": photo(rng, 40, 36)}
    for i, size in enumerate([(64, 64), (70, 90), (96, 64)]):
        inputs[f"query{i}"] = photo(rng, *size)
    np.savez(root / "inputs.npz", **inputs)
    (root / "detect.py").write_text(DETECT)
    (root / "evaluate.py").write_text(EVALUATE)
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(NO_TENSORFLOW)
    return root


@pytest.fixture(scope="module")
def tensorflow_run(work):
    run_under_backend([work / "detect.py", work], "tensorflow")
    return np.load(work / "tensorflow.npz")


def run_script(work, backend: str, *args) -> dict:
    """The JSON last line of detect.py or evaluate.py (python ARGS) under `backend`,
    without TensorFlow unless that is the backend. It must have exited 0 without Keras'
    warning for a model called with inputs of another structure than its own (under
    PyTorch the encoders printed it for every pair until they took one tensor)."""
    site = [work / "site"] if backend != "tensorflow" else []
    done = run_under_backend(args, backend, path=site)
    assert "match the expected structure" not in done.stderr, done.stderr[-3000:]
    return last_json(done)


def run_backend(work, backend: str) -> dict:
    return run_script(work, backend, work / "detect.py", work)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_detects_what_tensorflow_detects_without_tensorflow(work, tensorflow_run,
                                                                     backend):
    needs_backend(backend)
    reference = np.load(work / "inputs.npz")
    info = run_backend(work, backend)
    assert info == {"backend": backend, "tensorflow_loaded": False}
    want, got = tensorflow_run, np.load(work / f"{backend}.npz")
    masks_compared = 0
    for i in range(3):
        for how in ("detect", "encoded", "pair"):
            if how == "pair" and i == 2:
                continue
            key = f"{how}{i}"
            assert len(got[f"{key}_scores"]) == len(want[f"{key}_scores"]) > 0, key
            np.testing.assert_allclose(got[f"{key}_scores"], want[f"{key}_scores"],
                                       atol=1e-4, err_msg=key)
            assert np.abs(got[f"{key}_rois"] - want[f"{key}_rois"]).max() <= 1, key
            a, b = got[f"{key}_masks"], want[f"{key}_masks"]
            assert a.shape == b.shape == reference[f"query{i}"].shape[:2] + (len(a[0, 0]),)
            for n in range(a.shape[-1]):
                union = (a[..., n] | b[..., n]).sum()
                if union:
                    assert (a[..., n] & b[..., n]).sum() / union >= 0.95, (key, n)
                    masks_compared += 1
    assert masks_compared >= 6  # the masks were not all empty


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_weights_saved_under_another_backend_load_under_tensorflow(work, tensorflow_run,
                                                                    backend):
    """The .h5 written under JAX (or PyTorch) loads by name under TensorFlow, every array
    as it was, and detects what TensorFlow detected with the original file."""
    needs_backend(backend)
    saved = work / f"saved_by_{backend}.h5"
    if not saved.exists():
        run_backend(work, backend)
    from mrcnn import weights as weights_io
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN

    model = SiameseMaskRCNN("inference", preset("tiny_eval", DETECTION_MIN_CONFIDENCE=0.0),
                            str(work / "logs_tf"))
    report = model.load_weights(str(saved), by_name=True)
    assert not report.mismatched and not report.missing_in_file
    original = SiameseMaskRCNN("inference", preset("tiny_eval", DETECTION_MIN_CONFIDENCE=0.0),
                               str(work / "logs_tf2"))
    original.load_weights(str(work / "w.h5"), by_name=True)
    loaded = weights_io.weight_map(model.keras_model)
    for key, variable in weights_io.weight_map(original.keras_model).items():
        np.testing.assert_array_equal(np.asarray(loaded[key]), np.asarray(variable),
                                      err_msg=key)
    inputs = np.load(work / "inputs.npz")
    result = model.detect([[inputs["reference"]]], [inputs["query0"]])[0]
    np.testing.assert_array_equal(result["rois"], tensorflow_run["detect0_rois"])
    np.testing.assert_allclose(result["scores"], tensorflow_run["detect0_scores"], atol=1e-6)


def evaluate_under(work, backend: str) -> dict:
    """evaluate.py's JSON: the protocol's AP50s and COCO results under ``backend``."""
    from tests.helpers.eval_coco import write_eval_coco

    data = work / "eval_coco"
    if not data.exists():
        write_eval_coco(str(data))
    return run_script(work, backend, work / "evaluate.py", work, data)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_evaluation_protocol_runs_without_tensorflow(work, backend):
    """evaluate_protocol (seeded reference draws, batched pairs, COCOeval of boxes and
    masks) under JAX or PyTorch, without TensorFlow: the same pairs, the same COCO results
    (paired by value: box within 1 px, score within 1e-4) and AP50s as under TensorFlow.
    The tiny weights are untrained (AP50 is 0 under every backend): the 104 records, each
    pair's reference draw and detections, carry the comparison."""
    needs_backend(backend)
    want_file = work / "evaluated_tensorflow.json"
    if not want_file.exists():
        want_file.write_text(json.dumps(evaluate_under(work, "tensorflow")))
    want = json.loads(want_file.read_text())
    got = evaluate_under(work, backend)
    assert (got["backend"], got["tensorflow_loaded"]) == (backend, False)
    assert len(want["results"]) > 20  # DETECTION_MIN_CONFIDENCE 0: every pair detects
    assert len(got["results"]) == len(want["results"])
    unmatched = list(want["results"])
    for record in got["results"]:
        match = [w for w in unmatched
                 if (w["image_id"], w["category_id"]) == (record["image_id"],
                                                          record["category_id"])
                 and abs(w["score"] - record["score"]) <= 1e-4
                 and max(abs(a - b) for a, b in zip(w["bbox"], record["bbox"])) <= 1]
        assert match, record
        unmatched.remove(match[0])
    for eval_type in ("bbox", "segm"):
        assert got["AP50"][eval_type] == pytest.approx(want["AP50"][eval_type], abs=1e-3)


def test_train_under_jax_without_tensorflow_writes_a_checkpoint_tensorflow_loads(work,
                                                                               tmp_path):
    """train_siamese.py train under JAX, on a machine without TensorFlow: one epoch of
    2 steps on the generated shapes set, every loss shown, a checkpoint that the
    TensorFlow backend loads by name (every weight, nothing left over) and detects with."""
    needs_backend("jax")
    from samples.shapes.generate import generate_dataset
    from siamese_mrcnn.config import Config
    from siamese_mrcnn.model import SiameseMaskRCNN
    from tests.e2e.test_train_siamese_cli import LOSSES, TINY, TINY_SET

    generate_dataset(tmp_path / "data", 40, 12, seed=0, size=128, workers=1)
    (tmp_path / "schedule.json").write_text(json.dumps(
        {"1": {"learning_rate": 0.01, "layers": "heads"}}))
    done = run_under_backend([ROOT / "samples" / "coco" / "train_siamese.py", "train",
                              "--model", "none", "--epochs", 1, "--dataset", "data",
                              "--schedule", "schedule.json", "--steps-per-epoch", 2,
                              "--validation-steps", 1, "--val-images", 8, "--logs", "logs",
                              *TINY_SET], "jax", cwd=tmp_path, path=[work / "site"],
                             extra_env={"COLUMNS": "2000"})
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    for loss in LOSSES:
        assert f" {loss}: " in output and f"val_{loss}: " in output, loss
    (checkpoint,) = (tmp_path / "logs").rglob("siamese_mrcnn_0001.h5")

    config = type("Tiny", (Config,), {**TINY, "IMAGES_PER_GPU": 1,
                                       "DETECTION_MIN_CONFIDENCE": 0.0})()
    model = SiameseMaskRCNN("inference", config, str(tmp_path / "tf_logs"))
    model.load_weights(str(checkpoint), by_name=True)
    report = model.last_load_report
    assert report.loaded and not report.missing_in_file and not report.unused_in_file, \
        report.summary()
    assert len(report.loaded) == len(model.keras_model.weights)  # every weight
    inputs = np.load(work / "inputs.npz")
    result = model.detect([[inputs["reference"]]], [inputs["query0"]])[0]
    # 2 steps leave the class head on background: the detections may be none.
    assert len(result["rois"]) == len(result["scores"]) == result["masks"].shape[-1]
