"""Wash trades: our own buy and sell that could have matched each other.

A trade between two of our orders changes no beneficial ownership: it only prints
volume and a price. It needs one side resting (a MAKER fill) and the other taking it (a
TAKER fill) at the same moment and price; two of our orders that both took liquidity
from others cannot have traded with each other, however close in time and price, so
they are not flagged. Fills that carry the same venue trade id did trade with each
other (a self-match): HIGH severity, even within one strategy. Otherwise the pair must
come from different strategies or runs (accounts), unless `same_strategy`.
"""

from __future__ import annotations

from sapphire.compliance.surveillance.alerts import Alert, Rule, Severity
from sapphire.compliance.surveillance.config import WashConfig
from sapphire.compliance.surveillance.ledger import Ledger, Moment, OwnFill, bps
from sapphire.domain import ClientOrderId, LiquiditySide, OrderSide

__all__ = ["WashRule"]

_NS = 1_000_000_000
_PAIR = frozenset({LiquiditySide.MAKER, LiquiditySide.TAKER})


def _fill_key(fill: OwnFill) -> tuple[str, str, str]:
    return (fill.order.run_id, fill.order.client_order_id, fill.trade_id)


class WashRule:
    """Flags each pair of our orders (a buy and a sell) once, at its first suspect pair
    of fills."""

    def __init__(self, config: WashConfig) -> None:
        self.config = config
        self._pairs: set[tuple[str, ClientOrderId, str, ClientOrderId]] = set()

    def on_moment(self, moment: Moment, ledger: Ledger) -> list[Alert]:
        window = int(self.config.window_s * _NS)
        alerts = []
        for fill in sorted(moment.fills, key=_fill_key):
            recent = ledger.fills_between(
                fill.order.instrument_id, moment.ts_ns - window, moment.ts_ns
            )
            for other in sorted(recent, key=_fill_key):
                if other.order.side is fill.order.side:
                    continue
                buy, sell = (fill, other) if fill.order.side is OrderSide.BUY else (other, fill)
                pair = (
                    buy.order.run_id, buy.order.client_order_id,
                    sell.order.run_id, sell.order.client_order_id,
                )  # fmt: skip
                if pair in self._pairs:
                    continue
                alert = self._judge(buy, sell)
                if alert is not None:
                    self._pairs.add(pair)
                    alerts.append(alert)
        return alerts

    def _judge(self, buy: OwnFill, sell: OwnFill) -> Alert | None:
        config = self.config
        matched = buy.trade_id == sell.trade_id
        if not matched and buy.order.owner == sell.order.owner and not config.same_strategy:
            return None
        if {buy.liquidity, sell.liquidity} != _PAIR:
            return None
        gap = bps(buy.px, sell.px)
        if gap > config.price_tolerance_bps:
            return None
        qty_match = float(min(buy.qty, sell.qty) / max(buy.qty, sell.qty))
        if qty_match < config.min_qty_match:
            return None
        seconds = abs(buy.ts_ns - sell.ts_ns) / _NS
        how = (
            f"one trade id {buy.trade_id}: own orders traded with each other"
            if matched
            else "own orders that could have traded with each other"
        )
        orders = (buy.order, sell.order)
        return Alert(
            rule=Rule.WASH_TRADE,
            severity=Severity.HIGH if matched else Severity.MEDIUM,
            ts_ns=max(buy.ts_ns, sell.ts_ns),
            instrument_id=buy.order.instrument_id,
            run_ids=tuple(sorted({o.run_id for o in orders})),
            strategy_ids=tuple(sorted({o.strategy_id for o in orders})),
            client_order_ids=(buy.order.client_order_id, sell.order.client_order_id),
            explanation=(
                f"BUY {buy.qty} @ {buy.px} ({buy.liquidity.value}, "
                f"{buy.order.run_id}/{buy.order.strategy_id}) and SELL {sell.qty} @ {sell.px} "
                f"({sell.liquidity.value}, {sell.order.run_id}/{sell.order.strategy_id}) "
                f"{seconds:.1f} s and {gap:.1f} bps apart on {buy.order.instrument_id}: {how}"
            ),
            figures={
                "buy_qty": float(buy.qty), "buy_px": float(buy.px),
                "sell_qty": float(sell.qty), "sell_px": float(sell.px),
                "seconds_apart": seconds, "price_gap_bps": gap, "qty_match": qty_match,
                "buy_trade_id": str(buy.trade_id), "sell_trade_id": str(sell.trade_id),
            },
        )  # fmt: skip
