"""The Siamese class loss on hand-made inputs, and the LossLayer that finds it by its
dotted name (so a saved graph reloads without project-specific registration)."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn.graph_layers import LossLayer
from siamese_mrcnn.losses import CLASS_LOSS_NAME, siamese_mrcnn_class_loss_graph

LN2, LN3 = np.log(2.0), np.log(3.0)


def both(fn, *args):
    """fn(*args) eagerly and traced; asserts they agree and returns the value."""
    eager = float(fn(*args))
    traced = float(tf.function(fn)(*args))
    assert eager == pytest.approx(traced, rel=1e-6, abs=1e-7)
    return eager


def test_siamese_class_loss_is_plain_mean_cross_entropy():
    target = np.array([[1, 0, 0]], np.int32)
    logits = np.array([[[0, LN3], [LN3, 0], [0, 0]]], np.float32)
    expected = (2 * -np.log(0.75) + LN2) / 3
    assert both(siamese_mrcnn_class_loss_graph, target, logits) == pytest.approx(expected,
                                                                               rel=1e-5)
    assert both(siamese_mrcnn_class_loss_graph, np.zeros((1, 0), np.int32),
                np.zeros((1, 0, 2), np.float32)) == 0.0



def test_loss_layer_finds_the_siamese_loss_by_its_dotted_name():
    target = np.array([[1, 0, 0]], np.int32)
    logits = np.array([[[0, LN3], [LN3, 0], [0, 0]]], np.float32)
    layer = LossLayer(CLASS_LOSS_NAME, name="mrcnn_class_loss")
    expected = (2 * -np.log(0.75) + LN2) / 3
    assert float(layer([target, logits])) == pytest.approx(expected, rel=1e-5)
    clone = LossLayer.from_config(layer.get_config())
    assert clone.loss_fn == CLASS_LOSS_NAME
    assert float(clone([target, logits])) == pytest.approx(expected, rel=1e-5)


def test_paper_code_import_path_still_works():
    # The paper code defined the loss in its model module (lib/model.py).
    from siamese_mrcnn import model as siamese_model
    assert siamese_model.siamese_mrcnn_class_loss_graph is siamese_mrcnn_class_loss_graph
