"""search.read_rgb, what detect and search read image files with (and the contact sheet):
the pixels as RGB, and one line that says what is wrong with a file that is no image."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from siamese_mrcnn.search import read_rgb

EXPECTED = "expected a PNG, JPEG, BMP, GIF or TIFF image"


def test_rgb_grey_and_rgba_read_as_rgb(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=-1)
    for name, pixels in (("rgb", rgb), ("grey", grey), ("rgba", rgba)):
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    assert np.array_equal(read_rgb(str(tmp_path / "rgb.png")), rgb)
    assert np.array_equal(read_rgb(str(tmp_path / "grey.png")), np.stack([grey] * 3, -1))
    assert np.array_equal(read_rgb(str(tmp_path / "rgba.png")), rgb)


def _one_line_error(path) -> str:
    with pytest.raises(ValueError) as caught:
        read_rgb(str(path))
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: ") and message.endswith(EXPECTED), message
    return message


def test_an_empty_file_says_so(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert "the file is empty (0 bytes)" in _one_line_error(empty)


@pytest.mark.parametrize("name", ["notes.png", "notes.txt"])
def test_a_text_file_is_no_image_without_install_hints(tmp_path, name):
    # imageio's own message lists plugins to pip install, over several lines.
    text = tmp_path / name
    text.write_text("not an image\n")
    message = _one_line_error(text)
    assert "cannot read the image (no image format recognised)" in message
    assert "pip install" not in message


def test_a_cut_png_names_the_decoder_s_reason(tmp_path):
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), np.uint8)
                    ).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:100])
    assert "cannot read the image (image file is truncated)" in _one_line_error(cut)


def test_a_folder_is_not_read(tmp_path):
    with pytest.raises(ValueError, match="cannot read the image"):
        read_rgb(str(tmp_path))


def test_a_missing_file_is_one_line_too(tmp_path):
    gone = tmp_path / "gone.png"
    with pytest.raises(ValueError) as caught:
        read_rgb(str(gone))
    assert str(caught.value) == f"{gone}: cannot read the image (No such file or directory)"
