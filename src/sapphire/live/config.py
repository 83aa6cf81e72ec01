"""The configuration of a live session (`sapphire live`): the run settings of every mode
(`RunConfig`) plus the exchange, the market, the strategy and the session's own
settings. Stored as JSON in the run's row of the store, so `sapphire live resume`
rebuilds exactly the same session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sapphire.engine.config import RunConfig, field_default, option, option_help
from sapphire.paper.config import REBALANCE, PaperConfig

if TYPE_CHECKING:
    from sapphire.domain import InstrumentId
    from sapphire.venues.bybit import BybitConnection

__all__ = ["ENVIRONMENTS", "ON_EXIT", "LiveConfig"]

ENVIRONMENTS = ("testnet", "demo", "mainnet", "local")
ON_EXIT = ("cancel", "leave")
SOURCES = ("rest", "ws")


def _paper(name: str) -> Any:
    """Paper's option `name` (its default and help): a rebalancing live session takes
    the same settings as a paper one, checked by the same code (`PaperConfig.rebalancer`)."""
    return option(field_default(PaperConfig, name), option_help(PaperConfig, name))


@dataclass(frozen=True)
class LiveConfig(RunConfig):
    """A live session: what it trades, where, and how."""

    #: live trading always runs the event-driven node
    event_only = True
    engine: str = option("event", "Live trading runs the event-driven node.")
    cash: float = option(
        10_000.0, "--paper: the simulated account's cash (live: the exchange's balance)."
    )
    risk_profile: str | None = option(
        "conservative", "Risk profile: conservative, aggressive or a YAML file."
    )
    strategy: str = option(
        "sma_cross",
        "Built-in name, module:Class, file.py:Class, or rebalance (see --symbols, --weights).",
    )
    params: dict[str, Any] = field(default_factory=dict, metadata={"help": "Strategy parameters."})
    exchange: str = option("bybit", "The exchange (bybit).")
    env: str = option("testnet", "Bybit environment: testnet, demo, mainnet or local.")
    url: str | None = option(None, "The local exchange's URL (--env local).")
    key: str | None = option(
        None,
        "A stored exchange key (sapphire keys add) to trade with, decrypted in this process "
        "only; default: the environment's BYBIT_<ENV>_API_KEY/_SECRET.",
    )
    symbol: str = option("BTC/USDT:USDT", "The market (ccxt symbol), e.g. BTC/USDT:USDT.")
    symbols: str | None = option(
        None,
        "--strategy rebalance: the markets, comma-separated ccxt symbols of one account, "
        "e.g. BTC/USDT:USDT,ETH/USDT:USDT (--symbol is then unused).",
    )
    weights: str | None = option(
        None,
        "rebalance: target weights of the equity by symbol, e.g. "
        "BTC/USDT:USDT=0.6,ETH/USDT:USDT=0.35 (sum <= 1).",
    )
    allocation: str | None = _paper("allocation")
    rebalance_every: str = _paper("rebalance_every")
    rebalance_drift: float = _paper("rebalance_drift")
    lookback: int = _paper("lookback")
    timeframe: str | None = option("1m", "Bar timeframe (a Bybit kline interval), e.g. 1m.")
    paper: bool = option(
        False, "Fill on Sapphire's simulated venue while reading the exchange's market data."
    )
    warmup: int = option(
        500, "Vectorised strategy: bars of history it is re-evaluated on at each new bar."
    )
    reconcile_every: float = option(
        60.0, "Seconds between reconciliations of positions and balance with the exchange."
    )
    on_exit: str = option("cancel", "On Ctrl-C: cancel or leave the open orders.")
    market_data: str = option("rest", "Bars from rest (kline polling) or ws (WebSocket).")
    poll_interval: float = option(1.0, "Seconds between REST polls (klines, order state).")

    def __post_init__(self) -> None:
        super().__post_init__()

        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"{name}={getattr(self, name)!r} is invalid: expected {expected}")

        if self.engine != "event":
            raise bad("engine", "'event' (live trading runs the event-driven node)")
        if self.exchange != "bybit":
            raise bad("exchange", "bybit")
        if self.env not in ENVIRONMENTS:
            raise bad("env", ", ".join(ENVIRONMENTS))
        if (self.env == "local") != (self.url is not None):
            raise bad("url", "a URL with --env local, and only there")
        if self.on_exit not in ON_EXIT:
            raise bad("on_exit", "cancel or leave")
        if self.market_data not in SOURCES:
            raise bad("market_data", "rest or ws")
        if not self.timeframe:
            raise bad("timeframe", "a kline interval such as 1m")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 2:
            raise bad("warmup", "an int >= 2 (bars)")
        for name in ("reconcile_every", "poll_interval"):
            if not getattr(self, name) > 0:
                raise bad(name, "a number of seconds > 0")
        if self.maintenance_margin is not None or self.funding is not None:
            raise ValueError(
                "maintenance_margin and funding are the exchange's in a live session: "
                "leave them out"
            )
        if self.risk_profile is not None:
            from sapphire.risk import profile

            profile(self.risk_profile)  # an unknown profile -> ValueError naming it
        if self.strategy == REBALANCE:
            # a bad list of symbols, bad weights or schedule -> ValueError naming the value
            self.rebalancer()
        elif self.symbols is not None:
            raise ValueError(
                f"symbols are the rebalance strategy's markets, but strategy="
                f"{self.strategy!r}: give --strategy rebalance, or one market with --symbol"
            )
        elif self.weights is not None or self.allocation is not None:
            raise ValueError(
                f"weights/allocation are the rebalance strategy's settings, but strategy="
                f"{self.strategy!r}: give --strategy rebalance"
            )

    @property
    def markets(self) -> list[str]:
        """The symbols traded: `symbols` for `rebalance` (each once), else `symbol`."""
        if self.strategy != REBALANCE:
            return [self.symbol]
        if self.symbols is None:
            raise ValueError("strategy rebalance needs --symbols, e.g. BTC/USDT:USDT,ETH/USDT:USDT")
        out: list[str] = []
        for item in self.symbols.split(","):
            symbol = item.strip()
            if not symbol:
                raise ValueError(
                    f"symbols={self.symbols!r} is invalid: expected comma-separated ccxt "
                    "symbols, e.g. BTC/USDT:USDT,ETH/USDT:USDT"
                )
            if symbol in out:
                raise ValueError(f"symbols: {symbol!r} is given twice in {self.symbols!r}")
            out.append(symbol)
        return out

    @property
    def instrument_ids(self) -> list[InstrumentId]:
        """The instrument of every market traded, in the order of `markets`."""
        from sapphire.domain import InstrumentId

        return [InstrumentId(symbol, "BYBIT") for symbol in self.markets]

    def rebalancer(self, strategy_id: str = "s") -> Any:
        """The `Rebalancer` of a `rebalance` session over `instrument_ids` (weights keyed
        by symbol, e.g. BTC/USDT:USDT=0.5): built, and checked, by the paper config's
        own code, so both modes take and refuse exactly the same settings."""
        return PaperConfig.rebalancer(self, strategy_id)  # type: ignore[arg-type]

    def connection(self, *, confirm_mainnet: bool = False) -> BybitConnection:
        """Where the exchange is (`confirm_mainnet`: the caller's interlock passed)."""
        from sapphire.venues.bybit import BybitConnection

        return BybitConnection(
            self.env,  # type: ignore[arg-type]
            url=self.url,
            confirm_mainnet=confirm_mainnet,
        )
