"""mrcnn.molding: image meta, molding and input validation."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import data, molding
from mrcnn.config import Config


class MoldConfig(Config):
    NAME = "molding_test"  # MEAN_PIXEL is Matterport's [123.7, 116.8, 103.9]


def test_old_import_path_gives_the_same_functions():
    for name in ("compose_image_meta", "parse_image_meta", "parse_image_meta_graph",
                 "mold_image", "unmold_image", "check_image"):
        assert getattr(data, name) is getattr(molding, name)


############################################################
#  Image meta and molding
############################################################

def test_compose_parse_image_meta_round_trip():
    meta = molding.compose_image_meta(7, (80, 120, 3), (64, 64, 3), (11, 0, 53, 64),
                                   0.5333, [1, 1, 0, 1])
    assert meta.shape == (12 + 4,)
    np.testing.assert_allclose(meta, [7, 80, 120, 3, 64, 64, 3, 11, 0, 53, 64, 0.5333,
                                      1, 1, 0, 1])
    parsed = molding.parse_image_meta(np.stack([meta, meta]))
    assert parsed["image_id"].tolist() == [7, 7]
    assert parsed["original_image_shape"][0].tolist() == [80, 120, 3]
    assert parsed["image_shape"][1].tolist() == [64, 64, 3]
    assert parsed["window"][0].tolist() == [11, 0, 53, 64]
    assert parsed["scale"].dtype == np.float32
    np.testing.assert_allclose(parsed["scale"], [0.5333, 0.5333], rtol=1e-6)
    assert parsed["active_class_ids"][0].tolist() == [1, 1, 0, 1]

    graph = molding.parse_image_meta_graph(tf.constant(np.stack([meta]), tf.float32))
    for key, value in graph.items():
        np.testing.assert_allclose(value.numpy(), parsed[key][:1], rtol=1e-6)


def test_mold_unmold_round_trip():
    config = MoldConfig()
    image = np.random.RandomState(0).randint(0, 256, (4, 5, 3)).astype(np.uint8)
    molded = molding.mold_image(image, config)
    np.testing.assert_allclose(molded, image.astype(np.float64) - [123.7, 116.8, 103.9],
                               atol=1e-5)
    np.testing.assert_array_equal(molding.unmold_image(molded, config), image)
    # The generator feeds float32: every uint8 value must survive that too.
    all_values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    molded32 = molding.mold_image(all_values, config).astype(np.float32)
    np.testing.assert_array_equal(molding.unmold_image(molded32, config), all_values)


############################################################
#  check_image
############################################################

def test_check_image_converts_gray_and_rgba():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = molding.check_image(gray)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], gray)
    np.testing.assert_array_equal(molding.check_image(gray[:, :, None]), rgb)

    rgba = np.random.RandomState(1).rand(3, 4, 4).astype(np.float32)
    out = molding.check_image(rgba)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, rgba[:, :, :3])

    rgb_in = np.zeros((2, 2, 3), np.uint8)
    assert molding.check_image(rgb_in).shape == (2, 2, 3)


@pytest.mark.parametrize("bad, message", [
    (np.zeros(5, np.uint8), "got shape"),
    (np.zeros((2, 2, 3, 1), np.uint8), "got shape"),
    (np.zeros((0, 4, 3), np.uint8), "non-empty"),
    (np.zeros((4, 4, 2), np.uint8), "got 2 channels"),
    (np.zeros((4, 4, 5), np.uint8), "got 5 channels"),
    (np.full((2, 2, 3), "a"), "got dtype"),
    (np.zeros((2, 2, 3), bool), "got dtype bool"),
    ([[None, 1], [2, 3]], "got dtype object"),
])
def test_check_image_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message) as info:
        molding.check_image(bad, name="query")
    assert "query" in str(info.value) and "expected" in str(info.value)


def test_check_image_rejects_nan_and_infinite_pixels():
    image = np.full((4, 4, 3), 100.0, np.float32)
    image[0, 0, 0], image[1, 2, 1] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"query: expected finite pixel values \(0..255\), "
                                         r"got 2 NaN or infinite value\(s\)"):
        molding.check_image(image, name="query")


def test_check_image_tells_once_that_float_pixels_in_0_to_1_are_read_as_0_to_255(
        monkeypatch, caplog):
    monkeypatch.setattr(molding, "_told_unit_range", False)
    unit = np.random.RandomState(0).rand(4, 4, 3).astype(np.float32)
    with caplog.at_level("WARNING", logger="mrcnn.molding"):
        # Not told: integer pixels, float pixels beyond 1, an all-black float image.
        molding.check_image(np.ones((4, 4, 3), np.uint8))
        molding.check_image(unit * 255)
        molding.check_image(np.zeros((4, 4, 3), np.float64))
        assert caplog.records == []
        out = molding.check_image(unit, name="images[0]")
        molding.check_image(unit, name="images[1]")
    np.testing.assert_array_equal(out, unit)  # told, not changed
    assert [r.getMessage() for r in caplog.records] == [
        "images[0]: float pixels all in 0..1, but the model reads pixel values in 0..255 "
        "(like a uint8 image): multiply by 255, or the detections mean nothing (told once)"]
