"""The order state machine against an independent model.

Three layers: (1) an exhaustive grid, written out by hand from the contract, of every
event kind in every reachable status; (2) a Hypothesis rule-based state machine that
throws random events (legal or not) at an order and checks each against the model;
(3) random walks over legal moves only, trying every illegal move at each visited state.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from order_helpers import COID, IID, SID, drive, event, limit_order

from sapphire.domain import (
    InvalidOrderTransition,
    LiquiditySide,
    Order,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderType,
    TradeId,
)

S = OrderStatus
D = Decimal
KINDS = (
    "deny", "submit", "accept", "reject", "cancel_request", "cancel_rejected", "canceled",
    "expire", "update", "fill",
)  # fmt: skip

# -- (1) the exhaustive grid --------------------------------------------------------------

PC = S.PENDING_CANCEL
PATHS: dict[str, tuple[str, ...]] = {
    "INITIALIZED": (),
    "SUBMITTED": ("submit",),
    "ACCEPTED": ("submit", "accept"),
    "PARTIALLY_FILLED": ("submit", "accept", "fill"),
    "PENDING_CANCEL<-SUBMITTED": ("submit", "cancel_request"),
    "PENDING_CANCEL<-ACCEPTED": ("submit", "accept", "cancel_request"),
    "PENDING_CANCEL<-PARTIALLY_FILLED": ("submit", "accept", "fill", "cancel_request"),
    "FILLED": ("submit", "accept", "fill", "update"),  # amended down to the filled qty
    "CANCELED": ("submit", "accept", "cancel_request", "canceled"),
    "REJECTED": ("submit", "reject"),
    "DENIED": ("deny",),
    "EXPIRED": ("submit", "accept", "expire"),
}
# state -> {event kind: resulting status}; a kind not listed must be refused.
GRID: dict[str, dict[str, OrderStatus]] = {
    "INITIALIZED": {"deny": S.REJECTED, "submit": S.SUBMITTED},
    "SUBMITTED": {"accept": S.ACCEPTED, "reject": S.REJECTED, "cancel_request": PC},
    "ACCEPTED": {
        "cancel_request": PC, "canceled": S.CANCELED, "expire": S.EXPIRED,
        "update": S.ACCEPTED, "fill": S.PARTIALLY_FILLED,
    },
    "PARTIALLY_FILLED": {
        "cancel_request": PC, "canceled": S.CANCELED, "expire": S.EXPIRED,
        "update": S.PARTIALLY_FILLED, "fill": S.PARTIALLY_FILLED,
    },
    "PENDING_CANCEL<-SUBMITTED": {
        "accept": PC, "reject": S.REJECTED, "cancel_rejected": S.SUBMITTED,
        "canceled": S.CANCELED,
    },
    "PENDING_CANCEL<-ACCEPTED": {
        "cancel_rejected": S.ACCEPTED, "canceled": S.CANCELED, "expire": S.EXPIRED,
        "fill": PC,
    },
    "PENDING_CANCEL<-PARTIALLY_FILLED": {
        "cancel_rejected": S.PARTIALLY_FILLED, "canceled": S.CANCELED, "expire": S.EXPIRED,
        "fill": PC,
    },
    "FILLED": {},
    "CANCELED": {},
    "REJECTED": {},
    "DENIED": {},
    "EXPIRED": {},
}  # fmt: skip


def _reach(state: str) -> Order:
    order = limit_order(qty="10")
    # "update" on a path amends the quantity down to the filled 1 (-> FILLED).
    for i, kind in enumerate(PATHS[state]):
        ev = event("update", ts=10 + i, quantity=D(1)) if kind == "update" else event(kind, 10 + i)
        order.apply(ev)
    return order


def test_paths_reach_their_states() -> None:
    for state in PATHS:
        expected = state.split("<-")[0]
        assert _reach(state).status == ("REJECTED" if state == "DENIED" else expected)


@pytest.mark.parametrize("state", list(GRID))
@pytest.mark.parametrize("kind", KINDS)
def test_every_event_in_every_state(state: str, kind: str) -> None:
    order = _reach(state)
    before = Order.from_events(order.events)
    ev = event("update", ts=99, price=D(99)) if kind == "update" else event(kind, ts=99)
    expected = GRID[state].get(kind)
    if expected is None:
        with pytest.raises(InvalidOrderTransition) as info:
            order.apply(ev)
        assert info.value.status is before.status
        assert order == before  # refused events change nothing
    else:
        order.apply(ev)
        assert order.status is expected
        assert order.events[-1] is ev
        assert order.ts_last == 99


@pytest.mark.parametrize("state", list(GRID))
def test_initialized_event_is_always_refused(state: str) -> None:
    order = _reach(state)
    with pytest.raises(InvalidOrderTransition):
        order.apply(order.init_event)


# -- the model -------------------------------------------------------------------------------

LIVE = (S.ACCEPTED, S.PARTIALLY_FILLED)
ZERO = D(0)


class Model:
    """The contract, restated: what each event does to (status, prior, qty, fills)."""

    def __init__(self, quantity: Decimal) -> None:
        self.status = S.INITIALIZED
        self.prior: OrderStatus | None = None
        self.quantity = quantity
        self.fills: list[tuple[Decimal, Decimal]] = []
        self.trade_ids: set[str] = set()

    @property
    def filled(self) -> Decimal:
        return sum((q for q, _ in self.fills), D(0))

    @property
    def effective(self) -> OrderStatus:
        return self.prior if self.status is PC and self.prior is not None else self.status

    def outcome(
        self, kind: str, qty: Decimal = ZERO, trade_id: str = ""
    ) -> tuple[OrderStatus, OrderStatus | None] | None:
        """(new status, new prior) if `kind` is legal now, else None."""
        s, eff = self.status, self.effective
        if s in (S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED):
            return None
        live_or_pending = PC if s is PC else None
        if kind == "deny" and s is S.INITIALIZED:
            return S.REJECTED, None
        if kind == "submit" and s is S.INITIALIZED:
            return S.SUBMITTED, None
        if kind == "accept" and eff is S.SUBMITTED:
            return (PC, S.ACCEPTED) if s is PC else (S.ACCEPTED, None)
        if kind == "reject" and eff is S.SUBMITTED:
            return S.REJECTED, None
        if kind == "cancel_request" and s in (S.SUBMITTED, *LIVE):
            return PC, s
        if kind == "cancel_rejected" and s is PC:
            return eff, None
        if kind == "canceled" and s in (PC, *LIVE):
            return S.CANCELED, None
        if kind == "expire" and eff in LIVE:
            return S.EXPIRED, None
        if kind == "update" and s in LIVE and qty >= self.filled:
            return (S.FILLED, None) if qty == self.filled else (s, None)
        if (
            kind == "fill"
            and eff in LIVE
            and trade_id not in self.trade_ids
            and self.filled + qty <= self.quantity
        ):
            if self.filled + qty == self.quantity:
                return S.FILLED, None
            if live_or_pending is PC:
                return PC, S.PARTIALLY_FILLED
            return S.PARTIALLY_FILLED, None
        return None

    def expected_avg_px(self) -> Decimal | None:
        if not self.fills:
            return None
        mean = sum((Fraction(q) * Fraction(p) for q, p in self.fills), Fraction(0)) / sum(
            (Fraction(q) for q, _ in self.fills), Fraction(0)
        )
        # the exact mean, rounded once to the context precision
        return Decimal(mean.numerator) / Decimal(mean.denominator)


def check_against_model(order: Order, model: Model) -> None:
    assert order.status is model.status
    assert order.quantity == model.quantity
    assert order.filled_qty == model.filled
    assert order.filled_qty <= order.quantity
    assert order.avg_px == model.expected_avg_px()
    if model.fills:
        prices = [p for _, p in model.fills]
        assert order.avg_px is not None and min(prices) <= order.avg_px <= max(prices)
    assert order.is_terminal == model.status.is_terminal
    assert order.leaves_qty == (0 if order.is_terminal else model.quantity - model.filled)
    assert order.leaves_qty >= 0


# -- (2) random events, legal or not --------------------------------------------------------

_trade_seq = count(1)


class OrderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ts = 1

    @initialize(
        units=st.integers(min_value=1, max_value=40),
        side=st.sampled_from(OrderSide),
    )
    def create(self, units: int, side: OrderSide) -> None:
        qty = D(units) * D("0.25")
        self.order = Order(COID, SID, IID, side, OrderType.LIMIT, qty, price=D(100), ts_init=0)
        self.model = Model(qty)

    def attempt(self, ev: object, result: tuple[OrderStatus, OrderStatus | None] | None) -> bool:
        self.ts += 1
        if result is None:
            before = Order.from_events(self.order.events)
            with pytest.raises(InvalidOrderTransition):
                self.order.apply(ev)  # type: ignore[arg-type]
            assert self.order == before
            return False
        self.order.apply(ev)  # type: ignore[arg-type]
        self.model.status, self.model.prior = result
        return True

    @rule(kind=st.sampled_from([k for k in KINDS if k not in ("update", "fill")]))
    def simple(self, kind: str) -> None:
        self.attempt(event(kind, ts=self.ts), self.model.outcome(kind))

    @rule(
        units=st.integers(min_value=1, max_value=45),
        price=st.decimals(min_value=D("0.01"), max_value=D("99999"), places=2),
    )
    def fill(self, units: int, price: Decimal) -> None:
        qty = D(units) * D("0.25")
        trade_id = f"T{next(_trade_seq)}"
        ev = OrderFilled(
            ts_ns=self.ts, client_order_id=COID, trade_id=TradeId(trade_id), last_qty=qty,
            last_px=price, liquidity=LiquiditySide.TAKER, fee=D(0), fee_currency="USDT",
        )  # fmt: skip
        if self.attempt(ev, self.model.outcome("fill", qty, trade_id)):
            self.model.fills.append((qty, price))
            self.model.trade_ids.add(trade_id)

    @precondition(lambda self: bool(self.model.trade_ids))
    @rule(data=st.data())
    def repeated_fill(self, data: st.DataObject) -> None:
        trade_id = data.draw(st.sampled_from(sorted(self.model.trade_ids)))
        ev = event("fill", ts=self.ts, qty="0.25", trade_id=trade_id)
        assert self.model.outcome("fill", D("0.25"), trade_id) is None
        self.attempt(ev, None)

    @rule(units=st.integers(min_value=1, max_value=45))
    def update(self, units: int) -> None:
        qty = D(units) * D("0.25")
        ev = event("update", ts=self.ts, quantity=qty, price=D(101))
        if self.attempt(ev, self.model.outcome("update", qty)):
            self.model.quantity = qty

    @rule()
    def reinitialize(self) -> None:
        self.attempt(self.order.init_event, None)

    @invariant()
    def agrees_with_model(self) -> None:
        check_against_model(self.order, self.model)

    def teardown(self) -> None:
        if hasattr(self, "order"):
            assert Order.from_events(self.order.events) == self.order


TestOrderMachine = OrderMachine.TestCase
TestOrderMachine.settings = settings(
    max_examples=150, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip


# -- (3) legal walks --------------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(data=st.data(), units=st.integers(min_value=1, max_value=20))
def test_legal_sequences_are_accepted(data: st.DataObject, units: int) -> None:
    qty = D(units) * D("0.5")
    order = Order(COID, SID, IID, OrderSide.SELL, OrderType.LIMIT, qty, price=D(7), ts_init=0)
    model = Model(qty)
    for step in range(40):
        if model.status.is_terminal:
            break
        # Every illegal simple kind here is refused...
        for kind in KINDS[:-2]:
            if model.outcome(kind) is None:
                with pytest.raises(InvalidOrderTransition):
                    order.apply(event(kind, ts=step))
        # ... and one legal move, drawn at random, is accepted.
        legal: list[tuple[str, Decimal]] = [(k, D(0)) for k in KINDS[:-2] if model.outcome(k)]
        leaves = model.quantity - model.filled
        if leaves > 0 and model.outcome("fill", D("0.5"), "x"):
            fill_qty = data.draw(st.integers(min_value=1, max_value=int(leaves / D("0.5"))))
            legal.append(("fill", fill_qty * D("0.5")))
        if model.outcome("update", model.quantity + 1):
            legal.append(("update", model.quantity + data.draw(st.integers(0, 3)) * D("0.5")))
        kind, amount = data.draw(st.sampled_from(legal))
        result = model.outcome(kind, amount, f"walk{step}")
        assert result is not None
        if kind == "fill":
            px = data.draw(st.decimals(min_value=D("0.001"), max_value=D(1000), places=3))
            order.apply(event("fill", ts=step, qty=str(amount), px=str(px), trade_id=f"walk{step}"))
            model.fills.append((amount, px))
            model.trade_ids.add(f"walk{step}")
        elif kind == "update":
            order.apply(event("update", ts=step, quantity=amount))
            model.quantity = amount
        else:
            order.apply(event(kind, ts=step))
        model.status, model.prior = result
        check_against_model(order, model)
    assert Order.from_events(order.events) == order


@settings(max_examples=100, deadline=None)
@given(
    fills=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10**6),
            st.decimals(min_value=D("1E-8"), max_value=D("1E+8"), places=8),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_filled_qty_and_avg_px_over_many_fills(fills: list[tuple[int, Decimal]]) -> None:
    lot = D("0.00000001")
    total = sum(D(units) for units, _ in fills) * lot
    order = drive(limit_order(qty=str(total)), "submit", "accept")
    model = Model(total)
    for i, (units, px) in enumerate(fills):
        order.apply(event("fill", qty=str(units * lot), px=str(px), trade_id=f"F{i}"))
        model.fills.append((units * lot, px))
    assert order.status is S.FILLED
    assert order.filled_qty == total
    assert order.avg_px == model.expected_avg_px()
    with pytest.raises(InvalidOrderTransition, match="terminal"):
        order.apply(event("fill", qty=str(lot)))
