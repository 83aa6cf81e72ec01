"""The local exchange's state in Bybit v5's JSON shapes (numbers as strings).

Field names and values are Bybit's (`orderStatus` New, PartiallyFilled, Untriggered,
Filled, Cancelled, PartiallyFilledCanceled, Deactivated, Rejected); the REST answers
and the stream events (`ExchangeState.subscribe`) use the same shapes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from sapphire.domain import LiquiditySide, OrderFilled, OrderStatus

if TYPE_CHECKING:
    from sapphire.venues.exchange.state import ExchangeState, Market, OrderRecord

__all__ = [
    "execution",
    "instrument",
    "num",
    "order",
    "order_status",
    "position",
    "ticker",
    "wallet",
]

_ZERO = Decimal(0)
#: Bybit's maintenance margin rate of BTCUSDT's first risk tier
MAINTENANCE_RATE = Decimal("0.005")


def num(value: Decimal | None, empty: str = "0") -> str:
    """A Decimal as Bybit writes numbers: plain notation, no exponent; `empty` for None."""
    if value is None:
        return empty
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def order_status(rec: OrderRecord) -> str:
    """Bybit's orderStatus of an order."""
    status = rec.order.status
    filled = rec.order.filled_qty > 0
    if status in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
        if filled:
            return "PartiallyFilledCanceled"
        return "Deactivated" if rec.is_conditional else "Cancelled"
    if status is OrderStatus.FILLED:
        return "Filled"
    if status is OrderStatus.REJECTED:
        return "Rejected"
    if status is OrderStatus.PARTIALLY_FILLED:
        return "PartiallyFilled"
    return "Untriggered" if rec.is_conditional else "New"


def order(state: ExchangeState, rec: OrderRecord) -> dict[str, object]:
    """An order as /v5/order/realtime and /v5/order/history answer it."""
    o = rec.order
    spot = rec.market.is_spot
    avg = None if o.avg_px is None else rec.market.instrument.quantize_price(o.avg_px)
    leaves = _ZERO if o.is_terminal else o.leaves_qty
    view: dict[str, object] = {
        "orderId": rec.order_id,
        "orderLinkId": rec.link_id,
        "blockTradeId": "",
        "symbol": rec.market.symbol,
        "price": num(rec.price),
        "qty": num(rec.qty),
        "side": rec.side,
        "isLeverage": "0" if spot else "",
        "positionIdx": 0,
        "orderStatus": order_status(rec),
        "createType": "CreateByUser",
        "cancelType": rec.cancel_type,
        "rejectReason": rec.reject_reason,
        "avgPrice": num(avg, "" if spot else "0"),
        "leavesQty": num(leaves),
        "leavesValue": num(leaves * (rec.price or state.last(rec.market))),
        "cumExecQty": num(o.filled_qty),
        "cumExecValue": num(rec.cum_value),
        "cumExecFee": num(rec.cum_fee),
        "cumFeeDetail": {rec.market.instrument.settlement: num(rec.cum_fee)} if rec.fills else {},
        "timeInForce": rec.time_in_force,
        "orderType": rec.order_type,
        "stopOrderType": "Stop" if rec.is_conditional else "",
        "orderIv": "",
        "triggerPrice": num(rec.trigger_price),
        "takeProfit": "0",
        "stopLoss": "0",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "triggerDirection": rec.trigger_direction,
        "triggerBy": "LastPrice" if rec.is_conditional else "",
        "lastPriceOnCreated": num(rec.last_on_created),
        "reduceOnly": rec.reduce_only,
        "closeOnTrigger": False,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "tpLimitPrice": "0",
        "slLimitPrice": "0",
        "createdTime": str(rec.created_ms),
        "updatedTime": str(rec.updated_ms),
        "category": rec.market.category,
    }
    if spot:
        view["marketUnit"] = rec.market_unit
    else:
        view["tpslMode"] = "UNKNOWN"
    return view


def execution(
    state: ExchangeState, rec: OrderRecord, fill: OrderFilled, value: Decimal, now: int
) -> dict[str, object]:
    """One fill as /v5/execution/list answers it."""
    maker = fill.liquidity is LiquiditySide.MAKER
    inst = rec.market.instrument
    view: dict[str, object] = {
        "symbol": rec.market.symbol,
        "orderId": rec.order_id,
        "orderLinkId": rec.link_id,
        "side": rec.side,
        "orderPrice": num(rec.price),
        "orderQty": num(rec.order.quantity),
        "leavesQty": num(rec.order.leaves_qty),
        "orderType": rec.order_type,
        "stopOrderType": "Stop" if rec.is_conditional else "",
        "execFee": num(fill.fee),
        "feeCurrency": fill.fee_currency,
        "execId": str(fill.trade_id),
        "execPrice": num(fill.last_px),
        "execQty": num(fill.last_qty),
        "execType": "Trade",
        "execValue": num(value),
        "execTime": str(now),
        "feeRate": num(inst.maker_fee if maker else inst.taker_fee),
        "isMaker": maker,
        "markPrice": num(state.last(rec.market)),
        "indexPrice": "",
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": "",
        "seq": len(state.executions) + 1,
        "category": rec.market.category,
    }
    if not rec.market.is_spot:
        view["createType"] = "CreateByUser"
    return view


def position(state: ExchangeState, market: Market) -> dict[str, object]:
    """The one-way position of a linear market as /v5/position/list answers it."""
    inst = market.instrument
    pos = state.venue.account.positions.get(inst.id)
    qty = state.position_qty(market)
    mark = state.mark(market)
    times = state.positions.get(inst.id)
    notional = abs(qty) * mark * inst.multiplier
    avg = inst.quantize_price(pos.avg_px) if pos is not None and pos.avg_px is not None else _ZERO
    realized = pos.realized_pnl if pos is not None else _ZERO
    return {
        "positionIdx": 0,
        "riskId": 1,
        "riskLimitValue": "2000000",
        "symbol": market.symbol,
        "side": "Buy" if qty > 0 else ("Sell" if qty < 0 else ""),
        "size": num(abs(qty)),
        "avgPrice": num(avg),
        "positionValue": num(abs(qty) * avg * inst.multiplier),
        "tradeMode": 0,
        "positionStatus": "Normal",
        "autoAddMargin": 0,
        "adlRankIndicator": 2 if qty else 0,
        "leverage": num(state.leverage),
        "positionBalance": num(notional / state.leverage),
        "markPrice": num(mark),
        "liqPrice": "",
        "bustPrice": "",
        "positionMM": num(notional * MAINTENANCE_RATE),
        "positionIM": num(notional / state.leverage),
        "tpslMode": "Full",
        "takeProfit": "0",
        "stopLoss": "0",
        "trailingStop": "0",
        "unrealisedPnl": num(pos.unrealized_pnl(mark) if pos is not None and qty else _ZERO),
        "curRealisedPnl": num(realized - times.realized_before if times else _ZERO),
        "cumRealisedPnl": num(realized),
        "seq": len(state.executions),
        "isReduceOnly": False,
        "createdTime": str(times.created_ms if times else 0),
        "updatedTime": str(times.updated_ms if times else 0),
        "category": market.category,
    }


def wallet(state: ExchangeState, coins: set[str] | None = None) -> dict[str, object]:
    """The unified account as /v5/account/wallet-balance answers it (values in USDT; a
    base coin is valued at its spot market's last price)."""
    settle = state.settle
    account = state.venue.account
    upnl = state.unrealized()
    position_im = state.position_im()
    order_im = state.order_im()
    maintenance = _ZERO
    for m in state.markets.values():
        if not m.is_spot:
            maintenance += abs(state.position_qty(m)) * state.mark(m) * MAINTENANCE_RATE
    prices = {m.instrument.base: state.last(m) for m in state.markets.values() if m.is_spot}
    rows = []
    total_equity = _ZERO
    for coin, balance in sorted(account.balances.items()):
        if coins and coin not in coins:
            continue
        if balance == 0 and coin != settle:
            continue
        is_settle = coin == settle
        equity = balance + (upnl if is_settle else _ZERO)
        usd = equity if is_settle else equity * prices.get(coin, _ZERO)
        total_equity += usd
        free = max(state.available(coin), _ZERO)
        rows.append(
            {
                "coin": coin,
                "equity": num(equity),
                "usdValue": num(usd),
                "walletBalance": num(balance),
                "free": "",
                "locked": num(state.locked(coin)),
                "spotHedgingQty": "0",
                "borrowAmount": "0",
                "availableToWithdraw": num(free),
                "availableToBorrow": "",
                "accruedInterest": "0",
                "totalOrderIM": num(order_im if is_settle else _ZERO),
                "totalPositionIM": num(position_im if is_settle else _ZERO),
                "totalPositionMM": num(maintenance if is_settle else _ZERO),
                "unrealisedPnl": num(upnl if is_settle else _ZERO),
                "cumRealisedPnl": "0",
                "bonus": "0",
                "marginCollateral": True,
                "collateralSwitch": True,
            }
        )
    wallet_usd = total_equity - upnl
    return {
        "accountType": "UNIFIED",
        "accountIMRate": num(_ratio(position_im + order_im, total_equity)),
        "accountMMRate": num(_ratio(maintenance, total_equity)),
        "accountLTV": "0",
        "totalEquity": num(total_equity),
        "totalWalletBalance": num(wallet_usd),
        "totalMarginBalance": num(total_equity),
        "totalAvailableBalance": num(max(total_equity - position_im - order_im, _ZERO)),
        "totalPerpUPL": num(upnl),
        "totalInitialMargin": num(position_im + order_im),
        "totalMaintenanceMargin": num(maintenance),
        "coin": rows,
    }


def _ratio(part: Decimal, whole: Decimal) -> Decimal:
    return (part / whole).quantize(Decimal("0.0001")) if whole > 0 else _ZERO


def instrument(market: Market, leverage_max: int = 100) -> dict[str, object]:
    """A market as /v5/market/instruments-info answers it."""
    inst = market.instrument
    if market.is_spot:
        return {
            "symbol": market.symbol,
            "baseCoin": inst.base,
            "quoteCoin": inst.quote,
            "innovation": "0",
            "status": "Trading",
            "marginTrading": "none",
            "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": num(inst.lot_size),
                "quotePrecision": "0.00000001",
                "minOrderQty": num(inst.min_qty),
                "maxOrderQty": num(inst.max_qty),
                "minOrderAmt": num(inst.min_notional),
                "maxOrderAmt": "2000000",
            },
            "priceFilter": {"tickSize": num(inst.tick_size)},
            "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"},
        }
    return {
        "symbol": market.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": inst.base,
        "quoteCoin": inst.quote,
        "settleCoin": inst.settlement,
        "launchTime": "1585526400000",
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(inst.price_precision),
        "leverageFilter": {
            "minLeverage": "1",
            "maxLeverage": f"{leverage_max}.00",
            "leverageStep": "0.01",
        },
        "priceFilter": {
            "minPrice": num(inst.tick_size),
            "maxPrice": "1999999.80",
            "tickSize": num(inst.tick_size),
        },
        "lotSizeFilter": {
            "maxOrderQty": num(inst.max_qty),
            "maxMktOrderQty": num(inst.max_qty),
            "minOrderQty": num(inst.min_qty),
            "qtyStep": num(inst.lot_size),
            "postOnlyMaxOrderQty": num(inst.max_qty),
            "minNotionalValue": num(inst.min_notional),
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "copyTrading": "both",
        "upperFundingRate": "0.005",
        "lowerFundingRate": "-0.005",
        "isPreListing": False,
        "preListingInfo": None,
    }


def ticker(state: ExchangeState, market: Market) -> dict[str, object]:
    """A market's ticker as /v5/market/tickers answers it (24h figures from the replay)."""
    inst = market.instrument
    stats = state.replay.stats_24h()
    price = lambda value: num(inst.make_price(value, quantize=True))  # noqa: E731
    bid, ask = state.touch(market)
    size = num(inst.quantize_qty(max(state.replay.bar_volume() / 10, float(inst.lot_size))))
    view: dict[str, object] = {
        "symbol": market.symbol,
        "lastPrice": price(stats["last"]),
        "bid1Price": num(bid),
        "bid1Size": size,
        "ask1Price": num(ask),
        "ask1Size": size,
        "prevPrice24h": price(stats["prev"]),
        "price24hPcnt": f"{stats['last'] / stats['prev'] - 1:.4f}",
        "highPrice24h": price(stats["high"]),
        "lowPrice24h": price(stats["low"]),
        "turnover24h": f"{stats['turnover']:.4f}",
        "volume24h": f"{stats['volume']:.6f}",
    }
    if not market.is_spot:
        last = price(stats["last"])
        view |= {
            "indexPrice": last,
            "markPrice": last,
            "prevPrice1h": last,
            "openInterest": "0",
            "openInterestValue": "0",
            "fundingRate": "0",
            "nextFundingTime": "0",
            "predictedDeliveryPrice": "",
            "basisRate": "",
            "deliveryFeeRate": "",
            "deliveryTime": "0",
        }
    else:
        view["usdIndexPrice"] = price(stats["last"])
    return view


def book(state: ExchangeState, market: Market, depth: int) -> dict[str, object]:
    """The synthetic order book (see `sapphire.venues.exchange.market`)."""
    inst = market.instrument
    bid, ask = state.touch(market)
    tick = inst.tick_size
    size = num(inst.quantize_qty(max(state.replay.bar_volume() / depth, float(inst.lot_size))))
    return {
        "s": market.symbol,
        "b": [[num(bid - k * tick), size] for k in range(depth)],
        "a": [[num(ask + k * tick), size] for k in range(depth)],
        "ts": state.replay.now_ms,
        "u": state.replay.position,
        "seq": state.replay.position,
        "cts": state.replay.now_ms,
    }
