"""The /api/v1 logs route (scope `read`): the log lines the node processes of a run wrote,
read only. A node the service started writes its output to `<home>/nodes/<run_id>.log`
(`sapphire.api.nodes`; shown as `node.log`), and a paper or live run keeps its other
processes' logs as `*.log` files in its run directory (`<home>/paper/<run_id>/venue.log`,
...). Only regular files under the service's home are read (never a link, never a path
from the request), and only the last `MAX_BYTES` of each, so an answer stays small however
big a log grows.

A line's level is its JSON `level` (`sapphire.ops.logging`'s JSON lines), else its
console `[level]`, else the first DEBUG / INFO / WARNING / ERROR / CRITICAL word in it
("Traceback" is an ERROR), else the level of the line before (a traceback's lines, a
message's continuation).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from sapphire.api.queries import RUN_ID_PATTERN, RunIdQuery, run_dir, runs_for, unprocessable
from sapphire.api.schemas import ErrorDetail
from sapphire.api.security.deps import require
from sapphire.store import RunInfo, Store

router = APIRouter(tags=["logs"])

#: how much of the end of each log file is read
MAX_BYTES = 1 << 20
#: where the service's nodes write their output (`<home>/nodes/<run_id>.log`), and the
#: source name it is shown under
NODES, NODE_LOG = "nodes", "node.log"
#: longest line returned (longer ones are cut, marked with "…")
MAX_LINE = 4000
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_RANK = {name: i for i, name in enumerate(LEVELS)}
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "EXCEPTION": "ERROR"}
_WORD = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|EXCEPTION)\b")
#: the level as structlog's console renderer writes it (`[warning  ]`)
_CONSOLE = re.compile(r"\[(debug|info|warning|error|critical)\s*\]")
_LEADING_TIME = re.compile(
    r"^\[?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)"
)
_SOURCE = r"^[A-Za-z0-9._-]{1,100}\.log$"
_RUN_ID = re.compile(RUN_ID_PATTERN)
_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No run with that id."},
    422: {"model": ErrorDetail, "description": "A bad query value (named in the message)."},
}


class LogLineOut(BaseModel):
    """One line of a log."""

    ts: datetime | None = Field(description="Its time, when the line carries one (UTC).")
    level: str | None = Field(description="DEBUG, INFO, WARNING, ERROR, CRITICAL or null.")
    text: str = Field(description="The line (cut at 4000 characters).")


class LogFileOut(BaseModel):
    """The last lines of one log file of a run."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "paper-1", "source": "venue.log", "size": 5230,
                    "truncated": False,
                    "lines": [
                        {"ts": "2022-01-03T10:05:00Z", "level": "WARNING",
                         "text": "2022-01-03T10:05:00Z WARNING venue: slow poll 1.2 s"}
                    ],
                }
            ]
        }
    )  # fmt: skip

    run_id: str = Field(description="The run.")
    source: str = Field(
        description="node.log (the node's output) or a log file's name in the run directory."
    )
    size: int = Field(description="The file's size, bytes.")
    truncated: bool = Field(description="Only its last 1 MiB was read.")
    lines: list[LogLineOut] = Field(description="The last `limit` matching lines, in order.")


class LogsOut(BaseModel):
    """The logs of the runs read."""

    files: list[LogFileOut] = Field(description="By run, then file name.")


@dataclass
class _Line:
    ts: datetime | None
    level: str | None
    text: str


def _time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace(",", "."))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or one beyond the calendar in UTC
        return None


def _level(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    upper = _ALIASES.get(name.upper(), name.upper())
    return upper if upper in _RANK else None


def _parse(raw: str, previous: str | None) -> _Line:
    text = raw if len(raw) <= MAX_LINE else raw[:MAX_LINE] + "…"
    if raw.startswith("{"):
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if isinstance(record, dict):
            level = _level(record.get("level") or record.get("levelname"))
            ts = _time(record.get("timestamp") or record.get("ts") or record.get("time"))
            return _Line(ts, level or previous, text)
    word = _CONSOLE.search(raw) or _WORD.search(raw)
    if word is not None:
        level = _level(word.group(1))
    elif raw.startswith("Traceback (most recent call last)"):
        level = "ERROR"
    else:
        level = previous
    stamp = _LEADING_TIME.match(raw)
    return _Line(_time(stamp.group(1)) if stamp else None, level, text)


def _lines(raw: list[str], wanted: str | None) -> list[_Line]:
    """The lines parsed, those below the `wanted` level left out."""
    out = []
    previous: str | None = None
    for text in raw:
        line = _parse(text, previous)
        previous = line.level
        if wanted is None or (line.level is not None and _RANK[line.level] >= _RANK[wanted]):
            out.append(line)
    return out


def _tail(path: Path) -> tuple[list[str], int]:
    """The lines of the last MAX_BYTES of `path` (a first partial line dropped), and the
    file's size."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        start = max(0, size - MAX_BYTES)
        fh.seek(start)
        data = fh.read(MAX_BYTES)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]
    return lines, size


def _regular(path: Path) -> bool:
    return not path.is_symlink() and path.is_file()


def _log_files(home: Path, run: RunInfo) -> Iterator[tuple[str, Path]]:
    """(source, path) of the run's logs: the node's output, then the regular `*.log`
    files directly in its run directory (links are not followed)."""
    if _RUN_ID.fullmatch(run.run_id):  # a run id that cannot leave the folder
        node = home.resolve() / NODES / f"{run.run_id}.log"
        if _regular(node):
            yield NODE_LOG, node
    folder = run_dir(home, run)
    if folder is None or not folder.is_dir() or folder.is_symlink():
        return
    for path in sorted(folder.iterdir()):
        if path.suffix == ".log" and _regular(path):
            yield path.name, path


@router.get("/logs", dependencies=[Depends(require("read"))], responses=_ANSWERS, summary="Logs")
def get_logs(
    request: Request,
    run_id: RunIdQuery = None,
    level: Annotated[
        str | None,
        Query(
            description="Only lines at this level or above: debug, info, warning, error, critical.",
            json_schema_extra={"enum": [name.lower() for name in LEVELS]},
        ),
    ] = None,
    source: Annotated[
        str | None,
        Query(
            description="Only this log file of the run (e.g. venue.log).",
            json_schema_extra={"pattern": _SOURCE},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=2000, description="Last lines per file.")] = 200,
) -> LogsOut:
    """The last lines of each log of the run (or of each running run), read only."""
    wanted = None
    if level is not None:
        wanted = level.upper()
        if wanted not in _RANK:
            raise unprocessable(
                f"level {level!r} is unknown: expected debug, info, warning, error or critical"
            )
    if source is not None and not re.fullmatch(_SOURCE, source):
        raise unprocessable(f"source {source!r} is not a log file name (NAME.log)")
    service = request.app.state.service
    store: Store = service.store
    home = Path(service.home)
    out = []
    for run in runs_for(store, run_id):
        for name, path in _log_files(home, run):
            if source is not None and name != source:
                continue
            try:
                raw, size = _tail(path)
            except OSError:  # removed or unreadable since it was listed
                continue
            lines = _lines(raw, wanted)[-limit:]
            item = LogFileOut(
                run_id=run.run_id, source=name, size=size, truncated=size > MAX_BYTES,
                lines=[LogLineOut(ts=x.ts, level=x.level, text=x.text) for x in lines],
            )  # fmt: skip
            out.append(item)
    return LogsOut(files=out)
