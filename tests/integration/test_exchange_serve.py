"""The local exchange's state across restarts (its journal), and markets other than
BTCUSDT, through unmodified ccxt.

A journaled exchange is traded with ccxt (leverage, market, limit, amended and canceled
orders, spot), stepped by hand; a second exchange rebuilt from the journal must show
exactly the same orders, executions, positions, balances and replay position.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd
import pytest
from local_exchange import CREDS, LINEAR, SPOT, Exchange, frame, no_internet

from sapphire.venues.exchange import (
    MUTATIONS,
    BackgroundServer,
    ExchangeState,
    Journal,
    create_app,
    markets_for,
    views,
)

__all__ = ["frame", "no_internet"]  # the shared fixtures, used by name

HEADER = {"data": "the test month"}


def snapshot(state: ExchangeState) -> dict[str, Any]:
    """Everything a client can see of the account, as the REST views show it, and the
    exact balances."""
    linear = [m for m in state.markets.values() if not m.is_spot]
    return {
        "orders": [views.order(state, rec) for rec in state.orders.values()],
        "executions": list(state.executions),
        "positions": [views.position(state, m) for m in linear],
        "wallet": views.wallet(state),
        "balances": dict(state.venue.account.balances),
        "replayed": state.replay.position,
        "leverage": state.leverage,
    }


def journaled(frame: pd.DataFrame, path: Path, **kwargs: Any) -> ExchangeState:
    state = ExchangeState(frame, credentials=[CREDS], history=1440, **kwargs)
    journal = Journal(path)
    journal.begin(HEADER)
    try:
        state.restore(journal, MUTATIONS)
    except ValueError:
        journal.close()
        raise
    return state


@pytest.fixture
def traded(frame: pd.DataFrame, tmp_path: Path) -> Iterator[tuple[ExchangeState, Path]]:
    """An exchange traded through ccxt, its journal's path."""
    path = tmp_path / "journal.jsonl"
    state = journaled(frame, path)
    with BackgroundServer(create_app(state)) as server:
        ex = Exchange.__new__(Exchange)
        ex.url = server.url
        client = ccxt.bybit(ex.config())
        client.load_markets()
        client.set_leverage(5, LINEAR)
        client.create_order(LINEAR, "market", "buy", 0.1)
        state.advance()
        last = float(client.fetch_ticker(LINEAR)["last"])
        resting = client.create_order(LINEAR, "limit", "sell", 0.05, round(last * 1.002, 1))
        far = client.create_order(LINEAR, "limit", "buy", 0.02, round(last * 0.5, 1))
        client.edit_order(far["id"], LINEAR, "limit", "buy", 0.03, round(last * 0.6, 1))
        client.create_order(SPOT, "market", "buy", 0.01, params={"marketUnit": "baseCoin"})
        for _ in range(30):
            state.advance()
        client.cancel_order(far["id"], LINEAR)
        with pytest.raises(ccxt.BadRequest):  # refused (journaled too: checked on replay)
            client.create_order(LINEAR, "limit", "buy", 0.001, 1.0)
        assert client.fetch_order(resting["id"], LINEAR)["id"] == resting["id"]
    yield state, path
    if state.journal is not None:
        state.journal.close()


def test_a_restored_exchange_is_the_same_exchange(
    traded: tuple[ExchangeState, Path], frame: pd.DataFrame
) -> None:
    before, path = traded
    seen = snapshot(before)
    assert len(seen["executions"]) >= 2 and seen["positions"][0]["size"] != "0"
    assert seen["balances"]["USDT"] != Decimal(100_000) and seen["leverage"] == 5
    again = journaled(frame, path)
    assert again.journal is not None
    again.journal.close()
    assert snapshot(again) == seen
    # and it goes on: the same next bars fill the same way in both
    assert before.journal is not None
    before.journal.close()
    before.journal = again.journal = None
    for state in (before, again):
        state.clock = lambda: 1_800_000_000_000
        for _ in range(50):
            state.advance()
    assert snapshot(again) == snapshot(before)


def test_a_torn_last_line_is_dropped_and_a_broken_one_named(
    traded: tuple[ExchangeState, Path], frame: pd.DataFrame
) -> None:
    before, path = traded
    seen = snapshot(before)
    with path.open("a", encoding="utf-8") as f:
        f.write('{"op": "adv')  # the process died while writing
    again = journaled(frame, path)
    assert again.journal is not None
    again.journal.close()
    assert snapshot(again) == seen
    assert path.read_text(encoding="utf-8").endswith("}\n")
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3][:-5]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"journal\.jsonl line 4 is not JSON"):
        Journal(path)


def test_a_journal_that_does_not_fit_the_exchange_is_refused(
    traded: tuple[ExchangeState, Path], frame: pd.DataFrame
) -> None:
    _before, path = traded
    with pytest.raises(ValueError, match=r"line \d+: order.create gives retCode 110007"):
        journaled(frame, path, cash=10)  # the first order no longer fits the account
    journal = Journal(path)
    with pytest.raises(ValueError, match="with data='the test month', not 'other'"):
        journal.begin({"data": "other"})


def test_another_symbol_is_listed_with_filters_of_its_price(frame: pd.DataFrame) -> None:
    eth = frame.copy()
    for column in ("open", "high", "low", "close"):
        eth[column] = eth[column] / 15
    markets = markets_for("ETHUSDT", float(eth["close"].iloc[-1]))
    state = ExchangeState(eth, credentials=[CREDS], history=1440, markets=markets)
    with BackgroundServer(create_app(state)) as server:
        ex = Exchange.__new__(Exchange)
        ex.url = server.url
        client = ccxt.bybit(ex.config())
        listed = client.load_markets()
        assert sorted(listed) == ["ETH/USDT", "ETH/USDT:USDT"]
        assert listed["ETH/USDT:USDT"]["precision"]["price"] == 0.01
        assert listed["ETH/USDT:USDT"]["precision"]["amount"] == 0.01
        order = client.create_order("ETH/USDT:USDT", "market", "buy", 0.5)
        state.advance()
        assert client.fetch_order(order["id"], "ETH/USDT:USDT")["status"] == "closed"
    with pytest.raises(ValueError, match="symbol='eth' is invalid: expected BASEUSDT"):
        markets_for("eth", 3000.0)
