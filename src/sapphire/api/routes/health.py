"""Health (liveness), readiness and version.

`/health` and `/ready` need no credentials (load balancers and orchestrators call them)
and say nothing about the service beyond whether it works; `/version` needs `read`
(what runs is worth knowing to an attacker, not to an anonymous caller).
"""

from __future__ import annotations

import logging
import platform
from functools import cache
from typing import Annotated, Literal

from alembic.runtime.migration import MigrationContext
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from sapphire import __version__
from sapphire.api.security.deps import Principal, require
from sapphire.api.service import Service
from sapphire.engine.stream import JOBS
from sapphire.store import head_revision
from sapphire.store.models import VERSION_TABLE

__all__ = ["API_VERSION", "Check", "Health", "Readiness", "VersionInfo", "router"]

log = logging.getLogger(__name__)

API_VERSION = "v1"

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The service answers."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = Field(description="Always 'ok' when the service answers.")


class Check(BaseModel):
    """One part the service needs, and whether it works."""

    ok: bool = Field(description="True if this part works.")
    detail: str = Field(description="What was found ('ok', or what is wrong).")


class Readiness(BaseModel):
    """Whether the service can serve requests: every part it needs works."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ready": False,
                    "detail": "not ready: database",
                    "checks": {
                        "database": {"ok": False, "detail": "at schema revision 0003, needs 0005"},
                        "events": {"ok": True, "detail": "ok"},
                    },
                }
            ]
        }
    )

    ready: bool = Field(description="True if every check passed.")
    detail: str = Field(description="'ready', or 'not ready: ' and the failing parts.")
    checks: dict[str, Check] = Field(description="Each part by name.")


class VersionInfo(BaseModel):
    """What is running."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "sapphire",
                    "version": "0.1.0",
                    "api": "v1",
                    "schema_revision": "0005",
                    "python": "3.11.9",
                }
            ]
        }
    )

    name: Literal["sapphire"] = Field(description="The product.")
    version: str = Field(description="Sapphire's version.")
    api: str = Field(description="The API's version (the path prefix).")
    schema_revision: str = Field(description="The database schema revision this version needs.")
    python: str = Field(description="The Python version the service runs on.")


@cache
def _head() -> str:
    return head_revision()


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _database(service: Service) -> Check:
    try:
        with service.store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            at = context.get_current_revision()
    except SQLAlchemyError as exc:
        log.error("readiness: the database is unreachable: %s", exc)
        return Check(ok=False, detail="unreachable")
    if at != _head():
        return Check(ok=False, detail=f"at schema revision {at}, needs {_head()}")
    return Check(ok=True, detail="ok")


def _events(service: Service) -> Check:
    try:
        service.events.head(JOBS)
    except Exception as exc:  # any failure of the stream's backend means "not ready"
        log.error("readiness: the event stream (%s) failed: %s", service.events.describe(), exc)
        return Check(ok=False, detail="unreachable")
    return Check(ok=True, detail="ok")


async def _rate_limits(service: Service) -> Check:
    if await service.limiter.reachable():
        return Check(ok=True, detail=f"ok ({service.limiter.where})")
    log.error("readiness: the rate limits' storage (%s) is unreachable", service.limiter.where)
    return Check(ok=False, detail=f"{service.limiter.where} unreachable")


@router.get("/health", summary="Liveness: the service answers", response_model=Health)
def health() -> Health:
    """200 while the process serves requests; needs no credentials."""
    return Health(status="ok")


@router.get(
    "/ready",
    summary="Readiness: the database and the event stream work",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A part is not ready (named)."}},
)
async def ready(request: Request) -> Readiness | JSONResponse:
    """200 when the database is reachable and at the newest schema revision, the event
    stream answers and the rate limits' storage answers; else 503 naming the parts that
    do not. Needs no credentials."""
    service = _service(request)
    checks = {
        "database": await run_in_threadpool(_database, service),
        "events": await run_in_threadpool(_events, service),
        "rate_limits": await _rate_limits(service),
    }
    failing = [name for name, check in checks.items() if not check.ok]
    report = Readiness(
        ready=not failing,
        detail="not ready: " + ", ".join(failing) if failing else "ready",
        checks=checks,
    )
    if failing:
        return JSONResponse(report.model_dump(), status_code=503)
    return report


@router.get(
    "/version",
    summary="The running version",
    response_model=VersionInfo,
)
def version(principal: Annotated[Principal, Depends(require("read"))]) -> VersionInfo:
    """Sapphire's version, the API's, and the schema revision; needs `read`."""
    return VersionInfo(
        name="sapphire",
        version=__version__,
        api=API_VERSION,
        schema_revision=_head(),
        python=platform.python_version(),
    )
