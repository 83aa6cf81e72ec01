"""The /api/v1 model registry routes: the models, their versions with metrics and lineage,
drift of the runs trading them (scope `read`), and promote / rollback of an alias (scope
`admin`: an alias decides which version a live `ml` strategy trades).

Everything goes through `sapphire.ml.registry.ModelRegistry` (the registry `sapphire ml
models` uses, on the service's database and `$SAPPHIRE_HOME/models`) and the drift files
`sapphire.ml.live.read_drift` reads for `sapphire ml drift`.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from sapphire.api.queries import run_dir, unprocessable, utc
from sapphire.api.schemas import ErrorDetail
from sapphire.api.security.deps import require
from sapphire.encoding import jsonable
from sapphire.ml.registry import (
    ALIASES,
    ModelRegistry,
    ModelVersion,
    check_name,
)
from sapphire.store import RunInfo, Store

router = APIRouter(tags=["models"])

_NOT_FOUND = {"model": ErrorDetail, "description": "No such model or version."}
_BAD = {"model": ErrorDetail, "description": "A malformed name or version (named)."}
_ANSWERS: dict[int | str, dict[str, Any]] = {404: _NOT_FOUND, 422: _BAD}
_READ = [Depends(require("read"))]
_ADMIN = [Depends(require("admin"))]
_LOCK = threading.Lock()
Alias = Literal["candidate", "challenger", "champion"]
assert set(ALIASES) == {"candidate", "challenger", "champion"}  # Alias follows the registry

NamePath = Annotated[
    str,
    Path(
        description="Model name: 1..200 of A-Z a-z 0-9 _ . -",
        json_schema_extra={"pattern": r"^[A-Za-z0-9_.-]*[A-Za-z0-9_-][A-Za-z0-9_.-]*$"},
        max_length=200,
    ),
]
_VERSION = re.compile(r"v?0*[1-9][0-9]{0,8}|candidate|challenger|champion")
VersionPath = Annotated[
    str,
    Path(
        description="A version (3 or v3) or an alias (candidate, challenger, champion).",
        json_schema_extra={"pattern": f"^({_VERSION.pattern})$"},
    ),
]


def _registry(request: Request) -> ModelRegistry:
    """The service's registry (made on first use, kept on the app)."""
    state = request.app.state
    with _LOCK:
        registry: ModelRegistry | None = getattr(state, "model_registry", None)
        if registry is None:
            service = state.service
            registry = ModelRegistry(service.store.url, root=service.home / "models")
            state.model_registry = registry
    return registry


def _name(name: str) -> str:
    try:
        return check_name(name)
    except ValueError as exc:
        raise unprocessable(str(exc)) from None


def _versions(registry: ModelRegistry, name: str) -> list[ModelVersion]:
    """Every version of the model, or 404 naming it."""
    try:
        return registry.versions(_name(name))
    except ValueError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None


# -- the registry --------------------------------------------------------------------------


class ModelOut(BaseModel):
    """A registered model: its versions and where its aliases point."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "btc-dir", "versions": 3, "latest_version": 3, "task":
                    "classification", "latest_created": "2022-02-01T10:00:00Z",
                    "aliases": {"champion": 2, "candidate": 3},
                }
            ]
        }
    )  # fmt: skip

    name: str = Field(description="The model's name.")
    versions: int = Field(description="How many versions it has.")
    latest_version: int = Field(description="Its newest version.")
    task: str = Field(description="classification or regression (of the newest version).")
    latest_created: datetime = Field(description="When the newest version was registered.")
    aliases: dict[str, int] = Field(description="Each alias set and the version it points at.")


class ModelsOut(BaseModel):
    """The registry's models."""

    models: list[ModelOut] = Field(description="By name.")


@router.get("/models", dependencies=_READ, summary="Registered models")
def get_models(request: Request) -> ModelsOut:
    """Every registered model with its versions' count and its aliases."""
    registry = _registry(request)
    out = []
    for name in registry.models():
        versions = registry.versions(name)
        newest = versions[-1]
        aliases = {a: v.version for v in versions for a in v.aliases}
        item = ModelOut(
            name=name, versions=len(versions), latest_version=newest.version, task=newest.task,
            latest_created=utc(newest.created_ns), aliases=aliases,
        )  # fmt: skip
        out.append(item)
    return ModelsOut(models=out)


class VersionOut(BaseModel):
    """One version: its aliases, training window and headline out-of-sample scores."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "btc-dir", "version": 2, "aliases": ["champion"],
                    "created": "2022-02-01T10:00:00Z", "task": "classification",
                    "label": "triple_barrier", "estimator": "lightgbm",
                    "data_start": "2021-01-01T00:00:00+00:00",
                    "data_end": "2021-06-30T23:59:00+00:00",
                    "cv": {"rank_ic": 0.041, "path_sharpe_mean": 0.9},
                }
            ]
        }
    )  # fmt: skip

    name: str = Field(description="The model.")
    version: int = Field(description="The version (from 1).")
    aliases: list[str] = Field(description="The aliases pointing at it.")
    created: datetime = Field(description="When it was registered.")
    task: str = Field(description="classification or regression.")
    label: str | None = Field(description="The label kind it learned (triple_barrier...).")
    estimator: str | None = Field(description="lightgbm, xgboost, sklearn:...")
    data_start: str | None = Field(description="First bar of its training data.")
    data_end: str | None = Field(description="Last bar of its training data.")
    cv: dict[str, Any] = Field(description="Out-of-sample cross-validation scores.")


class VersionsOut(BaseModel):
    """A model's versions."""

    name: str = Field(description="The model.")
    versions: list[VersionOut] = Field(description="Oldest first.")


def _recipe(v: ModelVersion, part: str) -> str | None:
    recipe = v.lineage.get("recipe")
    kind = recipe.get(part, {}).get("kind") if isinstance(recipe, dict) else None
    return kind if isinstance(kind, str) else None


def _data(v: ModelVersion) -> dict[str, Any]:
    data = v.lineage.get("data")
    return data if isinstance(data, dict) else {}


def _version_out(v: ModelVersion) -> VersionOut:
    data = _data(v)
    return VersionOut(
        name=v.name, version=v.version, aliases=list(v.aliases), created=utc(v.created_ns),
        task=v.task, label=_recipe(v, "label"), estimator=_recipe(v, "model"),
        data_start=_text(data.get("start")), data_end=_text(data.get("end")),
        cv=jsonable(v.metrics.get("cv", {})),
    )  # fmt: skip


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@router.get(
    "/models/{name}/versions", dependencies=_READ, responses=_ANSWERS, summary="Model versions"
)
def get_versions(request: Request, name: NamePath) -> VersionsOut:
    """A model's versions, oldest first."""
    versions = _versions(_registry(request), name)
    return VersionsOut(name=name, versions=[_version_out(v) for v in versions])


class LineageOut(BaseModel):
    """How a version was made: its data (range, rows, hash), features, recipe, code."""

    data_sha256: str | None = Field(description="SHA-256 over the training bars.")
    data_start: str | None = Field(description="First training bar.")
    data_end: str | None = Field(description="Last training bar.")
    data_rows: int | None = Field(description="Training bars.")
    rows: int | None = Field(description="Labelled rows it was fitted on.")
    features: list[str] = Field(description="Feature columns, in order.")
    params: dict[str, Any] = Field(description="The recipe: features, label, model, CV.")
    sources: dict[str, Any] = Field(description="Where each input's bars came from.")
    code_version: str | None = Field(description="Sapphire version (and commit).")
    raw: dict[str, Any] = Field(description="The lineage as recorded.")


class VersionDetailOut(VersionOut):
    """One version in full: lineage, every metric, the artefact's hash."""

    sha256: str = Field(description="SHA-256 of the artefact (checked on every load).")
    lineage: LineageOut = Field(description="How it was made.")
    metrics: dict[str, Any] = Field(description="Every recorded metric (CV, backtest...).")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@router.get(
    "/models/{name}/versions/{version}",
    dependencies=_READ,
    responses=_ANSWERS,
    summary="One model version",
)
def get_version(request: Request, name: NamePath, version: VersionPath) -> VersionDetailOut:
    """A version (or the version an alias points at): metrics and lineage."""
    registry = _registry(request)
    _versions(registry, name)
    if not _VERSION.fullmatch(version):
        raise unprocessable(
            f"version {version!r} is invalid: expected a number from 1 (3 or v3, under "
            f"10**9) or an alias ({', '.join(ALIASES)})"
        )
    ref = f"{name}@{version}"
    try:
        v = registry.get(ref)
    except ValueError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    lineage = jsonable(v.lineage)
    data = _data(v)
    features = lineage.get("features")
    params = lineage.get("recipe", lineage.get("params"))
    sources = lineage.get("sources")
    return VersionDetailOut(
        **_version_out(v).model_dump(), sha256=v.sha256, metrics=jsonable(v.metrics),
        lineage=LineageOut(
            data_sha256=_text(data.get("sha256")), data_start=_text(data.get("start")),
            data_end=_text(data.get("end")), data_rows=_int(data.get("rows")),
            rows=_int(lineage.get("rows")),
            features=[str(f) for f in features] if isinstance(features, list) else [],
            params=params if isinstance(params, dict) else {},
            sources=sources if isinstance(sources, dict) else {},
            code_version=_text(lineage.get("code_version")), raw=lineage,
        ),
    )  # fmt: skip


# -- promote and rollback ------------------------------------------------------------------


_VERSION_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 10**9},
        {"type": "string", "enum": list(ALIASES)},
    ]
}


class PromoteIn(BaseModel):
    """Point an alias at a version (the version is required: "the newest" may not be the
    one that was reviewed)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"version": 3, "alias": "champion"}, {"version": "candidate"}]
        },
    )

    version: Annotated[int | str, WithJsonSchema(_VERSION_SCHEMA)] = Field(
        description="The version (a number from 1), or an alias whose version to promote."
    )
    alias: Alias = Field("champion", description="The alias to move.")

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: object) -> int | str:
        if isinstance(value, str) and value in ALIASES:
            return value
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole or not 1 <= value <= 10**9:  # type: ignore[operator]
            raise ValueError(
                f"expected a version number from 1 or an alias ({', '.join(ALIASES)}), "
                f"got {value!r}"
            )
        return int(value)  # type: ignore[call-overload]


class RollbackIn(BaseModel):
    """Move an alias back to where it pointed before its last move."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"alias": "champion"}]}
    )

    alias: Alias = Field("champion", description="The alias to move back.")


class AliasMoveOut(BaseModel):
    """Where an alias points after a promotion or a rollback."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "btc-dir", "alias": "champion", "version": 3, "previous_version": 2,
                 "action": "promote"}
            ]
        }
    )  # fmt: skip

    name: str = Field(description="The model.")
    alias: str = Field(description="The alias moved.")
    version: int = Field(description="The version it points at now.")
    previous_version: int | None = Field(description="Where it pointed before (null: unset).")
    action: Literal["promote", "rollback"] = Field(description="What moved it.")


_MOVE_ANSWERS: dict[int | str, dict[str, Any]] = {
    **_ANSWERS,
    409: {"model": ErrorDetail, "description": "The move is impossible (e.g. no earlier version)."},
}


def _alias_version(registry: ModelRegistry, name: str, alias: str) -> int | None:
    try:
        return registry.get(f"{name}@{alias}").version
    except ValueError:  # the alias is not set
        return None


@router.post(
    "/models/{name}/promote",
    dependencies=_ADMIN,
    responses=_MOVE_ANSWERS,
    summary="Promote a version to an alias",
)
def promote(request: Request, name: NamePath, body: PromoteIn) -> AliasMoveOut:
    """Point `alias` at `version` (an atomic move, recorded so that rollback can undo it)."""
    registry = _registry(request)
    _versions(registry, name)
    before = _alias_version(registry, name, body.alias)
    try:
        v = registry.promote(f"{name}@{body.version}", body.alias)
    except ValueError as exc:  # a version or alias the model does not have
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    return AliasMoveOut(
        name=name, alias=body.alias, version=v.version, previous_version=before, action="promote"
    )


@router.post(
    "/models/{name}/rollback",
    dependencies=_ADMIN,
    responses=_MOVE_ANSWERS,
    summary="Roll an alias back",
)
def rollback(request: Request, name: NamePath, body: RollbackIn) -> AliasMoveOut:
    """Point `alias` back at the version it pointed at before its newest move."""
    registry = _registry(request)
    _versions(registry, name)
    before = _alias_version(registry, name, body.alias)
    try:
        v = registry.rollback(name, body.alias)
    except ValueError as exc:  # nothing to roll back to
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    return AliasMoveOut(
        name=name, alias=body.alias, version=v.version, previous_version=before, action="rollback"
    )


# -- drift ---------------------------------------------------------------------------------


class DriftRunOut(BaseModel):
    """The drift checks of one run trading the model (`sapphire ml drift RUN_ID`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "paper-ml-1", "mode": "PAPER", "run_status": "RUNNING",
                    "model_ref": "btc-dir@champion", "model_version": "btc-dir@2",
                    "status": "alert", "bar": 4200, "checked_at": "2022-01-05T22:00:00Z",
                    "window": 2000, "features_checked": 24, "alerts": ["natr_14_1x"],
                    "adwin_detections": 0, "drift_events": 3, "last_events": [],
                    "retrained": [],
                }
            ]
        }
    )  # fmt: skip

    run_id: str = Field(description="The run.")
    mode: str = Field(description="PAPER, LIVE...")
    run_status: str = Field(description="RUNNING, FINISHED or FAILED.")
    model_ref: str = Field(description="The model ref the run trades (NAME@ALIAS...).")
    model_version: str | None = Field(description="The version checked (NAME@N).")
    status: Literal["ok", "alert", "unchecked"] = Field(
        description="alert: a feature breaches the alert rule at the latest check; "
        "unchecked: no check yet."
    )
    bar: int | None = Field(description="The bar of the latest check.")
    checked_at: datetime | None = Field(description="Its time.")
    window: int | None = Field(description="Bars compared with the training data.")
    features_checked: int = Field(description="Features in the latest report.")
    alerts: list[str] = Field(description="Features alerting at the latest check.")
    adwin_detections: int = Field(description="Performance changes ADWIN detected.")
    drift_events: int = Field(description="Feature and performance events recorded.")
    last_events: list[dict[str, Any]] = Field(description="The last 20 events and retrains.")
    retrained: list[dict[str, Any]] = Field(description="Challengers trained on drift.")


class DriftOut(BaseModel):
    """The drift of every run that trades the model."""

    name: str = Field(description="The model.")
    runs: list[DriftRunOut] = Field(description="By start time.")


def _model_ref(run: RunInfo) -> str | None:
    if run.config.get("strategy") != "ml":
        return None
    params = run.config.get("params")
    ref = params.get("model") if isinstance(params, dict) else None
    return ref if isinstance(ref, str) else None


@router.get("/models/{name}/drift", dependencies=_READ, responses=_ANSWERS, summary="Drift status")
def get_drift(request: Request, name: NamePath) -> DriftOut:
    """The drift checks of the paper and live runs of the `ml` strategy on this model."""
    from sapphire.ml.live import read_drift

    _versions(_registry(request), name)
    service = request.app.state.service
    store: Store = service.store
    out = []
    for run in store.runs():
        ref = _model_ref(run)
        if ref is None or ref.partition("@")[0] != name:
            continue
        folder = run_dir(service.home, run)
        try:
            drift = read_drift(folder) if folder is not None else None
        except ValueError:  # no check yet
            drift = None
        out.append(_drift_run(run, ref, jsonable(drift) if drift is not None else None))
    return DriftOut(name=name, runs=out)


def _drift_run(run: RunInfo, ref: str, drift: dict[str, Any] | None) -> DriftRunOut:
    report = (drift or {}).get("report") or {}
    events = (drift or {}).get("events") or []
    features = report.get("features") or {}
    alerts = sorted(f for f, row in features.items() if isinstance(row, dict) and row.get("alert"))
    adwin = report.get("adwin") or {}
    checked = _int(report.get("ts_ns"))
    return DriftRunOut(
        run_id=run.run_id, mode=run.mode.value, run_status=run.status.value, model_ref=ref,
        model_version=_text(report.get("model")),
        status="unchecked" if not report else "alert" if alerts else "ok",
        bar=_int(report.get("bar")), checked_at=None if checked is None else utc(checked),
        window=_int(report.get("window")), features_checked=len(features), alerts=alerts,
        adwin_detections=_int(adwin.get("detections")) or 0,
        drift_events=sum(1 for e in events if e.get("kind") in ("feature", "performance")),
        last_events=events[-20:], retrained=list(report.get("retrained") or []),
    )  # fmt: skip
