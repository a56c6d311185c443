"""A plain `import imgaug` works under numpy 2 (lib/imgaug_numpy2_hook.py), in fresh
interpreters: Matterport's samples import it at their top, before or after mrcnn."""
import sysconfig
from pathlib import Path

import pytest

import imgaug_numpy2_hook as hook
from tests.helpers.processes import run_python

AUGMENT = ("import numpy as np; from imgaug import augmenters as iaa; "
           "image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3); "
           "flipped = iaa.Fliplr(1.0)(image=image); "
           "assert (flipped[0, 0] == image[0, 1]).all(); print('augmented')")


@pytest.mark.parametrize("code", [
    "import imgaug; " + AUGMENT,                   # a Matterport sample's first lines
    "import mrcnn.model; import imgaug; " + AUGMENT,
    "import imgaug; import mrcnn.model; from mrcnn.compat import import_imgaug; "
    "import_imgaug(); " + AUGMENT,
])
def test_import_imgaug_in_the_project_environment(code, tmp_path):
    # The environment `make` installs (the .pth written by `python -m imgaug_numpy2_hook`),
    # from a folder where lib/ is not importable by accident.
    done = run_python(["-c", code], cwd=tmp_path)
    assert done.returncode == 0 and "augmented" in done.stdout, (
        done.stderr[-2000:] + "\n(after `make install`, site-packages holds "
        "imgaug_numpy2_hook.pth; `python -m imgaug_numpy2_hook` writes it)")


def test_the_pth_line_alone_makes_imgaug_importable(tmp_path):
    # An empty site directory with only our .pth, processed by site.addsitedir; the
    # environment's site-packages is on sys.path but its .pth files are not run (-S).
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    written = hook.write_pth(site_dir)
    assert written == site_dir / "imgaug_numpy2_hook.pth"
    assert written.read_text() == Path(hook.__file__).with_suffix(".pth").read_text()
    assert not list(site_dir.glob(".imgaug_numpy2_hook.*"))  # no temp file left
    lib = Path(hook.__file__).parent
    purelib = sysconfig.get_paths()["purelib"]
    code = (f"import sys; sys.path[:0] = [{str(lib)!r}]; sys.path.append({purelib!r}); "
            "import imgaug_numpy2_hook as h; assert not h.installed(); "
            f"import site; site.addsitedir({str(site_dir)!r}); assert h.installed(); "
            "import imgaug; assert not h.installed(); " + AUGMENT)
    done = run_python(["-S", "-c", code], cwd=tmp_path)
    assert done.returncode == 0 and "augmented" in done.stdout, done.stderr[-2000:]
    # Without the .pth the same interpreter fails on numpy 2, which is why it exists.
    bare = run_python(["-S", "-c", f"import sys; sys.path.append({purelib!r}); "
                       "import imgaug"], cwd=tmp_path)
    assert bare.returncode != 0 and "sctypes" in bare.stderr


def test_command_line_writes_the_pth_and_reports_failures(tmp_path):
    done = run_python(["-m", "imgaug_numpy2_hook", "--site-dir", tmp_path], cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "imgaug_numpy2_hook.pth").is_file()
    missing = run_python(["-m", "imgaug_numpy2_hook", "--site-dir", tmp_path / "nope"],
                         cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("imgaug_numpy2_hook: cannot write the .pth")
    assert "Traceback" not in missing.stderr


def test_finder_waits_for_imgaug_only(monkeypatch):
    monkeypatch.setattr("sys.meta_path", list(__import__("sys").meta_path))
    hook.uninstall()
    finder = hook.ImgaugNumpy2Finder()
    assert finder.find_spec("json") is None and finder.find_spec("imgaug.augmenters") is None
