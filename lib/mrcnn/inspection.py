"""Named intermediate values for run_graph: Matterport's ``model.ancestor()``.

Matterport's inspect_model notebook reads tensors inside the proposal layer by their
TF1 graph names (``model.ancestor(pillar, "ROI/refined_anchors:0")``) and passes them
to ``run_graph``. Keras 3 layers have no such inner graph nodes, so ``ancestor``
returns a ``LayerStage`` naming the layer and the value, and ``run_graph`` computes it
from the layer's inputs with the layer's ``stages()`` method (e.g.
ProposalLayer.stages). ``log`` is Matterport's array printer (``modellib.log``).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np


def log(text: str, array: np.ndarray | None = None) -> None:
    """Prints a text message and, optionally, an array's shape, min, max and dtype.

    A display helper for notebooks (Matterport's), hence print rather than logging.
    """
    if array is not None:
        text = text.ljust(25)
        text += "shape: {:20}  ".format(str(array.shape))
        if array.size:
            text += "min: {:10.5f}  max: {:10.5f}".format(array.min(), array.max())
        else:
            text += "min: {:10}  max: {:10}".format("", "")
        text += "  {}".format(array.dtype)
    print(text)


# The graph node names that inspect_model asks for -> the stage that holds the value.
# NMS had three names over TF 1.3 .. 1.10; the notebook tries them in turn.
STAGE_ALIASES = {
    "pre_nms_anchors": "pre_nms_anchors",
    "refined_anchors": "refined_anchors",
    "refined_anchors_clipped": "refined_anchors_clipped",
    "rpn_non_max_suppression": "post_nms_anchor_ix",
    "rpn_non_max_suppression/NonMaxSuppressionV2": "post_nms_anchor_ix",
    "rpn_non_max_suppression/NonMaxSuppressionV3": "post_nms_anchor_ix",
    "post_nms_anchor_ix": "post_nms_anchor_ix",
}


class LayerStage(NamedTuple):
    """An intermediate value of a layer with a ``stages(inputs) -> dict`` method."""
    layer: str   # the layer's name in the model, e.g. "ROI"
    stage: str   # the key of stages()' result, e.g. "refined_anchors"


def parse_stage_name(name: str) -> Optional[LayerStage]:
    """'ROI/refined_anchors:0' -> LayerStage('ROI', 'refined_anchors'); None when the
    name is not one of STAGE_ALIASES."""
    if not isinstance(name, str) or "/" not in name:
        return None
    layer, node = name.split("/", 1)
    node = node.rsplit(":", 1)[0]
    stage = STAGE_ALIASES.get(node)
    return None if stage is None else LayerStage(layer, stage)


def known_stage_names() -> list:
    """The names ancestor() understands, for error messages."""
    return [f"ROI/{alias}:0" for alias in STAGE_ALIASES]


def find_stage(model: Any, name: str) -> Optional[LayerStage]:
    """The LayerStage for `name` in a Keras model, or None (unknown name, no such
    layer, or a layer without stages()), as Matterport's ancestor returned None."""
    stage = parse_stage_name(name)
    if stage is None:
        return None
    try:
        layer = model.get_layer(stage.layer)
    except ValueError:
        return None
    return stage if callable(getattr(layer, "stages", None)) else None


def stage_inputs(model: Any, layer_name: str) -> list:
    """The symbolic inputs of a stage's layer (a layer called once in the model)."""
    inputs = model.get_layer(layer_name).input
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]


def compute_stages(model: Any, stages: dict, input_values: dict) -> dict:
    """{output name: value} for the LayerStage outputs of run_graph.

    stages: {output name: LayerStage}; input_values: {layer name: [arrays fed to it]}.
    Each layer's stages() runs once.
    """
    computed: dict = {}
    result = {}
    for output_name, stage in stages.items():
        if stage.layer not in computed:
            layer = model.get_layer(stage.layer)
            computed[stage.layer] = layer.stages(input_values[stage.layer])
        result[output_name] = computed[stage.layer][stage.stage]
    return result
