"""1. inference_over_dense: one full detect() over the forward pass of the model's dense
part (ResNet + FPN on query and reference, matching, RPN convolutions), with the
cumulative graph stages timed so the ratio can be broken down."""
from __future__ import annotations

from common import REPO  # noqa: F401,E402 - sets up sys.path

import keras  # noqa: E402
import numpy as np  # noqa: E402

from siamese_mrcnn.model import SiameseMaskRCNN  # noqa: E402
from siamese_mrcnn.reference import mold_references  # noqa: E402

from speed_setup import interleaved_seconds  # noqa: E402


def graph_stage_model(model: SiameseMaskRCNN, layer: str) -> keras.Model:
    """The inference graph cut at ``layer``'s output (all four inputs kept)."""
    inner = model.inner_model
    return keras.Model(inner.inputs, inner.get_layer(layer).output, name=f"to_{layer}")


def dense_model(model: SiameseMaskRCNN) -> keras.Model:
    """(image, references) -> (rpn_class, rpn_bbox): backbone, FPN, matching, RPN convs."""
    inner = model.inner_model
    image, _, target, _ = inner.inputs
    return keras.Model([image, target], [inner.get_layer("rpn_class").output,
                                         inner.get_layer("rpn_bbox").output], name="dense")


def bench_inference(model: SiameseMaskRCNN, query: np.ndarray, reference: np.ndarray,
                    repeats: int) -> dict:
    """detect() of one pair vs its dense part, plus the cumulative graph stages."""
    config = model.config
    molded_images, image_metas, _ = model.mold_inputs([query])
    molded_targets = mold_references([reference], config)
    anchors = model._batch_anchors(molded_images[0].shape)
    graph_inputs = [molded_images, image_metas, molded_targets, anchors]

    dense = dense_model(model)
    to_proposals = graph_stage_model(model, "ROI")
    to_detections = graph_stage_model(model, "mrcnn_detection")
    results = []
    # Cumulative stages: each includes everything before it.
    timed = interleaved_seconds({
        "dense": lambda: dense.predict_on_batch([molded_images, molded_targets]),
        "to_proposals": lambda: to_proposals.predict_on_batch(graph_inputs),
        "to_detections": lambda: to_detections.predict_on_batch(graph_inputs),
        "graph": lambda: model.inner_model.predict_on_batch(graph_inputs),
        "detect": lambda: results.append(model.detect([reference], [query])),
    }, repeats)
    seconds = {name: t["median"] for name, t in timed.items()}
    dense_s = seconds["dense"]
    return {
        "inference_over_dense": seconds["detect"] / dense_s,
        "seconds": seconds,
        "seconds_min": {name: t["min"] for name, t in timed.items()},
        "added_over_dense": {
            "proposals (RPN decode, NMS)": (seconds["to_proposals"] - dense_s) / dense_s,
            "ROI align + classifier head + detection layer":
                (seconds["to_detections"] - seconds["to_proposals"]) / dense_s,
            "ROI align + mask head": (seconds["graph"] - seconds["to_detections"]) / dense_s,
            "molding + unmolding (Python)": (seconds["detect"] - seconds["graph"]) / dense_s,
        },
        "detections_per_image": int(len(results[-1][0]["scores"])),
    }
