"""An independent, plain-Python reference implementation of docs/backtest.md.

Written from the document alone (not from `sapphire.sim`), bar by bar, for clarity
rather than speed, so that the compiled kernel and this file check each other: the
parity tests require both to agree trade for trade.

Choices where the document is silent (each one is also listed in the parity report):

- A level or a limit/stop price is reached when the path *touches* it (`<=` / `>=`).
- The "already crossed at the start" rule (fill at the open, not at the level) is
  applied at every point where brackets come alive or a bar starts: at the open of a
  bar, and at the fill point of a limit/stop entry (there it fills at that point).
- If several levels are reached at the same point, the priority is stop-loss, then
  trailing stop, then take-profit.
- A take-profit or limit entry that fills at the open (gap) is still a maker fill at
  the open price, without slippage.
- With a tick size, a taker fill price is rounded against the trader only when a
  slippage is configured ("slipped prices"); with no slippage a trailing-stop fill can
  be off-tick. Trailing-stop levels and strategy limit/stop prices are not rounded to
  the tick; stop-loss and take-profit levels are (to the nearest tick, ties to even).
- `slippage_bps` takes precedence over `slippage_ticks` when both are set.
- `entry_bar` / `exit_bar` are the bars of the fills (not of the signals).
- A quantity `<= 0` (equity mode with equity `<= 0`) is rejected with `insufficient
  margin`; a positive quantity that lot rounding turns into 0 with `size below lot`.
- A limit/stop entry without a price (NaN) is rejected at once (`invalid entry price`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MARKET, LIMIT, STOP = 0, 1, 2
TYPE_NAMES = {MARKET: "market", LIMIT: "limit", STOP: "stop"}
TYPE_CODES = {"market": MARKET, "limit": LIMIT, "stop": STOP}


@dataclass
class RefConfig:
    cash: float = 10_000.0
    size: float = 1.0
    size_mode: str = "fixed"  # "fixed" | "notional" | "equity"
    leverage: float | None = None  # None: no margin limit (cash may go negative)
    maker_fee: float = 0.0
    taker_fee: float = 0.0
    slippage_bps: float = 0.0
    slippage_ticks: int = 0
    tick_size: float = 0.0
    lot_size: float = 0.0
    fill_at: str = "open"  # "open" | "close"
    intrabar: str = "path"  # "path" | "worst"


@dataclass
class RefResult:
    trades: list[dict[str, Any]]
    equity: list[float]
    orders: list[dict[str, Any]]
    fills: list[dict[str, Any]]
    funding: list[float]  # funding paid (negative) / received (positive) per bar


@dataclass
class _Position:
    side: int  # +1 long, -1 short
    qty: float  # > 0
    entry_price: float
    entry_bar: int
    entry_fee: float
    sl_level: float | None
    tp_level: float | None
    ts: float | None  # trailing distance (fraction)
    extreme: float  # peak for a long, trough for a short
    funding: float = 0.0

    def trail_level(self) -> float | None:
        if self.ts is None:
            return None
        if self.side > 0:
            return self.extreme * (1 - self.ts)
        return self.extreme * (1 + self.ts)


@dataclass
class _Pending:
    side: int
    kind: int  # LIMIT or STOP
    price: float
    sl: float | None
    tp: float | None
    ts: float | None
    order: dict[str, Any] = field(default_factory=dict)


def _distance(values: list[float] | None, t: int) -> float | None:
    if values is None:
        return None
    v = values[t]
    if v is None or math.isnan(v) or v <= 0:
        return None
    return float(v)


class _Sim:
    def __init__(self, o, h, lo, c, cfg: RefConfig) -> None:
        self.o, self.h, self.l, self.c = o, h, lo, c
        self.cfg = cfg
        self.cash = float(cfg.cash)
        self.pos: _Position | None = None
        self.pending: _Pending | None = None
        self.trades: list[dict[str, Any]] = []
        self.orders: list[dict[str, Any]] = []
        self.fills: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- prices
    def slip(self, price: float, buy: bool) -> float:
        """Taker fill price: slippage against the trader, then tick rounding against him.

        Only a slipped price is rounded (doc: "slipped prices are rounded to the tick"):
        with no slippage configured the raw price is used as is, even off-tick.
        """
        cfg = self.cfg
        if not (cfg.slippage_bps or cfg.slippage_ticks):
            return price
        if cfg.slippage_bps:
            price = (
                price * (1 + cfg.slippage_bps / 10_000)
                if buy
                else price * (1 - cfg.slippage_bps / 10_000)
            )
        elif cfg.slippage_ticks:
            tick = cfg.tick_size
            price = price + cfg.slippage_ticks * tick if buy else price - cfg.slippage_ticks * tick
        if cfg.tick_size > 0:
            tick = cfg.tick_size
            if buy:
                price = math.ceil(price / tick - 1e-9) * tick
            else:
                price = math.floor(price / tick + 1e-9) * tick
        return price

    def round_level(self, level: float) -> float:
        tick = self.cfg.tick_size
        if tick > 0:
            # nearest tick; an exact half-tick tie goes to the even tick (Python's round,
            # like numpy.round): the doc says only "nearest", ties are common on real data
            return round(level / tick) * tick
        return level

    def equity_now(self, mark: float) -> float:
        if self.pos is None:
            return self.cash
        return self.cash + self.pos.side * self.pos.qty * mark

    # ------------------------------------------------------------------ fills
    def _book_fill(self, bar: int, buy: bool, qty: float, price: float, maker: bool) -> float:
        rate = self.cfg.maker_fee if maker else self.cfg.taker_fee
        fee = qty * price * rate
        if buy:
            self.cash -= qty * price + fee
        else:
            self.cash += qty * price - fee
        self.fills.append(
            {
                "bar": bar,
                "side": "buy" if buy else "sell",
                "qty": qty,
                "price": price,
                "fee": fee,
                "liquidity": "maker" if maker else "taker",
            }
        )
        return fee

    def enter(
        self,
        bar: int,
        side: int,
        raw_price: float,
        maker: bool,
        dists: tuple[float | None, float | None, float | None],
        order: dict[str, Any],
    ) -> bool:
        """Size, check and fill an entry at `raw_price` (slipped unless maker)."""
        cfg = self.cfg
        buy = side > 0
        price = raw_price if maker else self.slip(raw_price, buy)
        equity = self.cash  # entries only happen when flat
        if cfg.size_mode == "fixed":
            qty = cfg.size
        elif cfg.size_mode == "notional":
            qty = cfg.size / price
        elif cfg.size_mode == "equity":
            qty = cfg.size * equity / price
        else:
            raise ValueError(cfg.size_mode)
        if qty <= 0:
            return self._reject(order, "insufficient margin")
        if cfg.lot_size > 0:
            qty = math.floor(qty / cfg.lot_size + 1e-9) * cfg.lot_size
            if qty <= 0:
                return self._reject(order, "size below lot")
        notional = qty * price
        fee = notional * (cfg.maker_fee if maker else cfg.taker_fee)
        if cfg.leverage is not None and (
            notional > equity * cfg.leverage or notional / cfg.leverage + fee > equity
        ):
            return self._reject(order, "insufficient margin")
        fee = self._book_fill(bar, buy, qty, price, maker)
        order.update(status="filled", qty=qty, fill_price=price, fill_bar=bar)
        sl, tp, ts = dists
        if side > 0:
            sl_level = self.round_level(price * (1 - sl)) if sl is not None else None
            tp_level = self.round_level(price * (1 + tp)) if tp is not None else None
        else:
            sl_level = self.round_level(price * (1 + sl)) if sl is not None else None
            tp_level = self.round_level(price * (1 - tp)) if tp is not None else None
        self.pos = _Position(side, qty, price, bar, fee, sl_level, tp_level, ts, price)
        return True

    def _reject(self, order: dict[str, Any], reason: str) -> bool:
        order.update(status="rejected", reason=reason)
        return False

    def exit(self, bar: int, raw_price: float, reason: str) -> None:
        pos = self.pos
        assert pos is not None
        maker = reason == "take_profit"
        market = reason in ("signal", "end", "zero_equity")
        buy = pos.side < 0
        price = raw_price if maker else self.slip(raw_price, buy)
        self.orders.append(
            {
                "bar": bar,
                "type": "limit" if maker else ("market" if market else "stop"),
                "side": "buy" if buy else "sell",
                "qty": pos.qty,
                "price": price,
                "status": "filled",
                "reason": reason,
                "role": "exit",
            }
        )
        fee = self._book_fill(bar, buy, pos.qty, price, maker)
        fees = pos.entry_fee + fee
        pnl = pos.side * pos.qty * (price - pos.entry_price) - fees + pos.funding
        self.trades.append(
            {
                "side": "long" if pos.side > 0 else "short",
                "size": pos.qty,
                "entry_price": pos.entry_price,
                "exit_price": price,
                "pnl": pnl,
                "return": pnl / (pos.qty * pos.entry_price),
                "fees": fees,
                "funding": pos.funding,
                "exit_reason": reason,
                "entry_bar": pos.entry_bar,
                "exit_bar": bar,
            }
        )
        self.pos = None

    def new_entry_order(self, bar: int, t: int, side: int, kind: int, price: float) -> dict:
        order = {
            "bar": bar,
            "signal_bar": t,
            "type": TYPE_NAMES[kind],
            "side": "buy" if side > 0 else "sell",
            "qty": math.nan,
            "price": price if kind != MARKET else math.nan,
            "status": "pending",
            "reason": "",
            "role": "entry",
        }
        self.orders.append(order)
        return order

    # ------------------------------------------------------------- the path
    def _hit_at_point(self, p: float) -> str | None:
        """Which bracket is already crossed at price `p` (priority SL, trail, TP)."""
        pos = self.pos
        assert pos is not None
        trail = pos.trail_level()
        if pos.side > 0:
            if pos.sl_level is not None and p <= pos.sl_level:
                return "stop_loss"
            if trail is not None and p <= trail:
                return "trailing_stop"
            if pos.tp_level is not None and p >= pos.tp_level:
                return "take_profit"
        else:
            if pos.sl_level is not None and p >= pos.sl_level:
                return "stop_loss"
            if trail is not None and p >= trail:
                return "trailing_stop"
            if pos.tp_level is not None and p <= pos.tp_level:
                return "take_profit"
        return None

    def _hit_on_segment(self, a: float, b: float) -> tuple[str, float] | None:
        """First bracket crossed moving monotonically from `a` to `b` (none is hit at `a`)."""
        pos = self.pos
        assert pos is not None
        trail = pos.trail_level()
        # levels that stop the position out lie against it, the target in its favour
        if (b < a and pos.side > 0) or (b > a and pos.side < 0):
            hits = []
            if pos.sl_level is not None and pos.side * (b - pos.sl_level) <= 0:
                hits.append((pos.sl_level, 0, "stop_loss"))
            if trail is not None and pos.side * (b - trail) <= 0:
                hits.append((trail, 1, "trailing_stop"))
            if not hits:
                return None
            # moving down (long): the highest level is crossed first; moving up: the lowest
            hits.sort(key=lambda x: (-pos.side * x[0], x[1]))
            return hits[0][2], hits[0][0]
        if b != a and pos.tp_level is not None and pos.side * (b - pos.tp_level) >= 0:
            return "take_profit", pos.tp_level
        return None

    def _bracket_step(self, bar: int, a: float | None, b: float) -> bool:
        """Check the open position along a -> b (a None: the single point b). True if exited."""
        if a is None:
            reason = self._hit_at_point(b)
            if reason is not None:
                self.exit(bar, b, reason)
                return True
            return False
        hit = self._hit_on_segment(a, b)
        if hit is not None:
            self.exit(bar, hit[1], hit[0])
            return True
        return False

    def _update_extreme(self, p: float) -> None:
        pos = self.pos
        if pos is None:
            return
        if pos.side > 0:
            pos.extreme = max(pos.extreme, p)
        else:
            pos.extreme = min(pos.extreme, p)

    def _pending_trigger(self, a: float | None, b: float) -> float | None:
        """Where the pending entry fills on a -> b (a None: at the point b), else None."""
        pend = self.pending
        assert pend is not None
        # buy limit and sell stop fill when the price falls to the level, the others rise
        falling = (pend.kind == LIMIT) == (pend.side > 0)
        reached = b <= pend.price if falling else b >= pend.price
        if not reached:
            return None
        return b if a is None else pend.price

    def _step(self, bar: int, a: float | None, b: float) -> None:
        if self.pending is not None:
            x = self._pending_trigger(a, b)
            if x is None:
                return
            pend = self.pending
            self.pending = None
            ok = self.enter(
                bar, pend.side, x, pend.kind == LIMIT, (pend.sl, pend.tp, pend.ts), pend.order
            )
            if not ok:
                return
            # brackets are live from the fill point x on: first x itself, then x -> b
            if self._bracket_step(bar, None, x):
                return
            if a is not None and self._bracket_step(bar, x, b):
                return
            self._update_extreme(b)
            return
        if self.pos is not None:
            if self._bracket_step(bar, a, b):
                return
            self._update_extreme(b)

    def walk(self, i: int) -> None:
        if self.pos is None and self.pending is None:
            return
        o, h, lo, c = self.o[i], self.h[i], self.l[i], self.c[i]
        if self.cfg.intrabar == "worst":
            side = self.pos.side if self.pos is not None else self.pending.side  # type: ignore[union-attr]
            low_first = side > 0
        else:
            low_first = (o - lo) < (h - o)
        path = (o, lo, h, c) if low_first else (o, h, lo, c)
        self._step(i, None, path[0])
        for k in range(1, 4):
            if self.pos is None and self.pending is None:
                break
            self._step(i, path[k - 1], path[k])
        if self.pending is not None:
            self.pending.order.update(status="expired")
            self.pending = None

    # ------------------------------------------------------------ signal orders
    def signal_orders(self, bar: int, t: int, price: float, s: dict[str, Any]) -> None:
        """Exit / entry rules with the signals of bar `t`, market fills at `price`."""
        el, xl, es, xs = (
            s["enter_long"][t],
            s["exit_long"][t],
            s["enter_short"][t],
            s["exit_short"][t],
        )
        pos = self.pos
        if pos is not None and ((pos.side > 0 and (xl or es)) or (pos.side < 0 and (xs or el))):
            self.exit(bar, price, "signal")
        if self.pos is not None or el == es:
            return
        side = 1 if el else -1
        if (side > 0 and xl) or (side < 0 and xs):
            return
        kind = s["entry_type"][t] if s["entry_type"] is not None else MARKET
        dists = (
            _distance(s["stop_loss"], t),
            _distance(s["take_profit"], t),
            _distance(s["trailing_stop"], t),
        )
        limit_price = s["entry_price"][t] if kind != MARKET else math.nan
        order = self.new_entry_order(bar, t, side, kind, limit_price)
        if kind == MARKET:
            self.enter(bar, side, price, False, dists, order)
        elif not (limit_price > 0):  # NaN / missing price: nothing to rest (doc is silent)
            self._reject(order, "invalid entry price")
        else:
            self.pending = _Pending(side, kind, float(limit_price), *dists, order=order)


def _as_list(x: Any, n: int, dtype: type = float) -> list[Any] | None:
    if x is None:
        return None
    arr = np.asarray(x)
    if arr.ndim == 0:
        arr = np.full(n, arr.item())
    if dtype is bool:
        return [bool(v) for v in arr.astype(bool)]
    if dtype is int:
        return [int(v) for v in arr.astype(np.int64)]
    return [float(v) for v in arr.astype(np.float64)]


def simulate(
    open: Any,
    high: Any,
    low: Any,
    close: Any,
    *,
    enter_long: Any = None,
    exit_long: Any = None,
    enter_short: Any = None,
    exit_short: Any = None,
    stop_loss: Any = None,
    take_profit: Any = None,
    trailing_stop: Any = None,
    entry_type: Any = None,
    entry_price: Any = None,
    funding: Any = None,
    cfg: RefConfig | None = None,
) -> RefResult:
    """Run the reference simulation; arrays may be scalars (broadcast) or None.

    `entry_type` holds per-bar ints (0 market, 1 limit, 2 stop) or names; `funding` the
    summed funding rate charged in each bar (already aligned to the bars).
    """
    cfg = cfg or RefConfig()
    o = _as_list(open, 0)
    assert o is not None
    n = len(o)
    h, lo, c = _as_list(high, n), _as_list(low, n), _as_list(close, n)
    false = [False] * n
    if entry_type is not None and np.asarray(entry_type).dtype.kind in "UO":
        et = np.asarray(entry_type)
        et = np.full(n, et.item()) if et.ndim == 0 else et
        entry_type = [TYPE_CODES[str(v)] for v in et]
    s = {
        "enter_long": _as_list(enter_long, n, bool) or false,
        "exit_long": _as_list(exit_long, n, bool) or false,
        "enter_short": _as_list(enter_short, n, bool) or false,
        "exit_short": _as_list(exit_short, n, bool) or false,
        "stop_loss": _as_list(stop_loss, n),
        "take_profit": _as_list(take_profit, n),
        "trailing_stop": _as_list(trailing_stop, n),
        "entry_type": _as_list(entry_type, n, int),
        "entry_price": _as_list(entry_price, n),
    }
    rates = _as_list(funding, n)
    active = [
        s["enter_long"][t] or s["exit_long"][t] or s["enter_short"][t] or s["exit_short"][t]
        for t in range(n)
    ]

    sim = _Sim(o, h, lo, c, cfg)
    equity: list[float] = []
    paid: list[float] = []
    stopped = False  # the equity at a bar's close was <= 0: nothing trades any more
    for i in range(n):
        # 1. funding on the position held coming into the bar
        f = 0.0
        if sim.pos is not None and rates is not None and rates[i] != 0 and not math.isnan(rates[i]):
            pay = sim.pos.side * sim.pos.qty * o[i] * rates[i]
            sim.cash -= pay
            sim.pos.funding -= pay
            f = -pay
        paid.append(f)
        if stopped:  # the position closes at the first open after the stop, then idle
            if sim.pos is not None:
                sim.exit(i, o[i], "zero_equity")
            equity.append(sim.cash)
            continue
        # 2. signal orders at the open (signals of bar i - 1)
        if cfg.fill_at == "open" and i > 0 and active[i - 1]:
            sim.signal_orders(i, i - 1, o[i], s)
        # 3. the intrabar path
        sim.walk(i)
        # 4. signal orders at the close (signals of bar i)
        if cfg.fill_at == "close" and active[i]:
            if i < n - 1:
                sim.signal_orders(i, i, c[i], s)
            elif sim.pos is not None:  # last bar: exits only, entries are dropped
                pos = sim.pos
                t = i
                if (pos.side > 0 and (s["exit_long"][t] or s["enter_short"][t])) or (
                    pos.side < 0 and (s["exit_short"][t] or s["enter_long"][t])
                ):
                    sim.exit(i, c[i], "signal")
        if i == n - 1 and sim.pos is not None:
            sim.exit(i, c[i], "end")
        # 5. marking
        equity.append(sim.equity_now(c[i]))
        if equity[-1] <= 0:
            stopped = True
            if sim.pending is not None:  # a fill_at="close" entry waiting for the next bar
                sim.pending.order.update(status="expired")
                sim.pending = None
    return RefResult(sim.trades, equity, sim.orders, sim.fills, paid)


# ---------------------------------------------------------------- test helpers
def align_funding(bar_times_ns: Any, timeframe_ns: int, times_ns: Any, rates: Any) -> np.ndarray:
    """Per-bar summed funding rate: T is charged in the bar with open <= T < next open.

    Written as a plain loop on purpose (independent of any vectorised alignment).
    """
    bt = [int(v) for v in np.asarray(bar_times_ns, dtype=np.int64)]
    out = np.zeros(len(bt))
    for t_ns, rate in zip(np.asarray(times_ns, dtype=np.int64), np.asarray(rates), strict=True):
        t_ns = int(t_ns)
        for i in range(len(bt)):
            end = bt[i + 1] if i + 1 < len(bt) else bt[i] + timeframe_ns
            if bt[i] <= t_ns < end:
                out[i] += float(rate)
                break
    return out


# ------------------------------------------------- helpers shared by the parity tests
def make_bars(rows: Any, *, start: str = "2024-01-01", timeframe_ns: int = 60_000_000_000) -> Any:
    """Bars from `(open, high, low, close)` rows, one minute apart (or `timeframe_ns`)."""
    from sapphire.strategy.base import Bars

    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    n = arr.shape[0]
    t0 = np.datetime64(start, "ns").astype(np.int64)
    return Bars(
        time=t0 + np.arange(n, dtype=np.int64) * timeframe_ns,
        open=np.ascontiguousarray(arr[:, 0]),
        high=np.ascontiguousarray(arr[:, 1]),
        low=np.ascontiguousarray(arr[:, 2]),
        close=np.ascontiguousarray(arr[:, 3]),
        volume=np.ones(n),
        timeframe_ns=timeframe_ns,
    )


def fixed_strategy(signals: Any) -> type:
    """A Strategy class whose `signals()` returns the given `Signals` object as is."""
    from sapphire.strategy.base import Strategy

    class FixedSignals(Strategy):
        name = "fixed_signals"

        def signals(self, bars: Any) -> Any:
            return signals

    return FixedSignals


def reference_for(
    bars: Any,
    signals: Any,
    cfg: RefConfig,
    *,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    funding: Any = None,
) -> RefResult:
    """Run the reference on Bars + a Signals object, with Backtest-style bracket overrides."""
    return simulate(
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        enter_long=signals.enter_long,
        exit_long=signals.exit_long,
        enter_short=signals.enter_short,
        exit_short=signals.exit_short,
        stop_loss=stop_loss if stop_loss is not None else signals.stop_loss,
        take_profit=take_profit if take_profit is not None else signals.take_profit,
        trailing_stop=trailing_stop if trailing_stop is not None else signals.trailing_stop,
        entry_type=signals.entry_type,
        entry_price=signals.entry_price,
        funding=funding,
        cfg=cfg,
    )


def ref_config(**kw: Any) -> RefConfig:
    """RefConfig from Backtest keywords (`fee=` sets both maker and taker fees)."""
    fee = kw.pop("fee", None)
    if fee is not None:
        kw.setdefault("maker_fee", fee)
        kw.setdefault("taker_fee", fee)
    for key in ("stop_loss", "take_profit", "trailing_stop", "funding"):
        kw.pop(key, None)
    return RefConfig(**kw)


TRADE_EXACT = ["entry_bar", "exit_bar", "side", "exit_reason"]
TRADE_FLOAT = ["size", "entry_price", "exit_price", "pnl", "fees", "funding", "return"]


def assert_parity(
    result: Any, ref: RefResult, *, rtol: float = 1e-9, atol: float = 1e-7, orders: bool = True
) -> None:
    """Kernel result == reference, trade for trade, and equity bar for bar.

    With `orders`, the entry orders (type, side, status, reject reason) must match too.
    """
    kt = result.trades
    rt = ref.trades
    if len(kt) != len(rt):
        first = _first_trade_difference(kt, rt)
        raise AssertionError(
            f"trade count differs: kernel {len(kt)}, reference {len(rt)}; first difference: {first}"
        )
    for col in TRADE_EXACT:
        got = kt[col].to_numpy()
        want = np.array([t[col] for t in rt], dtype=got.dtype if len(rt) else object)
        bad = np.flatnonzero(got != want) if len(rt) else []
        if len(bad):
            k = int(bad[0])
            raise AssertionError(
                f"trade {k}: {col} kernel {got[k]!r} != reference {want[k]!r}\n"
                f"kernel: {kt.iloc[k].to_dict()}\nreference: {rt[k]}"
            )
    for col in TRADE_FLOAT:
        got = kt[col].to_numpy(dtype=np.float64)
        want = np.array([t[col] for t in rt], dtype=np.float64)
        close = np.isclose(got, want, rtol=rtol, atol=atol)
        if not close.all():
            k = int(np.flatnonzero(~close)[0])
            raise AssertionError(
                f"trade {k}: {col} kernel {got[k]!r} != reference {want[k]!r}\n"
                f"kernel: {kt.iloc[k].to_dict()}\nreference: {rt[k]}"
            )
    if orders:
        kernel_orders = result.orders
        kernel_orders = kernel_orders[kernel_orders["role"] == "entry"]
        got_rows = list(
            zip(
                kernel_orders["type"],
                kernel_orders["side"],
                kernel_orders["status"],
                kernel_orders["reason"],
                strict=True,
            )
        )
        want_rows = [
            (o["type"], o["side"], o["status"], o["reason"])
            for o in ref.orders
            if o["role"] == "entry"
        ]
        if got_rows != want_rows:
            k = next(
                (k for k, (a, b) in enumerate(zip(got_rows, want_rows, strict=False)) if a != b),
                min(len(got_rows), len(want_rows)),
            )
            raise AssertionError(
                f"entry orders differ at #{k} (kernel {len(got_rows)}, reference "
                f"{len(want_rows)}): kernel {got_rows[k : k + 1]}, reference {want_rows[k : k + 1]}"
            )
    eq = result.equity.to_numpy(dtype=np.float64)
    want_eq = np.asarray(ref.equity)
    assert eq.shape == want_eq.shape, (eq.shape, want_eq.shape)
    close = np.isclose(eq, want_eq, rtol=rtol, atol=atol)
    if not close.all():
        k = int(np.flatnonzero(~close)[0])
        raise AssertionError(
            f"equity differs first at bar {k}: kernel {eq[k]!r}, ref {want_eq[k]!r}"
        )


def _first_trade_difference(kt: Any, rt: list[dict[str, Any]]) -> str:
    for k in range(min(len(kt), len(rt))):
        row = kt.iloc[k]
        for col in TRADE_EXACT:
            if row[col] != rt[k][col]:
                return f"trade {k}: kernel {row.to_dict()} reference {rt[k]}"
    if len(kt) > len(rt):
        return f"extra kernel trade {kt.iloc[len(rt)].to_dict()}"
    if len(rt) > len(kt):
        return f"extra reference trade {rt[len(kt)]}"
    return "none in the common prefix"


def equity_from_fills(
    open: Any, close: Any, fills: Any, cash: float, funding: Any = None
) -> np.ndarray:
    """Re-derive the equity curve from a fills table (bar, side, quantity, price, fee).

    Funding (per-bar summed rate) is paid at the bar's open on the position held coming
    into the bar; then the bar's fills move cash and position; equity is marked at the close.
    """
    n = len(close)
    by_bar: dict[int, list[tuple[str, float, float, float]]] = {}
    for bar, side, q, p, fee in zip(
        fills["bar"], fills["side"], fills["quantity"], fills["price"], fills["fee"], strict=True
    ):
        by_bar.setdefault(int(bar), []).append((str(side), float(q), float(p), float(fee)))
    out = np.empty(n)
    qty = 0.0
    for i in range(n):
        if funding is not None and qty != 0.0:
            cash -= qty * float(open[i]) * float(funding[i])
        for side, q, p, fee in by_bar.get(i, []):
            if side == "buy":
                cash -= q * p + fee
                qty += q
            else:
                cash += q * p - fee
                qty -= q
        out[i] = cash + qty * float(close[i])
    return out
