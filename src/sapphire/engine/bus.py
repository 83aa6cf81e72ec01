"""A synchronous message bus with typed events.

`subscribe(EventType, handler)` registers `handler(event)` for events of that type or
any subclass (`subscribe(OrderEvent, ...)` receives every order event; `object`
receives everything). `publish(event)` calls the handlers at once, in subscription
order, most specific type first. The handler list per concrete type is cached, so
publishing costs a dict lookup when nobody listens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["MessageBus"]

Handler = Callable[[Any], None]


class MessageBus:
    def __init__(self) -> None:
        self._subs: dict[type, list[Handler]] = {}
        self._cache: dict[type, tuple[Handler, ...]] = {}

    def subscribe(self, event_type: type, handler: Handler) -> None:
        if not isinstance(event_type, type):
            raise ValueError(f"subscribe needs an event type, got {event_type!r}")
        if not callable(handler):
            raise ValueError(f"handler must be callable, got {handler!r}")
        self._subs.setdefault(event_type, []).append(handler)
        self._cache.clear()

    def unsubscribe(self, event_type: type, handler: Handler) -> None:
        handlers = self._subs.get(event_type, [])
        if handler not in handlers:
            raise ValueError(f"{handler!r} is not subscribed to {event_type.__name__}")
        handlers.remove(handler)
        self._cache.clear()

    def handlers(self, event_type: type) -> tuple[Handler, ...]:
        cached = self._cache.get(event_type)
        if cached is None:
            out: list[Handler] = []
            for base in event_type.__mro__:
                out.extend(self._subs.get(base, ()))
            cached = self._cache[event_type] = tuple(out)
        return cached

    def publish(self, event: Any) -> None:
        for handler in self.handlers(type(event)):
            handler(event)

    def has_subscribers(self, event_type: type) -> bool:
        return bool(self.handlers(event_type))
