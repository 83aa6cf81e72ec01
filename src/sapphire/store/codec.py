"""Domain events <-> JSON payloads, exactly.

An event is stored as its class name plus its fields as JSON: decimals as their exact
text, identifiers as their strings, enums by name, tuples as lists. Decoding reads each
field's annotated type (`typing.get_type_hints`), so a payload comes back as the same
frozen dataclass with equal fields: ``decode(encode(e)) == e``.

Free-form mappings (`RiskEvent.detail`, a run's config) go through `dump_json` /
`load_json`, which tag decimals as ``{"$decimal": "0.1"}`` so they come back as Decimals.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sapphire.domain import events as domain_events
from sapphire.domain.identifiers import InstrumentId

DECIMAL_TAG = "$decimal"

__all__ = [
    "DECIMAL_TAG",
    "decode_event",
    "dump_json",
    "encode_event",
    "event_class",
    "load_json",
]


@functools.cache
def _event_classes() -> dict[str, type[domain_events.Event]]:
    found: dict[str, type[domain_events.Event]] = {}
    for name in dir(domain_events):
        obj = getattr(domain_events, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, domain_events.Event)
            and dataclasses.is_dataclass(obj)
        ):
            found[obj.__name__] = obj
    return found


def event_class(name: str) -> type[domain_events.Event]:
    """The event class called `name` (ValueError naming it if there is none)."""
    try:
        return _event_classes()[name]
    except KeyError:
        raise ValueError(f"unknown event type {name!r}") from None


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _encode_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, str | InstrumentId):
        return str(value)
    if isinstance(value, tuple | list):
        return [_encode_value(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return _tag(value)
    if isinstance(value, float):
        return value
    raise ValueError(f"cannot store {type(value).__name__} {value!r} in an event payload")


def encode_event(event: domain_events.Event) -> dict[str, Any]:
    """The event's fields as a JSON-ready dict (decimals as exact text)."""
    if not isinstance(event, domain_events.Event) or not dataclasses.is_dataclass(event):
        raise ValueError(f"not a domain event: {event!r}")
    return {f.name: _encode_value(getattr(event, f.name)) for f in dataclasses.fields(event)}


def _decode_value(kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None:
            return None
        if len(options) != 1:
            raise ValueError(f"{where}: cannot decode a value of type {kind}")
        return _decode_value(options[0], value, where)
    if value is None:
        return None
    if origin is tuple:
        args = typing.get_args(kind)
        inner = args[0] if args else Any
        return tuple(_decode_value(inner, v, where) for v in value)
    if origin in (Mapping, dict) or kind in (Mapping, dict):
        return _untag(value)
    if kind is Any or kind is object:
        return _untag(value)
    if kind is Decimal:
        return Decimal(value)
    if kind is InstrumentId:
        return InstrumentId.parse(value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind[value]
    if kind is bool or kind is int or kind is str or kind is float:
        return value
    if isinstance(kind, type) and issubclass(kind, str):
        return kind(value)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        fields = {
            f.name: _decode_value(hints[f.name], value[f.name], f"{where}.{f.name}")
            for f in dataclasses.fields(kind)
            if f.init and f.name in value
        }
        return kind(**fields)
    raise ValueError(f"{where}: cannot decode a value of type {kind}")


def decode_event(event_type: str, payload: Mapping[str, Any]) -> domain_events.Event:
    """Rebuild the event of class `event_type` from `encode_event`'s payload."""
    cls = event_class(event_type)
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name not in payload:
            continue
        kwargs[f.name] = _decode_value(hints[f.name], payload[f.name], f"{event_type}.{f.name}")
    return cls(**kwargs)


def _tag(value: Any) -> Any:
    """Make `value` JSON-safe, tagging decimals so `_untag` restores them."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Decimal):
        return {DECIMAL_TAG: str(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, str | InstrumentId):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"mapping keys must be str to be stored, got {key!r}")
            out[str(key)] = _tag(item)
        return out
    if isinstance(value, list | tuple):
        return [_tag(v) for v in value]
    raise ValueError(f"cannot store {type(value).__name__} {value!r} as JSON")


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {DECIMAL_TAG}:
            return Decimal(value[DECIMAL_TAG])
        return {k: _untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag(v) for v in value]
    return value


def dump_json(value: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of `value` (decimals tagged; ValueError naming anything else)."""
    tagged = _tag(value)
    json.dumps(tagged, allow_nan=False)  # non-finite floats -> ValueError
    return typing.cast(dict[str, Any], tagged)


def load_json(value: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `dump_json`."""
    return typing.cast(dict[str, Any], _untag(dict(value)))
