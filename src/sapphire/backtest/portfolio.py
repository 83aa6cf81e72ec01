"""`PortfolioBacktest`: one strategy over many instruments with one shared cash account
(compiled portfolio kernel, or the event-driven node), and several strategies side by
side with the capital split by weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.backtest.metrics import compute_metrics, periods_per_year
from sapphire.backtest.portfolio_event import PortfolioRun, run_portfolio_event
from sapphire.backtest.runner import EXIT_REASONS, SIZE_MODES, align_funding, bars_from_frame
from sapphire.engine.config import RUN_OPTIONS, RunConfig
from sapphire.sim import kernel as K
from sapphire.sim import portfolio_kernel as PK
from sapphire.sim.portfolio_kernel import instrument_pnl, simulate_portfolio
from sapphire.strategy.base import Bars, Strategy
from sapphire.strategy.registry import get_strategy
from sapphire.strategy.signals import SignalArrays, normalize_signals

__all__ = ["PortfolioBacktest", "PortfolioResult", "align_bars", "load_instruments"]

#: settings an instrument may override (`instruments={"ETH": {"fee": 0.0002}}`)
INSTRUMENT_OPTIONS = frozenset({"fee", "maker_fee", "taker_fee", "lot_size", "size"})
_UNSUPPORTED = ("stop_loss", "take_profit", "trailing_stop")
_OHLCV = ("open", "high", "low", "close", "volume")
# The kernel's window: about 256K (instrument, bar) cells, so that a window's prices stay
# in cache, and never fewer than 4096 bars, so that many instruments do not make the
# Python loop over windows long.
_WINDOW_CELLS = 1 << 18
_MIN_WINDOW = 4096


def _market_only(strategy: Strategy, signals: SignalArrays) -> None:
    """Refuse limit and stop entries (the portfolio kernel fills market orders only)."""
    if np.any(signals.entry_type != K.MARKET):
        raise ValueError(f"{strategy.name}: limit/stop entries are not supported in portfolios")


def _names(names: Sequence[str], codes: NDArray[Any]) -> Any:
    """`names[codes]` as a text column, taken from the few names instead of converted
    to text value by value (300K orders: 2 ms instead of 30 ms)."""
    return pd.Index(list(names)).take(codes.astype(np.int64)).array


def _trade_pnl(t: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each trade record's net pnl and fees."""
    gross = t[:, K.T_SIDE] * t[:, K.T_QTY] * (t[:, K.T_EXIT_PRICE] - t[:, K.T_ENTRY_PRICE])
    fees = t[:, K.T_ENTRY_FEE] + t[:, K.T_EXIT_FEE]
    return gross - fees + t[:, K.T_FUNDING], fees


def _trade_return(pnl: NDArray[np.float64], t: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each trade's net pnl over its entry notional."""
    result: NDArray[np.float64] = pnl / (t[:, K.T_QTY] * t[:, K.T_ENTRY_PRICE])
    return result


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
        if out:
            times = next(iter(out.values()))["timestamp"]
            if len(frame) == len(times) and frame["timestamp"].equals(times):
                # the first instrument's bar times: share its column rather than hold a
                # copy per instrument (the loader's own, e.g. converted to nanoseconds)
                frame["timestamp"] = times
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
    out: dict[str, Bars] = {}
    first: Bars | None = None
    for name, frame in frames.items():
        if len(frame) != len(times):  # some of its times are not shared
            indexed = frame.set_index(pd.DatetimeIndex(frame["timestamp"]))
            frame = indexed.loc[times].reset_index(drop=True)
        if first is None:
            first = out[name] = bars_from_frame(frame)
            continue
        # the others have the first one's bar times: its time array and timeframe (no
        # second conversion and timeframe inference of the same 1M times per instrument)
        prices = {c: np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64)) for c in _OHLCV}
        out[name] = Bars(time=first.time, timeframe_ns=first.timeframe_ns, **prices)
    return out


class _Table:
    """A result table, given as a DataFrame or as a function that builds it on first use
    (then kept): a dataclass field that callers may fill either way."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Table: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> pd.DataFrame: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:  # no default: the dataclass makes the field a required argument
            raise AttributeError(self.slot)
        value = obj.__dict__[self.slot]
        if callable(value):
            value = obj.__dict__[self.slot] = value()
        return value

    def __set__(self, obj: object, value: pd.DataFrame | Callable[[], pd.DataFrame]) -> None:
        obj.__dict__[self.slot] = value


@dataclass(eq=False)
class PortfolioResult:
    """A portfolio run: total and per-instrument equity (cumulative net pnl per
    instrument, `pnl`), trades and orders with their symbol (and strategy), metrics.

    `pnl`, `trades` and `orders` may be given as functions that build them: then they
    are built on first use, as `BacktestResult` builds its tables (a search that reads
    only the metrics never pays for 10 x 1M pnl marks). `PortfolioBacktest` does so."""

    strategies: list[str]
    symbols: list[str]
    config: dict[str, Any]
    equity: pd.Series
    metrics: dict[str, float]
    pnl: _Table = _Table()
    trades: _Table = _Table()
    orders: _Table = _Table()
    weights: dict[str, float] = field(default_factory=dict)
    sleeves: dict[str, pd.Series] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle with the tables built (the functions that build them do not pickle)."""
        for table in ("pnl", "trades", "orders"):
            getattr(self, table)
        return self.__dict__.copy()

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
        if self.engine == "event":
            sig = self.signals(strategy)
            for s in sig:
                _market_only(strategy, s)
            return run_portfolio_event(
                [self.bars[s] for s in self.symbols], self.symbols, strategy, self.configs, sig,
                cash=cash, leverage=self.config.leverage, max_weight=self.max_weight,
                max_gross=self.max_gross, funding=self.funding,
            )  # fmt: skip
        return self._kernel(strategy, cash)

    def _packed_signals(self, strategy: Strategy) -> tuple[NDArray[np.uint8], int]:
        """`strategy`'s signals on every instrument as the kernel's (instrument, bar)
        bit array, and the number of entry signals. Each instrument's signal arrays are
        packed as soon as they are made, so only one instrument's are held at a time."""
        n = len(self.index)
        packed = np.empty((len(self.symbols), n), dtype=np.uint8)
        entries = 0
        for k, sym in enumerate(self.symbols):
            s = normalize_signals(strategy.signals(self.bars[sym]), n, strategy=strategy.name)
            _market_only(strategy, s)
            row = packed[k]
            np.multiply(s.enter_long, PK.ENTER_LONG, out=row, dtype=np.uint8)
            for flags, bit in (
                (s.exit_long, PK.EXIT_LONG),
                (s.enter_short, PK.ENTER_SHORT),
                (s.exit_short, PK.EXIT_SHORT),
            ):
                row |= flags.view(np.uint8) * np.uint8(bit)
            entries += int(np.count_nonzero(s.enter_long | s.enter_short))
        return packed, entries

    def _kernel(self, strategy: Strategy, cash: float) -> PortfolioRun:
        cfg, cfgs = self.config, self.configs
        bars = [self.bars[s] for s in self.symbols]
        n, m = len(bars[0]), len(bars)
        signals, entries = self._packed_signals(strategy)
        equity = np.empty(n)
        orders = np.empty((2 * entries + m + 2, K.ORDER_FIELDS))
        order_inst = np.empty(len(orders), dtype=np.int64)
        trades = np.empty((entries + m + 1, K.TRADE_FIELDS))
        trade_inst = np.empty(len(trades), dtype=np.int64)
        scalars = np.zeros(K.SCALAR_FIELDS)
        scalars[K.S_CASH] = float(cash)
        book = np.zeros((PK.BOOK_FIELDS, m))
        # each instrument's event slots: a bar whose signals act (those of the last bar
        # never do) or whose funding rate is not zero, and the close at the end
        slots = np.array([np.count_nonzero(row[: n - 1]) + 1 for row in signals])
        if self.funding:
            slots += [np.count_nonzero(rates) for rates in self.funding]
        offsets = np.concatenate(([0], np.cumsum(slots)))
        slot = offsets[:-1].copy()
        event_bar = np.empty(offsets[-1], dtype=np.int64)
        event_held, event_flow = np.empty(offsets[-1]), np.empty(offsets[-1])
        per = np.array
        settings = (
            per([c.size for c in cfgs]), SIZE_MODES[cfg.size_mode], cfg.leverage or 0.0,
            self.max_weight or 0.0, self.max_gross or 0.0, per([c.taker_fee for c in cfgs]),
            per([cfg.slippage_bps] * m), per([float(cfg.slippage_ticks)] * m),
            per([cfg.tick_size] * m), per([c.lot_size for c in cfgs]),
        )  # fmt: skip
        # Windows of bars, every instrument's prices copied into buffers that stay in
        # cache; column 0 holds the bar before the window (the entry sizing marks the
        # later instruments at the previous close).
        width = min(n, max(_MIN_WINDOW, _WINDOW_CELLS // m))
        opens, closes = np.zeros((m, width + 1)), np.zeros((m, width + 1))
        rates = np.zeros((m, width + 1) if self.funding else (0, 0))
        for start in range(0, n, width):
            stop = min(n, start + width)
            first = 1 if start == 0 else 0  # column 0 before the first bar stays unused
            window = slice(start - 1 + first, stop)
            for k, b in enumerate(bars):
                opens[k, first : stop - start + 1] = b.open[window]
                closes[k, first : stop - start + 1] = b.close[window]
                if self.funding:
                    rates[k, first : stop - start + 1] = self.funding[k][window]
            simulate_portfolio(
                start, stop - start, opens, closes, signals, rates, *settings, book, equity,
                event_bar, event_held, event_flow, slot, orders, order_inst, trades,
                trade_inst, scalars,
            )  # fmt: skip

        def pnl() -> NDArray[np.float64]:
            out = np.empty((m, n))
            for k, b in enumerate(bars):
                done = slice(offsets[k], slot[k])
                instrument_pnl(b.close, event_bar[done], event_held[done], event_flow[done], out[k])
            return out

        no, nt = int(scalars[K.S_N_ORDERS]), int(scalars[K.S_N_TRADES])
        return PortfolioRun(
            equity, pnl, orders[:no], order_inst[:no], trades[:nt], trade_inst[:nt], scalars
        )

    def run(self) -> PortfolioResult:
        """Run every strategy on its share of the cash; return the combined result."""
        cash = self.config.cash
        equity: NDArray[np.float64] | None = None
        runs: list[tuple[PortfolioRun, str]] = []
        sleeves = {}
        fees = funding = 0.0
        bars_in_market = 0  # the most of any strategy
        for strategy, label, w in zip(self.strategies, self.labels, self.weights, strict=True):
            if w == 0:
                continue
            run = self._run_one(strategy, cash * w)
            runs.append((run, label))
            # the first sleeve's equity is taken as it is; the sum goes to a new array
            # because each sleeve keeps its own
            equity = run.equity if equity is None else equity + run.equity
            sleeves[label] = pd.Series(run.equity, index=self.index, name=label)
            fees += float(run.scalars[K.S_FEES])
            funding += float(run.scalars[K.S_FUNDING])
            bars_in_market = max(bars_in_market, int(run.scalars[K.S_BARS_IN_MARKET]))
        assert equity is not None  # the weights give some strategy cash
        trades = np.concatenate([run.trades for run, _ in runs])
        pnl_t, _ = _trade_pnl(trades)
        tf = self.bars[self.symbols[0]].timeframe_ns
        metrics = compute_metrics(
            equity, initial_cash=cash, periods_per_year=periods_per_year(tf), timeframe_ns=tf,
            trade_pnl=pnl_t, trade_returns=_trade_return(pnl_t, trades), fees=fees,
            funding=funding, bars_in_market=bars_in_market,
        )  # fmt: skip
        config = self.config.to_mapping()
        config.update(engine=self.engine, max_weight=self.max_weight, max_gross=self.max_gross)

        def pnl() -> pd.DataFrame:
            total = runs[0][0].pnl()  # (instrument, bar)
            for run, _ in runs[1:]:
                total += run.pnl()
            # total.T is (bar, instrument) over memory laid out as pandas keeps columns
            return pd.DataFrame(total.T, index=self.index, columns=self.symbols, copy=False)

        return PortfolioResult(
            strategies=self.labels,
            symbols=self.symbols,
            config=config,
            # the sleeves hold copies: the total's array is its own
            equity=pd.Series(equity, index=self.index, name="equity", copy=False),
            metrics=metrics,
            pnl=pnl,
            trades=lambda: pd.concat(
                [self._trades(run, label) for run, label in runs], ignore_index=True
            ),
            orders=lambda: pd.concat(
                [self._orders(run, label) for run, label in runs], ignore_index=True
            ),
            weights=dict(zip(self.labels, self.weights.tolist(), strict=True)),
            sleeves=sleeves,
        )

    def _trades(self, run: PortfolioRun, label: str) -> pd.DataFrame:
        t = run.trades
        pnl, fees = _trade_pnl(t)
        return pd.DataFrame(
            {
                "strategy": label,
                "symbol": _names(self.symbols, run.trade_inst),
                "entry_time": self.index[t[:, K.T_ENTRY_BAR].astype(np.int64)],
                "exit_time": self.index[t[:, K.T_EXIT_BAR].astype(np.int64)],
                "side": _names(("short", "long"), t[:, K.T_SIDE] > 0),
                "size": t[:, K.T_QTY],
                "entry_price": t[:, K.T_ENTRY_PRICE],
                "exit_price": t[:, K.T_EXIT_PRICE],
                "pnl": pnl,
                "return": _trade_return(pnl, t),
                "fees": fees,
                "funding": t[:, K.T_FUNDING],
                "exit_reason": _names(EXIT_REASONS.tolist(), t[:, K.T_REASON]),
                "entry_bar": t[:, K.T_ENTRY_BAR].astype(np.int64),
                "exit_bar": t[:, K.T_EXIT_BAR].astype(np.int64),
            }
        )

    def _orders(self, run: PortfolioRun, label: str) -> pd.DataFrame:
        o = run.orders
        return pd.DataFrame(
            {
                "strategy": label,
                "symbol": _names(self.symbols, run.order_inst),
                "bar": o[:, K.O_BAR].astype(np.int64),
                "fill_bar": o[:, K.O_FILL_BAR].astype(np.int64),
                "side": _names(("sell", "buy"), o[:, K.O_SIDE] > 0),
                "quantity": o[:, K.O_QTY],
                "fill_price": o[:, K.O_FILL_PRICE],
                "fee": o[:, K.O_FEE],
                "status": _names(("filled", "expired", "rejected"), o[:, K.O_STATUS]),
            }
        )
