"""A paper node's drift events go on its bus and on its stream channel, in the shape the
notifications read (`sapphire.ops.notify.messages.event_message`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sapphire.engine.bus import MessageBus
from sapphire.ml.drift import DriftEvent
from sapphire.ops.notify.messages import event_message
from sapphire.paper.session import PaperSession


def test_a_drift_event_reaches_the_bus_and_the_stream() -> None:
    published: list[tuple[str, dict[str, Any]]] = []
    on_bus: list[DriftEvent] = []
    bus = MessageBus()
    bus.subscribe(DriftEvent, on_bus.append)
    stream = SimpleNamespace(publish=lambda c, e: published.append((c, e)))
    node = SimpleNamespace(node=SimpleNamespace(bus=bus), run_id="ml1", events=stream)
    event = DriftEvent(ts_ns=1, kind="feature", feature="rsi_14", psi=0.4, ks_p=0.001,
                       band="significant", message="rsi_14: PSI 0.40")  # fmt: skip
    PaperSession._on_drift(node, event)  # type: ignore[arg-type]
    assert on_bus == [event]
    ((channel, payload),) = published
    assert channel == "node.ml1" and payload["type"] == "drift" and payload["psi"] == 0.4
    message = event_message("ml1", payload)
    assert message is not None and message.kind == "drift" and "rsi_14" in message.text
