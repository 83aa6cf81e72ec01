"""The compiled portfolio kernel: many instruments, one shared cash account.

It walks the bars in time order and, within a bar, the instruments in their given
order, exactly as the event engine replays several feeds (`sapphire.engine.bars`):
instrument *k*'s bar is matched (funding at the open, then its market orders at the
open) before instrument *k + 1*'s, so an entry sized from the equity marks the
instruments before it at this bar's close and those after it at the previous close.

Orders follow the single-instrument kernel's rules for market orders
(`sapphire.sim.kernel`: a signal on bar *t* acts at the open of *t + 1*, an exit
first, then an entry when flat, no pyramiding; the same slippage, tick, lot and fee
arithmetic, reused from there). On top: sizing from the shared equity, the margin
check against it at `leverage`, and the portfolio limits: a position's notional at
most `max_weight` of the equity and the gross exposure at most `max_gross` of it
(entries are cut down to fit, rejected for margin when nothing fits). Brackets and
limit/stop entries are not part of this kernel (`sapphire.backtest.portfolio` refuses
them with a clear message).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sapphire.sim.kernel import (
    FILLED,
    MARKET,
    REASON_LOT,
    REASON_MARGIN,
    REASON_NONE,
    REJECTED,
    ROLE_END,
    ROLE_ENTRY,
    ROLE_SIGNAL,
    S_BARS_IN_MARKET,
    S_CASH,
    S_FEES,
    S_FUNDING,
    S_N_ORDERS,
    S_N_TRADES,
    SIZE_FIXED,
    SIZE_NOTIONAL,
    _record_order,
    _record_trade,
    _slip,
)

__all__ = ["simulate_portfolio"]


@njit(cache=True)
def _close(
    k: int,
    i: int,
    signal_bar: int,
    px: float,
    role: int,
    pos: np.ndarray,
    qty: np.ndarray,
    state: np.ndarray,
    entry_px: np.ndarray,
    entry_fee: np.ndarray,
    entry_bar: np.ndarray,
    trade_funding: np.ndarray,
    flow: np.ndarray,
    taker_fee: np.ndarray,
    slip_bps: np.ndarray,
    slip_ticks: np.ndarray,
    tick: np.ndarray,
    orders: np.ndarray,
    order_inst: np.ndarray,
    trades: np.ndarray,
    trade_inst: np.ndarray,
) -> None:
    """Close instrument `k`'s position with a taker market order at `px`.

    `state` holds cash, fees, order count and trade count (in that order)."""
    side = pos[k]
    x = _slip(px, -side, slip_bps[k], slip_ticks[k], tick[k])
    fee = qty[k] * x * taker_fee[k]
    cash_in = side * qty[k] * x - fee
    state[0] += cash_in
    flow[k] += cash_in
    state[1] += fee
    n_orders = int(state[2])
    order_inst[n_orders] = k
    state[2] = _record_order(
        orders, n_orders, signal_bar, i, -side, MARKET, role, qty[k], np.nan, x, fee,
        FILLED, REASON_NONE, False,
    )  # fmt: skip
    n_trades = int(state[3])
    trade_inst[n_trades] = k
    state[3] = _record_trade(
        trades, n_trades, entry_bar[k], i, side, qty[k], entry_px[k], x, entry_fee[k], fee,
        trade_funding[k], role,
    )  # fmt: skip
    pos[k] = 0.0
    qty[k] = 0.0


@njit(cache=True)
def simulate_portfolio(
    open_: np.ndarray,
    close: np.ndarray,
    enter_long: np.ndarray,
    exit_long: np.ndarray,
    enter_short: np.ndarray,
    exit_short: np.ndarray,
    funding: np.ndarray,
    cash0: float,
    size: np.ndarray,
    size_mode: int,
    leverage: float,
    max_weight: float,
    max_gross: float,
    taker_fee: np.ndarray,
    slip_bps: np.ndarray,
    slip_ticks: np.ndarray,
    tick: np.ndarray,
    lot: np.ndarray,
    equity: np.ndarray,
    pnl: np.ndarray,
    orders: np.ndarray,
    order_inst: np.ndarray,
    trades: np.ndarray,
    trade_inst: np.ndarray,
    scalars: np.ndarray,
) -> None:
    """Run the portfolio backtest; fill `equity` (n,), `pnl` (n, m: each instrument's
    cumulative net pnl marked at the close), the order and trade records with the
    instrument of each row, and `scalars` in place. Price and signal arrays are (n, m);
    per-instrument settings are (m,); `funding` is (n, m) or empty (none);
    `leverage`, `max_weight`, `max_gross` 0: no limit."""
    n, m = close.shape
    has_funding = funding.shape[0] == n
    pos = np.zeros(m)  # side of each position (0: flat)
    qty = np.zeros(m)
    entry_px = np.zeros(m)
    entry_fee = np.zeros(m)
    entry_bar = np.zeros(m, dtype=np.int64)
    trade_funding = np.zeros(m)
    flow = np.zeros(m)  # each instrument's cash flows: fills, fees, funding
    last = np.zeros(m)  # each instrument's last price seen
    state = np.zeros(4)  # cash, fees, orders, trades
    state[0] = cash0
    funding_total = 0.0
    in_market = 0
    for i in range(n):
        for k in range(m):
            o = open_[i, k]
            if has_funding and pos[k] != 0.0:
                rate = funding[i, k]
                if rate != 0.0:
                    pay = pos[k] * qty[k] * o * rate
                    state[0] -= pay
                    flow[k] -= pay
                    trade_funding[k] -= pay
                    funding_total -= pay
            if i > 0:
                j = i - 1
                el = enter_long[j, k]
                xl = exit_long[j, k]
                es = enter_short[j, k]
                xs = exit_short[j, k]
                side = pos[k]
                if (side > 0.0 and (xl or es)) or (side < 0.0 and (xs or el)):
                    _close(
                        k, i, j, o, ROLE_SIGNAL, pos, qty, state, entry_px, entry_fee,
                        entry_bar, trade_funding, flow, taker_fee, slip_bps, slip_ticks, tick,
                        orders, order_inst, trades, trade_inst,
                    )  # fmt: skip
                want = 0.0
                if pos[k] == 0.0:
                    if el and not es and not xl:
                        want = 1.0
                    elif es and not el and not xs:
                        want = -1.0
                if want != 0.0:
                    e = _slip(o, want, slip_bps[k], slip_ticks[k], tick[k])
                    eq = state[0]
                    gross = 0.0
                    for x in range(m):
                        if pos[x] != 0.0:
                            eq += pos[x] * qty[x] * last[x]
                            gross += qty[x] * last[x]
                    if size_mode == SIZE_FIXED:
                        q = size[k]
                    elif size_mode == SIZE_NOTIONAL:
                        q = size[k] / e
                    else:
                        q = size[k] * eq / e
                    if max_weight > 0.0:
                        q = min(q, max_weight * eq / e)
                    if max_gross > 0.0:
                        q = min(q, (max_gross * eq - gross) / e)
                    q_raw = q
                    if lot[k] > 0.0 and q > 0.0:
                        q = np.floor(q / lot[k] + 1e-9) * lot[k]
                    notional = q * e
                    fee = notional * taker_fee[k]
                    reason = REASON_NONE
                    if q_raw <= 0.0:
                        reason = REASON_MARGIN
                    elif q <= 0.0:
                        reason = REASON_LOT
                    elif leverage > 0.0 and (
                        notional > eq * leverage or notional / leverage + fee > eq
                    ):
                        reason = REASON_MARGIN
                    n_orders = int(state[2])
                    order_inst[n_orders] = k
                    if reason != REASON_NONE:
                        state[2] = _record_order(
                            orders, n_orders, j, -1, want, MARKET, ROLE_ENTRY,
                            max(q, 0.0), np.nan, np.nan, 0.0, REJECTED, reason, False,
                        )  # fmt: skip
                    else:
                        state[0] -= want * notional + fee
                        flow[k] -= want * notional + fee
                        state[1] += fee
                        state[2] = _record_order(
                            orders, n_orders, j, i, want, MARKET, ROLE_ENTRY, q, np.nan, e,
                            fee, FILLED, REASON_NONE, False,
                        )  # fmt: skip
                        pos[k] = want
                        qty[k] = q
                        entry_px[k] = e
                        entry_fee[k] = fee
                        entry_bar[k] = i
                        trade_funding[k] = 0.0
            last[k] = close[i, k]
        total = state[0]
        held = False
        for k in range(m):
            mark = pos[k] * qty[k] * close[i, k]
            total += mark
            pnl[i, k] = flow[k] + mark
            if pos[k] != 0.0:
                held = True
        if held:
            in_market += 1
        equity[i] = total
    if n > 0:
        i = n - 1
        for k in range(m):
            if pos[k] != 0.0:
                _close(
                    k, i, i, close[i, k], ROLE_END, pos, qty, state, entry_px, entry_fee,
                    entry_bar, trade_funding, flow, taker_fee, slip_bps, slip_ticks, tick,
                    orders, order_inst, trades, trade_inst,
                )  # fmt: skip
                pnl[i, k] = flow[k]
        equity[i] = state[0]
    scalars[S_CASH] = state[0]
    scalars[S_FEES] = state[1]
    scalars[S_FUNDING] = funding_total
    scalars[S_BARS_IN_MARKET] = in_market
    scalars[S_N_ORDERS] = state[2]
    scalars[S_N_TRADES] = state[3]
