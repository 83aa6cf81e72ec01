"""MarketVenue: tick/book matching behind latency, account, funding and liquidation."""

from __future__ import annotations

import itertools
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.domain import (
    ClientOrderId,
    ContractType,
    Instrument,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCancelRequested,
    OrderEvent,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    StrategyId,
    TradeId,
    TradeTick,
)
from sapphire.sim.exchange import MarketVenue
from sapphire.sim.liquidation import Liquidation, LiquidationRule
from sapphire.sim.matching import vwap
from sapphire.sim.models import FixedLatency, UniformLatency
from sapphire.sim.replay import read_binance_trades, read_bybit_orderbook

DATA = Path(__file__).resolve().parents[2] / "data"
D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
SID = StrategyId("s1")
PERP = InstrumentId("BTCUSDT", "SIM")
PERP_INST = Instrument(
    PERP, "BTC", "USDT", "USDT", ContractType.PERPETUAL, D("0.1"), D("0.001"),
    maker_fee=D("0.0002"), taker_fee=D("0.0005"),
)  # fmt: skip
XRP = InstrumentId("XRPUSDT", "BYBIT")
XRP_INST = Instrument(
    XRP, "XRP", "USDT", "USDT", ContractType.PERPETUAL, D("0.0001"), D("1"),
    maker_fee=D("0.0002"), taker_fee=D("0.00055"),
)  # fmt: skip
SPOT = InstrumentId("BTCUSDT", "BINANCE")
SPOT_INST = Instrument(
    SPOT, "BTC", "USDT", "USDT", ContractType.SPOT, D("0.01"), D("0.000001"),
    maker_fee=D("0.001"), taker_fee=D("0.001"),
)  # fmt: skip
_ids = itertools.count(1)


def sent(order: Order) -> Order:
    order.apply(OrderSubmitted(ts_ns=order.ts_init, client_order_id=order.client_order_id))
    return order


def market(iid: InstrumentId, side: OrderSide, qty: str, **kw: object) -> Order:
    cid = ClientOrderId(f"m{next(_ids)}")
    return sent(Order.market(cid, SID, iid, side, D(qty), ts_init=0, **kw))


def limit(iid: InstrumentId, side: OrderSide, qty: str, px: str, **kw: object) -> Order:
    cid = ClientOrderId(f"l{next(_ids)}")
    return sent(Order.limit(cid, SID, iid, side, D(qty), D(px), ts_init=0, **kw))


def trade(price: float, ts: int, size: float = 1.0, iid: InstrumentId = PERP) -> TradeTick:
    return TradeTick(iid, ts, price, size, SELL, TradeId(f"t{ts}"))


class Recorder:
    """Applies the venue's reports to the orders (their state machine checks them)."""

    def __init__(self, venue: MarketVenue) -> None:
        self.venue = venue
        self.events: list[OrderEvent] = []
        self.orders: dict[str, Order] = {}
        self.seen_at: list[int] = []  # the venue clock when each report arrived
        venue.on_event = self.on_event

    def submit(self, order: Order) -> Order:
        self.orders[order.client_order_id] = order
        self.venue.submit_order(order)
        return order

    def on_event(self, event: OrderEvent) -> None:
        self.events.append(event)
        self.seen_at.append(self.venue.ts_ns)
        self.orders[event.client_order_id].apply(event)

    def fills(self) -> list[OrderFilled]:
        return [e for e in self.events if isinstance(e, OrderFilled)]


Booked = tuple[InstrumentId, OrderSide, OrderFilled]


def ledger_equity(venue: MarketVenue, cash0: Decimal, fills: list[Booked]) -> Decimal:
    """Equity rebuilt from the fills alone: cash (initial - signed notional - fees +
    funding) plus the positions marked (linear contracts and spot alike)."""
    cash = cash0 + venue.funding
    qty: dict[InstrumentId, Decimal] = {}
    for iid, side, fill in fills:
        cash -= side.sign * fill.last_qty * fill.last_px + fill.fee
        qty[iid] = qty.get(iid, D(0)) + side.sign * fill.last_qty
    return cash + sum((q * venue.marks[iid] for iid, q in qty.items() if q), D(0))


def all_fills(rec: Recorder) -> list[Booked]:
    """The order fills reported so far and the venue's liquidation fills."""
    out = []
    for f in rec.fills():
        order = rec.orders[f.client_order_id]
        out.append((order.instrument_id, order.side, f))
    out += [(liq.instrument_id, liq.side, liq.fill) for liq in rec.venue.liquidations]
    return out


def check_identity(rec: Recorder, cash0: Decimal) -> None:
    """cash + marked positions = the venue's equity; the fills sum to the position."""
    venue = rec.venue
    fills = all_fills(rec)
    assert venue.equity() == ledger_equity(venue, cash0, fills)
    for iid in venue.instruments:
        held = sum((s.sign * f.last_qty for i, s, f in fills if i == iid), D(0))
        assert venue.position(iid) == held


# -- book walks and resting orders --------------------------------------------------------


def test_market_order_walks_the_real_bybit_book_and_books_the_account() -> None:
    venue = MarketVenue([XRP_INST], cash=100_000)
    rec = Recorder(venue)
    for update in read_bybit_orderbook(DATA / "bybit-xrpusdt-ob500-2024-12-01.data.zip", XRP):
        assert venue.process_book(update) == []
    # final asks (read off the file): 1.9538 x 6702, 1.9539 x 18558, 1.9540 x 19825
    order = rec.submit(market(XRP, BUY, "30000"))
    assert order.status is OrderStatus.FILLED
    fills = rec.fills()
    assert [(f.last_px, f.last_qty) for f in fills] == [
        (D("1.9538"), D("6702")),
        (D("1.9539"), D("18558")),
        (D("1.9540"), D("4740")),
    ]
    cost = D("6702") * D("1.9538") + D("18558") * D("1.9539") + D("4740") * D("1.9540")
    assert vwap(fills) == order.avg_px == cost / 30000
    fee = cost * D("0.00055")
    assert sum((f.fee for f in fills), D(0)) == fee == venue.fees
    assert all(f.liquidity is LiquiditySide.TAKER for f in fills)
    assert venue.position(XRP) == D("30000")
    assert venue.balance() == D(100_000) - fee  # a perpetual: cash moves by fees only
    mark = venue.marks[XRP]
    assert venue.equity() == D(100_000) - fee + 30000 * mark - cost
    check_identity(rec, D(100_000))


def test_limit_rests_then_fills_partially_and_fully_on_real_trades() -> None:
    ticks = read_binance_trades(DATA / "binance-btcusdt-trades.parquet", SPOT)
    venue = MarketVenue([SPOT_INST], cash=100_000)
    rec = Recorder(venue)
    for tick in ticks[:1001]:
        venue.process_trade(tick)
    order = rec.submit(limit(SPOT, BUY, "0.5", "39516.16"))
    assert order.status is OrderStatus.ACCEPTED
    partials: list[Decimal] = []
    for tick in ticks[1001:]:
        venue.process_trade(tick)
        if order.status is OrderStatus.PARTIALLY_FILLED:
            partials.append(order.filled_qty)
        check_identity(rec, D(100_000))
    fills = rec.fills()
    # five sell-aggressor prints at the bid fill it by their sizes, then a print through
    # the bid (39514.83, tick 1182) fills the rest
    assert [f.last_qty for f in fills] == [
        D("0.037071"), D("0.046336"), D("0.118797"), D("0.012648"), D("0.025147"),
        D("0.260001"),
    ]  # fmt: skip
    # (the file's 0.012649 is the float 0.012648999..., rounded down to the lot)
    assert [f.ts_ns for f in fills] == [
        ticks[i].ts_ns for i in (1175, 1178, 1179, 1180, 1181, 1182)
    ]
    assert all(f.last_px == D("39516.16") and f.liquidity is LiquiditySide.MAKER for f in fills)
    assert partials[0] == D("0.037071") and order.status is OrderStatus.FILLED
    notional = D("0.5") * D("39516.16")
    assert venue.balance("USDT") == D(100_000) - notional - notional * D("0.001")
    assert venue.balance("BTC") == D("0.5")


# -- latency ------------------------------------------------------------------------------


def _latency_run(latency: FixedLatency | None) -> tuple[Recorder, list[TradeTick], list[int]]:
    ticks = read_binance_trades(DATA / "binance-btcusdt-trades.parquet", SPOT)
    venue = MarketVenue([SPOT_INST], cash=100_000, latency=latency)
    rec = Recorder(venue)
    seen_tick: list[int] = []
    for i, tick in enumerate(ticks[:200]):
        before = len(rec.events)
        venue.process_trade(tick)
        seen_tick += [i] * (len(rec.events) - before)
        if i == 90:
            before = len(rec.events)
            rec.submit(market(SPOT, BUY, "0.01"))
            seen_tick += [i] * (len(rec.events) - before)
    return rec, ticks, seen_tick


def test_latency_shifts_fill_time_and_price_versus_zero_latency() -> None:
    rec0, ticks, seen0 = _latency_run(None)
    fill0 = rec0.fills()[0]
    assert (fill0.ts_ns, fill0.last_px) == (ticks[90].ts_ns, D("39449.07"))
    assert seen0[rec0.events.index(fill0)] == 90  # reported at once

    rec, _, seen = _latency_run(FixedLatency(submit_ns=50_000_000, report_ns=20_000_000))
    fill = rec.fills()[0]
    arrival = ticks[90].ts_ns + 50_000_000
    # it reaches the matcher 50 ms later, when the last trade was 39449.28 ...
    assert fill.ts_ns == arrival
    last_before = [t for t in ticks if t.ts_ns < arrival][-1]
    assert fill.last_px == D("39449.28") == D(repr(last_before.price))
    # ... and the report reaches the node 20 ms after that, with the first trade at or
    # after arrival + 20 ms (tick 96)
    accepted = next(e for e in rec.events if isinstance(e, OrderAccepted))
    assert seen[rec.events.index(accepted)] == seen[rec.events.index(fill)] == 96
    assert ticks[95].ts_ns < arrival + 20_000_000 <= ticks[96].ts_ns
    check_identity(rec, D(100_000))


def test_uniform_latency_is_reproducible_and_reports_keep_their_order() -> None:
    def run(seed: int) -> list[tuple[str, int, int]]:
        venue = MarketVenue(
            [PERP_INST], cash=1_000_000,
            latency=UniformLatency((1_000, 90_000), (1_000, 90_000), seed=seed),
        )  # fmt: skip
        rec = Recorder(venue)
        venue.process_trade(trade(100.0, 0))
        for k in range(30):
            rec.submit(market(PERP, BUY if k % 2 else SELL, "0.01"))
            venue.process_trade(trade(100.0 + k / 10, (k + 1) * 10_000))
        venue.flush()
        for order in rec.orders.values():
            kinds = [type(e).__name__ for e in order.events]
            assert kinds[-2:] == ["OrderAccepted", "OrderFilled"]
        return [
            (type(e).__name__, e.ts_ns, at) for e, at in zip(rec.events, rec.seen_at, strict=True)
        ]

    assert run(7) == run(7)
    assert run(7) != run(8)
    times = [at for _, _, at in run(7)]
    assert times == sorted(times)


def test_cancel_with_latency_arrives_after_the_order_or_is_dropped_after_a_fill() -> None:
    venue = MarketVenue([PERP_INST], cash=100_000, latency=FixedLatency(10, 10))
    rec = Recorder(venue)
    venue.process_trade(trade(100.0, 0))
    resting = rec.submit(limit(PERP, BUY, "1", "90"))
    assert venue.cancel_order(resting.client_order_id)  # on its way behind the submit
    resting.apply(OrderCancelRequested(ts_ns=0, client_order_id=resting.client_order_id))
    venue.process_trade(trade(100.0, 100))
    assert resting.status is OrderStatus.CANCELED

    doomed = rec.submit(limit(PERP, BUY, "1", "99"))
    venue.process_trade(trade(100.0, 200))
    assert doomed.status is OrderStatus.ACCEPTED
    venue.process_trade(trade(98.0, 300))  # fills it at the venue; report at 310
    assert venue.cancel_order(doomed.client_order_id) is False  # done at the venue
    assert doomed.status is OrderStatus.ACCEPTED  # the fill report is still on its way
    venue.process_trade(trade(98.0, 400))
    assert doomed.status is OrderStatus.FILLED
    assert venue.cancel_order("nope") is False


# -- venue checks -------------------------------------------------------------------------


def test_insufficient_margin_and_reduce_only_are_rejected_with_reasons() -> None:
    venue = MarketVenue([PERP_INST], cash=1_000, leverage=2)
    rec = Recorder(venue)
    venue.process_trade(trade(100.0, 0))
    big = rec.submit(market(PERP, BUY, "20.001"))  # 2000.1 notional / 2 + fee > 1000
    assert big.status is OrderStatus.REJECTED
    assert "insufficient margin" in venue.reasons[big.client_order_id]
    ok = rec.submit(market(PERP, BUY, "19"))
    assert ok.status is OrderStatus.FILLED
    wrong = rec.submit(market(PERP, BUY, "1", reduce_only=True))
    too_big = rec.submit(market(PERP, SELL, "19.001", reduce_only=True))
    for order in (wrong, too_big):
        assert order.status is OrderStatus.REJECTED
        assert "would not reduce the position 19" in venue.reasons[order.client_order_id]
    closing = rec.submit(market(PERP, SELL, "19", reduce_only=True))
    assert closing.status is OrderStatus.FILLED and venue.position(PERP) == 0


def test_resting_orders_reserve_margin_and_a_second_that_does_not_fit_is_rejected() -> None:
    venue = MarketVenue([PERP_INST], cash=1_000, leverage=2)
    rec = Recorder(venue)
    venue.process_trade(trade(100.0, 0))
    # 12 * 99 / 2 = 594 initial margin + the larger fee (taker 0.0005 * 1188 = 0.594)
    first = rec.submit(limit(PERP, BUY, "12", "99"))
    assert first.status is OrderStatus.ACCEPTED
    assert venue.reserved("USDT") == D("594.594") and venue.balance() == D(1_000)
    assert venue.free_margin() == D("405.406")
    second = limit(PERP, BUY, "12", "98")  # fits alone (588.588), not after the first
    rec.submit(second)
    assert second.status is OrderStatus.REJECTED
    assert venue.reasons[second.client_order_id] == (
        f"insufficient free USDT for BUY 12 {PERP} at 98: it reserves 588.5880 (initial "
        "margin 588 at leverage 2 + fee 0.5880), free 1000 less 594.5940 reserved by 1 "
        "working order(s) leaves 405.4060"
    )
    assert venue.reserved("USDT") == D("594.594")  # the rejection reserved nothing
    venue.cancel_order(first.client_order_id)
    assert first.status is OrderStatus.CANCELED and venue.reserved("USDT") == 0
    again = rec.submit(limit(PERP, BUY, "12", "98"))
    assert again.status is OrderStatus.ACCEPTED and venue.reserved("USDT") == D("588.588")
    # a partial fill of 3 of 12 releases a quarter; the position now holds its margin
    venue.process_trade(trade(98.0, 1, size=3.0))
    assert again.filled_qty == D(3) and venue.position(PERP) == D(3)
    assert venue.reserved("USDT") == D("441.441")
    venue.process_trade(trade(97.0, 2, size=100.0))
    assert again.status is OrderStatus.FILLED and venue.reserved("USDT") == 0
    check_identity(rec, D(1_000))


def test_reducing_orders_reserve_nothing_and_amendments_re_reserve() -> None:
    venue = MarketVenue([PERP_INST], cash=1_000, leverage=2)
    rec = Recorder(venue)
    venue.process_trade(trade(100.0, 0))
    rec.submit(market(PERP, BUY, "5"))
    assert venue.position(PERP) == D(5) and venue.reserved() == 0
    ro = rec.submit(limit(PERP, SELL, "5", "110", reduce_only=True))
    reducing = rec.submit(limit(PERP, SELL, "3", "111"))
    assert ro.status is reducing.status is OrderStatus.ACCEPTED
    assert venue.reserved("USDT") == 0
    # a sell beyond the position reserves for the part that opens a short
    flip = rec.submit(limit(PERP, SELL, "7", "120"))
    assert flip.status is OrderStatus.ACCEPTED
    # 2 * 120 / 2 = 120 margin + taker fee 0.0005 * 840 = 0.42
    assert venue.reserved("USDT") == D("120.42")
    buy = rec.submit(limit(PERP, BUY, "2", "90"))  # 90 + 0.09
    assert venue.reserved("USDT") == D("210.51")
    venue.amend_order(buy.client_order_id, price=D("80"))  # 80 + 0.08
    assert venue.reserved("USDT") == D("200.50")
    for order in (ro, reducing, flip, buy):
        venue.cancel_order(order.client_order_id)
    assert venue.reserved("USDT") == 0


def test_spot_orders_reserve_quote_cash_for_buys_and_base_for_sells() -> None:
    venue = MarketVenue([SPOT_INST], cash=1_000)
    rec = Recorder(venue)
    venue.process_trade(trade(100.0, 0, iid=SPOT))
    buy = rec.submit(limit(SPOT, BUY, "6", "99"))  # 594 + fee 0.594
    assert buy.status is OrderStatus.ACCEPTED and venue.reserved("USDT") == D("594.594")
    other = rec.submit(limit(SPOT, BUY, "6", "98"))
    assert other.status is OrderStatus.REJECTED
    assert "leaves 405.406" in venue.reasons[other.client_order_id]
    venue.process_trade(trade(98.0, 1, size=100.0, iid=SPOT))
    assert buy.status is OrderStatus.FILLED and venue.reserved("USDT") == 0
    sell = rec.submit(limit(SPOT, SELL, "4", "110"))
    assert venue.reserved("BTC") == D(4) and venue.free_margin("BTC") == D(2)
    too_many = rec.submit(limit(SPOT, SELL, "3", "111"))
    assert too_many.status is OrderStatus.REJECTED
    assert "reserves 3 (the 3 BTC sold)" in venue.reasons[too_many.client_order_id]
    venue.cancel_order(sell.client_order_id)
    assert venue.reserved("BTC") == 0
    check_identity(rec, D(1_000))


def test_sizer_and_unknown_instrument_are_refused() -> None:
    venue = MarketVenue([PERP_INST])
    rec = Recorder(venue)
    order = market(PERP, BUY, "1")
    rec.orders[order.client_order_id] = order
    venue.submit_order(order, sizer=lambda px, eq: D(1))
    assert order.status is OrderStatus.REJECTED
    with pytest.raises(ValueError, match="unknown instrument"):
        venue.process_trade(trade(1.0, 0, iid=SPOT))
    with pytest.raises(ValueError, match="at least one instrument"):
        MarketVenue([])
    with pytest.raises(ValueError, match="maintenance_margin_rate"):
        LiquidationRule(maintenance_margin_rate=D("1.5"))


def test_process_price_without_size_fills_a_touched_limit_completely() -> None:
    venue = MarketVenue([PERP_INST], cash=100_000)
    rec = Recorder(venue)
    venue.process_price(PERP, 0, 100.0)
    order = rec.submit(limit(PERP, BUY, "3", "99.5"))
    assert venue.has_work(PERP)
    venue.process_price(PERP, 1, 99.5)
    assert order.status is OrderStatus.FILLED and not venue.has_work(PERP)


# -- funding and liquidation --------------------------------------------------------------


def _long_at_20000(liq_fee: str = "0.001", **kw: object) -> tuple[MarketVenue, Recorder]:
    rule = LiquidationRule(D("0.005"), D(liq_fee))
    venue = MarketVenue([PERP_INST], cash=1_000, leverage=20, liquidation=rule, **kw)  # type: ignore[arg-type]
    rec = Recorder(venue)
    venue.process_trade(trade(20000.0, 0))
    rec.submit(market(PERP, BUY, "0.5"))  # 10,000 notional on 1,000 (10x); fee 5
    return venue, rec


def test_liquidation_price_and_fees_on_a_hand_made_path() -> None:
    venue, rec = _long_at_20000()
    stop = rec.submit(limit(PERP, SELL, "0.5", "25000"))  # canceled by the liquidation
    assert venue.balance() == D("995")
    rule = venue.liquidation
    assert rule is not None
    # P = (q*E - cash) / (q*(1 - r)) = (10000 - 995) / (0.5 * 0.995)
    price = rule.liquidation_price(D("0.5"), D("20000"), D("995"))
    assert price == D(9005) / D("0.4975")
    assert D("18100.5") < price < D("18100.6")
    for ts, px in enumerate([19000.0, 18500.0, 18100.6], start=1):
        assert venue.process_trade(trade(px, ts)) == []
        check_identity(rec, D(1000))
    # equity 45.30 vs maintenance margin 45.2515 at 18100.6: still open
    assert venue.position(PERP) == D("0.5")
    (liq,) = venue.process_trade(trade(18100.5, 9))
    assert isinstance(liq, Liquidation)
    assert (liq.side, liq.quantity, liq.price, liq.ts_ns) == (SELL, D("0.5"), D("18100.5"), 9)
    assert liq.equity == D("45.25") and liq.maintenance_margin == D("45.25125")
    assert liq.fee == D("4.525125")  # taker 0.05 % of 9050.25
    assert liq.liquidation_fee == D("9.05025")  # 0.1 %
    assert liq.fill.fee == D("13.575375") and liq.fill.liquidity is LiquiditySide.TAKER
    assert liq.realized_pnl == D("-949.75")
    assert "below the maintenance margin 45.25125" in liq.reason
    assert liq.canceled == (stop.client_order_id,) and stop.status is OrderStatus.CANCELED
    assert venue.position(PERP) == 0
    assert venue.balance() == D("995") - D("949.75") - D("13.575375") == D("31.674625")
    assert venue.equity() == venue.balance()
    assert venue.fees == D("5") + D("13.575375")
    check_identity(rec, D(1000))
    assert venue.process_trade(trade(15000.0, 10)) == []  # flat: nothing more


def test_a_short_is_liquidated_above_its_price_and_none_disables_it() -> None:
    rule = LiquidationRule(D("0.01"), D(0))
    for enabled in (True, False):
        venue = MarketVenue(
            [PERP_INST], cash=500, leverage=10, liquidation=rule if enabled else None
        )
        rec = Recorder(venue)
        venue.process_trade(trade(10000.0, 0))
        rec.submit(market(PERP, SELL, "0.4"))  # fee 2 -> cash 498
        price = rule.liquidation_price(D("-0.4"), D("10000"), D("498"))
        assert price == (D(-4000) - D(498)) / (D("-0.4") * D("1.01"))
        assert venue.process_trade(trade(11133.6, 1)) == []  # just below 11133.66...
        out = venue.process_trade(trade(11133.7, 2))
        if enabled:
            assert [(x.side, x.price) for x in out] == [(BUY, D("11133.7"))]
            assert out[0].fee == D("0.4") * D("11133.7") * D("0.0005")
            check_identity(rec, D(500))
        else:
            assert out == [] and venue.position(PERP) == D("-0.4")


def test_funding_is_paid_by_a_long_and_can_liquidate() -> None:
    venue, rec = _long_at_20000()
    assert venue.apply_funding(PERP, D("0.0001"), 20000.0, 1) == D("-1")  # 10000 * 0.01 %
    assert venue.funding == D("-1") and venue.balance() == D("994")
    check_identity(rec, D(1000))
    venue.process_trade(trade(18110.0, 2))
    assert venue.position(PERP) == D("0.5")
    # a large funding payment drains the equity below the maintenance margin
    venue.apply_funding(PERP, D("0.01"), 18110.0, 3)  # pays 90.55
    assert venue.position(PERP) == 0 and venue.flush() == [venue.liquidations[0]]
    assert venue.liquidations[0].price == D("18110")
    check_identity(rec, D(1000))


def test_liquidation_reports_wait_for_the_report_delay() -> None:
    venue, rec = _long_at_20000(latency=FixedLatency(0, 100))
    venue.process_trade(trade(20000.0, 200))  # the entry reports arrive
    assert rec.orders and all(o.status is OrderStatus.FILLED for o in rec.orders.values())
    assert venue.process_trade(trade(18000.0, 300)) == []  # liquidated now, reported at 400
    assert venue.position(PERP) == 0 and len(venue.liquidations) == 1
    (liq,) = venue.process_trade(trade(18000.0, 400))
    assert liq.ts_ns == 300


# -- properties ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-500, max_value=500),  # price step in ticks of 0.1
            st.integers(min_value=-300, max_value=300),  # order size in 0.1 (0 = none)
        ),
        min_size=1,
        max_size=25,
    )
)
def test_equity_always_equals_cash_plus_marked_positions(steps: list[tuple[int, int]]) -> None:
    venue = MarketVenue([PERP_INST], cash=2_000, leverage=20)  # about half the runs liquidate
    rec = Recorder(venue)
    price = D("1000")
    venue.process_trade(trade(float(price), 0))
    for ts, (move, lots) in enumerate(steps, start=1):
        price = max(D("100"), price + move * D("0.1"))
        venue.process_trade(trade(float(price), ts))
        if lots:
            rec.submit(market(PERP, BUY if lots > 0 else SELL, str(abs(lots) * D("0.1"))))
        check_identity(rec, D(2_000))
        assert all(not o.is_open for o in rec.orders.values())
    for liq in venue.liquidations:
        assert liq.equity < liq.maintenance_margin
