"""Typed configuration overrides: a config with some fields replaced, from values or
from the command line's ``--set KEY=VALUE`` strings.

Used by both command lines (``samples/coco/coco.py``, ``train_siamese.py``) and by
``siamese_mrcnn.config.preset``. Fields a config computes from the others (its
``computed_fields()``) cannot be set; unknown names get a "did you mean" hint.
"""
from __future__ import annotations

import ast
import copy
import difflib
import numbers
from typing import Any, Mapping, Optional, Type, Union

import numpy as np

from mrcnn.config import Config

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def parse_value(name: str, text: str, default: Any) -> Any:
    """Parses the string ``text`` for field ``name`` like its default value.

    bool: true/false/yes/no/on/off/1/0; int: an integer (a float is accepted,
    e.g. IMAGE_MIN_SCALE=1.5); float; str: the text itself; list, tuple,
    dict, numpy array: a Python literal (ast.literal_eval). "None" gives None
    for every field but a string one. Raises ValueError naming the field.
    """
    stripped = text.strip()
    if stripped == "None" and not isinstance(default, str):
        return None
    try:
        return _parse_typed(stripped, default)
    except (ValueError, SyntaxError, TypeError) as error:
        raise ValueError("{}: expected a value of type {} (default {!r}), got {!r}".format(
            name, type(default).__name__, default, text)) from error


def _parse_typed(text: str, default: Any) -> Any:
    if isinstance(default, (bool, np.bool_)):
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("not a boolean")
    if isinstance(default, numbers.Integral):
        try:
            return int(text)
        except ValueError:
            return float(text)
    if isinstance(default, numbers.Real):
        return float(text)
    if isinstance(default, str) or callable(default):
        return text
    if isinstance(default, np.ndarray):
        return np.asarray(ast.literal_eval(text), dtype=default.dtype)
    if isinstance(default, (list, tuple)):
        value = ast.literal_eval(text)
        if not isinstance(value, (list, tuple)):
            raise TypeError("not a sequence")
        return type(default)(value)
    if isinstance(default, dict):
        value = ast.literal_eval(text)
        if not isinstance(value, dict):
            raise TypeError("not a dict")
        return value
    # Default None or another type: a literal when it is one, else the text.
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def field_names(config: Union[Config, Type[Config]]) -> list:
    """The upper-case field names of a config class or instance."""
    return [name for name in dir(config) if name.isupper() and not name.startswith("_")]


def check_override_key(config: Config, key: str) -> None:
    """ValueError unless ``key`` is a field of ``config`` that may be set."""
    computed = config.computed_fields()
    if key in computed:
        raise ValueError("{} is computed from the other fields and cannot be set; "
                         "computed fields are {}".format(key, list(computed)))
    fields = field_names(config)
    if key not in fields:
        close = difflib.get_close_matches(key, fields, n=3)
        hint = " (did you mean {}?)".format(", ".join(close)) if close else ""
        raise ValueError("unknown configuration field {!r}{}".format(key, hint))


def config_from_overrides(base: Union[Config, Type[Config]],
                          overrides: Optional[Mapping[str, Any]] = None) -> Config:
    """A new, validated configuration: ``base`` with fields replaced.

    base: a Config subclass or instance (an instance is copied, not changed).
    overrides: {"FIELD": value}; string values are parsed like the field's
        current value (see parse_value()), other values are used as they are.
    Computed fields are recomputed. Unknown or computed field names and values
    that fail validation raise ValueError.
    """
    config = base() if isinstance(base, type) else copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        check_override_key(config, key)
        if isinstance(value, str):
            value = parse_value(key, value, getattr(config, key))
        setattr(config, key, value)
    config.compute_derived()
    config.validate()
    return config


__all__ = ["parse_value", "field_names", "check_override_key", "config_from_overrides"]
