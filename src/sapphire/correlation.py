"""Correlation ids: one id that follows a signal to its orders, fills and notifications.

The id lives in a context variable, so it follows the code that runs for one signal (or
one service request) through function calls, `await`s and tasks started from it, and
never leaks into a neighbour's work. `configure_logging` adds it to every log line as
`correlation_id`.

A node binds an order's `client_order_id` when a strategy submits the order and again when
a venue event for that order comes in, so the order's submit, its fills and the
notifications they trigger share one id; the service binds the request id of each request
(`RequestIdMiddleware`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

__all__ = [
    "add_correlation_id",
    "bind_correlation",
    "correlated",
    "correlation_id",
    "new_correlation_id",
    "reset_correlation",
]

#: the longest id accepted (an order's client_order_id is at most 200 characters)
MAX_LENGTH = 200
_VALID = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces: safe in a header

_CORRELATION: ContextVar[str | None] = ContextVar("sapphire_correlation_id", default=None)


def check_correlation_id(value: object) -> str:
    """`value` if it is a usable correlation id, else a ValueError naming it."""
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH:
        raise ValueError(
            f"correlation id must be a str of 1..{MAX_LENGTH} characters, got {value!r}"
        )
    if _VALID.fullmatch(value) is None:
        raise ValueError(f"correlation id must be printable ASCII without spaces, got {value!r}")
    return value


def new_correlation_id() -> str:
    """A fresh random id (32 hex digits)."""
    return uuid.uuid4().hex


def correlation_id() -> str | None:
    """The id bound in the current context (None when nothing is bound)."""
    return _CORRELATION.get()


def bind_correlation(value: str | None) -> Token[str | None]:
    """Bind `value` as the current context's correlation id (None unbinds); returns the
    token `reset_correlation` takes to put the previous id back."""
    return _CORRELATION.set(None if value is None else check_correlation_id(value))


def reset_correlation(token: Token[str | None]) -> None:
    """Put back the id that was bound before the `bind_correlation` that gave `token`."""
    _CORRELATION.reset(token)


@contextmanager
def correlated(value: str | None) -> Iterator[str | None]:
    """`with correlated(cid): ...`: bind `value` for the block, then restore the previous."""
    token = bind_correlation(value)
    try:
        yield value
    finally:
        _CORRELATION.reset(token)


def add_correlation_id(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add the bound id as `correlation_id` (an explicit one wins)."""
    bound = _CORRELATION.get()
    if bound is not None:
        event_dict.setdefault("correlation_id", bound)
    return event_dict
