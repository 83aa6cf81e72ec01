"""The configuration of a paper session, shared by the node and the venue server.

Both processes load the same bars and build the same instrument from one `PaperConfig`
(stored as JSON in the run's row of the store and in the venue's own database), so a
resumed node and a restarted venue see exactly what the first ones saw.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from sapphire.domain import ContractType, Instrument, InstrumentId
from sapphire.strategy.base import Bars

__all__ = ["SAMPLE", "PaperConfig", "parse_speed"]

SAMPLE = "sample"
_SPEED = re.compile(r"^(\d+(?:\.\d+)?)x$")


def parse_speed(speed: str) -> float | None:
    """`"100x"` -> 100.0 (bars replayed 100 times faster than real time); `"max"` -> None
    (lockstep: the venue moves one bar each time the node has taken the previous one)."""
    text = str(speed).strip().lower()
    if text == "max":
        return None
    m = _SPEED.match(text)
    if m is None or not float(m.group(1)) > 0:
        raise ValueError(f"speed={speed!r} is invalid: expected e.g. 1x, 100x or max")
    return float(m.group(1))


@dataclass(frozen=True)
class PaperConfig:
    """What a paper session trades and how (the backtest options that apply)."""

    strategy: str = "sma_cross"
    params: dict[str, Any] = field(default_factory=dict)
    data: str = SAMPLE
    start: str | None = None
    end: str | None = None
    speed: str = "100x"
    risk_profile: str = "conservative"
    cash: float = 10_000.0
    size: float = 1.0
    size_mode: str = "fixed"
    leverage: float | None = None
    maker_fee: float = 0.0
    taker_fee: float = 0.0
    slippage_bps: float = 0.0
    tick_size: float = 0.0
    lot_size: float = 0.0
    intrabar: str = "path"
    #: a funding-rate file (as `sapphire backtest --funding`), absolute; None = no funding
    funding: str | None = None
    #: `ml` strategies: check feature drift every N bars over the last `drift_window` bars
    drift_every: int = 500
    drift_window: int = 2000
    #: `ml` strategies: on a drift breach, retrain on the latest bars as a `challenger`
    retrain_on_drift: bool = False

    def __post_init__(self) -> None:
        parse_speed(self.speed)
        if self.drift_every < 1:
            raise ValueError(f"drift_every={self.drift_every!r} is invalid: expected >= 1")
        if self.drift_window < 50:
            raise ValueError(f"drift_window={self.drift_window!r} is invalid: expected >= 50")
        from sapphire.risk import profile

        profile(self.risk_profile)  # an unknown profile -> ValueError naming it
        if self.size_mode not in ("fixed", "notional", "equity", "risk"):
            raise ValueError(
                f"size_mode={self.size_mode!r} is invalid: expected fixed, notional, equity, risk"
            )
        if not (math.isfinite(self.cash) and self.cash > 0):
            raise ValueError(f"cash={self.cash!r} is invalid: expected a positive number")
        if not (math.isfinite(self.size) and self.size > 0):
            raise ValueError(f"size={self.size!r} is invalid: expected a positive number")
        if self.intrabar not in ("path", "worst"):
            raise ValueError(f"intrabar={self.intrabar!r} is invalid: expected path or worst")
        for name in ("maker_fee", "taker_fee", "slippage_bps", "tick_size", "lot_size"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} is invalid: expected a number >= 0")

    def funding_rates(self, bars: Bars, cache: Path | None = None) -> Any:
        """The funding rate of each bar (summed into the bar whose interval holds each
        funding time, as the backtester does), or None without a funding file. With
        `cache` (the run's `funding.npy`) the rates are read from there when it exists,
        else computed and written there, so the node and the venue (and every restart)
        apply the same rates even if the file changes."""
        import numpy as np

        if self.funding is None:
            return None
        if cache is not None and cache.exists():
            return np.load(cache)
        from sapphire.backtest.engine import align_funding
        from sapphire.data import read_funding

        rates = align_funding(read_funding(self.funding), bars)
        if len(rates) != len(bars):
            raise ValueError(f"{self.funding}: {len(rates)} funding rates for {len(bars)} bars")
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, rates)
            os.replace(tmp, cache)
        return rates

    def to_mapping(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any]) -> PaperConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"unknown paper config keys: {', '.join(unknown)}")
        return cls(**mapping)

    @property
    def speed_factor(self) -> float | None:
        return parse_speed(self.speed)

    @property
    def instrument_id(self) -> InstrumentId:
        name = "BTC-PERP" if self.data == SAMPLE else self.data.rsplit("/", 1)[-1]
        return InstrumentId(re.sub(r"[^A-Za-z0-9._-]", "_", name) or "bars", "PAPER")

    def instrument(self) -> Instrument:
        """The one instrument traded (the backtester's conventions: perpetual, quote
        settled; a zero tick/lot means no grid)."""
        return Instrument(
            self.instrument_id, "BASE", "QUOTE", "QUOTE", ContractType.PERPETUAL,
            tick_size=Decimal(repr(self.tick_size)) if self.tick_size > 0 else Decimal("1e-12"),
            lot_size=Decimal(repr(self.lot_size)) if self.lot_size > 0 else Decimal("1e-12"),
            maker_fee=Decimal(repr(self.maker_fee)), taker_fee=Decimal(repr(self.taker_fee)),
        )  # fmt: skip

    def load_bars(self, cache: Path | None = None) -> Bars:
        """The replayed bars (the sample, a file or a catalog symbol). With `cache` (a
        run's `bars.npz`) the bars are read from there when it exists, else loaded and
        written there: a restarted node or venue replays exactly the same bars, and
        starts faster."""
        import numpy as np

        if cache is not None and cache.exists():
            with np.load(cache) as z:
                return Bars(
                    time=z["time"], open=z["open"], high=z["high"], low=z["low"],
                    close=z["close"], volume=z["volume"], timeframe_ns=int(z["timeframe_ns"]),
                )  # fmt: skip
        from sapphire.backtest.engine import bars_from_frame
        from sapphire.data import load_ohlcv

        source: Any = self.data
        if self.data == SAMPLE:
            from sapphire.data.samples import SAMPLE_PATH

            source = SAMPLE_PATH
        frame, _report = load_ohlcv(source, start=self.start, end=self.end)
        if len(frame) < 2:
            raise ValueError(f"{self.data}: need at least 2 bars for a paper session")
        bars = bars_from_frame(frame)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.savez(
                    fh, time=bars.time, open=bars.open, high=bars.high, low=bars.low,
                    close=bars.close, volume=bars.volume, timeframe_ns=bars.timeframe_ns,
                )  # fmt: skip
            os.replace(tmp, cache)
        return bars
