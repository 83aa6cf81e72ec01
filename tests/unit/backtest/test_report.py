"""The HTML report, built from real BTC bars with hand-made trades and equity."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.offline
import pytest

from sapphire.backtest.metrics import compute_metrics, periods_per_year
from sapphire.backtest.report import (
    MAX_CANDLES,
    MAX_TRADE_ROWS,
    _candles,
    format_metric,
    write_report,
)
from sapphire.backtest.result import TRADE_COLUMNS, BacktestResult
from sapphire.report import minmax_indices
from sapphire.strategy.base import Bars

MINUTE_NS = 60 * 10**9
CASH = 100_000.0
FEE = 5e-4
QTY = 0.5


def make_result(df: pd.DataFrame, *, every: int, hold: int, params: dict | None = None):
    """Alternate long/short trades of QTY BTC: enter at bar i's open, exit at i+hold's close."""
    time_ns = df["timestamp"].dt.as_unit("ns").astype("int64").to_numpy()
    o, h, l, c, v = (
        df[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume")
    )
    bars = Bars(time_ns, o, h, l, c, v, MINUTE_NS)
    n = len(bars)
    equity = np.full(n, CASH)
    balance, rows = CASH, []
    for k, i in enumerate(range(1, n - hold, every)):
        side, j = (1, -1)[k % 2], i + hold
        fees = FEE * QTY * (o[i] + c[j])
        pnl = side * QTY * (c[j] - o[i]) - fees
        equity[i:j] = balance - FEE * QTY * o[i] + side * QTY * (c[i:j] - o[i])
        balance += pnl
        equity[j:] = balance
        rows.append(
            {
                "entry_time": df["timestamp"].iloc[i],
                "exit_time": df["timestamp"].iloc[j],
                "side": "long" if side == 1 else "short",
                "size": QTY,
                "entry_price": o[i],
                "exit_price": c[j],
                "pnl": pnl,
                "return": pnl / (QTY * o[i]),
                "fees": fees,
                "funding": 0.0,
                "exit_reason": ("signal", "take_profit", "stop_loss")[k % 3],
                "entry_bar": i,
                "exit_bar": j,
            }
        )
    trades = pd.DataFrame(rows, columns=TRADE_COLUMNS)
    metrics = compute_metrics(
        equity,
        initial_cash=CASH,
        periods_per_year=periods_per_year(MINUTE_NS),
        timeframe_ns=MINUTE_NS,
        trade_pnl=trades["pnl"].to_numpy(dtype=np.float64),
        trade_returns=trades["return"].to_numpy(dtype=np.float64),
        fees=float(trades["fees"].sum()),
        funding=0.0,
        bars_in_market=len(trades) * hold,
    )
    return BacktestResult(
        strategy="hand_made",
        params=params if params is not None else {"every": every, "hold": hold},
        config={"cash": CASH, "fee": FEE, "size": QTY, "fill_at": "open"},
        symbol="BTC/USD:USD",
        bars=bars,
        equity=pd.Series(equity, index=pd.DatetimeIndex(df["timestamp"]), name="equity"),
        metrics=metrics,
        _trades=lambda: trades,
        _orders=pd.DataFrame,
        _fills=pd.DataFrame,
    )


@pytest.fixture(scope="module")
def small(btc_df: pd.DataFrame) -> BacktestResult:
    """3,000 bars (no resampling), 15 trades."""
    return make_result(btc_df.iloc[:3000].reset_index(drop=True), every=200, hold=90)


@pytest.fixture(scope="module")
def month(btc_df: pd.DataFrame) -> BacktestResult:
    """The whole 45,031-bar month (resampled for display), ~1,125 trades."""
    return make_result(btc_df, every=40, hold=25)


def metric_cells(html: str) -> dict[str, str]:
    table = re.search(r'<table id="metrics">.*?</table>', html, re.S)
    assert table is not None
    return dict(
        re.findall(r'<tr data-key="(\w+)"><th>[^<]*</th><td class="num">([^<]*)</td>', table[0])
    )


def test_default_path_is_under_sapphire_home(small: BacktestResult, sapphire_home: Path) -> None:
    path = write_report(small)
    assert path.parent == sapphire_home / "reports"
    assert re.fullmatch(r"hand_made-BTC_USD_USD-\d{8}T\d{6}Z\.html", path.name), path.name
    assert path.stat().st_size > 1_000_000
    # A second report in the same second gets its own file.
    assert write_report(small) != path


def test_self_contained_with_stable_ids(small: BacktestResult) -> None:
    html = write_report(small).read_text(encoding="utf-8")
    assert plotly.offline.get_plotlyjs() in html  # the whole plotly.js bundle is inlined
    assert re.search(r'<(script|link)[^>]*(src|href)="(https?:)?//', html) is None
    assert '<script src="http' not in html
    for element_id in ("sapphire-chart", "metrics", "trades", "params", "config"):
        assert f'id="{element_id}"' in html, element_id
    assert "hand_made on BTC/USD:USD" in html
    # The sample has gaps: its 3,000th bar opens on Jan 3.
    assert "2021-12-31 23:01:00 → 2022-01-03 01:00:00 UTC, 3,000 bars" in html
    assert 'id="display-note"' not in html  # 3,000 bars are drawn as they are


def test_warnings_are_shown_first(btc_df: pd.DataFrame) -> None:
    result = make_result(btc_df.iloc[:300].reset_index(drop=True), every=50, hold=10)
    assert 'id="warning-0"' not in write_report(result).read_text(encoding="utf-8")
    result.warnings.append("bars <2022> were in the model's training window")
    html = write_report(result).read_text(encoding="utf-8")
    warning = html.index('id="warning-0"')
    assert warning < html.index('id="metrics"')
    assert "Warning: bars &lt;2022&gt; were in the model&#x27;s training window" in html


def test_metrics_are_formatted(small: BacktestResult) -> None:
    m = small.metrics
    cells = metric_cells(write_report(small).read_text(encoding="utf-8"))
    assert list(cells) == list(m)
    assert cells["total_return"] == f"{m['total_return']:.2%}"
    assert cells["max_drawdown"] == f"{m['max_drawdown']:.2%}"
    assert cells["win_rate"] == f"{m['win_rate']:.2%}"
    assert cells["exposure"] == f"{m['exposure']:.2%}"
    assert cells["sharpe"] == f"{m['sharpe']:.2f}"
    assert cells["profit_factor"] == f"{m['profit_factor']:.2f}"
    assert cells["final_equity"] == f"{m['final_equity']:,.2f}"
    assert cells["start_equity"] == "100,000.00"
    assert cells["n_trades"] == "15"
    assert re.fullmatch(r"\d+\.\d\d days", cells["max_drawdown_duration_days"])


def test_all_trades_listed_when_few(small: BacktestResult) -> None:
    html = write_report(small).read_text(encoding="utf-8")
    table = re.search(r'<table id="trades">.*?</table>', html, re.S)
    assert table is not None
    assert table[0].count('<tr class="trade ') == len(small.trades) == 15
    wins = int((small.trades["pnl"] > 0).sum())
    assert table[0].count('<tr class="trade win">') == wins
    first = small.trades.iloc[0]
    assert f"<td>{first['entry_time']:%Y-%m-%d %H:%M:%S}</td>" in table[0]
    assert f"{first['pnl']:,.2f}</td>" in table[0]
    assert "take_profit" in table[0]
    assert 'id="trades-note"' not in html


def test_large_run_is_resampled_and_trades_truncated(month: BacktestResult) -> None:
    path = write_report(month)
    html = path.read_text(encoding="utf-8")
    n_trades = len(month.trades)
    assert n_trades > 1000
    table = re.search(r'<table id="trades">.*?</table>', html, re.S)
    assert table is not None
    assert table[0].count('<tr class="trade ') == 500
    assert f"… {n_trades - 500:,} trades not shown …" in table[0]
    assert f"{n_trades:,} trades: the first 250 and the last 250 are listed." in html
    last = month.trades.iloc[-1]
    assert f"<td>{last['exit_time']:%Y-%m-%d %H:%M:%S}</td>" in table[0]
    note = re.search(r'<p class="note" id="display-note">([^<]*)</p>', html)
    assert note is not None
    assert "45,031 bars are drawn as 15,011 candles of 3 bars each" in note[1]
    assert "lines decimated" in note[1]
    # A few MB: mostly the 4.8 MB plotly.js bundle.
    assert path.stat().st_size < 9_000_000


def test_candle_aggregation_matches_pandas(month: BacktestResult, btc_df: pd.DataFrame) -> None:
    x, (o, h, l, c), group = _candles(month)
    assert group == 3
    assert len(x) == math.ceil(len(btc_df) / 3) <= MAX_CANDLES
    groups = btc_df.groupby(np.arange(len(btc_df)) // 3)
    expected = groups.agg(
        open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last")
    )
    np.testing.assert_array_equal(o, expected["open"])
    np.testing.assert_array_equal(h, expected["high"])
    np.testing.assert_array_equal(l, expected["low"])
    np.testing.assert_array_equal(c, expected["close"])
    first_ms = btc_df["timestamp"].iloc[::3].dt.as_unit("ms").astype("int64").to_numpy()
    np.testing.assert_array_equal(x, first_ms)


def test_line_decimation_keeps_extremes(month: BacktestResult) -> None:
    drawdown = month.drawdown.to_numpy()
    idx = minmax_indices(drawdown, 2_000)
    assert len(idx) <= 2_002
    assert np.all(np.diff(idx) > 0)
    assert (idx[0], idx[-1]) == (0, len(drawdown) - 1)
    assert drawdown[idx].min() == drawdown.min()
    assert drawdown.min() == pytest.approx(month.metrics["max_drawdown"], rel=1e-12)
    equity = month.equity.to_numpy()
    keep = minmax_indices(equity, 2_000)
    assert (equity[keep].min(), equity[keep].max()) == (equity.min(), equity.max())
    np.testing.assert_array_equal(minmax_indices(equity[:100], 2_000), np.arange(100))


def test_user_strings_are_escaped(btc_df: pd.DataFrame) -> None:
    result = make_result(
        btc_df.iloc[:500].reset_index(drop=True),
        every=100,
        hold=10,
        params={"label": "<script>alert(1)</script>", "windows": [5, 20]},
    )
    html = write_report(result).read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "[5, 20]" in html


def test_explicit_path_and_plot(small: BacktestResult, tmp_path: Path, sapphire_home: Path) -> None:
    target = tmp_path / "deep" / "er" / "report.html"
    assert write_report(small, target) == target
    assert target.exists()
    via_plot = small.plot()
    assert via_plot.parent == sapphire_home / "reports"
    assert via_plot.exists()


def test_open_browser(small: BacktestResult, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    path = write_report(small, open_browser=True)
    assert opened == [path.resolve().as_uri()]


def test_no_trades(btc_df: pd.DataFrame) -> None:
    result = make_result(btc_df.iloc[:100].reset_index(drop=True), every=10_000, hold=200)
    assert result.trades.empty
    html = write_report(result).read_text(encoding="utf-8")
    assert "No closed trades." in html
    cells = metric_cells(html)
    assert cells["n_trades"] == "0"
    assert cells["win_rate"] == cells["profit_factor"] == "—"
    assert cells["total_return"] == "0.00%"


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("total_return", 0.12345, "12.35%"),
        ("max_drawdown", -0.5, "-50.00%"),
        ("sharpe", 1.23456, "1.23"),
        ("profit_factor", math.inf, "∞"),
        ("sortino", -math.inf, "−∞"),
        ("calmar", math.nan, "—"),
        ("final_equity", 1234567.891, "1,234,567.89"),
        ("funding", -3.14159, "-3.14"),
        ("n_trades", 12345, "12,345"),
        ("max_drawdown_duration_days", 2.5, "2.50 days"),
        ("something_new", 0.000123456789, "0.000123457"),
    ],
)
def test_format_metric(key: str, value: float, text: str) -> None:
    assert format_metric(key, value) == text


def test_report_of_a_real_backtest(btc_df: pd.DataFrame, sapphire_home: Path) -> None:
    from sapphire import Backtest

    result = Backtest(btc_df, "sma_cross", size=0.1).run()
    n = len(result.trades)
    assert n > MAX_TRADE_ROWS
    path = result.plot()
    assert path.parent == sapphire_home / "reports"
    assert path.name.startswith("sma_cross-")
    html = path.read_text(encoding="utf-8")
    cells = metric_cells(html)
    assert cells == {k: format_metric(k, v) for k, v in result.metrics.items()}
    assert cells["n_trades"] == f"{n:,}"
    table = re.search(r'<table id="trades">.*?</table>', html, re.S)
    assert table is not None
    assert table[0].count('<tr class="trade ') == MAX_TRADE_ROWS
    assert f"… {n - MAX_TRADE_ROWS:,} trades not shown …" in table[0]
    assert "45,031 bars are drawn as 15,011 candles" in html
    assert "<th>fast</th><td>10</td>" in html  # strategy parameters
    assert "<th>cash</th><td>10000.0</td>" in html  # backtest configuration
