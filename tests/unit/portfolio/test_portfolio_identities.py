"""Accounting identities over random fill sequences (Hypothesis).

Flips, partial closes, fees (and rebates), funding, several strategies, spot and
derivatives, two settlement currencies, netting and hedge mode. After every step:

- the sum of each strategy's signed fills is its position quantity;
- cash + marked positions = equity, with cash kept by an independent model (the
  backtest's: every buy of q at p takes q * p * multiplier + fee, every sell adds it,
  funding is booked to cash; positions are worth q * mark * multiplier);
- equity change = Σ strategies (realised + unrealised - fees + funding);
- the snapshot agrees (equity = balance + unrealised).

All exact Decimal equalities, no tolerance.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from sapphire.domain import (
    ContractType,
    Instrument,
    InstrumentId,
    OrderSide,
    PositionSide,
    StrategyId,
)
from sapphire.portfolio import Account, Portfolio

STRATEGIES = [StrategyId("a"), StrategyId("b"), StrategyId("c")]


def instrument(symbol, base, quote, kind, multiplier=D(1)):
    return Instrument(
        InstrumentId(symbol, "TEST"),
        base,
        quote,
        quote,
        kind,
        D("0.01"),
        D("0.001"),
        maker_fee=D(0),
        taker_fee=D(0),
        multiplier=multiplier,
    )


INSTRUMENTS = [
    instrument("BTC/USDT:USDT", "BTC", "USDT", ContractType.PERPETUAL),
    instrument("SOL/USDT:USDT", "SOL", "USDT", ContractType.FUTURE, multiplier=D("0.01")),
    instrument("ETH/EUR:EUR", "ETH", "EUR", ContractType.PERPETUAL),
    instrument("ETH/USDT", "ETH", "USDT", ContractType.SPOT),
]
INITIAL = {"USDT": D(100000), "EUR": D(5000)}

prices = st.decimals(D(1), D(10000), places=2)
fill = st.tuples(
    st.just("fill"),
    st.sampled_from(STRATEGIES),
    st.sampled_from(range(len(INSTRUMENTS))),
    st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
    st.decimals(D("0.001"), D(50), places=3),
    prices,
    st.decimals(D("-0.5"), D(5), places=4),
    st.sampled_from([PositionSide.LONG, PositionSide.SHORT]),
)
funding = st.tuples(
    st.just("funding"),
    st.sampled_from([0, 1, 2]),
    st.decimals(D("-0.001"), D("0.001"), places=6),
    prices,
)
mark = st.tuples(st.just("mark"), st.sampled_from(range(len(INSTRUMENTS))), prices)
actions = st.lists(st.one_of(fill, fill, fill, funding, mark), min_size=1, max_size=40)


def run_and_check(hedge: bool, eur_rate: D, steps: list[tuple]) -> None:
    pf = Portfolio(Account("USDT", INITIAL, leverage=D(3), hedge=hedge), INSTRUMENTS)
    fx = {"EUR": eur_rate}
    marks = {inst.id: D(100) for inst in INSTRUMENTS}
    cash = dict(INITIAL)  # the independent cash model, per currency
    signed: dict[tuple, D] = defaultdict(D)  # Σ signed fills per (strategy, instrument, leg)
    initial_equity = pf.equity(marks, fx)
    assert initial_equity == D(100000) + D(5000) * eur_rate

    for step in steps:
        if step[0] == "fill":
            _, sid, k, side, qty, px, fee, leg = step
            inst = INSTRUMENTS[k]
            spot = inst.contract_type is ContractType.SPOT
            position_side = leg if hedge and not spot else None
            if position_side is not None:  # a hedge leg cannot cross zero: clip the fill
                held = abs(signed[(sid, inst.id, leg)])
                opening = (side is OrderSide.BUY) == (leg is PositionSide.LONG)
                if not opening:
                    if held == 0:
                        side = side.opposite
                    else:
                        qty = min(qty, held)
            pf.apply_fill(sid, inst.id, side, qty, px, fee, position_side=position_side)
            cash[inst.quote] += -side.sign * qty * px * inst.multiplier - fee
            signed[(sid, inst.id, position_side)] += side.sign * qty
            marks[inst.id] = px
        elif step[0] == "funding":
            _, k, rate, mark_px = step
            inst = INSTRUMENTS[k]
            received = pf.apply_funding(inst.id, rate, mark_px)
            net = sum((q for (_, iid, _), q in signed.items() if iid == inst.id), D(0))
            assert received == -net * mark_px * rate * inst.multiplier
            cash[inst.quote] += received
        else:
            _, k, mark_px = step
            marks[INSTRUMENTS[k].id] = mark_px

        # the sum of signed fills is the position, per strategy and leg
        for (sid, iid, leg), qty in signed.items():
            pos = pf.position(sid, iid, leg)
            assert pos is not None and pos.quantity == qty
        # cash + marked positions = equity
        value: dict[str, D] = dict(cash)
        for (_, iid, _), qty in signed.items():
            inst = pf.instrument(iid)
            value[inst.quote] += qty * marks[iid] * inst.multiplier
        expected = value["USDT"] + value["EUR"] * eur_rate
        equity = pf.equity(marks, fx)
        assert equity == expected
        # equity change = realised + unrealised - fees + funding, summed over strategies
        by_strategy = pf.pnl_by_strategy(marks, fx)
        assert equity - initial_equity == sum((p.total for p in by_strategy.values()), D(0))
        # the snapshot tells the same story
        snap = pf.snapshot(0, marks, fx)
        assert snap.equity == equity == snap.balance + snap.unrealized_pnl
        assert snap.gross_exposure >= abs(snap.net_exposure)


@settings(max_examples=100, deadline=None)
@given(actions, st.decimals(D("0.5"), D(2), places=2))
def test_identities_hold_in_netting_mode(steps, eur_rate):
    run_and_check(False, eur_rate, steps)


@settings(max_examples=100, deadline=None)
@given(actions, st.decimals(D("0.5"), D(2), places=2))
def test_identities_hold_in_hedge_mode(steps, eur_rate):
    run_and_check(True, eur_rate, steps)
