"""The HTML report renders in a real headless Chromium: candles, markers, three panels."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sapphire.backtest.metrics import compute_metrics, periods_per_year
from sapphire.backtest.report import write_report
from sapphire.backtest.result import TRADE_COLUMNS, BacktestResult
from sapphire.strategy.base import Bars

pytestmark = pytest.mark.browser

MINUTE_NS = 60 * 10**9
CASH = 100_000.0


def chromium() -> str:
    """Path of the Chromium binary; skip without it (fail on CI, where it is installed)."""
    path = shutil.which("chromium") or shutil.which("/usr/bin/chromium")
    if path is None:
        reason = "Debian chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must provide it (.ci/run installs it)")
        pytest.skip(reason)
    return path


def month_result(df: pd.DataFrame) -> BacktestResult:
    """The real 45,031-bar month with a long 1 BTC trade of 600 bars every 1,500 bars."""
    time_ns = df["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    cols = [df[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume")]
    bars = Bars(time_ns, *cols, MINUTE_NS)
    o, c = bars.open, bars.close
    equity, balance, rows = np.full(len(bars), CASH), CASH, []
    for k, i in enumerate(range(1, len(bars) - 600, 1500)):
        side, j = (1, -1)[k % 2], i + 600
        pnl = side * (c[j] - o[i])
        equity[i:j] = balance + side * (c[i:j] - o[i])
        balance += pnl
        equity[j:] = balance
        t_in, t_out = df["timestamp"].iloc[i], df["timestamp"].iloc[j]
        side_name = "long" if side == 1 else "short"
        rows.append(
            [t_in, t_out, side_name, 1.0, o[i], c[j], pnl, pnl / o[i], 0.0, 0.0, "signal", i, j]
        )
    trades = pd.DataFrame(rows, columns=TRADE_COLUMNS)
    metrics = compute_metrics(
        equity,
        initial_cash=CASH,
        periods_per_year=periods_per_year(MINUTE_NS),
        timeframe_ns=MINUTE_NS,
        trade_pnl=trades["pnl"].to_numpy(dtype=np.float64),
        trade_returns=trades["return"].to_numpy(dtype=np.float64),
        fees=0.0,
        funding=0.0,
        bars_in_market=600 * len(trades),
    )
    return BacktestResult(
        strategy="browser_check",
        params={"every": 1500, "hold": 600},
        config={"cash": CASH, "fee": 0.0},
        symbol="BTC/USD:USD",
        bars=bars,
        equity=pd.Series(equity, index=pd.DatetimeIndex(df["timestamp"])),
        metrics=metrics,
        _trades=lambda: trades,
        _orders=pd.DataFrame,
        _fills=pd.DataFrame,
    )


def render(page: Path, tmp_path: Path, screenshot: Path) -> str:
    """The DOM of `page` after headless Chromium ran its scripts (and a screenshot)."""
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--window-size=1400,1600",
            f"--screenshot={screenshot}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_report_renders_in_chromium(btc_df: pd.DataFrame, tmp_path: Path) -> None:
    chromium()
    result = month_result(btc_df)
    report = write_report(result)
    screenshot = tmp_path / "report.png"
    dom = render(report, tmp_path, screenshot)

    # Plotly drew its SVG: one cartesian layer, three y-axes sharing the x-axis.
    assert 'class="main-svg"' in dom
    assert dom.count('class="cartesianlayer"') == 1
    for axis in ("ytick", "y2tick", "y3tick"):
        assert f'class="{axis}"' in dom, axis
    # Every (display-resampled) candle is a box path of the candlestick trace.
    assert dom.count('class="trace boxes"') == 1
    assert dom.count('class="box"') == 15_011
    # One marker per entry and per exit.
    assert dom.count('<path class="point"') == 2 * len(result.trades) == 60
    # The equity line and the filled drawdown area.
    assert dom.count('class="js-line"') >= 2
    assert dom.count('class="js-fill"') >= 1
    for name in ("long entry", "short entry", "exit (win)", "exit (loss)", "equity", "drawdown"):
        assert f">{name}</text>" in dom, name

    metrics = re.search(r'<table id="metrics">.*?</table>', dom, re.S)
    trades = re.search(r'<table id="trades">.*?</table>', dom, re.S)
    assert metrics is not None and metrics[0].count("<tr") == len(result.metrics)
    assert trades is not None and trades[0].count('<tr class="trade') == len(result.trades)
    assert "45,031 bars are drawn as 15,011 candles" in dom

    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 50_000  # a blank page is a few KB


def test_ml_evaluation_report_renders_in_chromium(btc_df: pd.DataFrame, tmp_path: Path) -> None:
    chromium()
    from sapphire.backtest.runner import bars_from_frame
    from sapphire.ml.evaluate import evaluate
    from sapphire.ml.models import ModelSpec
    from sapphire.ml.pipeline import TrainConfig, train

    config = TrainConfig(model=ModelSpec.parse("lightgbm:n_estimators=30"), n_groups=4)
    train(bars_from_frame(btc_df.iloc[:6000].reset_index(drop=True)), config).register("web")
    later = bars_from_frame(btc_df.iloc[6000:12000].reset_index(drop=True))
    report = evaluate("web@1", later).report(tmp_path / "ml.html")
    screenshot = tmp_path / "ml.png"
    dom = render(report, tmp_path, screenshot)
    # four figures drawn by Plotly: IC per day, the two importance panels, equity + drawdown
    assert dom.count('class="main-svg"') >= 4
    for section in ("ic-over-time", "feature-importance", "model-equity"):
        figure = re.search(rf'<div id="{section}".*?class="main-svg"', dom, re.S)
        assert figure is not None, section
    folds = re.search(r'<table id="cv-folds">.*?</table>', dom, re.S)
    assert folds is not None and folds[0].count("<tr") == 1 + 6  # header + C(4, 2) splits
    assert ">rank IC per day</text>" in dom
    assert screenshot.stat().st_size > 50_000
