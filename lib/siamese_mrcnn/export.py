"""SiameseMaskRCNN as a TensorFlow SavedModel that takes raw images (mrcnn.export does
the molding and unmolding in the graph). Three signatures:

- ``serving_default``: ``query`` uint8 [H, W, 3] and ``reference`` uint8 [K, h, w, 3]
  (or [h, w, 3] when K = 1) -> ``boxes`` int32 [N, 4] (y1, x1, y2, x2 in query pixels,
  y2 / x2 outside), ``scores`` [N], ``masks`` uint8 [N, H, W], ``num_detections``.
- ``encode_reference``: ``reference`` -> ``vectors`` float32 [5, C], the pooled P2..P6
  reference vectors.
- ``detect_with_reference``: ``query`` and ``vectors`` -> the outputs of
  serving_default, so one reference is encoded once for many queries.

K is the model's NUM_TARGETS; one reference given to a K-shot model is used K times,
as ``detect()`` does with ``[reference] * NUM_TARGETS``. A reference under 4 pixels on
a side is an error (InvalidArgumentError naming the size), as in ``detect()``.
"""
from __future__ import annotations

import tensorflow as tf

from mrcnn.export import MaskRCNNServing, resize_image_square, save
from siamese_mrcnn.reference import MIN_REFERENCE_SIDE

_IMAGE = tf.TensorSpec([None, None, 3], tf.uint8, name="query")
_REFERENCE = tf.TensorSpec(None, tf.uint8, name="reference")


class SiameseServing(MaskRCNNServing):
    """The serving graph of a SiameseMaskRCNN (see the module doc)."""

    def __init__(self, model):
        super().__init__(model)
        config = model.config
        self._references = {"k": int(config.NUM_TARGETS),
                            "min_dim": int(config.TARGET_MIN_DIM),
                            "max_dim": int(config.TARGET_MAX_DIM),
                            "min_scale": float(config.IMAGE_MIN_SCALE or 0),
                            "molding": bool(getattr(config, "REFERENCE_MOLDING", True))}
        self.reference_encoder = model.sub_model("reference_encoder")
        self.vector_detector = model.sub_model("vector_detector")

    def mold_references(self, reference: tf.Tensor) -> tf.Tensor:
        """[K, h, w, 3] or [h, w, 3] uint8 -> [1, k, T, T, 3] float32 (prepare_reference)."""
        r = self._references
        references = tf.reshape(reference, tf.concat([[-1], tf.shape(reference)[-3:]], 0))
        count = tf.shape(references)[0]
        references = tf.cond(count == 1, lambda: tf.repeat(references, r["k"], axis=0),
                             lambda: references)
        tf.debugging.assert_equal(
            tf.shape(references)[0], r["k"],
            message=f"reference: expected 1 or {r['k']} images (NUM_TARGETS)")
        tf.debugging.assert_greater_equal(
            tf.reduce_min(tf.shape(references)[1:3]), MIN_REFERENCE_SIDE,
            message=f"reference: expected at least {MIN_REFERENCE_SIDE}x"
                    f"{MIN_REFERENCE_SIDE} pixels")

        def one(image):
            resized, _, _ = resize_image_square(image, r["min_dim"], r["max_dim"],
                                                r["min_scale"])
            return resized

        side = r["max_dim"]
        resized = tf.map_fn(one, references,
                            fn_output_signature=tf.TensorSpec([side, side, 3], tf.uint8))
        molded = tf.cast(resized, tf.float32)
        if r["molding"]:
            molded = molded - self._mean
        return molded[None]

    @tf.function(input_signature=[_IMAGE, _REFERENCE])
    def serve(self, query, reference):
        molded, meta, window = self.mold(query)
        references = self.mold_references(reference)
        raw = self.keras_model([molded, meta, references, self._anchors], training=False)
        return _without_class_ids(self.outputs(raw, query, window))

    @tf.function(input_signature=[_REFERENCE])
    def encode_reference(self, reference):
        vectors = self.reference_encoder(self.mold_references(reference), training=False)
        return {"vectors": tf.concat(list(vectors), axis=0)}  # [5, C]

    @tf.function(input_signature=[_IMAGE, tf.TensorSpec([5, None], tf.float32,
                                                        name="vectors")])
    def detect_with_reference(self, query, vectors):
        molded, meta, window = self.mold(query)
        levels = [vectors[i][None] for i in range(5)]  # 5 x [1, C]
        raw = self.vector_detector([molded, meta, *levels, self._anchors], training=False)
        return _without_class_ids(self.outputs(raw, query, window))


def _without_class_ids(outputs: dict) -> dict:
    # Every Siamese detection is "the reference's category": no class ids to serve.
    return {k: v for k, v in outputs.items() if k != "class_ids"}


def export_siamese(model, path: str) -> str:
    """Writes the SiameseMaskRCNN's SavedModel with its three signatures."""
    module = SiameseServing(model)
    return save(module, path, {"serving_default": module.serve,
                               "encode_reference": module.encode_reference,
                               "detect_with_reference": module.detect_with_reference})


__all__ = ["SiameseServing", "export_siamese"]
