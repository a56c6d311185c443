"""Version glue, in one place: imgaug 0.4 under numpy 2.

imgaug 0.4.0 (unmaintained) fails at import under numpy 2 because it reads
``np.sctypes``, which numpy 2.0 removed; a few augmenters also use the
expired alias ``np.complex``. ``import_imgaug()`` restores exactly those two
names on the numpy module (only when missing) and then imports imgaug.
``np.bool`` needs no shim: numpy 2 has it again.

What works with the shim (measured with imgaug 0.4.0, numpy 2.4,
opencv 5; the first group is tested in tests/mrcnn/test_compat.py):
Fliplr, Flipud, Affine, GaussianBlur, Sequential, SomeOf, OneOf, Sometimes,
deterministic copies (``to_deterministic()``) and Matterport's
mask-augmentation hook pattern (``mask_hook()``: masks only see
MASK_AUGMENTERS). Also ran: Multiply, Add, CropAndPad, Crop,
PiecewiseAffine, PerspectiveTransform, MotionBlur, Dropout, noise, contrast
and colour augmenters. Clouds, Fog and Snowflakes need the restored
``np.complex`` (without it they raise AttributeError) and then run.

What does not: ElasticTransformation fails inside OpenCV 5's remap
(an assertion on map types). Anything else imgaug does with numpy 1
semantics is untested; use the mask-safe geometric augmenters for training
(augmentation is optional and off by default).
"""
from __future__ import annotations

import logging
from types import ModuleType
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

# Matterport's list of augmenters that may be applied to masks (the
# others, e.g. colour changes and blur, apply to images only).
MASK_AUGMENTERS = ["Sequential", "SomeOf", "OneOf", "Sometimes",
                   "Fliplr", "Flipud", "CropAndPad",
                   "Affine", "PiecewiseAffine"]


def _numpy1_sctypes() -> dict:
    """numpy 1.x's ``np.sctypes``: scalar types grouped by kind."""
    def existing(names):
        return [getattr(np, n) for n in names if hasattr(np, n)]

    return {
        "int": existing(["int8", "int16", "int32", "int64"]),
        "uint": existing(["uint8", "uint16", "uint32", "uint64"]),
        "float": existing(["float16", "float32", "float64", "longdouble"]),
        "complex": existing(["complex64", "complex128", "clongdouble"]),
        "others": [bool, object, bytes, str, np.void],
    }


def install_numpy_shim() -> None:
    """Restore the numpy 1 names imgaug 0.4 reads, where they are missing.

    Idempotent; a no-op under numpy 1.x, where the names still exist.
    """
    # numpy 2 raises AttributeError from its module __getattr__ for removed
    # names; setting them in the module dict takes precedence.
    if not _has(np, "sctypes"):
        np.sctypes = _numpy1_sctypes()
        logger.debug("numpy shim: restored np.sctypes for imgaug")
    if not _has(np, "complex"):
        np.complex = complex
        logger.debug("numpy shim: restored np.complex for imgaug")


def _has(module: ModuleType, name: str) -> bool:
    try:
        getattr(module, name)
    except AttributeError:
        return False
    return True


def import_imgaug() -> ModuleType:
    """Install the numpy-2 shim and return the ``imgaug`` module.

    Raises ImportError with an install hint when imgaug is missing.
    """
    install_numpy_shim()
    try:
        import imgaug
    except ImportError as error:
        raise ImportError(
            "imgaug is needed for augmentation: pip install imgaug==0.4.0 "
            "(it conflicts with opencv-python-headless from albumentations)"
        ) from error
    return imgaug


def imgaug_augmenters() -> ModuleType:
    """Return ``imgaug.augmenters`` (imported through the numpy-2 shim)."""
    import_imgaug()
    import imgaug.augmenters as iaa
    return iaa


def mask_hook(augmenters: Optional[Sequence[str]] = None):
    """imgaug hooks that let only mask-safe augmenters touch masks.

    Matterport's pattern: pass ``hooks=mask_hook()`` when augmenting masks
    with a deterministic copy of the image augmenter.
    augmenters: names allowed on masks (default MASK_AUGMENTERS).
    """
    allowed = MASK_AUGMENTERS if augmenters is None else list(augmenters)
    imgaug = import_imgaug()

    def hook(images, augmenter, parents, default):
        """Determines which augmenters to apply to masks."""
        return augmenter.__class__.__name__ in allowed

    return imgaug.HooksImages(activator=hook)
