"""Rules over periods of time: marking the close and the order-to-trade ratio.

Both are judged when their period is complete, that is once every event before its end
has been seen (`on_time`), or at the end of the stream (`finish`) for the period it
stopped in.

Marking the close: a strategy's orders bunched into the last minutes before a close (the
price that settles, marks positions and sets indices), with executions that went with a
price move their way. The move is read off our own executions (all strategies': the best
evidence of the market price the store has): from our last execution before the window
(or the window's first) to our last one in it, signed by the strategy's net side.

Order-to-trade ratio: order messages (new orders, amendments, cancel requests) per
execution, per strategy and run in fixed windows. A flood of messages that rarely
trade loads the venue and can hide spoofing; venues cap the ratio.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from sapphire.compliance.surveillance.alerts import Alert, Rule, Severity, iso_time
from sapphire.compliance.surveillance.config import MarkingCloseConfig, OrderToTradeConfig
from sapphire.compliance.surveillance.ledger import Ledger, Moment, OwnFill, OwnOrder
from sapphire.domain import ClientOrderId, InstrumentId, OrderSide, StrategyId

__all__ = ["MarkingCloseRule", "OrderToTradeRule"]

_NS = 1_000_000_000
_ZERO = Decimal(0)


class MarkingCloseRule:
    """Judges each close once every event before it was seen."""

    def __init__(self, config: MarkingCloseConfig) -> None:
        self.config = config
        self._next_close: int | None = None

    def on_moment(self, moment: Moment, ledger: Ledger) -> list[Alert]:
        if self._next_close is None:
            self._next_close = self.config.closes_after(moment.ts_ns)
        return []

    def on_time(self, ts_ns: int, ledger: Ledger) -> list[Alert]:
        """Judge the closes at or before `ts_ns` (every event before it was applied)."""
        alerts: list[Alert] = []
        while self._next_close is not None and self._next_close <= ts_ns:
            alerts += self._judge(self._next_close, ledger)
            self._next_close = self.config.closes_after(self._next_close)
        return alerts

    def finish(self, last_ns: int | None, ledger: Ledger) -> list[Alert]:
        """The end of the stream: judge the close whose window it stopped in."""
        close, self._next_close = self._next_close, None
        window = int(self.config.window_min * 60 * _NS)
        if close is None or last_ns is None or last_ns < close - window:
            return []
        return self._judge(close, ledger)

    def _judge(self, close: int, ledger: Ledger) -> list[Alert]:
        config = self.config
        start = close - int(config.window_min * 60 * _NS)
        period = config.close_before(close)
        alerts = []
        for iid in sorted(ledger.submissions, key=str):
            sent = [o for ts, o in ledger.submissions[iid] if period <= ts < close]
            fills = ledger.fills_between(iid, period, close - 1)
            for owner in sorted({o.owner for o in sent}):
                alert = self._judge_one(close, start, iid, owner, sent, fills)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _judge_one(
        self, close: int, start: int, iid: InstrumentId, owner: tuple[str, StrategyId],
        sent: list[OwnOrder], fills: list[OwnFill],
    ) -> Alert | None:  # fmt: skip
        config = self.config
        mine = [o for o in sent if o.owner == owner]
        inside = [o for o in mine if o.ts_submitted is not None and o.ts_submitted >= start]
        if len(inside) < config.min_orders or len(inside) / len(mine) < config.min_share:
            return None
        late = [f for f in fills if f.ts_ns >= start]
        net = sum((f.qty * f.order.side.sign for f in late if f.order.owner == owner), _ZERO)
        if net == 0:
            return None
        before = [f for f in fills if f.ts_ns < start]
        ref = before[-1].px if before else late[0].px
        end = late[-1].px
        sign = 1 if net > 0 else -1
        move = float((end - ref) / ref) * 1e4 * sign
        if move < config.min_move_bps:
            return None
        side = OrderSide.BUY if net > 0 else OrderSide.SELL
        run, strategy = owner
        executions = sum(1 for f in late if f.order.owner == owner)
        return Alert(
            rule=Rule.MARKING_THE_CLOSE,
            severity=Severity.MEDIUM,
            ts_ns=close,
            instrument_id=iid,
            run_ids=(run,),
            strategy_ids=(strategy,),
            client_order_ids=tuple(o.client_order_id for o in inside),
            explanation=(
                f"{strategy} ({run}): {len(inside)} of its {len(mine)} orders on {iid} since "
                f"the previous close ({len(inside) / len(mine):.0%}) came in the "
                f"{config.window_min:g} min before the {iso_time(close)[11:16]} close of "
                f"{iso_time(close)[:10]}; its net {side.value} {abs(net)} in {executions} "
                f"execution(s) went with a move of {move:+.1f} bps its way ({ref} -> {end})"
            ),
            figures={
                "window_orders": len(inside), "period_orders": len(mine),
                "share": len(inside) / len(mine), "net_qty": float(net),
                "executions": executions, "from_px": float(ref), "to_px": float(end),
                "move_bps": move,
            },
        )  # fmt: skip


@dataclass(slots=True)
class _Tally:
    """One strategy's messages and executions in one window."""

    messages: Counter[str] = field(default_factory=Counter)
    executions: int = 0
    orders: dict[ClientOrderId, InstrumentId] = field(default_factory=dict)


class OrderToTradeRule:
    """Counts per (run, strategy) and window; judges a window once it has ended."""

    def __init__(self, config: OrderToTradeConfig) -> None:
        self.config = config
        self._width = int(config.window_min * 60 * _NS)
        self._windows: dict[int, dict[tuple[str, StrategyId], _Tally]] = {}

    def _tally(self, ts_ns: int, order: OwnOrder) -> _Tally:
        window = self._windows.setdefault(ts_ns - ts_ns % self._width, {})
        tally = window.setdefault(order.owner, _Tally())
        tally.orders.setdefault(order.client_order_id, order.instrument_id)
        return tally

    def on_moment(self, moment: Moment, ledger: Ledger) -> list[Alert]:
        for order, kind in moment.messages:
            self._tally(moment.ts_ns, order).messages[kind] += 1
        for fill in moment.fills:
            self._tally(moment.ts_ns, fill.order).executions += 1
        return []

    def on_time(self, ts_ns: int, ledger: Ledger) -> list[Alert]:
        """Judge the windows that ended at or before `ts_ns`."""
        ended = sorted(s for s in self._windows if s + self._width <= ts_ns)
        return [a for start in ended for a in self._judge(start)]

    def finish(self, last_ns: int | None, ledger: Ledger) -> list[Alert]:
        """The end of the stream: judge every window, the last one as far as it went."""
        return [a for start in sorted(self._windows) for a in self._judge(start)]

    def _judge(self, start: int) -> list[Alert]:
        config = self.config
        alerts = []
        for (run, strategy), tally in sorted(self._windows.pop(start).items()):
            messages = sum(tally.messages.values())
            ratio = messages / max(tally.executions, 1)
            if messages < config.min_messages or ratio <= config.max_ratio:
                continue
            instruments = set(tally.orders.values())
            executions = f"{tally.executions} execution(s)" if tally.executions else "no execution"
            alert = Alert(
                rule=Rule.ORDER_TO_TRADE,
                severity=Severity.LOW,
                ts_ns=start + self._width,
                instrument_id=instruments.pop() if len(instruments) == 1 else None,
                run_ids=(run,),
                strategy_ids=(strategy,),
                client_order_ids=tuple(tally.orders),
                explanation=(
                    f"{strategy} ({run}): {messages} order messages "
                    f"({tally.messages['new']} new, {tally.messages['amend']} amendments, "
                    f"{tally.messages['cancel']} cancels) and {executions} in the "
                    f"{config.window_min:g} min from {iso_time(start)[:16]}Z: {ratio:.1f} "
                    f"messages per execution, above {config.max_ratio:g}"
                ),
                figures={
                    "messages": messages, "new": tally.messages["new"],
                    "amendments": tally.messages["amend"],
                    "cancels": tally.messages["cancel"],
                    "executions": tally.executions, "ratio": ratio,
                    "window_start": iso_time(start),
                },
            )  # fmt: skip
            alerts.append(alert)
        return alerts
