"""The /api/v1 jobs routes: research as background jobs (`sapphire.api.jobs.JobManager`).

POST /jobs/backtest, /jobs/optimize (a new study, or `resume` a stored one),
/jobs/walkforward and /jobs/download queue a job (202) and answer with its record; GET
/jobs lists them, GET /jobs/{id} is one with its progress, /result its result once it
succeeded, /report its HTML report; DELETE /jobs/{id} cancels it (its worker is
terminated). Reading needs `read`, starting and cancelling `trade`. Progress is also on
the WebSocket channel `jobs`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.convertors import Convertor, register_url_convertor

from sapphire.api.jobs import JobConflict, JobInfo, JobManager, JobNotFound
from sapphire.api.schemas import ErrorDetail
from sapphire.api.security.deps import require

router = APIRouter(tags=["jobs"])


class _JobIdConvertor(Convertor[str]):
    """A path segment that can be a job id: any but the names of the POST routes, so that
    a GET on /jobs/backtest is a 405, never a lookup of a job named 'backtest' (the id's
    own pattern is checked after the credentials, as every parameter)."""

    regex = "(?!(?:backtest|optimize|walkforward|download)(?:/|$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("sapphire_job_id", _JobIdConvertor())

T = TypeVar("T")
_READ = [Depends(require("read"))]
_TRADE = [Depends(require("trade"))]
_TS = "2022-01-03T10:05:00Z"
_STRATEGY = r"^[a-z][a-z0-9_]{0,49}$"
_DATA = r"^[A-Za-z0-9/:._-]{1,100}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
JobId = Annotated[
    str,
    Path(
        pattern=r"^(backtest|optimize|walkforward|download)-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$",
        description="The job's id.",
        examples=["backtest-20240101-120000-a1b2c3"],
    ),
]
_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No job with that id."},
}


def _jobs(request: Request) -> JobManager:
    manager: JobManager = request.app.state.service.jobs
    return manager


def _call(action: Callable[[], T]) -> T:
    try:
        return action()
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except JobConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, detail=str(exc)) from None


# -- requests ------------------------------------------------------------------------------


class RunOptionsIn(BaseModel):
    """The run settings of a backtest (those of `sapphire backtest`; files excluded)."""

    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [{"start": "2022-01-03", "end": "2022-01-10",
                                         "fee": 0.001, "stop_loss": 0.02}]},
    )  # fmt: skip

    start: str | None = Field(default=None, max_length=40, description="First bar (UTC).")
    end: str | None = Field(default=None, max_length=40, description="End (UTC), exclusive.")
    timeframe: str | None = Field(
        default=None, pattern=r"^[0-9]{1,4}[smhdwM]$", description="Catalog timeframe."
    )
    resample: str | None = Field(
        default=None, pattern=r"^[0-9]{1,4}[smhdwM]$", description="Resample the bars first."
    )
    cash: float | None = Field(default=None, gt=0, le=1e12, description="Starting cash.")
    size: float | None = Field(default=None, gt=0, le=1e12, description="Position size.")
    size_mode: Literal["equity", "fixed", "notional", "risk"] | None = Field(
        default=None, description="How size is read."
    )
    leverage: float | None = Field(default=None, ge=0, le=200, description="Margin limit.")
    fee: float | None = Field(default=None, ge=-0.01, lt=0.1, description="Maker and taker fee.")
    maker_fee: float | None = Field(default=None, ge=-0.01, lt=0.1, description="Maker fee.")
    taker_fee: float | None = Field(default=None, ge=-0.01, lt=0.1, description="Taker fee.")
    slippage_bps: float | None = Field(default=None, ge=0, lt=10_000, description="Slippage.")
    slippage_ticks: int | None = Field(default=None, ge=0, le=1000, description="Slippage.")
    tick_size: float | None = Field(default=None, ge=0, le=1e9, description="Price tick.")
    lot_size: float | None = Field(default=None, ge=0, le=1e9, description="Quantity step.")
    fill_at: Literal["open", "close"] | None = Field(default=None, description="Fill price.")
    intrabar: Literal["path", "worst"] | None = Field(default=None, description="Path.")
    stop_loss: float | None = Field(default=None, gt=0, lt=1, description="Stop-loss.")
    take_profit: float | None = Field(default=None, gt=0, lt=1, description="Take-profit.")
    trailing_stop: float | None = Field(default=None, gt=0, lt=1, description="Trailing stop.")
    engine: Literal["vector", "event"] | None = Field(default=None, description="The engine.")
    risk_profile: Literal["conservative", "aggressive"] | None = Field(
        default=None, description="Event engine: a risk profile."
    )
    maintenance_margin: float | None = Field(
        default=None, ge=0, lt=1, description="Event engine: liquidation rate."
    )
    liquidation_fee: float | None = Field(
        default=None, ge=0, lt=1, description="Event engine: liquidation fee."
    )
    gaps: Literal["keep", "ffill", "fail"] | None = Field(default=None, description="Gaps.")


Params = Annotated[
    dict[str, str | int | float],
    Field(max_length=50, description="Strategy parameters (fixed)."),
]


class BacktestJobIn(BaseModel):
    """A backtest to run."""

    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [{
            "strategy": "sma_cross", "data": "sample", "params": {"fast": 10, "slow": 30},
            "options": {"start": "2022-01-03", "end": "2022-01-10", "fee": 0.001},
        }]},
    )  # fmt: skip

    strategy: str = Field(pattern=_STRATEGY, description="A registered strategy.")
    data: str = Field(default="sample", pattern=_DATA, description="'sample' or a symbol.")
    params: Params = Field(default_factory=dict)
    options: RunOptionsIn = Field(default_factory=lambda: RunOptionsIn())
    report: bool = Field(default=True, description="Also write the HTML report.")


class RangeIn(BaseModel):
    """A parameter's search range: low..high (step, or log), or choices."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"low": 5, "high": 50, "step": 5}]},
    )

    low: float | None = Field(default=None, description="Lowest value.")
    high: float | None = Field(default=None, description="Highest value.")
    step: float | None = Field(default=None, gt=0, description="Grid step.")
    log: bool = Field(default=False, description="Sample on a log scale.")
    choices: list[str | int | float] | None = Field(
        default=None, min_length=1, max_length=100, description="The values to choose from."
    )

    @model_validator(mode="after")
    def _range_or_choices(self) -> RangeIn:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError("give choices, or low and high, not both")
        elif self.low is None or self.high is None:
            raise ValueError("give low and high (or choices)")
        elif self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self

    def spec(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": self.choices}
        out: dict[str, Any] = {"low": _number(self.low), "high": _number(self.high)}
        if self.step is not None:
            out["step"] = _number(self.step)
        if self.log:
            out["log"] = True
        return out


def _number(value: float | None) -> float | int | None:
    return int(value) if value is not None and float(value).is_integer() else value


class _StudyFields(BaseModel):
    """What optimisation and walk-forward jobs share."""

    model_config = ConfigDict(extra="forbid", strict=True)

    data: str = Field(default="sample", pattern=_DATA, description="'sample' or a symbol.")
    params: Params = Field(default_factory=dict)
    options: RunOptionsIn = Field(default_factory=lambda: RunOptionsIn())
    objectives: list[Annotated[str, Field(pattern=r"^[a-z_]{1,40}(:(min|max))?$")]] = Field(
        default_factory=lambda: ["sharpe"], min_length=1, max_length=4,
        description="Metrics to optimise (several: a Pareto front).",
    )  # fmt: skip
    trials: int | None = Field(default=None, ge=1, le=10_000, description="Trials (per fold).")
    sampler: Literal["tpe", "cmaes", "random", "grid", "nsga2", "nsga3"] = Field(
        default="tpe", description="The Optuna sampler."
    )
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description="A seed.")
    min_trades: int = Field(default=1, ge=0, le=100_000, description="Fewer: infeasible.")
    space: dict[str, RangeIn] = Field(
        default_factory=dict, max_length=30, description="Search ranges by parameter."
    )
    study: str | None = Field(default=None, pattern=_NAME, description="Name the study.")

    def request(self) -> dict[str, Any]:
        out = self.model_dump(exclude={"options", "space"}, exclude_none=True)
        out["options"] = self.options.model_dump(exclude_none=True)
        out["space"] = {k: v.spec() for k, v in self.space.items()}
        return out


class OptimizeJobIn(_StudyFields):
    """An optimisation study to run (`strategy`...), or a stored one to resume (`resume`
    and, optionally, `trials`: the new total)."""

    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [
            {"strategy": "sma_cross", "trials": 20, "objectives": ["sharpe"],
             "space": {"fast": {"low": 5, "high": 50}},
             "options": {"start": "2022-01-03", "end": "2022-01-06"}},
            {"resume": "sma_cross-20240101T120000Z-ab12", "trials": 200},
        ]},
    )  # fmt: skip

    strategy: str | None = Field(
        default=None, pattern=_STRATEGY, description="A registered strategy (a new study)."
    )
    resume: str | None = Field(default=None, pattern=_NAME, description="A study to resume.")
    prune: bool = Field(default=False, description="Stop hopeless trials early.")

    @model_validator(mode="after")
    def _new_or_resumed(self) -> OptimizeJobIn:
        if self.resume is not None:
            extra = sorted(self.model_fields_set - {"resume", "trials"})
            if extra:
                raise ValueError(f"resuming a study takes only trials, not {extra[0]!r}")
        elif self.strategy is None:
            raise ValueError("give a strategy (a new study) or resume (a stored one)")
        return self

    def request(self) -> dict[str, Any]:
        if self.resume is not None:
            return {"resume": self.resume, "trials": self.trials}
        return {**super().request(), "prune": self.prune}


class WalkForwardJobIn(_StudyFields):
    """A walk-forward analysis to run."""

    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [{
            "strategy": "sma_cross", "train": "2d", "test": "1d", "trials": 10,
            "options": {"start": "2022-01-03", "end": "2022-01-10"},
            "space": {"fast": {"low": 5, "high": 30}},
        }]},
    )  # fmt: skip

    strategy: str = Field(pattern=_STRATEGY, description="A registered strategy.")
    train: str = Field(default="30d", pattern=r"^([0-9]{1,6}|[0-9]{1,4}[smhdw])$")
    test: str = Field(default="7d", pattern=r"^([0-9]{1,6}|[0-9]{1,4}[smhdw])$")
    step: str | None = Field(default=None, pattern=r"^([0-9]{1,6}|[0-9]{1,4}[smhdw])$")
    anchored: bool = Field(default=False, description="Every train window starts at bar 0.")


class DownloadJobIn(BaseModel):
    """Bars (and funding rates) to download into the catalog."""

    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [{
            "exchange": "bybit", "symbol": "BTC/USDT:USDT", "timeframe": "1h",
            "start": "2024-01-01", "end": "2024-02-01", "funding": True,
        }]},
    )  # fmt: skip

    exchange: str = Field(pattern=r"^[a-z0-9]{2,30}$", description="A ccxt exchange id.")
    symbol: str = Field(
        pattern=r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,10}(:[A-Z0-9]{1,10})?$", description="The market."
    )
    timeframe: str = Field(default="1m", pattern=r"^[0-9]{1,4}[smhdwM]$", description="Bars.")
    start: str = Field(max_length=40, description="First bar time (UTC).")
    end: str | None = Field(default=None, max_length=40, description="End (UTC); default now.")
    funding: bool = Field(default=False, description="Funding rates too.")
    url: str | None = Field(
        default=None, max_length=60, description="A local exchange on this machine instead."
    )


# -- answers -------------------------------------------------------------------------------


class JobOut(BaseModel):
    """A job's record."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "id": "optimize-20240101-120000-a1b2c3", "kind": "optimize", "status": "running",
            "created": _TS, "started": _TS, "finished": None,
            "progress": {"done": 40, "total": 100, "unit": "trials"},
            "message": "40 trials done", "error": None, "has_result": False,
            "has_report": False, "request": {"strategy": "sma_cross", "trials": 100},
        }]},
    )  # fmt: skip

    id: str = Field(description="The job's id.")
    kind: str = Field(description="backtest, optimize, walkforward or download.")
    status: str = Field(description="queued, running, succeeded, failed or cancelled.")
    created: datetime = Field(description="When it was asked for (UTC).")
    started: datetime | None = Field(description="When its worker started (UTC).")
    finished: datetime | None = Field(description="When it ended (UTC).")
    progress: dict[str, Any] = Field(description="done, total and unit (trials, stages, ms).")
    message: str | None = Field(description="What it is doing.")
    error: str | None = Field(description="Why it failed.")
    has_result: bool = Field(description="GET /result has its result.")
    has_report: bool = Field(description="GET /report has its HTML report.")
    request: dict[str, Any] = Field(description="What was asked (checked and completed).")


class JobListOut(BaseModel):
    """Jobs, newest first."""

    jobs: list[JobOut] = Field(description="Newest first.")


class JobResultOut(BaseModel):
    """A finished job's result: a backtest's metrics; a study's best trials, Pareto front,
    DSR and PBO; a walk-forward's folds and stitched metrics; a download's summary."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{
            "id": "backtest-20240101-120000-a1b2c3", "kind": "backtest",
            "result": {"strategy": "sma_cross", "metrics": {"sharpe": 1.2}},
        }]},
    )  # fmt: skip

    id: str = Field(description="The job's id.")
    kind: str = Field(description="Its kind.")
    result: dict[str, Any] = Field(description="The result (NaN as null).")


def _out(info: JobInfo) -> JobOut:
    fields = {k: v for k, v in info.__dict__.items() if k != "pid"}
    return JobOut(**fields)


def _submit(request: Request, kind: str, body: dict[str, Any]) -> JobOut:
    return _out(_call(lambda: _jobs(request).submit(kind, body)))


_SUBMITTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Queued (started at once when a worker is free)."}
}


@router.post(
    "/jobs/backtest", status_code=202, dependencies=_TRADE, summary="Run a backtest",
    responses=_SUBMITTED,
)  # fmt: skip
def backtest_job(request: Request, body: Annotated[BacktestJobIn, Body()]) -> JobOut:
    """Queue a backtest: its metrics at /result, its HTML report at /report."""
    req = body.model_dump(exclude={"options"})
    req["options"] = body.options.model_dump(exclude_none=True)
    return _submit(request, "backtest", req)


@router.post(
    "/jobs/optimize", status_code=202, dependencies=_TRADE, summary="Run or resume a study",
    responses=_SUBMITTED,
)  # fmt: skip
def optimize_job(request: Request, body: Annotated[OptimizeJobIn, Body()]) -> JobOut:
    """Queue an optimisation study (trials, Pareto front, DSR/PBO, report), or the
    resumption of a stored study up to `trials`."""
    return _submit(request, "optimize", body.request())


@router.post(
    "/jobs/walkforward", status_code=202, dependencies=_TRADE, summary="Run a walk-forward",
    responses=_SUBMITTED,
)  # fmt: skip
def walkforward_job(request: Request, body: Annotated[WalkForwardJobIn, Body()]) -> JobOut:
    """Queue a walk-forward analysis (its folds' studies, stitched out-of-sample metrics
    and report)."""
    return _submit(request, "walkforward", body.request())


@router.post(
    "/jobs/download", status_code=202, dependencies=_TRADE, summary="Download market data",
    responses=_SUBMITTED,
)  # fmt: skip
def download_job(request: Request, body: Annotated[DownloadJobIn, Body()]) -> JobOut:
    """Queue a download of bars (and funding rates) into the catalog; resumes where an
    earlier download stopped."""
    return _submit(request, "download", body.model_dump())


@router.get("/jobs", dependencies=_READ, summary="List jobs")
def list_jobs(request: Request) -> JobListOut:
    """Every job, newest first."""
    return JobListOut(jobs=[_out(j) for j in _call(lambda: _jobs(request).list_jobs())])


@router.get(
    "/jobs/{job_id:sapphire_job_id}", dependencies=_READ, responses=_ANSWERS, summary="A job"
)
def get_job(request: Request, job_id: JobId) -> JobOut:
    """A job's status and progress."""
    return _out(_call(lambda: _jobs(request).get(job_id)))


@router.get(
    "/jobs/{job_id:sapphire_job_id}/result",
    dependencies=_READ,
    responses={**_ANSWERS, 409: {"model": ErrorDetail, "description": "No result (yet)."}},
    summary="A job's result",
)
def job_result(request: Request, job_id: JobId) -> JobResultOut:
    """The result of a job that succeeded."""
    manager = _jobs(request)
    info = _call(lambda: manager.get(job_id))
    return JobResultOut(id=info.id, kind=info.kind, result=_call(lambda: manager.result(job_id)))


@router.get(
    "/jobs/{job_id:sapphire_job_id}/report",
    dependencies=_READ,
    response_class=FileResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "The HTML report."},
        **_ANSWERS,
    },
    summary="A job's HTML report",
)
def job_report(request: Request, job_id: JobId) -> FileResponse:
    """The HTML report of a backtest, study or walk-forward job (sandboxed: its scripts
    run without access to this origin)."""
    path = _call(lambda: _jobs(request).report(job_id))
    return FileResponse(
        path, media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": "sandbox allow-scripts allow-popups",
                 "Content-Disposition": f'inline; filename="{job_id}.html"'},
    )  # fmt: skip


@router.delete(
    "/jobs/{job_id:sapphire_job_id}",
    dependencies=_TRADE,
    responses={**_ANSWERS, 409: {"model": ErrorDetail, "description": "Already finished."}},
    summary="Cancel a job",
)
def cancel_job(request: Request, job_id: JobId) -> JobOut:
    """Cancel a queued job, or terminate a running one's worker."""
    return _out(_call(lambda: _jobs(request).cancel(job_id)))
