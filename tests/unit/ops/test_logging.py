"""Structured logging: one pipeline for structlog and the standard library, JSON or
readable output, rotating files, correlation ids and the request-id middleware."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.handlers
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sapphire.correlation import (
    bind_correlation,
    correlated,
    correlation_id,
    new_correlation_id,
    reset_correlation,
)
from sapphire.ops.logging import RequestIdMiddleware, configure_logging, parse_rotation


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_structlog_and_stdlib_records_come_out_as_the_same_json() -> None:
    out = io.StringIO()
    configure_logging("INFO", "auto", stream=out)  # not a terminal: JSON
    structlog.get_logger("sapphire.node").info("order submitted", client_order_id="O-1")
    logging.getLogger("ccxt.base.exchange").warning("rate limit hit %s", "bybit")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old SQLAlchemy call", DeprecationWarning, stacklevel=1)
    mine, library, warned = _lines(out)
    assert mine["event"] == "order submitted" and mine["client_order_id"] == "O-1"
    assert mine["level"] == "info" and mine["logger"] == "sapphire.node"
    assert library["event"] == "rate limit hit bybit" and library["level"] == "warning"
    assert library["logger"] == "ccxt.base.exchange"
    assert warned["logger"] == "py.warnings" and "old SQLAlchemy call" in str(warned["event"])
    for line in (mine, library, warned):
        assert str(line["timestamp"]).endswith("Z")


def test_level_filters_both_kinds_of_logger() -> None:
    out = io.StringIO()
    configure_logging("WARNING", "json", stream=out)
    structlog.get_logger("a").info("hidden")
    logging.getLogger("b").info("hidden too")
    structlog.get_logger("a").error("shown")
    assert [line["event"] for line in _lines(out)] == ["shown"]


def test_a_terminal_gets_readable_lines_unless_json_is_asked_for() -> None:
    tty = _Terminal()
    configure_logging("INFO", "auto", stream=tty)
    structlog.get_logger("x").info("fill booked", qty="0.5")
    text = tty.getvalue()
    assert "fill booked" in text and "qty" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])
    forced = _Terminal()
    configure_logging("INFO", "json", stream=forced)
    structlog.get_logger("x").info("fill booked")
    assert _lines(forced)[0]["event"] == "fill booked"


def test_console_on_a_pipe_when_asked() -> None:
    out = io.StringIO()
    configure_logging("INFO", "console", stream=out)
    logging.getLogger("uvicorn.error").info("Started server process")
    assert "Started server process" in out.getvalue()
    assert not out.getvalue().lstrip().startswith("{")


def test_exceptions_are_rendered_into_the_json_line() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    try:
        raise RuntimeError("venue down")
    except RuntimeError:
        structlog.get_logger("n").exception("submit failed")
        logging.getLogger("lib").exception("lib failed")
    mine, library = _lines(out)
    assert "RuntimeError: venue down" in str(mine["exception"])
    assert "RuntimeError: venue down" in str(library["exception"])


def test_the_correlation_id_is_on_every_line_while_bound() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    with correlated("O-42"):
        structlog.get_logger("node").info("signal")
        logging.getLogger("notify").info("telegram sent")
        structlog.get_logger("node").info("explicit", correlation_id="other")
    structlog.get_logger("node").info("after")
    signal, notify, explicit, after = _lines(out)
    assert signal["correlation_id"] == "O-42" and notify["correlation_id"] == "O-42"
    assert explicit["correlation_id"] == "other"
    assert "correlation_id" not in after


def test_file_gets_json_while_the_terminal_reads_easily(tmp_path: Path) -> None:
    tty = _Terminal()
    path = tmp_path / "logs" / "node.log"
    configure_logging("INFO", "auto", file=path, stream=tty)
    structlog.get_logger("node").info("heartbeat", run_id="r1")
    logging.getLogger("sqlalchemy.engine").warning("pool overflow")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in lines] == ["heartbeat", "pool overflow"]
    assert lines[0]["run_id"] == "r1"
    assert "heartbeat" in tty.getvalue() and not tty.getvalue().startswith("{")


def test_size_rotation_keeps_the_retention_count(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    configure_logging("INFO", "json", file=path, rotate="1KB", retention=2, stream=io.StringIO())
    for i in range(200):
        structlog.get_logger("node").info("tick", i=i)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["node.log", "node.log.1", "node.log.2"]
    assert all(p.stat().st_size <= 1024 + 200 for p in tmp_path.iterdir())
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["i"] == 199


def test_time_rotation_and_no_rotation(tmp_path: Path) -> None:
    handlers = configure_logging(
        "INFO", "json", file=tmp_path / "a.log", rotate="daily", retention=14, stream=io.StringIO()
    )
    timed = handlers[1]
    assert isinstance(timed, logging.handlers.TimedRotatingFileHandler)
    assert timed.when == "MIDNIGHT" and timed.backupCount == 14 and timed.utc
    handlers = configure_logging(
        "INFO", "json", file=tmp_path / "b.log", rotate="6h", stream=io.StringIO()
    )
    assert isinstance(handlers[1], logging.handlers.TimedRotatingFileHandler)
    assert handlers[1].interval == 6 * 3600
    handlers = configure_logging(
        "INFO", "json", file=tmp_path / "c.log", rotate=None, stream=io.StringIO()
    )
    assert type(handlers[1]) is logging.handlers.WatchedFileHandler


def test_a_second_call_replaces_the_first() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "json", stream=first)
    configure_logging("INFO", "json", stream=second)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_sapphire", False)]
    assert len(ours) == 1
    structlog.get_logger("x").info("once")
    assert first.getvalue() == "" and len(_lines(second)) == 1


def test_uvicorn_loggers_lose_their_own_handlers() -> None:
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.StreamHandler(io.StringIO()))
    access.propagate = False
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    access.info('127.0.0.1 - "GET /health HTTP/1.1" 200')
    assert access.handlers == [] and access.propagate
    assert _lines(out)[0]["logger"] == "uvicorn.access"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("50MB", ("size", 50 * 1024**2)),
        ("500kb", ("size", 500 * 1024)),
        ("1GB", ("size", 1024**3)),
        ("daily", ("time", "midnight", 1)),
        ("hourly", ("time", "h", 1)),
        ("30m", ("time", "m", 30)),
        ("2d", ("time", "d", 2)),
    ],
)
def test_rotation_specs(spec: str, expected: tuple[object, ...]) -> None:
    assert parse_rotation(spec) == expected


@pytest.mark.parametrize("spec", ["", "weekly", "0MB", "10M", "10 parsecs", "-5h", "0h"])
def test_bad_rotation_specs_are_named(spec: str) -> None:
    with pytest.raises(ValueError, match="rotation"):
        parse_rotation(spec)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"log level .*'LOUD'"):
        configure_logging("LOUD")
    with pytest.raises(ValueError, match=r"log level .*17"):
        configure_logging(17)
    with pytest.raises(ValueError, match=r"log format .*'xml'"):
        configure_logging("INFO", "xml")
    with pytest.raises(ValueError, match=r"retention .*-1"):
        configure_logging("INFO", "json", retention=-1)
    with pytest.raises(ValueError, match=r"rotation .*'often'"):
        configure_logging("INFO", "json", rotate="often")
    assert not [h for h in logging.getLogger().handlers if getattr(h, "_sapphire", False)]


def test_correlation_ids_are_per_task_and_restored() -> None:
    assert correlation_id() is None
    token = bind_correlation("outer")

    async def work(cid: str) -> str | None:
        with correlated(cid):
            await asyncio.sleep(0)
            return correlation_id()

    async def both() -> list[str | None]:
        return list(await asyncio.gather(work("a"), work("b")))

    assert asyncio.run(both()) == ["a", "b"]
    assert correlation_id() == "outer"
    reset_correlation(token)
    assert correlation_id() is None
    assert len(new_correlation_id()) == 32 and new_correlation_id() != new_correlation_id()


@pytest.mark.parametrize("bad", ["", "has space", "x" * 201, "tab\there", 5])
def test_bad_correlation_ids_are_named(bad: object) -> None:
    with pytest.raises(ValueError, match="correlation id"):
        bind_correlation(bad)  # type: ignore[arg-type]
    assert correlation_id() is None


def _app() -> TestClient:
    async def echo(request: Request) -> JSONResponse:
        structlog.get_logger("api").info("handled")
        return JSONResponse({"correlation_id": correlation_id()})

    app = Starlette(routes=[Route("/echo", echo)])
    return TestClient(RequestIdMiddleware(app))


def test_the_middleware_keeps_a_client_request_id_and_logs_it() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    with _app() as client:
        answer = client.get("/echo", headers={"X-Request-ID": "req-123"})
    assert answer.headers["X-Request-ID"] == "req-123"
    assert answer.json() == {"correlation_id": "req-123"}
    handled = [line for line in _lines(out) if line["event"] == "handled"]
    assert handled[0]["correlation_id"] == "req-123"
    assert correlation_id() is None


@pytest.mark.parametrize("sent", [None, "bad id with spaces", "y" * 300])
def test_the_middleware_makes_an_id_when_none_usable_is_sent(sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    with _app() as client:
        first = client.get("/echo", headers=headers)
        second = client.get("/echo", headers=headers)
    made = first.headers["X-Request-ID"]
    assert len(made) == 32 and made != sent
    assert first.json() == {"correlation_id": made}
    assert second.headers["X-Request-ID"] != made


def test_loggers_a_library_set_up_before_speak_through_it() -> None:
    """uvicorn run earlier in the process (its levels) or a dictConfig (disabled loggers)
    do not silence what this set-up routes."""
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    quiet = logging.getLogger("some.library")
    quiet.disabled = True
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("uvicorn.error").info("Started server process")
    quiet.info("hello")
    assert [line["logger"] for line in _lines(out)] == ["uvicorn.error", "some.library"]


def test_a_paper_run_logs_its_orders_with_their_signals_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node's logs (`configure_run_logging`): every order event and fill as a JSON line
    in the run's `run.log`, each with its signal's correlation id (an entry's own id, a
    bracket leg's parent's), which the published events carry too; only warnings on the
    terminal, where the live view is."""
    from decimal import Decimal

    from sapphire.domain import OrderSide
    from sapphire.engine.stream import START, node_channel
    from sapphire.ops.logging import RUN_LOG, configure_run_logging
    from sapphire.paper import PaperConfig, PaperSession
    from sapphire.store import Store

    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
    cfg = PaperConfig(
        start="2022-01-03", end="2022-01-03 06:00", speed="max", size=0.01,
        size_mode="fixed", tick_size=0.5, lot_size=0.001, take_profit=0.004,
        stop_loss=0.004, params={"fast": "5", "slow": "20"},
    )  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    s = PaperSession.start(cfg, store=store, home=tmp_path)
    configure_run_logging(s.run_dir)
    try:
        for _ in range(200):
            s.pump(advance=True)
        huge = s.adapter.market(s.iid, OrderSide.BUY, Decimal("1000"))
        assert not s.node.submit_order(s.adapter, huge)  # denied: logged with its reason
        assert s.events.flush(5.0)
        published = [e.event for e in s.stream.read({node_channel(s.run_id): START}, count=100_000)]
    finally:
        s.shutdown_venue()
        s.close_events()
    lines = [json.loads(x) for x in (s.run_dir / RUN_LOG).read_text().splitlines()]
    fills = [x for x in lines if x["event"].startswith("fill ")]
    assert fills and all(x["level"] == "info" and x["logger"] == "sapphire.node" for x in fills)
    parents = {str(o.client_order_id): o.parent_order_id for o in s.node.orders.values()}
    for x in fills:
        cid = x["client_order_id"]
        assert x["correlation_id"] == str(parents[cid] or cid)
    submitted = {
        x["client_order_id"]: x["correlation_id"]
        for x in lines
        if x.get("order_event") == "OrderSubmitted"
    }
    legs = {c: str(p) for c, p in parents.items() if p is not None and c in submitted}
    assert legs  # a bracket leg's lines carry its entry's id: the signal's
    assert all(submitted[c] == p for c, p in legs.items())
    assert all(submitted[x["client_order_id"]] == x["correlation_id"] for x in fills)
    by_order = {e["client_order_id"]: e["correlation_id"] for e in published if e["type"] == "fill"}
    assert by_order == {x["client_order_id"]: x["correlation_id"] for x in fills}
    denied = [x for x in lines if x.get("client_order_id") == str(huge.client_order_id)]
    assert [(x["order_event"], x["level"]) for x in denied] == [("OrderDenied", "info")]
    assert denied[0]["reason"] and denied[0]["reason"] in denied[0]["event"]
    assert "order " not in capsys.readouterr().err  # the terminal: warnings only
