"""`PortfolioBacktest`: one strategy over many instruments with one shared cash account
(compiled portfolio kernel, or the event-driven node), and several strategies side by
side with the capital split by weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.backtest.metrics import compute_metrics, periods_per_year
from sapphire.backtest.portfolio_event import PortfolioRun, run_portfolio_event
from sapphire.backtest.runner import EXIT_REASONS, SIZE_MODES, align_funding, bars_from_frame
from sapphire.engine.config import RUN_OPTIONS, RunConfig
from sapphire.sim import kernel as K
from sapphire.sim.portfolio_kernel import simulate_portfolio
from sapphire.strategy.base import Bars, Strategy
from sapphire.strategy.registry import get_strategy
from sapphire.strategy.signals import SignalArrays, normalize_signals

__all__ = ["PortfolioBacktest", "PortfolioResult", "align_bars", "load_instruments"]

#: settings an instrument may override (`instruments={"ETH": {"fee": 0.0002}}`)
INSTRUMENT_OPTIONS = frozenset({"fee", "maker_fee", "taker_fee", "lot_size", "size"})
_UNSUPPORTED = ("stop_loss", "take_profit", "trailing_stop")


def load_instruments(data: Mapping[str, Any] | Sequence[Any]) -> dict[str, pd.DataFrame]:
    """Canonical bars per symbol from frames or files (a list of files: named by file)."""
    from sapphire.data import load_ohlcv

    items = data.items() if isinstance(data, Mapping) else ((None, d) for d in data)
    out: dict[str, pd.DataFrame] = {}
    for name, source in items:
        if isinstance(source, Bars):
            raise TypeError("give DataFrames or files per instrument, not Bars")
        label = name or (Path(source).stem if isinstance(source, str | Path) else f"i{len(out)}")
        if label in out:
            raise ValueError(f"instrument {label!r} is given twice")
        frame, _ = load_ohlcv(source)
        out[str(label)] = frame
    if len(out) < 1:
        raise ValueError("a portfolio backtest needs at least one instrument's data")
    return out


def align_bars(frames: Mapping[str, pd.DataFrame]) -> dict[str, Bars]:
    """Every instrument's bars on the times all of them have (the kernel and the event
    replay step through the instruments bar by bar, in lockstep)."""
    times: pd.DatetimeIndex | None = None
    for name, frame in frames.items():
        index = pd.DatetimeIndex(frame["timestamp"])
        times = index if times is None else times.intersection(index)
        if len(times) < 2:
            raise ValueError(f"{name}: fewer than 2 bar times shared with the other instruments")
    assert times is not None
    out = {}
    for name, frame in frames.items():
        if len(frame) == len(times):  # every time shared already
            out[name] = bars_from_frame(frame)
            continue
        aligned = frame.set_index(pd.DatetimeIndex(frame["timestamp"])).loc[times]
        out[name] = bars_from_frame(aligned.reset_index(drop=True))
    return out


@dataclass(eq=False)
class PortfolioResult:
    """A portfolio run: total and per-instrument equity (cumulative net pnl per
    instrument, `pnl`), trades and orders with their symbol (and strategy), metrics."""

    strategies: list[str]
    symbols: list[str]
    config: dict[str, Any]
    equity: pd.Series
    pnl: pd.DataFrame
    trades: pd.DataFrame
    orders: pd.DataFrame
    metrics: dict[str, float]
    weights: dict[str, float] = field(default_factory=dict)
    sleeves: dict[str, pd.Series] = field(default_factory=dict)

    def plot(self, path: str | Path | None = None) -> Path:
        """Write the HTML report (equity, per-instrument pnl, metrics, trades)."""
        from sapphire.backtest.portfolio_report import write_portfolio_report

        return write_portfolio_report(self, path)


class PortfolioBacktest:
    """A backtest over several instruments with one shared cash account.

    `data` maps symbols to DataFrames or files (or lists files); `strategy` is one
    vectorised strategy (name or class) or a list of them, with `weights` splitting the
    cash between them (default: equal). Each strategy trades every instrument from its
    own share of the cash. `instruments` overrides fees, lot size or size per symbol;
    `max_weight` caps a position's notional as a fraction of the equity and
    `max_gross` the gross exposure; `funding` maps symbols to Series of rates. Other
    keyword arguments are `RunConfig` fields or the strategy's parameters (one strategy)
    or `params={name: {...}}` per strategy."""

    def __init__(
        self,
        data: Mapping[str, Any] | Sequence[Any],
        strategy: str | type[Strategy] | Sequence[str | type[Strategy]] = "sma_cross",
        *,
        weights: Sequence[float] | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        instruments: Mapping[str, Mapping[str, Any]] | None = None,
        max_weight: float | None = None,
        max_gross: float | None = None,
        funding: Mapping[str, pd.Series] | None = None,
        engine: str = "vector",
        **options: Any,
    ) -> None:
        run_options = {k: options.pop(k) for k in list(options) if k in RUN_OPTIONS}
        for name in _UNSUPPORTED:
            if run_options.get(name):
                raise ValueError(
                    f"{name} is not supported in portfolio backtests: use Backtest per instrument"
                )
        if engine not in ("vector", "event"):
            raise ValueError(f"engine={engine!r} is invalid: expected vector or event")
        self.engine = engine
        self.config = RunConfig.from_options(**run_options)
        if self.config.fill_at != "open":
            raise ValueError("portfolio backtests fill at the next open: fill_at must be 'open'")
        if self.config.size_mode == "risk":
            raise ValueError("size_mode='risk' is not supported in portfolio backtests")
        names = [strategy] if isinstance(strategy, str | type) else list(strategy)
        self.strategy_classes = [get_strategy(s, kinds=(Strategy,)) for s in names]
        labels = [str(getattr(c, "name", "") or c.__name__) for c in self.strategy_classes]
        if len(set(labels)) != len(labels):
            raise ValueError(f"a strategy is given twice: {labels}")
        self.labels = labels
        given = dict(params or {})
        if len(names) == 1 and options:
            given[labels[0]] = {**given.get(labels[0], {}), **options}
        elif options:
            raise ValueError(f"unknown options {sorted(options)}: give params={{name: {{...}}}}")
        self.strategies = [
            c(**given.get(lab, {})) for c, lab in zip(self.strategy_classes, labels, strict=True)
        ]
        w = np.ones(len(names)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(names),) or not np.all(w >= 0) or not w.sum() > 0:
            raise ValueError(
                f"weights={list(w)} are invalid: expected {len(names)} non-negative numbers, "
                "not all zero"
            )
        self.weights = w / w.sum()
        for name, value in (("max_weight", max_weight), ("max_gross", max_gross)):
            if value is not None and not value > 0:
                raise ValueError(f"{name}={value!r} is invalid: expected a positive number")
        self.max_weight, self.max_gross = max_weight, max_gross
        frames = load_instruments(data)
        self.bars = align_bars(frames)
        self.symbols = list(self.bars)
        overrides = dict(instruments or {})
        unknown = set(overrides) - set(self.symbols)
        if unknown:
            raise ValueError(f"instruments= names {sorted(unknown)} that have no data")
        base = self.config.to_mapping()
        self.configs: list[RunConfig] = []
        for sym in self.symbols:
            extra = dict(overrides.get(sym, {}))
            bad = set(extra) - INSTRUMENT_OPTIONS
            if bad:
                raise ValueError(
                    f"{sym}: {sorted(bad)} cannot be set per instrument: expected "
                    f"{', '.join(sorted(INSTRUMENT_OPTIONS))}"
                )
            self.configs.append(RunConfig.from_options(**{**base, **extra}))
        first = self.bars[self.symbols[0]]
        self.index = pd.DatetimeIndex(first.time.view("datetime64[ns]")).tz_localize("UTC")
        self.funding: list[NDArray[np.float64]] | None = None
        if funding:
            self.funding = [
                align_funding(funding[s], self.bars[s]) if s in funding else np.zeros(len(first))
                for s in self.symbols
            ]

    def signals(self, strategy: Strategy) -> list[SignalArrays]:
        """`strategy`'s signal arrays on every instrument."""
        return [
            normalize_signals(
                strategy.signals(self.bars[s]), len(self.bars[s]), strategy=strategy.name
            )
            for s in self.symbols
        ]

    def _run_one(self, strategy: Strategy, cash: float) -> PortfolioRun:
        sig = self.signals(strategy)
        if any(np.any(s.entry_type != K.MARKET) for s in sig):
            raise ValueError(f"{strategy.name}: limit/stop entries are not supported in portfolios")
        if self.engine == "event":
            return run_portfolio_event(
                [self.bars[s] for s in self.symbols], self.symbols, strategy, self.configs, sig,
                cash=cash, leverage=self.config.leverage, max_weight=self.max_weight,
                max_gross=self.max_gross, funding=self.funding,
            )  # fmt: skip
        return self._kernel(sig, cash)

    def _kernel(self, sig: list[SignalArrays], cash: float) -> PortfolioRun:
        cfg, cfgs = self.config, self.configs
        bars = [self.bars[s] for s in self.symbols]
        n, m = len(bars[0]), len(bars)

        def stack(get: Any, dtype: Any = np.float64) -> NDArray[Any]:
            return np.ascontiguousarray(np.column_stack([get(x) for x in range(m)]), dtype=dtype)

        entries = sum(int(np.count_nonzero(s.enter_long | s.enter_short)) for s in sig)
        equity, pnl = np.empty(n), np.empty((n, m))
        orders = np.empty((2 * entries + m + 2, K.ORDER_FIELDS))
        order_inst = np.empty(len(orders), dtype=np.int64)
        trades = np.empty((entries + m + 1, K.TRADE_FIELDS))
        trade_inst = np.empty(len(trades), dtype=np.int64)
        scalars = np.zeros(K.SCALAR_FIELDS)
        funding = stack(lambda x: self.funding[x]) if self.funding else np.zeros((0, m))
        per = np.array
        simulate_portfolio(
            stack(lambda x: bars[x].open), stack(lambda x: bars[x].close),
            stack(lambda x: sig[x].enter_long, np.bool_),
            stack(lambda x: sig[x].exit_long, np.bool_),
            stack(lambda x: sig[x].enter_short, np.bool_),
            stack(lambda x: sig[x].exit_short, np.bool_),
            funding, float(cash), per([c.size for c in cfgs]), SIZE_MODES[cfg.size_mode],
            cfg.leverage or 0.0, self.max_weight or 0.0, self.max_gross or 0.0,
            per([c.taker_fee for c in cfgs]), per([cfg.slippage_bps] * m),
            per([float(cfg.slippage_ticks)] * m), per([cfg.tick_size] * m),
            per([c.lot_size for c in cfgs]), equity, pnl, orders, order_inst, trades,
            trade_inst, scalars,
        )  # fmt: skip
        no, nt = int(scalars[K.S_N_ORDERS]), int(scalars[K.S_N_TRADES])
        return PortfolioRun(
            equity, pnl, orders[:no], order_inst[:no], trades[:nt], trade_inst[:nt], scalars
        )

    def run(self) -> PortfolioResult:
        """Run every strategy on its share of the cash; return the combined result."""
        cash = self.config.cash
        equity = np.zeros(len(self.index))
        pnl = np.zeros((len(self.index), len(self.symbols)))
        trades, orders, sleeves = [], [], {}
        fees = funding = 0.0
        bars_in_market = 0  # the most of any strategy
        for strategy, label, w in zip(self.strategies, self.labels, self.weights, strict=True):
            if w == 0:
                continue
            run = self._run_one(strategy, cash * w)
            equity += run.equity
            pnl += run.pnl
            sleeves[label] = pd.Series(run.equity, index=self.index, name=label)
            trades.append(self._trades(run, label))
            orders.append(self._orders(run, label))
            fees += float(run.scalars[K.S_FEES])
            funding += float(run.scalars[K.S_FUNDING])
            bars_in_market = max(bars_in_market, int(run.scalars[K.S_BARS_IN_MARKET]))
        trade_frame = pd.concat(trades, ignore_index=True)
        pnl_t = trade_frame["pnl"].to_numpy(dtype=np.float64)
        ret_t = trade_frame["return"].to_numpy(dtype=np.float64)
        tf = self.bars[self.symbols[0]].timeframe_ns
        metrics = compute_metrics(
            equity, initial_cash=cash, periods_per_year=periods_per_year(tf), timeframe_ns=tf,
            trade_pnl=pnl_t, trade_returns=ret_t, fees=fees, funding=funding,
            bars_in_market=bars_in_market,
        )  # fmt: skip
        config = self.config.to_mapping()
        config.update(engine=self.engine, max_weight=self.max_weight, max_gross=self.max_gross)
        return PortfolioResult(
            strategies=self.labels,
            symbols=self.symbols,
            config=config,
            equity=pd.Series(equity, index=self.index, name="equity"),
            pnl=pd.DataFrame(pnl, index=self.index, columns=self.symbols),
            trades=trade_frame,
            orders=pd.concat(orders, ignore_index=True),
            metrics=metrics,
            weights=dict(zip(self.labels, self.weights.tolist(), strict=True)),
            sleeves=sleeves,
        )

    def _trades(self, run: PortfolioRun, label: str) -> pd.DataFrame:
        t = run.trades
        qty, entry = t[:, K.T_QTY], t[:, K.T_ENTRY_PRICE]
        gross = t[:, K.T_SIDE] * qty * (t[:, K.T_EXIT_PRICE] - entry)
        fees = t[:, K.T_ENTRY_FEE] + t[:, K.T_EXIT_FEE]
        pnl = gross - fees + t[:, K.T_FUNDING]
        return pd.DataFrame(
            {
                "strategy": label,
                "symbol": np.asarray(self.symbols, dtype=object)[run.trade_inst],
                "entry_time": self.index[t[:, K.T_ENTRY_BAR].astype(np.int64)],
                "exit_time": self.index[t[:, K.T_EXIT_BAR].astype(np.int64)],
                "side": np.where(t[:, K.T_SIDE] > 0, "long", "short"),
                "size": qty,
                "entry_price": entry,
                "exit_price": t[:, K.T_EXIT_PRICE],
                "pnl": pnl,
                "return": pnl / (qty * entry),
                "fees": fees,
                "funding": t[:, K.T_FUNDING],
                "exit_reason": EXIT_REASONS[t[:, K.T_REASON].astype(np.int64)],
                "entry_bar": t[:, K.T_ENTRY_BAR].astype(np.int64),
                "exit_bar": t[:, K.T_EXIT_BAR].astype(np.int64),
            }
        )

    def _orders(self, run: PortfolioRun, label: str) -> pd.DataFrame:
        o = run.orders
        return pd.DataFrame(
            {
                "strategy": label,
                "symbol": np.asarray(self.symbols, dtype=object)[run.order_inst],
                "bar": o[:, K.O_BAR].astype(np.int64),
                "fill_bar": o[:, K.O_FILL_BAR].astype(np.int64),
                "side": np.where(o[:, K.O_SIDE] > 0, "buy", "sell"),
                "quantity": o[:, K.O_QTY],
                "fill_price": o[:, K.O_FILL_PRICE],
                "fee": o[:, K.O_FEE],
                "status": np.array(["filled", "expired", "rejected"])[
                    o[:, K.O_STATUS].astype(np.int64)
                ],
            }
        )
