"""Telegram commands: a node's status, balance and positions, pause and the kill switch.

`TelegramBot` long-polls the Bot API's getUpdates and answers only the configured chat
ids (anyone else is ignored and logged). The figures come from each node's last events
on the stream (`node.<run_id>`); `/pause`, `/resume` and `/kill` are the commands the
API sends, published on `node.<run_id>.control` (`sapphire.engine.control.command_event`)
and answered with the node's acknowledgement. The kill switch asks for confirmation:
`/kill RUN [flatten]` answers with a code, and only `/confirm CODE` from the same chat
within `confirm_ttl_s` trips it.

Commands (RUN may be left out when one node is running): /status [RUN],
/balance [RUN], /positions [RUN], /pause [RUN], /resume [RUN], /kill [RUN] [flatten],
/confirm CODE, /help.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sapphire.engine.control import command_event
from sapphire.engine.stream import EventStream, control_channel, node_channel
from sapphire.ops.notify.channels import DeliveryError, TelegramAPI

__all__ = ["HELP", "TelegramBot"]

log = logging.getLogger("sapphire.ops.notify.telegram")

HELP = (
    "Commands (RUN may be left out when one node runs):\n"
    "/status [RUN] - state, equity and last heartbeat\n"
    "/balance [RUN] - balances and equity\n"
    "/positions [RUN] - open positions\n"
    "/pause [RUN] - no new entries\n"
    "/resume [RUN] - entries allowed again\n"
    "/kill [RUN] [flatten] - the kill switch (asks for confirmation)\n"
    "/confirm CODE - confirm a kill"
)


def _nonzero(value: object) -> bool:
    try:
        return Decimal(str(value)) != 0
    except InvalidOperation:
        return False


@dataclass(frozen=True)
class _Pending:
    run_id: str
    flatten: bool
    expires: float


class TelegramBot:
    """Answers commands from `chat_ids` (see the module docstring); `nodes` lists the
    run ids known (the watchdog's)."""

    def __init__(
        self,
        api: TelegramAPI,
        chat_ids: Iterable[int],
        stream: EventStream,
        nodes: Callable[[], list[str]],
        *,
        poll_timeout_s: int = 25,
        ack_timeout_s: float = 5.0,
        confirm_ttl_s: float = 60.0,
    ) -> None:
        self.api = api
        self.chat_ids = frozenset(chat_ids)
        self.stream = stream
        self.nodes = nodes
        self.poll_timeout_s = poll_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.confirm_ttl_s = confirm_ttl_s
        self.offset: int | None = None
        self.pending: dict[tuple[int, str], _Pending] = {}
        self.ignored = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- polling
    def poll_once(self, timeout: int | None = None) -> int:
        """Take the updates waiting (long-polling up to `timeout` seconds) and answer
        them; how many updates were taken."""
        wait = self.poll_timeout_s if timeout is None else timeout
        params: dict[str, Any] = {"timeout": wait, "allowed_updates": ["message"]}
        if self.offset is not None:
            params["offset"] = self.offset
        updates = self.api.call("getUpdates", http_timeout=wait + 10, **params) or []
        for update in updates:
            self.offset = int(update.get("update_id", 0)) + 1
            message = update.get("message") or {}
            chat = (message.get("chat") or {}).get("id")
            reply = self.handle(chat, str(message.get("text") or ""))
            if reply is not None:
                self.api.call("sendMessage", chat_id=chat, text=reply[:4096])
        return len(updates)

    def run(self) -> None:
        """Poll until `stop` (a failed poll waits and tries again)."""
        while not self._stop.is_set():
            try:
                self.poll_once()
            except DeliveryError as exc:
                log.warning("telegram getUpdates failed: %s", exc)
                self._stop.wait(5.0)
            except Exception:
                log.exception("telegram command handling failed")
                self._stop.wait(5.0)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name="telegram-bot", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop polling (a long poll in flight is left to end on its own)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ---------------------------------------------------------------- commands
    def handle(self, chat: object, text: str) -> str | None:
        """The answer to `text` from `chat` (None: not answered)."""
        if not isinstance(chat, int) or chat not in self.chat_ids:
            self.ignored += 1
            log.warning("telegram: ignored a message from chat %r (not configured)", chat)
            return None
        words = text.strip().split()
        if not words or not words[0].startswith("/"):
            return None
        name = words[0][1:].split("@", 1)[0].lower()
        args = words[1:]
        if name in ("help", "start"):
            return HELP
        if name == "confirm":
            return self._confirm(chat, args)
        if name not in ("status", "balance", "positions", "pause", "resume", "kill"):
            return f"unknown command /{name}\n{HELP}"
        flatten = name == "kill" and "flatten" in args
        args = [a for a in args if not (name == "kill" and a == "flatten")]
        run_id, problem = self._pick(args)
        if run_id is None:
            return problem
        if name == "status":
            return self._status(run_id)
        if name == "balance":
            return self._balance(run_id)
        if name == "positions":
            return self._positions(run_id)
        if name == "pause":
            return self._command(run_id, "pause")
        if name == "resume":
            return self._command(run_id, "resume_entries")
        code = f"{secrets.randbelow(1_000_000):06d}"
        self.pending[(chat, code)] = _Pending(
            run_id, flatten, time.monotonic() + self.confirm_ttl_s
        )
        what = "cancel its orders and close its positions" if flatten else "cancel its orders"
        return (
            f"Kill switch for {run_id}: it will halt, {what}. Send /confirm {code} "
            f"within {self.confirm_ttl_s:g} s to go ahead."
        )

    def _pick(self, args: list[str]) -> tuple[str | None, str]:
        nodes = sorted(self.nodes())
        if args:
            if args[0] in nodes:
                return args[0], ""
            return None, f"no node {args[0]!r}; known: {', '.join(nodes) or 'none'}"
        if len(nodes) == 1:
            return nodes[0], ""
        if not nodes:
            return None, "no node is running"
        return None, f"which node? {', '.join(nodes)}"

    def _confirm(self, chat: int, args: list[str]) -> str:
        now = time.monotonic()
        for key in [k for k, p in self.pending.items() if p.expires < now]:
            del self.pending[key]
        pending = self.pending.pop((chat, args[0]), None) if args else None
        if pending is None:
            return "no kill is waiting for that code (it may have expired): send /kill again"
        return self._command(pending.run_id, "kill", flatten=pending.flatten)

    def _command(self, run_id: str, name: str, **args: Any) -> str:
        event = command_event(name, **args)
        reader = self.stream.reader([node_channel(run_id)])  # from now: before sending
        self.stream.publish(control_channel(run_id), event)
        log.warning("telegram: sent %s to node %s (command %s)", name, run_id, event["id"])
        deadline = time.monotonic() + self.ack_timeout_s
        while (left := deadline - time.monotonic()) > 0:
            for entry in reader.poll(timeout=min(left, 0.5)):
                ack = entry.event
                if ack.get("type") == "ack" and ack.get("command_id") == event["id"]:
                    if not ack.get("ok"):
                        return f"{run_id}: {name} refused: {ack.get('reason')}"
                    return f"{run_id}: {name} done, trading state {ack.get('trading_state')}"
        return (
            f"{run_id}: no acknowledgement of {name} within {self.ack_timeout_s:g} s (is it "
            "running?); the command expires unless the node takes it within a minute"
        )

    # ---------------------------------------------------------------- figures
    def _last(self, run_id: str) -> dict[str, Any]:
        """The node's last status, equity and balance, and each instrument's position."""
        out: dict[str, Any] = {"positions": {}}
        for entry in self.stream.tail(node_channel(run_id), 1000):
            event = entry.event
            kind = event.get("type")
            if kind in ("status", "equity", "balance"):
                out[str(kind)] = event
            elif kind == "position":
                out["positions"][str(event.get("instrument_id"))] = event
        return out

    def _status(self, run_id: str) -> str:
        last = self._last(run_id)
        status = last.get("status")
        if status is None:
            return f"{run_id}: no status published yet"
        age = time.time() - int(status.get("ts_ns") or 0) / 1e9
        lines = [
            f"{run_id} ({status.get('mode', '?')}): {status.get('status')}",
            f"trading state {status.get('trading_state')}, operator {status.get('operator_state')}",
            f"last heartbeat {age:.0f} s ago",
        ]
        equity = last.get("equity")
        if equity is not None:
            lines.append(f"equity {equity.get('equity')} {equity.get('currency', '')}".rstrip())
        return "\n".join(lines)

    def _balance(self, run_id: str) -> str:
        last = self._last(run_id)
        lines = [f"{run_id} balances:"]
        balance = last.get("balance")
        if balance is not None:
            for ccy, total in sorted((balance.get("balances") or {}).items()):
                lines.append(f"{ccy}: {total}")
        equity = last.get("equity")
        if equity is not None:
            lines.append(f"equity {equity.get('equity')} {equity.get('currency', '')}".rstrip())
        return "\n".join(lines) if len(lines) > 1 else f"{run_id}: no balance published yet"

    def _positions(self, run_id: str) -> str:
        open_ = [
            p for p in self._last(run_id)["positions"].values()
            if _nonzero(p.get("quantity"))
        ]  # fmt: skip
        if not open_:
            return f"{run_id}: no open position"
        lines = [f"{run_id} positions:"]
        for p in sorted(open_, key=lambda p: str(p.get("instrument_id"))):
            lines.append(
                f"{p.get('instrument_id')}: {p.get('quantity')} @ {p.get('avg_px')} "
                f"(realised {p.get('realized_pnl')})"
            )
        return "\n".join(lines)
