"""The configuration of a paper session, shared by the node and the venue server.

Both processes load the same bars and build the same instrument from one `PaperConfig`
(stored as JSON in the run's row of the store and in the venue's own database), so a
resumed node and a restarted venue see exactly what the first ones saw.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sapphire.engine.config import RunConfig, option

if TYPE_CHECKING:  # the CLI reads this module at start-up: these load on use
    from sapphire.domain import Instrument, InstrumentId
    from sapphire.strategy.base import Bars

#: the bundled sample's data source name (`sapphire.data.samples.SAMPLE`)
SAMPLE = "sample"

__all__ = ["SAMPLE", "PaperConfig", "parse_speed"]
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
class PaperConfig(RunConfig):
    """What a paper session trades and how: the run settings of every mode
    (`RunConfig`) plus the strategy, the data and the paper venue's pace."""

    #: paper trading always runs the event-driven node
    event_only = True

    engine: str = option("event", "Paper trading runs the event-driven node.")
    risk_profile: str | None = option(
        "conservative", "Risk profile: conservative, aggressive or a YAML file."
    )
    strategy: str = option("sma_cross", "Built-in name, module:Class or file.py:Class.")
    params: dict[str, Any] = field(default_factory=dict, metadata={"help": "Strategy parameters."})
    data: str = option(SAMPLE, "CSV/Parquet/Feather file, catalog symbol, or 'sample'.")
    speed: str = option("100x", "Replay speed: 1x, 100x... or max (lockstep).")
    drift_every: int = option(500, "ml strategy: check feature drift every N bars.")
    drift_window: int = option(2000, "ml strategy: bars compared with the training data.")
    retrain_on_drift: bool = option(
        False, "ml strategy: on drift, retrain and register a challenger."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_speed(self.speed)
        if self.drift_every < 1:
            raise ValueError(f"drift_every={self.drift_every!r} is invalid: expected >= 1")
        if self.drift_window < 50:
            raise ValueError(f"drift_window={self.drift_window!r} is invalid: expected >= 50")
        if self.engine != "event":
            raise ValueError(
                f"engine={self.engine!r} is invalid: paper trading runs the event-driven node"
            )
        if self.maintenance_margin is not None:
            raise ValueError(
                "maintenance_margin: the paper venue does not model liquidation; use an "
                "event-driven backtest (--engine event) for it"
            )
        if self.risk_profile is not None:
            from sapphire.risk import profile

            profile(self.risk_profile)  # an unknown profile -> ValueError naming it
        if self.funding is not None and not Path(self.funding).is_absolute():
            # the venue runs in its own process: the file is named absolutely
            object.__setattr__(self, "funding", str(Path(self.funding).resolve()))

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
        from sapphire.backtest.runner import align_funding
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

    @property
    def speed_factor(self) -> float | None:
        return parse_speed(self.speed)

    @property
    def instrument_id(self) -> InstrumentId:
        name = "BTC-PERP" if self.data == SAMPLE else self.data.rsplit("/", 1)[-1]
        from sapphire.domain import InstrumentId

        return InstrumentId(re.sub(r"[^A-Za-z0-9._-]", "_", name) or "bars", "PAPER")

    def instrument(self, instrument_id: InstrumentId | None = None) -> Instrument:
        """The one instrument traded (`RunConfig.instrument`, on `instrument_id`)."""
        return super().instrument(instrument_id or self.instrument_id)

    def load_bars(self, cache: Path | None = None) -> Bars:
        """The replayed bars (the sample, a file or a catalog symbol). With `cache` (a
        run's `bars.npz`) the bars are read from there when it exists, else loaded and
        written there: a restarted node or venue replays exactly the same bars, and
        starts faster."""
        import numpy as np

        if cache is not None and cache.exists():
            from sapphire.strategy.base import Bars

            with np.load(cache) as z:
                return Bars(
                    time=z["time"], open=z["open"], high=z["high"], low=z["low"],
                    close=z["close"], volume=z["volume"], timeframe_ns=int(z["timeframe_ns"]),
                )  # fmt: skip
        from sapphire.backtest.runner import bars_from_frame
        from sapphire.data import load_ohlcv

        frame, _report = load_ohlcv(
            self.data, start=self.start, end=self.end, venue=self.venue,
            timeframe=self.timeframe, gaps=self.gaps, read=self.read_options(),
        )  # fmt: skip
        if self.resample:
            from sapphire.data import resample_ohlcv

            frame = resample_ohlcv(frame, self.resample)
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
