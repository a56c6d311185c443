"""Every command line sets TF_CPP_MIN_LOG_LEVEL before TensorFlow can be imported, so
that its C++ start-up lines and the first detection's eight "PredictCost" warnings
(README, "Still different") stay out of the user's terminal."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINTS = ["samples/coco/coco.py", "samples/coco/train_siamese.py",
                "samples/shapes/quickstart.py", "samples/imagenet/pretrain.py",
                "lib/siamese_mrcnn/__main__.py", "lib/siamese_mrcnn/app/__main__.py"]
# Importing any of these may import TensorFlow.
LOUD = ("tensorflow", "keras", "mrcnn", "siamese_mrcnn", "samples")


def _quiet_line(tree: ast.Module) -> int | None:
    for node in tree.body:
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and "TF_CPP_MIN_LOG_LEVEL" in ast.unparse(node.value)
                and ast.unparse(node.value.func).endswith("environ.setdefault")):
            return node.lineno
    return None


def _first_loud_import(tree: ast.Module) -> int | None:
    for node in tree.body:  # module level: what runs before main()
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(name.split(".")[0] in LOUD for name in names):
            return node.lineno
    return None


@pytest.mark.parametrize("path", ENTRY_POINTS)
def test_the_log_level_is_set_before_tensorflow_can_load(path):
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    quiet, loud = _quiet_line(tree), _first_loud_import(tree)
    assert quiet is not None, f"{path} never sets TF_CPP_MIN_LOG_LEVEL"
    assert loud is None or quiet < loud, (
        f"{path}: line {loud} imports the project (and TensorFlow) before line {quiet} "
        "sets TF_CPP_MIN_LOG_LEVEL")


def test_the_checker_sees_a_late_setting():
    late = ast.parse("import os\nfrom mrcnn import model\n"
                     "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')\n")
    assert _first_loud_import(late) == 2 and _quiet_line(late) == 3
