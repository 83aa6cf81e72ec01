"""Paper sessions against a real venue server process: lockstep paper equals the event
backtest; a resumed node adopts the venue's truth (reconciliation)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from sapphire.backtest import Backtest
from sapphire.data.samples import SAMPLE_PATH
from sapphire.domain import OrderSide, OrderStatus, StrategyId
from sapphire.paper import NEVER_REACHED, PaperConfig, PaperSession
from sapphire.store import Store

RANGE = {"start": "2022-01-03", "end": "2022-01-03 03:00"}
CFG = PaperConfig(
    **RANGE, speed="max", size=0.01, maker_fee=0.0005, taker_fee=0.0005,
    params={"fast": "5", "slow": "20"},
)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")  # no stray venue outlives a failure
    return Store(f"sqlite:///{tmp_path / 'store.db'}")


def test_lockstep_paper_session_equals_the_event_backtest(tmp_path: Path, store: Store) -> None:
    session = PaperSession.start(CFG, store=store, home=tmp_path)
    view = session.run()
    assert view.status == "finished"
    bt = Backtest(
        SAMPLE_PATH, "sma_cross", **RANGE, engine="event", size=0.01, fee=0.0005, fast=5, slow=20
    ).run()
    fills = store.fills(session.run_id)
    assert len(fills) == 2 * len(bt.trades) > 0
    assert float(view.balance) == pytest.approx(float(bt.equity.iloc[-1]), abs=1e-9)
    entry_px = [float(f.last_px) for f in fills[::2]]
    assert entry_px == pytest.approx(bt.trades["entry_price"].tolist())
    assert store.run(session.run_id).status.value == "FINISHED"
    assert not (session.run_dir / "venue.json").exists()  # the venue stopped with it


def test_resume_adopts_the_venues_truth(tmp_path: Path, store: Store) -> None:
    s = PaperSession.start(CFG, store=store, home=tmp_path)
    for _ in range(30):
        s.pump(advance=True)
    iid = s.iid
    # 1. the venue takes an order whose answer the node never records ("after_send")
    lost_ack = s.adapter.market(iid, OrderSide.BUY, Decimal("0.01"))
    deliver = s.venue.deliver
    s.venue.deliver = lambda events: None  # type: ignore[method-assign]
    assert s.node.submit_order(s.adapter, lost_ack)
    s.venue.deliver = deliver  # type: ignore[method-assign]
    # 2. an order committed as SUBMITTED that never reaches the venue ("before_send")
    never_sent = s.adapter.market(iid, OrderSide.BUY, Decimal("0.02"))
    s.venue.submit_order = lambda order, sizer=None: None  # type: ignore[method-assign]
    assert s.node.submit_order(s.adapter, never_sent)
    a, b = str(lost_ack.client_order_id), str(never_sent.client_order_id)
    assert store.order(a).status is OrderStatus.SUBMITTED
    assert store.order(b).status is OrderStatus.SUBMITTED
    # 3. the node "dies"; the venue moves on by itself and fills the order meanwhile
    s.client.close()
    seq_before = s.node._ids["s"].last_seq
    r = PaperSession.resume(s.run_id, store=store)
    for _ in range(2):
        r.client.call("poll", after=10**9, advance=True)
    r.client.close()

    r = PaperSession.resume(s.run_id, store=store)
    venue = r.client.call("snapshot")
    filled = store.order(a)
    assert filled.status is OrderStatus.FILLED and filled.filled_qty == Decimal("0.01")
    assert (filled.status.value, filled.filled_qty, filled.avg_px) == venue["orders"][a]
    rejected = store.order(b)
    assert rejected.status is OrderStatus.REJECTED
    assert NEVER_REACHED in str(rejected.events[-1])
    assert b not in venue["orders"] and b in venue["tombstones"]
    # positions and balances equal the venue's
    net = r.node.portfolio.net_quantity(iid, StrategyId("s"))
    assert net == venue["positions"][str(iid)] == r.adapter.pos
    assert r.node.portfolio.account.balances == venue["balances"]
    # new ids continue after the stored ones
    assert r.node._ids["s"].last_seq == seq_before
    # and it trades on to the end, store and venue agreeing
    r.run()
    final = store.orders(r.run_id)
    assert len({str(o.client_order_id) for o in final}) == len(final)
    (state,) = store.balances(r.run_id).values()
    positions = {str(p.instrument_id): p.quantity for p in store.positions(r.run_id)}
    assert positions[str(iid)] == r.node.portfolio.net_quantity(iid)
    assert state.balances[0].total == r.node.portfolio.account.balance("QUOTE")


def test_a_drawdown_breach_halts_the_node_and_is_recorded(tmp_path: Path, store: Store) -> None:
    from sapphire.domain import OrderDenied, TradingState, TradingStateChanged
    from sapphire.risk import PortfolioLimits

    s = PaperSession.start(CFG, store=store, home=tmp_path)
    s.limits = PortfolioLimits(max_drawdown="0.0001")  # 0.01 %: the first loss trips it
    for _ in range(180):
        s.pump(advance=True)
        if s.node.trading_state is TradingState.HALTED:
            break
    assert s.node.trading_state is TradingState.HALTED
    s.client.close()  # the node "dies"; the resumed one is still halted
    r = PaperSession.resume(s.run_id, store=store)
    assert r.node.trading_state is TradingState.HALTED
    r.run()
    changes = [e for e in store.risk_events(s.run_id) if isinstance(e, TradingStateChanged)]
    assert changes and changes[0].state is TradingState.HALTED
    halted_at = changes[0].ts_ns
    later = [o for o in store.orders(s.run_id) if o.ts_init > halted_at]
    assert later, "the strategy kept signalling after the halt"
    assert all(isinstance(o.events[-1], OrderDenied) for o in later)
    assert store.equity_snapshots(s.run_id)
