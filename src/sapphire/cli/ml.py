"""`sapphire ml`: train, evaluate, the model registry and drift."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sapphire.cli.common import (
    ML_STAGES,
    console,
    err_console,
    fail,
    format_number,
    metrics_table,
    parse_params,
    print_json,
)
from sapphire.cli.options import DataOpt, EndOpt, JsonOpt, StartOpt
from sapphire.encoding import to_json

ml_app = typer.Typer(
    help="Machine learning: train models, evaluate them, manage the registry, check drift.",
    no_args_is_help=True,
)
models_app = typer.Typer(help="The model registry: list, show, promote, roll back.",
                         no_args_is_help=True)  # fmt: skip
ml_app.add_typer(models_app, name="models")

OtherOpt = Annotated[
    list[str] | None,
    typer.Option("--other", help="Another instrument for the features: NAME=FILE_OR_SYMBOL."),
]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar (on stderr).")]
RegistryOpt = Annotated[
    str | None, typer.Option("--db", help="Registry database URL (default $SAPPHIRE_HOME).")
]


def _registry(db: str | None) -> Any:
    from sapphire.ml.strategy import default_registry

    return default_registry(db)


def _bars(data: str, start: str | None, end: str | None) -> Any:
    from sapphire.ml.pipeline import load_bars

    return load_bars(data, start=start, end=end)


def _others(items: list[str] | None) -> tuple[dict[str, Any], dict[str, str]]:
    from sapphire.ml.pipeline import load_bars

    bars, sources = {}, {}
    for item in items or []:
        name, sep, source = item.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise ValueError(f"--other {item!r} is not of the form NAME=FILE_OR_SYMBOL")
        path = Path(source.strip()).expanduser()
        src = str(path.resolve()) if path.exists() else source.strip()
        bars[name.strip()] = load_bars(src)
        sources[name.strip()] = src
    return bars, sources


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A Rich progress bar on stderr fed (stage, done, total) callbacks, or None."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=err_console, transient=True,
    ) as bar:  # fmt: skip
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(ML_STAGES.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _scores_table(title: str, values: dict[str, Any]) -> Table:
    """Any named scores (CV, prediction, IC), unlike `metrics_table`'s fixed backtest keys."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key, value in values.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4g}")
        elif isinstance(value, int | str):
            table.add_row(key, str(value))
    return table


def _feature_spec(path: Path | None, frac_diff: str | None) -> tuple[Any, bool]:
    """The feature spec from the YAML file (or the default) and whether its fractional
    differentiation order is to be chosen on the training bars (`frac_diff: auto`)."""
    import yaml

    from sapphire.ml.features import FeatureSpec

    raw: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ValueError(f"feature set file not found: {path}")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of feature options, got {loaded!r}")
        raw = dict(loaded or {})
    if frac_diff is not None:
        raw["frac_diff"] = None if frac_diff == "off" else frac_diff
    auto = raw.get("frac_diff") == "auto"
    if auto:
        raw["frac_diff"] = None
    elif isinstance(raw.get("frac_diff"), str):
        try:
            raw["frac_diff"] = float(raw["frac_diff"])
        except ValueError:
            raise ValueError(
                f"frac_diff={raw['frac_diff']!r} is invalid: expected an order in (0, 1], "
                "auto or off"
            ) from None
    return FeatureSpec.from_mapping(raw), auto


@ml_app.command("train")
def train_command(
    name: Annotated[str, typer.Option(help="Model name in the registry.")],
    data: DataOpt = "sample",
    features: Annotated[
        Path | None, typer.Option(help="Feature set YAML (default: a built-in set).")
    ] = None,
    frac_diff: Annotated[
        str | None,
        typer.Option(
            help="Add a fractionally differentiated log close: an order d, or auto "
            "(the least d that passes ADF, chosen on each CV split's training bars and, for "
            "the final model, on all the training bars)."
        ),
    ] = None,
    label: Annotated[
        str, typer.Option(help="triple_barrier, direction, forward_return or meta.")
    ] = "triple_barrier",
    horizon: Annotated[int | None, typer.Option(help="Label horizon (bars).")] = None,
    pt: Annotated[float | None, typer.Option(help="Profit-take barrier (x volatility).")] = None,
    sl: Annotated[float | None, typer.Option(help="Stop-loss barrier (x volatility).")] = None,
    model: Annotated[
        str, typer.Option(help="lightgbm, xgboost or sklearn:NAME, with :k=v,... parameters.")
    ] = "lightgbm",
    cv: Annotated[str, typer.Option(help="cpcv or purged_kfold.")] = "cpcv",
    groups: Annotated[int, typer.Option(help="CV groups (k-fold: folds).")] = 6,
    test_groups: Annotated[int, typer.Option(help="CPCV test groups per split.")] = 2,
    other: OtherOpt = None,
    primary: Annotated[
        str | None, typer.Option(help="Meta labels: the primary strategy whose entries to filter.")
    ] = None,
    primary_param: Annotated[
        list[str] | None, typer.Option("--primary-param", help="Primary strategy name=value.")
    ] = None,
    importance: Annotated[bool, typer.Option(help="Permutation importance on purged CV.")] = True,
    alias: Annotated[str, typer.Option(help="Alias of the new version.")] = "candidate",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    start: StartOpt = None,
    end: EndOpt = None,
    db: RegistryOpt = None,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Train a model with purged cross-validation and register it (alias `candidate`)."""
    from sapphire.data import DataError
    from sapphire.ml.labels import LabelSpec
    from sapphire.ml.models import ModelSpec
    from sapphire.ml.pipeline import TrainConfig, train

    started = time.perf_counter()
    try:
        spec, auto = _feature_spec(features, frac_diff)
        label_kw: dict[str, Any] = {"kind": label}
        label_kw.update({k: v for k, v in (("horizon", horizon), ("pt", pt), ("sl", sl))
                         if v is not None})  # fmt: skip
        config = TrainConfig(
            features=spec, label=LabelSpec.from_mapping(label_kw), model=ModelSpec.parse(model),
            cv=cv, n_groups=groups, n_test_groups=test_groups, seed=seed,  # type: ignore[arg-type]
            importance=importance, frac_diff_auto=auto,
        )  # fmt: skip
        bars = _bars(data, start, end)
        others, sources = _others(other)
        registry = _registry(db)
        primary_spec = None
        if label == "meta":
            if primary is None:
                raise ValueError("--label meta needs --primary STRATEGY (the signals to filter)")
            primary_spec = {"strategy": primary, "params": parse_params(primary_param)}
        elif primary is not None:
            raise ValueError(f"--primary is for --label meta, not --label {label}")
        with _progress(progress and not as_json) as update:
            result = train(bars, config, others=others, sources=sources, progress=update,
                           primary=primary_spec)  # fmt: skip
        version = result.register(name, registry, alias=alias)
    except (DataError, ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    elapsed = time.perf_counter() - started
    out = {
        "model": version.name,
        "version": int(version.version),
        "aliases": list(version.aliases),
        "rows": int(result.lineage["rows"]),
        "features": len(result.lineage["features"]),
        "cv": result.metrics["cv"],
        "backtest": {
            k.removeprefix("path_"): v
            for k, v in result.metrics["cv"].items()
            if k.startswith("path_")
        },
        "importance": result.metrics.get("importance", {}),
        "elapsed": round(elapsed, 3),
    }
    if as_json:
        print_json(out)
        return
    console.print(_scores_table(
        f"{version.name} v{version.version}: out-of-sample CV ({config.cv})", result.metrics["cv"]
    ))  # fmt: skip
    if result.importance is not None:
        top = Table(title="Top features (permutation importance, purged CV)", title_justify="left")
        top.add_column("feature")
        top.add_column("importance", justify="right")
        for row in result.importance.head(10).itertuples():
            top.add_row(str(row.feature), f"{row.importance:.4g}")
        console.print(top)
    console.print(
        f"registered [bold]{version.name}@{version.version}[/] "
        f"(aliases: {', '.join(version.aliases) or 'none'}) in {elapsed:.1f} s; promote with "
        f"`sapphire ml models promote {version.name}@{version.version} --alias champion`",
        highlight=False,
    )


@ml_app.command("evaluate")
def evaluate_command(
    ref: Annotated[str, typer.Argument(help="Model: NAME, NAME@VERSION or NAME@ALIAS.")],
    data: DataOpt = "sample",
    threshold: Annotated[float | None, typer.Option(help="Entry threshold on the score.")] = None,
    exit_threshold: Annotated[float | None, typer.Option(help="Exit threshold.")] = None,
    fee: Annotated[float | None, typer.Option(help="Fee per fill (default: the recipe's).")] = None,
    retrain: Annotated[
        str, typer.Option(help="none, sliding or expanding (walk-forward retraining).")
    ] = "none",
    train_bars: Annotated[int, typer.Option(help="Walk-forward training window (bars).")] = 20_000,
    retrain_every: Annotated[int, typer.Option(help="Bars between retrains.")] = 5_000,
    start: StartOpt = None,
    end: EndOpt = None,
    html: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
    db: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a model on data: prediction scores, IC, and the ml strategy net of fees."""
    from sapphire.data import DataError
    from sapphire.ml.evaluate import evaluate

    started = time.perf_counter()
    try:
        bars = _bars(data, start, end)
        ev = evaluate(
            ref, bars, threshold=threshold, exit_threshold=exit_threshold, fee=fee,
            retrain=retrain, train_bars=train_bars, retrain_every=retrain_every,
            registry=_registry(db),
        )  # fmt: skip
        report = ev.report(html) if html is not None else None
    except (DataError, ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    out = ev.summary()
    out["elapsed"] = round(time.perf_counter() - started, 3)
    if report is not None:
        out["report"] = str(report)
    if as_json:
        print_json(out)
        return
    console.print(_scores_table(f"{ref}: predictions", {**out["prediction"], **out["ic"]}))
    console.print(metrics_table({"ml": ev.backtest.metrics}, f"{ref}: ml strategy, net of fees"))
    for warning in ev.backtest.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if report is not None:
        console.print(f"report: {report}", highlight=False)


def _version_row(v: Any) -> dict[str, Any]:
    cv = v.metrics.get("cv", {})
    bt = v.metrics.get("backtest", {})
    data = v.lineage.get("data", {})
    return {
        "model": v.name,
        "version": int(v.version),
        "aliases": list(v.aliases),
        "created": _iso(v.created_ns),
        "task": v.task,
        "label": v.lineage.get("recipe", {}).get("label", {}).get("kind"),
        "estimator": v.lineage.get("recipe", {}).get("model", {}).get("kind"),
        "data": f"{data.get('start')} → {data.get('end')}",
        "cv": cv,
        "backtest": bt,
    }


def _iso(ns: int) -> str:
    import pandas as pd

    return pd.Timestamp(int(ns), tz="UTC").isoformat()


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Argument(help="Only this model's versions.")] = None,
    db: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the registered model versions with their aliases and metrics."""
    try:
        reg = _registry(db)
        names = [name] if name else reg.models()
        rows = [_version_row(v) for n in names for v in reg.versions(n)]
    except (ValueError, KeyError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    if as_json:
        print_json({"models": rows})
        return
    table = Table(title="Models", title_justify="left")
    for col in ("model", "version", "aliases", "created", "label", "estimator", "CV rank IC",
                "CV path Sharpe"):  # fmt: skip
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["model"], str(r["version"]), ", ".join(r["aliases"]), r["created"][:19],
            str(r["label"]), str(r["estimator"]), format_number(r["cv"].get("rank_ic")),
            format_number(r["cv"].get("path_sharpe_mean")),
        )  # fmt: skip
    console.print(table if rows else "no models registered yet: `sapphire ml train --name NAME`")


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    db: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one version: lineage (features, label, data, code), metrics, artefact."""
    try:
        v = _registry(db).get(ref)
    except (ValueError, KeyError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    out = {
        **_version_row(v),
        "lineage": v.lineage,
        "metrics": v.metrics,
        "artefact": str(v.artefact),
        "sha256": v.sha256,
    }
    if as_json:
        print_json(out)
        return
    console.print(to_json(out, indent=2), highlight=False)


@models_app.command("promote")
def models_promote(
    ref: Annotated[
        str, typer.Argument(help="NAME@VERSION (or NAME@ALIAS) to promote; a bare NAME is refused.")
    ],
    alias: Annotated[str, typer.Option(help="candidate, challenger or champion.")] = "champion",
    db: RegistryOpt = None,
) -> None:
    """Point an alias at a version (an atomic move; `rollback` undoes it)."""
    try:
        v = _registry(db).promote(ref, alias)
    except (ValueError, KeyError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    console.print(f"{v.name}@{alias} -> version {v.version}", highlight=False)


@models_app.command("export-mlflow")
def models_export_mlflow(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (or NAME@ALIAS) to export.")],
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: MLflow's own default).")
    ] = None,
    db: RegistryOpt = None,
) -> None:
    """Log a version to MLflow (needs `pip install mlflow`): params, metrics, artefact."""
    try:
        run_id = _registry(db).export_mlflow(ref, tracking_uri)
    except (ValueError, KeyError, ImportError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    console.print(f"{ref} exported to MLflow run {run_id}", highlight=False)


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Option(help="The alias to move back.")] = "champion",
    db: RegistryOpt = None,
) -> None:
    """Move an alias back to the version it pointed to before its last move."""
    try:
        v = _registry(db).rollback(name, alias)
    except (ValueError, KeyError) as exc:
        raise fail(str(exc).strip("'\"")) from None
    console.print(f"{v.name}@{alias} rolled back to version {v.version}", highlight=False)


@ml_app.command("drift")
def drift_command(
    run_id: Annotated[str, typer.Argument(help="A paper run of the ml strategy.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a run's drift checks: per-feature PSI / KS, ADWIN, events and retrains."""
    from sapphire.ml.live import read_drift
    from sapphire.paper.session import paper_dir

    try:
        run_dir = paper_dir(run_id)
        if not run_dir.is_dir():
            raise ValueError(f"no paper run {run_id!r} (see `sapphire runs list`)")
        drift = read_drift(run_dir)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json({"run_id": run_id, **drift})
        return
    report = drift["report"]
    events = drift["events"]
    if report:
        z_alert = report.get("z_alert", 6.0)
        table = Table(
            title=f"{run_id}: feature drift at bar {report['bar']} ({report['model']}, last "
            f"{report['window']} bars vs training)",
            title_justify="left",
        )
        for col in ("feature", "z mean", "z std", "alert", "PSI", "band", "KS p"):
            table.add_column(col)
        rows = sorted(
            report["features"].items(),
            key=lambda kv: -max(abs(kv[1].get("z_mean") or 0.0), abs(kv[1].get("z_std") or 0.0)),
        )
        for feature, r in rows:
            table.add_row(
                feature, format_number(r.get("z_mean")), format_number(r.get("z_std")),
                "yes" if r.get("alert") else "", format_number(r.get("psi")), str(r.get("band")),
                format_number(r.get("ks_p")),
            )  # fmt: skip
        console.print(table)
        alerts = sum(1 for r in report["features"].values() if r.get("alert"))
        console.print(
            f"alert: the window's mean or standard deviation is at least {z_alert:g} standard "
            "errors (z) from training, errors calibrated on windows of the training rows; "
            f"this is the rule that records a drift event ({alerts} feature(s) now). "
            "PSI (< 0.1 stable, < 0.2 moderate) and the KS p-value treat the rows as "
            "independent: on persistent features they run high without any drift, so they "
            "are shown for reference and raise nothing.",
            highlight=False,
        )
        adwin = report.get("adwin", {})
        console.print(
            f"performance (ADWIN on prediction error): window {adwin.get('width')}, mean "
            f"{format_number(adwin.get('mean'))}, {adwin.get('detections')} change(s) detected",
            highlight=False,
        )
    kinds = ("feature", "performance")
    recorded = [e for e in events if e.get("kind") in kinds]
    console.print(
        f"{len(recorded)} drift event(s) recorded over the run (feature alerts and ADWIN "
        "changes, at every check)",
        highlight=False,
    )
    for event in events[-10:]:
        console.print(f"  {event.get('kind')}: {event.get('message', event)}", highlight=False)
