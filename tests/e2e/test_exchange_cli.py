"""`sapphire exchange serve` as a user runs it: a subprocess on a free port, driven by
unmodified ccxt configured by the snippet it prints, stopped with Ctrl-C (SIGINT), then
started again with the same state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

EXE = Path(sys.executable).parent / "sapphire"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serving:
    """`sapphire exchange serve ARGS` running; `printed` is what it printed up to its
    "Ctrl-C stops it" line."""

    def __init__(self, home: Path, *args: str) -> None:
        env = {**os.environ, "SAPPHIRE_HOME": str(home)}
        self.proc = subprocess.Popen(
            [str(EXE), "exchange", "serve", *args], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        lines: list[str] = []
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while not lines or not lines[-1].startswith("Ctrl-C stops it"):
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("".join(lines) + self.proc.stderr.read())  # type: ignore[union-attr]
            lines.append(line)
        self.printed = "".join(lines)

    def client(self) -> Any:
        """The ccxt client the printed snippet makes."""
        code = self.printed.split("ccxt:\n", 1)[1].split("\n\nCtrl-C", 1)[0]
        namespace: dict[str, Any] = {}
        exec(code, namespace)
        return namespace["exchange"]

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        _out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


def test_serve_trade_with_ccxt_interrupt_and_resume(tmp_path: Path) -> None:
    home, port = tmp_path / "home", _free_port()
    first = Serving(home, "--port", str(port), "--speed", "600x")
    try:
        assert f"Local Bybit exchange on http://127.0.0.1:{port}" in first.printed
        assert "account:    100000 USDT" in first.printed and "(new)" in first.printed
        client = first.client()
        markets = client.load_markets()
        assert sorted(markets) == ["BTC/USDT", "BTC/USDT:USDT"]
        placed = client.create_order("BTC/USDT:USDT", "market", "buy", 0.1)
        deadline = time.monotonic() + 20
        while client.fetch_order(placed["id"], "BTC/USDT:USDT")["status"] != "closed":
            assert time.monotonic() < deadline, "the market order never filled"
            time.sleep(0.1)
        (position,) = client.fetch_positions(["BTC/USDT:USDT"])
        assert position["contracts"] == 0.1 and position["side"] == "long"
    finally:
        code, err = first.interrupt()
    assert code == 0, err
    assert "stopped (interrupted)" in err
    journal = home / "exchange" / "default" / "journal.jsonl"
    ops = [json.loads(line)["op"] for line in journal.read_text().splitlines()]
    assert ops[0] == "header" and "order.create" in ops and ops.count("advance") >= 1

    # started again: the same keys (saved), the same position; the port is now taken
    second = Serving(home, "--port", str(port), "--speed", "1x")
    try:
        assert "resumed:" in second.printed
        assert client.apiKey in second.printed
        (again,) = second.client().fetch_positions(["BTC/USDT:USDT"])
        assert (again["contracts"], again["entryPrice"]) == (0.1, position["entryPrice"])
        taken = subprocess.run(
            [str(EXE), "exchange", "serve", "--port", str(port), "--name", "other"],
            env={**os.environ, "SAPPHIRE_HOME": str(home)}, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert taken.returncode == 2
        assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in taken.stderr
    finally:
        code, err = second.interrupt()
    assert code == 0, err


def test_bad_options_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from sapphire.cli.main import app

    monkeypatch.setenv("SAPPHIRE_HOME", str(tmp_path / "home"))
    for args, message in [
        (["--faults", "http5xx=2"], "--faults item 'http5xx=2'"),
        (["--speed", "max"], "--speed 'max'"),
        (["--api-key", "k"], "--api-key and --api-secret go together"),
        (["--data", "prices.csv"], "name its market with --symbol"),
        (["--balance", "lots"], "--balance 'lots' is invalid"),
        (["--name", "../x"], "--name '../x' is invalid"),
        (["--history", "50000"], "--history 50000 is invalid: --data 'sample' has 45031 bars"),
    ]:
        done = CliRunner().invoke(app, ["exchange", "serve", *args])
        assert done.exit_code == 2, (args, done.output)
        assert message in " ".join(done.output.split()), (args, done.output)


def test_docs_show_the_snippet_the_command_prints() -> None:
    from sapphire.cli.exchange import ccxt_snippet

    docs = (Path(__file__).resolve().parents[2] / "docs" / "live.md").read_text()
    assert ccxt_snippet("http://127.0.0.1:8787", "KEY", "SECRET") in docs
