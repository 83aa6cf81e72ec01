"""`run_rebalance`: a backtest of a `Rebalancer` holding target weights across several
instruments, one node (built by `build_node`) over one simulated venue with one shared
account; the result is a `PortfolioResult` (its HTML report is the portfolio report)
with the fills, the orders (refusals and their reasons included) and the rebalances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sapphire.backtest.metrics import compute_metrics, periods_per_year
from sapphire.backtest.portfolio import PortfolioResult, align_bars, load_instruments
from sapphire.domain import InstrumentId, OrderFilled, OrderSide
from sapphire.engine import BarFeed, build_node
from sapphire.engine.config import RunConfig
from sapphire.engine.rebalance import Rebalancer
from sapphire.risk import RiskProfile, profile
from sapphire.sim.bar_path import FillModel
from sapphire.sim.venue import SimulatedVenue

__all__ = ["RebalanceResult", "run_rebalance"]


@dataclass(eq=False)
class RebalanceResult(PortfolioResult):
    """A rebalancing backtest: the portfolio result (`trades` holds the fills) and one
    row per rebalance the schedule fired (`rebalances`)."""

    rebalances: pd.DataFrame = field(default_factory=pd.DataFrame)


def run_rebalance(
    data: Mapping[str, Any] | Sequence[Any],
    *,
    weights: Mapping[str, float] | None = None,
    method: str | None = None,
    every: int | str = "1D",
    drift: float = 0.0,
    lookback: int = 100,
    max_weight: float | None = None,
    budget: float = 1.0,
    cash: float = 10_000.0,
    fee: float = 0.001,
    lot_size: float = 0.0,
    leverage: float | None = 1.0,
    slippage_bps: float = 0.0,
    risk_profile: str | RiskProfile | None = None,
) -> RebalanceResult:
    """Rebalance the instruments of `data` (symbols mapped to frames or files, or a list
    of files named by their stem) to `weights` (symbol -> fraction of the equity) or to
    the weights of `method` over the last `lookback` returns, on `every` (bars, or a
    period such as "1D"); see `sapphire.engine.rebalance.Rebalancer`. Market orders fill
    at the next bar's open with `fee` and `slippage_bps`; `risk_profile` (a name, a YAML
    file or a profile) checks every order with its pre-trade limits."""
    frames = load_instruments(data)
    if len(frames) < 2:
        raise ValueError(f"a rebalance needs at least 2 instruments, got {list(frames)}")
    bars = align_bars(frames)
    symbols = list(bars)
    iids = {s: InstrumentId(s.replace(" ", "_").replace("/", "_").replace("@", "_"), "SIM")
            for s in symbols}  # fmt: skip
    by_iid: dict[InstrumentId, float] | None = None
    if weights is not None:
        unknown = [k for k in weights if k not in iids]
        if unknown:
            raise ValueError(
                f"weight for {unknown[0]} names an unknown instrument: expected one of "
                f"{', '.join(symbols)}"
            )
        by_iid = {iids[s]: w for s, w in weights.items()}
    config = RunConfig.from_options(
        cash=cash, fee=fee, lot_size=lot_size, leverage=leverage, slippage_bps=slippage_bps
    )
    rebalancer = Rebalancer(
        list(iids.values()), weights=by_iid, method=method, lookback=lookback,
        max_weight=max_weight, budget=budget, every=every, drift=drift,
    )  # fmt: skip
    venue = SimulatedVenue(
        [config.instrument(iid) for iid in iids.values()],
        cash=repr(float(cash)),
        leverage=config.leverage,
        fill_model=FillModel(config.slippage_bps, config.slippage_ticks, config.tick_size),
    )
    setup = build_node(
        config, mode="backtest", venue=venue, instrument_id=iids[symbols[0]],
        strategy=rebalancer, run_id="rb",
        risk_profile=profile(risk_profile) if risk_profile is not None else None,
    )  # fmt: skip
    node = setup.node
    index = {iid: k for k, iid in enumerate(iids.values())}
    fills: list[tuple[int, int, float, float, float]] = []  # bar, instrument, qty, px, fee

    def on_fill(event: OrderFilled) -> None:
        order = node.orders[event.client_order_id]
        sign = 1.0 if order.side is OrderSide.BUY else -1.0
        fills.append(
            (node.bar_index, index[order.instrument_id], sign * float(event.last_qty),
             float(event.last_px), float(event.fee))
        )  # fmt: skip

    node.bus.subscribe(OrderFilled, on_fill)
    node.run_bars(
        [BarFeed(iids[s], b.time, b.open, b.high, b.low, b.close, b.volume, b.timeframe_ns)
         for s, b in bars.items()]
    )  # fmt: skip
    node.stop()
    return _result(rebalancer, node, bars, symbols, fills, config, weights, method, every, drift)


def _result(
    rebalancer: Rebalancer,
    node: Any,
    bars: Mapping[str, Any],
    symbols: list[str],
    fills: list[tuple[int, int, float, float, float]],
    config: RunConfig,
    weights: Mapping[str, float] | None,
    method: str | None,
    every: int | str,
    drift: float,
) -> RebalanceResult:
    first = bars[symbols[0]]
    n, m = len(first), len(symbols)
    times = pd.DatetimeIndex(pd.to_datetime(np.asarray(first.time), utc=True))
    qty = np.zeros((n, m))
    flow = np.zeros((n, m))
    fees = 0.0
    for bar, k, q, px, fee in fills:
        qty[bar, k] += q
        flow[bar, k] -= q * px + fee
        fees += fee
    pos = np.cumsum(qty, axis=0)
    close = np.column_stack([np.asarray(bars[s].close, dtype=np.float64) for s in symbols])
    pnl = np.cumsum(flow, axis=0) + pos * close
    equity = config.cash + pnl.sum(axis=1)
    tf = first.timeframe_ns
    metrics = compute_metrics(
        equity, initial_cash=config.cash, periods_per_year=periods_per_year(tf),
        timeframe_ns=tf, trade_pnl=np.zeros(0), trade_returns=np.zeros(0), fees=fees,
        funding=0.0, bars_in_market=int(np.count_nonzero(np.any(pos != 0, axis=1))),
    )  # fmt: skip
    name = {iid: s for iid, s in zip(rebalancer.instruments, symbols, strict=True)}
    trades = pd.DataFrame(
        {
            "time": times[[f[0] for f in fills]],
            "symbol": [symbols[f[1]] for f in fills],
            "side": ["buy" if f[2] > 0 else "sell" for f in fills],
            "quantity": [abs(f[2]) for f in fills],
            "price": [f[3] for f in fills],
            "fee": [f[4] for f in fills],
        }
    )
    rows = []
    for record in rebalancer.history:
        refused = {r.client_order_id: r.reason for r in record.refused}
        for cid in record.orders:
            order = node.orders[cid]
            rows.append(
                {
                    "rebalance": pd.Timestamp(record.ts_ns, tz="UTC"),
                    "symbol": name[order.instrument_id],
                    "side": order.side.value.lower(),
                    "quantity": float(order.quantity),
                    "filled": float(order.filled_qty),
                    "fill_price": float(order.avg_px) if order.avg_px is not None else np.nan,
                    "status": order.status.value.lower(),
                    "reason": refused.get(cid, ""),
                }
            )
    orders = pd.DataFrame(
        rows,
        columns=["rebalance", "symbol", "side", "quantity", "filled", "fill_price", "status",
                 "reason"],
    )  # fmt: skip
    rebalances = pd.DataFrame(
        [
            {
                "time": pd.Timestamp(r.ts_ns, tz="UTC"),
                "bar": r.bar,
                "equity": float(r.equity),
                "traded": ", ".join(name[i] for i in r.weights) if r.skipped is None else "",
                "orders": len(r.orders),
                "refused": len(r.refused),
                "skipped": r.skipped or "",
                **{f"w_{name[i]}": w for i, w in r.weights.items()},
            }
            for r in rebalancer.history
        ]
    )
    settings = config.to_mapping()
    settings.update(
        weights=dict(weights) if weights is not None else None, method=method, every=every,
        drift=drift, rebalances=len(rebalancer.history),
        refused_orders=sum(len(r.refused) for r in rebalancer.history),
    )  # fmt: skip
    final = rebalancer.history[-1].weights if rebalancer.history else {}
    return RebalanceResult(
        strategies=["rebalance"],
        symbols=symbols,
        config=settings,
        equity=pd.Series(equity, index=times, name="equity"),
        pnl=pd.DataFrame(pnl, index=times, columns=symbols),
        trades=trades,
        orders=orders,
        metrics=metrics,
        weights={name[i]: w for i, w in final.items()},
        rebalances=rebalances,
    )
