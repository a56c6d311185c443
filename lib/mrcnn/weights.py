"""Name-keyed HDF5 weight files in the legacy Keras 2 layout.

Keras 3 saves `.weights.h5` files keyed by auto-generated class paths, which neither move
between the training and the inference graph nor read the released Keras 2.1 checkpoints.
This module reads and writes the Keras 2 layout with h5py and matches every weight by
its KEY "leaf_layer_name/variable_name" (e.g. "conv1/kernel", "rpn_conv_shared/bias"):

- nested Models (`resnet_model`, `rpn_model`, ...) contribute their inner layers under
  the inner layer names, unprefixed, as Keras 2 stored them;
- wrapper layers (mrcnn.layers.TimeDistributed, keras Wrapper subclasses) contribute the
  wrapped layer's variables under the WRAPPER's name, as Keras 2 stored TimeDistributed;
- the file side takes the key from each entry of a group's `weight_names` attribute, so
  a nested group in any order, or a flat ImageNet file (one group per leaf layer), fills
  the same model.

File layout (Keras 2.1 `save_weights`): root attributes `layer_names` (every top-level
layer, weightless ones included), `backend`, `keras_version` (possibly all under a
`model_weights` group); one group per top-level layer with attribute `weight_names`
(b"conv1/kernel:0", ...) and the datasets at group[weight_name].
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import h5py
import keras
import numpy as np

logger = logging.getLogger(__name__)

KERAS_VERSION = np.bytes_(b"2.1.6")  # fixed-length strings, as h5py 2 wrote them
BACKEND = np.bytes_(b"tensorflow")
# HDF5 object headers hold at most 64 KiB; Keras 2.2+ splits larger attributes into
# numbered chunks ("layer_names0", "layer_names1", ...). We read both forms.
_HDF5_ATTR_LIMIT = 64512
_SUFFIX = re.compile(r":\d+$")


############################################################
#  Model side: which variable has which key
############################################################

@dataclass(frozen=True)
class WeightEntry:
    """One model variable and where it lives.

    key: "leaf/var" as stored in Keras 2 files.
    top_level: name of the top-level layer (the file group it is written to).
    leaf: name of the layer owning the key (a wrapper's name for wrapped layers).
    layer: the layer object that holds the variable (the wrapped layer for wrappers).
    """
    key: str
    variable: keras.Variable
    top_level: str
    leaf: str
    layer: keras.layers.Layer


def _top_layers(model: keras.Model) -> list:
    """Top-level layers; a ParallelModel-style wrapper is looked through."""
    inner = getattr(model, "inner_model", None)
    return list(inner.layers if isinstance(inner, keras.Model) else model.layers)


def _wrapped(layer: keras.layers.Layer) -> Optional[keras.layers.Layer]:
    """The layer inside a wrapper (keras Wrapper subclasses such as
    mrcnn.layers.TimeDistributed, or any layer exposing the wrapped one as `.layer`)."""
    inner = getattr(layer, "layer", None)
    return inner if isinstance(inner, keras.layers.Layer) else None


def _innermost(layer: keras.layers.Layer) -> keras.layers.Layer:
    inner = _wrapped(layer)
    return layer if inner is None else _innermost(inner)


def _walk(layer: keras.layers.Layer, top_level: str) -> Iterable[WeightEntry]:
    """Yield the entries of one layer, descending into nested models."""
    if isinstance(layer, keras.Model):
        for sub in layer.layers:
            yield from _walk(sub, top_level)
        return
    holder = _innermost(layer)
    for variable in layer.weights:
        yield WeightEntry(f"{layer.name}/{variable.name}", variable, top_level,
                          layer.name, holder)


def weight_entries(model: keras.Model) -> list[WeightEntry]:
    """Every variable of `model` with its key, in layer order.

    Raises ValueError when two different variables would get the same key (two layers
    of one name in different nested models, or a custom layer with two sub-layers that
    both own e.g. a 'kernel'): such a model cannot be saved or loaded by name.
    """
    entries: list[WeightEntry] = []
    by_key: dict[str, WeightEntry] = {}
    seen_vars: set[int] = set()
    for top in _top_layers(model):
        for entry in _walk(top, top.name):
            if id(entry.variable) in seen_vars:
                continue  # a shared layer reached twice (e.g. used at top level too)
            other = by_key.get(entry.key)
            if other is not None:
                raise ValueError(
                    f"Duplicate weight key '{entry.key}': found in top-level layers "
                    f"'{other.top_level}' and '{entry.top_level}'. Weight keys "
                    "'layer/variable' must be unique; give the layers distinct names.")
            seen_vars.add(id(entry.variable))
            by_key[entry.key] = entry
            entries.append(entry)
    return entries


def weight_map(model: keras.Model) -> dict[str, keras.Variable]:
    """{"leaf_layer/var_name": variable} for every variable of `model`."""
    return {e.key: e.variable for e in weight_entries(model)}


def _keras2_order(top: keras.layers.Layer, entries: list[WeightEntry]) -> list[WeightEntry]:
    """Order a group's entries as Keras 2 wrote them.

    Keras 2 Model.weights = trainable_weights + non_trainable_weights, each collected
    layer by layer, so a nested model's group order depends on what is frozen. Plain
    layers use the same rule, which gives [kernel, bias] and
    [gamma, beta, moving_mean, moving_variance] whether frozen or not.
    """
    position = {id(e.variable): e for e in entries}
    ordered = [position.pop(id(v)) for v in top.trainable_weights + top.non_trainable_weights
               if id(v) in position]
    return ordered + list(position.values())  # anything Keras did not list, kept last


############################################################
#  Writing
############################################################

def _bytes_array(names: Sequence[str]) -> np.ndarray:
    if not names:
        return np.array([], dtype="S1")
    encoded = [n.encode("utf8") for n in names]
    return np.array(encoded, dtype=f"S{max(len(e) for e in encoded)}")


def _write_attr(group: h5py.Group, name: str, values: Sequence[str]) -> None:
    """Write a byte-string array attribute, chunked like Keras 2.2+ when too large."""
    data = _bytes_array(values)
    if data.nbytes <= _HDF5_ATTR_LIMIT:
        group.attrs[name] = data
        return
    n_chunks = int(np.ceil(data.nbytes / _HDF5_ATTR_LIMIT))
    for i, chunk in enumerate(np.array_split(data, n_chunks)):
        group.attrs[f"{name}{i}"] = chunk


def _write_layer_group(f: h5py.File, top: keras.layers.Layer,
                       entries: list[WeightEntry]) -> None:
    group = f.create_group(top.name)
    ordered = _keras2_order(top, entries)
    names = [f"{e.key}:0" for e in ordered]
    _write_attr(group, "weight_names", names)
    for name, entry in zip(names, ordered):
        value = np.asarray(keras.ops.convert_to_numpy(entry.variable))
        group.create_dataset(name, data=value)


def save_weights(model: keras.Model, filepath: str) -> None:
    """Save `model`'s weights in the legacy Keras 2.1 HDF5 layout, atomically.

    The file is written to a temporary file in the target directory and moved onto
    `filepath` only when complete, so a failure never leaves a truncated checkpoint
    (and an existing file stays untouched).
    """
    filepath = os.fspath(filepath)
    entries = weight_entries(model)
    per_top: dict[str, list[WeightEntry]] = {}
    for e in entries:
        per_top.setdefault(e.top_level, []).append(e)
    tops = _top_layers(model)
    directory = os.path.dirname(os.path.abspath(filepath))
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp_", suffix=".h5", dir=directory)
    os.close(fd)
    try:
        with h5py.File(tmp_path, "w") as f:
            _write_attr(f, "layer_names", [t.name for t in tops])
            f.attrs["backend"] = BACKEND
            f.attrs["keras_version"] = KERAS_VERSION
            for top in tops:
                _write_layer_group(f, top, per_top.get(top.name, []))
            f.flush()
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        _pause_for_test(filepath)
        os.replace(tmp_path, filepath)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    logger.info("Saved %d weights of %d layers to %s", len(entries), len(tops), filepath)


#: Tests only: a file name (e.g. "siamese_mrcnn_0002.h5") whose save stops after the
#: temporary file is written and before it is renamed, so that a test can kill the
#: process at the worst moment (tests/e2e/test_train_siamese_cli.py).
PAUSE_ENV = "MRCNN_TEST_PAUSE_BEFORE_RENAME"


def _pause_for_test(filepath: str) -> None:
    name = os.environ.get(PAUSE_ENV)
    if not name or os.path.basename(filepath) != name:
        return
    with open(filepath + ".paused", "w", encoding="utf-8"):
        pass  # the signal to the test: the temporary file is complete, not renamed
    import time

    time.sleep(600)  # the test kills the process long before


############################################################
#  Reading
############################################################

@dataclass(frozen=True)
class FileWeight:
    """One weight entry of a file: its group, stored name, key and shape."""
    group: str
    name: str
    key: str
    shape: tuple


def _read_attr(group: h5py.Group, name: str) -> Optional[list[str]]:
    """A byte-string array attribute as a list of str (chunked form too); None if absent."""
    if name in group.attrs:
        raw = list(np.atleast_1d(group.attrs[name]))
    elif f"{name}0" in group.attrs:
        raw, i = [], 0
        while f"{name}{i}" in group.attrs:
            raw.extend(np.atleast_1d(group.attrs[f"{name}{i}"]))
            i += 1
    else:
        return None
    if raw and not isinstance(raw[0], (bytes, np.bytes_, str)):
        return []  # Keras 2.1 wrote [] for weightless layers, read back as float64
    return [r.decode("utf8") if isinstance(r, (bytes, np.bytes_)) else str(r) for r in raw]


def file_key(weight_name: str) -> str:
    """'model_1/conv1/kernel:0' -> 'conv1/kernel': the last two path segments."""
    return "/".join(_SUFFIX.sub("", weight_name).split("/")[-2:])


def _open_root(f: h5py.File, filepath: str) -> tuple[h5py.Group, list[str]]:
    """The group holding `layer_names` (root or `model_weights`) and the layer names."""
    root = f
    if _read_attr(f, "layer_names") is None and "model_weights" in f:
        root = f["model_weights"]
    names = _read_attr(root, "layer_names")
    if names is None:
        raise ValueError(
            f"{filepath} is not a Keras 2 weights file: expected a root (or "
            "'model_weights') attribute 'layer_names' and one group per layer with "
            f"'weight_names'; found root keys {sorted(f.keys())[:10]} and attributes "
            f"{sorted(f.attrs.keys())[:10]}. (Keras 3 '.weights.h5' files load with "
            "keras' own Model.load_weights.)")
    return root, names


def _read_entries(root: h5py.Group, layer_names: list[str],
                  filepath: str) -> list[FileWeight]:
    entries = []
    for layer in layer_names:
        if layer not in root:
            raise ValueError(f"{filepath}: layer_names lists '{layer}' but the file has "
                             "no group of that name")
        group = root[layer]
        for name in _read_attr(group, "weight_names") or []:
            if name not in group:
                raise ValueError(f"{filepath}: group '{layer}' lists weight '{name}' "
                                 "but has no dataset of that name")
            entries.append(FileWeight(layer, name, file_key(name), tuple(group[name].shape)))
    return entries


def _check_file(filepath: str) -> str:
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"Weights file not found: {filepath}")
    if not h5py.is_hdf5(filepath):
        raise ValueError(f"{filepath} is not an HDF5 file: expected a Keras 2 style "
                         ".h5 weights file")
    return filepath


def find_named_weights(source: str, names: dict[str, str], folders: Sequence[str]) -> str:
    """The weights file ``source`` stands for: a name in ``names`` (name -> file name,
    looked up in ``folders`` in order) or a file path. Nothing is downloaded.
    FileNotFoundError says what was looked for and where; ValueError, for a string that
    is neither a known name nor a path, lists the names."""
    if source in names:
        file_name = names[source]
        for folder in folders:
            path = os.path.join(folder, file_name)
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(
            f"ImageNet weights {source!r} ({file_name}) not found in "
            f"{', '.join(folders)}: weights are never downloaded, place the file there "
            "(or pass its path, or set MRCNN_IMAGENET_WEIGHTS).")
    if os.path.isfile(source):
        return source
    if os.sep in source or source.endswith(".h5"):
        raise FileNotFoundError(f"ImageNet weights not found: {source} (weights are "
                                "never downloaded)")
    raise ValueError(f"ImageNet weights: expected a file path or one of "
                     f"{sorted(names)}, got {source!r}")


def read_layout(filepath: str) -> dict[str, list[tuple[str, tuple]]]:
    """{group: [(weight_name, shape), ...]} for every group in `layer_names` order."""
    filepath = _check_file(filepath)
    with h5py.File(filepath, "r") as f:
        root, names = _open_root(f, filepath)
        layout: dict[str, list[tuple[str, tuple]]] = {n: [] for n in names}
        for e in _read_entries(root, names, filepath):
            layout[e.group].append((e.name, e.shape))
    return layout


############################################################
#  Loading
############################################################

class ShapeMismatchError(ValueError):
    """Weights of the file whose shapes differ from the model's (nothing was assigned).

    mismatched: [(key "layer/var", model's shape, file's shape)], in the model's order.
    """

    def __init__(self, mismatched: Sequence[tuple[str, tuple, tuple]]):
        self.mismatched = list(mismatched)
        key, expected, found = self.mismatched[0]
        super().__init__(
            f"Shape mismatch for layer '{key.split('/')[0]}', weight '{key}': the model "
            f"expects {expected}, the file has {found} ({len(self.mismatched)} mismatches "
            "in all). Pass exclude=[...] or skip_mismatch=True to skip them.")

    def __reduce__(self):
        # Rebuilt from the list, not the message, when it crosses a process (pickle).
        return type(self), (self.mismatched,)


@dataclass
class LoadReport:
    """What `load_weights` did, by weight key ("layer/var").

    loaded: keys assigned from the file.
    skipped_excluded: model keys not loaded because their layer was excluded.
    missing_in_file: model keys the file does not provide (left unchanged).
    unused_in_file: file keys the model has no variable for.
    mismatched: (key, expected_shape, found_shape) skipped under skip_mismatch.
    by_position: file groups matched by position inside a same-named layer because
        their weight names were not "layer/var" (Keras 1 style 'conv1_W:0').
    """
    loaded: list[str] = field(default_factory=list)
    skipped_excluded: list[str] = field(default_factory=list)
    missing_in_file: list[str] = field(default_factory=list)
    unused_in_file: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    by_position: list[str] = field(default_factory=list)

    def summary(self, limit: int = 8) -> str:
        """A few lines: counts, then the first `limit` names of each non-empty list."""
        def head(items: list) -> str:
            shown = ", ".join(str(i) for i in items[:limit])
            return shown + (f", ... (+{len(items) - limit})" if len(items) > limit else "")

        lines = [f"Loaded {len(self.loaded)} weights; excluded {len(self.skipped_excluded)}, "
                 f"missing in file {len(self.missing_in_file)}, unused in file "
                 f"{len(self.unused_in_file)}, shape mismatch {len(self.mismatched)}."]
        for label, items in (("excluded", self.skipped_excluded),
                             ("missing in file", self.missing_in_file),
                             ("unused in file", self.unused_in_file),
                             ("shape mismatch (key, model, file)", self.mismatched),
                             ("matched by position in groups", self.by_position)):
            if items:
                lines.append(f"  {label}: {head(items)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        # What a notebook shows for `model.load_weights(...)` as a cell's last line, as in
        # Matterport's demo (which returned None there): counts and a few names, not the
        # hundreds of keys. The lists themselves stay in the fields.
        return f"<LoadReport: {self.summary(limit=3)}>"


def _is_excluded(entry: WeightEntry, exclude: set[str]) -> bool:
    return entry.top_level in exclude or entry.leaf in exclude


def _key_index(file_entries: list[FileWeight], filepath: str) -> dict[str, FileWeight]:
    index: dict[str, FileWeight] = {}
    for e in file_entries:
        if e.key in index:
            raise ValueError(
                f"{filepath}: weight key '{e.key}' appears twice (groups "
                f"'{index[e.key].group}' and '{e.group}'); cannot match by name")
        index[e.key] = e
    return index


def _positional_matches(file_entries: list[FileWeight], model_keys: dict[str, WeightEntry],
                        report: LoadReport) -> dict[str, FileWeight]:
    """Keras 2 by_name fallback for groups whose weight names are not 'layer/var'.

    A group named like a model leaf layer, none of whose keys the model knows and
    holding as many weights as that layer, is matched by position (the order Keras 2
    used inside a layer). This reads e.g. old ImageNet files with 'conv1_W:0' names.
    """
    per_group: dict[str, list[FileWeight]] = {}
    for e in file_entries:
        per_group.setdefault(e.group, []).append(e)
    per_leaf: dict[str, list[WeightEntry]] = {}
    for m in model_keys.values():
        per_leaf.setdefault(m.leaf, []).append(m)
    matches = {}
    for group, items in per_group.items():
        leaf = per_leaf.get(group)
        if (leaf and len(leaf) == len(items)
                and not any(i.key in model_keys for i in items)):
            matches.update({m.key: i for m, i in zip(leaf, items)})
            report.by_position.append(group)
    return matches


def _plan(model_entries: list[WeightEntry], file_entries: list[FileWeight],
          exclude: set[str], filepath: str) -> tuple[list, LoadReport]:
    """Pair model variables with file entries by key; no assignment yet."""
    report = LoadReport()
    model_keys = {e.key: e for e in model_entries}
    index = _key_index(file_entries, filepath)
    fallback = _positional_matches(file_entries, model_keys, report)
    pairs, used = [], set()
    for entry in model_entries:
        source = index.get(entry.key) or fallback.get(entry.key)
        if source is not None:
            used.add(id(source))
        if _is_excluded(entry, exclude):
            report.skipped_excluded.append(entry.key)
        elif source is None:
            report.missing_in_file.append(entry.key)
        else:
            pairs.append((entry, source))
    report.unused_in_file = [e.key for e in file_entries if id(e) not in used]
    if file_entries and model_entries and not used:
        model_layers = sorted({e.top_level for e in model_entries})
        file_layers = sorted({e.group for e in file_entries})
        raise ValueError(
            f"{filepath} shares no weight with the model. Model layers: "
            f"{model_layers[:10]}; file layers: {file_layers[:10]}.")
    return pairs, report


def _check_topology(model: keras.Model, file_entries: list[FileWeight],
                    filepath: str) -> None:
    """by_name=False: the file's weighted groups must be the model's weighted layers.

    Keras 2 also required the same order, but Keras 3 may list the layers of the very
    same graph in another topological order, so only the set is enforced here.
    """
    model_layers = [t.name for t in _top_layers(model) if t.weights]
    file_layers = list(dict.fromkeys(e.group for e in file_entries))
    only_model = [n for n in model_layers if n not in set(file_layers)]
    only_file = [n for n in file_layers if n not in set(model_layers)]
    if only_model or only_file:
        raise ValueError(
            f"by_name=False needs the file's weighted layers to be the model's: the model "
            f"has {len(model_layers)} weighted layers, {filepath} has {len(file_layers)}; "
            f"only in the model: {only_model[:5]}, only in the file: {only_file[:5]}. "
            "Use by_name=True to load across different graphs.")
    if model_layers != file_layers:
        logger.info("%s lists the model's layers in another order; loading by name",
                    filepath)


def _assign(pairs: list, root: h5py.Group, report: LoadReport,
            skip_mismatch: bool) -> None:
    values = []
    for entry, source in pairs:
        expected = tuple(entry.variable.shape)
        if expected != source.shape:
            report.mismatched.append((entry.key, expected, source.shape))
            continue
        values.append((entry, root[source.group][source.name][()]))
    if report.mismatched and not skip_mismatch:
        raise ShapeMismatchError(report.mismatched)
    for entry, value in values:
        entry.variable.assign(value)
        report.loaded.append(entry.key)


def load_weights(model: keras.Model, filepath: str, by_name: bool = True,
                 exclude: Optional[Sequence[str]] = None,
                 skip_mismatch: bool = False) -> LoadReport:
    """Load a legacy Keras 2 HDF5 weights file into `model` by weight key.

    by_name=True (default): every model variable whose key "layer/var" is in the file
        is assigned, whatever group holds it and in whatever order, so files move
        between the training and inference graphs and flat files fill nested models.
    by_name=False: Matterport's topological mode, for a file of this very graph. The
        file's weighted groups must be exactly the model's weighted top-level layers and
        every weight must be present on both sides, else ValueError. Weights are still
        assigned by name, not position, and the group order is not enforced (Keras 3
        may order the layers of the same graph differently from Keras 2). Like
        Matterport, passing `exclude` switches to by_name=True.
    exclude: top-level (or leaf) layer names whose weights are left untouched.
    skip_mismatch: report shape mismatches instead of raising ValueError.

    Nothing is assigned unless the whole load can proceed. Returns a LoadReport.
    """
    filepath = _check_file(filepath)
    exclude_set = set(exclude or [])
    if exclude_set:
        by_name = True
    model_entries = weight_entries(model)
    unknown = sorted(exclude_set - {e.top_level for e in model_entries}
                     - {e.leaf for e in model_entries})
    if unknown:  # a misspelt name excludes nothing, and the load goes on
        logger.warning("exclude: no layer with weights named %s in the model; those names "
                       "exclude nothing", ", ".join(repr(name) for name in unknown))
    with h5py.File(filepath, "r") as f:
        root, layer_names = _open_root(f, filepath)
        file_entries = _read_entries(root, layer_names, filepath)
        if not file_entries:
            raise ValueError(f"{filepath} holds no weights: its {len(layer_names)} layer "
                             "groups all have empty 'weight_names'")
        if not by_name:
            _check_topology(model, file_entries, filepath)
        pairs, report = _plan(model_entries, file_entries, exclude_set, filepath)
        if not by_name and (report.missing_in_file or report.unused_in_file):
            raise ValueError(
                f"by_name=False: {filepath} and the model differ inside layers: missing "
                f"in file {report.missing_in_file[:5]}, not in model "
                f"{report.unused_in_file[:5]}")
        _assign(pairs, root, report, skip_mismatch)
    logger.info("Weights from %s:\n%s", filepath, report.summary())
    return report
