"""Makes a plain ``import imgaug`` work under numpy 2, in any order with ``import mrcnn``.

Every Matterport sample imports imgaug at its top, and imgaug 0.4.0 (unmaintained; no
numpy-2 fork exists) reads ``np.sctypes``, which numpy 2 removed. ``imgaug_numpy2_hook.pth``
in site-packages makes Python's ``site`` run one line at interpreter start: ``install()``
puts a finder first on ``sys.meta_path``. The finder does nothing until ``imgaug`` itself
is first imported; then it restores the numpy 1 names imgaug reads
(mrcnn.compat.install_numpy_shim) and steps aside, so the ordinary import proceeds.
Interpreter start-up costs one small import and no numpy.

Where the .pth comes from: a regular install (``pip install .``) puts it in
site-packages with the package (setup.py). An editable install (``pip install -e .``,
what ``make`` does) cannot carry it, so ``python -m imgaug_numpy2_hook`` writes it into
the environment's site-packages; ``make`` runs that after installing.
"""
from __future__ import annotations

import argparse
import os
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Sequence

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


def write_pth(site_dir: str | os.PathLike | None = None) -> Path:
    """Writes imgaug_numpy2_hook.pth (the file beside this module) into `site_dir`
    (default: this environment's site-packages), atomically; returns its path."""
    source = Path(__file__).with_suffix(".pth")
    target_dir = Path(site_dir or sysconfig.get_paths()["purelib"])
    target = target_dir / source.name
    if source.resolve() == target.resolve():
        return target  # a regular install: already in place
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=".imgaug_numpy2_hook.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(source.read_bytes())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m imgaug_numpy2_hook",
        description="Install the .pth that makes `import imgaug` work under numpy 2.")
    parser.add_argument("--site-dir", help="where to write it (default: site-packages)")
    args = parser.parse_args(argv)
    try:
        path = write_pth(args.site_dir)
    except OSError as error:
        print(f"imgaug_numpy2_hook: cannot write the .pth: {error}", file=sys.stderr)
        return 2
    print(f"installed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
