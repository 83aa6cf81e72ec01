"""The risk routes against a real store: a paper session through the node under a tight
risk profile (a YAML file) that halts it, and runs written through the Store API."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sapphire.api.routes.risk import router
from sapphire.api.security.deps import Principal, authenticated
from sapphire.domain import StrategyId, TradingState, TradingStateChanged
from sapphire.paper import PaperConfig, PaperSession
from sapphire.portfolio import EquitySnapshot, StrategyPnl
from sapphire.risk import CONSERVATIVE, PROFILES, value_at_risk
from sapphire.store import Store

if TYPE_CHECKING:
    from conftest import Api  # the service harness (tests/unit/api/conftest.py)

TIGHT = """\
name: tight
base: conservative
max_drawdown: 0.0001
pre_trade:
  max_open_orders: 5
  max_gross_exposure: 1000000
  max_position_qty: {"BTC-PERP@PAPER": 1}
  price_band: 0.05
"""
DAY = 86_400 * 10**9
T0 = 1_640_995_200 * 10**9  # 2022-01-01T00:00:00Z
S = StrategyId("s")


def _snapshot(ts: int, equity: Decimal, strategy_total: Decimal) -> EquitySnapshot:
    pnl = StrategyPnl(S, "USDT", strategy_total, Decimal(0), Decimal(0), Decimal(0))
    return EquitySnapshot(
        ts_ns=ts, currency="USDT", equity=equity, balance=equity, unrealized_pnl=Decimal(0),
        margin_used=Decimal(0), gross_exposure=Decimal("250.5"), net_exposure=Decimal("250.5"),
        strategies={S: pnl},
    )  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def store(home: Path) -> Iterator[Store]:
    """`paper` (RUNNING, stopped part-way): halted by its drawdown limit; `daily` (RUNNING):
    30 days of equity under the conservative profile, its one strategy with 1000 capital;
    `bare` (FINISHED): no profile; `lost`: a profile file that is gone."""
    profile_file = home / "tight.yaml"
    profile_file.write_text(TIGHT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAPPHIRE_HOME", str(home))
        mp.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
        store = Store(f"sqlite:///{home / 'sapphire.db'}")
        config = PaperConfig(
            start="2022-01-03", end="2022-01-03 03:00", speed="max", size=0.01,
            size_mode="fixed", maker_fee=0.0005, taker_fee=0.0005,
            params={"fast": "5", "slow": "20"}, risk_profile=str(profile_file),
        )  # fmt: skip
        session = PaperSession.start(config, store=store, home=home, run_id="paper")
        for _ in range(10 * 150):  # lockstep: a bar per poll, until bar 149 is taken
            if session.bar >= 149:
                break
            session.pump(advance=True)
        assert session.bar == 149
        session.shutdown_venue()
        store.start_run("daily", "paper", T0, [S], {"risk_profile": "conservative", "cash": 1000})
        for day in range(30):
            wave = Decimal((-1) ** day * (day % 7)) * 3
            store.save_equity_snapshot(
                _snapshot(T0 + day * DAY, Decimal(1000 + day) + wave, Decimal(day) + wave),
                run_id="daily",
            )
        store.start_run("bare", "backtest", T0)
        store.finish_run("bare", T0 + 1)
        store.start_run("lost", "paper", T0 + 2, ["s"], {"risk_profile": str(home / "gone.yaml")})
        yield store
        store.close()


def _client(store: Store, home: Path, scopes: frozenset[str] = frozenset({"read"})) -> TestClient:
    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    app.state.service = SimpleNamespace(store=store, home=home)
    principal = Principal(1, "ana", "viewer", scopes, "token")
    app.dependency_overrides[authenticated] = lambda: principal
    return TestClient(app)


@pytest.fixture(scope="module")
def client(store: Store, home: Path) -> TestClient:
    return _client(store, home)


def _get(client: TestClient, path: str, **params: Any) -> Any:
    answer = client.get(f"/api/v1/risk/{path}", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _limits(body: dict[str, Any]) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(x["name"], x["strategy_id"] or x["instrument_id"]): x for x in body["limits"]}


def test_profiles_are_the_built_in_ones_and_the_running_runs_files(client: TestClient) -> None:
    body = _get(client, "profiles")
    profiles = {p["name"]: p for p in body["profiles"]}
    assert set(profiles) == {*PROFILES, "tight"}
    conservative = profiles["conservative"]
    assert conservative["source"] == "builtin" and conservative["used_by"] == ["daily"]
    assert conservative["max_drawdown"] == str(CONSERVATIVE.max_drawdown)
    assert conservative["risk_per_trade"] == "0.01"
    aggressive = profiles["aggressive"]
    assert aggressive["risk_per_trade"] is None
    assert aggressive["risk_per_trade_scaled"]["high_balance"] == "100000"
    tight = profiles["tight"]
    assert (tight["source"], tight["used_by"], tight["max_drawdown"]) == (
        "file",
        ["paper"],
        "0.0001",
    )
    assert tight["pre_trade"]["max_position_qty"] == {"BTC-PERP@PAPER": "1"}
    assert tight["pre_trade"]["max_open_orders"] == 5
    (warning,) = body["warnings"]
    assert "runs lost" in warning and "gone.yaml" in warning


def test_a_halted_paper_runs_limits_and_usage(store: Store, client: TestClient) -> None:
    (run,) = _get(client, "limits", run_id="paper")["runs"]
    assert (run["profile"], run["status"], run["trading_state"]) == ("tight", "RUNNING", "HALTED")
    snaps = store.equity_snapshots("paper")
    peak = max(s.equity for s in snaps)
    assert run["equity"] == format(snaps[-1].equity, "f")
    assert run["peak_equity"] == format(peak, "f")
    assert run["day_start_equity"] == format(snaps[0].equity, "f")  # one UTC day
    limits = _limits(run)
    drawdown = limits[("max_drawdown", None)]
    used = Decimal(drawdown["used"])
    assert used == (1 - snaps[-1].equity / peak).quantize(Decimal("1e-10"))
    assert drawdown["limit"] == "0.0001" and drawdown["breached"] == (used >= Decimal("0.0001"))
    assert Decimal(drawdown["utilisation"]) == (used / Decimal("0.0001")).quantize(Decimal("1e-10"))
    assert [b["kind"] for b in run["breaches"]] == ["drawdown"]  # latched, as the node has it
    assert run["breaches"][0]["action"] == "HALTED"
    (position,) = store.positions("paper")
    qty = limits[("max_position_qty", "BTC-PERP@PAPER")]
    assert Decimal(qty["used"]) == abs(position.quantity) and qty["limit"] == "1"
    orders = limits[("max_open_orders", None)]
    assert orders["used"] == str(len(store.open_orders("paper"))) == str(run["open_orders"])
    exposure = limits[("max_gross_exposure", None)]
    assert exposure["used"] == format(snaps[-1].gross_exposure, "f")
    band = limits[("price_band", None)]
    assert (band["used"], band["utilisation"], band["breached"]) == (None, None, False)
    assert "checked on each order" in band["detail"]


def test_var_and_strategy_drawdown_from_thirty_days_of_equity(
    store: Store, client: TestClient
) -> None:
    (run,) = _get(client, "limits", run_id="daily")["runs"]
    snaps = store.equity_snapshots("daily")
    limits = _limits(run)
    closes = [float(s.equity) for s in snaps[:-1]]  # each day's close, but today's
    returns = [b / a - 1.0 for a, b in itertools.pairwise(closes)]
    var = Decimal(repr(value_at_risk(returns, 0.95, "historical")))
    assert Decimal(limits[("daily_var_limit", None)]["used"]) == var.quantize(Decimal("1e-10"))
    own = [1000 + s.strategies[S].total for s in snaps]
    expected = 1 - own[-1] / max(own)
    strategy = limits[("strategy_max_drawdown", "s")]
    assert Decimal(strategy["used"]) == expected.quantize(Decimal("1e-10"))
    assert strategy["limit"] == "0.15"
    assert run["day_start_equity"] == format(snaps[-2].equity, "f")
    daily = limits[("daily_loss_limit", None)]
    loss = max(1 - snaps[-1].equity / snaps[-2].equity, Decimal(0))
    assert Decimal(daily["used"]) == loss.quantize(Decimal("1e-10")).normalize()
    assert run["trading_state"] == "ACTIVE" and run["open_orders"] == 0


def test_runs_without_a_readable_profile(client: TestClient) -> None:
    (bare,) = _get(client, "limits", run_id="bare")["runs"]
    assert (bare["profile"], bare["limits"], bare["warnings"], bare["as_of"]) == (
        None, [], [], None,
    )  # fmt: skip
    (lost,) = _get(client, "limits", run_id="lost")["runs"]
    assert lost["profile"] is None and "gone.yaml" in lost["warnings"][0]
    running = _get(client, "limits")["runs"]
    assert [r["run_id"] for r in running] == ["daily", "lost", "paper"]  # by start time


def test_risk_events_are_the_stored_ones_by_time(store: Store, client: TestClient) -> None:
    stored = store.risk_events("paper")
    events = _get(client, "events", run_id="paper")["events"]
    assert [e["reason"] for e in events] == [e.reason for e in stored]
    breach = next(e for e in events if e["kind"] == "drawdown")
    assert breach["event_type"] == "RiskEvent" and breach["detail"]["limit"] == "0.0001"
    halt = next(e for e in events if e["event_type"] == "TradingStateChanged")
    assert (halt["state"], halt["previous"]) == (TradingState.HALTED.value, "ACTIVE")
    changed = next(e for e in stored if isinstance(e, TradingStateChanged))
    assert halt["ts"].endswith("Z") and halt["ts"].startswith("2022-01-03T")
    assert changed.state is TradingState.HALTED
    first = _get(client, "events", run_id="paper", limit=1)
    assert first["events"] == events[:1] and first["next_offset"] == (
        1 if len(events) > 1 else None
    )
    assert _get(client, "events", run_id="paper", since="2022-01-04")["events"] == []
    assert _get(client, "events", run_id="daily") == {"events": [], "next_offset": None}


@pytest.mark.parametrize(
    ("path", "params", "status", "named"),
    [
        ("limits", {"run_id": "../etc"}, 422, "'../etc'"),
        ("events", {"run_id": "nope"}, 404, "'nope'"),
        ("events", {"since": "2022-02-30"}, 422, "'2022-02-30'"),
        ("limits", {"run_id": "nope"}, 404, "'nope'"),
    ],
)
def test_bad_values_are_named(
    client: TestClient, path: str, params: dict[str, str], status: int, named: str
) -> None:
    answer = client.get(f"/api/v1/risk/{path}", params=params)
    assert answer.status_code == status and named in answer.json()["detail"]


def test_the_risk_routes_need_the_read_scope(store: Store, home: Path) -> None:
    client = _client(store, home, scopes=frozenset({"trade"}))
    for path in ("profiles", "limits", "events"):
        assert client.get(f"/api/v1/risk/{path}").status_code == 403


def test_through_the_service_with_real_credentials(api: Api) -> None:
    api.service.store.start_run("svc-1", "paper", T0, [S], {"risk_profile": "aggressive"})
    viewer = api.users["viewer"]
    answer = api.client.get("/api/v1/risk/limits", headers=viewer.headers)
    assert answer.status_code == 200, answer.text
    (run,) = answer.json()["runs"]
    assert (run["run_id"], run["profile"]) == ("svc-1", "aggressive")
    names = [x["name"] for x in run["limits"]]
    assert names[:3] == ["max_drawdown", "daily_loss_limit", "daily_var_limit"]
    assert api.client.get("/api/v1/risk/events").status_code == 401
