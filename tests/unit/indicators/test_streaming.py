"""Every streaming indicator, fed the bars one by one, matches its vectorised twin."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from indicator_helpers import assert_same_series, stream

import sapphire.indicators as ind


@dataclass(frozen=True)
class Case:
    func: Callable[..., Any]
    cls: type
    inputs: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    crosses_zero: bool = False

    def vectorised(self, bars: dict[str, np.ndarray]) -> np.ndarray:
        out = self.func(*(bars[name] for name in self.inputs), **self.params)
        return np.column_stack(out) if isinstance(out, tuple) else out

    def streaming(self, bars: dict[str, np.ndarray]) -> tuple[Any, np.ndarray]:
        indicator = self.cls(**self.params)
        return indicator, stream(indicator, *(bars[name] for name in self.inputs))


C, HLC, HL, HLCV = (
    ("close",),
    ("high", "low", "close"),
    ("high", "low"),
    ("high", "low", "close", "volume"),
)
CASES = {
    "sma-1": Case(ind.sma, ind.SMA, C, {"period": 1}),
    "sma-2": Case(ind.sma, ind.SMA, C, {"period": 2}),
    "sma-30": Case(ind.sma, ind.SMA, C, {"period": 30}),
    "sma-2000": Case(ind.sma, ind.SMA, C, {"period": 2000}),
    "ema-2": Case(ind.ema, ind.EMA, C, {"period": 2}),
    "ema-50": Case(ind.ema, ind.EMA, C, {"period": 50}),
    "wma-3": Case(ind.wma, ind.WMA, C, {"period": 3}),
    "wma-50": Case(ind.wma, ind.WMA, C, {"period": 50}),
    "rsi-2": Case(ind.rsi, ind.RSI, C, {"period": 2}),
    "rsi-14": Case(ind.rsi, ind.RSI, C, {"period": 14}),
    "macd": Case(ind.macd, ind.MACD, C, {}, crosses_zero=True),
    "macd-3-7-2": Case(ind.macd, ind.MACD, C, {"fast": 3, "slow": 7, "signal": 2}, True),
    "bbands-2": Case(ind.bbands, ind.BBands, C, {"period": 2, "nbdev": 1.5}),
    "bbands-20": Case(ind.bbands, ind.BBands, C, {"period": 20}),
    "atr-1": Case(ind.atr, ind.ATR, HLC, {"period": 1}),
    "atr-14": Case(ind.atr, ind.ATR, HLC, {"period": 14}),
    "adx-2": Case(ind.adx, ind.ADX, HLC, {"period": 2}),
    "adx-14": Case(ind.adx, ind.ADX, HLC, {"period": 14}),
    "stoch": Case(ind.stoch, ind.Stoch, HLC, {}),
    "stoch-1-1-1": Case(ind.stoch, ind.Stoch, HLC, {"fastk": 1, "slowk": 1, "slowd": 1}),
    "stoch-14-3-5": Case(ind.stoch, ind.Stoch, HLC, {"fastk": 14, "slowk": 3, "slowd": 5}),
    "obv": Case(ind.obv, ind.OBV, ("close", "volume"), {}, crosses_zero=True),
    "vwap": Case(ind.vwap, ind.VWAP, HLCV, {}),
    "vwap-1": Case(ind.vwap, ind.VWAP, HLCV, {"period": 1}),
    "vwap-60": Case(ind.vwap, ind.VWAP, HLCV, {"period": 60}),
    "donchian-1": Case(ind.donchian, ind.Donchian, HL, {"period": 1}),
    "donchian-20": Case(ind.donchian, ind.Donchian, HL, {"period": 20}),
    "zscore-2": Case(ind.zscore, ind.ZScore, C, {"period": 2}, crosses_zero=True),
    "zscore-20": Case(ind.zscore, ind.ZScore, C, {"period": 20}, crosses_zero=True),
    "zscore-1500": Case(ind.zscore, ind.ZScore, C, {"period": 1500}, crosses_zero=True),
}


def _assert_twins(case: Case, bars: dict[str, np.ndarray]) -> None:
    expected = case.vectorised(bars)
    _, actual = case.streaming(bars)
    for col in range(expected.shape[1] if expected.ndim == 2 else 1):
        want = expected[:, col] if expected.ndim == 2 else expected
        got = actual[:, col] if actual.ndim == 2 else actual
        atol = 1e-9 * np.nanmax(np.abs(want)) if case.crosses_zero else 0.0
        assert_same_series(got, want, rtol=1e-9, atol=atol)


@pytest.mark.parametrize("name", CASES)
def test_streaming_equals_vectorised_on_btc_month(name: str, btc: dict[str, np.ndarray]) -> None:
    _assert_twins(CASES[name], btc)


@pytest.mark.parametrize("name", CASES)
def test_streaming_equals_vectorised_with_nan_gaps(
    name: str, btc_with_gaps: dict[str, np.ndarray]
) -> None:
    _assert_twins(CASES[name], btc_with_gaps)


@pytest.mark.parametrize(
    "name",
    [
        "sma-30",
        "ema-50",
        "rsi-14",
        "macd",
        "bbands-20",
        "adx-14",
        "stoch",
        "obv",
        "vwap-60",
        "donchian-20",
        "zscore-20",
    ],
)
def test_value_ready_and_reset(name: str, btc: dict[str, np.ndarray]) -> None:
    case = CASES[name]
    bars = {k: v[:500] for k, v in btc.items()}
    indicator, first = case.streaming(bars)
    last = first[-1]
    assert indicator.ready
    np.testing.assert_array_equal(np.asarray(indicator.value, dtype=float), last)

    indicator.reset()
    value = indicator.value
    assert not indicator.ready
    assert all(math.isnan(v) for v in (value if isinstance(value, tuple) else (value,)))
    again = stream(indicator, *(bars[k] for k in case.inputs))
    np.testing.assert_array_equal(again, first)


def test_ready_tracks_warm_up() -> None:
    sma = ind.SMA(3)
    states = []
    for x in (1.0, 2.0, 3.0, float("nan"), 4.0, 5.0, 6.0):
        sma.update(x)
        states.append(sma.ready)
    assert states == [False, False, True, False, False, False, True]
    assert sma.value == pytest.approx(5.0)


def test_streaming_objects_have_slots() -> None:
    for case in CASES.values():
        assert not hasattr(case.cls(**case.params), "__dict__"), case.cls.__name__
