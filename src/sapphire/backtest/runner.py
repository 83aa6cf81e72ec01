"""`Backtest`: run a strategy on bars, through the compiled simulation kernel (vectorised
strategies) or the event-driven trading node (any strategy), with one `RunConfig`."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.backtest.metrics import compute_metrics, periods_per_year
from sapphire.backtest.result import TRADE_COLUMNS, BacktestResult
from sapphire.engine.config import RUN_OPTIONS, RunConfig
from sapphire.engine.risk_monitor import zero_equity_warning
from sapphire.engine.strategy import EventStrategy
from sapphire.sim import kernel as K
from sapphire.strategy.base import Bars, Signals, Strategy, snake_case
from sapphire.strategy.registry import get_strategy
from sapphire.strategy.signals import SignalArrays, normalize_signals

SIZE_MODES = {"fixed": K.SIZE_FIXED, "notional": K.SIZE_NOTIONAL, "equity": K.SIZE_EQUITY}
EXIT_REASONS = np.array(
    [
        "", "signal", "stop_loss", "take_profit", "trailing_stop", "end", "liquidation",
        "kill_switch", "zero_equity",
    ]
)  # fmt: skip
ORDER_TYPES = np.array(["market", "limit", "stop"])
ORDER_STATUS = np.array(["filled", "expired", "rejected"])
# the DatetimeIndex of each Bars object still alive (Bars are immutable)
_INDEXES: weakref.WeakKeyDictionary[Bars, pd.DatetimeIndex] = weakref.WeakKeyDictionary()
REJECT_REASONS = np.array(
    [
        "",
        "size below lot",
        "insufficient margin",
        "invalid entry price",
        "denied by risk",
        "no stop-loss to size from",
    ]
)
ROLES = np.array(
    [
        "entry", "signal", "stop_loss", "take_profit", "trailing_stop", "end", "liquidation",
        "kill_switch", "zero_equity",
    ]
)  # fmt: skip


def _risk_profile(value: Any) -> Any:
    """A `RiskProfile` from a built-in name, a YAML file or a profile (None: none)."""
    if value is None:
        return None
    from sapphire.risk import RiskProfile, profile

    if not isinstance(value, str | RiskProfile):
        raise ValueError(
            f"risk_profile={value!r} is invalid: expected a profile name, a YAML file or a "
            "RiskProfile"
        )
    return profile(value)


def align_funding(funding: pd.Series, bars: Bars) -> NDArray[np.float64]:
    """Sum funding rates into the bar whose interval contains each funding time."""
    n = len(bars)
    out = np.zeros(n)
    if n == 0 or funding is None or len(funding) == 0:
        return out
    index = pd.DatetimeIndex(funding.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    times = index.as_unit("ns").asi8
    rates = np.asarray(funding, dtype=np.float64)
    if not np.isfinite(rates).all():
        bad = int(np.flatnonzero(~np.isfinite(rates))[0])
        raise ValueError(f"funding rate at {index[bad]} is {rates[bad]}: expected a number")
    idx = np.searchsorted(bars.time, times, side="right") - 1
    inside = (idx >= 0) & (times < bars.time[-1] + bars.timeframe_ns)
    np.add.at(out, idx[inside], rates[inside])
    return out


def bars_from_frame(df: pd.DataFrame) -> Bars:
    """Turn a canonical OHLCV frame (see sapphire.data) into kernel-ready arrays."""
    time = np.ascontiguousarray(pd.DatetimeIndex(df["timestamp"]).as_unit("ns").asi8)
    diffs = np.diff(time)
    timeframe = 60_000_000_000
    if diffs.size:
        values, counts = np.unique(diffs, return_counts=True)
        timeframe = int(values[np.argmax(counts)])

    def col(name: str) -> NDArray[np.float64]:
        return np.ascontiguousarray(df[name].to_numpy(dtype=np.float64))

    return Bars(
        time=time,
        open=col("open"),
        high=col("high"),
        low=col("low"),
        close=col("close"),
        volume=col("volume"),
        timeframe_ns=timeframe,
    )


class Backtest:
    """A backtest of one strategy on one instrument's bars.

    `data` is a DataFrame (any supported column names), a file path, a catalog symbol,
    `"sample"` or `Bars`; `strategy` a built-in name, `module:Class` / `file.py:Class`, or
    a class: a vectorised `Strategy` (compiled kernel, or `engine="event"`) or an
    `EventStrategy` (always the event engine). Keyword arguments that are `RunConfig`
    fields (or `fee`) configure the run, on top of `config` when given; the others are
    the strategy's parameters. `funding` may also be a Series of rates.
    """

    def __init__(
        self,
        data: pd.DataFrame | str | Path | Bars,
        strategy: str | type[Strategy] | type[EventStrategy] = "sma_cross",
        *,
        symbol: str | None = None,
        config: RunConfig | None = None,
        **options: Any,
    ) -> None:
        run_options = {k: options.pop(k) for k in list(options) if k in RUN_OPTIONS}
        funding = run_options.get("funding")
        if isinstance(funding, pd.Series):
            del run_options["funding"]
        risk = run_options.get("risk_profile")
        if risk is not None and not isinstance(risk, str):
            run_options["risk_profile"] = _risk_profile(risk).name
        self.strategy_cls = get_strategy(strategy, kinds=(Strategy, EventStrategy))
        self.params = options
        self.event_driven = issubclass(self.strategy_cls, EventStrategy)
        if self.event_driven:
            run_options.setdefault("engine", "event")
        base = config.to_mapping() if config is not None else {}
        for name in ("tick_size", "lot_size"):  # None: the catalog's (read below)
            if run_options.get(name, base.get(name)) is None:
                run_options.pop(name, None)
        config = RunConfig.from_options(**{**base, **run_options})
        if self.event_driven and config.engine != "event":
            raise ValueError(
                f"{self.strategy_cls.__name__} is an event-driven strategy: it runs on "
                "engine='event' only"
            )
        self.risk_profile = _risk_profile(
            risk if risk is not None and not isinstance(risk, str) else config.risk_profile
        )
        self.strategy: Any = self._new_strategy()
        self.bars, self.symbol, meta = self._load(data, symbol, config)
        given = {k for k in ("tick_size", "lot_size") if run_options.get(k) or base.get(k)}
        fill = {
            k: float(meta[k]) for k in ("tick_size", "lot_size") if meta.get(k) and k not in given
        }
        self.config = RunConfig(**{**config.to_mapping(), **fill}) if fill else config
        self.engine = self.config.engine
        self.liquidation: Any = None  # the event venue's liquidation rule (None: none)
        if self.config.maintenance_margin is not None:
            from sapphire.backtest.event import liquidation_rule

            self.liquidation = liquidation_rule(self.config)
        self.event_run: Any = None  # the last event-driven run (node, monitor, refusals)
        if funding is None:
            funding = self.config.funding
        if isinstance(funding, str | Path):
            from sapphire.data import read_funding

            funding = read_funding(funding)
        self.funding = align_funding(funding, self.bars) if funding is not None else None
        self._index: pd.DatetimeIndex | None = None

    def _new_strategy(self) -> Any:
        """A strategy instance with this backtest's parameters (an event-driven one is
        made anew for every run: it keeps state)."""
        try:
            return self.strategy_cls(**self.params)
        except TypeError as exc:
            raise ValueError(f"strategy {self.strategy_cls.__name__}: {exc}") from None

    @property
    def strategy_name(self) -> str:
        """The strategy's registry name (a class name in snake_case for an event one)."""
        return str(getattr(self.strategy_cls, "name", "") or snake_case(self.strategy_cls.__name__))

    @staticmethod
    def _load(data: Any, symbol: str | None, config: RunConfig) -> tuple[Bars, str, dict[str, Any]]:
        start, end, venue, timeframe = config.start, config.end, config.venue, config.timeframe
        resample, gaps = config.resample, config.gaps
        if isinstance(data, Bars):
            if resample or start is not None or end is not None:
                raise ValueError("start/end/resample need a DataFrame, file or symbol, not Bars")
            return data, symbol or "bars", {}
        from sapphire.data import Catalog, load_ohlcv, resample_ohlcv
        from sapphire.data.load import is_file_source
        from sapphire.data.samples import SAMPLE

        meta: dict[str, Any] = {}
        name = symbol
        if isinstance(data, pd.DataFrame):
            name = name or "data"
        elif isinstance(data, str) and data == SAMPLE:
            name = name or "BTC-PERP (sample)"
        elif is_file_source(data):
            name = name or Path(data).name
        elif not isinstance(data, str):
            raise TypeError(
                "data must be a DataFrame, Bars, a file path or a catalog symbol, "
                f"got {type(data).__name__}"
            )
        else:
            name = name or data
            entry = Catalog().entry(str(data), venue=venue, timeframe=timeframe)
            meta = {"tick_size": entry.tick_size, "lot_size": entry.lot_size}
        frame, _report = load_ohlcv(
            data, gaps=gaps, start=start, end=end, venue=venue, timeframe=timeframe,
            read=config.read_options(),
        )  # fmt: skip
        if resample:
            frame = resample_ohlcv(frame, resample)
        if len(frame) < 2:
            raise ValueError(f"{name}: need at least 2 bars to backtest, got {len(frame)}")
        return bars_from_frame(frame), name, meta

    @property
    def index(self) -> pd.DatetimeIndex:
        """Bar open times as a UTC DatetimeIndex (built once per Bars object: an optimiser
        runs thousands of backtests on the same bars)."""
        if self._index is None:
            index = _INDEXES.get(self.bars)
            if index is None:
                index = pd.DatetimeIndex(self.bars.time.view("datetime64[ns]")).tz_localize("UTC")
                _INDEXES[self.bars] = index
            self._index = index
        return self._index

    def signals(self) -> Signals:
        """Run the (vectorised) strategy on the bars and return its signals."""
        if self.event_driven:
            raise TypeError(
                f"{self.strategy_cls.__name__} is an event-driven strategy: it has no signal arrays"
            )
        return self.strategy.signals(self.bars)

    def run(self) -> BacktestResult:
        """Compute the signals, simulate, and return trades, equity and metrics."""
        bars, cfg, name = self.bars, self.config, self.strategy_name
        funding = self.funding if self.funding is not None else np.zeros(0)
        if self.event_driven:
            self.strategy = self._new_strategy()
            equity, orders, trades, scalars = self._run_event(None, funding)
            params = dict(self.params)
        else:
            sig = normalize_signals(
                self.signals(), len(bars), strategy=name, stop_loss=cfg.stop_loss,
                take_profit=cfg.take_profit, trailing_stop=cfg.trailing_stop,
            )  # fmt: skip
            run = self._run_event if self.engine == "event" else self._run_kernel
            equity, orders, trades, scalars = run(sig, funding)
            params = self.strategy.values
        pnl = _trade_pnl(trades)
        metrics = compute_metrics(
            equity,
            initial_cash=cfg.cash,
            periods_per_year=periods_per_year(bars.timeframe_ns),
            timeframe_ns=bars.timeframe_ns,
            trade_pnl=pnl,
            trade_returns=pnl / (trades[:, K.T_QTY] * trades[:, K.T_ENTRY_PRICE]),
            fees=float(scalars[K.S_FEES]),
            funding=float(scalars[K.S_FUNDING]),
            bars_in_market=int(scalars[K.S_BARS_IN_MARKET]),
        )
        warnings = list(getattr(self.strategy, "caveats", ()))
        stop_bar = int(scalars[K.S_STOP_BAR])
        if stop_bar >= 0:
            warnings.append(zero_equity_warning(int(bars.time[stop_bar])))
        return BacktestResult(
            strategy=name,
            params=params,
            config=self._describe(),
            symbol=self.symbol,
            bars=bars,
            equity=pd.Series(equity, index=self.index, name="equity", copy=False),
            metrics=metrics,
            _trades=lambda: self._trades_frame(trades),
            _orders=lambda: self._orders_frame(orders),
            _fills=lambda: self._fills_frame(orders),
            # a strategy scoring a fitted model says which bars the model was trained on
            warnings=warnings,
            stopped_at=self.index[stop_bar] if stop_bar >= 0 else None,
            in_sample=getattr(self.strategy, "in_sample", None),
        )

    def _run_kernel(
        self, sig: SignalArrays, funding: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], ...]:
        bars, cfg = self.bars, self.config
        n = len(bars)
        n_entries = int(np.count_nonzero(sig.enter_long)) + int(np.count_nonzero(sig.enter_short))
        equity = np.empty(n)
        orders = np.empty((2 * n_entries + 2, K.ORDER_FIELDS))
        trades = np.empty((n_entries + 1, K.TRADE_FIELDS))
        scalars = np.zeros(K.SCALAR_FIELDS)
        K.simulate(
            bars.open, bars.high, bars.low, bars.close,
            sig.enter_long, sig.exit_long, sig.enter_short, sig.exit_short,
            sig.entry_type, sig.entry_price, sig.stop_loss, sig.take_profit, sig.trailing_stop,
            funding, cfg.cash, cfg.size, SIZE_MODES[cfg.size_mode], cfg.leverage or 0.0,
            cfg.maker_fee, cfg.taker_fee, cfg.slippage_bps, float(cfg.slippage_ticks),
            cfg.tick_size, cfg.lot_size, cfg.fill_at == "close", cfg.intrabar == "worst",
            equity, orders, trades, scalars,
        )  # fmt: skip
        orders = orders[: int(scalars[K.S_N_ORDERS])]
        trades = trades[: int(scalars[K.S_N_TRADES])]
        return equity, orders, trades, scalars

    def _run_event(
        self, sig: SignalArrays | None, funding: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], ...]:
        """The same backtest through the node that `build_node` assembles (the signals
        normalised above, so both engines read the same arrays)."""
        from sapphire.backtest.event import run_event_backtest

        run = run_event_backtest(
            self.bars, self.strategy, self.config, signals=sig, symbol=self.symbol,
            funding=funding if len(funding) else None, risk_profile=self.risk_profile,
            new_strategy=self._new_strategy if self.event_driven else None,
        )  # fmt: skip
        self.event_run = run
        return run.equity, run.orders, run.trades, run.scalars

    def _times(self, bar: NDArray[np.float64]) -> pd.DatetimeIndex:
        return self.index[bar.astype(np.int64)]

    def _trades_frame(self, t: NDArray[np.float64]) -> pd.DataFrame:
        side = t[:, K.T_SIDE]
        qty = t[:, K.T_QTY]
        entry = t[:, K.T_ENTRY_PRICE]
        fees = t[:, K.T_ENTRY_FEE] + t[:, K.T_EXIT_FEE]
        funding = t[:, K.T_FUNDING]
        pnl = _trade_pnl(t)
        frame = pd.DataFrame(
            {
                "entry_time": self._times(t[:, K.T_ENTRY_BAR]),
                "exit_time": self._times(t[:, K.T_EXIT_BAR]),
                "side": np.where(side > 0, "long", "short"),
                "size": qty,
                "entry_price": entry,
                "exit_price": t[:, K.T_EXIT_PRICE],
                "pnl": pnl,
                "return": pnl / (qty * entry),
                "fees": fees,
                "funding": funding,
                "exit_reason": EXIT_REASONS[t[:, K.T_REASON].astype(np.int64)],
                "entry_bar": t[:, K.T_ENTRY_BAR].astype(np.int64),
                "exit_bar": t[:, K.T_EXIT_BAR].astype(np.int64),
            },
            columns=TRADE_COLUMNS,
        )
        return frame

    def _orders_frame(self, o: NDArray[np.float64]) -> pd.DataFrame:
        fill_bar = o[:, K.O_FILL_BAR].astype(np.int64)
        filled = fill_bar >= 0
        fill_time = pd.Series(pd.NaT, index=range(len(o)), dtype="datetime64[ns, UTC]")
        fill_time[filled] = self.index[fill_bar[filled]]
        return pd.DataFrame(
            {
                "order_id": np.arange(len(o)),
                "created_time": self._times(o[:, K.O_BAR]),
                "fill_time": fill_time.to_numpy(),
                "side": np.where(o[:, K.O_SIDE] > 0, "buy", "sell"),
                "type": ORDER_TYPES[o[:, K.O_TYPE].astype(np.int64)],
                "role": ROLES[o[:, K.O_ROLE].astype(np.int64)],
                "quantity": o[:, K.O_QTY],
                "price": o[:, K.O_PRICE],
                "fill_price": o[:, K.O_FILL_PRICE],
                "fee": o[:, K.O_FEE],
                "status": ORDER_STATUS[o[:, K.O_STATUS].astype(np.int64)],
                "reason": REJECT_REASONS[o[:, K.O_REASON].astype(np.int64)],
                "liquidity": np.where(o[:, K.O_MAKER] > 0, "maker", "taker"),
                "bar": fill_bar,
            }
        )

    def _fills_frame(self, o: NDArray[np.float64]) -> pd.DataFrame:
        orders = self._orders_frame(o)
        fills = orders[orders["status"] == "filled"]
        return pd.DataFrame(
            {
                "order_id": fills["order_id"].to_numpy(),
                "time": fills["fill_time"].to_numpy(),
                "bar": fills["bar"].to_numpy(),
                "side": fills["side"].to_numpy(),
                "quantity": fills["quantity"].to_numpy(),
                "price": fills["fill_price"].to_numpy(),
                "fee": fills["fee"].to_numpy(),
                "liquidity": fills["liquidity"].to_numpy(),
                "role": fills["role"].to_numpy(),
            }
        )

    def _describe(self) -> dict[str, Any]:
        """The run's configuration as reports and stored runs show it (`RunConfig`)."""
        out = self.config.to_mapping()
        out["funding"] = self.funding is not None
        out["timeframe"] = str(pd.Timedelta(self.bars.timeframe_ns, unit="ns"))
        if self.liquidation is not None:
            out["liquidation_fee"] = float(self.liquidation.liquidation_fee_rate)
        return out


def _trade_pnl(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """Net pnl of kernel trade rows: side * qty * (exit - entry) - fees + funding."""
    gross = t[:, K.T_SIDE] * t[:, K.T_QTY] * (t[:, K.T_EXIT_PRICE] - t[:, K.T_ENTRY_PRICE])
    return np.asarray(
        gross - t[:, K.T_ENTRY_FEE] - t[:, K.T_EXIT_FEE] + t[:, K.T_FUNDING], dtype=np.float64
    )
