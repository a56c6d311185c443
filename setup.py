"""Siamese Mask R-CNN for TensorFlow 2 / Keras 3 (packages mrcnn and siamese_mrcnn from lib/)."""
import os
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HOOK_PTH = "imgaug_numpy2_hook.pth"


class build_py_with_pth(build_py):
    """Also puts lib/imgaug_numpy2_hook.pth at the top of the built package tree, so
    that it lands in site-packages, where Python's site module runs it (a plain
    ``import imgaug`` then works under numpy 2; see lib/imgaug_numpy2_hook.py).
    An editable install leaves it out (setuptools builds those without this tree):
    there ``python -m imgaug_numpy2_hook`` writes it, as the Makefile does."""

    def run(self):
        super().run()
        self.copy_file(str(here / "lib" / HOOK_PTH), os.path.join(self.build_lib, HOOK_PTH))

    def get_outputs(self, *args, **kwargs):
        return super().get_outputs(*args, **kwargs) + [os.path.join(self.build_lib, HOOK_PTH)]

here = Path(__file__).parent
def read_requirements(name: str) -> list:
    return [line.strip() for line in (here / name).read_text().splitlines()
            if line.strip() and not line.startswith("#")]


requirements = read_requirements("requirements.txt")

setup(
    name="siamese-mask-rcnn-tf2",
    version="0.1.0",
    description="One-shot instance segmentation (Siamese Mask R-CNN) and a Matterport-compatible "
    "Mask R-CNN on TensorFlow 2 / Keras 3",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    py_modules=["imgaug_numpy2_hook"],
    cmdclass={"build_py": build_py_with_pth},
    python_requires=">=3.10",
    install_requires=requirements,
    extras_require={
        # GPU users: pip install -e .[gpu] installs the CUDA build next to the CPU one;
        # uninstall tensorflow-cpu afterwards (see README).
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
        # The web page: python -m siamese_mrcnn.app (requirements-app.txt).
        "app": read_requirements("requirements-app.txt"),
    },
    package_data={"siamese_mrcnn.app": ["static/*"],
                  "siamese_mrcnn": ["imagenet_classes/*.txt"]},
)
