"""Bad parameters and misaligned inputs fail fast with a message naming the bad value."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import sapphire.indicators as ind

X = np.linspace(1.0, 2.0, 30)

# (callable taking the period, what the message calls it, minimum accepted)
PERIOD_USERS: dict[str, tuple[Callable[[Any], Any], str, int]] = {
    "sma": (lambda p: ind.sma(X, p), "sma: period", 1),
    "ema": (lambda p: ind.ema(X, p), "ema: period", 1),
    "wma": (lambda p: ind.wma(X, p), "wma: period", 1),
    "rsi": (lambda p: ind.rsi(X, p), "rsi: period", 1),
    "macd-fast": (lambda p: ind.macd(X, fast=p), "macd: fast", 1),
    "macd-slow": (lambda p: ind.macd(X, fast=1, slow=p), "macd: slow", 1),
    "macd-signal": (lambda p: ind.macd(X, signal=p), "macd: signal", 1),
    "bbands": (lambda p: ind.bbands(X, p), "bbands: period", 2),
    "atr": (lambda p: ind.atr(X, X, X, p), "atr: period", 1),
    "adx": (lambda p: ind.adx(X, X, X, p), "adx: period", 1),
    "stoch-fastk": (lambda p: ind.stoch(X, X, X, fastk=p), "stoch: fastk", 1),
    "stoch-slowk": (lambda p: ind.stoch(X, X, X, slowk=p), "stoch: slowk", 1),
    "stoch-slowd": (lambda p: ind.stoch(X, X, X, slowd=p), "stoch: slowd", 1),
    "vwap": (lambda p: ind.vwap(X, X, X, X, p), "vwap: period", 1),
    "donchian": (lambda p: ind.donchian(X, X, p), "donchian: period", 1),
    "zscore": (lambda p: ind.zscore(X, p), "zscore: period", 2),
    "SMA": (lambda p: ind.SMA(p), "SMA: period", 1),
    "EMA": (lambda p: ind.EMA(p), "EMA: period", 1),
    "WMA": (lambda p: ind.WMA(p), "WMA: period", 1),
    "RSI": (lambda p: ind.RSI(p), "RSI: period", 1),
    "MACD": (lambda p: ind.MACD(slow=p, fast=1), "MACD: slow", 1),
    "BBands": (lambda p: ind.BBands(p), "BBands: period", 2),
    "ATR": (lambda p: ind.ATR(p), "ATR: period", 1),
    "ADX": (lambda p: ind.ADX(p), "ADX: period", 1),
    "Stoch": (lambda p: ind.Stoch(fastk=p), "Stoch: fastk", 1),
    "VWAP": (lambda p: ind.VWAP(p), "VWAP: period", 1),
    "Donchian": (lambda p: ind.Donchian(p), "Donchian: period", 1),
    "ZScore": (lambda p: ind.ZScore(p), "ZScore: period", 2),
}


@pytest.mark.parametrize("name", PERIOD_USERS)
def test_period_below_minimum_is_rejected(name: str) -> None:
    call, label, minimum = PERIOD_USERS[name]
    bad = minimum - 1
    expected = f"{label} must be an integer >= {minimum}, got {bad}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        call(bad)
    call(minimum)  # the minimum itself is fine


@pytest.mark.parametrize("bad", [2.5, 14.0, "14", None, True, -3])
def test_period_must_be_an_integer(bad: object) -> None:
    with pytest.raises(
        ValueError, match=re.escape(f"sma: period must be an integer >= 1, got {bad!r}")
    ):
        ind.sma(X, bad)  # type: ignore[arg-type]


def test_numpy_integer_period_is_accepted() -> None:
    np.testing.assert_array_equal(ind.sma(X, np.int64(3)), ind.sma(X, 3))


def test_macd_fast_must_not_exceed_slow() -> None:
    with pytest.raises(
        ValueError, match=re.escape("macd: fast must be <= slow, got fast=26, slow=12")
    ):
        ind.macd(X, fast=26, slow=12)
    with pytest.raises(ValueError, match="MACD: fast must be <= slow"):
        ind.MACD(fast=26, slow=12)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "2"])
def test_bbands_nbdev_must_be_finite_and_non_negative(bad: object) -> None:
    with pytest.raises(ValueError, match="bbands: nbdev must be a finite number >= 0"):
        ind.bbands(X, 5, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="BBands: nbdev must be a finite number >= 0"):
        ind.BBands(5, bad)  # type: ignore[arg-type]


SHORT = X[:-1]
MISALIGNED: dict[str, tuple[Callable[[], Any], str]] = {
    "atr": (
        lambda: ind.atr(X, SHORT, X),
        "atr: inputs must have the same length, got high=30, low=29, close=30",
    ),
    "adx": (
        lambda: ind.adx(X, X, SHORT),
        "adx: inputs must have the same length, got high=30, low=30, close=29",
    ),
    "stoch": (
        lambda: ind.stoch(SHORT, X, X),
        "stoch: inputs must have the same length, got high=29, low=30, close=30",
    ),
    "obv": (
        lambda: ind.obv(X, SHORT),
        "obv: inputs must have the same length, got close=30, volume=29",
    ),
    "vwap": (
        lambda: ind.vwap(X, X, X, SHORT),
        "vwap: inputs must have the same length, got high=30, low=30, close=30, volume=29",
    ),
    "donchian": (
        lambda: ind.donchian(SHORT, X),
        "donchian: inputs must have the same length, got high=29, low=30",
    ),
    "crossed_above": (
        lambda: ind.crossed_above(X, SHORT),
        "crossed_above: inputs must have the same length, got a=30, b=29",
    ),
    "crossed_below": (
        lambda: ind.crossed_below(SHORT, X),
        "crossed_below: inputs must have the same length, got a=29, b=30",
    ),
}


@pytest.mark.parametrize("name", MISALIGNED)
def test_length_mismatch_names_both_lengths(name: str) -> None:
    call, message = MISALIGNED[name]
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_input_must_be_one_dimensional_and_numeric() -> None:
    with pytest.raises(
        ValueError, match=re.escape("sma: x must be one-dimensional, got shape (2, 15)")
    ):
        ind.sma(X.reshape(2, 15), 3)
    with pytest.raises(ValueError, match=re.escape("ema: x must be one-dimensional, got shape ()")):
        ind.ema(5.0, 3)
    with pytest.raises(ValueError, match="rsi: close must be numeric"):
        ind.rsi(["a", "b"], 3)


def test_any_array_like_is_accepted_and_outputs_are_float64() -> None:
    values = [1, 2, 3, 4, 5]
    out = ind.sma(values, 2)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [np.nan, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_array_equal(ind.sma(np.array(values, dtype=np.int32), 2), out)
    np.testing.assert_array_equal(ind.sma(np.arange(10.0)[::2], 2), [np.nan, 1, 3, 5, 7])


def test_empty_and_short_inputs() -> None:
    assert ind.sma([], 3).shape == (0,)
    assert ind.crossed_above([], []).shape == (0,)
    assert np.isnan(ind.ema([1.0, 2.0], 3)).all()
    assert all(np.isnan(a).all() for a in ind.macd(np.arange(20.0)))
