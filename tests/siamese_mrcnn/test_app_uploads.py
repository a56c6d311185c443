"""What the web page accepts: image bytes, boxes, the pixel limit (no model needed)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from siamese_mrcnn.app.uploads import Limits, UploadError, crop, decode_image, parse_box
from siamese_mrcnn.search import shots


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decode_gives_rgb_for_grey_rgb_and_rgba():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    assert np.array_equal(decode_image(png(rgb), "query", "a.png", Limits()), rgb)
    grey = rgb[..., 0]
    assert np.array_equal(decode_image(png(grey), "query", "g.png", Limits()),
                          np.stack([grey] * 3, -1))
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 7, np.uint8)], -1)
    assert np.array_equal(decode_image(png(rgba), "query", "x.png", Limits()), rgb)


@pytest.mark.parametrize("data, status, words", [
    (b"", 400, "empty (0 bytes)"),
    (b"just some text\n", 400, "not an image"),
    (b"\x89PNG\r\n\x1a\n cut short", 400, "not an image"),
])
def test_bad_bytes_are_refused_with_the_field_and_the_name(data, status, words):
    with pytest.raises(UploadError) as caught:
        decode_image(data, "query", "notes.txt", Limits())
    assert caught.value.status == status
    assert words in str(caught.value) and "query 'notes.txt'" in str(caught.value)


def test_an_image_above_the_pixel_limit_is_refused_from_its_header():
    big = Image.new("1", (10000, 10000))  # 12.5 MB in memory, a few KB as PNG
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 200_000
    with pytest.raises(UploadError) as caught:
        decode_image(buffer.getvalue(), "query", "big.png", Limits(max_pixels=25_000_000))
    assert caught.value.status == 413 and "10000x10000" in str(caught.value)
    huge = Image.new("1", (20000, 20000))  # above Pillow's own bomb limit too
    buffer = io.BytesIO()
    huge.save(buffer, format="PNG")
    with pytest.raises(UploadError) as caught:
        decode_image(buffer.getvalue(), "query", "huge.png", Limits())
    assert caught.value.status == 413 and "400000000 pixels" in str(caught.value)
    small = png(np.zeros((10, 10), np.uint8))
    with pytest.raises(UploadError, match="10x10 pixels is above the limit of 99"):
        decode_image(small, "reference", "s.png", Limits(max_pixels=99))


def test_a_truncated_image_is_refused_when_decoded():
    data = png(np.random.default_rng(1).integers(0, 256, (60, 60, 3)).astype(np.uint8))
    with pytest.raises(UploadError, match="cannot be decoded|not an image"):
        decode_image(data[: len(data) // 2], "query", "cut.png", Limits())


@pytest.mark.parametrize("text, expected", [
    (None, None), ("", None), ("  ", None), ("1,2,3,4", (1, 2, 3, 4)),
    ("10.4, 20.6, 30, 40.5", (10, 21, 30, 40)),
])
def test_parse_box(text, expected):
    assert parse_box(text) == expected


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "1,2,0,4", "1,2,3,-4", "nan,1,2,3",
                                  "1,2,3,4,5"])
def test_parse_box_refuses(text):
    with pytest.raises(UploadError, match="box"):
        parse_box(text)


def test_crop_clips_to_the_image_and_refuses_tiny_or_outside_boxes():
    image = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    assert np.array_equal(crop(image, (2, 3, 4, 5), "r", 4), image[3:8, 2:6])
    assert np.array_equal(crop(image, (8, -5, 100, 100), "r", 4), image[0:10, 8:12])
    assert crop(image, None, "r", 4) is image
    with pytest.raises(UploadError, match="outside the image"):
        crop(image, (20, 20, 5, 5), "r", 4)
    with pytest.raises(UploadError, match="3x5 pixels; expected at least 4x4"):
        crop(image, (0, 0, 5, 3), "r", 4)


def test_shots_repeats_the_references_in_turn():
    a, b = np.zeros((4, 4, 3)), np.ones((4, 4, 3))
    assert [x is a for x in shots(a, 3)] == [True] * 3
    assert [x is a for x in shots([a, b], 3)] == [True, False, True]
    with pytest.raises(ValueError, match="expected 1 to 1 reference"):
        shots([a, b], 1)
    with pytest.raises(ValueError, match="got 0"):
        shots([], 2)
