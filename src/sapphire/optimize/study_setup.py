"""A study's set-up: its data loaded once, the strategy and backtest options checked, the
configuration stored with it, and the `Plan` the coordinator runs (new, or rebuilt from
a stored config to resume it)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sapphire.encoding import jsonable
from sapphire.engine.config import READ_FIELDS
from sapphire.optimize.objectives import (
    Constraint,
    Objective,
    resolve_constraint,
    resolve_objective,
)
from sapphire.optimize.space import SearchSpace
from sapphire.optimize.storage import StoredStudy, StudyStorage, TrialRecord
from sapphire.strategy.base import Bars, Signals, Strategy
from sapphire.strategy.registry import get_strategy

__all__ = [
    "BACKTEST_KEYS",
    "DATA_KEYS",
    "OptionsProbe",
    "Plan",
    "config_key",
    "data_spec",
    "fingerprint",
    "load_data",
    "plan_from_config",
    "slice_bars",
    "stamp",
    "strategy_spec",
]

# keys of `optimize(**kwargs)` that select/load the data rather than configure a backtest
DATA_KEYS = ("symbol", "venue", "timeframe", "resample", "gaps", *READ_FIELDS)
BACKTEST_KEYS = (
    "cash", "size", "size_mode", "leverage", "fee", "maker_fee", "taker_fee",
    "slippage_bps", "slippage_ticks", "tick_size", "lot_size", "fill_at", "intrabar",
    "stop_loss", "take_profit", "trailing_stop", "funding",
)  # fmt: skip


class OptionsProbe(Strategy):
    """A parameter-less strategy used to validate backtest options once."""

    name = "_options_probe"

    def signals(self, bars: Bars) -> Signals:
        return Signals()


def strategy_spec(strategy: str | type[Strategy]) -> str:
    """How the study stores `strategy`: its spec, or `module:Class` for a class."""
    if isinstance(strategy, str):
        return strategy
    module, qualname = strategy.__module__, strategy.__qualname__
    if "<" in qualname or module == "__main__":
        raise ValueError(
            f"strategy class {qualname} must be importable (module level) to be optimised; "
            "or give 'path/to/file.py:Class'"
        )
    return f"{module}:{qualname}"


def fingerprint(bars: Bars) -> str:
    """A short hash of the bars (a resumed study refuses data that changed)."""
    h = hashlib.sha256()
    for arr in (bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def data_spec(data: Any) -> dict[str, Any]:
    """Where the data came from, as stored with the study (None: in memory)."""
    if isinstance(data, str | Path):
        if str(data) == "sample":
            return {"source": "sample"}
        from sapphire.data.load import is_file_source

        if is_file_source(data):
            return {"source": str(Path(data).expanduser().resolve())}
        return {"source": str(data)}
    return {"source": None, "kind": type(data).__name__}


def load_data(
    data: Any, start: Any, end: Any, data_opts: dict[str, Any]
) -> tuple[Bars, dict[str, Any]]:
    """Load the bars once (start/end/resample applied); return them and catalog metadata."""
    from sapphire.backtest import Backtest, RunConfig

    if isinstance(data, str) and data == "sample":
        from sapphire.data.samples import SAMPLE_PATH

        data = SAMPLE_PATH
    if isinstance(data, Bars) and (start is not None or end is not None):
        times = data.time
        lo = 0 if start is None else int(np.searchsorted(times, _ns(start), "left"))
        hi = len(data) if end is None else int(np.searchsorted(times, _ns(end), "left"))
        data = slice_bars(data, lo, hi)
        start = end = None
    where = RunConfig.from_options(
        start=start,
        end=end,
        venue=data_opts.get("venue"),
        timeframe=data_opts.get("timeframe"),
        resample=data_opts.get("resample"),
        gaps=data_opts.get("gaps", "keep"),
        **{name: data_opts.get(name) for name in READ_FIELDS},
    )
    bars, _name, meta = Backtest._load(data, data_opts.get("symbol"), where)
    if len(bars) < 2:
        raise ValueError(f"need at least 2 bars to optimise, got {len(bars)}")
    return bars, meta


def _ns(value: Any) -> int:
    import pandas as pd

    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


def slice_bars(bars: Bars, lo: int, hi: int) -> Bars:
    """Bars `lo` to `hi` (exclusive) as views."""
    return Bars(bars.time[lo:hi], bars.open[lo:hi], bars.high[lo:hi], bars.low[lo:hi],
                bars.close[lo:hi], bars.volume[lo:hi], bars.timeframe_ns)  # fmt: skip


def stamp(value: Any) -> str | None:
    """A start/end time as ISO text (None stays None)."""
    if value is None:
        return None
    import pandas as pd

    return str(pd.Timestamp(value).isoformat())


@dataclass
class Plan:
    """A study ready to run: its stored row, rebuilt pieces and stored trials."""

    stored: StoredStudy
    storage: StudyStorage
    space: SearchSpace
    strategy: type[Strategy]
    objectives: list[Objective]
    constraints: list[Constraint]
    context_options: dict[str, Any]
    bars: Bars
    records: list[TrialRecord]


def config_key(config: Mapping[str, Any]) -> dict[str, Any]:
    """What must match for `optimize(study=name)` to continue a stored study: its config
    as JSON data, less the target, the time spent, the version that created it and the
    space size (derived from the rest)."""
    skip = {"trials", "elapsed_s", "created_with", "space_size"}
    clean = jsonable(dict(config), "study config", str_keys=True)
    return {k: v for k, v in clean.items() if k not in skip}


def plan_from_config(
    stored: StoredStudy,
    storage: StudyStorage,
    data: Any = None,
    funding: Any = None,
) -> Plan:
    """Rebuild a stored study's plan from its config (`data`/`funding`: for in-memory ones)."""
    config = stored.config
    strategy = get_strategy(config["strategy"])
    space = SearchSpace(strategy, config.get("space") or {}, config.get("fixed") or {})
    objectives = [resolve_objective(o) for o in config["objectives"]]
    constraints = [resolve_constraint(c) for c in config.get("constraints") or []]
    spec = config.get("data") or {}
    if data is None:
        if not spec.get("source"):
            raise ValueError(
                f"study {stored.name!r} was run on in-memory data ({spec.get('kind')}); "
                "pass the same data to resume it (resume(name, data=...))"
            )
        data = spec["source"]
    bars, meta = load_data(data, config.get("start"), config.get("end"),
                           config.get("data_options") or {})  # fmt: skip
    if spec.get("fingerprint") and fingerprint(bars) != spec["fingerprint"]:
        raise ValueError(
            f"the data of study {stored.name!r} has changed since it was created "
            "(fingerprint mismatch); start a new study"
        )
    options = dict(config.get("backtest_options") or {})
    if config.get("funding") == "in-memory":
        if funding is None:
            raise ValueError(
                f"study {stored.name!r} used an in-memory funding series; pass funding= to resume"
            )
        options["funding"] = funding
    elif isinstance(options.get("funding"), str):
        from sapphire.data import read_funding

        options["funding"] = read_funding(options["funding"])
    for key in ("tick_size", "lot_size"):
        if options.get(key) is None and meta.get(key):
            options[key] = meta[key]
    records = storage.load_trials(stored)
    return Plan(stored, storage, space, strategy, objectives, constraints, options, bars,
                records)  # fmt: skip
