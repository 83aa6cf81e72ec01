"""Each notification channel against a local stand-in: HTTP servers for the Telegram Bot
API, Slack, Discord and a signed webhook; aiosmtpd for SMTP (plain and STARTTLS). And the
watchdog noticing a real `sapphire paper` node that is SIGKILLed."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sapphire.engine.stream import LocalStream, node_channel
from sapphire.ops.notify.channels import DeliveryError, EmailChannel, build_channels, send_test
from sapphire.ops.notify.config import load_notifications
from sapphire.ops.notify.dispatch import Notifier
from sapphire.ops.notify.messages import Message
from sapphire.ops.notify.service import NotifyService
from sapphire.ops.notify.telegram import TelegramBot
from sapphire.ops.watchdog import Watchdog

TOKEN = "987654:TEST-token"
ENV = "SAPPHIRE_NOTIFICATIONS__"


class Fake(ThreadingHTTPServer):
    """Records every POST; answers from `replies` (status, body), then 200 `default`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict[str, Any]] = []
        self.replies: list[tuple[int, bytes]] = []
        self.updates: list[dict[str, Any]] = []
        self.default = b'{"ok": true, "result": {}}'

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Fake

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": body,
             "json": json.loads(body or b"null")}
        )  # fmt: skip
        if self.path.endswith("/getUpdates"):
            updates, self.server.updates = self.server.updates, []
            status, reply = 200, json.dumps({"ok": True, "result": updates}).encode()
        elif self.server.replies:
            status, reply = self.server.replies.pop(0)
        else:
            status, reply = 200, self.server.default
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def fake() -> Iterator[Fake]:
    server = Fake()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _cfg(fake: Fake, **extra: Any) -> Any:
    return load_notifications(
        {"telegram": {"chat_ids": [42, 43], "base_url": fake.url},
         "slack": {}, "discord": {}, "webhooks": [{"name": "ops"}], **extra},
        env={f"{ENV}TELEGRAM__TOKEN": TOKEN, f"{ENV}SLACK__URL": f"{fake.url}/slack/T1",
             f"{ENV}DISCORD__URL": f"{fake.url}/discord/D1",
             f"{ENV}WEBHOOKS__OPS__URL": f"{fake.url}/hook",
             f"{ENV}WEBHOOKS__OPS__HMAC_SECRET": "shh"},
    )  # fmt: skip


def test_telegram_sends_to_every_configured_chat(fake: Fake) -> None:
    assert send_test(_cfg(fake), "telegram") == "sent a test message on telegram"
    assert [r["path"] for r in fake.requests] == [f"/bot{TOKEN}/sendMessage"] * 2
    assert [r["json"]["chat_id"] for r in fake.requests] == [42, 43]
    assert fake.requests[0]["json"]["text"].startswith("Sapphire test message")


def test_telegram_errors_never_show_the_token(fake: Fake) -> None:
    fake.replies = [(401, b'{"ok": false, "description": "Unauthorized"}')]
    with pytest.raises(DeliveryError) as err:
        send_test(_cfg(fake), "telegram")
    assert "HTTP 401" in str(err.value) and TOKEN not in str(err.value)
    assert not err.value.retryable


def test_slack_and_discord_webhooks(fake: Fake) -> None:
    cfg = _cfg(fake)
    send_test(cfg, "slack")
    send_test(cfg, "discord")
    slack, discord = fake.requests
    assert slack["path"] == "/slack/T1"
    assert slack["json"] == {"text": "*Sapphire test message*\nThe slack channel works."}
    assert discord["path"] == "/discord/D1"
    assert discord["json"]["content"].startswith("**Sapphire test message**")


def test_a_generic_webhook_is_json_signed_with_hmac(fake: Fake) -> None:
    send_test(_cfg(fake), "ops")
    (req,) = fake.requests
    assert req["path"] == "/hook" and req["json"]["title"] == "Sapphire test message"
    expected = "sha256=" + hmac.new(b"shh", req["body"], hashlib.sha256).hexdigest()
    assert req["headers"]["X-Sapphire-Signature"] == expected


def test_unknown_channel_is_named(fake: Fake) -> None:
    with pytest.raises(ValueError, match="channel 'pager' is not configured"):
        send_test(_cfg(fake), "pager")


def test_the_notifier_retries_a_server_error_and_a_429(fake: Fake) -> None:
    fake.replies = [(503, b"busy"), (429, b"slow down")]
    slack = [c for c in build_channels(_cfg(fake)) if c.name == "slack"]
    n = Notifier(slack, retries=3, backoff_s=0.01)
    n.notify(Message("trade", "Fill", "BUY 1 X", key="f1"))
    assert n.drain(10)
    n.close()
    assert len(fake.requests) == 3
    assert n.stats()["slack"] == {"sent": 1, "failed": 0, "retried": 2, "dropped": 0}


def test_the_service_turns_node_events_into_messages(fake: Fake, tmp_path: Path) -> None:
    stream = LocalStream(tmp_path / "events", poll_s=0.01)
    cfg = load_notifications(
        {"webhooks": [{"name": "ops", "kinds": ["trade", "risk"]}], "run_ids": ["r1"]},
        env={f"{ENV}WEBHOOKS__OPS__URL": f"{fake.url}/hook"},
    )
    service = NotifyService(cfg, stream, tmp_path, interval_s=0.05)
    service.start()
    try:
        time.sleep(0.3)  # the watchdog follows r1 from now
        ch = node_channel("r1")
        stream.publish(ch, {"type": "status", "status": "running", "ts_ns": time.time_ns()})
        stream.publish(ch, {"type": "fill", "trade_id": "T1", "side": "BUY", "last_qty": "1",
                            "instrument_id": "X", "last_px": "10", "fee": "0.01"})  # fmt: skip
        stream.publish(ch, {"type": "risk", "kind": "kill_switch", "reason": "operator"})
        deadline = time.monotonic() + 10
        while len(fake.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        service.stop()
    assert [r["json"]["kind"] for r in fake.requests] == ["trade", "risk"]
    assert fake.requests[1]["json"]["severity"] == "critical"


def test_the_bot_long_polls_and_answers_only_configured_chats(fake: Fake, tmp_path: Path) -> None:
    stream = LocalStream(tmp_path / "events", poll_s=0.01)
    stream.publish(node_channel("r1"), {"type": "status", "status": "running",
                                        "ts_ns": time.time_ns(), "mode": "paper"})  # fmt: skip
    cfg = _cfg(fake)
    api = build_channels(cfg)[0].api  # type: ignore[attr-defined]
    bot = TelegramBot(api, [42], stream, lambda: ["r1"], poll_timeout_s=0)
    fake.updates = [
        {"update_id": 7, "message": {"chat": {"id": 42}, "text": "/status"}},
        {"update_id": 8, "message": {"chat": {"id": 666}, "text": "/kill"}},
    ]
    assert bot.poll_once() == 2
    assert bot.poll_once() == 0
    calls = [(r["path"].rsplit("/", 1)[1], r["json"]) for r in fake.requests]
    assert calls[0] == ("getUpdates", {"timeout": 0, "allowed_updates": ["message"]})
    assert calls[1][0] == "sendMessage" and calls[1][1]["chat_id"] == 42
    assert calls[1][1]["text"].startswith("r1 (paper): running")
    assert calls[2] == ("getUpdates", {"timeout": 0, "allowed_updates": ["message"],
                                       "offset": 9})  # fmt: skip
    assert len(calls) == 3 and bot.ignored == 1  # chat 666 got no answer


# ------------------------------------------------------------------------ email
aiosmtpd = pytest.importorskip("aiosmtpd", reason="aiosmtpd (the dev extra) is needed")


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    return cert_path, key_path


class Inbox:
    def __init__(self) -> None:
        self.mails: list[Any] = []
        self.tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(envelope)
        self.tls.append(session.ssl is not None)
        return "250 OK"


@pytest.mark.parametrize("starttls", [False, True])
def test_email_over_smtp(tmp_path: Path, starttls: bool) -> None:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    with socket.socket() as probe:  # a free port (aiosmtpd's own check needs a real one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tls = None
    if starttls:
        cert, key = _certificate(tmp_path)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        tls = ssl.create_default_context(cafile=str(cert))
        controller = Controller(
            inbox, hostname="127.0.0.1", port=port, server_hostname="localhost",
            tls_context=server_tls, require_starttls=True,
        )  # fmt: skip
    else:
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        cfg = load_notifications(
            {"email": {"host": "localhost" if starttls else "127.0.0.1", "port": port,
                       "starttls": starttls, "sender": "bot@sapphire.test",
                       "to": ["ops@sapphire.test", "me@sapphire.test"]}},
            env={},
        )  # fmt: skip
        assert cfg.email is not None
        EmailChannel(cfg.email, tls=tls).send(
            Message("risk", "[r1] Risk: kill_switch", "tripped by the operator", key="k")
        )
    finally:
        controller.stop()
    (mail,) = inbox.mails
    assert mail.rcpt_tos == ["ops@sapphire.test", "me@sapphire.test"]
    parsed = message_from_bytes(mail.original_content)
    assert parsed["Subject"] == "[Sapphire] [r1] Risk: kill_switch"
    assert "tripped by the operator" in parsed.get_payload()
    assert inbox.tls == [starttls]


def test_email_to_a_closed_port_is_a_retryable_failure() -> None:
    cfg = load_notifications(
        {"email": {"host": "127.0.0.1", "port": 9, "starttls": False, "timeout_s": 2,
                   "sender": "bot@s.test", "to": ["a@s.test"]}}, env={},
    )  # fmt: skip
    assert cfg.email is not None
    with pytest.raises(DeliveryError) as err:
        EmailChannel(cfg.email).send(Message("error", "t", "x", key="k"))
    assert err.value.retryable and "127.0.0.1:9" in str(err.value)


# ------------------------------------------------------------------------ a real node
@pytest.mark.slow
def test_the_watchdog_reports_a_sigkilled_paper_node(tmp_path: Path) -> None:
    run_id = "watched"
    env = {**os.environ, "SAPPHIRE_HOME": str(tmp_path), "SAPPHIRE_PAPER_VENUE_IDLE": "30"}
    env.pop("SAPPHIRE_REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sapphire", "paper", "--run-id", run_id, "--start",
         "2022-01-05", "--end", "2022-01-08", "--speed", "100x", "--no-live"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    sent: list[Message] = []
    stream = LocalStream(tmp_path / "events", poll_s=0.05)
    dog = Watchdog(stream, sent.append, home=tmp_path, timeout_s=15)
    try:
        deadline = time.monotonic() + 60
        while run_id not in dog.nodes or dog.nodes[run_id].status != "running":
            assert proc.poll() is None, "the node ended before it ran"
            assert time.monotonic() < deadline, "the node published no running status in 60 s"
            dog.check()
            time.sleep(0.1)
        assert dog.check() == []  # alive and beating
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the node and its venue process
        proc.wait(timeout=30)
    down = dog.check()
    assert [m.title for m in down] == [f"[{run_id}] Node down"]
    assert f"its process {proc.pid} is gone" in down[0].text
    assert sent == down and dog.check() == []
