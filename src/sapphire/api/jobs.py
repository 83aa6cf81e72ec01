"""`JobManager`: research as background jobs in worker processes.

A job is a backtest (its metrics and HTML report), an optimisation study (trials, Pareto
front, DSR/PBO; or the resumption of a stored study), a walk-forward analysis or a data
download. Each runs in a worker process of its own (`python -m sapphire.api.job_worker
<job dir>`, a new session and process group), at most `max_workers` at a time, the rest
queued. A worker calls the very functions the CLI calls (`Backtest(...).run()`,
`optimize`, `resume`, `walk_forward`, `download_ohlcv`/`download_funding`): there is no
second way to run them.

A job lives in `$SAPPHIRE_HOME/jobs/<id>/`: `job.json` (what was asked), `status.json`
(queued, running, succeeded, failed or cancelled; progress; the error), `result.json`,
`report.html` and the worker's `worker.log`. So jobs survive a service restart: a worker
keeps running (it is not the service's child in its session), a queued job is started by
the next service, and a running job whose worker died is marked failed. Progress is also
published on the event stream's `jobs` channel (`{"type": "job", "job_id", "kind",
"status", "progress": {"done", "total", "unit"}, "message"}`). Cancelling terminates the
worker's process group (SIGTERM, then SIGKILL).

Requests are checked before a job is queued, as strictly as nodes (registered
strategies, the sample or catalog symbols for data, named objectives and samplers,
bounded trials): a bad value is a ValueError naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sapphire.encoding import to_json
from sapphire.engine.stream import JOBS, EventStream, RedisStream
from sapphire.store import Store

__all__ = [
    "JOB_KINDS",
    "JobConflict",
    "JobInfo",
    "JobManager",
    "JobNotFound",
    "check_job",
]

JOB_KINDS = ("backtest", "optimize", "walkforward", "download")
TERMINAL = ("succeeded", "failed", "cancelled")
#: the run options a job takes (those of `sapphire backtest`, files excluded)
RUN_OPTIONS = frozenset({
    "start", "end", "timeframe", "resample", "cash", "size", "size_mode", "leverage", "fee",
    "maker_fee", "taker_fee", "slippage_bps", "slippage_ticks", "tick_size", "lot_size",
    "fill_at", "intrabar", "stop_loss", "take_profit", "trailing_stop", "engine",
    "risk_profile", "maintenance_margin", "liquidation_fee", "gaps",
})  # fmt: skip
_JOB_ID = re.compile(r"(backtest|optimize|walkforward|download)-\d{8}-\d{6}-[0-9a-f]{6}")
_STUDY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_WINDOW = re.compile(r"\d{1,6}|\d{1,4}(\.\d{1,3})?[smhdw]")
_TIMEFRAME = re.compile(r"\d{1,4}[smhdwM]")
_SYMBOL = re.compile(r"[A-Z0-9]{1,20}/[A-Z0-9]{1,10}(:[A-Z0-9]{1,10})?")
_EXCHANGE = re.compile(r"[a-z0-9]{2,30}")
_LOOPBACK = re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\]):\d{1,5}/?")
_PARAM = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,49}")
_WITHHELD = ("SAPPHIRE_API_SECRET", "SAPPHIRE_API_SECRET_FILE")
MAX_TRIALS = 10_000


class JobNotFound(LookupError):
    """No job with that id (or no result / report for it)."""


class JobConflict(RuntimeError):
    """The job is not in a state that allows this (e.g. cancelling a finished job)."""


@dataclass
class JobInfo:
    """A job's record (see the module docstring)."""

    id: str
    kind: str
    status: str
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    error: str | None = None
    pid: int | None = None
    has_result: bool = False
    has_report: bool = False
    request: dict[str, Any] = field(default_factory=dict)


def _utc(ts_ns: object) -> datetime | None:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC) if isinstance(ts_ns, int) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(to_json(value))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# Checking a request


def _strategy(name: object, params: object) -> dict[str, str]:
    from sapphire.strategy.registry import builtin_strategies, model_strategies

    known = {**builtin_strategies(), **model_strategies()}
    if not isinstance(name, str) or name not in known:
        raise ValueError(
            f"strategy {name!r} is unknown: expected one of {', '.join(sorted(known))} "
            "(jobs run registered strategies only)"
        )
    if not isinstance(params, Mapping):
        raise ValueError(f"params {params!r} are invalid: expected an object")
    text: dict[str, str] = {}
    for key, value in params.items():
        if not _PARAM.fullmatch(str(key)):
            raise ValueError(f"parameter name {key!r} is invalid")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"parameter {key}={value!r} is invalid: expected a number or text")
        text[str(key)] = str(value)
    known[name](**text)  # a bad value raises ValueError naming it
    return text


def _data(value: object) -> str:
    data = "sample" if value is None else value
    if data == "sample":
        return "sample"
    from sapphire.data import Catalog

    symbols = sorted({e.symbol for e in Catalog().entries()})
    if not isinstance(data, str) or data not in symbols:
        raise ValueError(
            f"data={data!r} is invalid: expected 'sample' or a catalog symbol"
            + (f" ({', '.join(symbols[:20])})" if symbols else " (the catalog is empty)")
        )
    return data


def _options(options: object) -> dict[str, Any]:
    from sapphire.engine.config import RunConfig
    from sapphire.risk.profiles import PROFILES

    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"options {options!r} are invalid: expected an object")
    unknown = sorted(set(options) - RUN_OPTIONS)
    if unknown:
        raise ValueError(
            f"option {unknown[0]!r} is not a job option; the options are: "
            f"{', '.join(sorted(RUN_OPTIONS))}"
        )
    out = {k: v for k, v in options.items() if v is not None}
    profile = out.get("risk_profile")
    if profile is not None and profile not in PROFILES:
        raise ValueError(
            f"risk_profile={profile!r} is invalid: expected {', '.join(sorted(PROFILES))}"
        )
    for key in ("start", "end"):
        if key in out:
            _time(key, out[key])
    RunConfig.from_options(**out)  # every value checked, named when bad
    return out


def _time(name: str, value: object) -> None:
    import pandas as pd

    try:
        ok = isinstance(value, str) and len(value) <= 40 and not pd.isna(pd.Timestamp(value))
    except (ValueError, TypeError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: expected a UTC time such as 2024-01-01")


def _int(request: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = request.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}={value!r} is invalid: expected a whole number in [{low}, {high}]")
    return value


def _objectives(value: object) -> list[str]:
    from sapphire.optimize.objectives import resolve_objective

    names = ["sharpe"] if value is None else value
    if not isinstance(names, list) or not names or len(names) > 4:
        raise ValueError(f"objectives={value!r} are invalid: expected 1 to 4 metric names")
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(r"[a-z_]{1,40}(:(min|max))?", name):
            raise ValueError(f"objective {name!r} is invalid: expected a metric name")
        resolve_objective(name)  # an unknown metric raises ValueError naming it
    return list(names)


def _space(value: object) -> dict[str, Any]:
    """`{"fast": {"low": 5, "high": 50, "step": 5, "log": false}}` or `{"mode": {"choices":
    [...]}}` as `optimize`'s `space=` (tuples and lists, as `--space` gives them)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > 30:
        raise ValueError(f"space={value!r} is invalid: expected an object of parameter ranges")
    out: dict[str, Any] = {}
    for name, spec in value.items():
        where = f"space.{name}"
        if not _PARAM.fullmatch(str(name)) or not isinstance(spec, Mapping):
            raise ValueError(f"{where}={spec!r} is invalid: expected {{low, high}} or {{choices}}")
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
                raise ValueError(f"{where}: choices must be a non-empty list, alone")
            out[str(name)] = [str(c) for c in choices]
            continue
        unknown = set(spec) - {"low", "high", "step", "log"}
        if unknown or "low" not in spec or "high" not in spec:
            raise ValueError(f"{where}={dict(spec)!r} is invalid: expected low, high[, step|log]")
        low, high, step = spec["low"], spec["high"], spec.get("step")
        for label, number in (("low", low), ("high", high), ("step", step)):
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, int | float)
            ):
                raise ValueError(f"{where}.{label}={number!r} is invalid: expected a number")
        if spec.get("log"):
            out[str(name)] = (low, high, None, True)
        elif step is not None:
            out[str(name)] = (low, high, step)
        else:
            out[str(name)] = (low, high)
    return out


def _check_space(strategy: str, space: dict[str, Any], fixed: dict[str, str]) -> None:
    """The search space as `optimize` will build it (a ValueError names a parameter the
    strategy does not have, or a range it cannot take)."""
    from sapphire.optimize.space import SearchSpace
    from sapphire.strategy.registry import get_strategy

    SearchSpace(get_strategy(strategy), _tuples(space) or None, fixed)


def _tuples(space: Mapping[str, Any]) -> dict[str, Any]:
    """The space as `optimize` takes it (JSON turned its tuples into lists)."""
    return {
        k: tuple(v) if isinstance(v, list) and len(v) in (2, 3, 4) and not _is_choices(v) else v
        for k, v in space.items()
    }


def _is_choices(value: list[Any]) -> bool:
    return all(isinstance(v, str) for v in value)


def _study_name(value: object) -> str:
    if not isinstance(value, str) or not _STUDY.fullmatch(value):
        raise ValueError(
            f"study={value!r} is invalid: expected 1-100 letters, digits, '.', '_' or '-'"
        )
    return value


def check_job(kind: str, request: Mapping[str, Any]) -> dict[str, Any]:
    """The checked, normalised request of a `kind` job; a ValueError names a bad value."""
    if kind not in JOB_KINDS:
        raise ValueError(f"job kind {kind!r} is unknown: expected {', '.join(JOB_KINDS)}")
    req = dict(request)
    if kind == "download":
        return _check_download(req)
    if kind == "optimize" and req.get("resume") is not None:
        from sapphire.optimize.storage import StudyStorage

        name = _study_name(req["resume"])
        extra = sorted(set(req) - {"resume", "trials"})
        if extra:
            raise ValueError(f"resuming a study takes only trials, not {extra[0]!r}")
        if StudyStorage().find(name) is None:
            raise ValueError(f"study {name!r} does not exist: nothing to resume")
        trials = req.get("trials")
        return {
            "resume": name,
            "trials": None if trials is None else _int(req, "trials", 1, 1, MAX_TRIALS),
        }
    out: dict[str, Any] = {
        "strategy": req.get("strategy"),
        "params": _strategy(req.get("strategy"), req.get("params") or {}),
        "data": _data(req.get("data")),
        "options": _options(req.get("options")),
    }
    if kind == "backtest":
        extra = sorted(set(req) - {"strategy", "params", "data", "options", "report"})
        if extra:
            raise ValueError(f"a backtest takes no {extra[0]!r}")
        out["report"] = bool(req.get("report", True))
        return out
    common = {"strategy", "params", "data", "options", "objectives", "trials", "sampler",
              "seed", "min_trades", "space", "study"}  # fmt: skip
    allowed = common | ({"prune"} if kind == "optimize" else {"train", "test", "step", "anchored"})
    extra = sorted(set(req) - allowed)
    if extra:
        raise ValueError(f"a {kind} job takes no {extra[0]!r}")
    from sapphire.optimize.samplers import SAMPLERS

    sampler = req.get("sampler") or "tpe"
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is invalid: expected {', '.join(SAMPLERS)}")
    space = _space(req.get("space"))
    _check_space(out["strategy"], space, out["params"])
    out.update(
        objectives=_objectives(req.get("objectives")),
        trials=_int(req, "trials", 100 if kind == "optimize" else 50, 1, MAX_TRIALS),
        sampler=sampler,
        seed=None if req.get("seed") is None else _int(req, "seed", 0, 0, 2**31 - 1),
        min_trades=_int(req, "min_trades", 1, 0, 100_000),
        space=space,
        study=None if req.get("study") is None else _study_name(req["study"]),
    )
    if kind == "optimize":
        out["prune"] = bool(req.get("prune", False))
        return out
    for name, default in (("train", "30d"), ("test", "7d"), ("step", None)):
        value = req.get(name, default)
        if value is not None and not (isinstance(value, str) and _WINDOW.fullmatch(value)):
            raise ValueError(
                f"{name}={value!r} is invalid: expected a duration (30d, 12h) or a bar count"
            )
        out[name] = value
    out["anchored"] = bool(req.get("anchored", False))
    return out


def _check_download(req: dict[str, Any]) -> dict[str, Any]:
    extra = sorted(set(req) - {"exchange", "symbol", "timeframe", "start", "end", "funding", "url"})
    if extra:
        raise ValueError(f"a download takes no {extra[0]!r}")
    exchange = req.get("exchange")
    if not isinstance(exchange, str) or not _EXCHANGE.fullmatch(exchange):
        raise ValueError(f"exchange={exchange!r} is invalid: expected a ccxt exchange id")
    import ccxt

    if exchange not in ccxt.exchanges:
        raise ValueError(f"exchange={exchange!r} is not a ccxt exchange")
    symbol = req.get("symbol")
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        raise ValueError(f"symbol={symbol!r} is invalid: expected a market such as BTC/USDT:USDT")
    timeframe = req.get("timeframe") or "1m"
    if not isinstance(timeframe, str) or not _TIMEFRAME.fullmatch(timeframe):
        raise ValueError(f"timeframe={timeframe!r} is invalid: expected e.g. 1m, 1h, 1d")
    _time("start", req.get("start"))
    if req.get("end") is not None:
        _time("end", req["end"])
    url = req.get("url")
    if url is not None and not (isinstance(url, str) and _LOOPBACK.fullmatch(url)):
        raise ValueError(
            f"url={url!r} is invalid: a download reads the exchange, or a local exchange on "
            "this machine (http://127.0.0.1:PORT)"
        )
    return {
        "exchange": exchange, "symbol": symbol, "timeframe": timeframe,
        "start": req["start"], "end": req.get("end"), "funding": bool(req.get("funding")),
        "url": url,
    }  # fmt: skip


# ---------------------------------------------------------------------------------------
# The manager


class JobManager:
    """Queues, runs, follows and cancels research jobs (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        home: Path,
        events: EventStream,
        *,
        max_workers: int = 2,
        python: str = sys.executable,
        monitor_s: float = 0.5,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers={max_workers!r} is invalid: expected >= 1")
        self.store = store
        self.home = Path(home)
        self.events = events
        self.max_workers = max_workers
        self.python = python
        self.dir = self.home / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._monitor_s = monitor_s
        #: reaps workers and starts queued jobs while there are some (None: idle)
        self._monitor: threading.Thread | None = None
        if self._schedule():  # jobs a previous service left queued or running
            self._watch_jobs()

    # ---------------------------------------------------------------- records
    def _job_dir(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise JobNotFound(f"no job {job_id!r}")
        path = self.dir / job_id
        if not (path / "job.json").is_file():
            raise JobNotFound(f"no job {job_id!r}")
        return path

    def _status(self, job_dir: Path) -> dict[str, Any]:
        return _read_json(job_dir / "status.json")

    def _set_status(self, job_dir: Path, **changes: Any) -> dict[str, Any]:
        with self._lock:
            status = {**self._status(job_dir), **changes}
            _write_json(job_dir / "status.json", status)
        return status

    def _info(self, job_dir: Path) -> JobInfo:
        spec = _read_json(job_dir / "job.json")
        status = self._status(job_dir)
        return JobInfo(
            id=job_dir.name, kind=str(spec.get("kind")), status=str(status.get("status")),
            created=_utc(spec.get("created_ns")) or datetime.now(UTC),
            started=_utc(status.get("started_ns")), finished=_utc(status.get("finished_ns")),
            progress=dict(status.get("progress") or {}), message=status.get("message"),
            error=status.get("error"), pid=status.get("pid"),
            has_result=(job_dir / "result.json").is_file(),
            has_report=(job_dir / "report.html").is_file(),
            request=dict(spec.get("request") or {}),
        )  # fmt: skip

    # ---------------------------------------------------------------- the API
    def submit(self, kind: str, request: Mapping[str, Any]) -> JobInfo:
        """Check `request` and queue a `kind` job (started at once when a worker is
        free); a ValueError names a bad value."""
        checked = check_job(kind, request)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        job_id = f"{kind}-{stamp}-{secrets.token_hex(3)}"
        job_dir = self.dir / job_id
        job_dir.mkdir(mode=0o700)
        _write_json(job_dir / "job.json", {
            "id": job_id, "kind": kind, "request": checked, "created_ns": time.time_ns(),
        })  # fmt: skip
        self._set_status(job_dir, status="queued", progress={}, message="queued")
        self._publish(job_id, kind, "queued", {}, "queued")
        self._schedule()
        self._watch_jobs()
        return self._info(job_dir)

    def list_jobs(self) -> list[JobInfo]:
        """Every job, newest first."""
        self._reap()
        out = []
        for path in self.dir.iterdir():
            if _JOB_ID.fullmatch(path.name) and (path / "job.json").is_file():
                out.append(self._info(path))
        out.sort(key=lambda j: (j.created, j.id), reverse=True)
        return out

    def get(self, job_id: str) -> JobInfo:
        self._reap()
        return self._info(self._job_dir(job_id))

    def result(self, job_id: str) -> dict[str, Any]:
        """A finished job's result (`JobConflict` while it has none)."""
        job_dir = self._job_dir(job_id)
        path = job_dir / "result.json"
        if not path.is_file():
            info = self._info(job_dir)
            raise JobConflict(f"job {job_id} has no result: it is {info.status}")
        return _read_json(path)

    def report(self, job_id: str) -> Path:
        """A finished job's HTML report (`JobNotFound` when it has none)."""
        job_dir = self._job_dir(job_id)
        path = job_dir / "report.html"
        if not path.is_file():
            info = self._info(job_dir)
            raise JobNotFound(
                f"job {job_id} has no report"
                + (f": it is {info.status}" if info.status not in TERMINAL else "")
            )
        return path

    def cancel(self, job_id: str, *, timeout: float = 3.0) -> JobInfo:
        """Cancel a queued job, or terminate a running one's worker process group."""
        job_dir = self._job_dir(job_id)
        asked = time.time_ns()
        with self._lock:
            status = self._status(job_dir)
            state = status.get("status")
            if state in TERMINAL:
                raise JobConflict(f"job {job_id} is already {state}")
            if state == "queued":
                self._finish(job_dir, "cancelled", "cancelled before it started")
                return self._info(job_dir)
        pid = status.get("pid")
        if isinstance(pid, int):
            _signal(pid, signal.SIGTERM)
            if not self._wait_gone(job_id, pid, timeout):
                _signal(pid, signal.SIGKILL)
                self._wait_gone(job_id, pid, timeout)
        with self._lock:
            ended = self._status(job_dir)
            # a worker killed while it ran ends as cancelled, even if it wrote "failed" on
            # its way out (the signal interrupted it: that is the cancel, not a failure)
            dying = ended.get("status") == "failed" and int(ended.get("finished_ns") or 0) >= asked
            if ended.get("status") not in TERMINAL or dying:
                self._finish(job_dir, "cancelled", "cancelled: the worker was terminated")
        return self._info(job_dir)

    def close(self) -> None:
        """Stop watching (running workers go on; the next manager adopts them)."""
        self._closed.set()

    # ---------------------------------------------------------------- workers
    def _finish(self, job_dir: Path, state: str, message: str, error: str | None = None) -> None:
        spec = _read_json(job_dir / "job.json")
        status = self._set_status(
            job_dir, status=state, message=message, error=error, finished_ns=time.time_ns()
        )
        self._publish(
            job_dir.name, str(spec.get("kind")), state, status.get("progress") or {}, message
        )

    def _publish(
        self, job_id: str, kind: str, state: str, progress: Mapping[str, Any], message: str
    ) -> None:
        with contextlib.suppress(Exception):  # the stream is down: the status file has it
            self.events.publish(JOBS, {
                "type": "job", "job_id": job_id, "kind": kind, "status": state,
                "progress": dict(progress), "message": message, "ts_ns": time.time_ns(),
            })  # fmt: skip

    def _alive(self, job_id: str, pid: int) -> bool:
        child = self._children.get(job_id)
        if child is not None and child.pid == pid:
            return child.poll() is None
        return _is_worker(pid, job_id)

    def _wait_gone(self, job_id: str, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(job_id, pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _reap(self) -> int:
        """Mark running jobs whose worker died as failed; the number still running."""
        running = 0
        for path in self.dir.iterdir():
            if not _JOB_ID.fullmatch(path.name):
                continue
            with self._lock:
                status = self._status(path)
                if status.get("status") != "running":
                    continue
                pid = status.get("pid")
                if isinstance(pid, int) and self._alive(path.name, pid):
                    running += 1
                    continue
                if self._status(path).get("status") == "running":  # it may just have ended
                    child = self._children.get(path.name)
                    code = child.returncode if child is not None else None
                    self._finish(
                        path, "failed", "the worker ended without a result",
                        f"the worker process ended (exit code {code}) without a result; see "
                        "worker.log",
                    )  # fmt: skip
        return running

    def _schedule(self) -> int:
        """Start queued jobs, oldest first, while fewer than `max_workers` run; returns
        how many jobs are running or queued."""
        with self._lock:
            running = self._reap()
            queued = []
            for path in self.dir.iterdir():
                if _JOB_ID.fullmatch(path.name) and self._status(path).get("status") == "queued":
                    queued.append((_read_json(path / "job.json").get("created_ns") or 0, path))
            waiting = len(queued)
            for _created, path in sorted(queued):
                if running >= self.max_workers:
                    break
                if self._launch(path):
                    running += 1
                    waiting -= 1
            return running + waiting

    def _launch(self, job_dir: Path) -> bool:
        try:  # one service claims a job (two sharing a home never start it twice)
            fd = os.open(job_dir / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return False
        os.close(fd)
        env = {k: v for k, v in os.environ.items() if k not in _WITHHELD}
        env["COLUMNS"] = "1000"
        env["SAPPHIRE_HOME"] = str(self.home)
        env["SAPPHIRE_DATABASE_URL"] = self.store.url
        env.pop("SAPPHIRE_REDIS_URL", None)
        if isinstance(self.events, RedisStream):
            env["SAPPHIRE_REDIS_URL"] = self.events.url
        with open(job_dir / "worker.log", "ab") as log:
            proc = subprocess.Popen(
                [self.python, "-m", "sapphire.api.job_worker", str(job_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=job_dir, start_new_session=True, close_fds=True,
            )  # fmt: skip
        self._children[job_dir.name] = proc
        self._set_status(
            job_dir, status="running", pid=proc.pid, started_ns=time.time_ns(),
            message="starting",
        )  # fmt: skip
        return True

    def _watch_jobs(self) -> None:
        """Make sure the watcher runs (it stops when no job is running or queued)."""
        with self._lock:
            if self._closed.is_set() or (self._monitor is not None and self._monitor.is_alive()):
                return
            self._monitor = threading.Thread(target=self._watch, name="sapphire-jobs", daemon=True)
            self._monitor.start()

    def _watch(self) -> None:
        while not self._closed.wait(self._monitor_s):
            with self._lock:  # `submit` starts a watcher under the same lock
                try:
                    active = self._schedule()
                except Exception:  # never let the watcher die on a bad file
                    active = 1
                if active == 0:
                    self._monitor = None
                    return


def _is_worker(pid: int, job_id: str) -> bool:
    """True when `pid` is alive (not a zombie) and is the worker of `job_id`."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        return job_id.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
