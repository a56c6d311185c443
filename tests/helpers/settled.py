"""Random weights that give well-formed detections, for tests that compare two ways of
running the same model (exported graph, detect(), search)."""
from __future__ import annotations

import numpy as np


def settle(model, class_bias) -> None:
    """Random weights, made to give well-formed detections: no box regression (RPN or
    head), so every detection is an anchor box; class logits scaled down and biased, so
    scores are distinct and above 0.5. (Random box deltas give boxes a pixel thin, whose
    ROI-aligned features change with the last bit of the arithmetic.)"""
    for layer in _layers(model.keras_model):
        if layer.name in ("rpn_bbox_pred", "mrcnn_bbox_fc"):
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
        if layer.name == "mrcnn_class_logits":
            kernel, _ = layer.get_weights()
            layer.set_weights([kernel * 0.01, np.asarray(class_bias, np.float32)])


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)
        if hasattr(layer, "layer"):  # TimeDistributed
            yield layer.layer
