"""Visual search by example: one reference, a folder of photos.

``search_collection(model, reference, files, output)`` encodes the reference once, then
runs the images in batches of the model's BATCH_SIZE. A thread reads and molds the next
batch while the model runs the current one. Each image's result is appended to
``OUT/results.jsonl`` as it is found, one JSON line per image:

    {"file": "photos/a.jpg", "height": 480, "width": 640,
     "detections": [{"box": [y1, x1, y2, x2], "score": 0.93,
                     "mask": {"size": [480, 640], "counts": "<COCO RLE>"}}, ...]}

A rerun with the same OUT skips the files already there: a killed run loses at most
the batch in flight, and a line cut short by the kill is dropped on the next start.
Files that cannot be read as images are logged by name, counted and skipped (and tried
again by a rerun). At the end ``OUT/contact_sheet.png`` shows the images with the best
detections, the reference inset in each.
"""
from __future__ import annotations

import concurrent.futures
import glob
import json
import logging
import numbers
import os
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from mrcnn.config import is_int

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
SHEET_NAME = "contact_sheet.png"


def list_images(spec: str) -> list[str]:
    """The files of a folder (not its subfolders; hidden files left out) or of a glob
    pattern, sorted. ValueError when there are none."""
    if os.path.isdir(spec):
        files = [os.path.join(spec, name) for name in os.listdir(spec)
                 if not name.startswith(".") and os.path.isfile(os.path.join(spec, name))]
    else:
        files = [f for f in glob.glob(spec) if os.path.isfile(f)]
    if not files:
        raise ValueError(f"--images {spec}: no files found (expected a folder of images "
                         "or a pattern such as 'photos/*.jpg')")
    return sorted(files)


def read_rgb(path: str) -> np.ndarray:
    """An RGB image [H, W, 3] uint8-like from disk (grey repeated, alpha dropped).
    ValueError or OSError when the file is not a readable image."""
    import skimage.io

    expected = "expected a PNG, JPEG, BMP, GIF or TIFF image"
    try:
        empty = os.path.getsize(path) == 0
    except OSError as error:  # gone, or no permission to look
        raise ValueError(f"{path}: cannot read the image ({error.strerror or error})"
                         ) from error
    if empty:
        raise ValueError(f"{path}: the file is empty (0 bytes); {expected}")
    try:
        image = np.asarray(skimage.io.imread(path))
    except (ValueError, OSError, SyntaxError) as error:
        # imageio's "Could not find a backend" goes on over lines of plugins to install,
        # none of which reads a file that is not an image: one line that says so.
        lines = str(error).strip().splitlines() or [type(error).__name__]
        why = ("no image format recognised" if "find a backend" in lines[0]
               else lines[0])
        raise ValueError(f"{path}: cannot read the image ({why}); {expected}") from error
    if image.ndim == 3 and image.shape[2] in (2, 4):
        image = image[..., :-1]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0 or image.dtype == object:
        raise ValueError(f"{path}: expected a grayscale, RGB or RGBA image, got shape "
                         f"{image.shape}")
    return image


def load_results(path: str) -> list[dict]:
    """The results of earlier runs. A last line without its newline (the run was killed
    while writing it) is cut from the file; any other line that is not a result raises
    ValueError naming it."""
    if not os.path.isfile(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    # After the last newline: b"" for a complete file, else a torn line.
    complete, torn = lines[:-1], lines[-1]
    records = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{path}: line {number} is not JSON ({error}); remove the "
                             "line or choose another --output") from error
        if not isinstance(record, dict) or "file" not in record:
            raise ValueError(f"{path}: line {number} is not a search result (expected "
                             "an object with a 'file' field)")
        records.append(record)
    if torn:
        logger.warning("%s: dropping the unfinished last line (%d bytes) of a run that "
                       "was stopped", path, len(torn))
        with open(path, "r+b") as f:
            f.truncate(len(data) - len(torn))
    return records


def detections_record(path: str, shape: Sequence[int], result: dict,
                      min_score: float) -> dict:
    """One results.jsonl line: the detections of ``result`` (a detect() dict) scoring
    at least ``min_score``, best first, masks as COCO RLE."""
    from pycocotools import mask as mask_utils

    masks = np.asarray(result["masks"])
    with_masks = masks.ndim == 3 and masks.shape[-1] == len(result["scores"])
    detections = []
    for i in np.argsort(-np.asarray(result["scores"]), kind="stable"):
        score = float(result["scores"][i])
        if score < min_score:
            continue
        detection = {"box": [int(v) for v in result["rois"][i]], "score": round(score, 6)}
        if with_masks:
            rle = mask_utils.encode(np.asfortranarray(masks[..., i].astype(np.uint8)))
            detection["mask"] = {"size": [int(s) for s in rle["size"]],
                                 "counts": rle["counts"].decode("ascii")}
        detections.append(detection)
    return {"file": path, "height": int(shape[0]), "width": int(shape[1]),
            "detections": detections}


def prefetched(batches: Sequence[Any], prepare: Callable[[Any], Any]) -> Iterator[tuple]:
    """(batch, prepare(batch)) for each batch, preparing the next one in a thread while
    the caller works on the current one."""
    if not batches:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                               thread_name_prefix="search-load") as pool:
        future = pool.submit(prepare, batches[0])
        for index, batch in enumerate(batches):
            ready = future.result()
            if index + 1 < len(batches):
                future = pool.submit(prepare, batches[index + 1])
            yield batch, ready


def _prepare_batch(model, paths: Sequence[str]) -> dict:
    """Reads the images of a batch, pads it to BATCH_SIZE with its last image and molds
    it; unreadable files are reported, not raised."""
    images, kept, skipped = [], [], []
    for path in paths:
        try:
            images.append(read_rgb(path))
            kept.append(path)
        except (ValueError, OSError) as error:
            skipped.append((path, str(error)))
    prepared = {"paths": kept, "images": images, "skipped": skipped, "padded": None,
                "molded": None}
    if images:
        padded = images + [images[-1]] * (model.config.BATCH_SIZE - len(images))
        prepared["padded"] = padded
        prepared["molded"] = model.mold_inputs(padded)
    return prepared


def write_contact_sheet(records: Sequence[dict], reference: np.ndarray, path: str,
                        top: int) -> Optional[str]:
    """The ``top`` images with the best detection, detections drawn, the reference inset;
    written to a temporary name, then renamed. None when no image has a detection."""
    from pycocotools import mask as mask_utils

    best = [r for r in records if r.get("detections")]
    best.sort(key=lambda r: -max(d["score"] for d in r["detections"]))
    best = best[:top]
    if not best:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from siamese_mrcnn.visualize import display_grid

    images, boxes, masks, class_ids, scores, names = [], [], [], [], [], []
    for record in best:
        image = read_rgb(record["file"])
        detections = record["detections"]
        images.append(image)
        boxes.append(np.array([d["box"] for d in detections], dtype=np.int32))
        if all("mask" in d for d in detections):
            masks.append(np.stack([mask_utils.decode(d["mask"]).astype(bool)
                                   for d in detections], axis=-1))
        else:  # box-only models: the boxes filled
            filled = np.zeros(image.shape[:2] + (len(detections),), dtype=bool)
            for i, (y1, x1, y2, x2) in enumerate(boxes[-1]):
                filled[y1:y2, x1:x2, i] = True
            masks.append(filled)
        class_ids.append(np.ones(len(detections), dtype=np.int32))
        scores.append(np.array([d["score"] for d in detections], dtype=np.float32))
        names.append(f"{os.path.basename(record['file'])} ({scores[-1].max():.2f})")
    count = len(best)
    side = int(np.ceil(np.sqrt(count)))
    fig, axes = plt.subplots(side, side, figsize=(4 * side, 4 * side), squeeze=False)
    display_grid([reference] * count, images, boxes, masks, class_ids, scores, names,
                 ax=list(axes.ravel()), show_scores=True)
    temporary = path[:-len(".png")] + ".partial.png"
    fig.savefig(temporary, bbox_inches="tight", dpi=80)
    plt.close(fig)
    os.replace(temporary, path)
    return path


class ExportedModel:
    """A SavedModel written by SiameseMaskRCNN.export, with the few methods
    search_collection uses (one image per call; the graph molds, so mold_inputs does
    nothing and the loading thread only reads)."""

    def __init__(self, path: str):
        import tensorflow as tf

        self._tf = tf
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path}: not a SavedModel (no saved_model.pb); expected a "
                             "folder written by train_siamese.py export")
        try:
            served = tf.saved_model.load(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a SavedModel written by export ({error})") from error
        missing = {"encode_reference", "detect_with_reference"} - set(served.signatures)
        if missing:
            raise ValueError(f"{path}: the SavedModel has no signature {sorted(missing)} "
                             "(expected one written by train_siamese.py export)")
        self._encode = served.signatures["encode_reference"]
        self._detect = served.signatures["detect_with_reference"]
        self._served = served  # keeps the signatures' variables alive
        self.config = _SearchConfig()

    def encode_reference(self, references: Sequence) -> Any:
        reference = np.asarray(references[0][0])
        return self._encode(reference=self._tf.constant(reference))["vectors"]

    def mold_inputs(self, images: Sequence[np.ndarray]) -> None:
        return None

    def detect_with_reference(self, vectors: Any, images: Sequence[np.ndarray],
                              molded: Any = None) -> list[dict]:
        results = []
        for image in images:
            out = self._detect(query=self._tf.constant(np.asarray(image, np.uint8)),
                               vectors=vectors)
            masks = out["masks"].numpy().astype(bool)  # [N, H, W]
            results.append({"rois": out["boxes"].numpy(), "scores": out["scores"].numpy(),
                            "class_ids": np.ones(len(masks), np.int32),
                            "masks": np.moveaxis(masks, 0, -1)})
        return results


class _SearchConfig:
    BATCH_SIZE = 1
    NUM_TARGETS = 1  # the exported graph repeats one reference K times itself


def shots(reference: np.ndarray | Sequence[np.ndarray], k: int) -> list[np.ndarray]:
    """The k references of one query: one image repeated k times, or a list of 1 to k
    images repeated in turn (ValueError for more than k)."""
    references = [reference] if isinstance(reference, np.ndarray) else list(reference)
    if not 1 <= len(references) <= k:
        raise ValueError(f"expected 1 to {k} reference(s) for this {k}-shot model, got "
                         f"{len(references)}")
    return [references[i % len(references)] for i in range(k)]


def search_collection(model, reference: np.ndarray | Sequence[np.ndarray],
                      files: Sequence[str], output: str, min_score: float = 0.5,
                      top: int = 16, progress: bool = True,
                      on_batch: Optional[Callable[[list[dict], int], None]] = None) -> dict:
    """Searches ``files`` for objects like ``reference`` (see the module doc).

    model: a SiameseMaskRCNN in inference mode with its weights loaded (its BATCH_SIZE
    images run per call), or an ExportedModel. reference: one image, or up to
    NUM_TARGETS images for a k-shot model (see ``shots``). on_batch(new_records,
    files_done) is called after each batch (the web page's progress). Returns the
    summary (also printed by the command line).
    """
    from tqdm import tqdm

    # Each of these searched without a word: characters as files, nothing kept.
    if isinstance(files, (str, bytes, os.PathLike)):
        raise ValueError(f"files: expected a list of image paths, got one path {files!r} "
                         "(list_images(spec) expands a folder or a glob)")
    if not (isinstance(min_score, numbers.Real) and 0 <= min_score <= 1):
        raise ValueError(f"min_score: expected a score in [0, 1], got {min_score!r}")
    if not is_int(top) or top < 0:
        raise ValueError(f"top: expected an integer >= 0 (0: no contact sheet), got {top!r}")
    os.makedirs(output, exist_ok=True)
    results_path = os.path.join(output, RESULTS_NAME)
    started = time.perf_counter()
    records = load_results(results_path)  # earlier runs' lines, then this run's
    done = {r["file"] for r in records}
    todo = [f for f in files if f not in done]
    # One encoding of the reference (k copies for a k-shot model), broadcast over batches.
    references = shots(reference, model.config.NUM_TARGETS)
    vectors = model.encode_reference([references])
    size = model.config.BATCH_SIZE
    batches = [todo[i:i + size] for i in range(0, len(todo), size)]
    searched, skipped, finished = 0, 0, 0
    with open(results_path, "a", encoding="utf-8") as out, \
            tqdm(total=len(todo), unit="img", disable=not progress, desc="search") as bar:
        for paths, ready in prefetched(batches, lambda b: _prepare_batch(model, b)):
            for path, why in ready["skipped"]:
                logger.warning("skipped %s", why)
            skipped += len(ready["skipped"])
            if ready["images"]:
                results = model.detect_with_reference(vectors, ready["padded"],
                                                      molded=ready["molded"])
                new = [detections_record(path, image.shape, result, min_score)
                       for path, image, result in zip(ready["paths"], ready["images"],
                                                      results)]
                records += new
                lines = [json.dumps(record) for record in new]
                # One write per batch, flushed to disk: a kill loses at most this batch.
                out.write("\n".join(lines) + "\n")
                out.flush()
                os.fsync(out.fileno())
                searched += len(lines)
            else:
                new = []
            bar.update(len(paths))
            finished += len(paths)
            if on_batch is not None:
                on_batch(new, finished)
    seconds = time.perf_counter() - started
    listed = set(files)
    records = [r for r in records if r["file"] in listed]
    sheet = write_contact_sheet(records, references[0], os.path.join(output, SHEET_NAME),
                                top)
    return {
        "images": len(files), "searched_now": searched,
        "from_earlier_runs": len(done & listed), "skipped": skipped,
        "with_detections": sum(1 for r in records if r["detections"]),
        "seconds": seconds, "images_per_s": searched / seconds if seconds > 0 else 0.0,
        "results": results_path, "contact_sheet": sheet,
    }


def summary_line(summary: dict) -> str:
    """The one line the command line prints at the end."""
    sheet = summary["contact_sheet"] or "none (no detections)"
    def count(n: int, noun: str) -> str:
        return f"{n} {noun}" + ("" if n == 1 else "s")

    return (f"searched {count(summary['images'], 'file')}: "
            f"{count(summary['searched_now'], 'image')} now, "
            f"{summary['from_earlier_runs']} from an earlier run, {summary['skipped']} "
            f"skipped (unreadable); {summary['with_detections']} with detections; "
            f"{summary['seconds']:.1f} s ({summary['images_per_s']:.2f} images/s); "
            f"results: {summary['results']}; contact sheet: {sheet}")


__all__ = ["list_images", "read_rgb", "load_results", "detections_record", "prefetched",
           "ExportedModel", "shots",
           "write_contact_sheet", "search_collection", "summary_line", "RESULTS_NAME",
           "SHEET_NAME"]
