"""MaskRCNN's inference: molding, the two detection stages, detect(), sub-models.

``InferenceMixin`` is one of MaskRCNN's bases (mrcnn.model); it reads ``self.config``,
``self.mode``, ``self.keras_model``, ``with_masks()`` and ``SUB_MODELS`` from it.

The entry points form one family. ``detect(images)`` (raw images) and
``detect_molded(molded_images, image_metas)`` mold their inputs and call
``predict_detections`` (the graph's raw detections and masks) then ``unmold_batch``
(boxes and masks in image coordinates); a subclass may change the detections between
the two (the Siamese random-boxes baseline does). Sub-graphs that a subclass runs on
their own (the Siamese reference encoder, ...) are named in ``SUB_MODELS`` and built
once by ``sub_model(name)``; they share the model's layers and weights.
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np

from mrcnn import backend_ops, tracing, utils
from mrcnn.backbone import compute_backbone_shapes
from mrcnn.molding import check_image, compose_image_meta, mold_image
from mrcnn.inspection import log


class InferenceMixin:
    """Inference methods of MaskRCNN (see the module doc)."""

    def mold_inputs(self, images: Sequence[np.ndarray]):
        """Resizes and normalizes images for the network.

        Returns molded_images [N, h, w, 3], image_metas [N, META], windows [N, 4] (pixels,
        the part of the molded image that holds the original image).
        """
        mode = self.config.IMAGE_RESIZE_MODE
        if mode == "crop":
            # resize_image would detect in one random crop of each image.
            raise ValueError("IMAGE_RESIZE_MODE 'crop' takes a random crop and is for "
                             "training only: set 'square' or 'pad64' in the inference "
                             "config")
        molded_images, image_metas, windows = [], [], []
        for i, image in enumerate(images):
            image = check_image(image, name=f"images[{i}]")
            if mode == "none" and (image.shape[0] % 32 or image.shape[1] % 32):
                # The FPN adds levels upsampled from stride 32: the graph failed there.
                raise ValueError(
                    f"images[{i}]: IMAGE_RESIZE_MODE 'none' feeds images unresized: "
                    f"expected a height and width divisible by 32, got "
                    f"{image.shape[0]}x{image.shape[1]}; or use 'pad64'")
            molded_image, window, scale, padding, crop = utils.resize_image(
                image,
                min_dim=self.config.IMAGE_MIN_DIM,
                min_scale=self.config.IMAGE_MIN_SCALE,
                max_dim=self.config.IMAGE_MAX_DIM,
                mode=self.config.IMAGE_RESIZE_MODE)
            molded_image = mold_image(molded_image, self.config)
            image_meta = compose_image_meta(0, image.shape, molded_image.shape, window, scale,
                                            np.zeros([self.config.NUM_CLASSES], dtype=np.int32))
            molded_images.append(molded_image)
            windows.append(window)
            image_metas.append(image_meta)
        shapes = sorted({m.shape for m in molded_images})
        if len(shapes) > 1:
            raise ValueError("After resizing, all images must have the same size. Check "
                             f"IMAGE_RESIZE_MODE and image sizes (got {shapes})")
        return np.stack(molded_images), np.stack(image_metas), np.stack(windows)

    def unmold_boxes(self, detections: np.ndarray, original_image_shape, image_shape,
                     window) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One image's detections as boxes in the original image's pixels.

        detections: [N, (y1, x1, y2, x2, class_id, score)] normalized, zero-padded.
        Returns boxes [n, 4] int, class_ids [n], scores [n] and rows [n], the indices
        of the kept detections (padding and zero-area boxes dropped).
        """
        zero_ix = np.where(detections[:, 4] == 0)[0]
        N = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
        rows = np.arange(N)
        boxes = detections[:N, :4]
        class_ids = detections[:N, 4].astype(np.int32)
        scores = detections[:N, 5]

        # Window to normalized coordinates, then boxes relative to the window.
        window = utils.norm_boxes(window, image_shape[:2])
        wy1, wx1, wy2, wx2 = window
        shift = np.array([wy1, wx1, wy1, wx1])
        wh = wy2 - wy1
        ww = wx2 - wx1
        scale = np.array([wh, ww, wh, ww])
        boxes = np.divide(boxes - shift, scale)
        boxes = utils.denorm_boxes(boxes, original_image_shape[:2])

        # Drop zero-area boxes (possible in early training).
        keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
        return boxes[keep], class_ids[keep], scores[keep], rows[keep]

    def unmold_detections(self, detections, mrcnn_mask, original_image_shape, image_shape,
                          window):
        """Turns one image's detections into boxes, class ids, scores and full masks.

        detections: [N, (y1, x1, y2, x2, class_id, score)] normalized.
        mrcnn_mask: [N, height, width, num_classes].
        Returns boxes [N, 4] pixels of the original image, class_ids [N], scores [N],
        masks [height, width, N] bool.
        """
        boxes, class_ids, scores, rows = self.unmold_boxes(
            detections, original_image_shape, image_shape, window)
        masks = mrcnn_mask[rows, :, :, class_ids]  # [n, h, w]
        full_masks = [utils.unmold_mask(masks[i], boxes[i], original_image_shape)
                      for i in range(len(rows))]
        full_masks = (np.stack(full_masks, axis=-1) if full_masks
                      else np.empty(original_image_shape[:2] + (0,), dtype=bool))
        return boxes, class_ids, scores, full_masks

    def _check_batch(self, items: Sequence, what: str) -> None:
        if not isinstance(items, (list, tuple, np.ndarray)):
            raise ValueError(f"{what} must be a list of {self.config.BATCH_SIZE} arrays, "
                             f"got {type(items).__name__}")
        if len(items) != self.config.BATCH_SIZE:
            # An [H, W, C] array is one image, whose len() is its height.
            hint = (f" (one array of shape {items.shape}: a single image goes in a list, "
                    f"[image])" if isinstance(items, np.ndarray) and items.ndim in (2, 3)
                    else "")
            raise ValueError(f"len({what}) must be equal to BATCH_SIZE "
                             f"({self.config.BATCH_SIZE}), got {len(items)}{hint}")

    def _batch_anchors(self, image_shape) -> np.ndarray:
        """[BATCH_SIZE, num_anchors, 4] normalized anchors for the molded image shape."""
        anchors = self.get_anchors(image_shape)
        return np.broadcast_to(anchors, (self.config.BATCH_SIZE,) + anchors.shape)

    # Detection runs in two stages, so that a caller can edit the raw detections in
    # between (the Siamese random-boxes baseline does): predict_detections, then
    # unmold_batch.
    def predict_detections(self, model_inputs: list, model: keras.Model | None = None
                           ) -> tuple[np.ndarray, np.ndarray | None]:
        """Runs the inference graph, or a sub_model() with the same outputs.

        Returns detections [batch, N, (y1, x1, y2, x2, class_id, score)] normalized and
        mrcnn_mask [batch, N, h, w, num_classes] (None where with_masks() is False).
        """
        outputs = tracing.predict_on_batch(model or self.keras_model, model_inputs)
        detections = np.asarray(outputs[0])
        mrcnn_mask = np.asarray(outputs[3]) if self.with_masks(self.config) else None
        if mrcnn_mask is not None and mrcnn_mask.dtype.itemsize < 4:
            # bfloat16 (mixed_bfloat16) is no numpy type that scikit-image resizes;
            # float16 and bfloat16 both widen to float32 exactly.
            mrcnn_mask = mrcnn_mask.astype(np.float32)
        return detections, mrcnn_mask

    def unmold_batch(self, detections: np.ndarray, mrcnn_mask: np.ndarray | None,
                     molded_images: np.ndarray, windows: np.ndarray,
                     original_shapes: Sequence) -> list[dict]:
        """unmold_detections for each image of a batch, as detect()'s result dicts."""
        results = []
        for i, original_shape in enumerate(original_shapes):
            masks = mrcnn_mask[i] if mrcnn_mask is not None else None
            rois, class_ids, scores, full_masks = self.unmold_detections(
                detections[i], masks, original_shape, molded_images[i].shape, windows[i])
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores,
                            "masks": full_masks})
        return results

    def _detect(self, model_inputs: list, molded_images: np.ndarray, windows: np.ndarray,
                original_shapes: Sequence, model: keras.Model | None = None) -> list[dict]:
        detections, mrcnn_mask = self.predict_detections(model_inputs, model)
        return self.unmold_batch(detections, mrcnn_mask, molded_images, windows,
                                 original_shapes)

    def _check_inference(self) -> None:
        if self.mode != "inference":
            raise ValueError(f"Create model in inference mode to detect (got {self.mode!r})")

    def detect(self, images: Sequence[np.ndarray], verbose: int = 0) -> list[dict]:
        """Runs detection on BATCH_SIZE images of any size.

        Returns one dict per image: rois [N, (y1, x1, y2, x2)], class_ids [N],
        scores [N], masks [H, W, N] bool, in the original image's coordinates.
        """
        self._check_inference()
        self._check_batch(images, "images")
        images = [check_image(image, name=f"images[{i}]") for i, image in enumerate(images)]
        if verbose:
            log("Processing {} images".format(len(images)))
            for image in images:
                log("image", image)
        molded_images, image_metas, windows = self.mold_inputs(images)
        image_shape = molded_images[0].shape
        for g in molded_images[1:]:
            if g.shape != image_shape:
                raise ValueError("After resizing, all images must have the same size. "
                                 "Check IMAGE_RESIZE_MODE and image sizes.")
        anchors = self._batch_anchors(image_shape)
        if verbose:
            log("molded_images", molded_images)
            log("image_metas", image_metas)
            log("anchors", anchors)
        return self._detect([molded_images, image_metas, anchors], molded_images, windows,
                            [image.shape for image in images])

    def detect_molded(self, molded_images: np.ndarray, image_metas: np.ndarray,
                      verbose: int = 0) -> list[dict]:
        """Runs detection on images already molded (e.g. from load_image_gt + mold_image).

        Boxes and masks are returned in the molded image's coordinates.
        """
        self._check_inference()
        self._check_batch(molded_images, "molded_images")
        molded_images = np.asarray(molded_images)
        image_shape = molded_images[0].shape
        windows = np.array([[0, 0, image_shape[0], image_shape[1]]] * len(molded_images))
        return self._detect(
            [molded_images, np.asarray(image_metas), self._batch_anchors(image_shape)],
            molded_images, windows, [image_shape] * len(molded_images))

    def get_anchors(self, image_shape) -> np.ndarray:
        """Returns the normalized anchor pyramid for the given image shape (cached)."""
        backbone_shapes = compute_backbone_shapes(self.config, image_shape)
        key = tuple(image_shape)
        if key not in self._anchor_cache:
            a = utils.generate_pyramid_anchors(
                self.config.RPN_ANCHOR_SCALES, self.config.RPN_ANCHOR_RATIOS, backbone_shapes,
                self.config.BACKBONE_STRIDES, self.config.RPN_ANCHOR_STRIDE)
            # Kept in pixels too for visualisation, as Matterport does.
            self.anchors = a
            self._anchor_cache[key] = utils.norm_boxes(a, image_shape[:2]).astype(np.float32)
        return self._anchor_cache[key]

    def sub_model(self, name: str) -> keras.Model:
        """The inference sub-model ``name`` (one of SUB_MODELS), built on first use.

        A sub-model runs between two sets of tensors of this model's inference graph and
        shares its layers, so it sees the weights loaded later too. This is the one
        cache of sub-models; it lives as long as keras_model. Under ParallelModel a
        sub-model is wrapped the same way, so that predict_on_batch splits its batch into
        IMAGES_PER_GPU per replica (the graph's per-image loops need it).
        """
        self._check_inference()
        if name not in self._sub_models:
            if name not in self.SUB_MODELS:
                raise ValueError(f"sub_model: unknown name {name!r}; {type(self).__name__} "
                                 f"has {sorted(self.SUB_MODELS) or 'none'}")
            inputs, outputs = self.sub_model_tensors(name)
            self._sub_models[name] = self._sub_model(inputs, outputs, name=name)
        return self._sub_models[name]

    def _sub_model(self, inputs, outputs, name: str | None = None) -> keras.Model:
        # Uncached: run_graph builds one per call for the tensors it is asked for.
        if hasattr(self.keras_model, "sub_model"):
            return self.keras_model.sub_model(inputs, outputs, name=name)
        return keras.Model(inputs, outputs, name=name)

    def sub_model_tensors(self, name: str) -> tuple:
        """(inputs, outputs) of the inference graph that bound sub-model ``name``: inputs
        one tensor (the sub-model is then called with one array) or a list of them."""
        raise NotImplementedError(f"{type(self).__name__} defines no sub-model {name!r}")

    def export(self, path: str) -> str:
        """Writes a TensorFlow SavedModel at ``path`` (a new folder) whose signatures take
        raw images and do the molding and unmolding in the graph (the writer is
        saved_model_writer()). ValueError under another backend than TensorFlow."""
        backend_ops.require_tensorflow(backend_ops.EXPORT_NEEDS)
        return self.saved_model_writer()(self, path)

    def saved_model_writer(self) -> Callable[[object, str], str]:
        """The function (model, path) -> path that export() calls: mrcnn.export's
        export_mask_rcnn. Imported here, not at the top, because it needs TensorFlow."""
        from mrcnn.export import export_mask_rcnn

        return export_mask_rcnn
