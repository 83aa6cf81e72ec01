"""Command-line options: the run settings come from `RunConfig`, declared once.

`@run_options()` gives a command one `--option` per `RunConfig` field (help text, type
and default from the field), plus `--fee`, and hands the command a validated config
(`config: RunConfig`); a bad value exits with the config's error naming it. The other
aliases are the options that are not run settings (data source, strategy, output).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from sapphire.cli.common import fail
from sapphire.engine.config import RunConfig, field_default, option_help

__all__ = [
    "DATA_RANGE",
    "EVENT_ONLY",
    "DataOpt",
    "EndOpt",
    "JobsOpt",
    "JsonOpt",
    "ParamOpt",
    "ProgressOpt",
    "RayOpt",
    "StartOpt",
    "StorageOpt",
    "StrategyOpt",
    "changed_options",
    "parse_space",
    "run_options",
]

F = TypeVar("F", bound=Callable[..., Any])

DataOpt = Annotated[
    str, typer.Option(help="CSV/Parquet/Feather file, catalog symbol, or 'sample'.")
]
StrategyOpt = Annotated[
    str, typer.Option(help="Built-in name, module:Class or file.py:Class (vectorised or event).")
]
ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Strategy parameter name=value.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        min=1, max=65535, envvar="SAPPHIRE_NODE_METRICS_PORT",
        help="Serve the node's Prometheus metrics on this port (/metrics).",
    ),
]  # fmt: skip
MetricsHostOpt = Annotated[
    str,
    typer.Option(
        envvar="SAPPHIRE_NODE_METRICS_HOST",
        help="Address the metrics are served on (loopback unless told otherwise).",
    ),
]
StartOpt = Annotated[str | None, typer.Option(help=option_help(RunConfig, "start"))]
EndOpt = Annotated[str | None, typer.Option(help=option_help(RunConfig, "end"))]

JobsOpt = Annotated[
    int,
    typer.Option(
        help="Local worker processes: 1 = in this process; 0 = chosen: this process, unless "
        "the first batch's trial times say one worker per idle core saves at least 2 s."
    ),
]
RayOpt = Annotated[
    str | None, typer.Option(help="Run on a Ray cluster: auto, host:6379 or ray://host:10001.")
]
StorageOpt = Annotated[
    str | None,
    typer.Option(help="SQLAlchemy URL of the study database (default $SAPPHIRE_HOME/sapphire.db)."),
]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar (on stderr).")]


def _number(text: str, where: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None


def parse_space(items: list[str] | None) -> dict[str, Any]:
    """Turn `--space k=lo:hi[:step|:log]` and `--space k=a,b,c` into `space=` overrides."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        where = f"--space {item!r}"
        if not sep or not key or not value:
            raise ValueError(f"{where} is not of the form name=low:high or name=a,b,c")
        if ":" in value:
            parts = value.split(":")
            if len(parts) not in (2, 3):
                raise ValueError(f"{where}: expected low:high, low:high:step or low:high:log")
            low, high = _number(parts[0], where), _number(parts[1], where)
            if len(parts) == 2:
                out[key] = (low, high)
            elif parts[2].strip().lower() == "log":
                out[key] = (low, high, None, True)
            else:
                out[key] = (low, high, _number(parts[2], where))
        else:
            out[key] = [v.strip() for v in value.split(",") if v.strip()]
    return out


#: the settings that pick the bars (data source options)
DATA_RANGE = ("start", "end", "venue", "timeframe", "resample", "gaps")
#: run settings of the event-driven node only (not offered by kernel-only commands)
EVENT_ONLY = ("engine", "risk_profile", "maintenance_margin", "liquidation_fee")
#: settings whose CLI default is None (use the catalog's, or the fee's)
_NONE_DEFAULT = {"maker_fee", "taker_fee", "tick_size", "lot_size"}
_FEE_HELP = "Fee per fill, fraction of notional (maker and taker)."


def run_options(
    *,
    cls: type[RunConfig] = RunConfig,
    skip: Iterable[str] = (),
    keep: Iterable[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> Callable[[F], F]:
    """Decorate a command taking `config: RunConfig` (or `cls`) with the config's options.

    `skip` leaves fields out, `keep` keeps only those (the others keep their defaults);
    `defaults` changes a field's CLI default for this command."""
    skipped = set(skip)
    if keep is not None:
        skipped |= {f.name for f in fields(cls)} - set(keep)
    changed = dict(defaults or {})

    def decorate(func: F) -> F:
        hints = get_type_hints(cls)
        own_sig = inspect.signature(func)
        own_hints = get_type_hints(func, include_extras=True)
        own = [
            p.replace(annotation=own_hints.get(p.name, p.annotation))
            for p in own_sig.parameters.values()
            if p.name != "config"
        ]
        added: list[inspect.Parameter] = []
        names: list[str] = []
        for f in fields(cls):
            if f.name in skipped:
                continue
            if f.name == "maker_fee":
                default = changed.get("fee", 0.0)
                added.append(_param("fee", float, default, _FEE_HELP))
                names.append("fee")
            typ = hints[f.name]
            default = field_default(cls, f.name)
            if f.name in _NONE_DEFAULT:
                typ, default = typ | None, None
            default = changed.get(f.name, default)
            added.append(_param(f.name, typ, default, str(f.metadata.get("help", ""))))
            names.append(f.name)

        def command(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            try:
                config = cls.from_options(**values)
            except (ValueError, TypeError) as exc:
                raise fail(str(exc)) from None
            return func(config=config, **kwargs)

        command.__name__ = func.__name__
        command.__doc__ = func.__doc__
        command.__module__ = func.__module__
        command.__signature__ = own_sig.replace(  # type: ignore[attr-defined]
            parameters=[*own, *added], return_annotation=None
        )
        command.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        return command  # type: ignore[return-value]

    return decorate


def _param(name: str, typ: Any, default: Any, help: str) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[typ, typer.Option(help=help)],
    )


def changed_options(config: RunConfig) -> dict[str, Any]:
    """The run settings given on the command line, as backtest keyword options (the ones
    left at their defaults are left out: a stored study shows what was chosen)."""
    default = RunConfig().to_mapping()
    return {k: v for k, v in config.to_mapping().items() if v != default[k]}
