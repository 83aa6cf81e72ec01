"""`build_node`: the one way a trading node is assembled, in every mode.

The event-driven backtest (`sapphire.backtest.event`), paper trading
(`sapphire.paper.PaperSession`) and live trading build their node here, from a
`RunConfig`, a clock, a venue and the bars or signals the strategy reads; only the clock
and the venue differ between modes. The builder wires the pre-trade risk engine, the
portfolio limits and kill switch (`RiskMonitor`, fed at each bar's close before the
strategy acts) and the strategy: an `EventStrategy` as it is, a vectorised `Strategy`
through a `VectorAdapter` sized and bracketed by the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sapphire.domain import Instrument, InstrumentId
from sapphire.engine.adapter import VectorAdapter
from sapphire.engine.clock import Clock
from sapphire.engine.config import RunConfig
from sapphire.engine.node import TradingNode
from sapphire.engine.risk_monitor import EquityGuard, RiskMonitor
from sapphire.engine.strategy import EventStrategy
from sapphire.portfolio import Portfolio
from sapphire.risk import RiskProfile
from sapphire.strategy.base import Bars, Strategy
from sapphire.strategy.signals import SignalArrays

__all__ = ["STRATEGY_ID", "NodeSetup", "build_node"]

MODES = ("backtest", "paper", "live")
#: the strategy id of a run's one trading strategy
STRATEGY_ID = "s"


@dataclass
class NodeSetup:
    """A built node and what the run drives or reads: its trading strategy (the user's
    `EventStrategy` or the `VectorAdapter` running a vectorised one), the risk
    monitor (None without a risk profile) and the zero-equity stop (None when left out)."""

    node: TradingNode
    trader: EventStrategy
    monitor: RiskMonitor | None
    guard: EquityGuard | None = None


def build_node(
    config: RunConfig,
    *,
    mode: str,
    venue: Any,
    instrument_id: InstrumentId,
    strategy: Strategy | EventStrategy,
    clock: Clock | None = None,
    portfolio: Portfolio | None = None,
    run_id: str = "run",
    bars: Bars | None = None,
    signals: SignalArrays | None = None,
    risk_profile: RiskProfile | None = None,
    instrument: Instrument | None = None,
    equity_guard: bool = True,
    window: int | None = None,
) -> NodeSetup:
    """A node trading `strategy` on `instrument_id` through `venue`, set up by `config`.

    `mode` names the caller ("backtest", "paper" or "live"); `bars` (or precomputed
    `signals`) are what a vectorised strategy's adapter evaluates; `risk_profile` (the
    resolved `config.risk_profile`) adds pre-trade checks and the portfolio limits with
    their kill switch, and sizes `size_mode="risk"` entries with `instrument` (by default
    `config.instrument(instrument_id)`). `equity_guard` adds the `EquityGuard`: trading
    stops for good when the equity at a bar's close is zero or less (an event backtest
    leaves it out of its first pass, which runs faster, and adds it when that pass's
    equity reached zero). `window` (live) evaluates a vectorised strategy incrementally
    on its last `window` bars at each new bar instead of on `bars` at once."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is invalid: expected one of {', '.join(MODES)}")
    node = TradingNode(
        venue,
        clock=clock,
        portfolio=portfolio,
        risk=risk_profile.risk_engine() if risk_profile is not None else None,
        run_id=run_id,
        bracket_tick=config.tick_size,
    )
    if isinstance(strategy, EventStrategy):
        trader: EventStrategy = strategy
    elif isinstance(strategy, Strategy):
        risk_sized = config.size_mode == "risk"
        inst = instrument or config.instrument(instrument_id)
        trader = VectorAdapter(
            strategy, instrument_id, bars=bars, signals=signals, window=window,
            size=config.size,
            # sized quantities on the instrument's lot grid (without a lot size, its fine
            # default one): a position off the grid could not be closed, since the
            # pre-trade checks refuse an off-grid closing order
            size_mode=config.size_mode, lot=config.lot_size or float(inst.lot_size),  # type: ignore[arg-type]
            stop_loss=config.stop_loss, take_profit=config.take_profit,
            trailing_stop=config.trailing_stop, strategy_id=STRATEGY_ID,
            risk_profile=risk_profile if risk_sized else None,
            instrument=inst if risk_sized else None, leverage=config.leverage,
        )  # fmt: skip
    else:
        raise TypeError(
            f"strategy must be a Strategy or an EventStrategy instance, got {strategy!r:.80}"
        )
    guard = None
    if equity_guard:
        guard = EquityGuard()
        node.add_strategy(guard, bars=[instrument_id])  # first: the close before any trade
    monitor = None
    if risk_profile is not None:
        # added first: it sees each bar's close before the strategy acts on it
        monitor = RiskMonitor(
            risk_profile.portfolio_limits(), strategy_capital={str(trader.strategy_id): config.cash}
        )
        node.add_strategy(monitor, bars=[instrument_id])
    node.add_strategy(trader, bars=[instrument_id])
    return NodeSetup(node, trader, monitor, guard)
