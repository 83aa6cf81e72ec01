"""The `Backtest` API: inputs, options, validation and result shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sapphire import Backtest, Bars, Param, Signals, Strategy
from sapphire.backtest import TRADE_COLUMNS, align_funding, bars_from_frame
from sapphire.data import DataError
from sapphire.engine.config import RunConfig


class EveryN(Strategy):
    """Enter long every `n` bars, exit `hold` bars later (deterministic, for tests)."""

    n = Param(500, low=2, high=100_000)
    hold = Param(100, low=1, high=100_000)
    short = Param(False)

    def signals(self, bars: Bars) -> Signals:
        idx = np.arange(len(bars))
        enter = idx % self.n == 0
        leave = idx % self.n == self.hold
        if self.short:
            return Signals(enter_short=enter, exit_short=leave)
        return Signals(enter_long=enter, exit_long=leave)


def test_result_has_the_documented_shapes(btc_df: pd.DataFrame) -> None:
    r = Backtest(btc_df, EveryN, fee=0.001).run()
    assert list(r.trades.columns) == TRADE_COLUMNS
    assert len(r.equity) == len(btc_df)
    assert r.equity.index.tz is not None and str(r.equity.index.tz) == "UTC"
    assert r.equity.index[0] == btc_df["timestamp"].iloc[0]
    n = len(btc_df)
    assert len(r.trades) == len(range(0, n - 1, 500))  # a signal on the last bar would be dropped
    first = r.trades.iloc[0]
    assert first["entry_bar"] == 1 and first["exit_bar"] == 101
    assert first["entry_price"] == btc_df["open"].iloc[1]
    assert first["exit_price"] == btc_df["open"].iloc[101]
    assert first["side"] == "long" and first["exit_reason"] == "signal"
    # the default size: 95% of the equity at the fill (the cash, when flat)
    assert first["size"] == pytest.approx(0.95 * 10_000 / first["entry_price"], rel=1e-12)
    assert first["fees"] == pytest.approx(
        0.001 * first["size"] * (first["entry_price"] + first["exit_price"]), rel=1e-12
    )
    fills = r.fills
    assert len(fills) == 2 * len(r.trades)
    assert set(fills["liquidity"]) == {"taker"}
    assert r.orders["status"].eq("filled").all()
    assert r.metrics["n_trades"] == len(r.trades)
    assert r.metrics["final_equity"] == pytest.approx(10_000 + r.trades["pnl"].sum(), rel=1e-12)


def test_the_defaults_size_from_equity_at_leverage_1_and_no_limit_is_asked_for(
    btc_df: pd.DataFrame,
) -> None:
    # a newcomer's backtest neither buys a fixed 1 BTC on 10,000 nor borrows
    bt = Backtest(btc_df, "sma_cross")
    assert (bt.config.size_mode, bt.config.size, bt.config.leverage) == ("equity", 0.95, 1.0)
    r = bt.run()
    notional = r.trades["size"] * r.trades["entry_price"]
    equity_before = 10_000 + r.trades["pnl"].cumsum().shift(fill_value=0.0)
    assert np.allclose(notional, 0.95 * equity_before, rtol=1e-9)
    # 0 asks for no margin limit explicitly (stored as None)
    assert Backtest(btc_df, "sma_cross", leverage=0).config.leverage is None
    assert RunConfig.from_options(leverage=0).leverage is None


def test_open_position_is_closed_at_the_end(btc_df: pd.DataFrame) -> None:
    r = Backtest(btc_df, EveryN, n=45_000, hold=44_999, short=True).run()
    last = r.trades.iloc[-1]
    assert last["exit_reason"] == "end" and last["side"] == "short"
    assert last["exit_bar"] == len(btc_df) - 1
    assert last["exit_price"] == btc_df["close"].iloc[-1]
    assert r.equity.iloc[-1] == pytest.approx(10_000 + r.trades["pnl"].sum(), rel=1e-12)


def test_fill_at_close_fills_on_the_signal_bar(btc_df: pd.DataFrame) -> None:
    r = Backtest(btc_df, EveryN, fill_at="close").run()
    first = r.trades.iloc[0]
    assert first["entry_bar"] == 0 and first["entry_price"] == btc_df["close"].iloc[0]


def test_data_from_a_file_and_catalog_symbol_give_the_same_result(
    tmp_path: Path, btc_df: pd.DataFrame
) -> None:
    from sapphire.data import Catalog

    path = tmp_path / "btc.feather"
    btc_df.to_feather(path)
    Catalog().import_file(path, symbol="BTC/USD:USD", venue="ftx", timeframe="1m")
    a = Backtest(btc_df, "sma_cross").run()
    b = Backtest(path, "sma_cross").run()
    c = Backtest("BTC/USD:USD", "sma_cross").run()
    pd.testing.assert_frame_equal(a.trades, b.trades)
    pd.testing.assert_frame_equal(a.trades, c.trades)
    d = Backtest("BTC/USD:USD", "sma_cross", start="2022-01-10", end="2022-01-11").run()
    assert d.equity.index[0] == pd.Timestamp("2022-01-10", tz="UTC")
    assert len(d.equity) == 1440


def test_catalog_tick_and_lot_sizes_are_respected(tmp_path: Path, btc_df: pd.DataFrame) -> None:
    from sapphire.data import Catalog

    path = tmp_path / "btc.parquet"
    btc_df.to_parquet(path)
    Catalog().import_file(
        path, symbol="BTC-PERP", venue="ftx", timeframe="1m", tick_size=1.0, lot_size=0.001
    )
    r = Backtest("BTC-PERP", EveryN, size=0.12345, size_mode="fixed", slippage_bps=3).run()
    assert r.config["tick_size"] == 1.0 and r.config["lot_size"] == 0.001
    assert np.allclose(r.trades["size"], 0.123)
    prices = np.concatenate([r.trades["entry_price"], r.trades["exit_price"]])
    np.testing.assert_allclose(prices, np.round(prices), atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cash": 0}, "cash=0.0 is invalid"),
        ({"size": -1}, "size=-1.0 is invalid"),
        ({"size_mode": "lots"}, "size_mode='lots' is invalid"),
        ({"leverage": 0.5}, "leverage=0.5 is invalid"),
        ({"leverage": float("nan")}, "leverage=nan is invalid"),
        ({"fee": 0.5}, "fee=0.5 is invalid"),  # named as given, not as maker_fee
        ({"maker_fee": 0.5}, "maker_fee=0.5 is invalid"),
        ({"slippage_bps": -2}, "slippage_bps=-2.0 is invalid"),
        ({"slippage_ticks": 2}, "slippage_ticks needs a tick_size"),
        ({"fill_at": "noon"}, "fill_at='noon' is invalid"),
        ({"intrabar": "best"}, "intrabar='best' is invalid"),
        ({"stop_loss": 0}, "stop_loss=0 is invalid"),
        ({"trailing_stop": 1.5}, "trailing_stop=1.5 is invalid"),
        ({"fast": 50, "slow": 20}, "fast (50) must be < slow (20)"),
    ],
)
def test_bad_options_are_refused_with_the_value(
    btc_df: pd.DataFrame, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError) as err:
        Backtest(btc_df, "sma_cross", **kwargs)
    assert message in str(err.value)
    assert not str(err.value).startswith("maker_fee") or "maker_fee" in kwargs


def test_bad_signals_are_refused_with_the_strategy_name(btc_df: pd.DataFrame) -> None:
    class Short(Strategy):
        def signals(self, bars: Bars) -> Signals:
            return Signals(enter_long=np.zeros(10, dtype=bool))

    class Typo(Strategy):
        def signals(self, bars: Bars) -> Signals:
            return Signals(enter_long=bars.close > 0, entry_type="limt")

    with pytest.raises(ValueError, match=r"strategy 'short': enter_long has shape \(10,\)"):
        Backtest(btc_df, Short).run()
    with pytest.raises(ValueError, match="entry_type 'limt' is not one of"):
        Backtest(btc_df, Typo).run()


def test_bad_data_raises_a_data_error_naming_the_row(btc_df: pd.DataFrame) -> None:
    broken = btc_df.copy()
    broken.loc[1000, "high"] = broken.loc[1000, "low"] - 10
    with pytest.raises(DataError, match="row 1000"):
        Backtest(broken, "sma_cross")


def test_rejected_orders_are_reported_not_resized(btc_df: pd.DataFrame) -> None:
    fixed = {"size": 1.0, "size_mode": "fixed", "cash": 1_000}
    r = Backtest(btc_df, EveryN, leverage=1, **fixed).run()  # 1 BTC needs ~40k
    assert len(r.trades) == 0
    assert set(r.orders["status"]) == {"rejected"}
    assert set(r.orders["reason"]) == {"insufficient margin"}
    ok = Backtest(btc_df, EveryN, leverage=50, **fixed).run()
    assert len(ok.trades) > 0


def test_funding_is_aligned_to_the_bar_that_contains_it() -> None:
    times = pd.date_range("2021-11-18", periods=10, freq="5min", tz="UTC")
    frame = pd.DataFrame(
        {"timestamp": times, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}
    )
    bars = bars_from_frame(frame)
    funding = pd.Series(
        [0.001, 0.002, 0.004, 0.008],
        index=pd.DatetimeIndex(
            [
                "2021-11-18 00:00:00.017",
                "2021-11-18 00:14:59",
                "2021-11-18 00:15",
                "2021-11-18 09:00",
            ]
        ),
    )
    rates = align_funding(funding, bars)
    expected = np.zeros(10)
    expected[0] = 0.001
    expected[2] = 0.002
    expected[3] = 0.004  # the 09:00 rate is after the last bar and is not charged
    np.testing.assert_array_equal(rates, expected)


def test_orders_and_fills_for_a_bracket(btc_df: pd.DataFrame) -> None:
    r = Backtest(
        btc_df, EveryN, stop_loss=0.003, take_profit=0.003, fee=0.0002, maker_fee=0.0001
    ).run()
    reasons = set(r.trades["exit_reason"])
    assert {"stop_loss", "take_profit"} <= reasons
    tp = r.fills[r.fills["role"] == "take_profit"]
    assert (tp["liquidity"] == "maker").all()
    assert np.allclose(tp["fee"], tp["quantity"] * tp["price"] * 0.0001)
    assert r.fills["fee"].sum() == pytest.approx(r.metrics["fees"], rel=1e-12)


def test_data_of_an_unknown_type_is_refused_by_name(btc_df: pd.DataFrame) -> None:
    with pytest.raises(TypeError, match="got tuple"):
        Backtest((btc_df, None), "sma_cross")  # type: ignore[arg-type]
