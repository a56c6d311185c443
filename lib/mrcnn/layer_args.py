"""A graph layer's config fields: read once, kept as plain keyword arguments.

The proposal, target and detection layers take their numbers as keyword arguments
(``images_per_gpu=``, ``bbox_std_dev=``, ...) so that ``get_config()`` is JSON-able and
``from_config()`` needs no Config. Each layer names the config fields it reads in
``CONFIG_FIELDS`` (keyword -> FIELD); ``kwargs_from_config(config, Layer)`` is how the
model builder reads them, once. Matterport's ``Layer(config)`` still works: keywords
left as None are read from the config passed.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def config_value(config: Any, field: str, given: Any) -> Any:
    """The value of a config field for a layer: `given` if not None, else config.FIELD."""
    if given is not None:
        return given
    if config is None:
        raise ValueError(
            f"{field} is needed: pass a config with {field} or the value itself "
            f"(got config=None and {field.lower()}=None)")
    if not hasattr(config, field):
        raise ValueError(f"config {type(config).__name__} has no field {field}")
    return getattr(config, field)


def float_list(values: Sequence[float], field: str, length: int) -> list:
    """Plain list of `length` floats (e.g. a std-dev array) or ValueError."""
    out = [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
    if len(out) != length:
        raise ValueError(f"{field} must hold {length} values, got {len(out)}: {out}")
    return out


def resolve_fields(config: Any, fields: Mapping[str, str], given: Mapping[str, Any]) -> dict:
    """{keyword: given[keyword], or config.FIELD where that is None} for every field."""
    return {kw: config_value(config, field, given.get(kw)) for kw, field in fields.items()}


def kwargs_from_config(config: Any, layer_class: type) -> dict:
    """The keyword arguments ``layer_class`` takes from ``config`` (its CONFIG_FIELDS)."""
    return resolve_fields(config, layer_class.CONFIG_FIELDS, {})


__all__ = ["config_value", "float_list", "resolve_fields", "kwargs_from_config"]
