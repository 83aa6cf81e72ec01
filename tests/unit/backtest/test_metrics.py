"""Metrics: agreement with empyrical on real and random equity curves, hand-made cases."""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterator
from typing import Any

import empyrical
import numpy as np
import pandas as pd
import pytest

from sapphire.backtest.metrics import (
    METRIC_KEYS,
    compute_metrics,
    drawdown_stats,
    periods_per_year,
)

MINUTE_NS = 60 * 10**9
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
CASH = 10_000.0


@pytest.fixture(autouse=True)
def _no_warnings() -> Iterator[None]:
    """Every metric must be computed without a RuntimeWarning (0/0, overflow...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def metrics(
    equity: Any,
    *,
    cash: float = CASH,
    timeframe_ns: int = MINUTE_NS,
    pnl: Any = (),
    returns: Any = None,
    bars_in_market: int = 0,
) -> dict[str, float]:
    pnl_arr = np.asarray(pnl, dtype=np.float64)
    ret_arr = pnl_arr / 1000.0 if returns is None else np.asarray(returns, dtype=np.float64)
    return compute_metrics(
        np.asarray(equity, dtype=np.float64),
        initial_cash=cash,
        periods_per_year=periods_per_year(timeframe_ns),
        timeframe_ns=timeframe_ns,
        trade_pnl=pnl_arr,
        trade_returns=ret_arr,
        fees=1.5,
        funding=-0.25,
        bars_in_market=bars_in_market,
    )


def bar_returns(equity: np.ndarray, cash: float) -> np.ndarray:
    return equity / np.concatenate(([cash], equity[:-1])) - 1.0


def sma_cross_equity(close: np.ndarray, cash: float) -> np.ndarray:
    """Equity of a long/short 60-bar SMA trend follower with a 5 bps cost per switch."""
    sma = pd.Series(close).rolling(60, min_periods=1).mean().to_numpy()
    position = np.where(close > sma, 1.0, -1.0)
    held = np.concatenate(([0.0], position[:-1]))
    switches = np.abs(np.diff(np.concatenate(([0.0], held))))
    close_ret = np.concatenate(([0.0], close[1:] / close[:-1] - 1.0))
    return cash * np.cumprod(1.0 + held * close_ret - switches * 5e-4)


def equity_curves(btc_df: pd.DataFrame) -> dict[str, np.ndarray]:
    close = btc_df["close"].to_numpy(dtype=np.float64)
    rng = np.random.default_rng(7)
    return {
        "btc_buy_and_hold": CASH * close / close[0],
        "btc_3x_short": CASH * (1.0 - 3.0 * (close / close[0] - 1.0)),
        "btc_sma_cross": sma_cross_equity(close, CASH),
        "random_walk": CASH * np.cumprod(1.0 + rng.normal(2e-5, 1e-3, 200_000)),
    }


@pytest.mark.parametrize(
    "name", ["btc_buy_and_hold", "btc_3x_short", "btc_sma_cross", "random_walk"]
)
def test_matches_empyrical(btc_df: pd.DataFrame, name: str) -> None:
    equity = equity_curves(btc_df)[name]
    ppy = periods_per_year(MINUTE_NS)
    r = bar_returns(equity, CASH)
    m = metrics(equity)
    expected = {
        "total_return": empyrical.cum_returns_final(r),
        "cagr": empyrical.cagr(r, annualization=ppy),
        "volatility": empyrical.annual_volatility(r, annualization=ppy),
        "sharpe": empyrical.sharpe_ratio(r, annualization=ppy),
        "sortino": empyrical.sortino_ratio(r, annualization=ppy),
        "calmar": empyrical.calmar_ratio(r, annualization=ppy),
        "max_drawdown": empyrical.max_drawdown(r),
    }
    assert expected["cagr"] == pytest.approx(empyrical.annual_return(r, annualization=ppy))
    for key, value in expected.items():
        assert m[key] == pytest.approx(float(value), rel=1e-9, abs=0.0), key
    assert m["max_drawdown"] < 0
    assert m["final_equity"] == equity[-1]


def test_btc_sanity(btc_df: pd.DataFrame) -> None:
    close = btc_df["close"].to_numpy(dtype=np.float64)
    m = metrics(CASH * close / close[0], bars_in_market=len(close))
    assert m["total_return"] == pytest.approx(close[-1] / close[0] - 1.0, rel=1e-12)
    # BTC peaked at 47,988 on Jan 2 and fell to 33,061 on Jan 24: a -31 % drawdown
    # that the month (ending at 38,544) never recovers, so it runs to the last bar.
    top = int(np.argmax(close))
    assert m["max_drawdown"] == pytest.approx(close.min() / close.max() - 1.0, rel=1e-12)
    assert m["exposure"] == 1.0
    assert m["max_drawdown_duration_days"] == pytest.approx((len(close) - 1 - top) / 1440)
    assert drawdown_stats(CASH * close / close[0], CASH)[1] == len(close) - 1 - top


def test_drawdown_matches_pandas_definition(btc_df: pd.DataFrame) -> None:
    equity = equity_curves(btc_df)["btc_sma_cross"]
    peak = pd.Series(equity).cummax().clip(lower=CASH)
    max_dd, _ = drawdown_stats(equity, CASH)
    assert max_dd == pytest.approx((equity / peak - 1.0).min(), rel=1e-12)


def reference_duration(equity: np.ndarray, cash: float) -> int:
    """Longest span (bars) from a peak to its recovery or to the end, by brute force."""
    points = np.concatenate(([cash], equity))  # index 0 = the initial cash, before bar 0
    longest = 0
    for start in range(len(points)):
        if start and points[start] < points[:start].max():
            continue  # not a peak
        later = np.flatnonzero(points[start + 1 :] >= points[start])
        # The span only counts when the equity actually fell below the peak.
        if later.size and later[0] == 0:
            continue
        end = start + 1 + later[0] if later.size else len(points) - 1
        longest = max(longest, end - start)
    return longest


@pytest.mark.parametrize("seed", range(6))
def test_duration_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    equity = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.02, 400))
    equity[rng.integers(0, 400, 20)] = 100.0  # exact ties with the initial peak
    assert drawdown_stats(equity, 100.0)[1] == reference_duration(equity, 100.0)


@pytest.mark.parametrize(
    ("equity", "max_dd", "bars"),
    [
        ([100, 90, 95, 100, 110], -0.10, 3),  # peak at bar 0, recovered at bar 3
        ([110, 100, 105], -10 / 110, 2),  # never recovered: runs to the last bar
        ([90, 80, 100], -0.20, 3),  # the initial cash is the first peak
        ([100, 50, 100, 99, 99, 99, 99, 101], -0.50, 5),  # longest is not deepest
        ([101, 102, 103], 0.0, 0),  # no drawdown
        ([100, 100, 100], 0.0, 0),  # flat: equal to the peak is no drawdown
    ],
)
def test_drawdown_hand_cases(equity: list[float], max_dd: float, bars: int) -> None:
    assert drawdown_stats(np.array(equity, dtype=float), 100.0) == (pytest.approx(max_dd), bars)


def test_duration_in_days_uses_timeframe() -> None:
    m = metrics([100, 50, 100, 99, 99, 99, 99, 101], cash=100.0, timeframe_ns=HOUR_NS)
    assert m["max_drawdown_duration_days"] == pytest.approx(5 / 24)
    assert m["max_drawdown"] == pytest.approx(-0.5)


def test_hand_computed_returns_metrics() -> None:
    equity = [110.0, 99.0, 108.9]  # returns +10 %, -10 %, +10 %
    m = metrics(equity, cash=100.0, timeframe_ns=DAY_NS)
    r = np.array([0.1, -0.1, 0.1])
    mean, std = r.mean(), r.std(ddof=1)
    assert m["total_return"] == pytest.approx(0.089)
    assert m["cagr"] == pytest.approx(1.089 ** (365 / 3) - 1)
    assert m["volatility"] == pytest.approx(std * math.sqrt(365))
    assert m["sharpe"] == pytest.approx(mean / std * math.sqrt(365))
    downside = math.sqrt(0.01 / 3)  # one -10 % bar in three
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(365))
    assert m["max_drawdown"] == pytest.approx(-0.1)
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.1)
    # Peak at bar 0 (110), still below it at the last bar: two bars of one day.
    assert m["max_drawdown_duration_days"] == pytest.approx(2.0)
    assert (m["start_equity"], m["final_equity"]) == (100.0, 108.9)


def test_trade_statistics_by_hand() -> None:
    pnl = [10.0, -5.0, 0.0, 20.0, -15.0]
    returns = [0.01, -0.005, 0.0, 0.02, -0.015]
    m = metrics([CASH] * 10, pnl=pnl, returns=returns, bars_in_market=4)
    assert m["n_trades"] == 5
    assert m["win_rate"] == pytest.approx(0.4)  # a zero-pnl trade is not a win
    assert m["profit_factor"] == pytest.approx(30 / 20)
    assert m["expectancy"] == pytest.approx(2.0)
    assert m["avg_trade"] == pytest.approx(0.002)
    assert m["best_trade"] == pytest.approx(0.02)
    assert m["worst_trade"] == pytest.approx(-0.015)
    assert m["exposure"] == pytest.approx(0.4)
    assert (m["fees"], m["funding"]) == (1.5, -0.25)


def test_profit_factor_edges() -> None:
    assert metrics([CASH], pnl=[5.0, 3.0])["profit_factor"] == math.inf
    only_losses = metrics([CASH], pnl=[-5.0, -3.0])
    assert only_losses["profit_factor"] == 0.0
    assert only_losses["win_rate"] == 0.0
    breakeven = metrics([CASH], pnl=[0.0, 0.0])
    assert math.isnan(breakeven["profit_factor"])
    assert breakeven["expectancy"] == 0.0


def test_no_trades() -> None:
    m = metrics([CASH, CASH * 1.01])
    assert m["n_trades"] == 0
    for key in (
        "win_rate",
        "profit_factor",
        "expectancy",
        "avg_trade",
        "best_trade",
        "worst_trade",
    ):
        assert math.isnan(m[key]), key
    assert m["total_return"] == pytest.approx(0.01)


def test_zero_bars() -> None:
    m = metrics([], pnl=[])
    assert (m["start_equity"], m["final_equity"], m["total_return"]) == (CASH, CASH, 0.0)
    for key in ("cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown", "exposure"):
        assert math.isnan(m[key]), key
    assert math.isnan(m["max_drawdown_duration_days"])
    assert drawdown_stats(np.array([]), CASH)[1] == 0


def test_one_bar() -> None:
    m = metrics([CASH * 1.02], timeframe_ns=DAY_NS)
    assert m["total_return"] == pytest.approx(0.02)
    assert m["cagr"] == pytest.approx(1.02**365 - 1)
    for key in ("volatility", "sharpe", "sortino"):
        assert math.isnan(m[key]), key


def test_flat_equity_has_nan_ratios_and_no_warning() -> None:
    m = metrics(np.full(1000, CASH), bars_in_market=0)
    assert math.isnan(m["sharpe"])
    assert math.isnan(m["sortino"])
    assert math.isnan(m["calmar"])  # no drawdown
    assert m["volatility"] == 0.0
    assert (m["cagr"], m["total_return"], m["max_drawdown"]) == (0.0, 0.0, 0.0)
    assert m["max_drawdown_duration_days"] == 0.0
    assert m["exposure"] == 0.0


def test_constant_returns_follow_empyrical() -> None:
    equity = CASH * 2.0 ** np.arange(1, 6)  # every bar exactly +100 %
    r = bar_returns(equity, CASH)
    ppy = periods_per_year(DAY_NS)
    m = metrics(equity, timeframe_ns=DAY_NS)
    assert m["sharpe"] == math.inf == empyrical.sharpe_ratio(r, annualization=ppy)
    assert m["sortino"] == math.inf == empyrical.sortino_ratio(r, annualization=ppy)
    assert m["volatility"] == 0.0


def test_equity_below_zero() -> None:
    m = metrics([50.0, -10.0, -20.0], cash=100.0, pnl=[-120.0])
    assert m["cagr"] == -1.0
    assert m["total_return"] == pytest.approx(-1.2)
    assert m["max_drawdown"] == pytest.approx(-1.2)
    assert m["max_drawdown_duration_days"] == pytest.approx(3 / 1440)
    assert m["calmar"] == pytest.approx(-1.0 / 1.2)


def test_equity_hitting_exactly_zero_does_not_raise() -> None:
    m = metrics([50.0, 0.0, 0.0], cash=100.0)
    assert m["cagr"] == -1.0
    assert m["max_drawdown"] == -1.0
    assert math.isnan(m["sharpe"])  # 0 / 0 return after the ruin


def test_cagr_overflow_is_inf() -> None:
    m = metrics([CASH * 1e6], timeframe_ns=MINUTE_NS)
    assert m["cagr"] == math.inf
    assert math.isnan(m["calmar"])


def test_output_is_plain_and_json_ready(btc_df: pd.DataFrame) -> None:
    m = metrics(equity_curves(btc_df)["btc_sma_cross"], pnl=[1.0, -2.0, 3.0])
    assert tuple(m) == METRIC_KEYS
    assert all(type(v) in (float, int) for v in m.values()), m
    assert type(m["n_trades"]) is int
    assert json.loads(json.dumps(m)) == pytest.approx(m)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="initial cash must be positive, got 0"):
        metrics([1.0], cash=0.0)
    with pytest.raises(ValueError, match="differ in length: 2 != 1"):
        metrics([1.0], pnl=[1.0, 2.0], returns=[0.1])
    with pytest.raises(ValueError, match="positive number of nanoseconds, got 0"):
        periods_per_year(0)


def test_periods_per_year() -> None:
    assert periods_per_year(MINUTE_NS) == 525_600.0
    assert periods_per_year(DAY_NS) == 365.0
    assert periods_per_year(8 * HOUR_NS) == 1095.0


def test_million_bars_is_fast() -> None:
    rng = np.random.default_rng(1)
    equity = CASH * np.cumprod(1.0 + rng.normal(0.0, 1e-3, 1_000_000))
    metrics(equity[:10])  # compile / load the cached kernel
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        metrics(equity, pnl=rng.normal(0.0, 1.0, 10_000))
        best = min(best, time.perf_counter() - start)
    # ~5 ms on a 2-core CI VM; a pandas or pure-Python path would take > 100 ms.
    assert best < 0.04


def test_a_ruined_account_has_no_return_based_ratios() -> None:
    # equity crosses zero: the bar returns around it are meaningless (a -150% bar then
    # a "+" bar from a negative base), so the ratios are undefined, not huge numbers
    equity = np.array([10_000.0, 5_000.0, -2_500.0, -1_000.0, 3_000.0])
    m = compute_metrics(
        equity,
        initial_cash=10_000.0,
        periods_per_year=365 * 1440,
        timeframe_ns=60_000_000_000,
        trade_pnl=np.array([-7_000.0]),
        trade_returns=np.array([-0.7]),
        fees=0.0,
        funding=0.0,
        bars_in_market=5,
    )
    for key in ("volatility", "sharpe", "sortino"):
        assert np.isnan(m[key]), key
    assert m["total_return"] == pytest.approx(-0.7)
    assert m["max_drawdown"] == pytest.approx(-1.25)
    assert m["calmar"] == pytest.approx(m["cagr"] / 1.25)  # CAGR-based: still defined
