"""Telegram commands: answered only to configured chats, figures from the stream,
pause and kill (after confirmation) through the node's control channel."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sapphire.engine.control import parse_command
from sapphire.engine.stream import LocalStream, control_channel, node_channel
from sapphire.ops.notify.telegram import TelegramBot

CHAT = 42


class FakeNode:
    """Acknowledges the commands on its control channel as a node does."""

    def __init__(self, stream: LocalStream, run_id: str, refuse: str | None = None) -> None:
        self.stream, self.run_id, self.refuse = stream, run_id, refuse
        self.commands: list[Any] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        reader = self.stream.reader([control_channel(self.run_id)], since="0")
        while not self.stop.is_set():
            for entry in reader.poll(timeout=0.05):
                command = parse_command(entry.event)  # the API's command format
                self.commands.append(command)
                state = "HALTED" if command.name == "kill" else "REDUCING"
                self.stream.publish(node_channel(self.run_id), {
                    "type": "ack", "command_id": command.id, "command": command.name,
                    "ok": self.refuse is None, "reason": self.refuse, "trading_state": state,
                })  # fmt: skip


@pytest.fixture
def stream(tmp_path: Path) -> LocalStream:
    s = LocalStream(tmp_path / "events", poll_s=0.01)
    ch = node_channel("r1")
    now = time.time_ns()
    s.publish(ch, {"type": "status", "status": "running", "mode": "paper", "ts_ns": now,
                   "trading_state": "ACTIVE", "operator_state": "ACTIVE"})  # fmt: skip
    s.publish(ch, {"type": "equity", "equity": "10012.5", "currency": "USDT", "ts_ns": now})
    s.publish(ch, {"type": "balance", "balances": {"USDT": "10000.1"}, "ts_ns": now})
    s.publish(ch, {"type": "position", "instrument_id": "BTCUSDT.BYBIT", "quantity": "0.01",
                   "avg_px": "41000", "realized_pnl": "0", "ts_ns": now})  # fmt: skip
    s.publish(ch, {"type": "position", "instrument_id": "ETHUSDT.BYBIT", "quantity": "0",
                   "avg_px": "0", "realized_pnl": "3", "ts_ns": now})  # fmt: skip
    return s


def bot(stream: LocalStream, nodes: list[str] | None = None) -> TelegramBot:
    return TelegramBot(
        None,
        [CHAT],
        stream,
        lambda: list(nodes or ["r1"]),  # type: ignore[arg-type]
        ack_timeout_s=2.0,
    )


def test_other_chats_are_ignored_and_counted(stream: LocalStream) -> None:
    b = bot(stream)
    assert b.handle(999, "/status") is None
    assert b.handle("42", "/status") is None  # not an int chat id
    assert b.ignored == 2


def test_status_balance_positions_from_the_stream(stream: LocalStream) -> None:
    b = bot(stream)
    status = b.handle(CHAT, "/status")
    assert status is not None and status.startswith("r1 (paper): running")
    assert "equity 10012.5 USDT" in status and "trading state ACTIVE" in status
    assert b.handle(CHAT, "/balance r1") == "r1 balances:\nUSDT: 10000.1\nequity 10012.5 USDT"
    assert b.handle(CHAT, "/positions") == (
        "r1 positions:\nBTCUSDT.BYBIT: 0.01 @ 41000 (realised 0)"
    )  # the flat ETH position is not listed
    assert "no node 'r9'" in str(b.handle(CHAT, "/status r9"))
    assert "which node?" in str(bot(stream, ["r1", "r2"]).handle(CHAT, "/status"))
    assert "unknown command /foo" in str(b.handle(CHAT, "/foo"))


def test_pause_goes_through_the_control_channel(stream: LocalStream) -> None:
    node = FakeNode(stream, "r1")
    try:
        answer = bot(stream).handle(CHAT, "/pause@SapphireBot")
    finally:
        node.stop.set()
    assert answer == "r1: pause done, trading state REDUCING"
    assert [c.name for c in node.commands] == ["pause"]


def test_a_refusal_is_reported(stream: LocalStream) -> None:
    node = FakeNode(stream, "r1", refuse="cannot pause: the kill switch was tripped")
    try:
        answer = bot(stream).handle(CHAT, "/pause r1")
    finally:
        node.stop.set()
    assert answer == "r1: pause refused: cannot pause: the kill switch was tripped"


def test_kill_needs_a_confirmation_from_the_same_chat(stream: LocalStream) -> None:
    node = FakeNode(stream, "r1")
    b = TelegramBot(None, [CHAT, 7], stream, lambda: ["r1"], ack_timeout_s=2.0)  # type: ignore[arg-type]
    try:
        ask = b.handle(CHAT, "/kill r1 flatten")
        assert ask is not None and "close its positions" in ask
        code = ask.split("/confirm ")[1].split()[0]
        time.sleep(0.2)
        assert node.commands == []  # nothing sent before the confirmation
        assert "no kill is waiting" in str(b.handle(CHAT, "/confirm 000000x"))
        assert "no kill is waiting" in str(b.handle(7, f"/confirm {code}"))  # another chat
        assert b.handle(CHAT, f"/confirm {code}") == "r1: kill done, trading state HALTED"
        assert "no kill is waiting" in str(b.handle(CHAT, f"/confirm {code}"))  # used once
    finally:
        node.stop.set()
    assert [(c.name, dict(c.args)) for c in node.commands] == [("kill", {"flatten": True})]


def test_an_expired_confirmation_does_nothing(stream: LocalStream) -> None:
    b = TelegramBot(None, [CHAT], stream, lambda: ["r1"], confirm_ttl_s=0.0)  # type: ignore[arg-type]
    ask = str(b.handle(CHAT, "/kill"))
    code = ask.split("/confirm ")[1].split()[0]
    time.sleep(0.01)
    assert "expired" in str(b.handle(CHAT, f"/confirm {code}"))


def test_no_acknowledgement_is_said_so(stream: LocalStream) -> None:
    b = TelegramBot(None, [CHAT], stream, lambda: ["r1"], ack_timeout_s=0.2)  # type: ignore[arg-type]
    assert "no acknowledgement of pause within 0.2 s" in str(b.handle(CHAT, "/pause"))
    sent = stream.tail(control_channel("r1"), 5)
    assert [e.event["command"] for e in sent] == ["pause"]
