"""`sapphire live` and `sapphire live resume` end to end, against the local Bybit exchange
(served in this process; nothing reaches the internet): Ctrl-C cancels the open orders
or leaves them (`--on-exit leave`) and exits 130 with the resume hint; `runs list`
shows the run with its environment; mainnet without confirmation is refused."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sapphire.cli.main import app
from sapphire.data import load_ohlcv
from sapphire.domain import OrderStatus
from sapphire.store import Store
from sapphire.venues.exchange import BackgroundServer, Credentials, ExchangeState, create_app

runner = CliRunner()
CREDS = Credentials("sapphire-test-key", "sapphire-test-secret-0123456789abcdef")
FAR = '''
from decimal import Decimal
from sapphire.engine.strategy import EventStrategy

class Far(EventStrategy):
    """Bar 1: a limit buy 20% below the close: it rests."""

    def __init__(self) -> None:
        super().__init__("far")
        self.n = 0

    def on_bar(self, bar):
        self.n += 1
        if self.n == 1:
            price = (Decimal(str(bar.close)) * Decimal("0.8")).quantize(Decimal("0.1"))
            self.submit_order(self.limit(bar.instrument_id, "BUY", "0.01", price))
'''


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAPPHIRE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SAPPHIRE_DATABASE_URL", raising=False)
    monkeypatch.setenv("BYBIT_LOCAL_API_KEY", CREDS.key)
    monkeypatch.setenv("BYBIT_LOCAL_API_SECRET", CREDS.secret)
    for name in ("BYBIT_MAINNET_API_KEY", "BYBIT_MAINNET_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    real = socket.getaddrinfo

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"the test tried to reach {host!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


@pytest.fixture
def exchange() -> Iterator[tuple[ExchangeState, str]]:
    frame, _ = load_ohlcv("sample")
    state = ExchangeState(frame.iloc[:3000], credentials=[CREDS], history=1440)
    server = BackgroundServer(create_app(state)).start()
    yield state, server.url
    server.stop()


def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'home' / 'sapphire.db'}")


@pytest.mark.slow
@pytest.mark.parametrize("on_exit", [None, "leave"])
def test_ctrl_c_cancels_or_leaves_the_open_orders_and_exits_130(
    exchange: tuple[ExchangeState, str], tmp_path: Path, on_exit: str | None
) -> None:
    state, url = exchange
    strategy = tmp_path / "far.py"
    strategy.write_text(FAR, encoding="utf-8")
    args = [
        sys.executable, "-m", "sapphire", "live", "--env", "local", "--url", url,
        "--strategy", f"{strategy}:Far", "--run-id", "c", "--poll-interval", "0.05",
    ]  # fmt: skip
    clock = state.start_clock(speed=120)  # a 1-minute bar every 0.5 s
    env = dict(os.environ)
    proc = subprocess.Popen(
        [*args, *(["--on-exit", on_exit] if on_exit else [])], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any(r.order.status is OrderStatus.ACCEPTED for r in state.orders.values()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no order reached the exchange"
            time.sleep(0.05)
        time.sleep(0.5)  # the node has heard of the acceptance
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        clock.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "resume with: sapphire live resume c" in err
    (rec,) = state.orders.values()
    (order,) = store(tmp_path).orders("c")
    if on_exit is None:  # the default: cancel
        assert rec.order.status is OrderStatus.CANCELED
        assert order.status is OrderStatus.CANCELED
        assert "open orders cancelled" in err
    else:
        assert rec.order.status is OrderStatus.ACCEPTED
        assert order.status is OrderStatus.ACCEPTED
        assert "open orders left" in err


@pytest.mark.slow
def test_a_live_run_is_listed_with_its_environment(exchange: tuple[ExchangeState, str]) -> None:
    _state, url = exchange
    result = runner.invoke(
        app,
        ["live", "--env", "local", "--url", url, "--run-id", "l1", "--seconds", "1",
         "--warmup", "30", "--poll-interval", "0.05", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["run_id"] == "l1" and view["env"] == "local" and view["paper"] is False
    assert "resume with: sapphire live resume l1" in result.stderr
    listed = runner.invoke(app, ["runs", "list"])
    assert listed.exit_code == 0 and "LIVE local" in listed.stdout
    shown = json.loads(runner.invoke(app, ["runs", "show", "l1", "--json"]).stdout)
    assert shown["mode"] == "LIVE" and shown["config"]["env"] == "local"
    not_live = runner.invoke(app, ["live", "resume", "nope"])
    assert not_live.exit_code == 2 and "nope" in not_live.stderr


def test_mainnet_without_confirmation_is_refused() -> None:
    result = runner.invoke(app, ["live", "--env", "mainnet"])
    assert result.exit_code == 2
    assert "Bybit mainnet trades real money: pass --confirm-mainnet" in result.stderr
    # confirmed, real money still needs the strategy to have graduated to live
    confirmed = runner.invoke(app, ["live", "--env", "mainnet", "--confirm-mainnet"])
    assert confirmed.exit_code == 2
    said = " ".join(confirmed.stderr.split())
    assert "sma_cross (default parameters) has not graduated to live" in said
    assert "sapphire graduate check --strategy sma_cross" in said
    # a failed decision does not let it through; its audited override does
    from sapphire.compliance.graduation import Gate, GraduationDecision, GraduationLog
    from sapphire.store import Store

    log = GraduationLog(Store())
    gate = Gate("deflated_sharpe", 0.4, 0.95, ">=", False)
    failed = log.record(GraduationDecision.new("sma_cross", {}, "live", [gate], {}, actor="a"))
    again = runner.invoke(app, ["live", "--env", "mainnet", "--confirm-mainnet"])
    assert "has not graduated to live" in " ".join(again.stderr.split())
    assert failed.id is not None
    log.override(failed.id, reason="accepted by the risk committee", actor="b")
    # then it goes on to the key, which is checked before any request is made
    keyless = runner.invoke(app, ["live", "--env", "mainnet", "--confirm-mainnet"])
    assert keyless.exit_code == 2
    assert "$BYBIT_MAINNET_API_KEY is not set" in keyless.stderr


def test_bad_options_are_refused_naming_the_value() -> None:
    result = runner.invoke(app, ["live", "--env", "moon"])
    assert result.exit_code == 2 and "env='moon' is invalid" in result.stderr
    result = runner.invoke(app, ["live", "--env", "local"])
    assert result.exit_code == 2 and "url=None is invalid" in result.stderr
    result = runner.invoke(app, ["live", "--on-exit", "explode"])
    assert result.exit_code == 2 and "on_exit='explode' is invalid" in result.stderr
