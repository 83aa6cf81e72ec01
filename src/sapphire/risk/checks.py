"""Pre-trade risk checks: every new order passes `RiskEngine.check` before it is sent.

The engine is pure: the node tells it what it needs to know in a `RiskContext` (the
instrument, last price, position, exposure, open orders, free balance, trading state and
the time) and gets a `RiskDecision` back. The only state the engine keeps is the
timestamps of the orders it let through (the sliding-window rate limit).

Cancels never go through the engine: they are allowed in every trading state.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from sapphire.domain import (
    ContractType,
    Instrument,
    Order,
    OrderSide,
    OrderType,
    TradingState,
)
from sapphire.risk.config import RiskConfig, decimal_value

__all__ = ["RiskContext", "RiskDecision", "RiskEngine", "fmt"]


def fmt(value: Decimal, places: int | None = None) -> str:
    """A Decimal with thousands separators: ``fmt(Decimal(125000), 2) == "125,000.00"``.

    Without ``places`` the value's own digits are kept (``0.001`` stays ``0.001``).
    """
    if places is not None:
        return f"{value:,.{places}f}"
    return f"{value.normalize() if value == value.to_integral() else value:,f}"


def pct(value: Decimal) -> str:
    return f"{value * 100:,.2f}%"


@dataclass(frozen=True)
class RiskDecision:
    """The verdict on one order: ``ok``, or the failed ``check`` and a ``reason``."""

    ok: bool
    reason: str | None = None
    check: str | None = None

    def __bool__(self) -> bool:
        return self.ok


APPROVED = RiskDecision(True)


def _deny(check: str, reason: str) -> RiskDecision:
    return RiskDecision(False, reason, check)


@dataclass(frozen=True)
class RiskContext:
    """What the engine needs to know about the world when an order arrives.

    - ``position_qty``: the signed position (base units) this order changes (the node's
      net position for the order's instrument; in hedge mode, the leg it trades).
    - ``gross_exposure``: sum of |position notional| over all instruments now, in the
      instrument's quote currency (the account's reporting currency).
    - ``open_orders``: how many orders are open now (not counting this one).
    - ``free_balance``: what new risk may use: free quote balance for spot, free margin
      for derivatives, both net of what open orders already reserve.
    - ``leverage``: the account leverage for derivatives (required margin = notional /
      leverage); ignored for spot.
    - ``ts_ns``: the node's clock, used by the rate limit.
    """

    instrument: Instrument
    last_price: Decimal
    position_qty: Decimal
    gross_exposure: Decimal
    open_orders: int
    free_balance: Decimal
    trading_state: TradingState
    ts_ns: int
    leverage: Decimal = Decimal(1)

    def __post_init__(self) -> None:
        if not isinstance(self.instrument, Instrument):
            raise ValueError(
                f"RiskContext.instrument must be an Instrument, got {self.instrument!r}"
            )
        last = decimal_value(self.last_price, "RiskContext.last_price")
        if last <= 0:
            raise ValueError(f"RiskContext.last_price must be > 0, got {self.last_price!r}")
        object.__setattr__(self, "last_price", last)
        pos = decimal_value(self.position_qty, "RiskContext.position_qty")
        object.__setattr__(self, "position_qty", pos)
        gross = decimal_value(self.gross_exposure, "RiskContext.gross_exposure")
        if gross < 0:
            raise ValueError(
                f"RiskContext.gross_exposure must be >= 0, got {self.gross_exposure!r}"
            )
        object.__setattr__(self, "gross_exposure", gross)
        free = decimal_value(self.free_balance, "RiskContext.free_balance")
        object.__setattr__(self, "free_balance", free)
        lev = decimal_value(self.leverage, "RiskContext.leverage")
        if lev <= 0:
            raise ValueError(f"RiskContext.leverage must be > 0, got {self.leverage!r}")
        object.__setattr__(self, "leverage", lev)
        n = self.open_orders
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"RiskContext.open_orders must be an int >= 0, got {n!r}")
        if isinstance(self.ts_ns, bool) or not isinstance(self.ts_ns, int):
            raise ValueError(f"RiskContext.ts_ns must be int nanoseconds, got {self.ts_ns!r}")
        try:
            object.__setattr__(self, "trading_state", TradingState(self.trading_state))
        except ValueError:
            raise ValueError(
                f"RiskContext.trading_state must be a TradingState, got {self.trading_state!r}"
            ) from None


def reference_price(order: Order, last_price: Decimal) -> Decimal:
    """The price an order is valued at: its limit price, else its trigger, else the last.

    LIMIT and STOP_LIMIT use ``price``; STOP_MARKET uses ``trigger_price``; MARKET and
    TRAILING_STOP (whose trigger moves) use the last price.
    """
    if order.type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and order.price is not None:
        return order.price
    if order.type is OrderType.STOP_MARKET and order.trigger_price is not None:
        return order.trigger_price
    return last_price


class RiskEngine:
    """Runs the pre-trade checks of a `RiskConfig`, in this order (the first failure wins):

    1. trading state (HALTED: nothing; REDUCING: only position-reducing orders),
    2. reduce-only (must not increase or flip the position),
    3. instrument precision (quantity on the lot grid, price/trigger on the tick grid),
    4. instrument min/max quantity and min/max notional,
    5. ``max_notional_per_order``,
    6. price band vs the last price (fat finger),
    7. ``max_position_qty`` / ``max_position_notional`` (only if the position grows),
    8. ``max_gross_exposure`` (only if exposure grows),
    9. ``max_open_orders``,
    10. available balance / margin for the risk-increasing part (spot: cannot sell more
        than is held),
    11. order rate (sliding window): an approved order is counted at ``ctx.ts_ns``.
    """

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config if config is not None else RiskConfig()
        if not isinstance(self.config, RiskConfig):
            raise ValueError(f"RiskEngine needs a RiskConfig, got {config!r}")
        self._sent: deque[int] = deque()

    def reset_rate_limit(self) -> None:
        """Forget the orders counted by the rate limit (e.g. after a restart)."""
        self._sent.clear()

    def check(self, order: Order, ctx: RiskContext) -> RiskDecision:
        """Approve ``order`` or say why not. An approved order counts towards the rate limit."""
        decision = self._check(order, ctx)
        if decision.ok and self.config.max_orders_per_window is not None:
            self._sent.append(ctx.ts_ns)
        return decision

    # -- the checks -----------------------------------------------------------------

    def _check(self, order: Order, ctx: RiskContext) -> RiskDecision:
        cfg = self.config
        inst = ctx.instrument
        if order.instrument_id != inst.id:
            raise ValueError(
                f"order {order.client_order_id} is for {order.instrument_id}, "
                f"but the risk context is for {inst.id}"
            )
        qty = order.quantity
        side = order.side
        pos = ctx.position_qty
        new_pos = pos + side.sign * qty
        flips = pos != 0 and new_pos != 0 and (pos > 0) != (new_pos > 0)
        grows = flips or abs(new_pos) > abs(pos)
        # the quantity that adds risk: all of the new leg on a flip (conservative: the
        # closed leg's margin is not counted as released), else the growth of |position|
        added_qty = abs(new_pos) if flips else max(Decimal(0), abs(new_pos) - abs(pos))
        unit = inst.base

        def move() -> str:
            return (
                f"{side} {fmt(qty)} {unit} would take the position from {fmt(pos)} "
                f"to {fmt(new_pos)}"
            )

        # 1. trading state
        if ctx.trading_state is TradingState.HALTED:
            return _deny("trading_state", "trading state is HALTED: no new orders, only cancels")
        if ctx.trading_state is TradingState.REDUCING and grows:
            return _deny(
                "trading_state",
                f"trading state is REDUCING: only orders that reduce the position are allowed; "
                f"{move()}",
            )
        # 2. reduce-only
        if order.reduce_only and grows:
            return _deny("reduce_only", f"reduce-only order would increase the position: {move()}")

        # 3. precision
        if not inst.is_qty_on_lot(qty):
            return _deny(
                "precision",
                f"quantity {fmt(qty)} is not a multiple of lot_size {fmt(inst.lot_size)} "
                f"of {inst.id}",
            )
        for label, value in (("price", order.price), ("trigger price", order.trigger_price)):
            if value is not None and not inst.is_price_on_tick(value):
                return _deny(
                    "precision",
                    f"{label} {fmt(value)} is not a multiple of tick_size {fmt(inst.tick_size)} "
                    f"of {inst.id}",
                )

        # 4. instrument limits
        if inst.min_qty is not None and qty < inst.min_qty:
            return _deny(
                "instrument_limits",
                f"quantity {fmt(qty)} {unit} is below min_qty {fmt(inst.min_qty)} of {inst.id}",
            )
        if inst.max_qty is not None and qty > inst.max_qty:
            return _deny(
                "instrument_limits",
                f"quantity {fmt(qty)} {unit} exceeds max_qty {fmt(inst.max_qty)} of {inst.id}",
            )
        price = reference_price(order, ctx.last_price)
        notional = inst.notional(qty, price)
        q = inst.quote
        if inst.min_notional is not None and notional < inst.min_notional:
            return _deny(
                "instrument_limits",
                f"order notional {fmt(notional, 2)} {q} is below min_notional "
                f"{fmt(inst.min_notional, 2)} of {inst.id}",
            )
        if inst.max_notional is not None and notional > inst.max_notional:
            return _deny(
                "instrument_limits",
                f"order notional {fmt(notional, 2)} {q} exceeds max_notional "
                f"{fmt(inst.max_notional, 2)} of {inst.id}",
            )

        # 5. max notional per order
        if cfg.max_notional_per_order is not None and notional > cfg.max_notional_per_order:
            return _deny(
                "max_notional_per_order",
                f"order notional {fmt(notional, 2)} {q} exceeds max_notional_per_order "
                f"{fmt(cfg.max_notional_per_order, 2)}",
            )

        # 6. price band
        if cfg.price_band is not None:
            for label, value in (("price", order.price), ("trigger price", order.trigger_price)):
                if value is None:
                    continue
                deviation = abs(value - ctx.last_price) / ctx.last_price
                if deviation > cfg.price_band:
                    return _deny(
                        "price_band",
                        f"{label} {fmt(value)} is {pct(deviation)} away from the last price "
                        f"{fmt(ctx.last_price)}, outside price_band {pct(cfg.price_band)}",
                    )

        # 7. position limits
        if grows:
            cap = cfg.max_position_qty.get(inst.id)
            if cap is not None and abs(new_pos) > cap:
                return _deny(
                    "max_position",
                    f"{move()}, exceeding max_position_qty {fmt(cap)} {unit} for {inst.id}",
                )
            if cfg.max_position_notional is not None:
                pos_notional = inst.notional(new_pos, price)
                if pos_notional > cfg.max_position_notional:
                    return _deny(
                        "max_position",
                        f"position notional after the order {fmt(pos_notional, 2)} {q} exceeds "
                        f"max_position_notional {fmt(cfg.max_position_notional, 2)} for {inst.id}",
                    )

        # 8. gross exposure
        added = inst.notional(added_qty, price)
        if cfg.max_gross_exposure is not None and added > 0:
            gross_after = ctx.gross_exposure + added
            if gross_after > cfg.max_gross_exposure:
                return _deny(
                    "max_gross_exposure",
                    f"gross exposure after the order {fmt(gross_after, 2)} {q} (now "
                    f"{fmt(ctx.gross_exposure, 2)} + {fmt(added, 2)}) exceeds "
                    f"max_gross_exposure {fmt(cfg.max_gross_exposure, 2)}",
                )

        # 9. open orders
        if cfg.max_open_orders is not None and ctx.open_orders >= cfg.max_open_orders:
            return _deny(
                "max_open_orders",
                f"{ctx.open_orders} open orders already, at max_open_orders {cfg.max_open_orders}",
            )

        # 10. balance / margin
        if cfg.check_balance:
            denial = self._check_balance(order, ctx, price, added_qty)
            if denial is not None:
                return denial

        # 11. rate limit
        limit = cfg.max_orders_per_window
        if limit is not None:
            window = cfg.rate_limit_window_ns
            if self._sent and ctx.ts_ns < self._sent[-1]:
                raise ValueError(
                    f"clock went backwards: ts_ns {ctx.ts_ns} is before the last approved "
                    f"order at {self._sent[-1]}"
                )
            while self._sent and self._sent[0] <= ctx.ts_ns - window:
                self._sent.popleft()
            if len(self._sent) >= limit:
                return _deny(
                    "rate_limit",
                    f"{len(self._sent)} orders in the last {cfg.rate_limit_window_s:g} s, at "
                    f"max_orders_per_window {limit}",
                )
        return APPROVED

    @staticmethod
    def _check_balance(
        order: Order, ctx: RiskContext, price: Decimal, added_qty: Decimal
    ) -> RiskDecision | None:
        inst = ctx.instrument
        q = inst.quote
        if inst.contract_type is ContractType.SPOT:
            if order.side is OrderSide.SELL:
                held = max(Decimal(0), ctx.position_qty)
                if order.quantity > held:
                    return _deny(
                        "balance",
                        f"spot SELL {fmt(order.quantity)} {inst.base} exceeds the "
                        f"{fmt(held)} {inst.base} held (spot cannot go short)",
                    )
                return None
            cost = inst.notional(order.quantity, price)
            fee = cost * max(inst.taker_fee, Decimal(0))
            required = cost + fee
            if required > ctx.free_balance:
                return _deny(
                    "balance",
                    f"order cost {fmt(required, 2)} {q} (notional {fmt(cost, 2)} + fee "
                    f"{fmt(fee, 2)}) exceeds free balance {fmt(ctx.free_balance, 2)} {q}",
                )
            return None
        if added_qty == 0:
            return None
        added = inst.notional(added_qty, price)
        margin = added / ctx.leverage
        fee = inst.notional(order.quantity, price) * max(inst.taker_fee, Decimal(0))
        required = margin + fee
        if required > ctx.free_balance:
            return _deny(
                "balance",
                f"required margin {fmt(required, 2)} {q} (notional {fmt(added, 2)} / leverage "
                f"{fmt(ctx.leverage)} + fee {fmt(fee, 2)}) exceeds free margin "
                f"{fmt(ctx.free_balance, 2)} {q}",
            )
        return None
