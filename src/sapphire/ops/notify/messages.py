"""Messages built from a node's events on the event stream.

A node publishes on `node.<run_id>` (`sapphire.engine.stream`): orders, fills, positions,
balances, equity, risk events, trading-state changes and status. `event_message` turns
the ones a person should hear about into a `Message`:

- trade: a fill (side, quantity, instrument, price, fee);
- risk: a risk event (the kill switch is critical) and a change of trading state;
- error: an order the venue rejected or the risk engine denied, a status that reports an
  error;
- drift: a `{"type": "drift"}` event (an ml strategy's `DriftEvent`).

`DailySummary` adds up a day of events per node (fills, volume, fees, equity at the
start and the end, risk events, rejections) into one `summary` message. A message's
`key` names what it is about, so that the same thing said again is de-duplicated.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sapphire.correlation import check_correlation_id

__all__ = ["DailySummary", "Message", "event_message"]

_SEVERITIES = ("info", "warning", "critical")
_REJECTED = ("OrderRejected", "OrderDenied", "OrderModifyRejected", "OrderCancelRejected")
_ERROR_STATUSES = ("failed", "error", "crashed")


@dataclass(frozen=True)
class Message:
    """A notification: what it is about (`kind`), a title and a text, and a `key` (the
    same key within the de-duplication window is sent once)."""

    kind: str
    title: str
    text: str
    key: str
    severity: str = "info"
    run_id: str | None = None
    ts_ns: int = field(default_factory=time.time_ns)
    fields: dict[str, str] = field(default_factory=dict)
    #: the correlation id of the node event it is about (its order's signal)
    correlation_id: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in _SEVERITIES:
            raise ValueError(
                f"severity {self.severity!r} is invalid: expected {', '.join(_SEVERITIES)}"
            )

    def plain(self) -> str:
        """The title and the text as plain text."""
        return f"{self.title}\n{self.text}" if self.text else self.title

    def as_json(self) -> dict[str, Any]:
        """The message as a JSON object (webhooks)."""
        return {
            "kind": self.kind, "severity": self.severity, "title": self.title,
            "text": self.text, "run_id": self.run_id, "key": self.key, "ts_ns": self.ts_ns,
            "fields": dict(self.fields),
        }  # fmt: skip


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _dec(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _ts(event: dict[str, Any]) -> int:
    ts = event.get("ts_ns")
    return int(ts) if isinstance(ts, int) and not isinstance(ts, bool) else time.time_ns()


def event_message(run_id: str, event: dict[str, Any]) -> Message | None:
    """The message `event` of node `run_id` is worth, or None; it carries the event's
    correlation id on."""
    message = _event_message(run_id, event)
    cid = event.get("correlation_id")
    if message is None or not isinstance(cid, str):
        return message
    with contextlib.suppress(ValueError):  # not a usable id: the message goes without it
        return replace(message, correlation_id=check_correlation_id(cid))
    return message


def _event_message(run_id: str, event: dict[str, Any]) -> Message | None:
    kind = event.get("type")
    ts = _ts(event)
    if kind == "fill":
        side, qty = _text(event.get("side")), event.get("last_qty")
        inst = event.get("instrument_id")
        px, fee, ccy = event.get("last_px"), event.get("fee"), _text(event.get("fee_currency"))
        return Message(
            "trade", f"[{run_id}] Fill: {side} {qty} {inst} @ {px}",
            f"fee {fee} {ccy}".rstrip() + f", order {event.get('client_order_id')}",
            key=f"fill:{run_id}:{event.get('trade_id') or event.get('event_id')}",
            run_id=run_id, ts_ns=ts,
            fields={"side": side, "quantity": _text(qty), "instrument_id": _text(inst),
                    "price": _text(px), "fee": _text(fee)},
        )  # fmt: skip
    if kind == "order" and event.get("event") in _REJECTED:
        reason = _text(event.get("reason")) or "no reason given"
        what = "denied" if event.get("event") == "OrderDenied" else "rejected"
        return Message(
            "error", f"[{run_id}] Order {what}: {event.get('side')} {event.get('quantity')} "
            f"{event.get('instrument_id')}", reason,
            key=f"reject:{run_id}:{what}:{reason}", severity="warning", run_id=run_id, ts_ns=ts,
            fields={"client_order_id": _text(event.get("client_order_id")), "reason": reason},
        )  # fmt: skip
    if kind == "risk":
        risk_kind = _text(event.get("kind")) or "risk"
        reason = _text(event.get("reason"))
        critical = "kill" in risk_kind or "halt" in reason.lower()
        return Message(
            "risk", f"[{run_id}] Risk: {risk_kind}", reason,
            key=f"risk:{run_id}:{risk_kind}:{reason}",
            severity="critical" if critical else "warning", run_id=run_id, ts_ns=ts,
            fields={"risk_kind": risk_kind, "reason": reason},
        )  # fmt: skip
    if kind == "trading_state":
        state, previous = _text(event.get("state")), _text(event.get("previous")) or "?"
        return Message(
            "risk", f"[{run_id}] Trading state {previous} -> {state}",
            _text(event.get("reason")), key=f"state:{run_id}:{state}",
            severity="critical" if state == "HALTED" else "warning", run_id=run_id, ts_ns=ts,
            fields={"state": state, "previous": previous},
        )  # fmt: skip
    if kind == "drift":
        subject = _text(event.get("feature")) or _text(event.get("kind")) or "model"
        return Message(
            "drift", f"[{run_id}] Drift: {subject} ({_text(event.get('band')) or 'alert'})",
            _text(event.get("message")), key=f"drift:{run_id}:{subject}", severity="warning",
            run_id=run_id, ts_ns=ts, fields={"feature": subject},
        )  # fmt: skip
    if kind == "status" and (event.get("error") or event.get("status") in _ERROR_STATUSES):
        error = _text(event.get("error")) or f"status {event.get('status')}"
        return Message(
            "error", f"[{run_id}] Node error", error, key=f"error:{run_id}:{error}",
            severity="critical", run_id=run_id, ts_ns=ts, fields={"error": error},
        )  # fmt: skip
    return None


@dataclass
class _Day:
    fills: int = 0
    volume: Decimal = Decimal(0)
    fees: dict[str, Decimal] = field(default_factory=dict)
    equity_first: Decimal | None = None
    equity_last: Decimal | None = None
    currency: str = ""
    risk_events: int = 0
    rejections: int = 0


class DailySummary:
    """A day of each node's events, added up into one summary message."""

    def __init__(self) -> None:
        self.days: dict[str, _Day] = {}

    def add(self, run_id: str, event: dict[str, Any]) -> None:
        """Count `event` of node `run_id`."""
        day = self.days.setdefault(run_id, _Day())
        kind = event.get("type")
        if kind == "fill":
            day.fills += 1
            qty, px = _dec(event.get("last_qty")), _dec(event.get("last_px"))
            if qty is not None and px is not None:
                day.volume += abs(qty * px)
            fee = _dec(event.get("fee"))
            if fee is not None:
                ccy = _text(event.get("fee_currency")) or "?"
                day.fees[ccy] = day.fees.get(ccy, Decimal(0)) + fee
        elif kind == "equity":
            equity = _dec(event.get("equity"))
            if equity is not None:
                if day.equity_first is None:
                    day.equity_first = equity
                day.equity_last = equity
                day.currency = _text(event.get("currency"))
        elif kind == "risk":
            day.risk_events += 1
        elif kind == "order" and event.get("event") in _REJECTED:
            day.rejections += 1

    def take(self, on: date) -> Message | None:
        """The summary of the day `on` (None when no node did anything), then a new day."""
        days, self.days = self.days, {}
        if not days:
            return None
        lines = []
        for run_id in sorted(days):
            d = days[run_id]
            parts = [f"{d.fills} fills", f"volume {d.volume.normalize():f}"]
            if d.fees:
                fees = ", ".join(f"{v.normalize():f} {c}" for c, v in sorted(d.fees.items()))
                parts.append(f"fees {fees}")
            if d.equity_first is not None and d.equity_last is not None:
                change = d.equity_last - d.equity_first
                parts.append(
                    f"equity {d.equity_last.normalize():f} {d.currency} "
                    f"({'+' if change >= 0 else ''}{change.normalize():f})"
                )
            if d.risk_events:
                parts.append(f"{d.risk_events} risk events")
            if d.rejections:
                parts.append(f"{d.rejections} rejections")
            lines.append(f"{run_id}: " + ", ".join(parts))
        stamp = datetime(on.year, on.month, on.day, 23, 59, 59, tzinfo=UTC)
        return Message(
            "summary", f"Daily summary {on.isoformat()}", "\n".join(lines),
            key=f"summary:{on.isoformat()}", ts_ns=int(stamp.timestamp() * 1e9),
            fields={"date": on.isoformat(), "nodes": str(len(days))},
        )  # fmt: skip
