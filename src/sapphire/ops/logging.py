"""Structured logs: JSON lines to files and pipes, readable lines on a terminal.

`configure_logging(...)` is called once per process (a second call replaces the first
set-up). structlog and the standard library share one pipeline: a library's
`logging.getLogger(...)` record (ccxt, uvicorn, SQLAlchemy, `warnings.warn`) is rendered
exactly like `structlog.get_logger().info(...)`, with a UTC timestamp, the level, the
logger's name, the context's bound variables and the correlation id
(`sapphire.correlation`).

`RequestIdMiddleware` gives every service request an id (the client's `X-Request-ID` if
it sent a usable one), binds it as the correlation id and returns it in the answer.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from pathlib import Path
from typing import IO, Any, Literal

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sapphire.correlation import (
    add_correlation_id,
    bind_correlation,
    check_correlation_id,
    new_correlation_id,
    reset_correlation,
)

__all__ = [
    "FORMATS",
    "RUN_LOG",
    "RequestIdMiddleware",
    "configure_logging",
    "configure_run_logging",
    "parse_rotation",
]

Format = Literal["auto", "json", "console"]
FORMATS: tuple[str, ...] = ("auto", "json", "console")
#: loggers that install handlers of their own; theirs are removed so they reach ours
_OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_SIZE = re.compile(r"(?i)^\s*(\d+)\s*(b|kb|mb|gb)\s*$")
_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
# lower case only: "10M" could as well mean megabytes, so it is refused, not guessed
_TIME = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_NAMED_TIMES = {"hourly": ("h", 1), "daily": ("midnight", 1), "midnight": ("midnight", 1)}


def parse_rotation(rotate: str) -> tuple[Literal["size"], int] | tuple[Literal["time"], str, int]:
    """A rotation spec: a size (`"50MB"`, `"500kb"`) or a period (`"daily"`, `"hourly"`,
    `"midnight"`, `"6h"`, `"30m"`, `"1d"`); a ValueError naming anything else."""
    if not isinstance(rotate, str):
        raise ValueError(
            f"rotation must be a size like '50MB' or a period like 'daily', got {rotate!r}"
        )
    size = _SIZE.match(rotate)
    if size:
        count = int(size.group(1)) * _UNITS[size.group(2).lower()]
        if count <= 0:
            raise ValueError(f"rotation size must be positive, got {rotate!r}")
        return ("size", count)
    named = _NAMED_TIMES.get(rotate.strip().lower())
    if named:
        return ("time", named[0], named[1])
    period = _TIME.match(rotate)
    if period and int(period.group(1)) > 0:
        return ("time", period.group(2), int(period.group(1)))
    raise ValueError(
        f"rotation must be a size (e.g. '50MB', '500KB', '1GB') or a period "
        f"('daily', 'hourly', 'midnight', '6h', '30m', '1d'), got {rotate!r}"
    )


def _level(level: str | int) -> int:
    if isinstance(level, int) and not isinstance(level, bool):
        if not logging.getLevelName(level).startswith("Level "):
            return level
    elif isinstance(level, str):
        value = logging.getLevelName(level.strip().upper())
        if isinstance(value, int):
            return value
    names = "DEBUG, INFO, WARNING, ERROR, CRITICAL"
    raise ValueError(f"log level must be one of {names}, got {level!r}")


def _shared_processors() -> list[Any]:
    """What every record gets, whether it came from structlog or the standard library."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_correlation_id,
        structlog.processors.StackInfoRenderer(),
    ]


def _formatter(kind: Literal["json", "console"], colors: bool) -> logging.Formatter:
    renderer: list[Any]
    if kind == "json":
        renderer = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=str),
        ]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=colors)]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )


def _file_handler(path: Path, rotate: str | None, retention: int) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    if rotate is None:
        # no rotation of ours: WatchedFileHandler reopens the file after logrotate moves it
        return logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    spec = parse_rotation(rotate)
    if spec[0] == "size":
        return logging.handlers.RotatingFileHandler(
            path, maxBytes=spec[1], backupCount=retention, encoding="utf-8"
        )
    return logging.handlers.TimedRotatingFileHandler(
        path, when=spec[1], interval=spec[2], backupCount=retention, encoding="utf-8", utc=True
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to the `sys.stderr` of the moment, not the one at set-up (a test runner or a
    daemonising parent may swap it; a handler holding the old one writes to a closed
    stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        """The stream is always the current stderr."""


def configure_logging(
    level: str | int = "INFO",
    fmt: Format | str = "auto",
    file: str | Path | None = None,
    rotate: str | None = "50MB",
    retention: int = 7,
    *,
    stream: IO[str] | None = None,
    console_level: str | int | None = None,
) -> list[logging.Handler]:
    """Route structlog and the standard library's logging to `stream` (default stderr)
    and, with `file`, to JSON lines in that file.

    `fmt`: "json" (one JSON object a line), "console" (readable, coloured on a terminal) or
    "auto" (console when the stream is a terminal, else JSON). `rotate`: a size ("50MB")
    or a period ("daily", "6h"), None for none (an outside logrotate may move the file);
    `retention`: how many rotated files are kept. `console_level`: a higher threshold for
    the stream only (a node's terminal shows its warnings, its file every order).
    Returns the handlers installed.
    """
    threshold = _level(level)
    console_threshold = max(threshold, _level(console_level)) if console_level else threshold
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if isinstance(retention, bool) or not isinstance(retention, int) or retention < 0:
        raise ValueError(f"log retention must be a count of files >= 0, got {retention!r}")
    if rotate is not None:
        parse_rotation(rotate)
    out = stream if stream is not None else sys.stderr
    tty = bool(getattr(out, "isatty", lambda: False)())
    kind: Literal["json", "console"] = (
        ("console" if tty else "json")
        if fmt == "auto"
        else ("json" if fmt == "json" else "console")
    )
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(out) if stream is not None else _StderrHandler()
    console.setFormatter(_formatter(kind, colors=tty))
    console.setLevel(console_threshold)
    handlers.append(console)
    if file is not None:
        to_file = _file_handler(Path(file), rotate, retention)
        to_file.setFormatter(_formatter("json", colors=False))
        handlers.append(to_file)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_sapphire", False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler._sapphire = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(threshold)
    for name in _OWN_HANDLERS:
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
        named.setLevel(logging.NOTSET)  # the root's threshold decides
    # a `logging.config.dictConfig`/`fileConfig` run before (uvicorn's, a library's)
    # disables the loggers that existed then: this set-up is the process's, so they
    # speak again through it
    for existing in list(logging.root.manager.loggerDict.values()):
        if isinstance(existing, logging.Logger):
            existing.disabled = False
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handlers


#: a paper or live run's log file in its run directory (JSON lines)
RUN_LOG = "run.log"


def configure_run_logging(run_dir: str | Path, logs: Any = None) -> list[logging.Handler]:
    """A paper or live node's logs: JSON lines from `logs.level` (INFO: every order
    event and fill, with its correlation id) to the configuration's file, else to
    `<run_dir>/run.log`, rotated; only warnings and errors on the terminal, where the
    run's live view is. `logs`: the configuration's `logging` section (None: defaults)."""
    level = getattr(logs, "level", "INFO")
    fmt = getattr(logs, "format", "auto")
    file = getattr(logs, "file", None) or Path(run_dir) / RUN_LOG
    rotation = getattr(logs, "rotation", "50MB")
    retention = getattr(logs, "retention", 7)
    return configure_logging(level, fmt, file, rotation, retention, console_level="WARNING")


class RequestIdMiddleware:
    """ASGI middleware: bind each request's id as the correlation id and answer it in
    `X-Request-ID`; a client's usable id is kept, anything else is replaced by a new one."""

    def __init__(self, app: ASGIApp, *, header: str = "X-Request-ID") -> None:
        self.app = app
        self.header = header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sent = Headers(scope=scope).get(self.header)
        try:
            request_id = check_correlation_id(sent) if sent is not None else new_correlation_id()
        except ValueError:
            request_id = new_correlation_id()
        header = self.header

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[header] = request_id
            await send(message)

        token = bind_correlation(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            reset_correlation(token)
