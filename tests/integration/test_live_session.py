"""`LiveSession` against the local Bybit exchange over real HTTP: a strategy trades, the
store records it and matches the exchange; a run stopped without warning (in-process,
and SIGKILL of a `sapphire live` process) resumes without duplicated orders or lost
fills; reconciliation adopts what the exchange did while the node was down and says
why; `--paper` fills on the simulated venue from the exchange's bars.

The replay is stepped by hand (`step`: the exchange replays one bar, the session takes
it), so two runs over the same bars are comparable bar by bar.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd
import pytest
from local_exchange import CREDS, LINEAR, Exchange, frame, no_internet

from sapphire.domain import InstrumentId, OrderCanceled, OrderFilled, OrderStatus, OrderType
from sapphire.engine import VectorAdapter
from sapphire.live import RECONCILIATION, LiveConfig, LiveSession
from sapphire.live import session as live_session
from sapphire.store import Store
from sapphire.venues.bybit import BybitConnection, BybitEnvironment
from sapphire.venues.live import OrderState
from sapphire.venues.market_data import KlinePoller, KlineStream

__all__ = ["frame", "no_internet"]  # the shared fixtures, used by name

SMA = {"fast": 3, "slow": 8}
_PERP = InstrumentId(LINEAR, "BYBIT")
RESTING = '''
from decimal import Decimal
from sapphire.engine.strategy import EventStrategy

class Resting(EventStrategy):
    """Bar 1: a limit buy 20% below the close (it rests) and one at the close (it fills
    within a few bars)."""

    def __init__(self) -> None:
        super().__init__("r")
        self.n = 0

    def on_bar(self, bar):
        self.n += 1
        if self.n == 1:
            for frac in ("0.8", "1"):
                price = (Decimal(str(bar.close)) * Decimal(frac)).quantize(Decimal("0.1"))
                self.submit_order(self.limit(bar.instrument_id, "BUY", "0.01", price))
'''


@pytest.fixture
def exchange(frame: pd.DataFrame) -> Iterator[Exchange]:
    ex = Exchange(frame)
    yield ex
    ex.server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'sapphire.db'}")


def config(ex: Exchange, **kw: Any) -> LiveConfig:
    options: dict[str, Any] = {
        "env": "local", "url": ex.url, "params": SMA, "warmup": 30, "poll_interval": 0.05,
        "reconcile_every": 3600.0,
    }  # fmt: skip
    return LiveConfig(**(options | kw))


def wait(done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def step(session: LiveSession, ex: Exchange) -> None:
    """The exchange replays one bar; the session takes its fills, then the bar (the
    strategy acts); what it sent reaches the exchange before the next bar."""
    ex.state.advance()
    node, venue = session.node, session.venue
    if not session.config.paper:

        def market_done() -> bool:
            venue.drain()
            return not any(o.type is OrderType.MARKET for o in node.open_orders())

        wait(market_done)
    session.run(max_bars=session.bars_seen + 1, max_seconds=10)
    if not session.config.paper:
        wait(
            lambda: all(
                venue.order_state(str(o.client_order_id)) is not OrderState.SENDING
                for o in node.open_orders()
            )
        )


def position(session: LiveSession) -> Decimal:
    return session.node.portfolio.net_quantity(session.iid)


def exchange_position(ex: Exchange) -> Decimal:
    return ex.state.position_qty(ex.state.markets[("linear", "BTCUSDT")])


def assert_store_is_exchange(store: Store, run_id: str, ex: Exchange) -> None:
    """Every order on the exchange is the store's (one per orderLinkId), every execution
    is in the store once, and the stored position is the exchange's."""
    stored = {str(o.client_order_id): o for o in store.orders(run_id)}
    links = [r.link_id for r in ex.state.orders.values()]
    assert len(links) == len(set(links))
    assert set(links) <= set(stored)
    trade_ids = [str(f.trade_id) for f in store.fills(run_id)]
    assert len(trade_ids) == len(set(trade_ids)), "a fill was applied twice"
    assert sorted(trade_ids) == sorted(str(e["execId"]) for e in ex.state.executions)
    qty = sum((p.quantity for p in store.positions(run_id)), Decimal(0))
    assert qty == exchange_position(ex)


def test_market_data_gives_each_confirmed_bar_once_never_the_forming_one(
    frame: pd.DataFrame,
) -> None:
    ex = Exchange(frame, faults=True)
    faults = ex.faults
    assert faults is not None
    conn = BybitConnection(BybitEnvironment.LOCAL, url=ex.url)
    replay = ex.state.replay
    poller = KlinePoller(conn, LINEAR, "1m", _PERP, interval_s=0.01)
    stream = KlineStream(conn, LINEAR, "1m", _PERP)
    try:
        history = poller.history(30)
        i = replay.position
        assert [b.close for b in history] == list(replay.close[i - 30 : i])
        stream.history(5)
        assert stream.poll(0.5) == []  # subscribed; nothing new yet

        def forming(answer: dict[str, Any]) -> None:  # Bybit's bar still forming, first
            now = int(time.time() * 1000) // 60_000 * 60_000
            answer["result"]["list"].insert(0, [str(now), "1", "2", "0.5", "1.5", "9", "9"])

        faults.rewrite("/v5/market/kline", forming, times=3)
        assert poller.poll(0.2) == []  # nothing new, and not the forming bar
        for _ in range(3):
            ex.state.advance()
        got = poller.poll(2.0)
        assert [b.close for b in got] == list(replay.close[i : i + 3])
        assert poller.poll(0.1) == []  # each once
        streamed: list[float] = []
        deadline = time.monotonic() + 5
        while len(streamed) < 3 and time.monotonic() < deadline:
            streamed += [b.close for b in stream.poll(0.5)]
        assert streamed == list(replay.close[i : i + 3])
    finally:
        poller.close()
        stream.close()
        ex.server.stop()


@pytest.mark.slow
def test_a_live_run_trades_and_the_store_matches_the_exchange(
    exchange: Exchange, store: Store, tmp_path: Path
) -> None:
    session = LiveSession.start(
        config(exchange), store=store, home=tmp_path, environ=exchange.environ(), run_id="a"
    )
    try:
        assert session.start_cash == Decimal(100_000)  # the exchange's balance
        for _ in range(50):
            step(session, exchange)
        session.settle(5.0)
    finally:
        session.stop(on_exit="leave")
    fills = store.fills("a")
    assert len(fills) >= 4  # several round trips of sma_cross 3/8
    assert_store_is_exchange(store, "a", exchange)
    info = store.run("a")
    assert info.mode.value == "LIVE" and info.config["env"] == "local"
    # the balances agreed all along: no reconciliation had anything to adopt
    assert [e for e in store.risk_events("a") if getattr(e, "kind", "") == RECONCILIATION] == []


@pytest.mark.slow
def test_a_run_stopped_without_warning_resumes_on_the_same_path(
    frame: pd.DataFrame, store: Store, tmp_path: Path
) -> None:
    """Two exchanges replaying the same bars: one run straight through, one that stops
    dead after 25 bars (no cancel, no goodbye) and is resumed from the store."""
    paths: list[list[Decimal]] = []
    for name, crash in (("straight", False), ("crashed", True)):
        ex = Exchange(frame)
        try:
            s = LiveSession.start(
                config(ex), store=store, home=tmp_path, environ=ex.environ(), run_id=name
            )
            path = []
            for i in range(50):
                if crash and i == 25:
                    s.close()  # the process is gone: nothing cancelled, nothing said
                    s = LiveSession.resume(name, store=store, environ=ex.environ())
                step(s, ex)
                path.append(position(s))
            s.settle(5.0)
            s.stop(on_exit="leave")
            assert_store_is_exchange(store, name, ex)
        finally:
            ex.server.stop()
        paths.append(path)
    assert paths[0] == paths[1]
    assert any(q != 0 for q in paths[0])
    # the same orders (ids after the run id), none sent twice
    ids = [sorted(str(o.client_order_id).split("-", 1)[1] for o in store.orders(n))
           for n in ("straight", "crashed")]  # fmt: skip
    assert ids[0] == ids[1]


@pytest.mark.slow
def test_reconciliation_adopts_what_the_exchange_did_while_the_node_was_down(
    exchange: Exchange, store: Store, tmp_path: Path
) -> None:
    strategy = tmp_path / "resting.py"
    strategy.write_text(RESTING, encoding="utf-8")
    cfg = config(exchange, strategy=f"{strategy}:Resting", params={})
    session = LiveSession.start(
        cfg, store=store, home=tmp_path, environ=exchange.environ(), run_id="rec"
    )
    step(session, exchange)
    session.settle(5.0)
    far, near = sorted(session.node.open_orders(), key=lambda o: o.price or 0)
    assert far.status is OrderStatus.ACCEPTED and near.status is OrderStatus.ACCEPTED
    session.close()  # the node dies with two resting orders
    # meanwhile, on the exchange: the far order is cancelled by hand, the near one fills
    # as the price comes down, and someone buys 0.005 BTC by hand
    client = ccxt.bybit(exchange.config())
    client.load_markets()
    client.cancel_order(None, LINEAR, {"orderLinkId": str(far.client_order_id)})
    client.create_order(LINEAR, "market", "buy", 0.005)
    for _ in range(200):
        exchange.state.advance()
        rec = exchange.state.orders[exchange.state.link_ids[str(near.client_order_id)]]
        if rec.order.is_terminal:
            break
    assert rec.order.status is OrderStatus.FILLED
    resumed = LiveSession.resume("rec", store=store, environ=exchange.environ())
    try:
        orders = {str(o.client_order_id): o for o in store.orders("rec")}
        assert orders[str(far.client_order_id)].status is OrderStatus.CANCELED
        assert orders[str(near.client_order_id)].status is OrderStatus.FILLED
        events = store.order_events(str(near.client_order_id))
        assert sum(isinstance(e, OrderFilled) for e in events) >= 1
        assert any(
            isinstance(e, OrderCanceled) for e in store.order_events(str(far.client_order_id))
        )
        # the exchange's position (our 0.01 and the hand-made 0.005) is adopted
        assert position(resumed) == exchange_position(exchange) == Decimal("0.015")
        reasons = [
            e.reason for e in store.risk_events("rec") if getattr(e, "kind", "") == RECONCILIATION
        ]
        assert any("OrderCanceled" in r and str(far.client_order_id) in r for r in reasons)
        assert any("OrderFilled" in r and str(near.client_order_id) in r for r in reasons)
        assert any(r.startswith("position 0.01 in the store, 0.015 on the exchange: the "
                                "exchange's adopted") for r in reasons)  # fmt: skip
        # the hand-made trade's fee: the exchange's wallet balance is adopted
        info = client.fetch_balance()["info"]["result"]["list"][0]["coin"]
        wallet = Decimal(next(c["walletBalance"] for c in info if c["coin"] == "USDT"))
        assert any(r.startswith("USDT balance") and r.split(", ")[1].startswith(str(wallet))
                   for r in reasons)  # fmt: skip
        assert resumed.node.portfolio.account.balance("USDT") == wallet
        stored = store.positions("rec")
        assert sum((p.quantity for p in stored), Decimal(0)) == Decimal("0.015")
    finally:
        resumed.stop(on_exit="leave")


@pytest.mark.slow
def test_paper_on_live_data_fills_on_the_simulated_venue(
    exchange: Exchange, store: Store, tmp_path: Path
) -> None:
    session = LiveSession.start(
        config(exchange, paper=True, cash=50_000.0), store=store, home=tmp_path,
        environ={}, run_id="p",
    )  # fmt: skip
    try:
        assert session.start_cash == Decimal(50_000)
        for _ in range(50):
            step(session, exchange)
    finally:
        session.stop()
    assert len(store.fills("p")) >= 4
    assert exchange.state.orders == {}  # nothing was sent to the exchange
    assert store.run("p").config["paper"] is True
    with pytest.raises(ValueError, match=r"--paper run.*cannot be resumed"):
        LiveSession.resume("p", store=store)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(
    exchange: Exchange, tmp_path: Path
) -> None:
    env = {
        **os.environ, "SAPPHIRE_HOME": str(tmp_path), "BYBIT_LOCAL_API_KEY": CREDS.key,
        "BYBIT_LOCAL_API_SECRET": CREDS.secret, "SAPPHIRE_DATABASE_URL": "",
    }  # fmt: skip
    env.pop("SAPPHIRE_DATABASE_URL")
    store = Store(f"sqlite:///{tmp_path / 'sapphire.db'}")
    base = [
        sys.executable, "-m", "sapphire", "live", "--env", "local", "--url", exchange.url,
        "--param", "fast=3", "--param", "slow=8", "--warmup", "30", "--poll-interval", "0.05",
    ]  # fmt: skip
    clock = exchange.state.start_clock(speed=240)  # a 1-minute bar every 0.25 s
    try:
        proc = subprocess.Popen(
            [*base, "--run-id", "k", "--seconds", "120", "--json"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait(lambda: _count_fills(store, "k") >= 3 or proc.poll() is not None, 90)
            assert proc.poll() is None, proc.communicate()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        time.sleep(1.0)  # bars go by while the node is down
        done = subprocess.run(
            [sys.executable, "-m", "sapphire", "live", "resume", "k", "--seconds", "4",
             "--on-exit", "leave", "--json"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        clock.stop()
    # what was in flight settles on the exchange; then store = exchange
    time.sleep(0.5)
    again = LiveSession.resume("k", store=store, environ=exchange.environ())
    again.settle(5.0)
    again.stop(on_exit="leave")
    assert_store_is_exchange(store, "k", exchange)


def _count_fills(store: Store, run_id: str) -> int:
    try:
        return len(store.fills(run_id))
    except Exception:
        return 0


@pytest.mark.slow
def test_the_ml_strategy_runs_live_on_its_warmup_window(
    frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registered model traded by the `ml` strategy (re-evaluated on its window at each
    bar), with --paper on the exchange's bars: it acts on its signals like any strategy."""
    from sapphire.backtest.runner import bars_from_frame
    from sapphire.ml.labels import LabelSpec
    from sapphire.ml.models import ModelSpec
    from sapphire.ml.pipeline import TrainConfig, train
    from sapphire.ml.registry import ModelRegistry

    monkeypatch.setenv("SAPPHIRE_HOME", str(tmp_path))
    monkeypatch.delenv("SAPPHIRE_DATABASE_URL", raising=False)
    cfg = TrainConfig(
        model=ModelSpec.parse("lightgbm:n_estimators=30,num_leaves=15"), n_groups=4,
        n_test_groups=1, importance=False, threshold=0.05,
        label=LabelSpec(kind="triple_barrier", horizon=20, pt=1.5, sl=1.5, vol_window=60),
    )  # fmt: skip
    trained = train(bars_from_frame(frame.iloc[:1440].reset_index(drop=True)), cfg)
    version = trained.register("live")
    ModelRegistry().promote(f"live@{version.version}", "champion")
    ex = Exchange(frame)
    store = Store(f"sqlite:///{tmp_path / 'live.db'}")
    session = LiveSession.start(
        config(ex, paper=True, strategy="ml", params={"model": "live@champion"}, warmup=400),
        store=store, home=tmp_path, run_id="ml",
    )  # fmt: skip
    try:
        signals = []
        for _ in range(60):
            step(session, ex)
            assert isinstance(session.trader, VectorAdapter)
            signals.append(session.trader.last_signals)
    finally:
        session.stop()
        ex.server.stop()
    assert any(any(s) for s in signals)  # the model gave signals on the live bars
    assert store.orders("ml")  # and the session acted on them


@pytest.mark.slow
def test_a_running_session_adopts_a_position_changed_behind_its_back(
    exchange: Exchange, store: Store, tmp_path: Path
) -> None:
    """Reconciliation at start (an account that already holds a position) and every
    `reconcile_every` seconds while running (a trade made by hand meanwhile)."""
    client = ccxt.bybit(exchange.config())
    client.load_markets()
    client.create_order(LINEAR, "market", "buy", 0.002)
    exchange.state.advance()  # it fills at the next bar's open
    assert exchange_position(exchange) == Decimal("0.002")
    cfg = config(exchange, params={"fast": 50, "slow": 200}, warmup=250, reconcile_every=0.3)
    session = LiveSession.start(
        cfg, store=store, home=tmp_path, environ=exchange.environ(), run_id="per"
    )
    try:
        assert position(session) == Decimal("0.002")  # adopted at start
        client.create_order(LINEAR, "market", "sell", 0.005)
        step(session, exchange)  # the hand-made sell fills on this bar
        time.sleep(0.4)
        step(session, exchange)  # the periodic reconciliation is due
        assert position(session) == exchange_position(exchange) == Decimal("-0.003")
    finally:
        session.stop(on_exit="leave")
    reasons = [
        e.reason for e in store.risk_events("per") if getattr(e, "kind", "") == RECONCILIATION
    ]
    assert any(r.startswith("position 0 in the store, 0.002 on the exchange") for r in reasons)
    assert any(r.startswith("position 0.002 in the store, -0.003 on the exchange") for r in reasons)
    assert sum((p.quantity for p in store.positions("per")), Decimal(0)) == Decimal("-0.003")


def test_reconciliation_waits_out_an_exchange_restart(
    frame: pd.DataFrame, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconciliation that meets an exchange restart (every request answered 503) asks
    again until it answers: a `live resume` landing in a restart died of it (the chaos
    run's fifth failure). The periodic one waits `RECONCILE_WAIT_S`, then leaves it to
    the next period: the session trades on."""
    ex = Exchange(frame, faults=True)
    faults = ex.faults
    assert faults is not None
    session = LiveSession.start(
        config(ex), store=store, home=tmp_path, environ=ex.environ(), run_id="rs"
    )
    timer = threading.Timer(1.5, lambda: setattr(faults, "down", False))
    try:
        faults.down = True
        timer.start()
        started = time.monotonic()
        session.reconcile_account()
        assert time.monotonic() - started >= 1.5
        monkeypatch.setattr(live_session, "RECONCILE_WAIT_S", 1.0)
        faults.down = True
        session._reconcile_when_due()
        assert session.reconcile_misses == 1
        faults.down = False
        seen = session.bars_seen
        step(session, ex)
        assert session.bars_seen == seen + 1
        session._reconcile_when_due()
        assert session.reconcile_misses == 1
    finally:
        timer.cancel()
        faults.down = False
        session.stop(on_exit="leave")
        ex.server.stop()
