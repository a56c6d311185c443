"""Export (mrcnn.export, siamese_mrcnn.export, `train_siamese.py export`): the
SavedModel, loaded where the project cannot be imported, detects what detect() does.

The test model is the tiny config with random weights, settled (see settle()) so that
its detections are anchor boxes with distinct scores above 0.5. The graph's
resizing is scikit-image's bit for bit (test_graph_resize_matches_scikit_image), so the
molded inputs are detect()'s (test_graph_molding_equals_numpy_molding).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mrcnn import utils
from siamese_mrcnn import cli
from tests.helpers.processes import run_command, run_python
from tests.helpers.settled import settle

QUERY_SIZES = [(64, 64), (70, 90), (33, 47), (96, 64), (200, 150), (128, 128)]
REFERENCE_SIZES = [(24, 20), (40, 28), (31, 33)]
SET = ["--config", "tiny", "--set", "DETECTION_MIN_CONFIDENCE=0"]

# Runs in a fresh interpreter without the project: only tensorflow and numpy.
SERVE = r'''
import importlib.abc, json, sys
import numpy as np

class NoProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mrcnn", "siamese_mrcnn", "samples", "tests"):
            raise ImportError(f"{name} must not be needed to serve the model")
        return None

sys.meta_path.insert(0, NoProject())
repo = sys.argv[3]
sys.path = [p for p in sys.path if p not in (repo, repo + "/lib")]
import tensorflow as tf

served = tf.saved_model.load(sys.argv[1])
data = np.load(sys.argv[2] + "/inputs.npz")
out = {}
for name in data.files:
    if not name.startswith("query_"):
        continue
    query = tf.constant(data[name])
    for ref in sorted(n for n in data.files if n.startswith("reference_")):
        got = served.signatures["serving_default"](query=query,
                                                   reference=tf.constant(data[ref]))
        for key, value in got.items():
            out[f"{name}/{ref}/{key}"] = value.numpy()
        vectors = served.signatures["encode_reference"](reference=tf.constant(data[ref]))
        again = served.signatures["detect_with_reference"](query=query,
                                                           vectors=vectors["vectors"])
        for key, value in again.items():
            out[f"{name}/{ref}/again/{key}"] = value.numpy()
np.savez(sys.argv[2] + "/outputs.npz", **out)
print(json.dumps(sorted(served.signatures.keys())))
'''


def make_test_model(config):
    """A SiameseMaskRCNN (inference) with the weights described in the module doc."""
    import keras

    from siamese_mrcnn.model import SiameseMaskRCNN

    keras.utils.set_random_seed(3)
    model = SiameseMaskRCNN("inference", config, "unused_logs")
    settle(model, [0.0, 0.5])
    return model


def images(sizes, seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        image[h // 4:h // 2, w // 4:w // 2] = rng.integers(0, 256, 3)
        out.append(image)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The test model's weights, exported by the command line for K = 1 and K = 3."""
    from siamese_mrcnn.config import preset

    root = tmp_path_factory.mktemp("export")
    model = make_test_model(preset("tiny_eval", DETECTION_MIN_CONFIDENCE=0.0))
    model.save_weights(str(root / "w.h5"))
    for shots in (1, 3):
        assert cli.main(["export", "--model", str(root / "w.h5"), "--output",
                         str(root / f"k{shots}"), "--shots", str(shots), *SET]) == 0
    return root


def detector(root: Path, shots: int):
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN

    model = SiameseMaskRCNN("inference", preset("tiny_eval", DETECTION_MIN_CONFIDENCE=0.0,
                                                 NUM_TARGETS=shots), str(root / "logs"))
    model.load_weights(str(root / "w.h5"))
    return model


def assert_same_detections(served: dict, expected: dict, where: str) -> None:
    """Boxes within 1 px, scores within 1e-3, mask IoU >= 0.98, same count: detection
    by detection in score order (each image's scores are distinct)."""
    n = int(served["num_detections"])
    assert n == len(expected["scores"]), where
    np.testing.assert_allclose(served["scores"], expected["scores"], atol=1e-3,
                               err_msg=where)
    assert np.abs(served["boxes"] - expected["rois"]).max(initial=0) <= 1, where
    for i in range(n):
        a, b = served["masks"][i].astype(bool), expected["masks"][..., i]
        union = (a | b).sum()
        assert union == 0 or (a & b).sum() / union >= 0.98, (where, i)


@pytest.mark.parametrize("shots", [1, 3])
def test_served_model_without_the_project_detects_what_detect_does(exported, shots,
                                                                   tmp_path):
    queries = images(QUERY_SIZES, seed=0)
    references = images(REFERENCE_SIZES, seed=1)
    inputs = {f"query_{i}": q for i, q in enumerate(queries)}
    inputs["reference_0"] = references[0]  # [h, w, 3]: one reference, used K times
    if shots == 3:
        inputs["reference_1"] = np.stack([references[1]] * 3)  # [K, h, w, 3]
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = tmp_path / "serve.py"
    script.write_text(SERVE)
    repo = str(Path(__file__).resolve().parents[2])
    done = run_python([str(script), str(exported / f"k{shots}"), str(tmp_path), repo],
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [
        "detect_with_reference", "encode_reference", "serving_default"]
    served = np.load(tmp_path / "outputs.npz")

    model = detector(exported, shots)
    for name in (n for n in inputs if n.startswith("query_")):
        for ref in (n for n in inputs if n.startswith("reference_")):
            refs = list(inputs[ref]) if inputs[ref].ndim == 4 else [inputs[ref]] * shots
            expected = model.detect([refs], [inputs[name]])[0]
            got = {k: served[f"{name}/{ref}/{k}"] for k in
                   ("boxes", "scores", "masks", "num_detections")}
            assert got["masks"].shape[1:] == inputs[name].shape[:2]
            assert got["masks"].dtype == np.uint8 and got["boxes"].dtype == np.int32
            assert_same_detections(got, expected, f"{name} {ref}")
            for key in ("boxes", "scores", "masks", "num_detections"):
                np.testing.assert_allclose(served[f"{name}/{ref}/again/{key}"], got[key],
                                           atol=1e-5, err_msg=f"{name} {ref} {key}")


def test_graph_molding_equals_numpy_molding():
    """The test images are molded by the graph exactly as by detect()."""
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.export import SiameseServing
    from siamese_mrcnn.reference import mold_references

    model = make_test_model(preset("tiny_eval"))
    serving = SiameseServing(model)
    for query in images(QUERY_SIZES, seed=0):
        molded, metas, windows = model.mold_inputs([query])
        got, meta, window = serving.mold(tf.constant(query))
        np.testing.assert_allclose(got.numpy(), molded, atol=1e-4)
        np.testing.assert_array_equal(meta.numpy(), metas.astype(np.float32))  # fed as float32
        np.testing.assert_array_equal(window.numpy(), windows[0])
    for reference in images(REFERENCE_SIZES, seed=1):
        np.testing.assert_allclose(serving.mold_references(tf.constant(reference)).numpy(),
                                   mold_references([[reference]], model.config), atol=1e-4)


def test_graph_resize_matches_scikit_image():
    """mrcnn.export.resize_bilinear is utils.resize (scikit-image) bit for bit, eagerly
    and inside a tf.function (as served): up and down, odd sizes, flat regions (where a
    value that should be a whole grey level would otherwise truncate to the one below)."""
    from mrcnn.export import resize_bilinear

    rng = np.random.default_rng(0)
    # As served: sizes known only at run time (constant sizes would let grappler fold
    # and regroup the weight products, a last-bit difference).
    graph = tf.function(resize_bilinear, input_signature=[
        tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int32)])
    for (h, w), (oh, ow) in [((24, 20), (32, 27)), ((50, 120), (27, 64)),
                             ((70, 90), (50, 64)), ((33, 47), (45, 64)),
                             ((200, 150), (64, 48)), ((20, 20), (32, 32))]:
        for _ in range(2):
            image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
            image[h // 4:h // 2, w // 4:w // 2] = rng.integers(0, 256, 3)
            expected = utils.resize(image, (oh, ow), preserve_range=True)
            np.testing.assert_array_equal(resize_bilinear(tf.constant(image), oh, ow).numpy(),
                                          expected)
            np.testing.assert_array_equal(graph(tf.constant(image), oh, ow).numpy(), expected)


def test_plain_mask_rcnn_export_detects_what_detect_does(tmp_path):
    import keras

    from mrcnn import model as modellib
    from tests.helpers.shapes_dataset import tiny_config

    keras.utils.set_random_seed(5)
    model = modellib.MaskRCNN("inference", tiny_config(DETECTION_MIN_CONFIDENCE=0.0),
                              str(tmp_path))
    settle(model, [0.0, 0.5, 0.3, 0.1])
    path = model.export(tmp_path / "plain")  # a pathlib.Path was an AttributeError
    assert path == str(tmp_path / "plain")
    served = tf.saved_model.load(path).signatures["serving_default"]
    for image in images([(64, 64), (96, 64), (200, 150)], seed=2):
        got = {k: v.numpy() for k, v in served(image=tf.constant(image)).items()}
        expected = model.detect([image])[0]
        assert_same_detections(got, expected, str(image.shape))
        np.testing.assert_array_equal(got["class_ids"], expected["class_ids"])


def test_export_refuses_what_it_cannot_serve(tmp_path, monkeypatch):
    from mrcnn import model as modellib
    from tests.helpers.shapes_dataset import tiny_config

    training = modellib.MaskRCNN("training", tiny_config(), str(tmp_path))
    with pytest.raises(ValueError, match="inference mode"):
        training.export(str(tmp_path / "a"))
    batched = modellib.MaskRCNN("inference", tiny_config(IMAGES_PER_GPU=2), str(tmp_path))
    with pytest.raises(ValueError, match="BATCH_SIZE 1"):
        batched.export(str(tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    model = modellib.MaskRCNN("inference", tiny_config(), str(tmp_path))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"afile/new: .*afile is a file, not a "
                       r"folder"):  # was TensorFlow's FailedPreconditionError
        model.export(str(tmp_path / "afile" / "new"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="expected the path of a new folder, got ''"):
        model.export("")  # wrote ./.partial, then failed to rename it onto ''
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_export_asks_for_the_tensorflow_backend(exported, monkeypatch, capsys, tmp_path):
    """Under another Keras backend the SavedModel export is refused at once with the
    backend's name: both models' export() and the command line (one line, exit 2)."""
    import keras

    from mrcnn import model as modellib
    from tests.helpers.shapes_dataset import tiny_config

    models = [modellib.MaskRCNN("inference", tiny_config(), str(tmp_path)),
              detector(exported, 1)]
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    output = tmp_path / "out"
    for model in models:
        with pytest.raises(ValueError, match=r"export \(a TensorFlow SavedModel\) needs "
                                             r"the TensorFlow backend .*'torch'"):
            model.export(str(output))
    assert cli.main(["export", "--model", str(exported / "w.h5"), "--output", str(output),
                     *SET]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "needs the TensorFlow backend" in err[0] and "'torch'" in err[0]
    assert not output.exists() and not (tmp_path / "out.partial").exists()


def test_served_model_rejects_a_tiny_reference(exported):
    served = tf.saved_model.load(str(exported / "k1")).signatures["serving_default"]
    query = tf.constant(images([(64, 64)], seed=0)[0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 4x4"):
        served(query=query, reference=tf.zeros([1, 1, 3], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected 1 or 1 images"):
        served(query=query, reference=tf.zeros([2, 8, 8, 3], tf.uint8))


def test_saved_model_cli_lists_the_signatures(exported):
    cli_path = Path(sys.executable).with_name("saved_model_cli")
    done = run_command([cli_path, "show", "--dir", exported / "k1", "--all"], timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("serving_default", "encode_reference", "detect_with_reference", "query",
                 "reference", "vectors", "boxes", "scores", "masks", "num_detections"):
        assert name in done.stdout, name


EXPORT_ERRORS = {
    "missing weights": (["--model", "nope.h5"], "weights file not found"),
    "output exists": (["--output", "{root}"], "exists already"),
    "zero shots": (["--shots", "0"], "--shots must be >= 1"),
}


@pytest.mark.parametrize("case", list(EXPORT_ERRORS))
def test_export_command_errors_are_one_line(exported, case, capsys, tmp_path):
    options = {"--model": str(exported / "w.h5"), "--output": str(tmp_path / "new")}
    extra = []
    changes, expected = EXPORT_ERRORS[case]
    for key, value in zip(changes[::2], changes[1::2]):
        if key in options:
            options[key] = value.format(root=exported)
        else:
            extra += [key, value]
    argv = ["export"] + [v for k, value in options.items() for v in (k, value)] + extra
    assert cli.main(argv + SET) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "new").exists()


def test_export_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["export", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--output", "--shots", "--config", "--set", "serving_default",
                   "encode_reference", "detect_with_reference"):
        assert option in text, option
