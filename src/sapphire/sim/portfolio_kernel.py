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

The kernel runs over a window of bars at a time (`simulate_portfolio`; the caller
copies each window of every instrument's prices into small buffers that stay in
cache, instead of stacking whole (instrument, bar) arrays: with 10 instruments x 1M
bars those stacks were 160 MB written and read once). The positions and the account
carry from one window to the next in `book` and `scalars`; the window that ends at
the last bar closes what is still open there. Within a window, a first pass walks the
bars in order but stops only where a signal acts or funding is due; a second adds
each instrument's marks to the equity, one instrument at a time. Each instrument's
pnl at every bar is not stored (10 x 1M floats): the kernel notes its position and
cash flows after each of its events, and `instrument_pnl` rebuilds the pnl from
those when it is asked for.
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

__all__ = [
    "BOOK_FIELDS",
    "ENTER_LONG",
    "ENTER_SHORT",
    "EXIT_LONG",
    "EXIT_SHORT",
    "instrument_pnl",
    "simulate_portfolio",
]

#: bits of the packed signal array (one byte per instrument and bar)
ENTER_LONG, EXIT_LONG, ENTER_SHORT, EXIT_SHORT = 1, 2, 4, 8
#: rows of `book`, the positions carried between windows (one column per instrument):
#: side (0: flat), quantity, entry price, entry fee, entry bar, the open trade's
#: funding, and the instrument's cash flows so far (fills, fees, funding)
B_POS, B_QTY, B_ENTRY_PX, B_ENTRY_FEE, B_ENTRY_BAR, B_FUNDING, B_FLOW = range(7)
BOOK_FIELDS = 7


@njit(cache=True)
def _close(
    k: int,
    i: int,
    signal_bar: int,
    px: float,
    role: int,
    book: np.ndarray,
    taker_fee: np.ndarray,
    slip_bps: np.ndarray,
    slip_ticks: np.ndarray,
    tick: np.ndarray,
    orders: np.ndarray,
    order_inst: np.ndarray,
    n_orders: int,
    trades: np.ndarray,
    trade_inst: np.ndarray,
    n_trades: int,
) -> tuple[float, float]:
    """Close instrument `k`'s position with a taker market order at `px`, recording the
    order in row `n_orders` and the trade in row `n_trades`; return (cash in, fee)."""
    side = book[B_POS, k]
    qty = book[B_QTY, k]
    x = _slip(px, -side, slip_bps[k], slip_ticks[k], tick[k])
    fee = qty * x * taker_fee[k]
    cash_in = side * qty * x - fee
    order_inst[n_orders] = k
    _record_order(
        orders, n_orders, signal_bar, i, -side, MARKET, role, qty, np.nan, x, fee,
        FILLED, REASON_NONE, False,
    )  # fmt: skip
    trade_inst[n_trades] = k
    _record_trade(
        trades, n_trades, int(book[B_ENTRY_BAR, k]), i, side, qty, book[B_ENTRY_PX, k], x,
        book[B_ENTRY_FEE, k], fee, book[B_FUNDING, k], role,
    )  # fmt: skip
    book[B_POS, k] = 0.0
    book[B_QTY, k] = 0.0
    return cash_in, fee


@njit(cache=True)
def _note(
    k: int,
    i: int,
    book: np.ndarray,
    event_bar: np.ndarray,
    event_held: np.ndarray,
    event_flow: np.ndarray,
    slot: np.ndarray,
) -> None:
    """Note instrument `k`'s position (side x quantity) and cash flows after its events
    at bar `i`, in its next event slot."""
    e = slot[k]
    event_bar[e] = i
    event_held[e] = book[B_POS, k] * book[B_QTY, k]
    event_flow[e] = book[B_FLOW, k]
    slot[k] = e + 1


@njit(cache=True)
def instrument_pnl(
    close: np.ndarray,
    event_bar: np.ndarray,
    event_held: np.ndarray,
    event_flow: np.ndarray,
    out: np.ndarray,
) -> None:
    """One instrument's cumulative net pnl at every close (`out`, n) from its events as
    `simulate_portfolio` notes them (bar, position x quantity, cash flows; flat and no
    flows before the first)."""
    held = 0.0
    flow = 0.0
    e = 0
    for i in range(close.shape[0]):
        while e < event_bar.shape[0] and event_bar[e] == i:
            held = event_held[e]
            flow = event_flow[e]
            e += 1
        out[i] = flow + held * close[i]


@njit(cache=True)
def simulate_portfolio(
    start: int,
    width: int,
    open_: np.ndarray,
    close: np.ndarray,
    signals: np.ndarray,
    funding: np.ndarray,
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
    book: np.ndarray,
    equity: np.ndarray,
    event_bar: np.ndarray,
    event_held: np.ndarray,
    event_flow: np.ndarray,
    slot: np.ndarray,
    orders: np.ndarray,
    order_inst: np.ndarray,
    trades: np.ndarray,
    trade_inst: np.ndarray,
    scalars: np.ndarray,
) -> None:
    """Run bars `start` to `start + width - 1` of the portfolio backtest: fill their
    `equity` (n,), append to the order and trade records (with the instrument of each
    row), note each instrument's events for `instrument_pnl` and carry the positions in
    `book` (`BOOK_FIELDS`, m) and the account in `scalars` (`S_CASH` holds the starting
    cash before the first window).

    `open_`, `close` and `funding` hold the window, one row per instrument: column c is
    bar `start - 1 + c` (column 0, the bar before the window, is not read when `start`
    is 0); `funding` may be empty (none). `signals` is (m, n) uint8 with the
    `ENTER_LONG`, `EXIT_LONG`, `ENTER_SHORT`, `EXIT_SHORT` bits; per-instrument settings
    are (m,); `leverage`, `max_weight`, `max_gross` 0: no limit. Instrument k's events
    go to `event_bar`, `event_held`, `event_flow` at `slot[k]`, `slot[k] + 1`, ...: its
    slots must hold one per bar whose signals or funding rate are not zero, plus one
    for the close at the last bar."""
    m = close.shape[0]
    n = equity.shape[0]
    has_funding = funding.shape[0] == m
    pos = book[B_POS]
    qty = book[B_QTY]
    flow = book[B_FLOW]
    cash = scalars[S_CASH]
    fees = scalars[S_FEES]
    funding_total = scalars[S_FUNDING]
    in_market = int(scalars[S_BARS_IN_MARKET])
    n_orders = int(scalars[S_N_ORDERS])
    n_trades = int(scalars[S_N_TRADES])
    # Pass 1 walks the bars in order but stops only where something happens (a signal
    # acts or funding is due): it fills the orders and trades, keeps the cash after
    # each bar and notes each instrument's position and cash flows after its events.
    # Pass 2 then adds each instrument's position marked at the close to the cash,
    # instrument by instrument: the equity sums the marks in instrument order, as the
    # bar-by-bar loop of the event engine does.
    held = np.empty(m)  # each position x quantity at the window's start
    open_count = 0
    for k in range(m):
        held[k] = pos[k] * qty[k]
        if pos[k] != 0.0:
            open_count += 1
    due = np.zeros(width + 1, dtype=np.bool_)  # a signal acts or funding is due
    for k in range(m):
        for c in range(1, width + 1):
            i = start - 1 + c
            if (i > 0 and signals[k, i - 1] != 0) or (has_funding and funding[k, c] != 0.0):
                due[c] = True
    first = slot.copy()  # each instrument's first event in this window
    cash_at = np.empty(width + 1)
    for c in range(1, width + 1):
        i = start - 1 + c
        if due[c]:
            for k in range(m):
                flags = signals[k, i - 1] if i > 0 else 0
                rate = funding[k, c] if has_funding else 0.0
                if flags == 0 and rate == 0.0:
                    continue
                if rate != 0.0 and pos[k] != 0.0:
                    pay = pos[k] * qty[k] * open_[k, c] * rate
                    cash -= pay
                    flow[k] -= pay
                    book[B_FUNDING, k] -= pay
                    funding_total -= pay
                if flags != 0:
                    o = open_[k, c]
                    j = i - 1
                    el = (flags & ENTER_LONG) != 0
                    xl = (flags & EXIT_LONG) != 0
                    es = (flags & ENTER_SHORT) != 0
                    xs = (flags & EXIT_SHORT) != 0
                    side = pos[k]
                    if (side > 0.0 and (xl or es)) or (side < 0.0 and (xs or el)):
                        cash_in, fee = _close(
                            k, i, j, o, ROLE_SIGNAL, book, taker_fee, slip_bps, slip_ticks,
                            tick, orders, order_inst, n_orders, trades, trade_inst, n_trades,
                        )  # fmt: skip
                        n_orders += 1
                        n_trades += 1
                        open_count -= 1
                        cash += cash_in
                        flow[k] += cash_in
                        fees += fee
                    want = 0.0
                    if pos[k] == 0.0:
                        if el and not es and not xl:
                            want = 1.0
                        elif es and not el and not xs:
                            want = -1.0
                    if want != 0.0:
                        e = _slip(o, want, slip_bps[k], slip_ticks[k], tick[k])
                        # the equity: instruments before k marked at this bar's close,
                        # the others at the previous close (k itself is flat)
                        eq = cash
                        gross = 0.0
                        for x in range(m):
                            if pos[x] != 0.0:
                                last = close[x, c] if x < k else close[x, c - 1]
                                eq += pos[x] * qty[x] * last
                                gross += qty[x] * last
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
                        order_inst[n_orders] = k
                        if reason != REASON_NONE:
                            n_orders = _record_order(
                                orders, n_orders, j, -1, want, MARKET, ROLE_ENTRY,
                                max(q, 0.0), np.nan, np.nan, 0.0, REJECTED, reason, False,
                            )  # fmt: skip
                        else:
                            cash -= want * notional + fee
                            flow[k] -= want * notional + fee
                            fees += fee
                            n_orders = _record_order(
                                orders, n_orders, j, i, want, MARKET, ROLE_ENTRY, q, np.nan,
                                e, fee, FILLED, REASON_NONE, False,
                            )  # fmt: skip
                            open_count += 1
                            pos[k] = want
                            qty[k] = q
                            book[B_ENTRY_PX, k] = e
                            book[B_ENTRY_FEE, k] = fee
                            book[B_ENTRY_BAR, k] = i
                            book[B_FUNDING, k] = 0.0
                _note(k, i, book, event_bar, event_held, event_flow, slot)
        cash_at[c] = cash
        if open_count > 0:
            in_market += 1
    for k in range(m):
        pq = held[k]
        lo = 1
        for e in range(first[k], slot[k] + 1):
            hi = event_bar[e] - start + 1 if e < slot[k] else width + 1
            for c in range(lo, hi):
                cash_at[c] += pq * close[k, c]
            if e < slot[k]:
                pq = event_held[e]
                lo = hi
    equity[start : start + width] = cash_at[1:]
    if start + width == n and n > 0:
        i = n - 1
        for k in range(m):
            if pos[k] != 0.0:
                cash_in, fee = _close(
                    k, i, i, close[k, width], ROLE_END, book, taker_fee, slip_bps, slip_ticks,
                    tick, orders, order_inst, n_orders, trades, trade_inst, n_trades,
                )  # fmt: skip
                n_orders += 1
                n_trades += 1
                cash += cash_in
                flow[k] += cash_in
                fees += fee
                _note(k, i, book, event_bar, event_held, event_flow, slot)
        equity[i] = cash
    scalars[S_CASH] = cash
    scalars[S_FEES] = fees
    scalars[S_FUNDING] = funding_total
    scalars[S_BARS_IN_MARKET] = in_market
    scalars[S_N_ORDERS] = n_orders
    scalars[S_N_TRADES] = n_trades
