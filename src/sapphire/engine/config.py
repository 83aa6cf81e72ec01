"""`RunConfig`: every setting of a run, declared once.

The Python API (`Backtest(..., **options)`), the CLI options of `backtest`, `optimize`,
`walk-forward`, `check` and `paper` (`sapphire.cli.options.run_options`), the run's stored
metadata (`to_mapping`) and the reports all come from the fields below: a new setting
is one new field here, with its help text, and nothing else to keep in step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:  # the CLI reads this module at start-up: the domain loads on use
    from sapphire.data import ReadOptions
    from sapphire.domain import Instrument, InstrumentId

__all__ = ["READ_FIELDS", "RUN_OPTIONS", "RunConfig", "field_default", "option", "option_help"]

_SIZE_MODES = ("fixed", "notional", "equity", "risk")
#: the settings that say how to read the data file (`RunConfig.read_options`)
READ_FIELDS = ("time_column", "columns", "date_format", "delimiter")


def option(default: Any, help: str) -> Any:
    """A field with its CLI help text (`sapphire.cli.options` reads it)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    """How a strategy is run: account, sizing, costs, exits, engine, risk and data range.

    Frozen and validated on construction (a bad value raises ValueError naming the field
    and what was expected). Build it with keyword arguments or `from_options`, which also
    takes `fee` (both maker and taker fee) and rejects unknown names.
    """

    cash: float = option(10_000.0, "Starting cash (quote currency).")
    size: float = option(
        0.95, "Position size; meaning set by --size-mode (default: 95% of equity)."
    )
    size_mode: str = option(
        "equity",
        "equity (fraction of equity), fixed (base qty), notional (quote amount), risk (the "
        "risk profile's risk per trade from each entry's stop-loss; event engine and paper).",
    )
    leverage: float | None = option(
        1.0, "Max notional / equity (margin limit); 0: no margin limit (cash may go negative)."
    )
    maker_fee: float = option(0.0, "Maker fee, fraction of notional (overrides --fee).")
    taker_fee: float = option(0.0, "Taker fee, fraction of notional (overrides --fee).")
    slippage_bps: float = option(0.0, "Slippage on taker fills, in bps.")
    slippage_ticks: int = option(0, "Slippage on taker fills, in ticks.")
    tick_size: float = option(0.0, "Price tick of the instrument (0: none, or the catalog's).")
    lot_size: float = option(0.0, "Quantity step of the instrument (0: none, or the catalog's).")
    fill_at: str = option("open", "open (next bar) or close (signal bar; vector engine only).")
    intrabar: str = option("path", "Intrabar path: path or worst.")
    stop_loss: float | None = option(None, "Stop-loss, fraction of entry.")
    take_profit: float | None = option(None, "Take-profit, fraction of entry.")
    trailing_stop: float | None = option(None, "Trailing stop, fraction of entry.")
    engine: str = option(
        "vector", "vector (compiled kernel) or event (the trading node; same trades)."
    )
    risk_profile: str | None = option(
        None,
        "Event engine and paper: a risk profile (conservative, aggressive or a YAML file): "
        "pre-trade checks, and portfolio limits fed each bar (halt + kill switch).",
    )
    maintenance_margin: float | None = option(
        None, "Event engine: liquidate when equity < |qty| * price * this rate (e.g. 0.005)."
    )
    liquidation_fee: float | None = option(
        None, "Event engine: liquidation fee, fraction of notional (default 0.005)."
    )
    funding: str | None = option(None, "Funding-rate file for perpetuals.")
    start: str | None = option(None, "First bar time (UTC), inclusive.")
    end: str | None = option(None, "End time (UTC), exclusive.")
    venue: str | None = option(None, "Catalog venue (for a symbol).")
    timeframe: str | None = option(None, "Catalog timeframe (for a symbol).")
    resample: str | None = option(None, "Resample bars first, e.g. 1h.")
    gaps: str = option("keep", "Gaps in the data: keep, ffill or fail.")
    time_column: str | None = option(
        None, "Time column of the data, when not timestamp, date, time, open_time or datetime."
    )
    columns: str | None = option(
        None,
        "Column names of a CSV without a header line, comma-separated, e.g. "
        "open_time,open,high,low,close,volume (a Binance kline export).",
    )
    date_format: str | None = option(
        None,
        "strftime format of text times, e.g. '%d/%m/%Y %H:%M' (needed when day and month "
        "cannot be told apart).",
    )
    delimiter: str | None = option(
        None, "CSV field delimiter, e.g. ';' or '\\t' (default: detected from the first lines)."
    )

    def __post_init__(self) -> None:
        def bad(name: str, value: object, expected: str) -> ValueError:
            return ValueError(f"{name}={value!r} is invalid: expected {expected}")

        def finite(value: object) -> bool:
            return (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and (math.isfinite(value))
            )

        if not (finite(self.cash) and self.cash > 0):
            raise bad("cash", self.cash, "a positive amount")
        if not (finite(self.size) and self.size > 0):
            raise bad("size", self.size, "a positive number")
        if self.size_mode not in _SIZE_MODES:
            raise bad("size_mode", self.size_mode, ", ".join(_SIZE_MODES))
        if finite(self.leverage) and self.leverage == 0:
            object.__setattr__(self, "leverage", None)  # 0: no margin limit, asked for
        if self.leverage is not None and not (finite(self.leverage) and self.leverage >= 1):
            raise bad("leverage", self.leverage, "a number >= 1, or 0 for no margin limit")
        for name in ("maker_fee", "taker_fee"):
            value = getattr(self, name)
            if not (finite(value) and -0.01 <= value < 0.1):
                raise bad(name, value, "a fraction of notional in [-0.01, 0.1), e.g. 0.001")
        if not (finite(self.slippage_bps) and 0 <= self.slippage_bps < 10_000):
            raise bad("slippage_bps", self.slippage_bps, "basis points in [0, 10000)")
        if not (isinstance(self.slippage_ticks, int) and self.slippage_ticks >= 0):
            raise bad("slippage_ticks", self.slippage_ticks, "a whole number of ticks >= 0")
        if self.slippage_ticks and self.slippage_bps:
            raise ValueError("give slippage_bps or slippage_ticks, not both")
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if not (finite(value) and value >= 0):
                raise bad(name, value, "a size >= 0 (0 = no rounding)")
        if self.slippage_ticks and not self.tick_size:
            raise ValueError("slippage_ticks needs a tick_size")
        if self.fill_at not in ("open", "close"):
            raise bad("fill_at", self.fill_at, "'open' (next bar's open) or 'close'")
        if self.intrabar not in ("path", "worst"):
            raise bad("intrabar", self.intrabar, "'path' or 'worst'")
        for name in ("stop_loss", "take_profit", "trailing_stop"):
            value = getattr(self, name)
            if value is not None and not (finite(value) and 0 < value < 1):
                raise bad(name, value, "a fraction of the entry price in (0, 1), e.g. 0.02")
        if self.engine not in ("vector", "event"):
            raise bad("engine", self.engine, "'vector' or 'event'")
        if self.gaps not in ("keep", "ffill", "fail"):
            raise bad("gaps", self.gaps, "keep, ffill or fail")
        if any(getattr(self, name) is not None for name in READ_FIELDS):
            self.read_options()  # DataError (a ValueError) naming a bad one
        self._check_engine_options()

    def _check_engine_options(self) -> None:
        """Options only the event-driven node has (the kernel would silently ignore them)."""
        for name in ("maintenance_margin", "liquidation_fee"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0 <= value < 1):
                raise ValueError(f"{name}={value!r} is invalid: expected a rate in [0, 1)")
        if self.liquidation_fee is not None and self.maintenance_margin is None:
            raise ValueError("liquidation_fee needs maintenance_margin (the liquidation rule)")
        if self.engine == "event" and self.fill_at != "open":
            raise ValueError(
                "engine='event' fills signal orders at the next bar's open: fill_at='close' "
                "is a vectorised-backtest option"
            )
        if self.size_mode == "risk" and self.risk_profile is None:
            raise ValueError(
                "size_mode='risk' sizes each entry from a risk profile's risk per trade: "
                "give risk_profile (e.g. conservative)"
            )
        if self.engine != "vector" or self.event_only:
            return
        if self.size_mode == "risk":
            raise ValueError(
                "size_mode='risk' sizes each entry from the risk profile: it needs "
                "engine='event' (or paper trading)"
            )
        given = [
            n for n in ("maintenance_margin", "liquidation_fee") if getattr(self, n) is not None
        ]
        if given:
            raise ValueError(
                f"{' and '.join(given)} need engine='event': the vectorised kernel does not "
                "model liquidation"
            )
        if self.risk_profile is not None:
            raise ValueError(
                "risk_profile needs engine='event': the vectorised kernel has no pre-trade "
                "checks or portfolio limits"
            )

    #: True for modes that always run the event-driven node (paper, live)
    event_only = False

    # ---------------------------------------------------------------- building
    @classmethod
    def from_options(cls, **options: Any) -> Self:
        """A config from keyword options: the fields, plus `fee` (maker and taker fee
        where those are not given); `None` for tick/lot size means none. Unknown names
        raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known - {"fee"})
        if unknown:
            raise ValueError(
                f"unknown run option {unknown[0]!r}; the options are: {', '.join(sorted(known))}"
            )
        fee = options.pop("fee", None)
        if fee is not None and not (
            isinstance(fee, int | float) and math.isfinite(fee) and -0.01 <= fee < 0.1
        ):
            raise ValueError(
                f"fee={fee!r} is invalid: expected a fraction of notional in [-0.01, 0.1), "
                "e.g. 0.001"
            )
        for name in ("maker_fee", "taker_fee"):
            if options.get(name) is None:
                options[name] = 0.0 if fee is None else fee
        for name in ("tick_size", "lot_size"):
            if name in options and options[name] is None:
                options[name] = 0.0
        for name in ("start", "end", "funding"):
            value = options.get(name)
            if value is not None and not isinstance(value, str):
                options[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        for name in ("cash", "size", "maker_fee", "taker_fee", "slippage_bps"):
            if isinstance(options.get(name), int) and not isinstance(options[name], bool):
                options[name] = float(options[name])
        return cls(**options)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Self:
        """The inverse of `to_mapping` (unknown keys raise ValueError naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
        return cls(**mapping)

    def to_mapping(self) -> dict[str, Any]:
        """Plain data (stored with a run, shown in reports)."""
        return asdict(self)

    def instrument(self, instrument_id: InstrumentId) -> Instrument:
        """The one instrument a bar-driven run trades: a quote-settled perpetual with this
        config's tick and lot size (0: no grid) and fees."""
        from sapphire.domain import ContractType, Instrument
        from sapphire.domain.instrument import to_decimal

        return Instrument(
            instrument_id, "BASE", "QUOTE", "QUOTE", ContractType.PERPETUAL,
            tick_size=to_decimal(self.tick_size or "1e-12", "tick_size"),
            lot_size=to_decimal(self.lot_size or "1e-12", "lot_size"),
            maker_fee=to_decimal(self.maker_fee, "maker_fee"),
            taker_fee=to_decimal(self.taker_fee, "taker_fee"),
        )  # fmt: skip

    def read_options(self) -> ReadOptions:
        """How to read the data (`sapphire.data.ReadOptions`): time column, names of a
        headerless CSV's columns, date format, delimiter."""
        from sapphire.data import ReadOptions

        return ReadOptions(**{name: getattr(self, name) for name in READ_FIELDS})

    def run_settings(self) -> RunConfig:
        """Just the `RunConfig` fields of this config (a subclass's extra ones dropped)."""
        names = {f.name for f in fields(RunConfig)}
        return RunConfig(**{k: v for k, v in asdict(self).items() if k in names})


#: the names `RunConfig.from_options` takes
RUN_OPTIONS = frozenset({f.name for f in fields(RunConfig)} | {"fee"})


def option_help(cls: type, name: str) -> str:
    """The help text of field `name` of config class `cls`."""
    for f in fields(cls):
        if f.name == name:
            return str(f.metadata.get("help", ""))
    raise KeyError(name)


def field_default(cls: type, name: str) -> Any:
    """The default of field `name` of config class `cls`."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    raise KeyError(name)
