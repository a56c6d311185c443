"""Generated photos and tiny random weights for the search and web page tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZES = [(64, 64), (70, 90), (50, 120), (96, 64)]


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Grey noise with two coloured 16x16 squares."""
    image = rng.integers(90, 130, (height, width, 3)).astype(np.uint8)
    for _ in range(2):
        y, x = rng.integers(0, height - 16), rng.integers(0, width - 16)
        image[y:y + 16, x:x + 16] = rng.integers(0, 256, 3)
    return image


def make_folder(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` PNG photos of several sizes, a corrupt PNG and a text file."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        name = folder / f"photo_{i:03d}.png"
        Image.fromarray(photo(rng, *SIZES[i % len(SIZES)])).save(name)
        names.append(str(name))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a png")
    (folder / "notes.txt").write_text("not an image\n")
    return names


def tiny_weights(path: Path, **overrides) -> None:
    """Settled random weights of the tiny preset (well-formed detections, scores > 0.5),
    saved to ``path``; load them with ``--config tiny``."""
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN
    from tests.helpers.settled import settle

    model = SiameseMaskRCNN("inference", preset("tiny_eval", **overrides),
                            str(path.parent / "logs"))
    settle(model, [0.0, 0.5])
    model.save_weights(str(path))
