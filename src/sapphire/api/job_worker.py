"""A research job's worker process (`python -m sapphire.api.job_worker <job dir>`): it
reads `job.json`, calls the function the CLI calls for that kind of job, and writes its
progress (`status.json` and the event stream's `jobs` channel), `result.json` and
`report.html` (see `sapphire.api.jobs`, which starts and follows the workers)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sapphire.api.jobs import _read_json, _tuples, _write_json
from sapphire.engine.stream import JOBS, EventStream, open_stream

__all__ = ["run_worker"]


class _Progress:
    """A worker's progress: to `status.json` and the `jobs` channel, at most every
    `every` seconds (and always for a new stage)."""

    def __init__(self, job_dir: Path, kind: str, events: EventStream, every: float = 0.5):
        self.job_dir = job_dir
        self.kind = kind
        self.events = events
        self.every = every
        self._at = 0.0
        self._lock = threading.Lock()

    def __call__(
        self, message: str, done: float | None = None, total: float | None = None,
        unit: str | None = None, *, force: bool = True,
    ) -> None:  # fmt: skip
        now = time.monotonic()
        if not force and now - self._at < self.every:
            return
        self._at = now
        progress = {"done": done, "total": total, "unit": unit}
        with self._lock:
            path = self.job_dir / "status.json"
            _write_json(path, {**_read_json(path), "progress": progress, "message": message})
        with contextlib.suppress(Exception):
            self.events.publish(JOBS, {
                "type": "job", "job_id": self.job_dir.name, "kind": self.kind,
                "status": "running", "progress": progress, "message": message,
                "ts_ns": time.time_ns(),
            })  # fmt: skip


def _trial_poller(
    progress: _Progress, name: str, total: int | None, folds: bool
) -> Callable[[], None]:
    """Follow a study's stored trials (a walk-forward's fold studies) every second; the
    returned function stops it."""
    from sapphire.optimize.study import list_studies

    stop = threading.Event()

    def run() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(Exception):
                mine = [
                    s for s in list_studies()
                    if s["name"] == name or (folds and s["name"].startswith(f"{name}-fold"))
                ]  # fmt: skip
                done = sum(int(s["n_trials"]) for s in mine)
                what = f"{len(mine)} fold studies, " if folds else ""
                progress(f"{what}{done} trials done", done, total, "trials")

    thread = threading.Thread(target=run, name="sapphire-job-progress", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(2.0)

    return halt


def _backtest(request: dict[str, Any], job_dir: Path, progress: _Progress) -> dict[str, Any]:
    from sapphire.backtest import Backtest
    from sapphire.engine.config import RunConfig

    progress("loading the data and the strategy", 0, 3, "stages")
    config = RunConfig.from_options(**request["options"])
    bt = Backtest(request["data"], request["strategy"], config=config, **request["params"])
    progress("backtesting", 1, 3, "stages")
    result = bt.run()
    summary: dict[str, Any] = result.summary()
    if request.get("report", True):
        progress("writing the report", 2, 3, "stages")
        result.plot(job_dir / "report.html")
    progress("done", 3, 3, "stages")
    return summary


def _study_options(request: dict[str, Any]) -> dict[str, Any]:
    from sapphire.cli.options import changed_options
    from sapphire.engine.config import RunConfig

    options = changed_options(RunConfig.from_options(**request["options"]))
    clash = sorted(set(request["params"]) & set(options))
    if clash:
        raise ValueError(f"parameter {clash[0]!r} clashes with the run option {clash[0]!r}")
    return {**options, **request["params"]}


def _optimize(request: dict[str, Any], job_dir: Path, progress: _Progress) -> dict[str, Any]:
    from sapphire.optimize.report import study_report
    from sapphire.optimize.study import optimize, resume

    name = request.get("resume") or request.get("study") or f"job-{job_dir.name}"
    total = request.get("trials")
    halt = _trial_poller(progress, name, total, folds=False)
    try:
        if request.get("resume"):
            progress(f"resuming study {name}", None, total, "trials")
            result = resume(name, trials=total, jobs=1, progress=False)
        else:
            progress(f"study {name}", 0, total, "trials")
            result = optimize(
                request["data"], request["strategy"], objectives=request["objectives"],
                trials=request["trials"], sampler=request["sampler"], jobs=1, study=name,
                seed=request["seed"], min_trades=request["min_trades"],
                space=_tuples(request["space"]), prune=request["prune"], progress=False,
                **_study_options(request),
            )  # fmt: skip
    finally:
        halt()
    progress("writing the report", result.n_trials, result.n_trials, "trials")
    study_report(result, job_dir / "report.html")
    out: dict[str, Any] = result.to_json()
    return out


def _walkforward(request: dict[str, Any], job_dir: Path, progress: _Progress) -> dict[str, Any]:
    from sapphire.optimize.walkforward import walk_forward

    name = request.get("study") or f"job-{job_dir.name}"

    def window(value: str) -> str | int:
        return int(value) if value.isdigit() else value

    halt = _trial_poller(progress, name, None, folds=True)
    try:
        progress(f"walk-forward {name}", 0, None, "trials")
        result = walk_forward(
            request["data"], request["strategy"], train=window(request["train"]),
            test=window(request["test"]),
            step=None if request["step"] is None else window(request["step"]),
            anchored=request["anchored"], objectives=tuple(request["objectives"]),
            trials=request["trials"], sampler=request["sampler"], seed=request["seed"],
            jobs=1, min_trades=request["min_trades"], space=_tuples(request["space"]) or None,
            progress=False, study=name, **_study_options(request),
        )  # fmt: skip
    finally:
        halt()
    progress("writing the report", result.n_trials, result.n_trials, "trials")
    result.plot(job_dir / "report.html")
    out: dict[str, Any] = result.to_json()
    return out


def _download(request: dict[str, Any], job_dir: Path, progress: _Progress) -> dict[str, Any]:
    from sapphire.data.download import download_funding, download_ohlcv, open_exchange

    exchange, symbol = request["exchange"], request["symbol"]
    client = open_exchange(exchange, request.get("url"))

    def show(what: str) -> Callable[[Any], None]:
        def call(p: Any) -> None:
            progress(
                f"{what}: {p.rows:,} rows, {p.pages} pages", p.done_ms, p.total_ms, "ms",
                force=False,
            )  # fmt: skip

        return call

    progress(f"downloading {symbol} {request['timeframe']} bars", 0, None, "ms")
    bars = download_ohlcv(
        exchange, symbol, request["timeframe"], request["start"], request["end"],
        exchange=client, progress=show("bars"),
    )  # fmt: skip
    out: dict[str, Any] = {
        "exchange": bars.exchange, "symbol": bars.symbol, "timeframe": bars.timeframe,
        "start": bars.start, "end": bars.end, "pages": bars.pages, "added": bars.added,
        "rows": bars.rows, "resumed_from": bars.resumed_from,
        "fetched": [[a, b] for a, b in bars.fetched],
        "gaps": None if bars.report is None else getattr(bars.report, "gap_count", None),
    }  # fmt: skip
    if request.get("funding"):
        progress(f"downloading {symbol} funding rates", 0, None, "ms")
        rates = download_funding(
            exchange, symbol, request["start"], request["end"], exchange=client,
            progress=show("funding"),
        )  # fmt: skip
        out["funding"] = {
            "added": rates.added, "rows": rates.rows, "first": rates.first, "last": rates.last,
        }  # fmt: skip
    progress("done", 1, 1, "downloads")
    return out


_RUNNERS: dict[str, Callable[[dict[str, Any], Path, _Progress], dict[str, Any]]] = {
    "backtest": _backtest,
    "optimize": _optimize,
    "walkforward": _walkforward,
    "download": _download,
}


def run_worker(job_dir: Path) -> int:
    """Run the job in `job_dir` in this process (the worker): its status, progress,
    result and report files; returns the exit code."""
    job_dir = Path(job_dir)
    spec = _read_json(job_dir / "job.json")
    kind = str(spec.get("kind"))
    events = open_stream(os.environ.get("SAPPHIRE_REDIS_URL"), job_dir.parent.parent)
    progress = _Progress(job_dir, kind, events)
    status_path = job_dir / "status.json"
    _write_json(status_path, {**_read_json(status_path), "status": "running", "pid": os.getpid()})
    try:
        result = _RUNNERS[kind](dict(spec.get("request") or {}), job_dir, progress)
    except Exception as exc:
        from sapphire.data import DataError

        user = isinstance(exc, ValueError | TypeError | FileNotFoundError | DataError)
        error = str(exc) if user else f"{type(exc).__name__}: {exc}"
        final: dict[str, str | None] = {"status": "failed", "message": "failed", "error": error}
        code = 1
    else:
        _write_json(job_dir / "result.json", result)
        final = {"status": "succeeded", "message": "done", "error": None}
        code = 0
    status = {**_read_json(status_path), **final, "finished_ns": time.time_ns()}
    _write_json(status_path, status)
    with contextlib.suppress(Exception):
        events.publish(JOBS, {
            "type": "job", "job_id": job_dir.name, "kind": kind, "status": final["status"],
            "progress": status.get("progress") or {}, "message": final["message"],
            "error": final["error"], "ts_ns": time.time_ns(),
        })  # fmt: skip
    events.close()
    return code


if __name__ == "__main__":  # the worker process
    sys.exit(run_worker(Path(sys.argv[1])))
