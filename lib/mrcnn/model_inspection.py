"""MaskRCNN's inspection: run_graph and ancestor, what Matterport's inspect_model
notebook uses to look at intermediate values.

``InspectionMixin`` is one of MaskRCNN's bases (mrcnn.model); it reads ``self.mode``,
``self.inner_model``, ``mold_inputs``, ``get_anchors`` and the uncached ``_sub_model``
from it.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import keras
import numpy as np

from mrcnn import tracing
from mrcnn.inspection import (LayerStage, compute_stages, find_stage, known_stage_names,
                              log, stage_inputs)


class InspectionMixin:
    """run_graph and its helpers (see the module doc)."""

    def ancestor(self, tensor, name: str, checked: list | None = None):
        """Finds an intermediate value by its Matterport (TF1) graph name, for run_graph.

        Known: the proposal layer's "ROI/pre_nms_anchors:0", "ROI/refined_anchors:0",
        "ROI/refined_anchors_clipped:0" and "ROI/rpn_non_max_suppression:0" (also its
        .../NonMaxSuppressionV2:0 and V3:0 names), what inspect_model reads. Returns a
        LayerStage that run_graph computes, or None for other names, as Matterport
        returned None for a name it did not find. `tensor` and `checked` are accepted
        for the old signature; Keras 3 layers have no inner graph to walk.
        """
        return find_stage(self.inner_model, name)

    def find_trainable_layer(self, layer):
        """Returns the wrapped layer for TimeDistributed wrappers, else the layer."""
        inner = getattr(layer, "layer", None)
        return self.find_trainable_layer(inner) if inner is not None else layer

    def _run_graph_feed(self, images, image_metas, **extra) -> tuple[list, list]:
        """(graph inputs, arrays to feed them) for run_graph.

        In training mode only the image and its meta are fed: the ground-truth inputs
        are not available here, as in Matterport.
        """
        model = self.inner_model
        if image_metas is None:
            molded_images, image_metas, _ = self.mold_inputs(images)
        else:
            molded_images = np.asarray(images)
        model_in = [molded_images, np.asarray(image_metas)]
        if self.mode == "inference":
            anchors = self.get_anchors(molded_images[0].shape)
            model_in.append(np.broadcast_to(anchors, (len(molded_images),) + anchors.shape))
            return model.inputs, model_in
        return model.inputs[:2], model_in

    def run_graph(self, images: Sequence[np.ndarray], outputs: list[tuple[str, Any]],
                  image_metas: np.ndarray | None = None, **extra) -> OrderedDict:
        """Runs a sub-graph and returns the named intermediate tensors as numpy arrays.

        outputs: [(name, keras_tensor), ...], e.g.
        ``[("proposals", model.keras_model.get_layer("ROI").output)]``.
        images: raw images (molded here), or molded ones when image_metas is given.
        In training mode only tensors that depend on the inputs fed (backbone, FPN, RPN,
        proposals) can be run, as in Matterport.
        """
        outputs = OrderedDict(outputs)
        missing = [k for k, v in outputs.items() if v is None]
        if missing:
            raise ValueError(
                f"run_graph: outputs {missing} are None: model.ancestor() returns None for "
                f"names it does not know; it knows {known_stage_names()}")
        if not outputs:
            raise ValueError("run_graph: expected at least one (name, tensor) output, got "
                             "none")
        stages = {k: v for k, v in outputs.items() if isinstance(v, LayerStage)}
        tensors = {k: v for k, v in outputs.items() if k not in stages}
        not_tensors = {k: v for k, v in tensors.items()
                       if not isinstance(v, keras.KerasTensor)}
        if not_tensors:
            # A layer's name in place of its output: Keras then spoke of "KerasTensors".
            raise ValueError(
                f"run_graph: expected (name, tensor) pairs with this model's tensors, e.g. "
                f"model.keras_model.get_layer('ROI').output; got "
                f"{ {k: type(v).__name__ for k, v in not_tensors.items()} }")
        # A stage is computed from its layer's inputs: fetch those as well.
        stage_layers = sorted({s.layer for s in stages.values()})
        stage_tensors = {name: stage_inputs(self.inner_model, name) for name in stage_layers}
        fetch = list(tensors.values()) + [t for name in stage_layers
                                          for t in stage_tensors[name]]
        inputs, model_in = self._run_graph_feed(images, image_metas, **extra)
        try:
            sub_model = self._sub_model(inputs, fetch)
        except ValueError as error:
            raise ValueError(
                f"run_graph in {self.mode} mode feeds only {[t.name for t in inputs]}; "
                f"the outputs {list(outputs)} need other inputs ({error})") from error
        values = tracing.predict_on_batch(sub_model, model_in)
        if not isinstance(values, (list, tuple)):
            values = [values]
        values = [np.asarray(v) for v in values]
        fetched = dict(zip(tensors.keys(), values))
        position = len(tensors)
        stage_values = {}
        for name in stage_layers:
            count = len(stage_tensors[name])
            stage_values[name] = values[position:position + count]
            position += count
        fetched.update(compute_stages(self.inner_model, stages, stage_values))
        result = OrderedDict((k, np.asarray(fetched[k])) for k in outputs)
        for k, v in result.items():
            log(k, v)
        return result
