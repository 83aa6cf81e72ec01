"""Account: spot and derivative cash movements, funding, margin, equity, FX, checks."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from sapphire.domain import ContractType, Instrument, InstrumentId, OrderSide, PositionSide
from sapphire.portfolio import Account, convert, to_reporting

BUY, SELL = OrderSide.BUY, OrderSide.SELL
LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


def instrument(symbol, base, quote, kind, settlement=None, multiplier=D(1), taker=D("0.001")):
    return Instrument(
        InstrumentId(symbol, "TEST"),
        base,
        quote,
        settlement or quote,
        kind,
        D("0.01"),
        D("0.001"),
        maker_fee=D("0.0002"),
        taker_fee=taker,
        multiplier=multiplier,
    )


BTC_SPOT = instrument("BTC/USDT", "BTC", "USDT", ContractType.SPOT)
BTC_PERP = instrument("BTC/USDT:USDT", "BTC", "USDT", ContractType.PERPETUAL)
ETH_EUR_PERP = instrument("ETH/EUR:EUR", "ETH", "EUR", ContractType.PERPETUAL)


def test_spot_buy_debits_quote_credits_base_and_sell_reverses():
    acc = Account("USDT", {"USDT": D(10000)})
    assert acc.apply_fill(BTC_SPOT, BUY, D("0.5"), D(20000), D(10)) == 0
    assert acc.balances == {"USDT": D(-10), "BTC": D("0.5")}
    # equity values BTC at the spot mark: -10 + 0.5 * 21000
    assert acc.equity({BTC_SPOT.id: D(21000)}) == D(10490)
    acc.apply_fill(BTC_SPOT, SELL, D("0.2"), D(22000), D("0.0001"), fee_currency="BTC")
    assert acc.balance("USDT") == D(4390)
    assert acc.balance("BTC") == D("0.2999")
    assert acc.unrealized_pnl({}) == {} and acc.margin_used() == {}


def test_spot_base_needs_a_mark_or_a_rate():
    acc = Account("USDT", {"USDT": D(100)})
    acc.apply_fill(BTC_SPOT, BUY, D("0.001"), D(20000))
    with pytest.raises(ValueError, match="no FX rate for BTC in USDT"):
        acc.equity({})
    # an explicit rate wins over the mark
    assert acc.equity({BTC_SPOT.id: D(30000)}, {"BTC": D(25000)}) == D(105)


def test_derivative_fills_settle_realised_pnl_and_fees_only():
    acc = Account("USDT", {"USDT": D(1000)}, leverage=D(10))
    assert acc.apply_fill(BTC_PERP, BUY, D(1), D(100), D("0.06")) == 0
    assert acc.balances == {"USDT": D("999.94")}
    marks = {BTC_PERP.id: D(110)}
    assert acc.unrealized_pnl(marks) == {"USDT": D(10)}
    assert acc.equity(marks) == D("1009.94")
    assert acc.margin_used(marks) == {"USDT": D(11)}
    assert acc.margin_used() == {"USDT": D(10)}  # at entry without marks
    assert acc.free_margin("USDT", marks) == D("998.94")
    # flip to short 1 at 120: realises +20, the remainder opens at 120
    assert acc.apply_fill(BTC_PERP, SELL, D(2), D(120), D("0.1")) == 20
    assert acc.balance("USDT") == D("1019.84")
    assert acc.positions.net_quantity(BTC_PERP.id) == -1
    assert acc.apply_funding(BTC_PERP.id, D("0.0001"), D(120)) == D("0.012")  # short receives
    assert acc.balance("USDT") == D("1019.852")


def test_multi_currency_equity_converts_every_balance():
    acc = Account("USDT", {"USDT": D(1000), "EUR": D(500), "BTC": D("0.1")})
    fx = {"EUR": D("1.08"), "BTC": D(60000)}
    assert acc.equity({}, fx) == D(1000) + D(540) + D(6000)
    # reporting in EUR with EUR-based rates
    assert acc.equity({}, {"USDT": D("0.9"), "BTC": D(55000)}, currency="EUR") == D(
        900 + 500 + 5500
    )
    acc.apply_fill(ETH_EUR_PERP, BUY, D(2), D(3000), D(3))
    marks = {ETH_EUR_PERP.id: D(3100)}
    assert acc.equity_by_currency(marks)["EUR"] == D(500 - 3 + 200)
    assert acc.equity(marks, fx) == D(1000) + D(697) * D("1.08") + D(6000)
    with pytest.raises(ValueError, match="no FX rate for EUR in USDT"):
        acc.equity(marks, {"BTC": D(60000)})
    with pytest.raises(ValueError, match="no mark price for open position ETH/EUR:EUR@TEST"):
        acc.equity({}, fx)
    with pytest.raises(ValueError, match="reporting currency USDT must be 1"):
        acc.equity(marks, fx | {"USDT": D(2)})


def test_fx_helpers():
    rates = {"EUR": D("1.1")}
    assert convert(D(10), "EUR", "USD", rates) == D(11)
    assert convert(D(10), "USD", "USD", rates) == D(10)
    assert convert(D(0), "JPY", "USD", rates) == 0  # nothing to value, no rate needed
    assert to_reporting({"USD": D(1), "EUR": D(2)}, "USD", rates) == D("3.2")
    with pytest.raises(ValueError, match="FX rate of EUR in USD must be > 0"):
        convert(D(1), "EUR", "USD", {"EUR": D(0)})


def test_hedge_account_keeps_legs():
    acc = Account("USDT", {"USDT": D(1000)}, hedge=True)
    acc.apply_fill(BTC_PERP, BUY, D(1), D(100), position_side=LONG)
    acc.apply_fill(BTC_PERP, SELL, D(1), D(105), position_side=SHORT)
    assert acc.positions.net_quantity(BTC_PERP.id) == 0
    assert len(acc.positions.open_positions()) == 2  # both legs stay open
    marks = {BTC_PERP.id: D(110)}
    assert acc.unrealized_pnl(marks) == {"USDT": D(10) - D(5)}
    assert acc.margin_used(marks) == {"USDT": D(220)}
    assert acc.apply_fill(BTC_PERP, BUY, D(1), D(90), position_side=SHORT) == 15
    with pytest.raises(ValueError, match="needs position_side"):
        acc.apply_fill(BTC_PERP, BUY, D(1), D(90))


def test_hedge_mode_per_instrument_and_never_for_spot():
    acc = Account("USDT", {"USDT": D(1000)}, hedge={BTC_PERP.id})
    assert acc.is_hedged(BTC_PERP) and not acc.is_hedged(ETH_EUR_PERP)
    assert not Account("USDT", hedge=True).is_hedged(BTC_SPOT)
    acc.apply_fill(BTC_PERP, SELL, D(1), D(100), position_side=SHORT)
    acc.apply_fill(ETH_EUR_PERP, SELL, D(1), D(100))
    acc.apply_fill(ETH_EUR_PERP, BUY, D(3), D(100))
    assert acc.positions.net_quantity(ETH_EUR_PERP.id) == 2
    with pytest.raises(ValueError, match="which is netted"):
        acc.apply_fill(ETH_EUR_PERP, BUY, D(1), D(100), position_side=LONG)
    with pytest.raises(ValueError, match="InstrumentIds"):
        Account("USDT", hedge=["BTC"])  # type: ignore[list-item]


def test_check_order_spot():
    acc = Account("USDT", {"USDT": D(1000), "BTC": D("0.01")})
    assert acc.check_order(BTC_SPOT, BUY, D("0.04"), D(20000), fee=D(0)) is None
    reason = acc.check_order(BTC_SPOT, BUY, D("0.05"), D(20000))
    assert reason == (
        "insufficient USDT balance for BUY 0.05 BTC/USDT@TEST at 20000: "
        "need 1001.00000 (incl. fee 1.00000), free 1000"
    )
    assert acc.check_order(BTC_SPOT, SELL, D("0.01"), D(20000)) is None
    reason = acc.check_order(BTC_SPOT, SELL, D("0.02"), D(20000))
    assert reason is not None and "insufficient BTC balance" in reason and "free 0.01" in reason


def test_check_order_derivatives_margin_and_reducing():
    acc = Account("USDT", {"USDT": D(100)}, leverage=D(5))
    # 1 BTC at 400: initial margin 80 + taker fee 0.4 fits in 100
    assert acc.check_order(BTC_PERP, BUY, D(1), D(400)) is None
    reason = acc.check_order(BTC_PERP, BUY, D(2), D(400))
    assert reason is not None
    assert "insufficient margin in USDT" in reason and "need 160.8" in reason
    assert "free 100" in reason and "leverage 5" in reason
    acc.apply_fill(BTC_PERP, BUY, D(1), D(400))
    # reducing needs nothing even when free margin is gone
    marks = {BTC_PERP.id: D(310)}
    assert acc.free_margin("USDT", marks) < 0
    assert acc.check_order(BTC_PERP, SELL, D(1), D(310), marks=marks) is None
    # selling 2 would reduce 1 and open 1 short: the opening half needs margin
    reason = acc.check_order(BTC_PERP, SELL, D(2), D(310), marks=marks)
    assert reason is not None and "insufficient margin" in reason


def test_check_order_hedge_legs():
    acc = Account("USDT", {"USDT": D(1000)}, hedge=True)
    reason = acc.check_order(BTC_PERP, SELL, D(1), D(100), position_side=LONG)
    assert reason == "SELL 1 would take the LONG leg of BTC/USDT:USDT@TEST below zero: it holds 0"
    acc.apply_fill(BTC_PERP, BUY, D(1), D(100), position_side=LONG)
    assert acc.check_order(BTC_PERP, SELL, D(1), D(100), position_side=LONG) is None
    reason = acc.check_order(BTC_PERP, SELL, D(2), D(100), position_side=LONG)
    assert reason == "SELL 2 would take the LONG leg of BTC/USDT:USDT@TEST below zero: it holds 1"
    assert acc.check_order(BTC_PERP, SELL, D(2), D(100), position_side=SHORT) is None
    with pytest.raises(ValueError, match="needs position_side"):
        acc.check_order(BTC_PERP, SELL, D(1), D(100))


def test_validation_errors_name_the_value():
    with pytest.raises(ValueError, match="leverage must be > 0"):
        Account("USDT", leverage=D(0))
    with pytest.raises(ValueError, match="base_currency"):
        Account("")
    with pytest.raises(ValueError, match="balance of USDT"):
        Account("USDT", {"USDT": "lots"})
    acc = Account("USDT", {"USDT": D(10)})
    with pytest.raises(ValueError, match="cannot withdraw 11 USDT: the balance is 10"):
        acc.withdraw("USDT", D(11))
    acc.withdraw("USDT", D(4))
    acc.deposit("EUR", "2.5")
    assert acc.balances == {"USDT": D(6), "EUR": D("2.5")}
    inverse = instrument("BTC/USD:BTC", "BTC", "USD", ContractType.PERPETUAL, settlement="BTC")
    with pytest.raises(ValueError, match="inverse contracts are not supported"):
        acc.apply_fill(inverse, BUY, D(1), D(100))
    with pytest.raises(ValueError, match="funding applies to derivatives"):
        acc.apply_funding(BTC_SPOT, D("0.01"), D(1))
    with pytest.raises(ValueError, match="position_side"):
        acc.apply_fill(BTC_SPOT, BUY, D(1), D(1), position_side=LONG)
    with pytest.raises(ValueError, match="unknown instrument"):
        acc.apply_funding(BTC_PERP.id, D("0.01"), D(1))
    other = instrument("BTC/USDT", "BTC", "USDT", ContractType.SPOT, taker=D("0.002"))
    acc.apply_fill(BTC_SPOT, BUY, D("0.001"), D(1))
    with pytest.raises(ValueError, match="different definition"):
        acc.apply_fill(other, BUY, D("0.001"), D(1))
    with pytest.raises(ValueError, match="fill qty"):
        acc.apply_fill(BTC_SPOT, BUY, D(0), D(1))
    assert acc.balance("BTC") == D("0.001")
