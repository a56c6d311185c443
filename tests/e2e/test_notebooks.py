"""notebooks/: stored clean, and run top to bottom headless on a tiny generated data set.

train.ipynb runs first (one epoch of 2 steps, SIAMESE_NB_QUICK=1) and writes the
checkpoint that evaluate.ipynb and demo.ipynb then load. The kernel is this interpreter
(a temporary kernelspec), started in the repository root; the executed copies are
written to the temporary directory, never into notebooks/.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from samples.shapes.generate import generate_dataset

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("train", "evaluate", "demo")
KERNEL_NAME = "siamese-notebooks-test"
# The quick-start model's log directory under SIAMESE_NB_LOGS.
LOG_SUBDIR = "siamese_mrcnn_shapes_quickstart"
CELL_TIMEOUT_S = 600

pytestmark = pytest.mark.slow


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


# ------------------------------------------------------------------- stored notebooks

@pytest.mark.parametrize("name", NAMES)
def test_stored_notebook_is_clean_and_starts_with_the_settings(name):
    nb = _read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name}.ipynb has no code cell"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, (
            f"{name}.ipynb is stored with outputs: clear them before committing")
    settings = code[0].source
    for variable in ("DATA_DIR", "LOGS_DIR", "CHECKPOINT", "QUICK", "SIAMESE_NB_DATA",
                     "SIAMESE_NB_LOGS", "SIAMESE_NB_CHECKPOINT", "SIAMESE_NB_QUICK"):
        assert variable in settings, f"{name}.ipynb: the first code cell lacks {variable}"
    assert nb.cells[0].cell_type == "markdown"
    assert nb.metadata["kernelspec"]["name"] == "python3"


# ---------------------------------------------------------------- executed notebooks

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Data set, logs, results and kernelspec under one temporary directory; the
    environment the kernels inherit (SIAMESE_NB_*, JUPYTER_PATH) is set meanwhile."""
    tmp = tmp_path_factory.mktemp("notebooks")
    paths = {key: tmp / key for key in ("data", "logs", "results", "executed")}
    generate_dataset(paths["data"], n_train=40, n_val=12, seed=0, size=128, workers=1)
    kernel_dir = tmp / "jupyter" / "kernels" / KERNEL_NAME
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (test)", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
        mp.setenv("IPYTHONDIR", str(tmp / "ipython"))
        mp.setenv("SIAMESE_NB_DATA", str(paths["data"]))
        mp.setenv("SIAMESE_NB_LOGS", str(paths["logs"]))
        mp.setenv("SIAMESE_NB_RESULTS", str(paths["results"]))
        mp.setenv("SIAMESE_NB_CHECKPOINT", "")
        mp.setenv("SIAMESE_NB_QUICK", "1")
        yield paths


def _execute(name: str, workspace: dict) -> nbformat.NotebookNode:
    """Runs a notebook top to bottom; a failing cell raises CellExecutionError."""
    nb = _read(name)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": str(ROOT)}})
    start = time.perf_counter()
    client.execute()
    nb.metadata["test_seconds"] = round(time.perf_counter() - start, 1)
    workspace["executed"].mkdir(exist_ok=True)
    nbformat.write(nb, workspace["executed"] / f"{name}.ipynb")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, f"{name}.ipynb: {errors[0].ename}: {errors[0].evalue}"
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    """Everything the code cells printed or returned as text."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif "data" in output and "text/plain" in output.data:
                parts.append(output.data["text/plain"])
    return "\n".join(parts)


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {})
               for cell in nb.cells for output in cell.get("outputs", []))


def _epoch_row(text: str, epoch: int) -> tuple:
    """(loss, val_loss, learning rate) of train.ipynb's epoch table."""
    rows = re.findall(rf"^\s*{epoch}\s+([-\d.e+]+)\s+([-\d.e+na]+)\s+([\d.]+)$", text,
                      flags=re.MULTILINE)
    assert len(rows) == 1, f"expected one table row for epoch {epoch}, got {rows}"
    return tuple(float(v) for v in rows[0])


@pytest.fixture(scope="module")
def trained(workspace):
    return _execute("train", workspace)


def test_train_notebook_writes_a_checkpoint_and_plots_the_losses(trained, workspace):
    log_dir = workspace["logs"] / LOG_SUBDIR
    assert (log_dir / "siamese_mrcnn_0001.h5").is_file()
    assert sorted(p.name for p in log_dir.glob("*.h5")) == ["siamese_mrcnn_0001.h5"]
    text = _text(trained)
    assert "no checkpoint yet: training from scratch" in text
    assert "trained to epoch 1" in text
    assert str(log_dir / "siamese_mrcnn_0001.h5") in text
    # The epoch table read back from the event files: epoch 1, finite losses.
    loss, val_loss, lr = _epoch_row(text, 1)
    assert loss > 0 and val_loss >= 0 and lr == pytest.approx(0.02)
    assert (workspace["results"] / "train_losses.png").stat().st_size > 0
    assert _images(trained) == 1


def test_evaluate_notebook_reports_the_protocol_and_writes_the_figures(trained, workspace):
    nb = _execute("evaluate", workspace)
    text = _text(nb)
    results = workspace["results"]
    for setting in ("one-shot", "background", "random boxes"):
        line = next(x for x in text.splitlines() if x.startswith(setting + " "))
        assert line.count("[") == 2, line  # boxes and masks, each with its interval
        stored = json.loads((results / f"evaluation_{setting.replace(' ', '_')}.json")
                            .read_text())
        assert stored["runs"] == 1 and set(stored["eval_types"]) == {"bbox", "segm"}
    # The per-category table lists all 24 categories, each once, with its split.
    table = [row for row in (line.split() for line in text.splitlines())
             if len(row) == 5 and row[0].isdigit() and row[2] in ("one-shot", "background")]
    assert sorted(int(r[0]) for r in table) == list(range(1, 25))
    held_out = sorted(int(r[0]) for r in table if r[2] == "one-shot")
    assert held_out == [1, 5, 9, 13, 17, 21]
    for name in ("confusion_bbox.png", "most_confused_bbox.png", "ap50_by_instances.png",
                 "confusion_bbox.csv", "ap50_by_instances.json"):
        assert (results / name).stat().st_size > 0, name
    # The confusion matrix covers the categories that have an instance in val2017.
    val = json.loads((workspace["data"] / "annotations" / "instances_val2017.json")
                     .read_text())
    present = sorted({a["category_id"] for a in val["annotations"]})
    confusion = json.loads((results / "confusion_bbox.json").read_text())
    assert confusion["class_ids"] == present  # category ids are 1..24 in both numberings
    assert len(confusion["matrix"]["bbox"]) == len(present)
    assert _images(nb) == 3  # confusion matrix, most confused, AP50 by instances


def test_demo_notebook_detects_and_draws(trained, workspace):
    nb = _execute("demo", workspace)
    text = _text(nb)
    assert "held out" in text and "reference vectors: [(1, 64)" in text
    for name in ("demo_detections.png", "demo_own_reference.png", "demo_grid.png"):
        assert (workspace["results"] / name).stat().st_size > 0, name
    # detections, the crop, own-reference detections, the grid: each once (display_grid
    # returns None, as the paper's did; a returned figure is shown a second time)
    assert _images(nb) == 4


def test_train_notebook_run_again_resumes_and_has_nothing_left_to_do(trained, workspace):
    log_dir = workspace["logs"] / LOG_SUBDIR
    before = (log_dir / "siamese_mrcnn_0001.h5").stat().st_mtime_ns
    text = _text(_execute("train", workspace))
    assert "resuming after epoch 1" in text and "trained to epoch 1" in text
    assert sorted(p.name for p in log_dir.glob("*.h5")) == ["siamese_mrcnn_0001.h5"]
    assert (log_dir / "siamese_mrcnn_0001.h5").stat().st_mtime_ns == before
    # The loss table still comes from the first run's logs.
    assert _epoch_row(text, 1) == _epoch_row(_text(trained), 1)
