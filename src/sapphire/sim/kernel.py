"""The compiled simulation kernel: signal arrays in, orders, trades and equity out.

One pass over the bars, implementing exactly the rules in docs/backtest.md (fill
timing, the intrabar OHLC path, brackets, fees, slippage, funding, sizing). The
kernel works on float64 arrays; records are written into preallocated 2-D arrays
whose columns are named by the constants below.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Entry order types (Signals.entry_type) and order types in the orders record.
MARKET, LIMIT, STOP = 0, 1, 2
# What an order was for; for exits this is the trade's exit reason (6 and 7 are the
# event engine's liquidation and kill switch; 8 the close after the equity reached zero).
ROLE_ENTRY, ROLE_SIGNAL, ROLE_STOP_LOSS, ROLE_TAKE_PROFIT, ROLE_TRAILING, ROLE_END = range(6)
ROLE_ZERO_EQUITY = 8
# Order status and rejection reasons.
FILLED, EXPIRED, REJECTED = 0, 1, 2
REASON_NONE, REASON_LOT, REASON_MARGIN, REASON_PRICE = 0, 1, 2, 3
# Sizing modes.
SIZE_FIXED, SIZE_NOTIONAL, SIZE_EQUITY = 0, 1, 2

# Columns of the orders record.
O_BAR, O_FILL_BAR, O_SIDE, O_TYPE, O_ROLE, O_QTY, O_PRICE, O_FILL_PRICE = range(8)
O_FEE, O_STATUS, O_REASON, O_MAKER = 8, 9, 10, 11
ORDER_FIELDS = 12
# Columns of the trades record.
T_ENTRY_BAR, T_EXIT_BAR, T_SIDE, T_QTY, T_ENTRY_PRICE, T_EXIT_PRICE = range(6)
T_ENTRY_FEE, T_EXIT_FEE, T_FUNDING, T_REASON = 6, 7, 8, 9
TRADE_FIELDS = 10

# Index of the scalar outputs (S_STOP_BAR: the bar whose close found the equity at zero
# or below, after which nothing trades; -1: none).
S_CASH, S_FEES, S_FUNDING, S_BARS_IN_MARKET, S_N_ORDERS, S_N_TRADES, S_STOP_BAR = range(7)
SCALAR_FIELDS = 7


@njit(cache=True)
def _at(a: np.ndarray, i: int) -> float:
    """Per-bar value of an input given either per bar or as one scalar."""
    return a[i] if a.shape[0] > 1 else a[0]


@njit(cache=True)
def _slip(price: float, side: float, bps: float, ticks: float, tick: float) -> float:
    """Move a taker price against the trader and round it to the tick, also against."""
    if bps == 0.0 and ticks == 0.0:
        return price
    p = price
    if bps != 0.0:
        p = p * (1.0 + side * bps / 10_000.0)
    if ticks != 0.0:
        p = p + side * ticks * tick
    if tick > 0.0:
        p = np.ceil(p / tick - 1e-09) * tick if side > 0 else np.floor(p / tick + 1e-09) * tick
    return p


@njit(cache=True)
def _to_tick(price: float, tick: float) -> float:
    """Round a bracket level to the nearest tick (no rounding without a tick size)."""
    if tick > 0.0:
        return np.round(price / tick) * tick
    return price


@njit(cache=True)
def _record_trade(
    trades: np.ndarray,
    k: int,
    entry_bar: int,
    exit_bar: int,
    side: float,
    qty: float,
    entry_price: float,
    exit_price: float,
    entry_fee: float,
    exit_fee: float,
    funding: float,
    reason: int,
) -> int:
    """Write one closed-trade row; return the next free row."""
    row = trades[k]
    row[T_ENTRY_BAR] = entry_bar
    row[T_EXIT_BAR] = exit_bar
    row[T_SIDE] = side
    row[T_QTY] = qty
    row[T_ENTRY_PRICE] = entry_price
    row[T_EXIT_PRICE] = exit_price
    row[T_ENTRY_FEE] = entry_fee
    row[T_EXIT_FEE] = exit_fee
    row[T_FUNDING] = funding
    row[T_REASON] = reason
    return k + 1


@njit(cache=True)
def _record_order(
    orders: np.ndarray,
    k: int,
    bar: int,
    fill_bar: int,
    side: float,
    otype: int,
    role: int,
    qty: float,
    price: float,
    fill_price: float,
    fee: float,
    status: int,
    reason: int,
    maker: bool,
) -> int:
    """Write one order row; return the next free row."""
    row = orders[k]
    row[O_BAR] = bar
    row[O_FILL_BAR] = fill_bar
    row[O_SIDE] = side
    row[O_TYPE] = otype
    row[O_ROLE] = role
    row[O_QTY] = qty
    row[O_PRICE] = price
    row[O_FILL_PRICE] = fill_price
    row[O_FEE] = fee
    row[O_STATUS] = status
    row[O_REASON] = reason
    row[O_MAKER] = 1.0 if maker else 0.0
    return k + 1


@njit(cache=True)
def simulate(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    enter_long: np.ndarray,
    exit_long: np.ndarray,
    enter_short: np.ndarray,
    exit_short: np.ndarray,
    entry_type: np.ndarray,
    entry_price: np.ndarray,
    stop_loss: np.ndarray,
    take_profit: np.ndarray,
    trailing_stop: np.ndarray,
    funding: np.ndarray,
    cash0: float,
    size: float,
    size_mode: int,
    leverage: float,
    maker_fee: float,
    taker_fee: float,
    slip_bps: float,
    slip_ticks: float,
    tick: float,
    lot: float,
    fill_close: bool,
    worst: bool,
    equity: np.ndarray,
    orders: np.ndarray,
    trades: np.ndarray,
    scalars: np.ndarray,
) -> None:
    """Run the backtest; fill `equity`, `orders`, `trades` and `scalars` in place."""
    n = close.shape[0]
    has_funding = funding.shape[0] == n
    any_sl = stop_loss.shape[0] > 1 or (stop_loss[0] > 0.0)
    any_tp = take_profit.shape[0] > 1 or (take_profit[0] > 0.0)
    any_ts = trailing_stop.shape[0] > 1 or (trailing_stop[0] > 0.0)
    any_bracket = any_sl or any_tp or any_ts

    cash = cash0
    fees_total = 0.0
    funding_total = 0.0
    in_market = 0
    n_orders = 0
    n_trades = 0
    stop_bar = -1  # the bar whose close found the equity at zero or below

    # The open position (side 0 = flat).
    side = 0.0
    qty = 0.0
    entry_px = 0.0
    entry_fee = 0.0
    entry_bar = 0
    trade_funding = 0.0
    has_sl = False
    has_tp = False
    has_ts = False
    sl_lvl = 0.0
    tp_lvl = 0.0
    ts_frac = 0.0
    peak = 0.0
    trail = 0.0

    # The pending limit/stop entry (side 0 = none).
    p_side = 0.0
    p_type = 0
    p_level = 0.0
    p_live = 0
    p_bar = 0
    p_sl = 0.0
    p_tp = 0.0
    p_ts = 0.0

    pts = np.empty(4)

    for i in range(n):
        o = open_[i]
        c = close[i]

        # 1. Funding, charged to the position held at the funding time.
        if has_funding and side != 0.0:
            rate = funding[i]
            if rate != 0.0:
                pay = side * qty * o * rate
                cash -= pay
                trade_funding -= pay
                funding_total -= pay

        # Stopped (the equity reached zero): close the position at this open, then idle.
        if stop_bar >= 0:
            if side != 0.0:
                x = _slip(o, -side, slip_bps, slip_ticks, tick)
                fee = qty * x * taker_fee
                cash += side * qty * x - fee
                fees_total += fee
                n_orders = _record_order(
                    orders, n_orders, stop_bar, i, -side, MARKET, ROLE_ZERO_EQUITY, qty,
                    np.nan, x, fee, FILLED, REASON_NONE, False,
                )  # fmt: skip
                n_trades = _record_trade(
                    trades, n_trades, entry_bar, i, side, qty, entry_px, x, entry_fee, fee,
                    trade_funding, ROLE_ZERO_EQUITY,
                )  # fmt: skip
                side = 0.0
                qty = 0.0
            equity[i] = cash
            continue

        # Fast path: no signal to act on, no pending order, no bracket to watch.
        if p_side == 0.0 and (side == 0.0 or not (has_sl or has_tp or has_ts)):
            j = i if fill_close else i - 1
            if j < 0 or not (enter_long[j] or exit_long[j] or enter_short[j] or exit_short[j]):
                if side != 0.0:
                    in_market += 1
                    equity[i] = cash + side * qty * c
                else:
                    equity[i] = cash
                if equity[i] <= 0.0:
                    stop_bar = i
                continue

        # Phase 0: signal orders at the open (signals of i - 1); phase 1: the intrabar
        # path; phase 2: signal orders at the close (signals of i, fill_at="close").
        for phase in range(3):
            if phase == 1:
                # 3. The intrabar path: pending entries, then brackets.
                if p_side != 0.0 or (side != 0.0 and any_bracket and (has_sl or has_tp or has_ts)):
                    h = high[i]
                    lo = low[i]
                    d = side if side != 0.0 else p_side
                    low_first = d > 0.0 if worst else o - lo < h - o
                    pts[0] = o
                    pts[1] = lo if low_first else h
                    pts[2] = h if low_first else lo
                    pts[3] = c
                    for k in range(4):
                        s = pts[0] if k == 0 else pts[k - 1]
                        b = pts[k]
                        point_check = k == 0
                        if p_side != 0.0 and p_live == i:
                            dd = p_side
                            fill_at = np.nan
                            if p_type == LIMIT:
                                if k == 0 and dd * (o - p_level) <= 0.0:
                                    fill_at = o
                                elif k > 0 and dd * (b - p_level) <= 0.0:
                                    fill_at = p_level
                            else:
                                if k == 0 and dd * (o - p_level) >= 0.0:
                                    fill_at = o
                                elif k > 0 and dd * (b - p_level) >= 0.0:
                                    fill_at = p_level
                            if fill_at == fill_at:
                                maker = p_type == LIMIT
                                if maker:
                                    e = fill_at
                                    rate = maker_fee
                                else:
                                    e = _slip(fill_at, dd, slip_bps, slip_ticks, tick)
                                    rate = taker_fee
                                if size_mode == SIZE_FIXED:
                                    q = size
                                elif size_mode == SIZE_NOTIONAL:
                                    q = size / e
                                else:
                                    q = size * cash / e
                                q_raw = q
                                if lot > 0.0:
                                    q = np.floor(q / lot + 1e-9) * lot
                                notional = q * e
                                fee = notional * rate
                                status = FILLED
                                reason = REASON_NONE
                                if q_raw <= 0.0:
                                    status = REJECTED
                                    reason = REASON_MARGIN
                                elif q <= 0.0:
                                    status = REJECTED
                                    reason = REASON_LOT
                                elif leverage > 0.0 and (
                                    notional > cash * leverage or notional / leverage + fee > cash
                                ):
                                    status = REJECTED
                                    reason = REASON_MARGIN
                                if status == REJECTED:
                                    n_orders = _record_order(
                                        orders,
                                        n_orders,
                                        p_bar,
                                        -1,
                                        dd,
                                        p_type,
                                        ROLE_ENTRY,
                                        q,
                                        p_level,
                                        np.nan,
                                        0.0,
                                        REJECTED,
                                        reason,
                                        maker,
                                    )
                                    p_side = 0.0
                                    break
                                cash -= dd * notional + fee
                                fees_total += fee
                                n_orders = _record_order(
                                    orders,
                                    n_orders,
                                    p_bar,
                                    i,
                                    dd,
                                    p_type,
                                    ROLE_ENTRY,
                                    q,
                                    p_level,
                                    e,
                                    fee,
                                    FILLED,
                                    REASON_NONE,
                                    maker,
                                )
                                side = dd
                                qty = q
                                entry_px = e
                                entry_fee = fee
                                entry_bar = i
                                trade_funding = 0.0
                                has_sl = p_sl > 0.0
                                if has_sl:
                                    sl_lvl = _to_tick(e * (1.0 - side * p_sl), tick)
                                has_tp = p_tp > 0.0
                                if has_tp:
                                    tp_lvl = _to_tick(e * (1.0 + side * p_tp), tick)
                                ts_frac = p_ts
                                has_ts = ts_frac > 0.0
                                peak = e
                                if has_ts:
                                    trail = peak * (1.0 - side * ts_frac)
                                p_side = 0.0
                                s = fill_at
                                point_check = True
                            else:
                                continue
                        if side == 0.0 or not (has_sl or has_tp or has_ts):
                            if side == 0.0 and p_side == 0.0:
                                break
                            continue
                        # Brackets of the open position on the point s, then the segment s -> b.
                        x = np.nan
                        role = 0
                        if point_check:
                            if has_sl and side * (s - sl_lvl) <= 0.0:
                                x = s
                                role = ROLE_STOP_LOSS
                            elif has_ts and side * (s - trail) <= 0.0:
                                x = s
                                role = ROLE_TRAILING
                            elif has_tp and side * (s - tp_lvl) >= 0.0:
                                x = s
                                role = ROLE_TAKE_PROFIT
                        if role == 0 and k > 0:
                            move = side * (b - s)
                            if move < 0.0:
                                if has_sl and side * (b - sl_lvl) <= 0.0:
                                    x = sl_lvl
                                    role = ROLE_STOP_LOSS
                                trail_first = role == 0 or side * (trail - sl_lvl) > 0.0
                                if has_ts and side * (b - trail) <= 0.0 and trail_first:
                                    x = trail
                                    role = ROLE_TRAILING
                            elif move > 0.0 and has_tp and side * (b - tp_lvl) >= 0.0:
                                x = tp_lvl
                                role = ROLE_TAKE_PROFIT
                        if role != 0:
                            maker = role == ROLE_TAKE_PROFIT
                            if maker:
                                rate = maker_fee
                                otype = LIMIT
                            else:
                                x = _slip(x, -side, slip_bps, slip_ticks, tick)
                                rate = taker_fee
                                otype = STOP
                            fee = qty * x * rate
                            cash += side * qty * x - fee
                            fees_total += fee
                            level = sl_lvl if role == ROLE_STOP_LOSS else tp_lvl
                            if role == ROLE_TRAILING:
                                level = trail
                            n_orders = _record_order(
                                orders,
                                n_orders,
                                entry_bar,
                                i,
                                -side,
                                otype,
                                role,
                                qty,
                                level,
                                x,
                                fee,
                                FILLED,
                                REASON_NONE,
                                maker,
                            )
                            n_trades = _record_trade(
                                trades,
                                n_trades,
                                entry_bar,
                                i,
                                side,
                                qty,
                                entry_px,
                                x,
                                entry_fee,
                                fee,
                                trade_funding,
                                role,
                            )
                            side = 0.0
                            qty = 0.0
                            break
                        if has_ts and side * (b - peak) > 0.0:
                            peak = b
                            trail = peak * (1.0 - side * ts_frac)
                continue
            if phase == 0:
                if fill_close or i == 0:
                    continue
                j = i - 1
                px = o
            else:
                if not fill_close:
                    continue
                j = i
                px = c
                if p_side != 0.0 and p_live <= i:
                    # The pending entry lived for this bar only.
                    n_orders = _record_order(
                        orders,
                        n_orders,
                        p_bar,
                        -1,
                        p_side,
                        p_type,
                        ROLE_ENTRY,
                        0.0,
                        p_level,
                        np.nan,
                        0.0,
                        EXPIRED,
                        REASON_NONE,
                        False,
                    )
                    p_side = 0.0
            el = enter_long[j]
            xl = exit_long[j]
            es = enter_short[j]
            xs = exit_short[j]
            if (side > 0.0 and (xl or es)) or (side < 0.0 and (xs or el)):
                x = _slip(px, -side, slip_bps, slip_ticks, tick)
                fee = qty * x * taker_fee
                cash += side * qty * x - fee
                fees_total += fee
                n_orders = _record_order(
                    orders,
                    n_orders,
                    j,
                    i,
                    -side,
                    MARKET,
                    ROLE_SIGNAL,
                    qty,
                    np.nan,
                    x,
                    fee,
                    FILLED,
                    REASON_NONE,
                    False,
                )
                n_trades = _record_trade(
                    trades,
                    n_trades,
                    entry_bar,
                    i,
                    side,
                    qty,
                    entry_px,
                    x,
                    entry_fee,
                    fee,
                    trade_funding,
                    ROLE_SIGNAL,
                )
                side = 0.0
                qty = 0.0
            if side != 0.0 or (fill_close and i == n - 1):
                continue
            want = 0.0
            if el and not es and not xl:
                want = 1.0
            elif es and not el and not xs:
                want = -1.0
            if want == 0.0:
                continue
            etype = int(_at(entry_type, j))
            if etype != MARKET:
                level = _at(entry_price, j)
                if not (level > 0.0):
                    n_orders = _record_order(
                        orders,
                        n_orders,
                        j,
                        -1,
                        want,
                        etype,
                        ROLE_ENTRY,
                        0.0,
                        level,
                        np.nan,
                        0.0,
                        REJECTED,
                        REASON_PRICE,
                        False,
                    )
                    continue
                p_side = want
                p_type = etype
                p_level = level
                p_bar = j
                p_live = i if phase == 0 else i + 1
                p_sl = _at(stop_loss, j)
                p_tp = _at(take_profit, j)
                p_ts = _at(trailing_stop, j)
                continue
            # Market entry at px.
            e = _slip(px, want, slip_bps, slip_ticks, tick)
            if size_mode == SIZE_FIXED:
                q = size
            elif size_mode == SIZE_NOTIONAL:
                q = size / e
            else:
                q = size * cash / e
            q_raw = q
            if lot > 0.0:
                q = np.floor(q / lot + 1e-9) * lot
            notional = q * e
            fee = notional * taker_fee
            if q <= 0.0:
                n_orders = _record_order(
                    orders,
                    n_orders,
                    j,
                    -1,
                    want,
                    MARKET,
                    ROLE_ENTRY,
                    q,
                    np.nan,
                    np.nan,
                    0.0,
                    REJECTED,
                    REASON_MARGIN if q_raw <= 0.0 else REASON_LOT,
                    False,
                )
                continue
            if leverage > 0.0 and (notional > cash * leverage or notional / leverage + fee > cash):
                n_orders = _record_order(
                    orders,
                    n_orders,
                    j,
                    -1,
                    want,
                    MARKET,
                    ROLE_ENTRY,
                    q,
                    np.nan,
                    np.nan,
                    0.0,
                    REJECTED,
                    REASON_MARGIN,
                    False,
                )
                continue
            cash -= want * notional + fee
            fees_total += fee
            n_orders = _record_order(
                orders,
                n_orders,
                j,
                i,
                want,
                MARKET,
                ROLE_ENTRY,
                q,
                np.nan,
                e,
                fee,
                FILLED,
                REASON_NONE,
                False,
            )
            side = want
            qty = q
            entry_px = e
            entry_fee = fee
            entry_bar = i
            trade_funding = 0.0
            f = _at(stop_loss, j)
            has_sl = f > 0.0
            if has_sl:
                sl_lvl = _to_tick(e * (1.0 - side * f), tick)
            f = _at(take_profit, j)
            has_tp = f > 0.0
            if has_tp:
                tp_lvl = _to_tick(e * (1.0 + side * f), tick)
            ts_frac = _at(trailing_stop, j)
            has_ts = ts_frac > 0.0
            peak = e
            if has_ts:
                trail = peak * (1.0 - side * ts_frac)

        # A pending entry that did not fill in its bar expires.
        if p_side != 0.0 and p_live <= i:
            n_orders = _record_order(
                orders,
                n_orders,
                p_bar,
                -1,
                p_side,
                p_type,
                ROLE_ENTRY,
                0.0,
                p_level,
                np.nan,
                0.0,
                EXPIRED,
                REASON_NONE,
                p_type == LIMIT,
            )
            p_side = 0.0

        # 5. Marking.
        if side != 0.0:
            in_market += 1
            equity[i] = cash + side * qty * c
        else:
            equity[i] = cash
        if equity[i] <= 0.0:
            # trading stops: the position closes at the next open, a pending entry (of
            # fill_at="close") expires now, and no signal is acted upon any more
            stop_bar = i
            if p_side != 0.0:
                n_orders = _record_order(
                    orders, n_orders, p_bar, -1, p_side, p_type, ROLE_ENTRY, 0.0, p_level,
                    np.nan, 0.0, EXPIRED, REASON_NONE, p_type == LIMIT,
                )  # fmt: skip
                p_side = 0.0

    if p_side != 0.0:
        n_orders = _record_order(
            orders,
            n_orders,
            p_bar,
            -1,
            p_side,
            p_type,
            ROLE_ENTRY,
            0.0,
            p_level,
            np.nan,
            0.0,
            EXPIRED,
            REASON_NONE,
            p_type == LIMIT,
        )
    if side != 0.0 and n > 0:
        i = n - 1
        x = _slip(close[i], -side, slip_bps, slip_ticks, tick)
        fee = qty * x * taker_fee
        cash += side * qty * x - fee
        fees_total += fee
        n_orders = _record_order(
            orders,
            n_orders,
            i,
            i,
            -side,
            MARKET,
            ROLE_END,
            qty,
            np.nan,
            x,
            fee,
            FILLED,
            REASON_NONE,
            False,
        )
        n_trades = _record_trade(
            trades,
            n_trades,
            entry_bar,
            i,
            side,
            qty,
            entry_px,
            x,
            entry_fee,
            fee,
            trade_funding,
            ROLE_END,
        )
        equity[i] = cash

    scalars[S_CASH] = cash
    scalars[S_FEES] = fees_total
    scalars[S_FUNDING] = funding_total
    scalars[S_BARS_IN_MARKET] = in_market
    scalars[S_N_ORDERS] = n_orders
    scalars[S_N_TRADES] = n_trades
    scalars[S_STOP_BAR] = stop_bar
