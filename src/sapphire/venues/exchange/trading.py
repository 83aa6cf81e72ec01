"""Order requests of the local exchange: create, amend, cancel, cancel-all, and queries.

Each function takes the `ExchangeState` and the request's parameters (Bybit's names,
values as JSON or query strings give them), checks them as Bybit does, and answers with
Bybit's `result`; a refusal raises `BybitError` with Bybit's code. The caller holds
`state.lock`. What fills when is described in `sapphire.venues.exchange.state`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sapphire.domain import ClientOrderId, Order, OrderSide, OrderType, StrategyId, TimeInForce
from sapphire.venues.exchange import views
from sapphire.venues.exchange.errors import (
    BAD_PARAM,
    DUPLICATE_LINK_ID,
    INSUFFICIENT_CONTRACT,
    INSUFFICIENT_SPOT,
    ORDER_NOT_FOUND,
    REDUCE_ONLY,
    BybitError,
)
from sapphire.venues.exchange.state import ExchangeState, Market, OrderRecord

__all__ = ["amend", "cancel", "cancel_all", "create", "executions", "history", "realtime"]

_STRATEGY = StrategyId("bybit-api")
_LINK_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
_TIFS = {"GTC", "IOC", "FOK", "PostOnly"}
_MS = 1_000_000
# rising (1) and falling (2) triggers: the price must still have to get there
_TRIGGER_CODES = {1: 110092, 2: 110093}
_UNSUPPORTED = ("takeProfit", "stopLoss", "trailingStop", "tpslMode", "isLeverage", "smpType")


# ---------------------------------------------------------------------- parameters
def _text(params: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise BybitError(BAD_PARAM, f"params error: {name} is required")
        return ""
    return str(value)


def _decimal(params: Mapping[str, Any], name: str) -> Decimal | None:
    text = _text(params, name)
    if not text:
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise BybitError(BAD_PARAM, f"params error: {name} {text!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise BybitError(BAD_PARAM, f"params error: {name} {text!r} must be a positive number")
    return value


def _bool(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    if value is None or value is False or value == "":
        return False
    if value is True or str(value).lower() in ("true", "1"):
        return True
    if str(value).lower() in ("false", "0"):
        return False
    raise BybitError(BAD_PARAM, f"params error: {name} {value!r} must be true or false")


def _int(params: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    text = _text(params, name)
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise BybitError(BAD_PARAM, f"params error: {name} {text!r} must be in {low}..{high}")
    return int(text)


def category_of(params: Mapping[str, Any], allowed: tuple[str, ...] = ("spot", "linear")) -> str:
    category = _text(params, "category", required=True)
    if category not in allowed:
        raise BybitError(
            BAD_PARAM, f"params error: category {category!r} is not one of {', '.join(allowed)}"
        )
    return category


def _market(state: ExchangeState, params: Mapping[str, Any]) -> Market:
    return state.market(category_of(params), _text(params, "symbol", required=True))


def _on_grid(value: Decimal, step: Decimal, name: str) -> None:
    if value % step:
        raise BybitError(BAD_PARAM, f"params error: {name} {value} is not a multiple of {step}")


# ---------------------------------------------------------------------- create
def create(state: ExchangeState, params: Mapping[str, Any]) -> dict[str, str]:
    """POST /v5/order/create."""
    market = _market(state, params)
    inst = market.instrument
    for name in _UNSUPPORTED:
        if _text(params, name) not in ("", "0"):
            raise BybitError(BAD_PARAM, f"params error: {name} is not supported by this exchange")
    if _int(params, "positionIdx", 0, 0, 2) != 0:
        raise BybitError(BAD_PARAM, "params error: positionIdx must be 0 (one-way mode)")
    side = _text(params, "side", required=True)
    if side not in ("Buy", "Sell"):
        raise BybitError(BAD_PARAM, f"params error: side {side!r} must be Buy or Sell")
    order_type = _text(params, "orderType", required=True)
    if order_type not in ("Market", "Limit"):
        raise BybitError(
            BAD_PARAM, f"params error: orderType {order_type!r} must be Market or Limit"
        )
    qty = _decimal(params, "qty")
    if qty is None:
        raise BybitError(BAD_PARAM, "params error: qty is required")
    price = _decimal(params, "price") if order_type == "Limit" else None
    if order_type == "Limit" and price is None:
        raise BybitError(BAD_PARAM, "params error: price is required for a Limit order")
    if price is not None:
        _on_grid(price, inst.tick_size, "price")
    tif = _text(params, "timeInForce") or ("GTC" if order_type == "Limit" else "IOC")
    if tif not in _TIFS:
        raise BybitError(
            BAD_PARAM, f"params error: timeInForce {tif!r} is not one of {sorted(_TIFS)}"
        )
    if order_type == "Market":
        tif = "IOC"  # Bybit answers every market order as IOC
    link_id = _text(params, "orderLinkId")
    if link_id and not _LINK_ID.fullmatch(link_id):
        raise BybitError(
            BAD_PARAM, f"params error: orderLinkId {link_id!r} must be 1-36 of A-Z a-z 0-9 _ -"
        )
    if link_id in state.link_ids:
        raise BybitError(DUPLICATE_LINK_ID, f"OrderLinkedID is duplicate: {link_id}")
    reduce_only = _bool(params, "reduceOnly") and not market.is_spot
    last = state.last(market)
    trigger = _decimal(params, "triggerPrice")
    direction = _int(params, "triggerDirection", 0, 0, 2)
    if trigger is not None:
        _on_grid(trigger, inst.tick_size, "triggerPrice")
        if direction == 0:  # spot conditionals carry none: the side of the last price
            direction = 1 if trigger > last else 2
        if (direction == 1 and trigger <= last) or (direction == 2 and trigger >= last):
            word = "Rising" if direction == 1 else "Falling"
            raise BybitError(
                _TRIGGER_CODES[direction],
                f"expect {word}, but trigger_price[{trigger}] {'<=' if direction == 1 else '>='} "
                f"current[{last}]",
            )
    else:
        direction = 0
    unit = ""
    base_qty = qty
    if market.is_spot and order_type == "Market":
        unit = _text(params, "marketUnit") or ("quoteCoin" if side == "Buy" else "baseCoin")
        if unit not in ("baseCoin", "quoteCoin"):
            raise BybitError(
                BAD_PARAM, f"params error: marketUnit {unit!r} is not baseCoin or quoteCoin"
            )
        if unit == "quoteCoin":
            _on_grid(qty, Decimal("0.00000001"), "qty")
            base_qty = inst.quantize_qty(qty / (last * (1 + inst.taker_fee)))
    if unit != "quoteCoin":
        _on_grid(qty, inst.lot_size, "qty")
    if inst.min_qty is not None and base_qty < inst.min_qty:
        raise BybitError(BAD_PARAM, f"params error: qty {qty} is below the minimum {inst.min_qty}")
    if inst.max_qty is not None and base_qty > inst.max_qty:
        raise BybitError(BAD_PARAM, f"params error: qty {qty} is above the maximum {inst.max_qty}")
    estimate = price or trigger or last
    if inst.min_notional is not None and base_qty * estimate < inst.min_notional:
        raise BybitError(
            BAD_PARAM,
            f"params error: order value {base_qty * estimate} is below the minimum "
            f"{inst.min_notional} {inst.quote}",
        )
    held = state.position_qty(market)
    if reduce_only and (held == 0 or (held > 0) == (side == "Buy")):
        raise BybitError(
            REDUCE_ONLY, "current position is zero or on the same side, cannot fulfill reduce-only"
        )
    _check_funds(
        state, market, side, base_qty, qty if unit == "quoteCoin" else None, estimate, reduce_only
    )

    buy = side == "Buy"
    kind, sim_price, sim_trigger = _sim_kind(order_type, buy, direction, price, trigger)
    order_id = state.new_order_id()
    now = state.clock()
    order = Order(
        ClientOrderId(order_id), _STRATEGY, inst.id, OrderSide.BUY if buy else OrderSide.SELL,
        kind, base_qty, ts_init=state.replay.now_ms * _MS, price=sim_price,
        trigger_price=sim_trigger, post_only=tif == "PostOnly", reduce_only=reduce_only,
        time_in_force=TimeInForce(tif) if tif in ("IOC", "FOK") and kind is OrderType.LIMIT
        else TimeInForce.GTC,
    )  # fmt: skip
    rec = OrderRecord(
        order=order, market=market, order_id=order_id, link_id=link_id, side=side,
        order_type=order_type, time_in_force=tif, qty=qty, price=price, trigger_price=trigger,
        trigger_direction=direction, reduce_only=reduce_only, market_unit=unit,
        created_ms=now, updated_ms=now, last_on_created=last,
    )  # fmt: skip
    state.add(rec)
    bid, ask = state.touch(market)
    takes = price is not None and (price >= ask if buy else price <= bid)
    if tif == "PostOnly" and trigger is None and takes:
        state.cancel_here(rec, "EC_PostOnlyWillTakeLiquidity")
    elif tif in ("IOC", "FOK") and order_type == "Limit" and trigger is None:
        rec.immediate = True
        state.immediate.append(rec)
        state.publish("order", views.order(state, rec))
    else:
        sizer = None
        if unit == "quoteCoin":
            fee = 1 + inst.taker_fee
            sizer = lambda px, equity: inst.quantize_qty(qty / (px * fee)) or "amount below one lot"  # noqa: E731
        state.venue.submit_order(order, sizer)
        if rec.order.venue_order_id is None:
            state.publish("order", views.order(state, rec))
    return {"orderId": order_id, "orderLinkId": link_id}


def _sim_kind(
    order_type: str, buy: bool, direction: int, price: Decimal | None, trigger: Decimal | None
) -> tuple[OrderType, Decimal | None, Decimal | None]:
    """The simulated venue's order type, price and trigger of a Bybit order."""
    if trigger is None:
        if order_type == "Limit":
            return OrderType.LIMIT, price, None
        return OrderType.MARKET, None, None
    if (direction == 1) == buy:  # a buy on a rise or a sell on a fall: a stop
        if order_type == "Market":
            return OrderType.STOP_MARKET, None, trigger
        return OrderType.STOP_LIMIT, price, trigger
    return OrderType.LIMIT, _against_side_level(buy, price, trigger), None


def _against_side_level(buy: bool, price: Decimal | None, trigger: Decimal) -> Decimal:
    """A conditional triggered against its side (a buy on a fall, a sell on a rise) is a
    limit order: at the trigger for a market one; for a limit buy at the lower of its
    price and the trigger (a sell: the higher), since the market passes the trigger
    first: a buy limit below it waits for its price, one above it is marketable once
    triggered and takes the trigger (or better)."""
    if price is None:
        return trigger
    return min(price, trigger) if buy else max(price, trigger)


def _check_funds(
    state: ExchangeState,
    market: Market,
    side: str,
    qty: Decimal,
    quote_qty: Decimal | None,
    price: Decimal,
    reduce_only: bool,
) -> None:
    """110007 / 170131 when the available balance cannot pay for the order."""
    inst = market.instrument
    if market.is_spot:
        if side == "Buy":
            coin, need = (
                inst.quote,
                quote_qty if quote_qty is not None else qty * price * (1 + inst.taker_fee),
            )
        else:
            coin, need = inst.base, qty
        have = state.available(coin)
        if need > have:
            raise BybitError(
                INSUFFICIENT_SPOT, f"Insufficient balance: need {views.num(need)} {coin}, "
                f"available {views.num(have)}",
            )  # fmt: skip
        return
    held = state.position_qty(market)
    reducing = min(qty, abs(held)) if (held > 0) != (side == "Buy") and held else Decimal(0)
    opening = Decimal(0) if reduce_only else qty - reducing
    need = opening * price / state.leverage + qty * price * inst.taker_fee
    have = state.available(state.settle)
    if opening and need > have:
        raise BybitError(
            INSUFFICIENT_CONTRACT,
            f"ab not enough for new order: need {views.num(need)} {state.settle} "
            f"(initial margin at leverage {views.num(state.leverage)} + fee), available "
            f"{views.num(have)}",
        )


# ---------------------------------------------------------------------- amend, cancel
def _open_record(state: ExchangeState, params: Mapping[str, Any], action: str) -> OrderRecord:
    market = _market(state, params)
    order_id, link_id = _text(params, "orderId"), _text(params, "orderLinkId")
    if not order_id and not link_id:
        raise BybitError(BAD_PARAM, "params error: orderId or orderLinkId is required")
    rec = state.find(order_id, link_id)
    if rec is None or rec.market is not market:
        raise BybitError(ORDER_NOT_FOUND, f"order not exists or too late to {action}")
    if not rec.is_open:
        raise BybitError(
            ORDER_NOT_FOUND,
            f"order not exists or too late to {action}: it is {views.order_status(rec)}",
        )
    if rec.order_type == "Market" and not rec.is_conditional:
        raise BybitError(
            ORDER_NOT_FOUND,
            f"order not exists or too late to {action}: a market order fills at the next price",
        )
    return rec


def amend(state: ExchangeState, params: Mapping[str, Any]) -> dict[str, str]:
    """POST /v5/order/amend: qty, price, triggerPrice (other keys are ignored)."""
    rec = _open_record(state, params, "replace")
    inst = rec.market.instrument
    qty, price, trigger = (_decimal(params, n) for n in ("qty", "price", "triggerPrice"))
    if qty is None and price is None and trigger is None:
        raise BybitError(BAD_PARAM, "params error: nothing to amend (qty, price or triggerPrice)")
    if rec.immediate:
        raise BybitError(ORDER_NOT_FOUND, "order not exists or too late to replace: IOC/FOK")
    if qty is not None:
        _on_grid(qty, inst.lot_size, "qty")
        if qty <= rec.order.filled_qty:
            raise BybitError(
                BAD_PARAM, f"params error: qty {qty} must exceed the filled {rec.order.filled_qty}"
            )
    if price is not None:
        if rec.order_type != "Limit":
            raise BybitError(BAD_PARAM, "params error: price can only be amended on a Limit order")
        _on_grid(price, inst.tick_size, "price")
    if trigger is not None:
        if not rec.is_conditional:
            raise BybitError(
                BAD_PARAM, "params error: triggerPrice can only be amended on a conditional order"
            )
        _on_grid(trigger, inst.tick_size, "triggerPrice")
    sim_price, sim_trigger = price, trigger
    if rec.trigger_price is not None and rec.order.type is OrderType.LIMIT:  # against its side
        level = _against_side_level(
            rec.side == "Buy", price or rec.price, trigger or rec.trigger_price
        )
        sim_price, sim_trigger = (None if level == rec.order.price else level), None
    if sim_price is None and sim_trigger is None and qty is None:
        return {"orderId": rec.order_id, "orderLinkId": rec.link_id}
    state.venue.amend_order(
        rec.order.client_order_id, quantity=qty, price=sim_price, trigger_price=sim_trigger
    )
    if qty is not None:
        rec.qty = qty
    if price is not None:
        rec.price = price
    if trigger is not None:
        rec.trigger_price = trigger
    return {"orderId": rec.order_id, "orderLinkId": rec.link_id}


def cancel(state: ExchangeState, params: Mapping[str, Any]) -> dict[str, str]:
    """POST /v5/order/cancel."""
    rec = _open_record(state, params, "cancel")
    _cancel(state, rec)
    return {"orderId": rec.order_id, "orderLinkId": rec.link_id}


def _cancel(state: ExchangeState, rec: OrderRecord) -> None:
    rec.cancel_type = "CancelByUser"
    if rec.immediate or not state.venue.cancel_order(rec.order.client_order_id):
        state.cancel_here(rec, "EC_NoError", "CancelByUser")


def cancel_all(state: ExchangeState, params: Mapping[str, Any]) -> dict[str, object]:
    """POST /v5/order/cancel-all: by symbol, baseCoin or settleCoin; `orderFilter` Order
    (plain orders) or StopOrder (conditional ones), else both."""
    chosen = [
        rec
        for rec in _select(state, params)
        if rec.is_open and (rec.order_type == "Limit" or rec.is_conditional)
    ]
    for rec in chosen:
        _cancel(state, rec)
    return {
        "list": [{"orderId": r.order_id, "orderLinkId": r.link_id} for r in chosen],
        "success": "1",
    }


def _select(state: ExchangeState, params: Mapping[str, Any]) -> list[OrderRecord]:
    """The orders of the request's category, narrowed by symbol, baseCoin, settleCoin,
    orderId, orderLinkId and orderFilter; newest first."""
    category = category_of(params)
    symbol, base, settle = (_text(params, n) for n in ("symbol", "baseCoin", "settleCoin"))
    order_id, link_id = _text(params, "orderId"), _text(params, "orderLinkId")
    kind = _text(params, "orderFilter")
    if kind not in ("", "Order", "StopOrder", "tpslOrder"):
        raise BybitError(BAD_PARAM, f"params error: orderFilter {kind!r} is not Order or StopOrder")
    if symbol:
        state.market(category, symbol)
    out = []
    for rec in reversed(state.orders.values()):
        m = rec.market
        if m.category != category or (symbol and m.symbol != symbol):
            continue
        if (base and m.instrument.base != base) or (settle and m.instrument.settlement != settle):
            continue
        if (order_id and rec.order_id != order_id) or (link_id and rec.link_id != link_id):
            continue
        if (kind == "Order" and rec.is_conditional) or (
            kind == "StopOrder" and not rec.is_conditional
        ):
            continue
        out.append(rec)
    return out


# ---------------------------------------------------------------------- queries
def _window(params: Mapping[str, Any]) -> tuple[int | None, int | None]:
    start, end = _text(params, "startTime"), _text(params, "endTime")
    for name, text in (("startTime", start), ("endTime", end)):
        if text and not text.isdigit():
            raise BybitError(BAD_PARAM, f"params error: {name} {text!r} must be milliseconds")
    return (int(start) if start else None), (int(end) if end else None)


def realtime(state: ExchangeState, params: Mapping[str, Any]) -> dict[str, object]:
    """GET /v5/order/realtime: open orders; an order asked for by id in any state."""
    by_id = bool(_text(params, "orderId") or _text(params, "orderLinkId"))
    limit = _int(params, "limit", 20, 1, 50)
    found = [r for r in _select(state, params) if by_id or r.is_open][:limit]
    return {
        "category": category_of(params),
        "list": [views.order(state, r) for r in found],
        "nextPageCursor": "",
    }


def history(state: ExchangeState, params: Mapping[str, Any]) -> dict[str, object]:
    """GET /v5/order/history: closed orders (and open ones asked for by id), filtered
    by `orderStatus`, `startTime`/`endTime` (creation, ms)."""
    by_id = bool(_text(params, "orderId") or _text(params, "orderLinkId"))
    status = _text(params, "orderStatus")
    start, end = _window(params)
    limit = _int(params, "limit", 20, 1, 50)
    found = []
    for rec in _select(state, params):
        if not by_id and rec.is_open:
            continue
        if status and views.order_status(rec) != status:
            continue
        if (start is not None and rec.created_ms < start) or (
            end is not None and rec.created_ms > end
        ):
            continue
        found.append(rec)
    return {
        "category": category_of(params),
        "list": [views.order(state, r) for r in found[:limit]],
        "nextPageCursor": "",
    }


def executions(state: ExchangeState, params: Mapping[str, Any]) -> dict[str, object]:
    """GET /v5/execution/list: fills, newest first."""
    category = category_of(params)
    symbol = _text(params, "symbol")
    order_id, link_id = _text(params, "orderId"), _text(params, "orderLinkId")
    exec_type = _text(params, "execType")
    start, end = _window(params)
    limit = _int(params, "limit", 50, 1, 100)
    found = []
    for e in reversed(state.executions):
        t = int(str(e["execTime"]))
        if e["category"] != category or (symbol and e["symbol"] != symbol):
            continue
        if (order_id and e["orderId"] != order_id) or (link_id and e["orderLinkId"] != link_id):
            continue
        if (
            (exec_type and e["execType"] != exec_type)
            or (start is not None and t < start)
            or (end is not None and t > end)
        ):
            continue
        found.append(e)
    return {"category": category, "list": found[:limit], "nextPageCursor": ""}
