"""One JSON encoder for everything Sapphire prints or stores as JSON.

`jsonable(value)` turns a value into plain JSON data: NumPy scalars and arrays, tuples,
`Path`s, `Decimal`s (as text: money is never approximated by a float), times (ISO text)
and objects with `to_mapping()` are converted; NaN and infinities become None, since JSON
has no such numbers. Anything else is refused with a ValueError naming where it was.
`to_json(value)` is the text; its common case (plain, finite values) is one call of the C
encoder, and only values it refuses are converted first.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["jsonable", "to_json"]

_PLAIN = frozenset((str, int, bool))  # exact types JSON takes as they are (None aside)


def jsonable(value: Any, where: str = "value", *, str_keys: bool = False) -> Any:
    """`value` as plain JSON data (see the module docstring). Mapping keys must be
    strings unless `str_keys` (then they are converted with `str`)."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        return value if value - value == 0.0 else None  # NaN and ±inf give NaN here
    if kind is dict or kind is list:
        return _container(value, where, str_keys)
    np = sys.modules.get("numpy")  # a NumPy value exists only once NumPy is imported
    if isinstance(value, bool | str):
        return value if kind is str or kind is bool else str.__str__(value)
    if isinstance(value, datetime | date):  # pandas Timestamps too
        return value.isoformat()
    if np is not None and isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int) or (np is not None and isinstance(value, np.integer)):
        return int(value)
    if isinstance(value, float) or (np is not None and isinstance(value, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_mapping"):
        return jsonable(value.to_mapping(), where, str_keys=str_keys)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                if not str_keys:
                    raise ValueError(f"{where} has a non-str key {key!r}: JSON keys are strings")
                key = str(key)
            out[key] = jsonable(item, f"{where}[{key!r}]", str_keys=str_keys)
        return out
    if isinstance(value, list | tuple) or (np is not None and isinstance(value, np.ndarray)):
        return [jsonable(item, f"{where}[{i}]", str_keys=str_keys) for i, item in enumerate(value)]
    raise ValueError(f"{where} is a {type(value).__name__} ({value!r:.80}), not storable as JSON")


def _container(value: dict[Any, Any] | list[Any], where: str, str_keys: bool) -> Any:
    """`jsonable` of a plain dict or list, its plain items converted inline: the optimiser
    stores a few of these per trial, at thousands of trials a second. Same results as the
    general Mapping and list branches of `jsonable`."""
    if isinstance(value, list):  # exactly a list: only those get here
        return [
            (item if item - item == 0.0 else None)
            if type(item) is float
            else item
            if item is None or type(item) in _PLAIN
            else jsonable(item, f"{where}[{i}]", str_keys=str_keys)
            for i, item in enumerate(value)
        ]
    out = {}
    for key, item in value.items():
        if not isinstance(key, str):
            if not str_keys:
                raise ValueError(f"{where} has a non-str key {key!r}: JSON keys are strings")
            key = str(key)
        kind = type(item)
        if kind is float:
            out[key] = item if item - item == 0.0 else None
        elif item is None or kind in _PLAIN:
            out[key] = item
        else:
            out[key] = jsonable(item, f"{where}[{key!r}]", str_keys=str_keys)
    return out


def to_json(value: Any, *, indent: int | None = None, str_keys: bool = True) -> str:
    """JSON text of `value` (NaN and ±inf as null; see `jsonable`)."""
    try:
        return json.dumps(value, allow_nan=False, indent=indent)
    except (ValueError, TypeError):
        return json.dumps(jsonable(value, str_keys=str_keys), indent=indent)
