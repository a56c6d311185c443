"""Tests for mrcnn.compat: imgaug 0.4 under numpy 2 through the shim, with
Matterport's mask-augmentation pattern."""
import numpy as np
import pytest

from mrcnn import compat

pytest.importorskip("cv2")  # imgaug's hard dependency

iaa = compat.imgaug_augmenters()


def rgb_image(h=12, w=16):
    return np.random.RandomState(0).randint(0, 256, (h, w, 3)).astype(np.uint8)


def test_shim_installs_numpy1_names_and_is_idempotent():
    imgaug = compat.import_imgaug()
    assert imgaug.__version__ == "0.4.0"
    assert np.float32 in np.sctypes["float"] and np.uint8 in np.sctypes["uint"]
    assert np.complex is complex
    before = np.sctypes
    compat.install_numpy_shim()
    assert np.sctypes is before
    assert compat.imgaug_augmenters() is iaa


def test_fliplr_flips_exactly():
    image = rgb_image()
    np.testing.assert_array_equal(iaa.Fliplr(1.0)(image=image), image[:, ::-1])
    np.testing.assert_array_equal(iaa.Fliplr(0.0)(image=image), image)


def test_affine_translation_is_exact_shift_with_zero_fill():
    image = rgb_image()
    out = iaa.Affine(translate_px={"x": 3}, order=0, cval=0)(image=image)
    np.testing.assert_array_equal(out[:, 3:], image[:, :-3])
    assert not out[:, :3].any()


def test_gaussian_blur_matches_hand_kernel():
    image = np.zeros([21, 21, 1], dtype=np.float32)
    image[10, 10, 0] = 100.
    out = iaa.GaussianBlur(sigma=1.0)(image=image)
    # imgaug truncates the sigma=1 kernel to 5 taps (radius 2), normalised.
    taps = np.exp(-np.arange(-2, 3) ** 2 / 2.)
    taps /= taps.sum()
    expected = np.zeros([21, 21], dtype=np.float32)
    expected[8:13, 8:13] = 100. * np.outer(taps, taps)
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-4)


def test_someof_and_oneof():
    image = rgb_image()
    both = iaa.SomeOf(2, [iaa.Fliplr(1.0), iaa.Flipud(1.0)])(image=image)
    np.testing.assert_array_equal(both, image[::-1, ::-1])
    one = iaa.OneOf([iaa.Fliplr(1.0)])(image=image)
    np.testing.assert_array_equal(one, image[:, ::-1])
    # Random choice: always one of the two flips, never both or none.
    aug = iaa.OneOf([iaa.Fliplr(1.0), iaa.Flipud(1.0)], seed=3)
    for _ in range(5):
        out = aug(image=image)
        assert (np.array_equal(out, image[:, ::-1])
                or np.array_equal(out, image[::-1]))


def test_matterport_mask_hook_pattern_applies_only_mask_augmenters():
    """load_image_gt's pattern: a deterministic copy augments the image and,
    with the hook, the masks (geometric augmenters only)."""
    image = rgb_image(16, 20)
    mask = np.zeros([16, 20, 2], dtype=bool)
    mask[2:6, 3:9, 0] = True
    mask[8:15, 10:20, 1] = True
    augmentation = iaa.Sequential([
        iaa.Fliplr(1.0),
        iaa.Affine(translate_px={"y": 2}, order=0),
        iaa.GaussianBlur(sigma=2.0),
    ])
    det = augmentation.to_deterministic()
    image_aug = det.augment_image(image)
    mask_aug = det.augment_image(mask.astype(np.uint8), hooks=compat.mask_hook())
    assert image_aug.shape == image.shape and mask_aug.shape == mask.shape

    def geometric(x):
        flipped = x[:, ::-1]
        shifted = np.zeros_like(flipped)
        shifted[2:] = flipped[:-2]
        return shifted

    # The masks are only flipped and shifted: still exactly 0/1, no blur.
    np.testing.assert_array_equal(mask_aug.astype(bool), geometric(mask))
    # The image got the blur as well.
    assert not np.array_equal(image_aug, geometric(image))


def test_random_affine_keeps_image_and_mask_aligned():
    mask = np.zeros([32, 32, 1], dtype=np.uint8)
    mask[8:24, 12:20] = 1
    image = np.repeat(mask * 200, 3, axis=2)
    augmentation = iaa.OneOf([iaa.Affine(rotate=(20, 40), order=0, seed=7)], seed=7)
    det = augmentation.to_deterministic()
    image_aug = det.augment_image(image)
    mask_aug = det.augment_image(mask, hooks=compat.mask_hook())
    assert not np.array_equal(mask_aug, mask)  # it did rotate
    np.testing.assert_array_equal(image_aug[..., 0] > 0, mask_aug[..., 0] > 0)


def test_mask_hook_custom_list():
    mask = np.zeros([4, 6, 1], dtype=np.uint8)
    mask[:, :2] = 1
    det = iaa.Fliplr(1.0).to_deterministic()
    # Fliplr not allowed -> masks untouched.
    np.testing.assert_array_equal(
        det.augment_image(mask, hooks=compat.mask_hook(["Affine"])), mask)
    assert "Fliplr" in compat.MASK_AUGMENTERS and "GaussianBlur" not in compat.MASK_AUGMENTERS


def test_weather_augmenters_run_with_restored_complex_alias():
    image = np.full([32, 32, 3], 100, dtype=np.uint8)
    for augmenter in (iaa.Clouds(seed=1), iaa.Fog(seed=1)):
        out = augmenter(image=image)
        assert out.shape == image.shape and out.dtype == np.uint8
