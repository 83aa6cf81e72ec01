"""Spoofing and layering: orders placed to be seen, not to trade.

A spoofer rests a large order near the touch on one side, so that others trade on the
other side at a better price for it, executes there, and cancels the large order
before it can fill. Layering does the same with several orders stepped over price
levels on one side. Both leave the same trace in our own records: limit orders that
rested (accepted, GTC/GTD) and were canceled mostly unfilled, with one of our
executions on the opposite side while they rested.

Where the touch was is read off those executions: an opposite-side execution at price
x means the other side's best price was at x at that moment, so a resting order's
distance from the touch is its distance from x. The store holds no market data, and
our own executions are the best evidence of the touch it has.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from sapphire.compliance.surveillance.alerts import Alert, Rule, Severity
from sapphire.compliance.surveillance.config import LayeringConfig, SpoofingConfig
from sapphire.compliance.surveillance.ledger import Ledger, Moment, OwnFill, OwnOrder, bps
from sapphire.domain import ClientOrderId, InstrumentId

__all__ = ["LayeringRule", "SpoofingRule"]

_NS = 1_000_000_000


def _order_key(order: OwnOrder) -> tuple[str, str]:
    return (order.run_id, order.client_order_id)


def _fill_key(fill: OwnFill) -> tuple[int, str, str, str]:
    return (fill.ts_ns, fill.order.run_id, fill.order.client_order_id, fill.trade_id)


def _prices(fills: list[OwnFill]) -> str:
    low, high = min(f.px for f in fills), max(f.px for f in fills)
    return f"{low}" if low == high else f"{low}-{high}"


def _alert(
    rule: Rule, ts_ns: int, orders: list[OwnOrder], explanation: str,
    figures: dict[str, float | int | str],
) -> Alert:  # fmt: skip
    unique = list(dict.fromkeys(orders))
    return Alert(
        rule=rule,
        severity=Severity.HIGH,
        ts_ns=ts_ns,
        instrument_id=unique[0].instrument_id,
        run_ids=tuple(sorted({o.run_id for o in unique})),
        strategy_ids=tuple(sorted({o.strategy_id for o in unique})),
        client_order_ids=tuple(o.client_order_id for o in unique),
        explanation=explanation,
        figures=figures,
    )


class SpoofingRule:
    """Judges each canceled resting order at its cancel."""

    def __init__(self, config: SpoofingConfig) -> None:
        self.config = config

    def on_moment(self, moment: Moment, ledger: Ledger) -> list[Alert]:
        config = self.config
        alerts = []
        for order in sorted(moment.canceled, key=_order_key):
            if not order.rests or not order.mostly_unfilled(config.max_fill_fraction):
                continue
            assert order.ts_accepted is not None and order.price is not None
            rest = (moment.ts_ns - order.ts_accepted) / _NS
            if rest > config.max_rest_s:
                continue
            executions = [
                f
                for f in ledger.fills_between(order.instrument_id, order.ts_accepted, moment.ts_ns)
                if f.order.side is not order.side
            ]
            if not executions:
                continue
            executed = sum((f.qty for f in executions), Decimal(0))
            ratio = float(order.quantity / executed)
            near = min(bps(order.price, f.px) for f in executions)
            if ratio < config.size_ratio or near > config.near_touch_bps:
                continue
            filled = "unfilled" if order.filled_qty == 0 else f"with {order.filled_qty} filled"
            explanation = (
                f"{order.label()} ({order.run_id}/{order.strategy_id}) rested {rest:.1f} s "
                f"{near:.1f} bps from the touch while {len(executions)} "
                f"{order.side.opposite.value} execution(s) of {executed} at "
                f"{_prices(executions)} were made, {ratio:.1f}x their size, and was "
                f"canceled {filled}"
            )
            figures: dict[str, float | int | str] = {
                "order_qty": float(order.quantity), "order_px": float(order.price),
                "rest_s": rest, "touch_distance_bps": near, "executed_qty": float(executed),
                "size_ratio": ratio, "filled_qty": float(order.filled_qty),
            }  # fmt: skip
            orders = [order, *(f.order for f in executions)]
            alerts.append(_alert(Rule.SPOOFING, moment.ts_ns, orders, explanation, figures))
        return alerts


class LayeringRule:
    """Judges, at each cancel of a resting order, the opposite-side executions of the
    last `cancel_within_s` seconds that it rested through: were at least `min_orders`
    stepped orders resting then and canceled since? An order is reported in at most one
    layering alert."""

    def __init__(self, config: LayeringConfig) -> None:
        self.config = config
        self._within = int(config.cancel_within_s * _NS)
        #: resting orders canceled mostly unfilled in the last `cancel_within_s`, by
        #: instrument, oldest cancel first: the only orders that can be layers now
        self._canceled: dict[InstrumentId, deque[OwnOrder]] = {}
        self._reported: set[tuple[str, ClientOrderId]] = set()

    def on_moment(self, moment: Moment, ledger: Ledger) -> list[Alert]:
        within = self._within
        for recent in self._canceled.values():
            while recent and (recent[0].ts_done or 0) < moment.ts_ns - within:
                self._reported.discard(_order_key(recent.popleft()))
        fresh = [
            o for o in moment.canceled
            if o.rests and o.mostly_unfilled(self.config.max_fill_fraction)
        ]  # fmt: skip
        executions: dict[int, OwnFill] = {}
        for order in sorted(fresh, key=_order_key):
            self._canceled.setdefault(order.instrument_id, deque()).append(order)
            assert order.ts_accepted is not None
            start = max(order.ts_accepted, moment.ts_ns - within)
            for fill in ledger.fills_between(order.instrument_id, start, moment.ts_ns):
                if fill.order.side is not order.side:
                    executions[id(fill)] = fill
        alerts = []
        for fill in sorted(executions.values(), key=_fill_key):
            alert = self._judge(fill)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _judge(self, execution: OwnFill) -> Alert | None:
        config = self.config
        side = execution.order.side.opposite
        layers = sorted(
            (
                o
                for o in self._canceled.get(execution.order.instrument_id, ())
                if o.side is side
                and _order_key(o) not in self._reported
                and o.rested_at(execution.ts_ns)
                and (o.ts_done or 0) - execution.ts_ns <= self._within
            ),
            key=lambda o: (o.price, _order_key(o)),
        )
        prices = sorted({o.price for o in layers if o.price is not None})
        if len(layers) < config.min_orders or len(prices) < config.min_orders:
            return None
        near = min(bps(p, execution.px) for p in prices)
        if near > config.near_touch_bps:
            return None
        self._reported.update((o.run_id, o.client_order_id) for o in layers)
        total = sum((o.quantity for o in layers), Decimal(0))
        last_cancel = max(o.ts_done or 0 for o in layers)
        seconds = (last_cancel - execution.ts_ns) / _NS
        return _alert(
            Rule.LAYERING, last_cancel, [*layers, execution.order],
            f"{len(layers)} {side.value} LIMIT orders of {total} in all, stepped over "
            f"{len(prices)} prices {prices[0]}-{prices[-1]} (nearest {near:.1f} bps from the "
            f"touch), rested while {execution.order.side.value} {execution.qty} executed at "
            f"{execution.px} ({execution.order.run_id}/{execution.order.strategy_id}) and "
            f"were canceled within {seconds:.1f} s of it",
            {
                "layers": len(layers), "price_levels": len(prices),
                "layer_qty": float(total), "low_px": float(prices[0]),
                "high_px": float(prices[-1]), "touch_distance_bps": near,
                "execution_qty": float(execution.qty), "execution_px": float(execution.px),
                "cancel_seconds": seconds,
            },
        )  # fmt: skip
