"""A live session rebalancing two linear perpetuals of one account on the local Bybit
exchange (`sapphire live --strategy rebalance --symbols ... --weights ...`): the bars of
both markets reach the `Rebalancer` in lockstep, its orders go through the node's risk
engine, each position holds its target weight within a lot after every rebalance, the
store matches the exchange market by market; a session that dies in the middle of a
rebalance (in process, and SIGKILL of a `sapphire live` process) resumes from the store
and its state file, carries the rebalance on and sends nothing twice.

The local exchange replays one recorded series for every market it lists: its second
linear market (ETHUSDT, `markets_for`) trades at the same prices as BTCUSDT, with its
own orders, executions and position in the one USDT wallet.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd
import pytest
from local_exchange import CREDS, Exchange, frame, no_internet
from rich.console import Console
from test_live_session import step, wait
from typer.testing import CliRunner

from sapphire.cli.live import _table
from sapphire.domain import InstrumentId, OrderSide
from sapphire.engine.rebalance import Rebalancer
from sapphire.live import RECONCILIATION, LiveConfig, LiveSession
from sapphire.live.session import REBALANCER_STATE, live_dir
from sapphire.store import Store
from sapphire.venues.bybit import BybitConnection, BybitEnvironment
from sapphire.venues.exchange import default_markets, markets_for
from sapphire.venues.market_data import KlinePoller, Lockstep

__all__ = ["frame", "no_internet"]  # the shared fixtures, used by name

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
SYMBOLS = f"{BTC},{ETH}"
WEIGHTS = f"{BTC}=0.3,{ETH}=-0.2"
IIDS = {BTC: InstrumentId(BTC, "BYBIT"), ETH: InstrumentId(ETH, "BYBIT")}
BYBIT_IDS = {BTC: "BTCUSDT", ETH: "ETHUSDT"}
LOT = Decimal("0.001")  # both markets' lot


def two_markets(ex_frame: pd.DataFrame, **kw: Any) -> Exchange:
    """The local exchange listing a second linear perpetual, ETHUSDT."""
    price = float(ex_frame["close"].iloc[1439])
    eth = [m for m in markets_for("ETHUSDT", price) if m.category == "linear"]
    return Exchange(ex_frame, markets=default_markets() + eth, **kw)


@pytest.fixture
def exchange(frame: pd.DataFrame) -> Iterator[Exchange]:
    ex = two_markets(frame)
    yield ex
    ex.server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'sapphire.db'}")


def config(ex: Exchange, **kw: Any) -> LiveConfig:
    options: dict[str, Any] = {
        "env": "local", "url": ex.url, "strategy": "rebalance", "symbols": SYMBOLS,
        "weights": WEIGHTS, "rebalance_every": "3", "warmup": 5, "poll_interval": 0.05,
        "reconcile_every": 3600.0,
    }  # fmt: skip
    return LiveConfig(**(options | kw))


def fill_what_was_sent(session: LiveSession, ex: Exchange) -> None:
    """The exchange replays one more bar (not handed to the session): every market order
    sent fills; the session takes the fills."""
    ex.state.advance()
    node, venue = session.node, session.venue

    def filled() -> bool:
        venue.drain()
        return not node.open_orders()

    wait(filled)
    session.settle(5.0)


def positions(session: LiveSession) -> dict[str, Decimal]:
    return {s: session.node.portfolio.net_quantity(i) for s, i in IIDS.items()}


def exchange_positions(ex: Exchange) -> dict[str, Decimal]:
    state = ex.state
    return {s: state.position_qty(state.markets[("linear", b)]) for s, b in BYBIT_IDS.items()}


def assert_store_is_exchange(store: Store, run_id: str, ex: Exchange) -> None:
    """Every order on the exchange is the store's (one per orderLinkId; those made by
    hand, `hand-...`, aside), every execution of them is in the store once, and every
    market's stored position is the exchange's."""
    stored = {str(o.client_order_id) for o in store.orders(run_id)}
    links = [r.link_id for r in ex.state.orders.values() if not r.link_id.startswith("hand-")]
    assert len(links) == len(set(links)), "an order was sent twice"
    assert set(links) <= stored
    trade_ids = [str(f.trade_id) for f in store.fills(run_id)]
    assert len(trade_ids) == len(set(trade_ids)), "a fill was applied twice"
    ours = [e for e in ex.state.executions if not str(e["orderLinkId"]).startswith("hand-")]
    assert sorted(trade_ids) == sorted(str(e["execId"]) for e in ours)
    held = dict.fromkeys(IIDS, Decimal(0))
    for p in store.positions(run_id):
        held[p.instrument_id.symbol] += p.quantity
    assert held == exchange_positions(ex)


def rebalancer_state(session: LiveSession) -> dict[str, Any]:
    rb = session.trader
    assert isinstance(rb, Rebalancer)
    return rb.state()


def assert_targets_held(session: LiveSession, since: int = 0) -> int:
    """After each finished rebalance from bar `since` on, every position within a lot
    of its target; the number of those rebalances that traded. The position after a
    rebalance is the session's last one less the fills of the rebalances after it (no
    trade by hand after bar `since`)."""
    rb = session.trader
    assert isinstance(rb, Rebalancer)
    net = session.node.portfolio.net_quantity
    held = {iid: net(iid) for iid in rb.instruments}
    traded = 0
    for record in reversed(rb.history):
        assert not record.refused, record.refused
        if record.bar >= since and record.done and record.targets:
            traded += 1
            for iid in rb.instruments:
                assert abs(record.targets[iid] - held[iid]) < LOT, (iid, record.bar)
        for cid in record.orders:
            order = session.node.orders[cid]
            assert order.filled_qty == order.quantity, (cid, order.status)
            sign = 1 if order.side is OrderSide.BUY else -1
            held[order.instrument_id] -= sign * order.filled_qty
    return traded


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"symbols": None}, "strategy rebalance needs --symbols"),
        ({"symbols": f"{BTC},{BTC}"}, r"'BTC/USDT:USDT' is given twice"),
        ({"symbols": f"{BTC},,{ETH}"}, r"symbols='BTC/USDT:USDT,,ETH/USDT:USDT' is invalid"),
        ({"weights": "SOL/USDT:USDT=0.5"}, "weight for SOL/USDT:USDT names an unknown"),
        ({"weights": f"{BTC}=0.8,{ETH}=-0.5"}, "sum to 1.3"),
        ({"weights": f"{BTC}"}, "weights item 'BTC/USDT:USDT' is invalid"),
        ({"weights": None}, "needs --weights or --allocation"),
        ({"rebalance_every": "2x"}, "every='2x' is invalid"),
        ({"strategy": "sma_cross", "weights": None}, "symbols are the rebalance strategy's"),
        ({"strategy": "sma_cross", "symbols": None}, "weights/allocation are the rebalance"),
    ],
)
def test_a_bad_rebalance_setting_is_refused_naming_it(
    changes: dict[str, Any], message: str
) -> None:
    base = {"strategy": "rebalance", "symbols": SYMBOLS, "weights": WEIGHTS}
    with pytest.raises(ValueError, match=message):
        LiveConfig(**(base | changes))


def test_the_cli_takes_the_paper_options_and_refuses_bad_ones(tmp_path: Path) -> None:
    from sapphire.cli.main import app

    env = {"SAPPHIRE_HOME": str(tmp_path), "SAPPHIRE_DATABASE_URL": ""}
    result = CliRunner().invoke(
        app,
        ["live", "--strategy", "rebalance", "--symbols", SYMBOLS, "--weights",
         f"{BTC}=0.9,{ETH}=0.9", "--env", "local", "--url", "http://127.0.0.1:9"],
        env=env,
    )  # fmt: skip
    assert result.exit_code != 0
    assert "sum to 1.8" in result.output
    help_text = CliRunner().invoke(app, ["live", "--help"], env=env).output
    for name in ("--symbols", "--weights", "--allocation", "--rebalance-every",
                 "--rebalance-drift", "--lookback"):  # fmt: skip
        assert name in help_text


def test_a_spot_market_is_refused_in_a_rebalancing_session(
    exchange: Exchange, store: Store, tmp_path: Path
) -> None:
    cfg = config(exchange, symbols=f"{BTC},BTC/USDT", weights=f"{BTC}=0.5")
    with pytest.raises(ValueError, match=r"'BTC/USDT' is a spot market: a rebalancing"):
        LiveSession.start(cfg, store=store, home=tmp_path, environ=exchange.environ())
    assert store.runs() == []


# ---------------------------------------------------------------------- lockstep
def test_lockstep_hands_on_a_bar_time_once_every_market_has_it(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    conn = BybitConnection(BybitEnvironment.LOCAL, url=exchange.url)
    feeds = [KlinePoller(conn, s, "1m", IIDS[s], interval_s=0.01) for s in (BTC, ETH)]
    lockstep = Lockstep(feeds, wait_s=0.5)
    try:
        history = lockstep.history(3)
        assert [len(b) for b in history.values()] == [3, 3]
        assert lockstep.poll(0.1) == []
        for _ in range(2):
            exchange.state.advance()
        got: list[Any] = []
        wait(lambda: len(got.__iadd__(lockstep.poll(0.2))) >= 4)
        times = [b.ts_ns for b in got]
        assert [str(b.instrument_id) for b in got] == [str(IIDS[s]) for s in (BTC, ETH)] * 2
        assert times[0] == times[1] < times[2] == times[3]
        # one market's bar is late: its time waits, then goes on without it, logged
        exchange.state.advance()
        late = feeds[1].poll(1.0)  # ETH's bar taken away from the lockstep
        assert len(late) == 1
        with caplog.at_level(logging.WARNING, logger="sapphire.venues.market_data"):
            first = lockstep.poll(0.2)
            assert first == []  # BTC's bar waits for ETH's
            partial: list[Any] = []
            wait(lambda: bool(partial.__iadd__(lockstep.poll(0.2))), 5.0)
        assert [str(b.instrument_id) for b in partial] == [str(IIDS[BTC])]
        assert lockstep.late == 1
        assert any("no bar of ETH/USDT:USDT@BYBIT" in r.getMessage() for r in caplog.records)
    finally:
        lockstep.close()


def test_lockstep_refuses_sources_of_different_timeframes(exchange: Exchange) -> None:
    conn = BybitConnection(BybitEnvironment.LOCAL, url=exchange.url)
    feeds = [
        KlinePoller(conn, BTC, "1m", IIDS[BTC], interval_s=0.01),
        KlinePoller(conn, ETH, "5m", IIDS[ETH], interval_s=0.01),
    ]
    try:
        with pytest.raises(ValueError, match=r"timeframes \['1m', '5m'\] differ"):
            Lockstep(feeds)
    finally:
        for f in feeds:
            f.close()


# ---------------------------------------------------------------------- sessions
@pytest.mark.slow
def test_a_live_session_holds_the_target_weights_of_two_markets(
    exchange: Exchange, store: Store, tmp_path: Path
) -> None:
    session = LiveSession.start(
        config(exchange), store=store, home=tmp_path, environ=exchange.environ(), run_id="rb"
    )
    try:
        assert len(session.feeds) == 2 and isinstance(session.source, Lockstep)
        for _ in range(20):
            step(session, exchange)
        fill_what_was_sent(session, exchange)
        view = session.view()
    finally:
        session.stop(on_exit="leave")
    rb = session.trader
    assert isinstance(rb, Rebalancer)
    assert [r.bar for r in rb.history] == [0, 3, 6, 9, 12, 15, 18]
    assert assert_targets_held(session) >= 4
    # a long and a short, each worth its weight of the equity
    pos = exchange_positions(exchange)
    assert pos[BTC] > 0 > pos[ETH]
    assert view.positions == {str(IIDS[s]): str(q) for s, q in pos.items()}
    shown = Console(width=200, record=True)
    shown.print(_table(view))
    text = shown.export_text()
    assert all(f"{IIDS[s]}" in text and str(q) in text for s, q in pos.items())
    assert_store_is_exchange(store, "rb", exchange)
    # every order went through the risk engine and reached the exchange once
    assert {str(o.client_order_id) for o in store.orders("rb")} == {
        r.link_id for r in exchange.state.orders.values()
    }
    assert {i.id for i in store.instruments()} >= set(IIDS.values())
    # the balance and both positions agreed all along: nothing adopted
    assert [e for e in store.risk_events("rb") if getattr(e, "kind", "") == RECONCILIATION] == []
    state = json.loads((live_dir("rb", tmp_path) / REBALANCER_STATE).read_text())
    assert state["step"] is None and state["portfolio_bars"] == 20


@pytest.mark.slow
def test_a_position_changed_behind_its_back_is_adopted_market_by_market(
    exchange: Exchange, store: Store, tmp_path: Path
) -> None:
    session = LiveSession.start(
        config(exchange), store=store, home=tmp_path, environ=exchange.environ(), run_id="b"
    )
    try:
        for _ in range(2):
            step(session, exchange)
        before = positions(session)
        # someone sells 0.005 ETHUSDT on the account by hand; it fills at the next open
        client = ccxt.bybit(exchange.config())
        client.load_markets()
        client.create_order(ETH, "market", "sell", 0.005, params={"orderLinkId": "hand-1"})
        exchange.state.advance()
        session.reconcile_account()
        after = positions(session)
    finally:
        session.stop(on_exit="leave")
    assert after[BTC] == before[BTC]
    assert after[ETH] == before[ETH] - Decimal("0.005") == exchange_positions(exchange)[ETH]
    reasons = [e.reason for e in store.risk_events("b") if getattr(e, "kind", "") == RECONCILIATION]
    assert any(r.startswith(f"{ETH}: position {before[ETH]} in the store") for r in reasons)
    assert not any(r.startswith(f"{BTC}:") for r in reasons)


@pytest.mark.slow
def test_paper_on_live_data_rebalances_on_the_simulated_venue(
    exchange: Exchange, store: Store, tmp_path: Path
) -> None:
    """`--paper`, with both markets' klines from the WebSocket (`--market-data ws`)."""
    session = LiveSession.start(
        config(exchange, paper=True, cash=50_000.0, market_data="ws"), store=store,
        home=tmp_path, environ={}, run_id="p",
    )  # fmt: skip
    try:
        for _ in range(8):
            step(session, exchange)
    finally:
        session.stop()
    assert exchange.state.orders == {}  # nothing was sent to the exchange
    held = positions(session)
    assert held[BTC] > 0 > held[ETH]
    assert assert_targets_held(session) >= 2


@pytest.mark.slow
def test_a_session_dead_mid_rebalance_resumes_on_the_same_path(
    frame: pd.DataFrame, store: Store, tmp_path: Path
) -> None:
    """Two exchanges replaying the same bars: one session straight through, one that
    stops dead while a rebalance waits for its reductions (its increases not sent) and
    is resumed from the store and the rebalancer's state file. Trades made by hand on
    both accounts (adopted by reconciliation) put BTC over its target and the ETH short
    under its own before the rebalance of bar 6: it reduces BTC, then increases ETH."""
    paths: list[list[dict[str, Decimal]]] = []
    for name, crash in (("straight", False), ("crashed", True)):
        ex = two_markets(frame)
        client = ccxt.bybit(ex.config())
        client.load_markets()
        try:
            s = LiveSession.start(
                config(ex), store=store, home=tmp_path, environ=ex.environ(), run_id=name
            )
            path = []
            for i in range(18):  # the rebalance of bar 15 done and filled by bar 17
                step(s, ex)
                if i == 4:  # fills at the next bar's open
                    for symbol in (BTC, ETH):
                        link = f"hand-{name}-{symbol[:3]}"
                        client.create_order(symbol, "market", "buy", 0.01,
                                            params={"orderLinkId": link})  # fmt: skip
                if i == 5:
                    s.reconcile_account()
                path.append(positions(s))
                state = rebalancer_state(s)
                if i == 6:  # the rebalance of bar 6 sent BTC's reduction, waits for it
                    assert state["step"] == "increase" and state["rebalance"]["bar"] == 6
                    orders = [o for o in s.node.orders.values() if not o.is_terminal]
                    assert [str(o.instrument_id) for o in orders] == [str(IIDS[BTC])]
                if crash and i == 6:
                    s.close()  # the process is gone: nothing cancelled, nothing said
                    s = LiveSession.resume(name, store=store, environ=ex.environ())
                    assert rebalancer_state(s)["step"] == "increase"
            fill_what_was_sent(s, ex)
            rb = s.trader
            assert isinstance(rb, Rebalancer)
            if crash:  # the resumed session's first rebalance: the one it carried on
                carried = rb.history[0]
                assert carried.bar == 6 and carried.done
                # its increase step sent ETH's order, once, after the resume
                sent = [s.node.orders[cid] for cid in carried.orders]
                assert [str(o.instrument_id) for o in sent] == [str(IIDS[ETH])]
                assert sent[0].side is OrderSide.SELL
            assert assert_targets_held(s, since=6) == 4  # bars 6, 9, 12, 15
            s.stop(on_exit="leave")
            assert_store_is_exchange(store, name, ex)
        finally:
            ex.server.stop()
        paths.append(path)
    assert paths[0] == paths[1]
    ids = [sorted(str(o.client_order_id).split("-", 1)[1] for o in store.orders(n))
           for n in ("straight", "crashed")]  # fmt: skip
    assert ids[0] == ids[1]


@pytest.mark.slow
def test_sigkill_mid_rebalance_then_live_resume_sends_nothing_twice(
    exchange: Exchange, tmp_path: Path
) -> None:
    env = {
        **os.environ, "SAPPHIRE_HOME": str(tmp_path), "BYBIT_LOCAL_API_KEY": CREDS.key,
        "BYBIT_LOCAL_API_SECRET": CREDS.secret,
    }  # fmt: skip
    env.pop("SAPPHIRE_DATABASE_URL", None)
    store = Store(f"sqlite:///{tmp_path / 'sapphire.db'}")
    state_file = live_dir("k", tmp_path) / REBALANCER_STATE
    cmd = [
        sys.executable, "-m", "sapphire", "live", "--env", "local", "--url", exchange.url,
        "--strategy", "rebalance", "--symbols", SYMBOLS, "--weights", WEIGHTS,
        "--rebalance-every", "2", "--warmup", "5", "--poll-interval", "0.05",
    ]  # fmt: skip
    clock = exchange.state.start_clock(speed=120)  # a 1-minute bar every 0.5 s
    try:
        proc = subprocess.Popen(
            [*cmd, "--run-id", "k", "--seconds", "120", "--json"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait(lambda: _mid_rebalance(state_file) or proc.poll() is not None, 90)
            assert proc.poll() is None, proc.communicate()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        interrupted = json.loads(state_file.read_text())
        assert interrupted["step"] == "increase"
        done = subprocess.run(
            [sys.executable, "-m", "sapphire", "live", "resume", "k", "--seconds", "4",
             "--on-exit", "leave", "--json"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert set(summary["positions"]) == {str(i) for i in IIDS.values()}
    finally:
        clock.stop()
    # the interrupted rebalance was carried on: a later state went past it
    assert json.loads(state_file.read_text())["portfolio_bars"] > interrupted["portfolio_bars"]
    time.sleep(0.5)  # what was in flight settles on the exchange; then store = exchange
    again = LiveSession.resume("k", store=store, environ=exchange.environ())
    try:
        again.settle(5.0)
        for _ in range(4):  # two more rebalances, stepped by hand
            step(again, exchange)
        fill_what_was_sent(again, exchange)
        assert assert_targets_held(again) >= 1
    finally:
        again.stop(on_exit="leave")
    assert_store_is_exchange(store, "k", exchange)


def _mid_rebalance(path: Path) -> bool:
    """Whether the rebalancer's state says a rebalance waits for its reductions."""
    try:
        return bool(json.loads(path.read_text())["step"] == "increase")
    except (OSError, ValueError, KeyError):
        return False
