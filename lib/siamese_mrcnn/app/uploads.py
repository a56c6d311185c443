"""What the page and the API accept: image bytes and boxes, checked before any pixel
is decoded.

An upload is an image when Pillow recognises its header and its size is within the
pixel limit; the check reads only the header, so a 10000 x 10000 PNG of a few
kilobytes is refused without allocating 300 MB. Each problem is an ``UploadError``
whose message names the field and says what was expected and what came; the server
answers it with a 4xx and the page shows the message.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

#: Defaults of ``python -m siamese_mrcnn.app`` (--max-upload-mb, --max-pixels).
DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_PIXELS = 25_000_000


class UploadError(ValueError):
    """An upload the app refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """The request body limit (bytes, all files together) and the per-image pixel limit."""

    max_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def describe(self) -> dict:
        return {"max_upload_mb": round(self.max_bytes / 1024 / 1024, 3),
                "max_pixels": self.max_pixels}


def decode_image(data: bytes, field: str, name: str, limits: Limits) -> np.ndarray:
    """The RGB pixels [H, W, 3] uint8 of an uploaded file (grey repeated, alpha dropped).

    UploadError (400) for an empty file or one that is not an image; (413) for one with
    more pixels than ``limits.max_pixels``.
    """
    from PIL import Image, UnidentifiedImageError

    where = f"{field} {name!r}" if name else field
    if not data:
        raise UploadError(f"{where}: the file is empty (0 bytes); expected a PNG or JPEG "
                          "image")
    try:
        with warnings.catch_warnings():
            # Our limit is checked next, from the same header; Pillow's own warning
            # (above 89 M pixels) would only repeat it in the server's log.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:  # above 179 M pixels: Pillow refuses
        raise UploadError(f"{where}: {error.args[0].split(',')[0]}; the limit is "
                          f"{limits.max_pixels:,} pixels (--max-pixels)", status=413) from error
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UploadError(f"{where}: not an image ({len(data)} bytes in no format that "
                          "Pillow reads); expected a PNG or JPEG image") from error
    width, height = image.size
    if width * height > limits.max_pixels:
        raise UploadError(f"{where}: {width}x{height} pixels is above the limit of "
                          f"{limits.max_pixels:,} pixels (--max-pixels)", status=413)
    if width < 1 or height < 1:
        raise UploadError(f"{where}: the image is {width}x{height} pixels")
    try:
        image = image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:  # a header fine, the data cut
        raise UploadError(f"{where}: the image cannot be decoded ({error})") from error
    return np.asarray(image, dtype=np.uint8)


def parse_box(text: Optional[str], field: str = "box") -> Optional[tuple[int, int, int, int]]:
    """'x,y,w,h' (pixels of the reference, numbers rounded) -> (x, y, w, h); None or ''
    -> None (the whole image). UploadError for anything else."""
    if text is None or not text.strip():
        return None
    parts = text.split(",")
    expected = f"{field}: expected 'x,y,w,h' in pixels, got {text!r}"
    if len(parts) != 4:
        raise UploadError(expected)
    try:
        values = [float(v) for v in parts]
    except ValueError as error:
        raise UploadError(expected) from error
    if not all(np.isfinite(values)):
        raise UploadError(expected)
    x, y, w, h = (int(round(v)) for v in values)
    if w <= 0 or h <= 0:
        raise UploadError(f"{field} {text!r}: width and height must be > 0")
    return x, y, w, h


def crop(image: np.ndarray, box: Optional[tuple[int, int, int, int]], field: str,
         min_side: int) -> np.ndarray:
    """``image`` cut to ``box`` (clipped to the image), or the whole image; UploadError
    when what remains is smaller than ``min_side`` on a side."""
    if box is not None:
        x, y, w, h = box
        image = image[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)]
        if min(image.shape[:2]) < 1:
            raise UploadError(f"{field}: the box {box} is outside the image")
    if min(image.shape[:2]) < min_side:
        raise UploadError(f"{field}: the reference is {image.shape[0]}x{image.shape[1]} "
                          f"pixels; expected at least {min_side}x{min_side} (draw a "
                          "larger box)")
    return image


__all__ = ["UploadError", "Limits", "decode_image", "parse_box", "crop",
           "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_MAX_PIXELS"]
