"""The portfolio routes against a real store: a paper session through the node (stopped
part-way, so its run is still RUNNING) and runs written through the Store API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sapphire.api.queries import replay
from sapphire.api.routes.portfolio import router
from sapphire.api.security.deps import Principal, authenticated
from sapphire.domain import (
    ClientOrderId,
    InstrumentId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderFilled,
    OrderSide,
    OrderSubmitted,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from sapphire.paper import PaperConfig, PaperSession
from sapphire.portfolio import Position
from sapphire.store import Store

if TYPE_CHECKING:
    from conftest import Api  # the service harness (tests/unit/api/conftest.py)

PAPER = PaperConfig(
    start="2022-01-03 22:00", end="2022-01-04 02:00", speed="max", size=0.01,
    size_mode="fixed", maker_fee=0.0005, taker_fee=0.0005, params={"fast": "5", "slow": "20"},
)  # fmt: skip
IID = InstrumentId("ETHUSDT", "BYBIT")
T0 = 1_643_670_000_000_000_000  # 2022-01-31T23:00:00Z


@dataclass(frozen=True)
class Snap:
    """An equity snapshot as `Store.save_equity_snapshot` reads it (no strategies)."""

    ts_ns: int
    equity: Decimal
    currency: str = "USDT"
    balance: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    margin_used: Decimal = Decimal(0)
    gross_exposure: Decimal = Decimal(0)
    net_exposure: Decimal = Decimal(0)
    strategies: dict[StrategyId, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategies", {})


def _fill(order: Order, ts: int, qty: str, px: str, trade: str) -> OrderFilled:
    return OrderFilled(
        ts_ns=ts, client_order_id=order.client_order_id, trade_id=TradeId(trade),
        last_qty=Decimal(qty), last_px=Decimal(px), liquidity=LiquiditySide.MAKER,
        fee=Decimal("0.0125"), fee_currency="USDT",
    )  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """`paper`: a paper session stopped after 200 of its 240 bars (RUNNING); `api-1`
    (RUNNING): an open limit order partly filled, equity over a month end; `done-1`
    (FINISHED): one fill."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAPPHIRE_HOME", str(home))
        mp.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
        store = Store(f"sqlite:///{home / 'sapphire.db'}")
        session = PaperSession.start(PAPER, store=store, home=home, run_id="paper")
        for _ in range(10 * 200):  # lockstep: a bar per poll, until bar 199 is taken
            if session.bar >= 199:
                break
            session.pump(advance=True)
        assert session.bar == 199
        session.shutdown_venue()  # the node stops; the run stays RUNNING
        store.start_run("api-1", "paper", T0, ["mm"])
        order = Order.limit(
            ClientOrderId("api-1-mm-1"), StrategyId("mm"), IID, OrderSide.BUY,
            Decimal("2.000"), Decimal("100.10"), ts_init=T0,
        )  # fmt: skip
        for event in (
            order.init_event,
            OrderSubmitted(ts_ns=T0 + 1, client_order_id=order.client_order_id),
            OrderAccepted(
                ts_ns=T0 + 2,
                client_order_id=order.client_order_id,
                venue_order_id=VenueOrderId("v-1"),
            ),
            _fill(order, T0 + 3, "0.500", "100.10", "t-1"),
        ):
            if event is not order.init_event:
                order.apply(event)
            store.record_order_event(order, event, run_id="api-1")
        position = Position(IID, StrategyId("mm"))
        position.apply_fill(OrderSide.BUY, Decimal("0.500"), Decimal("100.10"), Decimal("0.0125"))
        store.save_position(position, run_id="api-1")
        hour = 3_600_000_000_000
        for ts, equity in (
            (T0, "1000"), (T0 + 2 * hour, "1010.5"), (T0 + 25 * hour, "990"),
            (T0 + 7 * 24 * hour, "1001.25"),
        ):  # fmt: skip
            store.save_equity_snapshot(Snap(ts, Decimal(equity)), run_id="api-1")
        store.start_run("done-1", "paper", T0, ["mm"])
        done = Order.market(
            ClientOrderId("done-1-mm-1"), StrategyId("mm"), IID, OrderSide.SELL,
            Decimal("1"), ts_init=T0,
        )  # fmt: skip
        store.record_order_event(done, done.init_event, run_id="done-1")
        for event in (
            OrderSubmitted(ts_ns=T0 + 1, client_order_id=done.client_order_id),
            OrderAccepted(
                ts_ns=T0 + 1,
                client_order_id=done.client_order_id,
                venue_order_id=VenueOrderId("v-9"),
            ),
            _fill(done, T0 + 2, "1", "99", "t-9"),
        ):
            done.apply(event)
            store.record_order_event(done, event, run_id="done-1")
        store.finish_run("done-1", T0 + 3)
        yield store
        store.close()


def _client(store: Store, scopes: frozenset[str] = frozenset({"read"})) -> TestClient:
    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    app.state.service = SimpleNamespace(store=store, home=Path(store.url[10:]).parent)
    principal = Principal(1, "ana", "viewer", scopes, "token")
    app.dependency_overrides[authenticated] = lambda: principal
    return TestClient(app)


@pytest.fixture(scope="module")
def client(store: Store) -> TestClient:
    return _client(store)


def _get(client: TestClient, path: str, **params: Any) -> Any:
    answer = client.get(f"/api/v1/portfolio/{path}", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _ns(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(moment.timestamp() * 1_000_000) * 1000


def test_the_paper_run_left_a_ledger_to_read(store: Store) -> None:
    assert store.run("paper").status.value == "RUNNING"
    assert len(store.fills("paper")) >= 6 and store.equity_snapshots("paper")


def test_balances_of_the_running_runs_by_default_and_of_one_run_on_request(
    store: Store, client: TestClient
) -> None:
    body = _get(client, "balances")["balances"]
    assert {b["run_id"] for b in body} == {"paper"}  # api-1 saved none; done-1 finished
    (state,) = store.balances("paper").values()
    (row,) = body
    (balance,) = state.balances
    assert row["total"] == format(balance.total, "f") and row["currency"] == balance.currency
    assert Decimal(row["free"]) == Decimal(row["total"]) - Decimal(row["locked"])
    assert row["ts"].endswith("Z") and _ns(row["ts"]) == state.ts_ns // 1000 * 1000
    assert _get(client, "balances", run_id="done-1") == {"balances": []}


def test_positions_are_the_stored_ones(store: Store, client: TestClient) -> None:
    rows = _get(client, "positions", include_flat=True)["positions"]
    stored = store.positions("api-1") + store.positions("paper")  # runs by start time
    assert len(rows) == len(stored)
    for row, p in zip(rows, stored, strict=True):
        assert row["quantity"] == format(p.quantity, "f")
        assert row["realized_pnl"] == format(p.realized_pnl, "f")
        assert row["side"] == ("LONG" if p.quantity > 0 else "SHORT" if p.quantity < 0 else "FLAT")
    open_rows = _get(client, "positions")["positions"]
    assert all(r["side"] != "FLAT" for r in open_rows)


def test_open_orders_come_with_their_run_and_exact_prices(client: TestClient) -> None:
    orders = _get(client, "orders")["orders"]
    (order,) = [o for o in orders if o["run_id"] == "api-1"]
    assert order["client_order_id"] == "api-1-mm-1"
    assert (order["status"], order["price"], order["quantity"]) == (
        "PARTIALLY_FILLED", "100.10", "2.000",
    )  # fmt: skip
    assert order["filled_qty"] == "0.500" and order["venue_order_id"] == "v-1"
    assert order["created"] == "2022-01-31T23:00:00Z"
    assert _get(client, "orders", run_id="done-1") == {"orders": []}


def test_fills_page_through_the_whole_run_in_time_order(store: Store, client: TestClient) -> None:
    stored = store.fills("paper")
    seen: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        body = _get(client, "fills", run_id="paper", limit=4, offset=offset)
        assert len(body["fills"]) <= 4
        seen += body["fills"]
        offset = body["next_offset"]
    assert [f["trade_id"] for f in seen] == [str(f.trade_id) for f in stored]
    assert [f["last_px"] for f in seen] == [format(f.last_px, "f") for f in stored]
    middle = stored[len(stored) // 2]
    since = seen[len(stored) // 2]["ts"]
    window = _get(client, "fills", run_id="paper", since=since)["fills"]
    assert len(window) == len(store.fills("paper", start_ns=middle.ts_ns // 1000 * 1000))
    assert _get(client, "fills", run_id="done-1")["fills"][0]["last_px"] == "99"


def test_trades_are_the_round_trips_of_the_fills(store: Store, client: TestClient) -> None:
    fills = store.fills("paper")
    trades = _get(client, "trades", run_id="paper")["trades"]
    closed = [t for t in trades if t["status"] == "closed"]
    assert closed and len(trades) - len(closed) <= 1
    for i, t in enumerate(closed):  # fixed-size entries and exits, one fill each
        entry, exit_ = fills[2 * i], fills[2 * i + 1]
        sign = 1 if entry.side is OrderSide.BUY else -1
        assert t["side"] == ("LONG" if sign > 0 else "SHORT")
        assert Decimal(t["entry_px"]) == entry.last_px and Decimal(t["exit_px"]) == exit_.last_px
        pnl = (exit_.last_px - entry.last_px) * entry.last_qty * sign
        assert Decimal(t["realized_pnl"]) == pnl
        assert Decimal(t["fees"]) == entry.fee + exit_.fee
        assert Decimal(t["net_pnl"]) == pnl - entry.fee - exit_.fee
        assert _ns(t["closed"]) == exit_.ts_ns // 1000 * 1000
    # the node's own accounting agrees: realised PnL and fees of the strategy's position
    (position,) = store.positions("paper")
    assert sum(Decimal(t["realized_pnl"]) for t in trades) == position.realized_pnl
    assert sum(Decimal(t["fees"]) for t in trades) == position.fees
    later = _get(client, "trades", run_id="paper", since=closed[-1]["opened"])["trades"]
    assert later == trades[len(closed) - 1 :]


def test_a_flip_closes_one_trade_and_opens_the_next() -> None:
    from sapphire.store import FillRecord

    def fill(side: OrderSide, qty: str, px: str, ts: int) -> FillRecord:
        return FillRecord(
            "r", ClientOrderId(f"c{ts}"), None, TradeId(f"t{ts}"), StrategyId("s"), IID, side,
            Decimal(qty), Decimal(px), Decimal("0.3"), "USDT", LiquiditySide.TAKER, ts,
        )  # fmt: skip

    out = replay(
        [fill(OrderSide.BUY, "1", "100", 1), fill(OrderSide.SELL, "3", "110", 2),
         fill(OrderSide.BUY, "2", "105", 3)],
        {str(IID): Decimal(2)},
    )  # fmt: skip
    long, short = out.trades
    assert (long.side, long.closed_ns, long.exit_px) == ("LONG", 2, Decimal(110))
    assert long.realized_pnl == Decimal(20)  # (110 - 100) * 1 * multiplier 2
    assert long.fees == Decimal("0.3") + Decimal("0.1")  # a third of the flip's fee
    assert (short.side, short.entry_qty, short.entry_px, short.closed_ns) == (
        "SHORT", Decimal(2), Decimal(110), 3,
    )  # fmt: skip
    assert short.realized_pnl == Decimal(20) and short.fees == Decimal("0.2") + Decimal("0.3")
    assert out.realized == [Decimal(0), Decimal(20), Decimal(20)]


def test_pnl_by_day_adds_up_to_the_equity_change(store: Store, client: TestClient) -> None:
    body = _get(client, "pnl", by="day", run_id="paper")
    assert body["by"] == "day" and body["strategies"] == []
    days = body["periods"]
    assert [d["period"] for d in days] == ["2022-01-03", "2022-01-04"]
    assert days[0]["start"] == "2022-01-03T00:00:00Z" and days[0]["end"] == days[1]["start"]
    snaps = store.equity_snapshots("paper")
    assert days[0]["equity_open"] == format(snaps[0].equity, "f")
    assert days[-1]["equity_close"] == format(snaps[-1].equity, "f")
    assert days[1]["equity_open"] == days[0]["equity_close"]
    total = sum(Decimal(d["pnl"]) for d in days)
    assert total == snaps[-1].equity - snaps[0].equity
    assert sum(d["fills"] for d in days) == len(store.fills("paper"))
    trades = _get(client, "trades", run_id="paper")["trades"]
    realized = sum(Decimal(t["realized_pnl"]) for t in trades)
    assert sum(Decimal(d["realized_pnl"]) for d in days) == realized
    assert sum(d["trades_closed"] for d in days) == sum(t["status"] == "closed" for t in trades)
    (week,) = _get(client, "pnl", by="week", run_id="paper")["periods"]
    (month,) = _get(client, "pnl", by="month", run_id="paper")["periods"]
    assert (week["period"], month["period"]) == ("2022-W01", "2022-01")
    assert Decimal(week["pnl"]) == Decimal(month["pnl"]) == total
    only = _get(client, "pnl", by="day", run_id="paper", since="2022-01-04")["periods"]
    assert [d["period"] for d in only] == ["2022-01-04"]


def test_pnl_by_month_and_week_across_a_month_end(client: TestClient) -> None:
    months = _get(client, "pnl", by="month", run_id="api-1")["periods"]
    assert [(m["period"], m["equity_open"], m["equity_close"], m["pnl"]) for m in months] == [
        ("2022-01", "1000", "1000", "0"),
        ("2022-02", "1000", "1001.25", "1.25"),
    ]
    assert months[0]["fills"] == 1 and months[0]["fees"] == "0.0125"
    weeks = _get(client, "pnl", by="week", run_id="api-1")["periods"]
    # Mon 31 Jan -> week 5; the 1st and 2nd of February too; Mon 7 Feb -> week 6
    assert [(w["period"], w["pnl"]) for w in weeks] == [("2022-W05", "-10"), ("2022-W06", "11.25")]
    assert weeks[0]["start"] == "2022-01-31T00:00:00Z"


def test_pnl_by_strategy(store: Store, client: TestClient) -> None:
    body = _get(client, "pnl", by="strategy")
    assert body["periods"] == []
    rows = {(r["run_id"], r["strategy_id"]): r for r in body["strategies"]}
    last = store.equity_snapshots("paper")[-1]
    paper = rows[("paper", "s")]
    assert paper["source"] == "equity_snapshot"
    assert paper["total"] == format(last.strategies[StrategyId("s")].total, "f")
    api = rows[("api-1", "mm")]  # its snapshots carry no attribution: its positions
    assert (api["source"], api["unrealized_pnl"]) == ("positions", None)
    assert (api["realized_pnl"], api["fees"], api["total"]) == ("0", "0.0125", "-0.0125")
    assert ("done-1", "mm") not in rows


def test_the_equity_curve_pages_and_windows(store: Store, client: TestClient) -> None:
    snaps = store.equity_snapshots("paper")
    first = _get(client, "equity", run_id="paper", limit=2)
    assert first["next_offset"] == 2
    assert [p["equity"] for p in first["points"]] == [format(s.equity, "f") for s in snaps[:2]]
    whole = _get(client, "equity", run_id="paper")
    assert whole["next_offset"] is None and len(whole["points"]) == len(snaps)
    point = whole["points"][1]
    assert point["gross_exposure"] == format(snaps[1].gross_exposure, "f")
    window = _get(
        client, "equity", run_id="api-1", since="2022-02-01", until="2022-02-07T00:00:00+01:00"
    )
    assert [p["equity"] for p in window["points"]] == ["1010.5", "990"]


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("balances", {"run_id": "bad id!"}, "'bad id!'"),
        ("fills", {"run_id": "x" * 101}, "x" * 101),
        ("fills", {"since": "yesterday"}, "'yesterday'"),
        ("equity", {"until": "2022-13-01"}, "'2022-13-01'"),
        ("fills", {"until": ""}, "until ''"),
        ("pnl", {"by": "hour"}, "'hour'"),
    ],
)
def test_bad_query_values_are_422_naming_them(
    client: TestClient, path: str, params: dict[str, str], named: str
) -> None:
    answer = client.get(f"/api/v1/portfolio/{path}", params=params)
    assert answer.status_code == 422
    assert named in answer.json()["detail"]


def test_limits_are_validated_and_an_unknown_run_is_404(client: TestClient) -> None:
    assert client.get("/api/v1/portfolio/fills", params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/portfolio/equity", params={"limit": 10**6}).status_code == 422
    answer = client.get("/api/v1/portfolio/positions", params={"run_id": "nope"})
    assert answer.status_code == 404 and answer.json() == {"detail": "no run 'nope'"}


def test_every_portfolio_route_needs_the_read_scope(store: Store) -> None:
    client = _client(store, scopes=frozenset())
    for path in ("balances", "positions", "orders", "fills", "trades", "pnl", "equity"):
        answer = client.get(f"/api/v1/portfolio/{path}")
        assert answer.status_code == 403, path
        assert "'read' scope" in answer.json()["detail"]


def test_timestamps_are_utc() -> None:
    from sapphire.api.queries import parse_instant, utc

    assert utc(T0) == datetime(2022, 1, 31, 23, tzinfo=UTC)
    assert parse_instant("2022-01-31T23:00:00Z", "since") == T0
    assert parse_instant("2022-02-01T00:00:00+01:00", "since") == T0
    assert parse_instant("2022-01-31 23:00", "since") == T0
    assert parse_instant("2022-01-31t23:00:00z", "since") == T0
    # beyond int64 nanoseconds: clamped (the whole ledger is after 1970, before 2262)
    assert parse_instant("1900-01-01", "since") == 0
    assert parse_instant("9999-12-31T23:00:00-05:00", "until") == 2**63 - 1


def test_a_window_wider_than_the_ledger_reads_it_all(store: Store, client: TestClient) -> None:
    whole = _get(client, "fills", run_id="paper")["fills"]
    wide = _get(client, "fills", run_id="paper", since="0001-01-01T00:00:00+01:00",
                until="9999-12-31T23:59:59Z")  # fmt: skip
    assert wide["fills"] == whole and len(whole) == len(store.fills("paper"))
    empty = {"run_id": "paper", "since": "2022-01-04", "until": "2022-01-03"}
    for path in ("fills", "trades", "equity"):
        body = _get(client, path, **empty)
        assert not body[next(k for k in body if isinstance(body[k], list))], path


def test_through_the_service_with_real_credentials(api: Api) -> None:
    store = api.service.store
    store.start_run("svc-1", "paper", T0, ["mm"])
    store.save_equity_snapshot(Snap(T0, Decimal("1000.50")), run_id="svc-1")
    viewer = api.users["viewer"]
    for headers in (viewer.headers, viewer.key_headers):
        answer = api.client.get("/api/v1/portfolio/equity", headers=headers)
        assert answer.status_code == 200, answer.text
        assert [p["equity"] for p in answer.json()["points"]] == ["1000.50"]
    assert api.client.get("/api/v1/portfolio/equity").status_code == 401
    bad = api.client.get("/api/v1/portfolio/fills", params={"limit": 0}, headers=viewer.headers)
    assert bad.status_code == 422 and "query.limit" in bad.json()["detail"]
    assert "(got '0')" in bad.json()["detail"]
