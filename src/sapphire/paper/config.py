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
#: the strategy name of the `Rebalancer` (`sapphire.engine.rebalance`): target weights
#: across the instruments of `data` (several sources, comma-separated)
REBALANCE = "rebalance"

__all__ = ["REBALANCE", "SAMPLE", "PaperConfig", "parse_speed"]
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
    strategy: str = option(
        "sma_cross", "Built-in name, module:Class, file.py:Class, or rebalance (see --weights)."
    )
    params: dict[str, Any] = field(default_factory=dict, metadata={"help": "Strategy parameters."})
    data: str = option(
        SAMPLE,
        "CSV/Parquet/Feather file, catalog symbol, or 'sample'; --strategy rebalance: "
        "several, comma-separated, each a source or NAME=source.",
    )
    speed: str = option("100x", "Replay speed: 1x, 100x... or max (lockstep).")
    drift_every: int = option(500, "ml strategy: check feature drift every N bars.")
    drift_window: int = option(2000, "ml strategy: bars compared with the training data.")
    retrain_on_drift: bool = option(
        False, "ml strategy: on drift, retrain and register a challenger."
    )
    weights: str | None = option(
        None, "rebalance: target weights of the equity, e.g. ETH=0.6,ADA=0.35 (sum <= 1)."
    )
    allocation: str | None = option(
        None, "rebalance: or weights by an allocation method (equal, inverse_vol, hrp...)."
    )
    rebalance_every: str = option(
        "1D", "rebalance: schedule, a number of bars or a period (4h, 1D, 1W, 1M)."
    )
    rebalance_drift: float = option(
        0.0, "rebalance: trade only the weights off target by more than this."
    )
    lookback: int = option(100, "rebalance: returns the allocation method is fitted on.")

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
        if self.strategy == REBALANCE:
            if self.funding is not None:
                raise ValueError(
                    "funding: a rebalancing paper session takes no funding file (several "
                    "instruments); leave --funding out"
                )
            self.sources()  # a bad list of sources -> ValueError naming it
            self.rebalancer()  # bad weights or schedule -> ValueError naming the value
        elif self.weights is not None or self.allocation is not None:
            raise ValueError(
                f"weights/allocation are the rebalance strategy's settings, but strategy="
                f"{self.strategy!r}: give --strategy rebalance"
            )
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

    def sources(self) -> dict[str, str]:
        """The data of each instrument by name: one source for a strategy, and for
        `rebalance` each comma-separated item of `data` (NAME=source, or a source named
        by its file stem)."""
        if self.strategy != REBALANCE:
            return {self.instrument_id.symbol: self.data}
        out: dict[str, str] = {}
        for item in self.data.split(","):
            name, sep, source = item.strip().partition("=")
            if not sep:
                source = name
                name = "BTC-PERP" if source == SAMPLE else Path(source).stem
            name = re.sub(r"[^A-Za-z0-9._-]", "_", name.strip())
            if not name or not source.strip():
                raise ValueError(f"data item {item!r} is invalid: expected a source or NAME=source")
            if name in out:
                raise ValueError(f"data: instrument {name!r} is given twice in {self.data!r}")
            out[name] = source.strip()
        return out

    @property
    def instrument_ids(self) -> list[InstrumentId]:
        """Every instrument traded, in the order of `sources`."""
        from sapphire.domain import InstrumentId

        return [InstrumentId(name, "PAPER") for name in self.sources()]

    def rebalancer(self, strategy_id: str = "s") -> Any:
        """The `Rebalancer` of a `rebalance` session, over `instrument_ids`."""
        from sapphire.engine.rebalance import Rebalancer, parse_weights

        if self.weights is None and self.allocation is None:
            raise ValueError("strategy rebalance needs --weights or --allocation")
        weights = None if self.weights is None else parse_weights(self.weights)
        every = self.rebalance_every
        return Rebalancer(
            self.instrument_ids, weights=weights, method=self.allocation,
            lookback=self.lookback, every=int(every) if every.isdigit() else every,
            drift=self.rebalance_drift, strategy_id=strategy_id,
        )  # fmt: skip

    @property
    def speed_factor(self) -> float | None:
        return parse_speed(self.speed)

    @property
    def instrument_id(self) -> InstrumentId:
        if self.strategy == REBALANCE:
            return self.instrument_ids[0]
        name = "BTC-PERP" if self.data == SAMPLE else self.data.rsplit("/", 1)[-1]
        from sapphire.domain import InstrumentId

        return InstrumentId(re.sub(r"[^A-Za-z0-9._-]", "_", name) or "bars", "PAPER")

    def instrument(self, instrument_id: InstrumentId | None = None) -> Instrument:
        """The one instrument traded (`RunConfig.instrument`, on `instrument_id`)."""
        return super().instrument(instrument_id or self.instrument_id)

    def load_feeds(self, cache: Path | None = None) -> dict[InstrumentId, Bars]:
        """The replayed bars of every instrument, on the times all of them have (one
        instrument: `load_bars`). With `cache` (a run's `bars.npz`) each instrument's
        bars are cached beside it (`bars-1.npz`... for the second and later ones)."""
        ids = self.instrument_ids if self.strategy == REBALANCE else [self.instrument_id]
        caches = [
            None if cache is None else cache if k == 0 else cache.with_name(f"bars-{k}.npz")
            for k in range(len(ids))
        ]
        if len(ids) == 1:
            return {ids[0]: self.load_bars(cache, source=next(iter(self.sources().values())))}
        if all(c is not None and c.exists() for c in caches):
            return {iid: self._read_bars(c) for iid, c in zip(ids, caches, strict=True)}  # type: ignore[arg-type]
        from sapphire.backtest.portfolio import align_bars

        frames = {str(iid): self._frame(src) for iid, src in
                  zip(ids, self.sources().values(), strict=True)}  # fmt: skip
        aligned = align_bars(frames)
        out = {}
        for iid, c in zip(ids, caches, strict=True):
            bars = aligned[str(iid)]
            if c is not None:
                self._write_bars(bars, c)
            out[iid] = bars
        return out

    @staticmethod
    def _read_bars(cache: Path) -> Bars:
        import numpy as np

        from sapphire.strategy.base import Bars

        with np.load(cache) as z:
            return Bars(
                time=z["time"], open=z["open"], high=z["high"], low=z["low"],
                close=z["close"], volume=z["volume"], timeframe_ns=int(z["timeframe_ns"]),
            )  # fmt: skip

    @staticmethod
    def _write_bars(bars: Bars, cache: Path) -> None:
        import numpy as np

        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh, time=bars.time, open=bars.open, high=bars.high, low=bars.low,
                close=bars.close, volume=bars.volume, timeframe_ns=bars.timeframe_ns,
            )  # fmt: skip
        os.replace(tmp, cache)

    def _frame(self, source: str) -> Any:
        """One source's canonical bars, cut to start/end and resampled."""
        from sapphire.data import load_ohlcv

        frame, _report = load_ohlcv(
            source, start=self.start, end=self.end, venue=self.venue,
            timeframe=self.timeframe, gaps=self.gaps, read=self.read_options(),
        )  # fmt: skip
        if self.resample:
            from sapphire.data import resample_ohlcv

            frame = resample_ohlcv(frame, self.resample)
        if len(frame) < 2:
            raise ValueError(f"{source}: need at least 2 bars for a paper session")
        return frame

    def load_bars(self, cache: Path | None = None, source: str | None = None) -> Bars:
        """The replayed bars (the sample, a file or a catalog symbol; by default `data`,
        the first instrument's for `rebalance`). With `cache` (a run's `bars.npz`) the
        bars are read from there when it exists, else loaded and written there: a
        restarted node or venue replays exactly the same bars, and starts faster."""
        if self.strategy == REBALANCE and source is None:
            return next(iter(self.load_feeds(cache).values()))
        if cache is not None and cache.exists():
            return self._read_bars(cache)
        from sapphire.backtest.runner import bars_from_frame

        bars = bars_from_frame(self._frame(self.data if source is None else source))
        if cache is not None:
            self._write_bars(bars, cache)
        return bars
