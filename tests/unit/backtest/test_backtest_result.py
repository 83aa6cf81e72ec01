"""`BacktestResult.summary`: JSON-ready, through the one JSON encoder."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from sapphire.backtest.result import BacktestResult, settings_caption
from sapphire.engine.config import RunConfig
from sapphire.strategy.base import Bars


def _result(n: int, metrics: dict[str, float], params: dict[str, object]) -> BacktestResult:
    index = pd.date_range("2022-01-01", periods=n, freq="min", tz="UTC")
    time_ns = index.as_unit("ns").asi8
    prices = np.full(n, 100.0)
    return BacktestResult(
        strategy="s",
        params=params,
        config=RunConfig(cash=1_000.0, taker_fee=0.001, maker_fee=0.0002).to_mapping(),
        symbol="BTC/USDT",
        bars=Bars(time_ns, prices, prices, prices, prices, prices, 60 * 10**9),
        equity=pd.Series(np.full(n, 1_000.0), index=index),
        metrics=metrics,
        _trades=pd.DataFrame,
        _orders=pd.DataFrame,
        _fills=pd.DataFrame,
    )


def test_summary_is_strict_json() -> None:
    result = _result(
        3,
        {"total_return": 0.0, "sharpe": math.nan, "profit_factor": math.inf},
        {"fast": np.int64(10), "mode": "x"},
    )
    summary = result.summary()
    text = json.dumps(summary, allow_nan=False)  # raises on NaN / inf / NumPy values
    assert json.loads(text) == {
        "strategy": "s",
        "symbol": "BTC/USDT",
        "params": {"fast": 10, "mode": "x"},
        "start": "2022-01-01T00:00:00+00:00",
        "end": "2022-01-01T00:02:00+00:00",
        "bars": 3,
        "metrics": {"total_return": 0.0, "sharpe": None, "profit_factor": None},
        "warnings": [],
        "in_sample": None,
        "stopped_at": None,
        "settings": {
            "maker_fee": 0.0002, "taker_fee": 0.001, "size_mode": "equity", "size": 0.95,
            "leverage": 1.0, "intrabar": "path",
        },
    }  # fmt: skip
    assert type(summary["params"]["fast"]) is int


def test_the_caption_states_fee_sizing_leverage_and_intrabar_model() -> None:
    assert _result(2, {}, {}).caption() == (
        "fee 0.1% taker / 0.02% maker · size 95% of equity · leverage 1× · intrabar path"
    )
    old = RunConfig.from_options(
        size_mode="fixed", size=1.0, leverage=0, fee=0.001, intrabar="worst"
    )
    assert settings_caption(old.to_mapping()) == (
        "fee 0.1% · size 1 (fixed, base units) · no margin limit · intrabar worst"
    )
    risk = RunConfig(size_mode="risk", risk_profile="aggressive", engine="event")
    assert "size from risk per trade (aggressive profile)" in settings_caption(risk.to_mapping())


def test_summary_of_an_empty_run() -> None:
    summary = _result(0, {}, {}).summary()
    assert (summary["start"], summary["end"], summary["bars"]) == (None, None, 0)


def test_summary_carries_the_warnings() -> None:
    result = _result(2, {}, {})
    result.warnings.append("scored in-sample")
    assert result.summary()["warnings"] == ["scored in-sample"]
