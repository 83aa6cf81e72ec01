"""`EventStrategy`: the callback API for hand-written, event-driven strategies.

Override what you need; every callback defaults to doing nothing:

- `on_start()`, `on_stop()`;
- `on_bar(bar)`, `on_trade_tick(tick)`, `on_order_book(book)` for subscribed market data;
- `on_order_update(order, event)` for every event of the strategy's own orders except
  fills, `on_fill(order, fill)` for fills;
- `on_timer(event)` for timers set with `set_timer`.

Helpers (valid once the strategy is added to a `TradingNode`): `market`, `limit`,
`stop_market`, `trailing_stop` build orders with deterministic client order ids;
`submit_order` sends one through the risk engine to the venue (False when denied);
`submit_bracket` an entry with stop-loss / take-profit / trailing-stop legs (placed when
the entry fills, one cancelling the others); `submit_oto` (children held until the
parent fills); `submit_oco`; `cancel_order`;
`amend_order`; `position`, `balance`, `now_ns`, `set_timer`. Streaming indicators from
`sapphire.indicators` work as usual: keep one on the strategy and update it in `on_bar`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sapphire.domain import (
    Bar,
    InstrumentId,
    Order,
    OrderBook,
    OrderEvent,
    OrderFilled,
    OrderSide,
    StrategyId,
    TradeTick,
    TrailingOffsetType,
)
from sapphire.domain.instrument import to_decimal
from sapphire.engine.clock import TimeEvent

if TYPE_CHECKING:
    from sapphire.engine.node import TradingNode

__all__ = ["EventStrategy"]


class EventStrategy:
    """Base class of event-driven strategies; `strategy_id` names it in one node."""

    def __init__(self, strategy_id: str | None = None) -> None:
        self.strategy_id = StrategyId(strategy_id or type(self).__name__.lower())
        self._node: TradingNode | None = None

    # ---------------------------------------------------------------- callbacks
    def on_start(self) -> None: ...

    def on_bar(self, bar: Bar) -> None: ...

    def on_trade_tick(self, tick: TradeTick) -> None: ...

    def on_order_book(self, book: OrderBook) -> None: ...

    def on_order_update(self, order: Order, event: OrderEvent) -> None: ...

    def on_fill(self, order: Order, fill: OrderFilled) -> None: ...

    def on_timer(self, event: TimeEvent) -> None: ...

    def on_stop(self) -> None: ...

    # ---------------------------------------------------------------- helpers
    @property
    def node(self) -> TradingNode:
        if self._node is None:
            raise ValueError(f"strategy {self.strategy_id} is not added to a TradingNode")
        return self._node

    def now_ns(self) -> int:
        return self.node.clock.now_ns()

    def _side(self, side: OrderSide | str) -> OrderSide:
        return side if isinstance(side, OrderSide) else OrderSide(str(side).upper())

    def market(
        self, instrument_id: InstrumentId, side: OrderSide | str, quantity: object, **options: Any
    ) -> Order:
        node = self.node
        return Order.market(
            node.next_order_id(self), self.strategy_id, instrument_id, self._side(side),
            to_decimal(quantity), ts_init=node.clock.now_ns(), event_id=node.next_event_id(),
            **options,
        )  # fmt: skip

    def limit(
        self,
        instrument_id: InstrumentId,
        side: OrderSide | str,
        quantity: object,
        price: object,
        **options: Any,
    ) -> Order:
        node = self.node
        return Order.limit(
            node.next_order_id(self), self.strategy_id, instrument_id, self._side(side),
            to_decimal(quantity), to_decimal(price), ts_init=node.clock.now_ns(),
            event_id=node.next_event_id(), **options,
        )  # fmt: skip

    def stop_market(
        self,
        instrument_id: InstrumentId,
        side: OrderSide | str,
        quantity: object,
        trigger_price: object,
        **options: Any,
    ) -> Order:
        node = self.node
        return Order.stop_market(
            node.next_order_id(self), self.strategy_id, instrument_id, self._side(side),
            to_decimal(quantity), to_decimal(trigger_price), ts_init=node.clock.now_ns(),
            event_id=node.next_event_id(), **options,
        )  # fmt: skip

    def trailing_stop(
        self,
        instrument_id: InstrumentId,
        side: OrderSide | str,
        quantity: object,
        offset: object,
        *,
        percent: bool = False,
        **options: Any,
    ) -> Order:
        node = self.node
        return Order.trailing_stop(
            node.next_order_id(self), self.strategy_id, instrument_id, self._side(side),
            to_decimal(quantity), to_decimal(offset), ts_init=node.clock.now_ns(),
            event_id=node.next_event_id(),
            trailing_offset_type=TrailingOffsetType.PERCENT if percent else
            TrailingOffsetType.PRICE, **options,
        )  # fmt: skip

    def submit_order(
        self,
        order: Order,
        *,
        tag: str | None = None,
        sizer: Callable[[Decimal, Decimal], Decimal | str] | None = None,
    ) -> bool:
        return self.node.submit_order(self, order, tag=tag, sizer=sizer)

    def submit_bracket(
        self,
        entry: Order,
        *,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
        relative: bool = True,
        tag: str | None = None,
        sizer: Callable[[Decimal, Decimal], Decimal | str] | None = None,
    ) -> bool:
        """Send `entry`; once it fills, place its exits (one cancels the others).

        With `relative=True` the levels are fractions of the entry fill price (0.02 =
        2 %, as the backtester's stop_loss/take_profit/trailing_stop); otherwise
        stop_loss and take_profit are prices and trailing_stop a price offset.
        """
        return self.node.submit_bracket(
            self, entry, stop_loss=stop_loss, take_profit=take_profit,
            trailing_stop=trailing_stop, relative=relative, tag=tag, sizer=sizer,
        )  # fmt: skip

    def submit_oto(
        self,
        parent: Order,
        children: Sequence[Order],
        *,
        tag: str | None = None,
        tags: Sequence[str | None] | None = None,
        sizer: Callable[[Decimal, Decimal], Decimal | str] | None = None,
    ) -> bool:
        """Send `parent`; the node holds `children` and submits them once the parent is
        completely filled (they are discarded if it ends otherwise)."""
        return self.node.submit_oto(self, parent, children, tag=tag, tags=tags, sizer=sizer)

    def submit_oco(self, orders: Sequence[Order], *, tags: Sequence[str] | None = None) -> bool:
        """Send orders where the first to fill cancels the others."""
        return self.node.submit_oco(self, orders, tags=tags)

    def cancel_order(self, client_order_id: str) -> bool:
        return self.node.cancel_order(client_order_id)

    def amend_order(
        self,
        client_order_id: str,
        *,
        quantity: object = None,
        price: object = None,
        trigger_price: object = None,
    ) -> bool:
        return self.node.amend_order(
            client_order_id,
            quantity=None if quantity is None else to_decimal(quantity),
            price=None if price is None else to_decimal(price),
            trigger_price=None if trigger_price is None else to_decimal(trigger_price),
        )

    def position(self, instrument_id: InstrumentId) -> Decimal:
        """This strategy's signed position in `instrument_id`."""
        return self.node.portfolio.net_quantity(instrument_id, self.strategy_id)

    def balance(self, currency: str | None = None) -> Decimal:
        account = self.node.portfolio.account
        return account.balance(currency or account.base_currency)

    def open_orders(self) -> list[Order]:
        return [o for o in self.node.open_orders() if o.strategy_id == self.strategy_id]

    def set_timer(self, name: str, interval_ns: int, **options: Any) -> None:
        self.node.clock.set_timer(f"{self.strategy_id}:{name}", interval_ns, self._timer, **options)

    def _timer(self, event: TimeEvent) -> None:
        name = event.name.split(":", 1)[1]
        self.on_timer(TimeEvent(name, event.ts_ns))
