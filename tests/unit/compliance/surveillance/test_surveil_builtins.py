"""No false alarms: the built-in strategies' event backtests over the bundled month, and
their paper sessions recorded in a store, raise no alert, although they are full of the
raw material of one (opposite fills of different runs at the same moment, resting
limit orders canceled unfilled)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from sapphire.backtest import Backtest
from sapphire.compliance.surveillance import surveil, surveil_events
from sapphire.domain import (
    OrderCanceled,
    OrderEvent,
    OrderFilled,
    OrderInitialized,
    OrderSide,
    OrderType,
)
from sapphire.paper import PaperConfig, PaperSession
from sapphire.store import Store

pytestmark = pytest.mark.slow

#: each built-in, long and short, one with stop-loss/take-profit brackets (resting
#: limit orders canceled when the other leg fills)
BACKTESTS: list[tuple[str, dict[str, Any]]] = [
    ("sma_cross", {}),
    ("sma_cross", {"short": True, "stop_loss": 0.01, "take_profit": 0.01}),
    ("mean_reversion", {"short": True}),
    ("momentum", {"short": True}),
    ("volatility_breakout", {"short": True}),
]


def test_no_alerts_on_the_builtins_event_backtests_over_the_bundled_month() -> None:
    stream: list[tuple[str, OrderEvent]] = []
    for k, (name, options) in enumerate(BACKTESTS):
        backtest = Backtest("sample", name, engine="event", **options)
        backtest.run()
        run = backtest.event_run
        assert run is not None
        stream += [(f"bt{k}-{name}", e) for o in run.node.orders.values() for e in o.events]
    assert surveil_events(stream) == []

    # what the rules had to judge: opposite fills of different runs at one moment, one of
    # them resting (a wash trade but for the price), and canceled resting limit orders
    inits = {(r, e.client_order_id): e for r, e in stream if isinstance(e, OrderInitialized)}
    moments: dict[int, set[tuple[str, OrderSide, str]]] = defaultdict(set)
    for run, e in stream:
        if isinstance(e, OrderFilled):
            side = inits[(run, e.client_order_id)].side
            moments[e.ts_ns].add((run, side, e.liquidity.value))
    crossing = [m for m in moments.values() if len({s for _, s, _ in m}) == 2]
    assert sum(len({r for r, _, _ in m}) > 1 for m in crossing) > 1000
    assert sum(len({liq for _, _, liq in m}) == 2 for m in crossing) > 10
    canceled_limits = sum(
        isinstance(e, OrderCanceled) and inits[(r, e.client_order_id)].type is OrderType.LIMIT
        for r, e in stream
    )
    assert canceled_limits > 1000 and len(inits) > 15_000


PAPER: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("sma_cross", {"fast": "5", "slow": "20", "short": "true"},
     {"stop_loss": 0.003, "take_profit": 0.003}),
    ("volatility_breakout", {"channel": "10", "exit_channel": "5", "short": "true"}, {}),
    ("mean_reversion", {"short": "true"}, {}),
    ("momentum", {"lookback": "20", "threshold": "0.002", "short": "true"}, {}),
]  # fmt: skip


def test_no_alerts_on_the_builtins_paper_sessions_in_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")  # no stray venue outlives a failure
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    for name, params, options in PAPER:
        config = PaperConfig(
            strategy=name, params=params, speed="max", start="2022-01-03",
            end="2022-01-03 02:00", **options,
        )  # fmt: skip
        session = PaperSession.start(config, store=store, home=tmp_path)
        assert session.run().status == "finished"
        assert store.fills(session.run_id), name
    assert len(store.runs()) == 4
    assert surveil(store) == []
    canceled = [
        o for r in store.runs() for o in store.orders(r.run_id)
        if o.type is OrderType.LIMIT and o.status.value == "CANCELED"
    ]  # fmt: skip
    assert canceled  # the brackets' take-profit legs rested and were canceled
    store.close()
