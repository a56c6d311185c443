"""Siamese Mask R-CNN for TensorFlow 2 / Keras 3 (packages mrcnn and siamese_mrcnn from lib/)."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="siamese-mask-rcnn-tf2",
    version="0.1.0",
    description="One-shot instance segmentation (Siamese Mask R-CNN) and a Matterport-compatible "
    "Mask R-CNN on TensorFlow 2 / Keras 3",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    python_requires=">=3.10",
    install_requires=requirements,
    extras_require={
        # GPU users: pip install -e .[gpu] installs the CUDA build next to the CPU one;
        # uninstall tensorflow-cpu afterwards (see README).
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
    },
)
