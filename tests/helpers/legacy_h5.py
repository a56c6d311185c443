"""Synthesize Keras 2.1-style HDF5 weight files from a layout description.

A layout is the JSON of tests/data/*_layout.json: `layers` maps every weighted group
(in file order) to [[weight_name, shape], ...]; `all_layer_names_training` (optional)
lists every top-level layer incl. weightless ones, as the root attr `layer_names` does.

The file is written the way Keras 2.1.6 + h5py 2 wrote it: fixed-length byte-string
attributes, weightless groups with an EMPTY float64 `weight_names` attribute (h5py's
conversion of `[]`), datasets at group[weight_name] (so nested subgroups appear).

    from tests.helpers.legacy_h5 import load_layout, write_legacy_h5
    values = write_legacy_h5(path, load_layout("matterport_coco"), groups=["conv1"])
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Union

import h5py
import numpy as np

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


def load_layout(name: str) -> dict:
    """Read tests/data/<name>_layout.json (or a path to a layout JSON)."""
    path = name if name.endswith(".json") else os.path.join(DATA_DIR, f"{name}_layout.json")
    with open(path) as f:
        return json.load(f)


def _bytes_attr(names: Sequence[str]) -> np.ndarray:
    encoded = [n.encode("utf8") for n in names]
    return np.array(encoded, dtype=f"S{max(len(e) for e in encoded)}")


def weight_key(weight_name: str) -> str:
    """'rpn_conv_shared/kernel:0' -> 'rpn_conv_shared/kernel'."""
    return weight_name.rsplit(":", 1)[0]


def write_legacy_h5(path: Union[str, os.PathLike], layout: dict, *,
                    groups: Optional[Sequence[str]] = None,
                    layer_names: Optional[Sequence[str]] = None,
                    shuffle_nested: bool = False,
                    model_weights: bool = False,
                    fill: str = "random",
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Write a Keras 2.1 weights file with exactly `layout`'s groups, names and shapes.

    groups: only write these weighted groups (default: all of layout['layers']).
    layer_names: root `layer_names` (default: layout['all_layer_names_training'] if
        present, else the weighted groups); names without weights get empty groups.
        Weighted groups left out by `groups` are dropped from it.
    shuffle_nested: permute the weight order inside groups that hold several layers
        (nested models), as happens when a checkpoint was saved with layers frozen.
    model_weights: put everything under a `model_weights` group (Keras 2 model.save).
    fill: "random" (float32, seeded) or "zeros" (datasets left unallocated: the file
        stays tiny and reads back as zeros; good for full-size layouts).
    Returns {weight key ("layer/var"): array written} (zeros are broadcast views).
    """
    if fill not in ("random", "zeros"):
        raise ValueError(f"fill must be 'random' or 'zeros', got {fill!r}")
    rng = np.random.default_rng(seed)
    weighted = dict(layout["layers"])
    chosen = list(weighted) if groups is None else list(groups)
    unknown = [g for g in chosen if g not in weighted]
    if unknown:
        raise ValueError(f"groups not in the layout: {unknown}")
    names = list(layer_names or layout.get("all_layer_names_training") or weighted)
    names = [n for n in names if n not in weighted or n in chosen]
    names += [g for g in chosen if g not in names]

    written: dict[str, np.ndarray] = {}
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if model_weights else f
        root.attrs["layer_names"] = _bytes_attr(names)
        root.attrs["backend"] = np.bytes_(b"tensorflow")
        root.attrs["keras_version"] = np.bytes_(b"2.1.6")
        for group_name in names:
            group = root.create_group(group_name)
            entries = [(w, tuple(s)) for w, s in weighted.get(group_name, [])
                       if group_name in chosen]
            if shuffle_nested and len({w.split("/")[0] for w, _ in entries}) > 1:
                entries = [entries[i] for i in rng.permutation(len(entries))]
            if not entries:
                group.attrs["weight_names"] = []  # Keras 2.1: empty float64 attr
                continue
            group.attrs["weight_names"] = _bytes_attr([w for w, _ in entries])
            for weight_name, shape in entries:
                if fill == "random":
                    value = rng.standard_normal(shape, dtype=np.float32) * 0.1
                    group.create_dataset(weight_name, data=value)
                else:
                    group.create_dataset(weight_name, shape=shape, dtype="float32")
                    value = np.broadcast_to(np.float32(0), shape)
                written[weight_key(weight_name)] = value
    return written
