"""`Backtest`: run a vectorised strategy through the compiled simulation kernel."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sapphire.backtest.metrics import compute_metrics, periods_per_year
from sapphire.backtest.result import TRADE_COLUMNS, BacktestResult
from sapphire.sim import kernel as K
from sapphire.strategy.base import ENTRY_TYPES, Bars, Signals, Strategy
from sapphire.strategy.registry import get_strategy

SizeMode = Literal["fixed", "notional", "equity"]
SIZE_MODES = {"fixed": K.SIZE_FIXED, "notional": K.SIZE_NOTIONAL, "equity": K.SIZE_EQUITY}
EXIT_REASONS = np.array(
    ["", "signal", "stop_loss", "take_profit", "trailing_stop", "end", "liquidation", "kill_switch"]
)
ORDER_TYPES = np.array(["market", "limit", "stop"])
ORDER_STATUS = np.array(["filled", "expired", "rejected"])
# the DatetimeIndex of each Bars object still alive (Bars are immutable)
_INDEXES: weakref.WeakKeyDictionary[Bars, pd.DatetimeIndex] = weakref.WeakKeyDictionary()
REJECT_REASONS = np.array(
    ["", "size below lot", "insufficient margin", "invalid entry price", "denied by risk"]
)
ROLES = np.array(
    [
        "entry", "signal", "stop_loss", "take_profit", "trailing_stop", "end", "liquidation",
        "kill_switch",
    ]
)  # fmt: skip


@dataclass(frozen=True)
class BacktestConfig:
    """Every knob of a vectorised backtest, validated once."""

    cash: float = 10_000.0
    size: float = 1.0
    size_mode: SizeMode = "fixed"
    leverage: float | None = None
    maker_fee: float = 0.0
    taker_fee: float = 0.0
    slippage_bps: float = 0.0
    slippage_ticks: int = 0
    tick_size: float = 0.0
    lot_size: float = 0.0
    fill_at: Literal["open", "close"] = "open"
    intrabar: Literal["path", "worst"] = "path"
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None

    def __post_init__(self) -> None:
        def bad(name: str, value: object, expected: str) -> ValueError:
            return ValueError(f"{name}={value!r} is invalid: expected {expected}")

        if not (np.isfinite(self.cash) and self.cash > 0):
            raise bad("cash", self.cash, "a positive amount")
        if not (np.isfinite(self.size) and self.size > 0):
            raise bad("size", self.size, "a positive number")
        if self.size_mode not in SIZE_MODES:
            raise bad("size_mode", self.size_mode, "fixed, notional or equity")
        if self.leverage is not None and not (np.isfinite(self.leverage) and self.leverage >= 1):
            raise bad("leverage", self.leverage, "a number >= 1, or None for no margin limit")
        for name in ("maker_fee", "taker_fee"):
            value = getattr(self, name)
            if not (np.isfinite(value) and -0.01 <= value < 0.1):
                raise bad(name, value, "a fraction of notional in [-0.01, 0.1), e.g. 0.001")
        if not (np.isfinite(self.slippage_bps) and 0 <= self.slippage_bps < 10_000):
            raise bad("slippage_bps", self.slippage_bps, "basis points in [0, 10000)")
        if self.slippage_ticks < 0:
            raise bad("slippage_ticks", self.slippage_ticks, "a whole number of ticks >= 0")
        if self.slippage_ticks and self.slippage_bps:
            raise ValueError("give slippage_bps or slippage_ticks, not both")
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise bad(name, value, "a size >= 0 (0 = no rounding)")
        if self.slippage_ticks and not self.tick_size:
            raise ValueError("slippage_ticks needs a tick_size")
        if self.fill_at not in ("open", "close"):
            raise bad("fill_at", self.fill_at, "'open' (next bar's open) or 'close'")
        if self.intrabar not in ("path", "worst"):
            raise bad("intrabar", self.intrabar, "'path' or 'worst'")
        for name in ("stop_loss", "take_profit", "trailing_stop"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and 0 < value < 1):
                raise bad(name, value, "a fraction of the entry price in (0, 1), e.g. 0.02")


def _bool_signal(value: Any, n: int, what: str, strategy: str) -> NDArray[np.bool_]:
    if value is None:
        return np.zeros(n, dtype=np.bool_)
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ValueError(f"strategy {strategy!r}: {what} has shape {arr.shape}, expected ({n},)")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"strategy {strategy!r}: {what} must be boolean, got dtype {arr.dtype}")
    with np.errstate(invalid="ignore"):
        return np.asarray(np.nan_to_num(arr.astype(np.float64)) != 0.0)


def _float_input(
    value: Any, n: int, what: str, strategy: str, default: float = np.nan
) -> NDArray[np.float64]:
    if value is None:
        return np.array([default])
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return arr.reshape(1)
    if arr.shape != (n,):
        raise ValueError(f"strategy {strategy!r}: {what} has shape {arr.shape}, expected ({n},)")
    return arr


def _entry_types(value: Any, n: int, strategy: str) -> NDArray[np.int8]:
    if isinstance(value, str):
        if value not in ENTRY_TYPES:
            raise ValueError(
                f"strategy {strategy!r}: entry_type {value!r} is not one of {list(ENTRY_TYPES)}"
            )
        return np.array([ENTRY_TYPES[value]], dtype=np.int8)
    arr = np.asarray(value)
    if arr.shape != (n,):
        raise ValueError(
            f"strategy {strategy!r}: entry_type has shape {arr.shape}, expected ({n},)"
        )
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 2):
            raise ValueError(f"strategy {strategy!r}: entry_type codes must be 0, 1 or 2")
        return arr.astype(np.int8)
    codes = np.empty(n, dtype=np.int8)
    for name, code in ENTRY_TYPES.items():
        codes[arr == name] = code
    unknown = ~np.isin(arr, list(ENTRY_TYPES))
    if unknown.any():
        raise ValueError(
            f"strategy {strategy!r}: entry_type {arr[unknown][0]!r} is not one of "
            f"{list(ENTRY_TYPES)}"
        )
    return codes


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
    """A vectorised backtest of one strategy on one instrument's bars.

    `data` is a DataFrame (any supported column names), a file path, a catalog symbol
    or `Bars`; `strategy` a built-in name, `module:Class` / `file.py:Class`, or a
    Strategy class. Remaining keyword arguments are the strategy's parameters.
    """

    def __init__(
        self,
        data: pd.DataFrame | str | Path | Bars,
        strategy: str | type[Strategy] = "sma_cross",
        *,
        symbol: str | None = None,
        cash: float = 10_000.0,
        size: float = 1.0,
        size_mode: SizeMode = "fixed",
        leverage: float | None = None,
        fee: float = 0.0,
        maker_fee: float | None = None,
        taker_fee: float | None = None,
        slippage_bps: float = 0.0,
        slippage_ticks: int = 0,
        tick_size: float | None = None,
        lot_size: float | None = None,
        fill_at: Literal["open", "close"] = "open",
        intrabar: Literal["path", "worst"] = "path",
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
        funding: pd.Series | str | Path | None = None,
        start: Any = None,
        end: Any = None,
        venue: str | None = None,
        timeframe: str | None = None,
        resample: str | None = None,
        gaps: Literal["keep", "ffill", "fail"] = "keep",
        engine: Literal["vector", "event"] = "vector",
        maintenance_margin: float | None = None,
        liquidation_fee: float | None = None,
        risk_profile: Any = None,
        **params: Any,
    ) -> None:
        if engine not in ("vector", "event"):
            raise ValueError(f"engine={engine!r} is invalid: expected 'vector' or 'event'")
        self.liquidation = self._liquidation_rule(engine, maintenance_margin, liquidation_fee)
        self.risk_profile = self._risk_profile(engine, risk_profile)
        self.event_run: Any = None  # the last event-driven run (node, monitor, refusals)
        if engine == "event" and fill_at != "open":
            raise ValueError(
                "engine='event' fills signal orders at the next bar's open: fill_at='close' "
                "is a vectorised-backtest option"
            )
        self.engine = engine
        self.strategy_cls = get_strategy(strategy)
        self.strategy = self.strategy_cls(**params)
        self.bars, self.symbol, meta = self._load(
            data, symbol, start, end, venue, timeframe, resample, gaps
        )
        self.config = BacktestConfig(
            cash=float(cash),
            size=float(size),
            size_mode=size_mode,
            leverage=None if leverage is None else float(leverage),
            maker_fee=float(fee if maker_fee is None else maker_fee),
            taker_fee=float(fee if taker_fee is None else taker_fee),
            slippage_bps=float(slippage_bps),
            slippage_ticks=int(slippage_ticks),
            tick_size=float(tick_size if tick_size is not None else meta.get("tick_size") or 0.0),
            lot_size=float(lot_size if lot_size is not None else meta.get("lot_size") or 0.0),
            fill_at=fill_at,
            intrabar=intrabar,
            stop_loss=stop_loss,
            take_profit=take_profit,
            trailing_stop=trailing_stop,
        )
        if isinstance(funding, str | Path):
            from sapphire.data import read_funding

            funding = read_funding(funding)
        self.funding = align_funding(funding, self.bars) if funding is not None else None
        self._index: pd.DatetimeIndex | None = None

    @staticmethod
    def _risk_profile(engine: str, risk_profile: Any) -> Any:
        """A `RiskProfile` from a built-in name or a profile (None: no risk checks)."""
        if risk_profile is None:
            return None
        if engine != "event":
            raise ValueError(
                "risk_profile needs engine='event': the vectorised kernel has no pre-trade "
                "checks or portfolio limits"
            )
        from sapphire.risk import RiskProfile, profile

        if isinstance(risk_profile, str):
            return profile(risk_profile)
        if not isinstance(risk_profile, RiskProfile):
            raise ValueError(
                f"risk_profile={risk_profile!r} is invalid: expected a profile name or a "
                "RiskProfile"
            )
        return risk_profile

    @staticmethod
    def _liquidation_rule(
        engine: str, maintenance_margin: float | None, liquidation_fee: float | None
    ) -> Any:
        """The event venue's `LiquidationRule` (None: no liquidation)."""
        given = [
            name
            for name, value in (
                ("maintenance_margin", maintenance_margin),
                ("liquidation_fee", liquidation_fee),
            )
            if value is not None
        ]
        if not given:
            return None
        if engine != "event":
            raise ValueError(
                f"{' and '.join(given)} need engine='event': the vectorised kernel does not "
                "model liquidation"
            )
        if maintenance_margin is None:
            raise ValueError("liquidation_fee needs maintenance_margin (the liquidation rule)")
        from sapphire.sim.exchange import LiquidationRule

        for name, value in (
            ("maintenance_margin", maintenance_margin),
            ("liquidation_fee", liquidation_fee),
        ):
            if value is not None and not (np.isfinite(value) and 0 <= value < 1):
                raise ValueError(f"{name}={value!r} is invalid: expected a rate in [0, 1)")
        return LiquidationRule(
            maintenance_margin_rate=Decimal(repr(float(maintenance_margin))),
            liquidation_fee_rate=Decimal(repr(float(liquidation_fee)))
            if liquidation_fee is not None
            else Decimal("0.005"),
        )

    @staticmethod
    def _load(
        data: Any,
        symbol: str | None,
        start: Any,
        end: Any,
        venue: str | None,
        timeframe: str | None,
        resample: str | None,
        gaps: str,
    ) -> tuple[Bars, str, dict[str, Any]]:
        if isinstance(data, Bars):
            if resample or start is not None or end is not None:
                raise ValueError("start/end/resample need a DataFrame, file or symbol, not Bars")
            return data, symbol or "bars", {}
        from sapphire.data import Catalog, load_ohlcv, resample_ohlcv
        from sapphire.data.load import is_file_source

        meta: dict[str, Any] = {}
        name = symbol
        if isinstance(data, pd.DataFrame):
            name = name or "data"
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
            data, gaps=gaps, start=start, end=end, venue=venue, timeframe=timeframe
        )
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
        """Run the strategy on the bars and return its signals."""
        return self.strategy.signals(self.bars)

    def run(self) -> BacktestResult:
        """Compute the signals, simulate, and return trades, equity and metrics."""
        bars, cfg, name = self.bars, self.config, self.strategy.name
        n = len(bars)
        sig = self.signals()
        if not isinstance(sig, Signals):
            raise TypeError(f"strategy {name!r}: signals() must return Signals, got {sig!r}")
        enter_long = _bool_signal(sig.enter_long, n, "enter_long", name)
        exit_long = _bool_signal(sig.exit_long, n, "exit_long", name)
        enter_short = _bool_signal(sig.enter_short, n, "enter_short", name)
        exit_short = _bool_signal(sig.exit_short, n, "exit_short", name)
        sl = _float_input(
            cfg.stop_loss if cfg.stop_loss is not None else sig.stop_loss, n, "stop_loss", name
        )
        tp = _float_input(
            cfg.take_profit if cfg.take_profit is not None else sig.take_profit,
            n,
            "take_profit",
            name,
        )
        ts = _float_input(
            cfg.trailing_stop if cfg.trailing_stop is not None else sig.trailing_stop,
            n,
            "trailing_stop",
            name,
        )
        etype = _entry_types(sig.entry_type, n, name)
        eprice = _float_input(sig.entry_price, n, "entry_price", name)
        funding = self.funding if self.funding is not None else np.zeros(0)

        if self.engine == "event":
            equity, orders, trades, scalars = self._run_event(
                (enter_long, exit_long, enter_short, exit_short, etype, eprice, sl, tp, ts),
                funding,
            )
        else:
            equity, orders, trades, scalars = self._run_kernel(
                enter_long, exit_long, enter_short, exit_short, etype, eprice, sl, tp, ts, funding
            )
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
        return BacktestResult(
            strategy=name,
            params=self.strategy.values,
            config=self._describe(),
            symbol=self.symbol,
            bars=bars,
            equity=pd.Series(equity, index=self.index, name="equity", copy=False),
            metrics=metrics,
            _trades=lambda: self._trades_frame(trades),
            _orders=lambda: self._orders_frame(orders),
            _fills=lambda: self._fills_frame(orders),
        )

    def _run_kernel(
        self,
        enter_long: NDArray[np.bool_],
        exit_long: NDArray[np.bool_],
        enter_short: NDArray[np.bool_],
        exit_short: NDArray[np.bool_],
        etype: NDArray[np.int8],
        eprice: NDArray[np.float64],
        sl: NDArray[np.float64],
        tp: NDArray[np.float64],
        ts: NDArray[np.float64],
        funding: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], ...]:
        bars, cfg = self.bars, self.config
        n = len(bars)
        n_entries = int(np.count_nonzero(enter_long)) + int(np.count_nonzero(enter_short))
        equity = np.empty(n)
        orders = np.empty((2 * n_entries + 2, K.ORDER_FIELDS))
        trades = np.empty((n_entries + 1, K.TRADE_FIELDS))
        scalars = np.zeros(6)
        K.simulate(
            bars.open, bars.high, bars.low, bars.close,
            enter_long, exit_long, enter_short, exit_short,
            etype, eprice, sl, tp, ts, funding,
            cfg.cash, cfg.size, SIZE_MODES[cfg.size_mode], cfg.leverage or 0.0,
            cfg.maker_fee, cfg.taker_fee, cfg.slippage_bps, float(cfg.slippage_ticks),
            cfg.tick_size, cfg.lot_size, cfg.fill_at == "close", cfg.intrabar == "worst",
            equity, orders, trades, scalars,
        )  # fmt: skip
        orders = orders[: int(scalars[K.S_N_ORDERS])]
        trades = trades[: int(scalars[K.S_N_TRADES])]
        return equity, orders, trades, scalars

    def _run_event(
        self, arrays: tuple[NDArray[Any], ...], funding: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], ...]:
        """The same backtest through the event-driven node and simulated venue (the
        signals normalised above, so both engines read the same arrays)."""
        from sapphire.backtest.event import run_event_backtest
        from sapphire.engine.adapter import SignalArrays

        signals = SignalArrays(*arrays)
        cfg = self.config
        run = run_event_backtest(
            self.bars, self.strategy, signals, symbol=self.symbol, cash=cfg.cash,
            size=cfg.size, size_mode=cfg.size_mode, leverage=cfg.leverage,
            maker_fee=cfg.maker_fee, taker_fee=cfg.taker_fee,
            slippage_bps=cfg.slippage_bps, slippage_ticks=cfg.slippage_ticks,
            tick_size=cfg.tick_size, lot_size=cfg.lot_size, intrabar=cfg.intrabar,
            funding=funding if len(funding) else None, liquidation=self.liquidation,
            risk_profile=self.risk_profile,
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
        cfg = self.config
        return {
            "cash": cfg.cash,
            "size": cfg.size,
            "size_mode": cfg.size_mode,
            "leverage": cfg.leverage,
            "maker_fee": cfg.maker_fee,
            "taker_fee": cfg.taker_fee,
            "slippage_bps": cfg.slippage_bps,
            "slippage_ticks": cfg.slippage_ticks,
            "tick_size": cfg.tick_size,
            "lot_size": cfg.lot_size,
            "fill_at": cfg.fill_at,
            "intrabar": cfg.intrabar,
            "stop_loss": cfg.stop_loss,
            "take_profit": cfg.take_profit,
            "trailing_stop": cfg.trailing_stop,
            "funding": self.funding is not None,
            "timeframe": str(pd.Timedelta(self.bars.timeframe_ns, unit="ns")),
            "engine": self.engine,
            **(
                {
                    "maintenance_margin": float(self.liquidation.maintenance_margin_rate),
                    "liquidation_fee": float(self.liquidation.liquidation_fee_rate),
                }
                if self.liquidation is not None
                else {}
            ),
            **({"risk_profile": self.risk_profile.name} if self.risk_profile is not None else {}),
        }


def _trade_pnl(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """Net pnl of kernel trade rows: side * qty * (exit - entry) - fees + funding."""
    gross = t[:, K.T_SIDE] * t[:, K.T_QTY] * (t[:, K.T_EXIT_PRICE] - t[:, K.T_ENTRY_PRICE])
    return np.asarray(
        gross - t[:, K.T_ENTRY_FEE] - t[:, K.T_EXIT_FEE] + t[:, K.T_FUNDING], dtype=np.float64
    )
