"""Makes a plain ``import imgaug`` work under numpy 2, in any order with ``import mrcnn``.

Every Matterport sample imports imgaug at its top, and imgaug 0.4.0 (unmaintained; no
numpy-2 fork exists) reads ``np.sctypes``, which numpy 2 removed. The package installs
``imgaug_numpy2_hook.pth`` into site-packages, and Python's ``site`` runs its one line
at interpreter start: ``install()`` puts a finder first on ``sys.meta_path``. The finder
does nothing until ``imgaug`` itself is first imported; then it restores the numpy 1
names imgaug reads (mrcnn.compat.install_numpy_shim) and steps aside, so the ordinary
import proceeds. Interpreter start-up costs one small import and no numpy.
"""
from __future__ import annotations

import sys

TRIGGER = "imgaug"


class ImgaugNumpy2Finder:
    """A meta-path finder that never finds anything: it runs the numpy shim just
    before the first import of imgaug and leaves the import to the other finders."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == TRIGGER:
            uninstall()
            from mrcnn.compat import install_numpy_shim

            install_numpy_shim()
        return None


def installed() -> bool:
    """True while the finder waits on sys.meta_path."""
    return any(isinstance(f, ImgaugNumpy2Finder) for f in sys.meta_path)


def install() -> None:
    """Puts the finder first on sys.meta_path (idempotent). A no-op once imgaug is in."""
    if TRIGGER not in sys.modules and not installed():
        sys.meta_path.insert(0, ImgaugNumpy2Finder())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, ImgaugNumpy2Finder)]
